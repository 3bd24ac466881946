"""Teaching strategies and the bandit that picks them: the bandit moves toward the arm
with the larger reward, a strategy's cost counts only new labels, the uncertain
strategy labels only its share of what it reaches; every strategy runs through the one
round loop, and ``--method adaptive`` takes the flags the other methods take."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from arena import PerfectTicTacToe, TlmError, get_game
from distill import distill, make_config
from distill.presets import ADAPTIVE, config_with_preset
from distill.store import PositionStore
from distill.strategies import (
    Adaptive,
    Exp3,
    FromDataset,
    Games,
    Teaching,
    Uncertain,
    make_arm,
    standard_strategies,
    strategy_for,
)
from scripts.cli import main
from students import StudentAgent, build_student, load_net


def test_bandit_weights_move_toward_the_larger_reward() -> None:
    rng = np.random.default_rng(0)
    bandit = Exp3(3, gamma=0.2)
    assert np.allclose(bandit.probabilities(), 1 / 3)
    means = [0.2, 0.3, 0.8]
    for _ in range(300):
        arm = bandit.draw(rng)
        bandit.update(arm, float(rng.random() < means[arm]))
    p = bandit.probabilities()
    assert p.argmax() == 2 and p[2] > 0.6
    assert p.min() >= 0.2 / 3 - 1e-12  # exploration keeps every arm alive
    with pytest.raises(TlmError):
        bandit.update(0, 1.5)


def teaching(store: PositionStore) -> Teaching:
    g = store.game
    net = build_student("mlp:16x1", g, seed=0)
    return Teaching(game=g, teacher=PerfectTicTacToe(), student=StudentAgent(net),
                    sampler=StudentAgent(net, greedy=False), store=store)


def test_strategy_cost_counts_only_new_labels() -> None:
    g = get_game("tictactoe")
    store = PositionStore(g)
    t = teaching(store)
    by_name = {s.name: s for s in standard_strategies(g)}
    first = by_name["dagger"].collect(t, 0, 20, 1)
    assert first is not None and first.labelled == len(store) > 0
    again = by_name["dagger"].collect(t, 1, 20, 1)  # the same games
    assert again is not None and again.labelled == 0

    fresh, quarter = PositionStore(g), PositionStore(g)
    everything = Uncertain("all", share=1.0).collect(teaching(fresh), 0, 20, 2).labelled
    some = Uncertain("some", share=0.25).collect(teaching(quarter), 0, 20, 2).labelled
    assert everything == len(fresh) and some == len(quarter)
    assert 0 < some <= np.ceil(0.25 * everything)


def test_unknown_strategy_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TlmError, match="unknown strategy"):
        make_arm("nosuch")
    with pytest.raises(TlmError, match="unknown strategy 'nosuch'"):
        distill(make_config(game="tictactoe", teacher="perfect", method="adaptive",
                            arms=["dagger", "nosuch"], out=tmp_path / "o"))
    assert not (tmp_path / "o").exists()


def test_adaptive_distill_bad_flags_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert main(["distill", "--method", "adaptive", "--game", "tictactoe",
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "--teacher" in err and "\n" not in err
    assert main(["distill", "--method", "adaptive", "--game", "tictactoe",
                 "--teacher", "nosuch", "--out", str(out)]) == 2
    assert not out.exists()
    capsys.readouterr()
    # Off tic-tac-toe the probe needs solved positions: one line, nothing written.
    assert main(["distill", "--method", "adaptive", "--game", "go9", "--teacher", "random",
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "--positions" in err and "\n" not in err
    assert main(["distill", "--method", "adaptive", "--game", "tictactoe", "--teacher",
                 "perfect", "--arms", "dagger,bogus", "--out", str(out)]) == 2
    assert "unknown strategy 'bogus'" in capsys.readouterr().err
    assert not out.exists()


def test_methods_are_strategies_of_one_loop() -> None:
    g = get_game("tictactoe")
    base = dict(game="tictactoe", teacher="perfect", out="unused")
    dagger = strategy_for(make_config(**base, mix={"student": 1, "random": 1}, beta0=0.5), g)
    assert isinstance(dagger, Games) and dagger.mix == {"student": 1, "random": 1}
    assert dagger.beta0 == 0.5 and not dagger.sample_student
    offline = strategy_for(make_config(**base, method="offline"), g)
    assert isinstance(offline, Games) and offline.self_play_teacher
    from teachers.datasets import Positions

    assert isinstance(strategy_for(make_config(**base, method="offline"), g,
                                   Positions.empty(g)), FromDataset)
    adaptive = strategy_for(make_config(**base, method="adaptive", mix={"random": 1.0},
                                        epsilon=0.1), g)
    assert isinstance(adaptive, Adaptive)
    assert [a.name for a in adaptive.arms] == ["teacher", "dagger", "panel", "openings2",
                                               "uncertain"]
    arms = {a.name: a for a in adaptive.arms}
    assert isinstance(arms["dagger"], Games) and arms["dagger"].mix == {"random": 1.0}
    assert arms["panel"].epsilon == 0.1 and arms["openings2"].openings.low == 2
    with pytest.raises(TlmError, match="not a strategy"):
        strategy_for(make_config(**base, method="kickstart"), g)


def small(out: Path, **overrides: object) -> dict[str, object]:
    return {"game": "tictactoe", "teacher": "perfect", "student": "mlp:16x1",
            "budget_games": 30, "games_per_round": 10, "steps_per_round": 10,
            "eval_games": 10, "holdout_games": 0, "seed": 2, "out": out, **overrides}


@pytest.mark.parametrize("arm", ["teacher", "dagger", "panel", "openings2", "uncertain"])
def test_each_arm_runs_alone_through_the_loop(tmp_path: Path, arm: str) -> None:
    report = distill(make_config(**small(tmp_path / arm, method="adaptive", arms=[arm],
                                         budget_games=20)))
    with open(tmp_path / arm / "curve.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["strategy"] for r in rows] == [arm] * 2
    assert [float(r[f"p_{arm}"]) for r in rows] == [1.0] * 2
    assert report["choices"] == {arm: 2}
    assert report["labels_spent"] == sum(int(r["labelled"]) for r in rows) > 0
    assert {"optimal_accuracy", "reward", "fit_s", "eval_s"} <= set(rows[0])


def test_adaptive_preset_and_shared_flags(tmp_path: Path) -> None:
    # Without flags, today's adaptive settings; every shared flag overrides them.
    cfg = config_with_preset(game="tictactoe", teacher="perfect", method="adaptive",
                             out=tmp_path / "o")
    for key in ("student", "budget_games", "games_per_round", "steps_per_round"):
        assert getattr(cfg, key) == ADAPTIVE[key]
    assert cfg.beta0 == 0 and cfg.stop_when_perfect and cfg.eval_opponents == []
    assert config_with_preset(game="connect_four", teacher="alphabeta:2", method="adaptive",
                              out=tmp_path / "o").positions is not None
    cfg = config_with_preset(game="tictactoe", teacher="perfect", method="adaptive",
                             out=tmp_path / "o", student="mlp:8x1", lr=1e-3,
                             mix={"random": 1.0}, games_per_round=7)
    assert (cfg.student, cfg.lr, cfg.mix, cfg.games_per_round) == (
        "mlp:8x1", 1e-3, {"random": 1.0}, 7)

    # --student, --lr and --mix reach the run: the student's size, its steps, its games.
    runs = {
        "base": small(tmp_path / "base", method="adaptive", arms=["dagger"]),
        "student": small(tmp_path / "student", method="adaptive", arms=["dagger"],
                         student="mlp:8x1"),
        "lr": small(tmp_path / "lr", method="adaptive", arms=["dagger"], lr=1e-4),
        "mix": small(tmp_path / "mix", method="adaptive", arms=["dagger"],
                     mix={"random": 1.0}),
    }
    reports = {name: distill(make_config(**fields)) for name, fields in runs.items()}
    nets = {name: load_net(tmp_path / name / "student") for name in runs}
    assert reports["student"]["student"] == "mlp:8x1"
    assert nets["student"].spec == "mlp:8x1" and nets["base"].spec == "mlp:16x1"
    weights = {name: load_file(tmp_path / name / "student" / "model.safetensors")
               for name in ("base", "lr", "mix")}
    for other in ("lr", "mix"):
        assert not all(torch.equal(weights["base"][k], weights[other][k])
                       for k in weights["base"])
    # The mix changes the games: random's play reaches other positions than the student's.
    assert reports["mix"]["positions"] != reports["base"]["positions"]


def test_adaptive_cli_takes_the_shared_flags(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert main(["distill", "--method", "adaptive", "--game", "tictactoe", "--teacher",
                 "perfect", "--student", "mlp:8x1", "--lr", "0.001", "--mix", "random=1",
                 "--epsilon", "0.2", "--games-per-round", "5", "--steps-per-round", "5",
                 "--budget-games", "10", "--arms", "dagger,panel", "--seed", "3",
                 "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    config = report["config"]
    assert (config["student"], config["lr"], config["mix"], config["epsilon"]) == (
        "mlp:8x1", 0.001, {"random": 1.0}, 0.2)
    assert config["arms"] == ["dagger", "panel"] and report["teacher_games"] == 10
    assert set(report["choices"]) <= {"dagger", "panel"}
    shown = capsys.readouterr().out
    assert "round=0" in shown and "strategies chosen" in shown


def test_every_strategy_resumes_a_stopped_run_to_the_same_student(tmp_path: Path) -> None:
    from arena.runstate import RunInterrupted, staging_path
    from teachers.generate import generate_dataset

    data = generate_dataset("tictactoe", PerfectTicTacToe(), 30, tmp_path / "data", seed=1)
    runs = {
        "adaptive": small(tmp_path, method="adaptive"),
        "dataset": small(tmp_path, method="offline", dataset=data),
        "dagger": small(tmp_path, method="dagger", epsilon=0.2),
    }
    for name, fields in runs.items():
        whole = distill(make_config(**{**fields, "out": tmp_path / f"{name}-whole"}))
        out = tmp_path / f"{name}-stopped"
        cfg = make_config(**{**fields, "out": out})
        stops = 0
        while True:
            try:
                resumed = distill(cfg, stop=lambda: True)
                break
            except RunInterrupted:
                stops += 1
                assert staging_path(out).is_dir() and not out.exists()
        assert stops == 2, name  # three rounds, a stop after each of the first two
        a = load_file(tmp_path / f"{name}-whole" / "student" / "model.safetensors")
        b = load_file(out / "student" / "model.safetensors")
        assert all(torch.equal(a[k], b[k]) for k in a), name
        strip = [json.dumps({k: v for k, v in r.items() if not k.endswith("_s")})
                 for r in (whole["final"], resumed["final"])]  # NaN equals NaN as text
        assert strip[0] == strip[1], name
        assert resumed.get("choices") == whole.get("choices")
