"""SDP (RFC 8866) parsed into a small model and serialized back, with typed views of what a media
layer reads and writes: direction and hold (RFC 3264), crypto (RFC 4568), fingerprint (RFC 8122),
setup (RFC 4145), ICE (RFC 8839), rtcp (RFC 3605), rtcp-mux (RFC 5761), BUNDLE groups (RFC 9143).

Pure and fast: one pass over the lines, string methods only (no regular expressions). Serializing a
parsed description gives back the same bytes when the input was well formed (CRLF line ends, lines
in the RFC order, single spaces, numbers without leading zeros); bare LF is accepted and CRLF is
written. Lines of unknown types, lines out of place, and unknown attributes are kept, in order
(unknown lines of a section are written just before its attributes). Malformed input raises
SDPError; nothing else is raised whatever the bytes. The typed attribute views are lenient: a
malformed rtpmap, crypto or candidate attribute is skipped there (RFC 8866 5.13: ignore what is not
understood) but kept in ``attributes`` and on the wire.

Model objects are mutable (the media layer rewrites offers in place; ``copy()`` first when the
original is still needed); attribute values (Origin, Connection, Crypto, Candidate...) are frozen.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import NamedTuple, TypeVar

_T = TypeVar("_T")


class SDPError(ValueError):
    """The bytes are not a well-formed session description; the message says where and why."""


DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
_DIRECTIONS = frozenset(DIRECTIONS)
SETUP_ROLES = frozenset({"active", "passive", "actpass", "holdconn"})
# What remove_crypto_and_ice() drops: SDES, DTLS (RFC 8122, RFC 4145 connection, RFC 8842 tls-id), ICE.
SECURITY_AND_ICE_ATTRIBUTES = frozenset({
    "crypto", "fingerprint", "setup", "connection", "tls-id",
    "ice-ufrag", "ice-pwd", "ice-options", "ice-lite", "ice-mismatch", "ice-pacing",
    "candidate", "remote-candidates", "end-of-candidates",
})
_PT_ATTRIBUTES = frozenset({"rtpmap", "fmtp", "rtcp-fb"})
_MAX_DIGITS = 20  # longer numbers are refused before int() (which refuses over 4300 digits itself)


def _number(text: str, what: str, limit: int | None = None, lineno: int = 0) -> int:
    """``text`` as a non-negative decimal integer, or SDPError naming ``what`` (and the line, if given)."""
    if not text or len(text) > _MAX_DIGITS or not text.isascii() or not text.isdigit():
        where = f"line {lineno}: {what}" if lineno else what
        raise SDPError(f"{where}: expected a number, got {text[:40]!r}")
    n = int(text)
    if limit is not None and n > limit:
        where = f"line {lineno}: {what}" if lineno else what
        raise SDPError(f"{where}: {n} is out of range (0-{limit})")
    return n


def _addrtype(address: str) -> str:
    """IP6 for an IPv6 address, IP4 otherwise (IPv4 or a name)."""
    return "IP6" if ":" in address else "IP4"


# -- attribute values --------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Origin:
    """The o= line: who made the session and which version of its description this is."""

    username: str
    session_id: str
    session_version: int
    nettype: str = "IN"
    addrtype: str = "IP4"
    address: str = "0.0.0.0"

    @classmethod
    def parse(cls, value: str) -> Origin:
        parts = value.split()
        if len(parts) != 6:
            raise SDPError(f"o= line needs 6 fields "
                           f"(username sess-id sess-version nettype addrtype address), got {len(parts)}")
        _number(parts[1], "o= session id")
        return cls(parts[0], parts[1], _number(parts[2], "o= session version"), parts[3], parts[4], parts[5])

    def to_value(self) -> str:
        return (f"{self.username} {self.session_id} {self.session_version} "
                f"{self.nettype} {self.addrtype} {self.address}")


@dataclass(frozen=True, slots=True)
class Connection:
    """A c= line: network type, address type (IP4/IP6) and address (kept as written, TTL included)."""

    nettype: str
    addrtype: str
    address: str

    @classmethod
    def of(cls, address: str) -> Connection:
        """``IN IP4 address`` or ``IN IP6 address``, by the address's shape."""
        return cls("IN", _addrtype(address), address)

    @classmethod
    def parse(cls, value: str) -> Connection:
        parts = value.split()
        if len(parts) != 3:
            raise SDPError(f"c= line needs 3 fields (nettype addrtype address), got {len(parts)}")
        return cls(parts[0], parts[1], parts[2])

    def to_value(self) -> str:
        return f"{self.nettype} {self.addrtype} {self.address}"


@dataclass(frozen=True, slots=True)
class Timing:
    """A t= line (start and stop times, NTP seconds; 0 0 = unbounded) and its r= lines, kept raw."""

    start: int = 0
    stop: int = 0
    repeats: tuple[str, ...] = ()


class RtpMap(NamedTuple):
    """An rtpmap attribute: encoding name, clock rate, channels (None when not written)."""

    encoding: str
    clock_rate: int
    channels: int | None = None


# RFC 3551 static payload types a PBX meets (used when an offer lists one without an rtpmap).
STATIC_PAYLOAD_TYPES = {
    "0": RtpMap("PCMU", 8000, 1), "3": RtpMap("GSM", 8000, 1), "4": RtpMap("G723", 8000, 1),
    "8": RtpMap("PCMA", 8000, 1), "9": RtpMap("G722", 8000, 1), "13": RtpMap("CN", 8000, 1),
    "18": RtpMap("G729", 8000, 1),
}


class Group(NamedTuple):
    """A session-level group attribute (RFC 5888), e.g. BUNDLE and its mids."""

    semantics: str
    mids: tuple[str, ...]


class Rtcp(NamedTuple):
    """An rtcp attribute (RFC 3605): the RTCP port and, when written, its address."""

    port: int
    address: str | None = None


@dataclass(frozen=True, slots=True)
class Crypto:
    """An RFC 4568 crypto attribute. ``key_salt`` (the first inline key's master key || salt, decoded),
    ``lifetime`` and ``mki`` (as written, e.g. ``2^31`` and ``1:4``) are read from ``key_params``.
    Constructing one with unusable key parameters raises SDPError."""

    tag: int
    suite: str
    key_params: str = field(repr=False)  # holds the key: kept out of logs
    session_params: str = ""
    key_salt: bytes = field(init=False, repr=False, compare=False)
    lifetime: str | None = field(init=False, compare=False)
    mki: str | None = field(init=False, compare=False)

    def __post_init__(self) -> None:
        key_salt, lifetime, mki = _parse_key_params(self.key_params)
        object.__setattr__(self, "key_salt", key_salt)
        object.__setattr__(self, "lifetime", lifetime)
        object.__setattr__(self, "mki", mki)

    @classmethod
    def parse(cls, value: str) -> Crypto:
        """A crypto attribute's value: ``tag suite key-params [session-params]``."""
        parts = value.split(None, 3)
        if len(parts) < 3:
            raise SDPError(f"crypto attribute needs tag, suite and key parameters: {value[:60]!r}")
        return cls(_number(parts[0], "crypto tag", 999999999), parts[1], parts[2],
                   parts[3] if len(parts) == 4 else "")

    @classmethod
    def make(cls, tag: int, suite: str, key_salt: bytes, lifetime: str | None = None, mki: str | None = None,
             session_params: str = "") -> Crypto:
        """A crypto attribute carrying ``key_salt`` inline (base64), with optional lifetime and MKI."""
        info = base64.b64encode(key_salt).decode("ascii")
        if lifetime is not None:
            info += "|" + lifetime
        if mki is not None:
            info += "|" + mki
        return cls(tag, suite, "inline:" + info, session_params)

    def to_value(self) -> str:
        value = f"{self.tag} {self.suite} {self.key_params}"
        return f"{value} {self.session_params}" if self.session_params else value


def _parse_key_params(key_params: str) -> tuple[bytes, str | None, str | None]:
    """The first ``inline:`` key of RFC 4568 key parameters: (key||salt, lifetime, MKI)."""
    first = key_params.split(";", 1)[0]
    method, sep, info = first.partition(":")
    if not sep or method.lower() != "inline":
        raise SDPError(f"crypto key method must be inline: {first[:60]!r}")
    parts = info.split("|")
    if len(parts) > 3:
        raise SDPError(f"crypto key has too many '|' fields: {info[:60]!r}")
    lifetime = mki = None
    for extra in parts[1:]:
        if ":" in extra:
            value, _, length = extra.partition(":")
            _number(value, "crypto MKI value")
            _number(length, "crypto MKI length", 128)
            if mki is not None:
                raise SDPError(f"crypto key has two MKIs: {info[:60]!r}")
            mki = extra
        else:
            if extra.startswith("2^"):
                _number(extra[2:], "crypto lifetime exponent", 64)
            else:
                _number(extra, "crypto lifetime")
            if lifetime is not None or mki is not None:
                raise SDPError(f"crypto lifetime must come once, before the MKI: {info[:60]!r}")
            lifetime = extra
    b64 = parts[0]
    if not b64 or not b64.isascii():
        raise SDPError(f"crypto inline key is empty or not base64: {b64[:60]!r}")
    try:
        key_salt = base64.b64decode(b64 + "=" * (-len(b64) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise SDPError(f"crypto inline key is not base64: {b64[:60]!r}") from None
    return key_salt, lifetime, mki


@dataclass(frozen=True, slots=True)
class Candidate:
    """An ICE candidate attribute (RFC 8839 5.1); ``extra`` holds the name/value pairs after the type
    (raddr, rport, tcptype, generation...), in order."""

    foundation: str
    component: int
    transport: str
    priority: int
    address: str
    port: int
    type: str
    extra: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, value: str) -> Candidate:
        parts = value.split()
        if len(parts) < 8 or parts[6] != "typ":
            raise SDPError(f"candidate needs 'foundation component transport priority address port typ type': "
                           f"{value[:80]!r}")
        if len(parts) % 2:
            raise SDPError(f"candidate has an extension name without a value: {value[:80]!r}")
        extra = tuple((parts[i], parts[i + 1]) for i in range(8, len(parts), 2))
        return cls(parts[0], _number(parts[1], "candidate component", 256), parts[2],
                   _number(parts[3], "candidate priority", 0xFFFFFFFF), parts[4],
                   _number(parts[5], "candidate port", 65535), parts[7], extra)

    def to_value(self) -> str:
        value = (f"{self.foundation} {self.component} {self.transport} {self.priority} "
                 f"{self.address} {self.port} typ {self.type}")
        return value + "".join(f" {k} {v}" for k, v in self.extra)

    def _get(self, name: str) -> str | None:
        for k, v in self.extra:
            if k == name:
                return v
        return None

    @property
    def related_address(self) -> str | None:
        return self._get("raddr")

    @property
    def related_port(self) -> int | None:
        rport = self._get("rport")
        return int(rport) if rport is not None and rport.isascii() and rport.isdigit() and len(rport) < 6 else None


# -- sections ----------------------------------------------------------------------------------

class _Section:
    """What the session and each media section share: the ordered attribute list and its helpers."""

    __slots__ = ()
    attributes: list[tuple[str, str | None]]
    bandwidths: list[tuple[str, int]]

    def has(self, name: str) -> bool:
        """Whether this level has attribute ``name`` (flag or valued)."""
        for n, _ in self.attributes:
            if n == name:
                return True
        return False

    def get(self, name: str) -> str | None:
        """The value of this level's first attribute ``name`` (None when absent or a flag)."""
        for n, v in self.attributes:
            if n == name:
                return v
        return None

    def get_all(self, name: str) -> list[str]:
        """The values of this level's attributes ``name``, in order (flags as empty strings)."""
        return [v or "" for n, v in self.attributes if n == name]

    def _parsed(self, name: str, parse: Callable[[str], _T]) -> list[_T]:
        """The values of attribute ``name`` parsed by ``parse``, in order; malformed ones skipped."""
        out = []
        for n, v in self.attributes:
            if n == name and v:
                try:
                    out.append(parse(v))
                except SDPError:
                    continue
        return out

    def add_attribute(self, name: str, value: str | None = None) -> None:
        """Append ``a=name[:value]``."""
        self.attributes.append((name, value))

    def set_attribute(self, name: str, value: str | None = None) -> None:
        """One ``a=name[:value]`` at this level: replaces the first in place, drops the others, else appends."""
        self._replace(name, [(name, value)])

    def remove_attribute(self, *names: str) -> int:
        """Drop every attribute named in ``names``; returns how many were dropped."""
        before = len(self.attributes)
        self.attributes = [a for a in self.attributes if a[0] not in names]
        return before - len(self.attributes)

    def _replace(self, name: str | frozenset[str], new: list[tuple[str, str | None]]) -> None:
        """Put ``new`` where the first attribute matching ``name`` was (or at the end), dropping all matches."""
        names = name if isinstance(name, frozenset) else frozenset((name,))
        out: list[tuple[str, str | None]] = []
        placed = False
        for attr in self.attributes:
            if attr[0] in names:
                if not placed:
                    out.extend(new)
                    placed = True
            else:
                out.append(attr)
        if not placed:
            out.extend(new)
        self.attributes = out

    def _own_direction(self) -> str | None:
        for n, _ in self.attributes:
            if n in _DIRECTIONS:
                return n
        return None

    def _set_direction(self, value: str) -> None:
        if value not in _DIRECTIONS:
            raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}, not {value!r}")
        self._replace(_DIRECTIONS, [(value, None)])

    def _own_fingerprints(self) -> list[tuple[str, str]]:
        out = []
        for n, v in self.attributes:
            if n == "fingerprint" and v:
                func, _, fp = v.strip().partition(" ")
                if fp.strip():
                    out.append((func.lower(), fp.strip()))
        return out

    def _own_setup(self) -> str | None:
        value = self.get("setup")
        if value is None:
            return None
        value = value.strip().lower()
        return value if value in SETUP_ROLES else None

    def _set_value(self, name: str, value: str | None) -> None:
        if value is None:
            self.remove_attribute(name)
        else:
            self.set_attribute(name, value)

    def _set_flag(self, name: str, on: bool) -> None:
        if on:
            if not self.has(name):
                self.attributes.append((name, None))
        else:
            self.remove_attribute(name)


@dataclass(slots=True, eq=True)
class MediaDescription(_Section):
    """One m= section. Fields are this section's own lines; the typed properties (``fingerprint``,
    ``setup``, ``ice_ufrag``, ``direction``, ``effective_connection``...) fall back to the session level
    where the RFCs say the value is inherited. ``session`` is set by parse_sdp and add_media."""

    kind: str = "audio"
    port: int = 9
    proto: str = "RTP/AVP"
    formats: list[str] = field(default_factory=list)
    port_count: int | None = None
    information: str | None = None
    connections: list[Connection] = field(default_factory=list)
    bandwidths: list[tuple[str, int]] = field(default_factory=list)
    key: str | None = None
    attributes: list[tuple[str, str | None]] = field(default_factory=list)
    other_lines: list[tuple[str, str]] = field(default_factory=list)
    session: SessionDescription | None = field(default=None, compare=False, repr=False)

    # -- connection ----------------------------------------------------------------------------
    @property
    def connection(self) -> Connection | None:
        """This section's (first) c= line."""
        return self.connections[0] if self.connections else None

    @connection.setter
    def connection(self, value: Connection | None) -> None:
        self.connections = [] if value is None else [value]

    @property
    def effective_connection(self) -> Connection | None:
        """This section's c= line, else the session's (RFC 8866 5.7)."""
        if self.connections:
            return self.connections[0]
        return self.session.connection if self.session is not None else None

    @property
    def address(self) -> str | None:
        """The effective connection address (None when neither level has a c= line)."""
        conn = self.effective_connection
        return conn.address if conn is not None else None

    def set_connection(self, address: str, port: int | None = None) -> None:
        """Point this section at ``address`` (and ``port``): its own c= line, IP4 or IP6 by the address.
        A stale ``a=rtcp`` (it named the old transport) is dropped; set ``rtcp`` again if needed."""
        self.connections = [Connection.of(address)]
        if port is not None:
            if not 0 <= port <= 65535:
                raise ValueError(f"port out of range: {port}")
            self.port = port
        self.remove_attribute("rtcp")

    # -- codecs --------------------------------------------------------------------------------
    @property
    def rtpmap(self) -> dict[str, RtpMap]:
        """Payload type -> RtpMap, from the rtpmap attributes (malformed ones skipped)."""
        out: dict[str, RtpMap] = {}
        for n, v in self.attributes:
            if n != "rtpmap" or not v:
                continue
            pt, _, rest = v.partition(" ")
            parts = rest.strip().split("/")
            if not pt or len(parts) < 2 or len(parts) > 3 or not parts[0]:
                continue
            try:
                clock = _number(parts[1], "rtpmap clock rate")
                channels = _number(parts[2], "rtpmap channels") if len(parts) == 3 else None
            except SDPError:
                continue
            out.setdefault(pt, RtpMap(parts[0], clock, channels))
        return out

    @property
    def fmtp(self) -> dict[str, str]:
        """Payload type -> format parameters string, from the fmtp attributes."""
        out: dict[str, str] = {}
        for n, v in self.attributes:
            if n == "fmtp" and v:
                pt, _, params = v.partition(" ")
                if pt:
                    out.setdefault(pt, params.strip())
        return out

    def find_format(self, encoding: str, clock_rate: int | None = None) -> str | None:
        """The first payload type of the m= line whose rtpmap names ``encoding`` (case-insensitive) at
        ``clock_rate`` (any when None); a static type without an rtpmap has its RFC 3551 meaning."""
        rtpmap = self.rtpmap
        encoding = encoding.lower()
        for pt in self.formats:
            entry = rtpmap.get(pt) or STATIC_PAYLOAD_TYPES.get(pt)
            if entry is not None and entry.encoding.lower() == encoding and clock_rate in (None, entry.clock_rate):
                return pt
        return None

    def keep_formats(self, formats: Iterable[str | int]) -> None:
        """Keep only the payload types in ``formats`` (order of the m= line kept), dropping the rtpmap,
        fmtp and rtcp-fb lines of the others (``rtcp-fb:*`` stays). The caller rejects the stream
        (port 0) when nothing is left."""
        keep = {str(f) for f in formats}
        self.formats = [f for f in self.formats if f in keep]
        out = []
        for attr in self.attributes:
            if attr[0] in _PT_ATTRIBUTES and attr[1] is not None:
                pt = attr[1].partition(" ")[0]
                if pt != "*" and pt not in keep:
                    continue
            out.append(attr)
        self.attributes = out

    @property
    def ptime(self) -> int | None:
        value = self.get("ptime")
        if value is None:
            return None
        try:
            return _number(value.strip(), "ptime")
        except SDPError:
            return None

    @ptime.setter
    def ptime(self, value: int | None) -> None:
        self._set_value("ptime", None if value is None else str(value))

    # -- direction and hold --------------------------------------------------------------------
    @property
    def direction(self) -> str:
        """sendrecv, sendonly, recvonly or inactive: this section's, else the session's, else sendrecv."""
        own = self._own_direction()
        if own is None and self.session is not None:
            own = self.session._own_direction()
        return own or "sendrecv"

    @direction.setter
    def direction(self, value: str) -> None:
        self._set_direction(value)

    @property
    def on_hold(self) -> bool:
        """The sender holds this stream (RFC 3264 8.4): sendonly or inactive, or the old c=0.0.0.0
        (RFC 2543 style). With ICE, 0.0.0.0 only means no candidate yet (RFC 8839 4.2.1), never hold."""
        if self.direction in ("sendonly", "inactive"):
            return True
        conn = self.effective_connection
        return conn is not None and conn.address == "0.0.0.0" and self.ice_ufrag is None

    # -- SDES ----------------------------------------------------------------------------------
    @property
    def crypto(self) -> list[Crypto]:
        """The crypto attributes, in order (malformed ones skipped)."""
        return self._parsed("crypto", Crypto.parse)

    @crypto.setter
    def crypto(self, value: Iterable[Crypto]) -> None:
        self._replace("crypto", [("crypto", c.to_value()) for c in value])

    # -- DTLS ----------------------------------------------------------------------------------
    @property
    def fingerprints(self) -> list[tuple[str, str]]:
        """(hash function lowercased, fingerprint) pairs: this section's, else the session's."""
        own = self._own_fingerprints()
        if not own and self.session is not None:
            return self.session._own_fingerprints()
        return own

    @property
    def fingerprint(self) -> tuple[str, str] | None:
        """The first effective fingerprint."""
        fps = self.fingerprints
        return fps[0] if fps else None

    @fingerprint.setter
    def fingerprint(self, value: tuple[str, str] | None) -> None:
        self._set_value("fingerprint", None if value is None else f"{value[0]} {value[1]}")

    @property
    def setup(self) -> str | None:
        """active, passive, actpass or holdconn (lowercased): this section's, else the session's.
        None when absent or not one of those."""
        own = self._own_setup()
        if own is None and not self.has("setup") and self.session is not None:
            return self.session._own_setup()
        return own

    @setup.setter
    def setup(self, value: str | None) -> None:
        if value is not None and value not in SETUP_ROLES:
            raise ValueError(f"setup must be one of {', '.join(sorted(SETUP_ROLES))}, not {value!r}")
        self._set_value("setup", value)

    # -- ICE -----------------------------------------------------------------------------------
    def _inherited(self, name: str) -> str | None:
        for n, v in self.attributes:
            if n == name:
                return v
        return self.session.get(name) if self.session is not None else None

    @property
    def ice_ufrag(self) -> str | None:
        return self._inherited("ice-ufrag")

    @ice_ufrag.setter
    def ice_ufrag(self, value: str | None) -> None:
        self._set_value("ice-ufrag", value)

    @property
    def ice_pwd(self) -> str | None:
        return self._inherited("ice-pwd")

    @ice_pwd.setter
    def ice_pwd(self, value: str | None) -> None:
        self._set_value("ice-pwd", value)

    @property
    def ice_lite(self) -> bool:
        """ice-lite is session-level (RFC 8839 5.3); a media-level one is honoured too."""
        return self.has("ice-lite") or (self.session is not None and self.session.has("ice-lite"))

    @property
    def candidates(self) -> list[Candidate]:
        """The candidate attributes, in order (malformed ones skipped)."""
        return self._parsed("candidate", Candidate.parse)

    @candidates.setter
    def candidates(self, value: Iterable[Candidate]) -> None:
        self._replace("candidate", [("candidate", c.to_value()) for c in value])

    @property
    def end_of_candidates(self) -> bool:
        return self.has("end-of-candidates") or (self.session is not None and self.session.has("end-of-candidates"))

    # -- RTCP and identification ---------------------------------------------------------------
    @property
    def rtcp_mux(self) -> bool:
        return self.has("rtcp-mux")

    @rtcp_mux.setter
    def rtcp_mux(self, on: bool) -> None:
        self._set_flag("rtcp-mux", on)

    @property
    def rtcp(self) -> Rtcp | None:
        """The rtcp attribute (None when absent or malformed)."""
        value = self.get("rtcp")
        if value is None:
            return None
        parts = value.split()
        try:
            port = _number(parts[0] if parts else "", "rtcp port", 65535)
        except SDPError:
            return None
        if len(parts) == 4:
            return Rtcp(port, parts[3])
        return Rtcp(port) if len(parts) == 1 else None

    @rtcp.setter
    def rtcp(self, value: Rtcp | tuple[int, str | None] | None) -> None:
        if value is None:
            self.remove_attribute("rtcp")
            return
        port, address = value
        self.set_attribute("rtcp", str(port) if address is None else f"{port} IN {_addrtype(address)} {address}")

    @property
    def mid(self) -> str | None:
        return self.get("mid")

    @mid.setter
    def mid(self, value: str | None) -> None:
        self._set_value("mid", value)

    # -- whole-section helpers -----------------------------------------------------------------
    def remove_crypto_and_ice(self) -> None:
        """Drop every SDES, DTLS and ICE attribute of this section (see SECURITY_AND_ICE_ATTRIBUTES)."""
        self.attributes = [a for a in self.attributes if a[0] not in SECURITY_AND_ICE_ATTRIBUTES]

    def copy(self) -> MediaDescription:
        """An independent copy (attached to the same session)."""
        return MediaDescription(self.kind, self.port, self.proto, list(self.formats), self.port_count,
                                self.information, list(self.connections), list(self.bandwidths), self.key,
                                list(self.attributes), list(self.other_lines), self.session)

    def _write(self, out: list[str]) -> None:
        port = str(self.port) if self.port_count is None else f"{self.port}/{self.port_count}"
        line = f"m={self.kind} {port} {self.proto}"
        out.append(line + " " + " ".join(self.formats) if self.formats else line)
        if self.information is not None:
            out.append("i=" + self.information)
        for conn in self.connections:
            out.append("c=" + conn.to_value())
        for bwtype, bw in self.bandwidths:
            out.append(f"b={bwtype}:{bw}")
        if self.key is not None:
            out.append("k=" + self.key)
        for t, v in self.other_lines:
            out.append(f"{t}={v}")
        for n, v in self.attributes:
            out.append("a=" + n if v is None else f"a={n}:{v}")


@dataclass(slots=True, eq=True)
class SessionDescription(_Section):
    """A whole session description: the session-level lines and the media sections, in order."""

    version: int = 0
    origin: Origin | None = None
    name: str | None = "-"
    information: str | None = None
    uri: str | None = None
    emails: list[str] = field(default_factory=list)
    phones: list[str] = field(default_factory=list)
    connection: Connection | None = None
    bandwidths: list[tuple[str, int]] = field(default_factory=list)
    timing: list[Timing] = field(default_factory=lambda: [Timing()])
    zone: str | None = None
    key: str | None = None
    attributes: list[tuple[str, str | None]] = field(default_factory=list)
    other_lines: list[tuple[str, str]] = field(default_factory=list)
    media: list[MediaDescription] = field(default_factory=list)

    def to_bytes(self) -> bytes:
        """The description on the wire: RFC order, CRLF line ends."""
        out = [f"v={self.version}"]
        if self.origin is not None:
            out.append("o=" + self.origin.to_value())
        if self.name is not None:
            out.append("s=" + self.name)
        if self.information is not None:
            out.append("i=" + self.information)
        if self.uri is not None:
            out.append("u=" + self.uri)
        for e in self.emails:
            out.append("e=" + e)
        for p in self.phones:
            out.append("p=" + p)
        if self.connection is not None:
            out.append("c=" + self.connection.to_value())
        for bwtype, bw in self.bandwidths:
            out.append(f"b={bwtype}:{bw}")
        for t in self.timing:
            out.append(f"t={t.start} {t.stop}")
            for r in t.repeats:
                out.append("r=" + r)
        if self.zone is not None:
            out.append("z=" + self.zone)
        if self.key is not None:
            out.append("k=" + self.key)
        for t, v in self.other_lines:
            out.append(f"{t}={v}")
        for n, v in self.attributes:
            out.append("a=" + n if v is None else f"a={n}:{v}")
        for m in self.media:
            m._write(out)
        out.append("")
        return "\r\n".join(out).encode("utf-8")

    def copy(self) -> SessionDescription:
        """An independent copy: lists are copied, media sections copied and attached to the copy."""
        new = SessionDescription(self.version, self.origin, self.name, self.information, self.uri,
                                 list(self.emails), list(self.phones), self.connection, list(self.bandwidths),
                                 list(self.timing), self.zone, self.key, list(self.attributes),
                                 list(self.other_lines), [])
        for m in self.media:
            new.add_media(m.copy())
        return new

    def add_media(self, media: MediaDescription) -> MediaDescription:
        """Append a media section and attach it to this session (for the inherited values)."""
        media.session = self
        self.media.append(media)
        return media

    def bump_version(self) -> None:
        """Increment the o= session version, as a changed offer must (RFC 3264 8)."""
        if self.origin is not None:
            o = self.origin
            self.origin = Origin(o.username, o.session_id, o.session_version + 1, o.nettype, o.addrtype, o.address)

    def set_connection(self, address: str, origin: bool = True) -> None:
        """Session-level c= to ``address`` (and the o= address too unless ``origin`` is false)."""
        self.connection = Connection.of(address)
        if origin and self.origin is not None:
            o = self.origin
            self.origin = Origin(o.username, o.session_id, o.session_version, o.nettype, _addrtype(address), address)

    def media_by_mid(self, mid: str) -> MediaDescription | None:
        for m in self.media:
            if m.get("mid") == mid:
                return m
        return None

    @property
    def groups(self) -> list[Group]:
        """The group attributes (RFC 5888), e.g. ``Group('BUNDLE', ('0', '1'))``."""
        out = []
        for n, v in self.attributes:
            if n == "group" and v:
                parts = v.split()
                if parts:
                    out.append(Group(parts[0], tuple(parts[1:])))
        return out

    @groups.setter
    def groups(self, value: Iterable[Group | tuple[str, Iterable[str]]]) -> None:
        self._replace("group", [("group", " ".join((sem, *mids))) for sem, mids in value])

    @property
    def direction(self) -> str:
        """The session-level direction (sendrecv when none is written)."""
        return self._own_direction() or "sendrecv"

    @direction.setter
    def direction(self, value: str) -> None:
        self._set_direction(value)

    @property
    def fingerprints(self) -> list[tuple[str, str]]:
        return self._own_fingerprints()

    @property
    def fingerprint(self) -> tuple[str, str] | None:
        fps = self._own_fingerprints()
        return fps[0] if fps else None

    @fingerprint.setter
    def fingerprint(self, value: tuple[str, str] | None) -> None:
        self._set_value("fingerprint", None if value is None else f"{value[0]} {value[1]}")

    @property
    def setup(self) -> str | None:
        return self._own_setup()

    @setup.setter
    def setup(self, value: str | None) -> None:
        if value is not None and value not in SETUP_ROLES:
            raise ValueError(f"setup must be one of {', '.join(sorted(SETUP_ROLES))}, not {value!r}")
        self._set_value("setup", value)

    @property
    def ice_ufrag(self) -> str | None:
        return self.get("ice-ufrag")

    @ice_ufrag.setter
    def ice_ufrag(self, value: str | None) -> None:
        self._set_value("ice-ufrag", value)

    @property
    def ice_pwd(self) -> str | None:
        return self.get("ice-pwd")

    @ice_pwd.setter
    def ice_pwd(self, value: str | None) -> None:
        self._set_value("ice-pwd", value)

    @property
    def ice_lite(self) -> bool:
        return self.has("ice-lite")

    @ice_lite.setter
    def ice_lite(self, on: bool) -> None:
        self._set_flag("ice-lite", on)

    @property
    def on_hold(self) -> bool:
        """Every media section still in use (port not 0) is held; False without any."""
        active = [m for m in self.media if m.port != 0]
        return bool(active) and all(m.on_hold for m in active)

    def remove_crypto_and_ice(self) -> None:
        """Drop every SDES, DTLS and ICE attribute, at the session level and in every media section."""
        self.attributes = [a for a in self.attributes if a[0] not in SECURITY_AND_ICE_ATTRIBUTES]
        for m in self.media:
            m.remove_crypto_and_ice()


# -- parsing -----------------------------------------------------------------------------------

def _parse_m(value: str, lineno: int) -> MediaDescription:
    parts = value.split()
    if len(parts) < 3:
        raise SDPError(f"line {lineno}: bad m= line, expected '<media> <port> <proto> <fmt> ...': {value[:60]!r}")
    port_text, slash, count_text = parts[1].partition("/")
    port = _number(port_text, "m= port", 65535, lineno)
    count = _number(count_text, "m= port count", 65535, lineno) if slash else None
    return MediaDescription(parts[0], port, parts[2], parts[3:], count, None, [], [], None, [], [], None)


def parse_sdp(data: bytes) -> SessionDescription:
    """Parse a session description (RFC 8866). Raises SDPError, and nothing else, on malformed input."""
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError as e:
        raise SDPError(f"SDP is not UTF-8 (bad byte at offset {e.start})") from None
    if "\x00" in text:
        raise SDPError(f"NUL character in SDP at offset {text.index(chr(0))}")
    if "\r" in text:
        text = text.replace("\r\n", "\n")
        if "\r" in text:
            raise SDPError(f"line {text.count(chr(10), 0, text.index(chr(13))) + 1}: stray CR inside a line")
    lines = text.split("\n")
    first = 0
    while first < len(lines) and not lines[first]:
        first += 1
    if first == len(lines) or lines[first][:2] != "v=":
        got = repr(lines[first][:40]) if first < len(lines) else "nothing"
        raise SDPError(f"missing v= line: the description must start with v=0, got {got}")
    if lines[first] != "v=0":
        raise SDPError(f"line {first + 1}: unsupported SDP version {lines[first][2:22]!r} (only v=0)")
    sess = SessionDescription(0, None, None, None, None, [], [], None, [], [], None, None, [], [], [])
    section: _Section = sess
    attributes = sess.attributes
    media: MediaDescription | None = None
    seen_o = seen_s = False
    lineno = first + 1
    for line in lines[first + 1:]:
        lineno += 1
        if line[1:2] != "=":
            if not line:
                continue
            raise SDPError(f"line {lineno}: expected '<type>=<value>', got {line[:40]!r}")
        t = line[0]
        value = line[2:]
        if t == "a":
            name, sep, val = value.partition(":")
            if not name:
                raise SDPError(f"line {lineno}: attribute without a name: {line[:40]!r}")
            attributes.append((name, val if sep else None))
            continue
        if not ("a" <= t <= "z" or "A" <= t <= "Z"):
            raise SDPError(f"line {lineno}: line type must be a letter, got {t!r}")
        if t == "m":
            media = _parse_m(value, lineno)
            media.session = sess
            sess.media.append(media)
            section = media
            attributes = media.attributes
        elif t == "c":
            conn = _connection(value, lineno)
            if media is not None:
                media.connections.append(conn)
            elif sess.connection is None:
                sess.connection = conn
            else:
                raise SDPError(f"line {lineno}: second session-level c= line")
        elif t == "b":
            bwtype, sep, bw = value.partition(":")
            if not sep or not bwtype:
                raise SDPError(f"line {lineno}: bad b= line, expected '<bwtype>:<bandwidth>': {value[:40]!r}")
            section.bandwidths.append((bwtype, _number(bw, "b= bandwidth", None, lineno)))
        elif media is not None:
            if t == "i" and media.information is None:
                media.information = value
            elif t == "k" and media.key is None:
                media.key = value
            elif t == "v":
                raise SDPError(f"line {lineno}: second v= line")
            else:
                media.other_lines.append((t, value))
        elif t == "o":
            if seen_o:
                raise SDPError(f"line {lineno}: second o= line")
            seen_o = True
            try:
                sess.origin = Origin.parse(value)
            except SDPError as e:
                raise SDPError(f"line {lineno}: {e}") from None
        elif t == "s":
            if seen_s:
                raise SDPError(f"line {lineno}: second s= line")
            seen_s = True
            sess.name = value
        elif t == "t":
            start, sep, stop = value.partition(" ")
            if not sep:
                raise SDPError(f"line {lineno}: bad t= line, expected '<start> <stop>': {value[:40]!r}")
            sess.timing.append(Timing(_number(start, "t= start", None, lineno),
                                      _number(stop.strip(), "t= stop", None, lineno)))
        elif t == "r":
            if not sess.timing:
                raise SDPError(f"line {lineno}: r= line before any t= line")
            last = sess.timing[-1]
            sess.timing[-1] = Timing(last.start, last.stop, (*last.repeats, value))
        elif t == "e":
            sess.emails.append(value)
        elif t == "p":
            sess.phones.append(value)
        elif t == "i" and sess.information is None:
            sess.information = value
        elif t == "u" and sess.uri is None:
            sess.uri = value
        elif t == "z" and sess.zone is None:
            sess.zone = value
        elif t == "k" and sess.key is None:
            sess.key = value
        elif t == "v":
            raise SDPError(f"line {lineno}: second v= line")
        else:
            sess.other_lines.append((t, value))
    return sess


def _connection(value: str, lineno: int) -> Connection:
    try:
        return Connection.parse(value)
    except SDPError as e:
        raise SDPError(f"line {lineno}: {e}") from None
