"""What CVAT adds to annotations on output (reference/cvat-api.md §8.1): attribute values
missing in the database are filled from the label specs (shapes and tags: every spec; tracks:
immutable specs; track shapes: mutable values carried from the previous keyframe). Writes answer
the objects as written, without this filling, as CVAT does."""
from __future__ import annotations

from .annotation_labels import LabelIndex


def _fill(attrs: list[dict], defaults: list[dict]) -> list[dict]:
    if not defaults:
        return attrs
    have = {a["spec_id"] for a in attrs}
    missing = [d for d in defaults if d["spec_id"] not in have]
    return attrs + missing if missing else attrs


def fill_shape(s: dict, idx: LabelIndex) -> dict:
    attrs = _fill(s["attributes"], idx.all_defaults.get(s["label_id"], ()))
    els = s.get("elements")
    new_els = [fill_shape(e, idx) for e in els] if els else els
    if attrs is s["attributes"] and (not els or all(a is b for a, b in zip(new_els, els))):
        return s
    out = dict(s, attributes=attrs)
    if els is not None:
        out["elements"] = new_els
    return out


def fill_tag(t: dict, idx: LabelIndex) -> dict:
    attrs = _fill(t["attributes"], idx.all_defaults.get(t["label_id"], ()))
    return t if attrs is t["attributes"] else dict(t, attributes=attrs)


def fill_track(t: dict, idx: LabelIndex) -> dict:
    lid = t["label_id"]
    attrs = _fill(t["attributes"], idx.immutable_defaults.get(lid, ()))
    mutable = idx.mutable_ids.get(lid) or []
    shapes = t["shapes"]
    if mutable:
        defaults = {d["spec_id"]: d["value"] for d in idx.all_defaults[lid] if d["spec_id"] in mutable}
        current = dict(defaults)
        shapes = []
        for s in t["shapes"]:
            for a in s["attributes"]:
                current[a["spec_id"]] = a["value"]
            have = {a["spec_id"] for a in s["attributes"]}
            missing = [{"spec_id": k, "value": current[k]} for k in mutable if k not in have]
            shapes.append(dict(s, attributes=s["attributes"] + missing) if missing else s)
    out = dict(t, attributes=attrs, shapes=shapes)
    if "elements" in t:
        out["elements"] = [fill_track(e, idx) for e in t["elements"]]
    return out


def fill(data: dict, idx: LabelIndex) -> dict:
    return {"version": 0,
            "tags": [fill_tag(t, idx) for t in data["tags"]],
            "shapes": [fill_shape(s, idx) for s in data["shapes"]],
            "tracks": [fill_track(t, idx) for t in data["tracks"]]}
