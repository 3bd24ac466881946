"""Supervised fitting of a student to labelled positions.

:func:`gradient_step` is the one step every fit takes. :func:`fit_steps` takes a
bounded number of them on batches sampled from the data with given weights (the
distillation rounds use it, so a round costs the same however large the aggregate
grows); :func:`fit` makes whole epochs over a fixed set (expert iteration's replay
window).

The policy loss is KL(teacher || student) with a temperature (``loss="kl"``) or the
cross-entropy on the teacher's best move (``loss="ce"``); the value head regresses the
teacher's value where the teacher gives one, else the game's final outcome.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from arena import Game, TlmError
from arena.symmetry import symmetries
from distill.losses import best_move_cross_entropy, kl_teacher_student, value_mse
from teachers.datasets import Positions


@dataclass(frozen=True)
class FitConfig:
    """How a student is fitted to positions.

    Attributes:
        epochs: passes over the data each time :func:`fit` is called.
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


def make_optimizer(net: torch.nn.Module, config: FitConfig) -> torch.optim.Optimizer:
    """The optimizer :func:`fit` expects (kept across DAgger rounds)."""
    return torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)


def value_targets(positions: Positions) -> np.ndarray:
    """The teacher's value where it has one, else the final outcome for the mover."""
    return np.where(np.isnan(positions.value), positions.outcome, positions.value)


def sample_weights(last_round: np.ndarray, rnd: int, recent_share: float) -> np.ndarray:
    """Sampling weights over an aggregate: ``recent_share`` of the mass spread evenly over
    the positions reached in round ``rnd``, the rest evenly over all positions."""
    n = len(last_round)
    weights = np.full(n, (1.0 - recent_share) / max(n, 1))
    recent = last_round == rnd
    if recent.any():
        weights[recent] += recent_share / int(recent.sum())
    else:
        weights += recent_share / max(n, 1)
    return weights


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


def fit_steps(
    net: torch.nn.Module,
    game: str | Game,
    data: Positions,
    weights: np.ndarray,
    steps: int,
    config: FitConfig,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
) -> dict[str, float]:
    """Take ``steps`` gradient steps on batches drawn from ``data`` with probability
    proportional to ``weights`` (with replacement); the mean losses.

    With ``config.augment`` each drawn position is shown in one of its symmetric images,
    drawn uniformly. Every draw comes from ``generator``, so the same generator state
    gives the same student.
    """
    if len(data) == 0:
        raise TlmError("no positions to train on")
    if steps <= 0:
        raise TlmError(f"steps must be positive, got {steps}")
    syms = symmetries(game) if config.augment and data.obs.ndim == 4 else []
    values_np = value_targets(data).astype(np.float32)
    w = torch.as_tensor(np.asarray(weights, dtype=np.float64))
    draws = torch.multinomial(w, steps * config.batch_size, replacement=True,
                              generator=generator).numpy()
    images = (torch.randint(len(syms), (steps * config.batch_size,), generator=generator)
              .numpy() if len(syms) > 1 else None)
    net.train()
    totals = {"policy_loss": 0.0, "value_loss": 0.0}
    for step in range(steps):
        idx = draws[step * config.batch_size : (step + 1) * config.batch_size]
        obs_np, mask_np, probs_np = data.obs[idx], data.mask[idx], data.probs[idx]
        if images is not None:
            which = images[step * config.batch_size : (step + 1) * config.batch_size]
            for k in range(1, len(syms)):
                rows = np.flatnonzero(which == k)
                if rows.size:
                    obs_np[rows] = syms[k].apply_obs(obs_np[rows])
                    mask_np[rows] = syms[k].apply_actions(mask_np[rows])
                    probs_np[rows] = syms[k].apply_actions(probs_np[rows])
        policy_loss, v_loss = gradient_step(
            net, optimizer, config, torch.from_numpy(obs_np).float(),
            torch.from_numpy(mask_np).bool(), torch.from_numpy(probs_np).float(),
            torch.from_numpy(values_np[idx]))
        totals["policy_loss"] += policy_loss
        totals["value_loss"] += v_loss
    net.eval()
    return {k: v / steps for k, v in totals.items()}


def fit(
    net: torch.nn.Module,
    game: str | Game,
    positions: Positions,
    config: FitConfig,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
) -> dict[str, float]:
    """Train ``net`` on ``positions`` for ``config.epochs`` epochs; mean losses of the last.

    Batches are shuffled with ``generator``, so the same generator state gives the
    same student.
    """
    if len(positions) == 0:
        raise TlmError("no positions to train on")
    obs_np, mask_np, probs_np = positions.obs, positions.mask, positions.probs
    values_np = value_targets(positions)
    if config.augment and positions.obs.ndim == 4:
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
