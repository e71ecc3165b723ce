"""DTLS-SRTP handshakes per second and SRTP cost per packet, in-process (no network).

Handshakes: a client and a server ``DtlsTransform`` (each with its own certificate, as in a call)
handshake in memory; the datagrams are passed by hand. The CPU time spent inside the server's
``control`` calls (OpenSSL work, fingerprint check, key export, libsrtp sessions) is measured
separately from the client's, and the figure printed is handshakes per second of server CPU, which
is what a relay doing DTLS for many browsers pays (the client side is the browser's).

SRTP: one 172-byte G.711 RTP packet (20 ms) protected by one ``SdesTransform`` and unprotected by
its peer, per packet, next to a plain copy of the same bytes (what a relay does for plain RTP).

    python3 bench/dtls_bench.py                    # 3 rounds of 300 handshakes and 100,000 packets
    python3 bench/dtls_bench.py --handshakes 1000 --packets 300000 --rounds 5
"""

from __future__ import annotations

import argparse
import os
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from twisted.internet.task import Clock  # noqa: E402

from minisip.media import compat  # noqa: E402
from minisip.media.dtls import DtlsCertificate, DtlsTransform  # noqa: E402
from minisip.media.srtp import AES_CM_128_HMAC_SHA1_80, SdesTransform, new_key_salt  # noqa: E402

CLIENT_ADDR = ("127.0.0.1", 40000)
SERVER_ADDR = ("127.0.0.1", 20000)


def handshakes(count: int) -> tuple[float, float, float]:
    """(server CPU s, client CPU s, wall s) for ``count`` complete handshakes with RTP proven both ways."""
    clock = Clock()
    client_cert, server_cert = DtlsCertificate.generate(), DtlsCertificate.generate()
    server_cpu = client_cpu = 0.0
    rtp = struct.pack("!BBHII", 0x80, 0, 1, 160, 0x1234) + bytes(160)
    wall = time.perf_counter()
    for _ in range(count):
        to_client: list[bytes] = []
        to_server: list[bytes] = []
        started = time.thread_time()
        server = DtlsTransform("server", ("sha-256", client_cert.fingerprint), clock, server_cert)
        server.attach(to_client.append)
        server_cpu += time.thread_time() - started
        started = time.thread_time()
        client = DtlsTransform("client", ("sha-256", server_cert.fingerprint), clock, client_cert)
        client.attach(to_server.append)
        client.start()
        client_cpu += time.thread_time() - started
        while to_server or to_client:
            started = time.thread_time()
            while to_server:
                to_client.extend(server.control(to_server.pop(0), CLIENT_ADDR)[0])
            server_cpu += time.thread_time() - started
            started = time.thread_time()
            while to_client:
                to_server.extend(client.control(to_client.pop(0), SERVER_ADDR)[0])
            client_cpu += time.thread_time() - started
        if not (client.ready() and server.ready()):
            raise SystemExit(f"handshake failed: client {client.failure}, server {server.failure}")
        if server.unprotect_rtp(client.protect_rtp(rtp) or b"") != rtp:
            raise SystemExit("SRTP keys differ after the handshake")
        started = time.thread_time()
        server.close()
        server_cpu += time.thread_time() - started
        client.close()
    return server_cpu, client_cpu, time.perf_counter() - wall


def srtp_cost(count: int) -> tuple[float, float]:
    """(us per packet for protect+unprotect, us per packet for a plain copy)."""
    key_a, key_b = new_key_salt(), new_key_salt()
    sender = SdesTransform(key_a, key_b, AES_CM_128_HMAC_SHA1_80)
    receiver = SdesTransform(key_b, key_a, AES_CM_128_HMAC_SHA1_80)
    packets = [struct.pack("!BBHII", 0x80, 8, seq & 0xFFFF, seq * 160, 0x5678) + bytes(160) for seq in range(count)]
    started = time.thread_time()
    for packet in packets:
        receiver.unprotect_rtp(sender.protect_rtp(packet))  # type: ignore[arg-type]
    crypto = time.thread_time() - started
    if receiver.auth_failures or receiver.replay_failures:
        raise SystemExit("SRTP failures in the benchmark")
    started = time.thread_time()
    for packet in packets:
        bytes(bytearray(packet))
    copy = time.thread_time() - started
    return crypto / count * 1e6, copy / count * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--handshakes", type=int, default=300)
    parser.add_argument("--packets", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, pyOpenSSL {'.'.join(map(str, compat.PYOPENSSL_VERSION))}, "
          f"pylibsrtp {'.'.join(map(str, compat.PYLIBSRTP_VERSION))}")
    best_server = best_client = best_wall = float("inf")
    best_crypto = best_copy = float("inf")
    for round_number in range(args.rounds):
        server, client, wall = handshakes(args.handshakes)
        crypto, copy = srtp_cost(args.packets)
        print(f"round {round_number + 1}: server {args.handshakes / server:6.0f} handshakes/s of CPU, "
              f"client {args.handshakes / client:6.0f}/s, both ends {args.handshakes / wall:6.0f}/s wall; "
              f"SRTP {crypto:5.2f} us/packet, copy {copy:5.2f} us/packet", flush=True)
        best_server, best_client, best_wall = min(best_server, server), min(best_client, client), min(best_wall, wall)
        best_crypto, best_copy = min(best_crypto, crypto), min(best_copy, copy)
    print()
    print(f"DTLS-SRTP handshakes: {args.handshakes / best_server:.0f}/s of server CPU on one core "
          f"({best_server / args.handshakes * 1e3:.2f} ms each; client side {best_client / args.handshakes * 1e3:.2f} ms; "
          f"both ends in one process {args.handshakes / best_wall:.0f}/s)")
    print(f"SRTP protect+unprotect: {best_crypto:.2f} us per 172-byte packet; plain copy {best_copy:.2f} us "
          f"(+{best_crypto - best_copy:.2f} us, {best_crypto / best_copy:.1f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
