"""Students that learn inside a match, measured on the held-out families only: the score
by game index (1..K) over series of K = 10 games of the distilled recurrent student, its
two controls (the feedforward student fitted on the same data, and the same recurrent
student with its memory reset every game), the exact teacher, the best response and
``perfect``; G; the rise from game 1 to game K with a 95% interval (paired over
series); losses to ``perfect`` and ``random`` by seat; labels and wall time; and the
targets of the issue, met or not. With ``--rl``, the same figures for the student
trained by recurrent PPO alone. With ``--game connect_four``, the connect-four preset:
the search's best response teaches, and its minimax twin (``alphabeta:4``), played, is
the reference of G in place of ``perfect``.

By default it trains the ``tlm distill --method incontext`` preset (and the RL arm, if
asked) into ``--out`` (a killed run resumes there), then measures the students again
over ``--series`` series per held-out opponent with a fresh seed. ``--from DIR`` takes
a finished run instead.

Usage:
  python scripts/bench_incontext.py --out runs/bench-incontext
  python scripts/bench_incontext.py --from runs/bench-incontext --series 2000
  python scripts/bench_incontext.py --game connect_four --out runs/bench-incontext-c4
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

from arena import get_game
from distill.incontext import distill_incontext_run, population_of, series_teacher
from distill.incontext_measures import (
    Players,
    derived_seed,
    figure_rows,
    final_measures,
    score_rows,
    target_checks,
)
from distill.presets import config_with_preset
from students import load_net, load_recurrent_net


def remeasure(out: Path, report: dict[str, Any], n_series: int, seed: int) -> dict[str, Any]:
    """The final measures of the run in ``out`` again, over ``n_series`` series per
    held-out opponent from ``seed``, with its saved students."""
    g = get_game(report["game"])
    pop = report["population"]
    _, _, held_out = population_of(None, pop["training"], pop["held_out"], g)
    cautious = report.get("labels", "best") == "cautious"
    depth = report.get("config", {}).get("response_depth", 2)
    teachers = [series_teacher(a, cautious, report.get("loss_weight", 0.0),
                               report.get("forced_answers", 0), depth, g.name)
                for a in held_out]
    net = load_recurrent_net(out / "student", g)
    control = load_net(out / "control", g) if (out / "control").is_dir() else None
    k = report["final"]["k"]
    return final_measures(g, Players.of(net, control), held_out, teachers, n_series, k,
                          derived_seed(seed, 6))


def show(title: str, report: dict[str, Any]) -> None:
    final = report["final"]
    k = final["k"]
    print(f"\n{title}")
    print(f"{'score by game':>32}  " + " ".join(f"{j + 1:>6}" for j in range(k)))
    for name, scores in score_rows(final):
        print(f"{name:>32}  " + " ".join(f"{s:6.3f}" for s in scores))
    print()
    for measure, value in figure_rows(report):
        print(f"{measure:>48}  {value}")
    print()
    for name, met in target_checks(final).items():
        print(f"{name:>48}  {met if not isinstance(met, float) else round(met, 3)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--game", default="tictactoe",
                        help="the game whose preset is trained (tictactoe, connect_four)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-incontext"),
                        help="where the preset run trains (a killed run resumes)")
    parser.add_argument("--from", dest="source", type=Path, default=None,
                        help="a finished run to measure instead of training one")
    parser.add_argument("--rl", type=Path, default=None,
                        help="also the RL arm: a finished run of tlm distill --method "
                             "incontext-rl")
    parser.add_argument("--series", type=int, default=1000,
                        help="series per held-out opponent (at least 1,000)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the measures")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures")
    args = parser.parse_args()
    if args.series < 1000:
        parser.error("--series: the figures need at least 1,000 series per opponent")
    torch.set_num_threads(1)
    out = args.source
    if out is None:
        out = args.out
        start = time.perf_counter()
        distill_incontext_run(config_with_preset(game=args.game, method="incontext",
                                                 out=out))
        print(f"trained the preset into {out} in {time.perf_counter() - start:.0f} s")
    report = json.loads((out / "report.json").read_text())
    runs = {"distilled": report}
    report["final"] = remeasure(out, report, args.series, args.seed)
    show(f"distilled (labels: {report['labels']} response, {report['student']}, "
         f"{report['labelled_decisions']:,} labelled decisions; measured again over "
         f"{args.series} series per held-out opponent)", report)
    if args.rl is not None:
        rl = json.loads((args.rl / "report.json").read_text())
        rl["final"] = remeasure(args.rl, rl, args.series, args.seed)
        runs["rl"] = rl
        show(f"RL arm (recurrent PPO, {rl['student']}, {rl['games']:,} games, no labels)",
             rl)
    if args.json is not None:
        args.json.write_text(json.dumps(
            {name: {"final": r["final"], "targets": target_checks(r["final"])}
             for name, r in runs.items()}, indent=2) + "\n")


if __name__ == "__main__":
    main()
