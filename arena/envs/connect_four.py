"""``connect_four_v3`` over :class:`arena.engines.ConnectFourEngine`: ``env()`` and ``raw_env``."""

from __future__ import annotations

from typing import Any, ClassVar, cast

import numpy as np
from pettingzoo.utils import wrappers

from arena.engines.connect_four import ConnectFourEngine
from arena.envs.base import EngineEnv


class ConnectFourEnv(EngineEnv):
    """Connect four with the agents, spaces, observations and rewards of ``connect_four_v3``."""

    metadata: ClassVar[dict[str, Any]] = {
        "render_modes": ["human", "rgb_array"],
        "name": "connect_four_v3",
        "is_parallelizable": False,
        "render_fps": 2,
    }
    agent_names = ("player_0", "player_1")

    def __init__(self, render_mode: str | None = None, screen_scaling: int = 9) -> None:
        super().__init__(ConnectFourEngine(), render_mode, screen_scaling=screen_scaling)
        self.screen_scaling = screen_scaling

    def _free_moves(self, observation: np.ndarray) -> np.ndarray:
        # A column is free while its top cell (row 0) is empty.
        taken = observation[0, :, 0] | observation[0, :, 1]
        return (1 - taken).astype(np.int8)

    def _reference_view(self) -> Any:
        from pettingzoo.classic.connect_four.connect_four import raw_env as reference

        view = reference(render_mode=self.render_mode, screen_scaling=self.screen_scaling)
        view.reset()
        return view

    def _paint(self, view: Any) -> None:
        board = cast(ConnectFourEngine, self.engine).board(self.state)[0]
        view.board = [int(v) for v in board.reshape(-1)]


raw_env = ConnectFourEnv


def env(**kwargs: Any) -> Any:
    """A wrapped env, exactly as ``connect_four_v3.env``: illegal moves lose, then end."""
    e = raw_env(**kwargs)
    e = wrappers.TerminateIllegalWrapper(e, illegal_reward=-1)
    e = wrappers.AssertOutOfBoundsWrapper(e)
    return wrappers.OrderEnforcingWrapper(e)
