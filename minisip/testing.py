"""Test helpers for plugin authors: a real minisip core on a Clock, without sockets or SIP phones.

``PluginHarness`` loads one plugin factory the way the server does (``parse_config``, ``make_feature``,
``register`` with checked hooks), on a ``twisted.internet.task.Clock`` and an in-memory store. A test
then registers contacts, asks the router chain where a call would go, and tells observers about calls::

    from minisip.testing import PluginHarness

    h = PluginHarness(factory, {"blacklist": {"prefixes": "0900 0906"}}, extensions=("100", "200"))
    decision = h.route("100", "0900123")          # Reject(403, 'Forbidden'), Route(...)
    h.register("200")                              # a phone registered for 200
    h.clock.advance(60)                            # timers of the plugin's services

Routing goes through the real chain: the plugins' routers in priority order, then the core's
extension router, so a ``Continue`` shows as what the server would do next; a ``Reroute`` is followed
as the call layer follows it (``route_once`` shows the first decision itself). Several plugins load
together when ``factory`` is a list: each gets the sections its ``config_prefixes`` claim.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from minisip.api import ServerAPI
from minisip.config import Extension
from minisip.core.call import Call, CallInfo, CallManager
from minisip.core.hooks import HookRegistry
from minisip.core.location import LocationService
from minisip.core.router import MAX_REROUTES, Reject, Reroute, RouteDecision
from minisip.core.server import SIPCore
from minisip.core.store import Binding, MemoryStore
from minisip.sip.types import Addr

T0 = 1_700_000_000.0


class PluginHarness:
    """One plugin on a real core: ``api``, ``feature``, ``clock``; ``route``, ``register``, ``calls``."""

    def __init__(self, factory: Any, sections: Mapping[str, Mapping[str, str]] | None = None, *,
                 extensions: Iterable[str] = ("100", "200"), domain: str = "127.0.0.1",
                 resolve: Any = None) -> None:
        self.clock = Clock()
        self.clock.advance(T0)
        self.store = MemoryStore()
        self.location = LocationService(MemoryStore(), self.clock)
        self.sent: list[tuple[bytes, Addr]] = []
        self.calls = CallManager(self.clock, self.store, HookRegistry(), wallclock=self.clock.seconds)
        exts = {n: Extension(n, f"password-{n}", None) for n in extensions}
        self.core = SIPCore(self.clock, self._send, domain=domain, extensions=exts, location=self.location,
                            store=self.store, local=lambda transport: (domain, 5060), wallclock=self.clock.seconds,
                            calls=self.calls)
        if resolve is not None:
            self.clock.resolve = resolve    # type: ignore[attr-defined]  # host names, for plugins that resolve
        factories = list(factory) if isinstance(factory, (list, tuple)) else [factory]
        sections = dict(sections or {})
        self.features: dict[str, Any] = {}
        self.apis: dict[str, ServerAPI] = {}
        for f in factories:
            name = str(f.name)
            prefixes = tuple(getattr(f, "config_prefixes", ()) or ())
            mine = {k: dict(v) for k, v in sections.items() if k.split()[0] in prefixes}
            api = self.apis[name] = ServerAPI(self.core, self.store, name)
            feature = self.features[name] = f.make_feature(api, f.parse_config(mine))
            feature.register(self.core.hooks.for_owner(name))
        first = str(factories[0].name)
        self.api = self.apis[first]
        self.feature = self.features[first]
        self._ids = 0

    def _send(self, data: bytes, addr: Addr) -> None:
        self.sent.append((data, addr))

    # -- the directory and registrations ---------------------------------------------------------------
    def register(self, extension: str, contact: str | None = None, host: str = "10.0.0.1", port: int = 5060,
                 expires: float = 3600) -> Binding:
        """A phone registered for ``extension`` (as the registrar would store it)."""
        now = self.clock.seconds()
        binding = Binding(extension, contact or f"sip:{extension}@{host}:{port}", now + expires, now,
                          f"harness-{extension}-{now}", 1, source_host=host, source_port=port)
        self.location.update(extension, binding)
        return binding

    # -- routing ------------------------------------------------------------------------------------------
    def route(self, caller: str, callee: str, *, source: str = "extension", trunk: str | None = None,
              display: str | None = None) -> RouteDecision:
        """Where a call from ``caller`` to ``callee`` would go, following reroutes (at most
        MAX_REROUTES, as the call layer does; a loop gives Reject(482))."""
        seen = [callee]
        decision = self.route_once(caller, callee, source=source, trunk=trunk, display=display)
        while isinstance(decision, Reroute):
            if decision.number in seen or len(seen) > MAX_REROUTES:
                return Reject(482, "Loop Detected")
            seen.append(decision.number)
            decision = self.route_once(caller, decision.number, source=source, trunk=trunk, display=display)
        return decision

    def route_once(self, caller: str, callee: str, *, source: str = "extension", trunk: str | None = None,
                   display: str | None = None) -> RouteDecision:
        """The first decision of the router chain (waiting on nothing: for routers that answer with a
        Deferred that needs the clock, use ``route_deferred``)."""
        results: list[Any] = []
        self.route_deferred(caller, callee, source=source, trunk=trunk, display=display).addBoth(results.append)
        if not results:
            raise AssertionError("a router's Deferred did not fire: use route_deferred and advance the clock")
        if isinstance(results[0], Failure):
            raise AssertionError(f"routing failed: {results[0]}")
        return results[0]  # type: ignore[no-any-return]

    def route_deferred(self, caller: str, callee: str, **kw: Any) -> defer.Deferred:
        """As ``route``, for routers that answer later: a Deferred of the decision."""
        self._ids += 1
        call = Call(self.calls, f"harness-{self._ids}", caller, callee, kw.pop("display", None), **kw)
        return self.calls.routers.route(call.info)

    def call_info(self, caller: str, callee: str, **kw: Any) -> CallInfo:
        """A read-only CallInfo as routers and observers see it (for calling a feature's methods directly)."""
        self._ids += 1
        call = Call(self.calls, f"harness-{self._ids}", caller, callee, kw.pop("display", None), **kw)
        return call.info

    # -- services -------------------------------------------------------------------------------------------
    def start_services(self) -> None:
        for _owner, svc in self.core.hooks.services:
            svc.startService()

    def stop_services(self) -> list[Any]:
        return [defer.maybeDeferred(svc.stopService) for _owner, svc in reversed(self.core.hooks.services)]
