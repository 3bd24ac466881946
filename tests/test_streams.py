"""Counter-based streams: each row draws from its own game's stream, so a match gives the
same games however it is cut into shards (7 games, 1,024, all at once, the default)."""

from __future__ import annotations

import numpy as np
import pytest

from arena import RowGenerator, get_game, make_agent, play_matches, rows_rng, uniform_legal
from arena.matches import MatchResult
from distill.players import EpsilonAgent, MixtureAgent, TemperatureAgent
from students import StudentAgent, build_student
from teachers import Exploration, TeacherLabeller, collect_positions, generate_dataset
from teachers.datasets import load_dataset
from teachers.mcts import MCTS, MCTSAgent, RandomRolloutEvaluator


def _same(r1: MatchResult, r2: MatchResult) -> None:
    np.testing.assert_array_equal(r1.seat_a, r2.seat_a)
    np.testing.assert_array_equal(r1.returns, r2.returns)
    np.testing.assert_array_equal(r1.length, r2.length)
    assert r1.records is not None and r2.records is not None
    assert all(np.array_equal(x, y) for x, y in zip(r1.records, r2.records, strict=True))


def test_a_row_draws_the_same_numbers_whatever_shares_its_batch() -> None:
    ids = np.array([5, 9, 2, 40])
    whole = RowGenerator(7, ids, ply=3)
    u, k, g = whole.random(4), whole.integers(0, 9, size=(4, 2)), whole.standard_gamma(
        0.5, size=(4, 3))
    part = RowGenerator(7, ids[[2, 0]], ply=3)
    np.testing.assert_array_equal(part.random(2), u[[2, 0]])
    np.testing.assert_array_equal(part.integers(0, 9, size=(2, 2)), k[[2, 0]])
    np.testing.assert_array_equal(part.standard_gamma(0.5, size=(2, 3)), g[[2, 0]])
    # Another ply, key or draw gives other numbers.
    assert not np.array_equal(RowGenerator(7, ids, ply=4).random(4), u)
    assert not np.array_equal(RowGenerator(8, ids, ply=3).random(4), u)
    assert not np.array_equal(whole.random(4), u)
    # A subset handed on keeps each row's stream, whatever else was taken with it.
    a = RowGenerator(7, ids, ply=3).take(np.array([1, 3])).random(2)
    b = RowGenerator(7, ids[[3, 1]], ply=3).take(np.array([1, 0])).random(2)
    np.testing.assert_array_equal(a, b)  # both are the rows of games 9 and 40
    # Rows taken twice draw apart when their lanes differ.
    twice = RowGenerator(7, ids, ply=0).take(np.array([0, 0]), lane=np.array([0, 1]))
    x = twice.random(2)
    assert x[0] != x[1]
    # Draws of another shape are shared by the call, and reproducible.
    np.testing.assert_array_equal(RowGenerator(7, ids, 3).random(5),
                                  RowGenerator(7, ids[:2], 3).random(5))
    # A plain generator is handed on as it is.
    plain = np.random.default_rng(0)
    assert rows_rng(plain, np.array([0])) is plain


def test_row_streams_are_uniform() -> None:
    rng = RowGenerator(123, np.arange(200_000), ply=0)
    u = rng.random(200_000)
    assert u.min() >= 0.0 and u.max() < 1.0
    counts = np.bincount((u * 20).astype(int), minlength=20)
    expected = len(u) / 20
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 60  # 19 degrees of freedom: p < 1e-5 beyond this
    # Neighbouring games are not correlated.
    assert abs(np.corrcoef(u[:-1], u[1:])[0, 1]) < 0.01
    # uniform_legal picks each legal move about equally often.
    mask = np.zeros((60_000, 9), dtype=np.int8)
    mask[:, [1, 4, 8]] = 1
    picks = uniform_legal(mask, RowGenerator(5, np.arange(60_000), 1))
    assert set(np.unique(picks)) == {1, 4, 8}
    assert np.all(np.abs(np.bincount(picks, minlength=9)[[1, 4, 8]] - 20_000) < 600)


def _agents(game: str) -> list[tuple[object, object]]:
    g = get_game(game)
    student = StudentAgent(build_student("mlp:16x1", g, seed=1), greedy=False)
    teacher = make_agent("perfect" if game == "tictactoe" else "alphabeta:2", g)
    return [
        (make_agent("random", g), make_agent("random", g)),
        (make_agent("heuristic", g), student),
        (EpsilonAgent(teacher, 0.3), MixtureAgent(teacher, student, 0.5, g)),
        (TemperatureAgent(teacher, 2.0),  # type: ignore[arg-type]
         TeacherLabeller(teacher, actor=student, beta=0.5,  # type: ignore[arg-type]
                         exploration=Exploration(epsilon=0.2))),
    ]


@pytest.mark.parametrize("game", ["tictactoe", "connect_four"])
def test_a_match_is_the_same_whatever_its_shard_size(game: str) -> None:
    n = 2500
    for a, b in _agents(game):
        results = [
            play_matches(game, a, b, n, seed=9, record=True, opening_plies=2,  # type: ignore
                         shard_games=s)
            for s in (7, 1024, n, None)
        ]
        for r in results[1:]:
            _same(results[0], r)
        # ... and the seed matters.
        other = play_matches(game, a, b, n, seed=10, record=True, opening_plies=2)  # type: ignore
        assert any(not np.array_equal(x, y) for x, y in zip(results[0].records or [],
                                                            other.records or [], strict=True))


def test_a_search_agent_plays_the_same_games_in_any_shard() -> None:
    # Root noise, random tie-breaks and random rollouts: every draw of the search.
    search = MCTS(RandomRolloutEvaluator(2), 24, dirichlet_alpha=0.5, dirichlet_fraction=0.25)
    mcts = MCTSAgent("tictactoe", search, temperature=1.0)
    rand = make_agent("random", "tictactoe")
    results = [play_matches("tictactoe", mcts, rand, 40, seed=3, record=True, shard_games=s)
               for s in (7, 40)]
    _same(*results)


def test_games_played_as_the_tail_of_a_longer_match_are_its_games() -> None:
    a = make_agent("random", "connect_four")
    whole = play_matches("connect_four", a, a, 100, seed=4, record=True)
    tail = play_matches("connect_four", a, a, 40, seed=4, record=True, first_game=60,
                        first_seat=0)
    _same(tail, MatchResult(
        game=whole.game, agents=whole.agents, seat_a=whole.seat_a[60:],
        returns=whole.returns[60:], length=whole.length[60:], illegal=whole.illegal[60:],
        reasons=whole.reasons[60:], records=(whole.records or [])[60:]))


def test_positions_and_datasets_do_not_depend_on_shard_size(tmp_path) -> None:
    teacher = make_agent("perfect", "tictactoe")
    student = StudentAgent(build_student("mlp:16x1", "tictactoe", 3), greedy=False)
    labeller = TeacherLabeller(teacher, actor=student, beta=0.5,
                               exploration=Exploration(epsilon=0.1))
    p1 = collect_positions("tictactoe", labeller, 90, seed=4, shard_games=13)
    p2 = collect_positions("tictactoe", labeller, 90, seed=4)
    for name in ("obs", "mask", "probs", "action", "game_id", "ply", "outcome"):
        np.testing.assert_array_equal(getattr(p1, name), getattr(p2, name))
    generate_dataset("tictactoe", teacher, 50, tmp_path / "a", seed=1, games_per_shard=7)
    generate_dataset("tictactoe", teacher, 50, tmp_path / "b", seed=1, games_per_shard=50)
    d1, d2 = load_dataset(tmp_path / "a"), load_dataset(tmp_path / "b")
    for name in ("obs", "action", "game_id", "ply", "outcome"):
        np.testing.assert_array_equal(getattr(d1, name), getattr(d2, name))


def test_a_pettingzoo_game_without_an_engine_is_the_same_in_any_shard() -> None:
    # Leduc hold'em deals cards: each game's env is seeded from its own stream.
    a = make_agent("random", "leduc_holdem")
    results = [play_matches("leduc_holdem", a, a, 30, seed=2, record=True, shard_games=s)
               for s in (4, 30)]
    _same(*results)
    assert len({tuple(r) for r in results[0].records or []}) > 5
