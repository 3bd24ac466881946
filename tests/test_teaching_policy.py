"""The learned teacher: its teaching policy (features, model, file), its training by the
cross-entropy method, and ``--method learned``.

- the features a training run's student runs compute are those ``tlm distill --method
  learned`` computes with the same policy, student and seed, round by round;
- save -> load -> the same choices;
- on a toy population where one strategy is clearly best, training learns to choose it;
- bad policy files (another game, other strategies, damaged, foreign): one ``error:``
  line, exit 2, nothing written;
- same seed, same policy (here and on two Ray workers); killed, resumed, the same policy.
"""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from arena import TlmError
from arena.runstate import staging_path
from distill import distill, make_config
from distill.teaching_policy import (
    TeachingPolicy,
    TeachingState,
    feature_names,
    load_policy,
    shipped_policy,
    teaching_features,
)
from distill.teaching_train import (
    RunContext,
    StudentRun,
    make_train_config,
    teach_student,
    train_teaching_policy,
)
from scripts.cli import main

ROOT = Path(__file__).resolve().parents[1]
ARMS = ["teacher", "dagger", "panel", "openings2", "uncertain"]
SMALL_RUNS = {"games_per_round": 5, "steps_per_round": 10, "budget_games": 20,
              "label_budget": 200}
"""Student runs of four rounds of five games: a few tenths of a second each."""


def random_policy(seed: int, strategies: list[str] = ARMS, hidden: list[int] | None = None
                  ) -> TeachingPolicy:
    template = TeachingPolicy.zeros(strategies, ["tictactoe"], hidden)
    theta = np.random.default_rng(seed).normal(0, 2, template.size())
    return template.with_vector(theta).as_float32()


# ------------------------------------------------------------------ the policy itself


def test_features_lie_in_range_and_follow_the_state() -> None:
    state = TeachingState(probe=0.9, probe_before=0.85, goal_gap=0.4, labels=300,
                          label_budget=5000, round=6, rounds=30, entropy=0.3,
                          agreement=(0.5, 0.9, 0.95, 0.8, 0.7))
    f = teaching_features(state)
    assert f.shape == (len(feature_names(ARMS)),)
    assert f[0] == 0.9 and math.isclose(f[1], 0.5) and f[2] == 0.4
    assert math.isclose(f[3], math.log1p(300) / math.log1p(5000))
    assert math.isclose(f[4], 0.2) and f[5] == 0.3
    assert list(f[6:]) == [0.5, 0.9, 0.95, 0.8, 0.7]
    wild = TeachingState(probe=0.1, probe_before=0.9, goal_gap=3.0, labels=10**9,
                         label_budget=10, round=99, rounds=30, entropy=2.0,
                         agreement=(0.0,) * 5)
    assert (np.abs(teaching_features(wild)) <= 1).all()


def test_save_load_gives_the_same_choices(tmp_path: Path) -> None:
    for hidden in ([], [8]):
        policy = random_policy(1, hidden=hidden)
        policy.info = {"note": "test"}
        policy.save(tmp_path / f"p{len(hidden)}")
        for name in (f"p{len(hidden)}", f"p{len(hidden)}.json", f"p{len(hidden)}.safetensors"):
            back = load_policy(tmp_path / name)
            assert back.strategies == ARMS and back.games == ["tictactoe"]
            assert back.hidden == hidden and back.info == {"note": "test"}
            rng = np.random.default_rng(0)
            for _ in range(50):
                f = rng.uniform(-1, 1, len(policy.features))
                assert np.array_equal(back.mixture(f), policy.mixture(f))


def test_a_static_mixture_is_a_policy_that_ignores_the_state() -> None:
    policy = TeachingPolicy.constant({"dagger": 3.0, "panel": 1.0, "uncertain": 0.0},
                                     ["tictactoe"])
    for f in np.random.default_rng(0).uniform(-1, 1, (5, len(policy.features))):
        assert np.allclose(policy.mixture(f), [0.75, 0.25, 0.0], atol=1e-9)


def test_the_shipped_tictactoe_policy_loads() -> None:
    path = shipped_policy("tictactoe")
    assert path is not None
    policy = load_policy(path)
    assert policy.games == ["tictactoe"] and policy.strategies == [*ARMS, "refute", "review"]
    assert policy.info["student_runs"] > 0 and shipped_policy("go9") is None


# --------------------------------------------------- the same features in training and use


def test_training_runs_compute_the_features_tlm_distill_computes(tmp_path: Path) -> None:
    """One student run as the trainer plays it and the same run through the command line
    (same policy, student and seed): the same features, mixtures and labels every round,
    and ``labels_to_target`` in the report."""
    config = make_train_config(game="tictactoe", teacher="perfect", out=tmp_path / "unused",
                               **SMALL_RUNS)
    from distill.teaching_train import run_config

    settings = {k: v for k, v in run_config(config, tmp_path / "x", student="mlp:16x1")
                .model_dump().items() if k not in ("student", "seed", "out", "teaching_policy")}
    policy = random_policy(3)
    context = RunContext(settings, ARMS, ["tictactoe"], [], [], teach_student)
    run = StudentRun(tuple(float(x) for x in policy.vector()), "mlp:16x1", 11)
    trained = teach_student(context, run, keep_rounds=True)
    policy.save(tmp_path / "policy")
    out = tmp_path / "used"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the trainer's runs: the same floating-point sums
    try:
        code = main(["distill", "--game", "tictactoe", "--teacher", "perfect", "--method",
                     "learned", "--teaching-policy", str(tmp_path / "policy.json"),
                     "--student", "mlp:16x1", "--seed", "11", "--games-per-round", "5",
                     "--steps-per-round", "10", "--budget-games", "20", "--label-budget",
                     "200", "--out", str(out)])
    finally:
        torch.set_num_threads(threads)
    assert code == 0
    with open(out / "curve.csv") as f:
        used = list(csv.DictReader(f))
    assert len(used) == len(trained["curve"]) >= 2
    names = [f"f_{n}" for n in policy.features] + [f"share_{a}" for a in ARMS]
    for row_used, row_trained in zip(used, trained["curve"], strict=True):
        for key in names:
            assert float(row_used[key]) == pytest.approx(row_trained[key], abs=1e-12), key
        assert int(row_used["labelled"]) == row_trained["labelled"]
    report = json.loads((out / "report.json").read_text())
    assert report["labels_to_target"] == trained["labels_to_target"]
    reached = report["reached"]
    assert report["labels_to_target"] == (reached["labels"] if reached else None)
    # the mixture every round is the policy's mixture of that round's features
    for row in trained["curve"]:
        f = np.array([row[f"f_{n}"] for n in policy.features])
        assert np.allclose(policy.mixture(f), [row[f"share_{a}"] for a in ARMS])


# ------------------------------------------------------------------ learning to choose


def toy_teach(context: RunContext, run: StudentRun) -> dict[str, Any]:
    """A toy student: ``panel`` moves it 0.25 of the way to its goal a round for 10
    labels, every other strategy 0.04 for 30; the target is met at 1. Features come from
    :func:`teaching_features`, as in a real run."""
    policy = context.policy(run.theta)
    rng = np.random.default_rng(run.seed)
    progress, labels, before = 0.0, 0, 0.0
    gain = {a: (0.25, 10) if a == "panel" else (0.04, 30) for a in context.strategies}
    shares_sum = np.zeros(len(context.strategies))
    for rnd in range(30):
        state = TeachingState(probe=progress, probe_before=before, goal_gap=1 - progress,
                              labels=labels, label_budget=2000, round=rnd, rounds=30,
                              entropy=1 - progress,
                              agreement=tuple(progress for _ in context.strategies))
        shares = policy.mixture(teaching_features(state))
        shares_sum += shares
        before = progress
        progress += sum(s * gain[a][0] for s, a in zip(shares, context.strategies,
                                                        strict=True)) * rng.uniform(0.8, 1.2)
        labels += round(sum(s * gain[a][1] for s, a in zip(shares, context.strategies,
                                                            strict=True)))
        if progress >= 1:
            break
    return {"labels_to_target": labels if progress >= 1 else None, "labels": labels,
            "wall_s": 0.0, "shares": dict(zip(context.strategies,
                                              (shares_sum / (rnd + 1)).tolist(), strict=True))}


def test_training_learns_to_choose_the_strategy_that_teaches_best(tmp_path: Path) -> None:
    config = make_train_config(game="tictactoe", teacher="perfect", out=tmp_path / "toy",
                               arms=["teacher", "dagger", "panel"], generations=10,
                               population=8, elites=3, pairs=2, seed=4, label_budget=2000,
                               warm_start=False)
    report = train_teaching_policy(config, teach=toy_teach)
    curve = report["curve"]
    assert curve[-1]["share_panel"] > 0.9 > curve[0]["share_panel"]
    # all panel: 4 or 5 rounds of about 10 labels; the uniform mixture: about 200
    assert curve[-1]["policy_median_labels"] <= 60 < curve[0]["policy_median_labels"]
    policy = load_policy(tmp_path / "toy")
    start = TeachingState(probe=0, probe_before=0, goal_gap=1, labels=0, label_budget=2000,
                          round=0, rounds=30, entropy=1, agreement=(0.0, 0.0, 0.0))
    assert policy.mixture(teaching_features(start))[2] > 0.9
    with open(tmp_path / "toy" / "curve.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["generation"]) for r in rows] == list(range(11))
    assert (tmp_path / "toy" / "curve.png").is_file()


def phased_teach(context: RunContext, run: StudentRun) -> dict[str, Any]:
    """A toy student whose best strategy changes as it learns: ``teacher`` moves it 0.2
    of the way a round for 10 labels while it is under halfway, 0.05 after; ``panel``
    the other way round; ``dagger`` 0.04 for 20 throughout. ``teacher`` alone needs
    about 110 labels, ``panel`` alone 130, the uniform mixture 140, a policy that
    switches at halfway 50."""
    policy = context.policy(run.theta)
    rng = np.random.default_rng(run.seed)
    progress, labels, before = 0.0, 0.0, 0.0
    shares_sum = np.zeros(len(context.strategies))
    for rnd in range(40):
        state = TeachingState(probe=progress, probe_before=before, goal_gap=1 - progress,
                              labels=round(labels), label_budget=2000, round=rnd, rounds=40,
                              entropy=1 - progress,
                              agreement=tuple(progress for _ in context.strategies))
        shares = policy.mixture(teaching_features(state))
        shares_sum += shares
        early = progress < 0.5
        gain = {"teacher": 0.2 if early else 0.05, "panel": 0.05 if early else 0.2,
                "dagger": 0.04}
        cost = {"teacher": 10, "panel": 10, "dagger": 20}
        before = progress
        progress += sum(s * gain[a] for s, a in zip(shares, context.strategies, strict=True)
                        ) * rng.uniform(0.9, 1.1)
        labels += sum(s * cost[a] for s, a in zip(shares, context.strategies, strict=True))
        if progress >= 1:
            break
    return {"labels_to_target": round(labels) if progress >= 1 else None,
            "labels": round(labels), "wall_s": 0.0,
            "shares": dict(zip(context.strategies, (shares_sum / (rnd + 1)).tolist(),
                               strict=True))}


def test_a_warm_start_begins_at_the_best_strategy_and_learns_what_beats_it(
    tmp_path: Path,
) -> None:
    """Generation 0 tries the uniform mixture and each strategy alone; the method starts
    from the fittest and ends with a policy that switches strategy as the student learns,
    which no fixed strategy does (the method's seeds 0-3 here: 0.58x to 0.63x the best
fixed strategy's labels)."""
    config = make_train_config(game="tictactoe", teacher="perfect", out=tmp_path / "warm",
                               arms=["teacher", "dagger", "panel"], generations=12,
                               population=10, elites=3, pairs=2, seed=1, label_budget=2000)
    report = train_teaching_policy(config, teach=phased_teach)
    warm, last = report["curve"][0], report["curve"][-1]
    assert warm["candidates"] == 4 and len(report["curve"]) == 14
    best_fixed = warm["best_geomean_labels"]
    tried = report["warm_start"]
    assert list(tried) == ["uniform", "teacher", "dagger", "panel"]
    assert min(tried, key=tried.__getitem__) == "teacher" and tried["teacher"] == best_fixed
    assert 90 < best_fixed < 130 < tried["uniform"]
    assert report["curve"][1]["policy_geomean_labels"] == pytest.approx(best_fixed, rel=0.2)
    assert last["policy_median_labels"] < 0.85 * best_fixed
    policy = load_policy(tmp_path / "warm")

    def mixture(progress: float) -> np.ndarray:
        state = TeachingState(probe=progress, probe_before=progress, goal_gap=1 - progress,
                              labels=50, label_budget=2000, round=5, rounds=40,
                              entropy=1 - progress, agreement=(progress,) * 3)
        return policy.mixture(teaching_features(state))

    early, late = mixture(0.1), mixture(0.9)  # shares of teacher, dagger, panel
    assert early[0] > 0.6 and late[2] > early[2] + 0.15 and late[0] < early[0] - 0.15


# ------------------------------------------------------------------ bad input


def write_policy(path: Path, **meta: Any) -> Path:
    """A good policy at ``path`` with ``meta`` fields of its JSON replaced."""
    random_policy(0).save(path)
    data = json.loads(path.with_suffix(".json").read_text())
    data.update(meta)
    path.with_suffix(".json").write_text(json.dumps(data))
    return path.with_suffix(".json")


def bad_policies(tmp_path: Path) -> dict[str, tuple[Path, list[str], str]]:
    """``{case: (policy path, extra flags, a piece of the error line)}``."""
    cases: dict[str, tuple[Path, list[str], str]] = {}
    cases["other game"] = (write_policy(tmp_path / "c4", games=["connect_four"]), [],
                           "trained on connect_four, not tictactoe")
    two = TeachingPolicy.zeros(["dagger", "panel"], ["tictactoe"])
    two.save(tmp_path / "two")
    cases["other strategies"] = (tmp_path / "two.json", ["--arms", "dagger,uncertain"],
                                 "knows the strategies dagger, panel")
    unknown = TeachingPolicy.zeros(["dagger", "lecture"], ["tictactoe"])
    unknown.save(tmp_path / "unknown")
    cases["unknown strategy"] = (tmp_path / "unknown.json", [], "unknown strategy 'lecture'")
    features = feature_names(ARMS)
    cases["other features"] = (write_policy(tmp_path / "feat", features=features[::-1]), [],
                               "this tlm computes")
    cases["version"] = (write_policy(tmp_path / "ver", format_version=9), [],
                        "format version 9")
    cut = write_policy(tmp_path / "cut")
    weights = cut.with_suffix(".safetensors")
    weights.write_bytes(weights.read_bytes()[:40])
    cases["truncated weights"] = (cut, [], "damaged weights")
    shapes = write_policy(tmp_path / "shapes", hidden=[4])
    cases["weights of another shape"] = (shapes, [], "damaged weights")
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    cases["not JSON"] = (garbage, [], "not readable JSON")
    foreign = tmp_path / "student.json"
    foreign.write_text(json.dumps({"format": "tlm-student", "format_version": 1}))
    cases["foreign"] = (foreign, [], "is not a teaching policy")
    cases["missing"] = (tmp_path / "nowhere.json", [], "no teaching policy at")
    return cases


def test_bad_teaching_policies_are_one_error_line_and_nothing_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for case, (path, extra, message) in bad_policies(tmp_path).items():
        out = tmp_path / "runs" / case.replace(" ", "_")
        capsys.readouterr()
        code = main(["distill", "--game", "tictactoe", "--teacher", "perfect", "--method",
                     "learned", "--teaching-policy", str(path), "--out", str(out), *extra])
        err = capsys.readouterr().err.strip()
        assert code == 2, case
        assert err.startswith("error: ") and len(err.splitlines()) == 1, (case, err)
        assert message in err, (case, err)
        assert not out.exists() and not staging_path(out).exists(), case
        if case not in ("other game", "other strategies", "unknown strategy"):
            capsys.readouterr()
            assert main(["teaching-policy", "show", str(path)]) == 2, case
            err = capsys.readouterr().err.strip()
            assert err.startswith("error: ") and len(err.splitlines()) == 1, (case, err)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_a_training_run_of_unknown_strategies_is_one_error_line_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bad"
    code = main(["teaching-policy", "train", "--game", "tictactoe", "--arms",
                 "refute,lecture", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""  # no progress bar: nothing started
    err = captured.err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1
    assert "unknown strategy 'lecture'" in err
    assert not out.exists() and not staging_path(out).exists()


def test_a_policy_of_another_game_transfers_only_when_asked(tmp_path: Path) -> None:
    from arena import get_game
    from distill.learned import policy_arms

    policy = random_policy(0)
    assert policy_arms(policy, get_game("connect_four"), transfer=False) == ARMS
    assert policy_arms(policy, get_game("connect_four"), transfer=True) == [
        "teacher", "dagger", "panel", "openings4", "uncertain"]
    with pytest.raises(TlmError, match="elites"):
        make_train_config(game="tictactoe", teacher="perfect", out=tmp_path, population=1,
                          elites=3)


def test_a_transferred_policy_gives_refutes_share_to_the_others_where_it_is_lacking(
    tmp_path: Path,
) -> None:
    """The shipped tic-tac-toe policy on connect four: ``refute`` is unavailable there,
    so every round's games go to the other six strategies, in the policy's proportions."""
    from arena import get_game
    from distill.learned import Unavailable, learned_strategy
    from distill.presets import SOLVED_POSITIONS

    c4 = get_game("connect_four")
    config = make_config(game="connect_four", teacher="alphabeta:2", method="learned",
                         teaching_policy=shipped_policy("tictactoe"), transfer_policy=True,
                         positions=SOLVED_POSITIONS, target=0.5,
                         games_per_round=20, budget_games=20, steps_per_round=2,
                         student="mlp:16x1", out=tmp_path / "c4", seed=0)
    strategy = learned_strategy(config, c4)
    assert [type(a) is Unavailable for a in strategy.arms] == [False] * 5 + [True, False]
    report = distill(config)
    with open(tmp_path / "c4" / "curve.csv") as f:
        row = next(csv.DictReader(f))
    assert float(row["share_refute"]) == 0.0
    assert sum(float(v) for k, v in row.items() if k.startswith("share_")) == pytest.approx(1.0)
    assert report["labels_spent"] > 0


# ------------------------------------------------------------------ the training command


TRAIN = ["teaching-policy", "train", "--game", "tictactoe", "--students", "mlp:8x1,mlp:16x1",
         "--arms", "dagger,refute",
         "--generations", "2", "--population", "2", "--elites", "1", "--pairs", "1",
         "--games-per-round", "5", "--steps-per-round", "5", "--budget-games", "15",
         "--label-budget", "100", "--seed", "3"]
"""Ten student runs of three rounds of five games: three a generation (the warm start's
policy and its two strategies alone, then the policy and two candidates), one last."""


def policy_files(out: Path) -> tuple[bytes, bytes]:
    return (out / "policy.safetensors").read_bytes(), (out / "policy.json").read_bytes()


@pytest.mark.slow
def test_same_seed_same_policy_here_and_on_ray_workers(tmp_path: Path) -> None:
    assert main([*TRAIN, "--out", str(tmp_path / "here")]) == 0
    assert main([*TRAIN, "--out", str(tmp_path / "ray"), "--workers", "2"]) == 0
    assert policy_files(tmp_path / "here") == policy_files(tmp_path / "ray")
    report = json.loads((tmp_path / "here" / "report.json").read_text())
    assert [r["generation"] for r in report["curve"]] == [0, 1, 2, 3]
    assert (tmp_path / "here" / "curve.png").is_file()


def checkpointed_runs(out: Path) -> int:
    state = staging_path(out) / "checkpoint" / "state.json"
    try:
        info = json.loads(state.read_text())
    except (OSError, ValueError):
        return -1
    return int(info["generation"]) * 3 + len(info["partial"])


@pytest.mark.slow
def test_a_killed_training_run_resumes_to_the_same_policy(tmp_path: Path) -> None:
    assert main([*TRAIN, "--out", str(tmp_path / "plain")]) == 0
    out = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "scripts.cli", *TRAIN, "--out", str(out)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while checkpointed_runs(out) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists() and checkpointed_runs(out) >= 2
    assert main([*TRAIN, "--out", str(out)]) == 0
    assert policy_files(out) == policy_files(tmp_path / "plain")
