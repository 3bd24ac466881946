"""Batched tic-tac-toe, identical to PettingZoo's ``tictactoe_v3``, as a tabulated game graph.

Tic-tac-toe has only 5,478 reachable positions, so the engine enumerates them once
and plays by table look-up: a game's whole state is one ``int16`` position number,
and a step is three gathers (next position, transition reward, finished flag) for
the whole batch. Observations and masks are looked up the same way. That makes a
step cost a few nanoseconds per game, a clone a copy of two bytes per game, and the
tables (about 400 KB) stay in cache.

Conventions of ``tictactoe_v3``: action ``a`` marks square ``a``; the observation
``obs[r, c]`` is square ``3r + c`` (plane 0: the mover's marks, plane 1: the
opponent's); the env draws the board with square ``a`` in column ``a // 3`` and row
``a % 3``, which :meth:`TicTacToeEngine.render` follows. Seat 0 (``player_1``)
moves first; a win gives +1 / -1, a draw 0 / 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import NamedTuple

import numpy as np

from arena.core import IllegalActionError, TlmError

NUM_SQUARES = 9
LINES: tuple[tuple[int, int, int], ...] = (
    (0, 1, 2), (3, 4, 5), (6, 7, 8),
    (0, 3, 6), (1, 4, 7), (2, 5, 8),
    (0, 4, 8), (2, 4, 6),
)
"""The eight winning lines, as squares (the same list as PettingZoo's ``Board``)."""

_LINE_MASKS = tuple(sum(1 << s for s in line) for line in LINES)


class TicTacToeState(NamedTuple):
    """A batch of tic-tac-toe games.

    Attributes:
        pos: ``[B]`` intp, each game's position number in the engine's tables (an
            index array, so every look-up gathers with it directly).
    """

    pos: np.ndarray


class _Tables(NamedTuple):
    marks: np.ndarray  # [P, 2] uint16: square bits of seat 0 and seat 1
    ply: np.ndarray  # [P] int8: marks on the board
    done: np.ndarray  # [P] bool
    mask: np.ndarray  # [P, 9] int8: legal squares, zero once finished
    mask_items: np.ndarray  # [P] 16-byte items: each a row of ``mask`` and 7 zero bytes
    obs: np.ndarray  # [P, 3, 3, 2] int8, from the point of view of the seat to move
    next_pos: np.ndarray  # [P * 9] intp: position after a move; -1 illegal; self if done
    reward: np.ndarray  # [P * 9] int64: the transition's float32 rewards [2], viewed as one
    to_play: np.ndarray  # [P] int8: seat to move (ply parity)
    position_of: dict[tuple[int, int], int]  # (seat-0 bits, seat-1 bits) -> position


def _won(bits: int) -> bool:
    return any(bits & m == m for m in _LINE_MASKS)


@cache
def _tables() -> _Tables:
    """Enumerate every reachable position breadth-first and tabulate the rules."""
    start = (0, 0)
    index: dict[tuple[int, int], int] = {start: 0}
    order: list[tuple[int, int]] = [start]
    finished: list[bool] = []
    head = 0
    while head < len(order):
        x, o = order[head]
        head += 1
        ply = bin(x | o).count("1")
        over = _won(x) or _won(o) or ply == NUM_SQUARES
        finished.append(over)
        if over:
            continue
        for a in range(NUM_SQUARES):
            bit = 1 << a
            if (x | o) & bit:
                continue
            child = (x | bit, o) if ply % 2 == 0 else (x, o | bit)
            if child not in index:
                index[child] = len(order)
                order.append(child)

    n = len(order)
    marks = np.array(order, dtype=np.uint16)
    squares = (marks[:, :, None] >> np.arange(NUM_SQUARES, dtype=np.uint16)) & 1  # [P,2,9]
    ply = squares.sum(axis=(1, 2)).astype(np.int8)
    done = np.array(finished, dtype=bool)
    mover = (ply % 2).astype(np.intp)
    rows = np.arange(n)
    mine, theirs = squares[rows, mover], squares[rows, 1 - mover]
    obs = np.stack([mine, theirs], axis=-1).astype(np.int8).reshape(n, 3, 3, 2)
    empty = (1 - mine - theirs).astype(np.int8)
    mask = np.where(done[:, None], 0, empty).astype(np.int8)

    next_pos = np.full((n, NUM_SQUARES), -1, dtype=np.intp)
    reward = np.zeros((n, NUM_SQUARES, 2), dtype=np.float32)
    next_pos[done] = rows[done, None]
    for p in np.flatnonzero(~done):
        x, o = order[p]
        seat = int(mover[p])
        for move in np.flatnonzero(mask[p]).tolist():
            bit = 1 << move
            child = (x | bit, o) if seat == 0 else (x, o | bit)
            next_pos[p, move] = index[child]
            if _won(child[seat]):
                reward[p, move, seat], reward[p, move, 1 - seat] = 1.0, -1.0
    # A transition's two float32 rewards travel as one 8-byte item: a 1-D gather.
    reward_items = reward.reshape(-1, 2).view(np.int64).reshape(-1)
    to_play = (ply & 1).astype(np.int8)
    # numpy gathers 16-byte items several times faster than 9-byte rows.
    padded = np.zeros((n, 16), dtype=np.int8)
    padded[:, :NUM_SQUARES] = mask
    mask_items = padded.view(np.dtype("V16")).reshape(-1)
    tables = _Tables(
        marks, ply, done, mask, mask_items, obs, next_pos.reshape(-1), reward_items, to_play,
        index,
    )
    for table in tables[:-1]:
        table.flags.writeable = False
    return tables


class TicTacToeEngine:
    """B games of tic-tac-toe in lockstep (the engine interface of :mod:`arena.core`).

    ``step`` never modifies the state it is given: it returns a new one, so the old
    state remains valid (search may keep it without cloning).
    """

    name: str = "tictactoe"
    cheap_take: bool = True
    num_actions: int = NUM_SQUARES
    obs_shape: tuple[int, ...] = (3, 3, 2)
    obs_dtype: np.dtype = np.dtype(np.int8)

    def __init__(self) -> None:
        self._t = _tables()

    @property
    def num_positions(self) -> int:
        """How many reachable positions there are (5,478)."""
        return len(self._t.ply)

    def reset(self, n: int, seed: int | np.ndarray | None = None) -> TicTacToeState:
        """``n`` empty boards (the game has no randomness; ``seed`` is accepted and unused)."""
        if n < 0:
            raise TlmError(f"the number of games must be >= 0, got {n}")
        return TicTacToeState(np.zeros(n, dtype=np.intp))

    # take along axis 0 gathers table rows several times faster than fancy indexing.
    def observe(self, state: TicTacToeState) -> tuple[np.ndarray, np.ndarray]:
        return self._t.obs.take(state.pos, axis=0), self.legal_mask(state)

    def legal_mask(self, state: TicTacToeState) -> np.ndarray:
        """``[B, 9]`` int8; a view whose rows lie 16 bytes apart (the gather is cheaper)."""
        rows = self._t.mask_items.take(state.pos)
        return rows.view(np.int8).reshape(len(rows), 16)[:, :NUM_SQUARES]

    def to_play(self, state: TicTacToeState) -> np.ndarray:
        return self._t.to_play.take(state.pos)

    def done(self, state: TicTacToeState) -> np.ndarray:
        return self._t.done.take(state.pos)

    def ply(self, state: TicTacToeState) -> np.ndarray:
        """``[B]`` int8: moves played so far."""
        return self._t.ply.take(state.pos)

    def board(self, state: TicTacToeState) -> np.ndarray:
        """``[B, 9]`` int8 squares as PettingZoo's ``Board.squares``.

        0 is empty, 1 a mark of seat 0, 2 a mark of seat 1.
        """
        marks = self._t.marks[state.pos]
        bits = (marks[:, :, None] >> np.arange(NUM_SQUARES, dtype=np.uint16)) & 1
        return (bits[:, 0] + 2 * bits[:, 1]).astype(np.int8)

    def step(
        self, state: TicTacToeState, actions: np.ndarray
    ) -> tuple[TicTacToeState, np.ndarray, np.ndarray]:
        pos = state.pos
        a = np.asarray(actions)
        if a.shape != pos.shape:
            raise TlmError(f"expected {pos.shape[0]} actions, got shape {a.shape}")
        a = a.astype(np.intp, copy=False)
        # One unsigned comparison catches both negative and too-large actions.
        in_range = a.view(np.uintp) < NUM_SQUARES
        if not in_range.all():
            bad = ~in_range & ~self._t.done[pos]
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise IllegalActionError(f"tictactoe: action {int(a[i])} out of range in game {i}")
            a = np.where(in_range, a, 0)
        flat = pos * NUM_SQUARES
        flat += a
        nxt = self._t.next_pos.take(flat)
        if (nxt < 0).any():
            i = int(np.flatnonzero(nxt < 0)[0])
            raise IllegalActionError(f"tictactoe: square {int(a[i])} is taken in game {i}")
        rewards = self._t.reward.take(flat).view(np.float32).reshape(-1, 2)
        return TicTacToeState(nxt), rewards, self._t.done.take(nxt)

    def take(self, state: TicTacToeState, idx: np.ndarray) -> TicTacToeState:
        return TicTacToeState(state.pos.take(np.asarray(idx)))

    def clone(self, state: TicTacToeState) -> TicTacToeState:
        return TicTacToeState(state.pos.copy())

    def concat(self, states: Sequence[TicTacToeState]) -> TicTacToeState:
        """One batch holding the games of ``states`` in order."""
        return TicTacToeState(np.concatenate([s.pos for s in states]))

    def from_moves(self, games: Sequence[Sequence[int]]) -> TicTacToeState:
        """The positions reached by playing each list of actions from the empty board.

        Raises:
            IllegalActionError: a move is illegal or comes after the game ended.
        """
        pos = np.zeros(len(games), dtype=np.intp)
        for i, moves in enumerate(games):
            p = 0
            for k, a in enumerate(moves):
                if self._t.done[p]:
                    raise IllegalActionError(f"tictactoe: game {i} is over before move {k}")
                if not 0 <= int(a) < NUM_SQUARES or self._t.next_pos[p * NUM_SQUARES + a] < 0:
                    raise IllegalActionError(f"tictactoe: illegal move {a} at move {k} of game {i}")
                p = int(self._t.next_pos[p * NUM_SQUARES + int(a)])
            pos[i] = p
        return TicTacToeState(pos)

    def winner(self, state: TicTacToeState) -> np.ndarray:
        """``[B]`` int8: the seat that has three in a row, or -1."""
        marks = self._t.marks[state.pos].astype(np.int64)
        out = np.full(len(marks), -1, dtype=np.int8)
        for m in _LINE_MASKS:
            for seat in (0, 1):
                out[(marks[:, seat] & m) == m] = seat
        return out

    def render(self, state: TicTacToeState, i: int) -> str:
        """Game ``i`` as text: X for seat 0, O for seat 1, free squares by their action number.

        The layout is that of ``tictactoe_v3``'s picture: square ``a`` sits in column
        ``a // 3``, row ``a % 3``.
        """
        squares = self.board(self.take(state, np.array([i])))[0]
        cell = {1: "X", 2: "O"}

        def show(a: int) -> str:
            return cell.get(int(squares[a]), str(a))

        rows = [" " + " | ".join(show(3 * c + r) for c in range(3)) for r in range(3)]
        text = "\n---+---+---\n".join(rows)
        p = int(state.pos[i])
        if self._t.done[p]:
            w = int(self.winner(self.take(state, np.array([i])))[0])
            status = "draw" if w < 0 else f"{'XO'[w]} (seat {w}) wins"
        else:
            seat = int(self._t.ply[p] & 1)
            status = f"{'XO'[seat]} (seat {seat}) to play"
        return f"{text}\n{status}"
