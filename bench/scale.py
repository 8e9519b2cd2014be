"""Daemon scale: a root of many media files, ``syncd run`` as a subprocess against ``fakecvat serve``.

The root holds ``n`` annotated samples under ``archive/dNNNN/`` (1000 per directory): tiny
PNGs and their sample files, each a hard link to one file per directory (no inode, no disk per
sample; the daemon cannot tell). Figures per root size:

- ``cold_start_seconds``: process start → ``READY=1`` on NOTIFY_SOCKET (target <= 10 s at 100k);
- ``first_pass_seconds``: process start → the ``STATUS=idle after first pass`` notification
  (every sample file read once): when the daemon has really looked at the whole root;
- ``idle_rss_mb`` (target <= 150 MB at 100k), ``idle_cpu_percent`` over 60 s (10 s with
  --quick; target <= 1 %);
- an event storm: ``storm`` files (10,000; 1,000 with --quick) written as temp file + rename into
  ``incoming/`` within about a second; ``storm_seconds`` until fakecvat holds tasks whose sizes
  add up to ``storm`` with that many distinct frame names (checked: none twice, none lost).

The ratio between the large and the small root (10x the media) says how each figure grows:
about 10 is linear. ``scale.root_1m`` (1,000,000 media; 200k with --quick) runs only when named:
``python -m bench --only scale.root_1m`` (about 10 minutes, 2M directory entries made and removed).
"""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from bench.core import benchmark, ratio
from bench.daemon_procs import DaemonProc, FakeCVATProc, Notify, wait_for, write_config

# A valid 8x8 RGB PNG (Pillow-made), 75 bytes: metadata probing reads its header.
_PNG = None


def png_bytes() -> bytes:
    global _PNG
    if _PNG is None:
        import io
        from PIL import Image
        buf = io.BytesIO()
        Image.new("RGB", (8, 8), (90, 120, 150)).save(buf, format="PNG")
        _PNG = buf.getvalue()
    return _PNG


def make_root(root: Path, n: int, per_dir: int = 1000) -> None:
    """``n`` annotated samples in ``archive/dNNNN/``; hard links to one media file and one
    sample file per directory (a real file system entry each, as discover sees them)."""
    sample = json.dumps({"filepath": "x", "tags": ["annotated"],
                         "metadata": {"width": 8, "height": 8}}).encode()
    src = root / ".src"
    src.mkdir(parents=True)
    for d in range((n + per_dir - 1) // per_dir):
        dpath = root / "archive" / f"d{d:04d}"
        dpath.mkdir(parents=True)
        media, side = src / f"{d}.png", src / f"{d}.json"
        media.write_bytes(png_bytes())
        side.write_bytes(sample)
        for i in range(d * per_dir, min(n, (d + 1) * per_dir)):
            os.link(media, dpath / f"{i:07d}.png")
            os.link(side, dpath / f"{i:07d}.png.json")
    (root / "incoming").mkdir()


def drop_storm(incoming: Path, count: int) -> float:
    """Write ``count`` PNGs as temp file + rename; returns how long the drop took."""
    data = png_bytes()
    t0 = time.monotonic()
    for i in range(count):
        tmp = incoming / f".s{i:05d}.tmp"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, incoming / f"s{i:05d}.png")
    return time.monotonic() - t0


def storm_done(server: FakeCVATProc, count: int):
    tasks = server.tasks()
    if sum(t.get("size") or 0 for t in tasks) < count:
        return None
    return tasks


def frame_names(server: FakeCVATProc, tasks: list[dict]) -> list[str]:
    names = []
    for t in tasks:
        names += [f["name"] for f in server.get(f"/api/tasks/{t['id']}/data/meta")["frames"]]
    return names


def measure_root(work: Path, n: int, *, idle_seconds: float, storm: int) -> dict:
    root = work / "root"
    t0 = time.monotonic()
    make_root(root, n)
    made = time.monotonic() - t0
    write_config(root, poll=10.0, window=1.0, task_size=1000)
    out = {"media": n, "make_root_seconds": round(made, 2)}
    with FakeCVATProc() as server:
        notify = Notify()
        try:
            with DaemonProc(root, server.url, notify) as daemon:
                out["cold_start_seconds"] = notify.wait("READY=1", 600) - daemon.started
                out["first_pass_seconds"] = notify.wait("after first pass", 1200) - daemon.started
                time.sleep(2.0)  # let start-up garbage settle before the idle window
                cpu0, w0 = daemon.cpu_seconds(), time.monotonic()
                time.sleep(idle_seconds)
                cpu1, w1 = daemon.cpu_seconds(), time.monotonic()
                out["idle_cpu_percent"] = 100.0 * (cpu1 - cpu0) / (w1 - w0)
                out["idle_rss_mb"] = daemon.rss_mb()

                t_storm = time.monotonic()
                out["storm_drop_seconds"] = drop_storm(root / "incoming", storm)
                tasks = wait_for(lambda: storm_done(server, storm), 1800, 0.5, "storm tasks")
                # every run the storm made is uploaded (its tasks have data and jobs)
                wait_for(lambda: daemon.count("run planned") == daemon.count("run uploaded"),
                         600, 0.2, "runs uploaded")
                out["storm_seconds"] = time.monotonic() - t_storm
                out["storm_cpu_seconds"] = daemon.cpu_seconds() - cpu1
                out["storm_rss_mb"] = daemon.rss_mb()
                names = frame_names(server, tasks)
                out["storm_frames"] = len(names)
                out["storm_distinct_frames"] = len(set(names))
                if len(names) != storm or len(set(names)) != storm:
                    raise AssertionError(f"storm of {storm}: {len(names)} frames in tasks, "
                                         f"{len(set(names))} distinct")
        finally:
            notify.close()
    t0 = time.monotonic()
    shutil.rmtree(root, ignore_errors=True)
    out["cleanup_seconds"] = round(time.monotonic() - t0, 2)
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in out.items()}


def _targets(at_100k: bool) -> dict:
    t = {"idle_cpu_percent": ("<", 1.0)}
    if at_100k:
        t.update(cold_start_seconds=("<", 10.0), idle_rss_mb=("<", 150.0))
    return t


@benchmark("scale.root_small", repeats=1, quick_repeats=1, targets=_targets(False))
def root_small(ctx):
    """Daemon on a 10k-media root (2k with --quick): cold start, idle RSS/CPU, event storm."""
    return measure_root(ctx.tmpdir("scale-s"), ctx.pick(10_000, 2_000),
                        idle_seconds=ctx.pick(60.0, 10.0), storm=ctx.pick(10_000, 1_000))


@benchmark("scale.root_large", repeats=1, quick_repeats=1, targets=_targets(True))
def root_large(ctx):
    """Daemon on a 100k-media root (20k with --quick): cold start, idle RSS/CPU, event storm."""
    return measure_root(ctx.tmpdir("scale-l"), ctx.pick(100_000, 20_000),
                        idle_seconds=ctx.pick(60.0, 10.0), storm=ctx.pick(10_000, 1_000))


@benchmark("scale.root_1m", repeats=1, quick_repeats=1, targets=_targets(False), opt_in=True)
def root_1m(ctx):
    """Daemon on a 1M-media root (200k with --quick); run only when named (--only scale.root_1m)."""
    return measure_root(ctx.tmpdir("scale-m"), ctx.pick(1_000_000, 200_000),
                        idle_seconds=ctx.pick(60.0, 10.0), storm=ctx.pick(10_000, 1_000))


for _fig in ("first_pass_seconds", "idle_rss_mb", "storm_seconds"):
    ratio(f"scale: {_fig} large/small root (10x media; 10 = linear)",
          ("scale.root_large", _fig), ("scale.root_small", _fig),
          note="growth with root size")
    ratio(f"scale: {_fig} 1M/100k root (10x media; 10 = linear)",
          ("scale.root_1m", _fig), ("scale.root_large", _fig), note="growth with root size")
