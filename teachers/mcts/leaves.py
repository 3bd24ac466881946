"""Reaching the leaves of a batched search: replaying each selected path from its root.

The engine interface has no way to join states, so a leaf is reached by copying its
game's root row and replaying the path's moves; the rows of all games step together,
and random rollouts simply go on stepping the same rows past their leaves. What the
walk finds at the leaves (terminal flags, rewards, movers, masks, observations,
rollout values) is what the evaluators (:mod:`teachers.mcts.evaluators`) build on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from arena.core import Engine, State, uniform_legal
from arena.streams import rows_rng

COMPACT_BELOW = 0.5
"""Drop idle rows from a walk's batch when fewer than this fraction are still busy."""


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
        rng: draws the rollout moves (for a row generator over the ``B`` roots, each
            rollout from its own game's stream).
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
    walk_rng = rows_rng(rng, games[leaf], np.arange(len(leaf)) % copies) if rollouts else rng
    walk_rows = np.arange(len(leaf))  # each row's place in walk_rng

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
            walk_rows = walk_rows[idx]
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
        if rollouts:
            actions = uniform_legal(m, rows_rng(walk_rng, walk_rows))
        else:
            actions = m.argmax(axis=1).astype(np.int64)
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

