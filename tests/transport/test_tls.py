"""Tests for minisip.transport.tls: the self-signed pair, fingerprints, and TLS 1.2+ contexts."""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
import stat

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from OpenSSL import SSL
from twisted.internet.address import IPv4Address
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.test.iosim import FakeTransport, connect
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from minisip.config import ConfigError
from minisip.transport import tls
from minisip.transport.tls import (
    TLSCertificateError,
    certificate_fingerprint,
    client_context_factory,
    ensure_certificate,
    server_context_factory,
    tls_memory_bio_factory,
)

FINGERPRINT_RE = re.compile(r"^SHA-256 ([0-9A-F]{2}:){31}[0-9A-F]{2}$")


def _pump(source: SSL.Connection, destination: SSL.Connection) -> bool:
    moved = False
    while True:
        try:
            data = source.bio_read(65536)
        except SSL.WantReadError:
            return moved
        destination.bio_write(data)
        moved = True


def handshake(server_context: SSL.Context, client_context: SSL.Context) -> tuple[SSL.Connection, SSL.Connection]:
    """A complete handshake between two memory-BIO connections; raises SSL.Error when it fails."""
    server = SSL.Connection(server_context, None)
    server.set_accept_state()
    client = SSL.Connection(client_context, None)
    client.set_connect_state()
    for _ in range(20):
        for connection in (client, server):
            try:
                connection.do_handshake()
            except SSL.WantReadError:
                pass
        if not (_pump(client, server) | _pump(server, client)):
            break
    return client, server


def limited_client(maximum: int) -> SSL.Context:
    """A client speaking at most ``maximum``; security level 0 so old versions are really offered."""
    context = SSL.Context(SSL.TLS_METHOD)
    context.set_max_proto_version(maximum)
    context.set_cipher_list(b"DEFAULT:@SECLEVEL=0")
    return context


# RSA key generation is slow on Debian's cryptography: tests that only need some valid pair reuse
# one made once per name and installed where ensure_certificate will find it.
_PAIRS: dict[str, tuple[bytes, bytes]] = {}


class CertificateTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.datadir = os.path.abspath(self.mktemp())

    def make_pair(self, hostname: str = "pbx.example.com") -> tuple[str, str]:
        """A fresh self-signed pair made by ensure_certificate in this test's datadir."""
        return ensure_certificate(self.datadir, None, None, hostname)

    def install_pair(self, name: str = "main", datadir: str | None = None) -> tuple[str, str]:
        """A valid pair (the same bytes for every test asking for ``name``), reused by ensure_certificate."""
        datadir = datadir or self.datadir
        if name not in _PAIRS:
            cert_path, key_path = ensure_certificate(datadir, None, None, f"{name}.example.com")
            with open(cert_path, "rb") as cert, open(key_path, "rb") as key:
                _PAIRS[name] = (cert.read(), key.read())
        else:
            os.makedirs(os.path.join(datadir, "tls"))
            for data, file_name in zip(_PAIRS[name], ("server.crt", "server.key")):
                with open(os.path.join(datadir, "tls", file_name), "wb") as stream:
                    stream.write(data)
        pair = ensure_certificate(datadir, None, None, "ignored.example.com")
        self.assertEqual(pair[0], os.path.join(datadir, "tls", "server.crt"))
        return pair


class EnsureCertificateTests(CertificateTestCase):
    def test_creates_then_reuses(self) -> None:
        cert_path, key_path = self.make_pair("PBX.example.com")
        self.assertEqual(cert_path, os.path.join(self.datadir, "tls", "server.crt"))
        self.assertEqual(key_path, os.path.join(self.datadir, "tls", "server.key"))
        first = certificate_fingerprint(cert_path)
        with open(key_path, "rb") as stream:
            key_pem = stream.read()
        self.assertEqual(ensure_certificate(self.datadir, None, None, "PBX.example.com"), (cert_path, key_path))
        self.assertEqual(certificate_fingerprint(cert_path), first)
        with open(key_path, "rb") as stream:
            self.assertEqual(stream.read(), key_pem)
        self.assertEqual(sorted(os.listdir(os.path.join(self.datadir, "tls"))), ["server.crt", "server.key"])
        if os.name == "posix":
            self.assertEqual(stat.S_IMODE(os.stat(key_path).st_mode), 0o600)
        self.check_contents(cert_path, key_pem)

    def check_contents(self, cert_path: str, key_pem: bytes) -> None:
        with open(cert_path, "rb") as stream:
            certificate = x509.load_pem_x509_certificate(stream.read())
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        self.assertEqual(names.get_values_for_type(x509.DNSName), ["pbx.example.com"])
        self.assertEqual(names.get_values_for_type(x509.IPAddress), [ipaddress.ip_address("127.0.0.1")])
        lifetime = tls._not_valid_after(certificate) - datetime.datetime.now(datetime.timezone.utc)
        self.assertGreater(lifetime, datetime.timedelta(days=3649))
        self.assertLess(lifetime, datetime.timedelta(days=3651))
        key = serialization.load_pem_private_key(key_pem, password=None)
        self.assertEqual(
            key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo),
            certificate.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
        )

    def test_ip_hostnames(self) -> None:
        """An address is in the SAN as an IP address and as a DNS name (mbedTLS, i.e. Linphone, matches
        only DNS names and refused the certificate with "CN-mismatch")."""
        for hostname, expected in (
            ("192.0.2.5", [("ip", "192.0.2.5"), ("dns", "192.0.2.5"), ("ip", "127.0.0.1")]),
            ("127.0.0.1", [("ip", "127.0.0.1"), ("dns", "127.0.0.1")]),
            ("[2001:db8::1]", [("ip", "2001:db8::1"), ("dns", "2001:db8::1"), ("ip", "127.0.0.1")]),
            ("pbx.example.com", [("dns", "pbx.example.com"), ("ip", "127.0.0.1")]),
        ):
            names = tls._subject_alt_names(hostname)
            kinds = [("ip" if isinstance(name, x509.IPAddress) else "dns", str(name.value)) for name in names]
            self.assertEqual(kinds, expected, hostname)

    def test_generated_certificate_for_an_address_has_both_sans(self) -> None:
        cert_path, _ = self.make_pair("192.0.2.5")
        with open(cert_path, "rb") as stream:
            certificate = x509.load_pem_x509_certificate(stream.read())
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        self.assertEqual(names.get_values_for_type(x509.DNSName), ["192.0.2.5"])
        self.assertEqual(names.get_values_for_type(x509.IPAddress),
                         [ipaddress.ip_address("192.0.2.5"), ipaddress.ip_address("127.0.0.1")])

    def test_expired_pair_is_replaced(self) -> None:
        directory = os.path.join(self.datadir, "tls")
        cert_path = os.path.join(directory, "server.crt")
        key_path = os.path.join(directory, "server.key")
        long_ago = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=4000)
        tls._make_self_signed(directory, cert_path, key_path, "pbx.example.com", long_ago)
        old = certificate_fingerprint(cert_path)
        self.assertEqual(self.make_pair(), (cert_path, key_path))
        self.assertNotEqual(certificate_fingerprint(cert_path), old)
        with open(cert_path, "rb") as stream:
            certificate = x509.load_pem_x509_certificate(stream.read())
        self.assertGreater(tls._not_valid_after(certificate), datetime.datetime.now(datetime.timezone.utc))

    def test_half_pair_is_remade(self) -> None:
        cert_path, key_path = self.install_pair()
        first = certificate_fingerprint(cert_path)
        os.remove(key_path)
        self.make_pair()
        self.assertNotEqual(certificate_fingerprint(cert_path), first)
        server_context_factory(cert_path, key_path)  # and the new pair matches

    def test_configured_pair_is_used(self) -> None:
        cert_path, key_path = self.install_pair()
        other_datadir = os.path.abspath(self.mktemp())
        self.assertEqual(ensure_certificate(other_datadir, cert_path, key_path, "x"), (cert_path, key_path))
        self.assertFalse(os.path.exists(os.path.join(other_datadir, "tls")))

    def test_configured_pair_problems(self) -> None:
        cert_path, key_path = self.install_pair()
        missing = os.path.join(self.datadir, "missing.pem")
        self.assertRaises(TLSCertificateError, ensure_certificate, self.datadir, cert_path, None, "x")
        self.assertRaises(TLSCertificateError, ensure_certificate, self.datadir, None, key_path, "x")
        error = self.assertRaises(TLSCertificateError, ensure_certificate, self.datadir, missing, key_path, "x")
        self.assertIn(missing, str(error))
        self.assertIsInstance(error, ConfigError)
        self.assertIsInstance(error, ValueError)


class FingerprintTests(CertificateTestCase):
    def test_format_and_value(self) -> None:
        cert_path, _ = self.install_pair()
        fingerprint = certificate_fingerprint(cert_path)
        self.assertTrue(FINGERPRINT_RE.match(fingerprint), fingerprint)
        with open(cert_path, "rb") as stream:
            digest = x509.load_pem_x509_certificate(stream.read()).fingerprint(hashes.SHA256())
        self.assertEqual(fingerprint, "SHA-256 " + digest.hex(":").upper())

    def test_der_and_bundles(self) -> None:
        cert_path, key_path = self.install_pair()
        expected = certificate_fingerprint(cert_path)
        with open(cert_path, "rb") as stream:
            pem = stream.read()
        with open(key_path, "rb") as stream:
            key_pem = stream.read()
        der_path = os.path.join(self.datadir, "server.der")
        with open(der_path, "wb") as stream:
            stream.write(x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER))
        bundle_path = os.path.join(self.datadir, "bundle.pem")
        with open(bundle_path, "wb") as stream:
            stream.write(key_pem + pem)
        self.assertEqual(certificate_fingerprint(der_path), expected)
        self.assertEqual(certificate_fingerprint(bundle_path), expected)

    def test_not_a_certificate(self) -> None:
        _, key_path = self.install_pair()
        for path in (key_path, os.path.join(self.datadir, "missing.crt")):
            error = self.assertRaises(TLSCertificateError, certificate_fingerprint, path)
            self.assertIn(path, str(error))


class ServerContextTests(CertificateTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.cert_path, self.key_path = self.install_pair()
        self.server = server_context_factory(self.cert_path, self.key_path)

    def test_refuses_tls11(self) -> None:
        for version in (SSL.TLS1_1_VERSION, SSL.TLS1_VERSION):
            self.assertRaises(SSL.Error, handshake, self.server.getContext(), limited_client(version))

    def test_tls11_client_is_real(self) -> None:
        """Control: the same TLS 1.1 client completes a handshake with a permissive server."""
        permissive = SSL.Context(SSL.TLS_METHOD)
        permissive.set_min_proto_version(SSL.TLS1_VERSION)
        permissive.set_cipher_list(b"DEFAULT:@SECLEVEL=0")
        permissive.use_certificate_chain_file(self.cert_path)
        permissive.use_privatekey_file(self.key_path)
        try:
            client, _ = handshake(permissive, limited_client(SSL.TLS1_1_VERSION))
        except SSL.Error as e:
            raise SkipTest(f"this OpenSSL cannot speak TLS 1.1 at all: {e}") from e
        self.assertEqual(client.get_protocol_version_name(), "TLSv1.1")

    def test_accepts_tls12_and_tls13_without_client_certificate(self) -> None:
        for maximum, name in ((SSL.TLS1_2_VERSION, "TLSv1.2"), (SSL.TLS1_3_VERSION, "TLSv1.3")):
            client, server = handshake(self.server.getContext(), limited_client(maximum))
            self.assertEqual(client.get_protocol_version_name(), name)
            self.assertEqual(server.get_protocol_version_name(), name)
            self.assertIsNone(server.get_peer_certificate())

    def test_rsa_key_exchange_cbc_client_refused(self) -> None:
        """Issue 8.11: a TLS 1.2 client offering only an RSA key-exchange CBC suite is refused."""
        for suite in (b"AES128-SHA", b"AES256-SHA256"):
            client = limited_client(SSL.TLS1_2_VERSION)
            client.set_cipher_list(suite + b":@SECLEVEL=0")
            self.assertRaises(SSL.Error, handshake, self.server.getContext(), client)

    def test_rsa_cbc_client_is_real(self) -> None:
        """Control: the same client completes a handshake with a server that offers the suite."""
        permissive = SSL.Context(SSL.TLS_METHOD)
        permissive.set_cipher_list(b"AES128-SHA:@SECLEVEL=0")
        permissive.use_certificate_chain_file(self.cert_path)
        permissive.use_privatekey_file(self.key_path)
        client = limited_client(SSL.TLS1_2_VERSION)
        client.set_cipher_list(b"AES128-SHA:@SECLEVEL=0")
        connection, _ = handshake(permissive, client)
        self.assertEqual(connection.get_cipher_name(), "AES128-SHA")

    def test_tls12_offers_only_ecdhe_aead(self) -> None:
        """Every TLS 1.2 suite the server would choose is ECDHE with AES-GCM or ChaCha20-Poly1305."""
        connection = SSL.Connection(self.server.getContext(), None)
        tls12 = [name for name in connection.get_cipher_list() if not name.startswith("TLS_")]
        self.assertTrue(tls12)
        for name in tls12:
            self.assertTrue(name.startswith("ECDHE-"), name)
            self.assertTrue("GCM" in name or "CHACHA20" in name, name)
            self.assertNotIn("CBC", name)

    def test_ecdhe_aes_gcm_and_tls13_work(self) -> None:
        client = limited_client(SSL.TLS1_2_VERSION)
        client.set_cipher_list(b"ECDHE-RSA-AES128-GCM-SHA256")
        connection, _ = handshake(self.server.getContext(), client)
        self.assertEqual((connection.get_protocol_version_name(), connection.get_cipher_name()),
                         ("TLSv1.2", "ECDHE-RSA-AES128-GCM-SHA256"))
        connection, _ = handshake(self.server.getContext(), limited_client(SSL.TLS1_3_VERSION))
        self.assertEqual(connection.get_protocol_version_name(), "TLSv1.3")

    def test_outbound_client_offers_only_ecdhe_aead(self) -> None:
        """Toward phones and trunks too: a server that accepts only RSA key exchange CBC is refused."""
        legacy = SSL.Context(SSL.TLS_METHOD)
        legacy.set_max_proto_version(SSL.TLS1_2_VERSION)
        legacy.set_cipher_list(b"AES128-SHA:@SECLEVEL=0")
        legacy.use_certificate_chain_file(self.cert_path)
        legacy.use_privatekey_file(self.key_path)
        self.assertRaises(SSL.Error, handshake, legacy, client_context_factory().getContext())

    def test_mismatched_pair(self) -> None:
        _, other_key = self.install_pair("other", os.path.abspath(self.mktemp()))
        error = self.assertRaises(TLSCertificateError, server_context_factory, self.cert_path, other_key)
        self.assertIn("does not match", str(error))
        self.assertIn(self.cert_path, str(error))
        self.assertIn(other_key, str(error))
        self.assertIsInstance(error, ValueError)

    def test_unreadable_files(self) -> None:
        missing = os.path.join(self.datadir, "missing.pem")
        error = self.assertRaises(TLSCertificateError, server_context_factory, missing, self.key_path)
        self.assertIn(missing, str(error))
        error = self.assertRaises(TLSCertificateError, server_context_factory, self.cert_path, missing)
        self.assertIn(missing, str(error))

    def test_swapped_files(self) -> None:
        error = self.assertRaises(TLSCertificateError, server_context_factory, self.key_path, self.cert_path)
        self.assertIn("not a", str(error))
        self.assertTrue(self.key_path in str(error) or self.cert_path in str(error), str(error))

    def test_encrypted_key(self) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        path = os.path.join(self.datadir, "encrypted.key")
        with open(path, "wb") as stream:
            stream.write(
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.BestAvailableEncryption(b"secret"),
                )
            )
        error = self.assertRaises(TLSCertificateError, server_context_factory, self.cert_path, path)
        self.assertIn("passphrase", str(error))


class Recorder(Protocol):
    def __init__(self) -> None:
        self.received: list[bytes] = []

    def dataReceived(self, data: bytes) -> None:
        self.received.append(data)


class TwistedIntegrationTests(CertificateTestCase):
    """The factories plugged into Twisted's own TLS protocol, over in-memory transports."""

    def connect(self, server_name: str | None) -> tuple[Recorder, Recorder, object, object]:
        cert_path, key_path = self.install_pair()
        clock = Clock()
        server_factory = tls_memory_bio_factory(
            server_context_factory(cert_path, key_path), False, Factory.forProtocol(Recorder), clock
        )
        client_factory = tls_memory_bio_factory(
            client_context_factory(server_name), True, Factory.forProtocol(Recorder), clock
        )
        server = server_factory.buildProtocol(None)
        client = client_factory.buildProtocol(None)
        pump = connect(server, FakeTransport(server, True), client, FakeTransport(client, False))
        client.write(b"OPTIONS sip:100@pbx.example.com SIP/2.0\r\n\r\n")
        server.write(b"SIP/2.0 200 OK\r\n\r\n")
        for _ in range(5):
            clock.advance(0)
            pump.flush()
        self.assertEqual(clock.getDelayedCalls(), [])
        return server.wrappedProtocol, client.wrappedProtocol, server, client

    def test_exchange_with_sni(self) -> None:
        server_app, client_app, server, client = self.connect("pbx.example.com")
        self.assertEqual(b"".join(server_app.received), b"OPTIONS sip:100@pbx.example.com SIP/2.0\r\n\r\n")
        self.assertEqual(b"".join(client_app.received), b"SIP/2.0 200 OK\r\n\r\n")
        self.assertEqual(server._tlsConnection.get_servername(), b"pbx.example.com")  # type: ignore[attr-defined]
        # The self-signed server certificate was accepted, not verified.
        peer = client.getPeerCertificate()  # type: ignore[attr-defined]
        cert_path = os.path.join(self.datadir, "tls", "server.crt")
        self.assertEqual("SHA-256 " + peer.digest("sha256").decode("ascii"), certificate_fingerprint(cert_path))

    def test_no_sni_for_ip_address(self) -> None:
        server_app, _, server, _ = self.connect("127.0.0.1")
        self.assertTrue(server_app.received)
        self.assertIsNone(server._tlsConnection.get_servername())  # type: ignore[attr-defined]

    def test_client_presents_its_pair_when_given(self) -> None:
        cert_path, key_path = self.install_pair()
        creator = client_context_factory(None, cert_path, key_path)
        server_context = server_context_factory(cert_path, key_path).getContext()
        server_context.set_verify(SSL.VERIFY_PEER, lambda *args: True)
        _, server = handshake(server_context, creator.getContext())
        self.assertIsNotNone(server.get_peer_certificate())
        self.assertRaises(TLSCertificateError, client_context_factory, None, cert_path, None)


class ClientCertificateTests(CertificateTestCase):
    """Issue 8 point 11: the SIP TLS port asks for a client certificate (a carrier pinned by fingerprint
    is recognised by it), requires none, and the browsers' WSS context never asks."""

    def test_sip_context_asks_but_does_not_require(self) -> None:
        cert_path, key_path = self.install_pair()
        client_cert, client_key = self.install_pair("carrier", datadir=os.path.abspath(self.mktemp()))
        sip = server_context_factory(cert_path, key_path, ask_client_certificate=True).getContext()
        for maximum in (SSL.TLS1_2_VERSION, SSL.TLS1_3_VERSION):
            client, server = handshake(sip, limited_client(maximum))      # a phone without a certificate
            self.assertIsNone(server.get_peer_certificate())
            self.assertTrue(client.get_protocol_version_name().startswith("TLSv1."))
            creator = client_context_factory(None, client_cert, client_key)   # a carrier with one, self-signed
            creator.getContext().set_max_proto_version(maximum)
            _, server = handshake(sip, creator.getContext())
            shown = server.get_peer_certificate()
            assert shown is not None
            self.assertEqual(tls.peer_fingerprint(shown), certificate_fingerprint(client_cert))
        wss = server_context_factory(cert_path, key_path).getContext()
        _, server = handshake(wss, client_context_factory(None, client_cert, client_key).getContext())
        self.assertIsNone(server.get_peer_certificate())

    def test_transport_reports_the_fingerprint_of_a_stream(self) -> None:
        from minisip.sip.types import Addr
        from minisip.transport.manager import StreamFactory, TransportManager
        from tests.transport.test_manager import FakeReactor, RecordingSink, options

        cert_path, key_path = self.install_pair()
        client_cert, client_key = self.install_pair("carrier", datadir=os.path.abspath(self.mktemp()))
        reactor = FakeReactor()
        sink = RecordingSink()
        manager = TransportManager(reactor, sink)  # type: ignore[arg-type]
        fingerprints = []
        for pair in ((client_cert, client_key), (None, None)):
            server_factory = tls_memory_bio_factory(
                server_context_factory(cert_path, key_path, ask_client_certificate=True), False,
                StreamFactory(manager, "tls"), reactor)
            client_factory = tls_memory_bio_factory(client_context_factory(None, *pair), True,
                                                    Factory.forProtocol(Recorder), reactor)
            server = server_factory.buildProtocol(None)
            client = client_factory.buildProtocol(None)
            here, there = IPv4Address("TCP", "10.0.0.9", 5061), IPv4Address("TCP", "10.0.0.1", 40000)
            pump = connect(server, FakeTransport(server, True, hostAddress=here, peerAddress=there),
                           client, FakeTransport(client, False, hostAddress=there, peerAddress=here))
            client.write(options(via="SIP/2.0/TLS 10.0.0.1:5061"))
            for _ in range(5):
                reactor.advance(0)
                pump.flush()
            _, source = sink.received[-1]
            self.assertEqual(source.transport, "tls")
            fingerprints.append(manager.peer_certificate(source))
        self.assertEqual(fingerprints, [certificate_fingerprint(client_cert), None])
        self.assertIsNone(manager.peer_certificate(Addr("tls", "10.0.0.1", 5061, 999)))   # gone
        self.assertIsNone(manager.peer_certificate(Addr("udp", "10.0.0.1", 5061)))

    def test_pinned_client_accepts_only_the_pinned_server(self) -> None:
        """Connections minisip opens to a pinned trunk: the server's certificate must be the pinned one."""
        cert_path, key_path = self.install_pair()
        other_cert, other_key = self.install_pair("carrier", datadir=os.path.abspath(self.mktemp()))
        server = server_context_factory(cert_path, key_path).getContext()
        good = client_context_factory(pinned=(certificate_fingerprint(other_cert), certificate_fingerprint(cert_path)))
        client, _ = handshake(server, good.getContext())
        self.assertTrue(client.get_protocol_version_name().startswith("TLSv1."))
        bad = client_context_factory(pinned=(certificate_fingerprint(other_cert),))
        self.assertRaises(SSL.Error, handshake, server, bad.getContext())

    def test_transport_opens_pinned_connections_with_the_pinned_check(self) -> None:
        from minisip.sip.types import Addr
        from minisip.transport.manager import TransportManager
        from tests.transport.test_manager import FakeReactor, RecordingSink

        class Reactor(FakeReactor):
            def connectSSL(self, host: str, port: int, factory: object, creator: object,  # noqa: N802
                           timeout: float = 30) -> None:
                self.connects.append((host, port, creator))

        reactor = Reactor()
        default = client_context_factory()
        manager = TransportManager(reactor, RecordingSink(), tls_client_context=default)  # type: ignore[arg-type]
        pins = ("SHA-256 " + ":".join(["AB"] * 32),)
        manager.pin_certificates("10.0.0.9", 5061, pins)
        manager.send(b"OPTIONS", Addr("tls", "10.0.0.9", 5061))
        manager.send(b"OPTIONS", Addr("tls", "10.0.0.8", 5061))
        (_, _, pinned), (_, _, plain) = reactor.connects
        self.assertEqual((pinned.pinned, plain), (pins, default))   # type: ignore[attr-defined]
        manager.pin_certificates("10.0.0.9", 5061, ())
        self.assertEqual(manager.tls_pins, {})
