"""Webhook delivery: which webhooks an event goes to, and sending it to them (cvat-api.md §10).

Deliveries are sent by a :class:`Dispatcher` (one per fakecvat app): a queue served by daemon
threads, so the request that made a change is never held up by a slow receiver. Like CVAT,
a delivery row (table ``deliveries``, see ``fakecvat.models.webhooks``) is written once the POST
has been answered (or has failed), never retried. This module knows nothing of Flask; building
the payload (which needs the Read serializers of jobs/tasks/projects) happens in
``fakecvat.api.webhooks``. The webhooks themselves (validation, permissions, changes,
serializers) live in ``fakecvat.models.webhooks``.
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

import requests

from ..http import now
from ..store import Store

log = logging.getLogger("fakecvat.webhooks")  # the same logger as before the split

TIMEOUT = 10  # seconds, as CVAT's sender
RESPONSE_LIMIT = 1024 * 1024  # a receiver's answer is kept only when smaller than 1 MB
WORKERS = 4


# ---- selection -----------------------------------------------------------------------------

# an object's parent on the way up to its task: (parent resource, the field naming it)
_PARENT = {"comment": ("issue", "issue_id"), "issue": ("job", "job_id"), "job": ("task", "task_id")}


def _up(store: Store, resource: str, obj_id, doc: dict | None, own: str, holders: tuple, field: str) -> Any:
    """``obj_id`` for an ``own`` resource; ``doc[field]`` for one of ``holders``; else the same
    question asked of the object's parent. ``doc`` stands in for an object already gone."""
    if resource == own:
        return obj_id
    if doc is None:
        doc = store.get(resource + "s", obj_id)
    if doc is None:
        return None
    if resource in holders:
        return doc.get(field)
    parent = _PARENT.get(resource)
    return _up(store, parent[0], doc.get(parent[1]), None, own, holders, field) if parent else None


def project_of(store: Store, resource: str, obj_id, doc: dict | None = None) -> Any:
    """The project an object belongs to (None outside projects or when it cannot be found);
    ``doc`` stands in for an object that is already gone from the store."""
    return _up(store, resource, obj_id, doc, "project", ("task",), "project_id")


def org_of(store: Store, resource: str, obj_id, doc: dict | None = None) -> Any:
    """The organization an object belongs to (None: the sandbox, or not found)."""
    return _up(store, resource, obj_id, doc, "organization",
               ("project", "task", "membership", "invitation"), "organization_id")


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

