"""The distillation run's configuration: one frozen pydantic model, unknown keys
rejected, every ``tlm distill`` flag a field; also loadable from YAML."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from arena import TlmError


class DistillConfig(BaseModel):
    """Everything a distillation run needs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    game: str = Field(description="Game name from the registry.")
    teacher: str = Field(description="Teacher agent spec (perfect, alphabeta:4, mcts:200, ...).")
    student: str = Field("mlp:64x2", description="Student architecture spec.")
    method: Literal["offline", "dagger", "kickstart"] = Field(
        "dagger", description="offline: teacher games; dagger: the student plays, the "
        "teacher labels; kickstart: PPO with a distillation term.")
    budget_games: int = Field(500, gt=0, description="Teacher-labelled games at most.")
    games_per_round: int = Field(50, gt=0, description="Games between evaluations.")
    seed: int = Field(0, description="Seeds the student, the games and the training.")
    out: Path = Field(description="Output directory (new or empty).")
    dataset: Path | None = Field(
        None, description="offline only: train on this generated dataset's games.")
    beta0: float = Field(1.0, ge=0, le=1, description="DAgger: teacher share in round 0.")
    beta_decay: float = Field(0.5, ge=0, le=1, description="DAgger: beta *= this each round.")
    opponent: str = Field(
        "self", description="dagger: who the student plays, `self` or an agent spec "
        "(`random` shows it every reply); the teacher labels both sides.")
    temperature: float = Field(1.0, ge=0, description="Teacher move sampling temperature.")
    epsilon: float = Field(0.0, ge=0, le=1, description="Random-move probability in games.")
    opening_plies: int = Field(0, ge=0, description="Random opening plies per game.")
    epochs: int = Field(4, gt=0, description="Epochs over the aggregated data each round.")
    batch_size: int = Field(128, gt=0, description="Positions per gradient step.")
    lr: float = Field(3e-3, gt=0, description="Learning rate.")
    loss: Literal["kl", "ce"] = Field("kl", description="Policy loss.")
    distill_temperature: float = Field(1.0, gt=0, description="KL loss temperature.")
    value_weight: float = Field(0.5, ge=0, description="Weight of the value loss.")
    augment: bool = Field(
        True, description="Also train on the symmetric images of every labelled position.")
    eval_games: int = Field(200, gt=0, description="Games per opponent at each evaluation.")
    eval_opponents: list[str] = Field(
        default_factory=lambda: ["random"], description="Fixed opponents to score against.")
    eval_opening_plies: int = Field(
        0, ge=0, description="Random first plies of evaluation games.")
    holdout_games: int = Field(
        50, ge=0, description="Teacher games held out to measure top-1 agreement.")
    stop_when_perfect: bool = Field(
        False, description="Stop once the student has zero exhaustive losses (tictactoe).")
    kickstart_steps: int = Field(
        20000, gt=0, description="kickstart: PPO environment steps.")
    kickstart_weight: float = Field(
        1.0, ge=0, description="kickstart: initial weight of the distillation term.")


def validation_message(e: ValidationError) -> str:
    """The first problem of a pydantic error, as one line."""
    err = e.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "config"
    return f"{where}: {err['msg']}"


def make_config(**fields: Any) -> DistillConfig:
    """A validated config from fields (``None`` values fall back to defaults)."""
    try:
        return DistillConfig(**{k: v for k, v in fields.items() if v is not None})
    except ValidationError as e:
        raise TlmError(f"bad distill config: {validation_message(e)}") from None


def load_config(path: str | Path, **overrides: Any) -> DistillConfig:
    """A config from a YAML file, with command-line ``overrides`` on top."""
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except FileNotFoundError:
        raise TlmError(f"config file {path} does not exist") from None
    except yaml.YAMLError as e:
        raise TlmError(f"config file {path} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise TlmError(f"config file {path} must hold a mapping of fields")
    return make_config(**{**data, **{k: v for k, v in overrides.items() if v is not None}})
