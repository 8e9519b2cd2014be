"""FiftyOne label JSON <-> CVAT annotations, for every label family.

Three steps, in the order syncd uses them:
- ``export_sample``: one sample's fields -> CVAT tags/shapes that name labels and attributes by
  *name* (so they can be built before the task exists), plus the FiftyOne ids sent per field;
- ``resolve_ids``: names -> the server's label ids and ``spec_id``s, once the task exists;
- ``import_annotations``: a job's LabeledData (id form) -> FiftyOne JSON per sample and field.
Each family module converts both ways; this module only dispatches. Images only for now:
tracks are neither sent nor read.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..ids import new_id, oid
from ..schema import FieldSchema, class_map, label_name_map
from . import detections, keypoints, masks, polylines, segmentation, tags, tracks
from .attributes import import_attrs, stringify
from .base import ExportContext

log = logging.getLogger(__name__)

__all__ = ["export_sample", "resolve_ids", "import_annotations", "SCALAR_SENT"]
SCALAR_SENT = tags.SCALAR_SENT

_EXPORTERS = {
    "classification": tags.export_classifications, "classifications": tags.export_classifications,
    "scalar": tags.export_scalar,
    "detection": detections.export_detections, "detections": detections.export_detections,
    "instance": detections.export_detections, "instances": detections.export_detections,
    "polyline": polylines.export_polylines, "polylines": polylines.export_polylines,
    "polygon": polylines.export_polylines, "polygons": polylines.export_polylines,
    "keypoint": keypoints.export_keypoints, "keypoints": keypoints.export_keypoints,
    "segmentation": segmentation.export_segmentation,
}
_CONTAINERS = {"classifications": ("Classifications", "classifications"),
               "detections": ("Detections", "detections"),
               "polylines": ("Polylines", "polylines"),
               "keypoints": ("Keypoints", "keypoints")}


def export_sample(sample: dict, frame: int, schema: dict[str, FieldSchema], width: int,
                  height: int, root: str | Path | None) -> tuple[dict, dict[str, list[str]]]:
    """One image sample -> ({"tags", "shapes", "tracks"}, {field: FiftyOne ids sent})."""
    ctx = ExportContext(frame, int(width), int(height), Path(root) if root else None,
                        label_name_map(schema))
    out: dict[str, list] = {"tags": [], "shapes": [], "tracks": []}
    sent: dict[str, list[str]] = {}
    for name, fs in schema.items():
        items, ids = _EXPORTERS[fs.type](sample.get(name), fs, ctx)
        out["tags" if fs.return_type in ("classifications", "scalar") else "shapes"] += items
        sent[name] = ids
    return out, sent


def resolve_ids(items: dict, task_labels: list[dict]) -> dict:
    """Name form -> id form for PUT annotations; unknown labels and attributes are dropped."""
    by_name = {lab["name"]: lab for lab in task_labels}

    def one(item: dict) -> dict | None:
        lab = by_name.get(item.get("label"))
        if lab is None:
            log.warning("CVAT task has no label %r; item dropped", item.get("label"))
            return None
        specs = {a["name"]: a["id"] for a in lab.get("attributes") or []}
        d = {k: v for k, v in item.items() if k not in ("label", "attributes")}
        d["label_id"] = lab["id"]
        d["attributes"] = [{"spec_id": specs[n], "value": stringify(v)}
                           for n, v in (item.get("attributes") or {}).items() if n in specs]
        return d

    out = {"version": items.get("version", 0)}
    for key in ("tags", "shapes"):
        out[key] = [d for d in map(one, items.get(key) or []) if d is not None]
    # tracks (videos): built by syncd.labels.video, resolved by syncd.labels.tracks
    out["tracks"] = tracks.resolve_tracks(items.get("tracks") or [], task_labels)
    return out


class _Collector:
    """Labels gathered per sample and field while reading one or more jobs."""

    def __init__(self, schema: dict[str, FieldSchema], unexpected: str):
        self.schema, self.unexpected = schema, unexpected
        self.labels: dict[Any, dict[str, list]] = {}     # sample -> field -> [label]
        self.types: dict[str, str] = {}                  # unexpected field -> return type
        self.scalars: dict[Any, dict[str, Any]] = {}
        self.pieces: dict[Any, dict[str, list]] = {}     # segmentation pieces
        self.sizes: dict[Any, tuple[int, int]] = {}

    def add(self, sample: Any, fs: FieldSchema | None, rtype: str, label: dict | None) -> None:
        if label is None:
            return
        if fs is not None and rtype == fs.return_type:
            target = fs.name
        elif self.unexpected == "keep" and (fs is None or fs.allow_additions):
            target = rtype  # FiftyOne's "keep": a field named after the type
            self.types[target] = rtype
        else:
            return
        self.labels.setdefault(sample, {}).setdefault(target, []).append(label)


def _shape_label(shape: dict, fs: FieldSchema | None, cls: Any, attrs: dict, lid: str | None,
                 w: int, h: int) -> tuple[str, dict | None] | None:
    """A CVAT shape -> (return type, label) following §3.3's table; None if ignored."""
    st, pts = shape.get("type"), shape.get("points") or []
    rt = fs.return_type if fs else None
    if st == "rectangle" and len(pts) >= 4:
        return "detections", detections.rectangle_to_detection(cls, pts, w, h, attrs, lid)
    if st == "mask" and len(pts) >= 4:
        # FiftyOne traces masks into polylines for polyline fields; we keep the exact mask
        return "detections", detections.mask_to_detection(cls, pts, w, h, attrs, lid)
    if st == "polygon" and rt == "detections":
        return "detections", detections.polygon_to_detection(cls, pts, w, h, attrs, lid)
    if st in ("polygon", "polyline"):
        filled = not (fs and fs.type in ("polyline", "polylines"))
        return "polylines", polylines.shape_to_polyline(cls, st, pts, w, h, attrs, lid, filled)
    if st == "points":
        return "keypoints", keypoints.points_to_keypoint(cls, pts, w, h, attrs, lid)
    log.debug("ignoring CVAT shape of type %r", st)
    return None


def import_annotations(annotations: dict, task_labels: list[dict], frames: dict[int, dict],
                       schema: dict[str, FieldSchema], unexpected: str = "keep") -> dict:
    """CVAT LabeledData (id form) -> {sample key: {field: FiftyOne JSON value}}.

    Every schema field of every sample in ``frames`` is present (empty container or None), so
    the merge can tell deletions from "not downloaded". Masks are numpy arrays under ``mask``.
    """
    labels_by_id = {lab["id"]: (lab["name"], {a["id"]: a["name"] for a in lab.get("attributes") or []})
                    for lab in task_labels}
    cmap = class_map(schema)
    col = _Collector(schema, unexpected)
    for info in frames.values():
        col.sizes[info["sample"]] = (int(info["width"]), int(info["height"]))

    resolved: dict[Any, tuple | None] = {}  # CVAT label id -> what locate needs (per label, not per item)

    def resolve(cvat_label):
        lab = labels_by_id.get(cvat_label)
        if lab is None:
            return None
        name, specs = lab
        fname, cls = cmap.get(name, (None, name))
        fs = schema.get(fname) if fname else None
        if fs is not None and cls is None:
            cls = name  # a classless field's one label
        return specs, fs, cls, (fs.attrs_for(cls) if fs else {})

    def locate(item):
        info = frames.get(item.get("frame"))
        cvat_label = item.get("label_id")  # (an int: the client checked CVAT's answer)
        if cvat_label not in resolved:
            resolved[cvat_label] = resolve(cvat_label)
        found = resolved[cvat_label]
        if info is None or found is None:
            return None
        specs, fs, cls, field_attrs = found
        attrs, lid = import_attrs(item, specs, field_attrs)
        return info, fs, cls, attrs, lid

    for tag in annotations.get("tags") or []:
        loc = locate(tag)
        if loc is None:
            continue
        info, fs, cls, attrs, lid = loc
        if fs is not None and fs.type == "scalar":
            value = tags.tag_to_scalar(cls if fs.classes else None, attrs)
            col.scalars.setdefault(info["sample"], {}).setdefault(fs.name, value)
            continue
        col.add(info["sample"], fs, "classifications", tags.tag_to_classification(cls, attrs, lid))

    for shape in annotations.get("shapes") or []:
        loc = locate(shape)
        if loc is None:
            continue
        info, fs, cls, attrs, lid = loc
        w, h = int(info["width"]), int(info["height"])
        st = shape.get("type")
        if fs is not None and fs.type == "segmentation" and st in ("mask", "polygon"):
            pts = shape.get("points") or []
            full = (masks.mask_shape_to_full(pts, w, h) if st == "mask"
                    else masks.polygon_to_full(pts, w, h))
            col.pieces.setdefault(info["sample"], {}).setdefault(fs.name, []).append((cls, full, lid))
            continue
        res = _shape_label(shape, fs, cls, attrs, lid, w, h)
        if res is not None:
            col.add(info["sample"], fs, *res)
    return _assemble(col)


def _unique_ids(labels: list[dict], used: set[str]) -> list[dict]:
    """Later labels repeating an id already seen in this import get fresh ids."""
    for lab in labels:
        # (every label here was built by new_label: its id is {"$oid": lower-case hex})
        lid = lab["_id"]["$oid"]
        if lid in used:
            lid = new_id()
            lab["_id"] = oid(lid)
        used.add(lid)
    return labels


def _assemble(col: _Collector) -> dict:
    out: dict[Any, dict[str, Any]] = {}
    used: set[str] = set()
    for sample, (w, h) in col.sizes.items():
        got = col.labels.get(sample, {})
        res: dict[str, Any] = {}
        for fname, fs in col.schema.items():
            if fs.type == "scalar":
                res[fname] = col.scalars.get(sample, {}).get(fname)
            elif fs.type == "segmentation":
                pieces = col.pieces.get(sample, {}).get(fname)
                res[fname] = segmentation.assemble(pieces, fs, w, h) if pieces else None
            else:
                labs = got.get(fname, [])
                if fs.return_type == "polylines":
                    labs = polylines.join_parts(labs)
                labs = _unique_ids(labs, used)
                if fs.is_list:
                    cls_name, key = _CONTAINERS[fs.return_type]
                    res[fname] = {"_cls": cls_name, key: labs}
                else:
                    res[fname] = labs[0] if labs else None
        for fname, rtype in col.types.items():
            if fname in col.schema or not got.get(fname):
                continue
            labs = got[fname]
            if rtype == "polylines":
                labs = polylines.join_parts(labs)
            cls_name, key = _CONTAINERS[rtype]
            res[fname] = {"_cls": cls_name, key: _unique_ids(labs, used)}
        out[sample] = res
    return out
