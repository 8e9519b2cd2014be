"""Labels: CVAT's validation errors, parent-PATCH semantics, /api/labels lists and details."""
import requests
from cvat_sdk import make_client

ADMIN = ("admin", "admin")
USER1 = ("user1", "user1-pass")


def api(server, method, path, auth=ADMIN, **kw):
    return requests.request(method, server.url + path, auth=auth, timeout=30, **kw)


def make_project(server, labels, auth=ADMIN):
    r = api(server, "POST", "/api/projects", auth=auth, json={"name": "p", "labels": labels})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def labels_of(server, pid, auth=ADMIN):
    r = api(server, "GET", f"/api/labels?project_id={pid}&page_size=all", auth=auth)
    assert r.status_code == 200, r.text
    return r.json()["results"]


def attr(name, input_type="select", values=("a", "b"), **kw):
    return {"name": name, "mutable": False, "input_type": input_type, "values": list(values), **kw}


def test_validation_errors_are_aligned_with_items(fakecvat):
    bad = [
        {"name": "ok"},
        {"name": "x" * 65},
        {"name": "ok"},
        {"name": "shape", "type": "circle"},
        {"name": "attrs", "attributes": [attr("a"), {"name": "b", "input_type": "select"}, attr("a"),
                                         attr("c", input_type="slider")]},
    ]
    r = api(fakecvat, "POST", "/api/projects", json={"name": "p", "labels": bad})
    assert r.status_code == 400
    err = r.json()["labels"]
    assert len(err) == 5 and err[0] == {}
    assert err[1] == {"name": ["Ensure this field has no more than 64 characters."]}
    assert "already exists" in err[2]["name"][0]
    assert err[3] == {"type": ['"circle" is not a valid choice.']}
    a = err[4]["attributes"]
    assert a[0] == {}
    assert a[1] == {"mutable": ["This field is required."], "values": ["This field is required."]}
    assert "Duplicate attribute" in a[2]["name"][0]
    assert a[3] == {"input_type": ['"slider" is not a valid choice.']}


def test_defaults_colours_and_serialized_shape(fakecvat):
    pid = make_project(fakecvat, [
        {"name": "car", "attributes": [attr("make", values=["vw", "bmw"]), attr("note", "text", values=[]),
                                       attr("size", "number", values=["0", "10", "1"], default_value="5")]},
        {"name": "bus", "color": "#00ff00"},
        {"name": "person", "type": "skeleton", "svg": '<circle data-label-name="head"/>',
         "sublabels": [{"name": "head"}, {"name": "foot"}]},
    ])
    car, bus, person = labels_of(fakecvat, pid)
    assert set(car) >= {"id", "name", "color", "attributes", "type", "svg", "sublabels", "parent_id",
                        "has_parent", "project_id"}
    assert "task_id" not in car and car["project_id"] == pid and car["type"] == "any"
    assert [a["default_value"] for a in car["attributes"]] == ["vw", "", "5"]
    assert bus["color"] == "#00ff00" and car["color"] != bus["color"] and car["color"].startswith("#")
    assert [s["name"] for s in person["sublabels"]] == ["head", "foot"]
    assert all(s["type"] == "points" and s["has_parent"] for s in person["sublabels"])
    head_id = person["sublabels"][0]["id"]
    assert person["svg"] == f'<circle data-label-id="{head_id}"/>'  # names rewritten to ids
    assert len({car["color"], bus["color"]} | {s["color"] for s in person["sublabels"]}) == 4


def test_project_patch_semantics(fakecvat):
    pid = make_project(fakecvat, [{"name": "a", "attributes": [attr("x")]}, {"name": "b"}, {"name": "c"}])
    a, b, c = labels_of(fakecvat, pid)
    before = api(fakecvat, "GET", f"/api/projects/{pid}").json()["updated_date"]
    patch = [
        {"id": a["id"], "name": "a2", "attributes": [{"id": a["attributes"][0]["id"], "values": ["p", "q"]},
                                                     attr("y", "checkbox", values=["false"])]},
        {"id": b["id"], "deleted": True},
        {"name": "d"},
    ]
    r = api(fakecvat, "PATCH", f"/api/projects/{pid}", json={"labels": patch})
    assert r.status_code == 200, r.text
    assert r.json()["updated_date"] > before
    got = {lb["name"]: lb for lb in labels_of(fakecvat, pid)}
    assert set(got) == {"a2", "c", "d"}  # c untouched, b gone, d new
    assert got["a2"]["id"] == a["id"]
    x, y = got["a2"]["attributes"]
    assert (x["id"], x["name"], x["values"], x["default_value"]) == (a["attributes"][0]["id"], "x", ["p", "q"], "p")
    assert y["name"] == "y" and y["default_value"] == "false"
    # attributes are never removed by PATCH; get-or-create by name keeps the id
    r = api(fakecvat, "PATCH", f"/api/projects/{pid}", json={"labels": [{"id": a["id"], "attributes": [attr("x")]}]})
    assert [at["id"] for at in labels_of(fakecvat, pid)[0]["attributes"]] == [x["id"], y["id"]]
    # bad items leave everything as it was
    r = api(fakecvat, "PATCH", f"/api/projects/{pid}", json={"name": "renamed", "labels": [{"name": "e"}, {"name": "c"}]})
    assert r.status_code == 400 and r.json()["labels"][0] == {}
    assert {lb["name"] for lb in labels_of(fakecvat, pid)} == {"a2", "c", "d"}
    assert api(fakecvat, "GET", f"/api/projects/{pid}").json()["name"] == "p"
    r = api(fakecvat, "PATCH", f"/api/projects/{pid}", json={"labels": [{"id": 9999, "name": "zz"}]})
    assert r.status_code == 400


def test_label_detail_patch_delete_and_put(fakecvat):
    pid = make_project(fakecvat, [{"name": "a"}, {"name": "b"},
                                  {"name": "s", "type": "skeleton", "sublabels": [{"name": "k"}]}])
    a, b, s = labels_of(fakecvat, pid)
    assert api(fakecvat, "GET", f"/api/labels/{a['id']}").json() == a
    r = api(fakecvat, "PATCH", f"/api/labels/{a['id']}", json={"name": "a2", "color": "#abcdef", "type": "tag"})
    assert r.status_code == 200 and (r.json()["name"], r.json()["color"], r.json()["type"]) == ("a2", "#abcdef", "tag")
    assert api(fakecvat, "PATCH", f"/api/labels/{a['id']}", json={"name": "b"}).status_code == 400
    assert api(fakecvat, "PATCH", f"/api/labels/{a['id']}", json={"deleted": True}).status_code == 400
    # a skeleton stays a skeleton (silently), nothing becomes one
    assert api(fakecvat, "PATCH", f"/api/labels/{s['id']}", json={"type": "any"}).json()["type"] == "skeleton"
    assert api(fakecvat, "PATCH", f"/api/labels/{b['id']}", json={"type": "skeleton"}).json()["type"] == "any"
    sub = s["sublabels"][0]["id"]
    assert api(fakecvat, "PATCH", f"/api/labels/{sub}", json={"name": "z"}).status_code == 400
    assert api(fakecvat, "DELETE", f"/api/labels/{sub}").status_code == 400
    assert api(fakecvat, "PUT", f"/api/labels/{a['id']}", json={"name": "q"}).status_code == 405
    before = api(fakecvat, "GET", f"/api/projects/{pid}").json()["updated_date"]
    assert api(fakecvat, "DELETE", f"/api/labels/{s['id']}").status_code == 204
    assert api(fakecvat, "GET", f"/api/labels/{sub}").status_code == 404  # sublabels go too
    assert api(fakecvat, "GET", f"/api/projects/{pid}").json()["updated_date"] > before
    assert api(fakecvat, "GET", "/api/labels/9999").json() == {"detail": "No Label matches the given query."}


def test_label_lists_pagination_filters_and_visibility(fakecvat):
    pid = make_project(fakecvat, [{"name": f"l{i:02d}", "type": "tag" if i % 2 else "rectangle"} for i in range(13)])
    page1 = api(fakecvat, "GET", f"/api/labels?project_id={pid}").json()
    assert page1["count"] == 13 and len(page1["results"]) == 10
    assert [lb["name"] for lb in page1["results"]] == [f"l{i:02d}" for i in range(10)]  # ordered by id
    page2 = requests.get(page1["next"], auth=ADMIN).json()
    assert [lb["name"] for lb in page2["results"]] == ["l10", "l11", "l12"] and page2["next"] is None
    assert api(fakecvat, "GET", f"/api/labels?project_id={pid}&type=tag").json()["count"] == 6
    assert api(fakecvat, "GET", f"/api/labels?project_id={pid}&sort=-name&page_size=1").json()["results"][0]["name"] == "l12"
    r = api(fakecvat, "GET", f"/api/labels?project_id={pid}&task_id=1")
    assert r.status_code == 400
    assert r.json() == ["job_id, task_id and project_id parameters cannot be used together"]
    # user1 sees none of admin's labels, but their own
    assert api(fakecvat, "GET", "/api/labels", auth=USER1).json()["count"] == 0
    lid = page1["results"][0]["id"]
    assert api(fakecvat, "GET", f"/api/labels/{lid}", auth=USER1).status_code == 403
    assert api(fakecvat, "PATCH", f"/api/labels/{lid}", auth=USER1, json={"name": "x"}).status_code == 403
    own = make_project(fakecvat, [{"name": "mine"}], auth=USER1)
    assert [lb["name"] for lb in api(fakecvat, "GET", "/api/labels", auth=USER1).json()["results"]] == ["mine"]
    assert labels_of(fakecvat, own, auth=USER1)[0]["project_id"] == own


def test_task_in_project_uses_project_labels(fakecvat):
    """The task document is planted as TABLES.md shapes it (tasks are another module)."""
    pid = make_project(fakecvat, [{"name": "cat"}])
    task = fakecvat.store.insert("tasks", {"name": "t", "project_id": pid, "owner_id": 1, "assignee_id": None,
                                           "updated_date": "2024-01-01T00:00:00.000000Z"})
    r = api(fakecvat, "GET", f"/api/labels?task_id={task['id']}")
    assert r.status_code == 200
    [lb] = r.json()["results"]
    assert lb["name"] == "cat" and lb["project_id"] == pid and "task_id" not in lb


def test_sdk_reads_labels_with_skeletons(fakecvat):
    pid = make_project(fakecvat, [{"name": "s", "type": "skeleton", "sublabels": [{"name": "k1"}, {"name": "k2"}],
                                   "attributes": [attr("v", "radio")]}])
    with make_client(fakecvat.url, credentials=ADMIN) as client:
        [lb] = client.projects.retrieve(pid).get_labels()
        assert lb.type == "skeleton" and [s.name for s in lb.sublabels] == ["k1", "k2"]
        assert lb.attributes[0].input_type.value == "radio"


def test_task_labels_and_project_labels_through_the_task_api(fakecvat):
    r = api(fakecvat, "POST", "/api/tasks", json={"name": "t", "labels": [{"name": "own"}]})
    assert r.status_code == 201, r.text
    tid = r.json()["id"]
    [lb] = api(fakecvat, "GET", f"/api/labels?task_id={tid}").json()["results"]
    assert lb["task_id"] == tid and "project_id" not in lb
    r = api(fakecvat, "PATCH", f"/api/tasks/{tid}", json={"labels": [{"id": lb["id"], "name": "own2"}, {"name": "more"}]})
    assert r.status_code == 200, r.text
    names = [x["name"] for x in api(fakecvat, "GET", f"/api/labels?task_id={tid}").json()["results"]]
    assert names == ["own2", "more"]

    pid = make_project(fakecvat, [{"name": "shared"}])
    r = api(fakecvat, "POST", "/api/tasks", json={"name": "in project", "project_id": pid})
    assert r.status_code == 201, r.text
    with make_client(fakecvat.url, credentials=ADMIN) as client:
        [lb] = client.tasks.retrieve(r.json()["id"]).get_labels()
        assert lb.name == "shared" and lb.project_id == pid
    # deleting the project's label is seen through the task
    assert api(fakecvat, "DELETE", f"/api/labels/{lb.id}").status_code == 204
    assert api(fakecvat, "GET", f"/api/labels?task_id={r.json()['id']}").json()["count"] == 0
