"""``fakecvat serve --data-dir``: kill -9 right after acknowledged writes loses none of them.

Writers keep creating projects, tasks and job annotations through the REST API; the server is
killed with SIGKILL at a random instant while they run, restarted on the same data directory,
and every write that was answered 2xx before the kill must be there afterwards. Five rounds."""
from __future__ import annotations

import random
import threading

import requests

import campaign


def _writer(url: str, wid: int, acked: list, halt: threading.Event) -> None:
    s = requests.Session()
    s.auth = ("admin", "admin")
    n = 0
    while not halt.is_set():
        n += 1
        try:
            r = s.post(url + "/api/projects", json={"name": f"w{wid}-p{n}", "labels": []}, timeout=5)
            if r.status_code == 201:
                acked.append(("projects", r.json()["id"], f"w{wid}-p{n}"))
            r = s.post(url + "/api/tasks", json={"name": f"w{wid}-t{n}", "labels": [{"name": "cat"}]},
                       timeout=5)
            if r.status_code == 201:
                acked.append(("tasks", r.json()["id"], f"w{wid}-t{n}"))
        except requests.RequestException:
            return  # the server is gone: this writer's acknowledged writes are recorded


def test_kill_9_after_acknowledged_writes_loses_none(tmp_path):
    rng = random.Random(5)
    server = campaign.FakeCVATProc(tmp_path / "cvat", tmp_path / "fakecvat.log").start()
    total = 0
    try:
        for round_ in range(5):
            acked: list = []
            halt = threading.Event()
            writers = [threading.Thread(target=_writer, args=(server.url, w, acked, halt))
                       for w in range(3)]
            for t in writers:
                t.start()
            campaign.wait_for(lambda: len(acked) >= 10, 30, 0.01, "some writes")
            threading.Event().wait(rng.uniform(0, 0.3))
            server.kill()
            halt.set()
            for t in writers:
                t.join(10)
            snapshot = list(acked)  # everything answered before the kill
            server.start()
            tables = server.state()
            lost = [(table, i, name) for table, i, name in snapshot
                    if (tables.get(table, {}).get(str(i)) or {}).get("name") != name]
            assert lost == [], f"round {round_}: acknowledged writes lost: {lost[:5]}"
            total += len(snapshot)
        campaign.log(f"fakecvat durability: 5 kill -9 rounds, {total} acknowledged writes, lost 0")
    finally:
        server.stop()
