"""Checkpoints of a distillation run, taken after every round, so a killed run goes on
from its last finished round and ends with the same student as an uninterrupted one.

A checkpoint is a directory ``round-NNNNN`` inside the run's staging directory,
written as ``.round-NNNNN.tmp`` and renamed once complete (older ones are then
removed), so a kill at any moment leaves the previous checkpoint intact:

    model.safetensors     the student's weights
    optimizer.pt          the optimizer's state (``torch.save``; read back with
                          ``torch.load(weights_only=True)``)
    positions.parquet     the aggregated, deduplicated labelled positions
    state.json            the next round, games so far, the curve, the time spent, the
                          run's settings, and the generators' seeds

The run draws every random number from generators made afresh each round from
``(seed, round)`` (games, exploration, batch sampling), so the round counter *is* the
generators' state; ``state.json`` records their seeds for the reader.

:func:`stop_after_round` turns Ctrl-C into a request honoured after the current round's
checkpoint (a second Ctrl-C stops at once; the last checkpoint still stands).
"""

from __future__ import annotations

import json
import shutil
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from arena import TlmError, write_json_atomic
from distill.collect import PositionStore

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
    """

    next_round: int = 0
    games: int = 0
    curve: list[dict[str, Any]] = field(default_factory=list)
    wall_s: float = 0.0
    done: bool = False


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
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
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
    ``None`` if there is none, or it is of a run with other settings.

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
        optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True))
    except (OSError, RuntimeError, ValueError, KeyError) as e:
        raise TlmError(f"damaged checkpoint {path}: {e}") from None
    store = PositionStore.load(path / "positions.parquet", game)
    state = RunState(next_round=int(info["next_round"]), games=int(info["games"]),
                     curve=list(info["curve"]), wall_s=float(info["wall_s"]),
                     done=bool(info["done"]))
    return state, store


def clear_checkpoints(stage: Path) -> None:
    """Remove every checkpoint (and half-written one) from ``stage``."""
    for p in list(stage.glob("round-*")) + list(stage.glob(".round-*.tmp")):
        shutil.rmtree(p, ignore_errors=True)


@contextmanager
def stop_after_round(notice: Callable[[str], None] | None = None) -> Iterator[Callable[[], bool]]:
    """Within the block, a first Ctrl-C (SIGINT) only sets a flag, read by the callable
    it yields; a second one raises :class:`KeyboardInterrupt` at once."""
    requested = False
    previous = signal.getsignal(signal.SIGINT)

    def handle(signum: int, frame: Any) -> None:
        nonlocal requested
        if requested:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt
        requested = True
        if notice is not None:
            notice("stopping after this round (Ctrl-C again to stop now)")

    signal.signal(signal.SIGINT, handle)
    try:
        yield lambda: requested
    finally:
        signal.signal(signal.SIGINT, previous)
