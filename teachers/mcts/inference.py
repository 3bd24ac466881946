"""Leaf inference for the fast search: policy logits and value from one forward pass.

A :class:`NetworkInference` wraps a torch policy-value network (a module whose
``forward(obs)`` returns ``(logits[B, A], value[B])``, as students' networks do) and
calls it once per batch of leaves under ``torch.inference_mode``, optionally with
the weights laid out channels-last and under bfloat16 autocast where the CPU computes
in bfloat16 natively. :class:`OnnxInference` runs the same network, exported, on ONNX
Runtime in fp32 (the optional ``onnx`` extra: ``onnxruntime`` and ``onnx``).
:class:`AgentInference` serves any policy agent with a value (two calls, its
probabilities taken back to logits).

The search pads its batches to a multiple of a leaf function's ``pad_rows``
(:func:`padded_rows`): torch's CPU kernels of small fully connected layers pick their
algorithm by batch size, and padding to :data:`PAD_ROWS` makes a position's outputs the
same bits whatever batch it comes in, so a search gives the same tree whether a
position was evaluated now or taken from the cache. ONNX Runtime needs no padding.
"""

from __future__ import annotations

import copy
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from arena.core import PolicyAgent, TlmError

PAD_ROWS = 8
"""Batches go to the network in multiples of this many rows."""
PRECISIONS = ("fp32", "bf16")
"""``fp32``: the network as it is; ``bf16``: bfloat16 autocast (CPUs with native bf16)."""

LeafFn = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
"""``fn(obs[K, ...] int8, mask[K, A] int8) -> (logits[K, A] float32, value[K] float32)``."""


def padded_rows(n: int, pad: int = PAD_ROWS) -> int:
    """``n`` rounded up to a multiple of ``pad``."""
    return -(-n // pad) * pad


def bf16_native() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX-512 BF16 or AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


class NetworkInference:
    """Logits and values of a policy-value network, one forward pass per batch.

    Args:
        net: a module with ``forward(obs) -> (logits, value)``, obs as the game's
            PettingZoo planes (any dtype).
        precision: ``fp32`` or ``bf16`` (refused on CPUs without native bfloat16).
        channels_last: run a copy of the network with channels-last weights (a
            snapshot: later changes to ``net``'s weights do not reach it).

    Without ``channels_last`` it wraps ``net`` itself, so an agent built on a network
    in training evaluates its current weights (clear the search's cache after a step).
    """

    pad_rows = PAD_ROWS

    def __init__(self, net: torch.nn.Module, *, precision: str = "fp32",
                 channels_last: bool = False) -> None:
        if precision not in PRECISIONS:
            raise TlmError(f"unknown precision {precision!r} (known: {', '.join(PRECISIONS)})")
        if precision == "bf16" and not bf16_native():
            raise TlmError("bf16 inference needs a CPU with native bfloat16 (AVX-512 BF16 or "
                           "AMX); use fp32")
        self.precision = precision
        self.channels_last = channels_last
        if channels_last:
            net = copy.deepcopy(net).to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.net = net.eval()

    def __call__(self, obs: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(logits[K, A], value[K])`` float32 for the observations ``obs[K, ...]``."""
        x = torch.from_numpy(obs)
        with torch.inference_mode(), torch.autocast(
            "cpu", dtype=torch.bfloat16, enabled=self.precision == "bf16"
        ):
            logits, value = self.net(x)
        return (logits.to(torch.float32).numpy(), value.to(torch.float32).numpy())

    def __repr__(self) -> str:
        layout = ", channels_last" if self.channels_last else ""
        return f"NetworkInference({self.precision}{layout})"


class OnnxInference:
    """Logits and values of a policy-value network run by ONNX Runtime, in fp32.

    The network is exported once (a snapshot of its weights) and run with as many
    threads as torch uses. Its outputs differ from torch's by float rounding (about
    1e-6) and, like torch's, do not depend on the batch.

    Args:
        net: as for :class:`NetworkInference`; it must have ``obs_shape``.

    Raises:
        TlmError: ``onnxruntime`` or ``onnx`` is not installed.
    """

    pad_rows = 1

    def __init__(self, net: torch.nn.Module) -> None:
        try:
            import onnx  # noqa: F401  (torch's exporter needs it)
            import onnxruntime
        except ImportError:
            raise TlmError("onnx inference needs onnxruntime and onnx "
                           "(pip install 'tlm[onnx]')") from None
        shape = tuple(getattr(net, "obs_shape", ()))
        example = torch.zeros((PAD_ROWS, *shape), dtype=torch.int8)
        with warnings.catch_warnings(), tempfile.TemporaryDirectory() as tmp:
            warnings.simplefilter("ignore")
            path = Path(tmp) / "net.onnx"
            torch.onnx.export(
                copy.deepcopy(net).eval(), (example,), path, dynamo=False,
                input_names=["obs"], output_names=["logits", "value"],
                dynamic_axes={"obs": {0: "rows"}, "logits": {0: "rows"}, "value": {0: "rows"}},
            )
            model = path.read_bytes()
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.inter_op_num_threads = 1
        self.session: Any = onnxruntime.InferenceSession(
            model, options, providers=["CPUExecutionProvider"])

    def __call__(self, obs: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(logits[K, A], value[K])`` float32 for the observations ``obs[K, ...]``."""
        logits, value = self.session.run(None, {"obs": np.ascontiguousarray(obs)})
        return logits, value

    def __repr__(self) -> str:
        return "OnnxInference(fp32)"


class AgentInference:
    """Logits and values from a policy agent with a value (any kind, two calls).

    Its probabilities become logits as their logarithms (illegal moves get a large
    negative logit), which the search's masked softmax turns back into them.
    """

    def __init__(self, agent: PolicyAgent) -> None:
        self.agent = agent

    def __call__(self, obs: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        probs = np.asarray(self.agent.policy(obs, mask), dtype=np.float64)
        value = np.asarray(self.agent.value(obs, mask), dtype=np.float64).reshape(-1)
        logits = np.log(np.maximum(probs, 1e-30)).astype(np.float32)
        return logits, np.clip(value, -1.0, 1.0).astype(np.float32)

    def __repr__(self) -> str:
        return f"AgentInference({self.agent.name!r})"
