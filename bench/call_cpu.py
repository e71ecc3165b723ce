"""CPU time per call through minisip's B2BUA, measured in-process: deterministic, no network.

The whole server (``minisip.app.Server``: SQLite store, registrar, core, transaction layer,
transport manager and the text log observer the service runs with) handles the exact call of
``bench/scenarios/uac_call_auth.xml``: INVITE, 407, ACK, INVITE with Proxy-Authorization, B-leg
INVITE, 180, 200 (ACKed by the server), ACK, BYE (answered by the server), 200. The datagrams are fed to the transport manager as the UDP socket
would; what the server sends is captured instead of written to a socket (the ``sendto`` syscall is
the only thing left out). The scripted caller and callee run outside the measured time.

Prints the server's CPU per call (the reactor thread, and the whole process with the store's
writer thread), and the calls per second one core could carry at that cost.

    python3 bench/call_cpu.py                     # 3 rounds of 3,000 calls
    python3 bench/call_cpu.py --calls 10000 --profile /tmp/call.prof   # cProfile the server part
    python3 bench/call_cpu.py --compare /tmp/old  # against another checkout, rounds interleaved

``--compare DIR`` runs this script alternately on DIR's ``minisip`` and on this one, in fresh
processes, and prints the best figure of each side with the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

_HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if __name__ == "__main__" and "--root" in sys.argv:
    _HERE = os.path.abspath(sys.argv[sys.argv.index("--root") + 1])
sys.path.insert(0, _HERE)

from twisted.internet import reactor  # noqa: E402
from twisted.logger import globalLogBeginner, textFileLogObserver  # noqa: E402

from minisip.app import Server  # noqa: E402
from minisip.config import load_config  # noqa: E402

try:
    from minisip.log import TextObserver  # noqa: E402
except ImportError:  # a checkout from before minisip.log (--compare): twistd's default observer then
    TextObserver = None  # type: ignore[assignment,misc]
from minisip.sip.auth import build_authorization  # noqa: E402
from minisip.sip.message import Request, Response, make_response, parse_message  # noqa: E402
from minisip.sip.types import Addr  # noqa: E402

HOST = "127.0.0.1"
CALLEE = "1000"
CALLERS = 99
UAS_PORT = 26000
SDP = ("v=0\r\no=- 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
       "m=audio 26100 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n").encode()


class _Socket:
    """Stands in for the UDP socket: keeps what the server sends."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple[str, int]]] = []

    def sendto(self, data: bytes, addr: tuple[str, int]) -> int:
        self.sent.append((data, addr))
        return len(data)


class _Transport:
    def __init__(self, sock: _Socket) -> None:
        self.socket = sock


class Bench:
    def __init__(self, datadir: str, log: str) -> None:
        conf = os.path.join(datadir, "bench.conf")
        with open(conf, "w") as f:
            f.write(f"[server]\ndomain = {HOST}\ndatadir = {datadir}\n[sip]\nudp =\ntcp =\ntls =\n"
                    "[security]\nmax_failures = 1000000\n")
            for n in range(1000, 1001 + CALLERS):
                f.write(f"[extension {n}]\npassword = {n}\n")
        if log != "none":
            self.logfile = open(os.devnull, "w")
            if log == "twisted" or TextObserver is None:
                obs = textFileLogObserver(self.logfile)
            else:
                obs = TextObserver(self.logfile)
            globalLogBeginner.beginLoggingTo([obs], redirectStandardIO=False)
        self.server = Server(load_config(conf), reactor)
        if hasattr(self.server, "build"):   # the service-tree shape (checkouts from the call-layer change on)
            self.server.build()
        else:
            self.server.start()
        self.sock = _Socket()
        proto = type("P", (), {"transport": _Transport(self.sock)})()
        mgr = self.server.transport
        mgr.udp.append((None, proto, HOST))
        mgr.local.setdefault("udp", (HOST, 5060))
        self.mgr = mgr
        self.cpu = 0.0
        self.n = 0
        self._register_callee()

    # -- the server side, timed -------------------------------------------------------------
    def feed(self, data: bytes, port: int) -> list[Request | Response]:
        src = Addr("udp", HOST, port)
        t = time.thread_time()
        self.mgr.bytes_received(data, src, datagram=True)
        reactor.runUntilCurrent()  # timers the server set (and any now due), as the reactor would
        self.cpu += time.thread_time() - t
        out = [parse_message(d) for d, _ in self.sock.sent]
        self.sock.sent.clear()
        return out

    # -- the phones, not timed ---------------------------------------------------------------
    def _register_callee(self) -> None:
        def reg(extra: str) -> list[Request | Response]:
            return self.feed(
                (f"REGISTER sip:{HOST} SIP/2.0\r\nVia: SIP/2.0/UDP {HOST}:{UAS_PORT};branch=z9hG4bK{os.urandom(6).hex()}\r\n"
                 f"From: <sip:{CALLEE}@{HOST}>;tag=r1\r\nTo: <sip:{CALLEE}@{HOST}>\r\nCall-ID: reg@bench\r\n"
                 f"CSeq: {2 if extra else 1} REGISTER\r\nContact: <sip:{CALLEE}@{HOST}:{UAS_PORT}>\r\n"
                 f"Expires: 3600\r\n{extra}Content-Length: 0\r\n\r\n").encode(), UAS_PORT)
        (ch,) = [m for m in reg("") if isinstance(m, Response)]
        value = next(v for v in ch.get_all("www-authenticate") if "MD5" in v)
        auth = build_authorization(value, "REGISTER", f"sip:{HOST}", CALLEE, CALLEE)
        final = [m for m in reg(f"Authorization: {auth}\r\n") if isinstance(m, Response)]
        assert final and final[-1].status == 200, final

    def call(self, i: int) -> None:
        ext = str(1001 + i % CALLERS)
        port = 40000 + i % CALLERS
        call_id = f"{i}-{os.urandom(4).hex()}@{HOST}"
        ftag = f"{i}SIPpTag00{i}"
        ruri = f"sip:{CALLEE}@{HOST}:5060"

        def invite(cseq: int, branch: str, extra: str = "") -> bytes:
            return (f"INVITE {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP {HOST}:{port};branch={branch}\r\n"
                    f"From: <sip:{ext}@{HOST}>;tag={ftag}\r\nTo: <sip:{CALLEE}@{HOST}>\r\nCall-ID: {call_id}\r\n"
                    f"CSeq: {cseq} INVITE\r\nContact: <sip:{ext}@{HOST}:{port}>\r\n{extra}Max-Forwards: 70\r\n"
                    f"Subject: minisip bench\r\nContent-Type: application/sdp\r\nContent-Length: {len(SDP)}\r\n\r\n"
                    ).encode() + SDP

        def plain(method: str, uri: str, cseq: int, branch: str, to: str) -> bytes:
            return (f"{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {HOST}:{port};branch={branch}\r\n"
                    f"From: <sip:{ext}@{HOST}>;tag={ftag}\r\nTo: {to}\r\nCall-ID: {call_id}\r\n"
                    f"CSeq: {cseq} {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n").encode()

        b1 = f"z9hG4bK-{i}-1"
        (ch,) = [m for m in self.feed(invite(1, b1), port) if isinstance(m, Response) and m.status == 407]
        self.feed(plain("ACK", ruri, 1, b1, ch.get("to") or ""), port)
        auth = build_authorization(ch.get_all("proxy-authenticate")[0], "INVITE", ruri, ext, ext)
        out = self.feed(invite(2, f"z9hG4bK-{i}-2", f"Proxy-Authorization: {auth}\r\n"), port)
        (binv,) = [m for m in out if isinstance(m, Request) and m.method == "INVITE"]
        btag = f"uas{i}"
        contact = [("Contact", f"<sip:{CALLEE}@{HOST}:{UAS_PORT}>")]
        out = self.feed(make_response(binv, 180, to_tag=btag, extra=contact).to_bytes(), UAS_PORT)
        assert [m.status for m in out if isinstance(m, Response)] == [180], out
        ok = make_response(binv, 200, to_tag=btag, extra=[*contact, ("Content-Type", "application/sdp")], body=SDP)
        out = self.feed(ok.to_bytes(), UAS_PORT)  # the B2BUA ACKs the callee's 200 at once
        (a200,) = [m for m in out if isinstance(m, Response) and m.status == 200]
        assert [m.method for m in out if isinstance(m, Request)] == ["ACK"], out
        target = str(a200.contacts()[0].uri)
        to = a200.get("to") or ""
        assert self.feed(plain("ACK", target, 2, f"z9hG4bK-{i}-3", to), port) == []
        out = self.feed(plain("BYE", target, 3, f"z9hG4bK-{i}-4", to), port)  # answered at once, passed on
        assert [m.status for m in out if isinstance(m, Response)] == [200], out
        (bye,) = [m for m in out if isinstance(m, Request) and m.method == "BYE"]
        assert self.feed(make_response(bye, 200).to_bytes(), UAS_PORT) == []
        self.n += 1


def run_once(calls: int, warmup: int, log: str, profile: str | None) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="minisip-callcpu-") as tmp:
        b = Bench(tmp, log)
        for i in range(warmup):
            b.call(i)
        b.cpu = 0.0
        prof = None
        if profile:
            import cProfile
            prof = cProfile.Profile()
            prof.enable()
        p0 = time.process_time()
        for i in range(warmup, warmup + calls):
            b.call(i)
        proc = time.process_time() - p0
        if prof is not None:
            prof.disable()
            prof.dump_stats(profile)
        b.server.store.close()
        return {"reactor_us": 1e6 * b.cpu / calls, "process_us_incl_phones": 1e6 * proc / calls}


def _child(root: str, a: argparse.Namespace) -> dict[str, float]:
    argv = [sys.executable, os.path.abspath(__file__), "--root", root, "--calls", str(a.calls),
            "--warmup", str(a.warmup), "--rounds", "1", "--json", "-"]
    argv += ["--log", a.log]
    out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--calls", type=int, default=3000)
    p.add_argument("--warmup", type=int, default=300)
    p.add_argument("--rounds", type=int, default=3, help="fresh processes per side; the best is kept")
    p.add_argument("--log", choices=("minisip", "twisted", "none"), default="minisip",
                   help="log observer: minisip.log's (as the service runs; default), twistd's default, or none")
    p.add_argument("--profile", help="write a cProfile of the measured calls here (one round)")
    p.add_argument("--compare", metavar="DIR", help="another checkout to measure alternately")
    p.add_argument("--root", help=argparse.SUPPRESS)
    p.add_argument("--json", help="write the figures as JSON to this file ('-': stdout)")
    a = p.parse_args()
    if a.json == "-" or a.profile:
        res = run_once(a.calls, a.warmup, a.log, a.profile)
        print(json.dumps(res))
        return 0
    sides = [("this", _HERE)] + ([("compare", os.path.abspath(a.compare))] if a.compare else [])
    best: dict[str, dict[str, float]] = {}
    for r in range(a.rounds):
        for name, root in sides:
            res = _child(root, a)
            print(f"round {r + 1} {name:8s} reactor {res['reactor_us']:7.1f} us/call", flush=True)
            if name not in best or res["reactor_us"] < best[name]["reactor_us"]:
                best[name] = res
    print()
    for name, root in sides:
        us = best[name]["reactor_us"]
        print(f"{name:8s} {root}: {us:7.1f} us of reactor CPU per call = {1e6 / us:5.0f} calls/s per core")
    if a.compare:
        print(f"ratio (compare / this): {best['compare']['reactor_us'] / best['this']['reactor_us']:.2f}x")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(best, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
