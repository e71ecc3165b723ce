"""Hunting groups against a real minisip process, with SIPp UAS operators and a SIPp caller."""

from __future__ import annotations

import os
import re

from tests.integration import scenarios
from tests.integration.harness import Minisip, plugin_folder
from tests.integration.test_sipp import SippTestBase, auth

EXTS = {"100": "100", "101": "101", "102": "102", "103": "103"}
RINGING = re.compile(r"hunt 600 \([\w-]+\), call (\w+) from 100: ringing (\d+) ")


class HuntingTestBase(SippTestBase):
    """minisip with only the hunting plugin loaded (a folder holding a link to plugins/hunting.py)."""

    group = ""

    def setUp(self) -> None:
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        plugin_dir = plugin_folder(self.dir, "hunting.py")
        extra = "\n".join(["no_answer_timeout = 10", "[plugins]", f"directories = {plugin_dir}", self.group])
        self.server = Minisip(self.dir, EXTS, extra=extra)
        self.addCleanup(self.server.stop)
        self.server.start()
        self.peers = []
        self.server.wait_log("plugin minisip.hunting loaded")

    def rung(self) -> list[str]:
        """The operators offered calls to 600, in order, from the server log."""
        return [m.group(2) for m in RINGING.finditer(self.server.read_log())]


class LinearTests(HuntingTestBase):
    group = "[hunt 600]\npolicy = linear\noperators = 103:2 102:2 101:1\nring_time = 2\n"

    def test_rung_in_sequence_order_busy_one_skipped(self) -> None:
        """101 (sequence 1) is busy, 102 (sequence 2, logged in first) does not answer, 103 answers."""
        busy = self.uas("op101", "busy")
        silent = self.uas("op102", "ring")
        answers = self.uas("op103", "answer")
        self.register("101", f"127.0.0.1:{busy.port}")
        self.register("102", f"127.0.0.1:{silent.port}")
        self.register("103", f"127.0.0.1:{answers.port}")
        self.call("100", "600", 200)            # the caller's scenario requires the 200
        for uas in (busy, silent, answers):
            self.assertEqual(uas.wait(20), 0, uas.diagnostics())
        log = self.server.wait_log("ended: normal")
        self.assertEqual(self.rung(), ["101", "102", "103"], log[-4000:])
        self.assertIn("101 did not take the call: busy (486), moving on", log)
        self.assertIn("102 did not take the call: no answer in 2s, moving on", log)
        self.assertRegex(log, rf"answered by sip:103@127\.0\.0\.1:{answers.port}")
        self.assertIn(("100", "600", 1, "normal"), self.call_records())


class RoundRobinTests(HuntingTestBase):
    group = "[hunt 600]\npolicy = round-robin\noperators = 101 102 103\nring_time = 5\n"

    def test_thirty_calls_spread_ten_ten_ten(self) -> None:
        ops = {n: self.sipp(f"op{n}", scenarios.uas("answer")) for n in ("101", "102", "103")}
        for n, uas in ops.items():
            uas.start(calls=10)     # each UAS exits after 10 calls: an 11th would find nobody
            self.register(n, f"127.0.0.1:{uas.port}")
        caller = self.sipp("caller30", scenarios.uac(200, hold_ms=50), [f"100;{auth('100')};600"] * 30)
        rc = caller.run(self.target, calls=30, extra=["-l", "1"], timeout=45)
        self.assertEqual(rc, 0, caller.diagnostics() + self.server.read_log()[-3000:])
        for uas in ops.values():
            self.assertEqual(uas.wait(20), 0, uas.diagnostics())   # each exits after exactly 10 calls
        rung = self.rung()
        self.assertEqual({n: rung.count(n) for n in ops}, {"101": 10, "102": 10, "103": 10})
        self.assertEqual(rung[:6], ["101", "102", "103", "101", "102", "103"])
        self.server.wait_log("ended: normal", count=30)
        self.assertEqual(self.server.read_log().count("ended: normal"), 30)
