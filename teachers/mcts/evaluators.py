"""Evaluators: the priors and values of the leaves a search has just reached, all at once.

An evaluator reaches the leaves at the ends of the selected paths (with
:func:`teachers.mcts.leaves.reach_leaves`) and gives their priors and values:
:class:`RandomRolloutEvaluator` from uniformly random play to the end,
:class:`NetworkEvaluator` from a policy-value function called once per simulation for
every leaf of every game. Anything with the same ``evaluate`` method is an evaluator.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from arena.core import Engine, PolicyAgent, State, TlmError
from teachers.mcts.leaves import Leaves, reach_leaves

PolicyValueFn = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
"""``fn(obs[B, ...], mask[B, A]) -> (probs[B, A], values[B])``, values for the mover."""


@dataclass(frozen=True)
class LeafEvaluation:
    """Leaves with their priors and values, as an evaluator returns them.

    Attributes:
        leaves: what the walk found (terminal flags, rewards, movers, masks).
        priors: ``[K, A]`` move probabilities at each non-terminal leaf, zero on
            illegal moves.
        values: ``[K]`` expected outcome for the leaf's mover (ignored when terminal).
    """

    leaves: Leaves
    priors: np.ndarray
    values: np.ndarray


class Evaluator(Protocol):
    """Reaches and evaluates the leaves at the ends of the selected paths, all at once."""

    def evaluate(
        self,
        engine: Engine,
        root: State,
        games: np.ndarray,
        paths: np.ndarray,
        depth: np.ndarray,
        rng: np.random.Generator,
    ) -> LeafEvaluation:
        """Evaluate the leaves of ``games`` (arguments as in :func:`reach_leaves`)."""
        ...


def normalise_legal(probs: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``probs`` restricted to legal moves and summing to one (uniform if none is left)."""
    legal = mask.astype(np.float64)
    p = np.where(legal > 0, np.asarray(probs, dtype=np.float64), 0.0)
    p = np.maximum(p, 0.0)
    total = p.sum(axis=1, keepdims=True)
    uniform = legal / np.maximum(legal.sum(axis=1, keepdims=True), 1.0)
    return np.where(total > 0, p / np.where(total > 0, total, 1.0), uniform)


class RandomRolloutEvaluator:
    """Values from uniformly random play to the end; uniform priors.

    Args:
        n_rollouts: rollouts per leaf; their outcomes are averaged.
    """

    def __init__(self, n_rollouts: int = 1) -> None:
        if n_rollouts < 1:
            raise TlmError(f"the number of rollouts must be positive, got {n_rollouts}")
        self.n_rollouts = n_rollouts

    def evaluate(
        self,
        engine: Engine,
        root: State,
        games: np.ndarray,
        paths: np.ndarray,
        depth: np.ndarray,
        rng: np.random.Generator,
    ) -> LeafEvaluation:
        """Roll every leaf out ``n_rollouts`` times, all leaves and rollouts together."""
        leaves = reach_leaves(engine, root, games, paths, depth, rng, rollouts=self.n_rollouts)
        priors = normalise_legal(np.zeros(leaves.mask.shape), leaves.mask)
        assert leaves.rollout_value is not None
        return LeafEvaluation(leaves, priors, leaves.rollout_value)

    def __repr__(self) -> str:
        return f"RandomRolloutEvaluator({self.n_rollouts})"


class NetworkEvaluator:
    """Priors and values from a policy-value function, called once per simulation step.

    All non-terminal leaves of all games being searched go to ``policy_value_fn`` in
    one batch.

    Args:
        policy_value_fn: ``fn(obs[K, ...], mask[K, A]) -> (probs[K, A], values[K])``,
            values in [-1, 1] for the player to move.
    """

    def __init__(self, policy_value_fn: PolicyValueFn) -> None:
        self.policy_value_fn = policy_value_fn

    @classmethod
    def from_agent(cls, agent: PolicyAgent) -> NetworkEvaluator:
        """An evaluator that asks a :class:`PolicyAgent` with a value for both."""
        if not agent.has_value:
            raise TlmError(f"agent {agent.name!r} gives no value, so it cannot evaluate leaves")
        if agent.needs_state:
            raise TlmError(
                f"agent {agent.name!r} needs engine states, so it cannot evaluate leaves"
            )

        def policy_value(obs: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return agent.policy(obs, mask), agent.value(obs, mask)

        return cls(policy_value)

    def evaluate(
        self,
        engine: Engine,
        root: State,
        games: np.ndarray,
        paths: np.ndarray,
        depth: np.ndarray,
        rng: np.random.Generator,
    ) -> LeafEvaluation:
        """Observe every leaf and evaluate the non-terminal ones in one call."""
        leaves = reach_leaves(engine, root, games, paths, depth, rng, observe=True)
        assert leaves.obs is not None
        priors = np.zeros(leaves.mask.shape, dtype=np.float64)
        values = np.zeros(len(games), dtype=np.float64)
        live = ~leaves.terminal
        if live.any():
            probs, v = self.policy_value_fn(leaves.obs[live], leaves.mask[live])
            priors[live] = normalise_legal(np.asarray(probs), leaves.mask[live])
            values[live] = np.clip(np.asarray(v, dtype=np.float64).reshape(-1), -1.0, 1.0)
        return LeafEvaluation(leaves, priors, values)

