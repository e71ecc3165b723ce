"""Tests for minisip.core.location: the registrar's in-memory location service."""

from __future__ import annotations

import os

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from minisip.core.location import (
    EXPIRED,
    REFRESHED,
    REGISTERED,
    UNREGISTERED,
    LocationService,
)
from minisip.core.store import Binding, MemoryStore, SQLiteStore

T0 = 1_700_000_000.0


def make_clock(now: float = T0) -> Clock:
    clock = Clock()
    clock.advance(now)
    return clock


def binding(contact: str, *, aor: str = "100", expires: float = 3600, at: float = T0, **kw: object) -> Binding:
    fields: dict[str, object] = {
        "aor": aor, "contact": contact, "expires_at": at + expires, "registered_at": at,
        "call_id": f"{contact}-call", "cseq": 1,
    }
    fields.update(kw)
    return Binding(**fields)  # type: ignore[arg-type]


class LocationServiceTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = make_clock()
        self.store = MemoryStore()
        self.location = LocationService(self.store, self.clock)
        self.events: list[tuple[str, str, Binding]] = []
        self.location.add_observer(lambda event, aor, b: self.events.append((event, aor, b)))

    def stored(self) -> list[tuple[str, str]]:
        return sorted((b.aor, b.contact) for b in self.store.load_bindings(self.clock.seconds()))

    def test_lookup_unknown(self) -> None:
        self.assertEqual(self.location.lookup("999"), [])
        self.assertEqual(self.location.count(), 0)

    def test_lookup_order_q_then_most_recent(self) -> None:
        self.location.update("100", binding("sip:100@a", q=0.5, at=T0 - 30))
        self.location.update("100", binding("sip:100@b", q=1.0, at=T0 - 20))
        self.location.update("100", binding("sip:100@c", q=1.0, at=T0 - 10))
        self.location.update("100", binding("sip:100@d", q=0.5, at=T0 - 5))
        self.location.update("100", binding("sip:100@e", q=0.1, at=T0))
        self.assertEqual(
            [b.contact for b in self.location.lookup("100")],
            ["sip:100@c", "sip:100@b", "sip:100@d", "sip:100@a", "sip:100@e"],
        )
        self.assertEqual(self.location.count(), 5)

    def test_lookup_is_per_aor(self) -> None:
        self.location.update("100", binding("sip:100@a"))
        self.location.update("101", binding("sip:101@a", aor="101"))
        self.assertEqual([b.contact for b in self.location.lookup("101")], ["sip:101@a"])
        self.assertEqual(sorted(self.location.aors()), ["100", "101"])

    def test_update_rejects_mismatched_aor(self) -> None:
        self.assertRaises(ValueError, self.location.update, "101", binding("sip:100@a"))

    def test_register_persists_and_notifies(self) -> None:
        b = binding("sip:100@a")
        self.location.update("100", b)
        self.assertEqual(self.location.lookup("100"), [b])
        self.assertEqual(self.stored(), [("100", "sip:100@a")])
        self.assertEqual(self.events, [(REGISTERED, "100", b)])

    def test_refresh_keeps_registered_at(self) -> None:
        self.location.update("100", binding("sip:100@a"))
        self.clock.advance(600)
        refreshed = binding("sip:100@a", at=T0 + 600, cseq=2)
        self.location.update("100", refreshed)
        [got] = self.location.lookup("100")
        self.assertEqual(got.registered_at, T0)
        self.assertEqual((got.cseq, got.expires_at), (2, T0 + 600 + 3600))
        [persisted] = self.store.load_bindings(self.clock.seconds())
        self.assertEqual(persisted, got)
        self.assertEqual([e[0] for e in self.events], [REGISTERED, REFRESHED])
        self.assertEqual(self.events[-1][2], got)
        self.assertEqual(self.location.count(), 1)

    def test_different_contact_is_a_new_binding(self) -> None:
        self.location.update("100", binding("sip:100@a"))
        self.location.update("100", binding("sip:100@a;transport=tcp"))
        self.assertEqual(self.location.count(), 2)
        self.assertEqual([e[0] for e in self.events], [REGISTERED, REGISTERED])

    def test_same_instance_and_reg_id_replaces_flow(self) -> None:
        """RFC 5626: a new flow of the same instance and reg-id replaces the old contact."""
        inst = "<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>"
        self.location.update("100", binding("sip:100@192.0.2.1:5060", instance_id=inst, reg_id=1))
        self.location.update("100", binding("sip:100@192.0.2.1:5070", instance_id=inst, reg_id=2))
        self.clock.advance(60)
        self.location.update(
            "100", binding("sip:100@198.51.100.1:6000", instance_id=inst, reg_id=1, at=T0 + 60)
        )
        contacts = sorted(b.contact for b in self.location.lookup("100"))
        self.assertEqual(contacts, ["sip:100@192.0.2.1:5070", "sip:100@198.51.100.1:6000"])
        self.assertEqual(self.stored(), [("100", c) for c in contacts])
        self.assertEqual(self.events[-1][0], REFRESHED)
        self.assertEqual(self.events[-1][2].registered_at, T0)

    def test_reregister_after_expiry_is_a_new_registration(self) -> None:
        self.location.update("100", binding("sip:100@a", expires=60))
        self.clock.advance(120)
        self.location.update("100", binding("sip:100@a", at=T0 + 120))
        [got] = self.location.lookup("100")
        self.assertEqual(got.registered_at, T0 + 120)
        self.assertEqual([e[0] for e in self.events], [REGISTERED, REGISTERED])

    def test_update_with_expired_binding_removes(self) -> None:
        self.location.update("100", binding("sip:100@a"))
        self.location.update("100", binding("sip:100@a", expires=0))
        self.assertEqual(self.location.lookup("100"), [])
        self.assertEqual(self.stored(), [])
        self.assertEqual([e[0] for e in self.events], [REGISTERED, UNREGISTERED])

    def test_remove(self) -> None:
        a, b = binding("sip:100@a"), binding("sip:100@b")
        self.location.update("100", a)
        self.location.update("100", b)
        self.location.remove("100", "sip:100@a")
        self.location.remove("100", "sip:100@unknown")
        self.location.remove("999", "sip:999@a")
        self.assertEqual(self.location.lookup("100"), [b])
        self.assertEqual(self.stored(), [("100", "sip:100@b")])
        self.assertEqual(self.events[-1], (UNREGISTERED, "100", a))
        self.location.remove("100", "sip:100@b")
        self.assertEqual(self.location.aors(), [])

    def test_remove_all(self) -> None:
        self.location.update("100", binding("sip:100@a"))
        self.location.update("100", binding("sip:100@b"))
        self.location.update("101", binding("sip:101@a", aor="101"))
        del self.events[:]
        self.location.remove_all("100")
        self.assertEqual(self.location.lookup("100"), [])
        self.assertEqual(self.stored(), [("101", "sip:101@a")])
        self.assertEqual(sorted((e[0], e[2].contact) for e in self.events),
                         [(UNREGISTERED, "sip:100@a"), (UNREGISTERED, "sip:100@b")])
        self.location.remove_all("100")  # nothing left: no error, no event
        self.assertEqual(len(self.events), 2)

    def test_expired_bindings_hidden_before_sweep(self) -> None:
        self.location.update("100", binding("sip:100@short", expires=30))
        self.location.update("100", binding("sip:100@long", expires=300))
        self.clock.advance(30)
        self.assertEqual([b.contact for b in self.location.lookup("100")], ["sip:100@long"])
        self.assertEqual(self.location.count(), 1)

    def test_expire(self) -> None:
        self.location.update("100", binding("sip:100@short", expires=30))
        self.location.update("100", binding("sip:100@long", expires=300))
        self.location.update("101", binding("sip:101@short", aor="101", expires=60))
        del self.events[:]
        self.assertEqual(self.location.expire(), 0)
        self.clock.advance(29)
        self.assertEqual(self.location.expire(), 0)
        self.clock.advance(1)
        self.assertEqual(self.location.expire(), 1)
        self.assertEqual([(e[0], e[1], e[2].contact) for e in self.events], [(EXPIRED, "100", "sip:100@short")])
        self.clock.advance(30)
        self.assertEqual(self.location.expire(), 1)
        self.assertEqual(sorted(self.location.aors()), ["100"])
        self.assertEqual(self.store.load_bindings(0), [self.location.lookup("100")[0]])
        self.clock.advance(240)
        self.assertEqual(self.location.expire(), 1)
        self.assertEqual(self.location.expire(), 0)
        self.assertEqual(self.location.count(), 0)
        self.assertEqual(self.store.load_bindings(0), [])
        self.assertEqual([e[0] for e in self.events], [EXPIRED] * 3)

    def test_expire_sees_refreshed_deadline(self) -> None:
        self.location.update("100", binding("sip:100@a", expires=30))
        self.clock.advance(20)
        self.location.update("100", binding("sip:100@a", at=T0 + 20, expires=30))
        self.clock.advance(15)
        self.assertEqual(self.location.expire(), 0)
        self.clock.advance(15)
        self.assertEqual(self.location.expire(), 1)

    def test_expire_after_earlier_binding_removed(self) -> None:
        self.location.update("100", binding("sip:100@a", expires=30))
        self.location.update("100", binding("sip:100@b", expires=60))
        self.location.remove("100", "sip:100@a")
        self.clock.advance(30)
        self.assertEqual(self.location.expire(), 0)
        self.clock.advance(30)
        self.assertEqual(self.location.expire(), 1)

    def test_raising_observer_logged_and_ignored(self) -> None:
        def broken(event: str, aor: str, b: Binding) -> None:
            raise ZeroDivisionError("observer bug")

        location = LocationService(self.store, self.clock)
        seen: list[str] = []
        location.add_observer(broken)
        location.add_observer(lambda event, aor, b: seen.append(event))
        location.update("100", binding("sip:100@a", expires=10))
        self.clock.advance(10)
        self.assertEqual(location.expire(), 1)
        self.assertEqual(seen, [REGISTERED, EXPIRED])
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 2)
        self.assertEqual(location.count(), 0)

    def test_remove_observer(self) -> None:
        seen: list[str] = []

        def observer(event: str, aor: str, b: Binding) -> None:
            seen.append(event)

        self.location.add_observer(observer)
        self.location.update("100", binding("sip:100@a"))
        self.location.remove_observer(observer)
        self.location.remove_observer(observer)
        self.location.remove("100", "sip:100@a")
        self.assertEqual(seen, [REGISTERED])

    def test_load_from_store(self) -> None:
        self.store.save_binding(binding("sip:100@a"))
        self.store.save_binding(binding("sip:100@b", expires=10))
        self.store.save_binding(binding("sip:101@a", aor="101"))
        self.store.save_binding(binding("sip:102@gone", aor="102", expires=-5))
        self.clock.advance(10)
        location = LocationService(self.store, self.clock)
        self.assertEqual(location.load(), 2)
        self.assertEqual(location.count(), 2)
        self.assertEqual([b.contact for b in location.lookup("100")], ["sip:100@a"])
        self.assertEqual(sorted(location.aors()), ["100", "101"])


class RestartTests(SynchronousTestCase):
    """The location service survives a restart through the SQLite store."""

    def test_load_after_restart(self) -> None:
        directory = self.mktemp()
        os.makedirs(directory)
        path = os.path.join(directory, "minisip.sqlite")
        clock = make_clock()

        store = SQLiteStore(path)
        location = LocationService(store, clock)
        location.update("100", binding("sip:100@a", q=0.8, transport="tcp", source_host="192.0.2.1",
                                       source_port=5062, user_agent="Phone/1.0"))
        location.update("100", binding("sip:100@b", expires=60))
        location.update("101", binding("sip:101@a", aor="101"))
        location.update("102", binding("sip:102@a", aor="102"))
        location.remove_all("102")
        clock.advance(100)
        location.update("100", binding("sip:100@a", at=T0 + 100, cseq=2, q=0.8, transport="tcp",
                                       source_host="192.0.2.1", source_port=5062, user_agent="Phone/1.0"))
        before = {aor: location.lookup(aor) for aor in ("100", "101")}
        store.close()

        clock.advance(5)
        restarted_store = SQLiteStore(path)
        self.addCleanup(restarted_store.close)
        restarted = LocationService(restarted_store, clock)
        self.assertEqual(restarted.load(), 2)
        self.assertEqual({aor: restarted.lookup(aor) for aor in ("100", "101")}, before)
        self.assertEqual(restarted.lookup("100")[0].registered_at, T0)
        self.assertEqual(restarted.lookup("102"), [])
