"""/api/auth: login, logout, register, personal access tokens."""
from __future__ import annotations

from flask import Blueprint, current_app, g, request

from ..errors import FieldError, NotAuthenticated, PermissionDenied, ValidationError, not_found
from ..http import base_url, body_dict, list_response, no_content, now, respond
from ..models import users

bp = Blueprint("auth", __name__)


def _store():
    return current_app.config["STORE"]


@bp.post("/api/auth/login")
def login():
    data = body_dict()
    login_name = data.get("username") or data.get("email") or ""
    user = users.check_credentials(_store(), login_name, data.get("password", ""))
    if not user:
        raise ValidationError({"non_field_errors": ["Unable to log in with provided credentials."]})
    session = users.new_session(_store(), user)
    resp = respond({"key": users.get_or_create_token(_store(), user)})
    # Werkzeug puts flags after Path=/, which keeps the SDK's SimpleCookie parse working.
    resp.set_cookie("sessionid", session["id"], httponly=True, samesite="Lax")
    resp.set_cookie("csrftoken", session["csrftoken"], samesite="Lax")
    resp.set_cookie("sessionfresh", "1", samesite="Lax")
    return resp


@bp.post("/api/auth/logout")
def logout():
    store = _store()
    sid = request.cookies.get("sessionid")
    session = store.get("sessions", sid) if sid else None
    user_id = session["user_id"] if session else (g.user["id"] if g.user else None)
    if session:
        users.end_session(store, sid)
    if user_id is not None:
        users.delete_tokens(store, user_id)
    resp = respond({"detail": "Successfully logged out."})
    for name in ("sessionid", "csrftoken", "sessionfresh"):
        resp.delete_cookie(name)
    return resp


@bp.post("/api/auth/register")
def register():
    data = body_dict()
    users.validate_register(data)
    user = users.create_user(_store(), data["username"], data["password1"], email=data.get("email", ""),
                             first_name=data.get("first_name", ""), last_name=data.get("last_name", ""))
    return respond({"username": user["username"], "email": user["email"], "first_name": user["first_name"],
                    "last_name": user["last_name"], "email_verification_required": False, "key": None}, 201)


# ---- personal access tokens ----------------------------------------------------------------

def _serialize_pat(t: dict) -> dict:
    return {"id": t["id"], "name": t["name"], "expiry_date": t["expiry_date"], "read_only": t["read_only"],
            "created_date": t["created_date"], "updated_date": t["updated_date"],
            "last_used_date": t["last_used_date"], "owner": users.serialize_basic(_store().get("users", t["owner_id"]), base_url())}


def _own_tokens():
    if g.auth in ("token", "bearer"):
        raise PermissionDenied("Token-authenticated clients cannot manage access tokens.")
    return _store().find("access_tokens", lambda t: t["owner_id"] == g.user["id"])


@bp.get("/api/auth/access_tokens")
def list_access_tokens():
    return list_response(_own_tokens(), _serialize_pat)


@bp.post("/api/auth/access_tokens")
def create_access_token():
    _own_tokens()
    data = body_dict()
    doc, value = users.create_access_token(_store(), g.user, data.get("name"), data.get("expiry_date"),
                                           data.get("read_only", True))
    out = _serialize_pat(doc)
    out["value"] = value
    return respond(out, 201)


@bp.get("/api/auth/access_tokens/self")
def access_token_self():
    if g.auth != "bearer":
        raise NotAuthenticated("Not authenticated with an access token.")
    value = request.headers["Authorization"].split(" ", 1)[1].strip()
    _, tok = users.user_for_access_token(_store(), value)
    return respond(_serialize_pat(tok))


def _pat(token_id: int) -> dict:
    tok = _store().get("access_tokens", token_id)
    if not tok or tok["owner_id"] != g.user["id"]:
        raise not_found("AccessToken")
    return tok


@bp.get("/api/auth/access_tokens/<int:token_id>")
def get_access_token(token_id):
    _own_tokens()
    return respond(_serialize_pat(_pat(token_id)))


@bp.patch("/api/auth/access_tokens/<int:token_id>")
def patch_access_token(token_id):
    _own_tokens()
    tok = _pat(token_id)
    data = body_dict()
    changes = {k: data[k] for k in ("name", "expiry_date", "read_only") if k in data}
    if "name" in changes and not changes["name"]:
        raise FieldError("name", "This field may not be blank.")
    tok = _store().update("access_tokens", tok["id"], updated_date=now(), **changes)
    return respond(_serialize_pat(tok))


@bp.delete("/api/auth/access_tokens/<int:token_id>")
def delete_access_token(token_id):
    _own_tokens()
    _store().delete("access_tokens", _pat(token_id)["id"])
    return no_content()
