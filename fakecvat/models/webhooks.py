"""Webhooks: validation, permissions, selection and the delivery of events (cvat-api.md §10).

Two tables: ``webhooks`` (``{id, target_url, description, type, content_type, secret, is_active,
enable_ssl, project_id, organization_id, owner_id, events: [str], created_date, updated_date,
last_status, last_delivery_date}``) and ``deliveries`` (``{id, webhook_id, event, status_code,
redelivery, created_date, updated_date, changed_fields, request, response}``).

Deliveries are sent by a :class:`Dispatcher` (one per fakecvat app): a queue served by daemon
threads, so the request that made a change is never held up by a slow receiver. Like CVAT,
a delivery row is written once the POST has been answered (or has failed), never retried.
This module knows nothing of Flask; building the payload (which needs the Read serializers of
jobs/tasks/projects) happens in ``fakecvat.api.webhooks``.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import queue
import threading
import weakref
from typing import Any
from urllib.parse import urlsplit

import requests

from ..errors import APIError, PermissionDenied, ValidationError, not_found
from ..http import now
from ..store import Store
from . import orgs
from .users import is_admin, serialize_basic

log = logging.getLogger("fakecvat.webhooks")

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

TIMEOUT = 10  # seconds, as CVAT's sender
RESPONSE_LIMIT = 1024 * 1024  # a receiver's answer is kept only when smaller than 1 MB
WORKERS = 4
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


# ---- selection -----------------------------------------------------------------------------

def project_of(store: Store, resource: str, obj_id, doc: dict | None = None) -> Any:
    """The project an object belongs to (None outside projects or when it cannot be found);
    ``doc`` stands in for an object that is already gone from the store."""
    if resource == "project":
        return obj_id
    if doc is None:
        doc = store.get(resource + "s", obj_id)
    if doc is None:
        return None
    if resource == "comment":
        return project_of(store, "issue", doc.get("issue_id"))
    if resource == "issue":
        return project_of(store, "job", doc.get("job_id"))
    if resource == "job":
        return project_of(store, "task", doc.get("task_id"))
    if resource == "task":
        return doc.get("project_id")
    return None


def org_of(store: Store, resource: str, obj_id, doc: dict | None = None) -> Any:
    """The organization an object belongs to (None: the sandbox, or not found)."""
    if resource == "organization":
        return obj_id
    if doc is None:
        doc = store.get(resource + "s", obj_id)
    if doc is None:
        return None
    if resource in ("project", "task", "membership", "invitation"):
        return doc.get("organization_id")
    if resource == "job":
        return org_of(store, "task", doc.get("task_id"))
    if resource == "issue":
        return org_of(store, "job", doc.get("job_id"))
    if resource == "comment":
        return org_of(store, "issue", doc.get("issue_id"))
    return None


def select(store: Store, event: str, project_id, org_id=None) -> list[dict]:
    """Active webhooks subscribed to ``event``: the project webhooks of ``project_id`` and the
    organization webhooks of ``org_id``."""
    def wanted(h: dict) -> bool:
        if not h["is_active"] or event not in h["events"]:
            return False
        if h["type"] == "project":
            return project_id is not None and h.get("project_id") == project_id
        return org_id is not None and h["type"] == "organization" and h.get("organization_id") == org_id
    return sorted(store.find("webhooks", wanted), key=lambda h: h["id"])


# ---- sending --------------------------------------------------------------------------------

def body_of(payload: dict) -> bytes:
    """The bytes CVAT sends and signs: ``json.dumps`` with Python's default separators."""
    return json.dumps(payload).encode("utf-8")


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def post(hook: dict, payload: dict, timeout: float = TIMEOUT) -> tuple[int, str]:
    """POST once; a connection error is recorded as 502, a timeout as 504 (no retries)."""
    body = body_of(payload)
    headers = {"Content-Type": "application/json"}
    if hook.get("secret"):
        headers["X-Signature-256"] = signature(hook["secret"], body)
    try:
        with requests.post(hook["target_url"], data=body, headers=headers, timeout=timeout,
                           verify=hook.get("enable_ssl", True), stream=True, allow_redirects=True) as r:
            raw = r.raw.read(RESPONSE_LIMIT + 1, decode_content=True) or b""
            text = raw.decode("utf-8", errors="replace") if len(raw) <= RESPONSE_LIMIT else ""
            return r.status_code, text
    except requests.ConnectionError as e:  # includes connect timeouts, as in CVAT
        return 502, str(e)
    except requests.Timeout as e:
        return 504, str(e)
    except requests.RequestException as e:  # e.g. a URL requests cannot send to
        return 502, str(e)


def record(store: Store, hook_id, payload: dict, status: int, response: str, redelivery: bool) -> dict | None:
    stamp = now()
    with store.lock:
        if store.get("webhooks", hook_id) is None:
            return None  # deleted (or reset) while the request was in flight
        d = store.insert("deliveries", {
            "webhook_id": hook_id, "event": payload["event"], "status_code": status, "redelivery": redelivery,
            "created_date": stamp, "updated_date": stamp,
            "changed_fields": ",".join(payload.get("before_update", {}).keys()),
            "request": payload, "response": response})
        store.update("webhooks", hook_id, last_status=status, last_delivery_date=stamp)
        return d


def deliver(store: Store, hook: dict, payload: dict, redelivery: bool = False,
            timeout: float = TIMEOUT) -> dict | None:
    """Send now and record the outcome (the ping path)."""
    status, response = post(hook, payload, timeout)
    return record(store, hook["id"], payload, status, response, redelivery)


class Dispatcher:
    """One app's outgoing deliveries: a queue and a few daemon threads, started lazily.

    ``reset()`` forgets queued work (the control API's reset); ``stop()`` ends the threads with
    the server. A generation number keeps an in-flight delivery from writing into a store that
    was reset meanwhile.
    """

    def __init__(self, store: Store, workers: int = WORKERS):
        self.store = store
        self.workers = workers
        self._queue: queue.Queue = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._generation = 0
        self._stopped = False
        self._busy = 0
        self.app = None  # the Flask app, set by fakecvat.api.webhooks (payloads need its context)
        self.base_url = "http://localhost"  # the last URL the app was reached on

    def submit(self, hook_id, payload: dict, redelivery: bool = False, snapshot: dict | None = None) -> None:
        """Queue one delivery. The webhook is read again when sending (its URL or secret may
        have changed); ``snapshot`` is used if it is gone by then (a deleted project's hooks)."""
        with self._lock:
            if self._stopped:
                return
            self._busy += 1
            self._queue.put((self._generation, hook_id, payload, redelivery, snapshot))
            if len(self._threads) < self.workers:
                t = threading.Thread(target=self._run, name=f"fakecvat-webhooks-{len(self._threads)}", daemon=True)
                self._threads.append(t)
                t.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            generation, hook_id, payload, redelivery, snapshot = item
            try:
                if generation != self._generation or self._stopped:
                    continue
                hook = self.store.get("webhooks", hook_id) or snapshot
                if hook is None:
                    continue
                status, response = post(dict(hook), payload, self.timeout)
                with self.store.lock:
                    if generation == self._generation and not self._stopped:
                        record(self.store, hook_id, payload, status, response, redelivery)
            except Exception:  # a bug here must not kill the worker
                log.exception("webhook delivery failed")
            finally:
                with self._lock:
                    self._busy -= 1

    @property
    def timeout(self) -> float:
        """Seconds a receiver gets to answer: CVAT's 10, or the app's ``WEBHOOK_TIMEOUT``."""
        return float(self.app.config.get("WEBHOOK_TIMEOUT", TIMEOUT)) if self.app is not None else TIMEOUT

    @property
    def pending(self) -> int:
        """Deliveries queued or in flight (tests and the control API may wait for 0)."""
        with self._lock:
            return self._busy

    def reset(self) -> None:
        with self._lock:
            self._generation += 1
            self._drain()

    def _drain(self) -> None:
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                return
            self._busy -= 1

    def stop(self, timeout: float = 1.0) -> None:
        with self._lock:
            self._stopped = True
            self._generation += 1
            self._drain()
            threads = list(self._threads)
            for _ in threads:
                self._queue.put(None)
        for t in threads:
            t.join(timeout)  # an in-flight POST may outlive this; its thread is a daemon


# Stores → their app's dispatcher. The change subscriber (process-global) gets only the store,
# and several apps may live in one process (tests), so this is how it finds the right queue.
_dispatchers: "weakref.WeakKeyDictionary[Store, Dispatcher]" = weakref.WeakKeyDictionary()


def dispatcher_for(store: Store, create: bool = False) -> Dispatcher | None:
    d = _dispatchers.get(store)
    if d is None and create:
        d = _dispatchers[store] = Dispatcher(store)
    return d


def forget(store: Store) -> None:
    d = _dispatchers.pop(store, None)
    if d is not None:
        d.stop()


def sender_of(user, base: str) -> dict | None:
    return serialize_basic(user, base)

