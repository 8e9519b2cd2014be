"""Validation of label and attribute specs the way CVAT's serializers do (cvat-api.md §5), before
anything is written, so a bad item never leaves half a label set behind. Errors are serializer
dicts whose lists are aligned with the request items:
``{"labels": [{}, {"name": ["This field is required."]}]}``, as DRF's ListSerializer answers."""
from __future__ import annotations

import re
from typing import Any

from ..errors import ValidationError
from ..store import Store
from .label_queries import top_level_labels


LABEL_TYPES = ("any", "rectangle", "polygon", "polyline", "points", "ellipse", "cuboid", "mask", "skeleton", "tag")
INPUT_TYPES = ("select", "radio", "checkbox", "text", "number")
REQUIRED = "This field is required."
TRUE = {True, "true", "True", "TRUE", "1", 1, "yes", "on"}
FALSE = {False, "false", "False", "FALSE", "0", 0, "no", "off"}


def _name_errors(name: Any) -> list[str]:
    if name is None:
        return [REQUIRED]
    if not isinstance(name, str):
        return ["Not a valid string."]
    if not name.strip():
        return ["This field may not be blank."]
    if len(name) > 64:
        return ["Ensure this field has no more than 64 characters."]
    return []


def _validate_attribute(spec: Any, partial: bool) -> dict:
    """Errors of one attribute spec (``partial``: an update by id may omit fields)."""
    if not isinstance(spec, dict):
        return {"non_field_errors": [f"Invalid data. Expected a dictionary, but got {type(spec).__name__}."]}
    err: dict[str, list] = {}
    if "name" in spec or not partial:
        if e := _name_errors(spec.get("name")):
            err["name"] = e
    if "mutable" in spec or not partial:
        if "mutable" not in spec:
            err["mutable"] = [REQUIRED]
        elif not _is_bool(spec["mutable"]):
            err["mutable"] = ["Must be a valid boolean."]
    if "input_type" in spec or not partial:
        it = spec.get("input_type")
        if it is None:
            err["input_type"] = [REQUIRED]
        elif it not in INPUT_TYPES:
            err["input_type"] = [f'"{it}" is not a valid choice.']
    if "values" in spec or not partial:
        vals = spec.get("values")
        if vals is None:
            err["values"] = [REQUIRED]
        elif not isinstance(vals, list):
            err["values"] = [f'Expected a list of items but got type "{type(vals).__name__}".']
        else:
            bad = {}
            for i, v in enumerate(vals):
                if not isinstance(v, str):
                    bad[i] = ["Not a valid string."]
                elif len(v) > 200:
                    bad[i] = ["Ensure this field has no more than 200 characters."]
                elif "\n" in v:
                    bad[i] = ["Attribute values cannot contain line breaks."]
            if bad:
                err["values"] = bad
    if "default_value" in spec and spec["default_value"] is not None:
        dv = spec["default_value"]
        if not isinstance(dv, str):
            err["default_value"] = ["Not a valid string."]
        elif len(dv) > 128:
            err["default_value"] = ["Ensure this field has no more than 128 characters."]
    return err


def _is_bool(v) -> bool:
    try:
        return v in TRUE or v in FALSE
    except TypeError:
        return False


def validate_label(spec: Any, *, taken: set[str], partial: bool, is_sub: bool = False,
                    current: dict | None = None) -> dict:
    """Errors of one label spec; ``taken`` holds sibling names (updated as names are claimed)."""
    if not isinstance(spec, dict):
        return {"non_field_errors": [f"Invalid data. Expected a dictionary, but got {type(spec).__name__}."]}
    err: dict[str, Any] = {}
    if "name" in spec or not partial:
        if e := _name_errors(spec.get("name")):
            err["name"] = e
        elif spec["name"] in taken and not (current and current["name"] == spec["name"]):
            err["name"] = [f"Label with name '{spec['name']}' already exists" if not is_sub
                           else f"Sublabel with name '{spec['name']}' already exists"]
        else:
            if current:
                taken.discard(current["name"])
            taken.add(spec["name"])
    t = spec.get("type")
    if t is not None and t not in LABEL_TYPES:
        err["type"] = [f'"{t}" is not a valid choice.']
    if is_sub and t == "skeleton":
        err["type"] = ["Sublabels cannot be skeletons."]
    color = spec.get("color")
    if color not in (None, "") and not (isinstance(color, str) and re.fullmatch(r"#[0-9a-fA-F]{6}", color)):
        err["color"] = ["Color must be a hex value like #ff00aa."]
    attrs = spec.get("attributes", [])
    if attrs is None:
        attrs = []
    if not isinstance(attrs, list):
        err["attributes"] = [f'Expected a list of items but got type "{type(attrs).__name__}".']
    else:
        existing = {a["name"]: a for a in (current or {}).get("attributes", [])}
        by_id = {a["id"]: a for a in (current or {}).get("attributes", [])}
        seen: set[str] = set()
        items = []
        for a in attrs:
            upd = isinstance(a, dict) and a.get("id") is not None
            e = _validate_attribute(a, partial=upd)
            if upd and a["id"] not in by_id and not e:
                e = {"id": [f"Attribute {a['id']} does not belong to this label."]}
            name = a.get("name") if isinstance(a, dict) else None
            if not e and isinstance(name, str):
                if name in seen:
                    e = {"name": [f"Duplicate attribute with name '{name}' exists"]}
                seen.add(name)
                if upd and name in existing and existing[name]["id"] != a["id"]:
                    e = {"name": [f"Duplicate attribute with name '{name}' exists"]}
            items.append(e)
        if any(items):
            err["attributes"] = items
    subs = spec.get("sublabels")
    if subs is not None and not is_sub:
        if not isinstance(subs, list):
            err["sublabels"] = [f'Expected a list of items but got type "{type(subs).__name__}".']
        elif (t or (current or {}).get("type")) == "skeleton" or subs:
            if (t or (current or {}).get("type")) != "skeleton" and subs:
                err["sublabels"] = ["Only skeleton labels can have sublabels."]
            else:
                sub_taken: set[str] = set()
                sub_err = [validate_label(s, taken=sub_taken, partial=False, is_sub=True) for s in subs]
                if any(sub_err):
                    err["sublabels"] = sub_err
    if not is_sub and t == "skeleton" and current is None and not subs:
        err.setdefault("sublabels", ["Skeleton labels must have at least one sublabel."])
    return err


def validate_new_labels(store: Store, specs, *, task_id=None, project_id=None) -> None:
    """Raise the ValidationError ``create_labels`` would raise; writes nothing. With neither
    parent id, validates labels for a parent that does not exist yet."""
    if specs is None:
        return
    if not isinstance(specs, list):
        raise ValidationError({"labels": [f'Expected a list of items but got type "{type(specs).__name__}".']})
    taken = set()
    if task_id is not None or project_id is not None:
        taken = {lb["name"] for lb in top_level_labels(store, task_id=task_id, project_id=project_id)}
    errors = [validate_label(s, taken=taken, partial=False) for s in specs]
    if any(errors):
        raise ValidationError({"labels": errors})
