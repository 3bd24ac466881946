"""The engine-backed AEC envs pass PettingZoo's own tests and behave as the originals.

Besides ``api_test`` and ``seed_test``, each env is run side by side with the original
PettingZoo env through whole episodes, illegal moves and the steps of finished agents
included, comparing everything an AEC user can see after every step.
"""

from __future__ import annotations

import pickle
import warnings
from typing import Any

import numpy as np
import pytest
from pettingzoo.test import api_test, seed_test

from arena.core import IllegalActionError
from arena.envs import ConnectFourEnv, TicTacToeEnv
from arena.envs import connect_four as c4_env
from arena.envs import tictactoe as ttt_env
from arena.games import get_game

GAMES = {"tictactoe": (ttt_env, TicTacToeEnv), "connect_four": (c4_env, ConnectFourEnv)}


@pytest.fixture(autouse=True)
def _quiet() -> None:
    # PettingZoo warns on every illegal move and on deprecated module names.
    warnings.simplefilter("ignore")


@pytest.mark.parametrize("game", sorted(GAMES))
def test_pettingzoo_api_test(game: str) -> None:
    module, _ = GAMES[game]
    api_test(module.env(), num_cycles=300)


@pytest.mark.parametrize("game", sorted(GAMES))
def test_pettingzoo_seed_test(game: str) -> None:
    module, _ = GAMES[game]
    seed_test(module.env, num_cycles=300)


@pytest.mark.parametrize("game", sorted(GAMES))
def test_registry_builds_the_engine_env_and_keeps_the_original_as_reference(game: str) -> None:
    g = get_game(game)
    _, cls = GAMES[game]
    env, ref = g.make_env(), g.make_reference_env()
    assert type(env.unwrapped) is cls
    assert type(ref.unwrapped).__module__.startswith("pettingzoo.classic")
    assert env.unwrapped.metadata == ref.unwrapped.metadata
    assert env.possible_agents == ref.possible_agents
    assert [type(w).__name__ for w in _wrappers(env)] == [type(w).__name__ for w in _wrappers(ref)]
    for agent in env.possible_agents:
        assert env.observation_space(agent) == ref.observation_space(agent)
        assert env.action_space(agent) == ref.action_space(agent)
    assert g.spaces == (ref.observation_space(ref.possible_agents[0])["observation"].shape,
                        np.dtype(np.int8), ref.action_space(ref.possible_agents[0]).n)


def _wrappers(env: Any) -> list[Any]:
    chain = []
    while hasattr(env, "env"):
        chain.append(env)
        env = env.env
    return chain


def _snapshot(env: Any) -> dict[str, Any]:
    """Everything an AEC user sees, with observations of every remaining agent."""
    u = env.unwrapped
    return {
        "agents": list(env.agents),
        "selection": env.agent_selection,
        "rewards": dict(u.rewards),
        "cumulative": dict(u._cumulative_rewards),
        "terminations": dict(u.terminations),
        "truncations": dict(u.truncations),
        "infos": dict(u.infos),
        "obs": {a: u.observe(a) for a in env.possible_agents},
    }


def _assert_same(mine: dict[str, Any], ref: dict[str, Any]) -> None:
    for key in ("agents", "selection", "terminations", "truncations", "infos"):
        assert mine[key] == ref[key], key
    for key in ("rewards", "cumulative"):
        assert mine[key] == ref[key], key
        # same Python types too (ints from the game, a float from the illegal-move wrapper)
        assert [type(v) for v in mine[key].values()] == [type(v) for v in ref[key].values()]
    for agent, o in ref["obs"].items():
        m = mine["obs"][agent]
        for part in ("observation", "action_mask"):
            assert m[part].dtype == o[part].dtype and np.array_equal(m[part], o[part]), part


@pytest.mark.parametrize(("game", "n_episodes"), [("tictactoe", 400), ("connect_four", 150)])
def test_episodes_match_the_original_env_including_illegal_moves(
    game: str, n_episodes: int
) -> None:
    g = get_game(game)
    rng = np.random.default_rng(2024)
    illegal_moves = 0
    for episode in range(n_episodes):
        env, ref = g.make_env(), g.make_reference_env()
        env.reset(seed=episode)
        ref.reset(seed=episode)
        # Every fifth episode, agents sometimes play a taken cell or a full column.
        p_illegal = 0.3 if episode % 5 == 0 else 0.0
        for agent, ref_agent in zip(env.agent_iter(), ref.agent_iter(), strict=True):
            assert agent == ref_agent
            last, ref_last = env.last(), ref.last()
            assert last[1:] == ref_last[1:]
            assert np.array_equal(last[0]["observation"], ref_last[0]["observation"])
            assert np.array_equal(last[0]["action_mask"], ref_last[0]["action_mask"])
            _assert_same(_snapshot(env), _snapshot(ref))
            if last[2] or last[3]:
                action = None
            else:
                mask = last[0]["action_mask"]
                pool = np.flatnonzero(mask == 0)
                if rng.random() >= p_illegal or len(pool) == 0:
                    pool = np.flatnonzero(mask)
                action = int(rng.choice(pool))
                illegal_moves += int(mask[action] == 0)
            env.step(action)
            ref.step(action)
        assert env.agents == ref.agents == []
        assert env.unwrapped._cumulative_rewards == ref.unwrapped._cumulative_rewards
    assert illegal_moves >= 10


@pytest.mark.parametrize("game", sorted(GAMES))
def test_raw_env_rejects_illegal_moves(game: str) -> None:
    module, _ = GAMES[game]
    env = module.raw_env()
    env.reset()
    moves = [0] if game == "tictactoe" else [0] * 6
    for a in moves:
        env.step(a)
    with pytest.raises(IllegalActionError):
        env.step(0)


def test_tictactoe_render_text_and_pickle() -> None:
    env = ttt_env.env()
    env.reset()
    env.step(4)
    assert "X" in env.unwrapped.render_text()
    copy = pickle.loads(pickle.dumps(env.unwrapped))
    copy.reset()
    assert copy.metadata["name"] == "tictactoe_v3"


@pytest.mark.parametrize("game", sorted(GAMES))
def test_rgb_pictures_are_those_of_the_original(game: str) -> None:
    pytest.importorskip("pygame")
    g = get_game(game)
    env, ref = g.make_env(render_mode="rgb_array"), g.make_reference_env(render_mode="rgb_array")
    env.reset()
    ref.reset()
    empty = env.render().copy()
    for a in (0, 1, 2, 4):
        env.step(a)
        ref.step(a)
    picture = env.render()
    assert picture is not None and picture.ndim == 3
    assert np.array_equal(picture, ref.render())
    assert not np.array_equal(picture, empty)
    env.close()
    ref.close()
