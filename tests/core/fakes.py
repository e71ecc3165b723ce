"""Fakes for driving SIPCore exactly as the transport would: a recording network and scripted phones.

Every message goes through bytes: a phone's request is serialized and parsed before
``core.message_received``; what the core sends is parsed back before a phone sees it. A phone's
transaction layer is reduced to what a test needs: it ACKs non-2xx final responses to its INVITEs
on its own, and leaves everything else (ACK for 2xx, answers to in-dialog requests) to the test.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

from twisted.internet.task import Clock

from minisip.config import Extension
from minisip.core.location import LocationService
from minisip.core.server import SIPCore
from minisip.core.store import MemoryStore
from minisip.sip.auth import build_authorization
from minisip.sip.message import Request, Response, make_response, parse_message
from minisip.sip.types import Addr
from minisip.sip.uri import parse_name_addr

DOMAIN = "127.0.0.1"
T0 = 1_700_000_000.0
Message = Request | Response


def sdp(host: str, port: int = 4000, direction: str = "sendrecv", version: int = 1) -> bytes:
    return (f"v=0\r\no=- 1 {version} IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
            f"m=audio {port} RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\na={direction}\r\n").encode()


def token() -> str:
    return os.urandom(4).hex()


def branch() -> str:
    return "z9hG4bK" + os.urandom(6).hex()


def statuses(msgs: Iterable[Message]) -> list[int]:
    return [m.status for m in msgs if isinstance(m, Response)]


def requests(msgs: Iterable[Message], method: str | None = None) -> list[Request]:
    return [m for m in msgs if isinstance(m, Request) and (method is None or m.method == method)]


def header_names(msg: Message) -> list[str]:
    return sorted({k for k, _, _ in msg.headers})


class Network:
    """Records every datagram the core sends, parsed, per destination."""

    def __init__(self) -> None:
        self.sent: list[tuple[Addr, Message]] = []

    def send(self, data: bytes, addr: Addr) -> None:
        self.sent.append((addr, parse_message(data)))

    def take(self, addr: Addr) -> list[Message]:
        mine = [m for a, m in self.sent if (a.host, a.port) == (addr.host, addr.port)]
        self.sent = [(a, m) for a, m in self.sent if (a.host, a.port) != (addr.host, addr.port)]
        return mine


class PBX:
    """A SIPCore on a Clock with a recording network, and the phones around it."""

    def __init__(self, extensions: Sequence[str] = ("100", "200", "300"), **core_kw: Any) -> None:
        self.clock = Clock()
        self.clock.advance(T0)
        self.net = Network()
        self.store = MemoryStore()
        self.location = LocationService(MemoryStore(), self.clock)
        exts = {n: Extension(n, f"pw{n}", None) for n in extensions}
        self.core = SIPCore(self.clock, self.net.send, domain=DOMAIN, extensions=exts, location=self.location,
                            store=self.store, local=lambda t: (DOMAIN, 5060), wallclock=self.clock.seconds,
                            **core_kw)

    def phone(self, ext: str, host: str, port: int = 5060, password: str | None = None) -> Phone:
        return Phone(self, ext, host, port, f"pw{ext}" if password is None else password)

    def advance(self, seconds: float, step: float = 0.5) -> None:
        while seconds > 0:
            self.clock.advance(min(step, seconds))
            seconds -= step

    def leftovers(self) -> dict[str, object]:
        """What the core still holds; empty when nothing leaked."""
        core = self.core
        left = {"dialogs": dict(core.dialogs), "calls": dict(core.calls.calls), "invites": dict(core.invites), "reinvites": dict(core.reinvites),
                "transactions": len(core.transactions), "busy": dict(getattr(core, "busy", {})),
                "placing": dict(core.calls.placing)}
        return {k: v for k, v in left.items() if v}

    def records(self) -> list[Any]:
        return list(reversed(self.store.call_records(1000)))


class Phone:
    """A UDP phone at host:port registering as ``ext``."""

    def __init__(self, pbx: PBX, ext: str, host: str, port: int, password: str) -> None:
        self.pbx = pbx
        self.ext = ext
        self.user = ext
        self.password = password
        self.addr = Addr("udp", host, port)
        self.contact = f"sip:{ext}@{host}:{port}"
        self.reg_call_id = token() + "@" + host
        self.reg_cseq = 0
        self.dialogs: dict[str, Dialog] = {}
        self.buffer: list[Message] = []
        self.seen_invites: set[str] = set()

    # -- the wire -------------------------------------------------------------------------------
    def deliver(self, msg: Message) -> None:
        self.pbx.core.message_received(parse_message(msg.to_bytes()), self.addr)

    def build(self, method: str, ruri: str, *, call_id: str, from_: str, to: str, cseq: int,
              branch_: str | None = None, contact: bool = True, headers: Iterable[tuple[str, str]] = (),
              body: bytes = b"", ctype: str | None = "application/sdp", max_forwards: int = 70) -> Request:
        lines = [f"{method} {ruri} SIP/2.0",
                 f"Via: SIP/2.0/UDP {self.addr.host}:{self.addr.port};branch={branch_ or branch()};rport",
                 f"Max-Forwards: {max_forwards}", f"From: {from_}", f"To: {to}", f"Call-ID: {call_id}",
                 f"CSeq: {cseq} {method}"]
        if contact:
            lines.append(f"Contact: <{self.contact}>")
        lines += [f"{k}: {v}" for k, v in headers]
        if body and ctype:
            lines.append(f"Content-Type: {ctype}")
        lines += [f"Content-Length: {len(body)}", "", ""]
        msg = parse_message("\r\n".join(lines).encode() + body)
        assert isinstance(msg, Request)
        return msg

    def send_request(self, req: Request) -> list[Message]:
        """Deliver ``req`` and return everything that came back at once."""
        self.deliver(req)
        return self.inbox()

    def reply(self, req: Request, status: int, body: bytes = b"", ctype: str = "application/sdp",
              tag: str | None = None) -> Response:
        extra = [("Contact", f"<{self.contact}>")] if 100 < status < 300 else []
        if body:
            extra.append(("Content-Type", ctype))
        resp = make_response(req, status, to_tag=tag or token(), extra=extra, body=body)
        self.deliver(resp)
        return resp

    def _drain(self) -> None:
        for msg in self.pbx.net.take(self.addr):
            if isinstance(msg, Response):
                dlg = self.dialogs.get(msg.call_id)
                if dlg is not None:
                    dlg.on_response(msg)
            self.buffer.append(msg)

    def inbox(self) -> list[Message]:
        """Every message received since the last look, in order."""
        self._drain()
        out, self.buffer = self.buffer, []
        return out

    def incoming(self) -> list[Dialog]:
        """New INVITEs received (retransmissions skipped), as dialogs; other messages stay in the inbox."""
        self._drain()
        found: list[Dialog] = []
        rest: list[Message] = []
        for msg in self.buffer:
            if isinstance(msg, Request) and msg.method == "INVITE" and msg.to_tag is None:
                b = msg.top_via.branch or ""
                if b not in self.seen_invites:
                    self.seen_invites.add(b)
                    found.append(Dialog.uas(self, msg))
                continue
            rest.append(msg)
        self.buffer = rest
        return found

    # -- registration ---------------------------------------------------------------------------
    def register_request(self, *, contacts: Sequence[str] | None = None, expires: int | None = None,
                         to_user: str | None = None, headers: Iterable[tuple[str, str]] = ()) -> Request:
        self.reg_cseq += 1
        to_user = to_user or self.ext
        aor = f"<sip:{to_user}@{DOMAIN}>"
        hdrs = [("Contact", c) for c in (contacts if contacts is not None else [f"<{self.contact}>"])]
        if expires is not None:
            hdrs.append(("Expires", str(expires)))
        hdrs += list(headers)
        return self.build("REGISTER", f"sip:{DOMAIN}", call_id=self.reg_call_id, from_=f"{aor};tag={token()}",
                          to=aor, cseq=self.reg_cseq, contact=False, headers=hdrs)

    def authorization(self, challenge: str, method: str = "REGISTER", uri: str = f"sip:{DOMAIN}",
                      user: str | None = None, password: str | None = None, nc: int = 1) -> str:
        return build_authorization(challenge, method, uri, user or self.user,
                                   self.password if password is None else password, nc=nc)

    def register(self, *, contacts: Sequence[str] | None = None, expires: int | None = None,
                 to_user: str | None = None, user: str | None = None, password: str | None = None,
                 algorithm: str = "MD5") -> Response | None:
        """REGISTER, answer the 401 with digest, and return the final response (None: nothing came back)."""
        kw: dict[str, Any] = {"contacts": contacts, "expires": expires, "to_user": to_user}
        first = [m for m in self.send_request(self.register_request(**kw)) if isinstance(m, Response)]
        if not first:
            return None
        if first[-1].status != 401:
            return first[-1]
        challenge = next(v for v in first[-1].get_all("www-authenticate") if f"algorithm={algorithm}" in v)
        auth = self.authorization(challenge, user=user, password=password)
        again = self.send_request(self.register_request(headers=[("Authorization", auth)], **kw))
        finals = [m for m in again if isinstance(m, Response)]
        return finals[-1] if finals else None

    # -- calls ------------------------------------------------------------------------------------
    def call(self, callee: str, body: bytes = b"", *, auth: bool = True, password: str | None = None,
             headers: Iterable[tuple[str, str]] = (), max_forwards: int = 70,
             ctype: str = "application/sdp") -> Dialog:
        """Send an INVITE to ``callee``; with ``auth``, answer the 407 as a phone does.

        The responses to the first INVITE are consumed; the rest stay in the inbox.
        """
        ruri = f"sip:{callee}@{DOMAIN}"
        dlg = Dialog(self, token() + "@" + self.addr.host, token(), f"<sip:{self.ext}@{DOMAIN}>", f"<{ruri}>", ruri)
        self.dialogs[dlg.call_id] = dlg
        dlg.send_invite(body, headers=headers, max_forwards=max_forwards, ctype=ctype)
        if auth:
            got = self.inbox()
            challenge = next(m for m in got if isinstance(m, Response) and m.status == 407)
            value = challenge.get_all("proxy-authenticate")[0]
            authz = self.authorization(value, "INVITE", ruri, password=password)
            dlg.send_invite(body, headers=[*headers, ("Proxy-Authorization", authz)], max_forwards=max_forwards,
                            ctype=ctype)
        return dlg


class Dialog:
    """One call as a phone sees it, as caller (``uac``) or callee (``uas``)."""

    def __init__(self, phone: Phone, call_id: str, local_tag: str, local_uri: str, remote_uri: str,
                 remote_target: str, remote_tag: str | None = None, cseq: int = 0) -> None:
        self.phone = phone
        self.call_id = call_id
        self.local_tag = local_tag
        self.local_uri = local_uri
        self.remote_uri = remote_uri
        self.remote_target = remote_target
        self.remote_tag = remote_tag
        self.cseq = cseq
        self.invite: Request | None = None     # our last INVITE (uac) or the INVITE received (uas)
        self.responses: list[Response] = []

    @classmethod
    def uas(cls, phone: Phone, inv: Request) -> Dialog:
        contact = inv.contacts()[0].uri
        dlg = cls(phone, inv.call_id, token(), _no_tag(inv.get("to") or ""), _no_tag(inv.get("from") or ""),
                  str(contact), inv.from_tag, cseq=100)
        dlg.invite = inv
        phone.dialogs[dlg.call_id] = dlg
        return dlg

    # -- requests -----------------------------------------------------------------------------------
    def build(self, method: str, body: bytes = b"", ctype: str | None = "application/sdp", *,
              cseq: int | None = None, headers: Iterable[tuple[str, str]] = (), branch_: str | None = None,
              max_forwards: int = 70) -> Request:
        if cseq is None:
            self.cseq += 1
            cseq = self.cseq
        to = self.remote_uri if self.remote_tag is None else f"{self.remote_uri};tag={self.remote_tag}"
        return self.phone.build(method, self.remote_target, call_id=self.call_id,
                                from_=f"{self.local_uri};tag={self.local_tag}", to=to, cseq=cseq, branch_=branch_,
                                contact=method not in ("ACK", "BYE", "CANCEL"), headers=headers, body=body,
                                ctype=ctype, max_forwards=max_forwards)

    def request(self, method: str, body: bytes = b"", ctype: str | None = "application/sdp", **kw: Any) -> Request:
        req = self.build(method, body, ctype, **kw)
        self.phone.deliver(req)
        return req

    def send_invite(self, body: bytes = b"", **kw: Any) -> Request:
        self.invite = self.request("INVITE", body, **kw)
        return self.invite

    def ack(self, body: bytes = b"") -> Request:
        """ACK for a 2xx to our last INVITE (a new transaction)."""
        assert self.invite is not None
        return self.request("ACK", body, cseq=self.invite.cseq[0])

    def bye(self) -> Request:
        return self.request("BYE")

    def cancel(self) -> Request:
        inv = self.invite
        assert inv is not None
        req = self.phone.build("CANCEL", str(inv.uri), call_id=self.call_id, from_=inv.get("from") or "",
                               to=inv.get("to") or "", cseq=inv.cseq[0], branch_=inv.top_via.branch, contact=False)
        self.phone.deliver(req)
        return req

    def on_response(self, resp: Response) -> None:
        """A phone's transaction layer: follow the dialog, ACK non-2xx finals of our INVITEs."""
        self.responses.append(resp)
        inv = self.invite
        if inv is None or resp.cseq != (inv.cseq[0], "INVITE"):
            return
        if 100 < resp.status < 300 and resp.to_tag and self.remote_tag is None:
            self.remote_tag = resp.to_tag
        if 200 <= resp.status < 300:
            self.remote_tag = resp.to_tag
            contacts = resp.contacts()
            if contacts:
                self.remote_target = str(contacts[0].uri)
        elif resp.status >= 300:
            ack = self.phone.build("ACK", str(inv.uri), call_id=self.call_id, from_=inv.get("from") or "",
                                   to=resp.get("to") or "", cseq=inv.cseq[0], branch_=inv.top_via.branch,
                                   contact=False)
            self.phone.deliver(ack)

    # -- answers (uas) --------------------------------------------------------------------------
    def respond(self, status: int, body: bytes = b"", req: Request | None = None,
                ctype: str = "application/sdp") -> Response:
        """Answer ``req`` (default: the INVITE that made this dialog) with this dialog's tag."""
        target = req or self.invite
        assert target is not None
        return self.phone.reply(target, status, body, ctype, tag=self.local_tag)


def _no_tag(value: str) -> str:
    na = parse_name_addr(value)
    na.params.pop("tag", None)
    return str(na)
