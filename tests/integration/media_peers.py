"""Helpers for the secure-media integration tests: a minisip with ``[media]`` settings and per-extension
``media_encryption``, baresip and Linphone with media encryption, the relay's statistics from the call
records, and SIPp scenarios that carry real RTP.

Traps found while writing these (checked here):

* The call record is written off the reactor thread a moment after "ended:" is logged: poll the SQLite
  file (bounded) rather than reading it once.
* ``call_records.media`` is a JSON list with one object per relay endpoint (one per leg); an endpoint's
  ``packets_in`` is RTP received from its own phone, ``packets_out`` RTP sent to it.
"""

from __future__ import annotations

import json
import os
import re
import socket
import sqlite3
import time
from typing import Any

from tests.integration import scenarios
from tests.integration.baresip import Baresip, BaresipError, _free_sip_port
from tests.integration.harness import REPO, Minisip, free_port
from tests.integration.linphone import Linphone

PCAP = os.path.join(REPO, "tests", "data", "media", "g711a.pcap")            # /usr/share/sip-tester's
PCAP_SHORT = os.path.join(REPO, "tests", "data", "media", "g711a_short.pcap")  # its first 25 packets


class MediaMinisip(Minisip):
    """A minisip whose extensions may carry ``media_encryption``: ``extensions`` maps a number to its
    password, ``encryption`` a number to auto|none|sdes|dtls|required."""

    def __init__(self, workdir: str, extensions: dict[str, str], media: str,
                 encryption: dict[str, str] | None = None, extra: str = "") -> None:
        self.encryption = dict(encryption or {})
        # libre 1.1.0 (baresip 1.0) gives up on any challenge set but MD5 alone (see baresip.py)
        super().__init__(workdir, extensions, extra="[security]\ndigest_algorithms = MD5\n[media]\n" + media
                         + ("\n" + extra if extra else ""))

    def write_config(self, extensions: dict[str, str] | None = None) -> None:
        super().write_config(extensions)
        lines = []
        with open(self.conf) as f:
            for line in f.read().splitlines():
                lines.append(line)
                if line.startswith("[extension "):
                    number = line[len("[extension "):-1]
                    if number in self.encryption:
                        lines.append(f"media_encryption = {self.encryption[number]}")
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")

    def records(self, count: int = 1, timeout: float = 10.0) -> list[dict[str, Any]]:
        """The call records (``media`` decoded), once at least ``count`` are written."""
        path = os.path.join(self.datadir, "minisip.sqlite")
        deadline = time.monotonic() + timeout
        while True:
            rows: list[tuple[Any, ...]] = []
            try:
                db = sqlite3.connect(path)
                try:
                    rows = db.execute("SELECT call_id, caller, callee, answer_time IS NOT NULL, cause, media "
                                      "FROM call_records ORDER BY start_time").fetchall()
                finally:
                    db.close()
            except sqlite3.OperationalError:
                rows = []
            if len(rows) >= count or time.monotonic() > deadline:
                return [{"call_id": r[0], "caller": r[1], "callee": r[2], "answered": bool(r[3]), "cause": r[4],
                         "media": json.loads(r[5]) if r[5] else None} for r in rows]
            time.sleep(0.1)


def flow_problems(media: list[dict[str, Any]] | None, minimum: int) -> list[str]:
    """What is wrong with a relayed call's statistics for "audio went both ways on both legs"."""
    if not media:
        return ["no media statistics in the call record (the call was not relayed)"]
    if len(media) != 2:
        return [f"expected 2 relay endpoints, got {len(media)}"]
    problems = []
    for ep in media:
        for key in ("packets_in", "packets_out"):
            if ep[key] < minimum:
                problems.append(f"endpoint {ep['label']}: {key} = {ep[key]} < {minimum}")
        if ep.get("errors"):
            problems.append(f"endpoint {ep['label']}: {ep['errors']} errors")
    return problems


def summary(media: list[dict[str, Any]] | None) -> str:
    """The interesting counters of each endpoint, for failure messages."""
    keys = ("label", "secure", "remote_rtp", "latched_rtp", "packets_in", "packets_out", "rtcp_in", "rtcp_out",
            "dropped_spoofed", "dropped_unprotect", "dropped_not_ready", "dropped_unbridged", "srtp_auth_failures",
            "control_in", "send_errors", "errors")
    return json.dumps([{k: ep.get(k) for k in keys} for ep in media or []], indent=1)


def ports_held(low: int, high: int, host: str = "127.0.0.1") -> list[int]:
    """The ports of [low, high] that something still holds bound (UDP) on ``host``; [] when all are free."""
    held = []
    for port in range(low, high + 1):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.bind((host, port))
        except OSError:
            held.append(port)
        finally:
            s.close()
    return held


class MediaBaresip(Baresip):
    """A baresip with its ``srtp`` and ``dtls_srtp`` modules loaded and the account's ``mediaenc`` set
    (None: plain RTP; ``srtp``: SDES, plain RTP accepted too; ``srtp-mand``; ``dtls_srtp``)."""

    def __init__(self, workdir: str, user: str, password: str, server_port: int, transport: str = "udp",
                 mediaenc: str | None = None, answermode: str = "auto") -> None:
        super().__init__(workdir, user, password, server_port, transport=transport, answermode=answermode)
        self.mediaenc = mediaenc
        if mediaenc:
            config = os.path.join(self.dir, "config")
            with open(config, "a") as f:
                f.write("module\t\t\tsrtp.so\nmodule\t\t\tdtls_srtp.so\n")
            accounts = os.path.join(self.dir, "accounts")
            with open(accounts) as f:
                account = f.read().strip()
            with open(accounts, "w") as f:
                f.write(f"{account};mediaenc={mediaenc}\n")


    def start(self, timeout: float = 10.0) -> None:
        """Start; when baresip exits with 98 (EADDRINUSE: another process took its SIP or control port
        between the driver's check and the bind, which happens when other tests run alongside), retry
        twice on new ports."""
        for attempt in range(3):
            try:
                super().start(timeout)
                return
            except BaresipError:
                if attempt == 2 or self.proc is None or self.proc.returncode != 98:
                    raise
            self.proc = None
            old_sip, old_ctrl = self.sip_port, self.ctrl_port
            self.sip_port = _free_sip_port()
            self.ctrl_port = free_port(socket.SOCK_STREAM, also_tcp=False)
            config = os.path.join(self.dir, "config")
            with open(config) as f:
                text = f.read()
            text = text.replace(f"127.0.0.1:{old_sip}\n", f"127.0.0.1:{self.sip_port}\n")
            text = text.replace(f"127.0.0.1:{old_ctrl}\n", f"127.0.0.1:{self.ctrl_port}\n")
            with open(config, "w") as f:
                f.write(text)


class MediaLinphone(Linphone):
    """A linphone-daemon with ``[sip] media_encryption`` = none|srtp|dtls (mandatory when not none)."""

    def __init__(self, workdir: str, user: str, password: str, server_port: int, transport: str = "udp",
                 encryption: str = "none", cafile: str | None = None) -> None:
        super().__init__(workdir, user, password, server_port, transport=transport, cafile=cafile)
        with open(self.rc) as f:
            rc = f.read()
        rc = rc.replace("media_encryption=none", f"media_encryption={encryption}\n"
                        f"media_encryption_mandatory={int(encryption != 'none')}")
        with open(self.rc, "w") as f:
            f.write(rc)


# -- SIPp scenarios with media ---------------------------------------------------------------------------

def uac_media(pcap: str, hold_ms: int) -> str:
    """Caller (CSV: caller;[authentication ...];callee) that plays ``pcap`` once answered, then hangs up
    after ``hold_ms``."""
    body = scenarios._HEAD.format(name="uac-media") + scenarios._AUTH
    body += '  <recv response="180" optional="true"/>\n  <recv response="183" optional="true"/>\n'
    body += '  <recv response="200" rrs="true"/>\n' + scenarios._in_dialog("ACK", 2)
    body += f'  <nop><action><exec play_pcap_audio="{pcap}"/></action></nop>\n'
    body += f'  <pause milliseconds="{hold_ms}"/>\n' + scenarios._in_dialog("BYE", 3, retrans=True)
    body += '  <recv response="200" crlf="true"/>\n'
    return body + "</scenario>\n"


def uas_answer() -> str:
    """Callee answering a call (180, 200 with SDP, wait for BYE); with ``-rtp_echo`` it echoes RTP."""
    return scenarios.uas("answer")


def receiving_from(output: str) -> list[tuple[str, int]]:
    """Where a baresip's incoming RTP came from, per stream established: "stream: incoming rtp for
    'audio' established, receiving from 127.0.0.1:31102"."""
    return [(h, int(p)) for h, p in re.findall(r"receiving from ([0-9.]+):(\d+)", output)]
