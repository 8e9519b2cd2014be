"""Structural checks of a parsed sample file, so hostile content fails early with one line.

``dataset.read_sample`` runs these after parsing: a sample whose tags, metadata or labels have
the wrong shape (a string where a list belongs, NaN or out-of-image coordinates, a 100k-character
label) is refused with a SampleFileError naming the file and the key path, instead of crashing
later inside label export or CVAT upload with a traceback. Only FiftyOne classes syncd converts
are checked; fields of other classes are left alone (they are carried along, never sent).
"""
from __future__ import annotations

import math
from typing import Any

from syncd.errors import SampleFileError

MAX_DEPTH = 100          # FiftyOne samples nest ~6 levels; deeper recursion breaks deepcopy/json
MAX_LABEL_CHARS = 256    # CVAT label names are at most 64 characters; generous for classes
BOX_TOLERANCE = 0.01     # detectors emit boxes a hair outside the image; that is not hostile

_LISTS = {"Detections": ("detections", "Detection"), "Polylines": ("polylines", "Polyline"),
          "Keypoints": ("keypoints", "Keypoint"), "Classifications": ("classifications", "Classification")}
_SINGLE = {"Detection", "Polyline", "Keypoint", "Classification"}


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def check_depth(path, obj: Any) -> None:
    """Refuse JSON nested deeper than MAX_DEPTH. It recurses, one frame per level, and stops at
    MAX_DEPTH + 1: well inside Python's limit. (An explicit stack pushing every value, scalars
    too, cost 60 us for a sample with 20 boxes, six times its parse; this walk takes 15 us.)"""
    if type(obj) is dict or type(obj) is list:
        _check_level(path, obj, 1)


def _check_level(path, v, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise SampleFileError(f"{path}: invalid sample file: nested deeper than {MAX_DEPTH} levels")
    for x in (v.values() if type(v) is dict else v):
        if type(x) is dict or type(x) is list:  # (parsed JSON: exact types, no subclasses)
            _check_level(path, x, depth + 1)


def _fail(path, key: str, reason: str) -> SampleFileError:
    return SampleFileError(f"{path}: {key}: {reason}")


def _short(v: Any) -> str:
    s = repr(v)
    return s if len(s) <= 60 else s[:57] + "..."


def _label(path, key: str, lab: Any, cls: str) -> None:
    if not isinstance(lab, dict):
        raise _fail(path, key, f"must be a {cls} object, got {type(lab).__name__}")
    name = lab.get("label")
    if name is not None:
        if not isinstance(name, str):
            raise _fail(path, f"{key}.label", f"must be a string, got {_short(name)}")
        if len(name) > MAX_LABEL_CHARS:
            raise _fail(path, f"{key}.label", f"string of {len(name)} characters "
                                              f"(at most {MAX_LABEL_CHARS})")
    if cls == "Detection" and lab.get("bounding_box") is not None:
        box = lab["bounding_box"]
        if not isinstance(box, list) or len(box) != 4 or not all(_num(x) for x in box):
            raise _fail(path, f"{key}.bounding_box", f"must be 4 numbers [x, y, w, h], got {_short(box)}")
        if not all(math.isfinite(x) for x in box):
            raise _fail(path, f"{key}.bounding_box", f"has a NaN or infinite coordinate {_short(box)}")
        x, y, w, h = box
        lo, hi = -BOX_TOLERANCE, 1 + BOX_TOLERANCE
        if w < 0 or h < 0 or not (lo <= x <= hi and lo <= y <= hi and x + w <= hi and y + h <= hi):
            raise _fail(path, f"{key}.bounding_box", f"is outside 0..1 {_short(box)}")
    if cls in ("Polyline", "Keypoint") and lab.get("points") is not None:
        pts = lab["points"]
        # Polylines hold shapes (lists of [x, y]); keypoints hold [x, y] directly, NaN = not visible.
        shapes = pts if cls == "Polyline" else [pts]
        if not isinstance(shapes, list) or not all(isinstance(s, list) for s in shapes):
            raise _fail(path, f"{key}.points", f"must be lists of [x, y] pairs, got {_short(pts)}")
        for s in shapes:
            for p in s:
                if not (isinstance(p, list) and len(p) == 2 and all(_num(c) for c in p)):
                    raise _fail(path, f"{key}.points", f"must be [x, y] number pairs, got {_short(p)}")
                finite = [math.isfinite(c) for c in p]
                if cls == "Polyline" and not all(finite):
                    raise _fail(path, f"{key}.points", f"has a NaN or infinite coordinate {_short(p)}")
                if any(math.isinf(c) for c in p):
                    raise _fail(path, f"{key}.points", f"has an infinite coordinate {_short(p)}")


def _field(path, key: str, value: Any) -> None:
    if not isinstance(value, dict):
        return
    cls = value.get("_cls")
    if cls in _LISTS:
        list_key, item_cls = _LISTS[cls]
        items = value.get(list_key)
        if items is None:
            return
        if not isinstance(items, list):
            raise _fail(path, f"{key}.{list_key}", f"must be a list, got {_short(items)}")
        for i, lab in enumerate(items):
            _label(path, f"{key}.{list_key}[{i}]", lab, item_cls)
    elif cls in _SINGLE:
        _label(path, key, value, cls)


def check_sample(path, doc: dict) -> None:
    """Raise SampleFileError naming ``path`` and the key if ``doc`` has a hostile shape."""
    tags = doc.get("tags")
    if tags is not None and (not isinstance(tags, list) or not all(isinstance(t, str) for t in tags)):
        raise _fail(path, "tags", f"must be a list of strings, got {_short(tags)}")
    fp = doc.get("filepath")
    if fp is not None and not isinstance(fp, str):
        raise _fail(path, "filepath", f"must be a string, got {_short(fp)}")
    md = doc.get("metadata")
    if md is not None:
        if not isinstance(md, dict):
            raise _fail(path, "metadata", f"must be an object, got {_short(md)}")
        for k in ("width", "height", "frame_width", "frame_height"):
            v = md.get(k)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v <= 0):
                raise _fail(path, f"metadata.{k}", f"must be a positive integer, got {_short(v)}")
    for name, value in doc.items():
        if name in ("tags", "filepath", "metadata", "frames"):
            continue
        _field(path, str(name), value)
    frames = doc.get("frames")
    if isinstance(frames, dict):
        for fn, frame in frames.items():
            if isinstance(frame, dict):
                for name, value in frame.items():
                    _field(path, f"frames.{fn}.{name}", value)
