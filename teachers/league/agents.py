"""``league:DIR/NAME``: a league member as an agent spec, so it plays in ``tlm eval``.

The spec opens the league in ``DIR`` read-only (safe while the league runs), checks
that member ``NAME`` plays the requested game, re-hashes a frozen member's checkpoint
(a snapshot or reference whose files changed is refused; a learner is not frozen and
loads as it is now), and builds the member from the spec stored with it. Paths in a
stored spec may be relative to the league directory (or written ``{league}/...``), so
a league directory can be moved and its members loaded from anywhere.
"""

from __future__ import annotations

from arena.agents import make_agent, register_agent
from arena.core import Agent, TlmError
from arena.games import Game
from teachers.league.store import LeagueStore, resolve_spec

USAGE = "league:DIR/NAME"
"""How the spec is written."""


def league_agent(argument: str | None, game: Game) -> Agent:
    """Build the league member named by ``DIR/NAME`` for ``game``.

    Raises:
        TlmError: a malformed argument, no league in DIR, no member NAME, a member of
            another game, or a frozen checkpoint that changed.
    """
    directory, sep, name = (argument or "").rpartition("/")
    if not sep or not directory or not name:
        raise TlmError(f"agent spec needs a league directory and a member name: {USAGE}")
    with LeagueStore.open(directory, readonly=True) as store:
        if store.game != game.name:
            raise TlmError(
                f"league agent {name!r} in {store.directory} plays {store.game}, not {game.name}"
            )
        record = store.verify(name) if store.agent(name).role != "learner" \
            else store.agent(name)
        spec = resolve_spec(store, record.spec)
    if spec.startswith("league:") and spec[len("league:"):].rstrip("/") == argument:
        raise TlmError(f"league agent {name!r} is stored as itself ({spec!r})")
    return make_agent(spec, game)


def register() -> None:
    """Register the ``league`` spec kind (also the ``tlm.agents`` entry point's object)."""
    register_agent("league", league_agent, USAGE, needs_argument=True)


register()
