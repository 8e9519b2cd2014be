"""Webhooks: validation, permissions, changes and serializers (cvat-api.md §10).

Two tables: ``webhooks`` (``{id, target_url, description, type, content_type, secret, is_active,
enable_ssl, project_id, organization_id, owner_id, events: [str], created_date, updated_date,
last_status, last_delivery_date}``) and ``deliveries`` (``{id, webhook_id, event, status_code,
redelivery, created_date, updated_date, changed_fields, request, response}``).

Choosing the webhooks an event goes to and sending it (which writes the delivery rows) is
``fakecvat.models.webhook_delivery``'s job.
"""
from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from ..errors import APIError, PermissionDenied, ValidationError, not_found
from ..http import now
from ..store import Store
from . import orgs
from .users import is_admin, serialize_basic

ALL_EVENTS = sorted(
    [f"{a}:{r}" for r in ("project", "task", "job", "issue", "comment") for a in ("create", "update", "delete")]
    + ["update:organization", "delete:organization", "create:invitation", "delete:invitation"]
    + [f"{a}:membership" for a in ("create", "update", "delete")]
)  # CVAT's EventsEnum: 22 names
PROJECT_EVENTS = sorted([f"{a}:{r}" for r in ("task", "job", "issue", "comment") for a in ("create", "update", "delete")]
                        + ["update:project", "delete:project"])
ORGANIZATION_EVENTS = list(ALL_EVENTS)
EVENTS_BY_TYPE = {"project": PROJECT_EVENTS, "organization": ORGANIZATION_EVENTS, "all": ALL_EVENTS}
TYPES = ("project", "organization")
CONTENT_TYPES = ("application/json",)
REQUIRED = "This field is required."


# ---- validation (WebhookWriteSerializer) --------------------------------------------------------

def _bool(value, errors: dict, name: str):
    if value in (True, "true", "True", "TRUE", "1", 1, "yes", "on"):
        return True
    if value in (False, "false", "False", "FALSE", "0", 0, "no", "off"):
        return False
    errors[name] = ["Must be a valid boolean."]
    return None


def _choice(value, choices, errors: dict, name: str):
    if isinstance(value, str) and value in choices:
        return value
    errors[name] = [f'"{value}" is not a valid choice.']
    return None


def _url(value, errors: dict) -> str | None:
    if not isinstance(value, str):
        errors["target_url"] = ["Not a valid string."]
        return None
    if not value:
        errors["target_url"] = ["This field may not be blank."]
        return None
    if len(value) > 8192:
        errors["target_url"] = ["Ensure this field has no more than 8192 characters."]
        return None
    parts = urlsplit(value)
    if parts.scheme.lower() not in ("http", "https", "ftp", "ftps") or not parts.netloc or " " in value:
        errors["target_url"] = ["Enter a valid URL."]
        return None
    return value


def _string(value, limit: int, errors: dict, name: str) -> str | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)  # DRF's CharField accepts numbers
    if not isinstance(value, str):
        errors[name] = ["Not a valid string."]
        return None
    if len(value) > limit:
        errors[name] = [f"Ensure this field has no more than {limit} characters."]
        return None
    return value


def _events(value, errors: dict) -> list[str] | None:
    if isinstance(value, (str, dict)) or not hasattr(value, "__iter__"):
        errors["events"] = [f'Expected a list of items but got type "{type(value).__name__}".']
        return None
    out = []
    for item in value:
        if not isinstance(item, str) or item not in ALL_EVENTS:
            errors["events"] = [f'"{item}" is not a valid choice.']
            return None
        out.append(item)
    return sorted(set(out))


def validate_write(data: dict, instance: dict | None = None, partial: bool = False) -> dict:
    """The fields of a create (``instance`` None), PUT or PATCH body, cleaned, or a 400.

    ``type`` and ``project_id`` are write-once: ignored on updates, as CVAT's WriteOnceMixin does.
    """
    errors: dict[str, list] = {}
    out: dict[str, Any] = {}
    creating = instance is None
    for name in ("target_url", "events") + (("type",) if creating else ()):
        if name not in data and not partial:
            errors[name] = [REQUIRED]
    data = dict(data)
    for name in [k for k, v in data.items() if v is None and k != "project_id"]:
        errors[name] = ["This field may not be null."]
        del data[name]
    if "target_url" in data:
        out["target_url"] = _url(data["target_url"], errors)
    if "description" in data:
        out["description"] = _string(data["description"], 128, errors, "description")
    if creating and "type" in data:
        out["type"] = _choice(data["type"], TYPES, errors, "type")
    if "content_type" in data:
        out["content_type"] = _choice(data["content_type"], CONTENT_TYPES, errors, "content_type")
    if "secret" in data:
        out["secret"] = _string(data["secret"], 64, errors, "secret")
    for name in ("is_active", "enable_ssl"):
        if name in data:
            out[name] = _bool(data[name], errors, name)
    if creating and data.get("project_id") is not None:
        try:
            out["project_id"] = int(data["project_id"])
        except (TypeError, ValueError):
            errors["project_id"] = ["A valid integer is required."]
    if "events" in data:
        out["events"] = _events(data["events"], errors)
    if errors:
        raise ValidationError(errors)
    # The serializer-level validator runs only once every field is valid.
    kind = out.get("type") if creating else instance["type"]
    if out.get("events") is not None and not set(out["events"]) <= set(EVENTS_BY_TYPE[kind]):
        raise ValidationError({"non_field_errors": [f"Invalid events list for {kind} webhook"]})
    return out


# ---- permissions (webhooks.rego, sandbox context) ----------------------------------------------

def _project_owner(store: Store, hook: dict):
    project = store.get("projects", hook["project_id"]) if hook.get("project_id") is not None else None
    return project.get("owner_id") if project else None


def can_view(store: Store, user, hook: dict) -> bool:
    uid = user["id"] if user else None
    if is_admin(user) or uid in (hook.get("owner_id"), _project_owner(store, hook)):
        return True
    # an organization's owners and maintainers see (and manage) all of its webhooks
    return hook.get("organization_id") is not None and orgs.is_manager(store, user, hook["organization_id"])


def can_change(store: Store, user, hook: dict) -> bool:
    # Sandbox: any privilege (worker and up) may change webhooks it owns or of projects it owns.
    return can_view(store, user, hook)


def visible(store: Store, user) -> list[dict]:
    return [h for h in store.all("webhooks") if can_view(store, user, h)]


def get_for(store: Store, user, webhook_id: int, *, change: bool = False) -> dict:
    hook = store.get("webhooks", webhook_id)
    if hook is None:
        raise not_found("Webhook")
    if not (can_change if change else can_view)(store, user, hook):
        raise PermissionDenied()
    return hook


def check_create(store: Store, user, data: dict, ctx: "orgs.OrgContext | None" = None) -> None:
    """CVAT checks permissions before it validates the body: a missing project is a 400 from the
    permission layer, a project that is not the caller's a 403. In an organization's context
    its owners and maintainers create organization webhooks and webhooks of its projects."""
    ctx = ctx or orgs.OrgContext()
    orgs.require_member(store, user, ctx)
    project_id = data.get("project_id")
    project = None
    if project_id is not None:
        try:
            project = store.get("projects", int(project_id))
        except (TypeError, ValueError):
            raise ValidationError({"project_id": ["A valid integer is required."]})
        if project is None:
            raise ValidationError([f"Could not find project with provided id: {project_id}"])
    if ctx.org is not None and project is not None and project.get("organization_id") != ctx.org_id:
        raise ValidationError([f"Could not find project with provided id: {project_id}"])
    if is_admin(user):
        return
    kind = data.get("type")
    if ctx.org is not None and orgs.is_manager(store, user, ctx.org_id) and kind in ("project", "organization"):
        return
    groups = set(user.get("groups", [])) if user else set()
    if kind != "project" or not groups & {"user", "business", "admin"} or project is None \
            or project.get("owner_id") != user["id"]:
        # create@organization needs an organization (maintainer+), which a sandbox never is.
        raise PermissionDenied()


# ---- changes -------------------------------------------------------------------------------

def create(store: Store, user, data: dict, org_id: int | None = None) -> dict:
    """A new webhook in organization ``org_id`` (the request's context; a project webhook
    takes its project's)."""
    fields = validate_write(data)
    if fields["type"] == "project" and fields.get("project_id") is None \
            or fields["type"] == "organization" and org_id is None:
        # CVAT's DB constraint (project webhooks need a project, organization webhooks an
        # organization) fails after validation: an admin gets a 500, not a 400.
        raise APIError("IntegrityError: new row for relation \"webhooks_webhook\" violates check constraint "
                       "\"webhooks_project_or_organization\"", status=500, text=True)
    if fields["type"] == "project":
        project = store.get("projects", fields["project_id"])
        org_id = project.get("organization_id") if project else org_id
    stamp = now()
    doc = {"target_url": fields["target_url"], "description": fields.get("description") or "",
           "type": fields["type"], "content_type": fields.get("content_type") or "application/json",
           "secret": fields.get("secret") or "", "is_active": _default(fields.get("is_active"), True),
           "enable_ssl": _default(fields.get("enable_ssl"), True), "project_id": fields.get("project_id"),
           "organization_id": org_id, "owner_id": user["id"] if user else None, "events": fields["events"],
           "created_date": stamp, "updated_date": stamp, "last_status": None, "last_delivery_date": None}
    return store.insert("webhooks", doc)


def _default(value, default):
    return default if value is None else value


def update(store: Store, hook: dict, data: dict, partial: bool) -> dict:
    fields = validate_write(data, instance=hook, partial=partial)
    fields = {k: ("" if v is None and k in ("description", "secret") else v) for k, v in fields.items()}
    with store.lock:
        return store.update("webhooks", hook["id"], **fields, updated_date=now())


def delete(store: Store, hook: dict) -> None:
    with store.lock:
        for d in store.find("deliveries", lambda d: d["webhook_id"] == hook["id"]):
            store.delete("deliveries", d["id"])
        store.delete("webhooks", hook["id"])


def delete_for_project(store: Store, project_id) -> None:
    """A project's webhooks go with it (CVAT's on_delete=CASCADE)."""
    with store.lock:
        for hook in store.find("webhooks", lambda h: h.get("project_id") == project_id):
            delete(store, hook)


# ---- serializers ------------------------------------------------------------------------------

def serialize(store: Store, hook: dict, base: str) -> dict:
    out = {"id": hook["id"], "url": f"{base}/api/webhooks/{hook['id']}", "target_url": hook["target_url"],
           "description": hook["description"], "type": hook["type"], "content_type": hook["content_type"],
           "is_active": hook["is_active"], "enable_ssl": hook["enable_ssl"],
           "created_date": hook["created_date"], "updated_date": hook["updated_date"],
           "owner": serialize_basic(store.get("users", hook["owner_id"]) if hook.get("owner_id") else None, base),
           "project_id": hook["project_id"], "organization": hook.get("organization_id"),
           "events": sorted(hook["events"])}
    # CVAT reads these through the newest delivery: with none, DRF leaves the fields out.
    if hook.get("last_delivery_date") is not None:
        out["last_status"] = hook["last_status"]
        out["last_delivery_date"] = hook["last_delivery_date"]
    return out


def serialize_delivery(d: dict) -> dict:
    return {k: d[k] for k in ("id", "webhook_id", "event", "status_code", "redelivery", "created_date",
                              "updated_date", "changed_fields", "request", "response")}


def get_delivery(store: Store, hook: dict, delivery_id) -> dict:
    d = store.get("deliveries", int(delivery_id))
    if d is None or d["webhook_id"] != hook["id"]:
        raise not_found("WebhookDelivery")
    return d


def deliveries(store: Store, hook: dict) -> list[dict]:
    rows = store.find("deliveries", lambda d: d["webhook_id"] == hook["id"])
    return sorted(rows, key=lambda d: (d["updated_date"], d["id"]), reverse=True)
