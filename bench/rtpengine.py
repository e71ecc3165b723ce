"""rtpengine as the media benchmark's baseline: its userspace daemon and a minimal ng-protocol client.

The ng protocol is a UDP datagram ``COOKIE <bencoded dict>`` answered by ``COOKIE <bencoded dict>``;
offer/answer carry SDP in and rewritten SDP out, delete ends the call.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

RTPENGINE = shutil.which("rtpengine") or "/usr/bin/rtpengine"


def bencode(value: Any) -> bytes:
    """Encode str/bytes/int/list/dict (keys sorted, as bencode requires)."""
    if isinstance(value, str):
        value = value.encode()
    if isinstance(value, bytes):
        return str(len(value)).encode() + b":" + value
    if isinstance(value, bool) or not isinstance(value, (int, list, tuple, dict)):
        raise TypeError(f"cannot bencode {type(value).__name__}")
    if isinstance(value, int):
        return b"i%de" % value
    if isinstance(value, (list, tuple)):
        return b"l" + b"".join(bencode(item) for item in value) + b"e"
    items = sorted((k.encode() if isinstance(k, str) else k, v) for k, v in value.items())
    return b"d" + b"".join(bencode(k) + bencode(v) for k, v in items) + b"e"


def bdecode(data: bytes) -> Any:
    """Decode one bencoded value (byte strings come back as str when they are UTF-8)."""
    value, end = _decode(data, 0)
    if end != len(data):
        raise ValueError(f"{len(data) - end} trailing bytes after the bencoded value")
    return value


def _decode(data: bytes, i: int) -> tuple[Any, int]:
    lead = data[i:i + 1]
    if lead == b"i":
        end = data.index(b"e", i)
        return int(data[i + 1:end]), end + 1
    if lead == b"l":
        items, i = [], i + 1
        while data[i:i + 1] != b"e":
            item, i = _decode(data, i)
            items.append(item)
        return items, i + 1
    if lead == b"d":
        result, i = {}, i + 1
        while data[i:i + 1] != b"e":
            key, i = _decode(data, i)
            result[key], i = _decode(data, i)
        return result, i + 1
    if lead.isdigit():
        colon = data.index(b":", i)
        size = int(data[i:colon])
        raw = data[colon + 1:colon + 1 + size]
        if len(raw) != size:
            raise ValueError("bencoded string cut short")
        try:
            return raw.decode(), colon + 1 + size
        except UnicodeDecodeError:
            return raw, colon + 1 + size
    raise ValueError(f"bad bencode at offset {i}")


class NgError(RuntimeError):
    """rtpengine refused a command or did not answer."""


class NgClient:
    """A blocking ng client over UDP (one outstanding command at a time)."""

    def __init__(self, host: str, port: int, timeout: float = 2.0) -> None:
        self.addr = (host, port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.settimeout(timeout)
        self._n = 0

    def command(self, **fields: Any) -> dict[str, Any]:
        self._n += 1
        cookie = f"{os.getpid()}_{self._n}".encode()
        self.sock.sendto(cookie + b" " + bencode(fields), self.addr)
        deadline = time.monotonic() + (self.sock.gettimeout() or 2.0)
        while True:
            try:
                data, _ = self.sock.recvfrom(65535)
            except socket.timeout:
                raise NgError(f"no answer to {fields.get('command')} within {self.sock.gettimeout()} s") from None
            got, _, body = data.partition(b" ")
            if got == cookie:
                reply = bdecode(body)
                if reply.get("result") not in ("ok", "pong"):
                    raise NgError(f"{fields.get('command')}: {reply.get('error-reason', reply)}")
                return reply
            if time.monotonic() > deadline:
                raise NgError(f"no matching answer to {fields.get('command')}")

    def ping(self) -> bool:
        try:
            return self.command(command="ping").get("result") == "pong"
        except (NgError, OSError, ValueError):
            return False

    def close(self) -> None:
        self.sock.close()


def sdp(host: str, port: int, proto: str = "RTP/AVP", extra: str = "") -> str:
    """A PCMU offer/answer for one audio stream at host:port (``extra``: more a= lines, CRLF-ended)."""
    return (f"v=0\r\no=- 1 1 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
            f"m=audio {port} {proto} 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n{extra}")


def crypto_keys(text: str) -> dict[int, tuple[str, bytes]]:
    """The a=crypto lines of an SDP: tag -> (suite, master key+salt)."""
    found = {}
    for tag, suite, inline in re.findall(r"^a=crypto:(\d+) (\S+) inline:([A-Za-z0-9+/=]+)", text, re.M):
        found[int(tag)] = (suite, base64.b64decode(inline + "=" * (-len(inline) % 4)))
    return found


def sdp_fingerprint(text: str) -> tuple[str, str]:
    match = re.search(r"^a=fingerprint:(\S+) (\S+)", text, re.M)
    if not match:
        raise NgError(f"no a=fingerprint in rtpengine's SDP: {text!r}")
    return match.group(1), match.group(2)


def sdp_port(text: str) -> int:
    match = re.search(r"^m=audio (\d+) ", text, re.M)
    if not match:
        raise NgError(f"no m=audio line in rtpengine's SDP: {text!r}")
    return int(match.group(1))


def relay_call(ng: NgClient, call_id: str, a: tuple[str, int], b: tuple[str, int]) -> tuple[int, int]:
    """Offer (from a) and answer (from b) through rtpengine; returns (port a sends to, port b sends to)."""
    offer = ng.command(command="offer", **{"call-id": call_id, "from-tag": "a", "sdp": sdp(*a), "ICE": "remove"})
    answer = ng.command(command="answer", **{"call-id": call_id, "from-tag": "a", "to-tag": "b", "sdp": sdp(*b),
                                             "ICE": "remove"})
    return sdp_port(answer["sdp"]), sdp_port(offer["sdp"])


SUITE = "AES_CM_128_HMAC_SHA1_80"
# Options that make rtpengine 10.5 decrypt and re-encrypt SDES-to-SDES calls (see relay_call_sdes): DTMF
# logging to a UDP address where nothing listens (nothing is sent: the bench's calls carry no DTMF).
RECRYPT_OPTIONS = ["--dtmf-log-dest=127.0.0.1:9"]


def relay_call_sdes(ng: NgClient, call_id: str, a: tuple[str, int], b: tuple[str, int]
                    ) -> tuple[tuple[int, int], tuple[bytes, bytes, bytes, bytes]]:
    """An SDES-SRTP call (RTP/SAVP, AES_CM_128_HMAC_SHA1_80 on both legs) through rtpengine.

    rtpengine 10.5 copies the offerer's key into its offer and the answerer's key into its answer when
    both legs use the same suite, and then passes packets through without any crypto ("SRTP
    passthrough"; newer versions have a ``recrypt`` flag, 10.5 has not and picks keys of its own only
    for a suite the offerer did not offer). Started with ``RECRYPT_OPTIONS`` (DTMF logging on),
    ``__determine_handler`` sets ``must_recrypt`` for every stream: it unprotects each packet with one
    leg's key and protects it again for the other leg, as minisip does, with the same keys on both legs.
    Returns the ports (a sends to, b sends to) and the keys (a sends with, a receives with, b sends
    with, b receives with).
    """
    a80, b80 = os.urandom(30), os.urandom(30)

    def line(tag: int, key: bytes) -> str:
        return f"a=crypto:{tag} {SUITE} inline:{base64.b64encode(key).decode()}\r\n"

    offer = ng.command(command="offer", **{"call-id": call_id, "from-tag": "a", "ICE": "remove", "DTLS": "off",
                                           "sdp": sdp(*a, "RTP/SAVP", line(1, a80))})
    offered = crypto_keys(offer["sdp"])
    tag = next((t for t, (suite, _) in sorted(offered.items()) if suite == SUITE), None)
    if tag is None:
        raise NgError(f"rtpengine offered no {SUITE}: {offer['sdp']!r}")
    answer = ng.command(command="answer", **{"call-id": call_id, "from-tag": "a", "to-tag": "b", "ICE": "remove",
                                             "sdp": sdp(*b, "RTP/SAVP", line(tag, b80))})
    answered = list(crypto_keys(answer["sdp"]).values())
    if len(answered) != 1 or answered[0][0] != SUITE:
        raise NgError(f"rtpengine answered other than one {SUITE}: {answer['sdp']!r}")
    return (sdp_port(answer["sdp"]), sdp_port(offer["sdp"])), (a80, answered[0][1], b80, offered[tag][1])


def dtls_call(ng: NgClient, call_id: str, a: tuple[str, int], b: tuple[str, int],
              client_fingerprint: tuple[str, str]) -> tuple[int, tuple[str, str]]:
    """A call from a plain RTP side a to a DTLS-SRTP side b (UDP/TLS/RTP/SAVP) whose answer says
    ``a=setup:active``: rtpengine is the DTLS server of leg b and waits for the ClientHello. Returns the
    port b's DTLS client talks to and rtpengine's fingerprint (hash name, value)."""
    offer = ng.command(command="offer", **{
        "call-id": call_id, "from-tag": "a", "ICE": "remove", "transport-protocol": "UDP/TLS/RTP/SAVP",
        "SDES": ["off"], "sdp": sdp(*a)})
    fingerprint = sdp_fingerprint(offer["sdp"])
    extra = f"a=setup:active\r\na=fingerprint:{client_fingerprint[0]} {client_fingerprint[1]}\r\n"
    ng.command(command="answer", **{"call-id": call_id, "from-tag": "a", "to-tag": "b", "ICE": "remove",
                                    "sdp": sdp(*b, "UDP/TLS/RTP/SAVP", extra)})
    return sdp_port(offer["sdp"]), fingerprint


def delete_call(ng: NgClient, call_id: str) -> None:
    ng.command(command="delete", **{"call-id": call_id, "from-tag": "a", "delete-delay": 0})


def start(ng_port: int, port_min: int, port_max: int, log_path: Path, threads: int = 1,
          preexec_fn: Any = None, extra: list[str] | None = None) -> subprocess.Popen[bytes]:
    """Start the userspace daemon (kernel forwarding off: --table=-1), in the foreground, logging to a file."""
    argv = [RTPENGINE, "--foreground", "--table=-1", "--interface=127.0.0.1", f"--listen-ng=127.0.0.1:{ng_port}",
            f"--port-min={port_min}", f"--port-max={port_max}", "--log-stderr", "--config-file=none",
            f"--num-threads={threads}", "--delete-delay=0", "--log-level=4", *(extra or [])]
    log = open(log_path, "ab")
    try:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, preexec_fn=preexec_fn)
    finally:
        log.close()


def stop(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """SIGTERM the daemon by its PID, SIGKILL after ``grace`` seconds."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(grace)
