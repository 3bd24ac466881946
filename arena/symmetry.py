"""Board symmetries: the transformations under which a game's rules are unchanged.

Each symmetry is a permutation of the board's cells together with the matching
permutation of actions, so a labelled position (observation, mask, policy) maps to
an equally valid one. Distillation uses them to multiply a teacher's labels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from arena.games import Game, get_game


@dataclass(frozen=True)
class Symmetry:
    """One symmetry: ``cells`` permutes the flattened ``H*W`` board (new cell ``i`` takes
    old cell ``cells[i]``); ``actions`` does the same for action indices."""

    cells: np.ndarray
    actions: np.ndarray

    def apply_obs(self, obs: np.ndarray) -> np.ndarray:
        """``obs[B, H, W, C]`` transformed."""
        b, h, w, c = obs.shape
        return obs.reshape(b, h * w, c)[:, self.cells].reshape(b, h, w, c)

    def apply_actions(self, values: np.ndarray) -> np.ndarray:
        """``values[B, A]`` (a mask or a policy) transformed."""
        return values[:, self.actions]

    def map_action(self, actions: np.ndarray) -> np.ndarray:
        """Action indices ``[B]`` transformed (the inverse permutation)."""
        inverse = np.argsort(self.actions)
        return inverse[actions]


def _grid_symmetries(n: int) -> list[np.ndarray]:
    grid = np.arange(n * n).reshape(n, n)
    out = []
    for k in range(4):
        rotated = np.rot90(grid, k)
        out.append(rotated.reshape(-1))
        out.append(rotated[:, ::-1].reshape(-1))
    return out


def symmetries(game: str | Game) -> list[Symmetry]:
    """The symmetries of a game, identity first; ``[identity]`` for games without any here."""
    name = get_game(game).name
    if name == "tictactoe":
        # An action is a square index 3r+c, exactly the cell index of the observation.
        return [Symmetry(p, p) for p in _grid_symmetries(3)]
    if name == "connect_four":
        cells = np.arange(42).reshape(6, 7)
        cols = np.arange(7)
        return [Symmetry(cells.reshape(-1), cols), Symmetry(cells[:, ::-1].reshape(-1), cols[::-1])]
    g = get_game(game)
    return [Symmetry(np.arange(int(np.prod(g.obs_shape[:2]))), np.arange(g.num_actions))]
