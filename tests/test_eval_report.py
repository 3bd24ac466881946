"""The evaluation report as a library call: ``tlm eval --json`` prints exactly what
:func:`arena.eval_report` returns, every section included."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import arena
from arena.players.tictactoe import move_values
from arena.positions import ILLEGAL, build_positions, load_positions, write_positions
from scripts.cli import main


def tictactoe_positions_file(path: Path) -> Path:
    """A few tic-tac-toe positions labelled by the exact solver, written as a file."""
    moves = [[], [4], [0, 4], [4, 0, 8], [0, 1, 3]]
    engine = arena.make_engine("tictactoe")
    scores = []
    for line in moves:
        state = engine.reset(1)
        for a in line:
            state, _, _ = engine.step(state, np.array([a]))
        obs, mask = engine.observe(state)
        scores.append(np.where(mask[0] != 0, move_values(obs)[0].astype(np.int64), ILLEGAL))
    return write_positions(path, build_positions("tictactoe", moves, np.stack(scores)))


def test_the_cli_json_is_the_library_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from teachers import generate_dataset
    from teachers.datasets import load_dataset

    game = arena.get_game("tictactoe")
    data = generate_dataset(game, arena.PerfectTicTacToe(), 10, tmp_path / "data",
                            seed=0)
    positions = tictactoe_positions_file(tmp_path / "ttt.csv")
    code = main(["eval", "--game", "tictactoe", "--agent", "heuristic", "--opponents",
                 "random,perfect", "--games", "16", "--seed", "3", "--opening-plies", "1",
                 "--panel", "--agreement", str(data), "--positions", str(positions),
                 "--out", str(tmp_path / "report.json"), "--json"])
    out, _ = capsys.readouterr()
    assert code == 0
    held_out = load_dataset(data, game)
    report = arena.eval_report(
        game, arena.make_agent("heuristic", game),
        [arena.make_agent("random", game), arena.make_agent("perfect", game)], 16, seed=3,
        opening_plies=1, panel=True,
        teacher_labels=arena.TeacherLabels("perfect", held_out.obs, held_out.mask,
                                           held_out.probs),
        positions=load_positions(positions, game),
    )
    library = json.loads(json.dumps(report.to_json()))
    assert json.loads(out) == library
    assert json.loads((tmp_path / "report.json").read_text()) == library
    assert list(library) == ["game", "agent", "results", "panel", "exact", "agreement",
                             "positions"]
    assert [(r["opponent"], r["seat"]) for r in library["results"]] == [
        (o, s) for o in ("random", "perfect") for s in ("first", "second", "both")]
    assert library["agreement"]["positions"] == len(held_out)
    assert library["positions"]["positions"] == 5


def test_the_report_has_only_what_the_game_and_the_caller_give() -> None:
    game = arena.get_game("connect_four")
    report = arena.eval_report(game, arena.make_agent("heuristic", game),
                               [arena.make_agent("random", game)], 6, seed=1)
    assert list(report.to_json()) == ["game", "agent", "results"]
    assert report.to_json() == arena.eval_report(
        game, arena.make_agent("heuristic", game), [arena.make_agent("random", game)], 6,
        seed=1, shard_games=2).to_json()


def test_bad_requests_fail_before_any_game() -> None:
    leduc = arena.get_game("leduc_holdem")
    player = arena.make_agent("random", leduc)
    with pytest.raises(arena.TlmError, match="no standard panel for leduc_holdem"):
        arena.eval_report(leduc, player, [player], 10**12, panel=True)
    with pytest.raises(arena.TlmError, match="no opponents"):
        arena.eval_report(leduc, player, [], 4)
    with pytest.raises(arena.TlmError, match="opening plies must be >= 0"):
        arena.eval_report(leduc, player, [player], 4, opening_plies=-1)
