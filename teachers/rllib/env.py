"""The multi-agent self-play env of an RLlib learner: one game, two seats, any opponent.

:class:`SelfPlayEnv` is the arena's PettingZoo env of the game (``observation``
renamed ``observations``, RLlib's convention for masked observations) wrapped by
RLlib's ``PettingZooEnv``, as a ``MultiAgentEnv`` whose agent ids *are* module ids:
``main`` (trained) and the frozen slots ``opp_0 .. opp_{K-1}``. Every episode draws,
from the env's own seeded generator, the learner's seat and one opponent of the
current table (:class:`Opponent`): a module slot played through RLlib, or an arena
agent played inside the env, whose seat is never exposed to RLlib.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

# Ray reads this when it starts; a local Ray for one process needs no token.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

from ray.rllib.env.multi_agent_env import MultiAgentEnv  # noqa: E402

from arena.agents import RandomAgent
from arena.core import Agent, TlmError
from arena.games import Game, get_game

MAIN = "main"
"""Module id of the policy being trained."""


def slot_id(i: int) -> str:
    """Module id of frozen opponent slot ``i``."""
    return f"opp_{i}"


def _renamed_env(game: Game) -> Any:
    """The game's PettingZoo AEC env with ``observation`` renamed ``observations``."""
    from gymnasium import spaces
    from pettingzoo.utils.wrappers import BaseWrapper

    class ObservationsKey(BaseWrapper):
        def observation_space(self, agent: str) -> Any:
            space = self.env.observation_space(agent)
            return spaces.Dict({
                "observations": space["observation"], "action_mask": space["action_mask"],
            })

        def observe(self, agent: str) -> Any:
            obs = self.env.observe(agent)
            return None if obs is None else {
                "observations": obs["observation"], "action_mask": obs["action_mask"],
            }

    return ObservationsKey(game.make_env())


class Opponent:
    """One entry of the opponent table: a module slot, or an arena agent played inside."""

    __slots__ = ("agent", "module_id", "name")

    def __init__(self, name: str, module_id: str | None = None, agent: Agent | None = None):
        self.name = name
        self.module_id = module_id
        self.agent = agent


class SelfPlayEnv(MultiAgentEnv):
    """Two-seat self-play over RLlib's ``PettingZooEnv``; agent ids are module ids.

    ``env_config``: ``game`` (name) and ``n_slots``. The opponent table is set with
    :meth:`set_opponents`; until then every episode is against ``random`` (inside).
    Each finished game is recorded for :meth:`drain`.
    """

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        from ray.rllib.env.wrappers.pettingzoo_env import PettingZooEnv

        config = dict(config or {})
        self.game = get_game(config["game"])
        self.slots = [slot_id(i) for i in range(int(config.get("n_slots", 1)))]
        self._pz = PettingZooEnv(_renamed_env(self.game))
        # PettingZooEnv orders agents through a set; the seats' order is the AEC env's.
        self.seats: list[str] = list(self._pz.env.possible_agents)
        self.possible_agents = [MAIN, *self.slots]
        obs_space = self._pz.env.observation_space(self.seats[0])
        act_space = self._pz.env.action_space(self.seats[0])
        self.observation_spaces = dict.fromkeys(self.possible_agents, obs_space)
        self.action_spaces = dict.fromkeys(self.possible_agents, act_space)
        self.agents = []
        self._table: list[Opponent] = [Opponent("random", agent=RandomAgent())]
        self._probs = np.ones(1)
        self._rng = np.random.default_rng(0)
        self._seeded = False
        self._ids: dict[str, str | None] = {}
        self._inside: Agent | None = None
        self._opponent = ""
        self.main_steps = 0
        self.results: list[tuple[str, float]] = []

    def set_opponents(self, table: Sequence[Opponent], probs: np.ndarray) -> None:
        """Use ``table`` from the next episode on, drawn with probabilities ``probs``."""
        self._table = list(table)
        self._probs = np.asarray(probs, dtype=np.float64)

    def drain(self) -> tuple[int, list[tuple[str, float]]]:
        """``(main's moves, [(opponent, main's reward)] of finished games)`` since the last call."""
        out = (self.main_steps, self.results)
        self.main_steps, self.results = 0, []
        return out

    def reseed(self, seed: int) -> None:
        """Draw seats and opponents from a generator seeded with ``seed`` from now on."""
        self._rng = np.random.default_rng(seed)
        self._seeded = True

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[Any, Any], dict[Any, Any]]:
        if seed is not None and not self._seeded:
            # RLlib's env seed counts only until the learner first reseeds the env
            # (before each train()); later draws continue from the env's generator.
            self.reseed(seed)
        k = int(self._rng.choice(len(self._table), p=self._probs)) if len(self._table) > 1 else 0
        opponent = self._table[k]
        main_seat = int(self._rng.integers(2))
        self._opponent = opponent.name
        self._inside = opponent.agent if opponent.module_id is None else None
        self._ids = {
            self.seats[main_seat]: MAIN,
            self.seats[1 - main_seat]: opponent.module_id,
        }
        self.agents = [m for m in self._ids.values() if m is not None]
        obs, infos = self._pz.reset(seed=int(self._rng.integers(2**31 - 1)))
        obs, _, _, _, infos = self._play_inside(obs, {}, {}, {}, infos or {})
        return self._rename(obs), self._rename(infos)

    def step(self, action_dict: dict[Any, Any]) -> tuple[Any, ...]:
        mover = self._pz.env.agent_selection
        module_id = self._ids.get(mover)
        if module_id is None:
            raise TlmError(f"{mover} is played inside the env, not by RLlib")
        if module_id == MAIN:
            self.main_steps += 1
        result = self._pz.step({mover: action_dict[module_id]})
        obs, rew, term, trunc, infos = self._play_inside(*result)
        done = bool(term.get("__all__") or trunc.get("__all__"))
        if done:
            main_seat = next(s for s, m in self._ids.items() if m == MAIN)
            self.results.append((self._opponent, float(rew.get(main_seat, 0.0))))
        out_term = {**self._rename(term), "__all__": bool(term.get("__all__", False))}
        out_trunc = {**self._rename(trunc), "__all__": bool(trunc.get("__all__", False))}
        return self._rename(obs), self._rename(rew), out_term, out_trunc, self._rename(infos)

    def _play_inside(
        self, obs: dict[str, Any], rew: dict[str, Any], term: dict[str, Any],
        trunc: dict[str, Any], infos: dict[str, Any],
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]]:
        """Play the inside opponent's moves until it is an exposed seat's turn or the end."""
        rew, term, trunc = dict(rew), dict(term), dict(trunc)
        while (
            self._inside is not None
            and self._pz.env.agents
            and not term.get("__all__")
            and self._ids.get(self._pz.env.agent_selection) is None
        ):
            seat = self._pz.env.agent_selection
            o = obs[seat]
            action = self._inside.act(
                np.asarray(o["observations"])[None], np.asarray(o["action_mask"])[None],
                self._rng,
            )
            obs, r2, t2, tr2, i2 = self._pz.step({seat: int(action[0])})
            # The learner's reward arrives with its next observation or at the end; keep
            # any reward reported to it while the inside opponent moved.
            for key, value in r2.items():
                rew[key] = rew.get(key, 0.0) + value
            term.update(t2)
            trunc.update(tr2)
            infos = i2
        return obs, rew, term, trunc, infos

    def _rename(self, d: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for seat, value in d.items():
            module_id = self._ids.get(seat)
            if module_id is not None:
                out[module_id] = value
        return out

