"""Change notifications: models call ``emit`` after a change; webhooks subscribe.

``emit(store, event, resource, obj_id, before=None, sender=None)`` with event names as CVAT's
(``update:job``, ``create:task``, ...). Subscribers are callables registered with ``subscribe``;
the webhooks model registers the delivery one. With no subscriber, emit does nothing.
"""
from __future__ import annotations

from typing import Callable

_subscribers: list[Callable] = []


def subscribe(fn: Callable) -> None:
    if fn not in _subscribers:
        _subscribers.append(fn)


def emit(store, event: str, resource: str, obj_id, before: dict | None = None, sender: dict | None = None) -> None:
    for fn in list(_subscribers):
        fn(store, event, resource, obj_id, before or {}, sender)
