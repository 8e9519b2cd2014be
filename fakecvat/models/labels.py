"""Labels and their attribute specs, validated and updated the way CVAT does (cvat-api.md §5).

A label belongs to exactly one parent: a project or a task outside any project (a task inside a
project uses the project's labels). Skeleton sublabels are label documents with ``parent_id``.

Validation happens before anything is written, so a bad item never leaves half a label set
behind. Errors are serializer dicts whose lists are aligned with the request items:
``{"labels": [{}, {"name": ["This field is required."]}]}``, as DRF's ListSerializer answers.
"""
from __future__ import annotations

import re
from typing import Any

from ..errors import ValidationError
from ..store import Store
from . import common, events

LABEL_TYPES = ("any", "rectangle", "polygon", "polyline", "points", "ellipse", "cuboid", "mask", "skeleton", "tag")
INPUT_TYPES = ("select", "radio", "checkbox", "text", "number")
# Our own palette of well-separated colours; the first unused one is given to a label without one.
PALETTE = (
    "#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6",
    "#bcf60c", "#fabebe", "#008080", "#e6beff", "#9a6324", "#fffac8", "#800000", "#aaffc3",
    "#808000", "#ffd8b1", "#000075", "#808080", "#33ddff", "#fa3253", "#34d1b7", "#ff007c",
    "#ddff33", "#24b353", "#b83df5", "#66ff66", "#32b7fa", "#ffcc33", "#83e070", "#fafa37",
)
REQUIRED = "This field is required."
TRUE = {True, "true", "True", "TRUE", "1", 1, "yes", "on"}
FALSE = {False, "false", "False", "FALSE", "0", 0, "no", "off"}


# ---- reading ----------------------------------------------------------------------------------

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


# ---- validation -------------------------------------------------------------------------------

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


def _validate_label(spec: Any, *, taken: set[str], partial: bool, is_sub: bool = False,
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
                sub_err = [_validate_label(s, taken=sub_taken, partial=False, is_sub=True) for s in subs]
                if any(sub_err):
                    err["sublabels"] = sub_err
    if not is_sub and t == "skeleton" and current is None and not subs:
        err.setdefault("sublabels", ["Skeleton labels must have at least one sublabel."])
    return err


# ---- writing ----------------------------------------------------------------------------------

def _parent_fields(task_id, project_id) -> dict:
    if (task_id is None) == (project_id is None):
        raise ValueError("a label needs exactly one of task_id / project_id")
    return {"task_id": task_id if project_id is None else None, "project_id": project_id}


def _used_colors(store: Store, task_id, project_id) -> set[str]:
    f = _parent_fields(task_id, project_id)
    return {lb["color"].lower() for lb in store.find(
        "labels", lambda lb: lb.get("task_id") == f["task_id"] and lb.get("project_id") == f["project_id"])}


def _pick_color(used: set[str]) -> str:
    for c in PALETTE:
        if c not in used:
            used.add(c)
            return c
    # More labels than palette entries: derive a deterministic colour from the count.
    n = len(used)
    c = "#%02x%02x%02x" % ((n * 97) % 256, (n * 57) % 256, (n * 193) % 256)
    used.add(c)
    return c


def _default_value(spec: dict) -> str:
    values = spec.get("values") or []
    dv = spec.get("default_value")
    if dv is None or dv == "":
        return values[0] if values else ""
    if spec.get("input_type") in ("select", "radio") and values and dv not in values:
        return values[0]
    return dv


def _new_attribute(store: Store, spec: dict) -> dict:
    return {"id": store.next_id("attributes"), "name": spec["name"], "mutable": spec["mutable"] in TRUE,
            "input_type": spec["input_type"], "default_value": _default_value(spec),
            "values": list(spec["values"])}


def _update_attribute(attr: dict, spec: dict) -> None:
    if "name" in spec:
        attr["name"] = spec["name"]
    if "mutable" in spec:
        attr["mutable"] = spec["mutable"] in TRUE
    if "input_type" in spec:
        attr["input_type"] = spec["input_type"]
    if "values" in spec:
        attr["values"] = list(spec["values"])
    if "default_value" in spec or "values" in spec:
        attr["default_value"] = _default_value({**attr, **{k: v for k, v in spec.items() if k == "default_value"}})


def _insert_label(store: Store, spec: dict, parent: dict, used: set[str], parent_id=None) -> dict:
    color = spec.get("color") or _pick_color(used)
    used.add(color.lower())
    doc = store.insert("labels", {
        "name": spec["name"], "color": color, "type": spec.get("type") or "any",
        "attributes": [_new_attribute(store, a) for a in (spec.get("attributes") or [])],
        "project_id": parent["project_id"], "task_id": parent["task_id"], "parent_id": parent_id, "svg": "",
    })
    if doc["type"] == "skeleton" and parent_id is None:
        subs = [_insert_label(store, {**s, "type": s.get("type") or "points"}, parent, used, doc["id"])
                for s in spec.get("sublabels") or []]
        store.update("labels", doc["id"], svg=_svg_with_ids(spec.get("svg") or "", subs))
    return doc


def _svg_with_ids(svg: str, subs: list[dict]) -> str:
    """CVAT stores the skeleton layout with sublabel ids instead of names."""
    ids = {s["name"]: s["id"] for s in subs}
    return re.sub(r'data-label-name="([^"]*)"',
                  lambda m: f'data-label-id="{ids[m.group(1)]}"' if m.group(1) in ids else m.group(0), svg)


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
    errors = [_validate_label(s, taken=taken, partial=False) for s in specs]
    if any(errors):
        raise ValidationError({"labels": errors})


def create_labels(store: Store, specs: list[dict], *, task_id=None, project_id=None) -> list[dict]:
    """Validate all specs, then create them under the parent. Returns the new top-level docs."""
    if specs is None:
        specs = []
    if not isinstance(specs, list):
        raise ValidationError({"labels": [f'Expected a list of items but got type "{type(specs).__name__}".']})
    parent = _parent_fields(task_id, project_id)
    with store.lock:
        validate_new_labels(store, specs, task_id=task_id, project_id=project_id)
        used = _used_colors(store, task_id, project_id)
        return [_insert_label(store, s, parent, used) for s in specs]


def patch_labels(store: Store, specs: list[dict], *, task_id=None, project_id=None, sender=None) -> list[dict]:
    """CVAT's parent-PATCH semantics: ``id`` updates, no ``id`` creates, ``deleted`` deletes.
    Labels not mentioned are untouched; attributes are never removed."""
    if not isinstance(specs, list):
        raise ValidationError({"labels": [f'Expected a list of items but got type "{type(specs).__name__}".']})
    parent = _parent_fields(task_id, project_id)
    with store.lock:
        mine = {lb["id"]: lb for lb in top_level_labels(store, task_id=task_id, project_id=project_id)}
        taken = {lb["name"] for lb in mine.values()}
        errors = []
        for s in specs:
            if isinstance(s, dict) and s.get("id") is not None:
                current = mine.get(s["id"])
                if current is None:
                    errors.append({"id": [f"Label {s['id']} does not exist in this {'project' if project_id else 'task'}."]})
                elif s.get("deleted"):
                    errors.append({})
                else:
                    errors.append(_validate_label(s, taken=taken, partial=True, current=current))
            else:
                errors.append(_validate_label(s, taken=taken, partial=False))
        if any(errors):
            raise ValidationError({"labels": errors})
        used = _used_colors(store, task_id, project_id)
        out = []
        for s in specs:
            if s.get("id") is None:
                out.append(_insert_label(store, s, parent, used))
            elif s.get("deleted"):
                delete_label(store, s["id"], touch=False)
            else:
                out.append(_apply_update(store, mine[s["id"]], s, parent, used))
        if specs:
            touch_parent(store, task_id=task_id, project_id=project_id, sender=sender)
        return out


def update_label(store: Store, label_id, spec: dict, sender=None) -> dict:
    """``PATCH /api/labels/{id}``: a local update of one top-level label."""
    with store.lock:
        current = store.get("labels", label_id)
        if current.get("parent_id") is not None:
            raise ValidationError(["Sublabels cannot be modified this way. Modify the skeleton label instead."])
        if not isinstance(spec, dict):
            raise ValidationError({"non_field_errors": ["Invalid data."]})
        if "deleted" in spec:
            raise ValidationError({"deleted": ["Cannot delete a label via PATCH. Use DELETE instead."]})
        task_id, project_id = current.get("task_id"), current.get("project_id")
        if project_id is not None:
            task_id = None
        taken = {lb["name"] for lb in top_level_labels(store, task_id=task_id, project_id=project_id)}
        err = _validate_label(spec, taken=taken, partial=True, current=current)
        if err:
            raise ValidationError(err)
        parent = _parent_fields(task_id, project_id)
        doc = _apply_update(store, current, spec, parent, _used_colors(store, task_id, project_id))
        touch_parent(store, task_id=task_id, project_id=project_id, sender=sender)
        return doc


def _apply_update(store: Store, current: dict, spec: dict, parent: dict, used: set[str]) -> dict:
    changes: dict[str, Any] = {}
    if "name" in spec:
        changes["name"] = spec["name"]
    if spec.get("color"):
        changes["color"] = spec["color"]
    # A skeleton stays a skeleton and nothing becomes one: CVAT ignores such changes silently.
    if spec.get("type") and current.get("type") != "skeleton" and spec["type"] != "skeleton":
        changes["type"] = spec["type"]
    if spec.get("attributes"):
        attrs = [dict(a) for a in current.get("attributes", [])]
        for a in spec["attributes"]:
            target = next((x for x in attrs if x["id"] == a.get("id")), None) if a.get("id") is not None \
                else next((x for x in attrs if x["name"] == a["name"]), None)
            if target is None:
                attrs.append(_new_attribute(store, a))
            else:
                _update_attribute(target, a)
        changes["attributes"] = attrs
    doc = store.update("labels", current["id"], **changes)
    if current.get("type") == "skeleton" and spec.get("sublabels"):
        subs = {s["name"]: s for s in sublabels_of(store, current)}
        for s in spec["sublabels"]:
            if s.get("name") in subs:
                _apply_update(store, subs[s["name"]], {k: v for k, v in s.items() if k != "sublabels"}, parent, used)
            else:
                _insert_label(store, {**s, "type": s.get("type") or "points"}, parent, used, current["id"])
    return doc


def delete_label(store: Store, label_id, *, touch: bool = True, sender=None) -> None:
    """Delete a top-level label, its sublabels, and the annotations that use them."""
    with store.lock:
        label = store.get("labels", label_id)
        if label is None:
            return
        if label.get("parent_id") is not None:
            raise ValidationError(["Sublabels cannot be deleted this way. Delete the skeleton label instead."])
        ids = {label["id"]} | {s["id"] for s in sublabels_of(store, label)}
        for i in ids:
            store.delete("labels", i)
        _drop_annotations_of(store, label, ids)
        if touch:
            touch_parent(store, task_id=label.get("task_id"), project_id=label.get("project_id"), sender=sender)
        events.emit(store, "delete:label", "label", label["id"], None, sender)


def delete_labels_of(store: Store, *, task_id=None, project_id=None) -> None:
    """Forget every label (and sublabel) of a parent, e.g. when the parent is deleted."""
    with store.lock:
        if project_id is not None:
            doomed = store.find("labels", lambda lb: lb.get("project_id") == project_id)
        else:
            doomed = store.find("labels", lambda lb: lb.get("task_id") == task_id and lb.get("project_id") is None)
        for lb in doomed:
            store.delete("labels", lb["id"])


def _drop_annotations_of(store: Store, label: dict, ids: set) -> None:
    """CVAT cascades a label delete to the annotations using it."""
    if label.get("project_id") is not None:
        task_ids = {t["id"] for t in store.find("tasks", lambda t: t.get("project_id") == label["project_id"])}
    else:
        task_ids = {label.get("task_id")}
    for job in store.find("jobs", lambda j: j.get("task_id") in task_ids):
        ann = store.get("annotations", job["id"])
        if not ann:
            continue
        changed = False
        for kind in ("tags", "shapes", "tracks"):
            kept = [o for o in ann.get(kind, []) if o.get("label_id") not in ids]
            if len(kept) != len(ann.get(kind, [])):
                ann[kind] = kept
                changed = True
        if changed:
            store.put("annotations", ann, job["id"])


def touch_parent(store: Store, *, task_id=None, project_id=None, sender=None) -> None:
    """Label changes bump updated_date on the parent and, for a project, on its tasks."""
    if project_id is not None:
        from ..http import now
        project = store.get("projects", project_id)
        if project:
            before = project["updated_date"]
            store.update("projects", project_id, updated_date=now())
            events.emit(store, "update:project", "project", project_id, {"updated_date": before}, sender)
        for t in store.find("tasks", lambda t: t.get("project_id") == project_id):
            store.update("tasks", t["id"], updated_date=now())
    elif task_id is not None:
        common.touch(store, task_id=task_id, sender=sender)
