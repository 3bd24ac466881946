"""The games registry: a name maps to a PettingZoo env factory and, where one exists,
a fast batched engine. Every game is reachable through the same engine interface;
games without a fast engine run through :class:`arena.adapter.PettingZooEngine`.

Games are plugins, as agent kinds are (:mod:`arena.agents`). :func:`get_game` is the one
place a game name is resolved, and it knows three forms:

- a registered name (``tictactoe``, ``connect_four``, ... or one added with
  :func:`register_game`);
- the name of an entry point of group ``tlm.games`` (what a package's setup.cfg
  declares under ``[options.entry_points]``): its object is a PettingZoo AEC env
  factory, or a :class:`Game` (a game that brings its own engine);
- ``package.module:factory``: any callable of no arguments that returns a two-player
  PettingZoo AEC env, played through the generic adapter.

The last two are loaded on first use and checked once (a two-player AEC env whose
observation is a dict of ``observation`` and ``action_mask``, with discrete actions);
the spaces are read off the env. A game resolved from ``package.module:factory`` is
registered under that text, so a Ray worker resolves the same name the same way.
"""

from __future__ import annotations

import dataclasses
import importlib
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import numpy as np

from arena.core import Engine, TlmError


@dataclass(frozen=True)
class Game:
    """A registered two-player game.

    Attributes:
        name: registry name (``tictactoe``, ``connect_four``, ...).
        env_module: where the env comes from: the dotted path of a PettingZoo module
            whose ``env(**env_kwargs)`` builds it, or ``module:factory`` naming any
            callable that does.
        env_kwargs: keyword arguments for ``env``.
        engine: dotted ``module:Class`` of the fast batched engine, or ``None``.
        description: one line for ``tlm games``.
        reference_module: the original PettingZoo module when ``env_module`` is a
            reimplementation over the engine (equivalence tests compare the two).
    """

    name: str
    env_module: str
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    engine: str | None = None
    description: str = ""
    reference_module: str | None = None

    def make_env(self, **kwargs: Any) -> Any:
        """A fresh PettingZoo AEC env of this game (over the fast engine where one exists)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _env_factory(self.env_module)(**{**self.env_kwargs, **kwargs})

    def make_reference_env(self, **kwargs: Any) -> Any:
        """A fresh env of the original PettingZoo module (``make_env`` if there is no other)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            factory = _env_factory(self.reference_module or self.env_module)
            return factory(**{**self.env_kwargs, **kwargs})

    def make_engine(self) -> Engine:
        """The fast engine if the game has one, else the generic PettingZoo adapter."""
        if self.engine is not None:
            module_name, cls_name = self.engine.split(":")
            return getattr(importlib.import_module(module_name), cls_name)()
        from arena.adapter import PettingZooEngine

        return PettingZooEngine(self)

    @property
    def has_engine(self) -> bool:
        """Whether a fast array engine (cheap clones, search-ready) exists."""
        return self.engine is not None

    @cached_property
    def spaces(self) -> tuple[tuple[int, ...], np.dtype, int]:
        """``(obs_shape, obs_dtype, num_actions)`` read off the PettingZoo env."""
        env = self.make_env()
        agent = env.possible_agents[0]
        obs_space = env.observation_space(agent)["observation"]
        return tuple(obs_space.shape), np.dtype(obs_space.dtype), int(env.action_space(agent).n)

    @property
    def obs_shape(self) -> tuple[int, ...]:
        return self.spaces[0]

    @property
    def obs_dtype(self) -> np.dtype:
        return self.spaces[1]

    @property
    def num_actions(self) -> int:
        return self.spaces[2]


def _env_factory(where: str) -> Callable[..., Any]:
    """The env constructor that ``where`` names: ``module:factory``, or a module's ``env``."""
    module_name, sep, attr = where.partition(":")
    return getattr(importlib.import_module(module_name), attr if sep else "env")


GAME_GROUP = "tlm.games"
"""Entry-point group of games: name = the game's name, object = a PettingZoo AEC env
factory or a :class:`Game`."""

FACTORY_FORM = "package.module:factory"
"""How a game that is neither registered nor a plugin is named."""

_GAMES: dict[str, Game] = {}
_PLUGINS_LISTED = False


def register_game(game: Game) -> Game:
    """Add a game to the registry (a later registration under the same name replaces it)."""
    _GAMES[game.name] = game
    return game


def list_games() -> list[Game]:
    """Every registered game, in registration order, then the ``tlm.games`` plugins."""
    global _PLUGINS_LISTED
    if not _PLUGINS_LISTED:
        for ep in entry_points(group=GAME_GROUP):
            if ep.name not in _GAMES:
                register_game(_plugin_game(ep))
        _PLUGINS_LISTED = True
    return list(_GAMES.values())


def get_game(game: str | Game) -> Game:
    """The game that ``game`` names (a :class:`Game` passes through): a registered
    name, a ``tlm.games`` plugin, or ``package.module:factory``.

    Raises:
        TlmError: an unknown name; a module that cannot be imported, a factory that is
            missing, not callable or fails; an env that is not a two-player PettingZoo
            AEC env with ``observation`` / ``action_mask`` observations and discrete
            actions.
    """
    if isinstance(game, Game):
        return game
    found = _GAMES.get(game)
    if found is not None:
        return found
    plugins = list(entry_points(group=GAME_GROUP, name=game))
    if plugins:
        return register_game(_plugin_game(plugins[0]))
    if ":" in game:
        return register_game(_factory_game(game, game, f"PettingZoo env from {game}"))
    known = ", ".join([*_GAMES, *(ep.name for ep in entry_points(group=GAME_GROUP)
                                  if ep.name not in _GAMES)])
    raise TlmError(f"unknown game {game!r} (known: {known}, or {FACTORY_FORM})")


def _plugin_game(ep: EntryPoint) -> Game:
    """The game an entry point of :data:`GAME_GROUP` declares, checked."""
    where = f"game plugin {ep.name!r} ({GAME_GROUP}: {ep.value})"
    try:
        obj = ep.load()
    except Exception as error:
        # A broken or half-installed plugin is the environment's problem, not a bug here.
        raise TlmError(f"{where} cannot be imported: {error}") from None
    if isinstance(obj, Game):
        game = dataclasses.replace(obj, name=ep.name) if obj.name != ep.name else obj
        _check_env(game.make_env(), where)
        return game
    description = f"{ep.value} ({ep.dist.name})" if ep.dist is not None else ep.value
    return _factory_game(ep.name, ep.value, description, where)


def _factory_game(name: str, where: str, description: str, label: str | None = None) -> Game:
    """A game over the env factory at ``where`` (``module:factory``), checked once."""
    label = label or f"game {where!r}"
    module_name, _, attr = where.partition(":")
    if not module_name or not attr:
        raise TlmError(f"{label}: expected {FACTORY_FORM}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise TlmError(f"{label}: cannot import module {module_name!r} ({error})") from None
    factory = getattr(module, attr, None)
    if factory is None:
        raise TlmError(f"{label}: module {module_name!r} has no {attr!r}")
    if not callable(factory):
        raise TlmError(f"{label}: {attr!r} is not callable (want a function that returns "
                       "a PettingZoo AEC env)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            env = factory()
    except Exception as error:
        raise TlmError(f"{label}: {attr}() failed: {type(error).__name__}: {error}") from None
    _check_env(env, label)
    return Game(name, where, description=description)


def _check_env(env: Any, label: str) -> None:
    """Refuse anything but a two-player AEC env whose spaces the arena can use."""
    from gymnasium import spaces
    from pettingzoo import AECEnv

    if not isinstance(env, AECEnv):
        raise TlmError(f"{label}: the factory returned {type(env).__name__}, not a "
                       "PettingZoo AEC env")
    agents = list(env.possible_agents)
    if len(agents) != 2:
        raise TlmError(f"{label}: a two-player game is needed, this env has "
                       f"{len(agents)} agents ({', '.join(map(str, agents))})")
    seen = []
    for agent in agents:
        obs_space, action_space = env.observation_space(agent), env.action_space(agent)
        if not (isinstance(obs_space, spaces.Dict)
                and isinstance(obs_space.spaces.get("observation"), spaces.Box)
                and "action_mask" in obs_space.spaces):
            raise TlmError(f"{label}: observations must be a dict of 'observation' (a Box) "
                           f"and 'action_mask', got {obs_space}")
        if not isinstance(action_space, spaces.Discrete):
            raise TlmError(f"{label}: actions must be Discrete, got {action_space}")
        planes = obs_space["observation"]
        seen.append((planes.shape, planes.dtype, int(action_space.n)))
    if seen[0] != seen[1]:
        raise TlmError(f"{label}: both players need the same observation and action "
                       f"spaces, got {seen[0]} and {seen[1]}")


def make_engine(game: str | Game) -> Engine:
    """The batched engine of a game: fast for tictactoe and connect_four, generic otherwise."""
    return get_game(game).make_engine()



register_game(Game(
    "tictactoe", "arena.envs.tictactoe",
    engine="arena.engines.tictactoe:TicTacToeEngine",
    description="tic-tac-toe (tictactoe_v3)",
    reference_module="pettingzoo.classic.tictactoe_v3",
))
register_game(Game(
    "connect_four", "arena.envs.connect_four",
    engine="arena.engines.connect_four:ConnectFourEngine",
    description="connect four, 6x7 (connect_four_v3)",
    reference_module="pettingzoo.classic.connect_four_v3",
))
register_game(Game(
    "go9", "pettingzoo.classic.go_v5", {"board_size": 9, "komi": 7.5},
    description="go on a 9x9 board, komi 7.5 (go_v5)",
))
register_game(Game("chess", "pettingzoo.classic.chess_v6", description="chess (chess_v6)"))
register_game(Game(
    "leduc_holdem", "pettingzoo.classic.leduc_holdem_v4",
    description="Leduc hold'em poker (leduc_holdem_v4)",
))
register_game(Game(
    "texas_holdem", "pettingzoo.classic.texas_holdem_v4",
    description="limit Texas hold'em (texas_holdem_v4)",
))
register_game(Game(
    "texas_holdem_no_limit", "pettingzoo.classic.texas_holdem_no_limit_v6",
    description="no-limit Texas hold'em (texas_holdem_no_limit_v6)",
))
