"""FIFO timer queues: timers of one fixed delay and one callback share a single reactor DelayedCall.

Every SIP timer (transaction layer) and the call layer's fixed timers (ring, CANCEL, linger) go through
``TimerQueues.after``: starting or cancelling one costs O(1). Twisted's heap of DelayedCalls (a Python
comparison per step) held tens of thousands of 32-second timers under load, and pushing onto it was a
tenth of the CPU per call. Pure: takes any clock with ``callLater`` and ``seconds``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

# A queued timer may fire up to this much early: the timers due within it share one wake-up.
_QUEUE_SLACK = 0.001


class IClock(Protocol):
    """The part of ``IReactorTime`` a timer queue uses."""

    def callLater(self, delay: float, f: Callable[..., object], /, *args: object) -> Any: ...

    def seconds(self) -> float: ...


class QueuedTimer:
    """One timer waiting in a ``TimerQueue``; ``active`` and ``cancel`` as on an IDelayedCall."""

    __slots__ = ("due", "owner", "queue")

    def __init__(self, due: float, owner: object, queue: TimerQueue) -> None:
        self.due = due
        self.owner: object | None = owner
        self.queue = queue

    def active(self) -> bool:
        return self.owner is not None

    def cancel(self) -> None:
        if self.owner is not None:
            self.owner = None
            self.queue._cancelled()


class TimerQueue:
    """Timers with one fixed delay and one callback: they expire in the order they were started, so
    one DelayedCall (for the earliest) serves them all. Cancelled ones are dropped when they reach the
    front, or all at once when none is left running (then no DelayedCall stays pending either)."""

    __slots__ = ("call", "clock", "delay", "entries", "firing", "func", "live")

    def __init__(self, clock: IClock, delay: float, func: Callable[[object], None]) -> None:
        self.clock = clock
        self.delay = delay
        self.func = func
        self.entries: deque[QueuedTimer] = deque()
        self.live = 0
        self.call: Any = None
        self.firing = False

    def start(self, owner: object) -> QueuedTimer:
        timer = QueuedTimer(self.clock.seconds() + self.delay, owner, self)
        self.entries.append(timer)
        self.live += 1
        if self.call is None and not self.firing:
            self.call = self.clock.callLater(self.delay, self._fire)
        return timer

    def _cancelled(self) -> None:
        self.live -= 1
        if self.live == 0:
            self.entries.clear()
            if self.call is not None:
                self.call.cancel()
                self.call = None

    def _fire(self) -> None:
        self.call = None
        self.firing = True
        entries = self.entries
        try:
            limit = self.clock.seconds() + _QUEUE_SLACK
            while entries:
                timer = entries[0]
                owner = timer.owner
                if owner is not None and timer.due > limit:
                    break
                entries.popleft()
                if owner is not None:
                    timer.owner = None
                    self.live -= 1
                    self.func(owner)
        finally:
            self.firing = False
            if entries and self.call is None:
                delay = max(0.0, entries[0].due - self.clock.seconds() - _QUEUE_SLACK / 2)
                self.call = self.clock.callLater(delay, self._fire)


class TimerQueues:
    """One ``TimerQueue`` per (delay, function)."""

    __slots__ = ("clock", "queues")

    def __init__(self, clock: IClock) -> None:
        self.clock = clock
        self.queues: dict[tuple[float, Callable[..., None]], TimerQueue] = {}

    def after(self, delay: float, func: Callable[..., None], owner: object) -> QueuedTimer:
        """Call ``func(owner)`` in ``delay`` seconds (up to a millisecond early); the handle has
        ``cancel`` and ``active``. ``func`` must be the same object each time (a function, an unbound
        method, or a method of a long-lived object): a method bound to each owner would give each its
        own queue."""
        queue = self.queues.get((delay, func))
        if queue is None:
            queue = self.queues[(delay, func)] = TimerQueue(self.clock, delay, func)
        return queue.start(owner)
