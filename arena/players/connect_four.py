"""Connect four for search players: bitboards, the rules and leaf evaluation, ``alphabeta:D``.

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

The functions here work on Python ints and state the rules and the evaluation
plainly; the search itself runs compiled (:mod:`arena.players.c4_search`, loaded on
first use so that importing :mod:`arena` does not load numba), and the pure-Python
search it replaced stays as the reference (:mod:`arena.players.c4_reference`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

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


def decode_arrays(obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bitboards ``(p, mask)`` of observations ``[B, 6, 7, 2]`` as two int64 arrays
    (``.tolist()`` gives them as Python ints)."""
    obs = np.asarray(obs)
    if obs.ndim != 4 or obs.shape[1:] != OBS_SHAPE:
        raise TlmError(
            f"connect-four observations must have shape [B, 6, 7, 2], got {list(obs.shape)}"
        )
    flat = obs.reshape(len(obs), N_CELLS, 2).astype(np.int64)
    mine = flat[:, :, 0] @ _OBS_WEIGHTS
    return mine, mine | (flat[:, :, 1] @ _OBS_WEIGHTS)


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


SHARED_TABLE_BITS = 18
"""Transposition-table size of the search that every ``alphabeta`` agent shares (2**18
entries, 6 MiB)."""

_shared_table: Any = None


def _table() -> Any:
    """The process's transposition table (searches stamp their entries, so agents can
    share it)."""
    global _shared_table
    if _shared_table is None:
        from arena.players.c4_search import SearchTable

        _shared_table = SearchTable(SHARED_TABLE_BITS)
    return _shared_table


ALPHABETA_USAGE = (
    "alphabeta:D[,t=T][,solve=K] (D = search depth in plies; T = policy temperature in "
    "score points, default 0.1; K = solve exactly when at most K cells are empty, "
    "default 0; e.g. alphabeta:4, alphabeta:8,t=2,solve=14)"
)


def parse_alphabeta(arg: str | None) -> tuple[int, float, int]:
    """``(depth, temperature, solve)`` from the argument of an ``alphabeta`` spec.

    Raises:
        TlmError: a missing or non-positive depth, an unknown key, or a bad number.
    """
    if not arg:
        raise TlmError(f"missing depth in agent spec ({ALPHABETA_USAGE})")
    head, *options = [part.strip() for part in arg.split(",")]
    try:
        depth = int(head)
    except ValueError:
        raise TlmError(f"expected a number in agent spec, got {head!r} ({ALPHABETA_USAGE})"
                       ) from None
    if depth <= 0:
        raise TlmError(f"the number in agent spec must be positive, got {depth} "
                       f"({ALPHABETA_USAGE})")
    temperature, solve = 0.1, 0
    for option in options:
        key, sep, value = option.partition("=")
        try:
            if key == "t" and sep:
                temperature = float(value)
                if not math.isfinite(temperature) or temperature < 0:
                    raise ValueError
            elif key == "solve" and sep:
                solve = int(value)
                if not 0 <= solve <= N_CELLS:
                    raise ValueError
            else:
                raise TlmError(f"unknown alphabeta option {option!r} ({ALPHABETA_USAGE})")
        except ValueError:
            raise TlmError(f"bad value in alphabeta option {option!r} ({ALPHABETA_USAGE})"
                           ) from None
    return depth, temperature, solve


class AlphaBetaConnectFour(PolicyAgent):
    """Depth-limited negamax with alpha-beta, transposition table and move ordering.

    The search is compiled (:mod:`arena.players.c4_search`) and gives the same scores
    as the pure-Python reference (:mod:`arena.players.c4_reference`). Its policy is a
    softmax of the root columns' scores (heuristic points; a win is worth about a
    million) at ``temperature``; at temperature 0 it is uniform over the best-scoring
    columns. The default, 0.1, makes a one-point difference a factor of e^10: it plays
    the best column and breaks exact ties at random; higher temperatures give soft
    labels (columns within about ``30 * temperature`` points of the best are scored
    exactly, the rest get weights below e^-30). Its value is ``tanh(best / 40)`` (±1
    for a forced result within the horizon, 0 for an exact draw).

    Args:
        depth: plies searched, the root move included.
        temperature: of the policy's softmax, in score points.
        solve: positions with at most this many empty cells are searched to the end
            of the game (exact scores); 0 never.
    """

    game = "connect_four"
    max_batch = 1024
    """Its search costs the same per game at any batch; shards of this size keep a long
    match's progress visible."""

    def __init__(self, depth: int, temperature: float = 0.1, solve: int = 0) -> None:
        if depth < 1:
            raise TlmError(f"alphabeta depth must be at least 1, got {depth}")
        if temperature < 0:
            raise TlmError(f"alphabeta temperature must be >= 0, got {temperature}")
        if not 0 <= solve <= N_CELLS:
            raise TlmError(f"alphabeta solve must be in [0, {N_CELLS}], got {solve}")
        self.depth = depth
        self.temperature = temperature
        self.solve = solve
        self.name = f"alphabeta:{depth}"
        # Columns more than this far below the best get softmax weight < e^-30.
        self._margin = max(1, math.ceil(30 * temperature))
        # policy() then value() on the same batch (as labelling does) search once.
        self._last: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def move_scores(self, obs: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """``[B, 7]`` search scores of every column for the mover (``-inf`` if illegal)."""
        from arena.players.c4_search import search_scores

        obs = np.asarray(obs)
        mask = np.asarray(mask)
        last = self._last
        if (last is not None and last[0].shape == obs.shape and last[1].shape == mask.shape
                and np.array_equal(last[0], obs) and np.array_equal(last[1], mask)):
            return last[2]
        ps, masks = decode_arrays(obs)
        out = search_scores(ps, masks, self.depth, self._margin, self.solve, _table())
        out = np.where(mask != 0, out, -math.inf)
        self._last = (obs.copy(), mask.copy(), out)
        return out

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
