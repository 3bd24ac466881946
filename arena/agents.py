"""Agents built from spec strings, and the open registry that parses them.

A spec is ``kind`` or ``kind:argument`` (``random``, ``alphabeta:4``, ``mcts:200``,
``sb3:runs/ppo.zip``) or a path that a registered loader recognises (a student
checkpoint directory). ``arena`` registers its own kinds here; the kinds of the layers
above it (``mcts``, ``sb3``, checkpoint paths) are declared as entry points, Python's
plugin mechanism, so ``arena`` never imports them and every spec works whatever the
caller imported first:

- group ``tlm.agents``: the entry point's name is the spec kind, its object a function
  of no arguments that registers the kind with :func:`register_agent` (or a module
  that does so when imported);
- group ``tlm.agent_loaders``: the object is a loader ``(spec, game) -> Agent | None``
  for specs recognised by their shape rather than a kind (a checkpoint directory).

:func:`make_agent` loads a kind's entry point the first time a spec names a kind it
does not know, and the loaders the first time no kind matches; any installed package
can add kinds the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points

import numpy as np

from arena.core import Agent, PolicyAgent, State, TlmError, uniform_legal
from arena.games import Game, get_game

AgentFactory = Callable[[str | None, Game], Agent]
"""Builds an agent from the spec's argument (``None`` when absent) for a game."""

AgentLoader = Callable[[str, Game], Agent | None]
"""Builds an agent from a whole spec it recognises, or returns ``None``."""


@dataclass(frozen=True)
class AgentKind:
    """A registered spec kind."""

    kind: str
    factory: AgentFactory
    usage: str
    games: tuple[str, ...] | None = None
    needs_argument: bool = False


AGENT_GROUP = "tlm.agents"
"""Entry-point group of spec kinds: name = kind, object = a function that registers it."""

LOADER_GROUP = "tlm.agent_loaders"
"""Entry-point group of loaders ``(spec, game) -> Agent | None`` for specs without a kind."""

_KINDS: dict[str, AgentKind] = {}
_LOADERS: list[AgentLoader] = []
_LOADED_GROUPS: set[str] = set()


def register_agent(
    kind: str,
    factory: AgentFactory,
    usage: str,
    games: tuple[str, ...] | None = None,
    needs_argument: bool = False,
) -> None:
    """Make ``kind`` (and ``kind:ARG``) a valid spec.

    Args:
        kind: the word before the colon.
        factory: ``factory(argument, game) -> Agent``.
        usage: how to write it, shown in errors and help (``alphabeta:D``).
        games: the games it plays, or ``None`` for any.
        needs_argument: whether ``kind`` alone is an error.
    """
    _KINDS[kind] = AgentKind(kind, factory, usage, games, needs_argument)


def register_loader(loader: AgentLoader) -> None:
    """Add a loader tried on specs that name no registered kind (paths, typically)."""
    if loader not in _LOADERS:
        _LOADERS.append(loader)


def _load_entry_point(ep: EntryPoint, group: str) -> object:
    try:
        return ep.load()
    except ImportError as error:
        # A broken or half-installed plugin is the environment's problem, not a bug here.
        raise TlmError(f"agent plugin {ep.name!r} ({group}: {ep.value}) cannot be imported: "
                       f"{error}") from None


def _find_kind(kind: str) -> AgentKind | None:
    """The registered kind, after loading its entry point if it has one and is not in yet."""
    entry = _KINDS.get(kind)
    if entry is not None:
        return entry
    for ep in entry_points(group=AGENT_GROUP, name=kind):
        registrar = _load_entry_point(ep, AGENT_GROUP)
        if callable(registrar):
            registrar()
    return _KINDS.get(kind)


def _loaders() -> list[AgentLoader]:
    """The registered loaders, those declared as entry points included."""
    if LOADER_GROUP not in _LOADED_GROUPS:
        for ep in entry_points(group=LOADER_GROUP):
            loader = _load_entry_point(ep, LOADER_GROUP)
            if callable(loader):
                register_loader(loader)
        _LOADED_GROUPS.add(LOADER_GROUP)
    return _LOADERS


def load_agent_plugins() -> None:
    """Register every kind declared in the ``tlm.agents`` entry-point group now."""
    if AGENT_GROUP in _LOADED_GROUPS:
        return
    for ep in entry_points(group=AGENT_GROUP):
        _find_kind(ep.name)
    _LOADED_GROUPS.add(AGENT_GROUP)


def agent_usages() -> list[str]:
    """How each kind is written (entry-point kinds included), for help texts and errors."""
    load_agent_plugins()
    return [k.usage for k in _KINDS.values()]


def make_agent(spec: str, game: str | Game) -> Agent:
    """Build the agent that ``spec`` names, for ``game``.

    Raises:
        TlmError: unknown spec, bad argument, or an agent that cannot play ``game``.
    """
    g = get_game(game)
    spec = spec.strip()
    if not spec:
        raise TlmError("empty agent spec")
    kind, sep, arg = spec.partition(":")
    entry = _find_kind(kind)
    if entry is not None:
        if entry.games is not None and g.name not in entry.games:
            raise TlmError(
                f"agent {spec!r} plays only {', '.join(entry.games)}, not {g.name}"
            )
        if entry.needs_argument and not arg:
            raise TlmError(f"agent {spec!r} needs an argument: {entry.usage}")
        if not entry.needs_argument and sep and not arg:
            raise TlmError(f"agent {spec!r}: empty argument after ':' ({entry.usage})")
        agent = entry.factory(arg if sep else None, g)
        agent.name = spec
        return agent
    for loader in _loaders():
        agent_or_none = loader(spec, g)
        if agent_or_none is not None:
            agent_or_none.name = spec
            return agent_or_none
    known = ", ".join(agent_usages())
    raise TlmError(f"unknown agent spec {spec!r} (known: {known}, or a checkpoint path)")


def parse_int_argument(
    spec_arg: str | None, usage: str, default: int | None = None, maximum: int | None = None
) -> int:
    """The positive integer after the colon of a spec such as ``alphabeta:4``.

    Args:
        spec_arg: the text after the colon (``None`` when there is none).
        usage: how the spec is written, for errors.
        default: the value when there is no argument (``None``: the argument is required).
        maximum: the largest value accepted, if any.

    Raises:
        TlmError: missing, not an integer, not positive, or above ``maximum``.
    """
    if spec_arg is None:
        if default is None:
            raise TlmError(f"missing number in agent spec ({usage})")
        return default
    try:
        value = int(spec_arg)
    except ValueError:
        raise TlmError(f"expected a number in agent spec, got {spec_arg!r} ({usage})") from None
    if value <= 0:
        raise TlmError(f"the number in agent spec must be positive, got {value} ({usage})")
    if maximum is not None and value > maximum:
        raise TlmError(f"the number in agent spec must be at most {maximum:,}, got {value} "
                       f"({usage})")
    return value


class RandomAgent(PolicyAgent):
    """Uniform over the legal actions."""

    name = "random"
    uses_observation = False  # it needs only the mask, so matches skip building observations

    def policy(self, obs: np.ndarray, mask: np.ndarray, state: State | None = None) -> np.ndarray:
        m = mask.astype(np.float64)
        return m / np.maximum(m.sum(axis=1, keepdims=True), 1.0)

    def act(
        self,
        obs: np.ndarray,
        mask: np.ndarray,
        rng: np.random.Generator,
        state: State | None = None,
    ) -> np.ndarray:
        return uniform_legal(mask, rng)


def _no_argument(kind: str, factory: Callable[[Game], Agent]) -> AgentFactory:
    def build(arg: str | None, game: Game) -> Agent:
        if arg is not None:
            raise TlmError(f"agent {kind!r} takes no argument, got {kind}:{arg}")
        return factory(game)

    return build


register_agent("random", _no_argument("random", lambda game: RandomAgent()), "random")
