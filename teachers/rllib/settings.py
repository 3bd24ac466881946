"""The settings of an RLlib learner, and its plan for the self-play loop.

:class:`RLlibPPOSettings` are RLlib PPO's settings as tlm uses them (one ``train()``
iteration is one training batch). :func:`rllib_plan` describes an RLlib learner for
:func:`teachers.selfplay.run_selfplay` (``tlm teach --algo rllib_ppo``): its settings
are checked against a checkpoint before the learner, and Ray, start. Importing this
module imports neither Ray nor RLlib.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from arena.games import Game, get_game
from teachers.learner import Learner
from teachers.rllib.checkpoint import full_model_config
from teachers.selfplay import LearnerPlan


class RLlibPPOSettings(BaseModel):
    """RLlib PPO settings of an RLlib learner (one ``train()`` iteration = one batch)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    hidden: list[int] = Field(
        default_factory=lambda: [64, 64], min_length=1,
        description="Hidden layer sizes of the policy and of the (separate) value network.")
    train_batch_size: int = Field(
        default=2048, gt=0,
        description="Env steps (both seats' moves) sampled per training iteration.")
    minibatch_size: int = Field(default=256, gt=0, description="Minibatch size of each SGD step.")
    num_epochs: int = Field(default=8, gt=0, description="Passes over each training batch.")
    lr: float = Field(default=1e-3, gt=0, description="Adam step size.")
    gamma: float = Field(default=0.99, gt=0, le=1, description="Discount factor.")
    lambda_: float = Field(default=0.95, ge=0, le=1, description="GAE lambda.")
    entropy_coeff: float = Field(default=0.01, ge=0, description="Entropy bonus weight.")
    vf_loss_coeff: float = Field(default=0.5, ge=0, description="Value loss weight.")
    clip_param: float = Field(default=0.2, gt=0, description="PPO clipping range.")
    grad_clip: float | None = Field(
        default=0.5, gt=0, description="Gradient norm clip (null: none).")
    n_slots: int = Field(default=2, ge=1, description="Frozen opponent module slots (opp_0..).")
    num_env_runners: int = Field(
        default=0, ge=0, description="Remote env runners (0: sample in this process).")
    num_envs_per_env_runner: int = Field(
        default=32, gt=0, description="Games side by side per runner.")
    torch_threads: int | None = Field(
        default=1, gt=0, description="Torch threads while training (null: leave torch's setting).")

    @field_validator("hidden")
    @classmethod
    def _positive_sizes(cls, v: list[int]) -> list[int]:
        if any(w <= 0 for w in v):
            raise ValueError(f"layer sizes must be positive, got {v}")
        return v

    def model_config_dict(self) -> dict[str, Any]:
        """The full RLlib model_config of the modules."""
        return full_model_config({
            "fcnet_hiddens": list(self.hidden), "fcnet_activation": "tanh",
            "vf_share_layers": False,
        })


def rllib_plan(game: str | Game, seed: int, settings: RLlibPPOSettings | None = None,
               name: str = "main") -> LearnerPlan:
    """An :class:`teachers.rllib.learner.RLlibLearner` for the self-play loop: a round is
    one training batch (``train_batch_size`` env steps, about half of them the learner's
    moves)."""
    g = get_game(game)
    s = settings or RLlibPPOSettings()

    def build() -> Learner:
        from teachers.rllib.learner import RLlibLearner

        return RLlibLearner(name, g, seed, s)

    return LearnerPlan("rllib_ppo", s.model_dump(), max(1, s.train_batch_size // 2), build)
