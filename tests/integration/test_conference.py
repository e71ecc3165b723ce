"""Conference rooms against a real minisip process: small SIP phones written here (UDP signalling with
digest auth, a real RTP stream each) join room 800 through the server's relay and mixer.

Three phones each send their own tone; a Goertzel filter on what each receives finds the other two
tones and not its own. A sixth caller to a room of five gets 486 "Conference Room Full"; a caller keying
a wrong PIN three times (RFC 4733 telephone-events in early media) gets 403. Every wait is bounded, every
socket is on 127.0.0.1, the server is ended by its PID.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import socket
import sqlite3
import struct
import time
from typing import Any

from twisted.trial import unittest

from minisip.media import g711
from minisip.sip.auth import build_authorization
from minisip.sip.message import Response, parse_message
from minisip.sip.sdp import parse_sdp
from tests.integration.harness import Minisip, plugin_folder
from tests.integration.media_peers import ports_held

BASE_PORT = 33000
FRAME = 160
RATE = 8000
TONES = {"100": 500.0, "200": 1100.0, "300": 1700.0}
EXTS = {n: f"secret-{n}" for n in ("100", "200", "300", "400", "500", "600", "700")}


def goertzel(samples: list[int], frequency: float) -> float:
    """The power of ``frequency`` in ``samples`` (one Goertzel filter bin)."""
    coeff = 2 * math.cos(2 * math.pi * frequency / RATE)
    s1 = s2 = 0.0
    for x in samples:
        s1, s2 = x + coeff * s1 - s2, s1
    return s1 * s1 + s2 * s2 - coeff * s1 * s2


class Phone:
    """A SIP phone on UDP (one call at a time) with an RTP socket: enough of RFC 3261 for these tests."""

    def __init__(self, ext: str, server_port: int) -> None:
        self.ext = ext
        self.server = ("127.0.0.1", server_port)
        self.sip = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sip.bind(("127.0.0.1", 0))
        self.rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rtp.bind(("127.0.0.1", 0))
        self.rtp.setblocking(False)
        self.sip_port = self.sip.getsockname()[1]
        self.rtp_port = self.rtp.getsockname()[1]
        self.call_id = secrets.token_hex(8) + "@127.0.0.1"
        self.tag = secrets.token_hex(4)
        self.cseq = 0
        self.remote_tag: str | None = None
        self.remote_target = ""
        self.to_header = ""
        self.invite_uri = ""
        self.early_branch = ""
        self.relay: tuple[str, int] | None = None   # where the server wants our RTP
        self.seq = 0
        self.ts = 0
        self.ssrc = int.from_bytes(os.urandom(4), "big")
        self.received: list[bytes] = []
        self.responses: list[Response] = []

    def close(self) -> None:
        self.sip.close()
        self.rtp.close()

    # -- signalling ---------------------------------------------------------------------------------
    def _send(self, method: str, uri: str, cseq: int, body: bytes = b"", extra: tuple[str, ...] = (),
              branch: str | None = None, to_tag: str | None = None) -> str:
        branch = branch or "z9hG4bK" + secrets.token_hex(6)
        to = self.to_header + (f";tag={to_tag}" if to_tag else "")
        lines = [f"{method} {uri} SIP/2.0", f"Via: SIP/2.0/UDP 127.0.0.1:{self.sip_port};branch={branch};rport",
                 "Max-Forwards: 70", f"From: <sip:{self.ext}@127.0.0.1>;tag={self.tag}", f"To: {to}",
                 f"Call-ID: {self.call_id}", f"CSeq: {cseq} {method}",
                 f"Contact: <sip:{self.ext}@127.0.0.1:{self.sip_port}>", *extra]
        if body:
            lines.append("Content-Type: application/sdp")
        lines.append(f"Content-Length: {len(body)}")
        self.sip.sendto(("\r\n".join(lines) + "\r\n\r\n").encode() + body, self.server)
        return branch

    def receive(self, timeout: float) -> Response | None:
        self.sip.settimeout(timeout)
        try:
            data, _ = self.sip.recvfrom(65535)
        except socket.timeout:
            return None
        msg = parse_message(data)
        if isinstance(msg, Response):
            self.responses.append(msg)
            return msg
        # a request from the server (BYE): answer 200
        lines = ["SIP/2.0 200 OK", *(f"{h}: {msg.get(h)}" for h in ("via", "from", "to", "call-id", "cseq")),
                 "Content-Length: 0"]
        self.sip.sendto(("\r\n".join(lines) + "\r\n\r\n").encode(), self.server)
        return None

    def offer(self) -> bytes:
        lines = ["v=0", "o=- 1 1 IN IP4 127.0.0.1", "s=-", "c=IN IP4 127.0.0.1", "t=0 0",
                 f"m=audio {self.rtp_port} RTP/AVP 0 101", "a=rtpmap:0 PCMU/8000",
                 "a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-15", "a=ptime:20", "a=sendrecv"]
        return ("\r\n".join(lines) + "\r\n").encode()

    def invite(self, number: str, timeout: float = 10.0, until: tuple[int, ...] = ()) -> Response:
        """Call ``number`` (answering the 407): the final response, or the first provisional whose status
        is in ``until`` (183: the PIN prompt)."""
        uri = f"sip:{number}@127.0.0.1:{self.server[1]}"
        self.invite_uri = uri
        self.to_header = f"<sip:{number}@127.0.0.1>"
        body = self.offer()
        self.cseq += 1
        branch = self._send("INVITE", uri, self.cseq, body)
        deadline = time.monotonic() + timeout
        authorized = False
        while time.monotonic() < deadline:
            resp = self.receive(max(0.01, deadline - time.monotonic()))
            if resp is None or resp.cseq[1] != "INVITE":
                continue
            if resp.status == 407 and not authorized:
                self._send("ACK", uri, self.cseq, branch=branch, to_tag=resp.to_tag)
                challenge = resp.get("proxy-authenticate") or ""
                authz = build_authorization(challenge, "INVITE", uri, self.ext, EXTS[self.ext])
                self.cseq += 1
                branch = self._send("INVITE", uri, self.cseq, body, extra=(f"Proxy-Authorization: {authz}",))
                authorized = True
                continue
            if resp.status < 200 and resp.status not in until:
                continue
            if resp.body:
                m = parse_sdp(resp.body).media[0]
                self.relay = (m.address or "127.0.0.1", m.port)
            self.remote_tag = resp.to_tag
            if resp.status < 200:
                self.early_branch = branch
                return resp
            if resp.status < 300:
                contact = resp.contacts()[0].uri
                self.remote_target = str(contact)
                self._send("ACK", self.remote_target, self.cseq, to_tag=self.remote_tag)
            else:
                self._send("ACK", uri, self.cseq, branch=branch, to_tag=resp.to_tag)
            return resp
        raise AssertionError(f"{self.ext}: no final response to INVITE {number} within {timeout}s")

    def final(self, timeout: float = 10.0) -> Response:
        """The final response to the INVITE sent (after a 183)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            resp = self.receive(max(0.01, deadline - time.monotonic()))
            if resp is None or resp.cseq != (self.cseq, "INVITE") or resp.status < 200:
                continue
            uri = self.invite_uri
            self._send("ACK", uri, self.cseq, branch=self.early_branch, to_tag=resp.to_tag)
            return resp
        raise AssertionError(f"{self.ext}: no final response within {timeout}s")

    def bye(self, timeout: float = 5.0) -> int | None:
        self.cseq += 1
        self._send("BYE", self.remote_target, self.cseq, to_tag=self.remote_tag)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            resp = self.receive(max(0.01, deadline - time.monotonic()))
            if resp is not None and resp.cseq == (self.cseq, "BYE"):
                return resp.status
        return None

    # -- media --------------------------------------------------------------------------------------
    def send_rtp(self, payload: bytes, pt: int = 0, ts: int | None = None, marker: bool = False) -> None:
        assert self.relay is not None
        self.seq = (self.seq + 1) & 0xFFFF
        header = struct.pack("!BBHII", 0x80, pt | (0x80 if marker else 0), self.seq,
                             self.ts if ts is None else ts, self.ssrc)
        self.rtp.sendto(header + payload, self.relay)

    def tone_frame(self, frequency: float, amplitude: int = 5000) -> bytes:
        start = self.ts
        samples = [round(amplitude * math.sin(2 * math.pi * frequency * (start + n) / RATE)) for n in range(FRAME)]
        self.ts += FRAME
        return g711.encode("PCMU", samples)

    def drain(self) -> None:
        while True:
            try:
                data, _ = self.rtp.recvfrom(2048)
            except (BlockingIOError, OSError):
                return
            if len(data) > 12 and data[1] & 0x7F == 0:
                self.received.append(data[12:])


def relay_window(base: int = BASE_PORT) -> int:
    """The first port of 50 free UDP ports in base..base+999: one test server's relay range."""
    for low in range(base, base + 1000, 50):
        if not ports_held(low, low + 49):
            return low
    raise AssertionError(f"no 50 free UDP ports in {base}-{base + 999}")


class ConferenceTests(unittest.TestCase):
    if os.environ.get("MINISIP_SKIP_INTEGRATION"):
        skip = "MINISIP_SKIP_INTEGRATION is set (the Debian-packages run covers unit tests only)"

    def setUp(self) -> None:
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        low = relay_window()
        plugins = plugin_folder(self.dir, "conference.py")
        extra = "\n".join(["[plugins]", f"directories = {plugins}",
                           "[media]", "relay = auto", f"ports = {low}-{low + 49}", "timeout = 30",
                           "[conference 800]", "[conference 801]", "pin = 2468"])
        self.server = Minisip(self.dir, EXTS, extra=extra)
        self.addCleanup(self.server.stop)
        self.server.start()
        self.server.wait_log("plugin minisip.conference loaded")
        self.phones: list[Phone] = []

    def tearDown(self) -> None:
        for phone in self.phones:
            phone.close()
        self.server.assert_no_tracebacks(self)

    def phone(self, ext: str) -> Phone:
        p = Phone(ext, self.server.udp)
        self.phones.append(p)
        return p

    def records(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        path = os.path.join(self.server.datadir, "minisip.sqlite")
        deadline = time.monotonic() + timeout
        rows: list[Any] = []
        while time.monotonic() < deadline:
            try:
                db = sqlite3.connect(path)
                try:
                    rows = db.execute("SELECT caller, cause, conference FROM call_records WHERE conference IS NOT NULL "
                                      "ORDER BY start_time").fetchall()
                finally:
                    db.close()
            except sqlite3.OperationalError:
                rows = []
            if len(rows) >= count:
                break
            time.sleep(0.1)
        return [{"caller": r[0], "cause": r[1], **json.loads(r[2])} for r in rows]

    def test_three_tones_mixed_full_room_486(self) -> None:
        talkers = {ext: self.phone(ext) for ext in TONES}
        for ext, p in talkers.items():
            resp = p.invite("800")
            self.assertEqual(resp.status, 200, f"{ext}: {resp.status} {resp.reason}")
        # 2.5 s of each phone's tone, 20 ms a packet, everyone listening
        start = time.monotonic()
        for n in range(125):
            for ext, p in talkers.items():
                p.send_rtp(p.tone_frame(TONES[ext]))
            delay = start + (n + 1) * 0.02 - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            for p in talkers.values():
                p.drain()
        time.sleep(0.1)
        for ext, p in talkers.items():
            p.drain()
            self.assertGreater(len(p.received), 100, f"{ext} received {len(p.received)} packets")
            samples = [s for payload in p.received[-50:] for s in g711.decode("PCMU", payload)]   # the last second
            power = {e: goertzel(samples, f) for e, f in TONES.items()}
            others = [power[e] for e in TONES if e != ext]
            self.assertGreater(min(others), 100 * power[ext], f"{ext} hears {power} (its own tone must be absent)")
        # two silent phones fill the room to five; the sixth hears that it is full
        for ext in ("400", "500"):
            self.assertEqual(self.phone(ext).invite("800").status, 200)
        sixth = self.phone("600").invite("800")
        self.assertEqual((sixth.status, sixth.reason), (486, "Conference Room Full"))
        for p in self.phones[:5]:
            self.assertEqual(p.bye(), 200)
        records = self.records(6)
        joined = sorted(r["participant"] for r in records if r["outcome"] == "joined")
        self.assertEqual(joined, ["100", "200", "300", "400", "500"])
        self.assertIn(("600", "full"), [(r["participant"], r["outcome"]) for r in records])
        log = self.server.wait_log("conference room 800 closed (empty)")
        self.assertIn("conference room 800: 100 joined", log)
        self.assertIn("conference room 800: 100 left", log)

    def test_wrong_pin_three_times_gets_403(self) -> None:
        p = self.phone("700")
        early = p.invite("801", until=(183,))
        self.assertEqual(early.status, 183)
        for attempt in range(3):
            for i, digit in enumerate("1357"):
                ts = 10_000 * (attempt * 4 + i + 1)
                for end in (0, 0, 0x80, 0x80, 0x80):
                    p.send_rtp(struct.pack("!BBH", int(digit), end | 10, 800), pt=101, ts=ts)
                    time.sleep(0.02)
        final = p.final()
        self.assertEqual((final.status, final.reason), (403, "Wrong PIN"))
        p.drain()
        self.assertTrue(p.received, "the caller heard no prompt")
        (record,) = self.records(1)
        self.assertEqual((record["room"], record["outcome"]), ("801", "wrong PIN"))
