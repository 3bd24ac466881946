"""The tlm command line: tables, JSON, the terminal game, and one-line errors with
exit code 2 for every kind of bad input."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scripts.cli import main
from scripts.cli_common import agent_specs, command_output, echo

TLM = [sys.executable, "-m", "scripts.cli"]


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_eval_json_for_perfect(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["eval", "--game", "tictactoe", "--agent", "perfect", "--opponents",
                        "random,heuristic", "--games", "400", "--json"], capsys)
    assert code == 0
    report = json.loads(out)
    assert report["game"] == "tictactoe" and report["agent"] == "perfect"
    results = report["results"]
    assert [(r["opponent"], r["seat"]) for r in results] == [
        ("random", "first"), ("random", "second"), ("random", "both"),
        ("heuristic", "first"), ("heuristic", "second"), ("heuristic", "both"),
    ]
    for r in results:
        assert r["losses"] == 0
        assert r["wins"] + r["draws"] + r["losses"] == r["games"]
        assert r["ci95"][0] <= r["score"] <= r["ci95"][1]
    assert report["exact"]["exhaustive_losses"] == 0
    assert report["exact"]["optimal_accuracy"] == 1.0


def test_a_list_of_opponents_keeps_each_specs_options(capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    assert agent_specs("alphabeta:8,t=1,solve=14, random,prefer:left,p=0.5") == [
        "alphabeta:8,t=1,solve=14", "random", "prefer:left,p=0.5"]
    code, out, _ = run(["eval", "--game", "tictactoe", "--agent", "perfect", "--opponents",
                        "prefer:left,p=0.5,random", "--games", "20", "--json"], capsys)
    assert code == 0
    assert {r["opponent"] for r in json.loads(out)["results"]} == {"prefer:left,p=0.5",
                                                                   "random"}


def test_eval_table_and_out_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_file = tmp_path / "eval.json"
    code, out, _ = run(["eval", "--game", "connect_four", "--agent", "heuristic",
                        "--opponents", "random", "--games", "50", "--out", str(out_file)],
                       capsys)
    assert code == 0
    assert "heuristic vs random on connect_four" in out and "95% CI" in out
    assert json.loads(out_file.read_text())["results"][2]["games"] == 50


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["eval", "--game", "checkers", "--agent", "random"], "unknown game 'checkers'"),
        (["eval", "--game", "tictactoe", "--agent", "wizard"], "unknown agent spec 'wizard'"),
        (["eval", "--game", "connect_four", "--agent", "perfect"], "plays only tictactoe"),
        (["eval", "--game", "tictactoe", "--agent", "alphabeta:4"], "plays only connect_four"),
        (["eval", "--game", "connect_four", "--agent", "alphabeta:x"], "expected a number"),
        (["eval", "--game", "connect_four", "--agent", "alphabeta"], "needs an argument"),
        (["eval", "--game", "tictactoe", "--agent", "random", "--games", "0"],
         "--games must be positive"),
        (["eval", "--game", "tictactoe", "--agent", "random", "--games", "-3"],
         "--games must be positive"),
        (["eval", "--game", "tictactoe", "--agent", "random", "--out",
          "/nonexistent/dir/x.json"], "does not exist"),
        (["eval", "--game", "tictactoe", "--agent", "random", "--opponents", ","],
         "names no agent"),
        (["eval", "--game", "tictactoe", "--agent", "random", "--gamez", "3"],
         "No such option"),
        (["play", "--game", "tictactoe", "--seat", "middle"], "--seat must be first or second"),
        (["eval", "--game", "tictactoe", "--agent", "random:3"], "takes no argument"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(argv, capsys)
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err + out


def test_unwritable_out_loses_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("keep me")
    code, _, err = run(["eval", "--game", "tictactoe", "--agent", "random", "--games", "5",
                        "--out", str(blocker / "x.json")], capsys)
    assert code == 2 and "does not exist" in err
    assert blocker.read_text() == "keep me"


def test_subprocess_exit_code_and_version() -> None:
    bad = subprocess.run([*TLM, "eval", "--game", "nope", "--agent", "random"],
                         capture_output=True, text=True)
    assert bad.returncode == 2
    assert bad.stderr.strip().startswith("error: unknown game 'nope'")
    assert "Traceback" not in bad.stderr
    ok = subprocess.run([*TLM, "--version"], capture_output=True, text=True)
    assert ok.returncode == 0 and ok.stdout.startswith("tlm ")


@pytest.mark.parametrize(
    "command", ["games", "eval", "play", "generate", "distill", "teach", "demo"]
)
def test_every_command_has_help_with_an_example(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run([command, "--help"], capsys)
    assert code == 0
    assert "Example: tlm " + command in out


def test_games_lists_shapes(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["games", "--json"], capsys)
    rows = {r["game"]: r for r in json.loads(out)}
    assert code == 0
    assert rows["tictactoe"]["obs_shape"] == [3, 3, 2] and rows["tictactoe"]["actions"] == 9
    assert rows["connect_four"]["obs_shape"] == [6, 7, 2]
    assert rows["connect_four"]["engine"] == "fast"
    assert rows["chess"]["actions"] == 4672 and rows["chess"]["engine"] == "generic"


def test_play_in_the_terminal_asks_again_on_bad_input() -> None:
    # The person plays first against `perfect`: junk, an out-of-range square, then
    # squares in order; each refused input is asked again, the game ends with a result.
    moves = "hello\n42\n" + "\n".join(str(i) for i in range(9)) * 3 + "\n"
    proc = subprocess.run(
        [*TLM, "play", "--game", "tictactoe", "--opponent", "perfect", "--seat", "first"],
        input=moves, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "'hello' is not a number" in proc.stdout
    assert "42 is not legal here" in proc.stdout
    assert "your move [0, 1, 2, 3, 4, 5, 6, 7, 8]" in proc.stdout
    assert "perfect wins" in proc.stdout or "Draw." in proc.stdout
    assert "You win" not in proc.stdout


def test_checkpoint_and_dataset_errors_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import arena
    from students import build_student, save_student
    from teachers import generate_dataset

    ckpt = save_student(build_student("mlp:16x1", "tictactoe", seed=0), tmp_path / "ttt")
    code, _, err = run(["eval", "--game", "connect_four", "--agent", str(ckpt),
                        "--games", "4"], capsys)
    assert code == 2 and "is for tictactoe, not connect_four" in err
    weights = ckpt / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-9])
    code, _, err = run(["eval", "--game", "tictactoe", "--agent", str(ckpt), "--games", "4"],
                       capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    data = generate_dataset("tictactoe", arena.make_agent("perfect", "tictactoe"), 4,
                            tmp_path / "data", seed=0)
    manifest = json.loads((data / "manifest.json").read_text())
    manifest["shards"] = []
    (data / "manifest.json").write_text(json.dumps(manifest))
    code, _, err = run(["distill", "--game", "tictactoe", "--teacher", "perfect", "--method",
                        "offline", "--dataset", str(data), "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "holds no positions" in err
    assert not (tmp_path / "o").exists()


def test_eval_reports_agreement_with_a_dataset_teacher(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import arena
    from teachers import generate_dataset

    data = generate_dataset("tictactoe", arena.make_agent("perfect", "tictactoe"), 20,
                            tmp_path / "data", seed=0)
    code, out, _ = run(["eval", "--game", "tictactoe", "--agent", "perfect", "--games", "10",
                        "--agreement", str(data), "--json"], capsys)
    assert code == 0
    agreement = json.loads(out)["agreement"]
    assert agreement["teacher"] == "perfect" and agreement["top1"] == 1.0
    code, out, _ = run(["eval", "--game", "tictactoe", "--agent", "random", "--games", "10",
                        "--agreement", str(data), "--json"], capsys)
    assert 0.2 < json.loads(out)["agreement"]["top1"] < 0.9


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["demo", "--out", str(tmp_path / "demo")], capsys)
    assert code == 0
    report = json.loads((tmp_path / "demo" / "report.json").read_text())
    # Perfect play within the preset's budget (every seed gets there with room to spare:
    # scripts/bench_recipes.py); the round it happens at is not part of the contract.
    assert report["final"]["exhaustive_losses"] == 0
    assert report["perfect_at_games"] == report["teacher_games"] <= report["config"][
        "budget_games"]
    assert "final evaluation of" in out
    assert "0 lost lines against every reply" in out


# -- stdout carries only the command's output ------------------------------------------


def test_in_a_command_only_its_output_reaches_stdout(capfd: pytest.CaptureFixture[str]) -> None:
    """What a library prints, what C code writes to fd 1 and what a child process prints
    go to stderr; the command's own output to stdout; afterwards all is as it was."""
    with command_output():
        print("library print")
        sys.stdout.flush()
        os.write(1, b"fd 1 write\n")
        subprocess.run([sys.executable, "-c", "print('child print')"], check=True)
        echo('{"result": 1}')
    out, err = capfd.readouterr()
    assert out == '{"result": 1}\n'
    assert err.split("\n") == ["library print", "fd 1 write", "child print", ""]
    print("after")
    assert capfd.readouterr().out == "after\n"


def _in_session(sid: int) -> set[int]:
    """The live processes of session ``sid`` (a command started in a session of its own,
    Ray's processes with it)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[3]) == sid and fields[0] != "Z":
                found.add(int(entry.name))
    return found


def _command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_eval_json_parses_after_a_ray_worker_is_killed() -> None:
    """kill -9 of a Ray worker mid-run: Ray's note of the dead worker goes to stderr, the
    JSON on stdout parses, and its results are the ones of the same run in-process."""
    args = ["eval", "--game", "connect_four", "--agent", "alphabeta:2", "--opponents",
            "random", "--games", "20000", "--shard-games", "100", "--seed", "11", "--json"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([*TLM, *args, "--workers", "2"], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        victim = None
        deadline = time.monotonic() + 240
        while victim is None and proc.poll() is None and time.monotonic() < deadline:
            workers = sorted(p for p in _in_session(proc.pid)
                             if "ShardWorker" in _command_line(p))
            # Once a worker has played for a while (its start-up is quick to pass).
            if len(workers) == 2 and _cpu_seconds(workers[0]) > 1.0:
                victim = workers[0]
            else:
                time.sleep(0.05)
        assert victim is not None and proc.poll() is None, "no worker to kill mid-run"
        os.kill(victim, signal.SIGKILL)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        for pid in _in_session(proc.pid):  # what a failed run left of Ray
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert proc.returncode == 0, err[-2000:]
    assert "A worker died or was killed" in err  # Ray's note, where it belongs
    report = json.loads(out)
    local = subprocess.run([*TLM, *args], env=env, capture_output=True, text=True, timeout=300)
    assert local.returncode == 0, local.stderr[-2000:]
    assert report == json.loads(local.stdout)
