"""Real softphones through minisip: Linphone (linphone-daemon 5.1) and PJSIP (pjsua2 2.15).

Each test starts a minisip with the configuration the harness writes (the default digest challenges)
and the phones it needs, each registered on its own transport. The B2BUA passes SDP through unchanged,
so RTP flows between the phones directly; PJSIP's stream counters and the RTP summary Linphone logs when
a stream stops prove that audio went both ways. What each phone does is described in linphone.py and
pjsua.py.
"""

from __future__ import annotations

import os
import re
import time
from typing import Callable

from twisted.trial import unittest

from tests.integration import linphone as linphone_driver
from tests.integration import pjsua as pjsua_driver
from tests.integration.harness import Minisip
from tests.integration.linphone import Linphone
from tests.integration.pjsua import Pjsua

EXTS = {"100": "100", "101": "101", "102": "102"}
TALK_SECONDS = 1.5  # about 50 packets a second each way with 20 ms PCMU
MIN_PACKETS = 30


def _skip_reason() -> str | None:
    if os.environ.get("MINISIP_SKIP_INTEGRATION"):
        return "MINISIP_SKIP_INTEGRATION is set (the Debian-packages run covers unit tests only)"
    return linphone_driver.SKIP_REASON or pjsua_driver.SKIP_REASON


class PhonesTestBase(unittest.TestCase):
    skip = _skip_reason()
    timeout = 60  # trial's own bound; each test takes a few seconds

    def setUp(self) -> None:
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        self.server = Minisip(self.dir, EXTS)
        self.addCleanup(self.server.stop)
        self.server.start()
        self.cafile = os.path.join(self.server.datadir, "tls", "server.crt")
        self.linphones: dict[str, Linphone] = {}
        self.pjsuas: dict[str, Pjsua] = {}

    def tearDown(self) -> None:
        self.server.assert_no_tracebacks(self)

    def port(self, transport: str) -> int:
        return {"udp": self.server.udp, "tcp": self.server.tcp, "tls": self.server.tls}[transport]

    def linphone(self, user: str, transport: str, dtmf: str = "rfc2833") -> Linphone:
        tls = transport == "tls"
        # Linphone checks the name too once minisip's certificate lists the address as a DNS name.
        phone = Linphone(self.dir, user, EXTS[user], self.port(transport), transport,
                         cafile=self.cafile if tls else None, dtmf=dtmf,
                         verify_name=tls and linphone_driver.names_ip_as_dns(self.cafile))
        self.addCleanup(phone.stop)
        self.linphones[user] = phone
        phone.start()
        return phone

    def pjsua(self, user: str, transport: str, autoanswer: bool = True) -> Pjsua:
        phone = Pjsua(self.dir, user, EXTS[user], self.port(transport), transport,
                      cafile=self.cafile if transport == "tls" else None, autoanswer=autoanswer)
        self.addCleanup(phone.stop)
        self.pjsuas[user] = phone
        phone.start()
        return phone

    def registered(self, user: str, transport: str) -> None:
        """The phone says so, and so does minisip, for the transport the phone chose."""
        phone = self.linphones.get(user) or self.pjsuas[user]
        phone.wait_registered(timeout=10)
        log = self.server.wait_log(f"extension {user} registered", timeout=5)
        lines = [ln for ln in log.splitlines() if f"extension {user} registered" in ln]
        self.assertIn(f" from {transport}:127.0.0.1:", lines[-1])

    def diagnostics(self) -> str:
        parts = [f"--- linphone {u} {[(e.get('Event') or e.get('Tone'), e.get('Id')) for e in p.events]} ---\n"
                 f"{p.output(2500)}" for u, p in self.linphones.items()]
        parts += [f"--- pjsua {u} {p.events[-25:]} ---\n{p.output(2500)}" for u, p in self.pjsuas.items()]
        parts.append(f"--- minisip ---\n{self.server.read_log()[-3000:]}")
        return "\n".join(parts)

    def run_checked(self, body: Callable[[], None]) -> None:
        """Run the test body; a failure carries every phone's and the server's log tail."""
        try:
            body()
        except AssertionError as e:
            raise AssertionError(f"{e}\n{self.diagnostics()}") from None

    def wait_log(self, phone: Linphone, pattern: str, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not re.search(pattern, phone.read_log()) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertRegex(phone.read_log(), pattern)

    # --- call steps ---

    def linphone_calls_pjsip(self, caller: Linphone, callee: Pjsua) -> str:
        """Linphone dials the PJSIP phone (which answers at once); the Linphone call id once media runs."""
        call = caller.dial(f"sip:{callee.user}@127.0.0.1")
        callee.wait_event("incoming", timeout=10)
        callee.wait_event("state", state="CONFIRMED", timeout=10)
        caller.wait_call_state("CallStreamsRunning", call=call, timeout=10)
        caller.play(call)
        self.server.wait_log("answered by", timeout=5)
        return call

    def pjsip_calls_linphone(self, caller: Pjsua, callee: Linphone) -> str:
        """PJSIP dials Linphone, which answers; the Linphone call id once media runs."""
        caller.dial(f"sip:{callee.user}@127.0.0.1")
        call = callee.wait_call_state("CallIncomingReceived", timeout=10)
        callee.command(f"answer {call}")
        caller.wait_event("state", state="CONFIRMED", timeout=10)
        callee.wait_call_state("CallStreamsRunning", call=call, timeout=10)
        callee.play(call)
        self.server.wait_log("answered by", timeout=5)
        return call

    def assert_rtp_flows(self, pjsip: Pjsua) -> tuple[int, int]:
        """Talk a while; the PJSIP phone must have sent and received RTP (from and to Linphone)."""
        time.sleep(TALK_SECONDS)
        tx, rx = pjsip.stats()
        self.assertGreater(tx, MIN_PACKETS, f"pjsua {pjsip.user} sent {tx} RTP packets")
        self.assertGreater(rx, MIN_PACKETS, f"pjsua {pjsip.user} received {rx} RTP packets")
        return tx, rx

    def assert_linphone_rtp(self, phone: Linphone, timeout: float = 5.0) -> None:
        """Once Linphone's stream stopped, its own summary shows RTP sent and received."""
        deadline = time.monotonic() + timeout
        while not phone.rtp_stats() and time.monotonic() < deadline:
            time.sleep(0.05)
        stats = phone.rtp_stats()
        self.assertTrue(stats, f"linphone {phone.user} logged no RTP statistics")
        sent, received = stats[-1]
        self.assertGreater(sent, MIN_PACKETS, f"linphone {phone.user} sent {sent} RTP packets")
        self.assertGreater(received, MIN_PACKETS, f"linphone {phone.user} received {received} RTP packets")

    def assert_ended(self, by: str) -> None:
        log = self.server.wait_log("ended: normal", timeout=5)
        self.assertIn(f"ended: normal (hangup by {by})", log)


class RegistrationTests(PhonesTestBase):
    """Both phones register with digest over each transport (UDP, TCP, TLS against the self-signed
    certificate minisip made: Linphone checks it against root_ca, PJSIP with verifyServer)."""

    def check(self, transport: str) -> None:
        def body() -> None:
            self.linphone("100", transport)
            self.pjsua("101", transport)
            self.registered("100", transport)
            self.registered("101", transport)
        self.run_checked(body)

    def test_register_udp(self) -> None:
        self.check("udp")

    def test_register_tcp(self) -> None:
        self.check("tcp")

    def test_register_tls(self) -> None:
        self.check("tls")

    def test_register_with_each_digest_algorithm_alone(self) -> None:
        """Both phones answer a challenge of MD5 alone and of SHA-256 alone (RFC 8760), with that
        algorithm; so either server setting suits them."""
        def body() -> None:
            for algorithm in ("MD5", "SHA-256"):
                self.server.stop()
                self.server.extra = f"[security]\ndigest_algorithms = {algorithm}"
                self.server.write_config()
                self.server.start()
                workdir = os.path.join(self.dir, algorithm)
                lin = Linphone(workdir, "100", EXTS["100"], self.server.udp, "udp")
                pj = Pjsua(workdir, "101", EXTS["101"], self.server.udp, "udp")
                self.linphones["100"], self.pjsuas["101"] = lin, pj
                for phone in (lin, pj):
                    self.addCleanup(phone.stop)
                    phone.start()
                    phone.wait_registered(timeout=10)
                    phone.stop()  # its log is complete once it has quit
                    headers = re.findall(r"^(?:Proxy-)?Authorization:(.*)$", phone.read_log(), re.M)
                    self.assertTrue(headers, f"{phone.user} sent no credentials")
                    # a header naming no algorithm means MD5 (RFC 3261; PJSIP leaves it out)
                    used = {(re.findall(r"algorithm=\"?([A-Za-z0-9-]+)", h) or ["MD5"])[0].upper() for h in headers}
                    self.assertEqual(used, {algorithm}, f"{phone.user} answered with {used}")
        self.run_checked(body)

    def test_phones_refuse_a_certificate_they_were_not_given(self) -> None:
        """Both phones really verify minisip's certificate: trusting another self-signed certificate for
        127.0.0.1 (same names, another key), neither registers over TLS."""
        from minisip.transport.tls import ensure_certificate
        other, _ = ensure_certificate(os.path.join(self.dir, "other"), None, None, "127.0.0.1")

        def body() -> None:
            pj = Pjsua(self.dir, "101", EXTS["101"], self.server.tls, "tls", cafile=other)
            self.addCleanup(pj.stop)
            self.pjsuas["101"] = pj
            lin = Linphone(self.dir, "100", EXTS["100"], self.server.tls, "tls", cafile=other)
            self.addCleanup(lin.stop)
            self.linphones["100"] = lin
            pj.start()
            lin.start()
            ev = pj.wait_event("reg", timeout=10)
            self.assertNotEqual(ev["code"], 200, ev)
            self.wait_log(lin, r"SSL handshake failed")
            self.wait_log(lin, r"Register refresher \[503\]")  # it gives up this try (and retries)
            self.assertNotEqual(lin.command("register-status ALL").get("State"), "LinphoneRegistrationOk")
            self.assertNotIn("registered", self.server.read_log())
        self.run_checked(body)


class CallTests(PhonesTestBase):
    """Calls both ways with RTP both ways, and a hang-up from each side."""

    def test_linphone_calls_pjsip_over_tls_and_hangs_up(self) -> None:
        def body() -> None:
            lin, pj = self.linphone("100", "tls"), self.pjsua("101", "tls")
            self.registered("100", "tls")
            self.registered("101", "tls")
            call = self.linphone_calls_pjsip(lin, pj)
            self.assert_rtp_flows(pj)
            lin.command(f"terminate {call}")
            pj.wait_event("state", state="DISCONNECTED", timeout=10)
            lin.wait_call_state("CallReleased", call=call, timeout=10)
            self.assert_ended("caller")
            self.assert_linphone_rtp(lin)
        self.run_checked(body)

    def test_pjsip_calls_linphone_over_tcp_and_linphone_hangs_up(self) -> None:
        def body() -> None:
            lin, pj = self.linphone("100", "tcp"), self.pjsua("101", "tcp")
            self.registered("100", "tcp")
            self.registered("101", "tcp")
            call = self.pjsip_calls_linphone(pj, lin)
            self.assert_rtp_flows(pj)
            lin.command(f"terminate {call}")
            pj.wait_event("state", state="DISCONNECTED", timeout=10)
            lin.wait_call_state("CallReleased", call=call, timeout=10)
            self.assert_ended("callee")
            self.assert_linphone_rtp(lin)
        self.run_checked(body)

    def test_pjsip_caller_hangs_up_across_transports(self) -> None:
        """PJSIP on UDP calls Linphone on TLS: minisip bridges the two transports."""
        def body() -> None:
            lin, pj = self.linphone("100", "tls"), self.pjsua("101", "udp")
            self.registered("100", "tls")
            self.registered("101", "udp")
            call = self.pjsip_calls_linphone(pj, lin)
            self.assert_rtp_flows(pj)
            pj.command("hangup")
            lin.wait_call_state("CallEnd", call=call, timeout=10)
            pj.wait_event("state", state="DISCONNECTED", timeout=10)
            self.assert_ended("caller")
            self.assert_linphone_rtp(lin)
        self.run_checked(body)

    def test_pjsip_callee_hangs_up_across_transports(self) -> None:
        """Linphone on UDP calls PJSIP on TCP."""
        def body() -> None:
            lin, pj = self.linphone("100", "udp"), self.pjsua("101", "tcp")
            self.registered("100", "udp")
            self.registered("101", "tcp")
            call = self.linphone_calls_pjsip(lin, pj)
            self.assert_rtp_flows(pj)
            pj.command("hangup")
            lin.wait_call_state("CallEnd", call=call, timeout=10)
            pj.wait_event("state", state="DISCONNECTED", timeout=10)
            self.assert_ended("callee")
            self.assert_linphone_rtp(lin)
        self.run_checked(body)


class InCallTests(PhonesTestBase):
    """Hold/resume re-INVITEs, DTMF (RFC 4733 and SIP INFO) and blind transfer through minisip."""

    def test_hold_and_resume_both_ways(self) -> None:
        def body() -> None:
            lin, pj = self.linphone("100", "udp"), self.pjsua("101", "udp")
            self.registered("100", "udp")
            self.registered("101", "udp")
            call = self.pjsip_calls_linphone(pj, lin)
            pj.wait_event("media", status="active", dir="sendrecv", timeout=5)
            # PJSIP holds (a=sendonly): Linphone sees itself paused by the other side, then resumed.
            pj.command("hold")
            pj.wait_event("media", status="local_hold", dir="sendonly", timeout=5)
            lin.wait_call_state("CallPausedByRemote", call=call, timeout=5)
            pj.command("unhold")
            pj.wait_event("media", status="active", dir="sendrecv", timeout=5)
            lin.wait_call_state("CallStreamsRunning", call=call, timeout=5)
            # Linphone holds: PJSIP sees a remote hold (it may only receive), then sendrecv again.
            lin.command(f"call-pause {call}")
            lin.wait_call_state("CallPaused", call=call, timeout=5)
            pj.wait_event("media", status="remote_hold", dir="recvonly", timeout=5)
            lin.command(f"call-resume {call}")
            lin.wait_call_state("CallStreamsRunning", call=call, timeout=5)
            pj.wait_event("media", status="active", dir="sendrecv", timeout=5)
            lin.play(call)
            # Audio flows again both ways after the resume.
            _, rx_before = pj.stats()
            self.assert_rtp_flows(pj)
            _, rx_after = pj.stats()
            self.assertGreater(rx_after - rx_before, MIN_PACKETS, "no RTP from Linphone after the resume")
            pj.command("hangup")
            lin.wait_call_state("CallReleased", call=call, timeout=10)
            self.assert_ended("caller")
        self.run_checked(body)

    def test_dtmf_rfc4733_both_ways(self) -> None:
        def body() -> None:
            lin, pj = self.linphone("100", "udp"), self.pjsua("101", "udp")
            self.registered("100", "udp")
            self.registered("101", "udp")
            call = self.linphone_calls_pjsip(lin, pj)
            pj.command("dtmf 159 rfc2833")
            self.wait_tones(lin, "159")
            for digit in "*0#":
                lin.command(f"dtmf {digit}")
                ev = pj.wait_event("dtmf", timeout=5)
                self.assertEqual((ev["digit"], ev["method"]), (digit, "rfc2833"))
                time.sleep(0.3)  # Linphone drops a digit sent while the last one still plays
            lin.command(f"terminate {call}")
            pj.wait_event("state", state="DISCONNECTED", timeout=10)
        self.run_checked(body)

    def test_dtmf_sip_info_both_ways(self) -> None:
        def body() -> None:
            lin, pj = self.linphone("100", "udp", dtmf="info"), self.pjsua("101", "udp")
            self.registered("100", "udp")
            self.registered("101", "udp")
            call = self.pjsip_calls_linphone(pj, lin)
            pj.command("dtmf 42 info")
            self.wait_tones(lin, "42")
            for _ in "42":  # one INFO per digit, each answered 200 by Linphone through minisip
                self.assertEqual(pj.wait_event("response", method="INFO", timeout=5)["code"], 200)
            for digit in "7#":
                lin.command(f"dtmf {digit}")
                ev = pj.wait_event("dtmf", timeout=5)
                self.assertEqual((ev["digit"], ev["method"]), (digit, "info"))
                time.sleep(0.3)
            self.assertEqual(len(pj.seen("request", method="INFO")), 2)  # not RFC 4733 after all
            pj.command("hangup")
            lin.wait_call_state("CallReleased", call=call, timeout=10)
        self.run_checked(body)

    def wait_tones(self, phone: Linphone, digits: str, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while phone.tones() != digits and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(phone.tones(), digits)

    def test_blind_transfer_by_pjsip(self) -> None:
        """PJSIP (101) transfers Linphone (100) to 102: the REFER crosses minisip, Linphone accepts it
        (202) and calls 102, and its NOTIFY comes back across to PJSIP.

        Linphone 5.1's final NOTIFY carries ``Subscription-State: terminated;reason=reason=noresource``,
        which PJSIP drops as a syntax error, so only the first NOTIFY (sipfrag "100 Trying") can be seen
        to arrive (see linphone.py)."""
        def body() -> None:
            lin, pj = self.linphone("100", "udp"), self.pjsua("101", "udp")
            target = self.pjsua("102", "udp")
            for user in ("100", "101", "102"):
                self.registered(user, "udp")
            call = self.linphone_calls_pjsip(lin, pj)
            pj.command("xfer sip:102@127.0.0.1")
            refer = pj.wait_event("response", method="REFER", timeout=5)
            self.assertEqual(refer["code"], 202, refer)
            lin.wait_call_state("CallRefered", call=call, timeout=5)
            self.wait_log(lin, r"REFER sip:100@[^\n]*\n(?:[^\n]+\n)*?Refer-To: <?sip:102@127\.0\.0\.1")
            new = lin.wait_call_state("CallOutgoingInit", timeout=5)
            if new == call:  # the first call's own OutgoingInit, still pending: the next one is new
                new = lin.wait_call_state("CallOutgoingInit", timeout=5)
            self.assertNotEqual(new, call)
            incoming = target.wait_event("incoming", timeout=10)
            self.assertIn("sip:100@127.0.0.1", incoming["from"])
            target.wait_event("state", state="CONFIRMED", timeout=10)
            lin.wait_call_state("CallStreamsRunning", call=new, timeout=10)
            # The transferee's NOTIFY reaches the transferor through minisip.
            pj.wait_event("request", method="NOTIFY", timeout=5)
            status = pj.wait_event("xfer_status", timeout=5, match=lambda ev: ev["reason"] != "Accepted")
            self.assertEqual(status["code"], 100, status)
            target.command("hangup")
            lin.wait_call_state("CallReleased", call=new, timeout=10)
        self.run_checked(body)

    def test_blind_transfer_by_linphone(self) -> None:
        """Linphone (100) transfers PJSIP (101) to 102: PJSIP gets the REFER with the Refer-To it was
        sent, answers 202 and calls 102 through minisip."""
        def body() -> None:
            lin, pj = self.linphone("100", "udp"), self.pjsua("101", "udp")
            target = self.pjsua("102", "udp")
            for user in ("100", "101", "102"):
                self.registered(user, "udp")
            call = self.pjsip_calls_linphone(pj, lin)
            lin.command(f"call-transfer {call} sip:102@127.0.0.1")
            refer = pj.wait_event("xfer_request", timeout=5)
            self.assertIn("sip:102@127.0.0.1", refer["to"])
            self.assertEqual(refer["code"], 202)
            # PJSIP's 202 came back across to Linphone (its log holds every SIP message it received).
            self.wait_log(lin, r"SIP/2.0 202 [^\n]*\n(?:[^\n]+\n)*?CSeq: \d+ REFER")
            incoming = target.wait_event("incoming", timeout=10)
            self.assertIn("sip:101@127.0.0.1", incoming["from"])
            target.wait_event("state", state="CONFIRMED", timeout=10)
            # PJSIP's final NOTIFY (sipfrag "SIP/2.0 200") came across; told so, Linphone ends its call.
            self.wait_log(lin, r"NOTIFY sip:100@[^\n]*\n(?:[^\n]+\n)*?Subscription-State: terminated[^\n]*\n"
                               r"(?:[^\n]+\n)*\nSIP/2.0 200")
            lin.wait_call_state("CallReleased", call=call, timeout=10)
            target.command("hangup")
            pj.wait_event("state", state="DISCONNECTED", timeout=10)
        self.run_checked(body)
