"""Arena throughput, measured side by side in one run on one core.

For tic-tac-toe and connect four:

* random vs random, games/s and moves/s: tlm's engine through ``play_matches`` on its
  default path (no shard size named: the arena picks it), in 1,024-game shards, and
  through ``arena.evaluate`` (what ``tlm eval`` calls); the raw PettingZoo AEC loop on
  the original env; OpenSpiel's Python loop; ratios;
* MLP vs MLP (one small torch network on both sides): ``play_matches`` with one
  forward pass per step for every game waiting on the net, against a per-game
  PettingZoo loop that calls the net on one observation at a time; the ratio;
* engine memory per concurrent connect-four game: the state's arrays, and the
  tracemalloc peak of one batched step.

Run ``python scripts/bench_arena.py`` (``--json`` for machines). Figures are for the
machine and the moment: only ratios taken in the same run compare.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
import tracemalloc
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from arena.agents import RandomAgent
from arena.core import PolicyAgent, State, sample_from, uniform_legal
from arena.evaluation import evaluate
from arena.games import get_game
from arena.matches import play_matches
from arena.runners import DEFAULT_SHARD_GAMES

GAMES = ("tictactoe", "connect_four")
OPENSPIEL_NAMES = {"tictactoe": "tic_tac_toe", "connect_four": "connect_four"}


@dataclass
class Rate:
    """Throughput of one runner."""

    games_per_s: float
    moves_per_s: float


def _timed(run_once: Callable[[int], tuple[int, int]], seconds: float) -> Rate:
    """Call ``run_once(k) -> (games, moves)`` until ``seconds`` have passed."""
    games = moves = k = 0
    start = time.perf_counter()
    while True:
        g, m = run_once(k)
        games, moves, k = games + g, moves + m, k + 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return Rate(games / elapsed, moves / elapsed)


def tlm_random(game: str, n_games: int, seconds: float, shard_games: int | None) -> Rate:
    """``play_matches`` of random against itself, ``n_games`` a call, in shards of
    ``shard_games`` (``None``: the default path, which picks the size itself)."""
    agent = RandomAgent()
    play_matches(game, agent, agent, 256, seed=0)  # warm the engine's tables

    def once(k: int) -> tuple[int, int]:
        result = play_matches(game, agent, agent, n_games, seed=k, shard_games=shard_games)
        return result.n_games, int(result.length.sum())

    return _timed(once, seconds)


def tlm_evaluate(game: str, n_games: int, seconds: float) -> Rate:
    """``tlm eval``'s path: :func:`arena.evaluate` of random against random, default
    shards (games only: evaluation counts outcomes, not moves)."""
    agent = RandomAgent()

    def once(k: int) -> tuple[int, int]:
        rows = evaluate(game, agent, [agent], n_games, seed=k)
        return sum(r.games for r in rows if r.seat == "both"), 0

    return _timed(once, seconds)


def pettingzoo_random(game: str, seconds: float) -> Rate:
    g = get_game(game)
    env = g.make_reference_env()
    rng = random.Random(0)

    def once(k: int) -> tuple[int, int]:
        env.reset(seed=k)
        moves = 0
        for _ in env.agent_iter():
            obs, _, terminated, truncated, _ = env.last()
            if terminated or truncated:
                action = None
            else:
                action = rng.choice(np.flatnonzero(obs["action_mask"]).tolist())
                moves += 1
            env.step(action)
        return 1, moves

    return _timed(once, seconds)


def openspiel_random(game: str, seconds: float) -> Rate | None:
    try:
        import pyspiel
    except ImportError:
        return None
    spiel_game = pyspiel.load_game(OPENSPIEL_NAMES[game])
    rng = random.Random(0)

    def once(k: int) -> tuple[int, int]:
        state = spiel_game.new_initial_state()
        moves = 0
        while not state.is_terminal():
            state.apply_action(rng.choice(state.legal_actions()))
            moves += 1
        return 1, moves

    return _timed(once, seconds)


def make_mlp(obs_size: int, n_actions: int, seed: int = 0) -> torch.nn.Module:
    """The small network both MLP runners use: obs -> 64 -> 64 -> logits."""
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(obs_size, 64), torch.nn.ReLU(),
        torch.nn.Linear(64, 64), torch.nn.ReLU(),
        torch.nn.Linear(64, n_actions),
    ).eval()


def masked_softmax(net: torch.nn.Module, obs: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``probs[B, A]`` of ``net`` over the legal actions (one forward for the batch)."""
    x = torch.from_numpy(obs.reshape(len(obs), -1).astype(np.float32))
    with torch.inference_mode():
        logits = net(x)
    logits = logits.masked_fill(torch.from_numpy(mask == 0), -torch.inf)
    return torch.softmax(logits, dim=1).numpy().astype(np.float64)


class MLPAgent(PolicyAgent):
    """The MLP as a tlm agent: one forward per call, for all the rows it is given."""

    name = "mlp"

    def __init__(self, net: torch.nn.Module) -> None:
        self.net = net

    def policy(self, obs: np.ndarray, mask: np.ndarray, state: State | None = None) -> np.ndarray:
        return masked_softmax(self.net, obs, mask)


def tlm_mlp(game: str, net: torch.nn.Module, n_games: int, seconds: float) -> Rate:
    agent = MLPAgent(net)
    play_matches(game, agent, agent, 64, seed=0)

    def once(k: int) -> tuple[int, int]:
        result = play_matches(game, agent, agent, n_games, seed=k, shard_games=None)
        return result.n_games, int(result.length.sum())

    return _timed(once, seconds)


def pettingzoo_mlp(game: str, net: torch.nn.Module, seconds: float) -> Rate:
    env = get_game(game).make_reference_env()
    rng = np.random.default_rng(0)

    def once(k: int) -> tuple[int, int]:
        env.reset(seed=k)
        moves = 0
        for _ in env.agent_iter():
            obs, _, terminated, truncated, _ = env.last()
            if terminated or truncated:
                action = None
            else:
                probs = masked_softmax(
                    net, obs["observation"][None], obs["action_mask"][None]
                )
                action = int(sample_from(probs, rng)[0])  # as PolicyAgent.act samples
                moves += 1
            env.step(action)
        return 1, moves

    return _timed(once, seconds)


def connect_four_memory(n_games: int) -> dict[str, float]:
    """Bytes per concurrent connect-four game: state arrays, and the peak of one step."""
    engine = get_game("connect_four").make_engine()
    rng = np.random.default_rng(0)
    state = engine.reset(n_games)
    for _ in range(10):
        state, _, _ = engine.step(state, uniform_legal(engine.legal_mask(state), rng))
    actions = uniform_legal(engine.legal_mask(state), rng)
    state_bytes = sum(np.asarray(f).nbytes for f in state)
    tracemalloc.start()
    tracemalloc.reset_peak()
    before, _ = tracemalloc.get_traced_memory()
    new_state, rewards, done = engine.step(state, actions)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "state_bytes_per_game": state_bytes / n_games,
        "step_peak_bytes_per_game": (peak - before) / n_games,
        "total_peak_bytes_per_game": (state_bytes + peak - before) / n_games,
    }


def pin_to_one_core() -> int:
    """Run on one core and one torch thread; returns the core."""
    core = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {core})
    torch.set_num_threads(1)
    return core


def run(n_games: int, seconds: float) -> dict[str, Any]:
    """Every measurement of the benchmark, as a JSON-ready dict."""
    core = pin_to_one_core()
    report: dict[str, Any] = {"core": core, "n_games": n_games, "seconds": seconds, "games": {}}
    for game in GAMES:
        g = get_game(game)
        default = tlm_random(game, n_games, seconds, None)
        small = tlm_random(game, n_games, seconds, DEFAULT_SHARD_GAMES)
        ev = tlm_evaluate(game, n_games, seconds)
        pz = pettingzoo_random(game, seconds)
        spiel = openspiel_random(game, seconds)
        net = make_mlp(int(np.prod(g.obs_shape)), g.num_actions)
        mlp_tlm = tlm_mlp(game, net, n_games, seconds)
        mlp_pz = pettingzoo_mlp(game, net, seconds)

        def ratios(r: Rate, pz: Rate = pz, spiel: Rate | None = spiel) -> dict[str, Any]:
            return {"x_pettingzoo": r.games_per_s / pz.games_per_s,
                    "x_openspiel": r.games_per_s / spiel.games_per_s if spiel else None}

        report["games"][game] = {
            "random": {
                "tlm": {**asdict(default), **ratios(default)},
                "tlm_1024_shards": {**asdict(small), **ratios(small)},
                "tlm_evaluate": {**asdict(ev), **ratios(ev)},
                "pettingzoo": asdict(pz),
                "openspiel": asdict(spiel) if spiel else None,
                "x_pettingzoo": default.games_per_s / pz.games_per_s,
                "x_openspiel": default.games_per_s / spiel.games_per_s if spiel else None,
            },
            "mlp": {
                "tlm": asdict(mlp_tlm),
                "pettingzoo": asdict(mlp_pz),
                "x_pettingzoo": mlp_tlm.games_per_s / mlp_pz.games_per_s,
            },
        }
    report["connect_four_memory"] = connect_four_memory(n_games)
    return report


def print_tables(report: dict[str, Any], console: Console) -> None:
    """The report as rich tables."""
    table = Table(title=f"arena throughput, one core ({report['n_games']:,} games a call)")
    for col in ("game", "players", "runner", "games/s", "moves/s", "tlm is"):
        table.add_column(col, justify="left" if col in ("game", "players", "runner") else "right")
    for game, r in report["games"].items():
        rnd, mlp = r["random"], r["mlp"]
        spiel = rnd["openspiel"]

        def tlm_row(players: str, runner: str, rate: dict[str, Any], label: str = "") -> None:
            x = rate["x_openspiel"]
            table.add_row(label, players, runner, f"{rate['games_per_s']:,.0f}",
                          f"{rate['moves_per_s']:,.0f}" if rate["moves_per_s"] else "",
                          f"{x:,.1f}x OpenSpiel" if x else f"{rate['x_pettingzoo']:,.0f}x PZ")

        tlm_row("random", "tlm play_matches, default path", rnd["tlm"], game)
        tlm_row("", "tlm play_matches, 1,024-game shards", rnd["tlm_1024_shards"])
        tlm_row("", "tlm evaluate (tlm eval), default path", rnd["tlm_evaluate"])
        table.add_row("", "", "PettingZoo AEC loop", f"{rnd['pettingzoo']['games_per_s']:,.0f}",
                      f"{rnd['pettingzoo']['moves_per_s']:,.0f}", "")
        if spiel:
            table.add_row("", "", "OpenSpiel Python loop", f"{spiel['games_per_s']:,.0f}",
                          f"{spiel['moves_per_s']:,.0f}", "")
        table.add_row("", "MLP", "tlm play_matches (batched)",
                      f"{mlp['tlm']['games_per_s']:,.0f}", f"{mlp['tlm']['moves_per_s']:,.0f}", "")
        table.add_row("", "", "PettingZoo per-game loop",
                      f"{mlp['pettingzoo']['games_per_s']:,.0f}",
                      f"{mlp['pettingzoo']['moves_per_s']:,.0f}", f"{mlp['x_pettingzoo']:,.0f}x",
                      end_section=True)
    console.print(table)
    mem = report["connect_four_memory"]
    console.print(
        f"connect four engine memory per concurrent game: state {mem['state_bytes_per_game']:.0f}"
        f" B, step peak {mem['step_peak_bytes_per_game']:.0f} B, total"
        f" {mem['total_peak_bytes_per_game']:.0f} B (target <= 1024 B)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--games", type=int, default=100_000,
                        help="games per play_matches call")
    parser.add_argument("--seconds", type=float, default=2.0,
                        help="time spent on each measurement")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    report = run(args.games, args.seconds)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_tables(report, Console())


if __name__ == "__main__":
    main()
