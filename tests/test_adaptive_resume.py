"""Resuming ``tlm distill --method adaptive``: stopped with Ctrl-C and killed with SIGKILL
just after new round checkpoints, rerun, it ends with exactly the student and the curve
of an uninterrupted run; a rerun with other settings is refused and loses nothing."""

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
from test_distill_resume import checkpointed, wait_for_new_checkpoint

from arena.runstate import staging_path
from scripts.cli import main

ARGS = ["distill", "--method", "adaptive", "--game", "tictactoe", "--teacher", "perfect",
        "--student", "mlp:32x1", "--games-per-round", "10", "--steps-per-round", "20",
        "--budget-games", "400", "--seed", "5"]
"""About 25 rounds of a few tens of milliseconds (it stops once the student plays
tic-tac-toe perfectly)."""


def tlm(out: Path, *extra: str) -> subprocess.Popen[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    return subprocess.Popen(
        [sys.executable, "-m", "scripts.cli", *ARGS, "--out", str(out), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        cwd=Path(__file__).resolve().parent.parent,
    )


def weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(out / "student" / "model.safetensors")


def curve(out: Path) -> list[dict[str, str]]:
    """The curve's rows without the timings (which differ from run to run)."""
    with open(out / "curve.csv") as f:
        return [{k: v for k, v in row.items() if not k.endswith("_s")}
                for row in csv.DictReader(f)]


def kept(out: Path) -> dict[str, bytes]:
    """Every file of the staging directory of ``out``, by relative path."""
    stage = staging_path(out)
    return {str(p.relative_to(stage)): p.read_bytes() for p in stage.rglob("*") if p.is_file()}


def test_killed_and_interrupted_adaptive_runs_end_with_the_uninterrupted_student(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reference = tmp_path / "reference"
    plain = tlm(reference)  # runs alongside the interrupted ones

    out = tmp_path / "resumed"
    # Ctrl-C once the first round is checkpointed: the round in progress finishes,
    # then one line says how to resume.
    proc = tlm(out)
    assert wait_for_new_checkpoint(out, proc, poll=0.005)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.startswith("interrupted: ") and "run the same command again to resume" in err
    assert len(err.strip().splitlines()) == 1
    assert checkpointed(out) >= 1 and not out.exists()

    # Other settings are refused in one line; the kept checkpoint is untouched.
    before = kept(out)
    capsys.readouterr()
    assert main([*ARGS[:-1], "6", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "other settings (seed)" in err and "--fresh" in err
    assert "\n" not in err
    assert kept(out) == before and not out.exists()

    # Three SIGKILLs, each a random few milliseconds after the resumed run checkpoints
    # a new round (so mid-round, or mid-checkpoint).
    rng = np.random.default_rng(12)
    for _ in range(3):
        proc = tlm(out)
        assert wait_for_new_checkpoint(out, proc, poll=0.005)
        time.sleep(float(rng.uniform(0, 0.02)))
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        assert proc.returncode == -signal.SIGKILL
        assert staging_path(out).is_dir() and not out.exists()
    stopped_at = checkpointed(out)

    proc = tlm(out)
    shown, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    played = [line.split()[0] for line in shown.splitlines() if line.startswith("  round=")]
    assert played[0] == f"round={stopped_at}"  # it went on from the last checkpoint
    _, err = plain.communicate(timeout=300)
    assert plain.returncode == 0, err
    assert not staging_path(out).exists()
    assert sorted(p.name for p in out.iterdir()) == [
        "curve.csv", "curve.png", "report.json", "student", "tensorboard"]

    a, b = weights(reference), weights(out)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    rows = curve(out)
    assert rows == curve(reference)
    assert stopped_at < len(rows)  # the last run had rounds left to play
    report, plain_report = (json.loads((d / "report.json").read_text())
                            for d in (out, reference))
    assert report.pop("wall_s") > 0 and plain_report.pop("wall_s") > 0
    for r in (report, plain_report):  # the timings and the outputs differ
        r.pop("time")
        r["config"].pop("out")
        r["final"] = {k: v for k, v in r["final"].items() if not k.endswith("_s")}
    assert json.dumps(report) == json.dumps(plain_report)  # NaN equals NaN as text
