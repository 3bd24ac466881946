"""The generic batched adapter: B PettingZoo AEC envs behind the engine interface.

It serves every game that has no fast engine (go, chess, poker). It is as slow as
PettingZoo itself, but it lets every agent, match and evaluation run on any
two-player PettingZoo classic game, and it is the reference the fast engines are
tested against.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from pettingzoo import AECEnv

from arena.core import IllegalActionError, TlmError

if TYPE_CHECKING:
    from arena.games import Game


def clone_env(env: Any, memo: dict[int, Any] | None = None) -> Any:
    """A deep copy of a live PettingZoo env.

    ``copy.deepcopy`` goes through ``EzPickle``, which rebuilds a fresh env from its
    constructor arguments and so loses the game in progress; this copies the
    attributes of the env and of each wrapper (every ``AECEnv`` in the chain) instead.
    """
    memo = {} if memo is None else memo
    if id(env) in memo:
        return memo[id(env)]
    cls = type(env)
    new = object.__new__(cls)
    memo[id(env)] = new
    for key, value in env.__dict__.items():
        if isinstance(value, AECEnv):
            new.__dict__[key] = clone_env(value, memo)
        else:
            new.__dict__[key] = copy.deepcopy(value, memo)
    return new


def episode_seeds(seed: int | np.ndarray | None, n: int) -> list[int | None]:
    """The env seed of each of ``n`` games: ``seed`` itself if it holds one per game,
    else drawn from it (``None``: unseeded)."""
    if seed is None:
        return [None] * n
    if np.ndim(seed):
        seeds = np.asarray(seed)
        if seeds.shape != (n,):
            raise TlmError(f"{len(seeds)} episode seeds for {n} games")
        return [int(s) for s in seeds]
    return [int(s) for s in np.random.SeedSequence(int(seed)).generate_state(n, dtype=np.uint32)]


@dataclass
class EnvBatch:
    """The adapter's state: one live PettingZoo env per game."""

    envs: list[Any]
    done: np.ndarray


class PettingZooEngine:
    """Runs B PettingZoo envs of one game in lockstep behind the engine interface.

    Game ``i`` of ``reset(n, seed)`` is ``env.reset(seed=episode_seeds(seed, n)[i])``
    (``seed`` may hold one seed per game, as matches pass it), so a plain PettingZoo
    loop with the same seeds plays the same games.
    """

    def __init__(self, game: Game) -> None:
        self.game = game
        self.name = game.name
        self.cheap_take = False
        self.obs_shape, self.obs_dtype, self.num_actions = game.spaces
        probe = game.make_env()
        self.agents: list[str] = list(probe.possible_agents)

    def reset(self, n: int, seed: int | np.ndarray | None = None) -> EnvBatch:
        envs = []
        for s in episode_seeds(seed, n):
            env = self.game.make_env()
            env.reset(seed=s)
            envs.append(env)
        return EnvBatch(envs, np.array([self._finished(e) for e in envs], dtype=bool))

    @staticmethod
    def _finished(env: Any) -> bool:
        if not env.agents:
            return True
        return all(env.terminations[a] or env.truncations[a] for a in env.agents)

    def observe(self, state: EnvBatch) -> tuple[np.ndarray, np.ndarray]:
        n = len(state.envs)
        obs = np.zeros((n, *self.obs_shape), dtype=self.obs_dtype)
        mask = np.zeros((n, self.num_actions), dtype=np.int8)
        for i, env in enumerate(state.envs):
            if not state.done[i]:
                o = env.observe(env.agent_selection)
                obs[i] = o["observation"]
                mask[i] = o["action_mask"]
        return obs, mask

    def legal_mask(self, state: EnvBatch) -> np.ndarray:
        return self.observe(state)[1]

    def to_play(self, state: EnvBatch) -> np.ndarray:
        return np.array(
            [self.agents.index(e.agent_selection) if e.agents else 0 for e in state.envs],
            dtype=np.int64,
        )

    def done(self, state: EnvBatch) -> np.ndarray:
        return state.done.copy()

    def step(
        self, state: EnvBatch, actions: np.ndarray
    ) -> tuple[EnvBatch, np.ndarray, np.ndarray]:
        n = len(state.envs)
        rewards = np.zeros((n, 2), dtype=np.float32)
        for i, env in enumerate(state.envs):
            if state.done[i]:
                continue
            a = int(actions[i])
            mask = env.observe(env.agent_selection)["action_mask"]
            if not (0 <= a < self.num_actions) or not mask[a]:
                raise IllegalActionError(f"{self.name}: illegal action {a} in game {i}")
            env.step(a)
            for s, agent in enumerate(self.agents):
                rewards[i, s] = env.rewards.get(agent, 0.0)
            state.done[i] = self._finished(env)
        return state, rewards, state.done.copy()

    def take(self, state: EnvBatch, idx: np.ndarray) -> EnvBatch:
        idx = np.asarray(idx)
        return EnvBatch([clone_env(state.envs[i]) for i in idx], state.done[idx].copy())

    def clone(self, state: EnvBatch) -> EnvBatch:
        return EnvBatch([clone_env(e) for e in state.envs], state.done.copy())

    def render(self, state: EnvBatch, i: int) -> str:
        env = state.envs[i].unwrapped
        board = getattr(env, "board", None)
        if board is not None and not isinstance(board, list):
            return str(board)
        obs, mask = self.observe(EnvBatch([state.envs[i]], state.done[i : i + 1]))
        return f"observation {obs[0].shape}, legal actions {np.flatnonzero(mask[0]).tolist()}"
