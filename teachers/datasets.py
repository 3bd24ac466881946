"""Teacher-generated datasets: Parquet shards of labelled positions plus a manifest.

A dataset is a directory::

    manifest.json          game, teacher, shapes, counts, shard list, generation settings
    shard-00000.parquet    one row per position

Columns: ``game_id`` (int64), ``ply`` (int32), ``seat`` (int8), ``obs`` (flattened
observation), ``mask`` (int8 legal actions), ``probs`` (float32 teacher policy),
``value`` (float32 teacher value for the mover, NaN when the teacher has none),
``outcome`` (float32 final return of the mover's seat), ``action`` (int32 move played).
Every file is written atomically, and the directory appears only once complete.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from arena import Game, TlmError, get_game, write_json_atomic

FORMAT = "tlm-dataset/1"
COLUMNS = ("game_id", "ply", "seat", "obs", "mask", "probs", "value", "outcome", "action")


@dataclass
class Positions:
    """Labelled positions as arrays (row ``i`` of each is position ``i``)."""

    obs: np.ndarray
    mask: np.ndarray
    probs: np.ndarray
    value: np.ndarray
    outcome: np.ndarray
    action: np.ndarray
    game_id: np.ndarray
    ply: np.ndarray
    seat: np.ndarray

    def __len__(self) -> int:
        return len(self.action)

    @classmethod
    def empty(cls, game: Game) -> Positions:
        return cls(
            obs=np.zeros((0, *game.obs_shape), dtype=game.obs_dtype),
            mask=np.zeros((0, game.num_actions), dtype=np.int8),
            probs=np.zeros((0, game.num_actions), dtype=np.float32),
            value=np.zeros(0, dtype=np.float32),
            outcome=np.zeros(0, dtype=np.float32),
            action=np.zeros(0, dtype=np.int32),
            game_id=np.zeros(0, dtype=np.int64),
            ply=np.zeros(0, dtype=np.int32),
            seat=np.zeros(0, dtype=np.int8),
        )

    @classmethod
    def concat(cls, parts: list[Positions]) -> Positions:
        """All ``parts`` in order (at least one)."""
        return cls(**{
            name: np.concatenate([getattr(p, name) for p in parts]) for name in _FIELDS
        })

    def select(self, idx: np.ndarray) -> Positions:
        """The rows ``idx`` (index array or boolean mask)."""
        return Positions(**{name: getattr(self, name)[idx] for name in _FIELDS})

    def averaged(self) -> Positions:
        """One row per distinct position (:func:`position_rows`), in the order each
        first appears, its ``probs``, ``value`` and ``outcome`` the means of its rows'
        (``value`` over the rows that have one: NaN where none has); the other columns
        are the first row's."""
        if not len(self):
            return self
        _, first, inverse = np.unique(position_rows(self.obs), return_index=True,
                                      return_inverse=True)
        order = np.argsort(first)  # groups in order of first appearance
        group = np.argsort(order)[inverse.reshape(-1)]
        k = len(first)

        def mean(column: np.ndarray, weight: np.ndarray) -> np.ndarray:
            total = np.zeros((k, *column.shape[1:]))
            np.add.at(total, group, column * weight.reshape(-1, *[1] * (column.ndim - 1)))
            n = np.bincount(group, weights=weight, minlength=k)
            with np.errstate(invalid="ignore", divide="ignore"):
                return (total / n.reshape(-1, *[1] * (column.ndim - 1))).astype(column.dtype)

        every, has = np.ones(len(self)), ~np.isnan(self.value)
        out = self.select(first[order])
        out.probs, out.outcome = mean(self.probs, every), mean(self.outcome, every)
        out.value = mean(np.where(has, self.value, 0.0).astype(self.value.dtype), has * 1.0)
        return out

    def split_by_game(self, holdout: float, seed: int) -> tuple[Positions, Positions]:
        """``(train, held_out)``: whole games go to one side, ``holdout`` of them held out."""
        games = np.unique(self.game_id)
        rng = np.random.default_rng(seed)
        n_hold = int(round(holdout * len(games)))
        held = rng.choice(games, size=n_hold, replace=False) if n_hold else games[:0]
        is_held = np.isin(self.game_id, held)
        return self.select(~is_held), self.select(is_held)


_FIELDS = ("obs", "mask", "probs", "value", "outcome", "action", "game_id", "ply", "seat")


def position_rows(obs: np.ndarray) -> np.ndarray:
    """``[N]``: each observation row as one opaque item (its bytes), so that equal
    observations, of any dtype, compare equal and nothing else does: what a distinct
    position is to the datasets and stores built on them."""
    flat = np.ascontiguousarray(obs).reshape(len(obs), int(np.prod(obs.shape[1:])))
    return flat.view(np.dtype((np.void, flat.shape[1] * flat.itemsize))).reshape(-1)


def _to_table(p: Positions) -> pa.Table:
    n = len(p)

    def fixed(arr: np.ndarray) -> pa.Array:
        # The row width from the shape, not -1: a shard may hold no position at all
        # (every game over within its random opening).
        flat = np.ascontiguousarray(arr).reshape(n, int(np.prod(arr.shape[1:])))
        return pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1)), flat.shape[1])

    return pa.table({
        "game_id": pa.array(p.game_id.astype(np.int64)),
        "ply": pa.array(p.ply.astype(np.int32)),
        "seat": pa.array(p.seat.astype(np.int8)),
        "obs": fixed(p.obs),
        "mask": fixed(p.mask.astype(np.int8)),
        "probs": fixed(p.probs.astype(np.float32)),
        "value": pa.array(p.value.astype(np.float32)),
        "outcome": pa.array(p.outcome.astype(np.float32)),
        "action": pa.array(p.action.astype(np.int32)),
    })


def _from_table(table: pa.Table, game: Game) -> Positions:
    n = table.num_rows

    def fixed(name: str, dtype: Any, shape: tuple[int, ...]) -> np.ndarray:
        values = table.column(name).combine_chunks().flatten().to_numpy(zero_copy_only=False)
        return values.astype(dtype, copy=False).reshape(n, *shape)

    return Positions(
        obs=fixed("obs", game.obs_dtype, game.obs_shape),
        mask=fixed("mask", np.int8, (game.num_actions,)),
        probs=fixed("probs", np.float32, (game.num_actions,)),
        value=table.column("value").to_numpy().astype(np.float32),
        outcome=table.column("outcome").to_numpy().astype(np.float32),
        action=table.column("action").to_numpy().astype(np.int32),
        game_id=table.column("game_id").to_numpy().astype(np.int64),
        ply=table.column("ply").to_numpy().astype(np.int32),
        seat=table.column("seat").to_numpy().astype(np.int8),
    )


class DatasetWriter:
    """Writes shards, then the manifest, into a directory (typically one staged by
    :func:`arena.runstate.staged_directory`, so the dataset appears only once complete)."""

    def __init__(self, directory: str | Path, game: Game, info: dict[str, Any]) -> None:
        self.directory = Path(directory)
        self.game = game
        self.info = info
        self.shards: list[dict[str, Any]] = []

    def write(self, positions: Positions) -> None:
        """Add one shard (written atomically)."""
        name = f"shard-{len(self.shards):05d}.parquet"
        tmp_file = self.directory / f".{name}.tmp"
        pq.write_table(_to_table(positions), tmp_file, compression="zstd")
        os.replace(tmp_file, self.directory / name)
        self.shards.append({
            "file": name,
            "positions": len(positions),
            "games": int(len(np.unique(positions.game_id))),
        })

    def close(self) -> None:
        """Write the manifest: the dataset is complete."""
        write_json_atomic(self.directory / "manifest.json", {
            "format": FORMAT,
            "game": self.game.name,
            "obs_shape": list(self.game.obs_shape),
            "obs_dtype": str(self.game.obs_dtype),
            "num_actions": self.game.num_actions,
            "games": sum(s["games"] for s in self.shards),
            "positions": sum(s["positions"] for s in self.shards),
            "shards": self.shards,
            **self.info,
        })


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest of the dataset at ``path``, its fields checked.

    Raises:
        TlmError: no manifest, not JSON, another format, or a field missing or of the
            wrong type (naming it).
    """
    path = Path(path)
    try:
        manifest = json.loads((path / "manifest.json").read_text())
    except FileNotFoundError:
        raise TlmError(f"{path} is not a tlm dataset (no manifest.json)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise TlmError(f"{path}/manifest.json cannot be read: {e}") from None
    except json.JSONDecodeError as e:
        raise TlmError(f"{path}/manifest.json is not valid JSON: {e.msg}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else manifest
        raise TlmError(f"{path}: unknown dataset format {found!r}")
    _check_manifest(path, manifest)
    return manifest


def _check_manifest(path: Path, manifest: dict[str, Any]) -> None:
    """Every field readers use, with its type: a damaged manifest is one clear error."""

    def bad(field: str, want: str) -> TlmError:
        return TlmError(f"{path}/manifest.json: {field} must be {want}, "
                        f"got {manifest.get(field)!r}")

    for field in ("game", "teacher"):
        if not isinstance(manifest.get(field), str):
            raise bad(field, "a string")
    shape = manifest.get("obs_shape")
    if not isinstance(shape, list) or not all(
        isinstance(n, int) and not isinstance(n, bool) for n in shape
    ):
        raise bad("obs_shape", "a list of integers")
    for field in ("games", "positions"):
        value = manifest.get(field)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise bad(field, "a count")
    shards = manifest.get("shards")
    if not isinstance(shards, list) or not all(
        isinstance(s, dict) and isinstance(s.get("file"), str)
        and Path(s["file"]).name == s["file"] and s["file"] not in ("", ".", "..")
        for s in shards
    ):
        raise bad("shards", "a list of {file: NAME} in the dataset's directory")


def load_dataset(path: str | Path, game: str | Game | None = None) -> Positions:
    """Every position of the dataset at ``path``.

    Args:
        path: the dataset directory.
        game: if given, the dataset must be of this game.

    Raises:
        TlmError: not a dataset, another game, a damaged shard, or no positions.
    """
    path = Path(path)
    manifest = read_manifest(path)
    g = get_game(manifest["game"])
    if game is not None and get_game(game).name != g.name:
        raise TlmError(f"dataset {path} is for {g.name}, not {get_game(game).name}")
    if list(manifest["obs_shape"]) != list(g.obs_shape):
        raise TlmError(f"dataset {path}: observation shape {manifest['obs_shape']} is not "
                       f"{g.name}'s {list(g.obs_shape)}")
    parts = []
    for shard in manifest["shards"]:
        try:
            table = pq.read_table(path / shard["file"], columns=list(COLUMNS))
        except (OSError, pa.ArrowException) as e:
            raise TlmError(f"dataset {path}: cannot read {shard['file']}: {e}") from None
        parts.append(_from_table(table, g))
    positions = Positions.concat(parts) if parts else Positions.empty(g)
    if len(positions) == 0:
        raise TlmError(f"dataset {path} holds no positions")
    return positions
