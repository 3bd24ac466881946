"""Labels (and wall time) a teacher spends to reach a target, for every fixed teaching
strategy and for the adaptive (EXP3) teacher, over several seeds: median and range.

Tic-tac-toe (default): ``perfect`` teaches a fresh ``mlp:128x2`` until it loses no line
against any reply. Connect four (``--game connect_four``): ``alphabeta:4`` teaches a
fresh ``res:32x4`` until its optimal-move rate on the solved positions reaches 0.80.

Usage: python scripts/bench_teaching.py --seeds 5
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from arena.positions import load_positions
from distill.curricula import ADAPTIVE, standard_strategies, teach

SOLVED = "connect_four_solved"  # shipped with tlm (arena.positions.positions_path)

SETTINGS: dict[str, dict[str, Any]] = {
    "tictactoe": {"teacher": "perfect", "student": "mlp:128x2", "target": None,
                  "games_per_round": 25, "steps_per_round": 150, "max_rounds": 30,
                  "label_budget": 5000},
    "connect_four": {"teacher": "alphabeta:4", "student": "res:32x4", "target": 0.80,
                     "games_per_round": 100, "steps_per_round": 300, "max_rounds": 60,
                     "label_budget": 200_000},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--game", default="tictactoe", choices=sorted(SETTINGS))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None, help="also write the runs here")
    args = parser.parse_args()
    s = SETTINGS[args.game]
    positions = load_positions(SOLVED, args.game) if args.game == "connect_four" else None
    arms = [st.name for st in standard_strategies(args.game)] + [ADAPTIVE]
    print(f"{args.game}: {s['teacher']} -> fresh {s['student']}, {s['games_per_round']} "
          f"games a round, at most {s['max_rounds']} rounds; seeds 0-{args.seeds - 1}")
    print(f"{'strategy':>10}  {'reached':>7}  {'median labels':>13}  {'range':>13}  "
          f"{'median wall s':>13}  labels per seed")
    runs: dict[str, list[dict[str, Any]]] = {}
    medians: dict[str, float] = {}
    for arm in arms:
        runs[arm] = []
        for seed in range(args.seeds):
            r = teach(args.game, s["teacher"], s["student"], arm, seed=seed,
                      label_budget=s["label_budget"], max_rounds=s["max_rounds"],
                      games_per_round=s["games_per_round"],
                      steps_per_round=s["steps_per_round"], positions=positions,
                      target=s["target"])
            runs[arm].append(r)
        labels = [r["labels"] for r in runs[arm]]
        # A seed that never reached the target counts as infinitely many labels.
        as_num = np.array([np.inf if x is None else x for x in labels], dtype=float)
        med = float(np.median(as_num))
        medians[arm] = med
        wall = float(np.median([float(r["wall_s"]) for r in runs[arm]]))
        reached = sum(x is not None for x in labels)
        span = (f"{int(as_num.min())}-{'inf' if np.isinf(as_num.max()) else int(as_num.max())}"
                if reached else "-")
        print(f"{arm:>10}  {reached:>3}/{args.seeds:<3}  "
              f"{'not reached' if np.isinf(med) else int(med):>13}  {span:>13}  "
              f"{wall:13.1f}  {labels}", flush=True)
    fixed = {a: m for a, m in medians.items() if a != ADAPTIVE}
    best = min(fixed.values())
    median_fixed = float(np.median(list(fixed.values())))
    ada = medians[ADAPTIVE]
    print(f"\nadaptive / best fixed: {ada / best:.2f} (target <= 1); adaptive / median "
          f"fixed: {ada / median_fixed:.2f} (target <= 0.5)")
    if args.json is not None:
        args.json.write_text(json.dumps({"medians": medians, "runs": {
            a: [{k: v for k, v in r.items() if k not in ("curve", "net")} | {"choices": [
                c["strategy"] for c in r["curve"]]} for r in rs]
            for a, rs in runs.items()}}, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
