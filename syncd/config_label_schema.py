"""The TOML shape of a rule's label schema (``label_schema``, ``label_type``, ``classes``,
``attributes``, ``mask_targets``); :mod:`syncd.schema` gives it meaning."""

from __future__ import annotations

import re

from syncd.config_checks import check_bool, check_str, fail, no_unknown, show, str_list, table


LABEL_TYPES = ("classification", "classifications", "detection", "detections", "instance",
               "instances", "polyline", "polylines", "polygon", "polygons", "keypoint",
               "keypoints", "segmentation", "scalar")
ALLOW_FLAGS = ("allow_additions", "allow_deletions", "allow_label_edits", "allow_index_edits",
               "allow_spatial_edits")
_SCHEMA_FIELD_KEYS = {"type", "classes", "attributes", "mask_targets", "existing_field",
                      "only_keyframes", "occluded_attr", "group_id_attr", *ALLOW_FLAGS}
_ATTRIBUTE_KEYS = {"type", "values", "default", "mutable", "read_only"}
_MASK_KEY = re.compile(r"^(\d+|#[0-9A-Fa-f]{6})$")


def check_attributes(key, v):
    if isinstance(v, bool):
        return v
    if isinstance(v, (str, list)):
        return str_list(key, v, allow_single=True)
    for name, spec in table(key, v).items():
        akey = f"{key}.{name}"
        no_unknown(akey, table(akey, spec), _ATTRIBUTE_KEYS)
        if "type" in spec:
            check_str(f"{akey}.type", spec["type"], empty=False)
        if "values" in spec and not isinstance(spec["values"], list):
            raise fail(f"{akey}.values", f"must be a list, got {show(spec['values'])}")
        for flag in ("mutable", "read_only"):
            if flag in spec:
                check_bool(f"{akey}.{flag}", spec[flag])
    return v


def check_classes(key, v) -> list:
    if not isinstance(v, list):
        raise fail(key, f"must be a list, got {show(v)}")
    for i, item in enumerate(v):
        ikey = f"{key}[{i}]"
        if isinstance(item, dict):  # {classes = [...], attributes = {...}}
            no_unknown(ikey, item, {"classes", "attributes"})
            if "classes" not in item:
                raise fail(f"{ikey}.classes", "missing")
            str_list(f"{ikey}.classes", item["classes"])
            if "attributes" in item:
                check_attributes(f"{ikey}.attributes", item["attributes"])
        else:
            check_str(ikey, item, empty=False)
    return v


def check_mask_targets(key, v) -> dict:
    for k, name in table(key, v).items():
        if not _MASK_KEY.match(k):
            raise fail(f"{key}.{k}", "keys must be pixel values (\"1\") or colors (\"#ff0000\")")
        check_str(f"{key}.{k}", name)
    return v


def check_label_type(key, v) -> str:
    v = check_str(key, v, empty=False)
    if v not in LABEL_TYPES:
        raise fail(key, f"unknown label type {v!r} (one of: {', '.join(LABEL_TYPES)})")
    return v


def check_label_schema(key, v) -> dict:
    if isinstance(v, list):  # FiftyOne also takes a list of field names
        v = {name: {} for name in str_list(key, v)}
    if not table(key, v):
        raise fail(key, "must name at least one label field")
    for name, spec in v.items():
        fkey = f"{key}.{name}"
        if not name.strip():
            raise fail(fkey, "empty field name")
        no_unknown(fkey, table(fkey, spec), _SCHEMA_FIELD_KEYS)
        checks = {"type": check_label_type, "classes": check_classes, "attributes": check_attributes,
                  "mask_targets": check_mask_targets, "existing_field": check_bool,
                  "only_keyframes": check_bool, "occluded_attr": check_str, "group_id_attr": check_str,
                  **{flag: check_bool for flag in ALLOW_FLAGS}}
        for k, check in checks.items():
            if k in spec:
                check(f"{fkey}.{k}", spec[k])
    return v
