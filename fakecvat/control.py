"""The control plane under ``/_fakecvat/`` (moto's ``/moto-api/`` idea): nothing here is CVAT.

- ``POST /_fakecvat/reset``: forget all state, re-seed the configured users.
- ``GET  /_fakecvat/state``: a JSON dump of every table.
- ``POST /_fakecvat/users`` ``{"username", "password", "superuser": false}``: add a user.
- ``POST /_fakecvat/faults`` ``{"path": <regex>, "method": "GET"|null, "status": 503,
  "body": ..., "retry_after": 2, "latency": 0.5, "drop": false, "phase": "before"|"after",
  "times": N | null, "fraction": 0.2 | null, "seed": 1}``: inject faults on matching requests.
  ``phase="after"`` lets the request succeed on the server and then delays or drops the answer
  (the classic duplicate maker). ``GET`` lists the rules with their hit counts,
  ``DELETE`` clears them.
- ``PUT /_fakecvat/async`` ``{"mode": "immediate"|"polls"|"seconds", "value": N}``: how long
  asynchronous work (task data processing, exports, imports) stays unfinished.
Resource-specific helpers (annotators writing shapes, completing jobs) are registered by their
models' modules on the same blueprint.
"""
from __future__ import annotations

import json
import random
import re
import threading
import time

from flask import Blueprint, Flask, current_app

from .errors import ValidationError
from .http import body_dict, respond
from .models import users

bp = Blueprint("control", __name__)

ASYNC_MODES = ("immediate", "polls", "seconds")


def init_app(app: Flask) -> None:
    app.config.setdefault("FAULTS", [])
    app.config.setdefault("FAULTS_LOCK", threading.Lock())
    app.config.setdefault("ASYNC", {"mode": "immediate", "value": 0})
    app.config.setdefault("FAULT_STATS", {"requests": 0, "faults": 0})
    app.wsgi_app = FaultMiddleware(app.wsgi_app, app)


def before_request() -> None:
    """Hook kept for symmetry with auth; faults are applied by the WSGI middleware."""
    return None


def reset_state(app: Flask) -> None:
    from .app import seed_users
    store = app.config["STORE"]
    store.reset()
    with app.config["FAULTS_LOCK"]:
        app.config["FAULTS"].clear()
    app.config["ASYNC"] = {"mode": "immediate", "value": 0}
    seed_users(store, app.config["USERS_SPEC"])
    for hook in app.config.get("RESET_HOOKS", []):
        hook(app)


@bp.post("/_fakecvat/reset")
def reset():
    reset_state(current_app)
    return respond({"detail": "reset"})


@bp.get("/_fakecvat/state")
def state():
    dump = current_app.config["STORE"].dump()
    for row in dump["tables"].get("users", {}).values():
        row.pop("password", None)
    for table in ("sessions", "tokens", "access_tokens"):
        dump["tables"].pop(table, None)
    return respond(dump)


@bp.post("/_fakecvat/users")
def add_user():
    data = body_dict()
    user = users.create_user(current_app.config["STORE"], data.get("username"), data.get("password"),
                             superuser=bool(data.get("superuser")), email=data.get("email", ""))
    return respond({"id": user["id"], "username": user["username"]}, 201)


# ---- faults --------------------------------------------------------------------------------

@bp.post("/_fakecvat/faults")
def add_fault():
    rule = body_dict()
    try:
        re.compile(rule.get("path", ".*"))
    except re.error as e:
        raise ValidationError({"path": [f"invalid regex: {e}"]})
    if rule.get("phase", "before") not in ("before", "after"):
        raise ValidationError({"phase": ["must be 'before' or 'after'"]})
    rule = {"path": rule.get("path", ".*"), "method": rule.get("method"), "status": rule.get("status"),
            "body": rule.get("body"), "retry_after": rule.get("retry_after"), "latency": float(rule.get("latency") or 0),
            "drop": bool(rule.get("drop")), "phase": rule.get("phase", "before"), "times": rule.get("times"),
            "fraction": rule.get("fraction"), "seed": rule.get("seed"), "hits": 0}
    rule["_rng"] = random.Random(rule["seed"])
    with current_app.config["FAULTS_LOCK"]:
        current_app.config["FAULTS"].append(rule)
        rule["id"] = len(current_app.config["FAULTS"])
    return respond(_public(rule), 201)


@bp.get("/_fakecvat/faults")
def list_faults():
    with current_app.config["FAULTS_LOCK"]:
        rules = [_public(r) for r in current_app.config["FAULTS"]]
    return respond({"rules": rules, "stats": dict(current_app.config["FAULT_STATS"])})


@bp.delete("/_fakecvat/faults")
def clear_faults():
    with current_app.config["FAULTS_LOCK"]:
        current_app.config["FAULTS"].clear()
    return respond({"detail": "cleared"})


def _public(rule: dict) -> dict:
    return {k: v for k, v in rule.items() if not k.startswith("_")}


@bp.put("/_fakecvat/async")
def set_async():
    data = body_dict()
    mode = data.get("mode", "immediate")
    if mode not in ASYNC_MODES:
        raise ValidationError({"mode": [f"must be one of {', '.join(ASYNC_MODES)}"]})
    current_app.config["ASYNC"] = {"mode": mode, "value": float(data.get("value") or 0)}
    return respond(current_app.config["ASYNC"])


class FaultMiddleware:
    """Applies fault rules around the Flask app, at the WSGI level, so that a dropped
    connection really is one: headers promise a body that never comes."""

    def __init__(self, wsgi_app, app: Flask):
        self.wsgi_app = wsgi_app
        self.app = app

    def _match(self, environ) -> dict | None:
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "")
        if path.startswith("/_fakecvat/"):
            return None
        cfg = self.app.config
        with cfg["FAULTS_LOCK"]:
            cfg["FAULT_STATS"]["requests"] += 1
            for rule in cfg["FAULTS"]:
                if rule["method"] and rule["method"].upper() != method:
                    continue
                if not re.search(rule["path"], path):
                    continue
                if rule["times"] is not None and rule["hits"] >= rule["times"]:
                    continue
                if rule["fraction"] is not None and rule["_rng"].random() >= float(rule["fraction"]):
                    continue
                rule["hits"] += 1
                cfg["FAULT_STATS"]["faults"] += 1
                return rule
        return None

    def __call__(self, environ, start_response):
        rule = self._match(environ)
        if rule is None:
            return self.wsgi_app(environ, start_response)
        if rule["phase"] == "after":
            # Let the server do the work, then lose or delay the answer.
            captured = {}

            def capture(status, headers, exc_info=None):
                captured["status"], captured["headers"] = status, headers
                return lambda data: None

            b"".join(self.wsgi_app(environ, capture))  # the work is done; the answer is what we lose
            if rule["latency"]:
                time.sleep(rule["latency"])
            if rule["drop"] or rule["status"] is None:
                return self._drop(start_response)
            return self._answer(rule, start_response)
        if rule["latency"]:
            time.sleep(rule["latency"])
        if rule["drop"]:
            # drain the request so the client is mid-read, not mid-write, when we vanish
            try:
                environ["wsgi.input"].read()
            except Exception:
                pass
            return self._drop(start_response)
        if rule["status"] is None:
            return self.wsgi_app(environ, start_response)
        return self._answer(rule, start_response)

    @staticmethod
    def _answer(rule, start_response):
        status = int(rule["status"])
        body = rule["body"] if rule["body"] is not None else {"detail": f"fakecvat injected fault ({status})"}
        data = json.dumps(body).encode()
        headers = [("Content-Type", "application/vnd.cvat+json"), ("Content-Length", str(len(data)))]
        if rule["retry_after"] is not None:
            headers.append(("Retry-After", str(rule["retry_after"])))
        start_response(f"{status} {_REASONS.get(status, 'Error')}", headers)
        return [data]

    @staticmethod
    def _drop(start_response):
        start_response("200 OK", [("Content-Type", "application/vnd.cvat+json"), ("Content-Length", "1048576")])

        def body():
            yield b"{"
            raise ConnectionAbortedError("fakecvat injected a dropped connection")

        return body()


_REASONS = {429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway",
            503: "Service Unavailable", 504: "Gateway Timeout", 400: "Bad Request", 404: "Not Found"}
