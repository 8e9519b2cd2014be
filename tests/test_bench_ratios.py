"""The benchmark runner's arithmetic (no benchmark runs here): interleaved rounds give
per-round ratios, so a slow spell of the machine that hits both sides of one round cancels;
each target with a floor is judged against its bound (bench/reach.py)."""
from __future__ import annotations

import pytest

from bench import runner
from bench.core import RATIOS, Ratio


def _results(slow: list[float], fast: list[float]) -> dict:
    def bench(values):
        return {"figures": {"seconds": {"values": values}}}
    return {"b.slow": bench(slow), "b.fast": bench(fast)}


def _ratio_named(report_ratios, name):
    return next(r for r in report_ratios if r["name"] == name)


def test_rounds_take_the_median_of_per_round_ratios(monkeypatch):
    monkeypatch.setattr(runner, "RATIOS", [Ratio("slow vs fast", ("b.slow", "seconds"), ("b.fast", "seconds"), 1.2)])
    # round 2 hit a slow spell of the machine while the fast side ran: per round, the fast side
    # wins 2.5x, loses, wins 2x; the median of the rounds is 2x. The ratio of the two medians
    # (2.0 / 1.5) would pair round 2's slow side with round 3's fast side.
    slow, fast = [1.0, 2.0, 3.0], [0.4, 3.0, 1.5]
    r = _ratio_named(runner._ratios(_results(slow, fast), rounds=3), "slow vs fast")
    assert r["per_round"] == pytest.approx([2.5, 2 / 3, 2.0])
    assert r["value"] == pytest.approx(2.0) and r["met"] is True
    assert r["min"] == pytest.approx(2 / 3) and r["max"] == pytest.approx(2.5)
    plain = _ratio_named(runner._ratios(_results(slow, fast)), "slow vs fast")
    assert plain["value"] == pytest.approx(2.0 / 1.5) and "per_round" not in plain


def test_a_round_missing_on_one_side_falls_back_to_medians(monkeypatch):
    monkeypatch.setattr(runner, "RATIOS", [Ratio("slow vs fast", ("b.slow", "seconds"), ("b.fast", "seconds"))])
    r = _ratio_named(runner._ratios(_results([2.0, 2.2], [1.0, 1.0, 1.1]), rounds=3), "slow vs fast")
    assert "per_round" not in r and abs(r["value"] - 2.1) < 1e-9 and r["met"] is None


def test_merge_keeps_every_run_the_highest_rss_and_the_first_error():
    a = {"runs": [{"seconds": 1.0}], "error": None, "peak_rss_mb": 50.0, "wall_seconds": 2.0}
    b = {"runs": [{"seconds": 1.2}], "error": "boom", "peak_rss_mb": 70.0, "wall_seconds": 3.0}
    m = runner._merge(runner._merge(None, a), b)
    assert m["runs"] == [{"seconds": 1.0}, {"seconds": 1.2}]
    assert m["peak_rss_mb"] == 70.0 and m["wall_seconds"] == 5.0 and m["error"] == "boom"


def test_every_registered_ratio_names_registered_benchmarks():
    runner.discover()
    assert RATIOS, "no ratio registered"
    for r in RATIOS:
        for bench_name, _ in (r.numerator, r.denominator):
            assert bench_name in runner.REGISTRY, (r.name, bench_name)


# --- targets against their bounds (bench/reach.py) -------------------------------------------

def test_a_target_is_judged_against_its_bound_round_by_round(monkeypatch):
    from bench import reach
    # the peer takes 1.0 s per round; syncd 0.5, 0.4, 0.45 s; the floor 0.06, 0.11, 0.05 s:
    # per-round bounds 16.7x, 9.1x, 20x: a 10x target is out of reach in round 2 only, and
    # within reach by the median
    ratio_defs = [Ratio("peer vs syncd", ("b.peer", "seconds"), ("b.syncd", "seconds"), 10.0,
                        bound=("b.floor", "seconds"))]
    monkeypatch.setattr(runner, "RATIOS", ratio_defs)
    results = {"b.peer": {"figures": {"seconds": {"values": [1.0, 1.0, 1.0]}}},
               "b.syncd": {"figures": {"seconds": {"values": [0.5, 0.4, 0.45]}}},
               "b.floor": {"figures": {"seconds": {"values": [0.06, 0.11, 0.05]}}}}
    ratios = runner._ratios(results, rounds=3)
    (e,) = reach.reach(results, ratios, ratio_defs, {}, rounds=3)
    assert e["measured"]["median"] == pytest.approx(1 / 0.45)
    assert e["bound"]["min"] == pytest.approx(1 / 0.11) and e["bound"]["max"] == pytest.approx(20.0)
    assert e["bound"]["median"] == pytest.approx(1 / 0.06)
    assert e["verdict"] == reach.WITHIN and e["clears"] == [2, 3]
    # on the floor's scale: 10x needs 60 % of its speed (0.06 / 0.1); syncd has 0.06 / 0.45
    assert e["needs"] == pytest.approx(0.6) and e["has"] == pytest.approx(0.06 / 0.45)


def test_a_throughput_target_above_its_floor_is_out_of_reach():
    from bench import reach
    from bench.core import Benchmark
    registry = {"b.load": Benchmark("b.load", lambda ctx: {}, targets={"shapes/s": (">=", 100_000)},
                                    bounds={"shapes/s": ("b.floor", "shapes/s")})}
    results = {"b.load": {"figures": {"shapes/s": {"values": [20_000, 25_000]}},
                          "targets": {"shapes/s": {"op": ">=", "value": 100_000, "met": False}}},
               "b.floor": {"figures": {"shapes/s": {"values": [80_000, 95_000]}}}}
    (e,) = reach.reach(results, [], [], registry)
    assert e["verdict"] == reach.OUT and e["bound"]["max"] == 95_000 and e["clears"] == [0, 2]
    assert e["needs"] == pytest.approx(100_000 / 87_500)
    row = reach.table([e])[-1]
    assert "b.load shapes/s >= 100,000" in row and "out of reach here" in row and "87,500 (80,000-95,000)" in row
    assert "| 0 of 2 |" in row


@pytest.mark.parametrize("measured, bound, expected", [
    (5.1, 4.0, "met"),            # a target met is met, whatever the floor says
    (3.0, 4.9, "out of reach here"),
    (3.0, 5.0, "within reach"),
])
def test_verdicts(measured, bound, expected):
    from bench import reach
    assert reach.verdict(5.0, measured, bound) == expected


def test_a_bound_needs_a_target_it_can_bound():
    from bench import core
    with pytest.raises(ValueError, match="only for a target"):
        core.ratio("no target", ("a", "seconds"), ("b", "seconds"), bound=("c", "seconds"))
    with pytest.raises(ValueError, match="'>=' or '>' target"):
        core.benchmark("x.y", targets={"seconds": ("<", 1.0)}, bounds={"seconds": ("x.floor", "seconds")})


def test_every_registered_bound_names_a_registered_floor():
    runner.discover()
    bounds = [r.bound for r in RATIOS if r.bound] + [
        ref for b in runner.REGISTRY.values() for ref in b.bounds.values()]
    assert len(bounds) >= 7
    for bench_name, _ in bounds:
        assert bench_name in runner.REGISTRY, bench_name
