"""RTCP through the relay between a plain and an encrypted leg: plain RTCP leaves toward an SDES or
DTLS-SRTP leg as SRTCP that the phone authenticates with its own keys, SRTCP from that leg leaves plain,
with and without rtcp-mux; SRTCP that fails authentication or replays is dropped and counted.

The SDES phone is modelled by pylibsrtp sessions of its own (not the relay's SdesTransform), so what is
checked is what a real phone would accept. Most tests run on the relay's in-memory path (FakeNet); one
runs over real UDP sockets on 127.0.0.1.
"""

from __future__ import annotations

import pylibsrtp
from twisted.internet import defer, reactor
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from minisip.media.compat import DTLS_AVAILABLE
from minisip.media.dtls import DtlsCertificate, DtlsTransform, choose_setup, local_certificate
from minisip.media.relay import MediaRelay
from minisip.media.srtp import SdesTransform, new_key_salt
from minisip.sip.sdp import parse_sdp
from tests.media.test_policy import RELAY, PolicyTestCase, sdp_for
from tests.media.test_relay import ADDRESS, PHONE_A, PHONE_B, SPOOFER, FakeNet
from tests.media.test_relay_udp import Phone, free_range
from tests.media.test_rtp import receiver_report, report_block, rtp_packet, sdes, sender_report

PHONE_A_RTCP = (PHONE_A[0], PHONE_A[1] + 1)
PHONE_B_RTCP = (PHONE_B[0], PHONE_B[1] + 1)
NO_DTLS = "this pyOpenSSL has no DTLS (before 22.0, e.g. Ubuntu 22.04): DTLS-SRTP is not offered there"


def plain_rtcp(ssrc: int = 0x1234, fraction: int = 64, lost: int = 5, jitter: int = 80) -> bytes:
    """A compound RTCP packet as phones send it: a receiver report with one block, then SDES."""
    return receiver_report(ssrc, report_block(0x9999, fraction, lost, 100, jitter)) + sdes(ssrc)


class SdesPhone:
    """A phone's own SRTP sessions (pylibsrtp directly): protects with its key, unprotects the relay's."""

    def __init__(self, phone_key: bytes, relay_key: bytes) -> None:
        self.tx = pylibsrtp.Session(pylibsrtp.Policy(key=phone_key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND))
        self.rx = pylibsrtp.Session(pylibsrtp.Policy(key=relay_key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND))


class RtcpTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.net = FakeNet()
        self.relay = MediaRelay(None, ADDRESS, (20000, 20099), clock=self.clock, timeout=0,
                                listen_udp=self.net.listen_udp)
        self.addCleanup(self.relay.close)

    def sdes_call(self, plain_mux: bool = False, secure_mux: bool = False) -> tuple[object, object, SdesPhone]:
        """Leg a plain (PHONE_A), leg b SDES (PHONE_B), bridged; the SDES phone's sessions."""
        a = self.relay.open_endpoint("c1", "a", rtcp_mux=plain_mux)
        b = self.relay.open_endpoint("c1", "b", rtcp_mux=secure_mux)
        a.set_remote(PHONE_A)
        b.set_remote(PHONE_B)
        relay_key, phone_key = new_key_salt(), new_key_salt()
        b.set_transform(SdesTransform(relay_key, phone_key))
        self.relay.bridge(a, b)
        return a, b, SdesPhone(phone_key, relay_key)


class SdesRtcpTests(RtcpTestCase):
    def test_plain_rtcp_leaves_as_srtcp_the_phone_authenticates(self) -> None:
        a, b, phone = self.sdes_call()
        self.net.deliver(a.local[2], plain_rtcp(), PHONE_A_RTCP)
        ((wire, addr),) = self.net.take(b.local[2])
        self.assertEqual(addr, PHONE_B_RTCP)
        self.assertNotEqual(wire, plain_rtcp())
        self.assertEqual(len(wire), len(plain_rtcp()) + 4 + 10)   # E flag + SRTCP index, 80-bit tag
        self.assertEqual(phone.rx.unprotect_rtcp(wire), plain_rtcp())
        self.assertEqual((a.rtcp_in, b.rtcp_out, b.dropped_not_ready), (1, 1, 0))

    def test_srtcp_from_the_sdes_phone_leaves_plain(self) -> None:
        a, b, phone = self.sdes_call()
        report = plain_rtcp(ssrc=0x77, fraction=128, lost=9, jitter=160)
        self.net.deliver(b.local[2], phone.tx.protect_rtcp(report), PHONE_B_RTCP)
        self.assertEqual(self.net.take(a.local[2]), [(report, PHONE_A_RTCP)])
        b.set_clock_rate(8000)
        stats = {s["label"]: s for s in self.relay.stats("c1")}
        # the report is read after decryption: the SDES leg's phone says how it hears the plain leg
        self.assertEqual((stats["b"]["rtcp_in"], stats["a"]["rtcp_out"]), (1, 1))
        self.assertEqual((stats["b"]["reported_fraction_lost"], stats["b"]["reported_cumulative_lost"],
                          stats["b"]["reported_jitter_ms"]), (0.5, 9, 20.0))
        self.assertEqual(stats["b"]["srtp_auth_failures"], 0)

    def test_many_reports_both_ways(self) -> None:
        a, b, phone = self.sdes_call()
        for i in range(20):
            report = sender_report(0x1234, report_block(0x77, 0, i, 100 + i, 8))
            self.net.deliver(a.local[2], report, PHONE_A_RTCP)
            back = receiver_report(0x77, report_block(0x1234, 0, i, 200 + i, 4))
            self.net.deliver(b.local[2], phone.tx.protect_rtcp(back), PHONE_B_RTCP)
            ((wire, _),) = self.net.take(b.local[2])
            self.assertEqual(phone.rx.unprotect_rtcp(wire), report)
            self.assertEqual(self.net.take(a.local[2]), [(back, PHONE_A_RTCP)])
        self.assertEqual((a.rtcp_in, a.rtcp_out, b.rtcp_in, b.rtcp_out), (20, 20, 20, 20))

    def test_rtcp_mux_on_both_sides(self) -> None:
        a, b, phone = self.sdes_call(plain_mux=True, secure_mux=True)
        self.assertEqual((a.local[1], b.local[1]), (a.local[2], b.local[2]))
        self.net.deliver(a.local[1], plain_rtcp(), PHONE_A)
        self.net.deliver(a.local[1], rtp_packet(1), PHONE_A)
        (rtcp_out, rtp_out) = self.net.take(b.local[1])
        self.assertEqual((rtcp_out[1], rtp_out[1]), (PHONE_B, PHONE_B))
        self.assertEqual(phone.rx.unprotect_rtcp(rtcp_out[0]), plain_rtcp())
        self.assertEqual(phone.rx.unprotect(rtp_out[0]), rtp_packet(1))
        report = plain_rtcp(ssrc=0x77)
        self.net.deliver(b.local[1], phone.tx.protect_rtcp(report), PHONE_B)
        self.assertEqual(self.net.take(a.local[1]), [(report, PHONE_A)])

    def test_muxed_sdes_side_separate_plain_side(self) -> None:
        a, b, phone = self.sdes_call(plain_mux=False, secure_mux=True)
        self.net.deliver(a.local[2], plain_rtcp(), PHONE_A_RTCP)
        ((wire, addr),) = self.net.take(b.local[1])
        self.assertEqual((addr, phone.rx.unprotect_rtcp(wire)), (PHONE_B, plain_rtcp()))
        report = plain_rtcp(ssrc=0x77)
        self.net.deliver(b.local[1], phone.tx.protect_rtcp(report), PHONE_B)
        self.assertEqual(self.net.take(a.local[2]), [(report, PHONE_A_RTCP)])

    def test_muxed_plain_side_separate_sdes_side(self) -> None:
        a, b, phone = self.sdes_call(plain_mux=True, secure_mux=False)
        self.net.deliver(a.local[1], plain_rtcp(), PHONE_A)
        ((wire, addr),) = self.net.take(b.local[2])
        self.assertEqual((addr, phone.rx.unprotect_rtcp(wire)), (PHONE_B_RTCP, plain_rtcp()))
        report = plain_rtcp(ssrc=0x77)
        self.net.deliver(b.local[2], phone.tx.protect_rtcp(report), PHONE_B_RTCP)
        self.assertEqual(self.net.take(a.local[1]), [(report, PHONE_A)])

    def test_tampered_srtcp_is_dropped_and_counted(self) -> None:
        a, b, phone = self.sdes_call()
        good = phone.tx.protect_rtcp(plain_rtcp(ssrc=0x77))
        self.net.deliver(b.local[2], good, PHONE_B_RTCP)      # latches the SDES phone's RTCP address
        self.assertEqual(len(self.net.take(a.local[2])), 1)
        for i in (0, 9, len(good) - 1):                       # header, encrypted body, tag
            tampered = bytearray(phone.tx.protect_rtcp(plain_rtcp(ssrc=0x77)))
            tampered[i] ^= 0x04
            self.net.deliver(b.local[2], bytes(tampered), PHONE_B_RTCP)
        self.assertEqual(self.net.take(a.local[2]), [])
        stats = {s["label"]: s for s in self.relay.stats("c1")}["b"]
        self.assertEqual((stats["rtcp_in"], stats["dropped_unprotect"], stats["srtp_auth_failures"]), (1, 3, 3))
        # the stream goes on: the next good packet is relayed
        self.net.deliver(b.local[2], phone.tx.protect_rtcp(plain_rtcp(ssrc=0x77)), PHONE_B_RTCP)
        self.assertEqual(len(self.net.take(a.local[2])), 1)

    def test_replayed_srtcp_is_dropped_and_counted(self) -> None:
        a, b, phone = self.sdes_call()
        wire = phone.tx.protect_rtcp(plain_rtcp(ssrc=0x77))
        self.net.deliver(b.local[2], wire, PHONE_B_RTCP)
        self.net.deliver(b.local[2], wire, PHONE_B_RTCP)
        self.assertEqual(len(self.net.take(a.local[2])), 1)
        stats = {s["label"]: s for s in self.relay.stats("c1")}["b"]
        self.assertEqual((stats["rtcp_in"], stats["srtp_replay_failures"], stats["dropped_unprotect"]), (1, 1, 1))

    def test_plain_rtcp_on_the_sdes_side_is_not_relayed(self) -> None:
        """Unencrypted RTCP sent to the SDES leg (from the phone's address or a spoofer) never latches
        and never reaches the plain side."""
        a, b, phone = self.sdes_call()
        self.net.deliver(b.local[2], plain_rtcp(ssrc=0x77), PHONE_B_RTCP)
        self.net.deliver(b.local[2], plain_rtcp(ssrc=0x77), SPOOFER)
        self.assertEqual(self.net.take(a.local[2]), [])
        self.assertEqual((b.rtcp_in, b.latched_rtcp, b.dropped_unprotect), (0, None, 2))
        # a spoofer cannot take the RTCP stream over once the phone latched it either
        self.net.deliver(b.local[2], phone.tx.protect_rtcp(plain_rtcp(ssrc=0x77)), PHONE_B_RTCP)
        self.net.deliver(b.local[2], phone.tx.protect_rtcp(plain_rtcp(ssrc=0x78)), SPOOFER)
        self.assertEqual(len(self.net.take(a.local[2])), 1)
        self.assertEqual((b.latched_rtcp, b.dropped_spoofed), (PHONE_B_RTCP, 1))

    def test_sdes_to_sdes_reprotects_with_the_other_key(self) -> None:
        a = self.relay.open_endpoint("c1", "a")
        b = self.relay.open_endpoint("c1", "b", rtcp_mux=True)
        a.set_remote(PHONE_A)
        b.set_remote(PHONE_B)
        keys = [new_key_salt() for _ in range(4)]   # relay->A, A->relay, relay->B, B->relay
        a.set_transform(SdesTransform(keys[0], keys[1]))
        b.set_transform(SdesTransform(keys[2], keys[3]))
        self.relay.bridge(a, b)
        phone_a, phone_b = SdesPhone(keys[1], keys[0]), SdesPhone(keys[3], keys[2])
        wire_a = phone_a.tx.protect_rtcp(plain_rtcp())
        self.net.deliver(a.local[2], wire_a, PHONE_A_RTCP)
        ((wire, addr),) = self.net.take(b.local[1])
        self.assertNotEqual(wire, wire_a)
        self.assertEqual((addr, phone_b.rx.unprotect_rtcp(wire)), (PHONE_B, plain_rtcp()))
        self.net.deliver(b.local[1], phone_b.tx.protect_rtcp(plain_rtcp(ssrc=0x77)), PHONE_B)
        ((wire, addr),) = self.net.take(a.local[2])
        self.assertEqual((addr, phone_a.rx.unprotect_rtcp(wire)), (PHONE_A_RTCP, plain_rtcp(ssrc=0x77)))


def handshake(net: FakeNet, port: int, phone: DtlsTransform, phone_addr: tuple[str, int]) -> None:
    """Pump a DTLS handshake between the phone's client transform and a relay port through the fake net."""
    to_relay: list[bytes] = []
    phone.attach(to_relay.append)
    phone.start()
    for _ in range(10):
        for d in to_relay:
            net.deliver(port, d, phone_addr)
        to_relay.clear()
        for d, _addr in net.take(port):
            to_relay.extend(phone.control(d, (ADDRESS, port))[0])
        if phone.ready() and not to_relay:
            break


class DtlsRtcpTests(RtcpTestCase):
    """DTLS-SRTP leg b (the relay is the DTLS server, the phone its client) bridged to plain leg a. Without
    rtcp-mux the phone keys RTCP with a second handshake on the RTCP ports (RFC 5764 section 4.1), as
    baresip's dtls_srtp does."""

    skip = None if DTLS_AVAILABLE else NO_DTLS

    def dtls_call(self, secure_mux: bool) -> tuple[object, object, DtlsTransform, DtlsTransform]:
        """The endpoints and the phone's transforms for RTP and for RTCP (the same one with rtcp-mux)."""
        a = self.relay.open_endpoint("c1", "a")
        b = self.relay.open_endpoint("c1", "b", rtcp_mux=secure_mux)
        a.set_remote(PHONE_A)
        b.set_remote(PHONE_B)
        phone_cert = DtlsCertificate.generate()
        b.set_transform(DtlsTransform("server", ("sha-256", phone_cert.fingerprint), self.clock))
        if not secure_mux:
            b.set_rtcp_transform(DtlsTransform("server", ("sha-256", phone_cert.fingerprint), self.clock))
        self.relay.bridge(a, b)
        relay_fp = ("sha-256", local_certificate().fingerprint)
        phone = DtlsTransform("client", relay_fp, self.clock, phone_cert)
        handshake(self.net, b.local[1], phone, PHONE_B)
        self.assertTrue(phone.ready() and b.transform.ready())
        if secure_mux:
            return a, b, phone, phone
        phone_rtcp = DtlsTransform("client", relay_fp, self.clock, phone_cert)
        handshake(self.net, b.local[2], phone_rtcp, PHONE_B_RTCP)
        self.assertTrue(phone_rtcp.ready() and b.rtcp_transform.ready())
        return a, b, phone, phone_rtcp

    def test_plain_and_dtls_srtcp_both_ways_with_the_rtcp_components_keys(self) -> None:
        a, b, phone, phone_rtcp = self.dtls_call(secure_mux=False)
        self.net.deliver(a.local[2], plain_rtcp(), PHONE_A_RTCP)
        ((wire, addr),) = self.net.take(b.local[2])
        self.assertNotEqual(wire, plain_rtcp())
        self.assertEqual((addr, phone_rtcp.unprotect_rtcp(wire)), (PHONE_B_RTCP, plain_rtcp()))
        report = plain_rtcp(ssrc=0x77)
        self.net.deliver(b.local[2], phone_rtcp.protect_rtcp(report), PHONE_B_RTCP)
        self.assertEqual(self.net.take(a.local[2]), [(report, PHONE_A_RTCP)])
        # RTP keeps the RTP component's keys
        self.net.deliver(a.local[1], rtp_packet(1), PHONE_A)
        ((wire, addr),) = self.net.take(b.local[1])
        self.assertEqual((addr, phone.unprotect_rtp(wire)), (PHONE_B, rtp_packet(1)))
        # SRTCP made with the RTP component's keys does not authenticate on the RTCP port: dropped, counted
        # (its SRTCP index is made higher than the one seen, or libsrtp's replay check answers first)
        bogus = [phone.protect_rtcp(report) for _ in range(3)][-1]
        self.net.deliver(b.local[2], bogus, PHONE_B_RTCP)
        self.assertEqual(self.net.take(a.local[2]), [])
        stats = {s["label"]: s for s in self.relay.stats("c1")}["b"]
        self.assertEqual((stats["rtcp_in"], stats["dropped_unprotect"], stats["srtp_auth_failures"]), (1, 1, 1))

    def test_rtcp_mux_and_tampering(self) -> None:
        a, b, phone, _ = self.dtls_call(secure_mux=True)
        self.assertIsNone(b.rtcp_transform)
        self.net.deliver(a.local[2], plain_rtcp(), PHONE_A_RTCP)
        ((wire, addr),) = self.net.take(b.local[1])
        self.assertEqual((addr, phone.unprotect_rtcp(wire)), (PHONE_B, plain_rtcp()))
        report = plain_rtcp(ssrc=0x77)
        self.net.deliver(b.local[1], phone.protect_rtcp(report), PHONE_B)
        self.assertEqual(self.net.take(a.local[2]), [(report, PHONE_A_RTCP)])
        tampered = bytearray(phone.protect_rtcp(report) or b"")
        tampered[12] ^= 0x01
        self.net.deliver(b.local[1], bytes(tampered), PHONE_B)
        self.assertEqual(self.net.take(a.local[2]), [])
        stats = {s["label"]: s for s in self.relay.stats("c1")}["b"]
        self.assertEqual((stats["rtcp_in"], stats["dropped_unprotect"], stats["srtp_auth_failures"]), (1, 1, 1))

    def test_rtcp_transform_replaced_and_closed(self) -> None:
        a, b, _, _ = self.dtls_call(secure_mux=False)
        rtcp_transform = b.rtcp_transform
        b.set_rtcp_transform(None)                       # rtcp-mux negotiated in a re-INVITE
        self.assertEqual((b.rtcp_transform, rtcp_transform.state), (None, "closed"))
        b.set_rtcp_transform(DtlsTransform("server", ("sha-256", "AA:" * 31 + "AA"), self.clock))
        other = b.rtcp_transform
        b.close()
        self.assertEqual(other.state, "closed")
        self.assertRaises(ValueError, b.set_rtcp_transform, None)


class RealSocketRtcpTests(TestCase):
    """Plain RTCP to SRTCP and back over real sockets on 127.0.0.1, each leg with its own RTCP port."""

    timeout = 20

    def test_plain_to_sdes_and_back_over_loopback(self) -> defer.Deferred[None]:
        # Twisted 22.4's trial does not await coroutine test methods: wrap it.
        return defer.Deferred.fromCoroutine(self.both_ways())

    async def both_ways(self) -> None:
        relay = MediaRelay(reactor, "127.0.0.1", free_range(), timeout=0)
        self.addCleanup(relay.close)
        phones = [Phone(), Phone()]            # the RTCP sockets of a plain phone and an SDES phone
        ports = [reactor.listenUDP(0, phone, interface="127.0.0.1") for phone in phones]
        for port in ports:
            self.addCleanup(port.stopListening)
        rtcp_addrs = [("127.0.0.1", port.getHost().port) for port in ports]
        a = relay.open_endpoint("c1", "plain")
        b = relay.open_endpoint("c1", "sdes")
        # the SDP's a=rtcp: RTCP at the phones' sockets, RTP somewhere unused
        a.set_remote(("127.0.0.1", 9), rtcp_addrs[0])
        b.set_remote(("127.0.0.1", 9), rtcp_addrs[1])
        relay_key, phone_key = new_key_salt(), new_key_salt()
        b.set_transform(SdesTransform(relay_key, phone_key))
        relay.bridge(a, b)
        sdes_phone = SdesPhone(phone_key, relay_key)

        arrived = phones[1].next()
        ports[0].write(plain_rtcp(), ("127.0.0.1", a.local[2]))
        self.assertEqual(sdes_phone.rx.unprotect_rtcp(await arrived), plain_rtcp())
        arrived = phones[0].next()
        ports[1].write(sdes_phone.tx.protect_rtcp(plain_rtcp(ssrc=0x77)), ("127.0.0.1", b.local[2]))
        self.assertEqual(await arrived, plain_rtcp(ssrc=0x77))
        stats = relay.close_call("c1")
        self.assertEqual([(s["rtcp_in"], s["rtcp_out"]) for s in stats], [(1, 1), (1, 1)])
        self.assertEqual(relay.pool.free, relay.pool.size)


def pump(net: FakeNet, port: int, phone: DtlsTransform, phone_addr: tuple[str, int],
         to_relay: list[bytes]) -> None:
    """Carry a DTLS handshake between a relay port and a phone transform both ways until it is quiet."""
    for _ in range(10):
        for d in to_relay:
            net.deliver(port, d, phone_addr)
        to_relay.clear()
        for d, _addr in net.take(port):
            to_relay.extend(phone.control(d, (ADDRESS, port))[0])
        if phone.ready() and not to_relay:
            return


class DtlsWithoutMuxPolicyTests(PolicyTestCase):
    """Through the media policy and the call layer: a DTLS-SRTP phone that does not use rtcp-mux (baresip
    with ``rtcp_mux no``) gets a second DTLS association on the RTCP ports, and RTCP crosses to and from
    a plain phone with that association's keys."""

    skip = None if DTLS_AVAILABLE else NO_DTLS
    encryption = {"100": "auto", "200": "dtls"}

    def test_plain_caller_dtls_callee_without_rtcp_mux(self) -> None:
        a, b, to_bob = self.call(sdp_for("10.0.0.1", 4000))
        relay_fp = parse_sdp(to_bob).media[0].fingerprint
        assert relay_fp is not None
        _, port_b = self.media(to_bob)
        cert = local_certificate()
        setup, role = choose_setup("actpass", we_are_answerer=True)
        to_alice = self.answer(a, b, sdp_for("10.0.0.2", 5000, "dtls", fingerprint=cert.fingerprint, setup=setup))
        _, port_a = self.media(to_alice)
        phones = []
        for port, addr in ((port_b, ("10.0.0.2", 5000)), (port_b + 1, ("10.0.0.2", 5001))):
            phone = DtlsTransform(role, relay_fp, self.pbx.clock, certificate=cert)
            to_relay: list[bytes] = []
            phone.attach(to_relay.append)
            phone.start()
            pump(self.net, port, phone, addr, to_relay)
            self.assertTrue(phone.ready(), f"no DTLS handshake on relay port {port}")
            phones.append(phone)
        phone_rtp, phone_rtcp = phones
        self.net.deliver(port_a + 1, plain_rtcp(), ("10.0.0.1", 4001))
        ((wire, addr),) = self.net.take(port_b + 1)
        self.assertEqual((addr, phone_rtcp.unprotect_rtcp(wire)), (("10.0.0.2", 5001), plain_rtcp()))
        report = plain_rtcp(ssrc=0x77)
        self.net.deliver(port_b + 1, phone_rtcp.protect_rtcp(report), ("10.0.0.2", 5001))
        self.assertEqual(self.net.take(port_a + 1), [(report, ("10.0.0.1", 4001))])
        self.net.deliver(port_a, rtp_packet(1), ("10.0.0.1", 4000))
        ((wire, _),) = self.net.take(port_b)
        self.assertEqual(phone_rtp.unprotect_rtp(wire), rtp_packet(1))

    def test_dtls_caller_without_rtcp_mux_gets_both_client_hellos_at_the_answer(self) -> None:
        self.encryption = {"100": "auto", "200": "none"}
        cert = local_certificate()
        a, b, to_bob = self.call(sdp_for("10.0.0.1", 4000, "dtls", fingerprint=cert.fingerprint))
        self.assertEqual([p for p, fake in self.net.ports.items() if fake.sent], [], "DTLS before the answer")
        _, port_b = self.media(to_bob)
        to_alice = self.answer(a, b, sdp_for("10.0.0.2", 5000))
        answer = parse_sdp(to_alice).media[0]
        self.assertFalse(answer.rtcp_mux)
        assert answer.fingerprint is not None
        _, port_a = self.media(to_alice)
        for port, addr in ((port_a, ("10.0.0.1", 4000)), (port_a + 1, ("10.0.0.1", 4001))):
            hello = self.net.ports[port].sent
            self.assertTrue(hello, f"no ClientHello from relay port {port} when the answer went out")
            self.assertEqual({to for _, to in hello}, {addr})
        phone_rtcp = None
        for port, addr in ((port_a, ("10.0.0.1", 4000)), (port_a + 1, ("10.0.0.1", 4001))):
            phone = DtlsTransform("server", answer.fingerprint, self.pbx.clock, certificate=cert)
            phone.attach(lambda d: None)
            phone.start()
            to_relay: list[bytes] = []
            for d, _addr in self.net.take(port):
                to_relay.extend(phone.control(d, (RELAY, port))[0])
            pump(self.net, port, phone, addr, to_relay)
            self.assertTrue(phone.ready(), f"no DTLS handshake on relay port {port}")
            phone_rtcp = phone
        assert phone_rtcp is not None
        self.net.deliver(port_b + 1, plain_rtcp(), ("10.0.0.2", 5001))
        ((wire, addr),) = self.net.take(port_a + 1)
        self.assertEqual((addr, phone_rtcp.unprotect_rtcp(wire)), (("10.0.0.1", 4001), plain_rtcp()))
        report = plain_rtcp(ssrc=0x77)
        self.net.deliver(port_a + 1, phone_rtcp.protect_rtcp(report), ("10.0.0.1", 4001))
        self.assertEqual(self.net.take(port_b + 1), [(report, ("10.0.0.2", 5001))])
