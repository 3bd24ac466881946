"""What a running league reports: a view after every event, and how a run ended.

The loop (:func:`teachers.league.loop.run_league`) calls its ``progress`` callback
with a :class:`LeagueProgress` after every training, rating match and round, and
returns a :class:`LeagueOutcome`; ``tlm league run`` shows the first as a live table
and the second as its last line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from arena.ratings import Rating


@dataclass
class LeagueProgress:
    """What the loop reports to a view after each event.

    Attributes:
        round: the round being played (0-based).
        phase: ``train``, ``match``, ``commit`` or ``done``.
        message: the event, for people.
        ratings: the latest committed ratings.
        learner_steps: learner moves trained, per learner.
        learner_scores: the last training score per learner.
        rating_games: rating games played in this run.
        match_seconds: seconds spent in rating matches in this run.
        games: training and rating games over the league's life.
        rounds_done: rounds finished in this run.
    """

    round: int = 0
    phase: str = "start"
    message: str = ""
    ratings: dict[str, Rating] = field(default_factory=dict)
    learner_steps: dict[str, int] = field(default_factory=dict)
    learner_scores: dict[str, float] = field(default_factory=dict)
    rating_games: int = 0
    match_seconds: float = 0.0
    games: int = 0
    rounds_done: int = 0

    @property
    def games_per_second(self) -> float:
        """Rating games per second of match play in this run."""
        return self.rating_games / self.match_seconds if self.match_seconds > 0 else 0.0


@dataclass
class LeagueOutcome:
    """How :func:`teachers.league.loop.run_league` ended.

    Attributes:
        rounds: rounds finished in the league's life.
        rounds_this_run: rounds finished by this call.
        stopped_by: ``max_rounds`` / ``max_games`` / ``max_minutes``, or ``signal``.
        signum: the signal that stopped it, if any.
        ratings: the final ratings.
        timing: seconds per part of this run: ``train``, ``match`` (playing rating
            matches), ``rating_phase`` (the rating matches with their store writes and
            the loading of snapshots), ``load`` (loading snapshots),
            ``checkpoint``, ``bookkeeping`` (store, ratings, matchmaking) and ``total``.
        rating_games: rating games played in this run.
    """

    rounds: int
    rounds_this_run: int
    stopped_by: str
    signum: int | None
    ratings: dict[str, Rating]
    timing: dict[str, float]
    rating_games: int = 0


Progress = Callable[[LeagueProgress], None]
