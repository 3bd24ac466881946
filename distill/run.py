"""Distillation runs: a teacher's games (offline) or the student's own games labelled
by the teacher (DAgger), fitted into a freshly initialized student, measured as it
learns.

Each round adds ``games_per_round`` teacher-labelled games to the aggregated data,
fits the student on all of it, and evaluates it: scores against fixed opponents, top-1
agreement with the teacher on held-out teacher positions and, on tic-tac-toe, exact
strength (losses against ``perfect`` over every line of play, optimal-move accuracy
over all 4,520 positions). The output directory holds the student checkpoint, the
learning curve (CSV and PNG), TensorBoard scalars and a JSON report; it appears only
when the run is complete.
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
from arena.io import check_output_dir, staged_directory
from distill.config import DistillConfig
from distill.train import FitConfig, fit, make_optimizer
from students import StudentAgent, build_student, param_count, save_student
from teachers.datasets import Positions, load_dataset
from teachers.generate import Exploration, TeacherLabeller, collect_positions

Progress = Callable[[dict[str, Any]], None]


def measure(
    config: DistillConfig,
    student: PolicyAgent,
    opponents: list[Agent],
    held_out: Positions,
) -> dict[str, float]:
    """The student's strength now: scores, agreement, and exact figures where known."""
    g = get_game(config.game)
    metrics: dict[str, float] = {}
    rows = evaluate(g, student, opponents, config.eval_games, seed=config.seed + 1,
                    opening_plies=config.eval_opening_plies)
    for r in rows:
        if r.seat == "both":
            metrics[f"score_vs_{r.opponent}"] = r.score
    metrics["agreement"] = (
        top1_agreement(student, held_out.obs, held_out.mask, held_out.probs)
        if len(held_out) else float("nan")
    )
    exact = exact_strength(g, student)
    if exact is not None:
        metrics["exhaustive_losses"] = float(exact["exhaustive_losses"])
        metrics["optimal_accuracy"] = float(exact["optimal_accuracy"])
    return metrics


def distill(config: DistillConfig, progress: Progress | None = None) -> dict[str, Any]:
    """Run one distillation as ``config`` says and write its outputs to ``config.out``.

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
    if config.dataset is not None and config.method != "offline":
        raise TlmError("--dataset is for the offline method only")
    source = load_dataset(config.dataset, g) if config.dataset is not None else None
    dagger_opponent = None if config.opponent == "self" else make_agent(config.opponent, g)

    seeds = np.random.SeedSequence(config.seed)
    holdout_seed, round_seeds, train_seed = (int(s) for s in seeds.generate_state(3))
    net = build_student(config.student, g, seed=config.seed)
    student = StudentAgent(net, greedy=True)
    fit_config = FitConfig(
        epochs=config.epochs, batch_size=config.batch_size, lr=config.lr, loss=config.loss,
        temperature=config.distill_temperature, value_weight=config.value_weight,
        augment=config.augment,
    )
    optimizer = make_optimizer(net, fit_config)
    generator = torch.Generator().manual_seed(train_seed)
    exploration = Exploration(config.temperature, config.epsilon, config.opening_plies)

    held_out = Positions.empty(g)
    if config.holdout_games:
        held_out = collect_positions(
            g, TeacherLabeller(teacher, exploration=exploration), config.holdout_games,
            seed=holdout_seed, game_offset=-config.holdout_games,
        )

    with staged_directory(config.out) as tmp:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(log_dir=str(tmp / "tensorboard"))
        curve: list[dict[str, Any]] = []
        data: list[Positions] = []
        games = 0
        start = time.perf_counter()
        per_round = np.random.SeedSequence(round_seeds).generate_state(
            -(-config.budget_games // config.games_per_round)
        )
        # A dataset's games are taken in order of their ids, a round's worth at a time.
        source_games = np.unique(source.game_id) if source is not None else None
        for rnd, round_seed in enumerate(per_round):
            n = min(config.games_per_round, config.budget_games - games)
            beta = config.beta0 * config.beta_decay**rnd if config.method == "dagger" else 1.0
            if source is not None and source_games is not None:
                ids = source_games[games : games + n]
                if len(ids) == 0:
                    break
                chunk = source.select(np.isin(source.game_id, ids))
                n = len(ids)
            elif config.method == "dagger":
                chunk = collect_positions(
                    g, TeacherLabeller(teacher, student, beta, exploration), n,
                    int(round_seed), game_offset=games,
                    opponent=None if dagger_opponent is None
                    else TeacherLabeller(teacher, dagger_opponent, 0.0),
                )
            else:
                chunk = collect_positions(
                    g, TeacherLabeller(teacher, exploration=exploration), n, int(round_seed),
                    game_offset=games,
                )
            data.append(chunk)
            games += n
            positions = Positions.concat(data)
            losses = fit(net, g, positions, fit_config, optimizer, generator)
            metrics = measure(config, student, opponents, held_out)
            row = {
                "round": rnd,
                "teacher_games": games,
                "positions": len(positions),
                "beta": beta,
                **losses,
                **metrics,
                "wall_s": time.perf_counter() - start,
            }
            curve.append(row)
            for key, value in row.items():
                if key not in ("round", "teacher_games"):
                    writer.add_scalar(key, value, games)
            if progress is not None:
                progress(row)
            if config.stop_when_perfect and row.get("exhaustive_losses") == 0:
                break
        writer.close()
        save_student(net, tmp / "student", provenance={
            "method": config.method, "teacher": config.teacher, "teacher_games": games,
            "seed": config.seed,
        })
        _write_curve(tmp, curve)
        report = {
            "game": g.name,
            "teacher": config.teacher,
            "student": config.student,
            "student_params": param_count(net),
            "method": config.method,
            "seed": config.seed,
            "teacher_games": games,
            "positions": curve[-1]["positions"] if curve else 0,
            "held_out_positions": len(held_out),
            "wall_s": time.perf_counter() - start,
            "final": curve[-1] if curve else {},
            "perfect_at_games": next(
                (r["teacher_games"] for r in curve if r.get("exhaustive_losses") == 0), None
            ),
            "config": config.model_dump(mode="json"),
        }
        write_json_atomic(tmp / "report.json", report)
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
        if key.startswith("score_vs_") or key in ("agreement", "optimal_accuracy"):
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
