"""The command line: start-up log, refusal of a bad config, SIGHUP reload (real processes)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from twisted.trial import unittest

from tests.integration.harness import REPO, SKIP_REASON, Minisip, Sipp

REG = os.path.join(os.path.dirname(__file__), "sipp", "reg_auth.xml")


class CommandLineTests(unittest.TestCase):
    skip = SKIP_REASON

    def setUp(self) -> None:
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)

    def run_minisip(self, conf: str) -> subprocess.CompletedProcess:
        env = dict(os.environ, PYTHONPATH=REPO)
        return subprocess.run([sys.executable, "-m", "twisted", "minisip", "--config", conf], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=30)

    def test_bad_config_names_file_section_key_and_nothing_starts(self) -> None:
        conf = os.path.join(self.dir, "bad.conf")
        with open(conf, "w") as f:
            f.write("[server]\ndomain = 127.0.0.1\n[sip]\nudp = 0.0.0.0:5060\n[extension 100]\npassword = 100\n")
        result = self.run_minisip(conf)
        self.assertNotEqual(result.returncode, 0)
        out = result.stdout + result.stderr
        self.assertIn("bad.conf", out)
        self.assertIn("[extension 100]", out)
        self.assertIn("password", out)
        self.assertNotIn("minisip ready", out)

    def test_unknown_key_refused(self) -> None:
        conf = os.path.join(self.dir, "typo.conf")
        with open(conf, "w") as f:
            f.write("[server]\ndomain = 127.0.0.1\n[sip]\nupd = 127.0.0.1:5060\n")
        result = self.run_minisip(conf)
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("[sip] upd", result.stdout + result.stderr)

    def test_startup_log(self) -> None:
        server = Minisip(self.dir, {"100": "100", "101": "101"})
        self.addCleanup(server.stop)
        server.start()
        log = server.read_log()
        self.assertIn(f"listening for SIP on udp 127.0.0.1:{server.udp}", log)
        self.assertIn(f"listening for SIP on tcp 127.0.0.1:{server.tcp}", log)
        self.assertIn(f"listening for SIP on tls 127.0.0.1:{server.tls}", log)
        self.assertRegex(log, r"fingerprint SHA-256 ([0-9A-F]{2}:){31}[0-9A-F]{2}")
        self.assertIn("domain 127.0.0.1, 2 extensions", log)
        self.assertTrue(os.path.exists(os.path.join(server.datadir, "tls", "server.crt")))
        # The next steps for a newcomer: where to point a phone, the users (passwords: loopback only),
        # where the config and the data are.
        server.wait_log("Data (registrations")
        log = server.read_log()
        self.assertIn(f"SIP server / registrar / proxy: 127.0.0.1, port {server.udp} (UDP), port {server.tcp} (TCP), "
                      f"port {server.tls} (TLS)", log)
        self.assertIn("      100, password 100", log)
        self.assertIn("      101, password 101", log)
        self.assertIn(f"Configuration: {server.conf}", log)
        self.assertIn(f"Data (registrations, call records, TLS certificates): {server.datadir}", log)
        server.assert_no_tracebacks(self)

    def test_without_config_says_how_to_start_from_the_sample(self) -> None:
        """No --config and no /etc/minisip/minisip.conf (moved aside into a path that does not exist here):
        exactly that is said, with the commands that start from the sample; nothing starts."""
        missing = os.path.join(self.dir, "etc", "minisip", "minisip.conf")
        code = (f"import minisip.tap; minisip.tap.DEFAULT_CONFIG = {missing!r}\n"
                "from twisted.scripts.twistd import run; run()")
        env = dict(os.environ, PYTHONPATH=REPO)
        result = subprocess.run([sys.executable, "-c", code, "-n", "--pidfile=", "minisip"], cwd=self.dir, env=env,
                                capture_output=True, text=True, timeout=30)
        self.assertEqual(result.returncode, 2, result.stdout + result.stderr)
        sample = os.path.join(REPO, "etc", "minisip.conf")
        self.assertIn(f"minisip: no configuration: --config FILE was not given and {missing} does not exist.",
                      result.stderr)
        self.assertIn(f"twistd -n minisip --config {sample}", result.stderr)
        self.assertIn(f"cp {sample} minisip.conf", result.stderr)
        self.assertNotIn("Traceback", result.stdout + result.stderr)
        self.assertNotIn("minisip ready", result.stdout + result.stderr)

    def register(self, server: Minisip, user: str, name: str) -> int:
        reg = Sipp(self.dir, name, open(REG).read(), [f"{user};[authentication username={user} password={user}];127.0.0.1:5999"])
        return reg.run(f"127.0.0.1:{server.udp}", extra=["-recv_timeout", "3000"])

    def test_sighup_reload(self) -> None:
        server = Minisip(self.dir, {"100": "100"})
        self.addCleanup(server.stop)
        server.start()
        self.assertNotEqual(self.register(server, "101", "before"), 0)
        server.write_config({"100": "100", "101": "101"})
        server.signal(signal.SIGHUP)
        server.wait_log("configuration reloaded")
        self.assertEqual(self.register(server, "101", "after"), 0)
        # A broken file is refused whole; the running configuration stays.
        with open(server.conf, "a") as f:
            f.write("[extension 102]\nname = no password\n")
        server.signal(signal.SIGHUP)
        log = server.wait_log("configuration reload refused")
        self.assertIn("[extension 102]", log)
        self.assertEqual(self.register(server, "101", "stillthere"), 0)
        server.assert_no_tracebacks(self)
