"""The game loop: one shard of a match, all its games played at once.

:func:`play_shard` is the one game loop of tlm; :mod:`arena.matches` cuts a match into
shards and plays each through it, on whatever runner. Every step of the loop does the
same four things, each a function here:

1. drop the games that finished from the live batch (:func:`_drop_finished`);
2. observe the live games and group their rows by the player to move
   (:func:`_mover_groups`);
3. ask each player for the moves of all its rows at once, check them, and score an
   illegal move as a lost game (:func:`_agent_moves`), or play a random opening move
   (:func:`_opening_moves`);
4. step the engine and pay the rewards to the games (:func:`_advance`).

Every random draw of game ``i`` (its engine's seed, its opening, each agent's moves)
comes from the streams of ``(seed, i, ply)`` (:mod:`arena.streams`), so a game is the
same in any shard.

An agent with memory (``recurrent``: a recurrent student) is handed the memory of each
of its rows with the observations and returns it updated (``act_with_memory``); when
the shard's games are over, each game's result is folded into it (``end_game``). The
caller owns the memories: one per game, or one per series that it carries from one
game of the series to the next (:func:`arena.matches.play_matches` with ``series``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from arena.core import Agent, Engine, IllegalActionError, State, TlmError, uniform_legal
from arena.games import Game
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
    """Per-game results of :func:`arena.play_matches`, from agent A's point of view.

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


# ------------------------------------------------------------------- the shard's data


@dataclass
class _Games:
    """What the shard records of each of its games, indexed by game (not by row)."""

    seat_a: np.ndarray
    seat_returns: np.ndarray
    length: np.ndarray
    illegal: np.ndarray
    reasons: list[str]
    steps: list[tuple[np.ndarray, np.ndarray]] | None
    """``(games, actions)`` of every step, when records are kept."""

    @classmethod
    def start(cls, n_games: int, first_seat: int, record: bool) -> _Games:
        return cls(
            seat_a=((np.arange(n_games) + first_seat) % 2).astype(np.int8),
            seat_returns=np.zeros((n_games, 2), dtype=np.float64),
            length=np.zeros(n_games, dtype=np.int64),
            illegal=np.full(n_games, -1, dtype=np.int8),
            reasons=[""] * n_games,
            steps=[] if record else None,
        )

    def result(self, game: str, agents: tuple[str, str]) -> MatchResult:
        """The games as a :class:`MatchResult` (returns turned to A's and B's)."""
        n_games = len(self.seat_a)
        returns = np.empty((n_games, 2), dtype=np.float64)
        idx = np.arange(n_games)
        returns[:, 0] = self.seat_returns[idx, self.seat_a]
        returns[:, 1] = self.seat_returns[idx, 1 - self.seat_a]
        records = None
        if self.steps is not None:
            records = [np.zeros(int(n), dtype=np.int64) for n in self.length]
            filled = np.zeros(n_games, dtype=np.int64)
            for game_rows, acts in self.steps:
                for m, a in zip(game_rows, acts, strict=True):
                    records[m][filled[m]] = a
                filled[game_rows] += 1
        return MatchResult(game=game, agents=agents, seat_a=self.seat_a, returns=returns,
                           length=self.length, illegal=self.illegal, reasons=self.reasons,
                           records=records)


@dataclass
class _Batch:
    """The games still in the engine's state, one row each.

    Attributes:
        state: the engine's batched state.
        rows: the game (index in the shard) of each row.
        seat_a: A's seat in each row.
        live: whether each row's game is still being played.
        n_live: ``live``'s count.
        forfeits: rows forfeited by an illegal action may still live in ``state``.
    """

    state: State
    rows: np.ndarray
    seat_a: np.ndarray
    live: np.ndarray
    n_live: int
    forfeits: bool = False

    @property
    def all_live(self) -> bool:
        return self.n_live == len(self.rows)


@dataclass
class _Step:
    """One ply of the live batch: its observations, masks and movers, and its actions."""

    obs: np.ndarray | None
    mask: np.ndarray
    mover_seat: np.ndarray
    actions: np.ndarray

    @cached_property
    def flat_mask(self) -> tuple[np.ndarray, int]:
        """``mask`` as one flat array and its row stride (see :func:`_flat_rows`)."""
        return _flat_rows(self.mask)


# ------------------------------------------------------------------------ the loop


def play_shard(
    g: Game,
    agent_a: Agent,
    agent_b: Agent,
    n_games: int,
    seed: np.random.SeedSequence,
    *,
    first_game: int = 0,
    game_ids: np.ndarray | None = None,
    record: bool = False,
    strict: bool = False,
    observer: Observer | None = None,
    first_seat: int = 0,
    opening_plies: int = 0,
    memories: list[np.ndarray | None] | None = None,
) -> MatchResult:
    """One shard: ``n_games`` games played all at once (see :func:`arena.play_matches`).

    The shard holds games ``first_game ..`` of the match seeded by ``seed`` (or the
    games ``game_ids``): every random draw of game ``i`` comes from the streams of
    ``(seed, i, ply)``, so a game is the same in any shard. ``memories[p]`` is the
    memory of each game's row for player ``p`` if it is an agent with memory (updated
    in place; fresh memories when not given).
    """
    engine = g.make_engine()
    key_a, key_b, key_open, key_engine = (int(k) for k in seed.generate_state(4, np.uint64))
    agents, keys = (agent_a, agent_b), (key_a, key_b)
    wants_obs = any(getattr(a, "uses_observation", True) for a in agents) or observer is not None
    if game_ids is None:
        game_ids = np.arange(first_game, first_game + n_games, dtype=np.int64)
    if memories is None:
        memories = [agent.initial_memory(n_games) if agent.recurrent else None
                    for agent in agents]
    state = engine.reset(n_games, seed=(row_hashes(key_engine, game_ids) >> np.uint64(33))
                         .astype(np.int64))
    games = _Games.start(n_games, first_seat, record)

    # When the engine's `take` is a cheap gather (`cheap_take`), the rows are laid out
    # with A's seat-0 games first and its seat-1 games after, and finished games are
    # dropped at once, so that every row is live and, in games whose seats alternate in
    # lockstep, each agent's rows form one block (see _mover_groups). Other states
    # (lists of envs) are taken by copying, so they are compacted rarely.
    eager = bool(getattr(engine, "cheap_take", False))
    if eager:
        rows = np.concatenate([np.flatnonzero(games.seat_a == 0),
                               np.flatnonzero(games.seat_a == 1)])
        state = engine.take(state, rows)
    else:
        rows = np.arange(n_games)
    live = ~engine.done(state)
    batch = _Batch(state, rows, games.seat_a[rows], live, int(np.count_nonzero(live)))

    # Every live row has made the same number of moves: one per step of this loop.
    ply = 0
    while batch.n_live:
        _drop_finished(engine, batch, eager)
        step = _observe(engine, batch, wants_obs)
        if ply < opening_plies:
            _opening_moves(batch, step, key_open, game_ids, ply)
        else:
            groups = _mover_groups(step.mover_seat == batch.seat_a, batch.live, batch.all_live)
            for player, sel in groups:
                _agent_moves(engine, batch, step, games, player, agents[player], keys[player],
                             sel, game_ids, ply, strict, observer, memories[player])
        if games.steps is not None:
            games.steps.append((batch.rows, step.actions) if batch.all_live
                               else (batch.rows[batch.live], step.actions[batch.live]))
        ply += 1
        _advance(engine, batch, step.actions, games, ply)
    result = games.result(g.name, (agent_a.name, agent_b.name))
    for player, (agent, memory) in enumerate(zip(agents, memories, strict=True)):
        if memory is not None:
            mine = result.outcome if player == 0 else -result.outcome
            memory[:] = agent.end_game(memory, mine.astype(np.float32))
    return result


def _drop_finished(engine: Engine, batch: _Batch, eager: bool) -> None:
    """Take the live rows out of the state, when it is worth a take."""
    n = len(batch.rows)
    if batch.n_live < n and (eager or (batch.n_live < COMPACT_BELOW * n and n > 64)):
        keep = np.flatnonzero(batch.live)
        batch.state = engine.take(batch.state, keep)
        batch.rows, batch.seat_a = batch.rows.take(keep), batch.seat_a.take(keep)
        batch.live = np.ones(batch.n_live, dtype=bool)
        batch.forfeits = False


def _observe(engine: Engine, batch: _Batch, wants_obs: bool) -> _Step:
    """The ply's observations (if anyone looks), masks and movers, and its action array."""
    if wants_obs:
        obs, mask = engine.observe(batch.state)
    else:
        obs, mask = None, engine.legal_mask(batch.state)
    n = len(batch.rows)
    actions = np.empty(n, dtype=np.int64) if batch.all_live else np.zeros(n, dtype=np.int64)
    if batch.forfeits:
        # Forfeited rows still live in the engine until compacted away: they get some
        # legal action, and their rewards are not counted.
        forfeited = ~batch.live & ~engine.done(batch.state)
        if forfeited.any():
            actions[forfeited] = mask[forfeited].argmax(axis=1)
    return _Step(obs, mask, engine.to_play(batch.state), actions)


def _opening_moves(batch: _Batch, step: _Step, key: int, game_ids: np.ndarray,
                   ply: int) -> None:
    """Uniformly random moves for every live row, made for neither agent."""
    rows = slice(0, len(batch.rows)) if batch.all_live else np.flatnonzero(batch.live)
    step.actions[rows] = uniform_legal(
        step.mask[rows], RowGenerator(key, game_ids[batch.rows[rows]], ply))


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


def _agent_moves(
    engine: Engine,
    batch: _Batch,
    step: _Step,
    games: _Games,
    player: int,
    agent: Agent,
    key: int,
    sel: slice | np.ndarray,
    game_ids: np.ndarray,
    ply: int,
    strict: bool,
    observer: Observer | None,
    memory: np.ndarray | None,
) -> None:
    """``agent``'s moves in the rows ``sel``, all in one call, written to ``step.actions``.

    An illegal move loses its game (or raises, when ``strict``); the row gets a legal
    move in its place, so that the engine can step it until it is dropped.
    """
    obs, mask = step.obs, step.mask
    if isinstance(sel, slice):
        # Views of the batch, not copies.
        sub_obs = obs[sel] if obs is not None else None
        sub_mask = mask[sel]
        sub_state = (engine.take(batch.state, np.arange(sel.start, sel.stop))
                     if agent.needs_state else None)
    else:
        # take gathers rows several times faster than fancy indexing.
        sub_obs = obs.take(sel, axis=0) if obs is not None else None
        sub_mask = mask.take(sel, axis=0)
        sub_state = engine.take(batch.state, sel) if agent.needs_state else None
    # Agents with uses_observation = False are handed None for obs.
    rng = RowGenerator(key, game_ids[batch.rows[sel]], ply)
    if memory is None:
        chosen = np.asarray(agent.act(sub_obs, sub_mask, rng, state=sub_state))  # type: ignore[arg-type]
    else:
        games_of_rows = batch.rows[sel]
        chosen, new_memory = agent.act_with_memory(
            sub_obs, sub_mask, rng, memory[games_of_rows], state=sub_state)  # type: ignore[arg-type]
        memory[games_of_rows] = new_memory
        chosen = np.asarray(chosen)
    k = len(sub_mask)
    if chosen.shape != (k,):
        raise TlmError(f"agent {agent.name!r} returned actions of shape {chosen.shape}, "
                       f"expected ({k},)")
    chosen = chosen.astype(np.int64, copy=False)
    if isinstance(sel, slice):
        flat_mask, stride = step.flat_mask
        legal = _legal_choices(flat_mask, _offsets(len(batch.rows), stride)[sel], chosen,
                               mask.shape[1])
    else:
        sub_flat, sub_stride = _flat_rows(sub_mask)
        legal = _legal_choices(sub_flat, _offsets(k, sub_stride), chosen, mask.shape[1])
    all_legal = bool(legal.all())
    if not all_legal:
        _forfeit(batch, step, games, player, agent, sel, chosen, legal, ply, strict)
        chosen = np.where(legal, chosen, sub_mask.argmax(axis=1))
    step.actions[sel] = chosen
    if observer is not None:
        ok = sel if all_legal else _row_indices(sel)[legal]
        rows = batch.rows[ok]
        observer(Decision(
            games=rows, player=player, seat=step.mover_seat[ok],
            ply=np.full(len(rows), ply, dtype=np.int64),
            obs=None if obs is None else obs[ok], mask=mask[ok], actions=chosen[legal],
        ))


def _forfeit(
    batch: _Batch,
    step: _Step,
    games: _Games,
    player: int,
    agent: Agent,
    sel: slice | np.ndarray,
    chosen: np.ndarray,
    legal: np.ndarray,
    ply: int,
    strict: bool,
) -> None:
    """Score the games of ``sel`` where ``chosen`` is illegal as lost by ``player``."""
    bad_k = np.flatnonzero(~legal)
    bad = _row_indices(sel)[bad_k]
    if strict:
        raise IllegalActionError(
            f"agent {agent.name!r} played illegal action {int(chosen[bad_k[0]])} in game "
            f"{int(batch.rows[bad[0]])}"
        )
    for r, a in zip(bad, chosen[bad_k], strict=True):
        m = int(batch.rows[r])
        games.illegal[m] = player
        games.reasons[m] = f"illegal action {int(a)} by {agent.name}"
        games.seat_returns[m, step.mover_seat[r]] -= 1.0
        games.length[m] = ply
    batch.live[bad] = False
    batch.n_live -= len(bad)
    batch.forfeits = True


def _advance(engine: Engine, batch: _Batch, actions: np.ndarray, games: _Games,
             ply: int) -> None:
    """Step the engine, pay the rewards to the games, and end the games that ended."""
    all_live = batch.all_live
    batch.state, rewards, done = engine.step(batch.state, actions)
    ended = done if all_live else done & batch.live
    if batch.forfeits:
        rewards = np.where(batch.live[:, None], rewards, 0.0)
    ended_rows = np.flatnonzero(ended)
    games.length[batch.rows[ended_rows]] = ply
    # Rewards are rare and mostly come as games end: if the rows that ended hold every
    # nonzero reward, only they are scattered.
    paid_total = _count_nonzero_bits(rewards)
    if paid_total:
        paid = ended_rows
        paid_rewards = rewards.take(paid, axis=0)
        if _count_nonzero_bits(paid_rewards) != paid_total:
            paid = np.flatnonzero((rewards[:, 0] != 0) | (rewards[:, 1] != 0))
            paid_rewards = rewards.take(paid, axis=0)
        games.seat_returns[batch.rows[paid]] += paid_rewards
    if ended_rows.size:
        batch.live &= ~done
        batch.n_live -= ended_rows.size


# ------------------------------------------------------------------- array helpers


def _row_indices(sel: slice | np.ndarray) -> np.ndarray:
    """The row indices that ``sel`` selects."""
    return np.arange(sel.start, sel.stop) if isinstance(sel, slice) else sel


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
