"""Reinforcement learning measured the way distillation is: games until perfect play.

:func:`selfplay_games_to_perfect` trains MaskablePPO by self-play (optionally
kickstarted by a teacher) and checks the exact tic-tac-toe strength of its greedy
policy at fixed intervals, stopping at the first check with zero exhaustive losses or
when a cap on games is reached. The benchmark compares its count with the teacher
games that DAgger and offline distillation need.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

from arena import TlmError, exact_strength, get_game
from distill.kickstart import distill_kickstart, student_net_arch
from teachers.sb3 import SB3Agent, train_selfplay

MAX_STEPS_PER_GAME = 9
"""An upper bound on learner moves per tic-tac-toe game, to size the step budget."""


class PerfectPlayStop(BaseCallback):
    """Counts finished games; every ``check_every`` learner steps measures exact
    strength, and stops training at zero exhaustive losses or at ``max_games``."""

    def __init__(self, game: str, check_every: int, max_games: int) -> None:
        super().__init__()
        self.game = game
        self.check_every = check_every
        self.max_games = max_games
        self.games = 0
        self.last_check = 0
        self.curve: list[dict[str, float]] = []
        self.perfect_at: int | None = None

    def _on_step(self) -> bool:
        self.games += int(np.sum(self.locals["dones"]))
        if self.num_timesteps - self.last_check < self.check_every:
            return self.games < self.max_games
        self.last_check = self.num_timesteps
        agent = SB3Agent(self.model, game=self.game, greedy=True, name="learner")
        exact = exact_strength(self.game, agent)
        assert exact is not None
        self.curve.append({
            "steps": self.num_timesteps, "games": self.games,
            "exhaustive_losses": exact["exhaustive_losses"],
            "optimal_accuracy": exact["optimal_accuracy"],
        })
        if exact["exhaustive_losses"] == 0:
            self.perfect_at = self.games
            return False
        return self.games < self.max_games


def selfplay_games_to_perfect(
    student: str,
    seed: int,
    max_games: int,
    check_every: int = 2048,
    teacher: str | None = None,
) -> dict[str, Any]:
    """Self-play MaskablePPO on tic-tac-toe until its greedy play never loses.

    Args:
        student: ``mlp:WIDTHxLAYERS``: the SB3 policy's hidden sizes.
        seed: the run's seed.
        max_games: stop after this many self-play games if not perfect by then.
        check_every: learner steps between exact-strength checks.
        teacher: if given, kickstart from this teacher (its weight annealed to zero
            over the first half of the step budget).

    Returns:
        ``games_to_perfect`` (``None`` if never reached), ``games``, ``steps``, ``curve``
        (the checks), ``wall_s``.
    """
    g = get_game("tictactoe")
    if max_games <= 0 or check_every <= 0:
        raise TlmError("max_games and check_every must be positive")
    stop = PerfectPlayStop(g.name, check_every, max_games)
    steps = max_games * MAX_STEPS_PER_GAME
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        if teacher is None:
            run = train_selfplay(g, steps, Path(tmp), seed, net_arch=student_net_arch(student),
                                 eval_games=0, callbacks=[stop])
            num_steps = int(run.model.num_timesteps)
        else:
            model = distill_kickstart(g, teacher, student, steps, seed, tmp,
                                      anneal_steps=steps // 4, eval_games=0, callbacks=[stop])
            num_steps = int(model.num_timesteps)
    return {
        "games_to_perfect": stop.perfect_at,
        "games": stop.games,
        "steps": num_steps,
        "curve": stop.curve,
        "wall_s": time.perf_counter() - start,
    }
