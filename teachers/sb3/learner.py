"""MaskablePPO (sb3-contrib) behind the learner protocol (:mod:`teachers.learner`).

:class:`SB3Learner` trains through the Gymnasium view of the arena
(:class:`teachers.sb3.gym_view.ArenaGymEnv`) against opponents picked from outside:
each training episode draws one of them from the env's own seeded generator, with the
given sampling weights. The self-play loop (:mod:`teachers.selfplay`) and a league's
loop drive it alike; :func:`sb3_plan` describes one for the self-play loop, and
:func:`train_selfplay` runs that loop with it (``tlm teach --algo maskable_ppo``, and
kickstarting with a subclass of MaskablePPO).

Resuming must give the same run as never stopping, so a learner keeps all its
randomness in a state it can write and read back: every :meth:`SB3Learner.train` call
draws a fresh seed from the learner's own generator, reseeds SB3 (which uses the
global generators by design) and the environments with it, and starts from fresh
games. The training state (:meth:`SB3Learner.save`) is the policy's and optimizer's
tensors (``torch.save``, read back with ``weights_only=True``) plus a JSON file of
counters and the generator's state; a snapshot is an SB3 zip (``sb3:PATH``), SB3's
own format for a frozen policy.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, SupportsFloat

import numpy as np
import torch
from sb3_contrib import MaskablePPO
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.vec_env import DummyVecEnv, VecMonitor

from arena.core import Agent, TlmError
from arena.games import Game, get_game
from arena.runstate import write_json_atomic
from teachers.learner import TrainReport, opponent_weights, using_torch_threads
from teachers.sb3.agent import SB3Agent
from teachers.sb3.gym_view import ArenaGymEnv, OpponentSource
from teachers.selfplay import LearnerPlan, SelfPlayConfig, run_selfplay

DEFAULT_PPO: Mapping[str, Any] = {
    "n_steps": 128,
    "batch_size": 256,
    "n_epochs": 8,
    "learning_rate": 1e-3,
    "gamma": 0.99,
    "gae_lambda": 0.95,
    "ent_coef": 0.01,
}
"""MaskablePPO hyperparameters used unless ``ppo_kwargs`` overrides them (per env:
``n_steps``; one rollout is ``n_steps * n_envs`` learner moves)."""

STATE_FILE = "learner.json"
"""Counters and generator state of a saved learner (JSON)."""

PARAMS_FILE = "params.pt"
"""Policy and optimizer tensors of a saved learner (``torch.save`` of plain tensors)."""


class _ReportingEnv(ArenaGymEnv):
    """The arena view, telling at the end of each game whom the learner played."""

    def step(self, action: Any) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = super().step(action)
        if terminated or truncated:
            info["opponent"] = self.opponent.name
        return obs, reward, terminated, truncated, info


class _Scores(BaseCallback):
    """Counts finished training games and the learner's score per opponent name."""

    def __init__(self) -> None:
        super().__init__()
        self.games = 0
        self.score: dict[str, float] = {}
        self.count: dict[str, int] = {}

    def _on_step(self) -> bool:
        for done, info in zip(self.locals["dones"], self.locals["infos"], strict=True):
            if not done:
                continue
            self.games += 1
            name = str(info.get("opponent", "?"))
            ret = float(info["episode"]["r"])
            points = 1.0 if ret > 0 else 0.5 if ret == 0 else 0.0
            self.score[name] = self.score.get(name, 0.0) + points
            self.count[name] = self.count.get(name, 0) + 1
        return True


def make_vec_env(game: str | Game, n_envs: int, opponent: OpponentSource | None = None
                 ) -> VecMonitor:
    """``n_envs`` arena views side by side (the learner's seat drawn per episode), each
    against ``opponent`` (an agent, or a sampler drawing one per episode; ``None``:
    ``random``), as SB3 steps them. Seeding is left to the model."""
    g = get_game(game)

    def build() -> ArenaGymEnv:
        return _ReportingEnv(g, opponent=opponent, seat="random")

    return VecMonitor(DummyVecEnv([build for _ in range(n_envs)]))


class _Callbacks(CallbackList):
    """SB3 callbacks run together, remembering whether one of them ended training."""

    stopped = False

    def _on_step(self) -> bool:
        go = super()._on_step()
        self.stopped = self.stopped or not go
        return go


class SB3Learner:
    """MaskablePPO (sb3-contrib) trained against opponents picked from outside.

    Attributes:
        name: the learner's name (in a league, or ``main`` in ``tlm teach``).
        backend: ``"sb3"``.
        game: the game.
        model: the MaskablePPO model (or subclass) being trained.
        games: training games finished since the learner was created.
        stopped_early: whether a callback ended the last :meth:`train` call early.
    """

    backend = "sb3"

    def __init__(
        self,
        name: str,
        game: str | Game,
        seed: int,
        *,
        net_arch: Sequence[int] = (64, 64),
        n_envs: int = 8,
        ppo_kwargs: Mapping[str, Any] | None = None,
        torch_threads: int | None = 1,
        model_class: type[MaskablePPO] = MaskablePPO,
        model_kwargs: Mapping[str, Any] | None = None,
        callbacks: Sequence[BaseCallback] = (),
    ) -> None:
        """Build a fresh learner.

        Args:
            name: the learner's name (its agent's name too).
            game: the game.
            seed: seeds the initial weights and the learner's generator.
            net_arch: hidden layer sizes of the policy and the value network.
            n_envs: games played side by side while training.
            ppo_kwargs: MaskablePPO hyperparameters replacing :data:`DEFAULT_PPO` entries.
            torch_threads: torch intra-op threads while training (``None``: leave them).
                Networks this small train several times faster on one thread than on
                several competing for the same cores.
            model_class: ``MaskablePPO`` or a subclass (kickstarting passes its own).
            model_kwargs: more constructor arguments of ``model_class``.
            callbacks: SB3 callbacks run in every :meth:`train` call (one returning
                ``False`` ends that call early, and sets :attr:`stopped_early`).

        Raises:
            TlmError: bad sizes, hyperparameters or thread count.
        """
        self.name = name
        self.game = get_game(game)
        if n_envs <= 0:
            raise TlmError(f"learner {name}: n_envs must be positive, got {n_envs}")
        if not net_arch or any(int(w) <= 0 for w in net_arch):
            raise TlmError(f"learner {name}: net_arch must be positive sizes, got {list(net_arch)}")
        if torch_threads is not None and torch_threads <= 0:
            raise TlmError(f"learner {name}: torch_threads must be positive, got {torch_threads}")
        self.torch_threads = torch_threads
        self.callbacks = list(callbacks)
        self.stopped_early = False
        self._rng = np.random.default_rng(np.random.SeedSequence(seed))
        self._opponents: list[Agent] = []
        self._weights: np.ndarray | None = None
        self.env = make_vec_env(self.game, n_envs, self._draw)
        hyper = {**DEFAULT_PPO, **(ppo_kwargs or {})}
        try:
            with using_torch_threads(torch_threads):
                self.model = model_class(
                    "MlpPolicy", self.env, seed=seed, device="cpu", verbose=0,
                    policy_kwargs={"net_arch": [int(w) for w in net_arch]}, **hyper,
                    **(model_kwargs or {}),
                )
        except (TypeError, ValueError) as error:
            self.env.close()
            raise TlmError(f"learner {name}: bad PPO settings ({error})") from None
        # No output formats: the last update's losses stay readable in name_to_value.
        self.model.set_logger(Logger(folder=None, output_formats=[]))
        self.games = 0
        self._agent = SB3Agent(self.model, game=self.game, greedy=True, name=name)

    def _draw(self, rng: np.random.Generator) -> Agent:
        if not self._opponents:
            raise TlmError(f"learner {self.name} has no opponents to train against")
        if len(self._opponents) == 1:
            return self._opponents[0]
        return self._opponents[int(rng.choice(len(self._opponents), p=self._weights))]

    @property
    def total_steps(self) -> int:
        """Learner moves trained on since the learner was created."""
        return int(self.model.num_timesteps)

    def train(
        self, steps: int, opponents: Sequence[Agent], weights: Sequence[float] | None = None
    ) -> TrainReport:
        """Train for ``steps`` learner moves (whole rollouts) against ``opponents``.

        Each episode's opponent is drawn with probabilities ``weights`` (uniform when
        ``None``) from the env's generator; every call starts from fresh games seeded
        from the learner's generator.

        Raises:
            TlmError: no opponents, bad weights or steps.
        """
        w = opponent_weights(self.name, steps, opponents, weights)
        self._opponents = list(opponents)
        self._weights = w
        scores = _Scores()
        start = time.perf_counter()
        before = self.total_steps
        with using_torch_threads(self.torch_threads):
            self.model.set_random_seed(int(self._rng.integers(2**31 - 1)))
            self.model._last_obs = None  # start from new games
            callbacks = _Callbacks([scores, *self.callbacks])
            self.model.learn(total_timesteps=steps, reset_num_timesteps=False,
                             callback=callbacks)
        self.stopped_early = callbacks.stopped
        self.games += scores.games
        extra = {
            key.split("/", 1)[1]: float(value)
            for key, value in self.model.logger.name_to_value.items()
            if key.startswith("train/")
        }
        if scores.games:
            extra["score"] = sum(scores.score.values()) / scores.games
        return TrainReport(
            steps=self.total_steps - before,
            games=scores.games,
            total_steps=self.total_steps,
            win_rate={k: scores.score[k] / scores.count[k] for k in sorted(scores.count)},
            wall_s=time.perf_counter() - start,
            extra=extra,
        )

    def snapshot(self, path: Path) -> str:
        """Write the current policy as ``path/model.zip``; return ``sb3:path/model.zip``."""
        path.mkdir(parents=True, exist_ok=False)
        self.model.save(path / "model.zip")
        return f"sb3:{path / 'model.zip'}"

    def agent(self) -> Agent:
        """The live policy, greedy, named after the learner."""
        return self._agent

    def save(self, path: Path) -> None:
        """Write weights, optimizer state, counters and the generator's state into ``path``."""
        path.mkdir(parents=True, exist_ok=True)
        torch.save(self.model.get_parameters(), path / PARAMS_FILE)
        write_json_atomic(path / STATE_FILE, {
            "name": self.name,
            "backend": self.backend,
            "game": self.game.name,
            "num_timesteps": self.total_steps,
            "n_updates": int(self.model._n_updates),
            "games": self.games,
            "rng": self._rng.bit_generator.state,
        })

    def restore(self, path: Path) -> None:
        """Read what :meth:`save` wrote.

        Raises:
            TlmError: missing or damaged files, or a state of another learner or game.
        """
        try:
            state = json.loads((path / STATE_FILE).read_text())
            params = torch.load(path / PARAMS_FILE, map_location="cpu", weights_only=True)
        except (OSError, ValueError, RuntimeError) as error:
            raise TlmError(f"cannot restore learner {self.name} from {path}: {error}") from None
        if state.get("backend") != self.backend or state.get("game") != self.game.name:
            raise TlmError(
                f"{path} holds a {state.get('backend')} learner for {state.get('game')}, "
                f"not an {self.backend} learner for {self.game.name}"
            )
        try:
            self.model.set_parameters(params, exact_match=True)
        except (ValueError, RuntimeError, KeyError) as error:
            raise TlmError(f"cannot restore learner {self.name} from {path}: {error}") from None
        self.model.num_timesteps = int(state["num_timesteps"])
        self.model._n_updates = int(state["n_updates"])
        self.games = int(state["games"])
        self._rng.bit_generator.state = state["rng"]

    def close(self) -> None:
        """Close the training environments."""
        self.env.close()




def sb3_plan(
    game: str | Game,
    seed: int,
    *,
    name: str = "main",
    net_arch: Sequence[int] = (64, 64),
    n_envs: int = 8,
    ppo_kwargs: Mapping[str, Any] | None = None,
    torch_threads: int | None = 1,
    model_class: type[MaskablePPO] = MaskablePPO,
    model_kwargs: Mapping[str, Any] | None = None,
    callbacks: Sequence[BaseCallback] = (),
) -> LearnerPlan:
    """An :class:`SB3Learner` for the self-play loop: its settings, its round (one
    rollout, ``n_steps * n_envs`` learner moves) and how to build it. The arguments are
    :class:`SB3Learner`'s.

    Raises:
        TlmError: bad sizes.
    """
    g = get_game(game)
    if n_envs <= 0:
        raise TlmError(f"n_envs must be positive, got {n_envs}")
    if not net_arch or any(int(w) <= 0 for w in net_arch):
        raise TlmError(f"net_arch must be positive layer sizes, got {list(net_arch)}")
    hyper = {**DEFAULT_PPO, **(ppo_kwargs or {})}
    n_steps = int(hyper["n_steps"])
    if n_steps <= 0:
        raise TlmError(f"n_steps must be positive, got {n_steps}")
    settings = json.loads(json.dumps({
        "model_class": model_class.__name__, "net_arch": [int(w) for w in net_arch],
        "n_envs": n_envs, "hyperparameters": {k: hyper[k] for k in sorted(hyper)},
    }, default=repr))

    def build() -> SB3Learner:
        return SB3Learner(name, g, seed, net_arch=net_arch, n_envs=n_envs, ppo_kwargs=ppo_kwargs,
                          torch_threads=torch_threads, model_class=model_class,
                          model_kwargs=model_kwargs, callbacks=callbacks)

    return LearnerPlan("maskable_ppo", settings, n_steps * n_envs, build)


@dataclass
class SelfPlayRun:
    """A finished MaskablePPO self-play run.

    Attributes:
        model: the trained model.
        summary: what the run wrote to ``summary.json``.
        model_path: the final model's zip.
    """

    model: MaskablePPO
    summary: dict[str, Any]
    model_path: Path


def train_selfplay(
    game: str | Game,
    steps: int,
    out_dir: str | Path,
    seed: int,
    *,
    net_arch: Sequence[int] = (64, 64),
    snapshot_every: int | None = None,
    opponent_mix: Mapping[str, float] | None = None,
    n_envs: int = 8,
    ppo_kwargs: Mapping[str, Any] | None = None,
    eval_games: int = 200,
    model_class: type[MaskablePPO] = MaskablePPO,
    model_kwargs: Mapping[str, Any] | None = None,
    torch_threads: int | None = 1,
    callbacks: Sequence[BaseCallback] = (),
    wall_limit_s: float | None = None,
    resume: bool = False,
    stop: Callable[[], bool] | None = None,
    resumed: Callable[[int], None] | None = None,
) -> SelfPlayRun:
    """Train MaskablePPO (or a subclass) by self-play in the one loop of
    :func:`teachers.selfplay.run_selfplay`: rounds of one rollout against its current
    policy, a past snapshot and ``random``.

    Writes ``out_dir/main/model.zip`` (the final model, loadable as
    ``sb3:out_dir/main/model.zip``), ``out_dir/snapshots/step_*/model.zip``,
    ``progress.csv`` and ``summary.json``. Same seed, same final weights (CPU). A
    callback that ends training early ends the run after that round.

    Args:
        game: the game.
        steps: learner moves to train for (whole rollouts).
        out_dir: output directory (created).
        seed: the run's seed.
        net_arch: hidden layer sizes of the policy and of the value network.
        snapshot_every: learner moves between snapshots.
        opponent_mix: weights of ``current``, ``past`` and ``random`` opponents.
        n_envs: environments stepped side by side.
        ppo_kwargs: MaskablePPO hyperparameters replacing :data:`DEFAULT_PPO` entries.
        eval_games: games against each reference opponent at the end (0: none).
        model_class: ``MaskablePPO`` or a subclass (kickstarting passes its own).
        model_kwargs: more constructor arguments of ``model_class``.
        torch_threads: torch intra-op threads while training (``None``: leave them).
        callbacks: SB3 callbacks run in every round.
        wall_limit_s: stop after the round that passes this many seconds of training.
        resume: checkpoint every round and go on from a checkpoint in ``out_dir``.
        stop: asked after every round; ``True`` stops the run there
            (:class:`arena.runstate.RunInterrupted`).
        resumed: called with the checkpoint's step when one is resumed.

    Returns:
        The run: model, summary and the final zip's path.

    Raises:
        TlmError: bad steps, sizes, mix or arguments.
    """
    g = get_game(game)
    plan = sb3_plan(g, seed, net_arch=net_arch, n_envs=n_envs, ppo_kwargs=ppo_kwargs,
                    torch_threads=torch_threads, model_class=model_class,
                    model_kwargs=model_kwargs, callbacks=callbacks)
    built: list[SB3Learner] = []

    def build() -> SB3Learner:
        learner = plan.build()
        assert isinstance(learner, SB3Learner)
        built.append(learner)
        return learner

    config = SelfPlayConfig(steps=steps, seed=seed, snapshot_every=snapshot_every,
                            opponent_mix=opponent_mix, eval_games=eval_games,
                            wall_limit_s=wall_limit_s)
    summary = run_selfplay(
        LearnerPlan(plan.algo, plan.settings, plan.round_steps, build), g, out_dir, config,
        resume=resume, stop=stop, resumed=resumed,
        until=lambda _: bool(built) and built[0].stopped_early,
    )
    return SelfPlayRun(built[0].model, summary, Path(out_dir) / "main" / "model.zip")
