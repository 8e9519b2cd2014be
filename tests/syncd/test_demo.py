"""`syncd demo`, the README's first command, runs the whole loop and leaves labels on disk."""
import json
import subprocess
import sys


def test_demo_runs_the_loop_end_to_end(tmp_path):
    root = tmp_path / "demo"
    proc = subprocess.run([sys.executable, "-m", "syncd", "demo", "--dir", str(root), "--count", "6"],
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-3000:]
    samples = sorted(root.glob("incoming/**/*.jpg.json"))
    assert len(samples) == 6
    for path in samples:
        doc = json.loads(path.read_text())
        assert doc["tags"] == ["annotated"]
        dets = doc["ground_truth"]["detections"]
        assert dets and all(d["label"] in ("person", "vehicle") for d in dets)
        assert all(0 <= v <= 1 for d in dets for v in d["bounding_box"])
    log = (root / "syncd-demo.log").read_text()
    assert "daemon stopped" in log and "Traceback" not in log
