"""Recurrent students: fresh from a seed, saved and loaded like every student, the same
computation in training (whole sequences) as in play (event by event)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import students
from arena import TlmError, make_agent
from students.recurrent import DECISION, GAME_END, PAD


def test_same_seed_same_weights_and_a_spec_alone_takes_its_default() -> None:
    a = students.build_recurrent_student("gru:32", "tictactoe", 3)
    b = students.build_recurrent_student("gru:32x1", "tictactoe", 3)
    assert a.spec == b.spec == "gru:32x1"
    for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y)
    assert students.build_recurrent_student("gru", "tictactoe", 0).hidden == 128
    c = students.build_recurrent_student("gru:32", "tictactoe", 4)
    assert not torch.equal(a.cell.weight_hh, c.cell.weight_hh)


def test_training_sequences_compute_what_play_computes() -> None:
    net = students.build_recurrent_student("gru:16x2", "tictactoe", 0)
    agent = students.RecurrentStudentAgent(net)
    rng = np.random.default_rng(1)
    obs = rng.integers(0, 2, size=(2, 5, 3, 3, 2)).astype(np.int8)
    kind = np.array([[DECISION, DECISION, GAME_END, DECISION, PAD],
                     [DECISION, GAME_END, DECISION, DECISION, GAME_END]])
    result = np.array([[0, 0, 1, 0, 0], [0, -1, 0, 0, 0]], dtype=np.float32)
    with torch.no_grad():
        logits, _ = net.forward_sequence(torch.from_numpy(obs), torch.from_numpy(kind),
                                         torch.from_numpy(result))
    mask = np.ones((1, 9), dtype=np.int8)
    for row in range(2):
        memory = agent.initial_memory(1)
        for t in range(5):
            if kind[row, t] == DECISION:
                probs, memory = agent.policy_with_memory(obs[row, t][None], mask, memory)
                want = torch.softmax(logits[row, t].double(), dim=0).numpy()
                np.testing.assert_allclose(probs[0], want, atol=1e-6)
            elif kind[row, t] == GAME_END:
                memory = agent.end_game(memory, result[row, t][None])


def test_memory_changes_what_it_plays_and_a_checkpoint_restores_it(tmp_path: Path) -> None:
    net = students.build_recurrent_student("gru:32", "tictactoe", 2)
    path = students.save_student(net, tmp_path / "gru")
    agent = make_agent(str(path), "tictactoe")
    assert isinstance(agent, students.RecurrentStudentAgent)
    obs = np.zeros((4, 3, 3, 2), dtype=np.int8)
    mask = np.ones((4, 9), dtype=np.int8)
    fresh = agent.initial_memory(4)
    after = agent.end_game(fresh, np.array([1, 0, -1, 1]))
    assert not np.allclose(after[0], after[2])  # a win and a loss are remembered apart
    p1, _ = agent.policy_with_memory(obs, mask, after)
    p0, _ = students.RecurrentStudentAgent(net).policy_with_memory(obs, mask, after)
    np.testing.assert_allclose(p1, p0, atol=1e-7)


def test_recurrent_and_feedforward_checkpoints_are_not_mistaken(tmp_path: Path) -> None:
    rec = students.save_student(students.build_recurrent_student("gru:8", "tictactoe", 0),
                                tmp_path / "rec")
    ff = students.save_student(students.build_student("mlp:8x1", "tictactoe", 0),
                               tmp_path / "ff")
    with pytest.raises(TlmError, match="recurrent student") as info:
        students.load_net(rec)
    assert "\n" not in str(info.value)
    with pytest.raises(TlmError, match="feedforward student"):
        students.load_recurrent_net(ff)
    with pytest.raises(TlmError, match="not connect_four"):
        students.load_recurrent_net(rec, "connect_four")
    with pytest.raises(TlmError, match="recurrent student"):
        students.build_student("gru:8", "tictactoe", 0)
