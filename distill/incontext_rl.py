"""The reinforcement-learning arm of in-context learning: the same recurrent student
trained over the same population by recurrent PPO, from the series' results alone (no
best-response labels), to see whether adaptation to the opponent emerges from reward
(Wang et al. 2018, "Learning to reinforcement learn"), and at what cost in games.

Each iteration the student, sampling its policy, plays ``series_per_opponent`` series
of ``K`` games against every training member (:func:`distill.incontext_series.play_series`,
through :func:`arena.play_matches` with ``series=K``). The reward of a game, paid at its
end, is its result (+1, 0, -1) divided by ``K``, and the return of a decision runs to
the end of the series, so that what a game teaches about the opponent pays in the
games after it. Advantages are GAE over the student's decisions, with the value head
(the memory read after each decision) as the baseline. The update is PPO's clipped
objective on whole series (``forward_sequence``), over the legal moves only (the same
masked softmax the student plays), with an entropy bonus and the value loss, for a few
epochs of minibatches of series.

It is measured like the distilled student (:func:`distill.incontext_measures.final_measures`):
score by game index on the held-out families, the memory-reset control, losses to
``perfect`` and ``random``. It checkpoints after every iteration through
:mod:`arena.runstate`, so a killed run resumes to the same student.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from safetensors.torch import load_file as load_tensors
from safetensors.torch import save_file as save_tensors

from arena import TlmError, get_game, write_json_atomic
from arena.runstate import (
    RunInterrupted,
    clear_checkpoint,
    empty_directory,
    load_checkpoint,
    refuse_other_settings,
    save_checkpoint,
    settings_defaults,
    staged_directory,
    validated,
)
from distill.config import DistillConfig
from distill.incontext import (
    MAX_SERIES_LENGTH,
    population_of,
    series_schedule,
    series_teacher,
)
from distill.incontext_measures import (
    Players,
    curve_columns,
    derived_seed,
    final_measures,
    series_scores,
    target_checks,
)
from distill.incontext_series import SeriesBatch, play_series
from students import (
    RecurrentStudentAgent,
    RecurrentStudentNet,
    build_recurrent_student,
    masked_log_softmax,
    param_count,
    parse_spec,
    save_student,
)
from students.recurrent import DECISION, GAME_END
from students.training_state import load_optimizer, save_optimizer

FORMAT = "tlm-incontext-rl-checkpoint/1"


class RLConfig(BaseModel):
    """Everything a run of the reinforcement-learning arm needs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    game: str = Field("tictactoe", description="The game (tictactoe or connect_four).")
    student: str = Field("gru:128", description="The recurrent student's spec.")
    population: str | None = Field(None, description="The opponent population "
                                   "(default: the game's).")
    training: list[str] | None = Field(None, description="Training opponents' specs.")
    held_out: list[str] | None = Field(None, description="Held-out opponents' specs.")
    series: int = Field(10, ge=2, le=MAX_SERIES_LENGTH, description="Games per series.")
    iterations: int = Field(100, gt=0, description="PPO iterations (play, then update).")
    series_per_opponent: int = Field(16, gt=0, description="Series against each training "
                                     "opponent each iteration.")
    epochs: int = Field(4, gt=0, description="Passes over each iteration's series.")
    minibatch_series: int = Field(64, gt=0, description="Series per gradient step.")
    lr: float = Field(5e-4, gt=0, description="Adam's learning rate.")
    clip: float = Field(0.2, gt=0, description="PPO's ratio clip.")
    entropy: float = Field(0.01, ge=0, description="Weight of the entropy bonus.")
    value_weight: float = Field(0.5, ge=0, description="Weight of the value loss.")
    gamma: float = Field(1.0, gt=0, le=1, description="Discount per decision.")
    lam: float = Field(0.95, ge=0, le=1, description="GAE's lambda.")
    eval_series: int = Field(100, gt=0, description="Series against each held-out "
                             "opponent at each iteration's measure.")
    eval_every: int = Field(5, gt=0, description="Measure every this many iterations.")
    final_series: int = Field(1000, gt=0, description="Series against each held-out "
                              "opponent (and the reference and random) at the end.")
    seed: int = Field(0, ge=0, le=2**63 - 1, description="Seeds the student, the games "
                      "and the minibatches.")
    out: Path = Field(description="Output directory (new or empty).")


def make_rl_config(**fields: Any) -> RLConfig:
    """A validated config from fields (``None`` values take the defaults)."""
    return validated(RLConfig, {k: v for k, v in fields.items() if v is not None},
                     "incontext-rl")


def advantages(batch: SeriesBatch, values: np.ndarray, k: int, gamma: float, lam: float
               ) -> tuple[np.ndarray, np.ndarray]:
    """``(advantages, returns)`` ``[N, T]`` at the decisions of ``batch`` (zero
    elsewhere): GAE over each series' decisions, a game's result divided by ``k`` paid
    after its last decision, the value after the series' last decision zero."""
    n, t_len = batch.kind.shape
    adv = np.zeros((n, t_len), dtype=np.float64)
    for s in range(n):
        decisions = np.flatnonzero(batch.kind[s] == DECISION)
        ends = np.flatnonzero(batch.kind[s] == GAME_END)
        reward = np.zeros(len(decisions))
        # A game's reward goes to the last decision before its end.
        last = np.searchsorted(decisions, ends) - 1
        np.add.at(reward, last[last >= 0], batch.result[s, ends[last >= 0]] / k)
        v = values[s, decisions]
        following = np.append(v[1:], 0.0)
        delta = reward + gamma * following - v
        running = 0.0
        for i in range(len(decisions) - 1, -1, -1):
            running = delta[i] + gamma * lam * running
            adv[s, decisions[i]] = running
    returns = adv + np.where(batch.kind == DECISION, values, 0.0)
    return adv, returns


def ppo_update(net: RecurrentStudentNet, optimizer: torch.optim.Optimizer,
               batch: SeriesBatch, config: RLConfig, rng: np.random.Generator
               ) -> dict[str, float]:
    """PPO's clipped update on the iteration's series; the mean losses."""
    data = {f: torch.from_numpy(np.ascontiguousarray(getattr(batch, f)))
            for f in SeriesBatch.FIELDS}
    kind, result = data["kind"].long(), data["result"].float()
    at = kind == DECISION
    with torch.no_grad():
        logits, values = net.forward_sequence(data["obs"], kind, result)
    adv, returns = advantages(batch, values.numpy().astype(np.float64), config.series,
                              config.gamma, config.lam)
    # Everything below is per decision, in the order of the series' events.
    mask, actions = data["mask"][at], data["action"][at].long().unsqueeze(-1)
    old_logp = masked_log_softmax(logits[at], mask).gather(-1, actions).squeeze(-1)
    adv_t = torch.from_numpy(adv).float()[at]
    adv_t = (adv_t - adv_t.mean()) / (adv_t.std() + 1e-8)
    ret_t = torch.from_numpy(returns).float()[at]
    series_of = torch.arange(len(batch)).unsqueeze(1).expand_as(at)[at]
    totals = {"policy_loss": 0.0, "value_loss": 0.0, "entropy": 0.0}
    steps = 0
    n = len(batch)
    for _ in range(config.epochs):
        order = rng.permutation(n)
        for lo in range(0, n, config.minibatch_series):
            chosen = np.sort(order[lo : lo + config.minibatch_series])
            idx = torch.from_numpy(chosen)
            rows = torch.from_numpy(np.isin(series_of.numpy(), chosen))
            logits, values = net.forward_sequence(data["obs"][idx], kind[idx], result[idx])
            mb_at = at[idx]
            logp_all = masked_log_softmax(logits[mb_at], mask[rows])
            logp = logp_all.gather(-1, actions[rows]).squeeze(-1)
            ratio = torch.exp(logp - old_logp[rows])
            a = adv_t[rows]
            policy = -torch.min(ratio * a,
                                ratio.clamp(1 - config.clip, 1 + config.clip) * a).mean()
            # Illegal moves' log-probabilities are -inf: zero them before the product,
            # or its gradient would be 0 * inf.
            legal_logp = logp_all.masked_fill(mask[rows] == 0, 0.0)
            entropy = -(logp_all.exp() * legal_logp).sum(-1).mean()
            value = ((values[mb_at] - ret_t[rows]) ** 2).mean()
            loss = policy + config.value_weight * value - config.entropy * entropy
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            optimizer.step()
            totals["policy_loss"] += float(policy.detach())
            totals["value_loss"] += float(value.detach())
            totals["entropy"] += float(entropy.detach())
            steps += 1
    return {k: v / steps for k, v in totals.items()}


def _concat(batches: list[SeriesBatch]) -> SeriesBatch:
    return SeriesBatch(*(np.concatenate([getattr(b, f) for b in batches])
                         for f in SeriesBatch.FIELDS))


def train_incontext_rl(
    config: RLConfig,
    progress: Callable[[dict[str, Any]], None] | None = None,
    *,
    resume: bool = True,
    stop: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """Train the recurrent student by PPO as ``config`` says; write ``student/``,
    ``curve.csv`` and ``report.json`` to ``config.out`` (resumable like
    :func:`distill.incontext.train_incontext`)."""
    g = get_game(config.game)
    if parse_spec(config.student).arch != "gru":
        raise TlmError(f"the student must be recurrent (gru:HIDDEN), got {config.student!r}")
    population, training, held_out = population_of(config.population, config.training,
                                                   config.held_out, g)
    teachers = [series_teacher(a, cautious=False, game=g.name) for a in held_out]
    k = config.series
    settings = {"format": FORMAT, **config.model_dump(mode="json")}
    net = build_recurrent_student(config.student, g, config.seed)
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr)
    player = RecurrentStudentAgent(net, greedy=False)
    players = Players.of(net, None)

    with staged_directory(config.out, resume=True) as stage:
        loaded = load_checkpoint(stage) if resume else None
        state: dict[str, Any]
        if loaded is not None:
            directory, state = loaded
            refuse_other_settings(config.out, state.get("settings"), settings,
                                  defaults=settings_defaults(RLConfig))
            try:
                net.load_state_dict(load_tensors(str(directory / "student.safetensors")))
            except (OSError, RuntimeError, ValueError) as e:
                raise TlmError(f"damaged checkpoint {directory}: {e}") from None
            load_optimizer(optimizer, directory / "optimizer")
        else:
            empty_directory(stage)
            state = {"settings": settings, "next_iteration": 0, "games": 0, "wall_s": 0.0,
                     "curve": []}
        for it in range(state["next_iteration"], config.iterations):
            start = time.perf_counter()
            batches, scores = [], []
            for i, opponent in enumerate(training):
                batch, score = play_series(g, player, opponent, None,
                                           config.series_per_opponent, k,
                                           derived_seed(config.seed, 1, it, i))
                batches.append(batch)
                scores.append(score.mean())
            play_s = time.perf_counter() - start
            t = time.perf_counter()
            losses = ppo_update(net, optimizer, _concat(batches), config,
                                np.random.default_rng(derived_seed(config.seed, 2, it)))
            fit_s = time.perf_counter() - t
            state["games"] += len(training) * config.series_per_opponent * k
            row: dict[str, Any] = {"iteration": it, "games": state["games"],
                                   "train_score": float(np.mean(scores)), **losses}
            if (it + 1) % config.eval_every == 0 or it + 1 == config.iterations:
                for name, agent in players.named():
                    s = series_scores(g, agent, held_out, config.eval_series, k,
                                      derived_seed(config.seed, 3))
                    row.update(curve_columns(name, s.mean(axis=(0, 1))))
            state["wall_s"] += time.perf_counter() - start
            row.update({"play_s": play_s, "fit_s": fit_s, "wall_s": state["wall_s"]})
            state["curve"].append(row)
            state["next_iteration"] = it + 1

            def write(directory: Path) -> None:
                save_tensors({n: v.contiguous() for n, v in net.state_dict().items()},
                             str(directory / "student.safetensors"))
                (directory / "optimizer").mkdir()
                save_optimizer(optimizer, directory / "optimizer")

            save_checkpoint(stage, state, write)
            if progress is not None:
                progress(row)
            if stop is not None and stop() and it + 1 < config.iterations:
                raise RunInterrupted(f"stopped after iteration {it + 1} of "
                                     f"{config.iterations}; run it again to resume")
        t = time.perf_counter()
        final = final_measures(g, players, held_out, teachers, config.final_series, k,
                               derived_seed(config.seed, 5))
        save_student(net, stage / "student", provenance={
            "method": "incontext-rl", "population": population.name, "series": k,
            "seed": config.seed, "games": state["games"]})
        import csv

        keys: dict[str, None] = {}
        for r in state["curve"]:
            keys.update(dict.fromkeys(r))
        with open(stage / "curve.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(keys))
            w.writeheader()
            w.writerows(state["curve"])
        report = {
            "game": g.name, "method": "incontext-rl", "student": net.spec,
            "student_params": param_count(net),
            "population": {"name": population.name, "training": list(population.training),
                           "held_out": list(population.held_out)},
            "games": state["games"], "wall_s": state["wall_s"] + time.perf_counter() - t,
            "final": final, "targets": target_checks(final),
            "config": config.model_dump(mode="json"),
        }
        write_json_atomic(stage / "report.json", report)
        clear_checkpoint(stage)
    return report


REWARD = "reward"
"""The teacher that ``tlm distill --method incontext-rl`` names: none but the game's
reward."""


def incontext_rl_config(config: DistillConfig) -> RLConfig:
    """The run that ``tlm distill --method incontext-rl`` asks for: the game, student,
    seed, output, series length and learning rate of ``config`` as they are; its games
    (``budget_games``, ``games_per_round``) as iterations of series against every
    training opponent, and its ``eval_games`` as series against every held-out one.

    Raises:
        TlmError: a teacher other than the reward, or settings out of range.
    """
    if config.teacher != REWARD:
        raise TlmError(f"incontext-rl learns from the series' results alone (teacher "
                       f"{REWARD!r}), not from {config.teacher!r}")
    if config.forced_answers:
        raise TlmError("forced_answers sets when the in-context teacher may exploit; "
                       "incontext-rl has no teacher")
    iterations, per_opponent, eval_series = series_schedule(config, None)
    return make_rl_config(
        game=config.game, student=config.student, seed=config.seed, out=config.out,
        series=config.series, lr=config.lr, iterations=iterations,
        series_per_opponent=per_opponent, eval_series=eval_series,
    )


def distill_incontext_rl_run(
    config: DistillConfig, progress: Callable[[dict[str, Any]], None] | None = None, *,
    resume: bool = True, stop: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """``tlm distill --method incontext-rl``: :func:`train_incontext_rl` with the settings
    of :func:`incontext_rl_config`."""
    return train_incontext_rl(incontext_rl_config(config), progress, resume=resume, stop=stop)
