"""COCO 1.0 export: ``annotations/instances_default.json`` (+ ``images/default/<name>``).

Categories are the task's top-level labels (ids from 1, in label order). Rectangles become
``bbox`` with empty ``segmentation``; polygons become polygon segmentations; masks become
uncompressed COCO RLE (column-major counts over the whole image, ``iscrowd: 1``). Tracks
contribute their visible per-frame shapes. Other shape types are not part of COCO instances.
Attributes go to each annotation's ``attributes`` with ``occluded`` (and ``rotation``), as
CVAT writes them.
"""
from __future__ import annotations

import io
import json
import zipfile

from . import ExportContext
from ..models import interpolation


def _bbox(xs, ys) -> list[float]:
    return [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]


def _polygon_area(p: list[float]) -> float:
    xs, ys = p[0::2], p[1::2]
    n = len(xs)
    return abs(sum(xs[i] * ys[(i + 1) % n] - xs[(i + 1) % n] * ys[i] for i in range(n))) / 2.0


def mask_to_coco_rle(points: list[float], width: int, height: int) -> tuple[dict, float, list[float]]:
    """CVAT mask (row-major RLE over an inclusive box) → COCO uncompressed RLE (column-major,
    whole image), its area and bbox."""
    rle = [int(v) for v in points[:-4]]
    left, top, right = (int(v) for v in points[-4:-1])  # (the bottom follows from the runs)
    bw = right - left + 1
    on = set()
    pos, val = 0, 0
    for run in rle:
        if val:
            for k in range(pos, pos + run):
                on.add((left + k % bw, top + k // bw))
        pos += run
        val ^= 1
    counts, cur, run = [], 0, 0
    for x in range(width):
        for y in range(height):
            v = 1 if (x, y) in on else 0
            if v != cur:
                counts.append(run)
                cur, run = v, 0
            run += 1
    counts.append(run)
    xs = [p[0] for p in on] or [0]
    ys = [p[1] for p in on] or [0]
    bbox = [min(xs), min(ys), max(xs) - min(xs) + 1, max(ys) - min(ys) + 1] if on else [0, 0, 0, 0]
    return {"counts": counts, "size": [height, width]}, float(len(on)), [float(v) for v in bbox]


def export(ctx: ExportContext, data: dict, save_images: bool = False) -> bytes:
    top = [lb for lb in ctx.labels if lb.get("parent_id") is None]
    cat_of = {lb["id"]: i + 1 for i, lb in enumerate(top)}
    specs = {a["id"]: a["name"] for lb in ctx.labels for a in lb.get("attributes") or []}
    frames = {fr.number: fr for fr in ctx.frames}
    image_id = {fr.number: i + 1 for i, fr in enumerate(ctx.frames)}
    shapes = list(data["shapes"])
    for t in data["tracks"]:
        for f in interpolation.frames(t, ctx.stop_frame):
            if not f["outside"]:
                shapes.append(dict(f, label_id=t["label_id"], group=t.get("group"),
                                   attributes=list(t.get("attributes") or []) + f["attributes"]))
    anns = []
    for s in shapes:
        if s["frame"] not in frames or s["label_id"] not in cat_of:
            continue
        fr, p = frames[s["frame"]], s["points"]
        attrs = {specs.get(a["spec_id"], str(a["spec_id"])): a["value"] for a in s.get("attributes") or []}
        attrs["occluded"] = bool(s.get("occluded"))
        ann = {"id": len(anns) + 1, "image_id": image_id[s["frame"]], "category_id": cat_of[s["label_id"]],
               "iscrowd": 0}
        if s["type"] == "rectangle":
            attrs["rotation"] = float(s.get("rotation") or 0.0)
            ann.update(segmentation=[], area=(p[2] - p[0]) * (p[3] - p[1]), bbox=[p[0], p[1], p[2] - p[0], p[3] - p[1]])
        elif s["type"] == "polygon":
            ann.update(segmentation=[list(p)], area=_polygon_area(p), bbox=_bbox(p[0::2], p[1::2]))
        elif s["type"] == "mask":
            rle, area, bbox = mask_to_coco_rle(p, fr.width, fr.height)
            ann.update(segmentation=rle, area=area, bbox=bbox, iscrowd=1)
        else:
            continue
        ann["attributes"] = attrs
        anns.append(ann)
    doc = {
        "licenses": [{"name": "", "id": 0, "url": ""}],
        "info": {"contributor": "", "date_created": "", "description": "", "url": "", "version": "", "year": ""},
        "categories": [{"id": cat_of[lb["id"]], "name": lb["name"], "supercategory": ""} for lb in top],
        "images": [{"id": image_id[fr.number], "width": fr.width, "height": fr.height, "file_name": fr.name,
                    "license": 0, "flickr_url": "", "coco_url": "", "date_captured": 0} for fr in ctx.frames],
        "annotations": anns,
    }
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("annotations/instances_default.json", json.dumps(doc))
        if save_images:
            for fr in ctx.frames:
                if fr.path:
                    z.write(fr.path, f"images/default/{fr.name}")
    return buf.getvalue()
