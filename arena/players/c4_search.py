"""Fast connect-four search: the bitboard negamax of ``alphabeta:D``, compiled by numba.

The same search as :mod:`arena.players.c4_reference` (same rules at every node, same
leaf evaluation, same scores), on ``int64`` bitboards and compiled to machine code,
with three things the reference lacks:

- one transposition table, allocated once and reused across searches (entries carry
  the number of the search that wrote them, so a new search starts clean without
  clearing the table);
- iterative deepening from depth 5 on, which fills the table with the best moves of
  the shallower searches and orders the root's columns by their previous scores;
- move ordering by the threats a move creates, principal-variation (null-window)
  search, leaves evaluated by their parent without a call, and no table probes in
  the last plies (where a cache miss costs more than the subtree);
- exact solving: a position with at most ``solve`` empty cells is searched to the end
  of the game, so its scores are exact (no heuristic leaf is ever reached).

Every search value is the depth-limited negamax value (table entries are used for
cut-offs only when they were searched at least as deep, and within one search a
position always has the same remaining depth), so the root's exact scores equal the
reference's. See :mod:`arena.players.connect_four` for the board layout and scores.

numba compiles the kernels on first use and caches them on disk (``cache=True``),
so later processes load them in well under a second.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import numpy as np
from numba import njit, types
from numba.extending import intrinsic

# The board layout, the scores and the evaluation's weights are those of the rules
# module; numba reads these module globals as compile-time constants.
from arena.players.connect_four import (
    BOARD,
    BOTTOM,
    CENTER,
    CENTER_WEIGHT,
    COLUMNS,
    DIRECTIONS,
    EVEN_ROWS,
    EXACT,
    H1,
    INF,
    LOWER,
    N_CELLS,
    ODD_ROWS,
    PARITY_WEIGHT,
    THREE_WEIGHT,
    TWO_WEIGHT,
    UPPER,
    WIDTH,
    WIN,
)
from arena.players.connect_four import ORDER as ORDER_TUPLE

(_, STARTS_V), (_, STARTS_H), (_, STARTS_D1), (_, STARTS_D2) = DIRECTIONS
COLUMN0 = COLUMNS[0]
ORDER = np.array(ORDER_TUPLE, dtype=np.int64)
TABLE_FROM = 3
"""Nodes with at least this many plies left use the transposition table."""
ITERATIVE_FROM = 5
"""Searches this deep or deeper deepen iteratively (shallower ones gain nothing)."""


@intrinsic
def _ctpop(typingctx, x):
    """Number of set bits of an int64 (one ``popcnt`` instruction)."""
    if not isinstance(x, types.Integer):
        return None
    sig = types.int64(x)

    def codegen(context, builder, signature, args):
        return builder.ctpop(args[0])

    return sig, codegen


_popcount = cast(Callable[[int], int], _ctpop)


@njit(cache=True, inline="always")
def winning_cells(p: int, mask: int) -> int:
    """Empty cells where one more stone of ``p`` makes four in a row."""
    r = (p << 1) & (p << 2) & (p << 3)
    s = H1
    t = (p << s) & (p << 2 * s)
    r |= t & (p << 3 * s)
    r |= t & (p >> s)
    t = (p >> s) & (p >> 2 * s)
    r |= t & (p << s)
    r |= t & (p >> 3 * s)
    s = H1 - 1
    t = (p << s) & (p << 2 * s)
    r |= t & (p << 3 * s)
    r |= t & (p >> s)
    t = (p >> s) & (p >> 2 * s)
    r |= t & (p << s)
    r |= t & (p >> 3 * s)
    s = H1 + 1
    t = (p << s) & (p << 2 * s)
    r |= t & (p << 3 * s)
    r |= t & (p >> s)
    t = (p >> s) & (p >> 2 * s)
    r |= t & (p << s)
    r |= t & (p >> 3 * s)
    return r & (BOARD ^ mask)


@njit(cache=True, inline="always")
def has_four(p: int) -> bool:
    """Whether the stones ``p`` hold four in a row."""
    m = p & (p >> 1)
    if m & (m >> 2):
        return True
    m = p & (p >> H1)
    if m & (m >> 2 * H1):
        return True
    m = p & (p >> (H1 - 1))
    if m & (m >> 2 * (H1 - 1)):
        return True
    m = p & (p >> (H1 + 1))
    return (m & (m >> 2 * (H1 + 1))) != 0


@njit(cache=True, inline="always")
def _direction_points(p: int, free: int, s: int, starts: int) -> int:
    w = starts & free & (free >> s) & (free >> 2 * s) & (free >> 3 * s)
    if w == 0:
        return 0
    a = p
    b = p >> s
    c = p >> 2 * s
    d = p >> 3 * s
    ab = a & b
    cd = c & d
    ge2 = ab | cd | ((a | b) & (c | d))
    ge3 = (ab & (c | d)) | (cd & (a | b))
    return THREE_WEIGHT * _popcount(w & ge3) + TWO_WEIGHT * _popcount(w & ge2 & ~ge3)


@njit(cache=True, inline="always")
def _window_points(p: int, opp: int) -> int:
    free = BOARD & ~opp
    return (
        _direction_points(p, free, 1, STARTS_V)
        + _direction_points(p, free, H1, STARTS_H)
        + _direction_points(p, free, H1 + 1, STARTS_D1)
        + _direction_points(p, free, H1 - 1, STARTS_D2)
    )


@njit(cache=True)
def evaluate(p: int, mask: int, mine_t: int, theirs_t: int) -> int:
    """Positional score for the mover (the reference's ``evaluate``), threats given."""
    opp = p ^ mask
    score = (
        _window_points(p, opp)
        - _window_points(opp, p)
        + CENTER_WEIGHT * (_popcount(p & CENTER) - _popcount(opp & CENTER))
    )
    if _popcount(mask) % 2 == 0:
        good_mine = ODD_ROWS
        good_theirs = EVEN_ROWS
    else:
        good_mine = EVEN_ROWS
        good_theirs = ODD_ROWS
    score += PARITY_WEIGHT * (_popcount(mine_t & good_mine) - _popcount(theirs_t & good_theirs))
    return score


@njit(cache=True, inline="always")
def _leaf(p: int, mask: int, moves: int) -> int:
    """A node at depth 0: the exact rules, then the evaluation (no table, no children)."""
    possible = (mask + BOTTOM) & BOARD
    if possible == 0:
        return 0
    mine_t = winning_cells(p, mask)
    if mine_t & possible:
        return WIN + N_CELLS - moves - 1
    theirs_t = winning_cells(p ^ mask, mask)
    forced = possible & theirs_t
    if forced:
        if forced & (forced - 1):
            return -(WIN + N_CELLS - moves - 2)
        possible = forced
    if possible & ~(theirs_t >> 1) == 0:
        return -(WIN + N_CELLS - moves - 2)
    return evaluate(p, mask, mine_t, theirs_t)


@njit(cache=True, inline="always")
def _slot(key: int, bits: int) -> int:
    return ((key * -7046029254386353131) >> 20) & ((1 << bits) - 1)


@njit(cache=True)
def _negamax(
    p: int, mask: int, moves: int, depth: int, alpha: int, beta: int,
    tt_key: np.ndarray, tt_val: np.ndarray, tt_meta: np.ndarray, bits: int, gen: int,
    killers: np.ndarray, scratch: np.ndarray, counter: np.ndarray,
) -> int:
    """Fail-soft negamax score for the mover (``moves`` stones down), as the reference."""
    counter[0] += 1
    possible = (mask + BOTTOM) & BOARD
    if possible == 0:
        return 0
    mine_t = winning_cells(p, mask)
    if mine_t & possible:
        return WIN + N_CELLS - moves - 1
    opp = p ^ mask
    theirs_t = winning_cells(opp, mask)
    lost = -(WIN + N_CELLS - moves - 2)
    forced = possible & theirs_t
    if forced:
        if forced & (forced - 1):
            return lost
        possible = forced
    # A stone right below an opponent's winning cell hands them that cell.
    possible &= ~(theirs_t >> 1)
    if possible == 0:
        return lost
    if depth <= 0:
        return evaluate(p, mask, mine_t, theirs_t)

    key = p + mask
    slot = _slot(key, bits)
    tt_move = -1
    # Nodes near the leaves skip the table: a probe there (a cache miss, mostly) costs
    # more than searching their few leaves again.
    use_table = depth >= TABLE_FROM
    if use_table and tt_key[slot] == key:
        meta = tt_meta[slot]
        if (meta >> 16) == gen:
            e_depth = meta & 0xFF
            e_flag = (meta >> 8) & 0xF
            e_value = tt_val[slot]
            if e_depth >= depth and (
                e_flag == EXACT
                or (e_flag == LOWER and e_value >= beta)
                or (e_flag == UPPER and e_value <= alpha)
            ):
                return e_value
            tt_move = ((meta >> 12) & 0xF) - 1
    alpha0 = alpha
    best = -INF
    best_col = -1
    killer = killers[moves]
    # Order: the table's move, the killer, then columns by the threats they create
    # (deep nodes only: the count costs more than it saves near the leaves), centre first.
    # The order lives in per-ply scratch rows (0: columns, 1: sort keys): allocating
    # inside the recursion would cost more than the node.
    n = 0
    if tt_move >= 0 and possible & (COLUMN0 << (tt_move * H1)):
        scratch[moves, 0, n] = tt_move
        n += 1
    if killer >= 0 and killer != tt_move and possible & (COLUMN0 << (killer * H1)):
        scratch[moves, 0, n] = killer
        n += 1
    head = n
    for i in range(WIDTH):
        col = ORDER[i]
        if col in (tt_move, killer):
            continue
        if possible & (COLUMN0 << (col * H1)):
            if depth >= 3:
                bit = possible & (COLUMN0 << (col * H1))
                k = _popcount(winning_cells(p | bit, mask | bit)) * 8 + (WIDTH - i)
            else:
                k = WIDTH - i
            # insertion sort, best key first
            j = n
            while j > head and scratch[moves, 1, j - 1] < k:
                scratch[moves, 1, j] = scratch[moves, 1, j - 1]
                scratch[moves, 0, j] = scratch[moves, 0, j - 1]
                j -= 1
            scratch[moves, 1, j] = k
            scratch[moves, 0, j] = col
            n += 1
    for i in range(n):
        col = scratch[moves, 0, i]
        bit = possible & (COLUMN0 << (col * H1))
        if depth == 1:
            # Children are leaves: evaluated here, without a call that passes the table.
            counter[0] += 1
            score = -_leaf(opp, mask | bit, moves + 1)
        elif i == 0 or depth < 3:
            score = -_negamax(opp, mask | bit, moves + 1, depth - 1, -beta, -alpha,
                              tt_key, tt_val, tt_meta, bits, gen, killers, scratch, counter)
        else:
            # Principal variation search: prove the move no better than alpha with a
            # null window; search it fully only when that fails.
            score = -_negamax(opp, mask | bit, moves + 1, depth - 1, -alpha - 1, -alpha,
                              tt_key, tt_val, tt_meta, bits, gen, killers, scratch, counter)
            if alpha < score < beta:
                score = -_negamax(opp, mask | bit, moves + 1, depth - 1, -beta, -score,
                                  tt_key, tt_val, tt_meta, bits, gen, killers, scratch,
                                  counter)
        if score > best:
            best = score
            best_col = col
            if score > alpha:
                alpha = score
                if alpha >= beta:
                    killers[moves] = col
                    break
    if best <= alpha0:
        flag = UPPER
    elif best >= beta:
        flag = LOWER
    else:
        flag = EXACT
    if not use_table:
        return best
    tt_key[slot] = key
    tt_val[slot] = best
    tt_meta[slot] = (gen << 16) | ((best_col + 1) << 12) | (flag << 8) | min(depth, 255)
    return best


@njit(cache=True)
def _root(
    p: int, mask: int, depth: int, margin: int, out: np.ndarray,
    tt_key: np.ndarray, tt_val: np.ndarray, tt_meta: np.ndarray, bits: int, gen: int,
    killers: np.ndarray, scratch: np.ndarray, counter: np.ndarray,
) -> None:
    """Scores of every column at ``depth`` into ``out[7]`` (``-inf`` for full columns)."""
    moves = _popcount(mask)
    possible = (mask + BOTTOM) & BOARD
    wins = winning_cells(p, mask) & possible
    for c in range(WIDTH):
        out[c] = -np.inf
    order = ORDER.copy()
    prev = np.full(WIDTH, -np.inf)
    start = 1 if depth >= ITERATIVE_FROM else depth
    for d in range(start, depth + 1):
        for k in range(killers.size):
            killers[k] = -1
        best = -INF
        for i in range(WIDTH):
            col = order[i]
            bit = possible & (COLUMN0 << (col * H1))
            if bit == 0:
                continue
            if bit & wins:
                score = WIN + N_CELLS - moves - 1
            elif (mask | bit) == BOARD:
                score = 0
            else:
                a = -INF if best == -INF else best - margin
                score = -_negamax(p ^ mask, mask | bit, moves + 1, d - 1, -INF, -a,
                                  tt_key, tt_val, tt_meta, bits, gen, killers, scratch,
                                  counter)
            out[col] = score
            if score > best:
                best = score
        if d < depth:
            # the next iteration tries the columns in order of these scores
            for c in range(WIDTH):
                prev[c] = out[c]
            for i in range(1, WIDTH):
                j = i
                while j > 0 and prev[order[j]] > prev[order[j - 1]]:
                    t = order[j]
                    order[j] = order[j - 1]
                    order[j - 1] = t
                    j -= 1


@njit(cache=True)
def _search_batch(
    ps: np.ndarray, masks: np.ndarray, depth: int, margin: int, solve: int,
    tt_key: np.ndarray, tt_val: np.ndarray, tt_meta: np.ndarray, bits: int, gen0: int,
    out: np.ndarray, counter: np.ndarray,
) -> int:
    killers = np.full(N_CELLS + 2, -1, dtype=np.int64)
    scratch = np.empty((N_CELLS + 2, 2, WIDTH), dtype=np.int64)
    gen = gen0
    for i in range(ps.size):
        p = ps[i]
        mask = masks[i]
        if has_four(p ^ mask) or mask == BOARD:
            continue
        gen += 1
        empties = N_CELLS - _popcount(mask)
        d = depth
        if empties <= solve and empties > d:
            d = empties
        _root(p, mask, d, margin, out[i], tt_key, tt_val, tt_meta, bits, gen, killers,
              scratch, counter)
    return gen


class SearchTable:
    """A transposition table for :func:`search_scores`, reused across calls.

    Args:
        bits: the table holds ``2 ** bits`` entries (17 bytes each).
    """

    def __init__(self, bits: int = 18) -> None:
        self.bits = bits
        self.key = np.full(1 << bits, -1, dtype=np.int64)
        self.val = np.zeros(1 << bits, dtype=np.int64)
        self.meta = np.zeros(1 << bits, dtype=np.int64)
        self.gen = 0
        self.nodes = 0


GEN_LIMIT = 1 << 40
"""Search numbers wrap below this (entries of a wrapped-around number are cleared)."""


def search_scores(
    ps: np.ndarray,
    masks: np.ndarray,
    depth: int,
    margin: int = 1,
    solve: int = 0,
    table: SearchTable | None = None,
) -> np.ndarray:
    """``[B, 7]`` scores of every column for the mover of each position.

    Args:
        ps: ``[B]`` int64, the mover's stones.
        masks: ``[B]`` int64, occupied cells.
        depth: plies searched, the root move included.
        margin: columns scoring above ``best - margin`` are exact; the others get an
            upper bound at or below that (a huge margin makes every column exact).
        solve: positions with at most this many empty cells are searched to the end.
        table: a transposition table to reuse (a fresh one otherwise).

    Returns:
        float64 scores: ``-inf`` for full columns and for finished positions' rows.
    """
    if table is None:
        table = SearchTable()
    ps = np.ascontiguousarray(ps, dtype=np.int64)
    masks = np.ascontiguousarray(masks, dtype=np.int64)
    out = np.full((len(ps), WIDTH), -np.inf)
    if table.gen + len(ps) + 1 >= GEN_LIMIT:
        table.key.fill(-1)
        table.gen = 0
    counter = np.zeros(1, dtype=np.int64)
    table.gen = int(_search_batch(
        ps, masks, int(depth), int(margin), int(solve), table.key, table.val, table.meta,
        table.bits, table.gen, out, counter,
    ))
    table.nodes += int(counter[0])
    return out
