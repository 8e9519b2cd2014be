"""FiftyOne's side of the comparison, run as its own process (``python -m bench.fo_worker``) by
``bench/fiftyone_bench.py``: FiftyOne is heavy to import and starts its MongoDB, and a process of
its own keeps that out of the worker whose RSS is reported.

    python -m bench.fo_worker upload   --url URL --images DIR --n N --out result.json
    python -m bench.fo_worker download --url URL --images DIR --n N --out result.json [--per-image 20]

``upload`` times ``dataset.annotate(...)`` (detections, the same classes as syncd's benchmark)
of the first N JPEGs of DIR; ``download`` annotates untimed, lets the "annotators" PUT the same
seeded boxes as ``bench/download.py`` does for syncd, then times ``dataset.load_annotations()``.
The dataset is non-persistent, metadata is computed before the clock starts (syncd's benchmark
gets sample files that already hold it), usage tracking is off.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from pathlib import Path

for key, value in (("FIFTYONE_DO_NOT_TRACK", "true"), ("FIFTYONE_SHOW_PROGRESS_BARS", "false"),
                   ("FIFTYONE_DATABASE_VALIDATION", "false")):
    os.environ[key] = value  # before FiftyOne is imported

USERNAME = PASSWORD = "admin"


def dataset_of(fo, images: Path, n: int):
    files = sorted(images.glob("*.jpg"))[:n]
    if len(files) < n:
        raise SystemExit(f"{images} holds {len(files)} JPEGs, {n} asked for")
    ds = fo.Dataset(f"syncd-bench-{uuid.uuid4().hex}", persistent=False)
    ds.add_samples([fo.Sample(filepath=str(f)) for f in files])
    ds.compute_metadata()
    return ds


def annotate(ds, url: str, key: str = "bench", label_type: str = "detections"):
    from bench.upload import CLASSES
    return ds.annotate(key, backend="cvat", url=url, username=USERNAME, password=PASSWORD,
                       label_field="ground_truth", label_type=label_type, classes=CLASSES)


def wait_ready(url: str, tid: int, n: int, t0: float, timeout: float = 300) -> float:
    """Seconds from ``t0`` until the task holds its ``n`` frames and its jobs (polled every 10 ms)."""
    import requests
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        task = requests.get(f"{url}/api/tasks/{tid}", auth=(USERNAME, PASSWORD), timeout=30).json()
        if task.get("size") == n and task.get("jobs", {}).get("count"):
            return time.perf_counter() - t0
        time.sleep(0.01)
    raise SystemExit(f"task {tid} not ready after {timeout}s")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.fo_worker")
    ap.add_argument("mode", choices=["upload", "download", "download_masks"])
    ap.add_argument("--url", required=True)
    ap.add_argument("--images", required=True, type=Path)
    ap.add_argument("--n", required=True, type=int)
    ap.add_argument("--per-image", type=int, default=20)
    ap.add_argument("--out", required=True, type=Path)
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    import fiftyone as fo
    ds = dataset_of(fo, args.images, args.n)
    out = {"setup_seconds": time.perf_counter() - t0, "n": args.n}
    try:
        if args.mode == "upload":
            t = time.perf_counter()
            results = annotate(ds, args.url)
            out["seconds"] = time.perf_counter() - t
            [tid] = results.task_ids
            # annotate() returns once the task lists jobs; syncd's figure runs to "data ready"
            out["ready_seconds"] = wait_ready(args.url, tid, args.n, t)
        else:
            import requests

            from bench.download import draw_shapes
            masks = args.mode == "download_masks"
            results = annotate(ds, args.url, label_type="instances" if masks else "detections")
            [tid] = results.task_ids
            s = requests.Session()
            s.auth = (USERNAME, PASSWORD)
            out["shapes"] = draw_shapes(s, args.url, tid, args.n, per_image=args.per_image,
                                        kind="mask" if masks else "rectangle")
            os.sync()  # its database on disk before the clock starts, as syncd's dataset is (on_disk)
            t = time.perf_counter()
            ds.load_annotations("bench", url=args.url, username=USERNAME, password=PASSWORD,
                                unexpected="keep")
            out["seconds"] = time.perf_counter() - t
            out["loaded"] = int(ds.count("ground_truth.detections"))
            if masks:  # each one with its mask
                out["loaded"] = int(ds.count("ground_truth.detections.mask"))
            if out["loaded"] != out["shapes"]:
                raise SystemExit(f"FiftyOne loaded {out['loaded']} of {out['shapes']} shapes")
    finally:
        ds.delete()
    args.out.write_text(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
