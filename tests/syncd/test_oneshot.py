"""The seed's walkthrough, one-shot: annotate -> an annotator draws in CVAT -> load, against a
real fakecvat over HTTP, with real files on disk."""
import json

import pytest
import requests

import syncd
from syncd.cvat import CVATClient
from syncd.errors import RunError

from sample_helpers import H, W, make_images, read


@pytest.fixture
def client(fakecvat):
    with CVATClient(fakecvat.url, username="admin", password="admin") as c:
        yield c


def label_ids(url, task_id):
    labels = requests.get(f"{url}/api/labels?task_id={task_id}&page_size=all", auth=("admin", "admin")).json()["results"]
    return {lb["name"]: lb for lb in labels}


def draw(url, job_id, shapes):
    r = requests.put(f"{url}/api/jobs/{job_id}/annotations", auth=("admin", "admin"),
                     json={"version": 0, "tags": [], "shapes": shapes, "tracks": []})
    assert r.status_code == 200, r.text


def complete(url, job_id):
    r = requests.patch(f"{url}/api/jobs/{job_id}", auth=("admin", "admin"),
                       json={"stage": "acceptance", "state": "completed"})
    assert r.status_code == 200, r.text


def test_new_detections_round_trip(tmp_path, fakecvat, client):
    names = ["a.jpg", "b.jpg", "sub/c.jpg"]
    make_images(tmp_path, names)
    result = syncd.annotate(tmp_path, "boxes", names, client=client, label_field="ground_truth",
                            label_type="detections", classes=["cat", "dog"], segment_size=2,
                            job_assignees=["user1", "user2"],
                            attributes={"iscrowd": {"type": "radio", "values": [True, False], "default": False}})
    assert len(result["tasks"]) == 1
    tid = result["tasks"][0]
    jobs = sorted(client.jobs(tid), key=lambda j: j["start_frame"])
    assert [(j["start_frame"], j["stop_frame"]) for j in jobs] == [(0, 1), (2, 2)]
    assert [j["assignee"]["username"] for j in jobs] == ["user1", "user2"]
    assert [f["name"] for f in client.data_meta(tid)["frames"]] == ["a.jpg", "b.jpg", "c.jpg"]

    labels = label_ids(fakecvat.url, tid)
    cat = labels["cat"]
    iscrowd = next(a for a in cat["attributes"] if a["name"] == "iscrowd")
    # annotator on job 1 draws a cat on frame 0 (a.jpg) and a dog on frame 1; job 2 draws nothing
    draw(fakecvat.url, jobs[0]["id"], [
        {"type": "rectangle", "frame": 0, "label_id": cat["id"], "points": [8.0, 6.0, 40.0, 30.0],
         "attributes": [{"spec_id": iscrowd["id"], "value": "true"}]},
        {"type": "rectangle", "frame": 1, "label_id": labels["dog"]["id"], "points": [0.0, 0.0, 32.0, 24.0]},
    ])
    for j in jobs:
        complete(fakecvat.url, j["id"])

    summary = syncd.load_annotations(tmp_path, "boxes", client=client, cleanup=True)
    assert summary["samples"] == 3
    a = read(tmp_path, "a.jpg")["ground_truth"]["detections"]
    assert len(a) == 1 and a[0]["label"] == "cat" and a[0]["iscrowd"] is True
    assert a[0]["bounding_box"] == pytest.approx([8 / W, 6 / H, 32 / W, 24 / H], abs=1 / W)
    assert read(tmp_path, "b.jpg")["ground_truth"]["detections"][0]["label"] == "dog"
    c = read(tmp_path, "sub/c.jpg")
    assert not (c.get("ground_truth") or {}).get("detections")
    assert c["filepath"] == "sub/c.jpg" and c["metadata"]["width"] == W
    # cleanup removed the task
    assert requests.get(f"{fakecvat.url}/api/tasks/{tid}", auth=("admin", "admin")).status_code == 404
    # loading again is a no-op, not a duplication
    syncd.load_annotations(tmp_path, "boxes", client=client)
    assert len(read(tmp_path, "a.jpg")["ground_truth"]["detections"]) == 1


def test_reannotate_existing_labels_keeps_ids(tmp_path, fakecvat, client):
    make_images(tmp_path, ["x.png"])
    ids = ["64a000000000000000000001", "64a000000000000000000002", "64a000000000000000000003"]
    (tmp_path / "x.png.json").write_text(json.dumps({
        "filepath": "x.png", "tags": ["fix"], "custom_key": {"kept": True},
        "ground_truth": {"_cls": "Detections", "detections": [
            {"_id": {"$oid": ids[0]}, "_cls": "Detection", "label": "cat", "bounding_box": [0.1, 0.1, 0.2, 0.2],
             "confidence": None, "index": None, "attributes": {}, "tags": []},
            {"_id": {"$oid": ids[1]}, "_cls": "Detection", "label": "dog", "bounding_box": [0.5, 0.5, 0.25, 0.25],
             "confidence": None, "index": None, "attributes": {}, "tags": []},
            {"_id": {"$oid": ids[2]}, "_cls": "Detection", "label": "cat", "bounding_box": [0.0, 0.5, 0.25, 0.25],
             "confidence": None, "index": None, "attributes": {}, "tags": []},
        ]}}))
    result = syncd.annotate(tmp_path, "fix", tag="fix", client=client, label_field="ground_truth")
    tid = result["tasks"][0]
    job = client.jobs(tid)[0]
    ann = client.job_annotations(job["id"])
    assert len(ann["shapes"]) == 3
    labels = label_ids(fakecvat.url, tid)
    spec = {a["name"]: a["id"] for a in labels["cat"]["attributes"]}
    by_id = {next(a["value"] for a in s["attributes"] if a["spec_id"] in
                  {x["id"] for lb in labels.values() for x in lb["attributes"] if x["name"] == "label_id"}): s
             for s in ann["shapes"]}
    # edit the first (move + relabel to dog), delete the second, keep the third, add a new one
    moved = dict(by_id[ids[0]], points=[0.0, 0.0, 16.0, 12.0], label_id=labels["dog"]["id"])
    moved["attributes"] = [a for a in moved["attributes"] if a["spec_id"] not in spec.values()] + \
        [{"spec_id": next(x["id"] for x in labels["dog"]["attributes"] if x["name"] == "label_id"), "value": ids[0]}]
    r = requests.patch(f"{fakecvat.url}/api/jobs/{job['id']}/annotations?action=update", auth=("admin", "admin"),
                       json={"version": 0, "tags": [], "shapes": [moved], "tracks": []})
    assert r.status_code == 200, r.text
    r = requests.patch(f"{fakecvat.url}/api/jobs/{job['id']}/annotations?action=delete", auth=("admin", "admin"),
                       json={"version": 0, "tags": [], "shapes": [by_id[ids[1]]], "tracks": []})
    assert r.status_code == 200, r.text
    r = requests.patch(f"{fakecvat.url}/api/jobs/{job['id']}/annotations?action=create", auth=("admin", "admin"),
                       json={"version": 0, "tags": [], "tracks": [], "shapes": [
                           {"type": "rectangle", "frame": 0, "label_id": labels["cat"]["id"],
                            "points": [32.0, 24.0, 48.0, 36.0]}]})
    assert r.status_code == 200, r.text

    syncd.load_annotations(tmp_path, "fix", client=client)
    doc = read(tmp_path, "x.png")
    dets = {d["_id"]["$oid"]: d for d in doc["ground_truth"]["detections"]}
    assert ids[1] not in dets                                   # deletion applied
    assert dets[ids[0]]["label"] == "dog"                       # edit kept its id
    assert dets[ids[0]]["bounding_box"] == pytest.approx([0, 0, 0.25, 0.25], abs=1 / W)
    assert dets[ids[2]]["bounding_box"] == pytest.approx([0.0, 0.5, 0.25, 0.25], abs=1 / W)  # untouched
    new = [d for i, d in dets.items() if i not in ids]
    assert len(new) == 1 and new[0]["label"] == "cat"
    assert doc["custom_key"] == {"kept": True}                  # unknown keys survive


def test_bad_inputs_give_clear_errors(tmp_path, fakecvat, client):
    make_images(tmp_path, ["ok.jpg"])
    (tmp_path / "broken.jpg").write_bytes(b"this is not a jpeg")
    result = syncd.annotate(tmp_path, "r1", ["ok.jpg", "broken.jpg"], client=client, label_field="gt",
                            label_type="detections", classes=["a"])
    assert "broken.jpg" in result["skipped"]
    assert len(client.jobs(result["tasks"][0])) == 1
    with pytest.raises(RunError, match="already exists"):
        syncd.annotate(tmp_path, "r1", ["ok.jpg"], client=client, label_field="gt", label_type="detections",
                       classes=["a"])
    with pytest.raises(ValueError, match="classes"):
        syncd.annotate(tmp_path, "r2", ["ok.jpg"], client=client, label_field="new_field", label_type="detections")
