"""What every ``tlm`` command module shares: the console, flag checks, progress bars."""

from __future__ import annotations

import tempfile
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from arena import TlmError

console = Console()


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


def progress_bar(total: int, label: str) -> Progress:
    """A progress bar counting ``total`` things, labelled ``label``."""
    return Progress(
        TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, transient=False,
    )
