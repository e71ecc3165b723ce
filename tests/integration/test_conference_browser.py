"""A browser joins a conference room with two SIP phones (issue 11: "a browser joins the same room as
two phones").

Headless Chromium (the helpers of test_lite_page, as in test_browser_call) opens lite.html as extension
100 and calls room 800; its microphone is a 700 Hz tone file. Two small SIP phones of test_conference
(200 and 300) are in the room, sending 1100 Hz and 1700 Hz tones over plain RTP. The browser's audio goes
in over ICE-lite + DTLS-SRTP and is mixed with the phones': a Goertzel filter on what each phone receives
finds the browser's tone and the other phone's, not its own; Chromium's getStats shows audio coming in.
Hanging up on the page leaves the room; the records carry the browser's join and leave.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from twisted.internet import defer, reactor, task
from twisted.trial.unittest import TestCase

from minisip.media import g711
from tests.integration import test_lite_page as lite
from tests.integration.harness import Minisip, plugin_folder
from tests.integration.test_browser_call import KEEP_PCS, ChromiumPage, wss_port
from tests.integration.test_conference import EXTS, Phone, goertzel, relay_window

BASE_PORT = 34000
BROWSER_TONE = 700.0
PHONE_TONES = {"200": 1100.0, "300": 1700.0}

LEVEL = """
(async () => {
  const pc = window.__pcs[window.__pcs.length - 1];
  const out = {inbound: 0, level: 0, state: pc ? pc.connectionState : null};
  if (!pc) return out;
  (await pc.getStats()).forEach((r) => {
    if (r.type === "inbound-rtp" && r.kind === "audio") {
      out.inbound = r.packetsReceived || 0;
      out.level = r.audioLevel || 0;
    }
  });
  return out;
})()
"""


class BrowserInRoomTests(ChromiumPage, TestCase):
    skip = lite.SKIP_REASON
    timeout = 120

    def setUp(self) -> Any:
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        low = relay_window(BASE_PORT)
        self.wss = wss_port()
        plugins = plugin_folder(self.dir, "conference.py")
        extra = "\n".join(["[security]", "digest_algorithms = MD5", "[plugins]", f"directories = {plugins}",
                           "[mccp]", f"wss = 127.0.0.1:{self.wss}", "[media]", f"ports = {low}-{low + 49}",
                           "[conference 800]"])
        self.server = Minisip(self.dir, EXTS, extra=extra)
        self.addCleanup(self.server.stop)
        self.server.start()
        self.server.wait_log("plugin minisip.conference loaded")
        self.phones = {ext: Phone(ext, self.server.udp) for ext in PHONE_TONES}
        for phone in self.phones.values():
            self.addCleanup(phone.close)
        return self.start_page_browser(BROWSER_TONE)

    def talk(self, seconds: float, stop: threading.Event) -> None:
        """The phones' side, in a thread: each sends its tone every 20 ms and keeps what it receives."""
        start = time.monotonic()
        n = 0
        while not stop.is_set() and time.monotonic() - start < seconds:
            for ext, phone in self.phones.items():
                phone.send_rtp(phone.tone_frame(PHONE_TONES[ext]))
                phone.drain()
            n += 1
            delay = start + n * 0.02 - time.monotonic()
            if delay > 0:
                time.sleep(delay)

    def diagnostics(self) -> str:
        return f"\n--- minisip log ---\n{self.server.read_log()[-6000:]}"

    @defer.inlineCallbacks
    def test_browser_and_two_phones_hear_each_other(self) -> Any:
        for ext, phone in self.phones.items():
            resp = phone.invite("800")
            self.assertEqual(resp.status, 200, f"{ext}: {resp.status} {resp.reason}")
        stop = threading.Event()
        talker = threading.Thread(target=self.talk, args=(30.0, stop), daemon=True)
        talker.start()
        self.addCleanup(talker.join, 5)
        self.addCleanup(stop.set)
        yield self.devtools.call("Page.enable")
        yield self.devtools.call("Page.addScriptToEvaluateOnNewDocument", source=KEEP_PCS)
        yield self.open(f"https://127.0.0.1:{self.wss}/lite.html?server=127.0.0.1:{self.wss}"
                        f"&clr=100&pwd={EXTS['100']}&cld=800")
        try:
            yield self.status_is("Connected", 20)
        except AssertionError as e:
            raise AssertionError(f"{e}{self.diagnostics()}") from None
        yield self.until(lambda: "conference room 800: 100 joined" in self.server.read_log(), 10,
                         "the browser joining room 800")

        @defer.inlineCallbacks
        def hearing() -> Any:
            stats = yield self.devtools.evaluate(LEVEL)
            return stats if stats["inbound"] > 100 and stats["level"] > 0.01 else None

        try:
            stats = yield self.until(hearing, 15, "the room's audio in Chromium's getStats")
        except AssertionError as e:
            raise AssertionError(f"{e}{self.diagnostics()}") from None
        self.assertEqual(stats["state"], "connected")
        # 3 s more of the browser's voice in the mix, then judge the last 2 s each phone heard
        yield task.deferLater(reactor, 3.0, lambda: None)
        stop.set()
        yield task.deferLater(reactor, 0.2, lambda: None)
        tones = {"100": BROWSER_TONE, **PHONE_TONES}
        for ext, phone in self.phones.items():
            phone.drain()
            samples = [s for payload in phone.received[-100:] for s in g711.decode("PCMU", payload)]
            power = {e: goertzel(samples, f) for e, f in tones.items()}
            others = [power[e] for e in tones if e != ext]
            if os.environ.get("SHOW_POWER"):
                print(ext, {e: f"{p:.3g}" for e, p in power.items()})
            self.assertGreater(min(others), 20 * power[ext],
                               f"{ext} hears {power}: the browser and the other phone, not itself")
        yield self.click("#hangup")
        yield self.status_is("You hung up")
        log = yield self.until(lambda: (lambda text: text if "conference room 800: 100 left" in text else None)(
            self.server.read_log()), 10, "the browser leaving the room")
        self.assertIn("conference room 800: 100 joined", log)
        for phone in self.phones.values():
            self.assertEqual(phone.bye(), 200)
        self.server.wait_log("conference room 800 closed (empty)")
        self.server.assert_no_tracebacks(self)
