"""/api/webhooks: CRUD, events, deliveries, redelivery, ping; and turning change events into payloads.

Models announce changes with ``models.events.emit``; :func:`on_change` (subscribed once per
process) finds the app's dispatcher through the store, selects the webhooks, and builds the
payload right away, while the change is fresh and (usually) inside the request that made it:
``{"event", "<resource>": <Read serializer output>, "before_update", "sender", "webhook_id"}``.
The Read serializer is the one the resource's own endpoint answers with (``models.jobs.serialize_job``
...), so a delivered job looks exactly like ``GET /api/jobs/{id}``. Outside a request (background
work) absolute URLs use the last base URL this app was reached on.
"""
from __future__ import annotations

import importlib
import logging
from typing import Any, Callable

from flask import Blueprint, Flask, current_app, g, has_request_context, request

from ..errors import ValidationError
from ..http import base_url, body_dict, list_response, no_content, org_context, paginate, respond
from ..models import events, webhook_delivery, webhooks
from ..models.users import serialize_basic

bp = Blueprint("webhooks", __name__)
log = logging.getLogger("fakecvat.webhooks")

# Each resource's Read serializer, ``fn(store, doc, base_url) -> dict``: the very function its own
# endpoint answers with, so a delivered job looks exactly like ``GET /api/jobs/{id}``.
SERIALIZERS: dict[str, tuple[str, str]] = {
    "project": ("fakecvat.models.projects", "serialize"),
    "task": ("fakecvat.models.tasks", "serialize_task"),
    "job": ("fakecvat.models.jobs", "serialize_job"),
    "issue": ("fakecvat.models.issues", "serialize_issue"),
    "comment": ("fakecvat.models.comments", "serialize_comment"),
}
_registered: dict[str, Callable[[Any, dict, str], dict]] = {}


def register_serializer(resource: str, fn: Callable[[Any, dict, str], dict]) -> None:
    """Name a resource's Read serializer explicitly (``fn(store, doc, base_url)``)."""
    _registered[resource] = fn


def serializer_for(resource: str) -> Callable[[Any, dict, str], dict] | None:
    if resource in _registered:
        return _registered[resource]
    module_name, name = SERIALIZERS.get(resource, (None, None))
    if module_name is None:
        return None
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    fn = getattr(module, name, None)
    return fn if callable(fn) else None


# ---- app wiring --------------------------------------------------------------------------

@bp.record_once
def _init_app(state) -> None:
    app: Flask = state.app
    store = app.config["STORE"]
    dispatcher = webhook_delivery.dispatcher_for(store, create=True)
    dispatcher.app = app
    app.config["WEBHOOKS"] = dispatcher
    app.config.setdefault("RESET_HOOKS", []).append(lambda _app: dispatcher.reset())
    app.config.setdefault("STOP_HOOKS", []).append(lambda _app: webhook_delivery.forget(store))


@bp.before_app_request
def _remember_base_url() -> None:
    # Payloads built outside a request (background work) use the URL clients reach us on.
    d = current_app.config.get("WEBHOOKS")
    if d is not None:
        d.base_url = request.host_url.rstrip("/")


def on_change(store, event: str, resource: str, obj_id, before: dict, sender) -> None:
    d = webhook_delivery.dispatcher_for(store)
    if d is None:
        return
    try:
        with store.lock:
            doc = store.get(resource + "s", obj_id)
            if doc is None and event.startswith("delete:") and (before or {}).get("id") == obj_id:
                # A delete announced after the fact passes the last snapshot as ``before``.
                doc, before = before, {}
            hooks = webhook_delivery.select(store, event, webhook_delivery.project_of(store, resource, obj_id, doc),
                                            webhook_delivery.org_of(store, resource, obj_id, doc))
            if hooks:
                payload = _payload_in_context(d, store, event, resource, doc, before, sender)
                for hook in hooks if payload is not None else ():
                    d.submit(hook["id"], {**payload, "webhook_id": hook["id"]}, snapshot=dict(hook))
            if event == "delete:project":
                webhooks.delete_for_project(store, obj_id)
    except Exception:
        # The change itself has happened; a webhook problem must not turn it into a 500.
        log.exception("cannot build webhook payload for %s %s", event, obj_id)


events.subscribe(on_change)


def _payload_in_context(d, store, event, resource, doc, before, sender) -> dict | None:
    if has_request_context() and current_app.config.get("STORE") is store:
        base = base_url()
        if sender is None:
            sender = g.get("user")
    else:
        base = d.base_url  # background work: no request to take the host from
    return build_payload(store, event, resource, doc, before, sender, base)


def build_payload(store, event: str, resource: str, doc: dict | None, before: dict, sender, base: str) -> dict | None:
    """CVAT's payload without ``webhook_id``; None when the object cannot be serialized (a
    delete announced after the object was removed, without its snapshot)."""
    serialize = serializer_for(resource)
    if doc is None or serialize is None:
        log.warning("webhook %s for %s: %s", event, resource, "object is gone" if doc is None else "no serializer")
        return None
    current = serialize(store, doc, base)
    payload: dict[str, Any] = {"event": event, resource: current}
    if event.startswith("update:"):
        payload["before_update"] = _before_update(store, serialize, doc, before or {}, current, base)
    payload["sender"] = serialize_basic(sender, base)
    return payload


def _before_update(store, serialize, doc: dict, before: dict, current: dict, base: str) -> dict:
    """The changed top-level fields of the Read output with their old values. Models give old
    values of stored fields (``assignee_id``, or ``assignee`` meaning the id); CVAT reports
    serialized ones (``assignee``: a BasicUser), so the old document is serialized and compared."""
    old_doc = dict(doc)
    for k, v in before.items():
        old_doc[k if k in doc or f"{k}_id" not in doc else f"{k}_id"] = v
    try:
        old = serialize(store, old_doc, base)
    except Exception:
        old = None
    if isinstance(old, dict):
        changed = {k: v for k, v in old.items() if k != "labels" and current.get(k) != v}
        if changed:
            return changed
    return {k: v for k, v in before.items() if k != "labels"}


# ---- endpoints ------------------------------------------------------------------------------

def _store():
    return current_app.config["STORE"]


def _dispatcher() -> webhook_delivery.Dispatcher:
    return current_app.config["WEBHOOKS"]


def _ser(hook: dict) -> dict:
    return webhooks.serialize(_store(), hook, base_url())


def _fields(hook: dict) -> dict:
    owner = _store().get("users", hook["owner_id"]) if hook.get("owner_id") else None
    return {**hook, "owner": owner["username"] if owner else None}


@bp.get("/api/webhooks")
def list_webhooks():
    ctx = org_context()
    rows = [h for h in webhooks.visible(_store(), g.user) if ctx.matches(h.get("organization_id"))]
    return list_response(rows, _ser, fields=_fields,
                         simple_filters=("target_url", "owner", "type", "project_id"),
                         search_fields=("target_url", "owner", "type", "description"))


@bp.post("/api/webhooks")
def create_webhook():
    data = body_dict()
    ctx = org_context()
    webhooks.check_create(_store(), g.user, data, ctx)
    return respond(_ser(webhooks.create(_store(), g.user, data, org_id=ctx.org_id)), 201)


@bp.get("/api/webhooks/events")
def list_events():
    kind = request.args.get("type", "all")
    if kind not in webhooks.EVENTS_BY_TYPE:
        return respond("Incorrect value of type parameter", 400)
    return respond({"webhook_type": kind, "events": list(webhooks.EVENTS_BY_TYPE[kind])})


@bp.get("/api/webhooks/<int:webhook_id>")
def get_webhook(webhook_id):
    return respond(_ser(webhooks.get_for(_store(), g.user, webhook_id)))


@bp.patch("/api/webhooks/<int:webhook_id>")
def patch_webhook(webhook_id):
    hook = webhooks.get_for(_store(), g.user, webhook_id, change=True)
    return respond(_ser(webhooks.update(_store(), hook, body_dict(), partial=True)))


@bp.put("/api/webhooks/<int:webhook_id>")
def put_webhook(webhook_id):
    hook = webhooks.get_for(_store(), g.user, webhook_id, change=True)
    return respond(_ser(webhooks.update(_store(), hook, body_dict(), partial=False)))


@bp.delete("/api/webhooks/<int:webhook_id>")
def delete_webhook(webhook_id):
    webhooks.delete(_store(), webhooks.get_for(_store(), g.user, webhook_id, change=True))
    return no_content()


@bp.get("/api/webhooks/<int:webhook_id>/deliveries")
def list_deliveries(webhook_id):
    hook = webhooks.get_for(_store(), g.user, webhook_id)
    return respond(paginate(webhooks.deliveries(_store(), hook), webhooks.serialize_delivery))


@bp.get("/api/webhooks/<int:webhook_id>/deliveries/<int:delivery_id>")
def get_delivery(webhook_id, delivery_id):
    hook = webhooks.get_for(_store(), g.user, webhook_id)
    return respond(webhooks.serialize_delivery(webhooks.get_delivery(_store(), hook, delivery_id)))


@bp.post("/api/webhooks/<int:webhook_id>/deliveries/<int:delivery_id>/redelivery")
def redeliver(webhook_id, delivery_id):
    hook = webhooks.get_for(_store(), g.user, webhook_id, change=True)
    delivery = webhooks.get_delivery(_store(), hook, delivery_id)
    _dispatcher().submit(hook["id"], delivery["request"], redelivery=True)
    return respond({})


@bp.post("/api/webhooks/<int:webhook_id>/ping")
def ping(webhook_id):
    hook = webhooks.get_for(_store(), g.user, webhook_id, change=True)
    payload = {"event": "ping", "webhook": _ser(hook), "sender": serialize_basic(g.user, base_url())}
    delivery = webhook_delivery.deliver(_store(), hook, payload, timeout=_dispatcher().timeout)  # synchronous, as CVAT's
    if delivery is None:
        raise ValidationError(["The webhook was deleted during the ping"])
    return respond(webhooks.serialize_delivery(delivery))
