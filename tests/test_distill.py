"""Distillation runs: determinism, fresh students, outputs, bad input, and (slow) DAgger
reaching perfect tic-tac-toe."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from arena import TlmError, make_agent
from distill import distill, make_config
from scripts.cli import main
from students import build_student, load_net
from teachers.generate import generate_dataset


def small_config(out: Path, **overrides):
    fields = dict(
        game="tictactoe", teacher="perfect", student="mlp:32x1", method="dagger",
        budget_games=40, games_per_round=20, seed=3, out=out, eval_games=20,
        holdout_games=10, steps_per_round=20,
    )
    return make_config(**{**fields, **overrides})


def test_same_seed_same_student(tmp_path: Path) -> None:
    distill(small_config(tmp_path / "a"))
    distill(small_config(tmp_path / "b"))
    distill(small_config(tmp_path / "c", seed=4))
    wa = load_file(tmp_path / "a" / "student" / "model.safetensors")
    wb = load_file(tmp_path / "b" / "student" / "model.safetensors")
    wc = load_file(tmp_path / "c" / "student" / "model.safetensors")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)


def test_outputs_curve_and_report(tmp_path: Path) -> None:
    out = tmp_path / "run"
    report = distill(small_config(out))
    assert (out / "student" / "model.safetensors").is_file()
    assert (out / "curve.png").stat().st_size > 1000
    assert any((out / "tensorboard").iterdir())
    with open(out / "curve.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["teacher_games"]) for r in rows] == [20, 40]
    assert {"exhaustive_losses", "optimal_accuracy", "agreement", "score_vs_random"} <= set(rows[0])
    saved = json.loads((out / "report.json").read_text())
    assert saved["teacher_games"] == report["teacher_games"] == 40
    assert saved["student_params"] == sum(p.numel() for p in load_net(out / "student").parameters())
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_student_starts_fresh_not_from_teacher_weights(tmp_path: Path) -> None:
    # A trained student becomes the teacher of a second student of the same spec and seed.
    distill(small_config(tmp_path / "teacher", student="mlp:32x1", seed=5))
    teacher_weights = load_net(tmp_path / "teacher" / "student").state_dict()
    fresh = build_student("mlp:32x1", "tictactoe", seed=5).state_dict()
    assert any(not torch.equal(teacher_weights[k], fresh[k]) for k in fresh)
    teacher = make_agent(str(tmp_path / "teacher" / "student"), "tictactoe")
    assert teacher.game == "tictactoe"
    teacher_path = str(tmp_path / "teacher" / "student")
    report = distill(small_config(tmp_path / "student", teacher=teacher_path, seed=5,
                                  budget_games=20))
    assert report["teacher_games"] == 20


def test_offline_from_a_generated_dataset(tmp_path: Path) -> None:
    teacher = make_agent("perfect", "tictactoe")
    data = generate_dataset("tictactoe", teacher, 60, tmp_path / "data", seed=1)
    report = distill(small_config(tmp_path / "run", method="offline", dataset=data,
                                  budget_games=60, games_per_round=30))
    assert report["teacher_games"] == 60
    # Perfect against perfect plays 9 plies a game; repeated positions are kept once.
    assert report["positions_reached"] == 60 * 9
    from teachers.datasets import load_dataset

    obs = load_dataset(data).obs
    assert report["positions"] == len({o.tobytes() for o in obs}) < 60 * 9


def test_bad_input(tmp_path: Path) -> None:
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "x").write_text("keep")
    with pytest.raises(TlmError, match="already exists"):
        distill(small_config(occupied))
    assert (occupied / "x").read_text() == "keep"
    with pytest.raises(TlmError, match="budget_games"):
        small_config(tmp_path / "o", budget_games=0)
    with pytest.raises(TlmError, match="method"):
        small_config(tmp_path / "o", method="magic")
    with pytest.raises(TlmError, match="extra|not permitted"):
        make_config(game="tictactoe", teacher="perfect", out=tmp_path / "o", colour="red")
    with pytest.raises(TlmError, match="plays only connect_four"):
        distill(small_config(tmp_path / "o", teacher="alphabeta:2"))
    c4 = generate_dataset("connect_four", make_agent("random", "connect_four"), 3,
                          tmp_path / "c4", seed=0)
    with pytest.raises(TlmError, match="is for connect_four, not tictactoe"):
        distill(small_config(tmp_path / "o", method="offline", dataset=c4))
    with pytest.raises(TlmError, match="offline method only"):
        distill(small_config(tmp_path / "o", dataset=c4))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c4", "occupied"]


def test_cli_distill_with_yaml_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "run.yaml"
    cfg.write_text(
        "game: tictactoe\nteacher: perfect\nstudent: mlp:32x1\nmethod: dagger\n"
        "budget_games: 20\ngames_per_round: 20\neval_games: 10\nholdout_games: 5\n"
    )
    code = main(["distill", "--config", str(cfg), "--out", str(tmp_path / "out"), "--seed", "1"])
    out = capsys.readouterr().out
    assert code == 0
    assert "teacher-labelled games" in out and "exhaustive losses" in out
    assert json.loads((tmp_path / "out" / "report.json").read_text())["seed"] == 1
    bad = tmp_path / "bad.yaml"
    bad.write_text("game: tictactoe\nteacher: perfect\nbogus_key: 1\n")
    code = main(["distill", "--config", str(bad), "--out", str(tmp_path / "out2")])
    assert code == 2
    assert "bogus_key" in capsys.readouterr().err


@pytest.mark.slow
def test_dagger_reaches_perfect_tictactoe(tmp_path: Path) -> None:
    from distill.presets import TICTACTOE_DAGGER

    report = distill(make_config(**{**TICTACTOE_DAGGER, "out": tmp_path / "run", "seed": 0}))
    assert report["perfect_at_games"] is not None
    assert report["perfect_at_games"] <= 500
    assert report["final"]["exhaustive_losses"] == 0
    assert report["final"]["score_vs_random"] > 0.9
