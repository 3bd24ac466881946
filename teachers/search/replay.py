"""The replay window of a search learner: its latest labelled positions, kept in order.

:class:`ReplayWindow` holds at most ``size`` positions, the newest; the oldest fall out
as new ones come. It is saved as a dataset of :mod:`teachers.datasets` (Parquet shards
and a manifest, nothing pickled) and read back with the same rows in the same order,
so a restored learner fits on exactly what it would have fitted on.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from arena.core import TlmError
from arena.games import Game
from teachers.datasets import DatasetWriter, Positions, load_dataset


class ReplayWindow:
    """The latest ``size`` labelled positions of a learner, oldest first.

    Args:
        game: the game.
        size: the most positions kept.
    """

    def __init__(self, game: Game, size: int) -> None:
        if size <= 0:
            raise TlmError(f"the replay window needs a positive size, got {size}")
        self.game = game
        self.size = size
        self.positions = Positions.empty(game)

    def __len__(self) -> int:
        return len(self.positions)

    def add(self, positions: Positions) -> None:
        """Append ``positions``; drop the oldest beyond :attr:`size`."""
        if not len(positions):
            return
        joined = Positions.concat([self.positions, positions])
        if len(joined) > self.size:
            joined = joined.select(np.arange(len(joined) - self.size, len(joined)))
        self.positions = joined

    def save(self, directory: Path) -> None:
        """Write the window as a dataset at ``directory`` (replaced; nothing when empty)."""
        if directory.exists():
            shutil.rmtree(directory)
        if not len(self.positions):
            return
        directory.mkdir(parents=True)
        writer = DatasetWriter(directory, self.game, {"teacher": "search-learner"})
        writer.write(self.positions)
        writer.close()

    def load(self, directory: Path) -> None:
        """Read what :meth:`save` wrote (an absent directory: an empty window).

        Raises:
            TlmError: a damaged dataset or one of another game.
        """
        if not directory.exists():
            self.positions = Positions.empty(self.game)
            return
        self.positions = load_dataset(directory, self.game)
