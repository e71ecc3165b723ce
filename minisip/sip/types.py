"""Small value types shared by the pure SIP layers and the transports."""

from __future__ import annotations

from dataclasses import dataclass

RELIABLE = frozenset({"tcp", "tls", "ws", "wss"})


@dataclass(frozen=True, slots=True)
class Addr:
    """Where a message came from or goes to.

    ``transport`` is lower case (udp, tcp, tls, ws, wss); ``conn`` identifies the stream connection a
    request arrived on (an opaque int from the transport manager), so the response can go back on it
    (RFC 3261 18.2.2). ``conn`` is None for UDP or when any connection to host:port will do.
    """

    transport: str
    host: str
    port: int
    conn: int | None = None

    @property
    def reliable(self) -> bool:
        return self.transport in RELIABLE

    def __str__(self) -> str:
        h = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport}:{h}:{self.port}"
