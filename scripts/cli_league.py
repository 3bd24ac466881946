"""``tlm league``: run a self-play league, show its status, write its report."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from arena.runners import MAX_WORKERS
from scripts.cli_common import console, echo, int_option

if TYPE_CHECKING:
    from rich.console import Group

    from teachers.league import LeagueProgress

league_app = typer.Typer(
    help="Self-play leagues: learners, frozen snapshots and fixed references that play, "
    "train and are rated; killed leagues resume.",
    rich_markup_mode=None,
    no_args_is_help=True,
)


@league_app.command("run")
def run_cmd(
    config: Annotated[Path, typer.Option("--config", help="League YAML file.")],
    directory: Annotated[Path, typer.Option("--dir", help="League directory (new, or a "
                                            "league to resume).")],
    quiet: Annotated[bool, typer.Option("--quiet", help="One line per round, no live "
                                        "view.")] = False,
    workers: Annotated[int | None, int_option(
        "--workers", help="Play the rating matches on a local Ray with this many worker "
        "processes.", hi=MAX_WORKERS)] = None,
    ray_address: Annotated[str | None, typer.Option(
        "--ray-address", help="Play the rating matches on the Ray cluster at this address "
        "(auto, host:port, ray://host:10001).")] = None,
) -> None:
    """Run a league (or resume a stopped one: run the same command again).

    Example: tlm league run --config configs/league_tictactoe.yaml --dir runs/ttt
    """
    from arena.runners import make_runner
    from arena.runstate import StopHandler
    from teachers.league import load_config, run_league

    cfg = load_config(config)
    live = not quiet and console.is_terminal
    distributed = workers is not None or ray_address is not None
    with StopHandler() as stop, make_runner(workers, ray_address) as runner, \
            _league_view(live) as progress:
        outcome = run_league(cfg, directory, progress=progress, stop=stop,
                             runner=runner if distributed else None)
    if outcome.stopped_by == "signal":
        console.print(f"stopped after {outcome.rounds} finished rounds; resume with: "
                      f"tlm league run --config {config} --dir {directory}", soft_wrap=True)
        raise typer.Exit(128 + (outcome.signum or 2))
    console.print(f"league stopped ({outcome.stopped_by}) after {outcome.rounds} rounds; "
                  f"see tlm league status --dir {directory}", soft_wrap=True)


@contextlib.contextmanager
def _league_view(live: bool) -> Iterator[Callable[[LeagueProgress], None]]:
    """A progress callback: a rich live table, or one printed line per finished round."""
    if not live:
        def line(p: LeagueProgress) -> None:
            if p.phase == "done":
                console.print(p.message, highlight=False, soft_wrap=True)
        yield line
        return
    from rich.live import Live

    with Live(console=console, refresh_per_second=2, transient=False) as view:
        def update(p: LeagueProgress) -> None:
            view.update(_league_table(p))
            if p.phase == "done":
                view.console.print(p.message, highlight=False, soft_wrap=True)
        yield update


def _league_table(p: LeagueProgress) -> Group:
    from rich.table import Table

    table = Table(title=f"round {p.round} · {p.games} games · "
                  f"{p.games_per_second:.0f} rating games/s", title_justify="left")
    for col in ("agent", "elo", "95% CI", "games", "steps", "train score"):
        table.add_column(col, justify="left" if col == "agent" else "right")
    ranked = sorted(p.ratings.values(), key=lambda r: -r.elo)
    shown = {r.name for r in ranked[:12]} | set(p.learner_steps)
    for r in ranked:
        if r.name in shown:
            steps = p.learner_steps.get(r.name)
            score = p.learner_scores.get(r.name)
            table.add_row(r.name, f"{r.elo:.0f}", f"[{r.lo:.0f}, {r.hi:.0f}]", str(r.games),
                          "" if steps is None else str(steps),
                          "" if score is None else f"{score:.2f}")
    for name, steps in p.learner_steps.items():
        if name not in p.ratings:
            table.add_row(name, "", "", "", str(steps), "")
    from rich.console import Group
    from rich.text import Text

    return Group(table, Text(f"{p.phase}: {p.message}"))


@league_app.command("status")
def status_cmd(
    directory: Annotated[Path, typer.Option("--dir", help="League directory.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    openskill: Annotated[bool, typer.Option(
        "--openskill", help="Also rate with openskill (one update per game: seconds on long "
        "leagues); adds mu and sigma.")] = False,
) -> None:
    """Show a league's agents with anchored Elo (95% intervals); safe while the league runs.

    Example: tlm league status --dir runs/ttt --json
    """
    import json

    from rich.table import Table

    from teachers.league import LeagueStore, league_status

    with LeagueStore.open(directory, readonly=True) as store:
        status = league_status(store, with_openskill=openskill)
    if as_json:
        echo(json.dumps(status))
        return
    table = Table(title=f"league {directory} · {status['game']} · {status['matches']} matches · "
                  f"{status['games']} games · Elo anchored at {status['anchor']} = 0",
                  title_justify="left")
    cols = ["agent", "role", "Elo", "95% interval", "games", "spec"]
    if openskill:
        cols.insert(5, "openskill μ ± σ")
    for col in cols:
        table.add_column(col, justify="right" if col in ("Elo", "games") else "left")
    for a in status["agents"]:
        lo, hi = a["elo_ci95"]
        row = [a["name"], a["role"], f"{a['elo']:.0f}", f"[{lo:.0f}, {hi:.0f}]",
               str(a["games"]), a["spec"]]
        if openskill:
            row.insert(5, "" if a.get("mu") is None else f"{a['mu']:.1f} ± {a['sigma']:.1f}")
        table.add_row(*row)
    console.print(table)


@league_app.command("report")
def report_cmd(
    directory: Annotated[Path, typer.Option("--dir", help="League directory.")],
    out: Annotated[Path | None, typer.Option(help="Directory to write report.html and "
                                             "report.md into (default: the league's).")] = None,
) -> None:
    """Write report.html (ratings, ratings over time, payoff heatmap, learner curves; one
    self-contained page) and report.md; safe while the league runs.

    Example: tlm league report --dir runs/ttt
    """
    from teachers.league import LeagueStore, write_report

    with LeagueStore.open(directory, readonly=True) as store:
        html_path, md_path = write_report(store, out)
    console.print(f"wrote {html_path} and {md_path}")
