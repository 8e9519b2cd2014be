"""fakecvat alone: small GETs per second with a few client threads, and the annotations of one
task with 10,000 shapes (PUT then GET)."""
from __future__ import annotations

import threading

from .core import benchmark

THREADS = 4


def _hammer(ctx, server, path: str) -> dict:
    per_thread = ctx.pick(500, 100)
    sessions = []
    for _ in range(THREADS):
        s = server.session()
        s.get(server.url + path).raise_for_status()  # warm: connection + auth
        sessions.append(s)
    errors = []

    def work(s):
        for _ in range(per_thread):
            r = s.get(server.url + path)
            if r.status_code != 200:
                errors.append(r.status_code)
    threads = [threading.Thread(target=work, args=(s,)) for s in sessions]
    with ctx.stopwatch() as sw:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors, errors[:5]
    return {"requests/s": THREADS * per_thread / sw.seconds, "server_rss_mb": server.peak_rss_mb()}


@benchmark("fakecvat.users_self", repeats=3)
def users_self(ctx):
    """GET /api/users/self, 4 client threads (Basic auth, keep-alive)"""
    return _hammer(ctx, ctx.fakecvat(), "/api/users/self")


@benchmark("fakecvat.job", repeats=3)
def job(ctx):
    """GET /api/jobs/{id}, 4 client threads"""
    server = ctx.fakecvat()
    s = server.session()
    tid = s.post(server.url + "/api/tasks", json={"name": "j", "labels": [{"name": "a"}]}).json()["id"]
    from .upload import image_files, raw_multipart_post_with_auth, _wait_ready
    files = image_files(ctx)[:10]
    raw_multipart_post_with_auth(server, f"/api/tasks/{tid}/data/", files)
    _wait_ready(s, server.url, tid, len(files))
    jid = s.get(server.url + "/api/jobs", params={"task_id": tid}).json()["results"][0]["id"]
    return _hammer(ctx, server, f"/api/jobs/{jid}")


@benchmark("fakecvat.annotations_10k", repeats=3,
           targets={"put_seconds": ("<", 0.6), "get_seconds": ("<", 0.3)})
def annotations_10k(ctx):
    """PUT then GET /api/tasks/{id}/annotations with 10,000 boxes on one task"""
    server = ctx.fakecvat()
    s = server.session()
    from .upload import image_files, raw_multipart_post_with_auth, _wait_ready
    tid = s.post(server.url + "/api/tasks", json={"name": "a", "labels": [{"name": "a"}]}).json()["id"]
    files = image_files(ctx)[:10]
    raw_multipart_post_with_auth(server, f"/api/tasks/{tid}/data/", files)
    _wait_ready(s, server.url, tid, len(files))
    lid = s.get(server.url + "/api/labels", params={"task_id": tid}).json()["results"][0]["id"]
    shapes = [{"type": "rectangle", "frame": i % 10, "label_id": lid, "points": [i % 500, 1, i % 500 + 20, 30],
               "group": 0, "source": "manual", "occluded": False, "z_order": 0, "rotation": 0.0,
               "attributes": []} for i in range(10_000)]
    body = {"version": 0, "shapes": shapes, "tags": [], "tracks": []}
    with ctx.stopwatch() as put:
        s.put(f"{server.url}/api/tasks/{tid}/annotations", json=body).raise_for_status()
    with ctx.stopwatch() as get:
        r = s.get(f"{server.url}/api/tasks/{tid}/annotations")
        r.raise_for_status()
        n = len(r.json()["shapes"])
    assert n == 10_000, n
    return {"put_seconds": put.seconds, "get_seconds": get.seconds, "server_rss_mb": server.peak_rss_mb()}
