"""RFC 4733 telephone events, SIP INFO dtmf-relay bodies and the conference PIN entry on a Clock."""

from __future__ import annotations

import struct

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from minisip.media.dtmfpin import (
    PROMPT_TONE,
    DtmfError,
    PinEntry,
    PinOutcome,
    TelephoneEvent,
    TelephoneEventDigits,
    event_digit,
    parse_dtmf_relay,
)


def event_payload(event: int, end: bool = False, volume: int = 10, duration: int = 160) -> bytes:
    return struct.pack("!BBH", event, (0x80 if end else 0) | volume, duration)


class TelephoneEventTests(SynchronousTestCase):
    def test_parse(self) -> None:
        """RFC 4733 section 2.3: event, E bit, reserved bit ignored, volume, duration."""
        self.assertEqual(TelephoneEvent.parse(b"\x05\x0a\x00\xa0"), TelephoneEvent(5, False, 10, 160))
        self.assertEqual(TelephoneEvent.parse(b"\x0b\xca\x03\x20"), TelephoneEvent(11, True, 10, 800))
        self.assertEqual(TelephoneEvent.parse(b"\x00\x3f\xff\xff"), TelephoneEvent(0, False, 63, 65535))
        self.assertEqual(TelephoneEvent.parse(event_payload(1) + b"\x00" * 4).event, 1)

    def test_too_short(self) -> None:
        for payload in (b"", b"\x01", b"\x01\x80\x00"):
            error = self.assertRaises(DtmfError, TelephoneEvent.parse, payload)
            self.assertIn("too short", str(error))

    def test_digits(self) -> None:
        self.assertEqual([event_digit(e) for e in range(17)], list("0123456789*#ABCD") + [None])
        self.assertEqual(TelephoneEvent(10, True, 0, 0).digit, "*")
        self.assertIsNone(event_digit(-1))

    def test_one_digit_per_key_press(self) -> None:
        """Start, updates and three end packets share a timestamp: one digit; the next press is a new one."""
        digits = TelephoneEventDigits()
        packets = [(event_payload(1), 1000), (event_payload(1, duration=320), 1000),
                   (event_payload(1, end=True, duration=800), 1000), (event_payload(1, end=True, duration=800), 1000),
                   (event_payload(1, end=True, duration=800), 1000), (event_payload(2), 3000),
                   (event_payload(2, end=True), 3000), (event_payload(1, end=True), 5000),  # start lost: still counted
                   (event_payload(16), 7000), (b"\x01", 9000)]
        self.assertEqual([d for d in (digits.feed(p, ts) for p, ts in packets) if d], ["1", "2", "1"])
        self.assertEqual(digits.errors, 1)


class DtmfRelayTests(SynchronousTestCase):
    def test_dtmf_relay_bodies(self) -> None:
        cases = {
            b"Signal=5\r\nDuration=160\r\n": "5",
            b"Signal= *\r\nDuration=250\r\n": "*",
            b"signal=#\nduration=100": "#",
            b"Signal=10\r\nDuration=160\r\n": "*",
            b"Signal=11\r\n": "#",
            b"Signal=d\r\n": "D",
            "Signal=0": "0",
            b"7": "7",  # application/dtmf
            b"Duration=160\r\n": None,
            b"Signal=\r\n": None,
            b"Signal=16\r\n": None,
            b"Signal=xyz\r\n": None,
            b"": None,
            b"\xff\xfe": None,
        }
        for body, digit in cases.items():
            self.assertEqual((body, parse_dtmf_relay(body)), (body, digit))


class PinEntryTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.outcomes: list[PinOutcome] = []
        self.retries: list[int] = []

    def entry(self, pin: str = "1234", **kwargs: float) -> PinEntry:
        return PinEntry(self.clock, pin, self.outcomes.append, on_retry=self.retries.append, **kwargs)

    def keys(self, entry: PinEntry, keys: str) -> None:
        for key in keys:
            entry.digit(key)

    def test_accepted(self) -> None:
        entry = self.entry()
        self.keys(entry, "1234")
        self.assertEqual(self.outcomes, [PinOutcome.ACCEPTED])
        self.assertEqual((entry.outcome, entry.done), (PinOutcome.ACCEPTED, True))
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.keys(entry, "1234")  # later digits change nothing
        self.assertEqual(self.outcomes, [PinOutcome.ACCEPTED])

    def test_hash_submits_and_star_restarts(self) -> None:
        entry = self.entry()
        self.keys(entry, "9*1234")
        self.assertEqual(self.outcomes, [PinOutcome.ACCEPTED])
        self.assertEqual(self.retries, [])
        other = PinEntry(self.clock, "42", self.outcomes.append)
        self.keys(other, "#A4#")  # '#' with nothing entered and 'A' are ignored; "4#" is a wrong try
        self.assertEqual(other.tries_left, 2)
        self.keys(other, "42")
        self.assertEqual(self.outcomes, [PinOutcome.ACCEPTED, PinOutcome.ACCEPTED])

    def test_accepted_on_third_try(self) -> None:
        entry = self.entry()
        self.keys(entry, "1111")
        self.keys(entry, "12#")
        self.assertEqual(self.retries, [2, 1])
        self.keys(entry, "1234")
        self.assertEqual(self.outcomes, [PinOutcome.ACCEPTED])

    def test_wrong_after_three_tries(self) -> None:
        entry = self.entry()
        self.keys(entry, "0000" "4321" "9")
        self.assertEqual(self.outcomes, [])
        self.keys(entry, "999")
        self.assertEqual(self.outcomes, [PinOutcome.WRONG])
        self.assertEqual((entry.tries_left, self.retries), (0, [2, 1]))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_timeout_before_any_digit(self) -> None:
        entry = self.entry(first_digit_timeout=10.0)
        self.clock.advance(9.9)
        self.assertEqual(self.outcomes, [])
        self.clock.advance(0.1)
        self.assertEqual(self.outcomes, [PinOutcome.TIMEOUT])
        self.assertEqual(entry.outcome, PinOutcome.TIMEOUT)

    def test_inter_digit_timeout_counts_as_a_wrong_try(self) -> None:
        entry = self.entry(first_digit_timeout=10.0, inter_digit_timeout=5.0)
        self.clock.advance(8)
        self.keys(entry, "12")
        self.clock.advance(4.9)
        self.keys(entry, "3")  # each digit restarts the inter-digit timer
        self.clock.advance(5)
        self.assertEqual((self.retries, self.outcomes), ([2], []))
        self.clock.advance(9.9)
        self.keys(entry, "1234")
        self.assertEqual(self.outcomes, [PinOutcome.ACCEPTED])

    def test_silence_after_a_wrong_try_times_out(self) -> None:
        entry = self.entry()
        self.keys(entry, "5555")
        self.clock.advance(10)
        self.assertEqual(self.outcomes, [PinOutcome.TIMEOUT])
        self.assertEqual(entry.tries_left, 2)

    def test_cancel(self) -> None:
        entry = self.entry()
        self.keys(entry, "12")
        entry.cancel()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.keys(entry, "34")
        self.clock.advance(60)
        self.assertEqual(self.outcomes, [])
        self.assertIsNone(entry.outcome)

    def test_callback_errors_are_logged_not_raised(self) -> None:
        def broken(value: object) -> None:
            raise RuntimeError("plugin bug")

        entry = PinEntry(self.clock, "1", broken, on_retry=broken)
        entry.digit("2")
        entry.digit("1")
        self.assertEqual(entry.outcome, PinOutcome.ACCEPTED)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 2)

    def test_prompt_tone(self) -> None:
        """Two beeps with a pause between them, 320 ms, in whole 20 ms frames."""
        self.assertEqual(len(PROMPT_TONE), 2560)
        self.assertEqual(PROMPT_TONE[960 + 100:960 + 600], [0] * 500)
        self.assertGreater(max(PROMPT_TONE[:960]), 5000)
        self.assertGreater(max(PROMPT_TONE[1600:2560]), 5000)

    def test_bad_settings(self) -> None:
        for pin in ("", "12a4", "١٢"):
            self.assertRaises(ValueError, PinEntry, self.clock, pin, self.outcomes.append)
        self.assertRaises(ValueError, PinEntry, self.clock, "1", self.outcomes.append, tries=0)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_digits_from_rtp_events_drive_the_entry(self) -> None:
        entry = self.entry("12")
        digits = TelephoneEventDigits()
        for event, timestamp in ((1, 100), (1, 100), (2, 900), (2, 900)):
            digit = digits.feed(event_payload(event, end=True), timestamp)
            if digit:
                entry.digit(digit)
        self.assertEqual(self.outcomes, [PinOutcome.ACCEPTED])
