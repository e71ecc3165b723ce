"""A fake call layer for the WSS server's tests: it records what browsers ask and can answer on a script."""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet import defer
from zope.interface import implementer

from minisip.webrtc.gateway import IBrowserCalls, IBrowserPeer


@implementer(IBrowserCalls)
class FakeBrowserCalls:
    """Records every request as (method, peer, args...) and fires ``wait(method)`` Deferreds.

    ``on_start`` (peer, call_id) runs inside start_call, to answer at once (e.g. refuse with 403);
    ``fail_with`` makes start_call raise it.
    """

    def __init__(self) -> None:
        self.requests: list[tuple[Any, ...]] = []
        self.on_start: Callable[[IBrowserPeer, str], None] | None = None
        self.fail_with: Exception | None = None
        self._waiting: dict[str, list[defer.Deferred[tuple[Any, ...]]]] = {}
        self._seen: list[int] = []  # indexes of requests already handed to a waiter

    def wait(self, method: str) -> defer.Deferred[tuple[Any, ...]]:
        """Fires with the next request of ``method`` (or the first one already recorded and not yet waited for)."""
        for index, request in enumerate(self.requests):
            if request[0] == method and index not in self._seen:
                self._seen.append(index)
                return defer.succeed(request)
        d: defer.Deferred[tuple[Any, ...]] = defer.Deferred()
        self._waiting.setdefault(method, []).append(d)
        return d

    def _record(self, *request: Any) -> None:
        self.requests.append(request)
        waiting = self._waiting.get(request[0])
        if waiting:
            self._seen.append(len(self.requests) - 1)
            waiting.pop(0).callback(request)

    def methods(self) -> list[str]:
        return [request[0] for request in self.requests]

    def start_call(self, peer: IBrowserPeer, call_id: str, caller: str, password: str, callee: str,
                   sdp: str) -> None:
        self._record("start_call", peer, call_id, caller, password, callee, sdp)
        if self.fail_with is not None:
            raise self.fail_with
        if self.on_start is not None:
            self.on_start(peer, call_id)

    def hangup(self, peer: IBrowserPeer, call_id: str, status: int | None, reason: str) -> None:
        self._record("hangup", peer, call_id, status, reason)

    def dtmf(self, peer: IBrowserPeer, call_id: str, digits: str, duration: int) -> None:
        self._record("dtmf", peer, call_id, digits, duration)

    def login(self, peer: IBrowserPeer, user: str, password: str) -> None:
        self._record("login", peer, user, password)
        if self.on_login is not None:
            self.on_login(peer, user, password)

    def logout(self, peer: IBrowserPeer, user: str) -> None:
        self._record("logout", peer, user)

    def answer(self, peer: IBrowserPeer, call_id: str, sdp: str) -> None:
        self._record("answer", peer, call_id, sdp)

    on_login: Callable[[IBrowserPeer, str, str], None] | None = None
