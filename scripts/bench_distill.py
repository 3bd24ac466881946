"""Benchmark: how many teacher games a fresh student needs, against RL from scratch.

Tic-tac-toe: teacher games (and labelled positions) until a fresh MLP plays perfectly
(zero exhaustive losses in both seats) by DAgger and by offline distillation from the
perfect player, and self-play games until MaskablePPO with the same hidden sizes gets
there from scratch (and kickstarted), capped at 50x the DAgger budget; the ratios.

Connect four: a student taught by ``alphabeta:4`` with DAgger, its size and speed per
move against the teacher's, and both scores against ``alphabeta:4`` and ``random``.

Run: ``python scripts/bench_distill.py [--seeds 3] [--c4-games N] [--skip-c4] [--json]``.
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

from arena import PolicyAgent, evaluate, make_agent
from distill import distill, make_config
from distill.baselines import selfplay_games_to_perfect
from distill.presets import CONNECT_FOUR_DAGGER, TICTACTOE_DAGGER
from students import load_student, param_count
from teachers import Exploration, TeacherLabeller, collect_positions

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
    start = time.perf_counter()
    for i in range(0, n, batch):
        agent.act(obs[i : i + batch], mask[i : i + batch], rng)
    return (time.perf_counter() - start) / n


def connect_four(seed: int, budget: int | None, tmp: Path) -> dict[str, Any]:
    """DAgger from alphabeta:4 into a fresh CNN; sizes, speeds and scores side by side."""
    settings = {**CONNECT_FOUR_DAGGER, "seed": seed, "out": tmp / "c4-student"}
    if budget is not None:
        settings["budget_games"] = budget
    cfg = make_config(**settings)
    start = time.perf_counter()
    report = distill(cfg)
    train_s = time.perf_counter() - start
    student_agent = load_student(tmp / "c4-student" / "student")
    teacher = make_agent(cfg.teacher, "connect_four")
    assert isinstance(teacher, PolicyAgent)
    opponents = [make_agent(cfg.teacher, "connect_four"), make_agent("random", "connect_four")]
    scores: dict[str, dict[str, float]] = {}
    for name, agent in (("teacher", teacher), ("student", student_agent)):
        rows = evaluate("connect_four", agent, opponents, 200, seed=seed + 7, opening_plies=2)
        scores[name] = {r.opponent: r.score for r in rows if r.seat == "both"}
    # Positions to time on: a fresh teacher game set, so no search result is cached.
    labeller = TeacherLabeller(teacher, exploration=Exploration(opening_plies=2))
    positions = collect_positions("connect_four", labeller, 40, seed=seed + 11)
    obs, mask = positions.obs[:1024], positions.mask[:1024]
    speed = {"teacher_s_per_move": per_move_seconds(
        make_agent(cfg.teacher, "connect_four"), obs[:256], mask[:256], 1)}
    for batch in (1, 256, 1024):
        speed[f"student_s_per_move_batch{batch}"] = per_move_seconds(
            student_agent, obs, mask, batch)
    return {
        "teacher": cfg.teacher,
        "student": cfg.student,
        "student_params": param_count(student_agent.net),
        "teacher_games": report["teacher_games"],
        "positions": report["positions"],
        "distill_s": train_s,
        "scores": scores,
        "speed": speed,
        "keeps_of_teacher_vs_alphabeta4": scores["student"][cfg.teacher]
        / max(scores["teacher"][cfg.teacher], 1e-9),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=1, help="tic-tac-toe seeds per arm")
    parser.add_argument("--c4-games", type=int, default=None,
                        help="connect-four teacher-game budget (default: the preset's)")
    parser.add_argument("--skip-c4", action="store_true", help="tic-tac-toe only")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    torch.set_num_threads(2)
    console = Console(width=130)
    out: dict[str, Any] = {"tictactoe": {}, "connect_four": None}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        runs = [tictactoe_arms(seed, tmp) for seed in range(args.seeds)]
        for arm in runs[0]:
            games = [r[arm]["games_to_perfect"] for r in runs]
            out["tictactoe"][arm] = {"per_seed": [r[arm] for r in runs], "games_to_perfect": games}
        if not args.skip_c4:
            out["connect_four"] = connect_four(0, args.c4_games, tmp)
    if args.json:
        print(json.dumps(out, indent=2))
        return
    cap = RL_CAP_FACTOR * TICTACTOE_DAGGER["budget_games"]
    dagger = out["tictactoe"]["dagger"]["games_to_perfect"]
    dagger_median = statistics.median(g for g in dagger if g is not None) if any(
        g is not None for g in dagger) else None
    table = Table(title=f"tic-tac-toe: games until a fresh {TICTACTOE_DAGGER['student']} "
                        f"never loses ({args.seeds} seed(s))")
    for col in ("arm", "games to perfect play", "positions", "wall s", "x DAgger games"):
        table.add_column(col, justify="right")
    for arm, res in out["tictactoe"].items():
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
    c4 = out["connect_four"]
    if c4 is not None:
        t = Table(title=f"connect four: {c4['student']} taught by {c4['teacher']} with DAgger "
                        f"({c4['teacher_games']} teacher games, {c4['positions']} positions)")
        for col in ("player", "params", "s / move", "vs alphabeta:4", "vs random"):
            t.add_column(col, justify="right")
        sp, sc = c4["speed"], c4["scores"]
        t.add_row(c4["teacher"], "search", f"{sp['teacher_s_per_move']:.2e}",
                  f"{sc['teacher']['alphabeta:4']:.3f}", f"{sc['teacher']['random']:.3f}")
        t.add_row(c4["student"], str(c4["student_params"]),
                  f"{sp['student_s_per_move_batch1']:.2e} (batch 1), "
                  f"{sp['student_s_per_move_batch1024']:.2e} (batch 1024)",
                  f"{sc['student']['alphabeta:4']:.3f}", f"{sc['student']['random']:.3f}")
        console.print(t)
        console.print(
            f"student speed-up per move: "
            f"{sp['teacher_s_per_move'] / sp['student_s_per_move_batch1']:.0f}x (batch 1), "
            f"{sp['teacher_s_per_move'] / sp['student_s_per_move_batch256']:.0f}x (batch 256), "
            f"{sp['teacher_s_per_move'] / sp['student_s_per_move_batch1024']:.0f}x "
            f"(batch 1024); student keeps {100 * c4['keeps_of_teacher_vs_alphabeta4']:.0f}% of "
            f"the teacher's score against alphabeta:4; distillation {c4['distill_s']:.0f} s"
        )


if __name__ == "__main__":
    main()
