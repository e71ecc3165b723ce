"""SIP transactions (RFC 3261 section 17, with the RFC 6026 Accepted states).

Pure: bytes leave through a ``send(data, addr)`` callback, time comes from an injected clock (anything
with ``callLater`` and ``seconds``, such as a Twisted reactor or ``twisted.internet.task.Clock``), and
the transaction user (the core) is told about requests, ACKs for 2xx and stray responses.

Transactions live in dicts keyed the way RFC 3261 17.1.3 and 17.2.3 match messages, so every message
costs one or two lookups. A transaction leaves its table as soon as it terminates and cancels the
timers it no longer needs, so ``len(layer)`` returning to 0 proves nothing leaked.

Memory: a UDP registrar holds every REGISTER transaction for Timer J (32 s) after answering it, so a
transaction that has sent its final response keeps only what absorbing retransmissions needs (the
response bytes, its key, the source, one timer), not the parsed request or Response. Timers with a
fixed delay (B, D, F, H, I, J, K, L, M) expire in the order they were started: they wait in one FIFO
queue per delay served by a single DelayedCall, instead of costing a DelayedCall each.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Protocol

from minisip.sip.ids import random_hex
from minisip.sip.message import Request, Response, Via, make_response
from minisip.sip.timers import QueuedTimer, TimerQueues
from minisip.sip.types import Addr

__all__ = [
    "ACCEPTED",
    "CALLING",
    "COMPLETED",
    "CONFIRMED",
    "PROCEEDING",
    "TERMINATED",
    "TRYING",
    "ClientTransaction",
    "IClock",
    "IDelayedCall",
    "ServerTransaction",
    "Timers",
    "TransactionLayer",
    "TransactionUser",
    "new_branch",
]

BRANCH_COOKIE = "z9hG4bK"

# State names (RFC 3261 figures 5-8, RFC 6026 figures 5 and 7).
TRYING = "Trying"
CALLING = "Calling"
PROCEEDING = "Proceeding"
ACCEPTED = "Accepted"
COMPLETED = "Completed"
CONFIRMED = "Confirmed"
TERMINATED = "Terminated"

# Timer D's floor on unreliable transports (RFC 3261 17.1.1.2: "at least 32 seconds").
TIMER_D_MIN = 32.0

_intern = sys.intern


class IDelayedCall(Protocol):
    def cancel(self) -> None: ...

    def active(self) -> bool: ...


class IClock(Protocol):
    """The part of ``IReactorTime`` the transaction layer uses."""

    def callLater(self, delay: float, f: Callable[..., object], /, *args: object) -> IDelayedCall: ...

    def seconds(self) -> float: ...


@dataclass(frozen=True, slots=True)
class Timers:
    """RFC 3261 timer base values, in seconds (table 4)."""

    T1: float = 0.5
    T2: float = 4.0
    T4: float = 5.0


class TransactionUser(Protocol):
    """What the layer tells the core."""

    def request_received(self, txn: ServerTransaction, request: Request) -> None:
        """A new request (never ACK), CANCEL included; answer it with ``txn.respond``."""

    def ack_received(self, request: Request, source: Addr) -> None:
        """An ACK matching no transaction (the ACK for a 2xx), or one reaching an INVITE transaction in
        Accepted. Any 2xx retransmission for its (Call-ID, CSeq number) has already been stopped."""

    def stray_response(self, response: Response, source: Addr) -> None:
        """A response matching no client transaction (typically a retransmitted 2xx after the INVITE
        transaction ended, or a 2xx after a failure: the TU ACKs it, and sends BYE if it wants no dialog)."""


def new_branch() -> str:
    """A fresh RFC 3261 branch: the magic cookie and 64 random bits."""
    return BRANCH_COOKIE + random_hex(8)


def _cancel(handle: IDelayedCall | None) -> None:
    if handle is not None and handle.active():
        handle.cancel()


class ServerTransaction:
    """An INVITE or non-INVITE server transaction (RFC 3261 17.2, RFC 6026 7.1)."""

    __slots__ = (
        "_interval",
        "_key",
        "_last",
        "_layer",
        "_reliable",
        "_retrans",
        "_timeout",
        "is_invite",
        "last_response",
        "request",
        "source",
        "state",
    )

    def __init__(self, layer: TransactionLayer, key: Hashable, request: Request, source: Addr, is_invite: bool) -> None:
        # The request until the final response; the last response only on INVITE transactions (ACK
        # matching needs its To tag): a non-INVITE one keeps the bytes alone.
        self.request: Request | None = request
        self.source = source
        self.is_invite = is_invite
        self.state = PROCEEDING if is_invite else TRYING
        self.last_response: Response | None = None
        self._layer = layer
        self._key = key
        self._last: bytes | None = None
        self._reliable = source.reliable
        self._interval = 0.0
        self._retrans: IDelayedCall | None = None
        self._timeout: IDelayedCall | None = None

    def __repr__(self) -> str:
        method = "INVITE" if self.is_invite else self.request.method if self.request is not None else "non-INVITE"
        return f"<ServerTransaction {method} {self.state} {self.source}>"

    def respond(self, response: Response) -> None:
        """Send a response to ``source`` and move the state machine.

        Responses that the current state cannot send (anything after a final non-2xx, a second final
        on a non-INVITE, anything once terminated) are ignored: they lost a race, typically with CANCEL.
        """
        status = response.status
        state = self.state
        layer = self._layer
        if self.is_invite:
            if state == PROCEEDING:
                data = response.to_bytes()
                self._last = data
                self.last_response = response
                if status >= 300:
                    self.state = COMPLETED
                    self.request = None
                    t1 = layer.timers.T1
                    if not self._reliable:
                        self._interval = t1
                        self._retrans = layer.after(t1, ServerTransaction._timer_g, self)
                    self._timeout = layer.after(64 * t1, ServerTransaction._timer_h, self)
                elif status >= 200:
                    self.state = ACCEPTED
                    self.request = None
                    self._timeout = layer.after(64 * layer.timers.T1, ServerTransaction._timer_l, self)
                layer.send(data, self.source)
            elif state == ACCEPTED and 200 <= status < 300:
                # The TU core retransmitting its 2xx, or a 2xx with another tag (RFC 6026 7.1).
                layer.send(response.to_bytes(), self.source)
            return
        if state == TRYING or state == PROCEEDING:
            data = response.to_bytes()
            self._last = data
            if status < 200:
                self.last_response = response
                self.state = PROCEEDING
                layer.send(data, self.source)
                return
            self.state = COMPLETED
            self.request = None
            self.last_response = None
            layer.send(data, self.source)
            if self._reliable:
                self._terminate()
            elif self.state == COMPLETED:
                self._timeout = layer.after(64 * layer.timers.T1, ServerTransaction._timer_j, self)

    def respond_statelessly(self, response: Response) -> None:
        """Send a final response once and forget the transaction at once: no retransmission, no
        Timer G/H/J, no ACK matching (RFC 3261 8.2.7, 16.11).

        For a challenge to an unauthenticated request: a retransmission of the request (the client's
        own, when the answer was lost) finds no transaction and is answered afresh by the TU, so a
        spoofed UDP source gets one answer per request it is sent, never a burst of copies.
        Ignored, like ``respond``, once a final response was sent.
        """
        if response.status < 200:
            raise ValueError("only a final response can be sent statelessly")
        if self.state not in (TRYING, PROCEEDING):
            return
        data = response.to_bytes()
        self._terminate()
        self._layer.send(data, self.source)

    def drop(self) -> None:
        """Forget the transaction without answering (e.g. the request that got its source banned)."""
        if self.state != TERMINATED:
            self._terminate()

    # -- events from the layer -----------------------------------------------------------------
    def _on_retransmission(self) -> None:
        # Proceeding: last provisional; Completed: the final. Trying, Accepted, Confirmed: absorbed.
        if (self.state == PROCEEDING or self.state == COMPLETED) and self._last is not None:
            self._layer.send(self._last, self.source)

    def _on_ack(self, ack: Request, source: Addr) -> None:
        state = self.state
        if state == COMPLETED:
            self.state = CONFIRMED
            _cancel(self._retrans)
            _cancel(self._timeout)
            self._retrans = None
            if self._reliable:
                self._terminate()
            else:
                self._timeout = self._layer.after(self._layer.timers.T4, ServerTransaction._timer_i, self)
        elif state == ACCEPTED:
            self._layer._ack_for_2xx(ack, source)
        # Proceeding (no final yet) and Confirmed: absorbed.

    # -- timers ---------------------------------------------------------------------------------
    def _timer_g(self) -> None:
        self._retrans = None
        if self.state != COMPLETED or self._last is None:
            return
        layer = self._layer
        self._interval = min(self._interval * 2, layer.timers.T2)
        self._retrans = layer.after(self._interval, ServerTransaction._timer_g, self)
        layer.send(self._last, self.source)

    def _timer_h(self) -> None:
        self._timeout = None
        self._terminate()

    def _timer_i(self) -> None:
        self._timeout = None
        self._terminate()

    def _timer_j(self) -> None:
        self._timeout = None
        self._terminate()

    def _timer_l(self) -> None:
        self._timeout = None
        self._terminate()

    def _terminate(self) -> None:
        self.state = TERMINATED
        _cancel(self._retrans)
        _cancel(self._timeout)
        self._retrans = self._timeout = None
        self._layer._forget_server(self)


class ClientTransaction:
    """An INVITE or non-INVITE client transaction (RFC 3261 17.1, RFC 6026 7.2)."""

    __slots__ = (
        "_ack",
        "_data",
        "_interval",
        "_key",
        "_layer",
        "_on_response",
        "_on_timeout",
        "_reliable",
        "_retrans",
        "_timeout",
        "is_invite",
        "request",
        "state",
        "target",
    )

    def __init__(self, layer: TransactionLayer, key: tuple[str, str], request: Request, target: Addr,
                 on_response: Callable[[Response], None], on_timeout: Callable[[], None]) -> None:
        # The request and its bytes until the final response (Timer D/K then needs neither).
        self.request: Request | None = request
        self.target = target
        self.is_invite = request.method == "INVITE"
        self.state = CALLING if self.is_invite else TRYING
        self._layer = layer
        self._key = key
        self._data = b""
        self._ack: bytes | None = None
        self._reliable = target.reliable
        self._interval = 0.0
        self._retrans: IDelayedCall | None = None
        self._timeout: IDelayedCall | None = None
        self._on_response = on_response
        self._on_timeout = on_timeout

    def __repr__(self) -> str:
        method = "INVITE" if self.is_invite else self.request.method if self.request is not None else "non-INVITE"
        return f"<ClientTransaction {method} {self.state} {self.target}>"

    def cancel_timers(self) -> None:
        """Abandon the transaction: stop every timer and forget it; no callback follows.

        For shutdown or a TU that no longer cares. Not for CANCEL: an INVITE being cancelled must keep
        its transaction so that the 487 gets ACKed.
        """
        if self.state != TERMINATED:
            self._terminate()

    def _start(self, data: bytes) -> None:
        layer = self._layer
        t1 = layer.timers.T1
        self._data = data
        if not self._reliable:
            self._interval = t1
            retransmit = ClientTransaction._timer_a if self.is_invite else ClientTransaction._timer_e
            self._retrans = layer.after(t1, retransmit, self)
        timeout = ClientTransaction._timer_b if self.is_invite else ClientTransaction._timer_f
        self._timeout = layer.after(64 * t1, timeout, self)
        layer.send(self._data, self.target)

    # -- responses ------------------------------------------------------------------------------
    def _on_response_received(self, response: Response, source: Addr) -> None:
        status = response.status
        state = self.state
        if self.is_invite:
            if state == CALLING or state == PROCEEDING:
                if status < 200:
                    if state == CALLING:
                        # Proceeding: no retransmission, and Timer B no longer applies (the TU runs its
                        # own no-answer timer).
                        self.state = PROCEEDING
                        self._stop_timers()
                elif status < 300:
                    self._stop_timers()
                    self.state = ACCEPTED
                    self._final()
                    self._timeout = self._layer.after(64 * self._layer.timers.T1, ClientTransaction._timer_m, self)
                else:
                    self._stop_timers()
                    self.state = COMPLETED
                    self._ack = self._build_ack(response).to_bytes()
                    self._final()
                    self._layer.send(self._ack, self.target)
                    if self._reliable:
                        self._terminate()
                    elif self.state == COMPLETED:
                        delay = max(TIMER_D_MIN, 64 * self._layer.timers.T1)
                        self._timeout = self._layer.after(delay, ClientTransaction._timer_d, self)
                self._on_response(response)
            elif state == ACCEPTED:
                if 200 <= status < 300:
                    self._on_response(response)
            elif state == COMPLETED:
                if status >= 300:
                    if self._ack is not None:
                        self._layer.send(self._ack, self.target)
                elif status >= 200:
                    # A 2xx after the transaction failed (e.g. a forking proxy): the TU ACKs and hangs up.
                    self._layer.tu.stray_response(response, source)
            return
        if state == TRYING or state == PROCEEDING:
            if status < 200:
                self.state = PROCEEDING
            else:
                self._stop_timers()
                self.state = COMPLETED
                self._final()
                if self._reliable:
                    self._terminate()
                else:
                    self._timeout = self._layer.after(self._layer.timers.T4, ClientTransaction._timer_k, self)
            self._on_response(response)
        # Completed: retransmitted finals are absorbed.

    def _final(self) -> None:
        """A final response arrived: the request is never sent again, drop it and its bytes."""
        self.request = None
        self._data = b""

    def _build_ack(self, response: Response) -> Request:
        """The ACK for a non-2xx final response (RFC 3261 17.1.1.3)."""
        req = self.request
        assert req is not None
        ack = Request("ACK", req.uri)
        ack.add("Via", str(req.top_via))
        for route in req.get_all("route"):
            ack.add("Route", route)
        ack.add("Max-Forwards", "70")
        ack.add("From", req.get("from") or "")
        ack.add("To", response.get("to") or req.get("to") or "")
        ack.add("Call-ID", req.call_id)
        ack.add("CSeq", f"{req.cseq[0]} ACK")
        return ack

    # -- timers ---------------------------------------------------------------------------------
    def _timer_a(self) -> None:
        self._retrans = None
        if self.state != CALLING:
            return
        self._interval *= 2
        self._retrans = self._layer.after(self._interval, ClientTransaction._timer_a, self)
        self._layer.send(self._data, self.target)

    def _timer_e(self) -> None:
        self._retrans = None
        state = self.state
        if state != TRYING and state != PROCEEDING:
            return
        t2 = self._layer.timers.T2
        self._interval = min(self._interval * 2, t2) if state == TRYING else t2
        self._retrans = self._layer.after(self._interval, ClientTransaction._timer_e, self)
        self._layer.send(self._data, self.target)

    def _timer_b(self) -> None:
        self._timeout = None
        self._fail()

    def _timer_f(self) -> None:
        self._timeout = None
        self._fail()

    def _timer_d(self) -> None:
        self._timeout = None
        self._terminate()

    def _timer_k(self) -> None:
        self._timeout = None
        self._terminate()

    def _timer_m(self) -> None:
        self._timeout = None
        self._terminate()

    def _fail(self) -> None:
        """Timeout or transport error: before a final response the TU hears of it, after it not."""
        informed = self.state in (CALLING, TRYING, PROCEEDING)
        self._terminate()
        if informed:
            self._on_timeout()

    def _stop_timers(self) -> None:
        _cancel(self._retrans)
        _cancel(self._timeout)
        self._retrans = self._timeout = None

    def _terminate(self) -> None:
        self.state = TERMINATED
        self._stop_timers()
        self._layer._forget_client(self)


class _TwoHundredRetransmission:
    """The UAS core's 2xx retransmission until the ACK arrives (RFC 3261 13.3.1.4)."""

    __slots__ = ("data", "interval", "key", "layer", "on_ack_timeout", "retrans", "target", "timeout")

    def __init__(self, layer: TransactionLayer, key: tuple[str, int], data: bytes, target: Addr,
                 on_ack_timeout: Callable[[], None]) -> None:
        self.layer = layer
        self.key = key
        self.data = data
        self.target = target
        self.on_ack_timeout = on_ack_timeout
        t1 = layer.timers.T1
        self.interval = t1
        self.retrans = None if target.reliable else layer.after(t1, _TwoHundredRetransmission.retransmit, self)
        self.timeout: IDelayedCall | None = layer.after(64 * t1, _TwoHundredRetransmission.expire, self)

    def retransmit(self) -> None:
        self.interval = min(self.interval * 2, self.layer.timers.T2)
        self.retrans = self.layer.after(self.interval, _TwoHundredRetransmission.retransmit, self)
        self.layer.send(self.data, self.target)

    def expire(self) -> None:
        self.timeout = None
        self.stop()
        self.on_ack_timeout()

    def stop(self) -> None:
        _cancel(self.retrans)
        _cancel(self.timeout)
        self.retrans = self.timeout = None
        if self.layer._ok_retrans.get(self.key) is self:
            del self.layer._ok_retrans[self.key]


def _key_2543(request: Request, via: Via, method: str, to_tag: str | None) -> tuple[object, ...]:
    """RFC 3261 17.2.3 matching for requests without the magic cookie (RFC 2543 peers)."""
    return ("2543", str(request.uri), to_tag, request.from_tag, request.call_id, request.cseq[0], method, str(via))


class TransactionLayer:
    """Every transaction of one server, matched by dict lookups (RFC 3261 17.1.3, 17.2.3)."""

    def __init__(self, clock: IClock, send: Callable[[bytes, Addr], None], tu: TransactionUser,
                 timers: Timers = Timers()) -> None:
        self.clock = clock
        self.send = send
        self.tu = tu
        self.timers = timers
        self._servers: dict[Hashable, ServerTransaction] = {}
        self._clients: dict[tuple[str, str], ClientTransaction] = {}
        # (transport, host, port) -> client transactions toward it, for transport_error.
        self._by_target: dict[tuple[str, str, int], set[ClientTransaction]] = {}
        self._ok_retrans: dict[tuple[str, int], _TwoHundredRetransmission] = {}
        self._queues = TimerQueues(clock)

    def __len__(self) -> int:
        """Live transactions, 2xx retransmissions waiting for their ACK included."""
        return len(self._servers) + len(self._clients) + len(self._ok_retrans)

    # -- incoming ---------------------------------------------------------------------------------
    def receive_request(self, request: Request, source: Addr) -> None:
        """A parsed request from the transport: a retransmission, an ACK, or a new transaction."""
        method = request.method
        via = request.top_via
        branch = via.branch
        rfc3261 = branch is not None and branch.startswith(BRANCH_COOKIE)
        if method == "ACK":
            txn = self._match_ack(request, via, rfc3261)
            if txn is not None:
                txn._on_ack(request, source)
            else:
                self._ack_for_2xx(request, source)
            return
        key: Hashable
        if rfc3261:
            # Interned: the key outlives the request by Timer J, and host and method repeat across keys.
            key = (branch, _intern(via.host), via.port, _intern(method))
        else:
            key = _key_2543(request, via, method, request.to_tag)
        txn = self._servers.get(key)
        if txn is not None:
            txn._on_retransmission()
            return
        is_invite = method == "INVITE"
        txn = ServerTransaction(self, key, request, source, is_invite)
        self._servers[key] = txn
        self.tu.request_received(txn, request)
        if is_invite and txn.state == PROCEEDING and txn.last_response is None:
            # RFC 3261 17.2.1: a 100 stops the client's Timer A retransmissions. Sent once the TU has
            # had its turn, so an INVITE answered at once (a 407 challenge, a 404) costs no extra message.
            trying = make_response(request, 100)
            txn.last_response = trying
            txn._last = trying.to_bytes()
            self.send(txn._last, source)

    def _match_ack(self, ack: Request, via: Via, rfc3261: bool) -> ServerTransaction | None:
        if rfc3261:
            return self._servers.get((via.branch, via.host, via.port, "INVITE"))
        to_tag = ack.to_tag
        txn = self._servers.get(_key_2543(ack, via, "INVITE", to_tag))  # re-INVITE: tag already in the INVITE
        if txn is None and to_tag is not None:
            txn = self._servers.get(_key_2543(ack, via, "INVITE", None))
        if txn is None:
            return None
        # The ACK's To tag must be the one of the response the transaction sent.
        last = txn.last_response
        if last is None or last.to_tag != to_tag:
            return None
        return txn

    def _ack_for_2xx(self, ack: Request, source: Addr) -> None:
        ok = self._ok_retrans.get((ack.call_id, ack.cseq[0]))
        if ok is not None:
            ok.stop()
        self.tu.ack_received(ack, source)

    def receive_response(self, response: Response, source: Addr) -> None:
        """A parsed response from the transport: to its client transaction, else to the TU as stray."""
        txn = self._clients.get((response.top_via.branch or "", response.cseq[1]))
        if txn is None:
            self.tu.stray_response(response, source)
        else:
            txn._on_response_received(response, source)

    # -- outgoing -------------------------------------------------------------------------------
    def send_request(self, request: Request, target: Addr, on_response: Callable[[Response], None],
                     on_timeout: Callable[[], None]) -> ClientTransaction:
        """Start a client transaction. The request carries its own top Via with an RFC 3261 branch
        (``new_branch()``); ACK goes through ``send_ack`` instead.

        ``on_response`` gets every provisional and final response the state machine lets through
        (all 2xx of an INVITE, retransmissions included); ``on_timeout`` fires on Timer B/F or a
        transport error before any final response.
        """
        method = request.method
        if method == "ACK":
            raise ValueError("ACK is not a transaction: use send_ack")
        via = request.top_via
        branch = via.branch
        if branch is None or not branch.startswith(BRANCH_COOKIE):
            raise ValueError("the top Via needs an RFC 3261 branch")
        key = (branch, method)
        if key in self._clients:
            raise ValueError(f"a client transaction with branch {branch} {method} already exists")
        data = request.to_bytes()  # UnsafeHeaderError here leaves nothing behind
        txn = ClientTransaction(self, key, request, target, on_response, on_timeout)
        self._clients[key] = txn
        tkey = (target.transport, target.host, target.port)
        peers = self._by_target.get(tkey)
        if peers is None:
            self._by_target[tkey] = {txn}
        else:
            peers.add(txn)
        txn._start(data)
        return txn

    def send_ack(self, ack: Request, target: Addr) -> None:
        """Send an ACK for a 2xx: no transaction, no retransmission (RFC 3261 13.2.2.4, 17.1.1.3)."""
        self.send(ack.to_bytes(), target)

    def send_stateless(self, response: Response, target: Addr) -> None:
        """Send a response outside any transaction (e.g. 400 to a request that could not make one)."""
        self.send(response.to_bytes(), target)

    def send_2xx_reliably(self, response: Response, target: Addr, on_ack_timeout: Callable[[], None]) -> None:
        """Retransmit a 2xx to INVITE until its ACK (RFC 3261 13.3.1.4).

        The first copy is sent by ``ServerTransaction.respond``; this only adds the retransmissions
        (T1 doubling up to T2, on unreliable transports) and the 64*T1 deadline that calls
        ``on_ack_timeout``. Calling it again for the same (Call-ID, CSeq number) replaces the earlier one.
        """
        key = (response.call_id, response.cseq[0])
        old = self._ok_retrans.get(key)
        if old is not None:
            old.stop()
        self._ok_retrans[key] = _TwoHundredRetransmission(self, key, response.to_bytes(), target, on_ack_timeout)

    def find_server_invite(self, cancel: Request) -> ServerTransaction | None:
        """The live INVITE server transaction a CANCEL refers to (RFC 3261 9.2)."""
        via = cancel.top_via
        branch = via.branch
        if branch is not None and branch.startswith(BRANCH_COOKIE):
            return self._servers.get((branch, via.host, via.port, "INVITE"))
        return self._servers.get(_key_2543(cancel, via, "INVITE", cancel.to_tag))

    def transport_error(self, target: Addr) -> None:
        """The transport could not deliver to ``target``: its client transactions fail (RFC 3261 17.1.4).

        A target with ``conn`` set (a broken stream) fails the transactions sent on that connection
        and those sent to any connection toward the same host and port.
        """
        peers = self._by_target.get((target.transport, target.host, target.port))
        if not peers:
            return
        conn = target.conn
        for txn in list(peers):
            if txn.state != TERMINATED and (conn is None or txn.target.conn in (None, conn)):
                txn._fail()

    def close(self) -> None:
        """Forget every transaction and cancel every timer, with no callbacks (service shutdown)."""
        for s in list(self._servers.values()):
            s._terminate()
        for c in list(self._clients.values()):
            c._terminate()
        for ok in list(self._ok_retrans.values()):
            ok.stop()

    # -- bookkeeping ----------------------------------------------------------------------------
    def after(self, delay: float, func: Callable[..., None], owner: object) -> QueuedTimer:
        """Call ``func(owner)`` in ``delay`` seconds: every SIP timer goes through the layer's FIFO
        timer queues (minisip.sip.timers), and the TU's own fixed timers may too."""
        return self._queues.after(delay, func, owner)

    def _forget_server(self, txn: ServerTransaction) -> None:
        if self._servers.get(txn._key) is txn:
            del self._servers[txn._key]

    def _forget_client(self, txn: ClientTransaction) -> None:
        if self._clients.get(txn._key) is txn:
            del self._clients[txn._key]
        t = txn.target
        tkey = (t.transport, t.host, t.port)
        peers = self._by_target.get(tkey)
        if peers is not None:
            peers.discard(txn)
            if not peers:
                del self._by_target[tkey]
