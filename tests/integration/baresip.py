"""Drive a headless baresip 1.0 (Debian package) for integration tests through its ``ctrl_tcp`` module.

One :class:`Baresip` is one softphone process with its own config directory, one SIP account and a
``ctrl_tcp`` control socket. Commands and events are netstrings holding JSON
(``LEN:{"command": ..., "params": ..., "token": ...},``); every wait here is bounded, so a silent or
stuck peer fails the test instead of hanging it. The process is always ended by its PID.

What baresip 1.0.0 (with Debian 12's libre 1.1.0) does that shaped this driver, all checked here:

* TLS: baresip 1.0 on libre 1.1.0 does not verify the server certificate at all, so minisip's
  self-signed ``<datadir>/tls/server.crt`` is accepted as is and no ``sip_cafile`` is needed. Checked
  both ways: against a throw-away self-signed certificate (CN unrelated to 127.0.0.1) it completed a
  TLS 1.3 handshake and sent its REGISTER, and with ``sip_cafile`` naming an unrelated CA it still
  talked to minisip ("ua: adding SIP CA" only loads the file into a trust store nobody consults).
  ``cafile`` is kept as an option for a future baresip that does verify.
* Digest: libre 1.1.0 fails a 401/407 with ENOSYS ("Register: Function not implemented") as soon as
  one WWW-Authenticate header names an algorithm other than MD5, even with an MD5 challenge next to
  it; the server must challenge with MD5 only (minisip: ``[security] digest_algorithms = MD5``).
* Its Contact user is ``<user>-0x<pointer>``, e.g. ``sip:100-0x55a3...@127.0.0.1:P;transport=tls``.
* ``sip_listen 127.0.0.1:P`` binds UDP and TCP on P and TLS on P+1, so both must be free. With no
  ``sip_certificate`` its TLS listener has no certificate to offer, so requests to the phone (the
  INVITE to the callee) are expected over the connection it opened to register (minisip does so).
* ``ausine`` only produces 48 kHz stereo: without ``ausrc_srate 48000`` / ``ausrc_channels 2`` /
  ``auplay_srate 48000`` the call dies when audio starts. ``aubridge,nil`` is a null sink.
* ``stdio.so`` needs a terminal, so ``ctrl_tcp`` is the only control path. Responses carry our
  token: ``{"response": true, "ok": true, "data": "...", "token": "t1"}``; events look like
  ``{"event": true, "class": "call", "type": "CALL_ESTABLISHED", "accountaor": ..., "id": ...}``.
  ``CALL_RTPESTAB`` is raised when the first RTP packet of a stream arrives, so seeing it proves
  media arrived at that phone ("stream: incoming rtp for 'audio' established" on stdout).
  ``callstat`` shows no RTP counters in 1.0; with ``rtp_stats yes`` a Transmit/Receive packet table
  is printed to stdout when a call ends, which :meth:`Baresip.wait_rtp_stats` reads.
* Events raised before the control socket is connected (often REGISTER_OK) are not replayed, so
  registration is checked by polling ``reginfo``.
* After SIGTERM it sometimes hangs in "ua: stop all": SIGKILL follows after a few seconds.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from typing import Any

from tests.integration.harness import free_port

BARESIP = shutil.which("baresip")
MODULE_PATH = "/usr/lib/baresip/modules"

SKIP_REASON: str | None = None
if BARESIP is None:
    SKIP_REASON = "baresip is not installed (apt-get install -y baresip)"
elif not os.path.exists(os.path.join(MODULE_PATH, "ctrl_tcp.so")):
    SKIP_REASON = f"baresip's ctrl_tcp module is missing from {MODULE_PATH}"

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def _free_sip_port() -> int:
    """A port P with P (UDP and TCP) and P+1 (TCP, baresip's TLS listener) free on 127.0.0.1."""
    for _ in range(50):
        port = free_port()
        if port >= 65535:
            continue
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            t.bind(("127.0.0.1", port + 1))
        except OSError:
            continue
        finally:
            t.close()
        return port
    raise RuntimeError("no free pair of ports for baresip")


class BaresipError(AssertionError):
    pass


class Baresip:
    """One baresip process registered as ``user`` at the registrar on 127.0.0.1."""

    def __init__(self, workdir: str, user: str, password: str, server_port: int, transport: str = "tls",
                 answermode: str = "auto", cafile: str | None = None, regint: int = 60) -> None:
        self.user = user
        self.dir = os.path.join(workdir, f"baresip-{user}")
        os.makedirs(self.dir, exist_ok=True)
        self.out = os.path.join(self.dir, "stdout.txt")
        self.sip_port = _free_sip_port()
        self.ctrl_port = free_port(socket.SOCK_STREAM, also_tcp=False)
        self.proc: subprocess.Popen | None = None
        self.sock: socket.socket | None = None
        self._buf = b""
        self._token = 0
        self.events: list[dict[str, Any]] = []  # every event received, in order
        self._pending: list[dict[str, Any]] = []  # events not yet consumed by wait_event
        self.aor = f"sip:{user}@127.0.0.1"
        config = [
            "poll_method\t\tepoll",
            f"sip_listen\t\t127.0.0.1:{self.sip_port}",
            "net_interface\t\t127.0.0.1",  # the interface name "lo" fails in 1.0
            "call_local_timeout\t120",
            "call_max_calls\t\t4",
            "audio_source\t\tausine,1000",  # a 1 kHz sine; ausine is 48 kHz stereo only
            "audio_player\t\taubridge,nil",  # nobody reads device "nil": a null sink
            "audio_alert\t\taubridge,nil",
            "audio_level\t\tno",
            "ausrc_srate\t\t48000",
            "ausrc_channels\t\t2",
            "auplay_srate\t\t48000",
            "audio_buffer\t\t20-160",
            "rtcp_mux\t\tno",
            "jitter_buffer_delay\t5-10",
            "rtp_stats\t\tyes",
            f"module_path\t\t{MODULE_PATH}",
            "module\t\t\tg711.so",
            "module\t\t\tausine.so",
            "module\t\t\taubridge.so",
            "module\t\t\tctrl_tcp.so",
            "module_tmp\t\taccount.so",
            "module_app\t\tmenu.so",
            f"ctrl_tcp_listen\t\t127.0.0.1:{self.ctrl_port}",
        ]
        if cafile:
            config.append(f"sip_cafile\t\t{cafile}")
        with open(os.path.join(self.dir, "config"), "w") as f:
            f.write("\n".join(config) + "\n")
        # The AOR names the domain; ``outbound`` sends every request (REGISTER and INVITE) to the
        # server's port with the chosen transport, so a dial string can be just "sip:101@127.0.0.1".
        account = (f"<sip:{user}@127.0.0.1;transport={transport}>;auth_pass={password};answermode={answermode}"
                   f";outbound=\"sip:127.0.0.1:{server_port};transport={transport}\";regint={regint}"
                   ";audio_codecs=PCMU,PCMA")
        with open(os.path.join(self.dir, "accounts"), "w") as f:
            f.write(account + "\n")
        # baresip also reads (and would create) "contacts" and "uuid" here; an empty contacts file
        # keeps the start quiet.
        open(os.path.join(self.dir, "contacts"), "a").close()

    # --- process ---

    def start(self, timeout: float = 10.0) -> None:
        assert BARESIP is not None
        with open(self.out, "ab") as out:
            self.proc = subprocess.Popen([BARESIP, "-f", self.dir], cwd=self.dir, stdout=out,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise BaresipError(f"baresip {self.user} exited ({self.proc.returncode}) at start:\n{self.output()}")
            try:
                self.sock = socket.create_connection(("127.0.0.1", self.ctrl_port), timeout=1.0)
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise BaresipError(f"baresip {self.user}: ctrl_tcp did not listen within {timeout}s:\n"
                                       f"{self.output()}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        """End the process by its PID: SIGTERM, then SIGKILL if it hangs in "ua: stop all"."""
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        try:
            os.kill(proc.pid, signal.SIGTERM)
            proc.wait(3)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(5)
        except ProcessLookupError:
            pass

    def output(self, tail: int = 4000) -> str:
        try:
            with open(self.out, encoding="utf-8", errors="replace") as f:
                return strip_ansi(f.read())[-tail:]
        except FileNotFoundError:
            return ""

    # --- ctrl_tcp ---

    def _read_frame(self, deadline: float) -> dict[str, Any]:
        """The next netstring frame, decoded; BaresipError once ``deadline`` passes."""
        assert self.sock is not None
        while True:
            colon = self._buf.find(b":")
            if colon > 0:
                length = int(self._buf[:colon])
                end = colon + 1 + length
                if len(self._buf) > end:
                    if self._buf[end:end + 1] != b",":
                        raise BaresipError(f"bad netstring from baresip {self.user}: {self._buf[:200]!r}")
                    frame, self._buf = self._buf[colon + 1:end], self._buf[end + 1:]
                    return json.loads(frame)  # type: ignore[no-any-return]
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            self.sock.settimeout(remaining)
            data = self.sock.recv(65536)
            if not data:
                raise BaresipError(f"baresip {self.user} closed its control socket:\n{self.output()}")
            self._buf += data

    def _take(self, frame: dict[str, Any]) -> dict[str, Any]:
        if frame.get("event"):
            self.events.append(frame)
            self._pending.append(frame)
        return frame

    def command(self, command: str, params: str | None = None, timeout: float = 5.0) -> str:
        """Send a command and return its response's ``data``; events read meanwhile are kept."""
        assert self.sock is not None, "baresip is not started"
        self._token += 1
        token = f"t{self._token}"
        msg: dict[str, str] = {"command": command, "token": token}
        if params is not None:
            msg["params"] = params
        body = json.dumps(msg).encode()
        self.sock.sendall(str(len(body)).encode() + b":" + body + b",")
        deadline = time.monotonic() + timeout
        while True:
            try:
                frame = self._take(self._read_frame(deadline))
            except TimeoutError:
                raise BaresipError(f"baresip {self.user}: no response to {command!r} within {timeout}s:\n"
                                   f"{self.output()}") from None
            if frame.get("response") and frame.get("token") == token:
                if not frame.get("ok", False):
                    raise BaresipError(f"baresip {self.user}: {command!r} failed: {frame}")
                return strip_ansi(str(frame.get("data", "")))

    def wait_event(self, type_: str, timeout: float = 10.0) -> dict[str, Any]:
        """The first not yet consumed event of ``type_`` (e.g. "CALL_ESTABLISHED"), waiting if needed.

        Events of other types stay pending for later waits.
        """
        deadline = time.monotonic() + timeout
        while True:
            for i, ev in enumerate(self._pending):
                if ev.get("type") == type_:
                    del self._pending[i]
                    return ev
            try:
                self._take(self._read_frame(deadline))
            except TimeoutError:
                seen = [e.get("type") for e in self.events]
                raise BaresipError(f"baresip {self.user}: no {type_} within {timeout}s (events: {seen}):\n"
                                   f"{self.output()}") from None

    def event_types(self) -> list[str]:
        return [str(e.get("type")) for e in self.events]

    # --- conveniences ---

    def wait_registered(self, timeout: float = 10.0) -> str:
        """Poll ``reginfo`` until the account shows OK (a REGISTER_OK event may come before we connect)."""
        deadline = time.monotonic() + timeout
        while True:
            info = self.command("reginfo")
            if re.search(r"\sOK\s", info):
                return info
            if time.monotonic() > deadline:
                raise BaresipError(f"baresip {self.user} not registered within {timeout}s: {info}\n{self.output()}")
            time.sleep(0.1)

    def dial(self, uri: str) -> str:
        return self.command("dial", uri)

    def hangup(self) -> str:
        return self.command("hangup")

    def wait_rtp_stats(self, timeout: float = 5.0) -> tuple[int, int]:
        """(transmitted, received) audio RTP packets of the last call that ended.

        With ``rtp_stats yes`` baresip prints a table to stdout when a call ends (``callstat`` in 1.0
        shows no counters)::

            audio           Transmit:     Receive:
            packets:            101          101
        """
        deadline = time.monotonic() + timeout
        while True:
            stats = parse_rtp_stats(self.output(tail=1 << 20))
            if stats is not None:
                return stats
            if time.monotonic() > deadline:
                raise BaresipError(f"baresip {self.user}: no RTP statistics within {timeout}s:\n{self.output()}")
            time.sleep(0.05)


def parse_rtp_stats(text: str) -> tuple[int, int] | None:
    """The last (transmitted, received) packet counts printed by baresip, or None."""
    found = re.findall(r"Transmit:\s+Receive:\s*\n\s*packets:\s+(\d+)\s+(\d+)", text)
    if not found:
        return None
    tx, rx = found[-1]
    return int(tx), int(rx)
