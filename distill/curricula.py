"""Teaching strategies as objects, and a teacher that learns which one to use.

A *strategy* decides which positions the teacher labels next; its cost is the number
of labels it spends (positions the teacher labels for the first time). The strategies
(:func:`standard_strategies`):

- ``teacher``: the teacher's own games (offline distillation);
- ``dagger``: the student's games against itself;
- ``panel``: the student against fixed opponents (``random``, ``heuristic``);
- ``openings``: the student's games after ``k`` uniformly random opening plies;
- ``uncertain``: the student's own games, of which only the share of positions where
  the student is least sure (highest policy entropy) is labelled: a label-free stand-in
  for "where student and teacher disagree most", which needs the label to know.

Games are played and labelled by :func:`distill.collect.collect_round` into one
deduplicated :class:`distill.collect.PositionStore`, and the student is fitted with
:func:`distill.train.fit_steps`, as in ``tlm distill``.

:func:`teach` runs one strategy throughout, or lets :class:`Exp3` (an adversarial
bandit) pick one every round: its reward is the student's gain on a fixed probe set
(tic-tac-toe: optimal-move accuracy over all 4,520 positions; otherwise the
optimal-move rate on solver-labelled positions) per label spent, scaled by the largest
gain per label seen so far, so the bandit re-weights as the student learns. Every
choice and the bandit's probabilities are logged in the returned curve.

:func:`teach_run` checkpoints every round into its output's staging directory
(:mod:`distill.resume`: the student's weights, the optimizer state, the aggregated
positions, and in ``state.json`` the round counter, the curve, the bandit's weights,
the labels spent and the states of the numpy and torch generators), so the same call
after a kill goes on from the last finished round and ends with the student of an
uninterrupted run.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from arena import (
    Game,
    PolicyAgent,
    TlmError,
    get_game,
    make_agent,
    play_matches,
    write_json_atomic,
)
from arena.matches import Decision
from arena.players.tictactoe import exhaustive_check, optimal_move_accuracy
from arena.positions import PositionSet, evaluate_positions
from arena.runstate import check_output_dir, staged_directory
from distill.collect import Openings, PositionStore, add_positions, collect_round
from distill.resume import (
    RunInterrupted,
    RunState,
    check_resumable,
    clear_checkpoints,
    load_checkpoint,
    save_checkpoint,
    set_torch_generator_state,
    torch_generator_state,
)
from distill.train import FitConfig, fit_steps, make_optimizer, sample_weights
from students import StudentAgent, build_student, save_student

ADAPTIVE = "adaptive"

DEFAULT_FIT = FitConfig(batch_size=128, lr=3e-3)
"""The fit of :func:`teach` unless it is given one."""

_NOT_SETTINGS = ("stage", "stop", "progress")
"""Arguments of :func:`teach` that say how a run is driven, not what it computes."""


@dataclass(frozen=True)
class Strategy:
    """Which games are played and which of their positions the teacher labels.

    Attributes:
        name: what reports call it.
        mix: who plays, as for ``tlm distill --mix``: ``student``, ``teacher`` or specs.
        openings: random opening plies of each game.
        self_play_teacher: the ``teacher`` entry plays itself (the student plays none).
        uncertain_share: if set, only this share of the positions reached (those
            where the student's policy has the highest entropy) is labelled.
    """

    name: str
    mix: Mapping[str, float] = field(default_factory=lambda: {"student": 1.0})
    openings: Openings = Openings()
    self_play_teacher: bool = False
    uncertain_share: float | None = None

    def collect(
        self, game: Game, teacher: PolicyAgent, student: StudentAgent, n_games: int,
        seed: int, store: PositionStore, rnd: int,
    ) -> int:
        """Play ``n_games`` games, label what the strategy picks into ``store``; the
        number of new labels (its cost)."""
        if self.uncertain_share is None:
            return collect_round(game, teacher, student, self.mix, n_games, seed, store, rnd,
                                 openings=self.openings,
                                 self_play_teacher=self.self_play_teacher).labelled
        return self._collect_uncertain(game, teacher, student, n_games, seed, store, rnd)

    def _collect_uncertain(
        self, game: Game, teacher: PolicyAgent, student: StudentAgent, n_games: int,
        seed: int, store: PositionStore, rnd: int,
    ) -> int:
        if teacher.needs_state:
            raise TlmError(f"strategy {self.name!r} labels observations; teacher "
                           f"{teacher.name!r} needs engine states")
        seen: list[Decision] = []
        result = play_matches(game, student, student, n_games, seed=seed,
                              observer=seen.append, opening_plies=self.openings.low)
        obs = np.concatenate([d.obs for d in seen if d.obs is not None])
        mask = np.concatenate([d.mask for d in seen])
        games = np.concatenate([d.games for d in seen])
        seat = np.concatenate([d.seat for d in seen]).astype(np.int64)
        a_seat = result.seat_a[games]
        outcome = np.where(seat == a_seat, result.returns[games, 0], result.returns[games, 1])
        new = store.lookup(store.keys(obs)) < 0
        if not new.any():
            return 0
        probs = student.policy(obs[new], mask[new])
        entropy = -(probs * np.log(np.where(probs > 0, probs, 1.0))).sum(axis=1)
        share = float(self.uncertain_share or 0.0)
        k = max(1, math.ceil(share * int(new.sum())))
        pick = np.flatnonzero(new)[np.argsort(-entropy, kind="stable")[:k]]
        labels = np.asarray(teacher.policy(obs[pick], mask[pick]), dtype=np.float32)
        value = (np.asarray(teacher.value(obs[pick], mask[pick]), dtype=np.float32)
                 if teacher.has_value else np.full(len(pick), np.nan, dtype=np.float32))
        _, added = add_positions(store, obs[pick], mask[pick], labels, value,
                                 outcome[pick], rnd)
        return added


def standard_strategies(game: str | Game) -> list[Strategy]:
    """The five strategies of the module docstring, with lengths fitted to ``game``."""
    g = get_game(game)
    k = 2 if g.name == "tictactoe" else 4
    return [
        Strategy("teacher", {"teacher": 1.0}, self_play_teacher=True),
        Strategy("dagger", {"student": 1.0}),
        Strategy("panel", {"random": 0.5, "heuristic": 0.5}),
        Strategy(f"openings{k}", {"student": 1.0}, Openings(k, k)),
        Strategy("uncertain", {"student": 1.0}, uncertain_share=0.25),
    ]


class Exp3:
    """EXP3 (Auer et al., 2002): exponential weights over arms, with ``gamma`` of the
    probability mass spread uniformly so that every arm keeps being tried.

    Args:
        n_arms: number of arms.
        gamma: exploration share, in (0, 1].
    """

    def __init__(self, n_arms: int, gamma: float = 0.2) -> None:
        if n_arms < 1:
            raise TlmError(f"a bandit needs at least one arm, got {n_arms}")
        if not 0.0 < gamma <= 1.0:
            raise TlmError(f"gamma must lie in (0, 1], got {gamma}")
        self.gamma = gamma
        self.log_weights = np.zeros(n_arms)

    def probabilities(self) -> np.ndarray:
        """The probability of drawing each arm now."""
        w = np.exp(self.log_weights - self.log_weights.max())
        k = len(w)
        return (1.0 - self.gamma) * w / w.sum() + self.gamma / k

    def draw(self, rng: np.random.Generator) -> int:
        """An arm drawn from :meth:`probabilities`."""
        return int(rng.choice(len(self.log_weights), p=self.probabilities()))

    def update(self, arm: int, reward: float) -> None:
        """Credit ``arm`` with ``reward`` in [0, 1] (importance-weighted)."""
        if not 0.0 <= reward <= 1.0:
            raise TlmError(f"EXP3 rewards lie in [0, 1], got {reward}")
        p = self.probabilities()[arm]
        self.log_weights[arm] += self.gamma * (reward / p) / len(self.log_weights)


Probe = Callable[[StudentAgent], float]


def make_probe(game: Game, positions: PositionSet | None = None) -> Probe:
    """The fixed probe set: tic-tac-toe's optimal-move accuracy over every position, or
    the optimal-move rate on ``positions``."""
    if game.name == "tictactoe":
        return lambda student: optimal_move_accuracy(student)
    if positions is None:
        raise TlmError(f"a probe for {game.name} needs solver-labelled positions")
    return lambda student: float(
        evaluate_positions(student, positions, np.random.default_rng(0))["optimal"]["rate"])


def _perfect(student: StudentAgent) -> bool:
    return exhaustive_check(student, 0).losses + exhaustive_check(student, 1).losses == 0


def teach(
    game: str | Game,
    teacher: str,
    student_spec: str,
    strategy: str,
    *,
    seed: int = 0,
    label_budget: int = 20_000,
    max_rounds: int = 100,
    games_per_round: int = 20,
    steps_per_round: int = 100,
    recent_share: float = 0.5,
    fit: FitConfig | None = None,
    positions: PositionSet | None = None,
    target: float | None = None,
    strategies: list[Strategy] | None = None,
    gamma: float = 0.2,
    stage: Path | None = None,
    stop: Callable[[], bool] | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Teach a fresh student by one strategy, or by the bandit over all (``adaptive``),
    until it reaches the target or the label budget is spent.

    Args:
        game: the game.
        teacher: the teacher's spec.
        student_spec: the student's architecture.
        strategy: a strategy's name or ``adaptive``.
        seed: seeds the student, the games, the fit and the bandit.
        label_budget: stop once this many labels are spent.
        max_rounds: stop after this many rounds (a strategy whose games reach no new
            positions spends no labels).
        games_per_round: games each round.
        steps_per_round: gradient steps each round.
        recent_share: share of each batch drawn from the latest round's positions.
        fit: the fit's settings.
        positions: solver-labelled positions (the probe off tic-tac-toe).
        target: stop when the probe reaches this; on tic-tac-toe with ``None``, stop at
            perfect play (no lost line against any reply).
        strategies: the arms (default :func:`standard_strategies`).
        gamma: the bandit's exploration share.
        stage: checkpoint every round into this directory (:mod:`distill.resume`), and
            go on from the checkpoint found there (one of other settings is refused:
            :class:`arena.runstate.ResumeRefusedError`).
        stop: polled after each round's checkpoint; when it returns true and rounds are
            left, the run stops with :class:`distill.resume.RunInterrupted`.
        progress: called with each round's row of the curve.

    Returns:
        ``{"strategy", "labels", "rounds", "reached", "wall_s", "curve", "net"}``;
        ``labels`` is the labels spent when the target was reached (else ``None``),
        ``wall_s`` the seconds spent in rounds (over every resumed session), ``net`` the
        student network.
    """
    # What a checkpoint must share with the run that resumes it (only when checkpointing).
    settings = _settings(dict(locals())) if stage is not None else {}
    g = get_game(game)
    arms = strategies if strategies is not None else standard_strategies(g)
    names = [s.name for s in arms]
    if strategy != ADAPTIVE and strategy not in names:
        raise TlmError(f"unknown strategy {strategy!r} (known: {', '.join(names)}, adaptive)")
    teacher_agent = make_agent(teacher, g)
    if not isinstance(teacher_agent, PolicyAgent):
        raise TlmError(f"teacher {teacher!r} gives no policy to teach with")
    probe = make_probe(g, positions)
    net = build_student(student_spec, g, seed=seed)
    student = StudentAgent(net, greedy=True)
    sampler = StudentAgent(net, greedy=False)  # the student plays its own distribution
    fit_config = fit or DEFAULT_FIT
    optimizer = make_optimizer(net, fit_config)
    generator = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 7]))
    bandit = Exp3(len(arms), gamma)
    if stage is not None:
        check_resumable(stage, settings)
    loaded = (load_checkpoint(stage, net, optimizer, g.name, settings)
              if stage is not None else None)
    if loaded is None:
        if stage is not None:
            clear_checkpoints(stage)
        state, store = RunState(), PositionStore(g)
        labels, best_rate, score, reached = 0, 0.0, probe(student), None
    else:
        state, store = loaded
        try:
            bandit.log_weights = np.array(state.extra["log_weights"], dtype=np.float64)
            labels, best_rate, score, reached = (state.extra[k] for k in (
                "labels", "best_rate", "score", "reached"))
            rng.bit_generator.state = state.generators["numpy"]
            set_torch_generator_state(generator, state.generators["torch"])
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise TlmError(f"damaged checkpoint in {stage}: {e!r}") from None
    curve = state.curve
    for rnd in range(state.next_round, max_rounds):
        if state.done or labels >= label_budget:
            break
        start = time.perf_counter()
        probs = bandit.probabilities()
        arm = bandit.draw(rng) if strategy == ADAPTIVE else names.index(strategy)
        round_seed = int(np.random.SeedSequence([seed, rnd]).generate_state(1)[0])
        spent = arms[arm].collect(g, teacher_agent, sampler, games_per_round, round_seed,
                                  store, rnd)
        labels += spent
        if len(store):
            data = store.as_positions()
            fit_steps(net, g, data, sample_weights(store.last_round, rnd, recent_share),
                      steps_per_round, fit_config, optimizer, generator)
        after = probe(student)
        rate = (after - score) / max(spent, 1)
        best_rate = max(best_rate, rate)
        reward = min(1.0, max(0.0, rate / best_rate)) if best_rate > 0 else 0.0
        if strategy == ADAPTIVE:
            bandit.update(arm, reward)
        score = after
        done = (after >= target) if target is not None else (
            g.name == "tictactoe" and _perfect(student))
        if done:
            reached = labels
        state.wall_s += time.perf_counter() - start
        row = {
            "round": rnd, "strategy": names[arm], "labels": labels, "spent": spent,
            "probe": after, "reward": reward, "done": int(done),
            **{f"p_{n}": float(p) for n, p in zip(names, probs, strict=True)},
            "wall_s": state.wall_s,
        }
        curve.append(row)
        state.next_round, state.games, state.done = rnd + 1, state.games + games_per_round, done
        if stage is not None:
            state.extra = {"log_weights": bandit.log_weights.tolist(), "labels": labels,
                           "best_rate": best_rate, "score": score, "reached": reached}
            save_checkpoint(stage, state, net, optimizer, store, settings, {
                "numpy": rng.bit_generator.state, "torch": torch_generator_state(generator)})
        if progress is not None:
            progress(row)
        if (stop is not None and stop() and not done and state.next_round < max_rounds
                and labels < label_budget):
            raise RunInterrupted(state.next_round)
    return {"strategy": strategy, "labels": reached, "rounds": len(curve),
            "reached": reached is not None, "wall_s": state.wall_s,
            "curve": curve, "net": net}


def _settings(args: dict[str, Any]) -> dict[str, Any]:
    """What one call of :func:`teach` (its arguments ``args``) computes from, as JSON: a
    resumed run must share it with the run it resumes."""
    g = get_game(args["game"])
    arms = args["strategies"] if args["strategies"] is not None else standard_strategies(g)
    positions: PositionSet | None = args["positions"]
    found = {k: v for k, v in args.items() if k not in _NOT_SETTINGS}
    found.update(
        game=g.name,
        fit=dataclasses.asdict(args["fit"] or DEFAULT_FIT),
        strategies=[{**dataclasses.asdict(s), "mix": dict(s.mix)} for s in arms],
        positions=None if positions is None else {
            "source": positions.source, "count": len(positions),
            "sha256": hashlib.sha256(repr(positions.moves).encode()
                                     + np.ascontiguousarray(positions.scores).tobytes()
                                     ).hexdigest()},
    )
    return dict(json.loads(json.dumps(found, default=repr)))


def teach_run(out: str | Path, game: str | Game, teacher: str, student_spec: str,
              strategy: str = ADAPTIVE, *, resume: bool = True,
              **settings: Any) -> dict[str, Any]:
    """:func:`teach`, its outputs written to the new directory ``out``: ``student/``,
    ``curve.csv`` (every round's strategy, labels, probe and the bandit's
    probabilities), ``curve.png`` (probe against labels; the probabilities by round)
    and ``report.json``. The directory appears only once complete.

    Every round is checkpointed into the staging directory of ``out``; with ``resume``
    (the default) the same call after a kill, or after ``stop`` asked to stop, goes on
    from the last finished round. Without it, a kept checkpoint is removed.

    Returns:
        The report.

    Raises:
        arena.runstate.ResumeRefusedError: with ``resume``, the checkpoint kept for ``out`` was
            taken with other settings (it is left as it was).
    """
    g = get_game(game)
    check_output_dir(out)
    with staged_directory(out, resume=True) as stage:
        if not resume:
            clear_checkpoints(stage)
        result = teach(g, teacher, student_spec, strategy, stage=stage, **settings)
        save_student(result["net"], stage / "student", provenance={
            "method": f"curriculum:{strategy}", "teacher": teacher,
            "labels": result["curve"][-1]["labels"] if result["curve"] else 0,
        })
        curve = result["curve"]
        if curve:
            with open(stage / "curve.csv", "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=list(curve[0]))
                w.writeheader()
                w.writerows(curve)
            _plot(stage / "curve.png", curve)
        report = {k: v for k, v in result.items() if k not in ("net", "curve")}
        report.update({
            "game": g.name, "teacher": teacher, "student": student_spec,
            "labels_spent": curve[-1]["labels"] if curve else 0,
            "choices": {n: sum(c["strategy"] == n for c in curve)
                        for n in dict.fromkeys(c["strategy"] for c in curve)},
            "final_probe": curve[-1]["probe"] if curve else None,
        })
        write_json_atomic(stage / "report.json", report)
        clear_checkpoints(stage)
    return report


def _plot(path: Path, curve: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax_p) = plt.subplots(1, 2, figsize=(10, 4))
    ax.plot([c["labels"] for c in curve], [c["probe"] for c in curve], marker="o")
    ax.set_xlabel("labels spent")
    ax.set_ylabel("probe (optimal-move rate)")
    ax.grid(alpha=0.3)
    rounds = [c["round"] for c in curve]
    for key in (k for k in curve[0] if k.startswith("p_")):
        ax_p.plot(rounds, [c[key] for c in curve], label=key[2:])
    ax_p.set_xlabel("round")
    ax_p.set_ylabel("bandit probability")
    ax_p.legend(fontsize=7)
    ax_p.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
