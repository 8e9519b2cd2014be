"""Pieces shared by the label families: the export context, CVAT item and FiftyOne label shells."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..ids import is_object_id, new_id, oid


@dataclass
class ExportContext:
    frame: int
    width: int
    height: int
    root: Path | None
    names: dict[tuple[str, str | None], str]  # (field, class) -> CVAT label name

    def label_name(self, field: str, cls: Any) -> str | None:
        """The CVAT label for class ``cls`` of ``field`` (the field's own label if classless)."""
        if (field, cls) in self.names:
            return self.names[(field, cls)]
        if (field, None) in self.names:
            return self.names[(field, None)]
        return None


def shape_item(label: str, frame: int, shape_type: str, points: list[float], attributes: dict,
               occluded: bool = False, group: int = 0, rotation: float = 0.0) -> dict:
    return {"label": label, "frame": frame, "type": shape_type, "points": points,
            "occluded": bool(occluded), "group": int(group), "z_order": 0,
            "rotation": float(rotation), "outside": False, "source": "manual",
            "attributes": attributes}


def tag_item(label: str, frame: int, attributes: dict, group: int = 0) -> dict:
    return {"label": label, "frame": frame, "group": int(group), "source": "manual",
            "attributes": attributes}


_DEFAULTS = {
    "Classification": {"confidence": None, "logits": None},
    "Detection": {"bounding_box": None, "confidence": None, "index": None},
    "Polyline": {"points": [], "confidence": None, "index": None, "closed": False, "filled": False},
    "Keypoint": {"points": [], "confidence": None, "index": None},
}


# a CVAT attribute named like these (from a project made elsewhere) must not replace the
# label's id or type: the merge and FiftyOne both rely on them
_IDENTITY = frozenset({"_id", "_cls"})


def new_label(cls_name: str, label: Any, lid: str | None, attrs: dict, **fields: Any) -> dict:
    """A FiftyOne label dict in ``to_dict()`` shape; ``lid`` kept when it is a valid id."""
    d = {"_id": oid(lid.lower() if is_object_id(lid) else new_id()), "_cls": cls_name,
         "tags": [], "attributes": {}, "label": label}
    d.update(_DEFAULTS.get(cls_name, {}))
    d.update(fields)
    for k, v in attrs.items():
        if k in fields or k in _IDENTITY:
            d.setdefault(k, v)
        else:
            d[k] = v
    return d


def is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)
