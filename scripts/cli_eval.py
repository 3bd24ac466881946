"""`tlm games`, `tlm eval` and `tlm play`: the arena's commands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

import arena
from arena import TlmError
from arena.eval_report import plot_series_scores
from arena.matches import MAX_SERIES
from arena.runners import MAX_SHARD_GAMES, Progress, Runner
from scripts.cli_common import (
    MAX_EVAL_GAMES,
    MAX_PLIES,
    RayAddressOption,
    WorkersOption,
    agent_specs,
    console,
    echo,
    int_option,
    positive,
    progress_bar,
    seed_option,
    writable_file,
)


def games_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List the registered games (``tlm.games`` plugins included) with their observation
    and action shapes.

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


def eval_cmd(
    game: Annotated[str, typer.Option(help="Game name (see `tlm games`), or "
                                           "package.module:factory for a two-player "
                                           "PettingZoo AEC env of one's own.")],
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
    series: Annotated[
        int, int_option(help="Play series of this many games against each opponent (seats "
                             "alternating, an agent's memory carried from game to game); "
                             "--games counts their games in all; report the score by game "
                             "index within the series.", hi=MAX_SERIES)
    ] = 1,
    plot: Annotated[
        Path | None, typer.Option(help="With --series: write a PNG of the score by game "
                                       "index to this file.")
    ] = None,
) -> None:
    """Evaluate an agent against fixed opponents: per seat, with 95% Wilson intervals.

    Example: tlm eval --game tictactoe --agent perfect --opponents random,heuristic --games 1000
    """
    positive(games, "--games")
    if games % series:
        raise TlmError(f"--games {games} is not a whole number of series of {series} games")
    if plot is not None:
        if series < 2:
            raise TlmError("--plot draws the score by game index of a series: give --series")
        writable_file(plot, "--plot")
    if out is not None:
        writable_file(out, "--out")
    g = arena.get_game(game)
    player = arena.make_agent(agent, g)
    opponent_specs = agent_specs(opponents)
    if not opponent_specs:
        raise TlmError("--opponents names no agent")
    opps = [arena.make_agent(s, g) for s in opponent_specs]
    if opening_plies < 0:
        raise TlmError(f"--opening-plies must be >= 0, got {opening_plies}")
    teacher_labels = None
    if agreement is not None:
        from teachers.datasets import load_dataset, read_manifest

        held_out = load_dataset(agreement, g)
        teacher_labels = arena.TeacherLabels(read_manifest(agreement)["teacher"], held_out.obs,
                                             held_out.mask, held_out.probs)
    solved = None
    if positions is not None:
        from arena.positions import load_positions

        solved = load_positions(positions, g)
    if panel:
        from arena.panel import panel_for

        panel_for(g)  # refused before a Ray cluster is started or joined

    def run(runner: Runner, progress: Progress | None = None) -> arena.EvalReport:
        return arena.eval_report(
            g, player, opps, games, seed, opening_plies=opening_plies, panel=panel,
            teacher_labels=teacher_labels, positions=solved, runner=runner,
            shard_games=shard_games, progress=progress, series=series,
        )

    with arena.make_runner(workers, ray_address) as runner:
        if as_json:
            report = run(runner)
        else:
            total = games * len(opps)
            with progress_bar(total, "games") as bar:
                task = bar.add_task("eval", total=total)
                report = run(runner, lambda done: bar.update(task, completed=done))
    if out is not None:
        arena.write_json_atomic(out, report.to_json())
    if plot is not None:
        plot_series_scores(report, plot)
    if as_json:
        echo(json.dumps(report.to_json()))
        return
    _print_eval_report(report, opponent_specs, agreement, positions)


def _print_eval_report(report: arena.EvalReport, opponent_specs: list[str],
                       agreement: Path | None, positions: Path | None) -> None:
    """``tlm eval``'s tables: one per opponent, then the report's other measures."""
    agent, rows, extra, panel_result = report.agent, report.rows, report.exact, report.panel
    for opp in opponent_specs:
        table = Table(title=f"{agent} vs {opp.strip()} on {report.game}")
        for col in ("seat", "games", "wins", "draws", "losses", "score", "95% CI"):
            table.add_column(col, justify="right")
        for r in rows:
            if r.opponent == opp.strip():
                table.add_row(
                    r.seat, str(r.games), str(r.wins), str(r.draws), str(r.losses),
                    f"{r.score:.3f}", f"[{r.ci95[0]:.3f}, {r.ci95[1]:.3f}]",
                )
        console.print(table)
        for r in rows:
            if r.opponent == opp.strip() and r.series_scores:
                by_game = ", ".join(f"{s.game}: {s.score:.3f} [{s.ci95[0]:.3f}, "
                                    f"{s.ci95[1]:.3f}]" for s in r.series_scores)
                console.print(f"score by game of the series ({r.series_scores[0].games} series):"
                              f" {by_game}", soft_wrap=True)
    if extra is not None:
        console.print(
            f"exact: {extra['exhaustive_losses']} lost lines against every reply "
            f"(first seat {extra['losses_first']}, second {extra['losses_second']}), "
            f"{extra['losses_vs_perfect']} against perfect; optimal-move accuracy "
            f"{extra['optimal_accuracy']:.4f} over {extra['positions']} positions"
        )
    if report.agreement is not None:
        a = report.agreement
        console.print(f"top-1 agreement with {a['teacher']}: {a['top1']:.4f} over "
                      f"{a['positions']} positions of {agreement}")
    if report.positions is not None:
        pr = report.positions
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
        table = Table(title=f"{agent} against the {report.game} panel ({panel_result.games} games "
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


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("games")(games_cmd)
    app.command("eval")(eval_cmd)
    app.command("play")(play_cmd)
