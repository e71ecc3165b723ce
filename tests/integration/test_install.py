"""``pip install`` of the tree into a temporary virtualenv: the bundled plugins and the sample ship with it.

Fast and offline: Debian's python3 makes a ``--system-site-packages`` venv without pip of its own, and its
pip (with Debian's setuptools and wheel, no build isolation, no index) installs a copy of the checkout
without dependencies (Twisted & co. come from Debian's packages). The installed minisip, run from outside
the checkout, must find its plugins in the venv and load them from the installed sample configuration.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

from twisted.trial import unittest

from tests.integration.harness import REPO

SYSTEM_PYTHON = "/usr/bin/python3"
INSTALL_TIMEOUT = 120.0
# What a build needs from the checkout (setup.cfg maps plugins/ and etc/ into the package).
BUILD_INPUTS = ("setup.cfg", "pyproject.toml", "README.md", "minisip", "plugins", "etc", "twisted")
SHIPPED = ["conference.py", "hunting.py", "keepalive.py", "trunks.py"]

PROBE = """
import json, minisip
from minisip.config import load_config
from minisip.paths import bundled_plugins_dir, sample_config
from minisip.plugins import discover
config = load_config(sample_config())
plugins = discover(config.plugin_directories, config.plugins_disable)
print(json.dumps({"package": minisip.__file__, "bundled": bundled_plugins_dir(), "sample": sample_config(),
                  "directories": list(config.plugin_directories), "names": sorted(p.name for p in plugins),
                  "files": sorted(p.path for p in plugins)}))
"""


def _skip_reason() -> str | None:
    if os.environ.get("MINISIP_SKIP_INTEGRATION"):
        return "MINISIP_SKIP_INTEGRATION is set"
    if not os.path.exists(SYSTEM_PYTHON):
        return f"{SYSTEM_PYTHON} is missing"
    check = subprocess.run([SYSTEM_PYTHON, "-c", "import setuptools, wheel, venv, pip, twisted"],
                           capture_output=True, text=True, check=False, timeout=60)
    if check.returncode != 0:
        return ("Debian's python3-venv, python3-pip, python3-setuptools, python3-wheel or python3-twisted is "
                f"missing (scripts/test.sh installs them): {check.stderr.strip()[-300:]}")
    return None


class PipInstallTests(unittest.TestCase):
    skip = _skip_reason()

    def setUp(self) -> None:
        self.dir = os.path.abspath(self.mktemp())
        self.src = os.path.join(self.dir, "src")
        self.venv = os.path.join(self.dir, "venv")
        os.makedirs(self.src)
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "dropin.cache", "_trial_temp*")
        for name in BUILD_INPUTS:
            path = os.path.join(REPO, name)
            if os.path.isdir(path):
                shutil.copytree(path, os.path.join(self.src, name), ignore=ignore)
            else:
                shutil.copy2(path, self.src)
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("PYTHON", "PIP_")) and k != "VIRTUAL_ENV"}
        self.env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", LC_ALL="C.UTF-8")

    def run_checked(self, *args: str) -> str:
        out = subprocess.run(list(args), cwd=self.dir, env=self.env, capture_output=True, text=True, check=False,
                             timeout=INSTALL_TIMEOUT, stdin=subprocess.DEVNULL)
        self.assertEqual(out.returncode, 0, f"{' '.join(args)} failed:\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}")
        return out.stdout

    def test_installed_package_finds_its_plugins(self) -> None:
        """After ``pip install .``, "directories = bundled" in the installed sample loads keepalive, hunting
        and trunks from the venv's minisip/bundled_plugins, plain .py files beside their README."""
        self.run_checked(SYSTEM_PYTHON, "-m", "venv", "--system-site-packages", "--without-pip", self.venv)
        python = os.path.join(self.venv, "bin", "python")
        self.run_checked(python, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                         self.src)
        shutil.rmtree(self.src)  # nothing may come from the source tree any more
        found = json.loads(self.run_checked(python, "-c", PROBE).splitlines()[-1])
        venv = os.path.realpath(self.venv) + os.sep
        package_dir = os.path.dirname(found["package"])
        self.assertTrue(os.path.realpath(found["package"]).startswith(venv), found["package"])
        self.assertEqual(found["bundled"], os.path.realpath(os.path.join(package_dir, "bundled_plugins")))
        self.assertEqual(found["sample"], os.path.realpath(os.path.join(package_dir, "sample", "minisip.conf")))
        self.assertEqual(found["directories"], [found["bundled"]])
        self.assertEqual(found["names"], ["minisip.conference", "minisip.hunting", "minisip.keepalive", "minisip.trunks"])
        self.assertEqual(found["files"], [os.path.join(found["bundled"], name) for name in SHIPPED])
        self.assertTrue(os.path.isfile(os.path.join(found["bundled"], "README.md")))
        # Without a configuration, the installed twistd plugin points at the installed sample.
        missing = os.path.join(self.dir, "no-etc", "minisip.conf")
        code = (f"import minisip.tap; minisip.tap.DEFAULT_CONFIG = {missing!r}\n"
                "from twisted.scripts.twistd import run; run()")
        out = subprocess.run([python, "-c", code, "-n", "--pidfile=", "minisip"], cwd=self.dir, env=self.env,
                             capture_output=True, text=True, check=False, timeout=INSTALL_TIMEOUT)
        self.assertEqual(out.returncode, 2, out.stdout + out.stderr)
        self.assertIn(f"twistd -n minisip --config {found['sample']}", out.stderr)
