"""The relay on real UDP sockets on 127.0.0.1 (the reactor's listenUDP and the sockets' sendto path)."""

from __future__ import annotations

import select
import socket
from unittest import skipIf

from twisted.internet import defer, reactor
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from minisip.media.relay import MediaRelay, _Bound, _MediaPort, _SharedReader
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


class FakeReactor:
    """Just the reader registry the shared reader uses."""

    def __init__(self) -> None:
        self.readers: list[object] = []

    def addReader(self, reader: object) -> None:
        self.readers.append(reader)

    def removeReader(self, reader: object) -> None:
        self.readers.remove(reader)


class FakeTwistedPort:
    """A listening port with a real socket, as the shared reader sees a Twisted UDP port."""

    def __init__(self) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.bind(("127.0.0.1", 0))
        self.socket.setblocking(False)
        self.reading = True

    def stopReading(self) -> None:
        self.reading = False


@skipIf(not hasattr(select, "epoll"), "the shared reader is Linux's epoll; other platforms use the reactor's own")
class SharedReaderTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = FakeReactor()
        self.clock = Clock()
        self.reader = _SharedReader(self.reactor, self.clock)
        self.port = FakeTwistedPort()
        self.addCleanup(self.port.socket.close)
        self.protocol = _MediaPort()
        self.got: list[tuple[bytes, object]] = []
        self.protocol.datagramReceived = lambda data, addr: self.got.append((data, addr))  # type: ignore[method-assign]
        self.bound = _Bound(self.port, self.protocol)
        self.sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(self.sender.close)

    def send(self, data: bytes) -> None:
        self.sender.sendto(data, self.port.socket.getsockname())
        # loopback delivery is synchronous; wait for readiness without sleeping blind
        select.select([self.port.socket], [], [], 2)

    def test_takes_over_reading_and_delivers(self) -> None:
        self.assertEqual(self.reactor.readers, [self.reader])
        self.assertTrue(self.reader.add(self.bound))
        self.assertFalse(self.port.reading)
        self.send(b"one")
        self.send(b"two")
        self.reader.doRead()
        self.reader.doRead()
        self.reader.doRead()
        self.assertEqual([data for data, _ in self.got], [b"one", b"two"])
        self.assertEqual(self.got[0][1], ("127.0.0.1", self.sender.getsockname()[1]))

    def test_a_raising_handler_never_escapes(self) -> None:
        self.reader.add(self.bound)
        self.protocol.datagramReceived = lambda data, addr: 1 // 0  # type: ignore[method-assign]
        self.send(b"x")
        self.send(b"y")
        self.reader.doRead()
        self.reader.doRead()
        self.assertEqual(self.reader.errors, 2)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_removed_and_closed(self) -> None:
        self.reader.add(self.bound)
        self.reader.remove(self.bound)
        self.reader.remove(self.bound)
        self.send(b"late")
        self.reader.doRead()
        self.assertEqual(self.got, [])
        self.assertFalse(self.reader.add(_Bound(object(), self.protocol)), "a fake port without a socket")
        self.reader.close()
        self.assertEqual(self.reactor.readers, [])
        self.reader.doRead()

    def test_coalescing_leaves_the_reactor_while_busy(self) -> None:
        """With coalesce, a busy reader drains on a timer and goes back to the reactor once idle."""
        self.reader.coalesce = 0.001
        self.reader.add(self.bound)
        self.send(b"one")
        self.reader.doRead()
        self.assertEqual((self.got[0][0], self.reactor.readers), (b"one", []))
        self.send(b"two")
        self.send(b"three")
        self.clock.advance(0.001)
        self.assertEqual([data for data, _ in self.got], [b"one", b"two", b"three"])
        self.assertEqual(self.reactor.readers, [])
        self.clock.advance(0.001)
        self.assertEqual(self.reactor.readers, [self.reader], "idle: back to waiting on the reactor")
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_close_while_coalescing(self) -> None:
        self.reader.coalesce = 0.001
        self.reader.add(self.bound)
        self.send(b"one")
        self.reader.doRead()
        self.reader.close()
        self.assertEqual((self.reactor.readers, self.clock.getDelayedCalls()), ([], []))


class ImmediateReuseTests(TestCase):
    """Ports of an ended call are free for the next one at once, in the same reactor turn: calls ending
    and starting together (a busy server) never find the pool's next pair still bound ("in use")."""

    def test_two_hundred_calls_in_one_turn_on_four_pairs(self) -> None:
        for shared_reader in (None, False):
            low, high = free_range()
            relay = MediaRelay(reactor, "127.0.0.1", (low, low + 7), timeout=0, shared_reader=shared_reader)
            self.addCleanup(relay.close)
            for i in range(200):
                relay.open_endpoint(f"c{i}", "a", rtcp_mux=bool(i % 2))
                relay.open_endpoint(f"c{i}", "b")
                if i >= 1:
                    relay.close_call(f"c{i - 1}")     # the previous call ends as this one starts
            self.assertEqual(relay.pool.refused, 0)
            relay.close_call("c199")
            self.assertEqual(relay.pool.free, relay.pool.size)
            held = []
            for port in range(low, low + 8):             # nothing is bound any more, this very turn
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    held.append(port)
                finally:
                    s.close()
            self.assertEqual(held, [])
