"""Positions files: solver-labelled positions, and how well an agent plays them.

A positions file is a CSV with a header ``moves,score_c0,...,score_c{A-1}`` (``A`` the
game's number of actions) and one position per row:

- ``moves``: the moves from the empty board, as 1-indexed actions written one digit
  each (connect four: columns ``1``-``7``, ``4453`` = columns 4, 4, 5, 3; tic-tac-toe:
  squares ``1``-``9``); empty for the starting position;
- ``score_cK``: the game-theoretic score of action ``K`` (0-indexed) for the player to
  move: ``> 0`` a win (the larger, the sooner), ``0`` a draw, ``< 0`` a loss (the more
  negative, the sooner), :data:`ILLEGAL` (``-1000``) for an illegal action.

A move is *optimal* when its score equals the row's best score, and a *blunder* when
its win/draw/loss class (the sign of its score) is worse than the best move's class;
an illegal move counts as illegal and as a loss (a blunder unless the position is
lost anyway). Rates come with 95% Wilson intervals.

Positions are rebuilt by replaying their moves on the game's engine, so agents get
the same observations as in play, and search agents the engine state they need.
The measure is the one the distillation report uses every round: an agent is judged on
positions it never trained on.

Positions files that ship with tlm live in the package's data (``arena/data``) and are
named by their file name without ``.csv``: ``connect_four_solved`` is 400 connect-four
positions labelled by a solver. Wherever a positions file is accepted (``--positions``,
``positions:`` in a config), such a name works as well as a path
(:func:`positions_path`).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from arena.core import Agent, State, TlmError
from arena.evaluation import wilson_interval
from arena.games import Game, get_game
from arena.runstate import write_bytes_atomic

ILLEGAL = -1000
"""Score of an action that cannot be played in the position."""
SHIPPED_DIR = Path(__file__).resolve().parent / "data"
"""Where the positions files that ship with tlm are (package data)."""
MAX_SCORE = 10**9
"""Largest score magnitude a file may hold."""


@dataclass(frozen=True)
class PositionSet:
    """Labelled positions of one game, ready for agents.

    Attributes:
        game: the game's name.
        source: where they came from (a path, or a description).
        moves: each position's moves from the empty board (0-indexed actions).
        scores: ``[N, A]`` int64 scores per action (:data:`ILLEGAL` where illegal).
        obs: ``[N, *obs_shape]`` observations for the player to move.
        mask: ``[N, A]`` int8 legal actions.
        state: the engine's batched state of the ``N`` positions.
    """

    game: str
    source: str
    moves: list[tuple[int, ...]]
    scores: np.ndarray
    obs: np.ndarray
    mask: np.ndarray
    state: State

    def __len__(self) -> int:
        return len(self.moves)

    def take(self, idx: Sequence[int] | np.ndarray) -> PositionSet:
        """The positions ``idx`` (in that order), as a new set."""
        idx = np.asarray(idx, dtype=np.int64)
        engine = get_game(self.game).make_engine()
        return PositionSet(
            game=self.game, source=self.source, moves=[self.moves[int(i)] for i in idx],
            scores=self.scores[idx], obs=self.obs[idx], mask=self.mask[idx],
            state=engine.take(self.state, idx),
        )

    @property
    def best(self) -> np.ndarray:
        """``[N]`` the best legal score of each position."""
        return np.where(self.mask != 0, self.scores, np.iinfo(np.int64).min).max(axis=1)

    @property
    def optimal(self) -> np.ndarray:
        """``[N, A]`` bool: the optimal actions."""
        return (self.mask != 0) & (self.scores == self.best[:, None])

    @property
    def blunders(self) -> np.ndarray:
        """``[N, A]`` bool: legal actions whose class is worse than the best action's."""
        return (self.mask != 0) & (np.sign(self.scores) < np.sign(self.best)[:, None])


def _fail(path: Path | str, line: int | None, message: str) -> TlmError:
    where = f"positions file {path}" + (f" line {line}" if line is not None else "")
    return TlmError(f"{where}: {message}")


def _replay(engine: Any, moves: Sequence[int], path: Path | str, line: int) -> State:
    """The engine state after ``moves`` from the start (one game), or a one-line error."""
    state = engine.reset(1, seed=0)
    for k, a in enumerate(moves):
        if engine.done(state)[0]:
            raise _fail(path, line, f"the game is over before move {k + 1}")
        if not engine.legal_mask(state)[0, a]:
            raise _fail(path, line, f"move {k + 1} ({a + 1}) is illegal")
        state, _, _ = engine.step(state, np.array([a]))
    if engine.done(state)[0]:
        raise _fail(path, line, "the game is over: no move to judge")
    return state


def build_positions(
    game: str | Game,
    moves: Sequence[Sequence[int]],
    scores: np.ndarray,
    source: str = "positions",
    lines: Sequence[int] | None = None,
) -> PositionSet:
    """Positions of ``game`` from their 0-indexed moves and per-action scores.

    Args:
        game: a game with a fast engine (``tictactoe``, ``connect_four``).
        moves: each position's moves from the empty board.
        scores: ``[N, A]`` scores, :data:`ILLEGAL` exactly where an action is illegal.
        source: named in errors.
        lines: the file line of each position, for errors (default: 2, 3, ...).

    Raises:
        TlmError: an illegal move sequence, a finished game, or scores that disagree
            with the legal actions.
    """
    g = get_game(game)
    if not g.has_engine:
        raise TlmError(f"positions need a game with a fast engine, not {g.name}")
    engine = g.make_engine()
    scores = np.asarray(scores, dtype=np.int64)
    if scores.shape != (len(moves), g.num_actions):
        raise TlmError(
            f"{source}: scores must have shape [{len(moves)}, {g.num_actions}], "
            f"got {list(scores.shape)}"
        )
    if not len(moves):
        raise TlmError(f"{source}: no positions")
    line_of = list(lines) if lines is not None else list(range(2, len(moves) + 2))
    states = [_replay(engine, m, source, line_of[i]) for i, m in enumerate(moves)]
    concat = getattr(engine, "concat", None)
    if concat is None:
        raise TlmError(f"the {g.name} engine cannot batch positions (no concat)")
    state = concat(states)
    obs, mask = engine.observe(state)
    mask = np.ascontiguousarray(mask, dtype=np.int8)
    bad = (mask != 0) != (scores != ILLEGAL)
    if bad.any():
        i, a = (int(x) for x in np.argwhere(bad)[0])
        what = "legal" if mask[i, a] else "illegal"
        raise _fail(source, line_of[i], f"score_c{a} is {scores[i, a]} but action {a} is {what}")
    return PositionSet(
        game=g.name, source=source, moves=[tuple(int(a) for a in m) for m in moves],
        scores=scores, obs=np.ascontiguousarray(obs), mask=mask, state=state,
    )


def shipped_positions() -> dict[str, Path]:
    """The positions files that ship with tlm, by name (``connect_four_solved``)."""
    return {p.stem: p for p in sorted(SHIPPED_DIR.glob("*.csv"))}


def _known() -> str:
    return ", ".join(shipped_positions()) or "none"


def positions_path(spec: str | Path) -> Path:
    """The file a positions argument names: a shipped file by its name, else a path.

    A bare name (no directory, no suffix) that names a shipped file is that file, even
    when the working directory holds a file of that name; anything else is a path.

    Raises:
        TlmError: a bare name that is neither a shipped file nor an existing path (the
            message lists the known names).
    """
    text = str(spec)
    bare = Path(text).name == text and not Path(text).suffix
    if bare and text in shipped_positions():
        return shipped_positions()[text]
    if bare and not Path(text).exists():
        raise TlmError(f"unknown positions {text!r}: known names are {_known()} "
                       "(or give the path of a positions file)")
    return Path(text)


def load_positions(path: str | Path, game: str | Game) -> PositionSet:
    """Read a positions file (see the module docstring) for ``game``.

    Args:
        path: a positions file, or the name of one that ships with tlm
            (:func:`positions_path`).
        game: the game the positions are of.

    Raises:
        TlmError: an unknown name, a missing or unreadable file, a header that is not
            ``moves,score_c0..score_c{A-1}`` for this game (a file of another game),
            a ragged row, a non-number, a move out of range or illegal, a finished
            game, or scores that disagree with the legal actions. The message names
            the line.
    """
    g = get_game(game)
    path = positions_path(path)
    n_actions = g.num_actions
    if n_actions > 9:
        raise TlmError(f"positions files write one digit per move; {g.name} has "
                       f"{n_actions} actions")
    expected = ["moves"] + [f"score_c{a}" for a in range(n_actions)]
    try:
        with path.open(newline="") as f:
            rows = list(csv.reader(f))
    except FileNotFoundError as e:
        raise TlmError(f"cannot read positions file {path}: {e.strerror} (shipped "
                       f"positions: {_known()})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise TlmError(f"cannot read positions file {path}: {e}") from None
    except csv.Error as e:
        raise _fail(path, None, f"not a CSV file ({e})") from None
    if not rows:
        raise _fail(path, None, "empty file")
    header = [h.strip() for h in rows[0]]
    if header != expected:
        n_scores = sum(h.startswith("score_c") for h in header)
        if header[:1] == ["moves"] and n_scores == len(header) - 1 and n_scores != n_actions:
            raise _fail(path, 1, f"{n_scores} score columns, but {g.name} has {n_actions} "
                                 "actions (a file of another game?)")
        raise _fail(path, 1, f"header must be {','.join(expected)}, got {','.join(header)}")
    moves: list[list[int]] = []
    scores: list[list[int]] = []
    lines: list[int] = []
    for line, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != len(expected):
            raise _fail(path, line, f"{len(row)} fields, expected {len(expected)}")
        text = row[0].strip()
        if not text.isdigit() and text != "":
            raise _fail(path, line, f"moves must be digits 1-{n_actions}, got {text!r}")
        ms = [int(ch) - 1 for ch in text]
        if any(not 0 <= m < n_actions for m in ms):
            raise _fail(path, line, f"moves must be digits 1-{n_actions}, got {text!r}")
        try:
            values = [int(v) for v in row[1:]]
        except ValueError:
            raise _fail(path, line, f"scores must be integers, got {row[1:]}") from None
        if any(abs(v) > MAX_SCORE for v in values):
            raise _fail(path, line, f"scores must lie within +-{MAX_SCORE}, got {row[1:]}")
        scores.append(values)
        moves.append(ms)
        lines.append(line)
    if not moves:
        raise _fail(path, None, "no positions")
    return build_positions(g, moves, np.array(scores, dtype=np.int64), source=str(path),
                           lines=lines)


def write_positions(path: str | Path, positions: PositionSet) -> Path:
    """Write ``positions`` as a positions file (atomically); returns the path."""
    n_actions = positions.scores.shape[1]
    lines = [",".join(["moves"] + [f"score_c{a}" for a in range(n_actions)])]
    for m, s in zip(positions.moves, positions.scores, strict=True):
        lines.append(",".join(["".join(str(a + 1) for a in m)] + [str(int(v)) for v in s]))
    path = Path(path)
    write_bytes_atomic(path, ("\n".join(lines) + "\n").encode())
    return path


def _rate(count: int, n: int) -> dict[str, Any]:
    rate = count / n if n else 0.0
    lo, hi = wilson_interval(rate, n)
    return {"count": int(count), "rate": rate, "ci95": [lo, hi]}


def evaluate_positions(
    agent: Agent, positions: PositionSet, rng: np.random.Generator
) -> dict[str, Any]:
    """How ``agent`` plays the labelled positions: one move each, as it would play it.

    Args:
        agent: any agent of the positions' game (search agents get the engine state).
        positions: from :func:`load_positions` or :func:`build_positions`.
        rng: the agent's generator (ties and sampling).

    Returns:
        ``{"game", "agent", "source", "positions", "optimal", "blunders", "illegal"}``;
        each of the last three is ``{"count", "rate", "ci95": [lo, hi]}`` (95% Wilson).
        An illegal move is neither optimal nor legal: it counts as a blunder unless
        the position is lost whatever the move.

    Raises:
        TlmError: the agent plays another game, or returns actions of the wrong shape.
    """
    if agent.game is not None and agent.game != positions.game:
        raise TlmError(f"agent {agent.name!r} plays {agent.game}, not {positions.game}")
    n = len(positions)
    obs = positions.obs if getattr(agent, "uses_observation", True) else None
    state = positions.state if agent.needs_state else None
    actions = np.asarray(agent.act(obs, positions.mask, rng, state=state))  # type: ignore[arg-type]
    if actions.shape != (n,):
        raise TlmError(f"agent {agent.name!r} returned actions of shape {actions.shape}, "
                       f"expected ({n},)")
    actions = actions.astype(np.int64)
    n_actions = positions.mask.shape[1]
    in_range = (actions >= 0) & (actions < n_actions)
    safe = np.where(in_range, actions, 0)
    rows = np.arange(n)
    legal = in_range & (positions.mask[rows, safe] != 0)
    optimal = legal & positions.optimal[rows, safe]
    lost_anyway = positions.best < 0
    blunder = np.where(legal, positions.blunders[rows, safe], ~lost_anyway)
    return {
        "game": positions.game,
        "agent": agent.name,
        "source": positions.source,
        "positions": n,
        "optimal": _rate(int(optimal.sum()), n),
        "blunders": _rate(int(blunder.sum()), n),
        "illegal": _rate(int((~legal).sum()), n),
    }
