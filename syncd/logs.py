"""Logging for the daemon: one line per event on stderr, as text or JSON, never a secret.

Call sites say *what happened* and attach fields::

    log = logs.get("reconcile")
    logs.event(log, "run planned", key="boxes-3", samples=12)

Text:  ``2024-05-01T10:00:00.123Z INFO reconcile run planned key=boxes-3 samples=12``
JSON:  ``{"ts": "...", "level": "INFO", "logger": "reconcile", "event": "run planned",
"key": "boxes-3", "samples": 12}``

Secrets: fields whose name looks like a credential are replaced by ``***``, and the values of
the credential environment variables (and any value registered with ``add_secret``, e.g. the
webhook secret) are masked wherever they appear in a line, tracebacks included. A log is
often pasted into an issue; it must be safe to paste.
"""
from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import re
import sys
import threading

ROOT_LOGGER = "syncd"
_SECRET_ENV = ("CVAT_PASSWORD", "CVAT_TOKEN", "FIFTYONE_CVAT_PASSWORD", "FIFTYONE_CVAT_TOKEN")
_SECRET_KEY = re.compile(r"pass(word)?|token|secret|authori[sz]ation|cookie|session|csrf", re.I)
_MASK = "***"

_secrets_lock = threading.Lock()
_secrets: set[str] = set()


def add_secret(value: str | None) -> None:
    """Mask ``value`` in every log line from now on (ignored if empty or very short)."""
    # Very short values would mask ordinary words; credentials are never that short in practice.
    if value and len(value) >= 4:
        with _secrets_lock:
            _secrets.add(value)


def _scrub(text: str) -> str:
    with _secrets_lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for s in secrets:
        if s in text:
            text = text.replace(s, _MASK)
    return text


def _clean_fields(fields: dict) -> dict:
    return {k: (_MASK if _SECRET_KEY.search(k) and v not in (None, "") else v)
            for k, v in fields.items()}


def _ts(created: float) -> str:
    return _dt.datetime.fromtimestamp(created, _dt.timezone.utc).isoformat(
        timespec="milliseconds").replace("+00:00", "Z")


def _text_value(v) -> str:
    s = v if isinstance(v, str) else json.dumps(v, default=str, ensure_ascii=False)
    if isinstance(v, str) and (not s or any(c.isspace() or c in '"=' for c in s)):
        s = json.dumps(s, ensure_ascii=False)
    return s


def _logger_name(record: logging.LogRecord) -> str:
    name = record.name
    return name[len(ROOT_LOGGER) + 1:] if name.startswith(ROOT_LOGGER + ".") else name


class TextFormatter(logging.Formatter):
    """``<ts> <LEVEL> <logger> <event> k=v ...`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        fields = _clean_fields(getattr(record, "fields", {}) or {})
        parts = [_ts(record.created), record.levelname, _logger_name(record),
                 record.getMessage()]
        parts += [f"{k}={_text_value(v)}" for k, v in fields.items()]
        if record.exc_info:
            # Keep the one-line promise: the traceback goes on the same line, escaped.
            parts.append("exc=" + json.dumps(self.formatException(record.exc_info)))
        return _scrub(" ".join(" ".join(str(p).splitlines()) for p in parts))


class JSONFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        out = {"ts": _ts(record.created), "level": record.levelname,
               "logger": _logger_name(record), "event": record.getMessage()}
        for k, v in _clean_fields(getattr(record, "fields", {}) or {}).items():
            out.setdefault(k, v)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return _scrub(json.dumps(out, default=str, ensure_ascii=False))


def setup(fmt: str = "text", level: int | str = logging.INFO, stream=None) -> logging.Logger:
    """Route the ``syncd`` loggers to ``stream`` (stderr) in ``fmt`` ("text" or "json")."""
    if fmt not in ("text", "json"):
        raise ValueError(f"log format must be 'text' or 'json', not {fmt!r}")
    for name in _SECRET_ENV:
        add_secret(os.environ.get(name))
    root = logging.getLogger(ROOT_LOGGER)
    for h in list(root.handlers):
        if getattr(h, "_syncd", False):
            root.removeHandler(h)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler._syncd = True  # type: ignore[attr-defined]
    handler.setFormatter(JSONFormatter() if fmt == "json" else TextFormatter())
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False
    return root


def get(name: str) -> logging.Logger:
    """The logger ``syncd.<name>``."""
    return logging.getLogger(f"{ROOT_LOGGER}.{name}")


def event(logger: logging.Logger, message: str, *, level: int = logging.INFO,
          exc_info=None, **fields) -> None:
    """Log one event with structured fields."""
    logger.log(level, message, extra={"fields": fields}, exc_info=exc_info)


class Once:
    """Remembers which problems were already reported, so a bad file is logged once, not on
    every pass. A problem is reported again only when its cause (the key) changes."""

    def __init__(self, limit: int = 100_000):
        self._seen: dict[str, object] = {}
        self._limit = limit
        self._lock = threading.Lock()

    def first(self, what: str, cause: object) -> bool:
        """True the first time ``what`` fails with ``cause`` (then False until it changes)."""
        with self._lock:
            if self._seen.get(what) == cause:
                return False
            if len(self._seen) >= self._limit:
                self._seen.clear()  # bounded memory; worst case a problem is re-logged once
            self._seen[what] = cause
            return True

    def clear(self, what: str) -> None:
        """Forget ``what`` (it is healthy again; a new failure is news)."""
        with self._lock:
            self._seen.pop(what, None)
