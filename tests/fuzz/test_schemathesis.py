"""Schema-driven fuzzing of fakecvat with schemathesis, over CVAT v2.52.0's own OpenAPI schema.

One test per operation that fakecvat routes (the schema's operations that match a rule of the
Flask url_map, as ``tools/coverage_table.py`` counts them). Each test gets a fresh app, seeded
with a project (labels with attributes), a task with four images in two jobs, annotations, a
webhook that has delivered once, an export request and a personal access token; then
schemathesis generates valid requests for the operation (positive mode), half of them aimed at
the seeded objects' ids, sent through the WSGI app as the superuser ``fuzzer`` (Basic auth).

Every response must:
- not be a 5xx (a traceback of the server error is shown);
- conform to the schema when it is JSON (``tests/cvat_schema.validate_response``, the same
  check, with the same justified allowlist, that every ``fakecvat`` fixture applies).

Modes (``FAKECVAT_FUZZ``):
- ``quick`` (default, CI): fixed seed, :data:`QUICK_EXAMPLES` examples per operation; about
  a minute on one core for all operations;
- ``long``: :data:`LONG_EXAMPLES` examples per operation (override with
  ``FAKECVAT_FUZZ_EXAMPLES``), seed from ``FAKECVAT_FUZZ_SEED`` or a random one that the
  failure report prints, so that a finding can be replayed:

      FAKECVAT_FUZZ=long python -m pytest -q tests/fuzz -n 2
      FAKECVAT_FUZZ=long FAKECVAT_FUZZ_SEED=123 python -m pytest -q tests/fuzz -k "PATCH and labels"

Safety: webhook ``target_url`` values are rewritten to a closed loopback port before sending,
so no delivery leaves this machine whatever the generator writes.
"""
from __future__ import annotations

import base64
import copy
import io
import json
import os
import random
import re
import socket
import time
import traceback

import hypothesis
import pytest
import requests
from flask import got_request_exception
from hypothesis import HealthCheck, Phase, given, settings, strategies as st
from PIL import Image

import cvat_schema
from fakecvat.app import create_app

schemathesis = pytest.importorskip("schemathesis")
from schemathesis import GenerationMode  # noqa: E402

MODE = os.environ.get("FAKECVAT_FUZZ", "quick")
QUICK_SEED = 20250601
QUICK_EXAMPLES = 12
LONG_EXAMPLES = 300
SEED = int(os.environ.get("FAKECVAT_FUZZ_SEED") or (QUICK_SEED if MODE == "quick" else random.randrange(2 ** 32)))
EXAMPLES = int(os.environ.get("FAKECVAT_FUZZ_EXAMPLES") or (QUICK_EXAMPLES if MODE == "quick" else LONG_EXAMPLES))

USERS = [("fuzzer", "fuzzer-pass"), ("user1", "user1-pass"), ("user2", "user2-pass")]

# Routed but left out, and why.
EXCLUDED = {
    # deliberately unimplemented (ground-truth jobs): fakecvat answers 501 by design
    ("POST", "/api/jobs"),
    ("DELETE", "/api/jobs/{id}"),
}

# 5xx answers that are fakecvat being faithful or saying clearly what it lacks, not crashes:
# (method, schema path, status, a substring of the body), each with its reason.
KNOWN_5XX = [
    ("POST", "/api/webhooks", 500, "webhooks_project_or_organization",
     "CVAT's own DB constraint: an admin creating a project webhook without project_id gets a 500"),
    ("POST", "/api/tasks/{id}/data/", 501, "fakecvat does not implement '",
     "DataRequest fields fakecvat does not implement (remote_files, job_file_mapping, "
     "validation_params, cloud_storage_id) answer 501 naming the field (SPEC: never a fake success)"),
]


def _known_5xx(method: str, path: str, status: int, text: str) -> bool:
    return any(m == method and p == path and s == status and snippet in text for m, p, s, snippet, _ in KNOWN_5XX)


def _norm(path: str) -> str:
    return re.sub(r"\{[^}]+\}|<[^>]+>", "{}", path).rstrip("/") or "/"


def routed_operations() -> list[tuple[str, str]]:
    """(METHOD, schema path) of every schema operation that fakecvat routes, minus EXCLUDED."""
    app = create_app()
    try:
        rules = {(m, _norm(r.rule)) for r in app.url_map.iter_rules() if r.rule.startswith("/api/")
                 for m in (r.methods or ())}
    finally:
        for hook in app.config.get("STOP_HOOKS", []):
            hook(app)
        app.config["STORE"].close()
    ops = []
    for path, item in cvat_schema.load_schema()["paths"].items():
        for method in item:
            m = method.upper()
            if (m, _norm(path)) in rules and (m, path.rstrip("/")) not in EXCLUDED:
                ops.append((m, path))
    return sorted(ops, key=lambda o: (o[1], o[0]))


OPERATIONS = routed_operations()


# ---- the seeded server ------------------------------------------------------------------------

def _png(i: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16 + i, 12), (40 * i, 90, 160)).save(buf, "PNG")
    return buf.getvalue()


def _closed_loopback_url() -> str:
    # a port that was free a moment ago: deliveries there are refused at once, on this machine
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/fuzz-hook"


class Seeded:
    """A fakecvat app with one of everything, and the ids of what it holds."""

    def __init__(self, share_dir):
        self.app = create_app(users_spec=USERS, share_dir=share_dir)
        self.server_errors: list[str] = []
        got_request_exception.connect(self._on_exception, self.app)
        client = self.app.test_client()
        # Basic auth on every request: it survives a fuzzed logout (which revokes the user's
        # Token) and may manage access tokens (Token/Bearer clients may not).
        cred = base64.b64encode(f"{USERS[0][0]}:{USERS[0][1]}".encode()).decode()
        self.headers = {"Authorization": f"Basic {cred}"}
        self.hook_url = _closed_loopback_url()
        self._seed(client)

    def _on_exception(self, sender, exception, **extra):
        self.server_errors.append("".join(traceback.format_exception(exception))[-3000:])

    @staticmethod
    def _ok(resp):
        assert resp.status_code < 300, (resp.status_code, resp.get_data(as_text=True)[:500])
        return resp.get_json(silent=True)

    def _seed(self, c) -> None:
        h = self.headers
        project = self._ok(c.post("/api/projects", headers=h, json={"name": "fuzz", "labels": [
            {"name": "cat", "attributes": [{"name": "color", "mutable": False, "input_type": "select",
                                            "values": ["black", "white"], "default_value": "black"}]},
            {"name": "dog", "type": "rectangle"}]}))
        task = self._ok(c.post("/api/tasks", headers=h, json={"name": "fuzz", "project_id": project["id"],
                                                               "segment_size": 2}))
        files = {f"client_files[{i}]": (io.BytesIO(_png(i)), f"img{i}.png") for i in range(4)}
        rq = self._ok(c.post(f"/api/tasks/{task['id']}/data", headers=h, data={"image_quality": "70", **files},
                             content_type="multipart/form-data"))["rq_id"]
        for _ in range(200):
            status = self._ok(c.get(f"/api/requests/{rq}", headers=h))["status"]
            if status in ("finished", "failed"):
                break
            time.sleep(0.02)
        assert status == "finished", status
        jobs = self._ok(c.get(f"/api/jobs?task_id={task['id']}", headers=h))["results"]
        labels = self._ok(c.get(f"/api/labels?task_id={task['id']}", headers=h))["results"]
        self._ok(c.put(f"/api/jobs/{jobs[0]['id']}/annotations", headers=h, json={
            "version": 0, "tags": [{"frame": 0, "label_id": labels[0]["id"], "attributes": []}],
            "shapes": [{"type": "rectangle", "frame": 1, "label_id": labels[1]["id"], "points": [1, 1, 5, 5],
                        "attributes": []}], "tracks": []}))
        hook = self._ok(c.post("/api/webhooks", headers=h, json={
            "target_url": self.hook_url, "type": "project", "project_id": project["id"],
            "events": ["update:job"], "secret": "fuzz"}))
        delivery = self._ok(c.post(f"/api/webhooks/{hook['id']}/ping", headers=h))
        export = self._ok(c.post(f"/api/tasks/{task['id']}/dataset/export?format=CVAT%20for%20images%201.1",
                                 headers=h))["rq_id"]
        pat = self._ok(c.post("/api/auth/access_tokens", headers=h, json={"name": "fuzz", "read_only": False}))
        users = self._ok(c.get("/api/users?page_size=all", headers=h))["results"]
        self.fuzzer_id = next(u["id"] for u in users if u["username"] == "fuzzer")
        self.ids = {
            "projects": [project["id"]], "tasks": [task["id"]], "jobs": [j["id"] for j in jobs],
            "labels": [lb["id"] for lb in labels], "webhooks": [hook["id"]], "requests": [rq, export],
            "access_tokens": [pat["id"]], "users": [u["id"] for u in users if u["id"] != self.fuzzer_id],
            "delivery_id": [delivery["id"]],
        }

    def known_ids(self, path: str, param: str) -> list:
        """Seeded values for a path parameter: ``{id}`` by the path's resource, others by name."""
        if param != "id":
            return self.ids.get(param, [])
        parts = path.strip("/").split("/")  # api, resource[, ...]; access tokens live under auth/
        return self.ids.get(parts[2] if parts[1] == "auth" else parts[1], [])

    def close(self) -> None:
        got_request_exception.disconnect(self._on_exception, self.app)
        for hook in self.app.config.get("STOP_HOOKS", []):
            hook(self.app)
        self.app.config["STORE"].close()


@pytest.fixture
def seeded(tmp_path):
    share = tmp_path / "share"
    share.mkdir()
    (share / "a.png").write_bytes(_png(1))
    server = Seeded(share)
    try:
        yield server
    finally:
        server.close()


def _schema_for(app):
    schema = schemathesis.openapi.from_dict(copy.deepcopy(cvat_schema.load_schema()))
    schema.app = app
    # Positive mode: requests the schema calls valid. Security parameters are ours (Basic).
    schema.config.generation.update(modes=[GenerationMode.POSITIVE], with_security_parameters=False)
    return schema


def _operation(schema, method: str, path: str):
    for result in schema.get_all_operations():
        op = result.ok()
        if op.method.upper() == method and op.path == path:
            return op
    raise LookupError(f"{method} {path} not in the schema")


def _content_type(resp) -> str:
    value = resp.headers.get("Content-Type") or ""
    if isinstance(value, list):
        value = value[0] if value else ""
    return value.split(";")[0].strip()


# ---- the test --------------------------------------------------------------------------------

@pytest.mark.parametrize("method,path", OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_operation_never_fails_and_conforms(seeded, method, path):
    op = _operation(_schema_for(seeded.app), method, path)
    params = re.findall(r"\{([^}]+)\}", path)
    picks = {name: st.one_of(st.none(), st.sampled_from(ids)) if (ids := seeded.known_ids(path, name)) else st.none()
             for name in params}
    failures: dict[str, str] = {}

    def record(key: str, detail: str) -> None:
        failures.setdefault(key, detail)

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=False,
              suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
    @hypothesis.seed(SEED)
    @given(case=op.as_strategy(), chosen=st.fixed_dictionaries(picks))
    def run(case, chosen):
        for name, value in chosen.items():
            if value is not None:
                case.path_parameters[name] = value
        if path.startswith("/api/users/{") and method in ("PATCH", "DELETE") and \
                str(case.path_parameters.get("id")) == str(seeded.fuzzer_id):
            case.path_parameters["id"] = seeded.ids["users"][0]  # never disable the fuzzing user
        if isinstance(case.body, dict) and "target_url" in case.body:
            case.body["target_url"] = seeded.hook_url  # deliveries stay on this machine
        errors_before = len(seeded.server_errors)
        curl = case.as_curl_command()[:600]
        try:
            resp = case.call(headers=seeded.headers)
        except Exception as e:  # the WSGI transport re-raises what the app raised
            trace = "".join(traceback.format_exception(e))[-3000:]
            record(f"500 {type(e).__name__}: {str(e)[:150]}", f"{curl}\n{trace}")
            return
        status = resp.status_code
        if status >= 500 and not _known_5xx(method, path, status, resp.text):
            trace = seeded.server_errors[errors_before] if len(seeded.server_errors) > errors_before else resp.text[:500]
            record(f"{status} {trace.strip().splitlines()[-1][:200]}", f"{curl}\n{trace}")
            return
        if status < 500 and _content_type(resp) in cvat_schema.JSON_TYPES and resp.content:
            try:
                body = json.loads(resp.content)
            except ValueError:
                record(f"{status} not JSON", f"{curl}\n{resp.text[:300]}")
                return
            for v in cvat_schema.validate_response(method, case.formatted_path, status, body):
                record(re.sub(r"/api/\S+", "", v)[:200], f"{curl}\n{v}")

    run()
    # the safety net: whatever was generated, every webhook still aims at this machine
    assert all(h["target_url"] == seeded.hook_url for h in seeded.app.config["STORE"].all("webhooks"))
    if failures:
        shown = "\n\n".join(f"- {key}\n{detail}" for key, detail in list(failures.items())[:5])
        pytest.fail(f"{method} {path}: {len(failures)} distinct failure(s) (mode {MODE}, seed {SEED}, "
                    f"{EXAMPLES} examples):\n{shown}", pytrace=False)


# ---- regressions found by this fuzzing -----------------------------------------------------------

@pytest.mark.parametrize("path", ["/api/tasks/-1", "/api/jobs/-5/annotations", "/api/webhooks/-3/deliveries/1",
                                  "/api/labels/-2", "/api/projects/-7"])
def test_negative_ids_are_404_like_cvat(fakecvat, path):
    # werkzeug's unsigned <int:> left these unrouted: a 501 "does not implement"
    r = requests.get(fakecvat.url + path, auth=("admin", "admin"), timeout=30)
    assert r.status_code == 404 and r.json()["detail"].startswith("No ")


def test_multipart_part_with_unparsable_name_is_ignored(fakecvat):
    # a raw newline in a part's name made werkzeug key it None: a 500 in POST /data
    tid = requests.post(fakecvat.url + "/api/tasks", auth=("admin", "admin"), timeout=30,
                        json={"name": "t", "labels": [{"name": "a"}]}).json()["id"]
    b = "fuzzboundary"
    body = (f'--{b}\r\nContent-Disposition: form-data; name="a\nb"\r\n\r\nv\r\n'
            f'--{b}\r\nContent-Disposition: form-data; name="image_quality"\r\n\r\n70\r\n--{b}--\r\n').encode()
    r = requests.post(f"{fakecvat.url}/api/tasks/{tid}/data", auth=("admin", "admin"), data=body, timeout=30,
                      headers={"Content-Type": f"multipart/form-data; boundary={b}"})
    assert r.status_code == 400, r.text  # no files: CVAT's validation error, not a crash


def test_share_listing_with_nul_byte_is_404_not_500(fakecvat_factory, tmp_path):
    # os.path.realpath raises on a NUL: GET /api/server/share?directory=%00 was a 500
    (tmp_path / "share").mkdir()
    server = fakecvat_factory(share_dir=tmp_path / "share")
    r = requests.get(server.url + "/api/server/share", params={"directory": "a\x00b"}, auth=("admin", "admin"),
                     timeout=30)
    assert r.status_code == 404
