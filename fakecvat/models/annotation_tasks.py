"""Task-level annotations: a task's jobs merged on read (overlap included), and writes split by
frame across the task's annotation jobs (tracks crossing a job boundary are cut)."""
from __future__ import annotations

import copy
from typing import Any

from ..errors import ValidationError
from ..store import Store
from . import common
from .annotation_checks import KINDS, validate
from .annotation_fill import fill
from .annotation_jobs import (ACTIONS, annotation_jobs, delete_job, empty, job_doc, job_objects, nonempty,
                              patch_job, save)
from .annotation_labels import LabelIndex
from .annotation_normalize import normalize
from .interpolation import cut_track
from .track_merge import merge_tracks


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
                merge_tracks(out["tracks"], objs["tracks"], start, end)
            covered_to = max(covered_to, job["stop_frame"])
    return fill(out, idx)



def split_by_jobs(data: dict, jobs: list[dict]) -> list[tuple[dict, dict]]:
    """Route validated input to jobs by frame (objects outside every job are dropped); tracks
    crossing a job boundary are cut, with an interpolated keyframe where a piece starts."""
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
            save(store, job["id"], objs)
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
            if not nonempty(part):
                continue
            if action == "update":
                # an object moved out of this job's frames must not survive in it
                mine = job_doc(store, job["id"])
                ids_elsewhere = {k: {int(o["id"]) for o in data[k] if o.get("id") is not None} -
                                 {int(o["id"]) for o in part[k] if o.get("id") is not None} for k in KINDS}
                if any(ids_elsewhere.values()) and any(o["id"] in ids_elsewhere[k] for k in KINDS for o in mine[k]):
                    save(store, job["id"], {k: [o for o in mine[k] if o["id"] not in ids_elsewhere[k]] for k in KINDS})
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
            save(store, job_id, objs)
        common.touch(store, task_id=task["id"], sender=sender)
