"""``/api/tasks``: CRUD and the deprecated ``/status`` (data and frames: :mod:`.taskdata`)."""
from __future__ import annotations

from flask import Blueprint, current_app

from ..errors import APIError
from ..http import base_url, body_dict, current_user, list_response, no_content, org_context, respond
from ..models import access, orgs, requests, taskdata, tasks, users

bp = Blueprint("tasks", __name__)

TASK_FILTERS = ("project_name", "name", "owner", "status", "assignee", "subset", "mode", "dimension",
                "tracker_link", "validation_mode", "project_id", "id")


# fields whose change is an owner-level scope in CVAT (update:owner, update:assignee, update:project)
OWNER_FIELDS = ("owner_id", "assignee_id", "project_id")


def store():
    return current_app.config["STORE"]


def visible_task(task_id: int, change: bool = False) -> dict:
    """The task (settling its pending processing first), or 404/403 as CVAT answers."""
    s = store()
    requests.settle_due(s, lambda d: d["operation"].get("task_id") == task_id)
    task = tasks.get_task(s, task_id)
    user = current_user()
    access.require(access.can_change_task(s, user, task) if change else access.can_view_task(s, user, task))
    return task


@bp.get("/api/tasks")
def list_tasks():
    s = store()
    requests.settle_due(s)
    user = current_user()
    ctx = org_context()
    orgs.require_member(s, user, ctx)
    rows = [t for t in s.all("tasks") if ctx.matches(t.get("organization_id")) and access.can_view_task(s, user, t)]
    base = base_url()
    return list_response(rows, lambda t: tasks.serialize_task(s, t, base), fields=lambda t: tasks.list_fields(s, t),
                         simple_filters=TASK_FILTERS, search_fields=TASK_FILTERS[:10])


@bp.post("/api/tasks")
def create_task():
    user = current_user()
    if "worker" in user.get("groups", []) and not users.is_admin(user):
        raise APIError({"detail": "You do not have permission to perform this action."}, status=403)
    ctx = org_context()
    orgs.require_creator(store(), user, ctx)
    task = tasks.create_task(store(), user, body_dict(), org_id=ctx.org_id)
    return respond(tasks.serialize_task(store(), task, base_url()), 201)


@bp.get("/api/tasks/<int:task_id>")
def get_task(task_id: int):
    return respond(tasks.serialize_task(store(), visible_task(task_id), base_url()))


@bp.patch("/api/tasks/<int:task_id>")
def patch_task(task_id: int):
    task = visible_task(task_id, change=True)
    data = body_dict()
    if any(k in data for k in OWNER_FIELDS):
        access.require(access.can_manage_task(store(), current_user(), task))
    task = tasks.patch_task(store(), current_user(), task, data)
    return respond(tasks.serialize_task(store(), task, base_url()))


@bp.delete("/api/tasks/<int:task_id>")
def delete_task(task_id: int):
    task = visible_task(task_id, change=True)
    access.require(access.can_manage_task(store(), current_user(), task))
    tasks.delete_task(store(), task, current_app.config["MEDIA_DIR"], sender=current_user())
    return no_content()


@bp.get("/api/tasks/<int:task_id>/status")
def task_status(task_id: int):
    """Deprecated in CVAT 2.52 (and so marked); each call counts as a poll of the request."""
    visible_task(task_id)
    doc = requests.get_request(store(), taskdata.rq_id_for(task_id), poll=True)
    return respond(requests.legacy_status(doc), headers={"Deprecation": "true"})
