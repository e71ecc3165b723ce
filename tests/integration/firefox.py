"""Headless Firefox (Debian's firefox-esr) for the browser tests, driven over its Marionette protocol.

Playwright drives only its own patched Firefox builds, which it downloads (refused here); Debian ships
no geckodriver. Marionette is Firefox's own remote protocol (what geckodriver speaks to it): a TCP
socket carrying ``LENGTH:JSON`` frames, ``[0, id, command, params]`` answered by ``[1, id, error,
result]``, with WebDriver's commands (``WebDriver:NewSession``, ``Navigate``, ``ExecuteScript``...).

The profile sets what a WebRTC test on loopback needs: a fake microphone (a tone), the microphone
permission granted (with the prompt merely disabled, Firefox gathers only the default route's
address: "use only default local addresses: yes" in its ICE log, R_LOG_LEVEL=7), ICE host candidates
on 127.0.0.1 (off by default), no mDNS obfuscation, no background network traffic. Every wait is bounded; the process is ended by its PID.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from typing import Any

from tests.integration.harness import free_port, stop_process

FIREFOX = shutil.which("firefox-esr") or shutil.which("firefox")
SKIP_REASON = None if FIREFOX else "Firefox is not installed (apt-get install firefox-esr)"
if os.environ.get("MINISIP_SKIP_INTEGRATION"):
    SKIP_REASON = "MINISIP_SKIP_INTEGRATION is set"

PREFS = {
    "marionette.port": None,                        # filled in per run
    "media.navigator.streams.fake": True,           # getUserMedia gives a generated tone
    "permissions.default.microphone": 1,            # granted (not merely unprompted: with the prompt
    "permissions.default.camera": 1,                # disabled, ICE offers only the default address)
    "media.peerconnection.ice.loopback": True,      # host candidates on 127.0.0.1
    "media.peerconnection.ice.obfuscate_host_addresses": False,
    "media.peerconnection.ice.link_local": True,
    "network.captive-portal-service.enabled": False,
    "network.connectivity-service.enabled": False,
    "app.update.enabled": False,
    "app.normandy.enabled": False,
    "browser.shell.checkDefaultBrowser": False,
    "browser.startup.homepage_override.mstone": "ignore",
    "browser.newtabpage.enabled": False,
    "datareporting.policy.dataSubmissionEnabled": False,
    "toolkit.telemetry.reportingpolicy.firstRun": False,
    "extensions.update.enabled": False,
    "browser.safebrowsing.malware.enabled": False,
    "browser.safebrowsing.phishing.enabled": False,
    "remote.prefs.recommended": True,
}


class MarionetteError(AssertionError):
    pass


class Firefox:
    """One headless Firefox with a fresh profile in ``workdir``, and a Marionette session on it."""

    def __init__(self, workdir: str) -> None:
        self.profile = os.path.join(workdir, "firefox-profile")
        os.makedirs(self.profile, exist_ok=True)
        self.log_path = os.path.join(workdir, "firefox.log")
        self.port = free_port(socket.SOCK_STREAM, also_tcp=False)
        self.proc: subprocess.Popen | None = None
        self.sock: socket.socket | None = None
        self.buffer = b""
        self.next_id = 0

    def start(self, timeout: float = 60.0) -> None:
        prefs = dict(PREFS, **{"marionette.port": self.port})
        with open(os.path.join(self.profile, "user.js"), "w") as f:
            for key, value in prefs.items():
                f.write(f"user_pref({json.dumps(key)}, {json.dumps(value)});\n")
        log = open(self.log_path, "ab")
        env = dict(os.environ, MOZ_HEADLESS="1", MOZ_CRASHREPORTER_DISABLE="1")
        assert FIREFOX is not None
        self.proc = subprocess.Popen([FIREFOX, "--headless", "--marionette", "--no-remote", "--profile",
                                      self.profile, "about:blank"],
                                     stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
                break
            except OSError:
                if self.proc.poll() is not None:
                    raise MarionetteError(f"Firefox exited ({self.proc.returncode}):\n{self.output()}") from None
                if time.monotonic() > deadline:
                    raise MarionetteError(f"Marionette not listening within {timeout} s:\n{self.output()}") from None
                time.sleep(0.1)
        self.sock.settimeout(timeout)
        hello = self._read()
        if not isinstance(hello, dict) or hello.get("marionetteProtocol") != 3:
            raise MarionetteError(f"unexpected Marionette greeting {hello!r}")
        # Marionette takes the capabilities as the parameters themselves (not W3C's alwaysMatch)
        self.capabilities = self.command("WebDriver:NewSession", {"acceptInsecureCerts": True})

    def output(self, limit: int = 4000) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return f.read()[-limit:]
        except FileNotFoundError:
            return ""

    def stop(self) -> None:
        if self.sock is not None:
            try:
                self.command("WebDriver:DeleteSession", {}, timeout=5)
            except (OSError, MarionetteError):
                pass
            self.sock.close()
            self.sock = None
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None

    # -- the protocol --------------------------------------------------------------------------------

    def _read(self) -> Any:
        assert self.sock is not None
        while True:
            head, colon, rest = self.buffer.partition(b":")
            if colon and len(rest) >= int(head):
                size = int(head)
                frame, self.buffer = rest[:size], rest[size:]
                return json.loads(frame)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise MarionetteError(f"Marionette closed the connection:\n{self.output()}")
            self.buffer += chunk

    def command(self, name: str, params: dict[str, Any], timeout: float = 30.0) -> Any:
        assert self.sock is not None
        self.next_id += 1
        body = json.dumps([0, self.next_id, name, params]).encode()
        self.sock.settimeout(timeout)
        self.sock.sendall(str(len(body)).encode() + b":" + body)
        while True:
            reply = self._read()
            if isinstance(reply, list) and len(reply) == 4 and reply[0] == 1 and reply[1] == self.next_id:
                break
        _, _, error, result = reply
        if error:
            raise MarionetteError(f"{name}: {error.get('error')}: {error.get('message')}")
        return result

    # -- what the tests use --------------------------------------------------------------------------

    def navigate(self, url: str) -> None:
        self.command("WebDriver:Navigate", {"url": url})

    def evaluate(self, script: str, args: list[Any] | None = None) -> Any:
        """``script`` is a function body: ``return ...``; a returned Promise is waited for."""
        result = self.command("WebDriver:ExecuteScript", {"script": script, "args": args or []})
        return result.get("value") if isinstance(result, dict) else result

    def until(self, script: str, seconds: float, what: str) -> Any:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            value = self.evaluate(script)
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(f"no {what} within {seconds} s")
