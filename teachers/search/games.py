"""A search learner's training games: its search against the opponents it was given.

:func:`play_training_games` plays about ``steps`` of the learner's moves. Each game's
opponent is drawn with the given weights from the learner's generator; the games
against one opponent are one match of the labelling search
(:class:`teachers.mcts.labeller.SearchLabeller`) collected by
:func:`teachers.generate.collect_positions`, so they run in lockstep (one batched
search per move over all of them) and, on a runner, in shards with the same result.
An opponent named like the learner is the learner itself: those games are its search
against its search (self-play), and both sides' moves are the learner's. Against any
other agent only the learner's moves are recorded.

How many games: the moves a game gives are estimated from the learner's past games
(``moves_per_game``); games are played in passes until ``steps`` moves are reached,
so a call plays whole games and ends a little past ``steps``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from arena.core import Agent
from arena.games import Game
from arena.runners import Runner
from teachers.datasets import Positions
from teachers.generate import collect_positions


@dataclass
class TrainingGames:
    """What :func:`play_training_games` played.

    Attributes:
        positions: the learner's decisions, labelled by its search (both sides'
            decisions in self-play games), games in the order played.
        moves: the learner's moves (``len(positions)``).
        games: games played.
        points: the learner's points (win 1, draw 0.5) per opponent name; in a
            self-play game, those of the match's agent A (whose seat alternates game
            by game), so about half of the games' count.
        counted: games scored per opponent name.
    """

    positions: Positions
    moves: int = 0
    games: int = 0
    points: dict[str, float] = field(default_factory=dict)
    counted: dict[str, int] = field(default_factory=dict)

    def win_rate(self) -> dict[str, float]:
        """The learner's score per opponent name."""
        return {k: self.points[k] / self.counted[k] for k in sorted(self.counted)}


def _score(data: Positions, first_id: int) -> np.ndarray:
    """The learner's outcome in each game of a match that had a learner move.

    Game ``i`` of a match has the labeller (agent A) in seat ``i % 2``; its first
    decision's outcome is its result.
    """
    local = data.game_id - first_id
    mine = data.seat == local % 2
    _, first = np.unique(data.game_id[mine], return_index=True)
    return np.asarray(data.outcome[mine][first], dtype=np.float64)


def play_training_games(
    game: Game,
    labeller: Agent,
    name: str,
    opponents: Sequence[Agent],
    weights: np.ndarray,
    steps: int,
    rng: np.random.Generator,
    *,
    moves_per_game: float,
    first_game_id: int = 0,
    runner: Runner | None = None,
) -> TrainingGames:
    """Play the learner's search against ``opponents`` for about ``steps`` of its moves.

    Args:
        game: the game.
        labeller: the learner's labelling search.
        name: the learner's name (an opponent of that name is the learner itself).
        opponents: who it plays, each game's drawn with probabilities ``weights``.
        weights: sampling probabilities, one per opponent (summing to 1).
        steps: the learner's moves to play (whole games: a little more).
        rng: draws the games' opponents and the matches' seeds.
        moves_per_game: the learner's moves a game is expected to give (> 0).
        first_game_id: ``game_id`` of the first game played.
        runner: where the matches are played (default: this process).
    """
    out = TrainingGames(Positions.empty(game))
    parts: list[Positions] = []
    estimate = max(moves_per_game, 1.0)
    next_id = first_game_id
    while out.moves < steps:
        n = max(1, math.ceil((steps - out.moves) / estimate))
        drawn = rng.choice(len(opponents), size=n, p=weights)
        before = out.moves
        for j, opponent in enumerate(opponents):
            k = int((drawn == j).sum())
            if not k:
                continue
            seed = int(rng.integers(2**31 - 1))
            own = opponent.name == name
            data = collect_positions(game, labeller, k, seed, game_offset=next_id,
                                     opponent=None if own else opponent, runner=runner)
            outcomes = _score(data, next_id)
            points = float(np.where(outcomes > 0, 1.0, np.where(outcomes == 0, 0.5, 0.0)).sum())
            out.points[opponent.name] = out.points.get(opponent.name, 0.0) + points
            out.counted[opponent.name] = out.counted.get(opponent.name, 0) + len(outcomes)
            out.moves += len(data)
            out.games += k
            next_id += k
            parts.append(data)
        estimate = max((out.moves - before) / n, 1.0)
    if parts:
        out.positions = Positions.concat(parts)
    return out
