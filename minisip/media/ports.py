"""The relay's UDP port pool: even RTP ports, RTP+1 for RTCP, over a configured range.

The pool only does accounting and retries; binding is a function given to it (the relay passes one
that calls ``listenUDP``), so the accounting is testable without sockets. A port the OS refuses is
skipped and goes to the back of the queue, since the process holding it may let go later.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Callable, Generic, TypeVar

H = TypeVar("H")


class PoolExhausted(Exception):
    """No port pair could be allocated: the pool is empty or the OS refused every port tried."""


def parse_port_range(text: str) -> tuple[int, int]:
    """``"20000-29999"`` -> (20000, 29999); raises ValueError saying what is wrong."""
    low_text, sep, high_text = text.strip().partition("-")
    if not sep:
        raise ValueError(f"port range {text!r} is not LOW-HIGH")
    try:
        low, high = int(low_text), int(high_text)
    except ValueError:
        raise ValueError(f"port range {text!r} is not two numbers LOW-HIGH") from None
    check_port_range(low, high)
    return low, high


def check_port_range(low: int, high: int) -> None:
    """Raise ValueError unless [low, high] is inside 1024-65535 and holds one even/odd pair."""
    if not 1024 <= low <= 65535 or not 1024 <= high <= 65535:
        raise ValueError(f"port range {low}-{high} must lie within 1024-65535")
    first = low + (low & 1)
    if first + 1 > high:
        raise ValueError(f"port range {low}-{high} holds no even RTP port with its RTCP port")


@dataclass(slots=True, eq=False)
class PortLease(Generic[H]):
    """Ports held by one endpoint: the even RTP port and, without rtcp-mux, RTP+1 for RTCP.

    The odd port stays reserved even with rtcp-mux so that a pair never has to be split.
    """

    rtp_port: int
    rtp: H
    rtcp: H | None
    released: bool = False

    @property
    def rtcp_port(self) -> int:
        """Where RTCP is received: RTP+1, or the RTP port itself with rtcp-mux."""
        return self.rtp_port if self.rtcp is None else self.rtp_port + 1


class PortPool(Generic[H]):
    """Even/odd port pairs in [low, high], handed out oldest-freed first.

    ``bind(port)`` returns a handle (a listening port) or raises OSError when the OS refuses;
    ``unbind(handle)`` closes it. Freed pairs go to the back of the queue so a port is not reused
    while stray packets of its previous call may still arrive.
    """

    def __init__(
        self,
        low: int,
        high: int,
        bind: Callable[[int], H],
        unbind: Callable[[H], None],
        max_attempts: int = 64,
    ) -> None:
        check_port_range(low, high)
        self.low = low
        self.high = high
        self._bind = bind
        self._unbind = unbind
        self.max_attempts = max_attempts
        first = low + (low & 1)
        self._free: deque[int] = deque(range(first, high, 2))
        self.size = len(self._free)
        self.refused = 0

    @property
    def free(self) -> int:
        """Pairs not leased (ports the OS refused count as free: they are retried later)."""
        return len(self._free)

    @property
    def in_use(self) -> int:
        """Pairs currently leased."""
        return self.size - len(self._free)

    def allocate(self, rtcp_mux: bool = False) -> PortLease[H]:
        """Bind the next free pair (only its RTP port with rtcp-mux); raises PoolExhausted."""
        attempts = min(self.max_attempts, len(self._free))
        for _ in range(attempts):
            port = self._free.popleft()
            try:
                rtp = self._bind(port)
            except OSError:
                self._refuse(port)
                continue
            rtcp = None
            if not rtcp_mux:
                try:
                    rtcp = self._bind(port + 1)
                except OSError:
                    self._unbind(rtp)
                    self._refuse(port)
                    continue
            return PortLease(port, rtp, rtcp)
        if not self._free:
            raise PoolExhausted(f"all {self.size} port pairs of {self.low}-{self.high} are in use")
        raise PoolExhausted(f"the OS refused the {attempts} port pairs tried in {self.low}-{self.high}")

    def _refuse(self, port: int) -> None:
        self.refused += 1
        self._free.append(port)

    def release(self, lease: PortLease[H]) -> None:
        """Close the lease's ports and return its pair to the pool; a second call does nothing."""
        if lease.released:
            return
        lease.released = True
        try:
            self._unbind(lease.rtp)
            if lease.rtcp is not None:
                self._unbind(lease.rtcp)
        finally:
            self._free.append(lease.rtp_port)
