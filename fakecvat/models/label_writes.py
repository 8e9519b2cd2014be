"""Creating and deleting labels: colours from our palette, attribute defaults, skeleton
sublabels with their SVG layout, the cascade of a delete to annotations, and the parent's
``updated_date`` bump on any label change."""
from __future__ import annotations

import re

from ..errors import ValidationError
from ..store import Store
from . import common, events
from .label_checks import TRUE, validate_new_labels
from .label_queries import sublabels_of


# Our own palette of well-separated colours; the first unused one is given to a label without one.
PALETTE = (
    "#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6",
    "#bcf60c", "#fabebe", "#008080", "#e6beff", "#9a6324", "#fffac8", "#800000", "#aaffc3",
    "#808000", "#ffd8b1", "#000075", "#808080", "#33ddff", "#fa3253", "#34d1b7", "#ff007c",
    "#ddff33", "#24b353", "#b83df5", "#66ff66", "#32b7fa", "#ffcc33", "#83e070", "#fafa37",
)


def parent_fields(task_id, project_id) -> dict:
    if (task_id is None) == (project_id is None):
        raise ValueError("a label needs exactly one of task_id / project_id")
    return {"task_id": task_id if project_id is None else None, "project_id": project_id}


def used_colors(store: Store, task_id, project_id) -> set[str]:
    f = parent_fields(task_id, project_id)
    return {lb["color"].lower() for lb in store.find(
        "labels", lambda lb: lb.get("task_id") == f["task_id"] and lb.get("project_id") == f["project_id"])}


def _pick_color(used: set[str]) -> str:
    for c in PALETTE:
        if c not in used:
            used.add(c)
            return c
    # More labels than palette entries: derive a deterministic colour from the count.
    n = len(used)
    c = "#%02x%02x%02x" % ((n * 97) % 256, (n * 57) % 256, (n * 193) % 256)
    used.add(c)
    return c


def _default_value(spec: dict) -> str:
    values = spec.get("values") or []
    dv = spec.get("default_value")
    if dv is None or dv == "":
        return values[0] if values else ""
    if spec.get("input_type") in ("select", "radio") and values and dv not in values:
        return values[0]
    return dv


def new_attribute(store: Store, spec: dict) -> dict:
    return {"id": store.next_id("attributes"), "name": spec["name"], "mutable": spec["mutable"] in TRUE,
            "input_type": spec["input_type"], "default_value": _default_value(spec),
            "values": list(spec["values"])}


def update_attribute(attr: dict, spec: dict) -> None:
    if "name" in spec:
        attr["name"] = spec["name"]
    if "mutable" in spec:
        attr["mutable"] = spec["mutable"] in TRUE
    if "input_type" in spec:
        attr["input_type"] = spec["input_type"]
    if "values" in spec:
        attr["values"] = list(spec["values"])
    if "default_value" in spec or "values" in spec:
        attr["default_value"] = _default_value({**attr, **{k: v for k, v in spec.items() if k == "default_value"}})


def insert_label(store: Store, spec: dict, parent: dict, used: set[str], parent_id=None) -> dict:
    color = spec.get("color") or _pick_color(used)
    used.add(color.lower())
    doc = store.insert("labels", {
        "name": spec["name"], "color": color, "type": spec.get("type") or "any",
        "attributes": [new_attribute(store, a) for a in (spec.get("attributes") or [])],
        "project_id": parent["project_id"], "task_id": parent["task_id"], "parent_id": parent_id, "svg": "",
    })
    if doc["type"] == "skeleton" and parent_id is None:
        subs = [insert_label(store, {**s, "type": s.get("type") or "points"}, parent, used, doc["id"])
                for s in spec.get("sublabels") or []]
        store.update("labels", doc["id"], svg=_svg_with_ids(spec.get("svg") or "", subs))
    return doc


def _svg_with_ids(svg: str, subs: list[dict]) -> str:
    """CVAT stores the skeleton layout with sublabel ids instead of names."""
    ids = {s["name"]: s["id"] for s in subs}
    return re.sub(r'data-label-name="([^"]*)"',
                  lambda m: f'data-label-id="{ids[m.group(1)]}"' if m.group(1) in ids else m.group(0), svg)


def create_labels(store: Store, specs: list[dict], *, task_id=None, project_id=None) -> list[dict]:
    """Validate all specs, then create them under the parent. Returns the new top-level docs."""
    if specs is None:
        specs = []
    if not isinstance(specs, list):
        raise ValidationError({"labels": [f'Expected a list of items but got type "{type(specs).__name__}".']})
    parent = parent_fields(task_id, project_id)
    with store.lock:
        validate_new_labels(store, specs, task_id=task_id, project_id=project_id)
        used = used_colors(store, task_id, project_id)
        return [insert_label(store, s, parent, used) for s in specs]


def delete_label(store: Store, label_id, *, touch: bool = True, sender=None) -> None:
    """Delete a top-level label, its sublabels, and the annotations that use them."""
    with store.lock:
        label = store.get("labels", label_id)
        if label is None:
            return
        if label.get("parent_id") is not None:
            raise ValidationError(["Sublabels cannot be deleted this way. Delete the skeleton label instead."])
        ids = {label["id"]} | {s["id"] for s in sublabels_of(store, label)}
        for i in ids:
            store.delete("labels", i)
        _drop_annotations_of(store, label, ids)
        if touch:
            touch_parent(store, task_id=label.get("task_id"), project_id=label.get("project_id"), sender=sender)
        events.emit(store, "delete:label", "label", label["id"], None, sender)


def delete_labels_of(store: Store, *, task_id=None, project_id=None) -> None:
    """Forget every label (and sublabel) of a parent, e.g. when the parent is deleted."""
    with store.lock:
        if project_id is not None:
            doomed = store.find("labels", lambda lb: lb.get("project_id") == project_id)
        else:
            doomed = store.find("labels", lambda lb: lb.get("task_id") == task_id and lb.get("project_id") is None)
        for lb in doomed:
            store.delete("labels", lb["id"])


def _drop_annotations_of(store: Store, label: dict, ids: set) -> None:
    """CVAT cascades a label delete to the annotations using it."""
    if label.get("project_id") is not None:
        task_ids = {t["id"] for t in store.find("tasks", lambda t: t.get("project_id") == label["project_id"])}
    else:
        task_ids = {label.get("task_id")}
    for job in store.find("jobs", lambda j: j.get("task_id") in task_ids):
        ann = store.get("annotations", job["id"])
        if not ann:
            continue
        changed = False
        for kind in ("tags", "shapes", "tracks"):
            kept = [o for o in ann.get(kind, []) if o.get("label_id") not in ids]
            if len(kept) != len(ann.get(kind, [])):
                ann[kind] = kept
                changed = True
        if changed:
            store.put("annotations", ann, job["id"])


def touch_parent(store: Store, *, task_id=None, project_id=None, sender=None) -> None:
    """Label changes bump updated_date on the parent and, for a project, on its tasks."""
    if project_id is not None:
        from ..http import now
        project = store.get("projects", project_id)
        if project:
            before = project["updated_date"]
            store.update("projects", project_id, updated_date=now())
            events.emit(store, "update:project", "project", project_id, {"updated_date": before}, sender)
        for t in store.find("tasks", lambda t: t.get("project_id") == project_id):
            store.update("tasks", t["id"], updated_date=now())
    elif task_id is not None:
        common.touch(store, task_id=task_id, sender=sender)
