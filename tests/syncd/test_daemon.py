"""`syncd run ROOT` as a real subprocess against a real fakecvat: the whole loop (drop images →
task → annotators finish → labels merged, tag switched), lock contention, clean stops on
SIGTERM/SIGINT, sd_notify, bad files reported once, CVAT outages survived without a restart."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import requests
from PIL import Image

CONFIG = """\
[cvat]
url = "{url}"
poll_interval = {poll}
{extra_cvat}

[[rule]]
name = "boxes"
tag = "requires_annotation"
done_tag = "annotated"
auto_tag = ["incoming/**"]
label_field = "ground_truth"
label_type = "detections"
classes = ["cat", "dog"]
batch_window = 0.5
task_size = 10
cleanup = {cleanup}
"""


def write_config(root: Path, url: str, *, poll=1, extra_cvat="", cleanup="false") -> None:
    (root / "syncd.toml").write_text(CONFIG.format(url=url, poll=poll, extra_cvat=extra_cvat,
                                                   cleanup=cleanup))


def drop_image(path: Path, seed: int = 0) -> None:
    """Write a real JPEG the way careful tools do: temp file, then rename into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp"
    Image.new("RGB", (64, 48), (seed * 40 % 256, 80, 120)).save(tmp, format="JPEG")
    os.replace(tmp, path)


def wait_for(pred, timeout=30.0, step=0.1, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out waiting for {what}")


class Notify:
    """A unix datagram socket standing in for systemd's NOTIFY_SOCKET."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="sdn")  # short: AF_UNIX paths are limited to 108
        self.path = os.path.join(self.dir, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.messages: list[str] = []

    def wait(self, text: str, timeout=20.0) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in m for m in self.messages):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {text!r} on NOTIFY_SOCKET; got {self.messages}")
            self.sock.settimeout(left)
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except socket.timeout:
                pass

    def close(self):
        self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class DaemonProc:
    """``python -m syncd run ROOT`` with its stderr in a file we can read while it runs."""

    def __init__(self, root: Path, url: str, notify: Notify | None = None, *args: str):
        env = dict(os.environ, CVAT_URL=url, CVAT_USERNAME="admin", CVAT_PASSWORD="admin")
        env.pop("CVAT_TOKEN", None)
        env.pop("NOTIFY_SOCKET", None)
        if notify is not None:
            env["NOTIFY_SOCKET"] = notify.path
        self.log_path = root.parent / f"{root.name}-daemon-{time.monotonic_ns()}.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "syncd", "run", str(root), *args],
                                     env=env, stdout=subprocess.DEVNULL, stderr=self._log,
                                     stdin=subprocess.DEVNULL)

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig=signal.SIGTERM, timeout=20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        finally:
            self.close()

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()


@pytest.fixture
def notify():
    n = Notify()
    yield n
    n.close()


@pytest.fixture
def root(tmp_path):
    r = tmp_path / "data"
    r.mkdir()
    return r


@pytest.fixture
def daemons():
    started: list[DaemonProc] = []

    def start(*args, **kwargs) -> DaemonProc:
        d = DaemonProc(*args, **kwargs)
        started.append(d)
        return d

    yield start
    for d in started:
        d.close()


def api(server) -> requests.Session:
    s = requests.Session()
    s.auth = ("admin", "admin")
    s.base = server.url
    return s


def tasks_of(s) -> list[dict]:
    return s.get(s.base + "/api/tasks", params={"page_size": "all"}).json()["results"]


def annotate_and_complete(s, task_id: int, label_name="cat") -> None:
    """Play an annotator: draw one box per frame of each job, then complete the job."""
    jobs = s.get(s.base + "/api/jobs", params={"task_id": task_id, "page_size": "all"}).json()
    for job in jobs["results"]:
        labels = s.get(s.base + "/api/labels", params={"job_id": job["id"],
                                                        "page_size": "all"}).json()["results"]
        label = next(lb for lb in labels if lb["name"] == label_name)
        shapes = [{"type": "rectangle", "frame": f, "label_id": label["id"],
                   "points": [4.0, 4.0, 32.0, 24.0], "attributes": [], "occluded": False,
                   "z_order": 0, "group": 0, "source": "manual", "rotation": 0.0}
                  for f in range(job["start_frame"], job["stop_frame"] + 1)]
        r = s.put(s.base + f"/api/jobs/{job['id']}/annotations",
                  json={"version": 0, "tags": [], "shapes": shapes, "tracks": []})
        assert r.status_code == 200, r.text
        r = s.patch(s.base + f"/api/jobs/{job['id']}",
                    json={"stage": "acceptance", "state": "completed"})
        assert r.status_code == 200, r.text


def sample(root: Path, rel: str) -> dict:
    return json.loads((root / (rel + ".json")).read_text())


# ---------------------------------------------------------------------------------------------
# Service behaviour


SIGNAL_WHILE_LOGGING = """
import os, signal, sys, threading, time
from syncd import logs
from syncd.signals import SignalRelay
logs.setup("text", "INFO")
log = logs.get("t")
got = threading.Event()

def on_signal(signum):
    logs.event(log, "got signal", signal=signal.Signals(signum).name)  # takes the masking lock
    got.set()

with SignalRelay(on_signal):
    with logs._secrets_lock:  # the main thread in the middle of a log line, as the daemon was
        os.kill(os.getpid(), int(sys.argv[1]))
        time.sleep(0.3)       # the signal reaches the main thread meanwhile
    assert got.wait(10)
print("stopped cleanly")
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_landing_while_a_log_line_is_written_does_not_deadlock(sig):
    # A handler run in the interrupted main thread deadlocked here on the non-reentrant lock
    # that masks secrets in log lines; the relay's thread waits for it instead.
    out = subprocess.run([sys.executable, "-c", SIGNAL_WHILE_LOGGING, str(int(sig))],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "stopped cleanly" in out.stdout and f"signal={sig.name}" in out.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_ready_then_clean_stop_on_signal(fakecvat, root, notify, daemons, sig):
    write_config(root, fakecvat.url)
    d = daemons(root, fakecvat.url, notify)
    notify.wait("READY=1")
    assert d.proc.poll() is None
    assert d.stop(sig) == 0
    notify.wait("STOPPING=1")
    assert "daemon stopped" in d.log


def test_second_daemon_on_same_root_is_refused(fakecvat, root, notify, daemons):
    write_config(root, fakecvat.url)
    first = daemons(root, fakecvat.url, notify)
    notify.wait("READY=1")
    second = daemons(root, fakecvat.url)
    assert second.proc.wait(20) == 1
    assert "another syncd daemon holds" in second.log
    assert str(first.proc.pid) in second.log
    assert first.proc.poll() is None  # the first one is unaffected
    assert first.stop() == 0


def test_bad_config_is_refused_at_start_naming_the_key(fakecvat, root, daemons):
    write_config(root, fakecvat.url)
    text = (root / "syncd.toml").read_text().replace("task_size = 10", "task_size = -3")
    (root / "syncd.toml").write_text(text)
    d = daemons(root, fakecvat.url)
    assert d.proc.wait(20) == 2
    assert "task_size" in d.log


def test_log_never_shows_the_password(fakecvat, root, daemons):
    write_config(root, fakecvat.url)
    d = DaemonProc(root, fakecvat.url, None, "--log-format", "json")
    try:
        wait_for(lambda: "daemon ready" in d.log, what="ready")
    finally:
        d.stop()
    lines = [json.loads(line) for line in d.log.splitlines() if line.strip()]
    assert any(line["event"] == "daemon ready" for line in lines)
    assert "admin" not in json.dumps([ln for ln in lines if ln.get("event") != "daemon ready"])


# ---------------------------------------------------------------------------------------------
# The loop


def test_dropped_images_are_annotated_and_labels_merged(fakecvat, root, daemons):
    write_config(root, fakecvat.url, cleanup="true")
    s = api(fakecvat)
    d = daemons(root, fakecvat.url)
    names = [f"incoming/cam1/{i}.jpg" for i in range(3)]
    for i, rel in enumerate(names):
        drop_image(root / rel, i)
    (root / "elsewhere").mkdir()
    drop_image(root / "elsewhere" / "x.jpg")  # not under auto_tag: left alone

    tasks = wait_for(lambda: [t for t in tasks_of(s) if t.get("size") == 3], what="a task")
    assert len(tasks) == 1
    for rel in names:
        assert "requires_annotation" in sample(root, rel)["tags"]
    assert not (root / "elsewhere" / "x.jpg.json").exists()

    annotate_and_complete(s, tasks[0]["id"])

    def merged():
        docs = [sample(root, rel) for rel in names]
        return all("annotated" in doc["tags"] for doc in docs) and docs
    docs = wait_for(merged, timeout=40, what="labels merged")
    for doc in docs:
        assert "requires_annotation" not in doc["tags"]
        dets = doc["ground_truth"]["detections"]
        assert [det["label"] for det in dets] == ["cat"]
        x, y, w, h = dets[0]["bounding_box"]
        assert x == pytest.approx(4 / 64, abs=1e-3) and w == pytest.approx(28 / 64, abs=1e-3)
    wait_for(lambda: not tasks_of(s), what="cleanup deleted the task")
    assert d.proc.poll() is None
    assert d.stop() == 0


def test_bad_sample_file_reported_once_and_loop_goes_on(fakecvat, root, daemons):
    write_config(root, fakecvat.url, poll=0.3)
    drop_image(root / "broken.jpg")
    (root / "broken.jpg.json").write_text("{not json")
    (root / "incoming").mkdir()
    (root / "incoming" / "garbage.jpg").write_bytes(b"not an image at all")  # auto-tag refuses
    (root / "tagged").mkdir()
    (root / "tagged" / "garbage.jpg").write_bytes(b"not an image either")  # plan_run refuses
    (root / "tagged" / "garbage.jpg.json").write_text(json.dumps(
        {"filepath": "tagged/garbage.jpg", "tags": ["requires_annotation"]}))
    d = daemons(root, fakecvat.url)
    wait_for(lambda: "broken.jpg" in d.log, what="report")
    wait_for(lambda: "cannot plan run" in d.log and "incoming/garbage.jpg" in d.log,
             what="bad media reported")
    drop_image(root / "incoming" / "ok.jpg")  # later work still happens
    wait_for(lambda: (root / "incoming" / "ok.jpg.json").exists(), what="auto-tag")

    def reports():
        return {rel: [ln for ln in d.log.splitlines() if rel in ln]
                for rel in ("broken.jpg", "incoming/garbage.jpg", "tagged/garbage.jpg")}
    first = reports()
    time.sleep(1.5)  # several more passes: nothing is reported again
    assert reports() == first
    assert len(first["broken.jpg"]) == 1 and "bad sample file" in first["broken.jpg"][0]
    assert len(first["incoming/garbage.jpg"]) == 1
    assert not (root / "incoming" / "garbage.jpg.json").exists()
    assert (root / "broken.jpg.json").read_text() == "{not json"  # left untouched
    assert d.stop() == 0


def test_cvat_outage_backs_off_and_recovers_without_restart(fakecvat, root, daemons):
    write_config(root, fakecvat.url)
    s = api(fakecvat)
    r = s.post(fakecvat.url + "/_fakecvat/faults", json={"path": "^/api/", "status": 503})
    assert r.status_code == 201
    d = daemons(root, fakecvat.url)
    drop_image(root / "incoming" / "a.jpg")
    wait_for(lambda: "CVAT unreachable" in d.log, timeout=40, what="backoff logged")
    assert d.proc.poll() is None
    s.delete(fakecvat.url + "/_fakecvat/faults")
    wait_for(lambda: [t for t in tasks_of(s) if t.get("size") == 1], timeout=60,
             what="task after recovery")
    wait_for(lambda: "CVAT reachable again" in d.log, timeout=20, what="recovery logged")
    assert d.stop() == 0


def test_media_deleted_during_annotation_does_not_stop_the_loop(fakecvat, root, daemons):
    write_config(root, fakecvat.url)
    s = api(fakecvat)
    d = daemons(root, fakecvat.url)
    for i in range(2):
        drop_image(root / "incoming" / f"{i}.jpg", i)
    tasks = wait_for(lambda: [t for t in tasks_of(s) if t.get("size") == 2], what="a task")
    (root / "incoming" / "1.jpg").unlink()
    (root / "incoming" / "1.jpg.json").unlink()
    annotate_and_complete(s, tasks[0]["id"])
    wait_for(lambda: "annotated" in sample(root, "incoming/0.jpg")["tags"], timeout=40,
             what="surviving sample merged")
    assert not (root / "incoming" / "1.jpg.json").exists()  # no sample file resurrected
    drop_image(root / "incoming" / "2.jpg", 2)  # and the daemon keeps working
    wait_for(lambda: [t for t in tasks_of(s) if t.get("size") == 1], what="a second task")
    assert d.stop() == 0


def test_kill_9_then_restart_resumes_without_duplicates(fakecvat, root, daemons):
    write_config(root, fakecvat.url)
    s = api(fakecvat)
    # Slow task data processing down so the kill lands mid-run.
    s.put(fakecvat.url + "/_fakecvat/async", json={"mode": "seconds", "value": 1.5})
    first = daemons(root, fakecvat.url)
    names = [f"incoming/{i}.jpg" for i in range(3)]
    for i, rel in enumerate(names):
        drop_image(root / rel, i)
    wait_for(lambda: tasks_of(s), what="task creation started")
    first.proc.kill()
    first.proc.wait(10)
    second = daemons(root, fakecvat.url)
    tasks = wait_for(lambda: [t for t in tasks_of(s) if t.get("size") == 3], timeout=40,
                     what="task ready after restart")
    annotate_and_complete(s, tasks[0]["id"])
    wait_for(lambda: all("annotated" in sample(root, rel)["tags"] for rel in names), timeout=40,
             what="labels merged after restart")
    assert len(tasks_of(s)) == 1  # resumed, not duplicated
    for rel in names:
        assert len(sample(root, rel)["ground_truth"]["detections"]) == 1
    assert second.stop() == 0
