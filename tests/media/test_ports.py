"""The port pool: even RTP ports with RTP+1, refused ports skipped, accounting without sockets."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from minisip.media.ports import PoolExhausted, PortPool, check_port_range, parse_port_range


class FakeBinder:
    """Binds by recording port numbers; ports in ``refused`` fail like EADDRINUSE."""

    def __init__(self, refused: set[int] | None = None) -> None:
        self.refused = refused or set()
        self.bound: set[int] = set()

    def bind(self, port: int) -> int:
        if port in self.refused or port in self.bound:
            raise OSError(98, f"port {port} in use")
        self.bound.add(port)
        return port

    def unbind(self, port: int) -> None:
        self.bound.remove(port)

    def pool(self, low: int = 20000, high: int = 20009) -> PortPool[int]:
        return PortPool(low, high, self.bind, self.unbind)


class RangeTests(SynchronousTestCase):
    def test_parse(self) -> None:
        self.assertEqual(parse_port_range(" 20000-29999 "), (20000, 29999))
        for text, reason in [("20000", "not LOW-HIGH"), ("a-b", "not two numbers"), ("80-90", "1024-65535"),
                             ("30001-30001", "no even RTP port"), ("30000-70000", "1024-65535")]:
            with self.assertRaises(ValueError) as caught:
                parse_port_range(text)
            self.assertIn(reason, str(caught.exception))
        check_port_range(30001, 30003)

    def test_size_counts_pairs(self) -> None:
        binder = FakeBinder()
        self.assertEqual(binder.pool(20000, 29999).size, 5000)
        self.assertEqual(binder.pool(20001, 20005).size, 2)


class AllocationTests(SynchronousTestCase):
    def test_even_rtp_and_odd_rtcp(self) -> None:
        binder = FakeBinder()
        pool = binder.pool()
        lease = pool.allocate()
        self.assertEqual((lease.rtp_port, lease.rtp, lease.rtcp, lease.rtcp_port), (20000, 20000, 20001, 20001))
        self.assertEqual((pool.free, pool.in_use), (4, 1))

    def test_rtcp_mux_binds_one_port_and_reserves_the_pair(self) -> None:
        binder = FakeBinder()
        pool = binder.pool()
        lease = pool.allocate(rtcp_mux=True)
        self.assertEqual((lease.rtcp, lease.rtcp_port), (None, 20000))
        self.assertEqual(binder.bound, {20000})
        self.assertEqual(pool.allocate().rtp_port, 20002)

    def test_refused_ports_are_skipped_and_retried_later(self) -> None:
        binder = FakeBinder(refused={20000, 20003})
        pool = binder.pool()
        self.assertEqual(pool.allocate().rtp_port, 20004)
        self.assertEqual(pool.refused, 2)
        self.assertEqual(binder.bound, {20004, 20005}, "the RTP port of a pair whose RTCP failed is unbound")
        self.assertEqual(pool.free, 4)
        binder.refused.clear()
        ports = [pool.allocate().rtp_port for _ in range(4)]
        self.assertEqual(ports, [20006, 20008, 20000, 20002])

    def test_exhausted(self) -> None:
        binder = FakeBinder()
        pool = binder.pool(20000, 20003)
        pool.allocate()
        pool.allocate()
        with self.assertRaises(PoolExhausted) as caught:
            pool.allocate()
        self.assertIn("all 2 port pairs of 20000-20003 are in use", str(caught.exception))

    def test_everything_refused(self) -> None:
        binder = FakeBinder(refused=set(range(20000, 20010)))
        pool = binder.pool()
        with self.assertRaises(PoolExhausted) as caught:
            pool.allocate()
        self.assertIn("refused the 5 port pairs tried", str(caught.exception))
        self.assertEqual(pool.free, 5)

    def test_attempts_are_bounded(self) -> None:
        binder = FakeBinder(refused=set(range(20000, 21000)))
        pool = PortPool(20000, 29999, binder.bind, binder.unbind, max_attempts=10)
        self.assertRaises(PoolExhausted, pool.allocate)
        self.assertEqual(pool.refused, 10)

    def test_release_returns_the_pair_to_the_back_once(self) -> None:
        binder = FakeBinder()
        pool = binder.pool()
        lease = pool.allocate()
        pool.release(lease)
        pool.release(lease)
        self.assertEqual((pool.free, binder.bound), (5, set()))
        self.assertEqual(pool.allocate().rtp_port, 20002, "a freed pair is not reused first")

    def test_two_hundred_cycles_leave_the_pool_full(self) -> None:
        binder = FakeBinder()
        pool = binder.pool(20000, 20099)
        for i in range(200):
            leases = [pool.allocate(rtcp_mux=bool(i % 2)) for _ in range(3)]
            for lease in leases:
                pool.release(lease)
        self.assertEqual((pool.free, pool.in_use, binder.bound), (50, 0, set()))
