"""CPU-time micro-benchmark of the SDP model (minisip.sip.sdp) and the body helpers (minisip.sip.body).

Prints the cost of one operation in microseconds, best of ``--repeat`` runs of ``--number`` calls,
measured with ``time.process_time`` so that other load on a shared machine counts as little as
possible. The descriptions are the samples in tests/data/sdp (SIPp's default, a typical 15-line
baresip audio offer, a Chrome WebRTC offer); "media round" is what an anchoring media layer does
with an offer: parse, read codecs, direction and keys, rewrite address and port, serialize.

    python3 bench/sdp_bench.py                  # all operations
    python3 bench/sdp_bench.py -n 20000 -r 7    # longer runs
    python3 bench/sdp_bench.py --json out.json  # also write the figures as JSON
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable

_HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _HERE)

from minisip.sip.body import extract_sdp, replace_sdp  # noqa: E402
from minisip.sip.sdp import parse_sdp  # noqa: E402


def _sample(name: str) -> bytes:
    with open(os.path.join(_HERE, "tests", "data", "sdp", name), "rb") as f:
        return f.read()


SIPP = _sample("sipp-default.sdp")
BARESIP = _sample("baresip-srtp.sdp")
CHROME = _sample("chrome-offer.sdp")
MULTIPART_TYPE = "multipart/mixed; boundary=unique-boundary-1"
MULTIPART = (b"--unique-boundary-1\r\nContent-Type: application/sdp\r\n\r\n" + BARESIP
             + b"\r\n--unique-boundary-1\r\nContent-Type: application/ISUP; version=nxv3; base=etsi121\r\n"
             b"Content-Disposition: signal; handling=optional\r\n\r\n" + bytes(range(40))
             + b"\r\n--unique-boundary-1--\r\n")


def media_round(data: bytes) -> bytes:
    """An anchoring media layer's work on one offer."""
    sd = parse_sdp(data)
    for m in sd.media:
        _ = (m.rtpmap, m.fmtp, m.direction, m.on_hold, m.crypto, m.fingerprint, m.setup, m.ice_ufrag, m.rtcp_mux)
        m.set_connection("203.0.113.1", 40000)
        m.remove_crypto_and_ice()
    sd.set_connection("203.0.113.1")
    sd.bump_version()
    return sd.to_bytes()


OPERATIONS: list[tuple[str, Callable[[], object]]] = [
    ("parse SIPp (7 lines)", lambda: parse_sdp(SIPP)),
    ("parse baresip SRTP (19 lines)", lambda: parse_sdp(BARESIP)),
    ("parse Chrome offer (86 lines)", lambda: parse_sdp(CHROME)),
    ("parse+serialize SIPp", lambda: parse_sdp(SIPP).to_bytes()),
    ("parse+serialize baresip SRTP", lambda: parse_sdp(BARESIP).to_bytes()),
    ("parse+serialize Chrome offer", lambda: parse_sdp(CHROME).to_bytes()),
    ("media round baresip SRTP", lambda: media_round(BARESIP)),
    ("media round Chrome offer", lambda: media_round(CHROME)),
    ("extract_sdp multipart", lambda: extract_sdp(MULTIPART_TYPE, MULTIPART)),
    ("replace_sdp multipart", lambda: replace_sdp(MULTIPART_TYPE, MULTIPART, SIPP)),
]


def measure(op: Callable[[], object], number: int, repeat: int) -> float:
    """Best microseconds per call over ``repeat`` runs of ``number`` calls."""
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        for _ in range(number):
            op()
        best = min(best, time.process_time() - start)
    return best / number * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", "--number", type=int, default=5000, help="calls per run")
    parser.add_argument("-r", "--repeat", type=int, default=5, help="runs (the best counts)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    results = {}
    for name, op in OPERATIONS:
        results[name] = us = measure(op, args.number, args.repeat)
        sys.stdout.write(f"{name:<34} {us:8.2f} us\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"python": sys.version.split()[0], "us_per_op": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
