"""The RLlib learner on a real local Ray (2 CPUs, no dashboard) and real RLlib PPO on
tic-tac-toe: frozen slots act with their snapshot's weights after every change, saved
``rllib:`` checkpoints reload to identical policies and refuse damage with exit code 2,
same seed gives the same weights, and a short seeded run beats ``random`` by more than
the untrained policy does. ``tlm teach --algo rllib_ppo`` checkpoints every round: stopped
between rounds it resumes to the run never stopped, and killed with ``kill -9`` or
interrupted with Ctrl-C it goes on from its last checkpoint, leaving no Ray process."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

import arena
from arena.agents import RandomAgent
from arena.runstate import ResumeRefusedError, staging_path
from scripts.cli import main
from teachers.rllib.checkpoint import RLlibAgent, build_module, load_rllib_agent
from teachers.rllib.env import MAIN, slot_id
from teachers.rllib.learner import RLlibLearner
from teachers.rllib.settings import RLlibPPOSettings, rllib_plan
from teachers.selfplay import SelfPlayConfig, run_selfplay

# One worker runs them all under `pytest -n N --dist loadgroup`: each starts a Ray.
pytestmark = pytest.mark.xdist_group("rllib")

SMALL = RLlibPPOSettings(
    hidden=[32, 32], train_batch_size=256, minibatch_size=128, num_epochs=2,
    num_envs_per_env_runner=4, n_slots=2,
)


@pytest.fixture(scope="module")
def ray_session() -> Iterator[None]:
    """One quiet local Ray for the whole module, stopped at the end."""
    import ray

    from arena.runners import start_local_ray

    started = not ray.is_initialized()
    if started:
        start_local_ray(2)
    yield
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def learner(ray_session: None) -> Iterator[RLlibLearner]:
    rl = RLlibLearner("main", "tictactoe", seed=0, settings=SMALL)
    yield rl
    rl.close()


def _positions(n: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Observations and masks of positions reached by random play."""
    engine = arena.make_engine("tictactoe")
    rng = np.random.default_rng(0)
    state = engine.reset(n, seed=0)
    obs_all, mask_all = [], []
    for _ in range(5):
        obs, mask = engine.observe(state)
        live = ~engine.done(state)
        obs_all.append(np.array(obs[live]))
        mask_all.append(np.array(mask[live]))
        state, _, _ = engine.step(state, arena.uniform_legal(mask, rng))
    return np.concatenate(obs_all), np.concatenate(mask_all)


def _fresh_agent(seed: int) -> RLlibAgent:
    """An RLlib agent of the learner's architecture with its own random weights."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = build_module(SMALL.model_config_dict(), "tictactoe")
    return RLlibAgent(module, "tictactoe", SMALL.model_config_dict(), greedy=False,
                      name=f"fresh{seed}")


def _assert_slot_holds(rl: RLlibLearner, slot: str, agent: RLlibAgent) -> None:
    want = {k: v.numpy() for k, v in agent.state_dict().items()}
    learner_side = rl.algo.learner_group.get_weights([slot])[slot]
    assert set(learner_side) == set(want)
    for k, v in want.items():
        np.testing.assert_array_equal(learner_side[k], v)
    acting = rl.acting_weights(slot)
    assert acting, "no env runner acts for the slot"
    for runner_weights in acting:
        assert runner_weights, "empty acting weights"
        for k, v in runner_weights.items():  # inference-only: a subset of the keys
            np.testing.assert_array_equal(v, want[k])


def test_slots_act_with_the_snapshot_weights_after_every_change(learner: RLlibLearner) -> None:
    a, b = _fresh_agent(1), _fresh_agent(2)
    learner.train(100, [a, RandomAgent()])
    _assert_slot_holds(learner, slot_id(0), a)  # after an update re-synced the slots
    learner.train(100, [b, a])  # the slots change: opp_0 <- b, opp_1 <- a
    _assert_slot_holds(learner, slot_id(0), b)
    _assert_slot_holds(learner, slot_id(1), a)
    learner.set_slot(slot_id(1), b.state_dict())
    _assert_slot_holds(learner, slot_id(1), b)  # before any training step too
    # The trained module moved on, the frozen ones did not.
    main = learner.algo.learner_group.get_weights([MAIN])[MAIN]
    assert any(not np.array_equal(v, b.state_dict()[k].numpy()) for k, v in main.items())


def test_train_report_and_inside_opponents(learner: RLlibLearner) -> None:
    perfect = arena.make_agent("perfect", "tictactoe")
    report = learner.train(200, [perfect])
    assert report.steps >= 200 and report.games > 0
    assert set(report.win_rate) == {"perfect"}
    assert report.win_rate["perfect"] <= 0.5  # nobody beats perfect play


def test_league_config_learner_trains_against_an_sb3_agent(ray_session: None) -> None:
    from sb3_contrib import MaskablePPO

    from teachers.league import LearnerConfig, PPOConfig
    from teachers.league.learners import make_learner
    from teachers.sb3 import ArenaGymEnv, SB3Agent

    config = LearnerConfig(name="rl", backend="rllib", net_arch=[16], n_envs=2,
                           ppo=PPOConfig(n_steps=32, batch_size=32, n_epochs=1,
                                         learning_rate=3e-4))
    rl = make_learner(config, arena.get_game("tictactoe"), Path("."), 0)
    assert isinstance(rl, RLlibLearner)
    try:
        assert rl.settings.train_batch_size == 64 and rl.settings.minibatch_size == 32
        assert rl.settings.hidden == [16] and rl.settings.lr == 3e-4
        model = MaskablePPO("MlpPolicy", ArenaGymEnv("tictactoe"), seed=0, device="cpu",
                            policy_kwargs={"net_arch": [8]})
        sb3 = SB3Agent(model, game="tictactoe", greedy=False, name="sb3-snapshot")
        report = rl.train(60, [sb3])
        assert report.games > 0 and set(report.win_rate) == {"sb3-snapshot"}
    finally:
        rl.close()


def test_snapshot_reloads_to_identical_policies(learner: RLlibLearner, tmp_path: Path) -> None:
    spec = learner.snapshot(tmp_path / "snap")
    assert spec == f"rllib:{tmp_path / 'snap'}"
    config = json.loads((tmp_path / "snap" / "config.json").read_text())
    assert config["model_config"]["fcnet_hiddens"] == [32, 32]
    assert config["module_class"] == "MaskedPPOTorchRLModule"
    loaded = arena.make_agent(spec, "tictactoe")
    live = learner.agent()
    obs, mask = _positions()
    assert isinstance(loaded, RLlibAgent) and isinstance(live, RLlibAgent)
    np.testing.assert_array_equal(loaded.policy(obs, mask), live.policy(obs, mask))
    np.testing.assert_array_equal(loaded.value(obs, mask), live.value(obs, mask))
    probs = loaded.policy(obs, mask)
    assert (probs[mask == 0] == 0).all()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    # The live agent travels to Ray workers as data (its weights), and plays the same.
    from arena.runners import agent_payload, build_agent

    shipped = build_agent(agent_payload(live), arena.get_game("tictactoe"))
    assert isinstance(shipped, RLlibAgent)
    np.testing.assert_array_equal(shipped.policy(obs, mask), live.policy(obs, mask))


def test_restore_continues_exactly(learner: RLlibLearner, tmp_path: Path) -> None:
    learner.save(tmp_path / "state")
    saved = learner.main_weights()
    steps = learner.total_steps
    opponents = [RandomAgent(), _fresh_agent(3)]
    first = learner.train(100, opponents)
    after_first = learner.main_weights()
    learner.restore(tmp_path / "state")
    assert learner.total_steps == steps
    for k, v in learner.main_weights().items():
        np.testing.assert_array_equal(v, saved[k])
    second = learner.train(100, opponents)
    assert (second.steps, second.games, second.win_rate) == (
        first.steps, first.games, first.win_rate)
    for k, v in learner.main_weights().items():
        np.testing.assert_array_equal(v, after_first[k])
    obs, mask = _positions(8)
    live = learner.agent()
    assert isinstance(live, RLlibAgent)
    np.testing.assert_array_equal(live.logits(obs, mask), learner.frozen_agent().logits(obs, mask))


def _rewrite_weights(path: Path, change: str) -> None:
    tensors = load_safetensors((path / "model.safetensors").read_bytes())
    name = sorted(tensors)[0]
    if change == "missing":
        del tensors[name]
    else:
        tensors[name] = torch.zeros(tuple(s + 1 for s in tensors[name].shape))
    data = save_safetensors(tensors)
    (path / "model.safetensors").write_bytes(data)
    config = json.loads((path / "config.json").read_text())
    config["weights_sha256"] = hashlib.sha256(data).hexdigest()
    (path / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize("change", ["missing", "mismatched", "partial_config", "other_game"])
def test_bad_checkpoints_exit_2(
    learner: RLlibLearner, tmp_path: Path, change: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "ckpt"
    learner.snapshot(path)
    game = "tictactoe"
    if change in ("missing", "mismatched"):
        _rewrite_weights(path, change)
    elif change == "partial_config":
        config = json.loads((path / "config.json").read_text())
        config["model_config"] = {"fcnet_hiddens": [32, 32]}
        (path / "config.json").write_text(json.dumps(config))
    else:
        game = "connect_four"
    code = main(["eval", "--game", game, "--agent", f"rllib:{path}", "--opponents", "random",
                 "--games", "10"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
    expected = {"missing": "missing tensors", "mismatched": "has shape",
                "partial_config": "model_config lacks", "other_game": "plays tictactoe"}[change]
    assert expected in err


def test_same_seed_same_weights(ray_session: None) -> None:
    settings = RLlibPPOSettings(hidden=[16], train_batch_size=128, minibatch_size=64,
                                num_epochs=1, num_envs_per_env_runner=2)
    weights = []
    for _ in range(2):
        rl = RLlibLearner("main", "tictactoe", seed=3, settings=settings)
        try:
            rl.train(100, [RandomAgent(), rl.frozen_agent()])
            weights.append(rl.main_weights())
        finally:
            rl.close()
    assert set(weights[0]) == set(weights[1])
    for k, v in weights[0].items():
        np.testing.assert_array_equal(v, weights[1][k])


@pytest.mark.slow
def test_teach_rllib_beats_random_better_than_untrained(
    ray_session: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "rl"
    code = main(["teach", "--game", "tictactoe", "--algo", "rllib_ppo", "--steps", "12000",
                 "--seed", "0", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    assert f"rllib:{out / 'main'}" in capsys.readouterr().out
    game = arena.get_game("tictactoe")
    first = sorted((out / "snapshots").iterdir())[0]
    untrained = load_rllib_agent(first, game)
    trained = load_rllib_agent(out / "main", game)
    scores = {}
    for name, agent in (("untrained", untrained), ("trained", trained)):
        rows = arena.evaluate(game, agent, [RandomAgent()], 400, seed=1)
        scores[name] = next(r.score for r in rows if r.seat == "both")
    assert scores["trained"] >= scores["untrained"] + 0.2, scores
    assert scores["trained"] >= 0.65, scores
    code = main(["eval", "--game", "tictactoe", "--agent", f"rllib:{out / 'main'}",
                 "--opponents", "random,perfect", "--games", "50"])
    assert code == 0


def _curve(out: Path) -> list[dict[str, str]]:
    """The rows of ``progress.csv`` without their wall time."""
    import csv

    with (out / "progress.csv").open() as f:
        return [{k: v for k, v in row.items() if k != "wall_s"} for row in csv.DictReader(f)]


def _selfplay(out: Path, seed: int, **kwargs: Any) -> dict[str, Any]:
    """``tlm teach --algo rllib_ppo``'s loop with the small settings: 640 steps (five
    rounds of 128 learner moves or more), a snapshot every 256."""
    config = SelfPlayConfig(steps=640, seed=seed, snapshot_every=256, eval_games=0)
    return run_selfplay(rllib_plan("tictactoe", seed, SMALL), "tictactoe", out, config,
                        **kwargs)


def test_selfplay_stopped_between_rounds_resumes_to_the_run_never_stopped(
    ray_session: None, tmp_path: Path
) -> None:
    plain = _selfplay(tmp_path / "plain", 3)
    asked = 0

    def stop() -> bool:
        nonlocal asked
        asked += 1
        return asked == 2

    with pytest.raises(KeyboardInterrupt):
        _selfplay(tmp_path / "run", 3, resume=True, stop=stop)
    state = json.loads((tmp_path / "run" / "checkpoint" / "state.json").read_text())
    assert len(state["rows"]) == 2 and not state["finished"]
    kept = sorted(str(p.relative_to(tmp_path / "run")) for p in (tmp_path / "run").rglob("*"))
    with pytest.raises(ResumeRefusedError, match=r"other settings \(seed\)"):
        _selfplay(tmp_path / "run", 4, resume=True)
    assert kept == sorted(str(p.relative_to(tmp_path / "run"))
                          for p in (tmp_path / "run").rglob("*"))

    at: list[int] = []
    resumed = _selfplay(tmp_path / "run", 3, resume=True, resumed=at.append)
    assert resumed["resumed_at_step"] == state["total_steps"] == at[0] > 0
    for key in ("steps", "games", "snapshots"):
        assert resumed[key] == plain[key]
    for name in ["main", *(f"snapshots/{s}" for s in plain["snapshots"])]:
        a = load_safetensors((tmp_path / "plain" / name / "model.safetensors").read_bytes())
        b = load_safetensors((tmp_path / "run" / name / "model.safetensors").read_bytes())
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    assert _curve(tmp_path / "run") == _curve(tmp_path / "plain")
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [
        "main", "progress.csv", "snapshots", "summary.json"]


TEACH_RLLIB = ["teach", "--game", "tictactoe", "--algo", "rllib_ppo", "--steps", "4096"]
KEPT_BY_RAY = frozenset({"ray::DashboardAgent", "ray::RuntimeEnvAgent"})
"""Ray processes that outlive a ``kill -9`` of the process that started Ray: they exit
on their own once Ray's GCS client gives up (about a minute)."""


def _teach(out: Path, seed: int) -> subprocess.Popen[str]:
    """``tlm teach --algo rllib_ppo`` to ``out`` in its own session (and process group,
    as a terminal's foreground job), so every process it starts can be found."""
    return subprocess.Popen(
        [sys.executable, "-c", "import sys; from scripts.cli import main; sys.exit(main())",
         *TEACH_RLLIB, "--seed", str(seed), "--out", str(out)],
        cwd=out.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1]),
             "OMP_NUM_THREADS": "1"},
    )


def _checkpoint_step(out: Path) -> int:
    try:
        state = json.loads((staging_path(out) / "checkpoint" / "state.json").read_text())
    except (OSError, ValueError):
        return -1
    return int(state["total_steps"])


def _wait_for_checkpoint_past(out: Path, proc: subprocess.Popen[str], step: int) -> int:
    """Wait until the run writing ``out`` checkpoints a round past ``step``; its step."""
    deadline = time.monotonic() + 240
    while (now := _checkpoint_step(out)) <= step:
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, f"no checkpoint past step {step}"
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before it could be stopped"
    return now


def _session(sid: int) -> dict[int, str]:
    """Live (not zombie) processes of session ``sid``: pid -> command line."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if fields[0] != "Z" and int(fields[3]) == sid:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
                found[int(entry.name)] = cmd
        except (OSError, ValueError, IndexError):
            continue
    return found


def _left_running(sid: int, allowed: frozenset[str] = frozenset()) -> dict[int, str]:
    """The processes of session ``sid`` still running (other than ``allowed``) after
    waiting up to 30 s for them to end."""
    deadline = time.monotonic() + 30
    while (left := {p: c for p, c in _session(sid).items() if c not in allowed}) and \
            time.monotonic() < deadline:
        time.sleep(0.1)
    return left


@pytest.mark.slow
def test_tlm_teach_rllib_resumes_after_kill_9_and_ctrl_c(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "rl"
    stage = staging_path(out)
    # kill -9 just after the first checkpoint: Ray's core dies with the process.
    proc = _teach(out, seed=5)
    first = _wait_for_checkpoint_past(out, proc, 0)
    proc.kill()
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL and not out.exists()
    assert _left_running(proc.pid, KEPT_BY_RAY) == {}
    for pid in _session(proc.pid):  # those would exit a minute later
        os.kill(pid, signal.SIGKILL)

    # Other settings: one line, exit 2, before Ray starts; the staging is untouched.
    kept = {str(p.relative_to(stage)): p.read_bytes() for p in stage.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert main([*TEACH_RLLIB, "--seed", "6", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert "unfinished run with other settings (seed)" in err and "--fresh" in err
    assert kept == {str(p.relative_to(stage)): p.read_bytes()
                    for p in stage.rglob("*") if p.is_file()}
    assert not out.exists()

    # Ctrl-C (SIGINT to the whole process group, as a terminal sends it) once the resumed
    # run checkpoints a new round: it stops after its round, says how to resume in one
    # line, exits 130, and stops Ray.
    proc = _teach(out, seed=5)
    _wait_for_checkpoint_past(out, proc, first)
    os.killpg(proc.pid, signal.SIGINT)
    stdout, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert f"resuming the interrupted run kept in {stage} at step {first}" in stdout
    assert err.strip().splitlines() == [
        f"interrupted: the finished part is kept in {stage}; run the same command again "
        f"to resume"
    ]
    assert _left_running(proc.pid) == {}
    stopped_at = _checkpoint_step(out)
    assert stopped_at > first and not out.exists()

    proc = _teach(out, seed=5)
    stdout, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert f"at step {stopped_at}" in stdout and f"rllib:{out / 'main'}" in stdout
    assert _left_running(proc.pid) == {}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["resumed_at_step"] == stopped_at
    steps = [int(row["total_steps"]) for row in _curve(out)]
    # Every round once: the steps trained are the rounds' steps, the requested ones
    # rounded up to whole rounds.
    assert steps == sorted(set(steps)) and summary["steps"] == steps[-1]
    assert steps[-2] < 4096 <= steps[-1]
    assert summary["snapshots"] == sorted(p.name for p in (out / "snapshots").iterdir())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rl"]  # no staging, no lock
    assert sorted(p.name for p in out.iterdir()) == [
        "main", "progress.csv", "snapshots", "summary.json"]
    assert main(["eval", "--game", "tictactoe", "--agent", f"rllib:{out / 'main'}",
                 "--opponents", "random", "--games", "20", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["results"]
