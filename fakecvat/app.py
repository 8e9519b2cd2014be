"""The Flask application factory: blueprints, authentication, error rendering, request ids.

``create_app()`` builds a fresh, isolated server (its own Store), the way Flask's tutorial app
does per test. Everything CVAT-shaped about errors happens here, once: models and handlers
raise :mod:`fakecvat.errors`, this module renders them.
"""
from __future__ import annotations

import importlib
import shutil
import tempfile
import uuid
from pathlib import Path

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound as WerkzeugNotFound
from werkzeug.routing import IntegerConverter

from . import auth, control, jsonenc
from .api import BLUEPRINTS
from .errors import APIError, MethodNotAllowed as CVATMethodNotAllowed, NotImplementedByFake
from .http import CVAT_JSON
from .models import users
from .store import Store

DEFAULT_VERSION = "2.80.0"
DEFAULT_USERS = (("admin", "admin"),)


class SignedIntConverter(IntegerConverter):
    """``<int:...>`` that also matches negative ids: CVAT's router takes any segment as a
    lookup and answers 404 for ``/api/tasks/-1``; werkzeug's unsigned int would leave the path
    unrouted (a 501 "does not implement")."""

    def __init__(self, map, *args, **kwargs):
        kwargs.setdefault("signed", True)
        super().__init__(map, *args, **kwargs)


def create_app(*, data_dir=None, store: Store | None = None, users_spec=None, cvat_version: str = DEFAULT_VERSION,
               share_dir=None, media_dir=None) -> Flask:
    """Build a fakecvat app.

    users_spec: iterable of (username, password); the first is a superuser. Defaults to
    admin:admin. Users are only seeded into an empty store (a restart keeps the old ones).
    """
    app = Flask("fakecvat")
    app.url_map.strict_slashes = False  # CVAT accepts /data and /data/ alike; never redirect a POST
    app.url_map.converters["int"] = SignedIntConverter  # before any rule is added
    store = store or Store(data_dir)
    stop_hooks = []
    if media_dir is None:
        if data_dir:
            media_dir = Path(data_dir) / "media"
        else:
            # in-memory state: media are as temporary as the server, removed when it stops
            media_dir = Path(tempfile.mkdtemp(prefix="fakecvat-media-"))
            stop_hooks.append(lambda app: shutil.rmtree(app.config["MEDIA_DIR"], ignore_errors=True))
    elif not data_dir and Path(media_dir).is_dir() and any(Path(media_dir).iterdir()):
        # an in-memory server numbers its tasks from 1 again: it would mix its media with those
        raise ValueError(f"media directory {media_dir} is not empty; an in-memory fakecvat needs an "
                         f"empty one (or --data-dir, to keep its state with them)")
    Path(media_dir).mkdir(parents=True, exist_ok=True)
    app.config.update(
        STORE=store,
        CVAT_VERSION=cvat_version,
        SHARE_DIR=str(share_dir) if share_dir else None,
        MEDIA_DIR=str(media_dir),
        USERS_SPEC=list(users_spec or DEFAULT_USERS),
        MAX_CONTENT_LENGTH=None,
    )
    app.config.setdefault("STOP_HOOKS", []).extend(stop_hooks)
    seed_users(store, app.config["USERS_SPEC"])
    control.init_app(app)

    app.before_request(control.before_request)  # faults first: they may answer instead of us
    app.before_request(auth.authenticate)
    for name in BLUEPRINTS:
        app.register_blueprint(importlib.import_module(name).bp)
    app.register_blueprint(control.bp)

    @app.after_request
    def _request_id(resp: Response):
        resp.headers["X-Request-Id"] = str(uuid.uuid4())
        return resp

    @app.errorhandler(APIError)
    def _api_error(e: APIError):
        if e.text:
            resp = Response(str(e.body), status=e.status, mimetype="text/plain")
        else:
            resp = Response(jsonenc.dumps(e.body), status=e.status, mimetype=CVAT_JSON)
        for k, v in e.headers.items():
            resp.headers[k] = v
        return resp

    @app.errorhandler(WerkzeugNotFound)
    def _unknown_path(e):
        if request.path.startswith("/api/"):
            return _api_error(NotImplementedByFake(request.method, request.path))
        return _api_error(APIError({"detail": "Not found."}, status=404))

    @app.errorhandler(MethodNotAllowed)
    def _method(e):
        return _api_error(CVATMethodNotAllowed(request.method))

    @app.errorhandler(HTTPException)
    def _http(e: HTTPException):
        return _api_error(APIError({"detail": e.description}, status=e.code or 500))

    return app


def seed_users(store: Store, spec) -> None:
    with store.lock:
        if store.all("users"):
            return
        for i, (name, password) in enumerate(spec):
            users.create_user(store, name, password, superuser=(i == 0), email=f"{name}@example.com")
