"""Scores and Wilson intervals on hand-computed cases; evaluate() per seat."""

from __future__ import annotations

import numpy as np
import pytest

from arena import MatchResult, RandomAgent, evaluate, summarize, wilson_interval


def test_wilson_hand_computed() -> None:
    # 0 successes in 10: upper bound is z^2 / (n + z^2).
    z2 = 1.959963984540054**2
    lo, hi = wilson_interval(0.0, 10)
    assert lo == 0.0 and hi == pytest.approx(z2 / (10 + z2))
    # All 1000 successes: lower bound is n / (n + z^2).
    lo, hi = wilson_interval(1.0, 1000)
    assert lo == pytest.approx(1000 / (1000 + z2)) and hi == 1.0
    # 50 of 100: symmetric around 0.5, half-width z/(1+z^2/n) * sqrt(0.25/n + z^2/(4n^2)).
    lo, hi = wilson_interval(0.5, 100)
    half = 1.959963984540054 / (1 + z2 / 100) * np.sqrt(0.25 / 100 + z2 / 40000)
    assert lo == pytest.approx(0.5 - half) and hi == pytest.approx(0.5 + half)
    assert (lo, hi) == pytest.approx((0.40383, 0.59617), abs=1e-5)
    assert wilson_interval(0.3, 0) == (0.0, 1.0)


def test_summarize_counts_scores_per_seat() -> None:
    # A: first seat in games 0, 2, 4 (win, draw, loss); second in 1, 3, 5 (win, win, draw).
    returns_a = np.array([1, 1, 0, 1, -1, 0], dtype=float)
    result = MatchResult(
        game="tictactoe", agents=("a", "b"),
        seat_a=np.array([0, 1, 0, 1, 0, 1], dtype=np.int8),
        returns=np.stack([returns_a, -returns_a], axis=1),
        length=np.full(6, 5), illegal=np.full(6, -1, dtype=np.int8), reasons=[""] * 6,
    )
    rows = {r.seat: r for r in summarize(result, "b")}
    assert (rows["first"].wins, rows["first"].draws, rows["first"].losses) == (1, 1, 1)
    assert rows["first"].score == pytest.approx(0.5)
    assert (rows["second"].wins, rows["second"].draws, rows["second"].losses) == (2, 1, 0)
    assert rows["second"].score == pytest.approx(2.5 / 3)
    assert rows["both"].games == 6 and rows["both"].score == pytest.approx(4 / 6)
    assert rows["both"].ci95 == pytest.approx(wilson_interval(4 / 6, 6))
    as_json = rows["both"].as_json()["ci95"]
    assert as_json == pytest.approx(list(wilson_interval(4 / 6, 6)), abs=1e-6)


def test_random_against_random_is_even_within_its_interval() -> None:
    rows = evaluate("connect_four", RandomAgent(), [RandomAgent()], 2000, seed=0)
    both = next(r for r in rows if r.seat == "both")
    assert both.ci95[0] < 0.5 < both.ci95[1]
    first = next(r for r in rows if r.seat == "first")
    second = next(r for r in rows if r.seat == "second")
    # Moving first is an advantage in connect four, even for random players.
    assert first.score > second.score


def test_evaluate_is_deterministic_and_per_opponent_seeded() -> None:
    one = evaluate("tictactoe", RandomAgent(), [RandomAgent()], 300, seed=4)
    two = evaluate("tictactoe", RandomAgent(), [RandomAgent(), RandomAgent()], 300, seed=4)
    assert one == two[:3]
