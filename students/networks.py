"""Student networks: small policy + value networks built fresh from a spec and a seed.

A student spec names an architecture and its size:

- ``mlp:WIDTHxLAYERS`` (``mlp:256x2``): the observation flattened, then ``LAYERS``
  fully connected ReLU layers of ``WIDTH`` units;
- ``cnn:CHANNELSxLAYERS`` (``cnn:32x3``): the ``H x W x C`` observation planes moved to
  channels-first, then ``LAYERS`` 3x3 convolutions (padding 1) of ``CHANNELS`` channels;
- ``res:CHANNELSxBLOCKS`` (``res:32x2``): a 3x3 convolution stem, then ``BLOCKS``
  residual blocks of two 3x3 convolutions each;
- ``gru:HIDDEN[xLAYERS]`` (``gru:128``): a recurrent student with memory across the
  games of a series (:mod:`students.recurrent`; built by
  :func:`students.build_recurrent_student`).

A kind alone takes its default size (:data:`DEFAULT_SIZES`). Both convolutional kinds
end in AlphaZero-style heads (a 1x1 convolution, then fully connected layers), so the
head stays small on large boards and action spaces. The 1x1 convolutions feed the fully
connected layers directly (``heads = "linear"``): AlphaZero puts batch normalization
and a ReLU there, but a ReLU on two (policy) or one (value) channels with no
normalization can die, every unit negative on every position, and then no gradient
reaches the trunk and the student plays one fixed distribution for the rest of its
training. Networks saved before this change (``heads = "relu"``) are rebuilt with that
ReLU, so they play as they were trained. Every network returns
``(logits[B, A], value[B])`` with the value squashed into [-1, 1] by ``tanh``.

There is no batch normalization anywhere: a student's outputs for a position never
depend on the rest of its batch or on train/eval mode, so batched inference, single
positions and a reloaded checkpoint all agree exactly.

Weights are initialized from a ``torch.Generator`` seeded with the student's seed and
the layers are first built on the ``meta`` device, so building a student neither reads
nor advances torch's global random state: the same spec, game and seed always give the
same weights.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch
from torch import nn

from arena.core import TlmError
from arena.games import Game, get_game

DEFAULT_SIZES: dict[str, tuple[int, int]] = {
    "mlp": (256, 2),
    "cnn": (32, 3),
    "res": (32, 2),
    "gru": (128, 1),
}
"""``(width or channels, layers or blocks)`` taken by a spec that gives only the kind."""

MAX_WIDTH = 8192
"""Largest width / channel count a spec may ask for (a guard against typos)."""

MAX_DEPTH = 64
"""Largest number of layers / blocks a spec may ask for."""

_SIZE_RE = re.compile(r"^(\d+)x(\d+)$")

_VALUE_HIDDEN = 64
"""Hidden units of the convolutional value head."""

_POLICY_HEAD_CHANNELS = 2
"""1x1-convolution channels feeding the convolutional policy head (as in AlphaZero)."""

HEADS = ("linear", "relu")
"""What follows the 1x1 convolutions of the convolutional heads: nothing (``linear``,
what new students get) or a ReLU (``relu``, students saved before ``linear``)."""

DEFAULT_HEADS = "linear"
"""The heads of a freshly built student."""


def _head_activation(heads: str) -> nn.Module:
    if heads not in HEADS:
        raise TlmError(f"unknown student heads {heads!r} (known: {', '.join(HEADS)})")
    return nn.ReLU() if heads == "relu" else nn.Identity()


@dataclass(frozen=True)
class StudentSpec:
    """A parsed student spec.

    Attributes:
        arch: ``mlp``, ``cnn`` or ``res``.
        width: hidden units (``mlp``) or channels (``cnn``, ``res``).
        depth: hidden layers (``mlp``), convolutions (``cnn``) or residual blocks (``res``).
    """

    arch: str
    width: int
    depth: int

    def __str__(self) -> str:
        return f"{self.arch}:{self.width}x{self.depth}"


def parse_spec(spec: str) -> StudentSpec:
    """Parse ``mlp``, ``mlp:256x2``, ``cnn:32x3``, ``res:32x2``, ...

    Args:
        spec: the spec string.

    Returns:
        The parsed spec; ``str()`` of it is the canonical spelling (sizes always given).

    Raises:
        TlmError: unknown architecture, malformed or out-of-range sizes.
    """
    arch, sep, size = spec.strip().partition(":")
    if arch not in DEFAULT_SIZES:
        known = ", ".join(DEFAULT_SIZES)
        raise TlmError(f"unknown student architecture {arch!r} (known: {known})")
    if not sep:
        width, depth = DEFAULT_SIZES[arch]
        return StudentSpec(arch, width, depth)
    if arch == "gru" and size.strip().isdigit():
        size = f"{size.strip()}x{DEFAULT_SIZES['gru'][1]}"
    match = _SIZE_RE.match(size.strip())
    if match is None:
        w, d = DEFAULT_SIZES[arch]
        raise TlmError(
            f"bad student spec {spec!r}: expected {arch}:WIDTHxLAYERS such as {arch}:{w}x{d}"
        )
    width, depth = int(match.group(1)), int(match.group(2))
    if not 1 <= width <= MAX_WIDTH:
        raise TlmError(f"bad student spec {spec!r}: width must be in 1..{MAX_WIDTH}, got {width}")
    if not 1 <= depth <= MAX_DEPTH:
        raise TlmError(f"bad student spec {spec!r}: layers must be in 1..{MAX_DEPTH}, got {depth}")
    return StudentSpec(arch, width, depth)


def format_shape(shape: tuple[int, ...]) -> str:
    """``(3,3,2)``: a shape as error messages print it."""
    return "(" + ",".join(str(n) for n in shape) + ("," if len(shape) == 1 else "") + ")"


class _Pointwise(nn.Conv2d):
    """A 1x1 convolution computed as a fully connected layer over the channels of every
    cell: the same weights and outputs up to rounding, but torch's CPU kernel for a 1x1
    convolution picks its blocking by batch size, so a position's outputs changed with
    the rest of its batch; padded to a multiple of eight rows
    (:data:`teachers.mcts.inference.PAD_ROWS`), this one's do not."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = nn.functional.linear(x.permute(0, 2, 3, 1), self.weight.flatten(1), self.bias)
        return out.permute(0, 3, 1, 2)


class _ResidualBlock(nn.Module):
    """``relu(x + conv(relu(conv(x))))``; the second convolution starts at zero."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.conv2(torch.relu(self.conv1(x))))


class StudentNet(nn.Module):
    """A policy + value network for one game, freshly initialized from a seed.

    Attributes:
        spec: the canonical spec (``mlp:256x2``).
        arch: ``mlp``, ``cnn`` or ``res``.
        game: the game's registry name.
        obs_shape: the observation shape it takes (without the batch dimension).
        num_actions: the number of actions (policy logits per row).
        seed: the seed of its initialization.
        heads: what follows the heads' 1x1 convolutions (:data:`HEADS`).
    """

    def __init__(self, spec: str | StudentSpec, game: str | Game, seed: int,
                 heads: str = DEFAULT_HEADS) -> None:
        """Build the network and initialize it from ``seed``.

        Args:
            spec: a student spec (see the module docstring).
            game: a registered game or its name.
            seed: seeds the initialization; any Python int.
            heads: ``linear`` (new students) or ``relu`` (students saved before it).

        Raises:
            TlmError: bad spec, unknown game, or a convolutional spec for a game whose
                observation is not a board of planes.
        """
        super().__init__()
        parsed = spec if isinstance(spec, StudentSpec) else parse_spec(spec)
        if parsed.arch == "gru":
            raise TlmError(f"{parsed} is a recurrent student: it plays series of games "
                           "(tlm distill --method incontext), not single positions")
        g = get_game(game)
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
            raise TlmError(f"student seed must be an integer in 0..2**63-1, got {seed!r}")
        self.spec = str(parsed)
        self.arch = parsed.arch
        self.game = g.name
        self.obs_shape: tuple[int, ...] = tuple(int(n) for n in g.obs_shape)
        self.num_actions = int(g.num_actions)
        self.seed = seed
        _head_activation(heads)  # unknown heads fail before any layer is built
        self.heads = heads
        if parsed.arch != "mlp" and len(self.obs_shape) != 3:
            raise TlmError(
                f"{parsed.arch} needs a board-shaped observation (height x width x planes); "
                f"{g.name}'s is {format_shape(self.obs_shape)}: use mlp"
            )
        # Built on the meta device so that no layer's default initialization touches
        # torch's global generator; real storage and values come in _initialize.
        with torch.device("meta"):
            if parsed.arch == "mlp":
                self._build_mlp(parsed.width, parsed.depth)
            else:
                self._build_conv(parsed.arch, parsed.width, parsed.depth, heads)
        self.to_empty(device="cpu")
        self._initialize(seed)

    def _build_mlp(self, width: int, depth: int) -> None:
        layers: list[nn.Module] = [nn.Flatten()]
        fan_in = math.prod(self.obs_shape)
        for _ in range(depth):
            layers += [nn.Linear(fan_in, width), nn.ReLU()]
            fan_in = width
        self.trunk = nn.Sequential(*layers)
        self.policy_head = nn.Sequential(nn.Linear(width, self.num_actions))
        self.value_head = nn.Sequential(nn.Linear(width, 1))

    def _build_conv(self, arch: str, channels: int, depth: int, heads: str) -> None:
        height, width, planes = self.obs_shape
        layers: list[nn.Module] = []
        if arch == "cnn":
            fan_in = planes
            for _ in range(depth):
                layers += [nn.Conv2d(fan_in, channels, 3, padding=1), nn.ReLU()]
                fan_in = channels
        else:
            layers += [nn.Conv2d(planes, channels, 3, padding=1), nn.ReLU()]
            layers += [_ResidualBlock(channels) for _ in range(depth)]
        self.trunk = nn.Sequential(*layers)
        cells = height * width
        self.policy_head = nn.Sequential(
            _Pointwise(channels, _POLICY_HEAD_CHANNELS),
            _head_activation(heads),
            nn.Flatten(),
            nn.Linear(_POLICY_HEAD_CHANNELS * cells, self.num_actions),
        )
        self.value_head = nn.Sequential(
            _Pointwise(channels, 1),
            _head_activation(heads),
            nn.Flatten(),
            nn.Linear(cells, _VALUE_HIDDEN),
            nn.ReLU(),
            nn.Linear(_VALUE_HIDDEN, 1),
        )

    @torch.no_grad()
    def _initialize(self, seed: int) -> None:
        # He-uniform for layers that feed a ReLU; zero biases; the output layers get
        # PyTorch's default U(+-1/sqrt(fan_in)) so initial logits and values stay small;
        # each residual branch starts as the identity (its last convolution at zero),
        # which keeps a normalization-free tower stable at any depth.
        gen = torch.Generator().manual_seed(seed)
        outputs = {id(self.policy_head[-1]), id(self.value_head[-1])}
        zero = {id(m.conv2) for m in self.modules() if isinstance(m, _ResidualBlock)}
        for module in self.modules():
            if not isinstance(module, nn.Linear | nn.Conv2d):
                continue
            if id(module) in zero:
                module.weight.zero_()
            elif id(module) in outputs:
                bound = 1.0 / math.sqrt(module.weight[0].numel())
                nn.init.uniform_(module.weight, -bound, bound, generator=gen)
            else:
                nn.init.kaiming_uniform_(module.weight, nonlinearity="relu", generator=gen)
            if module.bias is not None:
                module.bias.zero_()

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Policy logits and value for a batch of observations.

        Args:
            obs: ``[B, *obs_shape]`` of any dtype (int8, bool, float, ...), as the game's
                PettingZoo env emits them.

        Returns:
            ``(logits[B, A], value[B])``, float32; the value is in [-1, 1]. Logits of
            illegal actions are not masked: see :func:`masked_log_softmax`.

        Raises:
            TlmError: the observation shape is not the game's.
        """
        if tuple(obs.shape[1:]) != self.obs_shape:
            raise TlmError(
                f"observation shape {format_shape(tuple(obs.shape[1:]))} does not match "
                f"the student's {format_shape(self.obs_shape)}"
            )
        x = obs.to(torch.float32)
        if self.arch != "mlp":
            x = x.permute(0, 3, 1, 2)
        features = self.trunk(x)
        logits = self.policy_head(features)
        value = torch.tanh(self.value_head(features)).squeeze(-1)
        return logits, value

    def extra_repr(self) -> str:
        return f"spec={self.spec!r}, game={self.game!r}, seed={self.seed}, heads={self.heads!r}"

    def use_heads(self, heads: str) -> None:
        """Rebuild the heads' activations as ``heads`` says, keeping every weight (a
        network restored into one built earlier plays as the one it was saved from)."""
        _head_activation(heads)
        if self.arch != "mlp":
            self.policy_head[1] = _head_activation(heads)
            self.value_head[1] = _head_activation(heads)
        self.heads = heads


def build_student(spec: str, game: str | Game, seed: int,
                  heads: str = DEFAULT_HEADS) -> StudentNet:
    """A freshly initialized student network for ``game``.

    Args:
        spec: ``mlp:256x2``, ``cnn:32x3``, ``res:32x2``, or a kind alone.
        game: a registered game or its name.
        seed: seeds the initialization; same spec, game and seed give identical weights.
        heads: ``linear`` (the default) or ``relu`` (:data:`HEADS`).

    Returns:
        The network, on the CPU, in training mode.

    Raises:
        TlmError: bad spec or seed, unknown game, unknown heads, or a spec the game's
            observation does not fit.
    """
    return StudentNet(spec, game, seed, heads)


def param_count(net: nn.Module) -> int:
    """The number of trainable scalars in ``net``."""
    return sum(p.numel() for p in net.parameters())


def masked_log_softmax(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Log-softmax of ``logits`` over the legal actions only.

    Args:
        logits: ``[B, A]``.
        mask: ``[B, A]``, nonzero (or ``True``) where the action is legal.

    Returns:
        ``[B, A]``: log-probabilities summing (in probability) to one over the legal
        actions of each row, ``-inf`` on illegal actions. A row with no legal action
        is ``-inf`` throughout (all probabilities zero) rather than NaN, and gradients
        never flow into masked entries.
    """
    legal = mask.to(torch.bool)
    masked = logits.masked_fill(~legal, float("-inf"))
    lse = torch.logsumexp(masked, dim=-1, keepdim=True)
    # A row without legal actions has lse = -inf; subtracting it would give NaN.
    lse = torch.where(torch.isfinite(lse), lse, torch.zeros_like(lse))
    return masked - lse
