"""Self-play leagues, the pure half: the store, matchmaking, ratings and reports.

A league is a directory with one SQLite database (:class:`LeagueStore`) holding its
agents and its match log; matchmaking picks opponents from that log, ratings are
recomputed from it, and reports read it. Nothing here trains: learners and the loop
that drives them live above ``arena`` and use this package.
"""

from arena.league.store import (
    ROLES,
    SCHEMA_VERSION,
    AgentRecord,
    LeagueStore,
    MatchRecord,
    staged_checkpoint,
    tree_sha256,
)

__all__ = [
    "ROLES",
    "SCHEMA_VERSION",
    "AgentRecord",
    "LeagueStore",
    "MatchRecord",
    "staged_checkpoint",
    "tree_sha256",
]
