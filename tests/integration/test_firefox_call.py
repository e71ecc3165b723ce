"""Firefox calls a SIP phone through minisip, end to end (issue 10: "a browser (Chrome, Firefox)").

The same path as test_browser_call's Chromium test, with Debian's firefox-esr driven over Marionette
(tests/integration/firefox.py): the user opens lite.html from minisip's WSS port with no parameters,
fills in the form and presses Call; extension 101 is a baresip with auto-answer. Firefox's fake
microphone (a tone) is the caller's voice. Asserted: the page shows the call connected, the peer
connection is connected (ICE and DTLS) with RTP counts rising both ways in getStats and a G.711 codec
negotiated, baresip receives RTP, hanging up on the page ends the SIP call; a wrong password is refused
with no SIP call made.
"""

from __future__ import annotations

import os
import time
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from tests.integration.baresip import SKIP_REASON as BARESIP_SKIP
from tests.integration.baresip import Baresip, parse_rtp_stats
from tests.integration.firefox import SKIP_REASON as FIREFOX_SKIP
from tests.integration.firefox import Firefox
from tests.integration.test_browser_call import KEEP_PCS, start_wss_minisip

PASSWORDS = {"100": "firefox-pw-100", "101": "phone-pw-101"}

STATS = """
return (async () => {
const pc = window.__pcs[window.__pcs.length - 1];
if (!pc) return null;
const out = {inbound: 0, outbound: 0, state: pc.connectionState, codec: null};
(await pc.getStats()).forEach((r) => {
  if (r.type === "inbound-rtp" && r.kind === "audio") out.inbound = r.packetsReceived || 0;
  if (r.type === "outbound-rtp" && r.kind === "audio") out.outbound = r.packetsSent || 0;
});
const sdp = pc.currentRemoteDescription ? pc.currentRemoteDescription.sdp : "";
const m = sdp.match(/^m=audio \\d+ \\S+ (\\d+)/m);
if (m) {
  const map = sdp.match(new RegExp("^a=rtpmap:" + m[1] + " ([^/\\r\\n]+)", "m"));
  out.codec = map ? map[1] : (m[1] === "0" ? "PCMU" : m[1] === "8" ? "PCMA" : m[1]);
}
return out;
})();
"""


class FirefoxCallTests(SynchronousTestCase):
    """What a Firefox user of lite.html notices when calling a SIP phone, and what the phone gets."""

    skip = FIREFOX_SKIP or BARESIP_SKIP

    def setUp(self) -> None:
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        self.server, self.wss = start_wss_minisip(self, PASSWORDS)
        self.phone = Baresip(self.dir, "101", PASSWORDS["101"], self.server.udp, transport="udp")
        self.addCleanup(self.phone.stop)
        self.phone.start()
        self.phone.wait_registered(timeout=10)
        self.firefox = Firefox(self.dir)
        self.addCleanup(self.firefox.stop)
        self.firefox.start()

    def diagnostics(self) -> str:
        return (f"\n--- minisip log ---\n{self.server.read_log()[-5000:]}"
                f"\n--- baresip ---\n{self.phone.output(3000)}\n--- firefox ---\n{self.firefox.output(3000)}")

    def status(self) -> str:
        return self.firefox.evaluate("const s = document.getElementById('status'); return s ? s.textContent : '';")

    def status_is(self, fragment: str, seconds: float = 20) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if fragment in (self.status() or ""):
                return
            time.sleep(0.1)
        raise AssertionError(f"the page shows {self.status()!r}, not {fragment!r}, after {seconds} s"
                             f"{self.diagnostics()}")

    def until(self, condition: Any, seconds: float, what: str) -> Any:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            value = condition()
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(f"no {what} within {seconds} s{self.diagnostics()}")

    def call_from_the_form(self, password: str) -> None:
        """Open lite.html with no parameters, fill in the form as a user does, press Call."""
        self.firefox.navigate(f"https://127.0.0.1:{self.wss}/lite.html")
        self.firefox.until("return document.readyState === 'complete' && "
                           "!document.getElementById('setup').hidden;", 15, "the form")
        self.firefox.evaluate(KEEP_PCS + "\nreturn true;")   # keep the page's peer connections for getStats
        self.firefox.evaluate(
            "const [server, clr, pwd, cld] = arguments;"
            "for (const [id, v] of [['server', server], ['clr', clr], ['pwd', pwd], ['cld', cld]])"
            "  document.getElementById(id).value = v;"
            "document.getElementById('start').click(); return true;",
            [f"127.0.0.1:{self.wss}", "100", password, "101"])

    def stats(self) -> Any:
        return self.firefox.evaluate(STATS)

    def test_call_connects_media_flows_and_hangup_ends_the_sip_call(self) -> None:
        self.call_from_the_form(PASSWORDS["100"])
        self.status_is("Connected")
        first = self.until(lambda: (lambda s: s if s and s["inbound"] > 0 and s["outbound"] > 0 else None)(
            self.stats()), 15, "RTP both ways in Firefox's getStats")
        later = self.until(lambda: (lambda s: s if s["inbound"] > first["inbound"] + 50
                                    and s["outbound"] > first["outbound"] + 50 else None)(self.stats()),
                           15, "RTP packet counts increasing")
        self.assertEqual(later["state"], "connected")       # ICE and DTLS both connected
        self.assertIn(later["codec"], ("PCMU", "PCMA"), later)
        self.until(lambda: "incoming rtp for 'audio' established" in self.phone.output(1 << 20), 10,
                   "baresip receiving RTP")
        self.firefox.evaluate("document.getElementById('hangup').click(); return true;")
        self.status_is("You hung up")
        self.until(lambda: "ended: normal" in self.server.read_log(), 10, "the SIP call's end in the log")
        sent, received = self.until(lambda: parse_rtp_stats(self.phone.output(1 << 20)), 10, "baresip's RTP stats")
        self.assertGreater(received, 20, self.diagnostics())
        self.assertGreater(sent, 20, self.diagnostics())
        self.server.assert_no_tracebacks(self)

    def test_wrong_password_is_refused_and_no_sip_call_is_made(self) -> None:
        self.call_from_the_form("not-the-password")
        self.status_is("Refused: wrong number or password")
        self.assertNotIn("INVITE", self.phone.output(1 << 20))
        self.server.assert_no_tracebacks(self)
