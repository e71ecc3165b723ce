"""Tests for minisip.core.security.FailureTracker: counting, banning, expiry, bounds, logging."""

from __future__ import annotations

from typing import Any, cast

from twisted.internet.task import Clock
from twisted.logger import ILogObserver, Logger, LogLevel, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from minisip.core.security import FailureTracker

HOST = "127.0.0.1"


def recorder(events: list[dict[str, Any]]) -> ILogObserver:
    """A log observer appending every event to ``events``."""
    return cast(ILogObserver, events.append)


class FailureTrackerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.events: list[dict[str, Any]] = []
        self.tracker = FailureTracker(self.clock, max_failures=5, window=60.0, ban_time=600.0)
        self.tracker.log = Logger(namespace="test", observer=recorder(self.events))

    def fail_times(self, count: int, host: str = HOST, username: str | None = "100") -> list[bool]:
        results = []
        for _ in range(count):
            results.append(self.tracker.record_failure(host, username))
            self.clock.advance(1)
        return results

    def test_four_failures_no_ban(self) -> None:
        self.assertEqual(self.fail_times(4), [False] * 4)
        self.assertFalse(self.tracker.is_banned(HOST))
        self.assertEqual(self.events, [])

    def test_fifth_failure_bans(self) -> None:
        self.assertEqual(self.fail_times(5), [False] * 4 + [True])
        self.assertTrue(self.tracker.is_banned(HOST))
        self.assertEqual(len(self.events), 1)

    def test_loopback_not_exempt(self) -> None:
        for host in ("127.0.0.1", "::1"):
            self.fail_times(5, host=host)
            self.assertTrue(self.tracker.is_banned(host), host)

    def test_window_expiry(self) -> None:
        self.fail_times(4)
        self.clock.advance(60)
        self.assertFalse(self.tracker.record_failure(HOST, "100"))
        self.assertFalse(self.tracker.is_banned(HOST))
        # Only the failures within the last 60 s count: this one and the next three don't ban...
        self.assertEqual(self.fail_times(3), [False] * 3)
        self.assertFalse(self.tracker.is_banned(HOST))
        # ...the fifth within the window does.
        self.assertTrue(self.tracker.record_failure(HOST, "100"))

    def test_sliding_window(self) -> None:
        """Failures spread so that never five fall within 60 s never ban."""
        for _ in range(20):
            self.assertFalse(self.tracker.record_failure(HOST, "100"))
            self.clock.advance(15)
        self.assertFalse(self.tracker.is_banned(HOST))

    def test_ban_expiry(self) -> None:
        self.fail_times(5)  # banned at t=4, the clock is now at 5
        self.clock.advance(598)
        self.assertTrue(self.tracker.is_banned(HOST))
        self.clock.advance(0.5)
        self.assertTrue(self.tracker.is_banned(HOST))
        self.clock.advance(0.5)
        self.assertFalse(self.tracker.is_banned(HOST))
        self.assertEqual(self.tracker.banned_hosts, 0)
        # A fresh start: four more failures do not ban again.
        self.assertEqual(self.fail_times(4), [False] * 4)
        self.assertFalse(self.tracker.is_banned(HOST))

    def test_failures_while_banned_not_counted(self) -> None:
        self.fail_times(5)
        self.assertEqual(self.fail_times(10), [False] * 10)
        self.assertEqual(len(self.events), 1)
        self.assertEqual(self.tracker.tracked_hosts, 0)

    def test_other_hosts_unaffected(self) -> None:
        self.fail_times(5, host="192.0.2.1")
        self.assertTrue(self.tracker.is_banned("192.0.2.1"))
        self.assertFalse(self.tracker.is_banned("192.0.2.2"))
        self.assertFalse(self.tracker.is_banned(HOST))
        self.assertEqual(self.fail_times(4, host="192.0.2.2"), [False] * 4)
        self.assertFalse(self.tracker.is_banned("192.0.2.2"))

    def test_success_clears_history(self) -> None:
        self.fail_times(4)
        self.tracker.record_success(HOST)
        self.assertEqual(self.fail_times(4), [False] * 4)
        self.assertFalse(self.tracker.is_banned(HOST))

    def test_success_does_not_lift_ban(self) -> None:
        self.fail_times(5)
        self.tracker.record_success(HOST)
        self.assertTrue(self.tracker.is_banned(HOST))

    def test_log_event(self) -> None:
        self.tracker.record_failure(HOST, "100")
        self.tracker.record_failure(HOST, "101")
        self.tracker.record_failure(HOST, None)
        self.tracker.record_failure(HOST, "100")
        self.tracker.record_failure(HOST, "admin\r\nforged line")
        [event] = self.events
        self.assertEqual(event["log_level"], LogLevel.warn)
        text = formatEvent(event)
        self.assertTrue(text.startswith("security:"), text)
        self.assertIn(HOST, text)
        self.assertIn("100", text)
        self.assertIn("101", text)
        self.assertIn("admin\\x0d\\x0aforged line", text)
        self.assertNotIn("\n", text)
        self.assertEqual(event["host"], HOST)
        self.assertEqual(event["security_event"], "ban")

    def test_log_event_without_usernames(self) -> None:
        self.fail_times(5, username=None)
        [event] = self.events
        self.assertIn("extensions tried: (none)", formatEvent(event))

    def test_log_event_many_usernames(self) -> None:
        self.tracker.configure(max_failures=30, window=60.0, ban_time=600.0)
        for i in range(30):
            self.tracker.record_failure(HOST, f"{i:03d}")
        [event] = self.events
        self.assertIn("(+20 more)", formatEvent(event))

    def test_global_log_publisher(self) -> None:
        """With the default logger the ban reaches twisted.logger's global publisher."""
        seen: list[dict[str, Any]] = []
        observer = recorder(seen)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        tracker = FailureTracker(self.clock, max_failures=2)
        tracker.record_failure("198.51.100.7", "200")
        tracker.record_failure("198.51.100.7", "200")
        bans = [e for e in seen if e.get("security_event") == "ban"]
        self.assertEqual(len(bans), 1)
        self.assertTrue(formatEvent(bans[0]).startswith("security: banned 198.51.100.7"))

    def test_configure(self) -> None:
        self.tracker.configure(max_failures=2, window=10.0, ban_time=30.0)
        self.assertEqual(self.fail_times(2), [False, True])
        self.clock.advance(29)
        self.assertFalse(self.tracker.is_banned(HOST))
        for bad in ((0, 10.0, 30.0), (2, 0.0, 30.0), (2, 10.0, -1.0)):
            self.assertRaises(ValueError, self.tracker.configure, *bad)

    def test_old_histories_purged(self) -> None:
        for i in range(1000):
            self.tracker.record_failure(f"10.0.{i // 256}.{i % 256}", "100")
        self.assertEqual(self.tracker.tracked_hosts, 1000)
        self.clock.advance(61)
        self.tracker.record_failure("192.0.2.9", "100")
        self.assertEqual(self.tracker.tracked_hosts, 1)

    def test_expired_bans_purged(self) -> None:
        tracker = FailureTracker(self.clock, max_failures=1, ban_time=10.0)
        tracker.log = Logger(observer=recorder(self.events))
        for i in range(100):
            self.assertTrue(tracker.record_failure(f"10.1.0.{i}", None))
        self.assertEqual(tracker.banned_hosts, 100)
        self.clock.advance(11)
        tracker.record_failure("192.0.2.9", None)
        self.assertEqual(tracker.banned_hosts, 1)

    def test_bounded_under_flood(self) -> None:
        tracker = FailureTracker(self.clock, max_hosts=100)
        tracker.log = Logger(observer=recorder(self.events))
        for i in range(10_000):
            tracker.record_failure(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", "100")
        self.assertEqual(tracker.tracked_hosts, 100)
        # The most recent attackers are still tracked: four more failures ban the last one.
        last = "10.0.39.15"
        self.assertEqual([tracker.record_failure(last, "100") for _ in range(4)], [False, False, False, True])

    def test_bans_bounded(self) -> None:
        tracker = FailureTracker(self.clock, max_failures=1, max_hosts=10)
        tracker.log = Logger(observer=recorder(self.events))
        for i in range(50):
            tracker.record_failure(f"10.2.0.{i}", None)
        self.assertEqual(tracker.banned_hosts, 10)
        self.assertTrue(tracker.is_banned("10.2.0.49"))
        self.assertFalse(tracker.is_banned("10.2.0.0"))

    def test_long_usernames_truncated(self) -> None:
        self.fail_times(5, username="9" * 10_000)
        [event] = self.events
        self.assertEqual(event["usernames"], ["9" * 64])

    def test_bad_max_hosts(self) -> None:
        self.assertRaises(ValueError, FailureTracker, self.clock, max_hosts=0)


class ExemptionTests(SynchronousTestCase):
    """Issue 8 point 2: trunks and phones registered over TCP/TLS are never banned."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.events: list[dict[str, Any]] = []
        self.tracker = FailureTracker(self.clock)
        self.tracker.log = Logger(namespace="test", observer=recorder(self.events))

    def test_exempt_host_never_banned(self) -> None:
        self.tracker.exempt(HOST)
        self.assertEqual([self.tracker.record_failure(HOST, "100") for _ in range(20)], [False] * 20)
        self.assertFalse(self.tracker.is_banned(HOST))
        self.assertEqual([e["security_event"] for e in self.events], ["throttle"])

    def test_exempting_lifts_a_ban(self) -> None:
        for _ in range(5):
            self.tracker.record_failure(HOST, "100")
        self.assertTrue(self.tracker.is_banned(HOST))
        self.tracker.exempt(HOST)
        self.assertFalse(self.tracker.is_banned(HOST))

    def test_exemption_with_an_end(self) -> None:
        self.tracker.exempt(HOST, until=100.0)
        self.tracker.exempt(HOST, until=50.0)   # a shorter one does not cut it
        self.clock.advance(99)
        self.assertTrue(self.tracker.is_exempt(HOST))
        self.clock.advance(1)
        self.assertFalse(self.tracker.is_exempt(HOST))
        for _ in range(5):
            self.tracker.record_failure(HOST, "100")
        self.assertTrue(self.tracker.is_banned(HOST))

    def test_unexempt(self) -> None:
        self.tracker.exempt(HOST)
        self.tracker.unexempt(HOST)
        self.assertFalse(self.tracker.is_exempt(HOST))
        self.tracker.unexempt("192.0.2.99")


class ThrottleTests(SynchronousTestCase):
    """Issue 8 point 5: failures counted per user name, from any address."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.events: list[dict[str, Any]] = []
        self.tracker = FailureTracker(self.clock, user_max_failures=10, user_window=60.0, user_lock_time=300.0)
        self.tracker.log = Logger(namespace="test", observer=recorder(self.events))

    def spread(self, count: int, username: str = "100") -> None:
        for i in range(count):
            self.tracker.record_failure(f"203.0.113.{i % 50}", username)

    def test_throttled_after_failures_from_many_addresses(self) -> None:
        self.spread(9)
        self.assertFalse(self.tracker.is_throttled("100"))
        self.spread(1)
        self.assertTrue(self.tracker.is_throttled("100"))
        self.assertFalse(self.tracker.is_throttled("101"))
        [event] = self.events
        self.assertEqual(event["security_event"], "throttle")
        text = formatEvent(event)
        self.assertTrue(text.startswith("security: extension 100 throttled for 300s after 10 failed"), text)
        self.spread(50)
        self.assertEqual(len(self.events), 1)  # logged once per throttle
        self.assertEqual(self.tracker.banned_hosts, 0)

    def test_throttle_ends_and_window_slides(self) -> None:
        self.spread(10)
        self.clock.advance(299)
        self.assertTrue(self.tracker.is_throttled("100"))
        self.clock.advance(1)
        self.assertFalse(self.tracker.is_throttled("100"))
        for _ in range(20):
            self.tracker.record_failure("203.0.113.1", "200")
            self.tracker.record_success("203.0.113.1")
            self.clock.advance(7)
        self.assertFalse(self.tracker.is_throttled("200"))

    def test_names_escaped_and_bounded(self) -> None:
        self.spread(10, "x\r\nforged" + "9" * 100)
        [event] = self.events
        text = formatEvent(event)
        self.assertNotIn("\n", text)
        self.assertIn("x\\x0d\\x0aforged", text)
        tracker = FailureTracker(self.clock, max_users=10)
        tracker.log = Logger(namespace="test", observer=recorder(self.events))
        for i in range(1000):
            tracker.record_failure("203.0.113.1" if i % 2 else "203.0.113.2", f"u{i}")
            tracker.record_success("203.0.113.1")
            tracker.record_success("203.0.113.2")
        self.assertEqual(tracker.tracked_users, 10)

    def test_configure(self) -> None:
        self.tracker.configure(5, 60.0, 600.0, user_max_failures=3)
        self.spread(3)
        self.assertTrue(self.tracker.is_throttled("100"))
        self.assertRaises(ValueError, self.tracker.configure, 5, 60.0, 600.0, user_max_failures=0)
        self.assertRaises(ValueError, FailureTracker, self.clock, max_users=0)
