"""`tlm generate`, `tlm distill` and `tlm iterate`: teacher data and students."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

import arena
from arena import TlmError
from arena.runners import MAX_WORKERS
from scripts.cli_common import (
    MAX_DATASET_GAMES,
    MAX_GAMES,
    MAX_LR,
    MAX_PLIES,
    MAX_STEPS,
    MAX_TEMPERATURE,
    RayAddressOption,
    WorkersOption,
    agent_specs,
    console,
    float_option,
    int_option,
    names,
    positive,
    progress_bar,
    resume_hint,
    seed_option,
)


def generate_cmd(
    game: Annotated[str, typer.Option(help="Game name.")],
    teacher: Annotated[str, typer.Option(help="Teacher agent spec (perfect, alphabeta:4, ...).")],
    games: Annotated[
        int, int_option("--games", help="Games to generate.", hi=MAX_DATASET_GAMES)
    ],
    out: Annotated[Path, typer.Option(help="New dataset directory.")],
    seed: Annotated[int, seed_option()] = 0,
    temperature: Annotated[
        float, float_option(help="Teacher move temperature.", lo=0, hi=MAX_TEMPERATURE)
    ] = 1.0,
    epsilon: Annotated[float, float_option(help="Random-move probability.", lo=0, hi=1)] = 0.0,
    opening_plies: Annotated[
        int, int_option(help="Random opening plies per game.", lo=0, hi=MAX_PLIES)
    ] = 0,
    games_per_shard: Annotated[
        int, int_option(help="Games per Parquet shard.", hi=MAX_GAMES)
    ] = 2000,
    workers: WorkersOption = None,
    ray_address: RayAddressOption = None,
) -> None:
    """Generate teacher games as Parquet shards with a manifest (written atomically).

    Example: tlm generate --game connect_four --teacher alphabeta:4 --games 2000 --out data/c4
    """
    from arena.runstate import check_output_dir
    from teachers.generate import Exploration, generate_dataset

    positive(games, "--games")
    positive(games_per_shard, "--games-per-shard")
    check_output_dir(out)
    g = arena.get_game(game)
    agent = arena.make_agent(teacher, g)
    if not isinstance(agent, arena.PolicyAgent):
        raise TlmError(f"teacher {teacher!r} gives no policy to label positions with")
    exploration = Exploration(temperature, epsilon, opening_plies)
    with arena.make_runner(workers, ray_address) as runner, \
            progress_bar(games, "games") as bar:
        task = bar.add_task("generate", total=games)
        path = generate_dataset(
            g, agent, games, out, seed=seed, exploration=exploration,
            games_per_shard=games_per_shard,
            progress=lambda done: bar.update(task, completed=done), runner=runner,
        )
    manifest = json.loads((path / "manifest.json").read_text())
    console.print(
        f"wrote {manifest['positions']} positions from {manifest['games']} {g.name} games "
        f"by {teacher} to {path} ({len(manifest['shards'])} shards)"
    )


def _distill_help(text: str, field: str) -> str:
    from distill.presets import default_help

    shown = default_help(field)
    return f"{text} ({shown})" if shown else text


def distill_cmd(
    game: Annotated[str | None, typer.Option(help="Game name; its preset is the starting point "
                                             "(tictactoe, connect_four).")] = None,
    teacher: Annotated[str | None, typer.Option(
        help=_distill_help("Teacher agent spec.", "teacher"))] = None,
    student: Annotated[str | None, typer.Option(
        help=_distill_help("Student spec (mlp:64x2, cnn:32x3, res:64x3).", "student"))] = None,
    method: Annotated[str | None, typer.Option(
        help=_distill_help("offline, dagger, kickstart, adaptive (a bandit picks a "
                           "teaching strategy every round), learned (a teaching policy "
                           "trained across students picks the mixture of strategies every "
                           "round), incontext (a recurrent "
                           "student learns to exploit whom it plays over series of "
                           "games) or incontext-rl (the same, by reinforcement alone).",
                           "method"))] = None,
    budget_games: Annotated[int | None, int_option(
        help=_distill_help("Teacher-labelled games at most.", "budget_games"),
        hi=MAX_DATASET_GAMES)] = None,
    games_per_round: Annotated[int | None, int_option(
        help=_distill_help("Games a round (then fit, measure, checkpoint).", "games_per_round"),
        hi=MAX_GAMES)] = None,
    seed: Annotated[int | None, seed_option("Random seed, 0 to 2^63-1 (default 0).")] = None,
    out: Annotated[Path | None, typer.Option(help="New output directory.")] = None,
    dataset: Annotated[Path | None, typer.Option(help="offline: a generated dataset.")] = None,
    mix: Annotated[str | None, typer.Option(help=_distill_help(
        "dagger (adaptive: its dagger and openings arms): who plays the labelled games, "
        "SPEC=SHARE,...: student (against itself), teacher, or an agent spec playing the "
        "student; the teacher labels every position reached.", "mix"))] = None,
    opening_plies: Annotated[int | None, int_option(
        help=_distill_help("Random opening plies of labelled games (the fewest).",
                           "opening_plies"), lo=0, hi=MAX_PLIES)] = None,
    opening_plies_max: Annotated[int | None, int_option(
        help=_distill_help("The most random opening plies; each game draws its number "
                           "between the two.", "opening_plies_max"), lo=0, hi=MAX_PLIES)] = None,
    epsilon: Annotated[float | None, float_option(
        help=_distill_help("Random-move probability of either side in labelled games.",
                           "epsilon"), lo=0, hi=1)] = None,
    temperature: Annotated[float | None, float_option(
        help=_distill_help("Teacher move temperature in the games it plays.", "temperature"),
        lo=0, hi=MAX_TEMPERATURE)] = None,
    beta0: Annotated[float | None, float_option(
        help=_distill_help("dagger and adaptive: share of the student's moves the teacher "
                           "plays in round 0.", "beta0"), lo=0, hi=1)] = None,
    beta_decay: Annotated[float | None, float_option(
        help=_distill_help("dagger and adaptive: beta decay a round.", "beta_decay"),
        lo=0, hi=1)] = None,
    steps_per_round: Annotated[int | None, int_option(
        help=_distill_help("Gradient steps a round, on batches sampled from all positions "
                           "so far.", "steps_per_round"), hi=MAX_STEPS)] = None,
    batch_size: Annotated[int | None, int_option(
        help=_distill_help("Positions per gradient step.", "batch_size"), hi=MAX_GAMES)] = None,
    recent_share: Annotated[float | None, float_option(
        help=_distill_help("Share of each batch from the latest round's positions.",
                           "recent_share"), lo=0, hi=1)] = None,
    lr: Annotated[float | None, float_option(
        help=_distill_help("Learning rate.", "lr"), lo=0, hi=MAX_LR, lo_open=True)] = None,
    eval_opponents: Annotated[str | None, typer.Option(
        help=_distill_help("Comma-separated opponents measured every round.",
                           "eval_opponents"))] = None,
    eval_games: Annotated[int | None, int_option(
        help=_distill_help("Games per opponent per round.", "eval_games"), hi=MAX_GAMES)] = None,
    eval_opening_plies: Annotated[int | None, int_option(
        help=_distill_help("Random opening plies of evaluation games.", "eval_opening_plies"),
        lo=0, hi=MAX_PLIES)] = None,
    positions: Annotated[Path | None, typer.Option(help=_distill_help(
        "Solved-positions file, or the name of one shipped with tlm, measured every round "
        "(optimal-move and blunder rates).",
        "positions"))] = None,
    panel: Annotated[bool | None, typer.Option(
        "--panel", help=_distill_help("Play the game's standard panel every round (scores "
                                      "and one Elo).", "panel"))] = None,
    kickstart_steps: Annotated[int | None, int_option(
        help=_distill_help("kickstart: PPO steps.", "kickstart_steps"), hi=MAX_STEPS)] = None,
    series: Annotated[int | None, int_option(
        help=_distill_help("incontext: games per series.", "series"), lo=2,
        hi=100)] = None,
    forced_answers: Annotated[int | None, int_option(
        help=_distill_help("incontext: blocks the opponent must have made, with no win or "
                           "block missed, before the teacher risks an exploit (6: no game "
                           "lost to random, less gain).", "forced_answers"), lo=0,
        hi=20)] = None,
    stop_when_perfect: Annotated[bool | None, typer.Option(
        "--stop-when-perfect", help=_distill_help("Stop at zero exhaustive losses.",
                                                  "stop_when_perfect"))] = None,
    target: Annotated[float | None, float_option(
        help=_distill_help("Stop once the probe (tictactoe: optimal-move accuracy; else the "
                           "optimal-move rate on --positions) reaches this.", "target"),
        lo=0, hi=1)] = None,
    label_budget: Annotated[int | None, int_option(
        help=_distill_help("Stop once the teacher has labelled this many positions.",
                           "label_budget"), hi=MAX_DATASET_GAMES)] = None,
    arms: Annotated[str | None, typer.Option(help=_distill_help(
        "adaptive: comma-separated strategies the bandit picks from (teacher, dagger, "
        "panel, openingsK, uncertain, refute on tictactoe; also review, which labels "
        "nothing); one runs that strategy alone.",
        "arms"))] = None,
    teaching_policy: Annotated[Path | None, typer.Option(help=_distill_help(
        "learned: the teaching policy (tlm teaching-policy train's OUT, or its .json); "
        "default: the one shipped for the game.", "teaching_policy"))] = None,
    transfer_policy: Annotated[bool | None, typer.Option(
        "--transfer-policy", help="learned: use a teaching policy trained on other "
        "games.")] = None,
    config: Annotated[Path | None, typer.Option(
        help="YAML config: over the game's preset; flags override it.")] = None,
    resume: Annotated[bool, typer.Option(
        "--resume/--fresh", help="Go on from the last finished round of a killed or stopped "
        "run with the same settings (default), or start over.")] = True,
    workers: Annotated[int | None, int_option(
        "--workers", help="Play each round's games on a local Ray with this many worker "
        "processes (the teacher labels here; kickstart, a dataset and adaptive's "
        "uncertain and refute arms play here).", hi=MAX_WORKERS)] = None,
    ray_address: Annotated[str | None, typer.Option(
        "--ray-address", help="Play each round's games on the Ray cluster at this address "
        "(auto, host:port, ray://host:10001); as --workers.")] = None,
) -> None:
    """Distill a teacher into a freshly initialized student and measure it as it learns.

    Settings start from the game's preset (the tested recipe), then --config, then flags.
    The run checkpoints after every round: run the same command again after a kill, or
    after Ctrl-C (which stops at the end of the round), to go on where it stopped.
    --workers / --ray-address play each round's games on Ray, with the same results.

    Example: tlm distill --game tictactoe --teacher perfect --out runs/ttt-dagger
    (the preset: a fresh mlp:128x2 taught until it loses no line of tic-tac-toe, within
    2000 games)
    """
    from arena.runstate import StopHandler
    from distill import distill
    from distill.collect import parse_mix
    from distill.presets import config_with_preset

    runner = arena.make_runner(workers, ray_address)  # checks the values; started below
    fields = {
        "game": game, "teacher": teacher, "student": student, "method": method,
        "budget_games": budget_games, "games_per_round": games_per_round, "seed": seed,
        "out": out, "dataset": dataset, "eval_games": eval_games, "lr": lr,
        "stop_when_perfect": stop_when_perfect, "epsilon": epsilon,
        "temperature": temperature, "opening_plies": opening_plies,
        "opening_plies_max": opening_plies_max, "beta0": beta0, "beta_decay": beta_decay,
        "steps_per_round": steps_per_round, "batch_size": batch_size,
        "recent_share": recent_share, "eval_opening_plies": eval_opening_plies,
        "positions": positions, "kickstart_steps": kickstart_steps, "panel": panel,
        "target": target, "label_budget": label_budget, "series": series,
        "forced_answers": forced_answers,
        "teaching_policy": teaching_policy, "transfer_policy": transfer_policy,
        "mix": None if mix is None else parse_mix(mix),
        "eval_opponents": None if eval_opponents is None else agent_specs(eval_opponents),
        "arms": None if arms is None else names(arms),
    }
    cfg = config_with_preset(config, **fields)
    if cfg.method in ("incontext", "incontext-rl"):
        if workers is not None or ray_address is not None:
            raise TlmError(f"--method {cfg.method} plays its series in this process: no "
                           "--workers or --ray-address")
        _distill_incontext(cfg, resume)
        return
    if cfg.method == "kickstart":
        runner = arena.LocalRunner()
    total = cfg.budget_games if cfg.method != "kickstart" else cfg.kickstart_steps
    with runner, progress_bar(total, cfg.method) as bar:
        task = bar.add_task("distill", total=total)

        def show(row: dict[str, Any]) -> None:
            bar.update(task, completed=int(row.get("teacher_games", row.get("steps", 0))))
            parts = [f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in row.items()
                     if k not in ("beta", "wall_s") and not k.startswith("p_")]
            bar.console.print("  " + "  ".join(parts))

        with StopHandler(bar.console.print) as stop:
            report = distill(cfg, progress=show, resume=resume, stop=stop, runner=runner)
    print_distill_report(report, cfg.out)


def _distill_incontext(cfg: Any, resume: bool) -> None:
    """``--method incontext`` or ``incontext-rl``: the run with a progress bar and one
    line a round (an iteration: a line where it was measured)."""
    from arena.runstate import StopHandler
    from distill.incontext import check_incontext, distill_incontext_run, incontext_config
    from distill.incontext_rl import distill_incontext_rl_run, incontext_rl_config

    if cfg.method == "incontext":
        check_incontext(incontext_config(cfg))
        run = distill_incontext_run
    else:
        incontext_rl_config(cfg)
        run = distill_incontext_rl_run
    k = cfg.series
    with progress_bar(cfg.budget_games, cfg.method) as bar:
        task = bar.add_task("distill", total=cfg.budget_games)

        def show(row: dict[str, Any]) -> None:
            if "games" not in row:
                bar.console.print("  final measures on the held-out families")
                return
            bar.update(task, completed=int(row["games"]))
            if "student_g1" not in row:
                return
            step = (f"round {row['round']}: loss {row['loss_student']:.3f}" if "round" in row
                    else f"iteration {row['iteration']}: training score "
                         f"{row['train_score']:.3f}")
            control = (f", feedforward control {row[f'control_g{k}']:.3f}"
                       if f"control_g{k}" in row else "")
            bar.console.print(
                f"  {step}  held-out score, game 1 {row['student_g1']:.3f}, game {k} "
                f"{row[f'student_g{k}']:.3f}  (memory reset {row[f'reset_g{k}']:.3f}"
                f"{control})")

        with StopHandler(bar.console.print) as stop:
            report = run(cfg, progress=show, resume=resume, stop=stop)
    print_incontext_report(report, cfg.out)


def print_incontext_report(report: dict[str, Any], out: Path) -> None:
    """The score by game index on the held-out families and the run's figures."""
    from distill.incontext_measures import figure_rows, score_rows

    final = report["final"]
    table = Table(title=f"{report['method']}: {report['student']} "
                        f"({report['student_params']} parameters) on {report['game']}, "
                        "score by game of the series against the held-out families")
    table.add_column("player")
    for j in range(final["k"]):
        table.add_column(str(j + 1), justify="right")
    for name, scores in score_rows(final):
        table.add_row(name, *(f"{s:.3f}" for s in scores))
    console.print(table)
    figures = Table(show_header=False)
    figures.add_column("measure")
    figures.add_column("value", justify="right")
    for measure, value in figure_rows(report):
        figures.add_row(measure, value)
    console.print(figures)
    control = f"control: {out / 'control'}   " if report.get("control") else ""
    plot = f", {out / 'curve.png'}" if (out / "curve.png").exists() else ""
    console.print(f"student: {out / 'student'}   {control}curve: {out / 'curve.csv'}{plot}"
                  f"   report: {out / 'report.json'}")


def print_distill_report(report: dict[str, object], out: Path) -> None:
    final = report["final"]
    assert isinstance(final, dict)
    table = Table(title=f"{report['method']}: {report['teacher']} -> {report['student']} "
                        f"({report['student_params']} parameters) on {report['game']}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    if "teacher_games" in report:
        table.add_row("teacher-labelled games", str(report["teacher_games"]))
        table.add_row("labelled positions", str(report["positions"]))
    else:
        table.add_row("self-play games", str(report["training_games"]))
        table.add_row("learner steps", str(report["steps"]))
    for key, value in final.items():
        if key.startswith("score_vs_") or key in (
            "agreement", "exhaustive_losses", "optimal_accuracy", "solved_optimal",
            "solved_blunders", "panel_elo",
        ):
            table.add_row(key.replace("_", " "), f"{value:.4g}" if isinstance(value, float)
                          else str(value))
    if report.get("perfect_at_games") is not None:
        table.add_row("perfect play reached at", f"{report['perfect_at_games']} games")
    reached = report.get("reached")
    if isinstance(reached, dict):
        table.add_row("goal reached with", f"{reached['labels']} labels, "
                      f"{reached['teacher_games']} games")
    if "labels_spent" in report:
        table.add_row("labels spent", str(report["labels_spent"]))
    choices = report.get("choices")
    if isinstance(choices, dict):
        table.add_row("strategies chosen", ", ".join(f"{k} {v}" for k, v in choices.items()))
    table.add_row("wall time", f"{report['wall_s']:.1f} s")
    spent = report.get("time")
    if isinstance(spent, dict):
        table.add_row("  of which", ", ".join(
            f"{k.removesuffix('_s')} {v:.1f} s" for k, v in spent.items()))
    console.print(table)
    if (out / "student").is_dir():
        console.print(f"student: {out / 'student'}   curve: {out / 'curve.csv'}, "
                      f"{out / 'curve.png'}   tensorboard: {out / 'tensorboard'}")
    else:
        console.print(f"student: sb3:{out / 'main' / 'model.zip'}   report: {out / 'report.json'}")


def iterate_cmd(
    game: Annotated[str | None, typer.Option(help="Game name (tictactoe, connect_four).")] = None,
    student: Annotated[str | None, typer.Option(help="Student spec (mlp:64x2, ...).")] = None,
    start: Annotated[
        str | None, typer.Option(help="`none` (blank student) or a teacher spec to distill first.")
    ] = None,
    iterations: Annotated[
        int | None, int_option(help="Expert-iteration steps.", hi=MAX_GAMES)
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Output directory (a killed run resumes).")
    ] = None,
    seed: Annotated[int | None, seed_option()] = None,
    simulations: Annotated[
        int | None, int_option(help="MCTS simulations per move.", hi=MAX_STEPS)
    ] = None,
    games_per_iteration: Annotated[
        int | None, int_option(help="Self-play games per iteration.", hi=MAX_GAMES)
    ] = None,
    gate_threshold: Annotated[
        float | None, float_option(help="Score a new student needs against the best.", lo=0, hi=1)
    ] = None,
    panel: Annotated[str | None, typer.Option(help="Comma-separated panel opponents.")] = None,
    eval_games: Annotated[
        int | None, int_option(help="Games per panel opponent per iteration.", hi=MAX_GAMES)
    ] = None,
    positions: Annotated[
        Path | None, typer.Option(help="Solver-labelled positions file, or the name of one "
                                       "shipped with tlm (optimal/blunder rates).")
    ] = None,
    config: Annotated[Path | None, typer.Option(help="YAML config; flags override it.")] = None,
    resume: Annotated[bool, typer.Option(
        "--resume/--fresh", help="Go on from the last finished iteration of a killed or "
        "stopped run with the same settings (default), or start over.")] = True,
    workers: WorkersOption = None,
    ray_address: RayAddressOption = None,
) -> None:
    """Expert iteration: MCTS guided by the student teaches the student, iteration after iteration.

    Starts from the game's preset (distill/iterate_config.py); --config and flags
    override it. Every iteration is checkpointed: the same command resumes a killed
    run; Ctrl-C stops after the current iteration.

    Example: tlm iterate --game tictactoe --student mlp:64x2 --start none --iterations 16
    --out runs/ttt-exit
    """
    from arena.runstate import StopHandler
    from distill.iterate import iterate
    from distill.iterate_config import iterate_config_with_preset

    fields = {
        "game": game, "student": student, "start": start, "iterations": iterations,
        "out": out, "seed": seed, "simulations": simulations,
        "games_per_iteration": games_per_iteration, "gate_threshold": gate_threshold,
        "eval_games": eval_games, "positions": positions,
        "panel": None if panel is None else agent_specs(panel),
    }
    cfg = iterate_config_with_preset(config, **fields)
    with progress_bar(cfg.iterations, "iterate") as bar:
        task = bar.add_task("iterate", total=cfg.iterations)

        def show(row: dict[str, Any]) -> None:
            bar.update(task, completed=int(row["iteration"]))
            parts = [f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in row.items()
                     if k.startswith("score_vs_") or k in (
                         "iteration", "accepted", "gate_score", "elo", "exhaustive_losses",
                         "optimal_rate", "blunder_rate")]
            bar.console.print("  " + "  ".join(parts))

        with StopHandler(bar.console.print, "this iteration") as stop, resume_hint(cfg.out), \
                arena.make_runner(workers, ray_address) as runner:
            report = iterate(cfg, progress=show, stop=stop, resume=resume, runner=runner)
    final = report["final"]
    console.print(f"{report['iterations']} iterations, {report['self_play_games']} self-play "
                  f"games in {report['wall_s']:.0f} s; best student: iteration "
                  f"{report['best_iteration']} (elo {final['elo']:.0f}, random = 0)")
    for key, value in final.items():
        if key.startswith("score_vs_") or key in (
            "exhaustive_losses", "optimal_accuracy", "optimal_rate", "blunder_rate",
        ):
            console.print(f"  {key.replace('_', ' ')}: {value:.4g}")
    console.print(f"student: {cfg.out / 'student'} (latest: {cfg.out / 'latest'})   curve: "
                  f"{cfg.out / 'curve.csv'}, {cfg.out / 'curve.png'}   report: "
                  f"{cfg.out / 'report.json'}")


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("generate")(generate_cmd)
    app.command("distill")(distill_cmd)
    app.command("iterate")(iterate_cmd)
