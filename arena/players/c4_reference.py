"""The reference connect-four search: the pure-Python negamax ``alphabeta:D`` first used.

It searches one position at a time over Python-int bitboards, with alpha-beta, a
transposition table and killer moves, under the rules and leaf evaluation of
:mod:`arena.players.connect_four`. The compiled search in
:mod:`arena.players.c4_search` must give the same scores; the tests compare the two on
random positions. Kept for that, and as the readable statement of the search.
"""

from __future__ import annotations

import math

import numpy as np

from arena.core import PolicyAgent, State
from arena.players.connect_four import (
    BOARD,
    BOTTOM,
    COLUMNS,
    EXACT,
    INF,
    LOWER,
    N_CELLS,
    ORDER,
    ORDERS,
    UPPER,
    VALUE_SCALE,
    WIDTH,
    WIN,
    decode_arrays,
    evaluate,
    has_four,
    scores_to_policy,
    winning_cells,
)


class Search:
    """One depth-limited alpha-beta search, with its transposition table and killers."""

    __slots__ = ("tt", "killers", "nodes")

    def __init__(self) -> None:
        self.tt: dict[int, tuple[int, int, int, int]] = {}
        self.killers = [-1] * (N_CELLS + 2)
        self.nodes = 0

    def negamax(self, p: int, mask: int, moves: int, depth: int, alpha: int, beta: int) -> int:
        """Fail-soft negamax score of the position for the mover (``moves`` stones down)."""
        self.nodes += 1
        possible = (mask + BOTTOM) & BOARD
        if not possible:
            return 0
        if winning_cells(p, mask) & possible:
            return WIN + N_CELLS - moves - 1
        opp_wins = winning_cells(p ^ mask, mask)
        lost = -(WIN + N_CELLS - moves - 2)
        forced = possible & opp_wins
        if forced:
            if forced & (forced - 1):
                return lost
            possible = forced
        # A stone right below an opponent's winning cell hands them that cell.
        possible &= ~(opp_wins >> 1)
        if not possible:
            return lost
        if depth <= 0:
            return evaluate(p, mask)

        key = p + mask
        entry = self.tt.get(key)
        tt_move = -1
        if entry is not None:
            e_depth, e_flag, e_value, tt_move = entry
            if e_depth >= depth and (
                e_flag == EXACT
                or (e_flag == LOWER and e_value >= beta)
                or (e_flag == UPPER and e_value <= alpha)
            ):
                return e_value
        alpha0 = alpha
        best, best_col = -INF, -1
        opp = p ^ mask
        for col in ORDERS[(tt_move, self.killers[moves])]:
            bit = possible & COLUMNS[col]
            if not bit:
                continue
            score = -self.negamax(opp, mask | bit, moves + 1, depth - 1, -beta, -alpha)
            if score > best:
                best, best_col = score, col
                if score > alpha:
                    alpha = score
                    if alpha >= beta:
                        self.killers[moves] = col
                        break
        flag = UPPER if best <= alpha0 else LOWER if best >= beta else EXACT
        self.tt[key] = (depth, flag, best, best_col)
        return best


def root_scores(p: int, mask: int, depth: int, margin: int = 1) -> list[float]:
    """Search score of every column for the mover (``-inf`` for full columns).

    Columns that score above ``best - margin`` are exact; the others get an upper
    bound at or below that, which bounds their softmax weight as well.

    Args:
        p: the mover's stones.
        mask: occupied cells.
        depth: plies searched, the root move included.
        margin: how far below the best score a column must still be scored exactly.
    """
    moves = mask.bit_count()
    possible = (mask + BOTTOM) & BOARD
    scores = [-math.inf] * WIDTH
    search = Search()
    best = -INF
    wins = winning_cells(p, mask) & possible
    for col in ORDER:
        bit = possible & COLUMNS[col]
        if not bit:
            continue
        if bit & wins:
            score = WIN + N_CELLS - moves - 1
        elif mask | bit == BOARD:
            score = 0
        else:
            alpha = -INF if best == -INF else best - margin
            score = -search.negamax(p ^ mask, mask | bit, moves + 1, depth - 1, -INF, -alpha)
        scores[col] = float(score)
        best = max(best, score)
    return scores


class ReferenceAlphaBeta(PolicyAgent):
    """``alphabeta:D`` as it was: :func:`root_scores` one position at a time, in Python.

    Results are cached per position, as they were. Same policy and value as
    :class:`arena.players.connect_four.AlphaBetaConnectFour`; benchmarks time the two
    side by side.
    """

    game = "connect_four"

    def __init__(self, depth: int, temperature: float = 0.1, cache_size: int = 200_000) -> None:
        self.depth = depth
        self.temperature = temperature
        self.name = f"reference-alphabeta:{depth}"
        self._cache: dict[tuple[int, int], list[float]] = {}
        self._cache_size = cache_size
        self._margin = max(1, math.ceil(30 * temperature))

    def move_scores(self, obs: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """``[B, 7]`` search scores of every column for the mover (``-inf`` if illegal)."""
        ps, masks = (bits.tolist() for bits in decode_arrays(obs))
        out = np.full((len(ps), WIDTH), -math.inf)
        for i, (p, m) in enumerate(zip(ps, masks, strict=True)):
            if has_four(p ^ m) or m == BOARD:
                continue
            key = (p, m)
            scores = self._cache.get(key)
            if scores is None:
                scores = root_scores(p, m, self.depth, self._margin)
                if len(self._cache) >= self._cache_size:
                    self._cache.clear()
                self._cache[key] = scores
            out[i] = scores
        return np.where(np.asarray(mask) != 0, out, -math.inf)

    def policy(self, obs: np.ndarray, mask: np.ndarray, state: State | None = None) -> np.ndarray:
        return scores_to_policy(self.move_scores(obs, mask), self.temperature)

    def value(self, obs: np.ndarray, mask: np.ndarray, state: State | None = None) -> np.ndarray:
        best = self.move_scores(obs, mask).max(axis=1)
        return np.where(np.isfinite(best), np.tanh(best / VALUE_SCALE), 0.0)
