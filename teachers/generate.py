"""Game generation: a teacher plays (or watches another actor play) and labels every
position it meets with its policy and value.

:class:`TeacherLabeller` is an agent that asks the teacher for its distribution at
every decision, then plays the teacher's move (with exploration) or, with probability
``1 - beta``, another actor's move: ``beta = 1`` generates teacher games, ``beta < 1``
is DAgger's mixture of teacher and student. :func:`collect_positions` runs it through
:func:`arena.play_matches` and returns the labelled positions; :func:`generate_dataset`
writes them as a dataset, shard by shard.
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
    play_matches,
    sample_from,
    uniform_legal,
)
from arena.io import staged_directory
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
                actions[idx] = self.actor.act(obs[idx], mask[idx], rng)
        if ex.epsilon > 0:
            explore = rng.random(len(actions)) < ex.epsilon
            if explore.any():
                actions[explore] = uniform_legal(mask[explore], rng)
        return actions


def collect_positions(
    game: str | Game,
    labeller: TeacherLabeller,
    n_games: int,
    seed: int,
    game_offset: int = 0,
    opponent: TeacherLabeller | None = None,
) -> Positions:
    """Play ``n_games`` games of ``labeller`` against ``opponent`` (default: itself);
    every decision of both sides, labelled by their teachers.

    ``game_id`` runs from ``game_offset``; ``outcome`` is the final return of the
    mover's seat.
    """
    g = get_game(game)
    other = labeller if opponent is None else opponent
    labellers = (labeller, other)
    parts: list[dict[str, np.ndarray]] = []

    def observe(d: Decision) -> None:
        labels = labellers[d.player].labels
        assert labels is not None and d.obs is not None
        probs, value = labels
        parts.append({
            "obs": d.obs, "mask": d.mask, "probs": probs, "value": value,
            "action": d.actions.astype(np.int32), "game_id": d.games, "ply": d.ply,
            "seat": d.seat.astype(np.int8),
        })

    result = play_matches(
        g, labeller, other, n_games, seed=seed, observer=observe,
        opening_plies=labeller.exploration.opening_plies,
    )
    if not parts:
        return Positions.empty(g)
    cat = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    games = cat["game_id"]
    seat_is_a = cat["seat"] == result.seat_a[games]
    outcome = np.where(seat_is_a, result.returns[games, 0], result.returns[games, 1])
    order = np.lexsort((cat["ply"], games))
    return Positions(
        obs=cat["obs"], mask=cat["mask"], probs=cat["probs"], value=cat["value"],
        outcome=outcome.astype(np.float32), action=cat["action"],
        game_id=(games + game_offset).astype(np.int64), ply=cat["ply"].astype(np.int32),
        seat=cat["seat"],
    ).select(order)


def generate_dataset(
    game: str | Game,
    teacher: PolicyAgent,
    n_games: int,
    out_dir: str | Path,
    seed: int = 0,
    exploration: Exploration | None = None,
    games_per_shard: int = 2000,
    progress: Callable[[int], Any] | None = None,
) -> Path:
    """Teacher self-play games written as a dataset at ``out_dir`` (created atomically).

    Args:
        game: the game.
        teacher: a policy agent; its policy and value label every position.
        n_games: games to play.
        out_dir: a new (or empty) directory.
        seed: seeds every shard.
        exploration: temperature, epsilon and random opening plies.
        games_per_shard: games per Parquet shard (also the unit of progress).
        progress: called with the number of games finished after each shard.
    """
    g = get_game(game)
    if n_games <= 0:
        raise TlmError(f"the number of games must be positive, got {n_games}")
    if games_per_shard <= 0:
        raise TlmError(f"games per shard must be positive, got {games_per_shard}")
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
    shard_seeds = np.random.SeedSequence(seed).generate_state(-(-n_games // games_per_shard))
    with staged_directory(out_dir) as tmp:
        writer = DatasetWriter(tmp, g, info)
        done = 0
        for shard_seed in shard_seeds:
            n = min(games_per_shard, n_games - done)
            writer.write(collect_positions(g, labeller, n, int(shard_seed), game_offset=done))
            done += n
            if progress is not None:
                progress(done)
        writer.close()
    return Path(out_dir)
