"""rtpengine as the media benchmark's baseline: its userspace daemon and a minimal ng-protocol client.

The ng protocol is a UDP datagram ``COOKIE <bencoded dict>`` answered by ``COOKIE <bencoded dict>``;
offer/answer carry SDP in and rewritten SDP out, delete ends the call.
"""

from __future__ import annotations

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


def sdp(host: str, port: int) -> str:
    """A plain PCMU offer/answer for one audio stream at host:port."""
    return (f"v=0\r\no=- 1 1 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
            f"m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n")


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


def delete_call(ng: NgClient, call_id: str) -> None:
    ng.command(command="delete", **{"call-id": call_id, "from-tag": "a", "delete-delay": 0})


def start(ng_port: int, port_min: int, port_max: int, log_path: Path, threads: int = 1,
          preexec_fn: Any = None) -> subprocess.Popen[bytes]:
    """Start the userspace daemon (kernel forwarding off: --table=-1), in the foreground, logging to a file."""
    argv = [RTPENGINE, "--foreground", "--table=-1", "--interface=127.0.0.1", f"--listen-ng=127.0.0.1:{ng_port}",
            f"--port-min={port_min}", f"--port-max={port_max}", "--log-stderr", "--config-file=none",
            f"--num-threads={threads}", "--delete-delay=0", "--log-level=4"]
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
