"""Background requests (CVAT's RQ jobs behind ``/api/requests``), evaluated lazily on read.

There are no worker threads. A request records *when* it may finish, per the server's async
policy (``app.config["ASYNC"]``: ``{"mode": "immediate"|"polls"|"seconds", "value": N}``):

- ``immediate``: the work runs inside :func:`create_request`; the request is born finished/failed;
- ``polls``: the work runs on the N-th poll of ``GET /api/requests/{id}`` (or task ``/status``);
- ``seconds``: the work runs on the first read (poll, or :func:`settle_due` from any task/job
  read) at least N seconds after creation.

How other models create requests (exports, imports, backups)::

    from fakecvat.models import requests as rq
    doc = rq.create_request(store, rq_id="action=export&target=task&target_id=5&...",
                            owner=user, operation={"type": "export:annotations", "target": "task",
                                                   "task_id": 5, "format": "CVAT for images 1.1"},
                            policy=current_app.config["ASYNC"], run=my_work)

``run(store, doc)`` does the work and returns a dict of Request fields to set on success
(e.g. ``{"result_url": ..., "result_id": ...}``) or None. Raise :class:`RequestFailed`
(or any exception) to fail the request; its ``str()`` becomes ``message``. ``run`` is kept in
memory only; for work that must survive a restart, register a runner per operation type with
:func:`register_runner` and pass ``params=`` (stored in the document as ``_params``) instead.
A finished request with the same id is replaced by a new one; :func:`active` tells whether
an id is still queued/started (for CVAT's 409 on duplicates).
"""
from __future__ import annotations

import time
from typing import Callable

from ..http import now
from ..store import Store

TABLE = "requests"
Runner = Callable[[Store, dict], "dict | None"]

_runners: dict[str, Runner] = {}
_callables: dict[tuple[int, str], Runner] = {}


class RequestFailed(Exception):
    """Raised by a runner: the request ends ``failed`` with this message."""


def register_runner(operation_type: str, fn: Runner) -> None:
    """Persistent work: ``fn(store, doc)`` runs requests whose operation type matches."""
    _runners[operation_type] = fn


def create_request(store: Store, *, rq_id: str, owner: dict, operation: dict, policy: dict | None = None,
                   run: Runner | None = None, params: dict | None = None) -> dict:
    """Record a new background request and, in ``immediate`` mode, run it now. Returns the doc."""
    policy = policy or {"mode": "immediate", "value": 0}
    mode, value = policy.get("mode", "immediate"), float(policy.get("value") or 0)
    op = {"type": operation["type"], "target": operation["target"], "project_id": None, "task_id": None,
          "job_id": None, "format": None, "function_id": None, "lightweight": None}
    op.update(operation)
    with store.lock:
        doc = {"id": rq_id, "status": "queued", "message": "", "operation": op, "progress": 0.0,
               "created_date": now(), "started_date": None, "finished_date": None, "expiry_date": None,
               "owner_id": owner["id"], "result_url": None, "result_id": None,
               "_mode": mode, "_polls_left": max(1, int(value)) if mode == "polls" else 0,
               "_ready_at": time.time() + value if mode == "seconds" else 0.0, "_params": params or {}}
        store.put(TABLE, doc)
        if run is not None:
            _callables[(id(store), rq_id)] = run
        if mode == "immediate":
            _finish(store, doc)
        return store.get(TABLE, rq_id)


def get_request(store: Store, rq_id: str, *, poll: bool = False) -> dict | None:
    """The request, advanced per its policy; ``poll=True`` counts this read as a status poll."""
    with store.lock:
        doc = store.get(TABLE, rq_id)
        if doc is None or doc["status"] in ("finished", "failed"):
            return doc
        if doc["_mode"] == "polls" and poll:
            left = doc["_polls_left"] - 1
            if left > 0:
                store.update(TABLE, rq_id, _polls_left=left, status="started", started_date=doc["started_date"] or now(),
                             message="Processing...", progress=round(1.0 / (left + 1), 3))
                return store.get(TABLE, rq_id)
        elif doc["_mode"] == "seconds" and time.time() < doc["_ready_at"]:
            if poll and doc["status"] == "queued":
                store.update(TABLE, rq_id, status="started", started_date=now(), message="Processing...")
            return store.get(TABLE, rq_id)
        elif doc["_mode"] == "polls":
            return doc
        _finish(store, doc)
        return store.get(TABLE, rq_id)


def settle_due(store: Store, pred: Callable[[dict], bool] | None = None) -> None:
    """Finish every time-based request whose time has come (called from reads of the objects
    the work changes, so that a task GET after N seconds shows its data)."""
    with store.lock:
        due = [d for d in store.all(TABLE)
               if d["status"] in ("queued", "started") and d["_mode"] != "polls" and (pred is None or pred(d))]
        for d in due:
            get_request(store, d["id"])


def active(doc: dict | None) -> bool:
    return bool(doc) and doc["status"] in ("queued", "started")


def list_for(store: Store, owner_id: int) -> list[dict]:
    settle_due(store, lambda d: d["owner_id"] == owner_id)
    return store.find(TABLE, lambda d: d["owner_id"] == owner_id)


def delete_for(store: Store, pred: Callable[[dict], bool]) -> None:
    with store.lock:
        for d in store.find(TABLE, pred):
            store.delete(TABLE, d["id"])
            _callables.pop((id(store), d["id"]), None)


def _finish(store: Store, doc: dict) -> None:
    """Run the work now (under the store lock, so concurrent polls cannot run it twice)."""
    rq_id = doc["id"]
    run = _callables.pop((id(store), rq_id), None) or _runners.get(doc["operation"]["type"])
    started = doc["started_date"] or now()
    store.update(TABLE, rq_id, status="started", started_date=started)
    try:
        if run is None:
            raise RequestFailed("The request was lost (fakecvat restarted before it ran)")
        result = run(store, store.get(TABLE, rq_id)) or {}
    except Exception as e:  # any failure of the work is the request's failure, as in RQ
        store.update(TABLE, rq_id, status="failed", message=str(e) or type(e).__name__,
                     finished_date=now(), progress=0.0)
        return
    fields = {k: v for k, v in result.items() if k in ("result_url", "result_id", "message")}
    fields.setdefault("message", "")
    store.update(TABLE, rq_id, status="finished", finished_date=now(), progress=1.0, **fields)


def serialize_request(store: Store, doc: dict) -> dict:
    owner = store.get("users", doc["owner_id"])
    out = {k: v for k, v in doc.items() if not k.startswith("_") and k != "owner_id"}
    out["operation"] = dict(doc["operation"])
    out["owner"] = {"id": doc["owner_id"], "username": owner["username"] if owner else ""}
    if out["status"] not in ("started",) and out["progress"] is None:
        out["progress"] = 0.0
    return out


def legacy_status(doc: dict | None) -> dict:
    """The deprecated ``/api/tasks/{id}/status`` body; no request means "Finished" (as CVAT)."""
    if doc is None:
        return {"state": "Finished", "message": "", "progress": 0.0}
    state = {"queued": "Queued", "started": "Started", "finished": "Finished", "failed": "Failed"}[doc["status"]]
    return {"state": state, "message": doc["message"] or "", "progress": doc["progress"] or 0.0}
