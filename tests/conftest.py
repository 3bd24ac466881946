"""Shared fixtures: the game registry's reference games and small helpers."""

from __future__ import annotations

import warnings

import pytest

warnings.filterwarnings("ignore", message=".*precision lowered.*")


@pytest.fixture(scope="session")
def ttt_reference():
    """Tic-tac-toe on PettingZoo's own env through the generic adapter (no fast engine)."""
    from arena import Game

    return Game("tictactoe_reference", "pettingzoo.classic.tictactoe_v3")
