"""Jobs over HTTP: segmentation, JobRead, filters, PATCH rules and events, job frames and meta."""
import io

import pytest
import requests
from PIL import Image

from fakecvat.models import events


def session(server, user="admin", password="admin"):
    s = requests.Session()
    s.auth = (user, password)
    s.base = server.url
    return s


def task_with_data(s, n=5, **task_fields):
    t = s.post(s.base + "/api/tasks", json={"name": "t", "labels": [{"name": "a"}], **task_fields}).json()
    files = {}
    for i in range(n):
        buf = io.BytesIO()
        Image.new("RGB", (10, 10), (i * 40, 0, 0)).save(buf, "PNG")
        files[f"client_files[{i}]"] = (f"{i:03d}.png", buf.getvalue(), "image/png")
    r = s.post(f"{s.base}/api/tasks/{t['id']}/data", files=files, data={"image_quality": "70"})
    assert r.status_code == 202, r.text
    return t["id"]


def jobs_of(s, tid, **params):
    r = s.get(f"{s.base}/api/jobs", params={"task_id": tid, "org": "", **params})
    assert r.status_code == 200, r.text
    return r.json()["results"]


@pytest.mark.parametrize("size,segment,overlap,expected", [
    (5, 2, None, [(0, 1), (2, 3), (4, 4)]),
    (5, 0, None, [(0, 4)]),
    (5, 10, None, [(0, 4)]),
    (10, 4, 2, [(0, 3), (2, 5), (4, 7), (6, 9)]),
])
def test_segmentation(fakecvat, size, segment, overlap, expected):
    s = session(fakecvat)
    fields = {"segment_size": segment} | ({"overlap": overlap} if overlap is not None else {})
    tid = task_with_data(s, size, **fields)
    jobs = jobs_of(s, tid)
    assert [j["id"] for j in jobs] == sorted((j["id"] for j in jobs), reverse=True)  # default -id
    assert sorted((j["start_frame"], j["stop_frame"]) for j in jobs) == expected
    assert all(j["frame_count"] == j["stop_frame"] - j["start_frame"] + 1 for j in jobs)
    j = jobs[0]
    assert (j["type"], j["stage"], j["state"], j["mode"], j["assignee"]) == ("annotation", "annotation", "new",
                                                                              "annotation", None)
    assert j["labels"] == {"url": f"{s.base}/api/labels?job_id={j['id']}"} and j["organization"] is None
    task = s.get(f"{s.base}/api/tasks/{tid}").json()
    assert task["jobs"]["count"] == len(expected)


def test_patch_stage_state_assignee_and_events(fakecvat):
    s = session(fakecvat)
    tid = task_with_data(s, 4, segment_size=2)
    job = jobs_of(s, tid)[-1]
    seen = []
    events.subscribe(lambda store, ev, res, oid, before, sender: seen.append((ev, oid, before))
                     if store is fakecvat.store else None)
    r = s.patch(f"{s.base}/api/jobs/{job['id']}", json={"assignee": 2, "stage": "validation", "state": "in progress"})
    assert r.status_code == 200, r.text
    j = r.json()
    assert j["assignee"]["username"] == "user1" and j["assignee_updated_date"] and j["status"] == "validation"
    assert ("update:job", job["id"], {"stage": "annotation", "state": "new", "assignee": None}) in seen
    j = s.patch(f"{s.base}/api/jobs/{job['id']}", json={"stage": "acceptance"}).json()
    assert j["state"] == "new"
    r = s.patch(f"{s.base}/api/jobs/{job['id']}", json={"stage": "nope"})
    assert r.status_code == 400 and "stage" in r.json()
    assert s.get(f"{s.base}/api/tasks/{tid}").json()["status"] == "annotation"
    for other in jobs_of(s, tid):
        r = s.post(f"{fakecvat.url}/_fakecvat/jobs/{other['id']}/complete")
        assert r.status_code == 200 and r.json()["state"] == "completed"
    task = s.get(f"{s.base}/api/tasks/{tid}").json()
    assert task["status"] == "completed" and task["jobs"]["completed"] == 2
    assert ("update:job", job["id"], {"stage": "validation", "state": "in progress"}) in seen


def test_filters_and_assignee_rules(fakecvat):
    admin = session(fakecvat)
    user1 = session(fakecvat, "user1", "user1-pass")
    tid = task_with_data(admin, 3, segment_size=1)
    j1, j2, j3 = sorted(jobs_of(admin, tid), key=lambda j: j["id"])
    admin.patch(f"{admin.base}/api/jobs/{j1['id']}", json={"assignee": 2})
    admin.patch(f"{admin.base}/api/jobs/{j2['id']}", json={"stage": "validation"})
    assert [j["id"] for j in jobs_of(admin, tid, assignee="user1")] == [j1["id"]]
    assert [j["id"] for j in jobs_of(admin, tid, stage="validation")] == [j2["id"]]
    assert len(jobs_of(admin, tid, state="new", type="annotation")) == 3
    # user1 sees only the job assigned to them, and may change its state but not its stage
    assert [j["id"] for j in user1.get(user1.base + "/api/jobs").json()["results"]] == [j1["id"]]
    assert user1.get(f"{user1.base}/api/jobs/{j2['id']}").status_code == 403
    assert user1.patch(f"{user1.base}/api/jobs/{j1['id']}", json={"state": "completed"}).status_code == 200
    assert user1.patch(f"{user1.base}/api/jobs/{j1['id']}", json={"stage": "acceptance"}).status_code == 403
    # a non-admin task owner may assign only themselves in the sandbox
    own = task_with_data(user1, 1)
    oj = jobs_of(user1, own)[0]
    assert user1.patch(f"{user1.base}/api/jobs/{oj['id']}", json={"assignee": 3}).status_code == 403
    assert user1.patch(f"{user1.base}/api/jobs/{oj['id']}", json={"assignee": 2}).status_code == 200
    assert admin.patch(f"{admin.base}/api/jobs/{oj['id']}", json={"assignee": 999}).status_code == 400
    assert admin.delete(f"{admin.base}/api/jobs/{oj['id']}").status_code == 400


def test_job_frames_and_meta(fakecvat):
    s = session(fakecvat)
    tid = task_with_data(s, 5, segment_size=2)
    job = sorted(jobs_of(s, tid), key=lambda j: j["start_frame"])[1]  # frames 2-3
    meta = s.get(f"{s.base}/api/jobs/{job['id']}/data/meta").json()
    assert meta["size"] == 2 and (meta["start_frame"], meta["stop_frame"]) == (2, 3)
    assert [f["name"] for f in meta["frames"]] == ["002.png", "003.png"]
    assert meta["included_frames"] is None and meta["image_quality"] == 70
    r = s.get(f"{s.base}/api/jobs/{job['id']}/data", params={"type": "frame", "number": 3, "quality": "original"})
    assert r.status_code == 200
    task_frame = s.get(f"{s.base}/api/tasks/{tid}/data", params={"type": "frame", "number": 3, "quality": "original"})
    assert r.content == task_frame.content
    r = s.get(f"{s.base}/api/jobs/{job['id']}/data", params={"type": "frame", "number": 0, "quality": "original"})
    assert r.status_code == 400 and r.json() == ["The frame number should be in the [2, 3] range"]
    r = s.get(f"{s.base}/api/jobs/{job['id']}/data", params={"type": "chunk", "index": 0})
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/zip"
