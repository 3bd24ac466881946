"""Run state: everything a command needs to write its outputs safely, resume after a
kill, and stop cleanly. Every command of tlm writes through this module.

- **Atomic files.** A file is written to a temp file beside its target, then renamed
  (:func:`write_bytes_atomic`, :func:`write_json_atomic`). Temp files and directories
  (:func:`temp_file`, :func:`temp_directory`) get the modes the umask gives (0644 /
  0755 under umask 022), unlike :mod:`tempfile`'s 0600 / 0700, which would survive the
  rename.
- **Staged outputs.** A run's output directory ``OUT`` is built in a staging directory
  beside it, ``.OUT.partial``, that becomes ``OUT`` by a rename when the run succeeds
  (:func:`staged_directory`). Its name is fixed, so the next run to the same output
  finds what a killed run left there: it resumes from it or removes it.
- **Locks.** Who writes an output (or a league) is told by an exclusive ``flock`` on
  ``.OUT.lock`` (:func:`output_lock`; the kernel drops it when its process dies, even
  by ``kill -9``, so a reused pid is never mistaken for a live owner); the lock file
  holds the owner's pid, for the message a second writer gets.
- **Directory swaps and checkpoints.** :func:`replace_directory` puts a new version of a
  directory in place by renames, so a kill at any moment leaves the old or the new one
  whole, and :func:`recover_directory` finds it. A run's checkpoint is such a directory
  inside its staging directory, its ``state.json`` written last
  (:func:`save_checkpoint`, :func:`load_checkpoint`).
- **Settings.** A checkpoint of a run with other settings is never resumed:
  :func:`refuse_other_settings` raises :class:`ResumeRefusedError` (one line naming the
  settings that differ), which leaves the staging directory as it was.
- **Stopping.** :class:`StopHandler` turns a first Ctrl-C or SIGTERM into a request
  honoured after the current round (or at once inside an :meth:`interruptible
  <StopHandler.interruptible>` block, whose work is redone on resume); a second Ctrl-C
  stops at once. A loop that stops on request raises :class:`RunInterrupted`.
- **Config files.** :func:`read_yaml_mapping` reads a YAML mapping and
  :func:`validated` builds a pydantic config from it, each failure one line.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import secrets
import shutil
import signal
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

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


# ------------------------------------------------------------------ directory swaps


def _aside(target: Path, tag: str) -> Path:
    return target.parent / f".{target.name}.{tag}"


@contextmanager
def replace_directory(target: str | Path) -> Iterator[Path]:
    """A new, empty directory beside ``target`` for the block to fill; when the block
    ends, it becomes ``target`` (the previous one, if any, is removed).

    The swap is two renames (old aside to ``.NAME.old``, new into place), so a kill at
    any moment leaves a whole version at ``target`` or at ``.NAME.old``, which
    :func:`recover_directory` puts back. If the block raises, the new directory is
    removed and ``target`` is left as it was.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    recover_directory(target)
    new = _aside(target, "new")
    _remove(new)
    new.mkdir()
    try:
        yield new
    except BaseException:
        _remove(new)
        raise
    old = _aside(target, "old")
    if target.exists():
        os.replace(target, old)
    os.replace(new, target)
    _remove(old)


def recover_directory(target: str | Path) -> Path | None:
    """``target`` if it is there; else the version a kill left aside in the middle of a
    :func:`replace_directory` swap, put back at ``target``; else ``None``. Leftovers of
    an unfinished swap are removed."""
    target = Path(target)
    old = _aside(target, "old")
    if not target.exists() and old.is_dir():
        os.replace(old, target)
    _remove(old)
    _remove(_aside(target, "new"))
    return target if target.exists() else None


# --------------------------------------------------------------------- checkpoints

CHECKPOINT = "checkpoint"
"""The directory of a run's staging directory that holds its latest checkpoint."""

STATE_FILE = "state.json"


def save_checkpoint(
    stage: Path, state: Mapping[str, Any], write: Callable[[Path], None] | None = None,
) -> Path:
    """Replace the checkpoint in ``stage``: ``write(directory)`` writes the run's files
    (weights, optimizer, data), then ``state`` goes to ``state.json`` (written last, so
    a checkpoint with a ``state.json`` is whole). Returns the checkpoint's directory."""
    target = stage / CHECKPOINT
    with replace_directory(target) as new:
        if write is not None:
            write(new)
        write_json_atomic(new / STATE_FILE, dict(state))
    return target


def load_checkpoint(stage: Path) -> tuple[Path, dict[str, Any]] | None:
    """The checkpoint in ``stage``: its directory and state, or ``None`` if there is none.

    Raises:
        TlmError: a ``state.json`` that is not a JSON object.
    """
    found = recover_directory(stage / CHECKPOINT)
    if found is None or not (found / STATE_FILE).is_file():
        return None
    try:
        state = json.loads((found / STATE_FILE).read_text())
    except (OSError, ValueError) as e:
        raise TlmError(f"damaged checkpoint {found / STATE_FILE}: {e}") from None
    if not isinstance(state, dict):
        raise TlmError(f"damaged checkpoint {found / STATE_FILE}: not a JSON object")
    return found, state


def clear_checkpoint(stage: Path) -> None:
    """Remove the checkpoint of ``stage`` (and what an unfinished swap left)."""
    target = stage / CHECKPOINT
    for path in (target, _aside(target, "new"), _aside(target, "old")):
        _remove(path)


def refuse_other_settings(
    out: str | Path, before: Any, now: Mapping[str, Any],
    fresh: str = "start over with --fresh", defaults: Mapping[str, Any] | None = None,
) -> None:
    """One line naming the settings in which ``before`` (an unfinished run's, kept in
    the staging directory of ``out``) and ``now`` differ, if they do.

    A setting that ``before`` lacks (one added to the run's settings after the run
    began) is no difference when ``now`` holds it at its value in ``defaults``, the
    value that keeps the behaviour of the runs that lacked it.

    Raises:
        ResumeRefusedError: ``before != now``.
    """
    if before == now:
        return
    was = before if isinstance(before, dict) else {}
    if was and defaults:
        was = {**{k: defaults[k] for k in now if k not in was and k in defaults}, **was}
        if was == now:
            return
    diff = sorted(k for k in set(was) | set(now) if was.get(k) != now.get(k))
    raise ResumeRefusedError(
        f"output {out} holds an unfinished run with other settings "
        f"({', '.join(diff) or 'unreadable'}); rerun it with the same settings to resume, "
        f"or {fresh}"
    )


def empty_directory(path: Path) -> None:
    """Remove everything inside ``path`` (a staging directory started over)."""
    for child in path.iterdir():
        _remove(child)


# ------------------------------------------------------------------------ stopping


class RunInterrupted(KeyboardInterrupt):
    """A run stopped at the user's request after a finished step; it can resume."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class _CutShortError(Exception):
    """Raised by the handler inside an interruptible block."""


class StopHandler:
    """Ctrl-C (SIGINT) and SIGTERM while a run works: a request to stop at the next
    safe point (after a round, a match, an iteration), read through :attr:`requested`.

    Inside :meth:`interruptible` (long work that a resumed run redoes anyway: a
    learner's training) a signal cuts the block short at once. Outside it, a second
    Ctrl-C raises :class:`KeyboardInterrupt` at once. Use it as a context manager; the
    previous handlers come back after.

    Args:
        notice: called (inside the handler) with a line saying the run will stop; an
            error it raises is dropped, so the run still stops cleanly.
        what: what the run stops after, for the notice (``this round``).
    """

    def __init__(self, notice: Callable[[str], None] | None = None,
                 what: str = "this round") -> None:
        self.notice = notice
        self.what = what
        self.reason: str | None = None
        self.signum: int | None = None
        self._interruptible = False
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        """Whether a stop was asked for."""
        return self.reason is not None

    def request(self, reason: str) -> None:
        """Ask the run to stop at its next safe point (from a progress callback, say)."""
        self.reason = reason

    def __call__(self) -> bool:
        return self.requested

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested and signum == signal.SIGINT and not self._interruptible:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt
        self.signum, self.reason = signum, "signal"
        if self._interruptible:
            self._interruptible = False
            raise _CutShortError
        if self.notice is not None:
            with suppress(Exception):
                self.notice(f"stopping after {self.what} (Ctrl-C again to stop now)")

    def __enter__(self) -> StopHandler:
        self._previous = {s: signal.signal(s, self._handle)
                          for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc: object) -> None:
        for s, h in self._previous.items():
            signal.signal(s, h)
        self._previous = {}

    @contextmanager
    def interruptible(self) -> Iterator[None]:
        """A block that a signal cuts short at once by raising :attr:`Cut` (raised on
        entry too if a stop was already asked for); the caller catches it and stops."""
        if self.requested:
            raise _CutShortError
        self._interruptible = True
        try:
            yield
        finally:
            self._interruptible = False

    Cut = _CutShortError
    """What :meth:`interruptible` raises when a signal (or an earlier request) cuts it."""


# --------------------------------------------------------------------- config files

ConfigT = TypeVar("ConfigT", bound=BaseModel)


def read_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """The mapping of fields in a YAML config file.

    Raises:
        TlmError: a missing or unreadable file, invalid YAML, or YAML that is not a
            mapping (one line each).
    """
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except FileNotFoundError:
        raise TlmError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise TlmError(f"config file {path} cannot be read: {e}") from None
    except yaml.YAMLError as e:
        first = " ".join(str(e).split())
        raise TlmError(f"config file {path} is not valid YAML: {first}") from None
    if not isinstance(data, dict):
        raise TlmError(f"config file {path} must hold a mapping of fields")
    return data


def validation_message(e: ValidationError) -> str:
    """The first problem of a pydantic error, as one line (``where: what``)."""
    err = e.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "config"
    msg = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    return f"{where}: {msg}"


def settings_defaults(cls: type[BaseModel]) -> dict[str, Any]:
    """The defaults of a settings model's fields, as its ``model_dump(mode="json")``
    writes them (for :func:`refuse_other_settings`)."""
    defaults = {name: f.get_default(call_default_factory=True)
                for name, f in cls.model_fields.items() if not f.is_required()}
    return json.loads(json.dumps(defaults, default=str))


def validated(cls: type[ConfigT], data: Mapping[str, Any], what: str) -> ConfigT:
    """``cls(**data)``, or one line naming the first problem (``bad WHAT config: ...``).

    Raises:
        TlmError: the data does not validate.
    """
    try:
        return cls(**data)
    except ValidationError as e:
        raise TlmError(f"bad {what} config: {validation_message(e)}") from None
    except TypeError as e:
        raise TlmError(f"bad {what} config: {e}") from None
