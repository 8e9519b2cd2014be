"""The kill campaign (tests/reliability/test_kill_campaign.py, ``tools/campaign.py kills``).

``syncd run`` is killed with SIGKILL again and again, restarted each time, then left to finish;
:func:`campaign.check` proves nothing was lost or duplicated. The kills must land while the
daemon *works* (batching, creating tasks, uploading, assigning, polling, loading), not while it
waits for the next sample, so:

- work arrives continuously: small waves of new samples are released whenever fewer than
  ``in_flight`` released samples are unfinished (when the dataset runs out, fresh images are
  made, so a long run never goes idle);
- the annotator looks every 0.15 s, so jobs complete promptly and runs keep moving;
- most kills are aimed: the harness watches the run records and kills a short random delay
  after it sees an active phase; some kills still land during start-up and at blind instants.
"""
from __future__ import annotations

import random
import time
from pathlib import Path

import campaign
from campaign import Campaign, _run_records, _tail_bytes, release, wait_for

RUN_PHASES = ("planned", "uploading", "annotating", "loading")   # what a kill is aimed at
ACTIVE = ("gathering", *RUN_PHASES)   # work in flight (gathering: samples wait to be batched)
STARTUP_SHARE = 0.08   # kills during start-up (before "daemon ready")
BLIND_SHARE = 0.08     # kills at a random instant, whatever the daemon is doing
AIM_TIMEOUT = 1.0      # an aimed kill waits this long for an active phase, then kills anyway


def run_kills(workdir: Path, *, samples: int = 40, videos: int = 1, kills: int = 100,
              seed: int = 1, max_life: float = 0.5, deadline: float = 180.0,
              in_flight: int = 16) -> dict:
    """``kills`` daemon lives each ended by SIGKILL, then one last life that runs to the end.

    ``samples`` media are made up front (``videos`` of them videos) but released in waves of
    1-4; more images are made if the kills outlast them. Planning needs a life longer than the
    others (a file counts as stable after two looks a second apart, then the batch window runs):
    when samples have waited unplanned for a few lives, a life is let run until they are
    planned, then killed like the others."""
    rng = random.Random(seed)
    c = Campaign(workdir, samples, videos, seed, task_size=4, segment_size=2)
    c.annotator.period = 0.15
    pool = list(c.originals)
    rng.shuffle(pool)
    for rel in pool:
        (c.root / (rel + ".json")).unlink()
    released: set[str] = set()
    extra_rng = random.Random(seed + 1)

    def top_up() -> bool:
        if len(unfinished(c.root, released)) >= in_flight:
            return False
        size = rng.randint(3, 8)
        while len(pool) < size:   # the dataset ran out: make a fresh image
            rel, doc = campaign.make_sample(c.root, len(c.originals), False, extra_rng)
            c.originals[rel] = doc
            pool.append(rel)
        wave = [pool.pop() for _ in range(size)]
        release(c.root, {rel: c.originals[rel] for rel in wave})
        released.update(wave)
        return True

    try:
        c.annotator.start()
        started = time.monotonic()
        done_at_kill, phases, planning_lives = [], {}, []
        for n in range(kills):
            top_up()
            mark = c.daemon_log.stat().st_size if c.daemon_log.exists() else 0
            d = c.start_daemon()
            roll = rng.random()
            phase = None
            if roll < STARTUP_SHARE:
                time.sleep(rng.uniform(0, 0.3))
                phase = "starting"
            else:
                try:
                    wait_for(lambda: d.alive() and b"daemon ready" in _tail_bytes(c.daemon_log, mark),
                             20, 0.02, "daemon ready")
                except AssertionError:
                    raise AssertionError(f"daemon did not start (life {n}):\n{c.log_tail()}")
                if _phase(c.root, released) == "gathering":
                    # Samples wait and no run is in flight: planning needs a life over a second
                    # long (stable files, then the batch window), so let this one plan.
                    t0 = time.monotonic()
                    wait_for(lambda: not unplanned(c.root, released), 30, 0.02, "runs planned")
                    planning_lives.append(time.monotonic() - t0)
                if roll < STARTUP_SHARE + BLIND_SHARE:
                    time.sleep(rng.uniform(0, max_life))
                else:
                    _aim(c.root, released, rng, max_life)
            if not d.alive():
                raise AssertionError(f"daemon exited {d.proc.returncode} by itself:\n{c.log_tail()}")
            d.kill()
            c.daemons.remove(d)
            phase = phase or _phase(c.root, released)
            phases[phase] = phases.get(phase, 0) + 1
            if n % 10 == 9:
                done_at_kill.append(c.done())
        kill_phase = time.monotonic() - started
        # whatever was not released yet goes in now: the last life finishes everything
        release(c.root, {rel: c.originals[rel] for rel in pool})
        mark = c.daemon_log.stat().st_size
        d = c.start_daemon()
        # ready first: a SIGTERM before the handlers are installed would not be a clean stop
        wait_for(lambda: b"daemon ready" in _tail_bytes(c.daemon_log, mark), 20, 0.05, "ready")
        c.wait_done(deadline, d)
        assert d.stop() == 0, c.log_tail()
        fig = c.check()
        active = sum(v for k, v in phases.items() if k.split(":")[0] in ACTIVE)
        fig.update(kills=kills, kills_by_phase=dict(sorted(phases.items())),
                   kills_active_share=round(active / max(1, kills), 3),
                   planning_lives=len(planning_lives),
                   seconds_planning=round(sum(planning_lives), 1),
                   done_every_10_kills=done_at_kill, seconds_killing=round(kill_phase, 1),
                   seconds=round(time.monotonic() - started, 1))
        return fig
    finally:
        c.close()


def _aim(root: Path, released: set[str], rng: random.Random, max_life: float) -> None:
    """Return once the daemon is in an active phase plus a short random delay (a random
    instant inside that phase or just after), or after AIM_TIMEOUT if it never is."""
    # A random head start first, so the kill does not always hit a phase's first instant.
    time.sleep(rng.uniform(0, max_life / 4))
    end = time.monotonic() + AIM_TIMEOUT
    while time.monotonic() < end and _phase(root, released).split(":")[0] not in RUN_PHASES:
        time.sleep(0.01)
    time.sleep(rng.uniform(0, max_life / 3))


def unplanned(root: Path, released: set[str]) -> set[str]:
    """Released samples no run holds yet."""
    held = {rel for r in _run_records(root).values() for rel in (r.get("samples") or [])}
    return set(released) - held


def unfinished(root: Path, released: set[str]) -> set[str]:
    """Released samples not yet in a loaded run (waiting, planned, uploading, ...)."""
    loaded = {rel for r in _run_records(root).values() if r.get("status") == "loaded"
              for rel in (r.get("samples") or [])}
    return set(released) - loaded


ORDER = ["planned", "uploading", "annotating", "loading", "loaded", "failed"]
BATCH_ORDER = ["planned", "creating", "created", "uploading", "ready", "annotating"]


def _phase(root: Path, released: set[str]) -> str:
    """Where the loop is: the least advanced unfinished run's status (with the batch state
    while uploading); "gathering" when released samples wait for a run and none is in flight;
    "idle" when there is nothing to do."""
    runs = {k: r for k, r in _run_records(root).items()
            if r.get("status") not in ("loaded", "failed")}
    if not runs:
        return "gathering" if unplanned(root, released) else "idle"
    worst = min(runs.values(),
                key=lambda r: ORDER.index(r.get("status")) if r.get("status") in ORDER else 0)
    status = worst.get("status")
    if status == "uploading":
        states = [b.get("state") for b in worst.get("batches", [])]
        first = min(states, key=lambda s: BATCH_ORDER.index(s) if s in BATCH_ORDER else 0,
                    default="?")
        return f"uploading:{first}"
    return str(status)
