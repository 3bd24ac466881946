"""Positions files: loading and validating them, and the optimal-move, blunder and
illegal-move rates of agents on positions with known answers."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from arena.agents import RandomAgent, make_agent
from arena.core import Agent, State, TlmError
from arena.games import make_engine
from arena.players.tictactoe import move_values
from arena.positions import (
    ILLEGAL,
    SHIPPED_DIR,
    build_positions,
    evaluate_positions,
    load_positions,
    positions_path,
    shipped_positions,
    write_positions,
)
from scripts.cli import main

SOLVED_CSV = positions_path("connect_four_solved")


def tictactoe_positions(n: int, seed: int) -> tuple[list[list[int]], np.ndarray]:
    """``n`` positions of random tic-tac-toe play, labelled by the exact solver."""
    rng = np.random.default_rng(seed)
    eng = make_engine("tictactoe")
    moves: list[list[int]] = []
    scores: list[np.ndarray] = []
    while len(moves) < n:
        state = eng.reset(1)
        played: list[int] = []
        stop = int(rng.integers(0, 8))
        for _ in range(stop):
            mask = eng.legal_mask(state)[0]
            a = int(rng.choice(np.flatnonzero(mask)))
            state, _, done = eng.step(state, np.array([a]))
            played.append(a)
            if done[0]:
                break
        if eng.done(state)[0]:
            continue
        obs, mask = eng.observe(state)
        values = move_values(obs)[0].astype(np.int64)
        moves.append(played)
        scores.append(np.where(mask[0] != 0, values, ILLEGAL))
    return moves, np.stack(scores)


@pytest.fixture(scope="module")
def ttt_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    moves, scores = tictactoe_positions(300, seed=1)
    path = tmp_path_factory.mktemp("positions") / "ttt.csv"
    write_positions(path, build_positions("tictactoe", moves, scores))
    return path


def test_perfect_player_is_perfect_on_tictactoe_positions(ttt_file: Path) -> None:
    positions = load_positions(ttt_file, "tictactoe")
    assert len(positions) == 300 and positions.scores.shape == (300, 9)
    perfect = evaluate_positions(make_agent("perfect", "tictactoe"), positions,
                                 np.random.default_rng(0))
    assert perfect["optimal"]["rate"] == 1.0 and perfect["blunders"]["count"] == 0
    assert perfect["illegal"]["count"] == 0
    lo, hi = perfect["optimal"]["ci95"]
    assert 0.98 < lo < hi == pytest.approx(1.0)
    rand = evaluate_positions(RandomAgent(), positions, np.random.default_rng(0))
    assert rand["optimal"]["rate"] < 0.9 and rand["blunders"]["count"] > 10
    again = evaluate_positions(RandomAgent(), positions, np.random.default_rng(0))
    assert again == rand


def test_round_trip_keeps_every_position(ttt_file: Path, tmp_path: Path) -> None:
    positions = load_positions(ttt_file, "tictactoe")
    copy = write_positions(tmp_path / "copy.csv", positions)
    assert copy.read_text() == ttt_file.read_text()


def test_connect_four_solved_file() -> None:
    positions = load_positions(SOLVED_CSV, "connect_four")
    assert len(positions) == 400 and positions.obs.shape == (400, 6, 7, 2)
    rand = evaluate_positions(RandomAgent(), positions, np.random.default_rng(0))
    ab = evaluate_positions(make_agent("alphabeta:4", "connect_four"), positions,
                            np.random.default_rng(0))
    # Measured: random 0.24 optimal / 0.38 blunders; alphabeta:4 0.90 / 0.03.
    assert rand["optimal"]["rate"] < 0.35 and rand["blunders"]["rate"] > 0.3
    assert ab["optimal"]["rate"] > 0.85 and ab["blunders"]["rate"] < 0.06


class IllegalAgent(Agent):
    """Plays the first action whatever the mask says."""

    name = "illegal"

    def act(self, obs: np.ndarray, mask: np.ndarray, rng: np.random.Generator,
            state: State | None = None) -> np.ndarray:
        return np.zeros(len(mask), dtype=np.int64)


def test_illegal_moves_are_counted(ttt_file: Path) -> None:
    positions = load_positions(ttt_file, "tictactoe")
    r = evaluate_positions(IllegalAgent(), positions, np.random.default_rng(0))
    illegal = positions.mask[:, 0] == 0
    assert r["illegal"]["count"] == int(illegal.sum()) > 0
    not_lost = positions.best >= 0
    assert r["blunders"]["count"] >= int((illegal & not_lost).sum())
    assert r["optimal"]["count"] <= int((~illegal).sum())


def test_search_agents_get_the_state() -> None:
    positions = load_positions(SOLVED_CSV, "connect_four").take(np.arange(0, 400, 4))
    assert len(positions) == 100 and positions.state.ply.tolist() == [
        len(m) for m in positions.moves]
    mcts = make_agent("mcts:50", "connect_four")
    r = evaluate_positions(mcts, positions, np.random.default_rng(0))
    assert r["positions"] == 100
    assert r["illegal"]["count"] == 0 and r["optimal"]["rate"] > 0.3


def test_cli_reports_positions(capsys: pytest.CaptureFixture[str], ttt_file: Path) -> None:
    code = main(["eval", "--game", "tictactoe", "--agent", "perfect", "--games", "10",
                 "--positions", str(ttt_file), "--json"])
    out, _ = capsys.readouterr()
    assert code == 0
    report = json.loads(out)["positions"]
    assert report["positions"] == 300 and report["optimal"]["rate"] == 1.0
    assert report["blunders"]["ci95"][0] == pytest.approx(0.0)
    code = main(["eval", "--game", "connect_four", "--agent", "random", "--games", "10",
                 "--positions", str(SOLVED_CSV)])
    out, _ = capsys.readouterr()
    assert code == 0 and "optimal moves" in out and "blunders" in out


def test_shipped_positions_go_by_name(capsys: pytest.CaptureFixture[str]) -> None:
    path = positions_path("connect_four_solved")
    assert path.is_file() and path.parent == SHIPPED_DIR
    assert shipped_positions() == {"connect_four_solved": path}
    assert positions_path(str(path)) == path  # a path stays a path
    assert load_positions("connect_four_solved", "connect_four").moves == \
        load_positions(path, "connect_four").moves
    code = main(["eval", "--game", "connect_four", "--agent", "heuristic", "--games", "4",
                 "--positions", "connect_four_solved", "--json"])
    out, _ = capsys.readouterr()
    assert code == 0
    report = json.loads(out)["positions"]
    assert report["positions"] == 400 and report["source"] == str(path)
    # The connect-four presets measure on it, wherever tlm is installed.
    from distill.iterate_config import iterate_config_with_preset
    from distill.presets import config_with_preset

    for config in (config_with_preset(game="connect_four", out="unused"),
                   iterate_config_with_preset(game="connect_four", out="unused")):
        assert config.positions is not None and positions_path(config.positions) == path


UNKNOWN_NAME = {
    "eval": ["eval", "--game", "connect_four", "--agent", "random", "--games", "4"],
    "distill": ["distill", "--game", "connect_four", "--budget-games", "4",
                "--games-per-round", "4", "--out", "{out}"],
    "adaptive": ["distill", "--game", "connect_four", "--method", "adaptive", "--teacher",
                 "alphabeta:2", "--out", "{out}"],
    "iterate": ["iterate", "--game", "connect_four", "--iterations", "1", "--out", "{out}"],
}


@pytest.mark.parametrize("command", sorted(UNKNOWN_NAME))
def test_an_unknown_positions_name_is_one_line_listing_the_known_ones(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    argv = [a.replace("{out}", str(out)) for a in UNKNOWN_NAME[command]]
    assert main([*argv, "--positions", "connect_four_unsolved"]) == 2
    printed, err = capsys.readouterr()
    assert err == ("error: unknown positions 'connect_four_unsolved': known names are "
                   "connect_four_solved (or give the path of a positions file)\n")
    assert "Traceback" not in printed
    assert list(tmp_path.iterdir()) == []


HEADER = "moves," + ",".join(f"score_c{i}" for i in range(7))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (HEADER.replace("score_c3", "score_x3") + "\n4453,0,0,0,0,0,0,0\n", "header must be"),
        ("moves," + ",".join(f"score_c{i}" for i in range(9)) + "\n5,0,0,0,0,0,0,0,0,0\n",
         "9 score columns, but connect_four has 7"),
        (HEADER + "\n4453,0,0,0,0,0,0,0\n44,0,0,0\n", "line 3: 4 fields, expected 8"),
        (HEADER + "\n4453,0,0,zero,0,0,0,0\n", "line 2: scores must be integers"),
        (HEADER + "\n4453,0,0,99999999999999999999,0,0,0,0\n", "line 2: scores must lie"),
        (HEADER + "\n44a3,0,0,0,0,0,0,0\n", "moves must be digits 1-7"),
        (HEADER + "\n4483,0,0,0,0,0,0,0\n", "moves must be digits 1-7"),
        (HEADER + "\n4444444,0,0,0,0,0,0,0\n", "line 2: move 7 (4) is illegal"),
        (HEADER + "\n1212121,0,0,0,0,0,0,0\n", "the game is over"),
        (HEADER + "\n444444,0,0,0,0,0,0,0\n", "score_c3 is 0 but action 3 is illegal"),
        (HEADER + "\n", "no positions"),
        ("", "empty file"),
    ],
)
def test_malformed_files_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(TlmError, match=re.escape(message)):
        load_positions(path, "connect_four")
    code = main(["eval", "--game", "connect_four", "--agent", "random", "--games", "4",
                 "--positions", str(path)])
    _, err = capsys.readouterr()
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and message.split(":")[-1] in err


def test_other_game_files_and_missing_files_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], ttt_file: Path
) -> None:
    code = main(["eval", "--game", "tictactoe", "--agent", "random", "--games", "4",
                 "--positions", str(SOLVED_CSV)])
    _, err = capsys.readouterr()
    assert code == 2 and "7 score columns, but tictactoe has 9" in err
    shutil.copy(ttt_file, tmp_path / "ttt.csv")
    with pytest.raises(TlmError, match="9 score columns"):
        load_positions(tmp_path / "ttt.csv", "connect_four")
    code = main(["eval", "--game", "connect_four", "--agent", "random", "--games", "4",
                 "--positions", str(tmp_path / "missing.csv")])
    _, err = capsys.readouterr()
    assert code == 2 and err.startswith("error: cannot read positions file")
