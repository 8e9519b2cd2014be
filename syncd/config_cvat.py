"""The ``[cvat]`` table of ``syncd.toml``: server URL (env ``CVAT_URL`` wins, then the file, then
``FIFTYONE_CVAT_URL``), organization, project, polling, webhook listener, share root and
completion mode."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping
from urllib.parse import urlsplit

from syncd.config_checks import CRED_HINT, check_str, fail, no_unknown, number


COMPLETION_MODES = ("completed", "acceptance")


@dataclass(frozen=True)
class CvatConfig:
    url: str
    organization: str = ""
    project_name: str = ""
    poll_interval: float = 10.0
    webhook: tuple[str, int] | None = None   # (host, port); port 0 = any free port
    share_root: Path | None = None            # absolute local path of CVAT's share volume
    completion: str = "completed"             # task done when "completed", or on "acceptance"


def _url(key, v) -> str:
    v = check_str(key, v, empty=False).strip()
    parts = urlsplit(v)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise fail(key, f"must be an http:// or https:// URL, got {v!r}")
    if parts.username or parts.password:
        raise fail(key, CRED_HINT)
    return v.rstrip("/")


def _webhook(key, v) -> tuple[str, int] | None:
    v = check_str(key, v).strip()
    if not v:
        return None
    host, sep, port = v.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise fail(key, f"must be HOST:PORT (port 0..65535), got {v!r}")
    return host, int(port)


def parse_cvat(data: dict, root: Path | None, env: Mapping[str, str]) -> CvatConfig:
    key = "cvat"
    no_unknown(key, data, {"url", "organization", "project_name", "poll_interval", "webhook",
                           "share_root", "completion"})
    env_url = env.get("CVAT_URL") or None
    if env_url:
        url = _url("env CVAT_URL", env_url)
    elif "url" in data:
        url = _url("cvat.url", data["url"])
    elif env.get("FIFTYONE_CVAT_URL"):
        url = _url("env FIFTYONE_CVAT_URL", env["FIFTYONE_CVAT_URL"])
    else:
        raise fail("cvat.url", "missing: set it in syncd.toml or in env CVAT_URL")
    share = check_str("cvat.share_root", data.get("share_root", "")).strip()
    share_root = None
    if share:
        share_root = Path(share).expanduser()
        if not share_root.is_absolute():
            share_root = (root or Path.cwd()) / share_root
        if not share_root.is_dir():
            raise fail("cvat.share_root", f"not a directory: {share_root}")
        share_root = share_root.resolve()
    completion = check_str("cvat.completion", data.get("completion", "completed"))
    if completion not in COMPLETION_MODES:
        raise fail("cvat.completion",
                   f"must be one of {', '.join(COMPLETION_MODES)}, got {completion!r}")
    return CvatConfig(
        url=url,
        organization=check_str("cvat.organization", data.get("organization", "")).strip(),
        project_name=check_str("cvat.project_name", data.get("project_name", "")).strip(),
        poll_interval=number("cvat.poll_interval", data.get("poll_interval", 10),
                             positive=True),
        webhook=_webhook("cvat.webhook", data.get("webhook", "")),
        share_root=share_root,
        completion=completion,
    )
