"""Projects: create, update, delete (with their tasks and labels) and CVAT's ProjectRead shape.

Permissions follow CVAT's sandbox rules (cvat-api.md §4, §12): any user of group ``user`` or
``admin`` may create; owner, assignee and admins may change; owner and admins may delete; a
non-admin may assign only themselves.
"""
from __future__ import annotations

import importlib
import shutil
from pathlib import Path

from ..errors import FieldError, PermissionDenied, ValidationError
from ..http import now
from ..store import Store
from . import access, events, labels, orgs, users

STATUSES = ("annotation", "validation", "completed")
LOCATIONS = ("local", "cloud_storage")


def _user_ref(store: Store, caller: dict, field: str, value, *, self_only: bool, org_id=None) -> int | None:
    """Check an ``owner_id``/``assignee_id``: it must name a user; a non-admin may name only
    themselves (CVAT answers 403 because the caller may not view the other user), or in an
    organization its members."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise FieldError(field, "A valid integer is required.")
    if store.get("users", value) is None:
        raise FieldError(field, f'Invalid pk "{value}" - object does not exist.')
    if self_only and not users.is_admin(caller) and value != caller["id"]:
        if org_id is None or value not in orgs.member_ids(store, org_id):
            raise PermissionDenied()
    return value


def _storage(store: Store, spec, field: str) -> dict:
    """CVAT creates a Storage row for every project, ``local`` unless told otherwise."""
    spec = spec or {}
    if not isinstance(spec, dict):
        raise FieldError(field, "Invalid data. Expected a dictionary.")
    loc = spec.get("location", "local")
    if loc not in LOCATIONS:
        raise ValidationError({field: {"location": [f'"{loc}" is not a valid choice.']}})
    cs = spec.get("cloud_storage_id")
    if loc == "cloud_storage" and cs is None:
        raise ValidationError({field: {"cloud_storage_id": ["Cloud storage was selected as location but its id was not specified"]}})
    return {"id": store.next_id("storages"), "location": loc, "cloud_storage_id": cs}


def _validate_common(data: dict, *, partial: bool) -> dict:
    err = {}
    if "name" in data or not partial:
        name = data.get("name")
        if name is None:
            err["name"] = ["This field is required."]
        elif not isinstance(name, str):
            err["name"] = ["Not a valid string."]
        elif not name.strip():
            err["name"] = ["This field may not be blank."]
        elif len(name) > 256:
            err["name"] = ["Ensure this field has no more than 256 characters."]
    if "bug_tracker" in data and data["bug_tracker"] is not None:
        bt = data["bug_tracker"]
        if not isinstance(bt, str):
            err["bug_tracker"] = ["Not a valid string."]
        elif len(bt) > 2000:
            err["bug_tracker"] = ["Ensure this field has no more than 2000 characters."]
    return err


def can_create(user: dict) -> bool:
    return users.is_admin(user) or "user" in user.get("groups", [])


def can_change(user: dict, project: dict) -> bool:
    return users.is_admin(user) or user["id"] in (project.get("owner_id"), project.get("assignee_id"))


def can_delete(user: dict, project: dict) -> bool:
    return users.is_admin(user) or user["id"] == project.get("owner_id")


def create_project(store: Store, caller: dict, data: dict, org_id: int | None = None) -> dict:
    """POST /api/projects; ``org_id`` is the request's organization context (None: sandbox)."""
    if not can_create(caller):
        raise PermissionDenied()
    err = _validate_common(data, partial=False)
    if err:
        raise ValidationError(err)
    with store.lock:
        owner_id = _user_ref(store, caller, "owner_id", data.get("owner_id"), self_only=True,
                             org_id=org_id) or caller["id"]
        assignee_id = _user_ref(store, caller, "assignee_id", data.get("assignee_id"), self_only=True, org_id=org_id)
        spec_labels = data.get("labels") or []
        # Validate labels before the project exists so a bad label leaves nothing behind.
        labels.validate_new_labels(store, spec_labels)
        stamp = now()
        project = store.insert("projects", {
            "name": data["name"], "owner_id": owner_id, "assignee_id": assignee_id,
            "bug_tracker": data.get("bug_tracker") or "", "created_date": stamp, "updated_date": stamp,
            "assignee_updated_date": stamp if assignee_id is not None else None, "organization_id": org_id,
            "status": "annotation", "guide_id": None,
            "source_storage": _storage(store, data.get("source_storage"), "source_storage"),
            "target_storage": _storage(store, data.get("target_storage"), "target_storage"),
        })
        labels.create_labels(store, spec_labels, project_id=project["id"])
    events.emit(store, "create:project", "project", project["id"], None, caller)
    return project


def update_project(store: Store, caller: dict, project: dict, data: dict) -> dict:
    if not (can_change(caller, project) or access.can_manage_project(store, caller, project)):
        raise PermissionDenied()
    org_id = project.get("organization_id")
    err = _validate_common(data, partial=True)
    if err:
        raise ValidationError(err)
    with store.lock:
        before = dict(project)
        changes: dict = {}
        if "name" in data:
            changes["name"] = data["name"]
        if "bug_tracker" in data:
            changes["bug_tracker"] = data["bug_tracker"] or ""
        if "owner_id" in data:
            changes["owner_id"] = _user_ref(store, caller, "owner_id", data["owner_id"], self_only=True, org_id=org_id)
        if "assignee_id" in data:
            new = _user_ref(store, caller, "assignee_id", data["assignee_id"], self_only=True, org_id=org_id)
            if new != project.get("assignee_id"):
                changes["assignee_id"] = new
                changes["assignee_updated_date"] = now()
        if data.get("organization_id") is not None and data["organization_id"] != org_id:
            raise FieldError("organization_id", "fakecvat does not move projects between organizations.")
        for field in ("source_storage", "target_storage"):
            if field in data:
                changes[field] = _storage(store, data[field], field)
        if "labels" in data:
            labels.patch_labels(store, data["labels"], project_id=project["id"], sender=caller)
        changes["updated_date"] = now()
        project = store.update("projects", project["id"], **changes)
    events.emit(store, "update:project", "project", project["id"],
                {k: before.get(k) for k in changes}, caller)
    return project


def delete_project(store: Store, caller: dict, project: dict, media_dir) -> None:
    """Delete a project with its tasks (and their jobs, annotations, media) and labels."""
    if not (can_delete(caller, project) or access.can_manage_project(store, caller, project)):
        raise PermissionDenied()
    with store.lock:
        doomed = store.find("tasks", lambda t: t.get("project_id") == project["id"])
        delete_task = _tasks_delete_fn()
        for task in doomed:
            if delete_task is not None:
                delete_task(store, task, media_dir, sender=caller)
            else:
                _delete_task_docs(store, media_dir, task["id"])
        labels.delete_labels_of(store, project_id=project["id"])
        store.delete("projects", project["id"])
    events.emit(store, "delete:project", "project", project["id"], project, caller)  # snapshot for webhooks


def _tasks_delete_fn():
    """The tasks model's ``delete_task(store, task, media_dir, sender=None)`` when that module
    provides it (it is written in parallel); otherwise we delete the documents ourselves."""
    try:
        mod = importlib.import_module("fakecvat.models.tasks")
    except ImportError:
        return None
    return getattr(mod, "delete_task", None)


def _delete_task_docs(store: Store, media_dir, task_id) -> None:
    for job in store.find("jobs", lambda j: j.get("task_id") == task_id):
        store.delete("annotations", job["id"])
        store.delete("jobs", job["id"])
    labels.delete_labels_of(store, task_id=task_id)
    store.delete("tasks", task_id)
    if media_dir:
        shutil.rmtree(Path(media_dir) / "tasks" / str(task_id), ignore_errors=True)


# ---- reading ----------------------------------------------------------------------------------

def tasks_of(store: Store, project_id) -> list[dict]:
    return store.find("tasks", lambda t: t.get("project_id") == project_id)


def serialize(store: Store, project: dict, base: str) -> dict:
    tasks = sorted(tasks_of(store, project["id"]), key=lambda t: t["id"])
    dims = [t.get("dimension") or "2d" for t in tasks if t.get("data")]
    return {
        "url": f"{base}/api/projects/{project['id']}",
        "id": project["id"],
        "name": project["name"],
        "owner": users.serialize_basic(store.get("users", project.get("owner_id")), base),
        "assignee": users.serialize_basic(store.get("users", project.get("assignee_id")), base),
        "guide_id": project.get("guide_id"),
        "bug_tracker": project.get("bug_tracker") or "",
        "task_subsets": sorted({t["subset"] for t in tasks if t.get("subset")}),
        "created_date": project["created_date"],
        "updated_date": project["updated_date"],
        "status": project.get("status") or "annotation",
        "dimension": dims[0] if dims else None,
        "organization": project.get("organization_id"),
        "organization_id": project.get("organization_id"),
        "target_storage": project.get("target_storage"),
        "source_storage": project.get("source_storage"),
        "tasks": {"count": len(tasks), "url": f"{base}/api/tasks?project_id={project['id']}"},
        "labels": {"url": f"{base}/api/labels?project_id={project['id']}"},
        "assignee_updated_date": project.get("assignee_updated_date"),
    }


def filter_fields(store: Store, project: dict) -> dict:
    """What ``filter=``/``search=``/``sort=`` see: owner and assignee as usernames."""
    owner = store.get("users", project.get("owner_id")) if project.get("owner_id") else None
    assignee = store.get("users", project.get("assignee_id")) if project.get("assignee_id") else None
    return {"id": project["id"], "name": project["name"], "owner": owner["username"] if owner else None,
            "assignee": assignee["username"] if assignee else None, "status": project.get("status") or "annotation",
            "updated_date": project["updated_date"], "created_date": project["created_date"]}
