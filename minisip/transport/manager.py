"""Twisted adapters for SIP: UDP sockets, TCP/TLS streams, and the manager that routes bytes.

The manager turns datagrams and stream frames into parsed messages for the core and sends bytes to
an ``Addr``: back over the connection a request came on (RFC 3261 18.2.2), over an existing
connection to that host and port, or a new outbound connection for TCP/TLS.

Limits against floods: connections per host and in all (``max_connections``), a deadline for each
message on a stream once its first byte arrived (``message_timeout``, against slowloris), an idle
timeout, and bad input logged once per source and minute (then counted) instead of once a message.
"""

from __future__ import annotations

import functools
import ipaddress
import itertools
from collections import defaultdict
from typing import Callable
from typing import Protocol as TProtocol

from twisted.internet import protocol
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger, LogLevel

from minisip.log import RepeatLimiter
from minisip.sip.errors import SIPParseError
from minisip.sip.message import Request, Response, StreamFramer, make_response, parse_message
from minisip.sip.types import Addr
from minisip.transport import tls

log = Logger(namespace="minisip.transport")


class MessageSink(TProtocol):
    def message_received(self, msg: Request | Response, source: Addr) -> None: ...


def _norm_host(host: str) -> str:
    if host.startswith("::ffff:"):
        return host[7:]
    return host


class SIPDatagramProtocol(protocol.DatagramProtocol):
    noisy = False

    def __init__(self, manager: "TransportManager") -> None:
        self.manager = manager

    def datagramReceived(self, data: bytes, addr: tuple) -> None:  # noqa: N802
        try:
            self.manager.bytes_received(data, Addr("udp", _norm_host(addr[0]), addr[1]), datagram=True)
        except Exception:
            log.failure("unhandled error on a UDP datagram from {addr}", addr=addr)


class SIPStreamProtocol(protocol.Protocol):
    """One TCP or TLS connection, framed by Content-Length."""

    def __init__(self, manager: "TransportManager", transport_name: str, outbound_key: tuple | None = None) -> None:
        self.manager = manager
        self.transport_name = transport_name
        self.framer = StreamFramer(manager.max_message_size)
        self.conn_id = next(manager._ids)
        self.peer: Addr | None = None
        self.outbound_key = outbound_key
        self.pending: list[bytes] = []
        self.connected_ok = False
        self.idle_call = None
        self.message_call = None   # deadline of the message being received (None: between messages)
        self.peer_fingerprint: str | None = None   # TLS: the peer certificate's, "" for none (see manager)

    def connectionMade(self) -> None:  # noqa: N802
        p = self.transport.getPeer()
        self.peer = Addr(self.transport_name, _norm_host(p.host), p.port, self.conn_id)
        if not self.manager.connection_opened(self):
            return
        self.connected_ok = True
        for data in self.pending:
            self.transport.write(data)
        self.pending = []
        self.touch()

    def touch(self) -> None:
        clock = self.manager.clock
        if self.idle_call is not None and self.idle_call.active():
            self.idle_call.reset(self.manager.idle_timeout)
        else:
            self.idle_call = clock.callLater(self.manager.idle_timeout, self._idle)

    def _idle(self) -> None:
        log.info("closing idle {transport} connection from {peer}", transport=self.transport_name, peer=str(self.peer))
        self.transport.loseConnection()

    def _message_deadline(self, received: bytes, completed: bool) -> None:
        """Start, keep or stop the deadline of the message under way after ``received`` was framed.

        The deadline starts with a message's first byte and is not moved by later bytes, so a peer
        trickling one byte per idle period (slowloris) is closed after ``message_timeout`` seconds.
        Bytes left that are only CR/LF (a keep-alive under way) do not count as a message.
        """
        left = self.framer.buffered
        if left and left <= len(received) and not received[len(received) - left:].strip(b"\r\n"):
            left = 0
        if self.manager.conns.get(self.conn_id) is not self:
            left = 0  # closed while the input was handled: no deadline to keep
        running = self.message_call is not None and self.message_call.active()
        if not left:
            if running:
                self.message_call.cancel()
            self.message_call = None
        elif completed or not running:
            if running:
                self.message_call.cancel()
            self.message_call = self.manager.clock.callLater(self.manager.message_timeout, self._too_slow)

    def _too_slow(self) -> None:
        self.message_call = None
        assert self.peer is not None
        self.manager.refusals.report(
            self.peer.host, "security: closing {transport} connection from {peer}: a message was not complete "
            "within {timeout:g} s", log_level=LogLevel.warn, transport=self.transport_name, peer=str(self.peer),
            timeout=self.manager.message_timeout)
        self.transport.abortConnection()

    def _bad_stream(self, reason: str) -> None:
        assert self.peer is not None
        self.manager.bad_input.report(self.peer.host, "closing {peer}: cannot frame stream: {reason}",
                                      peer=str(self.peer), reason=reason)
        self.transport.loseConnection()

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        try:
            self.touch()
            try:
                items = self.framer.feed(data)
            except SIPParseError as e:
                self._bad_stream(e.reason)
                return
            completed = False
            for item in items:
                if item == "ping":
                    self.transport.write(b"\r\n")
                    continue
                assert isinstance(item, bytes)
                assert self.peer is not None
                completed = True
                self.manager.bytes_received(item, self.peer, datagram=False)
            if self.framer.failed is not None:
                self._bad_stream(self.framer.failed.reason)
                return
            self._message_deadline(data, completed)
        except Exception:
            log.failure("unhandled error on a stream from {peer}", peer=str(self.peer))

    def send(self, data: bytes) -> None:
        if self.connected_ok:
            self.transport.write(data)
        else:
            self.pending.append(data)

    def connectionLost(self, reason: object = None) -> None:  # noqa: N802
        for call in (self.idle_call, self.message_call):
            if call is not None and call.active():
                call.cancel()
        self.manager.connection_closed(self)


class StreamFactory(protocol.Factory):
    noisy = False

    def __init__(self, manager: "TransportManager", transport_name: str) -> None:
        self.manager = manager
        self.transport_name = transport_name

    def buildProtocol(self, addr: object) -> SIPStreamProtocol:  # noqa: N802
        return SIPStreamProtocol(self.manager, self.transport_name)


class OutboundFactory(protocol.ClientFactory):
    noisy = False

    def __init__(self, proto: SIPStreamProtocol) -> None:
        self.proto = proto

    def buildProtocol(self, addr: object) -> SIPStreamProtocol:  # noqa: N802
        return self.proto

    def clientConnectionFailed(self, connector: object, reason: object) -> None:  # noqa: N802
        self.proto.manager.outbound_failed(self.proto)


class TransportManager:
    """Owns every SIP socket and connection; parses input and delivers it to the sink."""

    def __init__(self, reactor: IReactorTime, sink: MessageSink | None = None, *, idle_timeout: float = 600.0,
                 max_connections_per_host: int = 32, max_message_size: int = 65535,
                 is_banned: Callable[[str], bool] | None = None, tls_client_context: object = None,
                 max_connections: int = 1024, message_timeout: float = 10.0) -> None:
        self.reactor = reactor
        self.clock = reactor
        self.sink = sink
        self.idle_timeout = idle_timeout
        self.max_connections_per_host = max_connections_per_host
        self.max_connections = max_connections
        self.message_timeout = message_timeout
        self.max_message_size = max_message_size
        # Bad input and refusals are logged once per source and minute, then counted.
        self.bad_input = RepeatLimiter(reactor, log, "bad messages")
        self.refusals = RepeatLimiter(reactor, log, "refused or closed connections")
        self.inbound = 0   # connections accepted (not the ones minisip opened), for max_connections
        self.is_banned = is_banned or (lambda host: False)
        self.tls_client_context = tls_client_context
        self.tls_pins: dict[tuple[str, int], object] = {}   # (host, port) -> a creator checking its certificate
        self._ids = itertools.count(1)
        self.udp: list[tuple[object, SIPDatagramProtocol, str]] = []   # (port, protocol, host)
        self.conns: dict[int, SIPStreamProtocol] = {}
        self.by_peer: dict[tuple[str, str, int], int] = {}
        self.per_host: dict[str, int] = defaultdict(int)
        self.local: dict[str, tuple[str, int]] = {}   # transport -> advertised (host, port)

    # -- listening ---------------------------------------------------------------------------
    def listen_udp(self, host: str, port: int) -> object:
        proto = SIPDatagramProtocol(self)
        p = self.reactor.listenUDP(port, proto, interface=host)  # type: ignore[attr-defined]
        actual = p.getHost().port
        self.udp.append((p, proto, host))
        self.local.setdefault("udp", (host, actual))
        return p

    def listen_tcp(self, host: str, port: int) -> object:
        p = self.reactor.listenTCP(port, StreamFactory(self, "tcp"), interface=host)  # type: ignore[attr-defined]
        self.local.setdefault("tcp", (host, p.getHost().port))
        return p

    def listen_tls(self, host: str, port: int, context_factory: object) -> object:
        p = self.reactor.listenSSL(port, StreamFactory(self, "tls"), context_factory, interface=host)  # type: ignore[attr-defined]
        self.local.setdefault("tls", (host, p.getHost().port))
        return p

    # -- connections -------------------------------------------------------------------------
    def connection_opened(self, proto: SIPStreamProtocol) -> bool:
        assert proto.peer is not None
        host = proto.peer.host
        inbound = proto.outbound_key is None
        # .get: reading a defaultdict would leave a 0 entry for every refused host.
        open_now = self.per_host.get(host, 0)
        if inbound and open_now >= self.max_connections_per_host:
            self.refusals.report(host, "security: refusing {transport} connection from {host}: {n} connections "
                                 "already open from it", log_level=LogLevel.warn, transport=proto.transport_name,
                                 host=host, n=open_now)
            proto.transport.abortConnection()
            return False
        if inbound and self.inbound >= self.max_connections:
            self.refusals.report(host, "security: refusing {transport} connection from {host}: {n} connections "
                                 "open in all ([security] max_connections)", log_level=LogLevel.warn,
                                 transport=proto.transport_name, host=host, n=self.inbound)
            proto.transport.abortConnection()
            return False
        if inbound and self.is_banned(host):
            proto.transport.abortConnection()
            return False
        if inbound:
            self.inbound += 1
        self.per_host[host] += 1
        self.conns[proto.conn_id] = proto
        self.by_peer[(proto.transport_name, host, proto.peer.port)] = proto.conn_id
        return True

    def connection_closed(self, proto: SIPStreamProtocol) -> None:
        if self.conns.pop(proto.conn_id, None) is None:
            if proto.outbound_key is not None:
                self.by_peer.pop(proto.outbound_key, None)
            return
        assert proto.peer is not None
        host = proto.peer.host
        if proto.outbound_key is None:
            self.inbound -= 1
        self.per_host[host] -= 1
        if self.per_host[host] <= 0:
            del self.per_host[host]
        key = (proto.transport_name, host, proto.peer.port)
        if self.by_peer.get(key) == proto.conn_id:
            del self.by_peer[key]
        if proto.outbound_key is not None and self.by_peer.get(proto.outbound_key) == proto.conn_id:
            del self.by_peer[proto.outbound_key]
        if self.on_connection_lost is not None:
            self.on_connection_lost(proto.peer)

    on_connection_lost: Callable[[Addr], None] | None = None

    def outbound_failed(self, proto: SIPStreamProtocol) -> None:
        if proto.outbound_key is not None and self.by_peer.get(proto.outbound_key) == proto.conn_id:
            del self.by_peer[proto.outbound_key]
        self.conns.pop(proto.conn_id, None)
        if self.on_send_failed is not None and proto.outbound_key is not None:
            t, h, p = proto.outbound_key
            self.on_send_failed(Addr(t, h, p))

    on_send_failed: Callable[[Addr], None] | None = None

    # -- input -------------------------------------------------------------------------------
    def bytes_received(self, data: bytes, source: Addr, *, datagram: bool) -> None:
        if datagram:
            if len(data) <= 4 and data.strip(b"\r\n") == b"":
                return  # keep-alive
            # A banned address is not dropped here: responses to our own requests and requests of
            # dialogs already up still count (the core decides, after parsing; docs/security.md).
        try:
            msg = parse_message(data, datagram=datagram)
        except SIPParseError as e:
            self._parse_error(e, source)
            return
        if isinstance(msg, Request):
            via = msg.vias[0]
            # RFC 3261 18.2.1 / RFC 3581: record where the request really came from.
            if via.host.strip("[]") != source.host:
                via.params["received"] = source.host
            if "rport" in via.params:
                via.params["rport"] = str(source.port)
                via.params["received"] = source.host
            if via.params.get("received") is not None:
                replace_top_via(msg, str(via))
        if self.sink is not None:
            self.sink.message_received(msg, source)

    def _parse_error(self, e: SIPParseError, source: Addr) -> None:
        partial = getattr(e, "partial", None)
        self.bad_input.report(source.host, "bad message from {source}: {reason}", source=str(source), reason=e.reason)
        if e.status is None or not isinstance(partial, Request) or partial.method == "ACK":
            return
        if not partial.has("via"):
            return  # no Via: the sender could not match an answer to its request
        # make_response copies every Via header as received (RFC 3261 8.2.6.2), even one that does not
        # parse (RFC 4475 badinv01 still gets its 400). The answer goes where the request came from,
        # since the Via of a broken message cannot be trusted.
        resp = make_response(partial, e.status, extra=e.extra_headers)
        self.send(resp.to_bytes(), source)

    # -- output ------------------------------------------------------------------------------
    def send(self, data: bytes, target: Addr) -> None:
        t = target.transport
        if t == "udp":
            if not self.udp:
                log.warn("no UDP listener to send to {target}", target=str(target))
                return
            if _is_broadcast(target.host):
                log.warn("refusing to send to broadcast address {target}", target=str(target))
                return
            port, proto, _ = self.udp[0]
            if ":" in target.host and len(self.udp) > 1:
                for _port, pr, h in self.udp:
                    if ":" in h:
                        proto = pr
                        break
            try:
                # The socket directly when there is one: Port.write re-validates the address each time.
                sock = getattr(proto.transport, "socket", None)
                if sock is not None:
                    sock.sendto(data, (target.host, target.port))
                else:
                    proto.transport.write(data, (target.host, target.port))
            except BlockingIOError:
                log.warn("UDP send buffer full: dropped a message to {target}", target=str(target))
            except OSError as e:  # e.g. EHOSTUNREACH, EMSGSIZE, ECONNREFUSED
                log.info("UDP send to {target} failed: {err}", target=str(target), err=str(e))
            return
        conn = None
        if target.conn is not None:
            conn = self.conns.get(target.conn)
        if conn is None:
            cid = self.by_peer.get((t, target.host, target.port))
            if cid is not None:
                conn = self.conns.get(cid)
        if conn is None:
            conn = self._connect(target)
            if conn is None:
                return
        conn.send(data)

    def _connect(self, target: Addr) -> SIPStreamProtocol | None:
        key = (target.transport, target.host, target.port)
        proto = SIPStreamProtocol(self, target.transport, outbound_key=key)
        factory = OutboundFactory(proto)
        if target.transport == "tcp":
            self.reactor.connectTCP(target.host, target.port, factory, timeout=10)  # type: ignore[attr-defined]
        elif target.transport == "tls":
            creator = self.tls_pins.get((target.host, target.port), self.tls_client_context)
            if creator is None:
                return None
            self.reactor.connectSSL(target.host, target.port, factory, creator, timeout=10)  # type: ignore[attr-defined]
        else:
            log.warn("cannot send over transport {t}", t=target.transport)
            return None
        self.conns[proto.conn_id] = proto  # placeholder until connected
        self.by_peer[key] = proto.conn_id
        return proto

    def opened_by_us(self, source: Addr) -> bool:
        """Did the stream ``source`` arrived on start as a connection minisip opened (to a trunk, say)?"""
        proto = self.conns.get(source.conn) if source.conn is not None else None
        return proto is not None and proto.outbound_key is not None

    def pin_certificates(self, host: str, port: int, fingerprints: tuple[str, ...]) -> None:
        """Connections minisip opens to ``host:port`` over TLS from now on accept only a server certificate
        with one of ``fingerprints`` (a pinned trunk); () removes the pin."""
        if fingerprints:
            self.tls_pins[(_norm_host(host), port)] = tls.client_context_factory(pinned=fingerprints)
        else:
            self.tls_pins.pop((_norm_host(host), port), None)

    def peer_certificate(self, source: Addr) -> str | None:
        """The fingerprint of the certificate the peer of TLS stream ``source`` showed, if any (cached)."""
        proto = self.conns.get(source.conn) if source.conn is not None else None
        if proto is None or proto.transport_name != "tls" or proto.transport is None:
            return None
        if proto.peer_fingerprint is None:
            try:
                certificate = proto.transport.getPeerCertificate()
            except Exception:   # not yet negotiated, or the connection is going
                certificate = None
            proto.peer_fingerprint = tls.peer_fingerprint(certificate) if certificate is not None else ""
        return proto.peer_fingerprint or None

    def is_connected(self, target: Addr) -> bool:
        if target.conn is not None and target.conn in self.conns:
            return True
        return (target.transport, target.host, target.port) in self.by_peer

    def close(self) -> None:
        for proto in list(self.conns.values()):
            if proto.transport is not None:
                proto.transport.loseConnection()
        self.bad_input.close()
        self.refusals.close()


def replace_top_via(msg: Request, value: str) -> None:
    """Rewrite the first Via value in place (the parsed Via cache stays valid: it was mutated)."""
    for i, (k, n, v) in enumerate(msg.headers):
        if k == "via":
            rest = v.split(",", 1)[1] if "," in v else None
            msg.headers[i] = (k, n, value if rest is None else f"{value},{rest}")
            return


@functools.lru_cache(maxsize=4096)
def _is_broadcast(host: str) -> bool:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return host == "255.255.255.255" or ip.is_multicast or ip.is_unspecified
