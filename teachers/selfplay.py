"""The one self-play loop: a learner against its latest weights, its past and ``random``.

``tlm teach`` trains every backend (SB3 MaskablePPO, RLlib PPO, ...) through
:func:`run_selfplay`, which knows a learner only through the protocol of
:mod:`teachers.learner`; a backend describes its learner with a :class:`LearnerPlan`
(its settings, the learner moves of one round, how to build it). Each round:

1. every ``snapshot_every`` learner moves (and before the first round) the learner
   writes a frozen snapshot, ``snapshots/step_NNNNNNNNN/``, which joins the pool of
   past opponents (:class:`SnapshotPool`);
2. the learner trains one round against three opponents, each episode drawing one
   with the mix's weights (:data:`DEFAULT_MIX`): its current policy, one past snapshot
   drawn uniformly by the loop's generator, and ``random``; learner-made opponents
   sample their policy (:func:`sampling`);
3. a row of ``progress.csv`` (steps, games, wall time, training score, the backend's
   losses) is kept;
4. with ``resume``, the run's checkpoint is replaced
   (:func:`arena.runstate.save_checkpoint`): the learner's :meth:`~teachers.learner.
   Learner.save`, the snapshot names, the loop's generator, the rows and the times;
5. a stop request (a first Ctrl-C, through :class:`arena.runstate.StopHandler`) ends
   the run here with :class:`arena.runstate.RunInterrupted`.

At the end the policy is written to ``main/`` (``summary["policy"]`` is its spec,
relative to the run directory), evaluated against :func:`reference_opponents`, and
``progress.csv`` and ``summary.json`` are written. A run started again on a directory
holding a checkpoint of the same settings goes on from it, to the same weights as a
run never stopped: every round starts new games from generators the checkpoint holds.
A checkpoint of other settings is refused (:func:`arena.runstate.refuse_other_settings`)
before the learner is built. Training goes in whole rounds, so ``steps`` ends at the
requested number rounded up to a round.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import importlib
import io
import json
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from arena.agents import RandomAgent, make_agent
from arena.core import Agent, PolicyAgent, TlmError
from arena.evaluation import evaluate
from arena.games import Game, get_game
from arena.runstate import (
    CHECKPOINT,
    RunInterrupted,
    clear_checkpoint,
    empty_directory,
    load_checkpoint,
    output_path,
    refuse_other_settings,
    save_checkpoint,
    write_bytes_atomic,
    write_json_atomic,
)
from teachers.learner import Learner, TrainReport

DEFAULT_MIX: Mapping[str, float] = {"current": 0.5, "past": 0.4, "random": 0.1}
"""Opponent mix: the learner's current policy, a past snapshot drawn uniformly,
``random``."""

MIX_KEYS = ("current", "past", "random")

SNAPSHOTS = "snapshots"
"""The run's directory of snapshots (``step_NNNNNNNNN/`` each)."""

FINAL = "main"
"""The run's directory of the final policy."""

LEARNER_STATE = "learner"
"""The learner's :meth:`~teachers.learner.Learner.save` inside a checkpoint."""

RUN_PLACEHOLDER = "{run}"
"""Stands for the run's directory in the snapshot specs a checkpoint keeps."""


def opponent_mix(mix: Mapping[str, float] | None) -> dict[str, float]:
    """The weights of ``current``, ``past`` and ``random`` (missing ones weigh zero).

    Raises:
        TlmError: unknown keys, a negative or non-finite weight, or all weights zero.
    """
    given = dict(DEFAULT_MIX if mix is None else mix)
    unknown = set(given) - set(MIX_KEYS)
    if unknown:
        raise TlmError(f"unknown opponent mix keys {sorted(unknown)} (use current, past, random)")
    weights = {k: float(given.get(k, 0.0)) for k in MIX_KEYS}
    if (any(not np.isfinite(w) or w < 0 for w in weights.values())
            or sum(weights.values()) <= 0):
        raise TlmError(f"opponent mix weights must be >= 0 and not all zero, got {given}")
    return weights


def reference_opponents(game: Game) -> list[Agent]:
    """``random`` and, where the game has one, ``heuristic``: what a run is evaluated against."""
    opponents: list[Agent] = [make_agent("random", game)]
    with contextlib.suppress(TlmError):
        opponents.append(make_agent("heuristic", game))
    return opponents


def sampling(agent: Agent) -> Agent:
    """``agent`` playing by sampling its policy: a greedy policy agent is shallow-copied
    (sharing its weights) with ``greedy`` off; any other agent is returned as it is."""
    if isinstance(agent, PolicyAgent) and agent.greedy:
        agent = copy.copy(agent)
        agent.greedy = False
    return agent


class SnapshotPool:
    """The past opponents: snapshots by name, each loaded (sampling) on its first draw.

    Attributes:
        names: the snapshots' names, oldest first.
    """

    def __init__(self, game: Game) -> None:
        self.game = game
        self.names: list[str] = []
        self._specs: dict[str, str] = {}
        self._agents: dict[str, Agent] = {}

    def add(self, name: str, spec: str) -> None:
        """Make the snapshot that ``spec`` loads a past opponent named ``name``."""
        self.names.append(name)
        self._specs[name] = spec

    def spec(self, name: str) -> str:
        """The agent spec of the snapshot ``name``."""
        return self._specs[name]

    def agent(self, name: str) -> Agent:
        """The snapshot ``name`` as a sampling agent, loaded once."""
        agent = self._agents.get(name)
        if agent is None:
            agent = self._agents[name] = sampling(make_agent(self._specs[name], self.game))
        return agent

    def draw(self, rng: np.random.Generator) -> Agent:
        """A snapshot drawn uniformly by ``rng``.

        Raises:
            TlmError: the pool is empty.
        """
        if not self.names:
            raise TlmError("no snapshot to draw a past opponent from")
        return self.agent(self.names[int(rng.integers(len(self.names)))])


@dataclass(frozen=True)
class LearnerPlan:
    """What the loop needs to know of a learner before building it.

    Attributes:
        algo: the algorithm's name (``maskable_ppo``, ``rllib_ppo``).
        settings: the learner's settings as JSON: a checkpoint of other settings is
            refused; written to the summary.
        round_steps: learner moves of one round (one rollout, one training batch).
        build: builds the fresh learner (called once the settings are accepted).
    """

    algo: str
    settings: Mapping[str, Any]
    round_steps: int
    build: Callable[[], Learner]


@dataclass(frozen=True)
class SelfPlayConfig:
    """A self-play run.

    Attributes:
        steps: learner moves to train for (whole rounds).
        seed: the run's seed (the learner's, the loop's generator's, the evaluation's).
        snapshot_every: learner moves between snapshots (``None``: a tenth of the run,
            at least one round).
        opponent_mix: weights of ``current``, ``past`` and ``random`` (``None``:
            :data:`DEFAULT_MIX`).
        eval_games: games against each reference opponent at the end (0: none).
        wall_limit_s: stop after the round that passes this many seconds of training.
    """

    steps: int
    seed: int
    snapshot_every: int | None = None
    opponent_mix: Mapping[str, float] | None = None
    eval_games: int = 200
    wall_limit_s: float | None = None


def run_selfplay(
    plan: LearnerPlan,
    game: str | Game,
    out_dir: str | Path,
    config: SelfPlayConfig,
    *,
    resume: bool = False,
    stop: Callable[[], bool] | None = None,
    resumed: Callable[[int], None] | None = None,
    until: Callable[[TrainReport], bool] | None = None,
) -> dict[str, Any]:
    """Train the learner of ``plan`` by self-play into ``out_dir`` (see the module's doc).

    Args:
        plan: the learner.
        game: the game.
        out_dir: the run's directory (created; a staging directory that is new, or
            holds a run to resume).
        config: steps, seed, snapshots, mix, evaluation, time limit.
        resume: checkpoint after every round, and go on from a checkpoint in
            ``out_dir``; without a checkpoint, ``out_dir`` is emptied first.
        stop: asked after every round (and its checkpoint): ``True`` ends the run
            there (a :class:`arena.runstate.StopHandler` is one).
        resumed: called with the checkpoint's step when one is resumed.
        until: asked with every round's report: ``True`` ends training there (a
            backend's own stopping rule), as the last round.

    Returns:
        The summary.

    Raises:
        TlmError: bad steps, rounds or mix; a damaged checkpoint.
        arena.runstate.ResumeRefusedError: ``out_dir`` holds a checkpoint of other
            settings (left as it was).
        arena.runstate.RunInterrupted: ``stop`` asked for a stop (the checkpoint stands).
    """
    g = get_game(game)
    steps = config.steps
    if steps <= 0:
        raise TlmError(f"steps must be positive, got {steps}")
    if plan.round_steps <= 0:
        raise TlmError(f"a round must have positive steps, got {plan.round_steps}")
    mix = opponent_mix(config.opponent_mix)
    every = (max(plan.round_steps, steps // 10) if config.snapshot_every is None
             else int(config.snapshot_every))
    if every <= 0:
        raise TlmError(f"snapshot_every must be positive, got {config.snapshot_every}")
    out = Path(out_dir)
    run_settings = json.loads(json.dumps({
        "game": g.name, "algo": plan.algo, "steps": steps, "seed": config.seed,
        "settings": dict(plan.settings), "opponent_mix": mix, "snapshot_every": every,
        "wall_limit_s": config.wall_limit_s,
    }))
    out.mkdir(parents=True, exist_ok=True)
    # Everything is checked before the learner is built or anything in out_dir changes.
    checkpoint = load_checkpoint(out) if resume else None
    if checkpoint is not None:
        refuse_other_settings(output_path(out), checkpoint[1].get("settings"), run_settings)
        if resumed is not None:
            resumed(int(checkpoint[1]["total_steps"]))
        _keep_only(out, (CHECKPOINT, SNAPSHOTS))  # what a run killed after its loop wrote
        _keep_only(out / SNAPSHOTS, checkpoint[1]["snapshots"], required=True)
    elif resume:
        empty_directory(out)  # a run killed before its first checkpoint starts over
    (out / SNAPSHOTS).mkdir(exist_ok=True)

    learner = plan.build()
    try:
        loop = _Loop(learner, g, out, mix, every, plan.round_steps, config)
        if checkpoint is not None:
            loop.restore(*checkpoint)
        loop.run(run_settings if resume else None, stop, until)
        return loop.finish(plan, run_settings, resume,
                           None if checkpoint is None else int(checkpoint[1]["total_steps"]))
    finally:
        learner.close()


class _Loop:
    """One run of :func:`run_selfplay` over a built learner."""

    def __init__(self, learner: Learner, game: Game, out: Path, mix: dict[str, float],
                 every: int, round_steps: int, config: SelfPlayConfig) -> None:
        self.learner = learner
        self.game = game
        self.out = out
        self.weights = [mix[k] for k in MIX_KEYS]
        self.every = every
        self.round_steps = round_steps
        self.config = config
        self.rng = np.random.default_rng(np.random.SeedSequence([config.seed, 1]))
        self.pool = SnapshotPool(game)
        self.random_agent = RandomAgent()
        self.rows: list[dict[str, Any]] = []
        self.total_steps = 0
        self.last_snapshot = -every
        self.finished = False
        self.done_seconds = 0.0
        self.checkpoint_seconds = 0.0
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        """Seconds of training, those before a resume included."""
        return self.done_seconds + time.perf_counter() - self.start

    def snapshot(self) -> None:
        name = f"step_{self.total_steps:09d}"
        self.pool.add(name, self.learner.snapshot(self.out / SNAPSHOTS / name))
        self.last_snapshot = self.total_steps

    def restore(self, directory: Path, state: Mapping[str, Any]) -> None:
        """Put the learner and the loop back where the checkpoint was."""
        self.learner.restore(directory / LEARNER_STATE)
        self.rng.bit_generator.state = state["rng"]
        for name, spec in zip(state["snapshots"], state["snapshot_specs"], strict=True):
            self.pool.add(str(name), str(spec).replace(RUN_PLACEHOLDER, str(self.out)))
        self.rows = list(state["rows"])
        self.total_steps = int(state["total_steps"])
        self.last_snapshot = int(state["last_snapshot"])
        self.finished = bool(state["finished"])
        self.done_seconds = float(state["train_seconds"])
        self.checkpoint_seconds = float(state["checkpoint_seconds"])

    def run(self, settings: Mapping[str, Any] | None, stop: Callable[[], bool] | None,
            until: Callable[[TrainReport], bool] | None) -> None:
        """Rounds until the steps (or the time limit) are reached; checkpoints when
        ``settings`` are given."""
        steps, limit = self.config.steps, self.config.wall_limit_s
        while not self.finished:
            if self.total_steps - self.last_snapshot >= self.every:
                self.snapshot()
            current = sampling(self.learner.agent())
            past = self.pool.draw(self.rng)
            todo = min(self.round_steps, steps - self.total_steps)
            report = self.learner.train(todo, [current, past, self.random_agent], self.weights)
            self.total_steps = report.total_steps
            self.rows.append({
                "total_steps": report.total_steps, "games": report.games,
                "wall_s": round(self.elapsed(), 3),
                "score": report.extra.get("score", float("nan")),
                "score_vs_random": report.win_rate.get("random", float("nan")),
                **{k: v for k, v in report.extra.items() if k != "score"},
            })
            self.finished = (self.total_steps >= steps
                             or (limit is not None and self.elapsed() >= limit)
                             or (until is not None and until(report)))
            if settings is not None:
                self.save(settings)
            if stop is not None and stop():
                raise RunInterrupted(f"stopped at step {self.total_steps}")

    def save(self, settings: Mapping[str, Any]) -> None:
        begin = time.perf_counter()
        save_checkpoint(self.out, {
            "settings": settings, "total_steps": self.total_steps,
            "rng": self.rng.bit_generator.state, "snapshots": self.pool.names,
            "snapshot_specs": [self.pool.spec(n).replace(str(self.out), RUN_PLACEHOLDER)
                               for n in self.pool.names],
            "last_snapshot": self.last_snapshot, "rows": self.rows,
            "finished": self.finished, "train_seconds": self.elapsed(),
            "checkpoint_seconds": self.checkpoint_seconds,
        }, lambda directory: self.learner.save(directory / LEARNER_STATE))
        self.checkpoint_seconds += time.perf_counter() - begin

    def finish(self, plan: LearnerPlan, settings: Mapping[str, Any], resume: bool,
               resumed_at: int | None) -> dict[str, Any]:
        """The final policy, its evaluation, ``progress.csv`` and ``summary.json``."""
        train_seconds = self.elapsed()
        spec = self.learner.snapshot(self.out / FINAL)
        evaluation = []
        if self.config.eval_games > 0:
            rows = evaluate(self.game, self.learner.agent(), reference_opponents(self.game),
                            self.config.eval_games, seed=self.config.seed)
            evaluation = [r.as_json() for r in rows]
        summary: dict[str, Any] = {
            "game": self.game.name, "algo": plan.algo, "seed": self.config.seed,
            "steps": self.total_steps, "games": int(sum(r["games"] for r in self.rows)),
            "settings": settings["settings"], "opponent_mix": settings["opponent_mix"],
            "snapshot_every": self.every, "round_steps": self.round_steps,
            "snapshots": list(self.pool.names),
            "policy": spec.replace(f"{self.out}/", ""),
            "evaluation": evaluation,
            "train_seconds": round(train_seconds, 3),
            "wall_seconds": round(time.perf_counter() - self.start, 3),
        }
        if resume:
            summary["checkpoint_seconds"] = round(self.checkpoint_seconds, 3)
        if resumed_at is not None:
            summary["resumed_at_step"] = resumed_at
        _write_csv(self.out / "progress.csv", self.rows)
        write_json_atomic(self.out / "summary.json", summary)
        clear_checkpoint(self.out)
        return summary


def _keep_only(directory: Path, names: Sequence[str], required: bool = False) -> None:
    """Remove from ``directory`` every entry not named in ``names``.

    Raises:
        TlmError: ``required`` and a named entry is missing.
    """
    if required:
        for name in names:
            if not (directory / name).exists():
                raise TlmError(f"damaged checkpoint: snapshot {directory / name} is missing")
    keep = set(names)
    for path in directory.iterdir():
        if path.name not in keep:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    keys: list[str] = []
    for row in rows:
        keys.extend(k for k in row if k not in keys)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys)
    writer.writeheader()
    writer.writerows(rows)
    write_bytes_atomic(path, buf.getvalue().encode())


TEACH_ALGOS: Mapping[str, str] = {
    "maskable_ppo": "teachers.sb3.learner:sb3_plan",
    "rllib_ppo": "teachers.rllib.settings:rllib_plan",
}
"""``tlm teach --algo`` names -> the function ``plan(game, seed)`` of the backend's
default learner (imported when asked for, so RLlib loads only for ``rllib_ppo``)."""


def teach_plan(algo: str, game: Game, seed: int) -> LearnerPlan:
    """The default learner of ``algo`` for ``game``, seeded with ``seed``.

    Raises:
        TlmError: an unknown algorithm.
    """
    target = TEACH_ALGOS.get(algo)
    if target is None:
        raise TlmError(f"unknown teaching algorithm {algo!r} (known: {', '.join(TEACH_ALGOS)})")
    module, _, name = target.partition(":")
    plan: LearnerPlan = getattr(importlib.import_module(module), name)(game, seed)
    return plan
