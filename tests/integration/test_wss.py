"""The WSS service on 127.0.0.1 with a real Autobahn client over TLS: handshake checks, frames to the
fake call layer and back, the page over HTTPS, certificates; plus the Origin allow-list on its own.
Real sockets and the real reactor (some waits are real time), so it lives with the integration tests."""

from __future__ import annotations

import json
import os
import shutil
from typing import Any

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet import defer, protocol, reactor, task
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from minisip.config import ConfigError
from minisip.transport import tls
from minisip.webrtc import mccp
from minisip.webrtc.gateway import IBrowserCalls, IBrowserPeer, UnavailableBrowserCalls
from minisip.webrtc.server import OriginPolicy, WssService, load_certificate
from tests.webrtc.fakes import FakeBrowserCalls

OFFER = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\n"
ANSWER = "v=0\r\no=minisip 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 4000 UDP/TLS/RTP/SAVPF 0\r\n"
CALL = json.dumps({"op": "call", "call": "c1", "caller": "100", "password": "pw", "callee": "101", "sdp": OFFER})


class OriginPolicyTests(SynchronousTestCase):
    """Which pages may open MCCP: by default this server's own pages and local files."""

    def test_default(self) -> None:
        policy = OriginPolicy()
        self.assertTrue(policy.allows("https://pbx.example.com:5062", "pbx.example.com:5062"))
        self.assertTrue(policy.allows("https://PBX.example.com:5062", "pbx.example.com:5062"))
        self.assertTrue(policy.allows("https://192.168.3.70", "192.168.3.70:443"))
        self.assertTrue(policy.allows("https://[::1]:5062", "[::1]:5062"))
        self.assertTrue(policy.allows("null", "pbx:5062"))
        self.assertTrue(policy.allows("", "pbx:5062"))  # not a browser
        self.assertFalse(policy.allows("https://evil.example.net", "pbx.example.com:5062"))
        self.assertFalse(policy.allows("https://pbx.example.com:8443", "pbx.example.com:5062"))
        self.assertFalse(policy.allows("http://pbx.example.com:5062", "pbx.example.com:5062"))
        self.assertFalse(policy.allows("https://pbx.example.com:5062/page", "pbx.example.com:5062"))
        self.assertFalse(policy.allows("garbage", "pbx.example.com:5062"))
        self.assertFalse(policy.allows("https://x:99999", "x:99999"))

    def test_configured(self) -> None:
        policy = OriginPolicy(["https://intranet.example.com", "http://10.0.0.5:8080"])
        self.assertTrue(policy.allows("https://intranet.example.com:443", "pbx:5062"))
        self.assertTrue(policy.allows("http://10.0.0.5:8080", "pbx:5062"))
        self.assertFalse(policy.allows("null", "pbx:5062"))
        self.assertFalse(policy.allows("https://pbx:5062", "pbx:5062"))
        self.assertTrue(OriginPolicy(["*"]).allows("https://anything.example", "pbx:5062"))

    def test_bad_entry_is_a_config_error(self) -> None:
        error = self.assertRaises(ConfigError, OriginPolicy, ["same", "intranet"])
        self.assertEqual((error.section, error.key), ("mccp", "origins"))
        self.assertIn("'intranet' is not an origin", str(error))


def make_pair(directory: str) -> tuple[str, str]:
    """A self-signed pair made by the SIP TLS code, in ``directory``/tls/."""
    return tls.ensure_certificate(directory, None, None, "127.0.0.1")


class CertificateTests(SynchronousTestCase):
    """<datadir>/wrtcCert/server.crt and server.key when present, else the SIP TLS pair; bad pairs stop start-up."""

    def setUp(self) -> None:
        self.datadir = self.mktemp()
        os.makedirs(self.datadir)
        self.wrtc = os.path.join(self.datadir, "wrtcCert")

    def put(self, cert: str | None, key: str | None) -> None:
        os.makedirs(self.wrtc, exist_ok=True)
        if cert:
            shutil.copy(cert, os.path.join(self.wrtc, "server.crt"))
        if key:
            shutil.copy(key, os.path.join(self.wrtc, "server.key"))

    def test_wrtc_pair_used(self) -> None:
        cert, key = make_pair(self.mktemp())
        self.put(cert, key)
        loaded = load_certificate(self.datadir, None, None, "127.0.0.1")
        self.assertEqual((loaded.cert_path, loaded.fallback), (os.path.join(os.path.abspath(self.wrtc), "server.crt"), False))
        self.assertIsNotNone(loaded.context_factory.getContext())

    def test_fallback_to_sip_pair(self) -> None:
        loaded = load_certificate(self.datadir, None, None, "127.0.0.1")
        self.assertTrue(loaded.fallback)
        self.assertEqual(loaded.cert_path, os.path.join(os.path.abspath(self.datadir), "tls", "server.crt"))

    def test_fallback_to_configured_sip_pair(self) -> None:
        cert, key = make_pair(self.mktemp())
        loaded = load_certificate(self.datadir, cert, key, "127.0.0.1")
        self.assertEqual((loaded.cert_path, loaded.fallback), (cert, True))

    def test_half_pair(self) -> None:
        cert, _ = make_pair(self.mktemp())
        self.put(cert, None)
        error = self.assertRaises(ConfigError, load_certificate, self.datadir, None, None, "127.0.0.1")
        self.assertIn("server.key is missing", str(error))

    def test_mismatched_pair(self) -> None:
        cert, _ = make_pair(self.mktemp())
        _, key = make_pair(self.mktemp())
        self.put(cert, key)
        error = self.assertRaises(ConfigError, load_certificate, self.datadir, None, None, "127.0.0.1")
        self.assertIn("does not match the private key", str(error))

    def test_not_pem(self) -> None:
        _, key = make_pair(self.mktemp())
        self.put(None, key)
        with open(os.path.join(self.wrtc, "server.crt"), "w") as f:
            f.write("not a certificate\n")
        self.assertRaises(ConfigError, load_certificate, self.datadir, None, None, "127.0.0.1")


class UnavailableTests(SynchronousTestCase):
    def test_refuses_with_503(self) -> None:
        class Peer:
            def __init__(self) -> None:
                self.hangups: list[tuple[str, int, str]] = []

            def hangup(self, call_id: str, status: int, reason: str) -> None:
                self.hangups.append((call_id, status, reason))

            def login_refused(self, reason: str) -> None:
                self.hangups.append(("login", 0, reason))

        peer = Peer()
        calls = UnavailableBrowserCalls()
        verifyObject(IBrowserCalls, calls)
        calls.start_call(peer, "c1", "100", "pw", "101", OFFER)  # type: ignore[arg-type]
        calls.dtmf(peer, "c1", "1", 100)  # type: ignore[arg-type]
        calls.hangup(peer, "c1", None, "bye")  # type: ignore[arg-type]
        calls.login(peer, "100", "pw")  # type: ignore[arg-type]
        calls.answer(peer, "c1", ANSWER)  # type: ignore[arg-type]
        calls.logout(peer, "100")  # type: ignore[arg-type]
        reason = "browser calls are not available on this server"
        self.assertEqual(peer.hangups, [("c1", 503, reason), ("login", 0, reason)])


# --- over the network ---


class Client(WebSocketClientProtocol):
    """Records frames; ``opened``, ``closed`` and ``next()`` let a test wait for them (bounded by the test's timeout)."""

    def __init__(self) -> None:
        super().__init__()
        self.frames: defer.DeferredQueue[dict[str, Any]] = defer.DeferredQueue()
        self.factory_opened: defer.Deferred[None] | None = None

    def onOpen(self) -> None:  # noqa: N802
        self.factory.opened.callback(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:  # noqa: N802, N803
        self.frames.put(json.loads(payload.decode("utf-8")))

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:  # noqa: N802, N803
        if not self.factory.opened.called:
            self.factory.opened.errback(ConnectionError(f"handshake failed: {reason}"))
        self.factory.closed.callback((code, reason))

    def send(self, **fields: Any) -> None:
        self.sendMessage(json.dumps(fields).encode("utf-8"))

    def next(self) -> defer.Deferred[dict[str, Any]]:
        return self.frames.get()


class Deaf(Client):
    """A client that never answers the server's pings (a browser tab frozen or gone off the network)."""

    def onPing(self, payload: bytes) -> None:  # noqa: N802
        pass


class Raw(protocol.Protocol):
    """Collects everything the server sends until it closes."""

    def connectionMade(self) -> None:  # noqa: N802
        self.data = b""
        self.transport.write(self.factory.request)

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        self.data += data

    def connectionLost(self, reason: Any) -> None:  # noqa: N802
        self.factory.done.callback(self.data)


class WssServiceTests(TestCase):
    """The service on 127.0.0.1 port 0 with the self-signed SIP pair, driven by an Autobahn client over TLS."""

    timeout = 20

    def setUp(self) -> None:
        datadir = self.mktemp()
        os.makedirs(datadir)
        self.www = os.path.join(datadir, "www")
        os.makedirs(os.path.join(self.www, "sub"))
        with open(os.path.join(self.www, "lite.html"), "w") as f:
            f.write("<!doctype html><title>lite</title>\n")
        self.gateway = FakeBrowserCalls()
        self.certificate = load_certificate(datadir, None, None, "127.0.0.1")
        self.start()

    def start(self, **options: Any) -> None:
        """(Re)start the service under test on a new port, with WssService ``options``."""
        self.service = WssService(reactor, "127.0.0.1", 0, self.certificate, self.gateway, www_dir=self.www,
                                  limits=mccp.Limits(max_frame=4096), **options)
        self.service.startService()
        self.addCleanup(self.cancel_batched_timers, self.service)
        self.addCleanup(self.service.stopService)
        self.port = self.service.listening.getHost().port
        self.same_origin = f"https://127.0.0.1:{self.port}"

    @defer.inlineCallbacks
    def connect(self, origin: str | None = "same", protocols: list[str] | None = None,
                client: type[Client] = Client) -> Any:
        if origin == "same":
            origin = self.same_origin
        factory = WebSocketClientFactory(f"wss://127.0.0.1:{self.port}/mccp", origin=origin,
                                         protocols=protocols if protocols is not None else [mccp.SUBPROTOCOL],
                                         reactor=reactor)
        factory.protocol = client
        factory.opened = defer.Deferred()
        factory.closed = defer.Deferred()
        connector = reactor.connectSSL("127.0.0.1", self.port, factory, tls.client_context_factory())
        self.addCleanup(self.ended, connector, factory.closed)
        client = yield factory.opened
        self.assertEqual(client.websocket_protocol_in_use, mccp.SUBPROTOCOL)
        client.closed = factory.closed
        return client

    @defer.inlineCallbacks
    def ended(self, connector: Any, closed: defer.Deferred[Any]) -> Any:
        """Cleanup: the connection is gone on both sides."""
        if not closed.called:
            connector.disconnect()
        yield closed
        yield task.deferLater(reactor, 0, lambda: None)  # the server side's connectionLost runs in this turn

    @defer.inlineCallbacks
    def cancel_batched_timers(self, service: WssService) -> Any:
        """Autobahn keeps its handshake and ping timeouts in buckets (txaio batched timers) whose reactor
        calls outlive the connections; once every connection is gone (one more reactor turn for the
        aborted ones), cancelling them is the only way to leave the reactor clean."""
        for _ in range(500):  # at most 5 s
            if service.factory.countConnections == 0:
                break
            yield task.deferLater(reactor, 0.01, lambda: None)
        self.assertEqual(service.factory.countConnections, 0)
        for call in reactor.getDelayedCalls():
            if call.active() and type(getattr(call.func, "__self__", None)).__name__ == "_BatchedTimer":
                call.cancel()

    def raw(self, request: bytes) -> defer.Deferred[bytes]:
        factory = protocol.ClientFactory()
        factory.protocol = Raw
        factory.request = request
        factory.done = defer.Deferred()
        connector = reactor.connectSSL("127.0.0.1", self.port, factory, tls.client_context_factory())
        self.addCleanup(connector.disconnect)
        return factory.done

    def upgrade(self, origin: str, protocol: str = mccp.SUBPROTOCOL) -> defer.Deferred[bytes]:
        return self.raw(
            f"GET /mccp HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Protocol: {protocol}\r\nOrigin: {origin}\r\n\r\n".encode()
        )

    @defer.inlineCallbacks
    def test_call_reaches_the_gateway_and_back(self) -> Any:
        client = yield self.connect()
        client.send(op="call", call="c1", caller="100", password="pw", callee="101", sdp=OFFER)
        trying = yield client.next()
        self.assertEqual(trying, {"op": "progress", "call": "c1", "state": "trying", "status": 100})
        _, peer, *args = yield self.gateway.wait("start_call")
        self.assertEqual(args, ["c1", "100", "pw", "101", OFFER])
        verifyObject(IBrowserPeer, peer)
        self.assertEqual((peer.address, peer.origin, peer.alive), ("127.0.0.1", self.same_origin, True))
        self.assertIsInstance(peer.port, int)

        peer.progress("c1", "ringing")
        self.assertEqual((yield client.next())["state"], "ringing")
        peer.answer("c1", ANSWER)
        self.assertEqual((yield client.next()), {"op": "answer", "call": "c1", "sdp": ANSWER})
        client.send(op="dtmf", call="c1", digits="5#")
        self.assertEqual((yield self.gateway.wait("dtmf"))[2:], ("c1", "5#", 100))
        client.send(op="hangup", call="c1", reason="user hung up")
        self.assertEqual((yield self.gateway.wait("hangup"))[2:], ("c1", None, "user hung up"))
        peer.hangup("c1", 200, "too late")  # stale: dropped, nothing reaches the browser
        client.send(op="dtmf", call="c1", digits="1")
        self.assertEqual((yield client.next())["code"], "unknown-call")

    @defer.inlineCallbacks
    def test_login_incoming_answer_and_close_logs_out(self) -> Any:
        """MCCP 1.1 through the server: login reaches the gateway, an incoming call rings the client, its
        answer reaches the gateway, and closing the socket hangs up and logs out."""
        self.gateway.on_login = lambda peer, user, password: (
            peer.logged_in(user) if password == "pw" else peer.login_refused("wrong number or password"))
        client = yield self.connect()
        client.send(op="login", user="102", password="nope")
        self.assertEqual((yield client.next()), {"op": "error", "code": "refused",
                                                 "reason": "wrong number or password"})
        client.send(op="login", user="102", password="pw")
        self.assertEqual((yield client.next()), {"op": "registered", "user": "102"})
        _, peer, *_ = yield self.gateway.wait("login")
        _, peer, user, password = yield self.gateway.wait("login")
        self.assertEqual((user, password), ("102", "pw"))
        self.assertTrue(peer.incoming("in-1", "101", "102", OFFER, "Alice"))
        self.assertEqual((yield client.next()), {"op": "incoming", "call": "in-1", "caller": "101",
                                                 "callee": "102", "sdp": OFFER, "name": "Alice"})
        self.assertFalse(peer.incoming("in-2", "101", "102", OFFER, ""))   # one call at a time
        client.send(op="answer", call="in-1", sdp=ANSWER)
        self.assertEqual((yield self.gateway.wait("answer"))[2:], ("in-1", ANSWER))
        client.dropConnection(abort=True)
        self.assertEqual((yield self.gateway.wait("hangup"))[2:], ("in-1", None, "connection closed"))  # answered: no status
        self.assertEqual((yield self.gateway.wait("logout"))[2:], ("102",))
        self.assertFalse(peer.incoming("in-3", "101", "102", OFFER, ""))

    @defer.inlineCallbacks
    def test_server_hangup_reaches_the_browser(self) -> Any:
        self.gateway.on_start = lambda peer, call_id: peer.hangup(call_id, 403, "Forbidden")
        client = yield self.connect()
        client.send(op="call", call="c1", caller="100", password="wrong", callee="101", sdp=OFFER)
        self.assertEqual((yield client.next())["state"], "trying")
        self.assertEqual((yield client.next()), {"op": "hangup", "call": "c1", "status": 403, "reason": "Forbidden"})

    @defer.inlineCallbacks
    def test_close_hangs_the_call_up(self) -> Any:
        client = yield self.connect()
        client.send(op="call", call="c1", caller="100", password="pw", callee="101", sdp=OFFER)
        yield self.gateway.wait("start_call")
        client.sendClose(1000)
        _, peer, *args = yield self.gateway.wait("hangup")
        self.assertEqual(args, ["c1", None, "connection closed"])
        self.assertFalse(peer.alive)
        peer.answer("c1", ANSWER)  # the call layer's late report after the close is dropped quietly
        yield client.closed

    @defer.inlineCallbacks
    def test_keepalive_by_ping(self) -> Any:
        """A browser that answers pings keeps its call; one that stops answering is closed and hung up."""
        yield self.service.stopService()
        self.start(ping_interval=1, ping_timeout=1)
        alive = yield self.connect()
        deaf = yield self.connect(client=Deaf)
        for client, call in ((alive, "a1"), (deaf, "d1")):
            client.send(op="call", call=call, caller="100", password="pw", callee="101", sdp=OFFER)
            yield client.next()
        _, _, call_id, status, reason = yield self.gateway.wait("hangup")  # within ping interval + timeout
        self.assertEqual((call_id, status, reason), ("d1", None, "connection closed"))
        yield deaf.closed
        yield task.deferLater(reactor, 2.5, lambda: None)  # more ping rounds for the live one
        self.assertEqual([r[2] for r in self.gateway.requests if r[0] == "hangup"], ["d1"])
        self.assertEqual(alive.frames.pending, [])
        alive.send(op="dtmf", call="a1", digits="1")
        self.assertEqual((yield alive.next())["code"], "wrong-state")  # the call is still there, not answered

    @defer.inlineCallbacks
    def test_null_and_absent_origin_allowed(self) -> Any:
        for origin in ("null", None):
            client = yield self.connect(origin)
            self.assertEqual(client.websocket_protocol_in_use, mccp.SUBPROTOCOL)

    @defer.inlineCallbacks
    def test_bad_origin_refused(self) -> Any:
        response = yield self.upgrade("https://evil.example.net")
        self.assertTrue(response.startswith(b"HTTP/1.1 403"), response[:80])
        with self.assertRaises(ConnectionError):
            yield self.connect("https://evil.example.net")
        self.assertEqual(self.gateway.requests, [])
        self.assertEqual(self.service.factory.connections, set())

    @defer.inlineCallbacks
    def test_subprotocol_required(self) -> Any:
        response = yield self.upgrade(self.same_origin, protocol="chat")
        self.assertTrue(response.startswith(b"HTTP/1.1 400"), response[:80])
        self.assertIn(b"mccp.v1 is required", response)

    @defer.inlineCallbacks
    def test_bad_frames(self) -> Any:
        client = yield self.connect()
        client.sendMessage(b"{not json")
        error = yield client.next()
        self.assertEqual(error["code"], "bad-json")
        client.send(op="call", call="c1", caller="100", password="pw", callee="101", sdp=OFFER)
        yield client.next()
        client.sendMessage(b"x" * 5000)  # over the 4096-byte limit of this service
        self.assertEqual((yield client.next())["code"], "too-big")
        code, _ = yield client.closed
        self.assertEqual(code, 1009)
        self.assertEqual((yield self.gateway.wait("hangup"))[2:], ("c1", None, "a frame may hold at most 4096 bytes"))

    @defer.inlineCallbacks
    def test_binary_frame_closes(self) -> Any:
        client = yield self.connect()
        client.sendMessage(b"\x00\x01", isBinary=True)
        self.assertEqual((yield client.next())["code"], "binary-frame")
        code, _ = yield client.closed
        self.assertEqual(code, 1003)

    @defer.inlineCallbacks
    def test_gateway_failure_on_login_is_a_refusal(self) -> Any:
        def broken(peer: Any, user: str, password: str) -> None:
            raise RuntimeError("boom")

        self.gateway.on_login = broken
        client = yield self.connect()
        client.send(op="login", user="102", password="pw")
        self.assertEqual((yield client.next()), {"op": "error", "code": "refused", "reason": "Server Internal Error"})
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        client.send(op="login", user="102", password="pw")     # the connection lives on and may try again
        self.assertEqual((yield client.next())["code"], "refused")
        self.flushLoggedErrors(RuntimeError)

    @defer.inlineCallbacks
    def test_gateway_failure_hangs_up_with_500(self) -> Any:
        self.gateway.fail_with = RuntimeError("boom")
        client = yield self.connect()
        client.send(op="call", call="c1", caller="100", password="pw", callee="101", sdp=OFFER)
        yield client.next()
        self.assertEqual((yield client.next()), {"op": "hangup", "call": "c1", "status": 500,
                                                 "reason": "Server Internal Error"})
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    @defer.inlineCallbacks
    def test_stop_hangs_up_both_sides(self) -> Any:
        client = yield self.connect()
        client.send(op="call", call="c1", caller="100", password="pw", callee="101", sdp=OFFER)
        yield self.gateway.wait("start_call")
        yield client.next()  # trying
        yield self.service.stopService()
        self.assertEqual((yield client.next()), {"op": "hangup", "call": "c1", "status": 503,
                                                 "reason": "server shutting down"})
        code, _ = yield client.closed
        self.assertEqual(code, 1001)
        self.assertEqual((yield self.gateway.wait("hangup"))[2:], ("c1", None, "server shutting down"))

    @defer.inlineCallbacks
    def test_page_over_https(self) -> Any:
        response = yield self.raw(b"GET /lite.html HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        head, _, body = response.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.0 200"), head[:80])
        self.assertIn(b"Content-Security-Policy: default-src 'self'", head)
        self.assertIn(b"X-Content-Type-Options: nosniff", head)
        self.assertEqual(body, b"<!doctype html><title>lite</title>\n")
        response = yield self.raw(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        self.assertTrue(response.endswith(b"<title>lite</title>\n"), response[-80:])
        for path in (b"/sub/", b"/missing.js"):
            response = yield self.raw(b"GET " + path + b" HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            self.assertTrue(response.startswith(b"HTTP/1.0 404"), response[:80])
