"""The connect-four teacher, old against new, measured side by side in one run.

Positions: every decision of ``--games`` games of ``alphabeta:4`` against itself with
``--opening-plies`` random first plies (what ``tlm generate --opening-plies 4`` plays),
deduplicated, so no search result is ever reused: these are the *diverse* positions
a teacher labels. Labelling a batch is what game generation does: ``policy`` then
``value`` on it.

- the old teacher: the pure-Python search ``alphabeta:D`` used before
  (:class:`arena.players.c4_reference.ReferenceAlphaBeta`), on a sample of the
  positions (it is slow), at depth 4 (and the deeper ``--old-depths``);
- the new one: the compiled search (:class:`arena.players.AlphaBetaConnectFour`) on
  all of them (``--deep-positions`` of them from depth 10 on), at each of
  ``--depths``, and ``alphabeta:8,solve=K`` (exact once at most K cells are empty);
- positions labelled per second of CPU time (one core), the ratio to the old depth
  4, the deepest search that labels within the old depth-4 time per position, and
  each depth's optimal-move and blunder rates on the 400 solved positions (the
  measure of ``tlm eval --positions``).

Run ``python scripts/bench_teacher.py`` (``--json`` for machines). Figures are for the
machine and the moment: only ratios taken in the same run compare.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from arena.agents import make_agent
from arena.core import PolicyAgent
from arena.games import get_game
from arena.players.c4_reference import ReferenceAlphaBeta
from arena.positions import evaluate_positions, load_positions
from teachers.generate import Exploration, TeacherLabeller, collect_positions

SOLVED = "connect_four_solved"  # shipped with tlm (arena.positions.positions_path)


def diverse_positions(games: int, opening_plies: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Distinct positions of ``alphabeta:4`` self-play with random openings."""
    teacher = make_agent("alphabeta:4", "connect_four")
    assert isinstance(teacher, PolicyAgent)
    labeller = TeacherLabeller(teacher, exploration=Exploration(opening_plies=opening_plies))
    pos = collect_positions(get_game("connect_four"), labeller, games, seed)
    _, first = np.unique(pos.obs.reshape(len(pos.obs), -1), axis=0, return_index=True)
    keep = np.sort(first)
    return np.ascontiguousarray(pos.obs[keep]), np.ascontiguousarray(pos.mask[keep])


def label_rate(teacher: PolicyAgent, obs: np.ndarray, mask: np.ndarray,
               batch: int) -> float:
    """Positions labelled (policy and value) per second of this process's CPU time.

    CPU time, not wall time: on a machine shared with other work, the wall clock
    counts their time too, unevenly between runs taken minutes apart.
    """
    start = time.process_time()
    for i in range(0, len(obs), batch):
        o, m = obs[i:i + batch], mask[i:i + batch]
        teacher.policy(o, m)
        teacher.value(o, m)
    return len(obs) / (time.process_time() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--games", type=int, default=200)
    parser.add_argument("--opening-plies", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--old-positions", type=int, default=600,
                        help="positions the old teacher labels at depth 4 (fewer deeper)")
    parser.add_argument("--old-depths", default="4,6",
                        help="depths of the old teacher to time")
    parser.add_argument("--depths", default="4,6,8,9,10")
    parser.add_argument("--deep-positions", type=int, default=1000,
                        help="positions the new teacher labels at depth 10 and deeper")
    parser.add_argument("--solve", type=int, default=18,
                        help="also time alphabeta:8,solve=K (exact with at most K empty cells)")
    parser.add_argument("--batch", type=int, default=256, help="positions per call")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    console = Console(width=120)

    obs, mask = diverse_positions(args.games, args.opening_plies, args.seed)
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(obs))
    obs, mask = obs[order], mask[order]
    solved = load_positions(SOLVED, "connect_four")
    # Warm up the compiled search (loads it from numba's cache or compiles it).
    make_agent("alphabeta:2", "connect_four").policy(obs[:2], mask[:2])  # type: ignore[attr-defined]

    rows: list[dict[str, Any]] = []
    old_depths = [int(d) for d in args.old_depths.split(",") if d]
    for depth in old_depths:
        n = max(20, args.old_positions // 4 ** ((depth - 4) // 2))
        old = ReferenceAlphaBeta(depth)
        rate = label_rate(old, obs[:n], mask[:n], args.batch)
        quality = evaluate_positions(old, solved, np.random.default_rng(0)) if depth <= 4 else None
        rows.append({"teacher": f"old alphabeta:{depth}", "depth": depth, "positions": n,
                     "per_s": rate, "quality": quality})
    old4 = next(r for r in rows if r["depth"] == 4)["per_s"]
    specs = [(int(d), f"alphabeta:{d}") for d in args.depths.split(",") if d]
    if args.solve > 0:
        specs.append((8, f"alphabeta:8,solve={args.solve}"))
    for depth, spec in specs:
        new = make_agent(spec, "connect_four")
        assert isinstance(new, PolicyAgent)
        n = len(obs) if depth < 10 else min(len(obs), args.deep_positions)
        rate = label_rate(new, obs[:n], mask[:n], args.batch)
        quality = evaluate_positions(new, solved, np.random.default_rng(0))
        rows.append({"teacher": f"new {spec}", "depth": depth, "positions": n,
                     "per_s": rate, "quality": quality})
    for r in rows:
        r["vs_old_depth4"] = r["per_s"] / old4
    fits = [r["depth"] for r in rows if r["teacher"].startswith("new") and r["per_s"] >= old4]
    summary = {
        "positions": len(obs), "games": args.games, "opening_plies": args.opening_plies,
        "rows": rows, "deepest_new_within_old_depth4_time": max(fits) if fits else None,
        "speedup_depth4": next(r["vs_old_depth4"] for r in rows
                               if r["teacher"] == "new alphabeta:4"),
    }
    if args.json:
        print(json.dumps(summary))
        return
    table = Table(width=110,
                  title=f"connect-four teacher: {len(obs)} distinct positions of {args.games} "
                        f"games, {args.opening_plies} random opening plies")
    for col in ("teacher", "positions timed", "positions/s", "x old depth 4",
                "optimal (400 solved)", "blunders"):
        table.add_column(col, justify="right")
    for r in rows:
        q = r["quality"]
        table.add_row(
            r["teacher"], f"{r['positions']:,}", f"{r['per_s']:,.0f}",
            f"{r['vs_old_depth4']:.2f}",
            "-" if q is None else f"{q['optimal']['rate']:.3f}",
            "-" if q is None else f"{q['blunders']['rate']:.3f}",
        )
    console.print(table)
    console.print(f"new alphabeta:4 labels {summary['speedup_depth4']:.0f}x the positions per "
                  f"second of the old one; the deepest new search within the old depth-4 time "
                  f"per position: depth {summary['deepest_new_within_old_depth4_time']}")


if __name__ == "__main__":
    main()
