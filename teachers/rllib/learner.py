"""The RLlib learner: multi-agent PPO self-play on RLlib's new API stack.

:class:`RLlibLearner` implements the learner protocol (:mod:`teachers.learner`) with
RLlib PPO, so ``tlm teach --algo rllib_ppo`` (through the one self-play loop of
:mod:`teachers.selfplay`) and league learners with ``backend: rllib`` train the same
way.

How the opponents are played. The env is :class:`teachers.rllib.env.SelfPlayEnv`,
whose agent ids *are* module ids: ``main`` (trained) and the frozen slots
``opp_0 .. opp_{K-1}`` (``policies_to_train=["main"]``; the policy mapping is the
identity). Every episode draws, from the env's own seeded generator, the learner's
seat and one opponent of the current table:

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

import json
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from arena.core import Agent, TlmError
from arena.games import Game, get_game
from arena.runners import start_local_ray
from arena.runstate import write_bytes_atomic, write_json_atomic
from teachers.learner import TrainReport, opponent_weights, using_torch_threads
from teachers.rllib.checkpoint import (
    RLlibAgent,
    build_module,
    fill_strict,
    full_model_config,
    game_spaces,
    quiet_rllib,
    save_module,
)
from teachers.rllib.env import MAIN, Opponent, SelfPlayEnv, slot_id
from teachers.rllib.settings import RLlibPPOSettings

STATE_FILE = "learner.json"
MODULES_FILE = "modules.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"


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

    backend = "rllib"

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

    def _config(self) -> Any:
        from ray.rllib.algorithms.ppo import PPOConfig
        from ray.rllib.core.rl_module.multi_rl_module import MultiRLModuleSpec
        from ray.rllib.core.rl_module.rl_module import RLModuleSpec

        from teachers.rllib.module import MaskedPPOTorchRLModule

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

    def _assign(self, opponents: Sequence[Agent]) -> list[Opponent]:
        """The opponent table; compatible RLlib modules are written into the slots."""
        table: list[Opponent] = []
        used: dict[int, str] = {}
        free = [slot_id(i) for i in range(self.settings.n_slots)]
        for agent in opponents:
            if self._compatible(agent) and (id(agent) in used or free):
                if id(agent) not in used:
                    used[id(agent)] = free.pop(0)
                    assert isinstance(agent, RLlibAgent)
                    self.set_slot(used[id(agent)], agent.state_dict())
                table.append(Opponent(agent.name, module_id=used[id(agent)]))
            else:
                table.append(Opponent(agent.name, agent=agent))
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

