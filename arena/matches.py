"""Matches: many games between two agents at once, seats swapped, inference batched.

:func:`play_matches` is the one game loop of tlm. Evaluation, leagues, game
generation and on-policy distillation all go through it, the latter two by passing an
``observer`` that sees every decision as it is made.

A match is played in shards of a fixed number of games, each seeded on its own
(:class:`arena.runners.ShardPlan`), on a runner: in this process by default, or on Ray
workers, with the same result either way. :func:`play_match_tally` counts the shards as
they finish, in memory that does not grow with the number of games.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from arena.core import Agent, IllegalActionError, TlmError, uniform_legal
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
from arena.streams import RowGenerator, row_hashes

COMPACT_BELOW = 0.5
"""Drop finished games from the live batch when fewer than this fraction remain live.

Applies to engines whose state is not a tuple of arrays (lists of PettingZoo envs,
which are copied to take rows); array states drop finished games at every step.
"""


@dataclass(frozen=True)
class Decision:
    """One batched decision, as an ``observer`` sees it.

    Attributes:
        games: game indices (into the match) of the rows.
        player: 0 for agent A, 1 for agent B.
        seat: the mover's seat in each row.
        ply: the number of moves already played in each row.
        obs: observations (``None`` when neither agent needs them).
        mask: legal-action masks.
        actions: the actions chosen.
    """

    games: np.ndarray
    player: int
    seat: np.ndarray
    ply: np.ndarray
    obs: np.ndarray | None
    mask: np.ndarray
    actions: np.ndarray


Observer = Callable[[Decision], None]


@dataclass
class MatchResult:
    """Per-game results of :func:`play_matches`, from agent A's point of view.

    Attributes:
        game: the game's name.
        agents: the names of agents A and B.
        seat_a: A's seat in each game (0 moves first).
        returns: ``[n, 2]`` total reward of A (column 0) and B (column 1).
        length: moves played in each game.
        illegal: ``-1``, or the player (0 = A, 1 = B) who lost by an illegal action.
        reasons: why each game ended early (empty string for a normal end).
        records: the actions of each game in order, if requested.
    """

    game: str
    agents: tuple[str, str]
    seat_a: np.ndarray
    returns: np.ndarray
    length: np.ndarray
    illegal: np.ndarray
    reasons: list[str]
    records: list[np.ndarray] | None = field(default=None, repr=False)

    @property
    def n_games(self) -> int:
        return len(self.seat_a)

    @property
    def outcome(self) -> np.ndarray:
        """``+1`` A won, ``0`` draw, ``-1`` A lost (by comparing the two returns)."""
        return np.sign(self.returns[:, 0] - self.returns[:, 1]).astype(np.int8)

    @property
    def mean_return(self) -> float:
        """A's mean return per game (chips for poker, +1/0/-1 for board games)."""
        return float(self.returns[:, 0].mean()) if self.n_games else 0.0


def max_batch(*agents: Agent) -> int | None:
    """The most games the ``agents`` play at once (the smallest ``max_batch``), if any
    of them says."""
    limits = [a.max_batch for a in agents if getattr(a, "max_batch", None)]
    return min(x for x in limits if x is not None) if limits else None


def _check_agent(agent: Agent, game: Game) -> None:
    if agent.game is not None and agent.game != game.name:
        raise TlmError(f"agent {agent.name!r} plays {agent.game}, not {game.name}")
    if agent.needs_state and not game.has_engine:
        raise TlmError(
            f"agent {agent.name!r} searches and needs a game with an engine, not {game.name}"
        )


def _mover_groups(
    mover_is_a: np.ndarray, live: np.ndarray, all_live: bool
) -> list[tuple[int, slice | np.ndarray]]:
    """The rows each player (0 = A, 1 = B) moves in: a slice where they are contiguous.

    With every row live and the rows laid out by A's seat, games that alternate turns
    in lockstep give each player one contiguous block per step; a slice hands the
    agent views of the batch where index arrays would gather copies.
    """
    n = len(mover_is_a)
    if all_live:
        n_a = int(np.count_nonzero(mover_is_a))
        if n_a == n:
            return [(0, slice(0, n))]
        if n_a == 0:
            return [(1, slice(0, n))]
        if mover_is_a[:n_a].all():
            return [(0, slice(0, n_a)), (1, slice(n_a, n))]
        if mover_is_a[n - n_a :].all():
            return [(0, slice(n - n_a, n)), (1, slice(0, n - n_a))]
        sel_a, sel_b = mover_is_a, ~mover_is_a
    else:
        sel_a, sel_b = live & mover_is_a, live & ~mover_is_a
    groups: list[tuple[int, slice | np.ndarray]] = []
    for player, sel in ((0, sel_a), (1, sel_b)):
        idx = np.flatnonzero(sel)
        if idx.size:
            groups.append((player, idx))
    return groups


def _count_nonzero_bits(values: np.ndarray) -> int:
    """How many entries of ``values`` have a bit set (``-0.0`` counts; adding it is harmless).

    Counting the entries as unsigned integers is several times faster than as floats.
    """
    uint = _UINT_OF_SIZE.get(values.dtype.itemsize)
    if uint is None or not values.flags.c_contiguous:
        return int(np.count_nonzero(values))
    return int(np.count_nonzero(values.view(uint)))


_UINT_OF_SIZE = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}
_row_offsets: dict[int, np.ndarray] = {}


def _offsets(k: int, stride: int) -> np.ndarray:
    """``arange(k) * stride``, read-only, sliced from a cached array that grows as needed."""
    offsets = _row_offsets.get(stride)
    if offsets is None or len(offsets) < k:
        offsets = np.arange(max(k, 1024), dtype=np.intp) * stride
        offsets.flags.writeable = False
        _row_offsets[stride] = offsets
    return offsets[:k]


def _flat_rows(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """``mask[B, A]`` as one flat array, and the distance between its rows in items.

    A one-byte mask whose rows lie at a fixed stride (a padded engine mask) is viewed,
    not copied: the flat view covers the bytes from its first row to its last.
    """
    n_rows, n_actions = mask.shape
    if mask.flags.c_contiguous:
        return mask.reshape(-1), n_actions
    stride = mask.strides[0]
    if mask.dtype.itemsize == 1 and mask.strides[1] == 1 and stride >= n_actions:
        span = (n_rows - 1) * stride + n_actions if n_rows else 0
        flat = np.lib.stride_tricks.as_strided(mask, shape=(span,), strides=(1,), writeable=False)
        return flat, stride
    return np.ascontiguousarray(mask).reshape(-1), n_actions


def _legal_choices(
    flat_mask: np.ndarray, offsets: np.ndarray, chosen: np.ndarray, n_actions: int
) -> np.ndarray:
    """``[k]`` bool: whether each ``chosen`` (int64) action is legal in its mask row.

    Row i's flags start at ``flat_mask[offsets[i]]`` (see :func:`_flat_rows`).
    """
    in_range = chosen.view(np.uint64) < n_actions  # negative actions wrap to huge
    if not in_range.all():
        chosen = np.where(in_range, chosen, 0)
    legal = flat_mask.take(offsets + chosen) == 1
    legal &= in_range
    return legal


def _play_shard(
    g: Game,
    agent_a: Agent,
    agent_b: Agent,
    n_games: int,
    seed: np.random.SeedSequence,
    *,
    first_game: int = 0,
    record: bool = False,
    strict: bool = False,
    observer: Observer | None = None,
    first_seat: int = 0,
    opening_plies: int = 0,
) -> MatchResult:
    """One shard: ``n_games`` games played all at once (see :func:`play_matches`).

    The shard holds games ``first_game ..`` of the match seeded by ``seed``: every
    random draw of game ``i`` (its engine's seed, its opening, each agent's moves) comes
    from the streams of ``(seed, i, ply)`` (:mod:`arena.streams`), so a game is the same
    in any shard.
    """
    engine = g.make_engine()
    key_a, key_b, key_open, key_engine = (int(k) for k in seed.generate_state(4, np.uint64))
    keys = (key_a, key_b)
    agents = (agent_a, agent_b)
    wants_obs = any(getattr(a, "uses_observation", True) for a in agents) or observer is not None

    game_ids = np.arange(first_game, first_game + n_games, dtype=np.int64)
    state = engine.reset(n_games, seed=(row_hashes(key_engine, game_ids) >> np.uint64(33))
                         .astype(np.int64))
    seat_a = ((np.arange(n_games) + first_seat) % 2).astype(np.int8)
    seat_returns = np.zeros((n_games, 2), dtype=np.float64)
    length = np.zeros(n_games, dtype=np.int64)
    illegal = np.full(n_games, -1, dtype=np.int8)
    reasons = [""] * n_games
    steps: list[tuple[np.ndarray, np.ndarray]] = []

    # When the engine's `take` is a cheap gather (`cheap_take`), the rows
    # are laid out with A's seat-0 games first and its seat-1 games after, and finished
    # games are dropped at once, so that every row is live and, in games whose seats
    # alternate in lockstep, each agent's rows form one block (see _mover_groups).
    # Other states (lists of envs) are taken by copying, so they are compacted rarely.
    eager = bool(getattr(engine, "cheap_take", False))
    if eager:
        rows = np.concatenate([np.flatnonzero(seat_a == 0), np.flatnonzero(seat_a == 1)])
        state = engine.take(state, rows)
    else:
        rows = np.arange(n_games)  # match index of each row of `state`
    row_seat_a = seat_a[rows]
    live = ~engine.done(state)
    n_live = int(np.count_nonzero(live))
    forfeits = False  # rows forfeited by an illegal action may still live in `state`
    # Every live row has made the same number of moves: one per step of this loop.
    ply = 0
    while n_live:
        if n_live < len(rows) and (
            eager or (n_live < COMPACT_BELOW * len(rows) and len(rows) > 64)
        ):
            keep = np.flatnonzero(live)
            state = engine.take(state, keep)
            rows, row_seat_a = rows.take(keep), row_seat_a.take(keep)
            live = np.ones(n_live, dtype=bool)
            forfeits = False
        n = len(rows)
        all_live = n_live == n
        if wants_obs:
            obs, mask = engine.observe(state)
        else:
            obs, mask = None, engine.legal_mask(state)
        mover_seat = engine.to_play(state)
        flat_mask: np.ndarray | None = None
        actions = np.empty(n, dtype=np.int64) if all_live else np.zeros(n, dtype=np.int64)
        if forfeits:
            # Forfeited rows still live in the engine until compacted away: they get
            # some legal action, and their rewards are not counted.
            forfeited = ~live & ~engine.done(state)
            if forfeited.any():
                actions[forfeited] = mask[forfeited].argmax(axis=1)
        groups: list[tuple[int, slice | np.ndarray]] = []
        if ply < opening_plies:
            opening = slice(0, n) if all_live else np.flatnonzero(live)
            actions[opening] = uniform_legal(
                mask[opening], RowGenerator(key_open, rows[opening] + first_game, ply))
        else:
            groups = _mover_groups(mover_seat == row_seat_a, live, all_live)
        for player, sel in groups:
            agent = agents[player]
            if isinstance(sel, slice):
                # Views of the batch, not copies.
                sub_obs = obs[sel] if obs is not None else None
                sub_mask = mask[sel]
                sub_state = (
                    engine.take(state, np.arange(sel.start, sel.stop))
                    if agent.needs_state else None
                )
            else:
                # take gathers rows several times faster than fancy indexing.
                sub_obs = obs.take(sel, axis=0) if obs is not None else None
                sub_mask = mask.take(sel, axis=0)
                sub_state = engine.take(state, sel) if agent.needs_state else None
            # Agents with uses_observation = False are handed None for obs.
            rng = RowGenerator(keys[player], rows[sel] + first_game, ply)
            chosen = np.asarray(
                agent.act(sub_obs, sub_mask, rng, state=sub_state)  # type: ignore[arg-type]
            )
            k = len(sub_mask)
            if chosen.shape != (k,):
                raise TlmError(
                    f"agent {agent.name!r} returned actions of shape {chosen.shape}, "
                    f"expected ({k},)"
                )
            chosen = chosen.astype(np.int64, copy=False)
            if isinstance(sel, slice):
                if flat_mask is None:
                    flat_mask, stride = _flat_rows(mask)
                legal = _legal_choices(flat_mask, _offsets(n, stride)[sel], chosen, mask.shape[1])
            else:
                sub_flat, sub_stride = _flat_rows(sub_mask)
                legal = _legal_choices(sub_flat, _offsets(k, sub_stride), chosen, mask.shape[1])
            all_legal = bool(legal.all())
            if not all_legal:
                bad_k = np.flatnonzero(~legal)
                bad = (np.arange(sel.start, sel.stop) if isinstance(sel, slice) else sel)[bad_k]
                if strict:
                    raise IllegalActionError(
                        f"agent {agent.name!r} played illegal action "
                        f"{int(chosen[bad_k[0]])} in game {int(rows[bad[0]])}"
                    )
                for r, a in zip(bad, chosen[bad_k], strict=True):
                    m = int(rows[r])
                    illegal[m] = player
                    reasons[m] = f"illegal action {int(a)} by {agent.name}"
                    seat_returns[m, mover_seat[r]] -= 1.0
                    length[m] = ply
                live[bad] = False
                n_live -= len(bad)
                all_live = False
                forfeits = True
                chosen = np.where(legal, chosen, sub_mask.argmax(axis=1))
            actions[sel] = chosen
            if observer is not None:
                ok: slice | np.ndarray = sel
                if not all_legal:
                    ok = (np.arange(sel.start, sel.stop) if isinstance(sel, slice) else sel)[legal]
                games = rows[ok]
                observer(Decision(
                    games=games, player=player, seat=mover_seat[ok],
                    ply=np.full(len(games), ply, dtype=np.int64),
                    obs=None if obs is None else obs[ok], mask=mask[ok], actions=chosen[legal],
                ))
        if record:
            steps.append((rows, actions) if all_live else (rows[live], actions[live]))
        ply += 1
        state, rewards, done = engine.step(state, actions)
        ended = done & live if not all_live else done
        if forfeits:
            rewards = np.where(live[:, None], rewards, 0.0)
        ended_rows = np.flatnonzero(ended)
        length[rows[ended_rows]] = ply
        # Rewards are rare and mostly come as games end: if the rows that ended hold
        # every nonzero reward, only they are scattered.
        paid_total = _count_nonzero_bits(rewards)
        if paid_total:
            paid = ended_rows
            paid_rewards = rewards.take(paid, axis=0)
            if _count_nonzero_bits(paid_rewards) != paid_total:
                paid = np.flatnonzero((rewards[:, 0] != 0) | (rewards[:, 1] != 0))
                paid_rewards = rewards.take(paid, axis=0)
            seat_returns[rows[paid]] += paid_rewards
        if ended_rows.size:
            live &= ~done
            n_live -= ended_rows.size

    returns = np.empty((n_games, 2), dtype=np.float64)
    idx = np.arange(n_games)
    returns[:, 0] = seat_returns[idx, seat_a]
    returns[:, 1] = seat_returns[idx, 1 - seat_a]
    records = None
    if record:
        records = [np.zeros(int(n), dtype=np.int64) for n in length]
        filled = np.zeros(n_games, dtype=np.int64)
        for game_rows, acts in steps:
            for m, a in zip(game_rows, acts, strict=True):
                records[m][filled[m]] = a
            filled[game_rows] += 1
    return MatchResult(
        game=g.name,
        agents=(agent_a.name, agent_b.name),
        seat_a=seat_a,
        returns=returns,
        length=length,
        illegal=illegal,
        reasons=reasons,
        records=records,
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

    @classmethod
    def of(cls, result: MatchResult) -> MatchTally:
        """The counts of a :class:`MatchResult`."""
        outcome = result.outcome
        seat = result.seat_a.astype(np.intp)

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
        )

    @property
    def n_games(self) -> int:
        return int(self.games.sum())


MAX_RESULT_GAMES = 20_000_000
"""The most games :func:`play_matches` returns one by one (about 40 bytes a game);
:func:`play_match_tally` counts any number in constant memory."""


@dataclass(frozen=True)
class _MatchOptions:
    record: bool
    strict: bool
    opening_plies: int


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
    observer = ctx.observer
    if observer is not None and shard.start:
        inner, offset = observer, shard.start

        def observer(d: Decision) -> None:
            inner(Decision(games=d.games + offset, player=d.player, seat=d.seat, ply=d.ply,
                           obs=d.obs, mask=d.mask, actions=d.actions))

    o = ctx.options
    return _play_shard(
        ctx.game, ctx.agent_a, ctx.agent_b, shard.n_games, shard.seed,
        first_game=shard.first_game, record=o.record, strict=o.strict, observer=observer,
        first_seat=shard.first_seat, opening_plies=o.opening_plies,
    )


def _shard_tally(ctx: _MatchContext, shard: Shard) -> MatchTally:
    return MatchTally.of(_shard_result(ctx, shard))


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
) -> tuple[Job, ShardPlan]:
    g = get_game(game)
    if shard_games is None:
        shard_games = auto_shard_games(n_games, runner, max_batch(agent_a, agent_b))
    plan = ShardPlan.make(n_games, seed, shard_games, first_seat, first_game)
    if opening_plies < 0:
        raise TlmError(f"opening plies must be >= 0, got {opening_plies}")
    for agent in (agent_a, agent_b):
        _check_agent(agent, g)
    if observer is not None and runner is not None and not isinstance(runner, LocalRunner):
        raise TlmError("an observer sees decisions in this process: play with the local runner")
    ctx = _MatchContext(g, agent_a, agent_b, _MatchOptions(record, strict, opening_plies),
                        observer)
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
) -> MatchTally:
    """The counts of :func:`play_matches` with the same arguments, in bounded memory.

    Shards are played (on ``runner``) and counted as they finish, so any number of
    games fits in memory. The counts equal those of ``MatchTally.of(play_matches(...))``.
    """
    job, plan = _match_job(
        game, agent_a, agent_b, n_games, seed, record=False, strict=False, observer=None,
        first_seat=first_seat, opening_plies=opening_plies, shard_games=shard_games,
        runner=runner, tally=True,
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
                   shard_games=shard_games, runner=runner, tally=tally)
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
