"""STUN messages (RFC 5389) and the ICE-lite responder (RFC 8445 section 2.5) of a relay endpoint.

A lite agent only answers connectivity checks: a Binding request that names our ufrag and is signed
with our ICE password proves that the sender saw our SDP, so the relay may latch to its address.
Attributes are encoded and decoded through one table; unknown ones are kept as raw bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from twisted.logger import Logger

__all__ = [
    "BINDING",
    "CLASS_ERROR",
    "CLASS_INDICATION",
    "CLASS_REQUEST",
    "CLASS_SUCCESS",
    "MAGIC_COOKIE",
    "IceLite",
    "StunError",
    "StunMessage",
    "check_fingerprint",
    "check_integrity",
    "is_stun",
    "new_ice_credentials",
    "parse",
    "serialize",
]

log = Logger()

MAGIC_COOKIE = 0x2112A442
FINGERPRINT_XOR = 0x5354554E
HEADER = struct.Struct("!HHI12s")
BINDING = 0x001

CLASS_REQUEST = 0
CLASS_INDICATION = 1
CLASS_SUCCESS = 2
CLASS_ERROR = 3

MAPPED_ADDRESS = 0x0001
USERNAME = 0x0006
MESSAGE_INTEGRITY = 0x0008
ERROR_CODE = 0x0009
UNKNOWN_ATTRIBUTES = 0x000A
REALM = 0x0014
NONCE = 0x0015
XOR_MAPPED_ADDRESS = 0x0020
PRIORITY = 0x0024
USE_CANDIDATE = 0x0025
SOFTWARE = 0x8022
FINGERPRINT = 0x8028
ICE_CONTROLLED = 0x8029
ICE_CONTROLLING = 0x802A

SOFTWARE_NAME = "minisip"


class StunError(ValueError):
    """Bytes that are not a well-formed STUN message."""


Address = tuple[str, int]


# --- attribute codecs ------------------------------------------------------------------------------


def _xor_bytes(transaction_id: bytes, length: int) -> bytes:
    return (struct.pack("!I", MAGIC_COOKIE) + transaction_id)[:length]


def _decode_address(value: bytes, transaction_id: bytes, xor: bool) -> Address:
    if len(value) < 4:
        raise StunError("address attribute too short")
    family, port = struct.unpack("!xBH", value[:4])
    raw = value[4:]
    if family == 1 and len(raw) == 4:
        pass
    elif family == 2 and len(raw) == 16:
        pass
    else:
        raise StunError("bad address family or length")
    if xor:
        port ^= MAGIC_COOKIE >> 16
        raw = bytes(a ^ b for a, b in zip(raw, _xor_bytes(transaction_id, len(raw))))
    return str(ipaddress.ip_address(raw)), port


def _encode_address(value: Address, transaction_id: bytes, xor: bool) -> bytes:
    host, port = value
    raw = ipaddress.ip_address(host).packed
    family = 1 if len(raw) == 4 else 2
    if xor:
        port ^= MAGIC_COOKIE >> 16
        raw = bytes(a ^ b for a, b in zip(raw, _xor_bytes(transaction_id, len(raw))))
    return struct.pack("!xBH", family, port) + raw


def _decode_error(value: bytes, _tid: bytes) -> tuple[int, str]:
    if len(value) < 4:
        raise StunError("ERROR-CODE too short")
    klass, number = value[2] & 0x07, value[3]
    return klass * 100 + number, value[4:].decode("utf-8", "replace")


def _encode_error(value: tuple[int, str], _tid: bytes) -> bytes:
    code, reason = value
    return struct.pack("!HBB", 0, code // 100, code % 100) + reason.encode("utf-8")


def _decode_text(value: bytes, _tid: bytes) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise StunError("text attribute is not UTF-8") from None


def _uint(size: int) -> tuple[Callable[[bytes, bytes], int], Callable[[int, bytes], bytes]]:
    fmt = {4: "!I", 8: "!Q"}[size]

    def decode(value: bytes, _tid: bytes) -> int:
        if len(value) != size:
            raise StunError(f"integer attribute of {len(value)} bytes, expected {size}")
        return int(struct.unpack(fmt, value)[0])

    def encode(value: int, _tid: bytes) -> bytes:
        return struct.pack(fmt, value)

    return decode, encode


def _decode_unknown(value: bytes, _tid: bytes) -> tuple[int, ...]:
    return tuple(struct.unpack(f"!{len(value) // 2}H", value[: len(value) // 2 * 2]))


def _encode_unknown(value: tuple[int, ...], _tid: bytes) -> bytes:
    return struct.pack(f"!{len(value)}H", *value)


def _decode_empty(value: bytes, _tid: bytes) -> bool:
    return True


def _raw(value: bytes, _tid: bytes) -> bytes:
    return bytes(value)


_u32 = _uint(4)
_u64 = _uint(8)


@dataclass(frozen=True, slots=True)
class _AttributeType:
    name: str
    decode: Callable[[bytes, bytes], Any]
    encode: Callable[[Any, bytes], bytes]


ATTRIBUTES: dict[int, _AttributeType] = {
    MAPPED_ADDRESS: _AttributeType(
        "MAPPED-ADDRESS", lambda v, t: _decode_address(v, t, False), lambda v, t: _encode_address(v, t, False)
    ),
    USERNAME: _AttributeType("USERNAME", _decode_text, lambda v, t: v.encode("utf-8")),
    MESSAGE_INTEGRITY: _AttributeType("MESSAGE-INTEGRITY", _raw, _raw),
    ERROR_CODE: _AttributeType("ERROR-CODE", _decode_error, _encode_error),
    UNKNOWN_ATTRIBUTES: _AttributeType("UNKNOWN-ATTRIBUTES", _decode_unknown, _encode_unknown),
    REALM: _AttributeType("REALM", _decode_text, lambda v, t: v.encode("utf-8")),
    NONCE: _AttributeType("NONCE", _decode_text, lambda v, t: v.encode("utf-8")),
    XOR_MAPPED_ADDRESS: _AttributeType(
        "XOR-MAPPED-ADDRESS", lambda v, t: _decode_address(v, t, True), lambda v, t: _encode_address(v, t, True)
    ),
    PRIORITY: _AttributeType("PRIORITY", *_u32),
    USE_CANDIDATE: _AttributeType("USE-CANDIDATE", _decode_empty, lambda v, t: b""),
    SOFTWARE: _AttributeType("SOFTWARE", _decode_text, lambda v, t: v.encode("utf-8")),
    FINGERPRINT: _AttributeType("FINGERPRINT", *_u32),
    ICE_CONTROLLED: _AttributeType("ICE-CONTROLLED", *_u64),
    ICE_CONTROLLING: _AttributeType("ICE-CONTROLLING", *_u64),
}


# --- messages --------------------------------------------------------------------------------------


def _message_type(method: int, klass: int) -> int:
    return (
        (method & 0x000F)
        | ((method & 0x0070) << 1)
        | ((method & 0x0F80) << 2)
        | ((klass & 1) << 4)
        | ((klass & 2) << 7)
    )


def _split_type(message_type: int) -> tuple[int, int]:
    method = (message_type & 0x000F) | ((message_type & 0x00E0) >> 1) | ((message_type & 0x3E00) >> 2)
    klass = ((message_type >> 4) & 1) | ((message_type >> 7) & 2)
    return method, klass


@dataclass(frozen=True, slots=True)
class StunMessage:
    """A STUN message: method, class, transaction id and its attributes in wire order.

    ``attributes`` holds (type, raw value) pairs; ``get`` decodes one through the attribute table.
    ``offsets`` (set by ``parse``) maps the type to where its header starts, for the integrity checks.
    """

    method: int
    klass: int
    transaction_id: bytes
    attributes: tuple[tuple[int, bytes], ...] = ()
    offsets: dict[int, int] = field(default_factory=dict, compare=False, repr=False)

    def raw(self, attribute: int) -> bytes | None:
        """The raw value of the first ``attribute``, or None."""
        for kind, value in self.attributes:
            if kind == attribute:
                return value
        return None

    def get(self, attribute: int) -> Any:
        """The decoded value of the first ``attribute`` (None when absent). Raises StunError."""
        value = self.raw(attribute)
        if value is None:
            return None
        codec = ATTRIBUTES.get(attribute)
        return value if codec is None else codec.decode(value, self.transaction_id)

    def with_attribute(self, attribute: int, value: Any) -> StunMessage:
        """A copy with ``attribute`` appended, ``value`` encoded through the table."""
        encoded = ATTRIBUTES[attribute].encode(value, self.transaction_id)
        return StunMessage(self.method, self.klass, self.transaction_id, self.attributes + ((attribute, encoded),))


def is_stun(data: bytes) -> bool:
    """A cheap test (RFC 7983 first byte, magic cookie, length) before parsing."""
    return (
        len(data) >= 20
        and data[0] < 4
        and data[4:8] == b"\x21\x12\xa4\x42"
        and int.from_bytes(data[2:4], "big") == len(data) - 20
        and len(data) % 4 == 0
    )


def parse(data: bytes) -> StunMessage:
    """Parse a STUN message; any padding byte is accepted. Raises StunError."""
    if not is_stun(data):
        raise StunError("not a STUN message")
    message_type, _length, _cookie, transaction_id = HEADER.unpack_from(data)
    method, klass = _split_type(message_type)
    attributes: list[tuple[int, bytes]] = []
    offsets: dict[int, int] = {}
    position = 20
    while position < len(data):
        if position + 4 > len(data):
            raise StunError("truncated attribute header")
        kind, size = struct.unpack_from("!HH", data, position)
        end = position + 4 + size
        if end > len(data):
            raise StunError("attribute runs past the end")
        attributes.append((kind, bytes(data[position + 4 : end])))
        offsets.setdefault(kind, position)
        position = end + (-size % 4)
    return StunMessage(method, klass, bytes(transaction_id), tuple(attributes), offsets)


def _with_length(data: bytes, length: int) -> bytes:
    return data[:2] + struct.pack("!H", length) + data[4:]


def serialize(
    message: StunMessage, integrity_key: bytes | None = None, fingerprint: bool = True, padding: bytes = b"\x00"
) -> bytes:
    """The wire form of ``message``; MESSAGE-INTEGRITY (HMAC-SHA1 with ``integrity_key``) and
    FINGERPRINT are computed and appended here, in that order (attributes of those types in
    ``message`` are left out). ``padding`` is the byte that fills attributes to 32 bits."""
    body = b""
    for kind, value in message.attributes:
        if kind in (MESSAGE_INTEGRITY, FINGERPRINT):
            continue
        body += struct.pack("!HH", kind, len(value)) + value + padding * (-len(value) % 4)
    header = HEADER.pack(_message_type(message.method, message.klass), len(body), MAGIC_COOKIE,
                         message.transaction_id)
    data = header + body
    if integrity_key is not None:
        data = _with_length(data, len(data) - 20 + 24)
        mac = hmac.new(integrity_key, data, hashlib.sha1).digest()
        data += struct.pack("!HH", MESSAGE_INTEGRITY, 20) + mac
    if fingerprint:
        data = _with_length(data, len(data) - 20 + 8)
        crc = (zlib.crc32(data) ^ FINGERPRINT_XOR) & 0xFFFFFFFF
        data += struct.pack("!HHI", FINGERPRINT, 4, crc)
    return data


def check_integrity(data: bytes, message: StunMessage, key: bytes) -> bool:
    """MESSAGE-INTEGRITY verifies with ``key`` (RFC 5389 section 15.4: the length field counts up to
    and including the attribute; anything after it, FINGERPRINT only, is not covered)."""
    offset = message.offsets.get(MESSAGE_INTEGRITY)
    received = message.raw(MESSAGE_INTEGRITY)
    if offset is None or received is None or len(received) != 20:
        return False
    covered = _with_length(data[:offset], offset - 20 + 24)
    return hmac.compare_digest(hmac.new(key, covered, hashlib.sha1).digest(), received)


def check_fingerprint(data: bytes, message: StunMessage) -> bool:
    """FINGERPRINT is the last attribute and its CRC-32 XOR 0x5354554e matches."""
    offset = message.offsets.get(FINGERPRINT)
    received = message.raw(FINGERPRINT)
    if offset is None or received is None or len(received) != 4 or offset + 8 != len(data):
        return False
    crc = (zlib.crc32(_with_length(data[:offset], offset - 20 + 8)) ^ FINGERPRINT_XOR) & 0xFFFFFFFF
    return crc == int.from_bytes(received, "big")


# --- the ICE-lite responder ------------------------------------------------------------------------

_ICE_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def new_ice_credentials() -> tuple[str, str]:
    """A fresh (ice-ufrag, ice-pwd) for our SDP: 8 and 24 ice-chars (RFC 8445 section 5.3 asks for
    at least 24 bits of randomness in the ufrag and 128 in the password)."""
    ufrag = "".join(secrets.choice(_ICE_CHARS) for _ in range(8))
    pwd = "".join(secrets.choice(_ICE_CHARS) for _ in range(24))
    return ufrag, pwd



class IceLite:
    """Answers ICE connectivity checks for one endpoint (we are always the controlled, lite side).

    A Binding request whose USERNAME is ``local_ufrag:remote_ufrag`` and whose MESSAGE-INTEGRITY
    (our password) and FINGERPRINT verify gets a success response with XOR-MAPPED-ADDRESS and proves
    the sender's address. RFC 5389 section 10.1.2: a request without USERNAME or MESSAGE-INTEGRITY
    gets 400, an unknown USERNAME or a bad MESSAGE-INTEGRITY gets 401 (neither carries
    MESSAGE-INTEGRITY); anything that is not a well-formed STUN request, or has a bad FINGERPRINT, is
    dropped silently. ``remote_ufrag`` None (the answer is not known yet) accepts any remote part.
    """

    def __init__(self, local_ufrag: str, local_pwd: str, remote_ufrag: str | None = None) -> None:
        self.local_ufrag = local_ufrag
        self.local_pwd = local_pwd
        self.remote_ufrag = remote_ufrag
        self._key = local_pwd.encode("utf-8")
        self.proven = False
        self.proven_addr: Address | None = None
        self.nominated = False
        self.requests = 0
        self.rejected = 0

    def _username_ok(self, username: object) -> bool:
        if not isinstance(username, str):
            return False
        local, sep, remote = username.partition(":")
        if not sep or local != self.local_ufrag:
            return False
        return self.remote_ufrag is None or remote == self.remote_ufrag

    def _error(self, request: StunMessage, code: int, reason: str, extra: tuple[int, ...] = ()) -> bytes:
        self.rejected += 1
        response = StunMessage(BINDING if request.method == BINDING else request.method, CLASS_ERROR,
                               request.transaction_id)
        response = response.with_attribute(ERROR_CODE, (code, reason))
        if extra:
            response = response.with_attribute(UNKNOWN_ATTRIBUTES, extra)
        return serialize(response.with_attribute(SOFTWARE, SOFTWARE_NAME))

    def handle(self, data: bytes, addr: Address) -> tuple[list[bytes], bool]:
        """(responses for ``addr``, proven). Never raises."""
        try:
            return self._handle(bytes(data), addr)
        except (StunError, ValueError, struct.error) as error:
            log.debug("STUN from {addr}: dropped ({error})", addr=addr, error=str(error))
            return [], False

    def _handle(self, data: bytes, addr: Address) -> tuple[list[bytes], bool]:
        message = parse(data)
        if message.raw(FINGERPRINT) is not None and not check_fingerprint(data, message):
            return [], False
        if message.klass != CLASS_REQUEST:
            return [], False  # indications (keepalives) and responses need no answer
        self.requests += 1
        if message.method != BINDING:
            return [self._error(message, 400, "Bad Request")], False
        if message.raw(MESSAGE_INTEGRITY) is None or message.raw(USERNAME) is None:
            return [self._error(message, 400, "Bad Request")], False
        try:
            username = message.get(USERNAME)
        except StunError:
            username = None
        if not self._username_ok(username) or not check_integrity(data, message, self._key):
            return [self._error(message, 401, "Unauthorized")], False
        kinds = [kind for kind, _ in message.attributes]
        covered = kinds[: kinds.index(MESSAGE_INTEGRITY)]  # what follows MESSAGE-INTEGRITY is ignored
        unknown = tuple(kind for kind in covered if kind < 0x8000 and kind not in ATTRIBUTES)
        if unknown:
            return [self._error(message, 420, "Unknown Attribute", unknown)], False
        if message.raw(USE_CANDIDATE) is not None:
            self.nominated = True
        if not self.proven:
            log.debug("ICE: {addr} proved it knows our credentials", addr=addr)
        self.proven = True
        self.proven_addr = addr
        response = StunMessage(BINDING, CLASS_SUCCESS, message.transaction_id)
        response = response.with_attribute(XOR_MAPPED_ADDRESS, addr).with_attribute(SOFTWARE, SOFTWARE_NAME)
        return [serialize(response, integrity_key=self._key)], True
