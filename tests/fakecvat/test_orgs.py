"""Organizations in fakecvat: CRUD, memberships and invitations, the organization context
(X-Organization / org / org_id) on lists and creates, role-based visibility, organization
webhooks, and the official cvat-sdk working inside an organization (it sends ``org_id=``)."""
import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from cvat_sdk import make_client
from PIL import Image

ADMIN = ("admin", "admin")
USER1 = ("user1", "user1-pass")
USER2 = ("user2", "user2-pass")
USER3 = ("user3", "user3-pass")


def api(server, method, path, auth=ADMIN, org=None, **kw):
    headers = kw.pop("headers", {})
    if org is not None:
        headers["X-Organization"] = org
    return requests.request(method, server.url + path, auth=auth, headers=headers, timeout=30, **kw)


def ok(r, status=200):
    assert r.status_code == status, r.text
    return r.json() if r.content else None


@pytest.fixture
def lab(fakecvat):
    """Organization "lab" owned by user1, with user2 as a worker; user3 exists outside it."""
    ok(requests.post(fakecvat.url + "/_fakecvat/users", json={"username": "user3", "password": "user3-pass"}), 201)
    org = ok(api(fakecvat, "POST", "/api/organizations", auth=USER1, json={"slug": "lab", "name": "The Lab"}), 201)
    ok(api(fakecvat, "POST", "/api/invitations", auth=USER1, org="lab",
           json={"role": "worker", "email": "user2@example.com"}), 201)
    return org


def users_of(r) -> set[str]:
    return {m["user"]["username"] for m in ok(r)["results"]}


def make_task(server, auth=USER1, org="lab", **fields):
    body = {"name": "t", "labels": [{"name": "cat"}], "segment_size": 1, **fields}
    body = {k: v for k, v in body.items() if v is not None}
    return api(server, "POST", "/api/tasks", auth=auth, org=org, json=body)


def attach_images(server, task_id, n=2, auth=USER1):
    files = {}
    for i in range(n):
        buf = io.BytesIO()
        Image.new("RGB", (16, 12), (i * 50, 10, 10)).save(buf, "PNG")
        files[f"client_files[{i}]"] = (f"{i}.png", buf.getvalue(), "image/png")
    ok(api(server, "POST", f"/api/tasks/{task_id}/data", auth=auth, files=files,
           data={"image_quality": 70}), 202)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        jobs = ok(api(server, "GET", "/api/jobs", auth=auth, params={"task_id": task_id}))["results"]
        if len(jobs) == n:
            return sorted(jobs, key=lambda j: j["id"])
        time.sleep(0.05)
    raise AssertionError("jobs never appeared")


# ---- CRUD ----------------------------------------------------------------------------------------

def test_creator_owns_the_organization_and_only_members_see_it(fakecvat, lab):
    assert lab["slug"] == "lab" and lab["owner"]["username"] == "user1" and lab["contact"] == {}
    members = ok(api(fakecvat, "GET", "/api/memberships", auth=USER1, org="lab"))["results"]
    assert {(m["user"]["username"], m["role"]) for m in members} == {("user1", "owner"), ("user2", "worker")}
    assert all(m["organization"] == lab["id"] and m["is_active"] for m in members)
    assert [o["slug"] for o in ok(api(fakecvat, "GET", "/api/organizations", auth=USER2))["results"]] == ["lab"]
    assert ok(api(fakecvat, "GET", "/api/organizations", auth=USER3))["count"] == 0
    assert ok(api(fakecvat, "GET", "/api/organizations", auth=ADMIN))["count"] == 1
    assert api(fakecvat, "GET", f"/api/organizations/{lab['id']}", auth=USER3).status_code == 403
    assert api(fakecvat, "GET", "/api/organizations/999").status_code == 404


def test_slug_rules_patch_and_delete(fakecvat, lab):
    r = api(fakecvat, "POST", "/api/organizations", auth=USER2, json={"slug": "lab"})
    assert r.status_code == 400 and "slug" in r.json()
    assert api(fakecvat, "POST", "/api/organizations", json={"slug": "x" * 17}).status_code == 400
    assert api(fakecvat, "POST", "/api/organizations", json={"slug": "no spaces"}).status_code == 400
    assert api(fakecvat, "POST", "/api/organizations", json={"name": "no slug"}).status_code == 400
    assert api(fakecvat, "PATCH", f"/api/organizations/{lab['id']}", auth=USER2, json={"name": "mine"}).status_code == 403
    assert ok(api(fakecvat, "PATCH", f"/api/organizations/{lab['id']}", auth=USER1,
                  json={"name": "Lab 2", "description": "d"}))["name"] == "Lab 2"
    task = ok(make_task(fakecvat), 201)
    sandbox = ok(make_task(fakecvat, org=None), 201)
    assert api(fakecvat, "DELETE", f"/api/organizations/{lab['id']}", auth=USER2).status_code == 403
    ok(api(fakecvat, "DELETE", f"/api/organizations/{lab['id']}", auth=USER1), 204)
    # the organization went with its tasks and memberships; the sandbox task stayed
    assert api(fakecvat, "GET", f"/api/tasks/{task['id']}").status_code == 404
    assert api(fakecvat, "GET", f"/api/tasks/{sandbox['id']}").status_code == 200
    assert api(fakecvat, "GET", "/api/memberships", auth=USER1, org="lab").status_code == 404


def test_memberships_roles_and_leaving(fakecvat, lab):
    ms = {m["user"]["username"]: m for m in ok(api(fakecvat, "GET", "/api/memberships", auth=USER1,
                                                     params={"org": "lab"}))["results"]}
    # a worker cannot promote itself nor touch the owner; the owner's role is fixed
    assert api(fakecvat, "PATCH", f"/api/memberships/{ms['user2']['id']}", auth=USER2,
               json={"role": "maintainer"}).status_code == 403
    assert api(fakecvat, "PATCH", f"/api/memberships/{ms['user1']['id']}", auth=USER1,
               json={"role": "worker"}).status_code == 403
    assert api(fakecvat, "PATCH", f"/api/memberships/{ms['user2']['id']}", auth=USER1,
               json={"role": "boss"}).status_code == 400
    assert ok(api(fakecvat, "PATCH", f"/api/memberships/{ms['user2']['id']}", auth=USER1,
                  json={"role": "maintainer"}))["role"] == "maintainer"
    only_maintainers = ok(api(fakecvat, "GET", "/api/memberships", auth=USER1, org="lab",
                              params={"role": "maintainer"}))["results"]
    assert [m["user"]["username"] for m in only_maintainers] == ["user2"]
    assert api(fakecvat, "GET", f"/api/memberships/{ms['user2']['id']}", auth=USER3).status_code == 403
    ok(api(fakecvat, "DELETE", f"/api/memberships/{ms['user2']['id']}", auth=USER2), 204)  # leaves
    assert users_of(api(fakecvat, "GET", "/api/memberships", auth=USER1, org="lab")) == {"user1"}
    assert api(fakecvat, "GET", "/api/tasks", auth=USER2, org="lab").status_code == 403


def test_invitations_add_members_at_once(fakecvat, lab):
    invs = ok(api(fakecvat, "GET", "/api/invitations", auth=USER1, org="lab"))["results"]
    assert [(i["user"]["username"], i["role"], i["organization_info"]["slug"]) for i in invs] == [("user2", "worker", "lab")]
    # by username too (a fakecvat convenience); a worker may not invite; no such user; a member again
    assert api(fakecvat, "POST", "/api/invitations", auth=USER2, org="lab",
               json={"role": "worker", "username": "user3"}).status_code == 403
    assert api(fakecvat, "POST", "/api/invitations", auth=USER1, org="lab",
               json={"role": "worker", "email": "ghost@example.com"}).status_code == 400
    assert api(fakecvat, "POST", "/api/invitations", auth=USER1, org="lab",
               json={"role": "worker", "email": "user2@example.com"}).status_code == 400
    assert api(fakecvat, "POST", "/api/invitations", auth=USER1, json={"role": "worker", "username": "user3"}).status_code == 403
    inv = ok(api(fakecvat, "POST", "/api/invitations", auth=USER1, org="lab",
                 json={"role": "supervisor", "username": "user3"}), 201)
    assert ok(api(fakecvat, "GET", f"/api/invitations/{inv['key']}", auth=USER3))["role"] == "supervisor"
    assert users_of(api(fakecvat, "GET", "/api/memberships", auth=USER3, org="lab")) == {"user1", "user2", "user3"}
    # withdrawing an accepted invitation leaves the membership; the invitee may not withdraw it
    assert api(fakecvat, "DELETE", f"/api/invitations/{inv['key']}", auth=USER3).status_code == 403
    ok(api(fakecvat, "DELETE", f"/api/invitations/{inv['key']}", auth=USER1), 204)
    assert api(fakecvat, "GET", f"/api/invitations/{inv['key']}", auth=USER1).status_code == 404
    assert "user3" in users_of(api(fakecvat, "GET", "/api/memberships", auth=USER1, org="lab"))


# ---- the context ----------------------------------------------------------------------------------

def test_context_conflicts_unknown_and_empty(fakecvat, lab):
    in_org = ok(make_task(fakecvat), 201)
    in_sandbox = ok(make_task(fakecvat, org=None), 201)
    assert in_org["organization"] == lab["id"] and in_sandbox["organization"] is None
    r = api(fakecvat, "GET", "/api/tasks", auth=USER1, org="lab", params={"org_id": lab["id"]})
    assert r.status_code == 400
    assert api(fakecvat, "GET", "/api/tasks", auth=USER1, org="lab", params={"org": "other"}).status_code == 400
    for kw in ({"org": "nope"}, {"params": {"org": "nope"}}):
        r = api(fakecvat, "GET", "/api/tasks", auth=USER1, **kw)
        assert r.status_code == 404 and r.json() == {"detail": "nope organization does not exist."}
    assert api(fakecvat, "GET", "/api/tasks", auth=USER1, params={"org_id": 999}).status_code == 404

    def ids(**kw):
        return {t["id"] for t in ok(api(fakecvat, "GET", "/api/tasks", auth=USER1, **kw))["results"]}
    assert ids() == {in_org["id"], in_sandbox["id"]}           # no context: everything visible
    assert ids(org="lab") == ids(params={"org_id": lab["id"]}) == {in_org["id"]}
    assert ids(org="") == ids(params={"org": ""}) == {in_sandbox["id"]}  # empty: the sandbox
    # detail endpoints take the organization from the object
    assert api(fakecvat, "GET", f"/api/tasks/{in_org['id']}", auth=USER1).status_code == 200
    # users: in the organization, its members; outside, a user sees only themselves
    assert {u["username"] for u in ok(api(fakecvat, "GET", "/api/users", auth=USER1, org="lab"))["results"]} \
        == {"user1", "user2"}
    assert {u["username"] for u in ok(api(fakecvat, "GET", "/api/users", auth=USER1))["results"]} == {"user1"}
    assert api(fakecvat, "GET", "/api/users", auth=USER3, org="lab").status_code == 403


def test_projects_and_tasks_are_created_in_the_context(fakecvat, lab):
    project = ok(api(fakecvat, "POST", "/api/projects", auth=USER1, org="lab",
                     json={"name": "p", "labels": [{"name": "cat"}]}), 201)
    assert project["organization"] == lab["id"]
    assert ok(make_task(fakecvat, labels=None, project_id=project["id"]), 201)["organization"] == lab["id"]
    r = api(fakecvat, "POST", "/api/tasks", auth=USER1, json={"name": "t", "project_id": project["id"]})
    assert r.status_code == 400 and "project_id" in r.json()  # a sandbox task in an org project
    sandbox_project = ok(api(fakecvat, "POST", "/api/projects", auth=USER1, json={"name": "s"}), 201)
    r = make_task(fakecvat, labels=None, project_id=sandbox_project["id"])
    assert r.status_code == 400
    # workers (and non-members) may not create in the organization
    assert make_task(fakecvat, auth=USER2).status_code == 403
    assert make_task(fakecvat, auth=USER3).status_code == 403
    assert api(fakecvat, "GET", "/api/projects", auth=USER3, org="lab").status_code == 403
    assert [p["id"] for p in ok(api(fakecvat, "GET", "/api/projects", auth=USER1, org="lab"))["results"]] \
        == [project["id"]]
    labels = ok(api(fakecvat, "GET", "/api/labels", auth=USER1, org="lab"))["results"]
    assert [lb["project_id"] for lb in labels] == [project["id"]]


# ---- roles and visibility ---------------------------------------------------------------------------

def test_roles_decide_what_members_see_and_who_may_be_assigned(fakecvat, lab):
    task = ok(make_task(fakecvat), 201)
    jobs = attach_images(fakecvat, task["id"])
    assert all(j["organization"] == lab["id"] for j in jobs)
    # a worker sees nothing it is not staff of
    assert ok(api(fakecvat, "GET", "/api/tasks", auth=USER2, org="lab"))["count"] == 0
    assert api(fakecvat, "GET", f"/api/tasks/{task['id']}", auth=USER2).status_code == 403
    # the owner assigns a member; a non-member cannot be assigned by a non-admin
    ok(api(fakecvat, "PATCH", f"/api/jobs/{jobs[0]['id']}", auth=USER1, json={"assignee": 3}))
    user3 = ok(api(fakecvat, "GET", "/api/users", params={"username": "user3"}))["results"][0]
    assert api(fakecvat, "PATCH", f"/api/jobs/{jobs[1]['id']}", auth=USER1,
               json={"assignee": user3["id"]}).status_code == 403
    assert ok(api(fakecvat, "PATCH", f"/api/jobs/{jobs[1]['id']}", auth=ADMIN,
                  json={"assignee": user3["id"]}))["assignee"]["username"] == "user3"  # admins: anyone
    # the assigned worker sees its job (and may work on it), not the task
    seen = ok(api(fakecvat, "GET", "/api/jobs", auth=USER2, org="lab"))["results"]
    assert [j["id"] for j in seen] == [jobs[0]["id"]]
    ok(api(fakecvat, "PATCH", f"/api/jobs/{jobs[0]['id']}", auth=USER2, json={"state": "in progress"}))
    assert api(fakecvat, "PATCH", f"/api/jobs/{jobs[0]['id']}", auth=USER2, json={"stage": "validation"}).status_code == 403
    # promoted to maintainer, it sees and manages everything in the organization
    m = [m for m in ok(api(fakecvat, "GET", "/api/memberships", auth=USER1, org="lab"))["results"]
         if m["user"]["username"] == "user2"][0]
    ok(api(fakecvat, "PATCH", f"/api/memberships/{m['id']}", auth=USER1, json={"role": "maintainer"}))
    assert ok(api(fakecvat, "GET", "/api/jobs", auth=USER2, org="lab"))["count"] == 2
    ok(api(fakecvat, "PATCH", f"/api/tasks/{task['id']}", auth=USER2, json={"name": "renamed"}))
    ok(api(fakecvat, "PATCH", f"/api/jobs/{jobs[1]['id']}", auth=USER2, json={"stage": "validation"}))
    ok(api(fakecvat, "DELETE", f"/api/tasks/{task['id']}", auth=USER2), 204)


# ---- organization webhooks --------------------------------------------------------------------------

class Receiver:
    """Records the JSON bodies POSTed to it."""

    def __init__(self):
        self.bodies: list[dict] = []
        self.cond = threading.Condition()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with outer.cond:
                    outer.bodies.append(json.loads(raw))
                    outer.cond.notify_all()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, pred, timeout=10.0) -> dict:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                found = [b for b in self.bodies if pred(b)]
                if found:
                    return found[0]
                if not self.cond.wait(max(0.0, deadline - time.monotonic())):
                    raise AssertionError(f"no matching delivery in {[b['event'] for b in self.bodies]}")


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.server.shutdown()
    r.server.server_close()


def test_organization_webhook_gets_events_of_every_object_in_the_org(fakecvat, lab, receiver):
    body = {"target_url": receiver.url, "type": "organization", "events": ["update:job", "create:task",
                                                                            "create:membership"]}
    assert api(fakecvat, "POST", "/api/webhooks", auth=USER2, org="lab", json=body).status_code == 403
    assert api(fakecvat, "POST", "/api/webhooks", auth=USER3, org="lab", json=body).status_code == 403
    hook = ok(api(fakecvat, "POST", "/api/webhooks", auth=USER1, org="lab", json=body), 201)
    assert hook["type"] == "organization" and hook["organization"] == lab["id"] and hook["project_id"] is None
    assert [h["id"] for h in ok(api(fakecvat, "GET", "/api/webhooks", auth=USER1, org="lab"))["results"]] == [hook["id"]]
    assert ok(api(fakecvat, "GET", "/api/webhooks", auth=USER1, org=""))["count"] == 0

    ok(make_task(fakecvat, name="sandbox", org=None), 201)   # outside: no delivery
    task = ok(make_task(fakecvat, name="inside"), 201)        # no project at all: still delivered
    got = receiver.wait_for(lambda b: b["event"] == "create:task")
    assert got["task"]["id"] == task["id"] and got["webhook_id"] == hook["id"]
    jobs = attach_images(fakecvat, task["id"], n=1)
    ok(api(fakecvat, "PATCH", f"/api/jobs/{jobs[0]['id']}", auth=USER1, json={"assignee": 3}))
    got = receiver.wait_for(lambda b: b["event"] == "update:job")
    assert got["job"]["id"] == jobs[0]["id"] and got["job"]["organization"] == lab["id"]
    ok(api(fakecvat, "POST", "/api/invitations", auth=USER1, org="lab", json={"role": "worker", "username": "user3"}), 201)
    got = receiver.wait_for(lambda b: b["event"] == "create:membership")
    assert got["membership"]["user"]["username"] == "user3"
    assert [b["task"]["name"] for b in receiver.bodies if b["event"] == "create:task"] == ["inside"]


# ---- the official SDK -------------------------------------------------------------------------------

def test_cvat_sdk_works_inside_an_organization(fakecvat, tmp_path):
    paths = []
    for i in range(3):
        p = tmp_path / f"{i}.png"
        Image.new("RGB", (20, 10), (i * 60, 0, 0)).save(p)
        paths.append(str(p))
    with make_client(fakecvat.url, credentials=USER1) as client:
        client.config.status_check_period = 0.01
        org = client.organizations.create({"slug": "sdk-org", "name": "SDK"})
        client.organization_slug = "sdk-org"
        task = client.tasks.create_from_data({"name": "in org", "labels": [{"name": "car"}], "segment_size": 2},
                                             resources=paths, data_params={"image_quality": 80})
        assert task.organization == org.id
        jobs = task.get_jobs()  # the SDK sends org_id=<task.organization>
        assert sorted((j.start_frame, j.stop_frame) for j in jobs) == [(0, 1), (2, 2)]
        assert [lb.name for lb in task.get_labels()] == ["car"]
        assert [t.id for t in client.tasks.list()] == [task.id]
        client.organization_slug = ""  # the personal sandbox: the task is not there
        assert client.tasks.list() == []
