"""play_matches: seats, batching, determinism, illegal actions, records."""

from __future__ import annotations

import numpy as np
import pytest

from arena import (
    Agent,
    IllegalActionError,
    RandomAgent,
    TlmError,
    get_game,
    make_agent,
    play_matches,
)
from arena.core import uniform_legal


class CountingRandom(Agent):
    """Random play that records the batch size of every call."""

    def __init__(self) -> None:
        self.name = "counting"
        self.calls: list[int] = []

    def act(self, obs, mask, rng, state=None):
        self.calls.append(len(mask))
        return uniform_legal(mask, rng)


class AlwaysZero(Agent):
    """Plays action 0 whether or not it is legal."""

    name = "zero"

    def act(self, obs, mask, rng, state=None):
        return np.zeros(len(mask), dtype=np.int64)


@pytest.mark.parametrize("game", ["tictactoe", "connect_four", "leduc_holdem"])
def test_same_seed_same_result(game: str) -> None:
    a, b = make_agent("random", game), make_agent("random", game)
    r1 = play_matches(game, a, b, 64, seed=7, record=True)
    r2 = play_matches(game, a, b, 64, seed=7, record=True)
    np.testing.assert_array_equal(r1.returns, r2.returns)
    np.testing.assert_array_equal(r1.length, r2.length)
    assert all(np.array_equal(x, y) for x, y in zip(r1.records, r2.records, strict=True))
    r3 = play_matches(game, a, b, 64, seed=8, record=True)
    assert any(not np.array_equal(x, y) for x, y in zip(r1.records, r3.records, strict=True))


def test_seats_alternate_and_split_evenly() -> None:
    r = play_matches("tictactoe", RandomAgent(), RandomAgent(), 101, seed=0)
    assert r.seat_a.tolist()[:4] == [0, 1, 0, 1]
    assert int((r.seat_a == 0).sum()) == 51 and int((r.seat_a == 1).sum()) == 50


def test_one_call_per_agent_per_step_for_all_waiting_games() -> None:
    a, b = CountingRandom(), CountingRandom()
    play_matches("tictactoe", a, b, 1000, seed=1)
    # Tic-tac-toe lasts at most 9 plies: each agent is called at most once per ply.
    assert len(a.calls) <= 9 and len(b.calls) <= 9
    assert a.calls[0] == 500 and b.calls[0] == 500


def test_records_replay_to_the_same_outcome_on_pettingzoo(ttt_reference) -> None:
    r = play_matches("tictactoe", RandomAgent(), RandomAgent(), 50, seed=3, record=True)
    for i in range(50):
        env = ttt_reference.make_env()
        env.reset()
        agents = list(env.possible_agents)
        for a in r.records[i]:
            env.step(int(a))
        first_seat_return = env._cumulative_rewards[agents[0]]
        a_return = first_seat_return if r.seat_a[i] == 0 else -first_seat_return
        assert a_return == r.returns[i, 0]
        assert len(r.records[i]) == r.length[i]


def test_outcomes_are_antisymmetric_and_bounded() -> None:
    r = play_matches("connect_four", RandomAgent(), RandomAgent(), 300, seed=2)
    np.testing.assert_array_equal(r.returns[:, 0], -r.returns[:, 1])
    assert set(np.unique(r.outcome)) <= {-1, 0, 1}
    assert (r.length >= 7).all() and (r.length <= 42).all()


def test_illegal_action_loses_that_game_and_the_run_goes_on() -> None:
    r = play_matches("tictactoe", AlwaysZero(), RandomAgent(), 20, seed=0)
    # Square 0 is free on A's first move, so A's second move (if any) is illegal.
    assert (r.illegal[r.illegal >= 0] == 0).all()
    lost_by_illegal = r.illegal == 0
    assert lost_by_illegal.any()
    assert (r.outcome[lost_by_illegal] == -1).all()
    assert all("illegal action 0 by zero" in r.reasons[i] for i in np.flatnonzero(lost_by_illegal))
    assert all(r.reasons[i] == "" for i in np.flatnonzero(~lost_by_illegal))


def test_strict_raises_on_illegal_action() -> None:
    with pytest.raises(IllegalActionError, match="illegal action 0"):
        play_matches("tictactoe", AlwaysZero(), RandomAgent(), 20, seed=0, strict=True)


def test_opening_plies_are_random_and_hidden_from_observer() -> None:
    seen_plies: list[int] = []
    r = play_matches(
        "connect_four", RandomAgent(), RandomAgent(), 40, seed=4, opening_plies=3,
        observer=lambda d: seen_plies.extend(d.ply.tolist()),
    )
    assert min(seen_plies) == 3
    assert len(seen_plies) == int(r.length.sum()) - 3 * 40


def test_poker_reports_mean_return_in_chips() -> None:
    r = play_matches("leduc_holdem", RandomAgent(), RandomAgent(), 200, seed=0)
    assert np.abs(r.returns[:, 0]).max() > 1.0
    assert r.mean_return == pytest.approx(r.returns[:, 0].mean())


def test_bad_arguments() -> None:
    with pytest.raises(TlmError, match="must be positive"):
        play_matches("tictactoe", RandomAgent(), RandomAgent(), 0)
    with pytest.raises(TlmError, match="unknown game"):
        play_matches("nogame", RandomAgent(), RandomAgent(), 5)
    agent = RandomAgent()
    agent.game = "connect_four"
    with pytest.raises(TlmError, match="plays connect_four, not tictactoe"):
        play_matches(get_game("tictactoe"), agent, RandomAgent(), 5)
