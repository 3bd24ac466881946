"""The batched search: PUCT (or UCT) over B roots at once, and what it says about them.

Each simulation selects one path per tree (vectorised over the trees), reaches and
evaluates the new leaves of all games in one evaluator call, adds them to their trees
and backs the values up, with proven outcomes (MCTS-Solver). Values are from the point
of view of the player to move; the games are two-player and zero-sum.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from arena.core import Engine, State, TlmError, masked_argmax
from arena.streams import rows_rng
from teachers.mcts.evaluators import Evaluator, normalise_legal
from teachers.mcts.trees import SearchTrees

MAX_TREE_BYTES = 4 * 2**30
"""The most memory one search's trees may take; a larger search is refused up front
(its arrays are allocated whole, so it would otherwise fail halfway with MemoryError)."""


@dataclass(frozen=True)
class SearchResult:
    """What a search says about its B roots (values for the player to move at the root).

    Attributes:
        visits: ``[B, A]`` root visit counts.
        q: ``[B, A]`` value of each root move: its proven outcome where ``solved``,
            else the mean of its backed-up values (0 where unvisited).
        value: ``[B]`` the root's value: proven if the root is solved, else the mean
            over all simulations through it.
        prior: ``[B, A]`` root priors, Dirichlet noise included.
        legal: ``[B, A]`` legal root moves.
        solved: ``[B, A]`` root moves whose outcome is proven.
        plies: ``[B, A]`` for solved moves, the moves to the end under best play,
            this one included (0 elsewhere).
    """

    visits: np.ndarray
    q: np.ndarray
    value: np.ndarray
    prior: np.ndarray
    legal: np.ndarray
    solved: np.ndarray
    plies: np.ndarray

    def policy(self, temperature: float = 1.0) -> np.ndarray:
        """Visit counts as ``probs[B, A]``: ``visits ** (1 / temperature)``, normalised.

        Temperature 0 puts all the mass on one move: the quickest proven win if
        there is one, else the most visited move that is not a proven loss (ties broken
        by the higher ``q``, then the lower index), else the slowest loss. A root with
        no visited move (one simulation) falls back on its priors.
        """
        if temperature < 0:
            raise TlmError(f"temperature must be >= 0, got {temperature}")
        visits = self.visits.astype(np.float64)
        unvisited = visits.sum(axis=1) == 0
        if temperature == 0:
            # Three tiers (proven win, open or drawn, proven loss), each wider than any
            # score within it; q lies in [-1, 1], so a visit count outweighs it.
            score = np.where(unvisited[:, None], self.prior, visits + self.q / 4.0)
            win, loss = self._proven()
            score = np.where(win, -self.plies, np.where(loss, self.plies, score))
            tier = 1.0 + win - loss
            width = 2.0 * (visits.sum(axis=1, keepdims=True) + self.plies.max() + 2.0)
            score = score + width * tier
            probs = np.zeros_like(visits)
            probs[np.arange(len(probs)), masked_argmax(score, self.legal)] = 1.0
            return probs
        weights = visits ** (1.0 / temperature) if temperature != 1.0 else visits
        weights = np.where(unvisited[:, None], self.prior, weights)
        return normalise_legal(weights, self.legal)

    def proven_policy(self) -> np.ndarray:
        """The visit distribution (temperature 1) corrected by what the search proved,
        as ``probs[B, A]``: where a root move is a proven win, all the mass goes to the
        quickest proven wins; where every move is a proven loss, to the slowest ones;
        elsewhere the proven losses' visits are dropped (the priors of the moves not
        proven lost stand in where those moves have no visit)."""
        win, loss = self._proven()
        alive = self.legal.astype(bool) & ~loss
        weights = np.where(alive, self.visits, 0).astype(np.float64)
        unvisited = weights.sum(axis=1) == 0
        weights[unvisited] = np.where(alive, self.prior, 0.0)[unvisited]
        rows = win.any(axis=1)
        quickest = np.where(win, self.plies, np.iinfo(np.int64).max).min(axis=1, keepdims=True)
        weights[rows] = (win & (self.plies == quickest))[rows]
        rows = ~alive.any(axis=1)
        slowest = np.where(loss, self.plies, -1).max(axis=1, keepdims=True)
        weights[rows] = (loss & (self.plies == slowest))[rows]
        return normalise_legal(weights, self.legal)

    def _proven(self) -> tuple[np.ndarray, np.ndarray]:
        """``(win, loss)``, ``[B, A]`` each: the root moves proven won, and proven lost."""
        return self.solved & (self.q >= 1.0), self.solved & (self.q <= -1.0)


def _argmax_random_ties(score: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Row-wise argmax of ``score``, choosing uniformly among exact ties."""
    best = score.max(axis=1, keepdims=True)
    keys = rng.random(score.shape)
    return np.where(score >= best, keys, -1.0).argmax(axis=1)


class MCTS:
    """Batched PUCT/UCT search: B roots, one tree each, all advanced together.

    Each simulation selects one path per tree, reaches and evaluates the new leaves of
    all games in one evaluator call, adds them to their trees and backs the values up.
    The first simulation evaluates and expands the roots.

    Args:
        evaluator: gives leaf priors and values (:class:`RandomRolloutEvaluator`,
            :class:`NetworkEvaluator`, or anything with the same ``evaluate``).
        n_simulations: simulations per root (>= 1), the root's expansion included.
        c_puct: exploration constant.
        rule: ``"puct"`` (``Q + c P sqrt(N) / (1 + n)``, unvisited moves valued 0) or
            ``"uct"`` (``Q + c sqrt(ln N / n)``, unvisited moves first; it ignores
            priors, root noise included).
        dirichlet_alpha: concentration of the Dirichlet noise mixed into the root
            priors, or ``None`` for no noise.
        dirichlet_fraction: the noise's weight in the root priors.
        solve: back up proven outcomes (MCTS-Solver): a move into a position whose
            outcome is certain is valued at that outcome, so a move that lets the
            opponent win at once is dropped as soon as that reply is found.
    """

    def __init__(
        self,
        evaluator: Evaluator,
        n_simulations: int,
        *,
        c_puct: float = 1.5,
        rule: str = "puct",
        dirichlet_alpha: float | None = None,
        dirichlet_fraction: float = 0.25,
        solve: bool = True,
    ) -> None:
        if n_simulations < 1:
            raise TlmError(f"the number of simulations must be positive, got {n_simulations}")
        if c_puct < 0:
            raise TlmError(f"c_puct must be >= 0, got {c_puct}")
        if rule not in ("puct", "uct"):
            raise TlmError(f"unknown selection rule {rule!r} (known: puct, uct)")
        if dirichlet_alpha is not None and dirichlet_alpha <= 0:
            raise TlmError(f"dirichlet_alpha must be positive, got {dirichlet_alpha}")
        if not 0.0 <= dirichlet_fraction <= 1.0:
            raise TlmError(f"dirichlet_fraction must lie in [0, 1], got {dirichlet_fraction}")
        self.evaluator = evaluator
        self.n_simulations = n_simulations
        self.c_puct = c_puct
        self.rule = rule
        self.dirichlet_alpha = dirichlet_alpha
        self.dirichlet_fraction = dirichlet_fraction
        self.solve = solve

    def search(self, engine: Engine, root: State, rng: np.random.Generator) -> SearchResult:
        """Search from every row of ``root`` (not modified) and return the root statistics.

        Args:
            engine: the engine of ``root``.
            root: B live games.
            rng: the only source of randomness (noise, tie-breaks, rollouts).

        Raises:
            TlmError: a root game has already ended.
        """
        finished = np.flatnonzero(engine.done(root))
        if finished.size:
            raise TlmError(f"mcts cannot search a finished game (row {int(finished[0])})")
        n_games = len(engine.to_play(root))
        need = SearchTrees.nbytes(n_games, self.n_simulations, engine.num_actions)
        if need > MAX_TREE_BYTES:
            raise TlmError(
                f"mcts: {self.n_simulations:,} simulations for {n_games:,} games at once need "
                f"{need / 2**30:.1f} GiB of trees (at most {MAX_TREE_BYTES / 2**30:.0f} GiB): "
                f"search fewer games at once or use fewer simulations"
            )
        trees = SearchTrees(n_games, self.n_simulations, engine.num_actions)
        games = np.arange(n_games)
        no_paths = np.zeros((n_games, 0), dtype=np.int64)
        no_depth = np.zeros(n_games, dtype=np.int64)

        root_eval = self.evaluator.evaluate(engine, root, games, no_paths, no_depth, rng)
        priors = root_eval.priors
        if self.dirichlet_alpha is not None and self.dirichlet_fraction > 0:
            priors = self._add_noise(priors, root_eval.leaves.mask, rng)
        trees.add(games, root_eval, priors)
        root_value = root_eval.values.astype(np.float64)

        for _ in range(self.n_simulations - 1):
            self._simulate(engine, root, trees, rng)

        visits = trees.visits[:, 0]
        value_sum = trees.value_sum[:, 0]
        q = np.where(visits > 0, value_sum / np.maximum(visits, 1), 0.0)
        solved, outcome, plies = trees.child_outcomes(games, np.zeros(n_games, dtype=np.int64))
        q = np.where(solved, outcome, q)
        value = (root_value + value_sum.sum(axis=1)) / (1 + visits.sum(axis=1))
        root_player = trees.player[:, 0].astype(np.int64)
        value = np.where(trees.solved[:, 0], trees.outcome[games, 0, root_player], value)
        return SearchResult(
            visits.copy(), q, value, trees.prior[:, 0].copy(), trees.legal[:, 0].copy(),
            solved, np.where(solved, plies, 0),
        )

    def _add_noise(
        self, priors: np.ndarray, mask: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        # Dirichlet over each row's legal moves, drawn as normalised gammas.
        assert self.dirichlet_alpha is not None
        gamma = rng.standard_gamma(self.dirichlet_alpha, size=priors.shape) * (mask > 0)
        noise = gamma / np.maximum(gamma.sum(axis=1, keepdims=True), 1e-300)
        mixed = (1 - self.dirichlet_fraction) * priors + self.dirichlet_fraction * noise
        return normalise_legal(mixed, mask)

    def _select(
        self, trees: SearchTrees, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """One path per tree: ``(nodes[B, D], actions[B, D], depth[B], leaf_node[B])``.

        A path stops at the first move whose child is new (``leaf_node = -1``) or a
        solved node (``leaf_node`` its id).
        """
        n_games = len(trees.size)
        node = np.zeros(n_games, dtype=np.int64)
        depth = np.zeros(n_games, dtype=np.int64)
        leaf_node = np.full(n_games, -1, dtype=np.int64)
        path_nodes: list[np.ndarray] = []
        path_actions: list[np.ndarray] = []
        rows = np.arange(n_games)
        while rows.size:
            s = node[rows]
            n = trees.visits[rows, s].astype(np.float64)
            w = trees.value_sum[rows, s]
            total = n.sum(axis=1, keepdims=True) + 1.0
            q = np.where(n > 0, w / np.maximum(n, 1.0), 0.0)
            if self.rule == "puct":
                score = q + self.c_puct * trees.prior[rows, s] * np.sqrt(total) / (1.0 + n)
            else:
                bonus = self.c_puct * np.sqrt(np.log(total) / np.maximum(n, 1.0))
                score = np.where(n > 0, q + bonus, np.inf)
            # A solved move is worth its outcome, with no exploration bonus.
            solved, outcome, _ = trees.child_outcomes(rows, s)
            score = np.where(solved, outcome, score)
            score = np.where(trees.legal[rows, s], score, -np.inf)
            a = _argmax_random_ties(score, rows_rng(rng, rows))
            step_nodes = np.full(n_games, -1, dtype=np.int64)
            step_actions = np.zeros(n_games, dtype=np.int64)
            step_nodes[rows], step_actions[rows] = s, a
            path_nodes.append(step_nodes)
            path_actions.append(step_actions)
            depth[rows] += 1
            child = trees.children[rows, s, a].astype(np.int64)
            known = child >= 0
            descend = known & ~trees.solved[rows, np.maximum(child, 0)]
            leaf_node[rows[~descend]] = child[~descend]
            node[rows[descend]] = child[descend]
            rows = rows[descend]
        return np.stack(path_nodes, axis=1), np.stack(path_actions, axis=1), depth, leaf_node

    def _simulate(
        self, engine: Engine, root: State, trees: SearchTrees, rng: np.random.Generator
    ) -> None:
        nodes, actions, depth, leaf_node = self._select(trees, rng)
        n_games = len(depth)
        last = depth - 1
        games = np.arange(n_games)
        parent, move = nodes[games, last], actions[games, last]

        # The value to back up, per seat.
        seat_value = np.zeros((n_games, 2), dtype=np.float64)
        known = leaf_node >= 0
        seat_value[known] = trees.outcome[games[known], leaf_node[known]]
        new = np.flatnonzero(~known)
        if new.size:
            evaluation = self.evaluator.evaluate(engine, root, new, actions, depth, rng)
            added = trees.add(new, evaluation, evaluation.priors)
            trees.children[new, parent[new], move[new]] = added
            leaves = evaluation.leaves
            mover = leaves.to_play
            v = evaluation.values
            live_value = np.zeros((new.size, 2), dtype=np.float64)
            live_value[np.arange(new.size), mover] = v
            live_value[np.arange(new.size), 1 - mover] = -v
            seat_value[new] = np.where(leaves.terminal[:, None], leaves.rewards, live_value)

        # Each edge of a path is credited from the seat that chose it; a tree path
        # visits an edge at most once, so plain fancy-index updates are exact.
        bb, dd = np.nonzero(nodes >= 0)
        s, a = nodes[bb, dd], actions[bb, dd]
        trees.visits[bb, s, a] += 1
        trees.value_sum[bb, s, a] += seat_value[bb, trees.player[bb, s]]

        if self.solve:
            settled = known.copy()
            if new.size:
                settled[new] = evaluation.leaves.terminal
            trees.propagate_solved(np.flatnonzero(settled), nodes, depth)

