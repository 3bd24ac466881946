"""Every registered game: PettingZoo's own API test on its env, and the generic
adapter against a plain PettingZoo loop, move for move."""

from __future__ import annotations

import numpy as np
import pytest
from pettingzoo.test import api_test

from arena import PettingZooEngine, TlmError, get_game, list_games, make_engine
from arena.adapter import episode_seeds

ALL_GAMES = [g.name for g in list_games()]
GENERIC = ["leduc_holdem", "texas_holdem", "texas_holdem_no_limit", "go9", "chess"]


def test_registry_has_every_two_player_classic_game() -> None:
    assert set(ALL_GAMES) >= {
        "tictactoe", "connect_four", "go9", "chess", "leduc_holdem", "texas_holdem",
        "texas_holdem_no_limit",
    }


@pytest.mark.parametrize("name", ALL_GAMES)
def test_pettingzoo_api_test(name: str) -> None:
    api_test(get_game(name).make_env(), num_cycles=60)


@pytest.mark.parametrize("name", ALL_GAMES)
def test_spaces_match_the_env(name: str) -> None:
    g = get_game(name)
    env = g.make_env()
    env.reset(seed=0)
    obs = env.observe(env.agent_selection)
    assert obs["observation"].shape == g.obs_shape
    assert obs["observation"].dtype == g.obs_dtype
    assert obs["action_mask"].shape == (g.num_actions,)


def test_go9_is_nine_by_nine() -> None:
    g = get_game("go9")
    assert g.obs_shape[:2] == (9, 9) and g.num_actions == 82


def test_unknown_game_is_one_clear_error() -> None:
    with pytest.raises(TlmError, match="unknown game 'checkers'"):
        get_game("checkers")
    with pytest.raises(TlmError):
        make_engine("checkers")


def _plain_loop(name: str, seed: int, actions_rng: np.random.Generator, max_steps: int):
    """A plain PettingZoo loop: returns per-step (obs, mask, rewards, done)."""
    g = get_game(name)
    env = g.make_env()
    env.reset(seed=seed)
    agents = list(env.possible_agents)
    trace = []
    for _ in range(max_steps):
        o = env.observe(env.agent_selection)
        legal = np.flatnonzero(o["action_mask"])
        a = int(actions_rng.choice(legal))
        env.step(a)
        done = all(env.terminations[x] or env.truncations[x] for x in env.agents)
        trace.append((o["observation"], o["action_mask"], a,
                      [env.rewards[x] for x in agents], done))
        if done:
            break
    return trace


@pytest.mark.parametrize("name", GENERIC)
def test_generic_adapter_matches_plain_loop_move_for_move(name: str) -> None:
    n, seed = (3, 11) if name in ("go9", "chess") else (12, 5)
    max_steps = 60 if name in ("go9", "chess") else 400
    engine = PettingZooEngine(get_game(name))
    state = engine.reset(n, seed=seed)
    seeds = episode_seeds(seed, n)
    traces = [_plain_loop(name, s, np.random.default_rng(i), max_steps)
              for i, s in enumerate(seeds)]
    rngs = [np.random.default_rng(i) for i in range(n)]
    for t in range(max_steps):
        obs, mask = engine.observe(state)
        done_before = engine.done(state)
        actions = np.zeros(n, dtype=np.int64)
        for i in range(n):
            if not done_before[i] and t < len(traces[i]):
                actions[i] = int(rngs[i].choice(np.flatnonzero(mask[i])))
        live = ~done_before & np.array([t < len(tr) for tr in traces])
        if not live.any():
            break
        state, rewards, done = engine.step(state, np.where(live, actions, 0))
        for i in np.flatnonzero(live):
            ref_obs, ref_mask, ref_a, ref_rewards, ref_done = traces[i][t]
            np.testing.assert_array_equal(obs[i], ref_obs)
            np.testing.assert_array_equal(mask[i], ref_mask)
            assert actions[i] == ref_a
            np.testing.assert_allclose(rewards[i], ref_rewards)
            assert bool(done[i]) == ref_done


def test_adapter_clone_keeps_the_game_in_progress() -> None:
    engine = PettingZooEngine(get_game("leduc_holdem"))
    state = engine.reset(4, seed=3)
    _, mask = engine.observe(state)
    state, _, _ = engine.step(state, mask.argmax(axis=1))
    obs_before, mask_before = engine.observe(state)
    copy = engine.clone(state)
    part = engine.take(state, np.array([1, 2]))
    engine.step(state, mask_before.argmax(axis=1))
    obs_copy, mask_copy = engine.observe(copy)
    np.testing.assert_array_equal(obs_copy, obs_before)
    np.testing.assert_array_equal(mask_copy, mask_before)
    np.testing.assert_array_equal(engine.observe(part)[0], obs_before[[1, 2]])
    # The copy plays on independently: it accepts the same action the original took.
    engine.step(copy, mask_before.argmax(axis=1))
