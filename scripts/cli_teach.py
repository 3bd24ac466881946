"""`tlm teach`: a self-play teacher trained by reinforcement learning."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

import arena
from arena.runstate import staged_directory
from scripts.cli_common import (
    MAX_STEPS,
    console,
    int_option,
    positive,
    print_plain,
    resume_hint,
    seed_option,
)


def teach_cmd(
    game: Annotated[str, typer.Option(help="Game name.")],
    out: Annotated[Path, typer.Option(help="New output directory.")],
    algo: Annotated[str, typer.Option(
        help="Self-play algorithm: maskable_ppo (SB3) or rllib_ppo (RLlib PPO).")] = "maskable_ppo",
    steps: Annotated[int, int_option(help="Environment steps.", hi=MAX_STEPS)] = 100_000,
    seed: Annotated[int, seed_option()] = 0,
    fresh: Annotated[bool, typer.Option(
        "--fresh", help="Start over instead of resuming an interrupted run to OUT.")] = False,
) -> None:
    """Train a self-play RL teacher against itself, its snapshots and random.

    Every algorithm trains in the same loop, in rounds (maskable_ppo: one rollout;
    rllib_ppo: one training batch), checkpointing after each: after a kill or Ctrl-C,
    the same command goes on from the last checkpoint, to the same final weights.
    Ctrl-C (or SIGTERM) stops the run after its round; a second Ctrl-C at once.

    The final policy is OUT/main: sb3:OUT/main/model.zip (maskable_ppo: SB3
    MaskablePPO) or rllib:OUT/main (rllib_ppo: RLlib PPO, new API stack, local Ray).

    Example: tlm teach --game tictactoe --algo rllib_ppo --steps 200000 --out runs/rl
    """
    from arena.runstate import StopHandler, check_output_dir, empty_directory
    from teachers.selfplay import SelfPlayConfig, run_selfplay, teach_plan

    positive(steps, "--steps")
    g = arena.get_game(game)
    plan = teach_plan(algo, g, seed)
    check_output_dir(out)
    with resume_hint(out), staged_directory(out, resume=True) as tmp, \
            StopHandler(print_plain) as stop:
        if fresh:
            empty_directory(tmp)

        def resumed(step: int) -> None:
            console.print(f"resuming the interrupted run kept in {tmp} at step {step}")

        summary = run_selfplay(plan, g, tmp, SelfPlayConfig(steps=steps, seed=seed),
                               resume=True, stop=stop, resumed=resumed)
    kind, _, path = summary["policy"].partition(":")
    console.print(f"{summary['games']} self-play games, {summary['steps']} steps in "
                  f"{summary['wall_seconds']:.0f} s")
    for row in summary["evaluation"]:
        if row["seat"] == "both":
            console.print(f"  score vs {row['opponent']}: {row['score']:.3f} "
                          f"[{row['ci95'][0]:.3f}, {row['ci95'][1]:.3f}]")
    console.print(f"teacher saved; use it as the agent spec {kind}:{out / path}")


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("teach")(teach_cmd)
