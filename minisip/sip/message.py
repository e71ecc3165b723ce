"""SIP messages: parse bytes into Request/Response objects and serialize them back (RFC 3261 7, 20, 25).

Headers are kept as written, in order, as ``(key, name, value)`` triples where ``key`` is the
lowercase full name (compact forms expanded) so lookups are cheap. Folded lines are joined with one
space. The headers every message needs (Via, From, To, Call-ID, CSeq, Contact, Route) are parsed
and checked once while parsing and cached, so a message that parses never fails later on them.

Parsing is the hottest path of the server, so the common shapes take fast paths (one regex each,
see uri.py) that give exactly what the full grammar gives; From/To/Contact/Route values are only
checked while parsing and built into NameAddr objects on first use; values that recur from message
to message (a dialog's From, a phone's Contact, "2 REGISTER") are looked up in bounded caches.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field

from minisip.sip.errors import SIPParseError
from minisip.sip.uri import (
    FAST_GEN_PARAMS,
    HOST_PATTERN,
    TOKEN_CLASS,
    URI,
    NameAddr,
    SipURI,
    check_host,
    format_params,
    is_token,
    match_name_addr,
    name_addr_from_match,
    parse_gen_params,
    parse_name_addr,
    parse_name_addr_full,
    parse_uri,
    split_comma_list,
    split_simple_params,
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
_ADDRESS_KEYS = ("contact", "route", "record-route")
# Methods known to be tokens (anything else is checked against the token grammar).
_METHODS = frozenset({"INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "INFO", "UPDATE", "PRACK",
                      "REFER", "NOTIFY", "SUBSCRIBE", "MESSAGE", "PUBLISH"})
# Content-Type values known to be valid as written (anything else goes through the grammar).
_KNOWN_TYPES = frozenset({"application/sdp", "text/plain", "message/sipfrag", "application/dtmf-relay",
                          "application/pidf+xml", "application/simple-message-summary"})

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


class UnsafeHeaderError(ValueError):
    """A header name or value (or a start line) built by code holds CR, LF or NUL: refused, since sent
    as is it would end the header early and let the text after it pass as headers of its own."""


def _unsafe(text: str) -> bool:
    # Three substring tests: cheaper than a regex search on the short values of a header.
    return "\n" in text or "\r" in text or "\x00" in text


def check_header(name: str, value: str) -> None:
    """Raise UnsafeHeaderError unless ``name`` is a token and ``value`` has no CR, LF or NUL."""
    if "\n" in value or "\r" in value or "\x00" in value:
        raise UnsafeHeaderError(f"{name[:40]!r} value holds CR, LF or NUL: {value[:80]!r}")
    if name not in _KNOWN_NAMES and not is_token(name):
        raise UnsafeHeaderError(f"bad header name {name[:40]!r}")


def _check_headers_built(headers: list[tuple[str, str, str]]) -> None:
    for _, name, value in headers:
        check_header(name, value)


def reason_phrase(status: int) -> str:
    return _REASONS.get(status, "Unknown")


def header_key(name: str) -> str:
    entry = _KNOWN_NAMES.get(name)
    if entry is not None:
        return entry[0]
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
    # Keys are interned so that comparing them with the literals in this module is an identity check.
    for key, name in _CANONICAL.items():
        entry = (sys.intern(key), name)
        for written in (name, key, key.upper()):
            _NAME_CACHE[written] = entry
    for letter, key in COMPACT.items():
        entry = (sys.intern(key), _CANONICAL.get(key, canonical_name(key)))
        _NAME_CACHE[letter] = entry
        _NAME_CACHE[letter.upper()] = entry


_seed_name_cache()
# (key, name to serialize) of the names code asks for (get("call-id"), extra=[("Contact", ...)]);
# unlike _NAME_CACHE, it never holds names as written with trailing blanks.
_KNOWN_NAMES: dict[str, tuple[str, str]] = dict(_NAME_CACHE)


def _lookup_name(name: str) -> tuple[str, str] | None:
    """Key and serialized name for a header name not yet in the cache; None if it is not a token."""
    stripped = name.rstrip(" \t")
    entry = _NAME_CACHE.get(stripped)
    if entry is None:
        if not is_token(stripped):
            return None
        key = stripped.lower()
        key = sys.intern(COMPACT.get(key, key))
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


# The common shape (``SIP/2.0/UDP host:port;branch=...;rport``): a subset of what _VIA_RE and
# parse_gen_params accept, with the same result.
_VIA_FAST_RE = re.compile(
    rf"SIP/2\.0/([A-Za-z]+) ([A-Za-z0-9](?:[A-Za-z0-9\-_.]*[A-Za-z0-9_])?\.?)(?::([0-9]{{1,5}}))?"
    rf"({FAST_GEN_PARAMS})")


def parse_via(value: str) -> Via:
    """Parse one via-parm (RFC 3261 20.42); LWS around '/', ':', ';' and '=' is allowed."""
    m = _VIA_FAST_RE.fullmatch(value)
    if m is not None:
        transport, host, port_s, params_s = m.groups()
        port = None
        if port_s is not None:
            port = int(port_s)
            if port > 65535:
                raise SIPParseError("bad Via port")
        if not params_s:
            params = {}
        elif params_s[:8] == ";branch=" and params_s.find(";", 8) == -1:
            params = {"branch": params_s[8:]}  # a non-empty token: nothing to check
        else:
            params = split_simple_params(params_s)
            _check_via_params(params)
        return Via(transport.upper(), host.lower(), port, params, "SIP/2.0")
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


# CSeq values seen before ("1 INVITE", "2 REGISTER"). Bounded: emptied when full.
_CSEQ_CACHE: dict[str, tuple[int, str]] = {}
_CACHE_MAX = 4096


def parse_cseq(value: str) -> tuple[int, str]:
    c = _CSEQ_CACHE.get(value)
    if c is not None:
        return c
    c = _parse_cseq(value)
    if len(_CSEQ_CACHE) >= _CACHE_MAX:
        _CSEQ_CACHE.clear()
    _CSEQ_CACHE[value] = c
    return c


def _parse_cseq(value: str) -> tuple[int, str]:
    num, sp, method = value.partition(" ")
    if sp and method in _METHODS and num.isascii() and num.isdigit() and len(num) <= 10:
        n = int(num)
        if n >= 2 ** 31:
            raise SIPParseError("CSeq number too large")
        return n, method
    m = _CSEQ_RE.fullmatch(value.strip(" \t"))
    if m is None:
        raise SIPParseError("bad CSeq")
    n = int(m.group(1))
    if n >= 2 ** 31:
        raise SIPParseError("CSeq number too large")
    return n, m.group(2)


_WORD = r"A-Za-z0-9\-.!%*_+`'~()<>:\\\"/\[\]?{}"
_CALL_ID_RE = re.compile(rf"[{_WORD}]+(?:@[{_WORD}]+)?")
_MEDIA_TYPE_RE = re.compile(rf"([{TOKEN_CLASS}]+)[ \t]*/[ \t]*([{TOKEN_CLASS}]+)")


def _match_tag(m: re.Match[str]) -> str | None:
    """The tag parameter of a NAME_ADDR_FAST_RE match (see ``_checked_name_addr``)."""
    tag = m[9]
    if tag is None and m[8]:
        return split_simple_params(m[8]).get("tag")
    return tag


def _checked_name_addr(value: str) -> re.Match[str] | NameAddr:
    """A From/To/Contact/Route value checked, for the parsed-view cache: its fast-path match, from
    which the NameAddr is built on first use, or else its NameAddr from the full parser (which raises
    SIPParseError when the value is bad)."""
    m = match_name_addr(value)
    return m if m is not None else parse_name_addr_full(value)


class Message:
    """Common part of requests and responses."""

    __slots__ = ("_cache", "body", "headers")

    def __init__(self, headers: list[tuple[str, str, str]] | None = None, body: bytes = b"") -> None:
        self.headers = headers if headers is not None else []
        self.body = body
        self._cache: dict[str, object] = {}

    # -- header access -------------------------------------------------------------------
    def get(self, name: str) -> str | None:
        entry = _KNOWN_NAMES.get(name)
        key = header_key(name) if entry is None else entry[0]
        for k, _, v in self.headers:
            if k == key:
                return v
        return None

    def get_all(self, name: str) -> list[str]:
        """Every value of a header; list headers are split on top-level commas."""
        entry = _KNOWN_NAMES.get(name)
        key = header_key(name) if entry is None else entry[0]
        out: list[str] = []
        split = key in LIST_HEADERS
        for k, _, v in self.headers:
            if k == key:
                if not split:
                    out.append(v)
                elif "," in v:
                    out.extend(split_comma_list(v))
                else:
                    out.append(v.strip(" \t"))
        return out

    def has(self, name: str) -> bool:
        key = header_key(name)
        for h in self.headers:
            if h[0] == key:
                return True
        return False

    def set(self, name: str, value: str) -> None:
        """Replace all values of ``name`` with one value (appended if absent); UnsafeHeaderError when
        the name is not a token or the value holds CR, LF or NUL."""
        check_header(name, value)
        key = header_key(name)
        self._cache.pop(key, None)
        for i, (k, n, _) in enumerate(self.headers):
            if k == key:
                self.headers[i] = (k, n, value)
                self.headers[i + 1:] = [h for h in self.headers[i + 1:] if h[0] != key]
                return
        self.headers.append((key, canonical_name(key), value))

    def add(self, name: str, value: str, first: bool = False) -> None:
        """Add a value of ``name`` (first among its values with ``first``); UnsafeHeaderError as ``set``."""
        check_header(name, value)
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
        vias = self._cache.get("via")
        if vias is None:
            vias = self.vias
        if not vias:
            raise SIPParseError("missing Via")
        return vias[0]  # type: ignore[index,no-any-return]

    @property
    def call_id(self) -> str:
        c = self._cache.get("call-id")
        if c is None:
            return self.get("call-id") or ""
        return c  # type: ignore[return-value]

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
        if c.__class__ is NameAddr:
            return c  # type: ignore[return-value]
        if c is None:
            na = parse_name_addr(self.get(key) or "")
        else:
            na = name_addr_from_match(c)  # type: ignore[arg-type]
        self._cache[key] = na
        return na

    @property
    def from_tag(self) -> str | None:
        c = self._cache.get("from")
        if c is None:
            c = self._name_addr("from")
        if c.__class__ is NameAddr:
            return c.params.get("tag")  # type: ignore[attr-defined,no-any-return]
        return _match_tag(c)  # type: ignore[arg-type]

    @property
    def to_tag(self) -> str | None:
        c = self._cache.get("to")
        if c is None:
            c = self._name_addr("to")
        if c.__class__ is NameAddr:
            return c.params.get("tag")  # type: ignore[attr-defined,no-any-return]
        return _match_tag(c)  # type: ignore[arg-type]

    def _name_addr_list(self, key: str) -> list[NameAddr]:
        c = self._cache.get(key)
        if c.__class__ is list:
            return c  # type: ignore[return-value]
        if c is None:
            out = [parse_name_addr(v) for v in self.get_all(key) if v != "*"]
        else:  # a tuple of fast-path matches (or NameAddr) left by the parser
            out = []
            for x in c:  # type: ignore[attr-defined]
                out.append(x if x.__class__ is NameAddr else name_addr_from_match(x))
        self._cache[key] = out
        return out

    def contacts(self) -> list[NameAddr]:
        """Every Contact except ``*`` (see ``star_contact``)."""
        return self._name_addr_list("contact")

    @property
    def star_contact(self) -> bool:
        """True when a Contact value is ``*`` (REGISTER: remove all bindings)."""
        for k, _, v in self.headers:
            if k == "contact" and (v == "*" or ("*" in v and "*" in split_comma_list(v))):
                return True
        return False

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
        """The wire form; Content-Length is always (re)computed from the body and written last.

        Raises UnsafeHeaderError, before anything is sent, when a line would hold a line feed of its
        own (a header changed in place, bypassing ``set``, ``add`` and the constructors, which also
        refuse CR and NUL), or the start line a CR or LF."""
        start = self._start_line()
        if "\n" in start or "\r" in start:
            raise UnsafeHeaderError(f"CR or LF in the start line: {start[:80]!r}")
        parts = [start]
        for k, n, v in self.headers:
            if k != "content-length":
                parts.append(f"{n}: {v}")
        parts.append(f"Content-Length: {len(self.body)}")
        parts.append("")
        parts.append("")
        text = "\r\n".join(parts)
        if text.count("\n") != len(parts) - 1:  # the one scan that catches any extra line
            bad = next((p for p in parts if "\n" in p), "")
            raise UnsafeHeaderError(f"LF inside a header line: {bad[:80]!r}")
        return text.encode("utf-8", "surrogateescape") + self.body

    def copy_headers(self) -> list[tuple[str, str, str]]:
        return list(self.headers)


class Request(Message):
    """A request. Headers given to the constructor are checked like ``set`` values (UnsafeHeaderError),
    except with ``checked=True``: the parser's, which cannot hold CR or LF."""

    __slots__ = ("method", "uri", "version")

    def __init__(self, method: str, uri: URI, headers: list[tuple[str, str, str]] | None = None,
                 body: bytes = b"", version: str = "SIP/2.0", *, checked: bool = False) -> None:
        if headers is None:
            headers = []
        elif not checked:
            _check_headers_built(headers)
        if not checked and (_unsafe(method) or " " in method):
            raise UnsafeHeaderError(f"bad method {method[:40]!r}")
        self.headers = headers
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
    """A response; headers and reason phrase checked as for Request unless ``checked``."""

    __slots__ = ("reason", "status", "version")

    def __init__(self, status: int, reason: str | None = None, headers: list[tuple[str, str, str]] | None = None,
                 body: bytes = b"", version: str = "SIP/2.0", *, checked: bool = False) -> None:
        if headers is None:
            headers = []
        elif not checked:
            _check_headers_built(headers)
        if reason is None:
            reason = reason_phrase(status)
        elif not checked and _unsafe(reason):
            raise UnsafeHeaderError(f"reason phrase holds CR, LF or NUL: {reason[:80]!r}")
        self.headers = headers
        self.body = body
        self._cache = {}
        self.status = status
        self.reason = reason
        self.version = version

    def _start_line(self) -> str:
        return f"{self.version} {self.status} {self.reason}"

    def __repr__(self) -> str:
        cseq = self.get("cseq") or ""
        return f"<Response {self.status} {cseq.partition(' ')[2].strip()} call-id={self.call_id!r}>"


def make_response(request: Request, status: int, reason: str | None = None, to_tag: str | None = None,
                  extra: Iterable[tuple[str, str]] = (), body: bytes = b"") -> Response:
    """A response copying Via, From, To, Call-ID, CSeq (and Record-Route) from the request (RFC 3261 8.2.6).

    Works on the ``partial`` request of a SIPParseError too, whose headers may not all parse. The
    copied headers are sent back as received; ``reason``, ``to_tag`` and ``extra`` are checked as
    ``set`` values are (UnsafeHeaderError).
    """
    if reason is not None and ("\n" in reason or "\r" in reason or "\x00" in reason):
        raise UnsafeHeaderError(f"reason phrase holds CR, LF or NUL: {reason[:80]!r}")
    if to_tag is not None and ("\n" in to_tag or "\r" in to_tag or "\x00" in to_tag or ";" in to_tag):
        raise UnsafeHeaderError(f"bad To tag {to_tag[:40]!r}")
    headers: list[tuple[str, str, str]] = []
    append = headers.append
    record_route = 100 < status < 300
    add_tag = to_tag is not None and status > 100
    for h in request.headers:
        k = h[0]
        if k in _COPIED:
            append(h)
        elif k == "to":
            if add_tag and not _has_tag(request, h[2]):
                append((k, h[1], f"{h[2]};tag={to_tag}"))
            else:
                append(h)
        elif record_route and k == "record-route":
            append(h)
    for name, value in extra:
        if "\n" in value or "\r" in value or "\x00" in value:
            raise UnsafeHeaderError(f"{name[:40]!r} value holds CR, LF or NUL: {value[:80]!r}")
        entry = _KNOWN_NAMES.get(name)
        if entry is None:
            if not is_token(name):
                raise UnsafeHeaderError(f"bad header name {name[:40]!r}")
            key = header_key(name)
            entry = (key, canonical_name(key))
        append((entry[0], entry[1], value))
    return Response(status, reason, headers, body, checked=True)


_COPIED = frozenset({"via", "from", "call-id", "cseq"})


def _has_tag(request: Request, to_value: str) -> bool:
    try:
        return request.to_tag is not None
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
    lines: list[str] = []
    if end != -1:
        lines = data[:end].decode("utf-8", "surrogateescape").split("\r\n")
        rest = "".join(lines)  # what is left of a CR or LF is bare (a memchr is cheaper than str.count)
        if "\n" in rest:
            lines = []  # a bare LF: the end of the headers may be earlier
        else:
            body = data[end + 4:]
            if "\r" in rest:
                error = "bare CR in header"
                # The partial request answers 400 with its headers copied: no CR may go back out.
                lines = [line.replace("\r", " ") for line in lines]
    if not lines:
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
            lines = [line.replace("\r", " ") for line in lines]
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
                loose[0], _uri_or_placeholder(" ".join(loose[1:-1])), headers, body, loose[-1], checked=True))
        raise SIPParseError("bad start line", status=None)
    method, uri_s, version = parts
    uri: URI | None
    uri_error: SIPParseError | None = None
    try:
        uri = parse_uri(uri_s)
    except SIPParseError as e:
        uri, uri_error = None, e
    req = Request(method, SipURI("invalid") if uri is None else uri, headers, body, version, checked=True)
    try:
        if method not in _METHODS and not is_token(method):
            raise SIPParseError("bad method")
        if version != "SIP/2.0":
            if _VERSION_RE.fullmatch(version) is None:
                raise SIPParseError("bad SIP version")
            if version.upper() != "SIP/2.0":
                raise SIPParseError("SIP version not supported", status=505)
            req.version = "SIP/2.0"
        if error is not None:
            raise SIPParseError(error)
        if uri_error is not None:
            raise SIPParseError(f"bad Request-URI: {uri_error.reason}")
        if uri.__class__ is SipURI and uri.headers is not None:  # type: ignore[union-attr]
            raise SIPParseError("headers in Request-URI")
        _check_headers(req, datagram)
        cache = req._cache
        if cache["cseq"][1] != method:  # type: ignore[index]
            raise SIPParseError("CSeq method does not match the request")
        if cache["via"][0].params.get("branch") == _BRANCH_COOKIE:  # type: ignore[index]
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
    resp = Response(int(code_s), parts[2] if len(parts) > 2 else "", headers, body, checked=True)
    try:
        if error is not None:
            raise SIPParseError(error)
        _check_headers(resp, datagram)
    except SIPParseError as e:
        e.status = None  # responses are never answered: drop
        raise
    return resp


def _check_headers(msg: Message, datagram: bool) -> None:
    """Check the headers every element relies on, fill the parsed-view cache, apply Content-Length.

    From, To, Contact, Route and Record-Route values of the common shapes are only matched here (one
    regex each); their NameAddr is built from the kept match on first use, so nothing fails later.
    """
    headers = msg.headers
    d: dict[str, str] = {}
    for k, _, v in headers:  # a plain loop is cheaper than a comprehension on 3.11
        d[k] = v
    vias: list[str] | tuple[str, ...]
    lists: dict[str, list[str]] | None = None
    if len(d) == len(headers):
        vias = (d["via"],) if "via" in d else ()
    else:
        # Some name repeats: fine for list headers, not for the single ones.
        vias = []
        lists = {}
        seen: set[str] = set()
        for k, _, v in headers:
            if k in _SINGLE_SET:
                if k in seen:
                    raise SIPParseError(f"more than one {canonical_name(k)} header")
                seen.add(k)
            elif k == "via":
                vias.append(v)
            elif k in _ADDRESS_LISTS:
                values = lists.get(k)
                if values is None:
                    lists[k] = [v]
                else:
                    values.append(v)
    if not vias:
        raise SIPParseError("missing Via header")
    for k in _MANDATORY:
        if k not in d:
            raise SIPParseError(f"missing {canonical_name(k)} header")

    cl = d.get("content-length")
    if cl is not None:
        if not cl.isascii() or not cl.isdigit() or len(cl) > 9:
            raise SIPParseError("bad Content-Length")
        n = int(cl)
        if n != len(msg.body):
            if n > len(msg.body):
                raise SIPParseError("Content-Length larger than the body")
            msg.body = msg.body[:n]
    elif not datagram:
        raise SIPParseError("missing Content-Length on a stream")
    mf = d.get("max-forwards")
    if mf is not None and not (mf.isascii() and mf.isdigit() and len(mf) <= 10 and int(mf) <= 255):
        raise SIPParseError("bad Max-Forwards")
    call_id = d["call-id"]
    if _CALL_ID_RE.fullmatch(call_id) is None:
        raise SIPParseError("bad Call-ID")
    ct = d.get("content-type")
    if ct is not None and ct not in _KNOWN_TYPES:
        m = _MEDIA_TYPE_RE.match(ct)
        if m is None:
            raise SIPParseError("bad Content-Type")
        if m.end() < len(ct):
            parse_gen_params(ct, m.end())

    cache = msg._cache
    cache["cseq"] = parse_cseq(d["cseq"])
    cache["call-id"] = call_id
    parsed_vias: list[Via] = []
    for v in vias:
        if "," in v:
            parsed_vias.extend(parse_via(x) for x in split_comma_list(v))
        else:
            parsed_vias.append(parse_via(v))
    if not parsed_vias:
        raise SIPParseError("empty Via header")
    cache["via"] = parsed_vias
    cache["from"] = _checked_name_addr(d["from"])
    cache["to"] = _checked_name_addr(d["to"])
    try:
        for k in _ADDRESS_KEYS:
            if lists is None:
                value = d.get(k)
                cache[k] = () if value is None else _checked_values((value,), k == "contact")
            else:
                cache[k] = _checked_values(lists.get(k, ()), k == "contact")
    except SIPParseError:
        # Report the first bad value in header order, whatever its kind.
        for k, _, v in headers:
            if k in _ADDRESS_LISTS:
                _checked_values((v,), k == "contact")
        raise


def _checked_values(values: Iterable[str], contact: bool) -> tuple[re.Match[str] | NameAddr, ...]:
    """Every Contact (``*`` skipped), Route or Record-Route element of ``values``, checked."""
    items: list[re.Match[str] | NameAddr] = []
    for v in values:
        if "," in v:
            items.extend(_checked_name_addr(x) for x in split_comma_list(v) if x != "*" or not contact)
        elif v != "*" or not contact:
            items.append(_checked_name_addr(v))
    return tuple(items)


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
