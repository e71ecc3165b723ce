"""SIP trunks: outbound calls by dialled prefix (tel: or sip: Request-URIs), registration at the
carrier, and inbound calls from the carrier mapped from DIDs to extensions.

One ``[trunk NAME]`` section per carrier account (see etc/minisip.conf). Outbound, a router picks the
trunk whose ``prefix`` is the longest match of the dialled number, rewrites the number (``strip``,
``prepend``) and sends the INVITE to the carrier with the trunk's digest credentials. Inbound, an
INVITE from the carrier's address (or to the user we registered as) is accepted without a digest
challenge and routed to the extension its DID maps to; unknown numbers get 404.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from twisted.application.service import Service
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from minisip.api import (
    CONTINUE,
    Addr,
    CallerIdentity,
    ConfigError,
    ConfigValues,
    RegistrationClient,
    Reject,
    Route,
    RouteDecision,
    ServerAPI,
    SipDestination,
    SipURI,
    TelURI,
)
from minisip.interfaces import API_VERSION, ICallerIdentifier, ICallRouter, IFeature, IFeatureFactory

ROUTER_PRIORITY = 80            # after hunting groups (50), before the core's extension router
DEFAULT_EXPIRES = 3600
RESOLVE_TTL = 300.0             # seconds a resolved proxy host name is trusted

_KEYS = frozenset({"proxy", "transport", "username", "password", "register", "expires", "prefix", "strip",
                   "prepend", "use_tel_uri", "phone_context", "from_number", "did", "match_port", "certificate"})
_TRANSPORTS = ("udp", "tcp", "tls")
_DEFAULT_PORTS = {"udp": 5060, "tcp": 5060, "tls": 5061}
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")
_LABEL_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?")
_PROXY_V6_RE = re.compile(r"\[([0-9A-Fa-f:.]+)\](?::([0-9]{1,5}))?")
_PROXY_RE = re.compile(r"([A-Za-z0-9.\-]+)(?::([0-9]{1,5}))?")
_PREFIX_RE = re.compile(r"\+?[0-9*#]+")
_PREPEND_RE = re.compile(r"\+?[0-9*]*")
_GLOBAL_RE = re.compile(r"\+[0-9]+")
_LOCAL_RE = re.compile(r"[0-9*]+")
_DID_RE = re.compile(r"\+?[0-9]+")
_TARGET_RE = re.compile(r"[A-Za-z0-9\-_.!~*'()&=+$,]+")
_USERNAME_RE = re.compile(r"[A-Za-z0-9\-_.!~*'()&=+$,]+")
_VISUAL = str.maketrans("", "", "-.() ")       # RFC 3966 visual separators, and spaces
_config_log = Logger(namespace="minisip.trunks")   # configuration warnings (the feature logs as api.log)


# -- configuration ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TrunkConfig:
    """One ``[trunk NAME]`` section, validated."""

    name: str
    host: str                        # IP address (IPv6 without brackets) or host name, lower case
    port: int
    port_given: bool                 # the port was written in ``proxy`` (then it appears in URIs)
    transport: str = "udp"
    username: str | None = None
    password: str | None = None
    register: bool = False
    expires: int = DEFAULT_EXPIRES
    prefix: str | None = None
    strip: int = 0
    prepend: str = ""
    use_tel_uri: bool = False
    phone_context: str | None = None
    from_number: str | None = None
    dids: Mapping[str, str] = field(default_factory=dict)
    match_port: bool = True
    certificates: tuple[str, ...] = ()   # transport tls: the carrier is whoever shows one of these

    @property
    def section(self) -> str:
        return f"trunk {self.name}"

    @property
    def uri_host(self) -> str:
        """The proxy as written in a URI: IPv6 in brackets, the port when the config gave one."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}" if self.port_given else host

    @property
    def credentials(self) -> tuple[str, str] | None:
        if self.username and self.password is not None:
            return self.username, self.password
        return None

    def registration_key(self) -> tuple[Any, ...]:
        """What a running registration depends on (a change restarts it on reload)."""
        return (self.host, self.port, self.port_given, self.transport, self.username, self.password,
                self.register, self.expires)


@dataclass(frozen=True)
class TrunksConfig:
    trunks: tuple[TrunkConfig, ...] = ()


def normalize_number(text: str) -> str:
    """A dialled or presented number without URI escapes, parameters and visual separators."""
    return unquote(text).split(";", 1)[0].translate(_VISUAL)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def is_domain_name(host: str) -> bool:
    """A domain name as RFC 3966 (and RFC 3261) allow it: labels, the last one starting with a letter."""
    labels = host.rstrip(".").split(".")
    return (bool(labels) and all(_LABEL_RE.fullmatch(label) for label in labels)
            and labels[-1][:1].isalpha() and len(host) <= 253)


def _parse_proxy(section: str, value: str, transport: str) -> tuple[str, int, bool]:
    value = value.strip()
    m = _PROXY_V6_RE.fullmatch(value)
    if m is not None:
        host = m.group(1)
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ConfigError(f"{value!r}: bad IPv6 address", section=section, key="proxy") from None
        host = host.lower()
    else:
        m = _PROXY_RE.fullmatch(value)
        if m is None:
            raise ConfigError(f"{value!r} is not host[:port] (IPv6 as [address]:port)", section=section,
                              key="proxy")
        host = m.group(1).lower().rstrip(".")
        if not _is_ip(host) and not is_domain_name(host):
            raise ConfigError(f"{value!r}: {host!r} is neither an IP address nor a host name", section=section,
                              key="proxy")
    port_s = m.group(2)
    if port_s is None:
        return host, _DEFAULT_PORTS[transport], False
    port = int(port_s)
    if not 1 <= port <= 65535:
        raise ConfigError(f"{value!r}: port {port} is out of range (1-65535)", section=section, key="proxy")
    return host, port, True


def _parse_phone_context(section: str, value: str) -> str:
    v = value.strip()
    if v.startswith("+"):
        digits = v.translate(_VISUAL)
        if _GLOBAL_RE.fullmatch(digits):
            return digits
    elif is_domain_name(v):
        return v.lower().rstrip(".")
    raise ConfigError(f"{value!r} is neither a global number prefix (e.g. +31) nor a domain name (RFC 3966)",
                      section=section, key="phone_context")


def _parse_dids(section: str, value: str) -> dict[str, str]:
    dids: dict[str, str] = {}
    for entry in value.split():
        number, colon, target = entry.partition(":")
        number = number.translate(_VISUAL)
        if not colon or not target or not (number == "*" or _DID_RE.fullmatch(number)) \
                or not _TARGET_RE.fullmatch(target):
            raise ConfigError(f"{entry!r} is not NUMBER:EXTENSION (e.g. +31201234567:100, or *:100 for "
                              f"every other number)", section=section, key="did")
        if number in dids:
            raise ConfigError(f"number {number} is mapped twice", section=section, key="did")
        dids[number] = target
    return dids


def _all_global(prefix: str, strip: int, prepend: str) -> bool:
    """Every number this trunk sends is global (+E.164): ``prepend`` adds the +, or the dialled + stays."""
    return prepend.startswith("+") or (not prepend and strip == 0 and prefix.startswith("+"))


def parse_trunk(section: str, values: Mapping[str, str]) -> TrunkConfig:
    """One ``[trunk NAME]`` section; ConfigError naming the section and key."""
    words = section.split()
    if len(words) != 2 or not _NAME_RE.fullmatch(words[1]):
        raise ConfigError("a trunk section is named [trunk NAME] (NAME: letters, digits, _ . -)", section=section)
    name = words[1]
    values = {k.lower(): v.strip() for k, v in values.items()}
    for key in values:
        if key not in _KEYS:
            raise ConfigError(f"unknown key (known: {', '.join(sorted(_KEYS))})", section=section, key=key)

    transport = values.get("transport", "udp").lower() or "udp"
    if transport not in _TRANSPORTS:
        raise ConfigError(f"{values['transport']!r} is not one of udp, tcp, tls", section=section, key="transport")
    if not values.get("proxy"):
        raise ConfigError("required (the carrier's host[:port])", section=section, key="proxy")
    host, port, port_given = _parse_proxy(section, values["proxy"], transport)

    username = values.get("username") or None
    password = values.get("password") or None
    if username is not None and not _USERNAME_RE.fullmatch(username):
        raise ConfigError(f"{username!r} is not a valid SIP user name", section=section, key="username")
    if username is not None and password is None:
        raise ConfigError("username is set but password is missing", section=section, key="password")
    if password is not None and username is None:
        raise ConfigError("password is set but username is missing", section=section, key="username")
    register = ConfigValues(section, values).boolean("register", False)
    if register and username is None:
        raise ConfigError("register = yes needs username and password", section=section, key="register")

    expires = DEFAULT_EXPIRES
    if values.get("expires"):
        if not values["expires"].isdigit() or not 60 <= int(values["expires"]) <= 86400:
            raise ConfigError(f"{values['expires']!r} is not a number of seconds from 60 to 86400",
                              section=section, key="expires")
        expires = int(values["expires"])

    prefix = values.get("prefix") or None
    if prefix is not None and not _PREFIX_RE.fullmatch(prefix):
        raise ConfigError(f"{prefix!r} is not a dialling prefix (digits, * and #, optionally after +)",
                          section=section, key="prefix")
    strip = 0
    if values.get("strip"):
        if not values["strip"].isdigit():
            raise ConfigError(f"{values['strip']!r} is not a number of digits", section=section, key="strip")
        strip = int(values["strip"])
    prepend = values.get("prepend", "").translate(_VISUAL)
    if not _PREPEND_RE.fullmatch(prepend):
        raise ConfigError(f"{values['prepend']!r} is not digits (optionally after +)", section=section,
                          key="prepend")
    use_tel_uri = ConfigValues(section, values).boolean("use_tel_uri", False)

    phone_context: str | None = None
    if values.get("phone_context"):
        phone_context = _parse_phone_context(section, values["phone_context"])
    elif is_domain_name(host):
        phone_context = host
    elif use_tel_uri and prefix is not None and not _all_global(prefix, strip, prepend):
        # Global (+E.164) numbers need no context: start, and refuse only the calls that would need one.
        _config_log.warn("[{section}] phone_context is not set and proxy {host} is an IP address: calls that go "
                         "out as a local number (not +E.164) cannot be written as tel: URIs and are refused (503) "
                         "until phone_context is set in [{section}] (a global prefix such as +31, or a domain name)",
                         section=section, host=host)

    from_number = None
    if values.get("from_number"):
        from_number = values["from_number"].translate(_VISUAL)
        if not (_GLOBAL_RE.fullmatch(from_number) or _LOCAL_RE.fullmatch(from_number)):
            raise ConfigError(f"{values['from_number']!r} is not a telephone number", section=section,
                              key="from_number")
    dids = _parse_dids(section, values.get("did", ""))
    match_port = ConfigValues(section, values).boolean("match_port", True)
    certificates = ConfigValues(section, values).fingerprints("certificate")
    if certificates and transport != "tls":
        raise ConfigError("a certificate identifies a trunk over TLS only: set transport = tls", section=section,
                          key="certificate")
    return TrunkConfig(name, host, port, port_given, transport, username, password, register, expires, prefix,
                       strip, prepend, use_tel_uri, phone_context, from_number, dids, match_port, certificates)


def parse_trunks(sections: Mapping[str, Mapping[str, str]]) -> TrunksConfig:
    trunks: list[TrunkConfig] = []
    prefixes: dict[str, str] = {}
    for section in sorted(sections):
        trunk = parse_trunk(section, sections[section])
        if trunk.prefix is not None:
            if trunk.prefix in prefixes:
                raise ConfigError(f"prefix {trunk.prefix} is already used by [{prefixes[trunk.prefix]}]",
                                  section=section, key="prefix")
            prefixes[trunk.prefix] = section
        trunks.append(trunk)
    return TrunksConfig(tuple(trunks))


# -- numbers and URIs ------------------------------------------------------------------------------------

def select_trunk(trunks: Iterable[TrunkConfig], number: str) -> TrunkConfig | None:
    """The trunk whose prefix is the longest one ``number`` starts with."""
    best: TrunkConfig | None = None
    for trunk in trunks:
        if trunk.prefix is not None and number.startswith(trunk.prefix) \
                and (best is None or len(trunk.prefix) > len(best.prefix or "")):
            best = trunk
    return best


def outbound_number(trunk: TrunkConfig, dialled: str) -> str | None:
    """The number sent to the carrier (``strip`` leading characters removed, ``prepend`` added),
    or None when nothing valid is left."""
    if trunk.strip > len(dialled):
        return None
    number = trunk.prepend + dialled[trunk.strip:]
    if _GLOBAL_RE.fullmatch(number) or _LOCAL_RE.fullmatch(number):
        return number
    return None


def missing_phone_context(trunk: TrunkConfig, number: str) -> bool:
    """``number`` must go out as a local tel: URI but the trunk has no phone-context to write (RFC 3966)."""
    return trunk.use_tel_uri and not number.startswith("+") and trunk.phone_context is None


def request_uri(trunk: TrunkConfig, number: str) -> str:
    """``tel:+31201234567``, ``tel:0201234567;phone-context=+31`` (RFC 3966) or ``sip:number@proxy``."""
    if trunk.use_tel_uri:
        if number.startswith("+"):
            return f"tel:{number}"
        if trunk.phone_context is None:
            raise ValueError(f"trunk {trunk.name}: local number {number} needs phone_context")
        return f"tel:{number};phone-context={trunk.phone_context}"
    tail = f";transport={trunk.transport}" if trunk.transport != "udp" else ""
    return f"sip:{number}@{trunk.uri_host}{tail}"


def did_target(trunk: TrunkConfig, number: str) -> str | None:
    """The extension (or group) a DID maps to: exact, then with/without a leading +, then ``*``."""
    dids = trunk.dids
    if number in dids:
        return dids[number]
    alt = number[1:] if number.startswith("+") else "+" + number
    if alt in dids:
        return dids[alt]
    return dids.get("*")


def uri_number(uri: Any) -> str | None:
    """The user part of a sip: URI or the number of a tel: URI, normalised; None when it has none."""
    if isinstance(uri, TelURI):
        return uri.digits
    if isinstance(uri, SipURI) and uri.user:
        return normalize_number(uri.user)
    return None


def same_host(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    except ValueError:
        return a.lower() == b.lower()


# -- host name resolution --------------------------------------------------------------------------------

class Resolver:
    """Proxy host names to IP addresses (cached for RESOLVE_TTL); IP literals pass through."""

    def __init__(self, clock: Any, resolve: Callable[[str], defer.Deferred] | None,
                 on_address: Callable[[str], None] | None = None) -> None:
        self.clock = clock
        self._resolve = resolve
        self._cache: dict[str, tuple[str, float]] = {}
        self.on_address = on_address or (lambda ip: None)   # each address a carrier resolves to

    def cached(self, host: str) -> str | None:
        if _is_ip(host):
            return host
        hit = self._cache.get(host)
        return hit[0] if hit is not None else None

    def resolve(self, host: str) -> defer.Deferred:
        if _is_ip(host):
            return defer.succeed(host)
        hit = self._cache.get(host)
        if hit is not None and hit[1] > self.clock.seconds():
            return defer.succeed(hit[0])
        if self._resolve is None:
            return defer.fail(LookupError(f"no resolver for host name {host}"))
        d = defer.maybeDeferred(self._resolve, host)

        def got(ip: str) -> str:
            self._cache[host] = (ip, self.clock.seconds() + RESOLVE_TTL)
            self.on_address(ip)
            return ip

        d.addCallback(got)
        return d


# -- the hook objects ------------------------------------------------------------------------------------

@implementer(ICallRouter)
class TrunkRouter:
    """Outbound: a call to ``prefix...`` goes out the trunk with the longest matching prefix."""

    def __init__(self, feature: TrunksFeature) -> None:
        self.feature = feature

    def route(self, call: Any) -> RouteDecision | defer.Deferred:
        feature = self.feature
        if call.source == "trunk":
            return CONTINUE      # never from one carrier out to another (toll fraud)
        dialled = normalize_number(call.callee or "")
        if not dialled or feature.api.extension_exists(call.callee):
            return CONTINUE
        trunk = select_trunk(feature.config.trunks, dialled)
        if trunk is None:
            return CONTINUE
        number = outbound_number(trunk, dialled)
        if number is None:
            feature.log.info("trunk {name}: call {id} to {callee}: no valid number left to send",
                             name=trunk.name, id=call.id, callee=call.callee)
            return Reject(484, "Address Incomplete")
        if missing_phone_context(trunk, number):
            feature.log.warn("trunk {name}: call {id} to {callee} refused (503): {number} is a local number and "
                             "its tel: URI needs a phone-context: set phone_context in [trunk {name}] (a global "
                             "prefix such as +31, or a domain name)", name=trunk.name, id=call.id,
                             callee=call.callee, number=number)
            return Reject(503, "No phone-context for local number")
        d = feature.resolver.resolve(trunk.host)

        def resolved(ip: str) -> RouteDecision:
            dest = self.destination(trunk, number, ip)
            feature.log.info("trunk {name}: call {id} from {caller} to {callee} goes out as {uri}",
                             name=trunk.name, id=call.id, caller=call.caller, callee=call.callee, uri=dest.uri)
            return Route((dest,))

        def unresolved(f: Any) -> RouteDecision:
            feature.log.warn("trunk {name}: cannot resolve {host}: {why}", name=trunk.name, host=trunk.host,
                             why=f.getErrorMessage())
            return Reject(503, "Service Unavailable")

        d.addCallbacks(resolved, unresolved)
        return d

    def destination(self, trunk: TrunkConfig, number: str, ip: str) -> SipDestination:
        uri = request_uri(trunk, number)
        domain = self.feature.api.domain
        from_uri = f"<sip:{trunk.from_number}@{domain}>" if trunk.from_number else None
        return SipDestination(uri=uri, addr=Addr(trunk.transport, ip, trunk.port), to_uri=f"<{uri}>",
                              from_uri=from_uri, credentials=trunk.credentials, trunk=trunk.name)


@implementer(ICallerIdentifier)
class TrunkIdentifier:
    """Inbound: an INVITE from a trunk (by address, or to the user we registered as) needs no digest."""

    def __init__(self, feature: TrunksFeature) -> None:
        self.feature = feature

    def match(self, request: Any, source: Addr) -> list[TrunkConfig]:
        """The trunks this INVITE may come from: registration matches first, then address matches."""
        feature = self.feature
        uri = request.uri
        shown: str | None = None
        if source.transport == "tls" and any(trunk.certificates for trunk in feature.config.trunks):
            shown = feature.api.peer_certificate(source)
        by_reg: list[TrunkConfig] = []
        if isinstance(uri, SipURI) and uri.user and not feature.api.extension_exists(uri.user):
            user = unquote(uri.user)
            for trunk in feature.config.trunks:
                reg = feature.registrations.get(trunk.name)
                if trunk.certificates and shown not in trunk.certificates:
                    continue
                if trunk.register and user == trunk.username and reg is not None and reg.is_registered():
                    by_reg.append(trunk)
        by_addr: list[TrunkConfig] = []
        for trunk in feature.config.trunks:
            if trunk.certificates:
                # a pinned carrier is its certificate, from whatever address: the address alone is not it
                if shown in trunk.certificates and trunk not in by_reg:
                    by_addr.append(trunk)
                continue
            ip = feature.resolver.cached(trunk.host)
            if ip is None or not same_host(source.host, ip):
                continue
            if source.transport != trunk.transport:
                continue    # a trunk is reached over its own transport; UDP spoofing cannot become TCP
            if trunk.match_port and source.transport == "udp" and source.port != trunk.port:
                continue
            if source.transport != "udp" and trunk.match_port and not (feature.api.opened_by_us(source)
                                                                      or source.port == trunk.port):
                continue    # over TCP/TLS: a connection we opened to the carrier, or from its own port
            if trunk not in by_reg:
                by_addr.append(trunk)
        return by_reg + by_addr

    def identify(self, request: Any, source: Addr) -> CallerIdentity | None:
        trunks = self.match(request, source)
        if not trunks:
            return None
        try:
            to_uri = request.to.uri
        except Exception:
            to_uri = None
        ruri_number = uri_number(request.uri)
        chosen, number, target = trunks[0], None, None
        for trunk in trunks:
            n = ruri_number
            if not n or n == trunk.username:
                n = uri_number(to_uri)
            t = did_target(trunk, n) if n else None
            if number is None:
                number = n
            if t is not None:
                chosen, number, target = trunk, n, t
                break
        caller = self.caller(request)
        if target is None:
            self.feature.log.info("trunk {name}: inbound call from {caller} to unknown number {number} refused (404)",
                                  name=chosen.name, caller=caller, number=number)
            return CallerIdentity(caller=caller, source="trunk", trunk=chosen.name, reject=(404, "Not Found"))
        self.feature.log.info("trunk {name}: inbound call from {caller} to {number} for {target}",
                              name=chosen.name, caller=caller, number=number, target=target)
        return CallerIdentity(caller=caller, source="trunk", trunk=chosen.name, callee=target)

    @staticmethod
    def caller(request: Any) -> str:
        try:
            number = uri_number(request.from_.uri)
        except Exception:
            number = None
        return number or "anonymous"


# -- the service and the feature -------------------------------------------------------------------------

class RegistrationService(Service):
    """Starts and stops the registrations of the trunks with ``register = yes``."""

    def __init__(self, feature: TrunksFeature) -> None:
        self.feature = feature

    def startService(self) -> None:
        super().startService()
        self.feature.start_registrations()

    def stopService(self) -> defer.Deferred:
        super().stopService()
        return self.feature.stop_registrations()


@implementer(IFeature)
class TrunksFeature:
    def __init__(self, api: ServerAPI, config: TrunksConfig,
                 resolve: Callable[[str], defer.Deferred] | None = None) -> None:
        self.api = api
        self.log = api.log
        self.config = config
        self.resolver = Resolver(api.clock, resolve or getattr(api.clock, "resolve", None), self._address)
        self.pins: set[tuple[str, int]] = set()     # (ip, port) pinned to a trunk's certificates
        self.registrations: dict[str, RegistrationClient] = {}
        self.router = TrunkRouter(self)
        self.identifier = TrunkIdentifier(self)
        self.service = RegistrationService(self)

    def register(self, hooks: Any) -> None:
        hooks.add_router(self.router, priority=ROUTER_PRIORITY)
        hooks.add_caller_identifier(self.identifier)
        hooks.add_service(self.service)
        for trunk in self.config.trunks:
            self._describe(trunk)
            self._exempt(trunk)
        self._pin()

    def _address(self, ip: str) -> None:
        """A carrier host name resolved to ``ip``: never banned; pinned when its trunk has a certificate."""
        self.api.exempt_from_bans(ip)
        self._pin()

    def _pin(self) -> None:
        """Connections minisip opens to a trunk with ``certificate`` accept only that certificate."""
        pins: dict[tuple[str, int], tuple[str, ...]] = {}
        for trunk in self.config.trunks:
            ip = self.resolver.cached(trunk.host) if trunk.certificates else None
            if ip is not None:
                pins[(ip, trunk.port)] = pins.get((ip, trunk.port), ()) + trunk.certificates
        for ip, port in self.pins - pins.keys():
            self.api.pin_certificates(ip, port, ())
        for (ip, port), fingerprints in pins.items():
            self.api.pin_certificates(ip, port, fingerprints)
        self.pins = set(pins)

    def _exempt(self, trunk: TrunkConfig) -> None:
        """A carrier's address is never banned: a spoofed guess in its name must not cut off its calls
        (host names are exempted as they resolve)."""
        if _is_ip(trunk.host):
            self.api.exempt_from_bans(trunk.host)

    def _describe(self, trunk: TrunkConfig) -> None:
        self.log.info("trunk {name}: {transport}:{host}:{port}, prefix {prefix}, {uris} URIs, {n} DIDs, {reg}",
                      name=trunk.name, transport=trunk.transport, host=trunk.host, port=trunk.port,
                      prefix=trunk.prefix or "(none: inbound only)", uris="tel" if trunk.use_tel_uri else "sip",
                      n=len(trunk.dids), reg=f"registers as {trunk.username}" if trunk.register else "no registration")
        if trunk.username and self.api.extension_exists(trunk.username):
            self.log.warn("trunk {name}: username {user} is also an extension number: inbound calls are "
                          "recognised by the carrier's address only", name=trunk.name, user=trunk.username)

    # -- registrations -------------------------------------------------------------------------
    def start_registrations(self) -> None:
        for trunk in self.config.trunks:
            if not _is_ip(trunk.host):
                d = self.resolver.resolve(trunk.host)   # warm the cache for inbound matching
                d.addErrback(self._unresolved, trunk)
            if trunk.register and trunk.name not in self.registrations:
                reg = RegistrationClient(self.api, trunk, self.resolver.resolve, self.log, kind="trunk")
                self.registrations[trunk.name] = reg
                reg.start()

    def _unresolved(self, f: Failure, trunk: TrunkConfig) -> None:
        self.log.warn("trunk {name}: cannot resolve {host}: {why}", name=trunk.name, host=trunk.host,
                      why=f.getErrorMessage())

    def stop_registrations(self) -> defer.Deferred:
        regs, self.registrations = list(self.registrations.values()), {}
        return defer.gatherResults([reg.stop() for reg in regs], consumeErrors=True)

    def reconfigure(self, config: TrunksConfig) -> None:
        old = {t.name: t for t in self.config.trunks}
        self.config = config
        self._pin()
        if not self.service.running:
            return
        new = {t.name: t for t in config.trunks}
        for name, reg in list(self.registrations.items()):
            trunk = new.get(name)
            if trunk is None or trunk.registration_key() != old[name].registration_key():
                del self.registrations[name]
                reg.stop()
            else:
                reg.spec = trunk
        for trunk in config.trunks:
            if trunk.name not in old or trunk != old[trunk.name]:
                self._describe(trunk)
                self._exempt(trunk)
        self.start_registrations()


@implementer(IFeatureFactory)
class TrunksFactory:
    name = "minisip.trunks"
    api_version = API_VERSION
    description = "SIP trunks: outbound by prefix with tel: URIs (RFC 3966), carrier registration, inbound DIDs"
    config_prefixes = ("trunk",)

    def parse_config(self, sections: Mapping[str, Mapping[str, str]]) -> TrunksConfig:
        return parse_trunks(sections)

    def make_feature(self, api: ServerAPI, config: TrunksConfig | None) -> TrunksFeature:
        return TrunksFeature(api, config if config is not None else TrunksConfig())


factory = TrunksFactory()
