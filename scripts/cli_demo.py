"""`tlm demo`: the main jobs end to end on tic-tac-toe."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from arena import TlmError
from scripts.cli_common import (
    console,
    progress_bar,
    seed_option,
)
from scripts.cli_distill import print_distill_report
from scripts.cli_eval import eval_cmd


def demo_cmd(
    out: Annotated[Path, typer.Option(help="Output directory.")] = Path("runs/demo"),
    seed: Annotated[int, seed_option()] = 0,
) -> None:
    """The main jobs end to end on tic-tac-toe: a short self-play league, then perfect
    teacher -> DAgger -> fresh MLP -> eval.

    Example: tlm demo
    """
    from distill import distill, make_config
    from distill.presets import TICTACTOE_DAGGER

    out = _fresh_dir(out)
    _demo_league(_fresh_dir(out.with_name(f"{out.name}-league")), seed)
    console.print(
        "\ntlm demo: the exact tic-tac-toe solver (`perfect`) teaches a freshly initialized "
        "MLP by DAgger: the student plays itself and a random player from random openings, "
        "the teacher labels every position reached, until the student loses no line."
    )
    cfg = make_config(**{**TICTACTOE_DAGGER, "seed": seed, "out": out})
    with progress_bar(cfg.budget_games, "dagger") as bar:
        task = bar.add_task("distill", total=cfg.budget_games)
        report = distill(cfg, progress=lambda row: bar.update(
            task, completed=int(row["teacher_games"])))
    print_distill_report(report, out)
    student = str(out / "student")
    console.print(f"\nfinal evaluation of {student}:")
    eval_cmd(game="tictactoe", agent=student, opponents="random,heuristic,perfect",
             games=1000, seed=seed, as_json=False, out=None, opening_plies=0)


def _demo_league(directory: Path, seed: int) -> None:
    """The demo's first part: a short self-play league, and who ended up where."""
    from teachers.league import DEMO_LEAGUE, LeagueProgress, parse_config, run_league

    console.print("tlm demo: a short self-play league on tic-tac-toe: a MaskablePPO learner "
                  "trains against the league's picks (PFSP over its snapshots and the "
                  "references random, heuristic, perfect); every round is rated.")
    cfg = parse_config({**DEMO_LEAGUE, "seed": seed})

    def round_line(p: LeagueProgress) -> None:
        if p.phase == "done":
            console.print(f"  {p.message}", highlight=False, soft_wrap=True)

    outcome = run_league(cfg, directory, progress=round_line)
    console.print(f"league: {outcome.rounds} rounds in {outcome.timing['total']:.0f} s; Elo "
                  "(anchored at random = 0, 95% interval):")
    for r in sorted(outcome.ratings.values(), key=lambda r: -r.elo):
        if r.games:
            console.print(f"  {r.name:<12} {r.elo:7.0f}  [{r.lo:.0f}, {r.hi:.0f}]  "
                          f"{r.games} games", highlight=False)
    console.print(f"its agents play elsewhere as league:{directory}/NAME; see "
                  f"tlm league status --dir {directory}", soft_wrap=True)


def _fresh_dir(path: Path) -> Path:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        return path
    for i in range(1, 10_000):
        candidate = path.with_name(f"{path.name}-{i}")
        if not candidate.exists():
            return candidate
    raise TlmError(f"no free directory name next to {path}")


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("demo")(demo_cmd)
