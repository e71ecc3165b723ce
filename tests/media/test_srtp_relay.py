"""SRTP to SRTP through the relay: each packet is authenticated and decrypted with its leg's key and
protected again with the other leg's (in one step where libsrtp is called directly, ``recrypt_rtp``);
what a phone receives is checked with pylibsrtp sessions of its own, as a real phone would.

Every test runs twice: with libsrtp called directly (Debian 12's pylibsrtp 0.8 and PyPI's 1.x allow it)
and through pylibsrtp's ``Session`` methods (a pylibsrtp laid out differently).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from minisip.media import compat
from minisip.media import srtp as srtp_module
from minisip.media.compat import DTLS_AVAILABLE
from minisip.media.dtls import DtlsCertificate, DtlsTransform, local_certificate
from minisip.media.relay import MediaRelay
from minisip.media.srtp import SdesTransform, new_key_salt
from tests.media.test_relay import ADDRESS, PHONE_A, PHONE_B, SPOOFER, FakeNet
from tests.media.test_rtcp_relay import NO_DTLS, SdesPhone, handshake
from tests.media.test_rtp import rtp_packet


class SrtpToSrtpTests(SynchronousTestCase):
    direct = True

    def setUp(self) -> None:
        if not self.direct:
            self.patch(srtp_module, "SRTP_DIRECT", None)
        self.clock = Clock()
        self.net = FakeNet()
        self.relay = MediaRelay(None, ADDRESS, (20000, 20099), clock=self.clock, timeout=0,
                                listen_udp=self.net.listen_udp)
        self.addCleanup(self.relay.close)
        self.a = self.relay.open_endpoint("c1", "a", rtcp_mux=True)
        self.b = self.relay.open_endpoint("c1", "b", rtcp_mux=True)
        self.a.set_remote(PHONE_A)
        self.b.set_remote(PHONE_B)
        keys = [new_key_salt() for _ in range(4)]   # relay->A, A->relay, relay->B, B->relay
        self.a.set_transform(SdesTransform(keys[0], keys[1]))
        self.b.set_transform(SdesTransform(keys[2], keys[3]))
        self.relay.bridge(self.a, self.b)
        self.phone_a, self.phone_b = SdesPhone(keys[1], keys[0]), SdesPhone(keys[3], keys[2])

    def from_a(self, packet: bytes, src: tuple[str, int] = PHONE_A) -> list[tuple[bytes, Any]]:
        """Phone A's SRTP of ``packet`` into the relay; what leaves toward B."""
        self.net.deliver(self.a.local[1], self.phone_a.tx.protect(packet), src)
        return self.net.take(self.b.local[1])

    def test_path(self) -> None:
        self.assertEqual(self.a.transform.srtp.direct, self.direct and compat.SRTP_DIRECT is not None)

    def test_both_ways_with_the_other_legs_key(self) -> None:
        for seq in range(1, 30):
            ((wire, addr),) = self.from_a(rtp_packet(seq, ssrc=0xA))
            self.assertEqual(addr, PHONE_B)
            self.assertEqual(self.phone_b.rx.unprotect(wire), rtp_packet(seq, ssrc=0xA))
            self.net.deliver(self.b.local[1], self.phone_b.tx.protect(rtp_packet(seq, ssrc=0xB)), PHONE_B)
            ((wire, addr),) = self.net.take(self.a.local[1])
            self.assertEqual((addr, self.phone_a.rx.unprotect(wire)), (PHONE_A, rtp_packet(seq, ssrc=0xB)))
        a, b = self.a.stats(), self.b.stats()
        self.assertEqual((a["packets_in"], a["packets_out"], b["packets_in"], b["packets_out"]), (29, 29, 29, 29))
        self.assertEqual((a["bytes_in"], b["bytes_out"]), (29 * 182, 29 * 182))
        self.assertEqual((a["lost"], a["srtp_auth_failures"], a["dropped_unprotect"]), (0, 0, 0))

    def test_loss_counted_from_sequence_numbers(self) -> None:
        for seq in (1, 2, 4, 5):
            self.from_a(rtp_packet(seq))
        self.assertEqual((self.a.stats()["expected"], self.a.stats()["lost"]), (5, 1))

    def test_tampered_and_replayed_packets_dropped_and_counted(self) -> None:
        good = self.phone_a.tx.protect(rtp_packet(1))
        tampered = good[:40] + bytes([good[40] ^ 1]) + good[41:]
        self.net.deliver(self.a.local[1], tampered, PHONE_A)
        self.assertEqual(self.net.take(self.b.local[1]), [])
        self.net.deliver(self.a.local[1], good, PHONE_A)
        self.assertEqual(len(self.net.take(self.b.local[1])), 1)
        self.net.deliver(self.a.local[1], good, PHONE_A)   # a replay of a latched packet
        self.assertEqual(self.net.take(self.b.local[1]), [])
        stats = self.a.stats()
        self.assertEqual((stats["srtp_auth_failures"], stats["srtp_replay_failures"], stats["dropped_unprotect"],
                          stats["packets_in"]), (1, 1, 2, 1))

    def test_spoofed_source_after_latching_is_dropped(self) -> None:
        self.from_a(rtp_packet(1))
        self.assertEqual(self.from_a(rtp_packet(2), src=SPOOFER), [])
        self.assertEqual(self.a.stats()["dropped_spoofed"], 1)
        self.assertEqual(len(self.from_a(rtp_packet(3))), 1)
        self.assertEqual(self.a.stats()["latched_rtp"], list(PHONE_A))

    def test_too_long_to_protect_again_is_dropped_at_the_other_leg(self) -> None:
        self.from_a(rtp_packet(1))
        # The longest packet pylibsrtp lets the phone protect is longer than the relay may protect again.
        self.assertEqual(self.from_a(rtp_packet(2, payload=bytes(compat.SRTP_MAX_PACKET - 12 + 4))), [])
        self.assertEqual((self.a.stats()["packets_in"], self.b.stats()["dropped_not_ready"]), (2, 1))
        self.assertEqual(len(self.from_a(rtp_packet(3))), 1)

    def test_peer_without_address_counts_unbridged(self) -> None:
        self.b.set_remote(None)
        self.assertEqual(self.from_a(rtp_packet(1)), [])
        self.assertEqual((self.a.stats()["packets_in"], self.a.stats()["dropped_unbridged"]), (1, 1))

    def test_new_keys_on_a_re_offer(self) -> None:
        self.from_a(rtp_packet(1))
        new_phone_key, new_relay_key = new_key_salt(), new_key_salt()
        self.b.set_transform(SdesTransform(new_relay_key, new_phone_key))
        phone_b = SdesPhone(new_phone_key, new_relay_key)
        ((wire, _),) = self.from_a(rtp_packet(2))
        self.assertEqual(phone_b.rx.unprotect(wire), rtp_packet(2))
        self.net.deliver(self.b.local[1], self.phone_b.tx.protect(rtp_packet(9)), PHONE_B)   # the old key
        self.assertEqual(self.net.take(self.a.local[1]), [])
        self.net.deliver(self.b.local[1], phone_b.tx.protect(rtp_packet(10)), PHONE_B)
        self.assertEqual(len(self.net.take(self.a.local[1])), 1)

    def test_closed_peer_gets_nothing(self) -> None:
        self.from_a(rtp_packet(1))
        self.b.close()
        self.net.deliver(self.a.local[1], self.phone_a.tx.protect(rtp_packet(2)), PHONE_A)
        self.assertEqual((self.a.stats()["packets_in"], self.a.stats()["dropped_unbridged"]), (2, 1))
        self.assertEqual(self.a.stats()["errors"], 0)

    def test_conference_sink_gets_plain_rtp(self) -> None:
        got: list[bytes] = []
        self.a.set_sink(got.append)
        self.assertEqual(self.from_a(rtp_packet(1)), [])
        self.assertEqual(got, [rtp_packet(1)])


class SrtpToSrtpThroughSessionMethodsTests(SrtpToSrtpTests):
    direct = False


class DtlsToSdesTests(SynchronousTestCase):
    """A DTLS-SRTP leg has no keys until its handshake: then its packets are recrypted for the SDES leg."""

    skip = None if DTLS_AVAILABLE else NO_DTLS
    direct = True

    def test_after_the_handshake_both_ways(self) -> None:
        if not self.direct:
            self.patch(srtp_module, "SRTP_DIRECT", None)
        clock, net = Clock(), FakeNet()
        relay = MediaRelay(None, ADDRESS, (20000, 20099), clock=clock, timeout=0, listen_udp=net.listen_udp)
        self.addCleanup(relay.close)
        a = relay.open_endpoint("c1", "a", rtcp_mux=True)
        b = relay.open_endpoint("c1", "b", rtcp_mux=True)
        a.set_remote(PHONE_A)
        b.set_remote(PHONE_B)
        relay_key, phone_key = new_key_salt(), new_key_salt()
        a.set_transform(SdesTransform(relay_key, phone_key))
        phone_cert = DtlsCertificate.generate()
        b.set_transform(DtlsTransform("server", ("sha-256", phone_cert.fingerprint), clock))
        relay.bridge(a, b)
        sdes_phone = SdesPhone(phone_key, relay_key)
        net.deliver(a.local[1], sdes_phone.tx.protect(rtp_packet(1)), PHONE_A)   # before the keys
        self.assertEqual((net.take(b.local[1]), b.stats()["dropped_not_ready"]), ([], 1))
        dtls_phone = DtlsTransform("client", ("sha-256", local_certificate().fingerprint), clock, phone_cert)
        handshake(net, b.local[1], dtls_phone, PHONE_B)
        self.assertTrue(b.transform.ready())
        for seq in range(2, 6):
            net.deliver(a.local[1], sdes_phone.tx.protect(rtp_packet(seq)), PHONE_A)
            ((wire, _),) = net.take(b.local[1])
            self.assertEqual(dtls_phone.unprotect_rtp(wire), rtp_packet(seq))
            net.deliver(b.local[1], dtls_phone.protect_rtp(rtp_packet(seq, ssrc=7)) or b"", PHONE_B)
            ((wire, _),) = net.take(a.local[1])
            self.assertEqual(sdes_phone.rx.unprotect(wire), rtp_packet(seq, ssrc=7))
        self.assertEqual((a.stats()["packets_out"], b.stats()["packets_out"]), (4, 4))


class DtlsToSdesThroughSessionMethodsTests(DtlsToSdesTests):
    direct = False
