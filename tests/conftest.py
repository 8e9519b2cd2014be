"""Shared fixtures: every fakecvat the tests start checks its JSON answers against CVAT's schema.

The ``fakecvat`` and ``fakecvat_factory`` fixtures override the plugin's (same seeded users) to
install :func:`cvat_schema.install_hook` before the server starts. A test whose server sent a
response that violates CVAT v2.52.0's OpenAPI schema fails at teardown, listing method, path,
status and the jsonschema error. Opt out for one test with ``@pytest.mark.no_schema_check``
(e.g. a test that deliberately makes the server misbehave).
"""
from __future__ import annotations

import pytest

import cvat_schema
from fakecvat.pytest_plugin import SEEDED_USERS
from fakecvat.server import FakeCVAT


def pytest_configure(config):
    config.addinivalue_line("markers", "no_schema_check: do not validate fakecvat responses against CVAT's schema")


def _checked(request, violations: list, **kwargs) -> FakeCVAT:
    kwargs.setdefault("users", SEEDED_USERS)
    server = FakeCVAT(**kwargs)
    if request.node.get_closest_marker("no_schema_check") is None:
        cvat_schema.install_hook(server.app, violations)
    return server.start()


def _fail_on(violations: list) -> None:
    if violations:
        shown = "\n".join(f"  - {v}" for v in violations[:20])
        more = f"\n  ... and {len(violations) - 20} more" if len(violations) > 20 else ""
        pytest.fail(f"fakecvat answered {len(violations)} response(s) that violate CVAT's OpenAPI schema:\n"
                    f"{shown}{more}", pytrace=False)


@pytest.fixture
def fakecvat(request):
    """A fresh fakecvat (admin:admin, user1:user1-pass, user2:user2-pass) whose JSON answers
    are validated against CVAT's schema."""
    violations: list[str] = []
    server = _checked(request, violations)
    try:
        yield server
    finally:
        server.stop()
    _fail_on(violations)


@pytest.fixture
def fakecvat_factory(request):
    """Start extra schema-checked servers: ``fakecvat_factory(data_dir=...)``."""
    violations: list[str] = []
    started = []

    def make(**kwargs):
        server = _checked(request, violations, **kwargs)
        started.append(server)
        return server

    try:
        yield make
    finally:
        for s in started:
            s.stop()
    _fail_on(violations)
