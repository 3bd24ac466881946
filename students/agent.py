"""The student agent: a :class:`StudentNet` behind the arena's agent contract.

It turns numpy observations and legal masks into one batched forward pass and returns
numpy probabilities over the legal actions, so a student plays in matches, leagues and
evaluations like any other agent. It wraps the network without copying it, so an agent
made from a network that is being trained always plays its current weights.
"""

from __future__ import annotations

import numpy as np
import torch

from arena.core import PolicyAgent, State, TlmError, masked_softmax
from students.networks import StudentNet, format_shape


class StudentAgent(PolicyAgent):
    """Plays a student network: masked softmax of its logits, argmax when greedy.

    Attributes:
        net: the network (shared, not copied).
        game: the network's game.
        greedy: play the most probable legal action instead of sampling.
    """

    max_batch = 4096
    """Games per forward pass in matches: larger batches gain little on the CPU and
    a residual network's activations grow with them."""

    def __init__(self, net: StudentNet, greedy: bool = True, name: str | None = None) -> None:
        """Wrap ``net``.

        Args:
            net: the student network.
            greedy: play the masked argmax (``True``) or sample the policy (``False``).
            name: the agent's name; defaults to ``student:<spec>``.
        """
        self.net = net
        self.game = net.game
        self.greedy = greedy
        self.name = name if name is not None else f"student:{net.spec}"

    def _forward(self, obs: np.ndarray, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        obs_shape = tuple(obs.shape[1:])
        if obs_shape != self.net.obs_shape:
            raise TlmError(
                f"observation shape {format_shape(obs_shape)} does not match "
                f"the student's {format_shape(self.net.obs_shape)}"
            )
        if mask.ndim != 2 or mask.shape != (obs.shape[0], self.net.num_actions):
            raise TlmError(
                f"action mask shape {format_shape(tuple(mask.shape))} does not match "
                f"{len(obs)} observations of {self.net.num_actions} actions"
            )
        device = next(self.net.parameters()).device
        x = torch.from_numpy(np.ascontiguousarray(obs)).to(device)
        with torch.no_grad():
            logits, value = self.net(x)
        return logits, value

    @staticmethod
    def _masked_probs(logits: torch.Tensor, mask: np.ndarray) -> np.ndarray:
        return masked_softmax(logits.detach().to("cpu", torch.float64).numpy(), mask)

    def policy(self, obs: np.ndarray, mask: np.ndarray, state: State | None = None) -> np.ndarray:
        """``probs[B, A]`` (float64): the softmax of the logits over the legal actions.

        Raises:
            TlmError: the observation or mask shape does not fit the network.
        """
        logits, _ = self._forward(obs, mask)
        return self._masked_probs(logits, mask)

    def value(self, obs: np.ndarray, mask: np.ndarray, state: State | None = None) -> np.ndarray:
        """``[B]`` (float64): the value head's estimate for the mover, in [-1, 1]."""
        _, value = self._forward(obs, mask)
        return value.detach().to("cpu", torch.float64).numpy()

    def policy_and_value(self, obs: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`policy` and :meth:`value` from a single forward pass."""
        logits, value = self._forward(obs, mask)
        return self._masked_probs(logits, mask), value.detach().to("cpu", torch.float64).numpy()
