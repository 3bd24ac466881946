"""Self-play leagues, the pure half: the store, matchmaking, ratings and reports.

A league is a directory with one SQLite database (:class:`LeagueStore`) holding its
agents and its match log; matchmaking picks opponents from that log, ratings are
recomputed from it, and reports read it. Nothing here trains: learners and the loop
that drives them live above ``arena`` and use this package.
"""

from arena.league import agents as _agents  # noqa: F401  (registers ``league:DIR/NAME``)
from arena.league.matchmaking import (
    KINDS,
    LEARNER_ROLES,
    WEIGHTINGS,
    Matchmaker,
    learner_role,
    pfsp_weights,
    win_rates,
)
from arena.league.ratings import (
    Rating,
    elo_history,
    elo_ratings,
    openskill_ratings,
    pair_totals,
    payoff_matrix,
)
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
    "KINDS",
    "LEARNER_ROLES",
    "ROLES",
    "SCHEMA_VERSION",
    "WEIGHTINGS",
    "AgentRecord",
    "LeagueStore",
    "MatchRecord",
    "Matchmaker",
    "Rating",
    "elo_history",
    "elo_ratings",
    "learner_role",
    "openskill_ratings",
    "pair_totals",
    "payoff_matrix",
    "pfsp_weights",
    "staged_checkpoint",
    "tree_sha256",
    "win_rates",
]
