"""The RLlib learner: multi-agent PPO self-play on RLlib's new API stack.

:class:`RLlibLearner` implements the learner protocol (:mod:`teachers.learner`) with
RLlib PPO, so ``tlm teach --algo rllib_ppo`` and league learners with
``backend: rllib`` train the same way. :func:`train_rllib_selfplay` is ``tlm teach``'s
loop: the learner against its own snapshots and ``random``.

How the opponents are played. The env is the arena's PettingZoo env of the game
(``observation`` renamed ``observations``, RLlib's convention for masked
observations) wrapped by RLlib's ``PettingZooEnv``, inside :class:`SelfPlayEnv`,
a ``MultiAgentEnv`` whose agent ids *are* module ids: ``main`` (trained) and the
frozen slots ``opp_0 .. opp_{K-1}`` (``policies_to_train=["main"]``; the policy
mapping is the identity). Every episode draws, from the env's own seeded generator,
the learner's seat and one opponent of the current table:

- an opponent that is a tlm RLlib module of the same architecture (a snapshot of this
  or another RLlib learner, or the live learner itself) is copied into a module slot
  and plays through RLlib, batched with everything else;
- any other arena agent (``random``, ``perfect``, ``alphabeta:4``, an SB3 snapshot,
  a student, an RLlib module beyond the K slots) plays *inside* the env: its seat is
  never exposed to RLlib, and the env answers the learner's moves with the agent's
  moves itself.

Before each :meth:`RLlibLearner.train` the chosen snapshots' weights are written into
the slots of both the learner group (``learner_group.set_weights``) and every env
runner (``foreach_env_runner(..., local_env_runner=True)``). Both are needed on Ray
2.60: modules added with ``add_module`` + ``set_state`` act with random weights for an
iteration (RLlib issue #61960), and after every update the env runners' frozen
modules are re-synced from the learner, so a slot written only into the env runners
is overwritten by the learner's copy. :meth:`RLlibLearner.acting_weights` reads what
the env runners act with, and the tests check it against the snapshot after every
slot change.

Each train() call starts new games (``sample(num_timesteps=0, force_reset=True)``
on every env runner), so no game spans two calls and no game sees its opponent's
slot change under it.

Randomness: the learner's seed seeds RLlib (``debugging(seed=...)``: the modules'
initial weights, built in a fixed order) and the learner's own generator. Every
train() call draws fresh seeds from that generator for each env (seats, opponents,
inside opponents' moves) and for the global generators RLlib samples actions and
shuffles minibatches with. So with ``num_env_runners=0`` (the default: sampling in
this process) a seed gives the same run, and ``save``/``restore`` (weights, Adam
state, counters, the generator) continue exactly as a learner that never stopped;
PPO's adaptive KL penalty is off (clipping only, as MaskablePPO) because RLlib keeps
its coefficient outside the learner state. Not under tlm's control: RLlib's episode
ids (random, unused by tlm), and with remote env runners the order their samples
arrive in.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

# Ray reads this when it starts; a local Ray for one process needs no token.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

from ray.rllib.env.multi_agent_env import MultiAgentEnv  # noqa: E402

from arena.agents import RandomAgent, make_agent
from arena.core import Agent, TlmError
from arena.evaluation import evaluate
from arena.games import Game, get_game
from arena.runners import start_local_ray
from arena.runstate import write_bytes_atomic, write_json_atomic
from teachers.learner import TrainReport, opponent_weights, using_torch_threads
from teachers.resume import (
    read_checkpoint,
    refuse_other_settings,
    remove_checkpoints,
    remove_run_files,
    write_checkpoint,
)
from teachers.rllib_checkpoint import (
    RLlibAgent,
    build_module,
    fill_strict,
    full_model_config,
    game_spaces,
    load_rllib_agent,
    quiet_rllib,
    save_module,
)

MAIN = "main"
"""Module id of the policy being trained."""

STATE_FILE = "learner.json"
MODULES_FILE = "modules.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"


def slot_id(i: int) -> str:
    """Module id of frozen opponent slot ``i``."""
    return f"opp_{i}"


class RLlibPPOSettings(BaseModel):
    """RLlib PPO settings of an RLlib learner (one ``train()`` iteration = one batch)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    hidden: list[int] = Field(
        default_factory=lambda: [64, 64], min_length=1,
        description="Hidden layer sizes of the policy and of the (separate) value network.")
    train_batch_size: int = Field(
        default=2048, gt=0,
        description="Env steps (both seats' moves) sampled per training iteration.")
    minibatch_size: int = Field(default=256, gt=0, description="Minibatch size of each SGD step.")
    num_epochs: int = Field(default=8, gt=0, description="Passes over each training batch.")
    lr: float = Field(default=1e-3, gt=0, description="Adam step size.")
    gamma: float = Field(default=0.99, gt=0, le=1, description="Discount factor.")
    lambda_: float = Field(default=0.95, ge=0, le=1, description="GAE lambda.")
    entropy_coeff: float = Field(default=0.01, ge=0, description="Entropy bonus weight.")
    vf_loss_coeff: float = Field(default=0.5, ge=0, description="Value loss weight.")
    clip_param: float = Field(default=0.2, gt=0, description="PPO clipping range.")
    grad_clip: float | None = Field(
        default=0.5, gt=0, description="Gradient norm clip (null: none).")
    n_slots: int = Field(default=2, ge=1, description="Frozen opponent module slots (opp_0..).")
    num_env_runners: int = Field(
        default=0, ge=0, description="Remote env runners (0: sample in this process).")
    num_envs_per_env_runner: int = Field(
        default=32, gt=0, description="Games side by side per runner.")
    torch_threads: int | None = Field(
        default=1, gt=0, description="Torch threads while training (null: leave torch's setting).")

    @field_validator("hidden")
    @classmethod
    def _positive_sizes(cls, v: list[int]) -> list[int]:
        if any(w <= 0 for w in v):
            raise ValueError(f"layer sizes must be positive, got {v}")
        return v

    def model_config_dict(self) -> dict[str, Any]:
        """The full RLlib model_config of the modules."""
        return full_model_config({
            "fcnet_hiddens": list(self.hidden), "fcnet_activation": "tanh",
            "vf_share_layers": False,
        })


_SB3_TO_RLLIB = {
    "batch_size": "minibatch_size", "n_epochs": "num_epochs", "learning_rate": "lr",
    "gamma": "gamma", "gae_lambda": "lambda_", "ent_coef": "entropy_coeff",
    "vf_coef": "vf_loss_coeff", "clip_range": "clip_param", "max_grad_norm": "grad_clip",
}
"""A league learner config's PPO names (SB3's) -> :class:`RLlibPPOSettings` fields."""


# -- Ray ---------------------------------------------------------------------------------


_RAY_USERS: list[int] = []
"""One entry per open learner using the local Ray a learner of this module started."""


def _acquire_ray(num_cpus: int) -> bool:
    """Use the running Ray, or start a quiet local one; return whether this module owns it.

    A started Ray is :func:`arena.runners.start_local_ray`'s (``address="local"``, never
    another process's); it stops when the last learner using it closes.
    """
    import ray

    if _RAY_USERS:
        _RAY_USERS.append(1)
        return True
    if ray.is_initialized():
        return False
    start_local_ray(num_cpus)
    _RAY_USERS.append(1)
    return True


def _release_ray() -> None:
    import ray

    if _RAY_USERS:
        _RAY_USERS.pop()
        if not _RAY_USERS:
            ray.shutdown()


# -- the env -----------------------------------------------------------------------------


def _renamed_env(game: Game) -> Any:
    """The game's PettingZoo AEC env with ``observation`` renamed ``observations``."""
    from gymnasium import spaces
    from pettingzoo.utils.wrappers import BaseWrapper

    class ObservationsKey(BaseWrapper):
        def observation_space(self, agent: str) -> Any:
            space = self.env.observation_space(agent)
            return spaces.Dict({
                "observations": space["observation"], "action_mask": space["action_mask"],
            })

        def observe(self, agent: str) -> Any:
            obs = self.env.observe(agent)
            return None if obs is None else {
                "observations": obs["observation"], "action_mask": obs["action_mask"],
            }

    return ObservationsKey(game.make_env())


class _Opponent:
    """One entry of the opponent table: a module slot, or an arena agent played inside."""

    __slots__ = ("agent", "module_id", "name")

    def __init__(self, name: str, module_id: str | None = None, agent: Agent | None = None):
        self.name = name
        self.module_id = module_id
        self.agent = agent


class SelfPlayEnv(MultiAgentEnv):
    """Two-seat self-play over RLlib's ``PettingZooEnv``; agent ids are module ids.

    ``env_config``: ``game`` (name) and ``n_slots``. The opponent table is set with
    :meth:`set_opponents`; until then every episode is against ``random`` (inside).
    Each finished game is recorded for :meth:`drain`.
    """

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        from ray.rllib.env.wrappers.pettingzoo_env import PettingZooEnv

        config = dict(config or {})
        self.game = get_game(config["game"])
        self.slots = [slot_id(i) for i in range(int(config.get("n_slots", 1)))]
        self._pz = PettingZooEnv(_renamed_env(self.game))
        # PettingZooEnv orders agents through a set; the seats' order is the AEC env's.
        self.seats: list[str] = list(self._pz.env.possible_agents)
        self.possible_agents = [MAIN, *self.slots]
        obs_space = self._pz.env.observation_space(self.seats[0])
        act_space = self._pz.env.action_space(self.seats[0])
        self.observation_spaces = dict.fromkeys(self.possible_agents, obs_space)
        self.action_spaces = dict.fromkeys(self.possible_agents, act_space)
        self.agents = []
        self._table: list[_Opponent] = [_Opponent("random", agent=RandomAgent())]
        self._probs = np.ones(1)
        self._rng = np.random.default_rng(0)
        self._seeded = False
        self._ids: dict[str, str | None] = {}
        self._inside: Agent | None = None
        self._opponent = ""
        self.main_steps = 0
        self.results: list[tuple[str, float]] = []

    def set_opponents(self, table: Sequence[_Opponent], probs: np.ndarray) -> None:
        """Use ``table`` from the next episode on, drawn with probabilities ``probs``."""
        self._table = list(table)
        self._probs = np.asarray(probs, dtype=np.float64)

    def drain(self) -> tuple[int, list[tuple[str, float]]]:
        """``(main's moves, [(opponent, main's reward)] of finished games)`` since the last call."""
        out = (self.main_steps, self.results)
        self.main_steps, self.results = 0, []
        return out

    def reseed(self, seed: int) -> None:
        """Draw seats and opponents from a generator seeded with ``seed`` from now on."""
        self._rng = np.random.default_rng(seed)
        self._seeded = True

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[Any, Any], dict[Any, Any]]:
        if seed is not None and not self._seeded:
            # RLlib's env seed counts only until the learner first reseeds the env
            # (before each train()); later draws continue from the env's generator.
            self.reseed(seed)
        k = int(self._rng.choice(len(self._table), p=self._probs)) if len(self._table) > 1 else 0
        opponent = self._table[k]
        main_seat = int(self._rng.integers(2))
        self._opponent = opponent.name
        self._inside = opponent.agent if opponent.module_id is None else None
        self._ids = {
            self.seats[main_seat]: MAIN,
            self.seats[1 - main_seat]: opponent.module_id,
        }
        self.agents = [m for m in self._ids.values() if m is not None]
        obs, infos = self._pz.reset(seed=int(self._rng.integers(2**31 - 1)))
        obs, _, _, _, infos = self._play_inside(obs, {}, {}, {}, infos or {})
        return self._rename(obs), self._rename(infos)

    def step(self, action_dict: dict[Any, Any]) -> tuple[Any, ...]:
        mover = self._pz.env.agent_selection
        module_id = self._ids.get(mover)
        if module_id is None:
            raise TlmError(f"{mover} is played inside the env, not by RLlib")
        if module_id == MAIN:
            self.main_steps += 1
        result = self._pz.step({mover: action_dict[module_id]})
        obs, rew, term, trunc, infos = self._play_inside(*result)
        done = bool(term.get("__all__") or trunc.get("__all__"))
        if done:
            main_seat = next(s for s, m in self._ids.items() if m == MAIN)
            self.results.append((self._opponent, float(rew.get(main_seat, 0.0))))
        out_term = {**self._rename(term), "__all__": bool(term.get("__all__", False))}
        out_trunc = {**self._rename(trunc), "__all__": bool(trunc.get("__all__", False))}
        return self._rename(obs), self._rename(rew), out_term, out_trunc, self._rename(infos)

    def _play_inside(
        self, obs: dict[str, Any], rew: dict[str, Any], term: dict[str, Any],
        trunc: dict[str, Any], infos: dict[str, Any],
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]]:
        """Play the inside opponent's moves until it is an exposed seat's turn or the end."""
        rew, term, trunc = dict(rew), dict(term), dict(trunc)
        while (
            self._inside is not None
            and self._pz.env.agents
            and not term.get("__all__")
            and self._ids.get(self._pz.env.agent_selection) is None
        ):
            seat = self._pz.env.agent_selection
            o = obs[seat]
            action = self._inside.act(
                np.asarray(o["observations"])[None], np.asarray(o["action_mask"])[None],
                self._rng,
            )
            obs, r2, t2, tr2, i2 = self._pz.step({seat: int(action[0])})
            # The learner's reward arrives with its next observation or at the end; keep
            # any reward reported to it while the inside opponent moved.
            for key, value in r2.items():
                rew[key] = rew.get(key, 0.0) + value
            term.update(t2)
            trunc.update(tr2)
            infos = i2
        return obs, rew, term, trunc, infos

    def _rename(self, d: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for seat, value in d.items():
            module_id = self._ids.get(seat)
            if module_id is not None:
                out[module_id] = value
        return out


# -- the learner -------------------------------------------------------------------------


def _env_drain(runner: Any) -> list[tuple[int, list[tuple[str, float]]]]:
    env = getattr(runner, "env", None)
    if env is None:
        return []
    return [e.unwrapped.drain() for e in env.envs]


class RLlibLearner:
    """RLlib PPO (new API stack) trained against opponents chosen from outside.

    Attributes:
        name: the learner's name (its agent's name too).
        backend: ``"rllib"``.
        game: the game.
        settings: its PPO settings.
        algo: the RLlib ``Algorithm``.
        games: training games finished since the learner was created.
        total_steps: learner moves trained on since the learner was created.
    """

    backend: ClassVar[str] = "rllib"

    def __init__(
        self,
        name: str,
        game: str | Game,
        seed: int,
        settings: RLlibPPOSettings | None = None,
        *,
        ray_cpus: int = 2,
    ) -> None:
        """Build a fresh learner (starting a quiet local Ray if none runs here).

        Args:
            name: the learner's name.
            game: the game.
            seed: seeds RLlib (initial weights, sampling) and the learner's generator.
            settings: PPO settings (defaults: :class:`RLlibPPOSettings`).
            ray_cpus: CPUs of the local Ray started when none is running.

        Raises:
            TlmError: settings RLlib refuses.
        """
        self.name = name
        self.game = get_game(game)
        self.settings = settings or RLlibPPOSettings()
        self.seed = seed
        self._rng = np.random.default_rng(np.random.SeedSequence(seed))
        self.model_config = self.settings.model_config_dict()
        self.games = 0
        self.total_steps = 0
        self._owns_ray = _acquire_ray(ray_cpus)
        try:
            with quiet_rllib(), using_torch_threads(self.settings.torch_threads), \
                    warnings.catch_warnings():
                # RLlib registers its env id with gymnasium once per algorithm.
                warnings.filterwarnings("ignore", message=".*Overriding environment")
                self.algo = self._config().build_algo()
        except Exception:
            self._shutdown_ray()
            raise
        self._live = build_module(self.model_config, self.game)
        self._agent = RLlibAgent(self._live, self.game, self.model_config, name=name)
        self._sync_live()

    @classmethod
    def from_league_config(
        cls, config: Any, game: str | Game, directory: Path, seed: int
    ) -> RLlibLearner:
        """A learner from a league's learner config (``teachers.league_run.LearnerConfig``).

        Its ``ppo`` settings use SB3's names; ``n_steps * n_envs`` is the training batch.
        """
        ppo = {k: v for k, v in config.ppo.model_dump().items() if v is not None}
        fields: dict[str, Any] = {"hidden": list(config.net_arch),
                                  "num_envs_per_env_runner": int(config.n_envs)}
        n_steps = ppo.pop("n_steps", None)
        if n_steps is not None:
            fields["train_batch_size"] = int(n_steps) * int(config.n_envs)
        for key, value in ppo.items():
            fields[_SB3_TO_RLLIB[key]] = value
        try:
            settings = RLlibPPOSettings(**fields)
        except ValueError as error:
            raise TlmError(f"learner {config.name!r}: bad RLlib settings ({error})") from None
        return cls(config.name, game, seed, settings)

    def _config(self) -> Any:
        from ray.rllib.algorithms.ppo import PPOConfig
        from ray.rllib.core.rl_module.multi_rl_module import MultiRLModuleSpec
        from ray.rllib.core.rl_module.rl_module import RLModuleSpec

        from teachers.rllib_module import MaskedPPOTorchRLModule

        s = self.settings
        obs_space, act_space = game_spaces(self.game)
        ids = [MAIN, *(slot_id(i) for i in range(s.n_slots))]
        specs = {
            mid: RLModuleSpec(
                module_class=MaskedPPOTorchRLModule, observation_space=obs_space,
                action_space=act_space, model_config=dict(self.model_config),
            )
            for mid in ids
        }
        minibatch = min(s.minibatch_size, s.train_batch_size)
        return (
            PPOConfig()
            .api_stack(enable_rl_module_and_learner=True, enable_env_runner_and_connector_v2=True)
            .framework("torch")
            .environment(
                SelfPlayEnv, env_config={"game": self.game.name, "n_slots": s.n_slots},
                disable_env_checking=True,
            )
            .env_runners(
                num_env_runners=s.num_env_runners,
                num_envs_per_env_runner=s.num_envs_per_env_runner,
                num_cpus_per_env_runner=1,
                rollout_fragment_length="auto",
            )
            .learners(num_learners=0)
            .training(
                train_batch_size_per_learner=s.train_batch_size, minibatch_size=minibatch,
                num_epochs=s.num_epochs, lr=s.lr, gamma=s.gamma, lambda_=s.lambda_,
                entropy_coeff=s.entropy_coeff, vf_loss_coeff=s.vf_loss_coeff,
                clip_param=s.clip_param, grad_clip=s.grad_clip,
                # Clipping only, as SB3's MaskablePPO: RLlib's adaptive KL coefficient
                # is learner state that its get_state() leaves out, so a restored
                # learner would not continue exactly.
                use_kl_loss=False,
            )
            .multi_agent(
                # A list, not a set: RLlib builds (and randomly initializes) the modules
                # in this order, and a set's order changes with Python's hash seed.
                policies=ids, policy_mapping_fn=_identity_mapping,
                policies_to_train=[MAIN],
            )
            .rl_module(rl_module_spec=MultiRLModuleSpec(rl_module_specs=specs))
            .debugging(seed=self.seed, log_level="ERROR")
            .reporting(metrics_num_episodes_for_smoothing=1)
        )

    # -- weights -------------------------------------------------------------------------

    def main_weights(self) -> dict[str, np.ndarray]:
        """The trained module's weights, as the learner holds them."""
        return dict(self.algo.learner_group.get_weights([MAIN])[MAIN])

    def _sync_live(self) -> None:
        fill_strict(self._live, self.main_weights(), f"learner {self.name}")
        self._live.eval()

    def set_slot(self, module_id: str, weights: Mapping[str, Any]) -> None:
        """Write ``weights`` into the slot ``module_id`` of the learner group and every env runner.

        Raises:
            TlmError: weights that do not fill the module exactly.
        """
        state = {k: np.asarray(v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else v)
                 for k, v in weights.items()}
        fill_strict(build_module(self.model_config, self.game), state, f"slot {module_id}")
        self.algo.learner_group.set_weights({module_id: state})

        def write(runner: Any) -> None:
            module = getattr(runner, "module", None)
            if module is not None and module_id in module:
                module[module_id].set_state(state)

        self.algo.env_runner_group.foreach_env_runner(write, local_env_runner=True)

    def acting_weights(self, module_id: str) -> list[dict[str, np.ndarray]]:
        """The weights each env runner acts with for ``module_id`` (those with a module)."""

        def read(runner: Any) -> dict[str, np.ndarray] | None:
            module = getattr(runner, "module", None)
            if module is None or module_id not in module:
                return None
            return {k: np.asarray(v) for k, v in module[module_id].get_state().items()}

        results = self.algo.env_runner_group.foreach_env_runner(read, local_env_runner=True)
        return [r for r in results if r is not None]

    def _compatible(self, agent: Agent) -> bool:
        return (
            isinstance(agent, RLlibAgent)
            and agent.game == self.game.name
            and full_model_config(agent.model_config) == self.model_config
        )

    # -- protocol ------------------------------------------------------------------------

    def train(
        self, steps: int, opponents: Sequence[Agent], weights: Sequence[float] | None = None
    ) -> TrainReport:
        """Train for at least ``steps`` learner moves (whole iterations) against ``opponents``.

        RLlib modules of this architecture go into the slots (in order, up to
        ``n_slots``); every other opponent plays inside the env. Each episode draws
        its opponent with probabilities ``weights`` (uniform when ``None``).

        Raises:
            TlmError: no opponents, bad weights or steps.
        """
        w = opponent_weights(self.name, steps, opponents, weights)
        start = time.perf_counter()
        table = self._assign(opponents)
        probs = w
        seeds = self._rng.integers(2**31 - 1, size=64)

        def install(runner: Any) -> None:
            from ray.rllib.utils.debug import update_global_seed_if_necessary

            env = getattr(runner, "env", None)
            if env is None:
                return
            base = int(seeds[runner.worker_index % len(seeds)])
            # RLlib samples actions (and shuffles minibatches) with the global generators;
            # reseeding them per call from the learner's generator makes a restored learner
            # continue exactly as one that never stopped.
            update_global_seed_if_necessary("torch", base)
            for i, e in enumerate(env.envs):
                e.unwrapped.set_opponents(table, probs)
                e.unwrapped.reseed(base + 1 + i)
            # Start new games: none spans two train() calls, so no game sees its
            # opponent's slot change under it (the cut games' first parts were trained on).
            runner.sample(num_timesteps=0, force_reset=True)
            for e in env.envs:
                e.unwrapped.drain()

        self.algo.env_runner_group.foreach_env_runner(install, local_env_runner=True)
        done_steps = 0
        results: list[tuple[str, float]] = []
        extra: dict[str, float] = {}
        with quiet_rllib(), using_torch_threads(self.settings.torch_threads):
            while done_steps < steps:
                out = self.algo.train()
                for runner_stats in self.algo.env_runner_group.foreach_env_runner(
                    _env_drain, local_env_runner=True
                ):
                    for n, games in runner_stats:
                        done_steps += n
                        results.extend(games)
                extra = _learner_scalars(out)
        self.total_steps += done_steps
        self.games += len(results)
        self._sync_live()
        score: dict[str, list[float]] = {}
        for opponent, reward in results:
            points = 1.0 if reward > 0 else 0.5 if reward == 0 else 0.0
            score.setdefault(opponent, []).append(points)
        if results:
            extra["score"] = float(np.mean([s for v in score.values() for s in v]))
        return TrainReport(
            steps=done_steps, games=len(results), total_steps=self.total_steps,
            win_rate={k: float(np.mean(v)) for k, v in sorted(score.items())},
            wall_s=time.perf_counter() - start, extra=extra,
        )

    def _assign(self, opponents: Sequence[Agent]) -> list[_Opponent]:
        """The opponent table; compatible RLlib modules are written into the slots."""
        table: list[_Opponent] = []
        used: dict[int, str] = {}
        free = [slot_id(i) for i in range(self.settings.n_slots)]
        for agent in opponents:
            if self._compatible(agent) and (id(agent) in used or free):
                if id(agent) not in used:
                    used[id(agent)] = free.pop(0)
                    assert isinstance(agent, RLlibAgent)
                    self.set_slot(used[id(agent)], agent.state_dict())
                table.append(_Opponent(agent.name, module_id=used[id(agent)]))
            else:
                table.append(_Opponent(agent.name, agent=agent))
        return table

    def snapshot(self, path: Path) -> str:
        """Write the current policy as a checkpoint directory ``path``; return ``rllib:path``."""
        save_module(self._live, path, self.game, provenance={
            "backend": self.backend, "learner": self.name, "seed": self.seed,
            "total_steps": self.total_steps, "games": self.games,
            "settings": self.settings.model_dump(),
        })
        return f"rllib:{path}"

    def agent(self) -> Agent:
        """The live policy (greedy), refreshed after every :meth:`train`."""
        return self._agent

    def frozen_agent(self, greedy: bool = False) -> RLlibAgent:
        """A frozen copy of the current policy (a new module)."""
        module = build_module(self.model_config, self.game)
        fill_strict(module, self.main_weights(), f"learner {self.name}")
        module.eval()
        return RLlibAgent(module, self.game, self.model_config, greedy=greedy,
                          name=f"{self.name}@{self.total_steps}")

    def save(self, path: Path) -> None:
        """Write all modules' weights, the optimizer state, counters and the generator state."""
        path.mkdir(parents=True, exist_ok=True)
        weights = self.algo.learner_group.get_weights()
        tensors = {
            f"{mid}/{k}": torch.as_tensor(np.ascontiguousarray(v))
            for mid, sd in weights.items() for k, v in sd.items()
        }
        write_bytes_atomic(path / MODULES_FILE, save_safetensors(tensors))
        optim = self.algo.learner_group.get_state(components="learner/optimizer")
        optim_tensors: dict[str, torch.Tensor] = {}
        optim_rest = _split_tensors(optim["learner"]["optimizer"], "", optim_tensors)
        write_bytes_atomic(path / OPTIMIZER_FILE, save_safetensors(optim_tensors))
        write_json_atomic(path / STATE_FILE, {
            "name": self.name, "backend": self.backend, "game": self.game.name,
            "settings": self.settings.model_dump(), "total_steps": self.total_steps,
            "games": self.games, "rng": self._rng.bit_generator.state,
            "optimizer": optim_rest,
        })

    def restore(self, path: Path) -> None:
        """Read what :meth:`save` wrote.

        Raises:
            TlmError: missing or damaged files, or a state of another learner or game.
        """
        try:
            state = json.loads((path / STATE_FILE).read_text())
            tensors = load_safetensors((path / MODULES_FILE).read_bytes())
            optim_tensors = load_safetensors((path / OPTIMIZER_FILE).read_bytes())
        except (OSError, ValueError) as error:
            raise TlmError(f"cannot restore learner {self.name} from {path}: {error}") from None
        if state.get("backend") != self.backend or state.get("game") != self.game.name:
            raise TlmError(
                f"{path} holds a {state.get('backend')} learner for {state.get('game')}, "
                f"not an {self.backend} learner for {self.game.name}"
            )
        if state.get("settings") != self.settings.model_dump():
            raise TlmError(f"{path} was saved by a learner with other settings")
        weights: dict[str, dict[str, np.ndarray]] = {}
        for key, value in tensors.items():
            mid, _, param = key.partition("/")
            weights.setdefault(mid, {})[param] = value.numpy()
        for mid, sd in weights.items():
            fill_strict(build_module(self.model_config, self.game), sd, f"{path}: {mid}")
            self.set_slot(mid, sd)
        optim = _join_tensors(state["optimizer"], optim_tensors)
        self.algo.learner_group.set_state({"learner": {"optimizer": optim}})
        self.total_steps = int(state["total_steps"])
        self.games = int(state["games"])
        self._rng.bit_generator.state = state["rng"]
        self._sync_live()

    def close(self) -> None:
        """Stop the algorithm; stop the local Ray started here when no learner uses it."""
        algo = getattr(self, "algo", None)
        if algo is not None:
            with quiet_rllib():
                algo.stop()
            self.algo = None
        self._shutdown_ray()

    def _shutdown_ray(self) -> None:
        if self._owns_ray:
            self._owns_ray = False
            _release_ray()


def _identity_mapping(agent_id: Any, episode: Any = None, **kwargs: Any) -> str:
    """Agent ids of :class:`SelfPlayEnv` are module ids."""
    return str(agent_id)


def _learner_scalars(result: Mapping[str, Any]) -> dict[str, float]:
    """Main's losses and entropy from an RLlib result, for logs."""
    learners = result.get("learners", {})
    main = learners.get(MAIN, {}) if isinstance(learners, Mapping) else {}
    out = {}
    for key in ("policy_loss", "vf_loss", "entropy", "mean_kl_loss", "curr_kl_coeff"):
        value = main.get(key)
        if isinstance(value, int | float | np.floating):
            out[key] = float(value)
    return out


def _split_tensors(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """``obj`` with every array or tensor replaced by ``{"__tensor__": key}``, collected."""
    if isinstance(obj, torch.Tensor | np.ndarray):
        key = prefix or "_"
        tensors[key] = torch.as_tensor(np.ascontiguousarray(np.asarray(obj)))
        return {"__tensor__": key}
    if isinstance(obj, Mapping):
        if all(isinstance(k, str) for k in obj):
            return {k: _split_tensors(v, f"{prefix}/{k}", tensors) for k, v in obj.items()}
        # Optimizer states key parameters by int: keep the keys' type through JSON.
        return {"__items__": [[k, _split_tensors(v, f"{prefix}/{k}", tensors)]
                              for k, v in obj.items()]}
    if isinstance(obj, list | tuple):
        return [_split_tensors(v, f"{prefix}/{i}", tensors) for i, v in enumerate(obj)]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def _join_tensors(obj: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {"__tensor__"}:
            return tensors[obj["__tensor__"]].numpy()
        if set(obj) == {"__items__"}:
            return {k: _join_tensors(v, tensors) for k, v in obj["__items__"]}
        return {k: _join_tensors(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_join_tensors(v, tensors) for v in obj]
    return obj


# -- tlm teach --------------------------------------------------------------------------


DEFAULT_MIX: Mapping[str, float] = {"current": 0.5, "past": 0.4, "random": 0.1}
"""Opponent mix of :func:`train_rllib_selfplay`: the learner's latest weights, a past
snapshot drawn uniformly, ``random`` (as for the SB3 teacher)."""


def _reference_opponents(game: Game) -> list[Agent]:
    opponents: list[Agent] = [make_agent("random", game)]
    with contextlib.suppress(TlmError):
        opponents.append(make_agent("heuristic", game))
    return opponents


LEARNER_STATE = "learner"
"""The learner's :meth:`RLlibLearner.save` inside a checkpoint of :func:`train_rllib_selfplay`."""

_RUN_FILES = ("main", ".main.partial", ".main.lock", "progress.csv", "summary.json")
"""What a :func:`train_rllib_selfplay` run writes after its training loop."""


def train_rllib_selfplay(
    game: str | Game,
    steps: int,
    out_dir: str | Path,
    seed: int,
    *,
    settings: RLlibPPOSettings | None = None,
    snapshot_every: int | None = None,
    opponent_mix: Mapping[str, float] | None = None,
    eval_games: int = 200,
    wall_limit_s: float | None = None,
    resume: bool = False,
    stop: Callable[[], bool] | None = None,
    resumed: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Train RLlib PPO by self-play against its latest weights, past snapshots and ``random``.

    Each round is one :meth:`RLlibLearner.train` of about one training batch: slot
    ``opp_0`` holds the learner's weights at the start of the round, ``opp_1`` a past
    snapshot drawn uniformly, and ``random`` plays inside the env. Writes
    ``out_dir/main/`` (the final policy: ``rllib:out_dir/main``),
    ``out_dir/snapshots/step_*/`` (checkpoints of the same format), ``progress.csv``
    and ``summary.json`` (steps, games, evaluation against ``random`` and, where the
    game has one, ``heuristic``, wall time).

    With ``resume`` the run checkpoints after every round into ``out_dir/checkpoint/``
    (:mod:`teachers.resume`): the learner's :meth:`RLlibLearner.save` (every module's
    weights, Adam's state, counters, its generator), the names of the snapshots
    written so far (the pool of past opponents), the loop's generator, the progress
    rows and the training time. If ``out_dir`` holds a checkpoint of a run with the
    same settings, the run goes on from it (``summary.json`` adds ``resumed_at_step``);
    the checkpoint is removed when the run ends.

    Args:
        game: the game.
        steps: learner moves to train for (whole rounds).
        out_dir: output directory (created; it should be new, or hold a run to resume).
        seed: the run's seed.
        settings: PPO settings.
        snapshot_every: learner moves between snapshots (default: a tenth of the run,
            at least one round).
        opponent_mix: weights of ``current``, ``past`` and ``random``.
        eval_games: games against each reference opponent at the end (0: none).
        wall_limit_s: stop after the round that passes this many seconds of training.
        resume: checkpoint every round, and go on from a checkpoint found in ``out_dir``.
        stop: asked after every round (and its checkpoint); ``True`` ends the run there
            with ``KeyboardInterrupt`` (a Ctrl-C honoured between rounds).
        resumed: called with the checkpoint's step when a checkpoint is resumed (its
            settings accepted).

    Returns:
        The summary.

    Raises:
        TlmError: bad steps or mix; a damaged checkpoint.
        arena.runstate.ResumeRefusedError: ``out_dir`` holds a checkpoint of other settings
            (left as it was).
    """
    g = get_game(game)
    if steps <= 0:
        raise TlmError(f"steps must be positive, got {steps}")
    mix = dict(DEFAULT_MIX if opponent_mix is None else opponent_mix)
    unknown = set(mix) - set(DEFAULT_MIX)
    if unknown:
        raise TlmError(f"unknown opponent mix keys {sorted(unknown)} (use current, past, random)")
    if any(v < 0 for v in mix.values()) or sum(mix.values()) <= 0:
        raise TlmError(f"opponent mix weights must be >= 0 and not all zero, got {mix}")
    settings = settings or RLlibPPOSettings()
    out = Path(out_dir)
    round_steps = max(1, settings.train_batch_size // 2)
    every = max(round_steps, steps // 10) if snapshot_every is None else int(snapshot_every)
    if every <= 0:
        raise TlmError(f"snapshot_every must be positive, got {snapshot_every}")
    run_settings = json.loads(json.dumps({
        "game": g.name, "algo": "rllib_ppo", "steps": steps, "seed": seed,
        "settings": settings.model_dump(), "opponent_mix": mix, "snapshot_every": every,
        "wall_limit_s": wall_limit_s,
    }))
    # Everything is checked before Ray starts or anything in out_dir changes.
    checkpoint = read_checkpoint(out) if resume else None
    if checkpoint is not None:
        refuse_other_settings(out, checkpoint[1], run_settings)
        if resumed is not None:
            resumed(int(checkpoint[1]["total_steps"]))
        _keep_only(out / "snapshots", checkpoint[1]["snapshots"])
        remove_run_files(out, _RUN_FILES)  # a run killed after its training loop
    elif resume:
        # A run killed before its first checkpoint starts over.
        remove_run_files(out, ("snapshots", *_RUN_FILES))
        remove_checkpoints(out)
    (out / "snapshots").mkdir(parents=True, exist_ok=True)
    learner = RLlibLearner("main", g, seed, settings)
    try:
        rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
        pool: list[RLlibAgent] = []
        names: list[str] = []
        rows: list[dict[str, Any]] = []
        last_snapshot = -every
        finished = False
        done_seconds = checkpoint_seconds = 0.0
        if checkpoint is not None:
            directory, state = checkpoint
            learner.restore(directory / LEARNER_STATE)
            rng.bit_generator.state = state["rng"]
            names = [str(name) for name in state["snapshots"]]
            pool = [load_rllib_agent(out / "snapshots" / name, g, greedy=False)
                    for name in names]
            rows = list(state["rows"])
            last_snapshot = int(state["last_snapshot"])
            finished = bool(state["finished"])
            done_seconds = float(state["train_seconds"])
            checkpoint_seconds = float(state["checkpoint_seconds"])
        random_agent = RandomAgent()
        start = time.perf_counter()

        def elapsed() -> float:
            return done_seconds + time.perf_counter() - start

        while not finished:
            if learner.total_steps - last_snapshot >= every:
                name = f"step_{learner.total_steps:09d}"
                learner.snapshot(out / "snapshots" / name)
                pool.append(load_rllib_agent(out / "snapshots" / name, g, greedy=False))
                names.append(name)
                last_snapshot = learner.total_steps
            current = learner.frozen_agent()
            past = pool[int(rng.integers(len(pool)))]
            opponents: list[Agent] = [current, past, random_agent]
            weights = [mix.get("current", 0.0), mix.get("past", 0.0), mix.get("random", 0.0)]
            todo = min(round_steps, steps - learner.total_steps)
            report = learner.train(todo, opponents, weights)
            rows.append({
                "total_steps": report.total_steps, "games": report.games,
                "wall_s": round(elapsed(), 3),
                "score": report.extra.get("score", float("nan")),
                "score_vs_random": report.win_rate.get("random", float("nan")),
                **{k: v for k, v in report.extra.items() if k != "score"},
            })
            finished = learner.total_steps >= steps or (
                wall_limit_s is not None and elapsed() >= wall_limit_s)
            if resume:
                begin = time.perf_counter()
                write_checkpoint(out, {
                    "settings": run_settings, "total_steps": learner.total_steps,
                    "games": learner.games, "rng": rng.bit_generator.state,
                    "snapshots": names, "last_snapshot": last_snapshot, "rows": rows,
                    "finished": finished, "train_seconds": elapsed(),
                    "checkpoint_seconds": checkpoint_seconds,
                }, lambda directory: learner.save(directory / LEARNER_STATE))
                checkpoint_seconds += time.perf_counter() - begin
            if stop is not None and stop():
                raise KeyboardInterrupt
        train_seconds = elapsed()
        learner.snapshot(out / "main")
        evaluation = []
        if eval_games > 0:
            rows_eval = evaluate(g, learner.agent(), _reference_opponents(g), eval_games, seed=seed)
            evaluation = [r.as_json() for r in rows_eval]
        summary: dict[str, Any] = {
            "game": g.name, "algo": "rllib_ppo", "seed": seed,
            "steps": learner.total_steps, "games": learner.games,
            "settings": settings.model_dump(),
            "model_config": learner.model_config,
            "opponent_mix": mix, "snapshot_every": every,
            "snapshots": names,
            "evaluation": evaluation,
            "train_seconds": round(train_seconds, 3),
            "wall_seconds": round(time.perf_counter() - start, 3),
        }
        if resume:
            summary["checkpoint_seconds"] = round(checkpoint_seconds, 3)
        if checkpoint is not None:
            summary["resumed_at_step"] = int(checkpoint[1]["total_steps"])
        _write_csv(out / "progress.csv", rows)
        write_json_atomic(out / "summary.json", summary)
        remove_checkpoints(out)
        return summary
    finally:
        learner.close()


def _keep_only(directory: Path, names: Sequence[str]) -> None:
    """Remove from ``directory`` every entry not named in ``names`` (snapshots written
    after the checkpoint, or half-written ones).

    Raises:
        TlmError: a named entry is missing.
    """
    for name in names:
        if not (directory / name).is_dir():
            raise TlmError(f"damaged checkpoint: snapshot {directory / name} is missing")
    keep = set(names)
    for path in directory.iterdir():
        if path.name not in keep:
            remove_run_files(directory, (path.name,))


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    keys: list[str] = []
    for row in rows:
        keys.extend(k for k in row if k not in keys)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys)
    writer.writeheader()
    writer.writerows(rows)
    write_bytes_atomic(path, buf.getvalue().encode())
