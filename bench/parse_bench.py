"""CPU-time micro-benchmark of the SIP parse and serialize path (minisip.sip.message).

Prints the cost of one operation in microseconds, best of ``--repeat`` runs of ``--number`` calls,
measured with ``time.process_time`` so that other load on a shared machine counts as little as
possible. The messages are those SIPp sends and receives in ``bench/scenarios``; the "round"
operations replay what the transport, transaction layer, precheck and core read from a message.
Each operation cycles through POOL copies of its message that differ in user, tags, branch and
Call-ID, as under load (the parser's caches of recurring values miss); "REGISTER pairs" is SIPp's
challenged REGISTER followed by the authenticated one (same dialog values: they hit), and "same
bytes again" the best case of a retransmission.

    python3 bench/parse_bench.py                    # all operations
    python3 bench/parse_bench.py -n 20000 -r 7      # longer runs
    python3 bench/parse_bench.py --json out.json    # also write the figures as JSON
    python3 bench/parse_bench.py --compare /tmp/old  # against another checkout, runs interleaved

``--compare DIR`` runs this script alternately on DIR's ``minisip`` package and on this one
(``--rounds`` times each, in fresh processes) and prints the best figure of each side with the
speedup, so that a noisy shared machine affects both sides alike.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

_HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if __name__ == "__main__" and "--root" in sys.argv:
    _HERE = os.path.abspath(sys.argv[sys.argv.index("--root") + 1])
sys.path.insert(0, _HERE)

from minisip.sip.message import Request, Response, make_response, parse_message  # noqa: E402
from minisip.sip.uri import SipURI, parse_name_addr  # noqa: E402
from minisip.sip.validate import precheck_request  # noqa: E402

POOL = 5000  # distinct messages per kind: more than the parser's bounded caches hold


def _wire(text: str, body: str = "") -> str:
    """A message template: SIPp-style indentation removed, CRLF line ends, Content-Length filled in."""
    lines = text.strip("\n").split("\n")
    head = "\r\n".join(line.strip() for line in lines)
    b = body.strip("\n").replace("\n", "\r\n") + "\r\n" if body else ""
    head = head.replace("[len]", str(len(b))).replace("[uri]", 'uri="sip:127.0.0.1:5060",').replace("[creds]", _CREDS)
    return head + "\r\n\r\n" + b


_CREDS = ('nonce="5f2a9c1e0b7d4e8a9c3f1a2b3c4d5e6f",response="0123456789abcdef0123456789abcdef",'
          'algorithm=MD5')


def _pool(template: str) -> list[bytes]:
    """POOL copies of a message, each with its own user, tags, branch and Call-ID (``@N@``), as under
    SIPp load where every dialog and transaction is new."""
    return [template.replace("@N@", str(10000 + i)).encode() for i in range(POOL)]


# Second REGISTER of bench/scenarios/reg_auth.xml, as SIPp renders it, plus a User-Agent (11 headers).
REGISTER_T = _wire("""
REGISTER sip:127.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-3141-@N@-2
From: <sip:@N@@127.0.0.1>;tag=3141SIPpTag00@N@
To: <sip:@N@@127.0.0.1>
Call-ID: @N@-3141@127.0.0.1
CSeq: 2 REGISTER
Contact: <sip:@N@@127.0.0.1:5061>
Authorization: Digest username="@N@",realm="minisip",cnonce="6b8b4567",nc=00000001,qop=auth,[uri][creds]
Max-Forwards: 70
Expires: 3600
User-Agent: SIPp/3.6.1
Content-Length: 0
""")

SDP = """
v=0
o=- 53655765 2353687637 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio 6000 RTP/AVP 0
a=rtpmap:0 PCMU/8000
"""

# Second INVITE of bench/scenarios/uac_call_auth.xml (with Proxy-Authorization and SDP).
INVITE_T = _wire("""
INVITE sip:1000@127.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK-4242-@N@-3
From: <sip:@N@@127.0.0.1>;tag=4242SIPpTag00@N@
To: <sip:1000@127.0.0.1>
Call-ID: @N@-4242@127.0.0.1
CSeq: 2 INVITE
Contact: <sip:@N@@127.0.0.1:5062>
Proxy-Authorization: Digest username="@N@",realm="minisip",uri="sip:1000@127.0.0.1:5060",[creds]
Max-Forwards: 70
Subject: minisip bench
Content-Type: application/sdp
Content-Length: [len]
""", SDP)

# 200 OK to the B2BUA's INVITE from bench/scenarios/uas_call.xml, with the Record-Route set a proxy
# in between would add and a display name in From.
OK_INVITE_T = _wire("""
SIP/2.0 200 OK
Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKa1b2c3d4e5f6@N@;rport=5060
Record-Route: <sip:10.0.0.1;lr>, <sip:10.0.0.2:5070;transport=udp;lr>
From: "Alice" <sip:@N@@127.0.0.1>;tag=9f8e7d6c@N@
To: <sip:1000@127.0.0.1:5063>;tag=5151SIPpTag01@N@
Call-ID: 3c26fb0a51a8f9e1@N@@127.0.0.1
CSeq: 1 INVITE
Contact: <sip:1000@127.0.0.1:5063;transport=udp>
Content-Type: application/sdp
Content-Length: [len]
""", SDP)

# In-dialog ACK for the 200 OK (bench/scenarios/uac_call_auth.xml).
ACK_T = _wire("""
ACK sip:1000@127.0.0.1:5063 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK-4242-@N@-5
From: <sip:@N@@127.0.0.1>;tag=4242SIPpTag00@N@
To: <sip:1000@127.0.0.1>;tag=a9b8c7d6@N@
Call-ID: @N@-4242@127.0.0.1
CSeq: 2 ACK
Contact: <sip:@N@@127.0.0.1:5062>
Max-Forwards: 70
Content-Length: 0
""")

REGISTER = _pool(REGISTER_T)
# SIPp's REGISTER pair: the first one (challenged with a 401) then the second one, same dialog values.
REGISTER_PAIRS = [m for pair in zip(_pool(REGISTER_T.replace("CSeq: 2", "CSeq: 1").replace(
    "\r\nAuthorization:" + REGISTER_T.split("\r\nAuthorization:")[1].split("\r\n")[0], "")), REGISTER)
    for m in pair]
INVITE = _pool(INVITE_T)
OK_INVITE = _pool(OK_INVITE_T)
ACK = _pool(ACK_T)


def _cycle(pool: list[bytes], fn: Callable[[bytes], object]) -> Callable[[], object]:
    it = itertools.cycle(pool)
    return lambda: fn(next(it))


def _op_make_response_register() -> Callable[[], object]:
    req = parse_message(REGISTER[0])
    assert isinstance(req, Request)
    extra = [("Contact", "<sip:10000@127.0.0.1:5061>;expires=3600"), ("Date", "Mon, 03 Jun 2024 10:00:00 GMT")]

    def op() -> object:
        return make_response(req, 200, "OK", to_tag="r1a2b3c4", extra=extra).to_bytes()
    return op


def _op_make_response_trying() -> Callable[[], object]:
    req = parse_message(INVITE[0])
    assert isinstance(req, Request)
    return lambda: make_response(req, 100).to_bytes()


def _op_request_to_bytes() -> Callable[[], object]:
    return parse_message(INVITE[0]).to_bytes


ALLOWED = frozenset({"INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "REGISTER", "INFO", "UPDATE", "PRACK",
                     "REFER", "NOTIFY", "SUBSCRIBE", "MESSAGE"})
SUPPORTED = frozenset({"replaces", "timer", "path", "outbound", "100rel"})
ACCEPTED = frozenset({"application/sdp", "application/dtmf-relay", "message/sipfrag", "text/plain"})


def _transport_and_transaction(msg: Request, source_host: str) -> None:
    """What TransportManager.bytes_received and TransactionLayer.receive_request read."""
    via = msg.vias[0]
    if via.host.strip("[]") != source_host:
        via.params["received"] = source_host
    _ = "rport" in via.params
    _ = msg.to_tag
    via = msg.top_via
    _ = (via.branch, via.host, via.port, msg.method)


def round_register(data: bytes) -> object:
    """The authenticated REGISTER, from bytes to the 200 OK on the wire."""
    req = parse_message(data)
    assert isinstance(req, Request)
    _transport_and_transaction(req, "127.0.0.1")
    precheck_request(req, allowed_methods=ALLOWED, supported=SUPPORTED, accepted_types=ACCEPTED)
    _ = req.to_tag
    _ = [v for k, _, v in req.headers if k == "authorization"]
    _ = req.to.uri.user
    values = req.get_all("contact")
    _ = req.get("expires")
    _ = (req.call_id, req.cseq[0])
    contacts = [str(parse_name_addr(v).uri) for v in values]
    _ = req.get("user-agent")
    extra = [("Contact", f"<{c}>;expires=3600") for c in contacts]
    extra.append(("Date", "Mon, 03 Jun 2024 10:00:00 GMT"))
    return make_response(req, 200, "OK", to_tag="r1a2b3c4", extra=extra).to_bytes()


def round_invite(data: bytes) -> object:
    """The authenticated INVITE as the B2BUA's a-leg reads it, and its 100 Trying."""
    req = parse_message(data)
    assert isinstance(req, Request)
    _transport_and_transaction(req, "127.0.0.1")
    precheck_request(req, allowed_methods=ALLOWED, supported=SUPPORTED, accepted_types=ACCEPTED)
    _ = req.to_tag
    _ = [v for k, _, v in req.headers if k == "proxy-authorization"]
    _ = (req.to.uri.user, req.get("max-forwards"), req.from_.display, req.call_id, req.from_tag, req.cseq[0])
    _ = (req.get("to"), req.get("from"), req.get_all("record-route"))
    contacts = req.contacts()
    _ = str(contacts[0].uri) if contacts else str(req.from_.uri)
    return make_response(req, 100).to_bytes()


def round_response(data: bytes) -> object:
    """A 200 OK to an INVITE as the transaction layer and the b-leg read it."""
    resp = parse_message(data)
    assert isinstance(resp, Response)
    _ = (resp.top_via.branch or "", resp.cseq[1])
    _ = (resp.call_id, resp.to_tag, resp.from_tag, resp.cseq[0], resp.status)
    _ = (resp.get_all("contact"), resp.get_all("record-route"), resp.get("content-type"))
    return resp


def round_ack(data: bytes) -> object:
    """An in-dialog ACK through transport, transaction matching and dialog lookup."""
    req = parse_message(data)
    assert isinstance(req, Request)
    _transport_and_transaction(req, "127.0.0.1")
    _ = (req.call_id, req.cseq[0], req.to_tag, req.get("content-type"))
    return req


OPERATIONS: list[tuple[str, Callable[[], Callable[[], object]]]] = [
    ("parse REGISTER (auth, 11 headers)", lambda: _cycle(REGISTER, parse_message)),
    ("parse INVITE with SDP", lambda: _cycle(INVITE, parse_message)),
    ("parse 200 OK (Record-Route, Contact, SDP)", lambda: _cycle(OK_INVITE, parse_message)),
    ("parse ACK", lambda: _cycle(ACK, parse_message)),
    ("parse REGISTER pairs (1st, then 2nd w/ auth)", lambda: _cycle(REGISTER_PAIRS, parse_message)),
    ("parse REGISTER, same bytes again", lambda: _cycle(REGISTER[:1], parse_message)),
    ("make_response 200 REGISTER + to_bytes", _op_make_response_register),
    ("make_response 100 Trying + to_bytes", _op_make_response_trying),
    ("Request.to_bytes (INVITE)", _op_request_to_bytes),
    ("round: REGISTER parse..200 OK bytes", lambda: _cycle(REGISTER, round_register)),
    ("round: INVITE parse..100 Trying bytes", lambda: _cycle(INVITE, round_invite)),
    ("round: 200 OK parse + accessors", lambda: _cycle(OK_INVITE, round_response)),
    ("round: ACK parse + accessors", lambda: _cycle(ACK, round_ack)),
]


def measure(op: Callable[[], object], number: int, repeat: int) -> float:
    """Best per-call CPU time in microseconds."""
    for _ in range(min(number, 200)):
        op()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.process_time()
        for _ in range(number):
            op()
        best = min(best, time.process_time() - t0)
    return best / number * 1e6


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-n", "--number", type=int, default=10000, help="calls per run (default 10000)")
    p.add_argument("-r", "--repeat", type=int, default=5, help="runs; the best one counts (default 5)")
    p.add_argument("-k", "--only", help="only operations whose name contains this text")
    p.add_argument("--json", help="also write {operation: microseconds} to this file")
    p.add_argument("--root", help="import minisip from this checkout instead of this one")
    p.add_argument("--compare", metavar="DIR", help="compare with the minisip of another checkout")
    p.add_argument("--rounds", type=int, default=3, help="--compare: runs of each side (default 3)")
    args = p.parse_args(argv)
    if args.compare:
        return compare(args)
    # A SIPp-shaped message must parse and round-trip, or the figures mean nothing.
    for pool in (REGISTER, INVITE, OK_INVITE, ACK):
        wire = parse_message(pool[0]).to_bytes()
        assert parse_message(wire).to_bytes() == wire
    assert isinstance(parse_message(REGISTER[0]).contacts()[0].uri, SipURI)
    results: dict[str, float] = {}
    print(f"python {sys.version.split()[0]}, process_time, best of {args.repeat} x {args.number}")
    for name, factory in OPERATIONS:
        if args.only and args.only not in name:
            continue
        us = measure(factory(), args.number, args.repeat)
        results[name] = us
        print(f"{name:<44} {us:8.2f} us")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


def compare(args: argparse.Namespace) -> int:
    """Run the old and the new side alternately in fresh processes; print the best of each."""
    sides = {"before": os.path.abspath(args.compare), "after": _HERE}
    best: dict[str, dict[str, float]] = {"before": {}, "after": {}}
    extra = ["-n", str(args.number), "-r", str(args.repeat)] + (["-k", args.only] if args.only else [])
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.rounds):
            for side, root in sides.items():
                out = os.path.join(tmp, f"{side}{i}.json")
                subprocess.run([sys.executable, os.path.abspath(__file__), "--root", root, "--json", out, *extra],
                               check=True, stdout=subprocess.DEVNULL)
                with open(out) as f:
                    for name, us in json.load(f).items():
                        best[side][name] = min(us, best[side].get(name, float("inf")))
    print(f"best of {args.rounds} interleaved runs x best of {args.repeat} x {args.number} calls (process_time)")
    print(f"{'operation':<44} {'before':>9} {'after':>9} {'speedup':>8}")
    for name, before in best["before"].items():
        after = best["after"].get(name)
        if after is not None:
            print(f"{name:<44} {before:7.2f}us {after:7.2f}us {before / after:7.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(best, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
