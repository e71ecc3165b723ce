"""Calls to a browser, end to end: headless Chromium opens lite.html without a destination, so the page
logs in over MCCP as extension 102 and waits; a baresip registered as 101 calls 102. The page rings and
the test clicks Answer: the audio goes baresip -(plain RTP)-> minisip's relay -(ICE-lite, DTLS-SRTP,
rtcp-mux)-> Chromium and back, proved by Chromium's getStats and baresip's log. With a baresip also
registered as 102, both ring (forking to phones and browsers alike) and the one that does not answer
stops ringing.

Chromium is driven over the DevTools protocol (the helpers of test_lite_page); a tone file is its
microphone. Every wait is bounded; every process is ended by its PID.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from typing import Any

from twisted.internet import defer
from twisted.trial.unittest import TestCase

from tests.integration import test_lite_page as lite
from tests.integration.baresip import SKIP_REASON as BARESIP_SKIP
from tests.integration.baresip import Baresip, BaresipError
from tests.integration.harness import Sipp, stop_process
from tests.integration.media_peers import PCAP
from tests.integration.test_browser_call import KEEP_PCS, STATS, ChromiumPage, start_wss_minisip

PASSWORDS = {"100": "browser-pw-100", "101": "phone-pw-101", "102": "browser-pw-102"}




class IncomingTestCase(ChromiumPage, TestCase):
    """minisip with WSS, extension 101 a baresip that calls, Chromium waiting as 102."""

    skip = lite.SKIP_REASON or BARESIP_SKIP
    timeout = 120
    phone_102 = False        # also a baresip registered as 102 (answering by hand)

    def setUp(self) -> Any:
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        self.server, self.wss = start_wss_minisip(self, PASSWORDS)
        self.caller = self.baresip("101", "auto")
        self.callee = self.baresip("102", "manual") if self.phone_102 else None
        return self.start_page_browser()

    def baresip(self, user: str, answermode: str) -> Baresip:
        phone = Baresip(self.dir, user, PASSWORDS[user], self.server.udp, transport="udp", answermode=answermode)
        self.addCleanup(phone.stop)
        phone.start()
        phone.wait_registered(timeout=10)
        self.server.wait_log(f"extension {user} registered", timeout=5)
        return phone

    def page(self, password: str = PASSWORDS["102"]) -> str:
        return f"https://127.0.0.1:{self.wss}/lite.html?server=127.0.0.1:{self.wss}&clr=102&pwd={password}"

    def diagnostics(self) -> str:
        phones = "".join(f"\n--- baresip {p.user} ---\n{p.output(3000)}" for p in (self.caller, self.callee) if p)
        return f"\n--- minisip log ---\n{self.server.read_log()[-6000:]}{phones}"

    @staticmethod
    def got(phone: Baresip, event: str) -> bool:
        """Whether ``phone`` reported ``event`` (polled without blocking the reactor for long)."""
        try:
            phone.wait_event(event, timeout=0.05)
        except BaresipError:
            return False
        return True

    @defer.inlineCallbacks
    def waiting(self) -> Any:
        """Open the page logged in as 102 and wait until it says so."""
        yield self.devtools.call("Page.enable")
        yield self.devtools.call("Page.addScriptToEvaluateOnNewDocument", source=KEEP_PCS)
        yield self.open(self.page())
        try:
            yield self.status_is("Waiting for calls", 15)
        except AssertionError as e:
            raise AssertionError(f"{e}{self.diagnostics()}") from None
        self.assertEqual((yield self.text("line")), "Waiting for calls as 102")
        self.server.wait_log("logged in as 102", timeout=5)

    @defer.inlineCallbacks
    def ringing(self) -> Any:
        """101 dials 102: the page rings and shows the caller."""
        self.caller.dial("sip:102@127.0.0.1")
        try:
            yield self.status_is("Incoming call", 15)
        except AssertionError as e:
            raise AssertionError(f"{e}{self.diagnostics()}") from None
        self.assertIn("101", (yield self.text("who")))
        self.assertTrue((yield self.visible("answer")))
        self.assertTrue((yield self.visible("decline")))

    @defer.inlineCallbacks
    def answered(self) -> Any:
        yield self.click("#answer")
        try:
            yield self.status_is("Connected", 20)
            yield self.until(lambda: self.got(self.caller, "CALL_ESTABLISHED"), 10, "baresip 101's call established")
        except AssertionError as e:
            raise AssertionError(f"{e}{self.diagnostics()}") from None

    @defer.inlineCallbacks
    def media_flows(self) -> Any:
        @defer.inlineCallbacks
        def stats_when(condition: Any) -> Any:
            stats = yield self.devtools.evaluate(STATS)
            return stats if condition(stats) else None

        try:
            first = yield self.until(lambda: stats_when(lambda s: s["inbound"] > 0 and s["outbound"] > 0), 15,
                                     "RTP both ways in Chromium's getStats")
            later = yield self.until(lambda: stats_when(
                lambda s: s["inbound"] > first["inbound"] + 50 and s["outbound"] > first["outbound"] + 50),
                15, "RTP packet counts increasing")
        except AssertionError as e:
            stats = yield self.devtools.evaluate(STATS)
            raise AssertionError(f"{e}: {stats}{self.diagnostics()}") from None
        self.assertIn("connected", later["dtls"])
        self.assertEqual(later["cipher"], "SRTP_AES128_CM_HMAC_SHA1_80")
        self.assertTrue({"audio/PCMU", "audio/PCMA"} & set(later["codecs"]), later["codecs"])
        yield self.until(lambda: "incoming rtp for 'audio' established" in self.caller.output(1 << 20), 10,
                         "baresip 101 receiving RTP")


class IncomingCallTests(IncomingTestCase):
    """What a user of lite.html notices when called, and what the calling phone gets."""

    @defer.inlineCallbacks
    def test_answer_media_flows_and_the_phone_hangs_up(self) -> Any:
        yield self.waiting()
        yield self.ringing()
        yield self.answered()
        yield self.media_flows()
        self.caller.hangup()
        yield self.status_is("Call ended")
        yield self.until(lambda: "ended: normal (hangup by caller)" in self.server.read_log(), 10,
                         "the call's end in the log")
        # still logged in: the next call rings the page again
        self.assertEqual((yield self.text("line")), "Waiting for calls as 102")
        self.server.assert_no_tracebacks(self)

    @defer.inlineCallbacks
    def test_hold_and_resume_from_the_phone(self) -> Any:
        """baresip's re-INVITEs (hold, resume) are answered by the relay; the page's media carries on."""
        yield self.waiting()
        yield self.ringing()
        yield self.answered()
        yield self.media_flows()
        self.caller.command("hold")
        yield self.until(lambda: self.server.read_log().count("answered by the relay") >= 1, 10,
                         "the hold answered by the relay")
        self.caller.command("resume")
        yield self.until(lambda: self.server.read_log().count("answered by the relay") >= 2, 10,
                         "the resume answered by the relay")
        yield self.media_flows()
        self.assertIn("Connected", (yield self.text("status")))
        self.server.assert_no_tracebacks(self)

    @defer.inlineCallbacks
    def test_the_page_hangs_up(self) -> Any:
        yield self.waiting()
        yield self.ringing()
        yield self.answered()
        yield self.click("#hangup")
        yield self.status_is("You hung up")
        yield self.until(lambda: self.got(self.caller, "CALL_CLOSED"), 10, "baresip 101's call closed")
        yield self.until(lambda: "ended: normal (hangup by callee)" in self.server.read_log(), 10,
                         "the call's end in the log")
        self.server.assert_no_tracebacks(self)

    @defer.inlineCallbacks
    def test_decline(self) -> Any:
        yield self.waiting()
        yield self.ringing()
        yield self.click("#decline")
        yield self.status_is("Declined the call from 101")
        yield self.until(lambda: self.got(self.caller, "CALL_CLOSED"), 10, "baresip 101's call closed")
        yield self.until(lambda: "ended: declined 603" in self.server.read_log(), 10, "the call's end in the log")
        self.server.assert_no_tracebacks(self)

    @defer.inlineCallbacks
    def test_caller_gives_up_the_page_stops_ringing(self) -> Any:
        yield self.waiting()
        yield self.ringing()
        self.caller.hangup()
        yield self.status_is("Missed call from 101")
        self.assertFalse((yield self.visible("answer")))
        yield self.until(lambda: "ended: cancelled" in self.server.read_log(), 10, "the call's end in the log")
        self.server.assert_no_tracebacks(self)

    @defer.inlineCallbacks
    def test_wrong_password_is_refused(self) -> Any:
        yield self.open(self.page("not-the-password"))
        yield self.status_is("Refused: wrong number or password")
        self.assertNotIn("logged in as 102", self.server.read_log())
        self.server.assert_no_tracebacks(self)

    @defer.inlineCallbacks
    def test_closing_the_page_logs_out(self) -> Any:
        yield self.waiting()
        yield self.open("about:blank")
        yield self.until(lambda: "logged out from 102" in self.server.read_log(), 10, "the logout in the log")
        self.caller.dial("sip:102@127.0.0.1")
        yield self.until(lambda: "ended: unavailable" in self.server.read_log(), 10, "480: nobody to ring")
        self.server.assert_no_tracebacks(self)


class ForkTests(IncomingTestCase):
    """102 is both a registered baresip and the waiting page: a call rings both."""

    phone_102 = True

    @defer.inlineCallbacks
    def test_the_browser_answers_the_phone_stops_ringing(self) -> Any:
        assert self.callee is not None
        yield self.waiting()
        yield self.ringing()
        yield self.until(lambda: self.got(self.callee, "CALL_INCOMING"), 10, "baresip 102 ringing")
        yield self.answered()
        yield self.until(lambda: self.got(self.callee, "CALL_CLOSED"), 10, "baresip 102's ringing stopped")
        yield self.media_flows()
        self.assertIn("answered by browser 102", self.server.read_log())
        self.server.assert_no_tracebacks(self)

    @defer.inlineCallbacks
    def test_the_phone_answers_the_page_stops_ringing(self) -> Any:
        assert self.callee is not None
        yield self.waiting()
        yield self.ringing()
        yield self.until(lambda: self.got(self.callee, "CALL_INCOMING"), 10, "baresip 102 ringing")
        self.callee.command("accept")
        yield self.status_is("Missed call from 101")
        yield self.until(lambda: self.got(self.caller, "CALL_ESTABLISHED"), 10, "baresip 101's call established")
        self.server.assert_no_tracebacks(self)


def late_offer_uac(pcap: str, hold_ms: int) -> str:
    """SIPp caller (CSV: caller;[authentication ...];callee) whose INVITE has no SDP: it takes the offer
    from the 200 and answers in the ACK with PCMA, plays ``pcap`` (G.711 A-law) and hangs up after
    ``hold_ms``."""
    invite = """  <send retrans="500">
    <![CDATA[
      INVITE sip:[field2]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:[field0]@[remote_ip]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[field2]@[remote_ip]>
      Call-ID: [call_id]
      CSeq: {cseq} INVITE
      Contact: <sip:[field0]@[local_ip]:[local_port];transport=[transport]>
{auth}      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="100" optional="true"/>
"""

    def in_dialog(method: str, cseq: int, uri: str = "[next_url]", via: str = "", body: str = "") -> str:
        via = via or "Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]"
        headers = "      Content-Type: application/sdp\n      Content-Length: [len]\n" if body else \
            "      Content-Length: 0\n"
        return f"""  <send>
    <![CDATA[
      {method} {uri} SIP/2.0
      {via}
      From: <sip:[field0]@[remote_ip]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[field2]@[remote_ip]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: {cseq} {method}
      Max-Forwards: 70
{headers}
{body}
    ]]>
  </send>
"""

    sdp = """      v=0
      o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 8
      a=rtpmap:8 PCMA/8000"""
    return ('<?xml version="1.0" encoding="ISO-8859-1" ?>\n<!DOCTYPE scenario SYSTEM "sipp.dtd">\n'
            '<scenario name="late-offer">\n'
            + invite.format(cseq=1, auth="") + '  <recv response="407" auth="true"/>\n'
            + in_dialog("ACK", 1, "sip:[field2]@[remote_ip]:[remote_port]", "[last_Via:]")
            + invite.format(cseq=2, auth="      [field1]\n")
            + '  <recv response="180" optional="true"/>\n  <recv response="200" rrs="true"/>\n'
            + in_dialog("ACK", 2, body=sdp)
            + f'  <nop><action><exec play_pcap_audio="{pcap}"/></action></nop>\n'
            + f'  <pause milliseconds="{hold_ms}"/>\n'
            + in_dialog("BYE", 3).replace("<send>", '<send retrans="500">')
            + '  <recv response="200" crlf="true"/>\n</scenario>\n')


class LateOfferTests(IncomingTestCase):
    """A caller whose INVITE has no SDP (SIPp): the page offers when it answers, the caller's ACK answers."""

    skip = IncomingTestCase.skip or (None if shutil.which("sipp") else "sipp is not installed (sip-tester)")

    @defer.inlineCallbacks
    def test_late_offer_answered_by_the_page(self) -> Any:
        yield self.waiting()
        auth = f"[authentication username=101 password={PASSWORDS['101']}]"
        sipp = Sipp(self.dir, "late", late_offer_uac(PCAP, 6000), [f"101;{auth};102"])
        with open(sipp.out, "ab") as out:
            proc = subprocess.Popen(sipp.args(f"127.0.0.1:{self.server.udp}"), cwd=self.dir, stdout=out,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.addCleanup(stop_process, proc)
        try:
            yield self.status_is("Incoming call", 15)
            yield self.click("#answer")
            yield self.status_is("Connected", 15)

            @defer.inlineCallbacks
            def flowing() -> Any:
                stats = yield self.devtools.evaluate(STATS)
                return stats if stats["inbound"] > 20 and stats["outbound"] > 20 else None

            stats = yield self.until(flowing, 10, "RTP both ways in Chromium's getStats")
        except AssertionError as e:
            raise AssertionError(f"{e}{self.diagnostics()}{sipp.diagnostics()}") from None
        self.assertIn("connected", stats["dtls"])
        self.assertIn("audio/PCMA", stats["codecs"])
        yield self.until(lambda: proc.poll() is not None, 20, "SIPp's end")
        self.assertEqual(proc.returncode, 0, sipp.diagnostics())
        yield self.status_is("Call ended")
        self.assertIn("ended: normal (hangup by caller)", self.server.read_log())
        self.server.assert_no_tracebacks(self)


class BrowserToBrowserTests(IncomingTestCase):
    """A second Chromium (extension 100) calls the page waiting as 102: DTLS-SRTP on both sides of the relay."""

    @defer.inlineCallbacks
    def test_a_browser_calls_a_waiting_browser(self) -> Any:
        yield self.waiting()
        callee_tools, callee_proc = self.devtools, self.chromium
        self.addCleanup(self.kill, callee_proc)
        self.profile = os.path.join(self.dir, "chromium-caller")
        os.makedirs(self.profile)
        yield self.start_chromium()
        caller_tools = self.devtools
        yield caller_tools.call("Page.enable")
        yield caller_tools.call("Page.addScriptToEvaluateOnNewDocument", source=KEEP_PCS)
        yield self.open(f"https://127.0.0.1:{self.wss}/lite.html?server=127.0.0.1:{self.wss}"
                        f"&clr=100&pwd={PASSWORDS['100']}&cld=102")
        try:
            yield self.status_is("Ringing", 15)
            self.devtools = callee_tools
            yield self.status_is("Incoming call", 10)
            self.assertIn("100", (yield self.text("who")))
            yield self.click("#answer")
            yield self.status_is("Connected", 20)
            self.devtools = caller_tools
            yield self.status_is("Connected", 20)
            for tools in (caller_tools, callee_tools):
                stats = yield self.until(lambda tools=tools: self.flowing(tools), 15, "RTP both ways")
                self.assertIn("connected", stats["dtls"])
        except AssertionError as e:
            raise AssertionError(f"{e}{self.diagnostics()}") from None
        yield self.click("#hangup")                 # the caller's page hangs up
        self.devtools = callee_tools
        yield self.status_is("Call ended")
        self.assertEqual((yield self.text("line")), "Waiting for calls as 102")
        self.assertIn("ended: normal (hangup by caller)", self.server.read_log())
        self.server.assert_no_tracebacks(self)

    @defer.inlineCallbacks
    def flowing(self, tools: Any) -> Any:
        """Chromium's stats once RTP packets went both ways (50 or more each)."""
        stats = yield tools.evaluate(STATS)
        return stats if stats["inbound"] > 50 and stats["outbound"] > 50 else None

    @staticmethod
    def kill(proc: subprocess.Popen) -> None:
        """End a Chromium (and its helper processes) by its process group."""
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
