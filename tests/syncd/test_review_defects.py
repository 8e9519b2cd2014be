"""Defects found in a review of the run steps and the daemon, each pinned by the scenario a user
hits: an entry that is not a regular file where a sample file belongs (a directory named
``x.jpg.json``) must cost that sample, with a one-line error, never the whole daemon pass or a
traceback."""
from __future__ import annotations

import os

import pytest
from test_watch import _real_jpeg, _reconciler

import syncd
from syncd.errors import SampleFileError


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_a_directory_named_like_a_sample_file_does_not_stall_the_daemon(tmp_path):
    (tmp_path / "incoming").mkdir()
    (tmp_path / "incoming" / "a.jpg").write_bytes(_real_jpeg())
    (tmp_path / "incoming" / "a.jpg.json").mkdir()          # not a file: a directory
    (tmp_path / "incoming" / "b.jpg").write_bytes(_real_jpeg())
    rec = _reconciler(tmp_path, quiet=0.0)
    rec.pass_once()                                          # must not raise
    before = _open_fds()
    for _ in range(5):
        rec.pass_once()
    rec.hint(None)
    rec.pass_once()
    assert _open_fds() <= before                             # no descriptor left open per pass
    # the other media was auto-tagged as usual
    assert "requires_annotation" in (tmp_path / "incoming" / "b.jpg.json").read_text()


def test_tagging_a_sample_whose_file_is_a_directory_is_a_one_line_error(tmp_path):
    (tmp_path / "a.jpg").write_bytes(_real_jpeg())
    (tmp_path / "a.jpg.json").mkdir()
    with pytest.raises(SampleFileError, match="a.jpg.json"):
        syncd.tag(tmp_path, ["a.jpg"], add=["x"])


# ---- load: a dest_field the run cannot take ----------------------------------------------------

@pytest.fixture
def client(fakecvat):
    from syncd.cvat import CVATClient
    with CVATClient(fakecvat.url, username="admin", password="admin") as c:
        yield c


def test_a_single_dest_field_for_a_multi_field_run_is_a_one_line_error(tmp_path, client):
    from sample_helpers import make_images

    from syncd.errors import SyncdError
    from syncd.runs import RunStore

    make_images(tmp_path, ["a.jpg"])
    (tmp_path / "a.jpg.json").write_text('{"filepath": "a.jpg", "tags": ["todo"]}')
    schema = {"boxes": {"type": "detections", "classes": ["cat"]},
              "scene": {"type": "classification", "classes": ["day", "night"]}}
    syncd.annotate(tmp_path, "two", ["a.jpg"], client=client, label_schema=schema)
    before = (tmp_path / "a.jpg.json").read_bytes()
    with pytest.raises(SyncdError, match="dest_field"):
        syncd.load_annotations(tmp_path, "two", client=client, dest_field="other")
    assert (tmp_path / "a.jpg.json").read_bytes() == before
    assert RunStore(tmp_path).get("two")["status"] == "annotating"   # nothing started
    syncd.load_annotations(tmp_path, "two", client=client)           # the right call still works
    assert RunStore(tmp_path).get("two")["status"] == "loaded"


# ---- load: a sample file unreadable at load time must not cost its CVAT labels ---------------

def _draw_box(url: str, tid: int, frame: int) -> None:
    import requests
    auth = ("admin", "admin")
    labels = requests.get(f"{url}/api/labels?task_id={tid}&page_size=all", auth=auth).json()["results"]
    lid = next(lb["id"] for lb in labels if lb["name"] == "cat")
    jobs = requests.get(f"{url}/api/jobs?task_id={tid}&page_size=all", auth=auth).json()["results"]
    job = next(j for j in jobs if j["start_frame"] <= frame <= j["stop_frame"])
    r = requests.patch(f"{url}/api/jobs/{job['id']}/annotations?action=create", auth=auth,
                       json={"version": 0, "tags": [], "tracks": [], "shapes": [
                           {"type": "rectangle", "frame": frame, "label_id": lid,
                            "points": [8.0, 6.0, 40.0, 30.0], "attributes": []}]})
    assert r.status_code == 200, r.text


def test_a_sample_file_broken_at_load_time_keeps_its_labels_for_the_next_load(tmp_path, fakecvat, client):
    import json

    from sample_helpers import make_images

    from syncd.runs import RunStore

    make_images(tmp_path, ["a.jpg", "b.jpg"])
    for rel in ("a.jpg", "b.jpg"):
        (tmp_path / (rel + ".json")).write_text(json.dumps({"filepath": rel, "tags": ["todo"]}))
    result = syncd.annotate(tmp_path, "r", ["a.jpg", "b.jpg"], client=client, label_field="gt",
                            label_type="detections", classes=["cat"])
    tid = result["tasks"][0]
    _draw_box(fakecvat.url, tid, 0)
    _draw_box(fakecvat.url, tid, 1)
    (tmp_path / "a.jpg.json").write_text('{"filepath": "a.jpg", "tags": ["todo"]')   # mid-edit, broken
    summary = syncd.load_annotations(tmp_path, "r", client=client, cleanup=True)
    assert "a.jpg" in summary["skipped"]
    assert [d["label"] for d in json.loads((tmp_path / "b.jpg.json").read_text())["gt"]["detections"]] == ["cat"]
    assert RunStore(tmp_path).get("r")["status"] != "loaded"     # not finished: a.jpg is owed its box
    client.get_task(tid)                                          # the task (and its labels) kept
    # the person fixes the file; loading again merges what was owed, and only that
    (tmp_path / "a.jpg.json").write_text(json.dumps({"filepath": "a.jpg", "tags": ["todo"]}))
    summary = syncd.load_annotations(tmp_path, "r", client=client, cleanup=True)
    assert not summary["skipped"]
    for rel in ("a.jpg", "b.jpg"):
        assert [d["label"] for d in json.loads((tmp_path / (rel + ".json")).read_text())["gt"]["detections"]] == ["cat"]
    assert RunStore(tmp_path).get("r")["status"] == "loaded"


def test_daemon_keeps_retrying_a_run_whose_sample_file_was_broken_at_load(tmp_path, fakecvat, client, caplog):
    import json
    import logging

    import requests
    from sample_helpers import make_images

    from syncd import ops
    from syncd.config import load_config
    from syncd.reconcile import Reconciler
    from syncd.run_driver import BACKOFF_CAP
    from syncd.runs import RunStore

    (tmp_path / "syncd.toml").write_text(f'[cvat]\nurl = "{fakecvat.url}"\n[[rule]]\nname = "boxes"\n'
                                         'label_field = "gt"\nlabel_type = "detections"\nclasses = ["cat"]\n')
    make_images(tmp_path, ["a.jpg", "b.jpg"])
    ops.plan_run(tmp_path, "boxes-1", ["a.jpg", "b.jpg"], rule_name="boxes", label_field="gt",
                 label_type="detections", classes=["cat"])
    ops.upload_run(client, tmp_path, "boxes-1")
    tid = RunStore(tmp_path).get("boxes-1")["batches"][0]["task_id"]
    _draw_box(fakecvat.url, tid, 0)
    _draw_box(fakecvat.url, tid, 1)
    for job in client.jobs(tid):
        assert requests.patch(f"{fakecvat.url}/api/jobs/{job['id']}", auth=("admin", "admin"),
                              json={"state": "completed"}).ok
    (tmp_path / "a.jpg.json").write_text("{broken")
    now = [1000.0]
    rec = Reconciler(tmp_path, load_config(tmp_path), lambda: client, clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="syncd"):
        rec.pass_once()
    assert RunStore(tmp_path).get("boxes-1")["status"] == "loading"
    assert not any(r.getMessage() == "run loaded" for r in caplog.records)
    assert any("a.jpg" in str(getattr(r, "fields", {})) for r in caplog.records if r.levelno >= logging.ERROR)
    (tmp_path / "a.jpg.json").write_text(json.dumps({"filepath": "a.jpg", "tags": []}))
    now[0] += BACKOFF_CAP + 1
    rec.pass_once()
    assert RunStore(tmp_path).get("boxes-1")["status"] == "loaded"
    assert [d["label"] for d in json.loads((tmp_path / "a.jpg.json").read_text())["gt"]["detections"]] == ["cat"]


# ---- delete --cleanup: a task whose creation answer was lost is found by its recorded name ----

def test_delete_with_cleanup_removes_a_task_whose_creation_answer_was_lost(tmp_path, fakecvat):
    import requests
    from sample_helpers import make_images

    from syncd.cvat import CVATClient, CVATError

    make_images(tmp_path, ["a.jpg"])
    ctl = fakecvat.url + "/_fakecvat/faults"
    assert requests.post(ctl, json={"path": r"^/api/tasks/?$", "method": "POST", "status": 500,
                                    "phase": "after", "times": 1}).ok
    with CVATClient(fakecvat.url, username="admin", password="admin", retries=0) as c:
        with pytest.raises(CVATError):
            syncd.annotate(tmp_path, "r", ["a.jpg"], client=c, label_field="gt",
                           label_type="detections", classes=["cat"])
        # the POST went through on the server: the task exists, the run does not know its id
        assert len(requests.get(fakecvat.url + "/api/tasks", auth=("admin", "admin")).json()["results"]) == 1
        syncd.delete_run(tmp_path, "r", cleanup=True, client=c)
    assert requests.get(fakecvat.url + "/api/tasks", auth=("admin", "admin")).json()["results"] == []


# ---- load: an edited mask is written back only to a mask file, never to syncd's own state ----

def test_an_edited_mask_path_cannot_make_load_overwrite_the_run_records(tmp_path, fakecvat, client):
    import json

    import numpy as np
    from PIL import Image
    from sample_helpers import make_images

    make_images(tmp_path, ["a.jpg"])
    (tmp_path / "masks").mkdir()
    Image.fromarray(np.full((12, 16), 255, np.uint8)).save(tmp_path / "masks" / "old.png")
    oid = "64b000000000000000000002"
    doc = {"filepath": "a.jpg", "tags": [], "inst": {"_cls": "Detections", "detections": [
        {"_id": {"$oid": oid}, "_cls": "Detection", "label": "blob", "attributes": {}, "tags": [],
         "bounding_box": [0.5, 0.5, 0.25, 0.25], "mask_path": "masks/old.png"}]}}
    (tmp_path / "a.jpg.json").write_text(json.dumps(doc))
    syncd.annotate(tmp_path, "run", ["a.jpg"], client=client, label_field="inst",
                   label_type="instances", classes=["blob"])
    record = tmp_path / ".syncd" / "runs" / "run.json"
    # while in annotation, someone points the label's mask at syncd's own run record
    doc["inst"]["detections"][0]["mask_path"] = ".syncd/runs/run.json"
    (tmp_path / "a.jpg.json").write_text(json.dumps(doc))
    syncd.load_annotations(tmp_path, "run", client=client)
    json.loads(record.read_text())                                  # still a run record
    # the mask that came back went to a new file of syncd's own instead
    assert list((tmp_path / ".masks").rglob("*.png"))
