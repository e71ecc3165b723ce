"""The registrar (RFC 3261 10.3): bindings of extensions to contacts, kept in the location service."""

from __future__ import annotations

import sys
import time
from email.utils import formatdate
from typing import TYPE_CHECKING, Any

from twisted.logger import Logger

from minisip.core.store import Binding
from minisip.sip.errors import SIPParseError
from minisip.sip.message import Request, make_response
from minisip.sip.uri import SipURI, parse_name_addr
from minisip.sip.validate import MAX_CONTACTS, too_many_contacts

if TYPE_CHECKING:
    from minisip.sip.transaction import ServerTransaction

log = Logger(namespace="minisip.registrar")

MAX_CONTACTS_PER_AOR = 10
# More Contacts than this in one REGISTER is refused before any is parsed: a request with thousands
# held the reactor for 0.3 s (issue 8.9).
MAX_CONTACTS_PER_REQUEST = MAX_CONTACTS


class Registrar:
    def __init__(self, location: Any, wallclock: Any = time.time, *, min_expires: int = 60,
                 max_expires: int = 3600, default_expires: int = 3600) -> None:
        self.location = location
        self.wallclock = wallclock
        self.min_expires = min_expires
        self.max_expires = max_expires
        self.default_expires = default_expires

    def configure(self, min_expires: int, max_expires: int, default_expires: int) -> None:
        self.min_expires, self.max_expires, self.default_expires = min_expires, max_expires, default_expires

    def handle(self, txn: "ServerTransaction", req: Request, aor: str) -> None:
        """``aor`` is the authenticated extension (equal to the To user)."""
        try:
            self._handle(txn, req, aor)
        except SIPParseError as e:
            txn.respond(make_response(req, e.status or 400, e.reason, to_tag=_tag(req)))

    def _handle(self, txn: "ServerTransaction", req: Request, aor: str) -> None:
        now = self.wallclock()
        if too_many_contacts(req, MAX_CONTACTS_PER_REQUEST):
            log.info("extension {aor}: REGISTER from {source} with more than {limit} contacts refused",
                     aor=aor, source=str(txn.source), limit=MAX_CONTACTS_PER_REQUEST)
            txn.respond(make_response(req, 403, "Too Many Contacts", to_tag=_tag(req)))
            return
        values = req.get_all("contact")
        hdr_expires = req.get("expires")
        default = self.default_expires
        if hdr_expires is not None and hdr_expires.strip().isdigit():
            default = int(hdr_expires)
        call_id = req.call_id
        cseq = req.cseq[0]
        src = txn.source
        if any(v.strip() == "*" for v in values):
            if len(values) != 1 or default != 0:
                raise SIPParseError("'*' Contact needs Expires: 0 and no other contact")
            for b in self.location.lookup(aor):
                log.info("extension {aor} unregistered {contact}", aor=aor, contact=b.contact)
            self.location.remove_all(aor)
            self._ok(txn, req, aor, now)
            return
        changes: list[tuple[str, int, float]] = []
        for v in values:
            na = parse_name_addr(v)
            if not isinstance(na.uri, SipURI):
                raise SIPParseError("Contact must be a sip: or sips: URI")
            e = na.params.get("expires")
            if e is not None:
                if not e.isdigit():
                    raise SIPParseError("bad Contact expires")
                expires = int(e)
            else:
                expires = default
            if 0 < expires < self.min_expires:
                txn.respond(make_response(req, 423, "Interval Too Brief", to_tag=_tag(req),
                                          extra=[("Min-Expires", str(self.min_expires))]))
                return
            q = 1.0
            qs = na.params.get("q")
            if qs is not None:
                try:
                    q = max(0.0, min(1.0, float(qs)))
                except ValueError:
                    raise SIPParseError("bad q") from None
            changes.append((str(na.uri), min(expires, self.max_expires), q))
        existing = {b.contact: b for b in self.location.lookup(aor)}
        # One copy of each string instead of one a binding: the aor of the bindings already there (it is
        # the location table's key), interned values that repeat across extensions.
        if existing:
            aor = next(iter(existing.values())).aor
        ua = sys.intern(req.get("user-agent") or "")
        transport, source_host = sys.intern(src.transport), sys.intern(src.host)
        instance = None
        for contact, expires, q in changes:
            old = existing.get(contact)
            if old is not None and old.call_id == call_id and cseq <= old.cseq:
                continue  # out-of-order refresh (RFC 3261 10.3 step 7)
            if expires == 0:
                if old is not None:
                    self.location.remove(aor, contact)
                    log.info("extension {aor} unregistered {contact}", aor=aor, contact=contact)
                continue
            if old is None and len(existing) >= MAX_CONTACTS_PER_AOR:
                oldest = min(existing.values(), key=lambda b: b.registered_at)
                self.location.remove(aor, oldest.contact)
                del existing[oldest.contact]
            b = Binding(aor=aor, contact=contact, expires_at=now + expires,
                        registered_at=old.registered_at if old is not None else now,
                        call_id=call_id, cseq=cseq, q=q, transport=transport, source_host=source_host,
                        source_port=src.port, user_agent=ua, instance_id=instance)
            self.location.update(aor, b)
            existing[contact] = b
            if old is None:
                log.info("extension {aor} registered {contact} from {source} for {expires}s",
                         aor=aor, contact=contact, source=str(src), expires=expires)
        self._ok(txn, req, aor, now)

    def _ok(self, txn: "ServerTransaction", req: Request, aor: str, now: float) -> None:
        extra = [("Contact", f"<{b.contact}>;expires={max(0, int(b.expires_at - now))}")
                 for b in self.location.lookup(aor)]
        extra.append(("Date", _http_date(now)))
        txn.respond(make_response(req, 200, "OK", to_tag=_tag(req), extra=extra))


_date_cache: tuple[int, str] = (-1, "")


def _http_date(now: float) -> str:
    """The Date header value (RFC 3261 20.17), formatted once per second."""
    global _date_cache
    second = int(now)
    if _date_cache[0] != second:
        _date_cache = (second, formatdate(second, usegmt=True))
    return _date_cache[1]


def _tag(req: Request) -> str:
    return "r" + format(abs(hash(req.call_id)) & 0xFFFFFFFF, "x")
