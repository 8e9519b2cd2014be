"""Running benchmarks: discovery, one worker process per benchmark, statistics, the table, JSON.

Each benchmark runs in a fresh ``python -m bench --worker`` process so its peak RSS (from
``os.wait4``) is its own and a crash or a leak cannot skew the next one.
"""
from __future__ import annotations

import fnmatch
import importlib
import json
import os
import pkgutil
import shutil
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

from . import core, reach
from .core import REGISTRY, RATIOS, Context, env_with_pythonpath

# modules of this package that are framework, not benchmark families
FRAMEWORK = {"core", "runner", "reach", "servers", "data", "nullserver", "fo_worker", "__main__"}
RESULTS_DIR = Path(__file__).resolve().parent / "results"


def discover() -> list[str]:
    """Import every benchmark family module; return the ones that failed (with reasons)."""
    failed = []
    here = Path(__file__).resolve().parent
    for info in sorted(pkgutil.iter_modules([str(here)]), key=lambda i: i.name):
        if info.name in FRAMEWORK or info.name.startswith("_"):
            continue
        try:
            importlib.import_module(f"bench.{info.name}")
        except Exception as e:  # one broken family must not hide the others
            failed.append(f"bench.{info.name}: {type(e).__name__}: {e}")
    return failed


def select(only: list[str] | None) -> list[str]:
    names = list(REGISTRY)
    if not only:
        return [n for n in names if not REGISTRY[n].opt_in]
    chosen = []
    for name in names:
        for pat in only:
            if name == pat or (not REGISTRY[name].opt_in and (
                    name.startswith(pat + ".") or fnmatch.fnmatch(name, pat))):
                chosen.append(name)
                break
    return chosen


# --- the worker side -------------------------------------------------------------------------

def run_worker(name: str, quick: bool, session_dir: str, out: str, repeats: int | None = None) -> int:
    discover()
    bench = REGISTRY[name]
    work = tempfile.mkdtemp(prefix=f"{name}-", dir=session_dir)
    ctx = Context(quick=quick, session_dir=Path(session_dir), work_dir=Path(work))
    result = {"runs": [], "error": None}
    if repeats is None:
        repeats = bench.quick_repeats if quick else bench.repeats
    try:
        for _ in range(repeats):
            figures = bench.fn(ctx)
            result["runs"].append({k: float(v) for k, v in figures.items() if v is not None})
    except BaseException as e:
        result["error"] = f"{type(e).__name__}: {e}"
        traceback.print_exc()
    finally:
        import resource
        result["client_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        try:
            ctx.close()
        except Exception:
            traceback.print_exc()
        Path(out).write_text(json.dumps(result))
    return 0 if result["error"] is None else 1


# --- the parent side -------------------------------------------------------------------------

def _spawn(name: str, quick: bool, session_dir: str, repeats: int | None = None, tag: str = "") -> dict:
    out = Path(session_dir) / f"{name}{tag}.result.json"
    cmd = [sys.executable, "-m", "bench", "--worker", name, "--session", session_dir, "--out", str(out)]
    if quick:
        cmd.append("--quick")
    if repeats is not None:
        cmd += ["--repeats", str(repeats)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env_with_pythonpath())
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4 above
    wall = time.perf_counter() - t0
    try:
        result = json.loads(out.read_text())
    except (OSError, ValueError):
        result = {"runs": [], "error": f"worker exited with {proc.returncode} and no result"}
    # the worker's own high-water RSS (its servers report theirs as figures); wait4's rusage
    # would fold in the servers it started
    result["peak_rss_mb"] = result.get("client_rss_mb") or usage.ru_maxrss / 1024
    result["wall_seconds"] = wall
    return result


def _summarize(bench: core.Benchmark, raw: dict) -> dict:
    figures = {}
    for run in raw["runs"]:
        for k, v in run.items():
            figures.setdefault(k, []).append(v)
    out = {"doc": bench.doc, "error": raw.get("error"), "peak_rss_mb": raw["peak_rss_mb"],
           "wall_seconds": raw["wall_seconds"], "figures": {}, "targets": {}}
    for k, values in figures.items():
        out["figures"][k] = {"median": statistics.median(values), "min": min(values), "max": max(values),
                             "values": values}
    for k, (op, limit) in bench.targets.items():
        med = out["figures"].get(k, {}).get("median")
        met = None if med is None else (med < limit if op == "<" else med <= limit if op == "<=" else
                                        med > limit if op == ">" else med >= limit)
        out["targets"][k] = {"op": op, "value": limit, "met": met}
    return out


def _ratios(results: dict, rounds: int | None = None) -> list[dict]:
    """Each registered ratio: median(numerator) / median(denominator); with ``rounds``, the
    median of the per-round ratios instead (each round ran both sides back to back, so a
    slow spell of the machine falls on both), with their min and max."""
    out = []
    for r in RATIOS:
        def values(ref):
            b, f = ref
            return results.get(b, {}).get("figures", {}).get(f, {}).get("values") or []
        nums, dens = values(r.numerator), values(r.denominator)
        entry = {"name": r.name, "numerator": list(r.numerator), "denominator": list(r.denominator),
                 "target": r.target, "note": r.note, "value": None}
        if rounds and len(nums) == len(dens) == rounds and all(dens):
            per_round = [n / d for n, d in zip(nums, dens)]
            entry.update(value=statistics.median(per_round), min=min(per_round), max=max(per_round),
                         per_round=per_round)
        elif nums and dens and statistics.median(dens):
            entry["value"] = statistics.median(nums) / statistics.median(dens)
        entry["met"] = None if entry["value"] is None or r.target is None else entry["value"] >= r.target
        out.append(entry)
    return out


def run(names: list[str], quick: bool, *, keep: bool = False, rounds: int | None = None, log=print) -> dict:
    """Run ``names``: each in one worker doing all its repeats, or, with ``rounds``, interleaved:
    ``rounds`` times every benchmark once, each in a fresh worker (one repeat), in turn."""
    report = {"started": time.strftime("%Y-%m-%dT%H:%M:%S"), "quick": quick, "rounds": rounds,
              "machine": {"python": platform.python_version(), "platform": platform.platform(),
                          "cpus": os.cpu_count()},
              "benchmarks": {}}
    session = tempfile.mkdtemp(prefix="syncd-bench-")
    raws: dict[str, dict] = {}
    try:
        for r in range(rounds or 1):
            for name in names:
                log(f"[bench] {name}" + (f" (round {r + 1}/{rounds})" if rounds else "") + " ...",
                    file=sys.stderr, flush=True)
                raw = _spawn(name, quick, session, repeats=1, tag=f".r{r}") if rounds else _spawn(name, quick, session)
                if raw.get("error"):
                    log(f"[bench] {name} FAILED: {raw['error']}", file=sys.stderr, flush=True)
                raws[name] = _merge(raws.get(name), raw)
    finally:
        if keep:
            log(f"[bench] kept scratch files (server logs) in {session}", file=sys.stderr)
        else:
            shutil.rmtree(session, ignore_errors=True)
    for name in names:
        if name in raws:
            report["benchmarks"][name] = _summarize(REGISTRY[name], raws[name])
    report["ratios"] = _ratios(report["benchmarks"], rounds)
    report["reach"] = reach.reach(report["benchmarks"], report["ratios"], RATIOS, REGISTRY, rounds)
    return report


def _merge(acc: dict | None, raw: dict) -> dict:
    """One benchmark's results over rounds: runs in order, the highest RSS, the total wall time."""
    if acc is None:
        return raw
    return {"runs": acc["runs"] + raw["runs"], "error": acc.get("error") or raw.get("error"),
            "peak_rss_mb": max(acc["peak_rss_mb"], raw["peak_rss_mb"]),
            "wall_seconds": acc["wall_seconds"] + raw["wall_seconds"]}


# --- output ----------------------------------------------------------------------------------

def _fmt(v) -> str:
    if v is None:
        return "-"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.3g}" if abs(v) >= 0.01 else f"{v:.2g}"


def _mark(met) -> str:
    return "" if met is None else (" ✓" if met else " ✗")


def table(report: dict) -> str:
    lines = ["| benchmark | figure | median | min | max | target | client peak RSS MB |",
             "|---|---|---:|---:|---:|---|---:|"]
    for name, b in report["benchmarks"].items():
        if b["error"] and not b["figures"]:
            lines.append(f"| {name} | ERROR: {b['error'][:80]} | | | | | {_fmt(b['peak_rss_mb'])} |")
            continue
        first = True
        for fig, s in b["figures"].items():
            t = b["targets"].get(fig)
            tgt = f"{t['op']} {_fmt(t['value'])}{_mark(t['met'])}" if t else ""
            rss = _fmt(b["peak_rss_mb"]) if first else ""
            lines.append(f"| {name if first else ''} | {fig} | {_fmt(s['median'])} | {_fmt(s['min'])} | "
                         f"{_fmt(s['max'])} | {tgt} | {rss} |")
            first = False
    if report.get("ratios"):
        lines += ["", "| ratio | value | target | note |", "|---|---:|---|---|"]
        for r in report["ratios"]:
            val = "-" if r["value"] is None else f"{r['value']:.2f}×"
            if r.get("per_round"):
                val += f" ({r['min']:.2f}-{r['max']:.2f})"
            tgt = "" if r["target"] is None else f"≥ {r['target']:g}×{_mark(r['met'])}"
            lines.append(f"| {r['name']} | {val} | {tgt} | {r['note']} |")
    rows = reach.table(report.get("reach") or [])
    if rows:
        lines += ["", "Targets against their bounds (bench/reach.py: what a client whose own work took no "
                  "time measures in the same run):", "", *rows]
    return "\n".join(lines)


def save(report: dict, path: str | None) -> Path:
    RESULTS_DIR.mkdir(exist_ok=True)
    default = RESULTS_DIR / (time.strftime("%Y%m%d-%H%M%S") + ("-quick" if report["quick"] else "") + ".json")
    text = json.dumps(report, indent=1)
    default.write_text(text)
    if path:
        Path(path).write_text(text)
    return default
