"""The call layer: calls between legs of any kind, their routing and timers, and the one media seam.

It sits above the signalling protocols. A ``Call`` joins the caller's leg (the A-leg) to the callee's
legs (B-legs: forks, then the one that answered); legs speak call events and SDP offers and answers
(``ILeg``, ``ICallEvents`` in minisip.interfaces), never SIP messages. B-legs are made by the leg
factory registered for the destination's kind. Every offer and answer between two legs crosses the
media policy in ``Call._media``, and nowhere else. The ``CallManager`` owns the calls, their timers, the
router chain and the factories; SIPCore (and later the MCCP server and the conference mixer) make
A-legs and B-legs and hand them to it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from typing import Any, Callable

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from minisip.core.hooks import HookRegistry
from minisip.core.media import MediaRefused, PassthroughMedia, sdp_of, then, with_sdp
from minisip.core.router import MAX_REROUTES, Reject, Reroute, Route, RouteDecision, RouterChain
from minisip.core.store import CallRecord
from minisip.interfaces import ICallEvents
from minisip.sip.timers import TimerQueues

log = Logger(namespace="minisip.call")


@dataclass(frozen=True, slots=True)
class LegRequest:
    """An in-dialog request passed from one leg to the other: a re-offer (INVITE, UPDATE with SDP),
    INFO (DTMF), MESSAGE, REFER, NOTIFY... ``headers`` are the ones that travel with it."""

    method: str
    body: bytes = b""
    content_type: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    max_forwards: int = 70


@dataclass(frozen=True, slots=True)
class LegResponse:
    """The final answer to a LegRequest."""

    status: int
    reason: str | None = None
    body: bytes = b""
    content_type: str | None = None


class CallInfo:
    """A read-only view of a call for plugins: what they may know, nothing they may change."""

    __slots__ = ("_call",)

    def __init__(self, call: "Call") -> None:
        self._call = call

    id = property(lambda self: self._call.id)
    caller = property(lambda self: self._call.caller)
    callee = property(lambda self: self._call.callee, doc="The number being routed now (after reroutes).")
    dialled = property(lambda self: self._call.dialled, doc="The number the caller dialled.")
    caller_display = property(lambda self: self._call.caller_display)
    source = property(lambda self: self._call.source, doc="'extension', 'trunk', 'browser'...")
    trunk = property(lambda self: self._call.trunk)
    state = property(lambda self: self._call.state, doc="routing, ringing, rerouting, answered, ended")
    start = property(lambda self: self._call.start)
    answer_time = property(lambda self: self._call.answer_time)
    end_time = property(lambda self: self._call.end_time)
    cause = property(lambda self: self._call.cause)
    answered_by = property(lambda self: self._call.answered_by)
    last_activity = property(lambda self: self._call.last_activity)

    def __repr__(self) -> str:
        c = self._call
        return f"<CallInfo {c.id} {c.caller}->{c.callee} {c.state}>"


class Relayed:
    """A LegRequest on its way to the other leg (the media seam may still hold it): ``cancel`` withdraws
    a re-offer, ``done`` once the final answer went back, ``finish`` sends that answer (once)."""

    __slots__ = ("call", "cancel_wanted", "done", "finish", "inner")

    def __init__(self, call: "Call") -> None:
        self.call = call
        self.inner: Any = None
        self.done = False
        self.cancel_wanted = False
        self.finish: Callable[[LegResponse | None], None] = _ignore

    def cancel(self) -> None:
        self.cancel_wanted = True
        if self.inner is not None and not self.done:
            self.inner.cancel()


@implementer(ICallEvents)
class Call:
    """One call: its legs, its state, and the events its legs report."""

    def __init__(self, manager: "CallManager", call_id: str, caller: str, callee: str,
                 caller_display: str | None = None, *, source: str = "extension", trunk: str | None = None,
                 max_forwards: int = 69) -> None:
        self.manager = manager
        self.clock = manager.clock
        self.wallclock = manager.wallclock
        self.id = call_id
        self.caller = caller
        self.callee = callee
        self.dialled = callee
        self.caller_display = caller_display
        self.source = source           # who placed it: extension, trunk, browser...
        self.trunk = trunk
        self.max_forwards = max_forwards
        self.info = CallInfo(self)
        self.a_leg: Any = None
        self.b_legs: list[Any] = []    # the forks still ringing, then the leg that answered
        self.legs: list[Any] = []      # every leg ever made for the call (closed once at its end)
        self.answered_leg: Any = None
        self.state = "routing"         # routing, ringing, rerouting, answered, ended
        self.start = self.wallclock()
        self.answer_time: float | None = None
        self.end_time: float | None = None
        self.cause = ""
        self.offer = b""               # the caller's SDP offer (b'': late offer)
        self.offer_body = b""          # the whole body it came in and its type (multipart keeps its other parts)
        self.offer_type: str | None = None
        self.ring_timer: Any = None
        self.failures: list[tuple[int, str | None]] = []
        self.answered_by: str | None = None
        self.current_route: Route | None = None
        self.reroutes: list[str] = []
        self.pending: set[Relayed] = set()   # in-dialog requests passed across, not answered yet
        self.media_stats: str | None = None  # set by a media policy that relayed the call (JSON)
        self.conference: str | None = None   # set by a conference room leg: room, joined, left (JSON)
        self.last_activity = self.clock.seconds()

    @property
    def a_leg_late_offer(self) -> bool:
        return not self.offer

    def touch(self) -> None:
        self.last_activity = self.clock.seconds()

    def other(self, leg: Any) -> Any:
        if leg is self.a_leg:
            return self.answered_leg
        if leg is self.answered_leg:
            return self.a_leg
        return None

    # -- starting and routing --------------------------------------------------------------------------
    def begin(self, a_leg: Any, body: bytes = b"", content_type: str | None = None) -> None:
        """Start the call from the caller's leg and the body of its request; route it."""
        self.a_leg = a_leg
        self.legs.append(a_leg)
        self.offer_body = body
        self.offer_type = content_type
        self.offer = sdp_of(content_type, body) or b""
        log.info("call {id} from {caller} to {callee} started", id=self.id, caller=self.caller, callee=self.callee)
        self.manager.call_event("call_started", self)
        self._route()

    def _route(self) -> None:
        d = self.manager.routers.route(self.info)
        d.addCallback(self._decided)
        d.addErrback(self._route_failed)

    def _route_failed(self, f: Any) -> None:
        """Acting on the decision failed (e.g. an unusable destination): fail the call, not the server."""
        log.failure("routing call {id}", f, id=self.id)
        if self.state in ("routing", "ringing", "rerouting"):
            self._drop_forks()
            self._fail_a(500, "Server Internal Error", "failed 500")

    def _decided(self, decision: RouteDecision) -> None:
        if self.state not in ("routing", "rerouting"):
            return  # cancelled while routing
        if isinstance(decision, Reject):
            cause = {404: "not-found", 480: "unavailable", 486: "busy", 403: "forbidden"}.get(
                decision.code, f"rejected {decision.code}")
            self._fail_a(decision.code, decision.reason, cause)
            return
        if isinstance(decision, Reroute):
            self._reroute(decision)
            return
        assert isinstance(decision, Route)
        if not decision.targets:
            self._fail_a(480, "Temporarily Unavailable", "unavailable")
            return
        self.state = "ringing"
        self.current_route = decision
        self.failures = []
        ring_time = decision.ring_time if decision.ring_time is not None else self.manager.ring_timeout
        self.ring_timer = self.manager.after(ring_time, Call._no_answer, self)
        for dest in decision.targets:
            try:
                leg = self.manager.make_leg(self, dest)
            except Exception:
                log.failure("call {id}: no leg for {dest!r}", id=self.id, dest=dest)
                self.failures.append((500, "Server Internal Error"))
                continue
            self.b_legs.append(leg)
            self.legs.append(leg)
        if not self.b_legs:
            self._all_failed()
            return
        for leg in list(self.b_legs):
            if self.state == "ringing" and leg in self.b_legs:
                self._start_leg(leg)

    def _reroute(self, decision: Reroute) -> None:
        number = decision.number
        if number in self.reroutes or number == self.dialled or len(self.reroutes) >= MAX_REROUTES:
            log.warn("call {id}: reroute to {number} refused (loop: {path})", id=self.id, number=number,
                     path=" -> ".join([self.dialled, *self.reroutes, number]))
            self._fail_a(482, "Loop Detected", "failed 482")
            return
        log.info("call {id} from {caller} to {callee} rerouted to {number}{why}", id=self.id, caller=self.caller,
                 callee=self.callee, number=number, why=f" ({decision.reason})" if decision.reason else "")
        self.reroutes.append(number)
        self.callee = number
        self.state = "rerouting"
        self.current_route = None
        self._route()

    def _start_leg(self, leg: Any) -> None:
        if not self.offer:
            leg.start(b"")
            return

        def send(sdp: bytes) -> None:
            if self.state == "ringing" and leg in self.b_legs:
                leg.start(sdp)

        self._media("offer", self.a_leg, leg, self.offer, send, lambda e: self.leg_failed(leg, e.status, e.reason))

    # -- the media seam: every offer and answer crosses it here ------------------------------------------
    def _media(self, op: str, from_leg: Any, to_leg: Any, sdp: bytes, ok: Callable[[bytes], None],
               refused: Callable[[MediaRefused], None]) -> None:
        policy = self.manager.media
        try:
            result = getattr(policy, op)(self, from_leg, to_leg, sdp)
        except MediaRefused as e:
            refused(e)
            return
        except Exception:
            log.failure("media policy: {op} of call {id} failed", op=op, id=self.id)
            refused(MediaRefused(500, "Server Internal Error"))
            return

        def broken(f: Any) -> None:
            log.failure("media policy: {op} of call {id} failed", f, op=op, id=self.id)
            refused(MediaRefused(500, "Server Internal Error"))

        then(result, ok, refused, broken)

    def _leg_gone(self, leg: Any) -> None:
        try:
            self.manager.media.leg_gone(self, leg)
        except Exception:
            log.failure("media policy: leg_gone of call {id} failed", id=self.id)

    # -- events from legs (ICallEvents) -------------------------------------------------------------------
    def leg_progress(self, leg: Any, status: int, sdp: bytes) -> None:
        if self.state != "ringing" or self.a_leg is None or leg not in self.b_legs:
            return
        status = status if status in (180, 181, 182, 183) else 180
        if not sdp:
            self.a_leg.progress(status, b"")
            return

        def send(out: bytes) -> None:
            if self.state == "ringing":
                self.a_leg.progress(status, out)

        def refused(e: MediaRefused) -> None:
            if self.state == "ringing":
                self.a_leg.progress(180, b"")  # no early media, still ringing

        self._media("answer" if self.offer else "offer", leg, self.a_leg, sdp, send, refused)

    def leg_answered(self, leg: Any, sdp: bytes) -> None:
        if self.state != "ringing" or self.a_leg is None or leg not in self.b_legs:
            leg.hangup("answered elsewhere")
            return
        self.state = "answered"
        self.answered_leg = leg
        self.answer_time = self.wallclock()
        self._stop_ring_timer()
        others, self.b_legs = self.b_legs, [leg]
        for other in others:
            if other is not leg:
                other.cancel()
                self._leg_gone(other)
        dest = getattr(leg, "destination", None)
        self.answered_by = getattr(dest, "aor", None)

        def send(out: bytes) -> None:
            if self.state != "answered":
                return
            self.a_leg.answer(out)
            self.manager.call_event("call_answered", self)
            log.info("call {id} from {caller} to {callee} answered by {leg}", id=self.id, caller=self.caller,
                     callee=self.callee, leg=leg.description)

        def refused(e: MediaRefused) -> None:
            if self.state != "answered":
                return
            leg.hangup("media refused")
            self.a_leg.reject(e.status, e.reason)
            self.end(f"failed {e.status}", f"{e.status} {e.reason}")

        self._media("answer" if self.offer else "offer", leg, self.a_leg, sdp, send, refused)

    def leg_failed(self, leg: Any, status: int, reason: str | None) -> None:
        """A fork failed. Only current forks count: a leg already given up (no answer, declined, another
        fork answered) reports its 487 too, and that changes nothing."""
        if leg not in self.b_legs:
            return
        if status == 488 and self.state == "ringing" and self._retry_media(leg):
            return
        self.b_legs.remove(leg)
        self._leg_gone(leg)
        self.failures.append((status, reason))
        if self.state != "ringing" or self.b_legs:
            return
        self._all_failed()

    def _retry_media(self, leg: Any) -> bool:
        """A fork refused the media offered (488): when the media policy has a more compatible offer
        (plain RTP after SRTP offered on its own initiative), ring the same destination again with it."""
        retry = getattr(self.manager.media, "retry", None)
        destination = getattr(leg, "destination", None)
        if retry is None or destination is None or not retry(self, leg):
            return False
        try:
            again = self.manager.make_leg(self, destination)
        except Exception:
            log.failure("call {id}: no leg for {dest!r}", id=self.id, dest=destination)
            return False
        log.info("call {id}: {leg} refused the media offered (488); offering again", id=self.id,
                 leg=leg.description)
        self.b_legs[self.b_legs.index(leg)] = again
        self.legs.append(again)
        self._start_leg(again)
        return True

    def _all_failed(self) -> None:
        code, reason, cause = self._best_failure()
        if self._next_step(code):
            return
        self._fail_a(code, reason, cause)

    def leg_hungup(self, leg: Any, cause: str = "") -> None:
        """``leg`` hung up: the caller giving up before the answer cancels the call; after the answer
        the other side is hung up too."""
        if self.state == "ended":
            return
        if leg is self.a_leg and self.state in ("routing", "ringing", "rerouting"):
            self.a_cancelled()
            return
        for other in [self.a_leg, *self.b_legs]:
            if other is not None and other is not leg:
                other.hangup("other side hung up")
        self._leg_gone(leg)
        self.end("normal", f"hangup by {'caller' if leg is self.a_leg else 'callee'}")

    def leg_request(self, leg: Any, request: LegRequest, respond: Callable[[LegResponse | None], None]) -> Relayed:
        """Pass an in-dialog request to the other leg; its SDP (if any) is an offer through the seam, and
        the SDP of the answer its answer (or, for a re-INVITE without SDP, the other side's offer)."""
        handle = Relayed(self)
        other = self.other(leg)
        early = self._early_target(leg, request) if other is None else None
        if early is not None:
            other = early
        elif other is None or self.state != "answered":
            handle.done = True
            respond(LegResponse(491 if request.method in ("INVITE", "UPDATE") else 481,
                                "Request Pending" if request.method in ("INVITE", "UPDATE")
                                else "Call/Transaction Does Not Exist"))
            return handle
        self.touch()
        offer = sdp_of(request.content_type, request.body)

        def finish(resp: LegResponse | None) -> None:
            if not handle.done:
                handle.done = True
                self.pending.discard(handle)
                respond(resp)

        handle.finish = finish
        self.pending.add(handle)

        def answered(resp: LegResponse | None) -> None:
            sdp = sdp_of(resp.content_type, resp.body) if resp is not None and resp.status < 300 else None
            if resp is None or not sdp or self.state != "answered":
                finish(resp)
                return
            self._media("answer" if offer else "offer", other, leg, sdp,
                        lambda out: finish(replace(resp, body=with_sdp(resp.content_type, resp.body, out))),
                        lambda e: finish(LegResponse(e.status, e.reason)))

        def send(out: bytes | None) -> None:
            if handle.done or self.state != ("ringing" if early is not None else "answered"):
                return
            if handle.cancel_wanted:
                finish(LegResponse(487, "Request Terminated"))
                return
            req = request if out is None else replace(request, body=with_sdp(request.content_type, request.body, out))
            handle.inner = other.send_request(req, answered)

        if offer:
            self._media("offer", leg, other, offer, send, lambda e: finish(LegResponse(e.status, e.reason)))
        else:
            send(None)
        return handle

    def _early_target(self, leg: Any, request: LegRequest) -> Any:
        """The ringing B-leg that takes the caller's body-less in-dialog requests before it answers (a
        conference room collecting a PIN by SIP INFO declares ``early_requests``), or None."""
        if self.state != "ringing" or leg is not self.a_leg or request.method != "INFO" or \
                sdp_of(request.content_type, request.body):
            return None
        return next((b for b in self.b_legs if getattr(b, "early_requests", False)), None)

    def leg_ack(self, leg: Any, sdp: bytes) -> None:
        other = self.other(leg)
        if other is None:
            return
        if not sdp:
            other.ack(b"")
            return

        def refused(e: MediaRefused) -> None:
            other.ack(b"")
            self.manager.hangup(self, "media refused")

        self._media("answer", leg, other, sdp, other.ack, refused)

    # -- failures, timers and cancel ------------------------------------------------------------------------
    def _drop_forks(self) -> None:
        legs, self.b_legs = self.b_legs, []
        for leg in legs:
            leg.cancel()
            self._leg_gone(leg)

    def _next_step(self, status: int) -> bool:
        """Ask the current route what to do after it failed; True when a next step is under way."""
        route = self.current_route
        if route is None or route.on_failure is None:
            return False
        self._stop_ring_timer()
        self.state = "rerouting"
        self.current_route = None
        d = defer.maybeDeferred(route.on_failure, self.info, status)

        def decided(decision: RouteDecision | None) -> None:
            if self.state != "rerouting":
                return
            if decision is None or not isinstance(decision, (Reject, Route, Reroute)):
                code, reason, cause = self._best_failure()
                self._fail_a(code, reason, cause)
                return
            self._decided(decision)

        def failed(f: Any) -> None:
            log.failure("next routing step of call {id} failed", f, id=self.id)
            if self.state in ("rerouting", "ringing"):
                self._drop_forks()
                self._fail_a(500, "Server Internal Error", "failed 500")

        d.addCallback(decided)
        d.addErrback(failed)
        return True

    def _best_failure(self) -> tuple[int, str | None, str]:
        codes = [c for c, _ in self.failures]
        if codes and all(c == 480 for c in codes) and any(r == "No Answer" for _, r in self.failures):
            return 480, "No Answer", "no-answer"
        for c, r in self.failures:
            if c >= 600:
                return c, r, "busy" if c == 600 else f"declined {c}"
        if 486 in codes:   # its own reason phrase ("Conference Room Full") when it gave one
            return 486, next((r for c, r in self.failures if c == 486 and r), "Busy Here"), "busy"
        if codes and all(c == 408 for c in codes):
            return 408, "Request Timeout", "no-response"
        for c, r in self.failures:
            if (400 <= c < 500 and c not in (401, 407, 408, 487)) or c == 503:   # 503: no media ports
                return c, r, f"failed {c}"
        return 480, "Temporarily Unavailable", "unavailable"

    def _no_answer(self) -> None:
        self.ring_timer = None
        if self.state != "ringing":
            return
        self._drop_forks()
        self.failures.append((480, "No Answer"))
        if self._next_step(480):
            return
        self._fail_a(480, "No Answer", "no-answer")

    def a_cancelled(self) -> None:
        """The caller gave up (CANCEL, or BYE on its early dialog) before the answer."""
        if self.state not in ("routing", "ringing", "rerouting"):
            return
        self._drop_forks()
        self._fail_a(487, "Request Terminated", "cancelled")

    # -- ending ----------------------------------------------------------------------------------------------
    def _fail_a(self, code: int, reason: str | None, cause: str) -> None:
        if self.a_leg is not None:
            self.a_leg.reject(code, reason)
        self.end(cause, f"{code} {reason or ''}".strip())

    def _stop_ring_timer(self) -> None:
        if self.ring_timer is not None and self.ring_timer.active():
            self.ring_timer.cancel()
        self.ring_timer = None

    def end(self, cause: str, detail: str = "") -> None:
        if self.state == "ended":
            return
        self.state = "ended"
        self._stop_ring_timer()
        for handle in list(self.pending):
            # RFC 3261 15.1.2: requests still pending when the dialog ends (a re-INVITE the other side
            # sent before its BYE crossed it) are answered 487 at once, not left to time out.
            handle.finish(LegResponse(487, "Request Terminated"))
        self.end_time = self.wallclock()
        self.cause = cause
        dur = (self.end_time - self.answer_time) if self.answer_time else 0.0
        log.info("call {id} from {caller} to {callee} ended: {cause} ({detail}), talk time {dur:.1f}s",
                 id=self.id, caller=self.caller, callee=self.callee, cause=cause, detail=detail, dur=dur)
        self.manager.ended(self)


def _ignore(resp: LegResponse | None) -> None:
    pass


SAVE_INTERVAL = 1.0     # seconds between batches of the store's list of calls up


class CallManager:
    """Owns every call, their timers, the router chain, the leg factories and the media policy."""

    def __init__(self, clock: Any, store: Any, hooks: HookRegistry | None = None, *,
                 wallclock: Callable[[], float] = time.time, ring_timeout: float = 60.0) -> None:
        self.clock = clock
        self.wallclock = wallclock
        self.store = store
        self.hooks = hooks or HookRegistry(RouterChain())
        self.ring_timeout = ring_timeout
        self.timers = TimerQueues(clock)
        self.calls: dict[str, Call] = {}
        self.busy: dict[str, int] = {}
        self.placing: dict[str, int] = {}   # calls in progress per extension placing them, per trunk bringing them
        self.max_calls_per_extension = 20
        self.max_calls_per_trunk = 200
        self._unsaved: dict[str, Call | None] = {}   # call id -> answered call to save, or None: delete
        self._save_call: Any = None
        self.media: Any = PassthroughMedia()
        self.hooks.manager = self

    @property
    def routers(self) -> RouterChain:
        return self.hooks.routers

    @property
    def factories(self) -> dict[str, Any]:
        return self.hooks.leg_factories

    def after(self, delay: float, func: Callable[..., None], owner: object) -> Any:
        return self.timers.after(delay, func, owner)

    def new_call(self, call_id: str, caller: str, callee: str, caller_display: str | None = None, **kw: Any) -> Call:
        call = Call(self, call_id, caller, callee, caller_display, **kw)
        self.calls[call_id] = call
        key = self._placer(call)
        self.placing[key] = self.placing.get(key, 0) + 1
        return call

    @staticmethod
    def _placer(call: Call) -> str:
        return f"trunk {call.trunk}" if call.trunk is not None else f"{call.source} {call.caller}"

    def over_limit(self, caller: str, source: str = "extension", trunk: str | None = None) -> bool:
        """Would one more call from this extension (or trunk) exceed its limit of calls at once?
        ([security] max_calls_per_extension / max_calls_per_trunk; a flood of calls from one stolen
        account or one carrier cannot take the whole server.)"""
        if trunk is not None:
            return self.placing.get(f"trunk {trunk}", 0) >= self.max_calls_per_trunk
        return self.placing.get(f"{source} {caller}", 0) >= self.max_calls_per_extension

    def make_leg(self, call: Call, destination: Any) -> Any:
        factory = self.hooks.leg_factories.get(destination.kind)
        if factory is None:
            raise ValueError(f"no leg factory for destinations of kind {destination.kind!r}")
        return factory.make_leg(call, destination)

    def call_event(self, event: str, call: Call) -> None:
        """Busy accounting, the store's list of calls up, then the plugins' call observers (with the
        call's read-only view)."""
        if event == "call_answered":
            self._persist(call)
        elif event == "call_ended" and call.answer_time is not None:
            self._forget(call)
        busy = self.busy
        if event == "call_started" and call.source == "extension":
            busy[call.caller] = busy.get(call.caller, 0) + 1
        elif event == "call_answered" and call.answered_by:
            busy[call.answered_by] = busy.get(call.answered_by, 0) + 1
        elif event == "call_ended":
            for ext in ((call.caller,) if call.source == "extension" else ()) + (
                    (call.answered_by,) if call.answered_by and call.answer_time else ()):
                n = busy.get(ext, 0) - 1
                if n > 0:
                    busy[ext] = n
                else:
                    busy.pop(ext, None)
        self.hooks.notify(self.hooks.call_observers, event, call.info)

    def ended(self, call: Call) -> None:
        if self.calls.pop(call.id, None) is not None:
            key = self._placer(call)
            n = self.placing.get(key, 0) - 1
            if n > 0:
                self.placing[key] = n
            else:
                self.placing.pop(key, None)
        self.call_event("call_ended", call)
        try:
            self.media.call_ended(call)
        except Exception:
            log.failure("media policy: call_ended of call {id} failed", id=call.id)
        for leg in call.legs:
            leg.close()
        assert call.end_time is not None
        try:
            self.store.add_call_record(CallRecord(call_id=call.id, caller=call.caller, callee=call.callee,
                                                  start=call.start, answer=call.answer_time, end=call.end_time,
                                                  cause=call.cause, media=call.media_stats,
                                                  conference=call.conference))
        except Exception:
            log.failure("cannot store the record of call {id}", id=call.id)

    # -- calls that survive a crash -----------------------------------------------------------------------
    # Answered calls are kept in the store so that a restart after a crash (kill -9, power) can end
    # them cleanly. The store is told in batches, once a second: a call shorter than that never costs a
    # write (at hundreds of calls a second, two writes per call took a quarter of the CPU per call).
    def _persist(self, call: Call) -> None:
        self._unsaved[call.id] = call
        self._schedule_save()

    def _forget(self, call: Call) -> None:
        if self._unsaved.pop(call.id, None) is None:      # saved already: delete it at the next batch
            self._unsaved[call.id] = None
            self._schedule_save()

    def _schedule_save(self) -> None:
        if self._save_call is None:
            self._save_call = self.clock.callLater(SAVE_INTERVAL, self.save_active)

    def save_active(self) -> None:
        """Write the pending changes to the store's list of calls up (also at shutdown)."""
        self._save_call = None
        pending, self._unsaved = self._unsaved, {}
        for call_id, call in pending.items():
            try:
                if call is None:
                    self.store.delete_active_call(call_id)
                else:
                    self.store.save_active_call(call_id, json.dumps(self._snapshot(call)))
            except Exception:
                log.failure("cannot save the calls up (call {id})", id=call_id)

    @staticmethod
    def _snapshot(call: Call) -> dict[str, Any]:
        """The legs that can say how to reach their peer again (SIP dialogs), and what the record needs."""
        snaps = [snap for leg in (call.a_leg, call.answered_leg)
                 if leg is not None and (snap := getattr(leg, "snapshot", lambda: None)()) is not None]
        return {"caller": call.caller, "callee": call.callee, "start": call.start, "answer": call.answer_time,
                "legs": snaps}

    def recover(self, down_since: float | None) -> int:
        """End the calls the store says were up when the server went down (a crash): each leg's
        factory releases its peer (a BYE for SIP), and the call gets its record with cause
        ``interrupted`` and ``down_since`` (the last time the server was known alive) as its end."""
        try:
            rows = self.store.active_calls()
        except Exception:
            log.failure("cannot read the calls that were up")
            return 0
        for call_id, raw in rows:
            try:
                data = json.loads(raw)
                for snap in data.get("legs", []):
                    factory = self.hooks.leg_factories.get(snap.get("kind"))
                    release = getattr(factory, "release", None)
                    if release is not None:
                        release(snap)
                end = down_since if down_since is not None else self.wallclock()
                self.store.add_call_record(CallRecord(call_id=call_id, caller=data["caller"], callee=data["callee"],
                                                      start=data["start"], answer=data["answer"],
                                                      end=max(end, data["answer"] or data["start"]),
                                                      cause="interrupted"))
                log.warn("call {id} from {caller} to {callee} was up when the server stopped: ended "  # noqa: G010
                         "(interrupted)", id=call_id, caller=data["caller"], callee=data["callee"])
            except Exception:
                log.failure("ending call {id} after the restart", id=call_id)
            self.store.delete_active_call(call_id)
        return len(rows)

    def hangup(self, call: Call, cause: str) -> None:
        """End a call from the server's side (supervision, media timeout, an administrator)."""
        if call.state == "ended":
            return
        if call.state == "answered":
            for leg in (call.a_leg, call.answered_leg):
                if leg is not None:
                    leg.hangup(cause)
        else:
            call._drop_forks()
            if call.a_leg is not None:
                call.a_leg.reject(480, "Temporarily Unavailable")
        call.end(cause, "released by the server")

    def probe(self, call: Call) -> defer.Deferred:
        """True when every answered leg's peer still knows the call."""
        legs = [leg for leg in (call.a_leg, call.answered_leg) if leg is not None]
        if call.state != "answered" or not legs:
            return defer.succeed(False)
        dl = defer.gatherResults([defer.maybeDeferred(leg.probe) for leg in legs])
        dl.addCallback(all)
        return dl
