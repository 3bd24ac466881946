"""Runners: where the shards of a match (or of a game generation) are played.

A match is cut into shards (:mod:`arena.runners.shards`), and a runner plays the shards
of a :class:`Job` and yields their results in shard order:

- :class:`LocalRunner` (the default) plays them one after the other in this process;
- :class:`RayRunner` (:mod:`arena.runners.ray_runner`) spreads them over Ray actors, on
  a local Ray it starts or on a cluster it joins; agents travel to its workers as plain
  data (:mod:`arena.runners.payloads`).

The same seed therefore gives the same result with either runner and any number of
workers. :func:`make_runner` picks the runner from the command line's ``--workers`` and
``--ray-address``; :func:`auto_shard_games` picks a match's shard size for it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from arena.runners.payloads import (
    AgentPayload,
    PayloadDump,
    PayloadLoad,
    agent_payload,
    build_agent,
    register_payload,
)
from arena.runners.ray_runner import (
    CONTEXTS_PER_WORKER,
    IN_FLIGHT_PER_WORKER,
    MAX_SHARD_FAILURES,
    MAX_WORKERS,
    WINDOW_PER_WORKER,
    RayRunner,
    join_ray,
    start_local_ray,
)
from arena.runners.shards import (
    DEFAULT_SHARD_GAMES,
    LOCAL_SHARD_GAMES,
    MAX_SHARD_GAMES,
    SHARDS_PER_WORKER,
    Job,
    Progress,
    Shard,
    ShardPlan,
    Shards,
    check_shard_games,
    seed_sequence,
)

__all__ = [
    "CONTEXTS_PER_WORKER",
    "DEFAULT_SHARD_GAMES",
    "IN_FLIGHT_PER_WORKER",
    "LOCAL_SHARD_GAMES",
    "MAX_SHARD_FAILURES",
    "MAX_SHARD_GAMES",
    "MAX_WORKERS",
    "SHARDS_PER_WORKER",
    "WINDOW_PER_WORKER",
    "AgentPayload",
    "Job",
    "LocalRunner",
    "PayloadDump",
    "PayloadLoad",
    "Progress",
    "RayRunner",
    "Runner",
    "Shard",
    "ShardPlan",
    "Shards",
    "agent_payload",
    "auto_shard_games",
    "build_agent",
    "check_shard_games",
    "join_ray",
    "make_runner",
    "register_payload",
    "seed_sequence",
    "start_local_ray",
]


class LocalRunner:
    """Plays every shard in this process, in order. Starts nothing."""

    workers = 1

    def __enter__(self) -> LocalRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def map(self, job: Job, plan: Shards) -> Iterator[Any]:
        """The result of each shard of ``plan``, in order."""
        for shard in plan:
            yield job.work(job.context, shard)

    def map_many(self, jobs: Sequence[tuple[Job, Shards]]) -> Iterator[tuple[int, Any]]:
        """``(job index, result)`` of every shard of every job: jobs in order, each
        job's shards in order."""
        for k, (job, plan) in enumerate(jobs):
            for result in self.map(job, plan):
                yield k, result


Runner = LocalRunner | RayRunner
"""Anything that plays shards: a :class:`LocalRunner` or a :class:`RayRunner`."""


def make_runner(workers: int | None = None, ray_address: str | None = None) -> Runner:
    """:class:`LocalRunner` when both are ``None``, else a :class:`RayRunner`.

    Raises:
        TlmError: a worker count out of ``1..MAX_WORKERS``.
    """
    if workers is None and ray_address is None:
        return LocalRunner()
    return RayRunner(workers=workers, address=ray_address)


def auto_shard_games(
    n_games: int, runner: Runner | None = None, max_batch: int | None = None,
    min_shard: int | None = None,
) -> int:
    """The shard size a match of ``n_games`` gets when its caller names none.

    In this process, one shard of up to :data:`LOCAL_SHARD_GAMES` games (batching is
    the speed); on Ray, about :data:`SHARDS_PER_WORKER` shards per worker, none smaller
    than ``min_shard`` (the smallest ``min_shard_games`` of the match's agents; by
    default :data:`DEFAULT_SHARD_GAMES`). Never more than ``max_batch`` (the smallest
    ``max_batch`` of the match's agents). Results do not depend on it.
    """
    cap = min(LOCAL_SHARD_GAMES, max_batch or LOCAL_SHARD_GAMES)
    size = cap
    if isinstance(runner, RayRunner):
        per_worker = -(-n_games // (SHARDS_PER_WORKER * max(runner.workers, 1)))
        size = min(cap, max(per_worker, min_shard or DEFAULT_SHARD_GAMES))
    return max(1, min(size, n_games))
