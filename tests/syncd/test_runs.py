"""Run records in .syncd/ and the per-root daemon lock, on real files and real processes."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from syncd.errors import RunError, SyncdError
from syncd.runs import RunStore, acquire_root_lock

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_crud_and_persistence(tmp_path):
    store = RunStore(tmp_path)
    rec = store.create("boxes-1", {"label_field": "gt"}, samples=["a.jpg"])
    assert rec["key"] == "boxes-1" and rec["status"] == "created"
    assert rec["config"] == {"label_field": "gt"} and rec["samples"] == ["a.jpg"]
    assert rec["tasks"] == {} and rec["intents"] == []
    with pytest.raises(RunError, match="already exists"):
        store.create("boxes-1", {})

    store.update("boxes-1", status="annotating")
    store.record("boxes-1", ["tasks", 12, "state"], "annotation")
    store.record("boxes-1", ["tasks", "12", "jobs"], {"30": {"assignee": "bob"}})
    store.record("boxes-1", ["sent", "gt", "a.jpg"], ["65a0c0ffee0000000000abcd"])

    again = RunStore(tmp_path).get("boxes-1")  # a fresh store reads what was written
    assert again["status"] == "annotating"
    assert again["tasks"] == {"12": {"state": "annotation", "jobs": {"30": {"assignee": "bob"}}}}
    assert again["sent"] == {"gt": {"a.jpg": ["65a0c0ffee0000000000abcd"]}}

    store.create("other", {})
    assert [r["key"] for r in store.list()] == ["boxes-1", "other"]
    store.rename("other", "renamed")
    with pytest.raises(RunError, match="already exists"):
        store.rename("renamed", "boxes-1")
    store.delete("renamed")
    assert [r["key"] for r in store.list()] == ["boxes-1"]
    with pytest.raises(RunError, match=r"no run 'renamed' in "):
        store.get("renamed")
    with pytest.raises(RunError, match="no run"):
        store.delete("renamed")
    with pytest.raises(RunError, match="no run"):
        store.update("nope", status="x")


def test_bad_keys_and_values(tmp_path):
    store = RunStore(tmp_path)
    for bad in ["", "../x", "a/b", "with space", None]:
        with pytest.raises(RunError, match="invalid run key"):
            store.create(bad, {})
    store.create("k", {})
    with pytest.raises(RunError, match="not JSON"):
        store.update("k", config={"x": object()})
    with pytest.raises(RunError, match="not an object"):
        store.record("k", ["samples", "x"], 1)
    assert store.get("k")["config"] == {}


def test_permissions_and_atomic_file(tmp_path):
    store = RunStore(tmp_path)
    store.create("a", {"x": 1})
    assert (tmp_path / ".syncd").stat().st_mode & 0o777 == 0o700
    run_file = tmp_path / ".syncd" / "runs" / "a.json"
    assert run_file.stat().st_mode & 0o777 == 0o600
    data = json.loads(run_file.read_text())
    assert [doc["key"] for doc in data["run"].values()] == ["a"]
    for i in range(5):
        store.update("a", status=str(i))
    leftovers = [p.name for p in (tmp_path / ".syncd").rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []


def test_a_write_touches_only_its_own_run_file(tmp_path):
    store = RunStore(tmp_path)
    store.create("old", {"samples": ["x"] * 1000})
    old_file = tmp_path / ".syncd" / "runs" / "old.json"
    before = old_file.stat().st_mtime_ns, old_file.read_bytes()
    store.create("new", {})
    for i in range(3):
        store.update("new", status=str(i))
    assert (old_file.stat().st_mtime_ns, old_file.read_bytes()) == before
    assert [r["key"] for r in store.list()] == ["old", "new"]


def test_runs_kept_in_one_file_by_an_earlier_version_are_migrated(tmp_path):
    (tmp_path / ".syncd").mkdir(mode=0o700)
    (tmp_path / ".syncd" / "runs.json").write_text(json.dumps({
        "runs": {"1": {"key": "boxes-1", "created": "2026-01-01T00:00:00.000Z", "status": "loaded"}},
        "counters": {"1": {"prefix": "boxes", "last": 4}}}))
    store = RunStore(tmp_path)
    assert store.get("boxes-1")["status"] == "loaded"
    assert store.next_key("boxes") == "boxes-5"
    assert not (tmp_path / ".syncd" / "runs.json").exists()


def test_loose_state_dir_is_tightened(tmp_path):
    (tmp_path / ".syncd").mkdir(mode=0o755)
    os.chmod(tmp_path / ".syncd", 0o755)
    RunStore(tmp_path)
    assert (tmp_path / ".syncd").stat().st_mode & 0o777 == 0o700


def test_corrupt_runs_file_is_reported(tmp_path):
    (tmp_path / ".syncd" / "runs").mkdir(parents=True)
    (tmp_path / ".syncd" / "runs" / "a.json").write_text("{torn")
    with pytest.raises(RunError, match="corrupt"):
        RunStore(tmp_path).list()


def test_next_key_counts_up_and_never_reuses(tmp_path):
    store = RunStore(tmp_path)
    assert store.next_key("boxes") == "boxes-1"
    store.create("boxes-1", {})
    store.create("boxes-7", {})  # e.g. made by hand
    assert store.next_key("boxes") == "boxes-8"
    store.delete("boxes-7")
    assert store.next_key("boxes") == "boxes-9"
    assert store.next_key("masks") == "masks-1"
    assert RunStore(tmp_path).next_key("boxes") == "boxes-10"


BUMP = """
import sys
sys.path.insert(0, sys.argv[1])
from syncd.runs import RunStore
store = RunStore(sys.argv[2])
for _ in range(int(sys.argv[3])):
    store.modify("shared", lambda r: r.update(count=r.get("count", 0) + 1))
"""


def test_concurrent_writers_in_processes_lose_nothing(tmp_path):
    RunStore(tmp_path).create("shared", {})
    procs = [subprocess.Popen([sys.executable, "-c", BUMP, REPO, str(tmp_path), "15"])
             for _ in range(3)]
    for p in procs:
        assert p.wait(60) == 0
    assert RunStore(tmp_path).get("shared")["count"] == 45


def test_root_lock_refuses_second_daemon(tmp_path):
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {REPO!r})
        from syncd.errors import SyncdError
        from syncd.runs import acquire_root_lock
        try:
            with acquire_root_lock({str(tmp_path)!r}):
                print("acquired")
        except SyncdError as exc:
            print(exc)
    """)
    with acquire_root_lock(tmp_path) as lock_path:
        assert lock_path.read_text().strip() == str(os.getpid())
        assert lock_path.stat().st_mode & 0o777 == 0o600
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             timeout=60).stdout.strip()
        assert out == f"another syncd daemon holds {tmp_path} (pid {os.getpid()})"
        with pytest.raises(SyncdError, match="another syncd daemon"):
            with acquire_root_lock(tmp_path):
                pass
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60).stdout.strip()
    assert out == "acquired"  # released on exit


def test_lock_dies_with_its_holder(tmp_path):
    code = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {REPO!r})
        from syncd.runs import acquire_root_lock
        with acquire_root_lock({str(tmp_path)!r}):
            print("held", flush=True)
            time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(SyncdError, match=f"pid {proc.pid}"):
            with acquire_root_lock(tmp_path):
                pass
    finally:
        proc.kill()
        proc.wait(30)
        proc.stdout.close()
    with acquire_root_lock(tmp_path):  # kill -9 leaves no stale lock
        pass


def test_temp_files_of_a_killed_writer_are_removed(tmp_path):
    store = RunStore(tmp_path)
    store.create("a", {})
    torn = tmp_path / ".syncd" / "runs" / ".a.json.k3j2.tmp"
    torn.write_text('{"run": {"1": {"key": "a", "sta')  # what kill -9 mid-write leaves
    RunStore(tmp_path)
    assert not torn.exists()
    assert store.get("a")["key"] == "a"
