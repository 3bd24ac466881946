"""Distillation losses against values worked out by hand on tiny tensors."""

from __future__ import annotations

import math

import pytest
import torch

from arena.core import TlmError
from distill.losses import (
    best_move_cross_entropy,
    kl_teacher_student,
    teacher_log_probs,
    value_mse,
)

LN2 = math.log(2.0)


def t(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)


# Student logits [0, ln 2, 0] give q = [1/4, 1/2, 1/4].
QUARTER_HALF_QUARTER = [0.0, LN2, 0.0]


def test_kl_hand_computed_with_a_zero_teacher_probability() -> None:
    # p = [1/2, 1/2, 0], q = [1/4, 1/2, 1/4]:
    # KL = 1/2 ln(2) + 1/2 ln(1) + 0 * ln(0 / (1/4)) = ln(2) / 2
    loss = kl_teacher_student(t([QUARTER_HALF_QUARTER]), t([[0.5, 0.5, 0.0]]), t([[1, 1, 1]]))
    assert loss.item() == pytest.approx(LN2 / 2, rel=1e-12)


def test_kl_is_averaged_over_the_batch() -> None:
    # Row 1 as above (ln 2 / 2); row 2 has student == teacher (0): mean = ln 2 / 4.
    logits = t([QUARTER_HALF_QUARTER, QUARTER_HALF_QUARTER])
    probs = t([[0.5, 0.5, 0.0], [0.25, 0.5, 0.25]])
    loss = kl_teacher_student(logits, probs, torch.ones(2, 3))
    assert loss.item() == pytest.approx(LN2 / 4, rel=1e-12)


def test_kl_with_temperature_softens_both_sides_and_scales_by_t_squared() -> None:
    # T = 2. Student logits [0, 2 ln 2, 0] / 2 = [0, ln 2, 0] -> q_T = [1/4, 1/2, 1/4].
    # Teacher p = [0.8, 0.2, 0]: p^(1/2) = [sqrt 0.8, sqrt 0.2, 0] -> p_T = [2/3, 1/3, 0].
    # KL = 2/3 ln((2/3)/(1/4)) + 1/3 ln((1/3)/(1/2)) = 2/3 ln(8/3) + 1/3 ln(2/3)
    # loss = T^2 * KL = 4 * 0.518731... = 2.074924...
    expected = 4 * (2 / 3 * math.log(8 / 3) + 1 / 3 * math.log(2 / 3))
    loss = kl_teacher_student(t([[0.0, 2 * LN2, 0.0]]), t([[0.8, 0.2, 0.0]]), t([[1, 1, 1]]), 2.0)
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(2.074924, abs=1e-6)


def test_teacher_temperature_is_power_and_renormalize() -> None:
    # T = 1/2 sharpens: p^2 renormalized, [0.8, 0.2] -> [0.64, 0.04] / 0.68.
    log_p = teacher_log_probs(t([[0.8, 0.2, 0.0]]), t([[1, 1, 1]]), 0.5)
    assert log_p.exp().tolist()[0] == pytest.approx([0.64 / 0.68, 0.04 / 0.68, 0.0], rel=1e-12)


def test_kl_is_zero_when_the_student_matches_the_teacher() -> None:
    probs = t([[0.1, 0.6, 0.3, 0.0], [0.0, 0.0, 1.0, 0.0]])
    mask = t([[1, 1, 1, 1], [1, 0, 1, 1]])
    # A student whose logits are log p (any finite value where p = 0 is masked or
    # pushed far down) matches the teacher exactly.
    logits = torch.where(probs > 0, probs.log(), torch.full_like(probs, -1000.0))
    for temperature in (1.0, 0.5, 3.0):
        loss = kl_teacher_student(logits, probs, mask, temperature)
        assert loss.item() == pytest.approx(0.0, abs=1e-12)


def test_kl_ignores_masked_actions_on_both_sides() -> None:
    # Action 3 is illegal: the student's huge logit there and the teacher's (wrong)
    # mass there are both dropped; what is left is the first test's row: ln 2 / 2.
    logits = t([QUARTER_HALF_QUARTER + [50.0]])
    probs = t([[0.5 * 0.7, 0.5 * 0.7, 0.0, 0.3]])
    loss = kl_teacher_student(logits, probs, t([[1, 1, 1, 0]]))
    assert loss.item() == pytest.approx(LN2 / 2, rel=1e-12)


def test_kl_gradient_is_student_minus_teacher_on_legal_actions() -> None:
    # d KL / d z = (q - p) / B at T = 1, and zero on illegal actions.
    logits = t([QUARTER_HALF_QUARTER + [3.0]]).requires_grad_()
    kl_teacher_student(logits, t([[0.5, 0.5, 0.0, 0.0]]), t([[1, 1, 1, 0]])).backward()
    assert logits.grad is not None
    assert logits.grad.tolist()[0] == pytest.approx([-0.25, 0.0, 0.25, 0.0], abs=1e-12)


def test_gradients_are_finite_with_zero_teacher_probabilities() -> None:
    # One-hot teachers, an all-zero teacher row, illegal actions and sharpening: the
    # places where log 0 could leak a NaN into the value or the gradient.
    logits = torch.randn(3, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    logits.requires_grad_()
    probs = t([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [0.0, 0.5, 0.5, 0.0]])
    probs.requires_grad_()
    mask = t([[1, 1, 0, 1], [1, 1, 1, 1], [0, 1, 1, 1]])
    for temperature in (1.0, 0.25, 4.0):
        logits.grad = None
        probs.grad = None
        loss = kl_teacher_student(logits, probs, mask, temperature) + best_move_cross_entropy(
            logits, probs, mask
        )
        loss.backward()
        assert torch.isfinite(loss)
        assert logits.grad is not None and torch.isfinite(logits.grad).all()
        assert probs.grad is not None and torch.isfinite(probs.grad).all()
        assert (logits.grad[mask == 0] == 0).all()


def test_kl_rejects_a_nonpositive_temperature() -> None:
    with pytest.raises(TlmError, match="temperature must be positive"):
        kl_teacher_student(t([[0.0, 0.0]]), t([[0.5, 0.5]]), t([[1, 1]]), 0.0)


def test_policy_losses_reject_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match=r"\[B, A\]"):
        kl_teacher_student(t([[0.0, 0.0]]), t([[0.5, 0.5, 0.0]]), t([[1, 1]]))
    with pytest.raises(ValueError, match=r"\[B, A\]"):
        best_move_cross_entropy(t([[0.0, 0.0]]), t([[1.0, 0.0]]), t([[1, 1, 1]]))


def test_best_move_cross_entropy_hand_computed() -> None:
    # Teacher's best move is 0; q(0) = 1/4 -> -ln(1/4) = ln 4 = 1.386294...
    loss = best_move_cross_entropy(t([QUARTER_HALF_QUARTER]), t([[0.6, 0.4, 0.0]]), t([[1, 1, 1]]))
    assert loss.item() == pytest.approx(math.log(4.0), rel=1e-12)


def test_best_move_cross_entropy_takes_the_best_legal_move_and_averages() -> None:
    # Row 1: the teacher's top action 3 is illegal -> best legal is 1, q(1) = 1/2 -> ln 2.
    # Row 2: a tie between 0 and 1 goes to 0, q(0) = 1/4 -> ln 4. Mean = 3/2 ln 2.
    # The student's logit 50 on the illegal action changes nothing.
    logits = t([QUARTER_HALF_QUARTER + [50.0], QUARTER_HALF_QUARTER + [50.0]])
    probs = t([[0.1, 0.2, 0.0, 0.7], [0.5, 0.5, 0.0, 0.0]])
    mask = t([[1, 1, 1, 0], [1, 1, 1, 0]])
    loss = best_move_cross_entropy(logits, probs, mask)
    assert loss.item() == pytest.approx(1.5 * LN2, rel=1e-12)


def test_value_mse_hand_computed() -> None:
    # ((0.5 - 1)^2 + (-1 - 0)^2) / 2 = (0.25 + 1) / 2 = 0.625
    loss = value_mse(torch.tensor([0.5, -1.0]), torch.tensor([1.0, 0.0]))
    assert loss.item() == pytest.approx(0.625)


def test_value_mse_refuses_shapes_that_would_broadcast() -> None:
    with pytest.raises(ValueError, match="differ in shape"):
        value_mse(torch.zeros(4, 1), torch.zeros(4))
