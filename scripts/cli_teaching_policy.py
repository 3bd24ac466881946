"""``tlm teaching-policy``: train a teaching policy across many student runs, and show
one (``tlm distill --method learned`` teaches with it)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

import arena
from arena import TlmError
from scripts.cli_common import (
    MAX_GAMES,
    MAX_STEPS,
    RayAddressOption,
    WorkersOption,
    console,
    float_option,
    int_option,
    names,
    progress_bar,
    resume_hint,
    seed_option,
)

teaching_policy_app = typer.Typer(
    help="Teaching policies: a small model, trained across many students, that chooses "
    "the mixture of teaching strategies every round of `tlm distill --method learned`.",
    rich_markup_mode=None,
    no_args_is_help=True,
)


def _sizes(text: str) -> list[int]:
    try:
        return [int(s) for s in names(text)]
    except ValueError:
        raise TlmError(f"--hidden {text!r} is not a comma-separated list of sizes") from None


@teaching_policy_app.command("train")
def train_cmd(
    game: Annotated[str, typer.Option(help="Game name.")],
    out: Annotated[Path, typer.Option(help="New output directory (a killed run resumes).")],
    teacher: Annotated[str | None, typer.Option(
        help="Teacher agent spec of every student run (default: the game's distill "
        "preset's).")] = None,
    students: Annotated[str | None, typer.Option(
        help="Comma-separated student architectures of the training population (default "
        "mlp:16x2,mlp:32x2,mlp:64x2,mlp:128x2).")] = None,
    arms: Annotated[str | None, typer.Option(
        help="Comma-separated strategies the policy chooses among (default: the game's "
        "standard arms and review).")] = None,
    hidden: Annotated[str | None, typer.Option(
        help="Comma-separated hidden layer sizes of the policy (default: none, a linear "
        "softmax).")] = None,
    generations: Annotated[int | None, int_option(
        help="Generations of the cross-entropy method (default 8).", hi=1000)] = None,
    population: Annotated[int | None, int_option(
        help="Candidate policies a generation, besides the current one (default 8).",
        hi=1000)] = None,
    elites: Annotated[int | None, int_option(
        help="Fittest candidates that move the policy (default 3).", hi=1001)] = None,
    pairs: Annotated[int | None, int_option(
        help="Students every candidate teaches a generation (default 4).", hi=1000)] = None,
    warm_start: Annotated[bool, typer.Option(
        "--warm-start/--cold-start", help="First try the uniform mixture and each strategy "
        "alone, and start from the fittest (default), or start from the uniform "
        "mixture.")] = True,
    init_std: Annotated[float | None, float_option(
        help="Initial spread of the candidates (default 1).", lo=0, hi=100,
        lo_open=True)] = None,
    games_per_round: Annotated[int | None, int_option(
        help="Games a round of every student run (default: the learned preset's).",
        hi=MAX_GAMES)] = None,
    steps_per_round: Annotated[int | None, int_option(
        help="Gradient steps a round of every student run (default: the preset's).",
        hi=MAX_STEPS)] = None,
    budget_games: Annotated[int | None, int_option(
        help="Games of a student run at most (default: the preset's).", hi=MAX_GAMES)] = None,
    label_budget: Annotated[int | None, int_option(
        help="Labels of a student run at most (default: the preset's).",
        hi=MAX_GAMES * 100)] = None,
    seed: Annotated[int | None, seed_option()] = None,
    workers: WorkersOption = None,
    ray_address: RayAddressOption = None,
    resume: Annotated[bool, typer.Option(
        "--resume/--fresh", help="Go on from the last finished student run of a killed "
        "or stopped run with the same settings (default), or start over.")] = True,
) -> None:
    """Train a teaching policy by the cross-entropy method over many student runs.

    Every generation, candidate policies around the current one each teach the same
    fresh students (`tlm distill --method learned` runs of the learned preset, students
    drawn from the training population); the candidates that reach the target with the
    fewest labels move the policy. Writes OUT/policy.safetensors and OUT/policy.json
    (use with --teaching-policy OUT), curve.csv / curve.png (labels to the target per
    generation) and report.json. Checkpoints after every student run: after a kill or
    Ctrl-C, the same command goes on to the same policy; --workers N spreads the student
    runs over Ray, with the same policy.

    Example: tlm teaching-policy train --game tictactoe --out runs/teaching
    """
    from arena.runstate import StopHandler
    from distill.presets import preset_for
    from distill.teaching_train import make_train_config, total_runs, train_teaching_policy

    runner = arena.make_runner(workers, ray_address)  # checks the values; started below
    name = arena.get_game(game).name
    cfg = make_train_config(
        game=name, out=out, teacher=teacher or preset_for(name).get("teacher"),
        students=None if students is None else names(students),
        arms=None if arms is None else names(arms),
        hidden=None if hidden is None else _sizes(hidden),
        generations=generations, population=population, elites=elites, pairs=pairs,
        warm_start=warm_start, init_std=init_std, games_per_round=games_per_round,
        steps_per_round=steps_per_round, budget_games=budget_games, label_budget=label_budget,
        seed=seed)
    total = total_runs(cfg)
    with runner, progress_bar(total, "student runs") as bar, resume_hint(cfg.out):
        task = bar.add_task("teach", total=total)

        def show(row: dict[str, Any]) -> None:
            if "generation" not in row:
                bar.update(task, completed=row["runs"])
                return
            shares = "  ".join(f"{k.removeprefix('share_')} {v:.2f}"
                               for k, v in row.items() if k.startswith("share_"))
            bar.console.print(
                f"  generation {row['generation']}: policy median "
                f"{row['policy_median_labels']:.0f} labels ({row['policy_reached']}/"
                f"{row['students']} reached), best candidate "
                f"{row['best_geomean_labels']:.0f}, population median "
                f"{row['population_median_labels']:.0f};  shares: {shares}",
                markup=False, highlight=False)

        with StopHandler(bar.console.print, "this student run") as stop:
            report = train_teaching_policy(cfg, progress=show, resume=resume, stop=stop,
                                           runner=runner)
    last = report["curve"][-1]
    console.print(f"{report['student_runs']} student runs in {report['wall_s']:.0f} s; the "
                  f"policy ({report['parameters']} parameters) reached the target with a "
                  f"median {last['policy_median_labels']:.0f} labels on its last students")
    console.print(f"policy: {cfg.out / 'policy.json'}   curve: {cfg.out / 'curve.csv'}, "
                  f"{cfg.out / 'curve.png'}   report: {cfg.out / 'report.json'}")
    console.print(f"use it: tlm distill --game {name} --method learned --teaching-policy "
                  f"{cfg.out}")


@teaching_policy_app.command("show")
def show_cmd(
    path: Annotated[Path, typer.Argument(help="A teaching policy (.json, .safetensors, "
                                         "or the directory that holds policy.json).")],
) -> None:
    """Print what a teaching policy knows: games, strategies, features, size, training."""
    from distill.teaching_policy import load_policy

    policy = load_policy(path)
    table = Table(title=f"teaching policy {path}", show_header=False)
    table.add_column("field")
    table.add_column("value")
    table.add_row("games", ", ".join(policy.games))
    table.add_row("strategies", ", ".join(policy.strategies))
    table.add_row("features", ", ".join(policy.features))
    table.add_row("model", f"{policy.size()} parameters, hidden layers "
                           f"{policy.hidden or 'none'}")
    for key, value in policy.info.items():
        table.add_row(f"trained: {key}", str(value))
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.add_typer(teaching_policy_app, name="teaching-policy")
