"""The reference connect-four search: the pure-Python negamax ``alphabeta:D`` first used.

It searches one position at a time over Python-int bitboards, with alpha-beta, a
transposition table and killer moves, under the rules and leaf evaluation of
:mod:`arena.players.connect_four`. The compiled search in
:mod:`arena.players.c4_search` must give the same scores; the tests compare the two on
random positions. Kept for that, and as the readable statement of the search.
"""

from __future__ import annotations

import math

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
    WIDTH,
    WIN,
    evaluate,
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
