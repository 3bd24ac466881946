"""The evaluation report: everything ``tlm eval`` says about an agent, in one call.

:func:`eval_report` plays the agent against fixed opponents (rows per opponent and
seat with 95% Wilson intervals, :func:`arena.evaluate`) and adds, on request or where
the game allows, the measures that judge it on what it never trained on:

- ``panel``: the game's standard panel and one Elo anchored at ``random`` = 0
  (:func:`arena.panel.evaluate_panel`);
- ``exact``: exact figures where the game is solved (tic-tac-toe: every line of play,
  :func:`arena.exact_strength`);
- ``agreement``: top-1 agreement with a teacher on positions it labelled
  (:class:`TeacherLabels`: a dataset's, read by the caller, since datasets live above
  ``arena``);
- ``positions``: optimal-move, blunder and illegal-move rates on solver-labelled
  positions (:func:`arena.positions.evaluate_positions`).

:meth:`EvalReport.to_json` is the JSON that ``tlm eval --json`` prints and ``--out``
writes.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from arena.core import Agent, TlmError
from arena.evaluation import EvalRow, evaluate, top1_agreement
from arena.games import Game, get_game
from arena.players import exact_strength
from arena.positions import PositionSet, evaluate_positions
from arena.runners import Progress, Runner
from arena.runstate import write_bytes_atomic

if TYPE_CHECKING:
    from arena.panel import PanelResult


@dataclass(frozen=True)
class TeacherLabels:
    """Positions a teacher labelled, to measure an agent's agreement with it.

    Attributes:
        teacher: the teacher's spec (a dataset manifest's ``teacher``).
        obs: ``[N, *obs_shape]`` observations.
        mask: ``[N, A]`` legal actions.
        probs: ``[N, A]`` the teacher's move probabilities.
    """

    teacher: str
    obs: np.ndarray
    mask: np.ndarray
    probs: np.ndarray

    def __len__(self) -> int:
        return len(self.obs)


@dataclass(frozen=True)
class EvalReport:
    """An agent's evaluation (see :func:`eval_report`).

    Attributes:
        game: the game's name.
        agent: the agent's name (its spec).
        rows: per opponent and seat (``first``, ``second``, ``both``).
        panel: the agent against the game's standard panel, if asked for.
        exact: exact figures, where the game is solved.
        agreement: ``{"teacher", "positions", "top1"}``, if teacher labels were given.
        positions: rates on solver-labelled positions, if positions were given.
    """

    game: str
    agent: str
    rows: list[EvalRow]
    panel: PanelResult | None = None
    exact: dict[str, Any] | None = None
    agreement: dict[str, Any] | None = None
    positions: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        """The report as JSON-ready data (what ``tlm eval --json`` prints)."""
        out: dict[str, Any] = {
            "game": self.game, "agent": self.agent, "results": [r.as_json() for r in self.rows],
        }
        if self.panel is not None:
            out["panel"] = self.panel.as_json()
        if self.exact is not None:
            out["exact"] = self.exact
        if self.agreement is not None:
            out["agreement"] = self.agreement
        if self.positions is not None:
            out["positions"] = self.positions
        return out


def plot_series_scores(report: EvalReport, path: str | Path) -> Path:
    """Write a PNG of the score by game index within the series, one line per opponent
    with its 95% band (a report of series only)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in report.rows if r.seat == "both" and r.series_scores]
    if not rows:
        raise TlmError("the report holds no series to plot (evaluate with series > 1)")
    fig, ax = plt.subplots(figsize=(6, 4))
    for r in rows:
        x = [s.game for s in r.series_scores]
        ax.plot(x, [s.score for s in r.series_scores], marker="o", label=r.opponent)
        ax.fill_between(x, [s.ci95[0] for s in r.series_scores],
                        [s.ci95[1] for s in r.series_scores], alpha=0.2)
    ax.set_xlabel("game of the series")
    ax.set_ylabel(f"score of {report.agent}")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    tmp = io.BytesIO()
    fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return write_bytes_atomic(path, tmp.getvalue())


def eval_report(
    game: str | Game,
    agent: Agent,
    opponents: Sequence[Agent],
    n_games: int,
    seed: int = 0,
    *,
    opening_plies: int = 0,
    panel: bool = False,
    teacher_labels: TeacherLabels | None = None,
    positions: PositionSet | None = None,
    runner: Runner | None = None,
    shard_games: int | None = None,
    progress: Progress | None = None,
    series: int = 1,
) -> EvalReport:
    """Evaluate ``agent``: its opponents, and the measures the game and the caller allow.

    Args:
        game: the game.
        agent: the agent evaluated.
        opponents: fixed opponents, each played ``n_games`` games (seats alternating).
        n_games: games per opponent (and per panel member).
        seed: the evaluation's seed; the same seed gives the same report.
        opening_plies: uniformly random first plies of every game against ``opponents``.
        panel: also play the game's standard panel and rate the agent.
        teacher_labels: positions a teacher labelled: report top-1 agreement with it.
        positions: solver-labelled positions: report optimal, blunder and illegal rates.
        runner: where the matches are played (default: this process).
        shard_games: games per shard (default: the arena picks; results do not depend
            on it).
        progress: called with the games finished against ``opponents``.
        series: play ``opponents`` in series of this many games (see
            :func:`arena.matches.play_matches`); each ``both`` row then gives the score
            by game index within the series.

    Raises:
        TlmError: no opponents, negative ``opening_plies``, a game without a panel when
            ``panel`` is asked for (before any game is played), positions of another
            game, or no teacher-labelled positions.
    """
    g = get_game(game)
    if not opponents:
        raise TlmError("no opponents to evaluate against")
    if opening_plies < 0:
        raise TlmError(f"opening plies must be >= 0, got {opening_plies}")
    if panel:
        # The panel (its members, reference games and rating fit) loads when asked for.
        from arena.panel import evaluate_panel, panel_for

        panel_for(g)  # a game without a panel fails before any game is played
    if positions is not None and positions.game != g.name:
        raise TlmError(f"positions of {positions.game} cannot evaluate a {g.name} agent")
    rows = evaluate(g, agent, list(opponents), n_games, seed=seed, opening_plies=opening_plies,
                    runner=runner, shard_games=shard_games, progress=progress, series=series)
    panel_result = evaluate_panel(agent, g, n_games, seed=seed, runner=runner) if panel else None
    exact = exact_strength(g, agent)
    agreement = None
    if teacher_labels is not None:
        agreement = {
            "teacher": teacher_labels.teacher,
            "positions": len(teacher_labels),
            "top1": top1_agreement(agent, teacher_labels.obs, teacher_labels.mask,
                                   teacher_labels.probs),
        }
    rates = (None if positions is None
             else evaluate_positions(agent, positions, np.random.default_rng(seed)))
    return EvalReport(game=g.name, agent=agent.name, rows=rows, panel=panel_result,
                      exact=exact, agreement=agreement, positions=rates)
