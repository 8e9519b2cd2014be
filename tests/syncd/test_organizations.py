"""syncd inside a CVAT organization, against a real fakecvat: one-shot annotate/load with
``organization=`` (tasks land in the organization, job assignees must be its members), and the
daemon with ``[cvat] organization`` and no project registering an *organization* webhook and
pulling labels on it long before its poll interval."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from PIL import Image

import syncd
from syncd.cvat import CVATClient, CVATError
from syncd.errors import SyncdError

from test_daemon import DaemonProc, annotate_and_complete, api, drop_image, sample, tasks_of, wait_for

USER1 = ("user1", "user1-pass")


@pytest.fixture
def lab(fakecvat):
    """Organization "lab": user1 owns it, user2 works in it, user3 exists outside it."""
    r = requests.post(fakecvat.url + "/_fakecvat/users", json={"username": "user3", "password": "user3-pass"})
    assert r.status_code == 201, r.text
    r = requests.post(fakecvat.url + "/_fakecvat/organizations",
                      json={"slug": "lab", "owner": "user1", "members": {"user2": "worker"}})
    assert r.status_code == 201, r.text
    return r.json()


@pytest.fixture
def as_user1(fakecvat, monkeypatch):
    """syncd's client reads its credentials from the environment, as the CLI does."""
    for name in ("CVAT_TOKEN", "CVAT_ORGANIZATION", "FIFTYONE_CVAT_ORGANIZATION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CVAT_URL", fakecvat.url)
    monkeypatch.setenv("CVAT_USERNAME", USER1[0])
    monkeypatch.setenv("CVAT_PASSWORD", USER1[1])


def make_images(root: Path, names):
    for i, name in enumerate(names):
        Image.new("RGB", (64, 48), (i * 50 % 255, 90, 160)).save(root / name)


def test_oneshot_annotate_and_load_in_an_organization(fakecvat, lab, as_user1, tmp_path):
    names = ["a.jpg", "b.jpg"]
    make_images(tmp_path, names)
    result = syncd.annotate(tmp_path, "boxes", names, url=fakecvat.url, organization="lab",
                            label_field="ground_truth", label_type="detections", classes=["cat"],
                            segment_size=1, job_assignees=["user2"])
    s = api(fakecvat)
    (tid,) = result["tasks"]
    task = s.get(f"{s.base}/api/tasks/{tid}").json()
    assert task["organization"] == lab["id"] and task["owner"]["username"] == "user1"
    # the org's members see their work there; user1's personal sandbox does not hold it
    assert requests.get(f"{fakecvat.url}/api/tasks", auth=USER1, params={"org": ""}).json()["count"] == 0
    jobs = requests.get(f"{fakecvat.url}/api/jobs", auth=("user2", "user2-pass"),
                        headers={"X-Organization": "lab"}).json()["results"]
    assert len(jobs) == 2 and {j["assignee"]["username"] for j in jobs} == {"user2"}

    annotate_and_complete(s, tid)
    syncd.load_annotations(tmp_path, "boxes")  # the run remembers its organization
    for rel in names:
        assert [d["label"] for d in sample(tmp_path, rel)["ground_truth"]["detections"]] == ["cat"]


def test_job_assignees_must_be_members_of_the_organization(fakecvat, lab, as_user1, tmp_path):
    make_images(tmp_path, ["a.jpg"])
    with pytest.raises((CVATError, SyncdError)) as err:
        syncd.annotate(tmp_path, "outsider", ["a.jpg"], url=fakecvat.url, organization="lab",
                       label_field="gt", label_type="detections", classes=["cat"], job_assignees=["user3"])
    assert "user3" in str(err.value) and "lab" in str(err.value)


def test_unknown_organization_is_named(fakecvat, lab, as_user1, tmp_path):
    make_images(tmp_path, ["a.jpg"])
    with pytest.raises((CVATError, SyncdError)) as err:
        syncd.annotate(tmp_path, "nowhere", ["a.jpg"], url=fakecvat.url, organization="nolab",
                       label_field="gt", label_type="detections", classes=["cat"])
    assert "nolab organization does not exist" in str(err.value)


CONFIG = """\
[cvat]
url = "{url}"
poll_interval = 120
organization = "lab"
webhook = "127.0.0.1:0"

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
"""


class OwnerDaemon(DaemonProc):
    """``python -m syncd run ROOT`` as user1, the organization's owner (not an admin)."""

    def __init__(self, root: Path, url: str):
        env = dict(os.environ, CVAT_URL=url, CVAT_USERNAME=USER1[0], CVAT_PASSWORD=USER1[1])
        for name in ("CVAT_TOKEN", "NOTIFY_SOCKET", "CVAT_ORGANIZATION"):
            env.pop(name, None)
        self.log_path = root.parent / f"{root.name}-daemon-{time.monotonic_ns()}.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "syncd", "run", str(root)], env=env,
                                     stdout=subprocess.DEVNULL, stderr=self._log, stdin=subprocess.DEVNULL)


def test_daemon_registers_an_organization_webhook_and_pulls_on_it(fakecvat, lab, tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    (root / "syncd.toml").write_text(CONFIG.format(url=fakecvat.url))
    s = api(fakecvat)
    d = OwnerDaemon(root, fakecvat.url)
    try:
        drop_image(root / "incoming" / "a.jpg")
        task = wait_for(lambda: [t for t in tasks_of(s) if t.get("size") == 1], what="task")[0]
        assert task["project_id"] is None and task["organization"] == lab["id"]
        wait_for(lambda: "webhook registered" in d.log, what="webhook registration")
        hooks = s.get(s.base + "/api/webhooks").json()["results"]
        assert [(h["type"], h["organization"], h["owner"]["username"]) for h in hooks] \
            == [("organization", lab["id"], "user1")]
        time.sleep(0.5)
        # poll_interval is 120 s: only the organization webhook can make the daemon look now
        annotate_and_complete(s, task["id"])
        wait_for(lambda: "annotated" in sample(root, "incoming/a.jpg")["tags"], timeout=20,
                 what="labels pulled on the organization webhook")
        assert "webhook webhook_event=update:job" in d.log
        assert d.stop() == 0
        # a clean stop removes the daemon's webhook from CVAT
        assert s.get(s.base + "/api/webhooks").json()["count"] == 0
    finally:
        d.close()


def test_a_client_outside_the_organization_is_refused(fakecvat, lab, tmp_path):
    make_images(tmp_path, ["a.jpg"])
    with CVATClient(fakecvat.url, username=USER1[0], password=USER1[1]) as client:
        with pytest.raises(SyncdError, match="organization 'lab' differs"):
            syncd.annotate(tmp_path, "k", ["a.jpg"], client=client, organization="lab",
                           label_field="gt", label_type="detections", classes=["cat"])
    assert requests.get(fakecvat.url + "/api/tasks", auth=USER1).json()["count"] == 0
    with CVATClient(fakecvat.url, username=USER1[0], password=USER1[1], organization="lab") as client:
        (tid,) = syncd.annotate(tmp_path, "k", ["a.jpg"], client=client, organization="lab", label_field="gt",
                                label_type="detections", classes=["cat"])["tasks"]
        assert client.get_task(tid)["organization"] == lab["id"]
