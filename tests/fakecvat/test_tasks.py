"""Task CRUD over HTTP: TaskRead fields, validation, write-once fields, visibility, lists, delete."""
import io
from pathlib import Path

import requests
from PIL import Image


def session(server, user="admin", password="admin"):
    s = requests.Session()
    s.auth = (user, password)
    s.base = server.url
    return s


def png(i=0) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8 + i, 8), (0, 0, 0)).save(buf, "PNG")
    return buf.getvalue()


def upload(s, tid, n=3):
    files = {f"client_files[{i}]": (f"f{i}.png", png(i), "image/png") for i in range(n)}
    r = s.post(f"{s.base}/api/tasks/{tid}/data", files=files, data={"image_quality": "70"})
    assert r.status_code == 202, r.text


def test_create_returns_taskread_without_data(fakecvat):
    s = session(fakecvat)
    r = s.post(s.base + "/api/tasks", json={"name": "cats", "labels": [{"name": "cat"}], "subset": "Train",
                                            "segment_size": 5, "overlap": 1, "bug_tracker": "http://bt/1"})
    assert r.status_code == 201, r.text
    t = r.json()
    assert "data" not in t and t["size"] == 0 and t["mode"] == "" and t["organization"] is None
    assert t["jobs"] == {"count": 0, "completed": 0, "validation": 0, "url": f"{s.base}/api/jobs?task_id={t['id']}"}
    assert t["labels"] == {"url": f"{s.base}/api/labels?task_id={t['id']}"}
    assert t["owner"]["username"] == "admin" and t["assignee"] is None
    assert t["target_storage"]["location"] == "local" and t["source_storage"]["location"] == "local"
    assert (t["subset"], t["segment_size"], t["overlap"], t["bug_tracker"]) == ("Train", 5, 1, "http://bt/1")
    assert t["status"] == "annotation"
    assert s.get(f"{s.base}/api/tasks/{t['id']}").json()["name"] == "cats"


def test_validation_errors(fakecvat):
    s = session(fakecvat)
    r = s.post(s.base + "/api/tasks", json={"labels": []})
    assert r.status_code == 400 and r.json() == {"name": ["This field is required."]}
    project = s.post(s.base + "/api/projects", json={"name": "p", "labels": [{"name": "dog"}]}).json()
    r = s.post(s.base + "/api/tasks", json={"name": "x", "labels": [{"name": "a"}], "project_id": project["id"]})
    assert r.status_code == 400
    r = s.post(s.base + "/api/tasks", json={"name": "x", "labels": [{"name": "a"}, {"name": "a"}]})
    assert r.status_code == 400
    assert s.get(s.base + "/api/tasks").json()["count"] == 0  # nothing half-created
    r = s.post(s.base + "/api/tasks", json={"name": "x", "assignee_id": 999})
    assert r.status_code == 400 and "assignee_id" in r.json()
    r = s.put(s.base + "/api/tasks/1", json={})  # PUT is not routed on tasks, as in CVAT
    assert r.status_code == 405 and r.json() == {"detail": 'Method "PUT" not allowed.'}


def test_task_in_project_uses_project_labels(fakecvat):
    s = session(fakecvat)
    project = s.post(s.base + "/api/projects", json={"name": "p", "labels": [{"name": "dog"}]}).json()
    t = s.post(s.base + "/api/tasks", json={"name": "x", "project_id": project["id"]}).json()
    assert t["project_id"] == project["id"]
    labels = s.get(s.base + f"/api/labels?task_id={t['id']}").json()["results"]
    assert [lab["name"] for lab in labels] == ["dog"]
    listed = s.get(s.base + f"/api/tasks?project_id={project['id']}").json()
    assert [x["id"] for x in listed["results"]] == [t["id"]]


def test_patch_and_write_once_fields(fakecvat):
    s = session(fakecvat)
    t = s.post(s.base + "/api/tasks", json={"name": "x", "segment_size": 2, "labels": [{"name": "a"}]}).json()
    r = s.patch(f"{s.base}/api/tasks/{t['id']}", json={"name": "renamed", "assignee_id": 2, "subset": "Test",
                                                       "segment_size": 50, "overlap": 3})
    assert r.status_code == 200, r.text
    t2 = r.json()
    assert t2["name"] == "renamed" and t2["assignee"]["username"] == "user1" and t2["subset"] == "Test"
    assert t2["segment_size"] == 2 and t2["overlap"] is None and t2["assignee_updated_date"]
    r = s.patch(f"{s.base}/api/tasks/{t['id']}", json={"name": ""})
    assert r.status_code == 400


def test_visibility_and_permissions(fakecvat):
    admin = session(fakecvat)
    user1 = session(fakecvat, "user1", "user1-pass")
    user2 = session(fakecvat, "user2", "user2-pass")
    mine = user1.post(user1.base + "/api/tasks", json={"name": "u1 task"}).json()
    admin_task = admin.post(admin.base + "/api/tasks", json={"name": "admin task"}).json()
    assert [t["id"] for t in user1.get(user1.base + "/api/tasks").json()["results"]] == [mine["id"]]
    assert user2.get(f"{user2.base}/api/tasks/{mine['id']}").status_code == 403
    assert user2.delete(f"{user2.base}/api/tasks/{mine['id']}").status_code == 403
    assert user1.get(f"{user1.base}/api/tasks/{admin_task['id']}").status_code == 403
    assert admin.get(f"{admin.base}/api/tasks/999").json() == {"detail": "No Task matches the given query."}
    assert {t["id"] for t in admin.get(admin.base + "/api/tasks").json()["results"]} == {mine["id"], admin_task["id"]}


def test_list_filters_search_sort_pagination(fakecvat):
    s = session(fakecvat)
    for i in range(12):
        s.post(s.base + "/api/tasks", json={"name": f"task {i}", "subset": "Train" if i % 2 else "Test"})
    page = s.get(s.base + "/api/tasks").json()
    assert page["count"] == 12 and len(page["results"]) == 10 and page["next"].startswith(s.base)
    assert page["results"][0]["name"] == "task 11"  # default -id
    assert s.get(s.base + "/api/tasks?subset=Train").json()["count"] == 6
    assert [t["name"] for t in s.get(s.base + "/api/tasks?search=task 1&sort=id").json()["results"]] == \
        ["task 1", "task 10", "task 11"]
    flt = '{"and":[{"==":[{"var":"owner"},"admin"]},{"<":[{"var":"id"},3]}]}'
    assert s.get(s.base + "/api/tasks", params={"filter": flt}).json()["count"] == 2
    assert s.get(s.base + "/api/tasks?page=3").status_code == 404


def test_delete_removes_jobs_media_and_annotations(fakecvat):
    s = session(fakecvat)
    t = s.post(s.base + "/api/tasks", json={"name": "x", "labels": [{"name": "a"}], "segment_size": 2}).json()
    upload(s, t["id"], 3)
    jobs = s.get(f"{s.base}/api/jobs?task_id={t['id']}").json()["results"]
    assert len(jobs) == 2
    media = Path(fakecvat.app.config["MEDIA_DIR"]) / "tasks" / str(t["id"])
    assert any(media.rglob("*.png"))
    assert s.delete(f"{s.base}/api/tasks/{t['id']}").status_code == 204
    assert not media.exists()
    assert s.get(f"{s.base}/api/tasks/{t['id']}").status_code == 404
    assert s.get(f"{s.base}/api/jobs/{jobs[0]['id']}").status_code == 404
    assert fakecvat.store.find("annotations", lambda a: a["id"] in {j["id"] for j in jobs}) == []
    assert s.get(f"{s.base}/api/jobs?task_id={t['id']}").json()["count"] == 0
