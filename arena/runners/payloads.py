"""Agents as plain data, so that a worker rebuilds them once and keeps them.

Agents travel as their spec (``agent.name``), unless the layer that defines their
class registered a payload with :func:`register_payload` (students ship their
weights, teachers their labellers), so ``arena`` imports nothing above it.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from arena.core import Agent, TlmError
from arena.games import Game

PayloadDump = Callable[[Any], Any]
"""Turns an agent into plain data (numbers, strings, bytes, numpy arrays, dicts)."""

PayloadLoad = Callable[[Any, Game], Agent]
"""Rebuilds the agent from that data, for a game; a module-level function."""

_PAYLOADS: list[tuple[type, PayloadDump, PayloadLoad]] = []


def register_payload(cls: type, dump: PayloadDump, load: PayloadLoad) -> None:
    """Say how agents of class ``cls`` (and its subclasses) travel to workers.

    ``load`` must be a module-level function: it travels by reference, so a worker
    imports its module (registering that layer's agents) before it calls it.
    The latest registration for a class wins.
    """
    _PAYLOADS[:] = [entry for entry in _PAYLOADS if entry[0] is not cls]
    _PAYLOADS.insert(0, (cls, dump, load))


@dataclass(frozen=True)
class AgentPayload:
    """An agent as plain data, for a worker to rebuild once and keep.

    Attributes:
        name: the agent's name (its spec when it was built from one).
        load: rebuilds the agent from ``data``.
        data: plain data.
        module: the module defining the agent's class, imported first on the worker
            so that its layer registers its spec kinds.
    """

    name: str
    load: PayloadLoad
    data: Any
    module: str


def _load_spec(spec: Any, game: Game) -> Agent:
    from arena.agents import make_agent

    try:
        return make_agent(str(spec), game)
    except TlmError as e:
        raise TlmError(
            f"a worker cannot rebuild agent {spec!r} from its name ({e}); an agent that "
            "was not built from a spec travels only if its class registers a payload "
            "(arena.register_payload)"
        ) from None


def agent_payload(agent: Agent) -> AgentPayload:
    """``agent`` as data: its registered payload, or else its spec (``agent.name``)."""
    module = type(agent).__module__
    for cls, dump, load in _PAYLOADS:
        if isinstance(agent, cls):
            return AgentPayload(agent.name, load, dump(agent), module)
    return AgentPayload(agent.name, _load_spec, agent.name, module)


def build_agent(payload: AgentPayload, game: Game) -> Agent:
    """The agent that ``payload`` describes, for ``game``."""
    if payload.module not in ("__main__", "builtins"):
        # A spec still works if its kind is registered some other way.
        with contextlib.suppress(ImportError):
            importlib.import_module(payload.module)
    agent = payload.load(payload.data, game)
    agent.name = payload.name
    return agent
