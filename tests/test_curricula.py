"""Teaching strategies and the bandit that picks them: the bandit moves toward the arm
with the larger reward, a strategy's cost counts only new labels, and the uncertain
strategy labels only its share of what it reaches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from arena import PerfectTicTacToe, TlmError, get_game
from distill.collect import PositionStore
from distill.curricula import Exp3, Strategy, standard_strategies, teach
from scripts.cli import main
from students import StudentAgent, build_student


def test_bandit_weights_move_toward_the_larger_reward() -> None:
    rng = np.random.default_rng(0)
    bandit = Exp3(3, gamma=0.2)
    assert np.allclose(bandit.probabilities(), 1 / 3)
    means = [0.2, 0.3, 0.8]
    for _ in range(300):
        arm = bandit.draw(rng)
        bandit.update(arm, float(rng.random() < means[arm]))
    p = bandit.probabilities()
    assert p.argmax() == 2 and p[2] > 0.6
    assert p.min() >= 0.2 / 3 - 1e-12  # exploration keeps every arm alive
    with pytest.raises(TlmError):
        bandit.update(0, 1.5)


def test_strategy_cost_counts_only_new_labels() -> None:
    g = get_game("tictactoe")
    teacher = PerfectTicTacToe()
    student = StudentAgent(build_student("mlp:16x1", g, seed=0), greedy=False)
    store = PositionStore(g)
    by_name = {s.name: s for s in standard_strategies(g)}
    first = by_name["dagger"].collect(g, teacher, student, 20, 1, store, 0)
    assert first == len(store) > 0
    assert by_name["dagger"].collect(g, teacher, student, 20, 1, store, 1) == 0  # same games

    fresh = PositionStore(g)
    everything = Strategy("all", {"student": 1.0}, uncertain_share=1.0).collect(
        g, teacher, student, 20, 2, fresh, 0)
    quarter = PositionStore(g)
    some = Strategy("some", {"student": 1.0}, uncertain_share=0.25).collect(
        g, teacher, student, 20, 2, quarter, 0)
    assert everything == len(fresh) and some == len(quarter)
    assert 0 < some <= np.ceil(0.25 * everything)


def test_unknown_strategy_is_refused() -> None:
    with pytest.raises(TlmError, match="unknown strategy"):
        teach("tictactoe", "perfect", "mlp:16x1", "nosuch")


def test_adaptive_distill_bad_flags_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert main(["distill", "--method", "adaptive", "--game", "tictactoe",
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "--teacher" in err and "\n" not in err
    assert main(["distill", "--method", "adaptive", "--game", "tictactoe",
                 "--teacher", "nosuch", "--out", str(out)]) == 2
    assert not out.exists()
