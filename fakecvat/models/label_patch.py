"""CVAT's label PATCH semantics: the parent's ``labels`` PATCH (``id`` updates, no ``id`` creates,
``deleted`` deletes) and ``PATCH /api/labels/{id}``; attributes are never removed, and a skeleton
stays a skeleton."""
from __future__ import annotations

from typing import Any

from ..errors import ValidationError
from ..store import Store
from .label_checks import validate_label
from .label_queries import sublabels_of, top_level_labels
from .label_writes import (delete_label, insert_label, new_attribute, parent_fields, touch_parent, update_attribute,
                           used_colors)


def patch_labels(store: Store, specs: list[dict], *, task_id=None, project_id=None, sender=None) -> list[dict]:
    """CVAT's parent-PATCH semantics: ``id`` updates, no ``id`` creates, ``deleted`` deletes.
    Labels not mentioned are untouched; attributes are never removed."""
    if not isinstance(specs, list):
        raise ValidationError({"labels": [f'Expected a list of items but got type "{type(specs).__name__}".']})
    parent = parent_fields(task_id, project_id)
    with store.lock:
        mine = {lb["id"]: lb for lb in top_level_labels(store, task_id=task_id, project_id=project_id)}
        taken = {lb["name"] for lb in mine.values()}
        errors = []
        for s in specs:
            if isinstance(s, dict) and s.get("id") is not None:
                current = mine.get(s["id"])
                if current is None:
                    errors.append({"id": [f"Label {s['id']} does not exist in this {'project' if project_id else 'task'}."]})
                elif s.get("deleted"):
                    errors.append({})
                else:
                    errors.append(validate_label(s, taken=taken, partial=True, current=current))
            else:
                errors.append(validate_label(s, taken=taken, partial=False))
        if any(errors):
            raise ValidationError({"labels": errors})
        used = used_colors(store, task_id, project_id)
        out = []
        for s in specs:
            if s.get("id") is None:
                out.append(insert_label(store, s, parent, used))
            elif s.get("deleted"):
                delete_label(store, s["id"], touch=False)
            else:
                out.append(_apply_update(store, mine[s["id"]], s, parent, used))
        if specs:
            touch_parent(store, task_id=task_id, project_id=project_id, sender=sender)
        return out


def update_label(store: Store, label_id, spec: dict, sender=None) -> dict:
    """``PATCH /api/labels/{id}``: a local update of one top-level label."""
    with store.lock:
        current = store.get("labels", label_id)
        if current.get("parent_id") is not None:
            raise ValidationError(["Sublabels cannot be modified this way. Modify the skeleton label instead."])
        if not isinstance(spec, dict):
            raise ValidationError({"non_field_errors": ["Invalid data."]})
        if "deleted" in spec:
            raise ValidationError({"deleted": ["Cannot delete a label via PATCH. Use DELETE instead."]})
        task_id, project_id = current.get("task_id"), current.get("project_id")
        if project_id is not None:
            task_id = None
        taken = {lb["name"] for lb in top_level_labels(store, task_id=task_id, project_id=project_id)}
        err = validate_label(spec, taken=taken, partial=True, current=current)
        if err:
            raise ValidationError(err)
        parent = parent_fields(task_id, project_id)
        doc = _apply_update(store, current, spec, parent, used_colors(store, task_id, project_id))
        touch_parent(store, task_id=task_id, project_id=project_id, sender=sender)
        return doc


def _apply_update(store: Store, current: dict, spec: dict, parent: dict, used: set[str]) -> dict:
    changes: dict[str, Any] = {}
    if "name" in spec:
        changes["name"] = spec["name"]
    if spec.get("color"):
        changes["color"] = spec["color"]
    # A skeleton stays a skeleton and nothing becomes one: CVAT ignores such changes silently.
    if spec.get("type") and current.get("type") != "skeleton" and spec["type"] != "skeleton":
        changes["type"] = spec["type"]
    if spec.get("attributes"):
        attrs = [dict(a) for a in current.get("attributes", [])]
        for a in spec["attributes"]:
            target = next((x for x in attrs if x["id"] == a.get("id")), None) if a.get("id") is not None \
                else next((x for x in attrs if x["name"] == a["name"]), None)
            if target is None:
                attrs.append(new_attribute(store, a))
            else:
                update_attribute(target, a)
        changes["attributes"] = attrs
    doc = store.update("labels", current["id"], **changes)
    if current.get("type") == "skeleton" and spec.get("sublabels"):
        subs = {s["name"]: s for s in sublabels_of(store, current)}
        for s in spec["sublabels"]:
            if s.get("name") in subs:
                _apply_update(store, subs[s["name"]], {k: v for k, v in s.items() if k != "sublabels"}, parent, used)
            else:
                insert_label(store, {**s, "type": s.get("type") or "points"}, parent, used, current["id"])
    return doc
