"""The one-ply heuristic player: win if you can, else block, else play at random.

It reads only the observation planes, for tic-tac-toe (a mark goes on any empty
square) and connect four (a piece drops to the lowest empty row), and is vectorized
over the batch: for every legal move it looks up the lines through the square the
move fills and checks whether the mover (a win) or the opponent (a block) already
holds all the other squares of one of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

from arena.core import PolicyAgent, State, TlmError


@dataclass(frozen=True)
class LineGame:
    """An m,n,k-game board: ``rows x cols``, ``k`` in a row wins, with or without gravity."""

    rows: int
    cols: int
    k: int
    gravity: bool

    @property
    def n_cells(self) -> int:
        return self.rows * self.cols


LINE_GAMES = {
    "tictactoe": LineGame(3, 3, 3, gravity=False),
    "connect_four": LineGame(6, 7, 4, gravity=True),
}


DIRECTIONS: dict[str, tuple[int, int]] = {
    "horizontal": (0, 1), "vertical": (1, 0), "diagonal": (1, 1), "antidiagonal": (1, -1)}
"""The directions of a line, as (row step, column step); rows count from the top."""


@cache
def lines_through(board: LineGame, directions: tuple[str, ...] = tuple(DIRECTIONS)
                  ) -> np.ndarray:
    """``[cells + 1, L, k-1]``: for each cell, the other cells of every line through it
    that runs in one of ``directions`` (keys of :data:`DIRECTIONS`).

    Rows are padded with the index ``n_cells``, a cell that is never occupied; row
    ``n_cells`` itself (the target of a full column) holds padding only.
    """
    lines: list[list[int]] = []
    for dr, dc in (DIRECTIONS[d] for d in directions):
        for r in range(board.rows):
            for c in range(board.cols):
                end_r, end_c = r + dr * (board.k - 1), c + dc * (board.k - 1)
                if 0 <= end_r < board.rows and 0 <= end_c < board.cols:
                    lines.append([(r + dr * i) * board.cols + c + dc * i for i in range(board.k)])
    per_cell: list[list[list[int]]] = [[] for _ in range(board.n_cells)]
    for line in lines:
        for cell in line:
            per_cell[cell].append([o for o in line if o != cell])
    width = max(1, *(len(p) for p in per_cell))
    out = np.full((board.n_cells + 1, width, board.k - 1), board.n_cells, dtype=np.int64)
    for cell, others in enumerate(per_cell):
        out[cell, : len(others)] = others
    return out


def target_cells(board: LineGame, obs: np.ndarray) -> np.ndarray:
    """``[B, A]``: the cell each action would fill (``n_cells`` for a full column)."""
    b = len(obs)
    if not board.gravity:
        return np.broadcast_to(np.arange(board.n_cells), (b, board.n_cells))
    occupied = obs.reshape(b, board.rows, board.cols, 2).any(axis=-1)
    # Pieces stack from the bottom (the last row), so the free cells of a column are its
    # top rows and the piece lands on the lowest of them.
    free = board.rows - occupied.sum(axis=1)
    cols = np.arange(board.cols)
    return np.where(free > 0, (free - 1) * board.cols + cols, board.n_cells)


def completing_moves(board: LineGame, obs: np.ndarray, mask: np.ndarray,
                     directions: tuple[str, ...] = tuple(DIRECTIONS)) -> np.ndarray:
    """``[B, 2, A]`` bool: legal moves that complete a line (of those running in
    ``directions``) for the mover (plane 0) and for the opponent (plane 1, the squares
    to block)."""
    b = len(obs)
    planes = obs.reshape(b, board.n_cells, 2).astype(bool)
    padded = np.concatenate([planes, np.zeros((b, 1, 2), dtype=bool)], axis=1)
    others = lines_through(board, directions)[target_cells(board, obs)]  # [B, A, L, k-1]
    rows = np.arange(b)[:, None, None, None]
    legal = mask != 0
    out = np.empty((b, 2, mask.shape[1]), dtype=bool)
    for side in (0, 1):
        out[:, side] = padded[rows, others, side].all(axis=-1).any(axis=-1) & legal
    return out


class HeuristicAgent(PolicyAgent):
    """Take a winning move, else block the opponent's, else play uniformly at random.

    Its policy is uniform over the moves of the first class that has any. It sees the
    lines running in ``directions`` only (all by default; fewer make the ``blind:``
    players of connect four).
    """

    name = "heuristic"

    def __init__(self, game: str, directions: tuple[str, ...] = tuple(DIRECTIONS),
                 name: str = "heuristic") -> None:
        if game not in LINE_GAMES:
            raise TlmError(f"heuristic plays {', '.join(LINE_GAMES)}, not {game}")
        self.game = game
        self.board = LINE_GAMES[game]
        self.directions = directions
        self.name = name

    def policy(self, obs: np.ndarray, mask: np.ndarray, state: State | None = None) -> np.ndarray:
        obs, mask = np.asarray(obs), np.asarray(mask)
        expected = (self.board.rows, self.board.cols, 2)
        if obs.ndim != 4 or obs.shape[1:] != expected:
            raise TlmError(
                f"{self.game} observations must have shape [B, {', '.join(map(str, expected))}], "
                f"got {list(obs.shape)}"
            )
        win, block = completing_moves(self.board, obs, mask, self.directions).transpose(1, 0, 2)
        legal = mask != 0
        chosen = np.where(
            win.any(axis=1, keepdims=True), win,
            np.where(block.any(axis=1, keepdims=True), block, legal),
        ).astype(np.float64)
        return chosen / np.maximum(chosen.sum(axis=1, keepdims=True), 1.0)
