"""Benchmark: how many teacher games a fresh student needs, against RL from scratch.

Tic-tac-toe: teacher games (and labelled positions) until a fresh MLP plays perfectly
(zero exhaustive losses in both seats) by DAgger and by offline distillation from the
perfect player, and self-play games until MaskablePPO with the same hidden sizes gets
there from scratch (and kickstarted), capped at 50x the DAgger budget; the ratios.

Connect four: the preset (a fresh student taught by DAgger from a mix of games), then
student and teacher side by side: size, labels, wall time and where it went,
optimal-move and blunder rates on the 400 solved positions (never trained on), scores
against the standard panel with one Elo, and seconds per position at batch 1 and 1,024.

Run: ``python scripts/bench_distill.py [--seeds 3] [--c4-games N] [--c4-teacher SPEC]
[--panel-games 400] [--teacher-panel-games 100] [--c4-run DIR] [--skip-c4] [--skip-ttt]
[--json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from arena import RandomAgent, make_agent
from arena.panel import evaluate_panel
from arena.positions import evaluate_positions, load_positions
from distill import distill, make_config
from distill.baselines import selfplay_games_to_perfect
from distill.presets import CONNECT_FOUR_DAGGER, SOLVED_POSITIONS, TICTACTOE_DAGGER
from students import load_student, param_count
from teachers import TeacherLabeller, collect_positions

RL_CAP_FACTOR = 50


def tictactoe_arms(seed: int, tmp: Path) -> dict[str, Any]:
    """Games to perfect play for each arm, one seed."""
    arms: dict[str, Any] = {}
    for method, budget in (("dagger", TICTACTOE_DAGGER["budget_games"]), ("offline", 5000)):
        cfg = make_config(**{**TICTACTOE_DAGGER, "method": method, "budget_games": budget,
                             "seed": seed, "out": tmp / f"ttt-{method}-{seed}",
                             "holdout_games": 0, "eval_games": 100})
        start = time.perf_counter()
        report = distill(cfg)
        arms[method] = {
            "games_to_perfect": report["perfect_at_games"],
            "positions": report["positions"],
            "wall_s": time.perf_counter() - start,
        }
    cap = RL_CAP_FACTOR * TICTACTOE_DAGGER["budget_games"]
    for name, teacher in (("rl_from_scratch", None), ("kickstart", "perfect")):
        r = selfplay_games_to_perfect(TICTACTOE_DAGGER["student"], seed, max_games=cap,
                                      teacher=teacher)
        arms[name] = {"games_to_perfect": r["games_to_perfect"], "games_played": r["games"],
                      "steps": r["steps"], "wall_s": r["wall_s"],
                      "final_exhaustive_losses": r["curve"][-1]["exhaustive_losses"]
                      if r["curve"] else None}
    return arms


def per_move_seconds(agent: Any, obs: np.ndarray, mask: np.ndarray, batch: int) -> float:
    """Wall seconds per position when ``agent`` is asked ``batch`` positions at a time."""
    rng = np.random.default_rng(0)
    n = (len(obs) // batch) * batch
    agent.act(obs[:batch], mask[:batch], rng)  # warm-up: first calls allocate and compile
    start = time.perf_counter()
    for i in range(0, n, batch):
        agent.act(obs[i : i + batch], mask[i : i + batch], rng)
    return (time.perf_counter() - start) / n


def strength(agent: Any, solved: Any, panel_games: int, seed: int) -> dict[str, Any]:
    """Solved-position rates and the standard panel (scores, Elo) of one agent."""
    rates = evaluate_positions(agent, solved, np.random.default_rng(seed))
    panel = evaluate_panel(agent, "connect_four", panel_games, seed=seed)
    return {
        "solved_optimal": rates["optimal"]["rate"],
        "solved_optimal_ci95": rates["optimal"]["ci95"],
        "solved_blunders": rates["blunders"]["rate"],
        "solved_blunders_ci95": rates["blunders"]["ci95"],
        "panel_scores": panel.scores(),
        "panel_losses": {r.opponent: r.losses for r in panel.rows if r.seat == "both"},
        "elo": [panel.elo.elo, panel.elo.lo, panel.elo.hi],
    }


def connect_four(seed: int, overrides: dict[str, Any], panel_games: int,
                 teacher_panel_games: int, tmp: Path, run: Path | None = None) -> dict[str, Any]:
    """The connect-four preset distilled (or the finished run at ``run``), then student
    and teacher measured side by side: solved positions, the standard panel, and speed
    per position."""
    if run is None:
        run = tmp / "c4-student"
        cfg = make_config(**{**CONNECT_FOUR_DAGGER, "seed": seed, "out": run, **overrides})
        distill(cfg)
    report = json.loads((run / "report.json").read_text())
    teacher_spec, student_spec = report["teacher"], report["student"]
    student_agent = load_student(run / "student")
    teacher = make_agent(teacher_spec, "connect_four")
    solved = load_positions(SOLVED_POSITIONS, "connect_four")
    measures = {name: strength(agent, solved, games, seed + 7)
                for name, agent, games in (("teacher", teacher, teacher_panel_games),
                                           ("student", student_agent, panel_games))}
    # Positions to time on: fresh games of random play with random openings, so neither
    # player meets a position it has just seen.
    positions = collect_positions(
        "connect_four", TeacherLabeller(RandomAgent()), 120,
        seed=seed + 11)
    obs, mask = positions.obs[:2048], positions.mask[:2048]
    # The same positions for both players, timed in turn three times; the fastest of
    # the three is kept, so a moment of contention on a shared machine counts less.
    speed: dict[str, float] = {}
    for _ in range(3):
        for name, agent in (("teacher", teacher), ("student", student_agent)):
            for batch, n in ((1, 256), (1024, 2048)):
                key = f"{name}_s_per_position_batch{batch}"
                t = per_move_seconds(agent, obs[:n], mask[:n], batch)
                speed[key] = min(speed.get(key, t), t)
    return {
        "teacher": teacher_spec,
        "student": student_spec,
        "student_params": param_count(student_agent.net),
        "teacher_games": report["teacher_games"],
        "labels": report["positions"],
        "positions_reached": report["positions_reached"],
        "distill_s": report["wall_s"],
        "time": report["time"],
        "measures": measures,
        "speed": speed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=1, help="tic-tac-toe seeds per arm")
    parser.add_argument("--c4-games", type=int, default=None,
                        help="connect-four teacher-game budget (default: the preset's)")
    parser.add_argument("--c4-teacher", default=None,
                        help="connect-four teacher (default: the preset's)")
    parser.add_argument("--panel-games", type=int, default=400,
                        help="student's games against each panel member (default 400)")
    parser.add_argument("--teacher-panel-games", type=int, default=100,
                        help="teacher's games against each panel member (default 100)")
    parser.add_argument("--c4-run", type=Path, default=None,
                        help="measure this finished `tlm distill` run instead of distilling")
    parser.add_argument("--skip-c4", action="store_true", help="tic-tac-toe only")
    parser.add_argument("--skip-ttt", action="store_true", help="connect four only")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    console = Console(width=130)
    out: dict[str, Any] = {"tictactoe": {}, "connect_four": None}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        runs = [] if args.skip_ttt else [tictactoe_arms(seed, tmp) for seed in range(args.seeds)]
        for arm in runs[0] if runs else []:
            games = [r[arm]["games_to_perfect"] for r in runs]
            out["tictactoe"][arm] = {"per_seed": [r[arm] for r in runs], "games_to_perfect": games}
        if not args.skip_c4:
            overrides: dict[str, Any] = {}
            if args.c4_games is not None:
                overrides["budget_games"] = args.c4_games
            if args.c4_teacher is not None:
                overrides["teacher"] = args.c4_teacher
            out["connect_four"] = connect_four(0, overrides, args.panel_games,
                                               args.teacher_panel_games, tmp, args.c4_run)
    if args.json:
        print(json.dumps(out, indent=2))
        return
    if out["tictactoe"]:
        print_tictactoe(console, out["tictactoe"], args.seeds)
    c4 = out["connect_four"]
    if c4 is not None:
        print_connect_four(console, c4)


def print_tictactoe(console: Console, results: dict[str, Any], seeds: int) -> None:
    """The tic-tac-toe table: games to perfect play per arm."""
    cap = RL_CAP_FACTOR * TICTACTOE_DAGGER["budget_games"]
    dagger = results["dagger"]["games_to_perfect"]
    dagger_median = statistics.median(g for g in dagger if g is not None) if any(
        g is not None for g in dagger) else None
    table = Table(title=f"tic-tac-toe: games until a fresh {TICTACTOE_DAGGER['student']} "
                        f"never loses ({seeds} seed(s))")
    for col in ("arm", "games to perfect play", "positions", "wall s", "x DAgger games"):
        table.add_column(col, justify="right")
    for arm, res in results.items():
        per_seed = res["per_seed"]
        games = res["games_to_perfect"]
        shown = ", ".join(str(g) if g is not None else f">{cap} (not reached)" for g in games)
        positions = ", ".join(str(r.get("positions", "-")) for r in per_seed)
        wall = ", ".join(f"{r['wall_s']:.1f}" for r in per_seed)
        if dagger_median and all(g is not None for g in games):
            ratio = f"{statistics.median(games) / dagger_median:.1f}"
        elif dagger_median:
            ratio = f">{cap / dagger_median:.0f}"
        else:
            ratio = "-"
        table.add_row(arm, shown, positions, wall, ratio)
    console.print(table)


def print_connect_four(console: Console, c4: dict[str, Any]) -> None:
    """The connect-four table: one row per measure, teacher and student side by side."""
    t = Table(title=f"connect four: {c4['student']} taught by {c4['teacher']} "
                    f"({c4['teacher_games']} games, {c4['labels']} labelled positions, "
                    f"{c4['distill_s']:.0f} s: " + ", ".join(
                        f"{k.removesuffix('_s')} {v:.0f} s" for k, v in c4["time"].items())
                    + ")")
    t.add_column("measure")
    t.add_column(f"teacher {c4['teacher']}", justify="right")
    t.add_column(f"student {c4['student']}", justify="right")
    m, sp = c4["measures"], c4["speed"]
    both = ("teacher", "student")
    t.add_row("parameters", "search", f"{c4['student_params']:,}")
    for key, label in (("solved_optimal", "optimal moves (400 solved)"),
                       ("solved_blunders", "blunders (400 solved)")):
        t.add_row(label, *(f"{m[n][key]:.3f} [{m[n][key + '_ci95'][0]:.3f}, "
                           f"{m[n][key + '_ci95'][1]:.3f}]" for n in both))
    for member in m["student"]["panel_scores"]:
        t.add_row(f"vs {member}", *(f"{m[n]['panel_scores'][member]:.3f} "
                                    f"({m[n]['panel_losses'][member]} lost)" for n in both))
    t.add_row("panel Elo [95%]", *(f"{m[n]['elo'][0]:.0f} [{m[n]['elo'][1]:.0f}, "
                                   f"{m[n]['elo'][2]:.0f}]" for n in both))
    for batch in (1, 1024):
        t.add_row(f"s / position, batch {batch}",
                  *(f"{sp[f'{n}_s_per_position_batch{batch}']:.2e}" for n in both))
    console.print(t)
    console.print(
        "student speed-up per position over its teacher: "
        f"{sp['teacher_s_per_position_batch1'] / sp['student_s_per_position_batch1']:.1f}x "
        "(batch 1), "
        f"{sp['teacher_s_per_position_batch1024'] / sp['student_s_per_position_batch1024']:.1f}x"
        " (batch 1024)"
    )


if __name__ == "__main__":
    main()
