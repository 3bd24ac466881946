"""The settings of a search learner (a league learner's ``search:`` block).

:class:`SearchSettings` is validated like every config of tlm (unknown keys rejected,
every field checked, one line per problem); :meth:`SearchSettings.check` then checks
it against the game (a game the fast search plays, a student spec that fits it).
Importing this module imports neither torch's students nor the search.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from arena.core import TlmError
from arena.games import Game

MAX_SIMULATIONS = 100_000
"""The most simulations a search may take (the fast search's own limit)."""


class SearchSettings(BaseModel):
    """How a search learner plays, labels and fits (see :mod:`teachers.search`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    student: str = Field(
        default="mlp:64x2", description="The student's architecture spec (mlp:WxD, cnn:WxD, "
        "res:WxD), freshly initialized from the learner's seed.")
    simulations: int = Field(
        default=32, gt=0, le=MAX_SIMULATIONS,
        description="Simulations of a full search (a labelled training move).")
    fast_simulations: int | None = Field(
        default=None, gt=0, description="Simulations of a fast search (playout-cap "
        "randomization: a training move that is played but not learned from); null: every "
        "move is a full search.")
    full_search_share: float = Field(
        default=1.0, gt=0, le=1, description="Probability that a training move gets a full "
        "search (used with fast_simulations).")
    c_puct: float = Field(default=1.5, ge=0, description="PUCT exploration constant.")
    dirichlet_alpha: float | None = Field(
        default=1.0, gt=0, description="Concentration of the Dirichlet noise at the root of "
        "every full training search (null: no noise).")
    dirichlet_fraction: float = Field(
        default=0.25, ge=0, le=1, description="Weight of the root noise in the root priors.")
    temperature_plies: int = Field(
        default=8, ge=0, description="Plies of a training game whose move is sampled from "
        "the visit counts; later plies play the most visited move.")
    opening_plies: int = Field(
        default=0, ge=0, description="Uniformly random plies that open every training game.")
    replay_size: int = Field(
        default=20_000, gt=0, description="The replay window: the latest labelled positions "
        "the student is fitted on.")
    epochs: int = Field(default=1, gt=0, description="Passes over the replay window per round.")
    batch_size: int = Field(default=256, gt=0, description="Positions per gradient step.")
    lr: float = Field(default=1e-3, gt=0, description="Learning rate (AdamW).")
    weight_decay: float = Field(default=1e-4, ge=0, description="AdamW weight decay.")
    value_weight: float = Field(default=1.0, ge=0, description="Weight of the value loss.")
    proven_targets: bool = Field(
        default=False, description="Where the search proved a root move's outcome, the "
        "policy label says so: all of it on the quickest proven win, none on a proven loss "
        "(else the visit counts).")
    value_target: Literal["outcome", "search", "mix"] = Field(
        default="mix", description="What the value head learns: the game's outcome, the "
        "search's root value, or their mean.")
    augment: bool = Field(
        default=True, description="Also fit every position's symmetric images.")
    play_with_search_sims: int = Field(
        default=0, ge=0, le=MAX_SIMULATIONS, description="How the learner plays outside "
        "its training games (rating matches, other learners' training, snapshots): 0, the "
        "raw student, greedy; N > 0, its search with N simulations (puct:PATH,sims=N).")

    @field_validator("student")
    @classmethod
    def _student_spec(cls, v: str) -> str:
        from students.networks import parse_spec

        try:
            spec = parse_spec(v)
        except TlmError as error:
            raise ValueError(str(error)) from None
        if spec.arch == "gru":
            raise ValueError(f"a search learner needs a feedforward student, not {v!r}")
        return str(spec)

    @model_validator(mode="after")
    def _fast_below_full(self) -> SearchSettings:
        if self.fast_simulations is not None and self.fast_simulations > self.simulations:
            raise ValueError(f"fast_simulations ({self.fast_simulations}) must not exceed "
                             f"simulations ({self.simulations})")
        return self

    def check(self, game: Game) -> None:
        """Check the settings against ``game``.

        Raises:
            TlmError: a game the fast search does not play, or a student spec that
                does not fit the game's observations.
        """
        from students.networks import build_student
        from teachers.mcts.kernels import GAME_IDS

        if game.name not in GAME_IDS:
            raise TlmError(f"the search backend plays {', '.join(sorted(GAME_IDS))}, "
                           f"not {game.name}")
        build_student(self.student, game, seed=0)
