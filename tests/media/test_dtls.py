"""Tests for minisip.media.dtls: two DtlsTransforms handshaking in memory on a Clock."""

from __future__ import annotations

import datetime
import hashlib
import re
import struct

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from minisip.media import dtls, stun
from minisip.media.compat import DTLS_AVAILABLE
from minisip.media.dtls import DtlsCertificate, DtlsTransform, SetupError, choose_setup, parse_fingerprint
from minisip.media.interfaces import IMediaTransform
from minisip.media.srtp import AES_CM_128_HMAC_SHA1_32, AES_CM_128_HMAC_SHA1_80

CERT_A = DtlsCertificate.generate()
CERT_B = DtlsCertificate.generate()
ADDR_A = ("127.0.0.1", 20000)
ADDR_B = ("127.0.0.1", 20002)
FINGERPRINT_RE = re.compile(r"^([0-9A-F]{2}:){31}[0-9A-F]{2}$")


def rtp(seq: int, ssrc: int = 0xABCDEF01) -> bytes:
    return struct.pack("!BBHII", 0x80, 0, seq, seq * 160, ssrc) + bytes(range(160))


def rtcp_rr(ssrc: int = 0xABCDEF01) -> bytes:
    return struct.pack("!BBHI", 0x80, 201, 1, ssrc)


NO_DTLS = "this pyOpenSSL has no DTLS (before 22.0, e.g. Ubuntu 22.04): DTLS-SRTP is not offered there"


class Wire:
    """Two transforms joined in memory: what one sends (``send`` or control's replies) queues for the
    other until ``pump`` delivers it; ``drop`` decides which datagrams are lost."""

    def __init__(self, a: DtlsTransform, b: DtlsTransform) -> None:
        self.a, self.b = a, b
        self.to_a: list[bytes] = []
        self.to_b: list[bytes] = []
        self.delivered: list[tuple[str, bytes]] = []
        a.attach(self.to_b.append)
        b.attach(self.to_a.append)

    def pump(self, drop: object = None, rounds: int = 50) -> None:
        for _ in range(rounds):
            if not self.to_a and not self.to_b:
                return
            while self.to_b:
                data = self.to_b.pop(0)
                if callable(drop) and drop("b", data):
                    continue
                self.delivered.append(("b", data))
                self.to_a.extend(self.b.control(data, ADDR_A)[0])
            while self.to_a:
                data = self.to_a.pop(0)
                if callable(drop) and drop("a", data):
                    continue
                self.delivered.append(("a", data))
                self.to_b.extend(self.a.control(data, ADDR_B)[0])


def pair(clock: Clock, client_first: bool = True, b_suites: tuple = (AES_CM_128_HMAC_SHA1_80, AES_CM_128_HMAC_SHA1_32)
         ) -> tuple[DtlsTransform, DtlsTransform, Wire]:
    """a is the client when client_first, else the server; b the other role."""
    a_role, b_role = ("client", "server") if client_first else ("server", "client")
    a = DtlsTransform(a_role, ("sha-256", CERT_B.fingerprint), clock, CERT_A)
    b = DtlsTransform(b_role, ("sha-256", CERT_A.fingerprint), clock, CERT_B, suites=b_suites)
    return a, b, Wire(a, b)


def round_trip(test: SynchronousTestCase, a: DtlsTransform, b: DtlsTransform, seq: int = 1) -> None:
    wire = a.protect_rtp(rtp(seq))
    assert wire is not None
    test.assertNotEqual(wire, rtp(seq))
    test.assertEqual(b.unprotect_rtp(wire), rtp(seq))
    back = b.protect_rtp(rtp(seq, ssrc=0x01020304))
    assert back is not None
    test.assertEqual(a.unprotect_rtp(back), rtp(seq, ssrc=0x01020304))
    test.assertEqual(b.unprotect_rtcp(a.protect_rtcp(rtcp_rr()) or b""), rtcp_rr())


def is_client_hello(data: bytes) -> bool:
    return data[0] == 22 and len(data) > 25 and data[13] == 1


class HandshakeTests(SynchronousTestCase):
    skip = None if DTLS_AVAILABLE else NO_DTLS
    def setUp(self) -> None:
        self.clock = Clock()

    def start(self, a: DtlsTransform, b: DtlsTransform) -> None:
        for transform in (a, b):
            transform.start()

    def test_interface(self) -> None:
        a, _b, _wire = pair(self.clock)
        self.assertEqual(a.local_fingerprint, ("sha-256", CERT_A.fingerprint))
        self.assertTrue(verifyObject(IMediaTransform, a))
        self.assertTrue(a.secure)
        self.assertFalse(a.ready())
        self.assertIsNone(a.protect_rtp(rtp(1)))
        self.assertIsNone(a.unprotect_rtp(rtp(1)))

    def test_handshake_with_us_as_client_or_server(self) -> None:
        for client_first in (True, False):
            a, b, wire = pair(self.clock, client_first)
            self.start(a, b)
            wire.pump()
            self.assertTrue(a.ready() and b.ready(), (a.failure, b.failure))
            self.assertEqual((a.suite, b.suite), (AES_CM_128_HMAC_SHA1_80, AES_CM_128_HMAC_SHA1_80))
            for seq in range(1, 6):
                round_trip(self, a, b, seq)
            self.assertEqual(self.clock.getDelayedCalls(), [])
            self.assertEqual((a.retransmissions, b.retransmissions), (0, 0))

    def test_datagrams_fit_the_mtu(self) -> None:
        a, b, wire = pair(self.clock)
        self.start(a, b)
        wire.pump()
        self.assertTrue(a.ready())
        self.assertTrue(all(len(data) <= dtls.DEFAULT_MTU for _side, data in wire.delivered))

    def test_suite_32_when_that_is_all_the_peer_offers(self) -> None:
        a, b, wire = pair(self.clock, b_suites=(AES_CM_128_HMAC_SHA1_32,))
        self.start(a, b)
        wire.pump()
        self.assertEqual((a.suite, b.suite), (AES_CM_128_HMAC_SHA1_32, AES_CM_128_HMAC_SHA1_32))
        round_trip(self, a, b)
        self.assertEqual(len(a.protect_rtp(rtp(9)) or b""), 12 + 160 + 4)

    def test_srtp_failures_counted_after_handshake(self) -> None:
        a, b, wire = pair(self.clock)
        self.start(a, b)
        wire.pump()
        packet = a.protect_rtp(rtp(1)) or b""
        self.assertIsNotNone(b.unprotect_rtp(packet))
        self.assertIsNone(b.unprotect_rtp(packet))
        tampered = bytearray(a.protect_rtp(rtp(2)) or b"")
        tampered[30] ^= 4
        self.assertIsNone(b.unprotect_rtp(bytes(tampered)))
        self.assertEqual((b.replay_failures, b.auth_failures), (1, 1))

    def test_fingerprint_mismatch_refused_and_logged_once(self) -> None:
        events: list[dict] = []
        observer = events.append
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        wrong = CERT_B.fingerprint[:-2] + ("00" if not CERT_B.fingerprint.endswith("00") else "11")
        a = DtlsTransform("client", ("sha-256", wrong), self.clock, CERT_A)
        b = DtlsTransform("server", ("sha-256", CERT_A.fingerprint), self.clock, CERT_B)
        wire = Wire(a, b)
        a.start()
        wire.pump()
        self.clock.advance(5)
        wire.pump()
        self.assertEqual(a.state, "failed")
        self.assertFalse(a.ready())
        self.assertIn("a=fingerprint", a.failure or "")
        self.assertEqual(a.fingerprint_mismatches, 1)
        self.assertIsNone(a.protect_rtp(rtp(1)))
        failures = [e for e in events if e.get("log_namespace") == "minisip.media.dtls"
                    and "failed" in e.get("log_format", "") and e.get("role") == "client"]
        self.assertEqual(len(failures), 1)
        # More datagrams change nothing and log nothing.
        a.control(b"\x16\xfe\xfd" + bytes(10) + b"\x00\x00", ADDR_B)
        self.assertEqual(a.state, "failed")
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_server_refuses_a_client_with_the_wrong_certificate(self) -> None:
        a = DtlsTransform("client", ("sha-256", CERT_B.fingerprint), self.clock, CERT_A)
        b = DtlsTransform("server", ("sha-256", CERT_B.fingerprint), self.clock, CERT_B)  # not a's
        wire = Wire(a, b)
        a.start()
        wire.pump()
        self.assertEqual(b.state, "failed")
        self.assertEqual(b.fingerprint_mismatches, 1)
        self.assertIsNone(b.protect_rtp(rtp(1)))

    def test_other_fingerprint_hashes(self) -> None:
        a = DtlsTransform("client", ("SHA-1", dtls.fingerprint(CERT_B.certificate, "sha-1")), self.clock, CERT_A)
        b = DtlsTransform("server", ("sha-512", dtls.fingerprint(CERT_A.certificate, "sha-512")), self.clock, CERT_B)
        wire = Wire(a, b)
        a.start()
        wire.pump()
        self.assertTrue(a.ready() and b.ready())

    def test_unknown_hash_or_role_refused_at_construction(self) -> None:
        self.assertRaises(ValueError, DtlsTransform, "client", ("md5", "AA"), self.clock, CERT_A)
        self.assertRaises(ValueError, DtlsTransform, "both", ("sha-256", CERT_B.fingerprint), self.clock, CERT_A)


class RetransmissionTests(SynchronousTestCase):
    skip = None if DTLS_AVAILABLE else NO_DTLS
    def setUp(self) -> None:
        self.clock = Clock()

    def test_lost_client_hello_is_resent_after_a_second(self) -> None:
        a, b, wire = pair(self.clock)
        a.start()
        lost = wire.to_b.pop(0)
        self.assertTrue(is_client_hello(lost))
        wire.pump()
        self.assertEqual(b.state, "new")
        self.clock.advance(0.9)
        self.assertEqual(wire.to_b, [])
        self.clock.advance(0.1)
        self.assertEqual(wire.to_b, [lost])
        self.assertEqual(a.retransmissions, 1)
        wire.pump()
        self.assertTrue(a.ready() and b.ready())
        round_trip(self, a, b)

    def test_lost_server_flight_is_resent(self) -> None:
        a, b, wire = pair(self.clock)
        a.start()
        lost = {"done": False}

        def drop_first_server_flight(side: str, data: bytes) -> bool:
            if side == "a" and not lost["done"]:
                lost["done"] = True
                return True
            return False

        wire.pump(drop_first_server_flight)
        self.assertFalse(a.ready())
        self.clock.advance(1)
        wire.pump()
        self.assertTrue(a.ready() and b.ready(), (a.failure, b.failure))
        round_trip(self, a, b)

    def test_lost_final_flight_is_resent_when_the_client_retransmits(self) -> None:
        a, b, wire = pair(self.clock)
        a.start()
        # Deliver everything except the server's last flight (after which the server is ready).
        while wire.to_a or wire.to_b:
            while wire.to_b:
                wire.to_a.extend(b.control(wire.to_b.pop(0), ADDR_A)[0])
            if b.ready():
                wire.to_a.clear()
                break
            while wire.to_a:
                wire.to_b.extend(a.control(wire.to_a.pop(0), ADDR_B)[0])
        self.assertTrue(b.ready())
        self.assertFalse(a.ready())
        self.clock.advance(1)  # the client resends its flight; the server answers with its final one
        wire.pump()
        self.assertTrue(a.ready(), a.failure)
        self.assertEqual((a.retransmissions, b.final_flight_resends), (1, 1))
        round_trip(self, a, b)

    def test_client_does_not_answer_a_repeated_final_flight(self) -> None:
        a, b, wire = pair(self.clock)
        a.start()
        wire.pump()
        final = [data for side, data in wire.delivered if side == "a"][-1]
        self.assertEqual(a.control(final, ADDR_B), ([], False))
        self.assertTrue(a.ready())

    def test_backoff_and_give_up(self) -> None:
        a = DtlsTransform("client", ("sha-256", CERT_B.fingerprint), self.clock, CERT_A)
        sent_at: list[float] = []
        a.attach(lambda data: sent_at.append(self.clock.seconds()))
        a.start()
        for _ in range(40):
            self.clock.advance(1)
        self.assertEqual(sent_at, [0.0, 1.0, 3.0, 7.0, 15.0])
        self.assertEqual(a.state, "failed")
        self.assertIn("timed out", a.failure or "")
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_close_stops_timers_and_is_idempotent(self) -> None:
        a, b, wire = pair(self.clock)
        a.start()
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        a.close()
        a.close()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(a.state, "closed")
        self.assertEqual(a.control(wire.to_b[0], ADDR_B), ([], False))

    def test_closed_after_handshake_drops_keys(self) -> None:
        a, b, wire = pair(self.clock)
        a.start()
        wire.pump()
        packet = a.protect_rtp(rtp(1)) or b""
        b.unprotect_rtp(packet)
        b.unprotect_rtp(packet)
        b.close()
        self.assertFalse(b.ready())
        self.assertIsNone(b.unprotect_rtp(a.protect_rtp(rtp(2)) or b""))
        self.assertIsNone(b.protect_rtp(rtp(3)))
        self.assertEqual(b.replay_failures, 1)  # statistics read at call end survive close()


class RobustnessTests(SynchronousTestCase):
    skip = None if DTLS_AVAILABLE else NO_DTLS
    def setUp(self) -> None:
        self.clock = Clock()

    GARBAGE = (
        b"",
        b"\x16",
        b"\x16\xfe\xfd\x00\x00",  # a record header cut short
        b"\x16\xfe\xfd" + bytes(8) + b"\x01\x00" + b"x" * 10,  # length past the end
        b"\x17\x03\x03" + bytes(20),  # TLS, not DTLS
        b"\x40" + bytes(50),
        b"\x80\x00" + bytes(30),  # RTP is not for control
        b"\xff" * 40,
        b"\x00\x01\x00\x00" + bytes(16),  # STUN without ICE configured
    )

    def test_garbage_is_harmless_before_during_and_after(self) -> None:
        a, b, wire = pair(self.clock)
        for junk in self.GARBAGE:
            self.assertEqual(b.control(junk, ADDR_A), ([], False))
        self.assertEqual(b.state, "new")
        a.start()
        wire.to_b.extend(self.GARBAGE)
        wire.pump()
        self.assertTrue(a.ready() and b.ready(), (a.failure, b.failure))
        for junk in self.GARBAGE:
            self.assertEqual(a.control(junk, ADDR_B), ([], False))
            self.assertEqual(b.control(junk, ADDR_A), ([], False))
        self.assertTrue(a.ready() and b.ready())
        round_trip(self, a, b)

    def test_stray_client_hello_after_handshake_keeps_keys(self) -> None:
        a, b, wire = pair(self.clock)
        a.start()
        wire.pump()
        before = b.protect_rtp(rtp(1))
        intruder = DtlsTransform("client", ("sha-256", CERT_B.fingerprint), self.clock, CERT_A)
        hellos: list[bytes] = []
        intruder.attach(hellos.append)
        intruder.start()
        self.assertTrue(is_client_hello(hellos[0]))
        replies, proven = b.control(hellos[0], ("127.0.0.2", 9999))
        self.assertEqual((replies, proven), ([], False))
        # The client's own repeated hello (say, a phone restarting its side) changes nothing either.
        first_hello = next(data for side, data in wire.delivered if side == "b" and is_client_hello(data))
        b.control(first_hello, ADDR_A)
        self.assertTrue(b.ready())
        self.assertEqual(a.unprotect_rtp(before or b""), rtp(1))
        round_trip(self, a, b, 2)
        intruder.close()

    def test_client_ignores_dtls_before_start(self) -> None:
        a, b, _wire = pair(self.clock)
        self.assertEqual(a.control(b"\x16\xfe\xfd" + bytes(8) + b"\x00\x00", ADDR_B), ([], False))
        self.assertEqual(a.state, "new")

    def test_stun_and_dtls_on_one_port(self) -> None:
        ice = stun.IceLite("ufrag", "icepasswordicepassword", "peer")
        a = DtlsTransform("client", ("sha-256", CERT_B.fingerprint), self.clock, CERT_A)
        b = DtlsTransform("server", ("sha-256", CERT_A.fingerprint), self.clock, CERT_B, ice=ice)
        wire = Wire(a, b)
        check = stun.serialize(
            stun.StunMessage(stun.BINDING, stun.CLASS_REQUEST, b"\x07" * 12)
            .with_attribute(stun.USERNAME, "ufrag:peer")
            .with_attribute(stun.USE_CANDIDATE, True),
            b"icepasswordicepassword",
        )
        replies, proven = b.control(check, ADDR_A)
        self.assertTrue(proven)
        self.assertEqual(stun.parse(replies[0]).get(stun.XOR_MAPPED_ADDRESS), ADDR_A)
        self.assertEqual(b.control(check[:-4] + b"\x00\x00\x00\x00", ADDR_A), ([], False))
        a.start()
        wire.pump()
        self.assertTrue(a.ready() and b.ready())
        self.assertTrue(ice.nominated)


class SetupAndCertificateTests(SynchronousTestCase):
    skip = None if DTLS_AVAILABLE else NO_DTLS
    def test_role_selection_table(self) -> None:
        """RFC 5763 section 5 with RFC 4145 defaults for a missing a=setup."""
        table = {
            ("actpass", True): ("active", "client"),
            ("active", True): ("passive", "server"),
            ("passive", True): ("active", "client"),
            (None, True): ("passive", "server"),
            ("ACTPASS", True): ("active", "client"),
            ("active", False): ("actpass", "server"),
            ("passive", False): ("actpass", "client"),
            (None, False): ("actpass", "client"),
        }
        for (remote, answerer), expected in table.items():
            self.assertEqual(choose_setup(remote, answerer), expected, (remote, answerer))

    def test_unusable_setup_refused(self) -> None:
        for remote, answerer in (("holdconn", True), ("actpass", False), ("holdconn", False), ("sideways", True)):
            self.assertRaises(SetupError, choose_setup, remote, answerer)

    def test_certificate_is_ecdsa_p256_self_signed(self) -> None:
        certificate = CERT_A.certificate
        self.assertIsInstance(CERT_A.key, ec.EllipticCurvePrivateKey)
        self.assertEqual(CERT_A.key.curve.name, "secp256r1")
        self.assertEqual(certificate.issuer, certificate.subject)
        der = certificate.public_bytes(serialization.Encoding.DER)
        self.assertRegex(CERT_A.fingerprint, FINGERPRINT_RE)
        self.assertEqual(CERT_A.fingerprint.replace(":", "").lower(), hashlib.sha256(der).hexdigest())

    def test_local_certificate_made_once_and_renewed_before_expiry(self) -> None:
        self.patch(dtls, "_certificate", None)
        now = datetime.datetime.now(datetime.timezone.utc)
        first = dtls.local_certificate(now)
        self.assertIs(dtls.local_certificate(now + datetime.timedelta(days=1)), first)
        later = dtls.local_certificate(now + datetime.timedelta(days=25))
        self.assertIsNot(later, first)
        self.assertNotEqual(later.fingerprint, first.fingerprint)

    def test_parse_fingerprint(self) -> None:
        self.assertEqual(parse_fingerprint("a=fingerprint:SHA-256 " + CERT_A.fingerprint.lower()),
                         ("sha-256", CERT_A.fingerprint))
        for bad in ("sha-256", "md5 AA:BB", "sha-256 AA:BB", "sha-256 " + "ZZ:" * 31 + "ZZ", "sha-1 AA BB"):
            self.assertRaises(ValueError, parse_fingerprint, bad)
