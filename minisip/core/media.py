"""The media seam's default and its helpers: the SDP of a body, and calling a policy that may answer later.

``IMediaPolicy`` (minisip.interfaces) is called from one place, ``Call._media``; this module holds what
that needs and the pass-through policy used until a media relay is configured.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet import defer
from zope.interface import implementer

from minisip.interfaces import IMediaPolicy
from minisip.sip.body import extract_sdp, replace_sdp


class MediaRefused(Exception):
    """Raised (or failed with) by an IMediaPolicy: the SDP cannot be served; ``status`` 488 (Not
    Acceptable Here: nothing in common, encryption required...) or 503 (no ports left)."""

    def __init__(self, status: int = 488, reason: str = "Not Acceptable Here") -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason


@implementer(IMediaPolicy)
class PassthroughMedia:
    """SDP crosses unchanged: the phones send media to each other."""

    def offer(self, call: Any, from_leg: Any, to_leg: Any, sdp: bytes) -> bytes:
        return sdp

    def answer(self, call: Any, from_leg: Any, to_leg: Any, sdp: bytes) -> bytes:
        return sdp

    def leg_gone(self, call: Any, leg: Any) -> None:
        pass

    def call_ended(self, call: Any) -> None:
        pass


def sdp_of(content_type: str | None, body: bytes) -> bytes | None:
    """The SDP in a body (application/sdp, or a part of multipart/mixed), or None."""
    if not body or not content_type:
        return None
    try:
        return extract_sdp(content_type, body)
    except ValueError:
        return None


def with_sdp(content_type: str | None, body: bytes, sdp: bytes) -> bytes:
    """``body`` with its SDP replaced by ``sdp`` (the whole body for application/sdp)."""
    return replace_sdp(content_type, body, sdp)


def then(result: Any, ok: Callable[[Any], None], refused: Callable[[MediaRefused], None],
         broken: Callable[[Any], None]) -> None:
    """Continue with a policy's result now, or when its Deferred fires: ``ok(sdp)``, ``refused(e)`` for
    a MediaRefused, ``broken(failure)`` for anything else."""
    if not isinstance(result, defer.Deferred):
        ok(result)
        return

    def failed(f: Any) -> None:
        if f.check(MediaRefused):
            refused(f.value)
        else:
            broken(f)

    result.addCallbacks(ok, failed)
    result.addErrback(broken)
