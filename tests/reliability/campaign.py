"""Shared machinery of the reliability campaigns (tests/reliability and tools/campaign.py).

Real parts only: ``fakecvat serve --data-dir`` and ``python -m syncd run ROOT`` run as
subprocesses (so either can be killed with SIGKILL), a dataset of real JPEGs and MPEG-4 videos
on disk, and an annotator thread that plays CVAT's users through fakecvat's control API (which
fault injection never touches).

What a campaign proves is checked at the end by :func:`check`, from the sample files and from
fakecvat's state dump, against what the dataset held before and what the annotator drew:

- every tagged sample ends in exactly one CVAT task (no duplicate task, no empty orphan task);
- every drawn label arrives exactly once, every label the sample carried before is still there;
- no sample file is corrupt or lost a key it had; the trigger tag became the done tag.

The annotator draws a deterministic set of boxes per media *name*, so the expected labels of a
sample follow from its name alone, whatever task, job or frame it ended up in.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests

from fakecvat import FakeCVATProcess

REPO = Path(__file__).resolve().parents[2]
W, H = 64, 48                  # image and video frame size
VIDEO_FRAMES = 6
VIDEO_DRAWN_FRAMES = (0, 2)    # CVAT frames of a video the annotator draws a box on
IMAGE_TAG, VIDEO_TAG, DONE_TAG = "requires_annotation", "requires_video", "annotated"
DRAWN_IMAGE_LABELS = ("cat", "bird")   # prior labels are "dog": drawn ones are told apart
CONTROL_TIMEOUT = 10.0

CONFIG = """\
[cvat]
url = "{url}"
poll_interval = {poll}

[[rule]]
name = "boxes"
tag = "{image_tag}"
done_tag = "{done_tag}"
label_field = "ground_truth"
label_type = "detections"
classes = ["cat", "dog", "bird"]
batch_window = {window}
task_size = {task_size}
segment_size = {segment_size}
job_assignees = ["admin"]

[[rule]]
name = "clips"
tag = "{video_tag}"
done_tag = "{done_tag}"
label_field = "frames.detections"
label_type = "detections"
classes = ["car"]
batch_window = {window}
job_assignees = ["admin"]
"""


def log(msg: str) -> None:
    print(f"[campaign {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def wait_for(pred, timeout: float, step: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(step)


# ---------------------------------------------------------------------------------------------
# The dataset


def _oid(seed: str) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()[:24]


def prior_detection(rel: str) -> dict:
    return {"_id": {"$oid": _oid("prior:" + rel)}, "_cls": "Detection", "label": "dog",
            "bounding_box": [2 / W, 3 / H, 10 / W, 12 / H], "confidence": None, "index": None,
            "attributes": {}, "tags": []}


def make_video(path: Path, frames: int = VIDEO_FRAMES, seed: int = 0) -> None:
    import av
    import numpy as np
    rng = np.random.default_rng(seed)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        for i in range(frames):
            img = np.full((H, W, 3), (i * 20 + seed * 7) % 255, dtype=np.uint8)
            img[rng.integers(0, H), :] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def release(root: Path, docs: dict[str, dict]) -> None:
    """Write the sample files of ``docs`` (tagged): the daemon sees new work."""
    for rel, doc in docs.items():
        tmp = root / (rel + ".json.tmp")
        tmp.write_text(json.dumps(doc, indent=1))
        os.replace(tmp, root / (rel + ".json"))


def make_sample(root: Path, i: int, video: bool, rng: random.Random) -> tuple[str, dict]:
    """Medium number ``i`` on disk (a JPEG, or an MPEG-4 video) and its tagged sample dict (not
    written); every other image already carries a label."""
    from PIL import Image
    sub = f"cam{i % 3}"
    rel = f"{sub}/clip_{i:04d}.mp4" if video else f"{sub}/img_{i:04d}.jpg"
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if video:
        make_video(path, seed=i)
    else:
        Image.new("RGB", (W, H), (rng.randrange(256), (i * 37) % 256, 90)).save(path, format="JPEG")
    doc = {"filepath": rel, "tags": [VIDEO_TAG if video else IMAGE_TAG, "keep_me"],
           "camera": sub, "notes": {"n": i, "source": "campaign"}}
    if not video and i % 2 == 0:
        doc["ground_truth"] = {"_cls": "Detections", "detections": [prior_detection(rel)]}
    return rel, doc


def make_dataset(root: Path, n_samples: int, n_videos: int = 1, seed: int = 0) -> dict[str, dict]:
    """``n_samples`` media (``n_videos`` of them videos) with tagged sample files written.
    Returns {rel: the sample dict as written}."""
    rng = random.Random(seed)
    docs = dict(make_sample(root, i, i >= n_samples - n_videos, rng) for i in range(n_samples))
    release(root, docs)
    return docs


def write_config(root: Path, url: str, *, poll: float = 0.5, window: float = 0.3,
                 task_size: int = 20, segment_size: int = 8) -> None:
    (root / "syncd.toml").write_text(CONFIG.format(
        url=url, poll=poll, window=window, task_size=task_size, segment_size=segment_size,
        image_tag=IMAGE_TAG, video_tag=VIDEO_TAG, done_tag=DONE_TAG))


def drawn_boxes(name: str) -> list[tuple[str, tuple[int, int, int, int]]]:
    """What the annotator draws on the image called ``name``: (label, (x1, y1, x2, y2)) pixels."""
    n = 1 + int(hashlib.sha256(name.encode()).hexdigest(), 16) % 3
    return [(DRAWN_IMAGE_LABELS[k % 2], (4 + 12 * k, 5 + 8 * k, 14 + 12 * k, 15 + 8 * k))
            for k in range(n)]


VIDEO_BOX = (6, 7, 20, 19)


# ---------------------------------------------------------------------------------------------
# Processes


class FakeCVATProc(FakeCVATProcess):
    """``fakecvat serve --data-dir DIR`` (fakecvat's :class:`~fakecvat.FakeCVATProcess`): the
    first start picks a free port and every restart keeps it; stderr of all lives is appended
    to ``log_path``. Adds the control-API shortcuts the campaigns poll."""

    def __init__(self, data_dir: Path, log_path: Path, port: int | None = None):
        super().__init__(port=port or 0, data_dir=data_dir, log_path=log_path, threads=8)

    # -- control API (never faulted) ---------------------------------------------------------
    def control(self, method: str, path: str, **kw):
        kw.setdefault("timeout", CONTROL_TIMEOUT)
        return super().control(method, path, **kw)

    def state(self) -> dict:
        return self.control("GET", "/_fakecvat/state")["tables"]

    def fault_stats(self) -> dict:
        return self.control("GET", "/_fakecvat/faults")


class DaemonProc:
    """``python -m syncd run ROOT``; stderr appended to one log file across lives."""

    def __init__(self, root: Path, url: str, log_path: Path, timeout: str = "1"):
        self.log_path = Path(log_path)
        env = dict(os.environ, CVAT_URL=url, CVAT_USERNAME="admin", CVAT_PASSWORD="admin",
                   SYNCD_CVAT_TIMEOUT=timeout, PYTHONPATH=str(REPO))
        for name in ("CVAT_TOKEN", "NOTIFY_SOCKET", "FIFTYONE_CVAT_URL"):
            env.pop(name, None)
        with open(self.log_path, "ab") as logf:
            self.proc = subprocess.Popen([sys.executable, "-m", "syncd", "run", str(root)],
                                         env=env, stdout=subprocess.DEVNULL, stderr=logf,
                                         stdin=subprocess.DEVNULL, cwd=REPO)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                return self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode


# ---------------------------------------------------------------------------------------------
# The annotator


class Annotator(threading.Thread):
    """Plays the annotators: once syncd has assigned a job, draws the boxes for its frames and
    completes it. Survives fakecvat being down. Never draws twice on a job: it looks for its own
    labels in the job's annotations first (an unacknowledged write may or may not have landed)."""

    def __init__(self, server: FakeCVATProc, period: float = 0.4):
        super().__init__(daemon=True, name="annotator")
        self.server, self.period = server, period
        self.halt = threading.Event()
        self.drawn_jobs: set[int] = set()
        self.completed: set[int] = set()
        self.errors = 0

    def run(self) -> None:
        while not self.halt.is_set():
            try:
                self._round()
            except (requests.RequestException, ValueError):
                self.errors += 1  # server down or restarting: look again later
            self.halt.wait(self.period)

    def stop(self) -> None:
        self.halt.set()
        self.join(15)

    def _round(self) -> None:
        tables = self.server.state()
        tasks, anns = tables.get("tasks", {}), tables.get("annotations", {})
        for jid, job in tables.get("jobs", {}).items():
            jid = int(jid)
            if not job.get("assignee_id") or job.get("state") == "completed" or jid in self.completed:
                continue
            task = tasks.get(str(job["task_id"])) or {}
            frames = ((task.get("data") or {}).get("frames")) or []
            if not frames:
                continue
            mine = [s for s in (anns.get(str(jid)) or {}).get("shapes", [])
                    if s.get("source") == "manual" and s.get("frame") is not None]
            if not self._has_drawn(tables, mine) and jid not in self.drawn_jobs:
                body = {"shapes": self._shapes(task, job, frames), "mode": "create"}
                self.server.control("POST", f"/_fakecvat/jobs/{jid}/annotations", json=body)
            self.drawn_jobs.add(jid)
            self.server.control("POST", f"/_fakecvat/jobs/{jid}/complete")
            self.completed.add(jid)

    @staticmethod
    def _has_drawn(tables, shapes) -> bool:
        labels = tables.get("labels", {})
        names = {(labels.get(str(s.get("label_id"))) or {}).get("name") for s in shapes}
        return bool(names & {*DRAWN_IMAGE_LABELS, "car"})

    @staticmethod
    def _shapes(task: dict, job: dict, frames: list[dict]) -> list[dict]:
        out = []
        video = bool((task.get("data") or {}).get("video")) or task.get("mode") == "interpolation"
        for f in range(job["start_frame"], job["stop_frame"] + 1):
            if video:
                boxes = [("car", VIDEO_BOX)] if f in VIDEO_DRAWN_FRAMES else []
            else:
                boxes = drawn_boxes(frames[f]["name"].rsplit("/", 1)[-1])
            for label, pts in boxes:
                out.append({"type": "rectangle", "frame": f, "label": label,
                            "points": [float(p) for p in pts], "source": "manual"})
        return out


# ---------------------------------------------------------------------------------------------
# Progress and invariants


def read_samples(root: Path, rels) -> dict[str, dict | None]:
    out = {}
    for rel in rels:
        try:
            out[rel] = json.loads((root / (rel + ".json")).read_text())
        except (OSError, ValueError):
            out[rel] = None
    return out


def done_count(root: Path, rels) -> int:
    return sum(1 for doc in read_samples(root, rels).values()
               if doc and DONE_TAG in (doc.get("tags") or []))


def _px(bbox) -> tuple[int, int, int, int]:
    x, y, w, h = bbox
    return (round(x * W), round(y * H), round((x + w) * W), round((y + h) * H))


def check(root: Path, originals: dict[str, dict], tables: dict) -> dict:
    """The campaign's invariants; returns figures with a list of ``problems`` (empty = pass)."""
    problems: list[str] = []
    fig = {"samples": len(originals), "tasks": 0, "empty_tasks": 0, "duplicate_tasks": 0,
           "missing_tasks": 0, "labels_expected": 0, "labels_found": 0, "duplicates": 0,
           "lost": 0, "corrupt": 0, "keys_lost": 0, "runs_failed": 0}
    # -- one task per sample
    where: dict[str, list[int]] = {}
    for tid, task in tables.get("tasks", {}).items():
        if not str(task.get("name", "")).startswith("syncd "):
            continue
        fig["tasks"] += 1
        frames = ((task.get("data") or {}).get("frames")) or []
        if not frames:
            fig["empty_tasks"] += 1
            problems.append(f"task {tid} ({task['name']}) has no data")
        names = {f["name"].rsplit("/", 1)[-1] for f in frames}
        if (task.get("data") or {}).get("video"):
            names = {n for n in [(task["data"]["video"] or {}).get("path", "")]} | names
        for name in names:
            where.setdefault(name.rsplit("/", 1)[-1], []).append(int(tid))
    for rel in originals:
        base = rel.rsplit("/", 1)[-1]
        n = len(set(where.get(base, [])))
        if n == 0 and not rel.endswith(".mp4"):
            fig["missing_tasks"] += 1
            problems.append(f"{rel}: in no task")
        elif n > 1:
            fig["duplicate_tasks"] += 1
            problems.append(f"{rel}: in {n} tasks {sorted(set(where[base]))}")
    video_tasks = sum(1 for t in tables.get("tasks", {}).values()
                      if str(t.get("name", "")).startswith("syncd clips-") and (t.get("data") or {}).get("frames"))
    n_videos = sum(1 for rel in originals if rel.endswith(".mp4"))
    if video_tasks != n_videos:
        fig["duplicate_tasks" if video_tasks > n_videos else "missing_tasks"] += abs(video_tasks - n_videos)
        problems.append(f"{video_tasks} video tasks for {n_videos} videos")
    # -- sample files and labels
    for rel, doc in read_samples(root, originals).items():
        orig = originals[rel]
        if doc is None:
            fig["corrupt"] += 1
            problems.append(f"{rel}: sample file missing or not JSON")
            continue
        for key, value in orig.items():
            if key in ("tags", "ground_truth", "frames"):
                continue
            if doc.get(key) != value:
                fig["keys_lost"] += 1
                problems.append(f"{rel}: key {key!r} was {value!r}, now {doc.get(key)!r}")
        tags = doc.get("tags") or []
        trigger = VIDEO_TAG if rel.endswith(".mp4") else IMAGE_TAG
        if DONE_TAG not in tags or trigger in tags or "keep_me" not in tags:
            problems.append(f"{rel}: tags {tags}")
        _check_labels(rel, orig, doc, fig, problems)
    for key, rec in _run_records(root).items():
        if rec.get("status") == "failed":
            fig["runs_failed"] += 1
            problems.append(f"run {key} failed")
    fig["problems"] = problems
    return fig


def _check_labels(rel: str, orig: dict, doc: dict, fig: dict, problems: list[str]) -> None:
    if rel.endswith(".mp4"):
        frames = doc.get("frames") or {}
        want = {str(f + 1): [("car", VIDEO_BOX)] for f in VIDEO_DRAWN_FRAMES}
        got = {n: [(d.get("label"), _px(d["bounding_box"]))
                   for d in ((fr.get("detections") or {}).get("detections") or [])]
               for n, fr in frames.items() if isinstance(fr, dict)}
        for n in set(want) | {n for n, v in got.items() if v}:
            _compare(f"{rel} frame {n}", want.get(n, []), got.get(n, []), fig, problems)
        return
    found = ((doc.get("ground_truth") or {}).get("detections")) or []
    ids = [(d.get("_id") or {}).get("$oid") for d in found]
    if len(set(ids)) != len(ids):
        fig["duplicates"] += len(ids) - len(set(ids))
        problems.append(f"{rel}: repeated label ids")
    prior = ((orig.get("ground_truth") or {}).get("detections")) or []
    for p in prior:
        fig["labels_expected"] += 1
        hits = [d for d in found if d.get("_id") == p["_id"]]
        fig["labels_found"] += min(len(hits), 1)
        if not hits or hits[0].get("label") != p["label"]:
            fig["lost"] += 1
            problems.append(f"{rel}: prior label {p['_id']} lost or changed")
    prior_ids = {p["_id"]["$oid"] for p in prior}
    rest = [(d.get("label"), _px(d["bounding_box"])) for d in found
            if (d.get("_id") or {}).get("$oid") not in prior_ids]
    _compare(rel, drawn_boxes(rel.rsplit("/", 1)[-1]), rest, fig, problems)


def _compare(where: str, want: list, got: list, fig: dict, problems: list[str]) -> None:
    fig["labels_expected"] += len(want)
    left = list(got)
    for item in want:
        if item in left:
            left.remove(item)
            fig["labels_found"] += 1
        else:
            fig["lost"] += 1
            problems.append(f"{where}: drawn label {item} lost")
    if left:
        fig["duplicates"] += len(left)
        problems.append(f"{where}: unexpected/duplicated labels {left}")


def retries_in(log_text: str) -> int:
    return len(re.findall(r"; retry \d+/\d+", log_text))


def print_figures(title: str, fig: dict) -> None:
    shown = {k: v for k, v in fig.items() if k != "problems"}
    log(f"{title}: " + ", ".join(f"{k}={v}" for k, v in shown.items()))
    for p in fig.get("problems", [])[:30]:
        log(f"  PROBLEM {p}")


# ---------------------------------------------------------------------------------------------
# The campaigns


def fault_rules(fraction: float, seed: int, timeout: float) -> list[dict]:
    """Fault rules whose union hits about ``fraction`` of CVAT calls. Each rule rolls its own
    seeded die, so the per-rule share is chosen to make the combined rate ``fraction``."""
    slow = timeout + 0.4
    generic = [
        {"status": 500},
        {"status": 502},
        {"status": 502, "retry_after": 1},
        {"status": 503},
        {"status": 503, "retry_after": 1},
        {"status": 429, "retry_after": 1},
        {"status": 429},
        {"latency": slow},                                  # slow answer: the client times out
        {"latency": slow, "phase": "after"},                # done on the server, client times out
        {"drop": True, "phase": "after", "method": "POST"},  # done, answer lost: duplicate maker
        {"drop": True, "phase": "after", "method": "PUT"},
        {"drop": True, "phase": "after", "method": "PATCH"},
    ]
    share = 1 - (1 - fraction) ** (1 / len(generic))
    rules = [{"path": r"^/api/(?!auth/)", "fraction": share, **r} for r in generic]
    rules += [
        {"path": r"^/api/tasks/\d+/data/?$", "method": "POST", "drop": True, "fraction": share * 2},
        {"path": r"/annotations/?$", "method": "GET", "drop": True, "fraction": share * 2},
        {"path": r"/annotations/?$", "method": "GET", "drop": True, "phase": "after", "fraction": share},
    ]
    for n, r in enumerate(rules):
        r["seed"] = seed * 1000 + n
    return rules


class Campaign:
    """One fakecvat + one dataset root + the annotator, under ``workdir``."""

    def __init__(self, workdir: Path, n_samples: int, n_videos: int, seed: int, *,
                 task_size: int = 20, segment_size: int = 8, timeout: float = 1.0):
        self.workdir = Path(workdir)
        self.root = self.workdir / "data"
        self.root.mkdir(parents=True, exist_ok=True)
        self.seed, self.timeout = seed, timeout
        self.server = FakeCVATProc(self.workdir / "cvat", self.workdir / "fakecvat.log").start()
        self.originals = make_dataset(self.root, n_samples, n_videos, seed)
        write_config(self.root, self.server.url, task_size=task_size, segment_size=segment_size)
        self.daemon_log = self.workdir / "daemon.log"
        self.annotator = Annotator(self.server)
        self.daemons: list[DaemonProc] = []

    def start_daemon(self) -> DaemonProc:
        d = DaemonProc(self.root, self.server.url, self.daemon_log, timeout=str(self.timeout))
        self.daemons.append(d)
        return d

    def done(self) -> int:
        return done_count(self.root, self.originals)

    def wait_done(self, timeout: float, daemon: DaemonProc | None = None) -> None:
        def finished():
            if daemon is not None and not daemon.alive():
                raise AssertionError(f"daemon exited {daemon.proc.returncode}:\n{self.log_tail()}")
            return self.done() == len(self.originals)
        wait_for(finished, timeout, 0.5, f"all {len(self.originals)} samples merged "
                                          f"(got {self.done()})")

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.daemon_log.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def check(self) -> dict:
        return check(self.root, self.originals, self.server.state())

    def close(self) -> None:
        self.annotator.halt.set()
        for d in self.daemons:
            if d.alive():
                d.kill()
        if self.annotator.is_alive():
            self.annotator.join(15)
        self.server.stop()


def run_faults(workdir: Path, *, samples: int = 200, videos: int = 1, seed: int = 1,
               fraction: float = 0.2, timeout: float = 1.0, deadline: float = 240.0) -> dict:
    """The fault campaign: the whole loop for ``samples`` samples under injected faults."""
    c = Campaign(workdir, samples, videos, seed, timeout=timeout)
    try:
        for rule in fault_rules(fraction, seed, timeout):
            c.server.control("POST", "/_fakecvat/faults", json=rule)
        started = time.monotonic()
        c.annotator.start()
        d = c.start_daemon()
        c.wait_done(deadline, d)
        elapsed = time.monotonic() - started
        stats = c.server.fault_stats()
        c.server.control("DELETE", "/_fakecvat/faults")  # the final look must not be faulted
        assert d.stop() == 0, c.log_tail()
        fig = c.check()
        fig.update(calls=stats["stats"]["requests"], faults=stats["stats"]["faults"],
                   fault_rate=round(stats["stats"]["faults"] / max(1, stats["stats"]["requests"]), 3),
                   retries=retries_in(c.daemon_log.read_text(errors="replace")),
                   seconds=round(elapsed, 1))
        fig["faults_by_kind"] = {_kind(r): r["hits"] for r in stats["rules"]}
        fig["faults_by_kind"] = dict(sorted(fig["faults_by_kind"].items()))
        return fig
    finally:
        c.close()


def _kind(rule: dict) -> str:
    """A readable name for a fault rule: where, what, when."""
    where = ("upload" if "data" in rule["path"] else "annotations" if "annotations" in rule["path"]
             else "any")
    bits = [rule.get("method") or "*", where]
    if rule.get("status"):
        bits.append(str(rule["status"]) + ("+Retry-After" if rule.get("retry_after") is not None else ""))
    if rule.get("latency"):
        bits.append("slow")
    if rule.get("drop"):
        bits.append("drop")
    bits.append(rule.get("phase", "before"))
    return " ".join(bits)


_RECORDS: dict[Path, tuple[tuple[int, int], list]] = {}   # path -> ((mtime, size), run docs)


def _run_records(root: Path) -> dict:
    """{key: run record} read straight from ``.syncd/runs/*.json`` (one TinyDB file per run),
    without taking the store's lock: the campaign observes, it never writes. A file unchanged
    since the last look is not parsed again (the kill campaign looks every few milliseconds)."""
    out = {}
    for path in sorted((root / ".syncd" / "runs").glob("*.json")):
        try:
            st = path.stat()
            stamp = (st.st_mtime_ns, st.st_size)
            cached = _RECORDS.get(path)
            if cached and cached[0] == stamp:
                docs = cached[1]
            else:
                docs = list((json.loads(path.read_text()).get("run") or {}).values())
                _RECORDS[path] = (stamp, docs)
        except (OSError, ValueError):
            continue  # mid-replace or torn by a kill: the next look sees it whole
        for doc in docs:
            if isinstance(doc, dict):
                out[doc.get("key", path.stem)] = doc
    return out


def _tail_bytes(path: Path, offset: int) -> bytes:
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            return fh.read()
    except OSError:
        return b""
