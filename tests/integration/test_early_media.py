"""Forked early media through a real minisip's relay on loopback (issue 9): extension 101 has two
registered phones; both send 183 with SDP and then RTP (each its own SSRC), one after the other, then the
first answers. The caller must hear one stream at a time, all from the one relay address it was given:
the first fork, then the second (the latest 183 with SDP wins), then the fork that answered; the other
fork is CANCELled and its relay ports are free again while the call goes on. The same call runs once
with plain RTP and once with SDES-SRTP on every leg (each phone its own key, the relay re-protecting every
fork's early media with the caller leg's key; the phones protect and check with pylibsrtp).

The three phones are small Python user agents (stdlib sockets, one bounded select loop, no threads) so
that every RTP packet the caller receives can be recorded with its SSRC and source. SIPp cannot tell
which stream it hears, and it plays the same pcap (one SSRC) from every instance.

Traps (checked here):

* A fork's RTP that reaches the relay before the server has read its 183 is dropped (``dropped_not_ready``)
  and RTP in flight when a 183 switches the bridge may still be sent once: streams are compared as runs
  (no interleaving), not packet by packet.
* The loser's CANCEL can arrive before the 200 for the winner reaches the caller: both are waited for,
  in any order.
"""

from __future__ import annotations

import base64
import hashlib
import os
import random
import re
import select
import socket
import struct
import time
from typing import Any, Callable

import pylibsrtp

from tests.integration.media_peers import ports_held
from tests.integration.test_media import MediaTestBase

SKIP = "MINISIP_SKIP_INTEGRATION is set (the Debian-packages run covers unit tests only)" \
    if os.environ.get("MINISIP_SKIP_INTEGRATION") else None
HOST = "127.0.0.1"
PACKET_INTERVAL = 0.02
SSRC_CALLER, SSRC_FORK1, SSRC_FORK2 = 0xCA11E4, 0xF0001, 0xF0002


def _token() -> str:
    return "%016x" % random.getrandbits(64)


class SipMessage:
    """A parsed SIP message: first line, headers (names lower-cased, in order) and body."""

    def __init__(self, data: bytes) -> None:
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("utf-8", "replace").split("\r\n")
        self.first = lines[0]
        self.headers: list[tuple[str, str]] = []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            self.headers.append((name.strip().lower(), value.strip()))
        self.body = body
        parts = self.first.split(" ", 2)
        self.is_response = parts[0].startswith("SIP/")
        self.status = int(parts[1]) if self.is_response else 0
        self.method = self.get("cseq").split()[-1] if self.is_response else parts[0]

    def get(self, name: str) -> str:
        return next((v for n, v in self.headers if n == name), "")

    def all(self, name: str) -> list[str]:
        return [v for n, v in self.headers if n == name]

    def to_tag(self) -> str:
        m = re.search(r";\s*tag=([^;>\s]+)", self.get("to"))
        return m.group(1) if m else ""

    def sdes_key(self) -> bytes | None:
        """The AES_CM_128_HMAC_SHA1_80 master key||salt of the SDP body's a=crypto, if any."""
        m = re.search(r"^a=crypto:\d+ AES_CM_128_HMAC_SHA1_80 inline:([A-Za-z0-9+/=]+)", self.body.decode(), re.M)
        return base64.b64decode(m.group(1)) if m else None

    def sdp_media(self) -> tuple[str, int]:
        """The audio address of the SDP body: (c= host, m=audio port)."""
        text = self.body.decode()
        host = re.search(r"^c=IN IP4 (\S+)", text, re.M)
        port = re.search(r"^m=audio (\d+)", text, re.M)
        assert host and port, text
        return host.group(1), int(port.group(1))


def sdp(port: int, session: int, key: bytes | None = None) -> bytes:
    """Audio PCMU + telephone-event; with ``key`` RTP/SAVP and its a=crypto (SDES, RFC 4568)."""
    profile = "RTP/SAVP" if key else "RTP/AVP"
    crypto = f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{base64.b64encode(key).decode()}\r\n" if key else ""
    return (f"v=0\r\no=- {session} 1 IN IP4 {HOST}\r\ns=-\r\nc=IN IP4 {HOST}\r\nt=0 0\r\n"
            f"m=audio {port} {profile} 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
            f"{crypto}a=sendrecv\r\n").encode()


def digest(user: str, password: str, method: str, uri: str, challenge: str) -> str:
    """A Digest MD5 answer to a WWW-/Proxy-Authenticate challenge (qop=auth when offered)."""
    params = dict(re.findall(r'(\w+)="?([^",]*)"?', challenge.partition(" ")[2]))
    ha1 = hashlib.md5(f"{user}:{params['realm']}:{password}".encode()).hexdigest()
    ha2 = hashlib.md5(f"{method}:{uri}".encode()).hexdigest()
    fields = [f'username="{user}"', f'realm="{params["realm"]}"', f'nonce="{params["nonce"]}"', f'uri="{uri}"',
              "algorithm=MD5"]
    if "auth" in params.get("qop", "").split(","):
        cnonce = _token()
        response = hashlib.md5(f"{ha1}:{params['nonce']}:00000001:{cnonce}:auth:{ha2}".encode()).hexdigest()
        fields += ["qop=auth", "nc=00000001", f'cnonce="{cnonce}"']
    else:
        response = hashlib.md5(f"{ha1}:{params['nonce']}:{ha2}".encode()).hexdigest()
    fields.append(f'response="{response}"')
    if "opaque" in params:
        fields.append(f'opaque="{params["opaque"]}"')
    return "Digest " + ", ".join(fields)


class Phone:
    """A SIP user agent on UDP with one RTP socket: it records every message and RTP packet it gets, and
    sends RTP every 20 ms to ``rtp_to`` while that is set."""

    def __init__(self, user: str, password: str, server: int, ssrc: int) -> None:
        self.user, self.password, self.server = user, password, (HOST, server)
        self.sip = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sip.bind((HOST, 0))
        self.rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rtp.bind((HOST, 0))
        self.port, self.rtp_port = self.sip.getsockname()[1], self.rtp.getsockname()[1]
        self.ssrc = ssrc
        self.seq = random.randrange(1000)
        self.rtp_to: tuple[str, int] | None = None
        self.next_send = 0.0
        self.inbox: list[SipMessage] = []
        self.rtp_in: list[tuple[float, int, tuple[str, int]]] = []   # (time, ssrc, source)
        self.handler: Callable[[Phone, SipMessage], None] | None = None
        # SDES: this phone's key (in its SDP), its sending session, and the session for the key the
        # server's SDP gave it; packets that do not authenticate are counted, not recorded.
        self.key: bytes | None = None
        self.tx: pylibsrtp.Session | None = None
        self.rx: pylibsrtp.Session | None = None
        self.srtp_failures = 0
        # SRTP that arrives before this phone has read the SDP with its key (the relay's first packets can
        # overtake the 183 in this phone's select loop): decrypted once the key is known, as a phone would.
        self.unkeyed: list[tuple[bytes, tuple[str, int]]] = []

    def use_srtp(self) -> None:
        self.key = os.urandom(30)
        self.tx = pylibsrtp.Session(pylibsrtp.Policy(key=self.key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND))

    def learn(self, msg: SipMessage) -> None:
        """The media address and (when this phone does SRTP) the key of the server's SDP in ``msg``."""
        self.rtp_to = msg.sdp_media()
        if self.key is not None:
            key = msg.sdes_key()
            assert key is not None, msg.body
            if self.rx is None:
                self.rx = pylibsrtp.Session(pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND))
                waiting, self.unkeyed = self.unkeyed, []
                for data, src in waiting:
                    self.received(data, self.rtp, src)

    def close(self) -> None:
        self.sip.close()
        self.rtp.close()

    def send(self, text: str, body: bytes = b"") -> None:
        head = text.strip("\n").replace("\n", "\r\n") + f"\r\nContent-Length: {len(body)}\r\n\r\n"
        self.sip.sendto(head.encode() + body, self.server)

    def via(self, branch: str | None = None) -> str:
        return f"Via: SIP/2.0/UDP {HOST}:{self.port};branch={branch or 'z9hG4bK' + _token()};rport"

    def received(self, data: bytes, sock: socket.socket, src: tuple[str, int]) -> None:
        if sock is self.rtp:
            if self.key is not None:
                if self.rx is None:
                    self.unkeyed.append((data, src))
                    return
                try:
                    data = self.rx.unprotect(data)
                except (pylibsrtp.Error, ValueError):
                    self.srtp_failures += 1
                    return
            if len(data) >= 12:
                self.rtp_in.append((time.monotonic(), struct.unpack("!I", data[8:12])[0], src))
            return
        msg = SipMessage(data)
        self.inbox.append(msg)
        if self.handler is not None:
            self.handler(self, msg)

    def tick(self, now: float) -> None:
        if self.rtp_to is None or now < self.next_send:
            return
        self.next_send = max(self.next_send + PACKET_INTERVAL, now - PACKET_INTERVAL)
        self.seq = (self.seq + 1) & 0xFFFF
        packet = struct.pack("!BBHII", 0x80, 0, self.seq, self.seq * 160, self.ssrc) + b"\xff" * 160
        self.rtp.sendto(packet if self.tx is None else self.tx.protect(packet), self.rtp_to)


class Uas:
    """What a called phone does with requests: 180 at once, CANCEL -> 200 + 487, BYE -> 200."""

    def __init__(self, phone: Phone) -> None:
        self.phone = phone
        self.invite: SipMessage | None = None
        self.tag = _token()
        self.cancelled = False
        phone.handler = self.on_message

    def respond(self, req: SipMessage, status: int, reason: str, body: bytes = b"") -> None:
        lines = [f"SIP/2.0 {status} {reason}"] + [f"Via: {v}" for v in req.all("via")]
        to = req.get("to")
        lines += [f"From: {req.get('from')}", f"To: {to if 'tag=' in to else to + ';tag=' + self.tag}",
                  f"Call-ID: {req.get('call-id')}", f"CSeq: {req.get('cseq')}"]
        if 100 < status < 300 and req.method == "INVITE":
            lines.append(f"Contact: <sip:{self.phone.user}@{HOST}:{self.phone.port}>")
        if body:
            lines.append("Content-Type: application/sdp")
        self.phone.send("\n".join(lines), body)

    def on_message(self, phone: Phone, msg: SipMessage) -> None:
        if msg.is_response:
            return
        if msg.method == "INVITE" and self.invite is None:
            self.invite = msg
            self.respond(msg, 180, "Ringing")
        elif msg.method == "CANCEL":
            self.respond(msg, 200, "OK")
            if self.invite is not None and not self.cancelled:
                self.cancelled = True
                phone.rtp_to = None
                self.respond(self.invite, 487, "Request Terminated")
        elif msg.method == "BYE":
            self.respond(msg, 200, "OK")
            phone.rtp_to = None

    def early(self) -> None:
        """183 with SDP, then RTP to where the server's INVITE said."""
        assert self.invite is not None
        self.respond(self.invite, 183, "Session Progress", sdp(self.phone.rtp_port, self.phone.ssrc, self.phone.key))
        self.phone.learn(self.invite)

    def answer(self) -> None:
        assert self.invite is not None
        self.respond(self.invite, 200, "OK", sdp(self.phone.rtp_port, self.phone.ssrc, self.phone.key))
        self.phone.learn(self.invite)


class Loop:
    """Every phone's sockets in one select loop; ``until`` pumps (bounded) until a condition holds."""

    def __init__(self, phones: list[Phone]) -> None:
        self.phones = phones
        self.sockets = {s: p for p in phones for s in (p.sip, p.rtp)}

    def pump(self, seconds: float) -> None:
        self.until(lambda: False, seconds, fail=False)

    def until(self, done: Callable[[], Any], timeout: float = 10.0, fail: bool = True) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            now = time.monotonic()
            if now >= deadline:
                if fail:
                    raise AssertionError(f"timed out after {timeout} s")
                return
            for phone in self.phones:
                phone.tick(now)
            ready, _, _ = select.select(list(self.sockets), [], [], min(0.005, deadline - now))
            for sock in ready:
                try:
                    data, src = sock.recvfrom(65535)
                except OSError:
                    continue
                self.sockets[sock].received(data, sock, src)


def runs(values: list[int]) -> list[tuple[int, int]]:
    """Run-length encoding: [(value, count), ...]."""
    out: list[tuple[int, int]] = []
    for v in values:
        if out and out[-1][0] == v:
            out[-1] = (v, out[-1][1] + 1)
        else:
            out.append((v, 1))
    return out


class ForkedEarlyMediaTests(MediaTestBase):
    skip = SKIP

    def phone(self, user: str, ssrc: int) -> Phone:
        assert self.server is not None
        p = Phone(user, user, self.server.udp, ssrc)
        self.addCleanup(p.close)
        return p

    def register(self, loop: Loop, phone: Phone) -> None:
        call_id, tag = _token(), _token()

        def request(cseq: int, auth: str = "") -> None:
            phone.send(f"""REGISTER sip:{HOST} SIP/2.0
{phone.via()}
From: <sip:{phone.user}@{HOST}>;tag={tag}
To: <sip:{phone.user}@{HOST}>
Call-ID: {call_id}
CSeq: {cseq} REGISTER
Contact: <sip:{phone.user}@{HOST}:{phone.port}>
Expires: 300
Max-Forwards: 70{auth}""")

        request(1)
        loop.until(lambda: any(m.status == 401 for m in phone.inbox))
        challenge = next(m for m in phone.inbox if m.status == 401).get("www-authenticate")
        request(2, "\nAuthorization: " + digest(phone.user, phone.password, "REGISTER", f"sip:{HOST}", challenge))
        loop.until(lambda: any(m.status == 200 for m in phone.inbox))

    def test_forked_early_media_one_stream_at_a_time(self) -> None:
        self.forked_call(srtp=False)

    def test_forked_sdes_early_media_one_stream_at_a_time(self) -> None:
        """Every leg SDES-SRTP (keys in SDP over UDP, allowed by ``sdes_over_insecure`` for the test):
        whatever the caller hears authenticates with the relay's key for it, fork after fork."""
        self.forked_call(srtp=True)

    def forked_call(self, srtp: bool) -> None:
        if srtp:
            server = self.start_server(relay="always", encryption={"101": "sdes"},
                                       extra_media="sdes_over_insecure = yes")
        else:
            server = self.start_server(relay="always")
        caller = self.phone("100", SSRC_CALLER)
        forks = [self.phone("101", SSRC_FORK1), self.phone("101", SSRC_FORK2)]
        if srtp:
            for phone in (caller, *forks):
                phone.use_srtp()
        loop = Loop([caller, *forks])
        for fork in forks:
            self.register(loop, fork)
        uas = [Uas(fork) for fork in forks]

        # the caller's INVITE, challenged once
        call_id, tag, uri = _token(), _token(), f"sip:101@{HOST}"
        branch = "z9hG4bK" + _token()
        offer = sdp(caller.rtp_port, 1, caller.key)

        def invite(cseq: int, branch: str, auth: str = "") -> None:
            caller.send(f"""INVITE {uri} SIP/2.0
{caller.via(branch)}
From: <sip:100@{HOST}>;tag={tag}
To: <sip:101@{HOST}>
Call-ID: {call_id}
CSeq: {cseq} INVITE
Contact: <sip:100@{HOST}:{caller.port}>
Max-Forwards: 70{auth}
Content-Type: application/sdp""", offer)

        def responses(status: int) -> list[SipMessage]:
            return [m for m in caller.inbox if m.status == status and m.method == "INVITE"]

        invite(1, branch)
        loop.until(lambda: responses(407))
        first = responses(407)[0]
        caller.send(f"""ACK {uri} SIP/2.0
{caller.via(branch)}
From: <sip:100@{HOST}>;tag={tag}
To: {first.get('to')}
Call-ID: {call_id}
CSeq: 1 ACK
Max-Forwards: 70""")
        auth = digest("100", "100", "INVITE", uri, first.get("proxy-authenticate"))
        invite(2, "z9hG4bK" + _token(), "\nProxy-Authorization: " + auth)
        loop.until(lambda: all(u.invite is not None for u in uas), 10)
        assert uas[0].invite is not None and uas[1].invite is not None
        loser_ports = uas[1].invite.sdp_media()
        self.assertEqual(loser_ports[0], HOST)
        self.assertNotEqual(uas[0].invite.sdp_media(), loser_ports)

        # fork 1 plays early media; then fork 2; then fork 1 answers
        marks = {}
        uas[0].early()
        loop.until(lambda: len(responses(183)) >= 1)
        caller.learn(responses(183)[0])                         # the caller talks during early media too
        relay = caller.rtp_to
        loop.pump(1.0)
        marks["fork2 early"] = time.monotonic()
        uas[1].early()
        loop.until(lambda: len(responses(183)) >= 2)
        self.assertEqual(responses(183)[1].sdp_media(), relay)  # the same relay address for every fork
        self.assertEqual(responses(183)[1].sdes_key(), responses(183)[0].sdes_key())   # and the same key
        loop.pump(1.0)
        caller_heard_by_fork2 = len([p for p in forks[1].rtp_in if p[1] == SSRC_CALLER])
        marks["answer"] = time.monotonic()
        uas[0].answer()
        loop.until(lambda: responses(200) and uas[1].cancelled, 10)
        ok = responses(200)[0]
        self.assertEqual((ok.sdp_media(), ok.sdes_key()), (relay, responses(183)[0].sdes_key()))
        ack_branch = "z9hG4bK" + _token()
        target = re.search(r"<([^>]+)>", ok.get("contact"))
        assert target is not None
        caller.send(f"""ACK {target.group(1)} SIP/2.0
{caller.via(ack_branch)}
From: <sip:100@{HOST}>;tag={tag}
To: {ok.get('to')}
Call-ID: {call_id}
CSeq: 2 ACK
Max-Forwards: 70""")
        # the loser's relay ports (RTP and RTCP) are free again while the call goes on
        self.assertEqual(ports_held(loser_ports[1], loser_ports[1] + 1), [])
        loop.pump(1.0)
        marks["bye"] = time.monotonic()
        caller.rtp_to = None
        caller.send(f"""BYE {target.group(1)} SIP/2.0
{caller.via()}
From: <sip:100@{HOST}>;tag={tag}
To: {ok.get('to')}
Call-ID: {call_id}
CSeq: 3 BYE
Max-Forwards: 70""")
        loop.until(lambda: any(m.status == 200 and m.method == "BYE" for m in caller.inbox), 10)

        # what the caller heard: one stream at a time, all from its relay address (and, with SRTP, every
        # packet authenticated with the one key the server gave the caller)
        self.assertEqual([(p.srtp_failures, len(p.unkeyed)) for p in (caller, *forks)], [(0, 0)] * 3)
        heard = caller.rtp_in
        self.assertEqual({src for _, _, src in heard}, {relay})
        self.assertEqual([ssrc for ssrc, _ in runs([s for _, s, _ in heard])], [SSRC_FORK1, SSRC_FORK2, SSRC_FORK1],
                         runs([s for _, s, _ in heard]))
        self.assertTrue(all(n >= 25 for _, n in runs([s for _, s, _ in heard])), runs([s for _, s, _ in heard]))
        # the switch to fork 2 came with its 183, the switch back with the answer
        switches = [t for (t, s, _), (_, prev, _) in zip(heard[1:], heard) if s != prev]
        self.assertTrue(marks["fork2 early"] <= switches[0] <= marks["answer"], (marks, switches))
        self.assertTrue(switches[1] >= marks["answer"], (marks, switches))
        # the caller's packets went to the fork being heard: fork 2 while its early media played, then fork 1
        self.assertGreater(caller_heard_by_fork2, 25)
        self.assertGreater(len([p for p in forks[0].rtp_in if p[1] == SSRC_CALLER and p[0] > marks["answer"]]), 25)

        (record,) = server.records(1)
        self.assertEqual(record["cause"], "normal")
        media = record["media"]
        self.assertEqual(len(media), 3, media)          # the caller's endpoint and one per fork
        winner_port = uas[0].invite.sdp_media()[1]
        winner, loser = (next(ep for ep in media if ep["local"][1] == port) for port in (winner_port, loser_ports[1]))
        self.assertTrue(loser["closed"])
        # fork 1's packets while fork 2's early media played were counted and dropped, never sent
        self.assertGreater(winner["dropped_unbridged"], 25, media)
        self.assertEqual([ep["errors"] for ep in media], [0, 0, 0])
        self.assertEqual([(ep["secure"], ep["srtp_auth_failures"]) for ep in media], [(srtp, 0)] * 3)
        low, high = self.ports
        self.assertEqual(ports_held(low, high), [])
