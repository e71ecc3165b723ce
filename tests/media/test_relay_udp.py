"""The relay on real UDP sockets on 127.0.0.1 (the reactor's listenUDP and the sockets' sendto path)."""

from __future__ import annotations

import select
import socket

from twisted.internet import defer, reactor
from twisted.internet.protocol import DatagramProtocol
from twisted.trial.unittest import TestCase

from minisip.media.relay import MediaRelay
from tests.media.test_rtp import rtp_packet


class Phone(DatagramProtocol):
    """A UDP peer that records what it receives and fires a Deferred per expected datagram."""

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.waiting: list[defer.Deferred[bytes]] = []

    def datagramReceived(self, data: bytes, addr: object) -> None:
        self.received.append(data)
        if self.waiting:
            self.waiting.pop(0).callback(data)

    def next(self) -> defer.Deferred[bytes]:
        d: defer.Deferred[bytes] = defer.Deferred()
        self.waiting.append(d)
        return d.addTimeout(5, reactor)


def free_range() -> tuple[int, int]:
    """A small port range whose first ports are free now (the pool skips any taken later)."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    low = min(port - port % 2, 65500)
    return low, low + 19


class RealSocketTests(TestCase):
    timeout = 20

    def test_relays_both_ways_over_loopback(self) -> defer.Deferred[None]:
        """With the shared epoll reader where the platform has one (Linux)."""
        # Twisted 22.4's trial does not await coroutine test methods: wrap it.
        return defer.Deferred.fromCoroutine(self.relay_both_ways(None))

    def test_relays_with_the_reactors_own_reading(self) -> defer.Deferred[None]:
        """Each port read by the reactor itself, as on platforms without epoll."""
        return defer.Deferred.fromCoroutine(self.relay_both_ways(False))

    async def relay_both_ways(self, shared_reader: bool | None) -> None:
        relay = MediaRelay(reactor, "127.0.0.1", free_range(), timeout=0, shared_reader=shared_reader)
        self.addCleanup(relay.close)
        self.assertEqual(relay._reader is not None, shared_reader is None and hasattr(select, "epoll"))
        phones = [Phone(), Phone()]
        ports = [reactor.listenUDP(0, phone, interface="127.0.0.1") for phone in phones]
        for port in ports:
            self.addCleanup(port.stopListening)
        addrs = [("127.0.0.1", port.getHost().port) for port in ports]
        a = relay.open_endpoint("c1", "a")
        b = relay.open_endpoint("c1", "b")
        a.set_remote(addrs[0])
        b.set_remote(addrs[1])
        relay.bridge(a, b)

        arrived = phones[1].next()
        ports[0].write(rtp_packet(1), ("127.0.0.1", a.local[1]))
        self.assertEqual(await arrived, rtp_packet(1))
        arrived = phones[0].next()
        ports[1].write(rtp_packet(9, ssrc=5), ("127.0.0.1", b.local[1]))
        self.assertEqual(await arrived, rtp_packet(9, ssrc=5))
        stats = relay.close_call("c1")
        self.assertEqual([(s["packets_in"], s["packets_out"]) for s in stats], [(1, 1), (1, 1)])
        self.assertEqual(relay.pool.free, relay.pool.size)
