"""Connect-four search: negamax with alpha-beta over Python-int bitboards.

Boards use the classic layout: column ``c`` holds bits ``7c .. 7c+5`` (bottom row
first) and bit ``7c+6`` stays empty as a sentinel, so one shift moves a stone one
step in any direction without wrapping into the next column. A position is the
mover's stones ``p`` and the occupied cells ``mask``.

Scores are from the mover's point of view, in heuristic points. A game won when the
``n``-th stone lands scores ``WIN + 42 - n`` for the winner, so sooner wins score
higher and every score is a function of the position alone (transposition entries
stay valid wherever the position is met). Non-terminal leaves get a positional
evaluation: open windows of four holding two or three of a player's stones, threats
(empty cells that would complete four) on the rows whose parity favours their owner,
and stones in the centre column.

The search also applies two exact rules at every node: a player who can win at once
does, and a player never plays a move that lets the opponent win at once unless every
move does (then the node is lost). Leaves therefore see wins one ply deeper.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from arena.core import PolicyAgent, State, TlmError

WIDTH = 7
HEIGHT = 6
H1 = HEIGHT + 1
N_CELLS = WIDTH * HEIGHT
OBS_SHAPE = (HEIGHT, WIDTH, 2)

BOTTOM = sum(1 << (c * H1) for c in range(WIDTH))
BOARD = BOTTOM * ((1 << HEIGHT) - 1)
COLUMNS = tuple(((1 << HEIGHT) - 1) << (c * H1) for c in range(WIDTH))
CENTER = COLUMNS[WIDTH // 2]
ODD_ROWS = BOTTOM * 0b010101
"""Rows 1, 3, 5 counted from the bottom."""
EVEN_ROWS = BOTTOM * 0b101010
ORDER = (3, 2, 4, 1, 5, 0, 6)
"""Centre-first move order: central columns take part in more lines."""

WIN = 1_000_000
"""Base of a win's score; heuristic scores stay far below it."""
INF = 10 * WIN

CENTER_WEIGHT = 3
TWO_WEIGHT = 2
THREE_WEIGHT = 4
PARITY_WEIGHT = 20
VALUE_SCALE = 40.0
"""Heuristic points that :meth:`AlphaBetaConnectFour.value` squashes to tanh(1)."""

EXACT, LOWER, UPPER = 0, 1, 2


def _window_starts(dr: int, dc: int) -> int:
    """Bits of the cells that start a window of four stepping ``(dr, dc)`` (row up, column)."""
    starts = 0
    for c in range(WIDTH):
        for r in range(HEIGHT):
            if 0 <= c + 3 * dc < WIDTH and 0 <= r + 3 * dr < HEIGHT:
                starts |= 1 << (c * H1 + r)
    return starts


# (shift, window starts): vertical, horizontal, and the two diagonals.
DIRECTIONS = (
    (1, _window_starts(1, 0)),
    (H1, _window_starts(0, 1)),
    (H1 + 1, _window_starts(1, 1)),
    (H1 - 1, _window_starts(-1, 1)),
)


def _orders() -> dict[tuple[int, int], tuple[int, ...]]:
    """Move orders that try a first and a second column (-1: none) before the rest."""
    out = {}
    for first in range(-1, WIDTH):
        for second in range(-1, WIDTH):
            head = [m for m in (first, second) if m >= 0]
            head = list(dict.fromkeys(head))
            out[(first, second)] = tuple(head + [m for m in ORDER if m not in head])
    return out


ORDERS = _orders()

# Obs cell (row from the top, column) -> bit of the layout above.
_OBS_BITS = np.array(
    [[c * H1 + (HEIGHT - 1 - r) for c in range(WIDTH)] for r in range(HEIGHT)], dtype=np.int64
).reshape(-1)
_OBS_WEIGHTS = np.left_shift(np.int64(1), _OBS_BITS)


def winning_cells(p: int, mask: int) -> int:
    """Empty cells where one more stone of ``p`` would make four in a row."""
    r = (p << 1) & (p << 2) & (p << 3)
    for s in (H1, H1 - 1, H1 + 1):
        t = (p << s) & (p << 2 * s)
        r |= t & (p << 3 * s)
        r |= t & (p >> s)
        t = (p >> s) & (p >> 2 * s)
        r |= t & (p << s)
        r |= t & (p >> 3 * s)
    return r & (BOARD ^ mask)


def has_four(p: int) -> bool:
    """Whether the stones ``p`` hold four in a row."""
    for s in (1, H1, H1 - 1, H1 + 1):
        m = p & (p >> s)
        if m & (m >> 2 * s):
            return True
    return False


def _window_points(p: int, opp: int) -> int:
    """Windows of four free of ``opp`` that hold two or three stones of ``p``."""
    free = BOARD & ~opp
    points = 0
    for s, starts in DIRECTIONS:
        s2, s3 = 2 * s, 3 * s
        w = starts & free & (free >> s) & (free >> s2) & (free >> s3)
        if not w:
            continue
        a, b, c, d = p, p >> s, p >> s2, p >> s3
        ab, cd = a & b, c & d
        ge2 = ab | cd | ((a | b) & (c | d))
        ge3 = (ab & (c | d)) | (cd & (a | b))
        points += THREE_WEIGHT * (w & ge3).bit_count() + TWO_WEIGHT * (w & ge2 & ~ge3).bit_count()
    return points


def evaluate(p: int, mask: int) -> int:
    """Positional score of a non-terminal position for the mover, in heuristic points."""
    opp = p ^ mask
    score = (
        _window_points(p, opp)
        - _window_points(opp, p)
        + CENTER_WEIGHT * ((p & CENTER).bit_count() - (opp & CENTER).bit_count())
    )
    mine_t, theirs_t = winning_cells(p, mask), winning_cells(opp, mask)
    # With the board filling column by column, the first player tends to get the odd
    # rows (1st, 3rd, 5th from the bottom) and the second player the even ones: a
    # threat on one's own parity is the one that decides endgames.
    if mask.bit_count() % 2 == 0:
        good_mine, good_theirs = ODD_ROWS, EVEN_ROWS
    else:
        good_mine, good_theirs = EVEN_ROWS, ODD_ROWS
    score += PARITY_WEIGHT * (
        (mine_t & good_mine).bit_count() - (theirs_t & good_theirs).bit_count()
    )
    return score


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


def decode(obs: np.ndarray) -> tuple[list[int], list[int]]:
    """Bitboards ``(p, mask)`` of a batch of observations ``[B, 6, 7, 2]``."""
    obs = np.asarray(obs)
    if obs.ndim != 4 or obs.shape[1:] != OBS_SHAPE:
        raise TlmError(
            f"connect-four observations must have shape [B, 6, 7, 2], got {list(obs.shape)}"
        )
    flat = obs.reshape(len(obs), N_CELLS, 2).astype(np.int64)
    mine = flat[:, :, 0] @ _OBS_WEIGHTS
    theirs = flat[:, :, 1] @ _OBS_WEIGHTS
    return [int(x) for x in mine], [int(m | t) for m, t in zip(mine, theirs, strict=True)]


def play_moves(columns: Sequence[int]) -> np.ndarray:
    """The observation ``[6, 7, 2]`` (for the player to move) after 0-indexed ``columns``."""
    board = np.zeros((HEIGHT, WIDTH), dtype=np.int8)  # 1: first player, 2: second
    for i, c in enumerate(columns):
        free = np.flatnonzero(board[:, c] == 0)
        if free.size == 0:
            raise TlmError(f"column {c} is full at move {i + 1}")
        board[free[-1], c] = 1 + i % 2
    mover = 1 + len(columns) % 2
    return np.stack([board == mover, board == 3 - mover], axis=-1).astype(np.int8)


class AlphaBetaConnectFour(PolicyAgent):
    """Depth-limited negamax with alpha-beta, transposition table and killer moves.

    Its policy is a softmax of the root columns' scores (heuristic points) at
    ``temperature``; at temperature 0 it is uniform over the best-scoring columns.
    The default, 0.1, makes a one-point difference a factor of e^10: it plays the
    best column and breaks exact ties at random. Its value is ``tanh(best / 40)``
    (±1 for a forced result within the horizon).

    Results are cached per position (they depend on the position alone), which pays
    off in openings and when labelling many games.
    """

    game = "connect_four"

    def __init__(self, depth: int, temperature: float = 0.1, cache_size: int = 200_000) -> None:
        if depth < 1:
            raise TlmError(f"alphabeta depth must be at least 1, got {depth}")
        if temperature < 0:
            raise TlmError(f"alphabeta temperature must be >= 0, got {temperature}")
        self.depth = depth
        self.temperature = temperature
        self.name = f"alphabeta:{depth}"
        self._cache: dict[tuple[int, int], list[float]] = {}
        self._cache_size = cache_size
        # Columns more than this far below the best get softmax weight < e^-30.
        self._margin = max(1, math.ceil(30 * temperature))

    def move_scores(self, obs: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """``[B, 7]`` search scores of every column for the mover (``-inf`` if illegal)."""
        ps, masks = decode(obs)
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


def scores_to_policy(scores: np.ndarray, temperature: float) -> np.ndarray:
    """Softmax of ``scores[B, A]`` at ``temperature`` (0: uniform over the maxima).

    Rows with no finite score get all-zero probabilities.
    """
    best = scores.max(axis=1, keepdims=True)
    live = np.isfinite(best)
    safe_best = np.where(live, best, 0.0)
    if temperature == 0:
        weights = (scores == safe_best).astype(np.float64)
    else:
        with np.errstate(invalid="ignore"):
            weights = np.exp((scores - safe_best) / temperature)
        weights = np.where(np.isfinite(scores), weights, 0.0)
    weights *= live
    return weights / np.maximum(weights.sum(axis=1, keepdims=True), 1e-300)
