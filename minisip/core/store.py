"""Persistence for what must survive a restart: registrations and call records.

Everything goes through the small :class:`IStore` interface so that another backend (PostgreSQL for
several nodes) can replace the embedded SQLite one.  :class:`SQLiteStore` never makes the reactor
thread wait on disk: writes are queued to one writer thread that commits them in batches.  When the
disk cannot take them (full, read-only, I/O errors) the writes wait in a bounded queue and are
retried with backoff until they go through; one line is logged when writing stops and one when it
works again.  The data directory is private (0700 when minisip makes it) and the database files are
0600, whatever the umask.
"""

from __future__ import annotations

import collections
import os
import queue
import sqlite3
import stat
import threading
import time
from dataclasses import dataclass
from typing import Any, Final, Protocol

from twisted.logger import Logger
from zope.interface import Interface, implementer

from minisip.config import ConfigError

__all__ = [
    "DATABASE_FILE",
    "SCHEMA_VERSION",
    "Binding",
    "CallRecord",
    "IStore",
    "MemoryStore",
    "SQLiteStore",
    "open_store",
]

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
    media: str | None = None      # JSON: the relay's per-leg statistics, when the media was relayed
    conference: str | None = None  # JSON: the conference room the call went to, when it joined and left


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

    def save_active_call(call_id: str, data: str) -> None:
        """An answered call's dialogs (JSON), kept until ``delete_active_call``."""

    def delete_active_call(call_id: str) -> None:
        """The call ended normally."""

    def active_calls() -> list[tuple[str, str]]:
        """(call id, data) of every call saved and not deleted: after a crash, the calls that were up."""

    def get_state(key: str) -> str | None:
        """A feature's saved value (synchronous read; values are cached by the store)."""

    def set_state(key: str, value: str) -> None:
        """Save a feature's value (queued write)."""

    def flush(timeout: float = 10.0) -> bool:
        """Block until every queued write is committed or ``timeout`` passes; True if drained."""

    def close() -> None:
        """Commit what is queued and release resources; later writes are dropped."""


SCHEMA_VERSION: Final = 5

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
    (
        # Calls up at this moment (their dialogs, JSON): what a restart after a crash must end cleanly.
        "CREATE TABLE active_calls (call_id TEXT PRIMARY KEY, data TEXT NOT NULL) WITHOUT ROWID",
    ),
    (
        # Media statistics of relayed calls (packets and bytes each way, losses, SRTP failures...), JSON.
        "ALTER TABLE call_records ADD COLUMN media TEXT",
    ),
    (
        # Conference rooms (plugins/conference.py): the room, who, when they joined and left, JSON.
        "ALTER TABLE call_records ADD COLUMN conference TEXT",
    ),
)

_BINDING_COLUMNS: Final = (
    "aor, contact, expires_at, registered_at, call_id, cseq, q, transport, "
    "source_host, source_port, user_agent, instance_id, reg_id"
)
_SAVE_BINDING: Final = f"INSERT OR REPLACE INTO bindings ({_BINDING_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)"
_ADD_CALL_RECORD: Final = (
    "INSERT INTO call_records (call_id, caller, callee, start_time, answer_time, end_time, cause, media, "
    "conference) VALUES (?,?,?,?,?,?,?,?,?)"
)

# Operations queued to the writer thread: (kind, SQL, parameters).  Flush markers are _Flush objects.
_Op = tuple[str, str, tuple[Any, ...]]
_STOP: Final = object()

DATABASE_FILE: Final = "minisip.sqlite"
# What SQLite keeps beside the database: every one of them holds the same data, so the same mode.
_COMPANION_SUFFIXES: Final = ("-wal", "-shm", "-journal")

# Writes that cannot be committed wait in memory, up to this many (the oldest are dropped beyond).
MAX_PENDING: Final = 100_000
# Seconds between retries while writes fail: doubling from the first to the last, then the last.
RETRY_FIRST: Final = 1.0
RETRY_MAX: Final = 60.0

# SQLite primary result codes that describe the disk, not the statement: retry these later.
_ENVIRONMENT_CODES: Final = frozenset({
    5,   # SQLITE_BUSY
    6,   # SQLITE_LOCKED
    7,   # SQLITE_NOMEM
    8,   # SQLITE_READONLY
    10,  # SQLITE_IOERR
    13,  # SQLITE_FULL
    14,  # SQLITE_CANTOPEN
    15,  # SQLITE_PROTOCOL
})
_ENVIRONMENT_WORDS: Final = ("disk is full", "disk i/o", "readonly", "read-only", "unable to open", "locked")


class _Clock(Protocol):
    def seconds(self) -> float: ...


class _Monotonic:
    """The default clock of the writer's backoff."""

    @staticmethod
    def seconds() -> float:
        return time.monotonic()


class _Flush:
    """A flush marker: set by the writer once everything queued before it has been tried."""

    __slots__ = ("done", "ok")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.ok = False


def _is_environmental(e: BaseException) -> bool:
    """True when ``e`` says the disk cannot take writes now (full, read-only, I/O), not that a write is wrong."""
    if isinstance(e, sqlite3.Error):
        code = getattr(e, "sqlite_errorcode", None)
        if isinstance(code, int):
            return code & 0xFF in _ENVIRONMENT_CODES
        text = str(e).lower()
        return any(word in text for word in _ENVIRONMENT_WORDS)
    return isinstance(e, OSError)


def _reason(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return str(e) or type(e).__name__


def _make_private(path: str) -> None:
    """Mode 0600 for an existing file of ours (SQLite creates companions with the database's mode)."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
        if mode != 0o600:
            os.chmod(path, 0o600)
    except FileNotFoundError:
        pass
    except OSError as e:
        log.warn("Store {path}: cannot make it private (mode 0600): {reason}", path=path, reason=_reason(e))  # noqa: G010


def _create_private(path: str) -> None:
    """Create the database file with mode 0600 before SQLite opens it, whatever the umask."""
    if path == ":memory:" or os.path.exists(path):
        return
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
    os.close(fd)


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
    """SQLite (WAL) store: synchronous reads, writes batched by one background thread.

    Writes the disk refuses (full, read-only, I/O error) are kept, up to ``max_pending`` (the oldest
    dropped beyond), and retried after ``retry_first`` seconds, doubling up to ``retry_max``; ``clock``
    (``seconds()``) times the retries.
    """

    def __init__(self, path: str, *, max_batch: int = 5000, max_pending: int = MAX_PENDING,
                 retry_first: float = RETRY_FIRST, retry_max: float = RETRY_MAX, clock: _Clock | None = None) -> None:
        self.path = path
        self._max_batch = max_batch
        self._max_pending = max_pending
        self._retry_first = retry_first
        self._retry_max = retry_max
        self._clock: _Clock = clock if clock is not None else _Monotonic()
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._closed = False
        # Held by the writer around each batch (tests hold it to make batching deterministic).
        self._batch_lock = threading.Lock()
        self.batches_committed = 0
        # Writer thread only: writes waiting for the disk, oldest first, and the state of the outage.
        self._pending: collections.deque[_Op] = collections.deque()
        self._retry_at = 0.0
        self._retry_delay = retry_first
        self._failing_since: float | None = None
        self._dropped = 0
        self.writes_dropped = 0
        self._read_lock = threading.Lock()
        self._state_cache: dict[str, str | None] = {}
        _create_private(path)
        self._reader = _connect(path)
        try:
            mode = self._reader.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                log.warn("Store {path}: WAL journal mode unavailable, using {mode}", path=path, mode=mode)  # noqa: G010
            _migrate(self._reader, path)
            self._writer_conn = self._open_writer()
        except BaseException:
            self._reader.close()
            raise
        if path != ":memory:":
            for name in (path, *(path + suffix for suffix in _COMPANION_SUFFIXES)):
                _make_private(name)
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
                "SELECT call_id, caller, callee, start_time, answer_time, end_time, cause, media, conference "
                "FROM call_records "
                "ORDER BY start_time DESC, id DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [CallRecord(*row) for row in rows]

    def active_calls(self) -> list[tuple[str, str]]:
        with self._read_lock:
            return [(str(a), str(b)) for a, b in self._reader.execute("SELECT call_id, data FROM active_calls")]

    def save_active_call(self, call_id: str, data: str) -> None:
        self._enqueue(("save_active_call", "INSERT OR REPLACE INTO active_calls (call_id, data) VALUES (?, ?)",
                       (call_id, data)))

    def delete_active_call(self, call_id: str) -> None:
        self._enqueue(("delete_active_call", "DELETE FROM active_calls WHERE call_id = ?", (call_id,)))

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

    def _open_writer(self) -> sqlite3.Connection:
        """The writer thread's connection (tests wrap it to make the disk fail)."""
        return _connect(self.path)

    @property
    def pending_writes(self) -> int:
        """How many writes wait for the disk (approximate: the writer thread changes it)."""
        return len(self._pending)

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
            ("add_call_record", _ADD_CALL_RECORD, (r.call_id, r.caller, r.callee, r.start, r.answer, r.end, r.cause,
                                                 r.media, r.conference))
        )

    def _enqueue(self, op: _Op) -> None:
        if self._closed:
            log.warn("Store {path} is closed; dropped {kind}", path=self.path, kind=op[0])  # noqa: G010
            return
        self._queue.put(op)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until the writer has tried everything queued so far; True if all of it is committed.

        False at once when the disk refuses writes (they stay queued for a retry, which a flush
        triggers when one is due), or when ``timeout`` passes.
        """
        if self._closed or not self._thread.is_alive():
            return self._queue.empty() and not self._pending
        marker = _Flush()
        self._queue.put(marker)
        return marker.done.wait(timeout) and marker.ok

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
                timeout = None
                if self._pending:
                    # Wake for the next retry; a clock that does not move (tests) is polled.
                    timeout = min(max(self._retry_at - self._clock.seconds(), 0.01), 1.0)
                try:
                    first: object = self._queue.get(timeout=timeout)
                except queue.Empty:
                    first = None
                with self._batch_lock:
                    batch: list[_Op] = []
                    markers: list[_Flush] = []
                    item = first
                    while item is not None:
                        if item is _STOP:
                            stopping = True
                        elif isinstance(item, _Flush):
                            markers.append(item)
                        else:
                            batch.append(item)  # type: ignore[arg-type]
                        if stopping or len(batch) >= self._max_batch:
                            break
                        try:
                            item = self._queue.get_nowait()
                        except queue.Empty:
                            break
                    if self._pending:
                        self._hold(batch)
                        if stopping or self._clock.seconds() >= self._retry_at:
                            self._retry(conn)
                    elif batch:
                        self._commit(conn, batch)
                    for marker in markers:
                        marker.ok = not self._pending
                        marker.done.set()
            if self._pending:
                log.error(
                    "Store {path}: {n} writes (registrations, call records) could not be saved before stopping "
                    "and are lost",
                    path=self.path, n=len(self._pending),
                )
        finally:
            conn.close()
            # Release anyone still waiting in flush() after a stop.
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if isinstance(item, _Flush):
                    item.done.set()

    def _commit(self, conn: sqlite3.Connection, batch: list[_Op]) -> None:
        """Commit new writes (none waiting); what the disk refuses is kept for a retry."""
        rest, error = self._write(conn, batch)
        if rest:
            self._hold(rest)
            self._failed(error)

    def _write(self, conn: sqlite3.Connection, batch: list[_Op]) -> tuple[list[_Op], BaseException | None]:
        """Commit ``batch`` in one transaction; on failure retry each write alone so one bad write loses
        only itself. Returns the writes not done because the disk refused them (a tail of ``batch``)."""
        try:
            self._execute(conn, batch)
            self.batches_committed += 1
            return [], None
        except Exception as e:  # noqa: BLE001 - any failure: find the culprit below
            if _is_environmental(e):
                return batch, e
            log.debug("Store {path}: batch of {n} failed ({e}), retrying one by one", path=self.path, n=len(batch), e=e)
        for index, op in enumerate(batch):
            try:
                self._execute(conn, [op])
                self.batches_committed += 1
            except Exception as e:  # noqa: BLE001 - logged; the writer must survive
                if _is_environmental(e):
                    return batch[index:], e
                log.failure("Store {path}: {kind} failed", path=self.path, kind=op[0])
        return [], None

    def _retry(self, conn: sqlite3.Connection) -> None:
        """Try the waiting writes again, oldest first, in batches; stop at the first refusal."""
        written = 0
        while self._pending:
            count = min(len(self._pending), self._max_batch)
            rest, error = self._write(conn, [self._pending[i] for i in range(count)])
            for _ in range(count - len(rest)):
                self._pending.popleft()
            written += count - len(rest)
            if rest:
                self._failed(error)
                return
        since = self._failing_since
        self._failing_since = None
        self._retry_delay = self._retry_first
        log.info(
            "Store {path}: writing works again after {seconds:.0f} s; {written} delayed writes saved, "
            "{dropped} dropped",
            path=self.path, seconds=self._clock.seconds() - since if since is not None else 0.0,
            written=written, dropped=self._dropped,
        )
        self._dropped = 0

    def _hold(self, ops: list[_Op]) -> None:
        """Keep ``ops`` for a retry, dropping the oldest waiting writes beyond ``max_pending``."""
        self._pending.extend(ops)
        excess = len(self._pending) - self._max_pending
        if excess > 0:
            if self._dropped == 0:
                log.warn(  # noqa: G010
                    "Store {path}: {n} writes are waiting for the disk; dropping the oldest from now on",
                    path=self.path, n=self._max_pending,
                )
            for _ in range(excess):
                self._pending.popleft()
            self._dropped += excess
            self.writes_dropped += excess

    def _failed(self, e: BaseException | None) -> None:
        """A write was refused by the disk: log it once per outage and schedule the next retry."""
        now = self._clock.seconds()
        if self._failing_since is None:
            self._failing_since = now
            self._retry_delay = self._retry_first
            log.error(
                "Store {path}: cannot write ({reason}); registrations and call records are kept in memory "
                "(up to {max} writes) and retried until the disk takes them",
                path=self.path, reason=_reason(e) if e is not None else "unknown error", max=self._max_pending,
            )
        else:
            self._retry_delay = min(self._retry_delay * 2, self._retry_max)
        self._retry_at = now + self._retry_delay

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
        self._active: dict[str, str] = {}
        self.closed = False

    def active_calls(self) -> list[tuple[str, str]]:
        return list(self._active.items())

    def save_active_call(self, call_id: str, data: str) -> None:
        self._active[call_id] = data

    def delete_active_call(self, call_id: str) -> None:
        self._active.pop(call_id, None)

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


def open_store(datadir: str, config_file: str | None = None, *, clock: _Clock | None = None) -> SQLiteStore:
    """The data directory's store, the directory made private (0700) when minisip creates it.

    A data directory that cannot be made, written or opened is a :class:`ConfigError` naming
    ``[server] datadir`` of ``config_file``: one clear line at start-up instead of a traceback.
    """

    def refuse(why: str) -> ConfigError:
        return ConfigError(f"the data directory {datadir} {why}", config_file, "server", "datadir")

    try:
        if not os.path.isdir(datadir):
            os.makedirs(datadir, mode=0o700)
            os.chmod(datadir, 0o700)  # makedirs' mode is reduced by the umask
    except OSError as e:
        raise refuse(f"cannot be created: {_reason(e)}") from None
    # Write a probe: os.access answers for the real uid and ignores read-only mounts.
    probe = os.path.join(datadir, f".minisip-write-test-{os.getpid()}")
    try:
        fd = os.open(probe, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
        try:
            os.write(fd, b"minisip")
        finally:
            os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise refuse(f"is not writable: {_reason(e)}") from None
    mode = stat.S_IMODE(os.stat(datadir).st_mode)
    if mode & 0o007:
        log.warn(  # noqa: G010
            "The data directory {datadir} is open to other users (mode {mode:04o}); the database in it is "
            "private (0600), but chmod 700 {datadir} hides the directory too",
            datadir=datadir, mode=mode,
        )
    path = os.path.join(datadir, DATABASE_FILE)
    try:
        return SQLiteStore(path, clock=clock)
    except (OSError, sqlite3.Error) as e:
        raise refuse(f"holds a database that cannot be opened ({path}): {_reason(e)}") from None
