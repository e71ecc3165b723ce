"""A text log observer for busy servers: Twisted's classic line format at a fraction of the cost.

Also :class:`RepeatLimiter`, which turns a flood of identical bad-input lines into one line per source
and minute.

twistd's default observer formats every event through ``string.Formatter`` and works out the local
time zone for each line (three ``datetime`` conversions and a ``strftime``). minisip logs three
lines per call, so at a few hundred calls per second that was a tenth of the server's CPU. This
observer writes the same lines (``2026-11-26T10:00:00+0000 [minisip#info] text``) but formats the
time stamp once per second and the message with ``str.format_map`` (C code). Events it cannot
format that way (failures with tracebacks, Twisted's callable ``{f()}`` fields, legacy events)
go through Twisted's own formatter, so nothing is lost or worded differently.

Use it with twistd in the foreground; it writes to standard output (journald under systemd)::

    twistd -n --logger minisip.log.observer minisip --config /etc/minisip/minisip.conf

``--logger`` replaces twistd's ``--logfile`` and ``--syslog``, and a daemonized twistd (no ``-n``)
points standard output at /dev/null: there, keep twistd's own observer.
"""

from __future__ import annotations

import re
import sys
import time
from typing import IO, Any

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import ILogObserver, Logger, LogLevel, formatEventAsClassicLogText
from zope.interface import implementer

from minisip.sip.validate import escape_controls

_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S%z"
_RELAY_PORT_OPENED = re.compile(r"_MediaPort starting on (\d+)$")
_UDP_PORT_CLOSED = re.compile(r"\(UDP Port (\d+) Closed\)$")


@implementer(ILogObserver)
class TextObserver:
    """Writes each event as one classic Twisted text line (continuation lines indented by a tab)."""

    def __init__(self, out: IO[str]) -> None:
        self._out = out
        self._second = -1
        self._stamp = "-"
        self._relay_ports: set[str] = set()

    def _relay_port_line(self, text: Any) -> bool:
        """Twisted's own lines for each media relay port it opens and closes (eight a call without
        rtcp-mux): the relay logs what matters about a call's media itself."""
        if text.__class__ is not str:
            return False
        m = _RELAY_PORT_OPENED.match(text)
        if m is not None:
            self._relay_ports.add(m.group(1))
            return True
        m = _UDP_PORT_CLOSED.match(text)
        if m is not None and m.group(1) in self._relay_ports:
            self._relay_ports.discard(m.group(1))
            return True
        return False

    def _time(self, when: float | None) -> str:
        if when is None:
            return "-"
        second = int(when)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime(_TIME_FORMAT, time.localtime(second))
        return self._stamp

    def __call__(self, event: dict[str, Any]) -> None:
        if event.get("log_namespace") == "log_legacy" and self._relay_port_line(event.get("log_text")):
            return
        text = self._fast(event)
        if text is None:
            text = formatEventAsClassicLogText(event, formatTime=self._time)
            if not text:
                return
        self._out.write(text)
        self._out.flush()

    def _fast(self, event: dict[str, Any]) -> str | None:
        """The line for a plain event, or None to let Twisted's formatter do it."""
        fmt = event.get("log_format")
        if fmt.__class__ is not str or "log_failure" in event or "log_flattened" in event or "()}" in fmt:
            return None
        try:
            message = fmt.format_map(event)
            if not message.replace("\n", " ").isprintable():
                # text from the network (a caller number, a user agent) never writes control
                # characters into the log: its fields are escaped (a new line stays one: it is
                # indented below, so it can never pass for a line of its own)
                message = fmt.format_map(_Escaped(event))
        except Exception:  # noqa: BLE001 - a field Twisted formats differently: its formatter decides
            return None
        system = event.get("log_system")
        if system is None:
            level = event.get("log_level")
            system = f"{event.get('log_namespace', '-')}#{level.name if level is not None else '-'}"
        if "\n" in message:
            message = message.replace("\n", "\n\t")
        return f"{self._time(event.get('log_time'))} [{system}] {message}\n"


class _Escaped(dict):  # type: ignore[type-arg]
    """An event whose text fields come out with control characters escaped (format_map reads it)."""

    def __getitem__(self, key: str) -> Any:
        value = dict.__getitem__(self, key)
        if value.__class__ is not str:
            return value
        return "\n".join(escape_controls(part) for part in value.split("\n"))


def observer() -> TextObserver:
    """For ``twistd --logger minisip.log.observer``: the fast observer on standard output."""
    return TextObserver(sys.stdout)


class _Source:
    __slots__ = ("count", "timer")

    def __init__(self, timer: IDelayedCall) -> None:
        self.count = 0
        self.timer = timer


class RepeatLimiter:
    """Logs repeated bad input from one source once per interval instead of once per message.

    The first report from a host is logged in full; the next ones in the same ``interval`` are only
    counted, and when the interval ends one line says ``N more bad messages from HOST in the last 60 s``
    (the interval starts again while the host goes on). A flood of junk datagrams (9 MB of log in 10 s)
    becomes a line per source per minute. Beyond ``max_sources`` hosts at once (spoofed addresses),
    the rest are counted together as "other addresses".
    """

    OTHERS = "other addresses"

    def __init__(self, clock: IReactorTime, logger: Logger, what: str = "bad messages", *,
                 interval: float = 60.0, max_sources: int = 1000) -> None:
        self.clock = clock
        self.logger = logger
        self.what = what
        self.interval = interval
        self.max_sources = max_sources
        self._sources: dict[str, _Source] = {}

    def report(self, host: str, fmt: str, /, log_level: LogLevel = LogLevel.info, **fields: Any) -> None:
        """Log ``fmt`` (a twisted.logger format with ``fields``) for ``host``, unless it repeats."""
        level = log_level
        source = self._sources.get(host)
        if source is None and len(self._sources) >= self.max_sources:
            host = self.OTHERS
            source = self._sources.get(host)
        if source is not None:
            source.count += 1
            return
        self._sources[host] = _Source(self.clock.callLater(self.interval, self._end, host, level))
        if host == self.OTHERS:
            self._sources[host].count = 1
            return
        self.logger.emit(level, fmt, **fields)

    def _end(self, host: str, level: LogLevel) -> None:
        source = self._sources[host]
        if source.count == 0:
            del self._sources[host]  # quiet for a whole interval: the next report is logged in full
            return
        if host == self.OTHERS:
            self.logger.emit(level, "{n} {what} from other addresses in the last {interval:g} s (over {max} "
                             "addresses at once)", n=source.count, what=self.what, interval=self.interval,
                             max=self.max_sources)
        else:
            self.logger.emit(level, "{n} more {what} from {host} in the last {interval:g} s",
                             n=source.count, what=self.what, host=host, interval=self.interval)
        source.count = 0
        source.timer = self.clock.callLater(self.interval, self._end, host, level)

    @property
    def sources(self) -> int:
        """How many hosts are being counted now."""
        return len(self._sources)

    def close(self) -> None:
        """Cancel the timers (the counts not yet reported are dropped)."""
        for source in self._sources.values():
            if source.timer.active():
                source.timer.cancel()
        self._sources.clear()
