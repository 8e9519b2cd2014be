"""``python -m bench [--quick] [--only NAME ...] [--rounds N] [--json PATH] [--list]``."""
from __future__ import annotations

import argparse
import sys

from . import runner


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--quick", action="store_true", help="fewer images and repeats (< ~2 minutes)")
    p.add_argument("--only", nargs="+", metavar="NAME",
                   help="benchmark names, families (prefix before a dot) or globs")
    p.add_argument("--json", metavar="PATH", help="also write the JSON report here")
    p.add_argument("--keep", action="store_true", help="keep the scratch dir (data, server logs)")
    p.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    p.add_argument("--rounds", type=int, metavar="N",
                   help="interleave: N rounds of every benchmark once (fresh worker each), so the "
                        "two sides of a ratio run back to back; ratios are per-round medians")
    # internal: one benchmark in this process (the runner spawns these)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--session", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    p.add_argument("--repeats", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.worker:
        return runner.run_worker(args.worker, args.quick, args.session, args.out, args.repeats)

    failed = runner.discover()
    for f in failed:
        print(f"[bench] cannot import {f}", file=sys.stderr)
    names = runner.select(args.only)
    if args.list:
        for n in names:
            print(f"{n:40s} {runner.REGISTRY[n].doc}")
        return 0
    if not names:
        print(f"[bench] nothing matches {args.only}", file=sys.stderr)
        return 2
    if args.rounds is not None and args.rounds < 1:
        p.error("--rounds must be at least 1")
    report = runner.run(names, args.quick, keep=args.keep, rounds=args.rounds)
    path = runner.save(report, args.json)
    print(runner.table(report))
    print(f"\n[bench] JSON: {path}", file=sys.stderr)
    return 1 if any(b["error"] for b in report["benchmarks"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
