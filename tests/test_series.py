"""Series of games: memory carried from game to game within a series, fresh for the next
series and never shared between the rows of a batch; the same series in any shard and on
Ray; the score by game index in tlm eval."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import students
from arena import (
    Agent,
    RayRunner,
    TlmError,
    evaluate,
    make_agent,
    play_match_tally,
    play_matches,
)
from arena.matches import MatchTally
from scripts.cli import main

GAME = "tictactoe"


class GameCounter(Agent):
    """Remembers how many games of its series it has finished, and the results: its first
    move in game j of a series is square j (so its memory shows in the records), then it
    plays the first legal square."""

    recurrent = True
    game = GAME
    name = "counter"

    def initial_memory(self, n: int) -> np.ndarray:
        return np.zeros((n, 2), dtype=np.float32)  # games finished, sum of results

    def act_with_memory(self, obs, mask, rng, memory, state=None):
        fresh = obs.reshape(len(obs), -1).sum(axis=1) <= 1  # its first move of a game
        want = memory[:, 0].astype(np.int64) % 9
        legal = mask[np.arange(len(mask)), want] != 0
        actions = np.where(fresh & legal, want, mask.argmax(axis=1))
        return actions, memory

    def end_game(self, memory, result):
        out = memory.copy()
        out[:, 0] += 1
        out[:, 1] += result
        return out

    def act(self, obs, mask, rng, state=None):
        return mask.argmax(axis=1)


def _first_moves(result, k: int) -> np.ndarray:
    """The counter's first move in each game (it is agent A)."""
    firsts = []
    for i, record in enumerate(result.records):
        first_of_a = 0 if result.seat_a[i] == 0 else 1
        firsts.append(record[first_of_a])
    return np.array(firsts).reshape(-1, k)


def test_memory_is_carried_within_a_series_and_fresh_for_the_next() -> None:
    k = 5
    counter = GameCounter()
    result = play_matches(GAME, counter, make_agent("random", GAME), 40 * k, seed=1,
                          series=k, record=True)
    firsts = _first_moves(result, k)
    # Game j of every series opens with square j (when free): the memory counted j games,
    # and started again at zero for every series (no leak from one series to the next).
    seat = result.seat_a.reshape(-1, k)
    assert (firsts[seat == 0] == np.tile(np.arange(k), (40, 1))[seat == 0]).all()
    # Seats alternate within a series, and between series, so every game index has both.
    assert (seat[:, 1:] != seat[:, :-1]).all()
    assert set(seat[:, 0]) == {0, 1}


def test_rows_of_a_batch_keep_their_own_memories() -> None:
    # A memory that leaked across the batch would make one series' results move another's.
    net = students.build_recurrent_student("gru:16", GAME, 0)
    agent = students.RecurrentStudentAgent(net, greedy=False)
    opponent = make_agent("random", GAME)
    whole = play_matches(GAME, agent, opponent, 30 * 4, seed=5, series=4, record=True)
    alone = play_matches(GAME, agent, opponent, 30 * 4, seed=5, series=4, record=True,
                         shard_games=4)
    odd = play_matches(GAME, agent, opponent, 30 * 4, seed=5, series=4, record=True,
                       shard_games=28)
    for other in (alone, odd):
        np.testing.assert_array_equal(whole.returns, other.returns)
        assert all(np.array_equal(a, b) for a, b in zip(whole.records, other.records,
                                                        strict=True))
    assert MatchTally.of(whole, 4).by_index.sum() == 120


def test_series_on_ray_are_the_series_played_here() -> None:
    net = students.build_recurrent_student("gru:16", GAME, 1)
    agent = students.RecurrentStudentAgent(net, greedy=False)
    opponent = make_agent("noisy:0.5", GAME)
    local = play_match_tally(GAME, agent, opponent, 64 * 4, seed=2, series=4)
    with RayRunner(2) as runner:
        remote = play_match_tally(GAME, agent, opponent, 64 * 4, seed=2, series=4,
                                  runner=runner, shard_games=32)
    np.testing.assert_array_equal(local.by_index, remote.by_index)
    np.testing.assert_array_equal(local.wins, remote.wins)


def test_evaluate_reports_the_score_by_game_index() -> None:
    rows = evaluate(GAME, make_agent("perfect", GAME), [make_agent("prefer:edges", GAME)],
                    600, seed=0, series=6)
    both = next(r for r in rows if r.seat == "both")
    assert [s.game for s in both.series_scores] == [1, 2, 3, 4, 5, 6]
    assert sum(s.games for s in both.series_scores) == 600
    for s in both.series_scores:
        assert s.ci95[0] <= s.score <= s.ci95[1]
    # A player without memory plays the same way in every game of a series.
    scores = [s.score for s in both.series_scores]
    assert max(scores) - min(scores) < 0.2
    assert all(not r.series_scores for r in rows if r.seat != "both")


def test_tlm_eval_series_json_and_plot(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    plot = tmp_path / "series.png"
    code = main(["eval", "--game", GAME, "--agent", "perfect", "--opponents",
                 "prefer:edges,noisy:0.3", "--games", "40", "--series", "10", "--json",
                 "--plot", str(plot)])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    for row in report["results"]:
        if row["seat"] == "both":
            assert [s["game"] for s in row["series_scores"]] == list(range(1, 11))
            assert {"score", "ci95", "games"} <= set(row["series_scores"][0])
        else:
            assert "series_scores" not in row
    assert plot.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(("args", "message"), [
    (["--series", "3"], "not a whole number of series"),
    (["--series", "0"], "--series"),
    (["--series", "100000"], "--series"),
    (["--plot", "x.png"], "give --series"),
])
def test_bad_series_flags_are_one_line(args: list[str], message: str, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["eval", "--game", GAME, "--agent", "random", "--games", "10", *args])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and "\n" not in err
    with pytest.raises(TlmError, match="series"):
        play_matches(GAME, make_agent("random", GAME), make_agent("random", GAME), 10,
                     series=4)
