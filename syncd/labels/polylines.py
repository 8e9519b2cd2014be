"""Polyline(s) and polygon(s) <-> CVAT polyline / polygon shapes (§3.2, §3.3).

A Polyline with several point lists goes up as several shapes carrying the same ``label_id``;
unlike FiftyOne (where the parts overwrite each other on download) the parts are joined again.
"""
from __future__ import annotations

import math
from typing import Any

from ..ids import label_id
from ..schema import FieldSchema, labels_of
from .attributes import export_attrs
from .base import ExportContext, new_label, shape_item


def flatten(points: list, width: int, height: int) -> list[float]:
    """[[x, y], ...] relative -> [x1, y1, ...] absolute with FiftyOne's ``int(round(.))``."""
    out: list[float] = []
    for p in points:
        x, y = float(p[0]), float(p[1])
        if math.isnan(x) or math.isnan(y):
            continue
        out += [float(int(round(x * width))), float(int(round(y * height)))]
    return out


def unflatten(flat: list, width: int, height: int) -> list[list[float]]:
    return [[float(flat[i]) / width, float(flat[i + 1]) / height]
            for i in range(0, len(flat) - 1, 2)]


def export_polylines(value: Any, fs: FieldSchema, ctx: ExportContext) -> tuple[list, list]:
    """polygon(s) take filled Polylines, polyline(s) the unfilled ones (FiftyOne's filter)."""
    want_filled = fs.type in ("polygon", "polygons")
    shapes, ids = [], []
    for lab in labels_of(value):
        if bool(lab.get("filled")) != want_filled:
            continue
        name = ctx.label_name(fs.name, lab.get("label"))
        if name is None:
            continue
        attrs, occluded, group = export_attrs(lab, fs.attrs_for(lab.get("label")), with_id=True)
        sent = False
        for part in lab.get("points") or []:
            flat = flatten(part, ctx.width, ctx.height)
            if want_filled and len(flat) < 6:
                continue  # CVAT rejects polygons with fewer than 3 points
            if len(flat) < 4 and not want_filled:
                continue
            shapes.append(shape_item(name, ctx.frame, "polygon" if want_filled else "polyline",
                                     flat, attrs, occluded, group))
            sent = True
        if sent and label_id(lab):
            ids.append(label_id(lab))
    return shapes, ids


def shape_to_polyline(cls: Any, shape_type: str, points: list, width: int, height: int,
                      attrs: dict, lid: str | None, filled_polygons: bool) -> dict:
    closed = shape_type == "polygon"
    return new_label("Polyline", cls, lid, attrs, points=[unflatten(points, width, height)],
                     closed=closed, filled=closed and filled_polygons)


def join_parts(labels: list[dict]) -> list[dict]:
    """Polylines sharing an id (one label uploaded as several shapes) become one again."""
    by_id: dict[str, dict] = {}
    out = []
    for lab in labels:
        lid = label_id(lab)
        if lid in by_id:
            by_id[lid]["points"] = by_id[lid]["points"] + lab["points"]
            continue
        by_id[lid] = lab
        out.append(lab)
    return out
