"""The bench's spread helper: interleaved order, per-round ratios, min/median/max (on
injected fake timers: deterministic), and the memory-flat verdict."""

from __future__ import annotations

import argparse

import pytest

from fashionseg.bench.harness import (
    MIB,
    Interleaved,
    Spread,
    _ratio_text,
    interleaved,
    parse_size,
    round_order,
    timed,
)
from fashionseg.bench.memory import memory_verdict


class FakeClock:
    """A clock that only moves when the work under test says so."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_round_order_alternates_and_reverses() -> None:
    assert round_order(["a", "b"], 4) == [["a", "b"], ["b", "a"], ["a", "b"], ["b", "a"]]
    assert round_order(["x", "y", "z"], 2) == [["x", "y", "z"], ["z", "y", "x"]]
    assert round_order(["a", "b"], 0) == []


def test_interleaved_runs_sides_alternately_warmup_first_and_unrecorded() -> None:
    calls: list[str] = []

    def side(name: str) -> float:
        calls.append(name)
        return float(len(calls))  # the call's position: shows which calls were recorded

    result = interleaved({"a": lambda: side("a"), "b": lambda: side("b")}, rounds=3, warmup=1)
    # never all A then all B: A B | B A A B B A (warm-up round, then 3 timed rounds)
    assert calls == ["a", "b", "b", "a", "a", "b", "b", "a"]
    assert result.order == ["b", "a", "a", "b", "b", "a"]
    assert result.values == {"a": [4.0, 5.0, 8.0], "b": [3.0, 6.0, 7.0]}


def test_interleaved_needs_a_round() -> None:
    with pytest.raises(ValueError, match="rounds=0"):
        interleaved({"a": lambda: 1.0}, rounds=0)


def test_timed_ratios_median_min_max_on_a_fake_clock() -> None:
    clock = FakeClock()
    costs = {"new": iter([2.0, 3.0, 2.25, 10.0]), "old": iter([1.0, 1.0, 2.0, 4.0])}

    def work(name: str) -> None:
        clock.now += next(costs[name])

    sides = {name: timed(lambda name=name: work(name), clock) for name in ("new", "old")}
    result = interleaved(sides, rounds=4)
    assert result.values == {"new": [2.0, 3.0, 2.25, 10.0], "old": [1.0, 1.0, 2.0, 4.0]}
    ratio = result.ratio("new", "old")  # per round: 2.0, 3.0, 1.125, 2.5
    assert ratio.median == 2.25
    assert (ratio.min, ratio.max, ratio.n) == (1.125, 3.0, 4)
    assert result.spread("new") == Spread(2.625, 2.0, 10.0, 4)

    entry = result.comparison("new", "old")
    assert entry["new_s"] == 2.625 and entry["old_s"] == 1.5
    assert (entry["ratio"], entry["ratio_min"], entry["ratio_max"], entry["rounds"]) == (
        2.25,
        1.125,
        3.0,
        4,
    )
    assert entry["values"]["old"] == [1.0, 1.0, 2.0, 4.0]
    assert _ratio_text(entry) == "2.250 (1.125-3.000, 4 rounds)"


def test_ratio_pairs_rounds_not_medians() -> None:
    # the median of the per-round ratios differs from the ratio of the medians: a round
    # where the machine was slow for both sides does not skew the ratio
    result = Interleaved({"a": [1.0, 10.0, 2.0], "b": [1.0, 10.0, 1.0]}, [])
    assert result.ratio("a", "b") == Spread(1.0, 1.0, 2.0, 3)
    assert result.spread("a").median / result.spread("b").median == 2.0


def test_spread_inverted_turns_seconds_into_rates() -> None:
    seconds = Spread.of([0.5, 0.25, 1.0])
    rates = seconds.inverted(10)  # 10 photos per run
    assert (rates.median, rates.min, rates.max, rates.n) == (20.0, 10.0, 40.0, 3)
    assert Spread.of([3.0]).text(1) == "3.0 (3.0-3.0, 1 round)"
    with pytest.raises(ValueError):
        Spread.of([])


def test_memory_verdict() -> None:
    flat = memory_verdict(1000 * MIB, 1030 * MIB)  # +30 MiB: within max(32 MiB, 5 %)
    assert flat["flat"] and flat["growth_mib"] == pytest.approx(30)
    assert flat["allowed_growth_mib"] == pytest.approx(50)
    grew = memory_verdict(400 * MIB, 440 * MIB)  # +40 MiB over 400: more than 32 MiB
    assert not grew["flat"]
    assert memory_verdict(400 * MIB, 300 * MIB)["flat"]


def test_parse_size() -> None:
    assert parse_size("full") == (600, 400)
    assert parse_size("600x400") == (600, 400)
    assert parse_size(" 48 X 32 ") == (48, 32)
    for bad in ("600", "10x400", "axb", ""):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_size(bad)
