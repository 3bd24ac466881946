"""Self-play leagues from scratch, measured in one run.

* tic-tac-toe (``configs/league_tictactoe.yaml``): after every round the main
  learner's policy (greedy, from its round checkpoint) plays ``perfect`` over
  ``--eval-games`` games in both seats, and is checked exhaustively against every
  line ``perfect`` can play; the figure is the league's wall minutes until it loses
  no game of the 200 (target: 15 minutes on a 2-core machine);
* connect four (``configs/league_connect_four.yaml``): the main learner's Elo next to
  ``alphabeta:2`` and ``alphabeta:4`` (the league's own ratings, anchored at random =
  0) and its score against ``heuristic`` over wall time (target: >= 90% within 30
  minutes);
* for each league: its rating-match throughput (games/s over the whole rating phase,
  store writes included) next to ``play_matches`` alone on the same pairs, and the
  share of wall time spent on bookkeeping (store, ratings, matchmaking; target <= 5%).

Evaluation after each round is not counted in the league's wall time. Run
``python scripts/bench_league.py`` (``--ttt-minutes``, ``--c4-minutes``,
``--skip-ttt``, ``--skip-c4`` to shorten it; ``--json`` for machines). Figures are
for the machine and the moment; only ratios taken in the same run compare.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from arena.agents import make_agent
from arena.evaluation import evaluate
from arena.games import get_game
from arena.matches import play_matches
from arena.players.tictactoe import PerfectTicTacToe, exhaustive_losses
from arena.runstate import StopHandler
from teachers.league import (
    LeagueConfig,
    LeagueProgress,
    LeagueStore,
    load_config,
    resolve_spec,
    run_league,
)
from teachers.sb3 import load_sb3_agent

ROOT = Path(__file__).resolve().parents[1]
console = Console()


def _policy(directory: Path, name: str, rounds_done: int, game: str) -> Any:
    path = directory / "learners" / name / f"r{rounds_done:06d}" / "policy" / "model.zip"
    return load_sb3_agent(path, game)


def _without_stop(config: LeagueConfig, seed: int) -> LeagueConfig:
    data = config.model_dump(mode="json")
    data["stop"] = {}
    data["seed"] = seed
    return LeagueConfig.model_validate(data)


def _throughput(directory: Path, game: str, outcome_games: int, rating_s: float) -> dict[str, Any]:
    """The last round's rating pairs played again by ``play_matches`` alone."""
    with LeagueStore.open(directory, readonly=True) as store:
        last = int(store.get_state("round", 0)) - 1
        pairs = store.get_state(f"pairs/{last}") or []
        config = store.config
        agents: dict[str, Any] = {}
        for rec in store.agents():
            if rec.role == "learner":
                agents[rec.name] = _policy(directory, rec.name, last + 1, game)
            elif rec.role == "reference":
                agents[rec.name] = make_agent(rec.spec, game)
            else:
                agents[rec.name] = make_agent(resolve_spec(store, rec.spec), game)
    n = int(config["evaluation"]["games_per_pair"])
    plies = int(config["evaluation"]["opening_plies"])
    games = 0
    start = time.perf_counter()
    for j, (a, b) in enumerate(pairs * 3):
        play_matches(game, agents[a], agents[b], n, seed=j, opening_plies=plies)
        games += n
    alone = games / (time.perf_counter() - start)
    league = outcome_games / rating_s if rating_s > 0 else 0.0
    return {"league_games_per_s": league, "alone_games_per_s": alone,
            "ratio": league / alone if alone else 0.0}


def bench_tictactoe(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    config = _without_stop(load_config(args.ttt_config), args.seed)
    directory = out / "ttt"
    perfect = make_agent("perfect", "tictactoe")
    stop = StopHandler()
    rows: list[dict[str, Any]] = []
    state: dict[str, Any] = {"eval_s": 0.0, "start": time.perf_counter(), "perfect_at": None}

    def league_minutes() -> float:
        return (time.perf_counter() - state["start"] - state["eval_s"]) / 60

    def on_round(p: LeagueProgress) -> None:
        if p.phase != "done":
            return
        minutes = league_minutes()
        t = time.perf_counter()
        agent = _policy(directory, "main", p.round + 1, "tictactoe")
        result = play_matches("tictactoe", agent, perfect, args.eval_games, seed=p.round)
        losses = int((result.outcome < 0).sum())
        exhaustive = exhaustive_losses(agent, None, PerfectTicTacToe())
        row = {"round": p.round, "minutes": minutes, "steps": p.learner_steps.get("main", 0),
               "games": p.games, "losses_vs_perfect": losses,
               "exhaustive_losses_vs_perfect": exhaustive,
               "elo": p.ratings["main"].elo if "main" in p.ratings else None}
        rows.append(row)
        state["eval_s"] += time.perf_counter() - t
        console.print(f"  ttt round {p.round}: {minutes:5.2f} min, {row['steps']} steps, "
                      f"{losses}/{args.eval_games} games lost to perfect, {exhaustive} lines "
                      "lost against every perfect reply", highlight=False)
        if losses == 0 and state["perfect_at"] is None:
            state["perfect_at"] = row
            if not args.keep_going:
                stop.request("no loss to perfect")
        if league_minutes() >= args.ttt_minutes:
            stop.request("time")

    outcome = run_league(config, directory, progress=on_round, stop=stop)
    timing = outcome.timing
    wall = timing["total"] - state["eval_s"]
    return {
        "minutes_to_no_loss": None if state["perfect_at"] is None
        else state["perfect_at"]["minutes"],
        "games_to_no_loss": None if state["perfect_at"] is None else state["perfect_at"]["games"],
        "rounds": rows,
        "bookkeeping_share": timing["bookkeeping"] / wall,
        "train_share": timing["train"] / wall,
        "timing": timing,
        "throughput": _throughput(directory, "tictactoe", outcome.rating_games,
                                  timing["rating_phase"] - timing["load"]),
    }


def bench_connect_four(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    config = _without_stop(load_config(args.c4_config), args.seed)
    directory = out / "c4"
    game = get_game("connect_four")
    heuristic = make_agent("heuristic", game)
    stop = StopHandler()
    rows: list[dict[str, Any]] = []
    state: dict[str, Any] = {"eval_s": 0.0, "start": time.perf_counter()}

    def league_minutes() -> float:
        return (time.perf_counter() - state["start"] - state["eval_s"]) / 60

    def on_round(p: LeagueProgress) -> None:
        if p.phase != "done":
            return
        minutes = league_minutes()
        t = time.perf_counter()
        agent = _policy(directory, "main", p.round + 1, "connect_four")
        score = evaluate(game, agent, [heuristic], args.eval_games, seed=p.round,
                         opening_plies=2)[2].score
        elo = {n: p.ratings[n].elo for n in ("main", "alphabeta:2", "alphabeta:4", "heuristic")
               if n in p.ratings}
        rows.append({"round": p.round, "minutes": minutes,
                     "steps": p.learner_steps.get("main", 0), "games": p.games,
                     "score_vs_heuristic": score, "elo": elo})
        state["eval_s"] += time.perf_counter() - t
        console.print(f"  c4 round {p.round}: {minutes:5.2f} min, "
                      f"{rows[-1]['steps']} steps, score vs heuristic {score:.3f}, Elo "
                      + ", ".join(f"{n} {v:.0f}" for n, v in elo.items()), highlight=False)
        if league_minutes() >= args.c4_minutes:
            stop.request("time")

    outcome = run_league(config, directory, progress=on_round, stop=stop)
    timing = outcome.timing
    wall = timing["total"] - state["eval_s"]
    reached = next((r for r in rows if r["score_vs_heuristic"] >= 0.9), None)
    return {
        "minutes_to_90pct_vs_heuristic": None if reached is None else reached["minutes"],
        "rounds": rows,
        "bookkeeping_share": timing["bookkeeping"] / wall,
        "train_share": timing["train"] / wall,
        "timing": timing,
        "throughput": _throughput(directory, "connect_four", outcome.rating_games,
                                  timing["rating_phase"] - timing["load"]),
    }


def _summary(name: str, r: dict[str, Any]) -> Table:
    table = Table(title=name, title_justify="left")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key in ("minutes_to_no_loss", "games_to_no_loss", "minutes_to_90pct_vs_heuristic"):
        if key in r:
            table.add_row(key.replace("_", " "),
                          "not reached" if r[key] is None else f"{r[key]:.2f}")
    tp = r["throughput"]
    table.add_row("rating games/s in the league", f"{tp['league_games_per_s']:.0f}")
    table.add_row("games/s, play_matches alone", f"{tp['alone_games_per_s']:.0f}")
    table.add_row("league / alone", f"{tp['ratio']:.2f}")
    table.add_row("bookkeeping share of wall time", f"{100 * r['bookkeeping_share']:.2f}%")
    table.add_row("training share of wall time", f"{100 * r['train_share']:.1f}%")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ttt-config", type=Path, default=ROOT / "configs/league_tictactoe.yaml")
    parser.add_argument("--c4-config", type=Path,
                        default=ROOT / "configs/league_connect_four.yaml")
    parser.add_argument("--ttt-minutes", type=float, default=15.0)
    parser.add_argument("--c4-minutes", type=float, default=30.0)
    parser.add_argument("--eval-games", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-ttt", action="store_true")
    parser.add_argument("--skip-c4", action="store_true")
    parser.add_argument("--keep-going", action="store_true",
                        help="Keep the tic-tac-toe league running after its first round "
                        "without a loss (until --ttt-minutes).")
    parser.add_argument("--out", type=Path, default=None,
                        help="Keep the leagues here (default: a temp dir, removed).")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    out = args.out or Path(tempfile.mkdtemp(prefix="bench_league_"))
    results: dict[str, Any] = {"cpus": os.cpu_count()}
    try:
        if not args.skip_ttt:
            console.print(f"tic-tac-toe league, at most {args.ttt_minutes} min")
            results["tictactoe"] = bench_tictactoe(args, out)
        if not args.skip_c4:
            console.print(f"connect-four league, {args.c4_minutes} min")
            results["connect_four"] = bench_connect_four(args, out)
    finally:
        if args.out is None:
            shutil.rmtree(out, ignore_errors=True)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for key, name in (("tictactoe", "tic-tac-toe league"), ("connect_four", "connect-four league")):
        if key in results:
            console.print(_summary(name, results[key]))


if __name__ == "__main__":
    main()
