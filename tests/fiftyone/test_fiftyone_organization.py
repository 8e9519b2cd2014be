"""FiftyOne's CVAT backend with ``organization=`` against fakecvat: FiftyOne sends only the
``X-Organization`` header; the task lands in the organization, its members are the assignees,
and the labels come back."""
from __future__ import annotations

import pytest
import requests

from fo_helpers import make_images

pytestmark = pytest.mark.xdist_group("fiftyone")


def test_annotate_and_load_inside_an_organization(fo, tmp_path, fakecvat, annotator, fo_dataset):
    r = requests.post(fakecvat.url + "/_fakecvat/organizations",
                      json={"slug": "lab", "owner": "user1", "members": {"user2": "worker"}})
    assert r.status_code == 201, r.text
    lab = r.json()
    creds = {"url": fakecvat.url, "username": "user1", "password": "user1-pass", "organization": "lab"}
    fo_dataset.add_samples([fo.Sample(filepath=p) for p in make_images(tmp_path, ["a.png", "b.png"])])

    results = fo_dataset.annotate("org", backend="cvat", **creds, label_field="gt", label_type="detections",
                                  classes=["cat"], job_assignees=["user2"])
    (tid,) = results.task_ids
    task = annotator.call("GET", f"/api/tasks/{tid}")
    assert task["organization"] == lab["id"] and task["owner"]["username"] == "user1"
    jobs = annotator.jobs(tid)
    assert {j["assignee"]["username"] for j in jobs} == {"user2"}
    for job in jobs:
        cat = annotator.labels(job["id"])["cat"]["id"]
        annotator.put(job["id"], shapes=[{"type": "rectangle", "frame": f, "label_id": cat,
                                          "points": [2.0, 2.0, 20.0, 20.0], "attributes": []}
                                         for f in range(job["start_frame"], job["stop_frame"] + 1)])
        annotator.complete(job["id"])

    fo_dataset.load_annotations("org", **creds, cleanup=True)
    assert [[d.label for d in s.gt.detections] for s in fo_dataset] == [["cat"], ["cat"]]
    assert annotator.task_status(tid) == 404  # cleanup deleted it, in the organization
