"""The ``syncd`` command: an argparse parser with one subcommand per job, each registered by a
small function. Thin: parse, call the library, print. Any ``SyncdError`` becomes one line on
stderr and exit status 1; Ctrl-C outside the daemon exits 130 without a traceback.

Subcommands: ``run`` (the daemon, syncd.daemon), the one-shot ones from syncd.cli_oneshot
(annotate, load, status, runs, rename-run, delete-run, tag) and ``demo`` (syncd.demo).
To add one: write ``register_<name>(sub)`` that adds the parser and sets ``handler``, and list
it in ``REGISTRY``.
"""
from __future__ import annotations

import argparse
import sys

from syncd.errors import SyncdError


def register_run(sub) -> None:
    p = sub.add_parser("run", help="the daemon: watch ROOT and move tagged samples through CVAT",
                       description="Run the syncd daemon on ROOT in the foreground (logs on "
                                   "stderr; SIGTERM/SIGINT stop it cleanly).")
    p.add_argument("root", metavar="ROOT", help="the dataset directory (holds syncd.toml)")
    p.add_argument("--log-format", choices=("text", "json"), default="text",
                   help="one line per event, as text (default) or JSON")
    p.add_argument("--log-level", default="INFO",
                   choices=("DEBUG", "INFO", "WARNING", "ERROR"), type=str.upper)
    p.set_defaults(handler=cmd_run)


def cmd_run(args) -> int:
    from syncd.daemon import run
    return run(args.root, log_format=args.log_format, log_level=args.log_level)


def register_oneshot(sub) -> None:
    try:
        from syncd.cli_oneshot import register
    except ImportError as exc:  # keep `syncd run` usable even if that module is broken
        print(f"syncd: one-shot commands unavailable: {exc}", file=sys.stderr)
        return
    register(sub)


def register_demo(sub) -> None:
    p = sub.add_parser("demo", help="the whole loop on an embedded fakecvat, with progress")
    p.add_argument("--dir", dest="directory", help="where to lay out the demo dataset")
    p.add_argument("--count", type=int, default=12, help="how many images to drop")
    p.add_argument("--timeout", type=float, default=55.0)
    p.set_defaults(handler=cmd_demo)


def cmd_demo(args) -> int:
    from syncd.demo import main as demo_main
    return demo_main(args.directory, count=args.count, timeout=args.timeout)


REGISTRY = [register_run, register_oneshot, register_demo]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="syncd", description="Move a dataset directory "
                                     "through CVAT annotation.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for register in REGISTRY:
        register(sub)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except SyncdError as exc:
        print(f"syncd: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("syncd: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
