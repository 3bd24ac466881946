"""Evaluation: an agent against fixed opponents, per seat, with honest intervals.

Scores count a win as 1 and a draw as 0.5. The 95% interval is Wilson's score
interval on that score over the games played: exact for games without draws, and a
standard, slightly conservative approximation when draws occur.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from arena.core import Agent, PolicyAgent, TlmError
from arena.games import Game, get_game
from arena.matches import MatchResult, MatchTally, Pairing, play_match_tallies
from arena.runners import Progress, Runner

Z95 = 1.959963984540054


def wilson_interval(score: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a proportion ``score`` observed over ``n`` trials."""
    if n <= 0:
        return (0.0, 1.0)
    denom = 1.0 + z * z / n
    center = (score + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(max(score * (1 - score), 0.0) / n + z * z / (4 * n * n))
    return (max(0.0, center - half), min(1.0, center + half))


@dataclass(frozen=True)
class SeriesScore:
    """The score at one game index of a series (1-based), over every series played."""

    game: int
    games: int
    score: float
    ci95: tuple[float, float]

    def as_json(self) -> dict[str, object]:
        return {"game": self.game, "games": self.games, "score": round(self.score, 6),
                "ci95": [round(self.ci95[0], 6), round(self.ci95[1], 6)]}


@dataclass(frozen=True)
class EvalRow:
    """Results against one opponent in one seat (``first``, ``second`` or ``both``).

    ``series_scores`` (on the ``both`` row of a series match) gives the score by game
    index within the series.
    """

    opponent: str
    seat: str
    games: int
    wins: int
    draws: int
    losses: int
    score: float
    ci95: tuple[float, float]
    mean_return: float
    illegal: int
    series_scores: tuple[SeriesScore, ...] = field(default=())

    def as_json(self) -> dict[str, object]:
        d = asdict(self)
        d["ci95"] = [round(self.ci95[0], 6), round(self.ci95[1], 6)]
        d["score"] = round(self.score, 6)
        d["mean_return"] = round(self.mean_return, 6)
        if self.series_scores:
            d["series_scores"] = [s.as_json() for s in self.series_scores]
        else:
            del d["series_scores"]
        return d


def series_scores(tally: MatchTally) -> tuple[SeriesScore, ...]:
    """The score by game index of a series match's counts (empty for single games)."""
    if len(tally.by_index) < 2:
        return ()
    out = []
    for j, (wins, draws, losses) in enumerate(tally.by_index.tolist()):
        n = wins + draws + losses
        score = (wins + 0.5 * draws) / n if n else 0.0
        out.append(SeriesScore(j + 1, n, score, wilson_interval(score, n)))
    return tuple(out)


def summarize(result: MatchResult | MatchTally, opponent: str) -> list[EvalRow]:
    """Rows for seat ``first``, ``second`` and ``both`` from one match (or its counts)."""
    tally = result if isinstance(result, MatchTally) else MatchTally.of(result)
    rows = []
    for label, seats in (("first", [0]), ("second", [1]), ("both", [0, 1])):
        n = int(tally.games[seats].sum())
        wins, draws = int(tally.wins[seats].sum()), int(tally.draws[seats].sum())
        losses = int(tally.losses[seats].sum())
        score = (wins + 0.5 * draws) / n if n else 0.0
        rows.append(EvalRow(
            opponent=opponent,
            seat=label,
            games=n,
            wins=wins,
            draws=draws,
            losses=losses,
            score=score,
            ci95=wilson_interval(score, n),
            mean_return=float(tally.return_a[seats].sum()) / n if n else 0.0,
            illegal=int(tally.illegal_a[seats].sum()),
            series_scores=series_scores(tally) if label == "both" else (),
        ))
    return rows


def evaluate(
    game: str | Game,
    agent: Agent,
    opponents: list[Agent],
    n_games: int,
    seed: int = 0,
    opening_plies: int = 0,
    *,
    runner: Runner | None = None,
    shard_games: int | None = None,
    progress: Progress | None = None,
    series: int = 1,
) -> list[EvalRow]:
    """Play ``agent`` against each opponent for ``n_games`` games (seats alternating).

    Each opponent's match gets its own seed derived from ``seed``, so adding an
    opponent does not change the games against the others. ``opening_plies`` random
    first moves spread deterministic players over many different games. Matches are
    counted shard by shard (:func:`arena.matches.play_match_tallies`), so memory does
    not grow with ``n_games``, and played on ``runner`` (default: this process), every
    opponent's shards in one queue, with the same results whatever the runner.

    Args:
        game: the game.
        agent: the agent evaluated (agent A of every match).
        opponents: its opponents.
        n_games: games against each opponent.
        seed: the evaluation's seed.
        opening_plies: uniformly random first plies of every game.
        runner: where the shards are played.
        shard_games: games per shard (default: the arena picks; results do not
            depend on it).
        progress: called with the number of games finished, over all opponents.
        series: play series of this many games (``n_games`` counts their games in
            all); the ``both`` rows then carry the score by game index.
    """
    g = get_game(game)
    seeds = np.random.SeedSequence(seed).generate_state(len(opponents))
    pairings = [Pairing(agent, opponent, n_games, seed=int(s), opening_plies=opening_plies,
                        series=series)
                for opponent, s in zip(opponents, seeds, strict=True)]
    # One queue for every opponent's shards, so that workers never idle between them.
    tallies = play_match_tallies(g, pairings, runner=runner, shard_games=shard_games,
                                 progress=progress)
    rows: list[EvalRow] = []
    for opponent, tally in zip(opponents, tallies, strict=True):
        rows.extend(summarize(tally, opponent.name))
    return rows


def top1_agrees(
    agent: Agent, obs: np.ndarray, mask: np.ndarray, teacher_probs: np.ndarray
) -> np.ndarray:
    """Per position, whether the agent's move is one of the teacher's most probable.

    A policy agent is judged by its most probable move; any other agent by the move it
    plays (with a fixed generator).
    """
    if isinstance(agent, PolicyAgent):
        choice = agent.policy(obs, mask).argmax(axis=1)
    else:
        choice = np.asarray(agent.act(obs, mask, np.random.default_rng(0)))
    best = teacher_probs >= teacher_probs.max(axis=1, keepdims=True) - 1e-6
    return best[np.arange(len(choice)), choice]


def top1_agreement(
    agent: Agent, obs: np.ndarray, mask: np.ndarray, teacher_probs: np.ndarray
) -> float:
    """Share of positions where the agent's move is one of the teacher's most probable
    (:func:`top1_agrees`)."""
    if len(obs) == 0:
        raise TlmError("no positions to measure agreement on")
    return float(top1_agrees(agent, obs, mask, teacher_probs).mean())
