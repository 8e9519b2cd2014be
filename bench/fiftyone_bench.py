"""FiftyOne's own CVAT integration on the same data and the same fakecvat as syncd's figures:

- ``upload.fiftyone``: ``dataset.annotate(...)`` of the same 1000 JPEGs (detections, the same
  classes), to the moment it returns (its task then has its data: ``ready_seconds`` checks);
- ``download.fiftyone``: ``dataset.load_annotations()`` of the same 1000 x 20 seeded boxes
  (``bench.download.draw_shapes``, PUT through the API as for syncd);
- ``download.fiftyone_masks``: the same with 20 instance masks per image (``label_type=
  "instances"``; FiftyOne keeps each mask inline in its database, syncd writes a PNG file).

FiftyOne runs in its own process (``bench/fo_worker.py``: usage tracking off, a non-persistent
dataset, metadata computed before the clock starts); its import and MongoDB start are not timed.
The ratios at the end compare the medians with syncd's ``upload.syncd`` / ``download.syncd``;
each target's bound (``bench/reach.py``) compares FiftyOne with the floors measured in the same
run: what a client doing nothing but the unavoidable part would reach against FiftyOne. A
speed-up target above its bound cannot be met on the machine that ran it, by syncd or any other
client.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

from .core import benchmark, env_with_pythonpath, ratio
from .upload import image_files, n_images, total_bytes, warm


def run_fiftyone(ctx, mode: str) -> dict:
    """One ``bench.fo_worker`` run against this worker's fakecvat; its figures plus its RSS."""
    server = ctx.fakecvat()
    if mode == "upload":
        warm(ctx, server)  # as for syncd's and the SDK's uploads (bench/upload.py)
    n = n_images(ctx)
    out = ctx.tmpdir("fo") / "result.json"
    env = env_with_pythonpath()
    env["FIFTYONE_DO_NOT_TRACK"] = "true"
    cmd = [sys.executable, "-m", "bench.fo_worker", mode, "--url", server.url,
           "--images", str(ctx.images(n)), "--n", str(n), "--out", str(out)]
    with open(ctx.work_dir / f"fiftyone-{mode}.log", "a") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0 or not out.exists():
        raise RuntimeError(f"FiftyOne worker {mode} exited with {code}; see {log.name} (--keep keeps it)")
    result = json.loads(out.read_text())
    result["fiftyone_rss_mb"] = usage.ru_maxrss / 1024
    result["server_rss_mb"] = server.peak_rss_mb()
    return result


@benchmark("upload.fiftyone", repeats=3, quick_repeats=1)
def upload_fiftyone(ctx):
    """FiftyOne dataset.annotate() (backend cvat) of the same 1000 JPEGs, until it returns"""
    r = run_fiftyone(ctx, "upload")
    files = image_files(ctx)
    return {"seconds": r["seconds"], "ready_seconds": r["ready_seconds"],
            "images/s": len(files) / r["seconds"], "MB/s": total_bytes(files) / 1e6 / r["seconds"],
            "fiftyone_rss_mb": r["fiftyone_rss_mb"], "server_rss_mb": r["server_rss_mb"]}


@benchmark("download.fiftyone", repeats=3, quick_repeats=1)
def download_fiftyone(ctx):
    """FiftyOne load_annotations() of the same 1000 x 20 boxes (into its MongoDB)"""
    r = run_fiftyone(ctx, "download")
    return {"seconds": r["seconds"], "shapes/s": r["shapes"] / r["seconds"],
            "samples/s": n_images(ctx) / r["seconds"], "fiftyone_rss_mb": r["fiftyone_rss_mb"],
            "server_rss_mb": r["server_rss_mb"]}


@benchmark("download.fiftyone_masks", repeats=1)
def download_fiftyone_masks(ctx):
    """FiftyOne load_annotations() of the same 1000 x 20 instance masks (into its MongoDB)"""
    r = run_fiftyone(ctx, "download_masks")
    return {"seconds": r["seconds"], "shapes/s": r["shapes"] / r["seconds"],
            "samples/s": n_images(ctx) / r["seconds"], "fiftyone_rss_mb": r["fiftyone_rss_mb"],
            "server_rss_mb": r["server_rss_mb"]}


# Each with its bound (bench/reach.py): FiftyOne's time over the floor of the same round.
ratio("upload: syncd annotate vs FiftyOne annotate() (speed-up)", ("upload.fiftyone", "seconds"),
      ("upload.syncd", "seconds"), target=20, bound=("upload.fakecvat_ready", "seconds"),
      note="both to a task whose data is ready, same images, same fakecvat")
ratio("load: syncd load_annotations vs FiftyOne load_annotations() (speed-up)", ("download.fiftyone", "seconds"),
      ("download.syncd", "seconds"), target=20, bound=("download.floor", "seconds"),
      note="syncd writes every sample file atomically and durably; FiftyOne writes to its MongoDB")
ratio("load masks: syncd load_annotations vs FiftyOne load_annotations() (speed-up)",
      ("download.fiftyone_masks", "seconds"), ("download.syncd_masks", "seconds"), target=20,
      bound=("download.floor_masks", "seconds"),
      note="1000 x 20 instance masks: syncd writes a PNG file per mask (atomically, durably); FiftyOne stores them inline")
