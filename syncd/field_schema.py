"""One label field's resolved schema (:class:`FieldSchema`: type, classes, attributes, mask
targets, edit permissions) and :class:`SchemaError`, the error every schema check raises."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field as dc_field

from .errors import SyncdError


LABEL_TYPES = (
    "classification", "classifications", "detection", "detections", "instance", "instances",
    "polyline", "polylines", "polygon", "polygons", "keypoint", "keypoints", "segmentation",
    "scalar",
)
RETURN_TYPES = {
    "classification": "classifications", "classifications": "classifications",
    "detection": "detections", "detections": "detections",
    "instance": "detections", "instances": "detections",
    "polyline": "polylines", "polylines": "polylines",
    "polygon": "polylines", "polygons": "polylines",
    "keypoint": "keypoints", "keypoints": "keypoints",
    "segmentation": "segmentation", "scalar": "scalar",
}
MAX_NAME = 64


class SchemaError(SyncdError, ValueError):
    """A label schema FiftyOne would refuse; the message names the field/class/attribute."""


@dataclass
class FieldSchema:
    name: str
    type: str
    classes: list[str] = dc_field(default_factory=list)
    attributes: dict[str, dict] = dc_field(default_factory=dict)
    mask_targets: dict[int, str] | None = None
    existing: bool = False
    allow_additions: bool = True
    allow_deletions: bool = True
    allow_label_edits: bool = True
    allow_index_edits: bool = True
    allow_spatial_edits: bool = True
    # per-class extra attributes (FiftyOne's {"classes": [...], "attributes": {...}} entries)
    class_attributes: dict[str, dict[str, dict]] = dc_field(default_factory=dict)

    @property
    def return_type(self) -> str:
        return RETURN_TYPES[self.type]

    @property
    def is_list(self) -> bool:
        """Whether the FiftyOne value is a list container (Detections, ...)."""
        return self.type.endswith("s") and self.type not in ("segmentation",)

    def attrs_for(self, cls: str | None) -> dict[str, dict]:
        """The field's attributes plus those of class ``cls``."""
        out = dict(self.attributes)
        out.update(self.class_attributes.get(cls or "", {}))
        return out

    def all_attrs(self) -> dict[str, dict]:
        out = dict(self.attributes)
        for extra in self.class_attributes.values():
            out.update(extra)
        return out

    def to_json(self) -> dict:
        d = asdict(self)
        if self.mask_targets is not None:
            d["mask_targets"] = {str(k): v for k, v in self.mask_targets.items()}
        return d

    @classmethod
    def from_json(cls, d: dict) -> "FieldSchema":
        d = dict(d)
        if d.get("mask_targets") is not None:
            d["mask_targets"] = {int(k): v for k, v in d["mask_targets"].items()}
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in known})
