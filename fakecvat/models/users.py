"""Users, passwords, sessions, API tokens and personal access tokens."""
from __future__ import annotations

import hashlib
import re
import secrets

from werkzeug.security import check_password_hash, generate_password_hash

from ..errors import FieldError, ValidationError
from ..http import now
from ..store import Store

USERNAME_RE = re.compile(r"^[\w.@+-]+$")


def create_user(store: Store, username: str, password: str, *, email: str = "", superuser: bool = False,
                first_name: str = "", last_name: str = "") -> dict:
    if not isinstance(username, str) or not USERNAME_RE.match(username) or len(username) > 150:
        raise FieldError("username", "Enter a valid username. This value may contain only letters, numbers, and @/./+/-/_ characters.")
    if not isinstance(password, str) or not password:
        raise FieldError("password", "This field may not be blank.")
    with store.lock:
        if by_username(store, username):
            raise FieldError("username", "A user with that username already exists.")
        if email and by_email(store, email):
            raise FieldError("email", "A user is already registered with this e-mail address.")
        return store.insert("users", {
            "username": username,
            "email": email,
            "first_name": first_name,
            "last_name": last_name,
            "password": generate_password_hash(password, method="pbkdf2:sha256:1000"),
            "is_superuser": superuser,
            "is_staff": superuser,
            "is_active": True,
            "groups": ["admin"] if superuser else ["user"],
            "date_joined": now(),
            "last_login": None,
        })


def by_username(store: Store, username: str) -> dict | None:
    found = store.find("users", lambda u: u["username"] == username)
    return found[0] if found else None


def by_email(store: Store, email: str) -> dict | None:
    found = store.find("users", lambda u: u.get("email") and u["email"].lower() == email.lower())
    return found[0] if found else None


def check_credentials(store: Store, login: str, password: str) -> dict | None:
    user = by_username(store, login) or (by_email(store, login) if "@" in (login or "") else None)
    if user and user["is_active"] and check_password_hash(user["password"], password or ""):
        return user
    return None


def is_admin(user: dict | None) -> bool:
    return bool(user and (user.get("is_superuser") or "admin" in user.get("groups", [])))


# ---- sessions and tokens --------------------------------------------------------------------

def new_session(store: Store, user: dict) -> dict:
    store.update("users", user["id"], last_login=now())
    return store.put("sessions", {"id": secrets.token_hex(16), "user_id": user["id"],
                                  "csrftoken": secrets.token_hex(16)})


def end_session(store: Store, session_id: str) -> None:
    store.delete("sessions", session_id)


def get_or_create_token(store: Store, user: dict) -> str:
    """CVAT keeps one DRF token per user: every login returns the same key until logout."""
    with store.lock:
        for t in store.find("tokens", lambda t: t["user_id"] == user["id"]):
            return t["id"]
        return store.put("tokens", {"id": secrets.token_hex(20), "user_id": user["id"]})["id"]


def delete_tokens(store: Store, user_id: int) -> None:
    with store.lock:
        for t in store.find("tokens", lambda t: t["user_id"] == user_id):
            store.delete("tokens", t["id"])


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def create_access_token(store: Store, user: dict, name: str, expiry_date=None, read_only: bool = True) -> tuple[dict, str]:
    if not name or not isinstance(name, str):
        raise FieldError("name", "This field is required.")
    value = secrets.token_urlsafe(32)
    doc = store.insert("access_tokens", {"name": name, "owner_id": user["id"], "digest": _digest(value),
                                         "expiry_date": expiry_date, "read_only": bool(read_only),
                                         "created_date": now(), "updated_date": now(), "last_used_date": None})
    return doc, value


def user_for_access_token(store: Store, value: str) -> tuple[dict | None, dict | None]:
    d = _digest(value)
    found = store.find("access_tokens", lambda t: t["digest"] == d)
    if not found:
        return None, None
    tok = found[0]
    return store.get("users", tok["owner_id"]), tok


def serialize_basic(user: dict | None, base: str) -> dict | None:
    if user is None:
        return None
    return {"url": f"{base}/api/users/{user['id']}", "id": user["id"], "username": user["username"],
            "first_name": user["first_name"], "last_name": user["last_name"]}


def serialize_full(user: dict, base: str) -> dict:
    out = serialize_basic(user, base)
    out.update({"email": user["email"], "groups": list(user["groups"]), "is_staff": user["is_staff"],
                "is_superuser": user["is_superuser"], "is_active": user["is_active"],
                "last_login": user["last_login"], "date_joined": user["date_joined"],
                "has_analytics_access": user["is_superuser"]})
    return out


def validate_register(data: dict) -> None:
    errors = {}
    for f in ("username", "password1", "password2"):
        if not data.get(f):
            errors[f] = ["This field is required."]
    if not errors and data["password1"] != data["password2"]:
        errors["non_field_errors"] = ["The two password fields didn't match."]
    if errors:
        raise ValidationError(errors)
