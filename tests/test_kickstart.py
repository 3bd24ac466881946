"""Kickstarting: the annealed distillation term inside MaskablePPO's loss."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from arena.core import PolicyAgent, State, TlmError
from arena.players import PerfectTicTacToe, all_positions
from distill.kickstart import (
    KickstartMaskablePPO,
    KickstartRolloutBuffer,
    distill_kickstart,
    kickstart_weight,
    student_net_arch,
)
from teachers.sb3 import SB3Agent, make_vec_env


def teacher_kl(agent: SB3Agent, teacher: PolicyAgent) -> float:
    """Mean KL(teacher || agent) over every non-terminal tic-tac-toe position."""
    obs, mask = all_positions()
    p, q = teacher.policy(obs, mask), agent.policy(obs, mask)
    support = p > 0
    log_ratio = np.log(np.where(support, p, 1.0)) - np.log(np.where(support, q, 1.0))
    return float(np.mean(np.sum(np.where(support, p * log_ratio, 0.0), axis=1)))


def test_weight_schedules_anneal_to_zero() -> None:
    assert kickstart_weight(0, 2.0, 100) == 2.0
    assert kickstart_weight(25, 2.0, 100) == pytest.approx(1.5)
    assert kickstart_weight(100, 2.0, 100) == 0.0
    assert kickstart_weight(10**6, 2.0, 100) == 0.0
    assert kickstart_weight(50, 2.0, 100, "exponential") == pytest.approx(2.0 * 0.1)
    assert kickstart_weight(100, 2.0, 100, "exponential") == 0.0
    with pytest.raises(TlmError, match="schedule"):
        kickstart_weight(0, 1.0, 100, "cosine")


def test_student_net_arch_follows_the_student_spec() -> None:
    assert student_net_arch("mlp:32x3") == [32, 32, 32]
    with pytest.raises(TlmError, match="mlp"):
        student_net_arch("cnn:32x3")


def test_rollout_buffer_carries_the_teachers_probs_for_each_row() -> None:
    """After shuffling, every minibatch row's teacher probs belong to that row's position."""
    teacher = PerfectTicTacToe()
    model = KickstartMaskablePPO(
        "MlpPolicy", make_vec_env("tictactoe", 2), teacher=teacher,
        n_steps=32, batch_size=16, n_epochs=1, seed=0, device="cpu",
        policy_kwargs={"net_arch": [8]},
    )
    model.learn(64)
    assert isinstance(model.rollout_buffer, KickstartRolloutBuffer)
    seen = 0
    for batch in model.rollout_buffer.get(16):
        obs = batch.observations.numpy().astype(np.int8)
        mask = batch.action_masks.numpy().astype(np.int8)
        expected = teacher.policy(obs, mask)
        np.testing.assert_allclose(batch.teacher_probs.numpy(), expected, atol=1e-6)
        seen += len(obs)
    assert seen == 64


def test_a_teacher_that_needs_the_engine_state_is_refused() -> None:
    class Searcher(PolicyAgent):
        needs_state = True
        name = "searcher"

        def policy(
            self, obs: np.ndarray, mask: np.ndarray, state: State | None = None
        ) -> np.ndarray:
            return mask / mask.sum(axis=1, keepdims=True)

    with pytest.raises(TlmError, match="engine state"):
        KickstartMaskablePPO("MlpPolicy", make_vec_env("tictactoe", 1),
                             teacher=Searcher(), device="cpu")


def test_distillation_term_pulls_the_student_to_the_teacher(tmp_path: Path) -> None:
    """Same seed, same run, but the weight: only a positive weight moves the student's
    policy toward the teacher's, far beyond what self-play alone does."""
    teacher = PerfectTicTacToe()
    fresh = KickstartMaskablePPO(
        "MlpPolicy", make_vec_env("tictactoe", 1),
        teacher=teacher, seed=0, device="cpu", policy_kwargs={"net_arch": [64, 64]},
    )
    kl = {"fresh": teacher_kl(SB3Agent(fresh, "tictactoe"), teacher)}
    for w0 in (0.0, 10.0):
        model = distill_kickstart(
            "tictactoe", "perfect", "mlp:64x2", 8192, 0, tmp_path / str(w0), w0=w0,
            anneal_steps=10**6, ppo_kwargs={"learning_rate": 3e-3}, eval_games=0,
        )
        kl[str(w0)] = teacher_kl(SB3Agent(model, "tictactoe"), teacher)
    summary = json.loads((tmp_path / "10.0" / "summary.json").read_text())
    assert summary["kickstart"]["teacher"] == "perfect"
    assert summary["kickstart"]["student"] == "mlp:64x2"
    drop_with, drop_without = kl["fresh"] - kl["10.0"], kl["fresh"] - kl["0.0"]
    print(kl)
    assert drop_with > 0.2 and drop_with > drop_without + 0.2, kl
