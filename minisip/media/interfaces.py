"""The seams of minisip/media: what the relay asks of a per-endpoint transform (plain, SDES-SRTP, DTLS-SRTP)."""

from __future__ import annotations

from typing import Callable

from zope.interface import Attribute, Interface


class IMediaTransform(Interface):
    """How one relay endpoint turns wire datagrams into plain RTP/RTCP and back.

    One object per endpoint (one side of a call's audio stream). The relay demultiplexes every datagram
    by its first byte (RFC 7983): 0-3 STUN and 20-63 DTLS go to ``control``; 128-191 is RTP or RTCP
    (RTCP when the second byte & 0x7f is 64-95, RFC 5761) and goes to the unprotect methods.
    """

    secure = Attribute("True when a packet that unprotects proves its sender knows the keys (SRTP, "
                       "DTLS-SRTP): the relay may latch to the address of the first such packet.")

    def attach(send: Callable[[bytes], None]) -> None:  # noqa: N805
        """Called once by the relay before anything else: ``send(datagram)`` sends to the peer's current
        address (latched, or the one from its SDP). A DTLS client sends its ClientHello through it from
        ``start``; DTLS retransmissions use it too (timers on the clock given to the constructor)."""

    def start() -> None:  # noqa: N805
        """Begin: a DTLS client starts its handshake; plain and SDES do nothing."""

    def ready() -> bool:  # noqa: N805
        """True once keys are in place (always for plain and SDES; after the DTLS handshake)."""

    def control(data: bytes, addr: tuple[str, int]) -> tuple[list[bytes], bool]:  # noqa: N805
        """A STUN or DTLS datagram from ``addr``. Returns (replies to send back to ``addr``, proven):
        proven is True when the datagram proves ``addr`` is the peer (a STUN binding request with a
        valid MESSAGE-INTEGRITY for our ICE credentials): the relay may latch to it. Never raises on bad
        input: garbage gives ([], False). A stray ClientHello after the handshake must not break keys."""

    def unprotect_rtp(data: bytes) -> bytes | None:  # noqa: N805
        """Plain RTP, or None to drop (authentication or replay failure, not ready, malformed)."""

    def unprotect_rtcp(data: bytes) -> bytes | None:  # noqa: N805
        """Plain RTCP, or None to drop."""

    def protect_rtp(data: bytes) -> bytes | None:  # noqa: N805
        """The wire form of plain RTP ``data``, or None when not ready (the relay drops it)."""

    def protect_rtcp(data: bytes) -> bytes | None:  # noqa: N805
        """The wire form of plain RTCP ``data``, or None when not ready."""

    def close() -> None:  # noqa: N805
        """Stop timers, free crypto state. Idempotent."""
