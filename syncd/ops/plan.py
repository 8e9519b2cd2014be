"""Planning a run: validate samples and schema, split into batches, record it. No CVAT call."""
from __future__ import annotations

import logging
import os
import secrets
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable

from .. import dataset
from ..errors import MediaError, RunError, SampleFileError, SyncdError
from ..labels.video import check_frame_settings, check_step_with_tracks
from ..media_metadata import compute_metadata
from ..runs import RunStore
from ..schema import SchemaError, build_schema
from . import hashing
from .common import as_list, is_video
from .upload import note_planned, share_names

log = logging.getLogger("syncd.ops")


def plan_run(root, key: str, samples: Iterable[str], *, rule_name: str | None = None,
             label_schema: dict | None = None, label_field: str | None = None, label_type: str | None = None,
             classes=None, attributes=True, mask_targets=None, segment_size: int | None = None,
             task_size: int | None = None, task_assignee=None, job_assignees=None, job_reviewers=None,
             project_name: str | None = None, project_id: int | None = None, organization: str | None = None,
             image_quality: int = 75, cleanup: bool = False, allow_additions: bool = True,
             allow_deletions: bool = True, allow_label_edits: bool = True, allow_index_edits: bool = True,
             allow_spatial_edits: bool = True, trigger_tag: str | None = None, done_tag: str | None = None,
             url: str | None = None, share_root: str | None = None, frame_start=None, frame_stop=None,
             frame_step=None, store: RunStore | None = None, sample_docs: dict | None = None) -> dict:
    """Validate the samples and the schema and record the run. No CVAT call is made here.

    Samples whose media or sample file is bad are skipped with their reason; a bad schema, an
    existing key or no usable sample raises before anything is recorded.

    ``frame_start``/``frame_stop``/``frame_step`` (videos): an int for every video, a list (one
    per video, in order) or a dict {video path: int}.

    ``sample_docs``: {path: parsed sample file} the caller has just read with
    ``dataset.read_sample`` (``annotate``'s tag selection reads every sample file), keyed by
    the normalized paths it returned: those are not checked, read and parsed a second time.
    """
    store = store or RunStore(root)
    if store.exists(key):
        if store.get(key).get("status") in ("planned", "uploading"):
            # most likely a retry after a failed upload: point at the way that reuses its tasks
            raise RunError(f"run '{key}' already exists in {root} and its upload did not finish: "
                           f"finish it with `syncd annotate {root} {key} --resume`, or delete it first")
        raise RunError(f"run '{key}' already exists in {root}: pick another key or delete it first")
    if image_quality is not None and not (0 <= int(image_quality) <= 100):
        raise SyncdError(f"image_quality must be within 0..100, got {image_quality}")
    for name, value in (("segment_size", segment_size), ("task_size", task_size)):
        if value is not None and (not isinstance(value, int) or value < 0):
            raise SyncdError(f"{name} must be a non-negative integer, got {value!r}")

    rels, docs, skipped = [], [], {}
    # Checking a sample may decode its media and write its sample file (fsync'd):
    # work that releases the GIL, so a few threads overlap the disk waits (fsyncs issued
    # together share journal commits). Results are taken in the given order.
    wanted = list(dict.fromkeys(samples))
    known = sample_docs or {}
    # The cheap checks run here, in order (a thread hand-off per sample cost more than they do);
    # only samples whose media must be decoded or whose sample file must be written go to
    # the threads.
    checked = [_check_sample(root, rel, known.get(rel), full=False) for rel in wanted]
    slow = [n for n, outcome in enumerate(checked) if isinstance(outcome, tuple) and len(outcome) == 3]
    if slow:
        with ThreadPoolExecutor(max_workers=min(8, len(slow))) as pool:
            for n, outcome in zip(slow, pool.map(lambda n: _check_sample(root, *checked[n][:2]), slow)):
                checked[n] = outcome
    for rel, outcome in zip(wanted, checked):
        if isinstance(outcome, Exception):
            skipped[str(getattr(outcome, "rel", rel))] = str(outcome)
            log.warning("skipping %s", outcome)
            continue
        rel, doc = outcome
        rels.append(rel)
        docs.append(doc)
    if not rels:
        reasons = "; ".join(f"{r}: {why}" for r, why in list(skipped.items())[:3])
        raise SyncdError(f"run '{key}': no usable samples to annotate" + (f" ({reasons})" if reasons else ""))

    def schema_for(some_docs):
        return build_schema(some_docs, label_schema, label_field=label_field, label_type=label_type,
                            classes=classes, attributes=attributes, mask_targets=mask_targets,
                            allow_additions=allow_additions, allow_deletions=allow_deletions,
                            allow_label_edits=allow_label_edits, allow_index_edits=allow_index_edits,
                            allow_spatial_edits=allow_spatial_edits)
    try:
        schema = schema_for(docs)
    except SchemaError as whole:
        # A field whose existing labels are unusable in a few samples (e.g. an unknown _cls)
        # should cost those samples, not the run: find them, skip them with the reason, retry.
        # An error the request makes on its own (no classes for a new field, a bad type...) is
        # about the request, not a sample file: say so without naming a file.
        try:
            schema_for([])
        except SchemaError as alone:
            if str(alone) == str(whole):
                raise whole from None
        bad = {}
        for rel, doc in zip(rels, docs):
            try:
                schema_for([doc])
            except SchemaError as e:
                bad[rel] = f"{Path(root) / rel}.json: {e}"
        if len(rels) == 1 and bad:
            raise SchemaError(next(iter(bad.values()))) from None
        if not bad or len(bad) == len(rels):
            raise whole
        for rel, why in bad.items():
            skipped[rel] = why
            log.warning("skipping %s", why)
        keep = [i for i, rel in enumerate(rels) if rel not in bad]
        rels, docs = [rels[i] for i in keep], [docs[i] for i in keep]
        schema = schema_for(docs)
    videos = [r for r in rels if is_video(r)]
    frames = {}
    for n, rel in enumerate(videos):
        frames[rel] = list(check_frame_settings(_per_video(frame_start, rel, n, "frame_start"),
                                                _per_video(frame_stop, rel, n, "frame_stop"),
                                                _per_video(frame_step, rel, n, "frame_step")))
    # a frame step over existing tracks costs that video (named, with the field), not the run
    for rel in videos:
        try:
            check_step_with_tracks(docs[rels.index(rel)], schema, frames[rel][2])
        except SyncdError as e:
            skipped[rel] = f"{Path(root) / rel}: {e}"
            log.warning("skipping %s", skipped[rel])
            i = rels.index(rel)
            del rels[i], docs[i]
            frames.pop(rel)
    videos = [rel for rel in videos if rel in frames]  # (those still planned)
    if not rels:
        reasons = "; ".join(f"{r}: {why}" for r, why in list(skipped.items())[:3])
        raise SyncdError(f"run '{key}': no usable samples to annotate ({reasons})")
    nonce = secrets.token_hex(4)
    batches = []
    for index, group in enumerate(_batch(rels, videos, task_size)):
        batches.append({"index": index, "name": f"syncd {key} #{index + 1} [{nonce}]", "samples": group,
                        "task_id": None, "state": "planned", "rq_id": None, "jobs": []})
    config = {
        "schema": {name: fs.to_json() for name, fs in schema.items()},
        "segment_size": segment_size, "task_size": task_size, "task_assignee": task_assignee,
        "job_assignees": as_list(job_assignees), "job_reviewers": as_list(job_reviewers),
        "project_name": project_name or None, "project_id": project_id, "organization": organization or None,
        "image_quality": image_quality, "cleanup": bool(cleanup), "rule": rule_name,
        "trigger_tag": trigger_tag, "done_tag": done_tag, "nonce": nonce, "url": url,
        "share_root": share_root or None, "frames": frames,
    }
    # Which samples already carry labels of the run's fields: only those are read again and
    # exported at upload (a run of new, unlabelled samples skips that pass entirely).
    labelled = [rel for rel, doc in zip(rels, docs) if _carries_labels(doc, schema)]
    # Media hashes: an upload's multipart stream hashes the bytes it sends. Videos uploaded by
    # TUS (which does not hash) are hashed in the background from here on; with zero copy
    # (nothing is read here, CVAT reads the share) each batch's media are hashed while CVAT
    # takes them (``upload._send_data``). Either way they are recorded with each batch's last
    # write (hashing 43 MB here delayed the first CVAT call by ~0.1 s).
    zero_copy = share_names(root, [], share_root) is not None
    if videos and not zero_copy:
        hashing.start(root, key, videos)
    try:
        run = store.create(key, config, status="planned", project=None, batches=batches, sent={},
                           hashes={}, merged=[], flagged={}, skipped=skipped, samples=rels,
                           labelled=labelled)
    except BaseException:
        hashing.forget(root, key)
        raise
    note_planned(root, run)
    return run


def _carries_labels(doc: dict, fields) -> bool:
    for name in fields:
        if name.startswith("frames."):
            sub = name[len("frames."):]
            frames = doc.get("frames")
            if isinstance(frames, dict) and any(isinstance(f, dict) and f.get(sub) is not None
                                                for f in frames.values()):
                return True
        elif doc.get(name) is not None:
            return True
    return False


def _check_sample(root, rel: str, doc: dict | None = None, *, full: bool = True):
    """(rel, sample doc) of a usable sample, or the MediaError/SampleFileError (with ``.rel``)
    saying why it is skipped. ``doc``: the sample file, if the caller read it. The media's
    content hash is taken later, while the run uploads (see ``hashing``).

    ``full=False``: only the cheap checks; a sample that needs its media decoded (or its
    metadata written) comes back as ``(rel, doc, None)``, for a second call with ``full``."""
    try:
        if doc is None:
            rel = dataset.safe_rel(root, rel)
        # else: the caller read the sample file through dataset.read_sample, which checked
        # (and normalized) this very path a moment ago
        if not dataset.is_media(rel):
            raise MediaError(f"{rel}: not a media file syncd handles")
        media = os.path.join(root, rel)  # (os.path: this runs for every sample of a run)
        try:
            st = os.stat(media)
        except OSError:
            st = None
        if st is None or not stat.S_ISREG(st.st_mode):
            raise MediaError(f"{media}: no such media file")
        if doc is None:
            doc = dataset.read_safe(root, rel)  # (rel: safe_rel's answer, above)
        if is_video(rel) or not _metadata_matches(doc.get("metadata"), st) or not os.access(media, os.R_OK):
            if not full:
                return rel, doc, None
            metadata = compute_metadata(media)  # also refuses media that cannot be decoded
            if not isinstance(doc.get("metadata"), dict) or "_cls" not in doc["metadata"]:
                # like FiftyOne's compute_metadata() before annotate(): the sample gains its metadata
                doc = dataset.update_sample(root, rel, lambda d: d.update(metadata=d.get("metadata") or metadata))
        return rel, doc
    except (MediaError, SampleFileError) as e:
        e.rel = rel
        return e


def _metadata_matches(metadata, st: os.stat_result) -> bool:
    """Whether the sample's stored image metadata still describes the file, so the decode that
    catches truncated or corrupt pixels can be skipped (it was ~0.3-0.5 ms of a 640x480 JPEG,
    the largest part of planning 1000 samples).

    The trade-off: metadata is written after a successful decode (by ``compute_metadata``, the
    daemon's discovery or ``syncd tag``), and a file truncated or replaced since then almost
    always has another size, so it still gets the full check. What this does not catch is a
    same-size in-place corruption, or metadata a user typed in by hand; CVAT then refuses the
    task's data and the run fails with the server's message
    naming the file, instead of skipping that one sample (fakecvat refuses an upload cut short,
    by its missing end marker, not one corrupted in place). Videos always get the full check.
    """
    return (isinstance(metadata, dict) and metadata.get("_cls") == "ImageMetadata"
            and type(metadata.get("size_bytes")) is int and metadata["size_bytes"] == st.st_size
            and st.st_size > 0 and isinstance(metadata.get("width"), int) and metadata["width"] > 0
            and isinstance(metadata.get("height"), int) and metadata["height"] > 0)


def _per_video(value, rel: str, n: int, name: str):
    if isinstance(value, dict):
        return value.get(rel)
    if isinstance(value, (list, tuple)):
        if n >= len(value):
            raise SyncdError(f"{name}: {len(value)} value(s) given for more videos ({rel} is video #{n + 1})")
        return value[n]
    return value


def _batch(rels: list[str], videos: list[str], task_size: int | None) -> list[list[str]]:
    """Images share tasks of up to task_size; every video (``videos``: those of ``rels``, in
    order) gets a task of its own."""
    video_set = set(videos)
    images = [r for r in rels if r not in video_set]
    size = task_size or len(images) or 1
    out = [images[i:i + size] for i in range(0, len(images), size)]
    return out + [[v] for v in videos]
