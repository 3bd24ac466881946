"""A league's learners, built from their config by backend.

:func:`make_learner` turns a learner's config into a learner of its backend
(``sb3``: :class:`teachers.sb3.learner.SB3Learner`; ``rllib``:
:class:`teachers.rllib.learner.RLlibLearner`, imported only when a league has one;
``search``: :class:`teachers.search.learner.SearchLearner`, with the config's
``search:`` settings), so the loop knows learners only through the protocol of
:mod:`teachers.learner`. A learner config's ``ppo:`` uses SB3's names; an RLlib
learner reads them through :data:`SB3_TO_RLLIB`, with ``n_steps * n_envs`` as its
training batch.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from arena.core import TlmError
from arena.games import Game
from teachers.league.config import LearnerConfig, backend_module
from teachers.learner import Learner

SB3_TO_RLLIB = {
    "batch_size": "minibatch_size", "n_epochs": "num_epochs", "learning_rate": "lr",
    "gamma": "gamma", "gae_lambda": "lambda_", "ent_coef": "entropy_coeff",
    "vf_coef": "vf_loss_coeff", "clip_range": "clip_param", "max_grad_norm": "grad_clip",
}
"""A learner config's PPO names (SB3's) -> RLlib learner settings."""


def make_learner(config: LearnerConfig, game: Game, directory: Path, seed: int,
                 torch_threads: int = 1) -> Learner:
    """Build a fresh learner from its config.

    Args:
        config: the learner's settings.
        game: the game.
        directory: a directory the learner may use for its own files.
        seed: seeds its initial weights and its generator.
        torch_threads: torch threads while training.

    Raises:
        TlmError: bad settings, or a backend that is not installed.
    """
    try:
        module = importlib.import_module(backend_module(config.backend))
    except ImportError:
        raise TlmError(f"learner {config.name!r}: the {config.backend} backend is not "
                       f"available ({backend_module(config.backend)} is missing)") from None
    if config.backend == "sb3":
        learner: Learner = module.SB3Learner(
            config.name, game, seed, net_arch=config.net_arch, n_envs=config.n_envs,
            ppo_kwargs=config.ppo.kwargs(), torch_threads=torch_threads)
        return learner
    if config.backend == "search":
        learner = module.SearchLearner(config.name, game, seed, config.search,
                                       torch_threads=torch_threads)
        return learner
    return module.RLlibLearner(config.name, game, seed,
                               rllib_settings(config, module.RLlibPPOSettings, torch_threads))


def rllib_settings(config: LearnerConfig, settings_class: Any, torch_threads: int = 1) -> Any:
    """The RLlib settings of a learner config (``n_steps * n_envs`` is the training batch).

    Raises:
        TlmError: settings RLlib's learner refuses.
    """
    ppo = config.ppo.kwargs()
    fields: dict[str, Any] = {"hidden": list(config.net_arch),
                              "num_envs_per_env_runner": int(config.n_envs),
                              "torch_threads": torch_threads}
    n_steps = ppo.pop("n_steps", None)
    if n_steps is not None:
        fields["train_batch_size"] = int(n_steps) * int(config.n_envs)
    for key, value in ppo.items():
        fields[SB3_TO_RLLIB[key]] = value
    try:
        return settings_class(**fields)
    except ValueError as error:
        raise TlmError(f"learner {config.name!r}: bad RLlib settings ({error})") from None
