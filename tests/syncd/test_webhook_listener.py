"""The webhook listener over real HTTP: signed deliveries accepted once, unsigned / forged /
replayed ones refused; registration in a real fakecvat delivering real webhooks; and the daemon
pulling labels on a webhook long before its poll interval."""
from __future__ import annotations

import json
import threading
import time

import pytest
import requests

from syncd.webhooks import Listener, Registrar, sign

from test_daemon import (DaemonProc, annotate_and_complete, api, drop_image, sample, tasks_of,
                         wait_for, write_config)

SECRET = "s3cret-for-tests-" + "x" * 20


class Calls:
    def __init__(self):
        self.payloads: list[dict] = []
        self.event = threading.Event()

    def __call__(self, payload):
        self.payloads.append(payload)
        self.event.set()


@pytest.fixture
def listener():
    calls = Calls()
    with Listener("127.0.0.1", 0, calls, secret=SECRET) as lst:
        lst.calls = calls
        yield lst


def post(lst, body: bytes, signature: str | None):
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["X-Signature-256"] = signature
    return requests.post(lst.target_url, data=body, headers=headers, timeout=5)


def payload(job_id=7, updated="2024-01-01T00:00:00Z") -> bytes:
    # CVAT signs json.dumps(payload) with Python's default separators: the same bytes it sends.
    return json.dumps({"event": "update:job", "job": {"id": job_id, "updated_date": updated},
                       "before_update": {"state": "in progress"}, "webhook_id": 1}).encode()


def test_signed_delivery_is_accepted_and_wakes_the_daemon(listener):
    body = payload()
    r = post(listener, body, sign(SECRET, body))
    assert r.status_code == 200
    assert listener.calls.event.wait(5)
    assert listener.calls.payloads[0]["job"]["id"] == 7


def test_unsigned_delivery_is_refused(listener):
    r = post(listener, payload(), None)
    assert r.status_code == 401
    assert not listener.calls.payloads


@pytest.mark.parametrize("signature", [
    "sha256=" + "0" * 64,
    sign("another secret", payload()),
    sign(SECRET, payload())[len("sha256="):],      # missing the scheme prefix
    "sha1=" + sign(SECRET, payload())[7:],
])
def test_forged_signature_is_refused(listener, signature):
    r = post(listener, payload(), signature)
    assert r.status_code == 403
    assert not listener.calls.payloads


def test_signature_covers_the_exact_body(listener):
    good = payload()
    tampered = payload(job_id=8)
    r = post(listener, tampered, sign(SECRET, good))
    assert r.status_code == 403


def test_replayed_delivery_is_refused(listener):
    body = payload()
    assert post(listener, body, sign(SECRET, body)).status_code == 200
    assert post(listener, body, sign(SECRET, body)).status_code == 409
    assert len(listener.calls.payloads) == 1
    other = payload(updated="2024-01-01T00:00:01Z")  # a genuinely new delivery still passes
    assert post(listener, other, sign(SECRET, other)).status_code == 200


def test_signed_garbage_and_ping_do_not_wake(listener):
    assert post(listener, b"[1, 2", sign(SECRET, b"[1, 2")).status_code == 400
    ping = json.dumps({"event": "ping", "webhook": {"id": 1}}).encode()
    assert post(listener, ping, sign(SECRET, ping)).status_code == 200
    assert not listener.calls.payloads


def test_get_is_not_a_delivery(listener):
    assert requests.get(listener.target_url, timeout=5).status_code == 405


def test_random_secret_is_64_chars_and_differs_per_listener():
    a, b = Listener("127.0.0.1", 0, print), Listener("127.0.0.1", 0, print)
    assert len(a.secret) == 64 and a.secret != b.secret


def test_registered_project_webhook_delivers_job_updates(fakecvat, tmp_path, listener):
    from syncd.cvat import CVATClient

    s = api(fakecvat)
    project = s.post(fakecvat.url + "/api/projects",
                     json={"name": "p", "labels": [{"name": "cat"}]}).json()
    with CVATClient(fakecvat.url, username="admin", password="admin") as client:
        old = client.create_webhook(listener.target_url, project_id=project["id"],
                                    description=Registrar(tmp_path, listener).description)
        reg = Registrar(tmp_path, listener)
        reg.sync(client, {project["id"]}, want_org=False)
        hooks = client.list_webhooks()
        # A webhook left by an earlier daemon on this root was swept; ours replaced it.
        assert [h["id"] for h in hooks] == [reg.ids[f"project:{project['id']}"]]
        assert old["id"] not in [h["id"] for h in hooks]
        reg.sync(client, {project["id"]}, want_org=False)  # idempotent
        assert len(client.list_webhooks()) == 1
        ping = s.post(fakecvat.url + f"/api/webhooks/{hooks[0]['id']}/ping").json()
        assert ping["status_code"] == 200  # fakecvat signed it with our secret
        reg.close(client)
        assert client.list_webhooks() == []


def test_daemon_pulls_on_webhook_before_poll_interval(fakecvat, tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    # poll_interval far longer than the test: only a webhook can make the daemon look at CVAT.
    write_config(root, fakecvat.url, poll=120,
                 extra_cvat='project_name = "hooks"\nwebhook = "127.0.0.1:0"')
    s = api(fakecvat)
    d = DaemonProc(root, fakecvat.url)
    try:
        drop_image(root / "incoming" / "a.jpg")
        task = wait_for(lambda: [t for t in tasks_of(s) if t.get("size") == 1], what="task")[0]
        assert task["project_id"]
        wait_for(lambda: "webhook registered" in d.log, what="webhook registration")
        time.sleep(0.5)
        annotate_and_complete(s, task["id"])
        wait_for(lambda: "annotated" in sample(root, "incoming/a.jpg")["tags"], timeout=20,
                 what="labels pulled on webhook")
        assert "webhook webhook_event=update:job" in d.log
        assert d.stop() == 0
    finally:
        d.close()
