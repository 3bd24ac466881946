"""``tlm league status`` and ``tlm league report`` on real league directories."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import numpy as np
import pytest

from arena.ratings import MatchRecord
from scripts.cli import main
from teachers.league import LeagueStore
from teachers.league.report import league_status, write_report

STRENGTH = {"random": 0.0, "main": 300.0, "main-1": 100.0, "perfect": 900.0}


def _league(path: Path, rounds: int = 6, seed: int = 0) -> Path:
    store = LeagueStore.create(path, "tictactoe", {"matchmaking": {"kind": "pfsp"}})
    try:
        store.add_agent("random", "reference", "random")
        store.add_agent("perfect", "reference", "perfect")
        store.add_agent("main", "learner", "random")
        store.add_agent("main-1", "snapshot", "random", parent="main", info={"steps": 1000})
        rng = np.random.default_rng(seed)
        names = list(STRENGTH)
        for r in range(rounds):
            for x, a in enumerate(names):
                for b in names[x + 1:]:
                    p = 1.0 / (1.0 + 10 ** ((STRENGTH[b] - STRENGTH[a]) / 400))
                    first = tuple(int(v) for v in rng.multinomial(4, [p, 0.0, 1 - p]))
                    second = tuple(int(v) for v in rng.multinomial(4, [p, 0.0, 1 - p]))
                    store.record_match(MatchRecord(f"{r}/{a}/{b}", r, a, b, r, 8,
                                                   first, second))  # type: ignore[arg-type]
            store.log_scalar("learner/main/train_score", 100 * r, 0.1 * r)
            store.log_scalar("learner/main/entropy", 100 * r, 1.0 - 0.1 * r)
            store.log_scalar("learner/main/win_rate/random", 100 * r, 0.5 + 0.05 * r)
            store.log_scalar("learner/main/win_rate/perfect", 100 * r, 0.0)
            store.log_scalar("elo/main", r, 10.0 * r)  # not a learner curve: not drawn
    finally:
        store.close()
    return path


def test_status_json_schema(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lg = _league(tmp_path / "lg")
    assert main(["league", "status", "--dir", str(lg), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert isinstance(status["game"], str) and status["game"] == "tictactoe"
    assert isinstance(status["matches"], int) and status["matches"] == 6 * 6
    assert isinstance(status["games"], int) and status["games"] == 6 * 6 * 8
    assert {a["name"] for a in status["agents"]} == set(STRENGTH)
    for a in status["agents"]:
        assert isinstance(a["name"], str) and isinstance(a["spec"], str)
        assert a["role"] in ("learner", "snapshot", "reference")
        assert isinstance(a["elo"], float) and isinstance(a["games"], int)
        lo, hi = a["elo_ci95"]
        assert isinstance(lo, float) and isinstance(hi, float) and lo <= a["elo"] <= hi
        assert a["games"] == 3 * 6 * 8
    by_name = {a["name"]: a for a in status["agents"]}
    assert status["anchor"] == "random"
    assert by_name["random"]["elo"] == 0.0 and by_name["random"]["elo_ci95"] == [0.0, 0.0]
    assert [a["name"] for a in status["agents"]][0] == "perfect"  # highest Elo first
    assert "mu" not in status["agents"][0]
    assert main(["league", "status", "--dir", str(lg), "--json", "--openskill"]) == 0
    skill = {a["name"]: a["mu"] for a in json.loads(capsys.readouterr().out)["agents"]}
    assert max(skill, key=skill.__getitem__) == "perfect"
    assert min(skill, key=skill.__getitem__) == "random"
    assert main(["league", "status", "--dir", str(lg), "--openskill"]) == 0
    table = " ".join(capsys.readouterr().out.split())  # rich wraps long titles
    assert "perfect" in table and "anchored at random" in table and "openskill" in table


def test_status_reads_a_league_while_its_writer_holds_a_transaction(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lg = _league(tmp_path / "lg", rounds=1)
    writer = LeagueStore.open(lg)
    try:
        with writer.transaction():
            writer.record_match(MatchRecord("extra", 1, "main", "random", 0, 2, (1, 0, 0),
                                            (1, 0, 0)))
            assert main(["league", "status", "--dir", str(lg), "--json"]) == 0
            assert json.loads(capsys.readouterr().out)["matches"] == 6
        assert main(["league", "status", "--dir", str(lg), "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["matches"] == 7
    finally:
        writer.close()


def test_anchor_falls_back_to_the_first_reference(tmp_path: Path) -> None:
    store = LeagueStore.create(tmp_path / "lg", "tictactoe", {})
    try:
        store.add_agent("main", "learner", "random")
        store.add_agent("alphabeta", "reference", "perfect")
        store.record_match(MatchRecord("a", 0, "main", "alphabeta", 0, 4, (0, 1, 1), (0, 2, 0)))
        status = league_status(store)
        assert status["anchor"] == "alphabeta"
        assert {a["name"]: a["elo"] for a in status["agents"]}["alphabeta"] == 0.0
    finally:
        store.close()


def test_report_writes_html_with_embedded_pngs_and_markdown(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lg = _league(tmp_path / "lg")
    assert main(["league", "report", "--dir", str(lg)]) == 0
    page = (lg / "report.html").read_text()
    pngs = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page)
    assert len(pngs) == 4  # ratings over time, snapshots, payoff, learner curves
    for png in pngs:
        assert base64.b64decode(png)[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<table>" in page and "perfect" in page and "src='http" not in page
    md = (lg / "report.md").read_text()
    assert "| perfect | reference |" in md and "## Payoff" in md
    out = tmp_path / "elsewhere"
    out.mkdir()
    assert main(["league", "report", "--dir", str(lg), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["report.html", "report.md"]


def test_report_on_a_league_without_matches(tmp_path: Path) -> None:
    store = LeagueStore.create(tmp_path / "lg", "connect_four", {})
    try:
        store.add_agent("random", "reference", "random")
        html_path, md_path = write_report(store)
        assert "no matches yet" in html_path.read_text() and md_path.exists()
        assert league_status(store)["agents"][0]["games"] == 0
    finally:
        store.close()


@pytest.mark.parametrize("command", ["status", "report"])
def test_commands_on_a_directory_that_is_not_a_league_exit_2(
        tmp_path: Path, command: str, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "notes.txt").write_text("keep me")
    assert main(["league", command, "--dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "is not a league directory" in err
    assert len(err.strip().splitlines()) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
    assert main(["league", command, "--dir", str(tmp_path / "missing")]) == 2


def test_report_to_a_missing_directory_exit_2(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    lg = _league(tmp_path / "lg", rounds=1)
    assert main(["league", "report", "--dir", str(lg), "--out", str(tmp_path / "no")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (lg / "report.html").exists()
