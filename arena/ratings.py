"""Ratings recomputed from a log of matches: Elo, openskill, the payoff matrix.

A :class:`MatchRecord` is one match between two agents, from the first one's point
of view, seat by seat; a log of them is what every rating here is fitted to. A
league's store keeps one (:mod:`teachers.league.store`), and so do the evaluation
panel (:mod:`arena.panel`) and expert iteration (:mod:`distill.iterate`), which rate
their players with the same fit.

Elo is fitted by maximum likelihood under the Bradley–Terry model,
``P(i beats j) = 1 / (1 + 10 ** ((elo_j - elo_i) / 400))``, with draws counted as half a
win and half a loss, and one weak Gaussian prior per agent (mean 0, standard deviation
:data:`PRIOR_SD_ELO`) so that every estimate stays finite: an agent that won every
game, or a group that never met the anchor, gets a large but finite rating and a wide
interval instead of an infinite one. The prior weighs as much as about a tenth of one
even game, so it changes nothing where agents have played.

The log is first aggregated into per-pair totals (points and games), so a fit costs
the same for ten matches or ten thousand between the same agents, and the optimizer
(``scipy.optimize.minimize``, Newton-CG with the exact gradient and Hessian) works on
``n_agents - 1`` numbers. Seats are not modelled: leagues play both seats equally
often, which cancels the first-move advantage.

Ratings are anchored: the anchor agent (``random`` by default) is fixed at 0 and every
other rating, and its interval, is relative to it, so a league cannot inflate itself
by self-play.

openskill's Plackett–Luce model runs alongside (:func:`openskill_ratings`) as an
online, order-dependent second opinion.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from arena.core import TlmError

ELO_SCALE = 400.0 / math.log(10.0)
"""Elo points per unit of log-odds (≈ 173.7)."""

PRIOR_SD_ELO = 1000.0
"""Standard deviation of every agent's Gaussian prior, in Elo, centred on the anchor."""

Z95 = 1.959963984540054
"""Two-sided 95% quantile of the standard normal."""


@dataclass(frozen=True)
class MatchRecord:
    """A match between agents A and B, from A's point of view.

    Attributes:
        key: unique in the league; recording the same key twice is a no-op, so a
            resumed league never counts a match twice.
        round: the loop's round the match belongs to.
        agent_a: name of agent A.
        agent_b: name of agent B.
        seed: the seed the match was played with.
        games: games played (the sum of both seat triples).
        a_first: (wins, draws, losses) of A in the games where A moved first.
        a_second: the same where A moved second.
        created: Unix time it was recorded (set by the store when 0).
        id: position in the log (set by the store).
    """

    key: str
    round: int
    agent_a: str
    agent_b: str
    seed: int
    games: int
    a_first: tuple[int, int, int]
    a_second: tuple[int, int, int]
    created: float = 0.0
    id: int | None = None

    @property
    def wins(self) -> int:
        """A's wins in both seats."""
        return self.a_first[0] + self.a_second[0]

    @property
    def draws(self) -> int:
        """Draws in both seats."""
        return self.a_first[1] + self.a_second[1]

    @property
    def losses(self) -> int:
        """A's losses in both seats."""
        return self.a_first[2] + self.a_second[2]

    @property
    def points(self) -> float:
        """A's points: a win counts 1, a draw 0.5."""
        return self.wins + 0.5 * self.draws

    @property
    def score(self) -> float:
        """A's mean score per game (win 1, draw 0.5), 0 for an empty match."""
        return self.points / self.games if self.games else 0.0


@dataclass(frozen=True)
class Rating:
    """An agent's Elo with its 95% interval.

    Attributes:
        name: the agent.
        elo: maximum a posteriori Elo, relative to the anchor (which is 0).
        lo: lower end of the 95% interval.
        hi: upper end of the 95% interval.
        games: games the agent played in the log.
    """

    name: str
    elo: float
    lo: float
    hi: float
    games: int


@dataclass(frozen=True)
class PairTotals:
    """A match log aggregated per ordered pair of agents.

    Attributes:
        names: agents in order of first appearance in the log (then any extra names).
        points: ``points[i, j]`` = points of ``i`` against ``j`` (win 1, draw 0.5).
        games: ``games[i, j]`` = games between ``i`` and ``j`` (symmetric).
    """

    names: list[str]
    points: np.ndarray
    games: np.ndarray


def pair_totals(matches: Iterable[MatchRecord], names: Sequence[str] = ()) -> PairTotals:
    """Aggregate a match log into points and games for every pair.

    Args:
        matches: the log (any order).
        names: agents to include even if they played no game (listed first, in order).

    Returns:
        the totals; an agent's games against itself sit on the diagonal (half points).
    """
    index: dict[str, int] = {}
    for n in names:
        index.setdefault(n, len(index))
    rows: list[tuple[int, int, float, int]] = []
    for m in matches:
        a = index.setdefault(m.agent_a, len(index))
        b = index.setdefault(m.agent_b, len(index))
        rows.append((a, b, m.points, m.games))
    k = len(index)
    points = np.zeros((k, k))
    games = np.zeros((k, k), dtype=np.int64)
    if rows:
        arr = np.array(rows, dtype=np.float64)
        a_idx = arr[:, 0].astype(np.int64)
        b_idx = arr[:, 1].astype(np.int64)
        np.add.at(points, (a_idx, b_idx), arr[:, 2])
        np.add.at(points, (b_idx, a_idx), arr[:, 3] - arr[:, 2])
        np.add.at(games, (a_idx, b_idx), arr[:, 3].astype(np.int64))
        np.add.at(games, (b_idx, a_idx), arr[:, 3].astype(np.int64))
    # A self-match was added twice above (a, a); count its games once.
    diag = np.diag_indices(k)
    games[diag] //= 2
    points[diag] /= 2
    return PairTotals(list(index), points, games)


def payoff_matrix(
    matches: Iterable[MatchRecord], names: Sequence[str] = ()
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Who beats whom: mean score and games for every pair.

    Args:
        matches: the log.
        names: agents to include even without games (listed first).

    Returns:
        ``(names, score, games)``: ``score[i, j]`` is ``i``'s mean score against ``j``
        (win 1, draw 0.5; NaN where they never met), so ``score[i, j] + score[j, i] = 1``;
        ``games[i, j]`` is how many games they played (symmetric).
    """
    totals = pair_totals(matches, names)
    with np.errstate(invalid="ignore", divide="ignore"):
        score = np.where(totals.games > 0, totals.points / np.maximum(totals.games, 1), np.nan)
    return totals.names, score, totals.games


def _pairs(totals: PairTotals) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Unordered pairs i < j that played: (i, j, points of i, games)."""
    iu, ju = np.triu_indices(len(totals.names), k=1)
    g = totals.games[iu, ju]
    keep = g > 0
    return iu[keep], ju[keep], totals.points[iu, ju][keep], g[keep].astype(np.float64)


def fit_elo(
    totals: PairTotals,
    anchor: int,
    prior_sd: float = PRIOR_SD_ELO,
    start: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Bradley–Terry maximum a posteriori Elo from aggregated totals.

    Args:
        totals: see :func:`pair_totals`.
        anchor: index of the agent fixed at 0.
        prior_sd: the Gaussian prior's standard deviation, in Elo.
        start: Elo values to start from (a previous fit), else zeros.

    Returns:
        ``(elo, sd)`` per agent: ratings relative to the anchor, and their standard
        errors from the observed information (the inverse Hessian of the negative log
        posterior at the optimum, the anchor's row and column removed); the anchor's
        sd is 0.
    """
    from scipy.optimize import minimize  # imported here: ``import arena`` stays light

    k = len(totals.names)
    elo = np.zeros(k)
    sd = np.zeros(k)
    if k <= 1:
        return elo, sd
    i, j, s, n = _pairs(totals)
    free = np.array([a for a in range(k) if a != anchor])
    prec = (ELO_SCALE / prior_sd) ** 2  # prior precision in log-odds units

    def full(x: np.ndarray) -> np.ndarray:
        theta = np.zeros(k)
        theta[free] = x
        return theta

    def objective(x: np.ndarray) -> tuple[float, np.ndarray]:
        theta = full(x)
        d = theta[i] - theta[j]
        # -log p = log(1 + e^-d), -log(1 - p) = log(1 + e^d), computed stably.
        nll = float(np.sum(s * np.logaddexp(0.0, -d) + (n - s) * np.logaddexp(0.0, d)))
        nll += 0.5 * prec * float(x @ x)
        r = n / (1.0 + np.exp(-d)) - s  # expected minus observed points of i
        g = np.zeros(k)
        np.add.at(g, i, r)
        np.add.at(g, j, -r)
        return nll, g[free] + prec * x

    def hessian(x: np.ndarray) -> np.ndarray:
        theta = full(x)
        d = theta[i] - theta[j]
        p = 1.0 / (1.0 + np.exp(-d))
        w = n * p * (1.0 - p)
        h = np.zeros((k, k))
        np.add.at(h, (i, i), w)
        np.add.at(h, (j, j), w)
        np.add.at(h, (i, j), -w)
        np.add.at(h, (j, i), -w)
        return h[np.ix_(free, free)] + prec * np.eye(k - 1)

    x0 = np.zeros(k - 1) if start is None else (np.asarray(start, float) / ELO_SCALE)[free]
    res = minimize(objective, x0, jac=True, hess=hessian, method="Newton-CG",
                   options={"xtol": 1e-10, "maxiter": 200})
    x = res.x
    cov = np.linalg.inv(hessian(x))
    elo[free] = x * ELO_SCALE
    sd[free] = np.sqrt(np.clip(np.diag(cov), 0.0, None)) * ELO_SCALE
    return elo, sd


def _anchor_index(names: list[str], anchor: str | Sequence[str]) -> int:
    candidates = [anchor] if isinstance(anchor, str) else list(anchor)
    for c in candidates:
        if c in names:
            return names.index(c)
    return 0


def elo_ratings(
    matches: Iterable[MatchRecord],
    anchor: str | Sequence[str] = "random",
    names: Sequence[str] = (),
    prior_sd: float = PRIOR_SD_ELO,
) -> dict[str, Rating]:
    """Elo of every agent in the log by Bradley–Terry maximum likelihood, with 95% intervals.

    Draws count as half wins. The intervals are Wald intervals, ``elo ± 1.96 sd`` with
    ``sd`` from the observed information (inverse Hessian of the negative log posterior
    at the optimum), relative to the anchor, whose interval is ``[0, 0]``. Counting a
    draw as half a win treats it as a coin flip, so where draws are common the
    intervals are conservative (in tests: 99% coverage with 20% draws).

    Args:
        matches: the match log.
        anchor: the agent fixed at Elo 0, or candidates in order of preference (a
            league passes ``random`` then its other references); when none of them
            played, the first agent in the log (or in ``names``) is the anchor.
        names: agents to rate even without games (they get the prior: 0 and a wide
            interval), listed first.
        prior_sd: standard deviation of the weak prior that keeps all-win agents and
            disconnected groups finite, in Elo.

    Returns:
        ratings by name, in order of first appearance.
    """
    if prior_sd <= 0:
        raise TlmError(f"Elo prior standard deviation must be positive, got {prior_sd}")
    totals = pair_totals(matches, names)
    if not totals.names:
        return {}
    elo, sd = fit_elo(totals, _anchor_index(totals.names, anchor), prior_sd)
    played = totals.games.sum(axis=1)
    return {
        n: Rating(n, float(elo[a]), float(elo[a] - Z95 * sd[a]), float(elo[a] + Z95 * sd[a]),
                  int(played[a]))
        for a, n in enumerate(totals.names)
    }


def elo_history(
    matches: Sequence[MatchRecord],
    anchor: str | Sequence[str] = "random",
    prior_sd: float = PRIOR_SD_ELO,
    at_most: int | None = None,
) -> tuple[list[int], list[str], np.ndarray]:
    """Elo refitted on the growing prefixes of the log, one fit per round.

    Each fit uses every match of that round and the rounds before it (and starts from
    the previous fit, so the whole history costs little more than one fit per round).

    Args:
        matches: the log.
        anchor: as in :func:`elo_ratings`.
        prior_sd: as in :func:`elo_ratings`.
        at_most: fit only this many rounds, evenly spaced (the last one always), to
            bound the cost on long leagues.

    Returns:
        ``(rounds, names, elo)`` with ``elo[r, a]`` the Elo of agent ``a`` after round
        ``rounds[r]``, NaN before the agent's first game.
    """
    ordered = sorted(matches, key=lambda m: (m.round, m.id or 0))
    all_names = pair_totals(ordered).names
    anchor_idx = _anchor_index(all_names, anchor)
    every_round = sorted({m.round for m in ordered})
    rounds = every_round
    if at_most is not None and len(every_round) > max(at_most, 1):
        picks = np.linspace(0, len(every_round) - 1, max(at_most, 1)).round().astype(int)
        rounds = sorted({every_round[i] for i in picks})
    out = np.full((len(rounds), len(all_names)), np.nan)
    k = len(all_names)
    points = np.zeros((k, k))
    games = np.zeros((k, k), dtype=np.int64)
    pos = {n: a for a, n in enumerate(all_names)}
    start: np.ndarray | None = None
    cursor = 0
    for r_idx, rnd in enumerate(rounds):
        while cursor < len(ordered) and ordered[cursor].round <= rnd:
            m = ordered[cursor]
            a, b = pos[m.agent_a], pos[m.agent_b]
            if a != b:
                points[a, b] += m.points
                points[b, a] += m.games - m.points
                games[a, b] += m.games
                games[b, a] += m.games
            cursor += 1
        elo, _ = fit_elo(PairTotals(all_names, points, games), anchor_idx, prior_sd, start)
        start = elo
        seen = games.sum(axis=1) > 0
        seen[anchor_idx] = True
        out[r_idx, seen] = elo[seen]
    return rounds, all_names, out


def _spread(wins: int, draws: int, losses: int) -> list[int]:
    """A match's outcomes (1 win, 0 draw, -1 loss) interleaved evenly, deterministically,
    so an online rating does not see all of a match's wins before its losses."""
    keyed: list[tuple[float, int]] = []
    for outcome, count in ((1, wins), (0, draws), (-1, losses)):
        keyed.extend(((q + 0.5) / count, outcome) for q in range(count))
    keyed.sort(key=lambda t: (t[0], -t[1]))
    return [o for _, o in keyed]


def openskill_ratings(matches: Iterable[MatchRecord]) -> dict[str, tuple[float, float]]:
    """openskill (Plackett–Luce, default parameters) over every game of the log, in order.

    Each game is one update; a match's games are interleaved evenly (wins, draws and
    losses spread through it). Unlike the Elo fit this depends on the order of the log.

    Returns:
        ``(mu, sigma)`` per agent, in order of first appearance (openskill's scale:
        25 ± 8.3 before any game).
    """
    from openskill.models import PlackettLuce

    model = PlackettLuce()
    ratings: dict[str, Any] = {}
    for m in matches:
        for name in (m.agent_a, m.agent_b):
            if name not in ratings:
                ratings[name] = model.rating(name=name)
        if m.agent_a == m.agent_b:
            continue
        ra, rb = ratings[m.agent_a], ratings[m.agent_b]
        for outcome in _spread(m.wins, m.draws, m.losses):
            ranks = [0.0, 1.0] if outcome > 0 else [1.0, 0.0] if outcome < 0 else [0.0, 0.0]
            (ra,), (rb,) = model.rate([[ra], [rb]], ranks=ranks)
        ratings[m.agent_a], ratings[m.agent_b] = ra, rb
    return {n: (float(r.mu), float(r.sigma)) for n, r in ratings.items()}
