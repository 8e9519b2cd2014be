"""The watcher on real directories with a real watchdog observer: dropped files, renamed-in temp
files, slow writers, hidden paths, and the stable-file check."""
from __future__ import annotations

import os
import threading
import time

import pytest

from syncd.watch import StableFiles, Watcher, media_of

JPEG = b"\xff\xd8\xff\xe0" + b"0" * 200


class Seen:
    """Collects what the watcher reports, and lets a test wait for a path."""

    def __init__(self):
        self.paths: list[str] = []
        self.rescans = 0
        self.cond = threading.Condition()

    def __call__(self, paths):
        with self.cond:
            if paths is None:
                self.rescans += 1
            else:
                self.paths.extend(sorted(paths))
            self.cond.notify_all()

    def wait_for(self, pred, timeout=10.0) -> bool:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not pred(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(left)
            return True


@pytest.fixture
def watched(tmp_path):
    seen = Seen()
    w = Watcher(tmp_path, seen, debounce=0.2, rescan_interval=3600).start()
    assert w.observing
    try:
        yield tmp_path, seen, w
    finally:
        w.stop()


def test_dropped_file_is_reported_once_after_quiet(watched):
    root, seen, _ = watched
    (root / "incoming").mkdir()
    time.sleep(0.3)
    (root / "incoming" / "a.jpg").write_bytes(JPEG)
    assert seen.wait_for(lambda s: "incoming/a.jpg" in s.paths)
    time.sleep(0.5)
    # Many raw inotify events (create, modify, close) collapse into one report.
    assert seen.paths.count("incoming/a.jpg") == 1


def test_renamed_in_temp_file_reported_under_final_name_only(watched):
    root, seen, _ = watched
    tmp = root / ".b.jpg.tmp"
    tmp.write_bytes(JPEG)
    os.replace(tmp, root / "b.jpg")
    assert seen.wait_for(lambda s: "b.jpg" in s.paths)
    time.sleep(0.4)
    assert all(not p.startswith(".") for p in seen.paths)


def test_hidden_and_non_media_paths_are_ignored(watched):
    root, seen, _ = watched
    (root / ".syncd").mkdir()
    (root / ".syncd" / "runs.json").write_text("{}")
    (root / "notes.txt").write_text("hello")
    (root / "c.png").write_bytes(b"\x89PNG")
    assert seen.wait_for(lambda s: "c.png" in s.paths)
    time.sleep(0.4)
    assert seen.paths == ["c.png"]


def test_sample_file_edit_reports_its_media(watched):
    root, seen, _ = watched
    (root / "d.jpg.json").write_text('{"tags": ["x"]}')
    assert seen.wait_for(lambda s: "d.jpg" in s.paths)


def test_slow_writer_is_debounced_until_quiet(watched):
    root, seen, _ = watched
    path = root / "slow.jpg"
    with open(path, "wb") as f:
        for _ in range(8):  # keeps writing for ~0.8 s, longer than the debounce
            f.write(JPEG)
            f.flush()
            time.sleep(0.1)
            assert "slow.jpg" not in seen.paths
    assert seen.wait_for(lambda s: "slow.jpg" in s.paths)


def test_stable_files_needs_two_equal_looks_quiet_apart(tmp_path):
    path = tmp_path / "e.jpg"
    stable = StableFiles(quiet=0.3)
    assert not stable.check(path)  # missing
    with open(path, "wb") as f:
        f.write(JPEG)
        f.flush()
        assert not stable.check(path)  # first look only records
        time.sleep(0.35)
        f.write(JPEG)  # still being written: size changes, clock restarts
        f.flush()
        assert not stable.check(path)
        time.sleep(0.35)
    assert stable.check(path)  # unchanged across two looks >= quiet apart
    os.utime(path, None)  # touched: mtime changed -> not stable again until quiet
    assert not stable.check(path)


def test_periodic_rescan_and_stop_leaves_no_thread(tmp_path):
    before = threading.active_count()
    seen = Seen()
    w = Watcher(tmp_path, seen, debounce=0.1, rescan_interval=0.2).start()
    try:
        assert seen.wait_for(lambda s: s.rescans >= 2, timeout=5)
    finally:
        w.stop()
    deadline = time.monotonic() + 5
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threading.active_count() == before


def test_new_directory_triggers_rescan(watched):
    root, seen, _ = watched
    (root / "batch").mkdir()
    assert seen.wait_for(lambda s: s.rescans >= 1)


def test_media_of():
    assert media_of("a/b.jpg") == "a/b.jpg"
    assert media_of("a/b.jpg.json") == "a/b.jpg"
    assert media_of("a/b.txt") is None
    assert media_of("a/b.txt.json") is None
