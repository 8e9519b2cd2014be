"""Who may see and change what (CVAT's OPA rules, sandbox context; reference/cvat-api.md §8.3, §12).

- admin: everything;
- a project is visible to its owner and assignee;
- a task is visible to its owner and assignee and to its project's owner and assignee (CVAT's
  tasks.rego: a job's assignee is not task staff and sees neither the task nor its project);
- a job is visible to its assignee and to the staff of its task and project.
Objects that exist but are not visible answer 403, not 404.

In an organization (the object's ``organization_id``), its owners and maintainers also see and
manage everything; supervisors and workers only what they are staff of.
"""
from __future__ import annotations

from ..errors import PermissionDenied
from ..store import Store
from .orgs import is_manager
from .users import is_admin


def _uid(user):
    return user["id"] if user else None


def is_project_staff(user, project: dict | None) -> bool:
    return bool(project) and _uid(user) in (project.get("owner_id"), project.get("assignee_id"))


def is_task_staff(store: Store, user, task: dict) -> bool:
    if _uid(user) in (task.get("owner_id"), task.get("assignee_id")):
        return True
    project = store.get("projects", task["project_id"]) if task.get("project_id") else None
    return is_project_staff(user, project)


def is_job_staff(store: Store, user, job: dict) -> bool:
    if job.get("assignee_id") == _uid(user):
        return True
    task = store.get("tasks", job["task_id"])
    return bool(task) and is_task_staff(store, user, task)


def _org_manager(store: Store, user, doc: dict | None) -> bool:
    return bool(doc) and doc.get("organization_id") is not None and is_manager(store, user, doc["organization_id"])


def can_view_project(store: Store, user, project: dict) -> bool:
    return is_admin(user) or is_project_staff(user, project) or _org_manager(store, user, project)


def can_view_task(store: Store, user, task: dict) -> bool:
    return is_admin(user) or is_task_staff(store, user, task) or _org_manager(store, user, task)


def can_change_task(store: Store, user, task: dict) -> bool:
    return can_view_task(store, user, task)


def can_manage_task(store: Store, user, task: dict) -> bool:
    """CVAT's owner-level task scopes (delete, update:owner/assignee/project): the task's
    owner or its project's staff, not its assignee."""
    if is_admin(user) or _uid(user) == task.get("owner_id") or _org_manager(store, user, task):
        return True
    project = store.get("projects", task["project_id"]) if task.get("project_id") else None
    return is_project_staff(user, project)


def can_view_job(store: Store, user, job: dict) -> bool:
    if is_admin(user) or is_job_staff(store, user, job):
        return True
    return _org_manager(store, user, store.get("tasks", job["task_id"]))


def can_manage_project(store: Store, user, project: dict) -> bool:
    """Org owners and maintainers manage the org's projects as their owners would."""
    return _org_manager(store, user, project)


def require(allowed: bool) -> None:
    if not allowed:
        raise PermissionDenied()
