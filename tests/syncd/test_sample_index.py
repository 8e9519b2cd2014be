"""The daemon's sample index answers "tagged with X" and "no sample file yet" exactly as a scan
of every entry would, through any sequence of changes (checked against that scan)."""
from __future__ import annotations

import random

import pytest

from syncd.sample_index import SampleIndex, SampleInfo


def brute(entries: dict[str, SampleInfo], tag: str) -> set[str]:
    return {rel for rel, info in entries.items() if tag in info.tags}


def test_index_matches_a_full_scan_through_random_changes():
    rng = random.Random(3)
    tags = ["todo", "done", "x"]
    index, truth = SampleIndex(["todo", "x"]), {}
    for step in range(3000):
        rel = f"m{rng.randrange(60)}.jpg"
        op = rng.random()
        if op < 0.15:
            index.pop(rel)
            truth.pop(rel, None)
        elif op < 0.2:
            snapshot = {f"r{i}.jpg": SampleInfo((i,), frozenset(rng.sample(tags, rng.randrange(3))))
                        for i in range(rng.randrange(10))}
            index.replace(snapshot)
            truth = dict(snapshot)
        else:
            sig = None if rng.random() < 0.3 else (step,)
            info = SampleInfo(sig, frozenset(rng.sample(tags, rng.randrange(4))) if sig else frozenset())
            index.set(rel, info)
            truth[rel] = info
        for tag in ("todo", "x"):
            assert set(index.tagged(tag)) == brute(truth, tag)
        assert set(index.bare()) == {rel for rel, info in truth.items() if info.sig is None}
        assert len(index) == len(truth) and set(index) == set(truth)


def test_answers_are_copies_safe_to_change_the_index_while_iterating():
    index = SampleIndex(["todo"])
    for i in range(5):
        index.set(f"a{i}.jpg", SampleInfo(None))
    for rel in index.bare():  # auto-tagging turns bare entries into tagged ones as it goes
        index.set(rel, SampleInfo(("fresh",), frozenset({"todo"})))
    assert index.bare() == [] and sorted(index.tagged("todo")) == [f"a{i}.jpg" for i in range(5)]


def test_only_the_rules_tags_are_indexed():
    index = SampleIndex(["todo"])
    index.set("a.jpg", SampleInfo((1,), frozenset({"done", "todo"})))
    assert index.tagged("todo") == ["a.jpg"]
    with pytest.raises(KeyError):
        index.tagged("done")   # no rule triggers on it: not indexed
