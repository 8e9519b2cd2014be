"""What the samples already hold: a field's values (``frames.X`` reads video frames), the label
dicts inside them, and the label type FiftyOne infers for an existing field from its class
(reference/fiftyone-cvat.md §2.2)."""
from __future__ import annotations

import logging
from typing import Any, Iterable, Iterator

from .field_schema import SchemaError

log = logging.getLogger("syncd.schema")


# FiftyOne class of an existing field -> the types it may be annotated as (first = default).
EXISTING_TYPES = {
    "Classification": ["classification"], "Classifications": ["classifications"],
    "Detection": ["detection", "instance"], "Detections": ["detections", "instances"],
    "Polyline": ["polyline", "polygon"], "Polylines": ["polylines", "polygons"],
    "Keypoint": ["keypoint"], "Keypoints": ["keypoints"], "Segmentation": ["segmentation"],
}
_LIST_KEYS = {"Classifications": "classifications", "Detections": "detections",
              "Polylines": "polylines", "Keypoints": "keypoints"}


def field_values(samples: Iterable[dict], name: str) -> Iterator[Any]:
    """Every non-None value of field ``name`` (``frames.X`` reads the frames of videos)."""
    for s in samples:
        if name.startswith("frames."):
            for fr in (s.get("frames") or {}).values():
                v = (fr or {}).get(name[7:])
                if v is not None:
                    yield v
        else:
            v = s.get(name)
            if v is not None:
                yield v


def labels_of(value: Any) -> list[dict]:
    """The label dicts inside a field value (a list container, a single label, or nothing)."""
    if not isinstance(value, dict):
        return []
    key = _LIST_KEYS.get(value.get("_cls"))
    if key:
        return [x for x in value.get(key) or [] if isinstance(x, dict)]
    return [value]


def value_kind(name: str, v: Any) -> str:
    if isinstance(v, dict):
        c = v.get("_cls")
        if c in EXISTING_TYPES:
            return c
        raise SchemaError(f"Field '{name}' holds an unsupported label class {c!r}")
    if isinstance(v, (bool, int, float, str)):
        return "scalar"
    raise SchemaError(f"Field '{name}' holds a {type(v).__name__} value; only labels and "
                      f"Int/Float/String/Boolean scalars can be annotated")


def infer_type(fname: str, kind: str, labels: list[dict]) -> str:
    options = EXISTING_TYPES[kind]
    if len(options) == 1:
        return options[0]
    if kind in ("Detection", "Detections"):
        flags = {("mask" in lab and lab["mask"] is not None) or bool(lab.get("mask_path"))
                 for lab in labels}
        second = flags == {True}
    else:
        flags = {bool(lab.get("filled")) for lab in labels}
        second = flags == {True}
    if len(flags) > 1:
        log.warning("Found existing field '%s' with multiple types %s. Only the '%s' will be "
                    "annotated", fname, options, options[0])
    return options[1] if second else options[0]
