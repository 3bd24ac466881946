"""The Ray runner: shards played on Ray actors, on a local Ray it starts or on a cluster
it joins.

Each actor receives a job's agents once, as plain data
(:func:`arena.runners.payloads.agent_payload`), builds them and keeps them for every
shard it plays (and for later jobs with the same payload, recognised by its digest). A
driver-side queue keeps a few shards in flight per actor, requeues the shards of an
actor that dies (replacing the actor) and gives up after :data:`MAX_SHARD_FAILURES`
failures of one shard. Results come back in shard order, as from
:class:`arena.runners.LocalRunner`.
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import itertools
import logging
import os
import socket
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from types import TracebackType
from typing import Any

from arena.core import TlmError
from arena.runners.shards import Job, Shard, ShardPlan, Shards

MAX_WORKERS = 4096
"""The most Ray workers a runner accepts."""

MAX_SHARD_FAILURES = 3
"""A shard whose worker died this many times ends the run with an error."""

IN_FLIGHT_PER_WORKER = 2
"""Shards queued on each actor, so that it never waits for the driver between two."""

CONTEXTS_PER_WORKER = 4
"""Jobs whose built agents each actor keeps (and whose payloads the driver keeps)."""

WINDOW_PER_WORKER = 8
"""How far (in shards per worker) submissions may run ahead of the oldest unfinished
shard; bounds the results the driver holds while it waits for a slow one."""



def _quiet_ray_environment() -> None:
    # Ray 2.60 otherwise turns on token authentication, warns and writes a token file.
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # The shards still in flight when a run stops on an error fail or finish unread;
    # the error that stopped the run is the one to show, not a log line for each.
    os.environ.setdefault("RAY_IGNORE_UNHANDLED_ERRORS", "1")


def start_local_ray(num_cpus: int) -> None:
    """Start a quiet local Ray with ``num_cpus`` CPUs, dashboard and log relay off.

    The caller shuts it down (``ray.shutdown()``).
    """
    if not 0 < num_cpus <= MAX_WORKERS:
        raise TlmError(f"a local Ray needs 1..{MAX_WORKERS} CPUs, got {num_cpus}")
    _quiet_ray_environment()
    import ray

    ray.init(
        address="local",
        num_cpus=num_cpus,
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.ERROR,
        configure_logging=True,
    )


def _check_reachable(address: str) -> None:
    """Refuse a ``host:port`` nothing listens on, before Ray retries for a minute."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise TlmError(
            f"--ray-address must be auto, host:port or ray://host:port, got {address!r}"
        )
    try:
        with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=5):
            pass
    except OSError as e:
        raise TlmError(
            f"cannot reach a Ray cluster at {address}: {e.strerror or e}"
        ) from None


def join_ray(address: str) -> None:
    """Connect to the Ray cluster at ``address`` (``auto``, ``host:port``, ``ray://...``).

    Raises:
        TlmError: nothing answers there, or it is not a Ray cluster.
    """
    _quiet_ray_environment()
    if address != "auto":
        _check_reachable(address.removeprefix("ray://"))
    import ray

    try:
        ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise TlmError(f"cannot join the Ray cluster at {address}: {first}") from None


class _ShardWorker:
    """A Ray actor: builds a job's context once, then plays its shards."""

    def __init__(self) -> None:
        self._contexts: dict[str, Any] = {}

    def pid(self) -> int:
        return os.getpid()

    def run(
        self,
        key: str,
        setup: Callable[[Any], Any],
        payload: list[Any],
        work: Callable[[Any, Shard], Any],
        shard: Shard,
    ) -> Any:
        """Play ``shard`` of the job whose payload digest is ``key``, building the job's
        context the first time this actor meets that payload.

        ``payload`` holds the payload's object reference inside a list, so Ray does not
        fetch it for every shard, only when this actor first sees the job.
        """
        context = self._contexts.get(key)
        if context is None:
            import ray

            # Keep the latest few contexts: a caller replaying the same agents (repeated
            # evaluations, a league's pairings) does not rebuild them every time.
            if len(self._contexts) >= CONTEXTS_PER_WORKER:
                self._contexts.pop(next(iter(self._contexts)))
            context = self._contexts[key] = setup(ray.get(payload[0]))
        return work(context, shard)


class RayRunner:
    """Plays shards on Ray actors: a local Ray it starts, or a cluster it joins.

    Use it as a context manager: entering starts (``workers``) or joins (``address``)
    Ray, or reuses a Ray this process already runs; leaving stops the actors and shuts
    down what it started. Never more actors than the cluster has CPUs.

    Args:
        workers: actors to run (a local Ray gets this many CPUs); ``None``: one per
            CPU of the cluster.
        address: an existing cluster (``auto``, ``host:port``, ``ray://host:10001``);
            ``None`` starts a local Ray.
    """

    def __init__(self, workers: int | None = None, address: str | None = None) -> None:
        if workers is not None and not 0 < workers <= MAX_WORKERS:
            raise TlmError(f"--workers must be in 1..{MAX_WORKERS}, got {workers}")
        if address is not None and not address.strip():
            raise TlmError("--ray-address is empty")
        self.requested = workers
        self.address = address.strip() if address is not None else None
        self.workers = 0
        self._owns_ray = False
        self._actor_cls: Any = None
        self._actors: list[Any] = []
        self._payloads: dict[str, Any] = {}  # payload digest -> object reference
        self.failures = 0
        """Worker deaths survived so far (shards requeued)."""

    def __enter__(self) -> RayRunner:
        import ray

        if self.address is not None and self.address != "auto":
            _check_reachable(self.address.removeprefix("ray://"))
        if not ray.is_initialized():
            if self.address is not None:
                join_ray(self.address)
            else:
                start_local_ray(self.requested or os.cpu_count() or 1)
            self._owns_ray = True
        try:
            cpus = int(ray.cluster_resources().get("CPU", 0))
            if cpus < 1:
                raise TlmError("the Ray cluster has no CPUs to run workers on")
            self.workers = min(self.requested or cpus, cpus)
            self._actor_cls = ray.remote(num_cpus=1, max_restarts=0)(_ShardWorker)
            self._actors = [self._actor_cls.remote() for _ in range(self.workers)]
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop the actors, and Ray itself if this runner started or joined it."""
        import ray

        if ray.is_initialized():
            for actor in self._actors:
                ray.kill(actor)
            if self._owns_ray:
                ray.shutdown()
        self._actors, self._payloads = [], {}
        self._owns_ray = False

    def worker_pids(self) -> list[int]:
        """The process id of each actor (to watch them, or to test their loss)."""
        import ray

        return [int(pid) for pid in ray.get([a.pid.remote() for a in self._actors])]

    def _put(self, job: Job) -> tuple[str, Any]:
        """The digest of the job's payload and its object in Ray's store, put once: a job
        with the same agents and settings as a recent one reuses its object, and the
        actors the agents they built for it."""
        import ray
        import ray.cloudpickle

        payload = job.payload()
        key = hashlib.sha256(ray.cloudpickle.dumps((job.setup, payload))).hexdigest()
        ref = self._payloads.pop(key, None)
        if ref is None:
            ref = ray.put(payload)
        self._payloads[key] = ref  # most recent last
        while len(self._payloads) > CONTEXTS_PER_WORKER:
            self._payloads.pop(next(iter(self._payloads)))
        return key, ref

    def _replace(self, slot: int) -> None:
        import ray

        ray.kill(self._actors[slot])
        self._actors[slot] = self._actor_cls.remote()

    def map(self, job: Job, plan: Shards) -> Iterator[Any]:
        """The result of each shard of ``plan``, in order, played on the actors.

        Raises:
            TlmError: a worker raised one (bad input: not retried), or a shard's
                worker died :data:`MAX_SHARD_FAILURES` times.
        """
        for _, result in self.map_many([(job, plan)]):
            yield result

    def map_many(self, jobs: Sequence[tuple[Job, Shards]]) -> Iterator[tuple[int, Any]]:
        """``(job index, result)`` of every shard of every job, in the order of
        :meth:`LocalRunner.map_many`, the shards of all jobs sharing one queue (many
        small matches, such as a league's, keep every worker busy).

        Raises:
            TlmError: a worker raised one (bad input: not retried), or a shard's
                worker died :data:`MAX_SHARD_FAILURES` times.
        """
        import ray
        from ray.exceptions import (
            ObjectLostError,
            RayActorError,
            RayTaskError,
            WorkerCrashedError,
        )

        if not self._actors:
            raise TlmError("RayRunner is not started: use it in a `with` block")
        lost = (RayActorError, WorkerCrashedError, ObjectLostError)
        puts = [self._put(job) for job, _ in jobs]  # holds every payload for the run
        starts = list(itertools.accumulate((len(plan) for _, plan in jobs), initial=0))
        n_shards = starts[-1]

        def task(f: int) -> tuple[int, str, Job, Any, Shard]:
            """Flat index ``f`` as (job index, payload digest, job, payload, shard)."""
            k = bisect.bisect_right(starts, f) - 1
            job, plan = jobs[k]
            i = f - starts[k]
            shard = plan.shard(i) if isinstance(plan, ShardPlan) else plan[i]
            return k, puts[k][0], job, puts[k][1], shard

        requeued: deque[int] = deque()
        next_new = 0
        next_out = 0
        window = WINDOW_PER_WORKER * len(self._actors)
        in_flight: dict[Any, tuple[int, int]] = {}  # ref -> (slot, flat shard index)
        load = [0] * len(self._actors)
        done: dict[int, Any] = {}
        failures: dict[int, int] = {}
        try:
            while next_out < n_shards:
                # Breadth first: every idle actor gets a shard before any gets a second,
                # so that a job of as many shards as workers runs on all of them.
                for depth, slot in itertools.product(range(IN_FLIGHT_PER_WORKER),
                                                     range(len(self._actors))):
                    if load[slot] > depth:
                        continue
                    if requeued:
                        f = requeued.popleft()
                    elif next_new < n_shards and next_new < next_out + window:
                        f, next_new = next_new, next_new + 1
                    else:
                        break
                    _, key, job, payload_ref, shard = task(f)
                    ref = self._actors[slot].run.remote(
                        key, job.setup, [payload_ref], job.work, shard
                    )
                    in_flight[ref] = (slot, f)
                    load[slot] += 1
                ready, _ = ray.wait(list(in_flight), num_returns=1)
                for ref in ready:
                    slot, f = in_flight.pop(ref)
                    load[slot] -= 1
                    try:
                        done[f] = ray.get(ref)
                    except RayTaskError as e:
                        cause = e.cause if isinstance(e.cause, BaseException) else e
                        if isinstance(cause, TlmError):
                            raise TlmError(str(cause)) from None
                        raise cause from None
                    except lost:
                        failures[f] = failures.get(f, 0) + 1
                        self.failures += 1
                        if failures[f] >= MAX_SHARD_FAILURES:
                            raise TlmError(
                                f"shard {task(f)[4].index} failed {failures[f]} times: its "
                                "Ray worker died each time (out of memory, or killed?)"
                            ) from None
                        requeued.append(f)
                        if not _alive(self._actors[slot]):
                            # Its other shards fail on their own and are requeued then.
                            self._replace(slot)
                while next_out in done:
                    yield task(next_out)[0], done.pop(next_out)
                    next_out += 1
        finally:
            for ref in in_flight:  # an abandoned run leaves no work queued on the actors
                with contextlib.suppress(Exception):
                    ray.cancel(ref)


def _alive(actor: Any) -> bool:
    import ray

    try:
        ray.get(actor.pid.remote(), timeout=10)
    except Exception:
        return False
    return True
