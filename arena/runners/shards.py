"""Shards: how a match (or a game generation) is cut into runs of games, and the jobs
played on them.

A long match is cut into *shards* of a fixed number of games (:class:`ShardPlan`), each
with the match's seed and its own first seat, so the result of a shard depends only on
the plan, never on who plays it: game ``i``'s randomness comes from the streams of
``(seed, i, ply)`` (:mod:`arena.streams`). A :class:`Job` says what is done with each
shard; a runner (:mod:`arena.runners`) plays the shards of a job.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from arena.core import TlmError

DEFAULT_SHARD_GAMES = 1024
"""The smallest shard :func:`arena.runners.auto_shard_games` sends to a Ray worker
(unless the match or an agent's ``max_batch`` is smaller): big enough that a shard of
search or network play carries well over the ~2 ms a Ray task costs."""

LOCAL_SHARD_GAMES = 1 << 17
"""The largest shard :func:`arena.runners.auto_shard_games` plays in this process:
batching is the speed there, and this many games of the registered games fit in tens
of MB."""

SHARDS_PER_WORKER = 4
"""Shards per Ray worker that :func:`arena.runners.auto_shard_games` aims at, so that
the queue stays balanced when shards take unequal times."""

MAX_SHARD_GAMES = 1 << 20
"""The largest shard size accepted (a shard is played as one batch in memory)."""

@dataclass(frozen=True)
class Shard:
    """A run of consecutive games of a match.

    Attributes:
        index: the shard's position in its plan.
        start: the index (in the plan) of its first game.
        n_games: how many games it holds.
        seed: the match's seed sequence: every shard of a plan has the same.
        first_seat: agent A's seat in the shard's first game, keeping the match's
            alternation of seats.
        first_game: the index of its first game in the seed's streams (``start`` plus
            the plan's ``first_game``): game ``i``'s randomness depends on
            ``(seed, i, ply)`` only (:mod:`arena.streams`).
    """

    index: int
    start: int
    n_games: int
    seed: np.random.SeedSequence
    first_seat: int
    first_game: int = 0


def check_shard_games(shard_games: int) -> int:
    """``shard_games`` if it is a valid shard size, else a one-line :class:`TlmError`."""
    if not 0 < shard_games <= MAX_SHARD_GAMES:
        raise TlmError(f"games per shard must be in 1..{MAX_SHARD_GAMES}, got {shard_games}")
    return shard_games

def seed_sequence(seed: int | np.random.SeedSequence | None) -> np.random.SeedSequence:
    """A seed as a :class:`numpy.random.SeedSequence` (``None``: fresh entropy, fixed now)."""
    if isinstance(seed, np.random.SeedSequence):
        return seed
    return np.random.SeedSequence(seed)


@dataclass(frozen=True)
class ShardPlan:
    """How ``n_games`` games are cut into shards of ``shard_games``.

    Every shard plays its games under the match's seed, from the streams of their own
    indices, so the games do not depend on the shard size. Shards are made on demand,
    so a plan of billions of games costs nothing to hold.

    Attributes:
        first_game: the stream index of the plan's first game (a plan may be the tail
            of a longer match: a dataset's shard files, say).
    """

    n_games: int
    seed: np.random.SeedSequence
    shard_games: int = DEFAULT_SHARD_GAMES
    first_seat: int = 0
    first_game: int = 0

    @classmethod
    def make(
        cls,
        n_games: int,
        seed: int | np.random.SeedSequence | None,
        shard_games: int = DEFAULT_SHARD_GAMES,
        first_seat: int = 0,
        first_game: int = 0,
    ) -> ShardPlan:
        """A plan, after checking its numbers (a :class:`TlmError` for bad ones)."""
        if n_games <= 0:
            raise TlmError(f"the number of games must be positive, got {n_games}")
        if first_seat not in (0, 1):
            raise TlmError(f"first seat must be 0 or 1, got {first_seat}")
        if first_game < 0:
            raise TlmError(f"the first game's index must be >= 0, got {first_game}")
        return cls(n_games, seed_sequence(seed), check_shard_games(shard_games), first_seat,
                   first_game)

    def __len__(self) -> int:
        return -(-self.n_games // self.shard_games)

    def shard(self, i: int) -> Shard:
        """Shard ``i`` (``0 <= i < len(plan)``)."""
        if not 0 <= i < len(self):
            raise IndexError(i)
        start = i * self.shard_games
        return Shard(
            index=i,
            start=start,
            n_games=min(self.shard_games, self.n_games - start),
            seed=self.seed,
            first_seat=(self.first_seat + start) % 2,
            first_game=self.first_game + start,
        )

    def __iter__(self) -> Iterator[Shard]:
        return (self.shard(i) for i in range(len(self)))


Shards = ShardPlan | Sequence[Shard]
"""A plan, or any sequence of shards (a dataset's shards, made on demand)."""



@dataclass
class Job:
    """Work a runner spreads over shards.

    Attributes:
        work: ``work(context, shard) -> result``; a module-level function.
        context: what ``work`` needs, built in this process (the local runner uses it).
        payload: makes plain data from which ``setup`` rebuilds ``context`` on a worker.
        setup: ``setup(payload) -> context``; a module-level function.
    """

    work: Callable[[Any, Shard], Any]
    context: Any
    payload: Callable[[], Any]
    setup: Callable[[Any], Any]


Progress = Callable[[int], Any]
"""Called with the number of games finished so far."""
