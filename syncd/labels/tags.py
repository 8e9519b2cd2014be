"""Classification(s) and scalar fields <-> CVAT tags (§3.2 "Tags", §3.3 "Tags")."""
from __future__ import annotations

from typing import Any

from ..ids import label_id
from ..schema import FieldSchema, labels_of
from .attributes import export_attrs, stringify
from .base import ExportContext, new_label, tag_item

SCALAR_SENT = "__scalar__"  # marker in the sent-ids list: this sample's scalar value was sent


def export_classifications(value: Any, fs: FieldSchema, ctx: ExportContext) -> tuple[list, list]:
    tags, ids = [], []
    for lab in labels_of(value):
        name = ctx.label_name(fs.name, lab.get("label"))
        if name is None:
            continue  # a class outside the schema is not sent (and so never deleted)
        attrs, _, group = export_attrs(lab, fs.attrs_for(lab.get("label")), with_id=True)
        tags.append(tag_item(name, ctx.frame, attrs, group))
        if label_id(lab):
            ids.append(label_id(lab))
    return tags, ids


def export_scalar(value: Any, fs: FieldSchema, ctx: ExportContext) -> tuple[list, list]:
    if value is None or isinstance(value, (dict, list)):
        return [], []
    if fs.classes:
        name = ctx.label_name(fs.name, stringify(value))
        if stringify(value) not in fs.classes or name is None:
            return [], []
        attrs, _, group = export_attrs({}, fs.attrs_for(stringify(value)), with_id=False)
        return [tag_item(name, ctx.frame, attrs, group)], [SCALAR_SENT]
    name = ctx.label_name(fs.name, None)
    return [tag_item(name, ctx.frame, {"value": stringify(value)})], [SCALAR_SENT]


def tag_to_classification(cls: Any, attrs: dict, lid: str | None) -> dict:
    return new_label("Classification", cls, lid, attrs)


def tag_to_scalar(cls: str | None, attrs: dict) -> Any:
    """A scalar with classes is the class name; without, the first attribute with a value."""
    if cls is not None:
        return cls
    if attrs.get("value") is not None:
        return attrs["value"]
    return next((v for v in attrs.values() if v is not None), None)
