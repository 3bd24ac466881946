"""Checkpoints of a distillation run, taken after every round, so a killed run goes on
from its last finished round and ends with the same student as an uninterrupted one.

A checkpoint is a directory ``round-NNNNN`` inside the run's staging directory,
written as ``.round-NNNNN.tmp`` and renamed once complete (older ones are then
removed), so a kill at any moment leaves the previous checkpoint intact:

    model.safetensors     the student's weights
    optimizer.safetensors the optimizer's tensors (:func:`save_optimizer`)
    optimizer.json        the rest of the optimizer's state
    positions.parquet     the aggregated, deduplicated labelled positions
    state.json            the next round, games so far, the curve, the time spent, the
                          run's settings, the generators (their seeds, or their states)
                          and what else the method carries from round to round

A run of :func:`distill.run.distill` draws every random number from generators made
afresh each round from ``(seed, round)`` (games, exploration, batch sampling), so the
round counter *is* the generators' state; ``state.json`` records their seeds for the
reader. A run whose generators live across rounds (the adaptive teacher of
:mod:`distill.curricula`) records their states (:func:`torch_generator_state`, numpy's
``bit_generator.state``). No file is read with pickle (checkpoints of older versions
kept the optimizer in ``optimizer.pt``, read with ``torch.load(weights_only=True)``).

:func:`check_resumable` refuses to resume a checkpoint taken with other settings
(:class:`arena.runstate.ResumeRefusedError`, which keeps the staging directory as it was).

:func:`stop_after_round` turns Ctrl-C into a request honoured after the current round's
checkpoint (a second Ctrl-C stops at once; the last checkpoint still stands).
"""

from __future__ import annotations

import json
import shutil
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from arena import TlmError, write_json_atomic
from arena.runstate import ResumeRefusedError, output_path
from distill.collect import PositionStore
from students.training_state import (  # noqa: F401  (the names this module offered)
    load_optimizer,
    save_optimizer,
    set_torch_generator_state,
    torch_generator_state,
)

FORMAT = "tlm-distill-checkpoint/1"


class RunInterrupted(KeyboardInterrupt):
    """The run stopped after a finished round, at the user's request; it can resume."""

    def __init__(self, rounds_done: int) -> None:
        super().__init__(f"stopped after round {rounds_done}; run the same command again "
                         "to resume")
        self.rounds_done = rounds_done


@dataclass
class RunState:
    """Where a run stands between rounds.

    Attributes:
        next_round: the first round still to play.
        games: teacher-labelled games so far.
        curve: one row of measures per finished round.
        wall_s: seconds spent in finished rounds (over every resumed session).
        done: the run met its stopping rule before its budget ran out.
        generators: what :func:`save_checkpoint` was given as the generators (filled
            in by :func:`load_checkpoint`).
        extra: whatever else the method carries from round to round (JSON).
    """

    next_round: int = 0
    games: int = 0
    curve: list[dict[str, Any]] = field(default_factory=list)
    wall_s: float = 0.0
    done: bool = False
    generators: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


def _checkpoints(stage: Path) -> list[Path]:
    return sorted(p for p in stage.glob("round-*")
                  if p.is_dir() and (p / "state.json").is_file())


def save_checkpoint(
    stage: Path,
    state: RunState,
    net: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    store: PositionStore,
    settings: dict[str, Any],
    generators: dict[str, Any],
) -> Path:
    """Write the checkpoint of ``state`` (after round ``state.next_round - 1``)."""
    name = f"round-{state.next_round:05d}"
    tmp = stage / f".{name}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    save_file({k: v.detach().contiguous() for k, v in net.state_dict().items()},
              str(tmp / "model.safetensors"))
    save_optimizer(optimizer, tmp)
    store.save(tmp / "positions.parquet")
    write_json_atomic(tmp / "state.json", {
        "format": FORMAT,
        "next_round": state.next_round,
        "games": state.games,
        "curve": state.curve,
        "wall_s": state.wall_s,
        "done": state.done,
        "settings": settings,
        "generators": generators,
        "extra": state.extra,
    })
    final = stage / name
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    for old in _checkpoints(stage):
        if old != final:
            shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(
    stage: Path,
    net: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    game: str,
    settings: dict[str, Any],
) -> tuple[RunState, PositionStore] | None:
    """The latest checkpoint in ``stage`` loaded into ``net`` and ``optimizer``, or
    ``None`` if there is none, or it is of a run with other settings (a resuming run
    calls :func:`check_resumable` first, which refuses those).

    Raises:
        TlmError: a damaged checkpoint.
    """
    found = _checkpoints(stage)
    if not found:
        return None
    path = found[-1]
    try:
        info = json.loads((path / "state.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise TlmError(f"damaged checkpoint {path}: {e}") from None
    if info.get("format") != FORMAT or info.get("settings") != settings:
        return None
    try:
        net.load_state_dict(load_file(str(path / "model.safetensors")))
        if (path / "optimizer.safetensors").is_file():
            load_optimizer(optimizer, path)
        else:  # a checkpoint of an older version
            optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True))
    except (OSError, RuntimeError, ValueError, KeyError) as e:
        raise TlmError(f"damaged checkpoint {path}: {e}") from None
    store = PositionStore.load(path / "positions.parquet", game)
    state = RunState(next_round=int(info["next_round"]), games=int(info["games"]),
                     curve=list(info["curve"]), wall_s=float(info["wall_s"]),
                     done=bool(info["done"]), generators=dict(info.get("generators", {})),
                     extra=dict(info.get("extra", {})))
    return state, store


def check_resumable(stage: Path, settings: dict[str, Any]) -> None:
    """Refuse to resume the latest checkpoint in ``stage`` if it was taken with other
    ``settings``. Called inside :func:`arena.runstate.staged_directory` (``resume`` set), so the
    lock is held and a refusal leaves the staging directory as it was.

    Raises:
        arena.runstate.ResumeRefusedError: naming the settings that differ.
    """
    found = _checkpoints(stage)
    if not found:
        return
    try:
        info = json.loads((found[-1] / "state.json").read_text())
    except (OSError, json.JSONDecodeError):
        return  # a damaged checkpoint is reported when it is loaded
    if info.get("format") == FORMAT:
        refuse_other_settings(output_path(stage), info.get("settings"), settings)


def refuse_other_settings(
    out: str | Path, before: Any, now: dict[str, Any], fresh: str = "start over with --fresh"
) -> None:
    """One line naming the settings in which ``before`` (an unfinished run's, kept in
    the staging directory of ``out``) and ``now`` differ, if they do.

    Raises:
        arena.runstate.ResumeRefusedError: ``before != now``.
    """
    if before == now:
        return
    was = before if isinstance(before, dict) else {}
    diff = sorted(k for k in set(was) | set(now) if was.get(k) != now.get(k))
    raise ResumeRefusedError(
        f"output {out} holds an unfinished run with other settings ({', '.join(diff)}); "
        f"rerun it with the same settings to resume, or {fresh}"
    )


def clear_checkpoints(stage: Path) -> None:
    """Remove every checkpoint (and half-written one) from ``stage``."""
    for p in list(stage.glob("round-*")) + list(stage.glob(".round-*.tmp")):
        shutil.rmtree(p, ignore_errors=True)


@contextmanager
def stop_after_round(notice: Callable[[str], None] | None = None) -> Iterator[Callable[[], bool]]:
    """Within the block, a first Ctrl-C (SIGINT) only sets a flag, read by the callable
    it yields, and calls ``notice`` with a line saying so; a second one raises
    :class:`KeyboardInterrupt` at once.

    ``notice`` runs inside the signal handler, between any two steps of the run (in
    the middle of the run's own printing, say): an error it raises is dropped, so that
    the run goes on to stop cleanly after its round.
    """
    requested = False
    previous = signal.getsignal(signal.SIGINT)

    def handle(signum: int, frame: Any) -> None:
        nonlocal requested
        if requested:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt
        requested = True
        if notice is not None:
            with suppress(Exception):  # the request stands without its notice
                notice("stopping after this round (Ctrl-C again to stop now)")

    signal.signal(signal.SIGINT, handle)
    try:
        yield lambda: requested
    finally:
        signal.signal(signal.SIGINT, previous)
