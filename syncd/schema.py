"""Label schemas: which fields go to CVAT, as which types, with which classes and attributes.

This follows FiftyOne's ``annotate()`` rules (reference/fiftyone-cvat.md §2.2-2.5, §3.1): an
existing field's type and classes are inferred from the labels already in the samples, new fields
must say what they are, attributes are normalised and checked, and the result is turned into the
CVAT label specs a task or project is created with. Errors name the field, class or attribute.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field as dc_field
from typing import Any, Iterable, Iterator

from .errors import SyncdError

log = logging.getLogger(__name__)

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
# FiftyOne class of an existing field -> the types it may be annotated as (first = default).
_EXISTING_TYPES = {
    "Classification": ["classification"], "Classifications": ["classifications"],
    "Detection": ["detection", "instance"], "Detections": ["detections", "instances"],
    "Polyline": ["polyline", "polygon"], "Polylines": ["polylines", "polygons"],
    "Keypoint": ["keypoint"], "Keypoints": ["keypoints"], "Segmentation": ["segmentation"],
}
_LIST_KEYS = {"Classifications": "classifications", "Detections": "detections",
              "Polylines": "polylines", "Keypoints": "keypoints"}
ATTR_TYPES = ("text", "select", "radio", "checkbox", "occluded", "group_id")
# Keys of a label dict that are label structure, never user attributes.
RESERVED_KEYS = frozenset({
    "_id", "id", "_cls", "label", "bounding_box", "mask", "mask_path", "confidence", "index",
    "attributes", "tags", "points", "closed", "filled", "logits", "keyframe", "rotation",
    "visible", "instance", "map", "map_path", "_media_type",
})
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


# ---------------------------------------------------------------------------------------------
# reading existing values


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


def _value_kind(name: str, v: Any) -> str:
    if isinstance(v, dict):
        c = v.get("_cls")
        if c in _EXISTING_TYPES:
            return c
        raise SchemaError(f"Field '{name}' holds an unsupported label class {c!r}")
    if isinstance(v, (bool, int, float, str)):
        return "scalar"
    raise SchemaError(f"Field '{name}' holds a {type(v).__name__} value; only labels and "
                      f"Int/Float/String/Boolean scalars can be annotated")


def stringify(v: Any) -> str:
    """CVAT's string form of a value: None -> "", bools -> "true"/"false"."""
    if v is None:
        return ""
    if v is True:
        return "true"
    if v is False:
        return "false"
    return str(v)


# ---------------------------------------------------------------------------------------------
# attributes


def _recommended(name: str, values: list) -> dict:
    """FiftyOne's recommended CVAT tool for an attribute seen with these values."""
    first = next((v for v in values if v is not None), None)
    if isinstance(first, bool):
        if name == "occluded":
            return {"type": "occluded"}
        return {"type": "checkbox", "values": [True, False]}
    if isinstance(first, int) and name == "group_id":
        return {"type": "group_id"}
    return {"type": "text", "values": []}


def observed_attributes(labels: list[dict]) -> dict[str, dict]:
    seen: dict[str, list] = {}
    for lab in labels:
        for k, v in lab.items():
            if k not in RESERVED_KEYS and not k.startswith("_"):
                seen.setdefault(k, []).append(v)
    return {k: _recommended(k, vs) for k, vs in sorted(seen.items())
            if any(v is not None for v in vs)}


def _normalize_attrs(fname: str, spec: Any, observed: dict[str, dict], existing: bool,
                     scalar: bool) -> dict[str, dict]:
    if spec is True:
        raw = dict(observed) if existing and not scalar else {}
    elif spec is False or spec is None:
        raw = {}
    elif isinstance(spec, str):
        raw = {spec: {}}
    elif isinstance(spec, (list, tuple)):
        raw = {a: {} for a in spec}
    elif isinstance(spec, dict):
        raw = {k: (v if isinstance(v, dict) else {}) for k, v in spec.items()}
    else:
        raise SchemaError(f"Invalid attributes for field '{fname}': {spec!r}")
    out: dict[str, dict] = {}
    linked = {"occluded": None, "group_id": None}
    for aname, a in raw.items():
        if not isinstance(aname, str) or not aname:
            raise SchemaError(f"Field '{fname}': attribute names must be non-empty strings")
        if aname == "label_id":
            raise SchemaError(f"Field '{fname}': the attribute name 'label_id' is reserved")
        if len(aname) > MAX_NAME:
            raise SchemaError(f"Field '{fname}': attribute name '{aname}' exceeds the "
                              f"{MAX_NAME} character limit")
        base = observed.get(aname, {"type": "text", "values": []})
        atype = a.get("type") or base["type"]
        if atype not in ATTR_TYPES:
            raise SchemaError(f"Field '{fname}': attribute '{aname}' has unsupported type "
                              f"'{atype}'; supported types are {list(ATTR_TYPES)}")
        values = a.get("values")
        if values is None and atype == base["type"]:
            values = base.get("values")
        if atype in ("select", "radio") and not values:
            raise SchemaError(f"Field '{fname}': attribute '{aname}' of type '{atype}' "
                              f"requires a non-empty list of 'values'")
        if values is None:
            # CVAT >= 2.5 needs explicit values for text/checkbox; fill FiftyOne's choices
            values = [True, False] if atype == "checkbox" else []
        if atype in ("occluded", "group_id"):
            if linked[atype]:
                raise SchemaError(f"Field '{fname}' may have only one '{atype}' attribute "
                                  f"(found '{linked[atype]}' and '{aname}')")
            linked[atype] = aname
            values = []
        norm = {"type": atype, "values": list(values),
                "mutable": bool(a.get("mutable", True)),
                "read_only": bool(a.get("read_only", False))}
        if "default" in a and a["default"] is not None:
            d = a["default"]
            if values and d not in values and stringify(d) not in map(stringify, values):
                raise SchemaError(f"Field '{fname}': default {d!r} of attribute '{aname}' is "
                                  f"not one of its values {list(values)}")
            norm["default"] = d
        out[aname] = norm
    return out


# ---------------------------------------------------------------------------------------------
# one field


def _infer_type(fname: str, kind: str, labels: list[dict]) -> str:
    options = _EXISTING_TYPES[kind]
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


def _build_field(fname: str, info: dict, samples: list[dict], defaults: dict) -> FieldSchema:
    if not isinstance(fname, str) or not fname:
        raise SchemaError(f"Invalid label field name {fname!r}")
    get = lambda k: info[k] if info.get(k) is not None else defaults.get(k)  # noqa: E731
    values = list(field_values(samples, fname))
    kinds = {_value_kind(fname, v) for v in values}
    if len(kinds) > 1:
        raise SchemaError(f"Field '{fname}' holds mixed label types {sorted(kinds)}")
    kind = kinds.pop() if kinds else None
    existing = kind is not None
    labels = [lab for v in values for lab in labels_of(v)]

    ltype = get("type")
    if ltype is not None:
        ltype = str(ltype).lower()
        if ltype not in LABEL_TYPES:
            raise SchemaError(f"Field '{fname}': unsupported label type '{ltype}'. "
                              f"Supported types are {list(LABEL_TYPES)}")
        if kind == "scalar" and ltype != "scalar":
            raise SchemaError(f"Field '{fname}' holds scalar values and cannot be annotated "
                              f"as '{ltype}'")
        if kind not in (None, "scalar") and ltype not in _EXISTING_TYPES[kind]:
            raise SchemaError(f"Field '{fname}' of type {kind} cannot be annotated as "
                              f"'{ltype}'; expected one of {_EXISTING_TYPES[kind]}")
    elif kind is None:
        raise SchemaError(f"You must specify a type for the new label field '{fname}'")
    else:
        ltype = "scalar" if kind == "scalar" else _infer_type(fname, kind, labels)
    if fname.startswith("frames.") is False and "." in fname:
        raise SchemaError(f"Field '{fname}': embedded fields are not supported")

    mask_targets = None
    if ltype == "segmentation":
        mt = get("mask_targets")
        if mt is None and not existing:
            raise SchemaError(f"Field '{fname}': a new segmentation field requires "
                              f"'mask_targets'")
        if mt is None:
            mt = {0: "background", **{i: str(i) for i in range(1, 256)}}
        try:
            mask_targets = {int(k): str(v) for k, v in dict(mt).items()}
        except (TypeError, ValueError) as e:
            raise SchemaError(f"Field '{fname}': mask_targets keys must be integers") from e
        classes_in = [v for k, v in sorted(mask_targets.items()) if k != 0]
    elif get("mask_targets") is not None:
        raise SchemaError(f"Field '{fname}': mask_targets only apply to segmentation fields")
    else:
        classes_in = get("classes")

    class_attributes: dict[str, dict] = {}
    classes: list[str] = []
    observed = observed_attributes(labels)
    if classes_in is None:
        if ltype != "scalar":
            if not existing:
                raise SchemaError(f"Field '{fname}': you must provide classes for the new "
                                  f"label field")
            classes = sorted({lab["label"] for lab in labels if isinstance(lab.get("label"), str)})
    else:
        if isinstance(classes_in, str):
            classes_in = [classes_in]
        for c in classes_in:
            if isinstance(c, dict):
                sub = c.get("classes") or []
                extra = _normalize_attrs(fname, c.get("attributes", False), observed, True,
                                         ltype == "scalar")
                for sc in sub:
                    classes.append(stringify(sc))
                    class_attributes[stringify(sc)] = extra
            else:
                classes.append(stringify(c))
    for c in classes:
        if len(c) > MAX_NAME:
            raise SchemaError(f"Field '{fname}': class name '{c}' exceeds the {MAX_NAME} "
                              f"character limit")
        if not c:
            raise SchemaError(f"Field '{fname}': class names must be non-empty")
    classes = list(dict.fromkeys(classes))

    attrs = _normalize_attrs(fname, info["attributes"] if "attributes" in info
                             else defaults.get("attributes", True), observed, existing,
                             ltype == "scalar")
    flags = {k: bool(info.get(k, defaults.get(k, True))) for k in (
        "allow_additions", "allow_deletions", "allow_label_edits", "allow_index_edits",
        "allow_spatial_edits")}
    existing = bool(info.get("existing_field", existing))
    return FieldSchema(fname, ltype, classes, attrs, mask_targets, existing,
                       class_attributes=class_attributes, **flags)


def build_schema(samples: list[dict], label_schema: dict | list | str | None = None, *,
                 label_field=None, label_type=None, classes=None, attributes=True,
                 mask_targets=None, allow_additions=True, allow_deletions=True,
                 allow_label_edits=True, allow_index_edits=True,
                 allow_spatial_edits=True) -> dict[str, FieldSchema]:
    """Validate a FiftyOne-style label schema against the samples; field -> FieldSchema."""
    defaults = {"type": label_type, "classes": classes, "attributes": attributes,
                "mask_targets": mask_targets, "allow_additions": allow_additions,
                "allow_deletions": allow_deletions, "allow_label_edits": allow_label_edits,
                "allow_index_edits": allow_index_edits, "allow_spatial_edits": allow_spatial_edits}
    if label_schema is None:
        if label_field is None:
            raise SchemaError("Either 'label_schema' or 'label_field' must be provided")
        label_schema = {label_field: {}}
    elif isinstance(label_schema, str):
        label_schema = {label_schema: {}}
    elif isinstance(label_schema, (list, tuple)):
        label_schema = {f: {} for f in label_schema}
    if not label_schema:
        raise SchemaError("The label schema is empty")
    out = {}
    for fname, info in label_schema.items():
        if info is None:
            info = {}
        if not isinstance(info, dict):
            raise SchemaError(f"Field '{fname}': schema entry must be a dict, not "
                              f"{type(info).__name__}")
        out[fname] = _build_field(fname, info, samples, defaults)
    return out


# ---------------------------------------------------------------------------------------------
# CVAT label specs


def _label_names(schema: dict[str, FieldSchema]) -> list[tuple[str, str, str | None]]:
    """(cvat name, field, class or None) for every CVAT label the schema needs."""
    raw = []
    for f in schema.values():
        if f.classes:
            raw += [(c, f.name, c) for c in f.classes]
        else:
            raw.append((f.name, f.name, None))
    counts: dict[str, int] = {}
    for name, _, _ in raw:
        counts[name] = counts.get(name, 0) + 1
    return [(f"{name}_{fld}" if counts[name] > 1 else name, fld, cls) for name, fld, cls in raw]


def class_map(schema: dict[str, FieldSchema]) -> dict[str, tuple[str, str | None]]:
    """CVAT label name -> (field, class); class is None for a classless field's one label."""
    return {name: (fld, cls) for name, fld, cls in _label_names(schema)}


def label_name_map(schema: dict[str, FieldSchema]) -> dict[tuple[str, str | None], str]:
    """(field, class) -> CVAT label name: the inverse of class_map()."""
    return {(fld, cls): name for name, fld, cls in _label_names(schema)}


def _cvat_attr(name: str, a: dict) -> dict:
    values = [stringify(v) for v in a.get("values") or []]
    if "default" in a:
        default = stringify(a["default"])
    elif a["type"] == "checkbox":
        default = "false"
    elif values and a["type"] in ("select", "radio"):
        default = values[0]
    else:
        default = ""
    return {"name": name, "mutable": bool(a.get("mutable", True)), "input_type": a["type"],
            "default_value": default, "values": values}


LABEL_ID_ATTR = {"name": "label_id", "mutable": True, "input_type": "text",
                 "default_value": "", "values": []}


def cvat_labels(schema: dict[str, FieldSchema]) -> list[dict]:
    """Label specs for POST /api/tasks or /api/projects (see module docstring)."""
    out = []
    for name, fld, cls in _label_names(schema):
        f = schema[fld]
        attrs = [_cvat_attr(an, a) for an, a in f.attrs_for(cls).items()
                 if a["type"] not in ("occluded", "group_id")]
        if f.type == "scalar":
            if cls is None and not attrs:
                attrs.append({"name": "value", "mutable": True, "input_type": "text",
                              "default_value": "", "values": []})
        else:
            attrs.append(dict(LABEL_ID_ATTR))
        out.append({"name": name, "attributes": attrs})
    return out
