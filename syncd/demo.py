"""`syncd demo`: the whole loop on an embedded fakecvat, in under a minute, with nobody typing.

1. starts an in-process fakecvat (admin + two annotators, alice and bob);
2. lays out a dataset directory with a syncd.toml whose rule auto-tags files dropped in incoming/;
3. starts the real daemon (`python -m syncd run ROOT`) as a child process;
4. drops generated images into incoming/ in two waves, and a generated video into clips/ (a
   second rule: one task per video, labels in ``frames.detections``);
5. plays the annotators through the CVAT REST API: each finds the jobs assigned to them, draws
   boxes (on a video: a short track, keyframes and an ``outside`` end), and completes the job;
6. shows the labels arriving in the sample files, live, and prints where the results are.
fakecvat is used here only as a stand-in CVAT; the daemon talks to it over HTTP like to any CVAT.
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests
from PIL import Image, ImageDraw

ANNOTATORS = [("alice", "alice-pass"), ("bob", "bob-pass")]
CLASSES = ["person", "vehicle"]
W, H = 320, 240

CONFIG = """\
[cvat]
url = "{url}"
project_name = "syncd demo"     # project webhooks tell the daemon at once when a job completes
poll_interval = 5
webhook = "127.0.0.1:0"

[[rule]]
name = "boxes"
tag = "requires_annotation"
done_tag = "annotated"
auto_tag = ["incoming/**"]
label_field = "ground_truth"
label_type = "detections"
classes = ["person", "vehicle"]
attributes = {{ occluded = {{ type = "checkbox", default = false }} }}
segment_size = 4
task_size = 50
batch_window = 1.0
job_assignees = ["alice", "bob"]
cleanup = true

[[rule]]
name = "clips"
tag = "requires_tracking"
done_tag = "annotated"
auto_tag = ["clips/**"]
label_field = "frames.detections"
label_type = "detections"
classes = ["person", "vehicle"]
batch_window = 1.0
job_assignees = ["alice", "bob"]
cleanup = true
"""
VIDEO = "clips/street.mp4"
VIDEO_FRAMES = 20


def make_image(path: Path, seed: int) -> None:
    rng = random.Random(seed)
    img = Image.new("RGB", (W, H), (rng.randrange(40, 200), rng.randrange(40, 200), rng.randrange(40, 200)))
    d = ImageDraw.Draw(img)
    for _ in range(3):
        x, y = rng.randrange(0, W - 60), rng.randrange(0, H - 60)
        d.rectangle([x, y, x + rng.randrange(20, 60), y + rng.randrange(20, 60)], fill=(rng.randrange(255), 0, 0))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name("." + path.name + ".part")  # hidden while being written, then renamed in
    img.save(tmp, format="JPEG", quality=85)
    os.replace(tmp, path)


def make_video(path: Path, frames: int = VIDEO_FRAMES) -> None:
    """A small generated clip (a block crossing the street), written hidden then renamed in."""
    import av
    import numpy as np
    w, h = W // 2, H // 2
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name("." + path.name + ".part")
    with av.open(str(tmp), "w", format="mp4") as out:
        st = out.add_stream("mpeg4", rate=10)
        st.width, st.height, st.pix_fmt = w, h, "yuv420p"
        for i in range(frames):
            img = np.full((h, w, 3), (90, 110, 90), dtype=np.uint8)
            x = 4 + i * (w - 40) // frames
            img[h // 2 - 10:h // 2 + 10, x:x + 30] = (200, 40, 40)
            for packet in st.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in st.encode():
            out.mux(packet)
    os.replace(tmp, path)


class Annotator(threading.Thread):
    """A person in CVAT: find my jobs, draw boxes on each frame, mark the job completed."""

    def __init__(self, url: str, user: str, password: str, stop: threading.Event, seed: int):
        super().__init__(daemon=True, name=f"annotator-{user}")
        self.url, self.auth, self.stop, self.rng = url, (user, password), stop, random.Random(seed)
        self.user = user
        self.jobs_done = 0
        self.boxes = 0

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.work_once()
            except requests.RequestException:
                pass
            self.stop.wait(0.3)

    def work_once(self) -> None:
        jobs = requests.get(f"{self.url}/api/jobs", params={"assignee": self.user, "page_size": "all"},
                            auth=self.auth, timeout=10).json()["results"]
        for job in jobs:
            if job["state"] == "completed":
                continue
            labels = requests.get(f"{self.url}/api/labels", params={"job_id": job["id"], "page_size": "all"},
                                  auth=self.auth, timeout=10).json()["results"]
            ids = {lb["name"]: lb["id"] for lb in labels}
            if job.get("mode") == "interpolation":
                self.track(job, ids["vehicle"])
                continue
            shapes = []
            for frame in range(job["start_frame"], job["stop_frame"] + 1):
                for _ in range(self.rng.randint(1, 3)):
                    x, y = self.rng.uniform(0, W - 80), self.rng.uniform(0, H - 80)
                    shapes.append({"type": "rectangle", "frame": frame, "label_id": ids[self.rng.choice(CLASSES)],
                                   "points": [x, y, x + self.rng.uniform(20, 80), y + self.rng.uniform(20, 80)]})
            time.sleep(0.2)  # "drawing"
            requests.put(f"{self.url}/api/jobs/{job['id']}/annotations", auth=self.auth, timeout=30,
                         json={"version": 0, "tags": [], "shapes": shapes, "tracks": []}).raise_for_status()
            requests.patch(f"{self.url}/api/jobs/{job['id']}", auth=self.auth, timeout=10,
                           json={"state": "completed"}).raise_for_status()
            self.jobs_done += 1
            self.boxes += len(shapes)

    def track(self, job: dict, label_id: int) -> None:
        """A video job: one vehicle tracked over a few frames (keyframes at both ends, CVAT
        interpolates between), then ``outside`` as it leaves the view."""
        a = job["start_frame"]
        b = min(a + 8, job["stop_frame"])
        w, h = W // 2, H // 2
        shapes = [{"type": "rectangle", "frame": a, "points": [4.0, h / 2 - 10, 34.0, h / 2 + 10]},
                  {"type": "rectangle", "frame": b, "points": [4.0 + (b - a) * (w - 40) / VIDEO_FRAMES,
                                                               h / 2 - 10, 34.0 + (b - a) * (w - 40) / VIDEO_FRAMES,
                                                               h / 2 + 10]}]
        if b < job["stop_frame"]:
            shapes.append(dict(shapes[-1], frame=b + 1, outside=True))
        time.sleep(0.2)  # "drawing"
        requests.put(f"{self.url}/api/jobs/{job['id']}/annotations", auth=self.auth, timeout=30,
                     json={"version": 0, "tags": [], "shapes": [],
                           "tracks": [{"frame": a, "label_id": label_id, "shapes": shapes}]}).raise_for_status()
        requests.patch(f"{self.url}/api/jobs/{job['id']}", auth=self.auth, timeout=10,
                       json={"state": "completed"}).raise_for_status()
        self.jobs_done += 1
        self.boxes += len(shapes)


def video_state(root: Path) -> tuple[bool, int]:
    """(merged, frames holding a tracked box) of the demo's video."""
    try:
        doc = json.loads((root / (VIDEO + ".json")).read_text())
    except (OSError, ValueError):
        return False, 0
    frames = sum(1 for f in (doc.get("frames") or {}).values()
                 if ((f or {}).get("detections") or {}).get("detections"))
    return "annotated" in doc.get("tags", []), frames


def count_states(root: Path, names: list[str]) -> dict:
    out = {"dropped": 0, "tagged": 0, "annotated": 0, "labels": 0}
    for rel in names:
        if not (root / rel).exists():
            continue
        out["dropped"] += 1
        try:
            doc = json.loads((root / (rel + ".json")).read_text())
        except (OSError, ValueError):
            continue
        tags = doc.get("tags", [])
        if "requires_annotation" in tags:
            out["tagged"] += 1
        if "annotated" in tags:
            out["annotated"] += 1
            out["labels"] += len((doc.get("ground_truth") or {}).get("detections", []))
    return out


def main(directory: str | None = None, count: int = 12, timeout: float = 55.0) -> int:
    from rich.console import Console
    from rich.live import Live
    from rich.table import Table

    from fakecvat import FakeCVAT

    console = Console(stderr=True)
    root = Path(directory or tempfile.mkdtemp(prefix="syncd-demo-"))
    root.mkdir(parents=True, exist_ok=True)
    names = [f"incoming/cam{1 + i % 2}/frame_{i:04d}.jpg" for i in range(count)]
    started = time.monotonic()
    with FakeCVAT(users=[("admin", "admin"), *ANNOTATORS]) as cvat:
        (root / "syncd.toml").write_text(CONFIG.format(url=cvat.url))
        env = dict(os.environ, CVAT_USERNAME="admin", CVAT_PASSWORD="admin", CVAT_URL=cvat.url)
        env.pop("CVAT_TOKEN", None)
        log_path = root / "syncd-demo.log"
        with open(log_path, "w") as log:
            daemon = subprocess.Popen([sys.executable, "-m", "syncd", "run", str(root)], env=env,
                                      stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        stop = threading.Event()
        annotators = [Annotator(cvat.url, u, p, stop, seed=n) for n, (u, p) in enumerate(ANNOTATORS)]
        for a in annotators:
            a.start()
        ok = False
        try:
            with Live(console=console, refresh_per_second=8, transient=False) as live:
                dropped = 0
                while time.monotonic() - started < timeout:
                    # two waves of files: half now, half a few seconds later
                    wave = count // 2 if time.monotonic() - started < 4 else count
                    while dropped < wave:
                        make_image(root / names[dropped], dropped)
                        dropped += 1
                    if not (root / VIDEO).exists():
                        make_video(root / VIDEO)
                    s = count_states(root, names)
                    s["video_done"], s["video_frames"] = video_state(root)
                    live.update(_table(s, count, annotators, time.monotonic() - started, Table))
                    if s["annotated"] == count and s["video_done"]:
                        ok = True
                        break
                    if daemon.poll() is not None:
                        break
                    time.sleep(0.25)
        finally:
            stop.set()
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(10)
            except subprocess.TimeoutExpired:
                daemon.kill()
    elapsed = time.monotonic() - started
    console.line()  # the live table may end without a newline when stderr is not a terminal
    if ok:
        console.print(f"[bold green]All {count} samples annotated and merged in {elapsed:.1f} s.[/]")
        console.print(f"Dataset:     {root}")
        console.print(f"Example:     {root / (names[0] + '.json')}")
        console.print(f"Video:       {root / (VIDEO + '.json')}")
        console.print(f"Daemon log:  {log_path}")
        print(root)
        return 0
    console.print(f"[bold red]demo did not finish in {timeout:.0f} s[/]; daemon log: {log_path}")
    try:
        console.print(log_path.read_text()[-3000:])
    except OSError:
        pass
    return 1


def _table(s: dict, count: int, annotators, elapsed: float, Table):
    t = Table(title=f"syncd demo — {elapsed:4.1f} s")
    t.add_column("stage")
    t.add_column("samples", justify="right")
    t.add_row("dropped into incoming/", f"{s['dropped']}/{count}")
    t.add_row("waiting for / in annotation", str(s["tagged"]))
    t.add_row("labels merged (tag 'annotated')", f"{s['annotated']}/{count}")
    t.add_row("boxes on disk", str(s["labels"]))
    t.add_row(f"video {VIDEO}: frames with a tracked box", str(s.get("video_frames", 0)) +
              (" (merged)" if s.get("video_done") else ""))
    for a in annotators:
        t.add_row(f"{a.user}: jobs completed", str(a.jobs_done))
    return t
