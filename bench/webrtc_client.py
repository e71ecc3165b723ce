"""The browser side of bench/webrtc_bench.py: MCCP over WSS, ICE (the controlling full agent), DTLS-SRTP
and the RTP both ways, plus the SIP phone that answers on the other side.

What a browser does for one call, in Python: an offer like Chromium's (UDP/TLS/RTP/SAVPF, PCMU/PCMA,
telephone-event, rtcp-mux, a host candidate, ice-ufrag/pwd, a=fingerprint, a=setup), the answer read
back (over MCCP from minisip, over ng from rtpengine), a STUN Binding request with USERNAME,
PRIORITY, ICE-CONTROLLING, USE-CANDIDATE, MESSAGE-INTEGRITY and FINGERPRINT until the server answers,
then the DTLS handshake in the role the answer's a=setup gives. The STUN codec and the DTLS transform
are minisip's own classes (``minisip.media.stun``, ``minisip.media.dtls.DtlsTransform``), used here
as the browser's end: they are RFC 5389 / RFC 5764 code with no server policy in them, and the client
runs them with its own certificate and its own ICE credentials.

The SIP side is ``SipPhone``: a registered extension (MD5 digest) that answers every INVITE at once
with 200 and an SDP naming the call's own plain RTP socket, and answers BYE and OPTIONS.

``MediaLoop`` sends and receives the calls' packets with raw non-blocking sockets and epoll while the
reactor is paused: 172-byte G.711-sized RTP every 20 ms both ways per call, SRTP-protected on the
browser side, and measures loss and one-way delay (the payload carries the send time).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import select
import socket
import struct
import time
from array import array
from typing import Any, Callable

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol, connectWS
from media_bench import delay_stats
from twisted.internet import defer, ssl
from twisted.internet.protocol import DatagramProtocol

from minisip.media import compat, stun
from minisip.media.dtls import DtlsCertificate, DtlsTransform, parse_fingerprint

HOST = "127.0.0.1"
PACKET = 172
PERIOD_NS = 20_000_000
SLOTS = 20
# Offset 2 of the packet: seq16, timestamp, ssrc | payload: call, direction, seq32, send time (ns).
FIELDS = struct.Struct("!HIIIBIq")
RECEIVED = struct.Struct("!IBIq")
STUN_RETRANSMIT = 0.2
STUN_GIVE_UP = 10.0
DTLS_GIVE_UP = 20.0


class BenchError(RuntimeError):
    """A call could not be set up; the message says where."""


# --- SDP ---------------------------------------------------------------------------------------------


def browser_offer(port: int, ufrag: str, pwd: str, fp: str, setup: str) -> str:
    """An audio offer shaped like Chromium's: port 9 and 0.0.0.0, the real address in a host candidate."""
    return (
        f"v=0\r\no=- {secrets.randbelow(1 << 62)} 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
        "a=group:BUNDLE 0\r\na=msid-semantic: WMS\r\n"
        "m=audio 9 UDP/TLS/RTP/SAVPF 0 8 101\r\nc=IN IP4 0.0.0.0\r\na=rtcp:9 IN IP4 0.0.0.0\r\n"
        f"a=candidate:1 1 udp 2130706431 {HOST} {port} typ host generation 0\r\n"
        f"a=ice-ufrag:{ufrag}\r\na=ice-pwd:{pwd}\r\na=ice-options:trickle\r\n"
        f"a=fingerprint:sha-256 {fp}\r\na=setup:{setup}\r\na=mid:0\r\na=sendrecv\r\na=rtcp-mux\r\n"
        "a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
        "a=fmtp:101 0-15\r\n"
    )


def plain_sdp(port: int) -> str:
    """The SIP phone's plain RTP SDP (offer or answer)."""
    return (f"v=0\r\no=- {secrets.randbelow(1 << 31)} 1 IN IP4 {HOST}\r\ns=-\r\nc=IN IP4 {HOST}\r\nt=0 0\r\n"
            f"m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
            "a=fmtp:101 0-15\r\na=ptime:20\r\na=sendrecv\r\n")


def sdp_media_address(sdp: str) -> tuple[str, int]:
    """The address RTP goes to: a host candidate when there is one, else c= and m=audio."""
    cand = re.search(r"^a=candidate:\S+ 1 udp \d+ (\S+) (\d+) typ host", sdp, re.M | re.I)
    if cand:
        return cand.group(1), int(cand.group(2))
    conn = re.search(r"^c=IN IP4 (\S+)", sdp, re.M)
    media = re.search(r"^m=audio (\d+) ", sdp, re.M)
    if not conn or not media:
        raise BenchError(f"no media address in SDP: {sdp!r}")
    return conn.group(1), int(media.group(1))


def sdp_attribute(sdp: str, name: str) -> str | None:
    match = re.search(rf"^a={re.escape(name)}:(.*?)\r?$", sdp, re.M)
    return match.group(1).strip() if match else None


# --- one browser call's transport --------------------------------------------------------------------


class BrowserTransport(DatagramProtocol):
    """The browser's UDP socket of one call: ICE checks out, DTLS both ways, SRTP once ready."""

    def __init__(self, clock: Any, certificate: DtlsCertificate, index: int) -> None:
        self.clock = clock
        self.certificate = certificate
        self.index = index
        chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
        self.ufrag = "".join(secrets.choice(chars) for _ in range(4))
        self.pwd = "".join(secrets.choice(chars) for _ in range(24))
        self.port: Any = None
        self.remote: tuple[str, int] | None = None
        self.remote_ufrag = self.remote_pwd = ""
        self.transform: DtlsTransform | None = None
        self.ice_tid = b""
        self.ready: defer.Deferred[float] | None = None
        self._ice_timer: Any = None
        self._ready_poll: Any = None
        self.started = 0.0
        self.failure: str | None = None
        self.stun_sent = 0
        self.ice_seconds = 0.0
        self.peer_key = ""

    def listen(self, reactor: Any) -> int:
        self.port = reactor.listenUDP(0, self, interface=HOST)
        sock = self.port.socket
        for size in (4 << 20, 1 << 20):
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
                break
            except OSError:
                continue
        return int(self.port.getHost().port)

    def offer(self, setup: str) -> str:
        return browser_offer(self.port.getHost().port, self.ufrag, self.pwd, self.certificate.fingerprint, setup)

    def answered(self, sdp: str) -> None:
        """Take the server's answer: where to send, its ICE credentials, its certificate and DTLS role."""
        self.remote = sdp_media_address(sdp)
        ufrag, pwd = sdp_attribute(sdp, "ice-ufrag"), sdp_attribute(sdp, "ice-pwd")
        fp, setup = sdp_attribute(sdp, "fingerprint"), (sdp_attribute(sdp, "setup") or "active").lower()
        if not (ufrag and pwd and fp):
            raise BenchError(f"the answer lacks ICE credentials or a fingerprint: {sdp!r}")
        self.remote_ufrag, self.remote_pwd = ufrag, pwd
        role = {"active": "server", "passive": "client"}.get(setup)
        if role is None:
            raise BenchError(f"answer a=setup:{setup}")
        ice = stun.IceLite(self.ufrag, self.pwd, ufrag)  # answers the server's own checks, if it sends any
        self.transform = DtlsTransform(role, parse_fingerprint(fp), self.clock, self.certificate, ice=ice)
        remote = self.remote
        self.transform.attach(lambda data: self.port.write(data, remote))

    # -- ICE, then DTLS
    def connect(self) -> defer.Deferred[float]:
        """Check connectivity (STUN until answered), then handshake; fires with the seconds it took."""
        self.started = time.monotonic()
        self.ready = defer.Deferred()
        self.ice_tid = os.urandom(12)
        self._send_check()
        return self.ready

    def _send_check(self) -> None:
        self._ice_timer = None
        if self.ready is None or self.ready.called or self.remote is None:
            return
        if time.monotonic() - self.started > STUN_GIVE_UP:
            self._fail(f"no STUN answer from {self.remote} in {STUN_GIVE_UP:.0f} s")
            return
        request = stun.StunMessage(stun.BINDING, stun.CLASS_REQUEST, self.ice_tid)
        request = (request.with_attribute(stun.USERNAME, f"{self.remote_ufrag}:{self.ufrag}")
                   .with_attribute(stun.PRIORITY, 1853824767)
                   .with_attribute(stun.ICE_CONTROLLING, int.from_bytes(os.urandom(8), "big"))
                   .with_attribute(stun.USE_CANDIDATE, True))
        self.port.write(stun.serialize(request, integrity_key=self.remote_pwd.encode()), self.remote)
        self.stun_sent += 1
        self._ice_timer = self.clock.callLater(STUN_RETRANSMIT, self._send_check)

    def _ice_answered(self) -> None:
        self.ice_seconds = time.monotonic() - self.started
        if self._ice_timer is not None and self._ice_timer.active():
            self._ice_timer.cancel()
        self._ice_timer = None
        assert self.transform is not None
        self.transform.start()  # a DTLS client sends its ClientHello; a server waits for the server's
        self._check_ready()

    def _check_ready(self) -> None:
        self._ready_poll = None
        if self.ready is None or self.ready.called or self.transform is None:
            return
        if self.transform.ready():
            self.peer_key = _peer_key(self.transform)
            self.ready.callback(time.monotonic() - self.started)
        elif self.transform.state == "failed":
            self._fail(f"DTLS failed: {self.transform.failure}")
        elif time.monotonic() - self.started > DTLS_GIVE_UP:
            self._fail("DTLS did not complete")
        else:
            self._ready_poll = self.clock.callLater(0.5, self._check_ready)

    def _fail(self, why: str) -> None:
        self.failure = why
        if self.ready is not None and not self.ready.called:
            self.ready.errback(BenchError(f"call {self.index}: {why}"))

    def datagramReceived(self, data: bytes, addr: Any) -> None:  # noqa: N802
        if not data:
            return
        first = data[0]
        if first < 4:
            try:
                message = stun.parse(data)
            except stun.StunError:
                return
            if message.klass in (stun.CLASS_SUCCESS, stun.CLASS_ERROR):
                if message.transaction_id == self.ice_tid and self._ice_timer is not None:
                    if message.klass == stun.CLASS_SUCCESS and stun.check_integrity(data, message,
                                                                                     self.remote_pwd.encode()):
                        self._ice_answered()
                    else:
                        self._fail(f"STUN error response {message.get(stun.ERROR_CODE)}")
                return
        if self.transform is None or not 0 <= first < 64:
            return  # RTP arriving outside the media loop (before or after it) is not counted
        responses, _proven = self.transform.control(data, addr)
        for response in responses:
            self.port.write(response, addr)
        if self.ready is not None and not self.ready.called and self.transform.ready():
            self._check_ready()

    def close(self) -> None:
        for timer in (self._ice_timer, self._ready_poll):
            if timer is not None and timer.active():
                timer.cancel()
        self._ice_timer = self._ready_poll = None
        if self.transform is not None:
            self.transform.close()
        if self.port is not None:
            self.port.stopListening()
            self.port = None


def _peer_key(transform: DtlsTransform) -> str:
    """The server's DTLS certificate key, e.g. "EC secp256r1" or "RSA 2048" (its cost differs tenfold)."""
    connection = getattr(transform, "_connection", None)
    certificate = compat.peer_certificate(connection) if connection is not None else None
    if certificate is None:
        return "?"
    key = certificate.public_key()
    curve = getattr(key, "curve", None)
    return f"EC {curve.name}" if curve is not None else f"{type(key).__name__.replace('PublicKey', '')} {key.key_size}"


# --- MCCP over WSS ---------------------------------------------------------------------------------


class MccpProtocol(WebSocketClientProtocol):
    """One browser tab's MCCP connection: one call, answers and hang-ups as Deferreds."""

    def onOpen(self) -> None:  # noqa: N802
        self.factory.opened.callback(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:  # noqa: N802, N803
        try:
            frame = json.loads(payload.decode("utf-8"))
        except ValueError:
            return
        op = frame.get("op")
        factory = self.factory
        if op == "answer" and not factory.answer.called:
            factory.answer.callback(frame["sdp"])
        elif op in ("hangup", "error"):
            factory.ended = frame
            if not factory.answer.called:
                factory.answer.errback(BenchError(f"MCCP {op}: {frame}"))

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:  # noqa: N802, N803
        factory = self.factory
        if not factory.opened.called:
            factory.opened.errback(BenchError(f"WSS handshake failed: {code} {reason}"))
        elif not factory.answer.called:
            factory.answer.errback(BenchError(f"WSS closed before the answer: {code} {reason}"))
        if not factory.closed.called:
            factory.closed.callback(code)


class MccpCall:
    """Place one call over MCCP (``place`` fires with the answer SDP) and hang it up."""

    def __init__(self, reactor: Any, wss_port: int, call_id: str) -> None:
        self.reactor = reactor
        self.call_id = call_id
        factory = WebSocketClientFactory(f"wss://{HOST}:{wss_port}/mccp", protocols=["mccp.v1"], reactor=reactor)
        factory.protocol = MccpProtocol
        factory.opened = defer.Deferred()
        factory.answer = defer.Deferred()
        factory.closed = defer.Deferred()
        factory.ended = None
        factory.setProtocolOptions(autoPingInterval=0, openHandshakeTimeout=30, closeHandshakeTimeout=5)
        self.factory = factory
        self.wss_port = wss_port
        self.proto: MccpProtocol | None = None

    @defer.inlineCallbacks
    def place(self, caller: str, password: str, callee: str, sdp: str) -> Any:
        connectWS(self.factory, contextFactory=ssl.CertificateOptions(), timeout=30)
        self.proto = yield self.factory.opened
        self.proto.sendMessage(json.dumps({"op": "call", "call": self.call_id, "caller": caller, "password": password,
                                           "callee": callee, "sdp": sdp}).encode())
        answer = yield self.factory.answer
        return answer

    def hangup(self) -> defer.Deferred[Any]:
        """Hang up and close the socket; fires when it is closed (or at once when it already was)."""
        proto = self.proto
        if proto is None or self.factory.closed.called:
            return defer.succeed(None)
        try:
            proto.sendMessage(json.dumps({"op": "hangup", "call": self.call_id, "reason": "bench"}).encode())
            proto.sendClose(1000)
        except Exception:  # noqa: BLE001 (a connection already going away)
            pass
        return self.factory.closed


# --- the SIP phone (the called extension) ---------------------------------------------------------


def _header(lines: list[str], *names: str) -> list[str]:
    wanted = {n.lower() for n in names}
    return [line.split(":", 1)[1].strip() for line in lines if line.split(":", 1)[0].strip().lower() in wanted]


class SipPhone(DatagramProtocol):
    """An extension registered with MD5 digest that answers every INVITE at once (200 with SDP).

    ``lookup(caller)`` gives the plain RTP port to answer with for the calling extension's call and
    ``on_offer(caller, (host, port))`` is told where the server's relay wants RTP for it.
    """

    def __init__(self, number: str, password: str, server: tuple[str, int],
                 lookup: Callable[[str], int | None], on_offer: Callable[[str, tuple[str, int]], None]) -> None:
        self.number = number
        self.password = password
        self.server = server
        self.lookup = lookup
        self.on_offer = on_offer
        self.answered: dict[str, bytes] = {}  # Call-ID -> our 200, resent on a retransmitted INVITE
        self.invites = self.byes = self.refused = 0
        self.registered: defer.Deferred[None] = defer.Deferred()
        self.port: Any = None
        self._reg_call_id = secrets.token_hex(8)
        self._reg_cseq = 0

    def start(self, reactor: Any) -> defer.Deferred[None]:
        self.port = reactor.listenUDP(0, self, interface=HOST)
        self.local = self.port.getHost().port
        self._register(None)
        return self.registered

    def _register(self, authorization: str | None) -> None:
        self._reg_cseq += 1
        lines = [
            f"REGISTER sip:{self.server[0]}:{self.server[1]} SIP/2.0",
            f"Via: SIP/2.0/UDP {HOST}:{self.local};branch=z9hG4bK{secrets.token_hex(8)};rport",
            "Max-Forwards: 70",
            f"From: <sip:{self.number}@{self.server[0]}>;tag={self._reg_call_id[:8]}",
            f"To: <sip:{self.number}@{self.server[0]}>",
            f"Call-ID: {self._reg_call_id}",
            f"CSeq: {self._reg_cseq} REGISTER",
            f"Contact: <sip:{self.number}@{HOST}:{self.local}>",
            "Expires: 3600",
        ]
        if authorization:
            lines.append(f"Authorization: {authorization}")
        self.transport.write(("\r\n".join([*lines, "Content-Length: 0", "", ""])).encode(), self.server)

    def _digest(self, challenge: str) -> str:
        params = dict(re.findall(r'(\w+)="?([^",]*)"?', challenge))
        realm, nonce = params.get("realm", ""), params.get("nonce", "")
        uri = f"sip:{self.server[0]}:{self.server[1]}"
        ha1 = hashlib.md5(f"{self.number}:{realm}:{self.password}".encode()).hexdigest()
        ha2 = hashlib.md5(f"REGISTER:{uri}".encode()).hexdigest()
        parts = [f'username="{self.number}"', f'realm="{realm}"', f'nonce="{nonce}"', f'uri="{uri}"',
                 "algorithm=MD5"]
        if "auth" in params.get("qop", "").split(","):
            cnonce = secrets.token_hex(8)
            response = hashlib.md5(f"{ha1}:{nonce}:00000001:{cnonce}:auth:{ha2}".encode()).hexdigest()
            parts += ["qop=auth", "nc=00000001", f'cnonce="{cnonce}"']
        else:
            response = hashlib.md5(f"{ha1}:{nonce}:{ha2}".encode()).hexdigest()
        parts.append(f'response="{response}"')
        if "opaque" in params:
            parts.append(f'opaque="{params["opaque"]}"')
        return "Digest " + ", ".join(parts)

    def datagramReceived(self, data: bytes, addr: Any) -> None:  # noqa: N802
        try:
            self._handle(data, addr)
        except Exception as error:  # noqa: BLE001 (a bench peer must not stop on odd input)
            self.refused += 1
            if not self.registered.called:
                self.registered.errback(BenchError(f"SIP phone: {error}"))

    def _handle(self, data: bytes, addr: Any) -> None:
        head, _, body = data.decode("utf-8", "replace").partition("\r\n\r\n")
        lines = head.split("\r\n")
        first = lines[0]
        if first.startswith("SIP/2.0 "):
            status = int(first.split()[1])
            cseq = (_header(lines, "CSeq") or [""])[0]
            if cseq.endswith("REGISTER") and not self.registered.called:
                if status in (401, 407):
                    challenge = (_header(lines, "WWW-Authenticate", "Proxy-Authenticate") or [""])[0]
                    self._register(self._digest(challenge))
                elif status == 200:
                    self.registered.callback(None)
                elif status >= 300:
                    self.registered.errback(BenchError(f"REGISTER refused: {first}"))
            return
        method = first.split()[0]
        call_id = (_header(lines, "Call-ID", "i") or [""])[0]
        if method == "ACK":
            return
        if method == "INVITE" and call_id in self.answered:
            self.transport.write(self.answered[call_id], addr)
            return
        extra: list[str] = []
        payload = ""
        status_line = "SIP/2.0 200 OK"
        if method == "INVITE":
            self.invites += 1
            caller_match = re.search(r"sip:([^@;>]+)@", (_header(lines, "From", "f") or [""])[0])
            caller = caller_match.group(1) if caller_match else ""
            rtp_port = self.lookup(caller)
            if rtp_port is None or not body.startswith("v=0"):
                status_line = "SIP/2.0 488 Not Acceptable Here"
                self.refused += 1
            else:
                self.on_offer(caller, sdp_media_address(body))
                payload = plain_sdp(rtp_port)
                extra = [f"Contact: <sip:{self.number}@{HOST}:{self.local}>", "Content-Type: application/sdp"]
        elif method == "BYE":
            self.byes += 1
            self.answered.pop(call_id, None)
        elif method not in ("OPTIONS", "CANCEL", "INFO", "UPDATE"):
            status_line = "SIP/2.0 501 Not Implemented"
        to = (_header(lines, "To", "t") or [""])[0]
        if method == "INVITE" and ";tag=" not in to:
            to += f";tag={secrets.token_hex(6)}"
        reply = [status_line]
        reply += [f"Via: {v}" for v in _header(lines, "Via", "v")]
        reply += [f"From: {(_header(lines, 'From', 'f') or [''])[0]}", f"To: {to}", f"Call-ID: {call_id}",
                  f"CSeq: {(_header(lines, 'CSeq') or [''])[0]}", *extra,
                  f"Content-Length: {len(payload.encode())}", "", payload]
        out = "\r\n".join(reply).encode()
        if method == "INVITE" and status_line.endswith("200 OK"):
            self.answered[call_id] = out
        self.transport.write(out, addr)

    def stop(self) -> None:
        if self.port is not None:
            self.port.stopListening()
            self.port = None


# --- the media: SRTP on the browser side, plain RTP on the SIP side -----------------------------------


class MediaCall:
    """What the media loop needs of one bridged call."""

    __slots__ = ("browser_sock", "browser_to", "protect", "unprotect", "control", "sip_sock", "sip_to")

    def __init__(self, browser_sock: socket.socket, browser_to: tuple[str, int], protect: Callable[[bytes], Any],
                 unprotect: Callable[[bytes], Any], control: Callable[..., Any], sip_sock: socket.socket,
                 sip_to: tuple[str, int]) -> None:
        self.browser_sock = browser_sock
        self.browser_to = browser_to
        self.protect = protect
        self.unprotect = unprotect
        self.control = control  # DtlsTransform.control: a late DTLS retransmission still gets its answer
        self.sip_sock = sip_sock
        self.sip_to = sip_to


def _packet(call: int, direction: int, seq: int) -> bytes:
    """One 172-byte RTP packet: header (PCMU, seq, timestamp, SSRC per call and direction), then in the
    payload the call, direction and sequence the receiver needs to find its send time."""
    buf = bytearray(PACKET)
    buf[0] = 0x80
    FIELDS.pack_into(buf, 2, seq & 0xFFFF, (seq * 160) & 0xFFFFFFFF, (call << 1) | direction, call, direction, seq, 0)
    return bytes(buf)


def run_media(calls: list[MediaCall], duration: float, warmup: float, max_delay: float = 0.5) -> dict[str, Any]:
    """Send 20 ms packets both ways on every call for warmup + duration seconds, blocking (the reactor
    waits); loss and delay are counted for packets sent in the measured window.

    Direction 0: browser -> server (SRTP) -> SIP phone (plain). Direction 1: phone -> server -> browser.
    The browser's SRTP packets are protected before the clock starts (in order, as the browser would,
    only earlier) and the ones it receives are kept and unprotected after it stops, so the loop only
    sends, receives and notes times: the client's own CPU stays out of the way of the server's. A
    browser-side packet that does not authenticate counts as lost (and in ``srtp_failures``), and so
    does a packet that arrives more than ``max_delay`` seconds after it was sent (``too_late``: any
    jitter buffer would have dropped it; the client keeps receiving that long after the last send).
    """
    count = int(round((warmup + duration) / (PERIOD_NS / 1e9)))  # packets per stream
    first_measured = int(round(warmup / (PERIOD_NS / 1e9)))
    n = len(calls)
    prep0 = time.process_time()
    outgoing: list[list[bytes]] = []
    for i, call in enumerate(calls):
        outgoing.append([call.protect(_packet(i, 0, seq)) for seq in range(count)])
        outgoing.append([_packet(i, 1, seq) for seq in range(count)])
    prep_cpu = time.process_time() - prep0
    sent_at = array("q", bytes(8 * 2 * n * count))  # [stream * count + seq] = send time (ns)
    poller = select.epoll()
    # fd -> (browser call index or -1 for a phone socket, recv, sendto of that socket)
    by_fd: dict[int, tuple[int, Any, Any]] = {}
    for i, call in enumerate(calls):
        for index, sock in ((i, call.browser_sock), (-1, call.sip_sock)):
            by_fd[sock.fileno()] = (index, sock.recv, sock.recvfrom)
            poller.register(sock.fileno(), select.EPOLLIN)
            while True:  # stale packets from before
                try:
                    sock.recv(4096)
                except OSError:
                    break
    slots: list[list[tuple[Any, ...]]] = [[] for _ in range(SLOTS)]
    for i, call in enumerate(calls):
        slots[i % SLOTS].append((call.browser_sock.sendto, outgoing[2 * i], call.browser_to, 2 * i * count))
        slots[i % SLOTS].append((call.sip_sock.sendto, outgoing[2 * i + 1], call.sip_to, (2 * i + 1) * count))
    unpack = RECEIVED.unpack_from
    clock = time.monotonic_ns
    start = clock() + 50_000_000
    stop_at = start + count * PERIOD_NS
    limit = int(max_delay * 1e9)
    drain_until = stop_at + limit
    slot_ns = PERIOD_NS // SLOTS
    to_phone = array("q")  # delays of direction 0 packets sent in the measured window
    browser_in: list[list[tuple[bytes, int]]] = [[] for _ in range(n)]
    lateness = array("q")
    received_phone = misrouted = send_errors = dtls_late = 0
    last_send = stop_at
    j = 0
    total_slots = count * SLOTS
    next_slot = start
    cpu0 = time.process_time()
    poll = poller.poll
    while True:
        now = clock()
        if now >= next_slot and j < total_slots:
            lateness.append(now - next_slot)
            seq = j // SLOTS
            for sendto, packets, addr, base in slots[j % SLOTS]:
                sent_at[base + seq] = clock()
                try:
                    sendto(packets[seq], addr)
                except OSError:
                    send_errors += 1
            j += 1
            next_slot = start + j * slot_ns
            if j == total_slots:  # the last packets get their full max_delay, however late they went
                last_send = clock()
                drain_until = last_send + limit
            # behind schedule: keep sending, but read what is waiting first (timeout 0), or a starved
            # client would only send and its receive queues would overflow
            timeout = 0.0
        elif now >= drain_until:
            break
        else:
            wait_until = next_slot if j < total_slots else drain_until
            timeout = max(0.0, (wait_until - now) / 1e9)
        for fd, _ in poll(timeout):
            index, recv, recvfrom = by_fd[fd]
            if index >= 0:
                try:
                    data, addr = recvfrom(2048)
                except OSError:
                    continue
                if 128 <= data[0] <= 191:
                    browser_in[index].append((data, clock()))
                elif 20 <= data[0] <= 63:  # a DTLS retransmission: answer it as the browser would
                    dtls_late += 1
                    for reply in calls[index].control(data, addr)[0]:
                        calls[index].browser_sock.sendto(reply, addr)
                continue
            try:
                data = recv(2048)
            except OSError:
                continue
            arrived = clock()
            if len(data) < 29:
                misrouted += 1
                continue
            call, direction, seq = unpack(data, 12)[:3]
            if direction != 0 or call >= n or seq >= count:
                misrouted += 1
                continue
            if seq >= first_measured:
                received_phone += 1
                to_phone.append(arrived - sent_at[2 * call * count + seq])
    cpu = time.process_time() - cpu0
    poller.close()
    # the browser's receiving side, after the clock: unprotect in arrival order, then the delays
    post0 = time.process_time()
    to_browser = array("q")
    received_browser = srtp_failures = 0
    for i, packets in enumerate(browser_in):
        unprotect = calls[i].unprotect
        for data, arrived in packets:
            plain = unprotect(data)
            if plain is None or len(plain) < 29:
                srtp_failures += 1
                continue
            call, direction, seq = unpack(plain, 12)[:3]
            if direction != 1 or call != i or seq >= count:
                misrouted += 1
                continue
            if seq >= first_measured:
                received_browser += 1
                to_browser.append(arrived - sent_at[(2 * call + 1) * count + seq])
    post_cpu = time.process_time() - post0
    too_late = sum(1 for d in to_phone if d > limit) + sum(1 for d in to_browser if d > limit)
    per_direction = n * (count - first_measured)
    sent_total = 2 * per_direction
    received_total = received_phone + received_browser - too_late
    lost = sent_total - received_total
    result: dict[str, Any] = {
        "calls": n, "sent_measured": sent_total, "received_measured": received_total,
        "received_by_direction": [received_phone, received_browser], "lost": lost,
        "loss": lost / sent_total if sent_total else 1.0, "misrouted": misrouted, "send_errors": send_errors,
        "srtp_failures": srtp_failures, "too_late": too_late, "dtls_late": dtls_late, "generator_cpu": cpu, "duration": duration,
        "sent_all": 2 * n * count, "prepare_cpu": prep_cpu, "verify_cpu": post_cpu,
    }
    result.update(delay_stats(to_phone + to_browser))
    for name, part in (("to_phone", to_phone), ("to_browser", to_browser)):
        if part:
            ordered = sorted(part)
            result[f"{name}_p99_ms"] = ordered[int(len(ordered) * 0.99)] / 1e6
    late = sorted(lateness)
    result["send_late_p99_ms"] = late[int(len(late) * 0.99)] / 1e6 if late else 0.0
    # the share of the nominal packet rate the client really offered: a client that fell behind
    # sent the same packets over a longer time, i.e. fewer calls' worth of load
    result["offered_fraction"] = min(1.0, (stop_at - start) / max(1, last_send - start))
    return result
