"""Annotation file formats: what ``/dataset/export`` writes and ``/annotations`` import reads.

Each format module works on plain data (an :class:`ExportContext` and LabeledData dicts) and
never sees Flask or the Store. ``EXPORTERS`` / ``IMPORTERS`` map CVAT's display names
(reference/cvat-api.md §9.1) to functions; the API layer looks formats up here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable


@dataclass
class Frame:
    number: int          # task-relative frame number
    name: str            # file name as CVAT shows it
    width: int
    height: int
    path: str | None = None   # the media file on disk, when images are to be saved


@dataclass
class ExportContext:
    """Everything a format needs to know about what is exported."""
    target: str                      # "task" | "job" | "project"
    task: dict                       # the task document
    labels: list[dict]               # label documents, sublabels included, ordered by id
    frames: list[Frame]              # the exported frames, in order
    host: str                        # http://host:port, for segment urls
    users: dict = field(default_factory=dict)    # id -> user doc (owner/assignee)
    jobs: list[dict] = field(default_factory=list)  # annotation jobs (segments) of the export
    job: dict | None = None          # the job, for job exports
    project: dict | None = None
    stop_frame: int = 0              # last task-relative frame of the export


class FormatError(Exception):
    """An import file CVAT would refuse; the message ends up in the request's ``message``."""


def _exporters() -> dict[str, tuple[str, Callable]]:
    from . import coco, cvat_xml_export
    return {
        "CVAT for images 1.1": ("ZIP", cvat_xml_export.export_images),
        "CVAT for video 1.1": ("ZIP", cvat_xml_export.export_video),
        "COCO 1.0": ("ZIP", coco.export),
    }


def _importers() -> dict[str, tuple[str, Callable]]:
    from . import cvat_xml_import
    return {"CVAT 1.1": ("XML, ZIP", cvat_xml_import.import_file)}


EXPORTERS = _exporters()
IMPORTERS = _importers()
