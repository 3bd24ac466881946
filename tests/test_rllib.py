"""The RLlib learner on a real local Ray (2 CPUs, no dashboard) and real RLlib PPO on
tic-tac-toe: frozen slots act with their snapshot's weights after every change, saved
``rllib:`` checkpoints reload to identical policies and refuse damage with exit code 2,
same seed gives the same weights, and a short seeded run beats ``random`` by more than
the untrained policy does."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

import arena
from arena.agents import RandomAgent
from scripts.cli import main
from teachers.rllib_checkpoint import RLlibAgent, build_module, load_rllib_agent
from teachers.rllib_learner import (
    MAIN,
    RLlibLearner,
    RLlibPPOSettings,
    slot_id,
)

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

    from teachers.gym_view import ArenaGymEnv
    from teachers.league_run import LearnerConfig, PPOConfig
    from teachers.sb3_teacher import SB3Agent

    config = LearnerConfig(name="rl", backend="rllib", net_arch=[16], n_envs=2,
                           ppo=PPOConfig(n_steps=32, batch_size=32, n_epochs=1,
                                         learning_rate=3e-4))
    rl = RLlibLearner.from_league_config(config, arena.get_game("tictactoe"), Path("."), 0)
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
