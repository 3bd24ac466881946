"""Batched MCTS: tactics on solved positions, strength, determinism, batching, signs."""

from __future__ import annotations

import csv
from collections.abc import Sequence

import numpy as np
import pytest

import teachers  # noqa: F401  (registers the mcts spec)
from arena.adapter import PettingZooEngine
from arena.agents import RandomAgent, make_agent
from arena.core import Engine, State, TlmError
from arena.games import Game, get_game
from arena.matches import play_matches
from arena.positions import positions_path
from teachers.mcts import (
    MCTS,
    MCTSAgent,
    NetworkEvaluator,
    RandomRolloutEvaluator,
    SearchResult,
    reach_leaves,
)

SOLVED = positions_path("connect_four_solved")


def engine_of(game: str) -> Engine:
    return get_game(game).make_engine()


def positions(engine: Engine, games: Sequence[Sequence[int]]) -> State:
    """The positions reached by playing each move list (all of the same length)."""
    assert len({len(g) for g in games}) == 1
    state = engine.reset(len(games))
    for t in range(len(games[0])):
        state, _, done = engine.step(state, np.array([g[t] for g in games]))
        assert not done.any()
    return state


def best_moves(result: SearchResult) -> np.ndarray:
    return result.policy(0.0).argmax(axis=1)


def rollout_mcts(n: int, **kwargs: object) -> MCTS:
    return MCTS(RandomRolloutEvaluator(1), n, **kwargs)  # type: ignore[arg-type]


# ---------------------------------------------------------------- tactics


TTT_WIN = [  # (moves, the only winning square), X to move
    ([0, 3, 1, 4], 2),  # X 0 1, O 3 4: X completes its line rather than block at 5
    ([4, 0, 2, 1], 6),  # X 4 2, O 0 1: the anti-diagonal
    ([0, 1, 4, 2], 8),  # X 0 4, O 1 2: the diagonal
    ([8, 0, 5, 1], 2),  # X 8 5, O 0 1: line 2 5 8, where O also threatens
]
@pytest.mark.parametrize("rule", ["puct", "uct"])
def test_tictactoe_takes_the_win_in_one(rule: str) -> None:
    engine = engine_of("tictactoe")
    root = positions(engine, [m for m, _ in TTT_WIN])
    result = rollout_mcts(100, rule=rule).search(engine, root, np.random.default_rng(0))
    assert best_moves(result).tolist() == [w for _, w in TTT_WIN]


def test_tictactoe_blocks_the_only_threat() -> None:
    engine = engine_of("tictactoe")
    games = [  # O to move, X threatens exactly one square, O has no win
        ([0, 4, 1], 2),
        ([0, 4, 3], 6),
        ([2, 4, 5], 8),
        ([6, 4, 7], 8),
        ([8, 4, 5], 2),
    ]
    root = positions(engine, [m for m, _ in games])
    result = rollout_mcts(200).search(engine, root, np.random.default_rng(1))
    assert best_moves(result).tolist() == [b for _, b in games]


C4_WIN = [
    ([0, 6, 0, 6, 0, 6], 0),  # a vertical four in column 0 (the opponent threatens 6)
    ([0, 0, 1, 1, 2, 2], 3),  # the bottom row
    ([3, 3, 4, 4, 2, 6], 1),  # bottom row 2 3 4: either end wins, 1 or 5
]
C4_BLOCK = [
    ([0, 6, 0, 6, 0], 0),  # seat 0 threatens column 0
    ([0, 0, 1, 1, 2], 3),  # seat 0 threatens the bottom row at 3 only
]


def test_connect_four_takes_the_win_in_one_and_blocks() -> None:
    engine = engine_of("connect_four")
    search = rollout_mcts(200)
    rng = np.random.default_rng(2)
    win = best_moves(search.search(engine, positions(engine, [m for m, _ in C4_WIN]), rng))
    assert win[:2].tolist() == [0, 3] and win[2] in (1, 5)
    block = best_moves(search.search(engine, positions(engine, [m for m, _ in C4_BLOCK]), rng))
    assert block.tolist() == [b for _, b in C4_BLOCK]


def solved_rows() -> list[tuple[list[int], np.ndarray]]:
    if not SOLVED.exists():
        pytest.skip(f"{SOLVED} is missing")
    with SOLVED.open() as f:
        return [
            ([int(c) - 1 for c in row["moves"]],
             np.array([int(row[f"score_c{i}"]) for i in range(7)]))
            for row in csv.DictReader(f)
        ]


def immediate_wins(engine: Engine, state: State) -> set[int]:
    """The moves of the single game in ``state`` that win at once."""
    legal = np.flatnonzero(engine.legal_mask(state)[0])
    _, rewards, done = engine.step(engine.take(state, np.zeros(len(legal), dtype=int)), legal)
    mover = int(engine.to_play(state)[0])
    return set(legal[done & (rewards[:, mover] > 0)].tolist())


def only_safe_move(engine: Engine, state: State) -> int | None:
    """The one move after which the opponent cannot win at once, if exactly one exists."""
    legal = np.flatnonzero(engine.legal_mask(state)[0])
    after, _, _ = engine.step(engine.take(state, np.zeros(len(legal), dtype=int)), legal)
    safe = [
        a for i, a in enumerate(legal)
        if not immediate_wins(engine, engine.take(after, np.array([i])))
    ]
    return int(safe[0]) if len(safe) == 1 else None


def search_by_length(
    engine: Engine, games: list[list[int]], search: MCTS, seed: int
) -> np.ndarray:
    """The most visited move of each position, searched in batches of equal length."""
    chosen = np.zeros(len(games), dtype=np.int64)
    by_length: dict[int, list[int]] = {}
    for i, g in enumerate(games):
        by_length.setdefault(len(g), []).append(i)
    rng = np.random.default_rng(seed)
    for idx in by_length.values():
        root = positions(engine, [games[i] for i in idx])
        chosen[idx] = best_moves(search.search(engine, root, rng))
    return chosen


def test_connect_four_solved_tactics() -> None:
    """On solved positions with a win in one, mcts wins; with one safe move, it plays it."""
    rows = solved_rows()
    engine = engine_of("connect_four")
    wins: list[tuple[list[int], set[int]]] = []
    blocks: list[tuple[list[int], int]] = []
    for moves, scores in rows:
        if len(wins) >= 60 and len(blocks) >= 40:
            break
        state = positions(engine, [moves])
        winning = immediate_wins(engine, state)
        if winning:
            # the engine and the solver agree on what a win in one is
            assert scores[sorted(winning)].max() == scores.max()
            wins.append((moves, winning))
            continue
        safe = only_safe_move(engine, state)
        if safe is not None:
            assert scores[safe] == scores.max()
            blocks.append((moves, safe))
    assert len(wins) >= 60 and len(blocks) >= 40
    wins, blocks = wins[:60], blocks[:40]
    search = rollout_mcts(100, rule="uct", c_puct=1.4)
    chosen = search_by_length(engine, [m for m, _ in wins], search, seed=3)
    assert all(int(c) in w for c, (_, w) in zip(chosen, wins, strict=True))
    chosen = search_by_length(engine, [m for m, _ in blocks], search, seed=4)
    assert chosen.tolist() == [b for _, b in blocks]


def test_connect_four_blunders_rarely() -> None:
    """A blunder drops the win/draw/loss class. Measured for 200 simulations: 5% over
    all 400 positions, 7-11% over these 120 (by seed); a random mover: 38%."""
    rows = solved_rows()[:120]
    engine = engine_of("connect_four")
    agent = make_agent("mcts:200", "connect_four")
    assert isinstance(agent, MCTSAgent)
    games = [m for m, _ in rows]
    chosen = search_by_length(engine, games, agent.mcts, seed=5)
    scores = np.stack([s for _, s in rows])
    best_class = np.sign(scores.max(axis=1))
    blunder = np.sign(scores[np.arange(len(rows)), chosen]) < best_class
    legal = scores > -1000
    random_blunder = ((np.sign(scores) < best_class[:, None]) & legal).sum(1) / legal.sum(1)
    assert blunder.mean() <= 0.15
    assert random_blunder.mean() >= 0.3


# ---------------------------------------------------------------- strength, determinism


def test_mcts_beats_random_at_tictactoe() -> None:
    agent = make_agent("mcts:200", "tictactoe")
    result = play_matches("tictactoe", agent, RandomAgent(), 100, seed=0)
    score = float((result.outcome == 1).mean() + 0.5 * (result.outcome == 0).mean())
    assert score >= 0.9


def test_same_seed_same_search() -> None:
    engine = engine_of("connect_four")
    root = positions(engine, [[3, 3, 2], [0, 1, 2], [6, 6, 6]])
    search = rollout_mcts(60, dirichlet_alpha=0.5, dirichlet_fraction=0.25)
    a = search.search(engine, root, np.random.default_rng(11))
    b = search.search(engine, root, np.random.default_rng(11))
    c = search.search(engine, root, np.random.default_rng(12))
    for field in ("visits", "q", "value", "prior"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert not np.array_equal(a.prior, c.prior)


def test_root_state_is_not_modified() -> None:
    engine = engine_of("connect_four")
    moves = [[3, 3, 2], [0, 1, 2]]
    root = positions(engine, moves)
    rollout_mcts(30).search(engine, root, np.random.default_rng(0))
    fresh = positions(engine, moves)
    np.testing.assert_array_equal(engine.observe(root)[0], engine.observe(fresh)[0])


def test_same_seed_same_matches() -> None:
    agent = make_agent("mcts:20", "tictactoe")
    assert isinstance(agent, MCTSAgent)
    agent.greedy = False
    a = play_matches("tictactoe", agent, RandomAgent(), 8, seed=4, record=True)
    b = play_matches("tictactoe", agent, RandomAgent(), 8, seed=4, record=True)
    assert a.records is not None and b.records is not None
    assert all(np.array_equal(x, y) for x, y in zip(a.records, b.records, strict=True))


def test_dirichlet_noise_changes_only_legal_root_priors() -> None:
    engine = engine_of("connect_four")
    root = positions(engine, [[0] * 6])  # column 0 is full
    noisy = rollout_mcts(1, dirichlet_alpha=0.3, dirichlet_fraction=0.5)
    prior = noisy.search(engine, root, np.random.default_rng(0)).prior[0]
    assert prior[0] == 0.0
    assert prior.sum() == pytest.approx(1.0)
    assert not np.allclose(prior[1:], 1 / 6)
    plain = rollout_mcts(1).search(engine, root, np.random.default_rng(0)).prior[0]
    np.testing.assert_allclose(plain[1:], 1 / 6)


# ---------------------------------------------------------------- batching and signs


class UniformPolicyValue:
    """A real policy-value function (uniform priors, constant value) that logs its calls."""

    def __init__(self, value: float = 0.0) -> None:
        self.value = value
        self.calls: list[tuple[np.ndarray, np.ndarray]] = []

    def __call__(self, obs: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.calls.append((obs.copy(), mask.copy()))
        probs = mask / mask.sum(axis=1, keepdims=True)
        return probs, np.full(len(obs), self.value)


def test_network_evaluator_is_called_once_per_simulation_for_all_games() -> None:
    engine = engine_of("connect_four")
    games = [[3], [0], [6], [2], [5]]
    root = positions(engine, games)
    fn = UniformPolicyValue()
    n = 12
    MCTS(NetworkEvaluator(fn), n).search(engine, root, np.random.default_rng(0))
    assert len(fn.calls) == n
    assert all(len(obs) == len(games) for obs, _ in fn.calls)
    obs, mask = engine.observe(root)
    np.testing.assert_array_equal(fn.calls[0][0], obs)
    np.testing.assert_array_equal(fn.calls[0][1], mask)


def test_network_evaluator_skips_terminal_leaves() -> None:
    engine = engine_of("tictactoe")
    root = positions(engine, [[0, 3, 1, 4]])  # X wins at 2
    fn = UniformPolicyValue()
    result = MCTS(NetworkEvaluator(fn), 40).search(engine, root, np.random.default_rng(0))
    # revisiting the known win costs no call, so some simulations made none
    assert len(fn.calls) < 40
    assert result.q[0, 2] == 1.0


def test_values_flip_sign_per_ply() -> None:
    """A leaf worth +v to its mover is worth -v to the player who moved into it."""
    engine = engine_of("connect_four")
    root = positions(engine, [[3, 2]])
    fn = UniformPolicyValue(0.5)
    result = MCTS(NetworkEvaluator(fn), 2).search(engine, root, np.random.default_rng(0))
    (played,) = np.flatnonzero(result.visits[0])
    assert result.q[0, played] == pytest.approx(-0.5)
    assert result.value[0] == pytest.approx(0.0)  # (+0.5 at the root, -0.5 below) / 2


@pytest.mark.parametrize("solve", [False, True])
def test_terminal_rewards_back_up_for_the_seat_that_moved(solve: bool) -> None:
    engine = engine_of("tictactoe")
    # X to move wins at 2; O to move faces X's double threat (3 and 2) and loses
    root_win = positions(engine, [[0, 3, 1, 4]])
    lost = positions(engine, [[0, 1, 4, 8, 6]])
    search = rollout_mcts(300, solve=solve)
    rng = np.random.default_rng(0)
    win = search.search(engine, root_win, rng)
    assert win.q[0, 2] == 1.0 and win.value[0] > 0.5
    loss = search.search(engine, lost, rng)
    visited = loss.visits[0] > 0
    assert (loss.q[0, visited] < 0).all() and loss.value[0] < -0.5
    if solve:
        # proven: the root's outcome is exact, and every move of the lost side is a loss
        assert win.value[0] == 1.0 and win.solved[0, 2]
        assert loss.value[0] == -1.0
        assert loss.solved[0, loss.legal[0]].all() and (loss.q[0, loss.legal[0]] == -1).all()


def test_reach_leaves_matches_stepping_each_game() -> None:
    engine = engine_of("connect_four")
    paths = np.array([[3, 3, 3, 3, 3], [0, 1, 0, 1, 0], [6, 6, 5, 5, 4]])
    depth = np.array([2, 5, 0])
    root = positions(engine, [[0, 0], [2, 2], [1, 1]])
    leaves = reach_leaves(
        engine, root, np.arange(3), paths, depth, np.random.default_rng(0), observe=True
    )
    for b in range(3):
        state = engine.take(root, np.array([b]))
        for a in paths[b, : depth[b]]:
            state, rewards, done = engine.step(state, np.array([a]))
        assert leaves.terminal[b] == done[0] if depth[b] else not leaves.terminal[b]
        if not leaves.terminal[b]:
            obs, mask = engine.observe(state)
            np.testing.assert_array_equal(leaves.obs[b], obs[0])  # type: ignore[index]
            np.testing.assert_array_equal(leaves.mask[b], mask[0])
    assert not leaves.terminal.any()
    ends = reach_leaves(engine, positions(engine, [[0, 6, 0, 6, 0, 6]]), np.array([0]),
                        np.array([[0]]), np.array([1]), np.random.default_rng(0))
    assert ends.terminal[0] and ends.rewards[0].tolist() == [1.0, -1.0]


def test_random_rollout_values_are_for_the_leaf_mover() -> None:
    engine = engine_of("tictactoe")
    # X 0 4 6 against O 1 8: O to move, and X threatens 2 and 3
    root = positions(engine, [[0, 1, 4, 8, 6]])
    evaluation = RandomRolloutEvaluator(200).evaluate(
        engine, root, np.array([0]), np.zeros((1, 0), dtype=np.int64), np.zeros(1, dtype=int),
        np.random.default_rng(0),
    )
    assert evaluation.leaves.to_play[0] == 1
    assert evaluation.values[0] < -0.3


@pytest.mark.parametrize("network", [False, True])
def test_search_is_the_same_on_the_reference_engine(network: bool) -> None:
    """Only the engine interface is used: PettingZoo's own env gives the same search."""
    reference = PettingZooEngine(Game("ttt_reference", "pettingzoo.classic.tictactoe_v3"))
    fast = engine_of("tictactoe")
    games = [[0, 3, 1, 4], [0, 4, 8, 2]]
    evaluator = NetworkEvaluator(UniformPolicyValue()) if network else RandomRolloutEvaluator(2)
    search = MCTS(evaluator, 30, dirichlet_alpha=0.3)
    a = search.search(reference, positions(reference, games), np.random.default_rng(0))
    b = search.search(fast, positions(fast, games), np.random.default_rng(0))
    np.testing.assert_array_equal(a.visits, b.visits)
    np.testing.assert_array_equal(a.q, b.q)
    np.testing.assert_array_equal(a.value, b.value)


# ---------------------------------------------------------------- policy and errors


def test_visit_policy_temperature() -> None:
    result = SearchResult(
        visits=np.array([[0, 6, 2, 2]]), q=np.array([[0.0, 0.1, 0.3, 0.2]]),
        value=np.zeros(1), prior=np.full((1, 4), 0.25), legal=np.ones((1, 4), dtype=bool),
        solved=np.zeros((1, 4), dtype=bool), plies=np.zeros((1, 4), dtype=int),
    )
    np.testing.assert_allclose(result.policy(1.0), [[0, 0.6, 0.2, 0.2]])
    np.testing.assert_allclose(result.policy(0.5), [[0, 36 / 44, 4 / 44, 4 / 44]])
    np.testing.assert_array_equal(result.policy(0.0), [[0, 1, 0, 0]])
    tie = SearchResult(
        visits=np.array([[0, 2, 2]]), q=np.array([[0.0, 0.1, 0.3]]), value=np.zeros(1),
        prior=np.full((1, 3), 1 / 3), legal=np.ones((1, 3), dtype=bool),
        solved=np.zeros((1, 3), dtype=bool), plies=np.zeros((1, 3), dtype=int),
    )
    np.testing.assert_array_equal(tie.policy(0.0), [[0, 0, 1]])  # higher q breaks the tie
    proven = SearchResult(
        visits=np.array([[9, 2, 5, 30, 1]]), q=np.array([[-1.0, 1.0, 0.2, 1.0, -1.0]]),
        value=np.zeros(1), prior=np.full((1, 5), 0.2), legal=np.ones((1, 5), dtype=bool),
        solved=np.array([[True, True, False, True, True]]), plies=np.array([[2, 1, 0, 3, 6]]),
    )
    np.testing.assert_array_equal(proven.policy(0.0), [[0, 1, 0, 0, 0]])  # the quickest win
    proven.solved[0, 1] = proven.solved[0, 3] = False
    np.testing.assert_array_equal(proven.policy(0.0), [[0, 0, 0, 1, 0]])  # never a proven loss
    proven.solved[0] = True
    proven.q[0] = -1.0
    np.testing.assert_array_equal(proven.policy(0.0), [[0, 0, 0, 0, 1]])  # the slowest loss


def test_proven_policy() -> None:
    def result(visits: list[list[int]], q: list[list[float]], solved: list[list[bool]],
               plies: list[list[int]], legal: list[list[bool]] | None = None) -> SearchResult:
        shape = np.shape(visits)
        return SearchResult(
            visits=np.array(visits), q=np.array(q), value=np.zeros(shape[0]),
            prior=np.array([[0.1, 0.2, 0.3, 0.4]] * shape[0]),
            legal=np.array(legal) if legal is not None else np.ones(shape, dtype=bool),
            solved=np.array(solved), plies=np.array(plies))

    wins = result([[9, 2, 5, 30]], [[1.0, 1.0, 0.2, 1.0]], [[True, True, False, True]],
                  [[3, 1, 0, 1]])
    np.testing.assert_allclose(wins.proven_policy(), [[0, 0.5, 0, 0.5]])  # quickest wins
    losses = result([[9, 2, 5, 3]], [[-1.0, 0.1, 0.2, -1.0]], [[True, False, False, True]],
                    [[2, 0, 0, 4]])
    np.testing.assert_allclose(losses.proven_policy(), [[0, 2 / 7, 5 / 7, 0]])  # none lost
    unvisited = result([[9, 0, 0, 3]], [[-1.0, 0.0, 0.0, -1.0]],
                       [[True, False, False, True]], [[2, 0, 0, 4]])
    np.testing.assert_allclose(unvisited.proven_policy(), [[0, 0.4, 0.6, 0]])  # priors
    lost = result([[9, 2, 5, 3]], [[-1.0, -1.0, -1.0, -1.0]], [[True, True, True, False]],
                  [[2, 6, 6, 0]], legal=[[True, True, True, False]])
    np.testing.assert_allclose(lost.proven_policy(), [[0, 0.5, 0.5, 0]])  # slowest losses
    open_ = result([[0, 6, 2, 2]], [[0.0, 0.1, 0.3, 0.2]], [[False] * 4], [[0] * 4])
    np.testing.assert_allclose(open_.proven_policy(), open_.policy(1.0))  # nothing proven


def test_agent_policy_and_value() -> None:
    engine = engine_of("tictactoe")
    root = positions(engine, [[0, 3, 1, 4], [0, 1, 4, 8]])
    agent = MCTSAgent("tictactoe", rollout_mcts(100), seed=0)
    obs, mask = engine.observe(root)
    probs = agent.policy(obs, mask, root)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    assert (probs[mask == 0] == 0).all()
    assert probs[0].argmax() == 2
    assert agent.value(obs, mask, root)[0] > 0.5
    with pytest.raises(TlmError, match="engine state"):
        agent.policy(obs, mask, None)


def test_bad_input() -> None:
    with pytest.raises(TlmError, match="plays only"):
        make_agent("mcts:10", "go9")
    with pytest.raises(TlmError, match="positive"):
        make_agent("mcts:0", "tictactoe")
    with pytest.raises(TlmError, match="number"):
        make_agent("mcts:many", "tictactoe")
    with pytest.raises(TlmError, match="selection rule"):
        rollout_mcts(10, rule="best")
    with pytest.raises(TlmError, match="no value"):
        NetworkEvaluator.from_agent(RandomAgent())
    engine = engine_of("tictactoe")
    finished = engine.reset(2)
    for a in (0, 3, 1, 4, 2):
        finished, _, _ = engine.step(finished, np.array([a, a]))
    with pytest.raises(TlmError, match="finished game"):
        rollout_mcts(5).search(engine, finished, np.random.default_rng(0))
