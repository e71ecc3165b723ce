"""Secure media (issue 9) with real peers on loopback: audio goes through the server's relay ports both
ways, for plain RTP, SDES-SRTP and DTLS-SRTP legs in any pair, and the server's per-call statistics
(``call_records.media``) agree with what the phones counted.

Peers: SIPp (``play_pcap_audio`` to a ``-rtp_echo`` UAS), baresip 1.0 (its ``srtp`` and ``dtls_srtp``
modules) and linphone-daemon 5.1. SDES keys travel in SDP, so every SDES phone signals over TLS (the
server refuses SDES over UDP/TCP with ``sdes_over_insecure = no``, the default kept here); plain and
DTLS phones use UDP. What the server offers a callee is set with ``[extension N] media_encryption``:
``auto`` gives SDES to a phone reached over TLS and plain RTP over UDP, ``dtls`` DTLS-SRTP.

Traps (checked here):

* A phone's first packets can reach the relay before the server has read that phone's SDP (the callee
  sends RTP/RTCP as soon as it sends its 200 OK): the relay counts them as ``dropped_spoofed`` (no
  address to compare with yet). So spoof counts are compared as increases, never as exact zeros.
* DTLS-SRTP toward an offering baresip: the server is its DTLS client and sends its ClientHello as the
  answer goes out, a moment before baresip has read the answer; baresip ignores DTLS until then, so the
  handshake completes on the first retransmission (1 s later) and the other side's first second of audio
  is dropped (``dropped_not_ready``). Packet agreement is therefore checked with a tolerance. Linphone
  does answer a ClientHello that comes before the answer.
* baresip prints its RTP totals only when a call ends (``rtp_stats yes``) and Linphone only when a
  stream stops (oRTP's summary in its log): read them after hangup.
* Which relay ports a call used is in its call record (each leg's ``local`` address and ports in the
  media statistics); that no port stays bound is checked by binding them from outside afterwards.
"""

from __future__ import annotations

import os
import re
import socket
import struct
import time
from typing import Any

from twisted.trial import unittest

from tests.integration import baresip as baresip_driver
from tests.integration import linphone as linphone_driver
from tests.integration.harness import SKIP_REASON, Sipp
from tests.integration.media_peers import (
    PCAP,
    PCAP_SHORT,
    MediaBaresip,
    MediaLinphone,
    MediaMinisip,
    flow_problems,
    ports_held,
    receiving_from,
    summary,
    uac_media,
    uas_answer,
)

EXTS = {"100": "100", "101": "101"}
TALK_SECONDS = 2.0      # about 50 packets a second each way with 20 ms PCMU
RTCP_SECONDS = 6.0      # more talk for the RTCP tests: baresip reports every 5 s
MIN_PACKETS = 40        # per direction and leg, over TALK_SECONDS (less the DTLS handshake second)
BASE_PORT = 31000       # each server gets its own 40 ports from here on (private to these tests)
REG_AUTH = os.path.join(os.path.dirname(__file__), "sipp", "reg_auth.xml")


def _agree(phone: int, server: int) -> bool:
    """Whether a phone's packet count and the relay's for the same direction agree: equal but for the
    packets sent before a leg's SDP or keys were in place (see the module docstring)."""
    return abs(phone - server) <= max(10, phone // 10)


class MediaTestBase(unittest.TestCase):
    skip = SKIP_REASON
    timeout = 120
    _ports_used = 0

    def setUp(self) -> None:
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        self.server: MediaMinisip | None = None

    def tearDown(self) -> None:
        # every process is ended by its PID in the cleanups (peers first, then the server), each on its own
        if self.server is not None:
            self.server.assert_no_tracebacks(self)

    def start_server(self, relay: str = "always", encryption: dict[str, str] | None = None, ports: int = 40,
                     extra_media: str = "") -> MediaMinisip:
        """A minisip with its own range of ``ports`` relay ports in 31000-31999, all free when it starts
        (other tests on the machine may hold some: each server takes the next window found free)."""
        for _ in range(1000 // ports):
            low = BASE_PORT + MediaTestBase._ports_used
            MediaTestBase._ports_used = (MediaTestBase._ports_used + ports) % (1000 - ports)
            if not ports_held(low, low + ports - 1):
                break
        else:
            raise AssertionError(f"no window of {ports} free UDP ports in {BASE_PORT}-{BASE_PORT + 999}")
        self.ports = (low, low + ports - 1)
        media = f"relay = {relay}\nports = {low}-{low + ports - 1}\ntimeout = 30"
        if extra_media:
            media += "\n" + extra_media
        self.server = MediaMinisip(self.dir, EXTS, media, encryption)
        self.addCleanup(self.server.stop)
        self.server.start()
        return self.server

    def log(self) -> str:
        assert self.server is not None
        return self.server.read_log()[-5000:]


class SippMediaTests(MediaTestBase):
    """SIPp plays real G.711 A-law RTP at a SIPp UAS that echoes it, through the relay."""

    def sipp(self, name: str, xml: str, csv: list[str] | None = None) -> Sipp:
        peer = Sipp(self.dir, name, xml, csv)
        self.addCleanup(peer.stop)
        return peer

    def register_uas(self, uas: Sipp) -> None:
        assert self.server is not None
        with open(REG_AUTH) as f:
            reg = self.sipp("reg101", f.read(), [f"101;[authentication username=101 password=101];127.0.0.1:{uas.port}"])
        self.assertEqual(reg.run(f"127.0.0.1:{self.server.udp}"), 0, reg.diagnostics())

    def test_pcap_echo_comes_back(self) -> None:
        """g711a.pcap played by the caller is echoed by the callee: the relay counts the packets in and out
        on both legs (caller -> relay -> callee -> relay -> caller)."""
        server = self.start_server()
        uas = self.sipp("uas", uas_answer())
        uas.start(extra=["-rtp_echo"])
        self.register_uas(uas)
        uac = self.sipp("uac", uac_media(PCAP, 3000), ["100;[authentication username=100 password=100];101"])
        self.assertEqual(uac.run(f"127.0.0.1:{server.udp}"), 0, uac.diagnostics() + self.log())
        self.assertEqual(uas.wait(20), 0, uas.diagnostics())
        (record,) = server.records(1)
        self.assertEqual(record["cause"], "normal")
        media = record["media"]
        self.assertEqual(flow_problems(media, MIN_PACKETS), [], summary(media))
        caller, callee = media
        # What the caller sent came back to it whole: in = out on both legs, nothing dropped.
        self.assertEqual(caller["packets_in"], callee["packets_out"], summary(media))
        self.assertEqual(callee["packets_in"], caller["packets_out"], summary(media))
        self.assertEqual(caller["packets_in"], caller["packets_out"], summary(media))
        for ep in media:
            self.assertEqual((ep["dropped_spoofed"], ep["dropped_unprotect"], ep["lost"]), (0, 0, 0), summary(media))

    def test_pool_full_again_after_200_calls(self) -> None:
        """200 short calls with media through a pool of 24 port pairs (10 calls at once, 2 pairs each):
        none is refused for lack of ports, every record has media both ways, every port bound was closed,
        and afterwards each is free again (checked from outside by binding it), so the pool is full.
        (Harness trap: Sipp.args has a 30 s ``-timeout`` for the whole run; given again it is replaced.)"""
        server = self.start_server(ports=48)
        low, high = self.ports
        uas = self.sipp("uas", uas_answer())
        uas.start(calls=200, extra=["-rtp_echo"])
        self.register_uas(uas)
        uac = self.sipp("uac", uac_media(PCAP_SHORT, 500), ["100;[authentication username=100 password=100];101"])
        rc = uac.run(f"127.0.0.1:{server.udp}", calls=200, extra=["-r", "40", "-l", "10", "-timeout", "80s"],
                     timeout=90)
        self.assertEqual(rc, 0, uac.diagnostics() + self.log())
        self.assertEqual(uas.wait(20), 0, uas.diagnostics())
        records = server.records(200, timeout=15)
        self.assertEqual(len(records), 200)
        log = server.read_log()
        self.assertEqual(re.findall(r"media for call \S+ refused.*", log), [])
        bad = [(r["call_id"], r["cause"], flow_problems(r["media"], 5)) for r in records
               if r["cause"] != "normal" or flow_problems(r["media"], 5)]
        self.assertEqual(bad, [])
        # each call used 4 ports of the pool (RTP and RTCP per leg), and none is bound any more
        used = [port for r in records for leg in r["media"] for port in leg["local"][1:]]
        self.assertEqual(len(used), 800)
        self.assertTrue(all(low <= port <= high for port in used), used)
        self.assertEqual(ports_held(low, high), [])


class BaresipBase(MediaTestBase):
    """Starting baresips and checking a relayed call's counters against theirs (no tests here)."""

    skip = SKIP_REASON or baresip_driver.SKIP_REASON

    def phone(self, user: str, enc: str | None, answermode: str = "auto") -> MediaBaresip:
        """``enc``: None (plain RTP over UDP), "sdes" (srtp-mand over TLS), "dtls" (dtls_srtp over UDP)."""
        assert self.server is not None
        tls = enc == "sdes"
        mediaenc = {None: None, "sdes": "srtp-mand", "dtls": "dtls_srtp"}[enc]
        p = MediaBaresip(self.dir, user, EXTS[user], self.server.tls if tls else self.server.udp,
                         "tls" if tls else "udp", mediaenc, answermode=answermode)
        self.addCleanup(p.stop)
        p.start()
        p.wait_registered(timeout=10)
        return p

    def diagnostics(self, *phones: MediaBaresip) -> str:
        parts = [f"--- baresip {p.user} ({p.event_types()}) ---\n{p.output(2500)}" for p in phones]
        return "\n".join(parts) + f"\n--- minisip ---\n{self.log()}"

    def talk(self, caller: MediaBaresip, callee: MediaBaresip) -> None:
        """caller dials callee; both see the call established and RTP arriving; then TALK_SECONDS."""
        caller.dial("sip:101@127.0.0.1")
        for p in (caller, callee):
            p.wait_event("CALL_ESTABLISHED", timeout=10)
        for p in (caller, callee):
            self.assertEqual(p.wait_event("CALL_RTPESTAB", timeout=8)["param"], "audio")
        time.sleep(TALK_SECONDS)

    def hang_up(self, caller: MediaBaresip, callee: MediaBaresip) -> tuple[dict[str, Any], dict[str, Any]]:
        """The caller hangs up; the relay's (caller leg, callee leg) statistics, checked against the
        phones' own counters."""
        assert self.server is not None
        caller.hangup()
        for p in (caller, callee):
            p.wait_event("CALL_CLOSED", timeout=10)
        (record,) = self.server.records(1)
        media = record["media"]
        self.assertEqual(record["cause"], "normal")
        self.assertEqual(flow_problems(media, MIN_PACKETS), [], summary(media))
        legs = {("callee" if ep["label"].startswith("sip:101") else "caller"): ep for ep in media}
        self.assertEqual(sorted(legs), ["callee", "caller"], summary(media))
        for name, p in (("caller", caller), ("callee", callee)):
            tx, rx = p.wait_rtp_stats()
            ep = legs[name]
            self.assertGreater(rx, MIN_PACKETS, f"{name} received {rx}")
            self.assertTrue(_agree(tx, ep["packets_in"]), f"{name} sent {tx}, relay got {ep['packets_in']}\n"
                            + summary(media))
            self.assertTrue(_agree(rx, ep["packets_out"]), f"{name} received {rx}, relay sent {ep['packets_out']}\n"
                            + summary(media))
        return legs["caller"], legs["callee"]

    def pair(self, caller_enc: str | None, callee_enc: str | None,
             encryption: dict[str, str] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
        self.start_server(encryption=encryption)
        caller = self.phone("100", caller_enc)
        callee = self.phone("101", callee_enc)
        try:
            self.talk(caller, callee)
            legs = self.hang_up(caller, callee)
        except AssertionError as e:
            raise AssertionError(f"{e}\n{self.diagnostics(caller, callee)}") from None
        for ep, enc in zip(legs, (caller_enc, callee_enc)):
            self.assertEqual(ep["secure"], enc is not None, summary(list(legs)))
            self.assertEqual(ep["srtp_auth_failures"], 0, summary(list(legs)))
        return legs



class BaresipPairTests(BaresipBase):
    """Two baresips, one calling the other (auto-answer), for each pair of media encryptions."""

    def test_plain_to_plain(self) -> None:
        self.pair(None, None)

    def test_sdes_to_plain(self) -> None:
        self.pair("sdes", None)

    def test_plain_to_sdes(self) -> None:
        self.pair(None, "sdes")

    def test_sdes_to_sdes(self) -> None:
        self.pair("sdes", "sdes")

    def test_dtls_to_plain(self) -> None:
        self.pair("dtls", None)

    def test_plain_to_dtls(self) -> None:
        self.pair(None, "dtls", {"101": "dtls"})

    def test_dtls_to_sdes(self) -> None:
        self.pair("dtls", "sdes")

    def test_sdes_to_dtls(self) -> None:
        self.pair("sdes", "dtls", {"101": "dtls"})

    def test_dtls_to_dtls(self) -> None:
        self.pair("dtls", "dtls", {"101": "dtls"})

    def test_rtcp_relayed_sdes_to_plain(self) -> None:
        """RTCP crosses the relay both ways and is re-protected: the SDES phone's SRTCP reaches the plain
        phone decrypted, the plain phone's RTCP reaches the SDES phone as SRTCP it accepts."""
        self.rtcp_pair("sdes", None)

    def test_rtcp_relayed_plain_to_dtls(self) -> None:
        self.rtcp_pair(None, "dtls", {"101": "dtls"})

    def rtcp_pair(self, caller_enc: str | None, callee_enc: str | None,
                  encryption: dict[str, str] | None = None) -> None:
        """A call long enough for baresip's regular RTCP reports (every 5 s): on both legs the relay
        received and sent RTCP, read the phone's reception report (so SRTCP was decrypted), and dropped
        nothing for failed authentication."""
        self.start_server(encryption=encryption)
        caller = self.phone("100", caller_enc)
        callee = self.phone("101", callee_enc)
        try:
            self.talk(caller, callee)
            time.sleep(RTCP_SECONDS)
            legs = self.hang_up(caller, callee)
        except AssertionError as e:
            raise AssertionError(f"{e}\n{self.diagnostics(caller, callee)}") from None
        for ep, enc in zip(legs, (caller_enc, callee_enc)):
            self.assertEqual(ep["secure"], enc is not None, summary(list(legs)))
            self.assertGreaterEqual(ep["rtcp_in"], 1, summary(list(legs)))
            self.assertGreaterEqual(ep["rtcp_out"], 1, summary(list(legs)))
            self.assertIsNotNone(ep["reported_jitter"], summary(list(legs)))
            self.assertIsNotNone(ep["reported_fraction_lost"], summary(list(legs)))
            self.assertEqual((ep["srtp_auth_failures"], ep["srtp_replay_failures"]), (0, 0), summary(list(legs)))
        # what one leg's phone sent reached the other leg's phone, but for reports sent before the other
        # leg's keys were in place (the DTLS handshakes, one per component without rtcp-mux)
        for src, dst in (legs, legs[::-1]):
            self.assertTrue(dst["rtcp_out"] <= src["rtcp_in"] <= dst["rtcp_out"] + dst["dropped_not_ready"],
                            summary(list(legs)))

    def test_dtls_caller_hears_a_phone_that_rang(self) -> None:
        """A DTLS caller whose callee rings 4 s before answering hears it within 2 s of the answer: the
        server (its DTLS client) starts the handshake afresh when the answer goes out instead of waiting
        for a retransmission that backed off during the ringing (7 s after the offer here; after 30 s of
        ringing the handshake had given up and the caller heard nothing)."""
        self.start_server()
        caller = self.phone("100", "dtls")
        callee = self.phone("101", None, answermode="manual")
        try:
            caller.dial("sip:101@127.0.0.1")
            callee.wait_event("CALL_INCOMING", timeout=10)
            time.sleep(4.0)
            answered = time.monotonic()
            callee.command("accept")
            caller.wait_event("CALL_ESTABLISHED", timeout=10)
            caller.wait_event("CALL_RTPESTAB", timeout=8)
            self.assertLess(time.monotonic() - answered, 2.0, "the caller heard the callee late")
            time.sleep(TALK_SECONDS)
            caller_leg, _ = self.hang_up(caller, callee)
            self.assertTrue(caller_leg["secure"])
        except AssertionError as e:
            raise AssertionError(f"{e}\n{self.diagnostics(caller, callee)}") from None

    def test_stray_dtls_and_spoofed_srtp_mid_call(self) -> None:
        """Mid-call, 127.0.0.5 sends DTLS ClientHellos and fake SRTP to the DTLS caller's relay port: the
        keys stay, the fake packets are dropped and counted, and the call goes on both ways."""
        from twisted.internet.task import Clock

        from minisip.media.dtls import DtlsTransform, local_certificate

        self.start_server()
        caller, callee = self.phone("100", "dtls"), self.phone("101", None)
        try:
            self.talk(caller, callee)
            target = receiving_from(caller.output(1 << 20))[-1]
            hellos: list[bytes] = []
            stray = DtlsTransform("client", ("sha-256", local_certificate().fingerprint), Clock())
            stray.attach(hellos.append)
            stray.start()
            self.assertTrue(hellos)
            spoofer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            spoofer.bind(("127.0.0.5", 0))
            sent = 50
            try:
                for seq in range(sent):
                    if seq % 10 == 0:
                        for hello in hellos:
                            spoofer.sendto(hello, target)
                    packet = struct.pack("!BBHII", 0x80, 0, seq, seq * 160, 0x5BEEF) + b"\xff" * 170
                    spoofer.sendto(packet, target)
                    time.sleep(0.005)
                spoofer.settimeout(0.5)
                try:
                    reply = spoofer.recv(4096)
                except socket.timeout:
                    reply = b""
            finally:
                spoofer.close()
                stray.close()
            self.assertEqual(reply, b"", "the relay answered a stranger")
            time.sleep(1.0)
            caller_leg, _ = self.hang_up(caller, callee)
            self.assertGreaterEqual(caller_leg["dropped_spoofed"], sent, summary([caller_leg]))
            self.assertEqual(caller_leg["srtp_auth_failures"], 0, summary([caller_leg]))
            self.assertEqual(caller_leg["latched_rtp"], caller_leg["remote_rtp"], summary([caller_leg]))
            assert self.server is not None
            self.assertNotIn("DTLS-SRTP (client) failed", self.server.read_log())
            self.assertNotIn("DTLS-SRTP (server) failed", self.server.read_log())
        except AssertionError as e:
            raise AssertionError(f"{e}\n{self.diagnostics(caller, callee)}") from None

    def test_spoofed_sender_cannot_take_over(self) -> None:
        """Mid-call, 127.0.0.5 sends RTP (another SSRC) to both relay ports of the call: the relay drops and
        counts every packet, stays latched to the phones, and the phones keep receiving only each other."""
        self.start_server()
        caller, callee = self.phone("100", None), self.phone("101", None)
        try:
            self.talk(caller, callee)
            targets = [receiving_from(p.output(1 << 20))[-1] for p in (caller, callee)]
            for _host, port in targets:
                self.assertTrue(self.ports[0] <= port <= self.ports[1], f"{port} is not a relay port")
            spoofer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            spoofer.bind(("127.0.0.5", 0))
            sent = 100
            try:
                for seq in range(sent):
                    packet = struct.pack("!BBHII", 0x80, 0, seq, seq * 160, 0x5BEEF) + b"\xff" * 160
                    for target in targets:
                        spoofer.sendto(packet, target)
                    time.sleep(0.005)
            finally:
                spoofer.close()
            time.sleep(1.0)
            caller_leg, callee_leg = self.hang_up(caller, callee)
            legs = [caller_leg, callee_leg]
            for ep in legs:
                self.assertGreaterEqual(ep["dropped_spoofed"], sent, summary(legs))
                self.assertLess(ep["dropped_spoofed"], sent + 10, summary(legs))
                self.assertEqual(ep["latched_rtp"][0], "127.0.0.1", summary(legs))
                self.assertEqual(ep["latched_rtp"], ep["remote_rtp"], summary(legs))
            # nothing of the spoofer's reached a phone: each received what the other sent, no more
            for receiver, sender in ((caller, callee), (callee, caller)):
                rx = receiver.wait_rtp_stats()[1]
                tx = sender.wait_rtp_stats()[0]
                self.assertLessEqual(rx, tx, f"{receiver.user} received {rx} > {tx} sent by {sender.user}")
                self.assertGreater(rx, tx - 10, f"{receiver.user} received {rx} of {tx}")
        except AssertionError as e:
            raise AssertionError(f"{e}\n{self.diagnostics(caller, callee)}") from None


class AutoRelayTests(BaresipBase):
    """``relay = auto``: the relay steps in only where the legs need it."""

    def test_plain_phones_talk_directly(self) -> None:
        """Two plain phones on loopback (SDP address = signalling address): SDP passes unchanged, each
        phone receives RTP straight from the other, no relay port is bound, no media statistics."""
        self.start_server(relay="auto")
        caller, callee = self.phone("100", None), self.phone("101", None)
        try:
            self.talk(caller, callee)
            caller.hangup()
            for p in (caller, callee):
                p.wait_event("CALL_CLOSED", timeout=10)
            sources = [receiving_from(p.output(1 << 20))[-1][1] for p in (caller, callee)]
            for port in sources:
                self.assertFalse(self.ports[0] <= port <= self.ports[1], f"RTP came from relay port {port}")
            (record,) = self.server.records(1) if self.server else []
            self.assertIsNone(record["media"])
            for p in (caller, callee):
                tx, rx = p.wait_rtp_stats()
                self.assertGreater(rx, MIN_PACKETS, f"{p.user} received {rx}")
        except AssertionError as e:
            raise AssertionError(f"{e}\n{self.diagnostics(caller, callee)}") from None

    def test_srtp_to_plain_is_relayed(self) -> None:
        """An SDES phone calling a plain phone: the legs differ, so the relay bridges them."""
        self.start_server(relay="auto")
        caller, callee = self.phone("100", "sdes"), self.phone("101", None)
        try:
            self.talk(caller, callee)
            caller_leg, callee_leg = self.hang_up(caller, callee)
        except AssertionError as e:
            raise AssertionError(f"{e}\n{self.diagnostics(caller, callee)}") from None
        self.assertEqual((caller_leg["secure"], callee_leg["secure"]), (True, False))
        port = receiving_from(callee.output(1 << 20))[-1][1]
        self.assertTrue(self.ports[0] <= port <= self.ports[1], f"RTP came from {port}, not the relay")


class LinphoneMediaTests(BaresipBase):
    """linphone-daemon with SDES (over TLS) and DTLS-SRTP against baresip, through the relay."""

    skip = SKIP_REASON or baresip_driver.SKIP_REASON or linphone_driver.SKIP_REASON

    def linphone(self, user: str, encryption: str) -> MediaLinphone:
        assert self.server is not None
        tls = encryption == "srtp"
        cafile = os.path.join(self.server.datadir, "tls", "server.crt") if tls else None
        p = MediaLinphone(self.dir, user, EXTS[user], self.server.tls if tls else self.server.udp,
                          "tls" if tls else "udp", encryption, cafile=cafile)
        self.addCleanup(p.stop)
        p.start()
        p.wait_registered(timeout=10)
        return p

    def check(self, lin: MediaLinphone, lin_leg: dict[str, Any], other: dict[str, Any]) -> None:
        """Linphone's own summary (sent, received) agrees with the relay's counters for its leg."""
        deadline = time.monotonic() + 5
        while not lin.rtp_stats() and time.monotonic() < deadline:
            time.sleep(0.1)
        stats = lin.rtp_stats()
        self.assertTrue(stats, f"no RTP summary in Linphone's log\n{lin.output()}")
        sent, received = stats[-1]
        legs = [lin_leg, other]
        self.assertGreater(received, MIN_PACKETS, summary(legs))
        self.assertTrue(_agree(sent, lin_leg["packets_in"]), f"linphone sent {sent}\n{summary(legs)}")
        self.assertTrue(_agree(received, lin_leg["packets_out"]), f"linphone received {received}\n{summary(legs)}")

    def records_of_one_call(self) -> tuple[dict[str, Any], dict[str, Any]]:
        assert self.server is not None
        (record,) = self.server.records(1)
        media = record["media"]
        self.assertEqual(flow_problems(media, MIN_PACKETS), [], summary(media))
        legs = {("callee" if ep["label"].startswith("sip:101") else "caller"): ep for ep in media}
        return legs["caller"], legs["callee"]

    def linphone_calls_baresip(self, lin_enc: str, bare_enc: str | None, bare_secure: bool) -> None:
        """Linphone (100) calls baresip (101) and hangs up; both legs' records and counters agree with
        the phones (Linphone's statistics, baresip's RTP counts)."""
        self.start_server()
        lin = self.linphone("100", lin_enc)
        bare = self.phone("101", bare_enc)
        try:
            call = lin.dial("sip:101@127.0.0.1")
            lin.wait_call_state("CallStreamsRunning", call=call, timeout=10)
            lin.play(call)
            bare.wait_event("CALL_ESTABLISHED", timeout=10)
            bare.wait_event("CALL_RTPESTAB", timeout=8)
            time.sleep(TALK_SECONDS)
            lin.command(f"terminate {call}")
            bare.wait_event("CALL_CLOSED", timeout=10)
            lin_leg, bare_leg = self.records_of_one_call()
            self.assertEqual((lin_leg["secure"], bare_leg["secure"]), (True, bare_secure),
                             summary([lin_leg, bare_leg]))
            self.check(lin, lin_leg, bare_leg)
            tx, rx = bare.wait_rtp_stats()
            self.assertTrue(_agree(rx, bare_leg["packets_out"]) and _agree(tx, bare_leg["packets_in"]),
                            f"baresip {tx}/{rx}\n{summary([lin_leg, bare_leg])}")
        except AssertionError as e:
            raise AssertionError(f"{e}\n--- linphone ---\n{lin.output()}\n{self.diagnostics(bare)}") from None

    def test_linphone_sdes_calls_baresip_plain(self) -> None:
        """Linphone (SDES, mandatory, over TLS) calls a plain baresip; Linphone hangs up."""
        self.linphone_calls_baresip("srtp", None, bare_secure=False)

    def test_baresip_dtls_calls_linphone_dtls(self) -> None:
        """baresip (DTLS-SRTP) calls Linphone (DTLS-SRTP, mandatory): the server offers Linphone DTLS
        (media_encryption = dtls) and bridges two DTLS legs, each with its own handshake."""
        self.start_server(encryption={"101": "dtls"})
        bare = self.phone("100", "dtls")
        lin = self.linphone("101", "dtls")
        try:
            bare.dial("sip:101@127.0.0.1")
            call = lin.wait_call_state("CallIncomingReceived", timeout=10)
            lin.command(f"answer {call}")
            lin.wait_call_state("CallStreamsRunning", call=call, timeout=10)
            lin.play(call)
            bare.wait_event("CALL_ESTABLISHED", timeout=10)
            bare.wait_event("CALL_RTPESTAB", timeout=8)
            time.sleep(TALK_SECONDS)
            bare.hangup()
            bare.wait_event("CALL_CLOSED", timeout=10)
            lin.wait_call_state("CallReleased", call=call, timeout=10)
            bare_leg, lin_leg = self.records_of_one_call()
            self.assertEqual((bare_leg["secure"], lin_leg["secure"]), (True, True), summary([bare_leg, lin_leg]))
            self.check(lin, lin_leg, bare_leg)
            tx, rx = bare.wait_rtp_stats()
            self.assertTrue(_agree(rx, bare_leg["packets_out"]) and _agree(tx, bare_leg["packets_in"]),
                            f"baresip {tx}/{rx}\n{summary([bare_leg, lin_leg])}")
        except AssertionError as e:
            raise AssertionError(f"{e}\n--- linphone ---\n{lin.output()}\n{self.diagnostics(bare)}") from None

    def test_linphone_dtls_calls_baresip_sdes(self) -> None:
        """Linphone (DTLS-SRTP, mandatory, over UDP) calls baresip (SDES over TLS): the server is
        Linphone's DTLS peer on one leg and re-keys the audio as SDES-SRTP on the other."""
        self.linphone_calls_baresip("dtls", "sdes", bare_secure=True)
