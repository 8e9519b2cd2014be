"""Detection(s) and instance(s) <-> CVAT rectangle / mask / polygon shapes (§3.2, §3.3)."""
from __future__ import annotations

from typing import Any

from ..ids import label_id
from ..schema import FieldSchema, labels_of
from .attributes import export_attrs
from .base import ExportContext, is_number, new_label, shape_item
from . import masks


def rectangle_points(bbox: list[float], width: int, height: int) -> list[float]:
    """FiftyOne's rounding: each corner rounded separately (Python's round), sent as floats."""
    x, y, w, h = bbox
    return [float(round(x * width)), float(round(y * height)),
            float(round((x + w) * width)), float(round((y + h) * height))]


def export_detections(value: Any, fs: FieldSchema, ctx: ExportContext) -> tuple[list, list]:
    """Rectangles for detection(s) (labels without masks), masks for instance(s) (with masks)."""
    want_masks = fs.type in ("instance", "instances")
    shapes, ids = [], []
    for lab in labels_of(value):
        if masks.has_mask(lab) != want_masks or not lab.get("bounding_box"):
            continue
        name = ctx.label_name(fs.name, lab.get("label"))
        if name is None:
            continue
        attrs, occluded, group = export_attrs(lab, fs.attrs_for(lab.get("label")), with_id=True)
        rotation = float(lab["rotation"]) if is_number(lab.get("rotation")) else 0.0
        if want_masks:
            points = masks.instance_points(masks.load_mask(lab, ctx.root), lab["bounding_box"],
                                           ctx.width, ctx.height)
            if points is None:
                continue
            shape_type = "mask"
        else:
            points, shape_type = rectangle_points(lab["bounding_box"], ctx.width, ctx.height), "rectangle"
        shapes.append(shape_item(name, ctx.frame, shape_type, points, attrs, occluded, group,
                                 rotation))
        if label_id(lab):
            ids.append(label_id(lab))
    return shapes, ids


def rectangle_to_detection(cls: Any, points: list, width: int, height: int, attrs: dict,
                           lid: str | None) -> dict:
    xtl, ytl, xbr, ybr = float(points[0]), float(points[1]), float(points[2]), float(points[3])
    box = [xtl / width, ytl / height, (xbr - xtl) / width, (ybr - ytl) / height]
    return new_label("Detection", cls, lid, attrs, bounding_box=box)


def mask_to_detection(cls: Any, points: list, width: int, height: int, attrs: dict,
                      lid: str | None) -> dict:
    box, mask = masks.mask_shape_to_instance(points, width, height)
    return new_label("Detection", cls, lid, attrs, bounding_box=box, mask=mask)


def polygon_to_detection(cls: Any, points: list, width: int, height: int, attrs: dict,
                         lid: str | None) -> dict | None:
    inst = masks.polygon_to_instance(points, width, height)
    if inst is None:
        return None
    box, mask = inst
    return new_label("Detection", cls, lid, attrs, bounding_box=box, mask=mask)
