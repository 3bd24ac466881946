"""Connect-four players with styles: families of opponents with habits to exploit.

The connect-four counterparts of :mod:`arena.players.styles`, under the same spec
kinds. Each reads PettingZoo observations only and is vectorised over the batch, so
a best response can ask for its move probabilities in many positions at once
(:mod:`teachers.search_response`):

- ``prefer:REGION[,p=P]`` — wins, else blocks, else with probability ``P`` (default 1)
  a uniformly random free column of ``REGION`` (``center``: column 3; ``edges``: 0
  and 6; ``inner``: 2-4; ``outer``: 0, 1, 5, 6; ``left``: 0-2; ``right``: 4-6), else
  a uniformly random legal column;
- ``blind:DIRECTIONS`` — wins, else blocks, but does not see lines running in
  ``DIRECTIONS`` (``horizontal``, ``vertical``, ``diagonal``, ``antidiagonal``,
  ``diagonals`` for both; several joined by ``+``), else random;
- ``noisy:E`` — ``alphabeta:2`` (which sees a win or a loss two plies ahead), a
  uniformly random legal column instead with probability ``E``.
"""

from __future__ import annotations

import numpy as np

from arena.core import PolicyAgent, State, TlmError
from arena.players.connect_four import WIN, AlphaBetaConnectFour
from arena.players.heuristic import DIRECTIONS, HeuristicAgent

COLUMN_REGIONS: dict[str, tuple[int, ...]] = {
    "center": (3,),
    "edges": (0, 6),
    "inner": (2, 3, 4),
    "outer": (0, 1, 5, 6),
    "left": (0, 1, 2),
    "right": (4, 5, 6),
}
"""The columns each connect-four ``prefer:REGION`` favours."""

DIRECTION_NAMES: dict[str, tuple[str, ...]] = {
    **{name: (name,) for name in DIRECTIONS},
    "diagonals": ("diagonal", "antidiagonal"),
}
"""The line directions each name of ``blind:`` hides."""

BASE_DEPTH = 2
"""The search depth of the player that ``noisy:E`` and ``prefer:`` play when their habit
does not choose."""

def _uniform(chosen: np.ndarray) -> np.ndarray:
    chosen = chosen.astype(np.float64)
    return chosen / np.maximum(chosen.sum(axis=1, keepdims=True), 1.0)


class PreferConnectFour(PolicyAgent):
    """``prefer:REGION[,p=P]`` on connect four: ``alphabeta:2``, but with probability
    ``P`` a uniformly random column of a region among those the search does not see
    lost (unless it can win at once)."""

    game = "connect_four"

    def __init__(self, region: str, p: float = 1.0) -> None:
        self.name = f"prefer:{region}" + ("" if p == 1.0 else f",p={p:g}")
        self.columns = np.zeros(7, dtype=bool)
        self.columns[list(COLUMN_REGIONS[region])] = True
        self.p = p
        self.base = AlphaBetaConnectFour(BASE_DEPTH)

    def policy(self, obs: np.ndarray, mask: np.ndarray, state: State | None = None) -> np.ndarray:
        scores = self.base.move_scores(obs, mask)
        searched = self.base.policy(obs, mask)
        wins = (scores >= WIN // 2).any(axis=1, keepdims=True)
        preferred = (scores > -WIN // 2) & self.columns & ~wins
        some = preferred.any(axis=1, keepdims=True)
        return np.where(some, self.p * _uniform(preferred) + (1 - self.p) * searched, searched)


def blind_connect_four(names: str) -> HeuristicAgent:
    """``blind:DIRECTIONS`` on connect four: ``heuristic`` (wins, else blocks, else
    random) that never sees lines running in the directions named."""
    hidden = {d for name in names.split("+") for d in DIRECTION_NAMES[name]}
    return HeuristicAgent("connect_four", tuple(d for d in DIRECTIONS if d not in hidden),
                          name=f"blind:{names}")


class NoisyConnectFour(PolicyAgent):
    """``noisy:E`` on connect four: ``alphabeta:2``, a uniformly random legal column
    instead with probability ``E``."""

    game = "connect_four"

    def __init__(self, epsilon: float) -> None:
        self.name = f"noisy:{epsilon:g}"
        self.epsilon = epsilon
        self.base = AlphaBetaConnectFour(BASE_DEPTH)

    def policy(self, obs: np.ndarray, mask: np.ndarray, state: State | None = None) -> np.ndarray:
        legal = np.asarray(mask) != 0
        return (1 - self.epsilon) * self.base.policy(obs, mask) + self.epsilon * _uniform(legal)


def make_prefer_connect_four(region: str, p: float, usage: str) -> PreferConnectFour:
    """The connect-four ``prefer:REGION[,p=P]`` (``p`` already checked)."""
    if region not in COLUMN_REGIONS:
        raise TlmError(f"unknown connect-four region {region!r} ({usage})")
    return PreferConnectFour(region, p)


def make_blind_connect_four(arg: str | None, usage: str) -> HeuristicAgent:
    """The connect-four ``blind:DIRECTIONS``."""
    names = (arg or "").split("+")
    bad = [n for n in names if n not in DIRECTION_NAMES]
    if bad:
        raise TlmError(f"unknown connect-four direction {bad[0]!r} ({usage})")
    return blind_connect_four("+".join(names))
