"""League learners: training backends behind the :mod:`teachers.learner` protocol.

:class:`SB3Learner` is sb3-contrib's MaskablePPO training through the Gymnasium view
of the arena (:class:`teachers.gym_view.ArenaGymEnv`) against opponents that a league
picks: each training episode draws one of them from the env's own seeded generator,
with the league's sampling weights. It is what :mod:`teachers.league_run` drives.

Resuming must give the same league as never stopping, so a learner keeps all its
randomness in a state it can write and read back: every :meth:`SB3Learner.train` call
draws a fresh seed from the learner's own generator, reseeds SB3 (which uses the
global generators by design) and the environments with it, and starts from fresh
games. The training state (:meth:`SB3Learner.save`) is the policy's and optimizer's
tensors (``torch.save``, read back with ``weights_only=True``) plus a JSON file of
counters and the generator's state; a snapshot is an SB3 zip (``sb3:PATH``), SB3's
own format for a frozen policy.

Importing this module also tells :mod:`arena.runners` how an :class:`SB3Agent` travels
to Ray workers (as its SB3 zip's bytes), so a league's live learners and snapshots
can play their rating matches there.
"""

from __future__ import annotations

import io
import json
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, SupportsFloat

import gymnasium
import numpy as np
import torch
from sb3_contrib import MaskablePPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.vec_env import DummyVecEnv, VecMonitor

from arena.core import Agent, TlmError
from arena.games import Game, get_game
from arena.runners import register_payload
from arena.runstate import write_json_atomic
from teachers.gym_view import ArenaGymEnv
from teachers.learner import TrainReport, opponent_weights, using_torch_threads
from teachers.sb3_teacher import DEFAULT_PPO, SB3Agent, load_sb3_model

STATE_FILE = "learner.json"
"""Counters and generator state of a saved learner (JSON)."""

PARAMS_FILE = "params.pt"
"""Policy and optimizer tensors of a saved learner (``torch.save`` of plain tensors)."""


class _LeagueEnv(ArenaGymEnv):
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


class SB3Learner:
    """MaskablePPO (sb3-contrib) trained against opponents picked from outside.

    Attributes:
        name: the learner's name in the league.
        backend: ``"sb3"``.
        game: the game.
        model: the MaskablePPO model being trained.
        games: training games finished since the learner was created.
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

        Raises:
            TlmError: bad sizes or hyperparameters.
        """
        self.name = name
        self.game = get_game(game)
        if n_envs <= 0:
            raise TlmError(f"learner {name}: n_envs must be positive, got {n_envs}")
        if not net_arch or any(int(w) <= 0 for w in net_arch):
            raise TlmError(f"learner {name}: net_arch must be positive sizes, got {list(net_arch)}")
        self.torch_threads = torch_threads
        self._rng = np.random.default_rng(np.random.SeedSequence(seed))
        self._opponents: list[Agent] = []
        self._weights: np.ndarray | None = None
        envs = [self._make_env() for _ in range(n_envs)]
        self.env = VecMonitor(DummyVecEnv(envs))
        hyper = {**DEFAULT_PPO, **(ppo_kwargs or {})}
        try:
            with using_torch_threads(torch_threads):
                self.model = MaskablePPO(
                    "MlpPolicy", self.env, seed=seed, device="cpu", verbose=0,
                    policy_kwargs={"net_arch": [int(w) for w in net_arch]}, **hyper,
                )
        except (TypeError, ValueError) as error:
            raise TlmError(f"learner {name}: bad PPO settings ({error})") from None
        # No output formats: the last update's losses stay readable in name_to_value.
        self.model.set_logger(Logger(folder=None, output_formats=[]))
        self.games = 0
        self._agent = SB3Agent(self.model, game=self.game, greedy=True, name=name)

    def _make_env(self) -> Callable[[], gymnasium.Env[Any, Any]]:
        return lambda: _LeagueEnv(self.game, opponent=self._draw, seat="random")

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
            self.model.learn(total_timesteps=steps, reset_num_timesteps=False, callback=scores)
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


def sb3_payload(agent: SB3Agent) -> dict[str, Any]:
    """An SB3 agent as plain data for a worker: its model's zip, its game and greediness."""
    buffer = io.BytesIO()
    agent.model.save(buffer)
    return {"zip": buffer.getvalue(), "game": agent.game, "greedy": agent.greedy}


def sb3_from_payload(data: dict[str, Any], game: Game) -> SB3Agent:
    """The agent :func:`sb3_payload` describes (on the CPU)."""
    with tempfile.TemporaryDirectory(prefix="tlm_sb3_") as tmp:
        path = Path(tmp) / "model.zip"
        path.write_bytes(data["zip"])
        model = load_sb3_model(path)
    return SB3Agent(model, game=data["game"] or game, greedy=bool(data["greedy"]))


register_payload(SB3Agent, sb3_payload, sb3_from_payload)
