"""Segmentation <-> CVAT mask shapes, one per class present (§3.2 "Segmentation", §3.3).

Upload splits the semantic mask by ``mask_targets`` and sends each class as an instance mask
shape carrying the Segmentation's own id. Download paints every piece (mask or polygon shapes)
of the field back onto one frame-sized mask with the class's target value; the id is the one the
pieces carry when they agree, else a new one.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..ids import is_object_id, label_id, new_id, oid
from ..schema import FieldSchema
from .attributes import export_attrs
from .base import ExportContext, shape_item
from . import masks


def export_segmentation(value: Any, fs: FieldSchema, ctx: ExportContext) -> tuple[list, list]:
    if not isinstance(value, dict) or value.get("_cls") != "Segmentation":
        return [], []
    mask = masks.load_mask(value, ctx.root)
    if mask is None:
        return [], []
    shapes = []
    for cls, box, crop in masks.split_segmentation(mask, fs.mask_targets or {}):
        name = ctx.label_name(fs.name, cls)
        if name is None:
            continue
        points = masks.instance_points(crop, box, ctx.width, ctx.height)
        if points is None:
            continue
        attrs, occluded, group = export_attrs(value, fs.attrs_for(cls), with_id=True)
        shapes.append(shape_item(name, ctx.frame, "mask", points, attrs, occluded, group))
    lid = label_id(value)
    return shapes, ([lid] if shapes and lid else [])


def assemble(pieces: list[tuple[str, np.ndarray, str | None]], fs: FieldSchema, width: int,
             height: int) -> dict:
    """(class, full-frame bool mask, label_id value) pieces -> a Segmentation dict."""
    targets = {v: k for k, v in (fs.mask_targets or {}).items()}
    seg = masks.empty_segmentation(width, height, fs.mask_targets or {})
    for cls, full, _ in pieces:
        value = targets.get(cls)
        if value is not None:
            seg[full] = value
    ids = {p[2].lower() for p in pieces if is_object_id(p[2])}
    return {"_id": oid(ids.pop() if len(ids) == 1 else new_id()), "_cls": "Segmentation",
            "tags": [], "mask": seg}
