"""In-context distillation: a recurrent student that learns, inside a series of games, to
exploit the opponent it faces, taught by the exact best response.

The Decision-Pretrained-Transformer recipe (Lee et al. 2023) with a GRU. Each round the
student (sampling its policy, with a share ``epsilon`` of uniformly random moves) plays
series of ``K`` games against every member of a population's training families
(:mod:`distill.population`), through :func:`arena.play_matches` with ``series=K``, so the
games are batched and drawn from the same streams as every match. Every decision it
makes is labelled with the exact best response to the opponent of its series
(:mod:`teachers.best_response`: uniform over the best moves), which the student never
sees: it must tell from the series so far whom it plays. With ``labels="cautious"`` the
label is the :class:`teachers.best_response.CautiousResponse`: the best among the
optimal moves until the opponent has erred in the series, the best response after, so
that the student learns to risk a move the perfect player would punish only against
an opponent that has shown it errs. With ``forced_answers`` N it also waits until the
opponent has shown that it plays its tactics (N blocks, no win or block missed in the
series): the best response's exploits risk a loss against a player that may answer
anything, such as ``random``, which a student cannot yet tell from a player with a habit
to exploit. With ``loss_weight`` the best response it plays then is risk-averse (a loss
costs more than its score of 0): it gives up the exploits whose gain is small beside
the chance of a loss they open.

On connect four, which is not solved here, the label is the search's best response to
the series' opponent (:class:`teachers.search_response.SearchResponse`: the opponent's
reply weighed by its policy, ``alphabeta`` beyond), never cautious, and G is measured
against its minimax twin (``alphabeta:4`` at the default ``response_depth``), played.

The series are kept in a replay of the most recent ones, and the student is fitted on
whole series (``forward_sequence``: decisions and ends of games in order, padding
masked) by cross-entropy to the labels at its decisions, with Adam. A feedforward
control of about the same size is fitted on the same batches, each decision alone.

Every round the students are measured on the held-out families only: the score by game
index within the series of the recurrent student, of the control, and of the recurrent
student with its memory reset at every game
(:class:`distill.incontext_series.MemoryResetAgent`: the same weights, evaluated that
way); the perfect player's and the oracle's scores are exact
(:func:`teachers.best_response.expected_score`). After every round the run checkpoints
into its staging directory (:mod:`arena.runstate`); the same call after a kill goes on
from there and ends with the same students. The output directory holds ``student/``,
``control/``, ``curve.csv``, ``curve.png`` and ``report.json``.

This module holds the run's settings and its loop; the series as data and the fitting
are in :mod:`distill.incontext_series`, the measures and reports in
:mod:`distill.incontext_measures`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from safetensors.torch import load_file as load_tensors
from safetensors.torch import save_file as save_tensors

from arena import (
    Agent,
    PolicyAgent,
    TlmError,
    get_game,
    write_json_atomic,
)
from arena.games import Game
from arena.runstate import (
    RunInterrupted,
    clear_checkpoint,
    empty_directory,
    load_checkpoint,
    refuse_other_settings,
    save_checkpoint,
    settings_defaults,
    staged_directory,
    validated,
)
from distill.config import DistillConfig
from distill.incontext_measures import (
    Players,
    Teacher,
    _write_curve,
    curve_columns,
    derived_seed,
    final_measures,
    series_scores,
    target_checks,
)
from distill.incontext_series import (
    ExploringAgent,
    Replay,
    fit_round,
    play_series,
    series_length,
)
from distill.population import Population, get_population, population_for
from students import (
    RecurrentStudentAgent,
    RecurrentStudentNet,
    StudentNet,
    build_recurrent_student,
    build_student,
    param_count,
    parse_spec,
    save_student,
)
from students.training_state import load_optimizer, save_optimizer
from teachers.best_response import SeriesTeacher
from teachers.search_response import MAX_RESPONSE_DEPTH, SearchResponse

MAX_SERIES_LENGTH = 100
"""The longest series a run trains on."""

FORMAT = "tlm-incontext-checkpoint/1"


class InContextConfig(BaseModel):
    """Everything an in-context distillation run needs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    game: str = Field("tictactoe", description="The game: tictactoe (the best response "
                      "is exact there) or connect_four (a search's best response).")
    student: str = Field("gru:128", description="The recurrent student's spec.")
    control: str = Field("mlp:300x2", description="The feedforward control's spec (about "
                         "the student's parameter count), fitted on the same batches.")
    population: str | None = Field(None, description="The opponent population "
                                   "(distill.population; default: the game's).")
    training: list[str] | None = Field(None, description="Training opponents' specs, in "
                                       "place of the population's.")
    held_out: list[str] | None = Field(None, description="Held-out opponents' specs, in "
                                       "place of the population's.")
    series: int = Field(10, ge=2, le=MAX_SERIES_LENGTH, description="Games per series (K).")
    labels: Literal["best", "cautious"] = Field(
        "cautious", description="best: the exact best response to the series' opponent; "
        "cautious: the best optimal move until the opponent has erred in the series, "
        "the best response after.")
    loss_weight: float = Field(
        0.0, ge=0, le=100, description="What a loss costs the teacher's best response "
        "(win 1, draw 1/2, loss -loss_weight): above 0 it maximises the expected score "
        "minus this times the chance of losing, so it gives up exploits that risk a loss "
        "for little gain (at 1 or 2 its students lost 2-3 games of 10,000 to random, not "
        "3-9, but kept +0.49 to +0.54 G in game 10, not +0.62 to +0.65 G); 0: the exact "
        "best response.")
    forced_answers: int = Field(
        0, ge=0, le=20, description="With cautious labels: the teacher exploits at a risk "
        "only once the opponent has, in the series, blocked its lines this many times and "
        "never missed a win or a block (a player that answers anything, like random, "
        "punishes the best response's risks; at 6 its students lost none of 10,000 games "
        "to random on seeds 0-2, nor of 50,000 more, but kept +0.52 to +0.55 G in game "
        "10, not +0.62 to +0.65 G); 0: as soon as the opponent errs.")
    response_depth: int = Field(
        2, ge=0, le=MAX_RESPONSE_DEPTH, description="connect_four: plies the teacher's "
        "search looks beyond the opponent's reply (teachers.search_response; its twin "
        "without the opponent's policy, alphabeta:(depth + 2), is the reference of G).")
    rounds: int = Field(40, gt=0, description="Rounds of play, labels and fitting.")
    series_per_opponent: int = Field(16, gt=0, description="Series against each training "
                                     "opponent each round.")
    epsilon: float = Field(0.1, ge=0, le=1, description="Share of the student's moves "
                           "played uniformly at random in its training series.")
    replay_series: int = Field(8192, gt=0, description="The most recent series kept to "
                               "fit on.")
    steps_per_round: int = Field(200, gt=0, description="Gradient steps each round.")
    batch_series: int = Field(64, gt=0, description="Series per gradient step.")
    lr: float = Field(1e-3, gt=0, description="Adam's learning rate (of the first round).")
    lr_decay: bool = Field(True, description="Decay the learning rate to zero over the "
                           "rounds (cosine), so the last rounds settle the students.")
    augment: bool = Field(True, description="Show each series in a random symmetric image "
                          "of the board (the population is closed under them).")
    caution: float = Field(3.0, gt=0, description="Weight of the decisions made before the "
                           "opponent's first error in the series (the others weigh 1): "
                           "above 1, the student risks a move the perfect player would "
                           "punish only when surer that the opponent errs.")
    eval_series: int = Field(100, gt=0, description="Series against each held-out "
                             "opponent at each round's measure.")
    eval_training_series: int = Field(20, ge=0, description="Series against each "
                                      "training opponent at each round's measure.")
    final_series: int = Field(1000, gt=0, description="Series against each held-out "
                              "opponent (and perfect and random) at the end.")
    seed: int = Field(0, ge=0, le=2**63 - 1, description="Seeds the students, the games "
                      "and the batches.")
    out: Path = Field(description="Output directory (new or empty).")


def make_incontext_config(**fields: Any) -> InContextConfig:
    """A validated config from fields (``None`` values take the defaults).

    Raises:
        TlmError: a field out of range or unknown (one line).
    """
    return validated(InContextConfig, {k: v for k, v in fields.items() if v is not None},
                     "incontext")


# ------------------------------------------------------------------------ teaching


def series_teacher(opponent: Agent, cautious: bool, loss_weight: float = 0.0,
                   forced_answers: int = 0, depth: int = 2, game: str = "tictactoe"
                   ) -> Teacher:
    """The teacher against ``opponent`` on ``game``: on tic-tac-toe the exact one (see
    :class:`SeriesTeacher`), on connect four the search's (:class:`SearchResponse` to
    ``depth``; never cautious).

    Raises:
        TlmError: the opponent gives no policy over observations.
    """
    if not isinstance(opponent, PolicyAgent) or opponent.needs_state:
        raise TlmError(f"opponent {opponent.name!r} gives no policy over observations: "
                       "a best response needs one")
    if game == "connect_four":
        return SearchResponse(opponent, depth)
    return SeriesTeacher(opponent, cautious=cautious, loss_weight=loss_weight,
                         forced_answers=forced_answers)


# ---------------------------------------------------------------------------- runs

Progress = Callable[[dict[str, Any]], None]


@dataclass
class _Run:
    """A run's resolved parts."""

    config: InContextConfig
    game: Game
    population: Population
    training: list[Agent]
    held_out: list[Agent]
    teachers: list[Teacher]
    held_out_teachers: list[Teacher]


def population_of(name: str | None, training: Sequence[str] | None,
                  held_out: Sequence[str] | None, g: Game
                  ) -> tuple[Population, list[Agent], list[Agent]]:
    """The population called ``name`` (``None``: the game's), its training or held-out
    members replaced by the specs given, and its members as agents.

    Raises:
        TlmError: an unknown population, one of another game, a bad member spec, or an
            empty side.
    """
    base = get_population(name) if name is not None else population_for(g.name)
    if base.game != g.name:
        raise TlmError(f"population {base.name!r} plays {base.game}, not {g.name}")
    population = Population(
        name=base.name if training is None and held_out is None else "custom",
        game=base.game,
        training=tuple(training) if training is not None else base.training,
        held_out=tuple(held_out) if held_out is not None else base.held_out,
    )
    if not population.training or not population.held_out:
        raise TlmError("the population needs at least one training and one held-out opponent")
    return population, population.agents("training", g), population.agents("held_out", g)


def check_incontext(config: InContextConfig
                    ) -> tuple[Game, Population, list[Agent], list[Agent]]:
    """The run's game, population and opponents, every setting checked (cheap: no best
    response is computed), so that bad input is refused before anything is written.

    Raises:
        TlmError: the first problem found.
    """
    g = get_game(config.game)
    population_for(g.name)  # a game without a population of players has no teacher
    if g.name == "connect_four" and (config.labels != "best" or config.loss_weight
                                     or config.forced_answers):
        raise TlmError("on connect_four the teacher is a search's best response: labels "
                       "must be best, loss_weight and forced_answers 0 (they need the "
                       "solved game)")
    if parse_spec(config.student).arch != "gru":
        raise TlmError(f"the student must be recurrent (gru:HIDDEN), got {config.student!r}")
    if parse_spec(config.control).arch == "gru":
        raise TlmError(f"the control must be feedforward (mlp:WxL), got {config.control!r}")
    if config.forced_answers and config.labels != "cautious":
        raise TlmError("forced_answers needs cautious labels (labels: cautious)")
    build_student(config.control, g, config.seed)  # a spec the game cannot take fails here
    return (g, *population_of(config.population, config.training, config.held_out, g))


def _resolve(config: InContextConfig) -> _Run:
    """Everything a run needs, checked before anything is written."""
    g, population, training, held_out = check_incontext(config)
    cautious = config.labels == "cautious"
    def teacher(a: Agent) -> Teacher:
        return series_teacher(a, cautious, config.loss_weight, config.forced_answers,
                              config.response_depth, g.name)

    return _Run(config, g, population, training, held_out,
                [teacher(a) for a in training], [teacher(a) for a in held_out])


def measure_round(run: _Run, players: Players) -> dict[str, float]:
    """The round's measures: score by game index against the held-out families (every
    player) and the training families (the student)."""
    c, k = run.config, run.config.series
    row: dict[str, float] = {}
    for name, agent in players.named():
        scores = series_scores(run.game, agent, run.held_out, c.eval_series, k,
                               derived_seed(c.seed, 3))
        row.update(curve_columns(name, scores.mean(axis=(0, 1))))
    if c.eval_training_series:
        scores = series_scores(run.game, players.student, run.training,
                               c.eval_training_series, k, derived_seed(c.seed, 4))
        by_index = scores.mean(axis=(0, 1))
        row["train_g1"], row[f"train_g{k}"] = float(by_index[0]), float(by_index[-1])
    return row


def round_lr(config: InContextConfig, rnd: int) -> float:
    """The learning rate of round ``rnd``: ``config.lr``, decayed along a half cosine
    over the rounds with ``config.lr_decay`` (the last round's is not zero)."""
    if not config.lr_decay:
        return config.lr
    return config.lr * 0.5 * (1.0 + math.cos(math.pi * rnd / config.rounds))


def _optimizers(net: torch.nn.Module, control: torch.nn.Module | None, lr: float
                ) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer | None]:
    return (torch.optim.Adam(net.parameters(), lr=lr),
            None if control is None else torch.optim.Adam(control.parameters(), lr=lr))


def _save_round(stage: Path, state: dict[str, Any], net: RecurrentStudentNet,
                control: StudentNet | None,
                optimizers: tuple[torch.optim.Optimizer, torch.optim.Optimizer | None],
                replay: Replay) -> None:
    def write(directory: Path) -> None:
        save_tensors({k: v.contiguous() for k, v in net.state_dict().items()},
                     str(directory / "student.safetensors"))
        (directory / "student_optimizer").mkdir()
        save_optimizer(optimizers[0], directory / "student_optimizer")
        if control is not None and optimizers[1] is not None:
            save_tensors({k: v.contiguous() for k, v in control.state_dict().items()},
                         str(directory / "control.safetensors"))
            (directory / "control_optimizer").mkdir()
            save_optimizer(optimizers[1], directory / "control_optimizer")
        replay.save(directory / "replay.safetensors")

    save_checkpoint(stage, state, write)


def _load_round(directory: Path, net: RecurrentStudentNet, control: StudentNet | None,
                optimizers: tuple[torch.optim.Optimizer, torch.optim.Optimizer | None],
                replay: Replay) -> None:
    try:
        net.load_state_dict(load_tensors(str(directory / "student.safetensors")))
        if control is not None and optimizers[1] is not None:
            control.load_state_dict(load_tensors(str(directory / "control.safetensors")))
            load_optimizer(optimizers[1], directory / "control_optimizer")
        replay.load(directory / "replay.safetensors")
    except (OSError, RuntimeError, KeyError, ValueError) as e:
        raise TlmError(f"damaged checkpoint {directory}: {e}") from None
    load_optimizer(optimizers[0], directory / "student_optimizer")


def train_incontext(
    config: InContextConfig,
    progress: Progress | None = None,
    *,
    resume: bool = True,
    stop: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """Run in-context distillation as ``config`` says; write its outputs to ``config.out``.

    Args:
        config: the run's settings.
        progress: called with each round's row of the curve (and, at the end, with
            ``{"phase": "final"}`` before the final measures).
        resume: go on from the checkpoint that a killed or stopped run with the same
            settings left in the staging directory (else start over).
        stop: polled after each round's checkpoint; when it returns true, the run stops
            with :class:`arena.runstate.RunInterrupted`, its staging directory kept.

    Returns:
        The report (also written as ``report.json``).

    Raises:
        TlmError: bad settings (nothing is written), or an unfinished run of other
            settings in the staging directory (it is kept).
    """
    run = _resolve(config)
    g, k = run.game, config.series
    settings = {"format": FORMAT, **config.model_dump(mode="json")}
    net = build_recurrent_student(config.student, g, config.seed)
    control = build_student(config.control, g, config.seed)
    optimizers = _optimizers(net, control, config.lr)
    replay = Replay(config.replay_series, series_length(g, k), g)
    players = Players.of(net, control)
    explorer = ExploringAgent(RecurrentStudentAgent(net, greedy=False), config.epsilon)

    with staged_directory(config.out, resume=True) as stage:
        loaded = load_checkpoint(stage) if resume else None
        state: dict[str, Any]
        if loaded is not None:
            directory, state = loaded
            refuse_other_settings(config.out, state.get("settings"), settings,
                                  defaults=settings_defaults(InContextConfig))
            _load_round(directory, net, control, optimizers, replay)
        else:
            empty_directory(stage)
            state = {"settings": settings, "next_round": 0, "series": 0, "decisions": 0,
                     "wall_s": 0.0, "curve": []}
        for rnd in range(state["next_round"], config.rounds):
            start = time.perf_counter()
            collected = []
            for i, (opponent, teacher) in enumerate(zip(run.training, run.teachers,
                                                        strict=True)):
                batch, _ = play_series(g, explorer, opponent, teacher,
                                       config.series_per_opponent, k,
                                       derived_seed(config.seed, 1, rnd, i))
                collected.append(batch)
            play_s = time.perf_counter() - start
            for batch in collected:
                replay.add(batch)
                state["series"] += len(batch)
                state["decisions"] += batch.decisions
            t = time.perf_counter()
            for optimizer in optimizers:
                for group in [] if optimizer is None else optimizer.param_groups:
                    group["lr"] = round_lr(config, rnd)
            losses = fit_round(net, control, optimizers, replay, config, g,
                               np.random.default_rng(derived_seed(config.seed, 2, rnd)))
            fit_s = time.perf_counter() - t
            t = time.perf_counter()
            measures = measure_round(run, players)
            eval_s = time.perf_counter() - t
            state["wall_s"] += time.perf_counter() - start
            row = {"round": rnd, "games": state["series"] * k, "series": state["series"],
                   "labels": state["decisions"], "lr": round_lr(config, rnd),
                   **losses, **measures, "play_s": play_s, "fit_s": fit_s, "eval_s": eval_s,
                   "wall_s": state["wall_s"]}
            state["curve"].append(row)
            state["next_round"] = rnd + 1
            _save_round(stage, state, net, control, optimizers, replay)
            if progress is not None:
                progress(row)
            if stop is not None and stop() and rnd + 1 < config.rounds:
                raise RunInterrupted(
                    f"stopped after round {rnd + 1} of {config.rounds}; run the same "
                    "command again to resume")
        if progress is not None:
            progress({"phase": "final"})
        t = time.perf_counter()
        final = final_measures(g, players, run.held_out, run.held_out_teachers,
                               config.final_series, k, derived_seed(config.seed, 5))
        report = _finish(stage, run, net, control, state, final,
                         time.perf_counter() - t)
    return report


def _finish(stage: Path, run: _Run, net: RecurrentStudentNet, control: StudentNet | None,
            state: dict[str, Any], final: dict[str, Any], final_s: float) -> dict[str, Any]:
    """Write the students, the curve and the report into ``stage``."""
    c = run.config
    provenance = {"method": "incontext", "labels": c.labels, "loss_weight": c.loss_weight,
                  "forced_answers": c.forced_answers,
                  "population": run.population.name, "series": c.series, "seed": c.seed,
                  "labelled_decisions": state["decisions"]}
    save_student(net, stage / "student", provenance=provenance)
    if control is not None:
        save_student(control, stage / "control", provenance={**provenance, "control": True})
    _write_curve(stage, state["curve"], final)
    report = {
        "game": run.game.name,
        "method": "incontext",
        "student": net.spec,
        "student_params": param_count(net),
        "control": None if control is None else control.spec,
        "control_params": None if control is None else param_count(control),
        "population": {"name": run.population.name, "training": list(run.population.training),
                       "held_out": list(run.population.held_out)},
        "labels": c.labels,
        "loss_weight": c.loss_weight,
        "forced_answers": c.forced_answers,
        "series": state["series"],
        "labelled_decisions": state["decisions"],
        "wall_s": state["wall_s"] + final_s,
        "final": final,
        "targets": target_checks(final),
        "curve_last": state["curve"][-1] if state["curve"] else {},
        "config": c.model_dump(mode="json"),
    }
    write_json_atomic(stage / "report.json", report)
    clear_checkpoint(stage)
    return report


def incontext_config(config: DistillConfig) -> InContextConfig:
    """The in-context run that ``tlm distill --method incontext`` asks for: the game,
    student, seed, output, series length, learning rate, exploration, symmetries and
    gradient steps of ``config`` as they are; its games (``budget_games``, ``games_per_round``) as
    rounds of series against every training opponent, and its ``eval_games`` as series
    against every held-out one.

    Raises:
        TlmError: a teacher other than the best response, or settings out of range.
    """
    if config.teacher != BEST_RESPONSE:
        raise TlmError(f"incontext is taught by the exact best response to each opponent "
                       f"(teacher {BEST_RESPONSE!r}), not {config.teacher!r}")
    rounds, per_opponent, eval_series = series_schedule(config, None)
    exact = get_game(config.game).name == "tictactoe"
    return make_incontext_config(
        game=config.game, student=config.student, seed=config.seed, out=config.out,
        series=config.series, lr=config.lr, epsilon=config.epsilon, augment=config.augment,
        steps_per_round=config.steps_per_round, rounds=rounds,
        series_per_opponent=per_opponent, eval_series=eval_series,
        forced_answers=config.forced_answers,
        labels=None if exact else "best",
    )


def series_schedule(config: DistillConfig, population: str | None) -> tuple[int, int, int]:
    """``(rounds, series per training opponent a round, series per held-out opponent a
    measure)``: the games of ``config`` (``budget_games``, ``games_per_round``,
    ``eval_games``) as series of ``config.series`` games against ``population`` (``None``:
    the game's)."""
    k = config.series
    members = len((get_population(population) if population is not None
                   else population_for(config.game)).training)
    return (-(-config.budget_games // config.games_per_round),
            max(1, config.games_per_round // (k * members)), max(1, config.eval_games // k))


BEST_RESPONSE = "best-response"
"""The teacher that ``tlm distill --method incontext`` names: the best response to each
series' opponent (exact and cautious until it errs on tic-tac-toe, a search's on
connect four)."""


def distill_incontext_run(
    config: DistillConfig, progress: Progress | None = None, *, resume: bool = True,
    stop: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """``tlm distill --method incontext``: :func:`train_incontext` with the settings of
    :func:`incontext_config`."""
    return train_incontext(incontext_config(config), progress, resume=resume, stop=stop)
