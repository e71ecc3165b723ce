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
