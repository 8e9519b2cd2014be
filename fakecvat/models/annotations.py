"""Annotations (CVAT's LabeledData) of jobs and tasks: the public face of the modules that do
the work, so API handlers and importers need one name.

- :mod:`.annotation_labels`: the labels and attribute specs a task's annotations may use
- :mod:`.annotation_checks`: validation in CVAT's order, before anything is written
- :mod:`.annotation_normalize`: validated input → the stored (output) shape, with ids
- :mod:`.annotation_fill`: attribute values CVAT adds on output
- :mod:`.annotation_jobs`: storage per job and one job's GET/PUT/PATCH/DELETE
- :mod:`.annotation_tasks`: task level (jobs merged on read, writes split by frame)
- :mod:`.track_merge`: tracks of overlapping jobs joined as CVAT's TrackManager does
"""
from __future__ import annotations

from .annotation_checks import KINDS, points_error, validate
from .annotation_fill import fill
from .annotation_jobs import (ACTIONS, annotation_jobs, delete_job, empty, get_job, job_objects, patch_job, put_job,
                              require_data)
from .annotation_labels import LabelIndex, label_index
from .annotation_normalize import normalize
from .annotation_tasks import delete_task, get_task, patch_task, put_task, replace_task, split_by_jobs

__all__ = ["ACTIONS", "KINDS", "LabelIndex", "annotation_jobs", "delete_job", "delete_task", "empty", "fill",
           "get_job", "get_task", "job_objects", "label_index", "normalize", "patch_job", "patch_task",
           "points_error", "put_job", "put_task", "replace_task", "require_data", "split_by_jobs", "validate"]
