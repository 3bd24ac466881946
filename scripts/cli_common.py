"""What every ``tlm`` command module shares: the console and the command's stdout, flag
checks, progress bars."""

from __future__ import annotations

import math
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from arena import TlmError
from arena.runners import MAX_WORKERS
from arena.runstate import staging_path

console = Console(soft_wrap=True)
"""The command's output: its tables, lines, progress and JSON (see :func:`command_output`).
Lines are never wrapped, so a printed path or agent spec can be copied whole."""


def echo(text: str) -> None:
    """Print ``text`` and a newline to the command's output as it is (JSON, say)."""
    out = console.file
    out.write(text + "\n")
    out.flush()


@contextmanager
def command_output() -> Iterator[None]:
    """Keep stdout for the command's own output while the block runs.

    In the block, file descriptor 1 and ``sys.stdout`` lead to stderr, so whatever else
    would print there goes to stderr: Ray's driver threads (the raylet's note that a
    worker died, at any moment of a run), libraries, C code, and child processes, which
    inherit fd 1. :data:`console` and :func:`echo` write to the stdout the command was
    started with, so ``tlm eval --json | jq`` parses whatever happens on the workers.
    Progress bars stay on the console: they are drawn only when stdout is a terminal
    (piped, a bar leaves its final line, a count of the work done).
    """
    stream = sys.stdout
    try:
        saved = os.dup(1)
    except OSError:  # no fd 1 (closed): nothing can leak into it
        yield
        return
    try:
        on_fd_1 = stream.fileno() == 1
    except (AttributeError, OSError, ValueError):  # a stream of its own (a test's capture)
        on_fd_1 = False
    stream.flush()
    sys.stderr.flush()
    out: IO[str] = stream
    if on_fd_1:
        buffering = 1 if getattr(stream, "line_buffering", False) else -1
        out = open(saved, "w", buffering=buffering, encoding=stream.encoding,  # noqa: SIM115
                   errors=stream.errors, closefd=False)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    console.file = out
    try:
        yield
    finally:
        console.file = None  # type: ignore[assignment]  # back to following sys.stdout
        sys.stdout = stream
        try:
            sys.stderr.flush()
            if out is stream:
                out.flush()
            else:
                out.close()  # flushes; the fd is `saved`, closed below
        finally:
            os.dup2(saved, 1)
            os.close(saved)


MAX_SEED = 2**63 - 1
"""Seeds are any integer from 0 to 2^63-1 (what numpy's and torch's seeding accept)."""

MAX_GAMES = 1_000_000
"""Games of one match: every game of a match is held in memory at once (a few hundred
bytes each with a network's observations), so more would be bounded by memory."""

MAX_DATASET_GAMES = 100_000_000
"""Games of a dataset or a distillation budget: written shard by shard, bounded by disk."""

MAX_STEPS = 10_000_000_000
"""Environment or learner steps of a training run (its memory does not grow with them)."""

MAX_PLIES = 1_000
"""Random opening plies: longer than any game here (the longest ends within 1,000)."""

MAX_EPOCHS = 10_000
"""Training epochs per round."""

MAX_TEMPERATURE = 1_000.0
"""Move-sampling temperature (beyond a few, play is uniform anyway)."""

MAX_LR = 10.0
"""Learning rate."""


def names(text: str) -> list[str]:
    """A comma-separated list of names."""
    return [s.strip() for s in text.split(",") if s.strip()]


_OPTION = re.compile(r"[A-Za-z_]\w*=[^:]*")


def agent_specs(text: str) -> list[str]:
    """A comma-separated list of agent specs, where a part ``KEY=VALUE`` (no colon) is an
    option of the spec before it: ``alphabeta:8,t=1,random`` is two specs."""
    out: list[str] = []
    for part in names(text):
        if out and _OPTION.fullmatch(part):
            out[-1] += "," + part
        else:
            out.append(part)
    return out


def _flag_name(param: typer.CallbackParam) -> str:
    return max(param.opts, key=len) if param.opts else str(param.name)


def check_int(value: int, flag: str, lo: int, hi: int) -> int:
    """``value`` if ``lo <= value <= hi``, else a one-line error naming ``flag``."""
    if not lo <= value <= hi:
        top = "2^63-1" if hi == MAX_SEED else f"{hi:,}"
        if lo == 1:
            raise TlmError(f"{flag} must be positive and at most {top}, got {value}")
        raise TlmError(f"{flag} must be an integer from {lo:,} to {top}, got {value}")
    return value


def check_float(
    value: float, flag: str, lo: float, hi: float, *, lo_open: bool = False
) -> float:
    """``value`` if finite and within ``[lo, hi]`` (``(lo, hi]`` with ``lo_open``)."""
    low_ok = value > lo if lo_open else value >= lo
    if not (math.isfinite(value) and low_ok and value <= hi):
        interval = f"{'(' if lo_open else '['}{lo:g}, {hi:g}]"
        raise TlmError(f"{flag} must be a number in {interval}, got {value}")
    return value


def int_range(lo: int, hi: int) -> Callable[[typer.CallbackParam, int | None], int | None]:
    """A typer option callback that checks an integer flag (``None`` passes: unset)."""

    def check(param: typer.CallbackParam, value: int | None) -> int | None:
        return None if value is None else check_int(value, _flag_name(param), lo, hi)

    return check


def float_range(
    lo: float, hi: float, *, lo_open: bool = False
) -> Callable[[typer.CallbackParam, float | None], float | None]:
    """A typer option callback that checks a float flag: finite, within bounds."""

    def check(param: typer.CallbackParam, value: float | None) -> float | None:
        if value is None:
            return None
        return check_float(value, _flag_name(param), lo, hi, lo_open=lo_open)

    return check


def int_option(*decls: str, help: str, lo: int = 1, hi: int) -> Any:
    """A typer integer option checked to lie in ``[lo, hi]`` before the command runs.

    Use as ``games: Annotated[int, int_option("--games", help="...", hi=MAX_GAMES)]``.
    """
    return typer.Option(*decls, help=help, callback=int_range(lo, hi))


def float_option(
    *decls: str, help: str, lo: float, hi: float, lo_open: bool = False
) -> Any:
    """A typer float option checked to be finite and within bounds before the command runs."""
    return typer.Option(*decls, help=help, callback=float_range(lo, hi, lo_open=lo_open))


def seed_option(help: str = "Random seed (an integer from 0 to 2^63-1).") -> Any:
    """The ``--seed`` option: any integer from 0 to 2^63-1."""
    return typer.Option(help=help, callback=int_range(0, MAX_SEED))


def positive(value: int, flag: str) -> int:
    """``value`` if positive, else a one-line error naming ``flag``."""
    if value <= 0:
        raise TlmError(f"{flag} must be positive, got {value}")
    return value


def writable_file(path: Path, flag: str) -> Path:
    """Fail before any work if ``path`` cannot be written (probed with a temp file)."""
    parent = path.parent
    if path.is_dir():
        raise TlmError(f"{flag} {path} is a directory")
    if not parent.is_dir():
        raise TlmError(f"{flag} {path}: directory {parent} does not exist")
    try:
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as e:
        raise TlmError(f"{flag} {path} is not writable ({e.strerror})") from None
    return path


@contextmanager
def resume_hint(out: Path) -> Iterator[None]:
    """Turn Ctrl-C in the block into an interrupt whose message says how to go on.

    ``main`` prints it as ``interrupted: ...`` and exits with code 130.
    """
    try:
        yield
    except KeyboardInterrupt:
        raise KeyboardInterrupt(
            f"the finished part is kept in {staging_path(out)}; run the same command "
            f"again to resume"
        ) from None


def print_plain(line: str) -> None:
    """Print ``line`` as it is: no markup, emoji or highlighting to parse. Safe from a
    signal handler (the Ctrl-C notice), whatever the run is printing at that moment."""
    console.print(line, markup=False, emoji=False, highlight=False)


def progress_bar(total: int, label: str) -> Progress:
    """A progress bar counting ``total`` things, labelled ``label``."""
    return Progress(
        TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, transient=False,
    )


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
