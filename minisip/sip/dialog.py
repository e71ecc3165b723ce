"""Dialog state of one side of a SIP dialog (RFC 3261 12): tags, CSeq numbers, route set, remote target.

Pure: builds the in-dialog requests the B2BUA sends and checks the ones it receives, nothing else.
The call layer never sees this; a SIP leg (minisip.core.sipleg) owns one.
"""

from __future__ import annotations

from minisip.sip.errors import SIPParseError
from minisip.sip.message import Request, Response
from minisip.sip.uri import parse_name_addr, parse_uri

NO_CONTACT = frozenset({"ACK", "CANCEL", "BYE"})


class Dialog:
    """Call-ID, local and remote tags and URIs, CSeq counters, route set and remote target."""

    __slots__ = ("call_id", "local_cseq", "local_tag", "local_uri", "remote_cseq", "remote_tag", "remote_target",
                 "remote_uri", "route_set")

    def __init__(self, call_id: str, local_tag: str, local_uri: str, remote_uri: str, remote_target: str,
                 remote_tag: str | None = None) -> None:
        self.call_id = call_id
        self.local_tag = local_tag
        self.remote_tag = remote_tag
        self.local_uri = local_uri          # name-addr without tag (our From as UAC, our To as UAS)
        self.remote_uri = remote_uri
        self.remote_target = remote_target  # the peer's Contact URI (or the Request-URI until a 2xx)
        self.route_set: list[str] = []
        self.local_cseq = 0
        self.remote_cseq = 0

    @classmethod
    def from_request(cls, req: Request, local_tag: str) -> "Dialog":
        """The UAS side of the dialog a request (an INVITE) creates (RFC 3261 12.1.1)."""
        contacts = req.contacts()
        target = str(contacts[0].uri) if contacts else str(req.from_.uri)
        dialog = cls(req.call_id, local_tag, strip_tag(req.get("to") or ""), strip_tag(req.get("from") or ""),
                     target, req.from_tag)
        dialog.remote_cseq = req.cseq[0]
        dialog.route_set = req.get_all("record-route")
        return dialog

    def next_cseq(self) -> int:
        self.local_cseq += 1
        return self.local_cseq

    def request(self, method: str, via: str, contact: str | None, user_agent: str, *, cseq: int | None = None,
                body: bytes = b"", content_type: str | None = None, max_forwards: int = 70) -> Request:
        """An in-dialog request (RFC 3261 12.2.1.1); ``cseq`` None takes the next local number."""
        if cseq is None:
            cseq = self.next_cseq()
        to = self.remote_uri if self.remote_tag is None else f"{self.remote_uri};tag={self.remote_tag}"
        headers = [
            ("via", "Via", via),
            ("max-forwards", "Max-Forwards", str(max_forwards)),
            ("from", "From", f"{self.local_uri};tag={self.local_tag}"),
            ("to", "To", to),
            ("call-id", "Call-ID", self.call_id),
            ("cseq", "CSeq", f"{cseq} {method}"),
        ]
        for r in self.route_set:
            headers.append(("route", "Route", r))
        if contact is not None and method not in NO_CONTACT:
            headers.append(("contact", "Contact", contact))
        headers.append(("user-agent", "User-Agent", user_agent))
        if body and content_type:
            headers.append(("content-type", "Content-Type", content_type))
        return Request(method, parse_uri(self.remote_target), headers, body)

    def accept_remote_cseq(self, cseq: int, method: str) -> bool:
        """RFC 3261 12.2.2: False for a request older than the last one (answer it 500); ACK and CANCEL
        carry the number of the request they belong to."""
        if method not in ("ACK", "CANCEL") and self.remote_cseq and cseq < self.remote_cseq:
            return False
        if cseq > self.remote_cseq:
            self.remote_cseq = cseq
        return True

    def confirm(self, resp: Response) -> bool:
        """The UAC side's dialog from a 2xx to its INVITE (RFC 3261 12.1.2): remote tag, target from the
        Contact, route set from Record-Route reversed. False when the Contact was unusable (the target
        stays the Request-URI)."""
        self.remote_tag = resp.to_tag
        self.route_set = list(reversed(resp.get_all("record-route")))
        contacts = resp.get_all("contact")
        if not contacts:
            return True
        try:
            self.remote_target = str(parse_name_addr(contacts[0]).uri)
        except (SIPParseError, ValueError):
            return False
        return True


def strip_tag(value: str) -> str:
    """A From/To value without its tag parameter (a dialog adds its own)."""
    na = parse_name_addr(value)
    na.params.pop("tag", None)
    return str(na)
