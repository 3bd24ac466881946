"""Benchmark: do the shipped tic-tac-toe recipes reach perfect play on every seed, with
margin?

``tlm distill --game tictactoe --teacher perfect`` (the preset that ``make demo`` runs)
on seeds 0..N-1, and ``tlm iterate --game tictactoe`` at the README's settings on seeds
0..M-1, each with 1 and with 2 torch threads. Floats differ across thread counts (and
CPUs), so each seed's trajectory does too: a recipe is only as good as its worst seed.

Per thread count: how many seeds end with no lost line against any reply in either seat
(distill: ``final.exhaustive_losses == 0`` in ``report.json``, i.e. the stop rule fired
and was right; iterate: the last trained student, ``latest``), the median and the most
teacher games (iterations) to the first perfect measure, the worst seed, the budget,
the most as a share of the budget, and wall time.

Each thread count runs in a fresh process of its own whose ``OMP_NUM_THREADS`` and
``torch.set_num_threads`` are set before torch does any work; the process reports the
count torch used. The runs take the settings of the commands themselves
(``config_with_preset`` and ``iterate_config_with_preset``, as the CLI builds them).

Run: ``python scripts/bench_recipes.py [--seeds 50] [--iterate-seeds 20] [--threads 1,2]
[--skip-iterate] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

ITERATE_README: dict[str, Any] = {"student": "mlp:64x2", "start": "none", "iterations": 16}
"""The flags of the README's ``tlm iterate --game tictactoe`` command (besides --seed)."""


def _use_threads(threads: int) -> None:
    """Pool initializer: torch's thread count, before any work in this process."""
    import torch

    torch.set_num_threads(threads)


def distill_seed(seed: int) -> dict[str, Any]:
    """``tlm distill --game tictactoe --teacher perfect --seed SEED``, measured."""
    import torch

    from distill import distill
    from distill.presets import config_with_preset

    with tempfile.TemporaryDirectory() as tmp:
        cfg = config_with_preset(game="tictactoe", teacher="perfect", seed=seed,
                                 out=Path(tmp) / "run")
        start = time.perf_counter()
        report = distill(cfg)
        wall = time.perf_counter() - start
    return {
        "seed": seed,
        "perfect": report["final"].get("exhaustive_losses") == 0,
        "first_perfect": report["perfect_at_games"],
        "final_exhaustive_losses": report["final"].get("exhaustive_losses"),
        "final_score_vs_random": report["final"].get("score_vs_random"),
        "spent": report["teacher_games"],
        "budget": cfg.budget_games,
        "wall_s": wall,
        "torch_threads": torch.get_num_threads(),
    }


def iterate_seed(seed: int) -> dict[str, Any]:
    """The README's ``tlm iterate --game tictactoe ... --seed SEED``, measured."""
    import torch

    from distill.iterate import iterate
    from distill.iterate_config import iterate_config_with_preset

    with tempfile.TemporaryDirectory() as tmp:
        cfg = iterate_config_with_preset(game="tictactoe", seed=seed, out=Path(tmp) / "run",
                                         **ITERATE_README)
        start = time.perf_counter()
        report = iterate(cfg)
        wall = time.perf_counter() - start
    return {
        "seed": seed,
        "perfect": report["latest"].get("exhaustive_losses") == 0,
        "first_perfect": report["perfect_at_iteration"],
        "final_exhaustive_losses": report["latest"].get("exhaustive_losses"),
        "gated_exhaustive_losses": report["final"].get("exhaustive_losses"),
        "spent": report["iterations"],
        "budget": cfg.iterations,
        "wall_s": wall,
        "torch_threads": torch.get_num_threads(),
    }


def run_seeds(job: Callable[[int], dict[str, Any]], seeds: int, threads: int,
              console: Console, label: str) -> list[dict[str, Any]]:
    """``job`` on seeds 0..seeds-1, one after another, in a fresh process that uses
    ``threads`` torch threads."""
    env = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                          "OMP_WAIT_POLICY")}
    for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[key] = str(threads)  # read when the child imports torch
    # Idle threads sleep instead of spinning: on a loaded machine spinning threads made
    # two-thread runs 20x slower. The thread count, and so the arithmetic, is unchanged.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        with multiprocessing.get_context("spawn").Pool(
            1, initializer=_use_threads, initargs=(threads,)
        ) as pool:
            rows = []
            for row in pool.imap(job, range(seeds)):
                rows.append(row)
                console.print(f"  {label}, {threads} thread(s), seed {row['seed']}: "
                              f"first perfect at {row['first_perfect']}, final "
                              f"{row['final_exhaustive_losses']:g} lost lines, "
                              f"{row['wall_s']:.1f} s", highlight=False)
    finally:
        for key, value in env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    used = {r["torch_threads"] for r in rows}
    if used != {threads}:
        raise RuntimeError(f"asked for {threads} torch threads, the runs used {used}")
    return rows


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Seeds that reached perfect play, the median and the most it took, the worst seed."""
    reached = [r for r in rows if r["perfect"] and r["first_perfect"] is not None]
    spent = [r["first_perfect"] for r in reached]
    worst = max(reached, key=lambda r: r["first_perfect"]) if reached else None
    budget = rows[0]["budget"] if rows else None
    return {
        "seeds": len(rows),
        "reached": len(reached),
        "missed": [r["seed"] for r in rows if r not in reached],
        "median": statistics.median(spent) if spent else None,
        "max": worst["first_perfect"] if worst else None,
        "worst_seed": worst["seed"] if worst else None,
        "budget": budget,
        "max_share_of_budget": worst["first_perfect"] / budget if worst and budget else None,
        "wall_s": sum(r["wall_s"] for r in rows),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=50,
                        help="tlm distill seeds (default 50; 0 skips tlm distill)")
    parser.add_argument("--iterate-seeds", type=int, default=20,
                        help="tlm iterate seeds (default 20)")
    parser.add_argument("--threads", default="1,2",
                        help="torch thread counts, comma-separated (default 1,2)")
    parser.add_argument("--skip-iterate", action="store_true", help="tlm distill only")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args()
    threads = [int(t) for t in args.threads.split(",") if t.strip()]
    console = Console(width=130, stderr=args.json)
    jobs = [(name, job, seeds) for name, job, seeds in (
        ("distill", distill_seed, args.seeds),
        ("iterate", iterate_seed, 0 if args.skip_iterate else args.iterate_seeds),
    ) if seeds > 0]
    out: dict[str, Any] = {}
    for name, job, seeds in jobs:
        out[name] = {}
        for t in threads:
            rows = run_seeds(job, seeds, t, console, name)
            out[name][str(t)] = {"summary": summary(rows), "per_seed": rows}
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print_tables(console, out)


def print_tables(console: Console, out: dict[str, Any]) -> None:
    """One table per command: a row per thread count."""
    units = {"distill": "games", "iterate": "iterations"}
    commands = {
        "distill": "tlm distill --game tictactoe --teacher perfect (the preset)",
        "iterate": "tlm iterate --game tictactoe " + " ".join(
            f"--{k} {v}" for k, v in ITERATE_README.items()),
    }
    for name, by_threads in out.items():
        table = Table(title=f"{commands[name]}: {units[name]} to perfect play "
                            "(no lost line against any reply, both seats)")
        for col in ("torch threads", "perfect at the end", f"median {units[name]}",
                    f"max {units[name]} (seed)", "budget", "max / budget", "missed seeds",
                    "wall s"):
            table.add_column(col, justify="right")
        for t, res in by_threads.items():
            s = res["summary"]
            table.add_row(
                t, f"{s['reached']}/{s['seeds']}", _show(s["median"]),
                f"{_show(s['max'])} ({s['worst_seed']})" if s["max"] is not None else "-",
                str(s["budget"]),
                f"{s['max_share_of_budget']:.0%}" if s["max_share_of_budget"] else "-",
                ", ".join(map(str, s["missed"])) or "none", f"{s['wall_s']:.0f}",
            )
        console.print(table)
        for t, res in by_threads.items():
            scored = [r for r in res["per_seed"] if r.get("final_score_vs_random") is not None]
            if scored:
                low = min(scored, key=lambda r: r["final_score_vs_random"])
                console.print(f"{t} thread(s): lowest final score against random "
                              f"{low['final_score_vs_random']:.3f} (seed {low['seed']})",
                              highlight=False)


def _show(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


if __name__ == "__main__":
    main()
