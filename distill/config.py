"""The distillation run's configuration: one frozen pydantic model, unknown keys
rejected, every ``tlm distill`` flag a field; also loadable from YAML."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from arena.runstate import read_yaml_mapping, validated


class DistillConfig(BaseModel):
    """Everything a distillation run needs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    game: str = Field(description="Game name from the registry.")
    teacher: str = Field(description="Teacher agent spec (perfect, alphabeta:4, mcts:200, ...).")
    student: str = Field("mlp:64x2", description="Student architecture spec.")
    method: Literal["offline", "dagger", "adaptive", "learned", "kickstart", "incontext",
                    "incontext-rl"] = Field(
        "dagger", description="offline: teacher games; dagger: the student plays, the "
        "teacher labels; adaptive: a bandit picks a teaching strategy every round; "
        "learned: a teaching policy trained across students shares every round's games "
        "among the strategies (distill.learned); "
        "kickstart: PPO with a distillation term; incontext: a recurrent student learns "
        "to exploit whom it plays over series of games, taught by the exact best "
        "response (distill.incontext); incontext-rl: the same recurrent student trained "
        "by recurrent PPO from the series' results alone, no labels (distill.incontext_rl).")
    budget_games: int = Field(500, gt=0, description="Teacher-labelled games at most.")
    games_per_round: int = Field(50, gt=0, description="Games between evaluations.")
    seed: int = Field(0, ge=0, le=2**63 - 1,
                      description="Seeds the student, the games and the training.")
    out: Path = Field(description="Output directory (new or empty).")
    dataset: Path | None = Field(
        None, description="offline only: train on this generated dataset's games.")
    beta0: float = Field(1.0, ge=0, le=1, description="DAgger: teacher share of the "
                         "student's moves in round 0.")
    beta_decay: float = Field(0.5, ge=0, le=1, description="DAgger: beta *= this each round.")
    mix: dict[str, float] = Field(
        default_factory=lambda: {"student": 1.0},
        description="dagger (and adaptive's dagger and openings arms): who plays the "
        "labelled games, as shares of each round's games: "
        "`student` (against itself), `teacher`, or any agent spec (`random`, `heuristic`, "
        "`alphabeta:2`, ...), each playing against the student; the teacher labels every "
        "position reached, whoever played it.")
    temperature: float = Field(1.0, ge=0, description="offline: teacher move sampling "
                               "temperature in its own games.")
    epsilon: float = Field(0.0, ge=0, le=1, description="Random-move probability of "
                           "either side in labelled games.")
    opening_plies: int = Field(0, ge=0, le=40, description="Random opening plies of each "
                               "labelled game (the fewest, with opening_plies_max).")
    opening_plies_max: int | None = Field(
        None, ge=0, le=40, description="Most random opening plies: each game draws its "
        "number uniformly from opening_plies..opening_plies_max (default: opening_plies).")
    steps_per_round: int = Field(200, gt=0, description="Gradient steps each round, on "
                                 "batches sampled from the aggregated positions.")
    recent_share: float = Field(
        0.5, ge=0, le=1, description="Share of each batch drawn from the positions reached "
        "in the latest round; the rest is drawn uniformly from all positions.")
    batch_size: int = Field(128, gt=0, description="Positions per gradient step.")
    lr: float = Field(3e-3, gt=0, description="Learning rate.")
    loss: Literal["kl", "ce"] = Field("kl", description="Policy loss.")
    distill_temperature: float = Field(1.0, gt=0, description="KL loss temperature.")
    value_weight: float = Field(0.5, ge=0, description="Weight of the value loss.")
    augment: bool = Field(
        True, description="Train on the symmetric images of labelled positions too.")
    eval_games: int = Field(200, gt=0, description="Games per opponent at each evaluation.")
    eval_opponents: list[str] = Field(
        default_factory=lambda: ["random"], description="Fixed opponents to score against.")
    eval_opening_plies: int = Field(
        0, ge=0, le=40, description="Random first plies of evaluation games.")
    panel: bool = Field(
        False, description="Also play the game's standard panel every round (tlm eval "
        "--panel): scores against each member and one Elo with its interval.")
    positions: Path | None = Field(
        None, description="A solved-positions file, or the name of one shipped with tlm "
        "(tlm eval --positions), measured every round: optimal-move and blunder rates; "
        "never trained on.")
    holdout_games: int = Field(
        50, ge=0, description="Teacher games held out to measure top-1 agreement.")
    stop_when_perfect: bool = Field(
        False, description="Stop once the student has zero exhaustive losses (tictactoe).")
    target: float | None = Field(
        None, ge=0, le=1, description="Stop once the probe reaches this: tictactoe's "
        "optimal-move accuracy, elsewhere the optimal-move rate on `positions`.")
    label_budget: int | None = Field(
        None, gt=0, description="Stop once the teacher has labelled this many positions.")
    arms: list[str] | None = Field(
        None, description="adaptive: the strategies the bandit picks from (teacher, dagger, "
        "panel, openingsK, uncertain, and refute on tictactoe; default all, with K = 2 on "
        "tictactoe, else 4; also review, which labels nothing); one arm runs that strategy "
        "alone.")
    gamma: float = Field(
        0.2, gt=0, le=1, description="adaptive: the bandit's exploration share.")
    teaching_policy: Path | None = Field(
        None, description="learned: the teaching policy (its .json or .safetensors file, "
        "or the directory `tlm teaching-policy train` wrote); default: the one shipped "
        "for the game.")
    transfer_policy: bool = Field(
        False, description="learned: use a teaching policy trained on other games (its "
        "openingsK strategy played with this game's standard K).")
    kickstart_steps: int = Field(
        20000, gt=0, description="kickstart: PPO environment steps.")
    kickstart_weight: float = Field(
        1.0, ge=0, description="kickstart: initial weight of the distillation term.")
    series: int = Field(10, ge=2, le=100, description="incontext: games per series.")
    forced_answers: int = Field(
        0, ge=0, le=20, description="incontext: blocks the opponent must have made, with no "
        "win or block missed, before the teacher risks an exploit (6: no game lost to "
        "random, but less gain in game 10; 0: exploit after its first error).")
    keep_positions: bool = Field(
        False, description="Also write the teacher-labelled positions (every distinct "
        "position once, with its visits) to OUT/positions when the run ends "
        "(distill.store.PositionStore.load reads them).")

    @field_validator("mix")
    @classmethod
    def _mix_weights(cls, mix: dict[str, float]) -> dict[str, float]:
        if not mix:
            raise ValueError("the mix names no player")
        for spec, w in mix.items():
            if not w >= 0 or w == float("inf"):
                raise ValueError(f"weight of {spec!r} must be a non-negative number, got {w}")
        if sum(mix.values()) <= 0:
            raise ValueError("the mix weights sum to zero")
        return mix

    @field_validator("arms")
    @classmethod
    def _some_arm(cls, arms: list[str] | None) -> list[str] | None:
        if arms is not None and not arms:
            raise ValueError("the adaptive teacher needs at least one arm")
        return arms

    @model_validator(mode="after")
    def _opening_range(self) -> DistillConfig:
        if self.opening_plies_max is not None and self.opening_plies_max < self.opening_plies:
            raise ValueError(f"opening_plies_max ({self.opening_plies_max}) is below "
                             f"opening_plies ({self.opening_plies})")
        if self.keep_positions and self.method in ("kickstart", "incontext", "incontext-rl"):
            raise ValueError(f"--method {self.method} labels no store of positions to keep")
        return self

    @property
    def opening_range(self) -> tuple[int, int]:
        """The fewest and the most random opening plies of a labelled game."""
        high = self.opening_plies if self.opening_plies_max is None else self.opening_plies_max
        return self.opening_plies, high


def make_config(**fields: Any) -> DistillConfig:
    """A validated config from fields (``None`` values fall back to defaults)."""
    return validated(DistillConfig, {k: v for k, v in fields.items() if v is not None},
                     "distill")


def load_config(path: str | Path, **overrides: Any) -> DistillConfig:
    """A config from a YAML file, with command-line ``overrides`` on top."""
    data = read_yaml_mapping(path)
    return make_config(**{**data, **{k: v for k, v in overrides.items() if v is not None}})
