"""The fitting core: one gradient step of a student on labelled positions, and epochs
of them over arrays.

A student learns a teacher's action distribution (KL, or cross-entropy on its best
move: :mod:`students.losses`) and a value target (squared error) at once. These are
the pure pieces every fit shares, on plain arrays, so that they sit below every
teacher: distillation (:mod:`distill.train`, over its datasets) and expert iteration
(:mod:`distill.iterate`) use them, and so does the search learner of
:mod:`teachers.search`, which may not import :mod:`distill`.

- :class:`FitConfig`: the loss, its weights, batch size, epochs, AdamW's settings and
  symmetry augmentation;
- :func:`make_optimizer`: the AdamW optimizer a fit keeps across calls;
- :func:`gradient_step`: the one step every fit takes, on one batch;
- :func:`fit_arrays`: whole epochs over a fixed set of positions (:class:`FitArrays`),
  shuffled by a torch generator, each position also shown in its symmetric images;
- :func:`value_targets`: the value target where the teacher gives none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from arena.core import TlmError
from arena.games import Game
from arena.symmetry import symmetries
from students.losses import best_move_cross_entropy, kl_teacher_student, value_mse


@dataclass(frozen=True)
class FitConfig:
    """How a student is fitted to positions.

    Attributes:
        epochs: passes over the data each time :func:`fit_arrays` is called.
        batch_size: positions per gradient step.
        lr: Adam learning rate.
        weight_decay: AdamW weight decay.
        loss: ``kl`` (match the teacher's distribution) or ``ce`` (its best move).
        temperature: softening of the KL loss.
        value_weight: weight of the value loss.
        augment: train on every symmetric image of each position too (8 on
            tic-tac-toe, 2 on connect four), with the labels transformed alike.
    """

    epochs: int = 4
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 1e-4
    loss: str = "kl"
    temperature: float = 1.0
    value_weight: float = 0.5
    augment: bool = True

    def __post_init__(self) -> None:
        if self.loss not in ("kl", "ce"):
            raise TlmError(f"unknown policy loss {self.loss!r} (known: kl, ce)")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) <= 0:
                raise TlmError(f"{name} must be positive, got {getattr(self, name)}")
        if self.lr <= 0 or self.temperature <= 0 or self.value_weight < 0:
            raise TlmError("lr and temperature must be positive, value_weight >= 0")


class FitArrays(NamedTuple):
    """Labelled positions as a fit reads them (row ``i`` of each is position ``i``).

    Attributes:
        obs: ``[N, ...]`` observations (the game's PettingZoo planes).
        mask: ``[N, A]`` legal actions.
        probs: ``[N, A]`` the teacher's probabilities.
        values: ``[N]`` value targets, from the mover's point of view.
    """

    obs: np.ndarray
    mask: np.ndarray
    probs: np.ndarray
    values: np.ndarray


def make_optimizer(net: torch.nn.Module, config: FitConfig) -> torch.optim.Optimizer:
    """The optimizer a fit expects (AdamW; kept across rounds and saved with the run)."""
    return torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)


def value_targets(value: np.ndarray, outcome: np.ndarray) -> np.ndarray:
    """The teacher's value where it gives one, else the game's final outcome for the mover.

    Args:
        value: ``[N]`` the teacher's values, NaN where it has none.
        outcome: ``[N]`` the final returns of the movers' seats.
    """
    return np.where(np.isnan(value), outcome, value)


def gradient_step(
    net: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    config: FitConfig,
    obs: torch.Tensor,
    mask: torch.Tensor,
    probs: torch.Tensor,
    values: torch.Tensor,
) -> tuple[float, float]:
    """One step on one batch: the policy loss (``config.loss``) plus ``value_weight``
    times the value loss; the two losses before the step.

    Args:
        net: the student (in training mode).
        optimizer: its optimizer.
        config: the loss and its weights.
        obs: ``[B, ...]`` observations (float).
        mask: ``[B, A]`` legal actions (bool).
        probs: ``[B, A]`` teacher probabilities.
        values: ``[B]`` value targets.
    """
    logits, value = net(obs)
    if config.loss == "kl":
        policy_loss = kl_teacher_student(logits, probs, mask, config.temperature)
    else:
        policy_loss = best_move_cross_entropy(logits, probs, mask)
    v_loss = value_mse(value, values)
    loss = policy_loss + config.value_weight * v_loss
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return policy_loss.item(), v_loss.item()


def fit_arrays(
    net: torch.nn.Module,
    game: str | Game,
    data: FitArrays,
    config: FitConfig,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
) -> dict[str, float]:
    """Train ``net`` on ``data`` for ``config.epochs`` epochs; mean losses of the last.

    With ``config.augment`` (and planar observations) every position is also shown in
    each of its symmetric images, labels transformed alike. Batches are shuffled with
    ``generator``, so the same generator state gives the same student.

    Raises:
        TlmError: no positions.
    """
    if len(data.obs) == 0:
        raise TlmError("no positions to train on")
    obs_np, mask_np, probs_np, values_np = data
    if config.augment and obs_np.ndim == 4:
        syms = symmetries(game)
        obs_np = np.concatenate([s.apply_obs(obs_np) for s in syms])
        mask_np = np.concatenate([s.apply_actions(mask_np) for s in syms])
        probs_np = np.concatenate([s.apply_actions(probs_np) for s in syms])
        values_np = np.tile(values_np, len(syms))
    obs = torch.as_tensor(obs_np).float()
    mask = torch.as_tensor(mask_np).bool()
    probs = torch.as_tensor(probs_np).float()
    values = torch.as_tensor(values_np).float()
    n = len(obs)
    net.train()
    totals = {"policy_loss": 0.0, "value_loss": 0.0}
    for _ in range(config.epochs):
        order = torch.randperm(n, generator=generator)
        totals = {"policy_loss": 0.0, "value_loss": 0.0}
        batches = 0
        for start in range(0, n, config.batch_size):
            idx = order[start : start + config.batch_size]
            policy_loss, v_loss = gradient_step(net, optimizer, config, obs[idx], mask[idx],
                                                probs[idx], values[idx])
            totals["policy_loss"] += policy_loss
            totals["value_loss"] += v_loss
            batches += 1
        totals = {k: v / batches for k, v in totals.items()}
    net.eval()
    return totals
