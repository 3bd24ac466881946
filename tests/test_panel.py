"""The standard panel: its members, the stored reference games, and the Elo it gives."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import arena.panel as panel_mod
from arena.agents import make_agent
from arena.core import TlmError
from arena.panel import PANELS, evaluate_panel, panel_for, reference_matches, reference_path
from scripts.cli import main


def test_panels_are_the_standard_ones() -> None:
    c4 = panel_for("connect_four")
    assert c4.members == ("random", "heuristic", "alphabeta:1", "alphabeta:2",
                          "alphabeta:4", "alphabeta:6")
    assert c4.opening_plies >= 4 and c4.anchor == "random"
    assert panel_for("tictactoe").members == ("random", "heuristic", "perfect")
    with pytest.raises(TlmError, match="no standard panel for chess"):
        panel_for("chess")


@pytest.mark.parametrize("game", sorted(PANELS))
def test_stored_reference_games_fit_the_panel(game: str) -> None:
    panel = PANELS[game]
    doc = json.loads(reference_path(panel).read_text())
    assert doc["members"] == list(panel.members) and doc["games"] == panel.reference_games
    assert doc["opening_plies"] == panel.opening_plies
    matches = reference_matches(panel)
    n = len(panel.members)
    assert len(matches) == n * (n - 1) // 2
    assert all(m.games == panel.reference_games for m in matches)


def test_elo_orders_the_agents_at_tiny_game_counts() -> None:
    strong = evaluate_panel(make_agent("alphabeta:4", "connect_four"), "connect_four",
                            n_games=12, seed=1)
    weak = evaluate_panel(make_agent("random", "connect_four"), "connect_four",
                          n_games=12, seed=1)
    assert strong.agent == "alphabeta:4 (evaluated)" and weak.agent == "random (evaluated)"
    assert strong.elo.lo < strong.elo.elo < strong.elo.hi
    assert strong.elo.lo > weak.elo.hi
    assert strong.elo.elo > 500 and abs(weak.elo.elo) < 400
    assert strong.ratings["random"].elo == 0.0
    assert strong.scores()["random"] > 0.9
    assert [r.opponent for r in strong.rows if r.seat == "both"] == list(
        PANELS["connect_four"].members)
    again = evaluate_panel(make_agent("alphabeta:4", "connect_four"), "connect_four",
                           n_games=12, seed=1)
    assert again.as_json() == strong.as_json()


def test_missing_reference_games_are_played_on_the_spot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(panel_mod, "REFERENCE_DIR", tmp_path)
    panel = PANELS["tictactoe"]
    matches = reference_matches(panel)
    assert [m.games for m in matches] == [panel.fallback_games] * 3
    perfect_vs_random = next(m for m in matches if {m.agent_a, m.agent_b} == {"random",
                                                                               "perfect"})
    assert perfect_vs_random.losses == 0 if perfect_vs_random.agent_a == "perfect" else (
        perfect_vs_random.wins == 0)
    result = evaluate_panel(make_agent("perfect", "tictactoe"), "tictactoe", n_games=20)
    assert result.elo.elo > result.ratings["heuristic"].elo > 0


def test_cli_panel(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["eval", "--game", "tictactoe", "--agent", "heuristic", "--games", "20",
                 "--panel", "--json"])
    out, _ = capsys.readouterr()
    assert code == 0
    report = json.loads(out)["panel"]
    assert report["agent"] == "heuristic (evaluated)" and report["games"] == 20
    assert report["elo"]["lo"] <= report["elo"]["elo"] <= report["elo"]["hi"]
    assert {r["opponent"] for r in report["results"]} == {"random", "heuristic", "perfect"}
    code = main(["eval", "--game", "tictactoe", "--agent", "random", "--games", "10",
                 "--panel"])
    out, _ = capsys.readouterr()
    assert code == 0 and "panel Elo of random" in out
    code = main(["eval", "--game", "leduc_holdem", "--agent", "random", "--games", "2",
                 "--panel"])
    _, err = capsys.readouterr()
    assert code == 2 and err.startswith("error: no standard panel for leduc_holdem")
    assert np.isfinite(report["elo"]["elo"])
