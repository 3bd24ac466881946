"""Shard plans and runners: the same results in-process and on a real local Ray (2 CPUs)
at 1 and 2 workers, with a worker killed mid-run, and on a head node joined by address;
a DAgger distillation whose rounds play on Ray ends with the same student; bad flags
and unreachable clusters fail with one line."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import students
from arena import (
    LocalRunner,
    MatchTally,
    Pairing,
    RandomAgent,
    RayRunner,
    ShardPlan,
    TlmError,
    evaluate,
    get_game,
    make_agent,
    make_runner,
    play_match_tally,
    play_matches,
    play_matches_many,
    register_payload,
    start_local_ray,
)
from arena.runners import MAX_SHARD_FAILURES, agent_payload, build_agent
from distill import config_with_preset, distill
from distill.players import EpsilonAgent, MixtureAgent, TemperatureAgent
from scripts.cli import main
from teachers import Exploration, TeacherLabeller, collect_positions, generate_dataset
from teachers.datasets import load_dataset

REPO = Path(__file__).resolve().parents[1]
GAME = "connect_four"


@pytest.fixture(scope="module")
def ray_session():
    """One quiet local Ray with 2 CPUs for the whole module, shut down after it."""
    import ray

    if ray.is_initialized():  # pragma: no cover - a previous module left one running
        ray.shutdown()
    start_local_ray(2)
    yield
    ray.shutdown()


def _same(r1, r2) -> None:
    np.testing.assert_array_equal(r1.seat_a, r2.seat_a)
    np.testing.assert_array_equal(r1.returns, r2.returns)
    np.testing.assert_array_equal(r1.length, r2.length)
    np.testing.assert_array_equal(r1.illegal, r2.illegal)
    if r1.records is not None:
        assert all(np.array_equal(x, y) for x, y in zip(r1.records, r2.records, strict=True))


def _same_tally(t1: MatchTally, t2: MatchTally) -> None:
    for name in ("games", "wins", "draws", "losses", "return_a", "illegal_a"):
        np.testing.assert_array_equal(getattr(t1, name), getattr(t2, name))
    assert t1.moves == t2.moves


# ------------------------------------------------------------------ plans, no Ray


def test_shard_plan_sizes_seeds_and_seats() -> None:
    plan = ShardPlan.make(1000, seed=5, shard_games=300, first_seat=1)
    shards = list(plan)
    assert [s.n_games for s in shards] == [300, 300, 300, 100]
    assert [s.start for s in shards] == [0, 300, 600, 900]
    # The global alternation of seats survives odd shard sizes.
    plan_odd = ShardPlan.make(10, seed=0, shard_games=3, first_seat=1)
    seats = np.concatenate([(np.arange(s.n_games) + s.first_seat) % 2 for s in plan_odd])
    np.testing.assert_array_equal(seats, (np.arange(10) + 1) % 2)
    # Every shard plays under the match's seed, its games at their own stream indices.
    match_seed = np.random.SeedSequence(5).generate_state(4).tolist()
    assert all(s.seed.generate_state(4).tolist() == match_seed for s in shards)
    assert [s.first_game for s in shards] == [0, 300, 600, 900]
    tail = ShardPlan.make(10, seed=5, shard_games=4, first_game=20)
    assert [s.first_game for s in tail] == [20, 24, 28]
    # A plan of a trillion games costs nothing until its shards are made.
    huge = ShardPlan.make(10**12, seed=0, shard_games=512)
    assert len(huge) == -(-10**12 // 512)
    assert huge.shard(len(huge) - 1).n_games == 10**12 - 512 * (len(huge) - 1)


def test_sharded_play_is_a_concatenation_of_shards() -> None:
    a, b = make_agent("heuristic", GAME), RandomAgent()
    whole = play_matches(GAME, a, b, 250, seed=3, shard_games=100, record=True)
    assert whole.n_games == 250
    np.testing.assert_array_equal(whole.seat_a, np.arange(250) % 2)
    again = play_matches(GAME, a, b, 250, seed=3, shard_games=100, record=True)
    _same(whole, again)
    # A single-shard match is exactly the match played unsharded under its seed.
    single = play_matches(GAME, a, b, 100, seed=3, shard_games=100)
    bigger_shard = play_matches(GAME, a, b, 100, seed=3, shard_games=4096)
    _same(single, bigger_shard)
    _same_tally(MatchTally.of(whole), play_match_tally(GAME, a, b, 250, seed=3, shard_games=100))


def test_an_observer_sees_match_wide_game_indices_across_shards() -> None:
    a = make_agent("random", "tictactoe")
    seen: dict[int, int] = {}

    def count(d) -> None:
        for g in d.games.tolist():
            seen[g] = seen.get(g, 0) + 1

    r = play_matches("tictactoe", a, a, 50, seed=2, shard_games=16, observer=count)
    assert sorted(seen) == list(range(50))
    assert [seen[g] for g in range(50)] == r.length.tolist()


def test_bad_plans_and_runners() -> None:
    with pytest.raises(TlmError, match="games per shard"):
        ShardPlan.make(10, 0, shard_games=0)
    with pytest.raises(TlmError, match="positive"):
        ShardPlan.make(0, 0)
    with pytest.raises(TlmError, match="--workers"):
        make_runner(0, None)
    with pytest.raises(TlmError, match="--workers"):
        RayRunner(-3)
    with pytest.raises(TlmError, match="too many"):
        play_matches(GAME, RandomAgent(), RandomAgent(), 10**9)
    assert isinstance(make_runner(None, None), LocalRunner)


def test_tally_streams_in_bounded_memory() -> None:
    a = make_agent("random", "tictactoe")
    seen: list[int] = []
    tracemalloc.start()
    try:
        tally = play_match_tally("tictactoe", a, a, 300_000, seed=1, shard_games=2048,
                                 progress=seen.append)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert tally.n_games == 300_000 and int(tally.games[0]) == 150_000
    assert seen[-1] == 300_000 and len(seen) == -(-300_000 // 2048)
    assert all(later - earlier <= 2048 for earlier, later in zip(seen, seen[1:], strict=False))
    # Per-game results for 300k games alone would take over 10 MB; shards of 2048 don't.
    assert peak < 4_000_000, peak


# --------------------------------------------------------------------------- Ray


def test_same_results_local_and_ray_at_1_and_2_workers(ray_session) -> None:
    a, b = make_agent("heuristic", GAME), RandomAgent()
    kwargs = dict(seed=11, shard_games=64, record=True, opening_plies=2)
    local = play_matches(GAME, a, b, 300, **kwargs)
    tally_local = play_match_tally(GAME, a, b, 300, seed=11, shard_games=64, opening_plies=2)
    rows_local = evaluate(GAME, a, [b, make_agent("random", GAME)], 200, seed=2, shard_games=64)
    pairings = [Pairing(a, b, 130, seed=1), Pairing(b, a, 70, seed=2, first_seat=1,
                                                   opening_plies=1)]
    singles = [play_matches(GAME, p.agent_a, p.agent_b, p.n_games, p.seed, record=True,
                            first_seat=p.first_seat, opening_plies=p.opening_plies,
                            shard_games=64) for p in pairings]
    for one, many in zip(singles, play_matches_many(GAME, pairings, record=True,
                                                    shard_games=64), strict=True):
        _same(one, many)
    # With no shard size named, the local runner plays one large shard and Ray about
    # four per worker: the games are the same.
    default_local = play_matches(GAME, a, b, 9000, seed=5, record=True, opening_plies=2)
    for workers in (1, 2):
        progress: list[int] = []
        with RayRunner(workers) as runner:
            assert runner.workers == workers
            assert len(set(runner.worker_pids())) == workers
            default_progress: list[int] = []
            _same(default_local, play_matches(GAME, a, b, 9000, seed=5, record=True,
                                              opening_plies=2, runner=runner,
                                              progress=default_progress.append))
            assert len(default_progress) == (8 if workers == 2 else 4)
            _same(local, play_matches(GAME, a, b, 300, runner=runner, progress=progress.append,
                                      **kwargs))
            _same_tally(tally_local, play_match_tally(
                GAME, a, b, 300, seed=11, shard_games=64, opening_plies=2, runner=runner))
            rows = evaluate(GAME, a, [b, make_agent("random", GAME)], 200, seed=2,
                            shard_games=64, runner=runner)
            many = play_matches_many(GAME, pairings, record=True, shard_games=64,
                                     runner=runner)
            for one, got in zip(singles, many, strict=True):
                _same(one, got)
        assert rows == rows_local
        assert progress == [64, 128, 192, 256, 300]


def test_positions_and_datasets_are_the_same_on_ray(ray_session, tmp_path: Path) -> None:
    teacher = make_agent("perfect", "tictactoe")
    student = students.StudentAgent(students.build_student("mlp:16x1", "tictactoe", 3),
                                    greedy=False)
    dagger = TeacherLabeller(teacher, actor=student, beta=0.5,
                             exploration=Exploration(epsilon=0.1))
    local = collect_positions("tictactoe", dagger, 90, seed=4, game_offset=7, shard_games=20)
    generate_dataset("tictactoe", teacher, 50, tmp_path / "local", seed=1, games_per_shard=20)
    with RayRunner(2) as runner:
        remote = collect_positions("tictactoe", dagger, 90, seed=4, game_offset=7,
                                   shard_games=20, runner=runner)
        generate_dataset("tictactoe", teacher, 50, tmp_path / "ray", seed=1,
                         games_per_shard=20, runner=runner)
    assert len(local) > 0 and local.game_id.min() == 7 and local.game_id.max() == 96
    for name in ("obs", "mask", "probs", "value", "outcome", "action", "game_id", "ply", "seat"):
        np.testing.assert_array_equal(getattr(local, name), getattr(remote, name))
    d_local, d_ray = load_dataset(tmp_path / "local"), load_dataset(tmp_path / "ray")
    np.testing.assert_array_equal(d_local.obs, d_ray.obs)
    np.testing.assert_array_equal(d_local.probs, d_ray.probs)
    np.testing.assert_array_equal(d_local.game_id, d_ray.game_id)


def test_a_killed_worker_has_its_shards_replayed(ray_session) -> None:
    a, b = make_agent("heuristic", GAME), RandomAgent()
    expected = play_matches(GAME, a, b, 480, seed=9, shard_games=40, record=True)
    with RayRunner(2) as runner:
        victim = runner.worker_pids()[0]
        killed: list[int] = []

        def kill_once(done: int) -> None:
            if not killed:
                os.kill(victim, signal.SIGKILL)
                killed.append(done)

        got = play_matches(GAME, a, b, 480, seed=9, shard_games=40, record=True,
                           runner=runner, progress=kill_once)
        assert runner.failures >= 1
        assert victim not in runner.worker_pids()
    assert killed
    _same(expected, got)


class _Misnamed(RandomAgent):
    """Travels by its name, which is no spec: the worker refuses it as bad input."""

    name = "no-such-agent-kind"


def test_bad_input_on_a_worker_is_one_line_and_not_retried(ray_session) -> None:
    with RayRunner(2) as runner:
        with pytest.raises(TlmError) as err:
            play_match_tally(GAME, _Misnamed(), RandomAgent(), 100, runner=runner,
                             shard_games=25)
        assert runner.failures == 0
    assert "unknown agent spec 'no-such-agent-kind'" in str(err.value)
    assert "\n" not in str(err.value)


class _Crasher(RandomAgent):
    """Its worker-side loader kills the worker process: every try of a shard dies."""

    name = "crasher"


def _crash_on_load(data: object, game: object) -> RandomAgent:
    os._exit(3)


def test_a_shard_that_keeps_killing_its_worker_ends_the_run(ray_session) -> None:
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    register_payload(_Crasher, lambda agent: None, _crash_on_load)
    with RayRunner(1) as runner:
        with pytest.raises(TlmError, match=f"failed {MAX_SHARD_FAILURES} times"):
            play_match_tally(GAME, _Crasher(), RandomAgent(), 10, runner=runner)
        assert runner.failures == MAX_SHARD_FAILURES


def _worker_pid(context: object, shard: object) -> int:
    time.sleep(0.5)  # long enough that one worker could not finish both in time
    return os.getpid()


def _no_context(payload: object) -> None:
    return None


def test_as_many_shards_as_workers_run_on_every_worker(ray_session) -> None:
    # Shards go to the workers breadth first: two shards on two workers run side by side
    # (not both queued on the first worker).
    import ray.cloudpickle

    from arena.runners import Job

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    job = Job(work=_worker_pid, context=None, payload=lambda: None, setup=_no_context)
    with RayRunner(2) as runner:
        pids = list(runner.map(job, ShardPlan.make(2, seed=0, shard_games=1)))
    assert len(set(pids)) == 2


# ----------------------------------------------------------------------- distill

DISTILL_FIELDS: dict = dict(
    game="tictactoe", teacher="perfect", student="mlp:32x1", method="dagger",
    budget_games=60, games_per_round=20, seed=3, eval_games=20, eval_opponents=["random"],
    steps_per_round=20, mix={"student": 0.6, "teacher": 0.2, "random": 0.2}, epsilon=0.1,
    opening_plies=0, opening_plies_max=2, temperature=0.5, beta0=0.5,
)
"""Three short DAgger rounds in which every player kind of a round plays: the student
mixed with the teacher (beta 0.5, 0.25, 0.125), the teacher at temperature 0.5 and
``random``, all with random moves and random openings."""

DISTILL_FLAGS = [
    "distill", "--game", "tictactoe", "--teacher", "perfect", "--student", "mlp:32x1",
    "--method", "dagger", "--budget-games", "60", "--games-per-round", "20", "--seed", "3",
    "--eval-games", "20", "--eval-opponents", "random", "--steps-per-round", "20",
    "--mix", "student=0.6,teacher=0.2,random=0.2", "--epsilon", "0.1", "--opening-plies",
    "0", "--opening-plies-max", "2", "--temperature", "0.5", "--beta0", "0.5",
]
"""The same run as :data:`DISTILL_FIELDS`, as ``tlm distill`` flags."""

CLOCKS = {"play_s", "label_s", "fit_s", "eval_s", "wall_s"}


def _curve(out: Path) -> list[dict[str, str]]:
    with open(out / "curve.csv") as f:
        return [{k: v for k, v in row.items() if k not in CLOCKS} for row in csv.DictReader(f)]


def _weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(out / "student" / "model.safetensors")


def test_distill_players_rebuilt_from_payloads_play_the_same_games() -> None:
    g = "tictactoe"
    teacher = make_agent("perfect", g)
    student = students.StudentAgent(students.build_student("mlp:16x1", g, 2), greedy=True)
    mixed = EpsilonAgent(MixtureAgent(teacher, student, 0.4, get_game(g)), 0.2)
    hot = EpsilonAgent(TemperatureAgent(teacher, 0.5), 0.1)
    for a, b in ((mixed, mixed), (hot, mixed), (mixed, make_agent("random", g))):
        rebuilt_a = build_agent(agent_payload(a), get_game(g))
        rebuilt_b = rebuilt_a if b is a else build_agent(agent_payload(b), get_game(g))
        assert (rebuilt_a.name, rebuilt_b.name) == (a.name, b.name)
        assert type(rebuilt_a) is type(a) and rebuilt_a.needs_state == a.needs_state
        kwargs = dict(seed=7, record=True, opening_plies=1, shard_games=16)
        _same(play_matches(g, a, b, 40, **kwargs),
              play_matches(g, rebuilt_a, rebuilt_b, 40, **kwargs))


def test_distill_rounds_on_ray_end_with_the_same_student(
    ray_session, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    jobs: list[int] = []
    map_many = RayRunner.map_many

    def counted(self, batch):
        jobs.append(len(batch))
        return map_many(self, batch)

    monkeypatch.setattr(RayRunner, "map_many", counted)
    config = config_with_preset(None, **DISTILL_FIELDS, out=tmp_path / "local")
    distill(config)
    assert not jobs
    with RayRunner(2) as runner:
        distill(config.model_copy(update={"out": tmp_path / "ray"}), runner=runner)
    # One queue of shards a round, holding a match for each player and opening length.
    assert len(jobs) == 3 and min(jobs) >= 3
    assert main([*DISTILL_FLAGS, "--out", str(tmp_path / "cli"), "--workers", "2"]) == 0
    assert jobs[3:] == jobs[:3]
    report = json.loads((tmp_path / "cli" / "report.json").read_text())
    assert {**report["config"], "out": ""} == {**config.model_dump(mode="json"), "out": ""}
    local = _weights(tmp_path / "local")
    for run in ("ray", "cli"):
        got = _weights(tmp_path / run)
        assert got.keys() == local.keys()
        assert all(torch.equal(got[k], local[k]) for k in local), run
        assert _curve(tmp_path / run) == _curve(tmp_path / "local"), run
    assert len(_curve(tmp_path / "local")) == 3


def test_expert_iteration_on_ray_ends_with_the_same_student(
    ray_session, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Same seed -> the same generation, whether the self-play games are played here or
    # cut into shards over 1 or 2 workers (small shards, so that they are cut).
    from arena.runners import auto_shard_games
    from distill.iterate import iterate
    from distill.iterate_config import make_iterate_config
    from teachers.mcts.labeller import SearchLabeller

    monkeypatch.setattr(SearchLabeller, "min_shard_games", 4)
    fields = {"game": "tictactoe", "student": "mlp:16x1", "simulations": 8,
              "games_per_iteration": 32, "gate_games": 10, "eval_games": 10,
              "panel": ["random"], "iterations": 2, "seed": 3}
    iterate(make_iterate_config(**fields, out=tmp_path / "local"))
    for workers in (1, 2):
        with RayRunner(workers) as runner:
            assert auto_shard_games(32, runner, 1024, 4) == 4 if workers == 2 else 8
            iterate(make_iterate_config(**fields, out=tmp_path / f"ray{workers}"),
                    runner=runner)
        got, local = _weights(tmp_path / f"ray{workers}"), _weights(tmp_path / "local")
        assert all(torch.equal(got[k], local[k]) for k in local), workers
        def measures(run: str) -> list[dict[str, str]]:
            return [{k: v for k, v in row.items() if not k.endswith("_s")}
                    for row in _curve(tmp_path / run)]

        assert measures(f"ray{workers}") == measures("local"), workers


# --------------------------------------------------------------------------- CLI


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_cli_refuses_bad_workers_and_unreachable_clusters(capsys) -> None:
    args = ["eval", "--game", "tictactoe", "--agent", "random", "--games", "10"]
    for bad in ("0", "-2"):
        assert main([*args, "--workers", bad]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and "--workers" in err and err.count("\n") == 1
    start = time.monotonic()
    assert main([*args, "--ray-address", f"127.0.0.1:{_free_port()}"]) == 2
    assert time.monotonic() - start < 30
    err = capsys.readouterr().err
    assert err.startswith("error: cannot reach a Ray cluster at 127.0.0.1:")
    assert err.count("\n") == 1
    assert main([*args, "--ray-address", "nonsense"]) == 2
    assert capsys.readouterr().err.startswith("error: --ray-address must be")
    # Sane upper bounds instead of a MemoryError; any count up to them streams.
    for flag, value in (("--games", str(10**13)), ("--shard-games", "0"),
                        ("--shard-games", str(10**7)), ("--workers", "100000")):
        assert main([*args[:-2], flag, value]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and flag in err and err.count("\n") == 1


def test_cli_distill_refuses_bad_workers_and_clusters(capsys, tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = [*DISTILL_FLAGS, "--out", str(out)]
    for extra, problem in ((["--workers", "0"], "--workers"),
                           (["--workers", "-2"], "--workers"),
                           (["--workers", "100000"], "--workers"),
                           (["--ray-address", "nonsense"], "--ray-address must be"),
                           (["--ray-address", " "], "--ray-address is empty"),
                           (["--ray-address", f"127.0.0.1:{_free_port()}"],
                            "cannot reach a Ray cluster")):
        assert main([*args, *extra]) == 2, extra
        err = capsys.readouterr().err
        assert err.startswith("error: ") and problem in err and err.count("\n") == 1, err
        assert list(tmp_path.iterdir()) == []


def _processes_under(path: str) -> set[int]:
    """Processes whose command line names ``path``, and all their descendants."""
    found: set[int] = set()
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            stat = (entry / "stat").read_text()
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if path in cmd:
            found.add(int(entry.name))
    grew = True
    while grew:
        children = {pid for pid, ppid in parents.items() if ppid in found} - found
        found |= children
        grew = bool(children)
    return found


def _stop_processes(pids: set[int]) -> None:
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            pids = {p for p in pids if _running(p)}
            if not pids:
                return
            time.sleep(0.2)


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def test_cli_joins_a_head_node_by_address_with_the_same_numbers(tmp_path: Path) -> None:
    port = _free_port()
    temp_dir = tempfile.mkdtemp(prefix="tlm-ray-", dir="/tmp")  # short: Ray's socket paths
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
           "OMP_NUM_THREADS": "1"}
    ray_bin = str(Path(sys.executable).with_name("ray"))
    try:
        subprocess.run(
            [ray_bin, "start", "--head", "--port", str(port), "--num-cpus", "2",
             "--temp-dir", temp_dir, "--include-dashboard=false", "--disable-usage-stats"],
            env=env, check=True, capture_output=True, timeout=120,
        )
        args = ["eval", "--game", GAME, "--agent", "heuristic", "--opponents", "random",
                "--games", "300", "--seed", "5", "--json"]
        done = subprocess.run(
            [sys.executable, "-m", "scripts.cli", *args, "--ray-address", f"127.0.0.1:{port}"],
            env=env, cwd=REPO, capture_output=True, text=True, timeout=180,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        joined = json.loads(done.stdout)
    finally:
        # The head's client server names the head's address (--address=IP:PORT --host=IP),
        # not the temp dir.
        _stop_processes(_processes_under(temp_dir) | _processes_under(f":{port} --host="))
        subprocess.run(["rm", "-rf", temp_dir], check=False)
    assert not {p for p in _processes_under(temp_dir) | _processes_under(f":{port} --host=")
                if _running(p)}
    local = evaluate(GAME, make_agent("heuristic", GAME), [RandomAgent()], 300, seed=5)
    assert joined["results"] == [r.as_json() for r in local]
