"""Start minisip and real peers on 127.0.0.1 for integration tests; every process is ended by its PID.

The tests are trial ``TestCase``s that run these blocking helpers in a thread-free way: each helper
bounds its own waits, so a broken peer fails the test instead of hanging CI.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from typing import Iterable

from twisted.trial import unittest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The server command up to the plugin name, as debian/minisip.service runs it: twistd in the
# foreground, no pid file, minisip's log observer.
TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n", "--pidfile=",
          "--logger", "minisip.log.observer"]

SKIP_REASON = None
if os.environ.get("MINISIP_SKIP_INTEGRATION"):
    SKIP_REASON = "MINISIP_SKIP_INTEGRATION is set (the Debian-packages run covers unit tests only)"
elif shutil.which("sipp") is None:
    SKIP_REASON = "sipp is not installed (scripts/test.sh installs it)"


def _quiet_slots() -> tuple[int, int] | None:
    """(first port, number of slots) above the kernel's ephemeral range, to 64999, where the kernel never
    gives a socket a port unasked; None when there is no room for 20 slots there."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range", encoding="ascii") as f:
            high = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    first = high + 1 + (high + 1) % 2          # even: RTP ports
    slots = (65000 - first) // PORT_SLOT        # every port of every slot below 65000
    return (first, slots) if slots >= 20 else None


# A port from bind(0) is one of the kernel's ephemeral ports: between the test closing it and the peer
# binding it, any socket's bind(0) or outgoing connection (Chromium's, another peer's) could get it, and
# the peer failed with "Address already in use" (baresip did so once in CI). So ports are handed out
# from above that range, in slots of ``PORT_SLOT`` (the peer may use the next few: baresip's TLS
# listener on P+1, a pjsua phone's RTP on P..P+7, SIPp's media ports), each slot once per run until
# the range wraps around; each is checked free before it is handed out.
PORT_SLOT = 10
_QUIET = _quiet_slots()
_next_slot = random.randrange(_QUIET[1]) if _QUIET else 0


def _bindable(port: int, kind: int, also_tcp: bool) -> bool:
    for k in (kind, socket.SOCK_STREAM) if also_tcp and kind != socket.SOCK_STREAM else (kind,):
        s = socket.socket(socket.AF_INET, k)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        finally:
            s.close()
    return True


def free_port(kind: int = socket.SOCK_DGRAM, also_tcp: bool = True) -> int:
    """A port free for ``kind`` and (optionally) TCP on 127.0.0.1, the first of a slot of ``PORT_SLOT``
    (even): above the kernel's ephemeral range when that leaves room, else from bind(0)."""
    global _next_slot
    if _QUIET is not None:
        first, slots = _QUIET
        for _ in range(slots):
            port = first + PORT_SLOT * _next_slot
            _next_slot = (_next_slot + 1) % slots
            if _bindable(port, kind, also_tcp):
                return port
        raise RuntimeError(f"no free port in {first}-{first + PORT_SLOT * slots - 1}")
    for _ in range(50):
        s = socket.socket(socket.AF_INET, kind)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        if not also_tcp or _bindable(port, socket.SOCK_STREAM, False):
            return port
    raise RuntimeError("no free port")


def wait_udp_bound(port: int, proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """Wait until something (the peer we started) has bound UDP ``port`` on 127.0.0.1."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"peer exited with {proc.returncode} before binding port {port}")
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return
        finally:
            s.close()
        time.sleep(0.02)
    raise AssertionError(f"nothing bound UDP port {port} within {timeout}s")


def wait_tcp_listening(port: int, peer: "Sipp", timeout: float = 10.0) -> None:
    """Wait until something accepts TCP connections on 127.0.0.1:``port`` (the peer we started)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if peer.proc is not None and peer.proc.poll() is not None:
            raise AssertionError(f"peer exited with {peer.proc.returncode} before listening on {port}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listened on TCP port {port} within {timeout}s")


def plugin_folder(parent: str, *files: str) -> str:
    """``parent``/plugins holding links to the named files of the checkout's plugins/: a server with
    ``[plugins] directories`` set to it loads only those."""
    folder = os.path.join(parent, "plugins")
    os.makedirs(folder)
    for name in files:
        os.symlink(os.path.join(REPO, "plugins", name), os.path.join(folder, name))
    return folder


def stop_process(proc: subprocess.Popen, grace: float = 5.0) -> None:
    if proc.poll() is not None:
        return
    try:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)
    except ProcessLookupError:
        pass


class Minisip:
    """One minisip server process on loopback with a generated config."""

    def __init__(self, workdir: str, extensions: dict[str, str], extra: str = "", udp: int | None = None,
                 tcp: int | None = None, tls: int | None = None) -> None:
        self.workdir = workdir
        self.datadir = os.path.join(workdir, "data")
        self.udp = udp or free_port()
        self.tcp = tcp or self.udp
        self.tls = tls or free_port(socket.SOCK_STREAM, also_tcp=False)
        self.conf = os.path.join(workdir, "minisip.conf")
        self.log = os.path.join(workdir, "minisip.log")
        self.extensions = extensions
        self.extra = extra
        self.proc: subprocess.Popen | None = None
        self.write_config()

    def write_config(self, extensions: dict[str, str] | None = None) -> None:
        exts = extensions if extensions is not None else self.extensions
        lines = ["[server]", "domain = 127.0.0.1", f"datadir = {self.datadir}", "[sip]",
                 f"udp = 127.0.0.1:{self.udp}", f"tcp = 127.0.0.1:{self.tcp}", f"tls = 127.0.0.1:{self.tls}"]
        lines.append(self.extra)
        for num, pw in exts.items():
            lines += [f"[extension {num}]", f"password = {pw}"]
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")

    def start(self, timeout: float = 20.0) -> None:
        """Start the server as the service runs it (twistd, minisip's log observer) and wait until ready."""
        env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
        before = self.read_log().count("minisip ready")
        logf = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [*TWISTD, "minisip", "--config", self.conf],
            cwd=REPO, env=env, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        logf.close()
        self.wait_log("minisip ready", timeout, count=before + 1)

    def read_log(self) -> str:
        try:
            with open(self.log, encoding="utf-8", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def wait_log(self, text: str, timeout: float = 10.0, count: int = 1) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            log = self.read_log()
            if log.count(text) >= count:
                return log
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"minisip exited ({self.proc.returncode}) before {text!r}:\n{log[-3000:]}")
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {text!r} in the minisip log:\n{self.read_log()[-3000:]}")

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, sig)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None

    def assert_no_tracebacks(self, testcase: unittest.TestCase) -> None:
        log = self.read_log()
        testcase.assertNotIn("Traceback", log, log[-4000:])


class Sipp:
    """Runs SIPp with a scenario file; ``run`` waits, ``start`` returns (for a UAS in the background)."""

    def __init__(self, workdir: str, name: str, scenario_xml: str, csv: Iterable[str] | None = None) -> None:
        self.workdir = workdir
        self.name = name
        self.scenario = os.path.join(workdir, f"{name}.xml")
        with open(self.scenario, "w") as f:
            f.write(scenario_xml)
        self.csv = None
        if csv is not None:
            self.csv = os.path.join(workdir, f"{name}.csv")
            with open(self.csv, "w") as f:
                f.write("SEQUENTIAL\n" + "\n".join(csv) + "\n")
        self.proc: subprocess.Popen | None = None
        self.port = free_port()
        self.out = os.path.join(workdir, f"{name}.out")

    def args(self, target: str | None, transport: str = "u1", calls: int = 1, extra: Iterable[str] = ()) -> list[str]:
        a = ["sipp", "-sf", self.scenario, "-i", "127.0.0.1", "-p", str(self.port), "-t", transport,
             "-nostdin", "-m", str(calls), "-timeout", "30s", "-timeout_error", "-recv_timeout", "10000",
             "-trace_err", "-trace_msg", "-message_file", os.path.join(self.workdir, f"{self.name}.msg"),
             "-error_file", os.path.join(self.workdir, f"{self.name}.err"), "-mp", str(free_port())]
        if self.csv:
            a += ["-inf", self.csv]
        a += list(extra)
        if target:
            a.append(target)
        return a

    def run(self, target: str, transport: str = "u1", calls: int = 1, extra: Iterable[str] = (),
            timeout: float = 40.0) -> int:
        with open(self.out, "ab") as out:
            p = subprocess.Popen(self.args(target, transport, calls, extra), cwd=self.workdir, stdout=out,
                                 stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            try:
                return p.wait(timeout)
            except subprocess.TimeoutExpired:
                stop_process(p)
                return -1

    def start(self, transport: str = "u1", calls: int = 1, extra: Iterable[str] = (), wait_bound: bool = True) -> None:
        out = open(self.out, "ab")
        self.proc = subprocess.Popen(self.args(None, transport, calls, extra), cwd=self.workdir, stdout=out,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        out.close()
        if wait_bound:
            wait_udp_bound(self.port, self.proc)

    def wait(self, timeout: float = 40.0) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            stop_process(self.proc)
            return -1
        finally:
            pass

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)

    def messages(self) -> str:
        try:
            with open(os.path.join(self.workdir, f"{self.name}.msg"), errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def diagnostics(self) -> str:
        parts = []
        for suffix in (".out", ".err"):
            try:
                with open(os.path.join(self.workdir, self.name + suffix), errors="replace") as f:
                    parts.append(f.read()[-2000:])
            except FileNotFoundError:
                pass
        parts.append(self.messages()[-3000:])
        return "\n".join(parts)
