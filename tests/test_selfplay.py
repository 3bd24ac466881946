"""The one self-play loop (teachers.selfplay): its opponents (mix, snapshot pool), and
resuming: a run checkpoints every round; a run interrupted (in process, or ``tlm teach``
killed with ``kill -9``) and started again ends with the same weights, bit for bit, as a
run never stopped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from stable_baselines3.common.callbacks import BaseCallback

from arena.agents import RandomAgent
from arena.core import TlmError
from arena.games import get_game
from arena.runstate import staging_path
from teachers.sb3 import SB3Learner, load_sb3_model, train_selfplay
from teachers.selfplay import SnapshotPool, opponent_mix, sampling

SMALL: dict[str, Any] = {"eval_games": 0, "ppo_kwargs": {"n_steps": 64}, "n_envs": 4}
STEPS = 6 * 256  # six rounds (rollouts) of 4 envs x 64 steps


def checkpoint_steps(stage: Path) -> int:
    """The step of the checkpoint in a run's directory (-1: none)."""
    try:
        state = json.loads((stage / "checkpoint" / "state.json").read_text())
    except (OSError, ValueError):
        return -1
    return int(state["total_steps"])


def stop_at(stage: Path, step: int) -> Callable[[], bool]:
    """A stop request (as a Ctrl-C gives) once the run checkpointed ``step``."""
    return lambda: checkpoint_steps(stage) >= step


def weights(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in state.items()}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_the_pool_and_the_mix_pick_each_episodes_opponent(tmp_path: Path) -> None:
    game = get_game("tictactoe")
    learner = SB3Learner("main", game, 0, net_arch=[8], n_envs=2,
                         ppo_kwargs={"n_steps": 32, "batch_size": 64, "n_epochs": 1})
    try:
        pool = SnapshotPool(game)
        for step in (0, 64, 128):
            name = f"step_{step:09d}"
            pool.add(name, learner.snapshot(tmp_path / name))
        rng = np.random.default_rng(0)
        drawn = {pool.draw(rng).name for _ in range(40)}
        assert drawn == {pool.spec(n) for n in pool.names}
        assert pool.agent(pool.names[0]) is pool.agent(pool.names[0])
        assert not getattr(pool.agent(pool.names[0]), "greedy", True)  # it samples
        current = sampling(learner.agent())
        assert current is not learner.agent() and learner.agent().greedy
        opponents = [current, pool.draw(rng), RandomAgent()]
        only_random = learner.train(64, opponents, list(opponent_mix({"random": 1.0}).values()))
        assert set(only_random.win_rate) == {"random"}
        only_past = learner.train(64, opponents, list(opponent_mix({"past": 1.0}).values()))
        assert set(only_past.win_rate) == {opponents[1].name}
    finally:
        learner.close()
    with pytest.raises(TlmError, match="mix"):
        opponent_mix({"league": 1.0})
    with pytest.raises(TlmError, match="mix"):
        opponent_mix({"random": 0.0})
    with pytest.raises(TlmError, match="no snapshot"):
        SnapshotPool(game).draw(np.random.default_rng(0))


def test_interrupted_twice_and_resumed_equals_a_run_never_stopped(tmp_path: Path) -> None:
    plain = train_selfplay("tictactoe", STEPS, tmp_path / "plain", 0, **SMALL)
    for stop in (512, 1024 + 256):
        with pytest.raises(KeyboardInterrupt):
            train_selfplay("tictactoe", STEPS, tmp_path / "run", 0, resume=True,
                           stop=stop_at(tmp_path / "run", stop), **SMALL)
        assert checkpoint_steps(tmp_path / "run") == stop
    resumed = train_selfplay("tictactoe", STEPS, tmp_path / "run", 0, resume=True, **SMALL)

    assert same(weights(plain.model.policy.state_dict()),
                weights(resumed.model.policy.state_dict()))
    assert same(weights(plain.model.policy.optimizer.state_dict()["state"][0]),
                weights(resumed.model.policy.optimizer.state_dict()["state"][0]))
    assert resumed.summary["resumed_at_step"] == 1024 + 256
    for key in ("steps", "games", "snapshots"):
        assert resumed.summary[key] == plain.summary[key]
    # The curve holds each round once, and the checkpoint is gone.
    rows = (tmp_path / "run" / "progress.csv").read_text().splitlines()
    plain_rows = (tmp_path / "plain" / "progress.csv").read_text().splitlines()
    assert len(rows) == len(plain_rows) and rows[0] == plain_rows[0]
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [
        "main", "progress.csv", "snapshots", "summary.json"]


class StopAt(BaseCallback):
    """Ends training once the model has ``step`` learner moves."""

    def __init__(self, step: int) -> None:
        super().__init__()
        self.step = step

    def _on_step(self) -> bool:
        return self.num_timesteps < self.step


def test_a_callback_that_ends_training_ends_the_run(tmp_path: Path) -> None:
    # 512 is the last move of the second round: the round is whole, yet the run ends.
    run = train_selfplay("tictactoe", STEPS, tmp_path / "run", 0, callbacks=[StopAt(512)],
                         **SMALL)
    assert run.summary["steps"] == 512 and run.model.num_timesteps == 512
    run = train_selfplay("tictactoe", STEPS, tmp_path / "early", 0, callbacks=[StopAt(300)],
                         **SMALL)
    assert run.summary["steps"] == 300


def test_a_checkpoint_of_other_settings_is_refused(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt):
        train_selfplay("tictactoe", STEPS, tmp_path / "run", 0, resume=True,
                       stop=stop_at(tmp_path / "run", 256), **SMALL)
    with pytest.raises(TlmError, match=r"unfinished run with other settings \(seed\)"):
        train_selfplay("tictactoe", STEPS, tmp_path / "run", 1, resume=True, **SMALL)


def test_a_run_killed_before_its_first_checkpoint_starts_over(tmp_path: Path) -> None:
    out = tmp_path / "run"
    (out / "snapshots").mkdir(parents=True)
    (out / "snapshots" / "step_000009999.zip").write_bytes(b"half a zip")
    run = train_selfplay("tictactoe", 512, out, 0, resume=True, **SMALL)
    assert "step_000009999.zip" not in run.summary["snapshots"]
    assert not (out / "snapshots" / "step_000009999.zip").exists()


TEACH = ["teach", "--game", "tictactoe", "--steps", "4096", "--seed", "5"]


def tlm(args: list[str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", "import sys; from scripts.cli import main; sys.exit(main())",
         *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1]),
             "OMP_NUM_THREADS": "1"},
        # Ctrl-C reaches the run even when this process was started with SIGINT ignored
        # (a background job): Python only turns SIGINT into KeyboardInterrupt if it
        # starts with the default disposition.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def checkpoint_step(out: Path) -> int:
    return checkpoint_steps(staging_path(out))


def interrupt_after(out: Path, step: int, sig: signal.Signals) -> tuple[int, str]:
    """Run ``tlm teach`` to ``out``, send ``sig`` once a checkpoint at ``step`` is written;
    the exit code and stderr."""
    proc = tlm([*TEACH, "--out", str(out)], out.parent)
    try:
        deadline = time.monotonic() + 240
        while checkpoint_step(out) < step:
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, f"no checkpoint past step {step}"
            time.sleep(0.02)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, err


def test_tlm_teach_after_ctrl_c_and_kill_9_resumes_to_the_same_model(tmp_path: Path) -> None:
    out = tmp_path / "stopped"
    code, err = interrupt_after(out, 1024, signal.SIGINT)
    assert code == 130
    assert err.strip().splitlines() == [
        f"interrupted: the finished part is kept in {staging_path(out)}; run the same "
        f"command again to resume"
    ]
    assert not out.exists()
    code, _ = interrupt_after(out, 2048, signal.SIGKILL)
    assert code == -signal.SIGKILL and not out.exists()

    again = tlm([*TEACH, "--out", str(out)], tmp_path)
    stdout, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    assert "resuming the interrupted run" in stdout
    plain = tlm([*TEACH, "--out", str(tmp_path / "plain")], tmp_path)
    _, err = plain.communicate(timeout=300)
    assert plain.returncode == 0, err

    a = load_sb3_model(out / "main" / "model.zip").policy.state_dict()
    b = load_sb3_model(tmp_path / "plain" / "main" / "model.zip").policy.state_dict()
    assert same(weights(a), weights(b))
    assert json.loads((out / "summary.json").read_text())["resumed_at_step"] >= 2048
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain", "stopped"]
