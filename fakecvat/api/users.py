"""/api/users: self, list with search/filters, detail, patch, delete.

Visibility (OPA rule, sandbox context): admins see everyone; a regular user sees only
themselves, and gets BasicUser objects for others (reference/cvat-api.md §2.4).
"""
from __future__ import annotations

from flask import Blueprint, current_app, g

from ..errors import PermissionDenied, not_found
from ..http import base_url, body_dict, list_response, no_content, respond
from ..models import users

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
    # Outside organizations CVAT shows a regular user only themselves; kept as a hook for orgs.
    return False


@bp.get("/api/users/self")
def self_():
    return respond(users.serialize_full(g.user, base_url()))


@bp.get("/api/users")
def list_users():
    rows = [u for u in _store().all("users") if _visible(u)]
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
