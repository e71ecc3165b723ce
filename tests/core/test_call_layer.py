"""The call layer's seams: a leg kind that is not SIP, the media policy every offer and answer crosses,
rerouting, and the checks on hook objects. A SIP phone calls through the real core on a Clock."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from minisip.api import (
    CONTINUE,
    LegDestination,
    LegRequest,
    LegResponse,
    MediaRefused,
    Reroute,
    Route,
    RouteDecision,
)
from minisip.core.hooks import HookError
from minisip.interfaces import ICallRouter, ILeg, ILegFactory, IMediaPolicy
from minisip.sip.message import Response
from tests.core.fakes import PBX, requests, sdp, statuses
from tests.core.test_call import CallTestCase

SDP_A = sdp("10.0.0.1", 4000)
SDP_ROOM = sdp("10.9.9.9", 7000)


def rewritten(data: bytes) -> bytes:
    """What the fake relay puts in SDP: its own address instead of the phone's."""
    for host in (b"10.0.0.1", b"10.0.0.2", b"10.9.9.9"):
        data = data.replace(host, b"192.0.2.1")
    return data


@implementer(ILeg)
class FakeLeg:
    """A leg of a made-up kind (a room, a browser): records what the call layer asks of it."""

    kind = "fake"

    def __init__(self, call: Any, destination: Any) -> None:
        self.call = call
        self.destination = destination
        self.description = f"fake {destination.target}"
        self.events: list[tuple[str, Any]] = []
        self.pending: list[tuple[LegRequest, Any]] = []

    def start(self, sdp: bytes) -> None:
        self.events.append(("start", sdp))

    def cancel(self) -> None:
        self.events.append(("cancel", None))
        self.call.leg_failed(self, 487, "Request Terminated")

    def progress(self, status: int, sdp: bytes) -> None:
        raise AssertionError("a B-leg is never asked to progress")

    def answer(self, sdp: bytes) -> None:
        raise AssertionError("a B-leg is never asked to answer")

    def reject(self, status: int, reason: str | None) -> None:
        raise AssertionError("a B-leg is never rejected")

    def hangup(self, cause: str) -> None:
        self.events.append(("hangup", cause))

    def send_request(self, request: LegRequest, on_final: Any) -> Any:
        self.events.append(("request", request))
        self.pending.append((request, on_final))
        return _Handle()

    def ack(self, sdp: bytes) -> None:
        self.events.append(("ack", sdp))

    def probe(self) -> defer.Deferred:
        return defer.succeed(True)

    def close(self) -> None:
        self.events.append(("close", None))


class _Handle:
    done = False

    def cancel(self) -> None:
        pass


@implementer(ILegFactory)
class FakeFactory:
    def __init__(self) -> None:
        self.legs: list[FakeLeg] = []

    def make_leg(self, call: Any, destination: Any) -> FakeLeg:
        leg = FakeLeg(call, destination)
        self.legs.append(leg)
        return leg


@implementer(IMediaPolicy)
class RecordingMedia:
    """Rewrites every SDP (as a relay would) and records each call of the seam; can refuse or wait."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str]] = []
        self.refuse: dict[str, MediaRefused] = {}
        self.hold: dict[str, defer.Deferred] = {}

    @staticmethod
    def _name(leg: Any) -> str:
        return leg.kind

    def _step(self, op: str, from_leg: Any, to_leg: Any, data: bytes) -> Any:
        self.seen.append((op, self._name(from_leg), self._name(to_leg)))
        if op in self.refuse:
            raise self.refuse.pop(op)
        if op in self.hold:
            d = self.hold.pop(op)
            d.addCallback(lambda _: rewritten(data))
            return d
        return rewritten(data)

    def offer(self, call: Any, from_leg: Any, to_leg: Any, sdp: bytes) -> Any:
        return self._step("offer", from_leg, to_leg, sdp)

    def answer(self, call: Any, from_leg: Any, to_leg: Any, sdp: bytes) -> Any:
        return self._step("answer", from_leg, to_leg, sdp)

    def leg_gone(self, call: Any, leg: Any) -> None:
        self.seen.append(("leg_gone", self._name(leg), ""))

    def call_ended(self, call: Any) -> None:
        self.seen.append(("call_ended", call.id, ""))


@implementer(ICallRouter)
class ToFake:
    """Calls to 900 go to the fake leg kind."""

    def route(self, call: Any) -> RouteDecision:
        if call.callee == "900":
            return Route((LegDestination("fake", "900"),))
        return CONTINUE


class CallLayerTestCase(CallTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.factory = FakeFactory()
        self.media = RecordingMedia()
        hooks = self.pbx.core.hooks.for_owner("test.fake")
        hooks.add_leg_factory("fake", self.factory)
        hooks.add_router(ToFake(), priority=10)
        hooks.set_media_policy(self.media)

    def finals(self, status: int | None = None) -> list[Response]:
        return [m for m in self.alice.inbox() if isinstance(m, Response) and m.status >= 200
                and (status is None or m.status == status)]

    def assertClean(self) -> None:
        self.pbx.advance(64)
        self.assertEqual(self.pbx.leftovers(), {})

    def last_cause(self) -> str:
        return self.pbx.records()[-1].cause


class FakeLegTests(CallLayerTestCase):
    def answered(self) -> tuple[Any, FakeLeg]:
        a = self.alice.call("900", SDP_A)
        (leg,) = self.factory.legs
        self.assertEqual(leg.events, [("start", rewritten(SDP_A))])
        self.assertEqual(self.media.seen, [("offer", "sip", "fake")])
        leg.call.leg_progress(leg, 180, b"")
        self.assertIn(180, statuses(self.alice.inbox()))
        leg.call.leg_answered(leg, SDP_ROOM)
        (ok,) = self.finals(200)
        self.assertEqual(ok.body, rewritten(SDP_ROOM))
        self.assertEqual(self.media.seen[-1], ("answer", "fake", "sip"))
        a.ack()
        self.assertEqual(leg.events[-1], ("ack", b""))
        return a, leg

    def test_offer_answer_hold_and_end(self) -> None:
        a, leg = self.answered()
        # hold: the phone's re-INVITE is a re-offer reaching the fake leg through the seam
        a.send_invite(sdp("10.0.0.1", 4000, "sendonly", version=2))
        (req, on_final) = leg.pending.pop()
        self.assertEqual(req.method, "INVITE")
        self.assertIn(b"a=sendonly", req.body)
        self.assertIn(b"192.0.2.1", req.body)
        self.assertEqual(self.media.seen[-1], ("offer", "sip", "fake"))
        on_final(LegResponse(200, "OK", sdp("10.9.9.9", 7000, "recvonly"), "application/sdp"))
        (ok,) = self.finals(200)
        self.assertIn(b"a=recvonly", ok.body)
        self.assertNotIn(b"10.9.9.9", ok.body)
        self.assertEqual(self.media.seen[-1], ("answer", "fake", "sip"))
        a.ack()
        # resume, then the caller hangs up
        a.send_invite(sdp("10.0.0.1", 4000, "sendrecv", version=3))
        (req, on_final) = leg.pending.pop()
        self.assertIn(b"a=sendrecv", req.body)
        on_final(LegResponse(200, "OK", SDP_ROOM, "application/sdp"))
        self.assertEqual(len(self.finals(200)), 1)
        a.ack()
        a.bye()
        self.assertEqual(statuses(self.alice.inbox()), [200])
        self.assertEqual(leg.events[-2:], [("hangup", "other side hung up"), ("close", None)])
        self.assertIn(("call_ended", leg.call.id, ""), self.media.seen)
        self.assertEqual(self.last_cause(), "normal")
        self.assertClean()

    def test_the_fake_leg_hangs_up(self) -> None:
        _, leg = self.answered()
        leg.call.leg_hungup(leg, "room closed")
        (bye,) = requests(self.alice.inbox(), "BYE")
        self.alice.reply(bye, 200)
        self.assertEqual(self.last_cause(), "normal")
        self.assertClean()

    def test_info_and_other_requests_reach_the_leg(self) -> None:
        a, leg = self.answered()
        a.request("INFO", b"Signal=5\r\nDuration=160\r\n", "application/dtmf-relay")
        (req, on_final) = leg.pending.pop()
        self.assertEqual((req.method, req.content_type), ("INFO", "application/dtmf-relay"))
        self.assertEqual(req.body, b"Signal=5\r\nDuration=160\r\n")
        self.assertEqual(len(self.media.seen), 2)   # no SDP: the seam is not asked
        on_final(LegResponse(200, "OK"))
        self.assertEqual(statuses(self.alice.inbox()), [200])

    def test_policy_refuses_the_offer_488(self) -> None:
        self.media.refuse["offer"] = MediaRefused(488, "Not Acceptable Here")
        self.alice.call("900", SDP_A)
        (fail,) = self.finals()
        self.assertEqual(fail.status, 488)
        (leg,) = self.factory.legs
        self.assertEqual([e for e, _ in leg.events], ["close"])   # never started
        self.assertEqual(self.last_cause(), "failed 488")
        self.assertClean()

    def test_policy_refuses_the_answer_503(self) -> None:
        self.media.refuse["answer"] = MediaRefused(503, "Service Unavailable")
        self.alice.call("900", SDP_A)
        (leg,) = self.factory.legs
        leg.call.leg_answered(leg, SDP_ROOM)
        (fail,) = self.finals()
        self.assertEqual(fail.status, 503)
        self.assertIn(("hangup", "media refused"), leg.events)
        self.assertEqual(self.last_cause(), "failed 503")
        self.assertClean()

    def test_refused_reoffer_keeps_the_call(self) -> None:
        a, leg = self.answered()
        self.media.refuse["offer"] = MediaRefused(488, "Not Acceptable Here")
        a.send_invite(sdp("10.0.0.1", 4000, "sendonly", version=2))
        (fail,) = self.finals()
        self.assertEqual(fail.status, 488)
        self.assertEqual(leg.pending, [])
        self.assertEqual(leg.call.state, "answered")
        a.bye()
        self.assertEqual(self.last_cause(), "normal")

    def test_policy_answering_later(self) -> None:
        """A policy may return a Deferred (a relay allocating ports): the leg starts when it fires."""
        d: defer.Deferred = defer.Deferred()
        self.media.hold["offer"] = d
        self.alice.call("900", SDP_A)
        (leg,) = self.factory.legs
        self.assertEqual(leg.events, [])
        d.callback(None)
        self.assertEqual(leg.events, [("start", rewritten(SDP_A))])

    def test_caller_cancels_while_the_policy_works(self) -> None:
        d: defer.Deferred = defer.Deferred()
        self.media.hold["offer"] = d
        a = self.alice.call("900", SDP_A)
        a.cancel()
        self.assertIn(487, statuses(self.alice.inbox()))
        d.callback(None)
        (leg,) = self.factory.legs
        self.assertNotIn("start", [e for e, _ in leg.events])
        self.assertIn(("leg_gone", "fake", ""), self.media.seen)
        self.assertEqual(self.last_cause(), "cancelled")
        self.assertClean()

    def test_sip_forks_tell_the_policy_when_they_lose(self) -> None:
        bob2 = self.pbx.phone("200", "10.0.0.3", 5070)
        bob2.register()
        a = self.alice.call("200", SDP_A)
        (b1,) = self.bob.incoming()
        (b2,) = bob2.incoming()
        b2.respond(180)
        b1.respond(200, sdp("10.0.0.2", 5000))
        a.ack()
        (cancel,) = requests(bob2.inbox(), "CANCEL")
        bob2.reply(cancel, 200)
        b2.respond(487)
        self.assertEqual([s for s in self.media.seen if s[0] == "leg_gone"], [("leg_gone", "sip", "")])


class MultipartTests(CallLayerTestCase):
    def test_sdp_in_multipart_reaches_the_seam_and_the_other_parts_go_on(self) -> None:
        body = (b"--xyz\r\nContent-Type: application/sdp\r\n\r\n" + SDP_A +
                b"\r\n--xyz\r\nContent-Type: application/isup\r\n\r\nISUP\r\n--xyz--\r\n")
        self.alice.call("200", body, ctype='multipart/mixed;boundary="xyz"')
        (b,) = self.bob.incoming()
        inv = b.invite
        assert inv is not None
        self.assertEqual(inv.get("content-type"), 'multipart/mixed;boundary="xyz"')
        self.assertEqual(inv.body, rewritten(body))
        self.assertIn(b"ISUP", inv.body)
        self.assertEqual(self.media.seen, [("offer", "sip", "sip")])


class MaxForwardsTests(CallLayerTestCase):
    def test_in_dialog_max_forwards(self) -> None:
        """RFC 3261 16.3: an in-dialog request with Max-Forwards 0 gets 483; others go on with one less."""
        a = self.alice.call("200", SDP_A)
        (b,) = self.bob.incoming()
        b.respond(200, sdp("10.0.0.2", 5000))
        a.ack()
        self.alice.inbox()
        self.bob.inbox()
        a.request("INFO", b"", None, max_forwards=0)
        self.assertEqual(statuses(self.alice.inbox()), [483])
        self.assertEqual(requests(self.bob.inbox(), "INFO"), [])
        a.request("INFO", b"", None, max_forwards=7)
        (info,) = requests(self.bob.inbox(), "INFO")
        self.assertEqual(info.get("max-forwards"), "6")


class RerouteTests(CallLayerTestCase):
    def test_forward_to_another_number(self) -> None:
        @implementer(ICallRouter)
        class Forward:
            def route(self, call: Any) -> RouteDecision:
                return Reroute("200", "unconditional forwarding") if call.callee == "300" else CONTINUE

        self.pbx.core.hooks.for_owner("test.fwd").add_router(Forward(), priority=5)
        a = self.alice.call("300", SDP_A)
        (b,) = self.bob.incoming()
        b.respond(200, sdp("10.0.0.2", 5000))
        self.assertEqual(len(self.finals(200)), 1)
        a.ack()
        call = next(iter(self.pbx.core.calls.calls.values()))
        self.assertEqual((call.info.dialled, call.info.callee), ("300", "200"))

    def test_a_loop_ends_with_482(self) -> None:
        @implementer(ICallRouter)
        class PingPong:
            def route(self, call: Any) -> RouteDecision:
                return Reroute({"300": "301", "301": "300"}[call.callee]) if call.callee in ("300", "301") \
                    else CONTINUE

        self.pbx.core.hooks.for_owner("test.loop").add_router(PingPong(), priority=5)
        self.alice.call("300", SDP_A)
        (fail,) = self.finals()
        self.assertEqual(fail.status, 482)
        self.assertClean()


class HookCheckTests(SynchronousTestCase):
    def test_a_router_without_route_is_refused_at_registration(self) -> None:
        class Typo:
            def rout(self, call: Any) -> RouteDecision:
                return CONTINUE

        hooks = PBX().core.hooks.for_owner("test.typo")
        e = self.assertRaises(HookError, hooks.add_router, Typo())
        self.assertIn("plugin test.typo: add_router(Typo) does not provide minisip.interfaces.ICallRouter", str(e))

    def test_one_factory_per_kind(self) -> None:
        hooks = PBX().core.hooks.for_owner("test.kind")
        hooks.add_leg_factory("room", FakeFactory())
        self.assertRaises(HookError, hooks.add_leg_factory, "room", FakeFactory())
        self.assertRaises(HookError, hooks.add_leg_factory, "contact", FakeFactory())

    def test_observers_in_priority_order(self) -> None:
        pbx = PBX()
        told: list[str] = []

        class Obs:
            def __init__(self, name: str) -> None:
                self.name = name

            def call_started(self, call: Any) -> None:
                told.append(self.name)

            def call_answered(self, call: Any) -> None:
                pass

            def call_ended(self, call: Any) -> None:
                pass

        pbx.core.hooks.for_owner("late").add_call_observer(Obs("late"), priority=200)
        pbx.core.hooks.for_owner("early").add_call_observer(Obs("early"), priority=1)
        alice = pbx.phone("100", "10.0.0.1")
        alice.register()
        alice.call("200", SDP_A)
        self.assertEqual(told, ["early", "late"])
