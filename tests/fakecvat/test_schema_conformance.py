"""The schema harness itself: it must catch a response CVAT's clients would reject."""
import requests

import cvat_schema
from fakecvat.server import FakeCVAT


def test_known_operations_and_templates_are_found():
    assert cvat_schema.find_operation("GET", "/api/projects/7")[0] == "/api/projects/{id}"
    # literal segments win over {id}, and trailing slashes match either way
    assert cvat_schema.find_operation("POST", "/api/projects/backup")[0] == "/api/projects/backup/"
    assert cvat_schema.find_operation("POST", "/api/tasks/3/data/")[0] == "/api/tasks/{id}/data/"
    assert cvat_schema.find_operation("PUT", "/api/projects/7") is None


def test_hand_made_bad_bodies_are_reported():
    bad = {"count": 1, "next": None, "previous": None,
           "results": [{"id": "1", "name": "p", "tasks": {"count": 0}, "owner": None}]}
    errors = cvat_schema.validate_response("GET", "/api/projects", 200, bad)
    assert any("results/0/id" in e and "integer" in e for e in errors)
    assert any("labels" in e and "required" in e for e in errors)
    # nullable fields accept null, non-nullable ones do not
    ok = {"id": 1, "name": "p", "tasks": {"count": 0}, "labels": {}, "owner": None, "assignee": None}
    assert cvat_schema.validate_response("GET", "/api/projects/1", 200, ok) == []
    assert cvat_schema.validate_response("GET", "/api/projects/1", 200, dict(ok, name=None)) != []


def test_undocumented_success_status_is_a_violation_but_undocumented_errors_are_not():
    assert cvat_schema.validate_response("GET", "/api/projects/1", 201, {}) != []
    assert cvat_schema.validate_response("GET", "/api/projects/1", 404, {"detail": "x"}) == []
    assert cvat_schema.validate_response("GET", "/api/nothing/here", 200, {}) != []


def test_hook_records_a_violation_from_a_live_server():
    """Corrupt one stored document so the server sends a non-conforming ProjectRead."""
    violations = []
    server = FakeCVAT(users=[("admin", "admin")])
    cvat_schema.install_hook(server.app, violations)
    with server:
        r = requests.post(server.url + "/api/projects", json={"name": "p"}, auth=("admin", "admin"))
        assert r.status_code == 201
        assert violations == []
        server.store.update("projects", r.json()["id"], name=12345)
        assert requests.get(server.url + f"/api/projects/{r.json()['id']}", auth=("admin", "admin")).status_code == 200
    assert len(violations) == 1
    assert "GET /api/projects/1 [200] at name" in violations[0] and "string" in violations[0]


def test_allowlisted_deviation_is_not_reported():
    assert cvat_schema.validate_response("GET", "/api/server/health", 200, {"db": "working"}) == []
