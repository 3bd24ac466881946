"""Expert iteration on connect four, from a distilled ``alphabeta:4`` and from a blank
student: per iteration, the raw student's (no search) score against ``alphabeta:4``
with 4 random opening plies and its optimal-move rate on the solver-labelled positions,
beside ``alphabeta:4``'s own rate measured in the same run.

Targets (2 hours on a 2-core machine): a score of at least 0.75 against ``alphabeta:4``
and an optimal-move rate above ``alphabeta:4``'s.

After each arm (or, with ``--measure-search RUN...``, for finished runs alone) it
measures the teacher that the iterations learn from: MCTS guided by the start student
and by the best student, at 64, 256 and 800 simulations, on the same positions.

Usage: python scripts/bench_iterate.py --minutes 20 --out runs/bench_iterate
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import arena
from arena.positions import PositionSet, evaluate_positions, load_positions
from distill.iterate import iterate
from distill.iterate_config import CONNECT_FOUR, make_iterate_config
from students import StudentAgent, load_net
from teachers.mcts import MCTS, MCTSAgent, NetworkEvaluator

SOLVED = "connect_four_solved"  # shipped with tlm (arena.positions.positions_path)


def search_strength(run: Path, positions: PositionSet, seed: int) -> None:
    """Optimal-move rates of the raw students of ``run`` and of the search they guide."""
    game = arena.get_game("connect_four")
    students = [("start", run / "iterations" / "0000" / "student"), ("best", run / "student")]
    for label, path in students:
        net = load_net(path, game)
        raw = StudentAgent(net, greedy=True)
        rates = [evaluate_positions(raw, positions, np.random.default_rng(seed))]
        for n in (64, 256, 800):
            search = MCTS(NetworkEvaluator(raw.policy_and_value), n, c_puct=CONNECT_FOUR["c_puct"])
            agent = MCTSAgent(game, search, greedy=True, seed=seed)
            rates.append(evaluate_positions(agent, positions, np.random.default_rng(seed)))
        text = ", ".join(f"{name} {r['optimal']['rate']:.3f}" for name, r in zip(
            ("raw", "64 sims", "256 sims", "800 sims"), rates, strict=True))
        print(f"  {run.name} {label} student, optimal-move rate: {text}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=120.0,
                        help="wall-clock budget of each arm (the start's distillation included)")
    parser.add_argument("--iterations", type=int, default=200, help="iterations at most")
    parser.add_argument("--starts", default="alphabeta:4,none", help="comma-separated arms")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/bench_iterate"))
    parser.add_argument("--measure-search", type=Path, nargs="+", default=None,
                        metavar="RUN", help="only measure the search of finished runs")
    args = parser.parse_args()

    game = arena.get_game("connect_four")
    positions = load_positions(SOLVED, game)
    teacher = arena.make_agent("alphabeta:4", game)
    reference = evaluate_positions(teacher, positions, np.random.default_rng(args.seed))
    ref_rate = reference["optimal"]["rate"]
    print(f"alphabeta:4 on {len(positions)} solved positions: optimal {ref_rate:.3f}, "
          f"blunders {reference['blunders']['rate']:.3f}")
    if args.measure_search is not None:
        for run in args.measure_search:
            search_strength(run, positions, args.seed)
        return

    args.out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, object] = {"alphabeta4_optimal_rate": ref_rate, "arms": {}}
    for start in [s.strip() for s in args.starts.split(",") if s.strip()]:
        name = start.replace(":", "")
        cfg = make_iterate_config(**{
            **CONNECT_FOUR, "start": start, "iterations": args.iterations, "seed": args.seed,
            "out": args.out / name, "positions": SOLVED, "time_limit_s": args.minutes * 60,
        })
        print(f"\n--start {start}: {cfg.student}, {cfg.simulations} simulations, "
              f"{cfg.games_per_iteration} games per iteration, {args.minutes:g} minutes")
        print("iter  accepted  vs alphabeta:4  optimal  blunders    elo   wall s")
        t0 = time.perf_counter()

        def show(row: dict[str, float], t0: float = t0) -> None:
            print(f"{int(row['iteration']):4d}  {int(row['accepted']):8d}  "
                  f"{row['score_vs_alphabeta:4']:14.3f}  {row['optimal_rate']:7.3f}  "
                  f"{row['blunder_rate']:8.3f}  {row['elo']:5.0f}  "
                  f"{time.perf_counter() - t0:7.0f}", flush=True)

        report = iterate(cfg, progress=show)
        best = max(report["elo"].items(), key=lambda kv: kv[1]["elo"])
        final = report["final"]
        print(f"best student (iteration {report['best_iteration']}): "
              f"{final['score_vs_alphabeta:4']:.3f} vs alphabeta:4 (target 0.75), optimal "
              f"{final['optimal_rate']:.3f} vs alphabeta:4's {ref_rate:.3f}; top Elo: {best[0]}")
        search_strength(cfg.out, positions, args.seed)
        summary["arms"][start] = {  # type: ignore[index]
            "iterations": report["iterations"], "wall_s": report["wall_s"],
            "best_iteration": report["best_iteration"], "final": final,
            "latest": report["latest"], "start_row": report["start_row"],
        }
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
