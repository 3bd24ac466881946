"""The ``tlm`` command line: thin wiring from flags to the library, and tables out.

One module per command group (``cli_eval``: games, eval, play; ``cli_distill``:
generate, distill, iterate; ``cli_teach``; ``cli_teaching_policy``; ``cli_league``;
``cli_demo``), each adding its commands to :data:`app`; this module runs them
(:func:`main`)."""

from __future__ import annotations

import functools
import sys
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated, Any

import typer

from arena import TlmError
from scripts import cli_demo, cli_distill, cli_eval, cli_teach, cli_teaching_policy
from scripts.cli_common import command_output
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
for _module in (cli_eval, cli_distill, cli_teach, cli_teaching_policy, cli_demo):
    _module.register(app)


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
