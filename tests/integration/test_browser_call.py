"""A browser calls a SIP phone through minisip, end to end: headless Chromium opens lite.html from
minisip's own WSS port, places the call over MCCP as extension 100, and extension 101 is a baresip with
auto-answer. The audio goes Chromium -(ICE-lite, DTLS-SRTP, rtcp-mux)-> minisip's relay -(plain RTP)->
baresip and back; Chromium's getStats and baresip's RTP counters prove it flowed, and a digit pressed
on the page reaches baresip as an RFC 4733 event.

Chromium is driven over the DevTools protocol (the helpers of test_lite_page); a tone file generated
here is its microphone. A script added before the page loads keeps the page's RTCPeerConnections in
``window.__pcs`` for getStats. Every wait is bounded; every process is ended by its PID.
"""

from __future__ import annotations

import math
import os
import random
import socket
import struct
import wave
from typing import Any

from twisted.internet import defer
from twisted.trial.unittest import TestCase

from tests.integration import test_lite_page as lite
from tests.integration.baresip import SKIP_REASON as BARESIP_SKIP
from tests.integration.baresip import Baresip, parse_rtp_stats
from tests.integration.harness import Minisip, free_port
from tests.integration.media_peers import ports_held

PASSWORDS = {"100": "browser-pw-100", "101": "phone-pw-101"}

KEEP_PCS = """
(() => {
  const Original = window.RTCPeerConnection;
  window.__pcs = [];
  window.RTCPeerConnection = function (...args) {
    const pc = new Original(...args);
    window.__pcs.push(pc);
    return pc;
  };
  window.RTCPeerConnection.prototype = Original.prototype;
})();
"""

STATS = """
(async () => {
  const pc = window.__pcs[window.__pcs.length - 1];
  const out = {inbound: 0, outbound: 0, dtls: [], codecs: [], cipher: null};
  (await pc.getStats()).forEach((r) => {
    if (r.type === "inbound-rtp" && r.kind === "audio") out.inbound = r.packetsReceived || 0;
    if (r.type === "outbound-rtp" && r.kind === "audio") out.outbound = r.packetsSent || 0;
    if (r.type === "transport") { out.dtls.push(r.dtlsState); out.cipher = r.srtpCipher || out.cipher; }
    if (r.type === "codec") out.codecs.push(r.mimeType);
  });
  return out;
})()
"""


def tone_file(path: str, seconds: float = 10.0, rate: int = 48000, freq: float = 1000.0) -> str:
    """A 48 kHz mono 16-bit WAV of a sine tone (Chromium's fake microphone plays it in a loop)."""
    frames = b"".join(struct.pack("<h", int(12000 * math.sin(2 * math.pi * freq * i / rate)))
                      for i in range(int(rate * seconds)))
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(frames)
    return path


def wss_port() -> int:
    """A free TCP port for the WSS service (checked for TCP: WSS is TCP, a UDP check proves nothing)."""
    return free_port(socket.SOCK_STREAM, also_tcp=False)


def media_ports(size: int = 100) -> int:
    """The first port of a window of ``size`` UDP ports in 14000-19999 that nothing holds now (other tests
    and benchmarks on the machine use 20000-31999): the relay's range for one test's server."""
    for _ in range(20):
        base = 14000 + 2 * random.randrange(0, (6000 - size) // 2)
        if not ports_held(base, base + size - 1):
            return base
    raise AssertionError(f"no window of {size} free UDP ports in 14000-19999")


def start_wss_minisip(test: Any, passwords: dict[str, str]) -> tuple[Minisip, int]:
    """minisip in ``test.dir`` for browser calls: MD5 digest, WSS on a free port, 100 free relay ports;
    started, serving WSS, and stopped at the test's end. Returns it and its WSS port."""
    wss, base = wss_port(), media_ports()
    extra = "\n".join(["[security]", "digest_algorithms = MD5", "[mccp]", f"wss = 127.0.0.1:{wss}",
                       "[media]", f"ports = {base}-{base + 99}"])
    server = Minisip(test.dir, passwords, extra=extra)
    test.addCleanup(server.stop)
    server.start()
    server.wait_log("start WSS service", timeout=5)
    return server, wss


class ChromiumPage:
    """Chromium and the page, as test_lite_page drives them, for a TestCase with ``self.dir``."""

    start_chromium = lite.LitePageTests.start_chromium
    stop_chromium = lite.LitePageTests.stop_chromium
    until = lite.LitePageTests.until
    text = lite.LitePageTests.text
    visible = lite.LitePageTests.visible
    status_is = lite.LitePageTests.status_is
    open = lite.LitePageTests.open
    click = lite.LitePageTests.click

    def start_page_browser(self, tone: float = 1000.0, name: str = "chromium") -> Any:
        """Start Chromium with a fresh profile and a ``tone`` Hz sine as its microphone."""
        self.profile = os.path.join(self.dir, name)   # type: ignore[attr-defined]
        os.makedirs(self.profile)
        wav = tone_file(os.path.join(self.dir, f"{name}-tone.wav"), freq=tone)   # type: ignore[attr-defined]
        flags_before = lite.FLAGS
        lite.FLAGS = [*lite.FLAGS, f"--use-file-for-fake-audio-capture={wav}"]
        self.addCleanup(setattr, lite, "FLAGS", flags_before)   # type: ignore[attr-defined]
        return self.start_chromium()


class BrowserCallTestCase(ChromiumPage, TestCase):
    """minisip with WSS, extension 101 a baresip (answering as ``answermode`` says), Chromium."""

    skip = lite.SKIP_REASON or BARESIP_SKIP
    timeout = 120
    answermode = "auto"

    def setUp(self) -> Any:
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        self.server, self.wss = start_wss_minisip(self, PASSWORDS)
        self.phone = Baresip(self.dir, "101", PASSWORDS["101"], self.server.udp, transport="udp",
                             answermode=self.answermode)
        self.addCleanup(self.phone.stop)
        self.phone.start()
        self.phone.wait_registered(timeout=10)
        self.server.wait_log("extension 101 registered", timeout=5)
        return self.start_page_browser()

    def page(self, password: str) -> str:
        return (f"https://127.0.0.1:{self.wss}/lite.html?server=127.0.0.1:{self.wss}"
                f"&clr=100&pwd={password}&cld=101")

    @defer.inlineCallbacks
    def stats(self) -> Any:
        return (yield self.devtools.evaluate(STATS))

    def diagnostics(self) -> str:
        return (f"\n--- minisip log ---\n{self.server.read_log()[-6000:]}"
                f"\n--- baresip ---\n{self.phone.output(4000)}")

    @defer.inlineCallbacks
    def stats_when(self, condition: Any) -> Any:
        stats = yield self.stats()
        return stats if condition(stats) else None

    @defer.inlineCallbacks
    def connected(self) -> Any:
        """Open the page with the right password and wait until it shows the call connected."""
        yield self.devtools.call("Page.enable")
        yield self.devtools.call("Page.addScriptToEvaluateOnNewDocument", source=KEEP_PCS)
        yield self.open(self.page(PASSWORDS["100"]))
        try:
            yield self.status_is("Connected", 20)
        except AssertionError as e:
            raise AssertionError(f"{e}{self.diagnostics()}") from None


class BrowserCallTests(BrowserCallTestCase):
    """What a user of lite.html notices when calling a SIP phone, and what the phone gets."""

    @defer.inlineCallbacks
    def test_call_connects_media_flows_and_hangup_ends_the_sip_call(self) -> Any:
        yield self.connected()
        # media both ways through the relay, DTLS-SRTP toward the browser
        try:
            first = yield self.until(lambda: self.stats_when(lambda s: s["inbound"] > 0 and s["outbound"] > 0),
                                     15, "RTP both ways in Chromium's getStats")
            later = yield self.until(lambda: self.stats_when(
                lambda s: s["inbound"] > first["inbound"] + 50 and s["outbound"] > first["outbound"] + 50),
                15, "RTP packet counts increasing")
        except AssertionError as e:
            stats = yield self.stats()
            raise AssertionError(f"{e}: {stats}{self.diagnostics()}") from None
        self.assertIn("connected", later["dtls"])
        self.assertEqual(later["cipher"], "SRTP_AES128_CM_HMAC_SHA1_80")
        self.assertTrue({"audio/PCMU", "audio/PCMA"} & set(later["codecs"]), later["codecs"])
        yield self.until(lambda: "incoming rtp for 'audio' established" in self.phone.output(1 << 20), 10,
                         "baresip receiving RTP")
        # a digit on the page's pad: RFC 4733 events in the media reach the phone through the relay
        yield self.click('#pad [data-digit="5"]')
        yield self.until(lambda: "received event: '5' (end=1)" in self.phone.output(1 << 20), 10,
                         "baresip receiving the DTMF digit 5")
        # hang up on the page: the SIP call ends, and baresip counted the packets it got
        yield self.click("#hangup")
        yield self.status_is("You hung up")
        yield self.until(lambda: "ended: normal" in self.server.read_log(), 10, "the SIP call's end in the log")
        stats = yield self.until(lambda: parse_rtp_stats(self.phone.output(1 << 20)), 10, "baresip's RTP stats")
        sent, received = stats
        self.assertGreater(received, 20, self.diagnostics())
        self.assertGreater(sent, 20, self.diagnostics())
        self.server.assert_no_tracebacks(self)

    @defer.inlineCallbacks
    def test_phone_hangs_up_and_the_page_shows_it(self) -> Any:
        yield self.connected()
        self.phone.hangup()
        yield self.status_is("Call ended")
        yield self.until(lambda: "ended: normal (hangup by callee)" in self.server.read_log(), 10,
                         "the call's end in the log")
        self.server.assert_no_tracebacks(self)

    @defer.inlineCallbacks
    def test_wrong_password_is_refused_and_no_sip_call_is_made(self) -> Any:
        yield self.open(self.page("not-the-password"))
        yield self.status_is("Refused: wrong number or password")
        log = self.server.read_log()
        self.assertNotIn("call ", "\n".join(line for line in log.splitlines() if "started" in line))
        self.assertNotIn("INVITE", self.phone.output(1 << 20))
        self.assertNotIn("CALL_INCOMING", self.phone.event_types())
        self.server.assert_no_tracebacks(self)


class BusyTests(BrowserCallTestCase):
    """Extension 101 rings and its user rejects the call: the page says busy."""

    answermode = "manual"

    def incoming(self) -> bool:
        try:
            self.phone.wait_event("CALL_INCOMING", timeout=0.05)
        except AssertionError:
            return False
        return True

    @defer.inlineCallbacks
    def test_busy_extension_shows_busy(self) -> Any:
        yield self.open(self.page(PASSWORDS["100"]))
        yield self.status_is("Ringing")
        yield self.until(self.incoming, 10, "the call ringing at baresip")
        self.phone.hangup()      # rejecting an incoming call: 486
        yield self.status_is("Busy (486")
        yield self.until(lambda: "ended: busy" in self.server.read_log(), 10, "the call's end in the log")
        self.server.assert_no_tracebacks(self)
