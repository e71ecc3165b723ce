"""Tests for minisip.media.compat: each helper on the installed stack, and its fallback path.

The same tests run on Debian 12's packages (pyOpenSSL 23.0, pylibsrtp 0.8) and on current PyPI
releases; the fallback paths are reached on either stack through stand-ins that lack the newer API.
"""

from __future__ import annotations

import struct
from typing import Any

import pylibsrtp
from cryptography import x509
from OpenSSL import SSL, crypto
from twisted.trial.unittest import SynchronousTestCase

from minisip.media import compat
from minisip.media.dtls import DtlsCertificate
from minisip.media.srtp import new_key_salt

CERT_A = DtlsCertificate.generate()
CERT_B = DtlsCertificate.generate()
PROFILES = (b"SRTP_AES128_CM_SHA1_80", b"SRTP_AES128_CM_SHA1_32")


def _flush(source: SSL.Connection, destination: SSL.Connection) -> None:
    while True:
        try:
            data = source.bio_read(65536)
        except SSL.WantReadError:
            return
        destination.bio_write(data)


def handshake() -> tuple[SSL.Connection, SSL.Connection]:
    client = SSL.Connection(CERT_A.context(PROFILES), None)
    server = SSL.Connection(CERT_B.context(PROFILES), None)
    client.set_connect_state()
    server.set_accept_state()
    for connection in (client, server):
        connection.set_ciphertext_mtu(1200)  # the context does not query the (memory) BIO for one
    for _ in range(10):
        done = 0
        for connection, peer in ((client, server), (server, client)):
            try:
                connection.do_handshake()
                done += 1
            except SSL.WantReadError:
                pass
            _flush(connection, peer)
        if done == 2:
            return client, server
    raise AssertionError("no handshake")


class OldConnection:
    """A pyOpenSSL 23.0-shaped view of a connection: no get_selected_srtp_profile, no DTLS timeout
    methods, and get_peer_certificate without ``as_cryptography``."""

    def __init__(self, connection: SSL.Connection) -> None:
        self._ssl = connection._ssl
        self._connection = connection

    def get_peer_certificate(self) -> Any:
        raw = self._connection.get_peer_certificate()
        return raw if isinstance(raw, crypto.X509) or raw is None else crypto.X509.from_cryptography(raw)


class OldContext:
    """Accepts only crypto.X509 and crypto.PKey, as pyOpenSSL 23.0 does."""

    def __init__(self) -> None:
        self.loaded: list[object] = []

    def use_certificate(self, certificate: object) -> None:
        if not isinstance(certificate, crypto.X509):
            raise TypeError("cert must be an X509 instance")
        self.loaded.append(certificate)

    def use_privatekey(self, key: object) -> None:
        if not isinstance(key, crypto.PKey):
            raise TypeError("pkey must be a PKey instance")
        self.loaded.append(key)


class CompatTests(SynchronousTestCase):
    def test_versions_parsed(self) -> None:
        self.assertGreaterEqual(compat.PYOPENSSL_VERSION, (21,))
        self.assertGreaterEqual(compat.PYLIBSRTP_VERSION, (0, 8))
        self.assertEqual(compat._version("26.4.0rc1"), (26, 4))

    def test_use_certificate_on_this_stack(self) -> None:
        context = SSL.Context(SSL.DTLS_METHOD)
        compat.use_certificate(context, CERT_A.certificate, CERT_A.key)
        context.check_privatekey()

    def test_use_certificate_falls_back_to_pyopenssl_objects(self) -> None:
        old = OldContext()
        compat.use_certificate(old, CERT_A.certificate, CERT_A.key)  # type: ignore[arg-type]
        self.assertEqual([type(item) for item in old.loaded], [crypto.X509, crypto.PKey])

    def test_selected_profile_both_ways(self) -> None:
        client, server = handshake()
        self.assertEqual(compat.selected_srtp_profile(client), b"SRTP_AES128_CM_SHA1_80")
        self.assertEqual(compat.selected_srtp_profile(server), b"SRTP_AES128_CM_SHA1_80")
        self.assertEqual(compat.selected_srtp_profile(OldConnection(client)), b"SRTP_AES128_CM_SHA1_80")  # type: ignore[arg-type]
        fresh = SSL.Connection(CERT_A.context(PROFILES), None)
        self.assertEqual(compat.selected_srtp_profile(fresh), b"")
        self.assertEqual(compat.selected_srtp_profile(OldConnection(fresh)), b"")  # type: ignore[arg-type]

    def test_peer_certificate_both_ways(self) -> None:
        client, server = handshake()
        for connection in (client, OldConnection(client)):
            certificate = compat.peer_certificate(connection)  # type: ignore[arg-type]
            self.assertIsInstance(certificate, x509.Certificate)
            self.assertEqual(certificate, CERT_B.certificate)
        self.assertEqual(compat.peer_certificate(server), CERT_A.certificate)
        fresh = SSL.Connection(CERT_A.context(PROFILES), None)
        self.assertIsNone(compat.peer_certificate(fresh))
        self.assertIsNone(compat.peer_certificate(OldConnection(fresh)))  # type: ignore[arg-type]

    def test_dtls_timeout_both_ways(self) -> None:
        """OpenSSL's own timer runs on wall time: right after the ClientHello nothing has expired,
        through the method (26.x) or the binding (23.0); a broken object is False, not an error."""
        client = SSL.Connection(CERT_A.context(PROFILES), None)
        client.set_connect_state()
        client.set_ciphertext_mtu(1200)
        self.assertRaises(SSL.WantReadError, client.do_handshake)
        self.assertFalse(compat.handle_dtls_timeout(client))
        self.assertFalse(compat.handle_dtls_timeout(OldConnection(client)))  # type: ignore[arg-type]
        self.assertFalse(compat.handle_dtls_timeout(object()))  # type: ignore[arg-type]

    def test_exporter_agrees(self) -> None:
        client, server = handshake()
        label = b"EXTRACTOR-dtls_srtp"
        self.assertEqual(client.export_keying_material(label, 60), server.export_keying_material(label, 60))

    def test_srtp_errors_classified(self) -> None:
        self.assertEqual(compat.classify_srtp_error(pylibsrtp.Error("authentication failure")), "auth")
        self.assertEqual(compat.classify_srtp_error(pylibsrtp.Error("replay check failed (bad index)")), "replay")
        self.assertEqual(compat.classify_srtp_error(pylibsrtp.Error("replay check failed (index too old)")), "replay")
        self.assertEqual(compat.classify_srtp_error(pylibsrtp.Error("packet index is too old to consider")),
                         "replay")
        self.assertEqual(compat.classify_srtp_error(pylibsrtp.Error("unsupported parameter")), "other")
        # The texts come from pylibsrtp's own table, in 0.8 and 1.x alike.
        self.assertIn("authentication failure", pylibsrtp.ERRORS)
        self.assertIn("replay check failed (bad index)", pylibsrtp.ERRORS)

    def test_real_failures_classified(self) -> None:
        key = new_key_salt()
        sender = pylibsrtp.Session(pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND))
        receiver = pylibsrtp.Session(pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND))
        packet = sender.protect(struct.pack("!BBHII", 0x80, 0, 1, 0, 1) + bytes(160))
        receiver.unprotect(packet)
        with self.assertRaises(pylibsrtp.Error) as replay:
            receiver.unprotect(packet)
        self.assertEqual(compat.classify_srtp_error(replay.exception), "replay")
        other = sender.protect(struct.pack("!BBHII", 0x80, 0, 2, 0, 1) + bytes(160))
        tampered = other[:-1] + bytes([other[-1] ^ 1])
        with self.assertRaises(pylibsrtp.Error) as auth:
            receiver.unprotect(tampered)
        self.assertEqual(compat.classify_srtp_error(auth.exception), "auth")

    def test_largest_packet_fits_this_pylibsrtp(self) -> None:
        key = new_key_salt()
        session = pylibsrtp.Session(pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND))
        header = struct.pack("!BBHII", 0x80, 0, 1, 0, 1)
        self.assertEqual(len(session.protect(header + bytes(compat.SRTP_MAX_PACKET - 12))),
                         compat.SRTP_MAX_PACKET + 10)
        rtcp = struct.pack("!BBHI", 0x80, 201, (compat.SRTP_MAX_PACKET // 4) - 1, 1)
        rtcp += bytes(compat.SRTP_MAX_PACKET - len(rtcp))
        self.assertEqual(len(session.protect_rtcp(rtcp)), compat.SRTP_MAX_PACKET + 14)


# What needs DTLS (pyOpenSSL 22 or later): skipped, with the reason, on the oldest stack (Ubuntu 22.04).
for _name in ("test_use_certificate_on_this_stack", "test_use_certificate_falls_back_to_pyopenssl_objects",
              "test_selected_profile_both_ways", "test_peer_certificate_both_ways", "test_dtls_timeout_both_ways",
              "test_exporter_agrees"):
    if not compat.DTLS_AVAILABLE:
        getattr(CompatTests, _name).skip = "this pyOpenSSL has no DTLS (before 22.0, e.g. Ubuntu 22.04)"
