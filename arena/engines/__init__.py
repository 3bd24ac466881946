"""Fast batched engines: games played as arrays, B games in lockstep.

Each engine implements :class:`arena.core.Engine` with observations, masks, action
indices and rewards identical to the game's PettingZoo env. The registry
(:mod:`arena.games`) names them, so code reaches them through ``make_engine(name)``.
"""

from arena.engines.connect_four import ConnectFourEngine, ConnectFourState
from arena.engines.tictactoe import TicTacToeEngine, TicTacToeState

__all__ = ["ConnectFourEngine", "ConnectFourState", "TicTacToeEngine", "TicTacToeState"]
