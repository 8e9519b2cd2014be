"""/api/projects: list (filters, search, sort -id, visibility), create, retrieve, patch, delete.

PUT is not routed, so Flask's 405 becomes CVAT's ``Method "PUT" not allowed.``
"""
from __future__ import annotations

from flask import Blueprint, current_app, g

from ..errors import PermissionDenied, not_found
from ..http import base_url, body_dict, list_response, no_content, org_context, respond
from ..models import access, orgs, projects

bp = Blueprint("projects", __name__)


def _store():
    return current_app.config["STORE"]


def _get_visible(project_id: int) -> dict:
    store = _store()
    project = store.get("projects", project_id)
    if project is None:
        raise not_found("Project")
    if not access.can_view_project(store, g.user, project):
        raise PermissionDenied()
    return project


def _serialize(project: dict) -> dict:
    return projects.serialize(_store(), project, base_url())


@bp.get("/api/projects")
def list_projects():
    store = _store()
    ctx = org_context()
    orgs.require_member(store, g.user, ctx)
    rows = [p for p in store.all("projects")
            if ctx.matches(p.get("organization_id")) and access.can_view_project(store, g.user, p)]
    return list_response(rows, _serialize, fields=lambda p: projects.filter_fields(store, p),
                         simple_filters=("name", "owner", "assignee", "status"),
                         search_fields=("name", "owner", "assignee", "status"))


@bp.post("/api/projects")
def create_project():
    ctx = org_context()
    orgs.require_creator(_store(), g.user, ctx)
    project = projects.create_project(_store(), g.user, body_dict(), org_id=ctx.org_id)
    return respond(_serialize(project), status=201)


@bp.get("/api/projects/<int:project_id>")
def get_project(project_id):
    return respond(_serialize(_get_visible(project_id)))


@bp.patch("/api/projects/<int:project_id>")
def patch_project(project_id):
    project = projects.update_project(_store(), g.user, _get_visible(project_id), body_dict())
    return respond(_serialize(project))


@bp.delete("/api/projects/<int:project_id>")
def delete_project(project_id):
    projects.delete_project(_store(), g.user, _get_visible(project_id), current_app.config["MEDIA_DIR"])
    return no_content()
