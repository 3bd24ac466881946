"""The training state of a torch module beyond its weights, as files a run can resume
from: an optimizer's state (tensors as safetensors, the rest as JSON) and a torch
generator's state (as text, for a JSON file). Nothing is read with pickle.

A run that checkpoints (a distillation round, an expert-iteration step, a learner)
writes these beside the weights, so the resumed run takes the same steps as one never
stopped.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from arena.core import TlmError
from arena.runstate import write_json_atomic

OPTIMIZER_TENSORS = "optimizer.safetensors"
OPTIMIZER_JSON = "optimizer.json"


def save_optimizer(optimizer: torch.optim.Optimizer, directory: Path) -> None:
    """Write ``optimizer``'s state into ``directory``: its tensors as
    ``optimizer.safetensors``, the rest as ``optimizer.json``."""
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, entry in sd["state"].items():
        for name, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{idx}.{name}"] = value.detach().clone().contiguous()
            else:
                scalars.setdefault(str(idx), {})[name] = value
    save_file(tensors, str(directory / OPTIMIZER_TENSORS))
    write_json_atomic(directory / OPTIMIZER_JSON,
                      {"param_groups": sd["param_groups"], "scalars": scalars})


def load_optimizer(optimizer: torch.optim.Optimizer, directory: Path) -> None:
    """Load the state :func:`save_optimizer` wrote into ``directory`` into ``optimizer``.

    Raises:
        TlmError: the files are unreadable or do not fit ``optimizer``.
    """
    try:
        tensors = load_file(str(directory / OPTIMIZER_TENSORS))
        meta = json.loads((directory / OPTIMIZER_JSON).read_text())
    except (OSError, ValueError) as e:
        raise TlmError(f"checkpoint {directory}: cannot read the optimizer state ({e})") from None
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        idx, name = key.split(".", 1)
        # A copy in torch's own (aligned) memory, like the state of a run never stopped.
        state.setdefault(int(idx), {})[name] = value.clone()
    try:
        for idx, entry in meta["scalars"].items():
            state.setdefault(int(idx), {}).update(entry)
        optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise TlmError(f"checkpoint {directory}: optimizer state does not fit ({e})") from None


def torch_generator_state(gen: torch.Generator) -> str:
    """``gen``'s state as text (base64), for a JSON file."""
    return base64.b64encode(gen.get_state().numpy().tobytes()).decode()


def set_torch_generator_state(gen: torch.Generator, text: str) -> None:
    """Put ``gen`` in the state :func:`torch_generator_state` described.

    Raises:
        TlmError: the text is not such a state.
    """
    try:
        raw = np.frombuffer(base64.b64decode(text), dtype=np.uint8).copy()
        gen.set_state(torch.from_numpy(raw))
    except (ValueError, TypeError, RuntimeError) as e:
        raise TlmError(f"not a torch generator state ({e})") from None
