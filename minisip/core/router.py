"""Call routing decisions, destinations, and the ordered chain of routers (the core's extension router is last)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Sequence

from twisted.internet import defer
from twisted.logger import Logger

from minisip.sip.errors import SIPParseError
from minisip.sip.types import Addr
from minisip.sip.uri import SipURI, parse_uri

log = Logger(namespace="minisip.router")


@dataclass(frozen=True, slots=True)
class Continue:
    """This router has no opinion: ask the next one."""


CONTINUE = Continue()


@dataclass(frozen=True, slots=True)
class Reject:
    code: int
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class ContactDestination:
    """A registered contact of an extension: its contact URI and where to send (the registered flow)."""

    kind: ClassVar[str] = "contact"
    uri: str
    addr: Addr
    aor: str | None = None


@dataclass(frozen=True, slots=True)
class SipDestination:
    """Any SIP URI reached at an address, a trunk's carrier for example."""

    kind: ClassVar[str] = "sip"
    uri: str
    addr: Addr
    to_uri: str | None = None          # To of the new leg (default: the dialled number at our domain)
    from_uri: str | None = None        # From of the new leg (default: the caller at our domain)
    credentials: tuple[str, str] | None = None   # (username, password) to answer a 401/407 (trunks)
    trunk: str | None = None
    aor: ClassVar[None] = None


@dataclass(frozen=True, slots=True)
class LegDestination:
    """A destination of a kind a leg factory added (``'browser'`` with the extension, ``'conference'``
    with the room number...): the call layer asks the factory registered for ``kind``."""

    kind: str
    target: str
    aor: str | None = None
    params: tuple[tuple[str, str], ...] = ()


Destination = ContactDestination | SipDestination | LegDestination
"""Where a B-leg goes: a tagged union on ``kind``."""


@dataclass(frozen=True, slots=True)
class Route:
    """Ring these destinations in parallel; ``ring_time`` overrides the server's no-answer time."""

    targets: tuple[Destination, ...]
    ring_time: float | None = None
    callee: str | None = None
    # Called as on_failure(call, status) when every target failed or ring_time ran out: the next step
    # (a RouteDecision or a Deferred of one; Continue = give up with the failure). Hunting uses it.
    on_failure: Callable[[Any, int], Any] | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Reroute:
    """Send the call back through routing as a call to ``number`` (call forwarding, an overflow to an
    outside number): every router is asked again. A number already tried in this call, or more than
    ``MAX_REROUTES`` reroutes, fails the call with 482 Loop Detected."""

    number: str
    reason: str | None = None


MAX_REROUTES = 5

RouteDecision = Continue | Reject | Route | Reroute


@dataclass(order=True)
class _Entry:
    priority: int
    seq: int
    router: Any = field(compare=False)
    owner: str = field(compare=False, default="core")


class RouterChain:
    """Routers in priority order (lower first); the first decision that is not Continue wins."""

    def __init__(self) -> None:
        self._entries: list[_Entry] = []
        self._seq = 0

    def add(self, router: Any, priority: int = 100, owner: str = "core") -> None:
        self._seq += 1
        self._entries.append(_Entry(priority, self._seq, router, owner))
        self._entries.sort()

    def remove_owner(self, owner: str) -> None:
        self._entries = [e for e in self._entries if e.owner != owner]

    def route(self, call: Any) -> defer.Deferred:
        """Deferred firing with the winning decision; a failing router gives Reject(500).

        Routers answering synchronously (the usual case) are asked in a plain loop; Deferred
        machinery is only used from the first router that returns a Deferred."""
        return self._route_from(call, list(self._entries), 0)

    def _route_from(self, call: Any, entries: list[_Entry], i: int) -> defer.Deferred:
        while i < len(entries):
            entry = entries[i]
            try:
                result = entry.router.route(call)
            except Exception:
                log.failure("router {owner} failed for call {call}", owner=entry.owner, call=call.id)
                return defer.succeed(Reject(500, "Server Internal Error"))
            if isinstance(result, defer.Deferred):
                return self._await(call, entries, i, result)
            decision = self._check(entry, result)
            if decision is not None:
                return defer.succeed(decision)
            i += 1
        return defer.succeed(Reject(404, "Not Found"))

    def _await(self, call: Any, entries: list[_Entry], i: int, d: defer.Deferred) -> defer.Deferred:
        entry = entries[i]

        def decided(result: Any) -> Any:
            decision = self._check(entry, result)
            if decision is None:
                return self._route_from(call, entries, i + 1)
            return decision

        def failed(f: Any) -> RouteDecision:
            log.failure("router {owner} failed for call {call}", f, owner=entry.owner, call=call.id)
            return Reject(500, "Server Internal Error")

        d.addCallbacks(decided, failed)
        return d

    @staticmethod
    def _check(entry: _Entry, result: Any) -> RouteDecision | None:
        """The decision, None for Continue, Reject(500) for nonsense."""
        if isinstance(result, Continue):
            return None
        if not isinstance(result, (Reject, Route, Reroute)):
            log.error("router {owner} returned {d!r}: failing the call", owner=entry.owner, d=result)
            return Reject(500, "Server Internal Error")
        return result


class ExtensionRouter:
    """The core's own router: ring every registered, reachable contact of the dialled extension."""

    def __init__(self, directory: Callable[[str], object | None], location: Any,
                 reachable: Callable[[Any], bool] | None = None,
                 connected: Callable[[Addr], bool] | None = None) -> None:
        self.directory = directory
        self.location = location
        self.reachable = reachable or (lambda b: True)
        self.connected = connected      # is a stream connection open (None: assume so)
        # the extension's contacts that are not SIP registrations (browsers logged in as it)
        self.extra: Callable[[str], Sequence[Destination]] = lambda aor: ()

    def destinations(self, ext: str) -> list[Destination]:
        """Where the extension rings now: its reachable registered contacts, then its other contacts."""
        dests: list[Destination] = [destination_for(b, self.connected) for b in self.location.lookup(ext)
                                    if self.reachable(b)]
        dests.extend(self.extra(ext))
        return dests

    def route(self, call: Any) -> RouteDecision:
        ext = call.callee
        if self.directory(ext) is None:
            return Reject(404, "Not Found")
        dests = self.destinations(ext)
        if not dests:
            return Reject(480, "Temporarily Unavailable")
        return Route(tuple(dests), callee=ext)


def destination_for(binding: Any, connected: Callable[[Addr], bool] | None = None) -> ContactDestination:
    """Where to reach a registered contact.

    Over TCP/TLS the phone's own connection is used while it is open (phones rarely accept
    connections; RFC 5626 flows). When it has closed (``connected`` says so), a new connection goes to
    the Contact's port, but only on the host the REGISTER came from: a Contact is never trusted for
    another address. Over UDP the Contact is trusted when it names the address the REGISTER came from;
    otherwise the phone is behind NAT and the REGISTER's source address and port are used (symmetric
    signalling).
    """
    source = Addr(binding.transport, binding.source_host, binding.source_port)
    stream = binding.transport != "udp"
    if stream and (connected is None or connected(source)):
        return ContactDestination(binding.contact, source, binding.aor)
    try:
        uri = parse_uri(binding.contact)
    except SIPParseError:
        uri = None
    same_host = isinstance(uri, SipURI) and uri.host.strip("[]") == binding.source_host
    if same_host and (stream or (uri.transport or "udp") == "udp"):
        default = 5061 if binding.transport == "tls" else 5060
        source = Addr(binding.transport, binding.source_host, uri.port or default)
    return ContactDestination(binding.contact, source, binding.aor)
