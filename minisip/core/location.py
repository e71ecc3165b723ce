"""The in-memory location service: where each extension can be reached right now.

The registrar writes to it, the router reads from it; the :class:`~minisip.core.store.IStore` behind it
only makes the bindings survive a restart.  All methods run on the reactor thread.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Protocol

from twisted.logger import Logger

from minisip.core.store import Binding, IStore

__all__ = ["EXPIRED", "REFRESHED", "REGISTERED", "UNREGISTERED", "LocationService", "RegistrationObserver"]

log = Logger()

REGISTERED = "registered"
REFRESHED = "refreshed"
UNREGISTERED = "unregistered"
EXPIRED = "expired"

RegistrationObserver = Callable[[str, str, Binding], None]


class _Clock(Protocol):
    def seconds(self) -> float: ...


def _order(b: Binding) -> tuple[float, float, float]:
    return (-b.q, -b.registered_at, -b.expires_at)


class LocationService:
    """Live bindings per address of record, persisted through an IStore, with registration events."""

    def __init__(self, store: IStore, clock: _Clock) -> None:
        self._store = store
        self._clock = clock
        self._bindings: dict[str, list[Binding]] = {}
        self._observers: list[RegistrationObserver] = []
        # A lower bound of the earliest expiry, so that expire() on a quiet table costs nothing.
        self._next_expiry = math.inf

    def load(self) -> int:
        """Restore the unexpired bindings from the store (at start-up); returns how many.

        Restored bindings are not reported to observers: they are not new registrations.
        """
        self._bindings.clear()
        self._next_expiry = math.inf
        count = 0
        for b in self._store.load_bindings(self._clock.seconds()):
            self._bindings.setdefault(b.aor, []).append(b)
            self._next_expiry = min(self._next_expiry, b.expires_at)
            count += 1
        log.info("Restored {count} registrations from the store", count=count)
        return count

    def lookup(self, aor: str) -> list[Binding]:
        """Unexpired bindings of ``aor``: highest q first, then the most recently registered."""
        now = self._clock.seconds()
        return sorted((b for b in self._bindings.get(aor, ()) if b.expires_at > now), key=_order)

    def update(self, aor: str, binding: Binding) -> None:
        """Add or refresh ``binding`` and persist it.

        A contact is the same binding when its URI string is equal, or (RFC 5626) when both carry
        the same instance id and reg-id.  A refresh keeps the original ``registered_at``.  A binding
        already expired removes the contact instead.
        """
        if binding.aor != aor:
            raise ValueError(f"binding for {binding.aor!r} given to update of {aor!r}")
        now = self._clock.seconds()
        if binding.expires_at <= now:
            self.remove(aor, binding.contact)
            return
        current = self._bindings.setdefault(aor, [])
        index = self._find(current, binding)
        if index is None:
            current.append(binding)
            event = REGISTERED
        else:
            old = current[index]
            if old.expires_at > now:
                binding = dataclasses.replace(binding, registered_at=old.registered_at)
                event = REFRESHED
            else:
                event = REGISTERED
            current[index] = binding
            if old.contact != binding.contact:
                self._store.delete_binding(aor, old.contact)
        self._next_expiry = min(self._next_expiry, binding.expires_at)
        self._store.save_binding(binding)
        self._notify(event, aor, binding)

    def remove(self, aor: str, contact: str) -> None:
        """Remove one contact of ``aor`` (an unregistration) and persist the deletion."""
        current = self._bindings.get(aor)
        if not current:
            return
        for index, b in enumerate(current):
            if b.contact == contact:
                del current[index]
                if not current:
                    del self._bindings[aor]
                self._store.delete_binding(aor, contact)
                log.debug("Unregistered {aor} at {contact}", aor=aor, contact=contact)
                self._notify(UNREGISTERED, aor, b)
                return

    def remove_all(self, aor: str) -> None:
        """Remove every contact of ``aor`` (``Contact: *``) and persist the deletion."""
        removed = self._bindings.pop(aor, [])
        self._store.delete_aor(aor)
        for b in removed:
            log.debug("Unregistered {aor} at {contact}", aor=aor, contact=b.contact)
            self._notify(UNREGISTERED, aor, b)

    def count(self) -> int:
        """Total number of live (unexpired) bindings."""
        now = self._clock.seconds()
        return sum(1 for bindings in self._bindings.values() for b in bindings if b.expires_at > now)

    def aors(self) -> list[str]:
        """The addresses of record that have at least one binding (expired ones not yet swept included)."""
        return list(self._bindings)

    def expire(self) -> int:
        """Drop the bindings expired by now, persist the deletions and report them; returns how many."""
        now = self._clock.seconds()
        if now < self._next_expiry:
            return 0
        expired: list[Binding] = []
        next_expiry = math.inf
        for aor in list(self._bindings):
            bindings = self._bindings[aor]
            live = []
            for b in bindings:
                if b.expires_at > now:
                    live.append(b)
                    next_expiry = min(next_expiry, b.expires_at)
                else:
                    expired.append(b)
            if not live:
                del self._bindings[aor]
            elif len(live) != len(bindings):
                self._bindings[aor] = live
        self._next_expiry = next_expiry
        for b in expired:
            self._store.delete_binding(b.aor, b.contact)
            log.info("Registration of {aor} at {contact} expired", aor=b.aor, contact=b.contact)
            self._notify(EXPIRED, b.aor, b)
        return len(expired)

    def add_observer(self, cb: RegistrationObserver) -> None:
        """Call ``cb(event, aor, binding)`` on every registration event."""
        self._observers.append(cb)

    def remove_observer(self, cb: RegistrationObserver) -> None:
        """Stop calling ``cb``; unknown observers are ignored."""
        if cb in self._observers:
            self._observers.remove(cb)

    @staticmethod
    def _find(current: list[Binding], binding: Binding) -> int | None:
        for index, b in enumerate(current):
            if b.contact == binding.contact:
                return index
        if binding.instance_id is not None and binding.reg_id is not None:
            for index, b in enumerate(current):
                if b.instance_id == binding.instance_id and b.reg_id == binding.reg_id:
                    return index
        return None

    def _notify(self, event: str, aor: str, binding: Binding) -> None:
        for cb in list(self._observers):
            try:
                cb(event, aor, binding)
            except Exception:  # noqa: BLE001 - a broken observer must not break registration
                log.failure(
                    "Registration observer {observer!r} failed on {event} of {aor}",
                    observer=cb, event=event, aor=aor,
                )
