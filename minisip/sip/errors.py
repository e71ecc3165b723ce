"""Errors raised by the pure SIP code, each with the status a server should answer."""

from __future__ import annotations

from typing import Any


class RemoteProtocolError(Exception):
    """The peer sent something we cannot accept; ``status`` is the response to send (None = drop)."""

    def __init__(self, reason: str, status: int | None = 400, extra_headers: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.extra_headers = extra_headers


class SIPParseError(RemoteProtocolError):
    """The bytes are not a well-formed SIP message.

    ``partial`` is the Request read so far (start line and every readable header) when a request
    line could be read, so a server can still answer ``status`` with its Via/From/To/Call-ID/CSeq;
    it is None for responses and unreadable start lines (``status`` is then None: drop).
    """

    def __init__(self, reason: str, status: int | None = 400, extra_headers: tuple[tuple[str, str], ...] = (),
                 partial: Any = None) -> None:
        super().__init__(reason, status, extra_headers)
        self.partial = partial
