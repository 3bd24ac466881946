"""The SB3 backend: the Gymnasium view of the arena, MaskablePPO self-play through the
one loop, and SB3 models as agent specs."""

from __future__ import annotations

import json
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from sb3_contrib import MaskablePPO

import arena.players  # noqa: F401  (registers heuristic / perfect)
from arena.agents import make_agent
from arena.core import Agent, State, TlmError
from arena.evaluation import evaluate
from arena.matches import play_matches
from teachers.sb3 import ArenaGymEnv, SB3Agent, load_sb3_agent, register, train_selfplay

TINY_PPO = {"n_steps": 64, "batch_size": 64, "n_epochs": 2}


class ScriptedAgent(Agent):
    """Plays a fixed list of actions, one per call (batch of one)."""

    def __init__(self, moves: list[int]) -> None:
        self.moves = list(moves)
        self.name = "scripted"

    def act(
        self,
        obs: np.ndarray,
        mask: np.ndarray,
        rng: np.random.Generator,
        state: State | None = None,
    ) -> np.ndarray:
        return np.array([self.moves.pop(0)], dtype=np.int64)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny tic-tac-toe self-play run's output directory."""
    out = tmp_path_factory.mktemp("tiny_run")
    train_selfplay(
        "tictactoe", 512, out, seed=3, net_arch=(16, 16), snapshot_every=128,
        n_envs=2, ppo_kwargs=TINY_PPO, eval_games=20,
    )
    return out


@pytest.mark.parametrize("game", ["tictactoe", "connect_four"])
def test_gym_view_passes_gymnasium_env_checker(game: str) -> None:
    env = ArenaGymEnv(game)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_env(env, skip_render_check=True)
    obs, _ = env.reset(seed=0)
    pz_env = env.game.make_env()
    pz_space = pz_env.observation_space(pz_env.possible_agents[0])["observation"]
    assert obs.dtype == pz_space.dtype and obs.shape == pz_space.shape


def test_learner_first_wins_with_a_row_and_is_paid_on_its_winning_move() -> None:
    env = ArenaGymEnv("tictactoe", opponent=ScriptedAgent([3, 4]), seat=0)
    obs, info = env.reset(seed=0)
    assert info["seat"] == 0 and obs.sum() == 0
    steps = [env.step(a) for a in (0, 1, 2)]
    assert [s[1] for s in steps] == [0.0, 0.0, 1.0]
    assert [s[2] for s in steps] == [False, False, True]
    # From the learner's point of view: plane 0 its own marks, plane 1 the opponent's.
    obs_after_two = steps[1][0]
    assert obs_after_two[0, 0, 0] == 1 and obs_after_two[0, 1, 0] == 1  # squares 0 and 1
    assert obs_after_two[1, 0, 1] == 1 and obs_after_two[1, 1, 1] == 1  # squares 3 and 4
    assert not env.action_masks().any()


def test_learner_second_loses_on_the_opponents_reply() -> None:
    env = ArenaGymEnv("tictactoe", opponent=ScriptedAgent([0, 1, 2]), seat=1)
    obs, info = env.reset(seed=0)
    assert info["seat"] == 1
    assert obs[0, 0, 1] == 1 and obs[..., 0].sum() == 0  # the opponent opened on square 0
    assert not env.action_masks()[0]
    _, r1, done1, _, _ = env.step(3)
    _, r2, done2, _, _ = env.step(4)
    assert (r1, done1) == (0.0, False)
    assert (r2, done2) == (-1.0, True)


def test_illegal_learner_action_ends_the_episode_with_minus_one() -> None:
    env = ArenaGymEnv("tictactoe", opponent=ScriptedAgent([4]), seat=0)
    env.reset(seed=0)
    env.step(0)
    obs_before = env._obs.copy()
    obs, reward, terminated, truncated, info = env.step(4)  # taken by the opponent
    assert (reward, terminated, truncated, info.get("illegal")) == (-1.0, True, False, True)
    np.testing.assert_array_equal(obs, obs_before)
    with pytest.raises(TlmError, match="finished episode"):
        env.step(5)


def test_seat_modes_alternate_random_and_fixed() -> None:
    alternate = ArenaGymEnv("tictactoe", seat="alternate")
    seats = [alternate.reset(seed=1 if i == 0 else None)[1]["seat"] for i in range(4)]
    assert seats == [0, 1, 0, 1]
    random_a = ArenaGymEnv("tictactoe", seat="random")
    random_b = ArenaGymEnv("tictactoe", seat="random")
    draws_a = [random_a.reset(seed=5 if i == 0 else None)[1]["seat"] for i in range(20)]
    draws_b = [random_b.reset(seed=5 if i == 0 else None)[1]["seat"] for i in range(20)]
    assert draws_a == draws_b and set(draws_a) == {0, 1}
    fixed = ArenaGymEnv("tictactoe", seat=1)
    assert {fixed.reset()[1]["seat"] for _ in range(5)} == {1}
    with pytest.raises(TlmError, match="seat"):
        ArenaGymEnv("tictactoe", seat=2)


def test_episode_returns_match_the_arena_against_the_same_opponent() -> None:
    """Random learner vs random opponent: wins and losses balance as in play_matches."""
    env = ArenaGymEnv("tictactoe", seat="alternate")
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    returns = []
    for _ in range(400):
        total, done = 0.0, False
        while not done:
            action = rng.choice(np.flatnonzero(env.action_masks()))
            _, reward, done, _, _ = env.step(action)
            total += float(reward)
        returns.append(total)
        env.reset()
    returns_arr = np.array(returns)
    assert set(np.unique(returns_arr)) <= {-1.0, 0.0, 1.0}
    first, second = returns_arr[0::2].mean(), returns_arr[1::2].mean()
    # Random tic-tac-toe: the first player wins ~58%, loses ~29%.
    assert 0.15 < first < 0.45 and -0.45 < second < -0.15


def test_same_seed_gives_identical_weights(tmp_path: Path, tiny_run: Path) -> None:
    def weights(path: Path) -> dict[str, torch.Tensor]:
        return MaskablePPO.load(path, device="cpu").policy.state_dict()

    again = train_selfplay(
        "tictactoe", 512, tmp_path / "again", seed=3, net_arch=(16, 16), snapshot_every=128,
        n_envs=2, ppo_kwargs=TINY_PPO, eval_games=0,
    ).model_path
    other = train_selfplay(
        "tictactoe", 512, tmp_path / "other", seed=4, net_arch=(16, 16), snapshot_every=128,
        n_envs=2, ppo_kwargs=TINY_PPO, eval_games=0,
    ).model_path
    a, b, c = weights(tiny_run / "main" / "model.zip"), weights(again), weights(other)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_run_writes_snapshots_and_a_summary(tiny_run: Path) -> None:
    summary = json.loads((tiny_run / "summary.json").read_text())
    assert summary["steps"] == 512 and summary["games"] > 512 // 5
    # A snapshot at step 0 and then every 128 steps (one rollout of 2 x 64).
    assert summary["snapshots"] == [f"step_{s:09d}" for s in (0, 128, 256, 384)]
    assert sorted(p.name for p in (tiny_run / "snapshots").iterdir()) == summary["snapshots"]
    opponents = {(r["opponent"], r["seat"]) for r in summary["evaluation"]}
    assert ("random", "both") in opponents and ("heuristic", "both") in opponents
    assert summary["wall_seconds"] > 0


def test_sb3_spec_plays_legal_moves_and_matches_the_model(tiny_run: Path) -> None:
    register()
    path = tiny_run / "main" / "model.zip"
    agent = make_agent(f"sb3:{path}", "tictactoe")
    assert isinstance(agent, SB3Agent) and agent.greedy
    result = play_matches("tictactoe", agent, make_agent("random", "tictactoe"), 40, seed=1,
                          strict=True)
    assert (result.illegal == -1).all()

    model = MaskablePPO.load(path, device="cpu")
    env = ArenaGymEnv("tictactoe")
    obs_rows, mask_rows = [], []
    env.reset(seed=2)
    rng = np.random.default_rng(2)
    while len(obs_rows) < 32:
        obs_rows.append(env._obs.copy())
        mask_rows.append(env.action_masks())
        _, _, done, _, _ = env.step(rng.choice(np.flatnonzero(env.action_masks())))
        if done:
            env.reset()
    obs, mask = np.stack(obs_rows), np.stack(mask_rows)
    probs = agent.policy(obs, mask.astype(np.int8))
    obs_t = torch.as_tensor(obs)
    with torch.no_grad():
        dist = model.policy.get_distribution(obs_t, action_masks=mask)
        expected = dist.distribution.probs.numpy()
        values = model.policy.predict_values(obs_t).numpy().ravel()
    np.testing.assert_allclose(probs, expected, atol=1e-6)
    assert (probs[~mask] == 0).all()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-12)
    greedy, _ = model.predict(obs, action_masks=mask, deterministic=True)
    np.testing.assert_array_equal(agent.act(obs, mask, np.random.default_rng(0)), greedy)
    np.testing.assert_allclose(agent.value(obs, mask), values, atol=1e-6)
    # One batched forward gives what row-by-row calls give.
    single = np.concatenate([agent.policy(obs[i : i + 1], mask[i : i + 1]) for i in range(4)])
    np.testing.assert_allclose(single, probs[:4], atol=1e-12)


def test_bad_sb3_specs_raise_one_line_errors(tmp_path: Path) -> None:
    register()
    text = tmp_path / "notes.zip"
    text.write_text("not a zip")
    empty_zip = tmp_path / "empty.zip"
    with zipfile.ZipFile(empty_zip, "w") as archive:
        archive.writestr("readme.txt", "no model here")
    c4 = tmp_path / "c4.zip"
    MaskablePPO("MlpPolicy", ArenaGymEnv("connect_four"), n_steps=8, batch_size=8,
                policy_kwargs={"net_arch": [8]}, device="cpu", seed=0).save(c4)
    cases = {
        f"sb3:{tmp_path / 'missing.zip'}": "does not exist",
        f"sb3:{text}": "not a zip",
        f"sb3:{empty_zip}": "not an SB3 model",
        f"sb3:{c4}": "tictactoe has",
        "sb3": "needs an argument",
    }
    for spec, message in cases.items():
        with pytest.raises(TlmError, match=message) as info:
            make_agent(spec, "tictactoe")
        assert "\n" not in str(info.value)
    # The connect-four model itself is fine for connect four.
    assert load_sb3_agent(c4, "connect_four").num_actions == 7


@pytest.mark.slow
def test_selfplay_improves_against_random(tmp_path: Path) -> None:
    random_agent = make_agent("random", "tictactoe")
    fresh = MaskablePPO("MlpPolicy", ArenaGymEnv("tictactoe"), seed=0, device="cpu",
                        policy_kwargs={"net_arch": [64, 64]})
    before = evaluate("tictactoe", SB3Agent(fresh, "tictactoe", greedy=True), [random_agent],
                      400, seed=7)[-1].score
    path = train_selfplay("tictactoe", 40_000, tmp_path, seed=0, eval_games=0).model_path
    trained = load_sb3_agent(path, "tictactoe")
    after = evaluate("tictactoe", trained, [random_agent], 400, seed=7)[-1].score
    assert after >= 0.85 and after > before + 0.2
