"""The learner protocol: what a league (or ``tlm teach``) needs from a training backend.

A learner is a policy being trained by reinforcement learning against opponents that
someone else picks (a league's matchmaker, or a fixed self-play mix). Backends (SB3
MaskablePPO, RLlib PPO) implement this protocol; the loop that drives them knows only
this protocol, so a league can mix backends.

Contract:

- ``train(steps, opponents)`` trains for about ``steps`` learner moves against the
  given opponents (agents, sampled per episode by the learner with its own
  generator; weights, when given, are sampling probabilities) and returns what it did.
- ``snapshot(path)`` writes a frozen, self-contained checkpoint of the current policy
  into the new directory ``path`` (safe formats, or SB3's own zip) and returns the
  agent spec that loads it (``sb3:PATH/model.zip``, ``rllib:PATH``, ...).
- ``agent()`` is the live policy as an arena agent (greedy), to evaluate or to be an
  opponent of other learners; it follows the learner's weights as they change.
- ``save(path)`` / ``restore(path)`` write and read everything needed to resume
  training exactly (weights, optimizer, step counter, generator states) in a
  directory of the learner's own layout.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from arena.core import Agent, TlmError


@dataclass(frozen=True)
class TrainReport:
    """What one call of :meth:`Learner.train` did.

    Attributes:
        steps: learner moves trained on in this call.
        games: training games finished in this call.
        total_steps: learner moves since the learner was created.
        win_rate: the learner's score (win 1, draw 0.5) in this call's training games,
            per opponent name.
        wall_s: seconds spent.
        extra: backend-specific scalars (losses, entropy, ...) for logs.
    """

    steps: int
    games: int
    total_steps: int
    win_rate: dict[str, float]
    wall_s: float
    extra: dict[str, float] = field(default_factory=dict)


@runtime_checkable
class Learner(Protocol):
    """A policy trained by RL against opponents chosen from outside."""

    name: str
    backend: str

    def train(
        self, steps: int, opponents: Sequence[Agent], weights: Sequence[float] | None = None
    ) -> TrainReport:
        """Train for about ``steps`` learner moves against ``opponents``."""
        ...

    def snapshot(self, path: Path) -> str:
        """Write a frozen checkpoint into the new directory ``path``; return its spec."""
        ...

    def agent(self) -> Agent:
        """The live policy as a greedy arena agent."""
        ...

    def save(self, path: Path) -> None:
        """Write the full training state into the directory ``path``."""
        ...

    def restore(self, path: Path) -> None:
        """Read the full training state written by :meth:`save`."""
        ...

    def close(self) -> None:
        """Release whatever the learner holds (workers, envs)."""
        ...


def describe(learner: Learner) -> dict[str, Any]:
    """A JSON-able line about a learner, for logs and status views."""
    return {"name": learner.name, "backend": learner.backend}


def opponent_weights(
    name: str, steps: int, opponents: Sequence[Agent], weights: Sequence[float] | None
) -> np.ndarray:
    """The sampling probabilities of ``opponents`` for a :meth:`Learner.train` call of
    learner ``name`` (uniform when ``weights`` is ``None``).

    Raises:
        TlmError: steps not positive, no opponents, or weights that are not one finite,
            non-negative number per opponent with a positive sum.
    """
    if steps <= 0:
        raise TlmError(f"learner {name}: steps must be positive, got {steps}")
    if not opponents:
        raise TlmError(f"learner {name}: no opponents to train against")
    w = np.ones(len(opponents)) if weights is None else np.asarray(weights, dtype=np.float64)
    if (w.shape != (len(opponents),) or (w < 0).any() or not np.isfinite(w).all()
            or w.sum() <= 0):
        raise TlmError(f"learner {name}: bad opponent weights {list(w)}")
    return w / w.sum()


@contextlib.contextmanager
def using_torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads (``None``: leave them), then restore."""
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
