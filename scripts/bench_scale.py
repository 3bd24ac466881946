"""Scaling benchmark: matches and game generation in-process and on Ray, side by side.

One run measures, on the same shards and seeds:

* match throughput (games/s) of search and network agents on connect four
  (``alphabeta:4`` and a fresh ``cnn:32x3`` student, each against ``random``) with the
  local runner, Ray with 1 worker and Ray with 2 workers;
* generation throughput (labelled positions/s): ``collect_positions`` with an
  ``alphabeta:3`` teacher, same three runners;
* expert iteration's self-play (games/s): the student-guided search of ``tlm iterate
  --game connect_four`` (a fresh ``res:64x3`` guide, ``--selfplay-sims`` simulations on
  half the moves and a quarter of them on the others) playing itself, 256 games as an
  iteration plays them (the shards ``auto_shard_games`` picks: one here, 128 games a
  shard on Ray; a new evaluation cache each time, as each iteration's new guide has),
  same three runners;
* Ray's overhead against the local runner as the shard size grows, for a cheap match
  (``heuristic`` against ``random``), and the smallest shard size where it falls
  under 5%.

Every runner must give identical counts (checked). Ratios, not absolute figures, are
the result: ``ray1 / local`` (target: within 10% on shards of 512 games or more) and
``ray2 / ray1`` (target: at least 1.7x on a machine with two free cores). Ray's start
and each actor's first build of the agents are excluded (warm-up shards).

    python scripts/bench_scale.py            # a few minutes on two cores
    python scripts/bench_scale.py --quick    # a quarter of the games
    python scripts/bench_scale.py --json
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import ray  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

import students  # noqa: E402
from arena import (  # noqa: E402
    Agent,
    LocalRunner,
    MatchTally,
    RandomAgent,
    RayRunner,
    make_agent,
    play_match_tally,
    start_local_ray,
)
from arena.runners import Runner  # noqa: E402
from teachers import TeacherLabeller, collect_positions  # noqa: E402

GAME = "connect_four"


def _tally_key(t: MatchTally) -> tuple[Any, ...]:
    return (*t.games.tolist(), *t.wins.tolist(), *t.draws.tolist(), *t.losses.tolist(), t.moves)


_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds() -> float:
    """CPU time used so far by this process and every descendant still alive (the local
    Ray's raylet, object store and workers are children of this process).

    Unlike wall time it does not grow when other programs share the cores, so it shows
    what Ray itself costs on a busy machine.
    """
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(entry.name)
        parents[pid] = int(fields[1])
        cpu[pid] = (int(fields[11]) + int(fields[12])) / _TICK
    tree, frontier = {os.getpid()}, {os.getpid()}
    while frontier:
        frontier = {p for p, pp in parents.items() if pp in frontier} - tree
        tree |= frontier
    return sum(cpu.get(p, 0.0) for p in tree)


def _interleaved(
    runners: list[tuple[str, Runner]], repeats: int, fn: Callable[[Runner], Any]
) -> tuple[dict[str, float], dict[str, float], dict[str, Any]]:
    """Best wall time and CPU time of ``fn(runner)`` per runner, the runners taking
    turns each repeat so that a change in the machine's load hits them alike."""
    wall = {label: float("inf") for label, _ in runners}
    cpu = {label: float("inf") for label, _ in runners}
    out: dict[str, Any] = {}
    for _ in range(repeats):
        for label, runner in runners:
            c, t = _cpu_seconds(), time.perf_counter()
            out[label] = fn(runner)
            wall[label] = min(wall[label], time.perf_counter() - t)
            cpu[label] = min(cpu[label], _cpu_seconds() - c)
    return wall, cpu, out


def _ratios(row: dict[str, Any], work: float, unit: str,
            wall: dict[str, float], cpu: dict[str, float]) -> dict[str, Any]:
    for label in wall:
        row[f"{label}_{unit}_per_s"] = work / wall[label]
        row[f"{label}_cpu_s"] = cpu[label]
    row["ray1_vs_local"] = wall["local"] / wall["ray1"]
    row["ray2_vs_ray1"] = wall["ray1"] / wall["ray2"]
    row["ray1_cpu_vs_local"] = cpu["ray1"] / cpu["local"]
    row["ray2_cpu_vs_ray1"] = cpu["ray2"] / cpu["ray1"]
    return row


def bench_matches(
    name: str, agent: Agent, n_games: int, shard_games: int, runners: list[tuple[str, Runner]],
    repeats: int,
) -> dict[str, Any]:
    """Games/s of ``agent`` against random with each runner (identical counts checked)."""
    opponent = RandomAgent()
    for _, runner in runners:  # every actor builds the agents once, outside the timing
        play_match_tally(GAME, agent, opponent, 2 * shard_games * max(runner.workers, 1),
                         seed=99, shard_games=shard_games, runner=runner)
    wall, cpu, tallies = _interleaved(runners, repeats, lambda r: play_match_tally(
        GAME, agent, opponent, n_games, seed=1, shard_games=shard_games, runner=r))
    if len({_tally_key(t) for t in tallies.values()}) != 1:
        raise SystemExit(f"{name}: runners disagree")
    row: dict[str, Any] = {"bench": f"match {name} vs random", "games": n_games,
                           "shard_games": shard_games}
    return _ratios(row, n_games, "games", wall, cpu)


def bench_generation(
    n_games: int, shard_games: int, runners: list[tuple[str, Runner]], repeats: int
) -> dict[str, Any]:
    """Labelled positions/s of alphabeta:3 self-play with each runner."""
    teacher = make_agent("alphabeta:3", GAME)
    labeller = TeacherLabeller(teacher)  # type: ignore[arg-type]
    for _, runner in runners:
        collect_positions(GAME, labeller, 2 * shard_games * max(runner.workers, 1), seed=99,
                          shard_games=shard_games, runner=runner)
    wall, cpu, out = _interleaved(runners, repeats, lambda r: collect_positions(
        GAME, labeller, n_games, seed=1, shard_games=shard_games, runner=r))
    if len({(len(p), float(np.sum(p.probs))) for p in out.values()}) != 1:
        raise SystemExit("generation: runners disagree")
    positions = len(out["local"])
    row: dict[str, Any] = {"bench": "generate alphabeta:3 self-play", "games": n_games,
                           "shard_games": shard_games, "positions": positions}
    return _ratios(row, positions, "positions", wall, cpu)


def bench_self_play(n_games: int, sims: int, runners: list[tuple[str, Runner]],
                    repeats: int) -> dict[str, Any]:
    """Self-play games/s of expert iteration's search with each runner."""
    from teachers.mcts.labeller import SearchLabeller, SelfPlaySettings

    guide = students.StudentAgent(students.build_student("res:64x3", GAME, 0))
    calls = itertools.count(1)

    def labeller() -> SearchLabeller:
        # A new evaluation cache for every call, as every iteration has (its guide is
        # new): a search kept on a worker would replay the same games from its cache.
        # The cache's size names the call; it changes no result.
        settings = SelfPlaySettings(sims=sims, fast_sims=max(sims // 4, 1), full_share=0.5,
                                    cache_entries=(1 << 18) + next(calls))
        return SearchLabeller(GAME, guide, settings)

    for _, runner in runners:  # builds the search (and compiles it) on every worker
        collect_positions(GAME, labeller(), 16 * max(runner.workers, 1), seed=99,
                          runner=runner, shard_games=16)
    wall, cpu, out = _interleaved(runners, repeats, lambda r: collect_positions(
        GAME, labeller(), n_games, seed=1, runner=r))
    if len({(len(p), float(np.sum(p.probs))) for p in out.values()}) != 1:
        raise SystemExit("self-play: runners disagree")
    row: dict[str, Any] = {"bench": f"expert-iteration self-play, {sims} sims",
                           "games": n_games, "shard_games": "auto"}
    return _ratios(row, n_games, "games", wall, cpu)


def bench_overhead(
    r1: RayRunner, n_games: int, sizes: list[int], repeats: int
) -> list[dict[str, Any]]:
    """Ray (1 worker) against the local runner on a cheap match, by shard size."""
    agent, opponent = make_agent("heuristic", GAME), RandomAgent()
    runners: list[tuple[str, Runner]] = [("local", LocalRunner()), ("ray1", r1)]
    rows = []
    for shard_games in sizes:
        play_match_tally(GAME, agent, opponent, 4 * shard_games, seed=99,
                         shard_games=shard_games, runner=r1)
        def play(r: Runner, s: int = shard_games) -> MatchTally:
            return play_match_tally(GAME, agent, opponent, n_games, seed=1, shard_games=s,
                                    runner=r)

        wall, cpu, _ = _interleaved(runners, repeats, play)
        shards = -(-n_games // shard_games)
        rows.append({
            "shard_games": shard_games, "shards": shards,
            "shard_ms_local": 1000 * wall["local"] / shards,
            "overhead": wall["ray1"] / wall["local"] - 1.0,
            "overhead_ms_per_shard": 1000 * (wall["ray1"] - wall["local"]) / shards,
            "cpu_overhead": cpu["ray1"] / cpu["local"] - 1.0,
            "cpu_overhead_ms_per_shard": 1000 * (cpu["ray1"] - cpu["local"]) / shards,
        })
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--games", type=int, default=4096,
                        help="games per match (generation: a quarter of it)")
    parser.add_argument("--quick", action="store_true", help="a quarter of the games")
    parser.add_argument("--shard-games", type=int, default=512, help="games per shard")
    parser.add_argument("--repeats", type=int, default=2, help="timings per figure (best kept)")
    parser.add_argument("--selfplay-sims", type=int, default=200,
                        help="simulations of a full search in the self-play row")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args()
    shard = args.shard_games
    games = max(args.games // 4 if args.quick else args.games, shard)

    start = time.perf_counter()
    # Three logical CPUs: the 1-worker and the 2-worker pools coexist (idle actors cost
    # nothing) so the runners can take turns; only one pool plays at a time.
    start_local_ray(3)
    ray_start_s = time.perf_counter() - start
    try:
        with RayRunner(1) as r1, RayRunner(2) as r2:
            runners: list[tuple[str, Runner]] = [
                ("local", LocalRunner()), ("ray1", r1), ("ray2", r2)]
            student = students.StudentAgent(students.build_student("cnn:32x3", GAME, 0))
            rows = [
                bench_matches("alphabeta:4", make_agent("alphabeta:4", GAME), games, shard,
                              runners, args.repeats),
                bench_matches("cnn:32x3 student", student, games, shard, runners,
                              args.repeats),
                bench_generation(max(games // 4, shard), max(shard // 2, 1), runners,
                                 args.repeats),
                bench_self_play(256, args.selfplay_sims, runners, args.repeats),
            ]
            # CPU time is counted in 10 ms ticks: a few seconds of work per size keep
            # the overhead's resolution near 1%.
            sizes = [16, 64, 256, 512, 1024, 4096]
            overhead = bench_overhead(r1, 4 * games, sizes, args.repeats + 1)
    finally:
        ray.shutdown()
    def crossing(key: str) -> int | None:
        """The smallest shard size from which the overhead stays under 5%."""
        under = [o["shard_games"] for o in overhead if o[key] < 0.05]
        above = [o["shard_games"] for o in overhead if o[key] >= 0.05]
        return min((s for s in under if all(a < s for a in above)), default=None)

    report = {
        "cpus": os.cpu_count(), "load_avg_1m": os.getloadavg()[0], "ray_start_s": ray_start_s,
        "throughput": rows, "overhead": overhead,
        "shard_games_under_5pct_wall": crossing("overhead"),
        "shard_games_under_5pct_cpu": crossing("cpu_overhead"),
    }
    if args.json:
        print(json.dumps(report))
        return
    console = Console(width=140)
    table = Table(title=f"throughput on {GAME} (per second, best of {args.repeats}); "
                        "CPU: all processes, seconds")
    for col in ("bench", "games", "shard", "local", "ray 1", "ray 2", "ray1 / local",
                "ray2 / ray1", "CPU local", "CPU ray 1", "CPU ray 2"):
        table.add_column(col, justify="right")
    for r in rows:
        unit = "games" if "ray1_games_per_s" in r else "positions"
        table.add_row(r["bench"], str(r["games"]), str(r["shard_games"]),
                      f"{r[f'local_{unit}_per_s']:.0f}", f"{r[f'ray1_{unit}_per_s']:.0f}",
                      f"{r[f'ray2_{unit}_per_s']:.0f}", f"{r['ray1_vs_local']:.2f}x",
                      f"{r['ray2_vs_ray1']:.2f}x", f"{r['local_cpu_s']:.2f}",
                      f"{r['ray1_cpu_s']:.2f}", f"{r['ray2_cpu_s']:.2f}")
    console.print(table)
    table = Table(title="Ray (1 worker) overhead against the local runner: heuristic vs random")
    for col in ("shard games", "shards", "local ms/shard", "wall overhead", "wall ms/shard",
                "CPU overhead", "CPU ms/shard"):
        table.add_column(col, justify="right")
    for o in overhead:
        table.add_row(str(o["shard_games"]), str(o["shards"]), f"{o['shard_ms_local']:.1f}",
                      f"{100 * o['overhead']:+.1f}%", f"{o['overhead_ms_per_shard']:+.2f}",
                      f"{100 * o['cpu_overhead']:+.1f}%",
                      f"{o['cpu_overhead_ms_per_shard']:+.2f}")
    console.print(table)
    console.print(
        f"Ray's overhead stays under 5% from {report['shard_games_under_5pct_wall']} games "
        f"a shard in wall time, {report['shard_games_under_5pct_cpu']} in CPU time "
        f"(heuristic vs random); Ray started in {ray_start_s:.1f} s; {os.cpu_count()} CPUs, "
        f"load average {report['load_avg_1m']:.1f} at the end"
    )


if __name__ == "__main__":
    main()
