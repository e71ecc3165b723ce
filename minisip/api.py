"""The stable facade a plugin may import (with minisip.interfaces; nothing else of minisip).

Everything a feature needs from the server goes through :class:`ServerAPI`, handed to
``IFeatureFactory.make_feature(api, config)``. Names exported here keep their meaning across
releases of the same ``API_VERSION``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

from twisted.internet import defer
from twisted.logger import Logger

from minisip.conference import ConferenceRooms, ParticipantInfo, RoomInfo, RoomSettings
from minisip.config import ConfigError as _CoreConfigError
from minisip.core.call import CallInfo, LegRequest, LegResponse
from minisip.core.incoming import IncomingRequest
from minisip.core.media import MediaRefused, PassthroughMedia
from minisip.core.regclient import RegistrationClient, RegistrationTarget
from minisip.core.router import (
    CONTINUE,
    ContactDestination,
    Continue,
    Destination,
    LegDestination,
    Reject,
    Reroute,
    Route,
    RouteDecision,
    SipDestination,
    destination_for,
)
from minisip.core.store import Binding
from minisip.interfaces import API_VERSION
from minisip.sip.auth import build_authorization, parse_auth_header
from minisip.sip.message import Request, Response
from minisip.sip.types import Addr
from minisip.sip.uri import NameAddr, SipURI, TelURI, parse_name_addr, parse_uri
from minisip.transport.tls import normalize_fingerprint

if TYPE_CHECKING:
    from minisip.core.server import SIPCore

__all__ = [
    "API_VERSION", "Addr", "Binding", "CONTINUE", "CallInfo", "CallerIdentity", "ConferenceRooms", "ConfigError",
    "ConfigValues", "ContactDestination", "Continue", "Destination", "IncomingRequest", "LegDestination",
    "LegRequest", "LegResponse", "MediaRefused", "NameAddr", "ParticipantInfo", "PassthroughMedia",
    "RegistrationClient", "RegistrationTarget", "Reject", "Request", "Reroute", "Response", "RoomInfo",
    "RoomSettings", "Route", "RouteDecision", "ServerAPI", "SipDestination", "SipURI", "TelURI",
    "build_authorization", "parse_auth_header", "parse_name_addr", "parse_uri",
]


class ConfigError(_CoreConfigError):
    """Raise from ``parse_config``: ``ConfigError("why", section="hunt 600", key="policy")``."""

    def __init__(self, message: str, file: str | None = None, section: str | None = None,
                 key: str | None = None) -> None:
        super().__init__(message, file, section, key)


_BOOLEANS = {"yes": True, "true": True, "on": True, "1": True, "no": False, "false": False, "off": False,
             "0": False}


class ConfigValues:
    """Typed reading of one plugin section's raw values, exported to plugins (``minisip.api``): every
    error is a ConfigError naming the section and the key (the server adds the file)."""

    def __init__(self, section: str, values: Mapping[str, str]) -> None:
        self.section = section
        self.values = {k.lower(): v.strip() for k, v in values.items()}

    def error(self, key: str | None, message: str) -> ConfigError:
        return ConfigError(message, section=self.section, key=key)

    def check_keys(self, known: Iterable[str]) -> None:
        allowed = set(known)
        for key in self.values:
            if key not in allowed:
                raise self.error(key, f"unknown key (known: {', '.join(sorted(allowed))})")

    def text(self, key: str, default: str | None = None) -> str | None:
        """The stripped value; ``default`` when absent or empty."""
        return self.values.get(key) or default

    def required(self, key: str) -> str:
        value = self.values.get(key)
        if not value:
            raise self.error(key, "a value is required")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        """yes/no, true/false, on/off, 1/0."""
        value = self.values.get(key)
        if value is None:
            return default
        try:
            return _BOOLEANS[value.lower()]
        except KeyError:
            raise self.error(key, f"{value!r} is not yes or no") from None

    def fingerprints(self, key: str) -> tuple[str, ...]:
        """Comma-separated SHA-256 certificate fingerprints (``SHA-256 AB:CD:...``, ``sha256:abcd...`` or
        bare hex), as :meth:`ServerAPI.peer_certificate` gives them; () when the key is absent or empty."""
        value = self.values.get(key)
        if not value:
            return ()
        found: list[str] = []
        for item in value.split(","):
            fingerprint = normalize_fingerprint(item)
            if fingerprint is None:
                raise self.error(key, f"{item.strip()!r} is not a SHA-256 fingerprint (64 hex digits, e.g. as "
                                      "`openssl x509 -noout -fingerprint -sha256` prints it)")
            found.append(fingerprint)
        return tuple(found)

    def integer(self, key: str, default: int, minimum: int | None = None) -> int:
        value = self.values.get(key)
        if not value:
            return default
        try:
            number = int(value)
        except ValueError:
            raise self.error(key, f"{value!r} is not a whole number") from None
        if minimum is not None and number < minimum:
            raise self.error(key, f"{value!r} must be at least {minimum}")
        return number

    def seconds(self, key: str, default: float, minimum: float = 0.0, above: bool = False) -> float:
        """A number of seconds, at least (or, with ``above``, more than) ``minimum``."""
        value = self.values.get(key)
        if not value:
            return default
        try:
            number = float(value)
        except ValueError:
            raise self.error(key, f"{value!r} is not a number of seconds") from None
        if not math.isfinite(number) or number < minimum or (above and number == minimum):
            bound = f"above {minimum:g}" if above else f"at least {minimum:g}"
            raise self.error(key, f"{value!r} must be {bound}")
        return number

    def words(self, key: str) -> tuple[str, ...]:
        return tuple((self.values.get(key) or "").split())


@dataclass(frozen=True, slots=True)
class CallerIdentity:
    """An ICallerIdentifier's verdict on a new INVITE it vouches for (no digest challenge).

    ``callee`` replaces the dialled number (e.g. a DID mapped to an extension); ``reject`` answers
    the INVITE with (code, reason) instead of routing it."""

    caller: str
    source: str = "trunk"
    trunk: str | None = None
    display: str | None = None
    callee: str | None = None
    reject: tuple[int, str] | None = None


class ServerAPI:
    """The server as a feature sees it."""

    api_version = API_VERSION

    def __init__(self, core: "SIPCore", state: Any, owner: str) -> None:
        self._core = core
        self._state = state
        self.owner = owner
        self.log = Logger(namespace=owner)

    # -- time and identity ----------------------------------------------------------------------
    @property
    def clock(self) -> Any:
        """IReactorTime: callLater for timers, seconds() for monotonic-ish time."""
        return self._core.clock

    def wallclock(self) -> float:
        return self._core.wallclock()

    @property
    def domain(self) -> str:
        return self._core.domain

    # -- directory and location -----------------------------------------------------------------
    def extension_exists(self, number: str) -> bool:
        return number in self._core.extensions

    def extension_name(self, number: str) -> str | None:
        ext = self._core.extensions.get(number)
        return getattr(ext, "name", None) if ext is not None else None

    def bindings(self, aor: str) -> list[Binding]:
        return list(self._core.location.lookup(aor))

    def all_bindings(self) -> list[Binding]:
        loc = self._core.location
        return [b for aor in loc.aors() for b in loc.lookup(aor)]

    def is_reachable(self, binding: Binding) -> bool:
        return self._core.is_reachable(binding)

    def set_reachable(self, binding: Binding, reachable: bool) -> None:
        self._core.set_reachable(binding, reachable)

    def destinations(self, aor: str) -> list[Destination]:
        """Where to ring an extension now: its registered, reachable contacts, then its other contacts
        (browsers logged in as the extension over MCCP: ``LegDestination("browser", ...)``)."""
        return self._core.destinations(aor)

    def destination_for(self, binding: Binding) -> ContactDestination:
        return destination_for(binding, self._core.connected)

    def opened_by_us(self, source: Addr) -> bool:
        """True when a request's ``source`` is a TCP/TLS connection this server opened (to a trunk):
        an address alone does not say who is at the other end of a connection."""
        return self._core.opened_by_us(source)

    def peer_certificate(self, source: Addr) -> str | None:
        """The SHA-256 fingerprint (``"SHA-256 AB:CD:..."``) of the certificate the peer showed on the TLS
        connection a request's ``source`` arrived on, or None (no certificate, not TLS, gone)."""
        return self._core.peer_certificate(source)

    def pin_certificates(self, host: str, port: int, fingerprints: tuple[str, ...]) -> None:
        """TLS connections this server opens to ``host`` (an IP address) and ``port`` accept only a server
        certificate with one of these fingerprints (a mismatch fails the request as unreachable, logged as
        a security event); an empty tuple removes the pin."""
        self._core.pin_certificates(host, port, fingerprints)

    def exempt_from_bans(self, host: str) -> None:
        """Never ban ``host`` (a trunk's carrier: a spoofed guess must not cut off its calls)."""
        self._core.security.exempt(host)

    def end_ban_exemption(self, host: str) -> None:
        self._core.security.unexempt(host)

    def in_call(self, number: str) -> bool:
        """True while the extension is the caller, or the answering callee, of a call through this server."""
        return self._core.calls.busy.get(number, 0) > 0

    def route_to_extension(self, number: str, ring_time: float | None = None) -> RouteDecision:
        if number not in self._core.extensions:
            return Reject(404, "Not Found")
        dests = self.destinations(number)
        if not dests:
            return Reject(480, "Temporarily Unavailable")
        return Route(tuple(dests), ring_time=ring_time, callee=number)

    def route_to_number(self, number: str, reason: str | None = None) -> Reroute:
        """Send the call back through routing as a call to ``number`` (any router may take it: an
        extension, a hunting group, a trunk's outside number). Loops end with 482."""
        return Reroute(number, reason)

    # -- signalling -----------------------------------------------------------------------------
    def send_request(self, method: str, uri: str, target: Addr, headers: Iterable[tuple[str, str]] = (),
                     body: bytes = b"", from_user: str | None = None,
                     to: str | None = None, call_id: str | None = None, cseq: int = 1) -> defer.Deferred:
        """Send an out-of-dialog request (OPTIONS, REGISTER...): Deferred firing with the final Response,
        or None when it timed out or could not be delivered."""
        return self._core.send_out_of_dialog(method, uri, target, list(headers), body, from_user, to, call_id,
                                             cseq)

    def local_address(self, transport: str = "udp") -> tuple[str, int]:
        return self._core.local(transport)

    def local_contact(self, transport: str = "udp", user: str | None = None) -> str:
        return self._core.contact_value(transport, user)

    # -- calls ----------------------------------------------------------------------------------
    def calls(self) -> list[CallInfo]:
        """Every call in progress, read-only."""
        return [c.info for c in self._core.calls.calls.values()]

    def call(self, call_id: str) -> CallInfo | None:
        c = self._core.calls.calls.get(call_id)
        return c.info if c is not None else None

    def _live(self, call: CallInfo | str) -> Any:
        return self._core.calls.calls.get(call if isinstance(call, str) else call.id)

    def probe_call(self, call: CallInfo | str) -> defer.Deferred:
        """Ask every answered leg whether its peer still knows the call (a body-less in-dialog INFO for
        SIP): Deferred firing True if all did (any final response but 408/481 counts as alive)."""
        live = self._live(call)
        return self._core.calls.probe(live) if live is not None else defer.succeed(False)

    def touch(self, call: CallInfo | str) -> None:
        """Record activity on a call (for supervision)."""
        live = self._live(call)
        if live is not None:
            live.touch()

    def hangup(self, call: CallInfo | str, cause: str = "released") -> None:
        """End a call from the server's side: BYE to answered legs, 480 to an unanswered caller."""
        live = self._live(call)
        if live is not None:
            self._core.calls.hangup(live, cause)

    # -- conference rooms -----------------------------------------------------------------------
    def _conferences(self) -> Any:
        """The leg factory of kind 'conference' (plugins/conference.py's ConferenceRooms), or None."""
        return self._core.hooks.leg_factories.get("conference")

    def conference_rooms(self) -> list[RoomInfo]:
        """The conference rooms open now (with participants), each with its participants in join order;
        [] when no conference plugin is loaded."""
        rooms = self._conferences()
        listing = getattr(rooms, "rooms", None)
        return list(listing()) if callable(listing) else []

    def conference_room(self, number: str) -> RoomInfo | None:
        """Room ``number`` and its participants, or None when it is not open (nobody in it)."""
        rooms = self._conferences()
        room = getattr(rooms, "room", None)
        return room(number) if callable(room) else None

    def conference_service(self) -> ConferenceRooms:
        """A new set of conference rooms on this server's clock (for the conference plugin): add it with
        ``hooks.add_leg_factory('conference', rooms)``."""
        return ConferenceRooms(self._core.clock, self._core.wallclock)

    # -- persistent state -----------------------------------------------------------------------
    def state_get(self, key: str, default: Any = None) -> Any:
        """A JSON value this plugin saved with state_set (survives restarts)."""
        raw = self._state.get_state(f"{self.owner}:{key}")
        return default if raw is None else json.loads(raw)

    def state_set(self, key: str, value: Any) -> None:
        self._state.set_state(f"{self.owner}:{key}", json.dumps(value))

    # -- misc -----------------------------------------------------------------------------------
    def call_later(self, delay: float, f: Callable[..., Any], *args: Any) -> Any:
        return self._core.clock.callLater(delay, f, *args)
