"""Tests for minisip.transport.manager: framing, keep-alive, limits, routing of sends, UDP Via handling.

Deterministic: a fake reactor (a Clock with listen/connect stubs), string transports for streams and a
recording datagram transport for UDP; no sockets, no sleeps.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.protocol import DatagramProtocol, Factory
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

try:
    from twisted.internet.testing import StringTransportWithDisconnection
except ImportError:  # Twisted 22.4
    from twisted.test.proto_helpers import StringTransportWithDisconnection  # type: ignore[no-redef]

from minisip.sip.message import Request, Response, parse_message
from minisip.sip.types import Addr
from minisip.transport.manager import SIPStreamProtocol, StreamFactory, TransportManager


def options(call_id: str = "c1@test", branch: str = "z9hG4bKabc1", via: str = "SIP/2.0/TCP 10.0.0.1:5060",
            extra: str = "", cseq: str = "1 OPTIONS", body: bytes = b"", content_length: bool = True) -> bytes:
    """An OPTIONS request (with Content-Length unless told otherwise)."""
    lines = ["OPTIONS sip:pbx.example.com SIP/2.0", f"Via: {via};branch={branch}", "Max-Forwards: 70",
             "From: <sip:100@pbx.example.com>;tag=f1", "To: <sip:pbx.example.com>", f"Call-ID: {call_id}",
             f"CSeq: {cseq}"]
    if extra:
        lines.append(extra)
    if content_length:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class RecordingSink:
    """A MessageSink keeping every (msg, source) it is given."""

    def __init__(self) -> None:
        self.received: list[tuple[Request | Response, Addr]] = []

    def message_received(self, msg: Request | Response, source: Addr) -> None:
        self.received.append((msg, source))


class RecordingDatagramTransport:
    """Records ``write(data, addr)`` calls of a UDP port."""

    def __init__(self) -> None:
        self.written: list[tuple[bytes, tuple[str, int]]] = []

    def write(self, data: bytes, addr: tuple[str, int]) -> None:
        self.written.append((data, addr))


class FakePort:
    def __init__(self, kind: str, interface: str, port: int) -> None:
        self.address = IPv4Address(kind, interface or "0.0.0.0", port or 5060)  # type: ignore[arg-type]

    def getHost(self) -> IPv4Address:  # noqa: N802
        return self.address


class FakeReactor(Clock):
    """A Clock with the listen/connect calls the manager makes, recording their arguments."""

    def __init__(self) -> None:
        super().__init__()
        self.udp: list[tuple[DatagramProtocol, RecordingDatagramTransport]] = []
        self.tcp: list[Factory] = []
        self.connects: list[tuple[str, int, Any]] = []

    def listenUDP(self, port: int, proto: DatagramProtocol, interface: str = "",  # noqa: N802
                  maxPacketSize: int = 8192) -> FakePort:  # noqa: N803
        t = RecordingDatagramTransport()
        proto.makeConnection(t)  # type: ignore[arg-type]
        self.udp.append((proto, t))
        return FakePort("UDP", interface, port)

    def listenTCP(self, port: int, factory: Factory, backlog: int = 50, interface: str = "") -> FakePort:  # noqa: N802
        self.tcp.append(factory)
        return FakePort("TCP", interface, port)

    def connectTCP(self, host: str, port: int, factory: Any, timeout: float = 30,  # noqa: N802
                   bindAddress: Any = None) -> None:  # noqa: N803
        self.connects.append((host, port, factory))


class ManagerTestBase(SynchronousTestCase):
    idle_timeout = 30.0
    cap = 3

    def setUp(self) -> None:
        self.reactor = FakeReactor()
        self.sink = RecordingSink()
        self.banned: set[str] = set()
        self.manager = TransportManager(
            self.reactor, self.sink, idle_timeout=self.idle_timeout,  # type: ignore[arg-type]
            max_connections_per_host=self.cap, is_banned=self.banned.__contains__)
        self.manager.listen_udp("127.0.0.1", 5060)
        self.manager.listen_tcp("127.0.0.1", 5060)
        self.udp_proto, self.udp_transport = self.reactor.udp[0]

    def connect(self, host: str = "10.0.0.1",
                port: int = 40000) -> tuple[SIPStreamProtocol, StringTransportWithDisconnection]:
        """An inbound TCP connection accepted by the manager's listener."""
        factory = self.reactor.tcp[0]
        assert isinstance(factory, StreamFactory)
        proto = factory.buildProtocol(IPv4Address("TCP", host, port))
        transport = StringTransportWithDisconnection(peerAddress=IPv4Address("TCP", host, port))
        transport.protocol = proto  # type: ignore[assignment]
        proto.makeConnection(transport)
        return proto, transport

    def assertNoState(self) -> None:  # noqa: N802
        self.assertEqual((self.manager.conns, self.manager.by_peer, dict(self.manager.per_host)), ({}, {}, {}))

    def requests(self) -> list[Request]:
        out = []
        for msg, _ in self.sink.received:
            assert isinstance(msg, Request)
            out.append(msg)
        return out


class StreamFramingTests(ManagerTestBase):
    def test_byte_by_byte(self) -> None:
        """A message fed one byte at a time reaches the sink once, whole."""
        data = options(body=b"hello", extra="Content-Type: text/plain")
        proto, _ = self.connect()
        for i in range(len(data)):
            proto.dataReceived(data[i:i + 1])
        self.assertEqual(len(self.sink.received), 1)
        msg, source = self.sink.received[0]
        self.assertEqual(msg.to_bytes(), parse_message(data, datagram=False).to_bytes())
        self.assertEqual(msg.body, b"hello")
        self.assertEqual(source, Addr("tcp", "10.0.0.1", 40000, proto.conn_id))

    def test_many_chunks(self) -> None:
        """Two messages cut at arbitrary points (one cut inside the headers' final CRLFCRLF)."""
        one, two = options(call_id="a@x", body=b"12345", extra="Content-Type: text/plain"), options(call_id="b@x")
        stream = one + two
        cuts = [0, 7, 30, len(one) - 7, len(one) - 3, len(one) + 1, len(one) + 40, len(stream) - 2, len(stream)]
        proto, _ = self.connect()
        for start, end in pairwise(cuts):
            proto.dataReceived(stream[start:end])
        self.assertEqual([m.call_id for m in self.requests()], ["a@x", "b@x"])
        self.assertEqual(self.requests()[0].body, b"12345")

    def test_two_messages_in_one_chunk(self) -> None:
        proto, transport = self.connect()
        proto.dataReceived(options(call_id="a@x") + options(call_id="b@x", cseq="2 OPTIONS"))
        self.assertEqual([(m.call_id, m.cseq) for m in self.requests()],
                         [("a@x", (1, "OPTIONS")), ("b@x", (2, "OPTIONS"))])
        self.assertTrue(transport.connected)

    def test_ping_answered_with_crlf(self) -> None:
        """RFC 5626 3.5.1: CRLFCRLF is answered CRLF; a lone CRLF (pong) is not answered."""
        proto, transport = self.connect()
        proto.dataReceived(b"\r\n\r\n")
        self.assertEqual(transport.value(), b"\r\n")
        transport.clear()
        proto.dataReceived(b"\r\n" + options())
        self.assertEqual(transport.value(), b"")
        self.assertEqual(len(self.sink.received), 1)
        self.assertTrue(transport.connected)

    def test_ping_split_across_chunks(self) -> None:
        proto, transport = self.connect()
        proto.dataReceived(b"\r\n")
        proto.dataReceived(b"\r\n")
        self.assertEqual(transport.value(), b"\r\n")

    def test_missing_content_length_closes(self) -> None:
        """RFC 3261 18.3: a stream message must carry Content-Length; without it, framing is lost."""
        proto, transport = self.connect()
        self.assertIn(proto.conn_id, self.manager.conns)
        proto.dataReceived(options(content_length=False))
        self.assertFalse(transport.connected)
        self.assertEqual(self.sink.received, [])
        self.assertNoState()

    def test_garbage_closes(self) -> None:
        proto, transport = self.connect()
        proto.dataReceived(b"\x00\xff\x16\x03\x01 garbage\r\nmore: junk\r\n\r\n")
        self.assertFalse(transport.connected)
        self.assertEqual(self.sink.received, [])
        self.assertNoState()

    def test_bad_content_length_closes(self) -> None:
        proto, transport = self.connect()
        proto.dataReceived(options(content_length=False, extra="Content-Length: -1"))
        self.assertFalse(transport.connected)
        self.assertNoState()

    def test_endless_headers_close(self) -> None:
        """Headers that never end are refused once they exceed the message size limit."""
        proto, transport = self.connect()
        proto.dataReceived(b"OPTIONS sip:x SIP/2.0\r\n")
        for _ in range(2000):
            proto.dataReceived(b"X-Filler: " + b"a" * 40 + b"\r\n")
            if not transport.connected:
                break
        self.assertFalse(transport.connected)
        self.assertNoState()

    def test_huge_content_length_closes(self) -> None:
        proto, transport = self.connect()
        proto.dataReceived(options(content_length=False, extra="Content-Length: 1000000"))
        self.assertFalse(transport.connected)
        self.assertNoState()

    def test_unparseable_framed_request_answered_400_on_connection(self) -> None:
        """A request that frames but does not parse gets 400 on its connection, which stays open."""
        proto, transport = self.connect()
        proto.dataReceived(options(cseq="1 INVITE"))  # CSeq method does not match
        self.assertEqual(self.sink.received, [])
        resp = parse_message(transport.value(), datagram=False)
        assert isinstance(resp, Response)
        self.assertEqual((resp.status, resp.call_id, resp.cseq), (400, "c1@test", (1, "INVITE")))
        self.assertTrue(transport.connected)
        transport.clear()
        proto.dataReceived(options(call_id="next@x"))
        self.assertEqual([m.call_id for m in self.requests()], ["next@x"])

    def test_sink_error_does_not_escape(self) -> None:
        """No exception escapes dataReceived; it is logged."""
        class Exploding:
            def message_received(self, msg: object, source: object) -> None:
                raise RuntimeError("boom")

        self.manager.sink = Exploding()  # type: ignore[assignment]
        proto, transport = self.connect()
        proto.dataReceived(options())
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertTrue(transport.connected)

    def test_close_forgets_connection(self) -> None:
        lost: list[Addr] = []
        self.manager.on_connection_lost = lost.append
        proto, transport = self.connect()
        transport.loseConnection()
        self.assertNoState()
        self.assertEqual(lost, [Addr("tcp", "10.0.0.1", 40000, proto.conn_id)])
        self.assertEqual(self.reactor.getDelayedCalls(), [])


class IdleTimeoutTests(ManagerTestBase):
    def test_silent_connection_closed(self) -> None:
        _, transport = self.connect()
        self.reactor.advance(self.idle_timeout - 0.1)
        self.assertTrue(transport.connected)
        self.reactor.advance(0.1)
        self.assertFalse(transport.connected)
        self.assertNoState()
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_busy_connection_kept(self) -> None:
        proto, transport = self.connect()
        for i in range(10):
            self.reactor.advance(self.idle_timeout * 0.75)
            proto.dataReceived(options(call_id=f"{i}@x") if i % 2 else b"\r\n\r\n")
        self.assertTrue(transport.connected)
        self.assertEqual(len(self.sink.received), 5)
        self.reactor.advance(self.idle_timeout)
        self.assertFalse(transport.connected)
        self.assertNoState()

    def test_each_connection_has_its_own_timer(self) -> None:
        _, t1 = self.connect(port=40001)
        self.reactor.advance(self.idle_timeout / 2)
        _, t2 = self.connect(port=40002)
        self.reactor.advance(self.idle_timeout / 2)
        self.assertEqual((t1.connected, t2.connected), (False, True))
        self.reactor.advance(self.idle_timeout / 2)
        self.assertFalse(t2.connected)
        self.assertNoState()


class ConnectionLimitTests(ManagerTestBase):
    def test_per_host_cap(self) -> None:
        conns = [self.connect("10.0.0.1", 40000 + i) for i in range(self.cap)]
        self.assertTrue(all(t.connected for _, t in conns))
        self.assertEqual(self.manager.per_host["10.0.0.1"], self.cap)
        refused, refused_t = self.connect("10.0.0.1", 41000)
        self.assertFalse(refused_t.connected)
        self.assertNotIn(refused.conn_id, self.manager.conns)
        self.assertNotIn(("tcp", "10.0.0.1", 41000), self.manager.by_peer)
        self.assertEqual(self.manager.per_host["10.0.0.1"], self.cap)
        # another host still connects
        _, other_t = self.connect("10.0.0.2", 40000)
        self.assertTrue(other_t.connected)
        self.assertEqual(self.manager.per_host["10.0.0.2"], 1)
        # the cap counts open connections: closing one makes room again
        conns[0][1].loseConnection()
        _, again_t = self.connect("10.0.0.1", 41001)
        self.assertTrue(again_t.connected)
        self.assertEqual(self.manager.per_host["10.0.0.1"], self.cap)

    def test_banned_host_refused(self) -> None:
        self.banned.add("10.6.6.6")
        _, transport = self.connect("10.6.6.6", 40000)
        self.assertFalse(transport.connected)
        self.assertNoState()
        _, ok = self.connect("10.0.0.1", 40000)
        self.assertTrue(ok.connected)

    def test_banned_host_datagrams_reach_the_core(self) -> None:
        """The core decides what a ban blocks, after parsing (answers to its own requests and requests of
        calls up still count: issue 8 point 2); the transport drops nothing and answers nothing."""
        self.banned.add("10.6.6.6")
        self.udp_proto.datagramReceived(options(via="SIP/2.0/UDP 10.6.6.6"), ("10.6.6.6", 5060))
        self.assertEqual(len(self.sink.received), 1)
        self.assertEqual(self.udp_transport.written, [])


class SendTests(ManagerTestBase):
    def test_send_on_inbound_connection(self) -> None:
        """RFC 3261 18.2.2: the response goes back on the connection the request came on."""
        _, t1 = self.connect("10.0.0.1", 40001)
        p2, t2 = self.connect("10.0.0.1", 40002)
        p2.dataReceived(options())
        (_, source), = self.sink.received
        self.assertEqual(source.conn, p2.conn_id)
        self.manager.send(b"answer", source)
        self.assertEqual((t1.value(), t2.value()), (b"", b"answer"))
        self.assertEqual(self.reactor.connects, [])

    def test_send_reuses_connection_to_peer(self) -> None:
        _, t1 = self.connect("10.0.0.1", 5062)
        _, t2 = self.connect("10.0.0.2", 5062)
        self.manager.send(b"request", Addr("tcp", "10.0.0.1", 5062))
        self.assertEqual((t1.value(), t2.value()), (b"request", b""))
        self.assertTrue(self.manager.is_connected(Addr("tcp", "10.0.0.1", 5062)))
        self.assertEqual(self.reactor.connects, [])

    def test_send_opens_one_outbound_connection(self) -> None:
        target = Addr("tcp", "192.0.2.9", 5060)
        self.manager.send(b"one", target)
        self.manager.send(b"two", target)
        self.assertEqual([(h, p) for h, p, _ in self.reactor.connects], [("192.0.2.9", 5060)])
        factory = self.reactor.connects[0][2]
        proto = factory.buildProtocol(IPv4Address("TCP", "192.0.2.9", 5060))
        transport = StringTransportWithDisconnection(peerAddress=IPv4Address("TCP", "192.0.2.9", 5060))
        transport.protocol = proto
        proto.makeConnection(transport)
        self.assertEqual(transport.value(), b"onetwo")
        self.manager.send(b"three", target)
        self.assertEqual(transport.value(), b"onetwothree")
        self.assertEqual(len(self.reactor.connects), 1)
        transport.loseConnection()
        self.assertNoState()

    def test_outbound_failure_forgets_connection(self) -> None:
        failed: list[Addr] = []
        self.manager.on_send_failed = failed.append
        target = Addr("tcp", "192.0.2.9", 5060)
        self.manager.send(b"one", target)
        self.reactor.connects[0][2].clientConnectionFailed(None, None)
        self.assertEqual(failed, [target])
        self.assertNoState()
        self.manager.send(b"again", target)
        self.assertEqual(len(self.reactor.connects), 2)

    def test_udp_send(self) -> None:
        self.manager.send(b"data", Addr("udp", "192.0.2.1", 5070))
        self.assertEqual(self.udp_transport.written, [(b"data", ("192.0.2.1", 5070))])

    def test_broadcast_refused(self) -> None:
        for host in ("255.255.255.255", "224.0.0.1", "0.0.0.0"):
            self.manager.send(b"data", Addr("udp", host, 5060))
        self.assertEqual(self.udp_transport.written, [])


class DatagramTests(ManagerTestBase):
    def test_rport_and_received(self) -> None:
        """RFC 3581 4: rport gets the source port and received the source address."""
        data = options(via="SIP/2.0/UDP 10.1.1.1:5060;rport", extra="Via: SIP/2.0/UDP 192.0.2.50;branch=z9hG4bKold")
        self.udp_proto.datagramReceived(data, ("192.0.2.7", 40000))
        (msg, source), = self.sink.received
        self.assertEqual(source, Addr("udp", "192.0.2.7", 40000))
        top, second = msg.vias
        self.assertEqual((top.params["received"], top.params["rport"], top.branch),
                         ("192.0.2.7", "40000", "z9hG4bKabc1"))
        self.assertNotIn("received", second.params)
        # the wire form carries the rewritten top Via and keeps the other one
        again = parse_message(msg.to_bytes())
        self.assertEqual(again.vias[0].params, top.params)
        self.assertEqual([v.host for v in again.vias], ["10.1.1.1", "192.0.2.50"])

    def test_rport_same_host(self) -> None:
        """With rport, received is added even when the sent-by host is the source address."""
        self.udp_proto.datagramReceived(options(via="SIP/2.0/UDP 192.0.2.7:5060;rport"), ("192.0.2.7", 40000))
        (msg, _), = self.sink.received
        self.assertEqual((msg.top_via.params["received"], msg.top_via.params["rport"]), ("192.0.2.7", "40000"))

    def test_received_without_rport(self) -> None:
        """RFC 3261 18.2.1: received when the sent-by host differs; no rport unless asked for."""
        self.udp_proto.datagramReceived(options(via="SIP/2.0/UDP client.example.com"), ("192.0.2.7", 40000))
        self.udp_proto.datagramReceived(options(via="SIP/2.0/UDP 192.0.2.7:5060", call_id="c2@x"),
                                        ("192.0.2.7", 5060))
        first, second = self.requests()
        self.assertEqual(first.top_via.params.get("received"), "192.0.2.7")
        self.assertNotIn("rport", first.top_via.params)
        self.assertNotIn("received", second.top_via.params)

    def test_ipv4_mapped_source(self) -> None:
        self.udp_proto.datagramReceived(options(via="SIP/2.0/UDP 192.0.2.7;rport"), ("::ffff:192.0.2.7", 40000))
        (msg, source), = self.sink.received
        self.assertEqual(source.host, "192.0.2.7")
        self.assertEqual(msg.top_via.params["received"], "192.0.2.7")

    def test_unparseable_request_answered_400_to_source(self) -> None:
        """The 400 goes to where the datagram came from, not to the (untrusted) Via, with every Via."""
        data = options(via="SIP/2.0/UDP 198.51.100.1:5099", cseq="1 INVITE",
                       extra="Via: SIP/2.0/UDP 198.51.100.2;branch=z9hG4bK2")
        self.udp_proto.datagramReceived(data, ("192.0.2.7", 40000))
        self.assertEqual(self.sink.received, [])
        (raw, addr), = self.udp_transport.written
        self.assertEqual(addr, ("192.0.2.7", 40000))
        resp = parse_message(raw)
        assert isinstance(resp, Response)
        self.assertEqual((resp.status, resp.call_id, resp.cseq), (400, "c1@test", (1, "INVITE")))
        self.assertEqual([(v.host, v.branch) for v in resp.vias],
                         [("198.51.100.1", "z9hG4bKabc1"), ("198.51.100.2", "z9hG4bK2")])

    def test_unparseable_via_still_answered(self) -> None:
        """RFC 4475 badinv01: the broken Via is echoed as is and the 400 goes to the source."""
        data = options(via="SIP/2.0/UDP 192.0.2.15;;,;,,", branch="z9hG4bKx")
        self.udp_proto.datagramReceived(data, ("192.0.2.7", 40000))
        self.assertEqual(self.sink.received, [])
        (raw, addr), = self.udp_transport.written
        self.assertEqual(addr, ("192.0.2.7", 40000))
        self.assertTrue(raw.startswith(b"SIP/2.0 400 "), raw)
        self.assertIn(b"\r\nVia: SIP/2.0/UDP 192.0.2.15;;,;,,;branch=z9hG4bKx\r\n", raw)
        self.assertIn(b"\r\nCall-ID: c1@test\r\n", raw)

    def test_bad_version_answered_505(self) -> None:
        data = options().replace(b"SIP/2.0\r\n", b"SIP/7.0\r\n", 1)
        self.udp_proto.datagramReceived(data, ("192.0.2.7", 40000))
        (raw, _), = self.udp_transport.written
        self.assertEqual(parse_message(raw).status, 505)  # type: ignore[union-attr]
        self.assertEqual(self.sink.received, [])

    def test_unparseable_without_via_dropped(self) -> None:
        data = b"OPTIONS sip:x SIP/2.0\r\nCall-ID: a\r\nCSeq: 1 OPTIONS\r\n\r\n"
        self.udp_proto.datagramReceived(data, ("192.0.2.7", 40000))
        self.assertEqual((self.sink.received, self.udp_transport.written), ([], []))

    def test_bad_ack_not_answered(self) -> None:
        data = options(cseq="x ACK").replace(b"OPTIONS sip:", b"ACK sip:", 1)
        self.udp_proto.datagramReceived(data, ("192.0.2.7", 40000))
        self.assertEqual((self.sink.received, self.udp_transport.written), ([], []))

    def test_bad_response_dropped(self) -> None:
        for data in (b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\n\r\n",
                     b"SIP/2.0 4294967301 big\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\n\r\n",
                     (b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\nCall-ID: a\r\n"
                      b"CSeq: 99999999999999999999 OPTIONS\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\n\r\n")):
            self.udp_proto.datagramReceived(data, ("192.0.2.7", 40000))
        self.assertEqual((self.sink.received, self.udp_transport.written), ([], []))

    def test_good_response_delivered_untouched(self) -> None:
        data = (b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\nCall-ID: a\r\nCSeq: 1 OPTIONS\r\n"
                b"From: <sip:a@b>;tag=1\r\nTo: <sip:a@b>;tag=2\r\nContent-Length: 0\r\n\r\n")
        self.udp_proto.datagramReceived(data, ("192.0.2.7", 40000))
        (msg, _), = self.sink.received
        self.assertEqual(msg.get("via"), "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1")

    def test_keepalive_and_garbage_datagrams_ignored(self) -> None:
        for data in (b"", b"\r\n", b"\r\n\r\n", b"\x00\x01\x02", b"\xff" * 100, b"hello world"):
            self.udp_proto.datagramReceived(data, ("192.0.2.7", 40000))
        self.assertEqual((self.sink.received, self.udp_transport.written), ([], []))


class LogLines:
    """The text of the transport's log events while a test runs."""

    def __init__(self, test: SynchronousTestCase) -> None:
        from twisted.logger import globalLogPublisher

        self.events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.events.append)
        test.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def __call__(self) -> list[str]:
        from twisted.logger import formatEvent

        return [formatEvent(e) for e in self.events if e.get("log_namespace") == "minisip.transport"]


class SlowlorisTests(ManagerTestBase):
    """Issue 8.9: a message started on a stream must be complete within message_timeout (10 s by default)."""

    def test_trickle_closed_after_message_timeout(self) -> None:
        logs = LogLines(self)
        proto, transport = self.connect()
        data = options()
        proto.dataReceived(data[:20])
        for i in range(20, 29):  # one byte a second: each resets the idle timer, not the message deadline
            self.reactor.advance(1)
            proto.dataReceived(data[i:i + 1])
        self.assertTrue(transport.connected)
        self.reactor.advance(1)
        self.assertFalse(transport.connected)
        self.assertEqual(self.sink.received, [])
        self.assertNoState()
        self.reactor.advance(60)  # the log's counter for the host ends
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        (line,) = logs()
        self.assertIn("closing tcp connection from tcp:10.0.0.1:40000", line)
        self.assertIn("not complete within 10 s", line)

    def test_one_byte_per_idle_period(self) -> None:
        """The attack as seen: a byte just before each idle timeout kept the connection for ever."""
        proto, transport = self.connect()
        data = options()
        proto.dataReceived(data[:1])
        for i in range(1, 5):
            self.reactor.advance(self.idle_timeout - 1)
            if not transport.connected:
                break
            proto.dataReceived(data[i:i + 1])
        self.assertFalse(transport.connected)
        self.assertNoState()

    def test_slow_but_complete_message_and_idle_connection_kept(self) -> None:
        proto, transport = self.connect()
        data = options()
        for start in range(0, len(data), 40):  # in pieces over 9 s
            proto.dataReceived(data[start:start + 40])
            self.reactor.advance(9 / (len(data) / 40))
        self.assertEqual(len(self.sink.received), 1)
        self.reactor.advance(self.idle_timeout - 10)  # between messages only the idle timeout counts
        self.assertTrue(transport.connected)
        proto.dataReceived(b"\r\n\r\n")  # keep-alive ping
        proto.dataReceived(b"\r\n")      # a pong left alone is not a message under way
        self.reactor.advance(self.idle_timeout - 1)
        self.assertTrue(transport.connected)

    def test_deadline_restarts_for_the_next_message(self) -> None:
        proto, transport = self.connect()
        first, second = options(call_id="a@x"), options(call_id="b@x")
        proto.dataReceived(first[:10])
        self.reactor.advance(8)
        proto.dataReceived(first[10:] + second[:10])  # the first completes, the second starts now
        self.reactor.advance(8)
        self.assertTrue(transport.connected)
        proto.dataReceived(second[10:])
        self.assertEqual([m.call_id for m in self.requests()], ["a@x", "b@x"])
        self.reactor.advance(self.idle_timeout - 1)
        self.assertTrue(transport.connected)

    def test_configured_timeout(self) -> None:
        self.manager.message_timeout = 3
        proto, transport = self.connect()
        proto.dataReceived(b"OPTIONS sip:x SIP/2.0\r\n")
        self.reactor.advance(2.9)
        self.assertTrue(transport.connected)
        self.reactor.advance(0.1)
        self.assertFalse(transport.connected)


class GlobalConnectionCapTests(ManagerTestBase):
    """Issue 8.9: 2,000 connections from 200 addresses were all held; max_connections caps them in all."""

    cap = 3

    def setUp(self) -> None:
        super().setUp()
        self.manager.max_connections = 5

    def test_cap_over_all_hosts(self) -> None:
        logs = LogLines(self)
        held = [self.connect(f"10.0.0.{i // 2}", 40000 + i) for i in range(5)]
        self.assertTrue(all(t.connected for _, t in held))
        refused = [self.connect(f"10.0.1.{i}", 40000)[1] for i in range(10)]
        self.assertFalse(any(t.connected for t in refused))
        self.assertEqual(len(self.manager.conns), 5)
        self.assertNotIn("10.0.1.0", self.manager.per_host)
        lines = logs()
        self.assertEqual(len(lines), 10)  # one per refusing host (then counted per host)
        self.assertIn("refusing tcp connection from 10.0.1.0: 5 connections open in all ([security] max_connections)",
                      lines[0])
        # Closing one makes room again.
        held[0][1].loseConnection()
        _, again = self.connect("10.0.1.0", 40001)
        self.assertTrue(again.connected)

    def test_outbound_connections_not_refused_nor_counted(self) -> None:
        for i in range(5):
            self.connect(f"10.0.0.{i}", 40000)
        target = Addr("tcp", "192.0.2.9", 5060)
        self.manager.send(b"request", target)
        factory = self.reactor.connects[0][2]
        proto = factory.buildProtocol(IPv4Address("TCP", "192.0.2.9", 5060))
        transport = StringTransportWithDisconnection(peerAddress=IPv4Address("TCP", "192.0.2.9", 5060))
        transport.protocol = proto
        proto.makeConnection(transport)
        self.assertTrue(transport.connected)
        self.assertEqual(transport.value(), b"request")
        self.assertEqual(self.manager.inbound, 5)
        transport.loseConnection()
        self.assertEqual(self.manager.inbound, 5)

    def test_repeated_refusals_from_one_host_counted(self) -> None:
        logs = LogLines(self)
        for i in range(self.cap):
            self.connect("10.0.0.1", 40000 + i)
        for i in range(500):
            self.connect("10.0.0.1", 41000 + i)
        self.assertEqual(len(logs()), 1)
        self.reactor.advance(60)
        self.assertIn("499 more refused or closed connections from 10.0.0.1 in the last 60 s", logs()[-1])


class BadInputLogTests(ManagerTestBase):
    """Issue 8.9: one log line per junk datagram made 9 MB of log in 10 s."""

    def test_junk_flood_is_two_lines_a_minute(self) -> None:
        logs = LogLines(self)
        junk = options(cseq="1 INVITE")  # parses far enough to be answered 400
        for _ in range(5000):
            self.udp_proto.datagramReceived(junk, ("192.0.2.7", 40000))
        for _ in range(10):
            self.udp_proto.datagramReceived(b"\xff" * 100, ("192.0.2.8", 40000))
        self.assertEqual(len(logs()), 2)
        self.assertIn("bad message from udp:192.0.2.7:40000", logs()[0])
        self.assertEqual(len(self.udp_transport.written), 5000)  # each is still answered
        self.reactor.advance(60)
        self.assertEqual(sorted(logs()[2:]), ["4999 more bad messages from 192.0.2.7 in the last 60 s",
                                              "9 more bad messages from 192.0.2.8 in the last 60 s"])
        self.reactor.advance(60)
        self.assertEqual(len(logs()), 4)
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_stream_framing_errors_counted_per_host(self) -> None:
        logs = LogLines(self)
        for i in range(self.cap * 10):
            proto, transport = self.connect("10.0.0.1", 40000 + i)
            proto.dataReceived(b"\x00\xff garbage\r\n\r\n")
            self.assertFalse(transport.connected)
        self.assertEqual(len(logs()), 1)
        self.assertIn("cannot frame stream", logs()[0])
        self.reactor.advance(60)
        self.assertEqual(logs()[1], "29 more bad messages from 10.0.0.1 in the last 60 s")

    def test_close_cancels_the_counters(self) -> None:
        self.udp_proto.datagramReceived(options(cseq="1 INVITE"), ("192.0.2.7", 40000))
        self.manager.close()
        self.assertEqual(self.reactor.getDelayedCalls(), [])


class DeadlineAfterCloseTests(ManagerTestBase):
    def test_no_deadline_left_when_the_sink_closed_the_connection(self) -> None:
        """A message that makes the core close its connection, followed by a partial one: no timer is left."""
        proto, transport = self.connect()

        class Closing:
            def message_received(self, msg: object, source: object) -> None:
                transport.loseConnection()

        self.manager.sink = Closing()  # type: ignore[assignment]
        proto.dataReceived(options() + b"OPTIONS sip:x SIP/2.0\r\n")
        self.assertFalse(transport.connected)
        self.assertNoState()
        self.assertEqual(self.reactor.getDelayedCalls(), [])
