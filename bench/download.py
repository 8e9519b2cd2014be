"""Download and merge: CVAT shapes → labels merged into the sample files.

The same task for every client: syncd annotates N images (untimed), the "annotators" PUT
20 boxes per image through the API, then ``syncd.load_annotations`` is timed (per-job GETs,
conversion, the merge into every sample file, run records).
"""
from __future__ import annotations

import os
import random

from .core import benchmark
from .upload import CLASSES, make_dataset, n_images, syncd_annotate

PER_IMAGE = 20


def annotate_and_draw(ctx, server, *, kind: str = "rectangle", per_image: int = PER_IMAGE):
    """A dataset sent to fakecvat with ``per_image`` shapes drawn on every frame; (root, n shapes)."""
    root, rels = make_dataset(ctx)
    label_type = "detections" if kind == "rectangle" else "instances"
    import syncd
    result = syncd.annotate(str(root), "bench", tag="requires_annotation", client=_client(server),
                            label_field="ground_truth", label_type=label_type, classes=CLASSES)
    n = draw_shapes(server.session(), server.url, result["tasks"][0], len(rels), kind=kind, per_image=per_image)
    return root, n


def draw_shapes(s, url: str, tid: int, n_frames: int, *, kind: str = "rectangle",
                per_image: int = PER_IMAGE) -> int:
    """The annotators: ``per_image`` random shapes (seeded: the same for every client) on each
    frame of task ``tid``, one PUT through the API with session ``s``; returns how many."""
    labels = s.get(f"{url}/api/labels", params={"task_id": tid, "page_size": "all"}).json()["results"]
    ids = [lb["id"] for lb in labels]
    rng = random.Random(0)
    shapes = []
    for frame in range(n_frames):
        for _ in range(per_image):
            x, y = rng.uniform(0, 560), rng.uniform(0, 400)
            w, h = rng.uniform(10, 80), rng.uniform(10, 80)
            shape = {"type": kind, "frame": frame, "label_id": rng.choice(ids), "group": 0, "source": "manual",
                     "occluded": False, "z_order": 0, "rotation": 0.0, "attributes": []}
            if kind == "rectangle":
                shape["points"] = [x, y, x + w, y + h]
            else:  # CVAT mask: run-length encoding of the box's pixels, then left, top, right, bottom
                left, top, right, bottom = int(x), int(y), int(x + w), int(y + h)
                area = (right - left + 1) * (bottom - top + 1)
                shape["points"] = [0, area, left, top, right, bottom]
            shapes.append(shape)
    r = s.put(f"{url}/api/tasks/{tid}/annotations",
              json={"version": 0, "tags": [], "shapes": shapes, "tracks": []})
    r.raise_for_status()
    return len(shapes)


def on_disk() -> None:
    """Flush what the setup just wrote (untimed), so a load finds its dataset on disk, as it
    does in use: annotators take minutes to days, the kernel writes dirty pages back after 30
    seconds. (Replacing a sample file that is only in the page cache is cheaper: on a disk
    mounted with ``discard``, as this machine's is, freeing a written block costs a TRIM.)"""
    os.sync()


def _client(server):
    from .upload import syncd_client
    return syncd_client(server)


def _load(ctx, kind: str):
    import syncd
    server = ctx.fakecvat()
    root, n = annotate_and_draw(ctx, server, kind=kind)
    on_disk()
    with ctx.stopwatch() as sw:
        summary = syncd.load_annotations(str(root), "bench", client=_client(server))
    return {"seconds": sw.seconds, "shapes/s": n / sw.seconds, "samples/s": n_images(ctx) / sw.seconds,
            "server_rss_mb": server.peak_rss_mb()}, summary


@benchmark("download.syncd", repeats=3, targets={"seconds": ("<", 2.0), "shapes/s": (">=", 100_000)},
           bounds={"shapes/s": ("download.floor", "shapes/s")})
def download_syncd(ctx):
    """syncd.load_annotations: 1000 samples x 20 boxes, download + merge into sample files"""
    return _load(ctx, "rectangle")[0]


@benchmark("download.syncd_masks", repeats=1, targets={"shapes/s": (">=", 100_000)},
           bounds={"shapes/s": ("download.floor_masks", "shapes/s")})
def download_syncd_masks(ctx):
    """as download.syncd with 20 instance masks per sample (mask PNG files written)"""
    return _load(ctx, "mask")[0]


@benchmark("download.end_to_end", repeats=1, targets={"seconds": ("<", 6.0)})
def end_to_end(ctx):
    """annotate 1000 images (to task ready) + load+merge 1000x20 boxes, one number"""
    import syncd
    server = ctx.fakecvat()
    root, _ = make_dataset(ctx)
    up = syncd_annotate(ctx, server, root)
    # the annotators' time is not ours: draw untimed, then load
    s = server.session()
    tid = up["task"]
    lid = s.get(f"{server.url}/api/labels", params={"task_id": tid}).json()["results"][0]["id"]
    shapes = [{"type": "rectangle", "frame": f, "label_id": lid, "points": [10 + i, 10, 50 + i, 60],
               "group": 0, "source": "manual", "occluded": False, "z_order": 0, "rotation": 0.0,
               "attributes": []} for f in range(n_images(ctx)) for i in range(PER_IMAGE)]
    s.put(f"{server.url}/api/tasks/{tid}/annotations", json={"version": 0, "shapes": shapes, "tags": [],
                                                               "tracks": []}).raise_for_status()
    on_disk()
    with ctx.stopwatch() as sw:
        syncd.load_annotations(str(root), "bench", client=_client(server))
    return {"seconds": up["seconds"] + sw.seconds, "upload_seconds": up["seconds"], "load_seconds": sw.seconds}
