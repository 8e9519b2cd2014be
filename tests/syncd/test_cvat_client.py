"""syncd.cvat.CVATClient against a real (fake) CVAT server on loopback: auth, pagination,
retries under injected faults, error messages, secrecy of credentials, tasks/jobs/annotations."""
from __future__ import annotations

import http.server
import logging
import socket
import threading
import time

import pytest
import requests

from syncd.cvat import CVATClient, CVATError, client_from_env
from syncd.errors import SyncdError


def admin(server, **kw) -> CVATClient:
    kw.setdefault("backoff", 0.01)
    return CVATClient(server.url, username="admin", password="admin", **kw)


def fault(server, **rule) -> None:
    r = requests.post(server.url + "/_fakecvat/faults", json=rule)
    assert r.status_code == 201, r.text


def fault_hits(server) -> list[int]:
    return [rule["hits"] for rule in requests.get(server.url + "/_fakecvat/faults").json()["rules"]]


# ---- the environment: proxies ---------------------------------------------------------------------

class _RecordingProxy:
    """A forward proxy that answers every request itself (a CVAT "about"), recording its target."""

    def __init__(self):
        seen = self.seen = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                seen.append(self.path)  # a proxied request names the absolute URL
                body = b'{"name": "Computer Vision Annotation Tool", "version": "2.52.0"}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_proxy_variables_of_the_environment_are_honoured(monkeypatch):
    """The proxy environment is read once per client (not before every request), and still used:
    HTTP_PROXY routes the client's requests, NO_PROXY exempts a host."""
    proxy = _RecordingProxy()
    try:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        with CVATClient("http://cvat.invalid:8080", token="t", retries=0) as cvat:
            assert cvat.request("GET", "/api/server/about").json()["version"] == "2.52.0"
        assert proxy.seen == ["http://cvat.invalid:8080/api/server/about"]
        monkeypatch.setenv("NO_PROXY", "cvat.invalid")
        with CVATClient("http://cvat.invalid:8080", token="t", retries=0) as cvat:
            with pytest.raises(CVATError):  # straight to a host that does not exist
                cvat.request("GET", "/api/server/about")
        assert len(proxy.seen) == 1
    finally:
        proxy.close()


# ---- authentication ------------------------------------------------------------------------------

def test_session_login_allows_writes_with_csrf(fakecvat):
    with admin(fakecvat) as cvat:
        assert cvat.current_user()["username"] == "admin"
        # an unsafe method on a cookie session passes only with X-CSRFToken (+ a matching Origin)
        project = cvat.create_project("csrf-check", [{"name": "cat", "attributes": []}])
        assert cvat.get_project(project["id"])["name"] == "csrf-check"


def test_personal_access_token_auth(fakecvat):
    with CVATClient(fakecvat.url, username="user1", password="user1-pass") as session_client:
        pat = session_client.call("POST", "/api/auth/access_tokens", json={"name": "syncd", "read_only": False})
    with CVATClient(fakecvat.url, token=pat["value"]) as cvat:
        assert cvat.current_user()["username"] == "user1"
        assert cvat.create_project("by-token", [])["name"] == "by-token"  # writes without CSRF
        assert "<token>" in repr(cvat) and pat["value"] not in repr(cvat)


def test_wrong_password_is_a_clear_error(fakecvat):
    with CVATClient(fakecvat.url, username="admin", password="nope") as cvat:
        with pytest.raises(CVATError) as err:
            cvat.current_user()
    assert err.value.status == 400
    assert "login as 'admin'" in str(err.value) and "Unable to log in" in str(err.value)
    assert isinstance(err.value, SyncdError)


def test_session_lost_on_server_logs_in_again(fakecvat):
    with admin(fakecvat) as cvat:
        cvat.current_user()
        old = cvat._cookie("sessionid")
        # someone ends our session on the server (logout elsewhere, restart, expiry)
        r = requests.post(fakecvat.url + "/api/auth/logout", cookies={"sessionid": old},
                          headers={"X-CSRFToken": cvat._cookie("csrftoken")})
        assert r.status_code == 200
        assert requests.get(fakecvat.url + "/api/users/self", cookies={"sessionid": old}).status_code == 401
        assert cvat.create_project("after-relogin", [])["name"] == "after-relogin"
        assert cvat._cookie("sessionid") != old


def test_log_in_ahead_logs_in_from_a_thread_once(fakecvat):
    fault(fakecvat, path="^/api/auth/login$", latency=0.2, status=None)
    with admin(fakecvat) as cvat:
        thread = cvat.log_in_ahead()
        assert thread is not None
        thread.join()
        assert fault_hits(fakecvat) == [1]  # logged in by the thread, before any request
        assert cvat.current_user()["username"] == "admin"
        assert fault_hits(fakecvat) == [1]  # the request used that session
        assert cvat.log_in_ahead() is None  # nothing left to do


def test_log_in_ahead_makes_one_quiet_attempt(fakecvat):
    fault(fakecvat, path="^/api/auth/login$", status=503, retry_after=0, times=1)
    with admin(fakecvat) as cvat:
        cvat.log_in_ahead().join()  # refused: no retry, no exception
        assert fault_hits(fakecvat) == [1]
        assert cvat.current_user()["username"] == "admin"  # the request logs in itself
    with CVATClient(fakecvat.url, token="some-token") as cvat:
        assert cvat.log_in_ahead() is None  # a token needs no login


# ---- pagination -----------------------------------------------------------------------------------

def test_paginate_follows_next_to_the_end(fakecvat):
    for i in range(23):
        requests.post(fakecvat.url + "/_fakecvat/users", json={"username": f"u{i:02d}", "password": "pw"}).raise_for_status()
    with admin(fakecvat) as cvat:
        users = list(cvat.paginate("/api/users", page_size=4))
        default = list(cvat.paginate("/api/users"))
        assert cvat.user_id("u07") == next(u["id"] for u in users if u["username"] == "u07")
        with pytest.raises(CVATError, match="'ghost' not found"):
            cvat.user_id("ghost")
    names = [u["username"] for u in users]
    assert len(names) == len(set(names)) == 26  # admin, user1, user2 + 23
    assert {u["id"] for u in default} == {u["id"] for u in users}


# ---- retries ----------------------------------------------------------------------------------------

def test_503_is_retried_until_success(fakecvat):
    fault(fakecvat, path="^/api/users/self$", status=503, retry_after=0, times=2)
    with admin(fakecvat) as cvat:
        assert cvat.current_user()["username"] == "admin"
    assert fault_hits(fakecvat) == [2]


def test_retry_after_is_honoured(fakecvat):
    with admin(fakecvat) as cvat:
        cvat.current_user()  # log in first: only the call under test is timed
        fault(fakecvat, path="^/api/users/self$", status=429, retry_after=1, times=1)
        start = time.monotonic()
        cvat.current_user()
        elapsed = time.monotonic() - start
    assert 1.0 <= elapsed < 2.5


def test_retries_are_bounded(fakecvat):
    fault(fakecvat, path="^/api/users/self$", status=503, retry_after=0)
    with admin(fakecvat, retries=2) as cvat:
        with pytest.raises(CVATError) as err:
            cvat.current_user()
    assert err.value.status == 503 and "GET /api/users/self -> 503" in str(err.value)
    assert fault_hits(fakecvat) == [3]  # the first try and two retries


def test_dropped_connection_on_get_is_retried(fakecvat):
    fault(fakecvat, path="^/api/users/self$", method="GET", drop=True, times=1)
    with admin(fakecvat) as cvat:
        assert cvat.current_user()["username"] == "admin"
    assert fault_hits(fakecvat) == [1]


def test_dropped_answer_to_a_create_is_not_resent(fakecvat):
    # the server creates the project, then the answer is lost: resending would duplicate it
    with admin(fakecvat) as cvat:
        cvat.current_user()
        fault(fakecvat, path="^/api/projects$", method="POST", drop=True, phase="after", times=3)
        with pytest.raises(CVATError) as err:
            cvat.create_project("lost-answer", [])
        assert err.value.status is None and err.value.maybe_applied
        assert "may have applied" in str(err.value)
        assert cvat.find_project("lost-answer") is not None  # how callers recover
    assert fault_hits(fakecvat) == [1]


def test_400_is_not_retried_and_names_cvats_detail(fakecvat):
    with admin(fakecvat) as cvat:
        with pytest.raises(CVATError) as err:
            cvat.call("POST", "/api/projects", json={"labels": []})  # no name
        assert err.value.status == 400
        assert "POST /api/projects -> 400" in str(err.value) and "name" in str(err.value)
        assert "\n" not in str(err.value)
        fault(fakecvat, path="^/api/projects$", method="GET", status=400,
              body=["label_id `7` is invalid"])
        with pytest.raises(CVATError, match="label_id `7` is invalid"):
            cvat.find_project("x")
    assert fault_hits(fakecvat) == [1]


def test_connection_refused_is_retried_then_reported(caplog):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens once the socket is closed
    cvat = CVATClient(f"http://127.0.0.1:{port}", token="t0ken-secret", retries=2, backoff=0.01)
    with caplog.at_level(logging.WARNING, logger="syncd.cvat"), pytest.raises(CVATError) as err:
        cvat.current_user()
    assert [r.getMessage().split("; ")[-1].split(" in ")[0] for r in caplog.records] == ["retry 1/2", "retry 2/2"]
    assert err.value.status is None and not err.value.maybe_applied
    assert "t0ken-secret" not in str(err.value)


# ---- secrets ----------------------------------------------------------------------------------------

def test_credentials_never_leak(fakecvat, caplog):
    caplog.set_level(logging.DEBUG)
    secret = "s3cret-Passw0rd"
    requests.post(fakecvat.url + "/_fakecvat/users", json={"username": "alice", "password": secret}).raise_for_status()
    texts = []
    with CVATClient(fakecvat.url, username="alice", password=secret, backoff=0.01) as cvat:
        texts += [repr(cvat), str(cvat)]
        cvat.current_user()
        fault(fakecvat, path="^/api/users/self$", status=503, retry_after=0, times=1)
        cvat.current_user()
        with pytest.raises(CVATError) as err:
            cvat.get_task(424242)
        texts.append(str(err.value))
    with CVATClient(fakecvat.url, username="alice", password=secret + "x") as bad:
        with pytest.raises(CVATError) as err:
            bad.current_user()
        texts.append(str(err.value))
    url_creds = CVATClient(fakecvat.url.replace("http://", f"http://alice:{secret}@"))
    texts += [repr(url_creds), url_creds.url]
    assert url_creds.current_user()["username"] == "alice"
    joined = "\n".join(texts) + caplog.text
    assert "alice" in joined
    assert secret not in joined


def test_client_from_env(fakecvat, monkeypatch):
    with pytest.raises(CVATError, match="CVAT_URL"):
        client_from_env(env={})
    with pytest.raises(CVATError, match="CVAT_USERNAME and CVAT_PASSWORD"):
        client_from_env(env={"CVAT_URL": fakecvat.url})
    env = {"FIFTYONE_CVAT_URL": fakecvat.url, "FIFTYONE_CVAT_USERNAME": "user2",
           "FIFTYONE_CVAT_PASSWORD": "user2-pass"}
    with client_from_env(env=env) as cvat:
        assert cvat.current_user()["username"] == "user2"
        assert cvat.upload_parallel == 2  # the default: two upload requests in flight
    with client_from_env(env={**env, "SYNCD_UPLOAD_PARALLEL": "1"}) as cvat:
        assert cvat.upload_parallel == 1
    for bad in ("0", "17", "two", "-1"):
        with pytest.raises(CVATError, match=f"SYNCD_UPLOAD_PARALLEL: expected a whole number from 1 to 16, got '{bad}'"):
            client_from_env(env={**env, "SYNCD_UPLOAD_PARALLEL": bad})


# ---- tasks, data, jobs, annotations ------------------------------------------------------------------

LABELS = [{"name": "cat", "type": "rectangle", "attributes": []}]


def make_jpegs(folder, n=30, size=(64, 48)):
    """n small distinct JPEGs named so that lexicographic order differs from ours."""
    from PIL import Image
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = folder / f"img{i}.jpg"  # img10 sorts before img2 lexicographically
        Image.new("RGB", size, ((i * 8) % 256, (i * 5) % 256, 200)).save(p, quality=90)
        paths.append(p)
    return paths


def test_task_upload_jobs_annotations_delete(fakecvat, tmp_path):
    files = make_jpegs(tmp_path / "media")
    order = files[::-1]  # our order: img29 ... img0
    seen = []
    with admin(fakecvat) as cvat:
        cvat.upload_batch_bytes = 4 * files[0].stat().st_size  # several Upload-Multiple batches
        task = cvat.create_task("client-e2e", labels=LABELS, segment_size=10)
        assert cvat.find_tasks("client-e2e") == [cvat.get_task(task["id"])]
        assert cvat.find_tasks("client-e2") == []  # exact names only
        rq_id = cvat.upload_data(task["id"], order, image_quality=80, progress=lambda d, t: seen.append((d, t)))
        ready = cvat.wait_task_ready(task["id"], rq_id, timeout=60)
        assert ready["size"] == 30
        total = sum(p.stat().st_size for p in files)
        assert seen[-1] == (total, total)
        assert [d for d, _ in seen] == sorted(d for d, _ in seen)

        # predefined sorting kept our order, across batches
        assert [f["name"] for f in cvat.data_meta(task["id"])["frames"]] == [p.name for p in order]

        jobs = cvat.jobs(task["id"])
        assert [(j["start_frame"], j["stop_frame"]) for j in jobs] == [(0, 9), (10, 19), (20, 29)]

        label_id = cvat.labels(task_id=task["id"])[0]["id"]
        for job in jobs:
            shape = {"id": 999, "frame": job["start_frame"], "label_id": label_id, "type": "rectangle",
                     "points": [1, 2, 30, 40]}
            cvat.put_job_annotations(job["id"], {"shapes": [shape]})  # ids are stripped for CVAT >= 2.41
        got = cvat.job_annotations(jobs[1]["id"])
        assert [(s["frame"], s["points"]) for s in got["shapes"]] == [(10, [1, 2, 30, 40])]
        merged = cvat.task_annotations(task["id"])
        assert sorted(s["frame"] for s in merged["shapes"]) == [0, 10, 20]

        created = cvat.patch_job_annotations(jobs[0]["id"], "create", {"tags": [{"frame": 3, "label_id": label_id}]})
        tag = created["tags"][0]
        cvat.patch_job_annotations(jobs[0]["id"], "delete", {"tags": [tag]})
        assert cvat.job_annotations(jobs[0]["id"])["tags"] == []

        cvat.update_job(jobs[2]["id"], stage="validation")
        assert cvat.get_job(jobs[2]["id"])["stage"] == "validation"
        assert cvat.editor_url(task["id"], jobs[0]["id"]) == f"{fakecvat.url}/tasks/{task['id']}/jobs/{jobs[0]['id']}"

        cvat.delete_task(task["id"])
        cvat.delete_task(task["id"])  # already gone: fine by default
        with pytest.raises(CVATError) as err:
            cvat.delete_task(task["id"], missing_ok=False)
        assert err.value.status == 404
        assert cvat.find_tasks("client-e2e") == []


def test_big_files_go_through_tus_and_resume(fakecvat, tmp_path):
    files = make_jpegs(tmp_path / "media", n=3, size=(320, 240))
    with admin(fakecvat) as cvat:
        cvat.upload_batch_bytes = 1024      # every file counts as "big": TUS
        cvat.tus_chunk_bytes = 256          # several PATCHes per file
        task = cvat.create_task("tus", labels=LABELS)
        # lose the answer to one chunk after the server stored it: the client asks HEAD for
        # the offset and continues instead of sending the chunk twice
        fault(fakecvat, path=r"^/api/tasks/\d+/data/[^/]+$", method="PATCH", drop=True, phase="after", times=1)
        rq_id = cvat.upload_data(task["id"], files)
        cvat.wait_task_ready(task["id"], rq_id, timeout=60)
        assert [f["name"] for f in cvat.data_meta(task["id"])["frames"]] == [p.name for p in files]
    assert fault_hits(fakecvat) == [1]


def test_failed_request_reports_cvats_message(fakecvat, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"this is not an image")
    with admin(fakecvat) as cvat:
        task = cvat.create_task("broken", labels=LABELS)
        with pytest.raises(CVATError) as err:
            rq_id = cvat.upload_data(task["id"], [bad])
            cvat.wait_task_ready(task["id"], rq_id, timeout=30)
    assert "failed" in str(err.value) and "broken.jpg" in str(err.value)
    assert "\n" not in str(err.value)


def test_webhooks_create_list_delete(fakecvat):
    with admin(fakecvat) as cvat:
        project = cvat.create_project("hooks", LABELS)
        hook = cvat.create_webhook("http://127.0.0.1:9/hook", project_id=project["id"], secret="hush",
                                   events=("update:job", "create:task"))
        assert "secret" not in hook and sorted(hook["events"]) == ["create:task", "update:job"]
        assert [h["id"] for h in cvat.list_webhooks()] == [hook["id"]]
        cvat.delete_webhook(hook["id"])
        assert cvat.list_webhooks() == []


def test_project_labels_patch(fakecvat):
    with admin(fakecvat) as cvat:
        project = cvat.create_project("labels", LABELS)
        assert cvat.find_project("labels")["id"] == project["id"]
        cvat.add_project_labels(project["id"], [{"name": "dog", "attributes": []}])
        assert sorted(lb["name"] for lb in cvat.labels(project_id=project["id"])) == ["cat", "dog"]
        task = cvat.create_task("in-project", project_id=project["id"], segment_size=5)
        assert sorted(lb["name"] for lb in cvat.labels(task_id=task["id"])) == ["cat", "dog"]
        cvat.delete_project(project["id"])
        assert cvat.find_project("labels") is None


def test_waits_for_slow_processing_and_survives_an_expired_request(fakecvat, tmp_path):
    files = make_jpegs(tmp_path / "media", n=4)
    requests.put(fakecvat.url + "/_fakecvat/async", json={"mode": "polls", "value": 4}).raise_for_status()
    with admin(fakecvat) as cvat:
        task = cvat.create_task("slow", labels=LABELS, segment_size=2)
        rq_id = cvat.upload_data(task["id"], files)
        assert cvat.get_task(task["id"])["size"] == 0  # not processed yet
        req = cvat.wait_request(rq_id, timeout=30, poll=0.01)
        assert req["status"] == "finished"
        assert len(cvat.jobs(task["id"])) == 2
        # a task-creation record expires after ~500 s on CVAT (404): the task itself answers
        expired = f"action=create&target=task&target_id={task['id']}&expired=1"
        assert cvat.wait_request(expired, timeout=5, poll=0.01)["status"] == "finished"
        with pytest.raises(CVATError, match="task 999999 does not exist"):
            cvat.wait_request("action=create&target=task&target_id=999999", timeout=5, poll=0.01)
        with pytest.raises(CVATError, match="not finished after"):
            cvat.wait_request("no-such-request", timeout=0.3, poll=0.05)


def test_read_timeout_retried_for_get_but_not_for_post(fakecvat):
    with admin(fakecvat, timeout=(2, 0.5)) as cvat:
        cvat.current_user()
        fault(fakecvat, path="^/api/users/self$", latency=1.0, times=1)
        assert cvat.current_user()["username"] == "admin"
        fault(fakecvat, path="^/api/projects$", method="POST", latency=1.0, times=1)
        with pytest.raises(CVATError) as err:
            cvat.create_project("slow-create", [])
        assert err.value.maybe_applied and "Timeout" in str(err.value)
    assert fault_hits(fakecvat) == [1, 1]


def test_a_response_says_how_many_earlier_attempts_went_unanswered(fakecvat):
    # a timed-out or 502'd attempt may still be applied later; a 503 was refused: not counted
    with admin(fakecvat, timeout=(2, 0.5)) as cvat:
        assert cvat.request("GET", "/api/users/self").unanswered == 0
        fault(fakecvat, path="^/api/users/self$", latency=1.0, times=1)
        assert cvat.request("GET", "/api/users/self").unanswered == 1
        fault(fakecvat, path="^/api/users/self$", status=502, times=1)
        fault(fakecvat, path="^/api/users/self$", status=503, retry_after=0, times=1)
        assert cvat.request("GET", "/api/users/self").unanswered == 1


def test_503_on_create_is_retried_once_created(fakecvat):
    # 503/429 mean "not done": safe to resend even a create
    fault(fakecvat, path="^/api/projects$", method="POST", status=503, retry_after=0, times=2)
    with admin(fakecvat) as cvat:
        cvat.create_project("resent", [])
        assert [p["name"] for p in cvat.paginate("/api/projects")] == ["resent"]
    assert fault_hits(fakecvat) == [2]


def test_organization_context_is_sent(fakecvat):
    with admin(fakecvat, organization="nosuchorg") as cvat:
        with pytest.raises(CVATError) as err:
            cvat.create_webhook("http://127.0.0.1:9/hook", organization=True)
    # CVAT: an unknown organization slug in X-Organization gives 404 "<slug> organization does not exist."
    assert err.value.status == 404 and "nosuchorg organization does not exist" in str(err.value)


def test_server_files_zero_copy(fakecvat_factory, tmp_path):
    share = tmp_path / "share"
    files = make_jpegs(share / "set1", n=3)
    server = fakecvat_factory(share_dir=str(share))
    with admin(server) as cvat:
        task = cvat.create_task("shared", labels=LABELS)
        rq_id = cvat.upload_data(task["id"], [], server_files=[f"set1/{p.name}" for p in files[::-1]])
        assert cvat.wait_task_ready(task["id"], rq_id, timeout=30)["size"] == 3
        assert [f["name"] for f in cvat.data_meta(task["id"])["frames"]] == [f"set1/{p.name}" for p in files[::-1]]
