"""The ``tlm`` command line: thin wiring from flags to the library, and tables out."""

from __future__ import annotations

import json
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Annotated

import click
import typer
from rich.console import Console
from rich.table import Table

import arena
import students  # noqa: F401  (registers checkpoint paths as agent specs)
import teachers  # noqa: F401  (registers mcts and sb3 agent specs)
from arena import TlmError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="tlm: self-play arena, teachers and distillation into small students.",
    rich_markup_mode=None,
)
console = Console()


def _version() -> str:
    try:
        return version("tlm")
    except PackageNotFoundError:
        return "unknown"


@app.callback()
def _root(
    show_version: Annotated[
        bool, typer.Option("--version", help="Print the version and exit.", is_eager=True)
    ] = False,
) -> None:
    if show_version:
        typer.echo(f"tlm {_version()}")
        raise typer.Exit()


def positive(value: int, flag: str) -> int:
    """``value`` if positive, else a one-line error naming ``flag``."""
    if value <= 0:
        raise TlmError(f"{flag} must be positive, got {value}")
    return value


def writable_file(path: Path, flag: str) -> Path:
    """Fail before any work if ``path`` cannot be written."""
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise TlmError(f"{flag} {path} is a directory")
    if not parent.is_dir():
        raise TlmError(f"{flag} {path}: directory {parent} does not exist")
    import os

    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise TlmError(f"{flag} {path} is not writable")
    return path


@app.command("games")
def games_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List the registered games with their observation and action shapes.

    Example: tlm games
    """
    rows = []
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
        typer.echo(json.dumps(rows))
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


@app.command("eval")
def eval_cmd(
    game: Annotated[str, typer.Option(help="Game name (see `tlm games`).")],
    agent: Annotated[str, typer.Option(help="Agent spec to evaluate.")],
    opponents: Annotated[
        str, typer.Option(help="Comma-separated opponent specs.")
    ] = "random",
    games: Annotated[int, typer.Option("--games", help="Games per opponent.")] = 200,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    out: Annotated[Path | None, typer.Option(help="Also write the JSON to this file.")] = None,
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
    rows = arena.evaluate(g, player, opps, games, seed=seed)
    report = {"game": g.name, "agent": agent, "results": [r.as_json() for r in rows]}
    extra = arena.exact_strength(g, player)
    if extra is not None:
        report["exact"] = extra
    if out is not None:
        arena.write_json_atomic(out, report)
    if as_json:
        typer.echo(json.dumps(report))
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
            f"exact: {extra['exhaustive_losses']} exhaustive losses against perfect "
            f"(first {extra['losses_first']}, second {extra['losses_second']}); "
            f"optimal-move accuracy {extra['optimal_accuracy']:.4f} over "
            f"{extra['positions']} positions"
        )


@app.command("play")
def play_cmd(
    game: Annotated[str, typer.Option(help="Game name.")],
    opponent: Annotated[str, typer.Option(help="Agent spec to play against.")] = "random",
    seat: Annotated[str, typer.Option(help="Your seat: first or second.")] = "first",
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
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


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``tlm`` console script; returns the exit code."""
    command = typer.main.get_command(app)
    try:
        result = command.main(args=argv, prog_name="tlm", standalone_mode=False)
    except TlmError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except click.exceptions.UsageError as e:
        print(f"error: {e.format_message()}", file=sys.stderr)
        return 2
    except click.exceptions.Exit as e:
        return int(e.exit_code)
    except click.exceptions.Abort:
        print("aborted", file=sys.stderr)
        return 1
    except EOFError:
        print("\ninput ended", file=sys.stderr)
        return 1
    return int(result) if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
