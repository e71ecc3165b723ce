"""Protection against password guessing: ban an address after repeated failed authentications.

State is kept per source address, in memory, bounded: failures older than the window and expired
bans are purged lazily, and at most ``max_hosts`` addresses are tracked (the least recently seen
are forgotten first), so a flood of distinct addresses cannot exhaust memory.
"""

from __future__ import annotations

from collections import deque
from typing import Protocol

from twisted.logger import Logger

__all__ = ["FailureTracker"]

# How many distinct extensions to name in one ban event, and how long each may be.
_MAX_NAMES = 10
_MAX_NAME_LEN = 64


class _Clock(Protocol):
    def seconds(self) -> float: ...


def _printable(name: str) -> str:
    """An attacker-chosen user name made safe for one log line."""
    name = name[:_MAX_NAME_LEN]
    if name.isprintable():
        return name
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in name)


class FailureTracker:
    """Counts failed authentications per address and bans an address that fails too often.

    Loopback is not exempt. A ban is logged once, as a warning starting with "security:", with the
    address and the extensions tried.
    """

    log = Logger(namespace="minisip.security")

    def __init__(
        self, clock: _Clock, max_failures: int = 5, window: float = 60.0, ban_time: float = 600.0,
        max_hosts: int = 100_000,
    ) -> None:
        if max_hosts < 1:
            raise ValueError("max_hosts must be >= 1")
        self._clock = clock
        self.max_hosts = max_hosts
        self.max_failures = 0
        self.window = 0.0
        self.ban_time = 0.0
        self.configure(max_failures, window, ban_time)
        # host -> recent failures as (time, username); insertion order is least recently failed first.
        self._failures: dict[str, deque[tuple[float, str | None]]] = {}
        # host -> time the ban ends; insertion order is ban order.
        self._bans: dict[str, float] = {}

    def configure(self, max_failures: int, window: float, ban_time: float) -> None:
        """Apply new limits (config reload); existing bans keep their end time."""
        if max_failures < 1 or window <= 0 or ban_time < 0:
            raise ValueError("max_failures must be >= 1, window > 0 and ban_time >= 0")
        self.max_failures = max_failures
        self.window = window
        self.ban_time = ban_time

    def is_banned(self, host: str) -> bool:
        """Whether requests from ``host`` are to be refused now."""
        until = self._bans.get(host)
        if until is None:
            return False
        if self._clock.seconds() >= until:
            del self._bans[host]
            return False
        return True

    def record_failure(self, host: str, username: str | None) -> bool:
        """Note a failed authentication from ``host``; True when this failure caused a ban."""
        now = self._clock.seconds()
        if self.is_banned(host):
            return False
        self._purge(now)
        history = self._failures.pop(host, None)
        if history is None:
            history = deque()
            while len(self._failures) >= self.max_hosts:
                del self._failures[next(iter(self._failures))]
        horizon = now - self.window
        while history and history[0][0] <= horizon:
            history.popleft()
        # Attacker-chosen: keep only a bounded prefix.
        history.append((now, None if username is None else username[:_MAX_NAME_LEN]))
        if len(history) < self.max_failures:
            self._failures[host] = history
            return False
        self._ban(host, now, history)
        return True

    def record_success(self, host: str) -> None:
        """Forget the failures of ``host`` (a good authentication); a running ban stays."""
        self._failures.pop(host, None)

    @property
    def tracked_hosts(self) -> int:
        """How many addresses have failures on record (for tests and statistics)."""
        return len(self._failures)

    @property
    def banned_hosts(self) -> int:
        """How many bans are on record, including expired ones not yet purged."""
        return len(self._bans)

    def _ban(self, host: str, now: float, history: deque[tuple[float, str | None]]) -> None:
        bans = self._bans
        while len(bans) >= self.max_hosts:
            del bans[next(iter(bans))]
        bans[host] = now + self.ban_time
        names = sorted({_printable(u) for _, u in history if u is not None})
        shown = ", ".join(names[:_MAX_NAMES])
        if len(names) > _MAX_NAMES:
            shown += f" (+{len(names) - _MAX_NAMES} more)"
        self.log.warn(
            "security: banned {host} for {ban_time:.0f}s after {failures} failed authentications"
            " within {window:.0f}s; extensions tried: {extensions}",
            host=host, ban_time=self.ban_time, failures=len(history), window=self.window,
            extensions=shown or "(none)", security_event="ban", usernames=names,
        )

    def _purge(self, now: float) -> None:
        """Drop failure histories whose newest failure left the window, and expired bans."""
        failures = self._failures
        horizon = now - self.window
        while failures:
            first = next(iter(failures))
            if failures[first][-1][0] > horizon:
                break
            del failures[first]
        bans = self._bans
        while bans:
            first = next(iter(bans))
            if bans[first] > now:
                break
            del bans[first]
