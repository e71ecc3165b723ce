"""Persistence for what must survive a restart: registrations and call records.

Everything goes through the small :class:`IStore` interface so that another backend (PostgreSQL for
several nodes) can replace the embedded SQLite one.  :class:`SQLiteStore` never makes the reactor
thread wait on disk: writes are queued to one writer thread that commits them in batches.
"""

from __future__ import annotations

import queue
import sqlite3
import threading
from dataclasses import dataclass
from typing import Any, Final

from twisted.logger import Logger
from zope.interface import Interface, implementer

__all__ = ["SCHEMA_VERSION", "Binding", "CallRecord", "IStore", "MemoryStore", "SQLiteStore"]

log = Logger()


@dataclass(frozen=True, slots=True)
class Binding:
    """One registered contact of an address of record (an extension)."""

    aor: str
    contact: str
    expires_at: float
    registered_at: float
    call_id: str
    cseq: int
    q: float = 1.0
    transport: str = "udp"
    source_host: str = ""
    source_port: int = 0
    user_agent: str = ""
    instance_id: str | None = None
    reg_id: int | None = None


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One finished call, as an administrator reads it in the call log."""

    call_id: str
    caller: str
    callee: str
    start: float
    answer: float | None
    end: float
    cause: str


class IStore(Interface):
    """Durable storage of bindings and call records; writes may complete asynchronously."""

    def load_bindings(now: float) -> list[Binding]:
        """Return the bindings unexpired at ``now``; purge the expired ones."""

    def save_binding(b: Binding) -> None:
        """Insert or replace the binding keyed by (aor, contact)."""

    def delete_binding(aor: str, contact: str) -> None:
        """Delete one binding, if present."""

    def delete_aor(aor: str) -> None:
        """Delete every binding of ``aor``."""

    def add_call_record(r: CallRecord) -> None:
        """Append a call record."""

    def call_records(limit: int = 100) -> list[CallRecord]:
        """Return up to ``limit`` committed call records, newest (latest start) first."""

    def get_state(key: str) -> str | None:
        """A feature's saved value (synchronous read; values are cached by the store)."""

    def set_state(key: str, value: str) -> None:
        """Save a feature's value (queued write)."""

    def flush(timeout: float = 10.0) -> bool:
        """Block until every queued write is committed or ``timeout`` passes; True if drained."""

    def close() -> None:
        """Commit what is queued and release resources; later writes are dropped."""


SCHEMA_VERSION: Final = 2

# MIGRATIONS[n] takes a database from schema version n to n + 1.
MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (
    (
        """CREATE TABLE bindings (
            aor TEXT NOT NULL,
            contact TEXT NOT NULL,
            expires_at REAL NOT NULL,
            registered_at REAL NOT NULL,
            call_id TEXT NOT NULL,
            cseq INTEGER NOT NULL,
            q REAL NOT NULL,
            transport TEXT NOT NULL,
            source_host TEXT NOT NULL,
            source_port INTEGER NOT NULL,
            user_agent TEXT NOT NULL,
            instance_id TEXT,
            reg_id INTEGER,
            PRIMARY KEY (aor, contact)
        ) WITHOUT ROWID""",
        "CREATE INDEX bindings_expires_at ON bindings (expires_at)",
        """CREATE TABLE call_records (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            call_id TEXT NOT NULL,
            caller TEXT NOT NULL,
            callee TEXT NOT NULL,
            start_time REAL NOT NULL,
            answer_time REAL,
            end_time REAL NOT NULL,
            cause TEXT NOT NULL
        )""",
        "CREATE INDEX call_records_start_time ON call_records (start_time)",
    ),
    (
        # Small key/value state of features (e.g. round-robin positions), JSON values.
        "CREATE TABLE state (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
    ),
)

_BINDING_COLUMNS: Final = (
    "aor, contact, expires_at, registered_at, call_id, cseq, q, transport, "
    "source_host, source_port, user_agent, instance_id, reg_id"
)
_SAVE_BINDING: Final = f"INSERT OR REPLACE INTO bindings ({_BINDING_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)"
_ADD_CALL_RECORD: Final = (
    "INSERT INTO call_records (call_id, caller, callee, start_time, answer_time, end_time, cause) "
    "VALUES (?,?,?,?,?,?,?)"
)

# Operations queued to the writer thread: (kind, SQL, parameters).  Flush markers are Events.
_Op = tuple[str, str, tuple[Any, ...]]
_STOP: Final = object()


def _binding_row(b: Binding) -> tuple[Any, ...]:
    return (
        b.aor, b.contact, b.expires_at, b.registered_at, b.call_id, b.cseq, b.q, b.transport,
        b.source_host, b.source_port, b.user_agent, b.instance_id, b.reg_id,
    )


def _connect(path: str) -> sqlite3.Connection:
    """Open ``path`` in autocommit mode (transactions are explicit) with the pragmas we rely on."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 5000")
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


def _migrate(conn: sqlite3.Connection, path: str) -> None:
    """Create or upgrade the schema to SCHEMA_VERSION, each step in its own transaction."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = conn.execute("SELECT version FROM schema_version").fetchone()
        if row is None:
            conn.execute("INSERT INTO schema_version (version) VALUES (0)")
            version = 0
        else:
            version = int(row[0])
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    if version > SCHEMA_VERSION:
        raise RuntimeError(
            f"{path}: database schema version {version} is newer than this minisip supports ({SCHEMA_VERSION})"
        )
    while version < SCHEMA_VERSION:
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in MIGRATIONS[version]:
                conn.execute(statement)
            version += 1
            conn.execute("UPDATE schema_version SET version = ?", (version,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        log.info("Store {path} migrated to schema version {version}", path=path, version=version)


@implementer(IStore)
class SQLiteStore:
    """SQLite (WAL) store: synchronous reads, writes batched by one background thread."""

    def __init__(self, path: str, *, max_batch: int = 5000) -> None:
        self.path = path
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._closed = False
        # Held by the writer around each batch (tests hold it to make batching deterministic).
        self._batch_lock = threading.Lock()
        self.batches_committed = 0
        self._read_lock = threading.Lock()
        self._state_cache: dict[str, str | None] = {}
        self._reader = _connect(path)
        try:
            mode = self._reader.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                log.warn("Store {path}: WAL journal mode unavailable, using {mode}", path=path, mode=mode)  # noqa: G010
            _migrate(self._reader, path)
            self._writer_conn = _connect(path)
        except BaseException:
            self._reader.close()
            raise
        self._thread = threading.Thread(target=self._run, name=f"minisip-store-writer:{path}", daemon=True)
        self._thread.start()

    # -- reads (synchronous, caller's thread) -------------------------------------------------------

    def load_bindings(self, now: float) -> list[Binding]:
        with self._read_lock:
            rows = self._reader.execute(
                f"SELECT {_BINDING_COLUMNS} FROM bindings WHERE expires_at > ?", (now,)
            ).fetchall()
        self._enqueue(("purge", "DELETE FROM bindings WHERE expires_at <= ?", (now,)))
        return [Binding(*row) for row in rows]

    def call_records(self, limit: int = 100) -> list[CallRecord]:
        with self._read_lock:
            rows = self._reader.execute(
                "SELECT call_id, caller, callee, start_time, answer_time, end_time, cause FROM call_records "
                "ORDER BY start_time DESC, id DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [CallRecord(*row) for row in rows]

    def get_state(self, key: str) -> str | None:
        if key in self._state_cache:
            return self._state_cache[key]
        with self._read_lock:
            row = self._reader.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        value = row[0] if row is not None else None
        self._state_cache[key] = value
        return value

    def set_state(self, key: str, value: str) -> None:
        self._state_cache[key] = value
        self._enqueue(("set_state", "INSERT OR REPLACE INTO state (key, value) VALUES (?, ?)", (key, value)))

    def journal_mode(self) -> str:
        """The journal mode in force (``wal`` normally)."""
        with self._read_lock:
            return str(self._reader.execute("PRAGMA journal_mode").fetchone()[0]).lower()

    # -- writes (queued, never block the caller) ----------------------------------------------------

    def save_binding(self, b: Binding) -> None:
        self._enqueue(("save_binding", _SAVE_BINDING, _binding_row(b)))

    def delete_binding(self, aor: str, contact: str) -> None:
        self._enqueue(("delete_binding", "DELETE FROM bindings WHERE aor = ? AND contact = ?", (aor, contact)))

    def delete_aor(self, aor: str) -> None:
        self._enqueue(("delete_aor", "DELETE FROM bindings WHERE aor = ?", (aor,)))

    def add_call_record(self, r: CallRecord) -> None:
        self._enqueue(
            ("add_call_record", _ADD_CALL_RECORD, (r.call_id, r.caller, r.callee, r.start, r.answer, r.end, r.cause))
        )

    def _enqueue(self, op: _Op) -> None:
        if self._closed:
            log.warn("Store {path} is closed; dropped {kind}", path=self.path, kind=op[0])  # noqa: G010
            return
        self._queue.put(op)

    def flush(self, timeout: float = 10.0) -> bool:
        if self._closed or not self._thread.is_alive():
            return self._queue.empty()
        done = threading.Event()
        self._queue.put(done)
        return done.wait(timeout)

    def close(self, timeout: float = 30.0) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.error("Store {path}: writer thread did not finish within {timeout}s", path=self.path, timeout=timeout)
        with self._read_lock:
            self._reader.close()

    # -- writer thread ------------------------------------------------------------------------------

    def _run(self) -> None:
        conn = self._writer_conn
        stopping = False
        try:
            while not stopping:
                first = self._queue.get()
                with self._batch_lock:
                    batch: list[_Op] = []
                    markers: list[threading.Event] = []
                    item: object = first
                    while True:
                        if item is _STOP:
                            stopping = True
                        elif isinstance(item, threading.Event):
                            markers.append(item)
                        else:
                            batch.append(item)  # type: ignore[arg-type]
                        if stopping or len(batch) >= self._max_batch:
                            break
                        try:
                            item = self._queue.get_nowait()
                        except queue.Empty:
                            break
                    if batch:
                        self._commit(conn, batch)
                    for marker in markers:
                        marker.set()
        finally:
            conn.close()
            # Release anyone still waiting in flush() after a stop.
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if isinstance(item, threading.Event):
                    item.set()

    def _commit(self, conn: sqlite3.Connection, batch: list[_Op]) -> None:
        """Commit ``batch`` in one transaction; on failure retry each write alone so one bad write loses only itself."""
        try:
            self._execute(conn, batch)
            self.batches_committed += 1
            return
        except Exception as e:  # noqa: BLE001 - any failure: find the culprit below
            log.debug("Store {path}: batch of {n} failed ({e}), retrying one by one", path=self.path, n=len(batch), e=e)
        for op in batch:
            try:
                self._execute(conn, [op])
                self.batches_committed += 1
            except Exception:  # noqa: BLE001 - logged; the writer must survive
                log.failure("Store {path}: {kind} failed", path=self.path, kind=op[0])

    @staticmethod
    def _execute(conn: sqlite3.Connection, ops: list[_Op]) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Consecutive writes of the same statement go in one executemany (less Python per row).
            i, n = 0, len(ops)
            while i < n:
                sql = ops[i][1]
                j = i + 1
                while j < n and ops[j][1] is sql:
                    j += 1
                if j - i == 1:
                    conn.execute(sql, ops[i][2])
                else:
                    conn.executemany(sql, [op[2] for op in ops[i:j]])
                i = j
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise


@implementer(IStore)
class MemoryStore:
    """The same interface kept in memory, for tests and benchmarks."""

    def __init__(self) -> None:
        self._bindings: dict[tuple[str, str], Binding] = {}
        self._records: list[CallRecord] = []
        self._state: dict[str, str] = {}
        self.closed = False

    def get_state(self, key: str) -> str | None:
        return self._state.get(key)

    def set_state(self, key: str, value: str) -> None:
        self._state[key] = value

    def load_bindings(self, now: float) -> list[Binding]:
        live = []
        for key, b in list(self._bindings.items()):
            if b.expires_at > now:
                live.append(b)
            else:
                del self._bindings[key]
        return live

    def save_binding(self, b: Binding) -> None:
        self._bindings[(b.aor, b.contact)] = b

    def delete_binding(self, aor: str, contact: str) -> None:
        self._bindings.pop((aor, contact), None)

    def delete_aor(self, aor: str) -> None:
        for key in [k for k in self._bindings if k[0] == aor]:
            del self._bindings[key]

    def add_call_record(self, r: CallRecord) -> None:
        self._records.append(r)

    def call_records(self, limit: int = 100) -> list[CallRecord]:
        # Latest start first; among equal starts the later insertion first (as SQLite's id DESC).
        order = sorted(range(len(self._records)), key=lambda i: (self._records[i].start, i), reverse=True)
        return [self._records[i] for i in order[:limit]]

    def flush(self, timeout: float = 10.0) -> bool:
        return True

    def close(self) -> None:
        self.closed = True
