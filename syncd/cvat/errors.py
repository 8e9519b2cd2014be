"""CVATError: every failure the CVAT client reports, as one line a user can act on.

A CVAT error body comes in several shapes (reference/cvat-api.md §11): ``{"detail": ...}``,
field-error dicts, a JSON list of strings, a bare JSON string, or plain text/HTML. ``detail_of``
turns any of them into one short line so the message names what CVAT actually said.
"""
from __future__ import annotations

import json
import re
from typing import Any

from ..errors import SyncdError

_MAX_DETAIL = 300


class CVATError(SyncdError):
    """A CVAT call failed.

    ``status`` is the HTTP status, or None when no answer came back (connection lost, timeout):
    then ``maybe_applied`` says whether the server may still have done the work (the request was
    sent), which matters for non-idempotent calls such as creating a task.
    """

    def __init__(self, message: str, *, status: int | None = None, url: str | None = None,
                 method: str | None = None, body: Any = None, maybe_applied: bool = False):
        super().__init__(message)
        self.status = status
        self.url = url
        self.method = method
        self.body = body
        self.maybe_applied = maybe_applied

    @property
    def detail(self) -> str:
        return detail_of(self.body)


def parse_body(text: str, content_type: str = "") -> Any:
    """The JSON value of a response body when it is JSON, else the text itself."""
    if not text:
        return None
    if "json" in content_type or text[:1] in "{[\"":
        try:
            return json.loads(text)
        except ValueError:
            pass
    return text


def detail_of(body: Any) -> str:
    """CVAT's message in one line, whatever shape the body has."""
    if body is None:
        return ""
    if isinstance(body, dict):
        if set(body) == {"detail"} or "detail" in body and isinstance(body["detail"], str):
            text = str(body["detail"])
        else:
            text = "; ".join(f"{k}: {_flatten(v)}" if k != "non_field_errors" else _flatten(v)
                             for k, v in body.items())
    elif isinstance(body, list):
        text = _flatten(body)
    else:
        text = str(body)
        if "<" in text and ">" in text:  # an HTML error page: keep the words only
            text = re.sub(r"<(script|style).*?</\1>|<[^>]+>", " ", text, flags=re.S | re.I)
    text = " ".join(text.split())
    return text if len(text) <= _MAX_DETAIL else text[:_MAX_DETAIL - 3] + "..."


def _flatten(v: Any) -> str:
    """Nested serializer errors (lists aligned with the input items) as 'a; [1] points: b'."""
    if isinstance(v, list):
        parts = []
        for i, item in enumerate(v):
            if item in ({}, [], None, ""):
                continue  # the empty entries of an item-aligned error list
            text = _flatten(item)
            parts.append(f"[{i}] {text}" if isinstance(item, dict) else text)
        return "; ".join(parts)
    if isinstance(v, dict):
        return "; ".join(f"{k}: {_flatten(x)}" for k, x in v.items())
    return str(v)
