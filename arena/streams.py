"""Counter-based random streams: a game's randomness depends only on (seed, game, ply).

A match hands each agent, at every step, a :class:`RowGenerator` for the rows it moves
in. Each row draws from the stream of its own game: a number is a hash of the match's
key, the game's index in the match, the ply, and how many draws that row took part in
before it this step. Nothing depends on which other games share the batch, so a match
gives the same games however it is cut into shards, and shards can be as large as the
work allows in one process and balanced across Ray workers.

A :class:`RowGenerator` answers the calls agents make on a
:class:`numpy.random.Generator`: a draw whose leading dimension is the number of rows
(``random(len(rows))``, ``integers(0, 9, size=(B, 3))``, ``standard_gamma(a, size=(B,
A))``) gives each row its own numbers. An agent that passes its generator on for a
subset of its rows hands on ``rows_rng(rng, idx)``: those rows keep their own streams,
and the others are not moved on. Any other draw (a scalar, another shape) comes from a
stream the call shares, counted per call: reproducible for the same batches, but it
ties a row's numbers to its batch, so the agents of tlm never make one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_M1 = 0xBF58476D1CE4E5B9
_M2 = 0x94D049BB133111EB
_GOLDEN_U = np.uint64(_GOLDEN)
_COLUMN_U = np.uint64(0xD1B54A32D192ED03)
_M1_U, _M2_U = np.uint64(_M1), np.uint64(_M2)
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)
_S11, _S32 = np.uint64(11), np.uint64(32)
_TO_UNIT = 2.0**-53

_SHARED = 0x5A4D


def _mix(x: int) -> int:
    """SplitMix64's finalizer on a Python integer (64 bits)."""
    x &= _MASK64
    x = ((x ^ (x >> 30)) * _M1) & _MASK64
    x = ((x ^ (x >> 27)) * _M2) & _MASK64
    return x ^ (x >> 31)


def stream_key(*words: int) -> int:
    """One 64-bit key from integers (a seed's words, a counter, a tag)."""
    h = 0
    for w in words:
        h = _mix(h + _GOLDEN + (int(w) & _MASK64))
    return h


def mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finalizer applied in place to a ``uint64`` array; returns it."""
    x ^= x >> _S30
    x *= _M1_U
    x ^= x >> _S27
    x *= _M2_U
    x ^= x >> _S31
    return x


def row_hashes(key: int, ids: np.ndarray) -> np.ndarray:
    """``[n]`` uint64: a well-mixed 64-bit number per id under ``key``."""
    x = np.asarray(ids).astype(np.uint64)
    x *= _GOLDEN_U
    x += np.uint64(key)
    return mix64(x)


def _shape(size: int | Sequence[int] | None) -> tuple[int, ...] | None:
    if size is None:
        return None
    if isinstance(size, (int, np.integer)):
        return (int(size),)
    return tuple(int(s) for s in size)


class RowGenerator:
    """Random numbers for a batch of rows, each row from the stream of its own id.

    Each row keeps its own count of the draws it took part in, so a draw for some rows
    only (through :meth:`take`, under a condition that holds for some batches and not
    others) never shifts the numbers of the other rows.

    Args:
        key: the stream family (a match's key for one player, say).
        ids: ``[B]`` integer id of each row (a game's index in its match).
        ply: the step the draws belong to.
    """

    __slots__ = ("_count", "_hash", "_shared_draws", "ids", "key", "ply")

    def __init__(self, key: int, ids: np.ndarray, ply: int = 0,
                 hashes: np.ndarray | None = None) -> None:
        self.key = int(key) & _MASK64
        self.ids = ids
        self.ply = int(ply)
        self._hash = hashes  # [B] uint64 per-row stream keys, made on the first draw
        self._count: int | np.ndarray = 0  # draws each row took part in
        self._shared_draws = 0

    def __len__(self) -> int:
        return len(self.ids)

    def _row_hashes(self) -> np.ndarray:
        if self._hash is None:
            self._hash = row_hashes(stream_key(self.key, self.ply), self.ids)
        return self._hash

    def _next_words(self, rows: np.ndarray | slice | None = None) -> np.ndarray:
        """One fresh 64-bit word per row (of ``rows``), each from its row's stream."""
        h = self._row_hashes()
        count = self._count
        if rows is None:
            if isinstance(count, int):
                x = h + np.uint64((count * _GOLDEN) & _MASK64)
                self._count = count + 1
            else:
                x = h + count * _GOLDEN_U
                count += np.uint64(1)
            return mix64(x)
        if isinstance(count, int):
            count = self._count = np.full(len(h), count, dtype=np.uint64)
        x = h[rows] + count[rows] * _GOLDEN_U
        count[rows] += np.uint64(1)
        return mix64(x)

    def raw(self, columns: int | None = None) -> np.ndarray:
        """Uniform 64-bit words: ``[B]``, or ``[B, columns]``; each row its own."""
        h = self._next_words()
        if columns is None:
            return h
        x = h[:, None] + np.arange(columns, dtype=np.uint64) * _COLUMN_U
        return mix64(x)

    def uint32(self) -> np.ndarray:
        """``[B]`` uniform 32-bit words, one per row."""
        return (self.raw() >> _S32).astype(np.uint32)

    def take(self, idx: np.ndarray | slice, lane: np.ndarray | None = None) -> RowGenerator:
        """The generator of the rows ``idx``: each keeps its own stream (fresh draws).

        ``lane`` (``[len(idx)]`` small integers) tells apart rows taken more than once
        (several rollouts of one game, say): each (row, lane) gets its own stream.
        """
        words = self._next_words(idx)
        if lane is not None:
            words = mix64(words + np.asarray(lane).astype(np.uint64) * _COLUMN_U)
        return RowGenerator(self.key, self.ids[idx], self.ply, hashes=words)

    def _rows_of(self, size: int | Sequence[int] | None) -> tuple[int, ...] | None:
        """The shape past the rows if ``size`` starts with the number of rows, else None."""
        shape = _shape(size)
        if shape is None or not shape or shape[0] != len(self.ids):
            return None
        return shape[1:]

    def _shared(self) -> np.random.Generator:
        key = stream_key(self.key, self.ply, self._shared_draws, _SHARED)
        self._shared_draws += 1
        return np.random.Generator(np.random.Philox(key=key))

    def random(self, size: int | Sequence[int] | None = None,
               dtype: Any = np.float64) -> Any:
        """Uniform floats in [0, 1) (see the module's docstring for which are per row)."""
        rest = self._rows_of(size)
        if rest is None:
            return self._shared().random(size, dtype=dtype)
        cols = math.prod(rest)
        words = self.raw(cols if rest else None)
        u = (words >> _S11).astype(np.float64)
        u *= _TO_UNIT
        return u.reshape(_shape(size)).astype(dtype, copy=False)

    def integers(self, low: int, high: int | None = None,
                 size: int | Sequence[int] | None = None, dtype: Any = np.int64,
                 endpoint: bool = False) -> Any:
        """Uniform integers in ``[low, high)`` (``[0, low)`` without ``high``)."""
        rest = self._rows_of(size)
        if rest is None:
            return self._shared().integers(low, high, size=size, dtype=dtype,
                                           endpoint=endpoint)
        if high is None:
            low, high = 0, low
        span = int(high) - int(low) + (1 if endpoint else 0)
        if span <= 0:
            raise ValueError("high <= low")
        u = self.random(size)
        return (np.floor(u * span) + low).astype(dtype)

    def __getattr__(self, name: str) -> Callable[..., Any]:
        # Any other Generator method: per row when its `size` starts with the rows.
        method = getattr(np.random.Generator, name, None)
        if method is None or name.startswith("_"):
            raise AttributeError(name)

        def draw(*args: Any, size: int | Sequence[int] | None = None, **kwargs: Any) -> Any:
            rest = self._rows_of(size)
            if rest is None:
                return getattr(self._shared(), name)(*args, size=size, **kwargs)
            parts = [
                getattr(np.random.Generator(np.random.Philox(key=int(k))), name)(
                    *args, size=rest, **kwargs)
                for k in self._next_words()
            ]
            return np.stack(parts) if parts else np.empty(_shape(size) or (0,))

        return draw

    def __repr__(self) -> str:
        return f"RowGenerator(rows={len(self.ids)}, ply={self.ply})"


Random = np.random.Generator | RowGenerator
"""What agents draw from: a numpy generator, or in matches a row generator."""


def rows_rng(rng: Any, idx: np.ndarray | slice, lane: np.ndarray | None = None) -> Any:
    """The generator to hand on for the rows ``idx`` of a batch: a
    :class:`RowGenerator`'s rows keep their own streams (see
    :meth:`RowGenerator.take`); a plain :class:`numpy.random.Generator` is shared as
    it is."""
    return rng.take(idx, lane) if isinstance(rng, RowGenerator) else rng
