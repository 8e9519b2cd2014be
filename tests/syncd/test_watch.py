"""The watcher on real directories with a real watchdog observer: dropped files, renamed-in temp
files, slow writers, hidden paths, and the stable-file check."""
from __future__ import annotations

import json
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


def test_no_periodic_rescan_until_the_owner_sets_one_after_its_walk(tmp_path):
    """The daemon walks the root first and only then paces periodic rescans: a rescan queued
    during a long first walk made it walk a 1M-media root again right away."""
    seen = Seen()
    w = Watcher(tmp_path, seen, debounce=0.05, rescan_interval=None).start()
    try:
        time.sleep(0.6)
        assert seen.rescans == 0
        w.rescanned(0.2)   # "I just walked it; rescan every 0.2 s from now"
        assert seen.wait_for(lambda s: s.rescans >= 1, timeout=5)
    finally:
        w.stop()


def test_new_directory_triggers_rescan(watched):
    root, seen, _ = watched
    (root / "batch").mkdir()
    assert seen.wait_for(lambda s: s.rescans >= 1)


def test_media_of():
    assert media_of("a/b.jpg") == "a/b.jpg"
    assert media_of("a/b.jpg.json") == "a/b.jpg"
    assert media_of("a/b.txt") is None
    assert media_of("a/b.txt.json") is None


# ---------------------------------------------------------------------------------------------
# The reconcile pass's use of it: auto-tagging only finished files inside the root


def _reconciler(root, *, quiet=0.3):
    from syncd.config import parse_config
    from syncd.reconcile import Reconciler

    cfg = parse_config('[cvat]\nurl = "http://127.0.0.1:9"\n\n[[rule]]\nname = "boxes"\n'
                       'auto_tag = ["incoming/**"]\nlabel_field = "gt"\nlabel_type = "detections"\n'
                       'classes = ["cat"]\nbatch_window = 3600\n', root=root, env={})

    def no_cvat():
        raise AssertionError("auto-tagging must not need CVAT")
    return Reconciler(root, cfg, no_cvat, stable=StableFiles(quiet=quiet))


def _real_jpeg() -> bytes:
    import io

    from PIL import Image
    buf = io.BytesIO()
    Image.new("RGB", (32, 24), (10, 20, 30)).save(buf, format="JPEG")
    return buf.getvalue()


def test_file_written_slowly_is_not_tagged_before_stable(tmp_path):
    rec = _reconciler(tmp_path)
    data = _real_jpeg()
    path = tmp_path / "incoming" / "slow.jpg"
    path.parent.mkdir()
    with open(path, "wb") as f:
        for i in range(0, len(data), max(1, len(data) // 6)):
            f.write(data[i:i + max(1, len(data) // 6)])
            f.flush()
            wait = rec.pass_once()
            assert not (tmp_path / "incoming" / "slow.jpg.json").exists()
            assert wait is not None and wait <= 0.3  # asks to look again soon
            time.sleep(0.1)
    deadline = time.monotonic() + 5
    while not (tmp_path / "incoming" / "slow.jpg.json").exists():
        assert time.monotonic() < deadline
        time.sleep(0.1)
        rec.pass_once()
    doc = json.loads((tmp_path / "incoming" / "slow.jpg.json").read_text())
    assert doc["tags"] == ["requires_annotation"]
    assert doc["metadata"]["width"] == 32


def test_symlink_out_of_root_and_hidden_files_are_not_tagged(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "incoming").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret.jpg").write_bytes(_real_jpeg())
    os.symlink(outside / "secret.jpg", root / "incoming" / "link.jpg")
    os.symlink(outside, root / "incoming" / "linkdir")
    (root / "incoming" / ".hidden.jpg").write_bytes(_real_jpeg())
    rec = _reconciler(root, quiet=0.0)
    for _ in range(3):
        rec.pass_once()
        time.sleep(0.05)
    assert sorted(p.name for p in (root / "incoming").iterdir()) == [
        ".hidden.jpg", "link.jpg", "linkdir"]
    assert not list(outside.glob("*.json"))
