"""Contracts every layer shares: the batched engine, the agent, and the user-facing error.

An *engine* runs B games of one game in lockstep as arrays. Its observations, masks,
action indices and rewards are exactly those of the game's PettingZoo env, so an agent
that acts on an engine also acts on the real env. Seat 0 moves first; ``rewards[:, s]``
is seat s's reward for the step just taken.

An *agent* maps a batch of observations and legal-action masks to a batch of actions.
Agents with a distribution (:class:`PolicyAgent`) also give ``policy`` and may give
``value``. Search agents set ``needs_state`` and are handed the engine sub-state of the
rows they act for.
"""

from __future__ import annotations

import functools
from typing import Any, Protocol, runtime_checkable

import numpy as np

from arena.streams import Random, RowGenerator

State = Any
"""An engine's batched state (engine-specific; index it only through the engine)."""


class TlmError(Exception):
    """Bad input from a user: the CLI reports it as one line and exits with code 2."""


class IllegalActionError(TlmError):
    """An agent chose an action that the mask forbids."""


@runtime_checkable
class Engine(Protocol):
    """B games in lockstep. ``step`` may update ``state`` in place: clone it to keep it."""

    name: str
    num_actions: int
    obs_shape: tuple[int, ...]
    obs_dtype: np.dtype
    cheap_take: bool
    """Whether ``take`` is a cheap array gather (matches then drop finished games every
    step); ``False`` for engines whose rows are objects that must be copied."""

    def reset(self, n: int, seed: int | np.ndarray | None = None) -> State:
        """Start ``n`` new games: from one seed, or from ``seed[i]`` for game ``i``
        (matches pass one per game, so a game is the same in any shard)."""
        ...

    def observe(self, state: State) -> tuple[np.ndarray, np.ndarray]:
        """``(obs[B, *obs_shape], mask[B, A] int8)`` from the mover's point of view.

        Finished games get an all-zero mask. Both may be read-only views (a mask's rows
        need not be contiguous): copy them before writing.
        """
        ...

    def legal_mask(self, state: State) -> np.ndarray:
        """``mask[B, A]`` (int8) alone: cheaper than ``observe`` when obs are not needed."""
        ...

    def to_play(self, state: State) -> np.ndarray:
        """Seat to move, ``[B]`` int (meaningless for finished games)."""
        ...

    def done(self, state: State) -> np.ndarray:
        """``[B]`` bool: the game has ended."""
        ...

    def step(self, state: State, actions: np.ndarray) -> tuple[State, np.ndarray, np.ndarray]:
        """Play ``actions[B]`` for the movers; returns ``(state, rewards[B, 2], done[B])``.

        Rows already finished ignore their action and get zero reward. An illegal action
        in a live row raises :class:`IllegalActionError`.
        """
        ...

    def take(self, state: State, idx: np.ndarray) -> State:
        """A new state holding the rows ``idx`` (a copy)."""
        ...

    def clone(self, state: State) -> State:
        """A copy of the whole state."""
        ...

    def render(self, state: State, i: int) -> str:
        """Game ``i`` as text, for people."""
        ...


class Agent:
    """Something that plays: ``act(obs, mask, rng, state=None) -> actions[B]``.

    Attributes:
        name: the spec it was built from (``random``, ``alphabeta:4``, a path, ...).
        game: the game it is bound to, or ``None`` if it plays any game.
        needs_state: a search agent that must see the engine state of its rows.
        uses_observation: ``False`` for agents that read only the mask; matches then
            skip building observations and pass ``obs=None``.
        max_batch: the most games it should be handed at once (memory or latency:
            search trees, network activations), or ``None`` for no limit; matches cut
            their shards no larger when their caller names no shard size.
        min_shard_games: the smallest shard worth a Ray task for its games, or
            ``None`` for :data:`arena.runners.shards.DEFAULT_SHARD_GAMES`; a costly
            agent (a search) names a smaller one, so that its matches of a few hundred
            games still spread over the workers.
        recurrent: an agent with memory across the games of a series; matches keep
            its memories (:meth:`initial_memory`) and call :meth:`act_with_memory` and
            :meth:`end_game` instead of :meth:`act`.

    ``rng`` is a :class:`numpy.random.Generator`, or in matches an
    :class:`arena.streams.RowGenerator` with the same methods, whose draws shaped
    ``[B, ...]`` give each row the numbers of its own game; an agent that hands it on
    for a subset of its rows passes ``arena.rows_rng(rng, idx)``.
    """

    name: str = "agent"
    game: str | None = None
    needs_state: bool = False
    uses_observation: bool = True
    max_batch: int | None = None
    min_shard_games: int | None = None
    recurrent: bool = False

    def act(
        self,
        obs: np.ndarray,
        mask: np.ndarray,
        rng: np.random.Generator,
        state: State | None = None,
    ) -> np.ndarray:
        """Choose one legal action per row."""
        raise NotImplementedError(f"{type(self).__name__} must implement act")

    def initial_memory(self, n: int) -> np.ndarray:
        """``[n, ...]``: the memory of ``n`` new series (agents with memory only)."""
        raise NotImplementedError(f"{type(self).__name__} has no memory")

    def act_with_memory(
        self,
        obs: np.ndarray,
        mask: np.ndarray,
        rng: np.random.Generator,
        memory: np.ndarray,
        state: State | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(actions[B], memory')``: :meth:`act` for rows whose memories are ``memory``."""
        raise NotImplementedError(f"{type(self).__name__} has no memory")

    def end_game(self, memory: np.ndarray, result: np.ndarray) -> np.ndarray:
        """The memories after games that ended with ``result[B]`` (+1, 0, -1, its own)."""
        raise NotImplementedError(f"{type(self).__name__} has no memory")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class PolicyAgent(Agent):
    """An agent with a distribution over actions; ``act`` samples it (argmax if greedy).

    Subclasses implement :meth:`policy`; they may also implement :meth:`value`.
    """

    greedy: bool = False

    def policy(self, obs: np.ndarray, mask: np.ndarray, state: State | None = None) -> np.ndarray:
        """``probs[B, A]``: zero on illegal actions, rows summing to one."""
        raise NotImplementedError(f"{type(self).__name__} must implement policy")

    def value(self, obs: np.ndarray, mask: np.ndarray, state: State | None = None) -> np.ndarray:
        """``[B]`` expected outcome in [-1, 1] for the mover."""
        raise NotImplementedError(f"{type(self).__name__} gives no value")

    @property
    def has_value(self) -> bool:
        """Whether :meth:`value` is implemented."""
        return type(self).value is not PolicyAgent.value

    def act(
        self,
        obs: np.ndarray,
        mask: np.ndarray,
        rng: np.random.Generator,
        state: State | None = None,
    ) -> np.ndarray:
        probs = self.policy(obs, mask, state)
        if self.greedy:
            return masked_argmax(probs, mask)
        return sample_from(probs, rng)


def sample_from(probs: np.ndarray, rng: Random) -> np.ndarray:
    """One index per row of ``probs[B, A]``, drawn with one uniform per row."""
    cdf = np.cumsum(probs, axis=1)
    u = rng.random(len(probs)) * cdf[:, -1]
    actions = (cdf <= u[:, None]).sum(axis=1)
    return np.minimum(actions, probs.shape[1] - 1).astype(np.int64)


def masked_softmax(logits: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``probs[B, A]`` (float64): softmax of ``logits`` over the legal actions of ``mask``.

    Float64 so rows sum to one to machine precision, as samplers expect; a row with no
    legal action is all zeros.
    """
    z = np.where(mask.astype(bool), np.asarray(logits, dtype=np.float64), -np.inf)
    top = z.max(axis=1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    e = np.exp(z - top)
    total = e.sum(axis=1, keepdims=True)
    return e / np.where(total > 0, total, 1.0)


def masked_argmax(scores: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Argmax of ``scores`` over legal actions (first of ties)."""
    s = np.where(mask.astype(bool), scores, -np.inf)
    return s.argmax(axis=1).astype(np.int64)


_RANK_TABLE_MAX_ACTIONS = 12

# Multiplying up to eight 0/1 bytes (as one little-endian integer) by this moves byte
# i's bit to bit 56 + i; no two partial products share a bit, so nothing carries.
_PACK_BYTES = np.uint64(0x0102040810204080)
_SHIFT_56 = np.uint64(56)
_SHIFT_32 = np.uint64(32)
_UINT_OF_WIDTH: dict[int, type[np.unsignedinteger]] = {
    1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64,
}
# Bit generators whose raw outputs carry 64 random bits (MT19937's carry only 32).
_RAW_64 = (np.random.PCG64, np.random.PCG64DXSM, np.random.SFC64, np.random.Philox)


@functools.cache
def _rank_tables(n_actions: int) -> tuple[np.ndarray, np.ndarray]:
    """For every mask of ``n_actions`` bits: its legal count, and its k-th legal action."""
    codes = np.arange(1 << n_actions)
    bits = (codes[:, None] >> np.arange(n_actions)) & 1
    kth = np.zeros((1 << n_actions, n_actions), dtype=np.int64)
    for code in range(1 << n_actions):
        legal = np.flatnonzero(bits[code])
        kth[code, : legal.size] = legal
    count, kth_flat = bits.sum(axis=1).astype(np.uint64), kth.reshape(-1)
    count.flags.writeable = kth_flat.flags.writeable = False
    return count, kth_flat


def _mask_codes(mask: np.ndarray) -> np.ndarray:
    """``[B]`` uint64: each row of a one-byte 0/1 ``mask[B, A]`` (A <= 16) as a number.

    A row's bytes are read as one or two (overlapping) integers, which need only the
    last axis to be contiguous, and their flags are packed by one multiplication.
    """
    n_actions = mask.shape[1]
    width, uint, high_shift = _read_plan(n_actions)
    low = np.multiply(mask[:, :width].view(uint)[:, 0], _PACK_BYTES, dtype=np.uint64)
    low >>= _SHIFT_56
    if n_actions > width:
        high = np.multiply(mask[:, n_actions - width :].view(uint)[:, 0], _PACK_BYTES,
                           dtype=np.uint64)
        high >>= _SHIFT_56  # products below bit 56 are partial sums: dropped
        high <<= high_shift  # actions n - width .. n - 1
        low |= high
    return low


@functools.cache
def _read_plan(n_actions: int) -> tuple[int, type[np.unsignedinteger], np.uint64]:
    """How :func:`_mask_codes` reads rows of ``n_actions`` bytes: width, type, high shift."""
    width = next(w for w in (1, 2, 4, 8) if 2 * w >= n_actions)
    return width, _UINT_OF_WIDTH[width], np.uint64(max(n_actions - width, 0))


def _uniform_uint32(rng: Random, n: int) -> np.ndarray:
    """``n`` uniform uint32, two per raw draw where the bit generator's draws hold 64 bits."""
    if isinstance(rng, RowGenerator) and len(rng) == n:
        return rng.uint32()
    if isinstance(rng.bit_generator, _RAW_64):
        raw: np.ndarray = rng.bit_generator.random_raw((n + 1) // 2)
        return raw.view(np.uint32)[:n]
    return rng.integers(0, 1 << 32, size=n, dtype=np.uint32)


def uniform_legal(mask: np.ndarray, rng: Random) -> np.ndarray:
    """A uniformly random legal action per row of a 0/1 ``mask[B, A]`` (0 where none is legal).

    Up to 12 actions, each row's mask is read as a number and one uniform 32-bit draw
    per row picks among its legal actions by table (``count * draw >> 32``, biased by
    less than ``count / 2**32``); larger action sets rank one uniform per action.
    """
    n_rows, n_actions = mask.shape
    if n_actions > _RANK_TABLE_MAX_ACTIONS:
        keys = rng.random(mask.shape)
        keys += mask  # legal keys lie in [1, 2), illegal ones in [0, 1)
        return keys.argmax(axis=1).astype(np.int64)
    count, kth = _rank_tables(n_actions)
    if mask.dtype.itemsize == 1 and mask.strides[1] == 1 and n_actions > 0:
        mask = mask.view(np.uint8)
    else:
        mask = np.ascontiguousarray(mask != 0, dtype=np.uint8)
    code = _mask_codes(mask)
    pick = count.take(code)
    pick *= _uniform_uint32(rng, n_rows)
    pick >>= _SHIFT_32
    code *= np.uint64(n_actions)
    code += pick
    return kth.take(code.view(np.int64))
