"""The games registry: a name maps to a PettingZoo env factory and, where one exists,
a fast batched engine. Every game is reachable through the same engine interface;
games without a fast engine run through :class:`arena.adapter.PettingZooEngine`.
"""

from __future__ import annotations

import importlib
import warnings
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from arena.core import Engine, TlmError


@dataclass(frozen=True)
class Game:
    """A registered two-player game.

    Attributes:
        name: registry name (``tictactoe``, ``connect_four``, ...).
        env_module: dotted path of the PettingZoo module whose ``env(**env_kwargs)``
            builds the env.
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
        module = importlib.import_module(self.env_module)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return module.env(**{**self.env_kwargs, **kwargs})

    def make_reference_env(self, **kwargs: Any) -> Any:
        """A fresh env of the original PettingZoo module (``make_env`` if there is no other)."""
        module = importlib.import_module(self.reference_module or self.env_module)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return module.env(**{**self.env_kwargs, **kwargs})

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


_GAMES: dict[str, Game] = {}


def register_game(game: Game) -> Game:
    """Add a game to the registry (a later registration under the same name replaces it)."""
    _GAMES[game.name] = game
    return game


def list_games() -> list[Game]:
    """Every registered game, in registration order."""
    return list(_GAMES.values())


def get_game(game: str | Game) -> Game:
    """The registered game called ``game`` (a :class:`Game` passes through)."""
    if isinstance(game, Game):
        return game
    try:
        return _GAMES[game]
    except KeyError:
        known = ", ".join(_GAMES)
        raise TlmError(f"unknown game {game!r} (known: {known})") from None


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
