"""The student-guided search, today's against the fast one, measured side by side in one run.

The network is a connect-four student (``--student PATH``, a checkpoint; by default a
fresh ``res:64x3``, the preset's architecture, which is enough for the speed rows).
Roots: the first ``--trees`` of the 400 solved positions (``connect_four_solved``).
Each row runs ``--sims`` simulations from every root; rows take turns within each of
``--repeats`` rounds (so load that comes and goes hits them alike) and report the
best round. Speeds are simulations per second of this process's CPU time with one
torch thread (``--threads``), which a machine shared with other work disturbs less
than the wall clock; the wall clock is reported too.

Rows, each adding one thing to the row above:

- ``today``: :class:`teachers.mcts.MCTS` with ``NetworkEvaluator.from_agent`` (policy
  and value in two forward passes);
- ``one forward pass``: the same tree, ``policy_and_value`` in one pass;
- ``+ numba tree``: :class:`teachers.mcts.puct.PUCT`, no cache, no symmetry;
- ``+ cache``: transpositions and repeats within a step evaluated once;
- ``(+ symmetry, not kept)``: mirror images share an evaluation (measured, then left
  out of the rows below: it gains nothing here and moves choices);
- ``+ proven leaves``: leaves whose mover wins at once, or cannot stop a win at once, are
  valued by the rules, without the network (this changes the tree: see move quality);
- ``+ channels-last``, ``+ bf16``: inference modes (bf16 only on CPUs with native bf16);
  ``ONNX Runtime fp32`` in place of channels-last, if ``onnxruntime`` is installed;
- ``+ next moves``: ``--plies`` consecutive moves of a match (the search plays its most
  visited move and searches again), the cache kept from move to move: positions a
  previous search evaluated are free (today's search on the same roots, for the ratio).

Then the network's own positions per second at batch 1,024, the cache's hit rates,
bf16's agreement with fp32 (greedy move of the network on the solved positions and
the benchmark's roots, values), and move quality: optimal-move and blunder rates on
the solved positions at ``--sims`` simulations, today's search against the fast one
(``--quality 0`` skips it).

Run ``python scripts/bench_search.py --student runs/c4-preset/student`` (``--json`` for
machines). Figures are for the machine and the moment: only ratios taken in the same
run compare.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from arena.agents import make_agent
from arena.core import PolicyAgent, State, TlmError
from arena.games import get_game
from arena.positions import evaluate_positions, load_positions
from teachers.mcts import MCTS, MCTSAgent, NetworkEvaluator
from teachers.mcts.cache import EvaluationCache
from teachers.mcts.inference import LeafFn, NetworkInference, OnnxInference, bf16_native
from teachers.mcts.puct import PUCT
from teachers.mcts.puct_agent import PUCTAgent

GAME = "connect_four"
SOLVED = "connect_four_solved"
CACHE_ENTRIES = 1 << 20


def student(path: str | None) -> PolicyAgent:
    if path:
        agent = make_agent(path, GAME)
    else:
        from students import StudentAgent, build_student

        agent = StudentAgent(build_student("res:64x3", GAME, 0), name="fresh res:64x3")
    assert isinstance(agent, PolicyAgent)
    return agent


Search = Callable[[State, np.random.Generator], Any]


def searches(agent: PolicyAgent, sims: int) -> dict[str, Callable[[], Search]]:
    """Each row's search, made fresh for every timed run (a fresh cache)."""
    net = agent.net  # type: ignore[attr-defined]
    engine = get_game(GAME).make_engine()
    fp32 = NetworkInference(net)
    cl = NetworkInference(net, channels_last=True)

    def old(fn: NetworkEvaluator) -> Callable[[], Search]:
        return lambda: (lambda root, rng: MCTS(fn, sims).search(engine, root, rng))

    def new(inference: LeafFn, cache: bool, symmetry: bool, prove: bool = True
            ) -> Callable[[], Search]:
        def make() -> Search:
            search = PUCT(GAME, inference, sims, symmetry=symmetry, prove=prove,
                          cache=EvaluationCache(CACHE_ENTRIES, 7) if cache else None)
            run: Any = lambda root, rng: search.search(engine, root, rng)  # noqa: E731
            run.puct = search
            return run
        return make

    rows = {
        "today (two passes)": old(NetworkEvaluator.from_agent(agent)),
        "one forward pass": old(NetworkEvaluator(agent.policy_and_value)),  # type: ignore[attr-defined]
        "+ numba tree": new(fp32, False, False, False),
        "+ cache": new(fp32, True, False, False),
        "(+ symmetry, not kept)": new(fp32, True, True, False),
        "+ proven leaves": new(fp32, True, False),
        "+ channels-last": new(cl, True, False),
    }
    onnx = onnx_inference(net)
    if onnx is not None:
        rows["ONNX Runtime fp32 (for channels-last)"] = new(onnx, True, False)
    if bf16_native():
        rows["+ bf16"] = new(NetworkInference(net, precision="bf16", channels_last=True),
                             True, False)
    return rows


def onnx_inference(net: torch.nn.Module) -> OnnxInference | None:
    """ONNX Runtime inference, if it is installed (``pip install 'tlm[onnx]'``)."""
    try:
        return OnnxInference(net)
    except TlmError:
        return None


def timed(fn: Callable[..., Any], *args: Any) -> tuple[float, float, Any]:
    """``(cpu_s, wall_s, result)`` of one call of ``fn(*args)``."""
    c, w = time.process_time(), time.perf_counter()
    out = fn(*args)
    return time.process_time() - c, time.perf_counter() - w, out


def speed_table(agent: PolicyAgent, roots: State, sims: int, repeats: int,
                log: Console) -> dict[str, dict[str, Any]]:
    rows = searches(agent, sims)
    n = len(roots.ply)
    best: dict[str, dict[str, Any]] = {}
    warm = min(sims, 30)
    for make in searches(agent, warm).values():  # compiles, and makes the batch shapes
        make()(roots, np.random.default_rng(0))
    for r in range(repeats):
        for name, make in rows.items():
            run = make()
            cpu, wall, _ = timed(run, roots, np.random.default_rng(r))
            stats = run.puct.stats.as_dict() if hasattr(run, "puct") else None
            entry = {"sims_per_cpu_s": n * sims / cpu, "sims_per_wall_s": n * sims / wall,
                     "cpu_s": cpu, "wall_s": wall, "stats": stats}
            if name not in best or entry["sims_per_cpu_s"] > best[name]["sims_per_cpu_s"]:
                best[name] = entry
            log.log(f"{n} trees, round {r + 1}: {name}: {entry['sims_per_cpu_s']:,.0f} sims/cpu-s "
                    f"({wall:.1f} s wall)")
    return best


def match_rows(agent: PolicyAgent, roots: State, sims: int, plies: int, repeats: int,
               log: Console) -> dict[str, dict[str, Any]]:
    """``plies`` consecutive searches, the fast one keeping its cache from move to move."""
    engine = get_game(GAME).make_engine()
    rows = searches(agent, sims)
    # The roots of each ply: the fast search's own moves (all rows then search them).
    states = [roots]
    walk = rows["+ channels-last"]()
    for _ in range(plies - 1):
        s = states[-1]
        live = ~engine.done(s)
        s = engine.take(s, np.flatnonzero(live))
        if not len(s.ply):
            break
        moves = walk(s, np.random.default_rng(0)).policy(0.0).argmax(axis=1)
        nxt, _, done = engine.step(s, moves)
        states.append(engine.take(nxt, np.flatnonzero(~done)))
    total = sum(len(s.ply) for s in states) * sims
    names = ["today (two passes)", "+ channels-last"] + [
        k for k in ("ONNX Runtime fp32 (for channels-last)", "+ bf16") if k in rows]
    best: dict[str, dict[str, Any]] = {}
    for r in range(repeats):
        for name in names:
            run = rows[name]()
            cpu = wall = 0.0
            for s in states:
                c, w, _ = timed(run, s, np.random.default_rng(r))
                cpu, wall = cpu + c, wall + w
            stats = run.puct.stats.as_dict() if hasattr(run, "puct") else None
            entry = {"sims_per_cpu_s": total / cpu, "sims_per_wall_s": total / wall,
                     "cpu_s": cpu, "wall_s": wall, "stats": stats, "plies": len(states)}
            if name not in best or entry["sims_per_cpu_s"] > best[name]["sims_per_cpu_s"]:
                best[name] = entry
            log.log(f"match of {len(states)} plies, round {r + 1}: {name}: "
                    f"{entry['sims_per_cpu_s']:,.0f} sims/cpu-s")
    return best


def network_rates(agent: PolicyAgent, obs: np.ndarray, repeats: int) -> dict[str, float]:
    """Positions per CPU second of one forward pass at batch 1,024, per inference mode."""
    net = agent.net  # type: ignore[attr-defined]
    batch = np.ascontiguousarray(np.resize(obs, (1024, *obs.shape[1:])))
    modes: dict[str, Callable[[np.ndarray, np.ndarray], Any]] = {
        "two passes (today)": lambda o, m: (agent.policy(o, m), agent.value(o, m)),
        "fp32": NetworkInference(net),
        "fp32 channels-last": NetworkInference(net, channels_last=True),
    }
    onnx = onnx_inference(net)
    if onnx is not None:
        modes["fp32 ONNX Runtime"] = onnx
    if bf16_native():
        modes["bf16 channels-last"] = NetworkInference(net, precision="bf16", channels_last=True)
    mask = np.ones((1024, 7), dtype=np.int8)
    out = {}
    for name, fn in modes.items():
        fn(batch, mask)
        out[name] = 1024 / min(timed(fn, batch, mask)[0] for _ in range(repeats))
    return out


def bf16_agreement(agent: PolicyAgent, obs: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """How far bf16 inference moves the network's greedy moves and values from fp32."""
    net = agent.net  # type: ignore[attr-defined]
    a_logits, a_value = NetworkInference(net)(obs, mask)
    b_logits, b_value = NetworkInference(net, precision="bf16", channels_last=True)(obs, mask)
    legal = mask.astype(bool)
    same = (np.where(legal, a_logits, -np.inf).argmax(1)
            == np.where(legal, b_logits, -np.inf).argmax(1))
    return {"positions": len(obs), "same_greedy_move": float(same.mean()),
            "max_value_diff": float(np.abs(a_value - b_value).max()),
            "mean_value_diff": float(np.abs(a_value - b_value).mean())}


def quality(agent: PolicyAgent, sims: int, limit: int, log: Console) -> dict[str, Any]:
    """Optimal-move and blunder rates on the solved positions: today's search and the fast one."""
    positions = load_positions(SOLVED, GAME)
    positions = positions.take(np.arange(min(limit, len(positions))))
    net = agent.net  # type: ignore[attr-defined]
    agents: dict[str, Any] = {
        "today": MCTSAgent(GAME, MCTS(NetworkEvaluator.from_agent(agent), sims), greedy=True),
        "fast, no symmetry, no proven leaves (fp32)": PUCTAgent(GAME, PUCT(
            GAME, NetworkInference(net, channels_last=True), sims, prove=False,
            symmetry=False, cache=EvaluationCache(CACHE_ENTRIES, 7))),
        "fast, symmetry, no proven leaves (fp32)": PUCTAgent(GAME, PUCT(
            GAME, NetworkInference(net, channels_last=True), sims, prove=False,
            symmetry=True, cache=EvaluationCache(CACHE_ENTRIES, 7))),
        "fast (fp32)": PUCTAgent(GAME, PUCT(
            GAME, NetworkInference(net, channels_last=True), sims,
            cache=EvaluationCache(CACHE_ENTRIES, 7))),
    }
    onnx = onnx_inference(net)
    if onnx is not None:
        agents["fast (ONNX Runtime fp32)"] = PUCTAgent(GAME, PUCT(
            GAME, onnx, sims, cache=EvaluationCache(CACHE_ENTRIES, 7)))
    if bf16_native():
        agents["fast (bf16)"] = PUCTAgent(GAME, PUCT(
            GAME, NetworkInference(net, precision="bf16", channels_last=True), sims,
            cache=EvaluationCache(CACHE_ENTRIES, 7)))
    agents["student alone"] = agent
    out: dict[str, Any] = {}
    moves: dict[str, np.ndarray] = {}
    for name, a in agents.items():
        state = positions.state if a.needs_state else None
        cpu, wall, chosen = timed(a.act, positions.obs, positions.mask,
                                  np.random.default_rng(0), state)
        chosen = np.asarray(chosen)
        moves[name] = chosen
        report = evaluate_positions(_Fixed(chosen, a.name), positions, np.random.default_rng(0))
        out[name] = {"optimal": report["optimal"]["rate"], "blunders": report["blunders"]["rate"],
                     "cpu_s": cpu, "wall_s": wall}
        log.log(f"quality: {name}: optimal {out[name]['optimal']:.3f}, "
                f"blunders {out[name]['blunders']:.3f} ({wall:.0f} s)")
    for name in agents:
        out[name]["same_move_as_today"] = float((moves[name] == moves["today"]).mean())
        out[name]["same_move_as_fast_fp32"] = float((moves[name] == moves["fast (fp32)"]).mean())
    return {"positions": len(positions), "sims": sims, "agents": out}


class _Fixed(PolicyAgent):
    """Replays moves already chosen, so one search serves both timing and scoring."""

    needs_state = False

    def __init__(self, moves: np.ndarray, name: str) -> None:
        self.moves, self.name = moves, name

    def act(self, obs: np.ndarray, mask: np.ndarray, rng: np.random.Generator,
            state: State | None = None) -> np.ndarray:
        return self.moves


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--student", default=None, help="a connect-four student checkpoint")
    parser.add_argument("--sims", type=int, default=400)
    parser.add_argument("--trees", default="64,256", help="roots searched at once, per row set")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--plies", type=int, default=3, help="moves of the match rows (0: none)")
    parser.add_argument("--match-repeats", type=int, default=1)
    parser.add_argument("--quality", type=int, default=400,
                        help="solved positions for move quality (0: skip)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--out", default=None, help="also write the JSON summary to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    log = Console(stderr=True)
    agent = student(args.student)
    engine = get_game(GAME).make_engine()
    solved = load_positions(SOLVED, GAME)
    summary: dict[str, Any] = {
        "student": agent.name, "sims": args.sims, "threads": args.threads,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(), "bf16_native": bf16_native(),
        "loadavg_start": os.getloadavg(), "speed": {}, "match": {},
    }
    summary["network_positions_per_cpu_s"] = network_rates(agent, solved.obs, 3)
    if bf16_native():
        summary["bf16_agreement"] = bf16_agreement(agent, solved.obs, solved.mask)
    for n in [int(t) for t in args.trees.split(",")]:
        roots = engine.take(solved.state, np.arange(n) % len(solved))
        summary["speed"][n] = speed_table(agent, roots, args.sims, args.repeats, log)
        if args.plies:
            summary["match"][n] = match_rows(agent, roots, args.sims, args.plies,
                                             args.match_repeats, log)
    if args.quality:
        summary["quality"] = quality(agent, args.sims, args.quality, log)
    summary["loadavg_end"] = os.getloadavg()
    if args.out:
        with open(args.out, "w") as f:
            json.dump(summary, f, default=float)
    if args.json:
        print(json.dumps(summary, default=float))
        return
    show(summary)


def show(summary: dict[str, Any]) -> None:
    console = Console(width=150)
    for n, rows in summary["speed"].items():
        base = rows["today (two passes)"]["sims_per_cpu_s"]
        table = Table(title=f"{n} trees x {summary['sims']} simulations, {summary['student']} "
                            f"({summary['threads']} torch thread(s))")
        for col in ("search", "sims/cpu-s", "x today", "sims/wall-s", "network rows/sim",
                    "cache hits/sim", "proven/sim"):
            table.add_column(col, justify="left" if col == "search" else "right")
        for name, e in rows.items():
            st = e["stats"]
            sims = st["simulations"] if st else 0
            table.add_row(
                name, f"{e['sims_per_cpu_s']:,.0f}", f"{e['sims_per_cpu_s'] / base:.2f}",
                f"{e['sims_per_wall_s']:,.0f}",
                f"{st['evaluated'] / sims:.3f}" if st else ("2" if "two" in name else "1"),
                f"{st['cache_hits'] / sims:.3f}" if st else "-",
                f"{st.get('proven', 0) / sims:.3f}" if st else "-",
            )
        match = summary["match"].get(n)
        if match:
            mbase = match["today (two passes)"]["sims_per_cpu_s"]
            for name, e in match.items():
                st = e["stats"]
                label = f"{name} + next moves ({e['plies']} plies)"
                table.add_row(label if st else f"today, {e['plies']} plies",
                              f"{e['sims_per_cpu_s']:,.0f}",
                              f"{e['sims_per_cpu_s'] / mbase:.2f}",
                              f"{e['sims_per_wall_s']:,.0f}",
                              f"{st['evaluated'] / st['simulations']:.3f}" if st else "2",
                              f"{st['cache_hits'] / st['simulations']:.3f}" if st else "-",
                              f"{st.get('proven', 0) / st['simulations']:.3f}" if st else "-")
        console.print(table)
    rates = summary["network_positions_per_cpu_s"]
    console.print("network alone, batch 1,024: " + ", ".join(
        f"{k} {v:,.0f} positions/cpu-s" for k, v in rates.items()))
    if "bf16_agreement" in summary:
        a = summary["bf16_agreement"]
        console.print(f"bf16 vs fp32 on {a['positions']} positions: same greedy move "
                      f"{a['same_greedy_move']:.3f}, value diff max {a['max_value_diff']:.4f} "
                      f"mean {a['mean_value_diff']:.4f}")
    if "quality" in summary:
        q = summary["quality"]
        table = Table(title=f"move quality on {q['positions']} solved positions, "
                            f"{q['sims']} simulations")
        for col in ("agent", "optimal", "blunders", "same move as today",
                    "same move as fast (fp32)", "wall s"):
            table.add_column(col, justify="left" if col == "agent" else "right")
        for name, e in q["agents"].items():
            table.add_row(name, f"{e['optimal']:.3f}", f"{e['blunders']:.3f}",
                          f"{e['same_move_as_today']:.3f}",
                          f"{e.get('same_move_as_fast_fp32', float('nan')):.3f}",
                          f"{e['wall_s']:.0f}")
        console.print(table)
    console.print(f"load average: {summary['loadavg_start']} at the start, "
                  f"{summary['loadavg_end']} at the end")


if __name__ == "__main__":
    main()
