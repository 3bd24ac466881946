"""Tested settings for the runs tlm ships: the demo, the tests and the benchmarks use
them, so a figure in the README comes from the same settings a user gets."""

from __future__ import annotations

from typing import Any

TICTACTOE_DAGGER: dict[str, Any] = {
    "game": "tictactoe",
    "teacher": "perfect",
    "student": "mlp:128x2",
    "method": "dagger",
    "budget_games": 500,
    "games_per_round": 25,
    "epsilon": 0.3,
    "epochs": 4,
    "eval_games": 200,
    "eval_opponents": ["random", "heuristic"],
    "holdout_games": 50,
    "stop_when_perfect": True,
}
"""DAgger from the perfect player into a fresh 128x2 MLP: the student plays both seats
(30% of its moves random, so it meets replies it would not make), the teacher labels
every position, and each position is learned in its 8 symmetric images."""

CONNECT_FOUR_DAGGER: dict[str, Any] = {
    "game": "connect_four",
    "teacher": "alphabeta:4",
    "student": "res:64x3",
    "method": "dagger",
    "budget_games": 3000,
    "games_per_round": 400,
    "opponent": "alphabeta:4",
    "opening_plies": 2,
    "epochs": 6,
    "batch_size": 256,
    "lr": 2e-3,
    "eval_games": 100,
    "eval_opponents": ["alphabeta:4", "random"],
    "eval_opening_plies": 2,
    "holdout_games": 20,
}
"""DAgger from ``alphabeta:4`` into a fresh small residual network (3 blocks of 64
channels): the student plays against the teacher, the teacher labels both sides, two
random opening plies vary the games."""
