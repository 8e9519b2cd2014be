"""syncd never shows a credential, and keeps its state private.

Credentials are unique marker strings (a fresh password for fakecvat's admin, a real personal
access token, a deliberately wrong password and token), so that a leak anywhere is found by a
plain substring search. Every command a user runs (``annotate``, ``status``, ``status --json``,
``runs``, ``load``, and failing ones), a daemon at DEBUG level in text and JSON formats with a
webhook listener, and then every file below ROOT (``.syncd/`` and the sample files) are searched
for the markers and for the daemon's webhook secret. ``.syncd/`` must be 0700 and its files 0600.
A world-writable ``syncd.toml`` stops the daemon with a message that says so.
"""
from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests
from PIL import Image

ENV_KEYS = ("CVAT_URL", "CVAT_USERNAME", "CVAT_PASSWORD", "CVAT_TOKEN", "CVAT_ORGANIZATION",
            "FIFTYONE_CVAT_URL", "FIFTYONE_CVAT_USERNAME", "FIFTYONE_CVAT_PASSWORD",
            "FIFTYONE_CVAT_ORGANIZATION", "NOTIFY_SOCKET")

CONFIG = """\
[cvat]
url = "{url}"
poll_interval = 1
project_name = "secrets"
webhook = "127.0.0.1:0"

[[rule]]
name = "boxes"
tag = "requires_annotation"
done_tag = "annotated"
auto_tag = ["incoming/**"]
label_field = "ground_truth"
label_type = "detections"
classes = ["cat", "dog"]
batch_window = 0.3
task_size = 10
"""


def _env(**creds) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ENV_KEYS}
    env.update({k: v for k, v in creds.items() if v is not None})
    return env


def _syncd(*args, env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "syncd", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=120, stdin=subprocess.DEVNULL)


def _image(path: Path, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp"
    Image.new("RGB", (48, 32), (seed * 50 % 256, 80, 120)).save(tmp, format="JPEG")
    os.replace(tmp, path)


def _wait(pred, timeout=40.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


class Admin:
    def __init__(self, url: str, password: str):
        self.url, self.s = url, requests.Session()
        self.s.auth = ("admin", password)

    def get(self, path, **kw):
        r = self.s.get(self.url + path, timeout=30, **kw)
        assert r.status_code == 200, r.text
        return r.json()

    def complete_all_jobs(self) -> None:
        """Play the annotator: a box on every frame of every job, then complete it."""
        for job in self.get("/api/jobs", params={"page_size": "all"})["results"]:
            if job["state"] == "completed":
                continue
            label = self.get("/api/labels", params={"job_id": job["id"]})["results"][0]
            shapes = [{"type": "rectangle", "frame": f, "label_id": label["id"], "points": [2, 2, 20, 14],
                       "attributes": []} for f in range(job["start_frame"], job["stop_frame"] + 1)]
            r = self.s.put(f"{self.url}/api/jobs/{job['id']}/annotations", timeout=30,
                           json={"version": 0, "tags": [], "shapes": shapes, "tracks": []})
            assert r.status_code == 200, r.text
            r = self.s.patch(f"{self.url}/api/jobs/{job['id']}", json={"stage": "acceptance", "state": "completed"},
                             timeout=30)
            assert r.status_code == 200, r.text


@pytest.fixture
def cvat(fakecvat_factory):
    """A fakecvat whose admin password, and a personal access token of the admin, are markers."""
    password = f"pw-{uuid.uuid4().hex}"
    server = fakecvat_factory(users=[("admin", password), ("user1", "user1-pass")])
    s = requests.Session()
    r = s.post(server.url + "/api/auth/login", json={"username": "admin", "password": password}, timeout=30)
    assert r.status_code == 200, r.text
    token = s.post(server.url + "/api/auth/access_tokens", json={"name": "syncd", "read_only": False},
                   headers={"X-CSRFToken": s.cookies["csrftoken"]}, timeout=30).json()["value"]
    s.post(server.url + "/api/auth/logout", headers={"X-CSRFToken": s.cookies["csrftoken"]}, timeout=30)
    server.password, server.token = password, token
    return server


class Daemon:
    def __init__(self, root: Path, env: dict, *args: str):
        self.log_path = root.parent / f"daemon-{time.monotonic_ns()}.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "syncd", "run", str(root), *args], env=env,
                                     stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()


def _leaks(texts: dict[str, str], secrets: dict[str, str]) -> list[str]:
    return [f"{what} shows the {name}" for what, text in texts.items() for name, value in secrets.items()
            if value and value in text]


def _files_below(root: Path) -> dict[str, str]:
    return {str(p): p.read_bytes().decode("utf-8", errors="replace") for p in root.rglob("*") if p.is_file()}


def _assert_private(root: Path) -> None:
    state = root / ".syncd"
    assert state.is_dir()
    assert stat.S_IMODE(state.stat().st_mode) == 0o700, oct(state.stat().st_mode)
    loose = {str(p): oct(stat.S_IMODE(p.stat().st_mode)) for p in state.rglob("*")
             if stat.S_IMODE(p.stat().st_mode) & 0o077}
    assert not loose, f"readable by others: {loose}"


@pytest.mark.parametrize("mode", ["password", "token"])
def test_commands_and_daemon_never_show_credentials(cvat, tmp_path, mode):
    url = cvat.url
    if mode == "password":
        env = _env(CVAT_URL=url, CVAT_USERNAME="admin", CVAT_PASSWORD=cvat.password)
    else:  # a token, with a (then unused) password beside it: neither may show
        env = _env(CVAT_URL=url, CVAT_TOKEN=cvat.token, CVAT_USERNAME="admin", CVAT_PASSWORD=cvat.password)
    secrets = {"password": cvat.password, "token": cvat.token}
    outputs: dict[str, str] = {}
    admin = Admin(url, cvat.password)

    # one-shot commands through a whole run
    root = tmp_path / "oneshot"
    for i, name in enumerate(["a.jpg", "b.jpg"]):
        _image(root / name, i)
    steps = [("annotate", root, "run1", "a.jpg", "b.jpg", "--field", "gt", "--type", "detections",
              "--classes", "cat,dog"),
             ("status", root, "--json"), ("status", root), ("runs", root, "--json"), ("runs", root)]
    for args in steps:
        p = _syncd(*args, env=env)
        assert p.returncode == 0, (args, p.stderr)
        if "--json" in args:
            json.loads(p.stdout)  # a script's view stays parseable
        outputs[" ".join(map(str, args[:1] + args[2:]))] = p.stdout + p.stderr
    admin.complete_all_jobs()
    p = _syncd("load", root, "run1", env=env)
    assert p.returncode == 0, p.stderr
    outputs["load"] = p.stdout + p.stderr
    assert "gt" in json.loads((root / "a.jpg.json").read_text())  # the labels came back

    # failing credentials: the error names the problem, never the value that was tried
    wrong = {"wrong password": f"bad-{uuid.uuid4().hex}", "wrong token": f"bad-{uuid.uuid4().hex}"}
    bad_env = (_env(CVAT_URL=url, CVAT_USERNAME="admin", CVAT_PASSWORD=wrong["wrong password"])
               if mode == "password" else _env(CVAT_URL=url, CVAT_TOKEN=wrong["wrong token"]))
    for args in [("status", root, "--json"), ("annotate", root, "run2", "b.jpg", "--field", "gt2",
                                              "--type", "classification", "--classes", "x")]:
        p = _syncd(*args, env=bad_env)
        assert "Traceback" not in p.stderr, p.stderr
        assert "Unable to log in" in p.stdout + p.stderr or "Invalid token" in p.stdout + p.stderr, p.stdout + p.stderr
        assert args[0] == "status" or p.returncode != 0  # status reports the error in its JSON
        outputs[f"failing {args[0]}"] = p.stdout + p.stderr
    secrets.update(wrong)

    # the daemon, as verbose as it gets, with a webhook listener (its secret is a credential too)
    droot = tmp_path / "daemon"
    droot.mkdir()
    (droot / "syncd.toml").write_text(CONFIG.format(url=url))
    log_format = "json" if mode == "token" else "text"
    d = Daemon(droot, env, "--log-level", "DEBUG", "--log-format", log_format)
    try:
        _wait(lambda: "daemon ready" in d.log, what="daemon ready")
        _image(droot / "incoming" / "c.jpg")
        _wait(lambda: admin.get("/api/tasks")["count"] == 2, what="the daemon's task")
        _wait(lambda: "webhook registered" in d.log, what="webhook registration")
        hooks = cvat.store.all("webhooks")  # the daemon removes its hook when it stops
        admin.complete_all_jobs()
        _wait(lambda: "annotated" in json.loads((droot / "incoming" / "c.jpg.json").read_text()).get("tags", []),
              what="labels pulled")
    finally:
        d.stop()
    outputs[f"daemon log ({log_format})"] = d.log
    assert hooks and all(h["secret"] for h in hooks)
    secrets.update({f"webhook secret {h['id']}": h["secret"] for h in hooks})

    files = {**_files_below(root), **_files_below(droot)}
    assert any("/.syncd/" in f for f in files) and any(f.endswith(".jpg.json") for f in files)
    assert not _leaks(outputs, secrets) + _leaks(files, secrets)
    _assert_private(root)
    _assert_private(droot)


def test_daemon_refuses_a_world_writable_config(cvat, tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    cfg = root / "syncd.toml"
    cfg.write_text(CONFIG.format(url=cvat.url))
    cfg.chmod(0o666)
    d = Daemon(root, _env(CVAT_URL=cvat.url, CVAT_USERNAME="admin", CVAT_PASSWORD=cvat.password))
    try:
        assert d.proc.wait(30) != 0
    finally:
        d.stop()
    assert "world-writable" in d.log and "syncd.toml" in d.log and "Traceback" not in d.log
    assert cvat.password not in d.log
    assert not (root / ".syncd").exists() or not any((root / ".syncd").iterdir()) or \
        stat.S_IMODE((root / ".syncd").stat().st_mode) == 0o700
