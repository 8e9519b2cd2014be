"""Organizations, memberships, invitations, and the organization context of a request
(reference/cvat-api.md §1.3, §12).

Tables:
- ``organizations`` ``{id, slug, name, description, contact, owner_id, created_date, updated_date}``;
- ``memberships`` ``{id, user_id, organization_id, role, is_active, joined_date, invitation}``;
- ``invitations`` keyed by ``key`` (a string) ``{id: key, key, organization_id, owner_id, user_id,
  role, created_date}``.

Simplification (documented in docs/organizations.md): fakecvat accepts an invitation at once
(the invitee becomes an active member when it is created); there is no e-mail and no
accept/decline step.

The context (``X-Organization: <slug>``, ``org=<slug>``, ``org_id=<int>``) is resolved by
:func:`resolve` into an :class:`OrgContext`: ``given`` says whether any of them was sent at all,
``org`` is the organization (None for an empty value: the personal sandbox). This module knows
nothing of Flask; ``fakecvat.http.org_context()`` feeds it the request.
"""
from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

from ..errors import FieldError, NotFound, PermissionDenied, ValidationError, not_found
from ..http import now
from ..store import Store
from . import events, users

ROLES = ("worker", "supervisor", "maintainer", "owner")
MANAGERS = ("owner", "maintainer")  # see and manage everything of their organization
SLUG_RE = re.compile(r"^[-a-zA-Z0-9_]+$")
NOT_MEMBER = "You should be an active member in the organization."


# ---- the context of a request ---------------------------------------------------------------

@dataclass(frozen=True)
class OrgContext:
    given: bool = False          # any of X-Organization / org / org_id was sent (even empty)
    org: dict | None = None      # the organization, or None: no context, or the sandbox

    @property
    def org_id(self) -> int | None:
        return self.org["id"] if self.org else None

    def matches(self, org_id) -> bool:
        """Whether an object of organization ``org_id`` (None: sandbox) belongs in a list made
        in this context: everything without a context, else only the context's objects."""
        return not self.given or org_id == self.org_id


def resolve(store: Store, header: str | None, org: str | None, org_id: str | None) -> OrgContext:
    """The context the three request inputs name; 400 when they disagree, 404 when unknown."""
    if org_id is not None and (org is not None or header is not None):
        raise ValidationError(["You cannot specify both org_id and org (or X-Organization) parameters"])
    if header is not None and org is not None and header != org:
        raise ValidationError(["You cannot specify different values for the X-Organization header and the org parameter"])
    if org_id is not None:
        if org_id == "":
            return OrgContext(True, None)
        try:
            found = store.get("organizations", int(org_id))
        except ValueError:
            raise ValidationError({"org_id": ["A valid integer is required."]})
        if found is None:
            raise NotFound(f"{org_id} organization does not exist.")
        return OrgContext(True, found)
    slug = header if header is not None else org
    if slug is None:
        return OrgContext(False, None)
    if slug == "":
        return OrgContext(True, None)
    found = by_slug(store, slug)
    if found is None:
        raise NotFound(f"{slug} organization does not exist.")
    return OrgContext(True, found)


def by_slug(store: Store, slug: str) -> dict | None:
    found = store.find("organizations", lambda o: o["slug"] == slug)
    return found[0] if found else None


# ---- roles ----------------------------------------------------------------------------------

def membership(store: Store, org_id, user) -> dict | None:
    if org_id is None or not user:
        return None
    found = store.find("memberships", lambda m: m["organization_id"] == org_id and m["user_id"] == user["id"]
                       and m.get("is_active", True))
    return found[0] if found else None


def role_of(store: Store, org_id, user) -> str | None:
    m = membership(store, org_id, user)
    return m["role"] if m else None


def is_manager(store: Store, user, org_id) -> bool:
    """Owner or maintainer of ``org_id`` (never true in the sandbox)."""
    return role_of(store, org_id, user) in MANAGERS


def is_member(store: Store, user, org_id) -> bool:
    return membership(store, org_id, user) is not None


def member_ids(store: Store, org_id) -> set[int]:
    return {m["user_id"] for m in store.find("memberships", lambda m: m["organization_id"] == org_id)}


def require_member(store: Store, user, ctx: OrgContext) -> None:
    """Working in an organization's context needs membership (admins excepted)."""
    if ctx.org is not None and not users.is_admin(user) and not is_member(store, user, ctx.org_id):
        raise PermissionDenied(NOT_MEMBER)


def require_creator(store: Store, user, ctx: OrgContext) -> None:
    """Creating projects, tasks or webhooks in an organization: owners and maintainers."""
    require_member(store, user, ctx)
    if ctx.org is not None and not users.is_admin(user) and not is_manager(store, user, ctx.org_id):
        raise PermissionDenied()


def check_assignable(store: Store, caller, org_id, target_id) -> None:
    """CVAT's assignee rule: assigning needs *view* permission on the target user. In an
    organization, members (and the caller) are visible; admins see everyone."""
    if target_id is None or org_id is None or users.is_admin(caller):
        return
    if target_id != caller["id"] and target_id not in member_ids(store, org_id):
        raise PermissionDenied()


# ---- organizations ------------------------------------------------------------------------------

def _validate(store: Store, data: dict, *, partial: bool, current: dict | None = None) -> dict:
    out, err = {}, {}
    if "slug" in data or not partial:
        slug = data.get("slug")
        if slug is None:
            err["slug"] = ["This field is required."]
        elif not isinstance(slug, str) or not slug:
            err["slug"] = ["This field may not be blank."] if slug == "" else ["Not a valid string."]
        elif len(slug) > 16:
            err["slug"] = ["Ensure this field has no more than 16 characters."]
        elif not SLUG_RE.match(slug):
            err["slug"] = ["Enter a valid value."]
        else:
            other = by_slug(store, slug)
            if other is not None and (current is None or other["id"] != current["id"]):
                err["slug"] = ["organization with this slug already exists."]
            out["slug"] = slug
    if "name" in data:
        if not isinstance(data["name"], str):
            err["name"] = ["Not a valid string."]
        elif len(data["name"]) > 64:
            err["name"] = ["Ensure this field has no more than 64 characters."]
        else:
            out["name"] = data["name"]
    if "description" in data:
        if not isinstance(data["description"], str):
            err["description"] = ["Not a valid string."]
        else:
            out["description"] = data["description"]
    if "contact" in data:
        if not isinstance(data["contact"], dict):
            err["contact"] = ["Value must be valid JSON."]
        else:
            out["contact"] = data["contact"]
    if err:
        raise ValidationError(err)
    return out


def get_org(store: Store, org_id) -> dict:
    org = store.get("organizations", org_id)
    if org is None:
        raise not_found("Organization")
    return org


def can_view(store: Store, user, org: dict) -> bool:
    return users.is_admin(user) or is_member(store, user, org["id"])


def create_org(store: Store, caller: dict, data: dict) -> dict:
    if not (users.is_admin(caller) or set(caller.get("groups", [])) & {"user", "business"}):
        raise PermissionDenied()  # global workers may not create organizations
    with store.lock:
        fields = _validate(store, data, partial=False)
        stamp = now()
        org = store.insert("organizations", {
            "slug": fields["slug"], "name": fields.get("name", ""), "description": fields.get("description", ""),
            "contact": fields.get("contact", {}), "owner_id": caller["id"], "created_date": stamp,
            "updated_date": stamp})
        store.insert("memberships", {"user_id": caller["id"], "organization_id": org["id"], "role": "owner",
                                     "is_active": True, "joined_date": stamp, "invitation": None})
    return org


def update_org(store: Store, caller: dict, org: dict, data: dict) -> dict:
    if not (users.is_admin(caller) or is_manager(store, caller, org["id"])):
        raise PermissionDenied()
    with store.lock:
        fields = _validate(store, data, partial=True, current=org)
        before = {k: org.get(k) for k in fields if org.get(k) != fields[k]}
        org = store.update("organizations", org["id"], **fields, updated_date=now())
    if before:
        events.emit(store, "update:organization", "organization", org["id"], before, caller)
    return org


def delete_org(store: Store, caller: dict, org: dict, media_dir) -> None:
    """Delete the organization with everything in it (CVAT's cascade): projects, tasks,
    memberships, invitations, webhooks."""
    if not (users.is_admin(caller) or role_of(store, org["id"], caller) == "owner"):
        raise PermissionDenied()
    from . import labels, tasks  # tasks imports much; only deletes need it
    with store.lock:
        events.emit(store, "delete:organization", "organization", org["id"], dict(org), caller)
        for task in store.find("tasks", lambda t: t.get("organization_id") == org["id"]):
            tasks.delete_task(store, task, media_dir, sender=caller)
        for project in store.find("projects", lambda p: p.get("organization_id") == org["id"]):
            labels.delete_labels_of(store, project_id=project["id"])
            store.delete("projects", project["id"])
            events.emit(store, "delete:project", "project", project["id"], project, caller)
        for table in ("memberships", "invitations", "webhooks"):
            for doc in store.find(table, lambda d: d.get("organization_id") == org["id"]):
                store.delete(table, doc["id"])
        store.delete("organizations", org["id"])


def serialize_org(store: Store, org: dict, base: str) -> dict:
    return {"id": org["id"], "slug": org["slug"], "name": org.get("name", ""),
            "description": org.get("description", ""), "created_date": org["created_date"],
            "updated_date": org["updated_date"], "contact": org.get("contact") or {},
            "owner": users.serialize_basic(store.get("users", org.get("owner_id")), base)}


# ---- memberships --------------------------------------------------------------------------------

def get_membership(store: Store, membership_id) -> dict:
    m = store.get("memberships", membership_id)
    if m is None:
        raise not_found("Membership")
    return m


def can_view_membership(store: Store, user, m: dict) -> bool:
    return users.is_admin(user) or is_member(store, user, m["organization_id"])


def _outranks(store: Store, caller, m: dict) -> bool:
    """Managers change the roles of members below them; the owner's membership is fixed."""
    if m["role"] == "owner":
        return False
    if users.is_admin(caller):
        return True
    mine = role_of(store, m["organization_id"], caller)
    return mine == "owner" or (mine == "maintainer" and m["role"] in ("worker", "supervisor"))


def update_membership(store: Store, caller: dict, m: dict, data: dict) -> dict:
    role = data.get("role")
    if role not in ROLES or role == "owner":
        raise FieldError("role", f'"{role}" is not a valid choice.')
    if not _outranks(store, caller, m):
        raise PermissionDenied()
    with store.lock:
        before = {"role": m["role"]} if m["role"] != role else {}
        m = store.update("memberships", m["id"], role=role)
    if before:
        events.emit(store, "update:membership", "membership", m["id"], before, caller)
    return m


def delete_membership(store: Store, caller: dict, m: dict) -> None:
    """A manager removes a lower member; anyone but the owner may leave."""
    leaving = caller["id"] == m["user_id"] and m["role"] != "owner"
    if not (leaving or _outranks(store, caller, m)):
        raise PermissionDenied()
    with store.lock:
        events.emit(store, "delete:membership", "membership", m["id"], dict(m), caller)
        store.delete("memberships", m["id"])
        if m.get("invitation"):
            store.delete("invitations", m["invitation"])  # CVAT's invitation goes with its membership


def serialize_membership(store: Store, m: dict, base: str) -> dict:
    return {"id": m["id"], "user": users.serialize_basic(store.get("users", m["user_id"]), base),
            "organization": m["organization_id"], "is_active": m.get("is_active", True),
            "joined_date": m.get("joined_date"), "role": m["role"], "invitation": m.get("invitation")}


def membership_fields(store: Store, m: dict) -> dict:
    user = store.get("users", m["user_id"]) or {}
    return {"id": m["id"], "user": user.get("username"), "role": m["role"], "organization": m["organization_id"]}


# ---- invitations ----------------------------------------------------------------------------------

def invite(store: Store, caller: dict, ctx: OrgContext, data: dict) -> dict:
    """POST /api/invitations in an organization: ``{role, email}`` (fakecvat also takes
    ``username``). Accepted at once: the invitee becomes a member."""
    if ctx.org is None:
        raise PermissionDenied()  # invitations exist only inside an organization
    require_member(store, caller, ctx)
    role = data.get("role")
    err = {}
    if role not in ROLES:
        err["role"] = [f'"{role}" is not a valid choice.' if role is not None else "This field is required."]
    target = None
    if data.get("username"):
        target = users.by_username(store, str(data["username"]))
    elif data.get("email"):
        target = users.by_email(store, str(data["email"]))
    else:
        err["email"] = ["This field is required."]
    if err:
        raise ValidationError(err)
    if target is None:
        # CVAT would invite an unregistered address by e-mail; fakecvat sends no mail.
        raise ValidationError({"email": ["fakecvat invites registered users only"]})
    mine = role_of(store, ctx.org_id, caller)
    if not users.is_admin(caller) and not (mine == "owner" or (mine == "maintainer" and role in ("worker", "supervisor"))):
        raise PermissionDenied()
    if role == "owner":
        raise ValidationError({"role": ["An organization has one owner"]})
    with store.lock:
        if is_member(store, target, ctx.org_id):
            raise ValidationError({"email": ["The user is already a member of the organization"]})
        key = secrets.token_urlsafe(24)
        stamp = now()
        inv = store.put("invitations", {"id": key, "key": key, "organization_id": ctx.org_id, "owner_id": caller["id"],
                                        "user_id": target["id"], "role": role, "created_date": stamp})
        m = store.insert("memberships", {"user_id": target["id"], "organization_id": ctx.org_id, "role": role,
                                         "is_active": True, "joined_date": stamp, "invitation": key})
    events.emit(store, "create:invitation", "invitation", key, None, caller)
    events.emit(store, "create:membership", "membership", m["id"], None, caller)
    return inv


def delete_invitation(store: Store, caller: dict, inv: dict) -> None:
    """Its sender or the organization's managers withdraw it; the membership it made stays."""
    if not (users.is_admin(caller) or inv.get("owner_id") == caller["id"]
            or is_manager(store, caller, inv["organization_id"])):
        raise PermissionDenied()
    with store.lock:
        events.emit(store, "delete:invitation", "invitation", inv["id"], dict(inv), caller)
        store.delete("invitations", inv["id"])
        for m in store.find("memberships", lambda m: m.get("invitation") == inv["id"]):
            store.update("memberships", m["id"], invitation=None)


def add_member(store: Store, org: dict, user: dict, role: str) -> dict:
    """The control API's shortcut: make ``user`` a member with ``role`` (no invitation)."""
    if role not in ROLES or role == "owner":
        raise FieldError("role", f'"{role}" is not a valid choice.')
    with store.lock:
        m = membership(store, org["id"], user)
        if m is not None:
            return store.update("memberships", m["id"], role=role)
        return store.insert("memberships", {"user_id": user["id"], "organization_id": org["id"], "role": role,
                                            "is_active": True, "joined_date": now(), "invitation": None})


def serialize_invitation(store: Store, inv: dict, base: str) -> dict:
    org = store.get("organizations", inv["organization_id"]) or {"id": inv["organization_id"], "slug": ""}
    return {"key": inv["key"], "created_date": inv["created_date"],
            "owner": users.serialize_basic(store.get("users", inv.get("owner_id")), base), "role": inv["role"],
            "user": users.serialize_basic(store.get("users", inv["user_id"]), base),
            "organization": inv["organization_id"], "expired": False,
            "organization_info": {"id": org["id"], "slug": org["slug"]}}


def org_of_object(store: Store, table: str, doc: dict | None):
    """The organization id of a project, task or job document (a job's is its task's)."""
    if doc is None:
        return None
    if table == "jobs":
        task = store.get("tasks", doc.get("task_id"))
        return task.get("organization_id") if task else None
    return doc.get("organization_id")

