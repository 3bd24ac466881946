"""Resuming a self-play teacher run: checkpoints every rollout; a run interrupted (in
process, or ``tlm teach`` killed with ``kill -9``) and started again ends with the
same weights, bit for bit, as a run never stopped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from stable_baselines3.common.callbacks import BaseCallback

from arena.core import TlmError
from arena.runstate import staging_path
from teachers.sb3_teacher import load_sb3_model, train_selfplay

SMALL: dict[str, Any] = {"eval_games": 0, "ppo_kwargs": {"n_steps": 64}, "n_envs": 4}
STEPS = 6 * 256  # six rollouts of 4 envs x 64 steps


class StopAt(BaseCallback):
    """Ctrl-C at the first rollout that starts at or after ``step``."""

    def __init__(self, step: int) -> None:
        super().__init__()
        self.step = step

    def _on_rollout_start(self) -> None:
        if self.model.num_timesteps >= self.step:
            raise KeyboardInterrupt

    def _on_step(self) -> bool:
        return True


def weights(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in state.items()}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_interrupted_twice_and_resumed_equals_a_run_never_stopped(tmp_path: Path) -> None:
    plain = train_selfplay("tictactoe", STEPS, tmp_path / "plain", 0, **SMALL)
    for stop in (512, 1024 + 256):
        with pytest.raises(KeyboardInterrupt):
            train_selfplay("tictactoe", STEPS, tmp_path / "run", 0, resume=True,
                           callbacks=[StopAt(stop)], **SMALL)
        state = json.loads((tmp_path / "run" / "checkpoint" / "state.json").read_text())
        assert state["num_timesteps"] == stop
    resumed = train_selfplay("tictactoe", STEPS, tmp_path / "run", 0, resume=True, **SMALL)

    assert same(weights(plain.model.policy.state_dict()),
                weights(resumed.model.policy.state_dict()))
    assert same(weights(plain.model.policy.optimizer.state_dict()["state"][0]),
                weights(resumed.model.policy.optimizer.state_dict()["state"][0]))
    assert resumed.summary["resumed_at_step"] == 1024 + 256
    for key in ("steps", "games", "snapshots"):
        assert resumed.summary[key] == plain.summary[key]
    # The curve holds each rollout once, and the checkpoint is gone.
    rows = (tmp_path / "run" / "logs" / "progress.csv").read_text().splitlines()
    plain_rows = (tmp_path / "plain" / "logs" / "progress.csv").read_text().splitlines()
    assert len(rows) == len(plain_rows) and rows[0] == plain_rows[0]
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [
        "logs", "model.zip", "snapshots", "summary.json"]


def test_a_checkpoint_of_other_settings_is_refused(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt):
        train_selfplay("tictactoe", STEPS, tmp_path / "run", 0, resume=True,
                       callbacks=[StopAt(256)], **SMALL)
    with pytest.raises(TlmError, match="interrupted run with other settings .seed 0, not 1"):
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
    try:
        state = json.loads((staging_path(out) / "checkpoint" / "state.json").read_text())
    except (OSError, ValueError):
        return -1
    return int(state["num_timesteps"])


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

    a = load_sb3_model(out / "model.zip").policy.state_dict()
    b = load_sb3_model(tmp_path / "plain" / "model.zip").policy.state_dict()
    assert same(weights(a), weights(b))
    assert json.loads((out / "summary.json").read_text())["resumed_at_step"] >= 2048
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain", "stopped"]
