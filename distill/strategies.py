"""Teaching strategies: which games a distillation round plays and which of their
positions the teacher labels. The round loop (:func:`distill.run.distill`) asks its
strategy to collect every round, then fits, measures and checkpoints the same way
whatever the strategy; a strategy's cost is the labels it spends (positions the
teacher labels for the first time: the store is deduplicated).

- :class:`Games`: games from a mix of players (:func:`distill.collect.collect_round`),
  every position reached labelled. ``tlm distill --method dagger`` is one (the mix,
  with the teacher playing a decaying share ``beta`` of the student's moves), and so
  is ``--method offline`` without a dataset (the teacher's own games).
- :class:`FromDataset`: ``--method offline --dataset``: the next games of a generated
  dataset, already labelled.
- :class:`Uncertain`: the student's own games, of which only the share of new
  positions where the student is least sure (highest policy entropy) is labelled: a
  label-free stand-in for "where student and teacher disagree most", which needs the
  label to know.
- :class:`Adaptive`: ``--method adaptive``: an EXP3 bandit (:class:`Exp3`) picks one of
  its arms every round. Its reward is the student's gain on a fixed probe set
  (:class:`Probe`: tic-tac-toe's optimal-move accuracy over all 4,520 positions, else
  the optimal-move rate on solver-labelled positions) per label spent, scaled by the
  largest gain per label seen so far, so the bandit re-weights as the student learns.
  The standard arms (:func:`standard_strategies`) are ``teacher`` (the teacher's own
  games), ``dagger`` (the student's games), ``panel`` (the student against ``random``
  and ``heuristic``), ``openingsK`` (the student's games after K random plies) and
  ``uncertain``; in the arms the student samples its own distribution. One arm alone
  is that strategy run by itself.

What a strategy carries from round to round (the bandit's weights, a dataset's next
game) is JSON (:meth:`Strategy.state`), checkpointed with the round; every random draw
it makes comes from generators seeded by ``(seed, round)``.
"""

from __future__ import annotations

import math
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from arena import Agent, Decision, Game, PolicyAgent, TlmError, play_matches, top1_agrees
from arena.players.tictactoe import (
    all_positions,
    exhaustive_check,
    keys_to_obs,
    optimal_move_accuracy,
)
from arena.positions import PositionSet, evaluate_positions
from arena.runners import Runner
from distill.collect import STUDENT, Collected, Openings, collect_round
from distill.config import DistillConfig
from distill.curves import Panel
from distill.store import PositionStore
from students import StudentAgent
from teachers.datasets import Positions


@dataclass(frozen=True)
class Probe:
    """The fixed measure the adaptive and learned teachers (and a ``target``) read: the
    name of the measure in a round's row, how to take it of a student (before round 0),
    and the positions it is taken on (observations and legal moves)."""

    key: str
    of: Callable[[StudentAgent], float]
    obs: np.ndarray | None = None
    mask: np.ndarray | None = None


def make_probe(game: Game, positions: PositionSet | None, seed: int) -> Probe:
    """Tic-tac-toe's optimal-move accuracy over every position (``optimal_accuracy``),
    or the optimal-move rate on ``positions`` (``solved_optimal``), as
    :func:`distill.run.measure` takes them.

    Raises:
        TlmError: another game without positions.
    """
    if game.name == "tictactoe":
        obs, mask = all_positions()
        return Probe("optimal_accuracy", optimal_move_accuracy, obs, mask)
    if positions is None:
        raise TlmError(f"the probe of the adaptive teacher and of a target on {game.name} "
                       "needs solver-labelled positions (--positions)")
    solved = positions
    return Probe("solved_optimal", lambda student: float(evaluate_positions(
        student, solved, np.random.default_rng(seed))["optimal"]["rate"]),
        solved.obs, solved.mask)


@dataclass
class Teaching:
    """What a strategy collects with.

    Attributes:
        game: the game.
        teacher: labels every position.
        student: the student, greedy (as it is measured).
        sampler: the student sampling its own distribution.
        store: the run's labelled positions, updated in place.
        runner: where games are played (``None``: this process).
        agents: the agents of the specs the strategy's games play.
        probe: the fixed measure, where the run has one.
    """

    game: Game
    teacher: PolicyAgent
    student: StudentAgent
    sampler: StudentAgent
    store: PositionStore
    runner: Runner | None = None
    agents: Mapping[str, Agent] = field(default_factory=dict)
    probe: Probe | None = None


class Strategy(ABC):
    """A way of choosing a round's games and the positions the teacher labels.

    Every row of the curve has the columns of :attr:`Collected.info` (``beta``, the
    teacher's share of the student's moves, at least) and of :meth:`judge`.
    """

    name: str

    @abstractmethod
    def collect(self, t: Teaching, rnd: int, n_games: int, seed: int) -> Collected | None:
        """Play (or take) ``n_games`` games of round ``rnd`` seeded by ``seed``, label
        what the strategy picks into ``t.store``; ``None`` when nothing is left to take."""

    def specs(self) -> set[str]:
        """The agent specs its games play (built once, before the run starts)."""
        return set()

    def start(self, t: Teaching) -> None:  # noqa: B027  (most strategies need no start)
        """Called once when a run starts (not when it resumes), before round 0."""

    def judge(self, t: Teaching, collected: Collected, metrics: Mapping[str, float]
              ) -> dict[str, Any]:
        """The round's columns once the student is fitted and measured."""
        return {}

    def state(self) -> dict[str, Any]:
        """What it carries to the next round, as JSON."""
        return {}

    def restore(self, state: Mapping[str, Any]) -> None:  # noqa: B027
        """Take back what :meth:`state` gave, from a checkpoint."""

    def summary(self, curve: list[dict[str, Any]]) -> dict[str, Any]:
        """Entries of the run's report."""
        return {}

    def panels(self) -> list[Panel]:
        """Figures of ``curve.png`` beside the student's measures."""
        return []


@dataclass
class Games(Strategy):
    """Games from a mix of players, every position reached labelled.

    Attributes:
        name: what the curve calls it.
        mix: ``{spec: weight}``: ``student``, ``teacher`` or agent specs.
        openings: random opening plies of each game.
        epsilon: each move of either side is uniformly random with this probability.
        temperature: the ``teacher`` entry samples its policy at this temperature.
        beta0: the teacher plays this share of the student's moves in round 0 ...
        beta_decay: ... times this each round.
        self_play_teacher: the ``teacher`` entry plays itself (the student plays no game).
        sample_student: the student samples its distribution (else plays greedily).
    """

    name: str
    mix: Mapping[str, float] = field(default_factory=lambda: {STUDENT: 1.0})
    openings: Openings = Openings()
    epsilon: float = 0.0
    temperature: float = 1.0
    beta0: float = 0.0
    beta_decay: float = 1.0
    self_play_teacher: bool = False
    sample_student: bool = False

    def specs(self) -> set[str]:
        return set(self.mix)

    def collect(self, t: Teaching, rnd: int, n_games: int, seed: int) -> Collected:
        beta = self.beta0 * self.beta_decay**rnd
        done = collect_round(
            t.game, t.teacher, t.sampler if self.sample_student else t.student, self.mix,
            n_games, seed, t.store, rnd, beta=beta, epsilon=self.epsilon,
            openings=self.openings, temperature=self.temperature,
            self_play_teacher=self.self_play_teacher, agents=t.agents, runner=t.runner,
        )
        done.info = {"beta": beta}
        return done


class FromDataset(Strategy):
    """The next games of a generated dataset, labelled when it was generated."""

    name = "dataset"

    def __init__(self, positions: Positions) -> None:
        self.positions = positions
        self.game_ids = np.unique(positions.game_id)
        self.next_game = 0

    def collect(self, t: Teaching, rnd: int, n_games: int, seed: int) -> Collected | None:
        ids = self.game_ids[self.next_game : self.next_game + n_games]
        if len(ids) == 0:
            return None
        chunk = self.positions.select(np.isin(self.positions.game_id, ids))
        reached, labelled = t.store.add_labelled(chunk.obs, chunk.mask, chunk.probs,
                                                 chunk.value, chunk.outcome, rnd,
                                                 chunk.ply, chunk.seat)
        self.next_game += len(ids)
        # The teacher played every move of these games.
        return Collected(games=len(ids), reached=reached, labelled=labelled,
                         info={"beta": 1.0})

    def state(self) -> dict[str, Any]:
        return {"next_game": self.next_game}

    def restore(self, state: Mapping[str, Any]) -> None:
        self.next_game = int(state["next_game"])


@dataclass
class Uncertain(Strategy):
    """The student's games against itself (sampling its distribution, in this process),
    of which only ``share`` of the new positions, those of highest policy entropy, are
    labelled."""

    name: str
    share: float = 0.25
    opening_plies: int = 0

    def collect(self, t: Teaching, rnd: int, n_games: int, seed: int) -> Collected:
        if t.teacher.needs_state:
            raise TlmError(f"strategy {self.name!r} labels observations; teacher "
                           f"{t.teacher.name!r} needs engine states")
        start = time.perf_counter()
        seen: list[Decision] = []
        result = play_matches(t.game, t.sampler, t.sampler, n_games, seed=seed,
                              observer=seen.append, opening_plies=self.opening_plies)
        obs = np.concatenate([d.obs for d in seen if d.obs is not None])
        mask = np.concatenate([d.mask for d in seen])
        games = np.concatenate([d.games for d in seen])
        seat = np.concatenate([d.seat for d in seen]).astype(np.int64)
        ply = np.concatenate([d.ply for d in seen])
        a_seat = result.seat_a[games]
        outcome = np.where(seat == a_seat, result.returns[games, 0], result.returns[games, 1])
        play_s = time.perf_counter() - start
        start = time.perf_counter()
        added = 0
        new = t.store.lookup(t.store.keys(obs)) < 0
        if new.any():
            probs = t.sampler.policy(obs[new], mask[new])
            entropy = -(probs * np.log(np.where(probs > 0, probs, 1.0))).sum(axis=1)
            k = max(1, math.ceil(self.share * int(new.sum())))
            pick = np.flatnonzero(new)[np.argsort(-entropy, kind="stable")[:k]]
            labels = np.asarray(t.teacher.policy(obs[pick], mask[pick]), dtype=np.float32)
            value = (np.asarray(t.teacher.value(obs[pick], mask[pick]), dtype=np.float32)
                     if t.teacher.has_value
                     else np.full(len(pick), np.nan, dtype=np.float32))
            _, added = t.store.add_labelled(obs[pick], mask[pick], labels, value,
                                            outcome[pick], rnd, ply[pick], seat[pick])
        return Collected(games=n_games, reached=len(obs), labelled=added, play_s=play_s,
                         label_s=time.perf_counter() - start, info={"beta": 0.0})


@dataclass
class Refute(Strategy):
    """The positions of the student's refutations: every game the student (greedy, as
    it is measured) loses against some sequence of replies, in either seat, found
    exhaustively (:func:`arena.players.tictactoe.exhaustive_check`), and the positions
    where it moves in them. Of those the store lacks, as many as the round gives it
    games (drawn at random) are labelled, so its share of a mixture's games is its share
    of the labelling; those the store holds are visited again, so the fits weigh them
    as recent. The search reads only the rules and the student, not the teacher: the
    labels are its only cost. Tic-tac-toe only (the check is exact there). The
    recorded outcome is the refutation's: a loss for the student."""

    name: str

    def start(self, t: Teaching) -> None:
        if not refutable(t.game):
            raise TlmError(f"strategy {self.name!r} searches every reply exhaustively, "
                           f"which tlm does on tictactoe only, not {t.game.name}")

    def collect(self, t: Teaching, rnd: int, n_games: int, seed: int) -> Collected:
        start = time.perf_counter()
        keys = np.union1d(exhaustive_check(t.student, 0).losing,
                          exhaustive_check(t.student, 1).losing)
        obs, mask = keys_to_obs(keys)
        rows = t.store.lookup(t.store.keys(obs))
        held, new = rows[rows >= 0], np.flatnonzero(rows < 0)
        if len(new) > n_games:
            rng = np.random.default_rng(np.random.SeedSequence([seed, 7]))
            new = np.sort(rng.choice(new, n_games, replace=False))
        obs, mask = obs[new], mask[new]
        t.store.visit(held, np.full(len(held), -1.0), rnd)
        play_s = time.perf_counter() - start
        info = {"beta": 0.0, "refuted": len(keys)}
        if not len(new):
            return Collected(games=0, reached=len(held), labelled=0, play_s=play_s, info=info)
        start = time.perf_counter()
        labels = np.asarray(t.teacher.policy(obs, mask), dtype=np.float32)
        value = (np.asarray(t.teacher.value(obs, mask), dtype=np.float32)
                 if t.teacher.has_value else np.full(len(obs), np.nan, dtype=np.float32))
        stones = obs.reshape(len(obs), -1).sum(axis=1, dtype=np.int64)
        _, added = t.store.add_labelled(obs, mask, labels, value, np.full(len(new), -1.0),
                                        rnd, ply=stones, seat=stones % 2)
        return Collected(games=0, reached=len(held) + len(new), labelled=added,
                         play_s=play_s, label_s=time.perf_counter() - start, info=info)


@dataclass
class Review(Strategy):
    """No game and no label: the held positions where the student's move (greedy, as it
    is measured) is not one of the teacher's best are marked recent, so the round's fit
    weighs its own mistakes on what it was already taught. In a mixture its share of the
    round's games is labelling left undone: the others get fewer games, and the round
    spends fewer labels. Alone it never labels a position."""

    name: str

    def collect(self, t: Teaching, rnd: int, n_games: int, seed: int) -> Collected:
        start = time.perf_counter()
        wrong = np.zeros(0, dtype=np.int64)
        if len(t.store):
            agrees = top1_agrees(t.student, t.store.obs, t.store.mask, t.store.probs)
            wrong = np.flatnonzero(~agrees)
            t.store.touch(wrong, rnd)
        return Collected(games=0, reached=len(wrong), labelled=0,
                         play_s=time.perf_counter() - start,
                         info={"beta": 0.0, "reviewed": len(wrong)})


def refutable(game: Game) -> bool:
    """Whether ``refute`` can search every reply of ``game`` (tic-tac-toe's exact check)."""
    return game.name == "tictactoe"


ARM_NAMES = ("teacher", "dagger", "panel", "openingsK", "uncertain", "refute", "review")
"""The arms :func:`make_arm` knows (``openingsK`` for any K, as ``openings4``)."""


def standard_arms(game: Game) -> list[str]:
    """The standard arms of the adaptive teacher, with opening lengths fitted to ``game``
    (and ``refute`` where tlm searches every reply: tic-tac-toe)."""
    k = 2 if game.name == "tictactoe" else 4
    return ["teacher", "dagger", "panel", f"openings{k}", "uncertain",
            *(["refute"] if refutable(game) else [])]


LABEL_FREE_ARMS = ("review",)
"""Arms every game runs that spend no label: a teaching policy may share games with
them; the adaptive teacher's reward (gain per label) cannot weigh them, so they are not
among its standard arms."""


def teaching_arms(game: Game) -> list[str]:
    """The strategies a teaching policy shares games among by default: the standard arms
    and the label-free ones."""
    return [*standard_arms(game), *LABEL_FREE_ARMS]


def make_arm(
    name: str,
    *,
    mix: Mapping[str, float] | None = None,
    openings: Openings | None = None,
    epsilon: float = 0.0,
    temperature: float = 1.0,
    beta0: float = 0.0,
    beta_decay: float = 1.0,
) -> Strategy:
    """The arm called ``name``; ``mix`` (default: the student alone) plays the student's
    games of ``dagger`` and ``openingsK``, and the other settings are
    :class:`Games`' (default: no random opening; ``uncertain`` opens with
    ``openings.low`` plies).

    Raises:
        TlmError: an unknown name.
    """
    openings = openings or Openings()
    games: dict[str, Any] = {"openings": openings, "epsilon": epsilon,
                             "temperature": temperature, "beta0": beta0,
                             "beta_decay": beta_decay}
    students = dict(mix) if mix is not None else {STUDENT: 1.0}
    if name == "teacher":
        return Games(name, {"teacher": 1.0}, self_play_teacher=True, **games)
    if name == "dagger":
        return Games(name, students, sample_student=True, **games)
    if name == "panel":
        return Games(name, {"random": 0.5, "heuristic": 0.5}, sample_student=True, **games)
    if name == "uncertain":
        return Uncertain(name, 0.25, openings.low)
    if name == "refute":
        return Refute(name)
    if name == "review":
        return Review(name)
    found = re.fullmatch(r"openings(\d+)", name)
    if found:
        k = int(found.group(1))
        return Games(name, students, sample_student=True, **{**games, "openings": Openings(k, k)})
    raise TlmError(f"unknown strategy {name!r} (known: {', '.join(ARM_NAMES)})")


def arm_settings(config: DistillConfig) -> dict[str, Any]:
    """The settings of :func:`make_arm` that a run's config gives."""
    low, high = config.opening_range
    return {"mix": config.mix, "openings": Openings(low, high), "epsilon": config.epsilon,
            "temperature": config.temperature, "beta0": config.beta0,
            "beta_decay": config.beta_decay}


def standard_strategies(game: Game, **settings: Any) -> list[Strategy]:
    """The standard arms (:func:`standard_arms`) as strategies (:func:`make_arm` with
    ``settings``)."""
    return [make_arm(name, **settings) for name in standard_arms(game)]


class Exp3:
    """EXP3 (Auer et al., 2002): exponential weights over arms, with ``gamma`` of the
    probability mass spread uniformly so that every arm keeps being tried.

    Args:
        n_arms: number of arms.
        gamma: exploration share, in (0, 1].
    """

    def __init__(self, n_arms: int, gamma: float = 0.2) -> None:
        if n_arms < 1:
            raise TlmError(f"a bandit needs at least one arm, got {n_arms}")
        if not 0.0 < gamma <= 1.0:
            raise TlmError(f"gamma must lie in (0, 1], got {gamma}")
        self.gamma = gamma
        self.log_weights = np.zeros(n_arms)

    def probabilities(self) -> np.ndarray:
        """The probability of drawing each arm now."""
        w = np.exp(self.log_weights - self.log_weights.max())
        k = len(w)
        return (1.0 - self.gamma) * w / w.sum() + self.gamma / k

    def draw(self, rng: np.random.Generator) -> int:
        """An arm drawn from :meth:`probabilities`."""
        return int(rng.choice(len(self.log_weights), p=self.probabilities()))

    def update(self, arm: int, reward: float) -> None:
        """Credit ``arm`` with ``reward`` in [0, 1] (importance-weighted)."""
        if not 0.0 <= reward <= 1.0:
            raise TlmError(f"EXP3 rewards lie in [0, 1], got {reward}")
        p = self.probabilities()[arm]
        self.log_weights[arm] += self.gamma * (reward / p) / len(self.log_weights)


class Adaptive(Strategy):
    """An EXP3 bandit over ``arms``, one drawn every round, rewarded by the probe's gain
    per label spent relative to the best gain per label seen so far.

    Args:
        arms: the strategies it picks from (distinct names).
        gamma: the bandit's exploration share.
        seed: seeds each round's draw (with the round).
    """

    name = "adaptive"

    def __init__(self, arms: list[Strategy], gamma: float, seed: int) -> None:
        names = [a.name for a in arms]
        if len(set(names)) != len(names):
            raise TlmError(f"the adaptive teacher's arms repeat a name: {', '.join(names)}")
        self.arms = arms
        self.bandit = Exp3(len(arms), gamma)
        self.seed = seed
        self.score = 0.0
        self.best_rate = 0.0
        self._arm = 0

    def specs(self) -> set[str]:
        return set().union(*(a.specs() for a in self.arms))

    def start(self, t: Teaching) -> None:
        if t.probe is None:
            raise TlmError("the adaptive teacher needs a probe")
        for arm in self.arms:
            arm.start(t)
        self.score = t.probe.of(t.student)

    def collect(self, t: Teaching, rnd: int, n_games: int, seed: int) -> Collected | None:
        probs = self.bandit.probabilities()
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, rnd, 7]))
        self._arm = self.bandit.draw(rng)
        arm = self.arms[self._arm]
        done = arm.collect(t, rnd, n_games, seed)
        if done is not None:
            done.info = {"strategy": arm.name, **done.info,
                         **{f"p_{a.name}": float(p)
                            for a, p in zip(self.arms, probs, strict=True)}}
        return done

    def judge(self, t: Teaching, collected: Collected, metrics: Mapping[str, float]
              ) -> dict[str, Any]:
        assert t.probe is not None
        after = float(metrics[t.probe.key])
        rate = (after - self.score) / max(collected.labelled, 1)
        self.best_rate = max(self.best_rate, rate)
        reward = min(1.0, max(0.0, rate / self.best_rate)) if self.best_rate > 0 else 0.0
        self.bandit.update(self._arm, reward)
        self.score = after
        return {"reward": reward}

    def state(self) -> dict[str, Any]:
        return {"log_weights": self.bandit.log_weights.tolist(), "score": self.score,
                "best_rate": self.best_rate}

    def restore(self, state: Mapping[str, Any]) -> None:
        weights = np.array(state["log_weights"], dtype=np.float64)
        if weights.shape != self.bandit.log_weights.shape:
            raise ValueError(f"{len(weights)} bandit weights for {len(self.arms)} arms")
        self.bandit.log_weights = weights
        self.score, self.best_rate = float(state["score"]), float(state["best_rate"])

    def summary(self, curve: list[dict[str, Any]]) -> dict[str, Any]:
        return {"choices": {n: sum(r["strategy"] == n for r in curve)
                            for n in dict.fromkeys(r["strategy"] for r in curve)}}

    def panels(self) -> list[Panel]:
        return [Panel(x="round", xlabel="round", ylabel="bandit probability", keys=("p_",))]


def strategy_for(config: DistillConfig, game: Game, dataset: Positions | None = None
                 ) -> Strategy:
    """The strategy of ``config.method`` (``offline``, ``dagger``, ``adaptive`` or
    ``learned``: :func:`distill.learned.learned_strategy`).

    Raises:
        TlmError: an unknown arm, or a method that is not a strategy of the round loop.
    """
    low, high = config.opening_range
    if config.method == "offline":
        if dataset is not None:
            return FromDataset(dataset)
        # The teacher plays all its games: beta 1, whatever the student would play.
        return Games("offline", {"teacher": 1.0}, Openings(low, high), config.epsilon,
                     config.temperature, beta0=1.0, beta_decay=1.0, self_play_teacher=True)
    if config.method == "dagger":
        return Games("dagger", dict(config.mix), Openings(low, high), config.epsilon,
                     config.temperature, config.beta0, config.beta_decay)
    if config.method == "adaptive":
        names = config.arms if config.arms is not None else standard_arms(game)
        settings = arm_settings(config)
        return Adaptive([make_arm(n, **settings) for n in names], config.gamma, config.seed)
    if config.method == "learned":
        from distill.learned import learned_strategy

        return learned_strategy(config, game)
    raise TlmError(f"method {config.method!r} is not a strategy of the round loop")
