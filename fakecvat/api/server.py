"""/api/server: about (anonymous), annotation formats, share listing, plugins, health."""
from __future__ import annotations

import os
from pathlib import Path

from flask import Blueprint, current_app, request

from ..errors import APIError, NotFound
from ..http import respond

bp = Blueprint("server", __name__)

# (display name, extension, version); exporters and importers CVAT 2.52 reports that matter here.
EXPORTERS = [
    ("CVAT for images 1.1", "ZIP", "1.1"),
    ("CVAT for video 1.1", "ZIP", "1.1"),
    ("COCO 1.0", "ZIP", "1.0"),
    ("COCO Keypoints 1.0", "ZIP", "1.0"),
    ("Datumaro 1.0", "ZIP", "1.0"),
    ("PASCAL VOC 1.1", "ZIP", "1.1"),
    ("YOLO 1.1", "ZIP", "1.1"),
    ("Segmentation mask 1.1", "ZIP", "1.1"),
    ("MOT 1.1", "ZIP", "1.1"),
    ("LabelMe 3.0", "ZIP", "3.0"),
]
IMPORTERS = [
    ("CVAT 1.1", "XML, ZIP", "1.1"),
    ("COCO 1.0", "JSON, ZIP", "1.0"),
    ("Datumaro 1.0", "JSON, ZIP", "1.0"),
    ("PASCAL VOC 1.1", "ZIP", "1.1"),
    ("YOLO 1.1", "ZIP", "1.1"),
]
# What fakecvat really implements; the rest are listed (as CVAT lists them) but disabled.
ENABLED_EXPORTERS = {"CVAT for images 1.1", "CVAT for video 1.1", "COCO 1.0"}
ENABLED_IMPORTERS = {"CVAT 1.1"}


def _fmt(name, ext, version, enabled):
    return {"name": name, "ext": ext, "version": version, "enabled": enabled, "dimension": "2d"}


@bp.get("/api/server/about")
def about():
    return respond({
        "name": "Computer Vision Annotation Tool",
        "description": "fakecvat: an offline reimplementation of the CVAT server REST API for tests",
        "version": current_app.config["CVAT_VERSION"],
        "logo_url": request.host_url + "static/logo.svg",
        "subtitle": "Computer Vision Annotation Tool (fake)",
    })


@bp.get("/api/server/annotation/formats")
def formats():
    return respond({
        "importers": [_fmt(n, e, v, n in ENABLED_IMPORTERS) for n, e, v in IMPORTERS],
        "exporters": [_fmt(n, e, v, n in ENABLED_EXPORTERS) for n, e, v in EXPORTERS],
    })


@bp.get("/api/server/plugins")
def plugins():
    return respond({"GIT_INTEGRATION": False, "ANALYTICS": False, "MODELS": False, "PREDICT": False})


@bp.get("/api/server/health")
def health():
    return respond({"Cache backend: default": "working", "DatabaseBackend": "working"})


@bp.get("/api/server/share")
def share():
    """List one directory of the share volume: ``[{name, type: REG|DIR, mime_type}]``."""
    share_dir = current_app.config.get("SHARE_DIR")
    if not share_dir:
        return respond([])
    root = Path(share_dir).resolve()
    rel = request.args.get("directory", "/").lstrip("/")
    try:
        target = (root / rel).resolve()
    except ValueError:  # a NUL byte: no such directory (and no 500)
        raise NotFound(f"{rel} does not exist")
    if target != root and root not in target.parents:
        raise APIError(["The directory is outside the share"], status=400)
    if not target.is_dir():
        raise NotFound(f"{rel} does not exist")
    out = []
    for entry in sorted(os.scandir(target), key=lambda e: e.name):
        if entry.is_dir():
            out.append({"name": entry.name, "type": "DIR", "mime_type": "DIR"})
        else:
            out.append({"name": entry.name, "type": "REG", "mime_type": _mime(entry.name)})
    return respond(out)


def _mime(name: str) -> str:
    ext = name.rsplit(".", 1)[-1].lower()
    if ext in ("jpg", "jpeg", "png", "bmp", "gif", "webp", "tif", "tiff"):
        return "image"
    if ext in ("mp4", "mov", "avi", "mkv", "webm"):
        return "video"
    if ext in ("zip", "tar", "gz"):
        return "archive"
    return "unknown"
