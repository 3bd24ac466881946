"""Measuring and reporting an in-context run: the scores by game index of its players
against sets of opponents, the rise from game 1 to game ``K`` with its interval, the
figures of a finished run against their targets, and its curve, tables and figure.

The run that uses them is :mod:`distill.incontext`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from arena import Agent, PolicyAgent, make_agent, play_matches
from arena.games import Game
from distill.incontext_series import MemoryResetAgent
from students import RecurrentStudentAgent, RecurrentStudentNet, StudentAgent, StudentNet
from teachers.best_response import SeriesTeacher, expected_score
from teachers.search_response import SearchResponse

Teacher = SeriesTeacher | SearchResponse


def perfect_score(opponent: Agent) -> float:
    """The perfect player's exact expected score against ``opponent`` (both seats)."""
    perfect = make_agent("perfect", "tictactoe")
    assert isinstance(perfect, PolicyAgent) and isinstance(opponent, PolicyAgent)
    return sum(expected_score(perfect, opponent, s) for s in (0, 1)) / 2


def reference_of(teachers: Sequence[Teacher]) -> str:
    """The player that does not adapt to its opponent, against which G is measured:
    ``perfect`` where the teachers are exact, else the teachers' minimax twin."""
    first = teachers[0]
    return first.twin if isinstance(first, SearchResponse) else "perfect"


def reference(final: dict[str, Any]) -> tuple[str, float, bool]:
    """``(name, score, exact)`` of the reference of :func:`final_measures`' figures."""
    ref = final.get("reference")
    if ref is None:  # reports written before the reference had a name
        return "perfect", float(final["perfect"]), True
    return str(ref["name"]), float(ref["score"]), bool(ref["exact"])



def derived_seed(*words: int) -> int:
    """A seed for one use of a run, from its seed and the use's numbers."""
    return int(np.random.SeedSequence(list(words)).generate_state(1)[0])



def series_scores(
    g: Game, agent: Agent, opponents: Sequence[Agent], n_series: int, k: int, seed: int,
) -> np.ndarray:
    """``[len(opponents), n_series, k]``: the agent's score (win 1, draw 1/2) in each
    game of ``n_series`` series against each opponent, seats alternating.

    Each opponent's series have the seed :func:`arena.evaluate` would give them, so the
    games are those of ``evaluate(g, agent, opponents, n_series * k, seed, series=k)``.
    """
    seeds = np.random.SeedSequence(seed).generate_state(len(opponents))
    out = np.zeros((len(opponents), n_series, k))
    for i, (opponent, s) in enumerate(zip(opponents, seeds, strict=True)):
        result = play_matches(g, agent, opponent, n_series * k, int(s), series=k)
        out[i] = ((result.outcome.astype(np.float64) + 1.0) / 2.0).reshape(n_series, k)
    return out


def losses_by_seat(
    g: Game, agent: Agent, opponent: Agent, n_series: int, k: int, seed: int,
) -> dict[str, int]:
    """Games ``agent`` lost to ``opponent`` over ``n_series`` series, by its seat."""
    result = play_matches(g, agent, opponent, n_series * k, seed, series=k)
    lost = result.outcome < 0
    return {"games": int(result.n_games),
            "first": int(np.count_nonzero(lost & (result.seat_a == 0))),
            "second": int(np.count_nonzero(lost & (result.seat_a == 1)))}


Z95 = 1.959963984540054


def rise(scores: np.ndarray) -> dict[str, float]:
    """The change from game 1 to game K of ``scores[..., n_series, K]`` (all series
    pooled), with a 95% interval from the paired differences of each series."""
    diff = (scores[..., -1] - scores[..., 0]).reshape(-1)
    mean = float(diff.mean())
    half = Z95 * float(diff.std(ddof=1)) / math.sqrt(len(diff)) if len(diff) > 1 else math.inf
    return {"rise": mean, "rise_lo": mean - half, "rise_hi": mean + half}


@dataclass(frozen=True)
class Players:
    """The agents measured: the recurrent student (greedy), the same with its memory
    reset every game, and the feedforward control (greedy), if any."""

    student: RecurrentStudentAgent
    reset: MemoryResetAgent
    control: StudentAgent | None

    @classmethod
    def of(cls, net: RecurrentStudentNet, control: StudentNet | None) -> Players:
        student = RecurrentStudentAgent(net, greedy=True)
        return cls(student, MemoryResetAgent(student),
                   None if control is None else StudentAgent(control, greedy=True))

    def named(self) -> list[tuple[str, Agent]]:
        out: list[tuple[str, Agent]] = [("student", self.student), ("reset", self.reset)]
        if self.control is not None:
            out.append(("control", self.control))
        return out


def curve_columns(prefix: str, by_index: np.ndarray) -> dict[str, float]:
    return {f"{prefix}_g{j + 1}": round(float(v), 6) for j, v in enumerate(by_index)}



def final_measures(
    g: Game, players: Players, held_out: Sequence[Agent], teachers: Sequence[Teacher],
    n_series: int, k: int, seed: int,
) -> dict[str, Any]:
    """The figures of a finished run, on the held-out families only: the score by game
    index of each player (``n_series`` series against each member) beside the scores of
    the reference (:func:`reference_of`; exact for ``perfect``, else played) and of the
    teacher, the gap G (the best response's score less the reference's: exact on
    tic-tac-toe, the teacher's played score elsewhere), the rise from game 1 to game K
    with its 95% interval, and each player's losses to the reference and ``random`` by
    seat (``n_series`` series each), beside the teacher's own: the response the
    students learn from, played against the reference and ``random`` themselves."""
    ref_name = reference_of(teachers)
    ref_agent = make_agent(ref_name, g)
    exact = ref_name == "perfect"
    if exact:
        ref_score = float(np.mean([perfect_score(a) for a in held_out]))
    else:
        ref_score = float(series_scores(g, ref_agent, held_out, n_series, k,
                                        derived_seed(seed, 9)).mean())
    oracle = np.mean([t.oracle(k, n_series, derived_seed(seed, 8, i))
                      for i, t in enumerate(teachers)], axis=0)
    # G is the exact best response's gain, whatever risk the teacher avoids.
    best = (float(np.mean([t.exact_score for t in teachers])) if exact
            else float(oracle.mean()))
    out: dict[str, Any] = {
        "series": n_series, "k": k, "opponents": [a.name for a in held_out],
        "reference": {"name": ref_name, "score": ref_score, "exact": exact},
        "best_response": best, "gap": best - ref_score,
        "oracle_by_game": oracle.tolist(),
        "oracle_exact": exact and not any(t.forced_answers for t in teachers),
        "players": {},
    }
    references = [ref_agent, make_agent("random", g)]
    out["teacher_losses"] = {
        r.name: losses_by_seat(g, teachers[0].against(r), r, n_series, k,
                               derived_seed(seed, 7, i))
        for i, r in enumerate(references) if teachers and isinstance(r, PolicyAgent)}
    for name, agent in players.named():
        scores = series_scores(g, agent, held_out, n_series, k, seed)
        by_index = scores.mean(axis=(0, 1))
        out["players"][name] = {
            "by_game": by_index.tolist(),
            "by_opponent": {a.name: float(s.mean()) for a, s in zip(held_out, scores,
                                                                      strict=True)},
            **rise(scores),
            "losses": {r.name: losses_by_seat(g, agent, r, n_series, k, derived_seed(seed, i))
                       for i, r in enumerate(references)},
        }
    return out


def target_checks(final: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets, met or not, from :func:`final_measures` (the targets are
    tic-tac-toe's, against ``perfect``; elsewhere the same measures against the
    reference)."""
    gap = final["gap"]
    ref_name, ref_score, _ = reference(final)
    student = final["players"]["student"]
    last = student["by_game"][-1]
    out: dict[str, Any] = {
        f"last_game_at_least_{ref_name}_plus_0.6G": last >= ref_score + 0.6 * gap,
        f"last_game_over_{ref_name}_in_G": (last - ref_score) / gap if gap > 0 else None,
        "rise_at_least_0.4G": student["rise"] >= 0.4 * gap,
        "rise_in_G": student["rise"] / gap if gap > 0 else None,
        "rise_interval_above_0": student["rise_lo"] > 0,
        f"no_loss_to_{ref_name}": sum(student["losses"][ref_name][s]
                                      for s in ("first", "second")) == 0,
        "losses_to_random": sum(student["losses"]["random"][s] for s in ("first", "second")),
    }
    for name in ("reset", "control"):
        if name in final["players"]:
            r = final["players"][name]["rise"]
            out[f"{name}_flat"] = abs(r) <= 0.02
    return out


def _write_curve(stage: Path, curve: list[dict[str, Any]], final: dict[str, Any]) -> None:
    import csv

    keys: dict[str, None] = {}
    for row in curve:
        keys.update(dict.fromkeys(row))
    with open(stage / "curve.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(keys))
        w.writeheader()
        w.writerows(curve)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = final["k"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    games = np.arange(1, k + 1)
    labels = {"student": "recurrent student", "reset": "same, memory reset each game",
              "control": "feedforward control"}
    for name, player in final["players"].items():
        left.plot(games, player["by_game"], marker="o", label=labels[name])
    ref_name, ref_score, ref_exact = reference(final)
    left.plot(games, final["oracle_by_game"], color="black", ls="--", label=_teacher_name(final))
    if ref_exact:
        left.axhline(final["best_response"], color="grey", ls=":", label="best response (exact)")
    left.axhline(ref_score, color="red", ls=":", label=f"{ref_name} ({_how(ref_exact)})")
    left.set_xlabel("game of the series")
    left.set_ylabel("score against held-out families")
    left.set_title(f"after training ({final['series']} series per opponent)")
    left.grid(alpha=0.3)
    left.legend(fontsize=7, loc="lower right")
    rounds = [r["round"] + 1 for r in curve]
    for key, label in (("student_g1", "student, game 1"), (f"student_g{k}", f"student, game {k}"),
                       (f"reset_g{k}", f"memory reset, game {k}"),
                       (f"control_g{k}", f"control, game {k}"),
                       (f"train_g{k}", f"student, game {k}, training families")):
        if key in keys:
            right.plot(rounds, [r.get(key, float("nan")) for r in curve], marker=".",
                       label=label)
    right.axhline(ref_score, color="red", ls=":", label=f"{ref_name} (held out)")
    right.axhline(final["best_response"], color="grey", ls=":", label="best response")
    right.set_xlabel("round")
    right.set_ylabel("score")
    right.set_title("while training (held-out families unless said)")
    right.grid(alpha=0.3)
    right.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(stage / "curve.png", dpi=100)
    plt.close(fig)



def _how(exact: bool) -> str:
    return "exact" if exact else "played"


def _teacher_name(final: dict[str, Any]) -> str:
    """The teacher's row: exact, or (a search, or waiting for forced answers) the mean of
    its series."""
    return f"teacher ({_how(final.get('oracle_exact', True))})"


PLAYER_NAMES = {"student": "recurrent student", "reset": "same, memory reset every game",
                "control": "feedforward control"}
"""How reports name the players measured."""


def score_rows(final: dict[str, Any]) -> list[tuple[str, list[float]]]:
    """The score by game index of every player of :func:`final_measures` and of the
    exact references (the teacher, the best response, perfect), for a table."""
    k = final["k"]
    ref_name, ref_score, ref_exact = reference(final)
    rows = [(PLAYER_NAMES.get(name, name), list(p["by_game"]))
            for name, p in final["players"].items()]
    rows.append((_teacher_name(final), list(final["oracle_by_game"])))
    if ref_exact:
        rows.append(("best response (exact)", [final["best_response"]] * k))
    rows.append((f"{ref_name} ({_how(ref_exact)})", [ref_score] * k))
    return rows


def _in_g(value: float, gap: float) -> str:
    return f"{value / gap:+.2f} G" if gap > 0 else "(G <= 0)"


def figure_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    """The run's figures as (measure, value) lines: G, the last game and the rise
    against their targets, the controls' change, losses, labels and time."""
    final = report["final"]
    gap, k = final["gap"], final["k"]
    ref_name, ref_score, ref_exact = reference(final)
    rows = [("held-out opponents", f"{len(final['opponents'])} ({final['series']} series "
                                   f"of {k} games each)"),
            (f"G = best response - {ref_name} ({_how(ref_exact)})", f"{gap:.4f}")]
    for name, p in final["players"].items():
        label = PLAYER_NAMES.get(name, name)
        last = p["by_game"][-1]
        rows.append((f"{label}: game {k} - {ref_name}",
                     f"{last - ref_score:+.4f} = {_in_g(last - ref_score, gap)}"))
        rows.append((f"{label}: game {k} - game 1 (95%)",
                     f"{p['rise']:+.4f} [{p['rise_lo']:+.4f}, {p['rise_hi']:+.4f}] = "
                     f"{_in_g(p['rise'], gap)}"))
        for ref, lost in p["losses"].items():
            rows.append((f"{label}: games lost to {ref}",
                         f"{lost['first'] + lost['second']} of {lost['games']} (first "
                         f"{lost['first']}, second {lost['second']})"))
    if ref_exact:
        rows.append(("perfect: games lost to random", "0 (it never loses)"))
    for ref, lost in final.get("teacher_losses", {}).items():
        rows.append((f"teacher (the response to {ref} itself): games lost to {ref}",
                     f"{lost['first'] + lost['second']} of {lost['games']}"))
    if "labelled_decisions" in report:
        rows.append(("labelled decisions", f"{report['labelled_decisions']:,}"))
    if "series" in report:
        rows.append(("series played in training", f"{report['series']:,}"))
    if "games" in report:
        rows.append(("games played in training", f"{report['games']:,}"))
    rows.append(("wall time", f"{report['wall_s']:.0f} s"))
    return rows

