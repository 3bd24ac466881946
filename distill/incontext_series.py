"""The series of an in-context run as data, and the fitting of its students on them.

A recurrent student (:class:`ExploringAgent`: sampling its policy, with a share
``epsilon`` of uniformly random moves) plays series of ``K`` games through
:func:`arena.play_matches` with ``series=K``; :func:`play_series` turns what it saw into
training sequences (:class:`SeriesBatch`: its decisions and the ends of games in order,
padding masked), each decision labelled by the series' teacher
(:class:`teachers.best_response.SeriesTeacher`). :class:`Replay` keeps the most recent
series; :func:`fit_round` fits the recurrent student on whole series and the feedforward
control on the same batches, each decision alone, by cross-entropy to the labels
(optionally in random symmetric images of the board, :func:`symmetric_images`).
:class:`MemoryResetAgent` plays every game of a series as if it were the first.

The run that uses them is :mod:`distill.incontext`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from safetensors.numpy import load_file as load_arrays
from safetensors.numpy import save_file as save_arrays

from arena import (
    Agent,
    State,
    TlmError,
    play_matches,
    sample_from,
    uniform_legal,
)
from arena.game_loop import Decision
from arena.games import Game
from arena.symmetry import symmetries
from students import (
    RecurrentStudentAgent,
    RecurrentStudentNet,
    StudentNet,
    masked_log_softmax,
)
from students.recurrent import DECISION, GAME_END, PAD
from teachers.best_response import tactical_answers


@functools.cache
def _label_probs(n_actions: int) -> torch.Tensor:
    """``[2**n_actions, n_actions]``: each bitmask of moves as the uniform distribution
    over its moves."""
    bits = ((np.arange(1 << n_actions)[:, None] >> np.arange(n_actions)) & 1).astype(
        np.float32)
    return torch.from_numpy(bits / np.maximum(bits.sum(axis=1, keepdims=True), 1.0))


class LabelTeacher(Protocol):
    """What a series' teacher gives :func:`play_series`
    (:class:`teachers.best_response.SeriesTeacher` on tic-tac-toe,
    :class:`teachers.search_response.SearchResponse` on connect four)."""

    forced_answers: int

    def label_moves(self, obs: np.ndarray, erred: np.ndarray,
                    trusted: np.ndarray | None = None) -> np.ndarray: ...

    def errors(self, obs: np.ndarray, actions: np.ndarray) -> np.ndarray: ...

    def trusted(self, answers: np.ndarray, missed: np.ndarray) -> np.ndarray: ...


# ------------------------------------------------------------------------- agents


class _RecurrentWrapper(Agent):
    """A recurrent agent that plays through ``inner``: its game, batch limit, memory
    and end of game, under a name of its own."""

    recurrent = True

    def __init__(self, inner: Agent, name: str) -> None:
        self.inner = inner
        self.game = inner.game
        self.name = name
        self.max_batch = inner.max_batch

    def initial_memory(self, n: int) -> np.ndarray:
        return self.inner.initial_memory(n)

    def end_game(self, memory: np.ndarray, result: np.ndarray) -> np.ndarray:
        return self.inner.end_game(memory, result)


class ExploringAgent(_RecurrentWrapper):
    """A recurrent student that samples its policy and plays a uniformly random legal
    move instead with probability ``epsilon``; its memory sees every position either
    way. Each row draws from its own stream (three numbers a move)."""

    def __init__(self, inner: RecurrentStudentAgent, epsilon: float) -> None:
        super().__init__(inner, f"{inner.name},epsilon={epsilon:g}")
        self.inner: RecurrentStudentAgent = inner
        self.epsilon = epsilon

    def act_with_memory(self, obs: np.ndarray, mask: np.ndarray, rng: np.random.Generator,
                        memory: np.ndarray, state: State | None = None
                        ) -> tuple[np.ndarray, np.ndarray]:
        probs, new = self.inner.policy_with_memory(obs, mask, memory)
        chosen = sample_from(probs, rng)
        explore = rng.random(len(obs)) < self.epsilon
        random_moves = uniform_legal(np.ascontiguousarray(mask), rng)
        return np.where(explore, random_moves, chosen), new


class MemoryResetAgent(_RecurrentWrapper):
    """A recurrent agent whose memory is reset at the end of every game: it plays each
    game of a series as if it were the first (the control that shows what the memory
    across games is worth)."""

    def __init__(self, inner: Agent) -> None:
        if not inner.recurrent:
            raise TlmError(f"agent {inner.name!r} has no memory to reset")
        super().__init__(inner, f"{inner.name},reset")

    def act_with_memory(self, obs: np.ndarray, mask: np.ndarray, rng: np.random.Generator,
                        memory: np.ndarray, state: State | None = None
                        ) -> tuple[np.ndarray, np.ndarray]:
        return self.inner.act_with_memory(obs, mask, rng, memory, state)

    def end_game(self, memory: np.ndarray, result: np.ndarray) -> np.ndarray:
        return self.inner.initial_memory(len(memory))


# ------------------------------------------------------------------ series as data


@dataclass
class SeriesBatch:
    """Series as training sequences: each row one series, its events in order (the
    student's decisions, then the end of each game), padded at the end.

    Attributes:
        obs: ``[N, T, *obs_shape]`` int8: the position at each decision.
        mask: ``[N, T, A]`` int8: its legal moves.
        kind: ``[N, T]`` int8: ``DECISION``, ``GAME_END`` or ``PAD``.
        result: ``[N, T]`` int8: the student's result at each end of game.
        label: ``[N, T]`` int16: the labelled moves (bitmask) at each decision.
        action: ``[N, T]`` int8: the move the student played at each decision.
        erred: ``[N, T]`` int8: 1 at the decisions after the opponent's first error in
            the series.
    """

    obs: np.ndarray
    mask: np.ndarray
    kind: np.ndarray
    result: np.ndarray
    label: np.ndarray
    action: np.ndarray
    erred: np.ndarray

    FIELDS = ("obs", "mask", "kind", "result", "label", "action", "erred")

    @classmethod
    def empty(cls, n: int, length: int, g: Game) -> SeriesBatch:
        return cls(
            obs=np.zeros((n, length, *g.obs_shape), dtype=np.int8),
            mask=np.zeros((n, length, g.num_actions), dtype=np.int8),
            kind=np.full((n, length), PAD, dtype=np.int8),
            result=np.zeros((n, length), dtype=np.int8),
            label=np.zeros((n, length), dtype=np.int16),
            action=np.zeros((n, length), dtype=np.int8),
            erred=np.zeros((n, length), dtype=np.int8),
        )

    def __len__(self) -> int:
        return len(self.kind)

    @property
    def decisions(self) -> int:
        return int(np.count_nonzero(self.kind == DECISION))

    def rows(self, idx: np.ndarray) -> SeriesBatch:
        """The series ``idx``, cut to the longest of them."""
        kind = self.kind[idx]
        used = np.flatnonzero((kind != PAD).any(axis=0))
        t = int(used[-1]) + 1 if used.size else 1
        return SeriesBatch(*(getattr(self, f)[idx][:, :t] for f in self.FIELDS))


def series_length(g: Game, k: int) -> int:
    """The most events a series of ``k`` games can hold: each game's decisions of one
    player (half the board's cells, rounded up) and its end."""
    cells = int(np.prod(g.obs_shape[:2]))
    return k * ((cells + 1) // 2 + 1)


@dataclass
class _Seen:
    """What an observer saw of one match: the student's decisions and the opponent's
    errors (as ``errors(obs, actions)`` says, if given)."""

    errors: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None
    tactics: bool = False
    """Also count the opponent's answers to forced moves, and its misses."""
    games: list[np.ndarray] = field(default_factory=list)
    ply: list[np.ndarray] = field(default_factory=list)
    obs: list[np.ndarray] = field(default_factory=list)
    mask: list[np.ndarray] = field(default_factory=list)
    actions: list[np.ndarray] = field(default_factory=list)
    events: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = field(
        default_factory=lambda: {name: ([], []) for name in ("error", "answer", "miss")})

    def __call__(self, d: Decision) -> None:
        assert d.obs is not None
        if d.player == 0:
            self.games.append(d.games.copy())
            self.ply.append(d.ply.copy())
            self.obs.append(np.array(d.obs, dtype=np.int8))
            self.mask.append(np.array(d.mask, dtype=np.int8))
            self.actions.append(d.actions.astype(np.int8))
        else:
            # Only the moves after which the student moves again count, as only they
            # are seen by a teacher that follows the series (a win ends the game).
            events = [] if self.errors is None else [("error", self.errors(d.obs, d.actions))]
            if self.tactics:
                forced, answered, won = tactical_answers(d.obs, d.actions)
                events += [("answer", answered & ~won), ("miss", forced & ~answered)]
            for name, rows in events:
                self.events[name][0].append(d.games[rows])
                self.events[name][1].append(d.ply[rows])

    def before(self, name: str, games: np.ndarray, ply: np.ndarray, k: int, n_games: int
               ) -> np.ndarray:
        """For each decision at ``(games, ply)``, how many of the opponent's ``name``
        events came before it in its series (in an earlier game, or earlier in its
        game); games ``s*k .. s*k+k-1`` of the ``n_games`` are series ``s``."""
        ev_games = _cat(self.events[name][0], np.int64)
        ev_ply = _cat(self.events[name][1], np.int64)
        total = np.concatenate([[0], np.cumsum(np.bincount(ev_games, minlength=n_games))])
        earlier_games = total[games] - total[games // k * k]
        stride = int(max(ev_ply.max(initial=0), ply.max(initial=0))) + 1
        at = np.sort(ev_games * stride + ev_ply)
        earlier_here = (np.searchsorted(at, games * stride + ply)
                        - np.searchsorted(at, games * stride))
        return earlier_games + earlier_here


def _cat(parts: list[np.ndarray], dtype: Any) -> np.ndarray:
    return np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(0, dtype)


def play_series(
    g: Game, student: Agent, opponent: Agent, teacher: LabelTeacher | None, n_series: int,
    k: int, seed: int | np.random.SeedSequence,
) -> tuple[SeriesBatch, np.ndarray]:
    """``n_series`` series of ``k`` games of ``student`` (agent A, recurrent) against
    ``opponent``, as training sequences labelled by ``teacher`` (if any), and the
    student's score (win 1, draw 1/2) in each game, ``[n_series, k]``."""
    seen = _Seen(errors=None if teacher is None else teacher.errors,
                 tactics=teacher is not None and teacher.forced_answers > 0)
    result = play_matches(g, student, opponent, n_series * k, seed, series=k, observer=seen)
    n_games = n_series * k
    games, ply = _cat(seen.games, np.int64), _cat(seen.ply, np.int64)
    order = np.lexsort((ply, games))
    games, ply = games[order], ply[order]
    obs = np.concatenate(seen.obs)[order]
    mask = np.concatenate(seen.mask)[order]
    actions = np.concatenate(seen.actions)[order]

    # What the opponent did before a decision: in an earlier game of the series, or
    # earlier in this game.
    erred = seen.before("error", games, ply, k, n_games) > 0
    label = np.zeros(len(obs), dtype=np.int16)
    if teacher is not None:
        trusted = None
        if seen.tactics:
            trusted = teacher.trusted(seen.before("answer", games, ply, k, n_games),
                                      seen.before("miss", games, ply, k, n_games) > 0)
        label = teacher.label_moves(obs, erred, trusted)

    # Event t of series s: game j's decisions follow the events of games 0..j-1.
    count = np.bincount(games, minlength=n_games)
    per_game = (count + 1).reshape(n_series, k)
    start = (np.cumsum(per_game, axis=1) - per_game).reshape(-1)
    rank = np.arange(len(games)) - (np.cumsum(count) - count)[games]
    batch = SeriesBatch.empty(n_series, series_length(g, k), g)
    s, t = games // k, start[games] + rank
    batch.obs[s, t], batch.mask[s, t], batch.label[s, t] = obs, mask, label
    batch.action[s, t], batch.erred[s, t] = actions, erred
    batch.kind[s, t] = DECISION
    every = np.arange(n_games)
    s, t = every // k, start + count
    batch.kind[s, t] = GAME_END
    batch.result[s, t] = result.outcome
    scores = (result.outcome.astype(np.float64) + 1.0) / 2.0
    return batch, scores.reshape(n_series, k)


class Replay:
    """The most recent series, in a ring of fixed capacity."""

    def __init__(self, capacity: int, length: int, g: Game) -> None:
        self.data = SeriesBatch.empty(capacity, length, g)
        self.capacity = capacity
        self.size = 0
        self.next = 0

    def add(self, batch: SeriesBatch) -> None:
        n = len(batch)
        if n > self.capacity:
            batch = batch.rows(np.arange(n - self.capacity, n))
            n = self.capacity
        slots = (self.next + np.arange(n)) % self.capacity
        for f in SeriesBatch.FIELDS:
            target, source = getattr(self.data, f), getattr(batch, f)
            target[slots] = 0 if f != "kind" else PAD
            target[slots, : source.shape[1]] = source
        self.next = int((self.next + n) % self.capacity)
        self.size = min(self.size + n, self.capacity)

    def save(self, path: Path) -> None:
        arrays = {f: np.ascontiguousarray(getattr(self.data, f)[: self.size])
                  for f in SeriesBatch.FIELDS}
        arrays["cursor"] = np.array([self.size, self.next], dtype=np.int64)
        save_arrays(arrays, str(path))

    def load(self, path: Path) -> None:
        arrays = load_arrays(str(path))
        self.size, self.next = (int(x) for x in arrays["cursor"])
        for f in SeriesBatch.FIELDS:
            getattr(self.data, f)[: self.size] = arrays[f]


# ------------------------------------------------------------------------- fitting


def _tensors(batch: SeriesBatch) -> dict[str, torch.Tensor]:
    return {f: torch.from_numpy(np.ascontiguousarray(getattr(batch, f)))
            for f in SeriesBatch.FIELDS}


def _cross_entropy(logits: torch.Tensor, mask: torch.Tensor, label: torch.Tensor,
                   weight: torch.Tensor) -> torch.Tensor:
    """Weighted mean cross-entropy of masked policies ``logits[n, A]`` to the labels'
    uniform distributions over their moves."""
    target = _label_probs(mask.shape[1])[label.long()]
    logp = masked_log_softmax(logits, mask)
    terms = torch.where(target > 0, target * logp, torch.zeros_like(logp))
    return -(terms.sum(dim=1) * weight).sum() / weight.sum()


def _weights(erred: torch.Tensor, caution: float) -> torch.Tensor:
    return torch.where(erred > 0, 1.0, caution)


def recurrent_loss(net: RecurrentStudentNet, batch: SeriesBatch, caution: float = 1.0
                   ) -> torch.Tensor:
    """The recurrent student's loss on whole series: cross-entropy at its decisions,
    those before the opponent's first error weighted ``caution``."""
    t = _tensors(batch)
    logits, _ = net.forward_sequence(t["obs"], t["kind"].long(), t["result"].float())
    at = t["kind"] == DECISION
    return _cross_entropy(logits[at], t["mask"][at], t["label"][at],
                          _weights(t["erred"][at], caution))


def feedforward_loss(net: StudentNet, batch: SeriesBatch, caution: float = 1.0
                     ) -> torch.Tensor:
    """The feedforward control's loss on the same series: each decision alone."""
    t = _tensors(batch)
    at = t["kind"] == DECISION
    logits, _ = net(t["obs"][at])
    return _cross_entropy(logits, t["mask"][at], t["label"][at],
                          _weights(t["erred"][at], caution))


def _step(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> float:
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def symmetric_images(batch: SeriesBatch, which: np.ndarray, g: Game) -> SeriesBatch:
    """Each series of ``batch`` in the board symmetry ``which[i]`` (an index into
    :func:`arena.symmetry.symmetries`), every event of a series transformed alike.

    A series against a player, seen through a symmetry, is a series against the
    player's image; the labels (best responses) follow, since expectimax commutes with
    the board's symmetries.
    """
    syms = symmetries(g)
    cells = np.stack([syms[w].cells for w in which])[:, None, :]  # [N, 1, cells]
    moves = np.stack([syms[w].actions for w in which])[:, None, :]  # [N, 1, A]
    inverse = np.argsort(moves, axis=2)
    n, t = batch.kind.shape
    flat = batch.obs.reshape(n, t, -1, batch.obs.shape[-1])
    obs = np.take_along_axis(flat, cells[..., None], axis=2).reshape(batch.obs.shape)
    mask = np.take_along_axis(batch.mask, moves, axis=2)
    n_actions = g.num_actions
    bits = (batch.label[..., None].astype(np.int64) >> np.arange(n_actions)) & 1
    bits = np.take_along_axis(bits, moves, axis=2)
    label = (bits << np.arange(n_actions)).sum(axis=2).astype(np.int16)
    action = np.take_along_axis(inverse[:, 0, :], batch.action.astype(np.int64), axis=1)
    return SeriesBatch(obs, mask, batch.kind, batch.result, label, action.astype(np.int8),
                       batch.erred)



class FitSettings(Protocol):
    """The settings :func:`fit_round` reads (an
    :class:`distill.incontext.InContextConfig` has them)."""

    @property
    def steps_per_round(self) -> int: ...

    @property
    def batch_series(self) -> int: ...

    @property
    def augment(self) -> bool: ...

    @property
    def caution(self) -> float: ...


def fit_round(
    student: RecurrentStudentNet, control: StudentNet | None,
    optimizers: tuple[torch.optim.Optimizer, torch.optim.Optimizer | None],
    replay: Replay, config: FitSettings, g: Game, rng: np.random.Generator,
) -> dict[str, float]:
    """``config.steps_per_round`` gradient steps of both students on the same batches of
    whole series, drawn uniformly from the replay (each series in a random symmetric
    image of the board with ``config.augment``); their mean losses."""
    losses = {"loss_student": 0.0, "loss_control": 0.0}
    n_syms = len(symmetries(g))
    for _ in range(config.steps_per_round):
        idx = rng.integers(0, replay.size, size=min(config.batch_series, replay.size))
        batch = replay.data.rows(np.sort(idx))
        if config.augment:
            batch = symmetric_images(batch, rng.integers(0, n_syms, size=len(batch)), g)
        losses["loss_student"] += _step(optimizers[0],
                                        recurrent_loss(student, batch, config.caution))
        if control is not None and optimizers[1] is not None:
            losses["loss_control"] += _step(optimizers[1],
                                            feedforward_loss(control, batch, config.caution))
    return {k: v / config.steps_per_round for k, v in losses.items()}

