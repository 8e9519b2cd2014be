"""Track interpolation: the per-frame shapes a track stands for between its keyframes.

CVAT stores only keyframes. Exports (and task-level splits of tracks across jobs) need the
shape on every frame:

- between two keyframes the geometry is linear in the frame number (rectangles, ellipses,
  points, cuboids, and polygons/polylines of equal vertex counts; a polygon whose vertex count
  changes, and masks, hold the previous keyframe until the next one; our simplification of
  CVAT's resampling);
- ``rotation`` follows the shorter way round;
- after an ``outside`` keyframe the object is absent until the next keyframe;
- after the last keyframe the shape holds until ``stop_frame`` unless it went outside.
Skeleton tracks interpolate each element track on its own. Inputs may be stored or request
documents: missing fields take CVAT's defaults.
"""
from __future__ import annotations

from typing import Iterator


def _g(s: dict) -> dict:
    return {"type": s["type"], "points": [float(p) for p in s.get("points") or []],
            "rotation": float(s.get("rotation") or 0.0), "occluded": bool(s.get("occluded", False)),
            "outside": bool(s.get("outside", False)), "z_order": int(s.get("z_order") or 0),
            "attributes": list(s.get("attributes") or [])}


def _lerp_points(a: list[float], b: list[float], t: float) -> list[float]:
    return [x + (y - x) * t for x, y in zip(a, b)]


def _lerp_rotation(a: float, b: float, t: float) -> float:
    d = (b - a + 180.0) % 360.0 - 180.0
    return (a + d * t) % 360.0


def between(a: dict, b: dict, frame: int) -> dict:
    """The shape at ``frame`` strictly between keyframes ``a`` and ``b`` (not a keyframe)."""
    out = _g(a)
    out["frame"] = frame
    out["keyframe"] = False
    t = (frame - int(a["frame"])) / (int(b["frame"]) - int(a["frame"]))
    pa, pb = out["points"], [float(p) for p in b.get("points") or []]
    if a["type"] == b["type"] and a["type"] != "mask" and len(pa) == len(pb) and pa:
        out["points"] = _lerp_points(pa, pb, t)
    out["rotation"] = _lerp_rotation(out["rotation"], float(b.get("rotation") or 0.0), t)
    return out


def frames(track: dict, stop_frame: int, start_frame: int = 0) -> Iterator[dict]:
    """Every frame's shape of one (non-skeleton-element) track within [start_frame, stop_frame],
    keyframes flagged ``keyframe: True``; outside stretches are yielded only at keyframes."""
    keys = sorted(track.get("shapes") or [], key=lambda s: int(s["frame"]))
    for i, k in enumerate(keys):
        f0 = int(k["frame"])
        nxt = keys[i + 1] if i + 1 < len(keys) else None
        if start_frame <= f0 <= stop_frame:
            out = _g(k)
            out.update(frame=f0, keyframe=True)
            yield out
        if k.get("outside"):
            continue
        end = int(nxt["frame"]) - 1 if nxt is not None else stop_frame
        for f in range(max(f0 + 1, start_frame), min(end, stop_frame) + 1):
            if nxt is not None:
                yield between(k, nxt, f)
            else:
                out = _g(k)
                out.update(frame=f, keyframe=False)
                yield out


def shape_at(track: dict, frame: int) -> dict | None:
    """The (possibly interpolated) visible shape of a track at ``frame``, or None."""
    keys = sorted(track.get("shapes") or [], key=lambda s: int(s["frame"]))
    prev = None
    for k in keys:
        if int(k["frame"]) <= frame:
            prev = k
        else:
            if prev is None or prev.get("outside"):
                return None
            if int(prev["frame"]) == frame:
                break
            return between(prev, k, frame)
    if prev is None or prev.get("outside"):
        return None
    out = _g(prev)
    out.update(frame=frame, keyframe=int(prev["frame"]) == frame)
    return out


def _cut_shapes(track: dict, start: int, stop: int) -> list[dict] | None:
    shapes = sorted(track.get("shapes") or [], key=lambda s: int(s["frame"]))
    inside = [s for s in shapes if start <= int(s["frame"]) <= stop]
    if not any(int(s["frame"]) == start for s in inside):
        at = shape_at(track, start)
        if at is not None:
            at.pop("keyframe", None)
            inside.insert(0, at)
    return inside or None


def cut_track(track: dict, start: int, stop: int) -> dict | None:
    """The piece of a request track that falls in [start, stop], or None if it has none.
    A piece starting inside an earlier stretch gets an interpolated keyframe at ``start``."""
    shapes = _cut_shapes(track, start, stop)
    if shapes is None:
        return None
    piece = dict(track, shapes=shapes)
    frame = int(track["frame"])
    piece["frame"] = frame if start <= frame <= stop else int(shapes[0]["frame"])
    if track.get("elements"):
        els = []
        for e in track["elements"]:
            es = _cut_shapes(e, start, stop)
            if es:
                els.append(dict(e, shapes=es, frame=piece["frame"]))
        if not els:
            return None  # a skeleton exists only through its elements
        piece["elements"] = els
    return piece
