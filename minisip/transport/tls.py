"""TLS for SIP: the certificate pair in use, and the context factories for listening and dialling.

When the configuration names no certificate, a self-signed pair is made in ``<datadir>/tls/`` on
first start and reused after, so the fingerprint that phones may have pinned stays the same.
Only TLS 1.2 and 1.3 are spoken, both ways; TLS 1.2 with ECDHE key exchange and AEAD ciphers only.
"""

from __future__ import annotations

import datetime
import inspect
import ipaddress
import os
import re
import tempfile
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from OpenSSL import SSL, crypto
from twisted.internet.interfaces import (
    IOpenSSLClientConnectionCreator,
    IOpenSSLContextFactory,
    IProtocolFactory,
    IReactorTime,
)
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory
from zope.interface import implementer

from minisip.config import ConfigError

__all__ = [
    "ClientConnectionCreator",
    "ServerContextFactory",
    "TLSCertificateError",
    "certificate_fingerprint",
    "client_context_factory",
    "ensure_certificate",
    "server_context_factory",
    "tls_memory_bio_factory",
]

log = Logger()

CERTIFICATE_FILE = "server.crt"
PRIVATE_KEY_FILE = "server.key"
VALIDITY = datetime.timedelta(days=3650)

# For TLS 1.2 (TLS 1.3 suites are OpenSSL's own, all AEAD): ECDHE key exchange with AEAD ciphers
# only. Plain RSA key exchange (no forward secrecy) and CBC suites (padding-oracle history) are not
# offered: a phone that offers nothing else needs a firmware update or UDP/TCP (docs/security.md).
_CIPHERS = b"ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL:!PSK:!SRP:!DSS"
_PEM_CERTIFICATE_RE = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)


class TLSCertificateError(ConfigError, ValueError):
    """The certificate or key cannot be used; the message says which file and why."""


# --- version differences between Debian 12 (pyOpenSSL 23.0, cryptography 38) and current PyPI ---


def _not_valid_after(certificate: x509.Certificate) -> datetime.datetime:
    """The expiry as an aware UTC datetime.

    cryptography 42 added ``not_valid_after_utc`` and deprecated the naive ``not_valid_after``;
    Debian 12's cryptography 38 has only the naive one.
    """
    aware = getattr(certificate, "not_valid_after_utc", None)
    if aware is not None:
        return aware  # type: ignore[no-any-return]
    return certificate.not_valid_after.replace(tzinfo=datetime.timezone.utc)


# --- certificate files ---


def _check_readable(path: str, what: str) -> None:
    try:
        with open(path, "rb"):
            pass
    except OSError as e:
        raise TLSCertificateError(f"cannot read the {what}: {e.strerror or e}", path) from None


def ensure_certificate(datadir: str, cert_path: str | None, key_path: str | None, hostname: str) -> tuple[str, str]:
    """The (certificate, key) paths to use: the configured pair, else a self-signed one in <datadir>/tls/.

    The self-signed pair is made on first start (RSA 2048, SAN ``hostname`` and 127.0.0.1, ten years,
    key file mode 0600) and reused after; an expired one is replaced. An IP address goes into the SAN
    both as an IP address and as a DNS name: mbedTLS (Linphone) matches only DNS names.
    """
    if cert_path or key_path:
        if not (cert_path and key_path):
            raise TLSCertificateError("a TLS certificate and its private key go together: give both or neither")
        _check_readable(cert_path, "certificate")
        _check_readable(key_path, "private key")
        return os.path.abspath(cert_path), os.path.abspath(key_path)

    directory = os.path.join(os.path.abspath(datadir), "tls")
    cert_file = os.path.join(directory, CERTIFICATE_FILE)
    key_file = os.path.join(directory, PRIVATE_KEY_FILE)
    if os.path.isfile(cert_file) and os.path.isfile(key_file):
        expiry = _expiry(cert_file)
        if expiry is None or expiry > datetime.datetime.now(datetime.timezone.utc):
            return cert_file, key_file
        log.warn(  # noqa: G010 (twisted.logger.Logger has no warning())
            "The self-signed TLS certificate {path} expired on {expiry}; making a new one",
            path=cert_file,
            expiry=expiry.date().isoformat(),
        )
    _make_self_signed(directory, cert_file, key_file, hostname, datetime.datetime.now(datetime.timezone.utc))
    log.info(
        "Made a self-signed TLS certificate {path} for {hostname}: {fingerprint}",
        path=cert_file,
        hostname=hostname,
        fingerprint=certificate_fingerprint(cert_file),
    )
    return cert_file, key_file


def _expiry(cert_file: str) -> datetime.datetime | None:
    """Expiry of the certificate, or None when it cannot be parsed (the context factory will say why)."""
    try:
        return _not_valid_after(_load_certificate(cert_file))
    except TLSCertificateError:
        return None


def _subject_alt_names(hostname: str) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    host = hostname.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if host:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            try:
                ascii_name = host.rstrip(".").lower().encode("idna").decode("ascii")
            except UnicodeError:
                raise TLSCertificateError(f"{hostname!r} cannot go into a certificate") from None
            names.append(x509.DNSName(ascii_name))
        else:
            names += [x509.IPAddress(address), x509.DNSName(str(address))]
    loopback = x509.IPAddress(ipaddress.ip_address("127.0.0.1"))
    if loopback not in names:
        names.append(loopback)
    return names


def _make_self_signed(directory: str, cert_file: str, key_file: str, hostname: str, now: datetime.datetime) -> None:
    """Write a new self-signed pair; the key first, each file replaced atomically."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    common_name = hostname.strip().strip("[]")[:64] or "minisip"
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "minisip"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))  # tolerate phones whose clock is behind
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.SubjectAlternativeName(_subject_alt_names(hostname)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        _write_atomically(key_file, key_pem, 0o600)
        _write_atomically(cert_file, certificate.public_bytes(serialization.Encoding.PEM), 0o644)
    except OSError as e:
        raise TLSCertificateError(f"cannot write the self-signed TLS pair: {e.strerror or e}", directory) from None


def _write_atomically(path: str, data: bytes, mode: int) -> None:
    # mkstemp creates the file with mode 0600, so the key is never readable by others, even briefly.
    fd, temporary = tempfile.mkstemp(dir=os.path.dirname(path), prefix="." + os.path.basename(path) + ".")
    try:
        with os.fdopen(fd, "wb") as stream:
            stream.write(data)
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise


def _load_certificate(cert_path: str) -> x509.Certificate:
    """The first certificate of a PEM file (which may also hold a chain or a key) or of a DER file."""
    try:
        with open(cert_path, "rb") as stream:
            data = stream.read()
    except OSError as e:
        raise TLSCertificateError(f"cannot read the certificate: {e.strerror or e}", cert_path) from None
    try:
        if b"-----BEGIN" in data:
            match = _PEM_CERTIFICATE_RE.search(data)
            if match is None:
                raise ValueError("no BEGIN CERTIFICATE block")
            return x509.load_pem_x509_certificate(match.group(0))
        return x509.load_der_x509_certificate(data)
    except ValueError as e:
        raise TLSCertificateError(f"not a certificate ({e})", cert_path) from None


def certificate_fingerprint(cert_path: str) -> str:
    """``"SHA-256 AB:CD:..."``: what an administrator compares with the phone's screen."""
    digest = _load_certificate(cert_path).fingerprint(hashes.SHA256())
    return "SHA-256 " + ":".join(f"{byte:02X}" for byte in digest)


# --- context factories ---


def _new_context() -> SSL.Context:
    """A context speaking TLS 1.2 and 1.3 only."""
    context = SSL.Context(SSL.TLS_METHOD)
    context.set_min_proto_version(SSL.TLS1_2_VERSION)
    context.set_options(SSL.OP_NO_COMPRESSION | SSL.OP_CIPHER_SERVER_PREFERENCE)
    context.set_cipher_list(_CIPHERS)
    return context


def _ssl_reason(error: SSL.Error) -> str:
    """OpenSSL's error queue, e.g. ``[('PEM routines', '', 'no start line')]``, as words."""
    details = error.args[0] if error.args else None
    if isinstance(details, list):
        reasons = [str(item[-1]) for item in details if isinstance(item, tuple) and item and item[-1]]
        if reasons:
            return "; ".join(reasons)
    return str(error) or error.__class__.__name__


def _public_key_der(key: object) -> bytes:
    return key.public_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _load_private_key(key_path: str) -> object:
    """The unencrypted PEM private key, parsed by cryptography; errors say which file and why."""
    try:
        with open(key_path, "rb") as stream:
            data = stream.read()
    except OSError as e:
        raise TLSCertificateError(f"cannot read the private key: {e.strerror or e}", key_path) from None
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise TLSCertificateError(
            "the private key is protected by a passphrase; minisip needs it unencrypted "
            "(protect the file with its permissions instead)",
            key_path,
        ) from None
    except (ValueError, UnsupportedAlgorithm) as e:
        raise TLSCertificateError(f"not a usable PEM private key ({e})", key_path) from None


def _use_private_key(context: SSL.Context, key: object) -> None:
    """Load a cryptography private key into ``context``.

    pyOpenSSL 24.3 and later take cryptography keys directly (and deprecate ``PKey``); Debian 12's
    pyOpenSSL 23.0 accepts only a ``PKey`` and raises TypeError for anything else.
    """
    try:
        context.use_privatekey(key)  # type: ignore[arg-type]
    except TypeError:
        context.use_privatekey(crypto.PKey.from_cryptography_key(key))  # type: ignore[arg-type]


def _load_pair(context: SSL.Context, cert_path: str, key_path: str) -> None:
    _check_readable(cert_path, "certificate")
    key = _load_private_key(key_path)
    mismatch = TLSCertificateError(f"the certificate {cert_path!r} does not match the private key {key_path!r}")
    try:
        context.use_certificate_chain_file(cert_path)
    except SSL.Error as e:
        raise TLSCertificateError(f"not a PEM certificate ({_ssl_reason(e)})", cert_path) from None
    # Compare public keys first for a clear message; a certificate that only OpenSSL can parse is
    # judged by check_privatekey below.
    try:
        certificate = _load_certificate(cert_path)
    except TLSCertificateError:
        pass
    else:
        if _public_key_der(certificate.public_key()) != _public_key_der(key.public_key()):  # type: ignore[attr-defined]
            raise mismatch
    try:
        _use_private_key(context, key)
        context.check_privatekey()
    except SSL.Error:
        raise mismatch from None


def _accept_any(connection: object, certificate: object, errno: int, depth: int, ok: int) -> bool:
    """Take whatever certificate the peer shows: it identifies a trunk by fingerprint, not by a CA."""
    return True


def peer_fingerprint(certificate: Any) -> str:
    """``"SHA-256 AB:CD:..."`` of a pyOpenSSL X509 (as :func:`certificate_fingerprint` writes a file's)."""
    return "SHA-256 " + certificate.digest("sha256").decode("ascii").upper()


_HEX_RE = re.compile(r"[0-9A-Fa-f]{64}")
_FINGERPRINT_LABEL_RE = re.compile(r"^sha-?256\s*(?:fingerprint)?\s*[:=]?\s*", re.IGNORECASE)  # openssl's too


def normalize_fingerprint(text: str) -> str | None:
    """An administrator's SHA-256 fingerprint in any usual spelling (``SHA-256 AB:CD..``, ``sha256:abcd..``,
    openssl's ``sha256 Fingerprint=AB:..``, bare hex) as :func:`peer_fingerprint` writes it; None if not one."""
    value = _FINGERPRINT_LABEL_RE.sub("", text.strip(), count=1)
    digits = value.replace(":", "").replace(" ", "")
    if not _HEX_RE.fullmatch(digits):
        return None
    digits = digits.upper()
    return "SHA-256 " + ":".join(digits[i:i + 2] for i in range(0, 64, 2))


@implementer(IOpenSSLContextFactory)
class ServerContextFactory:
    """For listenSSL / SSL4ServerEndpoint: our certificate, TLS 1.2+.

    With ``ask_client_certificate`` (SIP over TLS) a client certificate is asked for but neither
    required nor checked against a CA: phones connect without one and authenticate by digest; a carrier
    that shows one can be recognised as its trunk by the certificate's fingerprint (``[trunk NAME]
    certificate``), wherever it connects from. Not for the browsers' WSS port: a browser would offer its
    user a certificate picker.
    """

    isClient = 0  # read by twisted.internet.ssl.ContextFactory users

    def __init__(self, cert_path: str, key_path: str, ask_client_certificate: bool = False) -> None:
        self.cert_path = cert_path
        self.key_path = key_path
        self._context = _new_context()
        _load_pair(self._context, cert_path, key_path)
        if ask_client_certificate:
            self._context.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_CLIENT_ONCE, _accept_any)
            self._context.set_session_id(b"minisip-sip")  # asking for certificates needs a session context

    def getContext(self) -> SSL.Context:  # Twisted's name
        return self._context


def server_context_factory(cert_path: str, key_path: str, ask_client_certificate: bool = False) -> ServerContextFactory:
    """Load and check the pair now, so a bad file stops start-up (or a reload) with a clear message.

    Raises :class:`TLSCertificateError` (a ``ConfigError`` and a ``ValueError``) when a file cannot be
    read, is not PEM, the key is encrypted, or the key does not match the certificate.
    """
    return ServerContextFactory(cert_path, key_path, ask_client_certificate)


@implementer(IOpenSSLClientConnectionCreator, IOpenSSLContextFactory)
class ClientConnectionCreator:
    """For connectSSL / SSL4ClientEndpoint toward phones and trunks: TLS 1.2+, peer not verified.

    Phones, and many small trunks, present self-signed certificates that no trust store holds, and SIP
    authenticates with digest anyway; refusing them would make outbound TLS useless. The connection is
    still encrypted against eavesdroppers. SNI is sent when ``server_name`` is a DNS name.
    """

    def __init__(
        self, server_name: str | None = None, cert_path: str | None = None, key_path: str | None = None,
        pinned: tuple[str, ...] = (),
    ) -> None:
        self._context = _new_context()
        self.pinned = pinned
        if pinned:
            self._context.set_verify(SSL.VERIFY_PEER, self._check_pinned)
        else:
            self._context.set_verify(SSL.VERIFY_NONE)
        if cert_path or key_path:
            if not (cert_path and key_path):
                raise TLSCertificateError("a TLS certificate and its private key go together: give both or neither")
            _load_pair(self._context, cert_path, key_path)  # shown when the peer asks for a client certificate
        self._server_name: bytes | None = None
        if server_name:
            try:
                ipaddress.ip_address(server_name.strip("[]"))
            except ValueError:
                self._server_name = server_name.rstrip(".").lower().encode("idna")

    def getContext(self) -> SSL.Context:  # Twisted's name
        return self._context

    def _check_pinned(self, connection: Any, certificate: Any, errno: int, depth: int, ok: int) -> bool:
        """Pinned (a trunk's ``certificate``): the server's own certificate must be one of the pins; its
        chain is not judged (the pin says who it is). A mismatch ends the handshake before any SIP."""
        if depth != 0:
            return True
        shown = peer_fingerprint(certificate)
        if shown in self.pinned:
            return True
        log.warn("security: a TLS server showed certificate {shown}, not the one configured for it; "
                  "connection refused", shown=shown)
        return False

    def clientConnectionForTLS(self, tlsProtocol: object) -> SSL.Connection:
        connection = SSL.Connection(self._context, None)  # None: memory BIOs, Twisted moves the bytes
        connection.set_app_data(tlsProtocol)
        if self._server_name is not None:
            connection.set_tlsext_host_name(self._server_name)
        return connection


def tls_memory_bio_factory(
    connection_creator: Any, is_client: bool, wrapped_factory: IProtocolFactory, clock: IReactorTime
) -> TLSMemoryBIOFactory:
    """Twisted's TLS wrapper factory, on our clock when this Twisted takes one.

    Twisted 24.7 and later batch small TLS writes and flush them with ``clock.callLater(0, ...)``
    (the global reactor when no clock is given); Twisted 22.4 has no ``clock`` parameter.
    """
    if "clock" in inspect.signature(TLSMemoryBIOFactory.__init__).parameters:
        return TLSMemoryBIOFactory(connection_creator, is_client, wrapped_factory, clock=clock)
    return TLSMemoryBIOFactory(connection_creator, is_client, wrapped_factory)


def client_context_factory(
    server_name: str | None = None, cert_path: str | None = None, key_path: str | None = None,
    pinned: tuple[str, ...] = (),
) -> ClientConnectionCreator:
    """A connection creator for outbound TLS; optionally presents our pair when the peer asks for one,
    and with ``pinned`` fingerprints refuses a server whose certificate is none of them."""
    return ClientConnectionCreator(server_name, cert_path, key_path, pinned)
