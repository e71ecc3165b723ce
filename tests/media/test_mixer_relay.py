"""The relay's seam for a mixing leg: an endpoint hands received plain RTP to a sink instead of a peer,
and sends RTP made in the server through its own transform (Endpoint.set_sink, Endpoint.send_rtp)."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from minisip.media.relay import MediaRelay
from tests.media.test_relay import ADDRESS, PHONE_A, PHONE_B, SPOOFER, FakeNet, FakeSecure
from tests.media.test_rtp import rtp_packet


class SinkTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.net = FakeNet()
        self.relay = MediaRelay(None, ADDRESS, (20000, 20099), clock=self.clock, timeout=60,
                                listen_udp=self.net.listen_udp)
        self.endpoint = self.relay.open_endpoint("c1", "a")
        self.endpoint.set_remote(PHONE_A)
        self.got: list[bytes] = []
        self.endpoint.set_sink(self.got.append)
        self.port = self.endpoint.local[1]

    def test_received_rtp_goes_to_the_sink(self) -> None:
        packet = rtp_packet(seq=1)
        self.net.deliver(self.port, packet, PHONE_A)
        self.assertEqual(self.got, [packet])
        self.assertEqual(self.endpoint.packets_in, 1)
        self.assertEqual(self.endpoint.dropped_unbridged, 0)

    def test_sink_wins_over_a_bridge_and_none_returns_to_it(self) -> None:
        other = self.relay.open_endpoint("c1", "b")
        other.set_remote(PHONE_B)
        self.relay.bridge(self.endpoint, other)
        self.net.deliver(self.port, rtp_packet(seq=1), PHONE_A)
        self.assertEqual(self.net.take(other.local[1]), [])
        self.endpoint.set_sink(None)
        self.net.deliver(self.port, rtp_packet(seq=2), PHONE_A)
        self.assertEqual(self.net.take(other.local[1]), [(rtp_packet(seq=2), PHONE_B)])

    def test_spoofed_packets_never_reach_the_sink(self) -> None:
        self.net.deliver(self.port, rtp_packet(seq=1), PHONE_A)
        self.net.deliver(self.port, rtp_packet(seq=2), SPOOFER)
        self.assertEqual(len(self.got), 1)
        self.assertEqual(self.endpoint.dropped_spoofed, 1)

    def test_send_rtp_to_the_latched_address(self) -> None:
        self.assertTrue(self.endpoint.send_rtp(rtp_packet(seq=9)))
        self.assertEqual(self.net.take(self.port), [(rtp_packet(seq=9), PHONE_A)])
        self.assertEqual(self.endpoint.packets_out, 1)

    def test_send_rtp_through_the_transform(self) -> None:
        self.endpoint.set_transform(FakeSecure())
        self.assertTrue(self.endpoint.send_rtp(rtp_packet(seq=9)))
        self.assertEqual(self.net.take(self.port), [(rtp_packet(seq=9) + b"!K", PHONE_A)])

    def test_send_rtp_without_an_address_or_closed(self) -> None:
        lonely = self.relay.open_endpoint("c2", "x")
        self.assertFalse(lonely.send_rtp(rtp_packet(seq=1)))
        self.assertEqual(lonely.dropped_unbridged, 1)
        self.endpoint.close()
        self.assertFalse(self.endpoint.send_rtp(rtp_packet(seq=1)))
