"""lite.html in headless Chromium against the WSS service on 127.0.0.1, with a fake call layer.

Chromium is driven over the DevTools protocol (its WebSocket, with Autobahn's client): the page is
opened from the server (same-host Origin) or from a file (Origin null), places the call with its real
WebRTC offer, and shows what MCCP tells it. The fake call layer answers with an SDP made from the offer
(ICE-lite, a made-up fingerprint, PCMU only): signalling is complete but no media flows, which is the
media relay's job and its own tests'. Every wait is bounded; Chromium is ended by its PID.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import time
import urllib.request
from typing import Any, Callable

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet import defer, reactor, task
from twisted.trial.unittest import TestCase

from minisip.webrtc.server import WWW_DIR, WssService, load_certificate
from tests.webrtc.fakes import FakeBrowserCalls

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SKIP_REASON = None
if os.environ.get("MINISIP_SKIP_INTEGRATION"):
    SKIP_REASON = "MINISIP_SKIP_INTEGRATION is set (the Debian-packages run covers unit tests only)"
elif CHROMIUM is None:
    SKIP_REASON = "chromium is not installed (apt-get install chromium)"

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
         "--autoplay-policy=no-user-gesture-required", "--allow-loopback-in-peer-connection",
         "--ignore-certificate-errors", "--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1"]


def answer_for(offer: str) -> str:
    """An ICE-lite, DTLS-SRTP answer to a browser's audio offer that Chromium accepts (PCMU only)."""
    mid = re.search(r"^a=mid:(\S+)", offer, re.M)
    fingerprint = ":".join(f"{b:02X}" for b in secrets.token_bytes(32))
    lines = ["v=0", "o=minisip 1 1 IN IP4 127.0.0.1", "s=-", "t=0 0"]
    if mid:
        lines.append(f"a=group:BUNDLE {mid.group(1)}")
    lines += ["a=ice-lite", "m=audio 40000 UDP/TLS/RTP/SAVPF 0", "c=IN IP4 127.0.0.1"]
    if mid:
        lines.append(f"a=mid:{mid.group(1)}")
    lines += ["a=sendrecv", "a=rtcp-mux", "a=ice-ufrag:mini", "a=ice-pwd:" + "p" * 24,
              f"a=fingerprint:sha-256 {fingerprint}", "a=setup:passive", "a=rtpmap:0 PCMU/8000",
              "a=candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host"]
    return "\r\n".join(lines) + "\r\n"


def offer_for_browser() -> str:
    """An offer like the relay's toward a page (ICE-lite, DTLS-SRTP actpass, rtcp-mux, PCMU, no BUNDLE)."""
    fingerprint = ":".join(f"{b:02X}" for b in secrets.token_bytes(32))
    return "\r\n".join([
        "v=0", "o=minisip 1 1 IN IP4 127.0.0.1", "s=-", "t=0 0", "a=ice-lite",
        "m=audio 40000 UDP/TLS/RTP/SAVP 0 101", "c=IN IP4 127.0.0.1", "a=sendrecv", "a=rtcp-mux",
        "a=ice-ufrag:mini", "a=ice-pwd:" + "p" * 24, f"a=fingerprint:sha-256 {fingerprint}", "a=setup:actpass",
        "a=rtpmap:0 PCMU/8000", "a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-15",
        "a=candidate:1 1 UDP 2130706431 127.0.0.1 40000 typ host"]) + "\r\n"


class DevTools(WebSocketClientProtocol):
    """A minimal Chrome DevTools protocol client: ``call(method, **params)`` -> Deferred of the result."""

    def onOpen(self) -> None:  # noqa: N802
        self.next_id = 0
        self.pending: dict[int, defer.Deferred[Any]] = {}
        self.factory.opened.callback(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:  # noqa: N802, N803
        message = json.loads(payload)
        d = self.pending.pop(message.get("id", -1), None)
        if d is not None:
            if "error" in message:
                d.errback(RuntimeError(message["error"]))
            else:
                d.callback(message.get("result", {}))

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:  # noqa: N802, N803
        if not self.factory.opened.called:
            self.factory.opened.errback(ConnectionError(reason))
        for d in list(getattr(self, "pending", {}).values()):
            d.errback(ConnectionError("DevTools connection closed"))
        self.factory.closed.callback(None)

    def call(self, method: str, **params: Any) -> defer.Deferred[Any]:
        self.next_id += 1
        d: defer.Deferred[Any] = defer.Deferred()
        self.pending[self.next_id] = d
        self.sendMessage(json.dumps({"id": self.next_id, "method": method, "params": params}).encode())
        return d

    @defer.inlineCallbacks
    def evaluate(self, expression: str) -> Any:
        result = yield self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")


class LitePageTests(TestCase):
    """What a user sees in lite.html, and what reaches the call layer."""

    skip = SKIP_REASON
    timeout = 60

    def setUp(self) -> Any:
        datadir = self.mktemp()
        os.makedirs(datadir)
        self.gateway = FakeBrowserCalls()
        self.service = WssService(reactor, "127.0.0.1", 0, load_certificate(datadir, None, None, "127.0.0.1"),
                                  self.gateway)
        self.service.startService()
        self.addCleanup(self.cancel_batched_timers)
        self.addCleanup(self.service.stopService)
        self.port = self.service.listening.getHost().port
        self.profile = os.path.abspath(self.mktemp())
        os.makedirs(self.profile)
        return self.start_chromium()

    @defer.inlineCallbacks
    def start_chromium(self) -> Any:
        log = open(os.path.join(self.profile, "chromium.log"), "wb")
        self.addCleanup(log.close)
        self.chromium = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.addCleanup(self.stop_chromium)
        active = os.path.join(self.profile, "DevToolsActivePort")
        yield self.until(lambda: os.path.exists(active) and open(active).read().count("\n") >= 1, 20,
                         "Chromium's DevTools port")
        port = int(open(active).read().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as response:
            targets = json.load(response)
        page = next(t for t in targets if t.get("type") == "page")
        factory = WebSocketClientFactory(page["webSocketDebuggerUrl"], reactor=reactor)
        factory.protocol = DevTools
        factory.opened, factory.closed = defer.Deferred(), defer.Deferred()
        connector = reactor.connectTCP("127.0.0.1", port, factory)
        self.devtools = yield factory.opened

        @defer.inlineCallbacks
        def close_devtools() -> Any:
            if not factory.closed.called:
                self.devtools.dropConnection(abort=True)
            connector.disconnect()
            yield factory.closed

        self.addCleanup(close_devtools)

    def stop_chromium(self) -> None:
        if self.chromium.poll() is None:
            os.killpg(self.chromium.pid, signal.SIGTERM)  # the group: Chromium's own helper processes too
            try:
                self.chromium.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.chromium.pid, signal.SIGKILL)
                self.chromium.wait(timeout=10)

    @defer.inlineCallbacks
    def cancel_batched_timers(self) -> Any:
        """Autobahn's timeout buckets outlive its connections: cancel them once every connection is gone."""
        for _ in range(500):
            if self.service.factory.countConnections == 0:
                break
            yield task.deferLater(reactor, 0.01, lambda: None)
        for call in reactor.getDelayedCalls():
            if call.active() and type(getattr(call.func, "__self__", None)).__name__ == "_BatchedTimer":
                call.cancel()

    @defer.inlineCallbacks
    def until(self, condition: Callable[[], Any], seconds: float, what: str) -> Any:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            value = yield condition()
            if value:
                return value
            yield task.deferLater(reactor, 0.05, lambda: None)
        raise AssertionError(f"no {what} within {seconds} s")

    def text(self, element: str) -> Any:
        return self.devtools.evaluate(f"document.getElementById({element!r}).textContent")

    def visible(self, element: str) -> Any:
        return self.devtools.evaluate(f"!document.getElementById({element!r}).closest('[hidden]')")

    @defer.inlineCallbacks
    def status_is(self, fragment: str, seconds: float = 15) -> Any:
        @defer.inlineCallbacks
        def check() -> Any:
            text = yield self.text("status")
            return fragment in (text or "")

        try:
            yield self.until(check, seconds, f"status {fragment!r}")
        except AssertionError:
            text = yield self.text("status")
            raise AssertionError(f"the page shows {text!r}, not {fragment!r}") from None

    @defer.inlineCallbacks
    def open(self, url: str) -> Any:
        """Navigate and wait until the page's DOM is there (Page.navigate answers before it is)."""
        yield self.devtools.call("Page.navigate", url=url)
        base = url.split("?")[0]
        yield self.until(lambda: self.devtools.evaluate(
            f"location.href.startsWith({base!r}) && document.readyState !== 'loading'"), 15, f"the page {base}")

    def click(self, selector: str) -> Any:
        return self.devtools.evaluate(f"document.querySelector({selector!r}).click()")

    def page_url(self, query: str) -> str:
        return f"https://127.0.0.1:{self.port}/lite.html?{query}"

    @defer.inlineCallbacks
    def test_call_answered_dtmf_and_hangup(self) -> Any:
        def on_start(peer: Any, call_id: str) -> None:
            peer.progress(call_id, "ringing")
            self.ring = (peer, call_id)

        self.gateway.on_start = on_start
        yield self.open(self.page_url("server=127.0.0.1:%d&clr=100&pwd=secret&cld=101" % self.port))
        _, peer, call_id, caller, password, callee, offer = yield self.gateway.wait("start_call")
        self.assertEqual((caller, password, callee), ("100", "secret", "101"))
        self.assertIn("UDP/TLS/RTP/SAVPF", offer)
        self.assertIn("a=fingerprint:sha-256", offer)
        self.assertEqual(peer.origin, f"https://127.0.0.1:{self.port}")
        yield self.status_is("Ringing")
        url = yield self.devtools.evaluate("location.href")
        self.assertNotIn("pwd", url)  # the password left the address bar

        peer.answer(call_id, answer_for(offer))
        yield self.status_is("Connected")
        self.assertTrue((yield self.visible("timer")))
        self.assertTrue((yield self.visible("pad")))
        yield self.click('#pad [data-digit="5"]')
        # No telephone-event in this answer: the page sends the digit over MCCP instead of RFC 4733.
        self.assertEqual((yield self.gateway.wait("dtmf"))[2:], (call_id, "5", 100))
        yield self.click("#mute")
        self.assertEqual((yield self.devtools.evaluate("document.getElementById('mute').textContent")), "Unmute")

        yield self.click("#hangup")
        _, _, ended_call, status, reason = yield self.gateway.wait("hangup")
        self.assertEqual((ended_call, status, reason), (call_id, None, "hung up"))
        yield self.status_is("You hung up")
        self.assertTrue((yield self.visible("again")))
        self.assertFalse((yield self.visible("hangup")))

    @defer.inlineCallbacks
    def test_busy_from_a_file_page(self) -> Any:
        self.gateway.on_start = lambda peer, call_id: peer.hangup(call_id, 486, "Busy Here")
        page = "file://" + os.path.join(WWW_DIR, "lite.html")
        yield self.open(f"{page}?server=127.0.0.1:{self.port}&clr=100&pwd=x&cld=102")
        _, peer, *_ = yield self.gateway.wait("start_call")
        self.assertEqual(peer.origin, "null")
        yield self.status_is("Busy (486 Busy Here)")

    @defer.inlineCallbacks
    def test_server_hangup_after_answer(self) -> Any:
        yield self.open(self.page_url("clr=100&pwd=pw&cld=101"))  # server: the page's own host
        _, peer, call_id, *_, offer = yield self.gateway.wait("start_call")
        peer.answer(call_id, answer_for(offer))
        yield self.status_is("Connected")
        peer.hangup(call_id, 200, "remote hung up")
        yield self.status_is("Call ended: remote hung up")

    @defer.inlineCallbacks
    def test_form_remembers_all_but_the_password(self) -> Any:
        yield self.open(f"https://127.0.0.1:{self.port}/lite.html")
        yield self.until(lambda: self.visible("setup"), 10, "the form")
        server = yield self.devtools.evaluate("document.getElementById('server').value")
        self.assertEqual(server, f"127.0.0.1:{self.port}")  # served by minisip: its own address
        yield self.devtools.evaluate(
            "document.getElementById('clr').value = '100';"
            "document.getElementById('pwd').value = 'secret';"
            "document.getElementById('cld').value = '800';"
            "document.getElementById('start').click()")
        _, _, _, caller, password, callee, _ = yield self.gateway.wait("start_call")
        self.assertEqual((caller, password, callee), ("100", "secret", "800"))
        stored = yield self.devtools.evaluate("localStorage.getItem('minisip.lite')")
        self.assertEqual(json.loads(stored), {"server": f"127.0.0.1:{self.port}", "clr": "100", "cld": "800"})
        yield self.click("#hangup")
        yield self.gateway.wait("hangup")
        yield self.click("#change")
        self.assertEqual((yield self.devtools.evaluate("document.getElementById('cld').value")), "800")

    @defer.inlineCallbacks
    def test_unreachable_server(self) -> Any:
        page = "file://" + os.path.join(WWW_DIR, "lite.html")
        yield self.open(f"{page}?server=127.0.0.1:1&clr=100&pwd=x&cld=101")
        yield self.status_is("Cannot reach the server at 127.0.0.1:1")
        self.assertTrue((yield self.visible("accept")))  # the hint to accept the certificate first
        href = yield self.devtools.evaluate("document.getElementById('accept-link').href")
        self.assertEqual(href, "https://127.0.0.1:1/")
        self.assertEqual(self.gateway.requests, [])

    @defer.inlineCallbacks
    def test_without_password_the_form_asks(self) -> Any:
        yield self.open(self.page_url("clr=100&cld=101"))
        yield self.until(lambda: self.visible("setup"), 10, "the form")
        self.assertEqual((yield self.devtools.evaluate("document.activeElement.id")), "pwd")
        self.assertEqual((yield self.devtools.evaluate("document.getElementById('cld').value")), "101")
        self.assertEqual(self.gateway.requests, [])

    @defer.inlineCallbacks
    def test_wait_for_calls_answer_and_hang_up(self) -> Any:
        """Without a destination the page logs in and waits; a call rings it, Answer sends its SDP answer."""
        self.gateway.on_login = lambda peer, user, password: peer.logged_in(user)
        yield self.open(self.page_url("server=127.0.0.1:%d&clr=102&pwd=secret" % self.port))
        _, peer, user, password = yield self.gateway.wait("login")
        self.assertEqual((user, password), ("102", "secret"))
        yield self.status_is("Waiting for calls")
        self.assertEqual((yield self.text("line")), "Waiting for calls as 102")
        self.assertTrue(peer.incoming("in-1", "101", "102", offer_for_browser(), "Alice"))
        yield self.status_is("Incoming call")
        self.assertEqual((yield self.text("who")), "From Alice (101)")
        self.assertFalse((yield self.visible("stop")))
        yield self.click("#answer")
        _, _, call_id, answer = yield self.gateway.wait("answer")
        self.assertEqual(call_id, "in-1")
        self.assertIn("a=setup:active", answer)
        self.assertIn("a=fingerprint:sha-256", answer)
        self.assertIn("PCMU/8000", answer)
        yield self.status_is("Connected")
        yield self.click("#hangup")
        self.assertEqual((yield self.gateway.wait("hangup"))[2:], ("in-1", None, "hung up"))
        yield self.status_is("You hung up")
        self.assertEqual((yield self.text("line")), "Waiting for calls as 102")   # the line stays
        self.assertTrue((yield self.visible("stop")))
        self.assertTrue(peer.alive)
        yield self.click("#stop")
        _, _, user = yield self.gateway.wait("logout")
        self.assertEqual(user, "102")
        yield self.status_is("Stopped waiting for calls")

    @defer.inlineCallbacks
    def test_wait_button_decline_and_missed_call(self) -> Any:
        self.gateway.on_login = lambda peer, user, password: peer.logged_in(user)
        yield self.open(f"https://127.0.0.1:{self.port}/lite.html")
        yield self.until(lambda: self.visible("setup"), 10, "the form")
        yield self.devtools.evaluate(
            "document.getElementById('clr').value = '102';"
            "document.getElementById('pwd').value = 'secret';"
            "document.getElementById('cld').value = '';"
            "document.getElementById('wait').click()")
        _, peer, user, _ = yield self.gateway.wait("login")
        yield self.status_is("Waiting for calls")
        peer.incoming("in-1", "101", "102", offer_for_browser(), "")
        yield self.status_is("Incoming call")
        yield self.click("#decline")
        self.assertEqual((yield self.gateway.wait("hangup"))[2:], ("in-1", 603, "declined"))
        yield self.status_is("Declined the call from 101")
        peer.incoming("in-2", "101", "102", offer_for_browser(), "")
        yield self.status_is("Incoming call")
        peer.hangup("in-2", 487, "call cancelled")
        yield self.status_is("Missed call from 101")
        self.assertFalse((yield self.visible("answer")))

    @defer.inlineCallbacks
    def test_wait_with_a_wrong_password(self) -> Any:
        self.gateway.on_login = lambda peer, user, password: peer.login_refused("wrong number or password")
        yield self.open(self.page_url("clr=102&pwd=nope"))
        yield self.status_is("Refused: wrong number or password")
        self.assertTrue((yield self.visible("again")))
        self.assertEqual((yield self.text("again")), "Wait again")

    @defer.inlineCallbacks
    def test_incoming_call_without_an_offer(self) -> Any:
        """The caller made no offer: Answer sends the page's offer, the server's answer connects it."""
        self.gateway.on_login = lambda peer, user, password: peer.logged_in(user)
        yield self.open(self.page_url("clr=102&pwd=secret"))
        _, peer, *_ = yield self.gateway.wait("login")
        yield self.status_is("Waiting for calls")
        self.assertTrue(peer.incoming("in-1", "101", "102", "", ""))
        yield self.status_is("Incoming call")
        yield self.click("#answer")
        _, _, call_id, offer = yield self.gateway.wait("answer")
        self.assertEqual(call_id, "in-1")
        self.assertIn("a=setup:actpass", offer)
        yield self.status_is("Connecting")
        peer.answer("in-1", answer_for(offer))
        yield self.status_is("Connected")
        self.assertTrue((yield self.visible("mute")))
        self.assertTrue((yield self.visible("hangup")))

    @defer.inlineCallbacks
    def test_a_lost_line_logs_in_again(self) -> Any:
        """The server closed the waiting page's connection (a restart): the page logs in again by itself."""
        self.gateway.on_login = lambda peer, user, password: peer.logged_in(user)
        yield self.open(self.page_url("clr=102&pwd=secret"))
        _, peer, *_ = yield self.gateway.wait("login")
        yield self.status_is("Waiting for calls")
        peer.close()
        yield self.status_is("reconnecting")
        self.assertEqual((yield self.text("line")), "Reconnecting as 102\u2026")
        _, again, user, password = yield self.gateway.wait("login")
        self.assertIsNot(again, peer)
        self.assertEqual((user, password), ("102", "secret"))
        yield self.status_is("Waiting for calls")
        yield self.click("#stop")
        yield self.status_is("Stopped waiting for calls")
