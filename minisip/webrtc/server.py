"""The WSS service for browsers: the web page over HTTPS and MCCP on ``/mccp``, on one TLS port.

Autobahn's Twisted WebSocket protocol only moves frames between the socket and a pure
``mccp.Session``; the session's call events go to an ``IBrowserCalls`` (the call layer), which reports
back through the connection as an ``IBrowserPeer``. The handshake's Origin is checked against an
allow-list and the subprotocol must be ``mccp.v1``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterable
from urllib.parse import urlsplit

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny
from twisted.application.service import Service
from twisted.internet.interfaces import IReactorSSL, IReactorTime
from twisted.logger import Logger
from twisted.web.resource import NoResource, Resource
from twisted.web.server import Site
from twisted.web.static import File
from zope.interface import implementer

from minisip.config import ConfigError
from minisip.transport import tls
from minisip.webrtc import mccp
from minisip.webrtc.gateway import IBrowserCalls, IBrowserPeer

__all__ = [
    "WWW_DIR",
    "MccpConnection",
    "MccpServerFactory",
    "MccpServerProtocol",
    "OriginPolicy",
    "WssCertificate",
    "WssService",
    "load_certificate",
    "make_site",
]

log = Logger(namespace="minisip.webrtc")

WWW_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "www")
CERT_DIR = "wrtcCert"
DEFAULT_PORT = 5062

# Headers of every HTTPS response: the page runs only our own code and talks to MCCP servers over WSS.
SECURITY_HEADERS = {
    b"Content-Security-Policy": b"default-src 'self'; connect-src 'self' wss:; media-src 'self' blob:; "
                                b"frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    b"X-Content-Type-Options": b"nosniff",
    b"Referrer-Policy": b"no-referrer",
    b"Cache-Control": b"no-cache",
}


# --- who may connect ---


def _origin_key(scheme: str, host: str, port: int | None) -> tuple[str, str, int]:
    default = 443 if scheme in ("https", "wss") else 80
    return scheme.lower(), host.lower().rstrip("."), port if port is not None else default


def _parse_origin(text: str) -> tuple[str, str, int] | None:
    """'https://Host:8443' -> ('https', 'host', 8443); None when it is not a scheme://host[:port] origin."""
    try:
        parts = urlsplit(text.strip())
        port = parts.port
    except ValueError:
        return None
    if not parts.scheme or not parts.hostname or parts.path not in ("", "/") or parts.query or parts.fragment:
        return None
    return _origin_key(parts.scheme, parts.hostname, port)


class OriginPolicy:
    """The WebSocket Origins allowed to open MCCP connections.

    Entries: ``same`` (a page served by this server: the Origin is https and its host and port are the
    Host header's), ``null`` (a page opened from a local file), ``*`` (any page) or an origin such as
    ``https://intranet.example.com:8443``. A handshake without an Origin header is not from a browser
    (browsers always send one, so no page can hide it) and is allowed: the check protects users' browsers
    from other sites, not the server from other programs (the caller's password does that).
    """

    DEFAULT = ("same", "null")

    def __init__(self, entries: Iterable[str] = DEFAULT) -> None:
        self.entries = tuple(entries)
        self.any = False
        self.same = False
        self.null = False
        self.origins: set[tuple[str, str, int]] = set()
        for entry in self.entries:
            word = entry.strip().lower()
            if word == "*":
                self.any = True
            elif word == "same":
                self.same = True
            elif word == "null":
                self.null = True
            else:
                origin = _parse_origin(entry)
                if origin is None:
                    raise ConfigError(f"{entry!r} is not an origin (same, null, * or scheme://host[:port])",
                                      section="mccp", key="origins")
                self.origins.add(origin)

    def allows(self, origin: str, host_header: str) -> bool:
        """Whether a handshake with this ``Origin`` ('' when absent) and ``Host`` header may connect."""
        origin = origin.strip()
        if not origin:
            return True
        if self.any:
            return True
        if origin.lower() == "null":
            return self.null
        key = _parse_origin(origin)
        if key is None:
            return False
        if key in self.origins:
            return True
        if self.same and key[0] == "https":
            host = _parse_origin("https://" + host_header.strip())
            return host is not None and host == key
        return False


# --- one connection ---


def _address(transport: Any) -> tuple[str, int]:
    try:
        peer = transport.getPeer()
        return str(getattr(peer, "host", "")), int(getattr(peer, "port", 0))
    except Exception:  # a transport without an address (tests): the peer is unknown
        return "", 0


@implementer(IBrowserPeer)
class MccpConnection:
    """One browser connection as the call layer sees it: frames to the session, its events to the gateway,
    the gateway's reports back as frames. Kept apart from the Autobahn protocol so that no name of ours
    can shadow one of Autobahn's."""

    def __init__(self, websocket: "MccpServerProtocol", gateway: IBrowserCalls, clock: IReactorTime,
                 limits: mccp.Limits, address: str, port: int, origin: str) -> None:
        self.websocket = websocket
        self.gateway = gateway
        self.clock = clock
        self.session = mccp.Session(limits)
        self.address = address
        self.port = port
        self.origin = origin

    @property
    def alive(self) -> bool:
        return self.session.state != mccp.State.CLOSED

    def __repr__(self) -> str:
        return f"<MccpConnection {self.address}:{self.port} {self.session.state} {self.session.call}>"

    # -- from the WebSocket --

    def frame_received(self, payload: bytes, is_binary: bool) -> None:
        try:
            out = self.session.receive(payload, is_binary, self.clock.seconds())
        except Exception:  # the session promises not to raise; a bug must still not escape the callback
            log.failure("MCCP session failed on a frame from {address}", address=self.address)
            out = self.session.close(1011, "server error")
        self._apply(out)

    def connection_lost(self) -> None:
        self._apply(self.session.connection_lost("connection closed"))

    # -- IBrowserPeer --

    def progress(self, call_id: str, state: str, sdp: str | None = None) -> None:
        self._report("progress", lambda s: s.progress(call_id, state, sdp))

    def answer(self, call_id: str, sdp: str) -> None:
        self._report("answer", lambda s: s.answer(call_id, sdp))

    def hangup(self, call_id: str, status: int, reason: str) -> None:
        self._report("hangup", lambda s: s.hangup(call_id, status, reason))

    def logged_in(self, user: str) -> None:
        self._report("login", lambda s: s.logged_in(user))

    def login_refused(self, reason: str) -> None:
        self._report("login refusal", lambda s: s.login_refused(reason))

    def incoming(self, call_id: str, caller: str, callee: str, sdp: str, name: str = "") -> bool:
        try:
            out = self.session.offer_call(call_id, caller, callee, sdp, name)
        except Exception:
            log.failure("MCCP session failed offering a call to {address}", address=self.address)
            return False
        if out is None:
            return False
        self._apply(out)
        return True

    def close(self, code: int = mccp.CLOSE_GOING_AWAY, reason: str = "server shutting down") -> None:
        """Our side ends the connection (shutdown): the call is hung up on both sides first."""
        self._apply(self.session.close(code, reason))

    # -- moving things along --

    def _report(self, what: str, step: Any) -> None:
        try:
            out = step(self.session)
        except mccp.LocalProtocolError as e:
            log.error("The call layer reported {what} out of turn on an MCCP connection: {error}", what=what, error=e)
            return
        self._apply(out)

    def _apply(self, out: mccp.Output) -> None:
        for text in out.send:
            self._write(text)
        for event in out.events:
            self._dispatch(event)
        if out.close is not None:
            self._close(out.close)

    def _write(self, text: str) -> None:
        try:
            self.websocket.sendMessage(text.encode("utf-8"), isBinary=False)
        except Exception:  # the socket is already closing: the frame cannot go anywhere
            log.debug("MCCP frame to {address} dropped: the connection is closing", address=self.address)

    def _close(self, close: mccp.Close) -> None:
        # sendClose accepts only 1000 and 3000-4999; sendCloseFrame takes the RFC 6455 codes MCCP uses.
        try:
            self.websocket.sendCloseFrame(code=close.code, reasonUtf8=close.reason.encode("utf-8")[:123],
                                          isReply=False)
        except Exception:
            log.debug("MCCP close to {address} not sent: the connection is closing", address=self.address)
        log.info("MCCP connection from {address} closed by the server: {code} {reason}",
                 address=self.address, code=close.code, reason=close.reason)

    def _dispatch(self, event: mccp.Event) -> None:
        try:
            if isinstance(event, mccp.CallRequested):
                log.info("Browser call {call} from {caller} to {callee} ({address})", call=event.call,
                         caller=event.caller, callee=event.callee, address=self.address)
                self.gateway.start_call(self, event.call, event.caller, event.password, event.callee, event.sdp)
            elif isinstance(event, mccp.HangupRequested):
                log.info("Browser call {call} hung up by the browser ({address}): {reason}", call=event.call,
                         address=self.address, reason=event.reason or event.status)
                self.gateway.hangup(self, event.call, event.status, event.reason)
            elif isinstance(event, mccp.DtmfRequested):
                self.gateway.dtmf(self, event.call, event.digits, event.duration)
            elif isinstance(event, mccp.LoginRequested):
                self.gateway.login(self, event.user, event.password)
            elif isinstance(event, mccp.LogoutRequested):
                self.gateway.logout(self, event.user)
            else:
                self.gateway.answer(self, event.call, event.sdp)
        except Exception:
            log.failure("The call layer failed on {event}", event=type(event).__name__)
            if isinstance(event, mccp.CallRequested):
                self.hangup(event.call, 500, "Server Internal Error")
            elif isinstance(event, mccp.LoginRequested):
                self.login_refused("Server Internal Error")


class MccpServerProtocol(WebSocketServerProtocol):
    """Autobahn's side: checks the handshake, then hands frames and the close to an MccpConnection."""

    factory: "MccpServerFactory"
    mccp_connection: MccpConnection | None = None
    mccp_origin = ""

    def onConnect(self, request: Any) -> str:  # noqa: N802 (Autobahn's names)
        origin = request.origin or ""
        host = request.headers.get("host", "")
        if not self.factory.origins.allows(origin, host):
            log.warn("MCCP connection from {peer} refused: origin {origin!r} is not allowed",  # noqa: G010
                     peer=request.peer, origin=origin)
            raise ConnectionDeny(ConnectionDeny.FORBIDDEN, "origin not allowed")
        if mccp.SUBPROTOCOL not in request.protocols:
            raise ConnectionDeny(ConnectionDeny.BAD_REQUEST,
                                 f"the WebSocket subprotocol {mccp.SUBPROTOCOL} is required")
        self.mccp_origin = origin
        return mccp.SUBPROTOCOL

    def onOpen(self) -> None:  # noqa: N802
        address, port = _address(self.transport)
        factory = self.factory
        self.mccp_connection = MccpConnection(self, factory.gateway, factory.clock, factory.limits, address, port,
                                              self.mccp_origin)
        factory.connections.add(self.mccp_connection)
        log.debug("MCCP connection from {address}:{port} (origin {origin!r})",
                  address=address, port=port, origin=self.mccp_origin)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:  # noqa: N802, N803
        if self.mccp_connection is not None:
            self.mccp_connection.frame_received(payload, isBinary)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:  # noqa: N802, N803
        connection, self.mccp_connection = self.mccp_connection, None
        if connection is not None:
            self.factory.connections.discard(connection)
            connection.connection_lost()


class MccpServerFactory(WebSocketServerFactory):
    """MCCP connections: the gateway they report to, their limits, the Origins allowed, the live ones."""

    protocol = MccpServerProtocol

    def __init__(self, gateway: IBrowserCalls, clock: IReactorTime, *, origins: OriginPolicy | None = None,
                 limits: mccp.Limits | None = None, ping_interval: float = 30, ping_timeout: float = 10,
                 max_connections: int = 1000) -> None:
        super().__init__(protocols=[mccp.SUBPROTOCOL], reactor=clock)
        self.gateway = gateway
        self.clock = clock
        self.origins = origins if origins is not None else OriginPolicy()
        self.limits = limits if limits is not None else mccp.Limits()
        self.connections: set[MccpConnection] = set()
        # Autobahn cuts only frames far beyond our limit (so nothing huge is buffered); the session
        # refuses the rest with an MCCP error that says why.
        hard_limit = 4 * self.limits.max_frame
        self.setProtocolOptions(
            webStatus=False,
            maxFramePayloadSize=hard_limit,
            maxMessagePayloadSize=hard_limit,
            openHandshakeTimeout=10,
            closeHandshakeTimeout=5,
            autoPingInterval=ping_interval,
            autoPingTimeout=ping_timeout,
            maxConnections=max_connections,
            allowNullOrigin=True,  # Autobahn's own Origin check stays open; OriginPolicy decides in onConnect
            perMessageCompressionAccept=lambda offers: None,  # no compression: frames are small, bombs are not
        )


# --- the page and the port ---


class _StaticFiles(File):
    """The www directory: its files with the security headers, no directory listings."""

    indexNames = ["lite.html"]

    def directoryListing(self) -> Resource:  # noqa: N802 (Twisted's name)
        return NoResource("No such resource.")

    def render(self, request: Any) -> Any:
        for name, value in SECURITY_HEADERS.items():
            request.setHeader(name, value)
        return super().render(request)


def make_site(factory: MccpServerFactory, www_dir: str = WWW_DIR) -> Site:
    """The HTTPS site: the files of ``www_dir`` and the WebSocket upgrade on ``/mccp``."""
    root = _StaticFiles(www_dir)
    root.putChild(b"mccp", WebSocketResource(factory))
    site = Site(root)
    site.displayTracebacks = False
    return site


@dataclass(frozen=True, slots=True)
class WssCertificate:
    """The pair WSS serves; ``fallback`` is True when ``wrtc_dir`` had none and the SIP TLS pair is used."""

    context_factory: Any
    cert_path: str
    key_path: str
    fallback: bool
    wrtc_dir: str


def load_certificate(datadir: str, sip_cert: str | None, sip_key: str | None, hostname: str) -> WssCertificate:
    """``<datadir>/wrtcCert/server.crt`` and ``server.key`` when present, else the SIP TLS pair (made
    self-signed on first start when none is configured). Raises ConfigError (TLSCertificateError) for a
    half pair, an unreadable or non-PEM file, an encrypted key, or a key that does not match."""
    directory = os.path.join(os.path.abspath(datadir), CERT_DIR)
    cert_path = os.path.join(directory, tls.CERTIFICATE_FILE)
    key_path = os.path.join(directory, tls.PRIVATE_KEY_FILE)
    have_cert, have_key = os.path.exists(cert_path), os.path.exists(key_path)
    if have_cert or have_key:
        if not (have_cert and have_key):
            present, missing = (cert_path, key_path) if have_cert else (key_path, cert_path)
            raise tls.TLSCertificateError(f"{missing} is missing: the WSS certificate and its key go together "
                                          f"(found only {present})", section="mccp", key="wss")
        return WssCertificate(tls.server_context_factory(cert_path, key_path), cert_path, key_path, False, directory)
    cert_path, key_path = tls.ensure_certificate(datadir, sip_cert, sip_key, hostname)
    return WssCertificate(tls.server_context_factory(cert_path, key_path), cert_path, key_path, True, directory)


class WssService(Service):
    """Listens for browsers on one TLS address: ``https://HOST:PORT/`` (the page) and ``wss://HOST:PORT/mccp``."""

    def __init__(self, reactor: IReactorSSL, host: str, port: int, certificate: WssCertificate,
                 gateway: IBrowserCalls, *, www_dir: str = WWW_DIR, origins: OriginPolicy | None = None,
                 limits: mccp.Limits | None = None, ping_interval: float = 30, ping_timeout: float = 10) -> None:
        self.reactor = reactor
        self.host = host
        self.port = port
        self.certificate = certificate
        self.factory = MccpServerFactory(gateway, reactor, origins=origins, limits=limits,  # type: ignore[arg-type]
                                         ping_interval=ping_interval, ping_timeout=ping_timeout)
        self.site = make_site(self.factory, www_dir)
        self.listening: Any = None

    def startService(self) -> None:  # noqa: N802 (Twisted's name)
        self.listening = self.reactor.listenSSL(self.port, self.site, self.certificate.context_factory,
                                                interface=self.host)
        port = self.listening.getHost().port
        log.info("start WSS service on {host}:{port} (certificate {cert})", host=self.host or "0.0.0.0",
                 port=port, cert=self.certificate.cert_path)
        if self.certificate.fallback:
            log.warn(  # noqa: G010
                "No WSS certificate in {dir}: serving WSS with the SIP TLS certificate {cert}; browsers must "
                "accept it first by visiting https://SERVER:{port}/",
                dir=self.certificate.wrtc_dir,
                cert=self.certificate.cert_path, port=port)
        super().startService()

    def stopService(self) -> Any:  # noqa: N802
        super().stopService()
        for connection in list(self.factory.connections):
            connection.close(mccp.CLOSE_GOING_AWAY, "server shutting down")
        listening, self.listening = self.listening, None
        if listening is not None:
            return listening.stopListening()
        return None
