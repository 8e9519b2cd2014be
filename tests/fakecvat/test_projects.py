"""Projects through plain HTTP and through the official cvat-sdk: CRUD, visibility, lists."""
import pytest
import requests
from cvat_sdk import make_client
from cvat_sdk.api_client import exceptions, models

ADMIN = ("admin", "admin")
USER1 = ("user1", "user1-pass")
USER2 = ("user2", "user2-pass")

LABELS = [
    {"name": "cat", "attributes": [{"name": "age", "mutable": False, "input_type": "number",
                                    "values": ["0", "20", "1"]}]},
    {"name": "dog", "color": "#112233", "type": "rectangle"},
]


def api(server, method, path, auth=ADMIN, **kw):
    return requests.request(method, server.url + path, auth=auth, timeout=30, **kw)


def test_create_read_update_delete_over_http(fakecvat):
    r = api(fakecvat, "POST", "/api/projects", json={"name": "birds", "labels": LABELS, "bug_tracker": "http://bt/1"})
    assert r.status_code == 201, r.text
    p = r.json()
    assert p["name"] == "birds" and p["owner"]["username"] == "admin" and p["assignee"] is None
    assert p["tasks"] == {"count": 0, "url": f"{fakecvat.url}/api/tasks?project_id={p['id']}"}
    assert p["labels"] == {"url": f"{fakecvat.url}/api/labels?project_id={p['id']}"}
    assert p["organization"] is None and p["status"] == "annotation"
    assert p["target_storage"]["location"] == "local" and p["source_storage"]["location"] == "local"
    assert p["url"] == f"{fakecvat.url}/api/projects/{p['id']}"

    assert api(fakecvat, "GET", f"/api/projects/{p['id']}").json() == p

    r = api(fakecvat, "PATCH", f"/api/projects/{p['id']}", json={"name": "birds2", "assignee_id": 2})
    assert r.status_code == 200
    assert r.json()["name"] == "birds2" and r.json()["assignee"]["username"] == "user1"
    assert r.json()["updated_date"] >= p["updated_date"] and r.json()["assignee_updated_date"]

    assert api(fakecvat, "PUT", f"/api/projects/{p['id']}", json={"name": "x"}).status_code == 405
    assert api(fakecvat, "DELETE", f"/api/projects/{p['id']}").status_code == 204
    r = api(fakecvat, "GET", f"/api/projects/{p['id']}")
    assert r.status_code == 404 and r.json() == {"detail": "No Project matches the given query."}
    # its labels went with it
    assert api(fakecvat, "GET", "/api/labels").json()["count"] == 0


def test_sdk_create_retrieve_labels_and_remove(fakecvat):
    with make_client(fakecvat.url, credentials=ADMIN) as client:
        project = client.projects.create(models.ProjectWriteRequest(name="sdk project", labels=LABELS))
        again = client.projects.retrieve(project.id)
        assert again.name == "sdk project" and again.organization is None
        labels = again.get_labels()
        assert [lb.name for lb in labels] == ["cat", "dog"]
        cat = labels[0]
        assert cat.project_id == project.id and cat.attributes[0].default_value == "0"
        assert labels[1].color == "#112233" and labels[1].type == "rectangle"
        assert [p.id for p in client.projects.list()] == [project.id]
        again.update(models.PatchedProjectWriteRequest(name="renamed"))
        assert client.projects.retrieve(project.id).name == "renamed"
        again.remove()
        with pytest.raises(exceptions.NotFoundException):
            client.projects.retrieve(project.id)


def test_invalid_project_bodies(fakecvat):
    r = api(fakecvat, "POST", "/api/projects", json={"labels": []})
    assert r.status_code == 400 and r.json() == {"name": ["This field is required."]}
    r = api(fakecvat, "POST", "/api/projects", json={"name": "p", "labels": [{"name": "a"}, {"type": "tag"}]})
    assert r.status_code == 400 and r.json() == {"labels": [{}, {"name": ["This field is required."]}]}
    # nothing half-created
    assert api(fakecvat, "GET", "/api/projects").json()["count"] == 0
    r = api(fakecvat, "POST", "/api/projects", json={"name": "p", "assignee_id": 999})
    assert r.status_code == 400 and "assignee_id" in r.json()


def test_visibility_between_users(fakecvat):
    pid = api(fakecvat, "POST", "/api/projects", json={"name": "admin's"}).json()["id"]
    r = api(fakecvat, "GET", f"/api/projects/{pid}", auth=USER1)
    assert r.status_code == 403
    assert api(fakecvat, "GET", "/api/projects", auth=USER1).json()["count"] == 0
    assert api(fakecvat, "PATCH", f"/api/projects/{pid}", auth=USER1, json={"name": "mine"}).status_code == 403
    assert api(fakecvat, "DELETE", f"/api/projects/{pid}", auth=USER1).status_code == 403
    assert api(fakecvat, "GET", f"/api/labels?project_id={pid}", auth=USER1).status_code == 403

    own = api(fakecvat, "POST", "/api/projects", auth=USER1, json={"name": "user1's"}).json()
    assert own["owner"]["username"] == "user1"
    listed = api(fakecvat, "GET", "/api/projects", auth=USER1).json()
    assert [p["id"] for p in listed["results"]] == [own["id"]]
    assert api(fakecvat, "GET", "/api/projects").json()["count"] == 2  # admin sees all

    # a non-admin may assign only themselves; an assignee then sees the project
    r = api(fakecvat, "PATCH", f"/api/projects/{own['id']}", auth=USER1, json={"assignee_id": 3})
    assert r.status_code == 403
    api(fakecvat, "PATCH", f"/api/projects/{pid}", json={"assignee_id": 3})
    assert api(fakecvat, "GET", f"/api/projects/{pid}", auth=USER2).status_code == 200
    assert api(fakecvat, "DELETE", f"/api/projects/{pid}", auth=USER2).status_code == 403  # only the owner


def test_list_sort_search_filter_and_pages(fakecvat):
    for i in range(12):
        api(fakecvat, "POST", "/api/projects", json={"name": f"proj {i:02d}" + (" cats" if i % 3 == 0 else "")})
    api(fakecvat, "POST", "/api/projects", auth=USER1, json={"name": "user1 project"})
    page = api(fakecvat, "GET", "/api/projects").json()
    assert page["count"] == 13 and len(page["results"]) == 10
    assert [p["id"] for p in page["results"]] == list(range(13, 3, -1))  # default -id
    assert page["next"] == f"{fakecvat.url}/api/projects?page=2"
    assert len(requests.get(page["next"], auth=ADMIN).json()["results"]) == 3
    names = [p["name"] for p in api(fakecvat, "GET", "/api/projects?search=cats&sort=name").json()["results"]]
    assert names == ["proj 00 cats", "proj 03 cats", "proj 06 cats", "proj 09 cats"]
    r = api(fakecvat, "GET", "/api/projects?owner=user1")
    assert [p["name"] for p in r.json()["results"]] == ["user1 project"]
    flt = '{"and":[{"==":[{"var":"owner"},"admin"]},{"<":[{"var":"id"},3]}]}'
    assert [p["id"] for p in api(fakecvat, "GET", "/api/projects", params={"filter": flt}).json()["results"]] == [2, 1]
    assert api(fakecvat, "GET", "/api/projects?page=5").status_code == 404


def test_deleting_a_project_deletes_its_tasks(fakecvat):
    """Tasks are another engineer's module; plant a task document the way TABLES.md shapes it."""
    pid = api(fakecvat, "POST", "/api/projects", json={"name": "p", "labels": LABELS}).json()["id"]
    store = fakecvat.store
    task = store.insert("tasks", {"name": "t", "project_id": pid, "owner_id": 1, "assignee_id": None,
                                  "created_date": "2024-01-01T00:00:00.000000Z",
                                  "updated_date": "2024-01-01T00:00:00.000000Z", "subset": "train", "data": None})
    assert api(fakecvat, "GET", f"/api/projects/{pid}").json()["tasks"]["count"] == 1
    assert api(fakecvat, "GET", f"/api/projects/{pid}").json()["task_subsets"] == ["train"]
    assert api(fakecvat, "DELETE", f"/api/projects/{pid}").status_code == 204
    assert store.get("tasks", task["id"]) is None
