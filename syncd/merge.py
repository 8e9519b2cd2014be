"""Merging downloaded labels into samples: FiftyOne's ``load_annotations`` rules (§3.6).

Provenance is the label ``_id``: ids that were sent and came back are edits, ids sent but missing
are deletions, ids never sent are additions. Each kind of change is gated by the field's
``allow_*`` flags; what the run did not cover (labels not sent, attributes outside the schema,
immutable or read-only attributes) is never touched. Unlike FiftyOne, a label deleted locally
after upload stays deleted, and a scalar that was never sent is never deleted.
"""
from __future__ import annotations

import copy
import logging
from typing import Any

from .ids import label_id, new_id, oid
from .schema import FieldSchema, RETURN_TYPES
from .labels.tags import SCALAR_SENT

log = logging.getLogger(__name__)

_SPATIAL = {
    "Detection": ("bounding_box", "mask", "rotation"),
    "Polyline": ("points", "closed", "filled"),
    "Keypoint": ("points",),
    "Segmentation": ("mask",),
    "Classification": (),
}
_CONTAINERS = {"classifications": ("Classifications", "classifications"),
               "detections": ("Detections", "detections"),
               "polylines": ("Polylines", "polylines"),
               "keypoints": ("Keypoints", "keypoints")}


def _merge_label(cur: dict, new: dict, field: FieldSchema) -> dict:
    out = dict(cur)
    if field.allow_label_edits and "label" in new:
        out["label"] = new["label"]
    if field.allow_index_edits and "index" in new and new.get("index") is not None:
        out["index"] = new["index"]
    if field.allow_spatial_edits:
        for key in _SPATIAL.get(cur.get("_cls"), ()):
            if key in new:
                out[key] = new[key]
            elif key == "rotation":
                out.pop("rotation", None)  # rotated back to 0 in CVAT
        # a new mask replaces the file's content: the caller writes it (to mask_path if set)
    for name, spec in field.attrs_for(cur.get("label")).items():
        if spec.get("read_only"):
            continue
        if not spec.get("mutable", True) and spec["type"] not in ("occluded", "group_id"):
            continue  # immutable values are not uploaded on shapes, so nothing came back
        if name in new:
            out[name] = new[name]
        elif name in out:
            out[name] = None  # cleared in CVAT
    return out


def _fresh(label: dict) -> dict:
    label = dict(label)
    label["_id"] = oid(new_id())
    return label


def _merge_list(current: Any, downloaded: Any, sent: set[str], field: FieldSchema) -> Any:
    cls_name, key = _CONTAINERS[RETURN_TYPES[field.type]]
    cur_labels = list((current or {}).get(key) or [])
    down_labels = list((downloaded or {}).get(key) or [])
    down_by_id: dict[str, dict] = {}
    for lab in down_labels:
        down_by_id.setdefault(label_id(lab), lab)
    merged, cur_ids, merged_ids = [], set(), set()
    for lab in cur_labels:
        lid = label_id(lab)
        cur_ids.add(lid)
        if lid in down_by_id:
            merged.append(_merge_label(lab, down_by_id[lid], field))
            merged_ids.add(lid)
        elif lid in sent and field.allow_deletions:
            continue
        else:
            merged.append(lab)
    added, seen = [], set(cur_ids)
    for lab in down_labels:
        lid = label_id(lab)
        if lid in merged_ids and lab is down_by_id[lid]:
            continue  # merged above
        if lid in sent and lid not in cur_ids:
            continue  # deleted locally since upload: the local deletion wins
        if not field.allow_additions:
            continue
        if lid is None or lid in seen:
            lab = _fresh(lab)  # duplicate ids (copied shapes, split tracks) get fresh ones
            lid = label_id(lab)
        seen.add(lid)
        added.append(lab)
    if current is None and not added:
        return None
    out = dict(current) if isinstance(current, dict) else {"_cls": cls_name}
    out[key] = merged + added
    return out


def _merge_single(current: Any, downloaded: Any, sent: set[str], field: FieldSchema) -> Any:
    cid = label_id(current) if isinstance(current, dict) else None
    did = label_id(downloaded) if isinstance(downloaded, dict) else None
    if current is not None and cid is not None and cid == did:
        return _merge_label(current, downloaded, field)
    if current is not None and cid in sent and field.allow_deletions:
        current = None
    if downloaded is not None and current is None and did not in sent and field.allow_additions:
        return downloaded
    return current


def _merge_scalar(current: Any, downloaded: Any, sent: list[str], field: FieldSchema) -> Any:
    if current is None:
        return downloaded if downloaded is not None and field.allow_additions else current
    if downloaded is None:
        return None if (SCALAR_SENT in sent and field.allow_deletions) else current
    if downloaded != current and field.allow_label_edits:
        return downloaded
    return current


def merge_field(current: Any, downloaded: Any, sent_ids: list[str], field: FieldSchema) -> Any:
    """The field's new value after merging ``downloaded`` (import_annotations' form)."""
    if field.type == "scalar":
        return _merge_scalar(current, downloaded, list(sent_ids or []), field)
    sent = {s.lower() for s in sent_ids or [] if isinstance(s, str)}
    if field.is_list:
        return _merge_list(current, downloaded, sent, field)
    return _merge_single(current, downloaded, sent, field)


def _unexpected_schema(name: str, like: FieldSchema | None) -> FieldSchema:
    """Fields named after a type hold "unexpected" labels: only additions apply."""
    return FieldSchema(name, name, [], {}, None, False, allow_additions=True,
                       allow_deletions=False, allow_label_edits=False,
                       allow_index_edits=False, allow_spatial_edits=False)


def merge_sample(sample: dict, downloaded: dict[str, Any], sent: dict[str, list[str]],
                 schema: dict[str, FieldSchema], dest_field: str | dict | None = None) -> dict:
    """A copy of ``sample`` with every downloaded field merged in.

    ``dest_field``: a field name (single-field schemas) or {field: new field} redirecting where
    labels are written; the destination's current value is what gets merged into.
    """
    if isinstance(dest_field, str):
        if len(schema) != 1:
            raise ValueError("dest_field may be a string only when the run has one field")
        dest_field = {next(iter(schema)): dest_field}
    dest_field = dest_field or {}
    out = dict(sample)
    for name, value in downloaded.items():
        fs = schema.get(name)
        target = dest_field.get(name, name)
        if fs is None:
            if name not in _CONTAINERS:
                log.warning("dropping downloaded field %r that is not in the schema", name)
                continue
            fs = _unexpected_schema(name, None)
        out[target] = merge_field(copy.copy(sample.get(target)), value, sent.get(name, []), fs)
        if out[target] is None and target not in sample:
            del out[target]
    return out
