"""Labels a teacher spends to reach a target with a learned teaching policy, beside every
fixed strategy, the best static mixture of strategies found in hindsight, the uniform
mixture and today's per-run EXP3 bandit, on paired students the policy never trained
with: median, range, reached, paired ratios to the best fixed strategy with bootstrap
95% intervals, wall time.

Tic-tac-toe (default): ``perfect`` teaches fresh students of held-out architectures
(the shipped policy trained on ``mlp:WIDTHx2`` students; here ``cnn``, ``res`` and MLPs
of other widths and depths), 25 games and 150 gradient steps a round, at most 30
rounds or 5,000 labels, until the student loses no line against any reply. Connect
four (``--game connect_four``): the tic-tac-toe policy without retraining
(``--transfer-policy``) teaches the connect-four preset's student (``res:32x4``) until
its optimal-move rate on the solved positions reaches 0.80.

Every run is ``tlm distill``: ``--method adaptive --arms NAME`` for a fixed strategy,
``--method adaptive`` for EXP3, ``--method learned`` for the policy and (with a policy
that ignores the state) for the static mixtures. Pair ``k`` is the same student
(architecture and seed) in every arm. The best static mixture is picked in hindsight,
by its median on the first ``--hindsight`` pairs, among the best fixed strategy alone,
it with a quarter of the games to each other strategy of the policy, pairs and the
triple of the three best fixed strategies, the uniform mixture and the learned policy's
mean mixture; then it runs on all.

With ``--pick-on K`` the fixed strategies run on the first ``K`` pairs only, the best
of them by median is picked there, and it, the learned policy, the uniform mixture,
EXP3 and the best static mixture (picked on the first ``min(K, --hindsight)`` pairs)
run on every pair (with ``--only``, the others are compared only where they are cached
on every pair): the connect-four transfer, whose runs take minutes, uses it with
``--only`` to run its arms side by side.

Runs are cached in ``--cache`` (one JSON file each): a rerun reuses them.

Usage: python scripts/bench_learned_teacher.py --seeds 5 --pick-on 6 --cache runs/bench_learned
       python scripts/bench_learned_teacher.py --game connect_four --seeds 5 --pick-on 1
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from arena import get_game
from distill import distill
from distill.presets import SOLVED_POSITIONS, config_with_preset
from distill.strategies import standard_arms
from distill.teaching_policy import TeachingPolicy, load_policy, shipped_policy

EXP3 = "exp3"
UNIFORM = "uniform"
LEARNED = "learned"
STATIC = "best static"

SETTINGS: dict[str, dict[str, Any]] = {
    "tictactoe": {"teacher": "perfect", "stop_when_perfect": True, "games_per_round": 25,
                  "steps_per_round": 150, "budget_games": 30 * 25, "label_budget": 5000},
    "connect_four": {"teacher": "alphabeta:4", "target": 0.80, "stop_when_perfect": False,
                     "games_per_round": 100, "steps_per_round": 300,
                     "budget_games": 60 * 100, "label_budget": 200_000,
                     "positions": SOLVED_POSITIONS},
}

HELD_OUT = {
    "tictactoe": ["cnn:16x2", "res:16x1", "mlp:256x1", "cnn:8x3", "res:8x2", "mlp:64x3"],
    "connect_four": ["res:32x4"],
}
"""Student architectures of the benchmark: none of them trained the shipped policy."""


def run_key(arm: str, student: str, seed: int) -> str:
    return f"{arm.replace(' ', '_')}--{student.replace(':', '_')}--{seed}"


def teach(game: str, arm: str, student: str, seed: int, scratch: Path,
          policies: dict[str, Path], transfer: bool) -> dict[str, Any]:
    """One run: what it cost (labels to the target, rounds, wall time) and its mixture."""
    out = scratch / run_key(arm, student, seed)
    fields: dict[str, Any] = {"game": game, "student": student, "seed": seed, "out": out,
                              **SETTINGS[game]}
    if arm == EXP3:
        fields["method"] = "adaptive"
    elif arm in policies:
        fields.update(method="learned", teaching_policy=policies[arm],
                      transfer_policy=transfer)
    else:
        fields.update(method="adaptive", arms=[arm])
    start = time.perf_counter()
    report = distill(config_with_preset(**fields))
    return {"labels": report["labels_to_target"], "spent": report["labels_spent"],
            "rounds": int(report["final"].get("round", -1)) + 1,
            "wall_s": time.perf_counter() - start, "shares": report.get("shares"),
            "choices": report.get("choices"), "rates": rate_curve(out / "curve.csv")}


def rate_curve(path: Path) -> list[tuple[int, float]] | None:
    """``(labels so far, optimal-move rate on the solved positions)`` after every round
    of a run's ``curve.csv`` (``None`` for a run without solved positions)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or "solved_optimal" not in rows[0]:
        return None
    labels = np.cumsum([int(r["labelled"]) for r in rows])
    return [(int(n), float(r["solved_optimal"])) for n, r in zip(labels, rows, strict=True)]


def labels_to(rates: list[tuple[int, float]], target: float) -> float:
    """Labels spent when a run's rate first reached ``target`` (``inf``: never)."""
    return next((n for n, rate in rates if rate >= target), np.inf)


RATES = (0.65, 0.70, 0.75, 0.80)
"""Optimal-move rates the connect-four table gives the labels to."""


def print_rates(runs: dict[str, list[dict[str, Any]]], over: str) -> None:
    """Per arm, the median labels spent until the student first played each of
    :data:`RATES` on the solved positions, and the median best rate it reached (nothing
    for runs without solved positions, as on tic-tac-toe)."""
    if not any(r.get("rates") for got in runs.values() for r in got):
        return
    print(f"\n{'arm':>12}  " + "  ".join(f"{'to ' + str(t):>8}" for t in RATES)
          + f"  {'best':>6}   (medians over {over}; inf: never)")
    for arm, got in runs.items():
        curves: list[list[tuple[int, float]]] = [r["rates"] for r in got if r.get("rates")]
        if len(curves) < len(got):
            continue
        cells = []
        for t in RATES:
            firsts = [labels_to(c, t) for c in curves]
            med = np.median(firsts)
            cells.append(f"{shown(med):>8}")
        best = np.median([max(rate for _, rate in c) for c in curves])
        print(f"{arm:>12}  " + "  ".join(cells) + f"  {best:>6.3f}")


def shown(labels: float) -> str:
    """Labels as printed: an integer, or ``inf`` for a target never met."""
    return "inf" if np.isinf(labels) else str(int(labels))


def as_cost(labels: list[int | None]) -> np.ndarray:
    """Labels to the target, a run that never met it as infinitely many."""
    return np.array([np.inf if x is None else x for x in labels], dtype=float)


def ratio_interval(a: np.ndarray, b: np.ndarray, rng: np.random.Generator,
                   n_boot: int = 10_000) -> tuple[float, float, float]:
    """``median(a) / median(b)`` and its paired bootstrap 95% interval (pairs resampled
    together)."""
    def ratio(x: np.ndarray, y: np.ndarray) -> float:
        mx, my = np.median(x), np.median(y)
        if np.isinf(mx) and np.isinf(my):
            return float("nan")
        return float(mx / my) if my > 0 else float("inf")

    idx = rng.integers(0, len(a), size=(n_boot, len(a)))
    boots = np.array([ratio(a[i], b[i]) for i in idx])
    boots = boots[~np.isnan(boots)]
    with np.errstate(invalid="ignore"):  # an infinite ratio's interval is nan above
        lo, hi = np.percentile(boots, [2.5, 97.5]) if len(boots) else (np.nan, np.nan)
    return ratio(a, b), float(lo), float(hi)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--game", default="tictactoe", choices=sorted(SETTINGS))
    parser.add_argument("--seeds", type=int, default=5, help="seeds per architecture")
    parser.add_argument("--students", default=None, help="comma-separated architectures "
                        "(default: the held-out ones)")
    parser.add_argument("--policy", type=Path, default=None,
                        help="teaching policy (default: the one shipped for tic-tac-toe)")
    parser.add_argument("--hindsight", type=int, default=10,
                        help="pairs the static mixtures are picked on")
    parser.add_argument("--only", default=None, help="comma-separated arms to run now "
                        "(the table is printed once every arm is cached)")
    parser.add_argument("--cache", type=Path, default=None, help="run cache directory")
    parser.add_argument("--pick-on", type=int, default=None,
                        help="run the fixed strategies on the first K pairs only, and the "
                        "best of them, the learned policy, the uniform mixture and EXP3 on "
                        "every pair")
    args = parser.parse_args()

    game = get_game(args.game).name
    transfer = game != "tictactoe"
    policy_path = args.policy or shipped_policy("tictactoe")
    assert policy_path is not None, "no teaching policy ships for tic-tac-toe"
    learned = load_policy(policy_path)
    fixed = standard_arms(get_game(game))
    students = (args.students.split(",") if args.students else HELD_OUT[game])
    pairs = [(s, seed) for seed, s in itertools.product(range(args.seeds), students)]
    cache = args.cache or Path(tempfile.mkdtemp(prefix="bench_learned."))
    cache.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="bench_learned_runs."))
    policies: dict[str, Path] = {LEARNED: Path(policy_path)}
    uniform = TeachingPolicy.constant({a: 1.0 for a in learned.strategies}, learned.games)
    uniform.save(cache / "uniform")
    policies[UNIFORM] = cache / "uniform.json"
    only = set(args.only.split(",")) if args.only else None
    print(f"{game}: {SETTINGS[game]['teacher']} teaches {', '.join(students)}, seeds "
          f"0-{args.seeds - 1} ({len(pairs)} paired students); policy {policy_path} "
          f"(trained on {', '.join(learned.info.get('students', ['?']))})", flush=True)

    def results(arm: str, on: list[tuple[str, int]]) -> list[dict[str, Any]] | None:
        out = []
        for student, seed in on:
            path = cache / f"{run_key(arm, student, seed)}.json"
            if not path.exists():
                if only is not None and arm not in only:
                    return None
                r = teach(game, arm, student, seed, scratch, policies, transfer)
                path.write_text(json.dumps(r))
                print(f"  {arm} {student} seed {seed}: {r['labels']} labels, "
                      f"{r['rounds']} rounds, {r['wall_s']:.0f} s", flush=True)
            out.append(json.loads(path.read_text()))
        return out

    if args.pick_on is not None:
        picked_fixed(fixed, pairs, args.pick_on, results, learned, args.hindsight, cache,
                     policies)
        return

    runs: dict[str, list[dict[str, Any]]] = {}
    for arm in [*fixed, UNIFORM, EXP3, LEARNED]:
        got = results(arm, pairs)
        if got is not None:
            runs[arm] = got
    if any(a not in runs for a in fixed) or LEARNED not in runs:
        print("not every arm is cached yet: run again without --only (or with the others)")
        return

    medians = {a: float(np.median(as_cost([r["labels"] for r in runs[a]]))) for a in fixed}
    head = pairs[:args.hindsight]
    found = best_static(medians, learned, runs[LEARNED], head, cache, policies, results)
    if found is None:
        return
    static_name, picked = found
    got = results(static_name, pairs)
    if got is None:
        print("the best static mixture is not cached on every pair yet: run again")
        return
    runs[STATIC] = got
    mean_mix = mean_mixture(learned, runs[LEARNED])

    best = min(fixed, key=lambda a: medians[a])
    base = as_cost([r["labels"] for r in runs[best]])
    rng = np.random.default_rng(0)
    print(f"\nbest fixed strategy: {best}; best static mixture (picked on {len(head)} "
          f"pairs among {', '.join(picked)}): {static_name}")
    print(f"{'arm':>22}  {'reached':>7}  {'median':>7}  {'range':>11}  "
          f"{'ratio to best fixed [95%]':>26}  {'rounds':>6}  {'wall s':>7}")
    for arm in [*fixed, UNIFORM, STATIC, EXP3, LEARNED]:
        if arm not in runs:
            continue
        cost = as_cost([r["labels"] for r in runs[arm]])
        reached = int(np.isfinite(cost).sum())
        fin = cost[np.isfinite(cost)]
        span = (f"{int(fin.min())}-{int(cost.max()) if reached == len(cost) else 'inf'}"
                if reached else "-")
        med = np.median(cost)
        r, lo, hi = ratio_interval(cost, base, rng)
        print(f"{arm:>22}  {reached:>3}/{len(cost):<3}  "
              f"{shown(med):>7}  {span:>11}  "
              f"{r:>8.2f} [{lo:.2f}, {hi:.2f}]       "
              f"{np.median([x['rounds'] for x in runs[arm]]):>6.0f}  "
              f"{np.median([x['wall_s'] for x in runs[arm]]):>7.1f}", flush=True)
    mine = as_cost([r["labels"] for r in runs[LEARNED]])
    lost = int((np.isfinite(base) & ~np.isfinite(mine)).sum())
    print(f"\nlearned fails where {best} succeeds: {lost} of {len(pairs)} pairs")
    for other in (STATIC, UNIFORM, EXP3):
        if other in runs:
            cost = as_cost([r["labels"] for r in runs[other]])
            r, lo, hi = ratio_interval(mine, cost, rng)
            print(f"learned / {other}: {r:.2f} [{lo:.2f}, {hi:.2f}]")
    print("learned policy's mean mixture on these students: " + ", ".join(
        f"{a} {s:.2f}" for a, s in mean_mix.items()))
    print(f"runs cached in {cache}")


def mean_mixture(learned: TeachingPolicy, runs: list[dict[str, Any]]) -> dict[str, float]:
    """The learned policy's mean share of each strategy over its runs. (A transferred
    policy's shares name this game's strategies, openings4 for openings2, in the
    policy's order.)"""
    return {a: float(np.mean([list(r["shares"].values())[i] for r in runs]))
            for i, a in enumerate(learned.strategies)}


def best_static(medians: dict[str, float], learned: TeachingPolicy,
                learned_runs: list[dict[str, Any]], head: list[tuple[str, int]],
                cache: Path, policies: dict[str, Path], results: Any
                ) -> tuple[str, dict[str, float]] | None:
    """The static mixture (a policy that ignores the state) of fewest median labels on
    ``head``, found in hindsight among: the best fixed strategy alone, it with a quarter
    of the games to each other strategy of the policy, pairs and the triple of the three
    best fixed strategies in equal shares, the uniform mixture and the learned policy's
    mean mixture. Its arm name and every candidate's median there (``None`` while some
    are not cached)."""
    top = sorted(medians, key=lambda a: medians[a])[:3]
    candidates: dict[str, dict[str, float]] = {}
    for other in learned.strategies:
        if other != top[0]:
            candidates[f"{top[0]}+{other} 3:1"] = {top[0]: 3.0, other: 1.0}
    candidates.update({f"{x}+{y}": {x: 1.0, y: 1.0} for x, y in itertools.combinations(top, 2)})
    candidates["+".join(top)] = dict.fromkeys(top, 1.0)
    candidates["learned mean"] = mean_mixture(learned, learned_runs)
    for name, shares in candidates.items():
        TeachingPolicy.constant({a: shares.get(a, 0.0) for a in learned.strategies},
                                learned.games).save(cache / f"static_{name}")
        policies[f"static {name}"] = cache / f"static_{name}.json"
    picked: dict[str, float] = {top[0]: float(np.median(as_cost(
        [r["labels"] for r in results(top[0], head)])))}
    for name in [*candidates, UNIFORM]:
        arm = name if name == UNIFORM else f"static {name}"
        got = results(arm, head)
        if got is None:
            print("the static mixtures are not cached yet: run again")
            return None
        picked[arm] = float(np.median(as_cost([r["labels"] for r in got])))
    return min(picked, key=lambda a: picked[a]), picked


def picked_fixed(fixed: list[str], pairs: list[tuple[str, int]], k: int,
                 results: Any, learned: TeachingPolicy, hindsight: int, cache: Path,
                 policies: dict[str, Path]) -> None:
    """The fixed strategies on the first ``k`` pairs, then the best of them (by median
    labels there), the learned policy, the uniform mixture, EXP3 and the best static
    mixture (picked on the first ``min(k, hindsight)`` pairs) on every pair: the learned
    policy's paired ratios to the others."""
    head = pairs[:k]
    for arm in (LEARNED, UNIFORM, EXP3):  # with --only, those named run now
        results(arm, pairs)
    medians: dict[str, float] = {}
    for arm in fixed:
        got = results(arm, head)
        if got is None:
            print("not every fixed strategy is cached on the pick pairs yet")
            return
        medians[arm] = float(np.median(as_cost([r["labels"] for r in got])))
    best = min(fixed, key=lambda a: medians[a])
    runs = {a: results(a, pairs) for a in (best, LEARNED)}
    if any(v is None for v in runs.values()):
        print("the best fixed strategy or the learned policy is not cached on every pair yet")
        return
    print_rates({a: results(a, head) for a in fixed}, f"the first {len(head)} pair(s)")
    print_rates({a: runs[a] for a in (best, LEARNED)}, f"all {len(pairs)} pairs")
    if all(r.get("rates") for a in (best, LEARNED) for r in runs[a]):
        for t in RATES:
            first = {a: np.array([labels_to(r["rates"], t) for r in runs[a]], dtype=float)
                     for a in (best, LEARNED)}
            r, lo, hi = ratio_interval(first[LEARNED], first[best], np.random.default_rng(0))
            print(f"labels to {t}: learned / {best} (medians) {r:.2f} [{lo:.2f}, {hi:.2f}]")
    print(f"\nfixed strategies on the first {len(head)} pair(s), median labels: " + ", ".join(
        f"{a} {shown(m)}" for a, m in medians.items()))
    print(f"best fixed strategy (picked there): {best}")
    base = as_cost([r["labels"] for r in runs[best]])
    mine = as_cost([r["labels"] for r in runs[LEARNED]])
    print(f"{'arm':>12}  {'reached':>7}  {'median':>7}  labels per pair")
    for arm, cost in ((best, base), (LEARNED, mine)):
        med = np.median(cost)
        print(f"{arm:>12}  {int(np.isfinite(cost).sum()):>3}/{len(cost):<3}  "
              f"{shown(med):>7}  "
              + " ".join(shown(c) for c in cost))
    r, lo, hi = ratio_interval(mine, base, np.random.default_rng(0))
    print(f"learned / {best} (medians): {r:.2f} [{lo:.2f}, {hi:.2f}] over {len(pairs)} pairs; "
          f"per pair: " + " ".join(f"{m / b:.2f}" if np.isfinite(m) and np.isfinite(b)
                                   else "-" for m, b in zip(mine, base, strict=True)))
    lost = int((np.isfinite(base) & ~np.isfinite(mine)).sum())
    print(f"learned fails where {best} succeeds: {lost} of {len(pairs)} pairs; median wall s: "
          + ", ".join(f"{a} {np.median([x['wall_s'] for x in runs[a]]):.0f}" for a in runs))
    found = best_static(medians, learned, runs[LEARNED], head[:hindsight], cache, policies,
                        results)
    others = [UNIFORM, EXP3]
    if found is not None:
        static_name, picked = found
        print(f"best static mixture, picked on the first {len(head[:hindsight])} pair(s): "
              f"{static_name}; medians there: " + ", ".join(
                  f"{a} {shown(m)}" for a, m in picked.items()))
        others.insert(0, static_name)
    for other in others:
        got = results(other, pairs)
        if got is None:
            continue
        cost = as_cost([r["labels"] for r in got])
        r, lo, hi = ratio_interval(mine, cost, np.random.default_rng(0))
        med = np.median(cost)
        print(f"{other}: reached {int(np.isfinite(cost).sum())}/{len(cost)}, median "
              f"{shown(med)}; learned / {other}: "
              f"{r:.2f} [{lo:.2f}, {hi:.2f}]")


if __name__ == "__main__":
    main()
