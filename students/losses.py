"""The losses of fitting a student: how far its outputs are from a teacher's labels.

They live with the students, below every teacher, so that whatever fits a student
(distillation in :mod:`distill`, a search learner in :mod:`teachers.search`) takes the
same losses. Three named losses, each a scalar averaged over the batch:

- :func:`kl_teacher_student`: KL(teacher || student) over the legal actions, with a
  distillation temperature (Hinton et al., 2015);
- :func:`best_move_cross_entropy`: cross-entropy on the teacher's most probable legal
  move (a hard label, as in behaviour cloning);
- :func:`value_mse`: squared error between the student's and the teacher's value.

Policy losses take the legal-action mask: the student's distribution is a softmax over
the legal actions only, and the teacher's probabilities on illegal actions (there
should be none) are dropped and the rest renormalized. Teacher probabilities that are
exactly zero contribute nothing (``0 * log 0 = 0``) and never produce NaN values or
gradients.
"""

from __future__ import annotations

import torch

from arena.core import TlmError
from students.networks import masked_log_softmax


def _check_policy_shapes(logits: torch.Tensor, probs: torch.Tensor, mask: torch.Tensor) -> None:
    if logits.ndim != 2 or logits.shape != probs.shape or logits.shape != mask.shape:
        raise ValueError(
            "student logits, teacher probs and mask must all be [B, A]; got "
            f"{tuple(logits.shape)}, {tuple(probs.shape)}, {tuple(mask.shape)}"
        )


def teacher_log_probs(
    teacher_probs: torch.Tensor, mask: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """The teacher's log-probabilities at a temperature, over the legal actions.

    ``p_T(a) = p(a)^(1/T) / sum_b p(b)^(1/T)`` over legal ``a, b``: the softmax of the
    teacher's log-probabilities divided by ``T``, which is exactly Hinton et al.'s
    softened teacher when the teacher's logits are ``log p``. ``T > 1`` softens,
    ``T < 1`` sharpens; zero probabilities stay zero at any temperature.

    Args:
        teacher_probs: ``[B, A]`` nonnegative.
        mask: ``[B, A]`` legal actions.
        temperature: ``T > 0``.

    Returns:
        ``[B, A]``: ``log p_T``, ``-inf`` where ``p_T`` is zero (illegal actions and
        zero-probability ones).
    """
    support = mask.to(torch.bool) & (teacher_probs > 0)
    # log of 1 where p is 0, so that neither the value nor its gradient is inf.
    safe_log = torch.where(support, teacher_probs, torch.ones_like(teacher_probs)).log()
    return masked_log_softmax(safe_log / temperature, support)


def kl_teacher_student(
    student_logits: torch.Tensor,
    teacher_probs: torch.Tensor,
    mask: torch.Tensor,
    temperature: float = 1.0,
) -> torch.Tensor:
    """``T^2 * mean_batch KL(p_T || q_T)``: the distillation loss of Hinton et al.

    ``q_T = softmax(student_logits / T)`` over the legal actions and ``p_T`` is the
    teacher's distribution at the same temperature (:func:`teacher_log_probs`, i.e.
    ``p^(1/T)`` renormalized over the legal actions). The ``T^2`` factor keeps the
    gradient's scale roughly independent of ``T``, so a temperature can be changed
    without retuning the learning rate. At ``T = 1`` this is plain KL(teacher || student),
    which is the cross-entropy against the teacher's probabilities minus their entropy:
    it is zero exactly when the student matches the teacher on the legal actions.

    Args:
        student_logits: ``[B, A]`` raw student logits.
        teacher_probs: ``[B, A]`` teacher probabilities (mass on illegal actions is
            ignored; exact zeros are fine).
        mask: ``[B, A]`` legal actions (nonzero / ``True`` = legal).
        temperature: ``T > 0``.

    Returns:
        A scalar tensor. A row whose teacher puts no mass on any legal action
        contributes zero (it still counts in the batch mean).

    Raises:
        TlmError: ``temperature`` is not positive.
        ValueError: the three tensors are not all ``[B, A]``.
    """
    if not temperature > 0:
        raise TlmError(f"distillation temperature must be positive, got {temperature}")
    _check_policy_shapes(student_logits, teacher_probs, mask)
    log_p = teacher_log_probs(teacher_probs, mask, temperature)
    log_q = masked_log_softmax(student_logits / temperature, mask)
    support = torch.isfinite(log_p)  # p_T > 0, which implies legal, so log_q is finite
    # The -inf entries are replaced before any arithmetic: a NaN in the branch that
    # torch.where discards would still turn its gradient into NaN.
    zero = torch.zeros_like(log_q)
    log_p = torch.where(support, log_p, zero)
    log_q = torch.where(support, log_q, zero)
    terms = torch.where(support, log_p.exp() * (log_p - log_q), zero)
    return terms.sum(dim=-1).mean() * temperature**2


def best_move_cross_entropy(
    student_logits: torch.Tensor, teacher_probs: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """``mean_batch -log q(a*)`` with ``a*`` the teacher's most probable legal move.

    ``q`` is the student's softmax over the legal actions. Ties go to the lowest action
    index, as :func:`arena.core.masked_argmax` breaks them.

    Args:
        student_logits: ``[B, A]`` raw student logits.
        teacher_probs: ``[B, A]`` teacher probabilities (or any scores: only their
            argmax over the legal actions matters).
        mask: ``[B, A]`` legal actions; every row needs at least one.

    Returns:
        A scalar tensor.

    Raises:
        ValueError: the three tensors are not all ``[B, A]``.
    """
    _check_policy_shapes(student_logits, teacher_probs, mask)
    legal = mask.to(torch.bool)
    scores = teacher_probs.detach().masked_fill(~legal, float("-inf"))
    best = scores.argmax(dim=-1, keepdim=True)
    log_q = masked_log_softmax(student_logits, legal)
    return -log_q.gather(-1, best).squeeze(-1).mean()


def value_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``mean((pred - target)^2)``.

    Args:
        pred: ``[B]`` student values.
        target: ``[B]`` teacher values or game outcomes, from the mover's point of view.

    Returns:
        A scalar tensor.

    Raises:
        ValueError: the shapes differ (``[B, 1]`` against ``[B]`` would otherwise
            broadcast to ``[B, B]`` silently).
    """
    if pred.shape != target.shape:
        raise ValueError(
            f"value prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape"
        )
    return ((pred - target.to(pred.dtype)) ** 2).mean()
