"""Game generation and datasets: labels, outcomes, exploration, atomic writes, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from arena import TlmError, make_agent
from arena.players import optimal_moves_mask, position_values
from teachers.datasets import load_dataset, read_manifest
from teachers.generate import (
    Exploration,
    TeacherLabeller,
    collect_positions,
    generate_dataset,
    with_temperature,
)


def test_with_temperature() -> None:
    p = np.array([[0.5, 0.25, 0.25, 0.0]])
    np.testing.assert_allclose(with_temperature(p, 1.0), p)
    np.testing.assert_allclose(with_temperature(p, 0.0), [[1, 0, 0, 0]])
    sharp = with_temperature(p, 0.5)  # squares, renormalised: .25, .0625, .0625 over .375
    np.testing.assert_allclose(sharp, [[2 / 3, 1 / 6, 1 / 6, 0]])
    ties = with_temperature(np.array([[0.4, 0.4, 0.2]]), 0.0)
    np.testing.assert_allclose(ties, [[0.5, 0.5, 0]])


def test_perfect_teacher_labels_are_exact() -> None:
    teacher = make_agent("perfect", "tictactoe")
    labeller = TeacherLabeller(teacher, exploration=Exploration(epsilon=0.3))
    pos = collect_positions("tictactoe", labeller, 60, seed=1)
    assert len(pos) > 60 * 4
    # Probabilities are uniform over the optimal moves of each position.
    opt = optimal_moves_mask(pos.obs).astype(bool)
    assert np.all((pos.probs > 0) == opt)
    np.testing.assert_allclose(pos.probs.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(pos.value, position_values(pos.obs))
    # Plies count up within each game, and the mover's outcome flips sign between seats.
    for g in np.unique(pos.game_id)[:10]:
        rows = pos.game_id == g
        assert pos.ply[rows].tolist() == list(range(rows.sum()))
        o = pos.outcome[rows]
        assert np.all(o[::2] == o[0]) and np.all(o[1::2] == -o[0])


def test_outcome_matches_the_final_position() -> None:
    # Without exploration, perfect vs perfect is always a draw.
    teacher = make_agent("perfect", "tictactoe")
    pos = collect_positions("tictactoe", TeacherLabeller(teacher), 30, seed=0)
    assert np.all(pos.outcome == 0)
    assert np.all(np.bincount(pos.game_id) == 9)


def test_generate_writes_shards_and_manifest(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    teacher = make_agent("alphabeta:2", "connect_four")
    seen: list[int] = []
    generate_dataset("connect_four", teacher, 30, out, seed=3, games_per_shard=12,
                     exploration=Exploration(temperature=1.0, opening_plies=2),
                     progress=seen.append)
    manifest = read_manifest(out)
    assert seen == [12, 24, 30]
    assert manifest["games"] == 30 and len(manifest["shards"]) == 3
    assert manifest["teacher"] == "alphabeta:2" and manifest["game"] == "connect_four"
    assert manifest["exploration"]["opening_plies"] == 2
    pos = load_dataset(out, "connect_four")
    assert len(pos) == manifest["positions"]
    assert pos.obs.shape[1:] == (6, 7, 2) and pos.obs.dtype == np.int8
    assert set(np.unique(pos.game_id)) == set(range(30))
    assert pos.ply.min() == 2  # opening plies are not labelled
    assert np.all(pos.mask[np.arange(len(pos)), pos.action] == 1)
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())


def test_same_seed_same_dataset(tmp_path: Path) -> None:
    teacher = make_agent("perfect", "tictactoe")
    ex = Exploration(epsilon=0.2)
    a = generate_dataset("tictactoe", teacher, 40, tmp_path / "a", seed=9, exploration=ex)
    b = generate_dataset("tictactoe", teacher, 40, tmp_path / "b", seed=9, exploration=ex)
    pa, pb = load_dataset(a), load_dataset(b)
    np.testing.assert_array_equal(pa.obs, pb.obs)
    np.testing.assert_array_equal(pa.action, pb.action)


def test_bad_inputs_leave_nothing_behind(tmp_path: Path) -> None:
    teacher = make_agent("perfect", "tictactoe")
    existing = tmp_path / "full"
    existing.mkdir()
    (existing / "keep.txt").write_text("mine")
    with pytest.raises(TlmError, match="already exists"):
        generate_dataset("tictactoe", teacher, 5, existing)
    assert (existing / "keep.txt").read_text() == "mine"
    with pytest.raises(TlmError, match="must be positive"):
        generate_dataset("tictactoe", teacher, 0, tmp_path / "zero")
    with pytest.raises(TlmError, match="epsilon"):
        Exploration(epsilon=1.5)
    with pytest.raises(TlmError, match="no manifest"):
        load_dataset(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full"]


def test_dataset_errors(tmp_path: Path) -> None:
    teacher = make_agent("perfect", "tictactoe")
    out = generate_dataset("tictactoe", teacher, 5, tmp_path / "ds", seed=0)
    with pytest.raises(TlmError, match="is for tictactoe, not connect_four"):
        load_dataset(out, "connect_four")
    (out / "shard-00000.parquet").write_bytes(b"not parquet")
    with pytest.raises(TlmError, match="cannot read shard-00000.parquet"):
        load_dataset(out)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["shards"] = []
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(TlmError, match="holds no positions"):
        load_dataset(out)


def test_averaged_positions_are_one_row_each_with_mean_targets() -> None:
    from arena import get_game
    from teachers.datasets import Positions

    game = get_game("connect_four")

    def row(square: int, probs: list[float], value: float, outcome: float) -> Positions:
        obs = np.zeros((1, *game.obs_shape), dtype=game.obs_dtype)
        obs.flat[square] = 1
        return Positions(obs=obs, mask=np.ones((1, 7), np.int8),
                         probs=np.array([probs], np.float32),
                         value=np.array([value], np.float32),
                         outcome=np.array([outcome], np.float32),
                         action=np.zeros(1, np.int32), game_id=np.zeros(1, np.int64),
                         ply=np.ones(1, np.int32), seat=np.zeros(1, np.int8))

    a, b = [1.0, 0, 0, 0, 0, 0, 0], [0, 1.0, 0, 0, 0, 0, 0]
    rows = Positions.concat([row(9, a, 0.5, 1.0), row(3, b, np.nan, -1.0),
                             row(9, b, np.nan, -1.0), row(3, a, 0.2, 1.0),
                             row(11, a, np.nan, 0.0)])
    out = rows.averaged()
    assert len(out) == 3
    assert out.obs.reshape(3, -1).argmax(axis=1).tolist() == [9, 3, 11]  # first seen first
    np.testing.assert_allclose(out.probs[:2], [[0.5, 0.5, 0, 0, 0, 0, 0]] * 2)
    np.testing.assert_allclose(out.outcome, [0.0, 0.0, 0.0])
    np.testing.assert_allclose(out.value[:2], [0.5, 0.2])  # over the rows with a value
    assert np.isnan(out.value[2])
    assert len(Positions.empty(game).averaged()) == 0
    # Observations are compared exactly, whatever their dtype.
    halves = Positions.concat([row(9, a, 0.5, 1.0), row(9, a, 0.5, 1.0)])
    halves.obs = halves.obs.astype(np.float32) * np.array([0.25, 0.5], np.float32).reshape(
        2, *[1] * (halves.obs.ndim - 1))
    assert len(halves.averaged()) == 2
