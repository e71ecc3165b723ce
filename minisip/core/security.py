"""Protection against password guessing: ban an address after repeated failed authentications, and
throttle guessing at one extension from many addresses.

State is kept per source address and per user name, in memory, bounded: failures older than the
window and expired bans and locks are purged lazily, and at most ``max_hosts`` addresses and
``max_users`` user names are tracked (the least recently seen are forgotten first), so a flood of
distinct addresses or names cannot exhaust memory.

Some addresses are never banned (``exempt``): configured trunks, and addresses where an extension
registered over TCP or TLS (a connection cannot come from a spoofed address). What a ban blocks is
decided by the core (see docs/security.md): never responses to our own requests nor requests of
dialogs already up.
"""

from __future__ import annotations

from collections import deque
from typing import Protocol

from twisted.logger import Logger

from minisip.sip.validate import escape_controls

__all__ = ["FailureTracker"]

# How many distinct extensions (or addresses) to name in one event, and how long each may be.
_MAX_NAMES = 10
_MAX_NAME_LEN = 64


class _Clock(Protocol):
    def seconds(self) -> float: ...


def _printable(name: str) -> str:
    """An attacker-chosen user name made safe for one log line."""
    return escape_controls(name[:_MAX_NAME_LEN])


def _shown(names: list[str]) -> str:
    shown = ", ".join(names[:_MAX_NAMES])
    if len(names) > _MAX_NAMES:
        shown += f" (+{len(names) - _MAX_NAMES} more)"
    return shown


class FailureTracker:
    """Counts failed authentications per address and per user name.

    - An address failing ``max_failures`` times within ``window`` seconds is banned for ``ban_time``
      seconds, unless exempt. Loopback is not exempt by default.
    - A user name failing ``user_max_failures`` times within ``user_window`` seconds, from any
      addresses, is throttled for ``user_lock_time`` seconds: the core then refuses answers for it
      from addresses where it is not registered, without checking them (``is_throttled``). Unknown
      names are counted the same way, so throttling tells nothing about which extensions exist.
    Bans and throttles are logged once each, as warnings starting with "security:" (namespace
    ``minisip.security``, field ``security_event``).
    """

    def __init__(
        self, clock: _Clock, max_failures: int = 5, window: float = 60.0, ban_time: float = 600.0,
        max_hosts: int = 100_000, *, user_max_failures: int = 10, user_window: float = 60.0,
        user_lock_time: float = 300.0, max_users: int = 10_000,
    ) -> None:
        if max_hosts < 1 or max_users < 1:
            raise ValueError("max_hosts and max_users must be >= 1")
        # An instance attribute: a Logger on the class would log under the class's own namespace.
        self.log = Logger(namespace="minisip.security")
        self._clock = clock
        self.max_hosts = max_hosts
        self.max_users = max_users
        self.max_failures = 0
        self.window = 0.0
        self.ban_time = 0.0
        self.user_max_failures = 0
        self.user_window = 0.0
        self.user_lock_time = 0.0
        self.configure(max_failures, window, ban_time, user_max_failures=user_max_failures,
                       user_window=user_window, user_lock_time=user_lock_time)
        # host -> recent failures as (time, username); insertion order is least recently failed first.
        self._failures: dict[str, deque[tuple[float, str | None]]] = {}
        # host -> time the ban ends; insertion order is ban order.
        self._bans: dict[str, float] = {}
        # user name -> recent failures as (time, host); insertion order is least recently failed first.
        self._user_failures: dict[str, deque[tuple[float, str]]] = {}
        # user name -> time the throttle ends; insertion order is lock order.
        self._locks: dict[str, float] = {}
        # host -> end of its exemption (None: until unexempt).
        self._exempt: dict[str, float | None] = {}

    def configure(self, max_failures: int, window: float, ban_time: float, *, user_max_failures: int | None = None,
                  user_window: float | None = None, user_lock_time: float | None = None) -> None:
        """Apply new limits (config reload); existing bans and throttles keep their end time."""
        user_max_failures = self.user_max_failures if user_max_failures is None else user_max_failures
        user_window = self.user_window if user_window is None else user_window
        user_lock_time = self.user_lock_time if user_lock_time is None else user_lock_time
        if max_failures < 1 or window <= 0 or ban_time < 0:
            raise ValueError("max_failures must be >= 1, window > 0 and ban_time >= 0")
        if user_max_failures < 1 or user_window <= 0 or user_lock_time < 0:
            raise ValueError("user_max_failures must be >= 1, user_window > 0 and user_lock_time >= 0")
        self.max_failures = max_failures
        self.window = window
        self.ban_time = ban_time
        self.user_max_failures = user_max_failures
        self.user_window = user_window
        self.user_lock_time = user_lock_time

    # -- exemptions ----------------------------------------------------------------------------
    def exempt(self, host: str, until: float | None = None) -> None:
        """Never ban ``host`` (until the clock reads ``until``, or until ``unexempt``); lifts a running ban.

        For configured trunks (the address they resolve to) and for addresses where an extension
        registered over a connection-oriented transport. A later end time extends an earlier one.
        """
        if host in self._exempt:
            current = self._exempt[host]
            if current is None or (until is not None and until <= current):
                return
        self._exempt[host] = until
        self._bans.pop(host, None)
        self._failures.pop(host, None)

    def unexempt(self, host: str) -> None:
        """End an exemption (e.g. a trunk's address changed)."""
        self._exempt.pop(host, None)

    def is_exempt(self, host: str) -> bool:
        if host not in self._exempt:
            return False
        until = self._exempt[host]
        if until is not None and self._clock.seconds() >= until:
            del self._exempt[host]
            return False
        return True

    # -- bans ----------------------------------------------------------------------------------
    def is_banned(self, host: str) -> bool:
        """Whether ``host`` is banned now (what that blocks is the core's decision)."""
        until = self._bans.get(host)
        if until is None:
            return False
        if self._clock.seconds() >= until:
            del self._bans[host]
            return False
        return not self.is_exempt(host)

    def record_failure(self, host: str, username: str | None) -> bool:
        """Note a failed authentication from ``host``; True when this failure caused a ban."""
        now = self._clock.seconds()
        if self.is_banned(host):
            return False
        if username is not None:
            self._user_failure(username[:_MAX_NAME_LEN], host, now)
        if self.is_exempt(host):
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
        """Forget the failures of ``host`` (a good authentication); a running ban stays, and so do the
        failures counted against the user name (a phone's success must not hide a guessing attack)."""
        self._failures.pop(host, None)

    # -- throttling per user name ----------------------------------------------------------------
    def is_throttled(self, username: str) -> bool:
        """Whether answers for ``username`` from addresses where it is not registered are refused now."""
        until = self._locks.get(username[:_MAX_NAME_LEN])
        if until is None:
            return False
        if self._clock.seconds() >= until:
            del self._locks[username[:_MAX_NAME_LEN]]
            return False
        return True

    def _user_failure(self, username: str, host: str, now: float) -> None:
        failures = self._user_failures
        history = failures.pop(username, None)
        if history is None:
            history = deque()
            self._purge_users(now)
            while len(failures) >= self.max_users:
                del failures[next(iter(failures))]
        horizon = now - self.user_window
        while history and history[0][0] <= horizon:
            history.popleft()
        history.append((now, host))
        while len(history) > self.user_max_failures:
            history.popleft()
        failures[username] = history
        if len(history) >= self.user_max_failures and not self.is_throttled(username):
            self._lock(username, now, history)

    def _lock(self, username: str, now: float, history: deque[tuple[float, str]]) -> None:
        locks = self._locks
        while len(locks) >= self.max_users:
            del locks[next(iter(locks))]
        locks[username] = now + self.user_lock_time
        hosts = sorted({h for _, h in history})
        self.log.warn(
            "security: extension {username} throttled for {lock_time:.0f}s after {failures} failed"
            " authentications within {window:.0f}s from {count} addresses ({hosts}); until then only"
            " addresses where it is registered may authenticate as it",
            username=_printable(username), lock_time=self.user_lock_time, failures=len(history),
            window=self.user_window, count=len(hosts), hosts=_shown(hosts), security_event="throttle",
            addresses=hosts,
        )

    # -- statistics ------------------------------------------------------------------------------
    @property
    def tracked_hosts(self) -> int:
        """How many addresses have failures on record (for tests and statistics)."""
        return len(self._failures)

    @property
    def banned_hosts(self) -> int:
        """How many bans are on record, including expired ones not yet purged."""
        return len(self._bans)

    @property
    def tracked_users(self) -> int:
        """How many user names have failures on record."""
        return len(self._user_failures)

    # -- internals -------------------------------------------------------------------------------
    def _ban(self, host: str, now: float, history: deque[tuple[float, str | None]]) -> None:
        bans = self._bans
        while len(bans) >= self.max_hosts:
            del bans[next(iter(bans))]
        bans[host] = now + self.ban_time
        names = sorted({_printable(u) for _, u in history if u is not None})
        self.log.warn(
            "security: banned {host} for {ban_time:.0f}s after {failures} failed authentications"
            " within {window:.0f}s; extensions tried: {extensions}",
            host=host, ban_time=self.ban_time, failures=len(history), window=self.window,
            extensions=_shown(names) or "(none)", security_event="ban", usernames=names,
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

    def _purge_users(self, now: float) -> None:
        failures = self._user_failures
        horizon = now - self.user_window
        while failures:
            first = next(iter(failures))
            if failures[first][-1][0] > horizon:
                break
            del failures[first]
        locks = self._locks
        while locks:
            first = next(iter(locks))
            if locks[first] > now:
                break
            del locks[first]
