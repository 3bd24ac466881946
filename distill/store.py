"""The aggregate a distillation run trains on: every distinct position the teacher has
labelled, with how often and when it was reached.

A :class:`PositionStore` is built on :class:`teachers.datasets.Positions`, the one
container of labelled positions: its rows are a ``Positions`` (observation, legal
moves, teacher policy and value, and the ply and seat of the position's first visit;
no single game or move, so ``game_id`` and ``action`` are ``-1``), kept once per
distinct observation (keyed by its bytes), beside the visit counts a ``Positions``
does not have. :meth:`PositionStore.as_positions` gives the rows with each position's
mean outcome, ready for :func:`distill.train.fit_steps`.

A store saves to a directory, so a run can resume: its rows as a tlm dataset
(``positions/``, Parquet shards and manifest, read back by
:func:`teachers.datasets.load_dataset`) and the visits as ``visits.parquet``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from arena import Game, TlmError, get_game
from teachers.datasets import DatasetWriter, Positions, load_dataset, position_rows

ROWS = "positions"
VISITS = "visits.parquet"
_VISIT_COLUMNS = {"outcome_sum": np.float64, "count": np.int64, "first_round": np.int32,
                  "last_round": np.int32}


class PositionStore:
    """Distinct labelled positions of every round, with how often and when each was
    reached.

    Attributes:
        rows: the labelled positions (row ``i`` is position ``i``).
        outcome_sum: sum of the final returns for the mover over the games that
            reached each position.
        count: visits of each position.
        first_round: the round each position was first reached (and labelled).
        last_round: the latest round that reached it.
    """

    def __init__(self, game: str | Game) -> None:
        self.game = get_game(game)
        self.rows = Positions.empty(self.game)
        self.outcome_sum = np.zeros(0, dtype=np.float64)
        self.count = np.zeros(0, dtype=np.int64)
        self.first_round = np.zeros(0, dtype=np.int32)
        self.last_round = np.zeros(0, dtype=np.int32)
        self._index: dict[bytes, int] = {}

    def __len__(self) -> int:
        return len(self.count)

    @property
    def obs(self) -> np.ndarray:
        return self.rows.obs

    @property
    def mask(self) -> np.ndarray:
        return self.rows.mask

    @property
    def probs(self) -> np.ndarray:
        """The teacher's policy at each position."""
        return self.rows.probs

    @property
    def value(self) -> np.ndarray:
        """The teacher's value at each position (NaN where it gives none)."""
        return self.rows.value

    @property
    def outcome(self) -> np.ndarray:
        """Mean final return for the mover over the games that reached each position."""
        return (self.outcome_sum / np.maximum(self.count, 1)).astype(np.float32)

    def as_positions(self) -> Positions:
        """The rows, each with its mean outcome."""
        return dataclasses.replace(self.rows, outcome=self.outcome)

    @staticmethod
    def keys(obs: np.ndarray) -> list[bytes]:
        """One key per observation row: its bytes."""
        return [row.tobytes() for row in position_rows(obs)]

    def lookup(self, keys: list[bytes]) -> np.ndarray:
        """Row of each key, ``-1`` where the store does not hold it."""
        return np.array([self._index.get(k, -1) for k in keys], dtype=np.int64)

    def add(
        self, keys: list[bytes], obs: np.ndarray, mask: np.ndarray, probs: np.ndarray,
        value: np.ndarray, rnd: int, ply: np.ndarray | None = None,
        seat: np.ndarray | None = None,
    ) -> np.ndarray:
        """Append new distinct positions (keys not held yet, each once), first reached
        in round ``rnd`` at ``ply`` by ``seat`` (``-1`` where not given); their rows."""
        start = len(self)
        for i, k in enumerate(keys):
            if k in self._index:
                raise TlmError("internal: position added twice")
            self._index[k] = start + i
        n = len(keys)
        unknown = np.full(n, -1)
        new = Positions(
            obs=obs.astype(self.rows.obs.dtype, copy=False),
            mask=mask.astype(np.int8, copy=False),
            probs=probs.astype(np.float32, copy=False),
            value=value.astype(np.float32, copy=False),
            outcome=np.zeros(n, dtype=np.float32),
            action=unknown.astype(np.int32),
            game_id=unknown.astype(np.int64),
            ply=(unknown if ply is None else ply).astype(np.int32),
            seat=(unknown if seat is None else seat).astype(np.int8),
        )
        self.rows = Positions.concat([self.rows, new])
        self.outcome_sum = np.concatenate([self.outcome_sum, np.zeros(n)])
        self.count = np.concatenate([self.count, np.zeros(n, dtype=np.int64)])
        self.first_round = np.concatenate([self.first_round, np.full(n, rnd, dtype=np.int32)])
        self.last_round = np.concatenate([self.last_round, np.full(n, rnd, dtype=np.int32)])
        return np.arange(start, start + n)

    def visit(self, rows: np.ndarray, outcome: np.ndarray, rnd: int) -> None:
        """Count one visit of each row (repeats allowed) ending in ``outcome``."""
        np.add.at(self.count, rows, 1)
        np.add.at(self.outcome_sum, rows, outcome.astype(np.float64))
        self.last_round[rows] = rnd

    def touch(self, rows: np.ndarray, rnd: int) -> None:
        """Mark rows as last seen in round ``rnd`` (the fit weighs them as recent)
        without counting a visit: their outcomes stay as they are."""
        self.last_round[rows] = rnd

    def add_labelled(
        self, obs: np.ndarray, mask: np.ndarray, probs: np.ndarray, value: np.ndarray,
        outcome: np.ndarray, rnd: int, ply: np.ndarray | None = None,
        seat: np.ndarray | None = None,
    ) -> tuple[int, int]:
        """Visit positions already labelled (a dataset's, say), adding those the store
        lacks (the first of repeats); ``(positions visited, positions added)``."""
        keys = self.keys(obs)
        rows = self.lookup(keys)
        first: dict[bytes, int] = {}
        for i in np.flatnonzero(rows < 0):
            first.setdefault(keys[i], int(i))
        todo = np.array(sorted(first.values()), dtype=np.int64)
        if todo.size:
            self.add([keys[i] for i in todo], obs[todo], mask[todo], probs[todo], value[todo],
                     rnd, None if ply is None else ply[todo],
                     None if seat is None else seat[todo])
        self.visit(self.lookup(keys), outcome, rnd)
        return len(keys), len(todo)

    def save(self, directory: str | Path, teacher: str) -> None:
        """Write the store into the new directory ``directory``: the rows as a dataset
        labelled by ``teacher``, the visits as one Parquet file."""
        directory = Path(directory)
        directory.mkdir()
        if len(self):
            (directory / ROWS).mkdir()
            writer = DatasetWriter(directory / ROWS, self.game, {
                "teacher": teacher,
                "content": "distinct positions, each once; visits in ../" + VISITS,
            })
            writer.write(self.rows)
            writer.close()
        table = pa.table({name: pa.array(getattr(self, name)) for name in _VISIT_COLUMNS})
        pq.write_table(table, directory / VISITS, compression="zstd")

    @classmethod
    def load(cls, directory: str | Path, game: str | Game) -> PositionStore:
        """A store saved by :meth:`save`.

        Raises:
            TlmError: unreadable files, or files of another game or of different
                lengths.
        """
        directory = Path(directory)
        store = cls(game)
        try:
            table = pq.read_table(directory / VISITS)
            for name, dtype in _VISIT_COLUMNS.items():
                setattr(store, name, table.column(name).to_numpy().astype(dtype))
        except (OSError, KeyError, pa.ArrowException) as e:
            raise TlmError(f"cannot read the aggregated positions in {directory}: {e}") from None
        if (directory / ROWS).is_dir():
            store.rows = load_dataset(directory / ROWS, store.game)
        if len(store.rows) != len(store.count):
            raise TlmError(f"aggregated positions in {directory}: {len(store.rows)} positions "
                           f"but {len(store.count)} visit counts")
        store._index = {k: i for i, k in enumerate(cls.keys(store.rows.obs))}
        return store
