"""`fakecvat serve ...` / `python -m fakecvat serve ...`: run a standalone fake CVAT server."""
from __future__ import annotations

import argparse
import gc
import signal
import sys

from .app import DEFAULT_VERSION
from .store import CorruptStateError


def _user(spec: str) -> tuple[str, str]:
    name, sep, password = spec.partition(":")
    if not sep or not name or not password:
        raise argparse.ArgumentTypeError(f"--user wants NAME:PASSWORD, got {spec!r}")
    return name, password


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="fakecvat", description="An offline CVAT server for tests.")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve the CVAT REST API")
    serve.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback only)")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--data-dir", help="persist state and media here (survives restarts and kill -9)")
    serve.add_argument("--share-dir", help="CVAT's share volume: tasks may be created from server_files below it")
    serve.add_argument("--media-dir", help="keep uploaded media here, also after the server stops "
                                            "(default: <data-dir>/media, or a temporary directory removed at stop)")
    serve.add_argument("--user", action="append", type=_user, default=None, metavar="NAME:PASSWORD",
                       help="seed a user (repeatable; the first is a superuser; default admin:admin)")
    serve.add_argument("--cvat-version", default=DEFAULT_VERSION, help=f"version to report (default {DEFAULT_VERSION})")
    serve.add_argument("--threads", type=int, default=8)
    args = parser.parse_args(argv)

    from .server import FakeCVAT
    try:
        server = FakeCVAT(host=args.host, port=args.port, data_dir=args.data_dir, users=args.user,
                          cvat_version=args.cvat_version, share_dir=args.share_dir, threads=args.threads,
                          media_dir=args.media_dir)
    except (CorruptStateError, ValueError) as e:
        print(f"fakecvat: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"fakecvat: cannot listen on {args.host}:{args.port}: {e.strerror or e}", file=sys.stderr)
        return 2

    def _stop(signum, frame):
        # Only unwind here: the stop itself runs below, outside the handler. Run inside it, it
        # could wait for a lock that the interrupted loop holds (waitress's task queue), in
        # the same thread: a deadlock; the exception leaves every ``with lock`` on its way.
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    # Nearly everything alive now lives as long as the process: modules, the app, its routes
    # (~47,000 objects). Frozen, the cycle collector's full passes skip it: each took 12-15 ms,
    # stalling the request being served, and now walks only what requests made (a gc.callbacks
    # probe over six zero-copy uploads of 1000 files saw one full pass, of 0.34 ms). State
    # loaded from --data-dir is frozen too; it is plain JSON values without cycles, so
    # reference counting still frees it when a task or a reset drops it.
    gc.freeze()
    print(f"fakecvat {args.cvat_version} serving on {server.url}", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass  # (waitress's loop usually takes it itself, and returns)
    finally:
        # Always, however the loop ended: waitress's run() swallows KeyboardInterrupt and
        # returns, so a stop only in an ``except`` never ran, and SIGTERM left the temporary
        # media directory behind and the store unclosed.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # stopping already (stop() has its own timeouts)
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
