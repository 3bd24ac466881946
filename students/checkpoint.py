"""Student checkpoints: a directory holding ``model.safetensors`` and ``config.json``.

``config.json`` records what rebuilds the network (spec, game, seed, heads), the shapes
it was built for, its parameter count, free-form provenance (teacher, method, budget, ...) and
the SHA-256 of the weights file. Loading rebuilds the network from the config and then
fills it from the weights, checking every step, so a checkpoint that is truncated,
altered, meant for another game or inconsistent with its config is refused with one
line instead of playing garbage. Only JSON and safetensors are read: nothing is
unpickled.

Saving writes both files into a hidden temporary directory beside the target and
renames it into place, so a checkpoint directory is either complete or absent.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from arena.core import TlmError
from arena.games import Game, get_game
from arena.runstate import replace_directory
from students.agent import StudentAgent
from students.networks import (
    DEFAULT_HEADS,
    HEADS,
    StudentNet,
    build_student,
    format_shape,
    param_count,
    parse_spec,
)
from students.recurrent import RecurrentStudentAgent, RecurrentStudentNet

FORMAT = "tlm-student"
"""The ``format`` field of every student ``config.json``."""

FORMAT_VERSION = 2
"""The checkpoint layout this code writes. Version 1 (read too) has no ``heads`` field:
its convolutional students have ReLU heads (:data:`students.networks.HEADS`)."""

READ_VERSIONS = (1, 2)
"""The checkpoint layouts this code reads."""

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"

_FIELDS: dict[str, type | tuple[type, ...]] = {
    "format": str,
    "format_version": int,
    "spec": str,
    "game": str,
    "obs_shape": list,
    "num_actions": int,
    "seed": int,
    "heads": str,
    "param_count": int,
    "weights_sha256": str,
    "provenance": (dict, type(None)),
}
"""Every field of ``config.json`` and its JSON type; no other key is accepted (version 1
has no ``heads``)."""


def is_checkpoint_dir(path: str | Path) -> bool:
    """Whether ``path`` is a directory with a ``config.json`` (a checkpoint, perhaps broken)."""
    p = Path(path)
    return p.is_dir() and (p / CONFIG_FILE).is_file()


def save_student(
    net: StudentNet | RecurrentStudentNet, path: str | Path,
    provenance: dict[str, Any] | None = None,
) -> Path:
    """Write ``net`` as a checkpoint directory at ``path``, atomically.

    An existing checkpoint (or empty directory) at ``path`` is replaced; anything else
    there is left alone and refused.

    Args:
        net: the student network.
        path: the checkpoint directory to create; missing parents are created.
        provenance: JSON-serialisable facts about where the student comes from.

    Returns:
        ``path`` as a :class:`Path`.

    Raises:
        TlmError: unserialisable provenance, a non-checkpoint already at ``path``, or a
            filesystem error (nothing is left behind in that case).
    """
    target = Path(path)
    state = {k: v.detach().to("cpu").contiguous() for k, v in net.state_dict().items()}
    weights = save_safetensors(state)
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "spec": net.spec,
        "game": net.game,
        "obs_shape": list(net.obs_shape),
        "num_actions": net.num_actions,
        "seed": net.seed,
        "heads": getattr(net, "heads", DEFAULT_HEADS),
        "param_count": param_count(net),
        "weights_sha256": hashlib.sha256(weights).hexdigest(),
        "provenance": provenance,
    }
    try:
        config_text = json.dumps(config, indent=2, allow_nan=False) + "\n"
    except (TypeError, ValueError) as e:
        raise TlmError(f"checkpoint provenance is not JSON-serialisable: {e}") from None
    if target.exists() and not (is_checkpoint_dir(target) or _is_empty_dir(target)):
        raise TlmError(f"cannot save checkpoint to {target}: it exists and is not a checkpoint")

    try:
        with replace_directory(target) as tmp:
            _write_file(tmp / WEIGHTS_FILE, weights)
            _write_file(tmp / CONFIG_FILE, config_text.encode())
        _fsync_dir(target.parent)
    except OSError as e:
        raise TlmError(f"cannot save checkpoint to {target}: {e.strerror or e}") from None
    return target


def _is_empty_dir(path: Path) -> bool:
    return path.is_dir() and not any(path.iterdir())


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    # Makes the rename durable; some filesystems cannot open directories, which is fine.
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_config(path: str | Path) -> dict[str, Any]:
    """The validated ``config.json`` of the checkpoint at ``path``.

    Raises:
        TlmError: no checkpoint there, unreadable JSON, unknown or missing fields,
            fields of the wrong type, or an unsupported format version.
    """
    p = Path(path)
    if not p.exists():
        raise TlmError(f"no student checkpoint at {p}: it does not exist")
    if not p.is_dir():
        raise TlmError(f"{p} is not a student checkpoint (not a directory)")
    config_path = p / CONFIG_FILE
    if not config_path.is_file():
        raise TlmError(f"{p} is not a student checkpoint (no {CONFIG_FILE})")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise TlmError(f"{config_path} is not readable JSON: {e}") from None
    if not isinstance(config, dict):
        raise TlmError(f"{config_path} must hold a JSON object")
    unknown = sorted(set(config) - set(_FIELDS))
    if unknown:
        raise TlmError(f"{config_path} has unknown keys: {', '.join(unknown)}")
    if config.get("format_version") == 1:
        if "heads" in config:
            raise TlmError(f"{config_path} has unknown keys: heads (format version 1)")
        config = {**config, "heads": "relu"}
    missing = [k for k in _FIELDS if k not in config]
    if missing:
        raise TlmError(f"{config_path} lacks fields: {', '.join(missing)}")
    for key, kind in _FIELDS.items():
        value = config[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise TlmError(f"{config_path}: field {key!r} has the wrong type ({value!r})")
    if config["format"] != FORMAT:
        raise TlmError(f"{config_path}: format is {config['format']!r}, not {FORMAT!r}")
    if config["format_version"] not in READ_VERSIONS:
        raise TlmError(
            f"checkpoint {p} has format version {config['format_version']}; "
            f"this tlm reads versions {', '.join(map(str, READ_VERSIONS))}"
        )
    if config["heads"] not in HEADS:
        raise TlmError(f"{config_path}: field 'heads' must be one of {', '.join(HEADS)}, "
                       f"not {config['heads']!r}")
    shape = config["obs_shape"]
    if not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape):
        raise TlmError(f"{config_path}: field 'obs_shape' must be a list of positive integers")
    return config


def load_net(path: str | Path, game: str | Game | None = None) -> StudentNet:
    """The (feedforward) network stored in the checkpoint directory ``path``.

    Args:
        path: a directory written by :func:`save_student`.
        game: if given, the game the checkpoint must be for.

    Returns:
        The network, on the CPU, in training mode.

    Raises:
        TlmError: anything wrong with the checkpoint (see :func:`read_config`), a
            checkpoint for another game, weights that are missing, corrupted, truncated
            or do not fit the config.
    """
    p = Path(path)
    config = read_config(p)
    if parse_spec(config["spec"]).arch == "gru":
        raise TlmError(f"checkpoint {p} holds a recurrent student ({config['spec']}): it "
                       "plays series of games, not single positions")
    return _load_into(p, config, build_student(config["spec"], config["game"],
                                               config["seed"], config["heads"]), game)


def load_recurrent_net(path: str | Path, game: str | Game | None = None) -> RecurrentStudentNet:
    """The recurrent network stored in the checkpoint directory ``path``.

    Raises:
        TlmError: as :func:`load_net`, or a feedforward student's checkpoint.
    """
    p = Path(path)
    config = read_config(p)
    spec = parse_spec(config["spec"])
    if spec.arch != "gru":
        raise TlmError(f"checkpoint {p} holds a feedforward student ({config['spec']}), not a "
                       "recurrent one")
    net = RecurrentStudentNet(spec, config["game"], config["seed"])
    return _load_into(p, config, net, game)


NetT = TypeVar("NetT", StudentNet, RecurrentStudentNet)


def _load_into(p: Path, config: dict[str, Any], net: NetT, game: str | Game | None) -> NetT:
    """Check the checkpoint at ``p`` against ``net`` (built from its config) and fill it."""
    if game is not None:
        wanted = get_game(game).name
        if config["game"] != wanted:
            raise TlmError(f"checkpoint {p} is for {config['game']}, not {wanted}")
    saved_shape = tuple(config["obs_shape"])
    if saved_shape != net.obs_shape or config["num_actions"] != net.num_actions:
        raise TlmError(
            f"checkpoint {p} was saved for observations {format_shape(saved_shape)} and "
            f"{config['num_actions']} actions, but {net.game} has "
            f"{format_shape(net.obs_shape)} and {net.num_actions}"
        )
    if config["param_count"] != param_count(net):
        raise TlmError(
            f"checkpoint {p} says {config['param_count']} parameters, "
            f"but {net.spec} on {net.game} has {param_count(net)}"
        )
    weights_path = p / WEIGHTS_FILE
    try:
        data = weights_path.read_bytes()
    except FileNotFoundError:
        raise TlmError(f"checkpoint {p} has no {WEIGHTS_FILE}") from None
    except OSError as e:
        raise TlmError(f"cannot read {weights_path}: {e.strerror or e}") from None
    if hashlib.sha256(data).hexdigest() != config["weights_sha256"]:
        raise TlmError(
            f"{weights_path} is corrupted or truncated (its checksum does not match {CONFIG_FILE})"
        )
    try:
        tensors = load_safetensors(data)
    except (SafetensorError, ValueError, RuntimeError) as e:
        raise TlmError(f"{weights_path} is corrupted: {e}") from None
    _fill(net, tensors, weights_path)
    return net


def _fill(net: StudentNet | RecurrentStudentNet, tensors: dict[str, torch.Tensor],
          weights_path: Path) -> None:
    expected = net.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing)}")
        if unexpected:
            parts.append(f"unexpected {', '.join(unexpected)}")
        raise TlmError(f"{weights_path} does not fit {net.spec}: {'; '.join(parts)}")
    for key, want in expected.items():
        got = tensors[key]
        if got.shape != want.shape:
            raise TlmError(
                f"{weights_path}: weight {key!r} has shape {format_shape(tuple(got.shape))} "
                f"but {net.spec} needs {format_shape(tuple(want.shape))}"
            )
        if got.dtype != want.dtype:
            raise TlmError(f"{weights_path}: weight {key!r} is {got.dtype}, not {want.dtype}")
    net.load_state_dict(tensors, strict=True)


def load_student(
    path: str | Path, greedy: bool = True, game: str | Game | None = None
) -> StudentAgent:
    """The agent that plays the (feedforward) student checkpoint at ``path``.

    Args:
        path: a directory written by :func:`save_student`.
        greedy: play the most probable legal move (``True``) or sample the policy.
        game: if given, the game the checkpoint must be for.

    Returns:
        A :class:`StudentAgent` named after ``path``.

    Raises:
        TlmError: see :func:`load_net`.
    """
    net = load_net(path, game)
    return StudentAgent(net, greedy=greedy, name=str(path))


def load_any_student(
    path: str | Path, greedy: bool = True, game: str | Game | None = None
) -> StudentAgent | RecurrentStudentAgent:
    """The agent of the student checkpoint at ``path``, feedforward or recurrent."""
    if parse_spec(read_config(path)["spec"]).arch == "gru":
        return RecurrentStudentAgent(load_recurrent_net(path, game), greedy=greedy,
                                     name=str(path))
    return load_student(path, greedy, game)
