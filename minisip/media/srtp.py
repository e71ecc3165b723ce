"""SRTP for the relay: SDES keys (RFC 4568), the RFC 3711 key derivation, and pylibsrtp sessions.

``SdesTransform`` is the per-endpoint transform for a leg that put ``a=crypto`` in its SDP;
``SrtpContext`` holds the two pylibsrtp sessions (ours to protect, the peer's to unprotect) and the
failure counters, and is reused by the DTLS-SRTP transform once its handshake has produced keys.
The key derivation is done here too (pylibsrtp does its own inside libsrtp) so the RFC 3711 test
vectors can be checked and logs can name a key by a short non-secret id.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import pylibsrtp
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from twisted.logger import Logger
from zope.interface import implementer

from minisip.media.compat import (
    SRTP_DIRECT,
    SRTP_MAX_PACKET,
    SrtpFailure,
    classify_srtp_error,
    srtp_failure_of_status,
    srtp_handle,
)
from minisip.media.interfaces import IMediaTransform

if TYPE_CHECKING:
    from minisip.media.stun import IceLite

__all__ = [
    "AES_CM_128_HMAC_SHA1_32",
    "AES_CM_128_HMAC_SHA1_80",
    "KEY_SALT_LENGTH",
    "SUITES",
    "CryptoAttribute",
    "SdesError",
    "SdesTransform",
    "SessionKeys",
    "SrtpContext",
    "SrtpSuite",
    "aes_cm_keystream",
    "crypto_line",
    "delegate_crypto",
    "derive_session_key",
    "derive_session_keys",
    "key_id",
    "new_key_salt",
    "parse_crypto",
    "select_crypto",
]

log = Logger()

MASTER_KEY_LENGTH = 16
MASTER_SALT_LENGTH = 14
KEY_SALT_LENGTH = MASTER_KEY_LENGTH + MASTER_SALT_LENGTH
# libsrtp's replay window, in packets, of every context (its default; RFC 3711 3.3.2 asks for at least 64).
# The relay anchors audio only, at most 100 packets/s a stream, so 128 packets take 1.3-2.6 s of reordering.
# 1024 (WebRTC's figure, for video retransmissions) cost libsrtp a shift of 32 words per packet per
# context: about 2,100 more instructions per relayed SRTP packet (relay_cpu.py --instructions).
REPLAY_WINDOW = 128

# RFC 3711 section 4.3.2: the key derivation labels.
LABEL_RTP_ENCRYPTION = 0x00
LABEL_RTP_AUTH = 0x01
LABEL_RTP_SALT = 0x02
LABEL_RTCP_ENCRYPTION = 0x03
LABEL_RTCP_AUTH = 0x04
LABEL_RTCP_SALT = 0x05


@dataclass(frozen=True, slots=True)
class SrtpSuite:
    """One SRTP crypto suite by its SDES name, its DTLS-SRTP profile name and its libsrtp profile."""

    name: str
    dtls_profile: bytes
    libsrtp_profile: int
    tag_length: int


AES_CM_128_HMAC_SHA1_80 = SrtpSuite(
    "AES_CM_128_HMAC_SHA1_80", b"SRTP_AES128_CM_SHA1_80", pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80, 10
)
AES_CM_128_HMAC_SHA1_32 = SrtpSuite(
    "AES_CM_128_HMAC_SHA1_32", b"SRTP_AES128_CM_SHA1_32", pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_32, 4
)
# In order of preference.
SUITES: dict[str, SrtpSuite] = {suite.name: suite for suite in (AES_CM_128_HMAC_SHA1_80, AES_CM_128_HMAC_SHA1_32)}
DTLS_PROFILES: dict[bytes, SrtpSuite] = {suite.dtls_profile: suite for suite in SUITES.values()}


class SdesError(ValueError):
    """A remote ``a=crypto`` line we cannot use; the message says why in words fit for a log line."""


# --- SDES (RFC 4568) -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CryptoAttribute:
    """A parsed ``a=crypto`` value: tag, suite, master key||salt, and what else the line said."""

    tag: int
    suite: SrtpSuite
    key_salt: bytes
    lifetime: int | None = None
    session_params: tuple[str, ...] = ()

    def value(self) -> str:
        """The attribute value (what follows ``a=crypto:``), without the session parameters."""
        return crypto_line(self.tag, self.suite, self.key_salt)


def new_key_salt() -> bytes:
    """A fresh random 30-byte master key and salt for one direction of one SDES stream."""
    return os.urandom(KEY_SALT_LENGTH)


def _suite(suite: SrtpSuite | str) -> SrtpSuite:
    if isinstance(suite, SrtpSuite):
        return suite
    try:
        return SUITES[suite]
    except KeyError:
        raise SdesError(f"unsupported crypto suite {suite!r}") from None


def crypto_line(tag: int, suite: SrtpSuite | str, key_salt: bytes) -> str:
    """The ``a=crypto`` value for our key: ``1 AES_CM_128_HMAC_SHA1_80 inline:<base64 key||salt>``."""
    if len(key_salt) != KEY_SALT_LENGTH:
        raise ValueError(f"an SRTP master key and salt is {KEY_SALT_LENGTH} bytes, not {len(key_salt)}")
    inline = base64.b64encode(key_salt).decode("ascii")
    return f"{tag} {_suite(suite).name} inline:{inline}"


_TAG_RE = re.compile(r"^[0-9]{1,9}$")
_LIFETIME_RE = re.compile(r"^(?:2\^([0-9]{1,2})|([0-9]{1,20}))$")
_MKI_RE = re.compile(r"^[0-9]{1,20}:[0-9]{1,3}$")
# Session parameters that change the crypto itself: we would protect differently from the peer.
_REFUSED_PARAMS = ("UNENCRYPTED_SRTP", "UNENCRYPTED_SRTCP", "UNAUTHENTICATED_SRTP", "FEC_KEY")
_HARMLESS_PARAMS = ("WSH", "FEC_ORDER")


def _parse_lifetime(text: str) -> int:
    match = _LIFETIME_RE.match(text)
    if match is None:
        raise SdesError(f"bad key lifetime {text!r}")
    if match.group(1) is not None:
        return 2 ** int(match.group(1))
    return int(match.group(2))


def _check_session_param(param: str) -> None:
    name, _, value = param.partition("=")
    upper = name.upper()
    if upper in _REFUSED_PARAMS:
        raise SdesError(f"session parameter {name} is not supported")
    if upper == "KDR":
        if value.strip() not in ("0", ""):
            raise SdesError(f"key derivation rate {param} is not supported (only KDR=0)")
        return
    if upper in _HARMLESS_PARAMS or name.startswith("-"):
        return
    raise SdesError(f"unknown session parameter {name!r}")


def parse_crypto(value: str) -> CryptoAttribute:
    """Parse a remote ``a=crypto`` value (with or without the ``a=crypto:`` prefix).

    Accepts a key lifetime (which libsrtp does not enforce; a peer that rekeys sends a new offer) and
    refuses an MKI, several keys, unknown suites and session parameters that change the crypto, with a
    message that says which.
    """
    text = value.strip()
    if text.lower().startswith("a=crypto:"):
        text = text[len("a=crypto:") :]
    fields = text.split()
    if len(fields) < 3:
        raise SdesError("a=crypto needs a tag, a suite and key parameters")
    tag_text, suite_name, key_params, *session_params = fields
    if not _TAG_RE.match(tag_text):
        raise SdesError(f"bad crypto tag {tag_text!r}")
    suite = _suite(suite_name)
    if ";" in key_params:
        raise SdesError("several keys in one a=crypto line need an MKI, which is not supported")
    if not key_params.startswith("inline:"):
        raise SdesError(f"key method of {key_params.split(':', 1)[0]!r} is not supported (only inline)")
    inline, *extras = key_params[len("inline:") :].split("|")
    lifetime: int | None = None
    for extra in extras:
        if _MKI_RE.match(extra):
            raise SdesError(f"MKI {extra} is not supported (use a line without MKI)")
        if lifetime is not None:
            raise SdesError(f"bad key parameter {extra!r}")
        lifetime = _parse_lifetime(extra)
    try:
        key_salt = base64.b64decode(inline + "=" * (-len(inline) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise SdesError("the inline key is not base64") from None
    if len(key_salt) != KEY_SALT_LENGTH:
        raise SdesError(f"the inline key is {len(key_salt)} bytes, {suite.name} needs {KEY_SALT_LENGTH}")
    for param in session_params:
        _check_session_param(param)
    return CryptoAttribute(int(tag_text), suite, key_salt, lifetime, tuple(session_params))


def select_crypto(values: Iterable[str]) -> tuple[CryptoAttribute | None, list[str]]:
    """The first usable ``a=crypto`` of a remote offer (its order is its preference), and why the
    others before it were refused (for the log when none is usable)."""
    reasons: list[str] = []
    for value in values:
        try:
            return parse_crypto(value), reasons
        except SdesError as error:
            reasons.append(str(error))
    return None, reasons


# --- RFC 3711 key derivation and AES-CM ------------------------------------------------------------


def _aes_ctr(key: bytes, counter_block: bytes, length: int) -> bytes:
    encryptor = Cipher(algorithms.AES(key), modes.CTR(counter_block)).encryptor()
    return encryptor.update(bytes(length)) + encryptor.finalize()


def derive_session_key(
    master_key: bytes, master_salt: bytes, label: int, length: int, index: int = 0, kdr: int = 0
) -> bytes:
    """RFC 3711 section 4.3: ``length`` bytes of the AES-CM PRF keyed with the master key.

    x = key_id XOR master_salt with key_id = label || (index DIV kdr) (48 bits), and the output is the
    AES counter-mode keystream starting at x * 2^16.
    """
    if len(master_key) != MASTER_KEY_LENGTH or len(master_salt) != MASTER_SALT_LENGTH:
        raise ValueError("the master key is 16 bytes and the master salt 14")
    r = index // kdr if kdr else 0
    key_id = (label << 48) | (r & 0xFFFFFFFFFFFF)
    x = int.from_bytes(master_salt, "big") ^ key_id
    return _aes_ctr(master_key, x.to_bytes(14, "big") + b"\x00\x00", length)


@dataclass(frozen=True, slots=True)
class SessionKeys:
    """The session keys libsrtp derives from one master key and salt (kdr 0)."""

    cipher_key: bytes
    auth_key: bytes
    salt: bytes


def derive_session_keys(key_salt: bytes, rtcp: bool = False) -> SessionKeys:
    """The SRTP (or SRTCP) session cipher key (16), HMAC-SHA1 key (20) and salt (14) of a 30-byte
    master key||salt."""
    key, salt = key_salt[:MASTER_KEY_LENGTH], key_salt[MASTER_KEY_LENGTH:KEY_SALT_LENGTH]
    base = LABEL_RTCP_ENCRYPTION if rtcp else LABEL_RTP_ENCRYPTION
    return SessionKeys(
        cipher_key=derive_session_key(key, salt, base, 16),
        auth_key=derive_session_key(key, salt, base + 1, 20),
        salt=derive_session_key(key, salt, base + 2, 14),
    )


def aes_cm_keystream(session_key: bytes, session_salt: bytes, ssrc: int, index: int, length: int) -> bytes:
    """RFC 3711 section 4.1.1: the keystream of packet ``index`` of ``ssrc``.

    IV = (salt * 2^16) XOR (SSRC * 2^64) XOR (index * 2^16).
    """
    iv = (int.from_bytes(session_salt, "big") << 16) ^ (ssrc << 64) ^ (index << 16)
    return _aes_ctr(session_key, iv.to_bytes(16, "big"), length)


def key_id(key_salt: bytes) -> str:
    """A short non-secret name of a master key for logs and statistics: both ends of a stream that
    compute the same id use the same key (a hash of the derived RTP authentication key)."""
    auth_key = derive_session_keys(key_salt).auth_key
    return hashlib.sha256(auth_key).hexdigest()[:8]


# --- pylibsrtp sessions ----------------------------------------------------------------------------


# The relay's direct calls into libsrtp (see ``compat.SRTP_DIRECT``) work in place in one buffer: the
# reactor thread handles one packet at a time, and each call copies its result out before returning.
_BUFFER_SIZE = 1500
if SRTP_DIRECT is not None:
    _ffi, _lib = SRTP_DIRECT
    _BUFFER = _ffi.new("char[]", _BUFFER_SIZE)
    _LENGTH = _ffi.new("int *")
    _memmove = _ffi.memmove
    _unpack = _ffi.unpack
    _SRTP_PROTECT = _lib.srtp_protect
    _SRTP_PROTECT_RTCP = _lib.srtp_protect_rtcp
    _SRTP_UNPROTECT = _lib.srtp_unprotect
    _SRTP_UNPROTECT_RTCP = _lib.srtp_unprotect_rtcp


def _run_direct(function: Callable[[object, object, object], int], handle: object, data: bytes,
                limit: int) -> bytes | int:
    """libsrtp's ``function`` on a copy of ``data`` in the module's buffer: the packet it makes, or its
    status (-1: longer than ``limit``)."""
    size = len(data)
    if size > limit:
        return -1
    _memmove(_BUFFER, data, size)
    _LENGTH[0] = size
    status = function(handle, _BUFFER, _LENGTH)
    return status or _unpack(_BUFFER, _LENGTH[0])  # type: ignore[no-any-return]


class SrtpContext:
    """Protect with our key, unprotect with the peer's, and count what fails.

    Outbound allows repeated sequence numbers (the relay forwards what the other leg sends, duplicates
    included); inbound keeps a replay window of ``REPLAY_WINDOW`` packets. Every method returns None
    instead of raising.
    With ``direct`` (the default where pylibsrtp allows it) libsrtp is called through pylibsrtp's binding
    with a buffer of this module's, which halves the cost of a packet; else through the sessions' methods.
    """

    def __init__(self, tx_key_salt: bytes, rx_key_salt: bytes, suite: SrtpSuite | str,
                 direct: bool | None = None) -> None:
        self.suite = _suite(suite)
        for name, material in (("local", tx_key_salt), ("remote", rx_key_salt)):
            if len(material) != KEY_SALT_LENGTH:
                raise ValueError(f"the {name} SRTP key and salt is {len(material)} bytes, not {KEY_SALT_LENGTH}")
        tx_policy = pylibsrtp.Policy(
            key=bytes(tx_key_salt),
            ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND,
            srtp_profile=self.suite.libsrtp_profile,
        )
        tx_policy.allow_repeat_tx = True
        tx_policy.window_size = REPLAY_WINDOW
        rx_policy = pylibsrtp.Policy(
            key=bytes(rx_key_salt),
            ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND,
            srtp_profile=self.suite.libsrtp_profile,
        )
        rx_policy.window_size = REPLAY_WINDOW
        self._tx: pylibsrtp.Session | None = pylibsrtp.Session(tx_policy)
        self._rx: pylibsrtp.Session | None = pylibsrtp.Session(rx_policy)
        # The sessions' srtp_t for direct calls (None: use the sessions' methods). The sessions own them.
        self.direct = SRTP_DIRECT is not None and direct is not False
        self._tx_handle = srtp_handle(self._tx) if self.direct else None
        self._rx_handle = srtp_handle(self._rx) if self.direct else None
        self.local_key_id = key_id(tx_key_salt)
        self.remote_key_id = key_id(rx_key_salt)
        self.auth_failures = 0
        self.replay_failures = 0
        self.other_failures = 0
        self.protect_failures = 0

    def _failed(self, kind: str) -> None:
        if kind == SrtpFailure.AUTH:
            self.auth_failures += 1
            if self.auth_failures == 1:
                log.info("SRTP: a packet failed authentication (remote key {key}); dropped and counted",
                         key=self.remote_key_id)
        elif kind == SrtpFailure.REPLAY:
            self.replay_failures += 1
        else:
            self.other_failures += 1

    def _unprotect(self, method: Callable[[bytes], bytes], data: bytes) -> bytes | None:
        try:
            return method(bytes(data))
        except (pylibsrtp.Error, ValueError, TypeError, IndexError) as error:
            self._failed(classify_srtp_error(error) if isinstance(error, pylibsrtp.Error) else SrtpFailure.OTHER)
            return None

    def _protect(self, method: Callable[[bytes], bytes], data: bytes) -> bytes | None:
        if len(data) > SRTP_MAX_PACKET:
            self.protect_failures += 1
            return None
        try:
            return method(bytes(data))
        except (pylibsrtp.Error, ValueError, TypeError, IndexError):
            self.protect_failures += 1
            return None

    def _unprotect_direct(self, function: Callable[[object, object, object], int], handle: object,
                          data: bytes) -> bytes | None:
        out = _run_direct(function, handle, data, _BUFFER_SIZE)
        if out.__class__ is int:
            self._failed(srtp_failure_of_status(out) if out > 0 else SrtpFailure.OTHER)  # type: ignore[arg-type]
            return None
        return out  # type: ignore[return-value]

    def _protect_direct(self, function: Callable[[object, object, object], int], handle: object,
                        data: bytes) -> bytes | None:
        out = _run_direct(function, handle, data, SRTP_MAX_PACKET)
        if out.__class__ is int:
            self.protect_failures += 1
            return None
        return out  # type: ignore[return-value]

    def recrypt_rtp(self, data: bytes, to: SrtpContext) -> bytes | bool | None:
        """Unprotect SRTP ``data`` with this context and protect it for ``to``, in place in one buffer: the
        relay between two SRTP legs, with one copy in and one out. None when the packet fails here
        (counted here), False when ``to`` cannot protect it (counted there); both contexts direct."""
        handle, out = self._rx_handle, to._tx_handle
        size = len(data)
        if handle is None or size > _BUFFER_SIZE:
            self.other_failures += handle is not None
            return None
        _memmove(_BUFFER, data, size)
        _LENGTH[0] = size
        status = _SRTP_UNPROTECT(handle, _BUFFER, _LENGTH)
        if status:
            self._failed(srtp_failure_of_status(status))
            return None
        if out is None or _LENGTH[0] > SRTP_MAX_PACKET or _SRTP_PROTECT(out, _BUFFER, _LENGTH):
            to.protect_failures += out is not None
            return False
        return _unpack(_BUFFER, _LENGTH[0])  # type: ignore[no-any-return]

    def protect_rtp(self, data: bytes) -> bytes | None:
        """SRTP of plain RTP ``data``, or None (closed, malformed or too long)."""
        if self._tx_handle is not None:
            return self._protect_direct(_SRTP_PROTECT, self._tx_handle, data)
        return None if self._tx is None else self._protect(self._tx.protect, data)

    def protect_rtcp(self, data: bytes) -> bytes | None:
        """SRTCP of plain RTCP ``data``, or None."""
        if self._tx_handle is not None:
            return self._protect_direct(_SRTP_PROTECT_RTCP, self._tx_handle, data)
        return None if self._tx is None else self._protect(self._tx.protect_rtcp, data)

    def unprotect_rtp(self, data: bytes) -> bytes | None:
        """Plain RTP of SRTP ``data``, or None (counted as auth, replay or other failure)."""
        if self._rx_handle is not None:
            return self._unprotect_direct(_SRTP_UNPROTECT, self._rx_handle, data)
        return None if self._rx is None else self._unprotect(self._rx.unprotect, data)

    def unprotect_rtcp(self, data: bytes) -> bytes | None:
        """Plain RTCP of SRTCP ``data``, or None."""
        if self._rx_handle is not None:
            return self._unprotect_direct(_SRTP_UNPROTECT_RTCP, self._rx_handle, data)
        return None if self._rx is None else self._unprotect(self._rx.unprotect_rtcp, data)

    def close(self) -> None:
        """Drop both sessions (libsrtp frees them); later calls return None, counters stay."""
        self._tx_handle = self._rx_handle = None  # before the sessions that own them
        self._tx = None
        self._rx = None

    @property
    def closed(self) -> bool:
        return self._tx is None


def delegate_crypto(transform: object, context: SrtpContext) -> None:
    """Point ``transform``'s protect/unprotect methods straight at ``context``'s, once its keys are in place
    (they never change afterwards): one Python call less per packet on the relay's hot path. A closed
    context answers None, as the transform's own methods would."""
    for name in ("protect_rtp", "protect_rtcp", "unprotect_rtp", "unprotect_rtcp"):
        setattr(transform, name, getattr(context, name))


@implementer(IMediaTransform)
class SdesTransform:
    """The transform of a leg that keys SRTP with SDES: keys are known from the SDP, so it is ready at
    once and ``control`` only answers ICE-lite STUN when an ``IceLite`` is given."""

    secure = True

    def __init__(
        self,
        local_key_salt: bytes,
        remote_key_salt: bytes,
        suite: SrtpSuite | str = AES_CM_128_HMAC_SHA1_80,
        ice: IceLite | None = None,
    ) -> None:
        self.suite = _suite(suite)
        self._context = SrtpContext(local_key_salt, remote_key_salt, self.suite)
        delegate_crypto(self, self._context)
        self._ice = ice
        self._send: Callable[[bytes], None] | None = None

    @property
    def auth_failures(self) -> int:
        return self._context.auth_failures

    @property
    def replay_failures(self) -> int:
        return self._context.replay_failures

    @property
    def context(self) -> SrtpContext:
        return self._context

    @property
    def srtp(self) -> SrtpContext:
        """The keys' context, as ``DtlsTransform.srtp`` (the relay recrypts through it directly)."""
        return self._context

    def attach(self, send: Callable[[bytes], None]) -> None:
        self._send = send

    def start(self) -> None:
        """Nothing to do: SDES keys are in place from the SDP."""

    def ready(self) -> bool:
        """True until ``close`` (the keys came with the SDP)."""
        return not self._context.closed

    def control(self, data: bytes, addr: tuple[str, int]) -> tuple[list[bytes], bool]:
        if self._ice is not None and data[:1] and data[0] < 4:
            return self._ice.handle(data, addr)
        return [], False

    def unprotect_rtp(self, data: bytes) -> bytes | None:
        return self._context.unprotect_rtp(data)

    def unprotect_rtcp(self, data: bytes) -> bytes | None:
        return self._context.unprotect_rtcp(data)

    def protect_rtp(self, data: bytes) -> bytes | None:
        return self._context.protect_rtp(data)

    def protect_rtcp(self, data: bytes) -> bytes | None:
        return self._context.protect_rtcp(data)

    def close(self) -> None:
        self._context.close()
