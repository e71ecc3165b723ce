#!/usr/bin/env python3
"""CPU per relayed packet inside minisip's MediaRelay, with no sockets and no other process.

``N`` calls are bridged on a relay whose ports are fakes (what the relay writes is counted, not sent);
each call's first packet latches, then packets are handed to the endpoints round-robin across the calls,
as a busy relay sees them. Three kinds of call, measured alternately in one run (best of ``--rounds``):

- plain RTP to plain RTP;
- SDES-SRTP to SDES-SRTP with libsrtp called directly (``SrtpContext.recrypt_rtp``, the default where
  pylibsrtp allows it);
- the same through pylibsrtp's ``Session`` methods (``compat.SRTP_DIRECT`` off), the path before.

It leaves out the system calls and the reactor (media_bench.py measures those, against rtpengine), so
it is the figure to A/B a change to the per-datagram path with. Run it with the interpreter whose
packages you mean: ``.venv/bin/python bench/relay_cpu.py`` (PyPI) or ``/usr/bin/python3`` (Debian 12).
"""

from __future__ import annotations

import argparse
import struct
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pylibsrtp  # noqa: E402
from twisted.internet.task import Clock  # noqa: E402

from minisip.media import srtp as srtp_module  # noqa: E402
from minisip.media.relay import MediaRelay  # noqa: E402
from minisip.media.srtp import SdesTransform, new_key_salt  # noqa: E402

HOST = "127.0.0.1"


class CountingPort:
    """A bound port that counts what the relay writes."""

    def __init__(self) -> None:
        self.written = 0

    def write(self, data: bytes, addr: Any) -> None:
        self.written += 1

    def stopListening(self) -> None:
        pass


def listen(port: int, protocol: Any, interface: str) -> CountingPort:
    return CountingPort()


def build(calls: int, packets: int, kind: str) -> tuple[MediaRelay, list[tuple[Any, tuple[str, int], list[bytes]]]]:
    """A relay with ``calls`` bridged calls of ``kind`` and, per call, ``packets`` packets from its phone A."""
    relay = MediaRelay(None, HOST, "20000-39999", clock=Clock(), listen_udp=listen, timeout=0)
    out = []
    for i in range(calls):
        a = relay.open_endpoint(f"c{i}", "a", rtcp_mux=True)
        b = relay.open_endpoint(f"c{i}", "b", rtcp_mux=True)
        a.set_remote((HOST, 40000 + 2 * i))
        b.set_remote((HOST, 50000 + 2 * i))
        phone_key = new_key_salt()
        if kind != "plain":
            a.set_transform(SdesTransform(new_key_salt(), phone_key))
            b.set_transform(SdesTransform(new_key_salt(), new_key_salt()))
        relay.bridge(a, b)
        plain = [struct.pack("!BBHII", 0x80, 0, seq, seq * 160, 1000 + i) + b"\xd5" * 160 for seq in range(packets)]
        if kind != "plain":
            phone = pylibsrtp.Session(pylibsrtp.Policy(key=phone_key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND))
            plain = [phone.protect(p) for p in plain]
        out.append((a, (HOST, 40000 + 2 * i), plain))
    return relay, out


def measure(calls: int, packets: int, kind: str) -> float:
    """Microseconds of this process's CPU per relayed packet."""
    saved = srtp_module.SRTP_DIRECT
    if kind == "srtp-methods":
        srtp_module.SRTP_DIRECT = None
    try:
        relay, streams = build(calls, packets, kind)
    finally:
        srtp_module.SRTP_DIRECT = saved
    for endpoint, source, wire in streams:
        endpoint._on_rtp_port(wire[0], source)   # latch
    start = time.process_time()
    for n in range(1, packets):
        for endpoint, source, wire in streams:
            endpoint._on_rtp_port(wire[n], source)
    elapsed = time.process_time() - start
    relayed = sum(endpoint.peer.packets_out for endpoint, _, _ in streams)
    relay.close()
    if relayed != calls * packets:
        raise SystemExit(f"{kind}: {relayed} of {calls * packets} packets relayed")
    return 1e6 * elapsed / (calls * (packets - 1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--packets", type=int, default=100, help="per call and round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    kinds = ["plain", "srtp-direct", "srtp-methods"]
    if srtp_module.SRTP_DIRECT is None:
        print("this pylibsrtp does not allow direct libsrtp calls: srtp-direct is the methods path too")
    best = {kind: float("inf") for kind in kinds}
    for _ in range(args.rounds):
        for kind in kinds:
            best[kind] = min(best[kind], measure(args.calls, args.packets, kind))
    print(f"CPU per relayed packet, {args.calls} calls, best of {args.rounds} rounds (no system calls):")
    for kind in kinds:
        print(f"  {kind:13} {best[kind]:6.2f} us")
    print(f"  SRTP to SRTP, direct / methods: x{best['srtp-direct'] / best['srtp-methods']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
