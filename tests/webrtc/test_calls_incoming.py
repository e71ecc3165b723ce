"""Calls to a browser through the real call layer on a Clock: a browser (a FakePeer) logs in as extension
102 and a scripted SIP phone (101) calls 102. Checked as each side would notice: the page rings with the
relay's DTLS-SRTP offer, answers or declines, is cancelled; forks to 102's phone and browser alike."""

from __future__ import annotations

from typing import Any

from zope.interface.verify import verifyObject

from minisip.core.router import LegDestination, Route
from minisip.interfaces import ILeg, ILegFactory
from minisip.media.compat import DTLS_AVAILABLE
from minisip.media.dtls import local_certificate
from minisip.sip.sdp import parse_sdp
from minisip.webrtc.calls import IncomingBrowserLeg
from tests.core.fakes import Dialog, requests, statuses
from tests.webrtc.test_calls import PHONE_SDP, RELAY, BrowserCallTestCase, FakePeer


def chrome_answer(setup: str = "active") -> str:
    """An answer shaped like Chromium's to the relay's offer (ICE, DTLS-SRTP active, rtcp-mux, PCMU)."""
    fingerprint = local_certificate().fingerprint
    return "\r\n".join([
        "v=0", "o=- 4611731400430051337 2 IN IP4 127.0.0.1", "s=-", "t=0 0",
        "a=msid-semantic: WMS stream",
        "m=audio 9 UDP/TLS/RTP/SAVP 0 126", "c=IN IP4 0.0.0.0", "a=rtcp:9 IN IP4 0.0.0.0",
        "a=ice-ufrag:Chra", "a=ice-pwd:chromechromechromechrome", "a=ice-options:trickle",
        f"a=fingerprint:sha-256 {fingerprint}", f"a=setup:{setup}", "a=sendrecv",
        "a=msid:stream track", "a=rtcp-mux", "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:126 telephone-event/8000", "a=ssrc:1 cname:abc",
        "a=candidate:1 1 udp 2122260223 10.9.9.9 50000 typ host"]) + "\r\n"


class IncomingTestCase(BrowserCallTestCase):
    """101 is a phone that calls; 102 may have a phone (10.0.0.3) and browsers logged in."""

    def setUp(self) -> None:
        self.start_pbx("100", "101", "102")
        self.caller = self.pbx.phone("101", "10.0.0.2")

    def login(self, peer: FakePeer | None = None, user: str = "102", password: str = "pw102") -> FakePeer:
        peer = peer or self.peer
        self.calls.login(peer, user, password)
        return peer

    def dial(self, callee: str = "102", body: bytes = PHONE_SDP) -> Dialog:
        return self.caller.call(callee, body)

    def got(self, dlg: Dialog) -> list[int]:
        """The statuses the caller received so far."""
        self.caller.inbox()
        return statuses(dlg.responses)

    def oks(self, dlg: Dialog) -> list[Any]:
        self.caller.inbox()
        return [r for r in dlg.responses if r.status == 200]

    def incoming(self, peer: FakePeer | None = None) -> tuple[Any, ...]:
        (report,) = [r for r in (peer or self.peer).reports if r[0] == "incoming"]
        return report

    def answer(self, peer: FakePeer | None = None, setup: str = "active") -> str:
        peer = peer or self.peer
        call_id = self.incoming(peer)[1]
        self.calls.answer(peer, call_id, chrome_answer(setup))
        self.caller.inbox()     # the caller's dialog follows the 200
        return call_id

    def assert_clean(self) -> None:
        self.pbx.advance(40)
        self.assertEqual(self.pbx.leftovers(), {})
        self.assertEqual(self.calls.legs, {})
        self.assertEqual(self.policy.calls, {})


class LoginTests(IncomingTestCase):
    def test_login_accepted(self) -> None:
        self.login()
        self.assertEqual(self.peer.reports, [("logged_in", "102")])
        (dest,) = self.calls.contacts("102")
        self.assertEqual((dest.kind, dest.aor), ("browser", "102"))
        self.assertEqual(self.calls.contacts("101"), [])
        self.assertEqual(self.pbx.core.destinations("102"), [dest])

    def test_wrong_password_and_unknown_user_are_the_same_refusal(self) -> None:
        self.login(password="nope")
        self.login(user="555", password="pw102")
        self.assertEqual(self.peer.reports, [("login_refused", "wrong number or password")] * 2)
        self.assertEqual(self.calls.logins, {})

    def test_failures_ban_the_address_like_sip_digest(self) -> None:
        security = self.pbx.core.security
        for _ in range(security.max_failures):
            self.login(password="nope")
        self.assertTrue(security.is_banned(self.peer.address))
        self.login()
        self.assertEqual(self.peer.reports[-1], ("login_refused", "wrong number or password"))

    def test_logout_and_closed_connections_are_no_contacts(self) -> None:
        self.login()
        other = self.login(FakePeer("10.9.9.8"))
        other.alive = False
        self.assertEqual(len(self.calls.contacts("102")), 1)
        self.calls.logout(self.peer, "102")
        self.assertEqual(self.calls.contacts("102"), [])
        self.calls.logout(self.peer, "102")     # twice: nothing
        self.calls.logout(other, "102")
        self.assertEqual((self.calls.logins, self.calls.tokens, self.calls.by_user), ({}, {}, {}))

    def test_not_logged_in_not_registered_is_unavailable(self) -> None:
        dlg = self.dial()
        self.assertIn(480, self.got(dlg))

    def test_the_leg_factory(self) -> None:
        verifyObject(ILegFactory, self.calls)
        self.assertIs(self.pbx.core.hooks.leg_factories["browser"], self.calls)
        self.assertRaises(ValueError, self.calls.make_leg, None, LegDestination("browser", "gone", "102"))

    def test_a_failing_contact_source_is_skipped(self) -> None:
        def broken(aor: str) -> list[Any]:
            raise RuntimeError("boom")

        self.pbx.core.hooks.add_contact_source("test.broken", broken)
        self.login()
        self.assertEqual(len(self.pbx.core.destinations("102")), 1)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class IncomingCallTests(IncomingTestCase):
    skip = None if DTLS_AVAILABLE else "this pyOpenSSL has no DTLS (before 22.0): no calls to browsers"

    def test_the_page_rings_with_the_relays_dtls_offer(self) -> None:
        self.login()
        dlg = self.dial()
        self.assertIn(180, self.got(dlg))
        kind, call_id, caller, callee, sdp, name = self.incoming()
        self.assertEqual((caller, callee), ("101", "102"))
        self.assertTrue(call_id.startswith("in-"))
        offer = parse_sdp(sdp.encode())
        audio = offer.media[0]
        self.assertEqual(audio.address, RELAY)
        self.assertTrue(audio.proto.startswith("UDP/TLS/RTP/SAVP"))
        self.assertEqual(audio.fingerprint, ("sha-256", local_certificate().fingerprint))
        self.assertEqual(audio.setup, "actpass")
        self.assertTrue(offer.ice_lite and audio.ice_ufrag and audio.ice_pwd)
        self.assertTrue(audio.rtcp_mux)
        self.assertEqual(len(audio.candidates), 1)
        self.assertIn("0", audio.formats)
        (leg,) = self.calls.legs.values()
        self.assertIsInstance(leg, IncomingBrowserLeg)
        verifyObject(ILeg, leg)

    def test_answer_reaches_the_phone_with_plain_rtp_at_the_relay(self) -> None:
        self.login()
        dlg = self.dial()
        self.answer()
        (ok,) = self.oks(dlg)
        audio = parse_sdp(ok.body).media[0]
        self.assertEqual((audio.proto, audio.address), ("RTP/AVP", RELAY))
        self.assertIsNone(audio.fingerprint)
        self.assertEqual(audio.formats[0], "0")
        dlg.ack()
        (call,) = self.pbx.core.calls.calls.values()
        self.assertEqual((call.state, call.answered_by), ("answered", "102"))
        self.assertEqual(self.pbx.core.busy, {"101": 1, "102": 1})   # the caller and the browser's extension

    def test_browser_answering_passive_makes_us_the_dtls_client(self) -> None:
        self.login()
        dlg = self.dial()
        self.answer(setup="passive")
        self.assertEqual(len(self.oks(dlg)), 1)

    def test_decline_is_603_and_486_when_the_page_says_busy(self) -> None:
        self.login()
        dlg = self.dial()
        call_id = self.incoming()[1]
        self.calls.hangup(self.peer, call_id, None, "declined")
        self.assertIn(603, self.got(dlg))
        self.assertEqual(self.pbx.records()[-1].cause, "declined 603")
        self.assert_clean()
        self.peer.reports.clear()
        dlg = self.dial()
        self.calls.hangup(self.peer, self.incoming()[1], 486, "busy")
        self.assertIn(486, self.got(dlg))

    def test_a_page_in_a_call_is_busy(self) -> None:
        self.login()
        self.peer.free = False
        dlg = self.dial()
        self.assertIn(486, self.got(dlg))
        self.assert_clean()

    def test_caller_cancels_the_page_stops_ringing(self) -> None:
        self.login()
        dlg = self.dial()
        call_id = self.incoming()[1]
        dlg.cancel()
        self.assertEqual(self.peer.reports[-1], ("hangup", call_id, 487, "call cancelled"))
        self.assertIn(487, self.got(dlg))
        self.calls.answer(self.peer, call_id, chrome_answer())   # too late: nothing happens
        self.assert_clean()

    def test_no_answer_stops_the_ringing(self) -> None:
        self.login()
        dlg = self.dial()
        call_id = self.incoming()[1]
        self.pbx.advance(61)
        self.assertEqual(self.peer.reports[-1], ("hangup", call_id, 487, "call cancelled"))
        self.assertIn(480, self.got(dlg))

    def test_phone_hangs_up_after_the_answer(self) -> None:
        self.login()
        dlg = self.dial()
        call_id = self.answer()
        dlg.ack()
        dlg.bye()
        self.assertEqual(self.peer.reports[-1][:3], ("hangup", call_id, 200))
        self.assertEqual(self.pbx.records()[-1].cause, "normal")
        self.assert_clean()

    def test_browser_hangs_up_after_the_answer(self) -> None:
        self.login()
        dlg = self.dial()
        call_id = self.answer()
        dlg.ack()
        self.caller.inbox()
        self.calls.hangup(self.peer, call_id, None, "hung up")
        (bye,) = requests(self.caller.inbox(), "BYE")
        dlg.respond(200, req=bye)
        self.assertEqual(self.peer.kinds(), ["logged_in", "incoming"])
        self.assert_clean()

    def test_closing_the_socket_ends_the_call_and_logs_out(self) -> None:
        self.login()
        dlg = self.dial()
        call_id = self.answer()
        dlg.ack()
        self.caller.inbox()
        self.peer.alive = False
        self.calls.hangup(self.peer, call_id, None, "connection closed")
        self.calls.logout(self.peer, "102")
        self.assertEqual(len(requests(self.caller.inbox(), "BYE")), 1)
        self.assertEqual(self.calls.contacts("102"), [])

    def test_dtmf_from_the_page_reaches_the_caller(self) -> None:
        self.login()
        dlg = self.dial()
        call_id = self.answer()
        dlg.ack()
        self.caller.inbox()
        self.calls.dtmf(self.peer, call_id, "7", 100)
        (info,) = requests(self.caller.inbox(), "INFO")
        self.assertEqual(info.body, b"Signal=7\r\nDuration=100\r\n")

    def test_late_offer_the_page_offers_and_gets_the_callers_answer(self) -> None:
        from tests.webrtc.test_calls import chrome_offer
        self.login()
        dlg = self.dial(body=b"")
        _, call_id, _, _, sdp, _ = self.incoming()
        self.assertEqual(sdp, "")
        self.assertIn(180, self.got(dlg))
        self.calls.answer(self.peer, call_id, chrome_offer())
        (ok,) = self.oks(dlg)
        offer = parse_sdp(ok.body).media[0]
        self.assertEqual((offer.proto, offer.address), ("RTP/AVP", RELAY))     # the relay offers the caller
        self.assertEqual(self.peer.kinds(), ["logged_in", "incoming"])
        dlg.ack(PHONE_SDP)
        ((_, answered_id, answer),) = [r for r in self.peer.reports if r[0] == "answer"]
        self.assertEqual(answered_id, call_id)
        audio = parse_sdp(answer.encode()).media[0]
        self.assertEqual((audio.address, audio.proto, audio.setup), (RELAY, "UDP/TLS/RTP/SAVPF", "active"))
        self.assertEqual(audio.mid, "0")
        (call,) = self.pbx.core.calls.calls.values()
        self.assertEqual(call.state, "answered")
        dlg.bye()
        self.assert_clean()

    def test_late_offer_without_an_answer_in_the_ack_hangs_up(self) -> None:
        from tests.webrtc.test_calls import chrome_offer
        self.login()
        dlg = self.dial(body=b"")
        call_id = self.incoming()[1]
        self.calls.answer(self.peer, call_id, chrome_offer())
        self.oks(dlg)
        dlg.ack()
        self.assertEqual(self.peer.reports[-1], ("hangup", call_id, 488, "no answer to the offer"))
        self.assertEqual(len(requests(self.caller.inbox(), "BYE")), 1)


class ForkTests(IncomingTestCase):
    skip = None if DTLS_AVAILABLE else "this pyOpenSSL has no DTLS (before 22.0): no calls to browsers"

    def setUp(self) -> None:
        super().setUp()
        self.phone = self.pbx.phone("102", "10.0.0.3")
        assert (resp := self.phone.register()) is not None and resp.status == 200

    def test_phone_and_browser_ring_the_browser_answers_the_phone_is_cancelled(self) -> None:
        self.login()
        dlg = self.dial()
        (b,) = self.phone.incoming()
        b.respond(180)
        self.answer()
        (cancel,) = requests(self.phone.inbox(), "CANCEL")
        b.respond(200, req=cancel)
        b.respond(487)
        self.assertEqual(len(self.oks(dlg)), 1)
        (call,) = self.pbx.core.calls.calls.values()
        self.assertIsInstance(call.answered_leg, IncomingBrowserLeg)

    def test_the_phone_answers_the_page_stops_ringing(self) -> None:
        self.login()
        dlg = self.dial()
        (b,) = self.phone.incoming()
        call_id = self.incoming()[1]
        b.respond(200, PHONE_SDP)
        self.assertEqual(self.peer.reports[-1], ("hangup", call_id, 487, "call cancelled"))
        self.assertEqual(len(self.oks(dlg)), 1)

    def test_two_browsers_and_a_phone(self) -> None:
        self.login()
        other = self.login(FakePeer("10.9.9.8"))
        self.dial()
        self.assertEqual(len(self.phone.incoming()), 1)
        self.incoming()
        self.incoming(other)
        self.assertEqual(len(self.calls.legs), 2)

    def test_hunting_style_routes_reach_browsers(self) -> None:
        """A router that rings an extension's destinations (hunting groups do) rings its browsers too."""
        self.login()
        core = self.pbx.core

        class Group:
            def route(self, call: Any) -> Any:
                if call.callee != "600":
                    from minisip.core.router import CONTINUE
                    return CONTINUE
                return Route(tuple(core.destinations("102")), callee="102")

        core.hooks.for_owner("test.group").add_router(Group(), priority=10)
        self.dial("600")
        self.assertEqual(len(self.phone.incoming()), 1)
        self.assertEqual(self.incoming()[3], "102")


    def test_the_hunting_plugin_rings_browsers(self) -> None:
        """A hunting group whose operator is logged in only in a browser rings that browser (the plugin
        asks ServerAPI.destinations, which has the extension's browsers after its phones)."""
        from minisip.api import ServerAPI
        from tests.plugins.test_hunting import factory
        self.login()
        api = ServerAPI(self.pbx.core, self.pbx.store, factory.name)
        config = factory.parse_config({"hunt 600": {"operators": "100 102"}})
        factory.make_feature(api, config).register(self.pbx.core.hooks.for_owner(factory.name))
        self.assertEqual([d.kind for d in api.destinations("102")][-1:], ["browser"])
        self.dial("600")
        self.assertEqual(self.incoming()[3], "102")     # 100 has nobody: skipped; 102's browser rings


def hold_sdp(direction: str, version: int) -> bytes:
    return PHONE_SDP.replace(b"a=sendrecv", f"a={direction}".encode()).replace(b" 7 1 ", f" 7 {version} ".encode())


class ReofferTests(IncomingTestCase):
    """Re-offers from the SIP side (hold, resume) are answered by the relay for the browser: the page is
    not asked, its DTLS-SRTP stays as it is, and the phone gets the mirrored direction."""

    skip = None if DTLS_AVAILABLE else "this pyOpenSSL has no DTLS (before 22.0): no calls to browsers"

    def connected(self) -> Dialog:
        self.login()
        dlg = self.dial()
        self.answer()
        dlg.ack()
        self.caller.inbox()
        return dlg

    def reinvite(self, dlg: Dialog, direction: str, version: int) -> Any:
        dlg.send_invite(hold_sdp(direction, version))
        oks = [m for m in self.caller.inbox() if getattr(m, "status", 0) >= 200]
        dlg.ack()
        return oks

    def test_hold_and_resume_toward_a_browser_that_was_called(self) -> None:
        dlg = self.connected()
        (ok,) = self.reinvite(dlg, "sendonly", 2)
        self.assertEqual(ok.status, 200)
        audio = parse_sdp(ok.body).media[0]
        self.assertEqual((audio.proto, audio.address, audio.direction), ("RTP/AVP", RELAY, "recvonly"))
        self.assertIsNone(audio.fingerprint)
        (ok,) = self.reinvite(dlg, "sendrecv", 3)
        self.assertEqual(parse_sdp(ok.body).media[0].direction, "sendrecv")
        self.assertEqual(self.peer.kinds(), ["logged_in", "incoming"])    # the page heard nothing
        (call,) = self.pbx.core.calls.calls.values()
        self.assertEqual(call.state, "answered")

    def test_reinvite_without_sdp_is_refused_and_the_call_goes_on(self) -> None:
        dlg = self.connected()
        dlg.send_invite(b"")
        self.assertIn(501, statuses(self.caller.inbox()))
        self.assertEqual(len(self.pbx.core.calls.calls), 1)

    def test_hold_toward_a_browser_that_called(self) -> None:
        """The browser placed the call (its offer had actpass): the relay answers with the role it took."""
        from tests.webrtc.test_calls import chrome_offer
        phone = self.pbx.phone("102", "10.0.0.3")
        assert (resp := phone.register()) is not None and resp.status == 200
        self.calls.start_call(self.peer, "c1", "100", "pw100", "102", chrome_offer())
        (b,) = phone.incoming()
        b.respond(200, PHONE_SDP)
        phone.inbox()
        b.send_invite(hold_sdp("inactive", 2))
        oks = [m for m in phone.inbox() if getattr(m, "status", 0) >= 200]
        self.assertEqual([m.status for m in oks], [200])
        self.assertEqual(parse_sdp(oks[0].body).media[0].direction, "inactive")
        b.ack()
        self.assertEqual(self.peer.kinds(), ["answer"])      # the page heard nothing of the hold


class ClosedWhileRingingTests(IncomingTestCase):
    skip = None if DTLS_AVAILABLE else "this pyOpenSSL has no DTLS (before 22.0): no calls to browsers"

    def test_a_page_gone_while_ringing_is_unavailable_not_declined(self) -> None:
        self.login()
        dlg = self.dial()
        call_id = self.incoming()[1]
        self.peer.alive = False
        self.calls.hangup(self.peer, call_id, 480, "connection closed")   # what the session reports
        self.calls.logout(self.peer, "102")
        self.assertIn(480, self.got(dlg))
        self.assertEqual(self.pbx.records()[-1].cause, "failed 480")
        self.assert_clean()


class BrowserToBrowserTests(IncomingTestCase):
    skip = None if DTLS_AVAILABLE else "this pyOpenSSL has no DTLS (before 22.0): no calls to browsers"

    def test_a_browser_calls_a_browser_through_the_relay(self) -> None:
        from tests.webrtc.test_calls import chrome_offer
        self.login()
        caller = FakePeer("10.9.9.1")
        self.calls.start_call(caller, "c1", "100", "pw100", "102", chrome_offer())
        self.assertEqual(caller.reports, [("progress", "c1", "ringing", None)])
        _, call_id, who, callee, sdp, _ = self.incoming()
        self.assertEqual((who, callee), ("100", "102"))
        offer = parse_sdp(sdp.encode()).media[0]
        self.assertEqual((offer.address, offer.setup), (RELAY, "actpass"))
        self.calls.answer(self.peer, call_id, chrome_answer())
        ((kind, _, answer),) = [r for r in caller.reports if r[0] == "answer"]
        audio = parse_sdp(answer.encode()).media[0]
        self.assertEqual((audio.address, audio.proto), (RELAY, "UDP/TLS/RTP/SAVPF"))
        self.assertNotEqual(audio.port, offer.port)        # one relay endpoint per browser
        self.calls.hangup(caller, "c1", None, "hung up")
        self.assertEqual(self.peer.reports[-1][:3], ("hangup", call_id, 200))
        self.assert_clean()
