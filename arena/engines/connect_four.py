"""Batched connect four, identical to PettingZoo's ``connect_four_v3``, on 64-bit bitboards.

Each game is two ``uint64`` bitboards (the stones of the seat to move, and all
stones), a ply counter and a finished flag: 18 bytes a game. Bit ``7c + h`` is the
cell of column ``c`` at height ``h`` (0 at the bottom); the seventh bit of each
column stays empty, so shifting a board never carries a line from one column into
the next. A move is one addition (``occ + bottom-of-column`` finds the first free
cell), and four in a row is four shift-and-and tests, all vectorized over the batch
with numpy.

Conventions of ``connect_four_v3``: action ``c`` drops a stone in column ``c``; the
observation ``obs[r, c]`` has row 0 at the top (plane 0: the mover's stones, plane
1: the opponent's); seat 0 (``player_0``) moves first; a win gives +1 / -1, a full
board with no line 0 / 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from arena.core import IllegalActionError, TlmError

ROWS = 6
COLUMNS = 7
_H = ROWS + 1  # bits per column: six cells and an empty guard bit
_U = np.uint64

_BOTTOM = np.array([1 << (_H * c) for c in range(COLUMNS)], dtype=_U)
# Indexed by ``action + COLUMNS * done``: finished rows get a zero "move".
_BOTTOM_OR_NONE = np.concatenate([_BOTTOM, np.zeros(COLUMNS, dtype=_U)])
_GUARDS = _U(sum(1 << (_H * c + ROWS) for c in range(COLUMNS)))
_FULL = _U(sum((1 << (_H * c)) * ((1 << ROWS) - 1) for c in range(COLUMNS)))
_ALL_TOPS = _U(sum(1 << (_H * c + ROWS - 1) for c in range(COLUMNS)))
# Multiplying the top-cell bits by this gathers them into bits 41..47 (one per
# column, in order): the partial products never overlap, so no carry reaches them.
_GATHER_MAGIC = _U(sum(1 << (41 - (ROWS - 1) - (_H - 1) * c) for c in range(COLUMNS)))
_GATHER_SHIFT = _U(41)
# Legal mask of a 7-bit "column is full" code, with an eighth bit for finished games;
# each row is padded with a zero byte to one 8-byte item, which numpy gathers several
# times faster than 7-byte rows.
_MASK_OF_CODE = np.array(
    [[0 if code >> 7 else 1 - ((code >> c) & 1) for c in range(COLUMNS)] + [0]
     for code in range(256)],
    dtype=np.int8,
).view(np.uint64).reshape(-1)
_DIRECTIONS = (1, _H - 1, _H, _H + 1)  # vertical, two diagonals, horizontal
# Rewards [2] of a step as one 8-byte item, indexed by ``2 * win + seat that moved``.
_REWARD_ITEMS = np.array(
    [[0, 0], [0, 0], [1, -1], [-1, 1]], dtype=np.float32
).view(np.int64).reshape(-1)
_FIRST_WIN_PLY = 6  # the first mover's fourth stone is move 7 (ply 6 before it)
# Observation cell (r, c, plane) as a bit of the little-endian unpacked pair of boards
# (mover's stones in bits 0..63, opponent's in 64..127); row 0 is the top.
_OBS_BITS = np.array(
    [[[p * 64 + _H * c + (ROWS - 1 - r) for p in range(2)] for c in range(COLUMNS)]
     for r in range(ROWS)],
    dtype=np.intp,
).reshape(-1)

for _table in (
    _BOTTOM, _BOTTOM_OR_NONE, _MASK_OF_CODE, _OBS_BITS, _REWARD_ITEMS
):
    _table.flags.writeable = False


class ConnectFourState(NamedTuple):
    """A batch of connect-four games (every array has the batch first).

    Attributes:
        mover: ``[B]`` uint64, stones of the seat to move.
        occupied: ``[B]`` uint64, all stones.
        ply: ``[B]`` int8, moves played.
        finished: ``[B]`` bool, the game has ended.
    """

    mover: np.ndarray
    occupied: np.ndarray
    ply: np.ndarray
    finished: np.ndarray


def four_in_a_row(stones: np.ndarray) -> np.ndarray:
    """``[B]`` bool: whether each bitboard holds four in a row in any direction."""
    # Two scratch arrays serve all four directions: fresh large arrays cost page faults.
    pair = np.empty_like(stones)
    quad = np.empty_like(stones)
    found: np.ndarray | None = None
    for d in _DIRECTIONS:
        np.right_shift(stones, _U(d), out=pair)
        pair &= stones
        if found is None:
            found = pair >> _U(2 * d)
            found &= pair
        else:
            np.right_shift(pair, _U(2 * d), out=quad)
            quad &= pair
            found |= quad
    assert found is not None
    return found != 0


class ConnectFourEngine:
    """B games of connect four in lockstep (the engine interface of :mod:`arena.core`).

    ``step`` never modifies the state it is given: it returns a new one, so the old
    state remains valid (search may keep it without cloning).
    """

    name: str = "connect_four"
    cheap_take: bool = True
    num_actions: int = COLUMNS
    obs_shape: tuple[int, ...] = (ROWS, COLUMNS, 2)
    obs_dtype: np.dtype = np.dtype(np.int8)

    def reset(self, n: int, seed: int | np.ndarray | None = None) -> ConnectFourState:
        """``n`` empty boards (the game has no randomness; ``seed`` is accepted and unused)."""
        if n < 0:
            raise TlmError(f"the number of games must be >= 0, got {n}")
        return ConnectFourState(
            np.zeros(n, dtype=_U), np.zeros(n, dtype=_U),
            np.zeros(n, dtype=np.int8), np.zeros(n, dtype=bool),
        )

    def observe(self, state: ConnectFourState) -> tuple[np.ndarray, np.ndarray]:
        n = len(state.ply)
        boards = np.empty((n, 2), dtype=_U)
        boards[:, 0] = state.mover
        np.bitwise_xor(state.occupied, state.mover, out=boards[:, 1])
        bits = np.unpackbits(boards.view(np.uint8), axis=1, bitorder="little")
        obs = bits[:, _OBS_BITS].view(np.int8).reshape(n, *self.obs_shape)
        return obs, self.legal_mask(state)

    def legal_mask(self, state: ConnectFourState) -> np.ndarray:
        """``[B, 7]`` int8; a view whose rows lie 8 bytes apart (the gather is cheaper)."""
        code = state.occupied & _ALL_TOPS
        code *= _GATHER_MAGIC
        code >>= _GATHER_SHIFT
        code = code.view(np.int64)
        code &= 127
        if state.finished.any():
            code |= state.finished.view(np.uint8) << 7
        rows = _MASK_OF_CODE.take(code)
        return rows.view(np.int8).reshape(len(rows), 8)[:, :COLUMNS]

    def to_play(self, state: ConnectFourState) -> np.ndarray:
        return state.ply & 1

    def done(self, state: ConnectFourState) -> np.ndarray:
        return state.finished.copy()

    def step(
        self, state: ConnectFourState, actions: np.ndarray
    ) -> tuple[ConnectFourState, np.ndarray, np.ndarray]:
        mover, occ, ply, finished = state
        a = np.asarray(actions)
        if a.shape != ply.shape:
            raise TlmError(f"expected {ply.shape[0]} actions, got shape {a.shape}")
        a = a.astype(np.intp, copy=False)
        # One unsigned comparison catches both negative and too-large actions.
        in_range = a.view(np.uintp) < COLUMNS
        if not in_range.all():
            bad = ~in_range & ~finished
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise IllegalActionError(
                    f"connect_four: column {int(a[i])} out of range in game {i}"
                )
            a = np.where(in_range, a, 0)
        # Adding the column's bottom bit carries up to the first free cell of the column;
        # in a full column it carries into the guard bit, which is how a full column
        # shows. Finished rows look up a zero bottom: no stone.
        any_finished = bool(finished.any())
        if any_finished:
            sel = finished * COLUMNS
            sel += a
            new_occ = _BOTTOM_OR_NONE.take(sel)
        else:
            new_occ = _BOTTOM.take(a)
        new_occ += occ
        new_occ |= occ
        stones = new_occ ^ occ  # the new stone, or a guard bit if its column was full
        if (new_occ & _GUARDS).any():
            i = int(np.flatnonzero(new_occ & _GUARDS)[0])
            raise IllegalActionError(f"connect_four: column {int(a[i])} is full in game {i}")
        stones |= mover  # the mover's stones after the move
        if ply.size and ply.max() >= _FIRST_WIN_PLY:
            win = four_in_a_row(stones)
        else:
            win = np.zeros(ply.shape, dtype=bool)
        # Live rows hand the turn over: the opponent's stones are occ ^ mover.
        new_mover = occ ^ mover
        new_ply = ply + np.int8(1)
        new_finished = new_occ == _FULL
        new_finished |= win
        if any_finished:
            # Finished rows keep their stones to move and their ply.
            np.copyto(new_mover, mover, where=finished)
            new_ply -= finished.view(np.int8)
            new_finished |= finished
        code = win.view(np.int8) << 1
        code |= ply & 1
        rewards = _REWARD_ITEMS.take(code).view(np.float32).reshape(-1, 2)
        return (
            ConnectFourState(new_mover, new_occ, new_ply, new_finished),
            rewards,
            new_finished.copy(),
        )

    def take(self, state: ConnectFourState, idx: np.ndarray) -> ConnectFourState:
        idx = np.asarray(idx)
        return ConnectFourState(*(field.take(idx) for field in state))

    def clone(self, state: ConnectFourState) -> ConnectFourState:
        return ConnectFourState(*(field.copy() for field in state))

    def concat(self, states: Sequence[ConnectFourState]) -> ConnectFourState:
        """One batch holding the games of ``states`` in order."""
        return ConnectFourState(*(np.concatenate(f) for f in zip(*states, strict=True)))

    def from_moves(self, games: Sequence[Sequence[int]]) -> ConnectFourState:
        """The positions reached by playing each list of columns from the empty board.

        Raises:
            IllegalActionError: a move is illegal or comes after the game ended.
        """
        states = []
        for i, moves in enumerate(games):
            s = self.reset(1)
            for k, a in enumerate(moves):
                if s.finished[0]:
                    raise IllegalActionError(f"connect_four: game {i} is over before move {k}")
                try:
                    s, _, _ = self.step(s, np.array([a]))
                except IllegalActionError:
                    raise IllegalActionError(
                        f"connect_four: illegal move {a} at move {k} of game {i}"
                    ) from None
            states.append(s)
        return self.concat(states) if states else self.reset(0)

    def board(self, state: ConnectFourState) -> np.ndarray:
        """``[B, 6, 7]`` int8 laid out as PettingZoo's board (row 0 at the top).

        0 is empty, 1 a stone of seat 0, 2 a stone of seat 1.
        """
        obs, _ = self.observe(state)
        seat = (state.ply & 1).astype(np.int8)[:, None, None]
        mine, theirs = obs[..., 0], obs[..., 1]
        # plane 0 belongs to the seat to move: seat 0 is 1, seat 1 is 2
        return (mine * (1 + seat) + theirs * (2 - seat)).astype(np.int8)

    def winner(self, state: ConnectFourState) -> np.ndarray:
        """``[B]`` int8: the seat with four in a row, or -1."""
        seat_to_move = (state.ply & 1).astype(np.int8)
        last_mover_won = four_in_a_row(state.occupied ^ state.mover)
        return np.where(last_mover_won, 1 - seat_to_move, -1).astype(np.int8)

    def render(self, state: ConnectFourState, i: int) -> str:
        """Game ``i`` as text: X for seat 0, O for seat 1, ``.`` empty, column numbers below."""
        one = self.take(state, np.array([i]))
        grid = self.board(one)[0]
        symbol = {0: ".", 1: "X", 2: "O"}
        lines = [" ".join(symbol[int(v)] for v in row) for row in grid]
        lines.append(" ".join(str(c) for c in range(COLUMNS)))
        if one.finished[0]:
            w = int(self.winner(one)[0])
            lines.append("draw" if w < 0 else f"{'XO'[w]} (seat {w}) wins")
        else:
            seat = int(one.ply[0] & 1)
            lines.append(f"{'XO'[seat]} (seat {seat}) to play")
        return "\n".join(lines)
