"""The shipped agents (``zoo:GAME``): files as recorded, loading, playing, bad specs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from arena import make_agent
from arena.core import TlmError
from arena.evaluation import evaluate
from teachers.zoo import read_provenance, verify, write_zoo_entry, zoo_dir, zoo_games


def test_connect_four_ships_with_provenance_and_matching_hashes() -> None:
    assert "connect_four" in zoo_games()
    directory = zoo_dir("connect_four")
    info = verify(directory)
    assert set(info["sha256"]) == {"config.json", "model.safetensors"}
    for key in ("command", "seed", "commit", "figures"):
        assert key in info, key
    size = sum(p.stat().st_size for p in directory.iterdir())
    assert size < 4 * 2**20


def test_raw_student_and_its_search_load_and_beat_random() -> None:
    raw = make_agent("zoo:connect_four", "connect_four")
    search = make_agent("zoo:connect_four,sims=32", "connect_four")
    assert make_agent("zoo", "connect_four").game == "connect_four"
    for agent, games in ((raw, 40), (search, 8)):
        rows = evaluate("connect_four", agent, [make_agent("random", "connect_four")], games)
        both = next(r for r in rows if r.seat == "both")
        assert both.score > 0.8, (agent.name, both.score)


def test_damaged_or_missing_files_are_refused(tmp_path: Path) -> None:
    entry = write_zoo_entry(zoo_dir("connect_four"), tmp_path, {"command": "test"})
    assert verify(entry)["game"] == "connect_four"
    weights = entry / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(TlmError, match="does not match its recorded hash"):
        verify(entry)
    weights.unlink()
    with pytest.raises(TlmError, match="missing"):
        verify(entry)
    (entry / "provenance.json").write_text("{not json")
    with pytest.raises(TlmError, match="damaged zoo provenance"):
        read_provenance(entry)
    shutil.rmtree(entry)


@pytest.mark.parametrize(("spec", "game", "message"), [
    ("zoo:connect_four", "tictactoe", "plays connect_four, not tictactoe"),
    ("zoo:chess", "chess", "no zoo agent for 'chess'"),
    ("zoo:connect_four,sims=0", "connect_four", "simulations"),
    ("zoo:connect_four,bogus=1", "connect_four", "unknown puct option"),
])
def test_bad_zoo_specs_are_one_line_errors(spec: str, game: str, message: str) -> None:
    with pytest.raises(TlmError, match=message) as info:
        make_agent(spec, game)
    assert "\n" not in str(info.value)
