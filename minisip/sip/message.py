"""SIP messages: parse bytes into Request/Response objects and serialize them back (RFC 3261 7, 20, 25).

Headers are kept as written, in order, as ``(key, name, value)`` triples where ``key`` is the
lowercase full name (compact forms expanded) so lookups are cheap. Folded lines are joined with one
space. The headers every message needs (Via, From, To, Call-ID, CSeq, Contact, Route) are parsed
and checked once while parsing and cached, so a message that parses never fails later on them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from minisip.sip.errors import SIPParseError
from minisip.sip.uri import (
    HOST_PATTERN,
    TOKEN_CLASS,
    URI,
    NameAddr,
    SipURI,
    check_host,
    format_params,
    is_token,
    parse_gen_params,
    parse_name_addr,
    parse_uri,
    split_comma_list,
)

MAX_MESSAGE_SIZE = 65535
MAX_HEADERS = 128

COMPACT = {
    "i": "call-id", "m": "contact", "e": "content-encoding", "l": "content-length", "c": "content-type",
    "f": "from", "s": "subject", "k": "supported", "t": "to", "v": "via", "o": "event",
    "u": "allow-events", "r": "refer-to", "b": "referred-by", "x": "session-expires",
    "a": "accept-contact", "j": "reject-contact", "d": "request-disposition", "y": "identity",
    "n": "identity-info",
}
_CANONICAL = {n.lower(): n for n in (
    "Via", "From", "To", "Call-ID", "CSeq", "Contact", "Max-Forwards", "Content-Length", "Content-Type",
    "Content-Encoding", "Content-Disposition", "Content-Language", "Expires", "Min-Expires", "Route",
    "Record-Route", "Allow", "Accept", "Accept-Encoding", "Accept-Language", "Supported", "Require",
    "Proxy-Require", "Unsupported", "User-Agent", "Server", "Subject", "Authorization",
    "Proxy-Authorization", "WWW-Authenticate", "Proxy-Authenticate", "Authentication-Info", "Date",
    "Timestamp", "Organization", "Priority", "Reply-To", "Retry-After", "Warning", "Event",
    "Allow-Events", "Refer-To", "Referred-By", "Session-Expires", "Min-SE", "RSeq", "RAck", "Reason",
    "P-Asserted-Identity", "Alert-Info", "Call-Info", "Error-Info", "In-Reply-To", "MIME-Version",
    "Path", "Identity", "Identity-Info", "Accept-Contact", "Reject-Contact", "Request-Disposition",
    "Subscription-State", "Replaces", "Privacy", "P-Preferred-Identity", "Service-Route",
)}

# Headers whose value is a comma-separated list that may be split or combined (RFC 3261 7.3.1).
LIST_HEADERS = frozenset({
    "via", "contact", "route", "record-route", "allow", "supported", "require", "proxy-require",
    "unsupported", "accept", "accept-encoding", "accept-language", "content-encoding", "path",
    "allow-events", "in-reply-to", "warning", "service-route",
})
_SINGLE = ("from", "to", "call-id", "cseq", "content-length", "max-forwards", "content-type")
_SINGLE_SET = frozenset(_SINGLE)
_MANDATORY = ("from", "to", "call-id", "cseq")
_ADDRESS_LISTS = frozenset({"contact", "route", "record-route"})

_REASONS = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued", 183: "Session Progress",
    200: "OK", 202: "Accepted", 301: "Moved Permanently", 302: "Moved Temporarily", 400: "Bad Request",
    401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
    406: "Not Acceptable", 407: "Proxy Authentication Required", 408: "Request Timeout", 410: "Gone",
    413: "Request Entity Too Large", 415: "Unsupported Media Type", 416: "Unsupported URI Scheme",
    420: "Bad Extension", 421: "Extension Required", 423: "Interval Too Brief",
    480: "Temporarily Unavailable", 481: "Call/Transaction Does Not Exist", 482: "Loop Detected",
    483: "Too Many Hops", 484: "Address Incomplete", 485: "Ambiguous", 486: "Busy Here",
    487: "Request Terminated", 488: "Not Acceptable Here", 491: "Request Pending", 500: "Server Internal Error",
    501: "Not Implemented", 502: "Bad Gateway", 503: "Service Unavailable", 504: "Server Time-out",
    505: "Version Not Supported", 513: "Message Too Large", 600: "Busy Everywhere", 603: "Decline",
    604: "Does Not Exist Anywhere", 606: "Not Acceptable",
}

MAX_DELTA_SECONDS = 2 ** 32 - 1


def reason_phrase(status: int) -> str:
    return _REASONS.get(status, "Unknown")


def header_key(name: str) -> str:
    k = name.lower()
    return COMPACT.get(k, k)


def canonical_name(key: str) -> str:
    c = _CANONICAL.get(key)
    if c is not None:
        return c
    return "-".join(p.capitalize() for p in key.split("-"))


# Raw header name as written -> (key, name to serialize). Seeded with the known names; unknown
# names are added after validation, up to a bound so a flood of odd names cannot grow it forever.
_NAME_CACHE: dict[str, tuple[str, str]] = {}
_NAME_CACHE_MAX = 2048


def _seed_name_cache() -> None:
    for key, name in _CANONICAL.items():
        for written in (name, key, key.upper()):
            _NAME_CACHE[written] = (key, name)
    for letter, key in COMPACT.items():
        entry = (key, _CANONICAL.get(key, canonical_name(key)))
        _NAME_CACHE[letter] = entry
        _NAME_CACHE[letter.upper()] = entry


_seed_name_cache()


def _lookup_name(name: str) -> tuple[str, str] | None:
    """Key and serialized name for a header name not yet in the cache; None if it is not a token."""
    stripped = name.rstrip(" \t")
    entry = _NAME_CACHE.get(stripped)
    if entry is None:
        if not is_token(stripped):
            return None
        key = stripped.lower()
        key = COMPACT.get(key, key)
        entry = (key, _CANONICAL.get(key, stripped))
    if len(_NAME_CACHE) < _NAME_CACHE_MAX:
        _NAME_CACHE[name] = entry
    return entry


def parse_delta_seconds(value: str) -> int:
    """delta-seconds (RFC 3261 20.19); values beyond 2**32-1 are taken as 2**32-1."""
    v = value.strip(" \t")
    if not v or not v.isascii() or not v.isdigit():
        raise SIPParseError(f"bad delta-seconds {value[:40]!r}")
    if len(v) > 10:
        return MAX_DELTA_SECONDS
    return min(int(v), MAX_DELTA_SECONDS)


_BRANCH_COOKIE = "z9hG4bK"


@dataclass(slots=True)
class Via:
    transport: str              # upper case: UDP, TCP, TLS, WS, WSS, SCTP
    host: str                   # lowercased; an IPv6 reference keeps its brackets
    port: int | None
    params: dict[str, str | None] = field(default_factory=dict)
    protocol: str = "SIP/2.0"

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def rfc3261_branch(self) -> bool:
        b = self.params.get("branch")
        return b is not None and len(b) > len(_BRANCH_COOKIE) and b.startswith(_BRANCH_COOKIE)

    def __str__(self) -> str:
        hp = self.host if self.port is None else f"{self.host}:{self.port}"
        return f"{self.protocol}/{self.transport} {hp}{format_params(self.params)}"


_VIA_RE = re.compile(
    rf"([{TOKEN_CLASS}]+)[ \t]*/[ \t]*([{TOKEN_CLASS}]+)[ \t]*/[ \t]*([{TOKEN_CLASS}]+)[ \t]+"
    rf"({HOST_PATTERN})(?:[ \t]*:[ \t]*([0-9]{{1,5}}))?")
_RECEIVED_RE = re.compile(r"[0-9A-Fa-f:.]+|\[[0-9A-Fa-f:.]+\]")
_HOST_RE = re.compile(HOST_PATTERN)


def parse_via(value: str) -> Via:
    """Parse one via-parm (RFC 3261 20.42); LWS around '/', ':', ';' and '=' is allowed."""
    m = _VIA_RE.match(value)
    if m is None:
        raise SIPParseError(f"bad Via {value[:80]!r}")
    name, version, transport, host, port_s = m.groups()
    params = parse_gen_params(value, m.end()) if m.end() < len(value) else {}
    port = None
    if port_s is not None:
        port = int(port_s)
        if port > 65535:
            raise SIPParseError("bad Via port")
    if host[0] == "[":
        host = check_host(host)
    if params:
        _check_via_params(params)
    return Via(transport.upper(), host.lower(), port, params, f"{name}/{version}")


def _check_via_params(params: dict[str, str | None]) -> None:
    if "branch" in params and not params["branch"]:
        raise SIPParseError("empty Via branch")
    if "received" in params:
        v = params["received"]
        if v is None or _RECEIVED_RE.fullmatch(v) is None:
            raise SIPParseError("bad Via received")
    v = params.get("rport")
    if v and not (v.isascii() and v.isdigit() and int(v) <= 65535):
        raise SIPParseError("bad Via rport")
    if "ttl" in params:
        v = params["ttl"]
        if not (v and v.isascii() and v.isdigit() and int(v) <= 255):
            raise SIPParseError("bad Via ttl")
    if "maddr" in params:
        v = params["maddr"]
        if not v or _HOST_RE.fullmatch(v) is None:
            raise SIPParseError("bad Via maddr")


_CSEQ_RE = re.compile(rf"([0-9]{{1,10}})[ \t]+([{TOKEN_CLASS}]+)")


def parse_cseq(value: str) -> tuple[int, str]:
    m = _CSEQ_RE.fullmatch(value.strip(" \t"))
    if m is None:
        raise SIPParseError("bad CSeq")
    num = int(m.group(1))
    if num >= 2 ** 31:
        raise SIPParseError("CSeq number too large")
    return num, m.group(2)


_WORD = r"A-Za-z0-9\-.!%*_+`'~()<>:\\\"/\[\]?{}"
_CALL_ID_RE = re.compile(rf"[{_WORD}]+(?:@[{_WORD}]+)?")
_MEDIA_TYPE_RE = re.compile(rf"([{TOKEN_CLASS}]+)[ \t]*/[ \t]*([{TOKEN_CLASS}]+)")


class Message:
    """Common part of requests and responses."""

    __slots__ = ("_cache", "body", "headers")

    def __init__(self, headers: list[tuple[str, str, str]] | None = None, body: bytes = b"") -> None:
        self.headers = headers if headers is not None else []
        self.body = body
        self._cache: dict[str, object] = {}

    # -- header access -------------------------------------------------------------------
    def get(self, name: str) -> str | None:
        key = header_key(name)
        for k, _, v in self.headers:
            if k == key:
                return v
        return None

    def get_all(self, name: str) -> list[str]:
        """Every value of a header; list headers are split on top-level commas."""
        key = header_key(name)
        out: list[str] = []
        split = key in LIST_HEADERS
        for k, _, v in self.headers:
            if k == key:
                if split:
                    out.extend(split_comma_list(v))
                else:
                    out.append(v)
        return out

    def has(self, name: str) -> bool:
        key = header_key(name)
        return any(k == key for k, _, _ in self.headers)

    def set(self, name: str, value: str) -> None:
        """Replace all values of ``name`` with one value (appended if absent)."""
        key = header_key(name)
        self._cache.pop(key, None)
        for i, (k, n, _) in enumerate(self.headers):
            if k == key:
                self.headers[i] = (k, n, value)
                self.headers[i + 1:] = [h for h in self.headers[i + 1:] if h[0] != key]
                return
        self.headers.append((key, canonical_name(key), value))

    def add(self, name: str, value: str, first: bool = False) -> None:
        key = header_key(name)
        self._cache.pop(key, None)
        entry = (key, canonical_name(key), value)
        if first:
            for i, (k, _, _) in enumerate(self.headers):
                if k == key:
                    self.headers.insert(i, entry)
                    return
            self.headers.append(entry)
        else:
            self.headers.append(entry)

    def remove(self, name: str) -> None:
        key = header_key(name)
        self._cache.pop(key, None)
        self.headers = [h for h in self.headers if h[0] != key]

    def pop_first(self, name: str) -> str | None:
        """Remove the first value of a list header (e.g. the top Via or Route) and return it."""
        key = header_key(name)
        self._cache.pop(key, None)
        for i, (k, n, v) in enumerate(self.headers):
            if k == key:
                vals = split_comma_list(v)
                if len(vals) > 1:
                    self.headers[i] = (k, n, ", ".join(vals[1:]))
                else:
                    del self.headers[i]
                return vals[0]
        return None

    # -- parsed views (cached) ------------------------------------------------------------
    @property
    def vias(self) -> list[Via]:
        c = self._cache.get("via")
        if c is None:
            c = [parse_via(v) for v in self.get_all("via")]
            self._cache["via"] = c
        return c  # type: ignore[return-value]

    @property
    def top_via(self) -> Via:
        vias = self.vias
        if not vias:
            raise SIPParseError("missing Via")
        return vias[0]

    @property
    def call_id(self) -> str:
        return self.get("call-id") or ""

    @property
    def cseq(self) -> tuple[int, str]:
        c = self._cache.get("cseq")
        if c is None:
            c = parse_cseq(self.get("cseq") or "")
            self._cache["cseq"] = c
        return c  # type: ignore[return-value]

    @property
    def from_(self) -> NameAddr:
        return self._name_addr("from")

    @property
    def to(self) -> NameAddr:
        return self._name_addr("to")

    def _name_addr(self, key: str) -> NameAddr:
        c = self._cache.get(key)
        if c is None:
            c = parse_name_addr(self.get(key) or "")
            self._cache[key] = c
        return c  # type: ignore[return-value]

    @property
    def from_tag(self) -> str | None:
        return self.from_.tag

    @property
    def to_tag(self) -> str | None:
        return self.to.tag

    def _name_addr_list(self, key: str) -> list[NameAddr]:
        c = self._cache.get(key)
        if c is None:
            c = [parse_name_addr(v) for v in self.get_all(key) if v != "*"]
            self._cache[key] = c
        return c  # type: ignore[return-value]

    def contacts(self) -> list[NameAddr]:
        """Every Contact except ``*`` (see ``star_contact``)."""
        return self._name_addr_list("contact")

    @property
    def star_contact(self) -> bool:
        """True when a Contact value is ``*`` (REGISTER: remove all bindings)."""
        return "*" in self.get_all("contact")

    def routes(self) -> list[NameAddr]:
        return self._name_addr_list("route")

    def record_routes(self) -> list[NameAddr]:
        return self._name_addr_list("record-route")

    @property
    def content_type(self) -> str | None:
        """The media type, lowercased, without parameters (``application/sdp``)."""
        ct = self.get("content-type")
        if not ct:
            return None
        return ct.partition(";")[0].replace(" ", "").replace("\t", "").lower()

    @property
    def max_forwards(self) -> int | None:
        mf = self.get("max-forwards")
        if mf is None:
            return None
        if not (mf.isascii() and mf.isdigit() and len(mf) <= 10):
            raise SIPParseError("bad Max-Forwards")
        return int(mf)

    @property
    def expires(self) -> int | None:
        """The Expires header in seconds (None when absent); raises SIPParseError when malformed."""
        ex = self.get("expires")
        return None if ex is None else parse_delta_seconds(ex)

    # -- serialization ---------------------------------------------------------------------
    def _start_line(self) -> str:
        raise NotImplementedError

    def to_bytes(self) -> bytes:
        """The wire form; Content-Length is always (re)computed from the body and written last."""
        parts = [self._start_line()]
        for k, n, v in self.headers:
            if k != "content-length":
                parts.append(f"{n}: {v}")
        parts.append(f"Content-Length: {len(self.body)}")
        parts.append("")
        parts.append("")
        return "\r\n".join(parts).encode("utf-8", "surrogateescape") + self.body

    def copy_headers(self) -> list[tuple[str, str, str]]:
        return list(self.headers)


class Request(Message):
    __slots__ = ("method", "uri", "version")

    def __init__(self, method: str, uri: URI, headers: list[tuple[str, str, str]] | None = None,
                 body: bytes = b"", version: str = "SIP/2.0") -> None:
        self.headers = headers if headers is not None else []
        self.body = body
        self._cache = {}
        self.method = method
        self.uri = uri
        self.version = version

    def _start_line(self) -> str:
        return f"{self.method} {self.uri} {self.version}"

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.uri} call-id={self.call_id!r}>"


class Response(Message):
    __slots__ = ("reason", "status", "version")

    def __init__(self, status: int, reason: str | None = None, headers: list[tuple[str, str, str]] | None = None,
                 body: bytes = b"", version: str = "SIP/2.0") -> None:
        super().__init__(headers, body)
        self.status = status
        self.reason = reason_phrase(status) if reason is None else reason
        self.version = version

    def _start_line(self) -> str:
        return f"{self.version} {self.status} {self.reason}"

    def __repr__(self) -> str:
        cseq = self.get("cseq") or ""
        return f"<Response {self.status} {cseq.partition(' ')[2].strip()} call-id={self.call_id!r}>"


def make_response(request: Request, status: int, reason: str | None = None, to_tag: str | None = None,
                  extra: Iterable[tuple[str, str]] = (), body: bytes = b"") -> Response:
    """A response copying Via, From, To, Call-ID, CSeq (and Record-Route) from the request (RFC 3261 8.2.6).

    Works on the ``partial`` request of a SIPParseError too, whose headers may not all parse.
    """
    headers: list[tuple[str, str, str]] = []
    for h in request.headers:
        k = h[0]
        if k in ("via", "from", "call-id", "cseq") or (k == "record-route" and 100 < status < 300):
            headers.append(h)
        elif k == "to":
            if to_tag is not None and status > 100 and not _has_tag(request, h[2]):
                headers.append((k, h[1], f"{h[2]};tag={to_tag}"))
            else:
                headers.append(h)
    for name, value in extra:
        key = header_key(name)
        headers.append((key, canonical_name(key), value))
    return Response(status, reason, headers, body)


def _has_tag(request: Request, to_value: str) -> bool:
    try:
        return request.to.tag is not None
    except SIPParseError:
        return "tag=" in to_value.lower()


# -- parsing ----------------------------------------------------------------------------------

_EOH_RE = re.compile(rb"\r?\n\r?\n")
_VERSION_RE = re.compile(r"SIP/[0-9]+\.[0-9]+", re.IGNORECASE)


def parse_message(data: bytes, *, datagram: bool = True, max_headers: int = MAX_HEADERS) -> Request | Response:
    """Parse one complete message.

    Raises SIPParseError (and nothing else) whose ``status`` is the answer to send (None: drop
    silently) and whose ``partial`` is the Request read so far, when a request line could be read.
    On a datagram, bytes after Content-Length are ignored and a missing Content-Length means "the
    rest"; a stream message (``datagram=False``) must carry Content-Length.
    """
    if len(data) > MAX_MESSAGE_SIZE:
        raise SIPParseError("message too large", status=513)
    if data[:1] in (b"\r", b"\n"):
        data = data.lstrip(b"\r\n")  # RFC 3261 7.5: CRLFs before the start line are ignored
    error: str | None = None
    end = data.find(b"\r\n\r\n")
    if end != -1 and data.count(b"\n", 0, end) == data.count(b"\r\n", 0, end):
        head = data[:end].decode("utf-8", "surrogateescape")
        body = data[end + 4:]
        lines = head.split("\r\n")
        if head.count("\r") != len(lines) - 1:
            error = "bare CR in header"
    else:
        # Bare LF line ends (tolerated), or no end of headers at all.
        m = _EOH_RE.search(data)
        if m is None:
            head_b, body = data, b""
            error = "no empty line after the headers"
        else:
            head_b, body = data[:m.start()], data[m.end():]
        lines = [line.removesuffix("\r")
                 for line in head_b.decode("utf-8", "surrogateescape").split("\n")]
        if any("\r" in line for line in lines):
            error = error or "bare CR in header"
    start = lines[0]

    headers: list[tuple[str, str, str]] = []
    append = headers.append
    cache = _NAME_CACHE
    it = iter(lines)
    next(it)
    for line in it:
        name, colon, value = line.partition(":")
        entry = cache.get(name)
        if entry is not None and colon:
            append((entry[0], entry[1], value.strip(" \t")))
            continue
        if not line:
            continue
        c = line[0]
        if c == " " or c == "\t":
            if not headers:
                error = error or "continuation line before any header"
                continue
            k, n, v = headers[-1]
            cont = line.strip(" \t")
            headers[-1] = (k, n, f"{v} {cont}" if v and cont else v or cont)
            continue
        entry = _lookup_name(name) if colon else None
        if entry is None:
            error = error or f"bad header line {line[:40]!r}"
            continue
        append((entry[0], entry[1], value.strip(" \t")))
    if len(headers) > max_headers:
        error = error or "too many headers"

    if start[:4].upper() == "SIP/":
        return _parse_response(start, headers, body, datagram, error)
    return _parse_request(start, headers, body, datagram, error)


def _parse_request(start: str, headers: list[tuple[str, str, str]], body: bytes, datagram: bool,
                   error: str | None) -> Request:
    parts = start.split(" ")
    if len(parts) != 3 or not all(parts):
        # Irregular spacing (RFC 4475 lwsstart, trws, lwsruri): answer 400 if it still looks like a request.
        loose = start.split()
        if len(loose) >= 3 and is_token(loose[0]) and loose[-1][:4].upper() == "SIP/":
            raise SIPParseError("bad request line", partial=Request(
                loose[0], _uri_or_placeholder(" ".join(loose[1:-1])), headers, body, loose[-1]))
        raise SIPParseError("bad start line", status=None)
    method, uri_s, version = parts
    req = Request(method, SipURI("invalid"), headers, body, version)
    try:
        if not is_token(method):
            raise SIPParseError("bad method")
        if version != "SIP/2.0":
            if _VERSION_RE.fullmatch(version) is None:
                raise SIPParseError("bad SIP version")
            if version.upper() != "SIP/2.0":
                raise SIPParseError("SIP version not supported", status=505)
            req.version = "SIP/2.0"
        if error is not None:
            raise SIPParseError(error)
        try:
            req.uri = parse_uri(uri_s)
        except SIPParseError as e:
            raise SIPParseError(f"bad Request-URI: {e.reason}") from None
        if isinstance(req.uri, SipURI) and req.uri.headers is not None:
            raise SIPParseError("headers in Request-URI")
        _check_headers(req, datagram)
        if req.cseq[1] != method:
            raise SIPParseError("CSeq method does not match the request")
        if req.vias[0].params.get("branch") == _BRANCH_COOKIE:
            # RFC 4475 3.3.15: the magic cookie alone is no transaction id.
            raise SIPParseError("Via branch is only the magic cookie")
    except SIPParseError as e:
        e.partial = req
        raise
    return req


def _uri_or_placeholder(s: str) -> URI:
    try:
        return parse_uri(s)
    except SIPParseError:
        return SipURI("invalid")


def _parse_response(start: str, headers: list[tuple[str, str, str]], body: bytes, datagram: bool,
                    error: str | None) -> Response:
    parts = start.split(" ", 2)
    code_s = parts[1] if len(parts) > 1 else ""
    if (parts[0].upper() != "SIP/2.0" or len(code_s) != 3 or not code_s.isascii() or not code_s.isdigit()
            or code_s[0] not in "123456"):
        raise SIPParseError("bad status line", status=None)
    resp = Response(int(code_s), parts[2] if len(parts) > 2 else "", headers, body)
    try:
        if error is not None:
            raise SIPParseError(error)
        _check_headers(resp, datagram)
    except SIPParseError as e:
        e.status = None  # responses are never answered: drop
        raise
    return resp


def _check_headers(msg: Message, datagram: bool) -> None:
    """Check the headers every element relies on, fill the parsed-view cache, apply Content-Length."""
    singles: dict[str, str] = {}
    vias: list[str] = []
    addresses: list[tuple[str, str]] = []
    for k, _, v in msg.headers:
        if k in _SINGLE_SET:
            if k in singles:
                raise SIPParseError(f"more than one {canonical_name(k)} header")
            singles[k] = v
        elif k == "via":
            vias.append(v)
        elif k in _ADDRESS_LISTS:
            addresses.append((k, v))
    if not vias:
        raise SIPParseError("missing Via header")
    for k in _MANDATORY:
        if k not in singles:
            raise SIPParseError(f"missing {canonical_name(k)} header")

    cl = singles.get("content-length")
    if cl is not None:
        if not cl.isascii() or not cl.isdigit() or len(cl) > 9:
            raise SIPParseError("bad Content-Length")
        n = int(cl)
        if n > len(msg.body):
            raise SIPParseError("Content-Length larger than the body")
        if n < len(msg.body):
            msg.body = msg.body[:n]
    elif not datagram:
        raise SIPParseError("missing Content-Length on a stream")
    mf = singles.get("max-forwards")
    if mf is not None and not (mf.isascii() and mf.isdigit() and len(mf) <= 10 and int(mf) <= 255):
        raise SIPParseError("bad Max-Forwards")
    if _CALL_ID_RE.fullmatch(singles["call-id"]) is None:
        raise SIPParseError("bad Call-ID")
    ct = singles.get("content-type")
    if ct is not None:
        m = _MEDIA_TYPE_RE.match(ct)
        if m is None:
            raise SIPParseError("bad Content-Type")
        if m.end() < len(ct):
            parse_gen_params(ct, m.end())

    cache = msg._cache
    cache["cseq"] = parse_cseq(singles["cseq"])
    parsed_vias: list[Via] = []
    for v in vias:
        if "," in v:
            parsed_vias.extend(parse_via(x) for x in split_comma_list(v))
        else:
            parsed_vias.append(parse_via(v))
    if not parsed_vias:
        raise SIPParseError("empty Via header")
    cache["via"] = parsed_vias
    cache["from"] = parse_name_addr(singles["from"])
    cache["to"] = parse_name_addr(singles["to"])
    contacts: list[NameAddr] = []
    routes: list[NameAddr] = []
    record_routes: list[NameAddr] = []
    cache["contact"] = contacts
    cache["route"] = routes
    cache["record-route"] = record_routes
    for k, v in addresses:
        target = contacts if k == "contact" else routes if k == "route" else record_routes
        if "," in v:
            target.extend(parse_name_addr(item) for item in split_comma_list(v) if item != "*" or k != "contact")
        elif v != "*" or k != "contact":
            target.append(parse_name_addr(v))


# -- stream framing ---------------------------------------------------------------------------

_CL_RE = re.compile(rb"\n(?:content-length|l)[ \t]*:[ \t]*([^\r\n]*)", re.IGNORECASE)


class StreamFramer:
    """Cuts a TCP/TLS byte stream into whole messages by Content-Length (RFC 3261 18.3).

    ``feed`` returns a list of items: ``bytes`` (one complete message), or the string ``"ping"`` for a
    CRLFCRLF keep-alive (RFC 5626 3.5.1: answer with CRLF); a lone CRLF (pong) is skipped. Raises
    SIPParseError when the stream cannot be framed; the connection must then be closed.
    """

    def __init__(self, max_size: int = MAX_MESSAGE_SIZE) -> None:
        self._buf = bytearray()
        self._scan = 0   # where the search for the end of the headers resumes
        self._need = 0   # total size of the message being received, once its headers are complete
        self._error: SIPParseError | None = None   # raised by the next feed() after good frames
        self.max_size = max_size

    def feed(self, data: bytes) -> list[bytes | str]:
        """Complete frames so far. When the stream turns bad after some complete frames, those are
        returned first and the error is raised by the next call (so they still get answered)."""
        if self._error is not None:
            raise self._error
        out: list[bytes | str] = []
        try:
            self._feed(data, out)
        except SIPParseError as e:
            if not out:
                raise
            self._error = e
        return out

    def _feed(self, data: bytes, out: list[bytes | str]) -> None:
        buf = self._buf
        buf += data
        while buf:
            if not self._need:
                if buf[0] in (13, 10):
                    # leading CRLFs: keep-alive ping (CRLFCRLF) or pong (CRLF)
                    if buf.startswith(b"\r\n\r\n"):
                        del buf[:4]
                        out.append("ping")
                        continue
                    if buf.startswith(b"\r\n") and len(buf) > 2 and buf[2] not in (13, 10):
                        del buf[:2]
                        continue
                    if len(buf) < 4:
                        break
                    del buf[:1]
                    continue
                m = _EOH_RE.search(buf, self._scan)
                if m is None:
                    if len(buf) > self.max_size:
                        raise SIPParseError("message headers too large", status=513)
                    self._scan = max(0, len(buf) - 3)
                    break
                self._scan = 0
                values = {v.strip(b" \t") for v in _CL_RE.findall(buf, 0, m.start() + 1)}
                if not values:
                    raise SIPParseError("missing Content-Length on a stream")
                if len(values) > 1:
                    raise SIPParseError("conflicting Content-Length headers")
                cl = values.pop()
                if not cl.isdigit() or len(cl) > 9:
                    raise SIPParseError("bad Content-Length")
                total = m.end() + int(cl)
                if total > self.max_size:
                    raise SIPParseError("message too large", status=513)
                self._need = total
            if len(buf) < self._need:
                break
            out.append(bytes(buf[:self._need]))
            del buf[:self._need]
            self._need = 0

    @property
    def buffered(self) -> int:
        return len(self._buf)

    @property
    def failed(self) -> SIPParseError | None:
        """The error that ends this stream once the frames before it were handled (None: all well)."""
        return self._error
