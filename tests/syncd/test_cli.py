"""The ``syncd`` one-shot command line, run as a user runs it: ``python -m syncd ...`` in a
subprocess, credentials only in the environment, against a live fakecvat. Every subcommand,
exit statuses, one-line errors, ``status --json``'s shape, and progress output that never
pollutes what a script reads on stdout."""
import json
import os
import pty
import subprocess
import sys

import pytest
import requests

from sample_helpers import make_images, read

AUTH = ("admin", "admin")
ENV_KEYS = ("CVAT_URL", "CVAT_USERNAME", "CVAT_PASSWORD", "CVAT_TOKEN", "CVAT_ORGANIZATION",
            "FIFTYONE_CVAT_URL", "FIFTYONE_CVAT_USERNAME", "FIFTYONE_CVAT_PASSWORD",
            "FIFTYONE_CVAT_ORGANIZATION")


def clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ENV_KEYS}
    env.update(extra)
    return env


def syncd(*args, env, stderr_tty: bool = False) -> subprocess.CompletedProcess:
    """Run ``python -m syncd ARGS``; with ``stderr_tty`` stderr is a pseudo-terminal (so rich
    progress bars are drawn there) while stdout stays a pipe, as in ``syncd ... | jq``."""
    cmd = [sys.executable, "-m", "syncd", *map(str, args)]
    if not stderr_tty:
        return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=slave, env=env, text=True)
        os.close(slave)
        chunks = []
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        out = proc.stdout.read()
        proc.wait(120)
    finally:
        os.close(master)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, b"".join(chunks).decode(errors="replace"))


def one_line_error(p: subprocess.CompletedProcess) -> str:
    """A failure: non-zero status, no traceback, and a single 'syncd: reason' line last."""
    assert p.returncode != 0, p.stdout
    assert "Traceback" not in p.stderr, p.stderr
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("syncd: "), p.stderr
    return last


def tasks(url: str) -> list[dict]:
    return requests.get(f"{url}/api/tasks?page_size=all", auth=AUTH).json()["results"]


@pytest.fixture
def env(fakecvat):
    return clean_env(CVAT_URL=fakecvat.url, CVAT_USERNAME="admin", CVAT_PASSWORD="admin")


def test_every_subcommand_through_a_whole_run(tmp_path, fakecvat, env):
    make_images(tmp_path, ["a.jpg", "b.jpg", "sub/c.jpg"])
    root = tmp_path

    p = syncd("tag", root, "a.jpg", "b.jpg", "sub/c.jpg", "--add", "todo", env=env)
    assert p.returncode == 0 and p.stdout.strip() == "3 sample(s) updated"
    assert read(root, "b.jpg")["tags"] == ["todo"]

    p = syncd("annotate", root, "boxes", "--tag", "todo", "--field", "gt", "--type", "detections",
              "--classes", "cat,dog", "--segment-size", "2", "--job-assignees", "user1", "user2", env=env)
    assert p.returncode == 0, p.stderr
    [task] = tasks(fakecvat.url)
    assert p.stdout.splitlines() == [f"run 'boxes': 1 task(s) [{task['id']}]; editor: {fakecvat.url}/tasks/{task['id']}"]

    p = syncd("status", root, "--json", env=env)
    assert p.returncode == 0, p.stderr
    [run] = json.loads(p.stdout)
    assert run["key"] == "boxes" and run["status"] == "annotating" and run["fields"] == ["gt"]
    [t] = run["tasks"]
    assert t["id"] == task["id"] and t["samples"] == 3 and t["url"].endswith(f"/tasks/{task['id']}")
    assert {"status", "assignee", "updated"} <= set(t)
    jobs = t["jobs"]
    assert [j["frames"] for j in jobs] == [[0, 1], [2, 2]]
    assert [j["assignee"] for j in jobs] == ["user1", "user2"]          # round robin, visible in CVAT
    assert {"id", "status", "stage", "state", "assignee", "reviewer", "updated", "url"} <= set(jobs[0])
    assert all(j["state"] == "new" and j["stage"] == "annotation" for j in jobs)

    p = syncd("status", root, env=env)
    assert p.returncode == 0
    assert f"Task {task['id']}" in p.stdout and "Assignee: user2" in p.stdout and "URL: " in p.stdout

    p = syncd("runs", root, "--json", env=env)
    assert [(r["key"], r["status"], r["tasks"], r["samples"]) for r in json.loads(p.stdout)] == \
        [("boxes", "annotating", [task["id"]], 3)]
    p = syncd("runs", root, env=env)
    assert p.returncode == 0 and p.stdout.startswith("boxes\tannotating\t")

    # an annotator draws a cat on a.jpg (frame 0, job 1)
    labels = requests.get(f"{fakecvat.url}/api/labels?task_id={task['id']}", auth=AUTH).json()["results"]
    cat = next(lb["id"] for lb in labels if lb["name"] == "cat")
    r = requests.patch(f"{fakecvat.url}/api/jobs/{jobs[0]['id']}/annotations?action=create", auth=AUTH,
                       json={"version": 0, "tags": [], "tracks": [], "shapes": [
                           {"type": "rectangle", "frame": 0, "label_id": cat, "points": [8, 6, 40, 30],
                            "attributes": []}]})
    assert r.status_code == 200, r.text

    p = syncd("load", root, "boxes", "--cleanup", env=env)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "run 'boxes': merged 3 sample(s), 1 label(s)"
    assert [d["label"] for d in read(root, "a.jpg")["gt"]["detections"]] == ["cat"]
    assert tasks(fakecvat.url) == []

    assert syncd("rename-run", root, "boxes", "boxes-v1", env=env).returncode == 0
    assert [r["key"] for r in json.loads(syncd("runs", root, "--json", env=env).stdout)] == ["boxes-v1"]
    assert syncd("delete-run", root, "boxes-v1", "--cleanup", env=env).returncode == 0
    assert syncd("runs", root, env=env).stdout.strip() == "no runs"
    assert syncd("status", root, env=env).stdout.strip() == "no runs"

    p = syncd("tag", root, "a.jpg", "--remove", "todo", env=env)
    assert p.returncode == 0 and read(root, "a.jpg")["tags"] == []
    assert [d["label"] for d in read(root, "a.jpg")["gt"]["detections"]] == ["cat"]   # labels stay


def test_schema_file_and_other_credential_sources(tmp_path, fakecvat):
    make_images(tmp_path, ["a.jpg"])
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps({"gt": {"type": "detections", "classes": ["cat"]},
                                  "scene": {"type": "classification", "classes": ["cat", "dog"]}}))
    # FiftyOne's variables
    fo = clean_env(FIFTYONE_CVAT_URL=fakecvat.url, FIFTYONE_CVAT_USERNAME="admin", FIFTYONE_CVAT_PASSWORD="admin")
    p = syncd("annotate", tmp_path, "r1", "a.jpg", "--schema", schema, env=fo)
    assert p.returncode == 0, p.stderr
    [task] = tasks(fakecvat.url)
    names = {lb["name"] for lb in requests.get(f"{fakecvat.url}/api/labels?task_id={task['id']}",
                                               auth=AUTH).json()["results"]}
    assert names == {"cat_gt", "cat_scene", "dog"}
    # a personal access token
    r = requests.post(f"{fakecvat.url}/api/auth/access_tokens", auth=AUTH, json={"name": "cli", "read_only": False})
    assert r.status_code == 201, r.text
    tok = clean_env(CVAT_URL=fakecvat.url, CVAT_TOKEN=r.json()["value"])
    p = syncd("status", tmp_path, "r1", "--json", env=tok)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)[0]["tasks"][0]["status"] == "annotation"   # CVAT answered
    p = syncd("load", tmp_path, "r1", "--cleanup", env=tok)
    assert p.returncode == 0, p.stderr
    assert tasks(fakecvat.url) == []


def test_failures_exit_non_zero_with_one_line(tmp_path, fakecvat, env):
    make_images(tmp_path, ["a.jpg"])
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    ann = ("annotate", tmp_path)
    # (each schema error's wording is checked in test_failures.py; here: how the CLI reports them)

    cases = [
        ((*ann, "k", "a.jpg", "--field", "gt", "--type", "boxes", "--classes", "a"), env,
         "unsupported label type 'boxes'"),
        ((*ann, "k", "a.jpg", "--field", "gt", "--type", "detections", "--classes", "a"),
         clean_env(CVAT_URL=fakecvat.url), "no CVAT credentials"),
        ((*ann, "k", "a.jpg", "--schema", tmp_path / "missing.json"), env, "missing.json"),
        ((*ann, "k", "a.jpg", "--field", "seg", "--type", "segmentation", "--mask-targets", "{1: road"), env,
         "mask-targets"),
        ((*ann, "k", "broken.jpg", "--field", "gt", "--type", "detections", "--classes", "a"), env,
         "no usable samples"),
        (("load", tmp_path, "nope"), env, "no run 'nope'"),
        (("status", tmp_path, "nope"), env, "no run 'nope'"),
        (("delete-run", tmp_path, "nope"), env, "no run 'nope'"),
    ]
    for args, e, reason in cases:
        p = syncd(*args, env=e)
        line = one_line_error(p)
        assert reason in line, (args, p.stderr)
    assert json.loads(syncd("runs", tmp_path, "--json", env=env).stdout) == []   # nothing recorded
    assert tasks(fakecvat.url) == []                                             # nothing made

    # refused by CVAT itself: the run is recorded (nothing made) and the line says how to go on
    bad_login = clean_env(CVAT_URL=fakecvat.url, CVAT_USERNAME="admin", CVAT_PASSWORD="wrong")
    p = syncd(*ann, "k-login", "a.jpg", "--field", "gt", "--type", "detections", "--classes", "a", env=bad_login)
    line = one_line_error(p)
    assert "login as 'admin'" in line and "--resume" in line and "wrong" not in line
    assert syncd("annotate", tmp_path, "k-login", "--resume", env=env).returncode == 0
    assert len(tasks(fakecvat.url)) == 1

    # the corrupt image among good ones: skipped with its reason, the rest proceed
    p = syncd(*ann, "k", "a.jpg", "broken.jpg", "--field", "gt", "--type", "detections", "--classes", "a", env=env)
    assert p.returncode == 0, p.stderr
    assert any(line.startswith("skipped broken.jpg: ") for line in p.stderr.splitlines())
    p = syncd(*ann, "k", "a.jpg", "--field", "gt", "--type", "detections", "--classes", "a", env=env)
    assert "already exists" in one_line_error(p)


def test_unreachable_cvat_then_resume(tmp_path, fakecvat, env):
    make_images(tmp_path, ["a.jpg"])
    # every request to CVAT's API refused before the work (503), as a proxy in front of a down CVAT
    requests.post(f"{fakecvat.url}/_fakecvat/faults", json={"path": "^/api/tasks", "status": 503, "retry_after": 0})
    p = syncd("annotate", tmp_path, "k", "a.jpg", "--field", "gt", "--type", "detections", "--classes", "a", env=env)
    line = one_line_error(p)
    assert "503" in line and f"syncd annotate {tmp_path} k --resume" in line
    requests.delete(f"{fakecvat.url}/_fakecvat/faults")
    p = syncd("annotate", tmp_path, "k", "--resume", env=env)
    assert p.returncode == 0, p.stderr
    assert len(tasks(fakecvat.url)) == 1 and tasks(fakecvat.url)[0]["size"] == 1
    # (a CVAT that does not answer at all is tested in test_failures.py, without the retries' wait)


def test_progress_goes_to_a_terminal_never_into_stdout(tmp_path, fakecvat, env):
    make_images(tmp_path, [f"{i}.jpg" for i in range(3)])
    p = syncd("annotate", tmp_path, "k", "0.jpg", "1.jpg", "2.jpg", "--field", "gt", "--type", "detections",
              "--classes", "a", env=env, stderr_tty=True)
    assert p.returncode == 0, p.stderr
    assert len(p.stdout.splitlines()) == 1 and p.stdout.startswith("run 'k': 1 task(s)")
    assert "\x1b" not in p.stdout and "\r" not in p.stdout
    assert "Traceback" not in p.stderr
    # piped stderr (CI logs): no bar drawn, no escape codes anywhere
    p = syncd("status", tmp_path, "--json", env=env)
    json.loads(p.stdout)
    assert "\x1b" not in p.stdout + p.stderr
