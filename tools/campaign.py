"""The reliability campaigns' long modes as a command (docs/reliability.md).

    python tools/campaign.py faults --samples 200 --seed 3 [--fraction 0.2] [--workdir DIR]
    python tools/campaign.py kills --samples 120 --kills 1000 --seed 3 [--workdir DIR]

Prints the figures as JSON and exits 1 when an invariant is broken (the work directory, with
the daemon's and fakecvat's logs, is kept then, or always with --workdir).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "reliability"))
import campaign  # noqa: E402
import kills  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="campaign.py", description=__doc__.split("\n")[0])
    p.add_argument("mode", choices=("faults", "kills"))
    p.add_argument("--samples", type=int, default=None)
    p.add_argument("--videos", type=int, default=1)
    p.add_argument("--kills", type=int, default=1000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--fraction", type=float, default=0.2, help="faults: share of CVAT calls faulted")
    p.add_argument("--timeout", type=float, default=1.0, help="faults: the daemon's CVAT read timeout")
    p.add_argument("--max-life", type=float, default=0.5, help="kills: longest daemon life after ready")
    p.add_argument("--deadline", type=float, default=1800.0, help="seconds for the loop to finish")
    p.add_argument("--workdir", help="keep everything here (default: a temporary directory)")
    a = p.parse_args(argv)
    work = Path(a.workdir) if a.workdir else Path(tempfile.mkdtemp(prefix=f"campaign-{a.mode}-"))
    work.mkdir(parents=True, exist_ok=True)
    if a.mode == "faults":
        fig = campaign.run_faults(work, samples=a.samples or 200, videos=a.videos, seed=a.seed,
                                  fraction=a.fraction, timeout=a.timeout, deadline=a.deadline)
    else:
        fig = kills.run_kills(work, samples=a.samples or 120, videos=a.videos, kills=a.kills,
                                 seed=a.seed, max_life=a.max_life, deadline=a.deadline)
    print(json.dumps(fig, indent=1))
    ok = not fig["problems"]
    if ok and not a.workdir:
        shutil.rmtree(work, ignore_errors=True)
    elif not ok:
        print(f"invariants broken; logs kept in {work}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
