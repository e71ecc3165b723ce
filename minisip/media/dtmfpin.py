"""DTMF for conference PINs: RFC 4733 telephone-event payloads, SIP INFO dtmf-relay bodies, and the
PIN entry state machine (three tries, timeouts on an injected clock).

Digits reach ``PinEntry.digit`` from either source; ``TelephoneEventDigits`` turns the several RTP
packets RFC 4733 sends for one key press into one digit.
"""

from __future__ import annotations

import enum
import hmac
import struct
from collections.abc import Callable
from dataclasses import dataclass

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from minisip.media.mixer import tone

__all__ = [
    "DIGITS",
    "PROMPT_TONE",
    "DtmfError",
    "PinEntry",
    "PinOutcome",
    "TelephoneEvent",
    "TelephoneEventDigits",
    "event_digit",
    "parse_dtmf_relay",
]

log = Logger(namespace="minisip.media.dtmfpin")

# What a caller asked for a PIN hears (play with mixer.tone_frames): two short 1 kHz beeps, -15 dBFS.
PROMPT_TONE = tone([(1000.0, 120.0), (0.0, 80.0), (1000.0, 120.0)], 6000)

# RFC 4733 section 3.2: events 0-15 are the DTMF keys, in this order.
DIGITS = "0123456789*#ABCD"
_EVENT = struct.Struct("!BBH")


class DtmfError(ValueError):
    """A telephone-event payload that is not one; the message says why."""


def event_digit(event: int) -> str | None:
    """The key of RFC 4733 event code ``event`` ('0'-'9', '*', '#', 'A'-'D'); None for other events."""
    return DIGITS[event] if 0 <= event < len(DIGITS) else None


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    """One RFC 4733 telephone-event payload (section 2.3): event code, end bit, volume, duration."""

    event: int
    end: bool
    volume: int  # -dBm0, 0..63
    duration: int  # in RTP timestamp units since the event began

    @property
    def digit(self) -> str | None:
        return event_digit(self.event)

    @classmethod
    def parse(cls, payload: bytes) -> TelephoneEvent:
        """The first 4-byte event block of ``payload``; raises DtmfError when it is too short."""
        if len(payload) < 4:
            raise DtmfError(f"telephone-event payload too short: {len(payload)} bytes, needs 4")
        event, flags, duration = _EVENT.unpack_from(payload)
        return cls(event, bool(flags & 0x80), flags & 0x3F, duration)


class TelephoneEventDigits:
    """One digit per key press from a stream of RFC 4733 packets.

    All packets of one event carry the same RTP timestamp (RFC 4733 section 2.5.1.3): the digit is
    reported at the first packet seen with a new timestamp, and the retransmitted end packets that
    follow are ignored. Garbage payloads are counted and ignored.
    """

    __slots__ = ("_last", "errors")

    def __init__(self) -> None:
        self._last: int | None = None
        self.errors = 0

    def feed(self, payload: bytes, timestamp: int) -> str | None:
        """The digit this packet starts, or None (a repeat, a non-key event, or not a payload)."""
        try:
            event = TelephoneEvent.parse(payload)
        except DtmfError:
            self.errors += 1
            return None
        if timestamp == self._last:
            return None
        self._last = timestamp
        return event.digit


def parse_dtmf_relay(body: bytes | str) -> str | None:
    """The key of a SIP INFO body: ``application/dtmf-relay`` (``Signal=5``) or ``application/dtmf`` (``5``).

    Some phones send ``Signal=10``/``11`` for '*'/'#'. None when the body names no key.
    """
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    signal: str | None = None
    for line in text.replace("\r", "\n").split("\n"):
        key, sep, value = line.partition("=")
        if sep and key.strip().lower() == "signal":
            signal = value.strip()
            break
    if signal is None:
        stripped = text.strip()
        signal = stripped if "=" not in stripped and "\n" not in stripped else None
    if not signal:
        return None
    if signal.isdigit() and len(signal) <= 2:
        return event_digit(int(signal))
    upper = signal.upper()
    return upper if len(upper) == 1 and upper in DIGITS else None


class PinOutcome(enum.Enum):
    """How a PIN entry ended: the right PIN, three wrong tries, or no digit in time."""

    ACCEPTED = "accepted"
    WRONG = "wrong"
    TIMEOUT = "timeout"


class PinEntry:
    """Collects a PIN by DTMF: ``tries`` tries, each ended by '#', by reaching the PIN's length or by a
    timeout; '*' starts the current try again. ``on_outcome`` is called once.

    Timers: ``first_digit_timeout`` for the first digit of a try (the caller may replay the prompt
    from ``on_retry(tries_left)``), ``inter_digit_timeout`` after each digit. A timeout with digits
    entered submits them (a wrong try); with none, the entry ends with TIMEOUT.
    """

    def __init__(self, clock: IReactorTime, pin: str, on_outcome: Callable[[PinOutcome], None], *,
                 tries: int = 3, first_digit_timeout: float = 10.0, inter_digit_timeout: float = 5.0,
                 on_retry: Callable[[int], None] | None = None) -> None:
        if not pin or not pin.isdigit() or not pin.isascii():
            raise ValueError("a PIN is one or more digits 0-9")
        if tries < 1:
            raise ValueError("a PIN entry needs at least one try")
        self._clock = clock
        self._pin = pin.encode("ascii")
        self._on_outcome = on_outcome
        self._on_retry = on_retry
        self.first_digit_timeout = first_digit_timeout
        self.inter_digit_timeout = inter_digit_timeout
        self.tries_left = tries
        self.outcome: PinOutcome | None = None
        self._entered = ""
        self._timer: IDelayedCall | None = None
        self._done = False
        self._arm(first_digit_timeout)

    @property
    def done(self) -> bool:
        return self._done

    def digit(self, key: str) -> None:
        """One key press (from RFC 4733 or SIP INFO); anything but 0-9, '*' and '#' is ignored."""
        if self._done or len(key) != 1:
            return
        if key == "*":
            self._entered = ""
            self._arm(self.first_digit_timeout)
        elif key == "#":
            if self._entered:
                self._submit()
        elif "0" <= key <= "9":
            self._entered += key
            if len(self._entered) >= len(self._pin):
                self._submit()
            else:
                self._arm(self.inter_digit_timeout)

    def cancel(self) -> None:
        """The call ended during entry: stop the timer; no outcome is reported."""
        self._done = True
        self._disarm()

    def _submit(self) -> None:
        entered, self._entered = self._entered.encode("ascii"), ""
        if hmac.compare_digest(entered, self._pin):
            self._finish(PinOutcome.ACCEPTED)
            return
        self.tries_left -= 1
        if self.tries_left <= 0:
            self._finish(PinOutcome.WRONG)
            return
        self._arm(self.first_digit_timeout)
        if self._on_retry is not None:
            try:
                self._on_retry(self.tries_left)
            except Exception:
                log.failure("PIN entry: the retry callback failed")

    def _timed_out(self) -> None:
        self._timer = None
        if self._entered:
            self._submit()
        else:
            self._finish(PinOutcome.TIMEOUT)

    def _finish(self, outcome: PinOutcome) -> None:
        self._disarm()
        self._done = True
        self.outcome = outcome
        try:
            self._on_outcome(outcome)
        except Exception:
            log.failure("PIN entry: the outcome callback failed")

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._timer = self._clock.callLater(seconds, self._timed_out)

    def _disarm(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
