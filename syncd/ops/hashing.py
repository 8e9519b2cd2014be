"""Content hashes of a run's media (``run["hashes"]``), computed while the run uploads.

A run records the sha256 of each medium so that loading can flag media changed while in
annotation (``common.media_changed``). Hashing 1000 640x480 JPEGs (~43 MB) is ~0.1 s of CPU:
done inside planning it delayed every CVAT call by that much. Instead ``plan_run`` starts the
hashing in background threads (``start``) and each batch, when it is recorded as
"annotating", takes its hashes (``collect``) into that same record write. The hashes then say
what the files held while they were being sent, which is what CVAT got.

If the process ends before a batch is finished (crash, or a daemon restarted), nothing is lost:
``collect`` hashes whatever it was not handed, from disk, before the batch's final write.
"""
from __future__ import annotations

import hashlib
import logging
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from ..errors import MediaError

log = logging.getLogger("syncd.ops")

THREADS = 4  # hashlib hashes and reads without the GIL; a few threads keep the disk busy

_jobs: dict[tuple[str, str], dict[str, Future]] = {}
_lock = threading.Lock()


def sha256_file(path) -> str:
    """Hex sha256 of a file's bytes (``dataset.content_hash``, read into one reused buffer)."""
    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except OSError as exc:
        raise MediaError(f"{path}: cannot read: {exc.strerror}") from None


def _job_key(root, key: str) -> tuple[str, str]:
    return os.path.realpath(root), key


def start(root, key: str, rels: list[str]) -> None:
    """Begin hashing the run's media in the background (replacing any earlier job of the key)."""
    if not rels:
        return
    pool = ThreadPoolExecutor(max_workers=min(THREADS, len(rels)), thread_name_prefix="syncd-hash")
    futures = {rel: pool.submit(sha256_file, Path(root) / rel) for rel in rels}
    pool.shutdown(wait=False)  # the threads end once the queue is done
    with _lock:
        _jobs[_job_key(root, key)] = futures


def collect(root, key: str, rels: list[str], have: dict | None = None) -> dict[str, str]:
    """{rel: hash} of ``rels`` not already in ``have``: from the background job when it has
    them, else hashed now. A file that cannot be read gets no hash (its sample was sent; loading
    then reports it deleted or unreadable rather than comparing hashes)."""
    have = have or {}
    todo = [rel for rel in rels if rel not in have]
    with _lock:
        job = _jobs.get(_job_key(root, key), {})
        futures = {rel: job.pop(rel) for rel in todo if rel in job}
        if not job:
            _jobs.pop(_job_key(root, key), None)
    missing = [rel for rel in todo if rel not in futures]
    if missing:
        pool = ThreadPoolExecutor(max_workers=min(THREADS, len(missing)), thread_name_prefix="syncd-hash")
        futures.update({rel: pool.submit(sha256_file, Path(root) / rel) for rel in missing})
        pool.shutdown(wait=False)
    out = {}
    for rel in todo:
        try:
            out[rel] = futures[rel].result()
        except MediaError as e:
            log.warning("no content hash for %s: %s", rel, e)
    return out


def forget(root, key: str) -> None:
    """Drop a job whose run will not be finished by this process (e.g. planning failed)."""
    with _lock:
        futures = _jobs.pop(_job_key(root, key), {})
    for f in futures.values():
        f.cancel()
