"""The servers under test (minisip, Kamailio, Sippy b2bua_simple) and the SIPp UAS behind the B2BUAs."""

from __future__ import annotations

import os
import re
import secrets
import shlex
import socket
import subprocess
import time
from pathlib import Path

from proctrack import ProcessTracker, Tracked, group_cpu_seconds, vm_rss_bytes
from sippctl import SIPP, SIPP_BUFFER

HOST = "127.0.0.1"
MINISIP_PORT = 25060  # UDP + TCP
MINISIP_TLS_PORT = 25061
KAMAILIO_PORT = 25160
SIPPY_PORT = 25260
UAS_PORT = 25070
UAS_MEDIA_PORT = 26000
READY_TIMEOUT = 15.0

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
SCENARIOS = BENCH_DIR / "scenarios"

# twistd as the service runs it (debian/minisip.service, scripts/run.sh), with minisip's log observer.
DEFAULT_MINISIP_CMD = ("{python} -c 'from twisted.scripts.twistd import run; run()' -n --pidfile= "
                       "--logger minisip.log.observer minisip --config {config} --datadir {datadir}")


class ServerStartError(RuntimeError):
    """A server did not come up; the message says why (and carries the tail of its log)."""


def port_free(port: int, kind: int = socket.SOCK_DGRAM) -> bool:
    sock = socket.socket(socket.AF_INET, kind)
    try:
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, port))
    except OSError:
        return False
    finally:
        sock.close()
    return True


def sip_options_probe(port: int, timeout: float = 0.3) -> str | None:
    """Send one SIP OPTIONS over UDP; return the status line of any answer, else None."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind((HOST, 0))
        lport = sock.getsockname()[1]
        tag = secrets.token_hex(6)
        msg = (
            f"OPTIONS sip:{HOST}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {HOST}:{lport};branch=z9hG4bK{secrets.token_hex(8)};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:probe@{HOST}>;tag={tag}\r\n"
            f"To: <sip:{HOST}:{port}>\r\n"
            f"Call-ID: {secrets.token_hex(10)}@{HOST}\r\n"
            "CSeq: 1 OPTIONS\r\n"
            "Content-Length: 0\r\n\r\n"
        )
        sock.settimeout(timeout)
        sock.sendto(msg.encode(), (HOST, port))
        data, _ = sock.recvfrom(65535)
    except OSError:
        return None
    finally:
        sock.close()
    first = data.split(b"\r\n", 1)[0].decode(errors="replace")
    return first if first.startswith("SIP/2.0") else None


class Server:
    """A SIP server process started and stopped by the bench."""

    name = "server"
    label = "server"
    sip_port = 0

    def __init__(self, tracker: ProcessTracker, workdir: Path) -> None:
        self.tracker = tracker
        self.workdir = workdir
        self.proc: Tracked | None = None
        self.startup_seconds = 0.0

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError(f"{self.name} is not running")
        return self.proc.pid

    def argv(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return {}

    def cwd(self) -> Path:
        return self.workdir

    def required_ports(self) -> list[tuple[int, int]]:
        return [(self.sip_port, socket.SOCK_DGRAM)]

    def prepare(self) -> None:
        """Write config files etc. before the first start."""

    def is_ready(self) -> bool:
        return sip_options_probe(self.sip_port) is not None

    def start(self) -> None:
        for port, kind in self.required_ports():
            if not port_free(port, kind):
                proto = "TCP" if kind == socket.SOCK_STREAM else "UDP"
                raise ServerStartError(f"{self.name}: {proto} port {HOST}:{port} is already in use")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.prepare()
        t0 = time.monotonic()
        self.proc = self.tracker.spawn(
            self.name, self.argv(), self.workdir / f"{self.name}.log", cwd=self.cwd(), env=self.env()
        )
        deadline = t0 + READY_TIMEOUT
        while time.monotonic() < deadline:
            if not self.proc.alive():
                tail = self.proc.log_tail()
                code = self.proc.proc.returncode
                self.stop()
                raise ServerStartError(f"{self.name} exited with code {code} before it was ready; log tail:\n{tail}")
            if self.is_ready():
                self.startup_seconds = time.monotonic() - t0
                return
            time.sleep(0.1)
        tail = self.proc.log_tail()
        self.stop()
        raise ServerStartError(
            f"{self.name} did not come up within {READY_TIMEOUT:.0f} s; log tail:\n{tail or '(empty log)'}"
        )

    def stop(self) -> None:
        if self.proc is not None:
            self.tracker.stop(self.proc)
            self.proc = None

    def cpu_seconds(self) -> float:
        return group_cpu_seconds(self.pid) if self.proc else 0.0


class KamailioServer(Server):
    name = "kamailio"
    label = "Kamailio 5.6 (C)"
    sip_port = KAMAILIO_PORT

    def __init__(self, tracker: ProcessTracker, workdir: Path, binary: str = "kamailio") -> None:
        super().__init__(tracker, workdir)
        self.binary = binary
        self.cfg = BENCH_DIR / "kamailio.cfg"
        self.ctl = workdir / "kamailio_ctl"

    def argv(self) -> list[str]:
        run = self.workdir / "run"
        run.mkdir(parents=True, exist_ok=True)
        return [
            self.binary, "-f", str(self.cfg), "-DD", "-E", "-m", "128", "-M", "256",
            "-A", "WITH_AUTH", "-A", f'CTL_SOCK="unix:{self.ctl}"',
            "-Y", str(run), "-P", str(run / "kamailio.pid"),
        ]

    def shm_used(self) -> int | None:
        """Shared memory in use (core.shmmem real_used) via kamcmd, or None if unavailable."""
        try:
            out = subprocess.run(
                ["kamcmd", "-s", f"unix:{self.ctl}", "core.shmmem"],
                capture_output=True, text=True, timeout=5, check=False,
            ).stdout
        except (OSError, subprocess.TimeoutExpired):
            return None
        match = re.search(r"real_used:\s*(\d+)", out)
        return int(match.group(1)) if match else None

    def location_records(self) -> int | None:
        try:
            out = subprocess.run(
                ["kamcmd", "-s", f"unix:{self.ctl}", "ul.dump", "brief"],
                capture_output=True, text=True, timeout=10, check=False,
            ).stdout
        except (OSError, subprocess.TimeoutExpired):
            return None
        match = re.search(r"Records:\s*(\d+)", out)
        return int(match.group(1)) if match else None


class SippyB2BUA(Server):
    name = "sippy"
    label = "Sippy b2bua_simple (Python)"
    sip_port = SIPPY_PORT

    def __init__(self, tracker: ProcessTracker, workdir: Path, binary: str = "b2bua_simple") -> None:
        super().__init__(tracker, workdir)
        self.binary = binary

    def argv(self) -> list[str]:
        return [self.binary, "-f", "-l", HOST, "-p", str(self.sip_port), "-n", f"{HOST}:{UAS_PORT}"]

    def env(self) -> dict[str, str]:
        # Sippy's SipLogger writes every SIP message to stderr by default; the baseline runs without it
        return {"SIPLOG_BEND": "none"}


class MinisipServer(Server):
    name = "minisip"
    label = "minisip"
    sip_port = MINISIP_PORT
    READY_TEXT = "minisip ready"

    def __init__(
        self,
        tracker: ProcessTracker,
        workdir: Path,
        users: range,
        command: str = DEFAULT_MINISIP_CMD,
        python: str = "python3",
        repo: Path = REPO_DIR,
    ) -> None:
        super().__init__(tracker, workdir)
        self.users = users
        self.command = command
        self.python = python
        self.repo = repo
        self.config = workdir / "minisip.conf"
        self.datadir = workdir / "data"
        self._log_offset = 0

    def prepare(self) -> None:
        """Write the config: bench/minisip-bench.conf plus one [extension N] section per bench user."""
        self.datadir.mkdir(parents=True, exist_ok=True)
        base = (BENCH_DIR / "minisip-bench.conf").read_text()
        base = re.sub(r"(?m)^datadir\s*=.*$", f"datadir = {self.datadir}", base)
        parts = [base.rstrip("\n"), ""]
        for user in self.users:
            parts.append(f"[extension {user}]\npassword = {user}\nname = Bench {user}\n")
        self.config.write_text("\n".join(parts))

    def argv(self) -> list[str]:
        cmd = self.command.format(python=self.python, config=self.config, datadir=self.datadir)
        return shlex.split(cmd)

    def env(self) -> dict[str, str]:
        path = os.environ.get("PYTHONPATH", "")
        return {"PYTHONPATH": f"{self.repo}{os.pathsep}{path}" if path else str(self.repo)}

    def cwd(self) -> Path:
        return self.repo

    def required_ports(self) -> list[tuple[int, int]]:
        return [
            (MINISIP_PORT, socket.SOCK_DGRAM),
            (MINISIP_PORT, socket.SOCK_STREAM),
            (MINISIP_TLS_PORT, socket.SOCK_STREAM),
        ]

    def start(self) -> None:
        log = self.workdir / f"{self.name}.log"
        self._log_offset = log.stat().st_size if log.exists() else 0
        super().start()

    def is_ready(self) -> bool:
        log = self.workdir / f"{self.name}.log"
        try:
            with open(log, "rb") as fh:
                fh.seek(self._log_offset)
                if self.READY_TEXT.encode() in fh.read():
                    return True
        except OSError:
            pass
        # fallback (e.g. a --minisip-cmd logging elsewhere): any SIP answer on the UDP port
        return sip_options_probe(self.sip_port, timeout=0.1) is not None

    def rss(self) -> int:
        return vm_rss_bytes(self.pid)


class SippUAS:
    """The called party behind a B2BUA: a SIPp UAS answering 180/200 and BYE."""

    def __init__(self, tracker: ProcessTracker, workdir: Path, port: int = UAS_PORT) -> None:
        self.tracker = tracker
        self.workdir = workdir
        self.port = port
        self.proc: Tracked | None = None

    def start(self, time_limit: float) -> None:
        if not port_free(self.port):
            raise ServerStartError(f"sipp UAS: UDP port {HOST}:{self.port} is already in use")
        self.workdir.mkdir(parents=True, exist_ok=True)
        argv = [
            "timeout", "-k", "5", str(int(time_limit)),
            SIPP, "-sf", str(SCENARIOS / "uas_call.xml"), "-i", HOST, "-p", str(self.port),
            "-mp", str(UAS_MEDIA_PORT), "-nostdin", "-trace_err", *SIPP_BUFFER,
        ]
        self.proc = self.tracker.spawn("sipp-uas", argv, self.workdir / "sipp-uas.log", cwd=self.workdir)
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            if not self.proc.alive():
                raise ServerStartError(f"sipp UAS exited early:\n{self.proc.log_tail()}")
            if not port_free(self.port):
                return
            time.sleep(0.05)
        raise ServerStartError("sipp UAS did not bind its port within 5 s")

    def stop(self) -> None:
        if self.proc is not None:
            self.tracker.stop(self.proc, grace=2.0)
            self.proc = None
