"""Matches: many games between two agents at once, seats swapped, inference batched.

:func:`play_matches` is how tlm plays games. Evaluation, leagues, game generation and
on-policy distillation all go through it, the latter two by passing an ``observer``
that sees every decision as it is made.

A match is cut into shards of a fixed number of games (:class:`arena.runners.ShardPlan`),
each played all at once by the game loop (:func:`arena.game_loop.play_shard`) on a
runner: in this process by default, or on Ray workers, with the same result either way.
:func:`play_match_tally` counts the shards as they finish, in memory that does not grow
with the number of games; :func:`play_matches_many` and :func:`play_match_tallies` put
the shards of many matches in one queue.

A match may be a *series*: ``series=K`` groups its games K by K, each group the same
two agents' K consecutive games (seats alternating), with the memory of an agent that
has one (:attr:`arena.Agent.recurrent`) carried from each game of a series to the next
and fresh for the next series. The series of a shard are played in lockstep, game 1 of
all of them, then game 2, ...; a shard holds whole series, so a series is the same in
any shard. Game ``j`` of series ``s`` is game ``s * K + j`` of the match: its streams,
and its place in the results.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from arena.core import Agent, TlmError
from arena.game_loop import Decision, MatchResult, Observer, play_shard
from arena.games import Game, get_game
from arena.runners import (
    AgentPayload,
    Job,
    LocalRunner,
    Progress,
    Runner,
    Shard,
    ShardPlan,
    agent_payload,
    auto_shard_games,
    build_agent,
)

__all__ = [
    "MAX_RESULT_GAMES",
    "Decision",
    "MatchResult",
    "MatchTally",
    "Observer",
    "Pairing",
    "max_batch",
    "min_shard_games",
    "play_match_tallies",
    "play_match_tally",
    "play_matches",
    "play_matches_many",
]


def _smallest(agents: tuple[Agent, ...], attribute: str) -> int | None:
    """The smallest value the ``agents`` give ``attribute``, if any of them says."""
    values = [v for a in agents if (v := getattr(a, attribute, None))]
    return min(values) if values else None


def max_batch(*agents: Agent) -> int | None:
    """The most games the ``agents`` play at once (the smallest ``max_batch``), if any
    of them says."""
    return _smallest(agents, "max_batch")


def min_shard_games(*agents: Agent) -> int | None:
    """The smallest shard worth a Ray task for the ``agents``' games (the smallest
    ``min_shard_games``), if any of them says."""
    return _smallest(agents, "min_shard_games")


def _check_agent(agent: Agent, game: Game) -> None:
    if agent.game is not None and agent.game != game.name:
        raise TlmError(f"agent {agent.name!r} plays {agent.game}, not {game.name}")
    if agent.needs_state and not game.has_engine:
        raise TlmError(
            f"agent {agent.name!r} searches and needs a game with an engine, not {game.name}"
        )


@dataclass
class MatchTally:
    """The counts of a match, by agent A's seat (index 0: A moved first, 1: second).

    What evaluation needs, in memory that does not grow with the number of games.

    Attributes:
        game: the game's name.
        agents: the names of agents A and B.
        games: ``[2]`` games played.
        wins: ``[2]`` games A won (higher return than B).
        draws: ``[2]`` games with equal returns.
        losses: ``[2]`` games A lost.
        return_a: ``[2]`` the sum of A's returns.
        illegal_a: ``[2]`` games A lost by an illegal action.
        moves: total moves played.
        by_index: ``[K, 3]`` A's wins, draws and losses at each game index of its series
            (``K = 1`` for a match of single games).
    """

    game: str
    agents: tuple[str, str]
    games: np.ndarray
    wins: np.ndarray
    draws: np.ndarray
    losses: np.ndarray
    return_a: np.ndarray
    illegal_a: np.ndarray
    moves: int = 0
    by_index: np.ndarray = field(default_factory=lambda: np.zeros((1, 3), dtype=np.int64))

    @classmethod
    def of(cls, result: MatchResult, series: int = 1) -> MatchTally:
        """The counts of a :class:`MatchResult` (of series of ``series`` games)."""
        outcome = result.outcome
        seat = result.seat_a.astype(np.intp)
        index = np.arange(result.n_games) % series
        by_index = np.stack([np.bincount(index, weights=flags, minlength=series)
                             for flags in (outcome > 0, outcome == 0, outcome < 0)],
                            axis=1).astype(np.int64)

        def per_seat(flags: np.ndarray) -> np.ndarray:
            return np.bincount(seat, weights=flags, minlength=2)[:2].astype(np.int64)

        return cls(
            game=result.game,
            agents=result.agents,
            games=np.bincount(seat, minlength=2)[:2].astype(np.int64),
            wins=per_seat(outcome > 0),
            draws=per_seat(outcome == 0),
            losses=per_seat(outcome < 0),
            return_a=np.array([result.returns[seat == s, 0].sum() for s in (0, 1)]),
            illegal_a=per_seat(result.illegal == 0),
            moves=int(result.length.sum()),
            by_index=by_index,
        )

    def __add__(self, other: MatchTally) -> MatchTally:
        return MatchTally(
            game=self.game,
            agents=self.agents,
            games=self.games + other.games,
            wins=self.wins + other.wins,
            draws=self.draws + other.draws,
            losses=self.losses + other.losses,
            return_a=self.return_a + other.return_a,
            illegal_a=self.illegal_a + other.illegal_a,
            moves=self.moves + other.moves,
            by_index=self.by_index + other.by_index,
        )

    @property
    def n_games(self) -> int:
        return int(self.games.sum())


MAX_SERIES = 1000
"""The most games in one series."""

MAX_RESULT_GAMES = 20_000_000
"""The most games :func:`play_matches` returns one by one (about 40 bytes a game);
:func:`play_match_tally` counts any number in constant memory."""


@dataclass(frozen=True)
class _MatchOptions:
    record: bool
    strict: bool
    opening_plies: int
    series: int = 1


@dataclass
class _MatchContext:
    game: Game
    agent_a: Agent
    agent_b: Agent
    options: _MatchOptions
    observer: Observer | None = None


def _match_payload(
    ctx: _MatchContext,
) -> tuple[str, AgentPayload, AgentPayload | None, _MatchOptions]:
    same = ctx.agent_b is ctx.agent_a
    return (ctx.game.name, agent_payload(ctx.agent_a),
            None if same else agent_payload(ctx.agent_b), ctx.options)


def _match_setup(
    payload: tuple[str, AgentPayload, AgentPayload | None, _MatchOptions],
) -> _MatchContext:
    name, pa, pb, options = payload
    g = get_game(name)
    a = build_agent(pa, g)
    b = a if pb is None else build_agent(pb, g)
    return _MatchContext(g, a, b, options)


def _shard_result(ctx: _MatchContext, shard: Shard) -> MatchResult:
    if ctx.options.series > 1:
        return _series_result(ctx, shard)
    observer = ctx.observer
    if observer is not None and shard.start:
        inner, offset = observer, shard.start

        def observer(d: Decision) -> None:
            inner(Decision(games=d.games + offset, player=d.player, seat=d.seat, ply=d.ply,
                           obs=d.obs, mask=d.mask, actions=d.actions))

    o = ctx.options
    return play_shard(
        ctx.game, ctx.agent_a, ctx.agent_b, shard.n_games, shard.seed,
        first_game=shard.first_game, record=o.record, strict=o.strict, observer=observer,
        first_seat=shard.first_seat, opening_plies=o.opening_plies,
    )


def _series_result(ctx: _MatchContext, shard: Shard) -> MatchResult:
    """The shard's series (``shard`` counts series), game 1 of all of them, then 2, ...;
    the games in match order (series by series)."""
    o, k, n = ctx.options, ctx.options.series, shard.n_games
    agents = (ctx.agent_a, ctx.agent_b)
    memories = [a.initial_memory(n) if a.recurrent else None for a in agents]
    series_ids = shard.first_game + np.arange(n, dtype=np.int64)
    parts: list[MatchResult] = []
    for j in range(k):
        seen = (None if ctx.observer is None
                else _series_observer(ctx.observer, shard.start, k, j))
        parts.append(play_shard(
            ctx.game, ctx.agent_a, ctx.agent_b, n, shard.seed, game_ids=series_ids * k + j,
            record=o.record, strict=o.strict, observer=seen,
            first_seat=(shard.first_seat + j) % 2, opening_plies=o.opening_plies,
            memories=memories,
        ))
    return _interleave(parts)


def _series_observer(inner: Observer, first_series: int, k: int, j: int) -> Observer:
    """``inner``, told the match's index of each game ``j`` of the shard's series."""

    def seen(d: Decision) -> None:
        inner(Decision(games=(d.games + first_series) * k + j, player=d.player, seat=d.seat,
                       ply=d.ply, obs=d.obs, mask=d.mask, actions=d.actions))

    return seen


def _interleave(parts: list[MatchResult]) -> MatchResult:
    """Results of game index ``j`` of each series (``parts[j]``) in match order."""
    k, n = len(parts), parts[0].n_games

    def merged(name: str) -> np.ndarray:
        stacked = np.stack([getattr(p, name) for p in parts], axis=1)
        return stacked.reshape(n * k, *stacked.shape[2:])

    order = [(s, j) for s in range(n) for j in range(k)]
    records = None
    if parts[0].records is not None:
        records = [(parts[j].records or [])[s] for s, j in order]
    return MatchResult(
        game=parts[0].game, agents=parts[0].agents, seat_a=merged("seat_a"),
        returns=merged("returns"), length=merged("length"), illegal=merged("illegal"),
        reasons=[parts[j].reasons[s] for s, j in order], records=records,
    )


def _shard_tally(ctx: _MatchContext, shard: Shard) -> MatchTally:
    return MatchTally.of(_shard_result(ctx, shard), ctx.options.series)


def _match_job(
    game: str | Game,
    agent_a: Agent,
    agent_b: Agent,
    n_games: int,
    seed: int | np.random.SeedSequence | None,
    *,
    record: bool,
    strict: bool,
    observer: Observer | None,
    first_seat: int,
    opening_plies: int,
    shard_games: int | None,
    runner: Runner | None,
    tally: bool,
    first_game: int = 0,
    series: int = 1,
) -> tuple[Job, ShardPlan]:
    g = get_game(game)
    if not 1 <= series <= MAX_SERIES:
        raise TlmError(f"a series has 1..{MAX_SERIES} games, got {series}")
    if n_games % series or first_game % series:
        raise TlmError(f"{n_games} games do not make whole series of {series} games")
    # A series plan counts series: a shard holds whole series.
    n_units = n_games // series
    if shard_games is None:
        units = auto_shard_games(n_units, runner, max_batch(agent_a, agent_b),
                                 min_shard_games(agent_a, agent_b))
    else:
        units = max(1, shard_games // series)
    plan = ShardPlan.make(n_units, seed, units, first_seat, first_game // series)
    if opening_plies < 0:
        raise TlmError(f"opening plies must be >= 0, got {opening_plies}")
    for agent in (agent_a, agent_b):
        _check_agent(agent, g)
    if observer is not None and runner is not None and not isinstance(runner, LocalRunner):
        raise TlmError("an observer sees decisions in this process: play with the local runner")
    ctx = _MatchContext(g, agent_a, agent_b,
                        _MatchOptions(record, strict, opening_plies, series), observer)
    job = Job(work=_shard_tally if tally else _shard_result, context=ctx,
              payload=lambda: _match_payload(ctx), setup=_match_setup)
    return job, plan


def _concat(parts: list[MatchResult], record: bool) -> MatchResult:
    if len(parts) == 1:
        return parts[0]
    records: list[np.ndarray] | None = None
    if record:
        records = [r for p in parts for r in (p.records or [])]
    return MatchResult(
        game=parts[0].game,
        agents=parts[0].agents,
        seat_a=np.concatenate([p.seat_a for p in parts]),
        returns=np.concatenate([p.returns for p in parts]),
        length=np.concatenate([p.length for p in parts]),
        illegal=np.concatenate([p.illegal for p in parts]),
        reasons=[r for p in parts for r in p.reasons],
        records=records,
    )


def play_matches(
    game: str | Game,
    agent_a: Agent,
    agent_b: Agent,
    n_games: int,
    seed: int | np.random.SeedSequence | None = 0,
    *,
    record: bool = False,
    strict: bool = False,
    observer: Observer | None = None,
    first_seat: int = 0,
    opening_plies: int = 0,
    runner: Runner | None = None,
    shard_games: int | None = None,
    progress: Progress | None = None,
    first_game: int = 0,
    series: int = 1,
) -> MatchResult:
    """Play ``n_games`` games of A against B and return per-game results.

    The games are played in shards of ``shard_games`` (see
    :class:`arena.runners.ShardPlan`), each shard all at once: every step, every agent
    is called once, for all the games of the shard waiting on it. Seats alternate: A
    sits in seat ``first_seat`` in even games and the other seat in odd ones, so each
    seat gets half the games. Game ``i`` draws its randomness from the streams of
    ``(seed, i, ply)`` (:mod:`arena.streams`), so the same seed gives the same games
    whatever the shard size, the runner and its number of workers.

    Args:
        game: a registry name or a :class:`Game`.
        agent_a: agent A.
        agent_b: agent B (may be the same object as A).
        n_games: number of games (> 0, at most :data:`MAX_RESULT_GAMES`; count more
            with :func:`play_match_tally`).
        seed: seeds the games' randomness and each agent's generator.
        record: keep each game's actions in ``MatchResult.records``.
        strict: raise :class:`IllegalActionError` on an illegal action instead of
            scoring the game as lost by the agent that played it.
        observer: called with every :class:`Decision` (for data collection); only
            with the local runner.
        first_seat: A's seat in game 0.
        opening_plies: the first plies of every game are uniformly random moves, made
            for neither agent (to spread deterministic agents over many positions);
            they count in ``length`` and ``records`` but are not shown to ``observer``.
        runner: where the shards are played (default: this process).
        shard_games: games per shard (default: :func:`arena.runners.auto_shard_games`,
            large in this process, balanced over Ray workers).
        progress: called with the number of games finished after each shard.
        first_game: the stream index of game 0: these games are games
            ``first_game ..`` of a longer match with the same seed.
        series: games per series (``n_games`` a multiple of it): see the module.

    Returns:
        A :class:`MatchResult`.
    """
    if n_games > MAX_RESULT_GAMES:
        raise TlmError(
            f"{n_games} games are too many to return one by one (at most "
            f"{MAX_RESULT_GAMES}); count them with play_match_tally"
        )
    job, plan = _match_job(
        game, agent_a, agent_b, n_games, seed, record=record, strict=strict,
        observer=observer, first_seat=first_seat, opening_plies=opening_plies,
        shard_games=shard_games, runner=runner, tally=False, first_game=first_game,
        series=series,
    )
    parts: list[MatchResult] = []
    done = 0
    for part in (runner or LocalRunner()).map(job, plan):
        parts.append(part)
        done += part.n_games
        if progress is not None:
            progress(done)
    return _concat(parts, record)


def play_match_tally(
    game: str | Game,
    agent_a: Agent,
    agent_b: Agent,
    n_games: int,
    seed: int | np.random.SeedSequence | None = 0,
    *,
    first_seat: int = 0,
    opening_plies: int = 0,
    runner: Runner | None = None,
    shard_games: int | None = None,
    progress: Progress | None = None,
    series: int = 1,
) -> MatchTally:
    """The counts of :func:`play_matches` with the same arguments, in bounded memory.

    Shards are played (on ``runner``) and counted as they finish, so any number of
    games fits in memory. The counts equal those of
    ``MatchTally.of(play_matches(...), series)``.
    """
    job, plan = _match_job(
        game, agent_a, agent_b, n_games, seed, record=False, strict=False, observer=None,
        first_seat=first_seat, opening_plies=opening_plies, shard_games=shard_games,
        runner=runner, tally=True, series=series,
    )
    total: MatchTally | None = None
    for part in (runner or LocalRunner()).map(job, plan):
        total = part if total is None else total + part
        if progress is not None:
            progress(total.n_games)
    assert total is not None
    return total


@dataclass(frozen=True)
class Pairing:
    """One match of :func:`play_matches_many`: its agents, games, seed and settings."""

    agent_a: Agent
    agent_b: Agent
    n_games: int
    seed: int | np.random.SeedSequence | None = 0
    first_seat: int = 0
    opening_plies: int = 0
    series: int = 1


def _many(
    game: str | Game,
    pairings: Sequence[Pairing],
    *,
    record: bool,
    runner: Runner | None,
    shard_games: int | None,
    progress: Progress | None,
    tally: bool,
) -> list[Any]:
    jobs = [
        _match_job(game, p.agent_a, p.agent_b, p.n_games, p.seed, record=record, strict=False,
                   observer=None, first_seat=p.first_seat, opening_plies=p.opening_plies,
                   shard_games=shard_games, runner=runner, tally=tally, series=p.series)
        for p in pairings
    ]
    parts: list[list[Any]] = [[] for _ in jobs]
    done = 0
    for k, part in (runner or LocalRunner()).map_many(jobs):
        parts[k].append(part)
        done += part.n_games
        if progress is not None:
            progress(done)
    if tally:
        return [functools.reduce(operator.add, p) for p in parts]
    return [_concat(p, record) for p in parts]


def play_matches_many(
    game: str | Game,
    pairings: Sequence[Pairing],
    *,
    record: bool = False,
    runner: Runner | None = None,
    shard_games: int | None = None,
    progress: Progress | None = None,
) -> list[MatchResult]:
    """:func:`play_matches` for each pairing, with the shards of every match in one
    queue: many small matches (a league's, an evaluation's opponents) keep all the
    runner's workers busy. Each result equals that of its own :func:`play_matches`.

    ``progress`` is called with the games finished over all the matches.
    """
    if any(p.n_games > MAX_RESULT_GAMES for p in pairings):
        raise TlmError(
            f"more than {MAX_RESULT_GAMES} games are too many to return one by one; "
            "count them with play_match_tallies"
        )
    return _many(game, pairings, record=record, runner=runner, shard_games=shard_games,
                 progress=progress, tally=False)


def play_match_tallies(
    game: str | Game,
    pairings: Sequence[Pairing],
    *,
    runner: Runner | None = None,
    shard_games: int | None = None,
    progress: Progress | None = None,
) -> list[MatchTally]:
    """:func:`play_match_tally` for each pairing, the shards of every match in one queue,
    in bounded memory. ``progress`` counts games over all the matches."""
    return _many(game, pairings, record=False, runner=runner, shard_games=shard_games,
                 progress=progress, tally=True)
