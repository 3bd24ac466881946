"""In-context learning on connect four: the players with styles, the search's best
response against brute force, series labelled by it, and a run measured against the
search's minimax twin."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

import students
from arena import TlmError, get_game, make_agent
from arena.players.connect_four import AlphaBetaConnectFour, decode_arrays, has_four, play_moves
from distill.incontext import make_incontext_config, train_incontext
from distill.incontext_series import ExploringAgent, play_series, symmetric_images
from distill.population import CONNECT_FOUR_STYLES, population_for
from students.recurrent import DECISION
from teachers.search_response import SearchResponse, response_values

GAME = get_game("connect_four")


def _legal(obs: np.ndarray) -> np.ndarray:
    return (obs.sum(axis=-1)[:, 0, :] == 0).astype(np.int8)


def _random_positions(n: int, seed: int) -> list[list[int]]:
    """Move lists of ``n`` live positions of 4 to 20 random moves."""
    rng = np.random.default_rng(seed)
    out: list[list[int]] = []
    while len(out) < n:
        moves: list[int] = []
        for _ in range(int(rng.integers(4, 21))):
            obs = play_moves(moves)
            legal = np.flatnonzero(_legal(obs[None])[0])
            moves.append(int(rng.choice(legal)))
            p, mask = decode_arrays(play_moves(moves)[None])
            if has_four(int(p[0] ^ mask[0])):
                break
        else:
            out.append(moves)
    return out


@pytest.mark.parametrize("spec", ["prefer:center", "prefer:left,p=0.5", "blind:diagonals",
                                  "noisy:0.25", "heuristic", "alphabeta:2", "random"])
def test_a_connect_four_style_is_a_distribution_over_legal_moves(spec: str) -> None:
    player = make_agent(spec, GAME)
    obs = np.stack([play_moves(m) for m in _random_positions(30, 1)])
    mask = _legal(obs)
    probs = player.policy(obs, mask)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    assert (probs[mask == 0] == 0).all()


def test_connect_four_styles_keep_their_habits() -> None:
    start = play_moves([])[None]
    mask = _legal(start)
    centre = make_agent("prefer:center", GAME).policy(start, mask)[0]
    assert centre[3] == 1.0
    left = make_agent("prefer:left,p=0.5", GAME).policy(start, mask)[0]
    assert left[:3].sum() >= 0.5 - 1e-9 and left[:3] == pytest.approx([left[0]] * 3)
    # Three of the opponent's stones stacked in column 0: the win-else-block players
    # block it, unless they are blind to vertical lines.
    stacked = play_moves([0, 6, 0, 6, 0, 5])[None]
    mask = _legal(stacked)
    assert make_agent("heuristic", GAME).policy(stacked, mask)[0, 0] == 1.0
    assert make_agent("blind:horizontal", GAME).policy(stacked, mask)[0, 0] == 1.0
    assert make_agent("blind:vertical", GAME).policy(stacked, mask)[0, 0] == pytest.approx(1 / 7)
    # A preference never plays into a loss the search sees: prefer:edges blocks too.
    assert make_agent("prefer:edges", GAME).policy(stacked, mask)[0, 0] == 1.0
    # And it takes a win before its habit.
    winning = play_moves([3, 0, 3, 0, 3, 1])[None]
    assert make_agent("prefer:edges", GAME).policy(winning, _legal(winning))[0, 3] == 1.0


@pytest.mark.parametrize("spec", ["prefer:corners", "prefer:center,p=2", "blind:rows",
                                  "blind:diag", "minimax:2", "noisy:-1"])
def test_bad_connect_four_style_specs_are_one_line(spec: str) -> None:
    with pytest.raises(TlmError) as info:
        make_agent(spec, GAME)
    assert "\n" not in str(info.value)


def _brute_force(opponent: object, moves: list[int], depth: int) -> np.ndarray:
    """The expected score of each column, one position and one reply at a time."""
    search = AlphaBetaConnectFour(depth)
    out = np.full(7, -np.inf)
    for a in np.flatnonzero(_legal(play_moves(moves)[None])[0]):
        child = play_moves([*moves, int(a)])
        p, mask = decode_arrays(child[None])
        if has_four(int(p[0] ^ mask[0])):
            out[a] = 1.0
            continue
        child_mask = _legal(child[None])
        if not child_mask.any():
            out[a] = 0.5
            continue
        probs = opponent.policy(child[None], child_mask)[0]  # type: ignore[attr-defined]
        value = 0.0
        for b in np.flatnonzero(probs > 0):
            grand = play_moves([*moves, int(a), int(b)])
            p, mask = decode_arrays(grand[None])
            if has_four(int(p[0] ^ mask[0])):
                v = 0.0
            elif not _legal(grand[None]).any():
                v = 0.5
            else:
                best = search.move_scores(grand[None], _legal(grand[None])).max()
                v = 0.5 + 0.5 * math.tanh(best / 40.0)
            value += probs[b] * v
        out[a] = value
    return out


@pytest.mark.parametrize("spec", ["prefer:center,p=0.5", "noisy:0.25", "blind:diagonals"])
@pytest.mark.parametrize("depth", [1, 2])
def test_the_search_response_equals_brute_force(spec: str, depth: int) -> None:
    opponent = make_agent(spec, GAME)
    positions = _random_positions(12, depth)
    obs = np.stack([play_moves(m) for m in positions])
    values = response_values(opponent, obs, _legal(obs), depth)
    for moves, row in zip(positions, values, strict=True):
        np.testing.assert_allclose(row, _brute_force(opponent, moves, depth), atol=1e-9)


def test_the_search_response_exploits_what_its_twin_cannot() -> None:
    # Against the centre player, knowing its habit is worth far more than two plies.
    from arena import play_matches

    opponent = make_agent("prefer:center", GAME)
    response = play_matches(GAME, SearchResponse(opponent, 2), opponent, 200, 0)
    twin = play_matches(GAME, make_agent("alphabeta:4", GAME), opponent, 200, 0)
    assert response.outcome.mean() > twin.outcome.mean() + 0.3
    with pytest.raises(TlmError, match="depth"):
        SearchResponse(opponent, 9)


def test_a_connect_four_series_is_labelled_by_the_search_response() -> None:
    opponent = make_agent("prefer:center,p=0.75", GAME)  # its own mirror image
    teacher = SearchResponse(opponent, 1)
    student = students.RecurrentStudentAgent(
        students.build_recurrent_student("gru:8", GAME, 0), greedy=False)
    batch, scores = play_series(GAME, ExploringAgent(student, 0.3), opponent, teacher, 6, 2,
                                seed=3)
    assert scores.shape == (6, 2)
    at = batch.kind == DECISION
    np.testing.assert_array_equal(batch.label[at], teacher.label_moves(batch.obs[at]))
    assert not batch.erred.any()  # the search sees no errors
    image = symmetric_images(batch, np.ones(6, dtype=np.int64), GAME)
    np.testing.assert_array_equal(image.label[at], teacher.label_moves(image.obs[at]))
    mask, action = image.mask[at], image.action[at].astype(np.int64)
    assert (mask[np.arange(len(action)), action] == 1).all()


def test_the_connect_four_population_holds_out_whole_families() -> None:
    assert population_for("connect_four") is CONNECT_FOUR_STYLES
    kinds = {spec.split(",")[0] for spec in CONNECT_FOUR_STYLES.held_out}
    assert kinds == {"prefer:center", "prefer:inner"}
    assert not kinds & {spec.split(",")[0] for spec in CONNECT_FOUR_STYLES.training}
    assert len(CONNECT_FOUR_STYLES.agents("training")) == len(CONNECT_FOUR_STYLES.training)


def test_a_connect_four_run_measures_g_against_the_search_twin(tmp_path: Path) -> None:
    config = dict(game="connect_four", labels="best", training=["prefer:edges", "noisy:0.5"],
                  held_out=["prefer:center"], student="gru:8", control="mlp:8x1", series=2,
                  rounds=2, series_per_opponent=4, steps_per_round=2, batch_series=4,
                  replay_series=16, eval_series=2, eval_training_series=1, final_series=4,
                  response_depth=1)
    report = train_incontext(make_incontext_config(out=str(tmp_path / "a"), **config))
    final = report["final"]
    assert final["reference"] == {"name": "alphabeta:3", "score": pytest.approx(
        final["reference"]["score"]), "exact": False}
    assert not final["oracle_exact"]
    assert final["gap"] == pytest.approx(final["best_response"] - final["reference"]["score"])
    assert final["best_response"] == pytest.approx(np.mean(final["oracle_by_game"]))
    assert set(final["teacher_losses"]) == {"alphabeta:3", "random"}
    assert set(final["players"]) == {"student", "reset", "control"}
    assert "no_loss_to_alphabeta:3" in report["targets"]
    assert (tmp_path / "a" / "student" / "model.safetensors").is_file()
    again = train_incontext(make_incontext_config(out=str(tmp_path / "b"), **config))
    assert again["final"] == final
