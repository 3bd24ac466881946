"""Training a teaching policy (:mod:`distill.teaching_policy`) across many student runs,
by the cross-entropy method (``tlm teaching-policy train``).

A *student run* is one ``--method learned`` distillation (:func:`distill.run.distill`,
the run a user gets) of a fresh student with a candidate policy; its cost is the labels
it spent when it first met the run's goal (``labels_to_target``), or twice the label
budget if it never did. Each generation draws ``population`` candidate parameter
vectors from a diagonal Gaussian around the current policy (the mean), and every
candidate, the mean among them, teaches the same ``pairs`` students (architecture and
seed drawn from the training population, the same for every candidate: common random
numbers, so candidates are compared on equal students). A candidate's fitness is the
mean over its students of ``log(cost)``, so a 10% saving counts the same on a student
that needs 300 labels as on one that needs 3,000. The ``elites`` fittest move the
Gaussian: its mean and spread become a ``smoothing`` blend of the elites' and the old
ones (the spread never under ``min_std``). After the last generation the mean teaches
one more set of students alone, the last point of the curve; the mean is the policy.

With ``warm_start`` (the default) a generation comes first in which the uniform
mixture and each strategy alone (a policy that gives it :data:`WARM_SHARE` of the
games whatever the state) teach its students; the method starts from the fittest of
them, so a policy begins where the best fixed strategy is and learns what beats it.

Every random draw of a generation (candidates, students) comes from ``(seed,
generation)``, and a student run depends only on its candidate, student and seed (each
runs with one torch thread), so the same seed gives the same policy whether the runs are
played here or on a runner's Ray workers, in any order. The run checkpoints after
every student run (:func:`arena.runstate.save_checkpoint`; runs of under
:data:`CHECKPOINT_EVERY_S` a few at a time): killed, the same command goes on from the
last checkpointed student run. The output directory (the policy's
``policy.safetensors`` and ``policy.json``, ``curve.csv`` and ``curve.png``: labels to
the target per generation, ``report.json``) appears when the run is complete.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from arena import Game, TlmError, get_game, write_json_atomic
from arena.runners import Job, LocalRunner, Runner, Shard
from arena.runstate import (
    RunInterrupted,
    empty_directory,
    load_checkpoint,
    refuse_other_settings,
    save_checkpoint,
    settings_defaults,
    staged_directory,
    validated,
)
from distill.config import DistillConfig, make_config
from distill.curves import Panel, write_curve
from distill.teaching_policy import TeachingPolicy

CHECKPOINT_FORMAT = "tlm-teaching-train-checkpoint/1"

TRAIN_STUDENTS = ["mlp:16x2", "mlp:32x2", "mlp:64x2", "mlp:128x2"]
"""The training population's architectures: MLPs of four widths (their seeds are drawn
each generation). Convolutional and residual students are held out, for the benchmark."""

CHECKPOINT_EVERY_S = 5.0
"""Within a generation, a finished student run is checkpointed if the last checkpoint
is this old (a real student run takes longer: each is checkpointed)."""

WARM_SHARE = 0.99
"""The share of the games a warm start's candidate gives its strategy (the rest, split
among the others, rounds to no game at the presets' games a round)."""

FAIL_FACTOR = 2.0
"""A student run that never meets its goal costs this many times the label budget."""


class TeachingTrainConfig(BaseModel):
    """Everything a teaching-policy training run needs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    game: str = Field(description="Game name from the registry.")
    teacher: str = Field(description="Teacher agent spec of every student run.")
    out: Path = Field(description="Output directory (new or empty).")
    students: list[str] = Field(
        default_factory=lambda: list(TRAIN_STUDENTS),
        description="Student architectures of the training population, taken in turn.")
    arms: list[str] | None = Field(
        None, description="The strategies the policy shares games among (default: the "
        "game's standard arms and review).")
    hidden: list[int] = Field(
        default_factory=list, description="Hidden layer sizes of the policy (none: a "
        "linear softmax).")
    generations: int = Field(8, gt=0, le=1000, description="Generations of the method.")
    population: int = Field(8, gt=0, le=1000, description="Candidates a generation "
                            "(besides the current policy).")
    elites: int = Field(3, gt=0, description="Fittest candidates that move the policy.")
    pairs: int = Field(4, gt=0, le=1000, description="Students each candidate teaches a "
                       "generation (the same students for every candidate).")
    warm_start: bool = Field(True, description="First try the uniform mixture and each "
                             "strategy alone, and start from the fittest.")
    init_std: float = Field(1.0, gt=0, description="Initial spread of the candidates.")
    min_std: float = Field(0.15, ge=0, description="Smallest spread.")
    smoothing: float = Field(0.7, gt=0, le=1, description="Weight of the elites in the "
                             "new mean and spread.")
    seed: int = Field(0, ge=0, le=2**63 - 1, description="Seeds candidates and students.")
    games_per_round: int | None = Field(
        None, gt=0, description="Games a round of every student run (default: the learned "
        "preset's).")
    steps_per_round: int | None = Field(
        None, gt=0, description="Gradient steps a round (default: the preset's).")
    budget_games: int | None = Field(
        None, gt=0, description="Games of a student run at most (default: the preset's).")
    label_budget: int | None = Field(
        None, gt=0, description="Labels of a student run at most (default: the preset's).")

    @field_validator("students")
    @classmethod
    def _some_student(cls, students: list[str]) -> list[str]:
        if not students:
            raise ValueError("the training population needs at least one student")
        return students

    @field_validator("arms")
    @classmethod
    def _known_arms(cls, arms: list[str] | None) -> list[str] | None:
        from distill.strategies import make_arm

        for name in arms or []:
            try:
                make_arm(name)
            except TlmError as e:
                raise ValueError(str(e)) from None
        return arms

    @field_validator("hidden")
    @classmethod
    def _sizes(cls, hidden: list[int]) -> list[int]:
        if any(h < 1 or h > 256 for h in hidden):
            raise ValueError("hidden layer sizes must lie in 1..256")
        return hidden

    @model_validator(mode="after")
    def _elites_fit(self) -> TeachingTrainConfig:
        if self.elites > self.population + 1:
            raise ValueError(f"elites ({self.elites}) exceed the candidates "
                             f"({self.population} and the policy)")
        return self


def make_train_config(**fields: Any) -> TeachingTrainConfig:
    """A validated config from fields (``None`` values fall back to defaults)."""
    return validated(TeachingTrainConfig, {k: v for k, v in fields.items() if v is not None},
                     "teaching-policy")


def run_config(config: TeachingTrainConfig, out: Path, **fields: Any) -> DistillConfig:
    """The settings of one student run: the learned preset of the game, the config's
    settings of the runs over it, then ``fields``."""
    from distill.presets import preset_for

    base = {**preset_for(config.game, "learned"), "teacher": config.teacher, "out": out}
    for key in ("games_per_round", "steps_per_round", "budget_games", "label_budget"):
        if getattr(config, key) is not None:
            base[key] = getattr(config, key)
    return make_config(**{**base, **fields})


@dataclass(frozen=True)
class StudentRun:
    """One student run: a candidate policy's parameters, the student and its seed."""

    theta: tuple[float, ...]
    student: str
    seed: int


@dataclass(frozen=True)
class RunContext:
    """What every student run of a generation shares (plain data and a module-level
    function, for Ray workers)."""

    settings: dict[str, Any]
    """The student runs' DistillConfig fields but the student, seed, out and policy."""
    strategies: list[str]
    games: list[str]
    hidden: list[int]
    runs: list[StudentRun]
    teach: Callable[[RunContext, StudentRun], dict[str, Any]]
    """Runs one student: :func:`teach_student`."""

    def policy(self, theta: tuple[float, ...]) -> TeachingPolicy:
        """The candidate policy of parameters ``theta``, as its file would hold it."""
        template = TeachingPolicy.zeros(self.strategies, self.games, self.hidden)
        return template.with_vector(np.array(theta)).as_float32()


def _same(payload: RunContext) -> RunContext:
    return payload


def teach_student(context: RunContext, run: StudentRun, keep_rounds: bool = False
                  ) -> dict[str, Any]:
    """One student run (``tlm distill --method learned``, in this process, with one torch
    thread): what it cost, and with ``keep_rounds`` every round's row of its curve."""
    import torch

    from distill.run import distill

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    rows: list[dict[str, Any]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="tlm-teach-") as scratch:
            context.policy(run.theta).save(Path(scratch) / "policy")
            config = make_config(**{**context.settings, "student": run.student,
                                    "seed": run.seed, "out": Path(scratch) / "run",
                                    "teaching_policy": Path(scratch) / "policy.json"})
            report = distill(config, progress=rows.append if keep_rounds else None)
    finally:
        torch.set_num_threads(threads)
    result = {"labels_to_target": report["labels_to_target"],
              "labels": int(report["labels_spent"]),
              "rounds": int(report["final"].get("round", -1)) + 1,
              "wall_s": float(report["wall_s"]),
              "shares": report["shares"]}
    if keep_rounds:
        result["curve"] = rows
    return result


def _run_shard(context: RunContext, shard: Shard) -> dict[str, Any]:
    return context.teach(context, context.runs[shard.index])


def run_cost(result: dict[str, Any], label_budget: int) -> float:
    """A student run's cost: its labels to the target, or :data:`FAIL_FACTOR` times the
    label budget if it never met it."""
    reached = result["labels_to_target"]
    return float(reached) if reached is not None else FAIL_FACTOR * label_budget


@dataclass(frozen=True)
class Generation:
    """A generation's candidates (row 0: the current policy) and its students."""

    thetas: np.ndarray
    students: list[tuple[str, int]]

    @property
    def runs(self) -> list[tuple[int, str, int]]:
        """``(candidate, student, seed)`` of every run, candidate by candidate."""
        return [(i, s, seed) for i in range(len(self.thetas)) for s, seed in self.students]


def last_generation(config: TeachingTrainConfig) -> int:
    """The index of the final generation (the policy alone): after the warm start, if
    any, and the method's generations."""
    return config.generations + int(config.warm_start)


def arm_thetas(n_arms: int, dim: int) -> np.ndarray:
    """The parameters of the policies that each give one strategy :data:`WARM_SHARE` of
    the games whatever the state: zero weights, and a last-layer bias (the last
    ``n_arms`` parameters) that favours the strategy."""
    thetas = np.zeros((n_arms, dim))
    if n_arms > 1:
        bias = math.log(WARM_SHARE * (n_arms - 1) / (1.0 - WARM_SHARE))
        thetas[np.arange(n_arms), dim - n_arms + np.arange(n_arms)] = bias
    return thetas


def generation_plan(config: TeachingTrainConfig, gen: int, mean: np.ndarray,
                    std: np.ndarray, n_arms: int) -> Generation:
    """Generation ``gen``'s candidates and students, drawn from ``(seed, gen)``: the
    warm start's (``gen == 0`` with ``warm_start``) are the policy and each strategy
    alone, the final one's (``gen == last_generation(config)``) the policy alone."""
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, gen]))
    seeds = rng.integers(0, 2**31 - 1, size=config.pairs)
    n = len(config.students)
    students = [(config.students[(gen * config.pairs + k) % n], int(seeds[k]))
                for k in range(config.pairs)]
    if gen >= last_generation(config):
        return Generation(mean[None, :].copy(), students)
    if config.warm_start and gen == 0:
        return Generation(np.vstack([mean, arm_thetas(n_arms, len(mean))]), students)
    noise = rng.standard_normal((config.population, len(mean)))
    return Generation(np.vstack([mean, mean + std * noise]), students)


def cem_update(config: TeachingTrainConfig, plan: Generation, costs: np.ndarray,
               mean: np.ndarray, std: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The new mean and spread from ``costs[candidate, student]``, and each candidate's
    fitness (mean log cost: lower is fitter)."""
    fitness = np.log(costs).mean(axis=1)
    elite = plan.thetas[np.argsort(fitness, kind="stable")[:config.elites]]
    a = config.smoothing
    new_mean = (1 - a) * mean + a * elite.mean(axis=0)
    new_std = np.maximum((1 - a) * std + a * elite.std(axis=0), config.min_std)
    return new_mean, new_std, fitness


@dataclass
class TrainState:
    """Where a training run stands: the Gaussian, the next generation, the curve, and
    the results of the current generation's finished runs (a prefix of its runs)."""

    generation: int
    mean: list[float]
    std: list[float]
    curve: list[dict[str, Any]]
    partial: list[dict[str, Any]]
    wall_s: float = 0.0
    warm: dict[str, float] = field(default_factory=dict)
    """The warm start's geometric-mean labels of the uniform mixture and each strategy."""


Progress = Callable[[dict[str, Any]], None]


def training_arms(config: TeachingTrainConfig) -> list[str]:
    """The strategies the policy shares games among: the config's, or the game's
    (:func:`distill.strategies.teaching_arms`)."""
    from distill.strategies import teaching_arms

    return list(config.arms) if config.arms is not None else teaching_arms(get_game(config.game))


def total_runs(config: TeachingTrainConfig) -> int:
    """Student runs of a whole training run."""
    warm = (len(training_arms(config)) + 1) * config.pairs if config.warm_start else 0
    return warm + config.generations * (config.population + 1) * config.pairs + config.pairs


def _curve_row(gen: int, plan: Generation, results: list[dict[str, Any]], costs: np.ndarray,
               strategies: list[str], std: np.ndarray, wall_s: float) -> dict[str, Any]:
    policy = results[:len(plan.students)]  # candidate 0 is the policy
    fitness = np.log(costs).mean(axis=1)
    best = int(np.argmin(fitness))
    row: dict[str, Any] = {
        "generation": gen,
        "policy_median_labels": float(np.median(costs[0])),
        "policy_reached": sum(r["labels_to_target"] is not None for r in policy),
        "policy_geomean_labels": float(math.exp(fitness[0])),
        "best_geomean_labels": float(math.exp(fitness[best])),
        "population_median_labels": float(np.median(costs)),
        "reached_share": float(np.mean([r["labels_to_target"] is not None for r in results])),
        "std_mean": float(std.mean()),
        "students": len(plan.students),
        "candidates": len(plan.thetas),
        "wall_s": wall_s,
    }
    for name in strategies:
        row[f"share_{name}"] = float(np.mean([r["shares"][name] for r in policy]))
    return row


CURVE_PANELS = [
    Panel(x="generation", xlabel="generation", ylabel="labels to the target",
          keys=("policy_median_labels", "policy_geomean_labels", "best_geomean_labels",
                "population_median_labels"), ylim=None, legend="upper right"),
    Panel(x="generation", xlabel="generation", ylabel="the policy's share of games",
          keys=("share_",)),
]


def train_teaching_policy(
    config: TeachingTrainConfig,
    progress: Progress | None = None,
    *,
    resume: bool = True,
    stop: Callable[[], bool] | None = None,
    runner: Runner | None = None,
    teach: Callable[[RunContext, StudentRun], dict[str, Any]] = teach_student,
) -> dict[str, Any]:
    """Train a teaching policy as ``config`` says; write it and its curve to
    ``config.out``.

    Args:
        config: the training run's settings.
        progress: called with ``{"runs": finished student runs}`` after each student run
            and with each generation's row of the curve (``"generation"`` in it).
        resume: go on from the checkpoint a killed or stopped run with the same settings
            left (else start over).
        stop: polled after each student run; when it returns true the run stops with
            :class:`arena.runstate.RunInterrupted`, resumable.
        runner: where the student runs go (:func:`arena.make_runner`; default here).
        teach: runs one student (a module-level function, for Ray workers): its result
            has ``labels_to_target``, ``shares`` (by strategy) and ``wall_s``.

    Returns:
        The report (also ``report.json``).

    Raises:
        TlmError: a bad setting (before anything is written).
        arena.runstate.ResumeRefusedError: a checkpoint of other settings.
    """
    g: Game = get_game(config.game)
    arms = training_arms(config)  # the config's are checked when it is made
    probe_settings = run_config(config, Path("unused"), student=config.students[0])
    if probe_settings.label_budget is None:
        raise TlmError("a teaching policy's student runs need a label budget")
    budget = probe_settings.label_budget
    from students import parse_spec

    for spec in config.students:
        parse_spec(spec)
    settings = {k: v for k, v in probe_settings.model_dump().items()
                if k not in ("student", "seed", "out", "teaching_policy")}
    settings["arms"] = arms
    template = TeachingPolicy.zeros(arms, [g.name], config.hidden)
    dim = template.size()
    check = {"format": CHECKPOINT_FORMAT,
             **config.model_dump(mode="json", exclude={"out"})}
    runner = runner or LocalRunner()

    with staged_directory(config.out, resume=True) as stage:
        found = load_checkpoint(stage) if resume else None
        if found is None:
            empty_directory(stage)
            state = TrainState(0, [0.0] * dim, [config.init_std] * dim, [], [])
        else:
            refuse_other_settings(config.out, found[1].get("settings"), check,
                                  defaults=settings_defaults(TeachingTrainConfig))
            try:
                info = found[1]
                state = TrainState(int(info["generation"]), list(info["mean"]),
                                   list(info["std"]), list(info["curve"]),
                                   list(info["partial"]), float(info["wall_s"]),
                                   {str(k): float(v) for k, v in info.get("warm", {}).items()})
                if len(state.mean) != dim or len(state.std) != dim:
                    raise ValueError(f"{len(state.mean)} parameters, expected {dim}")
            except (KeyError, TypeError, ValueError) as e:
                raise TlmError(f"damaged checkpoint in {stage}: {e}") from None

        def checkpoint() -> None:
            save_checkpoint(stage, {"settings": check, **state.__dict__})

        last = last_generation(config)
        done = sum(len(generation_plan(config, k, np.zeros(dim), np.ones(dim), len(arms)).runs)
                   for k in range(state.generation)) + len(state.partial)
        clock = saved = time.perf_counter()
        for gen in range(state.generation, last + 1):
            mean, std = np.array(state.mean), np.array(state.std)
            plan = generation_plan(config, gen, mean, std, len(arms))
            runs = [StudentRun(tuple(float(x) for x in plan.thetas[i]), s, seed)
                    for i, s, seed in plan.runs]
            context = RunContext(settings, arms, [g.name], list(config.hidden), runs, teach)
            todo = [Shard(index=i, start=i, n_games=1, seed=np.random.SeedSequence(0),
                          first_seat=0) for i in range(len(state.partial), len(runs))]
            job = Job(work=_run_shard, context=context, payload=partial(_same, context),
                      setup=_same)
            for result in runner.map(job, todo):
                state.partial.append(result)
                now = time.perf_counter()
                state.wall_s, clock = state.wall_s + now - clock, now
                if now - saved >= CHECKPOINT_EVERY_S:
                    checkpoint()
                    saved = now
                done += 1
                if progress is not None:
                    progress({"runs": done})
                if stop is not None and stop() and len(state.partial) < len(runs):
                    checkpoint()
                    raise RunInterrupted(f"stopped after {done} student runs; run the same "
                                         "command again to resume")
            costs = np.array([run_cost(r, budget) for r in state.partial]
                             ).reshape(len(plan.thetas), len(plan.students))
            if config.warm_start and gen == 0:
                fitness = np.log(costs).mean(axis=1)
                state.warm = {n: float(math.exp(f))
                              for n, f in zip(["uniform", *arms], fitness, strict=True)}
                new_mean, new_std = plan.thetas[int(np.argmin(fitness))].copy(), std
            elif gen < last:
                new_mean, new_std, _ = cem_update(config, plan, costs, mean, std)
            else:
                new_mean, new_std = mean, std
            row = _curve_row(gen, plan, state.partial, costs, arms, std, state.wall_s)
            state.curve.append(row)
            state.mean, state.std = new_mean.tolist(), new_std.tolist()
            state.generation, state.partial = gen + 1, []
            checkpoint()
            saved = time.perf_counter()
            if progress is not None:
                progress(row)
            if stop is not None and stop() and gen < last:
                raise RunInterrupted(f"stopped after generation {gen}; run the same "
                                     "command again to resume")

        final = state.curve[-1]
        policy = template.with_vector(np.array(state.mean)).as_float32()
        policy.info = {
            "method": "cross-entropy method over student runs (distill.teaching_train)",
            "teacher": config.teacher, "students": config.students, "seed": config.seed,
            "generations": config.generations, "population": config.population,
            "elites": config.elites, "pairs": config.pairs,
            "student_runs": total_runs(config),
            "runs": {k: settings[k] for k in ("games_per_round", "steps_per_round",
                                               "budget_games", "label_budget",
                                               "stop_when_perfect", "target")},
            "warm_start": state.warm,
            "final_median_labels": final["policy_median_labels"],
            "final_reached": f"{final['policy_reached']}/{final['students']}",
        }
        policy.save(stage / "policy")
        write_curve(stage, state.curve, CURVE_PANELS)
        from arena.runstate import clear_checkpoint

        clear_checkpoint(stage)
        report = {
            "game": g.name,
            "teacher": config.teacher,
            "strategies": arms,
            "parameters": dim,
            "student_runs": total_runs(config),
            "wall_s": state.wall_s,
            "curve": state.curve,
            "warm_start": state.warm,
            "policy": "policy.json",
            "config": config.model_dump(mode="json"),
        }
        write_json_atomic(stage / "report.json", report)
    return report
