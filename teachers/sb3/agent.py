"""SB3 models as arena agents, and the ``sb3:PATH.zip`` agent spec.

:class:`SB3Agent` puts any SB3 actor-critic model with a discrete action space behind
the arena's agent contract (one batched forward for all rows, the masked distribution
as policy, the critic as value). :func:`register` makes ``sb3:PATH.zip`` an agent spec
(the ``tlm.agents`` entry point). An SB3 zip unpickles Python objects, so one is only
ever loaded from a path the user named with ``sb3:``; nothing scans for or loads zips
on its own. Loading leaves the global random generators as it found them.

Importing this module also tells :mod:`arena.runners` how an :class:`SB3Agent` travels
to Ray workers (as its SB3 zip's bytes), so SB3 learners and snapshots can play their
matches there.
"""

from __future__ import annotations

import contextlib
import io
import json
import random
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from sb3_contrib import MaskablePPO
from stable_baselines3 import PPO
from stable_baselines3.common.base_class import BaseAlgorithm

from arena.agents import register_agent
from arena.core import Agent, PolicyAgent, State, TlmError, masked_softmax
from arena.games import Game, get_game
from arena.runners import register_payload

# Loading an SB3 zip re-runs `_setup_model`, which would reseed the global generators
# from the stored seed; replacing these entries skips that, and the unpickling of
# schedules and buffer classes (a subclass's, say) that inference never uses.
_LOAD_OVERRIDES: dict[str, Any] = {
    "seed": None,
    "learning_rate": 0.0,
    "lr_schedule": lambda _: 0.0,
    "clip_range": lambda _: 0.0,
    "rollout_buffer_class": None,
}

_POLICY_MODULES: dict[str, type[BaseAlgorithm]] = {
    "sb3_contrib.common.maskable.policies": MaskablePPO,
    "stable_baselines3.common.policies": PPO,
}
"""Policy module named in an SB3 zip -> the algorithm class that loads it."""


class SB3Agent(PolicyAgent):
    """An SB3 actor-critic model (MaskablePPO, PPO, A2C) as an arena agent.

    ``policy`` is the model's action distribution with illegal actions masked out
    (exactly MaskablePPO's masked distribution), computed for all rows in one forward
    pass; ``value`` is the critic's estimate for the mover (a discounted return in the
    game's reward units). The model is wrapped, not copied: an agent made from a model
    in training always plays its current weights.

    Attributes:
        model: the wrapped SB3 model.
        greedy: play the most probable legal action instead of sampling.
    """

    def __init__(
        self,
        model: BaseAlgorithm,
        game: str | Game | None = None,
        greedy: bool = False,
        name: str | None = None,
    ) -> None:
        """Wrap ``model``.

        Args:
            model: an SB3 on-policy actor-critic model with a ``Discrete`` action space.
            game: the game it plays; checked against the model's spaces when given.
            greedy: argmax instead of sampling in :meth:`act`.
            name: the agent's name (defaults to ``sb3``).

        Raises:
            TlmError: the model's action space is not discrete, or its spaces do not
                fit ``game``.
        """
        if not isinstance(model.action_space, spaces.Discrete):
            raise TlmError(f"SB3 model has action space {model.action_space}, expected Discrete")
        self.model = model
        self.greedy = greedy
        self.name = name if name is not None else "sb3"
        self.obs_shape = tuple(model.observation_space.shape or ())
        self.num_actions = int(model.action_space.n)
        self.game = None
        if game is not None:
            g = get_game(game)
            if self.obs_shape != g.obs_shape or self.num_actions != g.num_actions:
                raise TlmError(
                    f"SB3 model takes observations {self.obs_shape} and {self.num_actions} "
                    f"actions, but {g.name} has {g.obs_shape} and {g.num_actions}"
                )
            self.game = g.name

    def _tensor(self, obs: np.ndarray, mask: np.ndarray) -> torch.Tensor:
        if tuple(obs.shape[1:]) != self.obs_shape:
            raise TlmError(
                f"observation shape {tuple(obs.shape[1:])} does not match the SB3 model's "
                f"{self.obs_shape}"
            )
        if mask.shape != (obs.shape[0], self.num_actions):
            raise TlmError(
                f"action mask shape {mask.shape} does not match {obs.shape[0]} observations "
                f"of {self.num_actions} actions"
            )
        return torch.as_tensor(np.asarray(obs), device=self.model.policy.device)

    def logits(self, obs: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """``[B, A]`` float64 raw action logits (illegal actions not masked)."""
        policy: Any = self.model.policy  # an ActorCriticPolicy; SB3 types it as BasePolicy
        x = self._tensor(obs, mask)
        with torch.no_grad():
            # The actor half of the policy's forward pass: SB3's get_distribution minus
            # building a torch distribution object, which costs more than the network.
            features = policy.extract_features(x, policy.pi_features_extractor)
            latent = policy.mlp_extractor.forward_actor(features)
            logits = policy.action_net(latent)
        return logits.to("cpu", torch.float64).numpy()

    def policy(self, obs: np.ndarray, mask: np.ndarray, state: State | None = None) -> np.ndarray:
        """``probs[B, A]`` (float64): softmax of the logits over the legal actions.

        Raises:
            TlmError: the observation or mask shape does not fit the model.
        """
        return masked_softmax(self.logits(obs, mask), np.asarray(mask))

    def value(self, obs: np.ndarray, mask: np.ndarray, state: State | None = None) -> np.ndarray:
        """``[B]`` (float64): the critic's value of each position for the mover."""
        x = self._tensor(obs, mask)
        policy: Any = self.model.policy
        with torch.no_grad():
            v = policy.predict_values(x)
        return v.reshape(-1).to("cpu", torch.float64).numpy()


@contextlib.contextmanager
def _global_rng_preserved() -> Iterator[None]:
    """Leave Python's, NumPy's and torch's global generators as they were."""
    py_state = random.getstate()
    np_state = np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        yield
    np.random.set_state(np_state)
    random.setstate(py_state)


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _algorithm_of(path: Path) -> type[BaseAlgorithm]:
    """The algorithm class that loads the SB3 zip at ``path``, read from its JSON header."""
    try:
        with zipfile.ZipFile(path) as archive:
            data = json.loads(archive.read("data"))
        module = data["policy_class"]["__module__"]
    except (KeyError, TypeError, ValueError, zipfile.BadZipFile) as error:
        raise TlmError(f"{path} is not an SB3 model zip ({_one_line(error)})") from None
    algorithm = _POLICY_MODULES.get(module)
    if algorithm is None:
        raise TlmError(f"{path}: SB3 policy from {module} is not a supported actor-critic policy")
    return algorithm


def load_sb3_model(path: str | Path, device: str = "cpu") -> BaseAlgorithm:
    """Load an SB3 zip (MaskablePPO, or PPO / A2C) for inference.

    The global random generators are left untouched.

    Args:
        path: the ``.zip`` written by ``model.save``.
        device: torch device for the policy.

    Raises:
        TlmError: missing file, not a zip, not an SB3 model, or a model that fails to load.
    """
    p = Path(path)
    if not p.is_file():
        raise TlmError(f"SB3 model {p} does not exist (expected a .zip saved by SB3)")
    if not zipfile.is_zipfile(p):
        raise TlmError(f"SB3 model {p} is not a zip file")
    algorithm = _algorithm_of(p)
    try:
        with _global_rng_preserved():
            return algorithm.load(p, device=device, custom_objects=_LOAD_OVERRIDES)
    except Exception as error:  # SB3 raises anything from unpickling and torch.load
        raise TlmError(f"cannot load SB3 model {p}: {_one_line(error)}") from None


def load_sb3_agent(path: str | Path, game: str | Game, greedy: bool = True) -> SB3Agent:
    """An :class:`SB3Agent` for ``game`` from an SB3 zip.

    Raises:
        TlmError: the zip cannot be loaded, or its model does not fit ``game``.
    """
    model = load_sb3_model(path)
    return SB3Agent(model, game=game, greedy=greedy, name=f"sb3:{path}")


def _sb3_spec(arg: str | None, game: Game) -> Agent:
    assert arg is not None  # the registry enforces needs_argument
    return load_sb3_agent(arg, game, greedy=True)


def register() -> None:
    """Make ``sb3:PATH.zip`` an agent spec (greedy play of the saved model)."""
    register_agent("sb3", _sb3_spec, "sb3:PATH.zip", needs_argument=True)


def sb3_payload(agent: SB3Agent) -> dict[str, Any]:
    """An SB3 agent as plain data for a worker: its model's zip, its game and greediness."""
    buffer = io.BytesIO()
    agent.model.save(buffer)
    return {"zip": buffer.getvalue(), "game": agent.game, "greedy": agent.greedy}


def sb3_from_payload(data: dict[str, Any], game: Game) -> SB3Agent:
    """The agent :func:`sb3_payload` describes (on the CPU)."""
    with tempfile.TemporaryDirectory(prefix="tlm_sb3_") as tmp:
        path = Path(tmp) / "model.zip"
        path.write_bytes(data["zip"])
        model = load_sb3_model(path)
    return SB3Agent(model, game=data["game"] or game, greedy=bool(data["greedy"]))


register_payload(SB3Agent, sb3_payload, sb3_from_payload)
