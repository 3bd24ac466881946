"""One round's games and their labels: games from a mix of players, every position
reached labelled once by the teacher into the run's :class:`distill.store.PositionStore`.

Who plays the games is a *mix*: ``student`` (the student against itself, DAgger),
``teacher``, or any agent spec (``random``, ``heuristic``, ``alphabeta:2``, ...). Each
mix player other than the student plays against the student, so the positions are the
ones the student meets against such play; either side may play a uniformly random move
with probability ``epsilon``, and every game opens with a random number of random plies
drawn from a range.

Games run through :func:`arena.play_matches_many` with their moves recorded, in this
process or on a runner's Ray workers (the players of :mod:`distill.players` travel
there as plain data, with the same games either way; the matches of a round share one
queue of shards). The records are then replayed here in one batch and the teacher
labels every position reached that the store does not hold yet, whoever played it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from arena import (
    Agent,
    Game,
    Pairing,
    PolicyAgent,
    State,
    TlmError,
    get_game,
    make_agent,
    play_matches_many,
)
from arena.runners import Runner
from distill.players import EpsilonAgent, MixtureAgent, TemperatureAgent
from distill.store import PositionStore

STUDENT = "student"
TEACHER = "teacher"


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
class Collected:
    """What one round of collection did: games, positions and where the time went.

    Attributes:
        games: games played (or taken from a dataset).
        reached: positions reached (each visit counts).
        labelled: positions the teacher labelled for the first time: the round's cost.
        play_s: seconds spent playing.
        label_s: seconds spent labelling.
        info: what the strategy reports about the round (columns of the curve).
    """

    games: int
    reached: int
    labelled: int
    play_s: float = 0.0
    label_s: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)


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
    for games, ply, obs, mask, seat, state in _replay(game, records):
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
            store.add([keys[i] for i in todo], obs[todo], mask[todo], probs, value, rnd,
                      np.full(len(todo), ply), seat[todo])
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
) -> Collected:
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
        What the round did.
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
    return Collected(games=len(records), reached=reached, labelled=labelled, play_s=play_s,
                 label_s=time.perf_counter() - start)
