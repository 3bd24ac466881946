"""Compiled game rules for the fast search: connect four and tic-tac-toe on bitboards.

Both games are held the same way, as two ``int64`` bitboards: ``mover`` (the stones of
the player to move) and ``occupied`` (all stones). Connect four uses the engine's
layout (bit ``7c + h`` is column ``c`` at height ``h``; see
:mod:`arena.engines.connect_four` and :mod:`arena.players.c4_search`, whose
``has_four`` it reuses); tic-tac-toe sets bit ``a`` for square ``a``. The kernels are
numba functions that take the game's id (:data:`CONNECT_FOUR`, :data:`TICTACTOE`)
and branch on it, so one compiled search serves both games:

- :func:`legal_bits`, :func:`play`: the rules (legal moves as a bit per action, a
  move's new position, whether it won, whether the board is full);
- :func:`immediate_outcome`: what the rules alone prove about a live position (the
  mover wins at once, or cannot stop the opponent from winning at once);
- :func:`write_observation`: the PettingZoo observation planes of the mover, exactly
  what the engine's ``observe`` gives;
- :func:`position_key`, :func:`canonical`: a 64-bit key that identifies a position
  exactly (no collisions), and its smallest form over the game's symmetries
  (connect four: the left-right mirror; tic-tac-toe: the 8 symmetries of the square)
  with the symmetry that gives it, so symmetric positions share one evaluation and
  :data:`ACTION_MAPS` takes a policy back.

:func:`from_engine_state` turns an engine's batched state into these bitboards.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from arena.core import State, TlmError
from arena.players.c4_search import BOARD as C4_BOARD
from arena.players.c4_search import BOTTOM as C4_BOTTOM
from arena.players.c4_search import has_four, winning_cells
from arena.symmetry import symmetries

CONNECT_FOUR = 0
TICTACTOE = 1
GAME_IDS: dict[str, int] = {"connect_four": CONNECT_FOUR, "tictactoe": TICTACTOE}
"""The games the kernels know, by registry name."""

NUM_ACTIONS = (7, 9)
"""Actions of each game, by id."""
MAX_PLIES = (42, 9)
"""The longest game of each game, by id (a search path is never longer)."""
OBS_SHAPES = ((6, 7, 2), (3, 3, 2))
"""Observation shape of each game, by id (the PettingZoo planes)."""

_C4_H1 = 7  # bits per column: six cells and a guard bit
_TTT_FULL = (1 << 9) - 1
_TTT_LINES = np.array(
    [sum(1 << s for s in line) for line in (
        (0, 1, 2), (3, 4, 5), (6, 7, 8), (0, 3, 6), (1, 4, 7), (2, 5, 8), (0, 4, 8), (2, 4, 6),
    )],
    dtype=np.int64,
)


def _tictactoe_tables() -> tuple[np.ndarray, np.ndarray]:
    """``(images[8, 512], actions[8, 9])``: each symmetry's image of every 9-bit board, and
    the actual action of each action of the image (new square ``i`` is old square
    ``cells[i]``, so the image's move ``i`` is the position's move ``cells[i]``)."""
    syms = symmetries("tictactoe")
    images = np.zeros((len(syms), 512), dtype=np.int64)
    boards = np.arange(512)
    for k, sym in enumerate(syms):
        for i, old in enumerate(sym.cells.tolist()):
            images[k] |= ((boards >> old) & 1) << i
    return images, np.stack([s.actions for s in syms]).astype(np.int64)


TTT_IMAGES, _TTT_ACTIONS = _tictactoe_tables()
_C4_ACTIONS = np.stack([s.actions for s in symmetries("connect_four")]).astype(np.int64)
ACTION_MAPS: tuple[np.ndarray, np.ndarray] = (_C4_ACTIONS, _TTT_ACTIONS)
"""By game id, ``[S, A]``: under symmetry ``s``, action ``i`` of the canonical form is
action ``ACTION_MAPS[game][s, i]`` of the position (symmetry 0 is the identity)."""
for _table in (TTT_IMAGES, _TTT_ACTIONS, _C4_ACTIONS):
    _table.flags.writeable = False


@njit(cache=True, inline="always")
def legal_bits(game: int, occupied: int) -> int:
    """The legal actions of a live position, one bit per action."""
    if game == CONNECT_FOUR:
        free = 0
        for c in range(7):
            if not (occupied >> (_C4_H1 * c + 5)) & 1:
                free |= 1 << c
        return free
    return _TTT_FULL & ~occupied


@njit(cache=True, inline="always")
def _ttt_won(stones: int, lines: np.ndarray) -> bool:
    for line in lines:  # noqa: SIM110  (numba compiles the loop, not a generator)
        if stones & line == line:
            return True
    return False


@njit(cache=True, inline="always")
def play(game: int, mover: int, occupied: int, action: int) -> tuple[int, int, bool, bool]:
    """``(mover, occupied, won, full)`` after the mover plays the legal ``action``.

    The new ``mover`` is the opponent's stones (they move next); ``won``: the move made
    a line; ``full``: the board is full (a draw unless ``won``).
    """
    if game == CONNECT_FOUR:
        new_occupied = occupied | (occupied + (1 << (_C4_H1 * action)))
        mine = mover | (new_occupied ^ occupied)
        return occupied ^ mover, new_occupied, has_four(mine), new_occupied == C4_BOARD
    stone = 1 << action
    mine = mover | stone
    new_occupied = occupied | stone
    return occupied ^ mover, new_occupied, _ttt_won(mine, _TTT_LINES), new_occupied == _TTT_FULL


@njit(cache=True, inline="always")
def _ttt_threats(stones: int, empty: int, lines: np.ndarray) -> int:
    """Empty cells where one more mark of ``stones`` completes a line."""
    cells = 0
    for line in lines:
        gap = line & empty
        if gap != 0 and gap & (gap - 1) == 0 and stones & line == line ^ gap:
            cells |= gap
    return cells


@njit(cache=True, inline="always")
def immediate_outcome(game: int, mover: int, occupied: int) -> tuple[float, int]:
    """``(outcome, plies)`` that the rules prove for the mover of a live position.

    ``(1, 1)``: the mover has a winning move; ``(-1, 2)``: it has none and the opponent
    wins next whatever it plays (two threats it cannot both block, or, in connect four,
    every playable cell lies under an opponent's winning cell); ``(0, 0)``: neither.
    """
    theirs = occupied ^ mover
    if game == CONNECT_FOUR:
        playable = (occupied + C4_BOTTOM) & C4_BOARD
        if winning_cells(mover, occupied) & playable:
            return 1.0, 1
        threats = winning_cells(theirs, occupied)
        forced = playable & threats
        if forced:
            if forced & (forced - 1):
                return -1.0, 2
            playable = forced
        if playable & ~(threats >> 1) == 0:
            return -1.0, 2
        return 0.0, 0
    empty = _TTT_FULL & ~occupied
    if _ttt_threats(mover, empty, _TTT_LINES):
        return 1.0, 1
    threats = _ttt_threats(theirs, empty, _TTT_LINES)
    if threats & (threats - 1):
        return -1.0, 2
    return 0.0, 0


@njit(cache=True, inline="always")
def write_observation(game: int, mover: int, occupied: int, out: np.ndarray) -> None:
    """Write the mover's observation planes into ``out`` (``[H, W, 2]`` int8)."""
    theirs = occupied ^ mover
    if game == CONNECT_FOUR:
        for r in range(6):
            for c in range(7):
                bit = _C4_H1 * c + 5 - r
                out[r, c, 0] = (mover >> bit) & 1
                out[r, c, 1] = (theirs >> bit) & 1
    else:
        for r in range(3):
            for c in range(3):
                bit = 3 * r + c
                out[r, c, 0] = (mover >> bit) & 1
                out[r, c, 1] = (theirs >> bit) & 1


@njit(cache=True, inline="always")
def position_key(game: int, mover: int, occupied: int) -> int:
    """A key that tells positions apart exactly (non-negative, below 2**49)."""
    if game == CONNECT_FOUR:
        # The mover's stones plus the occupied cells plus the bottom row: each column's
        # bits read, from the bottom, the mover's stones then a 1 above the top stone.
        return mover + occupied + C4_BOTTOM
    return mover | (occupied << 9)


@njit(cache=True, inline="always")
def _c4_mirror(board: int) -> int:
    out = 0
    for c in range(7):
        out |= ((board >> (_C4_H1 * c)) & 127) << (_C4_H1 * (6 - c))
    return out


@njit(cache=True, inline="always")
def canonical(game: int, mover: int, occupied: int, images: np.ndarray) -> tuple[int, int]:
    """``(key, symmetry)``: the smallest key over the position's symmetric images, and
    the symmetry (an index into :data:`ACTION_MAPS`) whose image has it.

    ``images`` is :data:`TTT_IMAGES` (unused for connect four).
    """
    best = position_key(game, mover, occupied)
    best_sym = 0
    if game == CONNECT_FOUR:
        mirrored = position_key(game, _c4_mirror(mover), _c4_mirror(occupied))
        if mirrored < best:
            return mirrored, 1
        return best, 0
    for s in range(1, images.shape[0]):
        key = images[s, mover] | (images[s, occupied] << 9)
        if key < best:
            best, best_sym = key, s
    return best, best_sym


@njit(cache=True, inline="always")
def image(game: int, board: int, symmetry: int, images: np.ndarray) -> int:
    """A bitboard's image under ``symmetry`` (the one :func:`canonical` names)."""
    if symmetry == 0:
        return board
    if game == CONNECT_FOUR:
        return _c4_mirror(board)
    return images[symmetry, board]


# ---------------------------------------------------------------- batched, for Python


@njit(cache=True)
def observe_batch(game: int, mover: np.ndarray, occupied: np.ndarray, out: np.ndarray) -> None:
    """Observation planes of every position into ``out[B, H, W, 2]``."""
    for i in range(mover.shape[0]):
        write_observation(game, mover[i], occupied[i], out[i])


@njit(cache=True)
def legal_batch(game: int, occupied: np.ndarray, out: np.ndarray) -> None:
    """Legal moves of every (live) position into ``out[B, A]`` (0/1)."""
    for i in range(occupied.shape[0]):
        bits = legal_bits(game, occupied[i])
        for a in range(out.shape[1]):
            out[i, a] = (bits >> a) & 1


@njit(cache=True)
def play_batch(
    game: int, mover: np.ndarray, occupied: np.ndarray, actions: np.ndarray,
    out_mover: np.ndarray, out_occupied: np.ndarray, won: np.ndarray, full: np.ndarray,
) -> None:
    """:func:`play` for every position (``actions`` must be legal)."""
    for i in range(mover.shape[0]):
        m, o, w, f = play(game, mover[i], occupied[i], actions[i])
        out_mover[i], out_occupied[i], won[i], full[i] = m, o, w, f


@njit(cache=True)
def immediate_outcome_batch(game: int, mover: np.ndarray, occupied: np.ndarray,
                            outcome: np.ndarray, plies: np.ndarray) -> None:
    """:func:`immediate_outcome` of every position into ``outcome[B]`` and ``plies[B]``."""
    for i in range(mover.shape[0]):
        outcome[i], plies[i] = immediate_outcome(game, mover[i], occupied[i])


@njit(cache=True)
def canonical_batch(
    game: int, mover: np.ndarray, occupied: np.ndarray, images: np.ndarray,
    keys: np.ndarray, syms: np.ndarray,
) -> None:
    """:func:`canonical` of every position into ``keys[B]`` and ``syms[B]``."""
    for i in range(mover.shape[0]):
        keys[i], syms[i] = canonical(game, mover[i], occupied[i], images)


@njit(cache=True)
def image_batch(
    game: int, boards: np.ndarray, symmetry: int, images: np.ndarray, out: np.ndarray
) -> None:
    """:func:`image` of every bitboard into ``out[B]``."""
    for i in range(boards.shape[0]):
        out[i] = image(game, boards[i], symmetry, images)


def game_id(name: str) -> int:
    """The kernels' id of a game.

    Raises:
        TlmError: a game the kernels do not know.
    """
    if name not in GAME_IDS:
        raise TlmError(f"the fast search plays {', '.join(GAME_IDS)}, not {name}")
    return GAME_IDS[name]


def from_engine_state(game: int, engine: object, state: State) -> tuple[np.ndarray, np.ndarray]:
    """``(mover[B], occupied[B])`` int64 bitboards of an engine's batched state."""
    if game == CONNECT_FOUR:
        return (np.asarray(state.mover).astype(np.int64),
                np.asarray(state.occupied).astype(np.int64))
    squares = engine.board(state).astype(np.int64)  # type: ignore[attr-defined]
    bits = np.int64(1) << np.arange(9, dtype=np.int64)
    first = ((squares == 1) * bits).sum(axis=1)
    second = ((squares == 2) * bits).sum(axis=1)
    seat = np.asarray(engine.to_play(state)).astype(np.int64)  # type: ignore[attr-defined]
    return np.where(seat == 0, first, second), first | second
