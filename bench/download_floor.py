"""The limit of a load: its bytes and nothing else (``download.floor``, ``download.floor_masks``).

What ``download.syncd`` (``download.syncd_masks``) could not beat on this machine however good
its code were: every job's annotations fetched as raw bytes (nothing parsed), and every file that
load writes (sample files, mask PNGs) written with the very bytes syncd wrote, atomically and
durably, the fastest way measured here: each old sample file read (a merge must), a temporary
file beside it (a new file, such as a mask, at its own name, as syncd writes them), one
``syncfs`` for all of them, the renames, an fsync of each directory. The
bytes come from one syncd load of the same task, untimed, on the dataset itself; the timed writes
go to a copy of the dataset's sample files as they were before that load. The share
floor/syncd says how much of a load is syncd's own work: parsing, conversion, merging, run
records and its per-group durability (a crash loses at most one group's work).
"""
from __future__ import annotations

import os
import time

from .core import benchmark, ratio
from .download import _client, annotate_and_draw, on_disk
from .upload import n_images


def _files(root: str) -> dict[str, tuple[int, int]]:
    """{relative path: (inode, mtime)} of the regular files under ``root``, syncd's state
    directory left out (run records are syncd's bookkeeping, not the load's output)."""
    out = {}
    for d, dirs, names in os.walk(root):
        dirs[:] = [x for x in dirs if x != ".syncd"]
        for name in names:
            st = os.stat(os.path.join(d, name))
            out[os.path.relpath(os.path.join(d, name), root)] = (st.st_ino, st.st_mtime_ns)
    return out


def what_a_load_writes(ctx, server, kind: str):
    """Run syncd's load of a fresh drawn task once (untimed). Returns (task ids, n shapes, the
    sample files as they were before: {rel: bytes}, what the load wrote: {rel: bytes})."""
    import syncd
    from syncd.runs import RunStore
    root, n = annotate_and_draw(ctx, server, kind=kind)
    before = _files(str(root))
    old = {rel: (root / rel).read_bytes() for rel in before if rel.endswith(".json")}
    syncd.load_annotations(str(root), "bench", client=_client(server))
    after = _files(str(root))
    written = {rel: (root / rel).read_bytes() for rel, st in after.items() if before.get(rel) != st}
    tids = [b["task_id"] for b in RunStore(str(root)).get("bench")["batches"]]
    return tids, n, old, written


def floor_load(session, url: str, tids: list[int], dest: str, written: dict[str, bytes]) -> dict:
    """The timed part: fetch, then write ``written`` under ``dest``. Returns its phases."""
    from syncd.atomic import syncfs  # (imported by the untimed load before)
    t0 = time.perf_counter()
    for tid in tids:
        jobs = session.get(f"{url}/api/jobs", params={"task_id": tid, "page_size": "all"}).json()["results"]
        for job in jobs:
            r = session.get(f"{url}/api/jobs/{job['id']}/annotations")
            r.raise_for_status()
            assert r.content
    t1 = time.perf_counter()
    renames, directories = [], set()
    for rel, data in written.items():
        path = os.path.join(dest, rel)
        directories.add(os.path.dirname(path))
        try:
            with open(path, "rb") as fh:
                fh.read()
            target = os.path.join(os.path.dirname(path), "." + os.path.basename(path) + ".tmp")
            renames.append((target, path))
        except FileNotFoundError:  # a new file (a mask) is written at its own name, as syncd does
            os.makedirs(os.path.dirname(path), exist_ok=True)
            target = path
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, data)
        os.close(fd)
    syncfs(dest)
    for tmp, path in renames:
        os.replace(tmp, path)
    for directory in directories:
        fd = os.open(directory, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
    t2 = time.perf_counter()
    return {"fetch_seconds": t1 - t0, "write_seconds": t2 - t1}


def _floor(ctx, kind: str) -> dict:
    server = ctx.fakecvat()
    tids, n, old, written = what_a_load_writes(ctx, server, kind)
    dest = str(ctx.tmpdir("floor"))
    for rel, data in old.items():  # the dataset's sample files as the load found them
        os.makedirs(os.path.dirname(os.path.join(dest, rel)), exist_ok=True)
        with open(os.path.join(dest, rel), "wb") as fh:
            fh.write(data)
    s = server.session()
    on_disk()
    with ctx.stopwatch() as sw:
        phases = floor_load(s, server.url, tids, dest, written)
    return {"seconds": sw.seconds, "shapes/s": n / sw.seconds, "samples/s": n_images(ctx) / sw.seconds,
            "files": len(written), **phases}


@benchmark("download.floor", repeats=3)
def download_floor(ctx):
    """the limit of download.syncd: its annotations fetched raw + the files it writes, durably"""
    return _floor(ctx, "rectangle")


@benchmark("download.floor_masks", repeats=1)
def download_floor_masks(ctx):
    """the limit of download.syncd_masks: the same, with its 20,000 mask PNG files"""
    return _floor(ctx, "mask")


ratio("load: syncd vs its I/O floor (share of floor)", ("download.floor", "seconds"),
      ("download.syncd", "seconds"),
      note="floor: the same annotations fetched raw and the same files written durably, nothing else")
ratio("load masks: syncd vs its I/O floor (share of floor)", ("download.floor_masks", "seconds"),
      ("download.syncd_masks", "seconds"))
