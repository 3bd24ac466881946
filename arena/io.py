"""Atomic file writes: a temp file beside the target, then a rename, so a crash or a
bad input never leaves a half-written file behind."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from arena.core import TlmError


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    return write_bytes_atomic(path, (json.dumps(obj, indent=2) + "\n").encode())


def check_output_dir(path: str | Path) -> None:
    """An output directory must be new (or empty) and its parent a writable directory.

    Raises:
        TlmError: naming the problem.
    """
    path = Path(path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise TlmError(f"output {path} already exists and is not an empty directory")
    parent = path.parent
    if not parent.is_dir():
        raise TlmError(f"output {path}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise TlmError(f"output {path}: directory {parent} is not writable")


@contextmanager
def staged_directory(out: str | Path) -> Iterator[Path]:
    """A hidden temp directory beside ``out`` that becomes ``out`` on success.

    ``out`` must not exist or be an empty directory; that is checked before the block
    runs. If the block raises, the temp directory is removed and ``out`` is left as
    it was.
    """
    out = Path(out)
    check_output_dir(out)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        yield tmp
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
