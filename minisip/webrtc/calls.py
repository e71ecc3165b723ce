"""Browser calls in the call layer: the IBrowserCalls the MCCP server hands its connections' calls to.

A browser's call is authenticated with its extension's password (the same failure counting and bans
as SIP digest), then becomes a Call whose A-leg is a ``BrowserLeg``: call events go back to the
browser through its IBrowserPeer, and the browser's hang-up and DTMF go into the call. Its media always
crosses the relay (the media policy speaks DTLS-SRTP with ICE-lite to a leg of kind ``browser``).

A browser logged in as an extension (the same password check) is one of its contacts: routing finds it
as a ``LegDestination('browser', token, aor)`` beside the phones' registrations, and this module is the
leg factory that makes its ``IncomingBrowserLeg`` (the page rings, answers or declines).
"""

from __future__ import annotations

import hmac
import secrets
from typing import Any, Callable

from twisted.logger import Logger
from zope.interface import implementer

from minisip.core.call import LegRequest, LegResponse
from minisip.core.media import sdp_of
from minisip.core.router import LegDestination
from minisip.interfaces import ILeg, ILegFactory
from minisip.sip.sdp import SDPError, parse_sdp
from minisip.webrtc.gateway import IBrowserCalls, IBrowserPeer

log = Logger(namespace="minisip.webrtc")

__all__ = ["BrowserCalls", "BrowserLeg", "IncomingBrowserLeg"]

REFUSED = "wrong number or password"
DTMF_TYPE = "application/dtmf-relay"


def _text(sdp: bytes) -> str:
    return sdp.decode("utf-8", "replace")


MIRROR = {"sendrecv": "sendrecv", "sendonly": "recvonly", "recvonly": "sendonly", "inactive": "inactive"}
# the DTLS role a browser took, written as an answer's a=setup: the relay answers actpass with active
TOOK = {"actpass": "passive", "active": "active", "passive": "passive"}


def _own_media(sdp: str, offered: bool) -> bytes | None:
    """The browser's SDP as it stands once negotiated (an offer's actpass becomes the role it took)."""
    try:
        parsed = parse_sdp(sdp.encode("utf-8"))
    except SDPError:
        return None
    if offered:
        for m in parsed.media:
            if m.setup is not None:
                m.setup = TOOK.get(m.setup, m.setup)
    return parsed.to_bytes()


def absorbed_answer(own: bytes, offer: bytes) -> bytes | None:
    """The answer the relay gives for a browser to a re-offer (hold, resume, a refresh) from the other
    side, without troubling the page: the browser's negotiated SDP with the audio direction mirrored.
    None when the re-offer has no audio the browser could answer."""
    try:
        theirs, mine = parse_sdp(offer), parse_sdp(own)
    except SDPError:
        return None
    offered = next((m for m in theirs.media if m.kind == "audio" and m.port != 0), None)
    audio = next((m for m in mine.media if m.kind == "audio" and m.port != 0), None)
    if offered is None or audio is None:
        return None
    audio.direction = MIRROR.get(offered.direction, "sendrecv")
    mine.bump_version()
    return mine.to_bytes()


@implementer(ILeg)
class BrowserLeg:
    """The caller's leg of a browser's call: call events become reports to the browser's connection."""

    kind = "browser"
    destination = None

    def __init__(self, owner: "BrowserCalls", peer: IBrowserPeer, call_id: str, call: Any) -> None:
        self.owner = owner
        self.peer = peer
        self.call_id = call_id          # the browser's name for the call (MCCP)
        self.call = call
        self.state = "calling"          # calling, answered, ended
        self.description = f"browser {call.caller} at {peer.address}:{peer.port}"
        self.media: bytes | None = None  # the browser's negotiated SDP, to answer re-offers with

    def _end(self) -> bool:
        """Mark the leg ended; False when it already was (the browser is told once)."""
        if self.state == "ended":
            return False
        self.state = "ended"
        self.owner.forget(self)
        return True

    # -- ILeg: what the call tells the caller ------------------------------------------------------------
    def start(self, sdp: bytes) -> None:
        """Never a B-leg (calls to browsers come later): fail at once."""
        self.call.leg_failed(self, 501, "Not Implemented")

    def cancel(self) -> None:
        self.hangup("cancelled")

    def progress(self, status: int, sdp: bytes) -> None:
        if self.state == "calling":
            if sdp:
                self.peer.progress(self.call_id, "early", _text(sdp))
            else:
                self.peer.progress(self.call_id, "ringing", None)

    def answer(self, sdp: bytes) -> None:
        if self.state == "calling":
            self.state = "answered"
            self.peer.answer(self.call_id, _text(sdp))

    def reject(self, status: int, reason: str | None) -> None:
        if self._end():
            self.peer.hangup(self.call_id, status, reason or "call failed")

    def hangup(self, cause: str) -> None:
        if self._end():
            self.peer.hangup(self.call_id, 200, cause or "hung up")

    def send_request(self, request: LegRequest, on_final: Callable[[LegResponse | None], None]) -> None:
        """A re-offer (hold, resume, session refresh) is answered here with the browser's own media, the
        direction mirrored: the relay keeps the browser's DTLS-SRTP as it is, so the page needs no new
        negotiation. INFO, REFER, a re-INVITE without SDP and the like are refused; the call goes on."""
        offer = sdp_of(request.content_type, request.body) if request.method in ("INVITE", "UPDATE") else None
        answer = absorbed_answer(self.media, offer) if offer and self.media and self.state == "answered" else None
        if answer is None:
            on_final(LegResponse(488 if offer else 501, "Not Acceptable Here" if offer else "Not Implemented"))
            return
        log.info("call {id}: re-offer ({method}) toward {leg} answered by the relay", id=self.call.id,
                 method=request.method, leg=self.description)
        on_final(LegResponse(200, "OK", answer, "application/sdp"))

    def ack(self, sdp: bytes) -> None:
        pass

    def probe(self) -> bool:
        return self.state != "ended" and bool(self.peer.alive)

    def close(self) -> None:
        if self.state != "ended":
            self.state = "ended"
            self.owner.forget(self)

    # -- from the browser --------------------------------------------------------------------------------
    def hung_up(self, status: int | None, reason: str) -> None:
        if self._end():
            self.call.leg_hungup(self, reason or "browser hung up")

    def dtmf(self, digits: str, duration: int) -> None:
        if self.state == "ended":
            return
        for digit in digits:
            body = f"Signal={digit}\r\nDuration={duration}\r\n".encode("ascii")
            self.call.leg_request(self, LegRequest("INFO", body, DTMF_TYPE), _ignore)


@implementer(ILeg)
class IncomingBrowserLeg(BrowserLeg):
    """A B-leg to a browser logged in as the dialled extension: the page rings with the caller's offer and
    answers (its SDP goes into the call) or declines (603, or the status it gives)."""

    def __init__(self, owner: "BrowserCalls", peer: IBrowserPeer, call_id: str, call: Any,
                 destination: LegDestination) -> None:
        self.owner = owner
        self.peer = peer
        self.call_id = call_id
        self.call = call
        self.destination = destination
        self.state = "new"              # new, ringing, answered, ended
        self.description = f"browser {destination.aor} at {peer.address}:{peer.port}"
        self.media = None
        self.late = False               # the caller made no offer: the page's answer is its offer

    def start(self, sdp: bytes) -> None:
        """Ring the page with the offer, or without one when the caller made none (SIP late offer)."""
        if self.state != "new":
            return
        self.late = not sdp
        name = (self.call.caller_display or "").strip().strip('"')
        self.owner.legs[(id(self.peer), self.call_id)] = self
        if not self.peer.incoming(self.call_id, self.call.caller, self.destination.aor or "", _text(sdp), name):
            self._end()
            self.call.leg_failed(self, 486, "Busy Here")
            return
        self.state = "ringing"
        log.info("call {id} rings browser {aor} at {host} as {mccp}", id=self.call.id, aor=self.destination.aor,
                 host=self.peer.address, mccp=self.call_id)
        self.call.leg_progress(self, 180, b"")

    def cancel(self) -> None:
        """The caller gave up, nobody answered in time, or another contact answered: the page stops ringing."""
        if self._end():
            self.peer.hangup(self.call_id, 487, "call cancelled")

    def progress(self, status: int, sdp: bytes) -> None:
        pass                            # only a caller's leg hears progress

    def answer(self, sdp: bytes) -> None:
        pass

    def reject(self, status: int, reason: str | None) -> None:
        self.cancel()

    def close(self) -> None:
        """The call is over: a page still ringing or talking is told (the call layer normally did)."""
        if self.state in ("new", "ringing"):
            self.cancel()
        elif self.state == "answered":
            self.hangup("call ended")

    # -- from the browser --------------------------------------------------------------------------------
    def answered(self, sdp: str) -> None:
        if self.state != "ringing":
            return
        self.state = "answered"
        self.media = _own_media(sdp, offered=self.late)
        self.call.leg_answered(self, sdp.encode("utf-8"))

    def ack(self, sdp: bytes) -> None:
        """The caller's ACK: after a late offer it carries the answer to the page's offer."""
        if not self.late or self.state != "answered":
            return
        self.late = False
        if sdp:
            self.peer.answer(self.call_id, _text(sdp))
        else:
            log.info("call {id}: the caller's ACK has no answer to the page's offer: hanging up", id=self.call.id)
            self.peer.hangup(self.call_id, 488, "no answer to the offer")
            self._end()
            self.call.leg_hungup(self, "no SDP answer in the ACK")

    def hung_up(self, status: int | None, reason: str) -> None:
        before = self.state
        if not self._end():
            return
        if before == "answered":
            self.call.leg_hungup(self, reason or "browser hung up")
        elif status is not None and status >= 300:
            self.call.leg_failed(self, status, reason or None)
        else:
            self.call.leg_failed(self, 603, "Decline")


def _ignore(resp: LegResponse | None) -> None:
    pass


@implementer(IBrowserCalls, ILegFactory)
class BrowserCalls:
    """Browser calls into the SIP domain, on a SIPCore (its extensions, failure tracker and calls), and
    calls to browsers logged in as extensions (a contact source and the leg factory of kind ``browser``)."""

    kind = "browser"

    def __init__(self, core: Any) -> None:
        self.core = core
        self.legs: dict[tuple[int, str], BrowserLeg] = {}
        self.logins: dict[str, tuple[str, IBrowserPeer]] = {}   # token -> (extension, connection)
        self.tokens: dict[int, str] = {}                        # id(connection) -> its login's token
        self.by_user: dict[str, dict[str, IBrowserPeer]] = {}   # extension -> its logins (token -> connection)
        hooks = core.calls.hooks
        hooks.leg_factories[self.kind] = self
        hooks.add_contact_source("minisip.webrtc", self.contacts)

    def forget(self, leg: BrowserLeg) -> None:
        key = (id(leg.peer), leg.call_id)
        if self.legs.get(key) is leg:
            del self.legs[key]

    def _authenticate(self, peer: IBrowserPeer, caller: str, password: str, what: str = "call") -> bool:
        """The caller's extension password, with SIP digest's bans and failure counting: an unknown
        caller and a wrong password are the same failure."""
        security = self.core.security
        host = peer.address
        if security.is_banned(host):
            log.info("browser {what} from {host} refused: banned", what=what, host=host)
            return False
        if security.is_throttled(caller):
            log.info("browser {what} as {caller} from {host} refused: the extension is throttled", what=what,
                     caller=caller, host=host)
            return False
        expected = self.core.password_for(caller)
        ok = expected is not None and hmac.compare_digest(expected.encode("utf-8"), password.encode("utf-8"))
        if not ok:
            security.record_failure(host, caller)
            log.info("browser {what} as {caller} from {host} refused: wrong number or password", what=what,
                     caller=caller, host=host)
            return False
        security.record_success(host)
        return True

    # -- IBrowserCalls ---------------------------------------------------------------------------------
    def start_call(self, peer: IBrowserPeer, call_id: str, caller: str, password: str, callee: str,
                   sdp: str) -> None:
        key = (id(peer), call_id)
        if key in self.legs:
            peer.hangup(call_id, 400, "call id in use")
            return
        if not self._authenticate(peer, caller, password):
            peer.hangup(call_id, 403, REFUSED)
            return
        manager = self.core.calls
        if manager.over_limit(caller, "browser"):
            log.warn("security: browser call from extension {caller} refused: too many calls at once",  # noqa: G010
                     caller=caller)
            peer.hangup(call_id, 486, "too many calls")
            return
        call = manager.new_call(secrets.token_hex(8), caller, callee, None, source="browser")
        leg = BrowserLeg(self, peer, call_id, call)
        leg.media = _own_media(sdp, offered=True)
        self.legs[key] = leg
        log.info("browser call {mccp} from {caller} at {host} to {callee} is call {id}", mccp=call_id,
                 caller=caller, host=peer.address, callee=callee, id=call.id)
        try:
            call.begin(leg, sdp.encode("utf-8"), "application/sdp")
        except Exception:
            # a bug below: the browser hears 500 and the call is ended, never left half made
            log.failure("browser call {id} could not start", id=call.id)
            leg.reject(500, "Server Internal Error")
            manager.hangup(call, "server error")

    def hangup(self, peer: IBrowserPeer, call_id: str, status: int | None, reason: str) -> None:
        leg = self.legs.get((id(peer), call_id))
        if leg is not None:
            leg.hung_up(status, reason)

    def dtmf(self, peer: IBrowserPeer, call_id: str, digits: str, duration: int) -> None:
        leg = self.legs.get((id(peer), call_id))
        if leg is not None:
            leg.dtmf(digits, duration)

    def answer(self, peer: IBrowserPeer, call_id: str, sdp: str) -> None:
        leg = self.legs.get((id(peer), call_id))
        if isinstance(leg, IncomingBrowserLeg):
            leg.answered(sdp)

    # -- logins: browsers as contacts of their extension ----------------------------------------------------
    def login(self, peer: IBrowserPeer, user: str, password: str) -> None:
        if id(peer) in self.tokens:
            self.logout(peer, user)
        if not self._authenticate(peer, user, password, "login"):
            peer.login_refused(REFUSED)
            return
        token = secrets.token_hex(8)
        self.logins[token] = (user, peer)
        self.tokens[id(peer)] = token
        self.by_user.setdefault(user, {})[token] = peer
        log.info("browser at {host}:{port} logged in as {user}: its calls ring there too", host=peer.address,
                 port=peer.port, user=user)
        peer.logged_in(user)

    def logout(self, peer: IBrowserPeer, user: str) -> None:
        token = self.tokens.pop(id(peer), None)
        login = self.logins.pop(token, None) if token is not None else None
        if login is not None:
            mine = self.by_user.get(login[0], {})
            mine.pop(token, None)  # type: ignore[arg-type]
            if not mine:
                self.by_user.pop(login[0], None)
            log.info("browser at {host}:{port} logged out from {user}", host=peer.address, port=peer.port, user=user)

    def contacts(self, aor: str) -> list[LegDestination]:
        """The browsers logged in as ``aor`` now, as destinations of kind ``browser`` (oldest login first)."""
        return [LegDestination(self.kind, token, aor) for token, peer in self.by_user.get(aor, {}).items()
                if peer.alive]

    def make_leg(self, call: Any, destination: LegDestination) -> IncomingBrowserLeg:
        """ILegFactory: a leg to the browser behind ``destination`` (ValueError: it logged out meanwhile)."""
        login = self.logins.get(destination.target)
        if login is None:
            raise ValueError(f"browser login {destination.target} is gone")
        return IncomingBrowserLeg(self, login[1], f"in-{secrets.token_hex(6)}", call, destination)
