"""Kickstarting: MaskablePPO self-play with a distillation term toward a teacher.

Kickstarting (Schmitt et al., 2018) trains a fresh student by reinforcement learning
while pulling its policy toward a teacher's on the states the student itself visits:
the loss is PPO's plus ``w * KL(teacher || student)``, with the weight ``w`` annealed
to zero so the student ends up optimizing its own return, free to outgrow the
teacher.

:class:`KickstartMaskablePPO` is sb3-contrib's ``MaskablePPO`` with that one change in
``train()``; its rollout buffer (:class:`KickstartRolloutBuffer`) carries the
teacher's probabilities for every stored position, computed once per rollout in one
batched teacher call. :func:`distill_kickstart` runs it through the same self-play
loop as the RL teacher (:func:`teachers.sb3.train_selfplay`), with the
student's MLP sizes and a fresh initialization.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch as th
from gymnasium import spaces
from sb3_contrib import MaskablePPO
from sb3_contrib.common.maskable.buffers import MaskableRolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.utils import explained_variance
from stable_baselines3.common.vec_env import VecNormalize
from torch.nn import functional

from arena.agents import make_agent
from arena.core import PolicyAgent, TlmError
from arena.evaluation import evaluate
from arena.games import Game, get_game
from arena.players import exact_strength
from arena.runstate import check_output_dir, staged_directory, write_json_atomic
from distill.losses import kl_teacher_student
from students.networks import parse_spec
from teachers.sb3 import SB3Agent, train_selfplay

if TYPE_CHECKING:
    from distill.config import DistillConfig

SCHEDULES = ("linear", "exponential")
"""How the distillation weight decays from ``w0`` to zero."""

EXPONENTIAL_FLOOR = 0.01
"""An exponential schedule reaches ``w0 * EXPONENTIAL_FLOOR`` at the end, then stops."""


def kickstart_weight(step: int, w0: float, anneal_steps: int, schedule: str = "linear") -> float:
    """The distillation weight after ``step`` learner steps.

    ``linear``: ``w0 * (1 - step / anneal_steps)``; ``exponential``:
    ``w0 * EXPONENTIAL_FLOOR ** (step / anneal_steps)``. Both are zero from
    ``anneal_steps`` on.

    Raises:
        TlmError: unknown schedule.
    """
    if schedule not in SCHEDULES:
        raise TlmError(f"unknown kickstart schedule {schedule!r} (known: {', '.join(SCHEDULES)})")
    if step >= anneal_steps:
        return 0.0
    frac = step / anneal_steps
    if schedule == "linear":
        return w0 * (1.0 - frac)
    return w0 * math.pow(EXPONENTIAL_FLOOR, frac)


class KickstartSamples(NamedTuple):
    """A minibatch of :class:`KickstartRolloutBuffer`: MaskablePPO's plus teacher probs."""

    observations: th.Tensor
    actions: th.Tensor
    old_values: th.Tensor
    old_log_prob: th.Tensor
    advantages: th.Tensor
    returns: th.Tensor
    action_masks: th.Tensor
    teacher_probs: th.Tensor


class KickstartRolloutBuffer(MaskableRolloutBuffer):
    """MaskablePPO's rollout buffer with the teacher's probabilities beside each position.

    ``teacher_probs`` (``[n_steps, n_envs, A]``) is filled by the algorithm once the
    rollout is complete and is shuffled and sliced along with everything else.
    """

    teacher_probs: np.ndarray

    def reset(self) -> None:
        super().reset()
        self.teacher_probs = np.zeros(
            (self.buffer_size, self.n_envs, self.mask_dims), dtype=np.float32
        )

    def get(self, batch_size: int | None = None) -> Generator[KickstartSamples, None, None]:  # type: ignore[override]
        if not self.generator_ready:
            # The parent flattens its own arrays the first time; this one goes along.
            self.teacher_probs = self.swap_and_flatten(self.teacher_probs)
        yield from super().get(batch_size)  # type: ignore[misc]

    def _get_samples(  # type: ignore[override]
        self, batch_inds: np.ndarray, env: VecNormalize | None = None
    ) -> KickstartSamples:
        base = super()._get_samples(batch_inds, env)
        return KickstartSamples(*base, teacher_probs=self.to_torch(self.teacher_probs[batch_inds]))


class KickstartMaskablePPO(MaskablePPO):
    """MaskablePPO whose loss adds ``w * KL(teacher || student)``, ``w`` annealed to zero.

    The teacher is any arena :class:`~arena.core.PolicyAgent` that reads observations
    (``perfect``, ``alphabeta:D``, a student, an SB3 agent). It labels the rollout
    buffer's positions with their action masks, once per rollout. It is not saved
    with the model: a saved kickstarted model loads as a plain MaskablePPO.

    Logged to SB3's logger: ``train/kickstart_weight`` and ``train/distill_loss`` (the
    mean KL over the last rollout's minibatches).
    """

    def __init__(
        self,
        policy: Any,
        env: Any,
        *,
        teacher: PolicyAgent,
        kickstart_w0: float = 1.0,
        kickstart_steps: int = 100_000,
        kickstart_schedule: str = "linear",
        kickstart_temperature: float = 1.0,
        **kwargs: Any,
    ) -> None:
        """Build the algorithm.

        Args:
            policy: the policy (``"MlpPolicy"``), as for MaskablePPO.
            env: the environment, as for MaskablePPO.
            teacher: the teacher agent.
            kickstart_w0: the distillation weight at step 0 (>= 0).
            kickstart_steps: learner steps over which the weight decays to zero (> 0).
            kickstart_schedule: ``linear`` or ``exponential``.
            kickstart_temperature: distillation temperature (see
                :func:`distill.losses.kl_teacher_student`).
            **kwargs: MaskablePPO's other arguments.

        Raises:
            TlmError: a teacher without a policy or one that needs the engine state,
                negative weight, non-positive steps or temperature, unknown schedule.
        """
        if not isinstance(teacher, PolicyAgent):
            raise TlmError(f"kickstarting needs a teacher with a policy, got {teacher!r}")
        if teacher.needs_state:
            raise TlmError(
                f"teacher {teacher.name!r} searches the engine state; kickstarting labels "
                f"observations only"
            )
        if not kickstart_w0 >= 0:
            raise TlmError(f"kickstart weight must be >= 0, got {kickstart_w0}")
        if kickstart_steps <= 0:
            raise TlmError(f"kickstart steps must be positive, got {kickstart_steps}")
        if not kickstart_temperature > 0:
            raise TlmError(f"kickstart temperature must be positive, got {kickstart_temperature}")
        kickstart_weight(0, kickstart_w0, kickstart_steps, kickstart_schedule)  # validates
        self.teacher = teacher
        self.kickstart_w0 = float(kickstart_w0)
        self.kickstart_steps = int(kickstart_steps)
        self.kickstart_schedule = kickstart_schedule
        self.kickstart_temperature = float(kickstart_temperature)
        kwargs.setdefault("rollout_buffer_class", KickstartRolloutBuffer)
        super().__init__(policy, env, **kwargs)

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "teacher"]

    def _label_rollout(self) -> None:
        """Fill the buffer's ``teacher_probs`` with one teacher call over all its positions."""
        buf = self.rollout_buffer
        assert isinstance(buf, KickstartRolloutBuffer)
        n, e = buf.buffer_size, buf.n_envs
        obs = buf.observations.reshape(n * e, *buf.obs_shape)
        mask = buf.action_masks.reshape(n * e, buf.mask_dims).astype(np.int8)
        probs = np.asarray(self.teacher.policy(obs, mask), dtype=np.float32)
        buf.teacher_probs[...] = probs.reshape(n, e, buf.mask_dims)

    def _student_logits(self, obs: th.Tensor) -> th.Tensor:
        """The actor's raw logits (the part of ``evaluate_actions`` that computes them)."""
        features = self.policy.extract_features(obs, self.policy.pi_features_extractor)
        assert isinstance(features, th.Tensor)
        return self.policy.action_net(self.policy.mlp_extractor.forward_actor(features))

    def train(self) -> None:
        """MaskablePPO's ``train`` plus the distillation term; changes marked "Kickstart"."""
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        clip_range = self.clip_range(self._current_progress_remaining)  # type: ignore[operator]
        if self.clip_range_vf is not None:
            clip_range_vf = self.clip_range_vf(self._current_progress_remaining)  # type: ignore[operator]

        # Kickstart: the weight for this whole update, from the steps collected so far;
        # the teacher is only asked while it still counts.
        weight = kickstart_weight(
            self.num_timesteps, self.kickstart_w0, self.kickstart_steps, self.kickstart_schedule
        )
        if weight > 0:
            self._label_rollout()
        distill_losses: list[float] = []

        entropy_losses = []
        pg_losses, value_losses = [], []
        clip_fractions = []

        continue_training = True

        for epoch in range(self.n_epochs):
            approx_kl_divs = []
            for rollout_data in self.rollout_buffer.get(self.batch_size):
                actions = rollout_data.actions
                if isinstance(self.action_space, spaces.Discrete):
                    actions = rollout_data.actions.long().flatten()

                values, log_prob, entropy = self.policy.evaluate_actions(
                    rollout_data.observations,
                    actions,
                    action_masks=rollout_data.action_masks,
                )

                values = values.flatten()
                advantages = rollout_data.advantages
                if self.normalize_advantage:
                    advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)

                ratio = th.exp(log_prob - rollout_data.old_log_prob)

                policy_loss_1 = advantages * ratio
                policy_loss_2 = advantages * th.clamp(ratio, 1 - clip_range, 1 + clip_range)
                policy_loss = -th.min(policy_loss_1, policy_loss_2).mean()

                pg_losses.append(policy_loss.item())
                clip_fraction = th.mean((th.abs(ratio - 1) > clip_range).float()).item()
                clip_fractions.append(clip_fraction)

                if self.clip_range_vf is None:
                    values_pred = values
                else:
                    values_pred = rollout_data.old_values + th.clamp(
                        values - rollout_data.old_values, -clip_range_vf, clip_range_vf
                    )
                value_loss = functional.mse_loss(rollout_data.returns, values_pred)
                value_losses.append(value_loss.item())

                # Approximated when the distribution has no analytical entropy.
                entropy_loss = -th.mean(-log_prob) if entropy is None else -th.mean(entropy)

                entropy_losses.append(entropy_loss.item())

                loss = policy_loss + self.ent_coef * entropy_loss + self.vf_coef * value_loss

                # Kickstart: the one change to MaskablePPO's loss.
                if weight > 0:
                    assert isinstance(rollout_data, KickstartSamples)
                    distill_loss = kl_teacher_student(
                        self._student_logits(rollout_data.observations),
                        rollout_data.teacher_probs,
                        rollout_data.action_masks,
                        self.kickstart_temperature,
                    )
                    distill_losses.append(distill_loss.item())
                    loss = loss + weight * distill_loss

                with th.no_grad():
                    log_ratio = log_prob - rollout_data.old_log_prob
                    approx_kl_div = th.mean((th.exp(log_ratio) - 1) - log_ratio).cpu().numpy()
                    approx_kl_divs.append(approx_kl_div)

                if self.target_kl is not None and approx_kl_div > 1.5 * self.target_kl:
                    continue_training = False
                    if self.verbose >= 1:
                        print(
                            f"Early stopping at step {epoch} due to reaching max kl: "
                            f"{approx_kl_div:.2f}"
                        )
                    break

                self.policy.optimizer.zero_grad()
                loss.backward()
                th.nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
                self.policy.optimizer.step()

            self._n_updates += 1
            if not continue_training:
                break
        explained_var = explained_variance(
            self.rollout_buffer.values.flatten(), self.rollout_buffer.returns.flatten()
        )

        self.logger.record("train/entropy_loss", np.mean(entropy_losses))
        self.logger.record("train/policy_gradient_loss", np.mean(pg_losses))
        self.logger.record("train/value_loss", np.mean(value_losses))
        self.logger.record("train/approx_kl", np.mean(approx_kl_divs))
        self.logger.record("train/clip_fraction", np.mean(clip_fractions))
        self.logger.record("train/loss", loss.item())
        self.logger.record("train/explained_variance", explained_var)
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/clip_range", clip_range)
        if self.clip_range_vf is not None:
            self.logger.record("train/clip_range_vf", clip_range_vf)
        # Kickstart: the weight used and the distillation loss it multiplied.
        self.logger.record("train/kickstart_weight", weight)
        if distill_losses:
            self.logger.record("train/distill_loss", float(np.mean(distill_losses)))


def student_net_arch(student_spec: str) -> list[int]:
    """SB3 ``net_arch`` with the hidden sizes of an ``mlp:WIDTHxLAYERS`` student spec.

    Raises:
        TlmError: a bad spec, or a convolutional one (SB3's policy here is an MLP).
    """
    spec = parse_spec(student_spec)
    if spec.arch != "mlp":
        raise TlmError(
            f"kickstarting trains an SB3 MLP policy; student spec {student_spec!r} is not "
            f"mlp:WIDTHxLAYERS"
        )
    return [spec.width] * spec.depth


def distill_kickstart(
    game: str | Game,
    teacher: str | PolicyAgent,
    student_spec: str,
    steps: int,
    seed: int,
    out_dir: str | Path,
    *,
    w0: float = 1.0,
    anneal_steps: int | None = None,
    schedule: str = "linear",
    temperature: float = 1.0,
    opponent_mix: Mapping[str, float] | None = None,
    n_envs: int = 8,
    ppo_kwargs: Mapping[str, Any] | None = None,
    eval_games: int = 200,
    callbacks: Sequence[BaseCallback] = (),
) -> KickstartMaskablePPO:
    """Kickstart a fresh MLP student from ``teacher`` by MaskablePPO self-play.

    The student is a freshly initialized SB3 MLP policy with the student spec's hidden
    sizes (never the teacher's weights). It trains exactly as
    :func:`teachers.sb3.train_selfplay` does (self-play against itself,
    its snapshots and ``random``), with ``w * KL(teacher || student)`` added to the loss
    on the positions it visits. Writes ``main/model.zip``, ``snapshots/`` and
    ``summary.json`` (with a ``kickstart`` entry) under ``out_dir``.

    Args:
        game: the game.
        teacher: an agent spec (``perfect``, ``alphabeta:4``) or a policy agent.
        student_spec: ``mlp:WIDTHxLAYERS``.
        steps: learner moves to train for.
        seed: the run's seed.
        out_dir: output directory.
        w0: initial distillation weight.
        anneal_steps: learner steps over which the weight decays to zero (default:
            half of ``steps``).
        schedule: ``linear`` or ``exponential``.
        temperature: distillation temperature.
        opponent_mix: weights of ``current``, ``past`` and ``random`` opponents.
        n_envs: environments stepped side by side.
        ppo_kwargs: MaskablePPO hyperparameters replacing the self-play defaults.
        eval_games: games against each reference opponent at the end (0: none).
        callbacks: more SB3 callbacks (one returning ``False`` ends training early).

    Returns:
        The trained model.

    Raises:
        TlmError: bad teacher, student spec or arguments.
    """
    g = get_game(game)
    agent = make_agent(teacher, g) if isinstance(teacher, str) else teacher
    if not isinstance(agent, PolicyAgent):
        raise TlmError(f"teacher {agent.name!r} has no policy to distill")
    net_arch = student_net_arch(student_spec)
    anneal = max(1, steps // 2) if anneal_steps is None else int(anneal_steps)
    kickstart = {
        "teacher": agent.name,
        "student": str(parse_spec(student_spec)),
        "w0": w0,
        "anneal_steps": anneal,
        "schedule": schedule,
        "temperature": temperature,
    }
    run = train_selfplay(
        g, steps, out_dir, seed, net_arch=net_arch, opponent_mix=opponent_mix,
        n_envs=n_envs, ppo_kwargs=ppo_kwargs, eval_games=eval_games,
        model_class=KickstartMaskablePPO,
        callbacks=callbacks,
        model_kwargs={
            "teacher": agent,
            "kickstart_w0": w0,
            "kickstart_steps": anneal,
            "kickstart_schedule": schedule,
            "kickstart_temperature": temperature,
        },
    )
    write_json_atomic(Path(out_dir) / "summary.json", {**run.summary, "kickstart": kickstart})
    model = run.model
    assert isinstance(model, KickstartMaskablePPO)
    return model


def distill_kickstart_run(
    config: DistillConfig, progress: Callable[[dict[str, Any]], None] | None = None
) -> dict[str, Any]:
    """``tlm distill --method kickstart``: :func:`distill_kickstart` from a distill config.

    Uses ``game``, ``teacher``, ``student``, ``seed``, ``kickstart_steps`` (learner
    steps; the weight anneals to zero over the first half), ``kickstart_weight``,
    ``distill_temperature``, ``eval_games`` and ``eval_opponents``. Everything is
    written to a temporary directory moved to ``config.out`` at the end, so a failed
    run leaves nothing behind.

    Returns:
        The report, also written as ``report.json``.
    """
    g = get_game(config.game)
    check_output_dir(config.out)
    opponents = [make_agent(s, g) for s in config.eval_opponents]
    with staged_directory(config.out) as tmp:
        start = time.perf_counter()
        model = distill_kickstart(
            g, config.teacher, config.student, config.kickstart_steps, config.seed, tmp,
            w0=config.kickstart_weight, temperature=config.distill_temperature, eval_games=0,
        )
        student = SB3Agent(model, game=g, greedy=True,
                           name=f"sb3:{config.out / 'main' / 'model.zip'}")
        final: dict[str, Any] = {"steps": int(model.num_timesteps)}
        for row in evaluate(g, student, opponents, config.eval_games, seed=config.seed + 1):
            if row.seat == "both":
                final[f"score_vs_{row.opponent}"] = row.score
        exact = exact_strength(g, student)
        if exact is not None:
            final["exhaustive_losses"] = int(exact["exhaustive_losses"])
            final["optimal_accuracy"] = float(exact["optimal_accuracy"])
        final["wall_s"] = time.perf_counter() - start
        if progress is not None:
            progress(final)
        summary = json.loads((tmp / "summary.json").read_text())
        report = {
            "game": g.name,
            "teacher": config.teacher,
            "student": config.student,
            "student_params": sum(p.numel() for p in model.policy.parameters()),
            "method": config.method,
            "seed": config.seed,
            "steps": final["steps"],
            "training_games": summary["games"],
            # PPO learns from every rollout; no round checks a target, so none is met.
            "labels_to_target": None,
            "wall_s": final["wall_s"],
            "final": final,
            "model": "main/model.zip",
            "config": config.model_dump(mode="json"),
        }
        write_json_atomic(tmp / "report.json", report)
    return report
