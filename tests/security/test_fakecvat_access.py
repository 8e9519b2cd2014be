"""fakecvat's security surface, as a user of a shared test server relies on it.

- anonymous requests are refused (401) on every routed ``/api`` path but the public ones;
- a regular user cannot see or change another user's projects, tasks, jobs, annotations,
  labels, requests or webhooks (403, CVAT's answer for objects that exist but are not visible);
- a job assignee works on its job (read/write annotations, change state) but not on the rest
  of the task; task owners and assignees are staff of all the task's jobs;
- login keys are random, per user, 40 hex characters, and logout revokes them;
- ``fakecvat serve`` binds loopback unless told otherwise;
- uploaded names (multipart, TUS, annotation imports) cannot escape the data dir.
Complements tests/fakecvat/test_auth.py (CSRF, Bearer, Basic) and tests/test_bad_inputs.py
(multipart upload names).
"""
from __future__ import annotations

import base64
import io
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest
import requests
from PIL import Image

ADMIN = ("admin", "admin")
USER1 = ("user1", "user1-pass")
USER2 = ("user2", "user2-pass")

# Paths anyone may call: CVAT's AllowAny views, and the health check outside DRF.
PUBLIC = {"/api/server/about", "/api/auth/login", "/api/auth/register", "/api/auth/logout",
          "/api/auth/password/reset",  # CVAT's dj-rest-auth reset view is AllowAny
          "/api/server/health"}        # django-health-check, outside DRF and its auth


def _png(i: int = 0) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (12, 10), (30 * i, 60, 90)).save(buf, "PNG")
    return buf.getvalue()


class Api:
    """One user's view of the server: ``api.get("/api/tasks/1")`` etc."""

    def __init__(self, url: str, auth):
        self.url, self.s = url, requests.Session()
        self.s.auth = auth

    def __getattr__(self, method):
        return lambda path, **kw: self.s.request(method.upper(), self.url + path, timeout=30, **kw)


def _task_with_data(api: Api, name: str, n: int = 2, **fields) -> dict:
    task = api.post("/api/tasks", json={"name": name, "labels": [{"name": "cat"}], "segment_size": 1, **fields})
    assert task.status_code == 201, task.text
    task = task.json()
    files = {f"client_files[{i}]": (f"{i}.png", _png(i), "image/png") for i in range(n)}
    r = api.post(f"/api/tasks/{task['id']}/data", files=files, data={"image_quality": "70"})
    assert r.status_code == 202, r.text
    for _ in range(100):
        rq = api.get(f"/api/requests/{quote(r.json()['rq_id'], safe='')}").json()
        if rq["status"] in ("finished", "failed"):
            break
        time.sleep(0.05)
    assert rq["status"] == "finished", rq
    return api.get(f"/api/tasks/{task['id']}").json()


def _jobs(api: Api, task_id: int) -> list[dict]:
    return sorted(api.get(f"/api/jobs?task_id={task_id}").json()["results"], key=lambda j: j["id"])


def _user_id(api: Api, username: str) -> int:
    return next(u["id"] for u in api.get("/api/users?page_size=all").json()["results"] if u["username"] == username)


ANNOTATIONS = {"version": 0, "tags": [], "tracks": [],
               "shapes": [{"type": "rectangle", "frame": 0, "label_id": None, "points": [1, 1, 4, 4], "attributes": []}]}


def _annotations(label_id: int, frame: int = 0) -> dict:
    doc = {**ANNOTATIONS, "shapes": [dict(ANNOTATIONS["shapes"][0], label_id=label_id, frame=frame)]}
    return doc


# ---- anonymous ----------------------------------------------------------------------------------

def _concrete(rule: str) -> str:
    return re.sub(r"<(?:int:)?[^>]+>", lambda m: "1" if m.group(0).startswith("<int:") else "x", rule)


def test_anonymous_is_refused_on_every_routed_api_path(fakecvat):
    checked, wrong = 0, []
    for rule in fakecvat.app.url_map.iter_rules():
        if not rule.rule.startswith("/api/") or rule.rule.rstrip("/") in PUBLIC:
            continue
        for method in sorted((rule.methods or set()) - {"OPTIONS"}):
            r = requests.request(method, fakecvat.url + _concrete(rule.rule), timeout=30)
            checked += 1
            if r.status_code != 401 or r.headers.get("WWW-Authenticate") != "Token":
                wrong.append(f"{method} {rule.rule}: {r.status_code}")
    assert checked > 80 and not wrong, wrong


def test_anonymous_is_refused_on_unrouted_api_paths_too(fakecvat):
    # an unimplemented endpoint must not tell an anonymous caller what exists
    assert requests.get(fakecvat.url + "/api/quality/reports", timeout=30).status_code == 401


@pytest.mark.parametrize("path,ok", [("/api/server/about", 200), ("/api/auth/logout", 200)])
def test_public_paths_answer_anonymously(fakecvat, path, ok):
    method = "GET" if "about" in path else "POST"
    assert requests.request(method, fakecvat.url + path, timeout=30).status_code == ok


def test_bad_credentials_are_401_not_anonymous(fakecvat):
    for header in ("Token " + "0" * 40, "Bearer nope", "Basic " + base64.b64encode(b"admin:wrong").decode()):
        r = requests.get(fakecvat.url + "/api/server/about", headers={"Authorization": header}, timeout=30)
        assert r.status_code == 401, header  # a wrong credential is never downgraded to anonymous


# ---- who sees what --------------------------------------------------------------------------------

@pytest.fixture
def world(fakecvat):
    """admin's project with a task (two one-frame jobs, annotations, a webhook, an export
    request), and user2's own task."""
    url = fakecvat.url
    admin, u1, u2 = Api(url, ADMIN), Api(url, USER1), Api(url, USER2)
    project = admin.post("/api/projects", json={"name": "secret", "labels": [{"name": "cat"}]}).json()
    task = _task_with_data(admin, "admin task", project_id=project["id"], labels=[])
    jobs = _jobs(admin, task["id"])
    label = admin.get(f"/api/labels?task_id={task['id']}").json()["results"][0]
    assert admin.put(f"/api/jobs/{jobs[0]['id']}/annotations", json=_annotations(label["id"])).status_code == 200
    hook = admin.post("/api/webhooks", json={"target_url": "http://127.0.0.1:9/never", "type": "project",
                                             "project_id": project["id"], "events": ["update:job"],
                                             "is_active": False}).json()
    export = admin.post(f"/api/tasks/{task['id']}/dataset/export?format=CVAT%20for%20images%201.1&save_images=False")
    assert export.status_code == 202, export.text
    own2 = _task_with_data(u2, "user2 task")
    return dict(admin=admin, u1=u1, u2=u2, project=project, task=task, jobs=jobs, label=label, hook=hook,
                rq=quote(export.json()["rq_id"], safe=""), own2=own2)


def test_stranger_cannot_see_or_change_anything_of_another_user(world):
    w, u1 = world, world["u1"]
    p, t, j, lb, h = w["project"]["id"], w["task"]["id"], w["jobs"][0]["id"], w["label"]["id"], w["hook"]["id"]
    t2 = w["own2"]["id"]
    forbidden = [
        ("get", f"/api/projects/{p}", None), ("patch", f"/api/projects/{p}", {"name": "x"}),
        ("delete", f"/api/projects/{p}", None),
        ("post", f"/api/projects/{p}/dataset/export?format=CVAT%20for%20images%201.1", None),
        ("get", f"/api/tasks/{t}", None), ("patch", f"/api/tasks/{t}", {"name": "x"}),
        ("delete", f"/api/tasks/{t}", None), ("get", f"/api/tasks/{t2}", None),
        ("get", f"/api/tasks/{t}/data/meta", None), ("get", f"/api/tasks/{t}/data?type=frame&number=0&quality=original", None),
        ("get", f"/api/tasks/{t}/preview", None),
        ("post", f"/api/tasks/{t}/data", {"image_quality": 70, "server_files": ["a.png"]}),
        ("get", f"/api/tasks/{t}/annotations", None), ("put", f"/api/tasks/{t}/annotations", ANNOTATIONS),
        ("delete", f"/api/tasks/{t}/annotations", None),
        ("post", f"/api/tasks/{t}/dataset/export?format=CVAT%20for%20images%201.1", None),
        ("get", f"/api/jobs/{j}", None), ("patch", f"/api/jobs/{j}", {"state": "completed"}),
        ("get", f"/api/jobs/{j}/annotations", None), ("put", f"/api/jobs/{j}/annotations", ANNOTATIONS),
        ("patch", f"/api/jobs/{j}/annotations?action=create", _annotations(lb)),
        ("delete", f"/api/jobs/{j}/annotations", None),
        ("get", f"/api/jobs/{j}/data/meta", None), ("get", f"/api/jobs/{j}/data?type=frame&number=0&quality=original", None),
        ("get", f"/api/labels/{lb}", None), ("patch", f"/api/labels/{lb}", {"name": "x"}),
        ("delete", f"/api/labels/{lb}", None), ("get", f"/api/labels?task_id={t}", None),
        ("get", f"/api/requests/{w['rq']}", None),
        ("get", f"/api/webhooks/{h}", None), ("patch", f"/api/webhooks/{h}", {"description": "x"}),
        ("delete", f"/api/webhooks/{h}", None), ("get", f"/api/webhooks/{h}/deliveries", None),
        ("post", f"/api/webhooks/{h}/ping", None),
        ("post", "/api/webhooks", {"target_url": "http://127.0.0.1:9/x", "type": "project", "project_id": p,
                                   "events": ["update:job"]}),
    ]
    wrong = []
    for method, path, body in forbidden:
        r = getattr(u1, method)(path, json=body) if body is not None else getattr(u1, method)(path)
        if r.status_code != 403:
            wrong.append(f"{method.upper()} {path}: {r.status_code} {r.text[:120]}")
    assert not wrong, wrong
    # and lists do not leak them
    assert u1.get("/api/projects").json()["count"] == 0
    assert u1.get("/api/tasks").json()["count"] == 0
    assert u1.get("/api/jobs").json()["count"] == 0
    assert u1.get("/api/labels").json()["count"] == 0
    assert u1.get("/api/requests").json()["count"] == 0
    assert u1.get("/api/webhooks").json()["count"] == 0
    # nothing changed for the owner
    admin = w["admin"]
    assert admin.get(f"/api/tasks/{t}").json()["name"] == "admin task"
    assert len(admin.get(f"/api/jobs/{j}/annotations").json()["shapes"]) == 1
    assert admin.get(f"/api/labels/{lb}").json()["name"] == "cat"


def test_job_assignee_works_on_its_job_only(world):
    w, admin, u1 = world, world["admin"], world["u1"]
    t, (mine, other), lb = w["task"]["id"], w["jobs"], w["label"]["id"]
    uid = _user_id(admin, "user1")
    assert admin.patch(f"/api/jobs/{mine['id']}", json={"assignee": uid}).status_code == 200

    assert u1.get(f"/api/jobs/{mine['id']}").status_code == 200
    assert [j["id"] for j in u1.get("/api/jobs").json()["results"]] == [mine["id"]]
    assert len(u1.get(f"/api/jobs/{mine['id']}/annotations").json()["shapes"]) == 1
    r = u1.patch(f"/api/jobs/{mine['id']}/annotations?action=create", json=_annotations(lb, frame=mine["start_frame"]))
    assert r.status_code == 200, r.text
    assert u1.put(f"/api/jobs/{mine['id']}/annotations", json=_annotations(lb, mine["start_frame"])).status_code == 200
    assert u1.patch(f"/api/jobs/{mine['id']}", json={"state": "completed"}).status_code == 200
    assert u1.get(f"/api/jobs/{mine['id']}/data?type=frame&number={mine['start_frame']}&quality=original").status_code == 200
    # not the stage (task staff decide), not another job, not the task's annotations or settings
    assert u1.patch(f"/api/jobs/{mine['id']}", json={"stage": "acceptance"}).status_code == 403
    assert u1.get(f"/api/jobs/{other['id']}").status_code == 403
    assert u1.get(f"/api/jobs/{other['id']}/annotations").status_code == 403
    assert u1.put(f"/api/jobs/{other['id']}/annotations", json=ANNOTATIONS).status_code == 403
    assert u1.get(f"/api/tasks/{t}/annotations").status_code == 403
    assert u1.put(f"/api/tasks/{t}/annotations", json=ANNOTATIONS).status_code == 403
    assert u1.delete(f"/api/tasks/{t}/annotations").status_code == 403
    assert u1.get(f"/api/tasks/{t}").status_code == 403  # CVAT: a job assignee is not task staff
    assert u1.get(f"/api/projects/{w['project']['id']}").status_code == 403
    assert u1.get("/api/tasks").json()["count"] == 0 and u1.get("/api/projects").json()["count"] == 0
    assert u1.get(f"/api/labels?job_id={mine['id']}").json()["count"] == 1  # its job's labels, still
    assert u1.patch(f"/api/tasks/{t}", json={"name": "mine now"}).status_code == 403
    assert u1.delete(f"/api/tasks/{t}").status_code == 403
    assert w["u2"].get(f"/api/jobs/{mine['id']}/annotations").status_code == 403  # still nobody else's


def test_task_owner_and_assignee_are_staff_of_its_jobs(world):
    w, admin, u1, u2 = world, world["admin"], world["u1"], world["u2"]
    t2 = w["own2"]
    job = _jobs(u2, t2["id"])[0]
    label = u2.get(f"/api/labels?task_id={t2['id']}").json()["results"][0]["id"]
    # the owner: everything on its own task
    assert u2.put(f"/api/jobs/{job['id']}/annotations", json=_annotations(label, job["start_frame"])).status_code == 200
    assert u2.get(f"/api/tasks/{t2['id']}/annotations").status_code == 200
    # the task's assignee (set by an admin) reads and writes the task's and its jobs' annotations
    assert u1.get(f"/api/tasks/{t2['id']}").status_code == 403
    assert admin.patch(f"/api/tasks/{t2['id']}", json={"assignee_id": _user_id(admin, "user1")}).status_code == 200
    assert u1.get(f"/api/tasks/{t2['id']}").status_code == 200
    assert u1.get(f"/api/jobs/{job['id']}/annotations").status_code == 200
    assert u1.put(f"/api/tasks/{t2['id']}/annotations", json=_annotations(label, 0)).status_code == 200
    assert u1.patch(f"/api/jobs/{job['id']}", json={"stage": "validation"}).status_code == 200
    # but owner-only scopes (CVAT tasks.rego: delete, update owner/assignee/project) stay the owner's
    assert u1.delete(f"/api/tasks/{t2['id']}").status_code == 403
    assert u1.patch(f"/api/tasks/{t2['id']}", json={"owner_id": _user_id(admin, "user1")}).status_code == 403
    assert u2.delete(f"/api/tasks/{t2['id']}").status_code == 204


def test_requests_are_their_owners_only(world):
    w = world
    t2 = w["own2"]["id"]
    r = w["u2"].post(f"/api/tasks/{t2}/dataset/export?format=CVAT%20for%20images%201.1&save_images=False")
    rq = quote(r.json()["rq_id"], safe="")
    assert w["u2"].get(f"/api/requests/{rq}").status_code == 200
    assert w["u1"].get(f"/api/requests/{rq}").status_code == 403
    assert all(x["owner"]["username"] == "user2" for x in w["u2"].get("/api/requests").json()["results"])


# ---- tokens ------------------------------------------------------------------------------------

def _login(url: str, user, password) -> tuple[requests.Session, str]:
    s = requests.Session()
    r = s.post(url + "/api/auth/login", json={"username": user, "password": password}, timeout=30)
    assert r.status_code == 200, r.text
    return s, r.json()["key"]


def test_login_keys_are_random_per_user_and_revocable(fakecvat):
    s1, k1 = _login(fakecvat.url, *USER1)
    s2, k2 = _login(fakecvat.url, *USER2)
    _, k_admin = _login(fakecvat.url, *ADMIN)
    assert len({k1, k2, k_admin}) == 3
    assert all(re.fullmatch(r"[0-9a-f]{40}", k) for k in (k1, k2, k_admin))
    assert s1.cookies["sessionid"] != s2.cookies["sessionid"] and s1.cookies["csrftoken"] != s2.cookies["csrftoken"]
    # logout revokes the key: a new login gets a new one, the old one is dead, others unaffected
    s1.post(fakecvat.url + "/api/auth/logout", headers={"X-CSRFToken": s1.cookies["csrftoken"]}, timeout=30)
    _, k1b = _login(fakecvat.url, *USER1)
    assert k1b != k1
    who = lambda k: requests.get(fakecvat.url + "/api/users/self", headers={"Authorization": f"Token {k}"}, timeout=30)
    assert who(k1).status_code == 401
    assert who(k1b).json()["username"] == "user1" and who(k2).json()["username"] == "user2"


def test_personal_access_tokens_are_random_and_not_shown_again(fakecvat):
    s, _ = _login(fakecvat.url, *USER1)
    s.headers["X-CSRFToken"] = s.cookies["csrftoken"]
    a = s.post(fakecvat.url + "/api/auth/access_tokens", json={"name": "a"}, timeout=30).json()
    b = s.post(fakecvat.url + "/api/auth/access_tokens", json={"name": "b"}, timeout=30).json()
    assert a["value"] != b["value"] and min(len(a["value"]), len(b["value"])) >= 32
    listed = s.get(fakecvat.url + "/api/auth/access_tokens", timeout=30).text
    assert a["value"] not in listed and b["value"] not in listed


# ---- binding ------------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening_addresses(port: int) -> set[str]:
    """Local addresses (hex, as /proc/net/tcp writes them) of sockets listening on ``port``."""
    out = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            addr, hexport = fields[1].rsplit(":", 1)
            if int(hexport, 16) == port and fields[3] == "0A":  # 0A: LISTEN
                out.add(addr)
    return out


@pytest.mark.skipif(not os.path.exists("/proc/net/tcp"), reason="reads Linux's socket table")
def test_fakecvat_serve_binds_loopback_by_default(tmp_path):
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "fakecvat", "serve", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        line = proc.stderr.readline()
        assert f"serving on http://127.0.0.1:{port}" in line, line
        assert requests.get(f"http://127.0.0.1:{port}/api/server/about", timeout=30).status_code == 200
        assert _listening_addresses(port) == {"0100007F"}  # 127.0.0.1, and nothing else
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stderr.close()


# ---- uploaded names ------------------------------------------------------------------------------

def _files_outside(root: Path, inside: Path) -> set[str]:
    return {str(p) for p in root.rglob("*") if p.is_file() and inside not in p.parents}


def _tus_metadata(name: str) -> str:
    return "filename " + base64.b64encode(name.encode()).decode()


@pytest.mark.parametrize("name", ["../../EVIL", "/tmp/EVIL", "..\\..\\EVIL", "sub/../../EVIL"])
def test_tus_upload_names_cannot_escape_the_data_dir(tmp_path, fakecvat_factory, name):
    evil = f"evil-{uuid.uuid4().hex}.png"  # unique, so that /tmp can be checked too
    name = name.replace("EVIL", evil)
    data = tmp_path / "data"
    server = fakecvat_factory(data_dir=data)
    api = Api(server.url, ADMIN)
    before = _files_outside(tmp_path, data)
    tid = api.post("/api/tasks", json={"name": "t", "labels": [{"name": "a"}]}).json()["id"]
    body = _png()
    assert api.post(f"/api/tasks/{tid}/data", headers={"Upload-Start": "true"}).status_code == 202
    r = api.post(f"/api/tasks/{tid}/data", headers={"Tus-Resumable": "1.0.0", "Upload-Length": str(len(body)),
                                                     "Upload-Metadata": _tus_metadata(name)})
    if r.status_code == 201:
        assert r.headers["Upload-Filename"] == evil  # the basename, as CVAT keeps it
        r = api.patch(r.headers["Location"].replace(server.url, ""), data=body,
                      headers={"Tus-Resumable": "1.0.0", "Upload-Offset": "0",
                               "Content-Type": "application/offset+octet-stream"})
        assert r.status_code == 204
    else:
        assert r.status_code == 400
    assert _files_outside(tmp_path, data) == before
    assert not (Path("/tmp") / evil).exists()
    assert [p.name for p in data.rglob(evil)], "the upload itself went into the data dir"


@pytest.mark.parametrize("name", ["../../../evil.xml", "/etc/passwd", "..", "a\x00b.xml"])
def test_annotation_import_names_cannot_escape_the_data_dir(tmp_path, fakecvat_factory, name):
    data = tmp_path / "data"
    server = fakecvat_factory(data_dir=data)
    api = Api(server.url, ADMIN)
    task = _task_with_data(api, "t", n=1)
    before = _files_outside(tmp_path, data)
    fmt = "?format=CVAT%201.1"
    # multipart: the file's name
    r = api.post(f"/api/tasks/{task['id']}/annotations{fmt}",
                 files={"annotation_file": (name, b"<annotations/>", "application/xml")})
    assert r.status_code in (202, 400), r.text
    # TUS: the metadata name, then Upload-Finish naming a file outside the upload dir
    r = api.post(f"/api/tasks/{task['id']}/annotations{fmt}",
                 headers={"Tus-Resumable": "1.0.0", "Upload-Length": "3", "Upload-Metadata": _tus_metadata(name)})
    assert r.status_code in (201, 400, 409), r.text
    r = api.post(f"/api/tasks/{task['id']}/annotations{fmt}&filename={quote(name, safe='')}",
                 headers={"Upload-Finish": "true"})
    assert r.status_code == 400, r.text  # never reads a file by a name that leaves the upload dir
    assert _files_outside(tmp_path, data) == before


def test_csrf_foreign_origin_and_token_from_another_session_are_refused(fakecvat):
    # (missing and wrong tokens: tests/fakecvat/test_auth.py)
    s, _ = _login(fakecvat.url, *USER1)
    other, _ = _login(fakecvat.url, *USER2)
    url = fakecvat.url + "/api/tasks"
    r = s.post(url, json={"name": "x"}, headers={"X-CSRFToken": s.cookies["csrftoken"],
                                                 "Origin": "http://evil.example"}, timeout=30)
    assert r.status_code == 403 and "Origin" in r.json()["detail"]
    r = s.post(url, json={"name": "x"}, headers={"X-CSRFToken": other.cookies["csrftoken"]}, timeout=30)
    assert r.status_code == 403 and "CSRF" in r.json()["detail"]
    r = s.post(url, json={"name": "x", "labels": [{"name": "a"}]}, timeout=30,
               headers={"X-CSRFToken": s.cookies["csrftoken"], "Origin": fakecvat.url})
    assert r.status_code == 201, r.text
    assert s.get(url, timeout=30).status_code == 200  # safe methods need no token
