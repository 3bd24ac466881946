"""Atomic writes and staged output directories, so that a crash, a kill or a bad input
never leaves a half-written output behind.

Files are written to a temp file beside the target, then renamed. A run's output
directory ``OUT`` is built in a staging directory beside it, ``.OUT.partial``, that
becomes ``OUT`` by a rename when the run succeeds. The staging directory's name is
fixed, so the next run to the same output finds what a killed run left there: it
resumes from it or removes it. Who owns it is told by an exclusive ``flock`` on
``.OUT.lock`` (the kernel drops it when its process dies, even by ``kill -9``, so a
reused pid is never mistaken for a live owner); the lock file also holds the owner's
pid and start time, for the message that a second run gets.

Temp files and directories are made here too (:func:`temp_file`, :func:`temp_directory`)
rather than by :mod:`tempfile`, whose 0600 / 0700 modes would survive the rename: what a
command writes gets the modes the umask gives (0644 / 0755 under umask 022), like any
file the user makes.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import secrets
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from arena.core import TlmError


class ResumeRefusedError(TlmError):
    """A resumable run refuses what its staging directory holds (a run of other settings).

    Raised inside :func:`staged_directory` with ``resume`` set, it leaves the staging
    directory as it was, for the run that can resume it.
    """


_TEMP_TRIES = 100
"""Random names tried before giving up on a temp name (each taken one is a collision)."""


def temp_file(directory: str | Path, prefix: str = ".", suffix: str = ".tmp") -> tuple[int, Path]:
    """A new file of a random name in ``directory``, open for writing: its fd and path.

    Like :func:`tempfile.mkstemp` (created exclusively, never an existing file), but its
    mode is 0666 less the umask, so the file keeps the modes any output should have
    once it is renamed into place.
    """
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    for _ in range(_TEMP_TRIES):
        path = Path(directory) / f"{prefix}{secrets.token_hex(6)}{suffix}"
        try:
            return os.open(path, flags, 0o666), path
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary file name", str(directory))


def temp_directory(directory: str | Path, prefix: str = ".", suffix: str = ".tmp") -> Path:
    """A new directory of a random name in ``directory``.

    Like :func:`tempfile.mkdtemp`, but its mode is 0777 less the umask (see
    :func:`temp_file`).
    """
    for _ in range(_TEMP_TRIES):
        path = Path(directory) / f"{prefix}{secrets.token_hex(6)}{suffix}"
        try:
            path.mkdir(0o777)
            return path
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary directory name", str(directory))


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (mode 0666 less the umask)."""
    path = Path(path)
    fd, tmp = temp_file(path.parent, prefix=f".{path.name}.")
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
    """An output directory must be new (or empty), and its parent a writable directory,
    or missing under one (:func:`staged_directory` creates it: ``--out runs/x`` works
    before ``runs/`` exists).

    Raises:
        TlmError: naming the problem.
    """
    path = Path(path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise TlmError(f"output {path} already exists and is not an empty directory")
    parent = path.parent
    existing = parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise TlmError(f"output {path}: directory {parent} does not exist")
    if not os.access(existing, os.W_OK):
        raise TlmError(f"output {path}: directory {existing} is not writable")


def staging_path(out: str | Path) -> Path:
    """The staging directory of output ``out``: ``.NAME.partial`` beside it."""
    out = Path(out)
    return out.parent / f".{out.name}.partial"


def output_path(stage: str | Path) -> Path:
    """The output whose staging directory is ``stage`` (the inverse of :func:`staging_path`)."""
    stage = Path(stage)
    name = stage.name
    if not (name.startswith(".") and name.endswith(".partial")):
        return stage
    return stage.parent / name[1:-len(".partial")]


def lock_path(out: str | Path) -> Path:
    """The lock file of output ``out``: ``.NAME.lock`` beside it."""
    out = Path(out)
    return out.parent / f".{out.name}.lock"


def _owner(lock: Path) -> str:
    """``pid N`` of the lock's owner, as written in the file (best effort)."""
    try:
        info = json.loads(lock.read_text())
        return f"pid {int(info['pid'])}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


@contextmanager
def output_lock(out: str | Path, what: str = "output") -> Iterator[Path]:
    """Hold the exclusive lock of output ``out`` for the block; yields the lock file.

    A lock file left by a dead process (``kill -9``) does not block: only a live
    holder's ``flock`` does.

    Args:
        out: the output (a file or directory; its parent must exist).
        what: what ``out`` is, for the message (``output``, ``league``).

    Raises:
        TlmError: another live process holds it (``output X is being written by pid N``).
    """
    out = Path(out)
    lock = lock_path(out)
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as error:
            raise TlmError(f"{what} {out}: cannot create lock file {lock} "
                           f"({error.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(fd)
            if error.errno in (errno.EWOULDBLOCK, errno.EACCES):
                raise TlmError(f"{what} {out} is being written by {_owner(lock)}") from None
            raise
        # The previous owner may have removed the file between our open and our lock;
        # a lock on a file that is no longer at `lock` guards nothing, so start over.
        try:
            same = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "started": time.time()}).encode())
        yield lock
    finally:
        lock.unlink(missing_ok=True)
        os.close(fd)


@contextmanager
def staged_directory(out: str | Path, resume: bool = False) -> Iterator[Path]:
    """A staging directory beside ``out`` (``.NAME.partial``) that becomes ``out`` on success.

    ``out`` must not exist or be an empty directory; that is checked, and the output's
    lock taken, before the block runs. A staging directory left by a dead run (killed,
    or interrupted) is removed, unless ``resume`` is set: then the block gets it with
    its previous contents, and the caller decides what to reuse (it is empty when there
    was nothing to resume).

    If the block raises, the staging directory is removed and ``out`` is left as it
    was; with ``resume`` set, a ``KeyboardInterrupt`` or :class:`ResumeRefusedError` keeps
    it for the next run.

    Args:
        out: the output directory.
        resume: hand over the staging directory of a dead run instead of removing it.

    Raises:
        TlmError: ``out`` is not a new or empty directory in a writable directory, or
            another live process is writing it.
    """
    out = Path(out)
    check_output_dir(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise TlmError(f"output {out}: cannot create {out.parent} ({error.strerror})") from None
    stage = staging_path(out)
    with output_lock(out):
        check_output_dir(out)  # again: a run that held the lock may have finished it
        if stage.exists() and not resume:
            _remove(stage)
        try:
            stage.mkdir(exist_ok=True)
        except OSError as error:
            raise TlmError(f"output {out}: cannot create {stage} ({error.strerror})") from None
        try:
            yield stage
            if out.exists():
                out.rmdir()
            os.replace(stage, out)
        except (KeyboardInterrupt, ResumeRefusedError):
            if not resume:
                _remove(stage)
            raise
        except BaseException:
            _remove(stage)
            raise


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
