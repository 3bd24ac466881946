"""Distillation runs: a teacher's games (offline) or games from a mix of players
labelled by the teacher (DAgger), fitted into a freshly initialized student, measured
as it learns.

Each round plays ``games_per_round`` games (see :mod:`distill.collect`: the mix of
players, random openings, exploration), has the teacher label every position reached
that the aggregate lacks, takes ``steps_per_round`` gradient steps on batches sampled
from the aggregate (recent positions weighted up), and measures the student on what it
never trained on: scores against fixed opponents, a solved-positions file (optimal-move
and blunder rates) and, on tic-tac-toe, exact strength over every line of play; plus
top-1 agreement with the teacher on held-out teacher games. Each row of the curve says
where the round's time went (playing, labelling, fitting, evaluating). Given a runner
(:func:`arena.make_runner`), each round's games are played on its Ray workers, with the
same games as in this process; labelling, fitting and measuring stay here.

After every round the run checkpoints into its staging directory
(:mod:`distill.resume`); the same command run again after a kill goes on from there.
The output directory (student checkpoint, curve CSV and PNG, TensorBoard scalars,
JSON report) appears only when the run is complete.
"""

from __future__ import annotations

import csv
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
from arena.runstate import check_output_dir, staged_directory
from distill.collect import Openings, PositionStore, add_positions, collect_round
from distill.config import DistillConfig
from distill.resume import (
    RunInterrupted,
    RunState,
    check_resumable,
    clear_checkpoints,
    load_checkpoint,
    save_checkpoint,
)
from distill.train import FitConfig, fit_steps, make_optimizer, sample_weights
from students import StudentAgent, build_student, param_count, save_student
from teachers.datasets import Positions, load_dataset
from teachers.generate import Exploration, TeacherLabeller, collect_positions

Progress = Callable[[dict[str, Any]], None]

TIMES = ("play_s", "label_s", "fit_s", "eval_s")
"""Where a round's time goes: playing games, labelling positions, fitting, measuring."""


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
            stops with :class:`distill.resume.RunInterrupted`, its staging directory
            kept for the next run to resume.
        runner: where each round's games are played (:func:`arena.make_runner`;
            default: this process). The same seed gives the same run with any runner
            and any number of workers, so a run may resume on another runner. The
            teacher labels, the student fits and is measured here; ``kickstart`` and
            offline runs from a dataset play no round games, so they ignore it.

    Returns:
        The report (also written as ``report.json``).
    """
    if config.method == "kickstart":
        from distill.kickstart import distill_kickstart_run

        return distill_kickstart_run(config, progress)
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
    mix_agents = {s: make_agent(s, g) for s in config.mix if s not in ("student", "teacher")}

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
    settings = config.model_dump(mode="json")
    source_games = np.unique(source.game_id) if source is not None else None

    with staged_directory(config.out, resume=True) as stage:
        if resume:
            check_resumable(stage, settings)
        loaded = load_checkpoint(stage, net, optimizer, g.name, settings) if resume else None
        if loaded is None:
            clear_checkpoints(stage)
            state, store = RunState(), PositionStore(g)
        else:
            state, store = loaded
        for rnd in range(state.next_round, n_rounds):
            if state.done:
                break
            start = time.perf_counter()
            games_seed, fit_seed = _round_seeds(config.seed, rnd)
            n = min(config.games_per_round, config.budget_games - state.games)
            beta = config.beta0 * config.beta_decay**rnd if config.method == "dagger" else 1.0
            times = dict.fromkeys(TIMES, 0.0)
            if source is not None and source_games is not None:
                ids = source_games[state.games : state.games + n]
                if len(ids) == 0:
                    state.done = True
                    break
                chunk = source.select(np.isin(source.game_id, ids))
                n = len(ids)
                reached, labelled = add_positions(store, chunk.obs, chunk.mask, chunk.probs,
                                                  chunk.value, chunk.outcome, rnd)
            else:
                offline = config.method == "offline"
                done = collect_round(
                    g, teacher, student, {"teacher": 1.0} if offline else config.mix, n,
                    games_seed, store, rnd, beta=0.0 if offline else beta,
                    epsilon=config.epsilon, openings=Openings(low, high),
                    temperature=config.temperature, self_play_teacher=offline,
                    agents=mix_agents, runner=runner,
                )
                reached, labelled = done.reached, done.labelled
                times["play_s"], times["label_s"] = done.play_s, done.label_s
            t = time.perf_counter()
            weights = sample_weights(store.last_round, rnd, config.recent_share)
            losses = fit_steps(net, g, store.as_positions(), weights, config.steps_per_round,
                               fit_config, optimizer,
                               torch.Generator().manual_seed(fit_seed))
            times["fit_s"] = time.perf_counter() - t
            t = time.perf_counter()
            metrics = measure(config, student, opponents, held_out, solved)
            times["eval_s"] = time.perf_counter() - t
            state.games += n
            state.wall_s += time.perf_counter() - start
            row = {
                "round": rnd,
                "teacher_games": state.games,
                "positions": len(store),
                "reached": reached,
                "labelled": labelled,
                "beta": beta,
                **losses,
                **metrics,
                **times,
                "wall_s": state.wall_s,
            }
            state.curve.append(row)
            state.next_round = rnd + 1
            state.done = bool(config.stop_when_perfect and row.get("exhaustive_losses") == 0)
            save_checkpoint(stage, state, net, optimizer, store, settings,
                            {"round_seeds": "numpy SeedSequence([seed, round])",
                             "holdout_seed": holdout_seed, "next_round": state.next_round})
            if progress is not None:
                progress(row)
            if stop is not None and stop() and state.next_round < n_rounds and not state.done:
                raise RunInterrupted(state.next_round)
        report = _finish(stage, config, g.name, net, state, store, held_out)
    return report


def _finish(
    stage: Path, config: DistillConfig, game: str, net: torch.nn.Module, state: RunState,
    store: PositionStore, held_out: Positions,
) -> dict[str, Any]:
    """Write the student, curve, TensorBoard scalars and report into ``stage``."""
    from torch.utils.tensorboard import SummaryWriter

    curve = state.curve
    writer = SummaryWriter(log_dir=str(stage / "tensorboard"))
    for row in curve:
        for key, value in row.items():
            if key not in ("round", "teacher_games"):
                writer.add_scalar(key, value, row["teacher_games"])
    writer.close()
    save_student(net, stage / "student", provenance={  # type: ignore[arg-type]
        "method": config.method, "teacher": config.teacher, "teacher_games": state.games,
        "seed": config.seed,
    })
    _write_curve(stage, curve)
    report = {
        "game": game,
        "teacher": config.teacher,
        "student": config.student,
        "student_params": param_count(net),
        "method": config.method,
        "seed": config.seed,
        "teacher_games": state.games,
        "positions": len(store),
        "positions_reached": int(store.count.sum()),
        "held_out_positions": len(held_out),
        "wall_s": state.wall_s,
        "time": {k: sum(r.get(k, 0.0) for r in curve) for k in TIMES},
        "final": curve[-1] if curve else {},
        "perfect_at_games": next(
            (r["teacher_games"] for r in curve if r.get("exhaustive_losses") == 0), None
        ),
        "config": config.model_dump(mode="json"),
    }
    write_json_atomic(stage / "report.json", report)
    clear_checkpoints(stage)
    return report


def _write_curve(out: Path, curve: list[dict[str, Any]]) -> None:
    if not curve:
        return
    with open(out / "curve.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(curve[0]))
        w.writeheader()
        w.writerows(curve)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [r["teacher_games"] for r in curve]
    fig, ax = plt.subplots(figsize=(6, 4))
    for key in curve[0]:
        if key.startswith("score_vs_") or key in ("agreement", "optimal_accuracy",
                                                  "solved_optimal", "solved_blunders"):
            ax.plot(x, [r[key] for r in curve], marker="o", label=key)
    ax.set_xlabel("teacher-labelled games")
    ax.set_ylabel("score / accuracy")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    if "exhaustive_losses" in curve[0]:
        ax2 = ax.twinx()
        ax2.plot(x, [r["exhaustive_losses"] for r in curve], color="black", ls="--",
                 label="exhaustive losses")
        ax2.set_ylabel("exhaustive losses vs perfect")
        ax2.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "curve.png", dpi=100)
    plt.close(fig)
