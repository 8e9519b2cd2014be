"""Bugs the reliability campaigns found, each kept as a small deterministic case (real fakecvat,
real files; the fault is injected through fakecvat's control API)."""
from __future__ import annotations

import json

import pytest
import requests
from PIL import Image

import syncd.ops as ops
from syncd.cvat import CVATClient, CVATError


def _images(root, n):
    rels = []
    for i in range(n):
        rel = f"img_{i}.jpg"
        Image.new("RGB", (64, 48), (i * 40, 80, 120)).save(root / rel, format="JPEG")
        doc = {"filepath": rel, "tags": []}
        if i == 0:  # a label the sample already has: syncd PUTs it into the task
            doc["ground_truth"] = {"_cls": "Detections", "detections": [{
                "_id": {"$oid": "a" * 24}, "_cls": "Detection", "label": "dog",
                "bounding_box": [0.1, 0.1, 0.2, 0.2], "attributes": {}, "tags": []}]}
        (root / (rel + ".json")).write_text(json.dumps(doc))
        rels.append(rel)
    return rels


def test_state_dump_leaves_passwords_in_place(fakecvat):
    """GET /_fakecvat/state stripped passwords from the live user rows: every later login
    answered 500 (KeyError 'password')."""
    assert requests.get(fakecvat.url + "/_fakecvat/state").ok
    with CVATClient(fakecvat.url, username="admin", password="admin") as client:
        assert client.current_user()["username"] == "admin"


@pytest.mark.no_schema_check
def test_failed_job_assignment_does_not_wipe_drawn_labels(fakecvat, tmp_path):
    """Existing labels go up with a PUT (replace) before jobs are assigned. When assigning the
    second job failed, the step was redone from the start and the PUT wiped what the annotator
    of the (already assigned) first job had drawn: labels lost."""
    rels = _images(tmp_path, 4)
    ops.plan_run(tmp_path, "r1", rels, label_field="ground_truth", label_type="detections",
                 classes=["cat", "dog"], segment_size=2, job_assignees=["admin"])
    ctl = requests.Session()
    r = ctl.post(fakecvat.url + "/_fakecvat/faults",
                 json={"path": r"^/api/jobs/2/?$", "method": "PATCH", "status": 400, "times": 1})
    assert r.status_code == 201
    with CVATClient(fakecvat.url, username="admin", password="admin", retries=0) as client:
        with pytest.raises(CVATError):
            for _ in range(50):
                ops.advance_upload(client, tmp_path, "r1")
        jobs = ctl.get(fakecvat.url + "/_fakecvat/state").json()["tables"]["jobs"]
        assert jobs["1"]["assignee_id"] and not jobs["2"]["assignee_id"]
        # the first job's annotator starts drawing at once
        r = ctl.post(fakecvat.url + "/_fakecvat/jobs/1/annotations",
                     json={"shapes": [{"type": "rectangle", "frame": 1, "label": "cat",
                                       "points": [1.0, 2.0, 30.0, 40.0]}]})
        assert r.status_code == 201, r.text
        ops.upload_run(client, tmp_path, "r1")
        shapes = client.call("GET", "/api/jobs/1/annotations")["shapes"]
    names = sorted(s["label_id"] for s in shapes)
    assert len(names) == 2  # the prior "dog" on frame 0 and the drawn "cat" on frame 1
    assert any(s["frame"] == 1 and s["points"] == [1.0, 2.0, 30.0, 40.0] for s in shapes)


@pytest.mark.no_schema_check
def test_outage_backoff_starts_over_once_an_upload_step_succeeds(fakecvat, tmp_path):
    """Only a finished poll or load reset the CVAT outage backoff, so during a long upload
    sporadic 503s added up and the daemon waited longer and longer (seen: 12 s after five
    blips, 5 minutes at the cap) although CVAT answered every other call."""
    from syncd.config import load_config
    from syncd.reconcile import Reconciler
    from syncd.run_driver import BACKOFF_BASE

    (tmp_path / "syncd.toml").write_text(f"""
[cvat]
url = "{fakecvat.url}"
[[rule]]
name = "boxes"
label_field = "ground_truth"
label_type = "detections"
classes = ["cat"]
""")
    rels = _images(tmp_path, 2)
    ops.plan_run(tmp_path, "boxes-1", rels, rule_name="boxes", label_field="ground_truth",
                 label_type="detections", classes=["cat", "dog"])
    now = [1000.0]
    ctl = requests.Session()
    with CVATClient(fakecvat.url, username="admin", password="admin", retries=0) as client:
        rec = Reconciler(tmp_path, load_config(tmp_path), lambda: client, clock=lambda: now[0])
        for path in (r"^/api/tasks/?$", r"^/api/tasks/\d+/data/?$"):
            assert ctl.post(fakecvat.url + "/_fakecvat/faults",
                            json={"path": path, "method": "POST", "status": 503, "times": 1}).ok
        rec.pass_once()                 # task creation refused: outage backoff
        assert not rec.cvat_ready()
        now[0] += 400                   # past any backoff: the task gets created, then the
        rec.pass_once()                 # data upload is refused once
        assert not rec.cvat_ready()
        now[0] += BACKOFF_BASE          # a first failure after a success waits the base delay
        assert rec.cvat_ready()
