"""Attributes of a label field, normalised and checked as FiftyOne does
(reference/fiftyone-cvat.md §2.4-2.5): the attributes observed on existing labels with their
recommended CVAT tool, and a user's ``attributes`` spec (True/False, a name, a list, or a dict)
turned into ``{name: {type, values, mutable, read_only[, default]}}``."""
from __future__ import annotations

from typing import Any

from .field_schema import MAX_NAME, SchemaError


ATTR_TYPES = ("text", "select", "radio", "checkbox", "occluded", "group_id")
# Keys of a label dict that are label structure, never user attributes.
RESERVED_KEYS = frozenset({
    "_id", "id", "_cls", "label", "bounding_box", "mask", "mask_path", "confidence", "index",
    "attributes", "tags", "points", "closed", "filled", "logits", "keyframe", "rotation",
    "visible", "instance", "map", "map_path", "_media_type",
})


def stringify(v: Any) -> str:
    """CVAT's string form of a value: None -> "", bools -> "true"/"false"."""
    if v is None:
        return ""
    if v is True:
        return "true"
    if v is False:
        return "false"
    return str(v)


def _recommended(name: str, values: list) -> dict:
    """FiftyOne's recommended CVAT tool for an attribute seen with these values."""
    first = next((v for v in values if v is not None), None)
    if isinstance(first, bool):
        if name == "occluded":
            return {"type": "occluded"}
        return {"type": "checkbox", "values": [True, False]}
    if isinstance(first, int) and name == "group_id":
        return {"type": "group_id"}
    return {"type": "text", "values": []}


def observed_attributes(labels: list[dict]) -> dict[str, dict]:
    seen: dict[str, list] = {}
    for lab in labels:
        for k, v in lab.items():
            if k not in RESERVED_KEYS and not k.startswith("_"):
                seen.setdefault(k, []).append(v)
    return {k: _recommended(k, vs) for k, vs in sorted(seen.items())
            if any(v is not None for v in vs)}


def normalize_attrs(fname: str, spec: Any, observed: dict[str, dict], existing: bool,
                    scalar: bool) -> dict[str, dict]:
    if spec is True:
        raw = dict(observed) if existing and not scalar else {}
    elif spec is False or spec is None:
        raw = {}
    elif isinstance(spec, str):
        raw = {spec: {}}
    elif isinstance(spec, (list, tuple)):
        raw = {a: {} for a in spec}
    elif isinstance(spec, dict):
        raw = {k: (v if isinstance(v, dict) else {}) for k, v in spec.items()}
    else:
        raise SchemaError(f"Invalid attributes for field '{fname}': {spec!r}")
    out: dict[str, dict] = {}
    linked = {"occluded": None, "group_id": None}
    for aname, a in raw.items():
        if not isinstance(aname, str) or not aname:
            raise SchemaError(f"Field '{fname}': attribute names must be non-empty strings")
        if aname == "label_id":
            raise SchemaError(f"Field '{fname}': the attribute name 'label_id' is reserved")
        if len(aname) > MAX_NAME:
            raise SchemaError(f"Field '{fname}': attribute name '{aname}' exceeds the "
                              f"{MAX_NAME} character limit")
        base = observed.get(aname, {"type": "text", "values": []})
        atype = a.get("type") or base["type"]
        if atype not in ATTR_TYPES:
            raise SchemaError(f"Field '{fname}': attribute '{aname}' has unsupported type "
                              f"'{atype}'; supported types are {list(ATTR_TYPES)}")
        values = a.get("values")
        if values is None and atype == base["type"]:
            values = base.get("values")
        if atype in ("select", "radio") and not values:
            raise SchemaError(f"Field '{fname}': attribute '{aname}' of type '{atype}' "
                              f"requires a non-empty list of 'values'")
        if values is None:
            # CVAT >= 2.5 needs explicit values for text/checkbox; fill FiftyOne's choices
            values = [True, False] if atype == "checkbox" else []
        if atype in ("occluded", "group_id"):
            if linked[atype]:
                raise SchemaError(f"Field '{fname}' may have only one '{atype}' attribute "
                                  f"(found '{linked[atype]}' and '{aname}')")
            linked[atype] = aname
            values = []
        norm = {"type": atype, "values": list(values),
                "mutable": bool(a.get("mutable", True)),
                "read_only": bool(a.get("read_only", False))}
        if "default" in a and a["default"] is not None:
            d = a["default"]
            if values and d not in values and stringify(d) not in map(stringify, values):
                raise SchemaError(f"Field '{fname}': default {d!r} of attribute '{aname}' is "
                                  f"not one of its values {list(values)}")
            norm["default"] = d
        out[aname] = norm
    return out
