"""Attribute values between FiftyOne labels and CVAT items.

Upload: a label's custom attributes become ``{name: value}`` on a CVAT item; ``occluded`` and
``group_id``-typed attributes ride on the shape's own ``occluded``/``group`` flags instead; only
mutable attributes are sent on shapes and tags (FiftyOne's rule, §2.3).
Download: CVAT sends every value as a string; FiftyOne's ``coerce_text_attrs`` turns them back
into int, float, bool or None (§3.4).
"""
from __future__ import annotations

from typing import Any

from ..ids import label_id
from ..schema import stringify  # noqa: F401  (one definition; the label modules import it from here)


def coerce(value: Any) -> Any:
    """FiftyOne's coerce_text_attrs: int, then float, then bool, then None, else the string."""
    if not isinstance(value, str):
        return value
    try:
        return int(value)
    except ValueError:
        pass
    try:
        f = float(value)
        # "nan"/"inf" typed into a text box are words, not numbers
        if f == f and f not in (float("inf"), float("-inf")):
            return f
    except ValueError:
        pass
    if value in ("true", "True"):
        return True
    if value in ("false", "False"):
        return False
    if value in ("", "None"):
        return None
    return value


def export_attrs(label: dict, attrs: dict[str, dict], with_id: bool) -> tuple[dict, bool, int]:
    """-> (CVAT attribute values by name, occluded flag, group number) for one label."""
    out: dict[str, Any] = {}
    occluded, group = False, 0
    for name, spec in attrs.items():
        value = label.get(name)
        if spec["type"] == "occluded":
            occluded = bool(value)
            continue
        if spec["type"] == "group_id":
            group = int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0
            continue
        if not spec.get("mutable", True) or value is None:
            continue
        out[name] = value
    if with_id:
        lid = label_id(label)
        if lid:
            out["label_id"] = lid
    return out, occluded, group


def import_attrs(item: dict, names: dict[int, str], attrs: dict[str, dict]) -> tuple[dict, str | None]:
    """-> (FiftyOne attribute values, the label_id value) for one CVAT item.

    ``names`` maps the label's spec ids to attribute names; ``attrs`` is the field's schema for
    the class, used to refill the occluded/group_id links from the shape flags.
    """
    out: dict[str, Any] = {}
    lid = None
    for a in item.get("attributes") or []:
        name = names.get(a.get("spec_id"))
        if name is None:
            continue
        if name == "label_id":
            lid = a.get("value")
            continue
        v = coerce(a.get("value"))
        if v is not None:
            out[name] = v
    for name, spec in attrs.items():
        if spec["type"] == "occluded" and item.get("occluded") is not None:
            out[name] = bool(item["occluded"])
        elif spec["type"] == "group_id" and item.get("group") is not None:
            out[name] = int(item["group"])
    rot = item.get("rotation")
    if isinstance(rot, (int, float)) and rot:
        out["rotation"] = float(rot)
    return out, lid
