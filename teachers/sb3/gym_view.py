"""A Gymnasium single-agent view of an arena game, for single-agent RL libraries.

:class:`ArenaGymEnv` seats a learner in one seat of a two-player game and an arena
agent (``random``, a frozen snapshot, any :class:`arena.core.Agent`) in the other; the
opponent moves inside :meth:`ArenaGymEnv.step`, so from the learner's side the game is
an ordinary single-agent environment. It runs on the game's batched engine with one
game (``B = 1``), so every game of the registry works, through its fast engine or the
generic PettingZoo adapter.

Observations are exactly the game's PettingZoo observations (same ``Box``, dtype and
shape, from the mover's point of view) and :meth:`ArenaGymEnv.action_masks` gives the
legal actions in the form sb3-contrib's ``MaskablePPO`` asks for. The reward of a step
is the learner's own reward collected from its move and the opponent's replies (+1 /
0 / -1 for board games, chips for poker); an illegal learner action ends the episode
with -1.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, SupportsFloat

import gymnasium
import numpy as np
from gymnasium import spaces

from arena.agents import RandomAgent
from arena.core import Agent, State, TlmError
from arena.games import Game, get_game

OpponentSource = Agent | Callable[[np.random.Generator], Agent]
"""A fixed opponent, or ``sampler(rng) -> Agent`` called at every reset (opponent pools)."""

SEAT_MODES = ("random", "alternate")
"""Seat choices other than a fixed seat 0 or 1."""

MAX_SKIPPED_GAMES = 100
"""Games in a row that may end before the learner's first move before reset gives up."""


class ArenaGymEnv(gymnasium.Env[np.ndarray, np.int64]):
    """One seat of an arena game as a single-agent Gymnasium environment.

    The opponent's moves happen inside :meth:`reset` (when it moves first) and
    :meth:`step`. All randomness (the game's, the seat draw, the opponent's sampling)
    comes from the env's ``np_random``, so ``reset(seed=s)`` fixes the whole episode.

    A game that ends before the learner has moved at all (a poker opponent folding
    at once) cannot be returned by ``reset``; such games are skipped and counted in
    :attr:`skipped_games`.

    Attributes:
        game: the game.
        engine: the game's batched engine (one game at a time).
        opponent: the current opponent (re-drawn at every reset from a sampler).
        seat: the learner's seat in the current episode.
        skipped_games: games that ended before the learner's first move.
    """

    metadata: dict[str, Any] = {"render_modes": ["ansi"]}

    def __init__(
        self,
        game: str | Game,
        opponent: OpponentSource | None = None,
        seat: int | str = "random",
        render_mode: str | None = None,
    ) -> None:
        """Build the view.

        Args:
            game: a registered game or its name.
            opponent: the opponent agent, or a sampler ``rng -> Agent`` called at every
                reset; ``None`` plays against ``random``.
            seat: ``0`` or ``1`` (fixed), ``"random"`` (drawn each episode from the env's
                generator) or ``"alternate"`` (0, 1, 0, ... from each seeded reset).
            render_mode: ``None`` or ``"ansi"``.

        Raises:
            TlmError: unknown game, bad seat or render mode, an opponent bound to
                another game, or a game whose observation is not a single array.
        """
        self.game = get_game(game)
        if seat not in (0, 1) and seat not in SEAT_MODES:
            raise TlmError(f"seat must be 0, 1, 'random' or 'alternate', got {seat!r}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise TlmError(f"render mode must be None or 'ansi', got {render_mode!r}")
        self.seat_mode = seat
        self.render_mode = render_mode
        self._opponent_source: OpponentSource = RandomAgent() if opponent is None else opponent
        self.engine = self.game.make_engine()
        self.observation_space = _observation_box(self.game)
        self.action_space = spaces.Discrete(self.engine.num_actions)
        self.opponent: Agent = RandomAgent()
        self.seat = 0
        self.skipped_games = 0
        self._episodes_since_seed = 0
        self._state: State | None = None
        self._obs: np.ndarray | None = None
        self._mask: np.ndarray | None = None
        self._over = True

    def set_opponent(self, opponent: OpponentSource) -> None:
        """Replace the opponent (or opponent sampler) from the next reset on."""
        self._opponent_source = opponent

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start a game, let the opponent move until it is the learner's turn.

        Returns:
            ``(observation, {"seat": learner_seat})``.
        """
        super().reset(seed=seed)
        if seed is not None:
            self._episodes_since_seed = 0
        for _ in range(MAX_SKIPPED_GAMES):
            self.seat = self._draw_seat()
            self._episodes_since_seed += 1
            self.opponent = self._draw_opponent()
            engine_seed = int(self.np_random.integers(2**31 - 1))
            self._state = self.engine.reset(1, seed=engine_seed)
            self._over = False
            self._play_opponent()
            if not self._over:
                self._observe()
                assert self._obs is not None
                return self._obs, {"seat": self.seat}
            self.skipped_games += 1
        raise TlmError(
            f"{self.game.name}: {MAX_SKIPPED_GAMES} games in a row ended before the "
            f"learner's first move"
        )

    def step(
        self, action: Any
    ) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        """Play the learner's ``action``, then the opponent's replies.

        Returns:
            ``(observation, reward, terminated, False, info)``: the reward is the learner's
            total reward since its previous move; ``info`` has ``seat`` and, when the
            action was illegal, ``illegal = True``.

        Raises:
            TlmError: stepping a finished episode without a reset.
        """
        if self._over or self._mask is None or self._obs is None:
            raise TlmError("step() called on a finished episode: call reset() first")
        a = int(np.asarray(action).reshape(()))
        info: dict[str, Any] = {"seat": self.seat}
        if not (0 <= a < self.engine.num_actions) or not self._mask[a]:
            # The episode ends here; the observation stays the one the action was chosen on.
            self._over = True
            self._mask = np.zeros_like(self._mask)
            info["illegal"] = True
            return self._obs, -1.0, True, False, info
        reward = self._engine_step(a)
        reward += self._play_opponent()
        self._observe()
        return self._obs, float(reward), self._over, False, info

    def action_masks(self) -> np.ndarray:
        """``[A]`` bool: the learner's legal actions now (all ``False`` once the game is over)."""
        if self._mask is None:
            return np.zeros(self.engine.num_actions, dtype=bool)
        return self._mask.copy()

    def render(self) -> str | None:  # type: ignore[override]
        """The board as text in ``"ansi"`` mode, else ``None``."""
        if self.render_mode != "ansi" or self._state is None:
            return None
        return self.engine.render(self._state, 0)

    def _draw_seat(self) -> int:
        if self.seat_mode == "random":
            return int(self.np_random.integers(2))
        if self.seat_mode == "alternate":
            return self._episodes_since_seed % 2
        return int(self.seat_mode)

    def _draw_opponent(self) -> Agent:
        source = self._opponent_source
        opponent = source if isinstance(source, Agent) else source(self.np_random)
        if opponent.game is not None and opponent.game != self.game.name:
            raise TlmError(
                f"opponent {opponent.name!r} plays {opponent.game}, not {self.game.name}"
            )
        return opponent

    def _engine_step(self, action: int) -> float:
        """Play one move for whoever is to move; the learner's reward from it."""
        self._state, rewards, done = self.engine.step(
            self._state, np.array([action], dtype=np.int64)
        )
        self._over = bool(done[0])
        return float(rewards[0, self.seat])

    def _play_opponent(self) -> float:
        """Opponent moves until the learner is to move or the game ends."""
        reward = 0.0
        wants_obs = getattr(self.opponent, "uses_observation", True)
        obs: Any  # None for an agent that only reads the mask, as in play_matches
        while not self._over and int(self.engine.to_play(self._state)[0]) != self.seat:
            if wants_obs:
                obs, mask = self.engine.observe(self._state)
            else:
                obs, mask = None, self.engine.legal_mask(self._state)
            state = self.engine.clone(self._state) if self.opponent.needs_state else None
            action = int(np.asarray(self.opponent.act(obs, mask, self.np_random, state=state))[0])
            if not (0 <= action < mask.shape[1]) or not mask[0, action]:
                raise TlmError(
                    f"opponent {self.opponent.name!r} played illegal action {action} "
                    f"in {self.game.name}"
                )
            reward += self._engine_step(action)
        return reward

    def _observe(self) -> None:
        obs, mask = self.engine.observe(self._state)
        self._obs = np.asarray(obs[0], dtype=self.observation_space.dtype)
        self._mask = mask[0].astype(bool)


def _observation_box(game: Game) -> spaces.Box:
    """The PettingZoo env's own ``observation`` Box (bounds, shape and dtype)."""
    env = game.make_env()
    space = env.observation_space(env.possible_agents[0])
    inner = space["observation"] if isinstance(space, spaces.Dict) else space
    if not isinstance(inner, spaces.Box):
        raise TlmError(f"{game.name}: observation is not a single array ({inner})")
    return inner
