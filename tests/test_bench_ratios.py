"""The benchmark runner's arithmetic (no benchmark runs here): interleaved rounds give
per-round ratios, so a slow spell of the machine that hits both sides of one round cancels."""
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
