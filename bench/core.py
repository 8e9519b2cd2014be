"""The benchmark registry and the context a benchmark runs in.

Adding a benchmark (in any module of ``bench/`` that is not framework code)::

    from bench.core import benchmark, ratio

    @benchmark("upload.syncd", repeats=3, quick_repeats=1, targets={"seconds": ("<", 4.0)})
    def upload_syncd(ctx):
        images = ctx.images(ctx.pick(1000, 100))     # shared, generated once per session
        server = ctx.fakecvat()                       # `fakecvat serve` subprocess, per worker
        work = ctx.tmpdir()                           # fresh per call
        ...                                           # untimed setup
        with ctx.stopwatch() as sw:
            ...                                       # the timed part
        return {"seconds": sw.seconds, "images/s": n / sw.seconds,
                "server_rss_mb": server.peak_rss_mb()}

    ratio("upload: syncd vs cvat-sdk", ("upload.cvat_sdk", "seconds"), ("upload.syncd", "seconds"),
          target=1.2)

The function is called once per repeat and returns ``{figure name: number}``; the runner takes
the median/min/max of each figure over repeats and the benchmark's peak RSS (every benchmark runs
in its own worker process). A figure's unit is read from its name (``seconds``, ``.../s``,
``_mb``). Targets compare the median: ``(">=", x)`` or ``("<", x)``. A ratio is
median(numerator) / median(denominator), so for times put the slower one first.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable


@dataclass
class Benchmark:
    name: str
    fn: Callable
    repeats: int = 3
    quick_repeats: int = 1
    targets: dict = field(default_factory=dict)
    doc: str = ""
    opt_in: bool = False           # runs only when named exactly in --only (long, disk-heavy)
    # {figure: (floor benchmark, its figure)}: the most any client measures for a ">=" target
    # on this machine (see bench/reach.py)
    bounds: dict = field(default_factory=dict)


@dataclass
class Ratio:
    name: str
    numerator: tuple[str, str]     # (benchmark, figure)
    denominator: tuple[str, str]
    target: float | None = None    # the ratio must be >= target
    note: str = ""
    # (floor benchmark, figure) that takes the denominator's place for the target's bound: the
    # peer against a client whose own work took no time (see bench/reach.py)
    bound: tuple[str, str] | None = None


REGISTRY: dict[str, Benchmark] = {}
RATIOS: list[Ratio] = []


def benchmark(name: str, *, repeats: int = 3, quick_repeats: int = 1, targets: dict | None = None,
              opt_in: bool = False, bounds: dict | None = None):
    """Register ``fn(ctx) -> {figure: number}`` under ``name`` (dotted: family.variant).

    ``opt_in`` benchmarks are left out of full runs, families and globs; they run only when
    ``--only`` names them exactly. ``bounds``: {figure: (floor benchmark, figure)} for ">="
    targets: the floor's figure is the most any client reaches on the machine (bench/reach.py)."""
    targets, bounds = dict(targets or {}), dict(bounds or {})
    for fig in bounds:
        if targets.get(fig, ("",))[0] not in (">=", ">"):
            raise ValueError(f"{name}: a bound needs a '>=' or '>' target on {fig!r}")

    def deco(fn):
        if name in REGISTRY:
            raise ValueError(f"benchmark {name!r} registered twice")
        REGISTRY[name] = Benchmark(name, fn, repeats, quick_repeats, targets,
                                   (fn.__doc__ or "").strip().split("\n")[0], opt_in, bounds)
        return fn
    return deco


def ratio(name: str, numerator: tuple[str, str], denominator: tuple[str, str], *,
          target: float | None = None, note: str = "", bound: tuple[str, str] | None = None) -> None:
    """Register a ratio between two benchmarks' median figures, reported in the table.
    ``bound``: the floor benchmark whose figure, in the denominator's place, gives the most
    the target can reach on the machine (bench/reach.py)."""
    if bound is not None and target is None:
        raise ValueError(f"ratio {name!r}: a bound is only for a target")
    RATIOS.append(Ratio(name, tuple(numerator), tuple(denominator), target, note,
                        tuple(bound) if bound else None))


class Stopwatch:
    seconds: float = 0.0

    def __enter__(self) -> "Stopwatch":
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self._t0


class Context:
    """What a benchmark gets: the mode, scratch space, shared data and servers.

    ``session_dir`` is shared by every worker of one ``python -m bench`` run (generated images
    are cached there); everything else lives with the worker, and is deleted with the session
    at the end of the run, not when the worker ends.

    Why nothing is deleted between benchmarks: on an ext4 without a journal (the build
    machine's) the kernel skips every inode freed in the last 60 to 360 seconds when it
    allocates one (``recently_deleted`` in fs/ext4/ialloc.c), one buffer lookup each. Creating
    20,000 files took 0.13 s six minutes after the last big delete and 2.2-3.5 s right after
    deleting 20,000 (docs/benchmarks.md). A benchmark that writes files then paid
    for the files the previous one had deleted, and FiftyOne, which writes to MongoDB's files,
    did not. So fakecvat's uploads go to a media directory in the worker's scratch space too.
    """

    def __init__(self, *, quick: bool, session_dir: Path, work_dir: Path):
        self.quick = quick
        self.session_dir = Path(session_dir)
        self.work_dir = Path(work_dir)
        self.stack = contextlib.ExitStack()
        self._servers: dict = {}
        self._n = 0

    def pick(self, full, quick):
        """``full`` normally, ``quick`` under --quick."""
        return quick if self.quick else full

    def tmpdir(self, prefix: str = "t") -> Path:
        self._n += 1
        return Path(tempfile.mkdtemp(prefix=f"{prefix}{self._n}-", dir=self.work_dir))

    @staticmethod
    def stopwatch() -> Stopwatch:
        return Stopwatch()

    def images(self, n: int, width: int = 640, height: int = 480) -> Path:
        """A directory of ``n`` deterministic JPEGs (img_00000.jpg, ...), made once per session."""
        from .data import make_images
        target = self.session_dir / f"images-{n}-{width}x{height}"
        with self._locked(target.name):
            if not (target / ".done").exists():
                make_images(target, n, width, height)
                (target / ".done").write_text("ok")
        return target

    def fakecvat(self, *, share_dir=None, key: str = "default"):
        """A ``fakecvat serve`` subprocess (one per key per worker), stopped when the worker ends."""
        from .servers import FakeCVATProcess
        k = (key, str(share_dir))
        if k not in self._servers:
            log = self.work_dir / f"fakecvat-{key}.log"
            # its uploads stay until the whole run ends (see Context: no deletes between benchmarks)
            media = self.tmpdir(f"fakecvat-media-{key}-")
            self._servers[k] = self.stack.enter_context(FakeCVATProcess(share_dir=share_dir, log_path=log,
                                                                        media_dir=media))
        return self._servers[k]

    @contextlib.contextmanager
    def _locked(self, name: str):
        # workers run one at a time today, but a lock keeps a later parallel runner honest
        with open(self.session_dir / f".{name}.lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def close(self) -> None:
        self.stack.close()


def env_with_pythonpath() -> dict:
    """The environment for child Python processes, able to import this checkout's packages."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env
