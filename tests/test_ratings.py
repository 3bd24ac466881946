"""Ratings (arena.ratings) from a synthetic match log generated from known Elo values."""

from __future__ import annotations

import numpy as np
import pytest

from arena import TlmError
from arena.ratings import (
    MatchRecord,
    elo_history,
    elo_ratings,
    openskill_ratings,
    pair_totals,
    payoff_matrix,
)

TRUE_ELO = {"random": 0.0, "weak": -150.0, "mid": 200.0, "good": 450.0, "best": 800.0}


def _expected(a: float, b: float) -> float:
    return 1.0 / (1.0 + 10.0 ** ((b - a) / 400.0))


def synthetic_log(seed: int, rounds: int, games_per_seat: int = 5,
                  draw_rate: float = 0.2) -> list[MatchRecord]:
    """Every pair plays a match each round; outcomes drawn from TRUE_ELO with draws."""
    rng = np.random.default_rng(seed)
    names = list(TRUE_ELO)
    log: list[MatchRecord] = []
    for r in range(rounds):
        for x, a in enumerate(names):
            for b in names[x + 1:]:
                p = _expected(TRUE_ELO[a], TRUE_ELO[b])
                # Draws eat equally into wins and losses so A's expected score stays p.
                d = min(draw_rate, 2 * p, 2 * (1 - p))
                probs = [p - d / 2, d, 1 - p - d / 2]
                first = tuple(int(v) for v in rng.multinomial(games_per_seat, probs))
                second = tuple(int(v) for v in rng.multinomial(games_per_seat, probs))
                log.append(MatchRecord(
                    key=f"{r}/{a}/{b}", round=r, agent_a=a, agent_b=b, seed=r,
                    games=2 * games_per_seat, a_first=first, a_second=second,  # type: ignore[arg-type]
                    id=len(log) + 1))
    return log


def test_bradley_terry_recovers_known_strengths() -> None:
    log = synthetic_log(seed=1, rounds=200)
    ratings = elo_ratings(log)
    assert ratings["random"].elo == 0.0
    assert (ratings["random"].lo, ratings["random"].hi) == (0.0, 0.0)
    for name, true in TRUE_ELO.items():
        r = ratings[name]
        assert abs(r.elo - true) < 30, (name, r)
        assert r.games == 200 * 10 * 4
        assert r.lo <= r.elo <= r.hi


def test_intervals_cover_the_true_values_about_95_percent_of_the_time() -> None:
    covered = total = 0
    for seed in range(30):
        ratings = elo_ratings(synthetic_log(seed=100 + seed, rounds=8))
        for name, true in TRUE_ELO.items():
            if name == "random":
                continue
            total += 1
            covered += ratings[name].lo <= true <= ratings[name].hi
    assert 0.85 <= covered / total <= 1.0, covered / total
    # ...and they are not uselessly wide: a few hundred Elo after 8 rounds.
    width = [r.hi - r.lo for r in elo_ratings(synthetic_log(seed=5, rounds=8)).values()]
    assert max(width) < 400


def test_anchor_is_zero_whatever_the_log_order_and_falls_back_in_order() -> None:
    log = synthetic_log(seed=2, rounds=20)
    shuffled = [log[i] for i in np.random.default_rng(0).permutation(len(log))]
    a, b = elo_ratings(log), elo_ratings(shuffled)
    for n in TRUE_ELO:
        assert a[n].elo == pytest.approx(b[n].elo, abs=1e-3)
    no_random = [m for m in log if "random" not in (m.agent_a, m.agent_b)]
    fallback = elo_ratings(no_random, anchor=["random", "mid"])
    assert fallback["mid"].elo == 0.0
    # Differences depend on the anchor only through the weak prior (centred on it).
    moved = elo_ratings(log, anchor="mid")
    assert moved["mid"].elo == 0.0
    assert moved["best"].elo - moved["weak"].elo == pytest.approx(
        a["best"].elo - a["weak"].elo, abs=2.0)


def test_all_win_and_disconnected_agents_stay_finite() -> None:
    log = [
        MatchRecord("1", 0, "random", "mid", 0, 20, (5, 0, 5), (5, 0, 5)),
        MatchRecord("2", 0, "god", "random", 0, 20, (10, 0, 0), (10, 0, 0)),
        MatchRecord("3", 0, "island_a", "island_b", 0, 20, (8, 0, 2), (7, 0, 3)),
    ]
    r = elo_ratings(log, names=["newcomer"])
    for rating in r.values():
        assert np.isfinite([rating.elo, rating.lo, rating.hi]).all()
    assert r["god"].elo > 500 and r["god"].lo > 0
    assert r["mid"].elo == pytest.approx(0.0, abs=1e-6)
    assert r["island_a"].elo > r["island_b"].elo
    assert r["island_a"].hi - r["island_a"].lo > 1000  # unknown relative to the anchor
    assert r["newcomer"].games == 0 and r["newcomer"].elo == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(TlmError, match="must be positive"):
        elo_ratings(log, prior_sd=0.0)


def test_payoff_matrix_sums() -> None:
    log = synthetic_log(seed=3, rounds=10)
    log.append(MatchRecord("self", 10, "mid", "mid", 0, 4, (1, 0, 1), (1, 0, 1), id=999))
    names, score, games = payoff_matrix(log)
    assert names == list(TRUE_ELO)
    assert (games == games.T).all()
    assert games.sum() == 2 * sum(m.games for m in log if m.agent_a != m.agent_b) + 4
    off = ~np.eye(len(names), dtype=bool)
    assert np.allclose((score + score.T)[off], 1.0)
    assert score[names.index("mid"), names.index("mid")] == 0.5
    totals = pair_totals(log)
    i, j = names.index("best"), names.index("weak")
    expect = sum(m.points for m in log if (m.agent_a, m.agent_b) == ("weak", "best"))
    assert totals.points[j, i] == pytest.approx(expect)
    assert score[i, j] > 0.9
    names2, score2, games2 = payoff_matrix([], names=["x"])
    assert names2 == ["x"] and np.isnan(score2[0, 0]) and games2[0, 0] == 0


def test_openskill_orders_agents_correctly() -> None:
    log = synthetic_log(seed=4, rounds=30)
    mu = {n: m for n, (m, _) in openskill_ratings(log).items()}
    assert sorted(mu, key=mu.__getitem__) == sorted(TRUE_ELO, key=TRUE_ELO.__getitem__)
    assert openskill_ratings(log) == openskill_ratings(log)  # deterministic


def test_elo_history_ends_at_the_full_fit() -> None:
    log = synthetic_log(seed=6, rounds=12)
    late = MatchRecord("late", 12, "newbie", "random", 0, 10, (5, 0, 0), (4, 1, 0), id=10_000)
    rounds, names, elo = elo_history([*log, late])
    assert rounds == list(range(13))
    full = elo_ratings([*log, late])
    assert np.allclose(elo[-1], [full[n].elo for n in names], atol=1e-3)
    newbie = names.index("newbie")
    assert np.isnan(elo[:-1, newbie]).all() and np.isfinite(elo[-1, newbie])
    assert (elo[:, names.index("random")] == 0.0).all()


def test_elo_history_at_most_keeps_the_last_round_and_its_fit() -> None:
    log = synthetic_log(seed=7, rounds=12)
    rounds, names, elo = elo_history(log, at_most=4)
    assert len(rounds) == 4 and rounds[0] == 0 and rounds[-1] == 11
    every_rounds, _, every = elo_history(log)
    for k, r in enumerate(rounds):
        assert np.allclose(elo[k], every[every_rounds.index(r)], atol=1e-3)
