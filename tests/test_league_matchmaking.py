"""Matchmaking: PFSP weights, win rates from the log, pools per kind and learner role."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from arena import TlmError
from arena.ratings import MatchRecord
from teachers.league import LeagueStore
from teachers.league.matchmaking import Matchmaker, pfsp_weights, win_rates


def test_pfsp_weights_values() -> None:
    p = np.array([0.0, 0.25, 0.5, 0.9, 1.0])
    assert np.allclose(pfsp_weights(p, "hard"), [1.0, 0.5625, 0.25, 0.01, 0.0])
    assert np.allclose(pfsp_weights(p, "variance"), [0.0, 0.1875, 0.25, 0.09, 0.0])
    assert np.allclose(pfsp_weights(p, "linear"), [1.0, 0.75, 0.5, 0.1, 0.0])
    assert np.allclose(pfsp_weights(p, "uniform"), 1.0)
    assert pfsp_weights(np.array([1.0]), "hard")[0] == 0.0  # a sure win is never drawn
    with pytest.raises(TlmError, match="unknown PFSP weighting"):
        pfsp_weights(p, "soft")
    with pytest.raises(TlmError, match=r"\[0, 1\]"):
        pfsp_weights(np.array([1.5]), "hard")


def _m(key: str, a: str, b: str, w: int, d: int, l_: int) -> MatchRecord:
    half = (w // 2, d // 2, l_ // 2)
    rest = (w - half[0], d - half[1], l_ - half[2])
    return MatchRecord(key, 0, a, b, 0, w + d + l_, half, rest)


def test_win_rates_from_both_sides_of_the_log_with_a_prior() -> None:
    log = [_m("1", "main", "s1", 8, 0, 2), _m("2", "s1", "main", 2, 2, 6),
           _m("3", "main", "s2", 0, 0, 10), _m("4", "other", "s1", 10, 0, 0)]
    p = win_rates(log, "main", ["s1", "s2", "never"], prior=0.5, prior_games=0.0)
    assert p[0] == pytest.approx((8 + 6 + 1) / 20)
    assert p[1] == 0.0 and p[2] == 0.5
    shrunk = win_rates(log, "main", ["s2"], prior=0.5, prior_games=2.0)
    assert shrunk[0] == pytest.approx(1.0 / 12.0)


@pytest.fixture
def league(tmp_path: Path):
    s = LeagueStore.create(tmp_path / "lg", "tictactoe", {})
    s.add_agent("random", "reference", "random")
    s.add_agent("perfect", "reference", "perfect")
    s.add_agent("main", "learner", "random", info={"league_role": "main"})
    yield s
    s.close()


def test_before_any_snapshot_a_learner_plays_itself_and_the_references(league) -> None:
    for kind in ("latest", "uniform", "pfsp"):
        d = Matchmaker(kind, reference_share=0.25).distribution("main", league)
        assert d["main"] == pytest.approx(0.75)
        assert d["random"] + d["perfect"] == pytest.approx(0.25)
    only_self = Matchmaker("pfsp", reference_share=0.0).distribution("main", league)
    assert only_self == {"main": 1.0}


def _snapshots(store: LeagueStore, parent: str, n: int) -> list[str]:
    names = [f"{parent}-{i}" for i in range(n)]
    for name in names:
        store.add_agent(name, "snapshot", "random", parent=parent)
    return names


def test_latest_uniform_and_pfsp_pools(league) -> None:
    snaps = _snapshots(league, "main", 3)
    league.record_match(_m("a", "main", "main-0", 10, 0, 0))  # always beats the oldest
    league.record_match(_m("b", "main", "main-1", 0, 0, 10))  # always loses to the middle
    latest = Matchmaker("latest", reference_share=0.0).distribution("main", league)
    assert latest == {"main-2": 1.0}
    uniform = Matchmaker("uniform", reference_share=0.0).distribution("main", league)
    assert uniform == pytest.approx({s: 1 / 3 for s in snaps})
    hard = Matchmaker("pfsp", "hard", reference_share=0.0, prior_games=0.0) \
        .distribution("main", league)
    assert hard == pytest.approx({"main-1": 0.8, "main-2": 0.2})  # (1-0)^2 : (1-.5)^2
    variance = Matchmaker("pfsp", "variance", reference_share=0.0, prior_games=0.0) \
        .distribution("main", league)
    assert variance == pytest.approx({"main-2": 1.0})
    mixed = Matchmaker("pfsp", "hard", reference_share=0.3).distribution("main", league)
    assert sum(mixed.values()) == pytest.approx(1.0)
    assert mixed["random"] + mixed["perfect"] == pytest.approx(0.3)


def test_sure_wins_everywhere_fall_back_to_uniform(league) -> None:
    _snapshots(league, "main", 2)
    league.record_match(_m("a", "main", "main-0", 10, 0, 0))
    league.record_match(_m("b", "main", "main-1", 10, 0, 0))
    d = Matchmaker("pfsp", "hard", reference_share=0.0, prior_games=0.0) \
        .distribution("main", league)
    assert d == pytest.approx({"main-0": 0.5, "main-1": 0.5})


def test_exploiters(league) -> None:
    league.add_agent("mx", "learner", "random", info={"league_role": "main_exploiter"})
    league.add_agent("lx", "learner", "random", info={"league_role": "league_exploiter"})
    main_snaps = _snapshots(league, "main", 2)
    _snapshots(league, "mx", 1)
    mx = Matchmaker("pfsp", role="main_exploiter", reference_share=0.5)
    assert mx.distribution("mx", league) == {"main": 1.0}  # only the main learner
    # Crushed by the live main: it learns from the main's snapshots instead (variance).
    league.record_match(_m("c", "mx", "main", 0, 0, 50))
    league.record_match(_m("d", "mx", "main-0", 9, 0, 1))
    fallback = mx.distribution("mx", league)
    assert set(fallback) == set(main_snaps)
    p0 = (9 + 0.5) / 11
    assert fallback["main-0"] / fallback["main-1"] == pytest.approx(p0 * (1 - p0) / 0.25)
    lx = Matchmaker("latest", role="league_exploiter", reference_share=0.2)
    d = lx.distribution("lx", league)
    assert set(d) == {"main-0", "main-1", "mx-0", "random", "perfect"}  # PFSP over all
    assert d["random"] + d["perfect"] == pytest.approx(0.2)
    league.add_agent("lonely", "learner", "random")
    other = LeagueStore.create(league.directory.parent / "lg2", "tictactoe", {})
    try:
        other.add_agent("mx", "learner", "random")
        with pytest.raises(TlmError, match="needs a main learner"):
            mx.distribution("mx", other)
    finally:
        other.close()


def test_pick_draws_distinct_opponents_reproducibly(league) -> None:
    _snapshots(league, "main", 6)
    mm = Matchmaker("uniform", reference_share=0.2)
    a = mm.pick("main", league, np.random.default_rng(3), k=3)
    b = mm.pick("main", league, np.random.default_rng(3), k=3)
    assert a == b and len(a) == 3 and len({n for n, _ in a}) == 3
    assert sum(w for _, w in a) == pytest.approx(1.0)
    everyone = mm.pick("main", league, np.random.default_rng(0), k=100)
    assert len(everyone) == 8
    with pytest.raises(TlmError, match="positive"):
        mm.pick("main", league, np.random.default_rng(0), k=0)


def test_bad_matchmaker_settings(league) -> None:
    with pytest.raises(TlmError, match="unknown matchmaking"):
        Matchmaker("elo")
    with pytest.raises(TlmError, match="unknown learner role"):
        Matchmaker("pfsp", role="coach")
    with pytest.raises(TlmError, match="reference_share"):
        Matchmaker("pfsp", reference_share=1.5)
    with pytest.raises(TlmError, match="no agent"):
        Matchmaker("pfsp").distribution("ghost", league)
