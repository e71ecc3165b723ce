"""The call model of the B2BUA: a Call joins an A-leg (the caller) to B-legs (forks, then the answerer).

A leg is one side of a call. ``SipLeg`` is a SIP dialog; later issues add browser (MCCP) and
conference legs with the same methods, so routing and bridging never look at the transport. Each
leg owns the SDP it received and the SDP it was sent, so a media relay can rewrite SDP per leg
(``Call.sdp_for``) without touching the signalling.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable

from twisted.logger import Logger

from minisip.core.router import Destination, Reject, Route, RouteDecision
from minisip.sip.message import Request, Response, make_response
from minisip.sip.types import Addr
from minisip.sip.uri import parse_uri

if TYPE_CHECKING:
    from minisip.core.server import SIPCore
    from minisip.sip.transaction import ServerTransaction

log = Logger(namespace="minisip.call")


class Leg:
    """What a Call needs from any leg. Subclasses: SipLeg now; browser and conference legs later."""

    call: "Call"
    remote_sdp: bytes = b""
    local_sdp: bytes = b""
    description: str = "leg"

    # caller side (A-leg)
    def progress(self, status: int, sdp: bytes) -> None: ...
    def answer(self, sdp: bytes) -> None: ...
    def fail(self, status: int, reason: str | None) -> None: ...
    # callee side (B-leg)
    def invite(self, sdp: bytes) -> None: ...
    def cancel(self) -> None: ...
    # both, once answered
    def hangup(self) -> None: ...
    def forward_request(self, req: Request, on_final: Callable[[Response | None], None]) -> "Forwarded": ...
    def forward_ack(self, body: bytes, content_type: str | None) -> None: ...


class SipLeg(Leg):
    """One SIP dialog of the B2BUA, as UAS (``role='uas'``, the caller) or UAC (``role='uac'``)."""

    def __init__(self, core: "SIPCore", call: "Call", role: str, call_id: str, local_tag: str, local_uri: str,
                 remote_uri: str, remote_target: str, target: Addr) -> None:
        self.core = core
        self.call = call
        self.role = role
        self.call_id = call_id
        self.local_tag = local_tag
        self.remote_tag: str | None = None
        self.local_uri = local_uri
        self.remote_uri = remote_uri
        self.remote_target = remote_target
        self.route_set: list[str] = []
        self.target = target
        self.local_cseq = 0
        self.remote_cseq = 0
        self.state = "init"            # init, early, confirmed, terminated
        self.invite_txn: "ServerTransaction | None" = None   # uas: the caller's INVITE
        self.invite_req: Request | None = None               # uac: our INVITE
        self.invite_ctx: Any = None                          # uac: the INVITE client transaction
        self.cancel_timer: Any = None                        # uac: set once CANCEL is sent
        self.got_provisional = False
        self.cancel_pending = False
        self.last_ack: Request | None = None
        self.late_ack_cseq: int | None = None                # uac: ACK held until the other side's ACK (late offer)
        self.description = str(target)
        self.destination: Destination | None = None           # uac: where the router sent us
        self.auth_tried = False

    # -- helpers -------------------------------------------------------------------------------
    def _request(self, method: str, cseq: int | None = None, body: bytes = b"",
                 content_type: str | None = None) -> Request:
        if cseq is None:
            self.local_cseq += 1
            cseq = self.local_cseq
        core = self.core
        headers = [
            ("via", "Via", core.via_value(self.target.transport)),
            ("max-forwards", "Max-Forwards", "70"),
            ("from", "From", f"{self.local_uri};tag={self.local_tag}"),
            ("to", "To", self.remote_uri if self.remote_tag is None else f"{self.remote_uri};tag={self.remote_tag}"),
            ("call-id", "Call-ID", self.call_id),
            ("cseq", "CSeq", f"{cseq} {method}"),
        ]
        for r in self.route_set:
            headers.append(("route", "Route", r))
        if method not in ("ACK", "CANCEL", "BYE"):
            headers.append(("contact", "Contact", core.contact_value(self.target.transport)))
        headers.append(("user-agent", "User-Agent", core.user_agent))
        if body and content_type:
            headers.append(("content-type", "Content-Type", content_type))
        return Request(method, parse_uri(self.remote_target), headers, body)

    def _respond(self, txn: "ServerTransaction", req: Request, status: int, reason: str | None = None,
                 body: bytes = b"", content_type: str | None = None) -> None:
        extra: list[tuple[str, str]] = []
        if 100 < status < 300:
            extra.append(("Contact", self.core.contact_value(self.target.transport)))
        if body:
            extra.append(("Content-Type", content_type or "application/sdp"))
        resp = make_response(req, status, reason, to_tag=self.local_tag, extra=extra, body=body)
        if req.method == "INVITE" and 200 <= status < 300:
            self.core.respond_invite_2xx(txn, resp)
        else:
            txn.respond(resp)

    # -- A-leg (we are UAS) ----------------------------------------------------------------------
    def progress(self, status: int, sdp: bytes) -> None:
        if self.invite_txn is None or self.state not in ("init", "early"):
            return
        self.state = "early"
        self.local_sdp = sdp or self.local_sdp
        assert self.invite_req is not None
        self._respond(self.invite_txn, self.invite_req, status, None, sdp)

    def answer(self, sdp: bytes) -> None:
        if self.invite_txn is None or self.state not in ("init", "early"):
            return
        self.state = "confirmed"
        self.local_sdp = sdp
        assert self.invite_req is not None
        self._respond(self.invite_txn, self.invite_req, 200, "OK", sdp)
        self.invite_txn = None

    def fail(self, status: int, reason: str | None) -> None:
        if self.invite_txn is None or self.state not in ("init", "early"):
            return
        self.state = "terminated"
        assert self.invite_req is not None
        self._respond(self.invite_txn, self.invite_req, status, reason)
        self.invite_txn = None
        self.core.forget_dialog(self)

    # -- B-leg (we are UAC) ----------------------------------------------------------------------
    def invite(self, sdp: bytes) -> None:
        self.local_sdp = sdp
        req = self._request("INVITE", body=sdp, content_type="application/sdp" if sdp else None)
        req.set("Max-Forwards", str(self.call.max_forwards))
        self.core.hooks.apply_filters(req, self.destination, self.call)
        self.invite_req = req
        self.core.register_dialog(self)
        self.invite_ctx = self.core.transactions.send_request(req, self.target, self._invite_response,
                                                              self._invite_timeout)

    def _retry_with_credentials(self, resp: Response) -> bool:
        """Answer a 401/407 from a trunk with the destination's credentials (once)."""
        dest = self.destination
        if dest is None or dest.credentials is None or self.auth_tried or self.invite_req is None:
            return False
        hname = "www-authenticate" if resp.status == 401 else "proxy-authenticate"
        challenges = [v for k, _, v in resp.headers if k == hname]
        if not challenges:
            return False
        from minisip.sip.auth import build_authorization
        from minisip.sip.transaction import new_branch
        user, password = dest.credentials
        old = self.invite_req
        try:
            value = build_authorization(challenges[0], "INVITE", str(old.uri), user, password)
        except ValueError:
            return False
        self.auth_tried = True
        req = Request("INVITE", old.uri, list(old.headers), old.body)
        req.remove("Authorization")
        req.remove("Proxy-Authorization")
        req.add("Authorization" if resp.status == 401 else "Proxy-Authorization", value)
        self.local_cseq += 1
        req.set("CSeq", f"{self.local_cseq} INVITE")
        via = req.get("via") or ""
        req.set("Via", via.split(";branch=")[0] + f";branch={new_branch()};rport")
        self.invite_req = req
        self.invite_ctx = self.core.transactions.send_request(req, self.target, self._invite_response,
                                                              self._invite_timeout)
        return True

    def _invite_response(self, resp: Response) -> None:
        if self.state == "terminated" and resp.status >= 200:
            if 200 <= resp.status < 300:
                if self.last_ack is not None and resp.to_tag == self.remote_tag:
                    self.resend_ack(resp.cseq[0])  # a 2xx already ACKed and hung up
                else:
                    self._late_2xx(resp)
            return
        status = resp.status
        if status < 200:
            self.got_provisional = True  # 100 included: CANCEL may go (RFC 3261 9.1)
            if status != 100:
                if self.state == "init":
                    self.state = "early"
                if resp.to_tag:
                    self.remote_tag = resp.to_tag
            if self.cancel_pending:
                self._send_cancel()
                return
            if status == 100:
                return
            self.remote_sdp = resp.body or self.remote_sdp
            self.call.leg_progress(self, status, resp.body)
        elif status < 300:
            if self.state == "confirmed":
                # A retransmission (our ACK was lost, or is held for the caller's ACK), or a 2xx of another
                # downstream fork: never a reason to answer the call again.
                if resp.to_tag == self.remote_tag and self.late_ack_cseq is None:
                    self.resend_ack(resp.cseq[0])
                return
            self._establish(resp)
            if self.cancel_pending or self.call.answered_leg not in (None, self):
                # answered by another fork, or cancelled too late: acknowledge, then hang up
                self._send_ack(resp.cseq[0])
                self.hangup()
                return
            self.remote_sdp = resp.body
            if self.call.a_leg_late_offer:
                self.late_ack_cseq = resp.cseq[0]
            else:
                self._send_ack(resp.cseq[0])
            self.call.leg_answered(self, resp.body)
        else:
            if status in (401, 407) and not self.cancel_pending and self._retry_with_credentials(resp):
                return
            self.state = "terminated"
            self.core.forget_dialog(self)
            if not self.cancel_pending:
                self.call.leg_failed(self, status, resp.reason)
            else:
                self.call.leg_failed(self, 487, "Request Terminated")

    def _establish(self, resp: Response) -> None:
        self.state = "confirmed"
        self.remote_tag = resp.to_tag
        contacts = resp.get_all("contact")
        if contacts:
            try:
                from minisip.sip.uri import parse_name_addr
                self.remote_target = str(parse_name_addr(contacts[0]).uri)
            except Exception:
                log.info("bad Contact in 2xx from {leg}; keeping the request URI", leg=self.description)
        self.route_set = list(reversed(resp.get_all("record-route")))

    def _late_2xx(self, resp: Response) -> None:
        self._establish(resp)
        self._send_ack(resp.cseq[0])
        self.state = "confirmed"
        self.hangup()

    def _invite_timeout(self) -> None:
        if self.state in ("init", "early"):
            self.state = "terminated"
            self.core.forget_dialog(self)
            self.call.leg_failed(self, 408, "Request Timeout")

    def _send_ack(self, cseq: int, body: bytes = b"", content_type: str | None = None) -> None:
        ack = self._request("ACK", cseq=cseq, body=body, content_type=content_type)
        self.last_ack = ack
        self.core.transactions.send_ack(ack, self.target)

    def resend_ack(self, cseq: int) -> None:
        if self.last_ack is not None and self.last_ack.cseq[0] == cseq:
            self.core.transactions.send_ack(self.last_ack, self.target)

    def forward_ack(self, body: bytes, content_type: str | None) -> None:
        if self.late_ack_cseq is not None:
            cseq, self.late_ack_cseq = self.late_ack_cseq, None
            self._send_ack(cseq, body, content_type)

    def cancel(self) -> None:
        if self.state not in ("init", "early") or self.role != "uac":
            return
        self.cancel_pending = True
        if self.got_provisional:
            self._send_cancel()

    def _send_cancel(self) -> None:
        inv = self.invite_req
        if inv is None or self.cancel_timer is not None:
            return
        self.send_cancel_for(inv)
        txns = self.core.transactions
        self.cancel_timer = txns.after(64 * txns.timers.T1, SipLeg._cancel_expired, self)

    def send_cancel_for(self, inv: Request) -> None:
        """CANCEL our INVITE ``inv`` (the first one or a re-INVITE): same Via, Route, Call-ID, From, To and
        CSeq number (RFC 3261 9.1); its own non-INVITE transaction."""
        headers = [h for h in inv.headers if h[0] in ("via", "from", "call-id", "route", "max-forwards")]
        headers.append(("to", "To", inv.get("to") or ""))
        headers.append(("cseq", "CSeq", f"{inv.cseq[0]} CANCEL"))
        cancel = Request("CANCEL", inv.uri, headers)
        self.core.transactions.send_request(cancel, self.target, lambda r: None, lambda: None)

    def _cancel_expired(self) -> None:
        """No final response 64*T1 after our CANCEL: give the INVITE up (RFC 3261 9.1)."""
        if self.state not in ("init", "early"):
            return
        if self.invite_ctx is not None:
            self.invite_ctx.cancel_timers()
        self.state = "terminated"
        self.core.forget_dialog(self)
        self.call.leg_failed(self, 487, "Request Terminated")

    # -- both ----------------------------------------------------------------------------------
    def hangup(self) -> None:
        if self.state == "confirmed":
            self.state = "terminated"
            bye = self._request("BYE")
            self.core.transactions.send_request(bye, self.target, lambda r: None, lambda: None)
        elif self.role == "uac" and self.state in ("init", "early"):
            self.cancel()
            return
        elif self.role == "uas" and self.state in ("init", "early"):
            self.fail(487, "Request Terminated")
        self.state = "terminated"
        self.core.forget_dialog(self)

    def forward_request(self, req: Request, on_final: Callable[[Response | None], None]) -> "Forwarded":
        """Send an in-dialog request across (re-INVITE, UPDATE, INFO, MESSAGE, ...); ``on_final`` gets
        its final response (None: none came). The handle lets a CANCEL follow a re-INVITE."""
        ctype = req.get("content-type")
        body = req.body
        if body and (ctype or "").split(";")[0].strip().lower() == "application/sdp":
            body = self.call.sdp_for(self, body)  # the media layer sees every offer and answer
        out = self._request(req.method, body=body, content_type=ctype)
        for name in ("Event", "Subscription-State", "Refer-To", "Info-Package", "Session-Expires"):
            v = req.get(name)
            if v is not None:
                out.set(name, v)

        fwd = Forwarded(self, out, on_final)

        def on_response(resp: Response) -> None:
            if resp.status < 200:
                fwd.provisional()
                return
            if req.method == "INVITE" and 200 <= resp.status < 300:
                if req.body:
                    self._send_ack(resp.cseq[0])
                else:
                    self.late_ack_cseq = resp.cseq[0]
                self.remote_sdp = resp.body or self.remote_sdp
            fwd.final(resp)

        fwd.ctx = self.core.transactions.send_request(out, self.target, on_response, lambda: fwd.final(None))
        return fwd

    def relay_final(self, txn: "ServerTransaction", req: Request, resp: Response | None) -> None:
        """Answer our side's pending in-dialog request with the other side's final response."""
        if resp is None:
            self._respond(txn, req, 408, "Request Timeout")
            return
        body = resp.body
        if body and resp.content_type == "application/sdp":
            body = self.call.sdp_for(self, body)
        self._respond(txn, req, resp.status, resp.reason, body, resp.get("content-type"))


class Forwarded:
    """A request sent across by ``SipLeg.forward_request`` until its final response.

    A CANCEL of a re-INVITE (RFC 3261 9.1, 9.2) reaches the other side through ``cancel``: sent at
    once after a provisional response, or held until one arrives (a CANCEL must not overtake the
    INVITE), or never when the final response comes first. The final response (a 487, usually) goes
    back through ``on_final`` like any other. With no final 64*T1 after the CANCEL, the request is
    given up and ``on_final`` gets None.
    """

    __slots__ = ("cancel_wanted", "ctx", "done", "got_provisional", "leg", "on_final", "request", "timer")

    def __init__(self, leg: SipLeg, request: Request, on_final: Callable[[Response | None], None]) -> None:
        self.leg = leg
        self.request = request
        self.on_final = on_final
        self.ctx: Any = None
        self.timer: Any = None
        self.done = False
        self.got_provisional = False
        self.cancel_wanted = False

    def cancel(self) -> None:
        if self.done or self.cancel_wanted or self.request.method != "INVITE":
            return
        self.cancel_wanted = True
        if self.got_provisional:
            self._send_cancel()

    def provisional(self) -> None:
        if not self.got_provisional:
            self.got_provisional = True
            if self.cancel_wanted and not self.done:
                self._send_cancel()

    def final(self, resp: Response | None) -> None:
        if self.done:
            return
        self.done = True
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None
        self.on_final(resp)

    def _send_cancel(self) -> None:
        self.leg.send_cancel_for(self.request)
        txns = self.leg.core.transactions
        self.timer = txns.after(64 * txns.timers.T1, Forwarded._cancel_expired, self)

    def _cancel_expired(self) -> None:
        self.timer = None
        if not self.done:
            if self.ctx is not None:
                self.ctx.cancel_timers()
            self.final(None)


class Call:
    """One call through the B2BUA."""

    def __init__(self, core: "SIPCore", call_id: str, caller: str, callee: str, caller_display: str | None,
                 clock: Any, wallclock: Callable[[], float] = time.time) -> None:
        self.core = core
        self.id = call_id
        self.caller = caller
        self.callee = callee
        self.caller_display = caller_display
        self.clock = clock
        self.wallclock = wallclock
        self.a_leg: Leg | None = None
        self.b_legs: list[Leg] = []
        self.answered_leg: Leg | None = None
        self.state = "routing"         # routing, ringing, answered, ended
        self.start = wallclock()
        self.answer_time: float | None = None
        self.end_time: float | None = None
        self.cause = ""
        self.max_forwards = 69
        self.a_leg_late_offer = False
        self.ring_timer: Any = None
        self.failures: list[tuple[int, str | None]] = []
        self.offer = b""
        self.source = "extension"      # who placed it: extension, trunk, browser...
        self.trunk: str | None = None
        self.answered_by: str | None = None
        self.current_route: Route | None = None
        self.last_activity = clock.seconds()

    def touch(self) -> None:
        self.last_activity = self.clock.seconds()

    # -- routing ---------------------------------------------------------------------------------
    def route(self) -> None:
        log.info("call {id} from {caller} to {callee} started", id=self.id, caller=self.caller, callee=self.callee)
        self.core.call_event("call_started", self)
        d = self.core.routers.route(self)
        d.addCallback(self._decided)
        d.addErrback(self._route_failed)

    def _route_failed(self, f: Any) -> None:
        """Acting on the decision failed (e.g. an unusable destination): fail the call, not the server."""
        log.failure("routing call {id}", f, id=self.id)
        if self.state in ("routing", "ringing", "rerouting"):
            for leg in self.b_legs:
                leg.cancel()
            self.b_legs = []
            self._fail_a(500, "Server Internal Error", "failed 500")

    def _decided(self, decision: RouteDecision) -> None:
        if self.state not in ("routing", "rerouting"):
            return  # cancelled while routing
        if isinstance(decision, Reject):
            cause = {404: "not-found", 480: "unavailable", 486: "busy", 403: "forbidden"}.get(
                decision.code, f"rejected {decision.code}")
            self._fail_a(decision.code, decision.reason, cause)
            return
        assert isinstance(decision, Route)
        if not decision.targets:
            self._fail_a(480, "Temporarily Unavailable", "unavailable")
            return
        self.state = "ringing"
        self.current_route = decision
        self.failures = []
        ring_time = decision.ring_time if decision.ring_time is not None else self.core.ring_timeout
        self.ring_timer = self.core.transactions.after(ring_time, Call._no_answer, self)
        for dest in decision.targets:
            leg = self.core.new_uac_leg(self, dest)
            self.b_legs.append(leg)
        for leg in list(self.b_legs):
            if self.state == "ringing":
                leg.invite(self.sdp_for(leg, self.offer))

    def sdp_for(self, to_leg: Leg, sdp: bytes) -> bytes:
        """The SDP to send to ``to_leg``: passthrough now; the media relay rewrites it here later."""
        return self.core.media.rewrite(self, to_leg, sdp)

    # -- events from legs ----------------------------------------------------------------------------
    def leg_progress(self, leg: Leg, status: int, sdp: bytes) -> None:
        if self.state != "ringing" or self.a_leg is None:
            return
        self.a_leg.progress(status if status in (180, 181, 182, 183) else 180, self.sdp_for(self.a_leg, sdp))

    def leg_answered(self, leg: Leg, sdp: bytes) -> None:
        if self.state != "ringing" or self.a_leg is None:
            leg.hangup()
            return
        self.state = "answered"
        self.answered_leg = leg
        self.answer_time = self.wallclock()
        self._stop_ring_timer()
        for other in self.b_legs:
            if other is not leg:
                other.cancel()
        self.b_legs = [leg]
        dest = getattr(leg, "destination", None)
        self.answered_by = dest.aor if dest is not None else None
        self.a_leg.answer(self.sdp_for(self.a_leg, sdp))
        self.core.call_event("call_answered", self)
        log.info("call {id} from {caller} to {callee} answered by {leg}", id=self.id, caller=self.caller,
                 callee=self.callee, leg=leg.description)

    def leg_failed(self, leg: Leg, status: int, reason: str | None) -> None:
        """A fork's INVITE failed. Only current forks count: a leg already given up (no answer, declined,
        another fork answered) reports its 487 too, and that changes nothing."""
        if leg not in self.b_legs:
            return
        self.b_legs.remove(leg)
        self.failures.append((status, reason))
        if self.state != "ringing" or self.b_legs:
            return
        code, reason, cause = self._best_failure()
        if self._next_step(code):
            return
        self._fail_a(code, reason, cause)

    def _next_step(self, status: int) -> bool:
        """Ask the current route what to do after it failed; True when a next step is under way."""
        route = self.current_route
        if route is None or route.on_failure is None:
            return False
        self._stop_ring_timer()
        self.state = "rerouting"
        self.current_route = None
        from twisted.internet import defer
        d = defer.maybeDeferred(route.on_failure, self, status)

        def decided(decision: RouteDecision | None) -> None:
            if self.state != "rerouting":
                return
            if decision is None or not isinstance(decision, (Reject, Route)):
                code, reason, cause = self._best_failure()
                self._fail_a(code, reason, cause)
                return
            self._decided(decision)

        def failed(f: Any) -> None:
            log.failure("next routing step of call {id} failed", f, id=self.id)
            if self.state in ("rerouting", "ringing"):
                for leg in self.b_legs:
                    leg.cancel()
                self.b_legs = []
                self._fail_a(500, "Server Internal Error", "failed 500")

        d.addCallback(decided)
        d.addErrback(failed)
        return True

    def leg_declined(self, leg: Leg) -> None:
        """A callee sent BYE on its early dialog (RFC 3261 15 leaves ending an early dialog to the caller,
        but phones do it to reject a call): its INVITE is cancelled and the fork counts as a 603
        Decline; the other forks ring on, and the caller hears 603 if none answers."""
        leg.cancel()
        self.leg_failed(leg, 603, "Decline")

    def _best_failure(self) -> tuple[int, str | None, str]:
        codes = [c for c, _ in self.failures]
        if codes and all(c == 480 for c in codes) and any(r == "No Answer" for _, r in self.failures):
            return 480, "No Answer", "no-answer"
        for c, r in self.failures:
            if c >= 600:
                return c, r, "busy" if c == 600 else f"declined {c}"
        if 486 in codes:
            return 486, "Busy Here", "busy"
        if any(c in (603,) for c in codes):
            return 603, "Decline", "declined"
        if codes and all(c == 408 for c in codes):
            return 408, "Request Timeout", "no-response"
        for c, r in self.failures:
            if 400 <= c < 500 and c not in (401, 407, 408, 487):
                return c, r, f"failed {c}"
        return 480, "Temporarily Unavailable", "unavailable"

    def _no_answer(self) -> None:
        self.ring_timer = None
        if self.state != "ringing":
            return
        for leg in self.b_legs:
            leg.cancel()
        self.b_legs = []
        self.failures.append((480, "No Answer"))
        if self._next_step(480):
            return
        self._fail_a(480, "No Answer", "no-answer")

    def a_cancelled(self) -> None:
        """The caller sent CANCEL before the answer."""
        if self.state not in ("routing", "ringing", "rerouting"):
            return
        for leg in self.b_legs:
            leg.cancel()
        self.b_legs = []
        self._fail_a(487, "Request Terminated", "cancelled")

    def leg_hungup(self, leg: Leg) -> None:
        """``leg`` sent BYE (already answered with 200 by the leg)."""
        if self.state == "ended":
            return
        for other in [self.a_leg, *self.b_legs]:
            if other is not None and other is not leg:
                other.hangup()
        self.end("normal", f"hangup by {'caller' if leg is self.a_leg else 'callee'}")

    def other(self, leg: Leg) -> Leg | None:
        if leg is self.a_leg:
            return self.answered_leg
        if leg is self.answered_leg:
            return self.a_leg
        return None

    # -- ending ----------------------------------------------------------------------------------------
    def _fail_a(self, code: int, reason: str | None, cause: str) -> None:
        if self.a_leg is not None:
            self.a_leg.fail(code, reason)
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
        self.end_time = self.wallclock()
        self.cause = cause
        dur = (self.end_time - self.answer_time) if self.answer_time else 0.0
        log.info("call {id} from {caller} to {callee} ended: {cause} ({detail}), talk time {dur:.1f}s",
                 id=self.id, caller=self.caller, callee=self.callee, cause=cause, detail=detail, dur=dur)
        self.core.call_ended(self)


class PassthroughMedia:
    """Media policy of this issue: SDP goes across unchanged."""

    def rewrite(self, call: Call, to_leg: Leg, sdp: bytes) -> bytes:
        return sdp
