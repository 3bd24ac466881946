"""Tic-tac-toe players with styles: families of opponents with habits to exploit.

Each family is a spec kind, and each player a :class:`StylePlayer` whose policy is
exact (a table over every reachable position, built once), so a best response to it
can be computed exactly (:mod:`teachers.best_response`):

- ``noisy:E`` — the perfect player, who with probability ``E`` plays a uniformly
  random legal move instead;
- ``prefer:REGION[,p=P]`` — wins, else blocks, else with probability ``P`` (default
  1) a uniformly random free square of ``REGION`` (``corners``, ``edges``, ``center``,
  ``left``, ``right``, ``top``, ``bottom``, ``diag``, ``anti``: the two diagonals),
  else a uniformly random legal move;
- ``blind:LINES`` — wins, else blocks, but does not see the lines ``LINES``
  (``diagonals``, ``rows``, ``columns``, ``diag``, ``anti``, ``row0``..``row2``,
  ``col0``..``col2``; several joined by ``+``), else random;
- ``minimax:D`` — negamax to ``D`` plies (a position not decided by then counts as
  a draw), uniform over the best moves.

Every one reads PettingZoo observations only, like the other fixed players. The same
kinds (but ``minimax:``) build connect-four players with styles on that game
(:mod:`arena.players.c4_styles`).
"""

from __future__ import annotations

import functools

import numpy as np

from arena.core import PolicyAgent, State, TlmError
from arena.players.c4_styles import (
    COLUMN_REGIONS,
    DIRECTION_NAMES,
    NoisyConnectFour,
    make_blind_connect_four,
    make_prefer_connect_four,
)
from arena.players.tictactoe import (
    FULL,
    LINE_MASKS,
    N_SQUARES,
    board_keys,
    solved,
)

REGIONS: dict[str, tuple[int, ...]] = {
    "corners": (0, 2, 6, 8),
    "edges": (1, 3, 5, 7),
    "center": (4,),
    "left": (0, 3, 6),
    "right": (2, 5, 8),
    "top": (0, 1, 2),
    "bottom": (6, 7, 8),
    "diag": (0, 4, 8),
    "anti": (2, 4, 6),
}
"""The squares each ``prefer:REGION`` favours (square ``3r + c``)."""

LINE_NAMES: dict[str, tuple[int, ...]] = {
    "row0": (0,), "row1": (1,), "row2": (2,),
    "col0": (3,), "col1": (4,), "col2": (5,),
    "diag": (6,), "anti": (7,),
    "rows": (0, 1, 2), "columns": (3, 4, 5), "diagonals": (6, 7),
}
"""Indices into :data:`arena.players.tictactoe.LINES` of each name ``blind:`` takes."""

MAX_MINIMAX_DEPTH = 9


def _bits(mask: int) -> list[int]:
    return [a for a in range(N_SQUARES) if mask >> a & 1]


def _completing(stones: int, empty: int, lines: tuple[int, ...]) -> int:
    """Empty squares that complete one of ``lines`` (masks) for ``stones``."""
    out = 0
    for line in lines:
        missing = line & ~stones
        if missing & (missing - 1) == 0 and missing & empty:
            out |= missing
    return out


def _uniform(moves: int) -> np.ndarray:
    p = np.zeros(N_SQUARES)
    squares = _bits(moves)
    p[squares] = 1.0 / len(squares)
    return p


class StylePlayer(PolicyAgent):
    """A tic-tac-toe player whose move probabilities come from a table over every
    reachable position (``policy_of(mine, theirs) -> probs[9]``, built on first use)."""

    game = "tictactoe"

    def __init__(self, name: str) -> None:
        self.name = name
        self._table: np.ndarray | None = None

    def move_probabilities(self, mine: int, theirs: int) -> np.ndarray:
        """``[9]`` probabilities of each square in the position ``(mine, theirs)``
        (the mover's stones and the opponent's, as bitmasks; the game not over)."""
        raise NotImplementedError

    def table(self) -> np.ndarray:
        """``[2**18, 9]`` float32: the policy of every reachable non-terminal key."""
        if self._table is None:
            table = np.zeros((1 << (2 * N_SQUARES), N_SQUARES), dtype=np.float32)
            for key in solved().keys.tolist():
                table[key] = self.move_probabilities(key & FULL, key >> N_SQUARES)
            self._table = table
        return self._table

    def policy(self, obs: np.ndarray, mask: np.ndarray, state: State | None = None) -> np.ndarray:
        probs = self.table()[board_keys(obs)].astype(np.float64) * (np.asarray(mask) != 0)
        return probs / np.maximum(probs.sum(axis=1, keepdims=True), 1e-12)


class NoisyPerfect(StylePlayer):
    """``noisy:E``: the perfect player, a uniformly random move with probability ``E``."""

    def __init__(self, epsilon: float) -> None:
        super().__init__(f"noisy:{epsilon:g}")
        self.epsilon = epsilon

    def move_probabilities(self, mine: int, theirs: int) -> np.ndarray:
        key = mine | theirs << N_SQUARES
        empty = FULL & ~(mine | theirs)
        return ((1 - self.epsilon) * _uniform(int(solved().optimal[key]))
                + self.epsilon * _uniform(empty))


class WinBlockPlayer(StylePlayer):
    """Wins, else blocks (over the lines it sees), else ``fallback``; the parents of
    ``prefer:`` and ``blind:``."""

    def __init__(self, name: str, seen: tuple[int, ...] = LINE_MASKS) -> None:
        super().__init__(name)
        self.seen = seen

    def fallback(self, empty: int) -> np.ndarray:
        return _uniform(empty)

    def move_probabilities(self, mine: int, theirs: int) -> np.ndarray:
        empty = FULL & ~(mine | theirs)
        wins = _completing(mine, empty, self.seen)
        if wins:
            return _uniform(wins)
        blocks = _completing(theirs, empty, self.seen)
        if blocks:
            return _uniform(blocks)
        return self.fallback(empty)


class PreferPlayer(WinBlockPlayer):
    """``prefer:REGION[,p=P]``: wins, else blocks, else favours a region's squares."""

    def __init__(self, region: str, p: float = 1.0) -> None:
        super().__init__(f"prefer:{region}" + ("" if p == 1.0 else f",p={p:g}"))
        self.region = sum(1 << a for a in REGIONS[region])
        self.p = p

    def fallback(self, empty: int) -> np.ndarray:
        preferred = empty & self.region
        if not preferred:
            return _uniform(empty)
        return self.p * _uniform(preferred) + (1 - self.p) * _uniform(empty)


class BlindPlayer(WinBlockPlayer):
    """``blind:LINES``: wins, else blocks, but never sees the lines named."""

    def __init__(self, lines: str) -> None:
        hidden = {i for name in lines.split("+") for i in LINE_NAMES[name]}
        super().__init__(f"blind:{lines}",
                         tuple(m for i, m in enumerate(LINE_MASKS) if i not in hidden))


class MinimaxPlayer(StylePlayer):
    """``minimax:D``: negamax to ``D`` plies (undecided = draw), uniform over the best."""

    def __init__(self, depth: int) -> None:
        super().__init__(f"minimax:{depth}")
        self.depth = depth

    @staticmethod
    @functools.cache
    def _value(mine: int, theirs: int, depth: int) -> int:
        """The mover's negamax value of a live position searched ``depth`` plies."""
        empty = FULL & ~(mine | theirs)
        if depth == 0 or not empty:
            return 0
        best = -2
        for a in _bits(empty):
            child = mine | 1 << a
            v = 1 if any(child & m == m for m in LINE_MASKS) else -MinimaxPlayer._value(
                theirs, child, depth - 1)
            best = max(best, v)
            if best == 1:
                break
        return best

    def move_probabilities(self, mine: int, theirs: int) -> np.ndarray:
        empty = FULL & ~(mine | theirs)
        values = {}
        for a in _bits(empty):
            child = mine | 1 << a
            values[a] = (1 if any(child & m == m for m in LINE_MASKS)
                         else -self._value(theirs, child, self.depth - 1))
        top = max(values.values())
        return _uniform(sum(1 << a for a, v in values.items() if v == top))


def _number(text: str, what: str, usage: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise TlmError(f"{what} must be a number, got {text!r} ({usage})") from None
    if not 0.0 <= value <= 1.0:
        raise TlmError(f"{what} must lie in [0, 1], got {value:g} ({usage})")
    return value


NOISY_USAGE = "noisy:E (E in [0, 1])"
PREFER_USAGE = (f"prefer:REGION[,p=P] (REGION: {', '.join(REGIONS)} on tictactoe, "
                f"{', '.join(COLUMN_REGIONS)} on connect_four; P in [0, 1])")
BLIND_USAGE = (f"blind:LINES (LINES: {', '.join(LINE_NAMES)} on tictactoe, "
               f"{', '.join(DIRECTION_NAMES)} on connect_four; joined by +)")
MINIMAX_USAGE = f"minimax:D (D in 1..{MAX_MINIMAX_DEPTH})"


def make_noisy(arg: str | None, game: str = "tictactoe") -> PolicyAgent:
    """The ``noisy:E`` spec (on connect four, :class:`NoisyConnectFour`)."""
    if not arg:
        raise TlmError(f"noisy needs its probability of a random move ({NOISY_USAGE})")
    epsilon = _number(arg, "noisy's E", NOISY_USAGE)
    if game == "connect_four":
        return NoisyConnectFour(epsilon)
    return NoisyPerfect(epsilon)


def make_prefer(arg: str | None, game: str = "tictactoe") -> PolicyAgent:
    """The ``prefer:REGION[,p=P]`` spec (on connect four, :class:`PreferConnectFour`)."""
    region, *rest = (arg or "").split(",")
    p = 1.0
    for part in rest:
        name, _, value = part.partition("=")
        if name != "p":
            raise TlmError(f"unknown option {part!r} ({PREFER_USAGE})")
        p = _number(value, "prefer's p", PREFER_USAGE)
    if game == "connect_four":
        return make_prefer_connect_four(region, p, PREFER_USAGE)
    if region not in REGIONS:
        raise TlmError(f"unknown region {region!r} ({PREFER_USAGE})")
    return PreferPlayer(region, p)


def make_blind(arg: str | None, game: str = "tictactoe") -> PolicyAgent:
    """The ``blind:LINES`` spec (on connect four, :class:`BlindConnectFour`)."""
    if game == "connect_four":
        return make_blind_connect_four(arg, BLIND_USAGE)
    names = (arg or "").split("+")
    bad = [n for n in names if n not in LINE_NAMES]
    if bad:
        raise TlmError(f"unknown line {bad[0]!r} ({BLIND_USAGE})")
    return BlindPlayer("+".join(names))


def make_minimax(arg: str | None, game: str = "tictactoe") -> MinimaxPlayer:
    """The ``minimax:D`` spec (tic-tac-toe only)."""
    if game != "tictactoe":
        raise TlmError(f"minimax plays tictactoe, not {game} (alphabeta:D plays connect four)")
    try:
        depth = int(arg or "")
    except ValueError:
        raise TlmError(f"minimax needs a whole depth ({MINIMAX_USAGE})") from None
    if not 1 <= depth <= MAX_MINIMAX_DEPTH:
        raise TlmError(f"minimax depth must be in 1..{MAX_MINIMAX_DEPTH}, got {depth}")
    return MinimaxPlayer(depth)
