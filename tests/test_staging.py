"""Staged output directories: atomic on success, resumed or removed after a dead run,
exclusive while their owner lives (in-process, and with real ``tlm`` subprocesses); what
every command writes has the modes the umask gives."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from arena.core import TlmError
from arena.runstate import (
    lock_path,
    output_lock,
    staged_directory,
    staging_path,
    temp_directory,
    temp_file,
    write_json_atomic,
)
from scripts.cli import main

TLM = [sys.executable, "-c", "import sys; from scripts.cli import main; sys.exit(main())"]


def generate_args(games: int) -> list[str]:
    return ["generate", "--game", "connect_four", "--teacher", "alphabeta:2",
            "--games", str(games), "--games-per-shard", "100", "--seed", "3"]


# Long enough to be killed two seconds in, short enough to rerun in a few seconds.
GENERATE = generate_args(6000)


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def dead_run(out: Path, files: dict[str, str]) -> None:
    """What a ``kill -9`` leaves: a staging directory and a lock file no one holds."""
    stage = staging_path(out)
    stage.mkdir()
    for name, text in files.items():
        (stage / name).write_text(text)
    lock_path(out).write_text(json.dumps({"pid": 999_999_999, "started": 0.0}))


def test_success_renames_the_staging_directory_and_leaves_nothing_beside(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with staged_directory(out) as stage:
        assert stage == tmp_path / ".run.partial"
        assert lock_path(out).exists()
        (stage / "a.txt").write_text("done")
    assert (out / "a.txt").read_text() == "done"
    assert leftovers(tmp_path) == []


def test_a_failed_block_leaves_no_output(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with pytest.raises(ValueError), staged_directory(out) as stage:
        (stage / "half.txt").write_text("half")
        raise ValueError("bad input halfway")
    assert not out.exists()
    assert leftovers(tmp_path) == []


def test_a_dead_runs_staging_directory_is_removed_by_default(tmp_path: Path) -> None:
    out = tmp_path / "run"
    dead_run(out, {"old.txt": "stale"})
    with staged_directory(out) as stage:
        assert list(stage.iterdir()) == []
    assert sorted(p.name for p in out.iterdir()) == []
    assert leftovers(tmp_path) == []


def test_resume_hands_back_a_dead_runs_contents(tmp_path: Path) -> None:
    out = tmp_path / "run"
    dead_run(out, {"round_3.json": "{}"})
    with staged_directory(out, resume=True) as stage:
        assert (stage / "round_3.json").read_text() == "{}"
        (stage / "final.txt").write_text("done")
    assert sorted(p.name for p in out.iterdir()) == ["final.txt", "round_3.json"]
    assert leftovers(tmp_path) == []


def test_an_interrupt_keeps_the_staging_directory_only_for_resumable_runs(
    tmp_path: Path,
) -> None:
    for resume in (False, True):
        out = tmp_path / f"run-{resume}"
        with pytest.raises(KeyboardInterrupt), staged_directory(out, resume=resume) as stage:
            (stage / "round_1.json").write_text("{}")
            raise KeyboardInterrupt
        assert not out.exists()
        assert staging_path(out).exists() == resume
        assert not lock_path(out).exists()
    with staged_directory(tmp_path / "run-True", resume=True) as stage:
        assert (stage / "round_1.json").exists()


def test_a_live_owner_keeps_a_second_writer_out(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with staged_directory(out) as stage:
        (stage / "mine.txt").write_text("x")
        # A lock is held per open file, so this process is a second writer here.
        with pytest.raises(TlmError, match=f"being written by pid {os.getpid()}"), \
                staged_directory(out, resume=True):
            pass
        assert (stage / "mine.txt").exists()
    assert (out / "mine.txt").exists()


def test_an_existing_output_is_refused_before_the_lock(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "kept.txt").write_text("precious")
    with pytest.raises(TlmError, match="already exists"), staged_directory(out):
        pass
    assert (out / "kept.txt").read_text() == "precious"
    assert leftovers(tmp_path) == []


def test_missing_parent_directories_are_created(tmp_path: Path) -> None:
    """``--out runs/x`` works before ``runs/`` exists; under a file it is refused."""
    out = tmp_path / "runs" / "deeper" / "x"
    with staged_directory(out) as stage:
        (stage / "f").write_text("done")
    assert (out / "f").read_text() == "done"
    blocker = tmp_path / "file"
    blocker.write_text("keep me")
    with pytest.raises(TlmError, match="does not exist"), \
            staged_directory(blocker / "sub" / "x"):
        pass
    assert blocker.read_text() == "keep me"


def test_the_lock_alone(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with output_lock(out) as lock:
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert not lock.exists()


def start_generate(out: Path, cwd: Path, args: list[str] = GENERATE
                   ) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*TLM, *args, "--out", str(out)], cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )


def wait_for(predicate: object, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        assert time.monotonic() < deadline, "the run never started writing"
        time.sleep(0.05)


def run_tlm(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*TLM, *args], cwd=cwd, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])},
    )


def test_generate_killed_two_seconds_in_then_rerun_succeeds_and_cleans_up(
    tmp_path: Path,
) -> None:
    out = tmp_path / "data"
    proc = start_generate(out, tmp_path)
    started = time.monotonic()
    try:
        wait_for(lambda: any(staging_path(out).glob("*.parquet")), proc)
        time.sleep(max(0.0, 2.0 - (time.monotonic() - started)))
        assert proc.poll() is None, "the run finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert staging_path(out).is_dir() and not out.exists()

    rerun = run_tlm([*GENERATE, "--out", str(out)], tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["games"] == 6000
    assert leftovers(tmp_path) == []


def test_two_runs_to_one_output_the_second_gets_exit_2(tmp_path: Path) -> None:
    out = tmp_path / "data"
    # A run far too long to end while the second one starts, however busy the machine
    # (it is killed below).
    long = generate_args(6_000_000)
    first = start_generate(out, tmp_path, long)
    try:
        wait_for(lambda: staging_path(out).is_dir(), first)
        second = run_tlm([*long, "--out", str(out)], tmp_path)
        assert first.poll() is None, "the first run ended before the second started"
        assert second.returncode == 2
        assert second.stderr.strip() == (
            f"error: output {out} is being written by pid {first.pid}"
        )
    finally:
        first.kill()
        first.wait()


# -- modes ---------------------------------------------------------------------------------


@contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def modes(root: Path) -> dict[str, str]:
    """The permission bits of everything under ``root``, in octal, by relative path."""
    return {p.relative_to(root).as_posix(): oct(p.lstat().st_mode & 0o7777)
            for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_temp_files_staged_directories_and_atomic_writes_follow_the_umask(
    mask: int, tmp_path: Path
) -> None:
    file_mode, dir_mode = oct(0o666 & ~mask), oct(0o777 & ~mask)
    with umask(mask):
        fd, path = temp_file(tmp_path, prefix=".x.")
        os.close(fd)
        made = temp_directory(tmp_path, prefix=".d.", suffix=".old")
        assert path.name.startswith(".x.") and made.name.endswith(".old")
        write_json_atomic(tmp_path / "doc.json", {"a": 1})
        with staged_directory(tmp_path / "out") as stage:
            write_json_atomic(stage / "report.json", {"b": 2})
            (stage / "sub").mkdir()
            with output_lock(tmp_path / "other") as lock:
                assert oct(lock.stat().st_mode & 0o777) == file_mode
    assert modes(tmp_path) == {
        path.name: file_mode, made.name: dir_mode, "doc.json": file_mode,
        "out": dir_mode, "out/report.json": file_mode, "out/sub": dir_mode,
    }


TINY_LEAGUE = {
    "game": "tictactoe", "seed": 1,
    "learners": [{"name": "main", "net_arch": [16], "n_envs": 2,
                  "ppo": {"n_steps": 32, "batch_size": 64, "n_epochs": 1},
                  "steps_per_round": 64, "snapshot_every": 64}],
    "references": ["random"],
    "evaluation": {"games_per_pair": 10, "snapshots_per_learner": 1},
    "stop": {"max_rounds": 2},
}


def test_every_command_writes_files_0644_and_directories_0755_under_umask_022(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """generate, distill (student checkpoint, curves, TensorBoard, report), eval --out,
    a league (database, learner checkpoints, snapshots) and its report."""
    runs = tmp_path / "runs"
    with umask(0o022):
        runs.mkdir()
        config = runs / "league.yaml"
        config.write_text(yaml.safe_dump(TINY_LEAGUE))
        commands = [
            ["generate", "--game", "tictactoe", "--teacher", "perfect", "--games", "20",
             "--games-per-shard", "10", "--out", str(runs / "data")],
            ["distill", "--game", "tictactoe", "--teacher", "perfect", "--student",
             "mlp:16x1", "--budget-games", "20", "--games-per-round", "10",
             "--steps-per-round", "5", "--eval-games", "10", "--out", str(runs / "ttt")],
            ["distill", "--game", "tictactoe", "--method", "offline", "--dataset",
             str(runs / "data"), "--student", "mlp:16x1", "--budget-games", "20",
             "--games-per-round", "20", "--steps-per-round", "5", "--eval-games", "10",
             "--out", str(runs / "offline")],
            ["eval", "--game", "tictactoe", "--agent", str(runs / "ttt" / "student"),
             "--opponents", "random", "--games", "10", "--json",
             "--out", str(runs / "report.json")],
            ["league", "run", "--config", str(config), "--dir", str(runs / "league"),
             "--quiet"],
            ["league", "report", "--dir", str(runs / "league")],
        ]
        for args in commands:
            assert main(args) == 0, (args, capsys.readouterr().err)
    capsys.readouterr()
    found = modes(runs)
    for name in ("data/manifest.json", "ttt/student/model.safetensors", "ttt/report.json",
                 "offline/student", "report.json", "league/league.db",
                 "league/learners/main/r000002", "league/report.html"):
        assert name in found, sorted(found)
    wrong = {name: mode for name, mode in found.items()
             if mode != ("0o755" if (runs / name).is_dir() else "0o644")}
    assert wrong == {}
