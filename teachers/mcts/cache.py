"""The evaluation cache of the fast search: (position key -> policy logits, value).

A fixed-size table, allocated once, that a search fills with what the network said
about each position it evaluated, keyed by the position's canonical key
(:func:`teachers.mcts.kernels.canonical`), so that a transposition, a symmetric
image, or a position a previous search (the previous move of a match) evaluated is
never sent to the network again. It is set-associative (:data:`WAYS` entries a set)
with least-recently-used replacement within a set, so its memory is bounded whatever
the number of searches. Keys are exact, never hashes, so a hit is always the right
position; the stored logits and value are the network's own outputs, bit for bit.

The table assumes the network does not change: clear it (:meth:`EvaluationCache.clear`)
after changing the weights.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from arena.core import TlmError

WAYS = 4
"""Entries per set."""
EMPTY = -1
"""The key of an empty entry (real keys are non-negative)."""
DEFAULT_ENTRIES = 1 << 19
"""Entries of the default table (about 20 MB for connect four)."""
_MIX = np.uint64(0x9E3779B97F4A7C15)
_S32 = np.uint64(32)


@njit(cache=True, inline="always")
def set_of(key: int, n_sets: int) -> int:
    """The set a key lives in (``n_sets`` a power of two)."""
    x = np.uint64(key) * _MIX
    return int(x >> _S32) & (n_sets - 1)


@njit(cache=True)
def lookup(keys: np.ndarray, stamps: np.ndarray, clock: np.ndarray, key: int) -> int:
    """The entry (``set * WAYS + way``) holding ``key``, or -1; a hit refreshes its stamp."""
    s = set_of(key, keys.shape[0])
    for w in range(keys.shape[1]):
        if keys[s, w] == key:
            clock[0] += 1
            stamps[s, w] = clock[0]
            return s * keys.shape[1] + w
    return -1


@njit(cache=True)
def insert(
    keys: np.ndarray, stamps: np.ndarray, clock: np.ndarray, logits: np.ndarray,
    values: np.ndarray, key: int, row_logits: np.ndarray, value: float,
) -> None:
    """Store ``key``'s evaluation, in its own entry, an empty one, or the least recent."""
    s = set_of(key, keys.shape[0])
    victim = 0
    for w in range(keys.shape[1]):
        if keys[s, w] == key or keys[s, w] == EMPTY:
            victim = w
            break
        if stamps[s, w] < stamps[s, victim]:
            victim = w
    clock[0] += 1
    keys[s, victim] = key
    stamps[s, victim] = clock[0]
    logits[s * keys.shape[1] + victim] = row_logits
    values[s * keys.shape[1] + victim] = value


class EvaluationCache:
    """A bounded table of network evaluations, shared by the searches that use it.

    Args:
        entries: how many positions it holds (rounded up to a power of two, at least
            :data:`WAYS`).
        num_actions: the game's number of actions (logits per entry).

    Attributes:
        keys: ``[sets, WAYS]`` int64 canonical keys (:data:`EMPTY` where free).
        stamps: ``[sets, WAYS]`` int64 time of last use (for replacement).
        logits: ``[entries, A]`` float32 policy logits of the canonical position.
        values: ``[entries]`` float32 value for its mover.
        clock: ``[1]`` int64 use counter.
    """

    def __init__(self, entries: int = DEFAULT_ENTRIES, num_actions: int = 7) -> None:
        if entries < 1:
            raise TlmError(f"the cache needs at least one entry, got {entries}")
        n_sets = 1 << max(0, int(np.ceil(np.log2(max(entries, WAYS) / WAYS))))
        self.num_actions = num_actions
        self.keys = np.full((n_sets, WAYS), EMPTY, dtype=np.int64)
        self.stamps = np.zeros((n_sets, WAYS), dtype=np.int64)
        self.logits = np.zeros((n_sets * WAYS, num_actions), dtype=np.float32)
        self.values = np.zeros(n_sets * WAYS, dtype=np.float32)
        self.clock = np.zeros(1, dtype=np.int64)

    @property
    def entries(self) -> int:
        """How many positions it can hold."""
        return int(self.keys.size)

    @property
    def nbytes(self) -> int:
        """Its memory, in bytes."""
        return sum(a.nbytes for a in (self.keys, self.stamps, self.logits, self.values))

    def __len__(self) -> int:
        return int((self.keys != EMPTY).sum())

    def clear(self) -> None:
        """Forget every entry (after the network's weights changed)."""
        self.keys.fill(EMPTY)
        self.stamps.fill(0)
        self.clock[0] = 0

    def get(self, key: int) -> tuple[np.ndarray, float] | None:
        """``(logits, value)`` stored for ``key``, or ``None``."""
        entry = lookup(self.keys, self.stamps, self.clock, int(key))
        if entry < 0:
            return None
        return self.logits[entry].copy(), float(self.values[entry])

    def __repr__(self) -> str:
        return f"EvaluationCache(entries={self.entries:,}, used={len(self):,})"
