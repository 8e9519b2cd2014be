"""The annotator helper behind ``POST /_fakecvat/jobs/{id}/annotations``: shapes written with
label and attribute *names*, turned into CVAT ids, then written as the CVAT UI would.

Body::

    {"shapes": [{"type": "rectangle", "frame": 0, "label": "car", "points": [...],
                 "attributes": {"color": "red"},
                 "elements": [{"label": "nose", "points": [x, y]}]}],     # skeletons
     "tags":   [{"frame": 0, "label": "daytime"}],
     "tracks": [{"label": "car", "frame": 0, "attributes": {...},
                 "shapes": [{"type": "rectangle", "frame": 0, "points": [...], "outside": false}]}],
     "mode": "create" | "replace",          # default create (PATCH ?action=create); replace = PUT
     "user": "username"}                     # who writes (webhook sender); default the job assignee

Attributes may be a ``{name: value}`` dict or a list of ``{"name", "value"}``. Unknown names
are 400 with the name in the message.
"""
from __future__ import annotations

from ..errors import ValidationError
from . import annotations as A


def _attrs(raw, label: dict) -> list[dict]:
    if raw is None:
        return []
    items = raw.items() if isinstance(raw, dict) else [(a.get("name"), a.get("value")) for a in raw]
    out = []
    for name, value in items:
        spec = next((s for s in label.get("attributes") or [] if s["name"] == name), None)
        if spec is None:
            raise ValidationError({"attributes": [f"label '{label['name']}' has no attribute '{name}'"]})
        out.append({"spec_id": spec["id"], "value": value})
    return out


def _split_attrs(raw, label: dict) -> tuple[list[dict], list[dict]]:
    """(immutable, mutable) for tracks: CVAT keeps them on the track and its shapes."""
    specs = {s["id"]: s for s in label.get("attributes") or []}
    both = _attrs(raw, label)
    return ([a for a in both if not specs[a["spec_id"]].get("mutable")],
            [a for a in both if specs[a["spec_id"]].get("mutable")])


def _label(idx: A.LabelIndex, obj: dict, parent: dict | None = None) -> dict:
    name = obj.get("label")
    if name is None and obj.get("label_id") is not None:
        lb = idx.labels.get(int(obj["label_id"]))
    else:
        lb = idx.by_name(name, parent["id"] if parent else None)
    if lb is None:
        raise ValidationError({"label": [f"unknown label '{name}'" + (f" in skeleton '{parent['name']}'" if parent else "")]})
    return lb


def _shape(s: dict, idx: A.LabelIndex) -> dict:
    lb = _label(idx, s)
    out = {k: v for k, v in s.items() if k not in ("label", "attributes", "elements")}
    out["label_id"] = lb["id"]
    out["attributes"] = _attrs(s.get("attributes"), lb)
    if s.get("elements"):
        out["elements"] = []
        for e in s["elements"]:
            sub = _label(idx, e, lb)
            el = {k: v for k, v in e.items() if k not in ("label", "attributes")}
            el.update(label_id=sub["id"], attributes=_attrs(e.get("attributes"), sub), type=e.get("type", "points"),
                      frame=e.get("frame", s.get("frame")))
            out["elements"].append(el)
    return out


def _track(t: dict, idx: A.LabelIndex, parent: dict | None = None) -> dict:
    lb = _label(idx, t, parent)
    imm, mut = _split_attrs(t.get("attributes"), lb)
    shapes = []
    for i, s in enumerate(t.get("shapes") or []):
        simm, smut = _split_attrs(s.get("attributes"), lb)
        imm += simm
        shapes.append({**{k: v for k, v in s.items() if k != "attributes"},
                       "type": s.get("type", "points" if parent else s.get("type")),
                       "attributes": (mut if i == 0 else []) + smut})
    out = {k: v for k, v in t.items() if k not in ("label", "attributes", "shapes", "elements")}
    out.update(label_id=lb["id"], attributes=imm, shapes=shapes)
    out.setdefault("frame", min((int(s["frame"]) for s in shapes), default=0))
    if t.get("elements") and parent is None:
        out["elements"] = [_track(e, idx, lb) for e in t["elements"]]
    return out


def to_labeled_data(body: dict, idx: A.LabelIndex) -> dict:
    """Name-based annotator input → a LabeledData request body."""
    if not isinstance(body, dict):
        raise ValidationError(["Expected a JSON object"])
    tags = []
    for t in body.get("tags") or []:
        lb = _label(idx, t)
        tags.append({**{k: v for k, v in t.items() if k not in ("label", "attributes")}, "label_id": lb["id"],
                     "attributes": _attrs(t.get("attributes"), lb)})
    return {"tags": tags,
            "shapes": [_shape(s, idx) for s in body.get("shapes") or []],
            "tracks": [_track(t, idx) for t in body.get("tracks") or []]}
