"""A resolved label schema -> the CVAT label specs a task or project is created with: one CVAT
label per class (or per classless field), names made unique with the field's name when two
fields share a class, attributes as CVAT attribute specs plus the hidden ``label_id``."""
from __future__ import annotations

from .field_schema import FieldSchema
from .schema_attributes import stringify


LABEL_ID_ATTR = {"name": "label_id", "mutable": True, "input_type": "text",
                 "default_value": "", "values": []}


def _label_names(schema: dict[str, FieldSchema]) -> list[tuple[str, str, str | None]]:
    """(cvat name, field, class or None) for every CVAT label the schema needs."""
    raw = []
    for f in schema.values():
        if f.classes:
            raw += [(c, f.name, c) for c in f.classes]
        else:
            raw.append((f.name, f.name, None))
    counts: dict[str, int] = {}
    for name, _, _ in raw:
        counts[name] = counts.get(name, 0) + 1
    return [(f"{name}_{fld}" if counts[name] > 1 else name, fld, cls) for name, fld, cls in raw]


def class_map(schema: dict[str, FieldSchema]) -> dict[str, tuple[str, str | None]]:
    """CVAT label name -> (field, class); class is None for a classless field's one label."""
    return {name: (fld, cls) for name, fld, cls in _label_names(schema)}


def label_name_map(schema: dict[str, FieldSchema]) -> dict[tuple[str, str | None], str]:
    """(field, class) -> CVAT label name: the inverse of class_map()."""
    return {(fld, cls): name for name, fld, cls in _label_names(schema)}


def _cvat_attr(name: str, a: dict) -> dict:
    values = [stringify(v) for v in a.get("values") or []]
    if "default" in a:
        default = stringify(a["default"])
    elif a["type"] == "checkbox":
        default = "false"
    elif values and a["type"] in ("select", "radio"):
        default = values[0]
    else:
        default = ""
    return {"name": name, "mutable": bool(a.get("mutable", True)), "input_type": a["type"],
            "default_value": default, "values": values}


def cvat_labels(schema: dict[str, FieldSchema]) -> list[dict]:
    """Label specs for POST /api/tasks or /api/projects (see module docstring)."""
    out = []
    for name, fld, cls in _label_names(schema):
        f = schema[fld]
        attrs = [_cvat_attr(an, a) for an, a in f.attrs_for(cls).items()
                 if a["type"] not in ("occluded", "group_id")]
        if f.type == "scalar":
            if cls is None and not attrs:
                attrs.append({"name": "value", "mutable": True, "input_type": "text",
                              "default_value": "", "values": []})
        else:
            attrs.append(dict(LABEL_ID_ATTR))
        out.append({"name": name, "attributes": attrs})
    return out
