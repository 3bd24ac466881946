"""Distillation runs: one round loop over teaching strategies that turns a teacher into
a freshly initialized student, measured as it learns.

Each round, the run's strategy (:mod:`distill.strategies`: offline, DAgger, the
adaptive teacher and its arms) plays ``games_per_round`` games (or takes them from a
dataset) and has the teacher label the positions it picks into the run's
:class:`distill.store.PositionStore`; then the student takes ``steps_per_round``
gradient steps on batches sampled from the whole store (recent positions weighted up;
:func:`distill.train.fit_steps`) and is measured on what it never trained on (scores
against fixed opponents, a solved-positions file, exact strength on tic-tac-toe, top-1
agreement with the teacher on held-out teacher games); the round is checkpointed
(:mod:`distill.checkpoint`) and the stopping rules are read: the budget of games,
perfect play, a target of the probe, a budget of labels. Each row of the curve says
where the round's time went (playing, labelling, fitting, evaluating). Given a runner
(:func:`arena.make_runner`), the games are played on its Ray workers, with the same
games as in this process; labelling, fitting and measuring stay here.

The same command run again after a kill goes on from the last checkpoint; ``stop``
(a :class:`arena.runstate.StopHandler`) ends a run after a round, resumable. The output
directory (student checkpoint, curve CSV and PNG, TensorBoard scalars, JSON report)
appears only when the run is complete (with ``keep_positions``, the teacher-labelled
positions too, in ``OUT/positions``). ``--method kickstart`` (PPO with a distillation
term, :mod:`distill.kickstart`) trains in its own loop: its student learns from its
own returns in SB3's rollouts, not from a store of labelled positions. ``--method
incontext`` (:mod:`distill.incontext`) has its own loop too: a recurrent student plays
series of games against a population of opponents, labelled by the exact best response
to each.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from arena import (
    Agent,
    PolicyAgent,
    TlmError,
    evaluate,
    exact_strength,
    get_game,
    make_agent,
    top1_agreement,
    write_json_atomic,
)
from arena.positions import PositionSet, evaluate_positions, load_positions
from arena.runners import Runner
from arena.runstate import (
    RunInterrupted,
    check_output_dir,
    clear_checkpoint,
    empty_directory,
    staged_directory,
)
from distill.checkpoint import RoundState, load_round, run_settings, save_round
from distill.collect import STUDENT, TEACHER
from distill.config import DistillConfig
from distill.curves import Panel, write_curve, write_scalars
from distill.store import PositionStore
from distill.strategies import Strategy, Teaching, make_probe, strategy_for
from distill.train import FitConfig, fit_steps, make_optimizer, sample_weights
from students import StudentAgent, build_student, param_count, save_student
from teachers.datasets import Positions, load_dataset
from teachers.generate import Exploration, TeacherLabeller, collect_positions

Progress = Callable[[dict[str, Any]], None]

TIMES = ("play_s", "label_s", "fit_s", "eval_s")
"""Where a round's time goes: playing games, labelling positions, fitting, measuring."""

POSITIONS_DIR = "positions"
"""Where a run with ``keep_positions`` writes its teacher-labelled positions
(:meth:`distill.store.PositionStore.save`)."""

STUDENT_PANEL = Panel(
    x="teacher_games", xlabel="teacher-labelled games", ylabel="score / accuracy",
    keys=("score_vs_", "agreement", "optimal_accuracy", "solved_optimal", "solved_blunders"),
    twin="exhaustive_losses", twin_label="exhaustive losses vs perfect",
)
"""The student's measures against the games it was taught with."""


def measure(
    config: DistillConfig,
    student: PolicyAgent,
    opponents: list[Agent],
    held_out: Positions,
    solved: PositionSet | None = None,
) -> dict[str, float]:
    """The student's strength now: scores, solved positions, agreement, exact figures."""
    g = get_game(config.game)
    metrics: dict[str, float] = {}
    rows = evaluate(g, student, opponents, config.eval_games, seed=config.seed + 1,
                    opening_plies=config.eval_opening_plies) if opponents else []
    for r in rows:
        if r.seat == "both":
            metrics[f"score_vs_{r.opponent}"] = r.score
            metrics[f"losses_vs_{r.opponent}"] = float(r.losses)
    if config.panel:
        from arena.panel import evaluate_panel

        panel = evaluate_panel(student, g, config.eval_games, seed=config.seed + 2)
        for r in panel.rows:
            if r.seat == "both":
                metrics[f"score_vs_{r.opponent}"] = r.score
                metrics[f"losses_vs_{r.opponent}"] = float(r.losses)
        metrics["panel_elo"] = panel.elo.elo
        metrics["panel_elo_lo"] = panel.elo.lo
        metrics["panel_elo_hi"] = panel.elo.hi
    if solved is not None:
        res = evaluate_positions(student, solved, np.random.default_rng(config.seed))
        metrics["solved_optimal"] = res["optimal"]["rate"]
        metrics["solved_blunders"] = res["blunders"]["rate"]
    metrics["agreement"] = (
        top1_agreement(student, held_out.obs, held_out.mask, held_out.probs)
        if len(held_out) else float("nan")
    )
    exact = exact_strength(g, student)
    if exact is not None:
        metrics["exhaustive_losses"] = float(exact["exhaustive_losses"])
        metrics["optimal_accuracy"] = float(exact["optimal_accuracy"])
    return metrics


def _round_seeds(seed: int, rnd: int) -> tuple[int, int]:
    """The seeds of round ``rnd``'s games and of its batch sampling."""
    games_seed, fit_seed = np.random.SeedSequence([seed, rnd]).generate_state(2)
    return int(games_seed), int(fit_seed)


def distill(
    config: DistillConfig,
    progress: Progress | None = None,
    *,
    resume: bool = True,
    stop: Callable[[], bool] | None = None,
    runner: Runner | None = None,
) -> dict[str, Any]:
    """Run one distillation as ``config`` says and write its outputs to ``config.out``.

    Args:
        config: the run's settings.
        progress: called with each round's row of the curve.
        resume: go on from the checkpoint a killed or stopped run with the same
            settings left in the staging directory (else start over).
        stop: polled after each round's checkpoint; when it returns true the run
            stops with :class:`arena.runstate.RunInterrupted`, its staging directory
            kept for the next run to resume.
        runner: where each round's games are played (:func:`arena.make_runner`;
            default: this process). The same seed gives the same run with any runner
            and any number of workers, so a run may resume on another runner. The
            teacher labels, the student fits and is measured here; ``kickstart``,
            offline runs from a dataset and the ``uncertain`` arm play here.

    Returns:
        The report (also written as ``report.json``).

    Raises:
        TlmError: a bad setting (before anything is written), or a damaged checkpoint.
        arena.runstate.ResumeRefusedError: the checkpoint kept for ``config.out`` was
            taken with other settings (it is left as it was).
    """
    if config.method == "kickstart":
        from distill.kickstart import distill_kickstart_run

        return distill_kickstart_run(config, progress)
    if config.method == "incontext":
        from distill.incontext import distill_incontext_run

        return distill_incontext_run(config, progress, resume=resume, stop=stop)
    if config.method == "incontext-rl":
        from distill.incontext_rl import distill_incontext_rl_run

        return distill_incontext_rl_run(config, progress, resume=resume, stop=stop)
    g = get_game(config.game)
    check_output_dir(config.out)
    teacher = make_agent(config.teacher, g)
    if not isinstance(teacher, PolicyAgent):
        raise TlmError(f"teacher {config.teacher!r} gives no policy to distill")
    opponents = [make_agent(s, g) for s in config.eval_opponents]
    if config.panel:
        from arena.panel import panel_for

        panel_for(g)
    if config.dataset is not None and config.method != "offline":
        raise TlmError("--dataset is for the offline method only")
    source = load_dataset(config.dataset, g) if config.dataset is not None else None
    solved = load_positions(config.positions, g) if config.positions is not None else None
    probe = (make_probe(g, solved, config.seed)
             if config.method in ("adaptive", "learned") or config.target is not None
             else None)
    strategy = strategy_for(config, g, source)
    agents = {s: make_agent(s, g) for s in sorted(strategy.specs())
              if s not in (STUDENT, TEACHER)}

    holdout_seed = int(np.random.SeedSequence(config.seed).generate_state(1)[0])
    net = build_student(config.student, g, seed=config.seed)
    student = StudentAgent(net, greedy=True)
    fit_config = FitConfig(
        batch_size=config.batch_size, lr=config.lr, loss=config.loss,
        temperature=config.distill_temperature, value_weight=config.value_weight,
        augment=config.augment,
    )
    optimizer = make_optimizer(net, fit_config)
    low, high = config.opening_range
    held_out = Positions.empty(g)
    if config.holdout_games:
        held_out = collect_positions(
            g, TeacherLabeller(teacher, exploration=Exploration(
                config.temperature, config.epsilon, high)),
            config.holdout_games, seed=holdout_seed, game_offset=-config.holdout_games,
        )
    n_rounds = -(-config.budget_games // config.games_per_round)
    settings = run_settings(config)

    with staged_directory(config.out, resume=True) as stage:
        loaded = load_round(stage, settings, net, optimizer, g.name) if resume else None
        if loaded is None:
            empty_directory(stage)  # a run started over, or what an older version left
            state, store = RoundState(), PositionStore(g)
        else:
            state, store = loaded
            try:
                strategy.restore(state.strategy)
            except (KeyError, TypeError, ValueError) as e:
                raise TlmError(f"damaged checkpoint in {stage}: strategy state {e!r}") from None
        t = Teaching(game=g, teacher=teacher, student=student,
                     sampler=StudentAgent(net, greedy=False), store=store, runner=runner,
                     agents=agents, probe=probe)
        if loaded is None:
            strategy.start(t)
        for rnd in range(state.next_round, n_rounds):
            if state.done:
                break
            start = time.perf_counter()
            games_seed, fit_seed = _round_seeds(config.seed, rnd)
            n = min(config.games_per_round, config.budget_games - state.games)
            got = strategy.collect(t, rnd, n, games_seed)
            if got is None:  # a dataset with no game left
                state.done = True
                break
            times = {"play_s": got.play_s, "label_s": got.label_s}
            clock = time.perf_counter()
            losses = {"policy_loss": math.nan, "value_loss": math.nan}
            if len(store):
                weights = sample_weights(store.last_round, rnd, config.recent_share)
                losses = fit_steps(net, g, store.as_positions(), weights,
                                   config.steps_per_round, fit_config, optimizer,
                                   torch.Generator().manual_seed(fit_seed))
            times["fit_s"] = time.perf_counter() - clock
            clock = time.perf_counter()
            metrics = measure(config, student, opponents, held_out, solved)
            times["eval_s"] = time.perf_counter() - clock
            judged = strategy.judge(t, got, metrics)
            state.games += got.games
            state.labels += got.labelled
            state.wall_s += time.perf_counter() - start
            row = {
                "round": rnd,
                "teacher_games": state.games,
                "positions": len(store),
                "reached": got.reached,
                "labelled": got.labelled,
                **got.info,
                **judged,
                **losses,
                **metrics,
                **times,
                "wall_s": state.wall_s,
            }
            state.curve.append(row)
            state.next_round = rnd + 1
            _stopping_rules(config, state, row, probe.key if probe is not None else None)
            state.strategy = strategy.state()
            save_round(stage, state, settings, net, optimizer, store, teacher.name)
            if progress is not None:
                progress(row)
            if stop is not None and stop() and state.next_round < n_rounds and not state.done:
                raise RunInterrupted(f"stopped after round {state.next_round}; run the same "
                                     "command again to resume")
        report = _finish(stage, config, g.name, net, state, store, held_out, strategy)
    return report


def _stopping_rules(config: DistillConfig, state: RoundState, row: dict[str, Any],
                    probe: str | None) -> None:
    """Record the round that met the run's goal, and whether the run is done."""
    goal = bool(config.stop_when_perfect and row.get("exhaustive_losses") == 0) or (
        config.target is not None and probe is not None and row[probe] >= config.target)
    if goal and state.reached is None:
        state.reached = {"round": row["round"], "teacher_games": state.games,
                         "labels": state.labels}
    state.done = goal or (config.label_budget is not None
                          and state.labels >= config.label_budget)


def _finish(
    stage: Path, config: DistillConfig, game: str, net: torch.nn.Module, state: RoundState,
    store: PositionStore, held_out: Positions, strategy: Strategy,
) -> dict[str, Any]:
    """Write the student, curve, TensorBoard scalars and report into ``stage``."""
    curve = state.curve
    write_scalars(stage / "tensorboard", curve, "teacher_games", skip=("round",))
    save_student(net, stage / "student", provenance={  # type: ignore[arg-type]
        "method": config.method, "teacher": config.teacher, "teacher_games": state.games,
        "seed": config.seed,
    })
    write_curve(stage, curve, [STUDENT_PANEL, *strategy.panels()])
    report = {
        "game": game,
        "teacher": config.teacher,
        "student": config.student,
        "student_params": param_count(net),
        "method": config.method,
        "seed": config.seed,
        "teacher_games": state.games,
        "labels_spent": state.labels,
        "positions": len(store),
        "positions_reached": int(store.count.sum()),
        "held_out_positions": len(held_out),
        "wall_s": state.wall_s,
        "time": {k: sum(r.get(k, 0.0) for r in curve) for k in TIMES},
        "final": curve[-1] if curve else {},
        "perfect_at_games": next(
            (r["teacher_games"] for r in curve if r.get("exhaustive_losses") == 0), None
        ),
        "reached": state.reached,
        "labels_to_target": state.reached["labels"] if state.reached is not None else None,
        **strategy.summary(curve),
        "config": config.model_dump(mode="json"),
    }
    if config.keep_positions:
        # A run killed after this write and resumed writes it again.
        shutil.rmtree(stage / POSITIONS_DIR, ignore_errors=True)
        store.save(stage / POSITIONS_DIR, config.teacher)
    write_json_atomic(stage / "report.json", report)
    clear_checkpoint(stage)
    return report
