"""DtlsTransform against another DTLS-SRTP implementation: the ``openssl`` command line, over real UDP
on 127.0.0.1, in both roles. openssl prints the exporter output; SRTP keyed from what it printed must
unprotect what our transform protects, so the two sides agree on the keys and their split.

Every wait is bounded and every openssl process is ended by its PID.
"""

from __future__ import annotations

import os
import re
import select
import shutil
import socket
import struct
import subprocess
import time

from cryptography.hazmat.primitives import serialization
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from minisip.media.compat import DTLS_AVAILABLE
from minisip.media.dtls import DtlsCertificate, DtlsTransform
from minisip.media.srtp import SUITES, SrtpContext

OPENSSL = shutil.which("openssl")
SKIP = None
if os.environ.get("MINISIP_SKIP_INTEGRATION"):
    SKIP = "MINISIP_SKIP_INTEGRATION is set (the Debian-packages run covers unit tests only)"
elif OPENSSL is None:
    SKIP = "the openssl command is not installed (Debian package openssl)"

KEYING_RE = re.compile(rb"Keying material: ([0-9A-F]{120})")
PROFILE_RE = re.compile(rb"SRTP Extension negotiated, profile=(\S+)")


def rtp(seq: int) -> bytes:
    return struct.pack("!BBHII", 0x80, 0, seq, seq * 160, 0x0BADCAFE) + bytes(range(160))


NO_DTLS = "this pyOpenSSL has no DTLS (before 22.0, e.g. Ubuntu 22.04): DTLS-SRTP is not offered there"


class OpenSSLInteropTests(SynchronousTestCase):
    skip = None if DTLS_AVAILABLE else NO_DTLS
    skip = SKIP

    def setUp(self) -> None:
        self.peer = DtlsCertificate.generate()
        folder = self.mktemp()
        os.makedirs(folder)
        self.cert_file = os.path.join(folder, "peer.crt")
        self.key_file = os.path.join(folder, "peer.key")
        with open(self.cert_file, "wb") as handle:
            handle.write(self.peer.certificate.public_bytes(serialization.Encoding.PEM))
        with open(self.key_file, "wb") as handle:
            handle.write(self.peer.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                     serialization.NoEncryption()))
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.addCleanup(self.sock.close)
        self.output = b""

    def openssl(self, *args: str) -> subprocess.Popen[bytes]:
        assert OPENSSL is not None
        process = subprocess.Popen(
            [OPENSSL, *args, "-cert", self.cert_file, "-key", self.key_file,
             "-keymatexport", "EXTRACTOR-dtls_srtp", "-keymatexportlen", "60"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )

        def end() -> None:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)
            for stream in (process.stdin, process.stdout):
                if stream is not None:
                    stream.close()

        self.addCleanup(end)
        return process

    def read_until(self, process: subprocess.Popen[bytes], pattern: re.Pattern[bytes], timeout: float) -> bytes:
        assert process.stdout is not None
        deadline = time.monotonic() + timeout
        while (match := pattern.search(self.output)) is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.fail(f"openssl did not print {pattern.pattern!r}: {self.output[-2000:]!r}")
            ready, _, _ = select.select([process.stdout], [], [], remaining)
            if ready:
                chunk = os.read(process.stdout.fileno(), 65536)
                if not chunk:
                    self.fail(f"openssl exited: {self.output[-2000:]!r}")
                self.output += chunk
        return match.group(1)

    def run_transform(self, transform: DtlsTransform, clock: Clock, peer: tuple[str, int] | None,
                      timeout: float = 10.0, lose: int = 0) -> list[bytes]:
        """Shuttle datagrams between the socket and the transform until it is ready (bounded);
        the Clock follows real time so retransmissions happen as they would under the reactor.
        The first ``lose`` datagrams the transform sends are lost. Returns what it sent."""
        target: list[tuple[str, int] | None] = [peer]
        sent: list[bytes] = []

        def send(data: bytes) -> None:
            sent.append(data)
            if len(sent) > lose and target[0] is not None:
                self.sock.sendto(data, target[0])

        transform.attach(send)
        transform.start()
        deadline = time.monotonic() + timeout
        last = time.monotonic()
        while not transform.ready():
            self.assertNotEqual(transform.state, "failed", transform.failure)
            now = time.monotonic()
            self.assertLess(now, deadline, "no DTLS handshake with openssl")
            clock.advance(now - last)
            last = now
            ready, _, _ = select.select([self.sock], [], [], 0.1)
            if ready:
                data, addr = self.sock.recvfrom(65536)
                target[0] = addr
                for reply in transform.control(data, addr)[0]:
                    self.sock.sendto(reply, addr)
        return sent

    def check_keys(self, transform: DtlsTransform, material_hex: bytes, profile: bytes) -> None:
        """Key openssl's side from what it printed and check SRTP both ways."""
        material = bytes.fromhex(material_hex.decode())
        client = material[0:16] + material[32:46]
        server = material[16:32] + material[46:60]
        theirs = (server, client) if transform.role == "client" else (client, server)
        assert transform.suite is not None
        self.assertEqual(transform.suite.dtls_profile, profile)
        peer = SrtpContext(theirs[0], theirs[1], transform.suite)
        for seq in (1, 2, 3):
            self.assertEqual(peer.unprotect_rtp(transform.protect_rtp(rtp(seq)) or b""), rtp(seq))
            self.assertEqual(transform.unprotect_rtp(peer.protect_rtp(rtp(seq)) or b""), rtp(seq))

    def free_port(self) -> int:
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
        probe.close()
        return port

    def test_we_are_the_client(self) -> None:
        port = self.free_port()
        server = self.openssl("s_server", "-dtls", "-accept", f"127.0.0.1:{port}", "-verify", "1",
                              "-use_srtp", "SRTP_AES128_CM_SHA1_80")
        self.read_until(server, re.compile(rb"(ACCEPT)"), 10)
        clock = Clock()
        transform = DtlsTransform("client", ("sha-256", self.peer.fingerprint), clock)
        self.run_transform(transform, clock, ("127.0.0.1", port))
        material = self.read_until(server, KEYING_RE, 10)
        profile = self.read_until(server, PROFILE_RE, 1)
        self.check_keys(transform, material, profile)
        transform.close()

    def test_lost_client_hello_is_retransmitted_by_openssl_itself(self) -> None:
        """Under real time OpenSSL's own timer has expired when ours fires, so the retransmission
        is OpenSSL's (fresh record sequence numbers), the path a real peer needs when our final
        flight or its answer is lost."""
        port = self.free_port()
        server = self.openssl("s_server", "-dtls", "-accept", f"127.0.0.1:{port}", "-verify", "1",
                              "-use_srtp", "SRTP_AES128_CM_SHA1_80")
        self.read_until(server, re.compile(rb"(ACCEPT)"), 10)
        clock = Clock()
        transform = DtlsTransform("client", ("sha-256", self.peer.fingerprint), clock)
        sent = self.run_transform(transform, clock, ("127.0.0.1", port), lose=1)
        self.assertEqual(transform.retransmissions, 1)
        self.assertEqual(sent[0][3:11], bytes(8))  # epoch 0, record 0: the lost ClientHello
        self.assertEqual(sent[1][3:11], bytes(7) + b"\x01")  # OpenSSL's retransmission: record 1
        self.check_keys(transform, self.read_until(server, KEYING_RE, 10), self.read_until(server, PROFILE_RE, 1))
        transform.close()

    def test_we_are_the_server(self) -> None:
        port = self.sock.getsockname()[1]
        client = self.openssl("s_client", "-dtls", "-connect", f"127.0.0.1:{port}",
                              "-use_srtp", "SRTP_AES128_CM_SHA1_32:SRTP_AES128_CM_SHA1_80")
        clock = Clock()
        transform = DtlsTransform("server", ("sha-256", self.peer.fingerprint), clock)
        self.run_transform(transform, clock, None)
        material = self.read_until(client, KEYING_RE, 10)
        profile = self.read_until(client, PROFILE_RE, 1)
        self.assertIn(transform.suite, SUITES.values())
        self.check_keys(transform, material, profile)
        transform.close()

    def test_openssl_with_another_certificate_is_refused(self) -> None:
        port = self.sock.getsockname()[1]
        self.openssl("s_client", "-dtls", "-connect", f"127.0.0.1:{port}", "-use_srtp", "SRTP_AES128_CM_SHA1_80")
        clock = Clock()
        other = DtlsCertificate.generate()
        transform = DtlsTransform("server", ("sha-256", other.fingerprint), clock)
        with self.assertRaises(self.failureException) as caught:
            self.run_transform(transform, clock, None)
        self.assertIn("a=fingerprint", str(caught.exception))
        self.assertEqual(transform.fingerprint_mismatches, 1)
        self.assertIsNone(transform.protect_rtp(rtp(1)))
