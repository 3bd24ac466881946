"""The data a distillation round labels: games from a mix of players, every position
reached labelled once by the teacher, and the deduplicated aggregate of all rounds.

Who plays the games is a *mix* the user sets: ``student`` (the student against itself,
DAgger), ``teacher``, or any agent spec (``random``, ``heuristic``, ``alphabeta:2``,
...). Each mix player other than the student plays against the student, so the
positions are the ones the student meets against such play; either side may play a
uniformly random move with probability ``epsilon``, and every game opens with a random
number of random plies drawn from a range.

Games run through :func:`arena.play_matches_many` with their moves recorded, in this
process or on a runner's Ray workers (the players travel there as plain data, with the
same games either way; the matches of a round share one queue of shards). The records
are then replayed here in one batch and the teacher labels every position reached that
the aggregate does not hold yet, whoever played it. :class:`PositionStore` keeps one
row per distinct position (keyed by its observation's bytes) with how often and when
it was reached, and saves to / loads from Parquet so a run can resume.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from arena import (
    Agent,
    Game,
    Pairing,
    PolicyAgent,
    State,
    TlmError,
    get_game,
    make_agent,
    max_batch,
    play_matches_many,
    register_payload,
    rows_rng,
    sample_from,
    uniform_legal,
)
from arena.runners import Runner, agent_payload, build_agent
from teachers.datasets import Positions
from teachers.generate import with_temperature

STUDENT = "student"
TEACHER = "teacher"


class EpsilonAgent(Agent):
    """Plays ``agent``'s moves, each replaced by a uniformly random legal move with
    probability ``epsilon``."""

    def __init__(self, agent: Agent, epsilon: float) -> None:
        self.agent = agent
        self.epsilon = epsilon
        self.name = agent.name if epsilon == 0 else f"{agent.name}+eps{epsilon:g}"
        self.game = agent.game
        self.needs_state = agent.needs_state
        self.uses_observation = agent.uses_observation
        self.max_batch = max_batch(agent)

    def act(
        self, obs: np.ndarray, mask: np.ndarray, rng: np.random.Generator,
        state: State | None = None,
    ) -> np.ndarray:
        actions = np.asarray(self.agent.act(obs, mask, rng, state=state)).astype(np.int64)
        if self.epsilon > 0:
            explore = np.flatnonzero(rng.random(len(actions)) < self.epsilon)
            if explore.size:
                actions[explore] = uniform_legal(mask[explore], rows_rng(rng, explore))
        return actions


class TemperatureAgent(Agent):
    """Samples a policy agent's distribution sharpened or flattened by ``temperature``
    (0: uniform over its most probable moves)."""

    def __init__(self, agent: PolicyAgent, temperature: float) -> None:
        self.agent, self.temperature = agent, temperature
        self.name = agent.name if temperature == 1 else f"{agent.name}@T{temperature:g}"
        self.game = agent.game
        self.needs_state = agent.needs_state
        self.max_batch = max_batch(agent)

    def act(
        self, obs: np.ndarray, mask: np.ndarray, rng: np.random.Generator,
        state: State | None = None,
    ) -> np.ndarray:
        probs = self.agent.policy(obs, mask, state)
        return sample_from(with_temperature(probs, self.temperature), rng)


class MixtureAgent(Agent):
    """DAgger's mixture: each move is the teacher's with probability ``beta``, else the
    student's."""

    def __init__(self, teacher: Agent, student: Agent, beta: float, game: Game) -> None:
        self.teacher, self.student, self.beta = teacher, student, beta
        self._engine = game.make_engine() if teacher.needs_state else None
        self.name = f"{student.name}+{teacher.name}@{beta:g}"
        self.game = student.game
        self.needs_state = teacher.needs_state and beta > 0
        self.max_batch = max_batch(student, teacher)

    def act(
        self, obs: np.ndarray, mask: np.ndarray, rng: np.random.Generator,
        state: State | None = None,
    ) -> np.ndarray:
        actions = np.asarray(self.student.act(obs, mask, rng)).astype(np.int64)
        if self.beta > 0:
            theirs = rng.random(len(actions)) < self.beta
            if theirs.any():
                idx = np.flatnonzero(theirs)
                sub_state = None
                if state is not None and self._engine is not None:
                    sub_state = self._engine.take(state, idx)
                actions[idx] = self.teacher.act(obs[idx], mask[idx], rows_rng(rng, idx),
                                                state=sub_state)
        return actions


# The players above travel to Ray workers as their wrapped agents' payloads and their
# parameters; every random draw they make comes from the generator the match hands
# them, so a shard plays the same moves in this process and on any worker.


def _epsilon_payload(agent: EpsilonAgent) -> dict[str, Any]:
    return {"agent": agent_payload(agent.agent), "epsilon": agent.epsilon}


def _epsilon_from_payload(data: dict[str, Any], game: Game) -> EpsilonAgent:
    return EpsilonAgent(build_agent(data["agent"], game), float(data["epsilon"]))


def _temperature_payload(agent: TemperatureAgent) -> dict[str, Any]:
    return {"agent": agent_payload(agent.agent), "temperature": agent.temperature}


def _temperature_from_payload(data: dict[str, Any], game: Game) -> TemperatureAgent:
    inner = build_agent(data["agent"], game)
    if not isinstance(inner, PolicyAgent):
        raise TlmError(f"agent {inner.name!r} gives no policy to sample at a temperature")
    return TemperatureAgent(inner, float(data["temperature"]))


def _mixture_payload(agent: MixtureAgent) -> dict[str, Any]:
    return {"teacher": agent_payload(agent.teacher), "student": agent_payload(agent.student),
            "beta": agent.beta}


def _mixture_from_payload(data: dict[str, Any], game: Game) -> MixtureAgent:
    return MixtureAgent(build_agent(data["teacher"], game), build_agent(data["student"], game),
                        float(data["beta"]), game)


register_payload(EpsilonAgent, _epsilon_payload, _epsilon_from_payload)
register_payload(TemperatureAgent, _temperature_payload, _temperature_from_payload)
register_payload(MixtureAgent, _mixture_payload, _mixture_from_payload)


def parse_mix(text: str) -> dict[str, float]:
    """``"student=0.5,random=0.1,alphabeta:2=0.4"`` as ``{spec: weight}``.

    Raises:
        TlmError: an entry without ``=``, a weight that is not a non-negative number.
    """
    mix: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        spec, sep, weight = part.rpartition("=")
        if not sep or not spec.strip():
            raise TlmError(f"mix entry {part!r} is not SPEC=WEIGHT (e.g. student=0.5)")
        try:
            w = float(weight)
        except ValueError:
            raise TlmError(f"mix entry {part!r}: weight {weight!r} is not a number") from None
        mix[spec.strip()] = w
    return mix


def check_mix(mix: Mapping[str, float]) -> None:
    """Weights non-negative and finite, at least one positive."""
    if not mix:
        raise TlmError("the mix names no player")
    for spec, w in mix.items():
        if not np.isfinite(w) or w < 0:
            raise TlmError(f"mix weight of {spec!r} must be a non-negative number, got {w}")
    if sum(mix.values()) <= 0:
        raise TlmError("the mix weights sum to zero")


def split_games(n_games: int, mix: Mapping[str, float]) -> dict[str, int]:
    """``n_games`` shared out in proportion to the weights (largest remainders, ties to
    the earlier entry), so the split is the same every time."""
    specs = list(mix)
    w = np.array([mix[s] for s in specs], dtype=np.float64)
    exact = n_games * w / w.sum()
    counts = np.floor(exact).astype(np.int64)
    rest = n_games - int(counts.sum())
    order = sorted(range(len(specs)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[:rest]:
        counts[i] += 1
    return {s: int(c) for s, c in zip(specs, counts, strict=True)}


@dataclass(frozen=True)
class Openings:
    """Every game opens with ``k`` uniformly random plies, ``k`` uniform in ``[low, high]``."""

    low: int = 0
    high: int = 0

    def __post_init__(self) -> None:
        if self.low < 0 or self.high < self.low:
            raise TlmError(f"opening plies must satisfy 0 <= low <= high, got "
                           f"{self.low}..{self.high}")


@dataclass
class Round:
    """What one round of collection did: games, positions and where the time went."""

    games: int
    reached: int
    labelled: int
    play_s: float
    label_s: float


class PositionStore:
    """Distinct labelled positions of every round, with how often and when each was
    reached.

    Arrays (row ``i`` is one position): ``obs``, ``mask``, ``probs`` (teacher policy),
    ``value`` (teacher value, NaN if none), ``outcome_sum`` (sum of the final returns
    for the mover over the games that reached it), ``count``, ``first_round``,
    ``last_round``.
    """

    _FIELDS = ("obs", "mask", "probs", "value", "outcome_sum", "count", "first_round",
               "last_round")

    def __init__(self, game: str | Game) -> None:
        self.game = get_game(game)
        g = self.game
        self.obs = np.zeros((0, *g.obs_shape), dtype=g.obs_dtype)
        self.mask = np.zeros((0, g.num_actions), dtype=np.int8)
        self.probs = np.zeros((0, g.num_actions), dtype=np.float32)
        self.value = np.zeros(0, dtype=np.float32)
        self.outcome_sum = np.zeros(0, dtype=np.float64)
        self.count = np.zeros(0, dtype=np.int64)
        self.first_round = np.zeros(0, dtype=np.int32)
        self.last_round = np.zeros(0, dtype=np.int32)
        self._index: dict[bytes, int] = {}

    def __len__(self) -> int:
        return len(self.count)

    def as_positions(self) -> Positions:
        """The rows as :class:`Positions` (teacher labels, mean outcomes; no game ids)."""
        n = len(self)
        zeros = np.zeros(n, dtype=np.int64)
        return Positions(
            obs=self.obs, mask=self.mask, probs=self.probs, value=self.value,
            outcome=self.outcome, action=zeros.astype(np.int32), game_id=zeros,
            ply=zeros.astype(np.int32), seat=zeros.astype(np.int8),
        )

    @property
    def outcome(self) -> np.ndarray:
        """Mean final return for the mover over the games that reached each position."""
        return (self.outcome_sum / np.maximum(self.count, 1)).astype(np.float32)

    @staticmethod
    def keys(obs: np.ndarray) -> list[bytes]:
        """One key per observation row: its bytes."""
        flat = np.ascontiguousarray(obs).reshape(len(obs), -1)
        return [row.tobytes() for row in flat]

    def lookup(self, keys: list[bytes]) -> np.ndarray:
        """Row of each key, ``-1`` where the store does not hold it."""
        return np.array([self._index.get(k, -1) for k in keys], dtype=np.int64)

    def add(
        self, keys: list[bytes], obs: np.ndarray, mask: np.ndarray, probs: np.ndarray,
        value: np.ndarray, rnd: int,
    ) -> np.ndarray:
        """Append new distinct positions (keys not held yet, each once); their rows."""
        start = len(self)
        for i, k in enumerate(keys):
            if k in self._index:
                raise TlmError("internal: position added twice")
            self._index[k] = start + i
        n = len(keys)
        self.obs = np.concatenate([self.obs, obs.astype(self.obs.dtype, copy=False)])
        self.mask = np.concatenate([self.mask, mask.astype(np.int8, copy=False)])
        self.probs = np.concatenate([self.probs, probs.astype(np.float32, copy=False)])
        self.value = np.concatenate([self.value, value.astype(np.float32, copy=False)])
        self.outcome_sum = np.concatenate([self.outcome_sum, np.zeros(n)])
        self.count = np.concatenate([self.count, np.zeros(n, dtype=np.int64)])
        self.first_round = np.concatenate([self.first_round, np.full(n, rnd, dtype=np.int32)])
        self.last_round = np.concatenate([self.last_round, np.full(n, rnd, dtype=np.int32)])
        return np.arange(start, start + n)

    def visit(self, rows: np.ndarray, outcome: np.ndarray, rnd: int) -> None:
        """Count one visit of each row (repeats allowed) ending in ``outcome``."""
        np.add.at(self.count, rows, 1)
        np.add.at(self.outcome_sum, rows, outcome.astype(np.float64))
        self.last_round[rows] = rnd

    def save(self, path: str | Path) -> None:
        """Write every row as one Parquet file (atomically: temp file, then rename)."""
        path = Path(path)
        n = len(self)

        def fixed(arr: np.ndarray) -> pa.Array:
            flat = np.ascontiguousarray(arr).reshape(n, -1)
            return pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1)), flat.shape[1])

        table = pa.table({
            "obs": fixed(self.obs), "mask": fixed(self.mask), "probs": fixed(self.probs),
            "value": pa.array(self.value), "outcome_sum": pa.array(self.outcome_sum),
            "count": pa.array(self.count), "first_round": pa.array(self.first_round),
            "last_round": pa.array(self.last_round),
        })
        tmp = path.with_name(f".{path.name}.tmp")
        pq.write_table(table, tmp, compression="zstd")
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path, game: str | Game) -> PositionStore:
        """A store saved by :meth:`save`."""
        store = cls(game)
        g = store.game
        try:
            table = pq.read_table(path)
        except (OSError, pa.ArrowException) as e:
            raise TlmError(f"cannot read the aggregated positions {path}: {e}") from None
        n = table.num_rows

        def fixed(name: str, dtype: Any, shape: tuple[int, ...]) -> np.ndarray:
            values = table.column(name).combine_chunks().flatten().to_numpy(
                zero_copy_only=False)
            return values.astype(dtype, copy=False).reshape(n, *shape)

        try:
            store.obs = fixed("obs", g.obs_dtype, g.obs_shape)
            store.mask = fixed("mask", np.int8, (g.num_actions,))
            store.probs = fixed("probs", np.float32, (g.num_actions,))
            for name, dtype in (("value", np.float32), ("outcome_sum", np.float64),
                                ("count", np.int64), ("first_round", np.int32),
                                ("last_round", np.int32)):
                setattr(store, name, table.column(name).to_numpy().astype(dtype))
        except (KeyError, ValueError, pa.ArrowException) as e:
            raise TlmError(f"aggregated positions {path} do not fit {g.name}: {e}") from None
        store._index = {k: i for i, k in enumerate(cls.keys(store.obs))}
        return store


def _replay(
    game: Game, records: list[np.ndarray],
) -> Iterator[tuple[np.ndarray, int, np.ndarray, np.ndarray, np.ndarray, State]]:
    """Every position of the recorded games, a ply at a time:
    ``(games, ply, obs, mask, mover_seat, state)`` over the games still running."""
    engine = game.make_engine()
    n = len(records)
    lengths = np.array([len(r) for r in records], dtype=np.int64)
    moves = np.zeros((n, int(lengths.max(initial=0))), dtype=np.int64)
    for i, r in enumerate(records):
        moves[i, : len(r)] = r
    state = engine.reset(n, seed=0)
    rows = np.arange(n)
    for ply in range(moves.shape[1]):
        going = lengths[rows] > ply
        if not going.all():
            keep = np.flatnonzero(going)
            state, rows = engine.take(state, keep), rows[keep]
        obs, mask = engine.observe(state)
        seat = engine.to_play(state)
        yield rows, ply, obs, mask, seat, state
        state, _, done = engine.step(state, moves[rows, ply])
        ended = rows[done]
        if ended.size and (lengths[ended] != ply + 1).any():
            raise TlmError(f"{game.name}: replaying recorded games did not reproduce "
                           "them (a game with chance cannot be replayed)")


def label_records(
    game: Game,
    teacher: PolicyAgent,
    records: list[np.ndarray],
    outcome_by_seat: np.ndarray,
    store: PositionStore,
    rnd: int,
) -> tuple[int, int]:
    """Replay ``records``, label every position the store lacks, count every visit.

    Args:
        game: the game.
        teacher: labels positions (``policy`` and, if it has one, ``value``).
        records: each game's moves, from its first ply.
        outcome_by_seat: ``[n, 2]`` final return of each seat in each game.
        store: the aggregate, updated in place.
        rnd: the round number recorded with each visit.

    Returns:
        ``(positions reached, positions newly labelled)``.
    """
    reached = labelled = 0
    for games, _ply, obs, mask, seat, state in _replay(game, records):
        live = mask.any(axis=1)
        if not live.all():
            games, obs, mask, seat = games[live], obs[live], mask[live], seat[live]
            state = game.make_engine().take(state, np.flatnonzero(live))
        if not len(games):
            continue
        keys = store.keys(obs)
        rows = store.lookup(keys)
        new = np.flatnonzero(rows < 0)
        if new.size:
            # A position reached twice in this batch is labelled once.
            first: dict[bytes, int] = {}
            for i in new:
                first.setdefault(keys[i], int(i))
            todo = np.array(sorted(first.values()), dtype=np.int64)
            sub_state = (game.make_engine().take(state, todo) if teacher.needs_state
                         else None)
            probs = np.asarray(teacher.policy(obs[todo], mask[todo], sub_state))
            if teacher.has_value:
                value = np.asarray(teacher.value(obs[todo], mask[todo], sub_state))
            else:
                value = np.full(len(todo), np.nan)
            store.add([keys[i] for i in todo], obs[todo], mask[todo], probs, value, rnd)
            labelled += len(todo)
            rows = store.lookup(keys)
        store.visit(rows, outcome_by_seat[games, seat], rnd)
        reached += len(games)
    return reached, labelled


def collect_round(
    game: str | Game,
    teacher: PolicyAgent,
    student: Agent,
    mix: Mapping[str, float],
    n_games: int,
    seed: int,
    store: PositionStore,
    rnd: int,
    *,
    beta: float = 0.0,
    epsilon: float = 0.0,
    openings: Openings | None = None,
    temperature: float = 1.0,
    self_play_teacher: bool = False,
    runner: Runner | None = None,
    agents: Mapping[str, Agent] | None = None,
) -> Round:
    """Play one round of games from ``mix``, label what they reach into ``store``.

    Args:
        game: the game.
        teacher: labels every position.
        student: the student's agent (greedy or sampling, as the caller wants).
        mix: ``{spec: weight}``; ``student``, ``teacher`` or an agent spec.
        n_games: games this round, shared out by weight.
        seed: seeds the round (openings, moves, exploration).
        store: the aggregate, updated in place.
        rnd: the round number.
        beta: the student's moves are the teacher's with this probability (DAgger).
        epsilon: each move of either side is uniformly random with this probability.
        openings: the range of random opening plies.
        temperature: the ``teacher`` entry samples its policy at this temperature.
        self_play_teacher: the ``teacher`` entry plays itself instead of the student
            (offline distillation: the student plays no game).
        runner: where the games are played (default: here); the labelling always
            happens here.
        agents: agents already built for the specs of ``mix`` (else built here).

    Returns:
        A :class:`Round`.
    """
    g = get_game(game)
    check_mix(mix)
    openings = openings or Openings()
    student_side: Agent = MixtureAgent(teacher, student, beta, g) if beta > 0 else student
    student_side = EpsilonAgent(student_side, epsilon)
    counts = split_games(n_games, mix)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0]))
    pairings: list[Pairing] = []
    start = time.perf_counter()
    group_seeds = iter(np.random.SeedSequence([seed, 1]).generate_state(
        len(mix) * (openings.high - openings.low + 1)))
    for spec in mix:
        lengths = rng.integers(openings.low, openings.high + 1, size=counts[spec])
        per_length = np.bincount(lengths - openings.low,
                                 minlength=openings.high - openings.low + 1)
        if spec == STUDENT:
            actor: Agent = student_side
        elif spec == TEACHER:
            actor = EpsilonAgent(TemperatureAgent(teacher, temperature), epsilon)
        else:
            built = (agents or {}).get(spec) or make_agent(spec, g)
            actor = EpsilonAgent(built, epsilon)
        other = actor if spec == STUDENT or (spec == TEACHER and self_play_teacher) \
            else student_side
        for k, n in enumerate(per_length):
            group_seed = int(next(group_seeds))
            if n == 0:
                continue
            pairings.append(Pairing(actor, other, int(n), seed=group_seed,
                                    opening_plies=openings.low + k))
    records: list[np.ndarray] = []
    outcomes: list[np.ndarray] = []
    # One queue for every match of the round: a runner's workers play them side by side.
    for result in play_matches_many(g, pairings, record=True, runner=runner):
        assert result.records is not None
        records.extend(result.records)
        # Seat s's return: A's where A sat in s, else B's.
        by_seat = np.empty((result.n_games, 2))
        a0 = result.seat_a == 0
        by_seat[:, 0] = np.where(a0, result.returns[:, 0], result.returns[:, 1])
        by_seat[:, 1] = np.where(a0, result.returns[:, 1], result.returns[:, 0])
        outcomes.append(by_seat)
    play_s = time.perf_counter() - start
    start = time.perf_counter()
    reached = labelled = 0
    if records:
        reached, labelled = label_records(g, teacher, records, np.concatenate(outcomes),
                                          store, rnd)
    return Round(games=len(records), reached=reached, labelled=labelled, play_s=play_s,
                 label_s=time.perf_counter() - start)


def add_positions(
    store: PositionStore, obs: np.ndarray, mask: np.ndarray, probs: np.ndarray,
    value: np.ndarray, outcome: np.ndarray, rnd: int,
) -> tuple[int, int]:
    """Add already-labelled positions (a dataset's) to ``store``; ``(reached, new)``."""
    keys = store.keys(obs)
    rows = store.lookup(keys)
    first: dict[bytes, int] = {}
    for i in np.flatnonzero(rows < 0):
        first.setdefault(keys[i], int(i))
    todo = np.array(sorted(first.values()), dtype=np.int64)
    if todo.size:
        store.add([keys[i] for i in todo], obs[todo], mask[todo], probs[todo], value[todo], rnd)
    store.visit(store.lookup(keys), outcome, rnd)
    return len(keys), len(todo)
