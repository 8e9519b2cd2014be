"""The steps of an annotation run, each idempotent, each one move closer to "labels merged".

The one-shot API (``syncd.annotate`` / ``syncd.load_annotations``) and the daemon's reconciler
call exactly these functions; the daemon only decides *when*. Every step re-reads the run
record in ``<root>/.syncd/``, compares it with CVAT, and records its intent before each CVAT
call that creates something, so a crash at any instant leads to neither a duplicate task (tasks
have deterministic names, recorded before creation and looked up by name before creating) nor a
lost label (labels drawn in CVAT get ids derived from their CVAT ids, so merging twice is merging
once).

Run record shape (stored by syncd.runs.RunStore)::

    {"key", "created", "status": "planned"|"uploading"|"annotating"|"loading"|"loaded"|"failed",
     "config": {"schema": {field: FieldSchema.to_json()}, "segment_size", "task_size",
                "task_assignee", "job_assignees", "job_reviewers", "project_name", "project_id",
                "image_quality", "cleanup", "rule", "trigger_tag", "done_tag", "nonce", ...},
     "project": {"id", "created": bool} | None,
     "batches": [{"index", "name", "samples": [rel, ...], "task_id": int|None,
                  "state": "planned"|"creating"|"created"|"uploading"|"ready"|"annotating"
                           |"loaded"|"deleting"|"deleted"|"lost" (task deleted in CVAT by hand),
                  "rq_id", "jobs": [job ids], "labels_sent": bool}],
     "sent": {rel: {field: [label ids]}},      # what each sample carried into CVAT
     "hashes": {rel: "xxh128:<hex>"},          # media content when sent (added per batch, as it
                                               # turns "annotating": see ops/hashing.py)
     "media_stats": {rel: [size, mtime_ns, ctime_ns, inode]},  # the file's stat when hashed, if
                                               # settled: equal at load = unchanged, not re-read
     "merged": [rel, ...],                     # samples whose labels are already on disk
     "flagged": {rel: reason},                 # not merged: needs a person (e.g. media changed)
     "skipped": {rel: reason}}                 # never sent: bad media or sample file
"""
from .common import FINISHED, derived_id, schema_of
from .lifecycle import active_samples, cleanup_run, is_complete, task_ids_of
from .load import load_run
from .plan import plan_run
from .upload import advance_upload, upload_run

__all__ = ["FINISHED", "active_samples", "advance_upload", "cleanup_run", "derived_id", "is_complete",
           "load_run", "plan_run", "schema_of", "task_ids_of", "upload_run"]
