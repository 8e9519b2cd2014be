"""Annotations (CVAT's LabeledData) of jobs and tasks: validation, normalisation, storage rules.

The ``annotations`` table is keyed by job id: ``{id, version, tags, shapes, tracks}`` holding
objects already in CVAT's output shape (every key present, ``rotation`` a float, attribute
values strings). Stored objects are never mutated after they are written: every write builds
new lists, so a reader may serialize what it got without copying (10k shapes must stay fast).

Reads add what CVAT adds on output (reference/cvat-api.md §8.1): attribute values missing in
the database are filled from the label specs (shapes and tags: every spec; tracks: immutable
specs; track shapes: mutable values carried from the previous keyframe). Writes answer the
objects as written, without that filling, as CVAT does.

Validation runs in CVAT's order, all before anything is written: field checks (serializer-style
errors aligned with the request items), then ids (``must be absent`` for PUT and PATCH create),
then geometry lengths, then labels and attribute specs (view-level list errors).
"""
from __future__ import annotations

import copy

from typing import Any, Iterable

from ..errors import APIError, ValidationError
from ..store import Store
from . import common, labels as labels_model

TABLE = "annotations"
KINDS = ("tags", "shapes", "tracks")
SHAPE_TYPES = ("rectangle", "polygon", "polyline", "points", "ellipse", "cuboid", "mask", "skeleton")
ACTIONS = ("create", "update", "delete")
REQUIRED = "This field is required."


# ---- labels seen by a task ------------------------------------------------------------------

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


# ---- normalisation into the stored (output) shape ---------------------------------------------

class IdPool:
    """Ids from the store's counters, reserved in blocks (one journal entry per table per write)."""

    def __init__(self, store: Store):
        self.store = store
        self.blocks: dict[str, Any] = {}

    def reserve(self, table: str, n: int) -> None:
        if n > 0:
            self.blocks[table] = iter(_reserve(self.store, table, n))

    def take(self, table: str) -> int:
        it = self.blocks.get(table)
        if it is not None:
            v = next(it, None)
            if v is not None:
                return v
        return self.store.next_id(table)


def _reserve(store: Store, table: str, n: int) -> range:
    fn = getattr(store, "next_ids", None)
    if fn is not None:
        return fn(table, n)
    return range(0)  # fall back to one id at a time


def _attr_values(attrs) -> list[dict]:
    out = []
    for a in attrs or []:
        v = a["value"]
        if isinstance(v, bool):
            v = "true" if v else "false"
        out.append({"spec_id": int(a["spec_id"]), "value": str(v)})
    return out


def _geometry(o: dict) -> dict:
    return {
        "type": o["type"],
        "occluded": bool(o.get("occluded", False)),
        "outside": bool(o.get("outside", False)),
        "z_order": int(o.get("z_order") or 0),
        "rotation": float(o.get("rotation") or 0.0),
        "points": [float(p) for p in (o.get("points") or [])],
    }


def _keep_id(o, ids: IdPool, table: str, keep: bool) -> int:
    if keep and o.get("id") is not None:
        return int(o["id"])
    return ids.take(table)


def norm_tag(o: dict, ids: IdPool, keep=False) -> dict:
    return {"id": _keep_id(o, ids, "tags", keep), "frame": int(o["frame"]), "label_id": int(o["label_id"]),
            "group": o.get("group"), "source": o.get("source") or "manual",
            "attributes": _attr_values(o.get("attributes"))}


def norm_shape(o: dict, ids: IdPool, keep=False, parent: dict | None = None) -> dict:
    s = _geometry(o)
    s.update({"id": _keep_id(o, ids, "shapes", keep), "frame": int(o["frame"]) if parent is None else parent["frame"],
              "label_id": int(o["label_id"]), "group": o.get("group"), "source": o.get("source") or "manual",
              "attributes": _attr_values(o.get("attributes"))})
    if parent is None:
        s["elements"] = [norm_shape(e, ids, keep, parent=s) for e in o.get("elements") or []]
    return s


def _norm_track_shapes(o: dict, ids: IdPool, keep: bool, is_skeleton: bool) -> tuple[int, list[dict]]:
    """CVAT's track normalisation (§8.3): sort by frame, the track starts at its first shape,
    and a track frame given earlier than that gets an ``outside`` copy of the first shape."""
    shapes = []
    for s in sorted(o.get("shapes") or [], key=lambda s: int(s["frame"])):
        g = _geometry(s)
        g.update({"id": _keep_id(s, ids, "tracked_shapes", keep), "frame": int(s["frame"]),
                  "attributes": _attr_values(s.get("attributes"))})
        shapes.append(g)
    frame = int(o["frame"])
    if shapes and frame < shapes[0]["frame"] and not is_skeleton:
        first = dict(shapes[0], id=ids.take("tracked_shapes"), frame=frame, outside=True)
        shapes.insert(0, first)
    if shapes:
        frame = shapes[0]["frame"]
    return frame, shapes


def norm_track(o: dict, ids: IdPool, keep=False, parent_frame: int | None = None) -> dict | None:
    is_skeleton = bool(o.get("elements")) or any(s.get("type") == "skeleton" for s in o.get("shapes") or [])
    src = o if parent_frame is None else dict(o, frame=min(int(o["frame"]), parent_frame))
    frame, shapes = _norm_track_shapes(src, ids, keep, is_skeleton)
    if not shapes:
        return None  # [2.52] tracks without shapes are discarded
    t = {"id": _keep_id(o, ids, "tracks", keep), "frame": frame, "label_id": int(o["label_id"]),
         "group": o.get("group"), "source": o.get("source") or "manual", "shapes": shapes,
         "attributes": _attr_values(o.get("attributes"))}
    if parent_frame is None:
        els = [norm_track(e, ids, keep, parent_frame=frame) for e in o.get("elements") or []]
        t["elements"] = [e for e in els if e is not None]
    else:
        t["frame"] = parent_frame if parent_frame <= frame else frame
    return t


def _count(data: dict) -> dict[str, int]:
    n_shapes = sum(1 + len(s.get("elements") or []) for s in data.get("shapes", []))
    n_tracks = sum(1 + len(t.get("elements") or []) for t in data.get("tracks", []))
    n_ts = sum(len(t.get("shapes") or []) + 1 + sum(len(e.get("shapes") or []) + 1 for e in t.get("elements") or [])
               for t in data.get("tracks", []))
    return {"tags": len(data.get("tags", [])), "shapes": n_shapes, "tracks": n_tracks, "tracked_shapes": n_ts}


def normalize(store: Store, data: dict, *, keep_ids: bool = False) -> dict:
    """Validated input → stored objects with ids (``keep_ids``: reuse the given ids)."""
    ids = IdPool(store)
    if not keep_ids:
        for table, n in _count(data).items():
            ids.reserve(table, n)
    tracks = [norm_track(t, ids, keep_ids) for t in data.get("tracks", [])]
    return {"tags": [norm_tag(t, ids, keep_ids) for t in data.get("tags", [])],
            "shapes": [norm_shape(s, ids, keep_ids) for s in data.get("shapes", [])],
            "tracks": [t for t in tracks if t is not None]}


# ---- output filling ---------------------------------------------------------------------------

def _fill(attrs: list[dict], defaults: list[dict]) -> list[dict]:
    if not defaults:
        return attrs
    have = {a["spec_id"] for a in attrs}
    missing = [d for d in defaults if d["spec_id"] not in have]
    return attrs + missing if missing else attrs


def fill_shape(s: dict, idx: LabelIndex) -> dict:
    attrs = _fill(s["attributes"], idx.all_defaults.get(s["label_id"], ()))
    els = s.get("elements")
    new_els = [fill_shape(e, idx) for e in els] if els else els
    if attrs is s["attributes"] and (not els or all(a is b for a, b in zip(new_els, els))):
        return s
    out = dict(s, attributes=attrs)
    if els is not None:
        out["elements"] = new_els
    return out


def fill_tag(t: dict, idx: LabelIndex) -> dict:
    attrs = _fill(t["attributes"], idx.all_defaults.get(t["label_id"], ()))
    return t if attrs is t["attributes"] else dict(t, attributes=attrs)


def fill_track(t: dict, idx: LabelIndex) -> dict:
    lid = t["label_id"]
    attrs = _fill(t["attributes"], idx.immutable_defaults.get(lid, ()))
    mutable = idx.mutable_ids.get(lid) or []
    shapes = t["shapes"]
    if mutable:
        defaults = {d["spec_id"]: d["value"] for d in idx.all_defaults[lid] if d["spec_id"] in mutable}
        current = dict(defaults)
        shapes = []
        for s in t["shapes"]:
            for a in s["attributes"]:
                current[a["spec_id"]] = a["value"]
            have = {a["spec_id"] for a in s["attributes"]}
            missing = [{"spec_id": k, "value": current[k]} for k in mutable if k not in have]
            shapes.append(dict(s, attributes=s["attributes"] + missing) if missing else s)
    out = dict(t, attributes=attrs, shapes=shapes)
    if "elements" in t:
        out["elements"] = [fill_track(e, idx) for e in t["elements"]]
    return out


def fill(data: dict, idx: LabelIndex) -> dict:
    return {"version": 0,
            "tags": [fill_tag(t, idx) for t in data["tags"]],
            "shapes": [fill_shape(s, idx) for s in data["shapes"]],
            "tracks": [fill_track(t, idx) for t in data["tracks"]]}


# ---- jobs and tasks -----------------------------------------------------------------------------

def empty() -> dict:
    return {"version": 0, "tags": [], "shapes": [], "tracks": []}


def job_doc(store: Store, job_id: int) -> dict:
    return store.get(TABLE, job_id) or dict(empty(), id=job_id)


def annotation_jobs(store: Store, task_id: int) -> list[dict]:
    """The task's annotation jobs (not ground truth), by start frame."""
    jobs = store.find("jobs", lambda j: j["task_id"] == task_id and j.get("type", "annotation") == "annotation")
    return sorted(jobs, key=lambda j: (j["start_frame"], j["id"]))


def _in_range(o: dict, job: dict) -> bool:
    return job["start_frame"] <= o["frame"] <= job["stop_frame"]


def job_objects(store: Store, job: dict) -> dict:
    """What CVAT reads for a job: tags and shapes inside its frame range, all its tracks."""
    doc = job_doc(store, job["id"])
    return {"tags": [t for t in doc["tags"] if _in_range(t, job)],
            "shapes": [s for s in doc["shapes"] if _in_range(s, job)],
            "tracks": list(doc["tracks"])}


def _save(store: Store, job_id: int, objs: dict, *, sender=None) -> None:
    old = store.get(TABLE, job_id)
    version = (old or {}).get("version", 0) + 1
    store.put(TABLE, {"id": job_id, "version": version, "tags": objs["tags"], "shapes": objs["shapes"],
                      "tracks": objs["tracks"]}, job_id)


def _nonempty(data: dict) -> bool:
    return any(data.get(k) for k in KINDS)


def require_data(task: dict) -> None:
    if not task.get("data") or not task.get("size"):
        raise APIError("Task has no data", status=400, text=True)


def get_job(store: Store, job: dict, idx: LabelIndex) -> dict:
    with store.lock:
        return fill(job_objects(store, job), idx)


def put_job(store: Store, job: dict, data: Any, idx: LabelIndex, *, sender=None) -> dict:
    data = validate(data, idx, ids="absent")
    with store.lock:
        objs = normalize(store, data)
        _save(store, job["id"], objs)
        common.touch(store, job_id=job["id"], sender=sender)
    return dict(objs, version=0)


def delete_job(store: Store, job: dict, *, sender=None) -> None:
    with store.lock:
        had = _nonempty(job_doc(store, job["id"]))
        _save(store, job["id"], {"tags": [], "shapes": [], "tracks": []})
        if had:
            common.touch(store, job_id=job["id"], sender=sender)


def patch_job(store: Store, job: dict, action: str, data: Any, idx: LabelIndex, *, sender=None,
              validated: bool = False) -> dict:
    """PATCH ?action=create|update|delete on one job; returns what CVAT answers."""
    if action not in ACTIONS:
        raise ValidationError(["Please specify a correct 'action' for the request"])
    if not validated:
        data = validate(data, idx, ids={"create": "absent", "delete": "required"}.get(action))
    with store.lock:
        doc = job_doc(store, job["id"])
        if action == "create":
            objs = normalize(store, data)
            new = {k: doc[k] + objs[k] for k in KINDS}
            result = dict(objs, version=0)
        elif action == "update":
            with_id = {k: [o for o in data[k] if o.get("id") is not None] for k in KINDS}
            without = {k: [o for o in data[k] if o.get("id") is None] for k in KINDS}
            kept = normalize(store, with_id, keep_ids=True)
            created = normalize(store, without)
            new = {}
            for k in KINDS:
                replaced = {o["id"]: o for o in kept[k]}
                seen = set()
                out = []
                for o in doc[k]:
                    if o["id"] in replaced:
                        out.append(replaced[o["id"]])
                        seen.add(o["id"])
                    else:
                        out.append(o)
                out.extend(o for o in kept[k] if o["id"] not in seen)
                out.extend(created[k])
                new[k] = out
            result = {"version": 0, **{k: kept[k] + created[k] for k in KINDS}}
        else:
            doomed = {k: {int(o["id"]) for o in data[k]} for k in KINDS}
            new = {k: [o for o in doc[k] if o["id"] not in doomed[k]] for k in KINDS}
            result = {"version": 0, **data}
        changed = any(new[k] != doc[k] for k in KINDS) if action == "delete" else _nonempty(data)
        _save(store, job["id"], new)
        if changed:
            common.touch(store, job_id=job["id"], sender=sender)
    return result


# ---- task level ---------------------------------------------------------------------------------

def get_task(store: Store, task: dict, idx: LabelIndex) -> dict:
    """Every annotation job merged. With overlap, a tag or shape in the overlap belongs to the
    first job that has it; tracks merge as CVAT's TrackManager does: a later job's track that
    starts in the overlap joins the earlier track it matches there (same label, mean IoU of
    their interpolated shapes over the overlap >= 0.5; shapes united by frame, the earlier
    job's winning), and an earlier track left unmatched is closed with an ``outside`` shape
    where the overlap ends."""
    out = {"tags": [], "shapes": [], "tracks": []}
    with store.lock:
        covered_to = -1
        for job in annotation_jobs(store, task["id"]):
            objs = job_objects(store, job)
            for k in ("tags", "shapes"):
                out[k].extend(o for o in objs[k] if o["frame"] > covered_to)
            start, end = job["start_frame"], covered_to  # the overlap, both inclusive
            if end < start:
                out["tracks"].extend(copy.deepcopy(t) for t in objs["tracks"])
            else:
                _merge_tracks(out["tracks"], objs["tracks"], start, end)
            covered_to = max(covered_to, job["stop_frame"])
    return fill(out, idx)


def _merge_tracks(old: list[dict], new: list[dict], start: int, end: int) -> None:
    candidates = [t for t in old if t["shapes"] and (int(t["shapes"][-1]["frame"]) >= start
                                                     or not t["shapes"][-1].get("outside"))]
    matched: set[int] = set()
    for t in new:
        t = copy.deepcopy(t)
        if int(t["frame"]) > end:
            old.append(t)
            continue
        best, score = None, 0.5
        for o in candidates:
            if id(o) not in matched and o.get("label_id") == t.get("label_id"):
                sim = _track_similarity(o, t, start, end)
                if sim >= score:
                    best, score = o, sim
        if best is None:
            old.append(t)
            continue
        matched.add(id(best))
        _unite(best, t)
    for o in candidates:
        last = o["shapes"][-1]
        if id(o) not in matched and not last.get("outside"):
            o["shapes"].append(dict(copy.deepcopy(last), frame=end + 1, outside=True))  # id kept, as CVAT's copy


def _box(points) -> tuple[float, float, float, float] | None:
    xs, ys = [float(p) for p in points[0::2]], [float(p) for p in points[1::2]]
    return (min(xs), min(ys), max(xs), max(ys)) if xs and ys else None


def _iou(a: dict, b: dict) -> float:
    p, q = _box(a.get("points") or []), _box(b.get("points") or [])
    if p is None or q is None:
        return 1.0 if p is None and q is None else 0.0  # skeletons: the label decides
    inter = max(0.0, min(p[2], q[2]) - max(p[0], q[0])) * max(0.0, min(p[3], q[3]) - max(p[1], q[1]))
    union = (p[2] - p[0]) * (p[3] - p[1]) + (q[2] - q[0]) * (q[3] - q[1]) - inter
    return inter / union if union > 0 else float(p == q)


def _track_similarity(a: dict, b: dict, start: int, end: int) -> float:
    from .interpolation import shape_at
    total = count = 0.0
    for f in range(start, end + 1):
        sa, sb = shape_at(a, f), shape_at(b, f)
        if sa is None and sb is None:
            continue
        count += 1
        total += _iou(sa, sb) if sa is not None and sb is not None else 0.0
    return total / count if count else 0.0


def _unite(old: dict, new: dict) -> None:
    """Shapes of both by frame (the earlier job's shape wins a shared frame); elements alike."""
    def union(a: list[dict], b: list[dict]) -> list[dict]:
        by_frame = {int(s["frame"]): s for s in b}
        by_frame.update({int(s["frame"]): s for s in a})
        return [by_frame[f] for f in sorted(by_frame)]
    old["shapes"] = union(old.get("shapes") or [], new.get("shapes") or [])
    old["frame"] = min(int(old["frame"]), int(new["frame"]))
    pieces = {e.get("label_id"): e for e in new.get("elements") or []}
    for e in old.get("elements") or []:
        if e.get("label_id") in pieces:
            e["shapes"] = union(e.get("shapes") or [], pieces[e["label_id"]].get("shapes") or [])
            e["frame"] = old["frame"]


def split_by_jobs(data: dict, jobs: list[dict]) -> list[tuple[dict, dict]]:
    """Route validated input to jobs by frame (objects outside every job are dropped); tracks
    crossing a job boundary are cut, with an interpolated keyframe where a piece starts."""
    from .interpolation import cut_track
    parts = []
    for job in jobs:
        part = {"tags": [t for t in data["tags"] if job["start_frame"] <= int(t["frame"]) <= job["stop_frame"]],
                "shapes": [s for s in data["shapes"] if job["start_frame"] <= int(s["frame"]) <= job["stop_frame"]],
                "tracks": []}
        for t in data["tracks"]:
            piece = cut_track(t, job["start_frame"], job["stop_frame"])
            if piece is not None:
                part["tracks"].append(piece)
        parts.append((job, part))
    return parts


def put_task(store: Store, task: dict, data: Any, idx: LabelIndex, *, sender=None) -> dict:
    data = validate(data, idx, ids="absent")
    result = empty()
    with store.lock:
        for job, part in split_by_jobs(data, annotation_jobs(store, task["id"])):
            objs = normalize(store, part)
            _save(store, job["id"], objs)
            for k in KINDS:
                result[k].extend(objs[k])
        common.touch(store, task_id=task["id"], sender=sender)
    return result


def patch_task(store: Store, task: dict, action: str, data: Any, idx: LabelIndex, *, sender=None) -> dict:
    if action not in ACTIONS:
        raise ValidationError(["Please specify a correct 'action' for the request"])
    data = validate(data, idx, ids={"create": "absent", "delete": "required"}.get(action))
    with store.lock:
        jobs = annotation_jobs(store, task["id"])
        if action == "delete":
            for job in jobs:
                patch_job(store, job, "delete", data, idx, sender=sender, validated=True)
            return {"version": 0, **data}
        result = empty()
        for job, part in split_by_jobs(data, jobs):
            if not _nonempty(part):
                continue
            if action == "update":
                # an object moved out of this job's frames must not survive in it
                mine = job_doc(store, job["id"])
                ids_elsewhere = {k: {int(o["id"]) for o in data[k] if o.get("id") is not None} -
                                 {int(o["id"]) for o in part[k] if o.get("id") is not None} for k in KINDS}
                if any(ids_elsewhere.values()) and any(o["id"] in ids_elsewhere[k] for k in KINDS for o in mine[k]):
                    _save(store, job["id"], {k: [o for o in mine[k] if o["id"] not in ids_elsewhere[k]] for k in KINDS})
            r = patch_job(store, job, action, part, idx, sender=sender, validated=True)
            for k in KINDS:
                result[k].extend(r[k])
        return result


def delete_task(store: Store, task: dict, *, sender=None) -> None:
    with store.lock:
        for job in annotation_jobs(store, task["id"]):
            delete_job(store, job, sender=sender)


def replace_task(store: Store, task: dict, objs_by_job: dict[int, dict], *, sender=None) -> None:
    """Import's write: replace annotations of the given jobs with already normalised objects."""
    with store.lock:
        for job_id, objs in objs_by_job.items():
            _save(store, job_id, objs)
        common.touch(store, task_id=task["id"], sender=sender)
