"""Merging the tracks of overlapping jobs into one task-level list, as CVAT's TrackManager does:
a later job's track that starts in the overlap joins the earlier track it matches there (same
label, mean IoU of their interpolated shapes over the overlap >= 0.5; shapes united by frame,
the earlier job's winning), and an earlier track left unmatched is closed with an ``outside``
shape where the overlap ends."""
from __future__ import annotations

import copy

from .interpolation import shape_at


def merge_tracks(old: list[dict], new: list[dict], start: int, end: int) -> None:
    candidates = [t for t in old if t["shapes"] and (int(t["shapes"][-1]["frame"]) >= start
                                                     or not t["shapes"][-1].get("outside"))]
    matched: set[int] = set()
    for t in new:
        t = copy.deepcopy(t)
        if int(t["frame"]) > end:
            old.append(t)
            continue
        best, score = None, 0.5
        for o in candidates:
            if id(o) not in matched and o.get("label_id") == t.get("label_id"):
                sim = _track_similarity(o, t, start, end)
                if sim >= score:
                    best, score = o, sim
        if best is None:
            old.append(t)
            continue
        matched.add(id(best))
        _unite(best, t)
    for o in candidates:
        last = o["shapes"][-1]
        if id(o) not in matched and not last.get("outside"):
            o["shapes"].append(dict(copy.deepcopy(last), frame=end + 1, outside=True))  # id kept, as CVAT's copy


def _box(points) -> tuple[float, float, float, float] | None:
    xs, ys = [float(p) for p in points[0::2]], [float(p) for p in points[1::2]]
    return (min(xs), min(ys), max(xs), max(ys)) if xs and ys else None


def _iou(a: dict, b: dict) -> float:
    p, q = _box(a.get("points") or []), _box(b.get("points") or [])
    if p is None or q is None:
        return 1.0 if p is None and q is None else 0.0  # skeletons: the label decides
    inter = max(0.0, min(p[2], q[2]) - max(p[0], q[0])) * max(0.0, min(p[3], q[3]) - max(p[1], q[1]))
    union = (p[2] - p[0]) * (p[3] - p[1]) + (q[2] - q[0]) * (q[3] - q[1]) - inter
    return inter / union if union > 0 else float(p == q)


def _track_similarity(a: dict, b: dict, start: int, end: int) -> float:
    total = count = 0.0
    for f in range(start, end + 1):
        sa, sb = shape_at(a, f), shape_at(b, f)
        if sa is None and sb is None:
            continue
        count += 1
        total += _iou(sa, sb) if sa is not None and sb is not None else 0.0
    return total / count if count else 0.0


def _unite(old: dict, new: dict) -> None:
    """Shapes of both by frame (the earlier job's shape wins a shared frame); elements alike."""
    def union(a: list[dict], b: list[dict]) -> list[dict]:
        by_frame = {int(s["frame"]): s for s in b}
        by_frame.update({int(s["frame"]): s for s in a})
        return [by_frame[f] for f in sorted(by_frame)]
    old["shapes"] = union(old.get("shapes") or [], new.get("shapes") or [])
    old["frame"] = min(int(old["frame"]), int(new["frame"]))
    pieces = {e.get("label_id"): e for e in new.get("elements") or []}
    for e in old.get("elements") or []:
        if e.get("label_id") in pieces:
            e["shapes"] = union(e.get("shapes") or [], pieces[e["label_id"]].get("shapes") or [])
            e["frame"] = old["frame"]

