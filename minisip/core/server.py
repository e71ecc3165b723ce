"""The core: dispatch of SIP requests to the registrar, calls and dialogs (the transaction user)."""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping
from urllib.parse import quote, unquote

from twisted.internet import defer
from twisted.logger import Logger

from minisip.config import DEFAULT_DIGEST_ALGORITHMS
from minisip.core.banpolicy import ban_lets_through
from minisip.core.call import Call, CallManager, Relayed
from minisip.core.hooks import HookRegistry
from minisip.core.incoming import IncomingRequest
from minisip.core.media import sdp_of
from minisip.core.registrar import Registrar
from minisip.core.router import ExtensionRouter, destination_for
from minisip.core.security import FailureTracker
from minisip.core.sipleg import SipLeg, SipLegFactory
from minisip.sip.auth import DigestAuthenticator
from minisip.sip.dialog import Dialog
from minisip.sip.ids import random_hex
from minisip.sip.message import Request, Response, UnsafeHeaderError, make_response
from minisip.sip.transaction import ServerTransaction, TransactionLayer, new_branch
from minisip.sip.types import Addr
from minisip.sip.uri import SipURI, TelURI, parse_uri
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
    """The SIP side of the server: the TransactionUser the transaction layer calls into.

    It authenticates, registers, and turns SIP dialogs into legs of the call layer (``CallManager``):
    a new INVITE becomes a call with a SipLeg as its A-leg; destinations of kind ``contact`` and ``sip``
    get SipLeg B-legs through ``SipLegFactory``. Calls themselves, their timers and routing belong to the
    call layer."""

    user_agent = USER_AGENT

    def __init__(self, reactor: Any, send: Callable[[bytes, Addr], None], *, domain: str,
                 extensions: Mapping[str, Any], location: Any, store: Any,
                 local: Callable[[str], tuple[str, int]], security: FailureTracker | None = None,
                 wallclock: Callable[[], float] = time.time, ring_timeout: float = 60.0,
                 registrar_opts: dict[str, int] | None = None, calls: CallManager | None = None) -> None:
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
        self.calls = calls or CallManager(reactor, store, HookRegistry(), wallclock=wallclock,
                                          ring_timeout=ring_timeout)
        self.hooks = self.calls.hooks
        self.routers = self.calls.routers
        self.is_connected: Callable[[Addr], bool] | None = None   # the transport's, once it exists
        self.opened_by_us: Callable[[Addr], bool] = lambda source: False
        self.peer_certificate: Callable[[Addr], str | None] = lambda source: None
        self.pin_certificates: Callable[[str, int, tuple[str, ...]], None] = lambda host, port, pins: None
        self.extension_router = ExtensionRouter(self.extensions.get, location, connected=self.connected)
        self.routers.add(self.extension_router, priority=1_000_000, owner="core")
        self.unreachable: set[tuple[str, str]] = set()
        self.extension_router.reachable = self.is_reachable
        self.extension_router.extra = self.hooks.extra_contacts
        location.add_observer(self._registration_changed)
        factory = SipLegFactory(self)
        self.hooks.leg_factories["contact"] = factory
        self.hooks.leg_factories["sip"] = factory
        self.digest_algorithms: tuple[str, ...] = DEFAULT_DIGEST_ALGORITHMS
        self.dialogs: dict[tuple[str, str], SipLeg] = {}
        self.invites: dict[tuple[str, str, int], Call] = {}   # (call-id, from-tag, cseq) of the caller's INVITE
        self.reinvites: dict[ServerTransaction, Relayed] = {}  # in-dialog INVITEs passed across, until answered

    @property
    def busy(self) -> dict[str, int]:
        return self.calls.busy

    # -- configuration -------------------------------------------------------------------------------
    def apply_config(self, domain: str, extensions: Mapping[str, Any], *, ring_timeout: float = 60.0,
                     digest_algorithms: tuple[str, ...] = DEFAULT_DIGEST_ALGORITHMS) -> None:
        self.calls.ring_timeout = ring_timeout
        self.digest_algorithms = digest_algorithms
        self.domain = domain
        self.auth.realm = domain
        self.extensions = extensions
        self.extension_router.directory = extensions.get

    def destinations(self, aor: str) -> list[Any]:
        """Where extension ``aor`` rings now: its reachable registered contacts and its logged-in browsers."""
        return self.extension_router.destinations(aor)

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

    def _registration_changed(self, event: str, aor: str, binding: Any) -> None:
        if event in ("registered", "refreshed", "unregistered", "expired"):
            self.unreachable.discard((aor, binding.contact))
        self.hooks.notify(self.hooks.registration_observers, "registration_changed", event, aor, binding)

    def connected(self, addr: Addr) -> bool:
        """Is a stream connection to ``addr`` open (True when no transport tells: unit tests)."""
        return self.is_connected is None or self.is_connected(addr)

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
        except UnsafeHeaderError as e:
            # a value with CR/LF/NUL reached a header we build (a plugin's destination, say): refused
            # by the serializer before anything was sent; one line, no traceback
            log.warn("refused to send a header with CR, LF or NUL while handling {method} from {source}: "  # noqa: G010
                     "{e}", method=req.method, source=str(txn.source), e=escape_controls(str(e)))
            try:
                txn.respond(make_response(req, 500, "Server Internal Error", to_tag=_token()))
            except Exception:
                log.failure("cannot answer 500")
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
                                      algorithms=self.algorithms_for(self._account(req)), refuse=refuse)
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
                             extra=[(hdr, c) for c in self.challenges(stale, host, self._account(req))])
        if failed:
            txn.respond(resp)
        else:
            txn.respond_statelessly(resp)
        return None

    @staticmethod
    def _account(req: Request) -> str | None:
        """The account being challenged: the extension registered (To) or the caller (From)."""
        named = req.to if req.method == "REGISTER" else req.from_
        return getattr(getattr(named, "uri", None), "user", None)

    def algorithms_for(self, user: str | None) -> tuple[str, ...]:
        """The digest algorithms of ``user``'s extension ([extension N] digest_algorithms), else the
        server's ([security] digest_algorithms), also for unknown users."""
        ext = self.extensions.get(user) if user else None
        return getattr(ext, "digest_algorithms", None) or self.digest_algorithms

    def challenges(self, stale: bool, source_host: str = "", user: str | None = None) -> list[str]:
        """Challenge header values in the account's algorithm order, sharing one nonce bound to
        ``source_host``."""
        return self.auth.challenge(stale, source_host=source_host, algorithms=self.algorithms_for(user))

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
        if identity is not None:   # a trunk's caller: its display name is the carrier's caller name
            text = clean_display_name(unquote_string(identity.display) if identity.display
                                      else req.from_.display_name)
        elif getattr(self.extensions.get(user), "phone_display_name", False):
            text = clean_display_name(req.from_.display_name)
        else:
            # An extension's callee sees the configured name (or the number), never what its phone
            # claims ("CEO Boss"), unless [extension N] phone_display_name = yes.
            text = None
        display = quote_display_name(text) if text else None
        source = identity.source if identity is not None else "extension"
        trunk = identity.trunk if identity is not None else None
        if self.calls.over_limit(user, source, trunk):
            log.warn("security: call from {who} refused: {n} calls at once is its limit",  # noqa: G010
                     who=f"trunk {trunk}" if trunk else f"extension {user}",
                     n=self.calls.max_calls_per_trunk if trunk else self.calls.max_calls_per_extension)
            txn.respond(make_response(req, 486, "Too Many Calls", to_tag=_token()))
            return
        call = self.calls.new_call(_token(), user, callee, display,
                                   source=identity.source if identity is not None else "extension",
                                   trunk=identity.trunk if identity is not None else None,
                                   max_forwards=(int(mf) - 1) if mf is not None else 69)
        a = SipLeg(self, call, "uas", Dialog.from_request(req, _token()), txn.source)
        a.invite_txn = txn
        a.invite_req = req
        a.remote_sdp = req.body
        self.register_dialog(a)
        self.invites[(req.call_id, req.from_tag or "", req.cseq[0])] = call
        call.begin(a, req.body, req.get("content-type") if req.body else None)

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
        dest = destination_for(dests[0], self.connected)
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

    def new_uac_leg(self, call: Call, dest: Any) -> SipLeg:
        """A SIP B-leg to a registered contact or a SIP URI (the SipLegFactory's work)."""
        ext = self.extensions.get(call.caller)
        name = call.caller_display or (f'"{ext.name}"' if ext is not None and getattr(ext, "name", None) else None)
        dest_from = getattr(dest, "from_uri", None)
        from_uri = dest_from or f"<sip:{_user(call.caller)}@{self.domain}>"
        if name and not dest_from:
            from_uri = f"{name} {from_uri}"
        to_uri = getattr(dest, "to_uri", None) or f"<sip:{_user(dest.aor or call.callee)}@{self.domain}>"
        dialog = Dialog(_token() + "@minisip", _token(), from_uri, to_uri, dest.uri)
        leg = SipLeg(self, call, "uac", dialog, dest.addr, dest)
        leg.description = f"{dest.uri} via {dest.addr}"
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
            relayed = self.reinvites.get(inv)
            if relayed is not None:
                relayed.cancel()  # the other side's 487 comes back as the re-INVITE's answer

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
        if not leg.dialog.accept_remote_cseq(req.cseq[0], req.method):
            txn.respond(make_response(req, 500, "Server Internal Error", extra=[("Retry-After", "1")]))
            return
        leg.request_received(txn, req)

    def respond_invite_2xx(self, txn: ServerTransaction, resp: Response) -> None:
        txn.respond(resp)
        self.transactions.send_2xx_reliably(resp, txn.source, lambda: self._ack_timeout(resp))

    def _ack_timeout(self, resp: Response) -> None:
        leg = self.dialogs.get((resp.call_id, resp.to_tag or ""))
        if leg is not None and leg.call.state != "ended":
            log.info("no ACK for 2xx on call {id}: hanging up", id=leg.call.id)
            leg.hangup("no ACK")
            leg.call.leg_hungup(leg, "no ACK")

    def ack_received(self, request: Request, source: Addr) -> None:
        leg = self.find_dialog(request)
        if leg is None:
            return
        if request.body:
            leg.remote_sdp = request.body
        leg.call.leg_ack(leg, sdp_of(request.content_type, request.body) or b"")

    def stray_response(self, response: Response, source: Addr) -> None:
        if 200 <= response.status < 300 and response.cseq[1] == "INVITE":
            leg = self.dialogs.get((response.call_id, response.from_tag or ""))
            if leg is not None:
                leg.resend_ack(response.cseq[0])

    # -- call end ----------------------------------------------------------------------------------------------
    def leg_closed(self, leg: SipLeg) -> None:
        """The call of ``leg`` ended: forget its tables' entries; the caller's dialog lingers 32 s so that
        retransmitted requests of it are still answered."""
        call = leg.call
        if leg.role == "uas":
            for txn, relayed in list(self.reinvites.items()):
                if relayed.call is call:
                    del self.reinvites[txn]
            req = leg.invite_req
            if req is not None:
                self.invites.pop((req.call_id, req.from_tag or "", req.cseq[0]), None)
            self.calls.after(32, self.forget_dialog, leg)
        if leg.state == "terminated":
            self.forget_dialog(leg)


def _user(text: str) -> str:
    """A number or name as the user part of a SIP URI: ``#`` and other reserved characters escaped
    (RFC 3261 25.1: unreserved and user-unreserved characters stay as they are)."""
    return quote(text, safe="-_.!~*'()&=+$,;?/")


def _hp(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
