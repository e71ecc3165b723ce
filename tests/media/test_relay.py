"""The relay on a Clock with fake UDP ports: bridging, strict latching, RTCP, re-bridge, pool, timeouts."""

from __future__ import annotations

import random
from typing import Any, Callable

from twisted.internet.error import CannotListenError
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from minisip.media.interfaces import IMediaTransform
from minisip.media.relay import MediaRelay, PlainTransform, PoolExhausted, latch_any_first_default
from minisip.media.rtp import SequenceTracker
from tests.media.test_rtp import receiver_report, report_block, rtp_packet

ADDRESS = "192.0.2.1"
PHONE_A = ("198.51.100.10", 4000)
PHONE_B = ("198.51.100.20", 5000)
SPOOFER = ("203.0.113.66", 4000)


class FakePort:
    """A bound UDP port that records what is written to it."""

    def __init__(self, net: FakeNet, port: int, protocol: Any) -> None:
        self.net = net
        self.number = port
        self.protocol = protocol
        self.sent: list[tuple[bytes, tuple[str, int]]] = []
        self.stopped = False

    def write(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sent.append((data, addr))

    def stopListening(self) -> None:
        self.stopped = True
        del self.net.ports[self.number]


class FakeNet:
    """``listen_udp`` for the relay: ports in ``refused`` fail to bind as the OS would refuse them."""

    def __init__(self) -> None:
        self.ports: dict[int, FakePort] = {}
        self.refused: set[int] = set()

    def listen_udp(self, port: int, protocol: Any, interface: str) -> FakePort:
        if port in self.refused or port in self.ports:
            raise CannotListenError(interface, port, OSError(98, "Address already in use"))
        fake = self.ports[port] = FakePort(self, port, protocol)
        protocol.makeConnection(fake)
        return fake

    def deliver(self, port: int, data: bytes, src: tuple[str, int]) -> None:
        self.ports[port].protocol.datagramReceived(data, src)

    def take(self, port: int) -> list[tuple[bytes, tuple[str, int]]]:
        sent, self.ports[port].sent = self.ports[port].sent, []
        return sent


@implementer(IMediaTransform)
class FakeSecure:
    """A 'secure' transform: wire packets carry a b"!K" tag that only the key holder adds."""

    secure = True

    def __init__(self, proven_control: bool = False) -> None:
        self.auth_failures = 0
        self.replay_failures = 0
        self.proven_control = proven_control
        self.sent: Callable[[bytes], None] | None = None
        self.started = self.closed = False

    def attach(self, send: Callable[[bytes], None]) -> None:
        self.sent = send

    def start(self) -> None:
        self.started = True

    def ready(self) -> bool:
        return True

    def control(self, data: bytes, addr: tuple[str, int]) -> tuple[list[bytes], bool]:
        return [b"\x01\x01reply"], self.proven_control

    def _unprotect(self, data: bytes) -> bytes | None:
        if not data.endswith(b"!K"):
            self.auth_failures += 1
            return None
        return data[:-2]

    def unprotect_rtp(self, data: bytes) -> bytes | None:
        return self._unprotect(data)

    def unprotect_rtcp(self, data: bytes) -> bytes | None:
        return self._unprotect(data)

    def protect_rtp(self, data: bytes) -> bytes | None:
        return data + b"!K"

    def protect_rtcp(self, data: bytes) -> bytes | None:
        return data + b"!K"

    def close(self) -> None:
        self.closed = True


class RelayTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.net = FakeNet()
        self.timeouts: list[str] = []
        self.relay = MediaRelay(None, ADDRESS, (20000, 20099), clock=self.clock, timeout=60,
                                on_media_timeout=self.timeouts.append, listen_udp=self.net.listen_udp)

    def call(self, call_id: str = "c1", rtcp_mux: bool = False, bridge: bool = True) -> tuple[Any, Any]:
        a = self.relay.open_endpoint(call_id, "a", rtcp_mux=rtcp_mux)
        b = self.relay.open_endpoint(call_id, "b", rtcp_mux=rtcp_mux)
        a.set_remote(PHONE_A)
        b.set_remote(PHONE_B)
        if bridge:
            self.relay.bridge(a, b)
        return a, b


class BridgeTests(RelayTestCase):
    def test_transforms_provide_the_interface(self) -> None:
        verifyObject(IMediaTransform, PlainTransform())
        verifyObject(IMediaTransform, FakeSecure())

    def test_local_addresses(self) -> None:
        a, b = self.call()
        self.assertEqual((a.local, b.local), ((ADDRESS, 20000, 20001), (ADDRESS, 20002, 20003)))
        self.assertEqual(sorted(self.net.ports), [20000, 20001, 20002, 20003])

    def test_relays_both_ways(self) -> None:
        a, b = self.call()
        self.net.deliver(20000, rtp_packet(1), PHONE_A)
        self.assertEqual(self.net.take(20002), [(rtp_packet(1), PHONE_B)])
        self.net.deliver(20002, rtp_packet(7, ssrc=9), PHONE_B)
        self.assertEqual(self.net.take(20000), [(rtp_packet(7, ssrc=9), PHONE_A)])
        self.assertEqual((a.packets_in, a.packets_out, b.packets_in, b.packets_out), (1, 1, 1, 1))
        self.assertEqual((a.bytes_in, b.bytes_out), (172, 172))

    def test_sends_to_the_sdp_address_until_latched(self) -> None:
        a, b = self.call()
        self.net.deliver(20000, rtp_packet(1), PHONE_A)
        self.assertEqual(self.net.take(20002), [(rtp_packet(1), PHONE_B)])
        self.assertIsNone(b.latched_rtp)

    def test_unbridged_packets_are_counted_and_dropped(self) -> None:
        a, b = self.call(bridge=False)
        self.net.deliver(20000, rtp_packet(1), PHONE_A)
        self.assertEqual((a.packets_in, a.dropped_unbridged, self.net.take(20002)), (1, 1, []))

    def test_unknown_peer_address_drops(self) -> None:
        a = self.relay.open_endpoint("c1", "a")
        b = self.relay.open_endpoint("c1", "b")
        a.set_remote(PHONE_A)
        self.relay.bridge(a, b)
        self.net.deliver(20000, rtp_packet(1), PHONE_A)
        self.assertEqual((a.dropped_unbridged, self.net.take(20002)), (1, []))

    def test_rebridge_keeps_latches_and_switches_the_peer(self) -> None:
        """A re-INVITE (transfer) bridges A to a new endpoint C; B is cut off, nothing A sends is lost."""
        a, b = self.call()
        self.net.deliver(20000, rtp_packet(1), PHONE_A)
        c = self.relay.open_endpoint("c1", "c")
        c.set_remote(("198.51.100.30", 6000))
        self.relay.bridge(a, c)
        self.assertIsNone(b.peer)
        self.net.deliver(20000, rtp_packet(2), PHONE_A)
        self.assertEqual(self.net.take(20004), [(rtp_packet(2), ("198.51.100.30", 6000))])
        self.assertEqual(self.net.take(20002), [(rtp_packet(1), PHONE_B)])
        self.assertEqual(a.latched_rtp, PHONE_A)
        self.relay.bridge(a, c)
        self.assertIs(a.peer, c)
        self.net.deliver(20002, rtp_packet(1, ssrc=5), PHONE_B)
        self.assertEqual((b.dropped_unbridged, self.net.take(20000)), (1, []))

    def test_unbridge_and_bad_bridges(self) -> None:
        a, b = self.call()
        self.relay.unbridge(a)
        self.assertEqual((a.peer, b.peer), (None, None))
        self.assertRaises(ValueError, self.relay.bridge, a, a)
        b.close()
        self.assertRaises(ValueError, self.relay.bridge, a, b)


class LatchingTests(RelayTestCase):
    def test_spoof_after_latch_is_dropped_counted_never_latched(self) -> None:
        a, b = self.call()
        self.net.deliver(20000, rtp_packet(1), PHONE_A)
        self.net.take(20002)
        for seq in range(2, 12):
            self.net.deliver(20000, rtp_packet(seq, ssrc=666), SPOOFER)
        self.assertEqual((a.dropped_spoofed, a.latched_rtp, self.net.take(20002)), (10, PHONE_A, []))
        self.net.deliver(20002, rtp_packet(1), PHONE_B)
        self.assertEqual(self.net.take(20000), [(rtp_packet(1), PHONE_A)], "B's audio still goes to A")
        self.assertEqual(self.relay.stats("c1")[0]["dropped_spoofed"], 10)

    def test_plain_leg_latches_only_to_its_sdp_address(self) -> None:
        """Before A's first packet, a spoofer racing it from another address is refused."""
        a, b = self.call()
        self.net.deliver(20000, rtp_packet(1), SPOOFER)
        self.assertEqual((a.latched_rtp, a.dropped_spoofed, self.net.take(20002)), (None, 1, []))
        self.net.deliver(20000, rtp_packet(2), PHONE_A)
        self.assertEqual(a.latched_rtp, PHONE_A)

    def test_latch_any_first_behind_nat(self) -> None:
        a, b = self.call()
        a.set_remote(("10.0.0.5", 4000), latch_any_first=True)
        nat = ("203.0.113.9", 61000)
        self.net.deliver(20000, rtp_packet(1), nat)
        self.assertEqual(a.latched_rtp, nat)
        self.net.deliver(20002, rtp_packet(1), PHONE_B)
        self.assertEqual(self.net.take(20000), [(rtp_packet(1), nat)])
        self.net.deliver(20000, rtp_packet(2), SPOOFER)
        self.assertEqual((a.latched_rtp, a.dropped_spoofed), (nat, 1))
        self.assertTrue(self.relay.stats("c1")[0]["latch_any_first"])

    def test_latch_any_first_default(self) -> None:
        self.assertTrue(latch_any_first_default("10.0.0.5", "203.0.113.9"))
        self.assertFalse(latch_any_first_default("203.0.113.9", "203.0.113.9"))
        self.assertFalse(latch_any_first_default(None, "203.0.113.9"))

    def test_new_sdp_address_drops_the_latch_same_keeps_it(self) -> None:
        a, b = self.call()
        self.net.deliver(20000, rtp_packet(1), PHONE_A)
        a.set_remote(PHONE_A)
        self.assertEqual(a.latched_rtp, PHONE_A)
        moved = ("198.51.100.11", 4100)
        a.set_remote(moved)
        self.assertIsNone(a.latched_rtp)
        self.net.deliver(20000, rtp_packet(2), PHONE_A)
        self.assertEqual(a.dropped_spoofed, 1)
        self.net.deliver(20000, rtp_packet(3), moved)
        self.assertEqual(a.latched_rtp, moved)

    def test_ipv6_sources_match_their_sdp_address(self) -> None:
        """Twisted reports IPv6 sources as (host, port, flowinfo, scope): they still match the SDP's."""
        a, b = self.call()
        a.set_remote(("2001:db8::10", 4000))
        self.net.deliver(20000, rtp_packet(1), ("2001:db8::10", 4000, 0, 0))
        self.assertEqual(a.latched_rtp, ("2001:db8::10", 4000, 0, 0))
        self.assertEqual(self.net.take(20002), [(rtp_packet(1), PHONE_B)])
        self.assertEqual(self.relay.stats("c1")[0]["latched_rtp"], ["2001:db8::10", 4000])

    def test_rtcp_address_defaults(self) -> None:
        a = self.relay.open_endpoint("c1", "a")
        m = self.relay.open_endpoint("c1", "m", rtcp_mux=True)
        a.set_remote(PHONE_A)
        m.set_remote(PHONE_A)
        self.assertEqual((a.remote_rtcp, m.remote_rtcp), ((PHONE_A[0], PHONE_A[1] + 1), PHONE_A))
        a.set_remote(None)
        self.assertEqual((a.remote_rtp, a.remote_rtcp, a.rtp_destination, a.rtcp_destination), (None, None, None, None))

    def test_bad_addresses_are_refused(self) -> None:
        a, b = self.call()
        for bad in [("phone.example", 4000), ("198.51.100.1", 0), ("198.51.100.1", "4000"), ("x",)]:
            self.assertRaises(ValueError, a.set_remote, bad)

    def test_secure_leg_latches_to_the_first_packet_that_unprotects(self) -> None:
        a, b = self.call()
        secure = FakeSecure()
        a.set_transform(secure)
        self.assertTrue(secure.started)
        self.net.deliver(20000, rtp_packet(1), SPOOFER)
        self.assertEqual((a.latched_rtp, a.dropped_unprotect, secure.auth_failures), (None, 1, 1))
        nat = ("203.0.113.9", 61000)
        self.net.deliver(20000, rtp_packet(2) + b"!K", nat)
        self.assertEqual(a.latched_rtp, nat, "an authenticated packet latches, whatever its address")
        self.assertEqual(self.net.take(20002), [(rtp_packet(2), PHONE_B)])
        self.net.deliver(20000, rtp_packet(3) + b"!K", SPOOFER)
        self.assertEqual((a.latched_rtp, a.dropped_spoofed), (nat, 1))
        self.net.deliver(20000, rtp_packet(4) + b"bad", nat)
        self.assertEqual((a.dropped_unprotect, secure.auth_failures), (2, 2))
        self.net.deliver(20002, rtp_packet(9), PHONE_B)
        self.assertEqual(self.net.take(20000), [(rtp_packet(9) + b"!K", nat)], "protected towards A")
        stats = self.relay.stats("c1")[0]
        self.assertEqual((stats["secure"], stats["srtp_auth_failures"], stats["srtp_replay_failures"]), (True, 2, 0))

    def test_proven_stun_latches_and_relatches(self) -> None:
        a, b = self.call(rtcp_mux=True)
        a.set_transform(FakeSecure(proven_control=True))
        stun = b"\x00\x01\x00\x00" + b"\x21\x12\xa4\x42" + b"\0" * 12
        self.net.deliver(20000, stun, SPOOFER)
        self.assertEqual(self.net.take(20000), [(b"\x01\x01reply", SPOOFER)])
        self.assertEqual((a.latched_rtp, a.control_in), (SPOOFER, 1))
        self.net.deliver(20000, stun, PHONE_A)
        self.assertEqual(a.latched_rtp, PHONE_A)

    def test_unproven_control_does_not_latch(self) -> None:
        a, b = self.call()
        a.set_transform(FakeSecure())
        self.net.deliver(20000, b"\x16\xfe\xfd" + b"\0" * 20, SPOOFER)
        self.assertEqual((a.latched_rtp, self.net.take(20000)), (None, [(b"\x01\x01reply", SPOOFER)]))

    def test_transform_sends_to_the_current_address(self) -> None:
        a, b = self.call()
        secure = FakeSecure()
        a.set_transform(secure)
        assert secure.sent is not None
        secure.sent(b"\x16hello")
        self.assertEqual(self.net.take(20000), [(b"\x16hello", PHONE_A)])
        a.close()
        secure.sent(b"\x16late")
        self.assertEqual(self.net.ports.get(20000), None)

    def test_set_transform_closes_the_old_one(self) -> None:
        a, b = self.call()
        first, second = FakeSecure(), FakeSecure()
        a.set_transform(first)
        a.set_transform(second)
        self.assertTrue(first.closed and not second.closed)
        a.close()
        self.assertTrue(second.closed)
        self.assertRaises(ValueError, a.set_transform, FakeSecure())


class RtcpTests(RelayTestCase):
    def rr(self) -> bytes:
        return receiver_report(0x1234, report_block(0x9999, 64, 5, 100, 80))

    def test_rtcp_on_its_own_port(self) -> None:
        a, b = self.call()
        a.set_clock_rate(8000)
        self.net.deliver(20001, self.rr(), (PHONE_A[0], PHONE_A[1] + 1))
        self.assertEqual(self.net.take(20003), [(self.rr(), (PHONE_B[0], PHONE_B[1] + 1))])
        stats = self.relay.stats("c1")
        self.assertEqual((stats[0]["rtcp_in"], stats[1]["rtcp_out"], stats[0]["packets_in"]), (1, 1, 0))
        self.assertEqual((stats[0]["reported_fraction_lost"], stats[0]["reported_cumulative_lost"],
                          stats[0]["reported_jitter"], stats[0]["reported_jitter_ms"]), (0.25, 5, 80, 10.0))
        self.assertIsNone(stats[1]["reported_jitter"])

    def test_rtcp_from_a_spoofer_is_dropped(self) -> None:
        a, b = self.call()
        self.net.deliver(20001, self.rr(), SPOOFER)
        self.assertEqual((a.dropped_spoofed, a.rtcp_in, self.net.take(20003)), (1, 0, []))

    def test_rtcp_mux_both_sides(self) -> None:
        a, b = self.call(rtcp_mux=True)
        self.assertEqual((a.local, sorted(self.net.ports)), ((ADDRESS, 20000, 20000), [20000, 20002]))
        self.net.deliver(20000, self.rr(), PHONE_A)
        self.net.deliver(20000, rtp_packet(1), PHONE_A)
        self.assertEqual(self.net.take(20002), [(self.rr(), PHONE_B), (rtp_packet(1), PHONE_B)])
        self.assertEqual((a.rtcp_in, a.packets_in, a.latched_rtp), (1, 1, PHONE_A))

    def test_muxed_to_separate(self) -> None:
        a = self.relay.open_endpoint("c1", "a", rtcp_mux=True)
        b = self.relay.open_endpoint("c1", "b")
        a.set_remote(PHONE_A)
        b.set_remote(PHONE_B, ("198.51.100.21", 7000))
        self.relay.bridge(a, b)
        self.net.deliver(20000, self.rr(), PHONE_A)
        self.assertEqual(self.net.take(20003), [(self.rr(), ("198.51.100.21", 7000))])
        self.net.deliver(20003, self.rr(), ("198.51.100.21", 7000))
        self.assertEqual(self.net.take(20000), [(self.rr(), PHONE_A)])

    def test_mux_negotiated_later(self) -> None:
        """Offered rtcp-mux, answered with it: RTCP then goes over the RTP port."""
        a, b = self.call()
        b.set_rtcp_mux(True)
        self.net.deliver(20001, self.rr(), (PHONE_A[0], PHONE_A[1] + 1))
        self.assertEqual(self.net.take(20002), [(self.rr(), PHONE_B)])

    def test_secure_rtcp_is_reprotected(self) -> None:
        a, b = self.call()
        b.set_transform(FakeSecure())
        self.net.deliver(20001, self.rr(), (PHONE_A[0], PHONE_A[1] + 1))
        self.assertEqual(self.net.take(20003), [(self.rr() + b"!K", (PHONE_B[0], PHONE_B[1] + 1))])

    def test_malformed_rtcp_is_still_relayed(self) -> None:
        a, b = self.call()
        bad = b"\x81\xc9\x00\x01" + b"\0" * 4
        self.net.deliver(20001, bad, (PHONE_A[0], PHONE_A[1] + 1))
        self.assertEqual(len(self.net.take(20003)), 1)
        self.assertIsNone(a.reported)


class RobustnessTests(RelayTestCase):
    def test_garbage_is_counted_never_raises_never_sent(self) -> None:
        a, b = self.call()
        rng = random.Random(1)
        garbage = [b"", b"\x80", b"\x80\x00", b"\x80\x00\x00", b"\xff" * 40, b"\x10abc", b"\x80\xc9\x00"]
        garbage += [bytes([0x80]) + bytes(rng.randrange(256) for _ in range(rng.randrange(7))) for _ in range(200)]
        garbage += [bytes([rng.choice([0xFF, 0x41, 0xC0])]) + bytes(rng.randrange(256) for _ in range(rng.randrange(40)))
                    for _ in range(200)]
        for data in garbage:
            self.net.deliver(20000, data, PHONE_A)
            self.net.deliver(20001, data, PHONE_A)
        self.assertEqual(a.dropped_malformed, 2 * len(garbage))
        anything = [bytes(rng.randrange(256) for _ in range(rng.randrange(200))) for _ in range(300)]
        for data in anything:
            self.net.deliver(20000, data, SPOOFER)
            self.net.deliver(20001, data, SPOOFER)
        self.assertEqual(self.net.take(20002) + self.net.take(20003), [])
        self.assertEqual((a.packets_in, a.rtcp_in, a.latched_rtp, a.latched_rtcp), (0, 0, None, None))

    def test_a_transform_that_raises_is_counted_and_logged_once(self) -> None:
        a, b = self.call()
        secure = FakeSecure()
        secure.unprotect_rtp = lambda data: 1 // 0  # type: ignore[method-assign]
        a.set_transform(secure)
        self.net.deliver(20000, rtp_packet(1) + b"!K", PHONE_A)
        self.net.deliver(20000, rtp_packet(2) + b"!K", PHONE_A)
        self.assertEqual(a.errors, 2)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_send_errors_are_counted(self) -> None:
        a, b = self.call()

        def refuse(data: bytes, addr: tuple[str, int]) -> None:
            raise OSError(101, "Network is unreachable")

        self.net.ports[20002].write = refuse  # type: ignore[method-assign]
        b2 = self.relay.open_endpoint("c2", "b")
        self.assertIsNot(b2, b)
        b._rtp_write = refuse
        self.net.deliver(20000, rtp_packet(1), PHONE_A)
        self.assertEqual((a.send_errors, b.packets_out), (1, 0))

    def test_datagrams_after_close_are_ignored(self) -> None:
        a, b = self.call()
        protocol = self.net.ports[20000].protocol
        a.close()
        protocol.datagramReceived(rtp_packet(1), PHONE_A)
        self.assertEqual((a.packets_in, b.packets_out), (0, 0))


class PoolTests(RelayTestCase):
    def test_two_hundred_calls_leave_the_pool_full(self) -> None:
        for i in range(200):
            call_id = f"call-{i}"
            a, b = self.call(call_id, rtcp_mux=bool(i % 2))
            self.net.deliver(a.local[1], rtp_packet(i), PHONE_A)
            if i % 3 == 0:
                a.close()
            final = self.relay.close_call(call_id)
            self.assertEqual([s["closed"] for s in final], [True, True])
        self.assertEqual((self.relay.pool.free, self.relay.pool.in_use, self.net.ports), (50, 0, {}))
        self.assertEqual(self.relay.call_count, 0)
        self.assertEqual(self.relay.close_call("call-0"), [])

    def test_exhaustion_and_refused_ports(self) -> None:
        self.net.refused = {20000, 20005}
        a = self.relay.open_endpoint("c1", "a")
        self.assertEqual(a.local[1], 20002)
        b = self.relay.open_endpoint("c1", "b")
        self.assertEqual(b.local[1], 20006)
        for i in range(46):
            self.relay.open_endpoint("c2", str(i))
        self.assertEqual(self.relay.pool.free, 2)
        self.assertRaises(PoolExhausted, self.relay.open_endpoint, "c3", "a")
        self.relay.close()
        self.assertEqual((self.relay.pool.in_use, self.net.ports), (0, {}))

    def test_port_range_as_text(self) -> None:
        relay = MediaRelay(None, ADDRESS, "30000-30009", clock=self.clock, listen_udp=self.net.listen_udp)
        self.assertEqual(relay.pool.size, 5)


class StatsTests(RelayTestCase):
    def test_sequence_loss_counted_as_the_tracker_counts(self) -> None:
        """The relay takes the next packet in order in one step of its own: it counts what
        SequenceTracker.update counts, also from a first packet numbered 0 and across a wrap, a gap,
        reordering, duplicates and a new source."""
        cases = [[0, 1, 2, 4], [65534, 65535, 0, 1, 3], [5, 7, 6, 8, 8, 9], [10, 11, 40000, 40001, 40003],
                 [65535, 0], [0, 65535, 0, 1]]
        for i, seqs in enumerate(cases):
            a, _ = self.call(f"s{i}")
            for seq in seqs:
                self.net.deliver(a.local[1], rtp_packet(seq), PHONE_A)
            tracker = SequenceTracker()
            for seq in seqs:
                tracker.update(seq)
            first = self.relay.stats(f"s{i}")[0]
            self.assertEqual((first["packets_in"], first["expected"], first["lost"]),
                             (len(seqs), tracker.expected, tracker.lost), seqs)

    def test_counters_and_sequence_loss(self) -> None:
        a, b = self.call()
        for seq in [1, 2, 3, 6, 7]:
            self.net.deliver(20000, rtp_packet(seq), PHONE_A)
        self.net.deliver(20000, rtp_packet(8), SPOOFER)
        first, second = self.relay.stats("c1")
        self.assertEqual(first["label"], "a")
        self.assertEqual((first["packets_in"], first["bytes_in"], first["expected"], first["lost"]), (5, 860, 7, 2))
        self.assertEqual((second["packets_out"], second["bytes_out"]), (5, 860))
        self.assertEqual(first["dropped_spoofed"], 1)
        self.assertEqual(first["local"], [ADDRESS, 20000, 20001])
        self.assertEqual((first["remote_rtp"], first["latched_rtp"]), (list(PHONE_A), list(PHONE_A)))
        self.assertEqual(self.relay.stats("nope"), [])


class TimeoutTests(RelayTestCase):
    def test_silent_answered_call_is_reported_once(self) -> None:
        self.call("c1")
        self.relay.arm_timeout("c1")
        self.clock.advance(59)
        self.assertEqual(self.timeouts, [])
        self.clock.advance(1)
        self.assertEqual(self.timeouts, ["c1"])
        self.clock.advance(300)
        self.assertEqual(self.timeouts, ["c1"])
        self.assertEqual(self.clock.getDelayedCalls(), [], "the sweep stops with nothing armed")

    def test_media_keeps_a_call_alive_one_way_is_enough(self) -> None:
        a, b = self.call("c1")
        self.relay.arm_timeout("c1")
        for seq in range(100):
            self.clock.advance(1)
            self.net.deliver(20000, rtp_packet(seq), PHONE_A)
        self.assertEqual(self.timeouts, [])
        for _ in range(59):
            self.clock.advance(1)
        self.assertEqual(self.timeouts, [])
        self.clock.advance(1)
        self.clock.advance(1)
        self.assertEqual(self.timeouts, ["c1"], "reported within one sweep interval (1 s) of the deadline")

    def test_spoofed_packets_do_not_keep_a_call_alive(self) -> None:
        self.call("c1")
        self.relay.arm_timeout("c1")
        for seq in range(61):
            self.clock.advance(1)
            self.net.deliver(20000, rtp_packet(seq), SPOOFER)
        self.assertEqual(self.timeouts, ["c1"])

    def test_one_timer_for_the_relay(self) -> None:
        for i in range(20):
            self.call(f"c{i}")
            self.relay.arm_timeout(f"c{i}")
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)

    def test_unarmed_disarmed_and_closed_calls_never_time_out(self) -> None:
        self.call("ringing")
        self.call("held")
        self.call("ended")
        self.relay.arm_timeout("held")
        self.relay.arm_timeout("ended")
        self.relay.disarm_timeout("held")
        self.relay.close_call("ended")
        self.relay.arm_timeout("unknown")
        self.clock.advance(120)
        self.assertEqual(self.timeouts, [])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_timeout_zero_is_off(self) -> None:
        relay = MediaRelay(None, ADDRESS, (30000, 30009), clock=self.clock, timeout=0,
                           on_media_timeout=self.timeouts.append, listen_udp=self.net.listen_udp)
        relay.open_endpoint("c1", "a")
        relay.arm_timeout("c1")
        self.clock.advance(1000)
        self.assertEqual((self.timeouts, self.clock.getDelayedCalls()), ([], []))

    def test_a_raising_callback_is_logged(self) -> None:
        def boom(call_id: str) -> None:
            raise RuntimeError(call_id)

        self.relay.on_media_timeout = boom
        self.call("c1")
        self.relay.arm_timeout("c1")
        self.clock.advance(61)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
