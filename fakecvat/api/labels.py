"""/api/labels: list by task/job/project (project labels for project tasks), retrieve, patch, delete.

Lists hold top-level labels only (sublabels are nested), ordered by id. A label is visible
when its parent project or task is.
"""
from __future__ import annotations

from flask import Blueprint, current_app, g, request

from ..errors import PermissionDenied, ValidationError, not_found
from ..http import body_dict, list_response, no_content, org_context, query_int, respond
from ..models import access, labels, orgs, users

bp = Blueprint("labels", __name__)


def _store():
    return current_app.config["STORE"]


def _parent_of(label: dict) -> tuple[str, dict | None]:
    store = _store()
    if label.get("project_id") is not None:
        return "project", store.get("projects", label["project_id"])
    return "task", store.get("tasks", label.get("task_id"))


def _can_view(label: dict) -> bool:
    kind, parent = _parent_of(label)
    if parent is None:
        return users.is_admin(g.user)
    if kind == "project":
        return access.can_view_project(_store(), g.user, parent)
    return access.can_view_task(_store(), g.user, parent)


def _can_change(label: dict) -> bool:
    kind, parent = _parent_of(label)
    if users.is_admin(g.user):
        return True
    if parent is None:
        return False
    if kind == "project":
        return access.is_project_staff(g.user, parent) or access.can_manage_project(_store(), g.user, parent)
    return access.can_change_task(_store(), g.user, parent)


def _serialize(label: dict) -> dict:
    return labels.serialize_label(label, _store())


def _fields(label: dict) -> dict:
    parent = _store().get("labels", label["parent_id"]) if label.get("parent_id") is not None else None
    return {**label, "parent": parent["name"] if parent else None}


@bp.get("/api/labels")
def list_labels():
    store = _store()
    ctx = org_context()
    orgs.require_member(store, g.user, ctx)
    ids = {k: query_int(k) for k in ("job_id", "task_id", "project_id") if request.args.get(k) not in (None, "")}
    if len(ids) > 1:
        raise ValidationError(["job_id, task_id and project_id parameters cannot be used together"])
    if "job_id" in ids:
        job = store.get("jobs", ids["job_id"])
        if job is None:
            raise not_found("Job")
        access.require(access.can_view_job(store, g.user, job))
        rows = labels.labels_of_task(store, store.get("tasks", job["task_id"]))
    elif "task_id" in ids:
        task = store.get("tasks", ids["task_id"])
        if task is None:
            raise not_found("Task")
        access.require(access.can_view_task(store, g.user, task))
        rows = labels.labels_of_task(store, task)
    elif "project_id" in ids:
        project = store.get("projects", ids["project_id"])
        if project is None:
            raise not_found("Project")
        access.require(access.can_view_project(store, g.user, project))
        rows = labels.top_level_labels(store, project_id=project["id"])
    else:
        rows = [lb for lb in store.all("labels") if lb.get("parent_id") is None and _can_view(lb)]
    if ctx.given:
        # a label belongs to its project's or task's organization
        rows = [lb for lb in rows if ctx.matches((_parent_of(lb)[1] or {}).get("organization_id"))]
    return list_response(rows, _serialize, fields=_fields,
                         simple_filters=("name", "parent", "type", "color", "parent_id"),
                         search_fields=("name", "parent"), default_sort="id")


def _get(label_id: int) -> dict:
    label = _store().get("labels", label_id)
    if label is None:
        raise not_found("Label")
    if not _can_view(label):
        raise PermissionDenied()
    return label


@bp.get("/api/labels/<int:label_id>")
def get_label(label_id):
    return respond(_serialize(_get(label_id)))


@bp.patch("/api/labels/<int:label_id>")
def patch_label(label_id):
    label = _get(label_id)
    access.require(_can_change(label))
    return respond(_serialize(labels.update_label(_store(), label_id, body_dict(), sender=g.user)))


@bp.delete("/api/labels/<int:label_id>")
def delete_label(label_id):
    label = _get(label_id)
    access.require(_can_change(label))
    labels.delete_label(_store(), label_id, sender=g.user)
    return no_content()
