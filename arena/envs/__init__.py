"""PettingZoo AEC envs over the fast engines: one game each, the API of the originals.

``arena.envs.tictactoe`` and ``arena.envs.connect_four`` are drop-in replacements for
``pettingzoo.classic.tictactoe_v3`` and ``connect_four_v3``: the same agent names,
spaces, observations, rewards, termination semantics, metadata and wrappers, with the
rules played by :mod:`arena.engines`. The games registry builds these, so every env
and every batched match plays by the same rules.
"""

from arena.envs.base import EngineEnv
from arena.envs.connect_four import ConnectFourEnv
from arena.envs.tictactoe import TicTacToeEnv

__all__ = ["ConnectFourEnv", "EngineEnv", "TicTacToeEnv"]
