"""pytest plugin (entry point ``pytest11``): fixtures yielding a fresh fakecvat per test.

    def test_x(fakecvat):            # a running server with admin:admin and user1/user2
        fakecvat.url, fakecvat.users
"""
from __future__ import annotations

import pytest

from .server import FakeCVAT

SEEDED_USERS = [("admin", "admin"), ("user1", "user1-pass"), ("user2", "user2-pass")]


@pytest.fixture
def fakecvat():
    """A fresh in-process fakecvat on a free loopback port, with seeded users:
    admin:admin (superuser), user1:user1-pass, user2:user2-pass."""
    with FakeCVAT(users=SEEDED_USERS) as server:
        yield server


@pytest.fixture
def fakecvat_factory(tmp_path):
    """Start extra servers (e.g. persistent ones): ``fakecvat_factory(data_dir=...)``."""
    started = []

    def make(**kwargs):
        kwargs.setdefault("users", SEEDED_USERS)
        server = FakeCVAT(**kwargs).start()
        started.append(server)
        return server

    yield make
    for s in started:
        s.stop()
