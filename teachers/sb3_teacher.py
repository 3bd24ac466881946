"""The self-play RL teacher on Stable-Baselines3: MaskablePPO against itself and its past.

:func:`train_maskable_ppo` trains sb3-contrib's ``MaskablePPO`` through the Gymnasium
view of the arena (:class:`teachers.gym_view.ArenaGymEnv`). Each training episode draws
its opponent from a :class:`SnapshotPool`: the learner's current policy, a frozen past
snapshot, or ``random`` (so the learner does not overfit to itself). Snapshots are SB3
zips written by :class:`SelfPlayCallback`, SB3's own callback mechanism, and frozen
copies are loaded back from those zips.

:class:`SB3Agent` puts any SB3 actor-critic model with a discrete action space behind
the arena's agent contract (one batched forward for all rows, the masked distribution
as policy, the critic as value). :func:`register` makes ``sb3:PATH.zip`` an agent spec.
An SB3 zip unpickles Python objects, so one is only ever loaded from a path the user
named with ``sb3:``; nothing scans for or loads zips on its own.

Stable-Baselines3 seeds Python's, NumPy's and torch's global generators from the
``seed`` it is given and shuffles minibatches with NumPy's global generator; that is
its design, not ours. Everything this module adds (seats, opponent draws, opponent
sampling) draws from the environments' own seeded generators, and loading a snapshot
leaves the global generators as it found them, so the same seed gives the same run.

With ``resume=True`` a run checkpoints at the start of every rollout into
``out_dir/checkpoint/``: SB3's own save of the model (policy and optimizer), and a JSON
file with the step counters, the snapshot list, every generator's state (the three
global ones and each environment's) and each environment's game in progress (its
engine seed and moves, replayed on resume, and its opponent). A run started again on
the same directory goes on from there, to the same final weights as a run never
stopped.
"""

from __future__ import annotations

import contextlib
import json
import random
import time
import zipfile
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from sb3_contrib import MaskablePPO
from stable_baselines3 import PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.logger import CSVOutputFormat
from stable_baselines3.common.logger import configure as configure_logger
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecMonitor

from arena.agents import RandomAgent, make_agent, register_agent
from arena.core import Agent, PolicyAgent, State, TlmError, masked_softmax
from arena.evaluation import evaluate
from arena.games import Game, get_game
from arena.runstate import write_json_atomic
from teachers.gym_view import ArenaGymEnv
from teachers.learner import using_torch_threads
from teachers.resume import (
    read_checkpoint,
    refuse_other_settings,
    remove_checkpoints,
    remove_run_files,
    write_checkpoint,
)

DEFAULT_MIX: Mapping[str, float] = {"current": 0.5, "past": 0.4, "random": 0.1}
"""Opponent mix: the live learner, a uniformly drawn past snapshot, ``random``."""

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

# Loading an SB3 zip re-runs `_setup_model`, which would reseed the global generators
# from the stored seed; replacing these entries skips that, and the unpickling of
# schedules and buffer classes (a subclass's, say) that inference never uses.
_LOAD_OVERRIDES: dict[str, Any] = {
    "seed": None,
    "learning_rate": 0.0,
    "lr_schedule": lambda _: 0.0,
    "clip_range": lambda _: 0.0,
    "rollout_buffer_class": None,
}

_POLICY_MODULES: dict[str, type[BaseAlgorithm]] = {
    "sb3_contrib.common.maskable.policies": MaskablePPO,
    "stable_baselines3.common.policies": PPO,
}
"""Policy module named in an SB3 zip -> the algorithm class that loads it."""


class SB3Agent(PolicyAgent):
    """An SB3 actor-critic model (MaskablePPO, PPO, A2C) as an arena agent.

    ``policy`` is the model's action distribution with illegal actions masked out
    (exactly MaskablePPO's masked distribution), computed for all rows in one forward
    pass; ``value`` is the critic's estimate for the mover (a discounted return in the
    game's reward units). The model is wrapped, not copied: an agent made from a model
    in training always plays its current weights.

    Attributes:
        model: the wrapped SB3 model.
        greedy: play the most probable legal action instead of sampling.
    """

    def __init__(
        self,
        model: BaseAlgorithm,
        game: str | Game | None = None,
        greedy: bool = False,
        name: str | None = None,
    ) -> None:
        """Wrap ``model``.

        Args:
            model: an SB3 on-policy actor-critic model with a ``Discrete`` action space.
            game: the game it plays; checked against the model's spaces when given.
            greedy: argmax instead of sampling in :meth:`act`.
            name: the agent's name (defaults to ``sb3``).

        Raises:
            TlmError: the model's action space is not discrete, or its spaces do not
                fit ``game``.
        """
        if not isinstance(model.action_space, spaces.Discrete):
            raise TlmError(f"SB3 model has action space {model.action_space}, expected Discrete")
        self.model = model
        self.greedy = greedy
        self.name = name if name is not None else "sb3"
        self.obs_shape = tuple(model.observation_space.shape or ())
        self.num_actions = int(model.action_space.n)
        self.game = None
        if game is not None:
            g = get_game(game)
            if self.obs_shape != g.obs_shape or self.num_actions != g.num_actions:
                raise TlmError(
                    f"SB3 model takes observations {self.obs_shape} and {self.num_actions} "
                    f"actions, but {g.name} has {g.obs_shape} and {g.num_actions}"
                )
            self.game = g.name

    def _tensor(self, obs: np.ndarray, mask: np.ndarray) -> torch.Tensor:
        if tuple(obs.shape[1:]) != self.obs_shape:
            raise TlmError(
                f"observation shape {tuple(obs.shape[1:])} does not match the SB3 model's "
                f"{self.obs_shape}"
            )
        if mask.shape != (obs.shape[0], self.num_actions):
            raise TlmError(
                f"action mask shape {mask.shape} does not match {obs.shape[0]} observations "
                f"of {self.num_actions} actions"
            )
        return torch.as_tensor(np.asarray(obs), device=self.model.policy.device)

    def logits(self, obs: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """``[B, A]`` float64 raw action logits (illegal actions not masked)."""
        policy: Any = self.model.policy  # an ActorCriticPolicy; SB3 types it as BasePolicy
        x = self._tensor(obs, mask)
        with torch.no_grad():
            # The actor half of the policy's forward pass: SB3's get_distribution minus
            # building a torch distribution object, which costs more than the network.
            features = policy.extract_features(x, policy.pi_features_extractor)
            latent = policy.mlp_extractor.forward_actor(features)
            logits = policy.action_net(latent)
        return logits.to("cpu", torch.float64).numpy()

    def policy(self, obs: np.ndarray, mask: np.ndarray, state: State | None = None) -> np.ndarray:
        """``probs[B, A]`` (float64): softmax of the logits over the legal actions.

        Raises:
            TlmError: the observation or mask shape does not fit the model.
        """
        return masked_softmax(self.logits(obs, mask), np.asarray(mask))

    def value(self, obs: np.ndarray, mask: np.ndarray, state: State | None = None) -> np.ndarray:
        """``[B]`` (float64): the critic's value of each position for the mover."""
        x = self._tensor(obs, mask)
        policy: Any = self.model.policy
        with torch.no_grad():
            v = policy.predict_values(x)
        return v.reshape(-1).to("cpu", torch.float64).numpy()


@contextlib.contextmanager
def _global_rng_preserved() -> Iterator[None]:
    """Leave Python's, NumPy's and torch's global generators as they were."""
    py_state = random.getstate()
    np_state = np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        yield
    np.random.set_state(np_state)
    random.setstate(py_state)


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _algorithm_of(path: Path) -> type[BaseAlgorithm]:
    """The algorithm class that loads the SB3 zip at ``path``, read from its JSON header."""
    try:
        with zipfile.ZipFile(path) as archive:
            data = json.loads(archive.read("data"))
        module = data["policy_class"]["__module__"]
    except (KeyError, TypeError, ValueError, zipfile.BadZipFile) as error:
        raise TlmError(f"{path} is not an SB3 model zip ({_one_line(error)})") from None
    algorithm = _POLICY_MODULES.get(module)
    if algorithm is None:
        raise TlmError(f"{path}: SB3 policy from {module} is not a supported actor-critic policy")
    return algorithm


def load_sb3_model(path: str | Path, device: str = "cpu") -> BaseAlgorithm:
    """Load an SB3 zip (MaskablePPO, or PPO / A2C) for inference.

    The global random generators are left untouched.

    Args:
        path: the ``.zip`` written by ``model.save``.
        device: torch device for the policy.

    Raises:
        TlmError: missing file, not a zip, not an SB3 model, or a model that fails to load.
    """
    p = Path(path)
    if not p.is_file():
        raise TlmError(f"SB3 model {p} does not exist (expected a .zip saved by SB3)")
    if not zipfile.is_zipfile(p):
        raise TlmError(f"SB3 model {p} is not a zip file")
    algorithm = _algorithm_of(p)
    try:
        with _global_rng_preserved():
            return algorithm.load(p, device=device, custom_objects=_LOAD_OVERRIDES)
    except Exception as error:  # SB3 raises anything from unpickling and torch.load
        raise TlmError(f"cannot load SB3 model {p}: {_one_line(error)}") from None


def load_sb3_agent(path: str | Path, game: str | Game, greedy: bool = True) -> SB3Agent:
    """An :class:`SB3Agent` for ``game`` from an SB3 zip.

    Raises:
        TlmError: the zip cannot be loaded, or its model does not fit ``game``.
    """
    model = load_sb3_model(path)
    return SB3Agent(model, game=game, greedy=greedy, name=f"sb3:{path}")


def _sb3_spec(arg: str | None, game: Game) -> Agent:
    assert arg is not None  # the registry enforces needs_argument
    return load_sb3_agent(arg, game, greedy=True)


def register() -> None:
    """Make ``sb3:PATH.zip`` an agent spec (greedy play of the saved model)."""
    register_agent("sb3", _sb3_spec, "sb3:PATH.zip", needs_argument=True)


class SnapshotPool:
    """The self-play opponents: the live learner, frozen past snapshots, ``random``.

    Each training episode calls :meth:`sample` with its env's generator. ``current`` is
    the learner's own model (its weights change only between rollouts); ``past`` is a
    snapshot zip drawn uniformly, loaded on first use and kept; ``random`` plays
    uniformly. Until a snapshot exists, ``past`` falls back to ``current``.
    """

    def __init__(self, game: str | Game, mix: Mapping[str, float] | None = None) -> None:
        """Build an empty pool.

        Args:
            game: the game.
            mix: weights of ``current``, ``past`` and ``random`` (normalized; missing
                keys weigh zero). Defaults to :data:`DEFAULT_MIX`.

        Raises:
            TlmError: unknown keys, negative weights, or weights summing to zero.
        """
        self.game = get_game(game)
        mix = dict(DEFAULT_MIX if mix is None else mix)
        unknown = set(mix) - {"current", "past", "random"}
        if unknown:
            raise TlmError(
                f"unknown opponent mix keys {sorted(unknown)} (use current, past, random)"
            )
        weights = np.array([float(mix.get(k, 0.0)) for k in ("current", "past", "random")])
        if (weights < 0).any() or not np.isfinite(weights).all() or weights.sum() <= 0:
            raise TlmError(f"opponent mix weights must be >= 0 and not all zero, got {mix}")
        self.mix = weights / weights.sum()
        self.snapshots: list[Path] = []
        self._frozen: dict[Path, SB3Agent] = {}
        self._current: SB3Agent | None = None
        self._random = RandomAgent()

    def set_current(self, model: BaseAlgorithm) -> None:
        """Use ``model`` (shared, not copied) as the ``current`` opponent."""
        self._current = SB3Agent(model, game=self.game, greedy=False, name="current")

    def add_snapshot(self, path: Path) -> None:
        """Make the snapshot zip at ``path`` available as a ``past`` opponent."""
        self.snapshots.append(Path(path))

    def frozen(self, path: Path) -> SB3Agent:
        """The frozen copy of a snapshot, loaded from its zip once."""
        agent = self._frozen.get(path)
        if agent is None:
            agent = SB3Agent(load_sb3_model(path), game=self.game, greedy=False, name=path.stem)
            self._frozen[path] = agent
        return agent

    def describe(self, agent: Agent) -> str:
        """``current``, ``random`` or ``past:NAME``: which of the pool's opponents ``agent`` is."""
        if agent is self._current:
            return "current"
        for path, frozen in self._frozen.items():
            if agent is frozen:
                return f"past:{path.name}"
        return "random"

    def resolve(self, description: str) -> Agent:
        """The opponent that :meth:`describe` described (a snapshot of this pool's directory)."""
        if description == "current" and self._current is not None:
            return self._current
        if description.startswith("past:"):
            name = description.removeprefix("past:")
            for path in self.snapshots:
                if path.name == name:
                    return self.frozen(path)
            raise TlmError(f"checkpoint names snapshot {name}, which the run does not have")
        return self._random

    def sample(self, rng: np.random.Generator) -> Agent:
        """Draw an opponent for one episode from ``rng``."""
        kind = int(rng.choice(3, p=self.mix))
        if kind == 2 or self._current is None:
            return self._random
        if kind == 1 and self.snapshots:
            return self.frozen(self.snapshots[int(rng.integers(len(self.snapshots)))])
        return self._current


class SelfPlayCallback(BaseCallback):
    """Saves a snapshot zip every ``snapshot_every`` learner steps and adds it to the pool.

    Snapshots are taken at the start of a rollout, so each holds the weights that the
    rollout plays with. It also counts finished games.

    Attributes:
        games: training games finished so far.
        snapshots: the zips written, oldest first.
    """

    def __init__(self, pool: SnapshotPool, snapshot_dir: Path, snapshot_every: int) -> None:
        super().__init__()
        self.pool = pool
        self.snapshot_dir = snapshot_dir
        self.snapshot_every = snapshot_every
        self.games = 0
        self.snapshots: list[Path] = []
        self._last_snapshot: int | None = None

    def _on_rollout_start(self) -> None:
        step = self.model.num_timesteps
        if self._last_snapshot is None or step - self._last_snapshot >= self.snapshot_every:
            path = self.snapshot_dir / f"step_{step:09d}.zip"
            self.model.save(path)
            self.pool.add_snapshot(path)
            self.snapshots.append(path)
            self._last_snapshot = step

    def _on_step(self) -> bool:
        self.games += int(np.sum(self.locals["dones"]))
        return True


def make_selfplay_env(
    game: str | Game, pool: SnapshotPool, n_envs: int, record: bool = False
) -> VecEnv:
    """``n_envs`` arena views (learner seat drawn per episode) whose opponents come from ``pool``.

    Seeding is left to the model (SB3 seeds env ``i`` with ``seed + i``).

    Args:
        game: the game.
        pool: where each episode's opponent comes from.
        n_envs: environments stepped side by side.
        record: each env's engine remembers how its game got where it is, so that a
            checkpoint can hold the games in progress (:func:`env_checkpoint`).
    """
    g = get_game(game)

    def make(_: int) -> Any:
        def build() -> ArenaGymEnv:
            env = ArenaGymEnv(g, opponent=pool.sample, seat="random")
            if record:
                env.engine = _RecordingEngine(env.engine)
            return env

        return build

    return VecMonitor(DummyVecEnv([make(i) for i in range(n_envs)]))


class _RecordingEngine:
    """An env's one-game engine that remembers its game's seed and moves, to replay them."""

    def __init__(self, engine: Any) -> None:
        self._engine = engine
        self.seed: int | np.ndarray | None = None
        self.moves: list[int] = []

    def reset(self, n: int, seed: int | np.ndarray | None = None) -> State:
        self.seed, self.moves = seed, []
        return self._engine.reset(n, seed=seed)

    def step(self, state: State, actions: np.ndarray) -> tuple[State, np.ndarray, np.ndarray]:
        self.moves.append(int(actions[0]))
        return self._engine.step(state, actions)

    def replay(self, seed: int | np.ndarray | None, moves: Sequence[int]) -> State:
        """The state that ``seed`` and ``moves`` lead to (recorded again as they are played)."""
        state = self.reset(1, seed=seed)
        for move in moves:
            state, _, _ = self.step(state, np.array([move], dtype=np.int64))
        return state

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)


def _generator_state(rng: np.random.Generator) -> dict[str, Any]:
    return dict(rng.bit_generator.state)


def _generator_from(state: Mapping[str, Any]) -> np.random.Generator:
    bit_generator = getattr(np.random, str(state["bit_generator"]))()
    bit_generator.state = dict(state)
    return np.random.Generator(bit_generator)


def _array(a: np.ndarray) -> dict[str, Any]:
    """An array as JSON (exact: float32 and float64 values survive a round trip)."""
    return {"dtype": str(a.dtype), "shape": list(a.shape), "data": a.reshape(-1).tolist()}


def _from_array(d: Mapping[str, Any]) -> np.ndarray:
    return np.asarray(d["data"], dtype=np.dtype(d["dtype"])).reshape(d["shape"])


def env_checkpoint(env: ArenaGymEnv, pool: SnapshotPool) -> dict[str, Any]:
    """An env's whole state as JSON: generator, seat, opponent and the game in progress.

    The env must have been built with ``record=True`` (:func:`make_selfplay_env`).
    """
    engine = env.engine
    if not isinstance(engine, _RecordingEngine):
        raise TypeError("env_checkpoint needs an env made with make_selfplay_env(record=True)")
    return {
        "rng": _generator_state(env.np_random),
        "seat": int(env.seat),
        "episodes_since_seed": int(env._episodes_since_seed),
        "skipped_games": int(env.skipped_games),
        "over": bool(env._over),
        "opponent": pool.describe(env.opponent),
        "engine_seed": engine.seed,
        "moves": list(engine.moves),
    }


def restore_env(env: ArenaGymEnv, pool: SnapshotPool, saved: Mapping[str, Any]) -> None:
    """Put an env (built with ``record=True``) back in the state :func:`env_checkpoint` saved."""
    engine = env.engine
    if not isinstance(engine, _RecordingEngine):
        raise TypeError("restore_env needs an env made with make_selfplay_env(record=True)")
    env.np_random = _generator_from(saved["rng"])
    env.seat = int(saved["seat"])
    env._episodes_since_seed = int(saved["episodes_since_seed"])
    env.skipped_games = int(saved["skipped_games"])
    env.opponent = pool.resolve(str(saved["opponent"]))
    if saved["engine_seed"] is None:
        return  # never reset: SB3 resets it before its first step
    env._state = engine.replay(saved["engine_seed"], saved["moves"])
    env._over = bool(saved["over"])
    if not env._over:
        env._observe()


def _global_rng_state() -> dict[str, Any]:
    py_version, py_internal, py_gauss = random.getstate()
    np_state = np.random.get_state(legacy=False)
    return {
        "python": [py_version, list(py_internal), py_gauss],
        "numpy": {**np_state, "state": {"key": np_state["state"]["key"].tolist(),
                                        "pos": int(np_state["state"]["pos"])}},
        "torch": torch.get_rng_state().tolist(),
    }


def _set_global_rng_state(saved: Mapping[str, Any]) -> None:
    version, internal, gauss = saved["python"]
    random.setstate((version, tuple(internal), gauss))
    np_state = dict(saved["numpy"])
    np_state["state"] = {"key": np.asarray(np_state["state"]["key"], dtype=np.uint32),
                         "pos": np_state["state"]["pos"]}
    np.random.set_state(np_state)
    torch.set_rng_state(torch.tensor(saved["torch"], dtype=torch.uint8))


class _Checkpointer(BaseCallback):
    """Writes the run's checkpoint at the start of every rollout (after the last update),
    with :func:`teachers.resume.write_checkpoint`."""

    def __init__(
        self, out: Path, settings: Mapping[str, Any], pool: SnapshotPool,
        selfplay: SelfPlayCallback, progress_csv: Path, train_seconds: float = 0.0,
        resumed_at: int | None = None,
    ) -> None:
        super().__init__()
        self.out = out
        self.settings = dict(settings)
        self.pool = pool
        self.selfplay = selfplay
        self.progress_csv = progress_csv
        self.train_seconds = train_seconds
        self._started = time.perf_counter()
        self._last_step = resumed_at

    def elapsed(self) -> float:
        """Training seconds so far, those before a resume included."""
        return self.train_seconds + time.perf_counter() - self._started

    def _on_rollout_start(self) -> None:
        model = self.model
        if self._last_step == model.num_timesteps:
            return  # just resumed from this very checkpoint
        self._last_step = model.num_timesteps
        vec = model.get_env()
        assert isinstance(vec, VecMonitor) and isinstance(vec.venv, DummyVecEnv)
        assert model._last_obs is not None and model._last_episode_starts is not None
        for fmt in model.logger.output_formats:
            if hasattr(fmt, "file"):
                fmt.file.flush()
        state = {
            "settings": self.settings,
            "num_timesteps": int(model.num_timesteps),
            "n_updates": int(model._n_updates),
            "episode_num": int(model._episode_num),
            "ep_info_buffer": [
                {k: v.item() if isinstance(v, np.generic) else v for k, v in info.items()}
                for info in model.ep_info_buffer or []
            ],
            "last_obs": _array(np.asarray(model._last_obs)),
            "last_episode_starts": _array(np.asarray(model._last_episode_starts)),
            "monitor": {
                "returns": _array(vec.episode_returns),
                "lengths": _array(vec.episode_lengths),
                "count": int(vec.episode_count),
            },
            "envs": [env_checkpoint(env, self.pool) for env in vec.venv.envs],  # type: ignore[arg-type]
            "games": self.selfplay.games,
            "snapshots": [p.name for p in self.selfplay.snapshots],
            "last_snapshot": self.selfplay._last_snapshot,
            "progress_csv_bytes": (
                self.progress_csv.stat().st_size if self.progress_csv.exists() else 0
            ),
            "train_seconds": self.elapsed(),
            "rng": _global_rng_state(),
        }
        write_checkpoint(self.out, state, lambda directory: model.save(directory / "model.zip"))

    def _on_step(self) -> bool:
        return True


def _restore(
    model: BaseAlgorithm, directory: Path, state: Mapping[str, Any], pool: SnapshotPool,
    selfplay: SelfPlayCallback, snapshot_dir: Path,
) -> None:
    """Put a freshly built model, its envs and callbacks back where the checkpoint was."""
    try:
        with _global_rng_preserved():
            model.set_parameters(str(directory / "model.zip"), exact_match=True, device="cpu")
    except Exception as error:  # SB3 raises anything from a damaged zip
        raise TlmError(f"cannot load checkpoint {directory}: {_one_line(error)}") from None
    for name in state["snapshots"]:
        path = snapshot_dir / name
        pool.add_snapshot(path)
        selfplay.snapshots.append(path)
    selfplay.games = int(state["games"])
    selfplay._last_snapshot = state["last_snapshot"]
    model.num_timesteps = int(state["num_timesteps"])
    model._n_updates = int(state["n_updates"])
    model._episode_num = int(state["episode_num"])
    model.ep_info_buffer = deque(state["ep_info_buffer"], maxlen=model._stats_window_size)
    model.ep_success_buffer = deque(maxlen=model._stats_window_size)
    model._last_obs = _from_array(state["last_obs"])
    model._last_episode_starts = _from_array(state["last_episode_starts"])
    vec = model.get_env()
    assert isinstance(vec, VecMonitor) and isinstance(vec.venv, DummyVecEnv)
    vec.episode_returns = _from_array(state["monitor"]["returns"])
    vec.episode_lengths = _from_array(state["monitor"]["lengths"])
    vec.episode_count = int(state["monitor"]["count"])
    for env, saved in zip(vec.venv.envs, state["envs"], strict=True):
        restore_env(env, pool, saved)  # type: ignore[arg-type]
    _set_global_rng_state(state["rng"])


def _restore_progress_csv(model: BaseAlgorithm, path: Path, old_text: str) -> None:
    """Put back the curve rows written up to the checkpoint (SB3 opens the CSV afresh)."""
    if not old_text:
        return
    for fmt in model.logger.output_formats:
        if isinstance(fmt, CSVOutputFormat) and Path(fmt.file.name) == path:
            fmt.file.write(old_text)
            fmt.file.flush()
            fmt.keys = old_text.splitlines()[0].split(",")


@dataclass
class SelfPlayRun:
    """A finished self-play training run.

    Attributes:
        model: the trained model.
        summary: what :func:`train_maskable_ppo` writes to ``summary.json``.
        model_path: the final model's zip.
    """

    model: MaskablePPO
    summary: dict[str, Any]
    model_path: Path


def _reference_opponents(game: Game) -> list[Agent]:
    """``random`` and, where the game has one, ``heuristic``."""
    opponents: list[Agent] = [make_agent("random", game)]
    with contextlib.suppress(TlmError):
        opponents.append(make_agent("heuristic", game))
    return opponents


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
    verbose: int = 0,
    callbacks: Sequence[BaseCallback] = (),
    resume: bool = False,
    resumed: Callable[[int], None] | None = None,
) -> SelfPlayRun:
    """Train a MaskablePPO model (or subclass) by self-play; see :func:`train_maskable_ppo`.

    Args:
        game: the game.
        steps: learner moves to train for (SB3 ``total_timesteps``, rounded up to whole
            rollouts).
        out_dir: output directory (created).
        seed: seeds the model, the environments and the evaluation.
        net_arch: hidden layer sizes of the policy and of the value network.
        snapshot_every: learner steps between snapshots (default: a twentieth of the
            run, at least one rollout).
        opponent_mix: weights of ``current``, ``past`` and ``random`` opponents.
        n_envs: environments stepped side by side.
        ppo_kwargs: MaskablePPO hyperparameters replacing :data:`DEFAULT_PPO` entries.
        eval_games: games against each reference opponent at the end (0: none).
        model_class: ``MaskablePPO`` or a subclass (kickstarting passes its own).
        model_kwargs: extra constructor arguments for ``model_class``.
        torch_threads: torch intra-op threads while training (restored afterwards);
            ``None`` leaves torch's setting. Networks this small train several times
            faster on one thread than on several competing for the same cores.
        verbose: SB3 verbosity.
        callbacks: more SB3 callbacks (one returning ``False`` ends training early).
        resume: checkpoint at the start of every rollout into ``out_dir/checkpoint``
            and, if a checkpoint of a run with the same settings is there, go on from
            it (the final weights are those of a run never stopped); the checkpoint is
            removed when the run ends.
        resumed: called with the checkpoint's step when a checkpoint is resumed (its
            settings accepted).

    Returns:
        The run: model, summary and the final zip's path.

    Raises:
        TlmError: bad steps, sizes, mix or arguments.
    """
    if torch_threads is not None and torch_threads <= 0:
        raise TlmError(f"torch_threads must be positive, got {torch_threads}")
    out = Path(out_dir)
    with using_torch_threads(torch_threads):
        g = get_game(game)
        if steps <= 0:
            raise TlmError(f"steps must be positive, got {steps}")
        if n_envs <= 0:
            raise TlmError(f"n_envs must be positive, got {n_envs}")
        if not net_arch or any(int(w) <= 0 for w in net_arch):
            raise TlmError(f"net_arch must be positive layer sizes, got {list(net_arch)}")
        hyper = {**DEFAULT_PPO, **(ppo_kwargs or {})}
        rollout = int(hyper["n_steps"]) * n_envs
        every = max(rollout, steps // 20) if snapshot_every is None else int(snapshot_every)
        if every <= 0:
            raise TlmError(f"snapshot_every must be positive, got {snapshot_every}")
        snapshot_dir = out / "snapshots"
        policy_kwargs = {"net_arch": [int(w) for w in net_arch]}
        pool = SnapshotPool(g, opponent_mix)
        settings = json.loads(json.dumps({
            "game": g.name, "algo": model_class.__name__, "steps": steps, "seed": seed,
            "net_arch": policy_kwargs["net_arch"], "n_envs": n_envs,
            "hyperparameters": {k: hyper[k] for k in sorted(hyper)},
            "opponent_mix": pool.mix.tolist(), "snapshot_every": every,
        }, default=repr))
        checkpoint = read_checkpoint(out) if resume else None
        if checkpoint is not None:
            refuse_other_settings(out, checkpoint[1], settings)
            if resumed is not None:
                resumed(int(checkpoint[1]["num_timesteps"]))
        if resume and checkpoint is None:
            # A run killed before its first checkpoint starts over.
            remove_run_files(out, ("snapshots", "logs", "model.zip", "summary.json"))
            remove_checkpoints(out)
        snapshot_dir.mkdir(parents=True, exist_ok=True)
        progress_csv = out / "logs" / "progress.csv"
        old_curve = ""
        if checkpoint is not None and progress_csv.is_file():
            size = int(checkpoint[1]["progress_csv_bytes"])
            old_curve = progress_csv.read_bytes()[:size].decode()

        env = make_selfplay_env(g, pool, n_envs, record=resume)
        try:
            model = model_class(
                "MlpPolicy", env, seed=seed, device="cpu", verbose=verbose,
                policy_kwargs=policy_kwargs, **hyper, **(model_kwargs or {}),
            )
        except TypeError as error:
            raise TlmError(f"bad training arguments: {_one_line(error)}") from None
        pool.set_current(model)
        # Training curves go to the run's own directory (CSV and TensorBoard) rather than
        # to the temp folder SB3 creates for every run without a logger.
        model.set_logger(configure_logger(str(out / "logs"), ["csv", "tensorboard"]))
        callback = SelfPlayCallback(pool, snapshot_dir, every)

        start = time.perf_counter()
        before: list[BaseCallback] = []
        checkpointer: _Checkpointer | None = None
        if resume:
            done_seconds = 0.0
            if checkpoint is not None:
                _restore(model, checkpoint[0], checkpoint[1], pool, callback, snapshot_dir)
                _restore_progress_csv(model, progress_csv, old_curve)
                done_seconds = float(checkpoint[1]["train_seconds"])
            # First in the list: a checkpoint must not see the snapshot of its own step.
            checkpointer = _Checkpointer(
                out, settings, pool, callback, progress_csv, done_seconds,
                resumed_at=None if checkpoint is None else model.num_timesteps,
            )
            before.append(checkpointer)
        model.learn(
            total_timesteps=steps - model.num_timesteps if checkpoint is not None else steps,
            callback=CallbackList([*before, callback, *callbacks]),
            reset_num_timesteps=checkpoint is None,
        )
        train_seconds = (
            checkpointer.elapsed() if checkpointer is not None
            else time.perf_counter() - start
        )
        model_path = out / "model.zip"
        model.save(model_path)

        evaluation = []
        if eval_games > 0:
            agent = SB3Agent(model, game=g, greedy=True, name="model")
            rows = evaluate(g, agent, _reference_opponents(g), eval_games, seed=seed)
            evaluation = [r.as_json() for r in rows]
        summary: dict[str, Any] = {
            "game": g.name,
            "algo": model_class.__name__,
            "seed": seed,
            "steps": int(model.num_timesteps),
            "games": callback.games,
            "net_arch": policy_kwargs["net_arch"],
            "n_envs": n_envs,
            "hyperparameters": {k: hyper[k] for k in sorted(hyper)},
            "opponent_mix": dict(
                zip(("current", "past", "random"), pool.mix.tolist(), strict=True)
            ),
            "snapshot_every": every,
            "snapshots": [p.name for p in callback.snapshots],
            "evaluation": evaluation,
            "train_seconds": round(train_seconds, 3),
            "wall_seconds": round(time.perf_counter() - start, 3),
        }
        if checkpoint is not None:
            summary["resumed_at_step"] = int(checkpoint[1]["num_timesteps"])
        write_json_atomic(out / "summary.json", summary)
        env.close()
        remove_checkpoints(out)
        return SelfPlayRun(model, summary, model_path)


def train_maskable_ppo(
    game: str | Game,
    steps: int,
    out_dir: str | Path,
    seed: int,
    net_arch: Sequence[int] = (64, 64),
    snapshot_every: int | None = None,
    opponent_mix: Mapping[str, float] | None = None,
    *,
    n_envs: int = 8,
    ppo_kwargs: Mapping[str, Any] | None = None,
    eval_games: int = 200,
    verbose: int = 0,
    resume: bool = False,
    resumed: Callable[[int], None] | None = None,
) -> Path:
    """Train MaskablePPO by self-play against itself, its past snapshots and ``random``.

    Writes ``out_dir/snapshots/step_*.zip`` (frozen opponents), ``out_dir/model.zip``
    (the final model, loadable as ``sb3:out_dir/model.zip``) and
    ``out_dir/summary.json`` (steps, games, evaluation against ``random`` and, where
    the game has one, ``heuristic``, wall time), and the training curves in
    ``out_dir/logs`` (``progress.csv`` and TensorBoard). Same seed, same final weights (CPU).

    Args:
        game: the game.
        steps: learner moves to train for.
        out_dir: output directory (created).
        seed: the run's seed.
        net_arch: hidden layer sizes of the policy and of the value network.
        snapshot_every: learner steps between snapshots.
        opponent_mix: weights of ``current``, ``past`` and ``random`` opponents.
        n_envs: environments stepped side by side.
        ppo_kwargs: MaskablePPO hyperparameters replacing :data:`DEFAULT_PPO` entries.
        eval_games: games against each reference opponent at the end (0: none).
        verbose: SB3 verbosity.
        resume: checkpoint every rollout and go on from a checkpoint found in
            ``out_dir`` (see :func:`train_selfplay`).
        resumed: called with the checkpoint's step when a checkpoint is resumed.

    Returns:
        The path of ``model.zip``.

    Raises:
        TlmError: bad arguments.
    """
    run = train_selfplay(
        game, steps, out_dir, seed, net_arch=net_arch, snapshot_every=snapshot_every,
        opponent_mix=opponent_mix, n_envs=n_envs, ppo_kwargs=ppo_kwargs,
        eval_games=eval_games, verbose=verbose, resume=resume, resumed=resumed,
    )
    return run.model_path
