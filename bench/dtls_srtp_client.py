"""The DTLS-SRTP client of the media benchmark: handshakes over real UDP with a relay's DTLS endpoints.

media_bench.py starts it as a child process. It uses minisip's own ``DtlsTransform`` in the client role
(pyOpenSSL over memory BIOs, one fresh UDP socket on 127.0.0.1 per handshake, as a phone or browser per
call would have) with its own certificate, so that minisip and rtpengine face the same client. A
handshake counts when the client has verified the server's fingerprint and exported the SRTP keys (the
server's Finished has arrived, so the server has completed too); a handshake that fails or takes longer
than the timeout counts as failed. Retransmissions run on a Twisted ``Clock`` advanced with real time.

stdin: JSON lines ``{"op": "run", "targets": [[port, hash, fingerprint], ...], "concurrency": K,
"timeout": S}``; stdout: first ``{"fingerprint": [hash, value]}``, then one JSON result per run.
"""

from __future__ import annotations

import json
import select
import socket
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from twisted.internet.task import Clock  # noqa: E402

from minisip.media.dtls import DtlsCertificate, DtlsTransform  # noqa: E402

HOST = "127.0.0.1"


class Handshake:
    """One client handshake toward (HOST, port) on its own socket."""

    __slots__ = ("sock", "addr", "transform", "started")

    def __init__(self, port: int, fingerprint: tuple[str, str], clock: Clock, certificate: DtlsCertificate) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((HOST, 0))
        self.sock.setblocking(False)
        self.addr = (HOST, port)
        self.started = time.monotonic()
        self.transform = DtlsTransform("client", fingerprint, clock, certificate)
        self.transform.attach(self.send)

    def send(self, datagram: bytes) -> None:
        try:
            self.sock.sendto(datagram, self.addr)
        except OSError:
            pass

    def close(self) -> None:
        self.transform.close()
        self.sock.close()


def run(targets: list[list[Any]], concurrency: int, timeout: float, certificate: DtlsCertificate) -> dict[str, Any]:
    """Handshake with every target, ``concurrency`` at a time; counts, wall and CPU time, latencies."""
    clock = Clock()
    poller = select.epoll()
    active: dict[int, Handshake] = {}
    pending = list(reversed(targets))
    done = failed = 0
    failures: dict[str, int] = {}
    latencies: list[float] = []
    cpu0, wall0 = time.process_time(), time.monotonic()
    last = wall0

    def finish(fd: int, ok: bool, reason: str = "") -> None:
        nonlocal done, failed
        handshake = active.pop(fd)
        poller.unregister(fd)
        if ok:
            done += 1
            latencies.append(time.monotonic() - handshake.started)
        else:
            failed += 1
            failures[reason] = failures.get(reason, 0) + 1
        handshake.close()

    while pending or active:
        while pending and len(active) < concurrency:
            port, algorithm, value = pending.pop()
            handshake = Handshake(int(port), (algorithm, value), clock, certificate)
            active[handshake.sock.fileno()] = handshake
            poller.register(handshake.sock.fileno(), select.EPOLLIN)
            handshake.transform.start()
        for fd, _ in poller.poll(0.05):
            handshake = active.get(fd)
            if handshake is None:
                continue
            while True:
                try:
                    data, addr = handshake.sock.recvfrom(4096)
                except OSError:
                    break
                replies, _ = handshake.transform.control(data, addr)
                for reply in replies:
                    handshake.send(reply)
            state = handshake.transform.state
            if state == "ready":
                finish(fd, True)
            elif state == "failed":
                finish(fd, False, str(handshake.transform.failure))
        now = time.monotonic()
        clock.advance(now - last)
        last = now
        for fd, handshake in list(active.items()):
            if handshake.transform.state == "failed":
                finish(fd, False, str(handshake.transform.failure))
            elif now - handshake.started > timeout:
                finish(fd, False, "timeout")
    wall = time.monotonic() - wall0
    latencies.sort()

    def pct(q: float) -> float:
        return 1000 * latencies[min(len(latencies) - 1, int(len(latencies) * q))] if latencies else 0.0

    return {"done": done, "failed": failed, "failures": failures, "wall": wall,
            "client_cpu": time.process_time() - cpu0, "latency_p50_ms": pct(0.5), "latency_p99_ms": pct(0.99)}


def main() -> int:
    certificate = DtlsCertificate.generate()
    print(json.dumps({"fingerprint": ["sha-256", certificate.fingerprint]}), flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        if command.get("op") != "run":
            break
        result = run(command["targets"], int(command.get("concurrency", 16)), float(command.get("timeout", 10)),
                     certificate)
        print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
