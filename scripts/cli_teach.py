"""`tlm teach`: a self-play teacher trained by reinforcement learning."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

import arena
from arena import TlmError
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

    A run checkpoints as it goes (maskable_ppo every rollout, rllib_ppo every round):
    after a kill or Ctrl-C, the same command goes on from the last checkpoint
    (maskable_ppo to the same final weights). Ctrl-C stops rllib_ppo after its round.

    maskable_ppo: SB3 MaskablePPO, the model in OUT/model.zip (spec sb3:OUT/model.zip).
    rllib_ppo: RLlib PPO (new API stack, local Ray), the policy in OUT/main (spec
    rllib:OUT/main).

    Example: tlm teach --game tictactoe --algo rllib_ppo --steps 200000 --out runs/rl
    """
    if algo not in ("maskable_ppo", "rllib_ppo"):
        raise TlmError(f"unknown teaching algorithm {algo!r} (known: maskable_ppo, rllib_ppo)")
    from contextlib import nullcontext

    from arena.runstate import check_output_dir
    from distill.resume import stop_after_round
    from teachers.resume import start_over

    positive(steps, "--steps")
    check_output_dir(out)
    g = arena.get_game(game)

    # rllib_ppo honours Ctrl-C between rounds, so Ray and RLlib stop cleanly.
    between_rounds = stop_after_round(print_plain) if algo == "rllib_ppo" else nullcontext(None)
    with resume_hint(out), staged_directory(out, resume=True) as tmp, \
            between_rounds as stop:
        if fresh:
            start_over(tmp)

        def resumed(step: int) -> None:
            console.print(f"resuming the interrupted run kept in {tmp} at step {step}")

        if algo == "rllib_ppo":
            from teachers.rllib_learner import train_rllib_selfplay

            train_rllib_selfplay(g, steps, tmp, seed=seed, resume=True, stop=stop,
                                 resumed=resumed)
        else:
            from teachers.sb3_teacher import train_maskable_ppo

            train_maskable_ppo(g, steps, tmp, seed=seed, resume=True, resumed=resumed)
    spec = f"rllib:{out / 'main'}" if algo == "rllib_ppo" else f"sb3:{out / 'model.zip'}"
    summary = json.loads((out / "summary.json").read_text())
    console.print(f"{summary['games']} self-play games, {summary['steps']} steps in "
                  f"{summary['wall_seconds']:.0f} s")
    for row in summary["evaluation"]:
        if row["seat"] == "both":
            console.print(f"  score vs {row['opponent']}: {row['score']:.3f} "
                          f"[{row['ci95'][0]:.3f}, {row['ci95'][1]:.3f}]")
    console.print(f"teacher saved; use it as the agent spec {spec}")


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("teach")(teach_cmd)
