"""The hook points the core offers features, each object checked against its interface, in priority order."""

from __future__ import annotations

import bisect
from typing import Any

from twisted.application.service import IService
from twisted.logger import Logger
from zope.interface import Interface, implementer
from zope.interface.exceptions import Invalid
from zope.interface.verify import verifyObject

from minisip.core.router import RouterChain
from minisip.interfaces import (
    ICallerIdentifier,
    ICallObserver,
    ICallRouter,
    IHooks,
    ILegFactory,
    IMediaPolicy,
    IOutboundFilter,
    IRegistrationObserver,
    IRequestHandler,
)

log = Logger(namespace="minisip.hooks")


class HookError(Exception):
    """A feature attached an object that does not provide the hook's interface."""


class PriorityList(list):  # type: ignore[type-arg]
    """(owner, object) pairs kept in priority order (equal priorities in the order added)."""

    def __init__(self) -> None:
        super().__init__()
        self._keys: list[tuple[int, int]] = []
        self._seq = 0

    def insert_at(self, priority: int, owner: str, obj: Any) -> None:
        self._seq += 1
        key = (priority, self._seq)
        i = bisect.bisect(self._keys, key)
        self._keys.insert(i, key)
        self.insert(i, (owner, obj))


class HookRegistry:
    """Everything features attached, with the owner (plugin name) of each entry for error messages."""

    def __init__(self, routers: RouterChain | None = None) -> None:
        self.routers = routers if routers is not None else RouterChain()
        self.request_handlers: dict[tuple[str, bool], PriorityList] = {}
        self.call_observers = PriorityList()
        self.registration_observers = PriorityList()
        self.outbound_filters = PriorityList()
        self.identifiers = PriorityList()
        self.services = PriorityList()
        self.leg_factories: dict[str, Any] = {}
        self.contact_sources: list[tuple[str, Any]] = []   # (owner, aor -> destinations): browsers' logins
        self.manager: Any = None     # the CallManager, which holds the media policy

    def for_owner(self, owner: str) -> "Hooks":
        return Hooks(self, owner)

    def notify(self, observers: list[tuple[str, Any]], method: str, *args: Any) -> None:
        """Call ``method`` on every observer; a failing one is logged with its plugin's name and ignored."""
        for owner, obs in observers:
            try:
                getattr(obs, method)(*args)
            except Exception:
                log.failure("plugin {owner}: {method} failed (ignored)", owner=owner, method=method)

    def handlers(self, method: str, in_dialog: bool) -> list[tuple[str, Any]]:
        return self.request_handlers.get((method, in_dialog), [])

    def first(self, entries: list[tuple[str, Any]], method: str, *args: Any) -> Any:
        """The first non-None answer of ``method`` among entries; failures are logged and skipped."""
        for owner, obj in entries:
            try:
                result = getattr(obj, method)(*args)
            except Exception:
                log.failure("plugin {owner}: {method} failed (ignored)", owner=owner, method=method)
                continue
            if result is not None:
                return result
        return None

    def add_contact_source(self, owner: str, source: Any) -> None:
        """``source(aor)`` names more destinations of an extension than its SIP registrations (the
        browsers logged in as it, as LegDestinations of their own kind): they ring with its phones."""
        self.contact_sources.append((owner, source))

    def extra_contacts(self, aor: str) -> list[Any]:
        """Every contact source's destinations for ``aor``; a failing source is logged and skipped."""
        out: list[Any] = []
        for owner, source in self.contact_sources:
            try:
                out.extend(source(aor))
            except Exception:
                log.failure("{owner}: contacts of {aor} failed (ignored)", owner=owner, aor=aor)
        return out

    def apply_filters(self, *args: Any) -> None:
        self.notify(self.outbound_filters, "filter", *args)


def _check(owner: str, hook: str, iface: type[Interface], obj: Any) -> None:
    try:
        verifyObject(iface, obj, tentative=True)
    except Invalid as e:
        raise HookError(f"plugin {owner}: {hook}({type(obj).__name__}) does not provide "
                        f"{iface.__module__}.{iface.__name__}: {e}") from None


@implementer(IHooks)
class Hooks:
    """What one feature's ``register(hooks)`` receives."""

    def __init__(self, registry: HookRegistry, owner: str) -> None:
        self._r = registry
        self.owner = owner

    def add_router(self, router: Any, priority: int = 100) -> None:
        _check(self.owner, "add_router", ICallRouter, router)
        self._r.routers.add(router, priority=priority, owner=self.owner)

    def add_request_handler(self, method: str, handler: Any, in_dialog: bool = True, priority: int = 100) -> None:
        _check(self.owner, "add_request_handler", IRequestHandler, handler)
        self._r.request_handlers.setdefault((method.upper(), in_dialog), PriorityList()).insert_at(
            priority, self.owner, handler)

    def add_call_observer(self, observer: Any, priority: int = 100) -> None:
        _check(self.owner, "add_call_observer", ICallObserver, observer)
        self._r.call_observers.insert_at(priority, self.owner, observer)

    def add_registration_observer(self, observer: Any, priority: int = 100) -> None:
        _check(self.owner, "add_registration_observer", IRegistrationObserver, observer)
        self._r.registration_observers.insert_at(priority, self.owner, observer)

    def add_outbound_filter(self, flt: Any, priority: int = 100) -> None:
        _check(self.owner, "add_outbound_filter", IOutboundFilter, flt)
        self._r.outbound_filters.insert_at(priority, self.owner, flt)

    def add_caller_identifier(self, identifier: Any, priority: int = 100) -> None:
        _check(self.owner, "add_caller_identifier", ICallerIdentifier, identifier)
        self._r.identifiers.insert_at(priority, self.owner, identifier)

    def add_service(self, service: Any, priority: int = 100) -> None:
        _check(self.owner, "add_service", IService, service)
        self._r.services.insert_at(priority, self.owner, service)

    def add_leg_factory(self, kind: str, factory: Any) -> None:
        _check(self.owner, "add_leg_factory", ILegFactory, factory)
        if kind in self._r.leg_factories:
            raise HookError(f"plugin {self.owner}: add_leg_factory: destinations of kind {kind!r} already "
                            "have a leg factory")
        self._r.leg_factories[kind] = factory

    def set_media_policy(self, policy: Any) -> None:
        _check(self.owner, "set_media_policy", IMediaPolicy, policy)
        if self._r.manager is None:
            raise HookError(f"plugin {self.owner}: set_media_policy: no call layer to attach it to")
        self._r.manager.media = policy
