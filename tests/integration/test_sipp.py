"""SIPp against a real minisip process: registration with digest, and calls through the B2BUA."""

from __future__ import annotations

import os
import sqlite3
import time

from twisted.trial import unittest

from tests.integration import scenarios
from tests.integration.harness import SKIP_REASON, Minisip, Sipp, wait_tcp_listening

EXTS = {"100": "100", "101": "101", "102": "102"}


def auth(user: str, password: str | None = None) -> str:
    return f"[authentication username={user} password={password or user}]"


class SippTestBase(unittest.TestCase):
    skip = SKIP_REASON
    extra_config = "no_answer_timeout = 3"

    def setUp(self) -> None:
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        self.server = Minisip(self.dir, EXTS, extra=self.extra_config)
        self.addCleanup(self.server.stop)
        self.server.start()
        self.peers: list[Sipp] = []

    def tearDown(self) -> None:
        for p in self.peers:
            p.stop()
        self.server.assert_no_tracebacks(self)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.server.udp}"

    def sipp(self, name: str, xml: str, csv: list[str] | None = None) -> Sipp:
        p = Sipp(self.dir, name, xml, csv)
        self.peers.append(p)
        return p

    def register(self, user: str, contact: str, transport: str = "u1", password: str | None = None) -> Sipp:
        with open(os.path.join(os.path.dirname(__file__), "sipp", "reg_auth.xml")) as f:
            xml = f.read()
        reg = self.sipp(f"reg{user}{transport}", xml, [f"{user};{auth(user, password)};{contact}"])
        rc = reg.run(self.target, transport=transport)
        self.assertEqual(rc, 0, reg.diagnostics())
        return reg

    def uas(self, name: str, behaviour: str) -> Sipp:
        uas = self.sipp(name, scenarios.uas(behaviour))
        uas.start()
        return uas

    def call(self, caller: str, callee: str, outcome: int) -> Sipp:
        uac = self.sipp(f"uac{caller}to{callee}x{outcome}",
                        scenarios.uac(outcome) if outcome else scenarios.uac_cancel(),
                        [f"{caller};{auth(caller)};{callee}"])
        rc = uac.run(self.target)
        self.assertEqual(rc, 0, uac.diagnostics() + self.server.read_log()[-3000:])
        return uac

    def call_records(self, timeout: float = 5.0) -> list[tuple]:
        """The call records in the server's SQLite file, once every call the log says ended is there
        (records are written off the reactor thread, a moment after the call ends)."""
        ended = self.server.read_log().count(" ended: ")
        deadline = time.monotonic() + timeout
        while True:
            db = sqlite3.connect(os.path.join(self.server.datadir, "minisip.sqlite"))
            try:
                rows = db.execute("SELECT caller, callee, answer_time IS NOT NULL, cause FROM call_records").fetchall()
            except sqlite3.OperationalError:
                rows = []
            finally:
                db.close()
            if len(rows) >= ended or time.monotonic() > deadline:
                return rows
            time.sleep(0.05)


class RegistrationTests(SippTestBase):
    def test_register_udp(self) -> None:
        self.register("100", "127.0.0.1:5999")
        self.server.wait_log("extension 100 registered")

    def test_register_tcp(self) -> None:
        self.register("101", "127.0.0.1:5998", transport="t1")
        log = self.server.wait_log("extension 101 registered")
        self.assertIn("from tcp:127.0.0.1", log)

    def test_wrong_password_is_refused(self) -> None:
        with open(os.path.join(os.path.dirname(__file__), "sipp", "reg_auth.xml")) as f:
            xml = f.read()
        reg = self.sipp("badpw", xml, [f"100;{auth('100', 'nope')};127.0.0.1:5997"])
        self.assertNotEqual(reg.run(self.target), 0)
        self.assertNotIn("extension 100 registered", self.server.read_log())


class CallTests(SippTestBase):
    def test_answered_call(self) -> None:
        uas = self.uas("uas101", "answer")
        self.register("101", f"127.0.0.1:{uas.port}")
        self.call("100", "101", 200)
        self.assertEqual(uas.wait(20), 0, uas.diagnostics())
        self.server.wait_log("ended: normal")
        self.assertIn(("100", "101", 1, "normal"), self.call_records())

    def test_busy(self) -> None:
        uas = self.uas("uasbusy", "busy")
        self.register("101", f"127.0.0.1:{uas.port}")
        self.call("100", "101", 486)
        self.assertEqual(uas.wait(20), 0, uas.diagnostics())
        self.server.wait_log("ended: busy")

    def test_no_answer(self) -> None:
        uas = self.uas("uasring", "ring")
        self.register("101", f"127.0.0.1:{uas.port}")
        self.call("100", "101", 480)
        self.assertEqual(uas.wait(20), 0, uas.diagnostics())
        self.server.wait_log("ended: no-answer")

    def test_cancelled_by_caller(self) -> None:
        uas = self.uas("uascancel", "ring")
        self.register("101", f"127.0.0.1:{uas.port}")
        self.call("100", "101", 0)
        self.assertEqual(uas.wait(20), 0, uas.diagnostics())
        self.server.wait_log("ended: cancelled")

    def test_tcp_phone_whose_registering_connection_closed(self) -> None:
        """A phone registered over TCP that then closed the connection (SIPp, twinkle with
        persistent_tcp=no) still listens on its Contact port: the call opens a new connection there."""
        uas = self.sipp("uas101tcp", scenarios.uas("answer"))
        uas.start(transport="t1", wait_bound=False)
        wait_tcp_listening(uas.port, uas)
        self.register("101", f"127.0.0.1:{uas.port}", transport="t1")   # that SIPp exits: connection closed
        self.call("100", "101", 200)
        self.assertEqual(uas.wait(20), 0, uas.diagnostics())
        self.server.wait_log("ended: normal")
        self.assertIn(("100", "101", 1, "normal"), self.call_records())

    def test_unknown_number(self) -> None:
        self.call("100", "555", 404)
        self.server.wait_log("ended: not-found")

    def test_not_registered(self) -> None:
        self.call("100", "102", 480)

    def test_registration_survives_restart(self) -> None:
        uas = self.uas("uasrestart", "answer")
        self.register("101", f"127.0.0.1:{uas.port}")
        self.server.stop()
        self.server.start()
        self.assertIn("1 registrations restored", self.server.read_log())
        self.call("100", "101", 200)
        self.assertEqual(uas.wait(20), 0, uas.diagnostics())
