"""A SIP dialog as a leg of the call layer: the caller's (UAS) or a callee's (UAC) side of the B2BUA.

``SipLeg`` turns call events into SIP (INVITE, 18x/200, CANCEL, BYE, ACK, in-dialog requests) and SIP
into call events (``ICallEvents`` of its call). Its dialog state is a pure ``minisip.sip.dialog.Dialog``;
the SIP core (``SIPCore``) owns the transactions and finds a leg by its dialog.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from minisip.core.call import LegRequest, LegResponse
from minisip.core.media import with_sdp
from minisip.interfaces import ILeg, ILegFactory
from minisip.sip.auth import build_authorization
from minisip.sip.dialog import Dialog
from minisip.sip.message import Request, Response, make_response
from minisip.sip.transaction import ServerTransaction, new_branch
from minisip.sip.types import Addr

log = Logger(namespace="minisip.call")

# Headers that travel with an in-dialog request passed across the B2BUA.
CARRIED = ("Event", "Subscription-State", "Refer-To", "Referred-By", "Info-Package", "Session-Expires")


@implementer(ILeg)
class SipLeg:
    """One SIP dialog of the B2BUA, as UAS (``role='uas'``, the caller) or UAC (``role='uac'``)."""

    kind = "sip"

    def __init__(self, core: Any, call: Any, role: str, dialog: Dialog, target: Addr,
                 destination: Any = None) -> None:
        self.core = core
        self.call = call
        self.role = role
        self.dialog = dialog
        self.target = target
        self.destination = destination
        self.state = "init"            # init, early, confirmed, terminated
        self.remote_sdp = b""
        self.local_sdp = b""
        self.invite_txn: ServerTransaction | None = None    # uas: the caller's INVITE, until answered
        self.invite_req: Request | None = None              # uas: the caller's INVITE; uac: ours
        self.invite_ctx: Any = None                         # uac: the INVITE client transaction
        self.cancel_timer: Any = None                       # uac: set once CANCEL is sent
        self.got_provisional = False
        self.cancel_pending = False
        self.last_ack: Request | None = None
        self.late_ack_cseq: int | None = None               # uac: ACK held until the other side's ACK (late offer)
        self.description = str(target)
        self.auth_tried = False

    # dialog identity, for the core's tables
    @property
    def call_id(self) -> str:
        return self.dialog.call_id

    @property
    def local_tag(self) -> str:
        return self.dialog.local_tag

    # -- helpers -------------------------------------------------------------------------------
    def _request(self, method: str, cseq: int | None = None, body: bytes = b"", content_type: str | None = None,
                 max_forwards: int = 70) -> Request:
        core = self.core
        transport = self.target.transport
        return self.dialog.request(method, core.via_value(transport), core.contact_value(transport), core.user_agent,
                                   cseq=cseq, body=body, content_type=content_type, max_forwards=max_forwards)

    def _respond(self, txn: ServerTransaction, req: Request, status: int, reason: str | None = None,
                 body: bytes = b"", content_type: str | None = None) -> None:
        extra: list[tuple[str, str]] = []
        if 100 < status < 300:
            extra.append(("Contact", self.core.contact_value(self.target.transport)))
        if body:
            extra.append(("Content-Type", content_type or "application/sdp"))
        resp = make_response(req, status, reason, to_tag=self.dialog.local_tag, extra=extra, body=body)
        if req.method == "INVITE" and 200 <= status < 300:
            self.core.respond_invite_2xx(txn, resp)
        else:
            txn.respond(resp)

    def _offer_body(self, sdp: bytes) -> tuple[bytes, str | None]:
        """The body of our INVITE: the SDP, inside the caller's multipart body when it came in one."""
        call = self.call
        ctype = call.offer_type
        if sdp and ctype and ctype.split(";")[0].strip().lower().startswith("multipart/"):
            return with_sdp(ctype, call.offer_body, sdp), ctype
        return sdp, "application/sdp" if sdp else None

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

    def reject(self, status: int, reason: str | None) -> None:
        if self.invite_txn is None or self.state not in ("init", "early"):
            return
        self.state = "terminated"
        assert self.invite_req is not None
        self._respond(self.invite_txn, self.invite_req, status, reason)
        self.invite_txn = None
        self.core.forget_dialog(self)

    # -- B-leg (we are UAC) ----------------------------------------------------------------------
    def start(self, sdp: bytes) -> None:
        self.local_sdp = sdp
        body, ctype = self._offer_body(sdp)
        req = self._request("INVITE", body=body, content_type=ctype, max_forwards=self.call.max_forwards)
        self.core.hooks.apply_filters(req, self.destination, self.call.info)
        self.invite_req = req
        self.core.register_dialog(self)
        self.invite_ctx = self.core.transactions.send_request(req, self.target, self._invite_response,
                                                              self._invite_timeout)

    def _retry_with_credentials(self, resp: Response) -> bool:
        """Answer a 401/407 from a trunk with the destination's credentials (once)."""
        credentials = getattr(self.destination, "credentials", None)
        if credentials is None or self.auth_tried or self.invite_req is None:
            return False
        hname = "www-authenticate" if resp.status == 401 else "proxy-authenticate"
        challenges = [v for k, _, v in resp.headers if k == hname]
        if not challenges:
            return False
        user, password = credentials
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
        req.set("CSeq", f"{self.dialog.next_cseq()} INVITE")
        via = req.get("via") or ""
        req.set("Via", via.split(";branch=")[0] + f";branch={new_branch()};rport")
        self.invite_req = req
        self.invite_ctx = self.core.transactions.send_request(req, self.target, self._invite_response,
                                                              self._invite_timeout)
        return True

    def _invite_response(self, resp: Response) -> None:
        if self.state == "terminated" and resp.status >= 200:
            if 200 <= resp.status < 300:
                if self.last_ack is not None and resp.to_tag == self.dialog.remote_tag:
                    self.resend_ack(resp.cseq[0])  # a 2xx already ACKed and hung up
                else:
                    self._late_2xx(resp)
            return
        status = resp.status
        call = self.call
        if status < 200:
            self.got_provisional = True  # 100 included: CANCEL may go (RFC 3261 9.1)
            if status != 100:
                if self.state == "init":
                    self.state = "early"
                if resp.to_tag:
                    self.dialog.remote_tag = resp.to_tag
            if self.cancel_pending:
                self._send_cancel()
                return
            if status == 100:
                return
            self.remote_sdp = resp.body or self.remote_sdp
            call.leg_progress(self, status, resp.body)
        elif status < 300:
            if self.state == "confirmed":
                # A retransmission (our ACK was lost, or is held for the caller's ACK), or a 2xx of another
                # downstream fork: never a reason to answer the call again.
                if resp.to_tag == self.dialog.remote_tag and self.late_ack_cseq is None:
                    self.resend_ack(resp.cseq[0])
                return
            self._establish(resp)
            if self.cancel_pending or call.answered_leg not in (None, self):
                # answered by another fork, or cancelled too late: acknowledge, then hang up
                self._send_ack(resp.cseq[0])
                self.hangup("answered elsewhere")
                return
            self.remote_sdp = resp.body
            if call.a_leg_late_offer:
                self.late_ack_cseq = resp.cseq[0]
            else:
                self._send_ack(resp.cseq[0])
            call.leg_answered(self, resp.body)
        else:
            if status in (401, 407) and not self.cancel_pending and self._retry_with_credentials(resp):
                return
            self.state = "terminated"
            self.core.forget_dialog(self)
            if not self.cancel_pending:
                call.leg_failed(self, status, resp.reason)
            else:
                call.leg_failed(self, 487, "Request Terminated")

    def _establish(self, resp: Response) -> None:
        self.state = "confirmed"
        if not self.dialog.confirm(resp):
            log.info("bad Contact in 2xx from {leg}; keeping the request URI", leg=self.description)

    def _late_2xx(self, resp: Response) -> None:
        self._establish(resp)
        self._send_ack(resp.cseq[0])
        self.hangup("answered too late")

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

    def ack(self, sdp: bytes) -> None:
        if self.late_ack_cseq is not None:
            cseq, self.late_ack_cseq = self.late_ack_cseq, None
            self._send_ack(cseq, sdp, "application/sdp" if sdp else None)

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
        self.cancel_timer = self.core.calls.after(64 * self.core.transactions.timers.T1, SipLeg._cancel_expired,
                                                  self)

    def send_cancel_for(self, inv: Request) -> None:
        """CANCEL our INVITE ``inv`` (the first one or a re-INVITE): same Via, Route, Call-ID, From, To and
        CSeq number (RFC 3261 9.1); its own non-INVITE transaction."""
        headers = [h for h in inv.headers if h[0] in ("via", "from", "call-id", "route", "max-forwards")]
        headers.append(("to", "To", inv.get("to") or ""))
        headers.append(("cseq", "CSeq", f"{inv.cseq[0]} CANCEL"))
        cancel = Request("CANCEL", inv.uri, headers)
        self.core.transactions.send_request(cancel, self.target, _ignore, _nothing)

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
    def hangup(self, cause: str = "") -> None:
        if self.state == "confirmed":
            self.state = "terminated"
            bye = self._request("BYE")
            self.core.transactions.send_request(bye, self.target, _ignore, _nothing)
        elif self.role == "uac" and self.state in ("init", "early"):
            self.cancel()
            return
        elif self.role == "uas" and self.state in ("init", "early"):
            self.reject(487, "Request Terminated")
        self.state = "terminated"
        self.core.forget_dialog(self)

    def probe(self) -> defer.Deferred:
        """A body-less in-dialog INFO: any final answer but 408/481 means the peer knows the dialog."""
        d: defer.Deferred = defer.Deferred()
        if self.state != "confirmed":
            d.callback(False)
            return d

        def on_response(resp: Response) -> None:
            if resp.status >= 200 and not d.called:
                d.callback(resp.status not in (408, 481))

        self.core.transactions.send_request(self._request("INFO"), self.target, on_response,
                                            lambda: None if d.called else d.callback(False))
        return d

    def close(self) -> None:
        self.core.leg_closed(self)

    def snapshot(self) -> dict[str, Any]:
        """What a restart needs to end this dialog with a BYE (JSON-friendly)."""
        d = self.dialog
        t = self.target
        return {"kind": "sip", "call_id": d.call_id, "local_tag": d.local_tag, "remote_tag": d.remote_tag,
                "local_uri": d.local_uri, "remote_uri": d.remote_uri, "remote_target": d.remote_target,
                "route_set": list(d.route_set), "cseq": d.local_cseq, "target": [t.transport, t.host, t.port]}

    # -- in-dialog requests ------------------------------------------------------------------------
    def request_received(self, txn: ServerTransaction, req: Request) -> None:
        """A request inside this leg's dialog (not ACK, not CANCEL): BYE ends the leg, the rest goes across."""
        call = self.call
        call.touch()
        method = req.method
        if method == "BYE":
            txn.respond(make_response(req, 200, "OK"))
            if self.role == "uac" and self.state == "early" and self in call.b_legs:
                # a callee's BYE before its 200: that fork declines (phones do it to reject a call)
                self.cancel()
                call.leg_failed(self, 603, "Decline")
                return
            if self.role == "uac" or self.invite_txn is None:
                self.state = "terminated"
                self.core.forget_dialog(self)
            call.leg_hungup(self, "bye")
            return
        mf = req.get("max-forwards")
        if mf is not None and mf.strip().isdigit() and int(mf) == 0:
            txn.respond(make_response(req, 483, "Too Many Hops"))
            return
        if method == "INVITE":
            self.remote_sdp = req.body or self.remote_sdp
        headers = tuple((name, v) for name in CARRIED if (v := req.get(name)) is not None)
        leg_req = LegRequest(method, req.body, req.get("content-type"), headers,
                             int(mf) - 1 if mf is not None and mf.strip().isdigit() else 70)

        def answered(resp: LegResponse | None) -> None:
            self.core.reinvites.pop(txn, None)
            self._relay_final(txn, req, resp)

        handle = call.leg_request(self, leg_req, answered)
        if method == "INVITE" and not handle.done:
            self.core.reinvites[txn] = handle

    def send_request(self, request: LegRequest, on_final: Callable[[LegResponse | None], None]) -> "Forwarded":
        """Send an in-dialog request to our peer (re-INVITE, UPDATE, INFO, MESSAGE, REFER...); ``on_final``
        gets its final answer (None: none came). The handle lets a CANCEL follow a re-INVITE."""
        out = self._request(request.method, body=request.body, content_type=request.content_type,
                            max_forwards=request.max_forwards)
        for name, value in request.headers:
            out.set(name, value)
        fwd = Forwarded(self, out, on_final)
        method = request.method
        has_body = bool(request.body)

        def on_response(resp: Response) -> None:
            if resp.status < 200:
                fwd.provisional()
                return
            if method == "INVITE" and 200 <= resp.status < 300:
                if has_body:
                    self._send_ack(resp.cseq[0])
                else:
                    self.late_ack_cseq = resp.cseq[0]
                self.remote_sdp = resp.body or self.remote_sdp
            fwd.final(LegResponse(resp.status, resp.reason, resp.body, resp.get("content-type")))

        fwd.ctx = self.core.transactions.send_request(out, self.target, on_response, lambda: fwd.final(None))
        return fwd

    def _relay_final(self, txn: ServerTransaction, req: Request, resp: LegResponse | None) -> None:
        """Answer our side's pending in-dialog request with the other side's final answer."""
        if resp is None:
            self._respond(txn, req, 408, "Request Timeout")
            return
        self._respond(txn, req, resp.status, resp.reason, resp.body, resp.content_type)


def _ignore(resp: Response) -> None:
    pass


def _nothing() -> None:
    pass


class Forwarded:
    """A request sent by ``SipLeg.send_request`` until its final response.

    A CANCEL of a re-INVITE (RFC 3261 9.1, 9.2) reaches the other side through ``cancel``: sent at
    once after a provisional response, or held until one arrives (a CANCEL must not overtake the
    INVITE), or never when the final response comes first. The final response (a 487, usually) goes
    back through ``on_final`` like any other. With no final 64*T1 after the CANCEL, the request is
    given up and ``on_final`` gets None.
    """

    __slots__ = ("cancel_wanted", "ctx", "done", "got_provisional", "leg", "on_final", "request", "timer")

    def __init__(self, leg: SipLeg, request: Request, on_final: Callable[[LegResponse | None], None]) -> None:
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

    def final(self, resp: LegResponse | None) -> None:
        if self.done:
            return
        self.done = True
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None
        self.on_final(resp)

    def _send_cancel(self) -> None:
        self.leg.send_cancel_for(self.request)
        core = self.leg.core
        self.timer = core.calls.after(64 * core.transactions.timers.T1, Forwarded._cancel_expired, self)

    def _cancel_expired(self) -> None:
        self.timer = None
        if not self.done:
            if self.ctx is not None:
                self.ctx.cancel_timers()
            self.final(None)


@implementer(ILegFactory)
class SipLegFactory:
    """Makes the SIP B-legs of registered contacts and SIP URIs (trunks)."""

    def __init__(self, core: Any) -> None:
        self.core = core  # the SIPCore (not imported: it imports this module)

    def make_leg(self, call: Any, destination: Any) -> SipLeg:
        return self.core.new_uac_leg(call, destination)

    def release(self, snapshot: dict[str, Any]) -> None:
        """After a crash: end the dialog of ``snapshot`` (SipLeg.snapshot) with a BYE."""
        dialog = Dialog(snapshot["call_id"], snapshot["local_tag"], snapshot["local_uri"], snapshot["remote_uri"],
                        snapshot["remote_target"], snapshot["remote_tag"])
        dialog.route_set = list(snapshot.get("route_set") or [])
        dialog.local_cseq = int(snapshot.get("cseq") or 0) + 100   # past any re-INVITE sent after the save
        transport, host, port = snapshot["target"]
        core = self.core
        bye = dialog.request("BYE", core.via_value(transport), None, core.user_agent)
        core.transactions.send_request(bye, Addr(transport, host, int(port)), _ignore, _nothing)
