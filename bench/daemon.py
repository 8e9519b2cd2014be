"""Daemon latency: ``syncd run ROOT`` as a real subprocess against a ``fakecvat serve`` subprocess.

Two figures per trial, each trial one image dropped into ``incoming/`` (temp file + rename, as
careful tools write):

- drop → task ready: from the rename to the daemon's ``run uploaded`` log line (it is written
  once CVAT says every task of the run has its data); target p95 <= batch_window + 0.5 s;
- last job completed → labels on disk: from the PATCH that completes the task's only job
  returning, to the sample file carrying the done tag; with project webhooks (target p95 <=
  0.5 s) and without, by polling (target p95 <= poll_interval + 0.5 s).

One daemon serves all trials of a mode (a first, untimed trial warms it up and lets it register
its webhook). The log and the sample file are polled every 5 ms, which bounds the resolution.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from PIL import Image

from bench.core import benchmark
from bench.daemon_procs import DaemonProc, FakeCVATProc, Notify, summary, wait_for, write_config

BATCH_WINDOW = 1.0
POLL_INTERVAL = 2.0
STEP = 0.005


def drop_image(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp"
    Image.new("RGB", (64, 48), (seed * 37 % 256, 80, 120)).save(tmp, format="JPEG")
    os.replace(tmp, path)


def tags_of(path: Path) -> list:
    try:
        return json.loads(path.read_text()).get("tags") or []
    except (OSError, ValueError):
        return []


def complete_task(server: FakeCVATProc, task_id: int) -> None:
    """Play the annotator: one box on every frame of every job, then complete each job."""
    s, base = server.session, server.url
    jobs = server.get("/api/jobs", task_id=task_id, page_size="all")["results"]
    for job in jobs:
        labels = server.get("/api/labels", job_id=job["id"], page_size="all")["results"]
        label = next(lb for lb in labels if lb["name"] == "cat")
        shapes = [{"type": "rectangle", "frame": f, "label_id": label["id"],
                   "points": [4.0, 4.0, 32.0, 24.0], "attributes": [], "occluded": False,
                   "z_order": 0, "group": 0, "source": "manual", "rotation": 0.0}
                  for f in range(job["start_frame"], job["stop_frame"] + 1)]
        s.put(f"{base}/api/jobs/{job['id']}/annotations", timeout=60,
              json={"version": 0, "tags": [], "shapes": shapes, "tracks": []}).raise_for_status()
    for job in jobs:  # the completions last: the figure starts at the last one
        s.patch(f"{base}/api/jobs/{job['id']}", timeout=60,
                json={"stage": "acceptance", "state": "completed"}).raise_for_status()


def latency_trials(work: Path, trials: int, *, webhooks: bool) -> dict:
    """Run ``trials`` (+1 warm-up) drop→ready→complete→loaded cycles; the two series in s."""
    root = work / "root"
    root.mkdir()
    write_config(root, poll=30.0 if webhooks else POLL_INTERVAL, window=BATCH_WINDOW,
                 webhooks=webhooks)
    ready, loaded = [], []
    with FakeCVATProc() as server, DaemonProc(root, server.url, notify := Notify()) as daemon:
        try:
            notify.wait("READY=1", 60)
            for i in range(trials + 1):
                rel = f"incoming/t{i:03d}.jpg"
                drop_image(root / rel, i)
                t0 = time.monotonic()
                wait_for(lambda: daemon.count("run uploaded") > i or not daemon.alive(), 60,
                         STEP, "run uploaded")
                if not daemon.alive():
                    raise RuntimeError("daemon died:\n" + daemon.log()[-3000:])
                t_ready = time.monotonic()
                task = max(server.tasks(), key=lambda t: t["id"])
                complete_task(server, task["id"])
                t1 = time.monotonic()
                sample = root / (rel + ".json")
                wait_for(lambda: "annotated" in tags_of(sample), 60, STEP, "labels on disk")
                t_loaded = time.monotonic()
                if i:  # trial 0 warms up (imports, first login, webhook registration)
                    ready.append(t_ready - t0)
                    loaded.append(t_loaded - t1)
        finally:
            notify.close()
    return {"ready": ready, "loaded": loaded}


def _figures(series: dict, prefix: str) -> dict:
    out = {}
    for name, values in series.items():
        s = summary(values)
        out[f"{name}_p50_seconds"] = s["p50"]
        out[f"{name}_p95_seconds"] = s["p95"]
        out[f"{name}_max_seconds"] = s["max"]
    return out


@benchmark("daemon.latency_webhooks", repeats=1, quick_repeats=1,
           targets={"ready_p95_seconds": ("<", BATCH_WINDOW + 0.5),
                    "loaded_p95_seconds": ("<", 0.5)})
def latency_webhooks(ctx):
    """Daemon latency with project webhooks: drop → task ready, job completed → labels on disk."""
    series = latency_trials(ctx.tmpdir("lat-wh"), ctx.pick(50, 5), webhooks=True)
    return _figures(series, "")


@benchmark("daemon.latency_polling", repeats=1, quick_repeats=1,
           targets={"ready_p95_seconds": ("<", BATCH_WINDOW + 0.5),
                    "loaded_p95_seconds": ("<", POLL_INTERVAL + 0.5)})
def latency_polling(ctx):
    """Daemon latency without webhooks (poll_interval 2 s): same two figures."""
    series = latency_trials(ctx.tmpdir("lat-poll"), ctx.pick(50, 5), webhooks=False)
    return _figures(series, "")
