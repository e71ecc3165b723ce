"""minisip.log: the same lines as twistd's default text observer, for every kind of event."""

from __future__ import annotations

import io
import time

from twisted.logger import Logger, LogLevel, textFileLogObserver
from twisted.python.failure import Failure
from twisted.trial import unittest

from minisip.log import TextObserver, observer

T = 1_764_150_000.25  # a fixed log_time: the lines do not depend on when the test runs


def _both(event: dict) -> tuple[str, str]:
    """(Twisted's line, minisip's line) for one event."""
    theirs, ours = io.StringIO(), io.StringIO()
    textFileLogObserver(theirs)(dict(event))
    TextObserver(ours)(dict(event))
    return theirs.getvalue(), ours.getvalue()


def _event(fmt: str | None, **fields: object) -> dict:
    event: dict = {"log_time": T, "log_level": LogLevel.info, "log_namespace": "minisip.core",
                   "log_source": None, "log_logger": Logger(namespace="minisip.core")}
    if fmt is not None:
        event["log_format"] = fmt
    event.update(fields)
    return event


class SameLinesAsTwisted(unittest.TestCase):
    def check(self, event: dict) -> str:
        theirs, ours = _both(event)
        self.assertEqual(ours, theirs)
        return ours

    def test_call_line(self) -> None:
        event = _event("call {id} from {caller} to {callee} ended: {cause} ({detail}), talk time {dur:.1f}s",
                       id="ab12", caller="100", callee="101", cause="normal", detail="BYE", dur=12.345)
        self.assertIsNotNone(TextObserver(io.StringIO())._fast(event), "a plain event takes the fast path")
        line = self.check(event)
        self.assertTrue(line.endswith(" [minisip.core#info] call ab12 from 100 to 101 ended: normal (BYE), "
                                      "talk time 12.3s\n"), line)
        self.assertTrue(line.startswith(time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(T))), line)

    def test_levels_system_and_conversions(self) -> None:
        self.check(_event("contact {c!r} stopped answering", c="sip:100@10.0.0.1", log_level=LogLevel.warn))
        self.check(_event("listening on {addr}", addr="udp:127.0.0.1:5060", log_system="UDP"))
        self.check(_event("no level", log_level=None))
        self.check(_event("{a.real} and {b[0]}", a=3, b=["x"]))

    def test_multi_line_text_is_indented(self) -> None:
        line = self.check(_event("first\nsecond {x}", x="third\nfourth"))
        self.assertEqual(line.count("\n\t"), 2, line)

    def test_fields_twisted_formats_its_own_way(self) -> None:
        """Callable fields, missing fields and unformattable values go through Twisted's formatter."""
        self.check(_event("value {f()}", f=lambda: 42))
        self.check(_event("missing {nothere}"))
        self.check(_event("bad spec {x:d}", x="text"))

    def test_failure_keeps_its_traceback(self) -> None:
        try:
            1 / 0  # noqa: B018
        except ZeroDivisionError:
            failure = Failure()
        line = self.check(_event("unhandled error on a datagram", log_failure=failure, log_level=LogLevel.critical))
        self.assertIn("Traceback", line)
        self.assertIn("ZeroDivisionError", line)

    def test_event_without_format_writes_nothing(self) -> None:
        out = io.StringIO()
        TextObserver(out)(_event(None))
        self.assertEqual(out.getvalue(), "")

    def test_legacy_log_msg(self) -> None:
        from twisted.logger import globalLogPublisher
        from twisted.python import log as legacy

        seen: list[dict] = []
        globalLogPublisher.addObserver(seen.append)
        self.addCleanup(globalLogPublisher.removeObserver, seen.append)
        legacy.msg("old style", "message")
        legacy.err(Failure(ValueError("boom")), "old style error")
        self.flushLoggedErrors(ValueError)
        self.assertEqual(len(seen), 2)
        for event in seen:
            self.check(event)


class TimeStamps(unittest.TestCase):
    def test_stamp_follows_the_event_time(self) -> None:
        out = io.StringIO()
        obs = TextObserver(out)
        for when in (T, T + 0.5, T + 1.0, T + 3600.0, T):
            obs(_event("tick", log_time=when))
        stamps = [line.split(" ")[0] for line in out.getvalue().splitlines()]
        expected = [time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(int(w))) for w in (T, T, T + 1, T + 3600, T)]
        self.assertEqual(stamps, expected)

    def test_no_time(self) -> None:
        out = io.StringIO()
        TextObserver(out)({"log_format": "no time", "log_namespace": "x", "log_level": LogLevel.info})
        self.assertEqual(out.getvalue(), "- [x#info] no time\n")


class ForTwistd(unittest.TestCase):
    def test_observer_factory_writes_to_stdout(self) -> None:
        """``twistd --logger minisip.log.observer`` calls this with no arguments."""
        import sys

        from twisted.logger import ILogObserver

        obs = observer()
        self.assertTrue(ILogObserver.providedBy(obs))
        self.assertIs(obs._out, sys.stdout)


class RepeatLimiterTests(unittest.SynchronousTestCase):
    """Issue 8.9: repeated bad-input lines are counted per source and summed up once per interval."""

    def setUp(self) -> None:
        from twisted.internet.task import Clock
        from twisted.logger import formatEvent

        from minisip.log import RepeatLimiter

        self.clock = Clock()
        self.events: list[dict] = []
        self.logger = Logger(namespace="minisip.transport", observer=self.events.append)
        self.limiter = RepeatLimiter(self.clock, self.logger, "bad messages", interval=60, max_sources=3)
        self.format = formatEvent

    def lines(self) -> list[str]:
        return [self.format(e) for e in self.events]

    def bad(self, host: str, n: int = 1) -> None:
        for i in range(n):
            self.limiter.report(host, "bad message from {source}: {reason}", source=f"udp:{host}:5060",
                                reason=f"junk {i}")

    def test_flood_from_one_host_is_two_lines_a_minute(self) -> None:
        self.bad("192.0.2.7", 10_000)
        self.assertEqual(self.lines(), ["bad message from udp:192.0.2.7:5060: junk 0"])
        self.clock.advance(60)
        self.assertEqual(self.lines()[1:], ["9999 more bad messages from 192.0.2.7 in the last 60 s"])
        self.bad("192.0.2.7", 500)
        self.clock.advance(60)
        self.assertEqual(self.lines()[2:], ["500 more bad messages from 192.0.2.7 in the last 60 s"])
        # Quiet for a whole interval: forgotten, and the next one is logged in full again.
        self.clock.advance(60)
        self.assertEqual(len(self.lines()), 3)
        self.assertEqual((self.limiter.sources, self.clock.getDelayedCalls()), (0, []))
        self.bad("192.0.2.7")
        self.assertEqual(self.lines()[3], "bad message from udp:192.0.2.7:5060: junk 0")

    def test_one_bad_message_is_one_line(self) -> None:
        self.bad("192.0.2.7")
        self.clock.advance(120)
        self.assertEqual(self.lines(), ["bad message from udp:192.0.2.7:5060: junk 0"])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_each_host_counted_apart(self) -> None:
        self.bad("192.0.2.1", 3)
        self.bad("192.0.2.2", 2)
        self.clock.advance(60)
        self.assertEqual(sorted(self.lines()), sorted([
            "bad message from udp:192.0.2.1:5060: junk 0", "bad message from udp:192.0.2.2:5060: junk 0",
            "2 more bad messages from 192.0.2.1 in the last 60 s", "1 more bad messages from 192.0.2.2 in the last 60 s",
        ]))

    def test_spoofed_sources_are_bounded(self) -> None:
        """Beyond max_sources hosts at once, the rest are counted together: the table stays small."""
        for i in range(1000):
            self.bad(f"10.0.{i // 256}.{i % 256}")
        self.assertEqual(self.limiter.sources, 4)  # three hosts and "other addresses"
        self.assertEqual(len(self.lines()), 3)
        self.clock.advance(60)
        self.assertEqual(self.lines()[3:], ["997 bad messages from other addresses in the last 60 s (over 3 "
                                            "addresses at once)"])

    def test_level_kept_and_close_cancels(self) -> None:
        self.limiter.report("192.0.2.9", "refused {host}", log_level=LogLevel.warn, host="192.0.2.9")
        self.limiter.report("192.0.2.9", "refused {host}", log_level=LogLevel.warn, host="192.0.2.9")
        self.clock.advance(60)
        self.assertEqual([e["log_level"] for e in self.events], [LogLevel.warn, LogLevel.warn])
        self.limiter.close()
        self.assertEqual((self.limiter.sources, self.clock.getDelayedCalls()), (0, []))


class EscapingTests(unittest.SynchronousTestCase):
    def test_control_characters_from_the_network_are_escaped(self) -> None:
        """Issue 8 point 1: a caller number carrying CR/NUL/ESC cannot forge or hide log text."""
        out = io.StringIO()
        TextObserver(out)({"log_format": "call from {caller}", "log_time": 0.0, "log_namespace": "x",
                           "log_level": LogLevel.info, "caller": "100\r\x1b[2J\x00evil"})
        self.assertIn("call from 100\\x0d\\x1b[2J\\x00evil", out.getvalue())
        self.assertEqual(out.getvalue().count("\n"), 1)


class RelayPortLinesTests(unittest.SynchronousTestCase):
    def test_twisteds_lines_for_relay_ports_are_left_out(self) -> None:
        out = io.StringIO()
        obs = TextObserver(out)
        for text in ("_MediaPort starting on 31000", "(UDP Port 31000 Closed)", "(UDP Port 5060 Closed)"):
            obs({"log_format": "{log_text}", "log_text": text, "log_namespace": "log_legacy", "log_time": 0.0,
                 "log_level": LogLevel.info, "log_system": "-"})
        self.assertEqual(out.getvalue().count("\n"), 1)
        self.assertIn("(UDP Port 5060 Closed)", out.getvalue())
