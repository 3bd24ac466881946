"""The league store on real SQLite files: agents, frozen snapshots, the match log, WAL."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from arena import TlmError
from arena.ratings import MatchRecord
from teachers.league import LeagueStore, staged_checkpoint, tree_sha256


def _match(key: str, a: str = "main", b: str = "random", first=(3, 1, 1), second=(2, 2, 1),
           round_: int = 0) -> MatchRecord:
    games = sum(first) + sum(second)
    return MatchRecord(key=key, round=round_, agent_a=a, agent_b=b, seed=7, games=games,
                       a_first=first, a_second=second)


@pytest.fixture
def store(tmp_path: Path):
    s = LeagueStore.create(tmp_path / "lg", "tictactoe", {"matchmaking": "pfsp", "n": [1, 2]})
    s.add_agent("random", "reference", "random")
    s.add_agent("main", "learner", "random")
    yield s
    s.close()


def test_create_open_keeps_game_config_and_agents(store: LeagueStore) -> None:
    again = LeagueStore.open(store.directory)
    try:
        assert again.game == "tictactoe"
        assert again.config == {"matchmaking": "pfsp", "n": [1, 2]}
        assert [a.name for a in again.agents()] == ["random", "main"]
        assert [a.name for a in again.agents("learner")] == ["main"]
        assert again.agent("random").role == "reference"
        with pytest.raises(TlmError, match="no agent 'nobody'"):
            again.agent("nobody")
    finally:
        again.close()


def test_create_refuses_existing_league_and_unknown_game(store: LeagueStore,
                                                         tmp_path: Path) -> None:
    with pytest.raises(TlmError, match="already holds a league"):
        LeagueStore.create(store.directory, "tictactoe", {})
    with pytest.raises(TlmError, match="unknown game"):
        LeagueStore.create(tmp_path / "other", "no_such_game", {})
    assert not (tmp_path / "other" / LeagueStore.DB_NAME).exists()


def test_open_non_league_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TlmError, match="is not a league directory"):
        LeagueStore.open(tmp_path)
    (tmp_path / LeagueStore.DB_NAME).write_bytes(b"not a database at all" * 100)
    with pytest.raises(TlmError, match="not a readable league database"):
        LeagueStore.open(tmp_path, readonly=True)


def test_bad_agents_are_refused(store: LeagueStore) -> None:
    with pytest.raises(TlmError, match="already has an agent"):
        store.add_agent("main", "learner", "random")
    with pytest.raises(TlmError, match="unknown league role"):
        store.add_agent("x", "coach", "random")
    with pytest.raises(TlmError, match="bad league agent name"):
        store.add_agent("a/b", "reference", "random")
    with pytest.raises(TlmError, match="unknown parent"):
        store.add_agent("s", "snapshot", "random", parent="ghost")
    with pytest.raises(TlmError, match="does not exist"):
        store.add_agent("s", "snapshot", "random", checkpoint=store.directory / "missing")
    assert not store.has_agent("s")


def test_recording_the_same_match_key_twice_counts_once(store: LeagueStore) -> None:
    m = _match("r0/main-random/0")
    assert store.record_match(m) is True
    assert store.record_match(m) is False
    log = store.matches()
    assert len(log) == 1 and store.totals() == (1, 10)
    rec = log[0]
    assert (rec.wins, rec.draws, rec.losses) == (5, 3, 2)
    assert rec.score == pytest.approx(0.65) and rec.id == 1
    assert store.record_match(_match("r0/main-random/1")) is True
    assert [r.key for r in store.matches(since_id=1)] == ["r0/main-random/1"]


def test_bad_matches_are_refused_and_not_written(store: LeagueStore) -> None:
    with pytest.raises(TlmError, match="do not add up"):
        store.record_match(MatchRecord("k", 0, "main", "random", 0, 9, (3, 1, 1), (2, 2, 1)))
    with pytest.raises(TlmError, match="no agent 'ghost'"):
        store.record_match(_match("k", b="ghost"))
    with pytest.raises(TlmError, match="non-negative"):
        store.record_match(_match("k", first=(-1, 1, 1), second=(1, 0, 0)))
    assert store.matches() == []


def test_a_failed_transaction_writes_nothing(store: LeagueStore) -> None:
    store.record_match(_match("before"))
    with pytest.raises(RuntimeError), store.transaction():
        store.record_match(_match("a"))
        assert [m.key for m in store.matches()] == ["before", "a"]  # sees its own writes
        store.set_state("round", 1)
        raise RuntimeError("crash mid-round")
    assert [m.key for m in store.matches()] == ["before"] and store.get_state("round") is None
    store.record_match(_match("after"))
    assert [(m.key, m.id) for m in store.matches()] == [("before", 1), ("after", 2)]
    assert [m.key for m in store.matches(since_id=1)] == ["after"]


def test_a_tampered_snapshot_is_refused(store: LeagueStore) -> None:
    target = store.directory / "snapshots" / "main-1"
    with staged_checkpoint(target) as tmp:
        (tmp / "model.zip").write_bytes(b"weights v1")
        (tmp / "sub").mkdir()
        (tmp / "sub" / "config.json").write_text("{}")
    rec = store.add_agent("main-1", "snapshot", f"sb3:{target}/model.zip",
                          checkpoint=target, parent="main", info={"steps": 100})
    assert rec.checkpoint == "snapshots/main-1"
    assert rec.sha256 == tree_sha256(target)
    assert store.verify("main-1").info == {"steps": 100}
    (target / "sub" / "config.json").write_text('{"changed": true}')
    with pytest.raises(TlmError, match="changed since it was frozen"):
        store.verify("main-1")
    (target / "sub" / "config.json").write_text("{}")
    store.verify("main-1")
    (target / "extra.bin").write_bytes(b"")
    with pytest.raises(TlmError, match="changed since it was frozen"):
        store.verify("main-1")
    (target / "extra.bin").unlink()
    (target / "model.zip").unlink()
    with pytest.raises(TlmError, match="changed since it was frozen"):
        store.verify("main-1")


def test_only_learners_move_their_checkpoint(store: LeagueStore, tmp_path: Path) -> None:
    f = tmp_path / "ck.bin"
    f.write_bytes(b"1")
    rec = store.set_checkpoint("main", f, spec="sb3:x")
    assert rec.sha256 == tree_sha256(f) and rec.spec == "sb3:x"
    with pytest.raises(TlmError, match="frozen reference"):
        store.set_checkpoint("random", f)


def test_staged_checkpoint_is_whole_or_absent(tmp_path: Path) -> None:
    target = tmp_path / "a" / "snap"
    with pytest.raises(RuntimeError), staged_checkpoint(target) as tmp:
        (tmp / "half.bin").write_bytes(b"x")
        raise RuntimeError("killed while writing")
    assert not target.exists() and list(target.parent.iterdir()) == []
    with staged_checkpoint(target) as tmp:
        (tmp / "model.bin").write_bytes(b"v1")
    with pytest.raises(TlmError, match="already exists"), staged_checkpoint(target):
        pass
    with staged_checkpoint(target, replace=True) as tmp:
        (tmp / "model.bin").write_bytes(b"v2")
    assert (target / "model.bin").read_bytes() == b"v2"
    assert [p.name for p in target.parent.iterdir()] == ["snap"]


def test_state_and_scalars(store: LeagueStore) -> None:
    store.set_state("loop", {"round": 3, "learners": ["main"]})
    store.set_state("loop", {"round": 4, "learners": ["main"]})
    assert store.get_state("loop") == {"round": 4, "learners": ["main"]}
    assert store.get_state("missing", 5) == 5
    store.log_scalar("learner/main/win_rate", 10, 0.25)
    store.log_scalar("learner/main/win_rate", 20, 0.5)
    store.log_scalar("learner/main/win_rate", 10, 0.3)  # a resumed learner repeats a step
    store.log_scalar("learner/main_x/loss", 10, 1.0)
    store.log_scalar("LEARNER/other", 1, 1.0)
    got = store.scalars("learner/main/")
    assert [(t, s, v) for t, s, v, _ in got] == [
        ("learner/main/win_rate", 10, 0.3), ("learner/main/win_rate", 20, 0.5)]
    assert len(store.scalars("learner/")) == 3 and len(store.scalars()) == 4
    with pytest.raises(TlmError, match="not JSON"):
        store.set_state("bad", object())


def test_a_reader_sees_committed_data_while_the_writer_holds_a_transaction(
        store: LeagueStore) -> None:
    store.record_match(_match("m1"))
    reader = LeagueStore.open(store.directory, readonly=True)
    try:
        with store.transaction():
            store.record_match(_match("m2"))
            store.set_state("round", 1)
            # The writer holds the write lock: the reader is not blocked and sees
            # the last commit, not the open transaction.
            assert [m.key for m in reader.matches()] == ["m1"]
            assert reader.get_state("round") is None
            assert reader.totals() == (1, 10)
        assert [m.key for m in reader.matches()] == ["m1", "m2"]
        assert reader.get_state("round") == 1
        with pytest.raises(TlmError, match="read-only"):
            reader.record_match(_match("m3"))
    finally:
        reader.close()
    mode = sqlite3.connect(store.directory / LeagueStore.DB_NAME).execute(
        "PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_a_second_writer_waits_instead_of_failing(store: LeagueStore) -> None:
    other = LeagueStore.open(store.directory)
    try:
        store.record_match(_match("from-first"))
        other.record_match(_match("from-second"))
        assert {m.key for m in store.matches()} == {"from-first", "from-second"}
    finally:
        other.close()


def test_a_newer_schema_is_refused(store: LeagueStore) -> None:
    conn = sqlite3.connect(store.directory / LeagueStore.DB_NAME)
    conn.execute("PRAGMA user_version=99")
    conn.commit()
    conn.close()
    with pytest.raises(TlmError, match="schema version 99"):
        LeagueStore.open(store.directory, readonly=True)


def test_league_member_as_an_agent_spec(tmp_path: Path) -> None:
    import numpy as np

    import arena
    import students

    lg = tmp_path / "lg"
    store = LeagueStore.create(lg, "tictactoe", {})
    try:
        target = lg / "snapshots" / "s1"
        with staged_checkpoint(target) as tmp:
            students.save_student(students.build_student("mlp:16x1", "tictactoe", seed=0),
                                  tmp / "student")
        store.add_agent("s1", "snapshot", "{league}/snapshots/s1/student", checkpoint=target)
        store.add_agent("s1-relative", "snapshot", "snapshots/s1/student", checkpoint=target)
        store.add_agent("perfect", "reference", "perfect")
        store.add_agent("loop", "reference", f"league:{lg}/loop")
    finally:
        store.close()
    direct = arena.make_agent(str(target / "student"), "tictactoe")
    member = arena.make_agent(f"league:{lg}/s1", "tictactoe")
    assert member.name == f"league:{lg}/s1"
    game = arena.get_game("tictactoe")
    obs, mask = arena.make_engine(game).observe(arena.make_engine(game).reset(4, seed=0))
    assert np.array_equal(direct.act(obs, mask, np.random.default_rng(0)),
                          member.act(obs, mask, np.random.default_rng(0)))
    relative = arena.make_agent(f"league:{lg}/s1-relative", "tictactoe")  # cwd is elsewhere
    assert np.array_equal(direct.act(obs, mask, np.random.default_rng(0)),
                          relative.act(obs, mask, np.random.default_rng(0)))
    perfect = arena.make_agent(f"league:{lg}/perfect", "tictactoe")
    result = arena.play_matches("tictactoe", perfect, arena.make_agent("random", "tictactoe"),
                                20, seed=0)
    assert (result.outcome >= 0).all()  # the stored spec really is the perfect player
    with pytest.raises(TlmError, match="plays tictactoe, not connect_four"):
        arena.make_agent(f"league:{lg}/s1", "connect_four")
    with pytest.raises(TlmError, match="no agent 'ghost'"):
        arena.make_agent(f"league:{lg}/ghost", "tictactoe")
    with pytest.raises(TlmError, match="is not a league directory"):
        arena.make_agent(f"league:{tmp_path}/s1", "tictactoe")
    with pytest.raises(TlmError, match="DIR/NAME"):
        arena.make_agent("league:s1", "tictactoe")
    with pytest.raises(TlmError, match="stored as itself"):
        arena.make_agent(f"league:{lg}/loop", "tictactoe")
    (target / "student" / "config.json").write_text("{}")
    with pytest.raises(TlmError, match="changed since it was frozen"):
        arena.make_agent(f"league:{lg}/s1", "tictactoe")
