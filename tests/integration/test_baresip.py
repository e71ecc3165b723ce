"""Two real softphones (baresip 1.0) register over TLS and call each other through minisip.

The server is a B2BUA that passes SDP through unchanged, so RTP flows directly between the two
baresips; ``CALL_RTPESTAB`` on each side (raised on the first RTP packet received) and the RTP counters
baresip prints when a call ends prove that audio went both ways.
"""

from __future__ import annotations

import os
import time

from twisted.trial import unittest

from tests.integration import baresip as baresip_driver
from tests.integration.baresip import Baresip
from tests.integration.harness import SKIP_REASON, Minisip

EXTS = {"100": "100", "101": "101"}
TALK_SECONDS = 2.0  # about 50 packets a second each way with 20 ms PCMU
MIN_PACKETS = 40


class BaresipTLSCallTests(unittest.TestCase):
    skip = SKIP_REASON or baresip_driver.SKIP_REASON
    timeout = 60  # trial's own bound; each test takes a few seconds

    def setUp(self) -> None:
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        # libre 1.1.0 (baresip 1.0's SIP stack) answers any challenge that is not MD5 with ENOSYS
        # and gives up, even when an MD5 challenge is offered alongside: challenge with MD5 only.
        self.server = Minisip(self.dir, EXTS, extra="[security]\ndigest_algorithms = MD5")
        self.addCleanup(self.server.stop)
        self.server.start()
        self.phones: dict[str, Baresip] = {}
        for user in ("100", "101"):
            # minisip's certificate (<datadir>/tls/server.crt) is self-signed. baresip 1.0 on libre
            # 1.1.0 does not verify the server's certificate at all: even with sip_cafile naming an
            # unrelated CA it completes the handshake. So no sip_cafile is given (see baresip.py).
            phone = Baresip(self.dir, user, EXTS[user], self.server.tls, transport="tls")
            self.addCleanup(phone.stop)
            self.phones[user] = phone
            phone.start()
        for user, phone in self.phones.items():
            phone.wait_registered(timeout=10)
            self.server.wait_log(f"extension {user} registered", timeout=5)

    def tearDown(self) -> None:
        self.server.assert_no_tracebacks(self)

    def diagnostics(self) -> str:
        parts = [f"--- baresip {u} ({p.event_types()}) ---\n{p.output(3000)}" for u, p in self.phones.items()]
        parts.append(f"--- minisip ---\n{self.server.read_log()[-4000:]}")
        return "\n".join(parts)

    def establish(self) -> tuple[Baresip, Baresip]:
        caller, callee = self.phones["100"], self.phones["101"]
        caller.dial("sip:101@127.0.0.1")  # sent to the account's outbound proxy: minisip over TLS
        for phone in (caller, callee):
            ev = phone.wait_event("CALL_ESTABLISHED", timeout=10)
            self.assertEqual(ev["direction"], "outgoing" if phone is caller else "incoming")
        self.server.wait_log("answered by", timeout=5)
        # The first RTP packet arriving at each phone.
        for phone in (caller, callee):
            ev = phone.wait_event("CALL_RTPESTAB", timeout=5)
            self.assertEqual(ev["param"], "audio")
        time.sleep(TALK_SECONDS)
        return caller, callee

    def finish(self, hanging_up: Baresip, by: str) -> None:
        for phone in self.phones.values():
            phone.wait_event("CALL_CLOSED", timeout=10)
        log = self.server.wait_log("ended: normal", timeout=5)
        self.assertIn(f"ended: normal (hangup by {by})", log)
        for user, phone in self.phones.items():
            tx, rx = phone.wait_rtp_stats()
            self.assertGreater(tx, MIN_PACKETS, f"{user} sent {tx} RTP packets\n{self.diagnostics()}")
            self.assertGreater(rx, MIN_PACKETS, f"{user} received {rx} RTP packets\n{self.diagnostics()}")
        self.assertIn("calls (0)", hanging_up.command("listcalls"))

    def test_caller_hangs_up(self) -> None:
        try:
            caller, _ = self.establish()
            caller.hangup()
            self.finish(caller, "caller")
        except AssertionError as e:
            raise AssertionError(f"{e}\n{self.diagnostics()}") from None

    def test_callee_hangs_up(self) -> None:
        try:
            _, callee = self.establish()
            callee.hangup()
            self.finish(callee, "callee")
        except AssertionError as e:
            raise AssertionError(f"{e}\n{self.diagnostics()}") from None
