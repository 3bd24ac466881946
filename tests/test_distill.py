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
    report = distill(small_config(out, panel=True))
    assert (out / "student" / "model.safetensors").is_file()
    assert (out / "curve.png").stat().st_size > 1000
    assert any((out / "tensorboard").iterdir())
    with open(out / "curve.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["teacher_games"]) for r in rows] == [20, 40]
    assert {"exhaustive_losses", "optimal_accuracy", "agreement", "score_vs_random",
            "score_vs_perfect", "panel_elo", "panel_elo_lo", "play_s", "label_s", "fit_s",
            "eval_s"} <= set(rows[0])
    assert float(rows[-1]["panel_elo_lo"]) <= float(rows[-1]["panel_elo"])
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
    with pytest.raises(TlmError, match="kickstart labels no store of positions"):
        small_config(tmp_path / "o", method="kickstart", keep_positions=True)
    with pytest.raises(TlmError, match="colour: unknown key"):
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
def test_help_example_reaches_perfect_tictactoe(tmp_path: Path) -> None:
    # `tlm distill --help`'s example: the tic-tac-toe preset, no other flag. Every seed
    # reaches perfect play well inside the budget (scripts/bench_recipes.py), but when it
    # does is the seed's and the CPU's business, so only that it does is asserted.
    from distill.presets import TICTACTOE_DAGGER

    out = tmp_path / "ttt-dagger"
    assert main(["distill", "--game", "tictactoe", "--teacher", "perfect", "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["student"] == TICTACTOE_DAGGER["student"]
    assert report["final"]["exhaustive_losses"] == 0  # no lost line against any reply
    # The run stopped at its first perfect round, within the budget.
    assert report["perfect_at_games"] == report["teacher_games"] <= TICTACTOE_DAGGER[
        "budget_games"]
    assert report["final"]["losses_vs_random"] == 0 == report["final"]["losses_vs_heuristic"]


def test_mix_labels_every_position_reached_once(tmp_path: Path) -> None:
    import numpy as np

    from arena import get_game
    from distill.collect import Openings, collect_round, split_games
    from distill.store import PositionStore
    from students import StudentAgent

    g = get_game("tictactoe")
    teacher = make_agent("perfect", g)
    student = StudentAgent(build_student("mlp:16x1", g, seed=0))
    mix = {"student": 2.0, "random": 1.0, "heuristic": 1.0}
    assert split_games(10, mix) == {"student": 5, "random": 3, "heuristic": 2}
    stores = []
    for _ in range(2):
        store = PositionStore(g)
        first = collect_round(g, teacher, student, mix, 40, seed=7, store=store, rnd=0,
                              epsilon=0.2, openings=Openings(0, 3))
        second = collect_round(g, teacher, student, mix, 40, seed=8, store=store, rnd=1)
        stores.append(store)
    a, b = stores
    assert np.array_equal(a.obs, b.obs) and np.array_equal(a.count, b.count)
    # Every position reached is counted; each distinct one labelled once, by the teacher.
    assert first.games == second.games == 40
    assert int(a.count.sum()) == first.reached + second.reached
    assert first.labelled + second.labelled == len(a)
    assert len({k for k in a.keys(a.obs)}) == len(a)
    assert np.allclose(a.probs, teacher.policy(a.obs, a.mask), atol=1e-6)
    assert set(np.unique(a.last_round)) == {0, 1}
    # The empty board opens every game without random opening plies.
    empty = a.lookup(a.keys(np.zeros((1, 3, 3, 2), dtype=a.obs.dtype)))[0]
    assert a.count[empty] >= 40


def test_mix_and_opening_range_are_validated(tmp_path: Path) -> None:
    from distill.collect import parse_mix

    assert parse_mix("student=0.5, alphabeta:2=0.25") == {"student": 0.5, "alphabeta:2": 0.25}
    for bad, match in (("student", "SPEC=WEIGHT"), ("random=x", "not a number")):
        with pytest.raises(TlmError, match=match):
            parse_mix(bad)
    with pytest.raises(TlmError, match="mix"):
        small_config(tmp_path / "o", mix={"random": -1.0})
    with pytest.raises(TlmError, match="opening_plies_max"):
        small_config(tmp_path / "o", opening_plies=3, opening_plies_max=1)
    with pytest.raises(TlmError, match="unknown agent|spec"):
        distill(small_config(tmp_path / "o", mix={"nobody": 1.0}))
    assert not (tmp_path / "o").exists()


def test_each_round_takes_a_bounded_number_of_steps(tmp_path: Path) -> None:
    report = distill(small_config(tmp_path / "run", budget_games=60, steps_per_round=15))
    rows = report["final"]
    assert rows["round"] == 2
    assert set(report["time"]) == {"play_s", "label_s", "fit_s", "eval_s"}
    with open(tmp_path / "run" / "curve.csv") as f:
        curve = list(csv.DictReader(f))
    # The aggregate grows, the work of a round does not: 15 steps each.
    assert [int(r["positions"]) for r in curve] == sorted(int(r["positions"]) for r in curve)
    assert all(float(r["fit_s"]) > 0 for r in curve)


def test_cli_defaults_are_the_game_preset(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    from distill.presets import TICTACTOE_DAGGER, config_with_preset

    cfg = config_with_preset(game="tictactoe", teacher="perfect", out=tmp_path / "o")
    assert cfg.student == TICTACTOE_DAGGER["student"] and cfg.stop_when_perfect
    cfg = config_with_preset(game="tictactoe", teacher="perfect", out=tmp_path / "o",
                             student="mlp:8x1")
    assert cfg.student == "mlp:8x1" and cfg.epsilon == TICTACTOE_DAGGER["epsilon"]
    code = main(["distill", "--help"])
    assert code == 0
    help_text = capsys.readouterr().out
    assert "tictactoe: mlp:128x2" in help_text and "default 500" in help_text


@pytest.mark.slow
def test_short_connect_four_distillation_beats_heuristic_more_than_untrained(
    tmp_path: Path,
) -> None:
    from arena import evaluate
    from students import StudentAgent, load_student

    settings = dict(
        game="connect_four", teacher="alphabeta:4", student="cnn:32x2", method="dagger",
        budget_games=600, games_per_round=200, steps_per_round=150, batch_size=128,
        beta0=0.0, mix={"student": 0.5, "heuristic": 0.25, "random": 0.25},
        opening_plies_max=6, epsilon=0.05, eval_games=20, eval_opponents=["random"],
        holdout_games=0, seed=0, out=tmp_path / "c4",
    )
    distill(make_config(**settings))
    trained = load_student(tmp_path / "c4" / "student")
    untrained = StudentAgent(build_student("cnn:32x2", "connect_four", seed=0))
    heuristic = make_agent("heuristic", "connect_four")
    scores = [
        next(r.score for r in evaluate("connect_four", agent, [heuristic], 200, seed=3,
                                       opening_plies=2) if r.seat == "both")
        for agent in (trained, untrained)
    ]
    assert scores[0] > scores[1] + 0.2, scores
