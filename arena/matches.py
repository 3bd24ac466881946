"""Matches: many games between two agents at once, seats swapped, inference batched.

:func:`play_matches` is the one game loop of tlm. Evaluation, leagues, game
generation and on-policy distillation all go through it, the latter two by passing an
``observer`` that sees every decision as it is made.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from arena.core import Agent, IllegalActionError, TlmError, uniform_legal
from arena.games import Game, get_game

COMPACT_BELOW = 0.5
"""Drop finished games from the live batch when fewer than this fraction remain live."""


@dataclass(frozen=True)
class Decision:
    """One batched decision, as an ``observer`` sees it.

    Attributes:
        games: game indices (into the match) of the rows.
        player: 0 for agent A, 1 for agent B.
        seat: the mover's seat in each row.
        ply: the number of moves already played in each row.
        obs: observations (``None`` when neither agent needs them).
        mask: legal-action masks.
        actions: the actions chosen.
    """

    games: np.ndarray
    player: int
    seat: np.ndarray
    ply: np.ndarray
    obs: np.ndarray | None
    mask: np.ndarray
    actions: np.ndarray


Observer = Callable[[Decision], None]


@dataclass
class MatchResult:
    """Per-game results of :func:`play_matches`, from agent A's point of view.

    Attributes:
        game: the game's name.
        agents: the names of agents A and B.
        seat_a: A's seat in each game (0 moves first).
        returns: ``[n, 2]`` total reward of A (column 0) and B (column 1).
        length: moves played in each game.
        illegal: ``-1``, or the player (0 = A, 1 = B) who lost by an illegal action.
        reasons: why each game ended early (empty string for a normal end).
        records: the actions of each game in order, if requested.
    """

    game: str
    agents: tuple[str, str]
    seat_a: np.ndarray
    returns: np.ndarray
    length: np.ndarray
    illegal: np.ndarray
    reasons: list[str]
    records: list[np.ndarray] | None = field(default=None, repr=False)

    @property
    def n_games(self) -> int:
        return len(self.seat_a)

    @property
    def outcome(self) -> np.ndarray:
        """``+1`` A won, ``0`` draw, ``-1`` A lost (by comparing the two returns)."""
        return np.sign(self.returns[:, 0] - self.returns[:, 1]).astype(np.int8)

    @property
    def mean_return(self) -> float:
        """A's mean return per game (chips for poker, +1/0/-1 for board games)."""
        return float(self.returns[:, 0].mean()) if self.n_games else 0.0


def _check_agent(agent: Agent, game: Game) -> None:
    if agent.game is not None and agent.game != game.name:
        raise TlmError(f"agent {agent.name!r} plays {agent.game}, not {game.name}")
    if agent.needs_state and not game.has_engine:
        raise TlmError(
            f"agent {agent.name!r} searches and needs a game with an engine, not {game.name}"
        )


def play_matches(
    game: str | Game,
    agent_a: Agent,
    agent_b: Agent,
    n_games: int,
    seed: int | None = 0,
    *,
    record: bool = False,
    strict: bool = False,
    observer: Observer | None = None,
    first_seat: int = 0,
    opening_plies: int = 0,
) -> MatchResult:
    """Play ``n_games`` games of A against B, all at once, and return per-game results.

    Seats alternate: A sits in seat ``first_seat`` in even games and the other seat in
    odd ones, so each seat gets half the games. Each step, every agent is called
    once, for all the games waiting on it. Same seed, same result.

    Args:
        game: a registry name or a :class:`Game`.
        agent_a: agent A.
        agent_b: agent B (may be the same object as A).
        n_games: number of games (> 0).
        seed: seeds the games' randomness and each agent's generator.
        record: keep each game's actions in ``MatchResult.records``.
        strict: raise :class:`IllegalActionError` on an illegal action instead of
            scoring the game as lost by the agent that played it.
        observer: called with every :class:`Decision` (for data collection).
        first_seat: A's seat in game 0.
        opening_plies: the first plies of every game are uniformly random moves, made
            for neither agent (to spread deterministic agents over many positions);
            they count in ``length`` and ``records`` but are not shown to ``observer``.

    Returns:
        A :class:`MatchResult`.
    """
    g = get_game(game)
    if n_games <= 0:
        raise TlmError(f"the number of games must be positive, got {n_games}")
    if opening_plies < 0:
        raise TlmError(f"opening plies must be >= 0, got {opening_plies}")
    for agent in (agent_a, agent_b):
        _check_agent(agent, g)
    engine = g.make_engine()
    engine_seq, seq_a, seq_b, seq_open = np.random.SeedSequence(seed).spawn(4)
    rngs = (np.random.default_rng(seq_a), np.random.default_rng(seq_b))
    opening_rng = np.random.default_rng(seq_open)
    agents = (agent_a, agent_b)
    wants_obs = any(getattr(a, "uses_observation", True) for a in agents) or observer is not None

    state = engine.reset(n_games, seed=int(engine_seq.generate_state(1)[0]))
    seat_a = ((np.arange(n_games) + first_seat) % 2).astype(np.int8)
    seat_returns = np.zeros((n_games, 2), dtype=np.float64)
    length = np.zeros(n_games, dtype=np.int64)
    illegal = np.full(n_games, -1, dtype=np.int8)
    reasons = [""] * n_games
    steps: list[tuple[np.ndarray, np.ndarray]] = []

    rows = np.arange(n_games)  # match index of each row of `state`
    forfeits = False
    live = ~engine.done(state)
    # Per-row copies of per-game arrays, aligned with the rows of `state`: updating
    # them is one dense pass, where indexing the per-game arrays through `rows` is a
    # scatter each step. Lengths go back to `length` when rows are dropped.
    row_seat_a = seat_a
    row_len = np.zeros(n_games, dtype=np.int64)
    while live.any():
        if np.count_nonzero(live) < COMPACT_BELOW * len(rows) and len(rows) > 64:
            keep = np.flatnonzero(live)
            state = engine.take(state, keep)
            length[rows] = row_len
            rows, live = rows[keep], live[keep]
            row_seat_a, row_len = row_seat_a[keep], row_len[keep]
        if wants_obs:
            obs, mask = engine.observe(state)
        else:
            obs, mask = None, engine.legal_mask(state)
        mover_seat = engine.to_play(state)
        mover_is_a = mover_seat == row_seat_a
        # Rows forfeited by an illegal action still live in the engine until compacted
        # away: they get some legal action, and their rewards are not counted.
        forfeited = ~live & ~engine.done(state) if forfeits else None
        actions = np.zeros(len(rows), dtype=np.int64)
        if forfeited is not None and forfeited.any():
            actions[forfeited] = mask[forfeited].argmax(axis=1)
        deciding = live
        if opening_plies:
            in_opening = live & (row_len < opening_plies)
            if in_opening.any():
                opening = np.flatnonzero(in_opening)
                actions[opening] = uniform_legal(mask[opening], opening_rng)
                deciding = live & ~in_opening
        for player, sel in ((0, deciding & mover_is_a), (1, deciding & ~mover_is_a)):
            idx = np.flatnonzero(sel)
            if idx.size == 0:
                continue
            agent = agents[player]
            sub_state = engine.take(state, idx) if agent.needs_state else None
            # np.take gathers rows several times faster than fancy indexing.
            sub_obs = np.take(obs, idx, axis=0) if obs is not None else None
            sub_mask = np.take(mask, idx, axis=0)
            # Agents with uses_observation = False are handed None for obs.
            chosen = np.asarray(
                agent.act(sub_obs, sub_mask, rngs[player], state=sub_state)  # type: ignore[arg-type]
            )
            if chosen.shape != (idx.size,):
                raise TlmError(
                    f"agent {agent.name!r} returned actions of shape {chosen.shape}, "
                    f"expected ({idx.size},)"
                )
            chosen = chosen.astype(np.int64, copy=False)
            n_actions = sub_mask.shape[1]
            in_range = chosen.view(np.uint64) < n_actions  # negative actions wrap to huge
            flat = np.arange(0, idx.size * n_actions, n_actions)
            flat += np.where(in_range, chosen, 0)
            legal = in_range & (np.take(sub_mask, flat) == 1)
            if not legal.all():
                bad = idx[~legal]
                if strict:
                    raise IllegalActionError(
                        f"agent {agent.name!r} played illegal action "
                        f"{int(chosen[~legal][0])} in game {int(rows[bad[0]])}"
                    )
                for r, a in zip(bad, chosen[~legal], strict=True):
                    m = int(rows[r])
                    illegal[m] = player
                    reasons[m] = f"illegal action {int(a)} by {agent.name}"
                    seat_returns[m, mover_seat[r]] -= 1.0
                live[bad] = False
                forfeits = True
                chosen = np.where(legal, chosen, sub_mask.argmax(axis=1))
            actions[idx] = chosen
            if observer is not None:
                ok = idx[legal]
                observer(Decision(
                    games=rows[ok], player=player, seat=mover_seat[ok],
                    ply=row_len[ok], obs=None if obs is None else obs[ok],
                    mask=mask[ok], actions=chosen[legal],
                ))
        if record:
            steps.append((rows[live], actions[live]))
        row_len += live
        state, rewards, done = engine.step(state, actions)
        # Rewards are rare (mostly at the end): scatter only the rows that got one.
        paid = np.flatnonzero(live & ((rewards[:, 0] != 0) | (rewards[:, 1] != 0)))
        if paid.size:
            seat_returns[rows[paid]] += rewards[paid]
        live &= ~done
    length[rows] = row_len

    returns = np.empty((n_games, 2), dtype=np.float64)
    idx = np.arange(n_games)
    returns[:, 0] = seat_returns[idx, seat_a]
    returns[:, 1] = seat_returns[idx, 1 - seat_a]
    records = None
    if record:
        records = [np.zeros(int(n), dtype=np.int64) for n in length]
        ply = np.zeros(n_games, dtype=np.int64)
        for game_rows, acts in steps:
            for m, a in zip(game_rows, acts, strict=True):
                records[m][ply[m]] = a
            ply[game_rows] += 1
    return MatchResult(
        game=g.name,
        agents=(agent_a.name, agent_b.name),
        seat_a=seat_a,
        returns=returns,
        length=length,
        illegal=illegal,
        reasons=reasons,
        records=records,
    )
