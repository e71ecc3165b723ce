"""The one seam for the differences between Debian 12's crypto stack and current PyPI releases.

Debian 12 ships pyOpenSSL 23.0 and pylibsrtp 0.8; PyPI has pyOpenSSL 25/26 and pylibsrtp 1.x. pyOpenSSL
23.0 has no ``Connection.get_selected_srtp_profile`` and no DTLS timeout methods, and wants
``crypto.X509``/``crypto.PKey`` objects where 25+ takes (and prefers) cryptography objects. The
functions below try the current API first and fall back to the OpenSSL binding both versions share.
"""

from __future__ import annotations

from typing import Any

import pylibsrtp
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from OpenSSL import SSL, crypto
from OpenSSL._util import ffi as _ssl_ffi  # the cffi binding pyOpenSSL itself uses
from OpenSSL._util import lib as _ssl_lib

try:  # pylibsrtp's own cffi binding, for the relay's direct libsrtp calls (SRTP_DIRECT)
    from pylibsrtp import _binding as _srtp_binding
except ImportError:  # a pylibsrtp laid out differently: its Session methods are used
    _srtp_binding = None  # type: ignore[assignment]

__all__ = [
    "DTLS_AVAILABLE",
    "PYLIBSRTP_VERSION",
    "PYOPENSSL_VERSION",
    "SRTP_DIRECT",
    "SRTP_MAX_PACKET",
    "SrtpFailure",
    "classify_srtp_error",
    "handle_dtls_timeout",
    "peer_certificate",
    "selected_srtp_profile",
    "srtp_failure_of_status",
    "srtp_handle",
    "use_certificate",
]


def _version(text: str) -> tuple[int, ...]:
    """'23.0.0' -> (23, 0, 0); anything that is not a number ends the tuple."""
    parts: list[int] = []
    for piece in text.split("."):
        if not piece.isdigit():
            break
        parts.append(int(piece))
    return tuple(parts)


PYOPENSSL_VERSION = _version(getattr(__import__("OpenSSL"), "__version__", "0"))
# pyOpenSSL before 22 (Ubuntu 22.04's 21.0) has no DTLS: DTLS-SRTP is then neither offered nor accepted.
DTLS_AVAILABLE = hasattr(SSL, "DTLS_METHOD")
PYLIBSRTP_VERSION = _version(getattr(pylibsrtp, "__version__", "0"))

# pylibsrtp copies every packet into a 1500-byte buffer and reserves room for the longest trailer
# (144 bytes in 0.8 for RTP and RTCP, 144/148 in 1.x); a longer packet raises ValueError.
SRTP_MAX_PACKET = 1500 - 148


def _binding() -> tuple[Any, Any]:
    """The cffi ``lib`` and ``ffi`` pyOpenSSL itself uses (present in 23.0 and 26.x alike)."""
    return _ssl_lib, _ssl_ffi


def use_certificate(context: SSL.Context, certificate: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
    """Load a cryptography certificate and key into ``context``.

    pyOpenSSL >= 24.3 takes cryptography objects (and warns about ``crypto.X509``); 23.0 refuses them
    with TypeError and needs ``X509.from_cryptography``/``PKey.from_cryptography_key``.
    """
    try:
        context.use_certificate(certificate)  # type: ignore[arg-type]
    except TypeError:
        context.use_certificate(crypto.X509.from_cryptography(certificate))
    try:
        context.use_privatekey(key)  # type: ignore[arg-type]
    except TypeError:
        context.use_privatekey(crypto.PKey.from_cryptography_key(key))


def selected_srtp_profile(connection: SSL.Connection) -> bytes:
    """The SRTP protection profile the DTLS handshake chose (``b"SRTP_AES128_CM_SHA1_80"``), or b""."""
    method = getattr(connection, "get_selected_srtp_profile", None)
    if method is not None:
        return bytes(method())
    lib, ffi = _binding()
    profile = lib.SSL_get_selected_srtp_profile(connection._ssl)
    if profile == ffi.NULL:
        return b""
    return bytes(ffi.string(profile.name))


def handle_dtls_timeout(connection: SSL.Connection) -> bool:
    """Let OpenSSL retransmit its last flight if its own (wall-clock) DTLS timer has expired.

    True when OpenSSL retransmitted (the datagrams are then waiting in the memory BIO). OpenSSL's timer
    runs on real time, so on a test Clock this is normally False and the caller resends the flight it
    kept. Errors are reported as False: a failing retransmission must not end the call.
    """
    method = getattr(connection, "DTLSv1_handle_timeout", None)
    try:
        if method is not None:
            return bool(method())
        lib, _ffi = _binding()
        return bool(lib.DTLSv1_handle_timeout(connection._ssl) > 0)
    except (SSL.Error, AttributeError):
        return False


def peer_certificate(connection: SSL.Connection) -> x509.Certificate | None:
    """The peer's certificate as a cryptography object (26.x: ``as_cryptography``; 23.0: convert)."""
    try:
        certificate = connection.get_peer_certificate(as_cryptography=True)  # type: ignore[call-overload]
    except TypeError:
        legacy = connection.get_peer_certificate()
        return None if legacy is None else legacy.to_cryptography()
    return certificate  # type: ignore[no-any-return]


class SrtpFailure:
    """Why pylibsrtp refused a packet: the names ``classify_srtp_error`` returns."""

    AUTH = "auth"
    REPLAY = "replay"
    OTHER = "other"


def classify_srtp_error(error: BaseException) -> str:
    """Map a pylibsrtp error to auth, replay or other by its message.

    pylibsrtp raises one ``Error`` class for every libsrtp status and puts libsrtp's text in it; the
    texts are the same in 0.8 and 1.x ("authentication failure", "replay check failed (bad index)",
    "replay check failed (index too old)"; libsrtp 2.6+ may also say "packet index is too old").
    """
    text = str(error).lower()
    if "authentication" in text:
        return SrtpFailure.AUTH
    if "replay" in text or "index is too old" in text:
        return SrtpFailure.REPLAY
    return SrtpFailure.OTHER


def srtp_failure_of_status(status: int) -> str:
    """auth, replay or other for a libsrtp status code, by pylibsrtp's own text for it (the numbers are
    libsrtp's ABI; the texts are what ``classify_srtp_error`` reads)."""
    try:
        return _FAILURE_BY_STATUS[status]
    except (IndexError, TypeError):
        return SrtpFailure.OTHER


_FAILURE_BY_STATUS = [classify_srtp_error(Exception(text)) for text in getattr(pylibsrtp, "ERRORS", [])]


def _direct_srtp() -> tuple[Any, Any] | None:
    """pylibsrtp's own cffi ``ffi`` and ``lib``, when this pylibsrtp lets the relay call libsrtp directly.

    ``Session.protect`` and friends cost as much Python as libsrtp's crypto costs C: a type check, a new
    ``int *`` per call, a copy into the session's buffer and a slice out of it. The relay's hot path calls
    ``srtp_protect``/``srtp_unprotect`` through the same binding with one buffer of its own instead. 0.8
    (Debian 12) and 1.x (PyPI) both keep the binding in ``pylibsrtp._binding`` and the ``srtp_t`` in
    ``Session._srtp``; if a release does not, the sessions' own methods are used (``SRTP_DIRECT`` None).
    """
    if _srtp_binding is None:
        return None
    ffi, lib = _srtp_binding.ffi, _srtp_binding.lib
    names = ("srtp_protect", "srtp_unprotect", "srtp_protect_rtcp", "srtp_unprotect_rtcp")
    if not all(hasattr(lib, name) for name in names) or not getattr(pylibsrtp, "ERRORS", None):
        return None
    try:
        srtp_handle(pylibsrtp.Session())
    except (AttributeError, TypeError, IndexError):
        return None
    return ffi, lib


def srtp_handle(session: pylibsrtp.Session) -> Any:
    """The libsrtp ``srtp_t`` of a pylibsrtp session (valid while the session object lives)."""
    return session._srtp[0]  # type: ignore[attr-defined]


SRTP_DIRECT = _direct_srtp()
