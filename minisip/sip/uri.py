"""SIP, SIPS and tel URIs (RFC 3261 19.1, RFC 3966) and name-addr values (RFC 3261 25.1).

Parsing is strict enough to reject the RFC 4475 malformed URIs and tolerant of what real phones
send. Each grammar is one precompiled regular expression, so a URI costs one or two C-level
matches; the shapes phones send most take a narrower fast-path regex first, and values seen before
come from bounded caches (never shared: each caller gets its own objects). Escapes are kept as
written (``%00`` is never decoded into a NUL); ``str()`` serializes.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from minisip.sip.errors import SIPParseError

# -- character classes (RFC 3261 25.1) ---------------------------------------------------------

TOKEN_CLASS = r"A-Za-z0-9\-.!%*_+`'~"
_UNRESERVED = r"A-Za-z0-9\-_.!~*'()"
_ESCAPED = r"%[0-9A-Fa-f]{2}"
QUOTED_STRING = r'"(?:[^"\\]|\\.)*"'
# hostname (lenient: underscores, labels of any kind), IPv4 (matches as a hostname), IPv6 reference
HOST_PATTERN = r"\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9\-_.]*[A-Za-z0-9_])?\.?"

_TOKEN_RE = re.compile(f"[{TOKEN_CLASS}]+")
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*")
_PARAMCHAR = rf"(?:[{_UNRESERVED}\[\]/:&+$]|{_ESCAPED})"
_URI_PARAMS = rf"(?:;{_PARAMCHAR}+(?:={_PARAMCHAR}+)?)*"
# userinfo, host, port, uri-parameters, headers (kept raw; only their escapes are checked).
# No '@' can appear in a valid user, password, host or parameter, so the userinfo ends at the
# only '@' (the user part itself may hold '?', ';' and '/', RFC 4475 3.1.1.3).
_SIP_HOST_TAIL = rf"({HOST_PATTERN})(?::([0-9]{{1,5}}))?({_URI_PARAMS})(?:\?([^\s<>\"]*))?"
_SIP_RE = re.compile(
    rf"((?:[{_UNRESERVED}&=+$,;?/]|{_ESCAPED})+)(?::((?:[{_UNRESERVED}&=+$,]|{_ESCAPED})*))?@{_SIP_HOST_TAIL}")
_SIP_NO_USER_RE = re.compile(rf"()(){_SIP_HOST_TAIL}")
_HOSTPORT_RE = re.compile(rf"({HOST_PATTERN})(?::([0-9]{{1,5}}))?")
_BAD_ESCAPE_RE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_TEL_RE = re.compile(rf"([^;]+)({_URI_PARAMS})")
_TEL_GLOBAL_RE = re.compile(r"\+[0-9\-.()]*[0-9][0-9\-.()]*")
_TEL_LOCAL_RE = re.compile(r"[0-9A-Fa-f*#\-.()]*[0-9A-Fa-f*#][0-9A-Fa-f*#\-.()]*")
_ABSOLUTE_REST_RE = re.compile(r"[^\s<>\"\x00-\x1f\x7f]+")
# generic-param: SWS ";" SWS token [ SWS "=" SWS (token / host / quoted-string) ] (folds are already SP)
_GEN_PARAM_RE = re.compile(
    rf"[ \t]*;[ \t]*([{TOKEN_CLASS}]+)(?:[ \t]*=[ \t]*({QUOTED_STRING}|[{TOKEN_CLASS}\[\]:]+))?[ \t]*", re.DOTALL)
_QUOTED_RE = re.compile(QUOTED_STRING, re.DOTALL)
# [ display-name ] LAQUOT addr-spec RAQUOT; display-name = quoted-string / *(token LWS)
_NAME_ADDR_RE = re.compile(
    rf"[ \t]*(?:({QUOTED_STRING})[ \t]*|([{TOKEN_CLASS}]+(?:[ \t]+[{TOKEN_CLASS}]+)*)[ \t]*)?<([^<>]*)>", re.DOTALL)
_VISUAL = str.maketrans("", "", "-.()")

# Fast paths for the shapes phones and SIPp send, each one precompiled regex. Each accepts a strict
# subset of what the full grammar above accepts (no escapes, passwords, IPv6 references, URI headers,
# quoted or LWS-spaced parameters) and yields the same result; anything else takes the full path.
# Plain greedy repeats, never nested ambiguously (no (a+)* shapes), so backtracking stays linear.
# No possessive repeats: Python 3.11.2 (Debian 12) mis-handles them.
_HOSTNAME = r"[A-Za-z0-9](?:[A-Za-z0-9\-_.]*[A-Za-z0-9_])?\.?"
_FAST_PCHAR = rf"[{_UNRESERVED}\[\]/:&+$]"
_FAST_SIP = (rf"(sips?):(?:([{_UNRESERVED}&=+$,?/]+)@)?({_HOSTNAME})(?::([0-9]{{1,5}}))?"
             rf"((?:;{_FAST_PCHAR}+(?:={_FAST_PCHAR}+)?)*)")
FAST_GEN_PARAMS = rf"(?:;[{TOKEN_CLASS}]+(?:=[{TOKEN_CLASS}]+)?)*"
_SIP_FAST_RE = re.compile(_FAST_SIP)
# groups: 1 quoted display, 2 token display, 3 scheme, 4 user, 5 host, 6 port, 7 URI params,
# 8 header params, 9 the tag when the header params are just ``;tag=...``
NAME_ADDR_FAST_RE = re.compile(
    rf"(?:({QUOTED_STRING})[ \t]*|([{TOKEN_CLASS}]+(?:[ \t]+[{TOKEN_CLASS}]+)*)[ \t]*)?"
    rf"<{_FAST_SIP}>(;tag=([{TOKEN_CLASS}]+)|{FAST_GEN_PARAMS})", re.DOTALL)
# one list element: quoted strings and <...> (neither nesting nor quotes inside) hold commas
_LIST_ITEM = r'"(?:[^"\\]|\\.)*"|<[^<>"]*>|[^,<>"]'
# no quotes, no comma inside <...>, no nested or unclosed '<': every comma separates ("<sip:a;lr>, <sip:b>")
_PLAIN_LIST_RE = re.compile(r'(?:[^<"]|<[^<>",]*>)*')
_SIMPLE_LIST_RE = re.compile(rf"(?:{_LIST_ITEM}|,)*", re.DOTALL)
_LIST_ITEM_RE = re.compile(rf"(?:{_LIST_ITEM})+", re.DOTALL)


def is_token(s: str) -> bool:
    """True when ``s`` is a non-empty RFC 3261 token."""
    return _TOKEN_RE.fullmatch(s) is not None


def parse_gen_params(s: str, pos: int = 0) -> dict[str, str | None]:
    """Parse ``;name=value;flag`` header parameters from ``s[pos:]`` (LWS allowed around ; and =).

    Names are lowercased; values are kept as written (quoted strings keep their quotes).
    """
    params: dict[str, str | None] = {}
    n = len(s)
    match = _GEN_PARAM_RE.match
    while pos < n:
        m = match(s, pos)
        if m is None:
            if s[pos:].strip(" \t"):
                raise SIPParseError(f"bad parameter near {s[pos:pos + 20]!r}")
            break
        params[m.group(1).lower()] = m.group(2)
        pos = m.end()
    return params


def parse_params(s: str) -> dict[str, str | None]:
    """Parse ``a=b;c`` (leading ';' already removed) into an ordered dict, names lowercased."""
    if not s:
        return {}
    return parse_gen_params(";" + s)


def format_params(params: dict[str, str | None]) -> str:
    s = ""
    for k, v in params.items():
        s += f";{k}" if v is None else f";{k}={v}"
    return s


def _uri_params(s: str) -> dict[str, str | None]:
    """Split already validated parameters ``;a=b;c`` (names lowercased)."""
    params: dict[str, str | None] = {}
    for part in s.split(";")[1:]:
        name, eq, value = part.partition("=")
        params[name.lower()] = value if eq else None
    return params


# Parameter strings seen before (``;transport=udp;lr``, ``;expires=3600``) -> their dict, copied
# on use. Bounded: emptied when full, so unique values (tags, branches) cannot grow it.
_PARAMS_CACHE: dict[str, dict[str, str | None]] = {}
_CACHE_MAX = 4096


def split_simple_params(s: str) -> dict[str, str | None]:
    """``_uri_params`` for the hot path: one parameter split directly, repeated strings cached."""
    if s.find(";", 1) == -1:
        name, eq, value = s[1:].partition("=")
        return {name.lower(): value if eq else None}
    c = _PARAMS_CACHE.get(s)
    if c is not None:
        return c.copy()
    params = _uri_params(s)
    if "tag=" not in s and "branch=" not in s:
        if len(_PARAMS_CACHE) >= _CACHE_MAX:
            _PARAMS_CACHE.clear()
        _PARAMS_CACHE[s] = params.copy()
    return params


def _split_unquoted(s: str, sep: str) -> list[str]:
    """Split on ``sep`` outside double quotes and angle brackets."""
    if '"' not in s and "<" not in s:
        return s.split(sep)
    out: list[str] = []
    depth = 0
    quoted = False
    start = 0
    i = 0
    n = len(s)
    while i < n:
        c = s[i]
        if quoted:
            if c == "\\":
                i += 1
            elif c == '"':
                quoted = False
        elif c == '"':
            quoted = True
        elif c == "<":
            depth += 1
        elif c == ">":
            if depth:
                depth -= 1
        elif c == sep and depth == 0:
            out.append(s[start:i])
            start = i + 1
        i += 1
    if quoted:
        raise SIPParseError("unbalanced quotes")
    out.append(s[start:])
    return out


def split_comma_list(value: str) -> list[str]:
    """Split a multi-valued header value (Via, Contact, Route, ...) on top-level commas."""
    if "," not in value:
        return [value.strip(" \t")]
    if _PLAIN_LIST_RE.fullmatch(value) is not None:
        parts = value.split(",")
    elif _SIMPLE_LIST_RE.fullmatch(value) is not None:
        parts = _LIST_ITEM_RE.findall(value)
    else:
        parts = _split_unquoted(value, ",")
    out = []
    for p in parts:
        p = p.strip(" \t")
        if p:
            out.append(p)
    return out


def unquote(s: str) -> str:
    """The text of a quoted-string (quotes removed, quoted-pairs resolved); other text unchanged."""
    if len(s) < 2 or s[0] != '"' or s[-1] != '"':
        return s
    inner = s[1:-1]
    if "\\" not in inner:
        return inner
    return re.sub(r"\\(.)", r"\1", inner, flags=re.DOTALL)


@dataclass(slots=True)
class SipURI:
    """``sip:`` / ``sips:`` URI. ``user`` and ``password`` keep their escapes; ``host`` is lowercased
    (an IPv6 reference keeps its brackets); ``headers`` is the raw text after ``?``."""

    host: str
    user: str | None = None
    port: int | None = None
    scheme: str = "sip"
    password: str | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    headers: str | None = None

    def __str__(self) -> str:
        user = self.user
        if user is None:
            s = f"{self.scheme}:{self.host}"
        elif self.password is None:
            s = f"{self.scheme}:{user}@{self.host}"
        else:
            s = f"{self.scheme}:{user}:{self.password}@{self.host}"
        if self.port is not None:
            s = f"{s}:{self.port}"
        if self.params:
            s += format_params(self.params)
        if self.headers:
            s = f"{s}?{self.headers}"
        return s

    @property
    def transport(self) -> str | None:
        t = self.params.get("transport")
        return t.lower() if t else None

    def host_port(self) -> tuple[str, int | None]:
        return self.host, self.port

    def copy(self) -> SipURI:
        return SipURI(self.host, self.user, self.port, self.scheme, self.password, dict(self.params), self.headers)


@dataclass(slots=True)
class TelURI:
    """``tel:`` URI: ``number`` keeps the visual separators as written; ``digits`` strips them."""

    number: str
    params: dict[str, str | None] = field(default_factory=dict)
    scheme: str = "tel"

    def __str__(self) -> str:
        return "tel:" + self.number + format_params(self.params)

    @property
    def is_global(self) -> bool:
        return self.number.startswith("+")

    @property
    def digits(self) -> str:
        return self.number.translate(_VISUAL)

    @property
    def user(self) -> str:
        return self.digits

    def copy(self) -> TelURI:
        return TelURI(self.number, dict(self.params))


@dataclass(slots=True)
class AbsoluteURI:
    """Any other scheme (mailto:, im:, http:, ...): kept verbatim, scheme lowercased."""

    scheme: str
    rest: str

    def __str__(self) -> str:
        return f"{self.scheme}:{self.rest}"

    @property
    def user(self) -> None:
        return None

    def copy(self) -> AbsoluteURI:
        return self


URI = SipURI | TelURI | AbsoluteURI


def _valid_ipv6(s: str) -> bool:
    """An IPv6 address; tolerates the ``:::`` form RFC 3261's ABNF accidentally allowed (RFC 5118 4.4)."""
    try:
        ipaddress.IPv6Address(s)
        return True
    except ValueError:
        pass
    if ":::" in s and "::::" not in s:
        try:
            ipaddress.IPv6Address(s.replace(":::", "::", 1))
            return True
        except ValueError:
            return False
    return False


def check_host(host: str) -> str:
    """Validate the inside of an IPv6 reference (the regexes check the rest); return the host lowercased."""
    if host[0] == "[" and not _valid_ipv6(host[1:-1]):
        raise SIPParseError(f"bad IPv6 reference {host!r}")
    return host.lower()


def _port(s: str | None) -> int | None:
    if s is None:
        return None
    port = int(s)
    if port > 65535:
        raise SIPParseError(f"bad port {s!r}")
    return port


def parse_host_port(s: str) -> tuple[str, int | None]:
    """Parse ``host[:port]`` with IPv6 references; host is lowercased."""
    m = _HOSTPORT_RE.fullmatch(s)
    if m is None:
        raise SIPParseError(f"bad host {s!r}")
    return check_host(m.group(1)), _port(m.group(2))


# Request-URIs and the like that took the fast path -> a private SipURI, copied on use.
_URI_CACHE: dict[str, SipURI] = {}


def parse_uri(s: str) -> URI:
    """Parse an addr-spec. Raises SIPParseError for malformed sip:/sips:/tel: URIs."""
    c = _URI_CACHE.get(s)
    if c is not None:
        return SipURI(c.host, c.user, c.port, c.scheme, None, c.params.copy() if c.params else {}, None)
    m = _SIP_FAST_RE.fullmatch(s)
    if m is not None:
        scheme, user, host, port_s, params_s = m.groups()
        port = None
        if port_s is not None:
            port = int(port_s)
            if port > 65535:
                raise SIPParseError(f"bad port {port_s!r}")
        uri = SipURI(host.lower(), user, port, scheme, None, split_simple_params(params_s) if params_s else {}, None)
        if len(_URI_CACHE) >= _CACHE_MAX:
            _URI_CACHE.clear()
        _URI_CACHE[s] = uri.copy()
        return uri
    if s[:4] == "sip:":
        return _parse_sip_uri("sip", s, 4)
    colon = s.find(":")
    if colon <= 0:
        raise SIPParseError(f"bad URI {s[:80]!r}")
    scheme = s[:colon].lower()
    if scheme == "sip" or scheme == "sips":
        return _parse_sip_uri(scheme, s, colon + 1)
    if scheme == "tel":
        return _parse_tel_uri(s[colon + 1:])
    if _SCHEME_RE.fullmatch(scheme) is None or _ABSOLUTE_REST_RE.fullmatch(s, colon + 1) is None:
        raise SIPParseError(f"bad URI {s[:80]!r}")
    return AbsoluteURI(scheme, s[colon + 1:])


def _parse_sip_uri(scheme: str, s: str, start: int) -> SipURI:
    m = (_SIP_RE if "@" in s else _SIP_NO_USER_RE).fullmatch(s, start)
    if m is None:
        raise SIPParseError(f"bad SIP URI {s[:80]!r}")
    user, password, host, port_s, params_s, headers = m.groups()
    if not user:
        user = password = None
    if host[0] == "[" and not _valid_ipv6(host[1:-1]):
        raise SIPParseError(f"bad IPv6 reference {host!r}")
    port = None
    if port_s is not None:
        port = int(port_s)
        if port > 65535:
            raise SIPParseError(f"bad port {port_s!r}")
    if headers and _BAD_ESCAPE_RE.search(headers):
        raise SIPParseError("bad escape in URI headers")
    return SipURI(host.lower(), user, port, scheme, password, _uri_params(params_s) if params_s else {}, headers)


def _parse_tel_uri(rest: str) -> TelURI:
    m = _TEL_RE.fullmatch(rest)
    if m is None:
        raise SIPParseError(f"bad tel URI {rest[:80]!r}")
    number, params_s = m.groups()
    if number.startswith("+"):
        if _TEL_GLOBAL_RE.fullmatch(number) is None:
            raise SIPParseError(f"bad global telephone number {number!r}")
    elif _TEL_LOCAL_RE.fullmatch(number) is None:
        raise SIPParseError(f"bad local telephone number {number!r}")
    # RFC 3966 requires phone-context for local numbers; phones often omit it: tolerated.
    return TelURI(number, _uri_params(params_s) if params_s else {})


@dataclass(slots=True)
class NameAddr:
    """A From/To/Contact/Route value: optional display name (as written, quotes kept), URI, header parameters."""

    uri: URI
    display: str | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    @property
    def display_name(self) -> str | None:
        """The display name as text: quotes removed and quoted-pairs resolved."""
        return None if self.display is None else unquote(self.display)

    def __str__(self) -> str:
        d = f"{self.display} " if self.display else ""
        return f"{d}<{self.uri}>{format_params(self.params)}"

    def copy(self) -> NameAddr:
        return NameAddr(self.uri.copy(), self.display, dict(self.params))


def name_addr_from_match(m: re.Match[str]) -> NameAddr:
    """The NameAddr of a NAME_ADDR_FAST_RE match whose port was checked (see ``match_name_addr``)."""
    quoted, tokens, scheme, user, host, port_s, uparams, hparams, tag = m.groups()
    uri = SipURI(host.lower(), user, None if port_s is None else int(port_s), scheme, None,
                 split_simple_params(uparams) if uparams else {}, None)
    if tag is not None:
        params: dict[str, str | None] = {"tag": tag}
    else:
        params = split_simple_params(hparams) if hparams else {}
    return NameAddr(uri, quoted or tokens, params)


# Values that took the fast path (the From of every request of a dialog, a phone's Contact) -> their
# match (immutable). Bounded like the other caches.
_MATCH_CACHE: dict[str, re.Match[str]] = {}


def match_name_addr(value: str) -> re.Match[str] | None:
    """The fast-path match of a common name-addr, or None when ``parse_name_addr_full`` must decide."""
    m = _MATCH_CACHE.get(value)
    if m is not None:
        return m
    m = NAME_ADDR_FAST_RE.fullmatch(value)
    if m is None or (m[6] is not None and int(m[6]) > 65535):
        return None
    if len(_MATCH_CACHE) >= _CACHE_MAX:
        _MATCH_CACHE.clear()
    _MATCH_CACHE[value] = m
    return m


def parse_name_addr(value: str) -> NameAddr:
    """Parse name-addr or addr-spec with header params (RFC 3261 20.10/20.20/20.39)."""
    m = match_name_addr(value)
    if m is not None:
        return name_addr_from_match(m)
    return parse_name_addr_full(value)


def parse_name_addr_full(value: str) -> NameAddr:
    """``parse_name_addr`` without the fast path (the reference the fast path is tested against)."""
    m = _NAME_ADDR_RE.match(value)
    if m is None:
        v = value.strip(" \t")
        if not v:
            raise SIPParseError("empty address")
        if "<" not in v:
            return _parse_addr_spec(v)
        if v[0] == '"':
            if _QUOTED_RE.match(v) is None:
                raise SIPParseError("unbalanced quotes in display name")
            raise SIPParseError("bad quoted display name")
        lt = v.find("<")
        if v.find(">", lt) == -1:
            raise SIPParseError("unterminated <")
        raise SIPParseError(f"bad display name {v[:lt][:80]!r}")
    quoted, tokens, uri_s = m.groups()
    end = m.end()
    uri = _parse_sip_uri("sip", uri_s, 4) if uri_s[:4] == "sip:" else parse_uri(uri_s)
    return NameAddr(uri, quoted or tokens, parse_gen_params(value, end) if end < len(value) else {})


def _parse_addr_spec(v: str) -> NameAddr:
    # Without <>, everything after the first ';' is header parameters (RFC 3261 20.10).
    if '"' in v:
        raise SIPParseError("quoted display name without <uri>")
    semi = v.find(";")
    spec = v if semi == -1 else v[:semi].rstrip(" \t")
    if "," in spec or "?" in spec:
        raise SIPParseError("an addr-spec with ',' or '?' must be enclosed in <>")
    uri = parse_uri(spec)
    return NameAddr(uri, None, parse_gen_params(v, semi) if semi != -1 else {})
