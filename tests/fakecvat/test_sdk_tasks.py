"""The official cvat-sdk and cvat-cli drive task creation, jobs, frames and deletion end to end."""
import json
import subprocess
import sys

import pytest
from cvat_sdk import make_client
from PIL import Image


def make_images(dirpath, n, fmt="PNG", size=(32, 24)):
    paths = []
    for i in range(n):
        p = dirpath / f"frame_{i:02d}.{fmt.lower()}"
        Image.new("RGB", (size[0] + i, size[1]), (i * 20 % 255, 100, 200)).save(p, fmt)
        paths.append(p)
    return paths


@pytest.fixture
def client(fakecvat):
    with make_client(fakecvat.url, credentials=("admin", "admin")) as c:
        c.config.status_check_period = 0.01
        yield c


def test_create_from_data_splits_jobs_and_serves_original_frames(client, tmp_path):
    paths = make_images(tmp_path, 5)
    task = client.tasks.create_from_data(
        {"name": "sdk task", "labels": [{"name": "car"}], "segment_size": 2},
        resources=[str(p) for p in reversed(paths)],  # server sorts lexicographically
        data_params={"image_quality": 80},
    )
    assert task.size == 5 and task.mode == "annotation"
    jobs = sorted(task.get_jobs(), key=lambda j: j.start_frame)
    assert [(j.start_frame, j.stop_frame) for j in jobs] == [(0, 1), (2, 3), (4, 4)]
    meta = task.get_meta()
    assert [f.name for f in meta.frames] == [p.name for p in paths]
    assert [(f.width, f.height) for f in meta.frames] == [(32 + i, 24) for i in range(5)]
    for i, p in enumerate(paths):
        assert task.get_frame(i, quality="original").read() == p.read_bytes()
    compressed = Image.open(task.get_frame(3, quality="compressed"))
    assert compressed.format == "JPEG" and compressed.size == (35, 24)
    assert [lab.name for lab in task.get_labels()] == ["car"]


def test_job_update_and_task_status(client, tmp_path, fakecvat):
    task = client.tasks.create_from_data({"name": "t", "labels": [{"name": "a"}], "segment_size": 1},
                                         resources=[str(p) for p in make_images(tmp_path, 2, "JPEG")])
    job, other = sorted(task.get_jobs(), key=lambda j: j.id)
    user1 = next(u for u in client.users.list() if u.username == "user1")
    job = client.jobs.retrieve(job.id)
    job.update({"assignee": user1.id, "stage": "validation", "state": "in progress"})
    assert job.assignee.username == "user1" and job.stage == "validation" and job.state == "in progress"
    job.update({"stage": "acceptance"})
    assert job.state == "new"  # a stage change alone resets the state
    job.update({"state": "completed"})
    client.jobs.retrieve(other.id).update({"stage": "acceptance", "state": "completed"})
    task.fetch()
    assert task.status == "completed" and task.jobs["completed"] == 2
    assert job.get_meta().size == 1
    job.update({"assignee": None})
    assert client.jobs.retrieve(job.id).assignee is None


def test_predefined_order_frame_step_and_remove(client, tmp_path):
    paths = make_images(tmp_path, 6)
    order = [p.name for p in reversed(paths)]
    task = client.tasks.create_from_data(
        {"name": "ordered", "labels": [{"name": "a"}]}, resources=[str(p) for p in reversed(paths)],
        data_params={"sorting_method": "predefined", "frame_step": 2, "chunk_size": 2})
    meta = task.get_meta()
    assert [f.name for f in meta.frames] == order[::2]
    assert meta.frame_filter == "step=2" and meta.chunk_size == 2 and task.size == 3
    assert task.get_frame(1, quality="original").read() == (tmp_path / order[2]).read_bytes()
    task_id = task.id
    task.remove()
    assert task_id not in [t.id for t in client.tasks.list()]


def test_unreadable_media_fails_the_request(client, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image at all")
    from cvat_sdk.core.exceptions import BackgroundRequestException
    with pytest.raises(BackgroundRequestException, match="broken.jpg"):
        client.tasks.create_from_data({"name": "bad", "labels": [{"name": "a"}]}, resources=[str(bad)])
    task = client.tasks.list()[0]
    assert task.size == 0 and task.jobs["count"] == 0


def cli(fakecvat, *args):
    cmd = [sys.executable, "-m", "cvat_cli", "--server-host", fakecvat.url, "--auth", "admin:admin", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_cvat_cli_create_list_delete(fakecvat, tmp_path):
    paths = make_images(tmp_path, 3)
    r = cli(fakecvat, "task", "create", "cli task", "local", *map(str, paths),
            "--labels", json.dumps([{"name": "person"}]), "--completion_verification_period", "0.01")
    assert r.returncode == 0, r.stderr
    task_id = int(r.stdout.strip().splitlines()[-1])
    r = cli(fakecvat, "task", "ls")
    assert r.returncode == 0, r.stderr
    assert str(task_id) in r.stdout.split()
    r = cli(fakecvat, "task", "ls", "--json")
    listed = json.loads(r.stdout)
    assert listed[0]["id"] == task_id and listed[0]["size"] == 3
    r = cli(fakecvat, "task", "delete", str(task_id))
    assert r.returncode == 0, r.stderr
    r = cli(fakecvat, "task", "ls")
    assert r.stdout.split() == []
