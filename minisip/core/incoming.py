"""A request offered to the features' IRequestHandlers before the core handles it (minisip.api exports it)."""

from __future__ import annotations

from typing import Any, Iterable

from minisip.sip.message import Request
from minisip.sip.types import Addr


class IncomingRequest:
    """A request offered to IRequestHandlers before the core handles it."""

    def __init__(self, core: Any, txn: Any, request: Request, leg: Any) -> None:
        self._core = core
        self._txn = txn
        self.request = request
        self.method = request.method
        self.body = request.body
        self.content_type = request.content_type
        self.source: Addr = txn.source
        self.in_dialog = request.to_tag is not None
        self._leg = leg
        self.answered = False

    @property
    def dialog_exists(self) -> bool:
        return self._leg is not None and self._leg.state != "terminated"

    @property
    def call(self) -> Any:
        """The call of the dialog (read-only), or None."""
        return self._leg.call.info if self._leg is not None else None

    def touch(self) -> None:
        """Record dialog activity (for supervision)."""
        if self._leg is not None:
            self._leg.call.touch()

    def respond(self, status: int, reason: str | None = None, headers: Iterable[tuple[str, str]] = (),
                body: bytes = b"") -> None:
        self.answered = True
        self._core.respond(self._txn, self.request, status, reason, list(headers), body)
