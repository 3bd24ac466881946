"""Staged output directories: atomic on success, resumed or removed after a dead run,
exclusive while their owner lives (in-process, and with real ``tlm`` subprocesses)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from arena.core import TlmError
from arena.io import lock_path, output_lock, staged_directory, staging_path

TLM = [sys.executable, "-c", "import sys; from scripts.cli import main; sys.exit(main())"]
# Long enough to be killed two seconds in, short enough to rerun in a few seconds.
GENERATE = ["generate", "--game", "connect_four", "--teacher", "alphabeta:2",
            "--games", "6000", "--games-per-shard", "100", "--seed", "3"]


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


def start_generate(out: Path, cwd: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*TLM, *GENERATE, "--out", str(out)], cwd=cwd,
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
    first = start_generate(out, tmp_path)
    try:
        wait_for(lambda: staging_path(out).is_dir(), first)
        second = run_tlm([*GENERATE, "--out", str(out)], tmp_path)
        assert first.poll() is None, "the first run ended before the second started"
        assert second.returncode == 2
        assert second.stderr.strip() == (
            f"error: output {out} is being written by pid {first.pid}"
        )
    finally:
        first.kill()
        first.wait()
