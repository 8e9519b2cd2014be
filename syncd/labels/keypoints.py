"""Keypoint(s) <-> CVAT points shapes (§3.2, §3.3). NaN points are not sent."""
from __future__ import annotations

from typing import Any

from ..ids import label_id
from ..schema import FieldSchema, labels_of
from .attributes import export_attrs
from .base import ExportContext, new_label, shape_item
from .polylines import flatten, unflatten


def export_keypoints(value: Any, fs: FieldSchema, ctx: ExportContext) -> tuple[list, list]:
    shapes, ids = [], []
    for lab in labels_of(value):
        name = ctx.label_name(fs.name, lab.get("label"))
        flat = flatten(lab.get("points") or [], ctx.width, ctx.height)
        if name is None or not flat:
            continue
        attrs, occluded, group = export_attrs(lab, fs.attrs_for(lab.get("label")), with_id=True)
        shapes.append(shape_item(name, ctx.frame, "points", flat, attrs, occluded, group))
        if label_id(lab):
            ids.append(label_id(lab))
    return shapes, ids


def points_to_keypoint(cls: Any, points: list, width: int, height: int, attrs: dict,
                       lid: str | None) -> dict:
    return new_label("Keypoint", cls, lid, attrs, points=unflatten(points, width, height))
