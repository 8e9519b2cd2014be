"""Validation of a LabeledData body (tags, shapes, tracks) in CVAT's order, all before anything
is written: field checks (serializer-style errors aligned with the request items), then ids
(``must be absent`` for PUT and PATCH create), then geometry lengths, then labels and attribute
specs (view-level list errors)."""
from __future__ import annotations

from typing import Any

from ..errors import ValidationError
from .annotation_labels import LabelIndex

KINDS = ("tags", "shapes", "tracks")
SHAPE_TYPES = ("rectangle", "polygon", "polyline", "points", "ellipse", "cuboid", "mask", "skeleton")
REQUIRED = "This field is required."


# ---- field validation (serializer stage) ----------------------------------------------------

def _int_err(v, *, minimum=None, nullable=False, required=True, present=True) -> str | None:
    if not present:
        return REQUIRED if required else None
    if v is None:
        return None if nullable else "This field may not be null."
    if isinstance(v, bool) or not isinstance(v, int):
        if isinstance(v, str) and v.strip().lstrip("-").isdigit():
            v = int(v)
        else:
            return "A valid integer is required."
    if minimum is not None and v < minimum:
        return f"Ensure this value is greater than or equal to {minimum}."
    return None


def _check_attrs(attrs) -> Any:
    if not isinstance(attrs, list):
        return ['Expected a list of items but got type "%s".' % type(attrs).__name__]
    errs = []
    for a in attrs:
        e = {}
        if not isinstance(a, dict):
            errs.append({"non_field_errors": ["Invalid data. Expected a dictionary."]})
            continue
        m = _int_err(a.get("spec_id"), present="spec_id" in a)
        if m:
            e["spec_id"] = [m]
        if "value" not in a:
            e["value"] = [REQUIRED]
        elif a["value"] is None or isinstance(a["value"], (list, dict)):
            e["value"] = ["Not a valid string."]
        elif len(str(a["value"])) > 4096:
            e["value"] = ["Ensure this field has no more than 4096 characters."]
        errs.append(e)
    return errs if any(errs) else None


def _check_geometry_fields(o: dict, e: dict) -> None:
    if o.get("type") not in SHAPE_TYPES:
        e["type"] = [REQUIRED] if "type" not in o else [f'"{o.get("type")}" is not a valid choice.']
    for b in ("occluded", "outside"):
        if b in o and not isinstance(o[b], bool):
            e[b] = ["Must be a valid boolean."]
    m = _int_err(o.get("z_order"), present="z_order" in o, required=False)
    if m:
        e["z_order"] = [m]
    if "rotation" in o:
        r = o["rotation"]
        if isinstance(r, bool) or not isinstance(r, (int, float)):
            e["rotation"] = ["A valid number is required."]
        elif r < 0:
            e["rotation"] = ["Ensure this value is greater than or equal to 0."]
        elif r > 360:
            e["rotation"] = ["Ensure this value is less than or equal to 360."]
    pts = o.get("points", [])
    if not isinstance(pts, list):
        e["points"] = ['Expected a list of items but got type "%s".' % type(pts).__name__]
    elif any(isinstance(p, bool) or not isinstance(p, (int, float)) for p in pts):
        e["points"] = ["A valid number is required."]


def _check_common(o: dict, e: dict, *, label=True) -> None:
    m = _int_err(o.get("frame"), minimum=0, present="frame" in o)
    if m:
        e["frame"] = [m]
    if label:
        m = _int_err(o.get("label_id"), minimum=0, present="label_id" in o)
        if m:
            e["label_id"] = [m]
        m = _int_err(o.get("group"), minimum=0, nullable=True, present="group" in o, required=False)
        if m:
            e["group"] = [m]
        if "source" in o and (not isinstance(o["source"], str) or not o["source"]):
            e["source"] = ["This field may not be blank."]
    m = _int_err(o.get("id"), nullable=True, present="id" in o, required=False)
    if m:
        e["id"] = [m]
    if "attributes" in o:
        a = _check_attrs(o["attributes"])
        if a:
            e["attributes"] = a


def _aligned(items, check) -> list | None:
    if not isinstance(items, list):
        return ['Expected a list of items but got type "%s".' % type(items).__name__]
    errs = [check(o) if isinstance(o, dict) else {"non_field_errors": ["Invalid data. Expected a dictionary."]}
            for o in items]
    return errs if any(errs) else None


def _check_tag(o):
    e = {}
    _check_common(o, e)
    return e


def _check_shape(o, sub=False):
    e = {}
    _check_common(o, e)
    _check_geometry_fields(o, e)
    if not sub and "elements" in o:
        el = _aligned(o["elements"], lambda s: _check_shape(s, sub=True))
        if el:
            e["elements"] = el
    return e


def _check_tracked_shape(o):
    e = {}
    _check_common(o, e, label=False)
    _check_geometry_fields(o, e)
    return e


def _check_track(o, sub=False):
    e = {}
    _check_common(o, e)
    if "shapes" not in o:
        e["shapes"] = [REQUIRED]
    else:
        s = _aligned(o["shapes"], _check_tracked_shape)
        if s:
            e["shapes"] = s
    if not sub and "elements" in o:
        el = _aligned(o["elements"], lambda t: _check_track(t, sub=True))
        if el:
            e["elements"] = el
    return e


_CHECKS = {"tags": _check_tag, "shapes": _check_shape, "tracks": _check_track}


def _check_fields(data: dict) -> None:
    errors = {}
    for kind in KINDS:
        if kind in data:
            e = _aligned(data[kind], _CHECKS[kind])
            if e:
                errors[kind] = e
    if errors:
        raise ValidationError(errors)


# ---- ids ------------------------------------------------------------------------------------

def _check_ids(data: dict, *, absent: bool) -> None:
    """PUT and PATCH create: ids must be absent (CVAT ≥2.41). PATCH delete: ids required.
    Ids on the shapes inside a track are not checked, as in CVAT."""
    msg = "must be absent" if absent else REQUIRED

    def bad(o):
        return (o.get("id") is not None) if absent else (o.get("id") is None)

    def item(o):
        e = {}
        if bad(o):
            e["id"] = [msg]
        if absent:
            el = [({"id": [msg]} if bad(s) else {}) for s in o.get("elements") or []]
            if any(el):
                e["elements"] = el
        return e

    errors = {}
    for kind in KINDS:
        errs = [item(o) for o in data.get(kind, [])]
        if any(errs):
            errors[kind] = errs
    if errors:
        raise ValidationError(errors)


# ---- geometry -------------------------------------------------------------------------------

def points_error(shape_type: str, n: int, n_elements: int = 0, tracked: bool = False) -> dict | None:
    """CVAT ≥2.40's length rules (§8.2); returns a field-error dict or None."""
    ok = {
        "rectangle": n == 4, "ellipse": n == 4, "cuboid": n == 16, "mask": n >= 5,
        "polygon": n >= 6 and n % 2 == 0, "polyline": n >= 4 and n % 2 == 0,
        "points": n >= 2 and n % 2 == 0, "skeleton": n == 0,
    }.get(shape_type, True)
    if not ok:
        return {"points": [f"invalid length for shape type '{shape_type}'"]}
    if tracked:
        return None
    if shape_type == "skeleton" and n_elements == 0:
        return {"elements": ["skeleton shapes must have at least one element"]}
    if shape_type != "skeleton" and n_elements:
        return {"elements": [f"shapes of type '{shape_type}' cannot have elements"]}
    return None


def _check_geometry(data: dict) -> None:
    errors = {}
    shapes = data.get("shapes", [])
    errs = []
    for s in shapes:
        e = points_error(s["type"], len(s.get("points") or []), len(s.get("elements") or [])) or {}
        el = [points_error(x["type"], len(x.get("points") or [])) or {} for x in s.get("elements") or []]
        if any(el) and "elements" not in e:
            e["elements"] = el
        errs.append(e)
    if any(errs):
        errors["shapes"] = errs
    terrs = []
    for t in data.get("tracks", []):
        e = {}
        se = [points_error(s["type"], len(s.get("points") or []), tracked=True) or {} for s in t["shapes"]]
        if any(se):
            e["shapes"] = se
        ee = []
        for el in t.get("elements") or []:
            x = [points_error(s["type"], len(s.get("points") or []), tracked=True) or {} for s in el["shapes"]]
            ee.append({"shapes": x} if any(x) else {})
        if any(ee):
            e["elements"] = ee
        terrs.append(e)
    if any(terrs):
        errors["tracks"] = terrs
    if errors:
        raise ValidationError(errors)


# ---- labels and attribute specs (view stage) ------------------------------------------------

def _check_labels(data: dict, idx: LabelIndex) -> None:
    def label_ok(lid):
        if lid not in idx.labels:
            raise ValidationError([f"label_id `{lid}` is invalid"])

    def attrs_ok(attrs, lid, which):
        specs = idx.specs[lid]
        for a in attrs or []:
            spec = specs.get(int(a["spec_id"]))
            if spec is None or (which == "mutable" and not spec.get("mutable")) or \
                    (which == "immutable" and spec.get("mutable")):
                raise ValidationError([f"spec_id `{a['spec_id']}` is invalid"])

    for t in data.get("tags", []):
        label_ok(int(t["label_id"]))
        attrs_ok(t.get("attributes"), int(t["label_id"]), "all")
    for s in data.get("shapes", []):
        label_ok(int(s["label_id"]))
        attrs_ok(s.get("attributes"), int(s["label_id"]), "all")
        for el in s.get("elements") or []:
            label_ok(int(el["label_id"]))
            attrs_ok(el.get("attributes"), int(el["label_id"]), "all")
    for t in data.get("tracks", []):
        for tr in [t] + list(t.get("elements") or []):
            lid = int(tr["label_id"])
            label_ok(lid)
            attrs_ok(tr.get("attributes"), lid, "immutable")
            for s in tr["shapes"]:
                attrs_ok(s.get("attributes"), lid, "mutable")


def validate(data: Any, idx: LabelIndex, *, ids: str | None) -> dict:
    """All of CVAT's checks on a LabeledData body; ``ids`` is "absent", "required" or None.
    Returns the body with the three lists present."""
    if not isinstance(data, dict):
        raise ValidationError({"non_field_errors": [f"Invalid data. Expected a dictionary, but got {type(data).__name__}."]})
    _check_fields(data)
    data = {k: data.get(k) or [] for k in KINDS}
    if ids == "absent":
        _check_ids(data, absent=True)
    elif ids == "required":
        _check_ids(data, absent=False)
    _check_geometry(data)
    _check_labels(data, idx)
    return data
