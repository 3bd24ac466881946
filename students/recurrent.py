"""Recurrent students: a network with memory that carries what it saw from one game of a
series to the next, so that it can learn, inside a series, whom it plays.

Spec ``gru:HIDDEN`` (or ``gru:HIDDENxLAYERS``, the layers of its encoder): each event of
a series goes through an encoder (``LAYERS`` fully connected ReLU layers of ``HIDDEN``
units) into a GRU cell of ``HIDDEN`` units, whose state is the memory. Two kinds of
event:

- a *decision*: the observation of a position where the student moves; the policy
  (logits over actions) and value heads read the memory after it;
- the *end of a game*: the game's result for the student (+1, 0, -1), so the memory
  knows how each game of the series went.

The opponent's moves are in the observations (what changed between two decisions), so
the memory sees the whole series. Weights are initialized from the seed like every
student's, and a checkpoint is the same ``model.safetensors`` + ``config.json``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from arena.core import Agent, State, TlmError, masked_argmax, sample_from
from arena.games import Game, get_game
from students.networks import StudentSpec, format_shape

N_EVENT_FEATURES = 5
"""Features added to every event: decision, end of game, and the result one-hot."""

DECISION, GAME_END, PAD = 1, 2, 0
"""Event kinds in a training sequence (``PAD`` fills a short sequence)."""


class RecurrentStudentNet(nn.Module):
    """A recurrent policy + value network for one game, freshly initialized from a seed.

    Attributes:
        spec: the canonical spec (``gru:128x1``).
        arch: ``gru``.
        game: the game's registry name.
        obs_shape: the observation shape it takes (without the batch dimension).
        num_actions: policy logits per row.
        seed: the seed of its initialization.
        hidden: units of the memory.
    """

    recurrent = True

    def __init__(self, spec: StudentSpec, game: str | Game, seed: int) -> None:
        super().__init__()
        if spec.arch != "gru":
            raise TlmError(f"{spec} is not a recurrent student spec")
        g = get_game(game)
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
            raise TlmError(f"student seed must be an integer in 0..2**63-1, got {seed!r}")
        self.spec = str(spec)
        self.arch = spec.arch
        self.game = g.name
        self.obs_shape: tuple[int, ...] = tuple(int(n) for n in g.obs_shape)
        self.num_actions = int(g.num_actions)
        self.seed = seed
        self.hidden = spec.width
        fan_in = math.prod(self.obs_shape) + N_EVENT_FEATURES
        with torch.device("meta"):
            layers: list[nn.Module] = []
            for _ in range(spec.depth):
                layers += [nn.Linear(fan_in, spec.width), nn.ReLU()]
                fan_in = spec.width
            self.encoder = nn.Sequential(*layers)
            self.cell = nn.GRUCell(fan_in, spec.width)
            self.policy_head = nn.Linear(spec.width, self.num_actions)
            self.value_head = nn.Linear(spec.width, 1)
        self.to_empty(device="cpu")
        self._initialize(seed)

    @torch.no_grad()
    def _initialize(self, seed: int) -> None:
        gen = torch.Generator().manual_seed(seed)
        for module in self.encoder:
            if isinstance(module, nn.Linear):
                nn.init.kaiming_uniform_(module.weight, nonlinearity="relu", generator=gen)
                module.bias.zero_()
        bound = 1.0 / math.sqrt(self.hidden)
        for p in self.cell.parameters():
            nn.init.uniform_(p, -bound, bound, generator=gen)
        for head in (self.policy_head, self.value_head):
            nn.init.uniform_(head.weight, -bound, bound, generator=gen)
            head.bias.zero_()

    def initial(self, n: int) -> torch.Tensor:
        """The memory of ``n`` new series: ``[n, hidden]`` zeros."""
        return torch.zeros(n, self.hidden)

    def _events(self, obs: torch.Tensor, kind: torch.Tensor,
                result: torch.Tensor) -> torch.Tensor:
        # Only a decision shows a position: the other events carry none, in training
        # sequences as in play.
        flat = obs.reshape(len(obs), -1).to(torch.float32) * (kind == DECISION)[:, None]
        extra = torch.zeros(len(obs), N_EVENT_FEATURES)
        extra[:, 0] = (kind == DECISION).to(torch.float32)
        extra[:, 1] = (kind == GAME_END).to(torch.float32)
        ended = kind == GAME_END
        for col, r in ((2, 1), (3, 0), (4, -1)):
            extra[:, col] = (ended & (result == r)).to(torch.float32)
        return torch.cat([flat, extra], dim=1)

    def step(self, obs: torch.Tensor, memory: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A decision: ``(logits[B, A], value[B], memory')`` for observations ``obs``."""
        if tuple(obs.shape[1:]) != self.obs_shape:
            raise TlmError(
                f"observation shape {format_shape(tuple(obs.shape[1:]))} does not match "
                f"the student's {format_shape(self.obs_shape)}"
            )
        kind = torch.full((len(obs),), DECISION)
        x = self.encoder(self._events(obs, kind, torch.zeros(len(obs))))
        memory = self.cell(x, memory)
        return self.policy_head(memory), torch.tanh(self.value_head(memory)).squeeze(-1), memory

    def end(self, result: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """The end of a game with ``result[B]`` (+1, 0, -1) for the student: ``memory'``."""
        obs = torch.zeros(len(result), *self.obs_shape)
        kind = torch.full((len(result),), GAME_END)
        return self.cell(self.encoder(self._events(obs, kind, result)), memory)

    def forward_sequence(self, obs: torch.Tensor, kind: torch.Tensor, result: torch.Tensor
                         ) -> tuple[torch.Tensor, torch.Tensor]:
        """Every event of ``N`` series at once, for training.

        Args:
            obs: ``[N, T, *obs_shape]`` (anything at end-of-game and padding events).
            kind: ``[N, T]``: :data:`DECISION`, :data:`GAME_END` or :data:`PAD`.
            result: ``[N, T]``: the result at end-of-game events.

        Returns:
            ``(logits[N, T, A], value[N, T])`` after each event (read them at decisions).
        """
        n, t = kind.shape
        memory = self.initial(n)
        logits, values = [], []
        for i in range(t):
            x = self.encoder(self._events(obs[:, i], kind[:, i], result[:, i]))
            new = self.cell(x, memory)
            keep = (kind[:, i] == PAD)[:, None]
            memory = torch.where(keep, memory, new)
            logits.append(self.policy_head(memory))
            values.append(torch.tanh(self.value_head(memory)).squeeze(-1))
        return torch.stack(logits, dim=1), torch.stack(values, dim=1)

    def extra_repr(self) -> str:
        return f"spec={self.spec!r}, game={self.game!r}, seed={self.seed}"


class RecurrentStudentAgent(Agent):
    """Plays a recurrent student: its memory is an array the match keeps per series.

    ``initial_memory(n)`` starts ``n`` series; ``act_with_memory`` takes the rows'
    memories and returns the actions with the memories after; ``end_game`` folds each
    finished game's result in. :meth:`act` alone (no series) plays from fresh memory.
    """

    recurrent = True
    max_batch = 4096

    def __init__(self, net: RecurrentStudentNet, greedy: bool = True,
                 name: str | None = None) -> None:
        self.net = net
        self.game = net.game
        self.greedy = greedy
        self.name = name if name is not None else f"student:{net.spec}"

    def initial_memory(self, n: int) -> np.ndarray:
        """``[n, hidden]`` float32: the memory of ``n`` new series."""
        return np.zeros((n, self.net.hidden), dtype=np.float32)

    def policy_with_memory(self, obs: np.ndarray, mask: np.ndarray, memory: np.ndarray
                           ) -> tuple[np.ndarray, np.ndarray]:
        """``(probs[B, A], memory')``: the masked policy after seeing ``obs``."""
        with torch.inference_mode():
            logits, _, new = self.net.step(torch.from_numpy(np.ascontiguousarray(obs)),
                                           torch.from_numpy(np.ascontiguousarray(memory)))
        z = np.where(np.asarray(mask) != 0, logits.numpy().astype(np.float64), -np.inf)
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True), new.numpy()

    def act_with_memory(self, obs: np.ndarray, mask: np.ndarray, rng: np.random.Generator,
                        memory: np.ndarray, state: State | None = None
                        ) -> tuple[np.ndarray, np.ndarray]:
        """``(actions[B], memory')`` for rows whose memories are ``memory``."""
        probs, new = self.policy_with_memory(obs, mask, memory)
        actions = masked_argmax(probs, mask) if self.greedy else sample_from(probs, rng)
        return actions, new

    def end_game(self, memory: np.ndarray, result: np.ndarray) -> np.ndarray:
        """The memories after games that ended with ``result`` (+1, 0, -1) for it."""
        with torch.inference_mode():
            new = self.net.end(torch.from_numpy(np.asarray(result, dtype=np.float32)),
                               torch.from_numpy(np.ascontiguousarray(memory)))
        return new.numpy()

    def act(self, obs: np.ndarray, mask: np.ndarray, rng: np.random.Generator,
            state: State | None = None) -> np.ndarray:
        actions, _ = self.act_with_memory(obs, mask, rng, self.initial_memory(len(obs)))
        return actions
