"""CVAT tracks both ways: frame labels -> tracks on upload, tracks -> per-frame shapes on download.

Upload (reference/fiftyone-cvat.md §3.2 "Video tracks"): the labels of one video that share a
(CVAT label, ``index``) form one track. CVAT stores only keyframes, so the track needs an
``outside`` copy of the last visible shape after every gap and after its last frame (unless
that is the last uploaded frame), otherwise CVAT would carry the object across the gap.
With ``only_keyframes`` (some label carries ``keyframe=True``) only keyframes and the first
frame after a gap are sent; CVAT interpolates the rest.

Download (§3.5, cvat-api.md §8.1): a track becomes one shape per frame, computed the way CVAT's
server does it (``TrackManager.get_interpolated_shapes``): linear for rectangles, ellipses,
cuboids and single points; multi-point ``points`` hold the previous keyframe; polygons and
polylines follow CVAT's curve-matching interpolation; ``rotation`` turns the short way round;
attributes missing on a keyframe come from the previous one; nothing is produced while the
track is ``outside``; after the last visible keyframe the shape holds to the end.
"""
from __future__ import annotations

import logging
import math
from typing import Any

from .attributes import stringify

log = logging.getLogger(__name__)

_LINEAR = ("rectangle", "ellipse", "cuboid", "skeleton")
_TRACK_SHAPE_KEYS = ("type", "points", "occluded", "z_order", "rotation")


# ---- upload -------------------------------------------------------------------------------------

def build_track(label: str, seq: list[tuple[int, dict, dict]], last_frame: int,
                only_keyframes: bool, immutable: dict) -> dict | None:
    """One track (name form) from ``seq`` = [(task frame, shape item, FiftyOne label)].

    ``last_frame`` is the last task frame of the upload: a track ending before it gets an
    ``outside`` marker on the next frame. ``immutable`` holds the track-level attribute values.
    """
    seq = sorted(seq, key=lambda e: e[0])
    shapes: list[dict] = []
    prev_frame, prev_shape = None, None
    for frame, shape, lab in seq:
        if prev_frame is not None and frame == prev_frame:
            log.warning("track %r has two labels on task frame %d; keeping the first", label, frame)
            continue
        gap = prev_frame is not None and frame > prev_frame + 1
        if gap:
            shapes.append(_track_shape(prev_shape, prev_frame + 1, outside=True))
        if not only_keyframes or lab.get("keyframe") or prev_frame is None or gap:
            shapes.append(_track_shape(shape, frame))
        prev_frame, prev_shape = frame, shape
    if prev_frame is None:
        return None
    if prev_frame < last_frame:
        shapes.append(_track_shape(prev_shape, prev_frame + 1, outside=True))
    first = seq[0][1]
    return {"label": label, "frame": shapes[0]["frame"], "group": int(first.get("group") or 0),
            "source": "manual", "attributes": dict(immutable), "shapes": shapes, "elements": []}


def _track_shape(shape: dict, frame: int, outside: bool = False) -> dict:
    d = {k: shape[k] for k in _TRACK_SHAPE_KEYS if k in shape}
    d.update(frame=int(frame), outside=bool(outside),
             attributes=dict(shape.get("attributes") or {}))
    return d


def resolve_tracks(tracks: list[dict], task_labels: list[dict]) -> list[dict]:
    """Name form -> id form (``label_id``, ``spec_id``s) for tracks; unknown labels dropped.

    Track-level attributes must be immutable specs and track-shape attributes mutable ones
    (CVAT rejects anything else), so each value goes where its spec allows.
    """
    by_name = {lab["name"]: lab for lab in task_labels}
    out = []
    for t in tracks:
        lab = by_name.get(t.get("label"))
        if lab is None:
            log.warning("CVAT task has no label %r; track dropped", t.get("label"))
            continue
        specs = {a["name"]: a for a in lab.get("attributes") or []}

        def attrs(values: dict, mutable: bool) -> list[dict]:
            return [{"spec_id": specs[n]["id"], "value": stringify(v)} for n, v in values.items()
                    if n in specs and bool(specs[n].get("mutable", True)) == mutable]
        d = {k: v for k, v in t.items() if k not in ("label", "attributes", "shapes")}
        d["label_id"] = lab["id"]
        d["attributes"] = attrs(t.get("attributes") or {}, mutable=False)
        d["shapes"] = [dict({k: v for k, v in s.items() if k != "attributes"},
                            attributes=attrs(s.get("attributes") or {}, mutable=True))
                       for s in t.get("shapes") or []]
        out.append(d)
    return out


# ---- download: interpolation ----------------------------------------------------------------------

def interpolate_track(track: dict, stop_frame: int, start_frame: int = 0) -> list[dict]:
    """The visible shape of ``track`` on every frame in [start_frame, stop_frame].

    Each result: {frame, type, points, rotation, occluded, z_order, attributes, keyframe}.
    Frames where the track is outside have no entry.
    """
    keys = _keyframes(track)
    out: list[dict] = []
    for i, key in enumerate(keys):
        f0 = key["frame"]
        if f0 > stop_frame:
            break
        if not key["outside"] and f0 >= start_frame:
            out.append(dict(key, keyframe=True))
        if key["outside"]:
            continue
        nxt = keys[i + 1] if i + 1 < len(keys) else None
        end = min(nxt["frame"] - 1 if nxt else stop_frame, stop_frame)
        for f in range(max(f0 + 1, start_frame), end + 1):
            out.append(between(key, nxt, f) if nxt else dict(key, frame=f, keyframe=False))
    return out


def _keyframes(track: dict) -> list[dict]:
    """Sorted, normalised keyframes with attributes carried over from the previous one."""
    raw = sorted(track.get("shapes") or [], key=lambda s: int(s.get("frame", 0)))
    keys: list[dict] = []
    carried: dict[Any, Any] = {}
    for s in raw:
        own = {a.get("spec_id"): a.get("value") for a in s.get("attributes") or []}
        carried = {**carried, **own}
        k = {"frame": int(s.get("frame", 0)), "type": s.get("type"),
             "points": [float(p) for p in s.get("points") or []],
             "rotation": float(s.get("rotation") or 0.0), "occluded": bool(s.get("occluded")),
             "outside": bool(s.get("outside")), "z_order": int(s.get("z_order") or 0),
             "attributes": [{"spec_id": sid, "value": v} for sid, v in carried.items()],
             "own_attributes": own}
        if keys and keys[-1]["frame"] == k["frame"]:
            keys[-1] = k  # two shapes on one frame: CVAT keeps one; the later write wins
        else:
            keys.append(k)
    return keys


def between(a: dict, b: dict, frame: int) -> dict:
    """The shape at ``frame`` strictly between keyframes ``a`` and ``b``."""
    t = (frame - a["frame"]) / (b["frame"] - a["frame"])
    out = dict(a, frame=frame, keyframe=False)
    pa, pb, kind = a["points"], b["points"], a["type"]
    if kind != b["type"]:
        return out  # CVAT refuses to interpolate across types; hold the last keyframe
    if kind in _LINEAR or (kind == "points" and len(pa) == 2 and len(pb) == 2):
        if len(pa) == len(pb):
            out["points"] = [x + (y - x) * t for x, y in zip(pa, pb)]
        out["rotation"] = _rotation(a["rotation"], b["rotation"], t)
    elif kind in ("polygon", "polyline") and len(pa) >= 2 and len(pb) >= 2:
        out["points"] = polyshape(pa, pb, t, closed=kind == "polygon")
    return out


def _rotation(r0: float, r1: float, t: float) -> float:
    d = ((r1 - r0 + 180.0) % 360.0) - 180.0
    if abs(d) >= 180.0:
        d = 1.0  # CVAT's own quirk for exactly opposite angles (kept so values match the server)
    return (r0 + d * t + 360.0) % 360.0


# ---- polygon / polyline interpolation (CVAT's curve matching) -----------------------------------
#
# Each vertex gets its relative arc position on its curve (0..1). Every vertex of the first
# curve is paired with the vertex of the second whose position is nearest, and second-curve
# vertices left unpaired join the first-curve vertex nearest to them. Each pair is moved
# linearly; the resulting point run is then thinned per segment (points closer than
# segment length / (2 * vertices) to the last kept one are dropped), as CVAT does.

def _pairs(flat: list[float]) -> list[tuple[float, float]]:
    return [(flat[i], flat[i + 1]) for i in range(0, len(flat) - 1, 2)]


def _dist(p: tuple[float, float], q: tuple[float, float]) -> float:
    return math.hypot(p[0] - q[0], p[1] - q[1])


def _length(pts: list[tuple[float, float]]) -> float:
    return sum(_dist(pts[i - 1], pts[i]) for i in range(1, len(pts)))


def _arc_positions(pts: list[tuple[float, float]]) -> list[float]:
    total = _length(pts)
    out, run = [0.0], 0.0
    for i in range(1, len(pts)):
        run += _dist(pts[i - 1], pts[i])
        out.append(run / total if total else 0.0)
    return out


def _nearest(value: float, positions: list[float]) -> int:
    best, best_d = 0, abs(value - positions[0])
    for i in range(1, len(positions)):
        d = abs(value - positions[i])
        if d < best_d:
            best, best_d = i, d
    return best


def polyshape(a_flat: list[float], b_flat: list[float], t: float, closed: bool) -> list[float]:
    """Points of a polygon (``closed``) or polyline at fraction ``t`` from ``a`` to ``b``."""
    left, right = _pairs(a_flat), _pairs(b_flat)
    if closed:  # closed for the computation; the duplicate end is cut off again below
        left, right = left + left[:1], right + right[:1]
    lpos, rpos = _arc_positions(left), _arc_positions(right)
    match = {i: [_nearest(p, rpos)] for i, p in enumerate(lpos)}
    paired = {j for js in match.values() for j in js}
    for j, p in enumerate(rpos):
        if j not in paired:
            match[_nearest(p, lpos)].append(j)
    for i in match:
        match[i].sort()
    moved: list[tuple[float, float]] = []
    slots: dict[int, list[int]] = {}
    for i, lp in enumerate(left):
        slots[i] = []
        for j in match[i]:
            rp = right[j]
            slots[i].append(len(moved))
            moved.append((lp[0] + (rp[0] - lp[0]) * t, lp[1] + (rp[1] - lp[1]) * t))
    kept = _thin(moved, match, slots, left, right)
    flat = [c for p in kept for c in p]
    return flat[:-2] if closed else flat


def _thin(moved, match, slots, left, right) -> list[tuple[float, float]]:
    kept: list[tuple[float, float]] = []

    def segment(base: float, n: int, first: int, last: int) -> None:
        limit = base / (2 * n)
        seg, latest = [moved[first]], first
        for k in range(first + 1, last):
            if _dist(moved[latest], moved[k]) >= limit:
                seg.append(moved[k])
                latest = k
        seg.append(moved[last])
        if len(seg) == 2 and _dist(moved[first], moved[last]) < limit:
            seg = [(sum(p[0] for p in seg) / 2, sum(p[1] for p in seg) / 2)]
        kept.extend(seg)

    def left_run(s: int, e: int) -> None:
        first, last = slots[s][0], slots[e][0]
        if first == last:
            kept.append(moved[first])
            return
        segment(_length(left[s:e + 1]), e - s + 1, first, last)

    def right_run(i: int) -> None:
        s, e = match[i][0], match[i][-1]
        segment(_length(right[s:e + 1]), e - s + 1, slots[i][0], slots[i][-1])

    opened = None
    for i in range(len(left)):
        if len(match[i]) == 1:
            if opened is None:
                opened = i
            elif match[i][0] != match[opened][0]:
                left_run(opened, i - 1)
                opened = i
        else:
            if opened is not None:
                left_run(opened, i - 1)
                opened = None
            right_run(i)
    if opened is not None:
        left_run(opened, len(left) - 1)
    return kept
