"""The core: dispatch of SIP requests to the registrar, calls and dialogs (the transaction user)."""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping
from urllib.parse import unquote

from twisted.logger import Logger

from minisip.core.banpolicy import ban_lets_through
from minisip.core.call import Call, Forwarded, PassthroughMedia, SipLeg
from minisip.core.hooks import HookRegistry
from minisip.core.registrar import Registrar
from minisip.core.router import Destination, ExtensionRouter, RouterChain
from minisip.core.security import FailureTracker
from minisip.core.store import CallRecord
from minisip.sip.auth import DigestAuthenticator
from minisip.sip.ids import random_hex
from minisip.sip.message import Request, Response, make_response
from minisip.sip.transaction import ServerTransaction, TransactionLayer, new_branch
from minisip.sip.types import Addr
from minisip.sip.uri import SipURI, TelURI
from minisip.sip.uri import unquote as unquote_string
from minisip.sip.validate import (
    clean_display_name,
    clean_identity,
    decode_user_part,
    escape_controls,
    precheck_request,
    quote_display_name,
)

log = Logger(namespace="minisip.core")

ALLOWED = frozenset({"INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "UPDATE", "INFO", "MESSAGE",
                     "NOTIFY", "REFER"})
ALLOW_HEADER = "INVITE, ACK, BYE, CANCEL, OPTIONS, REGISTER, UPDATE, INFO, MESSAGE, NOTIFY, REFER"
SUPPORTED = frozenset({"replaces", "outbound", "path"})
ACCEPTED_TYPES = frozenset({"application/sdp", "text/plain", "application/dtmf-relay", "application/dtmf",
                            "message/sipfrag", "application/simple-message-summary", "multipart/mixed"})
USER_AGENT = "minisip/0.1"


def _token() -> str:
    return random_hex(6)


class SIPCore:
    """Implements the TransactionUser the transaction layer calls into."""

    user_agent = USER_AGENT

    def __init__(self, reactor: Any, send: Callable[[bytes, Addr], None], *, domain: str,
                 extensions: Mapping[str, Any], location: Any, store: Any,
                 local: Callable[[str], tuple[str, int]], security: FailureTracker | None = None,
                 wallclock: Callable[[], float] = time.time, ring_timeout: float = 60.0,
                 registrar_opts: dict[str, int] | None = None) -> None:
        self.clock = reactor
        self.wallclock = wallclock
        self.domain = domain
        self.extensions = extensions
        self.location = location
        self.store = store
        self.local = local
        self.transactions = TransactionLayer(reactor, send, self)
        self.auth = DigestAuthenticator(domain, reactor)
        self.security = security or FailureTracker(reactor)
        self.registrar = Registrar(location, wallclock, **(registrar_opts or {}))
        self.routers = RouterChain()
        self.extension_router = ExtensionRouter(self.extensions.get, location)
        self.routers.add(self.extension_router, priority=1_000_000, owner="core")
        self.hooks = HookRegistry(self.routers)
        self.unreachable: set[tuple[str, str]] = set()
        self.extension_router.reachable = self.is_reachable
        self.busy: dict[str, int] = {}
        location.add_observer(self._registration_changed)
        self.media = PassthroughMedia()
        self.ring_timeout = ring_timeout
        self.digest_algorithms: tuple[str, ...] = ("MD5", "SHA-256")
        self.dialogs: dict[tuple[str, str], SipLeg] = {}
        self.invites: dict[tuple[str, str, int], Call] = {}   # (call-id, from-tag, cseq) of the caller's INVITE
        self.reinvites: dict[ServerTransaction, Forwarded] = {}  # in-dialog INVITEs passed across, until answered
        self.calls: dict[str, Call] = {}

    # -- configuration -------------------------------------------------------------------------------
    def apply_config(self, domain: str, extensions: Mapping[str, Any], *, ring_timeout: float = 60.0,
                     digest_algorithms: tuple[str, ...] = ("MD5", "SHA-256")) -> None:
        self.ring_timeout = ring_timeout
        self.digest_algorithms = digest_algorithms
        self.domain = domain
        self.auth.realm = domain
        self.extensions = extensions
        self.extension_router.directory = extensions.get

    def password_for(self, user: str) -> str | None:
        ext = self.extensions.get(user)
        return ext.password if ext is not None else None

    # -- addresses ----------------------------------------------------------------------------------
    def via_value(self, transport: str) -> str:
        host, port = self.local(transport)
        return f"SIP/2.0/{transport.upper()} {_hp(host, port)};branch={new_branch()};rport"

    def contact_value(self, transport: str, user: str | None = None) -> str:
        host, port = self.local(transport)
        t = "" if transport == "udp" else f";transport={transport}"
        u = f"{user}@" if user else ""
        return f"<sip:{u}{_hp(host, port)}{t}>"

    # -- plugin support ----------------------------------------------------------------------------
    def respond(self, txn: ServerTransaction, req: Request, status: int, reason: str | None = None,
                headers: list[tuple[str, str]] | None = None, body: bytes = b"") -> None:
        txn.respond(make_response(req, status, reason, to_tag=None if req.to_tag else _token(),
                                  extra=headers or (), body=body))

    def call_event(self, event: str, call: Call) -> None:
        """Busy accounting, then the plugins' call observers."""
        if event == "call_started" and call.source == "extension":
            self.busy[call.caller] = self.busy.get(call.caller, 0) + 1
        elif event == "call_answered" and call.answered_by:
            self.busy[call.answered_by] = self.busy.get(call.answered_by, 0) + 1
        elif event == "call_ended":
            for ext in ((call.caller,) if call.source == "extension" else ()) + (
                    (call.answered_by,) if call.answered_by and call.answer_time else ()):
                n = self.busy.get(ext, 0) - 1
                if n > 0:
                    self.busy[ext] = n
                else:
                    self.busy.pop(ext, None)
        self.hooks.notify(self.hooks.call_observers, event, call)

    def _registration_changed(self, event: str, aor: str, binding: Any) -> None:
        if event in ("registered", "refreshed", "unregistered", "expired"):
            self.unreachable.discard((aor, binding.contact))
        self.hooks.notify(self.hooks.registration_observers, "registration_changed", event, aor, binding)

    def is_reachable(self, binding: Any) -> bool:
        return (binding.aor, binding.contact) not in self.unreachable

    def set_reachable(self, binding: Any, reachable: bool) -> None:
        key = (binding.aor, binding.contact)
        if reachable and key in self.unreachable:
            self.unreachable.discard(key)
            log.info("extension {aor}: contact {contact} is reachable again", aor=binding.aor, contact=binding.contact)
        elif not reachable and key not in self.unreachable:
            self.unreachable.add(key)
            log.warn("extension {aor}: contact {contact} stopped answering; skipped when routing",
                     aor=binding.aor, contact=binding.contact)

    def send_out_of_dialog(self, method: str, uri: str, target: Addr, headers: list[tuple[str, str]], body: bytes,
                           from_user: str | None, to: str | None, call_id: str | None, cseq: int) -> Any:
        from twisted.internet import defer

        from minisip.sip.uri import parse_uri
        d: defer.Deferred = defer.Deferred()
        ruri = parse_uri(uri)
        # a from_user with '@' is a whole address (a trunk registers as user@carrier, RFC 3261 10.2)
        from_addr = from_user if from_user and "@" in from_user else f"{from_user or 'minisip'}@{self.domain}"
        from_uri = f"<sip:{from_addr}>;tag={_token()}"
        req = Request(method, ruri, [
            ("via", "Via", self.via_value(target.transport)),
            ("max-forwards", "Max-Forwards", "70"),
            ("from", "From", from_uri),
            ("to", "To", to or f"<{uri}>"),
            ("call-id", "Call-ID", call_id or f"{_token()}@minisip"),
            ("cseq", "CSeq", f"{cseq} {method}"),
            ("user-agent", "User-Agent", USER_AGENT),
        ], body)
        for name, value in headers:
            req.add(name, value)

        def on_response(resp: Response) -> None:
            if resp.status >= 200 and not d.called:
                d.callback(resp)

        def on_timeout() -> None:
            if not d.called:
                d.callback(None)

        self.transactions.send_request(req, target, on_response, on_timeout)
        return d

    def probe_call(self, call: Call) -> Any:
        from twisted.internet import defer
        legs = [leg for leg in (call.a_leg, call.answered_leg) if isinstance(leg, SipLeg) and leg.state == "confirmed"]
        if not legs:
            return defer.succeed(False)
        results: list[defer.Deferred] = []
        for leg in legs:
            d: defer.Deferred = defer.Deferred()
            req = leg._request("INFO")

            def on_response(resp: Response, d: defer.Deferred = d) -> None:
                if resp.status >= 200 and not d.called:
                    d.callback(resp.status not in (408, 481))

            self.transactions.send_request(req, leg.target, on_response,
                                           lambda d=d: None if d.called else d.callback(False))
            results.append(d)
        dl = defer.gatherResults(results)
        dl.addCallback(all)
        return dl

    def hangup_call(self, call: Call, cause: str) -> None:
        if call.state == "ended":
            return
        if call.state == "answered":
            for leg in (call.a_leg, call.answered_leg):
                if leg is not None:
                    leg.hangup()
            call.end(cause, "released by the server")
        else:
            for leg in call.b_legs:
                leg.cancel()
            call.b_legs = []
            if call.a_leg is not None:
                call.a_leg.fail(480, "Temporarily Unavailable")
            call.end(cause, "released by the server")

    # -- input from the transport ----------------------------------------------------------------------
    def message_received(self, msg: Request | Response, source: Addr) -> None:
        if isinstance(msg, Response):
            self.transactions.receive_response(msg, source)  # answers to our own requests: never banned
            return
        if self.security.is_banned(source.host) and not ban_lets_through(self, msg):
            return  # banned: only requests of dialogs already up (see minisip.core.banpolicy)
        self.transactions.receive_request(msg, source)

    # -- TransactionUser ------------------------------------------------------------------------------------
    def request_received(self, txn: ServerTransaction, req: Request) -> None:
        try:
            self._dispatch(txn, req)
        except Exception:
            log.failure("error handling {method} from {source}", method=req.method, source=str(txn.source))
            try:
                txn.respond(make_response(req, 500, "Server Internal Error", to_tag=_token()))
            except Exception:
                log.failure("cannot answer 500")

    def _dispatch(self, txn: ServerTransaction, req: Request) -> None:
        method = req.method
        check = precheck_request(req, allowed_methods=ALLOWED, supported=SUPPORTED, accepted_types=ACCEPTED_TYPES)
        if check is not None:
            status, reason, extra = check
            txn.respond(make_response(req, status, reason, to_tag=_token(), extra=extra))
            return
        handlers = self.hooks.handlers(method, req.to_tag is not None)
        if handlers and self._run_handlers(handlers, txn, req):
            return
        if method == "CANCEL":  # in a dialog too: it cancels a re-INVITE, it is never passed across
            self._cancel(txn, req)
            return
        if req.to_tag is not None:
            self._in_dialog(txn, req)
            return
        if method == "REGISTER":
            self._register(txn, req)
        elif method == "INVITE":
            self._invite(txn, req)
        elif method == "OPTIONS":
            txn.respond(make_response(req, 200, "OK", to_tag=_token(), extra=[
                ("Allow", ALLOW_HEADER), ("Accept", "application/sdp"),
                ("Supported", ", ".join(sorted(SUPPORTED))), ("Server", USER_AGENT)]))
        elif method == "MESSAGE":
            self._message(txn, req)
        elif method in ("BYE", "UPDATE", "INFO", "NOTIFY", "REFER"):
            txn.respond(make_response(req, 481, "Call/Transaction Does Not Exist", to_tag=_token()))
        else:
            txn.respond(make_response(req, 405, "Method Not Allowed", to_tag=_token(), extra=[("Allow", ALLOW_HEADER)]))

    def _run_handlers(self, handlers: list[tuple[str, Any]], txn: ServerTransaction, req: Request) -> bool:
        from minisip.api import IncomingRequest
        incoming = IncomingRequest(self, txn, req, self.find_dialog(req) if req.to_tag else None)
        for owner, handler in handlers:
            try:
                if handler.handle(incoming):
                    if not incoming.answered:
                        log.error("plugin {owner} handled {method} without answering it", owner=owner,
                                  method=req.method)
                        self.respond(txn, req, 500, "Server Internal Error")
                    return True
            except Exception:
                log.failure("plugin {owner}: request handler for {method} failed", owner=owner, method=req.method)
                if not incoming.answered:
                    self.respond(txn, req, 500, "Server Internal Error")
                return True
        return False

    # -- authentication -----------------------------------------------------------------------------------
    def authenticate(self, txn: ServerTransaction, req: Request, proxy: bool) -> str | None:
        """The authenticated user, or None after answering 401/407 (failures count toward a ban).

        A request without usable credentials is challenged statelessly (no retransmission of the
        challenge to a possibly spoofed source; the client retransmits its request instead). An
        answer that failed is answered in a transaction, so its retransmissions count once. Answers
        for a throttled user name from addresses where it is not registered are refused unchecked,
        with the same answer a wrong password gets.
        """
        hname = "proxy-authorization" if proxy else "authorization"
        values = [v for k, _, v in req.headers if k == hname]
        host = txn.source.host
        security = self.security

        def refuse(username: str) -> bool:
            return security.is_throttled(username) and not any(
                b.source_host == host for b in self.location.lookup(username))

        stale = failed = False
        for value in values:
            result = self.auth.verify(req.method, value, self.password_for, source_host=host, request_uri=req.uri,
                                      algorithms=self.digest_algorithms, refuse=refuse)
            if result.ok:
                return result.username
            if result.stale:
                stale = True
                continue
            if result.reason == "bad credentials":
                failed = True
                if security.record_failure(host, result.username):
                    txn.drop()  # never answered: drop it now rather than leave it in the table
                    return None
            elif result.reason == "throttled":
                failed = True
        code, reason, hdr = (407, "Proxy Authentication Required", "Proxy-Authenticate") if proxy else \
            (401, "Unauthorized", "WWW-Authenticate")
        resp = make_response(req, code, reason, to_tag=_token(),
                             extra=[(hdr, c) for c in self.challenges(stale, host)])
        if failed:
            txn.respond(resp)
        else:
            txn.respond_statelessly(resp)
        return None

    def challenges(self, stale: bool, source_host: str = "") -> list[str]:
        """Challenge header values in the configured algorithm order ([security] digest_algorithms),
        sharing one nonce bound to ``source_host``."""
        return self.auth.challenge(stale, source_host=source_host, algorithms=self.digest_algorithms)

    # -- REGISTER --------------------------------------------------------------------------------------------
    def _register(self, txn: ServerTransaction, req: Request) -> None:
        user = self.authenticate(txn, req, proxy=False)
        if user is None:
            return
        aor = req.to.uri.user
        if aor != user:
            txn.respond(make_response(req, 403, "Forbidden", to_tag=_token()))
            return
        self.registrar.handle(txn, req, user)
        src = txn.source
        if src.reliable:
            # Registered over a connection, which no spoofed source can open: never ban that address
            # while the registration lasts.
            ends = [b.expires_at for b in self.location.lookup(user)
                    if b.source_host == src.host and b.transport == src.transport]
            if ends:
                self.security.exempt(src.host, until=self.clock.seconds() + max(ends) - self.wallclock())

    # -- calls ---------------------------------------------------------------------------------------------
    def _invite(self, txn: ServerTransaction, req: Request) -> None:
        mf = req.get("max-forwards")
        if mf is not None and int(mf) == 0:
            txn.respond(make_response(req, 483, "Too Many Hops", to_tag=_token()))
            return
        identity = self.hooks.first(self.hooks.identifiers, "identify", req, txn.source) \
            if self.hooks.identifiers else None
        # Identities from the network go into headers, logs and records: a number or a user name only.
        if identity is not None:
            if identity.reject is not None:
                txn.respond(make_response(req, identity.reject[0], identity.reject[1], to_tag=_token()))
                return
            user = clean_identity(identity.caller or "")
            if user is None:
                log.info("INVITE from {source} refused (400): caller {caller} is neither a number nor a user name",
                         source=str(txn.source), caller=escape_controls(str(identity.caller)[:80]))
                txn.respond(make_response(req, 400, "Bad Caller Identity", to_tag=_token()))
                return
        else:
            user = self.authenticate(txn, req, proxy=True)
            if user is None:
                return
        uri = req.uri
        callee: str | None = None
        if identity is not None and identity.callee:
            callee = clean_identity(identity.callee)
        elif isinstance(uri, SipURI):
            callee = decode_user_part(uri.user) if uri.user else None
        elif isinstance(uri, TelURI):
            callee = clean_identity(uri.user)
        if not callee:
            txn.respond(make_response(req, 404, "Not Found", to_tag=_token()))
            return
        if identity is not None and identity.display:
            text = clean_display_name(unquote_string(identity.display))  # plain or quoted text
        else:
            text = clean_display_name(req.from_.display_name)
        display = quote_display_name(text) if text else None
        call = Call(self, _token(), user, callee, display, self.clock, self.wallclock)
        if identity is not None:
            call.source = identity.source
            call.trunk = identity.trunk
        call.max_forwards = (int(mf) - 1) if mf is not None else 69
        call.offer = req.body if req.content_type == "application/sdp" else b""
        call.a_leg_late_offer = not call.offer
        a = SipLeg(self, call, "uas", req.call_id, _token(), _strip_tag(req.get("to") or ""),
                   _strip_tag(req.get("from") or ""), _contact_uri(req), txn.source)
        a.remote_tag = req.from_tag
        a.remote_cseq = req.cseq[0]
        a.route_set = req.get_all("record-route")
        a.invite_txn = txn
        a.invite_req = req
        a.remote_sdp = call.offer
        call.a_leg = a
        self.register_dialog(a)
        self.invites[(req.call_id, req.from_tag or "", req.cseq[0])] = call
        self.calls[call.id] = call
        call.route()

    def _message(self, txn: ServerTransaction, req: Request) -> None:
        """Page-mode MESSAGE (RFC 3428) from an extension to an extension: relayed to one registered contact."""
        user = self.authenticate(txn, req, proxy=True)
        if user is None:
            return
        uri = req.uri
        target = uri.user if isinstance(uri, (SipURI, TelURI)) else None
        target = unquote(target) if target and isinstance(uri, SipURI) else target
        if not target or target not in self.extensions:
            txn.respond(make_response(req, 404, "Not Found", to_tag=_token()))
            return
        dests = [b for b in self.location.lookup(target) if self.is_reachable(b)]
        if not dests:
            txn.respond(make_response(req, 480, "Temporarily Unavailable", to_tag=_token()))
            return
        from minisip.core.router import destination_for
        dest = destination_for(dests[0])
        headers = [("Content-Type", req.get("content-type") or "text/plain")]
        d = self.send_out_of_dialog("MESSAGE", dest.uri, dest.addr, headers, req.body, user,
                                    f"<sip:{target}@{self.domain}>", None, 1)

        def relay(resp: Response | None) -> None:
            if resp is None:
                txn.respond(make_response(req, 408, "Request Timeout", to_tag=_token()))
            else:
                txn.respond(make_response(req, resp.status, resp.reason, to_tag=_token()))

        d.addCallback(relay)
        d.addErrback(lambda f: log.failure("relaying MESSAGE", f))

    def new_uac_leg(self, call: Call, dest: Destination) -> SipLeg:
        ext = self.extensions.get(call.caller)
        name = call.caller_display or (f'"{ext.name}"' if ext is not None and getattr(ext, "name", None) else None)
        from_uri = dest.from_uri or f"<sip:{call.caller}@{self.domain}>"
        if name and not dest.from_uri:
            from_uri = f"{name} {from_uri}"
        to_uri = dest.to_uri or f"<sip:{dest.aor or call.callee}@{self.domain}>"
        leg = SipLeg(self, call, "uac", _token() + "@minisip", _token(), from_uri, to_uri, dest.uri, dest.addr)
        leg.description = f"{dest.uri} via {dest.addr}"
        leg.destination = dest
        return leg

    def _cancel(self, txn: ServerTransaction, req: Request) -> None:
        inv = self.transactions.find_server_invite(req)
        call = self.invites.get((req.call_id, req.from_tag or "", req.cseq[0]))
        if inv is None and call is None:
            txn.respond(make_response(req, 481, "Call/Transaction Does Not Exist", to_tag=_token()))
            return
        # RFC 3261 9.2: 200 whenever the INVITE's transaction exists, even if it was answered already.
        txn.respond(make_response(req, 200, "OK", to_tag=_token()))
        if call is not None:
            call.a_cancelled()
        elif inv is not None:
            fwd = self.reinvites.get(inv)
            if fwd is not None:
                fwd.cancel()  # the other side's 487 comes back as the re-INVITE's answer

    # -- dialogs ---------------------------------------------------------------------------------------------
    def register_dialog(self, leg: SipLeg) -> None:
        self.dialogs[(leg.call_id, leg.local_tag)] = leg

    def forget_dialog(self, leg: SipLeg) -> None:
        if self.dialogs.get((leg.call_id, leg.local_tag)) is leg:
            del self.dialogs[(leg.call_id, leg.local_tag)]

    def find_dialog(self, req: Request) -> SipLeg | None:
        tag = req.to_tag
        return self.dialogs.get((req.call_id, tag)) if tag else None

    def _in_dialog(self, txn: ServerTransaction, req: Request) -> None:
        leg = self.find_dialog(req)
        if leg is None or leg.state == "terminated":
            txn.respond(make_response(req, 481, "Call/Transaction Does Not Exist"))
            return
        cseq = req.cseq[0]
        if leg.remote_cseq and cseq < leg.remote_cseq and req.method != "ACK":
            txn.respond(make_response(req, 500, "Server Internal Error", extra=[("Retry-After", "1")]))
            return
        leg.remote_cseq = max(leg.remote_cseq, cseq)
        call = leg.call
        call.touch()
        if req.method == "BYE":
            txn.respond(make_response(req, 200, "OK"))
            if leg is call.a_leg and leg.invite_txn is not None:
                call.a_cancelled()  # the caller's BYE on an early dialog: 487 to its INVITE (RFC 3261 15.1.2)
                return
            if leg is not call.a_leg and leg.state == "early" and leg in call.b_legs:
                call.leg_declined(leg)  # a callee's BYE before its 200: that fork declines
                return
            leg.state = "terminated"
            self.forget_dialog(leg)
            call.leg_hungup(leg)
            return
        other = call.other(leg)
        if other is None or call.state != "answered":
            if req.method in ("INVITE", "UPDATE"):
                txn.respond(make_response(req, 491, "Request Pending"))
            else:
                txn.respond(make_response(req, 481, "Call/Transaction Does Not Exist"))
            return
        if req.method != "INVITE":
            other.forward_request(req, lambda resp: leg.relay_final(txn, req, resp))
            return
        leg.remote_sdp = req.body or leg.remote_sdp

        def answered(resp: Response | None) -> None:
            self.reinvites.pop(txn, None)
            leg.relay_final(txn, req, resp)

        fwd = other.forward_request(req, answered)
        if not fwd.done:
            self.reinvites[txn] = fwd

    def respond_invite_2xx(self, txn: ServerTransaction, resp: Response) -> None:
        txn.respond(resp)
        self.transactions.send_2xx_reliably(resp, txn.source, lambda: self._ack_timeout(resp))

    def _ack_timeout(self, resp: Response) -> None:
        leg = self.dialogs.get((resp.call_id, resp.to_tag or ""))
        if leg is not None and leg.call.state != "ended":
            log.info("no ACK for 2xx on call {id}: hanging up", id=leg.call.id)
            leg.hangup()
            leg.call.leg_hungup(leg)

    def ack_received(self, request: Request, source: Addr) -> None:
        leg = self.find_dialog(request)
        if leg is None:
            return
        call = leg.call
        other = call.other(leg)
        if other is not None and request.body:
            leg.remote_sdp = request.body
            other.forward_ack(call.sdp_for(other, request.body), request.get("content-type"))
        elif other is not None:
            other.forward_ack(b"", None)

    def stray_response(self, response: Response, source: Addr) -> None:
        if 200 <= response.status < 300 and response.cseq[1] == "INVITE":
            leg = self.dialogs.get((response.call_id, response.from_tag or ""))
            if leg is not None:
                leg.resend_ack(response.cseq[0])

    # -- call end ----------------------------------------------------------------------------------------------
    def call_ended(self, call: Call) -> None:
        self.calls.pop(call.id, None)
        for txn, fwd in list(self.reinvites.items()):
            if fwd.leg.call is call:
                del self.reinvites[txn]
        self.call_event("call_ended", call)
        a = call.a_leg
        if isinstance(a, SipLeg) and a.invite_req is not None:
            req = a.invite_req
            self.invites.pop((req.call_id, req.from_tag or "", req.cseq[0]), None)
        for leg in [call.a_leg, *call.b_legs]:
            if isinstance(leg, SipLeg) and leg.state == "terminated":
                self.forget_dialog(leg)
        if a is not None and isinstance(a, SipLeg):
            self.transactions.after(32, self.forget_dialog, a)
        assert call.end_time is not None
        try:
            self.store.add_call_record(CallRecord(call_id=call.id, caller=call.caller, callee=call.callee,
                                                  start=call.start, answer=call.answer_time, end=call.end_time,
                                                  cause=call.cause))
        except Exception:
            log.failure("cannot store the record of call {id}", id=call.id)


def _hp(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _strip_tag(value: str) -> str:
    """A From/To value without its tag parameter (the leg adds its own)."""
    from minisip.sip.uri import parse_name_addr
    na = parse_name_addr(value)
    na.params.pop("tag", None)
    return str(na)


def _contact_uri(req: Request) -> str:
    contacts = req.contacts()
    if contacts:
        return str(contacts[0].uri)
    return str(req.from_.uri)
