"""RLlib module checkpoints without pickle, and the ``rllib:DIR`` agent that plays them.

A checkpoint is a directory holding ``model.safetensors`` (the module's ``state_dict``)
and ``config.json``: the module class (one of :data:`MODULE_CLASSES`), the *full*
``model_config`` the module was built with, the observation and action spaces, the
game, the weights' SHA-256 and free-form provenance. RLlib's own checkpoints pickle
and restore with ``strict=False``, so a checkpoint whose ``model_config`` is partial
silently builds other layers and keeps their random weights. Here loading builds the
module from its recorded spec and fills it with ``load_state_dict(strict=True)``: a
missing, extra or mis-shaped tensor, an altered file or a checkpoint of another game
is refused with one line (:class:`arena.TlmError`).

Importing this module imports neither Ray nor RLlib (``import teachers`` stays fast);
loading a checkpoint imports RLlib's module classes (about three seconds) but starts
no Ray. :func:`register` makes ``rllib:DIR`` an agent spec.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from arena.agents import register_agent
from arena.core import Agent, PolicyAgent, State, TlmError, masked_softmax
from arena.games import Game, get_game
from arena.runners import register_payload
from arena.runstate import staged_directory, write_bytes_atomic

FORMAT = "tlm-rllib-module"
"""The ``format`` field of every RLlib checkpoint's ``config.json``."""

FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"

MODULE_CLASSES: Mapping[str, str] = {
    "MaskedPPOTorchRLModule": "teachers.rllib.module",
}
"""Module classes a checkpoint may name (class -> module): nothing else is imported."""

_FIELDS: dict[str, type | tuple[type, ...]] = {
    "format": str,
    "format_version": int,
    "module_class": str,
    "model_config": dict,
    "observation_space": dict,
    "action_space": dict,
    "game": str,
    "weights_sha256": str,
    "provenance": (dict, type(None)),
}


@contextlib.contextmanager
def quiet_rllib() -> Iterator[None]:
    """Keep RLlib's deprecation and info lines off the console while the block runs."""
    loggers = [logging.getLogger(name) for name in ("ray", "ray.rllib")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def game_spaces(game: str | Game) -> tuple[Any, Any]:
    """``(observation_space, action_space)`` of a game as tlm's RLlib modules see them.

    The observation is PettingZoo's dict with ``observation`` renamed ``observations``
    (RLlib's convention for masked observations).
    """
    from gymnasium import spaces

    g = get_game(game)
    obs = spaces.Dict({
        "observations": spaces.Box(0, 1, shape=g.obs_shape, dtype=g.obs_dtype.type),
        "action_mask": spaces.Box(0, 1, shape=(g.num_actions,), dtype=np.int8),
    })
    return obs, spaces.Discrete(g.num_actions)


def _spaces_json(game: Game) -> tuple[dict[str, Any], dict[str, Any]]:
    return (
        {"observations": {"shape": list(game.obs_shape), "dtype": str(game.obs_dtype)},
         "action_mask": {"shape": [game.num_actions], "dtype": "int8"}},
        {"n": game.num_actions},
    )


def full_model_config(model_config: Mapping[str, Any]) -> dict[str, Any]:
    """Every field of RLlib's ``DefaultModelConfig``, ``model_config`` over the defaults.

    Raises:
        TlmError: a key that is not a field, or a value that is not JSON.
    """
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

    fields = {f.name for f in dataclasses.fields(DefaultModelConfig)}
    unknown = set(model_config) - fields
    if unknown:
        raise TlmError(f"unknown RLlib model_config keys {sorted(unknown)}")
    full = {**dataclasses.asdict(DefaultModelConfig()), **dict(model_config)}
    try:
        return dict(json.loads(json.dumps(full)))
    except TypeError as error:
        raise TlmError(f"RLlib model_config must hold JSON values only ({error})") from None


def build_module(
    model_config: Mapping[str, Any], game: str | Game, module_class: str = "MaskedPPOTorchRLModule"
) -> Any:
    """A fresh, full (not inference-only) module for ``game`` from its spec. Starts no Ray.

    Raises:
        TlmError: an unknown module class or a model_config the module cannot be built from.
    """
    module_name = MODULE_CLASSES.get(module_class)
    if module_name is None:
        raise TlmError(
            f"unknown RLlib module class {module_class!r} (known: {', '.join(MODULE_CLASSES)})"
        )
    import importlib

    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    cls = getattr(importlib.import_module(module_name), module_class)
    obs_space, action_space = game_spaces(game)
    spec = RLModuleSpec(
        module_class=cls, observation_space=obs_space, action_space=action_space,
        inference_only=False, model_config=dict(model_config),
    )
    try:
        with quiet_rllib():
            return spec.build()
    except (ValueError, TypeError, KeyError) as error:
        raise TlmError(f"cannot build {module_class} from its model_config: {error}") from None


def save_module(
    module: Any,
    path: str | Path,
    game: str | Game,
    provenance: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``module`` (a :class:`teachers.rllib.module.MaskedPPOTorchRLModule`) as a checkpoint.

    The directory ``path`` must be new (or empty); it appears complete or not at all.

    Returns:
        ``path``.

    Raises:
        TlmError: an occupied output path, or a module whose class is not known.
    """
    g = get_game(game)
    module_class = type(module).__name__
    if module_class not in MODULE_CLASSES:
        raise TlmError(f"cannot save RLlib module of class {module_class}")
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in module.state_dict().items()}
    data = save_safetensors(tensors)
    obs_json, act_json = _spaces_json(g)
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "module_class": module_class,
        "model_config": full_model_config(module.model_config),
        "observation_space": obs_json,
        "action_space": act_json,
        "game": g.name,
        "weights_sha256": hashlib.sha256(data).hexdigest(),
        "provenance": dict(provenance) if provenance is not None else None,
    }
    out = Path(path)
    with staged_directory(out) as tmp:
        write_bytes_atomic(tmp / WEIGHTS_FILE, data)
        write_bytes_atomic(tmp / CONFIG_FILE, (json.dumps(config, indent=2) + "\n").encode())
    return out


def read_config(path: str | Path) -> dict[str, Any]:
    """The validated ``config.json`` of the RLlib checkpoint at ``path``.

    Raises:
        TlmError: missing directory or file, bad JSON, wrong format, missing or
            unknown fields, or a ``model_config`` that is not complete.
    """
    p = Path(path)
    if not p.is_dir():
        raise TlmError(f"RLlib checkpoint {p} is not a directory")
    cfg_path = p / CONFIG_FILE
    try:
        config = json.loads(cfg_path.read_text())
    except FileNotFoundError:
        raise TlmError(f"RLlib checkpoint {p} has no {CONFIG_FILE}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise TlmError(f"RLlib checkpoint {cfg_path} is not readable JSON ({error})") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise TlmError(f"{cfg_path} is not a tlm RLlib checkpoint (format {FORMAT!r})")
    if config.get("format_version") != FORMAT_VERSION:
        raise TlmError(
            f"{cfg_path}: format version {config.get('format_version')!r}, "
            f"this tlm reads {FORMAT_VERSION}"
        )
    missing = set(_FIELDS) - set(config)
    unknown = set(config) - set(_FIELDS)
    if missing or unknown:
        raise TlmError(
            f"{cfg_path}: missing fields {sorted(missing)}, unknown fields {sorted(unknown)}"
        )
    for key, kind in _FIELDS.items():
        if not isinstance(config[key], kind):
            raise TlmError(f"{cfg_path}: field {key!r} has the wrong type")
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

    lacking = {f.name for f in dataclasses.fields(DefaultModelConfig)} - set(config["model_config"])
    if lacking:
        raise TlmError(
            f"{cfg_path}: model_config lacks {sorted(lacking)} (a partial model_config "
            "would build other layers)"
        )
    return config


def load_module(path: str | Path, game: str | Game | None = None) -> tuple[Any, dict[str, Any]]:
    """Rebuild a checkpoint's module and fill it strictly; returns ``(module, config)``.

    Raises:
        TlmError: see :func:`read_config`; a checkpoint of another game than ``game``,
            spaces that do not match its game, an altered weights file, or weights
            that do not fill the module exactly (missing, extra or mis-shaped tensors).
    """
    p = Path(path)
    config = read_config(p)
    saved_game = get_game(config["game"])
    if game is not None and get_game(game).name != saved_game.name:
        raise TlmError(
            f"RLlib checkpoint {p} plays {saved_game.name}, not {get_game(game).name}"
        )
    obs_json, act_json = _spaces_json(saved_game)
    if config["observation_space"] != obs_json or config["action_space"] != act_json:
        raise TlmError(f"RLlib checkpoint {p}: its spaces do not match {saved_game.name}'s")
    try:
        data = (p / WEIGHTS_FILE).read_bytes()
    except FileNotFoundError:
        raise TlmError(f"RLlib checkpoint {p} has no {WEIGHTS_FILE}") from None
    if hashlib.sha256(data).hexdigest() != config["weights_sha256"]:
        raise TlmError(f"RLlib checkpoint {p}: {WEIGHTS_FILE} does not match its recorded hash")
    try:
        tensors = load_safetensors(data)
    except (SafetensorError, ValueError) as error:
        raise TlmError(f"RLlib checkpoint {p}: {WEIGHTS_FILE} is damaged ({error})") from None
    module = build_module(config["model_config"], saved_game, config["module_class"])
    fill_strict(module, tensors, str(p / WEIGHTS_FILE))
    module.eval()
    return module, config


def fill_strict(module: Any, tensors: Mapping[str, Any], source: str) -> None:
    """``module.load_state_dict(tensors, strict=True)``, refusing with one line on any mismatch.

    Raises:
        TlmError: missing, unexpected or mis-shaped tensors.
    """
    expected = module.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise TlmError(
            f"{source} does not fit the module: missing tensors {missing[:4]}"
            f"{'...' if len(missing) > 4 else ''}, unexpected {unexpected[:4]}"
            f"{'...' if len(unexpected) > 4 else ''}"
        )
    for name, want in expected.items():
        got = tuple(np.shape(tensors[name]))
        if got != tuple(want.shape):
            raise TlmError(
                f"{source}: tensor {name} has shape {got}, the module needs {tuple(want.shape)}"
            )
    state = {k: torch.as_tensor(np.asarray(v)) if not isinstance(v, torch.Tensor) else v
             for k, v in tensors.items()}
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as error:
        reason = " ".join(str(error).split())
        raise TlmError(f"{source} does not fit the module: {reason}") from None


class RLlibAgent(PolicyAgent):
    """A tlm RLlib module as an arena agent: masked policy, value, greedy or sampled play.

    One forward pass for all rows; ``policy`` is the module's categorical distribution
    restricted to the legal actions (what RLlib samples from), ``value`` its critic.
    The module is wrapped, not copied.

    Attributes:
        module: the wrapped module.
        model_config: its full model_config.
    """

    def __init__(
        self,
        module: Any,
        game: str | Game,
        model_config: Mapping[str, Any],
        greedy: bool = True,
        name: str = "rllib",
    ) -> None:
        """Wrap ``module`` (full, not inference-only), which plays ``game``."""
        g = get_game(game)
        self.module = module
        self.model_config = dict(model_config)
        self.game = g.name
        self.greedy = greedy
        self.name = name
        self.obs_shape = g.obs_shape
        self.num_actions = g.num_actions

    def _check(self, obs: np.ndarray, mask: np.ndarray) -> None:
        if tuple(np.shape(obs)[1:]) != self.obs_shape or np.shape(mask) != (
            np.shape(obs)[0], self.num_actions,
        ):
            raise TlmError(
                f"observations {np.shape(obs)} and mask {np.shape(mask)} do not fit the "
                f"RLlib module ({self.obs_shape}, {self.num_actions} actions)"
            )

    def logits(self, obs: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """``[B, A]`` float64 logits, illegal actions at float32's minimum."""
        self._check(obs, mask)
        logits, _ = self.module.logits_and_values(obs, mask, with_values=False)
        return np.asarray(logits.to(torch.float64).numpy())

    def policy(self, obs: np.ndarray, mask: np.ndarray, state: State | None = None) -> np.ndarray:
        """``probs[B, A]`` (float64), zero on illegal actions."""
        return masked_softmax(self.logits(obs, mask), np.asarray(mask))

    def value(self, obs: np.ndarray, mask: np.ndarray, state: State | None = None) -> np.ndarray:
        """``[B]`` (float64): the critic's value for the mover."""
        self._check(obs, mask)
        _, values = self.module.logits_and_values(obs, mask, with_values=True)
        assert values is not None
        return np.asarray(values.reshape(-1).to(torch.float64).numpy())

    def state_dict(self) -> dict[str, torch.Tensor]:
        """A detached copy of the module's weights."""
        return {k: v.detach().clone() for k, v in self.module.state_dict().items()}


def load_rllib_agent(path: str | Path, game: str | Game, greedy: bool = True) -> RLlibAgent:
    """The agent of the checkpoint at ``path`` for ``game``.

    Raises:
        TlmError: see :func:`load_module`.
    """
    module, config = load_module(path, game)
    return RLlibAgent(module, game, config["model_config"], greedy=greedy, name=f"rllib:{path}")


def rllib_payload(agent: RLlibAgent) -> dict[str, Any]:
    """An RLlib agent as plain data (its weights as arrays) for Ray workers."""
    return {
        "model_config": agent.model_config, "game": agent.game, "greedy": agent.greedy,
        "name": agent.name,
        "weights": {k: v.numpy() for k, v in agent.state_dict().items()},
    }


def rllib_from_payload(data: Mapping[str, Any], game: Game) -> RLlibAgent:
    """The agent that :func:`rllib_payload` described, rebuilt strictly."""
    module = build_module(data["model_config"], game)
    fill_strict(module, data["weights"], f"RLlib agent {data['name']}")
    module.eval()
    return RLlibAgent(module, game, data["model_config"], greedy=bool(data["greedy"]),
                      name=str(data["name"]))


register_payload(RLlibAgent, rllib_payload, rllib_from_payload)


def _rllib_spec(arg: str | None, game: Game) -> Agent:
    assert arg is not None  # the registry enforces needs_argument
    return load_rllib_agent(arg, game)


def register() -> None:
    """Make ``rllib:DIR`` an agent spec (greedy play of a tlm RLlib checkpoint)."""
    register_agent("rllib", _rllib_spec, "rllib:DIR", needs_argument=True)
