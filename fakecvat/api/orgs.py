"""/api/organizations, /api/memberships, /api/invitations; the organization context check of
every request; and the control helper ``POST /_fakecvat/organizations``.

The context (``X-Organization`` / ``org`` / ``org_id``) is resolved before any ``/api/``
handler runs, so a conflict (400) or an unknown organization (404) is answered the same way on
every endpoint, as CVAT's middleware does; handlers read it with ``http.org_context()``.
"""
from __future__ import annotations

from flask import Blueprint, current_app, g, request

from ..auth import is_public
from ..control import bp as control_bp
from ..errors import FieldError, PermissionDenied, not_found
from ..http import base_url, body_dict, list_response, no_content, org_context, respond
from ..models import orgs, users
from . import webhooks as webhooks_api

bp = Blueprint("orgs", __name__)


def _store():
    return current_app.config["STORE"]


@bp.before_app_request
def _resolve_context() -> None:
    # After authentication (registered earlier): anonymous requests were refused already.
    if request.path.startswith("/api/") and not is_public(request.path):
        org_context()


# Webhook payloads of organization events use these Read serializers.
webhooks_api.register_serializer("organization", orgs.serialize_org)
webhooks_api.register_serializer("membership", orgs.serialize_membership)
webhooks_api.register_serializer("invitation", orgs.serialize_invitation)


# ---- organizations ------------------------------------------------------------------------------

def _org_fields(org: dict) -> dict:
    owner = _store().get("users", org.get("owner_id")) or {}
    return {**org, "owner": owner.get("username")}


@bp.get("/api/organizations")
def list_orgs():
    store = _store()
    rows = [o for o in store.all("organizations") if orgs.can_view(store, g.user, o)]
    return list_response(rows, lambda o: orgs.serialize_org(store, o, base_url()), fields=_org_fields,
                         simple_filters=("name", "owner", "slug"), search_fields=("name", "owner", "slug"))


@bp.post("/api/organizations")
def create_org():
    org = orgs.create_org(_store(), g.user, body_dict())
    return respond(orgs.serialize_org(_store(), org, base_url()), 201)


def _visible_org(org_id: int) -> dict:
    org = orgs.get_org(_store(), org_id)
    if not orgs.can_view(_store(), g.user, org):
        raise PermissionDenied()
    return org


@bp.get("/api/organizations/<int:org_id>")
def get_org(org_id):
    return respond(orgs.serialize_org(_store(), _visible_org(org_id), base_url()))


@bp.patch("/api/organizations/<int:org_id>")
def patch_org(org_id):
    org = orgs.update_org(_store(), g.user, _visible_org(org_id), body_dict())
    return respond(orgs.serialize_org(_store(), org, base_url()))


@bp.delete("/api/organizations/<int:org_id>")
def delete_org(org_id):
    orgs.delete_org(_store(), g.user, _visible_org(org_id), current_app.config["MEDIA_DIR"])
    return no_content()


# ---- memberships --------------------------------------------------------------------------------

@bp.get("/api/memberships")
def list_memberships():
    store = _store()
    ctx = org_context()
    orgs.require_member(store, g.user, ctx)
    rows = [m for m in store.all("memberships")
            if ctx.matches(m["organization_id"]) and orgs.can_view_membership(store, g.user, m)]
    return list_response(rows, lambda m: orgs.serialize_membership(store, m, base_url()),
                         fields=lambda m: orgs.membership_fields(store, m),
                         simple_filters=("user", "role"), search_fields=("user", "role"))


def _visible_membership(membership_id: int) -> dict:
    m = orgs.get_membership(_store(), membership_id)
    if not orgs.can_view_membership(_store(), g.user, m):
        raise PermissionDenied()
    return m


@bp.get("/api/memberships/<int:membership_id>")
def get_membership(membership_id):
    return respond(orgs.serialize_membership(_store(), _visible_membership(membership_id), base_url()))


@bp.patch("/api/memberships/<int:membership_id>")
def patch_membership(membership_id):
    m = orgs.update_membership(_store(), g.user, _visible_membership(membership_id), body_dict())
    return respond(orgs.serialize_membership(_store(), m, base_url()))


@bp.delete("/api/memberships/<int:membership_id>")
def delete_membership(membership_id):
    orgs.delete_membership(_store(), g.user, _visible_membership(membership_id))
    return no_content()


# ---- invitations ----------------------------------------------------------------------------------

@bp.get("/api/invitations")
def list_invitations():
    store = _store()
    ctx = org_context()
    orgs.require_member(store, g.user, ctx)
    rows = [i for i in store.all("invitations") if ctx.matches(i["organization_id"])
            and (users.is_admin(g.user) or orgs.is_member(store, g.user, i["organization_id"])
                 or i["user_id"] == g.user["id"])]
    return list_response(rows, lambda i: orgs.serialize_invitation(store, i, base_url()),
                         simple_filters=("role",), default_sort="-created_date")


@bp.post("/api/invitations")
def create_invitation():
    inv = orgs.invite(_store(), g.user, org_context(), body_dict())
    return respond(orgs.serialize_invitation(_store(), inv, base_url()), 201)


def _visible_invitation(key: str) -> dict:
    store = _store()
    inv = store.get("invitations", key)
    if inv is None:
        raise not_found("Invitation")
    if not (users.is_admin(g.user) or inv["user_id"] == g.user["id"]
            or orgs.is_member(store, g.user, inv["organization_id"])):
        raise PermissionDenied()
    return inv


@bp.get("/api/invitations/<key>")
def get_invitation(key):
    return respond(orgs.serialize_invitation(_store(), _visible_invitation(key), base_url()))


@bp.delete("/api/invitations/<key>")
def delete_invitation(key):
    orgs.delete_invitation(_store(), g.user, _visible_invitation(key))
    return no_content()


# ---- control ----------------------------------------------------------------------------------------

@control_bp.post("/_fakecvat/organizations")
def seed_org():
    """Test helper: ``{"slug", "name"?, "owner": username, "members": {username: role}}`` →
    the organization (as OrganizationRead), with its memberships, without any invitation."""
    store = _store()
    data = body_dict()
    owner = users.by_username(store, str(data.get("owner") or ""))
    if owner is None:
        raise FieldError("owner", "No such user.")
    org = orgs.create_org(store, {**owner, "groups": ["admin"]}, {k: data[k] for k in
                                                                  ("slug", "name", "description", "contact") if k in data})
    for username, role in (data.get("members") or {}).items():
        user = users.by_username(store, username)
        if user is None:
            raise FieldError("members", f"No such user: {username}")
        orgs.add_member(store, org, user, role)
    return respond(orgs.serialize_org(store, org, base_url()), 201)
