"""The learned teacher (``tlm distill --method learned``): a teaching policy
(:mod:`distill.teaching_policy`) trained across many students chooses, before every
round, the share of the round's games each strategy plays.

:class:`Learned` is a strategy of the one round loop (:func:`distill.run.distill`).
Before a round it reads the teaching state (:meth:`Learned.observe`: the probe, its
latest gain, the gap to the run's goal, labels spent, the round, the student's policy
entropy on the probe positions, its agreement with the teacher on each strategy's
latest positions) and turns it into features with :func:`teaching_features`, the same
call whether the run trains a policy (:mod:`distill.teaching_train`) or uses one; the
policy's mixture shares the round's games among its strategies (largest remainders),
each strategy collecting its share with a seed of its own. Everything it carries from
round to round is JSON, checkpointed with the round.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from arena import Game, TlmError, exact_strength, top1_agreement
from distill.collect import Collected, split_games
from distill.config import DistillConfig
from distill.curves import Panel
from distill.strategies import (
    Strategy,
    Teaching,
    arm_settings,
    make_arm,
    standard_arms,
    teaching_arms,
)
from distill.teaching_policy import (
    DEFAULT_LABEL_BUDGET,
    TeachingPolicy,
    TeachingState,
    load_policy,
    normalized_entropy,
    perfect_play_gap,
    shipped_policy,
    target_gap,
    teaching_features,
)


@dataclass(frozen=True)
class Goal:
    """The run's goal, as the stopping rules read it: perfect play (tic-tac-toe's
    exhaustive losses at 0) and/or a target of the probe."""

    perfect: bool
    target: float | None

    def gap(self, metrics: Mapping[str, float], probe_key: str) -> float:
        """``goal_gap`` of a round's measures."""
        if self.perfect and "exhaustive_losses" in metrics:
            return perfect_play_gap(float(metrics["exhaustive_losses"]))
        probe = float(metrics[probe_key])
        return target_gap(probe, self.target) if self.target is not None else 1.0 - probe


class Unavailable(Strategy):
    """A strategy a transferred policy knows and this game lacks (``refute`` off
    tic-tac-toe): it gets no game, the other strategies share its part of the mixture."""

    def __init__(self, name: str) -> None:
        self.name = name

    def collect(self, t: Teaching, rnd: int, n_games: int, seed: int) -> Collected | None:
        return None


class Learned(Strategy):
    """Each round, a teaching policy's mixture of ``arms`` over the round's games.

    Args:
        policy: the teaching policy; its strategies name the arms' roles, in order.
        arms: the strategies it shares games among, in the policy's order.
        goal: the run's goal (read by the ``goal_gap`` feature).
        label_budget: the run's label budget (scales the ``labels`` feature).
        rounds: the run's number of rounds (scales the ``round`` feature).
    """

    name = "learned"

    def __init__(self, policy: TeachingPolicy, arms: list[Strategy], goal: Goal,
                 label_budget: int, rounds: int) -> None:
        if len(arms) != len(policy.strategies):
            raise TlmError(f"a teaching policy over {len(policy.strategies)} strategies "
                           f"got {len(arms)} arms")
        self.policy = policy
        self.arms = arms
        self.goal = goal
        self.label_budget = label_budget
        self.rounds = rounds
        self.probe = 0.0
        self.probe_before = 0.0
        self.gap = 1.0
        self.labels = 0
        self.latest: dict[str, list[int]] = {}
        """Store rows ``[start, end)`` each arm labelled the latest round it was used."""

    def specs(self) -> set[str]:
        return set().union(*(a.specs() for a in self.arms))

    def start(self, t: Teaching) -> None:
        if t.probe is None:
            raise TlmError("the learned teacher needs a probe")
        for arm in self.arms:
            arm.start(t)
        self.probe = self.probe_before = t.probe.of(t.student)
        metrics = {t.probe.key: self.probe}
        if self.goal.perfect:
            exact = exact_strength(t.game, t.student)
            if exact is not None:
                metrics["exhaustive_losses"] = float(exact["exhaustive_losses"])
        self.gap = self.goal.gap(metrics, t.probe.key)

    def observe(self, t: Teaching, rnd: int) -> TeachingState:
        """The teaching state before round ``rnd``, from the student as it is now."""
        assert t.probe is not None and t.probe.obs is not None and t.probe.mask is not None
        entropy = normalized_entropy(t.student.policy(t.probe.obs, t.probe.mask), t.probe.mask)
        agreement = []
        for arm in self.arms:
            lo, hi = self.latest.get(arm.name, (0, 0))
            agreement.append(
                top1_agreement(t.student, t.store.obs[lo:hi], t.store.mask[lo:hi],
                               t.store.probs[lo:hi]) if hi > lo else self.probe)
        return TeachingState(
            probe=self.probe, probe_before=self.probe_before, goal_gap=self.gap,
            labels=self.labels, label_budget=self.label_budget, round=rnd,
            rounds=self.rounds, entropy=entropy, agreement=tuple(agreement))

    def collect(self, t: Teaching, rnd: int, n_games: int, seed: int) -> Collected | None:
        features = teaching_features(self.observe(t, rnd))
        shares = self.policy.mixture(features)
        live = np.array([not isinstance(a, Unavailable) for a in self.arms])
        if not live.all():
            shares = np.where(live, shares, 0.0)
            shares = shares / shares.sum() if shares.sum() > 0 else live / live.sum()
        counts = split_games(n_games, {a.name: float(s)
                                       for a, s in zip(self.arms, shares, strict=True)})
        total = Collected(games=0, reached=0, labelled=0)
        for k, arm in enumerate(self.arms):
            if counts[arm.name] == 0:
                continue
            arm_seed = int(np.random.SeedSequence([seed, k]).generate_state(1)[0])
            start = len(t.store)
            got = arm.collect(t, rnd, counts[arm.name], arm_seed)
            if got is None:
                continue
            if len(t.store) > start:
                self.latest[arm.name] = [start, len(t.store)]
            total.games += got.games
            total.reached += got.reached
            total.labelled += got.labelled
            total.play_s += got.play_s
            total.label_s += got.label_s
        total.info = {
            "strategy": self.arms[int(np.argmax(shares))].name, "beta": 0.0,
            **{f"share_{a.name}": float(s) for a, s in zip(self.arms, shares, strict=True)},
            **{f"f_{n}": float(v) for n, v in zip(self.policy.features, features, strict=True)},
        }
        return total

    def judge(self, t: Teaching, collected: Collected, metrics: Mapping[str, float]
              ) -> dict[str, Any]:
        assert t.probe is not None
        self.probe_before, self.probe = self.probe, float(metrics[t.probe.key])
        self.gap = self.goal.gap(metrics, t.probe.key)
        self.labels += collected.labelled
        return {}

    def state(self) -> dict[str, Any]:
        return {"probe": self.probe, "probe_before": self.probe_before, "gap": self.gap,
                "labels": self.labels, "latest": self.latest}

    def restore(self, state: Mapping[str, Any]) -> None:
        self.probe, self.probe_before = float(state["probe"]), float(state["probe_before"])
        self.gap, self.labels = float(state["gap"]), int(state["labels"])
        latest = state["latest"]
        if not isinstance(latest, dict):
            raise TypeError("latest is not a mapping")
        self.latest = {str(k): [int(v[0]), int(v[1])] for k, v in latest.items()}

    def summary(self, curve: list[dict[str, Any]]) -> dict[str, Any]:
        names = [a.name for a in self.arms]
        return {
            "shares": {n: float(np.mean([r[f"share_{n}"] for r in curve])) if curve else 0.0
                       for n in names},
            "choices": {n: sum(r["strategy"] == n for r in curve) for n in names},
        }

    def panels(self) -> list[Panel]:
        return [Panel(x="round", xlabel="round", ylabel="share of the round's games",
                      keys=("share_",))]


def policy_arms(policy: TeachingPolicy, game: Game, transfer: bool) -> list[str]:
    """The names of the arms a policy's strategies are on ``game``: the same names, or
    with ``transfer``, ``openingsK`` as this game's standard opening length (a
    ``refute`` the game lacks is :class:`Unavailable` there)."""
    if not transfer:
        return list(policy.strategies)
    openings = next(a for a in standard_arms(game) if a.startswith("openings"))
    return [openings if re.fullmatch(r"openings\d+", s) else s for s in policy.strategies]


def learned_strategy(config: DistillConfig, game: Game) -> Learned:
    """The strategy of ``--method learned``: ``config.teaching_policy`` (default: the
    policy shipped for the game) over arms made with the run's settings.

    Raises:
        TlmError: no policy for the game, a policy trained on another game (without
            ``transfer_policy``), one over other strategies than ``config.arms``, or a
            bad policy file (:func:`distill.teaching_policy.load_policy`).
    """
    path: Path | None = config.teaching_policy
    if path is None:
        path = shipped_policy(game.name)
        if path is None:
            raise TlmError(f"no teaching policy ships for {game.name}: train one with "
                           "`tlm teaching-policy train` and pass --teaching-policy")
    policy = load_policy(path)
    if game.name not in policy.games and not config.transfer_policy:
        raise TlmError(f"teaching policy {path} was trained on {', '.join(policy.games)}, "
                       f"not {game.name} (--transfer-policy uses it anyway)")
    names = policy_arms(policy, game, config.transfer_policy)
    if config.arms is not None and list(config.arms) != names:
        raise TlmError(f"teaching policy {path} knows the strategies {', '.join(names)}; "
                       f"--arms asks for {', '.join(config.arms)}")
    # Transferred, a strategy this game lacks (refute off tic-tac-toe) plays no game.
    lacking = set(names) - set(teaching_arms(game)) if config.transfer_policy else set()
    try:
        arms = [Unavailable(n) if n in lacking else make_arm(n, **arm_settings(config))
                for n in names]
    except TlmError as e:
        raise TlmError(f"teaching policy {path}: {e}") from None
    rounds = -(-config.budget_games // config.games_per_round)
    return Learned(policy, arms, Goal(config.stop_when_perfect, config.target),
                   config.label_budget or DEFAULT_LABEL_BUDGET, rounds)
