"""The league's store: one SQLite database (``league.db``, WAL) per league directory.

It holds every agent (learners, frozen snapshots, fixed references), every match
between two of them, a small key/value ``state`` table for the loop's progress, the
learners' ``scalars`` (training curves) and the league's config, fixed at creation.
The match log is the league's truth: ratings, payoffs and matchmaking are all
recomputed from it, and a match is written once, in one transaction, under a unique
key, so a league killed at any moment and resumed never loses a finished match nor
counts one twice.

Snapshots are frozen: their checkpoint's SHA-256 is stored with them and checked
again (:meth:`LeagueStore.verify`) before they are loaded. Checkpoints are written
into a temp directory beside their final name and renamed (:func:`staged_checkpoint`).

The database runs in WAL mode with a busy timeout, so ``tlm league status`` (a
read-only connection) reads a league while its loop writes. One :class:`LeagueStore`
is one connection; use one per thread.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from arena.core import TlmError
from arena.games import get_game
from arena.ratings import MatchRecord
from arena.runstate import replace_directory

ROLES = ("learner", "snapshot", "reference")
"""What an agent is in a league: trained now, a frozen copy of a learner, or fixed."""

SCHEMA_VERSION = 1
"""Bumped whenever the tables change; a store refuses a newer database."""

BUSY_TIMEOUT_S = 30.0
"""How long a connection waits for another's write lock before giving up."""

_SCHEMA = """
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE agents (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL CHECK (role IN ('learner', 'snapshot', 'reference')),
    spec TEXT NOT NULL,
    checkpoint TEXT,
    sha256 TEXT,
    parent TEXT,
    created REAL NOT NULL,
    info TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE matches (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    round INTEGER NOT NULL,
    agent_a TEXT NOT NULL REFERENCES agents(name),
    agent_b TEXT NOT NULL REFERENCES agents(name),
    seed INTEGER NOT NULL,
    games INTEGER NOT NULL,
    first_wins INTEGER NOT NULL,
    first_draws INTEGER NOT NULL,
    first_losses INTEGER NOT NULL,
    second_wins INTEGER NOT NULL,
    second_draws INTEGER NOT NULL,
    second_losses INTEGER NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX matches_round ON matches(round);
CREATE TABLE state (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE scalars (
    tag TEXT NOT NULL,
    step INTEGER NOT NULL,
    value REAL NOT NULL,
    time REAL NOT NULL,
    PRIMARY KEY (tag, step)
);
"""

_MATCH_COLUMNS = (
    "id, key, round, agent_a, agent_b, seed, games, first_wins, first_draws, first_losses, "
    "second_wins, second_draws, second_losses, created"
)


@dataclass(frozen=True)
class AgentRecord:
    """One league member.

    Attributes:
        name: unique in the league (no ``/``).
        role: ``learner``, ``snapshot`` or ``reference``.
        spec: the agent spec that builds it (``arena.make_agent(spec, game)``).
        checkpoint: its checkpoint (file or directory), relative to the league
            directory when inside it, else absolute; ``None`` for built-in agents.
        sha256: :func:`tree_sha256` of the checkpoint when it was added.
        parent: the learner a snapshot was taken from.
        created: Unix time it was added.
        info: free JSON (learner steps at snapshot time, the reason for it, ...).
    """

    name: str
    role: str
    spec: str
    checkpoint: str | None
    sha256: str | None
    parent: str | None
    created: float
    info: dict[str, Any] = field(default_factory=dict)


LEAGUE_PLACEHOLDER = "{league}"
"""Written in a stored spec, stands for the league directory's absolute path."""


def resolve_spec(store: LeagueStore, spec: str) -> str:
    """A stored spec made independent of the working directory.

    :data:`LEAGUE_PLACEHOLDER` becomes the league directory, and a relative path (the
    whole spec, the argument of ``kind:PATH``, or the path of ``kind:PATH,OPTIONS`` such
    as ``puct:PATH,sims=N``) that exists inside the league directory is made absolute
    there, since a league stores its own checkpoints relative to itself.
    """
    spec = spec.replace(LEAGUE_PLACEHOLDER, str(store.directory))
    kind, sep, arg = spec.partition(":")
    if sep and arg:
        path, comma, options = (
            (arg, "", "") if (store.directory / arg).exists() else arg.partition(","))
        if path and not Path(path).is_absolute() and (store.directory / path).exists():
            return f"{kind}:{store.directory / path}{comma}{options}"
    if not sep and not Path(spec).is_absolute() and (store.directory / spec).exists():
        return str(store.directory / spec)
    return spec


def tree_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes, or of a directory's files.

    A directory hashes every regular file below it, in sorted order of relative POSIX
    paths, each as its path, a NUL byte, its size and its bytes; hidden temp files are
    not skipped, so anything written into a frozen checkpoint changes its hash.

    Raises:
        TlmError: ``path`` does not exist.
    """
    path = Path(path)
    if path.is_file():
        h = hashlib.sha256()
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        return h.hexdigest()
    if not path.is_dir():
        raise TlmError(f"checkpoint {path} does not exist")
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file())
    for p in sorted(files, key=lambda q: q.relative_to(path).as_posix()):
        rel = p.relative_to(path).as_posix().encode()
        h.update(rel + b"\0" + str(p.stat().st_size).encode() + b"\0")
        with p.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


@contextmanager
def staged_checkpoint(directory: str | Path, replace: bool = False) -> Iterator[Path]:
    """A hidden temp directory beside ``directory`` that is renamed to it on success.

    The parent is created if needed. If the block raises, the temp directory is
    removed and ``directory`` is left as it was, so a checkpoint is either whole or
    absent.

    Args:
        directory: the checkpoint's final directory.
        replace: if ``directory`` already exists (a checkpoint written by a league
            that was killed before it recorded it), swap it for the new one;
            otherwise an existing non-empty ``directory`` is an error.

    Raises:
        TlmError: ``directory`` exists (and ``replace`` is false).
    """
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    exists = directory.exists() and (not directory.is_dir() or any(directory.iterdir()))
    if exists and not replace:
        raise TlmError(f"checkpoint {directory} already exists")
    with replace_directory(directory) as tmp:
        yield tmp


def _check_name(name: str) -> str:
    if not name or name != name.strip() or "/" in name or "\\" in name:
        raise TlmError(f"bad league agent name {name!r} (non-empty, no '/', no spaces around)")
    return name


def _triple(value: Any, what: str) -> tuple[int, int, int]:
    try:
        t = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        raise TlmError(f"{what} must be three integers (wins, draws, losses)") from None
    if len(t) != 3 or min(t) < 0:
        raise TlmError(f"{what} must be three non-negative integers, got {value!r}")
    return (t[0], t[1], t[2])


class LeagueStore:
    """One league directory's database. Build it with :meth:`create` or :meth:`open`.

    Attributes:
        directory: the league directory (absolute).
        game: the game the league plays.
        config: the league's configuration as stored at creation.
        readonly: whether this connection only reads.
    """

    DB_NAME = "league.db"

    def __init__(self, directory: Path, conn: sqlite3.Connection, readonly: bool) -> None:
        """Use :meth:`create` or :meth:`open`."""
        self.directory = directory
        self.readonly = readonly
        self._conn = conn
        self._depth = 0
        self._log: list[MatchRecord] = []
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        self.game: str = json.loads(meta["game"])
        self.config: dict[str, Any] = json.loads(meta["config"])
        self.created: float = json.loads(meta["created"])

    # -- opening ---------------------------------------------------------------------

    @classmethod
    def create(cls, directory: str | Path, game: str, config: dict[str, Any]) -> LeagueStore:
        """Create a league in ``directory`` (made if needed) and open it for writing.

        Args:
            directory: the league directory.
            game: a registered game name.
            config: the league's configuration (JSON-serialisable), kept as it was.

        Raises:
            TlmError: a league already lives there, the game is unknown, or the
                config is not JSON.
        """
        directory = Path(directory).resolve()
        game = get_game(game).name
        db = directory / cls.DB_NAME
        if db.exists():
            raise TlmError(f"{directory} already holds a league ({cls.DB_NAME})")
        try:
            config_json = json.dumps(config, sort_keys=True)
        except (TypeError, ValueError) as e:
            raise TlmError(f"league config is not JSON-serialisable: {e}") from None
        directory.mkdir(parents=True, exist_ok=True)
        # Built under a temp name and renamed, so a crash never leaves half a schema.
        tmp = str(directory / f".{cls.DB_NAME}.{os.getpid()}.{time.time_ns()}.tmp")
        try:
            conn = sqlite3.connect(tmp, isolation_level=None)
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("BEGIN")
                for stmt in _SCHEMA.split(";"):
                    if stmt.strip():
                        conn.execute(stmt)
                conn.executemany(
                    "INSERT INTO meta (key, value) VALUES (?, ?)",
                    [("game", json.dumps(game)), ("config", config_json),
                     ("created", json.dumps(time.time())),
                     ("schema_version", json.dumps(SCHEMA_VERSION))],
                )
                conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                conn.execute("COMMIT")
            finally:
                conn.close()
            if db.exists():
                raise TlmError(f"{directory} already holds a league ({cls.DB_NAME})")
            os.replace(tmp, db)
        finally:
            Path(tmp).unlink(missing_ok=True)
            for suffix in ("-wal", "-shm"):
                Path(tmp + suffix).unlink(missing_ok=True)
        return cls.open(directory)

    @classmethod
    def open(cls, directory: str | Path, readonly: bool = False) -> LeagueStore:
        """Open the league in ``directory``.

        A read-only store never writes and never blocks the league's writer: it reads
        the last committed state (WAL).

        Raises:
            TlmError: ``directory`` is not a league directory, or its database is
                damaged or from a newer tlm.
        """
        directory = Path(directory).resolve()
        db = directory / cls.DB_NAME
        if not db.is_file():
            raise TlmError(f"{directory} is not a league directory (no {cls.DB_NAME})")
        try:
            if readonly:
                conn = sqlite3.connect(f"file:{quote(str(db))}?mode=ro", uri=True,
                                       timeout=BUSY_TIMEOUT_S, isolation_level=None,
                                       check_same_thread=False)
            else:
                conn = sqlite3.connect(db, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                                       check_same_thread=False)
                conn.execute("PRAGMA journal_mode=WAL")
                # WAL with synchronous=NORMAL survives a killed process (not power loss
                # of the last commits), at a fraction of FULL's fsyncs.
                conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
            conn.execute("PRAGMA foreign_keys=ON")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.DatabaseError as e:
            raise TlmError(f"{db} is not a readable league database: {e}") from None
        if version != SCHEMA_VERSION:
            conn.close()
            raise TlmError(
                f"{db} has league schema version {version}; this tlm reads {SCHEMA_VERSION}"
            )
        try:
            return cls(directory, conn, readonly)
        except (sqlite3.DatabaseError, KeyError) as e:
            conn.close()
            raise TlmError(f"{db} is not a readable league database: {e}") from None

    def close(self) -> None:
        """Close the connection (idempotent)."""
        self._conn.close()

    def __enter__(self) -> LeagueStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transactions ----------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group writes atomically: ``BEGIN IMMEDIATE`` ... ``COMMIT`` (rollback on error).

        Nested blocks join the outermost transaction.
        """
        self._writable()
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self._conn.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield
        except BaseException:
            self._depth = 0
            self._conn.execute("ROLLBACK")
            self._log = []  # it may hold matches of the rolled-back transaction
            raise
        self._depth = 0
        self._conn.execute("COMMIT")

    def _writable(self) -> None:
        if self.readonly:
            raise TlmError(f"league {self.directory} was opened read-only")

    # -- agents ----------------------------------------------------------------------

    def add_agent(
        self,
        name: str,
        role: str,
        spec: str,
        checkpoint: str | Path | None = None,
        parent: str | None = None,
        info: dict[str, Any] | None = None,
    ) -> AgentRecord:
        """Add a member; its checkpoint (if any) is hashed now and frozen.

        Args:
            name: unique name (no ``/``).
            role: one of :data:`ROLES`.
            spec: the agent spec that builds it.
            checkpoint: the file or directory the spec loads, if any (must exist).
            parent: the learner a snapshot comes from (must be a member).
            info: free JSON kept with it.

        Raises:
            TlmError: a bad name or role, a taken name, an unknown parent, a missing
                checkpoint.
        """
        self._writable()
        _check_name(name)
        if role not in ROLES:
            raise TlmError(f"unknown league role {role!r} (known: {', '.join(ROLES)})")
        if not spec or not spec.strip():
            raise TlmError(f"league agent {name!r} has an empty spec")
        if parent is not None and not self.has_agent(parent):
            raise TlmError(f"league agent {name!r}: unknown parent {parent!r}")
        rel, digest = self._checkpoint_ref(checkpoint) if checkpoint is not None else (None, None)
        try:
            info_json = json.dumps(info or {}, sort_keys=True)
        except (TypeError, ValueError) as e:
            raise TlmError(f"league agent {name!r}: info is not JSON-serialisable: {e}") from None
        record = AgentRecord(name, role, spec, rel, digest, parent, time.time(), info or {})
        try:
            with self.transaction():
                self._conn.execute(
                    "INSERT INTO agents (name, role, spec, checkpoint, sha256, parent, created, "
                    "info) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (name, role, spec, rel, digest, parent, record.created, info_json),
                )
        except sqlite3.IntegrityError:
            raise TlmError(f"league {self.directory} already has an agent {name!r}") from None
        return record

    def set_checkpoint(
        self, name: str, checkpoint: str | Path, spec: str | None = None
    ) -> AgentRecord:
        """Point a *learner* at a new checkpoint (re-hashed), optionally with a new spec.

        Snapshots and references are frozen and refuse this.

        Raises:
            TlmError: unknown agent, not a learner, missing checkpoint.
        """
        self._writable()
        rec = self.agent(name)
        if rec.role != "learner":
            raise TlmError(f"league agent {name!r} is a frozen {rec.role}; only learners move")
        rel, digest = self._checkpoint_ref(checkpoint)
        with self.transaction():
            self._conn.execute(
                "UPDATE agents SET checkpoint = ?, sha256 = ?, spec = ? WHERE name = ?",
                (rel, digest, spec or rec.spec, name),
            )
        return self.agent(name)

    def _checkpoint_ref(self, checkpoint: str | Path) -> tuple[str, str]:
        """How the store records a checkpoint: its path (relative to the league
        directory when inside it) and the SHA-256 of its tree."""
        ck = Path(checkpoint)
        if not ck.is_absolute():
            ck = Path.cwd() / ck
        digest = tree_sha256(ck)
        ck = ck.resolve()
        try:
            return ck.relative_to(self.directory).as_posix(), digest
        except ValueError:
            return str(ck), digest

    def has_agent(self, name: str) -> bool:
        """Whether ``name`` is a member."""
        row = self._conn.execute("SELECT 1 FROM agents WHERE name = ?", (name,)).fetchone()
        return row is not None

    @staticmethod
    def _agent_from_row(row: tuple[Any, ...]) -> AgentRecord:
        name, role, spec, checkpoint, sha, parent, created, info = row
        return AgentRecord(name, role, spec, checkpoint, sha, parent, created, json.loads(info))

    def agent(self, name: str) -> AgentRecord:
        """The member called ``name``.

        Raises:
            TlmError: no such member.
        """
        row = self._conn.execute(
            "SELECT name, role, spec, checkpoint, sha256, parent, created, info "
            "FROM agents WHERE name = ?", (name,)
        ).fetchone()
        if row is None:
            raise TlmError(f"league {self.directory} has no agent {name!r}")
        return self._agent_from_row(row)

    def agents(self, role: str | None = None) -> list[AgentRecord]:
        """Members in the order they were added, optionally only those of ``role``."""
        sql = "SELECT name, role, spec, checkpoint, sha256, parent, created, info FROM agents"
        args: tuple[Any, ...] = ()
        if role is not None:
            if role not in ROLES:
                raise TlmError(f"unknown league role {role!r} (known: {', '.join(ROLES)})")
            sql += " WHERE role = ?"
            args = (role,)
        rows = self._conn.execute(sql + " ORDER BY rowid", args).fetchall()
        return [self._agent_from_row(r) for r in rows]

    def checkpoint_path(self, record: AgentRecord) -> Path | None:
        """The absolute path of ``record``'s checkpoint, or ``None``."""
        if record.checkpoint is None:
            return None
        p = Path(record.checkpoint)
        return p if p.is_absolute() else self.directory / p

    def verify(self, name: str) -> AgentRecord:
        """Re-hash ``name``'s checkpoint and compare with the stored hash.

        Returns:
            the member's record (unchanged; members without a checkpoint pass).

        Raises:
            TlmError: the checkpoint is missing or its contents changed.
        """
        rec = self.agent(name)
        path = self.checkpoint_path(rec)
        if path is None or rec.sha256 is None:
            return rec
        if not path.exists():
            raise TlmError(f"league agent {name!r}: checkpoint {path} is missing")
        if tree_sha256(path) != rec.sha256:
            raise TlmError(
                f"league agent {name!r}: checkpoint {path} changed since it was frozen "
                f"(sha256 mismatch); refusing to load it"
            )
        return rec

    # -- matches ---------------------------------------------------------------------

    def record_match(self, m: MatchRecord) -> bool:
        """Append a match to the log, in one transaction.

        Returns:
            True if it was written, False if its key was already there (nothing changes).

        Raises:
            TlmError: unknown agents, or counts that do not add up to ``games``.
        """
        self._writable()
        a_first = _triple(m.a_first, "a_first")
        a_second = _triple(m.a_second, "a_second")
        if sum(a_first) + sum(a_second) != m.games or m.games < 0:
            raise TlmError(
                f"match {m.key!r}: seat counts {a_first} + {a_second} do not add up to "
                f"{m.games} games"
            )
        for n in (m.agent_a, m.agent_b):
            if not self.has_agent(n):
                raise TlmError(f"match {m.key!r}: league has no agent {n!r}")
        created = m.created or time.time()
        with self.transaction():
            cur = self._conn.execute(
                f"INSERT OR IGNORE INTO matches ({_MATCH_COLUMNS}) "
                "VALUES (NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (m.key, int(m.round), m.agent_a, m.agent_b, int(m.seed), int(m.games),
                 *a_first, *a_second, created),
            )
            return cur.rowcount == 1

    def matches(self, since_id: int = 0) -> list[MatchRecord]:
        """The match log in order, only matches with ``id > since_id``.

        The log is append-only and ids grow in commit order (writers are serialised),
        so the store keeps what it has read and fetches only newer rows: reading the
        whole log every round costs what the new matches cost.
        """
        last = self._log[-1].id if self._log else 0
        rows = self._conn.execute(
            f"SELECT {_MATCH_COLUMNS} FROM matches WHERE id > ? ORDER BY id", (last,)
        ).fetchall()
        self._log.extend(
            MatchRecord(key=r[1], round=r[2], agent_a=r[3], agent_b=r[4], seed=r[5], games=r[6],
                        a_first=(r[7], r[8], r[9]), a_second=(r[10], r[11], r[12]),
                        created=r[13], id=r[0])
            for r in rows
        )
        if since_id <= 0:
            return list(self._log)
        ids = [m.id or 0 for m in self._log]
        return self._log[bisect.bisect_right(ids, since_id):]

    def has_match(self, key: str) -> bool:
        """Whether a match with ``key`` is in the log."""
        return self._conn.execute("SELECT 1 FROM matches WHERE key = ?", (key,)).fetchone() \
            is not None

    def totals(self) -> tuple[int, int]:
        """(matches, games) in the log, without reading it."""
        n, g = self._conn.execute("SELECT COUNT(*), COALESCE(SUM(games), 0) FROM matches") \
            .fetchone()
        return int(n), int(g)

    # -- state and scalars -----------------------------------------------------------

    def get_state(self, key: str, default: Any = None) -> Any:
        """The JSON value stored under ``key``, or ``default``."""
        row = self._conn.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    def set_state(self, key: str, value: Any) -> None:
        """Store a JSON value under ``key`` (replacing it)."""
        self._writable()
        try:
            text = json.dumps(value, sort_keys=True)
        except (TypeError, ValueError) as e:
            raise TlmError(f"league state {key!r} is not JSON-serialisable: {e}") from None
        with self.transaction():
            self._conn.execute(
                "INSERT INTO state (key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, text)
            )

    def log_scalar(self, tag: str, step: int, value: float) -> None:
        """Record a curve point (``learner/main/win_rate`` at ``step``); same (tag, step)
        overwrites, so a resumed learner's repeated steps are not doubled."""
        self._writable()
        with self.transaction():
            self._conn.execute(
                "INSERT INTO scalars (tag, step, value, time) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(tag, step) DO UPDATE SET value = excluded.value, time = excluded.time",
                (tag, int(step), float(value), time.time()),
            )

    def scalars(self, tag_prefix: str = "") -> list[tuple[str, int, float, float]]:
        """(tag, step, value, time) of every point whose tag starts with ``tag_prefix``,
        ordered by tag then step."""
        rows = self._conn.execute(
            "SELECT tag, step, value, time FROM scalars WHERE substr(tag, 1, ?) = ? "
            "ORDER BY tag, step", (len(tag_prefix), tag_prefix)
        ).fetchall()
        return [(str(t), int(s), float(v), float(w)) for t, s, v, w in rows]
