"""Benchmark: SB3 MaskablePPO against RLlib PPO, self-play from scratch, equal wall time.

For each game, both learners train from scratch by self-play (themselves, their past
snapshots and a little ``random``), one after the other in this process, each for the
same wall-clock budget of training in the one self-play loop of ``tlm teach``
(building the learner, for RLlib a local Ray and the algorithm, is timed apart).
Then: learner moves per second of training, and the greedy final policy's score (win
1, draw 0.5, seats alternating, 95% Wilson interval) against ``random``, ``heuristic``
and, on tic-tac-toe, ``perfect``. Both use one torch thread, 64x64 hidden layers, about
1,024 learner moves per round and update, 8 epochs, minibatches of 256.

Run: ``python scripts/bench_learners.py [--seconds 120] [--games tictactoe,connect_four]
[--eval-games 200] [--seed 0] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from arena import Agent, evaluate, get_game, make_agent
from teachers.selfplay import SelfPlayConfig, run_selfplay, teach_plan

OPPONENTS = {"tictactoe": ["random", "heuristic", "perfect"],
             "connect_four": ["random", "heuristic"]}
ALGOS = {"sb3_maskable_ppo": "maskable_ppo", "rllib_ppo": "rllib_ppo"}
"""The arms: learner -> its ``tlm teach --algo``."""
UNLIMITED_STEPS = 10**9
SNAPSHOT_EVERY = 10_000
"""Learner moves between the snapshots both learners play against (as a 200k-move run)."""


def _scores(game: str, agent: Agent, n_games: int, seed: int) -> dict[str, Any]:
    opponents = [make_agent(spec, game) for spec in OPPONENTS[game]]
    rows = evaluate(game, agent, opponents, n_games, seed=seed)
    return {r.opponent: {"score": r.score, "ci95": list(r.ci95)}
            for r in rows if r.seat == "both"}


def run_arm(algo: str, game: str, seconds: float, seed: int, eval_games: int,
            tmp: Path) -> dict[str, Any]:
    """``tlm teach --algo ALGO``'s learner in the self-play loop for ``seconds`` of
    training (its start-up, building the learner, timed apart)."""
    start = time.perf_counter()
    g = get_game(game)
    out = tmp / f"{algo}-{game}"
    config = SelfPlayConfig(steps=UNLIMITED_STEPS, seed=seed, snapshot_every=SNAPSHOT_EVERY,
                            eval_games=0, wall_limit_s=seconds)
    summary = run_selfplay(teach_plan(algo, g, seed), g, out, config)
    wall = time.perf_counter() - start
    train_s = summary["train_seconds"]
    kind, _, path = summary["policy"].partition(":")
    agent = make_agent(f"{kind}:{out / path}", g)
    return {
        "steps": summary["steps"], "train_s": train_s,
        "startup_s": wall - summary["wall_seconds"],
        "steps_per_s": summary["steps"] / train_s, "wall_s": wall,
        "scores": _scores(game, agent, eval_games, seed),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0,
                        help="Training wall time of each learner per game.")
    parser.add_argument("--games", default="tictactoe,connect_four",
                        help="Comma-separated games (tictactoe, connect_four).")
    parser.add_argument("--eval-games", type=int, default=200,
                        help="Evaluation games per opponent.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="Print JSON instead of tables.")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    games = [g.strip() for g in args.games.split(",") if g.strip()]
    for g in games:
        if g not in OPPONENTS:
            parser.error(f"unknown game {g!r} (use {', '.join(OPPONENTS)})")
        get_game(g)
    results: dict[str, Any] = {"seconds": args.seconds, "eval_games": args.eval_games,
                               "seed": args.seed, "cpus": os.cpu_count(), "games": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for g in games:
            results["games"][g] = {
                name: run_arm(algo, g, args.seconds, args.seed, args.eval_games, Path(tmp))
                for name, algo in ALGOS.items()
            }
    if args.json:
        print(json.dumps(results, indent=2))
        return
    console = Console(width=160)
    for g, arms in results["games"].items():
        table = Table(title=f"{g}: {args.seconds:.0f} s of self-play training from scratch, "
                            f"seed {args.seed}, {args.eval_games} games per opponent")
        table.add_column("learner")
        table.add_column("learner moves")
        table.add_column("moves/s")
        table.add_column("start-up s")
        for opp in OPPONENTS[g]:
            table.add_column(f"vs {opp}")
        for name, arm in arms.items():
            table.add_row(
                name, f"{arm['steps']:,}", f"{arm['steps_per_s']:,.0f}",
                f"{arm['startup_s']:.1f}",
                *(f"{arm['scores'][o]['score']:.3f} [{arm['scores'][o]['ci95'][0]:.2f}, "
                  f"{arm['scores'][o]['ci95'][1]:.2f}]" for o in OPPONENTS[g]),
            )
        console.print(table)
        ratio = arms["rllib_ppo"]["steps_per_s"] / arms["sb3_maskable_ppo"]["steps_per_s"]
        console.print(f"RLlib PPO trains at {ratio:.2f}x SB3 MaskablePPO's moves per second")


if __name__ == "__main__":
    main()
