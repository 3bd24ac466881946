"""What a league looks like now: its status (for ``tlm league status``) and its report.

Both read only the store, so they work on a running league (a read-only connection
sees the last committed match) and on a stopped one alike, and both recompute
everything from the match log: Elo with intervals anchored at ``random`` (or the
league's first reference), openskill, the payoff matrix, Elo over the rounds.

The report is one self-contained HTML page (ratings table, ratings over time, payoff
heatmap, learner curves; matplotlib figures embedded as base64 PNG) plus the same
tables in Markdown, both written atomically.
"""

from __future__ import annotations

import base64
import html
import io
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from arena.core import TlmError
from arena.ratings import (
    MatchRecord,
    elo_history,
    elo_ratings,
    openskill_ratings,
    payoff_matrix,
)
from arena.runstate import write_bytes_atomic
from teachers.league.store import AgentRecord, LeagueStore

HISTORY_POINTS = 120
"""At most this many refits for the ratings-over-time figure (rounds evenly spaced)."""

CURVES_PER_PANEL = 10
"""The learner-curves figure draws at most this many lines per panel."""

CURVE_PANELS = 12
"""...and at most this many panels."""

ANNOTATE_BELOW = 16
"""The payoff heatmap prints each cell's score when it has fewer agents than this."""


def anchors(agents: Sequence[AgentRecord]) -> list[str]:
    """The agents to anchor Elo at, in order of preference: ``random``, then the
    league's references in the order they were added."""
    refs = [a.name for a in agents if a.role == "reference"]
    return ["random", *[r for r in refs if r != "random"]]


def _anchor_used(agents: Sequence[AgentRecord], log: Sequence[MatchRecord]) -> str | None:
    played = {m.agent_a for m in log} | {m.agent_b for m in log}
    for name in anchors(agents):
        if name in played:
            return name
    # Nobody preferred played: the fit anchors the first agent it lists.
    names = [a.name for a in agents]
    return names[0] if names else None


def league_status(store: LeagueStore, with_openskill: bool = False) -> dict[str, Any]:
    """The league's ratings and counts, as ``tlm league status --json`` prints them.

    Args:
        store: the league (a read-only store is enough).
        with_openskill: also run openskill over the log (one update per game: about
            10 µs a game) and add ``mu`` and ``sigma`` to each agent.

    Returns:
        ``{"game", "matches", "games", "anchor", "round", "agents": [...]}`` where each
        agent is ``{"name", "role", "spec", "elo", "elo_ci95": [lo, hi], "games",
        "parent"}`` (plus ``mu``, ``sigma``), highest Elo first. ``round`` is the last
        round in the log (-1 before any match).
    """
    agents = store.agents()
    log = store.matches()
    names = [a.name for a in agents]
    ratings = elo_ratings(log, anchor=anchors(agents), names=names)
    skill = openskill_ratings(log) if with_openskill else {}
    rows: list[dict[str, Any]] = []
    for a in agents:
        r = ratings[a.name]
        row: dict[str, Any] = {
            "name": a.name, "role": a.role, "spec": a.spec,
            "elo": round(r.elo, 2), "elo_ci95": [round(r.lo, 2), round(r.hi, 2)],
            "games": r.games, "parent": a.parent,
        }
        if with_openskill:
            mu, sigma = skill.get(a.name, (math.nan, math.nan))
            row["mu"] = None if math.isnan(mu) else round(mu, 3)
            row["sigma"] = None if math.isnan(sigma) else round(sigma, 3)
        rows.append(row)
    rows.sort(key=lambda row: -row["elo"])
    return {
        "game": store.game,
        "matches": len(log),
        "games": int(sum(m.games for m in log)),
        "anchor": _anchor_used(agents, log),
        "round": max((m.round for m in log), default=-1),
        "agents": rows,
    }


# -- figures -----------------------------------------------------------------------------


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _figure(width: float, height: float) -> Any:
    # A bare Figure: no pyplot, no global backend or state touched.
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height))


def _history_figure(agents: Sequence[AgentRecord], log: Sequence[MatchRecord]) -> str | None:
    if not log:
        return None
    rounds, names, elo = elo_history(log, anchor=anchors(agents), at_most=HISTORY_POINTS)
    roles = {a.name: a for a in agents}
    fig = _figure(9, 4.5)
    ax = fig.add_subplot()
    cmap = _colors()
    lineage = sorted({a.parent or a.name for a in agents if a.role != "reference"})
    for idx, name in enumerate(names):
        rec = roles.get(name)
        role = rec.role if rec else "reference"
        if role == "reference":
            ax.plot(rounds, elo[:, idx], lw=2.0, ls="--", label=name,
                    color=cmap(idx % 10), alpha=0.9)
        else:
            family = (rec.parent if rec and rec.parent else name)
            color = cmap((lineage.index(family) + 3) % 10) if family in lineage else "gray"
            ax.plot(rounds, elo[:, idx], lw=2.0 if role == "learner" else 0.8,
                    color=color, alpha=1.0 if role == "learner" else 0.5,
                    label=name if role == "learner" else None)
    ax.set_xlabel("round")
    ax.set_ylabel("Elo (refitted on the log up to that round)")
    ax.set_title("Ratings over time (dashed: references; thin: snapshots, coloured by learner)")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", fontsize=8, ncol=2)
    return _png(fig)


def _colors() -> Any:
    from matplotlib import colormaps

    return colormaps["tab10"]


def _lineage_figure(agents: Sequence[AgentRecord], status: dict[str, Any]) -> str | None:
    """Each learner's snapshots: final Elo (with interval) against learner steps."""
    elo = {row["name"]: row for row in status["agents"]}
    learners = [a.name for a in agents if a.role == "learner"]
    snaps = [a for a in agents if a.role == "snapshot" and a.parent is not None]
    if not snaps:
        return None
    fig = _figure(9, 4)
    ax = fig.add_subplot()
    cmap = _colors()
    families = sorted({a.parent for a in snaps if a.parent is not None} | set(learners))
    for fam in families:
        own = [a for a in snaps if a.parent == fam]
        if not own:
            continue
        own.sort(key=lambda a: float(a.info.get("steps", 0)))
        xs = [float(a.info.get("steps", i)) for i, a in enumerate(own)]
        ys = np.array([elo[a.name]["elo"] for a in own])
        lo = np.array([elo[a.name]["elo_ci95"][0] for a in own])
        hi = np.array([elo[a.name]["elo_ci95"][1] for a in own])
        color = cmap((families.index(fam) + 3) % 10)
        ax.errorbar(xs, ys, yerr=[ys - lo, hi - ys], marker="o", ms=3, capsize=2, lw=1.2,
                    elinewidth=0.8, color=color, label=fam)
    for ref in (a for a in agents if a.role == "reference"):
        if ref.name in elo and elo[ref.name]["games"] > 0:
            ax.axhline(elo[ref.name]["elo"], ls="--", lw=1, color="black", alpha=0.4)
            ax.annotate(ref.name, (0, elo[ref.name]["elo"]), xycoords=("axes fraction", "data"),
                        fontsize=7, va="bottom")
    with_steps = all("steps" in a.info for a in snaps)
    ax.set_xlabel("learner steps at snapshot" if with_steps else "snapshot number")
    ax.set_ylabel("Elo (whole log, 95% interval)")
    ax.set_title("Snapshots of each learner, rated on the whole log (dashed: references)")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    return _png(fig)


def _payoff_figure(order: list[str], score: np.ndarray, games: np.ndarray) -> str | None:
    if not order or not (games > 0).any():
        return None
    n = len(order)
    size = min(2.0 + 0.45 * n, 16.0)
    fig = _figure(size + 1.5, size)
    ax = fig.add_subplot()
    masked = np.ma.masked_invalid(score)
    from matplotlib import colormaps

    cmap = colormaps["RdBu"].with_extremes(bad="#dddddd")
    im = ax.imshow(masked, cmap=cmap, vmin=0.0, vmax=1.0)
    ax.set_xticks(range(n), order, rotation=90, fontsize=7)
    ax.set_yticks(range(n), order, fontsize=7)
    ax.set_xlabel("opponent")
    ax.set_ylabel("agent (row's mean score against column)")
    if n < ANNOTATE_BELOW:
        for i in range(n):
            for j in range(n):
                if games[i, j] > 0:
                    ax.text(j, i, f"{score[i, j]:.2f}", ha="center", va="center", fontsize=6,
                            color="black")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="score (win 1, draw 0.5)")
    ax.set_title("Payoff: who beats whom (grey: never met); agents by Elo")
    return _png(fig)


def _curves_figure(points: list[tuple[str, int, float, float]]) -> str | None:
    """One panel per metric of ``learner/NAME/METRIC`` scalars, one line per learner;
    ``learner/NAME/win_rate/OPPONENT`` gets a panel per learner, a line per opponent."""
    series: dict[str, dict[str, tuple[list[int], list[float]]]] = {}
    for tag, step, value, _ in points:
        parts = tag.split("/")
        if len(parts) < 3 or parts[0] != "learner":
            continue
        name, rest = parts[1], "/".join(parts[2:])
        if parts[2] == "win_rate" and len(parts) > 3:
            metric, line = f"{name}: score against", "/".join(parts[3:])
        else:
            metric, line = rest, name
        xs, ys = series.setdefault(metric, {}).setdefault(line, ([], []))
        xs.append(step)
        ys.append(value)
    if not series:
        return None
    # Scores first (what the league is for), then the backend's own scalars.
    metrics = sorted(series, key=lambda m: ("score" not in m, m))[:CURVE_PANELS]
    cols = min(3, len(metrics))
    rows = math.ceil(len(metrics) / cols)
    fig = _figure(4.2 * cols, 3.0 * rows)
    for k, metric in enumerate(metrics):
        ax = fig.add_subplot(rows, cols, k + 1)
        # The longest-running lines first; a panel shows at most CURVES_PER_PANEL.
        lines = sorted(series[metric].items(), key=lambda kv: (-len(kv[1][0]), kv[0]))
        for head, (xs, ys) in lines[:CURVES_PER_PANEL]:
            ax.plot(xs, ys, lw=1.2, label=head)
        ax.set_title(metric, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    fig.tight_layout()
    return _png(fig)


# -- pages -------------------------------------------------------------------------------


def _fmt(x: float | None, digits: int = 0) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:.{digits}f}"


def _ratings_rows(status: dict[str, Any]) -> list[list[str]]:
    out = []
    for row in status["agents"]:
        lo, hi = row["elo_ci95"]
        out.append([row["name"], row["role"], _fmt(row["elo"]), f"[{_fmt(lo)}, {_fmt(hi)}]",
                    str(row["games"]), _fmt(row.get("mu"), 2), _fmt(row.get("sigma"), 2),
                    row["parent"] or "", row["spec"]])
    return out


_HEAD = ["agent", "role", "Elo", "95% interval", "games", "openskill μ", "σ", "parent", "spec"]

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; font-size: 0.85em; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f0f0f0; } td:first-child, td:nth-child(2), td:last-child { text-align: left; }
td:last-child { font-family: monospace; max-width: 28em; overflow-wrap: anywhere; }
img { max-width: 100%; } .note { color: #666; font-size: 0.9em; }
"""


def _html_table(head: list[str], rows: list[list[str]]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows
    )
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _md_table(head: list[str], rows: list[list[str]]) -> str:
    def esc(c: str) -> str:
        return c.replace("|", "\\|")

    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _figure_html(title: str, png: str | None, missing: str) -> str:
    if png is None:
        return f"<h2>{html.escape(title)}</h2><p class='note'>{html.escape(missing)}</p>"
    return (f"<h2>{html.escape(title)}</h2>"
            f"<img alt='{html.escape(title)}' src='data:image/png;base64,{png}'>")


def write_report(store: LeagueStore, out_dir: str | Path | None = None) -> tuple[Path, Path]:
    """Write ``report.html`` (self-contained, figures embedded) and ``report.md``.

    Args:
        store: the league (read-only is enough; a running league is fine).
        out_dir: where to write them (an existing directory); the league directory
            when ``None``.

    Returns:
        the paths of the HTML and Markdown reports.

    Raises:
        TlmError: ``out_dir`` is not an existing directory.
    """
    out = Path(out_dir) if out_dir is not None else store.directory
    if not out.is_dir():
        raise TlmError(f"report directory {out} does not exist")
    agents = store.agents()
    log = store.matches()
    status = league_status(store, with_openskill=True)
    by_elo = [row["name"] for row in status["agents"]]
    names, score, games = payoff_matrix(log, names=by_elo)
    scalars = store.scalars("learner/")

    figures = [
        ("Ratings over time", _history_figure(agents, log), "no matches yet"),
        ("Snapshots by learner", _lineage_figure(agents, status), "no snapshots yet"),
        ("Payoff matrix", _payoff_figure(names, score, games), "no matches yet"),
        ("Learner curves", _curves_figure(scalars), "no learner scalars recorded yet"),
    ]
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())
    summary = (f"game <b>{html.escape(status['game'])}</b> · {status['matches']} matches · "
               f"{status['games']} games · {len(agents)} agents · last round "
               f"{status['round']} · Elo anchored at <b>{html.escape(str(status['anchor']))}"
               f"</b> = 0")
    method = ("Elo: Bradley–Terry maximum likelihood over the whole match log (draws count "
              "half), 95% Wald intervals from the observed information, relative to the "
              "anchor; a weak N(0, 1000²) prior keeps unbeaten or unconnected agents finite. "
              "openskill: Plackett–Luce, one update per game in log order.")
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>league report: {html.escape(str(store.directory))}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>League {html.escape(store.directory.name)}</h1>",
        f"<p>{summary}</p><p class='note'>{html.escape(str(store.directory))} · {when}</p>",
        "<h2>Ratings</h2>", _html_table(_HEAD, _ratings_rows(status)),
        f"<p class='note'>{html.escape(method)}</p>",
        *(_figure_html(t, png, miss) for t, png, miss in figures),
        "</body></html>",
    ]
    html_path = write_bytes_atomic(out / "report.html", "\n".join(parts).encode("utf-8"))

    md = [
        f"# League {store.directory.name}",
        "",
        f"game **{status['game']}** · {status['matches']} matches · {status['games']} games · "
        f"{len(agents)} agents · last round {status['round']} · Elo anchored at "
        f"**{status['anchor']}** = 0",
        "",
        "## Ratings",
        "",
        _md_table(_HEAD, [[*r[:-1], f"`{r[-1]}`"] for r in _ratings_rows(status)]),
        "",
        method,
        "",
        "## Payoff (row's mean score against column; games in brackets)",
        "",
    ]
    if names and (games > 0).any():
        md.append(_md_table(["", *names], [
            [n, *(f"{score[i, j]:.2f} ({games[i, j]})" if games[i, j] else "–"
                  for j in range(len(names)))]
            for i, n in enumerate(names)
        ]))
    else:
        md.append("no matches yet")
    md += ["", "Figures (ratings over time, payoff heatmap, learner curves): report.html", ""]
    md_path = write_bytes_atomic(out / "report.md", "\n".join(md).encode("utf-8"))
    return html_path, md_path
