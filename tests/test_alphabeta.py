"""The compiled connect-four search against the pure-Python reference and the solver:
same move values as the reference, exact scores where it solves, the spec's options."""

from __future__ import annotations

import numpy as np
import pytest

from arena.agents import make_agent
from arena.core import TlmError
from arena.engines.connect_four import ConnectFourEngine
from arena.players import c4_reference as ref
from arena.players import c4_search as fast
from arena.players import connect_four as c4
from arena.players.connect_four import AlphaBetaConnectFour, decode_arrays, scores_to_policy
from arena.positions import load_positions, positions_path

SOLVED_CSV = positions_path("connect_four_solved")
EVERY_COLUMN = 10**9
"""A margin that makes every column's score exact."""


def random_positions(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` live positions of random play, 4 to 30 plies in: bitboards (p, mask)."""
    rng = np.random.default_rng(seed)
    engine = ConnectFourEngine()
    state = engine.reset(4 * n)
    stop = rng.integers(4, 31, size=4 * n)
    keep = []
    for ply in range(31):
        _, mask = engine.observe(state)
        at_stop = (stop == ply) & ~engine.done(state)
        keep.append(engine.take(state, np.flatnonzero(at_stop)))
        actions = np.array([rng.choice(np.flatnonzero(m)) if m.any() else 0 for m in mask])
        state, _, _ = engine.step(state, actions)
    live = engine.concat(keep)
    obs, _ = engine.observe(engine.take(live, np.arange(min(n, len(live.ply)))))
    return decode_arrays(obs)


def to_solver_score(scores: np.ndarray) -> np.ndarray:
    """Search scores of proven results as the solver's (stones the winner has left)."""
    v = np.where(np.isfinite(scores), scores, 0).astype(np.int64)
    a = np.abs(v)
    return np.where(a >= fast.WIN, np.sign(v) * ((a - fast.WIN + 2) // 2), 0)


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_fast_search_gives_the_reference_move_values(depth: int) -> None:
    ps, masks = random_positions(60, seed=depth)
    assert len(ps) == 60 and len(set(masks.tolist())) > 55
    got = fast.search_scores(ps, masks, depth, margin=EVERY_COLUMN)
    for i, (p, m) in enumerate(zip(ps.tolist(), masks.tolist(), strict=True)):
        expected = ref.root_scores(p, m, depth, EVERY_COLUMN)
        assert got[i].tolist() == expected, (i, depth)


def test_agent_policy_equals_the_reference_policy() -> None:
    ps, masks = random_positions(40, seed=7)
    obs = np.stack([_obs(p, m) for p, m in zip(ps.tolist(), masks.tolist(), strict=True)])
    legal = ((masks[:, None] >> (np.arange(7) * 7 + 5)) & 1 == 0).astype(np.int8)
    for depth, temperature in ((4, 0.1), (3, 2.0), (2, 0.0)):
        agent = AlphaBetaConnectFour(depth, temperature)
        margin = max(1, int(np.ceil(30 * temperature)))
        expected = np.array([ref.root_scores(p, m, depth, margin)
                             for p, m in zip(ps.tolist(), masks.tolist(), strict=True)])
        probs = agent.policy(obs, legal)
        assert np.allclose(probs, scores_to_policy(expected, temperature), atol=1e-9)
        best = agent.move_scores(obs, legal).max(axis=1)
        assert np.array_equal(best, expected.max(axis=1))
        assert np.allclose(agent.value(obs, legal), np.tanh(best / c4.VALUE_SCALE))


def _obs(p: int, m: int) -> np.ndarray:
    """The observation ``[6, 7, 2]`` of bitboards ``(p, mask)``."""
    out = np.zeros((6, 7, 2), dtype=np.int8)
    for c in range(7):
        for h in range(6):
            bit = 1 << (c * 7 + h)
            if m & bit:
                out[5 - h, c, 0 if p & bit else 1] = 1
    return out


def test_exact_search_equals_the_solver() -> None:
    positions = load_positions(SOLVED_CSV, "connect_four")
    ps, masks = decode_arrays(positions.obs)
    empties = 42 - np.array([len(m) for m in positions.moves])
    # Positions it solves to the end: every column's score is the solver's.
    solved = empties <= 18
    scores = fast.search_scores(ps[solved], masks[solved], 1, EVERY_COLUMN, solve=18)
    assert solved.sum() >= 30
    got = np.where(np.isfinite(scores), to_solver_score(scores), -1000)
    assert np.array_equal(got, positions.scores[solved])
    # Elsewhere, every win or loss it proves within its horizon is the solver's.
    for depth in (4, 8):
        scores = fast.search_scores(ps, masks, depth, EVERY_COLUMN)
        proven = np.isfinite(scores) & (np.abs(np.where(np.isfinite(scores), scores, 0))
                                        >= fast.WIN)
        assert proven.sum() > 1000
        assert np.array_equal(to_solver_score(scores)[proven], positions.scores[proven])
        cls = np.sign(np.where(proven, scores, 0))
        assert np.array_equal(cls[proven], np.sign(positions.scores[proven]))


def test_deeper_search_blunders_less() -> None:
    positions = load_positions(SOLVED_CSV, "connect_four")
    rates = []
    for depth in (2, 8):
        probs = AlphaBetaConnectFour(depth).policy(positions.obs, positions.mask)
        rates.append(float((probs * positions.blunders).sum(axis=1).mean()))
    assert rates[1] < rates[0]


def test_spec_options() -> None:
    agent = make_agent("alphabeta:8,t=2.5,solve=14", "connect_four")
    assert isinstance(agent, AlphaBetaConnectFour)
    assert (agent.depth, agent.temperature, agent.solve) == (8, 2.5, 14)
    assert agent.name == "alphabeta:8,t=2.5,solve=14"
    plain = make_agent("alphabeta:4", "connect_four")
    assert isinstance(plain, AlphaBetaConnectFour)
    assert (plain.depth, plain.temperature, plain.solve) == (4, 0.1, 0)
    for spec, message in (
        ("alphabeta:4,depth=3", "unknown alphabeta option"),
        ("alphabeta:4,t=-1", "bad value"),
        ("alphabeta:4,t=x", "bad value"),
        ("alphabeta:4,solve=50", "bad value"),
        ("alphabeta:0,t=1", "must be positive"),
        ("alphabeta:x", "expected a number"),
    ):
        with pytest.raises(TlmError, match=message):
            make_agent(spec, "connect_four")


def test_ties_are_broken_at_random() -> None:
    # After a first stone in the centre, columns 2 and 4 mirror each other.
    obs = np.repeat(c4.play_moves([3])[None], 64, axis=0)
    mask = np.ones((64, 7), dtype=np.int8)
    agent = AlphaBetaConnectFour(4)
    scores = agent.move_scores(obs[:1], mask[:1])[0]
    best = set(np.flatnonzero(scores == scores.max()).tolist())
    assert len(best) >= 2
    actions = agent.act(obs, mask, np.random.default_rng(0))
    assert set(actions.tolist()) == best
    assert np.array_equal(actions, agent.act(obs, mask, np.random.default_rng(0)))


def test_a_shared_table_does_not_change_scores() -> None:
    ps, masks = random_positions(50, seed=11)
    table = fast.SearchTable(10)  # tiny: entries collide and are overwritten
    deep = fast.search_scores(ps, masks, 6, EVERY_COLUMN, table=table)
    shallow = fast.search_scores(ps, masks, 3, EVERY_COLUMN, table=table)
    assert np.array_equal(shallow, fast.search_scores(ps, masks, 3, EVERY_COLUMN))
    assert np.array_equal(deep, fast.search_scores(ps, masks, 6, EVERY_COLUMN))


def test_reference_agent_plays_as_the_fast_one() -> None:
    positions = load_positions(SOLVED_CSV, "connect_four")
    obs, mask = positions.obs[:30], positions.mask[:30]
    old, new = ref.ReferenceAlphaBeta(3), AlphaBetaConnectFour(3)
    assert np.allclose(old.policy(obs, mask), new.policy(obs, mask), atol=1e-9)
    assert np.array_equal(old.value(obs, mask), new.value(obs, mask))
