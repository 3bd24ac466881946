"""Resuming ``tlm distill``: killed with SIGKILL at random moments (and stopped with
Ctrl-C), rerun, it ends with exactly the student of an uninterrupted run."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from arena.runstate import ResumeRefusedError, staging_path
from distill import make_config
from distill.checkpoint import RoundState, load_round, run_settings, save_round
from distill.store import PositionStore
from distill.train import FitConfig, make_optimizer
from students import build_student

ROUNDS = 10
CONFIG = f"""\
game: tictactoe
teacher: perfect
student: mlp:32x1
budget_games: {20 * ROUNDS}
games_per_round: 20
steps_per_round: 40
eval_games: 10
holdout_games: 0
stop_when_perfect: false
"""


def tlm(out: Path) -> subprocess.Popen[str]:
    config = out.parent / "run.yaml"
    if not config.exists():
        config.write_text(CONFIG)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    return subprocess.Popen(
        [sys.executable, "-m", "scripts.cli", "distill", "--config", str(config), "--seed", "5",
         "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        cwd=Path(__file__).resolve().parent.parent,
    )


def checkpointed(out: Path) -> int:
    """The latest round checkpointed in the staging directory of ``out`` (0: none).

    Read where :func:`arena.runstate.save_checkpoint` keeps it, or where a swap in
    progress has put it aside for a moment."""
    stage = staging_path(out)
    for _ in range(100):
        for where in ("checkpoint", ".checkpoint.old"):
            try:
                return int(json.loads((stage / where / "state.json").read_text())["next_round"])
            except (OSError, ValueError):
                continue
        if not (stage / ".checkpoint.new").exists():
            return 0
        time.sleep(0.001)
    return 0


def wait_for_new_checkpoint(
    out: Path, proc: subprocess.Popen[str], limit: float = 120, poll: float = 0.02
) -> bool:
    """Wait until the run at ``out`` checkpoints a round it had not checkpointed when
    called, looking every ``poll`` seconds (False: the process ended first)."""
    before = checkpointed(out)
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if checkpointed(out) > before:
            return True
        if proc.poll() is not None:
            return False
        time.sleep(poll)
    raise AssertionError(f"no new checkpoint within {limit} s")


def weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(out / "student" / "model.safetensors")


def test_killed_and_interrupted_runs_end_with_the_uninterrupted_student(tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    proc = tlm(reference)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err

    out = tmp_path / "resumed"
    # Ctrl-C once the first round is checkpointed: the round in progress finishes,
    # then one line says how to resume.
    proc = tlm(out)
    assert wait_for_new_checkpoint(out, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "run the same command again to resume" in err
    assert len(err.strip().splitlines()) == 1
    assert staging_path(out).is_dir() and not out.exists()
    # Another seed to the same output is refused, and the kept rounds stay.
    kept = checkpointed(out)
    other = subprocess.run(
        [sys.executable, "-m", "scripts.cli", "distill", "--config", str(tmp_path / "run.yaml"),
         "--seed", "6", "--out", str(out)],
        capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent,
        env={**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"},
    )
    assert other.returncode == 2, other.stderr
    assert other.stderr.startswith("error:") and "other settings (seed)" in other.stderr
    assert checkpointed(out) == kept
    # Three SIGKILLs, each a random fraction of a second after the resumed run
    # checkpoints a new round (so mid-round, or mid-checkpoint).
    rng = np.random.default_rng(12)
    for _ in range(3):
        proc = tlm(out)
        assert wait_for_new_checkpoint(out, proc)
        time.sleep(float(rng.uniform(0, 0.1)))
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        assert proc.returncode == -signal.SIGKILL
        assert staging_path(out).is_dir() and not out.exists()
    assert checkpointed(out) < ROUNDS
    proc = tlm(out)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert not staging_path(out).exists()
    assert not list(out.glob("round-*")) and not (out / "checkpoint").exists()
    a, b = weights(reference), weights(out)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert curve(out) == curve(reference) and len(curve(out)) == ROUNDS


def curve(out: Path) -> list[dict[str, str]]:
    """The curve's rows without the timings (which differ from run to run)."""
    with open(out / "curve.csv") as f:
        return [{k: v for k, v in row.items() if not k.endswith("_s")}
                for row in csv.DictReader(f)]


def test_checkpoint_round_trip_and_settings_guard(tmp_path: Path) -> None:
    cfg = make_config(game="tictactoe", teacher="perfect", student="mlp:16x1",
                      out=tmp_path / "o")
    settings = run_settings(cfg)
    net = build_student("mlp:16x1", "tictactoe", seed=0)
    opt = make_optimizer(net, FitConfig())
    # One step so that the optimizer has state worth saving.
    logits, value = net(torch.zeros(4, 3, 3, 2))
    (logits.sum() + value.sum()).backward()
    opt.step()
    store = PositionStore("tictactoe")
    obs = np.zeros((2, 3, 3, 2), dtype=np.int8)
    obs[1, 0, 0, 0] = 1
    keys = store.keys(obs)
    rows = store.add(keys, obs, np.ones((2, 9), np.int8), np.full((2, 9), 1 / 9),
                     np.array([0.5, np.nan]), rnd=0)
    store.visit(np.concatenate([rows, rows[:1]]), np.array([1.0, -1.0, 0.0]), rnd=0)
    state = RoundState(next_round=1, games=20, labels=2, curve=[{"round": 0}], wall_s=1.5,
                       strategy={"next_game": 20})
    save_round(tmp_path, state, settings, net, opt, store, "perfect")

    net2 = build_student("mlp:16x1", "tictactoe", seed=1)
    opt2 = make_optimizer(net2, FitConfig())
    loaded = load_round(tmp_path, settings, net2, opt2, "tictactoe")
    assert loaded is not None
    state2, store2 = loaded
    assert state2 == state
    assert all(torch.equal(net.state_dict()[k], net2.state_dict()[k])
               for k in net.state_dict())
    assert torch.equal(opt2.state_dict()["state"][0]["exp_avg"],
                       opt.state_dict()["state"][0]["exp_avg"])
    assert store2.count.tolist() == [2, 1]
    assert store2.outcome.tolist() == [0.5, -1.0]
    assert np.isnan(store2.value[1]) and store2.lookup(keys).tolist() == [0, 1]
    other = {**settings, "seed": 1}
    with pytest.raises(ResumeRefusedError, match=r"other settings \(seed\)"):
        load_round(tmp_path, other, net2, opt2, "tictactoe")
    # A run checkpointed before a setting was added resumes with it at its default,
    # and is refused with it at another value.
    older = {k: v for k, v in settings.items() if k != "forced_answers"}
    save_round(tmp_path, state, older, net, opt, store, "perfect")
    assert load_round(tmp_path, settings, net2, opt2, "tictactoe") is not None
    with pytest.raises(ResumeRefusedError, match=r"other settings \(forced_answers\)"):
        load_round(tmp_path, {**settings, "forced_answers": 4}, net2, opt2, "tictactoe")


@pytest.mark.parametrize("bad", ["garbage", ""])
def test_damaged_checkpoint_is_one_clear_error(tmp_path: Path, bad: str) -> None:
    from arena import TlmError

    ckpt = tmp_path / "checkpoint"
    ckpt.mkdir()
    (ckpt / "state.json").write_text(bad)
    net = build_student("mlp:16x1", "tictactoe", seed=0)
    with pytest.raises(TlmError, match="damaged checkpoint"):
        load_round(tmp_path, {}, net, make_optimizer(net, FitConfig()), "tictactoe")


def test_store_is_positions_with_visits_and_saves_as_a_dataset(tmp_path: Path) -> None:
    from teachers.datasets import Positions, load_dataset

    store = PositionStore("tictactoe")
    obs = np.zeros((3, 3, 3, 2), dtype=np.int8)
    obs[1, 0, 0, 0] = 1  # obs[2] repeats obs[0]: one position, two visits
    reached, added = store.add_labelled(obs, np.ones((3, 9), np.int8), np.full((3, 9), 1 / 9),
                                        np.array([0.5, np.nan, 0.5]), np.array([1.0, 0.0, -1.0]),
                                        rnd=3, ply=np.array([0, 1, 0]), seat=np.array([0, 1, 0]))
    assert (reached, added) == (3, 2)
    rows = store.as_positions()
    assert isinstance(rows, Positions) and len(rows) == len(store) == 2
    assert rows.outcome.tolist() == [0.0, 0.0] and store.count.tolist() == [2, 1]
    assert rows.ply.tolist() == [0, 1] and rows.seat.tolist() == [0, 1]
    assert rows.game_id.tolist() == [-1, -1] and rows.action.tolist() == [-1, -1]
    store.save(tmp_path / "store", "perfect")
    saved = load_dataset(tmp_path / "store" / "positions", "tictactoe")
    assert np.array_equal(saved.obs, store.obs) and np.array_equal(saved.probs, store.probs)
    back = PositionStore.load(tmp_path / "store", "tictactoe")
    assert back.count.tolist() == [2, 1] and back.first_round.tolist() == [3, 3]
    assert back.lookup(back.keys(obs)).tolist() == [0, 1, 0]
    empty = PositionStore("tictactoe")
    empty.save(tmp_path / "empty", "perfect")
    assert len(PositionStore.load(tmp_path / "empty", "tictactoe")) == 0
