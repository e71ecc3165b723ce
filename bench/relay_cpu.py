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

On a shared machine its microseconds still move by 10-30% from run to run. ``--instructions`` counts
instead, with valgrind's callgrind (Debian package valgrind): each kind runs in a child under callgrind
once relaying ``--packets`` per call and once three times as many, both making the same packets, and the
difference of the two totals divided by the extra packets is the instructions per relayed packet
(start-up, setup and making the packets cancel out). The count is the same from run to run whatever else
the machine does; it does not see cache misses.
"""

from __future__ import annotations

import argparse
import re
import shutil
import struct
import subprocess
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


def measure(calls: int, packets: int, kind: str, built: int = 0) -> float:
    """Microseconds of this process's CPU per relayed packet; ``packets`` relayed per call, of at least
    as many made (``built``)."""
    saved = srtp_module.SRTP_DIRECT
    if kind == "srtp-methods":
        srtp_module.SRTP_DIRECT = None
    try:
        relay, streams = build(calls, max(packets, built), kind)
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


def instructions(calls: int, packets: int, kind: str) -> float:
    """Instructions per relayed packet of ``kind``, by callgrind (see the module docstring)."""
    totals = []
    for n in (packets, 3 * packets):
        run = subprocess.run(
            ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, __file__,
             "--calls", str(calls), "--packets", str(n), "--built", str(3 * packets), "--rounds", "1",
             "--only", kind],
            capture_output=True, text=True, timeout=1800, check=True)
        found = re.search(r"Collected\s*:\s*(\d+)", run.stderr)
        if found is None:
            raise SystemExit(f"callgrind printed no total for {kind}:\n{run.stderr[-2000:]}")
        totals.append(int(found.group(1)))
    return (totals[1] - totals[0]) / (calls * 2 * packets)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--packets", type=int, default=100, help="per call and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--built", type=int, default=0, help=argparse.SUPPRESS)  # packets made per call
    parser.add_argument("--only", choices=["plain", "srtp-direct", "srtp-methods"], help="measure this kind only")
    parser.add_argument("--instructions", action="store_true",
                        help="count instructions per packet with callgrind instead of timing")
    args = parser.parse_args()
    kinds = [args.only] if args.only else ["plain", "srtp-direct", "srtp-methods"]
    if args.instructions:
        if shutil.which("valgrind") is None:
            raise SystemExit("--instructions needs valgrind (apt-get install valgrind)")
        print(f"instructions per relayed packet, {args.calls} calls (callgrind, user space, no system calls):")
        for kind in kinds:
            print(f"  {kind:13} {instructions(args.calls, args.packets, kind):8.0f}", flush=True)
        return 0
    if srtp_module.SRTP_DIRECT is None:
        print("this pylibsrtp does not allow direct libsrtp calls: srtp-direct is the methods path too")
    best = {kind: float("inf") for kind in kinds}
    for _ in range(args.rounds):
        for kind in kinds:
            best[kind] = min(best[kind], measure(args.calls, args.packets, kind, args.built))
    print(f"CPU per relayed packet, {args.calls} calls, best of {args.rounds} rounds (no system calls):")
    for kind in kinds:
        print(f"  {kind:13} {best[kind]:6.2f} us")
    if len(kinds) == 3:
        print(f"  SRTP to SRTP, direct / methods: x{best['srtp-direct'] / best['srtp-methods']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
