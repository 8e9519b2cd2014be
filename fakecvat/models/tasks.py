"""Tasks: create, read, update, delete and TaskRead (cvat-api.md §6.1).

Data attachment and frame access live in :mod:`fakecvat.models.taskdata`; jobs in
:mod:`fakecvat.models.jobs`. Labels come from :mod:`fakecvat.models.labels` (a task in a
project uses the project's labels).
"""
from __future__ import annotations

import shutil
from pathlib import Path

from ..errors import FieldError, ValidationError, not_found
from ..http import now
from ..store import Store
from . import events, frames, jobs, labels, orgs, requests, uploads, users

WRITE_ONCE = ("overlap", "segment_size", "consensus_replicas")
LOCATIONS = ("local", "cloud_storage")


def get_task(store: Store, task_id) -> dict:
    task = store.get("tasks", task_id)
    if task is None:
        raise not_found("Task")
    return task


def _int_or_none(data: dict, field: str, minimum: int = 0) -> int | None:
    v = data.get(field)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int):
        raise FieldError(field, "A valid integer is required.")
    if v < minimum:
        raise FieldError(field, f"Ensure this value is greater than or equal to {minimum}.")
    return v


def _user_ref(store: Store, data: dict, field: str) -> int | None:
    uid = _int_or_none(data, field, 0)
    if uid is not None and store.get("users", uid) is None:
        raise FieldError(field, f'Invalid pk "{uid}" - object does not exist.')
    return uid


def _string(data: dict, field: str, max_len: int, blank: bool = True) -> str | None:
    if field not in data:
        return None
    v = data[field]
    if not isinstance(v, str):
        raise FieldError(field, "Not a valid string.")
    if not blank and not v.strip():
        raise FieldError(field, "This field may not be blank.")
    if len(v) > max_len:
        raise FieldError(field, f"Ensure this field has no more than {max_len} characters.")
    return v


def _storage(store: Store, spec) -> dict:
    spec = spec or {}
    if not isinstance(spec, dict):
        raise ValidationError({"storage": ["Invalid data. Expected a dictionary."]})
    loc = spec.get("location", "local")
    if loc not in LOCATIONS:
        raise ValidationError({"location": [f'"{loc}" is not a valid choice.']})
    return {"id": store.next_id("storages"), "location": loc, "cloud_storage_id": spec.get("cloud_storage_id")}


def create_task(store: Store, user: dict, data: dict, org_id: int | None = None) -> dict:
    """POST /api/tasks → the new task document (no data yet), in organization ``org_id`` (the
    request's context; None: sandbox), which must be its project's."""
    if "name" not in data:
        raise FieldError("name", "This field is required.")
    name = _string(data, "name", 256, blank=False)
    project_id = _int_or_none(data, "project_id", 1)
    label_specs = data.get("labels")
    if project_id is not None and label_specs:
        raise ValidationError({"project_id": ["Project must have only one of Label set or project_pk"]})
    if label_specs is not None and not isinstance(label_specs, list):
        raise FieldError("labels", 'Expected a list of items but got type "%s".' % type(label_specs).__name__)
    project = None
    if project_id is not None:
        project = store.get("projects", project_id)
        if project is None:
            raise FieldError("project_id", f"The specified project #{project_id} does not exist.")
        if project.get("organization_id") != org_id:
            raise ValidationError({"project_id": ["The task and its project should be in the same organization."]})
    labels.validate_new_labels(store, label_specs)
    segment_size = _int_or_none(data, "segment_size", 0) or 0
    overlap = _int_or_none(data, "overlap", 0)
    subset = _string(data, "subset", 64) or ""
    bug_tracker = _string(data, "bug_tracker", 2000) or ""
    owner_id = _user_ref(store, data, "owner_id") or user["id"]
    assignee_id = _user_ref(store, data, "assignee_id")
    orgs.check_assignable(store, user, org_id, assignee_id)
    orgs.check_assignable(store, user, org_id, data.get("owner_id"))
    stamp = now()
    with store.lock:
        if project:
            src, dst = project.get("source_storage"), project.get("target_storage")
        else:
            src, dst = _storage(store, data.get("source_storage")), _storage(store, data.get("target_storage"))
        task = {"id": store.next_id("tasks"), "name": name, "project_id": project_id, "owner_id": owner_id,
                "assignee_id": assignee_id, "bug_tracker": bug_tracker, "overlap": overlap,
                "segment_size": segment_size, "subset": subset, "created_date": stamp, "updated_date": stamp,
                "assignee_updated_date": stamp if assignee_id else None, "organization_id": org_id,
                "source_storage": src, "target_storage": dst, "size": 0, "mode": "", "image_quality": 70,
                "data": None, "upload": None}
        store.put("tasks", task)
        if label_specs:
            labels.create_labels(store, label_specs, task_id=task["id"])  # validated above
    events.emit(store, "create:task", "task", task["id"], None, user)
    return task


def patch_task(store: Store, user: dict, task: dict, data: dict) -> dict:
    """PATCH /api/tasks/{id}: name, project_id, owner/assignee, bug_tracker, subset, labels,
    storages. overlap and segment_size are write-once (silently read-only, as in DRF)."""
    changes: dict = {}
    if "name" in data:
        changes["name"] = _string(data, "name", 256, blank=False)
    for field, n in (("subset", 64), ("bug_tracker", 2000)):
        if field in data:
            changes[field] = _string(data, field, n)
    if "owner_id" in data:
        changes["owner_id"] = _user_ref(store, data, "owner_id")
    if "assignee_id" in data:
        changes["assignee_id"] = _user_ref(store, data, "assignee_id")
    for field in ("owner_id", "assignee_id"):
        if field in changes:
            orgs.check_assignable(store, user, task.get("organization_id"), changes[field])
    if "project_id" in data and data["project_id"] != task.get("project_id"):
        pid = _int_or_none(data, "project_id", 1)
        project = store.get("projects", pid) if pid is not None else None
        if pid is not None and project is None:
            raise FieldError("project_id", f"The specified project #{pid} does not exist.")
        if project is not None and project.get("organization_id") != task.get("organization_id"):
            raise ValidationError({"project_id": ["The task and its project should be in the same organization."]})
        if project is not None:
            own = {lab["name"] for lab in labels.labels_of_task(store, task)}
            theirs = {lab["name"] for lab in labels.top_level_labels(store, project_id=pid)}
            missing = sorted(own - theirs)
            if missing:
                raise ValidationError({"project_id": [f"Target project does not have label with name '{missing[0]}'"]})
        changes["project_id"] = pid
    for field in ("source_storage", "target_storage"):
        if field in data and data[field] is not None:
            changes[field] = _storage(store, data[field])
    with store.lock:
        before = {k: task.get(k) for k in changes if task.get(k) != changes[k]}
        if "labels" in data:
            if task.get("project_id") and "project_id" not in changes:
                raise ValidationError({"labels": ["Cannot change labels of a task in a project; change the project"]})
            labels.patch_labels(store, data["labels"] or [], task_id=task["id"], sender=user)
        if "project_id" in before and before["project_id"] is None:
            labels.delete_labels_of(store, task_id=task["id"])  # the project's labels replace the task's
        if "assignee_id" in before:
            changes["assignee_updated_date"] = now()
        changes["updated_date"] = now()
        task = store.update("tasks", task["id"], **changes)
    if before:
        events.emit(store, "update:task", "task", task["id"], before, user)
    return task


def delete_task(store: Store, task: dict, media_dir: str | Path, sender=None) -> None:
    """Remove the task with its jobs, annotations, labels, requests, uploads and media."""
    with store.lock:
        job_ids = jobs.delete_jobs_of_task(store, task["id"])
        _delete_annotations(store, task, job_ids)
        labels.delete_labels_of(store, task_id=task["id"])
        requests.delete_for(store, lambda d: d["operation"].get("task_id") == task["id"]
                            and d["operation"].get("type", "").startswith("create"))
        uploads.drop_scope(store, f"task:{task['id']}:data")
        store.delete("tasks", task["id"])
    shutil.rmtree(Path(media_dir) / "tasks" / str(task["id"]), ignore_errors=True)
    events.emit(store, "delete:task", "task", task["id"], task, sender)  # snapshot for webhooks


def _delete_annotations(store: Store, task: dict, job_ids: list[int]) -> None:
    """Drop the annotation documents (keyed by job id). annotations.delete_task would instead
    clear them in place and fire update events, which a deleted task must not do."""
    for jid in job_ids:
        store.delete("annotations", jid)


def list_fields(store: Store, task: dict) -> dict:
    """Values list filters/search/sort see: owner/assignee/project by name, derived status."""
    owner = store.get("users", task["owner_id"]) if task.get("owner_id") else None
    assignee = store.get("users", task["assignee_id"]) if task.get("assignee_id") else None
    project = store.get("projects", task["project_id"]) if task.get("project_id") else None
    return {"id": task["id"], "name": task["name"], "project_id": task.get("project_id"),
            "project_name": project["name"] if project else None,
            "owner": owner["username"] if owner else None, "assignee": assignee["username"] if assignee else None,
            "status": jobs.task_status(store, task["id"]), "subset": task.get("subset"), "mode": task.get("mode"),
            "dimension": "2d", "tracker_link": task.get("bug_tracker"), "validation_mode": None,
            "updated_date": task["updated_date"], "created_date": task["created_date"]}


def serialize_task(store: Store, task: dict, base: str) -> dict:
    data = task.get("data")
    task_jobs = [j for j in jobs.jobs_of_task(store, task["id"])]
    statuses = [jobs.job_status(j) for j in task_jobs]
    owner = store.get("users", task["owner_id"]) if task.get("owner_id") else None
    assignee = store.get("users", task["assignee_id"]) if task.get("assignee_id") else None
    compressed_type, original_type = frames.chunk_types(data)
    out = {
        "url": f"{base}/api/tasks/{task['id']}", "id": task["id"], "name": task["name"],
        "project_id": task.get("project_id"), "mode": task.get("mode") or "",
        "owner": users.serialize_basic(owner, base), "assignee": users.serialize_basic(assignee, base),
        "bug_tracker": task.get("bug_tracker") or "", "created_date": task["created_date"],
        "updated_date": task["updated_date"], "overlap": task.get("overlap"),
        "segment_size": task.get("segment_size") or 0, "status": jobs.task_status(store, task["id"]),
        "data_chunk_size": data["chunk_size"] if data else None,
        "data_compressed_chunk_type": compressed_type, "data_original_chunk_type": original_type,
        "data_cloud_storage_id": None, "guide_id": None, "size": task.get("size") or 0,
        "image_quality": task.get("image_quality", 70), "dimension": "2d", "subset": task.get("subset") or "",
        "organization": task.get("organization_id"), "organization_id": task.get("organization_id"),
        "target_storage": task.get("target_storage"), "source_storage": task.get("source_storage"),
        "jobs": {"count": len(task_jobs), "completed": statuses.count("completed"),
                 "validation": statuses.count("validation"), "url": f"{base}/api/jobs?task_id={task['id']}"},
        "labels": {"url": f"{base}/api/labels?task_id={task['id']}"},
        "assignee_updated_date": task.get("assignee_updated_date"), "validation_mode": None,
        "consensus_enabled": False,
    }
    if data:
        out["data"] = data["id"]  # omitted (not null) without data: SDK 2.52 rejects null
    return out
