"""Self-play leagues: a population of learners, their frozen snapshots and fixed
references that train against each other's picks, play rated matches and resume.

One package, one concept per module:

- :mod:`~teachers.league.config`: the league's YAML file (:class:`LeagueConfig`);
- :mod:`~teachers.league.loop`: :func:`run_league`, the rounds of training, rating
  matches and checkpoints; :mod:`~teachers.league.progress`: what it reports;
- :mod:`~teachers.league.learners`: learners built from their config, by backend;
- :mod:`~teachers.league.store`: the SQLite store of agents and matches
  (:class:`LeagueStore`);
- :mod:`~teachers.league.matchmaking`: who a learner trains against (latest, uniform,
  PFSP, AlphaStar roles);
- :mod:`~teachers.league.report`: status and report pages;
- :mod:`~teachers.league.agents`: ``league:DIR/NAME``, a member as an agent spec (an
  entry point of ``tlm.agents``).

The store, matchmaking and report are pure (they read and write the store and import
no learner); only the loop and the learner factory drive learners. Ratings are
:mod:`arena.ratings`, shared with the evaluation panel and expert iteration.
"""

from teachers.league.config import (
    DEMO_LEAGUE,
    EvaluationConfig,
    LeagueConfig,
    LearnerConfig,
    PPOConfig,
    ReferenceConfig,
    StopConfig,
    check_config,
    load_config,
    parse_config,
)
from teachers.league.loop import play_pair, run_league
from teachers.league.matchmaking import (
    KINDS,
    LEARNER_ROLES,
    WEIGHTINGS,
    Matchmaker,
    learner_role,
    pfsp_weights,
    win_rates,
)
from teachers.league.progress import LeagueOutcome, LeagueProgress, Progress
from teachers.league.report import league_status, write_report
from teachers.league.store import (
    ROLES,
    SCHEMA_VERSION,
    AgentRecord,
    LeagueStore,
    resolve_spec,
    staged_checkpoint,
    tree_sha256,
)

__all__ = [
    "DEMO_LEAGUE",
    "KINDS",
    "LEARNER_ROLES",
    "ROLES",
    "SCHEMA_VERSION",
    "WEIGHTINGS",
    "AgentRecord",
    "EvaluationConfig",
    "LeagueConfig",
    "LeagueOutcome",
    "LeagueProgress",
    "LeagueStore",
    "LearnerConfig",
    "Matchmaker",
    "PPOConfig",
    "Progress",
    "ReferenceConfig",
    "StopConfig",
    "check_config",
    "learner_role",
    "league_status",
    "load_config",
    "parse_config",
    "pfsp_weights",
    "play_pair",
    "resolve_spec",
    "run_league",
    "staged_checkpoint",
    "tree_sha256",
    "win_rates",
    "write_report",
]
