"""Jobs: segmentation of a task into jobs, stage/state/assignee updates, JobRead (cvat-api.md §7).

Job ``start_frame``/``stop_frame`` are task-relative and inclusive. A job's legacy ``status``
is derived from stage and state; a task's status is derived from its jobs.
"""
from __future__ import annotations

from ..errors import FieldError, PermissionDenied, not_found
from ..http import now
from ..store import Store
from . import access, events, orgs, users
from .frames import chunk_types

STAGES = ("annotation", "validation", "acceptance")
STATES = ("new", "in progress", "completed", "rejected")


def segments(size: int, segment_size: int, overlap: int | None, mode: str) -> tuple[int, int, list[tuple[int, int]]]:
    """(effective segment_size, effective overlap, [(start, stop)]) per CVAT's rule (§6.3)."""
    seg = segment_size if 0 < (segment_size or 0) <= size else size
    default = 5 if mode == "interpolation" else 0
    ov = min(overlap if overlap is not None else default, seg // 2)
    if size <= 0:
        return seg, ov, []
    step = max(1, seg - ov)
    return seg, ov, [(s, min(s + seg - 1, size - 1)) for s in range(0, max(1, size - ov), step)]


def create_segment_jobs(store: Store, task: dict, size: int, mode: str) -> list[dict]:
    """Split a task that just got its data into annotation jobs; stores the effective
    segment_size/overlap on the task (as CVAT does)."""
    with store.lock:
        seg, ov, spans = segments(size, task.get("segment_size") or 0, task.get("overlap"), mode)
        stamp = now()
        made = [store.insert("jobs", {"task_id": task["id"], "start_frame": a, "stop_frame": b,
                                      "assignee_id": None, "stage": "annotation", "state": "new",
                                      "type": "annotation", "created_date": stamp, "updated_date": stamp,
                                      "assignee_updated_date": None})
                for a, b in spans]
        store.update("tasks", task["id"], segment_size=seg, overlap=ov)
        for j in made:
            events.emit(store, "create:job", "job", j["id"])
        return made


def jobs_of_task(store: Store, task_id: int) -> list[dict]:
    return sorted(store.find("jobs", lambda j: j["task_id"] == task_id), key=lambda j: j["id"])


def job_status(job: dict) -> str:
    if job["stage"] == "annotation":
        return "annotation"
    if job["stage"] == "acceptance" and job["state"] == "completed":
        return "completed"
    return "validation"


def task_status(store: Store, task_id: int) -> str:
    """Any job in annotation → annotation; else any in validation → validation; else completed."""
    statuses = {job_status(j) for j in jobs_of_task(store, task_id) if j["type"] == "annotation"}
    if not statuses or "annotation" in statuses:
        return "annotation"
    return "validation" if "validation" in statuses else "completed"


def get_job(store: Store, job_id) -> dict:
    job = store.get("jobs", job_id)
    if job is None:
        raise not_found("Job")
    return job


def patch_job(store: Store, user: dict, job: dict, data: dict) -> dict:
    """PATCH /api/jobs/{id}: ``assignee`` (user id|null), ``stage``, ``state``."""
    task = store.get("tasks", job["task_id"])
    changes: dict = {}
    if "stage" in data:
        if data["stage"] not in STAGES:
            raise FieldError("stage", f'"{data["stage"]}" is not a valid choice.')
        changes["stage"] = data["stage"]
        if "state" not in data:
            changes["state"] = "new"  # CVAT resets the state when only the stage changes
    if "state" in data:
        if data["state"] not in STATES:
            raise FieldError("state", f'"{data["state"]}" is not a valid choice.')
        changes["state"] = data["state"]
    if "assignee" in data:
        a = data["assignee"]
        if a is not None and (isinstance(a, bool) or not isinstance(a, int)):
            raise FieldError("assignee", "A valid integer is required.")
        if a is not None and store.get("users", a) is None:
            raise FieldError("assignee", f'Invalid pk "{a}" - object does not exist.')
        changes["assignee_id"] = a
    # Permissions: task staff, org owners/maintainers and admins change stage/assignee; the
    # job's assignee may change its state; in the sandbox a non-admin may only assign
    # themselves, in an organization its members (cvat-api.md §12).
    org_id = (task or {}).get("organization_id")
    if not users.is_admin(user):
        staff = access.is_task_staff(store, user, task) or (org_id is not None and orgs.is_manager(store, user, org_id))
        if ("stage" in data or "assignee" in data) and not staff:
            raise PermissionDenied()
        if "state" in data and not (staff or job.get("assignee_id") == user["id"]):
            raise PermissionDenied()
        if changes.get("assignee_id") not in (None, user["id"]) and "assignee" in data:
            if org_id is None:
                raise PermissionDenied()
            orgs.check_assignable(store, user, org_id, changes["assignee_id"])
    return apply_changes(store, job, changes, sender=user)


def apply_changes(store: Store, job: dict, changes: dict, sender=None) -> dict:
    """Write job changes, bump dates, fire ``update:job`` with the old values."""
    with store.lock:
        before = {k: job.get(k) for k in changes if job.get(k) != changes[k]}
        if "assignee_id" in before:
            changes["assignee_updated_date"] = now()
            before["assignee"] = before.pop("assignee_id")
        if not before:
            return job
        changes["updated_date"] = now()
        job = store.update("jobs", job["id"], **changes)
        task = store.get("tasks", job["task_id"])
        if task:
            store.update("tasks", task["id"], updated_date=changes["updated_date"])
        events.emit(store, "update:job", "job", job["id"], before, sender)
        return job


def complete_job(store: Store, job: dict) -> dict:
    """The control helper: stage acceptance, state completed."""
    return apply_changes(store, job, {"stage": "acceptance", "state": "completed"})


def delete_jobs_of_task(store: Store, task_id: int) -> list[int]:
    with store.lock:
        ids = [j["id"] for j in store.find("jobs", lambda j: j["task_id"] == task_id)]
        for i in ids:
            store.delete("jobs", i)
        return ids


def list_fields(store: Store, job: dict) -> dict:
    """Values the list filters, search and sort see (assignee by username, as CVAT)."""
    task = store.get("tasks", job["task_id"]) or {}
    project = store.get("projects", task.get("project_id")) if task.get("project_id") else None
    assignee = store.get("users", job["assignee_id"]) if job.get("assignee_id") else None
    return {"id": job["id"], "task_id": job["task_id"], "project_id": task.get("project_id"),
            "task_name": task.get("name"), "project_name": project["name"] if project else None,
            "assignee": assignee["username"] if assignee else None, "state": job["state"],
            "stage": job["stage"], "type": job["type"], "dimension": "2d", "parent_job_id": None,
            "updated_date": job["updated_date"], "created_date": job["created_date"]}


def serialize_job(store: Store, job: dict, base: str, viewer: dict | None = None) -> dict:
    task = store.get("tasks", job["task_id"]) or {}
    data = task.get("data") or {}
    assignee = store.get("users", job["assignee_id"]) if job.get("assignee_id") else None
    compressed_type, original_type = chunk_types(data)
    issues = store.find("issues", lambda i: i.get("job_id") == job["id"])
    see_task = viewer is None or access.can_view_task(store, viewer, task) if task else False
    return {
        "url": f"{base}/api/jobs/{job['id']}", "id": job["id"], "task_id": job["task_id"],
        "project_id": task.get("project_id"), "assignee": users.serialize_basic(assignee, base),
        "guide_id": None, "dimension": "2d", "bug_tracker": task.get("bug_tracker") or None,
        "status": job_status(job), "stage": job["stage"], "state": job["state"],
        "mode": task.get("mode") or "", "frame_count": job["stop_frame"] - job["start_frame"] + 1,
        "start_frame": job["start_frame"], "stop_frame": job["stop_frame"],
        "data_chunk_size": data.get("chunk_size"), "data_compressed_chunk_type": compressed_type,
        "data_original_chunk_type": original_type, "created_date": job["created_date"],
        "updated_date": job["updated_date"],
        "issues": {"url": f"{base}/api/issues?job_id={job['id']}", "count": len(issues)},
        "labels": {"url": f"{base}/api/labels?job_id={job['id']}"},
        "type": job["type"], "organization": task.get("organization_id"),
        "target_storage": task.get("target_storage") if see_task else None,
        "source_storage": task.get("source_storage") if see_task else None,
        "assignee_updated_date": job.get("assignee_updated_date"), "parent_job_id": None,
        "consensus_replicas": 0, "task_name": task.get("name"),
    }

