"""Who is calling: CVAT's authentication classes, in CVAT's order (reference/cvat-api.md §2).

1. ``Authorization: Token <key>`` (the per-user DRF token returned by login),
2. ``Authorization: Bearer <personal access token>`` (read-only tokens: safe methods only),
3. the ``sessionid`` cookie, with CSRF enforced on unsafe methods,
4. ``Authorization: Basic``.
Unauthenticated requests to anything but the public endpoints get 401 with
``WWW-Authenticate: Token``.
"""
from __future__ import annotations

import base64
from urllib.parse import urlsplit

from flask import current_app, g, request

from .errors import NotAuthenticated, PermissionDenied
from .models import users

SAFE_METHODS = {"GET", "HEAD", "OPTIONS", "TRACE"}
PUBLIC_PATHS = {"/api/server/about", "/api/auth/login", "/api/auth/register", "/api/auth/logout",
                "/api/server/health", "/api/auth/password/reset"}


def is_public(path: str) -> bool:
    return path.rstrip("/") in PUBLIC_PATHS or path.startswith("/_fakecvat/") or not path.startswith("/api/")


def authenticate() -> None:
    """before_request hook: sets ``g.user`` (or None) and ``g.auth`` (how), raising 401/403."""
    store = current_app.config["STORE"]
    g.user, g.auth, g.session = None, None, None
    header = request.headers.get("Authorization", "")
    scheme, _, cred = header.partition(" ")
    scheme = scheme.lower()
    if scheme == "token" and cred:
        tok = store.get("tokens", cred.strip())
        if not tok:
            raise NotAuthenticated("Invalid token.")
        g.user, g.auth = store.get("users", tok["user_id"]), "token"
    elif scheme == "bearer" and cred:
        user, tok = users.user_for_access_token(store, cred.strip())
        if not user:
            raise NotAuthenticated("Invalid token.")
        if tok["read_only"] and request.method not in SAFE_METHODS:
            raise PermissionDenied("This token is read-only.")
        g.user, g.auth = user, "bearer"
    elif scheme == "basic" and cred:
        try:
            login, _, password = base64.b64decode(cred).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            raise NotAuthenticated("Invalid basic header. Credentials not correctly base64 encoded.")
        user = users.check_credentials(store, login, password)
        if not user:
            raise NotAuthenticated("Invalid username/password.")
        g.user, g.auth = user, "basic"
    else:
        sid = request.cookies.get("sessionid")
        session = store.get("sessions", sid) if sid else None
        if session:
            g.user, g.auth, g.session = store.get("users", session["user_id"]), "session", session
            if request.method not in SAFE_METHODS:
                _check_csrf(session)
    if g.user is not None and not g.user.get("is_active", True):
        raise NotAuthenticated("User inactive or deleted.")
    if g.user is None and not is_public(request.path):
        raise NotAuthenticated()


def _check_csrf(session: dict) -> None:
    """Django's rules, as they matter to clients: the header must equal the csrftoken cookie
    issued with the session, and an Origin header, when sent, must name this host."""
    token = request.headers.get("X-CSRFToken")
    if not token:
        raise PermissionDenied("CSRF Failed: CSRF token missing.")
    if token != session["csrftoken"] or request.cookies.get("csrftoken", token) != token:
        raise PermissionDenied("CSRF Failed: CSRF token incorrect.")
    origin = request.headers.get("Origin")
    if origin and urlsplit(origin).netloc != request.host:
        raise PermissionDenied(f"CSRF Failed: Origin checking failed - {origin} does not match any trusted origins.")
