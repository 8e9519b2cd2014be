"""``/api/requests``: background requests (task creation here; exports/imports elsewhere)."""
from __future__ import annotations

from flask import Blueprint, current_app

from ..errors import APIError, PermissionDenied
from ..http import current_user, list_response, respond
from ..models import requests, users

bp = Blueprint("requests", __name__)

FILTERS = ("status", "action", "target", "subresource", "format", "project_id", "task_id", "job_id")


def _fields(doc: dict) -> dict:
    """Filter values: action/target/subresource come from the id (``action=..&target=..``)."""
    parts = dict(p.partition("=")[::2] for p in doc["id"].split("&")) if "=" in doc["id"] else {}
    op = doc["operation"]
    return {"id": doc["id"], "status": doc["status"], "action": parts.get("action", op["type"].split(":")[0]),
            "target": op["target"], "subresource": parts.get("subresource"), "format": op.get("format"),
            "project_id": op.get("project_id"), "task_id": op.get("task_id"), "job_id": op.get("job_id"),
            "created_date": doc["created_date"]}


@bp.get("/api/requests")
def list_requests():
    s = current_app.config["STORE"]
    rows = requests.list_for(s, current_user()["id"])
    return list_response(rows, lambda d: requests.serialize_request(s, d), fields=_fields,
                         simple_filters=FILTERS, default_sort="-created_date")


@bp.get("/api/requests/<path:rq_id>")
def get_request(rq_id: str):
    s = current_app.config["STORE"]
    doc = s.get(requests.TABLE, rq_id)
    if doc is None:
        raise APIError("There is no request with specified id", status=404, text=True)
    user = current_user()
    if doc["owner_id"] != user["id"] and not users.is_admin(user):
        raise PermissionDenied()
    return respond(requests.serialize_request(s, requests.get_request(s, rq_id, poll=True)))
