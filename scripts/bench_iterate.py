"""The teaching loop on connect four, measured against its targets.

Unless ``--run`` holds a finished run, runs ``tlm iterate --game connect_four`` (the
preset: the connect-four distillation preset as the start, then expert iteration in
which the student-guided search plays itself; ``--minutes`` of run time, the
distillation included) into it. Then it measures the run's start student (iteration 0,
the distilled one) and its final student (the best gated one), each raw (its most
probable move) and as the search it guides (``puct``, ``--sims`` simulations a move),
with 4 random opening plies and ``--games`` games a figure:

1. the final search against the start search, same simulations (target >= 0.65);
2. the final search, and the start search, against ``alphabeta:10`` (target >= 0.70);
3. the final raw student, and the start one, against ``alphabeta:4`` (target >= 0.70);
4. optimal-move and blunder rates on the 400 solver-labelled positions shipped with
   tlm (``connect_four_solved``; no game of the run starts from them), raw and search
   (target: the final raw student >= 0.90);
5. generation by generation (``--generations`` accepted students, start and final
   included): the raw student and its search (``--gen-sims`` simulations) against
   ``alphabeta:4`` and ``alphabeta:8`` (``--gen-games`` games each), rated together by
   Bradley–Terry Elo with ``alphabeta:4`` at 0; a table here and ``search_elo.png``
   in the run directory.

Everything printed is written to ``bench.json`` in the run directory. Every figure is
for the seed and the machine; the run's wall time is in its ``report.json``.

Usage: python scripts/bench_iterate.py --run runs/c4-exit
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from arena.agents import make_agent
from arena.core import Agent
from arena.evaluation import evaluate
from arena.games import get_game
from arena.positions import evaluate_positions, load_positions
from arena.ratings import MatchRecord, elo_ratings
from distill.curves import Panel, write_curve
from distill.iterate import iterate
from distill.iterate_config import iterate_config_with_preset

GAME = "connect_four"
OPENING_PLIES = 4


def score(agent: Agent, opponent: Agent, games: int, seed: int) -> tuple[float, dict[str, Any]]:
    """The agent's score against the opponent (seats alternating) and the record."""
    rows = evaluate(GAME, agent, [opponent], games, seed=seed, opening_plies=OPENING_PLIES)
    both = next(r for r in rows if r.seat == "both")
    first = next(r for r in rows if r.seat == "first")
    second = next(r for r in rows if r.seat == "second")
    return both.score, {
        "score": both.score, "ci95": list(both.ci95), "games": both.games,
        "wdl": [both.wins, both.draws, both.losses],
        "first": (first.wins, first.draws, first.losses),
        "second": (second.wins, second.draws, second.losses),
    }


def record(key: str, a: str, b: str, seed: int, res: dict[str, Any]) -> MatchRecord:
    return MatchRecord(key=key, round=0, agent_a=a, agent_b=b, seed=seed,
                       games=res["games"], a_first=tuple(res["first"]),
                       a_second=tuple(res["second"]))


def accepted_generations(run: Path, at_most: int) -> list[int]:
    """Up to ``at_most`` accepted iterations, evenly spaced, the start and the best kept."""
    best = int(json.loads((run / "report.json").read_text())["best_iteration"])
    with open(run / "curve.csv") as f:
        accepted = [int(r["iteration"]) for r in csv.DictReader(f) if int(r["accepted"])]
    if len(accepted) <= at_most:
        return accepted
    picks = np.linspace(0, len(accepted) - 1, at_most).round().astype(int)
    return sorted({accepted[i] for i in picks} | {0, best})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, default=Path("runs/bench_iterate"),
                        help="a finished `tlm iterate --game connect_four` run, or where to "
                             "make one")
    parser.add_argument("--minutes", type=float, default=180.0,
                        help="run time of a new run (the start's distillation included)")
    parser.add_argument("--seed", type=int, default=0, help="seed of a new run and of the games")
    parser.add_argument("--sims", type=int, default=400, help="simulations a move, figures 1-4")
    parser.add_argument("--games", type=int, default=400, help="games a figure, figures 1-3")
    parser.add_argument("--skip-start", action="store_true",
                        help="do not measure the start search against alphabeta:10")
    parser.add_argument("--generations", type=int, default=6, help="generations in figure 5")
    parser.add_argument("--gen-sims", type=int, default=100, help="simulations, figure 5")
    parser.add_argument("--gen-games", type=int, default=100, help="games a pair, figure 5")
    args = parser.parse_args()

    run = args.run
    if not (run / "report.json").is_file():
        config = iterate_config_with_preset(game=GAME, seed=args.seed, out=run,
                                            time_limit_s=args.minutes * 60)
        print(f"running {config.out}: tlm iterate --game {GAME}, {args.minutes:g} minutes")
        iterate(config, progress=lambda row: print(
            f"  iteration {int(row['iteration'])}: accepted {int(row['accepted'])}, "
            f"elo {row['elo']:.0f}", flush=True))
    report = json.loads((run / "report.json").read_text())
    game = get_game(GAME)
    best = int(report["best_iteration"])
    start_dir = run / "iterations" / "0000" / "student"
    final_dir = run / "iterations" / f"{best:04d}" / "student"
    print(f"run {run}: {report['iterations']} iterations in {report['wall_s'] / 60:.0f} "
          f"minutes of this process's run time, final = iteration {best}")

    def raw(path: Path) -> Agent:
        return make_agent(str(path), game)

    def search(path: Path, sims: int) -> Agent:
        return make_agent(f"puct:{path},sims={sims}", game)

    out: dict[str, Any] = {"run": str(run), "best_iteration": best, "sims": args.sims,
                           "games": args.games, "opening_plies": OPENING_PLIES}
    seeds = iter(np.random.SeedSequence([args.seed, 17]).generate_state(64).tolist())

    def figure(name: str, a: Agent, b: Agent, games: int, target: float | None) -> None:
        t0 = time.perf_counter()
        s, res = score(a, b, games, int(next(seeds)))
        res["wall_s"] = time.perf_counter() - t0
        out[name] = res
        lo, hi = res["ci95"]
        goal = f" (target >= {target:.2f}: {'met' if s >= target else 'missed'})" if target else ""
        print(f"{name}: {s:.3f} [{lo:.3f}, {hi:.3f}] over {games} games{goal}, "
              f"{res['wall_s']:.0f} s", flush=True)

    ab4, ab10 = make_agent("alphabeta:4", game), make_agent("alphabeta:10", game)
    final_search, start_search = search(final_dir, args.sims), search(start_dir, args.sims)
    figure("final search vs start search", final_search, start_search, args.games, 0.65)
    figure("final search vs alphabeta:10", final_search, ab10, args.games, 0.70)
    if not args.skip_start:
        figure("start search vs alphabeta:10", start_search, ab10, args.games, None)
    figure("final raw vs alphabeta:4", raw(final_dir), ab4, args.games, 0.70)
    figure("start raw vs alphabeta:4", raw(start_dir), ab4, args.games, None)

    positions = load_positions("connect_four_solved", game)
    for label, agent in (("start raw", raw(start_dir)), ("final raw", raw(final_dir)),
                         ("start search", search(start_dir, args.sims)),
                         ("final search", search(final_dir, args.sims))):
        res = evaluate_positions(agent, positions, np.random.default_rng(args.seed))
        rates = {"optimal": res["optimal"]["rate"], "blunders": res["blunders"]["rate"]}
        out[f"{label} on solved positions"] = rates
        goal = " (target >= 0.90)" if label == "final raw" else ""
        print(f"{label} on {len(positions)} solved positions: optimal {rates['optimal']:.3f}"
              f"{goal}, blunders {rates['blunders']:.3f}", flush=True)

    generations = accepted_generations(run, args.generations)
    records: list[MatchRecord] = []
    panel = {"alphabeta:4": ab4, "alphabeta:8": make_agent("alphabeta:8", game)}
    _, res = score(ab4, panel["alphabeta:8"], args.gen_games, int(next(seeds)))
    records.append(record("ab4-ab8", "alphabeta:4", "alphabeta:8", 0, res))
    for k in generations:
        path = run / "iterations" / f"{k:04d}" / "student"
        for kind, agent in (("raw", raw(path)), ("search", search(path, args.gen_sims))):
            for name, opponent in panel.items():
                seed = int(
                    np.random.SeedSequence([args.seed, k, len(records)]).generate_state(1)[0])
                _, res = score(agent, opponent, args.gen_games, seed)
                records.append(record(f"{k}-{kind}-{name}", f"{kind}-{k}", name, seed, res))
        print(f"  generation {k} measured", flush=True)
    ratings = elo_ratings(records, anchor="alphabeta:4")
    rows = []
    print(f"generation  raw Elo [95%]        search Elo ({args.gen_sims} sims) [95%]"
          "   (alphabeta:4 = 0, "
          f"alphabeta:8 = {ratings['alphabeta:8'].elo:.0f})")
    for k in generations:
        r, s = ratings[f"raw-{k}"], ratings[f"search-{k}"]
        rows.append({"iteration": k, "elo_raw": r.elo, "elo_search": s.elo,
                     "raw_lo": r.lo, "raw_hi": r.hi, "search_lo": s.lo, "search_hi": s.hi})
        print(f"{k:10d}  {r.elo:6.0f} [{r.lo:5.0f}, {r.hi:5.0f}]   "
              f"{s.elo:6.0f} [{s.lo:5.0f}, {s.hi:5.0f}]")
    out["generations"] = rows
    out["alphabeta:8 elo"] = ratings["alphabeta:8"].elo
    write_curve(run, rows, (Panel(x="iteration", xlabel="iteration",
                                  ylabel="Elo (alphabeta:4 = 0)", keys=("elo_",),
                                  ylim=None, legend="upper left"),),
                name="search_elo")
    (run / "bench.json").write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {run / 'bench.json'} and {run / 'search_elo.png'}")


if __name__ == "__main__":
    main()
