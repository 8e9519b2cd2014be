"""The labels a task's annotations may use: each label with its attribute specs and the default
values CVAT fills in on output (shapes and tags: every spec; tracks: immutable specs)."""
from __future__ import annotations

from typing import Iterable

from ..store import Store
from . import labels as labels_model


class LabelIndex:
    """The labels a task's annotations may use, with their attribute specs by id."""

    def __init__(self, label_docs: Iterable[dict]):
        self.labels: dict[int, dict] = {}
        self.specs: dict[int, dict[int, dict]] = {}
        self.all_defaults: dict[int, list[dict]] = {}
        self.immutable_defaults: dict[int, list[dict]] = {}
        self.mutable_ids: dict[int, list[int]] = {}
        for lb in label_docs:
            self.labels[lb["id"]] = lb
            attrs = lb.get("attributes") or []
            self.specs[lb["id"]] = {a["id"]: a for a in attrs}
            self.all_defaults[lb["id"]] = [{"spec_id": a["id"], "value": _default(a)} for a in attrs]
            self.immutable_defaults[lb["id"]] = [{"spec_id": a["id"], "value": _default(a)} for a in attrs
                                                 if not a.get("mutable")]
            self.mutable_ids[lb["id"]] = [a["id"] for a in attrs if a.get("mutable")]

    def by_name(self, name: str, parent_id=None) -> dict | None:
        for lb in self.labels.values():
            if lb["name"] == name and lb.get("parent_id") == parent_id:
                return lb
        return None


def _default(spec: dict) -> str:
    v = spec.get("default_value")
    if v in (None, ""):
        vals = spec.get("values") or [""]
        v = vals[0] if spec.get("input_type") in ("select", "radio", "checkbox", "number") else ""
    return str(v)


def label_index(store: Store, task: dict) -> LabelIndex:
    return LabelIndex(labels_model.all_labels_of_task(store, task))
