"""``tictactoe_v3`` over :class:`arena.engines.TicTacToeEngine`: ``env()`` and ``raw_env``."""

from __future__ import annotations

from typing import Any, ClassVar, cast

import numpy as np
from pettingzoo.utils import wrappers

from arena.engines.tictactoe import TicTacToeEngine
from arena.envs.base import EngineEnv


class TicTacToeEnv(EngineEnv):
    """Tic-tac-toe with the agents, spaces, observations and rewards of ``tictactoe_v3``."""

    metadata: ClassVar[dict[str, Any]] = {
        "render_modes": ["human", "rgb_array"],
        "name": "tictactoe_v3",
        "is_parallelizable": False,
        "render_fps": 1,
    }
    agent_names = ("player_1", "player_2")

    def __init__(self, render_mode: str | None = None, screen_height: int | None = 1000) -> None:
        super().__init__(TicTacToeEngine(), render_mode, screen_height=screen_height)
        self.screen_height = screen_height

    def _free_moves(self, observation: np.ndarray) -> np.ndarray:
        # obs[r, c] is square 3r + c, so the flattened planes are in action order.
        taken = observation[..., 0] | observation[..., 1]
        return (1 - taken).reshape(-1).astype(np.int8)

    def _reference_view(self) -> Any:
        from pettingzoo.classic.tictactoe.tictactoe import raw_env as reference

        view = reference(render_mode=self.render_mode, screen_height=self.screen_height)
        view.reset()
        return view

    def _paint(self, view: Any) -> None:
        squares = cast(TicTacToeEngine, self.engine).board(self.state)[0]
        view.board.squares = [int(v) for v in squares]


raw_env = TicTacToeEnv


def env(**kwargs: Any) -> Any:
    """A wrapped env, exactly as ``tictactoe_v3.env``: illegal moves lose, then end."""
    e = raw_env(**kwargs)
    e = wrappers.TerminateIllegalWrapper(e, illegal_reward=-1)
    e = wrappers.AssertOutOfBoundsWrapper(e)
    return wrappers.OrderEnforcingWrapper(e)
