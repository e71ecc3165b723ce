"""The RTP relay: UDP endpoints from a port pool, bridged in pairs, with strict symmetric latching.

Its control API takes and returns plain data (addresses, ids, dicts; transforms are the only objects)
so that it can later run in worker processes driven by the signalling process. The per-datagram path
(``Endpoint._on_rtp_port``) is kept lean: dispatch on the first byte, no logging, no allocation beyond
the bytes a transform produces, and nothing raises out of it; SRTP to SRTP is recrypted in one step
(``SrtpContext.recrypt_rtp``). On Linux every relay socket is read through one epoll set registered once
with the reactor (``_SharedReader``); elsewhere, and with an injected ``listen_udp``, the reactor reads
each port itself.
"""

from __future__ import annotations

import select
from typing import Any, Callable

from twisted.internet import udp
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IReactorFDSet, IReactorTime
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from minisip.media.interfaces import IMediaTransform
from minisip.media.ports import PoolExhausted, PortLease, PortPool, parse_port_range
from minisip.media.rtp import RtpError, SequenceTracker, report_blocks

__all__ = ["Endpoint", "MediaRelay", "PlainTransform", "PoolExhausted", "latch_any_first_default"]

Address = tuple[str, int]
ListenUDP = Callable[[int, DatagramProtocol, str], Any]

log = Logger(namespace="minisip.media.relay")


@implementer(IMediaTransform)
class PlainTransform:
    """Plain RTP/RTCP: the identity transform. Not secure, so latching relies on addresses."""

    secure = False
    auth_failures = 0
    replay_failures = 0

    def attach(self, send: Callable[[bytes], None]) -> None:
        """Plain RTP sends nothing of its own."""

    def start(self) -> None:
        """Nothing to start."""

    def ready(self) -> bool:
        """Always ready: there are no keys."""
        return True

    def control(self, data: bytes, addr: tuple[str, int]) -> tuple[list[bytes], bool]:
        """A plain leg answers no STUN or DTLS."""
        return [], False

    def unprotect_rtp(self, data: bytes) -> bytes | None:
        return data

    def unprotect_rtcp(self, data: bytes) -> bytes | None:
        return data

    def protect_rtp(self, data: bytes) -> bytes | None:
        return data

    def protect_rtcp(self, data: bytes) -> bytes | None:
        return data

    def close(self) -> None:
        """Nothing to free."""


def latch_any_first_default(sdp_host: str | None, signalling_host: str | None) -> bool:
    """The usual choice for a plain leg: latch to the first packet at all when the SDP address differs
    from where the leg's signalling came from (the phone is behind NAT and cannot say its address)."""
    return sdp_host is not None and signalling_host is not None and sdp_host != signalling_host


def _check_address(addr: Address | None, what: str) -> Address | None:
    if addr is None:
        return None
    try:
        host, port = addr
    except (TypeError, ValueError):
        raise ValueError(f"{what} {addr!r} is not (host, port)") from None
    if not isinstance(host, str) or not (isIPAddress(host) or isIPv6Address(host)):
        raise ValueError(f"{what} host {host!r} is not an IP address")
    if not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError(f"{what} port {port!r} is not 1-65535")
    return (host, port)


def _same(addr: tuple[Any, ...], expected: Address | None) -> bool:
    # Twisted gives IPv6 sources as 4-tuples; SDP addresses are (host, port).
    return expected is not None and addr[0] == expected[0] and addr[1] == expected[1]


class _MediaPort(DatagramProtocol):
    """The protocol of one bound port; its ``datagramReceived`` is set to the endpoint's handler."""

    noisy = False  # no "Starting protocol" line per port

    def __init__(self) -> None:
        self.datagramReceived = self._unassigned  # type: ignore[method-assign]

    def _unassigned(self, data: bytes, addr: Any) -> None:
        """A port between bind and its endpoint taking it over: nothing to do."""


class _Bound:
    """A bound UDP port and its protocol, the handle the pool leases."""

    __slots__ = ("port", "protocol")

    def __init__(self, port: Any, protocol: _MediaPort) -> None:
        self.port = port
        self.protocol = protocol


def _writer(port: Any) -> Callable[[bytes, Any], Any]:
    """How to send from a bound port: its socket's own ``sendto`` when it has one (a Twisted UDP port),
    which skips ``Port.write``'s per-call address validation (addresses are checked in ``set_remote`` or
    come from the socket); else the port's ``write``. Both raise OSError on a refused send."""
    sock = getattr(port, "socket", None)
    sendto = getattr(sock, "sendto", None)
    return sendto if callable(sendto) else port.write


class _SharedReader:
    """Every relay socket in one epoll set, which is a single reader of the reactor (Linux only).

    The reactor then wakes once for all ready media sockets instead of dispatching each through its
    per-descriptor machinery (context, logger, a read loop ending in EAGAIN): one datagram is read per
    ready socket per round, level-triggered, so a flooded port cannot starve the others.

    With ``coalesce`` > 0, after a wake-up that found datagrams the reader leaves the reactor and drains
    again every ``coalesce`` seconds until a round finds none: under load one wake-up handles many
    packets (the reactor's per-wake-up cost is most of a Python relay's), at the price of at most
    ``coalesce`` extra delay per packet.
    """

    MAX_EVENTS = 512
    MAX_DATAGRAM = 8192
    MAX_ROUNDS = 16  # per drain, so that a flood cannot hold the reactor

    def __init__(self, reactor: Any, clock: IReactorTime, coalesce: float = 0.0) -> None:
        self._reactor = reactor
        self._clock = clock
        self.coalesce = coalesce
        self._epoll = select.epoll()  # type: ignore[attr-defined,unused-ignore]
        self._ports: dict[int, tuple[Callable[[int], tuple[bytes, Any]], DatagramProtocol]] = {}
        self._timer: Any = None
        self._closed = False
        self.errors = 0
        reactor.addReader(self)

    def fileno(self) -> int:
        return self._epoll.fileno()  # type: ignore[no-any-return]

    def logPrefix(self) -> str:
        return "MediaRelay"

    def add(self, bound: _Bound) -> bool:
        """Take over the reading of a Twisted UDP port; False when it is not one (a test's fake)."""
        sock = getattr(bound.port, "socket", None)
        if sock is None or not hasattr(bound.port, "stopReading"):
            return False
        bound.port.stopReading()
        fd = sock.fileno()
        self._epoll.register(fd, select.EPOLLIN)  # type: ignore[attr-defined,unused-ignore]
        self._ports[fd] = (sock.recvfrom, bound.protocol)
        return True

    def remove(self, bound: _Bound) -> None:
        sock = getattr(bound.port, "socket", None)
        fd = sock.fileno() if sock is not None else -1
        if self._ports.pop(fd, None) is not None:
            try:
                self._epoll.unregister(fd)
            except OSError:
                pass

    def doRead(self) -> None:
        """The reactor saw a socket ready. Never raises: the reactor would drop this reader, and with it
        every call's media."""
        if self._drain() and self.coalesce > 0 and self._timer is None:
            self._reactor.removeReader(self)
            self._timer = self._clock.callLater(self.coalesce, self._tick)

    def _tick(self) -> None:
        self._timer = None
        if self._closed:
            return
        if self._drain():
            self._timer = self._clock.callLater(self.coalesce, self._tick)
        else:
            self._reactor.addReader(self)

    def _drain(self) -> int:
        """Read what is ready now (one datagram per ready socket per round); the number read."""
        ports = self._ports
        size = self.MAX_DATAGRAM
        count = 0
        for _ in range(self.MAX_ROUNDS):
            try:
                ready = self._epoll.poll(0, self.MAX_EVENTS)
            except (OSError, ValueError):
                return count
            if not ready:
                break
            for fd, _ in ready:
                entry = ports.get(fd)
                if entry is None:
                    continue
                try:
                    data, addr = entry[0](size)
                except OSError:
                    continue
                count += 1
                try:
                    entry[1].datagramReceived(data, addr)
                except Exception:
                    self.errors += 1
                    if self.errors == 1:
                        log.failure("media relay: a datagram handler raised")
            if len(ready) < self.MAX_EVENTS and not self.coalesce:
                break
        return count

    def connectionLost(self, reason: Any) -> None:
        """The reactor is shutting down; the ports close on their own."""

    def close(self) -> None:
        self._closed = True
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None
        else:
            self._reactor.removeReader(self)
        self._epoll.close()


def _close_now(port: Any) -> None:
    """Unbind a port before returning, so that the pool may hand its pair out again at once.

    A Twisted UDP port's ``stopListening`` closes the socket only on the reactor's next turn
    (``callLater(0, connectionLost)``); a pool that re-leased the pair in the meantime (calls ending and
    starting in one turn, as under load) found it "in use" and refused calls with 503. So for a Twisted
    UDP port the relay does what that call would do, now; anything else (a test's fake) stops listening.
    """
    if isinstance(port, udp.Port) and port.connected:
        port.stopReading()
        port.connectionLost(None)
    else:
        port.stopListening()


def _direct_srtp(transform: Any) -> Any:
    """The transform's SrtpContext when it is keyed and calls libsrtp directly (the relay then recrypts
    SRTP to SRTP in one step), else None."""
    context = getattr(transform, "srtp", None)
    if context is None or not getattr(context, "direct", False) or context.closed:
        return None
    return context


def _shared_reader_possible(reactor: Any) -> bool:
    return hasattr(select, "epoll") and reactor is not None and IReactorFDSet.providedBy(reactor)


class Endpoint:
    """One side of a call's media stream on the relay: an RTP port (and RTCP port unless muxed).

    Packets it receives are unprotected by its transform and sent, protected by the peer's transform,
    out of the peer endpoint it is bridged to.
    """

    __slots__ = (
        "call_id", "label", "local", "rtcp_mux", "closed", "transform", "rtcp_transform", "peer", "remote_rtp",
        "remote_rtcp",
        "latched_rtp", "latched_rtcp", "latch_any_first", "clock_rate", "opened_at", "seq",
        "packets_in", "bytes_in", "packets_out", "bytes_out", "rtcp_in", "rtcp_out",
        "dropped_spoofed", "dropped_unprotect", "dropped_malformed", "dropped_unbridged", "dropped_not_ready",
        "send_errors", "errors", "control_in", "reported", "sink",
        "_plain", "_srtp", "_relay", "_lease", "_rtp_write", "_rtcp_write", "_swept",
    )

    def __init__(self, relay: MediaRelay, call_id: str, label: str, lease: PortLease[_Bound],
                 rtcp_mux: bool, now: float) -> None:
        self._relay = relay
        self._lease = lease
        self.call_id = call_id
        self.label = label
        self.local: tuple[str, int, int] = (relay.address, lease.rtp_port, lease.rtcp_port)
        self.rtcp_mux = rtcp_mux
        self.closed = False
        self.peer: Endpoint | None = None
        self.remote_rtp: Address | None = None
        self.remote_rtcp: Address | None = None
        self.latched_rtp: tuple[Any, ...] | None = None
        self.latched_rtcp: tuple[Any, ...] | None = None
        self.latch_any_first = False
        self.clock_rate: int | None = None
        self.opened_at = now
        self.seq = SequenceTracker()
        self.packets_in = self.bytes_in = self.packets_out = self.bytes_out = 0
        self.rtcp_in = self.rtcp_out = 0
        self.dropped_spoofed = self.dropped_unprotect = self.dropped_malformed = 0
        self.dropped_unbridged = self.dropped_not_ready = 0
        self.send_errors = self.errors = self.control_in = 0
        self.reported: dict[str, int | float] | None = None
        self._swept = 0
        self._rtp_write = _writer(lease.rtp.port)
        self._rtcp_write = _writer(lease.rtcp.port) if lease.rtcp is not None else self._rtp_write
        lease.rtp.protocol.datagramReceived = self._on_rtp_port  # type: ignore[method-assign]
        if lease.rtcp is not None:
            lease.rtcp.protocol.datagramReceived = self._on_rtcp_port  # type: ignore[method-assign]
        self.transform: Any = PlainTransform()
        self.rtcp_transform: Any = None   # the RTCP component's own (DTLS-SRTP without rtcp-mux), else None
        self._plain = True
        self._srtp: Any = None  # the transform's keyed SrtpContext when libsrtp is called directly
        # Where received plain RTP goes instead of a bridged peer: a conference room's mixer (set_sink)
        self.sink: Callable[[bytes], None] | None = None

    # -- control API ---------------------------------------------------------------------------------

    def set_remote(self, rtp_addr: Address | None, rtcp_addr: Address | None = None, *,
                   latch_any_first: bool | None = None) -> None:
        """Where the peer's SDP says it receives (None while unknown); RTCP defaults to RTP+1 (or the
        RTP address with rtcp-mux). A changed address (re-INVITE to elsewhere) drops the latch."""
        rtp = _check_address(rtp_addr, "RTP address")
        rtcp = _check_address(rtcp_addr, "RTCP address")
        if rtcp is None and rtp is not None:
            rtcp = rtp if self.rtcp_mux else (rtp[0], rtp[1] + 1)
        if latch_any_first is not None:
            self.latch_any_first = latch_any_first
        if rtp != self.remote_rtp:
            self.latched_rtp = None
        if rtcp != self.remote_rtcp:
            self.latched_rtcp = None
        self.remote_rtp = rtp
        self.remote_rtcp = rtcp

    def set_rtcp_mux(self, on: bool) -> None:
        """RTCP to this leg goes over its RTP port (rtcp-mux negotiated) or to its RTCP address."""
        self.rtcp_mux = on

    def set_clock_rate(self, rate: int | None) -> None:
        """The RTP clock rate of the negotiated codec, to express RTCP-reported jitter in ms."""
        self.clock_rate = rate

    def set_transform(self, transform: Any) -> None:
        """Use ``transform`` (IMediaTransform) from now on; the previous one is closed. Call
        ``set_remote`` first when a DTLS client must send its ClientHello at once."""
        if self.closed:
            raise ValueError(f"endpoint {self.label} of call {self.call_id} is closed")
        old = self.transform
        if transform is old:
            return
        self.transform = transform
        self._plain = isinstance(transform, PlainTransform)
        self._srtp = _direct_srtp(transform)
        try:
            old.close()
        except Exception:
            log.failure("closing the media transform of {call_id} {label}", call_id=self.call_id, label=self.label)
        transform.attach(self._send_control)
        transform.start()

    def set_sink(self, sink: Callable[[bytes], None] | None) -> None:
        """Hand every plain RTP packet received to ``sink`` instead of a bridged peer (a conference room
        mixes them); ``send_rtp`` sends the other way. None returns to bridging. ``sink`` must not raise."""
        self.sink = sink

    def send_rtp(self, plain: bytes) -> bool:
        """Send plain RTP made here (a mix) to this leg through its transform; False when it cannot go yet
        (no address, keys not ready, closed)."""
        if self.closed:
            return False
        dest = self.latched_rtp or self.remote_rtp
        if dest is None:
            self.dropped_unbridged += 1
            return False
        out = plain if self._plain else self.transform.protect_rtp(plain)
        if out is None:
            self.dropped_not_ready += 1
            return False
        try:
            self._rtp_write(out, dest)
        except Exception as e:
            self._failed(e)
            return False
        self.packets_out += 1
        self.bytes_out += len(out)
        return True

    def set_rtcp_transform(self, transform: Any) -> None:
        """Use ``transform`` for the RTCP port only, or None to use the RTP transform for RTCP too.

        DTLS-SRTP without rtcp-mux keys RTCP with a handshake of its own on the RTCP ports (RFC 5764
        section 4.1: one DTLS association per component); SRTCP to and from this leg's RTCP port then
        uses its keys. The previous one is closed; its handshake datagrams go to the RTCP address."""
        if self.closed:
            raise ValueError(f"endpoint {self.label} of call {self.call_id} is closed")
        old = self.rtcp_transform
        if transform is old:
            return
        self.rtcp_transform = transform
        if old is not None:
            try:
                old.close()
            except Exception:
                log.failure("closing the RTCP transform of {call_id} {label}", call_id=self.call_id,
                            label=self.label)
        if transform is not None:
            transform.attach(self._send_rtcp_control)
            transform.start()

    def close(self) -> None:
        """Unbridge, close the transform, unbind the ports and return them to the pool. Idempotent."""
        if self.closed:
            return
        self.closed = True
        self._relay._endpoint_closed(self)
        for transform in (self.transform, self.rtcp_transform):
            try:
                if transform is not None:
                    transform.close()
            except Exception:
                log.failure("closing the media transform of {call_id} {label}", call_id=self.call_id,
                            label=self.label)
        self._relay.pool.release(self._lease)

    @property
    def rtp_destination(self) -> tuple[Any, ...] | None:
        """Where RTP to this leg goes now: the latched source, else the SDP address."""
        return self.latched_rtp or self.remote_rtp

    @property
    def rtcp_destination(self) -> tuple[Any, ...] | None:
        """Where RTCP to this leg goes now."""
        if self.rtcp_mux:
            return self.latched_rtp or self.remote_rtp
        return self.latched_rtcp or self.remote_rtcp

    def stats(self) -> dict[str, Any]:
        """Counters and addresses as plain data, for the call record: packets/bytes are RTP (wire sizes),
        rtcp_in/rtcp_out count RTCP packets; reported_* come from the last RTCP reception report this
        leg's phone sent (how it receives the stream relayed to it)."""
        transform = self.transform
        rtcp_transform = self.rtcp_transform
        reported = self.reported or {}
        jitter = reported.get("jitter")
        return {
            "call_id": self.call_id,
            "label": self.label,
            "closed": self.closed,
            "local": list(self.local),
            "rtcp_mux": self.rtcp_mux,
            "secure": bool(transform.secure),
            "remote_rtp": list(self.remote_rtp) if self.remote_rtp else None,
            "remote_rtcp": list(self.remote_rtcp) if self.remote_rtcp else None,
            "latched_rtp": list(self.latched_rtp[:2]) if self.latched_rtp else None,
            "latched_rtcp": list(self.latched_rtcp[:2]) if self.latched_rtcp else None,
            "latch_any_first": self.latch_any_first,
            "packets_in": self.packets_in,
            "bytes_in": self.bytes_in,
            "packets_out": self.packets_out,
            "bytes_out": self.bytes_out,
            "rtcp_in": self.rtcp_in,
            "rtcp_out": self.rtcp_out,
            "expected": self.seq.expected,
            "lost": self.seq.lost,
            "dropped_spoofed": self.dropped_spoofed,
            "dropped_unprotect": self.dropped_unprotect,
            "dropped_malformed": self.dropped_malformed,
            "dropped_unbridged": self.dropped_unbridged,
            "dropped_not_ready": self.dropped_not_ready,
            "srtp_auth_failures": int(getattr(transform, "auth_failures", 0))
                                  + int(getattr(rtcp_transform, "auth_failures", 0)),
            "srtp_replay_failures": int(getattr(transform, "replay_failures", 0))
                                    + int(getattr(rtcp_transform, "replay_failures", 0)),
            "control_in": self.control_in,
            "send_errors": self.send_errors,
            "errors": self.errors,
            "reported_fraction_lost": reported.get("fraction_lost"),
            "reported_cumulative_lost": reported.get("cumulative_lost"),
            "reported_jitter": jitter,
            "reported_jitter_ms": (1000.0 * jitter / self.clock_rate
                                   if jitter is not None and self.clock_rate else None),
        }

    # -- datagrams -----------------------------------------------------------------------------------

    def _on_rtp_port(self, data: bytes, addr: tuple[Any, ...]) -> None:
        """A datagram on the RTP port: RTP (the hot path), muxed RTCP, STUN/DTLS, or garbage."""
        try:
            if self.closed:
                return
            if len(data) < 12 or data[0] & 0xC0 != 0x80 or 64 <= (data[1] & 0x7F) <= 95:
                self._not_rtp(data, addr)
                return
            peer = self.peer
            recrypted: bytes | bool | None = None
            if addr == self.latched_rtp:
                if self._srtp is not None and peer is not None and peer._srtp is not None and self.sink is None:
                    # SRTP to SRTP, the common encrypted call: unprotected and protected in one step
                    recrypted = self._srtp.recrypt_rtp(data, peer._srtp)
                    if recrypted is None:
                        self.dropped_unprotect += 1
                        return
                    plain = data  # the RTP header is not encrypted: its sequence number is read as is
                elif self._plain:
                    plain = data
                else:
                    plain = self.transform.unprotect_rtp(data)
                    if plain is None:
                        self.dropped_unprotect += 1
                        return
                    if self._srtp is None:
                        self._srtp = _direct_srtp(self.transform)  # DTLS keys arrived
            else:
                plain = self._latch(data, addr, False, True)
                if plain is None:
                    return
            self.packets_in += 1
            self.bytes_in += len(data)
            seq = self.seq
            number = (plain[2] << 8) | plain[3]
            if number == seq.highest + 1:   # the next in order, as nearly every packet: update()'s own step
                seq.highest = number
                seq.received += 1
            else:
                seq.update(number)
            if self.sink is not None:
                self.sink(plain)
                return
            if peer is None:
                self.dropped_unbridged += 1
                return
            dest = peer.latched_rtp or peer.remote_rtp
            if dest is None:
                self.dropped_unbridged += 1
                return
            if recrypted is not None:
                if recrypted is False:
                    peer.dropped_not_ready += 1
                    return
                out = recrypted
            elif peer._plain:
                out = plain
            else:
                out = peer.transform.protect_rtp(plain)
                if out is None:
                    peer.dropped_not_ready += 1
                    return
                if peer._srtp is None:
                    peer._srtp = _direct_srtp(peer.transform)
            peer._rtp_write(out, dest)
            peer.packets_out += 1
            peer.bytes_out += len(out)
        except Exception as e:
            self._failed(e)

    def _not_rtp(self, data: bytes, addr: tuple[Any, ...]) -> None:
        """What is not RTP on the RTP port: muxed RTCP, STUN or DTLS (for the transform), or garbage."""
        if not data:
            self.dropped_malformed += 1
            return
        first = data[0]
        if first & 0xC0 != 0x80:
            if first <= 3 or 20 <= first <= 63:
                self._control(data, addr, True)
            else:
                self.dropped_malformed += 1
        elif len(data) >= 8 and 64 <= (data[1] & 0x7F) <= 95:
            self._rtcp(data, addr, True)
        else:
            self.dropped_malformed += 1

    def _on_rtcp_port(self, data: bytes, addr: tuple[Any, ...]) -> None:
        """A datagram on the separate RTCP port: RTCP, STUN/DTLS (ICE on the RTCP component)."""
        try:
            if self.closed:
                return
            if not data:
                self.dropped_malformed += 1
                return
            first = data[0]
            if first & 0xC0 == 0x80 and len(data) >= 8 and 64 <= (data[1] & 0x7F) <= 95:
                self._rtcp(data, addr, False)
            elif first <= 3 or 20 <= first <= 63:
                self._control(data, addr, False)
            else:
                self.dropped_malformed += 1
        except Exception as e:
            self._failed(e)

    def _latch(self, data: bytes, addr: tuple[Any, ...], rtcp: bool, on_rtp_port: bool) -> bytes | None:
        """A packet from an address not latched: the plain packet when it may latch (and latch), else
        None (counted). Once latched, another address is never taken (RTP bleed)."""
        latched = self.latched_rtp if on_rtp_port else self.latched_rtcp
        if latched is not None:
            self.dropped_spoofed += 1
            return None
        transform = self.transform
        if rtcp and not on_rtp_port and self.rtcp_transform is not None:
            transform = self.rtcp_transform
        if transform.secure:
            plain = transform.unprotect_rtcp(data) if rtcp else transform.unprotect_rtp(data)
            if plain is None:
                self.dropped_unprotect += 1
                return None
        else:
            expected = self.remote_rtp if on_rtp_port else self.remote_rtcp
            if not (self.latch_any_first or _same(addr, expected)):
                if expected is None:
                    self.dropped_not_ready += 1   # the leg's SDP is not known yet (a callee's first packets)
                else:
                    self.dropped_spoofed += 1
                return None
            plain = transform.unprotect_rtcp(data) if rtcp else transform.unprotect_rtp(data)
            if plain is None:
                self.dropped_unprotect += 1
                return None
        if on_rtp_port:
            self.latched_rtp = addr
        else:
            self.latched_rtcp = addr
        return plain

    def _rtcp(self, data: bytes, addr: tuple[Any, ...], on_rtp_port: bool) -> None:
        latched = self.latched_rtp if on_rtp_port else self.latched_rtcp
        if addr == latched:
            transform = self.transform if on_rtp_port or self.rtcp_transform is None else self.rtcp_transform
            plain = transform.unprotect_rtcp(data)
            if plain is None:
                self.dropped_unprotect += 1
                return
        else:
            plain = self._latch(data, addr, True, on_rtp_port)
            if plain is None:
                return
        self.rtcp_in += 1
        try:
            blocks = report_blocks(plain)
        except RtpError:
            blocks = []
        if blocks:
            block = blocks[-1]
            self.reported = {
                "fraction_lost": block.fraction_lost_ratio,
                "cumulative_lost": block.cumulative_lost,
                "jitter": block.jitter,
            }
        peer = self.peer
        if peer is None:
            self.dropped_unbridged += 1
            return
        dest = peer.rtcp_destination
        if dest is None:
            self.dropped_unbridged += 1
            return
        if peer.rtcp_mux or peer.rtcp_transform is None:
            out = plain if peer._plain else peer.transform.protect_rtcp(plain)
        else:
            out = peer.rtcp_transform.protect_rtcp(plain)
        if out is None:
            peer.dropped_not_ready += 1
            return
        (peer._rtp_write if peer.rtcp_mux else peer._rtcp_write)(out, dest)
        peer.rtcp_out += 1

    def _control(self, data: bytes, addr: tuple[Any, ...], on_rtp_port: bool) -> None:
        """STUN or DTLS: the transform answers; a proven STUN check latches (ICE), even re-latches."""
        self.control_in += 1
        transform = self.transform if on_rtp_port or self.rtcp_transform is None else self.rtcp_transform
        replies, proven = transform.control(data, addr)
        write = self._rtp_write if on_rtp_port else self._rtcp_write
        for reply in replies:
            write(reply, addr)
        if proven:
            if on_rtp_port:
                self.latched_rtp = addr
            else:
                self.latched_rtcp = addr

    def _send_control(self, datagram: bytes) -> None:
        """The transform's own sends (DTLS handshake): to the leg's current RTP address."""
        self._send_own(datagram, rtcp=False)

    def _send_rtcp_control(self, datagram: bytes) -> None:
        """The RTCP transform's own sends (its DTLS handshake): from the RTCP port to the RTCP address."""
        self._send_own(datagram, rtcp=True)

    def _send_own(self, datagram: bytes, rtcp: bool) -> None:
        if self.closed:
            return
        dest = (self.latched_rtcp or self.remote_rtcp) if rtcp else (self.latched_rtp or self.remote_rtp)
        if dest is None:
            return
        try:
            (self._rtcp_write if rtcp else self._rtp_write)(datagram, dest)
        except Exception as e:
            self.send_errors += 1
            log.warn("media {call_id} {label}: send failed: {error}", call_id=self.call_id, label=self.label,
                     error=e)

    def _failed(self, error: Exception) -> None:
        if isinstance(error, OSError) or type(error).__module__ == "twisted.internet.error":
            self.send_errors += 1
            return
        self.errors += 1
        if self.errors == 1:
            log.failure("media {call_id} {label}: datagram handling failed", Failure(error),
                        call_id=self.call_id, label=self.label)


class _Call:
    __slots__ = ("call_id", "endpoints", "armed", "active_at")

    def __init__(self, call_id: str) -> None:
        self.call_id = call_id
        self.endpoints: list[Endpoint] = []
        self.armed = False
        self.active_at = 0.0


class MediaRelay:
    """Media endpoints on a port pool, bridged in pairs, per call; one periodic sweep for timeouts.

    ``on_media_timeout(call_id)`` is called once when an armed call saw no valid packet on any of its
    endpoints for ``timeout`` seconds (0 turns timeouts off), within one ``sweep_interval`` after that.
    """

    def __init__(
        self,
        reactor: Any,
        address: str,
        port_range: tuple[int, int] | str,
        clock: IReactorTime | None = None,
        timeout: float = 60.0,
        on_media_timeout: Callable[[str], None] | None = None,
        listen_udp: ListenUDP | None = None,
        sweep_interval: float = 1.0,
        max_attempts: int = 64,
        shared_reader: bool | None = None,
        coalesce: float = 0.0,
    ) -> None:
        if isinstance(port_range, str):
            port_range = parse_port_range(port_range)
        self.reactor = reactor
        self.address = address
        self.clock: IReactorTime = clock if clock is not None else reactor
        self.timeout = float(timeout)
        self.on_media_timeout = on_media_timeout
        self._listen_udp: ListenUDP = listen_udp if listen_udp is not None else self._reactor_listen
        if shared_reader is None:
            shared_reader = listen_udp is None and _shared_reader_possible(reactor)
        self._reader = _SharedReader(reactor, self.clock, coalesce) if shared_reader else None
        self.pool: PortPool[_Bound] = PortPool(port_range[0], port_range[1], self._bind, self._unbind,
                                               max_attempts=max_attempts)
        self._calls: dict[str, _Call] = {}
        self._armed: dict[str, _Call] = {}
        self.sweep_interval = min(sweep_interval, self.timeout) if self.timeout > 0 else sweep_interval
        self._sweeper: LoopingCall | None = None

    def _reactor_listen(self, port: int, protocol: DatagramProtocol, interface: str) -> Any:
        return self.reactor.listenUDP(port, protocol, interface=interface)

    def _bind(self, port: int) -> _Bound:
        protocol = _MediaPort()
        try:
            listening = self._listen_udp(port, protocol, self.address)
        except CannotListenError as e:
            raise OSError(f"cannot bind {self.address}:{port}: {e.socketError}") from None
        bound = _Bound(listening, protocol)
        if self._reader is not None:
            self._reader.add(bound)
        return bound

    def _unbind(self, bound: _Bound) -> None:
        bound.protocol.datagramReceived = bound.protocol._unassigned  # type: ignore[method-assign]
        if self._reader is not None:
            self._reader.remove(bound)
        _close_now(bound.port)

    # -- control API ---------------------------------------------------------------------------------

    def open_endpoint(self, call_id: str, label: str, rtcp_mux: bool = False) -> Endpoint:
        """Bind an RTP port (and RTCP port unless ``rtcp_mux``) for one leg of ``call_id``; raises
        PoolExhausted when no port pair can be had."""
        try:
            lease = self.pool.allocate(rtcp_mux)
        except PoolExhausted as e:
            log.warn("media for call {call_id} refused: {error}", call_id=call_id, error=e)
            raise
        call = self._calls.get(call_id)
        if call is None:
            call = self._calls[call_id] = _Call(call_id)
        endpoint = Endpoint(self, call_id, label, lease, rtcp_mux, self.clock.seconds())
        call.endpoints.append(endpoint)
        return endpoint

    def endpoints(self, call_id: str) -> list[Endpoint]:
        """The open endpoints of ``call_id``."""
        call = self._calls.get(call_id)
        return [ep for ep in call.endpoints if not ep.closed] if call else []

    def bridge(self, a: Endpoint, b: Endpoint) -> None:
        """Relay between ``a`` and ``b`` both ways, replacing earlier bridges of either; latches and
        counters are kept, so a re-INVITE re-bridges without a gap."""
        if a is b:
            raise ValueError("an endpoint cannot be bridged to itself")
        if a.closed or b.closed:
            raise ValueError("cannot bridge a closed endpoint")
        if a.peer is b and b.peer is a:
            return
        self.unbridge(a)
        self.unbridge(b)
        a.peer = b
        b.peer = a

    def unbridge(self, endpoint: Endpoint) -> None:
        """Stop relaying between ``endpoint`` and its peer (packets are then counted and dropped)."""
        peer = endpoint.peer
        endpoint.peer = None
        if peer is not None and peer.peer is endpoint:
            peer.peer = None

    def stats(self, call_id: str) -> list[dict[str, Any]]:
        """Every endpoint's statistics for ``call_id`` (closed ones too, until the call is closed)."""
        call = self._calls.get(call_id)
        return [ep.stats() for ep in call.endpoints] if call else []

    def close_call(self, call_id: str) -> list[dict[str, Any]]:
        """Close every endpoint of ``call_id`` (ports back to the pool) and forget it; returns its final
        statistics. Unknown calls give [] so it is safe on every abnormal end."""
        call = self._calls.pop(call_id, None)
        if call is None:
            return []
        self._disarm(call)
        for endpoint in call.endpoints:
            endpoint.close()
        return [ep.stats() for ep in call.endpoints]

    def arm_timeout(self, call_id: str) -> None:
        """Start watching ``call_id`` for media silence (when it is answered); no-op with timeout 0."""
        call = self._calls.get(call_id)
        if call is None or self.timeout <= 0:
            return
        call.active_at = self.clock.seconds()
        for endpoint in call.endpoints:
            endpoint._swept = endpoint.packets_in + endpoint.rtcp_in
        if not call.armed:
            call.armed = True
            self._armed[call_id] = call
        if self._sweeper is None:
            self._sweeper = LoopingCall(self._sweep)
            self._sweeper.clock = self.clock
            self._sweeper.start(self.sweep_interval, now=False)

    def disarm_timeout(self, call_id: str) -> None:
        """Stop watching ``call_id`` (on hold, where phones may legitimately send nothing)."""
        call = self._calls.get(call_id)
        if call is not None:
            self._disarm(call)

    def _disarm(self, call: _Call) -> None:
        if call.armed:
            call.armed = False
            self._armed.pop(call.call_id, None)
        if not self._armed and self._sweeper is not None:
            sweeper, self._sweeper = self._sweeper, None
            if sweeper.running:
                sweeper.stop()

    def _sweep(self) -> None:
        """The one relay-wide timer: a call whose endpoints all stayed silent for ``timeout`` is reported."""
        now = self.clock.seconds()
        expired = []
        for call in self._armed.values():
            for endpoint in call.endpoints:
                seen = endpoint.packets_in + endpoint.rtcp_in
                if seen != endpoint._swept:
                    endpoint._swept = seen
                    call.active_at = now
            if now - call.active_at >= self.timeout:
                expired.append(call)
        for call in expired:
            self._disarm(call)
            log.info("media timeout on call {call_id}: no media for {timeout:.0f} s", call_id=call.call_id,
                     timeout=self.timeout)
            if self.on_media_timeout is not None:
                try:
                    self.on_media_timeout(call.call_id)
                except Exception:
                    log.failure("media timeout callback for {call_id}", call_id=call.call_id)

    def _endpoint_closed(self, endpoint: Endpoint) -> None:
        self.unbridge(endpoint)

    def close(self) -> None:
        """Close every call (service stop)."""
        for call_id in list(self._calls):
            self.close_call(call_id)
        if self._sweeper is not None:
            sweeper, self._sweeper = self._sweeper, None
            if sweeper.running:
                sweeper.stop()
        if self._reader is not None:
            reader, self._reader = self._reader, None
            reader.close()

    @property
    def call_count(self) -> int:
        """Calls with endpoints on the relay."""
        return len(self._calls)
