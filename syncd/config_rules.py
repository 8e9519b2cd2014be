"""One ``[[rule]]`` table of ``syncd.toml`` -> a :class:`Rule`: trigger and done tags, label
schema, task and job sizes, assignees, edit permissions, cleanup and frame ranges."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from syncd.config_checks import (check_bool, check_str, fail, is_int, no_unknown, number, pos_int, show,
                                 str_list, table)
from syncd.config_label_schema import (ALLOW_FLAGS, check_attributes, check_classes, check_label_schema,
                                       check_label_type, check_mask_targets)

_RULE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_]{0,63}$")


@dataclass(frozen=True)
class Rule:
    name: str
    tag: str = "requires_annotation"
    done_tag: str = "annotated"
    auto_tag: tuple[str, ...] = ()
    label_schema: dict | None = None
    label_field: str | None = None
    label_type: str | None = None
    classes: list | None = None
    attributes: Any = True
    mask_targets: dict | None = None
    segment_size: int | None = None
    task_size: int | None = None
    batch_window: float = 5.0
    task_assignee: str | list[str] | None = None
    job_assignees: list[str] = field(default_factory=list)
    job_reviewers: list[str] = field(default_factory=list)
    allow_additions: bool = True
    allow_deletions: bool = True
    allow_label_edits: bool = True
    allow_index_edits: bool = True
    allow_spatial_edits: bool = True
    cleanup: bool = False   # deleting annotation work is irreversible: opt in
    frame_start: int | list[int] | dict[str, int] | None = None
    frame_stop: int | list[int] | dict[str, int] | None = None
    frame_step: int | list[int] | dict[str, int] | None = None


def _frames(key, v, minimum):
    def one(k, x):
        if not is_int(x) or x < minimum:
            raise fail(k, f"must be an integer >= {minimum}, got {show(x)}")
        return x

    if isinstance(v, list):
        if not v:
            raise fail(key, "must not be an empty list")
        return [one(f"{key}[{i}]", x) for i, x in enumerate(v)]
    if isinstance(v, dict):
        return {p: one(f"{key}.{p}", x) for p, x in v.items()}
    return one(key, v)


def parse_rule(i: int, data: dict, has_project: bool) -> Rule:
    key = f"rule[{i}]"
    allowed = {f.name for f in Rule.__dataclass_fields__.values()}
    no_unknown(key, table(key, data), allowed)
    if "name" not in data:
        raise fail(f"{key}.name", "missing (run keys are '<name>-<n>')")
    name = check_str(f"{key}.name", data["name"], empty=False)
    if not _RULE_NAME.match(name):
        raise fail(f"{key}.name", f"use letters, digits and '_' (at most 64), got {name!r}")
    key = f"rule[{i}]"
    out: dict[str, Any] = {"name": name}
    for k in ("tag", "done_tag"):
        if k in data:
            out[k] = check_str(f"{key}.{k}", data[k], empty=False)
    if "auto_tag" in data:
        out["auto_tag"] = tuple(str_list(f"{key}.auto_tag", data["auto_tag"], allow_single=True))
    if "label_schema" in data:
        out["label_schema"] = check_label_schema(f"{key}.label_schema", data["label_schema"])
    if "label_field" in data:
        out["label_field"] = check_str(f"{key}.label_field", data["label_field"], empty=False)
    if "label_type" in data:
        out["label_type"] = check_label_type(f"{key}.label_type", data["label_type"])
    if "classes" in data:
        out["classes"] = check_classes(f"{key}.classes", data["classes"])
    if "attributes" in data:
        out["attributes"] = check_attributes(f"{key}.attributes", data["attributes"])
    if "mask_targets" in data:
        out["mask_targets"] = check_mask_targets(f"{key}.mask_targets", data["mask_targets"])
    for k in ("segment_size", "task_size"):
        if k in data:
            out[k] = pos_int(f"{key}.{k}", data[k])
    if "batch_window" in data:
        out["batch_window"] = number(f"{key}.batch_window", data["batch_window"], positive=False)
    if "task_assignee" in data:
        v = data["task_assignee"]
        out["task_assignee"] = (check_str(f"{key}.task_assignee", v, empty=False) if isinstance(v, str)
                                else str_list(f"{key}.task_assignee", v))
    for k in ("job_assignees", "job_reviewers"):
        if k in data:
            out[k] = str_list(f"{key}.{k}", data[k], allow_single=True)
    for k in (*ALLOW_FLAGS, "cleanup"):
        if k in data:
            out[k] = check_bool(f"{key}.{k}", data[k])
    for k, minimum in (("frame_start", 0), ("frame_stop", 0), ("frame_step", 1)):
        if k in data:
            out[k] = _frames(f"{key}.{k}", data[k], minimum)
    rule = Rule(**out)
    if rule.tag == rule.done_tag:
        raise fail(f"{key}.done_tag", f"must differ from the trigger tag {rule.tag!r}")
    if rule.label_schema is None and rule.label_field is None and not has_project:
        raise fail(key, "needs label_schema, or label_field (with label_type and classes)")
    return rule
