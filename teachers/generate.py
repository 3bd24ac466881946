"""Game generation: a teacher plays (or watches another actor play) and labels every
position it meets with its policy and value.

:class:`TeacherLabeller` is an agent that asks the teacher for its distribution at
every decision, then plays the teacher's move (with exploration) or, with probability
``1 - beta``, another actor's move: ``beta = 1`` generates teacher games, ``beta < 1``
is DAgger's mixture of teacher and student. :func:`collect_positions` runs it through
:func:`arena.play_matches` and returns the labelled positions; :func:`generate_dataset`
writes them as a dataset, shard by shard. Both take a runner (:mod:`arena.runners`)
that plays their shards in this process or on Ray workers, with the same positions
either way; a labeller travels to workers as its teacher's and actor's payloads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from arena import (
    Agent,
    Decision,
    Game,
    PolicyAgent,
    State,
    TlmError,
    get_game,
    max_batch,
    min_shard_games,
    play_matches,
    rows_rng,
    sample_from,
    uniform_legal,
)
from arena.runners import (
    AgentPayload,
    Job,
    LocalRunner,
    Runner,
    Shard,
    ShardPlan,
    agent_payload,
    auto_shard_games,
    build_agent,
    register_payload,
)
from arena.runstate import staged_directory
from teachers.datasets import DatasetWriter, Positions


@dataclass(frozen=True)
class Exploration:
    """How generated games stray from the teacher's own choices.

    Attributes:
        temperature: the teacher's move is drawn from ``probs ** (1 / temperature)``;
            0 plays its most probable move.
        epsilon: probability of a uniformly random legal move instead.
        opening_plies: the first plies of each game are uniformly random.
    """

    temperature: float = 1.0
    epsilon: float = 0.0
    opening_plies: int = 0

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise TlmError(f"temperature must be >= 0, got {self.temperature}")
        if not 0.0 <= self.epsilon <= 1.0:
            raise TlmError(f"epsilon must be in [0, 1], got {self.epsilon}")
        if self.opening_plies < 0:
            raise TlmError(f"opening plies must be >= 0, got {self.opening_plies}")


def with_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """``probs ** (1 / T)`` renormalised per row; ``T = 0`` puts all mass on the argmax
    (shared equally among exact ties)."""
    if temperature == 1.0:
        return probs
    if temperature == 0.0:
        top = probs >= probs.max(axis=1, keepdims=True) - 1e-12
        p = top.astype(np.float64)
    else:
        with np.errstate(divide="ignore"):
            logp = np.log(np.maximum(probs, 0.0)) / temperature
        logp -= logp.max(axis=1, keepdims=True)
        p = np.exp(logp)
    return p / p.sum(axis=1, keepdims=True)


class TeacherLabeller(Agent):
    """Acts in a game while the teacher labels each decision.

    After each :meth:`act`, :attr:`labels` holds ``(probs, value)`` of the teacher for
    those rows, in order; an ``observer`` of :func:`arena.play_matches` reads it.
    """

    uses_observation = True

    def __init__(
        self,
        teacher: PolicyAgent,
        actor: Agent | None = None,
        beta: float = 1.0,
        exploration: Exploration | None = None,
    ) -> None:
        if not isinstance(teacher, PolicyAgent):
            raise TlmError(f"teacher {teacher.name!r} gives no policy to learn from")
        if not 0.0 <= beta <= 1.0:
            raise TlmError(f"beta must be in [0, 1], got {beta}")
        self.teacher = teacher
        self.actor = actor
        self.beta = beta
        self.exploration = exploration or Exploration()
        self.name = teacher.name if actor is None else f"{actor.name}+{teacher.name}"
        self.game = teacher.game if teacher.game is not None else getattr(actor, "game", None)
        if actor is not None and actor.needs_state:
            raise TlmError(f"a search agent ({actor.name!r}) cannot be the acting player here")
        self.needs_state = teacher.needs_state
        players = (teacher,) if actor is None else (teacher, actor)
        self.max_batch = max_batch(*players)
        self.min_shard_games = min_shard_games(*players)
        self.labels: tuple[np.ndarray, np.ndarray] | None = None

    def act(
        self,
        obs: np.ndarray,
        mask: np.ndarray,
        rng: np.random.Generator,
        state: State | None = None,
    ) -> np.ndarray:
        probs = self.teacher.policy(obs, mask, state)
        if self.teacher.has_value:
            value = np.asarray(self.teacher.value(obs, mask, state), dtype=np.float32)
        else:
            value = np.full(len(obs), np.nan, dtype=np.float32)
        self.labels = (probs.astype(np.float32), value)
        ex = self.exploration
        actions = sample_from(with_temperature(probs, ex.temperature), rng)
        if self.actor is not None and self.beta < 1.0:
            own = rng.random(len(actions)) >= self.beta
            if own.any():
                idx = np.flatnonzero(own)
                actions[idx] = self.actor.act(obs[idx], mask[idx], rows_rng(rng, idx))
        if ex.epsilon > 0:
            explore = np.flatnonzero(rng.random(len(actions)) < ex.epsilon)
            if explore.size:
                actions[explore] = uniform_legal(mask[explore], rows_rng(rng, explore))
        return actions


def _labeller_payload(labeller: TeacherLabeller) -> dict[str, Any]:
    ex = labeller.exploration
    return {
        "teacher": agent_payload(labeller.teacher),
        "actor": None if labeller.actor is None else agent_payload(labeller.actor),
        "beta": labeller.beta,
        "exploration": [ex.temperature, ex.epsilon, ex.opening_plies],
    }


def _labeller_from_payload(data: dict[str, Any], game: Game) -> TeacherLabeller:
    teacher = build_agent(data["teacher"], game)
    if not isinstance(teacher, PolicyAgent):
        raise TlmError(f"teacher {teacher.name!r} gives no policy to learn from")
    actor = None if data["actor"] is None else build_agent(data["actor"], game)
    return TeacherLabeller(teacher, actor, data["beta"], Exploration(*data["exploration"]))


register_payload(TeacherLabeller, _labeller_payload, _labeller_from_payload)


def is_labeller(agent: Agent) -> bool:
    """Whether ``agent`` labels its own decisions: after each ``act``, its ``labels``
    hold ``(probs, value)`` for those rows, and its ``exploration`` says how its games
    open (:class:`TeacherLabeller`, or a search that plays and labels its own moves,
    :class:`teachers.mcts.labeller.SearchLabeller`)."""
    return hasattr(agent, "labels") and isinstance(getattr(agent, "exploration", None),
                                                   Exploration)


@dataclass
class _Collection:
    """What a worker needs to collect positions: the game, the labeller and its opponent."""

    game: Game
    labeller: Agent
    opponent: Agent


def _collection_payload(c: _Collection) -> tuple[str, AgentPayload, AgentPayload | None]:
    same = c.opponent is c.labeller
    return (c.game.name, agent_payload(c.labeller),
            None if same else agent_payload(c.opponent))


def _collection_setup(payload: tuple[str, AgentPayload, AgentPayload | None]) -> _Collection:
    name, pa, pb = payload
    g = get_game(name)
    labeller = build_agent(pa, g)
    opponent = labeller if pb is None else build_agent(pb, g)
    if not is_labeller(labeller):
        raise TlmError("collecting positions needs a labelling agent")
    return _Collection(g, labeller, opponent)


def _collect_shard(c: _Collection, shard: Shard) -> Positions:
    """The labelled positions of one shard; ``game_id`` counts from the match's start."""
    labellers = (c.labeller, c.opponent)
    labelled = (True, is_labeller(c.opponent))
    parts: list[dict[str, np.ndarray]] = []

    def observe(d: Decision) -> None:
        if not labelled[d.player]:
            return
        labels = labellers[d.player].labels  # type: ignore[attr-defined]
        assert labels is not None and d.obs is not None
        probs, value = labels
        parts.append({
            "obs": d.obs, "mask": d.mask, "probs": probs, "value": value,
            "action": d.actions.astype(np.int32), "game_id": d.games, "ply": d.ply,
            "seat": d.seat.astype(np.int8),
        })

    result = play_matches(
        c.game, c.labeller, c.opponent, shard.n_games, seed=shard.seed, observer=observe,
        first_seat=shard.first_seat, opening_plies=c.labeller.exploration.opening_plies,  # type: ignore[attr-defined]
        shard_games=shard.n_games, first_game=shard.first_game,
    )
    if not parts:
        return Positions.empty(c.game)
    cat = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    games = cat["game_id"]
    seat_is_a = cat["seat"] == result.seat_a[games]
    outcome = np.where(seat_is_a, result.returns[games, 0], result.returns[games, 1])
    order = np.lexsort((cat["ply"], games))
    return Positions(
        obs=cat["obs"], mask=cat["mask"], probs=cat["probs"], value=cat["value"],
        outcome=outcome.astype(np.float32), action=cat["action"],
        game_id=(games + shard.start).astype(np.int64), ply=cat["ply"].astype(np.int32),
        seat=cat["seat"],
    ).select(order)


def collect_positions(
    game: str | Game,
    labeller: Agent,
    n_games: int,
    seed: int | np.random.SeedSequence,
    game_offset: int = 0,
    opponent: Agent | None = None,
    *,
    runner: Runner | None = None,
    shard_games: int | None = None,
    first_game: int = 0,
) -> Positions:
    """Play ``n_games`` games of ``labeller`` against ``opponent`` (default: itself);
    every decision of both sides, labelled by their teachers, or only the labeller's
    decisions when ``opponent`` labels nothing (any agent: a reference, a snapshot).

    ``game_id`` runs from ``game_offset``; ``outcome`` is the final return of the
    mover's seat. The games are games ``first_game ..`` of the match seeded by
    ``seed`` (:func:`arena.play_matches`), played in shards of ``shard_games`` (default:
    the arena picks) on ``runner`` (default: this process); the positions are the same
    whatever the runner and the shard size.
    """
    g = get_game(game)
    other = labeller if opponent is None else opponent
    if shard_games is None:
        shard_games = auto_shard_games(n_games, runner, max_batch(labeller, other),
                                       min_shard_games(labeller, other))
    # Seats alternate along the whole match: game i has the labeller in seat i % 2.
    plan = ShardPlan.make(n_games, seed, shard_games, first_seat=first_game % 2,
                          first_game=first_game)
    c = _Collection(g, labeller, other)
    job = Job(work=_collect_shard, context=c, payload=lambda: _collection_payload(c),
              setup=_collection_setup)
    parts = [p for p in (runner or LocalRunner()).map(job, plan) if len(p)]
    if not parts:
        return Positions.empty(g)
    positions = parts[0] if len(parts) == 1 else Positions.concat(parts)
    if game_offset:
        positions.game_id = positions.game_id + game_offset
    return positions


@dataclass
class _Generation:
    game: Game
    labeller: TeacherLabeller


def _generation_payload(c: _Generation) -> tuple[str, AgentPayload]:
    return c.game.name, agent_payload(c.labeller)


def _generation_setup(payload: tuple[str, AgentPayload]) -> _Generation:
    name, p = payload
    g = get_game(name)
    labeller = build_agent(p, g)
    if not isinstance(labeller, TeacherLabeller):
        raise TlmError("generation needs a teacher labeller")
    return _Generation(g, labeller)


def _generate_shard(c: _Generation, shard: Shard) -> Positions:
    """One dataset shard's positions: games ``shard.start ..`` of the generation's match."""
    return collect_positions(c.game, c.labeller, shard.n_games, shard.seed,
                             game_offset=shard.start, first_game=shard.first_game)


MAX_GENERATED_GAMES = 10**9
"""The most games one generation accepts."""


def generate_dataset(
    game: str | Game,
    teacher: PolicyAgent,
    n_games: int,
    out_dir: str | Path,
    seed: int = 0,
    exploration: Exploration | None = None,
    games_per_shard: int = 2000,
    progress: Callable[[int], Any] | None = None,
    *,
    runner: Runner | None = None,
) -> Path:
    """Teacher self-play games written as a dataset at ``out_dir`` (created atomically).

    Args:
        game: the game.
        teacher: a policy agent; its policy and value label every position.
        n_games: games to play.
        out_dir: a new (or empty) directory.
        seed: seeds every shard.
        exploration: temperature, epsilon and random opening plies.
        games_per_shard: games per Parquet shard (also the unit of progress and the
            unit of work a runner hands to a worker).
        progress: called with the number of games finished after each shard.
        runner: where the shards are played (default: this process); the dataset is
            the same whatever the runner, and its positions whatever ``games_per_shard``.
    """
    g = get_game(game)
    if n_games <= 0:
        raise TlmError(f"the number of games must be positive, got {n_games}")
    if n_games > MAX_GENERATED_GAMES:
        raise TlmError(f"at most {MAX_GENERATED_GAMES} games per dataset, got {n_games}")
    exploration = exploration or Exploration()
    labeller = TeacherLabeller(teacher, exploration=exploration)
    info = {
        "teacher": teacher.name,
        "seed": seed,
        "exploration": {
            "temperature": exploration.temperature,
            "epsilon": exploration.epsilon,
            "opening_plies": exploration.opening_plies,
        },
    }
    shards = ShardPlan.make(n_games, seed, games_per_shard)
    c = _Generation(g, labeller)
    job = Job(work=_generate_shard, context=c, payload=lambda: _generation_payload(c),
              setup=_generation_setup)
    with staged_directory(out_dir) as tmp:
        writer = DatasetWriter(tmp, g, info)
        done = 0
        for shard, positions in zip(shards, (runner or LocalRunner()).map(job, shards),
                                    strict=True):
            writer.write(positions)
            done = shard.start + shard.n_games
            if progress is not None:
                progress(done)
        writer.close()
    return Path(out_dir)
