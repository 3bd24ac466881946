"""Supervised fitting of a student to labelled positions (:class:`teachers.datasets.Positions`).

The fitting core lives with the students (:mod:`students.fit`: :class:`FitConfig`,
:func:`make_optimizer` and :func:`gradient_step`, the one step every fit takes), so
that a learner below :mod:`distill` fits the same way; it is re-exported here. Over
it, :func:`fit_steps` takes a bounded number of steps on batches sampled from the
data with given weights (the distillation rounds use it, so a round costs the same
however large the aggregate grows); :func:`fit` makes whole epochs over a fixed set
(expert iteration's replay window) through :func:`students.fit.fit_arrays`.

The policy loss is KL(teacher || student) with a temperature (``loss="kl"``) or the
cross-entropy on the teacher's best move (``loss="ce"``); the value head regresses the
teacher's value where the teacher gives one, else the game's final outcome.
"""

from __future__ import annotations

import numpy as np
import torch

from arena import Game, TlmError
from arena.symmetry import symmetries
from students.fit import FitArrays, FitConfig, fit_arrays, gradient_step, make_optimizer
from students.fit import value_targets as student_value_targets
from teachers.datasets import Positions

__all__ = ["FitConfig", "fit", "fit_steps", "gradient_step", "make_optimizer",
           "sample_weights", "value_targets"]


def value_targets(positions: Positions) -> np.ndarray:
    """The teacher's value where it has one, else the final outcome for the mover."""
    return student_value_targets(positions.value, positions.outcome)


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
    """Train ``net`` on ``positions`` for ``config.epochs`` epochs; mean losses of the last
    (:func:`students.fit.fit_arrays` on their labels and value targets).

    Batches are shuffled with ``generator``, so the same generator state gives the
    same student.
    """
    if len(positions) == 0:
        raise TlmError("no positions to train on")
    data = FitArrays(positions.obs, positions.mask, positions.probs, value_targets(positions))
    return fit_arrays(net, game, data, config, optimizer, generator)
