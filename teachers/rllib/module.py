"""tlm's action-masking RLModule for RLlib PPO (new API stack), built on RLlib's default.

Every tlm game's PettingZoo env observes a dict of ``observation`` planes and an
``action_mask``; RLlib's own action-masking example sits on a deprecated base and has
broken across releases, so tlm keeps its own, small one here:
:class:`MaskedPPOTorchRLModule` is ``DefaultPPOTorchRLModule`` (RLlib's PPO
encoder, policy head and value head, built by its catalog) over the *flattened*
``observations`` entry, with illegal actions' logits pushed to the float minimum. The
module sees observations exactly as the env emits them (any shape, any dtype: it
flattens and casts them itself), so no observation connector is needed and the same
module plays on the arena's batched engines.

Importing this module imports RLlib (about three seconds), but building the module
starts no Ray: an ``rllib:`` checkpoint plays without a running cluster.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from ray.rllib.algorithms.ppo.torch.default_ppo_torch_rl_module import DefaultPPOTorchRLModule
from ray.rllib.core.columns import Columns
from ray.rllib.utils.torch_utils import FLOAT_MIN

OBS_KEY = "observations"
"""Key of the observation planes in the dict the module reads (RLlib's convention)."""

MASK_KEY = "action_mask"
"""Key of the legal-action mask in the dict the module reads."""


def _flat_box(space: gym.spaces.Box) -> gym.spaces.Box:
    """The float32 vector space that the catalog builds its MLP encoder for."""
    size = int(np.prod(space.shape))
    low = np.broadcast_to(np.asarray(space.low, dtype=np.float32), space.shape).reshape(size)
    high = np.broadcast_to(np.asarray(space.high, dtype=np.float32), space.shape).reshape(size)
    return gym.spaces.Box(low=low, high=high, shape=(size,), dtype=np.float32)


class MaskedPPOTorchRLModule(DefaultPPOTorchRLModule):
    """PPO's default torch RLModule over ``{observations, action_mask}`` dict observations.

    The catalog builds the encoder (an MLP of ``model_config["fcnet_hiddens"]``), the
    policy head and the value head for the flattened ``observations``; the module then
    keeps the dict space as its ``observation_space`` so RLlib's connectors and checks
    see what the env emits. Illegal actions get logit ``FLOAT_MIN``, so neither
    sampling, nor the PPO loss, nor the entropy ever puts mass on them.
    """

    def __init__(
        self,
        *,
        observation_space: gym.Space | None = None,
        action_space: gym.Space | None = None,
        inference_only: bool | None = None,
        learner_only: bool = False,
        model_config: dict[str, Any] | None = None,
        catalog_class: Any = None,
        **kwargs: Any,
    ) -> None:
        """Build the module (see ``RLModule.__init__``) for a dict observation space.

        Raises:
            ValueError: the observation space is not a dict of ``observations`` (a
                ``Box``) and ``action_mask``, or the action space is not discrete.
        """
        if (
            not isinstance(observation_space, gym.spaces.Dict)
            or set(observation_space.spaces) != {OBS_KEY, MASK_KEY}
            or not isinstance(observation_space[OBS_KEY], gym.spaces.Box)
        ):
            raise ValueError(
                f"{type(self).__name__} needs a Dict observation space with a Box "
                f"{OBS_KEY!r} and an {MASK_KEY!r}, got {observation_space}"
            )
        if not isinstance(action_space, gym.spaces.Discrete):
            raise ValueError(f"{type(self).__name__} needs a Discrete action space")
        planes = observation_space[OBS_KEY]
        assert isinstance(planes, gym.spaces.Box)  # checked above
        super().__init__(
            observation_space=_flat_box(planes),
            action_space=action_space,
            inference_only=inference_only,
            learner_only=learner_only,
            model_config=model_config,
            catalog_class=catalog_class,
            **kwargs,
        )
        # The networks are built for the flat vector; RLlib's connectors and spec
        # checks must see the dict the env emits.
        self.observation_space = observation_space

    def _split(self, batch: dict[str, Any]) -> tuple[dict[str, Any], torch.Tensor]:
        """A shallow copy of ``batch`` with flat float observations, and the mask."""
        obs = batch[Columns.OBS]
        planes = torch.as_tensor(obs[OBS_KEY])
        flat = planes.reshape(planes.shape[0], -1).to(torch.float32)
        return {**batch, Columns.OBS: flat}, torch.as_tensor(obs[MASK_KEY])

    @staticmethod
    def _masked(out: dict[str, Any], mask: torch.Tensor) -> dict[str, Any]:
        logits = out[Columns.ACTION_DIST_INPUTS]
        out[Columns.ACTION_DIST_INPUTS] = torch.where(
            mask.to(torch.bool), logits, torch.full_like(logits, FLOAT_MIN)
        )
        return out

    def _forward(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        flat, mask = self._split(batch)
        return self._masked(super()._forward(flat, **kwargs), mask)

    def _forward_train(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        flat, mask = self._split(batch)
        return self._masked(super()._forward_train(flat, **kwargs), mask)

    def compute_values(self, batch: dict[str, Any], embeddings: Any | None = None) -> Any:
        """Value estimates; observations are flattened first unless ``embeddings`` are given."""
        if embeddings is None and isinstance(batch[Columns.OBS], dict):
            batch, _ = self._split(batch)
        return super().compute_values(batch, embeddings)

    def logits_and_values(
        self, obs: np.ndarray, mask: np.ndarray, with_values: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(masked logits[B, A], values[B] or None)`` for arena arrays, without gradients."""
        batch = {
            Columns.OBS: {
                OBS_KEY: torch.as_tensor(np.asarray(obs)),
                MASK_KEY: torch.as_tensor(np.asarray(mask)),
            }
        }
        with torch.no_grad():
            logits = self._forward(batch)[Columns.ACTION_DIST_INPUTS]
            values = self.compute_values(batch) if with_values else None
        return logits, values
