"""DTLS-SRTP (RFC 5763/5764) for a relay endpoint: pyOpenSSL over memory BIOs, keys into pylibsrtp.

The handshake is driven by datagrams handed to ``control`` and by retransmission timers on the clock
given to the transform (pyOpenSSL 23.0 has no DTLS timeout API, and OpenSSL's own timer runs on wall
time, so the transform keeps its last flight and resends it itself with backoff 1, 2, 4... s, giving
up after about 30 s). The peer certificate must match the ``a=fingerprint`` of its SDP; the SRTP keys
come from the exporter (RFC 5764 section 4.2). Once keys are in place nothing that arrives (a stray
ClientHello, a retransmission, garbage) changes them.
"""

from __future__ import annotations

import datetime
import hmac
import os
from collections.abc import Callable, Sequence

import OpenSSL
import pylibsrtp
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from OpenSSL import SSL
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from minisip.media import compat
from minisip.media.interfaces import IMediaTransform
from minisip.media.srtp import (
    AES_CM_128_HMAC_SHA1_32,
    AES_CM_128_HMAC_SHA1_80,
    DTLS_PROFILES,
    SrtpContext,
    SrtpSuite,
    delegate_crypto,
)
from minisip.media.stun import IceLite

__all__ = [
    "DtlsCertificate",
    "DtlsTransform",
    "SetupError",
    "choose_setup",
    "fingerprint",
    "local_certificate",
    "parse_fingerprint",
]

log = Logger()

EXPORTER_LABEL = b"EXTRACTOR-dtls_srtp"
KEY_LENGTH = 16
SALT_LENGTH = 14
DEFAULT_MTU = 1200
FIRST_RETRANSMIT = 1.0
MAX_RETRANSMIT_INTERVAL = 60.0
GIVE_UP_AFTER = 30.0
MAX_FINAL_FLIGHT_RESENDS = 5
CERTIFICATE_VALIDITY = datetime.timedelta(days=30)
CERTIFICATE_RENEW_BEFORE = datetime.timedelta(days=7)
# Forward-secret suites only, ECDSA or RSA certificates (phones often have RSA ones).
_CIPHERS = b"ECDHE+AESGCM:ECDHE+CHACHA20:ECDHE+AES:!aNULL:!eNULL:!MD5"

# RFC 4572 section 5 (hash function names of a=fingerprint) -> cryptography hashes.
HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {
    "sha-1": hashes.SHA1,
    "sha-224": hashes.SHA224,
    "sha-256": hashes.SHA256,
    "sha-384": hashes.SHA384,
    "sha-512": hashes.SHA512,
}


# --- fingerprints and the per-process certificate --------------------------------------------------


def fingerprint(certificate: x509.Certificate, algorithm: str = "sha-256") -> str:
    """The ``a=fingerprint`` value form of a certificate digest: upper-case hex pairs joined by ':'."""
    digest = certificate.fingerprint(HASHES[algorithm.lower()]())
    return ":".join(f"{byte:02X}" for byte in digest)


def parse_fingerprint(value: str) -> tuple[str, str]:
    """``"sha-256 AB:CD:..."`` (an ``a=fingerprint`` value, prefix optional) -> ("sha-256", "AB:CD:...").

    Raises ValueError for a hash we do not know or a value that is not hex pairs.
    """
    text = value.strip()
    if text.lower().startswith("a=fingerprint:"):
        text = text[len("a=fingerprint:") :]
    parts = text.split()
    if len(parts) != 2:
        raise ValueError("a=fingerprint needs a hash name and a value")
    algorithm, digest = parts[0].lower(), parts[1].upper()
    if algorithm not in HASHES:
        raise ValueError(f"unsupported fingerprint hash {parts[0]!r}")
    pairs = digest.split(":")
    if not all(len(pair) == 2 and all(c in "0123456789ABCDEF" for c in pair) for pair in pairs):
        raise ValueError("the fingerprint is not hex pairs separated by ':'")
    if len(pairs) != HASHES[algorithm]().digest_size:
        raise ValueError(f"a {algorithm} fingerprint has {HASHES[algorithm]().digest_size} bytes, not {len(pairs)}")
    return algorithm, digest


class DtlsCertificate:
    """A self-signed ECDSA P-256 certificate and key, its SHA-256 fingerprint, and the DTLS contexts
    made from it (one per set of SRTP profiles, shared by every connection)."""

    def __init__(self, key: ec.EllipticCurvePrivateKey, certificate: x509.Certificate) -> None:
        self.key = key
        self.certificate = certificate
        self.fingerprint = fingerprint(certificate, "sha-256")
        self._contexts: dict[tuple[bytes, ...], SSL.Context] = {}

    @classmethod
    def generate(cls, now: datetime.datetime | None = None) -> DtlsCertificate:
        """A fresh pair valid for 30 days from ``now`` (one day of slack before it for clock skew)."""
        now = now or datetime.datetime.now(datetime.timezone.utc)
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "minisip-" + os.urandom(8).hex())])
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + CERTIFICATE_VALIDITY)
            .sign(key, hashes.SHA256())
        )
        return cls(key, certificate)

    @property
    def not_valid_after(self) -> datetime.datetime:
        aware = getattr(self.certificate, "not_valid_after_utc", None)
        if aware is not None:
            return aware  # type: ignore[no-any-return]
        return self.certificate.not_valid_after.replace(tzinfo=datetime.timezone.utc)

    def context(self, profiles: Sequence[bytes]) -> SSL.Context:
        """The DTLS context offering ``profiles`` (made once): any certificate is accepted by OpenSSL,
        the transform compares the fingerprint itself; no tickets, no session cache. OpenSSL does not
        ask the memory BIO for an MTU, so every connection must be given one (set_ciphertext_mtu)."""
        key = tuple(profiles)
        context = self._contexts.get(key)
        if context is None:
            if not compat.DTLS_AVAILABLE:
                raise RuntimeError(f"pyOpenSSL {OpenSSL.__version__} has no DTLS (22.0 or later is needed)")
            context = SSL.Context(SSL.DTLS_METHOD)
            context.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, lambda *_args: True)
            compat.use_certificate(context, self.certificate, self.key)
            context.set_cipher_list(_CIPHERS)
            # No renegotiation: keys are exported once and never change during a call.
            context.set_options(SSL.OP_NO_TICKET | SSL.OP_NO_QUERY_MTU | SSL.OP_NO_RENEGOTIATION)
            context.set_session_cache_mode(SSL.SESS_CACHE_OFF)
            context.set_tlsext_use_srtp(b":".join(key))
            self._contexts[key] = context
        return context


_certificate: DtlsCertificate | None = None


def local_certificate(now: datetime.datetime | None = None) -> DtlsCertificate:
    """The process's DTLS certificate: made on first use, replaced a week before it expires (a
    transform keeps the certificate it was made with, so a call in progress is not affected)."""
    global _certificate
    now = now or datetime.datetime.now(datetime.timezone.utc)
    if _certificate is None or _certificate.not_valid_after - now < CERTIFICATE_RENEW_BEFORE:
        _certificate = DtlsCertificate.generate(now)
    return _certificate


# --- a=setup (RFC 4145, RFC 5763 section 5) --------------------------------------------------------


class SetupError(ValueError):
    """An ``a=setup`` we cannot work with (holdconn, or actpass in an answer)."""


def choose_setup(remote_setup: str | None, we_are_answerer: bool) -> tuple[str, str]:
    """Our ``a=setup`` value and DTLS role ('client' or 'server') from the peer's ``a=setup``.

    As answerer, ``remote_setup`` is the offer's: actpass -> we are active (the client, RFC 5763
    recommends it so the handshake runs in parallel with the answer), active -> passive (server),
    passive -> active (client). As offerer we sent actpass and ``remote_setup`` is the answer's:
    active -> we are the server, passive -> the client. A missing attribute takes RFC 4145's
    default (active in an offer, passive in an answer). Raises SetupError for holdconn, actpass in an
    answer, or an unknown value.
    """
    value = (remote_setup or ("active" if we_are_answerer else "passive")).strip().lower()
    if we_are_answerer:
        table = {"actpass": ("active", "client"), "active": ("passive", "server"), "passive": ("active", "client")}
    else:
        table = {"active": ("actpass", "server"), "passive": ("actpass", "client")}
    try:
        return table[value]
    except KeyError:
        side = "offer" if we_are_answerer else "answer"
        raise SetupError(f"a=setup:{value} in an {side} cannot set up DTLS") from None


# --- DTLS records ----------------------------------------------------------------------------------

CONTENT_CHANGE_CIPHER_SPEC = 20
CONTENT_ALERT = 21
CONTENT_HANDSHAKE = 22
RECORD_HEADER = 13


def split_records(data: bytes) -> list[tuple[int, int, bytes]] | None:
    """The DTLS records of a datagram as (content type, epoch, record bytes), or None when the
    datagram is not a whole number of well-formed DTLS records (such datagrams never reach OpenSSL)."""
    records: list[tuple[int, int, bytes]] = []
    position = 0
    while position < len(data):
        if len(data) - position < RECORD_HEADER:
            return None
        content_type = data[position]
        if not 20 <= content_type <= 63 or data[position + 1] != 0xFE:
            return None
        epoch = int.from_bytes(data[position + 3 : position + 5], "big")
        length = int.from_bytes(data[position + 11 : position + 13], "big")
        end = position + RECORD_HEADER + length
        if end > len(data):
            return None
        records.append((content_type, epoch, bytes(data[position:end])))
        position = end
    return records or None


def _pack(records: list[bytes], mtu: int) -> list[bytes]:
    """Records into as few datagrams as fit in ``mtu`` (a record is never split)."""
    datagrams: list[bytes] = []
    current = b""
    for record in records:
        if current and len(current) + len(record) > mtu:
            datagrams.append(current)
            current = b""
        current += record
    if current:
        datagrams.append(current)
    return datagrams


# --- the transform ---------------------------------------------------------------------------------


@implementer(IMediaTransform)
class DtlsTransform:
    """The transform of a DTLS-SRTP leg (one per endpoint; ``role`` from ``choose_setup``).

    ``remote_fingerprint`` is the peer's (hash name, value) from its SDP. ``ice``, when given, answers
    the STUN datagrams that arrive on the same port (RFC 7983 demultiplexing by first byte).
    ``state`` is new, connecting, ready, failed or closed; ``failure`` says why it failed.
    """

    secure = True

    def __init__(
        self,
        role: str,
        remote_fingerprint: tuple[str, str],
        clock: IReactorTime,
        certificate: DtlsCertificate | None = None,
        ice: IceLite | None = None,
        suites: Sequence[SrtpSuite] = (AES_CM_128_HMAC_SHA1_80, AES_CM_128_HMAC_SHA1_32),
        mtu: int = DEFAULT_MTU,
    ) -> None:
        if role not in ("client", "server"):
            raise ValueError(f"DTLS role is client or server, not {role!r}")
        algorithm, value = remote_fingerprint
        if algorithm.lower() not in HASHES:
            raise ValueError(f"unsupported fingerprint hash {algorithm!r}")
        self.role = role
        self.remote_fingerprint = (algorithm.lower(), value.strip().upper())
        self.clock = clock
        self.certificate = certificate or local_certificate()
        self.ice = ice
        self.mtu = mtu
        self._profiles = tuple(suite.dtls_profile for suite in suites)
        self._send: Callable[[bytes], None] | None = None
        self._connection: SSL.Connection | None = None
        self._srtp: SrtpContext | None = None
        self._timer: IDelayedCall | None = None
        self._interval = FIRST_RETRANSMIT
        self._started_at: float | None = None
        self._last_flight: list[bytes] = []
        self._final_flight: list[bytes] = []
        self.final_flight_resends = 0
        self.state = "new"
        self.failure: str | None = None
        self.suite: SrtpSuite | None = None
        self.retransmissions = 0
        self.fingerprint_mismatches = 0
        self.dropped_datagrams = 0

    # -- counters the relay reads
    @property
    def auth_failures(self) -> int:
        return 0 if self._srtp is None else self._srtp.auth_failures

    @property
    def replay_failures(self) -> int:
        return 0 if self._srtp is None else self._srtp.replay_failures

    @property
    def srtp(self) -> SrtpContext | None:
        return self._srtp

    @property
    def local_fingerprint(self) -> tuple[str, str]:
        """Our ``a=fingerprint`` (hash name, value) for the SDP that goes with this transform."""
        return "sha-256", self.certificate.fingerprint

    # -- IMediaTransform
    def attach(self, send: Callable[[bytes], None]) -> None:
        self._send = send

    def start(self) -> None:
        """A client sends its ClientHello (through ``send``); a server waits for one."""
        if self.state != "new" or self.role != "client":
            return
        self._begin()
        for datagram in self._drive():
            self._transmit(datagram)

    def ready(self) -> bool:
        return self.state == "ready"

    def control(self, data: bytes, addr: tuple[str, int]) -> tuple[list[bytes], bool]:
        if not data:
            return [], False
        first = data[0]
        if first < 4:
            if self.ice is None:
                return [], False
            return self.ice.handle(data, addr)
        if 20 <= first <= 63:
            return self._datagram(bytes(data), addr), False
        return [], False

    def unprotect_rtp(self, data: bytes) -> bytes | None:
        return None if self._srtp is None else self._srtp.unprotect_rtp(data)

    def unprotect_rtcp(self, data: bytes) -> bytes | None:
        return None if self._srtp is None else self._srtp.unprotect_rtcp(data)

    def protect_rtp(self, data: bytes) -> bytes | None:
        return None if self._srtp is None else self._srtp.protect_rtp(data)

    def protect_rtcp(self, data: bytes) -> bytes | None:
        return None if self._srtp is None else self._srtp.protect_rtcp(data)

    def close(self) -> None:
        """Stop timers, free OpenSSL and libsrtp state; the failure counters stay readable."""
        self._cancel_timer()
        if self._srtp is not None:
            self._srtp.close()  # frees the libsrtp sessions; the counters stay readable
        self._connection = None
        self._last_flight = []
        self._final_flight = []
        if self.state != "failed":
            self.state = "closed"

    # -- the handshake
    def _begin(self) -> None:
        connection = SSL.Connection(self.certificate.context(self._profiles), None)
        connection.set_ciphertext_mtu(self.mtu)
        if self.role == "client":
            connection.set_connect_state()
        else:
            connection.set_accept_state()
        self._connection = connection
        self._started_at = self.clock.seconds()
        self.state = "connecting"

    def _datagram(self, data: bytes, addr: tuple[str, int]) -> list[bytes]:
        records = split_records(data)
        if records is None:
            self.dropped_datagrams += 1
            log.debug("DTLS: dropped a malformed datagram from {addr}", addr=addr)
            return []
        if self.state == "new" and self.role == "server":
            self._begin()
        if self.state == "connecting":
            assert self._connection is not None
            try:
                self._connection.bio_write(data)
            except SSL.Error:
                self.dropped_datagrams += 1
                return []
            return self._drive()
        if self.state == "ready":
            return self._after_handshake(records)
        self.dropped_datagrams += 1
        return []

    def _drain(self) -> list[bytes]:
        """What OpenSSL wrote to the memory BIO, cut into records and packed into datagrams."""
        if self._connection is None:
            return []
        pending = b""
        while True:
            try:
                chunk = self._connection.bio_read(65536)
            except SSL.WantReadError:
                break
            except SSL.Error:
                break
            if not chunk:
                break
            pending += chunk
        if not pending:
            return []
        records = split_records(pending)
        if records is None:
            return [pending]
        return _pack([record for _type, _epoch, record in records], self.mtu)

    def _drive(self) -> list[bytes]:
        """Run the handshake as far as the input allows; returns the datagrams it produced."""
        assert self._connection is not None
        try:
            self._connection.do_handshake()
            done = True
        except SSL.WantReadError:
            done = False
        except SSL.Error as error:
            output = self._drain()
            self._fail(f"DTLS handshake failed: {_describe(error)}")
            return output
        output = self._drain()
        if output:
            self._last_flight = output
            self._interval = FIRST_RETRANSMIT
        if done:
            # Only the side that sends the last flight (the server, in a full handshake) keeps one
            # to resend after the handshake; the other side's last flight was answered already.
            self._final_flight = output
            self._cancel_timer()
            self._complete()
        elif output:
            self._arm_timer()
        return output

    def _complete(self) -> None:
        assert self._connection is not None
        certificate = compat.peer_certificate(self._connection)
        if certificate is None:
            self._fail("the DTLS peer sent no certificate")
            return
        algorithm, expected = self.remote_fingerprint
        actual = fingerprint(certificate, algorithm)
        if not hmac.compare_digest(actual.replace(":", ""), expected.replace(":", "")):
            self.fingerprint_mismatches += 1
            self._fail(f"the DTLS peer's certificate does not match a=fingerprint ({algorithm} {actual})")
            return
        profile = compat.selected_srtp_profile(self._connection)
        suite = DTLS_PROFILES.get(profile)
        if suite is None:
            self._fail(f"DTLS negotiated no usable SRTP profile ({profile!r})")
            return
        try:
            material = self._connection.export_keying_material(EXPORTER_LABEL, 2 * (KEY_LENGTH + SALT_LENGTH))
            client_key, server_key = material[:KEY_LENGTH], material[KEY_LENGTH : 2 * KEY_LENGTH]
            salts = material[2 * KEY_LENGTH :]
            client_salt, server_salt = salts[:SALT_LENGTH], salts[SALT_LENGTH:]
            client, server = client_key + client_salt, server_key + server_salt
            tx, rx = (client, server) if self.role == "client" else (server, client)
            self._srtp = SrtpContext(tx, rx, suite)
            delegate_crypto(self, self._srtp)
        except (SSL.Error, pylibsrtp.Error, ValueError) as error:
            self._fail(f"SRTP keys from DTLS could not be set up: {error}")
            return
        self.suite = suite
        self.state = "ready"
        log.info("DTLS-SRTP ready as {role} ({suite}, local key {key})", role=self.role, suite=suite.name,
                 key=self._srtp.local_key_id)

    def _after_handshake(self, records: list[tuple[int, int, bytes]]) -> list[bytes]:
        """A datagram after the keys are in place: alerts and retransmissions only; keys never change.

        OpenSSL drops records of an old epoch (a stray ClientHello) and answers a retransmitted
        Finished by resending its last flight. A retransmission that repeats record sequence
        numbers (as our own fallback does) is dropped by OpenSSL's replay check, so when the peer
        evidently missed our final flight we resend the copy we kept, a few times at most.
        """
        assert self._connection is not None
        try:
            self._connection.bio_write(b"".join(record for _t, _e, record in records))
            self._connection.recv(65536)
        except SSL.ZeroReturnError:
            log.debug("DTLS: the peer sent close_notify; SRTP keys stay in use")
        except SSL.WantReadError:
            pass
        except SSL.Error as error:
            log.debug("DTLS after the handshake: {error}", error=_describe(error))
        output = self._drain()
        if output:
            return output
        current_epoch_handshake = any(
            kind == CONTENT_HANDSHAKE and epoch >= 1 for kind, epoch, _record in records
        )
        if current_epoch_handshake and self._final_flight and self.final_flight_resends < MAX_FINAL_FLIGHT_RESENDS:
            self.final_flight_resends += 1
            return list(self._final_flight)
        return []

    # -- retransmission
    def _arm_timer(self) -> None:
        self._cancel_timer()
        self._timer = self.clock.callLater(self._interval, self._on_timer)

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _on_timer(self) -> None:
        self._timer = None
        if self.state != "connecting" or self._connection is None:
            return
        assert self._started_at is not None
        if self.clock.seconds() - self._started_at >= GIVE_UP_AFTER:
            self._fail(f"DTLS handshake timed out after {GIVE_UP_AFTER:.0f} s")
            return
        output = self._drain() if compat.handle_dtls_timeout(self._connection) else []
        if output:
            self._last_flight = output
        else:
            output = self._last_flight
        self.retransmissions += 1
        for datagram in output:
            self._transmit(datagram)
        self._interval = min(self._interval * 2, MAX_RETRANSMIT_INTERVAL)
        self._arm_timer()

    def _transmit(self, datagram: bytes) -> None:
        if self._send is not None:
            self._send(datagram)

    def _fail(self, reason: str) -> None:
        if self.state in ("failed", "closed"):
            return
        self._cancel_timer()
        self.state = "failed"
        self.failure = reason
        self._connection = None
        self._last_flight = []
        self._final_flight = []
        log.warn("DTLS-SRTP ({role}) failed: {reason}", role=self.role, reason=reason)


def _describe(error: SSL.Error) -> str:
    """OpenSSL's error queue as one short line."""
    try:
        parts = [str(entry[2]) for entry in error.args[0] if isinstance(entry, tuple) and len(entry) == 3]
    except (IndexError, TypeError):
        parts = []
    return ", ".join(parts) or error.__class__.__name__
