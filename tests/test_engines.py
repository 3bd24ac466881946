"""The fast engines play exactly the rules of the original PettingZoo envs.

Random games are played move by move on a batched engine and on one original env
per game, comparing observations, masks, the seat to move, rewards and termination
at every step; tables of known positions pin down wins on every line, draws, full
columns, illegal moves and the no-op step of a finished game.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from arena.agents import RandomAgent
from arena.core import Engine, IllegalActionError, TlmError
from arena.engines import ConnectFourEngine, TicTacToeEngine
from arena.engines.connect_four import four_in_a_row
from arena.engines.tictactoe import LINES
from arena.games import get_game
from arena.matches import play_matches

ENGINES: dict[str, type[TicTacToeEngine] | type[ConnectFourEngine]] = {
    "tictactoe": TicTacToeEngine, "connect_four": ConnectFourEngine,
}

# A 42-move connect-four game that fills the board with no four in a row.
C4_DRAW = [
    6, 5, 4, 2, 4, 4, 4, 1, 3, 3, 1, 0, 3, 4, 2, 3, 5, 1, 2, 4, 3,
    0, 1, 5, 5, 5, 5, 1, 1, 0, 0, 6, 3, 6, 6, 2, 2, 6, 0, 6, 2, 0,
]
# A full tic-tac-toe board with no line:  X O X / X O O / O X X  (squares 0..8).
TTT_DRAW = [0, 1, 2, 4, 3, 5, 7, 6, 8]


def _play(engine: Engine, moves: list[int]) -> tuple[object, list[np.ndarray], np.ndarray]:
    """Play ``moves`` in one game; return the final state, each step's rewards, done."""
    state = engine.reset(1)
    rewards = []
    done = engine.done(state)
    for a in moves:
        state, r, done = engine.step(state, np.array([a]))
        rewards.append(r[0])
    return state, rewards, done


@pytest.mark.parametrize(("game", "n_games"), [("tictactoe", 2000), ("connect_four", 1000)])
def test_random_games_match_the_original_env_move_by_move(game: str, n_games: int) -> None:
    g = get_game(game)
    engine = g.make_engine()
    assert type(engine) is ENGINES[game]
    rng = np.random.default_rng(12345)
    envs = [g.make_reference_env() for _ in range(n_games)]
    for env in envs:
        env.reset()
    agents = envs[0].possible_agents
    state = engine.reset(n_games, seed=0)
    live = np.ones(n_games, dtype=bool)
    steps = 0
    while live.any():
        obs, mask = engine.observe(state)
        assert obs.dtype == np.int8 and obs.shape == (n_games, *engine.obs_shape)
        assert mask.dtype == np.int8 and mask.shape == (n_games, engine.num_actions)
        assert np.array_equal(engine.legal_mask(state), mask)
        assert not mask[~live].any(), "finished games must have an all-zero mask"
        to_play = engine.to_play(state)
        # Finished rows get random actions, legal or not: the engine must ignore them.
        actions = rng.integers(-2, engine.num_actions + 2, n_games)
        for i in np.flatnonzero(live):
            env = envs[i]
            ref = env.observe(env.agent_selection)
            assert np.array_equal(obs[i], ref["observation"]), (i, steps)
            assert np.array_equal(mask[i], ref["action_mask"]), (i, steps)
            assert to_play[i] == agents.index(env.agent_selection)
            other = agents[1 - to_play[i]]
            assert np.array_equal(obs[i][..., ::-1], env.observe(other)["observation"])
            actions[i] = rng.choice(np.flatnonzero(ref["action_mask"]))
            env.step(int(actions[i]))
        state, rewards, done = engine.step(state, actions)
        assert rewards.dtype == np.float32 and rewards.shape == (n_games, 2)
        assert done.dtype == np.bool_
        assert not rewards[~live].any(), "finished games must get zero reward"
        for i in np.flatnonzero(live):
            env = envs[i]
            for seat, agent in enumerate(agents):
                assert rewards[i, seat] == env.rewards[agent], (i, steps)
            assert done[i] == all(env.terminations.values())
            assert not any(env.truncations.values())
        assert np.array_equal(engine.done(state), done)
        live &= ~done
        steps += 1
    assert steps == (9 if game == "tictactoe" else max(len(C4_DRAW), steps))


def _ttt_win(line: tuple[int, int, int], winner: int) -> list[int]:
    """Moves in which ``winner`` completes ``line`` last and the other seat makes no line."""
    rest = [s for s in range(9) if s not in line]
    if winner == 0:
        return [line[0], rest[0], line[1], rest[1], line[2]]
    for other in itertools.combinations(rest, 3):
        if not any(set(lo) <= set(other) for lo in LINES):
            return [other[0], line[0], other[1], line[1], other[2], line[2]]
    raise AssertionError("no filler found")


@pytest.mark.parametrize("winner", [0, 1])
@pytest.mark.parametrize("line", LINES)
def test_tictactoe_every_winning_line(line: tuple[int, int, int], winner: int) -> None:
    engine = TicTacToeEngine()
    moves = _ttt_win(line, winner)
    state, rewards, done = _play(engine, moves)
    assert done[0] and engine.winner(state)[0] == winner
    expected = np.array([1, -1] if winner == 0 else [-1, 1], dtype=np.float32)
    assert np.array_equal(rewards[-1], expected)
    assert not np.any(rewards[:-1])
    assert not engine.legal_mask(state).any()
    # The same game on the original env ends the same way.
    env = get_game("tictactoe").make_reference_env()
    env.reset()
    for a in moves:
        env.step(a)
    assert all(env.terminations.values())
    assert [env.rewards[a] for a in env.possible_agents] == expected.tolist()


def test_tictactoe_full_board_draw() -> None:
    engine = TicTacToeEngine()
    state, rewards, done = _play(engine, TTT_DRAW[:-1])
    assert not done[0]
    assert engine.legal_mask(state)[0].tolist() == [0] * 8 + [1]
    state, r, done = engine.step(state, np.array([8]))
    assert done[0] and not r.any() and engine.winner(state)[0] == -1
    assert engine.board(state)[0].tolist() == [1, 2, 1, 1, 2, 2, 2, 1, 1]


def test_tictactoe_observation_is_from_the_movers_point_of_view() -> None:
    engine = TicTacToeEngine()
    state, _, _ = _play(engine, [5])  # X on square 5 = obs[1, 2]
    obs, mask = engine.observe(state)
    assert engine.to_play(state)[0] == 1
    assert obs[0, 1, 2].tolist() == [0, 1]  # O to move: X's mark is the opponent's
    assert obs[0].sum() == 1
    assert mask[0].tolist() == [1, 1, 1, 1, 1, 0, 1, 1, 1]
    state, _, _ = engine.step(state, np.array([0]))
    obs, _ = engine.observe(state)
    assert obs[0, 1, 2].tolist() == [1, 0] and obs[0, 0, 0].tolist() == [0, 1]


def test_tictactoe_enumerates_every_reachable_position() -> None:
    assert TicTacToeEngine().num_positions == 5478


# Connect four: columns are actions; obs row 0 is the top, so the bottom row is 5.
C4_WINS = {
    "horizontal": ([0, 0, 1, 1, 2, 2, 3], 0, [(5, 0), (5, 1), (5, 2), (5, 3)]),
    "vertical": ([6, 0, 6, 0, 6, 0, 5, 0], 1, [(5, 0), (4, 0), (3, 0), (2, 0)]),
    "diagonal_up": (
        [0, 1, 1, 2, 2, 3, 2, 3, 3, 6, 3], 0, [(5, 0), (4, 1), (3, 2), (2, 3)]
    ),
    "diagonal_down": (
        [6, 5, 5, 4, 4, 3, 4, 3, 3, 0, 3], 0, [(5, 6), (4, 5), (3, 4), (2, 3)]
    ),
    "horizontal_top_right": (
        [1, 3, 4, 5, 6, 6, 5, 0, 6, 1, 4, 6, 2, 0, 5, 1, 3, 4, 4, 0, 6, 3, 6, 5, 3, 4, 1,
         5, 4, 3, 3, 1, 5],
        0, [(0, 3), (0, 4), (0, 5), (0, 6)],
    ),
}


@pytest.mark.parametrize("case", sorted(C4_WINS))
def test_connect_four_wins(case: str) -> None:
    moves, winner, cells = C4_WINS[case]
    engine = ConnectFourEngine()
    before, _, done = _play(engine, moves[:-1])
    assert not done[0]
    state, rewards, done = _play(engine, moves)
    assert done[0] and engine.winner(state)[0] == winner
    expected = [1.0, -1.0] if winner == 0 else [-1.0, 1.0]
    assert rewards[-1].tolist() == expected
    assert not np.any(rewards[:-1])
    assert not engine.legal_mask(state).any()
    board = engine.board(state)[0]
    assert all(board[r, c] == winner + 1 for r, c in cells)
    env = get_game("connect_four").make_reference_env()
    env.reset()
    for a in moves:
        env.step(a)
    assert [env.rewards[a] for a in env.possible_agents] == expected
    assert np.array_equal(np.array(env.unwrapped.board).reshape(6, 7), board)


def test_connect_four_full_board_draw() -> None:
    engine = ConnectFourEngine()
    state, rewards, done = _play(engine, C4_DRAW[:-1])
    assert not done[0]
    assert engine.legal_mask(state)[0].tolist() == [1, 0, 0, 0, 0, 0, 0]
    state, r, done = engine.step(state, np.array([0]))
    assert done[0] and not r.any() and engine.winner(state)[0] == -1
    assert not np.any(rewards)
    assert (engine.board(state) > 0).all()
    assert not engine.legal_mask(state).any()


def test_connect_four_full_column_is_masked_out_and_illegal() -> None:
    engine = ConnectFourEngine()
    state, _, done = _play(engine, [3] * 6)
    assert not done[0]
    assert engine.legal_mask(state)[0].tolist() == [1, 1, 1, 0, 1, 1, 1]
    assert engine.board(state)[0, :, 3].tolist() == [2, 1, 2, 1, 2, 1]
    with pytest.raises(IllegalActionError, match="full"):
        engine.step(state, np.array([3]))


def test_connect_four_observation_rows_start_at_the_top() -> None:
    engine = ConnectFourEngine()
    state, _, _ = _play(engine, [2, 2, 5])
    obs, _ = engine.observe(state)
    # seat 1 to move: its stone (2, second from the bottom) is plane 0
    assert obs[0, 4, 2].tolist() == [1, 0]
    assert obs[0, 5, 2].tolist() == [0, 1] and obs[0, 5, 5].tolist() == [0, 1]
    assert obs[0].sum() == 3


def test_four_in_a_row_does_not_wrap_between_columns() -> None:
    # heights 3, 4, 5 of column 0 and height 0 of column 1 are consecutive bits
    # apart from the guard bit; no line may be seen across it.
    stones = np.array([(0b111 << 3) | (1 << 7)], dtype=np.uint64)
    assert not four_in_a_row(stones)[0]
    assert four_in_a_row(np.array([0b1111 << 2], dtype=np.uint64))[0]


@pytest.mark.parametrize("game", sorted(ENGINES))
def test_stepping_a_finished_game_is_a_no_op(game: str) -> None:
    engine = ENGINES[game]()
    moves = TTT_DRAW if game == "tictactoe" else C4_WINS["vertical"][0]
    state, _, done = _play(engine, moves)
    assert done[0]
    before = engine.clone(state)
    for a in (-1, 0, engine.num_actions, 10**6):
        state, r, done = engine.step(state, np.array([a]))
        assert done[0] and not r.any()
        assert all(np.array_equal(x, y) for x, y in zip(before, state, strict=True))


@pytest.mark.parametrize("game", sorted(ENGINES))
def test_illegal_actions_in_live_games_raise(game: str) -> None:
    engine = ENGINES[game]()
    state, _, _ = _play(engine, [0] * (1 if game == "tictactoe" else 6))
    for bad in (-1, engine.num_actions, 0):
        actions = np.array([bad, 1])
        two = engine.concat([state, engine.reset(1)])
        with pytest.raises(IllegalActionError):
            engine.step(two, actions)
    with pytest.raises(TlmError, match="actions"):
        engine.step(state, np.array([1, 2]))


@pytest.mark.parametrize("game", sorted(ENGINES))
def test_take_and_clone_are_independent_copies(game: str) -> None:
    engine = ENGINES[game]()
    state = engine.from_moves([[0], [1, 2], [2], [3, 4, 5]])
    ref = engine.clone(state)
    part = engine.take(state, np.array([3, 1]))
    assert np.array_equal(engine.observe(part)[0], engine.observe(state)[0][[3, 1]])
    stepped, _, _ = engine.step(engine.take(state, np.array([3, 1])), np.array([6, 6]))
    assert np.array_equal(engine.to_play(stepped), [0, 1])
    copy = engine.clone(state)
    for field in (*copy, *part):
        field[...] = 0  # scribbling on a copy's arrays leaves the original alone
    assert all(np.array_equal(x, y) for x, y in zip(ref, state, strict=True))
    assert np.array_equal(engine.observe(state)[0], engine.observe(ref)[0])
    assert not engine.observe(copy)[0].any()


@pytest.mark.parametrize("game", sorted(ENGINES))
def test_from_moves_equals_stepping_and_rejects_bad_games(game: str) -> None:
    engine = ENGINES[game]()
    moves = [[], [4], [4, 0, 2]]
    state = engine.from_moves(moves)
    for i, m in enumerate(moves):
        stepped, _, _ = _play(engine, m)
        assert np.array_equal(engine.observe(stepped)[0][0], engine.observe(state)[0][i])
        assert engine.to_play(state)[i] == len(m) % 2
    finished = TTT_DRAW if game == "tictactoe" else C4_WINS["vertical"][0]
    with pytest.raises(IllegalActionError, match="over"):
        engine.from_moves([finished + [1]])
    with pytest.raises(IllegalActionError, match="illegal"):
        engine.from_moves([[engine.num_actions]])


@pytest.mark.parametrize("game", sorted(ENGINES))
def test_render_shows_marks_and_numbers(game: str) -> None:
    engine = ENGINES[game]()
    state = engine.from_moves([[0, 4]])
    text = engine.render(state, 0)
    assert "X" in text and "O" in text and "X (seat 0) to play" in text
    if game == "tictactoe":
        # Square a is drawn in column a // 3, row a % 3, as tictactoe_v3 draws it;
        # free squares show their action number.
        assert text.splitlines()[0] == " X | 3 | 6"
        assert text.splitlines()[2] == " 1 | O | 7"
    else:
        lines = text.splitlines()
        assert lines[5] == "X . . . O . ."
        assert lines[6] == "0 1 2 3 4 5 6"


@pytest.mark.parametrize("game", sorted(ENGINES))
def test_play_matches_records_replay_identically_on_the_original_env(game: str) -> None:
    g = get_game(game)
    result = play_matches(g, RandomAgent(), RandomAgent(), 200, seed=7, record=True)
    assert result.records is not None
    for k in range(result.n_games):
        env = g.make_reference_env()
        env.reset()
        for a in result.records[k]:
            env.step(int(a))
        assert all(env.terminations.values())
        seat_a = int(result.seat_a[k])
        agents = env.possible_agents
        assert result.returns[k, 0] == env.rewards[agents[seat_a]]
        assert result.returns[k, 1] == env.rewards[agents[1 - seat_a]]


def test_connect_four_state_is_small() -> None:
    engine = ConnectFourEngine()
    state = engine.reset(1000)
    assert sum(f.nbytes for f in state) / 1000 <= 32
