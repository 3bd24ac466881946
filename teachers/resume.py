"""Checkpoints of a self-play teacher run (``tlm teach``), shared by its backends.

A run that resumes keeps its latest checkpoint in ``OUT/checkpoint/`` (``OUT`` being
the run's staging directory): a ``state.json`` with the run's settings and counters,
beside the files of the backend (SB3's ``model.zip``; an RLlib learner's ``save``).
:func:`write_checkpoint` builds a new one in ``checkpoint.new/`` and swaps it in by
renames, so a kill at any moment leaves ``checkpoint/`` (or, between the two renames,
``checkpoint.old/``) whole; :func:`read_checkpoint` finds whichever is whole.
``tlm teach --fresh`` empties the staging directory (:func:`start_over`) instead.

A checkpoint of other settings is never resumed: :func:`refuse_other_settings` raises
:class:`arena.runstate.ResumeRefusedError`, which leaves the staging directory as it was.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from arena.core import TlmError
from arena.runstate import ResumeRefusedError, write_json_atomic

CHECKPOINT = "checkpoint"
"""The directory in a run's output that holds its latest checkpoint (removed at the end)."""

STATE = "state.json"

_VARIANTS = (CHECKPOINT, f"{CHECKPOINT}.new", f"{CHECKPOINT}.old")


def write_checkpoint(out: Path, state: Mapping[str, Any], write: Callable[[Path], None]) -> None:
    """Replace the checkpoint in ``out``: ``write(directory)`` writes the backend's files,
    then ``state`` goes to ``state.json``."""
    new, current, old = (out / name for name in (f"{CHECKPOINT}.new", CHECKPOINT,
                                                 f"{CHECKPOINT}.old"))
    shutil.rmtree(new, ignore_errors=True)
    new.mkdir()
    write(new)
    write_json_atomic(new / STATE, dict(state))
    shutil.rmtree(old, ignore_errors=True)
    if current.exists():
        current.rename(old)
    new.rename(current)
    shutil.rmtree(old, ignore_errors=True)


def read_checkpoint(out: Path) -> tuple[Path, dict[str, Any]] | None:
    """The latest whole checkpoint in ``out`` (its directory and state), if any.

    Whatever backend wrote it: its settings name the algorithm, so a run of another
    backend is refused by :func:`refuse_other_settings` rather than started over.

    Raises:
        TlmError: a ``state.json`` that is not JSON.
    """
    for name in (CHECKPOINT, f"{CHECKPOINT}.old"):
        state_file = out / name / STATE
        if state_file.is_file():
            try:
                return out / name, json.loads(state_file.read_text())
            except ValueError:
                raise TlmError(f"damaged checkpoint {state_file}: not JSON") from None
    return None


def refuse_other_settings(out: Path, state: Mapping[str, Any], settings: Mapping[str, Any]) -> None:
    """Refuse to resume a checkpoint whose run had other settings.

    Raises:
        ResumeRefusedError: naming the first setting that differs.
    """
    saved = state.get("settings")
    if saved == settings:
        return
    raise ResumeRefusedError(
        f"{out} holds an interrupted run with other settings "
        f"({_settings_difference(saved, settings)}); "
        f"run it again with its settings, or start over (tlm teach --fresh)"
    )


def _settings_difference(saved: Any, wanted: Mapping[str, Any]) -> str:
    if not isinstance(saved, dict):
        return "its settings are unreadable"
    for key, value in wanted.items():
        if saved.get(key) != value:
            return f"{key} {saved.get(key)!r}, not {value!r}"
    return "settings differ"


def remove_checkpoints(out: Path) -> None:
    """Remove the checkpoint (and a half-written or old one) from ``out``."""
    for name in _VARIANTS:
        shutil.rmtree(out / name, ignore_errors=True)


def start_over(out: Path) -> None:
    """Empty ``out`` (a run's staging directory): its checkpoint and everything else."""
    remove_run_files(out, [path.name for path in out.iterdir()])


def remove_run_files(out: Path, names: Iterable[str]) -> None:
    """Remove ``names`` (files or directories) from ``out``: what an earlier attempt of
    a run wrote, before it is written again."""
    for name in names:
        path = out / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
