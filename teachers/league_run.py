"""The league loop: learners train against the league's picks, play rated matches, resume.

:class:`LeagueConfig` is a league's YAML file, validated (unknown keys rejected, every
reference built for the game) before anything is written. :func:`run_league` runs
rounds in a league directory (its store is :class:`arena.league.LeagueStore`):

1. each learner, in config order, gets opponents from its
   :class:`arena.league.matchmaking.Matchmaker` (the picks are kept in the store, so a
   resumed round trains against the same ones), trains ``steps_per_round`` against
   them and, every ``snapshot_every`` steps or when its training score passes
   ``snapshot_win_rate``, leaves a frozen snapshot in the league;
2. the round's rating matches are played (each learner against every reference,
   every other learner and a few snapshots whose results are still uncertain), seats
   alternating, each recorded in its own transaction under a key naming the round
   and the pair, so a replayed round never counts a match twice;
3. ratings are recomputed from the whole log, curves written (store scalars and
   TensorBoard), every learner's full training state checkpointed, and the round
   counter advanced, all in one transaction.

Every seed derives from the league's seed, the round and the pair
(``np.random.SeedSequence``), and a learner's own randomness is in its checkpoint, so
the same seed gives the same league and a league killed at any moment and run again
redoes the unfinished round exactly: no match lost or doubled, ratings equal to the
ones recomputed from the log.

One process writes a league at a time: :func:`run_league` holds the league directory's
lock (:func:`arena.runstate.output_lock`, ``.NAME.lock`` beside it) from before the store is
opened until it is closed, so a second run on the same directory is refused with the
pid of the first and touches nothing. Readers (``tlm league status`` and ``report``)
take no lock.

Learners are built by :func:`make_learner` from their config (``sb3``:
:class:`teachers.league_learners.SB3Learner`; ``rllib``:
``teachers.rllib_learner.RLlibLearner``) and driven only through the protocol of
:mod:`teachers.learner`.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import math
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from arena.agents import make_agent
from arena.core import Agent, PolicyAgent, State, TlmError, sample_from
from arena.games import Game, get_game
from arena.league import LeagueStore, MatchRecord, staged_checkpoint
from arena.league.matchmaking import Matchmaker, pfsp_weights, win_rates
from arena.league.ratings import Rating, elo_ratings
from arena.matches import play_matches
from arena.runstate import output_lock, read_yaml_mapping, validation_message
from teachers.learner import Learner, TrainReport

_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:\-]*$"


class PPOConfig(BaseModel):
    """MaskablePPO settings of an ``sb3`` learner (omitted ones: the SB3 teacher's defaults)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n_steps: int | None = Field(default=None, gt=0, description="Moves per env per rollout.")
    batch_size: int | None = Field(default=None, gt=0, description="Minibatch size of each update.")
    n_epochs: int | None = Field(default=None, gt=0, description="Passes over each rollout.")
    learning_rate: float | None = Field(default=None, gt=0, description="Adam step size.")
    gamma: float | None = Field(default=None, gt=0, le=1, description="Discount factor.")
    gae_lambda: float | None = Field(default=None, ge=0, le=1, description="GAE lambda.")
    ent_coef: float | None = Field(default=None, ge=0, description="Entropy bonus weight.")
    vf_coef: float | None = Field(default=None, ge=0, description="Value loss weight.")
    clip_range: float | None = Field(default=None, gt=0, description="PPO clipping range.")
    max_grad_norm: float | None = Field(default=None, gt=0, description="Gradient norm clip.")

    def kwargs(self) -> dict[str, Any]:
        """The settings given, as MaskablePPO keyword arguments."""
        return {k: v for k, v in self.model_dump().items() if v is not None}


class LearnerConfig(BaseModel):
    """One learner of the league."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=_NAME_PATTERN, description="Unique name in the league.")
    backend: Literal["sb3", "rllib"] = Field(
        default="sb3", description="Training backend: sb3 (MaskablePPO) or rllib (RLlib PPO).")
    role: Literal["main", "main_exploiter", "league_exploiter"] = Field(
        default="main", description="main: trains against the league; main_exploiter: against the "
        "main learners; league_exploiter: PFSP over the whole league.")
    matchmaking: Literal["latest", "uniform", "pfsp"] = Field(
        default="pfsp",
        description="Opponents: own latest snapshot, uniform over snapshots, or PFSP.")
    weighting: Literal["hard", "variance", "linear", "uniform"] = Field(
        default="hard", description="PFSP weighting of the win rate p: (1-p)^2, p(1-p), 1-p, 1.")
    reference_share: float = Field(
        default=0.2, ge=0, le=1, description="Share of the sampling weight kept by the references.")
    opponents_per_round: int = Field(
        default=4, gt=0, description="Opponents drawn from the matchmaker for each round.")
    net_arch: list[int] = Field(
        default_factory=lambda: [64, 64], min_length=1,
        description="Hidden layer sizes of the policy and value networks.")
    n_envs: int = Field(default=8, gt=0, description="Training games played side by side.")
    ppo: PPOConfig = Field(default=PPOConfig(), description="PPO settings.")
    steps_per_round: int = Field(
        default=8192, gt=0, description="Learner moves trained per round (whole rollouts).")
    snapshot_every: int | None = Field(
        default=32768, gt=0, description="Learner moves between snapshots (null: never by steps).")
    sample_opponents: bool = Field(
        default=True, description="Learner-made opponents (live learners, snapshots) sample "
        "their policy while this learner trains, instead of playing their best move.")
    snapshot_win_rate: float | None = Field(
        default=0.7, gt=0, le=1, description="Also snapshot when the round's training score "
        "against the current opponents reaches this (null: never by score).")

    @field_validator("net_arch")
    @classmethod
    def _positive_sizes(cls, v: list[int]) -> list[int]:
        if any(w <= 0 for w in v):
            raise ValueError(f"layer sizes must be positive, got {v}")
        return v


class ReferenceConfig(BaseModel):
    """A fixed reference agent, always in the pool (a bare spec string also works)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=_NAME_PATTERN, description="Its name in the league.")
    spec: str = Field(min_length=1, description="Agent spec (random, perfect, alphabeta:4, "
                      "a student checkpoint, sb3:PATH.zip).")


class EvaluationConfig(BaseModel):
    """The rating matches played at the end of every round."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    games_per_pair: int = Field(default=40, gt=0, description="Games per match (seats alternate).")
    learners: bool = Field(default=True, description="Learners also play each other.")
    snapshots_per_learner: int = Field(
        default=2, ge=0, description="Snapshots each learner plays per round, drawn where its "
        "results are most uncertain (variance-weighted).")
    opening_plies: int = Field(
        default=0, ge=0, description="Random opening moves of every rating game, so greedy "
        "players meet different games.")


class StopConfig(BaseModel):
    """When the league stops (the first limit reached, checked between rounds)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_rounds: int | None = Field(default=None, gt=0, description="Rounds in all.")
    max_games: int | None = Field(
        default=None, gt=0, description="Games in all (training and rating games).")
    max_minutes: float | None = Field(
        default=None, gt=0, description="Wall minutes of loop work in all (over every resume).")


class LeagueConfig(BaseModel):
    """A self-play league: its game, learners, references, rating matches and limits."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    game: str = Field(description="Registered game name.")
    seed: int = Field(
        default=0, ge=0, description="The league's seed; every other seed derives from it.")
    learners: list[LearnerConfig] = Field(min_length=1, description="The learners.")
    references: list[ReferenceConfig] = Field(
        default_factory=lambda: [ReferenceConfig(name="random", spec="random")],
        description="Fixed agents, always in the pool; ratings are anchored to random.")
    evaluation: EvaluationConfig = Field(
        default=EvaluationConfig(), description="Rating matches per round.")
    stop: StopConfig = Field(default=StopConfig(), description="Stop conditions.")
    torch_threads: int = Field(default=1, gt=0, description="Torch threads while training.")

    @field_validator("references", mode="before")
    @classmethod
    def _spec_strings(cls, v: Any) -> Any:
        if not isinstance(v, list):
            return v
        return [{"name": _reference_name(x), "spec": x} if isinstance(x, str) else x for x in v]

    @model_validator(mode="after")
    def _unique_names(self) -> LeagueConfig:
        names = [lc.name for lc in self.learners] + [r.name for r in self.references]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"names must be unique across learners and references: {dup}")
        mains = [lc for lc in self.learners if lc.role == "main"]
        if any(lc.role == "main_exploiter" for lc in self.learners) and not mains:
            raise ValueError("a main_exploiter needs a main learner")
        return self


DEMO_LEAGUE: dict[str, Any] = {
    "game": "tictactoe",
    "learners": [{"name": "main", "net_arch": [64, 64], "steps_per_round": 8192,
                  "snapshot_every": 8192, "reference_share": 0.5}],
    "references": ["random", "heuristic", "perfect"],
    "evaluation": {"games_per_pair": 100, "snapshots_per_learner": 1},
    "stop": {"max_rounds": 3, "max_minutes": 1.0},
}
"""The short tic-tac-toe league of ``tlm demo`` (a minute at most)."""


def _reference_name(spec: str) -> str:
    return spec.replace("/", "_").replace("\\", "_")


def parse_config(data: Any, source: str = "league config") -> LeagueConfig:
    """Validate a league config from parsed YAML/JSON and check it against the game.

    Raises:
        TlmError: one line naming the first problem (unknown key, bad value, unknown
            game, a reference that does not play this game, a missing backend).
    """
    if not isinstance(data, dict):
        raise TlmError(f"{source}: expected a mapping of settings")
    try:
        config = LeagueConfig.model_validate(data)
    except ValidationError as error:
        raise TlmError(f"{source}: {validation_message(error)}") from None
    check_config(config)
    return config


def load_config(path: str | Path) -> LeagueConfig:
    """Read and validate a league YAML file (see :func:`parse_config`)."""
    return parse_config(read_yaml_mapping(path), str(path))


def check_config(config: LeagueConfig) -> dict[str, Agent]:
    """Build every reference for the game and check the learners' backends exist.

    Returns:
        the references' agents by name.

    Raises:
        TlmError: unknown game, a reference that does not play it, a missing backend.
    """
    game = get_game(config.game)
    agents: dict[str, Agent] = {}
    for ref in config.references:
        try:
            agent = make_agent(ref.spec, game)
        except TlmError as error:
            raise TlmError(f"reference {ref.name!r}: {error}") from None
        if agent.game is not None and agent.game != game.name:
            raise TlmError(f"reference {ref.name!r} plays {agent.game}, not {game.name}")
        agent.name = ref.name
        agents[ref.name] = agent
    for lc in config.learners:
        if lc.backend == "rllib" and importlib.util.find_spec("teachers.rllib_learner") is None:
            raise TlmError(f"learner {lc.name!r}: the rllib backend is not available "
                           "(teachers.rllib_learner is missing)")
    return agents


def make_learner(config: LearnerConfig, game: Game, directory: Path, seed: int,
                 torch_threads: int = 1) -> Learner:
    """Build a fresh learner from its config.

    Args:
        config: the learner's settings.
        game: the game.
        directory: a directory the learner may use for its own files.
        seed: seeds its initial weights and its generator.
        torch_threads: torch threads while training.

    Raises:
        TlmError: bad settings, or a backend that is not installed.
    """
    if config.backend == "sb3":
        from teachers.league_learners import SB3Learner

        return SB3Learner(config.name, game, seed, net_arch=config.net_arch,
                          n_envs=config.n_envs, ppo_kwargs=config.ppo.kwargs(),
                          torch_threads=torch_threads)
    try:
        module = importlib.import_module("teachers.rllib_learner")
    except ImportError:
        raise TlmError(f"learner {config.name!r}: the rllib backend is not available "
                       "(teachers.rllib_learner is missing)") from None
    learner: Learner = module.RLlibLearner.from_league_config(config, game, directory, seed)
    return learner


class _Sampled(Agent):
    """A policy agent that samples its distribution instead of playing its argmax.

    Greedy networks are deterministic: a learner training against them would meet the
    same few games again and again.
    """

    def __init__(self, agent: PolicyAgent) -> None:
        self.inner = agent
        self.name = agent.name
        self.game = agent.game
        self.needs_state = agent.needs_state
        self.uses_observation = agent.uses_observation

    def act(self, obs: np.ndarray, mask: np.ndarray, rng: np.random.Generator,
            state: State | None = None) -> np.ndarray:
        return sample_from(self.inner.policy(obs, mask, state), rng)


# -- stopping ----------------------------------------------------------------------------


class _InterruptedError(Exception):
    """Raised by the signal handler while a learner trains (its round is redone later)."""


class StopRequest:
    """Ctrl-C / SIGTERM while a league runs: stop after the current match.

    While a learner trains (seconds to minutes) the signal interrupts at once: the
    round's training is redone on resume anyway.

    Attributes:
        signum: the signal received, or ``None``.
        reason: why a stop was asked for (``signal``, or what :meth:`request` was
            given), or ``None``.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self.reason: str | None = None
        self.interruptible = False

    @property
    def requested(self) -> bool:
        """Whether a stop was asked for."""
        return self.reason is not None

    def request(self, reason: str) -> None:
        """Ask the loop to stop after the current match (from a progress callback)."""
        self.reason = reason

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.signum = signum
        self.reason = "signal"
        if self.interruptible:
            self.interruptible = False
            raise _InterruptedError

    @contextlib.contextmanager
    def installed(self) -> Iterator[StopRequest]:
        """Handle SIGINT and SIGTERM in the block (previous handlers restored after)."""
        previous = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for s, h in previous.items():
                signal.signal(s, h)

    @contextlib.contextmanager
    def interruptible_block(self) -> Iterator[None]:
        """A block a signal may cut short."""
        if self.requested:
            raise _InterruptedError
        self.interruptible = True
        try:
            yield
        finally:
            self.interruptible = False


# -- progress ----------------------------------------------------------------------------


@dataclass
class LeagueProgress:
    """What the loop reports to a view after each event.

    Attributes:
        round: the round being played (0-based).
        phase: ``train``, ``match``, ``commit`` or ``done``.
        message: the event, for people.
        ratings: the latest committed ratings.
        learner_steps: learner moves trained, per learner.
        learner_scores: the last training score per learner.
        rating_games: rating games played in this run.
        match_seconds: seconds spent in rating matches in this run.
        games: training and rating games over the league's life.
        rounds_done: rounds finished in this run.
    """

    round: int = 0
    phase: str = "start"
    message: str = ""
    ratings: dict[str, Rating] = field(default_factory=dict)
    learner_steps: dict[str, int] = field(default_factory=dict)
    learner_scores: dict[str, float] = field(default_factory=dict)
    rating_games: int = 0
    match_seconds: float = 0.0
    games: int = 0
    rounds_done: int = 0

    @property
    def games_per_second(self) -> float:
        """Rating games per second of match play in this run."""
        return self.rating_games / self.match_seconds if self.match_seconds > 0 else 0.0


@dataclass
class LeagueOutcome:
    """How :func:`run_league` ended.

    Attributes:
        rounds: rounds finished in the league's life.
        rounds_this_run: rounds finished by this call.
        stopped_by: ``max_rounds`` / ``max_games`` / ``max_minutes``, or ``signal``.
        signum: the signal that stopped it, if any.
        ratings: the final ratings.
        timing: seconds per part of this run: ``train``, ``match`` (playing rating
            matches), ``rating_phase`` (the rating matches with their store writes and
            the loading of snapshots), ``load`` (loading snapshots),
            ``checkpoint``, ``bookkeeping`` (store, ratings, matchmaking) and ``total``.
        rating_games: rating games played in this run.
    """

    rounds: int
    rounds_this_run: int
    stopped_by: str
    signum: int | None
    ratings: dict[str, Rating]
    timing: dict[str, float]
    rating_games: int = 0


Progress = Callable[[LeagueProgress], None]


# -- the loop ----------------------------------------------------------------------------


def _seed(*words: int) -> int:
    """A 31-bit seed derived from the league's words (seed, round, kind, index)."""
    return int(np.random.SeedSequence(list(words)).generate_state(1)[0] & 0x7FFFFFFF)


def _rng(*words: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(list(words)))


_PICK, _EVAL, _MATCH, _LEARNER = 1, 2, 3, 4
"""Seed words telling apart the streams derived from the league seed."""


def resolve_spec(spec: str, directory: Path) -> str:
    """A stored spec with its path made absolute when it is relative to the league dir."""
    kind, sep, arg = spec.partition(":")
    if sep and arg and not Path(arg).is_absolute() and (directory / arg).exists():
        return f"{kind}:{directory / arg}"
    if not sep and not Path(spec).is_absolute() and (directory / spec).exists():
        return str(directory / spec)
    return spec


def _config_without_stop(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k != "stop"}


def play_pair(
    game: Game,
    agent_a: Agent,
    agent_b: Agent,
    n_games: int,
    seed: int,
    opening_plies: int = 0,
    runner: Any = None,
) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """Play one rating match; A's (wins, draws, losses) as first mover, then as second.

    Args:
        game: the game.
        agent_a: agent A.
        agent_b: agent B.
        n_games: games (seats alternate).
        seed: the match's seed.
        opening_plies: random opening moves of every game.
        runner: where to play (``None``: here, in this process).
    """
    result = play_matches(game, agent_a, agent_b, n_games, seed=seed,
                          opening_plies=opening_plies, runner=runner)
    out = result.outcome
    seats = np.asarray(result.seat_a)

    def triple(s: int) -> tuple[int, int, int]:
        o = out[seats == s]
        return int((o > 0).sum()), int((o == 0).sum()), int((o < 0).sum())

    return triple(0), triple(1)


class _League:
    """One run of the loop over an open store (see :func:`run_league`)."""

    def __init__(self, config: LeagueConfig, store: LeagueStore, references: dict[str, Agent],
                 progress: Progress | None, stop: StopRequest, runner: Any) -> None:
        self.config = config
        self.store = store
        self.directory = store.directory
        self.game = get_game(config.game)
        self.progress = progress
        self.stop = stop
        self.runner = runner
        self.references = references
        self.agents: dict[str, Agent] = dict(references)
        self.learners: dict[str, Learner] = {}
        self.sampled: dict[str, _Sampled] = {}
        self.matchmakers = {
            lc.name: Matchmaker(lc.matchmaking, lc.weighting, lc.role, lc.reference_share)
            for lc in config.learners
        }
        self.timing = {"train": 0.0, "match": 0.0, "rating_phase": 0.0, "load": 0.0,
                       "checkpoint": 0.0, "bookkeeping": 0.0}
        self.view = LeagueProgress()
        self.anchor = ["random", *references]
        self._writer: Any = None
        self._round_start = time.perf_counter()

    # -- setup ---------------------------------------------------------------------

    def learner_seed(self, index: int) -> int:
        return _seed(self.config.seed, _LEARNER, index)

    def setup(self) -> None:
        """Register missing members and build (or restore) every learner."""
        store = self.store
        with store.transaction():
            for ref in self.config.references:
                if not store.has_agent(ref.name):
                    store.add_agent(ref.name, "reference", ref.spec)
        for i, lc in enumerate(self.config.learners):
            learner = make_learner(lc, self.game, self.directory / "learners" / lc.name,
                                   self.learner_seed(i), self.config.torch_threads)
            self.learners[lc.name] = learner
            state = store.get_state(f"learner/{lc.name}")
            if state is None:
                self.checkpoint_learner(lc.name, 0, first=True)
            else:
                learner.restore(self.directory / state["checkpoint"] / "state")
            self.agents[lc.name] = learner.agent()
            self.view.learner_steps[lc.name] = self.total_steps(lc.name)
        self.view.games = int(store.get_state("games", 0))
        self.view.ratings = self.ratings_from_state()

    def total_steps(self, name: str) -> int:
        state = self.store.get_state(f"learner/{name}") or {}
        return int(state.get("total_steps", 0))

    def checkpoint_learner(self, name: str, rounds_done: int, first: bool = False,
                           extra_state: dict[str, Any] | None = None) -> None:
        """Write the learner's state and policy as ``learners/NAME/rNNNNNN`` and record it
        (the store update joins the caller's transaction when there is one)."""
        learner = self.learners[name]
        rel = f"learners/{name}/r{rounds_done:06d}"
        final = self.directory / rel
        with staged_checkpoint(final, replace=True) as tmp:
            learner.save(tmp / "state")
            spec = learner.snapshot(tmp / "policy").replace(str(tmp), rel)
        state = {"checkpoint": rel, "round": rounds_done, **(extra_state or {})}
        if first:
            role = next(lc.role for lc in self.config.learners if lc.name == name)
            with self.store.transaction():
                if self.store.has_agent(name):
                    self.store.set_checkpoint(name, final / "policy", spec)
                else:
                    lc = next(lc for lc in self.config.learners if lc.name == name)
                    self.store.add_agent(name, "learner", spec, checkpoint=final / "policy",
                                         info={"league_role": role, "backend": lc.backend})
                self.store.set_state(f"learner/{name}", {**state, "total_steps": 0})
        else:
            self.store.set_checkpoint(name, final / "policy", spec)
            self.store.set_state(f"learner/{name}", state)

    def ratings_from_state(self) -> dict[str, Rating]:
        stored = self.store.get_state("ratings", {}) or {}
        return {n: Rating(n, float(v[0]), float(v[1]), float(v[2]), int(v[3]))
                for n, v in stored.items()}

    def agent(self, name: str) -> Agent:
        """The agent of a league member (snapshots loaded once, after a hash check)."""
        agent = self.agents.get(name)
        if agent is None:
            record = self.store.verify(name)
            agent = make_agent(resolve_spec(record.spec, self.directory), self.game)
            agent.name = name
            self.agents[name] = agent
        return agent

    def training_agent(self, name: str, sample: bool) -> Agent:
        """The agent a learner trains against: learner-made ones sampled when asked."""
        agent = self.agent(name)
        if not sample or name in self.references or not isinstance(agent, PolicyAgent):
            return agent
        sampled = self.sampled.get(name)
        if sampled is None or sampled.inner is not agent:
            sampled = self.sampled[name] = _Sampled(agent)
        return sampled

    # -- a round -------------------------------------------------------------------

    def run_round(self, r: int) -> None:
        cfg = self.config
        self.view.round = r
        reports: dict[str, TrainReport] = {}
        for i, lc in enumerate(cfg.learners):
            picks = self.picks(r, i, lc.name)
            opponents = [self.training_agent(n, lc.sample_opponents) for n, _ in picks]
            self.emit("train", f"{lc.name} trains against "
                      + ", ".join(f"{n} ({w:.2f})" for n, w in picks))
            t = time.perf_counter()
            with self.stop.interruptible_block():
                report = self.learners[lc.name].train(
                    lc.steps_per_round, opponents, [w for _, w in picks])
            self.timing["train"] += time.perf_counter() - t
            reports[lc.name] = report
            self.view.learner_steps[lc.name] = report.total_steps
            if report.games:
                self.view.learner_scores[lc.name] = _mean_score(report)
            self.maybe_snapshot(r, i, lc, report)

        t = time.perf_counter()
        try:
            self.play_rating_matches(r)
        finally:
            self.timing["rating_phase"] += time.perf_counter() - t

        self.emit("commit", f"round {r}: checkpointing")
        t = time.perf_counter()
        ratings = self.rate()
        self.timing["bookkeeping"] += time.perf_counter() - t
        self.commit(r, reports, ratings)

    def picks(self, r: int, i: int, name: str) -> list[tuple[str, float]]:
        """The learner's opponents this round, drawn once and kept in the store."""
        t = time.perf_counter()
        key = f"picks/{r}/{name}"
        stored = self.store.get_state(key)
        if stored is None:
            mm = self.matchmakers[name]
            lc = self.config.learners[i]
            stored = [[n, w] for n, w in mm.pick(name, self.store, _rng(
                self.config.seed, _PICK, r, i), lc.opponents_per_round)]
            self.store.set_state(key, stored)
        self.timing["bookkeeping"] += time.perf_counter() - t
        return [(str(n), float(w)) for n, w in stored]

    def maybe_snapshot(self, r: int, i: int, lc: LearnerConfig, report: TrainReport) -> None:
        own = [a for a in self.store.agents("snapshot") if a.parent == lc.name]
        last = max((int(a.info.get("steps", 0)) for a in own
                    if int(a.info.get("round", -1)) < r), default=0)
        reason = ""
        if lc.snapshot_every is not None and report.total_steps - last >= lc.snapshot_every:
            reason = "steps"
        elif (lc.snapshot_win_rate is not None and report.games
              and _mean_score(report) >= lc.snapshot_win_rate):
            reason = "win_rate"
        if not reason:
            return
        name = f"{lc.name}-r{r:04d}"
        if self.store.has_agent(name):
            return  # written before the league was stopped; the redone round is identical
        t = time.perf_counter()
        rel = f"snapshots/{name}"
        final = self.directory / rel
        with staged_checkpoint(final, replace=True) as tmp:
            spec = self.learners[lc.name].snapshot(tmp / "policy").replace(str(tmp), rel)
        self.store.add_agent(name, "snapshot", spec, checkpoint=final, parent=lc.name,
                             info={"round": r, "order": i, "steps": report.total_steps,
                                   "reason": reason})
        self.timing["checkpoint"] += time.perf_counter() - t
        self.emit("train", f"snapshot {name} ({reason}, {report.total_steps} steps)")

    def rating_pairs(self, r: int) -> list[tuple[str, str]]:
        """The round's rating matches, chosen once (from the log of earlier rounds) and kept."""
        key = f"pairs/{r}"
        stored = self.store.get_state(key)
        if stored is not None:
            return [(str(a), str(b)) for a, b in stored]
        cfg = self.config
        names = [lc.name for lc in cfg.learners]
        pairs: list[tuple[str, str]] = []
        for i, a in enumerate(names):
            pairs += [(a, ref.name) for ref in cfg.references]
            if cfg.evaluation.learners:
                pairs += [(a, b) for b in names[i + 1:]]
        k = cfg.evaluation.snapshots_per_learner
        snaps = [s.name for s in self.store.agents("snapshot")]
        if k and snaps:
            log = self.store.matches()
            rng = _rng(cfg.seed, _EVAL, r)
            for a in names:
                p = pfsp_weights(win_rates(log, a, snaps), "variance") + 1e-6
                chosen = rng.choice(len(snaps), size=min(k, len(snaps)), replace=False,
                                    p=p / p.sum())
                pairs += [(a, snaps[j]) for j in sorted(chosen.tolist())]
        self.store.set_state(key, [list(p) for p in pairs])
        return pairs

    def play_rating_matches(self, r: int) -> None:
        cfg = self.config
        t = time.perf_counter()
        pairs = self.rating_pairs(r)
        self.timing["bookkeeping"] += time.perf_counter() - t
        for j, (a, b) in enumerate(pairs):
            key = f"r{r:06d}/{j:03d}/{a}/{b}"
            t = time.perf_counter()
            done = self.store.has_match(key)
            self.timing["bookkeeping"] += time.perf_counter() - t
            if done:
                continue
            seed = _seed(cfg.seed, _MATCH, r, j)
            n = cfg.evaluation.games_per_pair
            t = time.perf_counter()
            agent_a, agent_b = self.agent(a), self.agent(b)
            self.timing["load"] += time.perf_counter() - t
            t = time.perf_counter()
            first, second = play_pair(self.game, agent_a, agent_b, n, seed,
                                      cfg.evaluation.opening_plies, self.runner)
            dt = time.perf_counter() - t
            self.timing["match"] += dt
            self.view.match_seconds += dt
            self.view.rating_games += n
            t = time.perf_counter()
            self.store.record_match(MatchRecord(key=key, round=r, agent_a=a, agent_b=b,
                                                seed=seed, games=n, a_first=first,
                                                a_second=second))
            self.timing["bookkeeping"] += time.perf_counter() - t
            w, d = first[0] + second[0], first[1] + second[1]
            self.emit("match", f"{a} vs {b}: +{w} ={d} -{n - w - d}")
            if self.stop.requested:
                raise _InterruptedError

    def rate(self) -> dict[str, Rating]:
        names = [a.name for a in self.store.agents()]
        return elo_ratings(self.store.matches(), anchor=self.anchor, names=names)

    def commit(self, r: int, reports: dict[str, TrainReport], ratings: dict[str, Rating]) -> None:
        """End of round ``r``: checkpoints, ratings, curves and the round counter at once."""
        store = self.store
        games = int(store.get_state("games", 0))
        games += sum(rep.games for rep in reports.values())
        games += self.config.evaluation.games_per_pair * len(self.rating_pairs(r))
        t = time.perf_counter()
        wall = float(store.get_state("wall_s", 0.0)) + self.round_wall()
        with store.transaction():
            for name, rep in reports.items():
                self.checkpoint_learner(name, r + 1, extra_state={"total_steps": rep.total_steps,
                                                                  "games": games})
                store.log_scalar(f"learner/{name}/score", r, _mean_score(rep))
                store.log_scalar(f"learner/{name}/steps", r, rep.total_steps)
                for opp, p in rep.win_rate.items():
                    store.log_scalar(f"learner/{name}/win_rate/{opp}", r, p)
                for k, v in rep.extra.items():
                    if math.isfinite(v):
                        store.log_scalar(f"learner/{name}/{k}", r, v)
            for n, rating in ratings.items():
                store.log_scalar(f"elo/{n}", r, rating.elo)
            store.set_state("ratings", {n: [x.elo, x.lo, x.hi, x.games]
                                        for n, x in ratings.items()})
            store.set_state("games", games)
            store.set_state("wall_s", wall)
            store.set_state("round", r + 1)
        self.timing["checkpoint"] += time.perf_counter() - t
        for name in reports:
            self.drop_old_checkpoints(name, r + 1)
        self.write_tensorboard(r, reports, ratings)
        self.view.ratings = ratings
        self.view.games = games
        self.view.rounds_done += 1
        self.emit("done", self.round_line(r, reports, ratings))

    def round_wall(self) -> float:
        now = time.perf_counter()
        dt = now - self._round_start
        self._round_start = now
        return dt

    def drop_old_checkpoints(self, name: str, keep: int) -> None:
        keep_dir = f"r{keep:06d}"
        for d in (self.directory / "learners" / name).glob("r*"):
            if d.is_dir() and d.name != keep_dir:
                shutil.rmtree(d, ignore_errors=True)

    def write_tensorboard(self, r: int, reports: dict[str, TrainReport],
                          ratings: dict[str, Rating]) -> None:
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.directory / "tensorboard"))
        w = self._writer
        for name, rep in reports.items():
            w.add_scalar(f"learner/{name}/score", _mean_score(rep), r)
            for opp, p in rep.win_rate.items():
                w.add_scalar(f"learner/{name}/win_rate/{opp}", p, r)
            for k, v in rep.extra.items():
                w.add_scalar(f"learner/{name}/{k}", v, r)
        for n, rating in ratings.items():
            w.add_scalar(f"elo/{n}", rating.elo, r)
        w.flush()

    def round_line(self, r: int, reports: dict[str, TrainReport],
                   ratings: dict[str, Rating]) -> str:
        parts = [f"round {r}:"]
        for name, rep in reports.items():
            elo = ratings.get(name)
            elo_txt = f" elo {elo.elo:.0f} [{elo.lo:.0f}, {elo.hi:.0f}]" if elo else ""
            parts.append(f"{name} {rep.total_steps} steps, train score "
                         f"{_mean_score(rep):.2f},{elo_txt};")
        parts.append(f"{self.view.games} games, {self.view.games_per_second:.0f} rating games/s")
        return " ".join(parts)

    def emit(self, phase: str, message: str) -> None:
        self.view.phase = phase
        self.view.message = message
        if self.progress is not None:
            self.progress(self.view)

    def stop_reason(self) -> str:
        stop = self.config.stop
        r = int(self.store.get_state("round", 0))
        if stop.max_rounds is not None and r >= stop.max_rounds:
            return "max_rounds"
        if stop.max_games is not None and int(self.store.get_state("games", 0)) >= stop.max_games:
            return "max_games"
        if (stop.max_minutes is not None
                and float(self.store.get_state("wall_s", 0.0)) >= 60 * stop.max_minutes):
            return "max_minutes"
        return ""

    def loop(self) -> tuple[str, int]:
        done = 0
        self._round_start = time.perf_counter()
        while True:
            reason = self.stop_reason()
            if reason:
                return reason, done
            if self.stop.requested:
                raise _InterruptedError
            self.run_round(int(self.store.get_state("round", 0)))
            done += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        for learner in self.learners.values():
            learner.close()


def _mean_score(report: TrainReport) -> float:
    if "score" in report.extra:
        return float(report.extra["score"])
    rates = list(report.win_rate.values())
    return float(np.mean(rates)) if rates else 0.0


def open_or_create(config: LeagueConfig, directory: Path) -> LeagueStore:
    """The league in ``directory``: opened if it exists (same config, ``stop`` aside),
    else created. Nothing is written when the config does not fit.

    Raises:
        TlmError: a league with another config, or a non-empty directory that is not
            a league.
    """
    data = config.model_dump(mode="json")
    if (directory / LeagueStore.DB_NAME).exists():
        store = LeagueStore.open(directory)
        if _config_without_stop(store.config) != _config_without_stop(data):
            store.close()
            raise TlmError(f"{directory} holds a league started with another config "
                           "(only stop: may change when resuming)")
        return store  # new stop: limits apply from now on; the store keeps the first ones
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise TlmError(f"{directory} exists and is neither empty nor a league directory")
    return LeagueStore.create(directory, config.game, data)


def run_league(
    config: LeagueConfig,
    directory: str | Path,
    *,
    progress: Progress | None = None,
    stop: StopRequest | None = None,
    runner: Any = None,
) -> LeagueOutcome:
    """Run (or resume) the league in ``directory`` until a ``stop:`` limit or a signal.

    Args:
        config: the validated config.
        directory: the league directory (created if new; resumed if it holds this
            league).
        progress: called after every training, match and round.
        stop: a :class:`StopRequest` (whose signal handlers the caller installs);
            ``None``: run to the limits.
        runner: where rating matches are played (``None``: in this process).

    Returns:
        how it ended.

    Raises:
        TlmError: a bad config or directory, or a league another live process is running
            (``league D is being written by pid N``); nothing is written then.
    """
    import teachers.league_learners  # noqa: F401  (SB3 agents travel to Ray workers)

    references = check_config(config)
    directory = Path(directory).resolve()
    start = time.perf_counter()
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise TlmError(f"league {directory}: cannot create {directory.parent} "
                       f"({error.strerror})") from None
    with output_lock(directory, what="league"):
        store = open_or_create(config, directory)
        league = _League(config, store, references, progress, stop or StopRequest(), runner)
        try:
            signum = None
            try:
                league.setup()
                reason, done = league.loop()
            except _InterruptedError:
                reason, done = league.stop.reason or "signal", league.view.rounds_done
                signum = league.stop.signum
            ratings = league.view.ratings
            league.timing["total"] = time.perf_counter() - start
            return LeagueOutcome(int(store.get_state("round", 0)), done, reason, signum,
                                 ratings, dict(league.timing), league.view.rating_games)
        finally:
            league.close()
            store.close()
