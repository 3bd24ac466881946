"""``tlm league``: run a self-play league, show its status, write its report."""

from __future__ import annotations

import typer

league_app = typer.Typer(
    help="Self-play leagues: learners, frozen snapshots and fixed references that play, "
    "train and are rated; killed leagues resume.",
    rich_markup_mode=None,
    no_args_is_help=True,
)
