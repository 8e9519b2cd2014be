"""Whether each target can be met on the machine that ran it: targets against their bounds.

A floor is a benchmark that does only the unavoidable part of a job, with no client work: one
raw POST of the files processed to ready, one ``server_files`` request, the annotations fetched
raw and the files written durably. The **bound** of a target is what a client whose own work
took no time would measure in the same run:

- for a speed-up over a peer (``ratio(..., target=, bound=floor)``): the peer's time over the
  floor's, per round with ``--rounds``;
- for a throughput (``benchmark(..., targets={f: (">=", x)}, bounds={f: floor})``): the floor's
  own figure.

A target above its bound cannot be met on that machine, by syncd or by any other client: the
floor decides, not the client. The verdict takes the bound's median over the rounds; ``clears``
says in how many rounds the bound cleared the target. ``needs`` and ``has`` put both on one
scale, a share of the floor's speed (floor time / client time): the share a client needs to
meet the target, and the share syncd has.
"""
from __future__ import annotations

import statistics

MET, WITHIN, OUT = "met", "within reach", "out of reach here"


def verdict(goal: float, measured: float, bound: float) -> str:
    """``met``; else ``out of reach here`` when the bound (its median over the rounds: one slow
    spell of the machine in one round should not decide) is below the goal, else ``within
    reach``."""
    if measured >= goal:
        return MET
    return OUT if bound < goal else WITHIN


def _stats(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "values": list(values)}


def _values(results: dict, ref) -> list[float]:
    bench, fig = ref
    return results.get(bench, {}).get("figures", {}).get(fig, {}).get("values") or []


def _entry(name: str, goal: float, measured: dict, bound: dict, unit: str) -> dict:
    """``unit``: "×" for a speed-up, "" for a throughput (printed as a whole number)."""
    b = bound["median"]
    return {"target": name, "goal": goal, "unit": unit, "measured": measured, "bound": bound,
            "needs": goal / b if b else None, "has": measured["median"] / b if b else None,
            # how many rounds (or repeats) of the floor cleared the goal: k of n
            "clears": [sum(v >= goal for v in bound["values"]), len(bound["values"])],
            "verdict": verdict(goal, measured["median"], b)}


def reach(results: dict, ratios: list[dict], ratio_defs, registry, rounds: int | None = None) -> list[dict]:
    """One entry per target that has a bound and whose benchmarks ran: ``ratios`` are the
    runner's computed ratios (in ``ratio_defs``' order), ``registry`` the benchmarks by name."""
    out = []
    for r, computed in zip(ratio_defs, ratios):
        if r.bound is None or computed.get("value") is None:
            continue
        nums, floors = _values(results, r.numerator), _values(results, r.bound)
        if not nums or not floors or not all(floors):
            continue
        if rounds and len(nums) == len(floors) == rounds:
            bound = _stats([n / f for n, f in zip(nums, floors)])
        else:
            bound = _stats([statistics.median(nums) / statistics.median(floors)])
        measured = {"median": computed["value"], "min": computed.get("min", computed["value"]),
                    "max": computed.get("max", computed["value"])}
        out.append(_entry(r.name, r.target, measured, bound, "×"))
    for name, b in results.items():
        for fig, floor_ref in getattr(registry.get(name), "bounds", {}).items():
            mine, floor = _values(results, (name, fig)), _values(results, floor_ref)
            target = b.get("targets", {}).get(fig)
            if not mine or not floor or not target:
                continue
            out.append(_entry(f"{name} {fig} {target['op']} {target['value']:,g}", target["value"],
                              _stats(mine), _stats(floor), ""))
    return out


def _fmt(stats: dict, unit: str) -> str:
    def one(v):
        return f"{v:.2f}{unit}" if unit else f"{v:,.0f}"
    if stats["min"] == stats["max"]:
        return one(stats["median"])
    return f"{one(stats['median'])} ({one(stats['min'])}-{one(stats['max'])})"


def table(entries: list[dict]) -> list[str]:
    """The Markdown rows of the reach table (empty when no target has a bound)."""
    if not entries:
        return []
    lines = ["| target | measured (median, range) | bound here | bound clears it | "
             "floor's speed: needed / syncd's | verdict |", "|---|---:|---:|---:|---:|---|"]
    for e in entries:
        share = "-" if e["needs"] is None else f"{e['needs']:.0%} / {e['has']:.0%}"
        clears = f"{e['clears'][0]} of {e['clears'][1]}"
        lines.append(f"| {e['target']} | {_fmt(e['measured'], e['unit'])} | {_fmt(e['bound'], e['unit'])} | "
                     f"{clears} | {share} | {e['verdict']} |")
    return lines
