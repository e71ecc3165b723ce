"""Browser calls through the real call layer on a Clock: a browser (a fake IBrowserPeer, what the MCCP
server gives the call layer) calls extension 101, a scripted SIP phone; media is anchored on the relay
(a fake network), and what each side notices is checked: the phone's INVITE, ringing, the SDP answer the
browser gets (what Chrome needs of it), hang-ups both ways, refusals and DTMF."""

from __future__ import annotations

import os
from typing import Any

from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from minisip.app import Server
from minisip.config import ConfigError, load_config
from minisip.core.call import Call
from minisip.interfaces import ILeg
from minisip.media.compat import DTLS_AVAILABLE
from minisip.media.dtls import local_certificate
from minisip.media.policy import MediaSettings, RelayMediaPolicy
from minisip.media.relay import MediaRelay
from minisip.sip.sdp import parse_sdp
from minisip.webrtc.calls import BrowserCalls, BrowserLeg
from minisip.webrtc.gateway import IBrowserCalls, IBrowserPeer
from tests.core.fakes import PBX, Dialog, requests, statuses
from tests.media.test_relay import FakeNet
from tests.test_service import Reactor

RELAY = "192.0.2.1"
PORTS = (30000, 30099)
PHONE_SDP = (b"v=0\r\no=- 7 1 IN IP4 10.0.0.2\r\ns=-\r\nc=IN IP4 10.0.0.2\r\nt=0 0\r\n"
             b"m=audio 5000 RTP/AVP 0 126\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:126 telephone-event/8000\r\n"
             b"a=sendrecv\r\n")


def chrome_offer() -> str:
    """An audio offer shaped like Chromium's (bundled, ICE, DTLS-SRTP, rtcp-mux, Opus first)."""
    fingerprint = local_certificate().fingerprint
    return "\r\n".join([
        "v=0", "o=- 4611731400430051336 2 IN IP4 127.0.0.1", "s=-", "t=0 0", "a=group:BUNDLE 0",
        "a=extmap-allow-mixed", "a=msid-semantic: WMS stream",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111 0 8 126", "c=IN IP4 0.0.0.0", "a=rtcp:9 IN IP4 0.0.0.0",
        "a=ice-ufrag:Chro", "a=ice-pwd:chromechromechromechrome", "a=ice-options:trickle",
        f"a=fingerprint:sha-256 {fingerprint}", "a=setup:actpass", "a=mid:0", "a=sendrecv",
        "a=msid:stream track", "a=rtcp-mux", "a=rtpmap:111 opus/48000/2", "a=rtcp-fb:111 transport-cc",
        "a=fmtp:111 minptime=10;useinbandfec=1", "a=rtpmap:0 PCMU/8000", "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:126 telephone-event/8000", "a=ssrc:1 cname:abc"]) + "\r\n"


@implementer(IBrowserPeer)
class FakePeer:
    """A browser connection: records what the call layer reports, as the page would show it."""

    def __init__(self, address: str = "10.9.9.9", port: int = 40000) -> None:
        self.address = address
        self.port = port
        self.origin = "null"
        self.alive = True
        self.reports: list[tuple[Any, ...]] = []

    def progress(self, call_id: str, state: str, sdp: str | None = None) -> None:
        self.reports.append(("progress", call_id, state, sdp))

    def answer(self, call_id: str, sdp: str) -> None:
        self.reports.append(("answer", call_id, sdp))

    def hangup(self, call_id: str, status: int, reason: str) -> None:
        self.reports.append(("hangup", call_id, status, reason))

    def logged_in(self, user: str) -> None:
        self.reports.append(("logged_in", user))

    def login_refused(self, reason: str) -> None:
        self.reports.append(("login_refused", reason))

    def incoming(self, call_id: str, caller: str, callee: str, sdp: str, name: str = "") -> bool:
        self.reports.append(("incoming", call_id, caller, callee, sdp, name))
        return self.free

    free = True     # False: the connection has a call already (the page would not ring)

    def kinds(self) -> list[str]:
        return [r[0] for r in self.reports]


class BrowserCallTestCase(SynchronousTestCase):
    # A browser's media is DTLS-SRTP: without DTLS (pyOpenSSL before 22, Ubuntu 22.04) every browser call
    # is refused with 488, which RefusalTests does not cover.
    skip = None if DTLS_AVAILABLE else "this pyOpenSSL has no DTLS (before 22.0, e.g. Ubuntu 22.04): no browser calls"

    def setUp(self) -> None:
        self.start_pbx("100", "101")
        self.phone = self.pbx.phone("101", "10.0.0.2")
        resp = self.phone.register()
        assert resp is not None and resp.status == 200

    def start_pbx(self, *extensions: str) -> None:
        """A PBX with ``extensions``, the relay's media policy on a fake network, browser calls, a peer."""
        self.pbx = PBX(extensions=extensions)
        self.net = FakeNet()
        self.relay = MediaRelay(self.pbx.clock, RELAY, PORTS, clock=self.pbx.clock, timeout=30,
                                listen_udp=self.net.listen_udp)
        settings = MediaSettings(address=RELAY, ports=PORTS, relay="auto", timeout=30)
        self.policy = RelayMediaPolicy(self.relay, settings, self.pbx.clock)
        self.pbx.core.hooks.for_owner("test.media").set_media_policy(self.policy)
        self.calls = BrowserCalls(self.pbx.core)
        self.peer = FakePeer()

    def start(self, password: str = "pw100", caller: str = "100", callee: str = "101",
              peer: FakePeer | None = None) -> Dialog | None:
        self.calls.start_call(peer or self.peer, "c1", caller, password, callee, chrome_offer())
        found = self.phone.incoming()
        return found[0] if found else None

    def answered(self) -> tuple[Dialog, str]:
        b = self.start()
        assert b is not None
        b.respond(180)
        b.respond(200, PHONE_SDP)
        (answer,) = [r for r in self.peer.reports if r[0] == "answer"]
        return b, answer[2]

    def assert_clean(self) -> None:
        self.pbx.advance(40)
        self.assertEqual(self.pbx.leftovers(), {})
        self.assertEqual(self.calls.legs, {})
        self.assertEqual(self.policy.calls, {})


class CallTests(BrowserCallTestCase):
    def test_interfaces(self) -> None:
        verifyObject(IBrowserCalls, self.calls)
        verifyObject(IBrowserPeer, self.peer)
        b = self.start()
        assert b is not None
        (leg,) = self.calls.legs.values()
        verifyObject(ILeg, leg)
        self.assertIsInstance(leg, BrowserLeg)

    def test_browser_call_rings_the_phone_with_plain_rtp_at_the_relay(self) -> None:
        b = self.start()
        assert b is not None and b.invite is not None
        self.assertIn("<sip:100@", b.invite.get("from") or "")
        self.assertTrue(str(b.invite.uri).startswith("sip:101@10.0.0.2"))
        offer = parse_sdp(b.invite.body).media[0]
        self.assertEqual((offer.proto, offer.address), ("RTP/AVP", RELAY))
        self.assertIsNone(offer.fingerprint)
        self.assertIn("0", offer.formats)
        b.respond(180)
        self.assertEqual(self.peer.reports, [("progress", "c1", "ringing", None)])

    def test_answer_reaches_the_browser_with_the_relay_in_chromes_shape(self) -> None:
        if not DTLS_AVAILABLE:
            raise self.skipTest("this pyOpenSSL has no DTLS: browsers cannot be answered")
        b, text = self.answered()
        self.assertIn(b"ACK", b"".join(r.method.encode() for r in requests(self.phone.inbox())))
        answer = parse_sdp(text.encode())
        audio = answer.media[0]
        self.assertEqual(audio.proto, "UDP/TLS/RTP/SAVPF")
        self.assertEqual(audio.address, RELAY)
        self.assertTrue(PORTS[0] <= audio.port <= PORTS[1])
        self.assertEqual(audio.mid, "0")
        self.assertEqual([(g.semantics, g.mids) for g in answer.groups], [("BUNDLE", ("0",))])
        self.assertTrue(answer.ice_lite)
        self.assertTrue(audio.ice_ufrag and audio.ice_pwd and len(audio.ice_pwd) >= 22)
        (candidate,) = audio.candidates
        self.assertEqual((candidate.address, candidate.port, candidate.type), (RELAY, audio.port, "host"))
        self.assertEqual(audio.fingerprint, ("sha-256", local_certificate().fingerprint))
        self.assertIn(audio.setup, ("active", "passive"))
        self.assertTrue(audio.rtcp_mux)
        self.assertEqual(audio.formats[0], "0")   # what the phone chose
        self.assertEqual(self.peer.kinds(), ["progress", "answer"])

    def test_browser_hangs_up(self) -> None:
        b, _ = self.answered()
        self.phone.inbox()
        self.calls.hangup(self.peer, "c1", None, "hung up")
        (bye,) = requests(self.phone.inbox(), "BYE")
        b.respond(200, req=bye)
        self.assertEqual(self.peer.kinds(), ["progress", "answer"])   # nothing more told to the browser
        (record,) = self.pbx.records()
        self.assertEqual((record.caller, record.callee, record.cause), ("100", "101", "normal"))
        self.assert_clean()

    def test_phone_hangs_up(self) -> None:
        b, _ = self.answered()
        self.phone.inbox()
        b.bye()
        self.assertEqual(statuses(self.phone.inbox()), [200])
        self.assertEqual(self.peer.reports[-1][:3], ("hangup", "c1", 200))
        self.calls.hangup(self.peer, "c1", None, "connection closed")   # the page's late hang-up: nothing
        self.assertEqual(self.peer.kinds(), ["progress", "answer", "hangup"])
        self.assert_clean()

    def test_browser_cancels_while_ringing(self) -> None:
        b = self.start()
        assert b is not None
        b.respond(180)
        self.calls.hangup(self.peer, "c1", None, "hung up")
        (cancel,) = requests(self.phone.inbox(), "CANCEL")
        b.respond(200, req=cancel)
        b.respond(487)
        self.assertEqual(self.peer.kinds(), ["progress"])
        self.assertEqual(self.pbx.records()[0].cause, "cancelled")
        self.assert_clean()

    def test_closing_the_connection_hangs_up(self) -> None:
        b, _ = self.answered()
        self.phone.inbox()
        self.peer.alive = False
        self.calls.hangup(self.peer, "c1", None, "connection closed")
        self.assertEqual(len(requests(self.phone.inbox(), "BYE")), 1)

    def test_busy_extension(self) -> None:
        b = self.start()
        assert b is not None
        b.respond(486)
        self.assertEqual(self.peer.reports, [("hangup", "c1", 486, "Busy Here")])
        self.assert_clean()

    def test_unknown_callee(self) -> None:
        self.calls.start_call(self.peer, "c1", "100", "pw100", "999", chrome_offer())
        ((kind, call_id, status, _),) = self.peer.reports
        self.assertEqual((kind, call_id, status), ("hangup", "c1", 404))
        self.assert_clean()

    def test_dtmf_reaches_the_phone_as_info(self) -> None:
        b, _ = self.answered()
        self.phone.inbox()
        self.calls.dtmf(self.peer, "c1", "5#", 120)
        infos = requests(self.phone.inbox(), "INFO")
        self.assertEqual([(i.get("content-type"), i.body) for i in infos],
                         [("application/dtmf-relay", b"Signal=5\r\nDuration=120\r\n"),
                          ("application/dtmf-relay", b"Signal=#\r\nDuration=120\r\n")])
        for info in infos:
            b.respond(200, req=info)
        self.assertEqual(self.peer.kinds(), ["progress", "answer"])

    def test_requests_from_the_phone_are_refused_and_the_call_goes_on(self) -> None:
        b, _ = self.answered()
        self.phone.inbox()
        b.request("INFO", b"Signal=1\r\nDuration=100\r\n", "application/dtmf-relay")
        self.assertEqual(statuses(self.phone.inbox()), [501])
        self.assertEqual(self.peer.kinds(), ["progress", "answer"])
        self.assertEqual(len(self.pbx.core.calls.calls), 1)

    def test_two_browsers_may_use_the_same_call_id(self) -> None:
        other = FakePeer("10.9.9.8")
        self.start()
        self.start(peer=other)
        self.assertEqual(len(self.calls.legs), 2)
        self.assertEqual(len(self.pbx.core.calls.calls), 2)


class RefusalTests(BrowserCallTestCase):
    def test_wrong_password_and_unknown_caller_get_the_same_403(self) -> None:
        self.assertIsNone(self.start(password="nope"))
        self.assertIsNone(self.start(caller="555", password="pw100"))
        self.assertEqual(self.peer.reports, [("hangup", "c1", 403, "wrong number or password")] * 2)
        self.assertEqual(self.phone.inbox(), [])
        self.assertEqual(self.pbx.core.calls.calls, {})
        self.assert_clean()

    def test_failures_ban_the_address_like_sip_digest(self) -> None:
        security = self.pbx.core.security
        for _ in range(security.max_failures):
            self.start(password="nope")
        self.assertTrue(security.is_banned(self.peer.address))
        self.assertIsNone(self.start())     # the right password from a banned address: the same 403
        self.assertEqual(self.peer.reports[-1], ("hangup", "c1", 403, "wrong number or password"))
        self.assertIsNotNone(self.start(peer=FakePeer("10.9.9.7")))   # another address is not banned

    def test_too_many_calls_at_once(self) -> None:
        self.pbx.core.calls.max_calls_per_extension = 1
        self.start()
        other = FakePeer("10.9.9.7")
        self.calls.start_call(other, "c2", "100", "pw100", "101", chrome_offer())
        self.assertEqual(other.reports, [("hangup", "c2", 486, "too many calls")])
        self.assertEqual(len(self.pbx.core.calls.calls), 1)

    def test_a_bug_starting_the_call_ends_it_with_500(self) -> None:
        def broken(*args: Any) -> None:
            raise RuntimeError("boom")

        self.patch(Call, "begin", broken)
        self.assertIsNone(self.start())
        self.assertEqual(self.peer.reports, [("hangup", "c1", 500, "Server Internal Error")])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assert_clean()

    def test_call_id_in_use_on_one_connection(self) -> None:
        self.start()
        self.start()
        self.assertEqual(self.peer.reports[-1][:3], ("hangup", "c1", 400))
        self.assertEqual(len(self.pbx.core.calls.calls), 1)




class WiringTests(SynchronousTestCase):
    """``[mccp] wss`` makes the server serve browsers (with BrowserCalls), ``[mccp] origins`` says who may."""

    def server(self, mccp: str) -> Server:
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        self.path = os.path.join(directory, "minisip.conf")
        with open(self.path, "w") as f:
            f.write(f"[server]\ndomain = 127.0.0.1\ndatadir = {directory}/data\n"
                    "[sip]\nudp = 127.0.0.1:15060\ntcp = 127.0.0.1:15060\ntls =\n"
                    f"[mccp]\n{mccp}\n[extension 100]\npassword = secret-100\n")
        server = Server(load_config(self.path, None, ("*",)), Reactor())
        self.addCleanup(server.abandon)
        server.build()
        return server

    def test_wss_service_after_the_media_relay(self) -> None:
        server = self.server("wss = 127.0.0.1:15062\norigins = https://intranet.example.com, null")
        names = [c.name for c in server.services()]
        self.assertEqual(names[names.index("media") + 1], "mccp-wss 127.0.0.1:15062")
        (wss,) = server.wss
        self.assertIsInstance(wss.factory.gateway, BrowserCalls)
        self.assertIs(wss.factory.gateway.core, server.core)
        self.assertTrue(wss.factory.origins.allows("https://intranet.example.com", "127.0.0.1:15062"))
        self.assertTrue(wss.factory.origins.allows("null", "127.0.0.1:15062"))
        self.assertFalse(wss.factory.origins.allows("https://127.0.0.1:15062", "127.0.0.1:15062"))
        wss.startService()
        self.addCleanup(wss.stopService)
        self.assertEqual(server.reactor.sslServers[0][:1], (15062,))

    def test_default_origins_same_host_and_files(self) -> None:
        (wss,) = self.server("wss = 127.0.0.1:15062").wss
        self.assertEqual(wss.factory.origins.entries, ("same", "null"))

    def test_no_wss_no_service(self) -> None:
        server = self.server("wss =")
        self.assertEqual(server.wss, [])
        self.assertNotIn("mccp", " ".join(c.name or "" for c in server.services()))

    def test_bad_origin_is_a_start_up_error(self) -> None:
        error = self.assertRaises(ConfigError, self.server, "wss = 127.0.0.1:15062\norigins = intranet")
        self.assertEqual((error.file, error.section, error.key), (self.path, "mccp", "origins"))
