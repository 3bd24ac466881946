"""The AEC env shared by the engine-backed games: one game, driven by a batch-of-one engine.

It reproduces the behaviour of PettingZoo's classic board-game envs exactly
(``tictactoe_v3``, ``connect_four_v3``): the selected agent's mask lists the free
moves even after the game ended, the other agent's mask is all zeros, rewards are
Python ints accumulated into ``_cumulative_rewards``, and finished agents leave
through ``_was_dead_step``. Pictures (``render_mode`` ``human`` / ``rgb_array``) are
drawn by the original env, so they look the same too.
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium
import numpy as np
from gymnasium import spaces
from gymnasium.utils import EzPickle
from pettingzoo import AECEnv
from pettingzoo.utils import AgentSelector

from arena.core import Engine, State


class EngineEnv(AECEnv, EzPickle):
    """A two-player AEC env whose rules are those of a batched engine (batch of one).

    Subclasses name the engine, the agents and the metadata, say which moves of a
    board are free (:meth:`_free_moves`) and how to paint the original env's board
    for pictures (:meth:`_reference_view`).
    """

    metadata: ClassVar[dict[str, Any]] = {}
    agent_names: ClassVar[tuple[str, str]]

    def __init__(self, engine: Engine, render_mode: str | None, **picture_kwargs: Any) -> None:
        super().__init__()
        EzPickle.__init__(self, render_mode, *picture_kwargs.values())
        self.engine = engine
        self.render_mode = render_mode
        self._picture_kwargs = picture_kwargs
        self._view: Any = None
        self.agents = list(self.agent_names)
        self.possible_agents = self.agents[:]
        n_actions = engine.num_actions
        self.action_spaces: dict[str, spaces.Space] = {
            a: spaces.Discrete(n_actions) for a in self.agents
        }
        self.observation_spaces = {
            a: spaces.Dict({
                "observation": spaces.Box(
                    low=0, high=1, shape=engine.obs_shape, dtype=np.int8
                ),
                "action_mask": spaces.Box(low=0, high=1, shape=(n_actions,), dtype=np.int8),
            })
            for a in self.agents
        }
        self._state: State = engine.reset(1)
        self._agent_selector = AgentSelector(self.agents)
        self._start()

    def _start(self) -> None:
        self._state = self.engine.reset(1)
        self.agents = self.possible_agents[:]
        self.rewards = dict.fromkeys(self.agents, 0)
        self._cumulative_rewards = dict.fromkeys(self.agents, 0)
        self.terminations = dict.fromkeys(self.agents, False)
        self.truncations = dict.fromkeys(self.agents, False)
        self.infos: dict[str, dict[str, Any]] = {a: {} for a in self.agents}
        self._agent_selector.reinit(self.agents)
        self.agent_selection = self._agent_selector.reset()

    @property
    def state(self) -> State:
        """The engine state of the game (a batch of one)."""
        return self._state

    def observation_space(self, agent: str) -> spaces.Space:
        return self.observation_spaces[agent]

    def action_space(self, agent: str) -> spaces.Space:
        return self.action_spaces[agent]

    def observe(self, agent: str) -> dict[str, np.ndarray]:
        obs, _ = self.engine.observe(self._state)
        seat = self.possible_agents.index(agent)
        # The engine shows the board to the seat to move; the other seat sees the
        # planes swapped.
        if seat == int(self.engine.to_play(self._state)[0]):
            observation = obs[0].copy()
        else:
            observation = np.ascontiguousarray(obs[0][..., ::-1])
        if agent == self.agent_selection:
            mask = self._free_moves(observation)
        else:
            mask = np.zeros(self.engine.num_actions, dtype=np.int8)
        return {"observation": observation, "action_mask": mask}

    def _free_moves(self, observation: np.ndarray) -> np.ndarray:
        """``mask[A]`` int8 of the moves the board leaves free (finished or not)."""
        raise NotImplementedError

    def step(self, action: int) -> None:
        if self.terminations[self.agent_selection] or self.truncations[self.agent_selection]:
            return self._was_dead_step(action)
        self._state, rewards, done = self.engine.step(
            self._state, np.array([action], dtype=np.int64)
        )
        if done[0]:
            for seat, agent in enumerate(self.agents):
                self.rewards[agent] += int(rewards[0, seat])
            self.terminations = dict.fromkeys(self.agents, True)
        self._accumulate_rewards()
        self.agent_selection = self._agent_selector.next()
        if self.render_mode == "human":
            self.render()

    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None) -> None:
        # The game has no randomness: ``seed`` changes nothing, as in the originals.
        self._start()

    def render_text(self) -> str:
        """The board as text (for terminals), whatever the render mode."""
        return self.engine.render(self._state, 0)

    def render(self) -> np.ndarray | None:
        if self.render_mode is None:
            gymnasium.logger.warn(
                "You are calling render method without specifying any render mode."
            )
            return None
        if self._view is None:
            self._view = self._reference_view()
        self._paint(self._view)
        return self._view.render()

    def _reference_view(self) -> Any:
        """The original PettingZoo env that draws this game's pictures."""
        raise NotImplementedError

    def _paint(self, view: Any) -> None:
        """Copy this game's board into the original env ``view``."""
        raise NotImplementedError

    def close(self) -> None:
        if self._view is not None:
            self._view.close()
            self._view = None
