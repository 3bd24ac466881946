"""The exact best response to a known tic-tac-toe opponent: the teacher of a student that
learns to exploit whoever it plays.

For an opponent whose move probabilities are known in every position (any
:class:`arena.PolicyAgent` that reads observations: the players with styles of
:mod:`arena.players.styles`, ``perfect``, a student), expectimax over the whole game
— our moves maximise, the opponent's are averaged under its policy — gives the
highest expected score (win 1, draw 1/2, loss 0) any player can get against it, and
the moves that get it, in every position either seat reaches. Tic-tac-toe has 5,478
reachable positions, so it is exact and takes a few tens of milliseconds.

Board keys are those of :mod:`arena.players.tictactoe` (``mine | theirs << 9`` from
the mover's side); a key's stone counts tell which seat moves, so one table holds the
responses of both seats.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from arena.core import PolicyAgent, State, TlmError
from arena.players.tictactoe import (
    FULL,
    LINE_MASKS,
    N_SQUARES,
    board_keys,
    keys_to_obs,
    solved,
)

_TIE = 1e-9


def _won(stones: int) -> bool:
    return any(stones & m == m for m in LINE_MASKS)


def policy_table(agent: PolicyAgent) -> dict[int, np.ndarray]:
    """The agent's move probabilities in every non-terminal position, by key (asked in
    one batched call)."""
    if agent.needs_state:
        raise TlmError(f"agent {agent.name!r} needs engine states; a best response needs "
                       "an opponent whose policy reads observations")
    keys = solved().keys
    obs, mask = keys_to_obs(keys)
    probs = np.asarray(agent.policy(obs, mask), dtype=np.float64)
    if probs.shape != mask.shape:
        raise TlmError(f"agent {agent.name!r} gave a policy of shape {list(probs.shape)}, "
                       f"expected {list(mask.shape)}")
    probs = probs * (mask != 0)
    probs /= np.maximum(probs.sum(axis=1, keepdims=True), 1e-12)
    return dict(zip(keys.tolist(), probs, strict=True))


@dataclass(frozen=True)
class BestResponse:
    """The best response to one opponent.

    Attributes:
        opponent: the opponent's name.
        moves: ``{key: bitmask}`` of the best moves in every position where the
            responder moves (either seat).
        value: ``{key: expected score}`` of the responder moving there with best play.
        scores: ``(seat 0, seat 1)``: the best expected score from the start.
    """

    opponent: str
    moves: dict[int, int]
    value: dict[int, float]
    scores: tuple[float, float]

    @property
    def score(self) -> float:
        """The best expected score over both seats (each half the games)."""
        return (self.scores[0] + self.scores[1]) / 2


def best_response(opponent: PolicyAgent) -> BestResponse:
    """The exact best response to ``opponent`` on tic-tac-toe (see the module)."""
    theirs_policy = policy_table(opponent)
    moves: dict[int, int] = {}
    value: dict[int, float] = {}
    memo: dict[tuple[int, int, bool], float] = {}

    def expect(us: int, them: int, our_move: bool) -> float:
        """The responder's expected score from here, best play against the opponent."""
        state = (us, them, our_move)
        known = memo.get(state)
        if known is not None:
            return known
        empty = FULL & ~(us | them)
        if not empty:
            v = 0.5
        elif our_move:
            best, best_moves = -1.0, 0
            for a in range(N_SQUARES):
                if empty >> a & 1:
                    child = us | 1 << a
                    s = 1.0 if _won(child) else expect(child, them, False)
                    if s > best + _TIE:
                        best, best_moves = s, 1 << a
                    elif s > best - _TIE:
                        best_moves |= 1 << a
            key = us | them << N_SQUARES
            moves[key], value[key] = best_moves, best
            v = best
        else:
            probs = theirs_policy[them | us << N_SQUARES]
            v = 0.0
            for a in range(N_SQUARES):
                if probs[a] > 0:
                    child = them | 1 << a
                    v += probs[a] * (0.0 if _won(child) else expect(us, child, True))
        memo[state] = v
        return v

    scores = (expect(0, 0, True), expect(0, 0, False))
    return BestResponse(opponent.name, moves, value, scores)


def expected_score(player: PolicyAgent, opponent: PolicyAgent, seat: int) -> float:
    """The exact expected score of ``player`` (its policy, sampled) against
    ``opponent`` in ``seat`` (0 moves first)."""
    if seat not in (0, 1):
        raise TlmError(f"seat must be 0 or 1, got {seat}")
    ours, theirs = policy_table(player), policy_table(opponent)
    memo: dict[tuple[int, int, bool], float] = {}

    def expect(us: int, them: int, our_move: bool) -> float:
        state = (us, them, our_move)
        known = memo.get(state)
        if known is not None:
            return known
        if not FULL & ~(us | them):
            return 0.5
        mover, other = (us, them) if our_move else (them, us)
        probs = (ours if our_move else theirs)[mover | other << N_SQUARES]
        v = 0.0
        for a in range(N_SQUARES):
            if probs[a] > 0:
                child = mover | 1 << a
                if _won(child):
                    v += probs[a] * (1.0 if our_move else 0.0)
                elif our_move:
                    v += probs[a] * expect(child, them, False)
                else:
                    v += probs[a] * expect(us, child, True)
        memo[state] = v
        return v

    return expect(0, 0, seat == 0)


class BestResponseTeacher(PolicyAgent):
    """Plays (and teaches) the best response to one known opponent: uniform over the
    best moves; its value is the best expected score mapped to [-1, 1]. In positions
    the opponent never lets arise it plays perfectly."""

    game = "tictactoe"

    def __init__(self, opponent: PolicyAgent) -> None:
        self.response = best_response(opponent)
        self.name = f"best-response:{opponent.name}"
        size = 1 << (2 * N_SQUARES)
        self._moves = np.zeros(size, dtype=np.int64)
        self._value = np.zeros(size, dtype=np.float64)
        # Positions this opponent never lets arise get the perfect player's moves.
        table = solved()
        self._moves[table.keys] = table.optimal[table.keys]
        self._value[table.keys] = (table.value[table.keys] + 1.0) / 2.0
        for key, bits in self.response.moves.items():
            self._moves[key] = bits
            self._value[key] = self.response.value[key]

    def policy(self, obs: np.ndarray, mask: np.ndarray, state: State | None = None) -> np.ndarray:
        bits = self._moves[board_keys(obs)]
        best = ((bits[:, None] >> np.arange(N_SQUARES)) & 1).astype(np.float64)
        best *= np.asarray(mask) != 0
        return best / np.maximum(best.sum(axis=1, keepdims=True), 1.0)

    def value(self, obs: np.ndarray, mask: np.ndarray, state: State | None = None) -> np.ndarray:
        return 2.0 * self._value[board_keys(obs)] - 1.0
