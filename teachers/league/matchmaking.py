"""Matchmaking: which league members a learner trains against next, and how often.

Three kinds, from naive to AlphaStar's:

- ``latest``: naive self-play, against the learner's own newest snapshot;
- ``uniform``: fictitious self-play, uniform over every frozen snapshot;
- ``pfsp``: prioritized fictitious self-play (Vinyals et al. 2019), over every frozen
  snapshot, each weighted by ``f(p)`` where ``p`` is the learner's score against it
  in the match log: ``hard`` ``(1 - p)^2`` (focus on those it loses to), ``variance``
  ``p (1 - p)`` (focus on even matches), ``linear`` ``1 - p``, ``uniform`` ``1``.

The learner's role in the league changes its pool, as in AlphaStar:

- ``main``: the pool above;
- ``main_exploiter``: only the main learners (live), to find their weaknesses; when it
  wins less than :data:`EXPLOITER_FALLBACK` of its games against them it plays
  their snapshots instead, ``variance``-weighted, to get a learning signal;
- ``league_exploiter``: PFSP over the whole league (every snapshot and reference).

Fixed references (``random``, ``perfect``, ``alphabeta:D``, student checkpoints, ...)
always keep ``reference_share`` of the sampling weight of ``main`` and
``league_exploiter`` learners, weighted among themselves the same way, so the league
keeps meeting the agents its ratings are anchored to. Before a learner has any
snapshot to play, it plays itself (its own name: the loop's live policy).

A learner's role in the league is read from its store record's ``info["league_role"]``
(``main`` when absent).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from arena.core import TlmError
from arena.ratings import MatchRecord
from teachers.league.store import AgentRecord, LeagueStore

KINDS = ("latest", "uniform", "pfsp")
"""Matchmaking kinds."""

WEIGHTINGS = ("hard", "variance", "linear", "uniform")
"""PFSP weightings of the learner's score ``p`` against an opponent."""

LEARNER_ROLES = ("main", "main_exploiter", "league_exploiter")
"""What a learner is for in the league (AlphaStar's agent types)."""

EXPLOITER_FALLBACK = 0.1
"""A main exploiter scoring below this against the live main learners plays their
snapshots instead (AlphaStar's threshold)."""


def pfsp_weights(p: np.ndarray, weighting: str) -> np.ndarray:
    """PFSP's (unnormalised) weight of each opponent given the learner's score ``p`` against it.

    Args:
        p: scores in [0, 1] (win 1, draw 0.5).
        weighting: ``hard`` ``(1-p)^2``, ``variance`` ``p(1-p)``, ``linear`` ``1-p`` or
            ``uniform`` (all ones).

    Raises:
        TlmError: an unknown weighting, or scores outside [0, 1].
    """
    p = np.asarray(p, dtype=np.float64)
    if p.size and (np.nanmin(p) < 0.0 or np.nanmax(p) > 1.0 or np.isnan(p).any()):
        raise TlmError(f"PFSP scores must lie in [0, 1], got {p.tolist()}")
    if weighting == "hard":
        return (1.0 - p) ** 2
    if weighting == "variance":
        return p * (1.0 - p)
    if weighting == "linear":
        return 1.0 - p
    if weighting == "uniform":
        return np.ones_like(p)
    raise TlmError(f"unknown PFSP weighting {weighting!r} (known: {', '.join(WEIGHTINGS)})")


def win_rates(
    matches: Iterable[MatchRecord],
    player: str,
    opponents: Sequence[str],
    prior: float = 0.5,
    prior_games: float = 1.0,
) -> np.ndarray:
    """``player``'s score against each opponent in the log, shrunk towards a prior.

    ``p = (points + prior * prior_games) / (games + prior_games)``, so an opponent never
    met gets ``prior`` and one game does not decide a sure win or loss.

    Args:
        matches: the log (``player`` as either agent A or B).
        player: whose score.
        opponents: against whom, in the order of the result.
        prior: the score assumed before any game.
        prior_games: how many games the prior weighs.
    """
    if not 0.0 <= prior <= 1.0 or prior_games < 0:
        raise TlmError(f"win-rate prior must be in [0, 1] with non-negative weight, "
                       f"got {prior} over {prior_games} games")
    want = {n: i for i, n in enumerate(opponents)}
    points = np.zeros(len(opponents))
    games = np.zeros(len(opponents))
    for m in matches:
        if m.agent_a == player and m.agent_b in want:
            i = want[m.agent_b]
            points[i] += m.points
            games[i] += m.games
        elif m.agent_b == player and m.agent_a in want:
            i = want[m.agent_a]
            points[i] += m.games - m.points
            games[i] += m.games
    denom = games + prior_games
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.where(denom > 0, (points + prior * prior_games) / np.where(denom > 0, denom, 1),
                     prior)
    return np.clip(p, 0.0, 1.0)


def learner_role(record: AgentRecord) -> str:
    """A learner's league role, from ``info["league_role"]`` (``main`` when absent)."""
    role = str(record.info.get("league_role", "main"))
    if role not in LEARNER_ROLES:
        raise TlmError(f"league agent {record.name!r}: unknown learner role {role!r} "
                       f"(known: {', '.join(LEARNER_ROLES)})")
    return role


class Matchmaker:
    """Picks a learner's opponents from the league, with sampling weights.

    Args:
        kind: ``latest``, ``uniform`` or ``pfsp``.
        weighting: the PFSP weighting (used by ``pfsp``, and among references).
        role: the learner's role: ``main``, ``main_exploiter`` or ``league_exploiter``
            (a league exploiter always uses PFSP).
        reference_share: the part of the weight that fixed references keep (``main``
            and ``league_exploiter``), in [0, 1]; with no other opponent they get all.
        prior: the score assumed against an opponent never met (see :func:`win_rates`).
        prior_games: how many games that prior weighs.

    Raises:
        TlmError: an unknown kind, weighting or role, or a share outside [0, 1].
    """

    def __init__(
        self,
        kind: str,
        weighting: str = "hard",
        role: str = "main",
        reference_share: float = 0.2,
        prior: float = 0.5,
        prior_games: float = 1.0,
    ) -> None:
        if kind not in KINDS:
            raise TlmError(f"unknown matchmaking {kind!r} (known: {', '.join(KINDS)})")
        if weighting not in WEIGHTINGS:
            raise TlmError(f"unknown PFSP weighting {weighting!r} (known: {', '.join(WEIGHTINGS)})")
        if role not in LEARNER_ROLES:
            raise TlmError(f"unknown learner role {role!r} (known: {', '.join(LEARNER_ROLES)})")
        if not 0.0 <= reference_share <= 1.0:
            raise TlmError(f"reference_share must be in [0, 1], got {reference_share}")
        self.kind = kind
        self.weighting = weighting
        self.role = role
        self.reference_share = reference_share
        self.prior = prior
        self.prior_games = prior_games

    def distribution(
        self,
        learner: str,
        store: LeagueStore,
        matches: Sequence[MatchRecord] | None = None,
    ) -> dict[str, float]:
        """The sampling probability of every opponent the learner may meet now.

        Args:
            learner: the learner's name in the store.
            store: the league.
            matches: the log, if the caller already read it (else read here).

        Returns:
            opponent name → probability (summing to 1), in league order.
        """
        if not store.has_agent(learner):
            raise TlmError(f"league {store.directory} has no agent {learner!r}")
        log = store.matches() if matches is None else matches
        agents = store.agents()
        snapshots = [a.name for a in agents if a.role == "snapshot"]
        references = [a.name for a in agents if a.role == "reference"]

        if self.role == "main_exploiter":
            return self._main_exploiter(learner, agents, log)

        kind = "pfsp" if self.role == "league_exploiter" else self.kind
        if kind == "latest":
            own = [a.name for a in agents if a.role == "snapshot" and a.parent == learner]
            pool = own[-1:]
            core = {n: 1.0 for n in pool}
        else:
            pool = snapshots
            core = self._weights(learner, pool, log, "uniform" if kind == "uniform" else None)
        if not pool:
            core = {learner: 1.0}  # nothing frozen yet: self-play against its live self
        refs = self._weights(learner, references, log, None if kind == "pfsp" else "uniform")
        return _mix(core, refs, self.reference_share)

    def pick(
        self,
        learner: str,
        store: LeagueStore,
        rng: np.random.Generator,
        k: int,
        matches: Sequence[MatchRecord] | None = None,
    ) -> list[tuple[str, float]]:
        """Draw up to ``k`` distinct opponents from :meth:`distribution`.

        When the pool has at most ``k`` members they are all returned; otherwise ``k``
        are drawn without replacement with ``rng``. Their weights are renormalised to
        sum to 1 and are the learner's sampling probabilities between them.

        Returns:
            ``(name, weight)`` pairs, in league order.
        """
        if k <= 0:
            raise TlmError(f"number of opponents to pick must be positive, got {k}")
        dist = self.distribution(learner, store, matches)
        names = list(dist)
        probs = np.array([dist[n] for n in names])
        if len(names) > k:
            nonzero = int(np.count_nonzero(probs))
            chosen = set(rng.choice(len(names), size=min(k, nonzero), replace=False,
                                    p=probs).tolist())
            names = [n for i, n in enumerate(names) if i in chosen]
            probs = np.array([dist[n] for n in names])
        probs = probs / probs.sum()
        return [(n, float(w)) for n, w in zip(names, probs, strict=True)]

    def _weights(
        self, learner: str, pool: list[str], log: Sequence[MatchRecord], weighting: str | None
    ) -> dict[str, float]:
        """Normalised weights over ``pool`` (empty pool: empty dict). When every
        weight is zero (sure wins under ``hard``) the pool is weighted uniformly."""
        if not pool:
            return {}
        w = pfsp_weights(
            win_rates(log, learner, pool, self.prior, self.prior_games),
            weighting or self.weighting,
        )
        total = float(w.sum())
        if total <= 0.0:
            w = np.ones(len(pool))
            total = float(len(pool))
        return {n: float(x) / total for n, x in zip(pool, w, strict=True)}

    def _main_exploiter(
        self, learner: str, agents: list[AgentRecord], log: Sequence[MatchRecord]
    ) -> dict[str, float]:
        mains = [a.name for a in agents
                 if a.role == "learner" and a.name != learner and learner_role(a) == "main"]
        if not mains:
            raise TlmError(f"main exploiter {learner!r} needs a main learner in the league")
        p_live = win_rates(log, learner, mains, self.prior, self.prior_games)
        if float(p_live.mean()) >= EXPLOITER_FALLBACK:
            return {n: 1.0 / len(mains) for n in mains}
        snaps = [a.name for a in agents if a.role == "snapshot" and a.parent in mains]
        if not snaps:
            return {n: 1.0 / len(mains) for n in mains}
        return self._weights(learner, snaps, log, "variance")


def _mix(core: dict[str, float], refs: dict[str, float], share: float) -> dict[str, float]:
    """``(1 - share)`` of the weight on ``core`` and ``share`` on ``refs`` (all of it on
    whichever is non-empty when the other is empty)."""
    if not refs:
        return dict(core)
    if not core:
        return dict(refs)
    out = {n: (1.0 - share) * w for n, w in core.items()}
    for n, w in refs.items():
        out[n] = out.get(n, 0.0) + share * w
    return {n: w for n, w in out.items() if w > 0.0} or dict(core)
