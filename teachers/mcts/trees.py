"""The search trees of a batched MCTS: B trees as flat arrays, one per game.

Arrays indexed ``[game, node, action]`` rather than node objects, so that one numpy
operation serves every game; solved outcomes (MCTS-Solver) are kept and propagated
here.
"""

from __future__ import annotations

import numpy as np

from teachers.mcts.evaluators import LeafEvaluation


class SearchTrees:
    """B search trees as arrays; node 0 of each tree is its root.

    Edge statistics live on the parent (``[game, node, action]``), AlphaZero style:
    visit counts and the sum of backed-up values from the point of view of the player
    to move at the parent. A node is *solved* when its outcome is known for certain: a
    terminal node, or (MCTS-Solver) one whose mover has a move to a solved win, or whose
    moves are all solved; ``outcome`` then holds its value for each seat and
    ``plies_left`` the number of moves to the end under best play (wins as soon, losses
    as late as possible).
    """

    __slots__ = (
        "children",
        "legal",
        "prior",
        "visits",
        "value_sum",
        "player",
        "solved",
        "outcome",
        "plies_left",
        "size",
    )

    def __init__(self, n_games: int, capacity: int, num_actions: int) -> None:
        shape = (n_games, capacity, num_actions)
        self.children = np.full(shape, -1, dtype=np.int32)
        self.legal = np.zeros(shape, dtype=bool)
        self.prior = np.zeros(shape, dtype=np.float64)
        self.visits = np.zeros(shape, dtype=np.int32)
        self.value_sum = np.zeros(shape, dtype=np.float64)
        self.player = np.zeros((n_games, capacity), dtype=np.int8)
        self.solved = np.zeros((n_games, capacity), dtype=bool)
        self.outcome = np.zeros((n_games, capacity, 2), dtype=np.float64)
        self.plies_left = np.zeros((n_games, capacity), dtype=np.int64)
        self.size = np.zeros(n_games, dtype=np.int64)

    @staticmethod
    def nbytes(n_games: int, capacity: int, num_actions: int) -> int:
        """The memory that trees of these sizes take, in bytes."""
        per_edge = 4 + 1 + 8 + 4 + 8  # children, legal, prior, visits, value_sum
        per_node = 1 + 1 + 16 + 8  # player, solved, outcome, plies_left
        return n_games * (capacity * (num_actions * per_edge + per_node) + 8)

    def add(self, games: np.ndarray, evaluation: LeafEvaluation, priors: np.ndarray) -> np.ndarray:
        """Append one node per game in ``games`` from its leaf; returns the node ids."""
        leaves = evaluation.leaves
        node = self.size[games].copy()
        self.size[games] += 1
        self.solved[games, node] = leaves.terminal
        self.outcome[games, node] = leaves.rewards
        self.player[games, node] = leaves.to_play
        self.legal[games, node] = leaves.mask.astype(bool)
        self.prior[games, node] = priors
        return node

    def child_outcomes(
        self, rows: np.ndarray, nodes: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(solved, value, plies)``, each ``[K, A]``, of the moves at ``nodes``.

        ``value`` is the child's outcome for the mover at the node, ``plies`` the moves
        to the end counting this one (both meaningful only where ``solved``).
        """
        child = self.children[rows, nodes].astype(np.int64)
        g, c = rows[:, None], np.maximum(child, 0)
        solved = (child >= 0) & self.solved[g, c]
        value = self.outcome[g, c, self.player[rows, nodes][:, None]]
        return solved, value, self.plies_left[g, c] + 1

    def propagate_solved(self, rows: np.ndarray, nodes: np.ndarray, depth: np.ndarray) -> None:
        """Mark solved the ancestors that the newly solved leaves of ``rows`` settle.

        ``nodes[b, :depth[b]]`` is game b's path from the root; its leaf is solved.
        Outcomes are taken to lie in [-1, 1], so a move worth 1 is a win to stop at.
        """
        level = depth[rows] - 1
        while rows.size:
            s = nodes[rows, level]
            solved, value, plies = self.child_outcomes(rows, s)
            legal = self.legal[rows, s]
            known = solved & legal
            # The best outcome first; then a win as soon and a loss as late as possible.
            key = np.where(known, 1e3 * value - np.sign(value) * plies, -np.inf)
            best = key.argmax(axis=1)
            win = (known & (value >= 1.0)).any(axis=1)
            settled = (solved | ~legal).all(axis=1) | win
            rows, s, best, level = rows[settled], s[settled], best[settled], level[settled]
            child = self.children[rows, s, best]
            self.solved[rows, s] = True
            self.outcome[rows, s] = self.outcome[rows, child]
            self.plies_left[rows, s] = self.plies_left[rows, child] + 1
            up = level > 0
            rows, level = rows[up], level[up] - 1

