"""Drive a headless Linphone (``linphone-daemon`` from Debian's ``linphone-cli`` 5.1) for integration tests.

One :class:`Linphone` is one ``linphone-daemon`` process with its own ``linphonerc``, ``$HOME`` and log
file, one account (``[proxy_0]``/``[auth_info_0]``) and a control socket. Every wait is bounded and the
process is ended by its PID.

What linphone-daemon 5.1.65 does that shaped this driver, all checked here:

* ``--pipe NAME`` makes a unix socket ``/tmp/NAME`` (the path cannot be chosen): the name carries the
  PID and user, and the socket is removed at stop. It serves ONE client; each command is one line,
  each answer one write: ``Status: Ok|Error`` then a blank line then ``Key: value`` lines (``Reason:``
  on errors). With ``--pipe`` events are not pushed: ``pop-event`` returns ``Size: N`` (events still
  queued) and the oldest event, e.g. ``Event-type: call-state-changed`` / ``Event:
  LinphoneCallIncomingReceived`` / ``Id: 1``, or ``Event-type: receiving-tone`` / ``Tone: 5`` for a
  DTMF received (RFC 4733 or SIP INFO alike).
* The SIP listening points named in ``[sip] sip_port``/``sip_tcp_port``/``sip_tls_port`` are NOT
  opened at start on a loopback-only machine ("No listening point matching for [udp://...]", the
  first REGISTER fails at once). Setting them again over the socket (``port sip P udp|tcp|tls``)
  opens them and makes the account register, so the driver always does that first.
* TLS to minisip's self-signed certificate for 127.0.0.1: ``root_ca`` = ``<datadir>/tls/server.crt``
  alone fails with "CN-mismatch" (Linphone's mbedTLS only matches DNS names in the subjectAltName, and
  minisip's certificate names the address as an IP), so ``verify_server_cn=0`` is also set: the chain
  is still checked against ``root_ca``, only the name match is skipped. ``verify_name=True`` keeps the
  name check, for a certificate that also lists the address as a DNS name (:func:`names_ip_as_dns`;
  checked here with such a certificate given to minisip as ``tls_certificate``: Linphone registers).
* Digest: Linphone answers minisip's MD5 and SHA-256 challenges alike.
* No sound card (ALSA "cannot find card '0'", no PulseAudio): the only audio source is
  ``incall-player-start FILE.wav ID`` (8 kHz mono 16-bit WAV, :func:`write_tone_wav`), and it must be
  started again after any re-INVITE that restarts the streams (hold/resume).
* ``call-stats`` crashes the daemon in 5.1.65 and ``--pipe`` turns the stats events off: RTP is
  counted at the other phone, and oRTP's summary written to the log when a stream stops (a block headed
  "AUDIO SESSION'S RTP STATISTICS", "sent N packets", "received N packets") is read by
  :meth:`Linphone.rtp_stats`.
* ``$HOME/.local/share/linphone`` must exist, or the call-log database fails to open (harmless for
  calls, fatal for DTLS): the driver creates it.
* SIP INFO DTMF: ``[sip] use_info=1`` and ``use_rfc2833=0``, else RFC 4733 (``use_rfc2833=1``).
* ``call-pause`` sends a re-INVITE with ``a=sendonly``; the held side goes to
  ``LinphoneCallPausedByRemote`` and back to ``LinphoneCallStreamsRunning`` on ``call-resume``.
* ``call-transfer ID URI`` sends REFER (no transfer events reach the socket: the 202 is in the log).
  A REFER received is accepted (202, ``LinphoneCallRefered``): Linphone puts that call on hold
  (re-INVITE ``a=sendonly``), calls the Refer-To target itself (a new call id,
  ``LinphoneCallOutgoingInit``) and NOTIFYs the transferor. Its final NOTIFY carries
  ``Subscription-State: terminated;reason=reason=noresource`` (sic), which PJSIP drops as a syntax
  error; only the first NOTIFY ("SIP/2.0 100 Trying", ``active``) gets through to a PJSIP transferor.
* Digits sent with ``dtmf`` less than about 0.2 s apart are dropped ("MSRtpSend: already sending a
  dtmf").
* Events of a call placed by this phone start with ``LinphoneCallOutgoingInit``, so when waiting for
  the OutgoingInit of a call it makes on its own (a transfer), skip the first call's.
"""

from __future__ import annotations

import array
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import wave

from tests.integration.harness import free_port
from tests.integration.pjsua import free_rtp_ports

LINPHONE_DAEMON = shutil.which("linphone-daemon")

SKIP_REASON: str | None = None
if LINPHONE_DAEMON is None:
    SKIP_REASON = "linphone-daemon is not installed (apt-get install -y --no-install-recommends linphone-cli)"


class LinphoneError(AssertionError):
    pass


def write_tone_wav(path: str, seconds: int = 20, freq: float = 1000.0, rate: int = 8000) -> str:
    """A mono 16-bit ``rate`` Hz WAV holding a sine of ``freq`` Hz: Linphone's microphone in a call."""
    period = [int(8000 * math.sin(2 * math.pi * freq * i / rate)) for i in range(rate)]  # one second
    samples = array.array("h", period * int(seconds))
    if sys.byteorder != "little":
        samples.byteswap()
    frames = samples.tobytes()
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(frames)
    return path


def names_ip_as_dns(cert_file: str, address: str = "127.0.0.1") -> bool:
    """Whether the certificate's subjectAltName lists ``address`` as a DNS name: what Linphone's
    name check needs to accept a certificate for an IP address."""
    from cryptography import x509
    with open(cert_file, "rb") as f:
        cert = x509.load_pem_x509_certificate(f.read())
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    return address in san.get_values_for_type(x509.DNSName)


def parse_block(text: str) -> dict[str, str]:
    """``Key: value`` lines of an answer or event (the first occurrence of a key wins)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(": ")
        if sep and key not in out:
            out[key.strip()] = value.strip()
    return out


class Linphone:
    """One linphone-daemon registered as ``user`` at minisip on 127.0.0.1."""

    def __init__(self, workdir: str, user: str, password: str, server_port: int, transport: str = "udp",
                 cafile: str | None = None, dtmf: str = "rfc2833", verify_name: bool = False) -> None:
        self.user = user
        self.transport = transport
        self.dir = os.path.join(workdir, f"linphone-{user}")
        self.home = os.path.join(self.dir, "home")
        os.makedirs(os.path.join(self.home, ".local", "share", "linphone"), exist_ok=True)
        self.rc = os.path.join(self.dir, "linphonerc")
        self.log = os.path.join(self.dir, "linphone.log")
        self.out = os.path.join(self.dir, "stdout.txt")
        self.pipe = f"minisip-test-{os.getpid()}-{user}-{os.urandom(3).hex()}"
        kind = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
        self.sip_port = free_port(kind, also_tcp=transport == "udp")
        self.rtp_port = free_rtp_ports()
        self.tone = write_tone_wav(os.path.join(self.dir, "tone8k.wav"))
        self.proc: subprocess.Popen | None = None
        self.sock: socket.socket | None = None
        self.events: list[dict[str, str]] = []    # every event popped, in order
        self._pending: list[dict[str, str]] = []  # events not yet consumed by wait_event
        ports = {"udp": "sip_port", "tcp": "sip_tcp_port", "tls": "sip_tls_port"}
        sip = ["[sip]", "sip_port=0", "sip_tcp_port=0", "sip_tls_port=0", f"{ports[transport]}={self.sip_port}",
               "default_proxy=0", "register_only_when_network_is_up=0", "guess_hostname=0",
               "contact=sip:" + user + "@127.0.0.1", "inc_timeout=60", "in_call_timeout=0",
               "delayed_timeout=60",
               f"use_info={1 if dtmf == 'info' else 0}", f"use_rfc2833={0 if dtmf == 'info' else 1}",
               "media_encryption=none", "ipv6=0"]
        if cafile:
            # the chain is checked against ``cafile``; the name only with ``verify_name`` (see the docstring)
            sip += [f"root_ca={cafile}", "verify_server_certs=1", f"verify_server_cn={int(verify_name)}"]
        config = sip + [
            "[net]", "firewall_policy=0", "nat_policy_ref=", "mtu=0",
            "[rtp]", f"audio_rtp_port={self.rtp_port}", "audio_jitt_comp=60", "rtcp_mux=0",
            "[sound]", "echocancellation=0", "playback_dev_id=", "capture_dev_id=", "ringer_dev_id=",
            "[video]", "enabled=0", "capture=0", "display=0", "automatically_initiate=0",
            "automatically_accept=0",
            "[misc]", "max_calls=4", "version_check_url_root=", "conference_server_enabled=0",
            "[proxy_0]", f"reg_proxy=<sip:127.0.0.1:{server_port};transport={transport}>",
            f"reg_identity=<sip:{user}@127.0.0.1>", "reg_sendregister=1", "reg_expires=60",
            "publish=0", "dial_escape_plus=0", "avpf=0",
            "[auth_info_0]", f"username={user}", f"passwd={password}", "realm=127.0.0.1",
        ]
        for i, codec in enumerate(("PCMU", "PCMA")):
            config += [f"[audio_codec_{i}]", f"mime={codec}", "rate=8000", "channels=1", "enabled=1"]
        with open(self.rc, "w") as f:
            f.write("\n".join(config) + "\n")

    # --- process ---

    @property
    def socket_path(self) -> str:
        return os.path.join("/tmp", self.pipe)

    def start(self, timeout: float = 10.0) -> None:
        assert LINPHONE_DAEMON is not None
        env = dict(os.environ, HOME=self.home)
        with open(self.out, "ab") as out:
            self.proc = subprocess.Popen(
                [LINPHONE_DAEMON, "--config", self.rc, "--pipe", self.pipe, "--log", self.log],
                cwd=self.dir, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise LinphoneError(f"linphone {self.user} exited ({self.proc.returncode}) at start:\n{self.output()}")
            try:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(self.socket_path)
                self.sock = s
                break
            except OSError:
                s.close()
                if time.monotonic() > deadline:
                    raise LinphoneError(f"linphone {self.user}: no control socket within {timeout}s:\n"
                                        f"{self.output()}") from None
                time.sleep(0.05)
        # Open the listening point (see the docstring): this also makes the account register.
        self.command(f"port sip {self.sip_port} {self.transport}")

    def stop(self) -> None:
        """SIGINT (the daemon's clean quit), then SIGKILL if it lingers; the socket file is removed."""
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            try:
                os.kill(proc.pid, signal.SIGINT)
                proc.wait(4)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(5)
            except ProcessLookupError:
                pass
        try:
            os.unlink(self.socket_path)
        except FileNotFoundError:
            pass

    def read_log(self) -> str:
        try:
            with open(self.log, encoding="utf-8", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def output(self, tail: int = 3000) -> str:
        """The interesting end of the log: SIP messages and errors, not the codec chatter."""
        lines = [ln for ln in self.read_log().splitlines()
                 if "alsa" not in ln and "Codec " not in ln and "codec " not in ln]
        return "\n".join(lines)[-tail:]

    # --- protocol ---

    def command(self, line: str, timeout: float = 5.0, check: bool = True) -> dict[str, str]:
        """Send one command line; its answer's ``Key: value`` fields (``Status`` included)."""
        assert self.sock is not None, "linphone is not started"
        self.sock.sendall(line.encode() + b"\n")
        deadline = time.monotonic() + timeout
        data = b""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LinphoneError(f"linphone {self.user}: no answer to {line!r} within {timeout}s:\n{self.output()}")
            # One answer is one write; once some of it is here, a short quiet spell ends it.
            self.sock.settimeout(remaining if not data else 0.05)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                if data:
                    break
                continue
            if not chunk:
                raise LinphoneError(f"linphone {self.user} closed its socket ({line!r}):\n{self.output()}")
            data += chunk
        text = data.decode(errors="replace")
        fields = parse_block(text)
        fields["_text"] = text
        if check and fields.get("Status") != "Ok":
            raise LinphoneError(f"linphone {self.user}: {line!r} failed: {text.strip()}")
        return fields

    def _pop_all(self) -> None:
        while True:
            ans = self.command("pop-event")
            text = ans["_text"]
            if "Event-type:" in text:
                ev = parse_block(text[text.index("Event-type:"):])
                self.events.append(ev)
                self._pending.append(ev)
            if ans.get("Size", "0") == "0":
                return

    def wait_event(self, type_: str, timeout: float = 10.0, **fields: str) -> dict[str, str]:
        """The first pending event of ``Event-type`` ``type_`` whose fields equal ``fields``
        (``Event="LinphoneCallConnected"``, ``Tone="5"``...)."""
        deadline = time.monotonic() + timeout
        while True:
            self._pop_all()
            for i, ev in enumerate(self._pending):
                if ev.get("Event-type") == type_ and all(ev.get(k) == v for k, v in fields.items()):
                    del self._pending[i]
                    return ev
            if time.monotonic() > deadline:
                seen = [(e.get("Event-type"), e.get("Event") or e.get("Tone"), e.get("Id")) for e in self.events]
                raise LinphoneError(f"linphone {self.user}: no {type_} {fields} within {timeout}s; events: {seen}\n"
                                    f"{self.output()}")
            time.sleep(0.05)

    def wait_call_state(self, state: str, timeout: float = 10.0, call: str | None = None) -> str:
        """Wait for ``Linphone<state>`` (e.g. "CallStreamsRunning"); the call's id."""
        fields = {"Event": f"Linphone{state}"}
        if call is not None:
            fields["Id"] = call
        return self.wait_event("call-state-changed", timeout, **fields)["Id"]

    def seen_states(self, call: str | None = None) -> list[str]:
        self._pop_all()
        return [e.get("Event", "") for e in self.events
                if e.get("Event-type") == "call-state-changed" and (call is None or e.get("Id") == call)]

    def tones(self) -> str:
        """Every DTMF digit received so far, in order."""
        self._pop_all()
        return "".join(e.get("Tone", "") for e in self.events if e.get("Event-type") == "receiving-tone")

    # --- conveniences ---

    def wait_registered(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            state = self.command("register-status ALL").get("State")
            if state == "LinphoneRegistrationOk":
                return
            if time.monotonic() > deadline:
                raise LinphoneError(f"linphone {self.user} not registered within {timeout}s ({state}):\n"
                                    f"{self.output()}")
            time.sleep(0.1)

    def dial(self, uri: str) -> str:
        return self.command(f"call {uri}")["Id"]

    def play(self, call: str) -> None:
        """Start the tone file as this call's audio source (again after a re-INVITE)."""
        self.command(f"incall-player-start {self.tone} {call}")

    def rtp_stats(self) -> list[tuple[int, int]]:
        """(sent, received) RTP packets of each audio stream stopped so far, from oRTP's log summary::

            ortp-message-             AUDIO SESSION'S RTP STATISTICS
            ortp-message-----------------------------------------------
            ortp-message-sent                                104 packets
            ...
            ortp-message-received                            118 packets
        """
        return [(int(s), int(r)) for s, r in re.findall(
            r"AUDIO SESSION'S RTP STATISTICS.*?-sent\s+(\d+) packets.*?-received\s+(\d+) packets",
            self.read_log(), re.S)]
