"""The fast batched PUCT: B trees searched together, the tree work compiled by numba.

:class:`PUCT` searches B roots of connect four or tic-tac-toe with a policy-value
network (its policy as priors, its value at the leaves), the same search as
:class:`teachers.mcts.MCTS` with ``rule="puct"``: PUCT selection with unvisited moves
valued 0, expansion with the network's priors, backup of values from the mover's
point of view, terminal leaves valued exactly, and proven outcomes backed up
(MCTS-Solver), so its results are a :class:`teachers.mcts.SearchResult` too.

How it is fast:

- the trees are arrays allocated once per search, and selection, expansion and
  backup of every tree run in one compiled call per step (:func:`_step`), on the
  bitboard rules of :mod:`teachers.mcts.kernels`, with no Python per node or tree;
- a step advances every tree until it needs the network once: each tree plays
  simulations until it reaches a leaf nobody has evaluated, and all these leaves (at
  most one per tree) go to the network in one call, policy and value from one forward
  pass (:mod:`teachers.mcts.inference`);
- leaves are looked up by their canonical key (:func:`teachers.mcts.kernels.canonical`)
  in an :class:`~teachers.mcts.cache.EvaluationCache` shared by all trees and by the
  searches that follow (the next moves of a match), and the leaves of one step are
  deduplicated: transpositions, symmetric images and positions evaluated before go
  to the network once.

A tree's course depends only on its root, its own random stream and the network's
outputs for positions, which do not depend on the batch (see
:mod:`teachers.mcts.inference`), so a search gives every root the same tree whatever
other roots share its batch and whatever the cache holds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from arena.core import Engine, State, TlmError
from arena.games import Game, get_game
from arena.streams import Random
from teachers.mcts import cache as cache_kernels
from teachers.mcts import kernels
from teachers.mcts.cache import EvaluationCache
from teachers.mcts.inference import PAD_ROWS, LeafFn, padded_rows
from teachers.mcts.search import SearchResult

MAX_SIMULATIONS = 100_000
"""The most simulations one search takes (its trees grow by up to one node each)."""
MAX_TREE_BYTES = 4 * 2**30
"""The most memory one search's trees may take (they are allocated whole)."""

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)

# Counters of _step (``stats``), added up over a search.
_EVALUATED, _CACHE_HITS, _REPEATS, _TERMINAL, _SOLVED_VISITS, _PROVEN = range(6)


def tree_bytes(n_games: int, n_simulations: int, num_actions: int) -> int:
    """The memory of the trees of one search, in bytes."""
    per_edge = 4 + 8 + 4 + 8  # child, prior, visits, value sum
    per_node = 8 + 8 + 8 + 1 + 8 + 4  # mover, occupied, legal, solved, outcome, plies
    return n_games * n_simulations * (num_actions * per_edge + per_node)


@njit(cache=True, inline="always")
def _next_random(rng_state: np.ndarray, b: int) -> np.uint64:
    """The next 64 random bits of tree ``b``'s stream (SplitMix64)."""
    rng_state[b] += _GOLDEN
    z = rng_state[b]
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@njit(cache=True, inline="always")
def _set_priors(prior_row: np.ndarray, legal: int, logits: np.ndarray,
                action_map: np.ndarray, symmetry: int) -> None:
    """Softmax of ``logits`` (of the canonical image) over the legal moves, mapped back."""
    top = -np.inf
    for i in range(logits.shape[0]):
        a = action_map[symmetry, i]
        if (legal >> a) & 1 and logits[i] > top:
            top = logits[i]
    total = 0.0
    for i in range(logits.shape[0]):
        a = action_map[symmetry, i]
        if (legal >> a) & 1:
            e = np.exp(np.float64(logits[i]) - top)
            prior_row[a] = e
            total += e
        else:
            prior_row[a] = 0.0
    for a in range(prior_row.shape[0]):
        prior_row[a] /= total


@njit(cache=True, inline="always")
def _mix_noise(prior: np.ndarray, noise: np.ndarray, b: int, fraction: float) -> None:
    """Mix tree ``b``'s Dirichlet ``noise`` into its root's priors."""
    total = 0.0
    for a in range(prior.shape[2]):
        prior[b, 0, a] = (1.0 - fraction) * prior[b, 0, a] + fraction * noise[b, a]
        total += prior[b, 0, a]
    for a in range(prior.shape[2]):
        prior[b, 0, a] /= total


@njit(cache=True, inline="always")
def _backup(visits: np.ndarray, wsum: np.ndarray, path_node: np.ndarray,
            path_act: np.ndarray, b: int, depth: int, value: float) -> None:
    """Credit ``value`` (for the leaf's mover) to the path's edges, each from its mover."""
    x = -value
    for i in range(depth - 1, -1, -1):
        s, a = path_node[b, i], path_act[b, i]
        visits[b, s, a] += 1
        wsum[b, s, a] += x
        x = -x


@njit(cache=True, inline="always")
def _propagate_solved(child: np.ndarray, legal: np.ndarray, solved: np.ndarray,
                      outcome: np.ndarray, plies: np.ndarray, path_node: np.ndarray,
                      b: int, depth: int) -> None:
    """Mark solved the ancestors that the path's newly solved leaf settles.

    A node is settled by a move to a proven win, or when all its moves are proven; its
    outcome is then its best move's: the quickest win, else a draw, else the slowest loss.
    """
    for i in range(depth - 1, -1, -1):
        s = path_node[b, i]
        best_key = -np.inf
        best = -1
        win = False
        settled = True
        for a in range(child.shape[2]):
            if not (legal[b, s] >> a) & 1:
                continue
            c = child[b, s, a]
            if c < 0 or not solved[b, c]:
                settled = False
                continue
            v = -outcome[b, c]
            key = 1e3 * v - np.sign(v) * (plies[b, c] + 1)
            if key > best_key:
                best_key, best = key, c
            if v >= 1.0:
                win = True
        if not (settled or win):
            return
        solved[b, s] = True
        outcome[b, s] = -outcome[b, best]
        plies[b, s] = plies[b, best] + 1


@njit(cache=True)
def _step(
    game: int, n_sims: int, c_puct: float, noise_fraction: float, use_cache: bool,
    use_symmetry: bool, prove: bool,
    child: np.ndarray, prior: np.ndarray, visits: np.ndarray, wsum: np.ndarray,
    mover: np.ndarray, occupied: np.ndarray, legal: np.ndarray, solved: np.ndarray,
    outcome: np.ndarray, plies: np.ndarray,
    size: np.ndarray, done: np.ndarray, rng_state: np.ndarray, root_value: np.ndarray,
    path_node: np.ndarray, path_act: np.ndarray,
    pend_node: np.ndarray, pend_depth: np.ndarray, pend_slot: np.ndarray,
    pend_sym: np.ndarray, noise: np.ndarray,
    n_prev: int, prev_logits: np.ndarray, prev_values: np.ndarray, slot_keys: np.ndarray,
    obs_buf: np.ndarray, mask_buf: np.ndarray, repeat_keys: np.ndarray,
    repeat_slots: np.ndarray,
    c_keys: np.ndarray, c_stamps: np.ndarray, c_clock: np.ndarray, c_logits: np.ndarray,
    c_values: np.ndarray, images: np.ndarray, action_map: np.ndarray, stats: np.ndarray,
) -> int:
    """Take in the last step's evaluations, then run every tree to its next unevaluated
    leaf; returns how many leaves (rows of ``obs_buf``) need the network now.

    Trees are ``[B, node, action]`` arrays (``child`` -1 where unexpanded); node 0 is
    the root, whose bitboards the caller sets; ``size[b] == 0`` until it is expanded.
    ``done[b]`` counts tree b's simulations, the root's expansion included.
    """
    n_trees, _, n_actions = child.shape
    if use_cache:
        for k in range(n_prev):
            cache_kernels.insert(c_keys, c_stamps, c_clock, c_logits, c_values,
                                 slot_keys[k], prev_logits[k], prev_values[k])
    repeat_keys[:] = -1
    n_rows = 0
    for b in range(n_trees):
        node = pend_node[b]
        if node >= 0:
            slot = pend_slot[b]
            _set_priors(prior[b, node], legal[b, node], prev_logits[slot], action_map,
                        pend_sym[b])
            value = np.float64(prev_values[slot])
            if node == 0:
                root_value[b] = value
                if noise_fraction > 0:
                    _mix_noise(prior, noise, b, noise_fraction)
            else:
                _backup(visits, wsum, path_node, path_act, b, pend_depth[b], value)
            pend_node[b] = -1
            done[b] += 1
        while done[b] < n_sims and pend_node[b] < 0:
            depth = 0
            terminal = False
            if size[b] == 0:
                node = 0
                size[b] = 1
                legal[b, 0] = kernels.legal_bits(game, occupied[b, 0])
            else:
                s = 0
                while True:
                    # PUCT over the legal moves; a proven move is worth its outcome.
                    total = 1.0
                    for a in range(n_actions):
                        total += visits[b, s, a]
                    scale = c_puct * np.sqrt(total)
                    best = -np.inf
                    choice = -1
                    ties = 0
                    for a in range(n_actions):
                        if not (legal[b, s] >> a) & 1:
                            continue
                        c = child[b, s, a]
                        if c >= 0 and solved[b, c]:
                            score = -outcome[b, c]
                        else:
                            n = visits[b, s, a]
                            q = wsum[b, s, a] / n if n > 0 else 0.0
                            score = q + scale * prior[b, s, a] / (1.0 + n)
                        if score > best:
                            best, choice, ties = score, a, 1
                        elif score == best:
                            ties += 1
                            if _next_random(rng_state, b) % np.uint64(ties) == 0:
                                choice = a
                    path_node[b, depth] = s
                    path_act[b, depth] = choice
                    depth += 1
                    c = child[b, s, choice]
                    if c < 0:
                        m, o, won, full = kernels.play(game, mover[b, s], occupied[b, s],
                                                       choice)
                        c = size[b]
                        size[b] += 1
                        child[b, s, choice] = c
                        mover[b, c] = m
                        occupied[b, c] = o
                        terminal = won or full
                        if terminal:
                            solved[b, c] = True
                            outcome[b, c] = -1.0 if won else 0.0
                        else:
                            legal[b, c] = kernels.legal_bits(game, o)
                        node = c
                        break
                    if solved[b, c]:
                        stats[_SOLVED_VISITS] += 1
                        _backup(visits, wsum, path_node, path_act, b, depth, outcome[b, c])
                        _propagate_solved(child, legal, solved, outcome, plies, path_node, b,
                                          depth)
                        done[b] += 1
                        node = -1
                        break
                    s = c
                if node < 0:
                    continue
            if terminal:
                stats[_TERMINAL] += 1
                _backup(visits, wsum, path_node, path_act, b, depth, outcome[b, node])
                _propagate_solved(child, legal, solved, outcome, plies, path_node, b, depth)
                done[b] += 1
                continue
            m, o = mover[b, node], occupied[b, node]
            if prove and node > 0:
                # A leaf whose outcome the rules prove is valued exactly, like a terminal.
                proven, proven_plies = kernels.immediate_outcome(game, m, o)
                if proven != 0.0:
                    stats[_PROVEN] += 1
                    solved[b, node] = True
                    outcome[b, node] = proven
                    plies[b, node] = proven_plies
                    _backup(visits, wsum, path_node, path_act, b, depth, proven)
                    _propagate_solved(child, legal, solved, outcome, plies, path_node, b,
                                      depth)
                    done[b] += 1
                    continue
            # A live leaf: from the cache, from a row already asked for, or a new row.
            if use_symmetry:
                key, sym = kernels.canonical(game, m, o, images)
            else:
                key, sym = kernels.position_key(game, m, o), 0
            if use_cache:
                entry = cache_kernels.lookup(c_keys, c_stamps, c_clock, key)
                if entry >= 0:
                    stats[_CACHE_HITS] += 1
                    _set_priors(prior[b, node], legal[b, node], c_logits[entry], action_map,
                                sym)
                    value = np.float64(c_values[entry])
                    if node == 0:
                        root_value[b] = value
                        if noise_fraction > 0:
                            _mix_noise(prior, noise, b, noise_fraction)
                    else:
                        _backup(visits, wsum, path_node, path_act, b, depth, value)
                    done[b] += 1
                    continue
            slot = -1
            if use_cache:
                t = cache_kernels.set_of(key, repeat_keys.shape[0])
                while repeat_keys[t] >= 0:
                    if repeat_keys[t] == key:
                        slot = repeat_slots[t]
                        stats[_REPEATS] += 1
                        break
                    t = (t + 1) & (repeat_keys.shape[0] - 1)
                if slot < 0:
                    repeat_keys[t] = key
                    repeat_slots[t] = n_rows
            if slot < 0:
                slot = n_rows
                n_rows += 1
                mi = kernels.image(game, m, sym, images)
                oi = kernels.image(game, o, sym, images)
                kernels.write_observation(game, mi, oi, obs_buf[slot])
                bits = kernels.legal_bits(game, oi)
                for a in range(n_actions):
                    mask_buf[slot, a] = (bits >> a) & 1
                slot_keys[slot] = key
                stats[_EVALUATED] += 1
            pend_node[b] = node
            pend_depth[b] = depth
            pend_slot[b] = slot
            pend_sym[b] = sym
    return n_rows


@dataclass
class SearchStats:
    """What searches cost, added up (see :attr:`PUCT.stats`).

    Attributes:
        searches: calls of :meth:`PUCT.search`.
        simulations: simulations run, over all roots.
        evaluated: positions sent to the network.
        padded: rows the network computed (batches padded to a multiple of 8 for torch).
        cache_hits: leaves whose evaluation came from the cache.
        repeats: leaves that another tree had asked for in the same step.
        terminal: leaves where the game had ended (valued exactly).
        solved_visits: simulations that ended at a proven node.
        proven: leaves valued exactly by the rules without the network (``prove``).
        network_calls: forward passes.
    """

    searches: int = 0
    simulations: int = 0
    evaluated: int = 0
    padded: int = 0
    cache_hits: int = 0
    repeats: int = 0
    terminal: int = 0
    solved_visits: int = 0
    proven: int = 0
    network_calls: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counters by name."""
        return dict(vars(self))


class PUCT:
    """Batched PUCT with a policy-value network, compiled tree work and a shared cache.

    Args:
        game: ``connect_four`` or ``tictactoe`` (or their :class:`Game`).
        network: ``fn(obs[K, ...], mask[K, A]) -> (logits[K, A], value[K])``, float32,
            values in [-1, 1] for the player to move
            (:class:`~teachers.mcts.inference.NetworkInference`); its batches are
            padded to a multiple of its ``pad_rows`` (default
            :data:`~teachers.mcts.inference.PAD_ROWS`).
        n_simulations: simulations per root, the root's expansion included (1 to
            :data:`MAX_SIMULATIONS`).
        c_puct: exploration constant of ``Q + c P sqrt(N) / (1 + n)``.
        dirichlet_alpha: concentration of Dirichlet noise mixed into the root priors,
            or ``None`` for none.
        dirichlet_fraction: the noise's weight.
        cache: the evaluation cache to share (``None``: no cache and no deduplication
            of a step's leaves).
        symmetry: evaluate positions in their canonical orientation, so symmetric
            images share an evaluation (and a cache entry). Off by default: within a
            search mirror images are rare (connect four: the cache's hits per
            simulation did not change), and a network that is not exactly symmetric
            then judges some positions by their image, which moves its choices.
        prove: value exactly, without the network, the leaves whose outcome the rules
            prove at once (:func:`~teachers.mcts.kernels.immediate_outcome`: the mover
            wins at once, or cannot stop the opponent from winning at once), as
            terminal leaves are.

    Attributes:
        stats: counters added up over every search (:class:`SearchStats`).
    """

    def __init__(
        self,
        game: str | Game,
        network: LeafFn,
        n_simulations: int,
        *,
        c_puct: float = 1.5,
        dirichlet_alpha: float | None = None,
        dirichlet_fraction: float = 0.25,
        cache: EvaluationCache | None = None,
        symmetry: bool = False,
        prove: bool = True,
    ) -> None:
        g = get_game(game)
        self.game_id = kernels.game_id(g.name)
        self.game = g.name
        if not 1 <= n_simulations <= MAX_SIMULATIONS:
            raise TlmError(f"the number of simulations must be in 1..{MAX_SIMULATIONS:,}, "
                           f"got {n_simulations}")
        if not np.isfinite(c_puct) or c_puct < 0:
            raise TlmError(f"c_puct must be >= 0, got {c_puct}")
        if dirichlet_alpha is not None and not dirichlet_alpha > 0:
            raise TlmError(f"dirichlet_alpha must be positive, got {dirichlet_alpha}")
        if not 0.0 <= dirichlet_fraction <= 1.0:
            raise TlmError(f"dirichlet_fraction must lie in [0, 1], got {dirichlet_fraction}")
        self.num_actions = kernels.NUM_ACTIONS[self.game_id]
        if cache is not None and cache.num_actions != self.num_actions:
            raise TlmError(f"the cache holds {cache.num_actions} actions a position, "
                           f"{g.name} has {self.num_actions}")
        self.network = network
        self.pad_rows = int(getattr(network, "pad_rows", PAD_ROWS))
        self.n_simulations = n_simulations
        self.c_puct = float(c_puct)
        self.dirichlet_alpha = dirichlet_alpha
        self.dirichlet_fraction = float(dirichlet_fraction)
        self.cache = cache
        self.symmetry = symmetry
        self.prove = prove
        self.stats = SearchStats()

    def search(self, engine: Engine, root: State, rng: Random) -> SearchResult:
        """Search from every row of ``root`` (not modified) and return the root statistics.

        Args:
            engine: the game's engine (``root`` is its batched state).
            root: B live games.
            rng: draws each root's random stream (tie-breaks) and its Dirichlet noise,
                one draw per row (a :class:`arena.streams.RowGenerator` gives every
                game its own numbers, whatever its batch).

        Raises:
            TlmError: a root game has already ended, or the trees would be too large.
        """
        if engine.name != self.game:
            raise TlmError(f"this search plays {self.game}, not {engine.name}")
        finished = np.flatnonzero(engine.done(root))
        if finished.size:
            raise TlmError(f"puct cannot search a finished game (row {int(finished[0])})")
        n_roots = len(engine.to_play(root))
        sims, n_actions, game = self.n_simulations, self.num_actions, self.game_id
        need = tree_bytes(n_roots, sims, n_actions)
        if need > MAX_TREE_BYTES:
            raise TlmError(
                f"puct: {sims:,} simulations for {n_roots:,} games at once need "
                f"{need / 2**30:.1f} GiB of trees (at most {MAX_TREE_BYTES / 2**30:.0f} GiB): "
                f"search fewer games at once or use fewer simulations"
            )
        root_mover, root_occupied = kernels.from_engine_state(game, engine, root)
        noise = np.zeros((n_roots, n_actions), dtype=np.float64)
        use_noise = self.dirichlet_alpha is not None and self.dirichlet_fraction > 0
        if use_noise:
            assert self.dirichlet_alpha is not None
            root_legal = np.zeros((n_roots, n_actions), dtype=np.int8)
            kernels.legal_batch(game, root_occupied, root_legal)
            gamma = rng.standard_gamma(self.dirichlet_alpha, size=(n_roots, n_actions))
            gamma = gamma * root_legal
            noise = gamma / np.maximum(gamma.sum(axis=1, keepdims=True), 1e-300)
        seeds = rng.integers(0, 2**62, size=n_roots)
        rng_state = np.asarray(seeds, dtype=np.int64).astype(np.uint64)

        shape = (n_roots, sims, n_actions)
        child = np.full(shape, -1, dtype=np.int32)
        prior = np.zeros(shape, dtype=np.float64)
        visits = np.zeros(shape, dtype=np.int32)
        wsum = np.zeros(shape, dtype=np.float64)
        mover = np.zeros((n_roots, sims), dtype=np.int64)
        occupied = np.zeros((n_roots, sims), dtype=np.int64)
        mover[:, 0], occupied[:, 0] = root_mover, root_occupied
        legal = np.zeros((n_roots, sims), dtype=np.int64)
        solved = np.zeros((n_roots, sims), dtype=np.bool_)
        outcome = np.zeros((n_roots, sims), dtype=np.float64)
        plies = np.zeros((n_roots, sims), dtype=np.int32)
        size = np.zeros(n_roots, dtype=np.int64)
        done = np.zeros(n_roots, dtype=np.int64)
        root_value = np.zeros(n_roots, dtype=np.float64)
        max_depth = kernels.MAX_PLIES[game] + 1
        path_node = np.zeros((n_roots, max_depth), dtype=np.int32)
        path_act = np.zeros((n_roots, max_depth), dtype=np.int32)
        pend_node = np.full(n_roots, -1, dtype=np.int64)
        pend_depth = np.zeros(n_roots, dtype=np.int64)
        pend_slot = np.zeros(n_roots, dtype=np.int64)
        pend_sym = np.zeros(n_roots, dtype=np.int64)
        rows = padded_rows(n_roots, self.pad_rows)
        obs_buf = np.zeros((rows, *kernels.OBS_SHAPES[game]), dtype=np.int8)
        mask_buf = np.zeros((rows, n_actions), dtype=np.int8)
        slot_keys = np.zeros(rows, dtype=np.int64)
        repeat_keys = np.full(1 << int(np.ceil(np.log2(2 * n_roots + 2))), -1, dtype=np.int64)
        repeat_slots = np.zeros_like(repeat_keys)
        if self.cache is not None:
            c = self.cache
            cache_arrays = (c.keys, c.stamps, c.clock, c.logits, c.values)
        else:
            cache_arrays = (np.full((1, 1), -1, dtype=np.int64), np.zeros((1, 1), np.int64),
                            np.zeros(1, np.int64), np.zeros((1, n_actions), np.float32),
                            np.zeros(1, np.float32))
        images = kernels.TTT_IMAGES
        action_map = kernels.ACTION_MAPS[game]
        counters = np.zeros(6, dtype=np.int64)
        prev_logits = np.zeros((0, n_actions), dtype=np.float32)
        prev_values = np.zeros(0, dtype=np.float32)
        n_prev = 0
        calls = padded = 0
        while True:
            n_rows = _step(
                game, sims, self.c_puct, self.dirichlet_fraction if use_noise else 0.0,
                self.cache is not None, self.symmetry, self.prove, child, prior, visits, wsum,
                mover, occupied, legal, solved, outcome, plies, size, done, rng_state,
                root_value, path_node, path_act,
                pend_node, pend_depth, pend_slot, pend_sym, noise, n_prev, prev_logits,
                prev_values, slot_keys, obs_buf, mask_buf, repeat_keys, repeat_slots,
                *cache_arrays, images, action_map, counters,
            )
            if n_rows == 0:
                break
            k = padded_rows(n_rows, self.pad_rows)
            logits, values = self.network(obs_buf[:k], mask_buf[:k])
            prev_logits = np.ascontiguousarray(logits, dtype=np.float32)
            prev_values = np.ascontiguousarray(values, dtype=np.float32).reshape(-1)
            n_prev = n_rows
            calls += 1
            padded += k

        st = self.stats
        st.searches += 1
        st.simulations += n_roots * sims
        st.evaluated += int(counters[_EVALUATED])
        st.cache_hits += int(counters[_CACHE_HITS])
        st.repeats += int(counters[_REPEATS])
        st.terminal += int(counters[_TERMINAL])
        st.solved_visits += int(counters[_SOLVED_VISITS])
        st.proven += int(counters[_PROVEN])
        st.network_calls += calls
        st.padded += padded
        return _result(child, prior, visits, wsum, legal, solved, outcome, plies, root_value)


def _result(child: np.ndarray, prior: np.ndarray, visits: np.ndarray, wsum: np.ndarray,
            legal: np.ndarray, solved: np.ndarray, outcome: np.ndarray, plies: np.ndarray,
            root_value: np.ndarray) -> SearchResult:
    """The root statistics of the trees, as :class:`teachers.mcts.MCTS` reports them."""
    n_roots, _, n_actions = child.shape
    rows = np.arange(n_roots)[:, None]
    n = visits[:, 0].astype(np.int64)
    w = wsum[:, 0]
    kids = child[:, 0].astype(np.int64)
    safe = np.maximum(kids, 0)
    kid_solved = (kids >= 0) & solved[rows, safe]
    q = np.where(n > 0, w / np.maximum(n, 1), 0.0)
    q = np.where(kid_solved, -outcome[rows, safe], q)
    kid_plies = np.where(kid_solved, plies[rows, safe] + 1, 0).astype(np.int64)
    value = (root_value + w.sum(axis=1)) / (1 + n.sum(axis=1))
    value = np.where(solved[:, 0], outcome[:, 0], value)
    legal_mask = ((legal[:, :1] >> np.arange(n_actions)) & 1).astype(bool)
    return SearchResult(n.astype(np.int32), q, value, prior[:, 0].copy(), legal_mask,
                        kid_solved, kid_plies)
