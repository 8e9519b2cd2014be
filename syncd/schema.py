"""Label schemas: which fields go to CVAT, as which types, with which classes and attributes.

This follows FiftyOne's ``annotate()`` rules (reference/fiftyone-cvat.md §2.2-2.5, §3.1): an
existing field's type and classes are inferred from the labels already in the samples, new fields
must say what they are, attributes are normalised and checked, and the result is turned into the
CVAT label specs a task or project is created with. Errors name the field, class or attribute.

This module builds the schema (``build_schema``) and is the one import for its users; the parts
live in :mod:`syncd.field_schema` (the result type), :mod:`syncd.schema_infer` (reading existing
labels), :mod:`syncd.schema_attributes` (attribute normalisation) and
:mod:`syncd.schema_cvat_labels` (CVAT label specs).
"""
from __future__ import annotations

from .field_schema import LABEL_TYPES, MAX_NAME, RETURN_TYPES, FieldSchema, SchemaError
from .schema_attributes import normalize_attrs, observed_attributes, stringify
from .schema_cvat_labels import class_map, cvat_labels, label_name_map
from .schema_infer import EXISTING_TYPES, field_values, infer_type, labels_of, value_kind

__all__ = ["LABEL_TYPES", "RETURN_TYPES", "FieldSchema", "SchemaError", "build_schema", "class_map", "cvat_labels",
           "label_name_map", "labels_of", "stringify"]


def _build_field(fname: str, info: dict, samples: list[dict], defaults: dict) -> FieldSchema:
    if not isinstance(fname, str) or not fname:
        raise SchemaError(f"Invalid label field name {fname!r}")
    get = lambda k: info[k] if info.get(k) is not None else defaults.get(k)  # noqa: E731
    values = list(field_values(samples, fname))
    kinds = {value_kind(fname, v) for v in values}
    if len(kinds) > 1:
        raise SchemaError(f"Field '{fname}' holds mixed label types {sorted(kinds)}")
    kind = kinds.pop() if kinds else None
    existing = kind is not None
    labels = [lab for v in values for lab in labels_of(v)]

    ltype = get("type")
    if ltype is not None:
        ltype = str(ltype).lower()
        if ltype not in LABEL_TYPES:
            raise SchemaError(f"Field '{fname}': unsupported label type '{ltype}'. "
                              f"Supported types are {list(LABEL_TYPES)}")
        if kind == "scalar" and ltype != "scalar":
            raise SchemaError(f"Field '{fname}' holds scalar values and cannot be annotated "
                              f"as '{ltype}'")
        if kind not in (None, "scalar") and ltype not in EXISTING_TYPES[kind]:
            raise SchemaError(f"Field '{fname}' of type {kind} cannot be annotated as "
                              f"'{ltype}'; expected one of {EXISTING_TYPES[kind]}")
    elif kind is None:
        raise SchemaError(f"You must specify a type for the new label field '{fname}'")
    else:
        ltype = "scalar" if kind == "scalar" else infer_type(fname, kind, labels)
    if fname.startswith("frames.") is False and "." in fname:
        raise SchemaError(f"Field '{fname}': embedded fields are not supported")

    mask_targets = None
    if ltype == "segmentation":
        mt = get("mask_targets")
        if mt is None and not existing:
            raise SchemaError(f"Field '{fname}': a new segmentation field requires "
                              f"'mask_targets'")
        if mt is None:
            mt = {0: "background", **{i: str(i) for i in range(1, 256)}}
        try:
            mask_targets = {int(k): str(v) for k, v in dict(mt).items()}
        except (TypeError, ValueError) as e:
            raise SchemaError(f"Field '{fname}': mask_targets keys must be integers") from e
        classes_in = [v for k, v in sorted(mask_targets.items()) if k != 0]
    elif get("mask_targets") is not None:
        raise SchemaError(f"Field '{fname}': mask_targets only apply to segmentation fields")
    else:
        classes_in = get("classes")

    class_attributes: dict[str, dict] = {}
    classes: list[str] = []
    observed = observed_attributes(labels)
    if classes_in is None:
        if ltype != "scalar":
            if not existing:
                raise SchemaError(f"Field '{fname}': you must provide classes for the new "
                                  f"label field")
            classes = sorted({lab["label"] for lab in labels if isinstance(lab.get("label"), str)})
    else:
        if isinstance(classes_in, str):
            classes_in = [classes_in]
        for c in classes_in:
            if isinstance(c, dict):
                sub = c.get("classes") or []
                extra = normalize_attrs(fname, c.get("attributes", False), observed, True,
                                        ltype == "scalar")
                for sc in sub:
                    classes.append(stringify(sc))
                    class_attributes[stringify(sc)] = extra
            else:
                classes.append(stringify(c))
    for c in classes:
        if len(c) > MAX_NAME:
            raise SchemaError(f"Field '{fname}': class name '{c}' exceeds the {MAX_NAME} "
                              f"character limit")
        if not c:
            raise SchemaError(f"Field '{fname}': class names must be non-empty")
    classes = list(dict.fromkeys(classes))

    attrs = normalize_attrs(fname, info["attributes"] if "attributes" in info
                            else defaults.get("attributes", True), observed, existing,
                             ltype == "scalar")
    flags = {k: bool(info.get(k, defaults.get(k, True))) for k in (
        "allow_additions", "allow_deletions", "allow_label_edits", "allow_index_edits",
        "allow_spatial_edits")}
    existing = bool(info.get("existing_field", existing))
    return FieldSchema(fname, ltype, classes, attrs, mask_targets, existing,
                       class_attributes=class_attributes, **flags)


def build_schema(samples: list[dict], label_schema: dict | list | str | None = None, *,
                 label_field=None, label_type=None, classes=None, attributes=True,
                 mask_targets=None, allow_additions=True, allow_deletions=True,
                 allow_label_edits=True, allow_index_edits=True,
                 allow_spatial_edits=True) -> dict[str, FieldSchema]:
    """Validate a FiftyOne-style label schema against the samples; field -> FieldSchema."""
    defaults = {"type": label_type, "classes": classes, "attributes": attributes,
                "mask_targets": mask_targets, "allow_additions": allow_additions,
                "allow_deletions": allow_deletions, "allow_label_edits": allow_label_edits,
                "allow_index_edits": allow_index_edits, "allow_spatial_edits": allow_spatial_edits}
    if label_schema is None:
        if label_field is None:
            raise SchemaError("Either 'label_schema' or 'label_field' must be provided")
        label_schema = {label_field: {}}
    elif isinstance(label_schema, str):
        label_schema = {label_schema: {}}
    elif isinstance(label_schema, (list, tuple)):
        label_schema = {f: {} for f in label_schema}
    if not label_schema:
        raise SchemaError("The label schema is empty")
    out = {}
    for fname, info in label_schema.items():
        if info is None:
            info = {}
        if not isinstance(info, dict):
            raise SchemaError(f"Field '{fname}': schema entry must be a dict, not "
                              f"{type(info).__name__}")
        out[fname] = _build_field(fname, info, samples, defaults)
    return out
