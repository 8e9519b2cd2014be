"""``client_from_env``: a CVATClient configured from environment variables.

Read, first match wins: ``CVAT_URL`` (else ``FIFTYONE_CVAT_URL``); ``CVAT_TOKEN`` (a personal
access token) else ``CVAT_USERNAME``/``CVAT_PASSWORD`` (else ``FIFTYONE_CVAT_USERNAME``/
``FIFTYONE_CVAT_PASSWORD``); ``CVAT_ORGANIZATION`` (else ``FIFTYONE_CVAT_ORGANIZATION``);
``SYNCD_UPLOAD_PARALLEL``: media upload requests in flight at once (1-16, default 2; 1 sends
one request after the other, as the official SDK does).
"""
from __future__ import annotations

import os
from typing import Mapping

from .errors import CVATError
from .resources import CVATClient


def _first(env: Mapping[str, str], *names: str) -> str | None:
    for name in names:
        value = env.get(name)
        if value:
            return value
    return None


def client_from_env(url: str | None = None, env: Mapping[str, str] = os.environ, **kwargs) -> CVATClient:
    url = url or _first(env, "CVAT_URL", "FIFTYONE_CVAT_URL")
    if not url:
        raise CVATError("no CVAT server configured: set CVAT_URL (or FIFTYONE_CVAT_URL)")
    token = _first(env, "CVAT_TOKEN")
    username = _first(env, "CVAT_USERNAME", "FIFTYONE_CVAT_USERNAME")
    password = _first(env, "CVAT_PASSWORD", "FIFTYONE_CVAT_PASSWORD")
    if not token and not (username and password):
        raise CVATError("no CVAT credentials: set CVAT_TOKEN, or CVAT_USERNAME and CVAT_PASSWORD "
                        "(or FIFTYONE_CVAT_USERNAME and FIFTYONE_CVAT_PASSWORD)")
    org = _first(env, "CVAT_ORGANIZATION", "FIFTYONE_CVAT_ORGANIZATION")
    kwargs.setdefault("organization", org)
    parallel = _upload_parallel(env.get("SYNCD_UPLOAD_PARALLEL", ""))
    if token:
        client = CVATClient(url, token=token, **kwargs)
    else:
        client = CVATClient(url, username=username, password=password, **kwargs)
    if parallel is not None:
        client.upload_parallel = parallel
    return client


def _upload_parallel(raw: str) -> int | None:
    raw = raw.strip()
    if not raw:
        return None
    if not raw.isdigit() or not 1 <= int(raw) <= 16:
        raise CVATError(f"SYNCD_UPLOAD_PARALLEL: expected a whole number from 1 to 16, got {raw!r}")
    return int(raw)
