"""Content hashes of a run's media (``run["hashes"]``), computed while the run uploads.

A run records the content hash of each medium (XXH3-128, ``media_metadata.content_hash``) so
that loading can flag media changed while in annotation (``common.media_changed``), and beside
it the file's stat fingerprint, which spares loading from reading the file again while it is
unchanged (``syncd.fingerprint``). Hashing 1000 640x480 JPEGs (~43 MB) is ~2 ms of CPU plus
reading them. Where the files are uploaded, the upload hashes the very bytes it sends
(``MultipartStream``), so nothing is read twice: those digests reach ``collect`` as ``sent``.
Where nothing is read by syncd (zero copy: CVAT reads the share), each batch's media are hashed
in a background thread while CVAT takes them (``start``, ``THREADS``, called by
``upload._send_data``); videos uploaded by TUS (whose chunks are not hashed) are hashed in the
background from the moment ``plan_run`` records the run. Either way each batch, when it is recorded as
"annotating", takes its hashes (``collect``) into that same record write.

(Background hashing for every run, when it was sha256, cost ~15 % of a 1000-image upload: its
threads' GIL hand-offs slowed the sending thread, and their CPU competed with a CVAT on the same
host.)

If the process ends before a batch is finished (crash, or a daemon restarted), nothing is lost:
``collect`` hashes whatever it was not handed, from disk, before the batch's final write.
"""
from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor

from ..errors import MediaError
from ..media_metadata import hash_file

log = logging.getLogger("syncd.ops")

# Threads hashing a run's media in the background while it plans and uploads. One: its reads
# and XXH3 run without the GIL, but every file still costs it a few GIL hand-overs, and more
# threads slowed the planning thread and took CPU from a CVAT on the same host. Zero copy of
# 1000 JPEGs, 8 runs each, alternated: 4 threads 0.063-0.101 s, 2 threads 0.058-0.087 s,
# 1 thread 0.055-0.084 s (medians ~0.077 / 0.068 / 0.062).
THREADS = 1
# Threads hashing what ``collect`` was not handed (after a crash, or a restarted daemon): the
# caller waits, and the files may have to come from disk, so several reads are in flight.
COLLECT_THREADS = 4

_jobs: dict[tuple[str, str], dict[str, Future]] = {}
_lock = threading.Lock()


Hashed = tuple  # (content hash, stat fingerprint or None): what a run records of one medium


def _job_key(root, key: str) -> tuple[str, str]:
    return os.path.realpath(root), key


def start(root, key: str, rels: list[str]) -> None:
    """Begin hashing media of the run in the background (added to any job of the key not yet
    collected: each batch of a zero-copy run starts its own as it is sent)."""
    if not rels:
        return
    # Chunks, not one task per file: submitting 1000 tasks to busy threads cost ~60 ms of
    # GIL hand-offs. Chunks are taken in run order, so the first batch's hashes come first.
    size = max(1, min(CHUNK, -(-len(rels) // THREADS)))
    pool = ThreadPoolExecutor(max_workers=min(THREADS, len(rels)), thread_name_prefix="syncd-hash")
    futures = {}
    for i in range(0, len(rels), size):
        chunk = rels[i:i + size]
        future = pool.submit(_hash_all, str(root), chunk)
        futures.update(dict.fromkeys(chunk, future))
    pool.shutdown(wait=False)  # the threads end once the queue is done
    with _lock:
        _jobs.setdefault(_job_key(root, key), {}).update(futures)


CHUNK = 64


def _hash_all(root: str, rels: list[str]) -> dict[str, Hashed | MediaError]:
    out: dict[str, Hashed | MediaError] = {}
    for rel in rels:
        try:
            out[rel] = hash_file(os.path.join(root, rel))
        except MediaError as e:
            out[rel] = e
    return out


def collect(root, key: str, rels: list[str], have: dict | None = None,
            sent: dict | None = None) -> dict[str, Hashed]:
    """{rel: (hash, fingerprint)} of ``rels`` not already in ``have``: those the upload hashed
    as it sent them (``sent``), then the background job's, else hashed now. A file that cannot be read gets
    no hash (its sample was sent; loading then reports it deleted or unreadable rather than
    comparing hashes)."""
    have = have or {}
    sent = sent or {}
    known = {rel: sent[rel] for rel in rels if rel not in have and rel in sent}
    todo = [rel for rel in rels if rel not in have and rel not in known]
    with _lock:
        job = _jobs.get(_job_key(root, key), {})
        futures = {rel: job.pop(rel) for rel in todo if rel in job}
        for rel in known:
            job.pop(rel, None)
        if not job:
            _jobs.pop(_job_key(root, key), None)
    missing = [rel for rel in todo if rel not in futures]
    results: dict = {}
    for future in set(futures.values()):
        results.update(future.result())
    if missing:
        with ThreadPoolExecutor(max_workers=COLLECT_THREADS, thread_name_prefix="syncd-hash") as pool:
            for part in pool.map(lambda c: _hash_all(str(root), c),
                                 [missing[i:i + CHUNK] for i in range(0, len(missing), CHUNK)]):
                results.update(part)
    out = dict(known)
    for rel in todo:
        value = results.get(rel)
        if isinstance(value, tuple):
            out[rel] = value
        else:
            log.warning("no content hash for %s: %s", rel, value)
    return out


def forget(root, key: str) -> None:
    """Drop a job whose run will not be finished by this process (e.g. planning failed)."""
    with _lock:
        futures = _jobs.pop(_job_key(root, key), {})
    for f in set(futures.values()):
        f.cancel()
