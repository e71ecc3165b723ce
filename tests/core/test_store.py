"""Tests for minisip.core.store: SQLite persistence (WAL, batched writer thread) and the memory store."""

from __future__ import annotations

import os
import sqlite3
from typing import TYPE_CHECKING

from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from minisip.core.store import (
    SCHEMA_VERSION,
    Binding,
    CallRecord,
    IStore,
    MemoryStore,
    SQLiteStore,
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
