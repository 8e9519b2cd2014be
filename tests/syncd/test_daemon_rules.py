"""Daemon rules beyond the basic loop: completion on stage ``acceptance``, and a sample tagged
again after its labels were merged starts a new run (and a new task) of its own."""
from __future__ import annotations

import json

import pytest
from test_daemon import (annotate_and_complete, api, daemons, drop_image, notify,  # noqa: F401
                         root, sample, tasks_of, wait_for, write_config)

from syncd.runs import RunStore


def _jobs(s, task_id):
    return s.get(s.base + "/api/jobs", params={"task_id": task_id, "page_size": "all"}).json()["results"]


def test_completion_on_acceptance_waits_for_the_stage_not_the_state(fakecvat, root, daemons):
    write_config(root, fakecvat.url, extra_cvat='completion = "acceptance"')
    d = daemons(root, fakecvat.url)
    s = api(fakecvat)
    drop_image(root / "incoming" / "a.jpg")
    task = wait_for(lambda: [t for t in tasks_of(s) if t.get("size")], what="a task with data")[0]
    job = _jobs(s, task["id"])[0]
    labels = s.get(s.base + "/api/labels", params={"job_id": job["id"]}).json()["results"]
    cat = next(lb for lb in labels if lb["name"] == "cat")
    s.put(s.base + f"/api/jobs/{job['id']}/annotations", json={"version": 0, "tags": [], "tracks": [], "shapes": [
        {"type": "rectangle", "frame": 0, "label_id": cat["id"], "points": [1.0, 1.0, 20.0, 20.0]}]})
    # state completed while still in the annotation stage: not finished for this daemon
    assert s.patch(s.base + f"/api/jobs/{job['id']}", json={"state": "completed"}).status_code == 200
    with pytest.raises(AssertionError):
        wait_for(lambda: "annotated" in sample(root, "incoming/a.jpg")["tags"], timeout=3, what="no merge yet")
    # a reviewer accepts it: now it is
    assert s.patch(s.base + f"/api/jobs/{job['id']}", json={"stage": "acceptance"}).status_code == 200
    wait_for(lambda: "annotated" in sample(root, "incoming/a.jpg")["tags"], what="labels merged")
    dets = sample(root, "incoming/a.jpg")["ground_truth"]["detections"]
    assert [d["label"] for d in dets] == ["cat"]
    assert d.stop() == 0


def test_a_sample_tagged_again_starts_a_new_run(fakecvat, root, daemons):
    write_config(root, fakecvat.url)
    d = daemons(root, fakecvat.url)
    s = api(fakecvat)
    drop_image(root / "incoming" / "a.jpg")
    first = wait_for(lambda: [t for t in tasks_of(s) if t.get("size")], what="first task")[0]
    annotate_and_complete(s, first["id"], "cat")
    wait_for(lambda: "annotated" in sample(root, "incoming/a.jpg")["tags"], what="first merge")
    first_ids = [x["_id"]["$oid"] for x in sample(root, "incoming/a.jpg")["ground_truth"]["detections"]]

    # someone finds the box wrong and tags the sample again
    doc = sample(root, "incoming/a.jpg")
    doc["tags"] = [t for t in doc["tags"] if t != "annotated"] + ["requires_annotation"]
    (root / "incoming" / "a.jpg.json").write_text(json.dumps(doc))
    second = wait_for(lambda: [t for t in tasks_of(s) if t["id"] != first["id"] and t.get("size")],
                      what="a second task")[0]
    # the existing box went up with its id; the annotator relabels it as a dog
    job = _jobs(s, second["id"])[0]
    # data first, then the sample's existing labels: wait for those to be in the job
    ann = wait_for(lambda: (a := s.get(s.base + f"/api/jobs/{job['id']}/annotations").json())["shapes"] and a,
                   what="the existing box uploaded")
    assert len(ann["shapes"]) == 1
    labels = {lb["name"]: lb for lb in s.get(s.base + "/api/labels", params={"job_id": job["id"]}).json()["results"]}
    shape = ann["shapes"][0]
    lid_spec = lambda name: next(a["id"] for a in labels[name]["attributes"] if a["name"] == "label_id")  # noqa: E731
    value = next(a["value"] for a in shape["attributes"] if a["spec_id"] == lid_spec("cat"))
    shape.update(label_id=labels["dog"]["id"], attributes=[{"spec_id": lid_spec("dog"), "value": value}])
    r = s.patch(s.base + f"/api/jobs/{job['id']}/annotations?action=update",
                json={"version": 0, "tags": [], "tracks": [], "shapes": [shape]})
    assert r.status_code == 200, r.text
    assert s.patch(s.base + f"/api/jobs/{job['id']}", json={"stage": "acceptance", "state": "completed"}).ok
    wait_for(lambda: sample(root, "incoming/a.jpg")["ground_truth"]["detections"][0]["label"] == "dog",
             what="second merge")
    doc = sample(root, "incoming/a.jpg")
    assert [x["_id"]["$oid"] for x in doc["ground_truth"]["detections"]] == first_ids  # same label, edited
    assert "requires_annotation" not in doc["tags"] and "annotated" in doc["tags"]
    keys = sorted(r["key"] for r in RunStore(root).list())
    assert keys == ["boxes-1", "boxes-2"]
    assert d.stop() == 0
