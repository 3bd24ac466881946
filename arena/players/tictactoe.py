"""Exact tic-tac-toe: every reachable position solved once, the perfect player, and the
exhaustive checks that measure any agent against it.

The game is small enough (5,478 reachable positions, 4,520 of them with a move to
make) to solve completely by minimax. The solution is a pair of lookup tables indexed
by the board as the mover sees it, built lazily on first use and kept for the process.
Because every lookup goes through the PettingZoo observation planes, the same tables
serve the real env, the fast engine and the distillation code.

Board keys: ``mine | theirs << 9`` where bit ``i`` is square ``i`` (``obs[r, c]`` is
square ``3r + c``, plane 0 the mover's marks, plane 1 the opponent's). The key alone
says whose turn it is, so it names a position uniquely.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from arena.core import Agent, PolicyAgent, State, TlmError, masked_argmax
from arena.games import Game, get_game

N_SQUARES = 9
OBS_SHAPE = (3, 3, 2)
N_REACHABLE = 5478
"""Reachable positions, terminal ones included."""
N_NONTERMINAL = 4520
"""Reachable positions with a move to make."""

LINES = ((0, 1, 2), (3, 4, 5), (6, 7, 8), (0, 3, 6), (1, 4, 7), (2, 5, 8), (0, 4, 8), (2, 4, 6))
LINE_MASKS = tuple(sum(1 << i for i in line) for line in LINES)
FULL = (1 << N_SQUARES) - 1
UNREACHABLE = -128
"""Value stored for keys that no legal game reaches."""

_BIT_WEIGHTS = (1 << np.arange(N_SQUARES)).astype(np.int64)


@dataclass(frozen=True)
class SolvedTicTacToe:
    """The complete solution.

    Attributes:
        value: ``[2**18]`` int8, the exact value for the mover of every reachable key
            (+1 win, 0 draw, -1 loss), :data:`UNREACHABLE` elsewhere.
        optimal: ``[2**18]`` int16, bit ``a`` set when move ``a`` is optimal (zero for
            terminal and unreachable keys).
        keys: ``[4520]`` int64, the non-terminal keys, ordered by ply then key.
        n_reachable: how many keys are reachable (terminal ones included).
    """

    value: np.ndarray
    optimal: np.ndarray
    keys: np.ndarray
    n_reachable: int


_SOLVED: SolvedTicTacToe | None = None


def _has_line(bits: int) -> bool:
    return any(bits & m == m for m in LINE_MASKS)


def _solve() -> SolvedTicTacToe:
    value = np.full(1 << (2 * N_SQUARES), UNREACHABLE, dtype=np.int8)
    optimal = np.zeros(1 << (2 * N_SQUARES), dtype=np.int16)
    memo: dict[int, int] = {}

    def solve(mine: int, theirs: int) -> int:
        key = mine | theirs << N_SQUARES
        known = memo.get(key)
        if known is not None:
            return known
        if _has_line(theirs):
            v = -1
        elif mine | theirs == FULL:
            v = 0
        else:
            v, best_moves = -2, 0
            empty = FULL & ~(mine | theirs)
            for a in range(N_SQUARES):
                if empty >> a & 1:
                    child = -solve(theirs, mine | 1 << a)
                    if child > v:
                        v, best_moves = child, 1 << a
                    elif child == v:
                        best_moves |= 1 << a
            optimal[key] = best_moves
        memo[key] = v
        value[key] = v
        return v

    solve(0, 0)
    nonterminal = [k for k in memo if optimal[k] != 0]
    nonterminal.sort(key=lambda k: (int(k).bit_count(), k))
    return SolvedTicTacToe(value, optimal, np.array(nonterminal, dtype=np.int64), len(memo))


def solved() -> SolvedTicTacToe:
    """The solution tables, computed on first call (a few tens of milliseconds)."""
    global _SOLVED
    if _SOLVED is None:
        _SOLVED = _solve()
    return _SOLVED


def _check_obs(obs: np.ndarray) -> np.ndarray:
    obs = np.asarray(obs)
    if obs.ndim != 4 or obs.shape[1:] != OBS_SHAPE:
        raise TlmError(
            f"tic-tac-toe observations must have shape [B, 3, 3, 2], got {list(obs.shape)}"
        )
    return obs


def board_keys(obs: np.ndarray) -> np.ndarray:
    """``[B]`` int64 board keys of a batch of observations ``[B, 3, 3, 2]``."""
    flat = _check_obs(obs).reshape(len(obs), N_SQUARES, 2).astype(np.int64)
    return (flat[:, :, 0] @ _BIT_WEIGHTS) | ((flat[:, :, 1] @ _BIT_WEIGHTS) << N_SQUARES)


def _reachable_keys(obs: np.ndarray) -> np.ndarray:
    keys = board_keys(obs)
    bad = solved().value[keys] == UNREACHABLE
    if bad.any():
        raise TlmError(
            f"tic-tac-toe observation {int(np.flatnonzero(bad)[0])} is not a reachable position"
        )
    return keys


def keys_to_obs(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Observations ``[B, 3, 3, 2]`` int8 and legal masks ``[B, 9]`` int8 of board keys."""
    keys = np.asarray(keys, dtype=np.int64)
    bits = (keys[:, None] >> np.arange(2 * N_SQUARES)) & 1
    mine, theirs = bits[:, :N_SQUARES], bits[:, N_SQUARES:]
    obs = np.stack([mine, theirs], axis=-1).reshape(len(keys), *OBS_SHAPE).astype(np.int8)
    over = solved().optimal[keys] == 0
    mask = ((mine | theirs) == 0).astype(np.int8)
    mask[over] = 0
    return obs, mask


def all_positions() -> tuple[np.ndarray, np.ndarray]:
    """Every reachable non-terminal position: ``(obs[4520, 3, 3, 2], mask[4520, 9])``.

    Ordered by ply (empty board first), then by key, so the order is fixed.
    """
    return keys_to_obs(solved().keys)


def position_values(obs: np.ndarray) -> np.ndarray:
    """``[B]`` int8: the exact value of each position for the mover (+1, 0, -1)."""
    return solved().value[_reachable_keys(obs)]


def optimal_moves_mask(obs: np.ndarray) -> np.ndarray:
    """Which moves are optimal (best game-theoretic value), as int8 0/1.

    Args:
        obs: one observation ``[3, 3, 2]`` or a batch ``[B, 3, 3, 2]``.

    Returns:
        ``[9]`` or ``[B, 9]``: all zero for finished games.
    """
    obs = np.asarray(obs)
    single = obs.ndim == 3
    keys = _reachable_keys(obs[None] if single else obs)
    opt = solved().optimal[keys].astype(np.int64)
    out = ((opt[:, None] >> np.arange(N_SQUARES)) & 1).astype(np.int8)
    return out[0] if single else out


def move_values(obs: np.ndarray) -> np.ndarray:
    """``[B, 9]`` int8: the exact value for the mover of playing each square.

    Occupied squares, and every square of a finished game, get :data:`UNREACHABLE`.
    """
    keys = _reachable_keys(obs)
    table = solved()
    mine, theirs = keys & FULL, keys >> N_SQUARES
    out = np.full((len(keys), N_SQUARES), UNREACHABLE, dtype=np.int8)
    live = table.optimal[keys] != 0
    for a in range(N_SQUARES):
        free = live & ((((mine | theirs) >> a) & 1) == 0)
        child = theirs[free] | ((mine[free] | (1 << a)) << N_SQUARES)
        out[free, a] = -table.value[child]
    return out


class PerfectTicTacToe(PolicyAgent):
    """Perfect tic-tac-toe: uniform over the optimal moves, exact values."""

    name = "perfect"
    game = "tictactoe"

    def policy(self, obs: np.ndarray, mask: np.ndarray, state: State | None = None) -> np.ndarray:
        opt = optimal_moves_mask(obs).astype(np.float64) * (np.asarray(mask) != 0)
        return opt / np.maximum(opt.sum(axis=1, keepdims=True), 1.0)

    def value(self, obs: np.ndarray, mask: np.ndarray, state: State | None = None) -> np.ndarray:
        return position_values(obs).astype(np.float64)


PolicyFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""``policy_fn(obs[B, ...], mask[B, A]) -> probs[B, A]``."""


def candidate_moves(
    agent: Agent | PolicyFn,
    obs: np.ndarray,
    mask: np.ndarray,
    *,
    min_prob: float = 0.0,
    greedy: bool | None = None,
    seed: int = 0,
) -> np.ndarray:
    """``[B, A]`` bool: the moves an agent may play in each position.

    A :class:`PolicyAgent` (or a bare policy function) may play every legal move it
    gives probability above ``min_prob``, or only its argmax when greedy (``greedy``
    defaults to the agent's own ``greedy`` flag). Any other agent is asked once, with
    a generator seeded by ``seed``, and may play the move it answers.
    """
    obs, mask = np.asarray(obs), np.asarray(mask)
    legal = mask != 0
    if isinstance(agent, Agent) and agent.needs_state:
        raise TlmError(f"agent {agent.name!r} needs engine states; exhaustive checks need "
                       "an agent that acts on observations")
    if isinstance(agent, PolicyAgent) or not isinstance(agent, Agent):
        fn = agent.policy if isinstance(agent, PolicyAgent) else agent
        probs = np.asarray(fn(obs, mask), dtype=np.float64)
        if probs.shape != mask.shape:
            raise TlmError(
                f"policy returned shape {list(probs.shape)}, expected {list(mask.shape)}"
            )
        use_argmax = greedy if greedy is not None else getattr(agent, "greedy", False)
        if use_argmax:
            chosen = masked_argmax(probs, mask)
            out = np.zeros_like(legal)
            out[np.arange(len(chosen)), chosen] = True
            return out & legal
        return (probs > min_prob) & legal
    actions = np.asarray(agent.act(obs, mask, np.random.default_rng(seed)), dtype=np.int64)
    out = np.zeros_like(legal)
    ok = (actions >= 0) & (actions < mask.shape[1])
    out[np.flatnonzero(ok), actions[ok]] = True
    return out & legal


def _candidate_table(
    agent: Agent | PolicyFn | None, min_prob: float, greedy: bool | None, seed: int
) -> dict[int, int]:
    """Key -> bitmask of the agent's candidate moves, over every non-terminal position."""
    table = solved()
    obs, mask = all_positions()
    if agent is None:
        cand = mask != 0
    else:
        cand = candidate_moves(agent, obs, mask, min_prob=min_prob, greedy=greedy, seed=seed)
    bits = cand.astype(np.int64) @ _BIT_WEIGHTS
    return dict(zip(table.keys.tolist(), bits.tolist(), strict=True))


@dataclass(frozen=True)
class ExhaustiveResult:
    """Every game an agent can play in one seat, against every reply of an adversary.

    Counts are of distinct move sequences (games), from the agent's point of view; a
    position where the agent would play no legal move counts as one lost game.
    ``losing`` holds the board keys (sorted) of the positions where the agent moves on
    a game it loses: the positions a refutation of the agent passes through.
    """

    seat: int
    games: int
    wins: int
    draws: int
    losses: int
    losing: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))


def exhaustive_check(
    agent: Agent | PolicyFn,
    seat: int,
    adversary: Agent | PolicyFn | None = None,
    *,
    min_prob: float = 0.0,
    greedy: bool | None = None,
    seed: int = 0,
) -> ExhaustiveResult:
    """Play out every game of ``agent`` in ``seat`` against every reply of ``adversary``.

    The agent branches over its candidate moves (see :func:`candidate_moves`); the
    adversary over all legal moves when ``None``, else over its own candidates (pass
    :class:`PerfectTicTacToe` for "against perfect"). The agent is asked about all
    4,520 positions in one batched call, so this works for networks too; it assumes
    the agent's choice depends on the observation only.

    Args:
        agent: the agent (or policy function) under test.
        seat: 0 (moves first) or 1.
        adversary: the opponent, or ``None`` for every legal reply.
        min_prob: probabilities at or below this are moves the agent never plays.
        greedy: consider only the argmax move (default: the agent's ``greedy`` flag).
        seed: seeds non-policy agents' one answer per position.

    Returns:
        An :class:`ExhaustiveResult`.
    """
    if seat not in (0, 1):
        raise TlmError(f"seat must be 0 or 1, got {seat}")
    table = solved()
    mover_cand = _candidate_table(agent, min_prob, greedy, seed)
    other_cand = _candidate_table(adversary, min_prob, None, seed)
    memo: dict[tuple[int, bool], tuple[int, int, int]] = {}

    def count(mine: int, theirs: int, agent_moves: bool) -> tuple[int, int, int]:
        """(wins, draws, losses) of the agent over every game from here."""
        key = mine | theirs << N_SQUARES
        done = memo.get((key, agent_moves))
        if done is not None:
            return done
        if table.optimal[key] == 0:  # finished: the previous mover won, or a full board
            v = int(table.value[key])
            mover_wins = (v > 0, v == 0, v < 0)
            res = mover_wins if agent_moves else mover_wins[::-1]
            out = (int(res[0]), int(res[1]), int(res[2]))
        else:
            moves = (mover_cand if agent_moves else other_cand)[key]
            if moves == 0:  # no legal move: the mover forfeits
                out = (0, 0, 1) if agent_moves else (1, 0, 0)
            else:
                w = d = lo = 0
                for a in range(N_SQUARES):
                    if moves >> a & 1:
                        cw, cd, cl = count(theirs, mine | 1 << a, not agent_moves)
                        w, d, lo = w + cw, d + cd, lo + cl
                out = (w, d, lo)
        memo[(key, agent_moves)] = out
        return out

    wins, draws, losses = count(0, 0, seat == 0)
    losing = np.array(sorted(key for (key, agent_moves), (_, _, lost) in memo.items()
                             if agent_moves and lost and table.optimal[key] != 0),
                      dtype=np.int64)
    return ExhaustiveResult(seat, wins + draws + losses, wins, draws, losses, losing)


def exhaustive_losses(
    agent: Agent | PolicyFn,
    seat: int | None = None,
    adversary: Agent | PolicyFn | None = None,
    *,
    min_prob: float = 0.0,
    greedy: bool | None = None,
    seed: int = 0,
) -> int:
    """Games lost by ``agent`` against every reply of ``adversary``.

    Args:
        agent: the agent (or policy function) under test.
        seat: 0 or 1, or ``None`` for both seats added together.
        adversary: as in :func:`exhaustive_check` (``None``: every legal reply).
        min_prob: as in :func:`exhaustive_check`.
        greedy: as in :func:`exhaustive_check`.
        seed: as in :func:`exhaustive_check`.
    """
    seats = (0, 1) if seat is None else (seat,)
    return sum(
        exhaustive_check(agent, s, adversary, min_prob=min_prob, greedy=greedy, seed=seed).losses
        for s in seats
    )


def optimal_move_accuracy(agent: Agent | PolicyFn, *, seed: int = 0) -> float:
    """Fraction of the 4,520 non-terminal positions where the agent's move is optimal.

    The agent's move is its argmax for a policy (agent or function), else its answer
    with a generator seeded by ``seed``.
    """
    obs, mask = all_positions()
    chosen = candidate_moves(agent, obs, mask, greedy=True, seed=seed)
    ok = (chosen & (optimal_moves_mask(obs) != 0)).any(axis=1)
    return float(ok.mean())


def exact_strength(game: str | Game, agent: Agent | PolicyFn) -> dict[str, float | int] | None:
    """Exhaustive figures for one agent on a solved game, for reports.

    Returns:
        ``None`` unless ``game`` is tic-tac-toe and the agent acts on observations;
        else ``exhaustive_losses`` (both seats, against every reply), ``losses_first``,
        ``losses_second``, ``losses_vs_perfect`` (both seats, against the perfect
        player's optimal replies only), ``optimal_accuracy`` and ``positions``.
    """
    if get_game(game).name != "tictactoe" or (isinstance(agent, Agent) and agent.needs_state):
        return None
    first = exhaustive_check(agent, 0)
    second = exhaustive_check(agent, 1)
    perfect = PerfectTicTacToe()
    return {
        "exhaustive_losses": first.losses + second.losses,
        "losses_first": first.losses,
        "losses_second": second.losses,
        "losses_vs_perfect": exhaustive_losses(agent, None, perfect),
        "optimal_accuracy": optimal_move_accuracy(agent),
        "positions": N_NONTERMINAL,
    }
