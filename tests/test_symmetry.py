"""Board symmetries map labelled positions to equally valid ones."""

from __future__ import annotations

import numpy as np

from arena import make_engine
from arena.players import all_positions, optimal_moves_mask, position_values
from arena.symmetry import symmetries


def test_tictactoe_has_eight_distinct_symmetries_preserving_exact_values() -> None:
    syms = symmetries("tictactoe")
    assert len(syms) == 8
    assert len({tuple(s.cells) for s in syms}) == 8
    obs, mask = all_positions()
    for s in syms:
        image = s.apply_obs(obs)
        np.testing.assert_array_equal(position_values(image), position_values(obs))
        expected = s.apply_actions(optimal_moves_mask(obs))
        np.testing.assert_array_equal(optimal_moves_mask(image), expected)
        empty = (image.sum(axis=-1) == 0).reshape(len(obs), 9)
        np.testing.assert_array_equal(empty, s.apply_actions(mask).astype(bool))


def test_connect_four_mirror_is_the_mirrored_game() -> None:
    mirror = symmetries("connect_four")[1]
    engine = make_engine("connect_four")
    rng = np.random.default_rng(0)
    state = engine.reset(1, seed=0)
    mirrored = engine.reset(1, seed=0)
    for _ in range(15):
        _, mask = engine.observe(state)
        a = int(rng.choice(np.flatnonzero(mask[0])))
        state, _, done = engine.step(state, np.array([a]))
        mirrored, _, _ = engine.step(mirrored, mirror.map_action(np.array([a])))
        if done[0]:
            break
    obs, mask = engine.observe(state)
    obs_m, mask_m = engine.observe(mirrored)
    np.testing.assert_array_equal(mirror.apply_obs(obs), obs_m)
    np.testing.assert_array_equal(mirror.apply_actions(mask), mask_m)


def test_games_without_symmetries_get_the_identity() -> None:
    (identity,) = symmetries("go9")
    assert (identity.actions == np.arange(82)).all()
