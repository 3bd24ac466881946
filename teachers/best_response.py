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

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from arena.core import Agent, PolicyAgent, State, TlmError, sample_from
from arena.matches import play_matches
from arena.players.heuristic import LINE_GAMES, completing_moves
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


def best_response(opponent: PolicyAgent, safe: bool = False,
                  loss_weight: float = 0.0) -> BestResponse:
    """The exact best response to ``opponent`` on tic-tac-toe (see the module).

    With ``loss_weight`` λ > 0, the moves maximise the expected score minus λ times the
    probability of losing (a loss counts -λ instead of 0): a risk-averse response that
    gives up an exploit whose gain is small against the chance of a loss it opens (at
    λ = 2 it loses no game to ``random``, and keeps 97% of the exact best response's gain
    over ``perfect`` against the held-out one-side players). ``value`` and ``scores``
    are then the expected scores of the moves it chose.

    With ``safe``, the best response among the moves that never give the game up: in
    a position not lost, only moves after which the responder still cannot lose
    against any reply, so that it never loses a game to anyone (``random`` and
    ``perfect`` included), at the price of the exploits that risk a loss.
    """
    if not math.isfinite(loss_weight) or loss_weight < 0:
        raise TlmError(f"loss_weight must be >= 0, got {loss_weight}")
    theirs_policy = policy_table(opponent)
    solved_value = solved().value
    lost = -float(loss_weight)
    moves: dict[int, int] = {}
    value: dict[int, float] = {}
    memo: dict[tuple[int, int, bool], float] = {}

    def expect(us: int, them: int, our_move: bool) -> float:
        """The responder's expected utility from here (its score, a loss counting
        ``lost``), best play against the opponent."""
        state = (us, them, our_move)
        known = memo.get(state)
        if known is not None:
            return known
        empty = FULL & ~(us | them)
        if not empty:
            v = 0.5
        elif our_move:
            best, best_moves = -math.inf, 0
            # Safe: a move may not lose what the position holds (a draw at best counts).
            floor = min(int(solved_value[us | them << N_SQUARES]), 0) if safe else None
            for a in range(N_SQUARES):
                if empty >> a & 1:
                    child = us | 1 << a
                    won = _won(child)
                    if (floor is not None and not won
                            and -int(solved_value[them | child << N_SQUARES]) < floor):
                        continue
                    s = 1.0 if won else expect(child, them, False)
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
                    v += probs[a] * (lost if _won(child) else expect(us, child, True))
        memo[state] = v
        return v

    scores = (expect(0, 0, True), expect(0, 0, False))
    if lost:
        value, scores = _scores_of(moves, theirs_policy)
    return BestResponse(opponent.name, moves, value, scores)


def _scores_of(moves: dict[int, int], theirs_policy: dict[int, np.ndarray]
               ) -> tuple[dict[int, float], tuple[float, float]]:
    """The expected score of the responder playing uniformly among ``moves`` in every
    position it moves in, and from the start in either seat."""
    ours = {key: _uniform(bits) for key, bits in moves.items()}
    expect = _expectation(ours, theirs_policy)
    value = {key: expect(key & FULL, key >> N_SQUARES, True) for key in moves}
    return value, (expect(0, 0, True), expect(0, 0, False))


def _uniform(bits: int) -> np.ndarray:
    row = ((bits >> np.arange(N_SQUARES)) & 1).astype(np.float64)
    return row / row.sum()


def _expectation(ours: dict[int, np.ndarray], theirs: dict[int, np.ndarray]
                 ) -> Callable[[int, int, bool], float]:
    """``expect(us, them, our_move)``: the exact expected score of the player whose move
    probabilities are ``ours`` against the one of ``theirs`` (tables by key, the mover's
    view), memoised."""
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

    return expect


@dataclass(frozen=True)
class CautiousResponse:
    """The best response of a player who risks nothing until the opponent errs.

    Until the opponent has made an *error* (a move that lowers its own game-theoretic
    value, which the perfect player never makes), the cautious player keeps to the
    optimal moves, so it cannot lose to anyone who has not yet erred, the perfect
    player included; among those moves it takes the ones with the best expected score
    against the opponent. After the first error it plays the best response. Against
    an opponent that errs, it exploits; against one that has not erred yet, it is as
    safe as the perfect player.

    Attributes:
        opponent: the opponent's name.
        response: the best response, played once the opponent has erred.
        moves: ``{key: bitmask}`` of the cautious best moves in every position where
            the responder moves and the opponent has not erred (either seat).
        value: ``{key: expected score}`` there.
        scores: ``(seat 0, seat 1)``: the expected score of a game begun before the
            opponent's first error.
        errs: ``(seat 0, seat 1)``: the probability that the opponent errs in such a
            game.
    """

    opponent: str
    response: BestResponse
    moves: dict[int, int]
    value: dict[int, float]
    scores: tuple[float, float]
    errs: tuple[float, float]

    def series_scores(self, k: int) -> np.ndarray:
        """``[k]``: the exact expected score at each game index of a series of ``k``
        games (seats alternating, the responder's memory of an error kept for the
        series), averaged over series that start in either seat."""
        out = np.zeros(k)
        for start in (0, 1):
            unerred = 1.0
            for j in range(k):
                seat = (start + j) % 2
                out[j] += 0.5 * ((1.0 - unerred) * self.response.scores[seat]
                                 + unerred * self.scores[seat])
                unerred *= 1.0 - self.errs[seat]
        return out


def cautious_response(opponent: PolicyAgent, loss_weight: float = 0.0) -> CautiousResponse:
    """The exact :class:`CautiousResponse` to ``opponent`` on tic-tac-toe.

    Expectimax as in :func:`best_response`, over positions in which the opponent has
    not erred: the responder maximises over the optimal moves only (every move is
    searched, so that the table covers positions its own exploration reaches), and an
    opponent's error hands the game to the best response from there (risk-averse with
    ``loss_weight``, see :func:`best_response`).
    """
    response = best_response(opponent, loss_weight=loss_weight)
    theirs_policy = policy_table(opponent)
    optimal = solved().optimal
    moves: dict[int, int] = {}
    value: dict[int, float] = {}
    memo: dict[tuple[int, int, bool], tuple[float, float]] = {}

    def expect(us: int, them: int, our_move: bool) -> tuple[float, float]:
        """(expected score, probability the opponent errs) from here, no error so far."""
        state = (us, them, our_move)
        known = memo.get(state)
        if known is not None:
            return known
        empty = FULL & ~(us | them)
        if not empty:
            out = (0.5, 0.0)
        elif our_move:
            key = us | them << N_SQUARES
            safe = int(optimal[key])
            best, best_moves, errs = -1.0, 0, 0.0
            for a in range(N_SQUARES):
                if empty >> a & 1:
                    child = us | 1 << a
                    s, e = (1.0, 0.0) if _won(child) else expect(child, them, False)
                    if not safe >> a & 1:
                        continue
                    if s > best + _TIE:
                        best, best_moves, errs = s, 1 << a, e
                    elif s > best - _TIE:
                        best_moves |= 1 << a
                        errs += e
            moves[key], value[key] = best_moves, best
            out = (best, errs / best_moves.bit_count())
        else:
            key = them | us << N_SQUARES
            probs, good = theirs_policy[key], int(optimal[key])
            score = errs = 0.0
            for a in range(N_SQUARES):
                p = probs[a]
                if p <= 0:
                    continue
                child = them | 1 << a
                if _won(child):
                    continue
                if good >> a & 1:
                    s, e = expect(us, child, True)
                    score, errs = score + p * s, errs + p * e
                else:
                    after = us | child << N_SQUARES
                    s = response.value[after] if FULL & ~(us | child) else 0.5
                    score, errs = score + p * s, errs + p
            out = (score, errs)
        memo[state] = out
        return out

    first, second = expect(0, 0, True), expect(0, 0, False)
    return CautiousResponse(opponent.name, response, moves, value,
                            (first[0], second[0]), (first[1], second[1]))


def expected_score(player: PolicyAgent, opponent: PolicyAgent, seat: int) -> float:
    """The exact expected score of ``player`` (its policy, sampled) against
    ``opponent`` in ``seat`` (0 moves first)."""
    if seat not in (0, 1):
        raise TlmError(f"seat must be 0 or 1, got {seat}")
    return _expectation(policy_table(player), policy_table(opponent))(0, 0, seat == 0)


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


def _move_table(moves: dict[int, int], fallback: np.ndarray) -> np.ndarray:
    """``[2**18]`` int16 bitmasks: ``moves`` where given, ``fallback`` elsewhere."""
    table = fallback.astype(np.int16, copy=True)
    keys = np.fromiter(moves.keys(), dtype=np.int64, count=len(moves))
    table[keys] = np.fromiter(moves.values(), dtype=np.int16, count=len(moves))
    return table


def opponent_errors(obs: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """``[B]`` bool: whether each move of ``actions`` lowers its mover's game-theoretic
    value in the position ``obs`` (the mover's view): an error, which the perfect
    player never makes."""
    good = solved().optimal[board_keys(obs)].astype(np.int64)
    return (good >> np.asarray(actions, dtype=np.int64)) & 1 == 0


def tactical_answers(obs: np.ndarray, actions: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(forced, answered, won)``, ``[B]`` bool each: whether the mover in ``obs`` (its
    view) had a line of its own to complete or one of the other player's to block, with
    more than one free square (a last square is no choice); whether its move of
    ``actions`` did it (a win where it had one, else a block); and whether the move won.
    A player that takes every win and block answers all; one that plays at random seldom
    does. A win ends the game, so a player who sees the opponent's moves only in the
    positions it is then to move in never sees one."""
    obs = np.asarray(obs)
    b = len(obs)
    empty = obs.reshape(b, N_SQUARES, 2).sum(axis=2) == 0
    wins, blocks = completing_moves(LINE_GAMES["tictactoe"], obs, empty).transpose(1, 0, 2)
    need = np.where(wins.any(axis=1, keepdims=True), wins, blocks)
    rows, moves = np.arange(b), np.asarray(actions, dtype=np.int64)
    forced = need.any(axis=1) & (empty.sum(axis=1) > 1)
    return forced, forced & need[rows, moves], wins[rows, moves]


class SeriesTeacher(Agent):
    """Plays (and labels) the response to one known opponent over a series of games:
    the best response, or with ``cautious`` the :class:`CautiousResponse` (the best
    optimal move until the opponent errs in the series, the best response after);
    with ``loss_weight`` the best response is risk-averse (see :func:`best_response`).

    With ``forced_answers`` N > 0 (cautious only), the best response also waits until
    the opponent has shown that it plays its tactics: N of its moves in the series
    blocked a line of the teacher's (:func:`tactical_answers`; a win it takes ends the
    game and is not seen), and none missed a win or a block. The best response's
    exploits risk a loss against a player that may answer anything (``random``, a
    ``noisy`` player), which a student, never told whom it plays, cannot tell at once
    from a habit it can exploit; a player that missed a win or a block is never
    exploited at a risk in that series. The teacher then plays the best optimal move a
    few games longer, and all but never loses to ``random``.

    Its memory is ``[erred, their stones at its last decision, answers, missed]`` per
    series: it sees the opponent's moves as a student does, by comparing its positions,
    so it knows when the opponent first errs and how it met its forced moves. It plays
    uniformly among the moves it labels.

    Attributes:
        response: the best response.
        cautious: the cautious response, or ``None``.
        best: ``[2**18]`` int16: the best response's moves (bitmask) in every position
            (the perfect player's where the opponent never lets the game go).
        safe: the same for the cautious response before an error, or ``None``.
        loss_weight: what a loss costs the best response (0: the exact one).
        forced_answers: answered forced moves before an exploit (0: no such wait).
        exact_score: the exact best response's score (whatever ``loss_weight``).
        opponent: the opponent.
    """

    game = "tictactoe"
    recurrent = True

    def __init__(self, opponent: PolicyAgent, cautious: bool = True,
                 loss_weight: float = 0.0, forced_answers: int = 0) -> None:
        if forced_answers < 0 or forced_answers and not cautious:
            raise TlmError(f"forced_answers must be >= 0, and needs the cautious response, "
                           f"got {forced_answers}")
        self.opponent, self.forced_answers = opponent, forced_answers
        table = solved()
        if cautious:
            self.cautious: CautiousResponse | None = cautious_response(opponent, loss_weight)
            self.response = self.cautious.response
            self.safe: np.ndarray | None = _move_table(self.cautious.moves, table.optimal)
        else:
            self.cautious, self.safe = None, None
            self.response = best_response(opponent, loss_weight=loss_weight)
        self.loss_weight = loss_weight
        self.exact_score = (best_response(opponent).score if loss_weight
                            else self.response.score)
        self.best = _move_table(self.response.moves, table.optimal)
        self.name = f"{'cautious' if cautious else 'best'}-response:{opponent.name}"

    def against(self, opponent: PolicyAgent) -> SeriesTeacher:
        """The same teacher (cautious or not, the same ``loss_weight`` and
        ``forced_answers``) against another opponent."""
        return SeriesTeacher(opponent, cautious=self.cautious is not None,
                             loss_weight=self.loss_weight, forced_answers=self.forced_answers)

    def oracle(self, k: int, n_series: int = 1000, seed: int = 0) -> np.ndarray:
        """``[k]``: its expected score at each game index of series of ``k`` games
        (seats alternating; averaged over series starting in either seat): exact, or
        with ``forced_answers`` the mean of ``n_series`` series played from ``seed``."""
        if self.cautious is None:
            return np.full(k, self.response.score)
        if not self.forced_answers:
            return self.cautious.series_scores(k)
        result = play_matches("tictactoe", self, self.opponent, n_series * k, seed, series=k)
        return ((result.outcome + 1.0) / 2.0).reshape(n_series, k).mean(axis=0)

    def trusted(self, answers: np.ndarray, missed: np.ndarray) -> np.ndarray:
        """``[B]`` bool: whether an opponent that answered ``answers`` forced moves and
        ``missed`` one (or not) may be exploited at a risk."""
        if not self.forced_answers:
            return np.ones(len(answers), dtype=bool)
        return (np.asarray(answers) >= self.forced_answers) & ~np.asarray(missed, dtype=bool)

    def labels(self, keys: np.ndarray, erred: np.ndarray,
               trusted: np.ndarray | None = None) -> np.ndarray:
        """``[B]`` int16 bitmasks of its moves in the positions ``keys`` (it to move),
        given whether the opponent has erred in the series so far and, with
        ``forced_answers``, whether it is :meth:`trusted` to play its tactics."""
        if self.safe is None:
            return self.best[keys]
        exploit = erred if trusted is None else erred & trusted
        return np.where(exploit, self.best[keys], self.safe[keys])

    def label_moves(self, obs: np.ndarray, erred: np.ndarray,
                    trusted: np.ndarray | None = None) -> np.ndarray:
        """:meth:`labels` of the positions ``obs`` (it to move)."""
        return self.labels(board_keys(obs), erred, trusted)

    @staticmethod
    def errors(obs: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """The opponent's errors among its ``actions`` in ``obs`` (:func:`opponent_errors`)."""
        return opponent_errors(obs, actions)

    def initial_memory(self, n: int) -> np.ndarray:
        return np.zeros((n, 4), dtype=np.float32)

    def act_with_memory(self, obs: np.ndarray, mask: np.ndarray, rng: np.random.Generator,
                        memory: np.ndarray, state: State | None = None
                        ) -> tuple[np.ndarray, np.ndarray]:
        keys = board_keys(obs)
        mine, theirs = keys & FULL, keys >> N_SQUARES
        before = memory[:, 1].astype(np.int64)
        moved = theirs & ~before
        # Their move was made in the position of their stones before it and ours now.
        square = np.where(moved > 0, np.log2(np.maximum(moved, 1)).astype(np.int64), 0)
        was = before | mine << N_SQUARES
        erred = memory[:, 0] > 0
        erred |= (moved > 0) & ((solved().optimal[was].astype(np.int64) >> square) & 1 == 0)
        answers, missed = memory[:, 2], memory[:, 3] > 0
        if self.forced_answers:  # only a teacher that waits follows the tactics
            forced, answered, _ = tactical_answers(keys_to_obs(was)[0], square)
            forced &= moved > 0
            answers = answers + (forced & answered)
            missed = missed | (forced & ~answered)
        bits = self.labels(keys, erred, self.trusted(answers, missed))
        best = ((bits[:, None].astype(np.int64) >> np.arange(N_SQUARES)) & 1).astype(float)
        best *= np.asarray(mask) != 0
        actions = sample_from(best / np.maximum(best.sum(axis=1, keepdims=True), 1.0), rng)
        new = np.stack([erred, theirs, answers, missed], axis=1).astype(np.float32)
        return actions, new

    def end_game(self, memory: np.ndarray, result: np.ndarray) -> np.ndarray:
        new = memory.copy()
        new[:, 1] = 0.0
        return new
