"""A best response to a known connect-four opponent, by search: the teacher of a student
that learns to exploit whoever it plays, where the game is too large to solve.

For each of our moves the opponent's replies are weighed by its own move probabilities
(expectimax at its node, one batched call to its policy for every position searched),
and each reply's position is valued by the compiled ``alphabeta`` search
(:mod:`arena.players.c4_search`) from there: ``depth`` plies more, the opponent then
assumed to play its best. The search's score maps to an expected score in [0, 1]
(``0.5 + 0.5 tanh(score / 40)``: a win 1, a loss 0, an exact draw 0.5), so a move's
value is the expected score against this opponent's next move and best play after.

Its minimax twin is ``alphabeta:(depth + 2)``: the same search, the opponent's reply
taken at its worst for us instead of weighed by its policy. The difference between
the two against an opponent is what knowing the opponent is worth to this search.
"""

from __future__ import annotations

import numpy as np

from arena.core import PolicyAgent, State, TlmError
from arena.matches import play_matches
from arena.players.connect_four import INF, VALUE_SCALE, decode_arrays
from arena.players.heuristic import LINE_GAMES, completing_moves, target_cells

_BOARD = LINE_GAMES["connect_four"]
_WIDTH = _BOARD.cols
_CHUNK = 2048
"""Positions whose moves are valued in one batch (7 times as many children)."""
_TIE = 1e-9

MAX_RESPONSE_DEPTH = 6
"""The deepest search a response runs at the replies' positions."""


def _children(obs: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(child_obs [B*7, 6, 7, 2], child_mask [B*7, 7], full [B*7])``: each position
    after each column (the other player to move, seen from its side; an illegal
    column gives the position unchanged), and whether the child's board is full."""
    b = len(obs)
    cells = target_cells(_BOARD, obs)  # [B, 7], 42 where full
    flat = obs.reshape(b, 1, _BOARD.n_cells, 2).repeat(_WIDTH, axis=1).copy()
    rows, cols = np.nonzero(np.asarray(mask) != 0)
    flat[rows, cols, cells[rows, cols], 0] = 1
    child = flat[..., ::-1].reshape(b * _WIDTH, _BOARD.rows, _BOARD.cols, 2)
    child = np.ascontiguousarray(child)
    occupied = np.asarray(child.any(axis=-1))
    child_mask = (~occupied[:, 0, :]).astype(np.int8)
    full = np.asarray(occupied.reshape(len(occupied), -1).all(axis=1))
    return child, child_mask, full


def response_values(opponent: PolicyAgent, obs: np.ndarray, mask: np.ndarray,
                    depth: int) -> np.ndarray:
    """``[B, 7]``: the expected score of each legal column (``-inf`` for the others)
    against ``opponent``'s next move and the best play of both after, searched
    ``depth`` plies beyond that move (see the module)."""
    from arena.players.c4_search import search_scores  # numba loads on first use

    obs, mask = np.asarray(obs), np.asarray(mask)
    out = np.full(mask.shape, -np.inf)
    for lo in range(0, len(obs), _CHUNK):
        o, m = obs[lo:lo + _CHUNK], mask[lo:lo + _CHUNK]
        b = len(o)
        legal = m != 0
        wins = completing_moves(_BOARD, o, m)[:, 0]
        child, child_mask, full = _children(o, m)
        live = (legal & ~wins).reshape(-1) & ~full
        values = np.where(full, 0.5, 0.0)
        if live.any():
            c, cm = child[live], child_mask[live]
            probs = np.asarray(opponent.policy(c, cm), dtype=np.float64) * (cm != 0)
            probs /= np.maximum(probs.sum(axis=1, keepdims=True), 1e-12)
            ps, masks = decode_arrays(c)
            scores = search_scores(ps, masks, depth + 1, margin=INF)
            ours = 0.5 - 0.5 * np.tanh(np.where(cm != 0, scores, 0.0) / VALUE_SCALE)
            values[live] = (probs * ours).sum(axis=1)
        values = values.reshape(b, _WIDTH)
        out[lo:lo + b] = np.where(legal, np.where(wins, 1.0, values), -np.inf)
    return out


def _best(values: np.ndarray) -> np.ndarray:
    """``[B, 7]`` bool: the columns within a hair of each row's best value."""
    return np.isfinite(values) & (values >= values.max(axis=1, keepdims=True) - _TIE)


def best_moves(values: np.ndarray) -> np.ndarray:
    """``[B]`` int16 bitmasks of the columns within a hair of each row's best value."""
    bits = _best(values).astype(np.int64) << np.arange(values.shape[1])
    return bits.sum(axis=1).astype(np.int16)


class SearchResponse(PolicyAgent):
    """Plays (and labels) the search's best response to one known connect-four opponent
    (see the module): uniform over the best columns; its value is the best expected
    score mapped to [-1, 1].

    It is the series teacher of an in-context run on connect four (the same protocol as
    :class:`teachers.best_response.SeriesTeacher`, less what needs the solved game: it
    is never cautious, and it sees no errors)."""

    game = "connect_four"
    forced_answers = 0
    """It exploits from the first move (the protocol's wait for the opponent's tactics)."""
    exact_score: float | None = None
    """No exact score: its score is measured by :meth:`oracle`."""

    def __init__(self, opponent: PolicyAgent, depth: int = 2) -> None:
        if not 0 <= depth <= MAX_RESPONSE_DEPTH:
            raise TlmError(f"the response's search depth must be in 0..{MAX_RESPONSE_DEPTH}, "
                           f"got {depth}")
        if opponent.needs_state:
            raise TlmError(f"opponent {opponent.name!r} needs engine states; a best response "
                           "needs a policy over observations")
        self.opponent, self.depth = opponent, depth
        self.name = f"search-response:{opponent.name},depth={depth}"

    @property
    def twin(self) -> str:
        """The spec of the same search without the opponent's policy."""
        return f"alphabeta:{self.depth + 2}"

    def against(self, opponent: PolicyAgent) -> SearchResponse:
        """The same response (same depth) to another opponent."""
        return SearchResponse(opponent, self.depth)

    def policy(self, obs: np.ndarray, mask: np.ndarray, state: State | None = None) -> np.ndarray:
        best = _best(response_values(self.opponent, obs, mask, self.depth)).astype(np.float64)
        return best / np.maximum(best.sum(axis=1, keepdims=True), 1.0)

    def value(self, obs: np.ndarray, mask: np.ndarray, state: State | None = None) -> np.ndarray:
        best = response_values(self.opponent, obs, mask, self.depth).max(axis=1)
        return np.where(np.isfinite(best), 2.0 * best - 1.0, 0.0)

    def label_moves(self, obs: np.ndarray, erred: np.ndarray | None = None,
                    trusted: np.ndarray | None = None) -> np.ndarray:
        """``[B]`` int16 bitmasks of its best columns in the positions ``obs`` (it to
        move); what the opponent did before does not change them."""
        obs = np.asarray(obs)
        mask = (target_cells(_BOARD, obs) < _BOARD.n_cells).astype(np.int8)
        return best_moves(response_values(self.opponent, obs, mask, self.depth))

    def errors(self, obs: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """No move of the opponent counts as an error (connect four is not solved here)."""
        return np.zeros(len(obs), dtype=bool)

    def trusted(self, answers: np.ndarray, missed: np.ndarray) -> np.ndarray:
        return np.ones(len(answers), dtype=bool)

    def oracle(self, k: int, n_series: int = 1000, seed: int = 0) -> np.ndarray:
        """``[k]``: its mean score at each game index of ``n_series`` series of ``k``
        games against the opponent (seats alternating), played from ``seed``."""
        result = play_matches("connect_four", self, self.opponent, n_series * k, seed, series=k)
        return ((result.outcome + 1.0) / 2.0).reshape(n_series, k).mean(axis=0)

