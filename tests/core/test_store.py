"""Tests for minisip.core.store: SQLite persistence (WAL, batched writer thread) and the memory store."""

from __future__ import annotations

import os
import sqlite3
import stat
from typing import TYPE_CHECKING, Any

from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from minisip.config import ConfigError
from minisip.core.store import (
    SCHEMA_VERSION,
    Binding,
    CallRecord,
    IStore,
    MemoryStore,
    SQLiteStore,
    _connect,
    open_store,
)

NOW = 1_700_000_000.0


def binding(aor: str = "100", contact: str = "sip:100@192.0.2.1:5062;transport=tcp", **kw: object) -> Binding:
    fields: dict[str, object] = {
        "aor": aor, "contact": contact, "expires_at": NOW + 3600, "registered_at": NOW, "call_id": "c1@host", "cseq": 1,
    }
    fields.update(kw)
    return Binding(**fields)  # type: ignore[arg-type]


def record(call_id: str, start: float, **kw: object) -> CallRecord:
    fields: dict[str, object] = {
        "call_id": call_id, "caller": "100", "callee": "101", "start": start, "answer": start + 2,
        "end": start + 60, "cause": "normal",
    }
    fields.update(kw)
    return CallRecord(**fields)  # type: ignore[arg-type]


class DataclassTests(SynchronousTestCase):
    def test_binding_slotted_and_frozen(self) -> None:
        b = binding()
        self.assertFalse(hasattr(b, "__dict__"))
        self.assertRaises(AttributeError, setattr, b, "cseq", 2)
        self.assertEqual((b.q, b.transport, b.source_port, b.instance_id, b.reg_id), (1.0, "udp", 0, None, None))

    def test_call_record_slotted(self) -> None:
        self.assertFalse(hasattr(record("a", NOW), "__dict__"))


if TYPE_CHECKING:
    _MixinBase = SynchronousTestCase
else:
    _MixinBase = object


class StoreContractMixin(_MixinBase):
    """Behaviour both stores share; ``make_store`` is supplied by the concrete test case."""

    def make_store(self) -> IStore:
        raise NotImplementedError

    def test_provides_interface(self) -> None:
        self.assertTrue(verifyObject(IStore, self.make_store()))

    def test_save_load_round_trip(self) -> None:
        store = self.make_store()
        full = binding(
            contact="sip:100@198.51.100.7:5062;transport=tcp;ob", q=0.5, transport="tcp",
            source_host="198.51.100.7", source_port=40000, user_agent="Yealink SIP-T46U 108.86",
            instance_id="<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>", reg_id=1, cseq=42,
        )
        store.save_binding(full)
        store.save_binding(binding(aor="101", contact="sip:101@192.0.2.9"))
        store.flush()
        got = sorted(store.load_bindings(NOW), key=lambda b: b.aor)
        self.assertEqual(got, [full, binding(aor="101", contact="sip:101@192.0.2.9")])

    def test_upsert_keyed_by_aor_and_contact(self) -> None:
        store = self.make_store()
        store.save_binding(binding(cseq=1))
        store.save_binding(binding(cseq=2, expires_at=NOW + 7200))
        store.save_binding(binding(contact="sip:100@192.0.2.2"))
        store.save_binding(binding(aor="101"))
        store.flush()
        got = {(b.aor, b.contact): b for b in store.load_bindings(NOW)}
        self.assertEqual(len(got), 3)
        refreshed = got[("100", "sip:100@192.0.2.1:5062;transport=tcp")]
        self.assertEqual((refreshed.cseq, refreshed.expires_at), (2, NOW + 7200))

    def test_delete_binding_and_aor(self) -> None:
        store = self.make_store()
        store.save_binding(binding())
        store.save_binding(binding(contact="sip:100@192.0.2.2"))
        store.save_binding(binding(aor="101", contact="sip:101@192.0.2.3"))
        store.save_binding(binding(aor="102", contact="sip:102@192.0.2.4"))
        store.delete_binding("100", "sip:100@192.0.2.2")
        store.delete_binding("100", "sip:nobody@nowhere")
        store.delete_aor("101")
        store.flush()
        got = sorted((b.aor, b.contact) for b in store.load_bindings(NOW))
        self.assertEqual(
            got, [("100", "sip:100@192.0.2.1:5062;transport=tcp"), ("102", "sip:102@192.0.2.4")]
        )

    def test_load_returns_unexpired_and_purges_expired(self) -> None:
        store = self.make_store()
        store.save_binding(binding(contact="sip:100@live", expires_at=NOW + 1))
        store.save_binding(binding(contact="sip:100@edge", expires_at=NOW))
        store.save_binding(binding(contact="sip:100@gone", expires_at=NOW - 10))
        store.flush()
        self.assertEqual([b.contact for b in store.load_bindings(NOW)], ["sip:100@live"])
        store.flush()
        # Loading at an earlier time shows the expired rows were really deleted.
        self.assertEqual(
            [b.contact for b in store.load_bindings(NOW - 100)], ["sip:100@live"]
        )

    def test_call_records_newest_first(self) -> None:
        store = self.make_store()
        store.add_call_record(record("a", NOW))
        store.add_call_record(record("c", NOW + 20, answer=None, cause="no-answer"))
        store.add_call_record(record("b", NOW + 10, cause="busy"))
        store.add_call_record(record("d", NOW + 20, cause="failed 503"))
        store.flush()
        got = store.call_records()
        self.assertEqual([r.call_id for r in got], ["d", "c", "b", "a"])
        self.assertEqual(got[1], record("c", NOW + 20, answer=None, cause="no-answer"))
        self.assertEqual([r.call_id for r in store.call_records(limit=2)], ["d", "c"])

    def test_active_calls(self) -> None:
        store = self.make_store()
        store.save_active_call("c1", '{"a": 1}')
        store.save_active_call("c2", '{"b": 2}')
        store.save_active_call("c1", '{"a": 3}')
        store.delete_active_call("c2")
        store.flush()
        self.assertEqual(store.active_calls(), [("c1", '{"a": 3}')])

    def test_flush_on_empty_store(self) -> None:
        self.assertTrue(self.make_store().flush())


class MemoryStoreTests(StoreContractMixin, SynchronousTestCase):
    def make_store(self) -> IStore:
        return MemoryStore()

    def test_close(self) -> None:
        store = MemoryStore()
        store.close()
        self.assertTrue(store.closed)


class SQLiteStoreTests(StoreContractMixin, SynchronousTestCase):
    def setUp(self) -> None:
        self.directory = self.mktemp()
        os.makedirs(self.directory)
        self.path = os.path.join(self.directory, "minisip.sqlite")

    def make_store(self) -> SQLiteStore:
        store = SQLiteStore(self.path)
        self.addCleanup(store.close)
        return store

    def raw(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None)
        self.addCleanup(conn.close)
        return conn

    def test_wal_mode(self) -> None:
        store = self.make_store()
        self.assertEqual(store.journal_mode(), "wal")
        self.assertEqual(self.raw().execute("PRAGMA journal_mode").fetchone()[0], "wal")

    def test_schema_version_recorded(self) -> None:
        self.make_store()
        rows = self.raw().execute("SELECT version FROM schema_version").fetchall()
        self.assertEqual(rows, [(SCHEMA_VERSION,)])

    def test_reopen_does_not_migrate_again(self) -> None:
        SQLiteStore(self.path).close()
        store = self.make_store()
        self.assertEqual(self.raw().execute("SELECT version FROM schema_version").fetchall(), [(SCHEMA_VERSION,)])
        self.assertEqual(store.load_bindings(NOW), [])

    def test_newer_schema_refused(self) -> None:
        SQLiteStore(self.path).close()
        self.raw().execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
        error = self.assertRaises(RuntimeError, SQLiteStore, self.path)
        self.assertIn(self.path, str(error))
        self.assertIn("newer", str(error))

    def test_survives_restart(self) -> None:
        store = SQLiteStore(self.path)
        live = binding(contact="sip:100@live", expires_at=NOW + 600)
        store.save_binding(live)
        store.save_binding(binding(contact="sip:100@old", expires_at=NOW + 5))
        store.add_call_record(record("call-1", NOW))
        store.close()  # close commits what is queued, without an explicit flush

        reopened = self.make_store()
        self.assertEqual(reopened.load_bindings(NOW + 10), [live])
        self.assertEqual([r.call_id for r in reopened.call_records()], ["call-1"])
        self.assertTrue(reopened.flush())
        self.assertEqual(self.raw().execute("SELECT contact FROM bindings").fetchall(), [("sip:100@live",)])

    def test_writes_after_close_are_dropped(self) -> None:
        store = SQLiteStore(self.path)
        store.close()
        store.close()  # idempotent
        store.save_binding(binding())
        self.assertTrue(store.flush())
        self.assertEqual(self.raw().execute("SELECT COUNT(*) FROM bindings").fetchone(), (0,))

    def test_batching(self) -> None:
        """Writes queued while the writer is busy are committed together, in one transaction."""
        store = self.make_store()
        with store._batch_lock:  # the writer cannot start a batch until we let go
            for i in range(1500):
                store.save_binding(binding(aor=str(1000 + i), contact=f"sip:{1000 + i}@192.0.2.1"))
            store.delete_aor("1000")
        self.assertTrue(store.flush())
        self.assertEqual(store.batches_committed, 1)
        self.assertEqual(len(store.load_bindings(NOW)), 1499)

    def test_batches_are_bounded(self) -> None:
        store = SQLiteStore(self.path, max_batch=100)
        self.addCleanup(store.close)
        with store._batch_lock:
            for i in range(250):
                store.save_binding(binding(aor=str(i)))
        self.assertTrue(store.flush())
        self.assertEqual(store.batches_committed, 3)
        self.assertEqual(len(store.load_bindings(NOW)), 250)

    def test_write_failure_logged_not_raised(self) -> None:
        """A failing write is logged, loses only itself, and the writer goes on."""
        store = self.make_store()
        store.save_binding(binding(aor="100"))
        self.assertTrue(store.flush())
        self.raw().execute("DROP TABLE call_records")
        with store._batch_lock:  # same batch: the good writes around the bad one must survive
            store.save_binding(binding(aor="101"))
            store.add_call_record(record("lost", NOW))
            store.save_binding(binding(aor="102"))
        self.assertTrue(store.flush())
        errors = self.flushLoggedErrors(sqlite3.OperationalError)
        self.assertEqual(len(errors), 1)
        self.assertIn("call_records", str(errors[0].value))
        self.assertEqual(sorted(b.aor for b in store.load_bindings(NOW)), ["100", "101", "102"])
        # Still alive afterwards.
        store.save_binding(binding(aor="103"))
        self.assertTrue(store.flush())
        self.assertEqual(len(store.load_bindings(NOW)), 4)

    def test_writer_does_not_block_caller(self) -> None:
        """Queued writes return at once even while the writer is held."""
        store = self.make_store()
        with store._batch_lock:
            store.save_binding(binding())
            store.add_call_record(record("queued", NOW))
            self.assertEqual(self.raw().execute("SELECT COUNT(*) FROM bindings").fetchone(), (0,))
        self.assertTrue(store.flush())
        self.assertEqual(self.raw().execute("SELECT COUNT(*) FROM bindings").fetchone(), (1,))


def disk_full() -> sqlite3.OperationalError:
    """The error SQLite raises when the file system has no space left."""
    e = sqlite3.OperationalError("database or disk is full")
    e.sqlite_errorcode = 13  # SQLITE_FULL (a named constant only from Python 3.11)
    return e


class FlakyConnection:
    """The writer's connection with a switch: while ``error`` is set every write raises it, as a full disk does."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.error: Exception | None = None
        self.attempts = 0

    def _check(self, sql: str) -> None:
        if self.error is not None and not sql.startswith(("BEGIN", "ROLLBACK")):
            self.attempts += 1
            raise self.error

    def execute(self, sql: str, *args: Any) -> Any:
        self._check(sql)
        return self.conn.execute(sql, *args)

    def executemany(self, sql: str, rows: Any) -> Any:
        self._check(sql)
        return self.conn.executemany(sql, rows)

    @property
    def in_transaction(self) -> bool:
        return self.conn.in_transaction

    def close(self) -> None:
        self.conn.close()


class FlakyStore(SQLiteStore):
    flaky: FlakyConnection

    def _open_writer(self) -> sqlite3.Connection:
        self.flaky = FlakyConnection(_connect(self.path))
        return self.flaky  # type: ignore[return-value]


class LogCapture:
    """The text of every log event emitted while installed."""

    def __init__(self, test: SynchronousTestCase) -> None:
        self.events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.events.append)
        test.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def lines(self, namespace: str = "minisip.core.store") -> list[str]:
        from twisted.logger import formatEvent
        lines = [formatEvent(e) for e in self.events if e.get("log_namespace") == namespace]
        return [line for line in lines if "migrated to schema version" not in line]


class FullDiskTests(SynchronousTestCase):
    """Issue 8.6: with the data directory full, writes wait in memory and are retried until they are saved."""

    def setUp(self) -> None:
        directory = self.mktemp()
        os.makedirs(directory)
        self.path = os.path.join(directory, "minisip.sqlite")
        self.clock = Clock()
        self.logs = LogCapture(self)

    def make_store(self, **kw: Any) -> FlakyStore:
        store = FlakyStore(self.path, clock=self.clock, retry_first=1.0, retry_max=8.0, **kw)
        self.addCleanup(store.close)
        return store

    def committed_records(self) -> list[str]:
        conn = sqlite3.connect(self.path)
        self.addCleanup(conn.close)
        return [row[0] for row in conn.execute("SELECT call_id FROM call_records ORDER BY id")]

    def test_records_kept_and_written_when_space_returns(self) -> None:
        store = self.make_store()
        store.flaky.error = disk_full()
        for i in range(5):
            store.add_call_record(record(f"call-{i}", NOW + i))
            store.save_binding(binding(aor=str(100 + i)))
        self.assertFalse(store.flush(), "nothing could be written")
        self.assertEqual(store.pending_writes, 10)
        self.assertEqual(self.committed_records(), [])
        # More writes during the outage join the queue; no retry before the backoff is over.
        store.add_call_record(record("call-5", NOW + 5))
        attempts = store.flaky.attempts
        self.assertFalse(store.flush())
        self.assertEqual((store.flaky.attempts, store.pending_writes), (attempts, 11))
        # Space comes back: the next retry writes everything, in the original order.
        store.flaky.error = None
        self.clock.advance(1.0)
        self.assertTrue(store.flush())
        self.assertEqual(store.pending_writes, 0)
        self.assertEqual(self.committed_records(), [f"call-{i}" for i in range(6)])
        self.assertEqual(sorted(b.aor for b in store.load_bindings(NOW)), [str(100 + i) for i in range(5)])
        # And later writes go straight through again.
        store.add_call_record(record("call-6", NOW + 6))
        self.assertTrue(store.flush())
        self.assertEqual(self.committed_records()[-1], "call-6")

    def test_one_line_when_failing_one_when_working_no_traceback(self) -> None:
        store = self.make_store()
        store.flaky.error = disk_full()
        for i in range(20):
            store.add_call_record(record(f"call-{i}", NOW + i))
            store.flush()
        for _ in range(3):  # three failed retries, at 10, 20 and 30 s
            self.clock.advance(10)
            self.assertFalse(store.flush())
        store.flaky.error = None
        self.clock.advance(10)
        self.assertTrue(store.flush())
        lines = self.logs.lines()
        self.assertEqual(len(lines), 2, lines)
        self.assertIn("cannot write (database or disk is full)", lines[0])
        self.assertIn(self.path, lines[0])
        self.assertIn("writing works again after 40 s; 20 delayed writes saved, 0 dropped", lines[1])
        self.assertEqual([e for e in self.logs.events if "log_failure" in e], [])
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_backoff_doubles_up_to_the_maximum(self) -> None:
        store = self.make_store()
        store.flaky.error = disk_full()
        store.add_call_record(record("call", NOW))
        store.flush()
        tries = []
        for _ in range(40):  # one second at a time: count the retries
            self.clock.advance(1)
            store.flush()
            tries.append(store.flaky.attempts)
        retry_times = [i + 1 for i in range(1, 40) if tries[i] != tries[i - 1]]
        if tries[0] != 1:
            retry_times.insert(0, 1)
        # First try at 0; retries 1, 2, 4 then 8 seconds apart (retry_max).
        self.assertEqual(retry_times[:6], [1, 3, 7, 15, 23, 31])

    def test_queue_is_bounded_oldest_dropped(self) -> None:
        store = self.make_store(max_pending=5)
        store.flaky.error = disk_full()
        for i in range(8):
            store.add_call_record(record(f"call-{i}", NOW + i))
            store.flush()
        self.assertEqual(store.pending_writes, 5)
        self.assertEqual(store.writes_dropped, 3)
        store.flaky.error = None
        self.clock.advance(1)
        self.assertTrue(store.flush())
        self.assertEqual(self.committed_records(), [f"call-{i}" for i in range(3, 8)])
        lines = self.logs.lines()
        self.assertEqual(len(lines), 3, lines)  # failing, queue full (once), working again
        self.assertIn("dropping the oldest", lines[1])
        self.assertIn("5 delayed writes saved, 3 dropped", lines[2])

    def test_close_tries_once_more(self) -> None:
        store = self.make_store()
        store.flaky.error = disk_full()
        store.add_call_record(record("saved-at-close", NOW))
        self.assertFalse(store.flush())
        store.flaky.error = None
        store.close()
        self.assertEqual(self.committed_records(), ["saved-at-close"])

    def test_close_while_failing_says_what_is_lost(self) -> None:
        store = self.make_store()
        store.flaky.error = disk_full()
        store.add_call_record(record("lost", NOW))
        store.add_call_record(record("lost-too", NOW))
        store.close()
        self.assertIn("2 writes (registrations, call records) could not be saved", self.logs.lines()[-1])

    def test_bad_write_still_loses_only_itself(self) -> None:
        """A broken statement (not the disk) is not retried forever: it is dropped as before."""
        store = self.make_store()
        store.flaky.error = sqlite3.OperationalError("no such table: call_records")
        store.flaky.error.sqlite_errorcode = 1  # SQLITE_ERROR
        store.add_call_record(record("bad", NOW))
        self.assertTrue(store.flush())
        self.assertEqual(store.pending_writes, 0)
        self.assertEqual(len(self.flushLoggedErrors(sqlite3.OperationalError)), 1)

    def test_errors_without_a_code_are_recognised_by_their_text(self) -> None:
        store = self.make_store()
        store.flaky.error = sqlite3.OperationalError("attempt to write a readonly database")
        store.add_call_record(record("kept", NOW))
        self.assertFalse(store.flush())
        self.assertEqual(store.pending_writes, 1)
        store.flaky.error = None
        self.clock.advance(1)
        self.assertTrue(store.flush())
        self.assertEqual(self.committed_records(), ["kept"])


class DataDirectoryTests(SynchronousTestCase):
    """Issue 8.6 and 8.11: the data directory at start, and who can read it."""

    def setUp(self) -> None:
        self.base = os.path.abspath(self.mktemp())
        os.makedirs(self.base)
        self.logs = LogCapture(self)

    def with_umask(self, mask: int) -> None:
        old = os.umask(mask)
        self.addCleanup(os.umask, old)

    def test_private_whatever_the_umask(self) -> None:
        """Run by hand with umask 022: the directory is 0700 and the database and its -wal/-shm 0600."""
        self.with_umask(0o022)
        datadir = os.path.join(self.base, "data", "minisip")
        store = open_store(datadir)
        self.addCleanup(store.close)
        store.save_binding(binding())
        self.assertTrue(store.flush())
        self.assertEqual(stat.S_IMODE(os.stat(datadir).st_mode), 0o700)
        names = sorted(os.listdir(datadir))
        self.assertEqual(names, ["minisip.sqlite", "minisip.sqlite-shm", "minisip.sqlite-wal"])
        for name in names:
            self.assertEqual(stat.S_IMODE(os.stat(os.path.join(datadir, name)).st_mode), 0o600, name)

    def test_existing_database_made_private(self) -> None:
        self.with_umask(0o022)
        datadir = os.path.join(self.base, "data")
        os.makedirs(datadir, mode=0o700)
        path = os.path.join(datadir, "minisip.sqlite")
        SQLiteStore(path).close()
        os.chmod(path, 0o644)
        store = open_store(datadir)
        self.addCleanup(store.close)
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)

    def test_open_existing_directory_warned_not_changed(self) -> None:
        """A directory the admin made keeps its mode (it may be /var/lib/...), with one warning line."""
        datadir = os.path.join(self.base, "admin-made")
        os.makedirs(datadir)
        os.chmod(datadir, 0o755)
        store = open_store(datadir)
        self.addCleanup(store.close)
        self.assertEqual(stat.S_IMODE(os.stat(datadir).st_mode), 0o755)
        (line,) = self.logs.lines()
        self.assertIn(f"chmod 700 {datadir}", line)

    def test_uncreatable_directory_is_one_config_error(self) -> None:
        blocker = os.path.join(self.base, "file")
        with open(blocker, "w") as f:
            f.write("not a directory")
        datadir = os.path.join(blocker, "data")
        e = self.assertRaises(ConfigError, open_store, datadir, "/etc/minisip/minisip.conf")
        self.assertEqual((e.section, e.key), ("server", "datadir"))
        self.assertTrue(str(e).startswith(f"/etc/minisip/minisip.conf: [server] datadir: the data directory {datadir} "
                                          "cannot be created: "), str(e))
        self.assertNotIn("\n", str(e))

    def test_unwritable_directory_is_one_config_error(self) -> None:
        if os.geteuid() == 0:
            raise self.skipTest("root writes into a read-only directory anyway; "
                                "test_probe_failure_is_one_config_error covers the same path")
        datadir = os.path.join(self.base, "ro")
        os.makedirs(datadir)
        os.chmod(datadir, 0o500)
        self.addCleanup(os.chmod, datadir, 0o700)
        e = self.assertRaises(ConfigError, open_store, datadir, "minisip.conf")
        self.assertIn(f"the data directory {datadir} is not writable: Permission denied", str(e))

    def test_probe_failure_is_one_config_error(self) -> None:
        """A directory where no file can be created (read-only mount, full, no permission) stops the start."""
        datadir = os.path.join(self.base, "ro")
        os.makedirs(datadir)
        real_open = os.open

        def refusing_open(path: str, *args: Any, **kw: Any) -> int:
            if os.path.dirname(path) == datadir:
                raise OSError(30, "Read-only file system")
            return real_open(path, *args, **kw)

        self.patch(os, "open", refusing_open)
        e = self.assertRaises(ConfigError, open_store, datadir, "minisip.conf")
        self.assertEqual(str(e), f"minisip.conf: [server] datadir: the data directory {datadir} is not writable: "
                                 "Read-only file system")

    def test_unusable_database_is_one_config_error(self) -> None:
        datadir = os.path.join(self.base, "data")
        os.makedirs(datadir)
        with open(os.path.join(datadir, "minisip.sqlite"), "wb") as f:
            f.write(b"this is not an SQLite database, just some bytes " * 100)
        e = self.assertRaises(ConfigError, open_store, datadir, "minisip.conf")
        self.assertIn("holds a database that cannot be opened", str(e))
        self.assertEqual(e.key, "datadir")
