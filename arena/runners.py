"""Runners: where the shards of a match (or of a game generation) are played.

A long match is cut into *shards* of a fixed number of games (:class:`ShardPlan`), each
with its own seed and first seat, so the result of a shard depends only on the plan,
never on who plays it. A runner plays the shards of a :class:`Job` and yields their
results in shard order:

- :class:`LocalRunner` (the default) plays them one after the other in this process;
- :class:`RayRunner` spreads them over Ray actors, on a local Ray it starts or on a
  cluster it joins. Each actor receives the job's agents once, as plain data
  (:func:`agent_payload`), builds them and keeps them for every shard it plays (and
  for later jobs with the same payload, recognised by its digest). A
  driver-side queue keeps a few shards in flight per actor, requeues the shards of an
  actor that dies (replacing the actor) and gives up after
  :data:`MAX_SHARD_FAILURES` failures of one shard.

The same seed therefore gives the same result with either runner and any number of
workers. Agents travel as their spec (``agent.name``), unless the layer that defines
their class registered a payload with :func:`register_payload` (students ship their
weights, teachers their labellers), so ``arena`` imports nothing above it.
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import importlib
import itertools
import logging
import os
import socket
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import numpy as np

from arena.core import Agent, TlmError
from arena.games import Game

DEFAULT_SHARD_GAMES = 1024
"""The smallest shard :func:`auto_shard_games` sends to a Ray worker (unless the match
or an agent's ``max_batch`` is smaller): big enough that a shard of search or network
play carries well over the ~2 ms a Ray task costs."""

LOCAL_SHARD_GAMES = 1 << 17
"""The largest shard :func:`auto_shard_games` plays in this process: batching is the
speed there, and this many games of the registered games fit in tens of MB."""

SHARDS_PER_WORKER = 4
"""Shards per Ray worker that :func:`auto_shard_games` aims at, so that the queue stays
balanced when shards take unequal times."""

MAX_SHARD_GAMES = 1 << 20
"""The largest shard size accepted (a shard is played as one batch in memory)."""

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


# ---------------------------------------------------------------------------- shards


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


def auto_shard_games(
    n_games: int, runner: Runner | None = None, max_batch: int | None = None
) -> int:
    """The shard size a match of ``n_games`` gets when its caller names none.

    In this process, one shard of up to :data:`LOCAL_SHARD_GAMES` games (batching is
    the speed); on Ray, about :data:`SHARDS_PER_WORKER` shards per worker, none smaller
    than :data:`DEFAULT_SHARD_GAMES`. Never more than ``max_batch`` (the smallest
    ``max_batch`` of the match's agents). Results do not depend on it.
    """
    cap = min(LOCAL_SHARD_GAMES, max_batch or LOCAL_SHARD_GAMES)
    size = cap
    if isinstance(runner, RayRunner):
        per_worker = -(-n_games // (SHARDS_PER_WORKER * max(runner.workers, 1)))
        size = min(cap, max(per_worker, DEFAULT_SHARD_GAMES))
    return max(1, min(size, n_games))


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


# --------------------------------------------------------------------------- payloads

PayloadDump = Callable[[Any], Any]
"""Turns an agent into plain data (numbers, strings, bytes, numpy arrays, dicts)."""

PayloadLoad = Callable[[Any, Game], Agent]
"""Rebuilds the agent from that data, for a game; a module-level function."""

_PAYLOADS: list[tuple[type, PayloadDump, PayloadLoad]] = []


def register_payload(cls: type, dump: PayloadDump, load: PayloadLoad) -> None:
    """Say how agents of class ``cls`` (and its subclasses) travel to workers.

    ``load`` must be a module-level function: it travels by reference, so a worker
    imports its module (registering that layer's agents) before it calls it.
    The latest registration for a class wins.
    """
    _PAYLOADS[:] = [entry for entry in _PAYLOADS if entry[0] is not cls]
    _PAYLOADS.insert(0, (cls, dump, load))


@dataclass(frozen=True)
class AgentPayload:
    """An agent as plain data, for a worker to rebuild once and keep.

    Attributes:
        name: the agent's name (its spec when it was built from one).
        load: rebuilds the agent from ``data``.
        data: plain data.
        module: the module defining the agent's class, imported first on the worker
            so that its layer registers its spec kinds.
    """

    name: str
    load: PayloadLoad
    data: Any
    module: str


def _load_spec(spec: Any, game: Game) -> Agent:
    from arena.agents import make_agent

    try:
        return make_agent(str(spec), game)
    except TlmError as e:
        raise TlmError(
            f"a worker cannot rebuild agent {spec!r} from its name ({e}); an agent that "
            "was not built from a spec travels only if its class registers a payload "
            "(arena.register_payload)"
        ) from None


def agent_payload(agent: Agent) -> AgentPayload:
    """``agent`` as data: its registered payload, or else its spec (``agent.name``)."""
    module = type(agent).__module__
    for cls, dump, load in _PAYLOADS:
        if isinstance(agent, cls):
            return AgentPayload(agent.name, load, dump(agent), module)
    return AgentPayload(agent.name, _load_spec, agent.name, module)


def build_agent(payload: AgentPayload, game: Game) -> Agent:
    """The agent that ``payload`` describes, for ``game``."""
    if payload.module not in ("__main__", "builtins"):
        # A spec still works if its kind is registered some other way.
        with contextlib.suppress(ImportError):
            importlib.import_module(payload.module)
    agent = payload.load(payload.data, game)
    agent.name = payload.name
    return agent


# ------------------------------------------------------------------------------ jobs


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


def make_runner(workers: int | None = None, ray_address: str | None = None) -> Runner:
    """:class:`LocalRunner` when both are ``None``, else a :class:`RayRunner`.

    Raises:
        TlmError: a worker count out of ``1..MAX_WORKERS``.
    """
    if workers is None and ray_address is None:
        return LocalRunner()
    return RayRunner(workers=workers, address=ray_address)


# ------------------------------------------------------------------------------- ray


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
                for slot in range(len(self._actors)):
                    while load[slot] < IN_FLIGHT_PER_WORKER:
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


Runner = LocalRunner | RayRunner
"""Anything that plays shards: a :class:`LocalRunner` or a :class:`RayRunner`."""
