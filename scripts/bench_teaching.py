"""Labels (and wall time) a teacher spends to reach a target, for every fixed teaching
strategy and for the adaptive (EXP3) teacher, over several seeds: median and range.

Tic-tac-toe (default): ``perfect`` teaches a fresh ``mlp:128x2`` until it loses no line
against any reply. Connect four (``--game connect_four``): ``alphabeta:4`` teaches a
fresh ``res:32x4`` until its optimal-move rate on the solved positions reaches 0.80.

Every run is ``tlm distill --method adaptive`` (the adaptive preset) with these
settings: one arm (``--arms NAME``) for a fixed strategy, all of them for the adaptive
teacher.

Usage: python scripts/bench_teaching.py --seeds 5
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from arena import get_game
from distill import distill
from distill.presets import SOLVED_POSITIONS, config_with_preset
from distill.strategies import standard_arms

ADAPTIVE = "adaptive"

SETTINGS: dict[str, dict[str, Any]] = {
    "tictactoe": {"teacher": "perfect", "student": "mlp:128x2", "stop_when_perfect": True,
                  "games_per_round": 25, "steps_per_round": 150, "budget_games": 30 * 25,
                  "label_budget": 5000},
    "connect_four": {"teacher": "alphabeta:4", "student": "res:32x4", "target": 0.80,
                     "games_per_round": 100, "steps_per_round": 300,
                     "budget_games": 60 * 100, "label_budget": 200_000,
                     "positions": SOLVED_POSITIONS},
}


def teach(game: str, arm: str, seed: int, scratch: Path) -> dict[str, Any]:
    """One run: its report, with the strategy of every round."""
    out = scratch / f"{arm}-{seed}"
    report = distill(config_with_preset(
        game=game, method="adaptive", seed=seed, out=out,
        arms=None if arm == ADAPTIVE else [arm], **SETTINGS[game]))
    with open(out / "curve.csv") as f:
        report["strategies"] = [row["strategy"] for row in csv.DictReader(f)]
    report["labels"] = report["reached"]["labels"] if report["reached"] else None
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--game", default="tictactoe", choices=sorted(SETTINGS))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None, help="also write the runs here")
    args = parser.parse_args()
    s = SETTINGS[args.game]
    arms = [*standard_arms(get_game(args.game)), ADAPTIVE]
    rounds = s["budget_games"] // s["games_per_round"]
    print(f"{args.game}: {s['teacher']} -> fresh {s['student']}, {s['games_per_round']} "
          f"games a round, at most {rounds} rounds; seeds 0-{args.seeds - 1}")
    print(f"{'strategy':>10}  {'reached':>7}  {'median labels':>13}  {'range':>13}  "
          f"{'median wall s':>13}  labels per seed")
    runs: dict[str, list[dict[str, Any]]] = {}
    medians: dict[str, float] = {}
    scratch = Path(tempfile.mkdtemp(prefix="bench_teaching."))
    for arm in arms:
        runs[arm] = [teach(args.game, arm, seed, scratch) for seed in range(args.seeds)]
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
            a: [{k: v for k, v in r.items() if k not in ("config", "final")} for r in rs]
            for a, rs in runs.items()}}, indent=2, default=str) + "\n")
    print(f"runs kept in {scratch}")


if __name__ == "__main__":
    main()
