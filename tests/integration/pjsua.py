"""Drive PJSIP softphones (PyPI ``pjsua2-python`` 2.15, a CPython 3.11 wheel) for integration tests.

One :class:`Pjsua` is one child process running ``pjsua_phone.py`` with its own pjsua2 ``Endpoint``,
one SIP transport (UDP, TCP or TLS on its own port) and one account registered at minisip. The driver
talks to it over the child's stdin/stdout: one command line in, one JSON reply line out, plus JSON event
lines the phone sends on its own. Every wait is bounded and the child is ended by its PID.

What pjsua2 2.15 does that shaped this driver, all checked here:

* One ``Endpoint`` per process: a second ``pj.Endpoint()`` in the same process throws a C++
  ``pj::Error`` that nothing catches, and the interpreter aborts ("terminate called after throwing"),
  hence one child per phone.
  Its objects (``Account``, ``Call``, ``ToneGenerator``) must be freed before ``libDestroy``; a SWIG
  destructor running at interpreter exit aborts in ``pj_thread_this()`` ("Calling pjlib from
  unknown/external thread"), so the child frees them, destroys the library and leaves with ``_exit``.
* ``threadCnt = 0`` and ``mainThreadOnly``: callbacks only run inside ``libHandleEvents``, called
  between reads of stdin, so the Python code never runs on a pjsip worker thread.
* The first log lines are printed to stdout before ``logConfig`` applies: replies and events are the
  lines that parse as JSON, the rest is ignored.
* No sound card: ``audDevManager().setNullDev()`` gives the conference bridge its clock; a looped 1 kHz
  ``ToneGenerator`` connected to each call is the microphone, and ``noVad`` keeps RTP flowing in
  silence, so the stream's RTCP counters (``getStreamStat(i).rtcp.txStat.pkt``/``rxStat.pkt``) prove
  media went both ways. They are also captured in ``onStreamDestroyed`` for calls already ended.
* Codecs are cut to PCMU/PCMA (priority 0 disables the rest); telephone-event is always offered.
* TLS: ``CaListFile`` = minisip's self-signed ``<datadir>/tls/server.crt`` with ``verifyServer`` works
  (PJSIP checks the certificate's IP subjectAltName against 127.0.0.1). The wheel bundles OpenSSL
  1.0.2, so the method is pinned to TLS 1.2.
* ``contactRewriteUse``/``viaRewriteUse``/``sdpNatRewriteUse`` are off: on loopback there is nothing to
  learn from ``received``/``rport`` and a rewrite would re-register mid-test.
* Digest: it answers minisip's MD5 and SHA-256 challenges alike (with SHA-256 alone too); for MD5 its
  Authorization names no algorithm. Its log file is complete only once the phone has quit.
* SWIG trap: a vector field points into the struct it came from, so ``self.getInfo().media`` read
  after the ``CallInfo`` is freed gives garbage: keep ``info = self.getInfo()`` alive while reading.
* ``lockCodecEnabled`` is off: after an answer naming several codecs pjsua would send its own
  re-INVITE, which crosses a test's hold/resume re-INVITE (glare, 491 both ways).
* DTMF: ``sendDtmf`` with ``PJSUA_DTMF_METHOD_RFC2833`` or ``_SIP_INFO``; received digits of both kinds
  come to ``onDtmfDigit`` (an INFO with ``application/dtmf-relay`` is answered 200 by pjsua itself).
* Hold: ``setHold`` sends a re-INVITE with ``a=sendonly``; ``reinvite`` with ``PJSUA_CALL_UNHOLD`` resumes.
  The held side sees media status ``remote_hold`` (direction ``recvonly``) in ``onCallMediaState``.
* Transfer: ``xfer`` sends REFER; on a REFER received ``onCallTransferRequest`` gets the Refer-To
  (status 202 unless changed) and pjsua calls that target itself: the callback must supply a new
  ``Call`` object as ``prm.newCall`` for that call's events to reach Python.
"""

from __future__ import annotations

import importlib.util
import json
import os
import select
import socket
import subprocess
import sys
import time
from typing import Any, Callable

from tests.integration.harness import free_port, stop_process

PHONE_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pjsua_phone.py")

SKIP_REASON: str | None = None
# Only look: the phones import pjsua2 in their own processes, never in the test runner's.
if importlib.util.find_spec("pjsua2") is None:
    SKIP_REASON = f"the pjsua2 module is not installed for {sys.executable} (pip install pjsua2-python)"


class PjsuaError(AssertionError):
    pass


def free_rtp_ports() -> int:
    """An even UDP port P with P..P+7 free on 127.0.0.1: RTP/RTCP pairs for up to four calls of a phone."""
    for _ in range(100):
        port = free_port(socket.SOCK_DGRAM, also_tcp=False)
        port -= port % 2
        if port + 8 > 65535:
            continue
        socks = []
        try:
            for p in range(port, port + 8):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(s)
                s.bind(("127.0.0.1", p))
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
        return port
    raise RuntimeError("no free RTP port range")


class Pjsua:
    """One pjsua2 phone (a child process) registered as ``user`` at minisip on 127.0.0.1."""

    def __init__(self, workdir: str, user: str, password: str, server_port: int, transport: str = "udp",
                 cafile: str | None = None, autoanswer: bool = True) -> None:
        self.user = user
        self.transport = transport
        self.dir = os.path.join(workdir, f"pjsua-{user}")
        os.makedirs(self.dir, exist_ok=True)
        self.log = os.path.join(self.dir, "pjsua.log")
        self.stderr = os.path.join(self.dir, "stderr.txt")
        kind = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
        self.sip_port = free_port(kind, also_tcp=transport == "udp")
        self.opts = {"user": user, "password": password, "server_port": server_port, "transport": transport,
                     "sip_port": self.sip_port, "rtp_port": free_rtp_ports(), "log": self.log,
                     "cafile": cafile, "autoanswer": autoanswer}
        self.proc: subprocess.Popen | None = None
        self._buf = b""
        self.events: list[dict[str, Any]] = []    # every event, in order
        self._pending: list[dict[str, Any]] = []  # events not yet consumed by wait_event

    # --- process ---

    def start(self, timeout: float = 10.0) -> None:
        with open(self.stderr, "ab") as err:
            self.proc = subprocess.Popen([sys.executable, PHONE_SCRIPT, json.dumps(self.opts)], cwd=self.dir,
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err)
        self.wait_event("started", timeout=timeout)

    def stop(self) -> None:
        """Ask the phone to quit (it unregisters and hangs up), then end it by its PID."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            try:
                assert proc.stdin is not None
                proc.stdin.write(b"quit\n")
                proc.stdin.flush()
                proc.wait(3)
            except (OSError, subprocess.TimeoutExpired):
                pass
        stop_process(proc, grace=2)
        for f in (proc.stdin, proc.stdout):
            if f is not None:
                f.close()

    def read_log(self) -> str:
        """pjsua's own log (level 5: every SIP message sent and received)."""
        try:
            with open(self.log, encoding="utf-8", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def output(self, tail: int = 4000) -> str:
        parts = []
        for path in (self.stderr, self.log):
            try:
                with open(path, encoding="utf-8", errors="replace") as f:
                    parts.append(f.read()[-tail:])
            except FileNotFoundError:
                pass
        return "\n".join(parts)

    # --- protocol ---

    def _read_line(self, deadline: float) -> dict[str, Any]:
        """The next JSON line from the phone; lines that are not JSON (native logging) are skipped."""
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while True:
            while b"\n" in self._buf:
                raw, self._buf = self._buf.split(b"\n", 1)
                if raw.startswith(b"{"):
                    try:
                        return json.loads(raw)  # type: ignore[no-any-return]
                    except ValueError:
                        continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                continue
            data = os.read(fd, 65536)
            if not data:
                raise PjsuaError(f"pjsua {self.user} exited ({self.proc.poll()}):\n{self.output()}")
            self._buf += data

    def _take(self, msg: dict[str, Any]) -> dict[str, Any]:
        if "event" in msg:
            self.events.append(msg)
            self._pending.append(msg)
        return msg

    def command(self, line: str, timeout: float = 5.0) -> dict[str, Any]:
        """Send one command line and return its reply; events read meanwhile are kept."""
        assert self.proc is not None and self.proc.stdin is not None, "pjsua is not started"
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()
        deadline = time.monotonic() + timeout
        name = line.split()[0]
        while True:
            try:
                msg = self._take(self._read_line(deadline))
            except TimeoutError:
                raise PjsuaError(f"pjsua {self.user}: no reply to {line!r} within {timeout}s:\n"
                                 f"{self.output()}") from None
            if msg.get("reply") == name:
                if not msg.get("ok"):
                    raise PjsuaError(f"pjsua {self.user}: {line!r} failed: {msg.get('error')}")
                return msg

    def wait_event(self, name: str, timeout: float = 10.0,
                   match: Callable[[dict[str, Any]], bool] | None = None, **fields: Any) -> dict[str, Any]:
        """The first pending event called ``name`` whose fields equal ``fields`` (and ``match`` holds)."""
        deadline = time.monotonic() + timeout

        def fits(ev: dict[str, Any]) -> bool:
            return ev.get("event") == name and all(ev.get(k) == v for k, v in fields.items()) \
                and (match is None or match(ev))

        while True:
            for i, ev in enumerate(self._pending):
                if fits(ev):
                    del self._pending[i]
                    return ev
            try:
                self._take(self._read_line(deadline))
            except TimeoutError:
                raise PjsuaError(f"pjsua {self.user}: no {name} {fields} within {timeout}s; events: "
                                 f"{self.events[-30:]}\n{self.output(2000)}") from None

    def drain(self, seconds: float) -> None:
        """Keep reading events for ``seconds`` (the phone's own pace, e.g. while RTP flows)."""
        deadline = time.monotonic() + seconds
        while True:
            try:
                self._take(self._read_line(deadline))
            except TimeoutError:
                return

    def seen(self, name: str, **fields: Any) -> list[dict[str, Any]]:
        """Every event so far called ``name`` with these fields (consumed or not)."""
        return [ev for ev in self.events if ev.get("event") == name and all(ev.get(k) == v for k, v in fields.items())]

    # --- conveniences ---

    def wait_registered(self, timeout: float = 10.0) -> None:
        self.wait_event("reg", timeout=timeout, code=200, active=True)

    def dial(self, uri: str) -> int:
        return int(self.command(f"call {uri}")["call"])

    def stats(self, call: int | None = None) -> tuple[int, int]:
        """(transmitted, received) RTP packets of a call (the current one by default)."""
        reply = self.command("stats" + (f" {call}" if call is not None else ""))
        return int(reply.get("tx", 0)), int(reply.get("rx", 0))
