"""The hook points the core offers features, and the safe calling of observers."""

from __future__ import annotations

from typing import Any, Callable

from twisted.logger import Logger
from zope.interface import implementer

from minisip.core.router import RouterChain
from minisip.interfaces import IHooks

log = Logger(namespace="minisip.hooks")


class HookRegistry:
    """Everything features attached, with the owner (plugin name) of each entry for error messages."""

    def __init__(self, routers: RouterChain) -> None:
        self.routers = routers
        self.request_handlers: dict[tuple[str, bool], list[tuple[str, Any]]] = {}
        self.call_observers: list[tuple[str, Any]] = []
        self.registration_observers: list[tuple[str, Any]] = []
        self.outbound_filters: list[tuple[str, Any]] = []
        self.identifiers: list[tuple[str, Any]] = []
        self.services: list[tuple[str, Any]] = []

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

    def apply_filters(self, *args: Any) -> None:
        self.notify(self.outbound_filters, "filter", *args)


@implementer(IHooks)
class Hooks:
    """What one feature's ``register(hooks)`` receives."""

    def __init__(self, registry: HookRegistry, owner: str) -> None:
        self._r = registry
        self.owner = owner

    def add_router(self, router: Any, priority: int = 100) -> None:
        self._r.routers.add(router, priority=priority, owner=self.owner)

    def add_request_handler(self, method: str, handler: Any, in_dialog: bool = True) -> None:
        self._r.request_handlers.setdefault((method.upper(), in_dialog), []).append((self.owner, handler))

    def add_call_observer(self, observer: Any) -> None:
        self._r.call_observers.append((self.owner, observer))

    def add_registration_observer(self, observer: Any) -> None:
        self._r.registration_observers.append((self.owner, observer))

    def add_outbound_filter(self, flt: Any) -> None:
        self._r.outbound_filters.append((self.owner, flt))

    def add_caller_identifier(self, identifier: Any) -> None:
        self._r.identifiers.append((self.owner, identifier))

    def add_service(self, service: Any) -> None:
        self._r.services.append((self.owner, service))


Notifier = Callable[..., None]
