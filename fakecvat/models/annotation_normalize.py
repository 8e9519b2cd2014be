"""Validated annotation input → the stored (output) shape: every key present, ids taken from the
store's counters (or kept, for PATCH update), ``rotation`` a float, attribute values strings,
tracks normalised as CVAT does (§8.3)."""
from __future__ import annotations

from typing import Any

from ..store import Store


class IdPool:
    """Ids from the store's counters, reserved in blocks (one journal entry per table per write)."""

    def __init__(self, store: Store):
        self.store = store
        self.blocks: dict[str, Any] = {}

    def reserve(self, table: str, n: int) -> None:
        if n > 0:
            self.blocks[table] = iter(_reserve(self.store, table, n))

    def take(self, table: str) -> int:
        it = self.blocks.get(table)
        if it is not None:
            v = next(it, None)
            if v is not None:
                return v
        return self.store.next_id(table)


def _reserve(store: Store, table: str, n: int) -> range:
    fn = getattr(store, "next_ids", None)
    if fn is not None:
        return fn(table, n)
    return range(0)  # fall back to one id at a time


def _attr_values(attrs) -> list[dict]:
    out = []
    for a in attrs or []:
        v = a["value"]
        if isinstance(v, bool):
            v = "true" if v else "false"
        out.append({"spec_id": int(a["spec_id"]), "value": str(v)})
    return out


def _geometry(o: dict) -> dict:
    return {
        "type": o["type"],
        "occluded": bool(o.get("occluded", False)),
        "outside": bool(o.get("outside", False)),
        "z_order": int(o.get("z_order") or 0),
        "rotation": float(o.get("rotation") or 0.0),
        "points": [float(p) for p in (o.get("points") or [])],
    }


def _keep_id(o, ids: IdPool, table: str, keep: bool) -> int:
    if keep and o.get("id") is not None:
        return int(o["id"])
    return ids.take(table)


def norm_tag(o: dict, ids: IdPool, keep=False) -> dict:
    return {"id": _keep_id(o, ids, "tags", keep), "frame": int(o["frame"]), "label_id": int(o["label_id"]),
            "group": o.get("group"), "source": o.get("source") or "manual",
            "attributes": _attr_values(o.get("attributes"))}


def norm_shape(o: dict, ids: IdPool, keep=False, parent: dict | None = None) -> dict:
    s = _geometry(o)
    s.update({"id": _keep_id(o, ids, "shapes", keep), "frame": int(o["frame"]) if parent is None else parent["frame"],
              "label_id": int(o["label_id"]), "group": o.get("group"), "source": o.get("source") or "manual",
              "attributes": _attr_values(o.get("attributes"))})
    if parent is None:
        s["elements"] = [norm_shape(e, ids, keep, parent=s) for e in o.get("elements") or []]
    return s


def _norm_track_shapes(o: dict, ids: IdPool, keep: bool, is_skeleton: bool) -> tuple[int, list[dict]]:
    """CVAT's track normalisation (§8.3): sort by frame, the track starts at its first shape,
    and a track frame given earlier than that gets an ``outside`` copy of the first shape."""
    shapes = []
    for s in sorted(o.get("shapes") or [], key=lambda s: int(s["frame"])):
        g = _geometry(s)
        g.update({"id": _keep_id(s, ids, "tracked_shapes", keep), "frame": int(s["frame"]),
                  "attributes": _attr_values(s.get("attributes"))})
        shapes.append(g)
    frame = int(o["frame"])
    if shapes and frame < shapes[0]["frame"] and not is_skeleton:
        first = dict(shapes[0], id=ids.take("tracked_shapes"), frame=frame, outside=True)
        shapes.insert(0, first)
    if shapes:
        frame = shapes[0]["frame"]
    return frame, shapes


def norm_track(o: dict, ids: IdPool, keep=False, parent_frame: int | None = None) -> dict | None:
    is_skeleton = bool(o.get("elements")) or any(s.get("type") == "skeleton" for s in o.get("shapes") or [])
    src = o if parent_frame is None else dict(o, frame=min(int(o["frame"]), parent_frame))
    frame, shapes = _norm_track_shapes(src, ids, keep, is_skeleton)
    if not shapes:
        return None  # [2.52] tracks without shapes are discarded
    t = {"id": _keep_id(o, ids, "tracks", keep), "frame": frame, "label_id": int(o["label_id"]),
         "group": o.get("group"), "source": o.get("source") or "manual", "shapes": shapes,
         "attributes": _attr_values(o.get("attributes"))}
    if parent_frame is None:
        els = [norm_track(e, ids, keep, parent_frame=frame) for e in o.get("elements") or []]
        t["elements"] = [e for e in els if e is not None]
    else:
        t["frame"] = parent_frame if parent_frame <= frame else frame
    return t


def _count(data: dict) -> dict[str, int]:
    n_shapes = sum(1 + len(s.get("elements") or []) for s in data.get("shapes", []))
    n_tracks = sum(1 + len(t.get("elements") or []) for t in data.get("tracks", []))
    n_ts = sum(len(t.get("shapes") or []) + 1 + sum(len(e.get("shapes") or []) + 1 for e in t.get("elements") or [])
               for t in data.get("tracks", []))
    return {"tags": len(data.get("tags", [])), "shapes": n_shapes, "tracks": n_tracks, "tracked_shapes": n_ts}


def normalize(store: Store, data: dict, *, keep_ids: bool = False) -> dict:
    """Validated input → stored objects with ids (``keep_ids``: reuse the given ids)."""
    ids = IdPool(store)
    if not keep_ids:
        for table, n in _count(data).items():
            ids.reserve(table, n)
    tracks = [norm_track(t, ids, keep_ids) for t in data.get("tracks", [])]
    return {"tags": [norm_tag(t, ids, keep_ids) for t in data.get("tags", [])],
            "shapes": [norm_shape(s, ids, keep_ids) for s in data.get("shapes", [])],
            "tracks": [t for t in tracks if t is not None]}
