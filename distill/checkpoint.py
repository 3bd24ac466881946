"""What a distillation run checkpoints after every round, so a killed run goes on from
its last finished round and ends with the same student as an uninterrupted one.

The checkpoint is the run's :func:`arena.runstate.save_checkpoint` directory
(``checkpoint/`` in its staging directory, replaced whole by renames, ``state.json``
written last):

    model.safetensors     the student's weights
    optimizer.safetensors the optimizer's tensors (:mod:`students.training_state`)
    optimizer.json        the rest of the optimizer's state
    positions/            the labelled positions (:meth:`PositionStore.save`)
    state.json            the run's settings, the next round, games and labels so far,
                          the curve, the time spent, the goal's round, the strategy's
                          state, and how the generators are seeded

Every random number of a round comes from generators made afresh from ``(seed,
round)`` (games, exploration, batch sampling, the bandit's draw), so the round counter
*is* the generators' state. A checkpoint of other settings is refused
(:func:`arena.runstate.refuse_other_settings`), which keeps it for the run that can
resume it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from arena import TlmError
from arena.runstate import (
    load_checkpoint,
    output_path,
    refuse_other_settings,
    save_checkpoint,
    settings_defaults,
)
from distill.config import DistillConfig
from distill.store import PositionStore
from students.training_state import load_optimizer, save_optimizer

FORMAT = "tlm-distill-checkpoint/3"
"""Part of a run's settings, so a run checkpointed by another layout is refused, not
resumed (version 2 held students with ReLU heads, :data:`students.networks.HEADS`)."""
WEIGHTS = "model.safetensors"
POSITIONS = "positions"
GENERATORS = {"round_seeds": "numpy SeedSequence([seed, round]): games, then batches",
              "bandit": "numpy SeedSequence([seed, round, 7])"}


@dataclass
class RoundState:
    """Where a run stands between rounds.

    Attributes:
        next_round: the first round still to play.
        games: games played (or taken from a dataset) so far.
        labels: positions the teacher labelled so far.
        curve: one row of measures per finished round.
        wall_s: seconds spent in finished rounds (over every resumed session).
        done: the run met a stopping rule before its budget of games ran out.
        reached: the first round whose student met the run's goal (perfect play with
            ``stop_when_perfect``, the probe at ``target``): its ``round``,
            ``teacher_games`` and ``labels``; ``None`` until then.
        strategy: the strategy's state (:meth:`distill.strategies.Strategy.state`).
    """

    next_round: int = 0
    games: int = 0
    labels: int = 0
    curve: list[dict[str, Any]] = field(default_factory=list)
    wall_s: float = 0.0
    done: bool = False
    reached: dict[str, int] | None = None
    strategy: dict[str, Any] = field(default_factory=dict)


def run_settings(config: DistillConfig) -> dict[str, Any]:
    """What a checkpoint must share with the run that resumes it (all settings but
    ``keep_positions``, which only adds an output)."""
    return {"format": FORMAT, **config.model_dump(mode="json", exclude={"keep_positions"})}


def save_round(
    stage: Path, state: RoundState, settings: dict[str, Any], net: torch.nn.Module,
    optimizer: torch.optim.Optimizer, store: PositionStore, teacher: str,
) -> Path:
    """Checkpoint ``state`` (after round ``state.next_round - 1``) into ``stage``."""

    def write(directory: Path) -> None:
        save_file({k: v.detach().contiguous() for k, v in net.state_dict().items()},
                  str(directory / WEIGHTS))
        save_optimizer(optimizer, directory)
        store.save(directory / POSITIONS, teacher)

    return save_checkpoint(stage, {"settings": settings, "generators": GENERATORS,
                                   **dataclasses.asdict(state)}, write)


def load_round(
    stage: Path, settings: dict[str, Any], net: torch.nn.Module,
    optimizer: torch.optim.Optimizer, game: str,
) -> tuple[RoundState, PositionStore] | None:
    """The checkpoint in ``stage`` loaded into ``net`` and ``optimizer``, or ``None``.

    Raises:
        arena.runstate.ResumeRefusedError: it was taken with other settings.
        TlmError: a damaged checkpoint.
    """
    found = load_checkpoint(stage)
    if found is None:
        return None
    path, info = found
    refuse_other_settings(output_path(stage), info.get("settings"), settings,
                          defaults=settings_defaults(DistillConfig))
    try:
        net.load_state_dict(load_file(str(path / WEIGHTS)))
        load_optimizer(optimizer, path)
        names = {f.name for f in dataclasses.fields(RoundState)}
        state = RoundState(**{k: v for k, v in info.items() if k in names})
        state.next_round, state.games, state.labels = (
            int(state.next_round), int(state.games), int(state.labels))
    except (OSError, RuntimeError, ValueError, KeyError, TypeError) as e:
        raise TlmError(f"damaged checkpoint {path}: {e}") from None
    return state, PositionStore.load(path / POSITIONS, game)
