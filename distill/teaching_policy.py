"""The teaching policy: a small model that, before every round of a distillation run,
reads the state of the teaching and chooses the mixture of strategies the round's
games are shared out by (``tlm distill --method learned``, :mod:`distill.learned`).

What it reads is :func:`teaching_features` of a :class:`TeachingState`, the one
function that turns a run's state into the model's input, in training
(:mod:`distill.teaching_train`) and in use alike:

- ``probe``: the student's score on the run's fixed probe set (tic-tac-toe: its
  optimal-move accuracy over all 4,520 positions; elsewhere the optimal-move rate on
  solver-labelled positions);
- ``probe_gain``: what the probe gained in the latest round, times 10, within [-1, 1];
- ``goal_gap``: how far the student is from the run's goal, 1 far to 0 met (perfect
  play: ``log10(1 + exhaustive losses) / 3``; a target of the probe: the share of the
  target still missing);
- ``labels``: the labels spent, ``log(1 + labels) / log(1 + label budget)``;
- ``round``: the round, as a share of the run's rounds;
- ``entropy``: the student's mean policy entropy over the probe positions, each
  divided by the log of its number of legal moves;
- ``agreement:NAME`` for each strategy: the student's top-1 agreement with the teacher
  on the positions that strategy labelled the latest round it was used (before it
  is used: the probe).

The model is a softmax over the strategies of a small multilayer perceptron of those
features (``hidden`` tanh layers; none: a linear softmax). Its output is the mixture:
the share of the round's games each strategy plays. It is saved as
``NAME.safetensors`` (its weights) beside ``NAME.json`` (:data:`FORMAT`, the version,
the strategies it knows, the features it reads, the games it was trained on, how it
was trained), and loaded back with a one-line :class:`arena.TlmError` for a file of
another format, version or feature set, a damaged or foreign file.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from arena import TlmError
from arena.runstate import write_bytes_atomic, write_json_atomic

FORMAT = "tlm-teaching-policy"
"""The ``format`` field of every teaching policy's JSON file."""

FORMAT_VERSION = 1

GENERIC_FEATURES = ("probe", "probe_gain", "goal_gap", "labels", "round", "entropy")
"""The features of the teaching state that do not name a strategy, in input order."""

DEFAULT_LABEL_BUDGET = 20_000
"""The label budget the ``labels`` feature is scaled by in a run that sets none."""

PERFECT_LOSSES_SCALE = 3.0
"""``goal_gap`` of a perfect-play goal: ``log10(1 + losses)`` over this (1000 lost lines
and more read as 1)."""


def feature_names(strategies: list[str] | tuple[str, ...]) -> list[str]:
    """The input features of a policy over ``strategies``, in order."""
    return [*GENERIC_FEATURES, *(f"agreement:{s}" for s in strategies)]


@dataclass(frozen=True)
class TeachingState:
    """What the teaching policy sees before a round.

    Attributes:
        probe: the student's probe score now.
        probe_before: its probe score a round earlier (at round 0: the same).
        goal_gap: how far from the run's goal, in [0, 1] (0: met).
        labels: labels spent so far.
        label_budget: the run's label budget.
        round: the round about to be played (0 first).
        rounds: the run's number of rounds.
        entropy: the student's normalized policy entropy over the probe positions.
        agreement: per strategy, its top-1 agreement with the teacher on the positions
            that strategy labelled last.
    """

    probe: float
    probe_before: float
    goal_gap: float
    labels: int
    label_budget: int
    round: int
    rounds: int
    entropy: float
    agreement: tuple[float, ...] = field(default_factory=tuple)


def teaching_features(state: TeachingState) -> np.ndarray:
    """The teaching policy's input: ``float64[len(feature_names(strategies))]``, every
    entry within [-1, 1] (see the module docstring)."""
    gain = float(np.clip(10.0 * (state.probe - state.probe_before), -1.0, 1.0))
    labels = math.log1p(max(state.labels, 0)) / math.log1p(max(state.label_budget, 1))
    return np.array([
        state.probe,
        gain,
        float(np.clip(state.goal_gap, 0.0, 1.0)),
        min(labels, 1.0),
        min(state.round / max(state.rounds, 1), 1.0),
        float(np.clip(state.entropy, 0.0, 1.0)),
        *state.agreement,
    ], dtype=np.float64)


def perfect_play_gap(exhaustive_losses: float) -> float:
    """``goal_gap`` of a student with this many lost lines when the goal is none."""
    return min(1.0, math.log10(1.0 + max(exhaustive_losses, 0.0)) / PERFECT_LOSSES_SCALE)


def target_gap(probe: float, target: float) -> float:
    """``goal_gap`` of a probe score when the goal is ``target`` of the probe."""
    if target <= 0:
        return 0.0
    return float(np.clip((target - probe) / target, 0.0, 1.0))


def normalized_entropy(probs: np.ndarray, mask: np.ndarray) -> float:
    """Mean over rows of the policy's entropy divided by the log of the row's legal
    moves (rows with one legal move left out; 0 when none is left)."""
    legal = (np.asarray(mask) != 0).sum(axis=1)
    keep = legal > 1
    if not keep.any():
        return 0.0
    p = np.asarray(probs, dtype=np.float64)[keep]
    h = -(p * np.log(np.where(p > 0, p, 1.0))).sum(axis=1)
    return float((h / np.log(legal[keep])).mean())


@dataclass
class TeachingPolicy:
    """A softmax over ``strategies`` of an MLP of the teaching state's features.

    Attributes:
        strategies: the strategies it shares games among (their names, in output order).
        layers: ``(weight[out, in], bias[out])`` of each layer, tanh between them.
        games: the games it was trained on.
        info: how it was trained (free-form JSON, kept in its file).
    """

    strategies: list[str]
    layers: list[tuple[np.ndarray, np.ndarray]]
    games: list[str]
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def features(self) -> list[str]:
        """The features it reads, in input order."""
        return feature_names(self.strategies)

    @property
    def hidden(self) -> list[int]:
        """Units of each hidden layer."""
        return [int(w.shape[0]) for w, _ in self.layers[:-1]]

    @classmethod
    def zeros(cls, strategies: list[str], games: list[str], hidden: list[int] | None = None
              ) -> TeachingPolicy:
        """A policy of all-zero weights (the uniform mixture whatever the state)."""
        sizes = [len(feature_names(strategies)), *(hidden or []), len(strategies)]
        layers = [(np.zeros((o, i)), np.zeros(o)) for i, o in zip(sizes, sizes[1:], strict=False)]
        return cls(list(strategies), layers, list(games))

    @classmethod
    def constant(cls, shares: dict[str, float], games: list[str]) -> TeachingPolicy:
        """The static mixture ``shares`` (``{strategy: weight}``) whatever the state: a
        linear policy of zero weights whose biases are the log shares."""
        weights = np.array(list(shares.values()), dtype=np.float64)
        if not (np.isfinite(weights).all() and (weights >= 0).all() and weights.sum() > 0):
            raise TlmError(f"a static mixture needs non-negative shares, some positive: {shares}")
        policy = cls.zeros(list(shares), games)
        w, _ = policy.layers[0]
        with np.errstate(divide="ignore"):
            bias = np.log(weights / weights.sum())
        policy.layers[0] = (w, np.maximum(bias, -30.0))
        return policy

    def size(self) -> int:
        """Number of parameters."""
        return sum(w.size + b.size for w, b in self.layers)

    def vector(self) -> np.ndarray:
        """Every parameter in one flat vector (layer by layer, weight then bias)."""
        return np.concatenate([np.concatenate([w.ravel(), b]) for w, b in self.layers])

    def with_vector(self, theta: np.ndarray) -> TeachingPolicy:
        """The same architecture with the parameters ``theta`` (as :meth:`vector` lays
        them out)."""
        theta = np.asarray(theta, dtype=np.float64)
        if theta.shape != (self.size(),):
            raise TlmError(f"a teaching policy of {self.size()} parameters got {theta.shape}")
        layers, at = [], 0
        for w, b in self.layers:
            nw = theta[at:at + w.size].reshape(w.shape)
            at += w.size
            layers.append((nw, theta[at:at + b.size].copy()))
            at += b.size
        return TeachingPolicy(list(self.strategies), layers, list(self.games), dict(self.info))

    def logits(self, features: np.ndarray) -> np.ndarray:
        """The strategies' scores for one feature vector."""
        x = np.asarray(features, dtype=np.float64)
        if x.shape != (len(self.features),):
            raise TlmError(f"teaching policy reads {len(self.features)} features, got {x.shape}")
        for i, (w, b) in enumerate(self.layers):
            x = w @ x + b
            if i < len(self.layers) - 1:
                x = np.tanh(x)
        return x

    def mixture(self, features: np.ndarray) -> np.ndarray:
        """The share of the round's games each strategy plays: a softmax of the logits."""
        z = self.logits(features)
        e = np.exp(z - z.max())
        return e / e.sum()

    def save(self, path: str | Path) -> tuple[Path, Path]:
        """Write ``PATH.safetensors`` and ``PATH.json`` (``PATH`` without its suffix),
        each atomically, the JSON last; returns both paths."""
        from safetensors.numpy import save

        weights, meta = policy_paths(path)
        tensors = {}
        for i, (w, b) in enumerate(self.layers):
            tensors[f"layer{i}.weight"] = np.ascontiguousarray(w, dtype=np.float32)
            tensors[f"layer{i}.bias"] = np.ascontiguousarray(b, dtype=np.float32)
        write_bytes_atomic(weights, save(tensors))
        write_json_atomic(meta, {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "games": self.games,
            "strategies": self.strategies,
            "features": self.features,
            "hidden": self.hidden,
            "weights": weights.name,
            "trained": self.info,
        })
        return weights, meta

    def as_float32(self) -> TeachingPolicy:
        """The policy as its file holds it (weights rounded to float32), so that a
        saved and loaded policy chooses exactly as the one it was saved from."""
        layers = [(w.astype(np.float32).astype(np.float64), b.astype(np.float32).astype(np.float64))
                  for w, b in self.layers]
        return TeachingPolicy(list(self.strategies), layers, list(self.games), dict(self.info))


def policy_paths(path: str | Path) -> tuple[Path, Path]:
    """``(weights, json)`` of a teaching policy named by ``path``: either file, their
    common stem, or a directory holding ``policy.json`` (what ``tlm teaching-policy
    train`` writes)."""
    p = Path(path)
    if p.is_dir():
        p = p / "policy"
    if p.suffix in (".json", ".safetensors"):
        p = p.with_suffix("")
    return p.with_name(p.name + ".safetensors"), p.with_name(p.name + ".json")


_META_TYPES: dict[str, type | tuple[type, ...]] = {
    "format": str, "format_version": int, "games": list, "strategies": list,
    "features": list, "hidden": list, "weights": str, "trained": dict,
}


def load_policy(path: str | Path) -> TeachingPolicy:
    """The teaching policy saved at ``path`` (see :func:`policy_paths`).

    Raises:
        TlmError: one line: missing files, a file that is not a teaching policy, another
            version, features this version does not compute, weights that do not fit
            (damaged).
    """
    from safetensors import SafetensorError
    from safetensors.numpy import load

    weights_path, meta_path = policy_paths(path)
    shown = meta_path.with_suffix("")
    if not meta_path.is_file():
        raise TlmError(f"no teaching policy at {path}: {meta_path} does not exist")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise TlmError(f"teaching policy {meta_path} is not readable JSON: {e}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise TlmError(f"{meta_path} is not a teaching policy (format {found!r}, "
                       f"not {FORMAT!r})")
    missing = [k for k in _META_TYPES if k not in meta]
    if missing:
        raise TlmError(f"teaching policy {meta_path} lacks fields: {', '.join(missing)}")
    for key, kind in _META_TYPES.items():
        if not isinstance(meta[key], kind) or isinstance(meta[key], bool):
            raise TlmError(f"teaching policy {meta_path}: field {key!r} has the wrong type")
    if meta["format_version"] != FORMAT_VERSION:
        raise TlmError(f"teaching policy {shown} has format version {meta['format_version']}; "
                       f"this tlm reads version {FORMAT_VERSION}")
    strategies, games, hidden = meta["strategies"], meta["games"], meta["hidden"]
    if not strategies or not all(isinstance(s, str) and s for s in strategies) \
            or len(set(strategies)) != len(strategies):
        raise TlmError(f"teaching policy {meta_path}: strategies must be distinct names")
    if not all(isinstance(g, str) for g in games) or not games:
        raise TlmError(f"teaching policy {meta_path}: games must be names")
    if not all(isinstance(h, int) and not isinstance(h, bool) and h > 0 for h in hidden):
        raise TlmError(f"teaching policy {meta_path}: hidden must list positive sizes")
    expected = feature_names(strategies)
    if meta["features"] != expected:
        found = ", ".join(map(str, meta["features"]))
        raise TlmError(f"teaching policy {shown} reads features {found}; this tlm computes "
                       f"{', '.join(expected)}")
    if Path(meta["weights"]).name != meta["weights"] or meta["weights"] != weights_path.name:
        raise TlmError(f"teaching policy {meta_path}: weights file {meta['weights']!r} is not "
                       f"{weights_path.name!r}")
    try:
        tensors = load(weights_path.read_bytes())
    except FileNotFoundError:
        raise TlmError(f"teaching policy {shown}: {weights_path} does not exist") from None
    except (OSError, SafetensorError, ValueError) as e:
        raise TlmError(f"teaching policy {shown}: damaged weights {weights_path}: "
                       f"{' '.join(str(e).split())}") from None
    sizes = [len(expected), *hidden, len(strategies)]
    layers = []
    want = {f"layer{i}.{k}" for i in range(len(sizes) - 1) for k in ("weight", "bias")}
    if set(tensors) != want:
        raise TlmError(f"teaching policy {shown}: damaged weights {weights_path} (tensors "
                       f"{', '.join(sorted(tensors))}, expected {', '.join(sorted(want))})")
    for i, (n_in, n_out) in enumerate(zip(sizes, sizes[1:], strict=False)):
        w, b = tensors[f"layer{i}.weight"], tensors[f"layer{i}.bias"]
        if w.shape != (n_out, n_in) or b.shape != (n_out,):
            raise TlmError(f"teaching policy {shown}: damaged weights {weights_path} (layer {i} "
                           f"is {w.shape}, {b.shape}; expected ({n_out}, {n_in}), ({n_out},))")
        if not (np.isfinite(w).all() and np.isfinite(b).all()):
            raise TlmError(f"teaching policy {shown}: damaged weights {weights_path} "
                           "(non-finite values)")
        layers.append((w.astype(np.float64), b.astype(np.float64)))
    return TeachingPolicy(list(strategies), layers, list(games), dict(meta["trained"]))


def shipped_policy(game: str) -> Path | None:
    """The teaching policy shipped with tlm for ``game`` (``distill/data``), if any."""
    from importlib.resources import files

    path = Path(str(files("distill") / "data" / f"teaching_{game}.json"))
    return path if path.is_file() else None
