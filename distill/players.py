"""The players of a distillation round's games, and how they travel to Ray workers.

- :class:`EpsilonAgent`: any agent, each move replaced by a uniformly random legal move
  with probability ``epsilon`` (exploration of either side);
- :class:`TemperatureAgent`: a policy agent sampling its distribution at a temperature
  (the teacher playing its own games);
- :class:`MixtureAgent`: DAgger's mixture, each move the teacher's with probability
  ``beta``, else the student's.

Each is registered with :func:`arena.register_payload`: it travels as its wrapped
agents' payloads and its parameters, and every random draw it makes comes from the
generator the match hands it, so a shard plays the same moves in this process and on
any worker.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from arena import (
    Agent,
    Game,
    PolicyAgent,
    State,
    TlmError,
    max_batch,
    register_payload,
    rows_rng,
    sample_from,
    uniform_legal,
)
from arena.runners import agent_payload, build_agent
from teachers.generate import with_temperature


class EpsilonAgent(Agent):
    """Plays ``agent``'s moves, each replaced by a uniformly random legal move with
    probability ``epsilon``."""

    def __init__(self, agent: Agent, epsilon: float) -> None:
        self.agent = agent
        self.epsilon = epsilon
        self.name = agent.name if epsilon == 0 else f"{agent.name}+eps{epsilon:g}"
        self.game = agent.game
        self.needs_state = agent.needs_state
        self.uses_observation = agent.uses_observation
        self.max_batch = max_batch(agent)

    def act(
        self, obs: np.ndarray, mask: np.ndarray, rng: np.random.Generator,
        state: State | None = None,
    ) -> np.ndarray:
        actions = np.asarray(self.agent.act(obs, mask, rng, state=state)).astype(np.int64)
        if self.epsilon > 0:
            explore = np.flatnonzero(rng.random(len(actions)) < self.epsilon)
            if explore.size:
                actions[explore] = uniform_legal(mask[explore], rows_rng(rng, explore))
        return actions


class TemperatureAgent(Agent):
    """Samples a policy agent's distribution sharpened or flattened by ``temperature``
    (0: uniform over its most probable moves)."""

    def __init__(self, agent: PolicyAgent, temperature: float) -> None:
        self.agent, self.temperature = agent, temperature
        self.name = agent.name if temperature == 1 else f"{agent.name}@T{temperature:g}"
        self.game = agent.game
        self.needs_state = agent.needs_state
        self.max_batch = max_batch(agent)

    def act(
        self, obs: np.ndarray, mask: np.ndarray, rng: np.random.Generator,
        state: State | None = None,
    ) -> np.ndarray:
        probs = self.agent.policy(obs, mask, state)
        return sample_from(with_temperature(probs, self.temperature), rng)


class MixtureAgent(Agent):
    """DAgger's mixture: each move is the teacher's with probability ``beta``, else the
    student's."""

    def __init__(self, teacher: Agent, student: Agent, beta: float, game: Game) -> None:
        self.teacher, self.student, self.beta = teacher, student, beta
        self._engine = game.make_engine() if teacher.needs_state else None
        self.name = f"{student.name}+{teacher.name}@{beta:g}"
        self.game = student.game
        self.needs_state = teacher.needs_state and beta > 0
        self.max_batch = max_batch(student, teacher)

    def act(
        self, obs: np.ndarray, mask: np.ndarray, rng: np.random.Generator,
        state: State | None = None,
    ) -> np.ndarray:
        actions = np.asarray(self.student.act(obs, mask, rng)).astype(np.int64)
        if self.beta > 0:
            theirs = rng.random(len(actions)) < self.beta
            if theirs.any():
                idx = np.flatnonzero(theirs)
                sub_state = None
                if state is not None and self._engine is not None:
                    sub_state = self._engine.take(state, idx)
                actions[idx] = self.teacher.act(obs[idx], mask[idx], rows_rng(rng, idx),
                                                state=sub_state)
        return actions


def _epsilon_payload(agent: EpsilonAgent) -> dict[str, Any]:
    return {"agent": agent_payload(agent.agent), "epsilon": agent.epsilon}


def _epsilon_from_payload(data: dict[str, Any], game: Game) -> EpsilonAgent:
    return EpsilonAgent(build_agent(data["agent"], game), float(data["epsilon"]))


def _temperature_payload(agent: TemperatureAgent) -> dict[str, Any]:
    return {"agent": agent_payload(agent.agent), "temperature": agent.temperature}


def _temperature_from_payload(data: dict[str, Any], game: Game) -> TemperatureAgent:
    inner = build_agent(data["agent"], game)
    if not isinstance(inner, PolicyAgent):
        raise TlmError(f"agent {inner.name!r} gives no policy to sample at a temperature")
    return TemperatureAgent(inner, float(data["temperature"]))


def _mixture_payload(agent: MixtureAgent) -> dict[str, Any]:
    return {"teacher": agent_payload(agent.teacher), "student": agent_payload(agent.student),
            "beta": agent.beta}


def _mixture_from_payload(data: dict[str, Any], game: Game) -> MixtureAgent:
    return MixtureAgent(build_agent(data["teacher"], game), build_agent(data["student"], game),
                        float(data["beta"]), game)


register_payload(EpsilonAgent, _epsilon_payload, _epsilon_from_payload)
register_payload(TemperatureAgent, _temperature_payload, _temperature_from_payload)
register_payload(MixtureAgent, _mixture_payload, _mixture_from_payload)
