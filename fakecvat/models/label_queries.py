"""Reading labels: one parent's top-level labels, skeleton sublabels, the labels a task uses
(its project's when it is in one), attribute lookups, and CVAT's Label serialization.

A label belongs to exactly one parent: a project or a task outside any project. Skeleton
sublabels are label documents with ``parent_id``."""
from __future__ import annotations

from ..store import Store


def get_label(store: Store, label_id) -> dict | None:
    return store.get("labels", label_id)


def top_level_labels(store: Store, *, task_id=None, project_id=None) -> list[dict]:
    """Top-level labels of one parent, ordered by id."""
    def mine(lb):
        if lb.get("parent_id") is not None:
            return False
        if project_id is not None:
            return lb.get("project_id") == project_id
        return lb.get("task_id") == task_id and lb.get("project_id") is None
    return sorted(store.find("labels", mine), key=lambda lb: lb["id"])


def sublabels_of(store: Store, label: dict) -> list[dict]:
    return sorted(store.find("labels", lambda lb: lb.get("parent_id") == label["id"]), key=lambda lb: lb["id"])


def labels_of_task(store: Store, task: dict) -> list[dict]:
    """The top-level labels a task uses: its project's when it is in a project."""
    if task.get("project_id") is not None:
        return top_level_labels(store, project_id=task["project_id"])
    return top_level_labels(store, task_id=task["id"])


def all_labels_of_task(store: Store, task: dict) -> list[dict]:
    """Top-level labels and skeleton sublabels (what annotation ``label_id``s may name)."""
    out = []
    for lb in labels_of_task(store, task):
        out.append(lb)
        out.extend(sublabels_of(store, lb))
    return out


def attribute_spec(label: dict, spec_id) -> dict | None:
    for a in label.get("attributes", []):
        if a["id"] == spec_id:
            return a
    return None


def find_attribute(label: dict, name: str) -> dict | None:
    for a in label.get("attributes", []):
        if a["name"] == name:
            return a
    return None


def serialize_attribute(a: dict) -> dict:
    return {"id": a["id"], "name": a["name"], "mutable": a["mutable"], "input_type": a["input_type"],
            "default_value": a["default_value"], "values": list(a["values"])}


def serialize_label(label: dict, store: Store) -> dict:
    """CVAT's Label: ``project_id`` or ``task_id`` (never both keys), sublabels nested."""
    out = {
        "id": label["id"],
        "name": label["name"],
        "color": label["color"],
        "attributes": [serialize_attribute(a) for a in label.get("attributes", [])],
        "type": label.get("type", "any"),
        "svg": label.get("svg") or "",
        "sublabels": [{"id": s["id"], "name": s["name"], "color": s["color"],
                       "attributes": [serialize_attribute(a) for a in s.get("attributes", [])],
                       "type": s.get("type", "any"), "has_parent": True}
                      for s in sublabels_of(store, label)],
        "parent_id": label.get("parent_id"),
        "has_parent": label.get("parent_id") is not None,
    }
    if label.get("project_id") is not None:
        out["project_id"] = label["project_id"]
    else:
        out["task_id"] = label.get("task_id")
    return out
