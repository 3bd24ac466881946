"""The fixed players: perfect tic-tac-toe against the solved game, alpha-beta against a
connect-four solver's labels, and the heuristic and alpha-beta players against random."""

from __future__ import annotations

import csv
import dataclasses
import math

import numpy as np
import pytest

from arena.adapter import clone_env
from arena.agents import RandomAgent, make_agent
from arena.core import PolicyAgent, TlmError
from arena.games import Game, get_game
from arena.matches import MatchResult, play_matches
from arena.players import (
    N_NONTERMINAL,
    N_REACHABLE,
    AlphaBetaConnectFour,
    HeuristicAgent,
    PerfectTicTacToe,
    all_positions,
    candidate_moves,
    exact_strength,
    exhaustive_check,
    exhaustive_losses,
    move_values,
    optimal_move_accuracy,
    optimal_moves_mask,
    play_moves,
    position_values,
)
from arena.players import connect_four as c4
from arena.players import tictactoe as ttt
from arena.players.heuristic import completing_moves
from arena.positions import positions_path

SOLVED_CSV = positions_path("connect_four_solved")
Solved = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def playable(name: str) -> Game:
    """The registered game, on the generic adapter while its fast engine is not there."""
    game = get_game(name)
    if game.engine is not None:
        try:
            game.make_engine()
        except (ImportError, AttributeError):
            game = dataclasses.replace(game, engine=None)
    return game


def score(result: MatchResult) -> float:
    o = result.outcome
    return float(((o > 0).sum() + 0.5 * (o == 0).sum()) / len(o))


def ttt_obs(mine: list[int], theirs: list[int]) -> np.ndarray:
    """A one-row batch of tic-tac-toe observations from the mover's and opponent's squares."""
    obs = np.zeros((1, 3, 3, 2), dtype=np.int8)
    for plane, squares in ((0, mine), (1, theirs)):
        for s in squares:
            obs[0, s // 3, s % 3, plane] = 1
    return obs


def ttt_mask(obs: np.ndarray) -> np.ndarray:
    return (obs.reshape(len(obs), 9, 2).sum(axis=-1) == 0).astype(np.int8)


def c4_batch(columns: list[int]) -> tuple[np.ndarray, np.ndarray]:
    obs = play_moves(columns)[None]
    mask = (obs[:, 0].sum(axis=-1) == 0).astype(np.int8)
    return obs, mask


@pytest.fixture(scope="module")
def solved_c4() -> Solved:
    """``(obs, mask, scores, plies)`` of the solver-labelled connect-four positions."""
    with SOLVED_CSV.open() as f:
        rows = list(csv.DictReader(f))
    obs = np.stack([play_moves([int(ch) - 1 for ch in r["moves"]]) for r in rows])
    scores = np.array([[int(r[f"score_c{i}"]) for i in range(7)] for r in rows])
    plies = np.array([len(r["moves"]) for r in rows])
    return obs, (scores != -1000).astype(np.int8), scores, plies


# --- tic-tac-toe: the solved game and the perfect player -------------------------------


def test_solver_counts_every_reachable_position() -> None:
    table = ttt.solved()
    assert table.n_reachable == N_REACHABLE == 5478
    obs, mask = all_positions()
    assert obs.shape == (N_NONTERMINAL, 3, 3, 2) and N_NONTERMINAL == 4520
    assert mask.shape == (4520, 9) and (mask.sum(axis=1) > 0).all()
    assert len(np.unique(ttt.board_keys(obs))) == 4520
    # Mover's marks equal the opponent's (first player to move) or one fewer.
    diff = obs[..., 1].sum(axis=(1, 2)) - obs[..., 0].sum(axis=(1, 2))
    assert set(np.unique(diff)) == {0, 1}


def test_solver_known_values() -> None:
    empty = np.zeros((1, 3, 3, 2), dtype=np.int8)
    assert position_values(empty)[0] == 0
    # Every first move draws with best play, so all nine are optimal.
    assert optimal_moves_mask(empty[0]).tolist() == [1] * 9
    # A corner reply to the centre draws; an edge reply loses.
    after_center = ttt_obs([], [4])
    values = move_values(after_center)[0]
    assert [values[s] for s in (0, 2, 6, 8)] == [0, 0, 0, 0]
    assert [values[s] for s in (1, 3, 5, 7)] == [-1, -1, -1, -1]


def test_solver_win_in_one_and_must_block() -> None:
    # X (to move) holds 0 and 1 and O holds 3 and 4: square 2 wins at once, blocking
    # at 5 only draws, anything else loses to O's 5.
    win = ttt_obs([0, 1], [3, 4])
    assert position_values(win)[0] == 1
    assert move_values(win)[0][[2, 5, 6, 7, 8]].tolist() == [1, 0, -1, -1, -1]
    assert np.flatnonzero(optimal_moves_mask(win)[0]).tolist() == [2]
    # O (to move, holding the centre) must block X's 0-1 row at 2; anything else loses.
    block = ttt_obs([4], [0, 1])
    assert move_values(block)[0][[2, 3, 5, 6, 7, 8]].tolist() == [0, -1, -1, -1, -1, -1]
    probs = PerfectTicTacToe().policy(block, ttt_mask(block))
    assert probs[0].tolist() == [0, 0, 1, 0, 0, 0, 0, 0, 0]
    assert PerfectTicTacToe().value(block, ttt_mask(block))[0] == 0


def test_solver_values_agree_with_move_values() -> None:
    obs, mask = all_positions()
    mv = move_values(obs).astype(np.int64)
    legal = mask != 0
    best = np.where(legal, mv, -9).max(axis=1)
    assert np.array_equal(best, position_values(obs))
    assert np.array_equal(optimal_moves_mask(obs) != 0, legal & (mv == best[:, None]))


def test_perfect_never_loses_against_every_reply() -> None:
    perfect = PerfectTicTacToe()
    obs, mask = all_positions()
    # The check branches over every optimal move of perfect, not one of them.
    assert np.array_equal(candidate_moves(perfect, obs, mask), optimal_moves_mask(obs) != 0)
    for seat in (0, 1):
        result = exhaustive_check(perfect, seat)
        assert result.losses == 0 and len(result.losing) == 0
        assert result.games == result.wins + result.draws > 1000
    assert exact_strength("tictactoe", perfect) == {
        "exhaustive_losses": 0, "losses_first": 0, "losses_second": 0,
        "losses_vs_perfect": 0, "optimal_accuracy": 1.0, "positions": 4520,
    }


def test_exhaustive_check_counts_the_whole_game_tree() -> None:
    # Random plays every legal move, so seat 0 against every reply is the whole tree:
    # 255,168 games, 131,184 won by the first player, 77,904 by the second.
    result = exhaustive_check(RandomAgent(), 0)
    assert (result.games, result.wins, result.draws, result.losses) == (
        255168, 131184, 46080, 77904,
    )
    assert exhaustive_check(RandomAgent(), 1).losses == 131184


def test_exhaustive_check_finds_the_heuristic_players_losses() -> None:
    heuristic = HeuristicAgent("tictactoe")
    # Win-or-block cannot see forks: some replies beat it from either seat.
    assert exhaustive_losses(heuristic, 0) > 0
    assert exhaustive_losses(heuristic, 1) > 0
    # Against perfect's replies only it loses fewer games than against every reply.
    vs_perfect = exhaustive_losses(heuristic, None, PerfectTicTacToe())
    assert 0 < vs_perfect < exhaustive_losses(heuristic)
    assert 0.5 < optimal_move_accuracy(heuristic) < 1.0
    assert exact_strength("connect_four", heuristic) is None
    # The positions of its lost games: its own moves (seat 0 moves with an even number
    # of stones down), the empty board among them when it moves first.
    for seat in (0, 1):
        losing = exhaustive_check(heuristic, seat).losing
        stones = np.array([bin(k).count("1") for k in losing.tolist()])
        assert len(losing) > 0 and np.all(stones % 2 == seat)
        assert (0 in losing.tolist()) == (seat == 0)
        assert set(losing.tolist()) <= set(ttt.solved().keys.tolist())  # to move



def test_exhaustive_check_takes_policy_functions_and_greedy_agents() -> None:
    def first_legal(obs: np.ndarray, mask: np.ndarray) -> np.ndarray:
        probs = np.zeros(mask.shape)
        probs[np.arange(len(mask)), mask.argmax(axis=1)] = 1.0
        return probs

    result = exhaustive_check(first_legal, 0)
    assert result.losses > 0
    # A greedy agent is only followed on its argmax move.
    greedy_perfect = PerfectTicTacToe()
    greedy_perfect.greedy = True
    single = exhaustive_check(greedy_perfect, 0)
    assert single.losses == 0 and single.games < exhaustive_check(PerfectTicTacToe(), 0).games
    with pytest.raises(TlmError, match="seat"):
        exhaustive_check(first_legal, 2)


def test_solver_rejects_bad_observations() -> None:
    with pytest.raises(TlmError, match="shape"):
        optimal_moves_mask(np.zeros((1, 6, 7, 2), dtype=np.int8))
    impossible = ttt_obs([0, 1, 2, 3], [])
    with pytest.raises(TlmError, match="not a reachable position"):
        position_values(impossible)


# --- the heuristic player ---------------------------------------------------------------


def test_heuristic_takes_wins_then_blocks_then_anything() -> None:
    h = HeuristicAgent("tictactoe")
    # Win at 2 beats blocking O's 3-4 line at 5.
    obs = ttt_obs([0, 1], [3, 4])
    assert h.policy(obs, ttt_mask(obs))[0].tolist() == [0, 0, 1, 0, 0, 0, 0, 0, 0]
    obs = ttt_obs([1], [0, 4])
    assert h.policy(obs, ttt_mask(obs))[0].tolist() == [0, 0, 0, 0, 0, 0, 0, 0, 1]
    obs = ttt_obs([0, 4, 3], [1, 2, 7])  # three ways to win: 5, 6 and 8
    assert np.allclose(h.policy(obs, ttt_mask(obs))[0], [0, 0, 0, 0, 0, 1 / 3, 1 / 3, 0, 1 / 3])
    obs = ttt_obs([], [])
    assert np.allclose(h.policy(obs, ttt_mask(obs))[0], np.full(9, 1 / 9))

    h4 = HeuristicAgent("connect_four")
    obs, mask = c4_batch([0, 0, 1, 1, 2])  # second player must block at column 3
    assert h4.policy(obs, mask)[0].tolist() == [0, 0, 0, 1, 0, 0, 0]
    obs, mask = c4_batch([0, 6, 0, 6, 0, 6])  # first player wins in column 0, not blocks 6
    assert h4.policy(obs, mask)[0].tolist() == [1, 0, 0, 0, 0, 0, 0]


def test_heuristic_finds_exactly_the_env_s_winning_moves() -> None:
    """Checked against the PettingZoo env itself: a move is winning iff the env ends the
    game with a reward for it."""
    rng = np.random.default_rng(5)
    for name, n_games in (("connect_four", 12), ("tictactoe", 12)):
        game = get_game(name)
        board = HeuristicAgent(name).board
        for _ in range(n_games):
            env = game.make_env()
            env.reset(seed=int(rng.integers(1 << 30)))
            while not any(env.terminations.values()):
                o = env.observe(env.agent_selection)
                obs, mask = o["observation"][None], o["action_mask"][None]
                wins = completing_moves(board, obs, mask)[0, 0]
                for a in np.flatnonzero(mask[0]):
                    probe = clone_env(env)
                    mover = probe.agent_selection
                    probe.step(int(a))
                    assert wins[a] == (probe.rewards[mover] == 1), (name, a)
                env.step(int(rng.choice(np.flatnonzero(mask[0]))))


def test_heuristic_beats_random_on_both_games() -> None:
    for name, n_games, floor in (("tictactoe", 300, 0.7), ("connect_four", 200, 0.8)):
        game = playable(name)
        result = play_matches(game, make_agent("heuristic", game), RandomAgent(), n_games, seed=3)
        assert score(result) >= floor, (name, score(result))


# --- alpha-beta connect four ------------------------------------------------------------


def test_alphabeta_takes_the_win_and_the_only_block() -> None:
    for depth in (1, 2, 4):
        ab = AlphaBetaConnectFour(depth)
        obs, mask = c4_batch([0, 6, 0, 6, 0, 6])
        assert ab.policy(obs, mask)[0].argmax() == 0
        assert ab.value(obs, mask)[0] == pytest.approx(1.0)
        obs, mask = c4_batch([0, 0, 1, 1, 2])
        probs = ab.policy(obs, mask)[0]
        assert probs[3] == pytest.approx(1.0)
        # A diagonal threat: first player holds (row, col) (0,0) (1,1) (2,2); (3,3) wins.
        obs, mask = c4_batch([0, 1, 1, 2, 2, 3, 2, 3, 3, 6])
        assert ab.policy(obs, mask)[0].argmax() == 3


def test_alphabeta_policy_and_value_are_well_formed() -> None:
    obs, mask = c4_batch([3, 3, 3, 3, 3, 3])  # centre column full
    ab = AlphaBetaConnectFour(3)
    probs = ab.policy(obs, mask)
    assert probs[0, 3] == 0 and probs.sum() == pytest.approx(1.0)
    assert -1 < ab.value(obs, mask)[0] < 1
    soft = AlphaBetaConnectFour(3, temperature=5.0).policy(obs, mask)
    assert (soft[0][mask[0] == 1] > 0).all()
    greedy = AlphaBetaConnectFour(3, temperature=0.0).policy(obs, mask)
    assert set(np.unique(greedy)) <= {0.0, 1.0 / (greedy > 0).sum()}


def reference_negamax(p: int, mask: int, depth: int) -> int:
    """Plain negamax (no pruning, table or ordering) under the same rules and leaves."""
    moves = mask.bit_count()
    possible = (mask + c4.BOTTOM) & c4.BOARD
    if not possible:
        return 0
    if c4.winning_cells(p, mask) & possible:
        return c4.WIN + c4.N_CELLS - moves - 1
    opp_wins = c4.winning_cells(p ^ mask, mask)
    lost = -(c4.WIN + c4.N_CELLS - moves - 2)
    forced = possible & opp_wins
    if forced:
        if forced & (forced - 1):
            return lost
        possible = forced
    possible &= ~(opp_wins >> 1)
    if not possible:
        return lost
    if depth <= 0:
        return c4.evaluate(p, mask)
    return max(
        -reference_negamax(p ^ mask, mask | (possible & col), depth - 1)
        for col in c4.COLUMNS
        if possible & col
    )


def test_alphabeta_search_equals_plain_negamax(solved_c4: Solved) -> None:
    obs, mask, _, _ = solved_c4
    ab = AlphaBetaConnectFour(3, temperature=0.0)
    ps, masks = (bits.tolist() for bits in c4.decode_arrays(obs[:40]))
    scores = ab.move_scores(obs[:40], mask[:40])
    for i, (p, m) in enumerate(zip(ps, masks, strict=True)):
        for col in range(7):
            bit = ((m + c4.BOTTOM) & c4.BOARD) & c4.COLUMNS[col]
            if not bit:
                continue
            if c4.has_four(p | bit):
                expected = c4.WIN + c4.N_CELLS - m.bit_count() - 1
            else:
                expected = -reference_negamax(p ^ m, m | bit, 2)
            # The best columns are exact; the others are upper bounds below the best.
            if expected == scores[i].max():
                assert scores[i, col] == expected
            else:
                assert expected <= scores[i, col] < scores[i].max()


def test_alphabeta_is_mirror_symmetric(solved_c4: Solved) -> None:
    obs, mask, _, _ = solved_c4
    ab = AlphaBetaConnectFour(4, temperature=0.0)
    s = ab.move_scores(obs[:100], mask[:100])
    m = ab.move_scores(obs[:100, :, ::-1], mask[:100, ::-1])[:, ::-1]
    assert np.array_equal(s.max(axis=1), m.max(axis=1))
    assert np.array_equal(s == s.max(axis=1, keepdims=True), m == m.max(axis=1, keepdims=True))


@pytest.mark.parametrize(("depth", "max_blunder_rate"), [(4, 0.06), (6, 0.06)])
def test_alphabeta_rarely_blunders_on_solved_positions(
    solved_c4: Solved, depth: int, max_blunder_rate: float
) -> None:
    """Measured: 3.1% (depth 4) and 3.0% (depth 6) against 38.6% for random play."""
    obs, mask, scores, plies = solved_c4
    ab = AlphaBetaConnectFour(depth)
    probs = ab.policy(obs, mask)
    cls = np.sign(scores)
    best_cls = np.where(mask == 1, cls, -2).max(axis=1)
    blunder = (mask == 1) & (cls < best_cls[:, None])
    rate = float((probs * blunder).sum(axis=1).mean())
    random_rate = float((blunder.sum(axis=1) / mask.sum(axis=1)).mean())
    assert rate <= max_blunder_rate < random_rate / 5

    # Exact within the horizon: a win the solver says comes within depth + 1 plies
    # (the root mover's last move) is found, and every win or loss claimed is real.
    best = np.where(mask == 1, scores, -999).max(axis=1)
    # Solver scores count the winner's remaining stones: a win of score s lands at
    # ply 43 - 2s or 42 - 2s, whichever has the mover's parity.
    land = np.where((43 - 2 * best - plies) % 2 == 0, 43 - 2 * best, 42 - 2 * best)
    near = (best > 0) & (land - plies + 1 <= depth + 1)
    chosen_wins = (probs * (scores > 0)).sum(axis=1)
    assert near.sum() > 100 and np.allclose(chosen_wins[near], 1.0)
    top = ab.move_scores(obs, mask).max(axis=1)
    assert (best[top >= c4.WIN] > 0).all() and (best[top <= -c4.WIN] < 0).all()


def test_alphabeta_beats_random() -> None:
    game = playable("connect_four")
    result = play_matches(game, make_agent("alphabeta:4", game), RandomAgent(), 200, seed=11)
    assert score(result) >= 0.95


def test_same_seed_same_actions() -> None:
    game = playable("connect_four")
    runs = []
    for seed in (4, 4, 5):
        records = play_matches(
            game, make_agent("alphabeta:2", game), make_agent("heuristic", game), 16,
            seed=seed, record=True,
        ).records
        assert records is not None
        runs.append(np.concatenate(records))
    assert np.array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])
    ab = AlphaBetaConnectFour(2, temperature=5.0)
    obs, mask = c4_batch([3, 3, 2])
    obs, mask = np.repeat(obs, 50, axis=0), np.repeat(mask, 50, axis=0)
    first = ab.act(obs, mask, np.random.default_rng(9))
    assert np.array_equal(first, ab.act(obs, mask, np.random.default_rng(9)))
    assert len(np.unique(first)) > 1  # the soft policy really samples


# --- specs ------------------------------------------------------------------------------


def test_specs_build_the_players_and_reject_bad_ones() -> None:
    assert isinstance(make_agent("perfect", "tictactoe"), PerfectTicTacToe)
    ab = make_agent("alphabeta:5", "connect_four")
    assert isinstance(ab, AlphaBetaConnectFour) and ab.depth == 5 and ab.name == "alphabeta:5"
    for name in ("tictactoe", "connect_four"):
        assert isinstance(make_agent("heuristic", name), PolicyAgent)
    for spec, game, message in (
        ("perfect", "connect_four", "plays only tictactoe"),
        ("alphabeta:4", "tictactoe", "plays only connect_four"),
        ("alphabeta", "connect_four", "needs an argument"),
        ("alphabeta:x", "connect_four", "expected a number"),
        ("alphabeta:0", "connect_four", "must be positive"),
        ("heuristic", "chess", "plays only"),
    ):
        with pytest.raises(TlmError, match=message):
            make_agent(spec, game)
    with pytest.raises(TlmError, match="shape"):
        ab.policy(np.zeros((1, 3, 3, 2), dtype=np.int8), np.ones((1, 9), dtype=np.int8))
    assert math.isclose(float(ab.value(*c4_batch([]))[0]), 0.0, abs_tol=0.5)
