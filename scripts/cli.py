"""The ``tlm`` command line: thin wiring from flags to the library, and tables out."""

from __future__ import annotations

import functools
import json
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.table import Table

import arena
from arena import TlmError
from arena.runners import MAX_SHARD_GAMES, MAX_WORKERS
from arena.runstate import staged_directory
from scripts.cli_common import (
    MAX_DATASET_GAMES,
    MAX_GAMES,
    MAX_LR,
    MAX_PLIES,
    MAX_STEPS,
    MAX_TEMPERATURE,
    command_output,
    console,
    echo,
    float_option,
    int_option,
    positive,
    print_plain,
    progress_bar,
    resume_hint,
    seed_option,
    writable_file,
)
from scripts.cli_league import league_app

try:  # recent typer releases carry their own copy of click
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover - older typer on top of click
    from click import exceptions as click_exceptions  # type: ignore[no-redef]

app = typer.Typer(
    add_completion=False,
    help="tlm: self-play arena, teachers and distillation into small students.",
    rich_markup_mode=None,
)
app.add_typer(league_app, name="league")


def _version() -> str:
    try:
        return version("tlm")
    except PackageNotFoundError:
        return "unknown"


@app.callback(invoke_without_command=True)
def _root(
    ctx: typer.Context,
    show_version: Annotated[
        bool, typer.Option("--version", help="Print the version and exit.", is_eager=True)
    ] = False,
) -> None:
    if show_version:
        typer.echo(f"tlm {_version()}")
        raise typer.Exit()
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())
        raise typer.Exit()


@app.command("games")
def games_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List the registered games with their observation and action shapes.

    Example: tlm games
    """
    rows: list[dict[str, Any]] = []
    for g in arena.list_games():
        rows.append({
            "game": g.name,
            "obs_shape": list(g.obs_shape),
            "obs_dtype": str(g.obs_dtype),
            "actions": g.num_actions,
            "engine": "fast" if g.has_engine else "generic",
            "description": g.description,
        })
    if as_json:
        echo(json.dumps(rows))
        return
    table = Table(title="games")
    for col in ("game", "observation", "actions", "engine", "description"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            str(r["game"]), f"{tuple(r['obs_shape'])} {r['obs_dtype']}", str(r["actions"]),
            str(r["engine"]), str(r["description"]),
        )
    console.print(table)


MAX_EVAL_GAMES = 10**12
"""Games per opponent of `tlm eval`: shards are counted as they finish, so memory does
not grow with the number of games; time is the bound."""

WorkersOption = Annotated[
    int | None,
    int_option("--workers", help="Play on a local Ray with this many worker processes.",
               hi=MAX_WORKERS),
]
RayAddressOption = Annotated[
    str | None,
    typer.Option("--ray-address",
                 help="Play on the Ray cluster at this address (auto, host:port, ray://host:10001)."),
]


@app.command("eval")
def eval_cmd(
    game: Annotated[str, typer.Option(help="Game name (see `tlm games`).")],
    agent: Annotated[str, typer.Option(help="Agent spec to evaluate.")],
    opponents: Annotated[
        str, typer.Option(help="Comma-separated opponent specs.")
    ] = "random",
    games: Annotated[
        int, int_option("--games", help="Games per opponent.", hi=MAX_EVAL_GAMES)
    ] = 200,
    seed: Annotated[int, seed_option()] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    out: Annotated[Path | None, typer.Option(help="Also write the JSON to this file.")] = None,
    opening_plies: Annotated[
        int, int_option(help="Random first plies of every game (varies deterministic play).",
                        lo=0, hi=MAX_PLIES)
    ] = 0,
    agreement: Annotated[
        Path | None,
        typer.Option(help="A dataset from `tlm generate`: report top-1 agreement with its "
                          "teacher on its positions."),
    ] = None,
    positions: Annotated[
        Path | None,
        typer.Option(help="A solver-labelled positions file (CSV: moves,score_c0,...), or "
                          "the name of one shipped with tlm (connect_four_solved): report "
                          "optimal-move, blunder and illegal-move rates on it."),
    ] = None,
    panel: Annotated[
        bool,
        typer.Option("--panel", help="Also play the game's standard panel (--games each, "
                                     "its own random openings) and rate the agent: one Elo "
                                     "with a 95% interval, random = 0."),
    ] = False,
    workers: WorkersOption = None,
    ray_address: RayAddressOption = None,
    shard_games: Annotated[
        int | None, int_option(help="Games per shard, the unit of work of a worker "
                                    "(default: large in this process, about four per Ray "
                                    "worker); results do not depend on it.",
                               hi=MAX_SHARD_GAMES)
    ] = None,
) -> None:
    """Evaluate an agent against fixed opponents: per seat, with 95% Wilson intervals.

    Example: tlm eval --game tictactoe --agent perfect --opponents random,heuristic --games 1000
    """
    positive(games, "--games")
    if out is not None:
        writable_file(out, "--out")
    g = arena.get_game(game)
    player = arena.make_agent(agent, g)
    opponent_specs = [s for s in opponents.split(",") if s.strip()]
    if not opponent_specs:
        raise TlmError("--opponents names no agent")
    opps = [arena.make_agent(s, g) for s in opponent_specs]
    if opening_plies < 0:
        raise TlmError(f"--opening-plies must be >= 0, got {opening_plies}")
    held_out = None
    if agreement is not None:
        from teachers.datasets import load_dataset, read_manifest

        held_out = load_dataset(agreement, g)
        held_out_teacher = read_manifest(agreement)["teacher"]
    solved = None
    if positions is not None:
        from arena.positions import load_positions

        solved = load_positions(positions, g)
    if panel:
        from arena.panel import panel_for

        panel_for(g)  # a game without a panel fails before any game is played
    with arena.make_runner(workers, ray_address) as runner:
        if as_json:
            rows = arena.evaluate(g, player, opps, games, seed=seed,
                                  opening_plies=opening_plies, runner=runner,
                                  shard_games=shard_games)
        else:
            total = games * len(opps)
            with progress_bar(total, "games") as bar:
                task = bar.add_task("eval", total=total)
                rows = arena.evaluate(
                    g, player, opps, games, seed=seed, opening_plies=opening_plies,
                    runner=runner, shard_games=shard_games,
                    progress=lambda done: bar.update(task, completed=done),
                )
    panel_result = None
    if panel:
        from arena.panel import evaluate_panel

        panel_result = evaluate_panel(player, g, games, seed=seed)
    report: dict[str, Any] = {
        "game": g.name, "agent": agent, "results": [r.as_json() for r in rows],
    }
    if panel_result is not None:
        report["panel"] = panel_result.as_json()
    extra = arena.exact_strength(g, player)
    if extra is not None:
        report["exact"] = extra
    if held_out is not None:
        report["agreement"] = {
            "teacher": held_out_teacher,
            "positions": len(held_out),
            "top1": arena.top1_agreement(player, held_out.obs, held_out.mask, held_out.probs),
        }
    if solved is not None:
        from arena.positions import evaluate_positions

        report["positions"] = evaluate_positions(player, solved, np.random.default_rng(seed))
    if out is not None:
        arena.write_json_atomic(out, report)
    if as_json:
        echo(json.dumps(report))
        return
    for opp in opponent_specs:
        table = Table(title=f"{agent} vs {opp.strip()} on {g.name}")
        for col in ("seat", "games", "wins", "draws", "losses", "score", "95% CI"):
            table.add_column(col, justify="right")
        for r in rows:
            if r.opponent == opp.strip():
                table.add_row(
                    r.seat, str(r.games), str(r.wins), str(r.draws), str(r.losses),
                    f"{r.score:.3f}", f"[{r.ci95[0]:.3f}, {r.ci95[1]:.3f}]",
                )
        console.print(table)
    if extra is not None:
        console.print(
            f"exact: {extra['exhaustive_losses']} lost lines against every reply "
            f"(first seat {extra['losses_first']}, second {extra['losses_second']}), "
            f"{extra['losses_vs_perfect']} against perfect; optimal-move accuracy "
            f"{extra['optimal_accuracy']:.4f} over {extra['positions']} positions"
        )
    if held_out is not None:
        a = report["agreement"]
        console.print(f"top-1 agreement with {a['teacher']}: {a['top1']:.4f} over "
                      f"{a['positions']} positions of {agreement}")
    if solved is not None:
        pr = report["positions"]
        table = Table(title=f"{agent} on {pr['positions']} positions of {positions}")
        for col in ("measure", "count", "rate", "95% CI"):
            table.add_column(col, justify="right")
        for key, label in (("optimal", "optimal moves"), ("blunders", "blunders"),
                           ("illegal", "illegal moves")):
            m = pr[key]
            table.add_row(label, str(m["count"]), f"{m['rate']:.3f}",
                          f"[{m['ci95'][0]:.3f}, {m['ci95'][1]:.3f}]")
        console.print(table)
    if panel_result is not None:
        table = Table(title=f"{agent} against the {g.name} panel ({panel_result.games} games "
                            f"each, {panel_result.opening_plies} random opening plies)")
        for col in ("opponent", "wins", "draws", "losses", "score", "95% CI", "opponent Elo"):
            table.add_column(col, justify="right")
        for r in panel_result.rows:
            if r.seat == "both":
                table.add_row(r.opponent, str(r.wins), str(r.draws), str(r.losses),
                              f"{r.score:.3f}", f"[{r.ci95[0]:.3f}, {r.ci95[1]:.3f}]",
                              f"{panel_result.ratings[r.opponent].elo:.0f}")
        console.print(table)
        e = panel_result.elo
        console.print(f"panel Elo of {agent}: {e.elo:.0f} [{e.lo:.0f}, {e.hi:.0f}] (random = 0)")


@app.command("play")
def play_cmd(
    game: Annotated[str, typer.Option(help="Game name.")],
    opponent: Annotated[str, typer.Option(help="Agent spec to play against.")] = "random",
    seat: Annotated[str, typer.Option(help="Your seat: first or second.")] = "first",
    seed: Annotated[int, seed_option()] = 0,
) -> None:
    """Play a game against an agent in the terminal.

    Example: tlm play --game connect_four --opponent alphabeta:4 --seat second
    """
    if seat not in ("first", "second"):
        raise TlmError(f"--seat must be first or second, got {seat!r}")
    g = arena.get_game(game)
    agent = arena.make_agent(opponent, g)

    def read(prompt: str) -> str:
        line = input(prompt)
        return line

    arena.play_human(g, agent, 0 if seat == "first" else 1, read, typer.echo, seed=seed)


@app.command("generate")
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


@app.command("distill")
def distill_cmd(
    game: Annotated[str | None, typer.Option(help="Game name; its preset is the starting point "
                                             "(tictactoe, connect_four).")] = None,
    teacher: Annotated[str | None, typer.Option(
        help=_distill_help("Teacher agent spec.", "teacher"))] = None,
    student: Annotated[str | None, typer.Option(
        help=_distill_help("Student spec (mlp:64x2, cnn:32x3, res:64x3).", "student"))] = None,
    method: Annotated[str | None, typer.Option(
        help=_distill_help("offline, dagger, kickstart or adaptive (a bandit picks a "
                           "teaching strategy every round).", "method"))] = None,
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
        "dagger: who plays the labelled games, SPEC=SHARE,...: student (against itself), "
        "teacher, or an agent spec playing the student; the teacher labels every "
        "position reached.", "mix"))] = None,
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
        help=_distill_help("dagger: share of the student's moves the teacher plays in "
                           "round 0.", "beta0"), lo=0, hi=1)] = None,
    beta_decay: Annotated[float | None, float_option(
        help=_distill_help("dagger: beta decay a round.", "beta_decay"), lo=0, hi=1)] = None,
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
    stop_when_perfect: Annotated[bool | None, typer.Option(
        "--stop-when-perfect", help=_distill_help("Stop at zero exhaustive losses.",
                                                  "stop_when_perfect"))] = None,
    config: Annotated[Path | None, typer.Option(
        help="YAML config: over the game's preset; flags override it.")] = None,
    resume: Annotated[bool, typer.Option(
        "--resume/--fresh", help="Go on from the last finished round of a killed or stopped "
        "run with the same settings (default), or start over.")] = True,
    workers: Annotated[int | None, int_option(
        "--workers", help="Play each round's games on a local Ray with this many worker "
        "processes (dagger and offline; the teacher labels here; kickstart and adaptive "
        "ignore it).", hi=MAX_WORKERS)] = None,
    ray_address: Annotated[str | None, typer.Option(
        "--ray-address", help="Play each round's games on the Ray cluster at this address "
        "(auto, host:port, ray://host:10001); kickstart and adaptive ignore it.")] = None,
) -> None:
    """Distill a teacher into a freshly initialized student and measure it as it learns.

    Settings start from the game's preset (the tested recipe), then --config, then flags.
    The run checkpoints after every round: run the same command again after a kill, or
    after Ctrl-C (which stops at the end of the round), to go on where it stopped.
    --workers / --ray-address play each round's games on Ray, with the same results.

    Example: tlm distill --game tictactoe --teacher perfect --out runs/ttt-dagger
    (the preset: a fresh mlp:128x2 that loses no line of tic-tac-toe within 500 games)
    """
    from distill import distill
    from distill.collect import parse_mix
    from distill.presets import config_with_preset
    from distill.resume import stop_after_round

    runner = arena.make_runner(workers, ray_address)  # checks the values; started below
    if method == "adaptive":
        _distill_adaptive(game, teacher, student, seed, out, games_per_round,
                          steps_per_round, budget_games, positions, resume)
        return
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
        "mix": None if mix is None else parse_mix(mix),
        "eval_opponents": None if eval_opponents is None else [
            s.strip() for s in eval_opponents.split(",") if s.strip()
        ],
    }
    cfg = config_with_preset(config, **fields)
    if cfg.method == "kickstart":
        runner = arena.LocalRunner()
    total = cfg.budget_games if cfg.method != "kickstart" else cfg.kickstart_steps
    with runner, progress_bar(total, cfg.method) as bar:
        task = bar.add_task("distill", total=total)

        def show(row: dict[str, Any]) -> None:
            bar.update(task, completed=int(row.get("teacher_games", row.get("steps", 0))))
            parts = [f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in row.items() if k not in ("round", "beta", "wall_s")]
            bar.console.print("  " + "  ".join(parts))

        with stop_after_round(bar.console.print) as stop:
            report = distill(cfg, progress=show, resume=resume, stop=stop, runner=runner)
    _print_distill_report(report, cfg.out)


def _print_distill_report(report: dict[str, object], out: Path) -> None:
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
        console.print(f"student: sb3:{out / 'model.zip'}   report: {out / 'report.json'}")


def _distill_adaptive(
    game: str | None, teacher: str | None, student: str | None, seed: int | None,
    out: Path | None, games_per_round: int | None, steps_per_round: int | None,
    budget_games: int | None, positions: Path | None, resume: bool = True,
) -> None:
    """``tlm distill --method adaptive``: an EXP3 teacher picks a strategy every round
    (checkpointed every round, resumed by the same command, stopped by Ctrl-C)."""
    from arena.positions import load_positions
    from distill.curricula import ADAPTIVE, teach_run
    from distill.presets import SOLVED_POSITIONS
    from distill.resume import stop_after_round

    if game is None or teacher is None or out is None:
        raise TlmError("--method adaptive needs --game, --teacher and --out")
    g = arena.get_game(game)
    if positions is None and g.name == "connect_four":
        positions = Path(SOLVED_POSITIONS)
    per_round = games_per_round or 25

    def show(row: dict[str, Any]) -> None:
        print_plain(f"  round={row['round']}  strategy={row['strategy']}  labels={row['labels']}  "
              f"probe={row['probe']:.3f}")

    with stop_after_round(print_plain) as stop:
        report = teach_run(
            out, g, teacher, student or "mlp:128x2", ADAPTIVE, resume=resume, seed=seed or 0,
            games_per_round=per_round, steps_per_round=steps_per_round or 150,
            max_rounds=max(1, (budget_games or 500) // per_round),
            positions=None if positions is None else load_positions(positions, g),
            stop=stop, progress=show,
        )
    reached = (f"target reached with {report['labels']} labels" if report["reached"]
               else f"target not reached ({report['labels_spent']} labels spent)")
    console.print(f"adaptive teacher: {report['rounds']} rounds, {reached}; strategies "
                  f"chosen: {report['choices']}; probe {report['final_probe']:.3f}")
    console.print(f"student: {out / 'student'}   curve: {out / 'curve.csv'}, "
                  f"{out / 'curve.png'}   report: {out / 'report.json'}")


@app.command("iterate")
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
) -> None:
    """Expert iteration: MCTS guided by the student teaches the student, iteration after iteration.

    Starts from the game's preset (distill/iterate_config.py); --config and flags
    override it. Every iteration is checkpointed: the same command resumes a killed
    run; Ctrl-C stops after the current iteration.

    Example: tlm iterate --game tictactoe --student mlp:64x2 --start none --iterations 12
    --out runs/ttt-exit
    """
    from distill.iterate import iterate
    from distill.iterate_config import iterate_config_with_preset
    from distill.resume import stop_after_round

    fields = {
        "game": game, "student": student, "start": start, "iterations": iterations,
        "out": out, "seed": seed, "simulations": simulations,
        "games_per_iteration": games_per_iteration, "gate_threshold": gate_threshold,
        "eval_games": eval_games, "positions": positions,
        "panel": None if panel is None else [s.strip() for s in panel.split(",") if s.strip()],
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

        with stop_after_round(bar.console.print) as stop, resume_hint(cfg.out):
            report = iterate(cfg, progress=show, stop=stop)
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


@app.command("teach")
def teach_cmd(
    game: Annotated[str, typer.Option(help="Game name.")],
    out: Annotated[Path, typer.Option(help="New output directory.")],
    algo: Annotated[str, typer.Option(
        help="Self-play algorithm: maskable_ppo (SB3) or rllib_ppo (RLlib PPO).")] = "maskable_ppo",
    steps: Annotated[int, int_option(help="Environment steps.", hi=MAX_STEPS)] = 100_000,
    seed: Annotated[int, seed_option()] = 0,
    fresh: Annotated[bool, typer.Option(
        "--fresh", help="Start over instead of resuming an interrupted run to OUT.")] = False,
) -> None:
    """Train a self-play RL teacher against itself, its snapshots and random.

    A run checkpoints as it goes (maskable_ppo every rollout, rllib_ppo every round):
    after a kill or Ctrl-C, the same command goes on from the last checkpoint
    (maskable_ppo to the same final weights). Ctrl-C stops rllib_ppo after its round.

    maskable_ppo: SB3 MaskablePPO, the model in OUT/model.zip (spec sb3:OUT/model.zip).
    rllib_ppo: RLlib PPO (new API stack, local Ray), the policy in OUT/main (spec
    rllib:OUT/main).

    Example: tlm teach --game tictactoe --algo rllib_ppo --steps 200000 --out runs/rl
    """
    if algo not in ("maskable_ppo", "rllib_ppo"):
        raise TlmError(f"unknown teaching algorithm {algo!r} (known: maskable_ppo, rllib_ppo)")
    from contextlib import nullcontext

    from arena.runstate import check_output_dir
    from distill.resume import stop_after_round
    from teachers.resume import start_over

    positive(steps, "--steps")
    check_output_dir(out)
    g = arena.get_game(game)

    # rllib_ppo honours Ctrl-C between rounds, so Ray and RLlib stop cleanly.
    between_rounds = stop_after_round(print_plain) if algo == "rllib_ppo" else nullcontext(None)
    with resume_hint(out), staged_directory(out, resume=True) as tmp, \
            between_rounds as stop:
        if fresh:
            start_over(tmp)

        def resumed(step: int) -> None:
            console.print(f"resuming the interrupted run kept in {tmp} at step {step}")

        if algo == "rllib_ppo":
            from teachers.rllib_learner import train_rllib_selfplay

            train_rllib_selfplay(g, steps, tmp, seed=seed, resume=True, stop=stop,
                                 resumed=resumed)
        else:
            from teachers.sb3_teacher import train_maskable_ppo

            train_maskable_ppo(g, steps, tmp, seed=seed, resume=True, resumed=resumed)
    spec = f"rllib:{out / 'main'}" if algo == "rllib_ppo" else f"sb3:{out / 'model.zip'}"
    summary = json.loads((out / "summary.json").read_text())
    console.print(f"{summary['games']} self-play games, {summary['steps']} steps in "
                  f"{summary['wall_seconds']:.0f} s")
    for row in summary["evaluation"]:
        if row["seat"] == "both":
            console.print(f"  score vs {row['opponent']}: {row['score']:.3f} "
                          f"[{row['ci95'][0]:.3f}, {row['ci95'][1]:.3f}]")
    console.print(f"teacher saved; use it as the agent spec {spec}")


@app.command("demo")
def demo_cmd(
    out: Annotated[Path, typer.Option(help="Output directory.")] = Path("runs/demo"),
    seed: Annotated[int, seed_option()] = 0,
) -> None:
    """The main jobs end to end on tic-tac-toe: a short self-play league, then perfect
    teacher -> DAgger -> fresh MLP -> eval.

    Example: tlm demo
    """
    from distill import distill, make_config
    from distill.presets import TICTACTOE_DAGGER

    out = _fresh_dir(out)
    _demo_league(_fresh_dir(out.with_name(f"{out.name}-league")), seed)
    console.print(
        "\ntlm demo: the exact tic-tac-toe solver (`perfect`) teaches a freshly initialized "
        "MLP by DAgger: the student plays, the teacher labels every position it reaches."
    )
    cfg = make_config(**{**TICTACTOE_DAGGER, "seed": seed, "out": out})
    with progress_bar(cfg.budget_games, "dagger") as bar:
        task = bar.add_task("distill", total=cfg.budget_games)
        report = distill(cfg, progress=lambda row: bar.update(
            task, completed=int(row["teacher_games"])))
    _print_distill_report(report, out)
    student = str(out / "student")
    console.print(f"\nfinal evaluation of {student}:")
    eval_cmd(game="tictactoe", agent=student, opponents="random,heuristic,perfect",
             games=1000, seed=seed, as_json=False, out=None, opening_plies=0)


def _demo_league(directory: Path, seed: int) -> None:
    """The demo's first part: a short self-play league, and who ended up where."""
    from teachers.league_run import DEMO_LEAGUE, LeagueProgress, parse_config, run_league

    console.print("tlm demo: a short self-play league on tic-tac-toe: a MaskablePPO learner "
                  "trains against the league's picks (PFSP over its snapshots and the "
                  "references random, heuristic, perfect); every round is rated.")
    cfg = parse_config({**DEMO_LEAGUE, "seed": seed})

    def round_line(p: LeagueProgress) -> None:
        if p.phase == "done":
            console.print(f"  {p.message}", highlight=False, soft_wrap=True)

    outcome = run_league(cfg, directory, progress=round_line)
    console.print(f"league: {outcome.rounds} rounds in {outcome.timing['total']:.0f} s; Elo "
                  "(anchored at random = 0, 95% interval):")
    for r in sorted(outcome.ratings.values(), key=lambda r: -r.elo):
        if r.games:
            console.print(f"  {r.name:<12} {r.elo:7.0f}  [{r.lo:.0f}, {r.hi:.0f}]  "
                          f"{r.games} games", highlight=False)
    console.print(f"its agents play elsewhere as league:{directory}/NAME; see "
                  f"tlm league status --dir {directory}", soft_wrap=True)


def _fresh_dir(path: Path) -> Path:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        return path
    for i in range(1, 10_000):
        candidate = path.with_name(f"{path.name}-{i}")
        if not candidate.exists():
            return candidate
    raise TlmError(f"no free directory name next to {path}")


INTERACTIVE = frozenset({"play"})
"""Commands that talk with a person: their prompts are their output, and ``input()``
edits lines only on the terminal at fd 1; they start no workers."""


def _output_only_on_stdout(command: Any) -> None:
    """Run every command of the click tree ``command`` (but :data:`INTERACTIVE`) in
    :func:`scripts.cli_common.command_output`: once its flags are parsed (help and usage
    errors print as usual), only its own output reaches stdout."""
    subcommands = getattr(command, "commands", None)
    if subcommands is not None:  # a group
        for sub in subcommands.values():
            _output_only_on_stdout(sub)
        return
    callback = command.callback
    if callback is None or command.name in INTERACTIVE:
        return

    @functools.wraps(callback)
    def run(*args: Any, **kwargs: Any) -> Any:
        with command_output():
            return callback(*args, **kwargs)

    command.callback = run


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``tlm`` console script; returns the exit code."""
    command = typer.main.get_command(app)
    _output_only_on_stdout(command)
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        # Not command.main(): it turns Ctrl-C into a silent exit code, and a
        # resumable run's interrupt carries the line that says how to resume.
        with command.make_context("tlm", args) as ctx:
            result = command.invoke(ctx)
    except KeyboardInterrupt as e:
        print(f"interrupted: {e}" if str(e) else "interrupted", file=sys.stderr)
        return 130
    except TlmError as e:
        # One line, whatever the message quotes (a YAML parser's multi-line report, say).
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    except click_exceptions.NoArgsIsHelpError as e:
        print(e.ctx.get_help() if e.ctx is not None else e.format_message())
        return 0  # like `tlm` alone: a group named without a command shows its help
    except click_exceptions.UsageError as e:
        print(f"error: {' '.join(e.format_message().split())}", file=sys.stderr)
        return 2
    except typer.Exit as e:
        return int(e.exit_code)
    except OSError as e:
        print(f"error: {e.strerror or e}: {e.filename or ''}".rstrip(": "), file=sys.stderr)
        return 2
    except typer.Abort:
        print("aborted", file=sys.stderr)
        return 1
    except EOFError:
        print("\ninput ended", file=sys.stderr)
        return 1
    return int(result) if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
