"""Batched Monte-Carlo tree search over tlm's engines: evaluators, trees and the agent.

One search runs B games at once, one tree per game, and every simulation advances all
B trees together: selection is vectorised over the trees, the leaves of all games are
reached with one batch of engine calls, and they are evaluated together (one network
call per simulation for :class:`NetworkEvaluator`), which is what makes search cheap
enough to label many games.

The parts follow the usual split:

- an *evaluator* reaches the leaves at the ends of the selected paths and gives their
  priors and values (:class:`RandomRolloutEvaluator`, :class:`NetworkEvaluator`);
- the *trees* (:class:`SearchTrees`) are flat arrays indexed ``[game, node, action]``
  rather than node objects, so that one numpy operation serves every game;
- the *search* (:class:`MCTS`) runs PUCT (or UCT) selection, expansion with the
  evaluator's priors, and backup with proven outcomes (MCTS-Solver), and returns root
  visit counts and values;
- the *agent* (:class:`MCTSAgent`, spec ``mcts:N``) plays from the engine state that
  :func:`arena.matches.play_matches` hands it.

The engine interface has no way to join states, so a leaf is reached by copying its
game's root row and replaying the path's moves; the rows of all games step together,
and random rollouts simply go on stepping the same rows past their leaves. Values are from the
point of view of the player to move; the games are two-player and zero-sum.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from arena.agents import parse_int_argument, register_agent
from arena.core import (
    Engine,
    PolicyAgent,
    State,
    TlmError,
    masked_argmax,
    sample_from,
    uniform_legal,
)
from arena.games import Game, get_game

PolicyValueFn = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
"""``fn(obs[B, ...], mask[B, A]) -> (probs[B, A], values[B])``, values for the mover."""

SEARCH_GAMES = ("tictactoe", "connect_four")
"""Games with a fast engine, the only ones ``mcts:N`` plays."""

COMPACT_BELOW = 0.5
"""Drop idle rows from a walk's batch when fewer than this fraction are still busy."""


# --------------------------------------------------------------------------- leaves


@dataclass(frozen=True)
class Leaves:
    """What replaying the paths found at their ends (one entry per walked game).

    Attributes:
        terminal: ``[K]`` the move into the leaf ended the game.
        rewards: ``[K, 2]`` the rewards of that move (non-zero only for terminal leaves).
        to_play: ``[K]`` the seat to move at the leaf (meaningless when terminal).
        mask: ``[K, A]`` legal moves at the leaf (all zero when terminal).
        obs: ``[K, *obs_shape]`` the leaf observations, if asked for.
        rollout_value: ``[K]`` mean outcome of the random rollouts for the leaf's mover,
            if rollouts were asked for (zero when terminal).
    """

    terminal: np.ndarray
    rewards: np.ndarray
    to_play: np.ndarray
    mask: np.ndarray
    obs: np.ndarray | None
    rollout_value: np.ndarray | None


def reach_leaves(
    engine: Engine,
    root: State,
    games: np.ndarray,
    paths: np.ndarray,
    depth: np.ndarray,
    rng: np.random.Generator,
    *,
    observe: bool = False,
    rollouts: int = 0,
) -> Leaves:
    """Replay ``paths`` from the root rows of ``games`` and report on the leaves reached.

    Each walked game's root row is copied (``rollouts`` times when rolling out) and its
    path's moves are played; all rows share each engine call. With ``rollouts > 0`` the
    rows go on with uniformly random legal moves until their games end.

    Args:
        engine: the engine ``root`` belongs to.
        root: ``B`` root states (left untouched).
        games: ``[K]`` indices of the games to walk.
        paths: ``[B, D]`` moves from each root (only the first ``depth[b]`` are read).
        depth: ``[B]`` path lengths; 0 means the leaf is the root itself.
        rng: draws the rollout moves.
        observe: also return the leaf observations.
        rollouts: random rollouts per leaf (0: none).

    Returns:
        :class:`Leaves`, in the order of ``games``.
    """
    n_leaves = len(games)
    copies = max(rollouts, 1)
    leaf = np.repeat(np.arange(n_leaves), copies)  # leaf (index into games) of each row
    first = np.arange(len(leaf)) % copies == 0  # the row that reports the leaf's facts
    row_depth = depth[games][leaf]
    row_paths = paths[games][leaf]
    returns = np.zeros((len(leaf), 2), dtype=np.float64)

    terminal = np.zeros(n_leaves, dtype=bool)
    rewards = np.zeros((n_leaves, 2), dtype=np.float64)
    to_play = np.zeros(n_leaves, dtype=np.int64)
    mask = np.zeros((n_leaves, engine.num_actions), dtype=np.int8)
    obs = np.zeros((n_leaves, *engine.obs_shape), dtype=engine.obs_dtype) if observe else None
    value_sum = np.zeros(n_leaves, dtype=np.float64) if rollouts else None

    state = engine.take(root, games[leaf])
    # Rows stay in the batch after their work ends (finished games ignore their
    # moves; a row parked at its leaf plays any legal move) until half are idle.
    busy = np.ones(len(leaf), dtype=bool)
    last_report = int(row_depth.max(initial=0))
    t = 0
    while busy.any():
        if busy.mean() < COMPACT_BELOW:
            idx = np.flatnonzero(busy)
            state = engine.take(state, idx)
            leaf, first, row_depth = leaf[idx], first[idx], row_depth[idx]
            row_paths, returns, busy = row_paths[idx], returns[idx], busy[idx]
        if observe and t <= last_report:
            o, m = engine.observe(state)
        else:
            o, m = None, engine.legal_mask(state)
        if t <= last_report:
            report = (row_depth == t) & first
            if report.any():
                at = leaf[report]
                mask[at] = m[report]
                to_play[at] = engine.to_play(state)[report]
                if obs is not None and o is not None:
                    obs[at] = o[report]
        on_path = row_depth > t
        if not rollouts:
            busy &= on_path  # without rollouts a row's work ends at its leaf
            if not busy.any():
                break
        actions = uniform_legal(m, rng) if rollouts else m.argmax(axis=1).astype(np.int64)
        if t < row_paths.shape[1]:
            actions = np.where(on_path, row_paths[:, t], actions)
        state, r, done = engine.step(state, actions)
        ended = busy & done
        if t < last_report:
            into_terminal = ended & (row_depth == t + 1) & first
            terminal[leaf[into_terminal]] = True
            rewards[leaf[into_terminal]] = r[into_terminal]
        if value_sum is not None:
            returns += np.where((busy & ~on_path)[:, None], r, 0.0)
            scored = ended & ~on_path
            if scored.any():
                # A rollout is scored for the seat to move at its leaf.
                seat = to_play[leaf[scored]]
                np.add.at(value_sum, leaf[scored], returns[scored, seat])
        busy &= ~done
        t += 1

    rollout_value = None if value_sum is None else value_sum / copies
    return Leaves(terminal, rewards, to_play, mask, obs, rollout_value)


# ------------------------------------------------------------------------ evaluators


@dataclass(frozen=True)
class LeafEvaluation:
    """Leaves with their priors and values, as an evaluator returns them.

    Attributes:
        leaves: what the walk found (terminal flags, rewards, movers, masks).
        priors: ``[K, A]`` move probabilities at each non-terminal leaf, zero on
            illegal moves.
        values: ``[K]`` expected outcome for the leaf's mover (ignored when terminal).
    """

    leaves: Leaves
    priors: np.ndarray
    values: np.ndarray


class Evaluator(Protocol):
    """Reaches and evaluates the leaves at the ends of the selected paths, all at once."""

    def evaluate(
        self,
        engine: Engine,
        root: State,
        games: np.ndarray,
        paths: np.ndarray,
        depth: np.ndarray,
        rng: np.random.Generator,
    ) -> LeafEvaluation:
        """Evaluate the leaves of ``games`` (arguments as in :func:`reach_leaves`)."""
        ...


def _normalise(probs: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``probs`` restricted to legal moves and summing to one (uniform if none is left)."""
    legal = mask.astype(np.float64)
    p = np.where(legal > 0, np.asarray(probs, dtype=np.float64), 0.0)
    p = np.maximum(p, 0.0)
    total = p.sum(axis=1, keepdims=True)
    uniform = legal / np.maximum(legal.sum(axis=1, keepdims=True), 1.0)
    return np.where(total > 0, p / np.where(total > 0, total, 1.0), uniform)


class RandomRolloutEvaluator:
    """Values from uniformly random play to the end; uniform priors.

    Args:
        n_rollouts: rollouts per leaf; their outcomes are averaged.
    """

    def __init__(self, n_rollouts: int = 1) -> None:
        if n_rollouts < 1:
            raise TlmError(f"the number of rollouts must be positive, got {n_rollouts}")
        self.n_rollouts = n_rollouts

    def evaluate(
        self,
        engine: Engine,
        root: State,
        games: np.ndarray,
        paths: np.ndarray,
        depth: np.ndarray,
        rng: np.random.Generator,
    ) -> LeafEvaluation:
        """Roll every leaf out ``n_rollouts`` times, all leaves and rollouts together."""
        leaves = reach_leaves(engine, root, games, paths, depth, rng, rollouts=self.n_rollouts)
        priors = _normalise(np.zeros(leaves.mask.shape), leaves.mask)
        assert leaves.rollout_value is not None
        return LeafEvaluation(leaves, priors, leaves.rollout_value)

    def __repr__(self) -> str:
        return f"RandomRolloutEvaluator({self.n_rollouts})"


class NetworkEvaluator:
    """Priors and values from a policy-value function, called once per simulation step.

    All non-terminal leaves of all games being searched go to ``policy_value_fn`` in
    one batch.

    Args:
        policy_value_fn: ``fn(obs[K, ...], mask[K, A]) -> (probs[K, A], values[K])``,
            values in [-1, 1] for the player to move.
    """

    def __init__(self, policy_value_fn: PolicyValueFn) -> None:
        self.policy_value_fn = policy_value_fn

    @classmethod
    def from_agent(cls, agent: PolicyAgent) -> NetworkEvaluator:
        """An evaluator that asks a :class:`PolicyAgent` with a value for both."""
        if not agent.has_value:
            raise TlmError(f"agent {agent.name!r} gives no value, so it cannot evaluate leaves")
        if agent.needs_state:
            raise TlmError(
                f"agent {agent.name!r} needs engine states, so it cannot evaluate leaves"
            )

        def policy_value(obs: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return agent.policy(obs, mask), agent.value(obs, mask)

        return cls(policy_value)

    def evaluate(
        self,
        engine: Engine,
        root: State,
        games: np.ndarray,
        paths: np.ndarray,
        depth: np.ndarray,
        rng: np.random.Generator,
    ) -> LeafEvaluation:
        """Observe every leaf and evaluate the non-terminal ones in one call."""
        leaves = reach_leaves(engine, root, games, paths, depth, rng, observe=True)
        assert leaves.obs is not None
        priors = np.zeros(leaves.mask.shape, dtype=np.float64)
        values = np.zeros(len(games), dtype=np.float64)
        live = ~leaves.terminal
        if live.any():
            probs, v = self.policy_value_fn(leaves.obs[live], leaves.mask[live])
            priors[live] = _normalise(np.asarray(probs), leaves.mask[live])
            values[live] = np.clip(np.asarray(v, dtype=np.float64).reshape(-1), -1.0, 1.0)
        return LeafEvaluation(leaves, priors, values)


# ----------------------------------------------------------------------------- trees


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


# ---------------------------------------------------------------------------- search


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
            win = self.solved & (self.q >= 1.0)
            loss = self.solved & (self.q <= -1.0)
            score = np.where(win, -self.plies, np.where(loss, self.plies, score))
            tier = 1.0 + win - loss
            width = 2.0 * (visits.sum(axis=1, keepdims=True) + self.plies.max() + 2.0)
            score = score + width * tier
            probs = np.zeros_like(visits)
            probs[np.arange(len(probs)), masked_argmax(score, self.legal)] = 1.0
            return probs
        weights = visits ** (1.0 / temperature) if temperature != 1.0 else visits
        weights = np.where(unvisited[:, None], self.prior, weights)
        return _normalise(weights, self.legal)


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
        return _normalise(mixed, mask)

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
            a = _argmax_random_ties(score, rng)
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


# ----------------------------------------------------------------------------- agent


class MCTSAgent(PolicyAgent):
    """Plays by batched MCTS from the engine state of its rows.

    ``policy`` is the root visit distribution at ``temperature``; ``value`` is the
    root value estimate; ``act`` samples the policy, or plays the most visited move
    when ``greedy``. ``act`` draws all its randomness from the generator it is given;
    ``policy``, ``value`` and :meth:`search` without one use the agent's own generator,
    seeded at construction.

    Args:
        game: a game with a fast engine.
        mcts: the search.
        temperature: of the visit-count policy.
        greedy: ``act`` plays the most visited move instead of sampling.
        seed: seeds the agent's own generator.
    """

    needs_state = True
    uses_observation = False  # it reads the engine state, so matches may skip observations

    def __init__(
        self,
        game: str | Game,
        mcts: MCTS,
        *,
        temperature: float = 1.0,
        greedy: bool = False,
        seed: int = 0,
    ) -> None:
        g = get_game(game)
        if not g.has_engine:
            raise TlmError(f"mcts needs a game with a fast engine, not {g.name}")
        if temperature < 0:
            raise TlmError(f"temperature must be >= 0, got {temperature}")
        self.game = g.name
        self.name = f"mcts:{mcts.n_simulations}"
        self.engine = g.make_engine()
        self.mcts = mcts
        self.temperature = temperature
        self.greedy = greedy
        self._rng = np.random.default_rng(seed)

    def search(self, state: State | None, rng: np.random.Generator | None = None) -> SearchResult:
        """Search from every row of ``state``; both policy and value come from the result."""
        if state is None:
            raise TlmError(f"agent {self.name!r} searches and needs the engine state of its rows")
        return self.mcts.search(self.engine, state, self._rng if rng is None else rng)

    def policy(self, obs: np.ndarray, mask: np.ndarray, state: State | None = None) -> np.ndarray:
        return self.search(state).policy(self.temperature)

    def value(self, obs: np.ndarray, mask: np.ndarray, state: State | None = None) -> np.ndarray:
        return self.search(state).value

    def act(
        self,
        obs: np.ndarray,
        mask: np.ndarray,
        rng: np.random.Generator,
        state: State | None = None,
    ) -> np.ndarray:
        result = self.search(state, rng)
        if self.greedy:
            return masked_argmax(result.policy(0.0), mask)
        return sample_from(result.policy(self.temperature), rng)


MCTS_USAGE = "mcts:N"
DEFAULT_SIMULATIONS = 200
UCT_C = 1.4
"""UCT's exploration constant for ``mcts:N`` (about sqrt 2; fewest connect-four blunders)."""


def make_mcts_agent(arg: str | None, game: Game) -> MCTSAgent:
    """The ``mcts:N`` spec: N simulations with random rollouts, playing its most visited move.

    Its priors are uniform, so it selects by UCT (which tries every move before
    repeating one). Its ``policy`` (the visit counts at temperature 1) is what it teaches.
    """
    n = parse_int_argument(arg, MCTS_USAGE, default=DEFAULT_SIMULATIONS)
    search = MCTS(RandomRolloutEvaluator(1), n, rule="uct", c_puct=UCT_C)
    return MCTSAgent(game, search, greedy=True)


register_agent("mcts", make_mcts_agent, MCTS_USAGE, games=SEARCH_GAMES)
