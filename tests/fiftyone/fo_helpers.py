"""Helpers shared by the FiftyOne tests (a module with a unique name, so test modules can import
it whatever other ``conftest`` modules pytest has loaded): generated images, skipping when
FiftyOne is missing, and a CVAT annotator acting through fakecvat's REST API."""
from __future__ import annotations

from pathlib import Path

import pytest
import requests
from PIL import Image

W, H = 64, 48
ADMIN = ("admin", "admin")


def import_fiftyone():
    """FiftyOne, or skip. ``fiftyone.core.dataset`` rather than ``fiftyone``: this directory is
    itself called ``fiftyone`` and would import as an empty namespace package when the real one
    is not installed."""
    pytest.importorskip("fiftyone.core.dataset")
    import fiftyone

    return fiftyone


def connect_database() -> None:
    """Connect to FiftyOne's MongoDB, starting it if no process of the machine has yet.

    FiftyOne shares one mongod per machine between processes (a new process attaches to the
    running service), but two processes that start it at the same moment race: the loser's
    mongod exits on the data directory's lock and FiftyOne waits 60 s before failing. Parallel
    test workers therefore take turns at the first connection, under a file lock.
    """
    import fcntl

    import fiftyone.core.odm.database as fodb
    from fiftyone import config

    lock_path = Path(config.database_dir).parent / "syncd-tests-db-start.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            fodb.get_db_conn()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def make_images(folder, names, size=(W, H)):
    """Write distinct RGB images; return their absolute paths in order."""
    paths = []
    for i, name in enumerate(names):
        p = folder / name
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", size, (i * 40 % 255, 90, 160)).save(p)
        paths.append(str(p))
    return paths


class Annotator:
    """What a person in CVAT's editor does, as plain REST calls: read a job's labels, draw
    shapes/tags, and mark the job done."""

    def __init__(self, url: str, auth=ADMIN):
        self.url = url
        self.auth = auth

    def call(self, method, path, **kw):
        """Any CVAT API call that must succeed; its JSON answer."""
        r = requests.request(method, f"{self.url}{path}", auth=self.auth, timeout=30, **kw)
        assert r.status_code < 300, f"{method} {path} -> {r.status_code}: {r.text[:500]}"
        return r.json() if r.content else None

    _call = call  # the name test_fiftyone_video.py uses

    def jobs(self, task_id: int) -> list[dict]:
        """The task's jobs in frame order."""
        jobs = self.call("GET", f"/api/jobs?task_id={task_id}&page_size=100")["results"]
        return sorted(jobs, key=lambda j: j["start_frame"])

    def labels(self, job_id: int) -> dict[str, dict]:
        """``{name: label}`` of the labels the job's editor offers (with their attribute specs)."""
        labels = self.call("GET", f"/api/labels?job_id={job_id}&page_size=100")["results"]
        return {lb["name"]: lb for lb in labels}

    @staticmethod
    def spec(label: dict, attr: str) -> int:
        return next(a["id"] for a in label["attributes"] if a["name"] == attr)

    def annotations(self, job_id: int) -> dict:
        return self.call("GET", f"/api/jobs/{job_id}/annotations")

    def put(self, job_id: int, shapes=(), tags=()) -> dict:
        """Replace the job's annotations (what the editor's save does)."""
        return self.call("PUT", f"/api/jobs/{job_id}/annotations",
                          json={"version": 0, "shapes": list(shapes), "tags": list(tags), "tracks": []})

    def complete(self, job_id: int) -> None:
        self.call("PATCH", f"/api/jobs/{job_id}", json={"stage": "acceptance", "state": "completed"})

    def task_status(self, task_id: int) -> int:
        return requests.get(f"{self.url}/api/tasks/{task_id}", auth=self.auth, timeout=30).status_code
