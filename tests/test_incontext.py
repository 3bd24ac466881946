"""In-context distillation: series as labelled sequences, the controls, a toy population
learnt in context, same seed same student, resuming after a kill, and bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import students
from arena import TlmError, get_game, make_agent, play_matches
from arena.players.tictactoe import board_keys
from arena.runstate import RunInterrupted
from distill.incontext import make_incontext_config, train_incontext
from distill.incontext_series import (
    ExploringAgent,
    MemoryResetAgent,
    Replay,
    SeriesBatch,
    play_series,
    series_length,
    symmetric_images,
)
from distill.population import TICTACTOE_STYLES, get_population
from distill.presets import config_with_preset
from students.recurrent import DECISION, GAME_END, PAD
from teachers.best_response import SeriesTeacher, best_response, expected_score

GAME = get_game("tictactoe")
ROOT = Path(__file__).resolve().parent.parent


def _student(seed: int = 0) -> students.RecurrentStudentAgent:
    return students.RecurrentStudentAgent(
        students.build_recurrent_student("gru:16", GAME, seed), greedy=False)


def test_the_held_out_families_are_whole_and_exploitable() -> None:
    pop = get_population("tictactoe-styles")
    kinds = {spec.split(",")[0] for spec in pop.held_out}
    assert kinds == {"prefer:left", "prefer:right", "prefer:top", "prefer:bottom"}
    assert not kinds & {spec.split(",")[0] for spec in pop.training}
    # G: the exact best response over perfect against the held-out members, both seats.
    perfect = make_agent("perfect", GAME)
    gaps = []
    for opponent in pop.agents("held_out"):
        response = best_response(opponent).score
        gaps.append(response - (expected_score(perfect, opponent, 0)
                                + expected_score(perfect, opponent, 1)) / 2)
    assert np.mean(gaps) == pytest.approx(0.1922, abs=1e-4)
    with pytest.raises(TlmError, match="unknown population"):
        get_population("nope")


@pytest.mark.parametrize("forced_answers", [0, 2])
def test_a_series_becomes_one_labelled_sequence_in_order(forced_answers: int) -> None:
    opponent = make_agent("prefer:left,p=0.5", GAME)
    teacher = SeriesTeacher(opponent, cautious=True, forced_answers=forced_answers)
    k, n = 4, 40
    batch, scores = play_series(GAME, ExploringAgent(_student(), 0.2), opponent, teacher,
                                n, k, seed=3)
    assert batch.kind.shape == (n, series_length(GAME, k))
    assert ((batch.kind == GAME_END).sum(axis=1) == k).all()
    # The results at the ends of games are the games' scores, in order.
    ends = batch.result[batch.kind == GAME_END].reshape(n, k)
    np.testing.assert_array_equal((ends + 1) / 2, scores)
    # Padding only at the end; every decision a legal position with legal labels.
    for row in batch.kind:
        used = np.flatnonzero(row != PAD)
        assert used[-1] == len(used) - 1
    at = batch.kind == DECISION
    assert (batch.label[at] > 0).all()
    legal = (batch.mask[at].astype(np.int64) * (1 << np.arange(9))).sum(axis=1)
    assert (batch.label[at] & ~legal == 0).all()
    # The labels are those the teacher gives when it follows the series itself, seeing
    # the opponent's moves in the positions as the student does.
    waited = 0
    for s in range(n):
        memory = teacher.initial_memory(1)
        for t in np.flatnonzero(batch.kind[s] != PAD):
            if batch.kind[s, t] == GAME_END:
                memory = teacher.end_game(memory, batch.result[s, t : t + 1])
                continue
            obs = batch.obs[s, t : t + 1]
            _, memory = teacher.act_with_memory(obs, batch.mask[s, t : t + 1],
                                                np.random.default_rng(0), memory)
            trusted = teacher.trusted(memory[:, 2], memory[:, 3] > 0)
            want = teacher.labels(board_keys(obs), memory[:, 0] > 0, trusted)
            assert batch.label[s, t] == want[0]
            waited += int(memory[0, 0] > 0 and not trusted[0])
    # Waiting for the opponent's forced answers changes labels after its errors.
    assert (waited > 0) == (forced_answers > 0)


def test_a_series_seen_through_a_symmetry_is_labelled_alike() -> None:
    # prefer:corners is its own image under every symmetry of the board, so the images
    # of its series are series against it, with its best response's labels.
    opponent = make_agent("prefer:corners,p=0.75", GAME)
    teacher = SeriesTeacher(opponent, cautious=False)
    batch, _ = play_series(GAME, ExploringAgent(_student(), 0.3), opponent, teacher, 16, 3,
                           seed=2)
    which = np.arange(16) % 8
    image = symmetric_images(batch, which, GAME)
    at = image.kind == DECISION
    np.testing.assert_array_equal(image.label[at], teacher.labels(
        board_keys(image.obs[at]), np.zeros(int(at.sum()), dtype=bool)))
    mask, action = image.mask[at], image.action[at].astype(np.int64)
    assert (mask[np.arange(len(action)), action] == 1).all()
    np.testing.assert_array_equal(image.obs[which == 0], batch.obs[which == 0])
    assert not np.array_equal(image.obs[which == 1], batch.obs[which == 1])


def test_a_replay_keeps_the_most_recent_series() -> None:
    opponent = make_agent("random", GAME)
    teacher = SeriesTeacher(opponent, cautious=False)
    batches = [play_series(GAME, _student(), opponent, teacher, 6, 3, seed=s)[0]
               for s in range(3)]
    replay = Replay(10, series_length(GAME, 3), GAME)
    for b in batches:
        replay.add(b)
    assert replay.size == 10
    kept = replay.data.rows(np.arange(10))
    t = kept.kind.shape[1]
    # The first batch went to slots 0-5, the second to 6-9 and 0-1, the third to 2-7:
    # the last ten series, the oldest overwritten.
    np.testing.assert_array_equal(kept.obs[2:8], batches[2].obs[:, :t])
    np.testing.assert_array_equal(kept.kind[[8, 9, 0, 1]], batches[1].kind[2:6, :t])
    assert (batches[2].kind[:, t:] == PAD).all()


def test_exploration_and_the_memory_reset() -> None:
    student = _student()
    opponent = make_agent("perfect", GAME)
    # With epsilon 1 every move is uniformly random, whatever the network says.
    wild = play_matches(GAME, ExploringAgent(student, 1.0), opponent, 40, 1, series=4,
                        record=True)
    tame = play_matches(GAME, ExploringAgent(student, 0.0), opponent, 40, 1, series=4,
                        record=True)
    assert [list(r) for r in wild.records or []] != [list(r) for r in tame.records or []]
    reset = MemoryResetAgent(student)
    memory = student.end_game(student.initial_memory(3), np.array([1.0, 0.0, -1.0]))
    np.testing.assert_array_equal(reset.end_game(memory, np.zeros(3)),
                                  student.initial_memory(3))
    with pytest.raises(TlmError, match="no memory"):
        MemoryResetAgent(opponent)


def _toy(out: Path, seed: int, **fields: object) -> dict:
    """Two opponents whose best responses differ from the first move of game 2 on:
    ``prefer:center`` (open in the center) and ``prefer:corners`` (anywhere else)."""
    pair = ["prefer:center", "prefer:corners"]
    settings = dict(out=out, training=pair, held_out=pair, labels="best", student="gru:32",
                    control="mlp:48x2", series=4, rounds=24, series_per_opponent=64,
                    steps_per_round=50, batch_series=32, lr=3e-3, replay_series=1024,
                    eval_series=20, eval_training_series=0, final_series=300, seed=seed,
                    caution=1.0)
    settings.update(fields)
    return train_incontext(make_incontext_config(**settings))


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_a_two_opponent_population_is_learnt_in_context(tmp_path: Path, seed: int) -> None:
    report = _toy(tmp_path / "out", seed)
    players = report["final"]["players"]
    student = np.array(players["student"]["by_game"])
    control = np.array(players["control"]["by_game"])
    reset = np.array(players["reset"]["by_game"])
    # From game 2 on the recurrent student knows whom it plays (measured over seeds 0-5:
    # 0.72-0.74 after 24 rounds, the oracle 0.736; 0.58-0.61 in game 1, 0.60-0.62 for the
    # feedforward control and 0.57-0.61 with the memory reset).
    assert student[1:].mean() >= 0.68
    assert student[1:].mean() >= student[0] + 0.08
    assert student[1:].mean() >= control[1:].mean() + 0.06
    assert student[1:].mean() >= reset[1:].mean() + 0.06
    assert (tmp_path / "out" / "student" / "model.safetensors").is_file()
    assert {"curve.csv", "curve.png", "report.json", "control"} <= {
        p.name for p in (tmp_path / "out").iterdir()}


def _tiny(out: Path, seed: int = 0, rounds: int = 3) -> dict[str, object]:
    return dict(out=str(out), training=["prefer:center", "noisy:0.5"],
                held_out=["prefer:left"], student="gru:8", control="mlp:8x1", series=3,
                rounds=rounds, series_per_opponent=8, steps_per_round=4, batch_series=8,
                replay_series=64, eval_series=4, eval_training_series=2, final_series=4,
                seed=seed)


def _weights(out: Path) -> bytes:
    return (out / "student" / "model.safetensors").read_bytes()


def test_the_same_seed_gives_the_same_student(tmp_path: Path) -> None:
    a = train_incontext(make_incontext_config(**_tiny(tmp_path / "a")))
    b = train_incontext(make_incontext_config(**_tiny(tmp_path / "b")))
    assert _weights(tmp_path / "a") == _weights(tmp_path / "b")
    assert a["final"] == b["final"]
    # The teacher's own losses are measured beside the students': the cautious response
    # never loses to perfect.
    teacher = a["final"]["teacher_losses"]
    assert set(teacher) == {"perfect", "random"} and teacher["perfect"]["games"] == 12
    assert teacher["perfect"]["first"] == teacher["perfect"]["second"] == 0
    train_incontext(make_incontext_config(**_tiny(tmp_path / "c", seed=1)))
    assert _weights(tmp_path / "c") != _weights(tmp_path / "a")


_RUN = """
import json, sys, torch
torch.set_num_threads(1)
from distill.incontext import make_incontext_config, train_incontext
train_incontext(make_incontext_config(**json.loads(sys.argv[1])))
"""


def test_the_gap_is_the_exact_best_responses_whatever_the_teacher_risks(
        tmp_path: Path) -> None:
    held = "prefer:left,p=0.5"
    report = train_incontext(make_incontext_config(
        **{**_tiny(tmp_path / "out", rounds=1), "held_out": [held], "loss_weight": 2.0}))
    assert report["loss_weight"] == 2.0
    final = report["final"]
    opponent = make_agent(held, get_game("tictactoe"))
    exact, averse = best_response(opponent), best_response(opponent, loss_weight=2.0)
    assert averse.score < exact.score - 1e-3  # the weight changes this teacher's moves
    assert final["best_response"] == pytest.approx(exact.score)
    # The teacher's own curve is the risk-averse one, below the exact response.
    assert final["oracle_by_game"][-1] < exact.score - 1e-3


def test_a_run_killed_mid_way_resumes_to_the_same_student(tmp_path: Path) -> None:
    settings = _tiny(tmp_path / "killed", rounds=6)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", _RUN, json.dumps(settings)], cwd=ROOT,
                            env=env)
    state = tmp_path / ".killed.partial" / "checkpoint" / "state.json"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if state.is_file() and json.loads(state.read_text())["next_round"] >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "killed").exists()
    subprocess.run([sys.executable, "-c", _RUN, json.dumps(settings)], cwd=ROOT, env=env,
                   check=True)
    whole = {**settings, "out": str(tmp_path / "whole")}
    subprocess.run([sys.executable, "-c", _RUN, json.dumps(whole)], cwd=ROOT, env=env,
                   check=True)
    assert _weights(tmp_path / "killed") == _weights(tmp_path / "whole")
    killed = json.loads((tmp_path / "killed" / "report.json").read_text())
    assert killed["final"] == json.loads((tmp_path / "whole" / "report.json").read_text())[
        "final"]


def test_a_checkpoint_of_other_settings_is_refused_and_kept(tmp_path: Path) -> None:
    def stop_now() -> bool:
        return True

    settings = _tiny(tmp_path / "out", rounds=3)
    with pytest.raises(RunInterrupted):
        train_incontext(make_incontext_config(**settings), stop=stop_now)
    stage = tmp_path / ".out.partial"
    assert (stage / "checkpoint" / "state.json").is_file()
    with pytest.raises(TlmError, match="other settings") as info:
        train_incontext(make_incontext_config(**{**settings, "epsilon": 0.3}))
    assert "\n" not in str(info.value)
    assert (stage / "checkpoint" / "state.json").is_file()
    train_incontext(make_incontext_config(**settings))
    assert (tmp_path / "out" / "report.json").is_file() and not stage.exists()


@pytest.mark.parametrize(("fields", "message"), [
    ({"series": 1}, "series"),
    ({"series": 101}, "series"),
    ({"training": ["prefer:middle"]}, "unknown region"),
    ({"held_out": ["minimax:12"]}, "depth"),
    ({"student": "mlp:8x1"}, "recurrent"),
    ({"control": "gru:8"}, "feedforward"),
    ({"game": "connect_four"}, "labels must be best"),
    ({"game": "go9"}, "no opponent population"),
    ({"game": "connect_four", "labels": "best", "population": "tictactoe-styles"},
     "plays tictactoe"),
    ({"population": "nope"}, "unknown population"),
    ({"loss_weight": -1.0}, "loss_weight"),
    ({"forced_answers": -1}, "forced_answers"),
    ({"labels": "best", "forced_answers": 2}, "cautious"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path: Path, fields: dict,
                                                  message: str) -> None:
    out = tmp_path / "out"
    with pytest.raises(TlmError, match=message) as info:
        train_incontext(make_incontext_config(**{**_tiny(out), **fields}))
    assert "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_the_population_members_are_valid_specs() -> None:
    assert len(TICTACTOE_STYLES.agents("training")) == len(TICTACTOE_STYLES.training)
    assert len(TICTACTOE_STYLES.agents("held_out")) == 12


def _tlm(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "scripts.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("method", ["incontext", "incontext-rl"])
@pytest.mark.parametrize("args", [
    ["--series", "1"],
    ["--series", "101"],
    ["--teacher", "perfect"],
    ["--student", "mlp:64x2"],
    ["--workers", "2"],
    ["--forced-answers", "-1"],
    ["--forced-answers", "21"],
])
def test_the_command_refuses_bad_input_in_one_line(tmp_path: Path, method: str,
                                                   args: list[str]) -> None:
    done = _tlm("distill", "--game", "tictactoe", "--method", method, "--out",
                str(tmp_path / "out"), *args, cwd=ROOT)
    assert done.returncode == 2
    assert done.stderr.startswith("error:") and done.stderr.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_a_recurrent_checkpoint_where_a_feedforward_one_is_needed_or_for_another_game(
        tmp_path: Path) -> None:
    path = students.save_student(students.build_recurrent_student("gru:8", GAME, 0),
                                 tmp_path / "gru")
    teach = _tlm("distill", "--game", "tictactoe", "--teacher", str(path), "--out",
                 str(tmp_path / "out"), cwd=ROOT)
    other = _tlm("eval", "--game", "connect_four", "--agent", str(path), "--games", "2",
                 cwd=ROOT)
    for done, message in ((teach, "no policy"), (other, "not connect_four")):
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith("error:") and message in done.stderr
        assert done.stderr.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gru"]


@pytest.mark.parametrize(("method", "step"), [("incontext", "round"),
                                            ("incontext-rl", "iteration")])
def test_ctrl_c_stops_the_command_after_a_round_and_keeps_it(tmp_path: Path, method: str,
                                                             step: str) -> None:
    out = tmp_path / "out"
    args = ["distill", "--game", "tictactoe", "--method", method, "--out", str(out),
            "--budget-games", "1200", "--games-per-round", "300", "--steps-per-round", "2",
            "--eval-games", "10", "--student", "gru:8"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "scripts.cli", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    state = tmp_path / ".out.partial" / "checkpoint" / "state.json"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None and not state.is_file():
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    assert f"interrupted: stopped after {step}" in err
    assert not out.exists() and state.is_file()
    # The kept run is refused to a run of other settings, and kept again.
    done = _tlm(*args, "--seed", "1", cwd=ROOT)
    assert done.returncode == 2 and "other settings" in done.stderr
    assert state.is_file()


def test_rl_advantages_pay_each_game_to_its_last_decision() -> None:
    from distill.incontext_rl import advantages

    batch = SeriesBatch.empty(1, 7, GAME)
    batch.kind[0] = [DECISION, DECISION, GAME_END, DECISION, GAME_END, PAD, PAD]
    batch.result[0, [2, 4]] = [1, -1]
    values = np.array([[0.1, 0.2, 9.0, 0.3, 9.0, 9.0, 9.0]])
    adv, returns = advantages(batch, values, k=2, gamma=1.0, lam=1.0)
    # With lambda 1 the return of a decision is every reward after it: +1/2 - 1/2, then -1/2.
    np.testing.assert_allclose(returns[0, [0, 1, 3]], [0.0, 0.0, -0.5], atol=1e-12)
    np.testing.assert_allclose(adv[0, [0, 1, 3]], [-0.1, -0.2, -0.8], atol=1e-12)
    assert (adv[0, [2, 4, 5, 6]] == 0).all()
    adv0, _ = advantages(batch, values, k=2, gamma=1.0, lam=0.0)
    # With lambda 0 each advantage is one step: r + V(next decision) - V.
    np.testing.assert_allclose(adv0[0, [0, 1, 3]], [0.2 - 0.1, 0.5 + 0.3 - 0.2, -0.5 - 0.3],
                               atol=1e-12)


def test_the_rl_arm_runs_and_the_same_seed_gives_the_same_student(tmp_path: Path) -> None:
    from distill.incontext_rl import make_rl_config, train_incontext_rl

    def run(out: Path) -> dict:
        return train_incontext_rl(make_rl_config(
            out=out, training=["prefer:center", "noisy:0.5"], held_out=["prefer:left"],
            student="gru:8", series=3, iterations=2, series_per_opponent=8, epochs=2,
            minibatch_series=8, eval_series=4, eval_every=1, final_series=4))

    a, b = run(tmp_path / "a"), run(tmp_path / "b")
    assert _weights(tmp_path / "a") == _weights(tmp_path / "b")
    assert a["final"] == b["final"] and a["games"] == 2 * 2 * 8 * 3
    assert set(a["final"]["players"]) == {"student", "reset"}


def test_forced_answers_reach_the_incontext_run_and_only_it(tmp_path: Path) -> None:
    from distill.incontext import incontext_config
    from distill.incontext_rl import incontext_rl_config

    cfg = config_with_preset(game="tictactoe", method="incontext", out=tmp_path / "out",
                             forced_answers=4)
    assert incontext_config(cfg).forced_answers == 4
    preset = incontext_config(config_with_preset(game="tictactoe", method="incontext",
                                                 out=tmp_path / "out"))
    assert preset.forced_answers == 0
    # `tlm distill --method incontext` with no flag runs the in-context config's defaults.
    assert preset == make_incontext_config(out=tmp_path / "out")
    rl = config_with_preset(game="tictactoe", method="incontext-rl", out=tmp_path / "out",
                            forced_answers=4)
    with pytest.raises(TlmError, match="no teacher"):
        incontext_rl_config(rl)
