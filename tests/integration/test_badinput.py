"""Malformed and hostile input against a real minisip process, over UDP and TCP on 127.0.0.1.

Every file of the conformance corpus (RFC 4475, RFC 5118) is sent as is; the answer must be one the
corpus README allows (``EXPECTED``), and after each message the server must still answer a fresh
OPTIONS with 200 within ``ALIVE_TIMEOUT``. Then hostile streams (random bytes, 10,000 headers, 1 MB)
and a few hundred seeded random datagrams. The server log must end free of tracebacks.
"""

from __future__ import annotations

import os
import random
import re
import socket
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from twisted.trial import unittest

from tests.corpus import corpus_files, read_corpus
from tests.integration.harness import SKIP_REASON, Minisip

ALIVE_TIMEOUT = 2.0      # seconds for the 200 to an OPTIONS
ANSWER_TIMEOUT = 2.0     # seconds for the final answer to a corpus request
SILENCE = 0.15           # seconds to listen for an answer that must not come (after an OPTIONS barrier)
MAX_CONNECTIONS = 8      # a low per-host cap, so a leaked connection slot shows within the corpus run





# What the README allows as the final answer to each file (None: no answer at all). HANDLED is "parsed
# and handled normally": whatever the application answers a request it understood (a challenge, 200,
# 481 for a dialog it does not know, 404 ...), never a rejection of the message itself.
HANDLED = frozenset({200, 401, 403, 404, 407, 480, 481})
NOTHING = None

EXPECTED: dict[str, frozenset[int] | None] = {
    # RFC 4475 3.1.1: valid
    "rfc4475/wsinv.dat": HANDLED,                    # minisip: 481 (To tag, unknown dialog)
    "rfc4475/intmeth.dat": frozenset({501, 404}),    # 501 with Allow
    "rfc4475/esc01.dat": HANDLED,                    # 407
    "rfc4475/escnull.dat": HANDLED,                  # 401
    "rfc4475/esc02.dat": frozenset({501}),           # RE%47IST%45R is not REGISTER
    "rfc4475/lwsdisp.dat": HANDLED,                  # 200
    "rfc4475/longreq.dat": HANDLED,                  # 407
    "rfc4475/dblreq.dat": HANDLED,                   # 401; the second REGISTER in the datagram is ignored
    "rfc4475/semiuri.dat": HANDLED,                  # 200
    "rfc4475/transports.dat": HANDLED,               # 200
    "rfc4475/mpart01.dat": HANDLED,                  # 481: out-of-dialog MESSAGE is refused like a lost dialog
    "rfc4475/unreason.dat": NOTHING,                 # a response
    "rfc4475/noreason.dat": NOTHING,                 # a response
    # RFC 4475 3.1.2: invalid
    "rfc4475/badinv01.dat": frozenset({400}),
    "rfc4475/clerr.dat": frozenset({400}),
    "rfc4475/scalar02.dat": frozenset({400}),
    "rfc4475/scalarlg.dat": NOTHING,                 # a bad response: drop
    "rfc4475/quotbal.dat": frozenset({400}),
    "rfc4475/ltgtruri.dat": frozenset({400}),
    "rfc4475/lwsruri.dat": frozenset({400}),
    "rfc4475/lwsstart.dat": frozenset({400}) | HANDLED,   # rejecting is fine
    "rfc4475/trws.dat": frozenset({400}) | HANDLED,       # rejecting is fine
    "rfc4475/escruri.dat": frozenset({400}),
    "rfc4475/baddate.dat": HANDLED,                  # 407: the bad Date is ignored
    "rfc4475/regbadct.dat": frozenset({400}),
    "rfc4475/badaspec.dat": frozenset({400}),
    "rfc4475/baddn.dat": frozenset({400}),
    "rfc4475/badvers.dat": frozenset({505}),
    "rfc4475/mismatch01.dat": frozenset({400}),
    "rfc4475/mismatch02.dat": frozenset({400, 501}),
    "rfc4475/bigcode.dat": NOTHING,                  # a response with a code over 699: drop
    "rfc4475/badbranch.dat": frozenset({400}) | HANDLED,  # 400, or RFC 2543 matching
    # RFC 4475 3.2
    "rfc4475/bcast.dat": NOTHING,                    # a response; never send to 255.255.255.255
    "rfc4475/ncl.dat": frozenset({400}),
    # RFC 4475 3.3: application layer
    "rfc4475/insuf.dat": frozenset({400}),
    "rfc4475/unkscm.dat": frozenset({416}),
    "rfc4475/novelsc.dat": frozenset({416}),
    "rfc4475/unksm2.dat": frozenset({400}),          # a registrar refuses non-SIP To/From
    "rfc4475/bext01.dat": frozenset({420}),          # with Unsupported
    "rfc4475/invut.dat": frozenset({415}),           # with Accept
    "rfc4475/regaut01.dat": frozenset({401}),        # unknown auth scheme: challenge
    "rfc4475/multi01.dat": frozenset({400}),
    "rfc4475/mcl01.dat": frozenset({400}),
    "rfc4475/zeromf.dat": frozenset({200, 483}),     # OPTIONS answered here: 200
    "rfc4475/cparam01.dat": HANDLED,                 # 401
    "rfc4475/cparam02.dat": HANDLED,                 # 401
    "rfc4475/regescrt.dat": HANDLED,                 # 401
    "rfc4475/sdp01.dat": frozenset({406, 400}),
    "rfc4475/inv2543.dat": HANDLED,                  # 407
    # RFC 5118: several files share Call-ID, branch and CSeq, so the later ones are retransmissions
    # of the earlier (RFC 3261 17.2.3) and get the same answer again.
    "rfc5118/ipv4-mapped-ipv6": HANDLED,             # 407
    "rfc5118/ipv6-bad": frozenset({400}),
    "rfc5118/ipv6-bug-abnf-3-colons": HANDLED,       # 200, tolerated
    "rfc5118/ipv6-correct-abnf-2-colons": HANDLED,   # 200
    "rfc5118/ipv6-good": HANDLED,                    # 401
    "rfc5118/ipv6-in-sdp": HANDLED,                  # 407
    "rfc5118/mult-ip-in-header": HANDLED,            # 481 (BYE outside any dialog)
    "rfc5118/mult-ip-in-sdp": HANDLED,               # 407
    "rfc5118/port-ambiguous": HANDLED,               # 401
    "rfc5118/port-unambiguous": HANDLED,             # 401
    "rfc5118/via-received-param-no-delim": HANDLED,  # 200
    "rfc5118/via-received-param-with-delim": HANDLED,  # 481 (BYE outside any dialog)
}

# Headers the answer must carry, by status (RFC 3261 8.2.1, 8.2.2.3, 8.2.3, 22.1).
REQUIRED_HEADERS = {501: "allow", 405: "allow", 420: "unsupported", 415: "accept", 401: "www-authenticate",
                    407: "proxy-authenticate"}

Key = tuple[bytes | None, bytes | None]   # (Call-ID, CSeq) of a message
_COMPACT = {"i": "call-id", "v": "via", "f": "from", "t": "to", "l": "content-length"}
_STATUS_RE = re.compile(rb"SIP/2\.0 ([0-9]{3}) ")


@dataclass
class Wire:
    """A loosely read SIP message (the server echoes corpus headers no strict parser may accept)."""

    raw: bytes
    status: int | None                     # None for a request
    headers: list[tuple[str, bytes]] = field(default_factory=list)

    def get(self, name: str) -> bytes | None:
        for k, v in self.headers:
            if k == name:
                return v
        return None

    @property
    def key(self) -> Key:
        """(Call-ID, CSeq): enough to tell the corpus transactions apart."""
        cseq = self.get("cseq")
        return self.get("call-id"), None if cseq is None else b" ".join(cseq.split())


def read_wire(data: bytes) -> Wire:
    head = data.split(b"\r\n\r\n", 1)[0]
    lines = head.split(b"\r\n")
    m = _STATUS_RE.match(lines[0] + b" ")
    wire = Wire(data, int(m.group(1)) if m else None)
    for line in lines[1:]:
        if line[:1] in (b" ", b"\t") and wire.headers:
            k, v = wire.headers[-1]
            wire.headers[-1] = (k, v + b" " + line.strip())
            continue
        name, colon, value = line.partition(b":")
        if colon:
            k = name.strip().decode("latin-1").lower()
            wire.headers.append((_COMPACT.get(k, k), value.strip()))
    return wire


_BRANCH_RE = re.compile(rb";[ \t]*branch[ \t]*=[ \t]*([^;, \t]+)", re.IGNORECASE)


def transaction_id(wire: Wire) -> tuple[bytes, bytes, bytes] | None:
    """RFC 3261 17.2.3: a request with the same top Via branch, sent-by and method is a retransmission."""
    via, start = wire.get("via"), wire.raw.split(b" ", 1)[0]
    if wire.status is not None or via is None:
        return None
    top = via.split(b",")[0]
    branch = _BRANCH_RE.search(top)
    if branch is None or not branch.group(1).startswith(b"z9hG4bK"):
        return None
    sent_by = top.split(b";")[0].split(None, 1)[-1].replace(b" ", b"").lower()
    return branch.group(1), sent_by, b"INVITE" if start == b"ACK" else start


class Corpus:
    """The corpus in order, with the (Call-ID, CSeq) keys under which each file may be answered: its own,
    or an earlier file's when the server rightly takes it for a retransmission of that one (cparam02
    repeats cparam01's branch; several RFC 5118 files share one branch)."""

    def __init__(self) -> None:
        self.items: list[tuple[str, bytes, set[Key], bool]] = []
        first: dict[tuple[bytes, bytes, bytes], Key] = {}
        for name in corpus_files():
            data = read_corpus(name)
            wire = read_wire(data)
            keys = {wire.key}
            tid = transaction_id(wire)
            repeat = tid is not None and tid in first
            if tid is not None:
                keys.add(first.setdefault(tid, wire.key))
            self.items.append((name, data, keys, repeat))


def options_request(transport: str, port: int, call_id: str) -> bytes:
    branch = "z9hG4bK" + uuid.uuid4().hex
    return (f"OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/{transport} 127.0.0.1:{port};rport;branch={branch}\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag={uuid.uuid4().hex[:8]}\r\nTo: <sip:127.0.0.1>\r\n"
            f"Call-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n").encode()


def ack_for(request: bytes, response: Wire) -> bytes | None:
    """The ACK to a non-2xx final answer to an INVITE (RFC 3261 17.1.1.3), so retransmissions stop."""
    parts = request.split(b"\r\n", 1)[0].split()
    via = response.get("via")
    cseq = response.get("cseq")
    if len(parts) < 2 or via is None or cseq is None or not cseq.split()[0].isdigit():
        return None
    lines = [b"ACK " + parts[1] + b" SIP/2.0", b"Via: " + via.split(b",")[0], b"Max-Forwards: 70"]
    for name in ("from", "to", "call-id"):
        value = response.get(name)
        if value is not None:
            lines.append(name.title().encode() + b": " + value)
    lines += [b"CSeq: " + cseq.split()[0] + b" ACK", b"Content-Length: 0"]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def random_datagrams(rng: random.Random, corpus: list[bytes], invite: bytes) -> Iterable[bytes]:
    """Seeded junk: random bytes, mutated corpus messages, then ``invite`` cut at every offset."""
    specials = [b"\r\n", b"\r\n\r\n", b"\x00", b"\xff", b":", b";", b",", b"<", b">", b"\"", b"%", b"[",
                b"SIP/2.0", b"Via: ", b"Content-Length: 99999", b"CSeq: 1 INVITE", b"9" * 30, b"\r\n "]
    for _ in range(120):
        yield bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 1400)))
    for _ in range(180):
        data = bytearray(rng.choice(corpus))
        for _ in range(rng.randint(1, 6)):
            pos = rng.randint(0, len(data))
            op = rng.randrange(4)
            if op == 0 and data:
                data[min(pos, len(data) - 1)] = rng.getrandbits(8)
            elif op == 1:
                del data[pos:pos + rng.randint(1, 40)]
            elif op == 2:
                data[pos:pos] = rng.choice(specials)
            else:
                data[pos:pos] = data[pos:pos + rng.randint(1, 200)]
        yield bytes(data[:65000])
    for i in range(len(invite)):
        yield invite[:i]


def invite_message(port: int) -> bytes:
    sdp = (b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
           b"m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")
    return (f"INVITE sip:100@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};rport;branch=z9hG4bKtrunc1\r\n"
            f"Max-Forwards: 70\r\nFrom: \"Trunc\" <sip:200@127.0.0.1>;tag=tr1\r\nTo: <sip:100@127.0.0.1>\r\n"
            f"Call-ID: truncations@127.0.0.1\r\nCSeq: 1 INVITE\r\nContact: <sip:200@127.0.0.1:{port}>\r\n"
            f"Content-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n\r\n").encode() + sdp


class UdpPeer:
    """A UDP socket on 127.0.0.1 that talks to the server and sorts what comes back by (Call-ID, CSeq)."""

    def __init__(self, server_port: int) -> None:
        self.server = ("127.0.0.1", server_port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.received: list[Wire] = []

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendto(data, self.server)

    def poll(self, timeout: float) -> Wire | None:
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data, _ = self.sock.recvfrom(70000)
        except (TimeoutError, BlockingIOError):
            return None
        wire = read_wire(data)
        self.received.append(wire)
        return wire

    def drain(self) -> None:
        while self.poll(0.001) is not None:
            pass

    def wait_for(self, match: Callable[[Wire], bool], timeout: float) -> Wire | None:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            wire = self.poll(left)
            if wire is not None and match(wire):
                return wire
        return None

    def options_ok(self) -> bool:
        call_id = f"alive-{uuid.uuid4().hex}"
        self.send(options_request("UDP", self.port, call_id))
        answer = self.wait_for(lambda w: w.get("call-id") == call_id.encode() and w.status is not None
                               and w.status >= 200, ALIVE_TIMEOUT)
        return answer is not None and answer.status == 200


class TcpPeer:
    """One TCP connection to the server; every read is bounded."""

    def __init__(self, server_port: int, timeout: float = 2.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", server_port), timeout=timeout)
        self.port = self.sock.getsockname()[1]
        self.buffer = b""
        self.closed_by_server = False

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> bool:
        """Send all of ``data``; False when the server closed or reset the connection meanwhile."""
        try:
            self.sock.settimeout(5.0)
            self.sock.sendall(data)
            return True
        except OSError:
            self.closed_by_server = True
            return False

    def read(self, timeout: float, once: bool = False) -> bytes:
        """What arrives within ``timeout`` (with ``once``: the first chunk); stops early at EOF."""
        deadline = time.monotonic() + timeout
        got = b""
        while not self.closed_by_server and (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                break
            except OSError:
                self.closed_by_server = True
                break
            if not chunk:
                self.closed_by_server = True
                break
            got += chunk
            if once:
                break
        self.buffer += got
        return got

    def messages(self) -> list[Wire]:
        """Every whole message read so far (framed by Content-Length)."""
        out: list[Wire] = []
        buf = self.buffer
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return out
            wire = read_wire(buf)
            cl = wire.get("content-length")
            size = end + 4 + (int(cl) if cl is not None and cl.isdigit() else 0)
            if len(buf) < size:
                return out
            out.append(read_wire(buf[:size]))
            buf = buf[size:]

    def read_until(self, match: Callable[[list[Wire]], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not match(self.messages()) and not self.closed_by_server and (left := deadline - time.monotonic()) > 0:
            self.read(left, once=True)


def final(status: int | None) -> bool:
    return status is not None and status >= 200



def final_for(keys: set[Key]) -> Callable[[Wire], bool]:
    return lambda w: w.key in keys and final(w.status)


def any_final_for(keys: set[Key]) -> Callable[[list[Wire]], bool]:
    return lambda ms: any(m.key in keys and final(m.status) for m in ms)


class BadInputTests(unittest.TestCase):
    skip = SKIP_REASON

    def setUp(self) -> None:
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        self.server = Minisip(self.dir, {"100": "secret100", "200": "secret200"},
                              extra=f"max_connections_per_host = {MAX_CONNECTIONS}")
        self.addCleanup(self.server.stop)
        self.addCleanup(self.note_alive)  # cleanups run last first, and before tearDown
        self.server.start()
        self.udp = UdpPeer(self.server.udp)
        self.addCleanup(self.udp.close)
        self.observed: dict[str, object] = {}   # what the server did with each input, for diagnostics

    def note_alive(self) -> None:
        self.alive_at_end = self.server.proc is not None and self.server.proc.poll() is None

    def tearDown(self) -> None:
        self.assertTrue(self.alive_at_end, "minisip exited during the test")
        self.server.assert_no_tracebacks(self)
        log = self.server.read_log()
        self.assertNotIn("Unhandled Error", log, log[-4000:])

    def assertAlive(self, after: str) -> None:  # noqa: N802
        self.assertTrue(self.udp.options_ok(), f"no 200 to OPTIONS within {ALIVE_TIMEOUT}s after {after}\n"
                        + self.server.read_log()[-3000:])

    def assertTcpAlive(self, after: str) -> None:  # noqa: N802
        call_id = f"alive-tcp-{uuid.uuid4().hex}"
        peer = TcpPeer(self.server.tcp)
        try:
            self.assertTrue(peer.send(options_request("TCP", peer.port, call_id)), f"TCP send failed after {after}")
            peer.read_until(lambda ms: any(m.get("call-id") == call_id.encode() and final(m.status) for m in ms),
                            ALIVE_TIMEOUT)
            answers = [m.status for m in peer.messages() if m.get("call-id") == call_id.encode()]
            self.assertIn(200, answers, f"no 200 to OPTIONS over TCP after {after}\n" + self.server.read_log()[-3000:])
        finally:
            peer.close()

    def check_answer(self, name: str, answers: list[Wire]) -> None:
        expected = EXPECTED[name]
        finals = [w.status for w in answers if w.status is not None and w.status >= 200]
        self.observed[name] = finals
        if expected is NOTHING:
            self.assertEqual(answers, [], f"{name}: expected no answer, got {[w.status for w in answers]}")
            return
        self.assertTrue(finals, f"{name}: no final answer (got {[w.status for w in answers]})")
        self.assertIn(finals[0], expected, f"{name}: answered {finals[0]}, README allows {sorted(expected)}")
        header = REQUIRED_HEADERS.get(finals[0])
        if header is not None:
            first = next(w for w in answers if final(w.status))
            self.assertIsNotNone(first.get(header), f"{name}: {finals[0]} without {header}")

    # -- UDP ---------------------------------------------------------------------------------------
    def test_corpus_over_udp(self) -> None:
        self.assertEqual(sorted(corpus_files()), sorted(EXPECTED))
        for name, data, keys, _ in Corpus().items:
            self.udp.received = []
            self.udp.send(data)
            if EXPECTED[name] is not NOTHING:
                self.udp.wait_for(final_for(keys), ANSWER_TIMEOUT)
            self.assertAlive(name)
            if EXPECTED[name] is NOTHING:
                self.udp.wait_for(lambda w: False, SILENCE)  # a late answer to ``data``
            answers = [w for w in self.udp.received if w.key in keys and w.status is not None]
            for w in answers:
                if w.status is not None and w.status >= 300 and b"INVITE" in (w.get("cseq") or b""):
                    ack = ack_for(data, w)
                    if ack is not None:
                        self.udp.send(ack)
            self.check_answer(name, answers)
            if name == "rfc4475/dblreq.dat":
                # UDP: the bytes after Content-Length (a second REGISTER) are ignored
                self.assertFalse([w for w in self.udp.received
                                  if w.get("call-id") == b"dblreq.0ha0isnda977644900765@192.0.2.15"])
        self.assertNotIn("broadcast", self.server.read_log().lower())

    def test_random_datagrams(self) -> None:
        rng = random.Random(4475)
        corpus = [read_corpus(name) for name in corpus_files()]
        invite = invite_message(self.udp.port)
        for i, data in enumerate(random_datagrams(rng, corpus, invite)):
            self.udp.send(data)
            self.udp.drain()
            if i % 50 == 49:
                self.assertAlive(f"random datagram {i}: {data[:200]!r}")
        self.assertAlive("the random datagrams")

    # -- TCP ---------------------------------------------------------------------------------------
    def test_corpus_over_tcp(self) -> None:
        """One file per connection: answered like over UDP, or refused, or (clerr) awaited more bytes."""
        for name, data, keys, repeat in Corpus().items:
            peer = TcpPeer(self.server.tcp)
            try:
                peer.send(data)
                if EXPECTED[name] is NOTHING or name == "rfc4475/clerr.dat":
                    self.assertAlive(name)
                    peer.read(SILENCE)
                else:
                    peer.read_until(any_final_for(keys), ANSWER_TIMEOUT)
                answers = [m for m in peer.messages() if m.status is not None]
                outcome = ([m.status for m in answers], "closed" if peer.closed_by_server else "open")
                self.observed[name] = outcome
                if name == "rfc4475/clerr.dat":
                    # Content-Length beyond the body: on a stream the rest may still come
                    self.assertEqual((answers, peer.closed_by_server), ([], False), name)
                elif EXPECTED[name] is NOTHING:
                    self.assertEqual(answers, [], name)
                elif answers:
                    mine = [m for m in answers if m.key in keys]
                    if name != "rfc4475/dblreq.dat":
                        # dblreq carries a second request after its body: on a stream both are answered
                        self.assertEqual(len(mine), len(answers), f"{name}: answers for something else")
                    expected = EXPECTED[name]
                    assert expected is not None
                    # 400: a message UDP tolerates may break a stream rule (Content-Length is mandatory)
                    self.assertIn(next(m.status for m in mine if final(m.status)), expected | {400},
                                  f"{name}: {outcome}")
                elif not repeat:
                    # Unframeable on a stream (no Content-Length, bad Content-Length...): closed
                    self.assertTrue(peer.closed_by_server, f"{name}: neither answered nor closed")
                # else: a retransmission; its answer goes to the first copy's connection (RFC 3261 17.2.3)
            finally:
                peer.close()
            self.assertTcpAlive(name)
        # with the per-host cap this low, leaked connection slots would have refused us by now
        self.assertEqual(len(self.observed), len(EXPECTED))

    def hostile_stream(self, what: str, chunks: Iterable[bytes]) -> None:
        """Send ``chunks`` on one connection: the server must close it or answer 400/513, and live on."""
        peer = TcpPeer(self.server.tcp)
        try:
            for chunk in chunks:
                if not peer.send(chunk):
                    break
            peer.read_until(lambda ms: any(final(m.status) for m in ms), 3.0)
            got = peer.buffer
            self.observed[what] = ([m.status for m in peer.messages()], peer.closed_by_server)
            statuses = [m.status for m in peer.messages()]
            self.assertTrue(peer.closed_by_server or statuses, f"{what}: neither closed nor answered")
            if got:
                self.assertTrue(statuses and all(s in (400, 513) for s in statuses), f"{what}: answered {got[:300]!r}")
        finally:
            peer.close()
        self.assertTcpAlive(what)
        self.assertAlive(what)

    def test_hostile_streams(self) -> None:
        rng = random.Random(5118)
        junk = bytes(rng.getrandbits(8) for _ in range(200_000))
        self.hostile_stream("random bytes", (junk[i:i + 4096] for i in range(0, len(junk), 4096)))
        start = (b"OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5999;branch=z9hG4bKmany\r\n"
                 b"Max-Forwards: 70\r\nFrom: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:127.0.0.1>\r\n"
                 b"Call-ID: many@127.0.0.1\r\nCSeq: 1 OPTIONS\r\n")
        # 10,000 short headers fit the size limit: the parser's header count limit answers 400
        self.hostile_stream("10,000 short headers", [start + b"A: 1\r\n" * 10_000 + b"Content-Length: 0\r\n\r\n"])
        # 10,000 long headers exceed the size limit: 513 or closed
        self.hostile_stream("10,000 headers", [start + b"X-Padding-Header: value\r\n" * 10_000
                                               + b"Content-Length: 0\r\n\r\n"])
        body = b"x" * (1 << 20)
        big = start.replace(b"OPTIONS", b"MESSAGE") + b"Content-Type: text/plain\r\n" \
            + f"Content-Length: {len(body)}\r\n\r\n".encode() + body
        self.hostile_stream("a 1 MB message", (big[i:i + 65536] for i in range(0, len(big), 65536)))
        self.hostile_stream("headers without end", [b"OPTIONS sip:127.0.0.1 SIP/2.0\r\n"]
                            + [b"X: " + b"y" * 1000 + b"\r\n"] * 100)
