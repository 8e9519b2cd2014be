"""Typed errors raised by models and handlers, rendered in CVAT's body shapes in one place.

CVAT's error bodies vary by where the error is raised (see reference/cvat-api.md §11):
serializer errors are dicts of lists, view-level ValidationErrors are lists, some paths answer a
JSON string and Django's HttpResponse paths answer plain text. Each class here picks one.
"""
from __future__ import annotations

from typing import Any


class APIError(Exception):
    """An HTTP error with CVAT's body. ``body`` is JSON-able; ``text`` makes it plain text."""

    status = 400

    def __init__(self, body: Any = None, status: int | None = None, text: bool = False, headers: dict | None = None):
        super().__init__(body)
        if status is not None:
            self.status = status
        self.body = body
        self.text = text
        self.headers = headers or {}


class ValidationError(APIError):
    """400 with a serializer-style dict (``{"field": ["msg"]}``), a list, or a string."""

    status = 400

    def __init__(self, body: Any):
        if isinstance(body, str):
            body = [body]
        super().__init__(body)


class FieldError(ValidationError):
    """400 ``{"<field>": ["<msg>"]}``, the common serializer case."""

    def __init__(self, field: str, msg: str):
        super().__init__({field: [msg]})


class NotAuthenticated(APIError):
    status = 401

    def __init__(self, detail: str = "Authentication credentials were not provided."):
        super().__init__({"detail": detail}, headers={"WWW-Authenticate": "Token"})


class PermissionDenied(APIError):
    status = 403

    def __init__(self, detail: str = "You do not have permission to perform this action."):
        super().__init__({"detail": detail})


class NotFound(APIError):
    status = 404

    def __init__(self, detail: str = "Not found."):
        super().__init__({"detail": detail})


def not_found(model: str) -> NotFound:
    """DRF >= 3.15's message, as CVAT 2.52 answers it: ``No Task matches the given query.``"""
    return NotFound(f"No {model} matches the given query.")


class MethodNotAllowed(APIError):
    status = 405

    def __init__(self, method: str):
        super().__init__({"detail": f'Method "{method}" not allowed.'})


class Conflict(APIError):
    status = 409


class Gone(APIError):
    status = 410

    def __init__(self, text: str):
        super().__init__(text, text=True)


class NotImplementedByFake(APIError):
    """An endpoint of CVAT's API that fakecvat does not implement: 501, never a fake success."""

    status = 501

    def __init__(self, method: str, path: str):
        super().__init__({"detail": f"fakecvat does not implement {method} {path}"})
