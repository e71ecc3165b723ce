"""The Debian package: build it from a copy of the checkout, check what it ships, run what it ships.

The package is never installed system-wide here (CI runs as root on a shared machine): it is unpacked
with ``dpkg-deb -x`` into a temporary folder, and Debian's own python3 runs the unpacked twistd plugin
with ``PYTHONPATH`` pointing at the unpacked ``dist-packages``.

Runs when ``dpkg-buildpackage`` and the build dependencies in debian/control are installed, or always
with ``MINISIP_TEST_PACKAGE=1`` (then anything missing is a failure, not a skip).
"""

from __future__ import annotations

import atexit
import glob
import os
import re
import shutil
import subprocess
import tempfile
import time

from twisted.trial import unittest

from tests.integration.harness import REPO, free_port, stop_process

FORCED = os.environ.get("MINISIP_TEST_PACKAGE") == "1"
DEBIAN_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
SYSTEM_PYTHON = "/usr/bin/python3"
BUILD_TIMEOUT = 240.0
READY_TIMEOUT = 30.0

DIST_PACKAGES = "usr/lib/python3/dist-packages"
PLUGIN_FILE = f"{DIST_PACKAGES}/twisted/plugins/minisip_plugin.py"
CONFFILE = "etc/minisip/minisip.conf"
UNITS = ("lib/systemd/system/minisip.service", "usr/lib/systemd/system/minisip.service")
PLUGINS_DIR = "usr/share/minisip/plugins"
RUNTIME_DEPENDS = ("python3-twisted", "python3-autobahn", "python3-openssl", "python3-service-identity",
                   "python3-pylibsrtp", "python3-zope.interface")


def _skip_reason() -> str | None:
    if FORCED:
        return None
    if os.environ.get("MINISIP_SKIP_INTEGRATION"):
        return "MINISIP_SKIP_INTEGRATION is set (MINISIP_TEST_PACKAGE=1 forces the package test)"
    if not os.path.exists(os.path.join(REPO, "debian", "control")):
        return "no debian/control in this checkout"
    if shutil.which("dpkg-buildpackage", path=DEBIAN_PATH) is None:
        return "dpkg-buildpackage is not installed (apt-get install dpkg-dev debhelper dh-python ...)"
    check = subprocess.run(["dpkg-checkbuilddeps"], cwd=REPO, capture_output=True, text=True, check=False,
                           env=dict(os.environ, PATH=DEBIAN_PATH), timeout=60)
    if check.returncode != 0:
        return f"build dependencies missing: {check.stderr.strip()}"
    return None


SKIP_REASON = _skip_reason()


def _source_files() -> list[str]:
    """The checkout's files as git sees them (tracked plus new, not ignored): no venv, caches or artefacts."""
    if os.path.exists(os.path.join(REPO, ".git")) and shutil.which("git"):   # a file in a git worktree
        out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                             cwd=REPO, capture_output=True, check=True, timeout=60).stdout
        return [f for f in out.decode("utf-8", "surrogateescape").split("\0")
                if f and os.path.isfile(os.path.join(REPO, f))]
    skip_dirs = {".git", ".venv", "__pycache__", ".mypy_cache", ".ruff_cache", "build", "dist", ".pybuild"}
    files = []
    for root, dirs, names in os.walk(REPO):
        dirs[:] = [d for d in dirs if d not in skip_dirs and not d.startswith("_trial_temp")
                   and not d.endswith(".egg-info")]
        files += [os.path.relpath(os.path.join(root, n), REPO) for n in names
                  if not n.endswith(".pyc") and not n.startswith("_trial_temp")]
    return files


class _Package:
    """One build of the package, shared by the tests of this module (built on first use)."""

    def __init__(self) -> None:
        # Under trial's temporary folder (the working directory while tests run), which trial clears on its
        # next run; removed at exit as well where the interpreter runs atexit handlers.
        self.tmp = tempfile.mkdtemp(prefix="minisip-package-", dir=os.getcwd())
        atexit.register(shutil.rmtree, self.tmp, True)
        src = os.path.join(self.tmp, "minisip")
        for rel in _source_files():
            dest = os.path.join(src, rel)
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            shutil.copy2(os.path.join(REPO, rel), dest)
        # Source and binary, with the unit tests the build runs (issue 12 points 1 and 2).
        env = dict(os.environ, PATH=DEBIAN_PATH + os.pathsep + os.environ.get("PATH", ""), LC_ALL="C.UTF-8")
        env.pop("VIRTUAL_ENV", None)
        env.pop("DEB_BUILD_OPTIONS", None)
        env.pop("MINISIP_SKIP_INTEGRATION", None)
        log = os.path.join(self.tmp, "build.log")
        started = time.monotonic()
        with open(log, "wb") as out:
            proc = subprocess.Popen(["dpkg-buildpackage", "-us", "-uc"], cwd=src, env=env, stdout=out,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            try:
                rc = proc.wait(BUILD_TIMEOUT)
            except subprocess.TimeoutExpired:
                stop_process(proc)
                rc = -1
        self.build_seconds = time.monotonic() - started
        with open(log, encoding="utf-8", errors="replace") as f:
            self.build_log = f.read()
        debs = sorted(n for n in os.listdir(self.tmp) if n.startswith("minisip_") and n.endswith(".deb"))
        if rc != 0 or len(debs) != 1:
            raise AssertionError(f"dpkg-buildpackage failed (exit {rc}, debs {debs}):\n{self.build_log[-4000:]}")
        self.deb = os.path.join(self.tmp, debs[0])
        shutil.rmtree(src, ignore_errors=True)
        self.root = os.path.join(self.tmp, "root")
        subprocess.run(["dpkg-deb", "-x", self.deb, self.root], check=True, timeout=60)
        listing = subprocess.run(["dpkg-deb", "--contents", self.deb], capture_output=True, text=True,
                                 check=True, timeout=60).stdout
        # "drwxr-xr-x root/root 0 2026-01-01 00:00 ./usr/share/" (symlinks add " -> target")
        self.contents = {line.split(None, 5)[5].split(" -> ")[0].removeprefix("./").rstrip("/")
                         for line in listing.splitlines() if line.strip()}

    def field(self, name: str) -> str:
        return subprocess.run(["dpkg-deb", "--field", self.deb, name], capture_output=True, text=True,
                              check=True, timeout=60).stdout.strip()

    def control_file(self, name: str) -> str:
        out = subprocess.run(["dpkg-deb", "--info", self.deb, name], capture_output=True, text=True,
                             check=False, timeout=60)
        return out.stdout if out.returncode == 0 else ""


_package: _Package | None = None
_package_error: AssertionError | None = None


def package() -> _Package:
    """The module's one build; a failed build fails every test that needs it without building again."""
    global _package, _package_error
    if _package_error is not None:
        raise _package_error
    if _package is None:
        try:
            _package = _Package()
        except AssertionError as e:
            _package_error = e
            raise
    return _package


def _packaged_sample() -> bytes:
    """What the conffile must be: the sample with the data in /var/lib/minisip and the administrator's
    /etc/minisip/plugins.d after the shipped plugins ("bundled")."""
    with open(os.path.join(REPO, "etc", "minisip.conf"), "rb") as f:
        text = f.read()
    text = re.sub(rb"(?m)^datadir = .*$", b"datadir = /var/lib/minisip", text)
    return re.sub(rb"(?m)^directories = bundled$", b"directories = bundled /etc/minisip/plugins.d", text)


def _unpacked_config(conf: str, root: str) -> str:
    """The shipped configuration made runnable from an unpacked package without touching the machine:
    every non-empty listen address moves to a free loopback port, and /usr/share/minisip/plugins (if
    named) becomes the unpacked copy."""
    sip_port, tls_port, wss_port = free_port(), free_port(), free_port()
    ports = {"udp": sip_port, "tcp": sip_port, "tls": tls_port, "wss": wss_port}
    section, out = "", []
    for line in conf.splitlines():
        header = re.match(r"\s*\[([^\]]+)\]", line)
        if header:
            section = header.group(1).strip()
        m = re.match(r"\s*(udp|tcp|tls|wss)\s*=\s*(\S.*)?$", line, re.IGNORECASE)
        if m and section in ("sip", "mccp") and m.group(2) and not m.group(2).lstrip().startswith((";", "#")):
            line = f"{m.group(1)} = 127.0.0.1:{ports[m.group(1).lower()]}"
        if section == "plugins" and re.match(r"\s*directories\s*=", line):
            line = line.replace("/" + PLUGINS_DIR, os.path.join(root, PLUGINS_DIR)).replace(
                "/etc/minisip/plugins.d", os.path.join(root, "etc/minisip/plugins.d"))
        out.append(line)
    return "\n".join(out) + "\n"


class PackageContentsTests(unittest.TestCase):
    skip = SKIP_REASON

    def setUp(self) -> None:
        self.pkg = package()

    def test_source_package_and_tests_at_build(self) -> None:
        """A native source package is built beside the .deb, and the build ran the unit tests with trial."""
        self.assertTrue(glob.glob(os.path.join(self.pkg.tmp, "minisip_*.dsc")), os.listdir(self.pkg.tmp))
        self.assertTrue(glob.glob(os.path.join(self.pkg.tmp, "minisip_*.tar.xz")))
        self.assertRegex(self.pkg.build_log, r"Ran [0-9]{3,} tests")
        self.assertRegex(self.pkg.build_log, r"(?m)^PASSED \(")

    def test_build_time(self) -> None:
        """The build stays well inside CI's budget (it takes about 10 s on a 2-core machine)."""
        self.assertLess(self.pkg.build_seconds, BUILD_TIMEOUT)

    def test_twisted_plugin_file(self) -> None:
        """The twistd plugin lands in Debian's twisted/plugins, with no __init__.py or dropin.cache."""
        self.assertIn(PLUGIN_FILE, self.pkg.contents)
        for name in ("twisted/__init__.py", "twisted/plugins/__init__.py", "twisted/plugins/dropin.cache"):
            self.assertNotIn(f"{DIST_PACKAGES}/{name}", self.pkg.contents)
        self.assertIn(f"{DIST_PACKAGES}/minisip/tap.py", self.pkg.contents)
        self.assertIn("activate-noawait twisted-plugins-cache", self.pkg.control_file("triggers"))

    def test_conffile(self) -> None:
        """The sample configuration ships unchanged as the conffile /etc/minisip/minisip.conf, loading
        the shipped plugins with "directories = bundled"."""
        self.assertIn(CONFFILE, self.pkg.contents)
        self.assertIn("/" + CONFFILE, self.pkg.control_file("conffiles").split())
        with open(os.path.join(self.pkg.root, CONFFILE), "rb") as f:
            shipped = f.read()
        self.assertEqual(_packaged_sample(), shipped)
        self.assertRegex(shipped.decode("utf-8"), r"(?m)^directories = bundled /etc/minisip/plugins.d$")
        self.assertRegex(shipped.decode("utf-8"), r"(?m)^datadir = /var/lib/minisip$")
        self.assertIn("etc/minisip/plugins.d/README", self.pkg.contents)

    def test_docs_and_man_page(self) -> None:
        """Issue 12 point 3: the guides ship, the unit's Documentation= points at what is there."""
        for doc in ("README.md.gz", "plugins.md.gz", "security.md.gz", "architecture.md.gz"):
            self.assertIn(f"usr/share/doc/minisip/{doc}", self.pkg.contents)
        self.assertIn("usr/share/man/man8/minisip.8.gz", self.pkg.contents)
        with open(os.path.join(self.pkg.root, next(u for u in UNITS if u in self.pkg.contents)),
                  encoding="utf-8") as f:
            self.assertIn("Documentation=man:minisip(8) file:///usr/share/doc/minisip/", f.read())

    def test_systemd_unit(self) -> None:
        units = [u for u in UNITS if u in self.pkg.contents]
        self.assertEqual(len(units), 1, f"no systemd unit in {sorted(self.pkg.contents)}")
        with open(os.path.join(self.pkg.root, units[0]), encoding="utf-8") as f:
            unit = f.read()
        exec_start = re.search(r"^ExecStart=(.*)$", unit, re.MULTILINE)
        assert exec_start is not None
        self.assertRegex(exec_start.group(1),
                         r"^/usr/bin/twistd3? -n --pidfile= --logger minisip.log.observer minisip --config /etc/minisip/minisip.conf"
                         r" --datadir /var/lib/minisip$")
        for line in ("User=minisip", "Restart=on-failure", "NoNewPrivileges=yes", "ProtectSystem=strict",
                     "ReadWritePaths=/var/lib/minisip", "AmbientCapabilities=CAP_NET_BIND_SERVICE"):
            self.assertIn(line, unit.splitlines())

    def test_shipped_plugins(self) -> None:
        """The folder of feature plugins ships, with every plugins/*.py of the checkout in it, and the
        package's minisip/bundled_plugins (what "bundled" names) is a relative link to it."""
        self.assertIn(PLUGINS_DIR, self.pkg.contents)
        link = os.path.join(self.pkg.root, DIST_PACKAGES, "minisip", "bundled_plugins")
        self.assertTrue(os.path.islink(link), link)
        self.assertEqual(os.path.realpath(link), os.path.join(os.path.realpath(self.pkg.root), PLUGINS_DIR))
        repo_plugins = os.path.join(REPO, "plugins")
        shipped = sorted(n for n in os.listdir(repo_plugins) if n.endswith(".py")) \
            if os.path.isdir(repo_plugins) else []
        for name in shipped:
            self.assertIn(f"{PLUGINS_DIR}/{name}", self.pkg.contents)

    def test_depends(self) -> None:
        """Issue 12 point 4: what the code imports is declared, with the minimum versions it needs."""
        field = self.pkg.field("Depends")
        depends = {d.split()[0] for d in field.split(",")}
        for name in RUNTIME_DEPENDS + ("adduser", "python3-cryptography"):
            self.assertIn(name, depends)
        for versioned in ("python3-twisted (>= 22.4)", "python3-openssl (>= 23.0)", "python3-cryptography (>= 38)"):
            self.assertIn(versioned, field)
        self.assertEqual(self.pkg.field("Architecture"), "all")

    def test_maintainer_scripts(self) -> None:
        """postinst makes the system user and its 0750 data folder; postrm deletes data only on purge."""
        postinst = self.pkg.control_file("postinst")
        self.assertIn("adduser --system", postinst)
        self.assertIn("-m 0750 /var/lib/minisip", postinst)
        self.assertIn("getPlugins(IPlugin)", postinst)
        postrm = self.pkg.control_file("postrm")
        purge_at = postrm.find('if [ "$1" = purge ]')
        self.assertGreater(purge_at, 0, postrm)
        self.assertEqual(postrm.count("rm -rf /var/lib/minisip"), 1, postrm)
        self.assertGreater(postrm.index("rm -rf /var/lib/minisip"), purge_at)


class PackageRunTests(unittest.TestCase):
    """Debian's python3 runs the unpacked package: twistd finds the plugin, the server starts."""

    skip = SKIP_REASON

    def setUp(self) -> None:
        missing = [p for p in RUNTIME_DEPENDS if not self._installed(p)]
        if not os.path.exists(SYSTEM_PYTHON) or missing:
            reason = f"Debian's python3 packages are missing: {missing} (scripts/test.sh installs them)"
            if FORCED:
                self.fail(reason)
            raise unittest.SkipTest(reason)
        self.pkg = package()
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON") and k != "VIRTUAL_ENV"}
        env.update(PYTHONPATH=os.path.join(self.pkg.root, DIST_PACKAGES), LC_ALL="C.UTF-8")
        self.env = env

    @staticmethod
    def _installed(name: str) -> bool:
        out = subprocess.run(["dpkg-query", "-W", "-f", "${db:Status-Status}", name], capture_output=True,
                             text=True, check=False, timeout=30)
        return out.returncode == 0 and out.stdout.strip() == "installed"

    def test_plugin_found(self) -> None:
        """twistd lists minisip, and the code it runs is the package's, not the checkout's."""
        code = ("from twisted.plugin import getPlugins\n"
                "from twisted.application.service import IServiceMaker\n"
                "import minisip, twisted.plugins.minisip_plugin as p\n"
                "print(sorted(m.tapname for m in getPlugins(IServiceMaker)))\n"
                "print(minisip.__file__)\nprint(p.__file__)\n")
        out = subprocess.run([SYSTEM_PYTHON, "-s", "-c", code], cwd=self.dir, env=self.env, capture_output=True,
                             text=True, check=False, timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        names, minisip_file, plugin_file = out.stdout.splitlines()[-3:]
        self.assertIn("'minisip'", names)
        self.assertTrue(minisip_file.startswith(self.pkg.root + os.sep), minisip_file)
        self.assertTrue(plugin_file.startswith(self.pkg.root + os.sep), plugin_file)

    def test_server_starts(self) -> None:
        """`python3 -m twisted minisip` on the shipped conffile (ports moved to free ones, the unpacked
        plugin folder) gets ready with the shipped plugins loaded."""
        with open(os.path.join(self.pkg.root, CONFFILE), encoding="utf-8") as f:
            conf = _unpacked_config(f.read(), self.pkg.root)
        conf_path = os.path.join(self.dir, "minisip.conf")
        with open(conf_path, "w", encoding="utf-8") as f:
            f.write(conf)
        datadir = os.path.join(self.dir, "data")
        log_path = os.path.join(self.dir, "minisip.log")
        with open(log_path, "wb") as log:
            # As the unit runs it: twistd with minisip's log observer.
            proc = subprocess.Popen([SYSTEM_PYTHON, "-s", "-c", "from twisted.scripts.twistd import run; run()",
                                     "-n", "--pidfile=", "--logger", "minisip.log.observer", "minisip",
                                     "--config", conf_path, "--datadir", datadir],
                                    cwd=self.dir, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL)
        self.addCleanup(stop_process, proc)
        text = ""
        deadline = time.monotonic() + READY_TIMEOUT
        while "minisip ready" not in text:
            with open(log_path, encoding="utf-8", errors="replace") as f:
                text = f.read()
            if proc.poll() is not None and "minisip ready" not in text:
                self.fail(f"minisip exited ({proc.returncode}) before it was ready:\n{text[-3000:]}")
            if time.monotonic() > deadline:
                self.fail(f"minisip not ready within {READY_TIMEOUT}s:\n{text[-3000:]}")
            time.sleep(0.05)
        stop_process(proc)
        with open(log_path, encoding="utf-8", errors="replace") as f:
            text = f.read()
        self.assertIn(f"data in {datadir}", text)
        self.assertNotIn("Traceback", text, text[-3000:])
        self.assertTrue(os.path.exists(os.path.join(datadir, "minisip.sqlite")))
        plugins = os.path.join(self.pkg.root, PLUGINS_DIR)
        for name in sorted(os.listdir(plugins)):
            if name.endswith(".py") and not name.startswith("_"):
                self.assertIn(os.path.join(plugins, name), text, "shipped plugin not loaded")
