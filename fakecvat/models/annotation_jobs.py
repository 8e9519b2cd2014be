"""Annotations stored per job: the ``annotations`` table keyed by job id, ``{id, version, tags,
shapes, tracks}``, and CVAT's GET/PUT/PATCH/DELETE of one job's annotations.

Stored objects are never mutated after they are written: every write builds new lists, so a
reader may serialize what it got without copying (10k shapes must stay fast). A job reads the tags
and shapes inside its frame range and all its tracks.
"""
from __future__ import annotations

from typing import Any

from ..errors import APIError, ValidationError
from ..store import Store
from . import common
from .annotation_checks import KINDS, validate
from .annotation_fill import fill
from .annotation_labels import LabelIndex
from .annotation_normalize import normalize

TABLE = "annotations"
ACTIONS = ("create", "update", "delete")


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


def save(store: Store, job_id: int, objs: dict) -> None:
    """Replace the job's stored objects, bumping its version."""
    old = store.get(TABLE, job_id)
    version = (old or {}).get("version", 0) + 1
    store.put(TABLE, {"id": job_id, "version": version, "tags": objs["tags"], "shapes": objs["shapes"],
                      "tracks": objs["tracks"]}, job_id)


def nonempty(data: dict) -> bool:
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
        save(store, job["id"], objs)
        common.touch(store, job_id=job["id"], sender=sender)
    return dict(objs, version=0)


def delete_job(store: Store, job: dict, *, sender=None) -> None:
    with store.lock:
        had = nonempty(job_doc(store, job["id"]))
        save(store, job["id"], {"tags": [], "shapes": [], "tracks": []})
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
        changed = any(new[k] != doc[k] for k in KINDS) if action == "delete" else nonempty(data)
        save(store, job["id"], new)
        if changed:
            common.touch(store, job_id=job["id"], sender=sender)
    return result


