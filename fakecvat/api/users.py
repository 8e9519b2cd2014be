"""/api/users: self, list with search/filters, detail, patch, delete.

Visibility (OPA rule): in an organization's context, its members (for admins too); otherwise
admins see everyone and a regular user only themselves (and the members of the organizations
they belong to, on detail reads). Others get BasicUser objects (reference/cvat-api.md §2.4).
"""
from __future__ import annotations

from flask import Blueprint, current_app, g

from ..errors import PermissionDenied, not_found
from ..http import base_url, body_dict, list_response, no_content, org_context, respond
from ..models import orgs, users

bp = Blueprint("users", __name__)

EDITABLE = ("first_name", "last_name", "email", "is_active")


def _store():
    return current_app.config["STORE"]


def _serialize(user: dict) -> dict:
    if users.is_admin(g.user) or user["id"] == g.user["id"]:
        return users.serialize_full(user, base_url())
    return users.serialize_basic(user, base_url())


def _visible(user: dict) -> bool:
    return users.is_admin(g.user) or user["id"] == g.user["id"] or _shares_work(user)


def _shares_work(user: dict) -> bool:
    """Both belong to one organization (members see each other there)."""
    store = _store()
    mine = {m["organization_id"] for m in store.find("memberships", lambda m: m["user_id"] == g.user["id"])}
    return any(m["organization_id"] in mine for m in store.find("memberships", lambda m: m["user_id"] == user["id"]))


@bp.get("/api/users/self")
def self_():
    return respond(users.serialize_full(g.user, base_url()))


@bp.get("/api/users")
def list_users():
    ctx = org_context()
    orgs.require_member(_store(), g.user, ctx)
    if ctx.org is not None:
        members = orgs.member_ids(_store(), ctx.org_id)
        rows = [u for u in _store().all("users") if u["id"] in members]
    else:
        rows = [u for u in _store().all("users")
                if users.is_admin(g.user) or u["id"] == g.user["id"]]
    return list_response(rows, _serialize,
                         simple_filters=("username", "first_name", "last_name", "is_active", "id"),
                         search_fields=("username", "first_name", "last_name"))


def _get(user_id: int) -> dict:
    user = _store().get("users", user_id)
    if not user:
        raise not_found("User")
    if not _visible(user):
        raise PermissionDenied()
    return user


@bp.get("/api/users/<int:user_id>")
def get_user(user_id):
    return respond(_serialize(_get(user_id)))


@bp.patch("/api/users/<int:user_id>")
def patch_user(user_id):
    user = _get(user_id)
    if not (users.is_admin(g.user) or user["id"] == g.user["id"]):
        raise PermissionDenied()
    data = body_dict()
    changes = {k: data[k] for k in EDITABLE if k in data}
    return respond(_serialize(_store().update("users", user["id"], **changes)))


@bp.delete("/api/users/<int:user_id>")
def delete_user(user_id):
    user = _get(user_id)
    if not (users.is_admin(g.user) or user["id"] == g.user["id"]):
        raise PermissionDenied()
    _store().delete("users", user["id"])
    return no_content()
