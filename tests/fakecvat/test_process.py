"""``FakeCVATProcess``: ``fakecvat serve`` as a child process that tests and benchmarks drive.

What a user relies on: it serves on a free port, ``session()`` is logged in, ``stop()`` and
``kill()`` leave no process behind, a restart keeps the URL, and with a data dir the state
survives both a clean restart and kill -9. Every life's stderr lands in one log file."""
from __future__ import annotations

import io
import os
import socket
from pathlib import Path

import pytest
import requests
from PIL import Image

from fakecvat import FakeCVATProcess


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 6), (200, 30, 30)).save(buf, "PNG")
    return buf.getvalue()


def _create_task(server: FakeCVATProcess, name: str) -> int:
    r = server.session().post(server.url + "/api/tasks", json={"name": name, "labels": [{"name": "cat"}]},
                              timeout=30)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def test_serves_on_a_free_port_and_stop_leaves_no_process():
    with FakeCVATProcess() as server:
        assert server.url.startswith("http://127.0.0.1:") and server.port != 0
        tid = _create_task(server, "first")
        assert [t["name"] for t in server.get("/api/tasks", page_size="all")["results"]] == ["first"]
        assert server.get(f"/api/tasks/{tid}")["owner"]["username"] == "admin"
        assert server.peak_rss_mb() > 0
        pid, log = server.pid, server.log_path
        assert "serving on " + server.url in log.read_text()
    assert _gone(pid) and not server.alive() and server.pid is None
    assert not log.exists()  # its own temp log is cleaned up after a clean exit
    with pytest.raises(requests.ConnectionError):
        requests.get(server.url + "/api/server/about", timeout=5)


def test_data_dir_survives_restart_and_kill_on_the_same_url(tmp_path):
    log = tmp_path / "fakecvat.log"
    server = FakeCVATProcess(data_dir=tmp_path / "cvat", users=["alice:secret"], log_path=log)
    try:
        server.start()
        url, first_pid = server.url, server.pid
        tid = _create_task(server, "kept")
        assert server.get("/api/users/self")["username"] == "alice"

        server.restart()
        assert server.url == url and _gone(first_pid)
        assert server.get(f"/api/tasks/{tid}")["name"] == "kept"

        killed = server.pid
        assert server.kill() == -9
        assert _gone(killed) and not server.alive()
        server.start()
        assert server.url == url
        assert server.get(f"/api/tasks/{tid}")["name"] == "kept"
        assert server.control("GET", "/_fakecvat/state")["tables"]["tasks"][str(tid)]["name"] == "kept"
    finally:
        server.close()
    assert not server.alive()
    # one log across the three lives, and a log the caller named is never removed
    assert log.read_text().count("serving on " + url) == 3


def test_media_dir_keeps_uploads_after_stop_and_an_in_memory_server_wants_it_empty(tmp_path):
    media = tmp_path / "media"
    with FakeCVATProcess(media_dir=media, log_path=tmp_path / "f.log") as server:
        tid = _create_task(server, "kept media")
        r = server.session().post(f"{server.url}/api/tasks/{tid}/data",
                                  files={"client_files[0]": ("a.png", _png(), "image/png")},
                                  data={"image_quality": 70}, timeout=30)
        assert r.status_code == 202, r.text
    assert [p.read_bytes() for p in media.rglob("a.png")] == [_png()]   # still there after the stop
    again = FakeCVATProcess(media_dir=media, log_path=tmp_path / "g.log")
    try:
        # its task 1 would land among the first server's files: refused, and the log says why
        with pytest.raises(RuntimeError, match="media directory .* is not empty"):
            again.start()
    finally:
        again.close()
    assert [p.read_bytes() for p in media.rglob("a.png")] == [_png()]


def test_a_failed_start_says_why_and_leaves_no_process(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = FakeCVATProcess(port=taken.getsockname()[1], log_path=tmp_path / "f.log")
        with pytest.raises(RuntimeError, match="cannot listen"):
            server.start()
    assert not server.alive()
    # the server that could not listen removed the media directory it had made
    assert os.listdir(server.scratch_dir) == []
    server.close()


def test_sigterm_stops_cleanly_and_removes_the_temporary_media_dir(tmp_path):
    # what systemd, docker stop or a plain kill send to `fakecvat serve`; an in-memory server
    # left its temporary media directory behind, because waitress's loop swallowed the
    # interrupt and the stop after it never ran
    server = FakeCVATProcess(log_path=tmp_path / "f.log")
    try:
        server.start()
        scratch = Path(server.scratch_dir)  # the life's TMPDIR
        tid = _create_task(server, "photos")
        r = server.session().post(f"{server.url}/api/tasks/{tid}/data", data={"image_quality": 70},
                                  files={"client_files[0]": ("a.png", _png())}, timeout=30)
        assert r.status_code == 202, r.text
        [media] = scratch.rglob("a.png")
        assert any(d.name.startswith("fakecvat-media-") for d in media.parents)  # the server's temp dir
        assert server.stop() == 0  # SIGTERM, and a clean exit
        assert not list(scratch.glob("fakecvat-media-*"))
    finally:
        server.close()


def test_close_removes_what_a_killed_life_left(tmp_path):
    server = FakeCVATProcess(log_path=tmp_path / "f.log")
    try:
        server.start()
        scratch = Path(server.scratch_dir)
        tid = _create_task(server, "photos")
        r = server.session().post(f"{server.url}/api/tasks/{tid}/data", data={"image_quality": 70},
                                  files={"client_files[0]": ("a.png", _png())}, timeout=30)
        assert r.status_code == 202, r.text
        media = [p for p in scratch.rglob("a.png")]
        assert len(media) == 1  # the upload landed under the life's TMPDIR
        assert server.kill() == -9
        assert media[0].exists()  # kill -9: the child could not clean up
        server.start()  # a second life shares the scratch directory
    finally:
        server.close()
    assert not scratch.exists()
