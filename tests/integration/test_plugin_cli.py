"""``python -m twisted minisip --config X --plugin-dir D`` as a real process: broken plugins stop
start-up naming the file; a good one is loaded. Every wait is bounded; processes end by PID."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

from tests.integration.harness import free_port, stop_process
from tests.test_plugins import HUNTING, REPO, PluginDirTestCase, plugin_source


class CommandLineTests(PluginDirTestCase):
    """``python -m twisted minisip --config X --plugin-dir D`` in a subprocess (bounded, ended by PID)."""

    if os.environ.get("MINISIP_SKIP_INTEGRATION"):
        skip = "MINISIP_SKIP_INTEGRATION is set"

    def setUp(self) -> None:
        super().setUp()
        self.udp = free_port(also_tcp=False)
        self.logfile = os.path.join(self.dir, "minisip.log")

    def config(self, text: str = "", plugins: str = "") -> str:
        path = self.write_config(text, plugins=plugins)
        with open(path, encoding="utf-8") as f:
            conf = f.read().replace("[sip]\nudp =\n", f"[sip]\nudp = 127.0.0.1:{self.udp}\n")
        with open(path, "w", encoding="utf-8") as f:
            f.write(conf)
        return path

    def spawn(self, conf: str, *plugin_dirs: str) -> subprocess.Popen[bytes]:
        args = [sys.executable, "-m", "twisted", "--log-format=text", "minisip", "--config", conf]
        for d in plugin_dirs:
            args += ["--plugin-dir", d]
        env = dict(os.environ, PYTHONPATH=REPO)
        with open(self.logfile, "wb") as out:
            proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL)
        self.addCleanup(stop_process, proc)
        return proc

    def output(self) -> str:
        with open(self.logfile, encoding="utf-8", errors="replace") as f:
            return f.read()

    def exit_status(self, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> int:
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            stop_process(proc)
            self.fail(f"minisip still running after {timeout}s:\n{self.output()}")

    def wait_output(self, proc: subprocess.Popen[bytes], text: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = self.output()
            if text in out:
                return out
            if proc.poll() is not None:
                self.fail(f"minisip exited with {proc.returncode} before logging {text!r}:\n{out}")
            time.sleep(0.05)
        self.fail(f"{text!r} not logged within {timeout}s:\n{self.output()}")

    def test_broken_plugin_stops_start_up(self) -> None:
        d = self.plugin_dir(files={"good.py": plugin_source("test.good"),
                                   "broken.py": "import no_such_module_for_minisip\n"})
        proc = self.spawn(self.config(), d)
        self.assertEqual(self.exit_status(proc), 2)
        out = self.output()
        self.assertIn(f"minisip: cannot start: plugin {d}/broken.py: import failed: ModuleNotFoundError", out)
        self.assertNotIn("Traceback", out)
        self.assertNotIn("minisip ready", out)

    def test_make_feature_config_error_stops_start_up(self) -> None:
        d = self.plugin_dir("shipped")
        shutil.copy(HUNTING, d)
        conf = self.config("[hunt 600]\noperators = 100 999\n")
        proc = self.spawn(conf, d)
        self.assertEqual(self.exit_status(proc), 2)
        out = self.output()
        self.assertIn(f"minisip: cannot start: {conf}: [hunt 600] operators: operator 999 is not an extension", out)
        self.assertNotIn("Traceback", out)
        self.assertNotIn("minisip ready", out)

    def test_good_plugin_loaded(self) -> None:
        d = self.plugin_dir(files={"good.py": plugin_source("test.good", ("good",))})
        proc = self.spawn(self.config("[good thing]\nx = 1\n"), d)
        out = self.wait_output(proc, "minisip ready")
        self.assertIn(f"plugin test.good loaded from {d}/good.py: a test plugin", out)
        self.assertIn(f"listening for SIP on udp 127.0.0.1:{self.udp}", out)
        os.kill(proc.pid, signal.SIGTERM)
        # twist stops the reactor, then ends itself with the signal it got.
        self.assertIn(self.exit_status(proc, timeout=15), (0, -signal.SIGTERM))
        self.assertIn("minisip stopped", self.output())
        self.assertNotIn("Traceback", self.output())
