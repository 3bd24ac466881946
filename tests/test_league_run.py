"""The league loop and ``tlm league run``: config validation that writes nothing, the
same seed giving the same league, resuming after kill -9 and after Ctrl-C, and a
short league that learns."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from arena.ratings import MatchRecord, elo_ratings
from scripts.cli import main
from teachers.league import LeagueStore, load_config, parse_config, run_league

ROOT = Path(__file__).resolve().parents[1]
TLM = [sys.executable, "-m", "scripts.cli"]

TINY: dict[str, Any] = {
    "game": "tictactoe",
    "seed": 5,
    "learners": [{
        "name": "main",
        "net_arch": [32, 32],
        "n_envs": 4,
        "ppo": {"n_steps": 64, "batch_size": 128, "n_epochs": 4},
        "steps_per_round": 512,
        "snapshot_every": 1024,
    }],
    "references": ["random", "heuristic"],
    "evaluation": {"games_per_pair": 40, "snapshots_per_learner": 1},
    "stop": {"max_rounds": 6},
}
"""A league small enough to run in a few seconds; rounds 0..5, a snapshot every other."""


def tiny_matches(rounds: int) -> int:
    """Matches of TINY after ``rounds`` rounds: two references per round, plus one
    snapshot from round 1 on (the first is taken in round 1, before its matches)."""
    return 2 * rounds + max(0, rounds - 1)


def write_config(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


def log_of(directory: Path) -> list[tuple[Any, ...]]:
    """The match log without its timestamps and ids."""
    with LeagueStore.open(directory, readonly=True) as store:
        return [(m.key, m.round, m.agent_a, m.agent_b, m.seed, m.games, m.a_first, m.a_second)
                for m in store.matches()]


def check_consistent(directory: Path, rounds: int) -> list[MatchRecord]:
    """Keys unique, the expected number of matches, stored ratings equal to the log's,
    and the learner's step counter at exactly ``rounds`` rounds of training."""
    with LeagueStore.open(directory, readonly=True) as store:
        matches = store.matches()
        keys = [m.key for m in matches]
        assert len(keys) == len(set(keys)) == tiny_matches(rounds)
        assert sorted({m.round for m in matches}) == list(range(rounds))
        names = [a.name for a in store.agents()]
        recomputed = elo_ratings(matches, anchor=["random", "heuristic"], names=names)
        stored = store.get_state("ratings")
        assert stored == {n: [r.elo, r.lo, r.hi, r.games] for n, r in recomputed.items()}
        assert store.get_state("round") == rounds
        state = store.get_state("learner/main")
        assert state["total_steps"] == rounds * TINY["learners"][0]["steps_per_round"]
        assert state["checkpoint"] == f"learners/main/r{rounds:06d}"
        return matches


@pytest.fixture(scope="module")
def reference_league(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """TINY run once to the end, in this process."""
    directory = tmp_path_factory.mktemp("league") / "ref"
    outcome = run_league(parse_config(TINY), directory)
    assert outcome.stopped_by == "max_rounds" and outcome.rounds == 6
    return directory


# -- bad configs -------------------------------------------------------------------------


def _with(change: dict[str, Any], learner: dict[str, Any] | None = None) -> dict[str, Any]:
    config = {**TINY, **change}
    if learner is not None:
        config["learners"] = [{**TINY["learners"][0], **learner}]
    return config


BAD_CONFIGS = {
    "unknown key": (_with({"rounds": 3}), "rounds: unknown key"),
    "unknown learner key": (_with({}, {"lr": 0.1}), "learners.0.lr: unknown key"),
    "unknown matchmaking": (_with({}, {"matchmaking": "elo"}), "matchmaking"),
    "negative steps": (_with({}, {"steps_per_round": -5}), "steps_per_round"),
    "negative games": (_with({"evaluation": {"games_per_pair": -1}}), "games_per_pair"),
    "negative snapshots": (_with({"evaluation": {"snapshots_per_learner": -2}}),
                           "snapshots_per_learner"),
    "zero rounds": (_with({"stop": {"max_rounds": 0}}), "max_rounds"),
    "reference of another game": (_with({"references": ["random", "alphabeta:2"]}),
                                  "alphabeta:2"),
    "unknown game": (_with({"game": "hex"}), "hex"),
    "duplicate names": (_with({"references": ["random", "main"]}), "unique"),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_config_exits_2_and_writes_nothing(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, expected = BAD_CONFIGS[case]
    path = write_config(tmp_path / "league.yaml", config)
    new_dir, empty_dir = tmp_path / "new", tmp_path / "empty"
    empty_dir.mkdir()
    for directory in (new_dir, empty_dir):
        code = main(["league", "run", "--config", str(path), "--dir", str(directory), "--quiet"])
        out, err = capsys.readouterr()
        assert code == 2
        assert err.startswith("error: ") and err.count("\n") == 1 and expected in err, err
        assert out == ""
    assert not new_dir.exists()
    assert list(empty_dir.iterdir()) == []


def test_yaml_errors_and_examples(tmp_path: Path) -> None:
    from arena import TlmError

    bad = tmp_path / "bad.yaml"
    bad.write_text("game: [tictactoe\n")
    with pytest.raises(TlmError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(TlmError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    for name in ("league_tictactoe.yaml", "league_connect_four.yaml"):
        config = load_config(ROOT / "configs" / name)
        assert config.learners and config.references[0].name == "random"


def test_other_config_on_existing_league_is_refused(
    reference_league: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = (reference_league / "league.db").read_bytes()
    path = write_config(tmp_path / "other.yaml", {**TINY, "seed": 6})
    code = main(["league", "run", "--config", str(path), "--dir", str(reference_league)])
    assert code == 2 and "another config" in capsys.readouterr().err
    assert (reference_league / "league.db").read_bytes() == before
    # A finished league run again with the same config has nothing left to do.
    log = log_of(reference_league)
    path = write_config(tmp_path / "same.yaml", TINY)
    assert main(["league", "run", "--config", str(path), "--dir", str(reference_league),
                 "--quiet"]) == 0
    assert "after 6 rounds" in capsys.readouterr().out
    assert log_of(reference_league) == log


# -- determinism and resume --------------------------------------------------------------


def test_same_seed_same_league(reference_league: Path, tmp_path: Path) -> None:
    check_consistent(reference_league, 6)
    config = parse_config({**TINY, "stop": {"max_rounds": 3}})
    run_league(config, tmp_path / "again")
    # Three rounds, then resumed in a second call for the other three.
    run_league(parse_config(TINY), tmp_path / "again")
    assert log_of(tmp_path / "again") == log_of(reference_league)
    with LeagueStore.open(reference_league, readonly=True) as store:
        snapshots = [a.name for a in store.agents("snapshot")]
        assert snapshots == ["main-r0001", "main-r0003", "main-r0005"]
        assert all(store.verify(s).parent == "main" for s in snapshots)


def _start(config: Path, directory: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [*TLM, "league", "run", "--config", str(config), "--dir", str(directory), "--quiet"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )


def _matches_written(directory: Path) -> int:
    if not (directory / "league.db").is_file():
        return 0
    try:
        with LeagueStore.open(directory, readonly=True) as store:
            return len(store.matches())
    except Exception:  # the database is being created
        return 0


def test_kill_9_at_random_moments_then_resume(reference_league: Path, tmp_path: Path) -> None:
    """Three kill -9s, each a random moment after the run wrote a match no earlier run
    had written, so every kill lands while the league runs, on any machine's speed."""
    config = write_config(tmp_path / "league.yaml", TINY)
    directory = tmp_path / "killed"
    rng = np.random.default_rng(2024)
    killed_running = 0
    for delay in rng.uniform(0.0, 0.5, size=3):
        seen = _matches_written(directory)
        proc = _start(config, directory)
        try:
            deadline = time.monotonic() + 120
            while proc.poll() is None and time.monotonic() < deadline:
                if _matches_written(directory) > seen:
                    time.sleep(float(delay))
                    break
                time.sleep(0.01)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                killed_running += 1
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            proc.stdout.close()  # type: ignore[union-attr]
            proc.stderr.close()  # type: ignore[union-attr]
    proc = _start(config, directory)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()
    assert b"league stopped (max_rounds) after 6 rounds" in out
    check_consistent(directory, 6)
    # The redone rounds are exactly the ones never interrupted.
    assert log_of(directory) == log_of(reference_league)
    assert killed_running == 3  # every kill landed while the league ran


def test_ctrl_c_stops_after_the_match_and_resumes(reference_league: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path / "league.yaml", TINY)
    directory = tmp_path / "interrupted"
    proc = _start(config, directory)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if (directory / "league.db").exists():
                with LeagueStore.open(directory, readonly=True) as store:
                    if store.totals()[0] >= 1:
                        break
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err.decode()
    assert b"resume with: tlm league run --config" in out
    assert b"Traceback" not in err
    proc = _start(config, directory)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()
    assert log_of(directory) == log_of(reference_league)


def _tree(directory: Path) -> list[tuple[str, int, int, bytes]]:
    """Every path under ``directory`` with its mode, size, mtime and (files) contents."""
    rows = []
    for path in sorted(directory.rglob("*")):
        st = path.lstat()
        data = path.read_bytes() if path.is_file() else b""
        rows.append((path.relative_to(directory).as_posix(), st.st_mode, st.st_mtime_ns, data))
    return rows


def test_one_writer_per_league_and_a_dead_one_does_not_block(
    reference_league: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A second ``tlm league run`` on a live league exits 2 naming the first one's pid and
    touches nothing, while status and report still read it; once the first is killed
    with kill -9, its lock file (left behind) does not block the next run."""
    from arena.runstate import lock_path

    config = write_config(tmp_path / "league.yaml", TINY)
    directory = tmp_path / "busy"
    first = _start(config, directory)
    try:
        deadline = time.monotonic() + 120
        while first.poll() is None and time.monotonic() < deadline:
            if _matches_written(directory) >= 1:
                break
            time.sleep(0.02)
        assert first.poll() is None, first.communicate()[1].decode()
        # Stopped, the first run changes nothing while the second one tries.
        first.send_signal(signal.SIGSTOP)
        before = _tree(directory)
        second = subprocess.run(
            [*TLM, "league", "run", "--config", str(config), "--dir", str(directory),
             "--quiet"], cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert second.returncode == 2, second.stderr
        assert second.stderr.startswith("error: ") and second.stderr.count("\n") == 1
        assert f"is being written by pid {first.pid}" in second.stderr, second.stderr
        assert second.stdout == ""
        assert _tree(directory) == before
        assert main(["league", "status", "--dir", str(directory), "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["matches"] >= 1
        (tmp_path / "report").mkdir()
        assert main(["league", "report", "--dir", str(directory),
                     "--out", str(tmp_path / "report")]) == 0
        assert (tmp_path / "report" / "report.html").is_file()
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
        first.stdout.close()  # type: ignore[union-attr]
        first.stderr.close()  # type: ignore[union-attr]
    assert str(first.pid) in lock_path(directory).read_text()  # the dead run's lock
    proc = _start(config, directory)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()
    assert not lock_path(directory).exists()
    check_consistent(directory, 6)
    assert log_of(directory) == log_of(reference_league)


# -- learning ----------------------------------------------------------------------------


@pytest.mark.slow
def test_short_league_beats_random_more_often(tmp_path: Path) -> None:
    from arena import evaluate, get_game, make_agent
    from teachers.sb3 import SB3Learner, load_sb3_agent

    config = {
        "game": "tictactoe",
        "seed": 0,
        "learners": [{"name": "main", "net_arch": [64, 64], "n_envs": 8,
                      "steps_per_round": 8192, "snapshot_every": 16384}],
        "references": ["random", "heuristic"],
        "evaluation": {"games_per_pair": 40, "snapshots_per_learner": 1},
        "stop": {"max_rounds": 5},
    }
    directory = tmp_path / "learn"
    outcome = run_league(parse_config(config), directory)
    assert outcome.rounds == 5
    game = get_game("tictactoe")
    random = make_agent("random", game)
    final = load_sb3_agent(directory / "learners/main/r000005/policy/model.zip", game)
    fresh = SB3Learner("fresh", game, seed=0, net_arch=(64, 64)).agent()
    with LeagueStore.open(directory, readonly=True) as store:
        ratings = store.get_state("ratings")
    before = evaluate(game, fresh, [random], 400, seed=1)[2].score
    after = evaluate(game, final, [random], 400, seed=1)[2].score
    # Seeds 0-2 of this league went from 0.52-0.63 to 0.84-0.91 against random: the
    # bounds keep a margin on every seed tried, not one seed's trajectory.
    assert after > before + 0.15 and after > 0.75, (before, after)
    assert ratings["main"][1] > 0, ratings  # its Elo interval lies above random's (0)


def test_rating_matches_on_ray_give_the_same_log(
    reference_league: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path / "league.yaml", {**TINY, "stop": {"max_rounds": 2}})
    directory = tmp_path / "ray"
    code = main(["league", "run", "--config", str(path), "--dir", str(directory), "--quiet",
                 "--workers", "2"])
    assert code == 0, capsys.readouterr().err
    assert log_of(directory) == [m for m in log_of(reference_league) if m[1] < 2]


@pytest.mark.slow
def test_a_league_mixes_sb3_and_rllib_learners_and_resumes(tmp_path: Path) -> None:
    """An SB3 and an RLlib learner in one league: both train, are snapshotted and rated,
    and a second process resumes both to the log and weights of a league never stopped."""
    from arena import make_agent

    rl = {**TINY["learners"][0], "name": "rl", "backend": "rllib"}
    config = {**TINY, "learners": [TINY["learners"][0], rl]}
    directory = tmp_path / "mixed"
    for rounds in (1, 2):
        path = write_config(tmp_path / f"r{rounds}.yaml",
                            {**config, "stop": {"max_rounds": rounds}})
        proc = _start(path, directory)
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode()
    with LeagueStore.open(directory, readonly=True) as store:
        assert store.get_state("round") == 2
        assert sorted({m.round for m in store.matches()}) == [0, 1]
        specs = {a.name: a.spec for a in store.agents()}
        steps = {n: store.get_state(f"learner/{n}")["total_steps"] for n in ("main", "rl")}
    assert specs["main"].startswith("sb3:") and specs["rl"].startswith("rllib:")
    assert specs["main-r0001"].startswith("sb3:") and specs["rl-r0001"].startswith("rllib:")
    assert steps["main"] == 1024 and steps["rl"] >= 1024, steps
    proc = subprocess.run([*TLM, "league", "status", "--dir", str(directory), "--json"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    status = json.loads(proc.stdout)
    rated = {a["name"]: a for a in status["agents"]}
    assert {"main", "rl", "main-r0001", "rl-r0001", "random", "heuristic"} <= set(rated)
    assert all(rated[n]["games"] > 0 for n in ("main", "rl", "rl-r0001"))
    whole = tmp_path / "whole"
    proc = _start(write_config(tmp_path / "whole.yaml", {**config, "stop": {"max_rounds": 2}}),
                  whole)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()
    assert log_of(directory) == log_of(whole)
    for learner in ("main", "rl"):
        # Weights and optimizer state: safetensors (RLlib), torch's params.pt (SB3).
        files = sorted(p.relative_to(whole) for p in (whole / "learners" / learner / "r000002")
                       .rglob("*") if p.suffix in (".safetensors", ".pt"))
        assert files
        assert all((whole / f).read_bytes() == (directory / f).read_bytes() for f in files), \
            learner
    # The RLlib snapshot plays anywhere an agent plays, without a running Ray.
    agent = make_agent(f"league:{directory}/rl-r0001", "tictactoe")
    assert agent.name
