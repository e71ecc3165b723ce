"""Calls through the B2BUA as the phones see them: forking, answer, hangup, cancel, failures, re-INVITE."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from minisip.sip.message import Request, Response
from tests.core.fakes import DOMAIN, PBX, Dialog, Phone, requests, sdp, statuses

SDP_A = sdp("10.0.0.1", 4000)
SDP_B = sdp("10.0.0.2", 5000)
SDP_C = sdp("10.0.0.3", 6000)


def responses(msgs: list, status: int | None = None) -> list[Response]:
    return [m for m in msgs if isinstance(m, Response) and (status is None or m.status == status)]


class CallTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.pbx = PBX()
        self.alice = self.pbx.phone("100", "10.0.0.1")
        self.bob = self.pbx.phone("200", "10.0.0.2")
        for p in (self.alice, self.bob):
            resp = p.register()
            assert resp is not None and resp.status == 200

    def second_phone(self) -> Phone:
        bob2 = self.pbx.phone("200", "10.0.0.3", 5070)
        resp = bob2.register()
        assert resp is not None and resp.status == 200
        return bob2

    def ring(self, body: bytes = SDP_A, **kw: object) -> tuple[Dialog, Dialog]:
        a = self.alice.call("200", body, **kw)  # type: ignore[arg-type]
        self.assertEqual(statuses(self.alice.inbox()), [100])
        (b,) = self.bob.incoming()
        b.respond(180)
        self.assertEqual(statuses(self.alice.inbox()), [180])
        return a, b

    def answered(self) -> tuple[Dialog, Dialog]:
        a, b = self.ring()
        b.respond(200, SDP_B)
        self.assertEqual(statuses(self.alice.inbox()), [200])
        self.assertEqual(len(requests(self.bob.inbox(), "ACK")), 1)
        a.ack()
        self.assertEqual(self.bob.inbox(), [])
        return a, b

    def hang_up(self, a: Dialog) -> None:
        a.bye()
        self.assertEqual(statuses(self.alice.inbox()), [200])
        (bye,) = requests(self.bob.inbox(), "BYE")
        self.bob.reply(bye, 200)

    def assertClean(self) -> None:
        self.pbx.advance(64)
        self.assertEqual(self.pbx.leftovers(), {})

    def last_record(self):  # type: ignore[no-untyped-def]
        return self.pbx.records()[-1]


class SetupTests(CallTestCase):
    def test_invite_is_challenged(self) -> None:
        self.alice.call("200", SDP_A, auth=False)
        got = self.alice.inbox()
        self.assertEqual(statuses(got), [407])
        challenges = got[0].get_all("proxy-authenticate")
        self.assertEqual(len(challenges), 1)
        self.assertIn("algorithm=MD5", challenges[0])
        self.assertEqual(self.bob.incoming(), [])
        # The 407 was ACKed: no retransmission.
        self.pbx.advance(10)
        self.assertEqual(self.alice.inbox(), [])
        self.assertClean()

    def test_forks_to_every_contact(self) -> None:
        bob2 = self.second_phone()
        self.alice.call("200", SDP_A, headers=[("X-Test", "1")])
        (b1,) = self.bob.incoming()
        (b2,) = bob2.incoming()
        assert b1.invite is not None and b2.invite is not None
        self.assertEqual(str(b1.invite.uri), "sip:200@10.0.0.2:5060")
        self.assertEqual(str(b2.invite.uri), "sip:200@10.0.0.3:5070")
        for b in (b1, b2):
            inv = b.invite
            assert inv is not None
            self.assertEqual(inv.body, SDP_A)
            self.assertEqual(inv.content_type, "application/sdp")
            self.assertEqual(inv.from_.uri.user, "100")
            self.assertEqual(inv.to.uri.user, "200")
            self.assertEqual(inv.get("max-forwards"), "69")
            self.assertIsNone(inv.get("proxy-authorization"))
        self.assertNotEqual(b1.call_id, b2.call_id)

    def test_max_forwards_decremented(self) -> None:
        self.alice.call("200", SDP_A, max_forwards=10)
        (b,) = self.bob.incoming()
        assert b.invite is not None
        self.assertEqual(b.invite.get("max-forwards"), "9")

    def test_ringing_relayed_with_one_to_tag(self) -> None:
        bob2 = self.second_phone()
        self.alice.call("200", SDP_A)
        (b1,) = self.bob.incoming()
        (b2,) = bob2.incoming()
        b1.respond(180)
        b2.respond(180)
        rings = responses(self.alice.inbox(), 180)
        self.assertEqual(len(rings), 2)
        self.assertEqual(len({r.to_tag for r in rings}), 1)
        self.assertIsNotNone(rings[0].to_tag)

    def test_early_media_relayed(self) -> None:
        self.alice.call("200", SDP_A)
        (b,) = self.bob.incoming()
        b.respond(183, SDP_B)
        (r,) = responses(self.alice.inbox(), 183)
        self.assertEqual(r.body, SDP_B)

    def test_unknown_number(self) -> None:
        self.alice.call("555", SDP_A)
        self.assertEqual(statuses(self.alice.inbox()), [404])
        rec = self.last_record()
        self.assertEqual((rec.caller, rec.callee, rec.cause, rec.answer), ("100", "555", "not-found", None))
        self.assertClean()

    def test_known_but_unregistered(self) -> None:
        self.alice.call("300", SDP_A)
        self.assertEqual(statuses(self.alice.inbox()), [480])
        self.assertClean()

    def test_phone_behind_nat_is_reached_where_it_registered_from(self) -> None:
        nat = self.pbx.phone("300", "198.51.100.7", 40000)
        resp = nat.register(contacts=["<sip:300@192.168.1.20:5060>"])
        assert resp is not None and resp.status == 200
        self.alice.call("300", SDP_A)
        (b,) = nat.incoming()
        self.assertEqual(str(b.invite.uri), "sip:300@192.168.1.20:5060")  # type: ignore[union-attr]

    def test_two_calls_at_once(self) -> None:
        carol = self.pbx.phone("300", "10.0.0.3")
        carol.register()
        dave = self.pbx.phone("100", "10.0.0.4")  # alice's second phone
        dave.register()
        a1 = self.alice.call("200", SDP_A)
        a2 = carol.call("100", SDP_C)
        (b,) = self.bob.incoming()
        (c_at_alice,) = self.alice.incoming()
        (c_at_dave,) = dave.incoming()
        b.respond(200, SDP_B)
        c_at_alice.respond(180)
        c_at_dave.respond(200, SDP_A)
        got = self.alice.inbox()
        self.assertEqual(statuses(got), [100, 200])  # alice's own call, answered by bob
        (cancel,) = requests(got, "CANCEL")  # carol's call, answered on dave
        self.alice.reply(cancel, 200)
        c_at_alice.respond(487)
        self.assertEqual(statuses(carol.inbox()), [100, 180, 200])
        a1.ack()
        a2.ack()
        self.assertEqual(len(self.pbx.core.calls.calls), 2)
        a1.bye()
        self.bob.reply(requests(self.bob.inbox(), "BYE")[0], 200)
        a2.bye()
        dave.reply(requests(dave.inbox(), "BYE")[0], 200)
        self.assertEqual(statuses(self.alice.inbox()), [200])
        self.assertEqual(statuses(carol.inbox()), [200])
        self.assertClean()

    def test_expired_registration_is_unregistered(self) -> None:
        self.pbx.advance(3601, step=100)
        self.alice.register()
        self.alice.call("200", SDP_A)
        self.assertEqual(statuses(self.alice.inbox()), [480])


class AnswerTests(CallTestCase):
    def test_first_answer_wins(self) -> None:
        bob2 = self.second_phone()
        a = self.alice.call("200", SDP_A)
        self.alice.inbox()
        (b1,) = self.bob.incoming()
        (b2,) = bob2.incoming()
        b1.respond(180)
        b2.respond(180)
        self.alice.inbox()
        b2.respond(200, SDP_C)
        (ok,) = responses(self.alice.inbox(), 200)
        self.assertEqual(ok.body, SDP_C)
        self.assertEqual(ok.content_type, "application/sdp")
        self.assertIsNotNone(ok.get("contact"))
        # bob2 gets its ACK at once (the caller offered in the INVITE), bob the CANCEL.
        (ack,) = requests(bob2.inbox(), "ACK")
        self.assertEqual(ack.call_id, b2.call_id)
        got1 = self.bob.inbox()
        (cancel,) = requests(got1, "CANCEL")
        self.assertEqual(cancel.call_id, b1.call_id)
        self.bob.reply(cancel, 200)
        b1.respond(487)
        self.assertEqual(len(requests(self.bob.inbox(), "ACK")), 1)  # the core ACKs the 487
        a.ack()
        self.assertEqual(statuses(self.alice.inbox()), [])
        self.hang_up_with(a, bob2)
        self.assertClean()

    def hang_up_with(self, a: Dialog, phone: Phone) -> None:
        a.bye()
        self.assertEqual(statuses(self.alice.inbox()), [200])
        (bye,) = requests(phone.inbox(), "BYE")
        phone.reply(bye, 200)

    def test_callee_acked(self) -> None:
        _a, b = self.ring()
        b.respond(200, SDP_B)
        (ack,) = requests(self.bob.inbox(), "ACK")
        self.assertEqual(ack.call_id, b.call_id)
        self.assertEqual(ack.cseq, (b.invite.cseq[0], "ACK"))  # type: ignore[union-attr]
        self.assertEqual(ack.to_tag, b.local_tag)
        self.assertEqual(str(ack.uri), "sip:200@10.0.0.2:5060")

    def test_caller_ack_stops_2xx_retransmission(self) -> None:
        a, b = self.ring()
        b.respond(200, SDP_B)
        self.alice.inbox()
        self.pbx.advance(2)
        self.assertEqual(statuses(self.alice.inbox()), [200, 200])  # at 0.5 s and 1.5 s
        a.ack()
        self.pbx.advance(30)
        self.assertEqual(statuses(self.alice.inbox()), [])
        self.assertEqual(requests(self.bob.inbox(), "BYE"), [])
        self.assertIn(a.call_id, {leg.call_id for leg in self.pbx.core.dialogs.values()})

    def test_no_ack_from_caller_hangs_up(self) -> None:
        _a, b = self.ring()
        b.respond(200, SDP_B)
        self.pbx.advance(32)
        (bye_a,) = requests(self.alice.inbox(), "BYE")
        (bye_b,) = requests(self.bob.inbox(), "BYE")
        self.alice.reply(bye_a, 200)
        self.bob.reply(bye_b, 200)
        self.assertClean()

    def test_bye_from_caller(self) -> None:
        a, b = self.answered()
        answered_at = self.pbx.clock.seconds()
        self.pbx.advance(30)
        a.bye()
        self.assertEqual(statuses(self.alice.inbox()), [200])
        (bye,) = requests(self.bob.inbox(), "BYE")
        self.assertEqual(bye.call_id, b.call_id)
        self.assertEqual(bye.to_tag, b.local_tag)
        self.assertEqual(bye.from_tag, b.remote_tag)
        self.bob.reply(bye, 200)
        rec = self.last_record()
        self.assertEqual((rec.caller, rec.callee, rec.cause), ("100", "200", "normal"))
        self.assertEqual(rec.answer, answered_at)
        self.assertEqual(rec.end, answered_at + 30)
        self.assertClean()

    def test_bye_from_callee(self) -> None:
        a, b = self.answered()
        b.bye()
        self.assertEqual(statuses(self.bob.inbox()), [200])
        (bye,) = requests(self.alice.inbox(), "BYE")
        self.assertEqual(bye.call_id, a.call_id)
        self.assertEqual(bye.to_tag, a.local_tag)
        self.assertEqual(bye.from_tag, a.remote_tag)
        self.assertEqual(str(bye.uri), "sip:100@10.0.0.1:5060")
        self.alice.reply(bye, 200)
        self.assertEqual(self.last_record().cause, "normal")
        self.assertClean()

    def test_bye_unanswered_by_the_other_side(self) -> None:
        a, _b = self.answered()
        a.bye()
        self.assertEqual(statuses(self.alice.inbox()), [200])
        self.assertClean()

    def test_retransmitted_2xx_from_callee_keeps_the_call(self) -> None:
        a, b = self.ring()
        ok = b.respond(200, SDP_B)
        self.alice.inbox()
        self.assertEqual(len(requests(self.bob.inbox(), "ACK")), 1)
        self.bob.deliver(ok)  # our ACK was lost: the phone retransmits its 200
        got = self.bob.inbox()
        self.assertEqual([r.method for r in requests(got)], ["ACK"])
        a.ack()
        self.assertEqual(self.pbx.core.calls.calls[next(iter(self.pbx.core.calls.calls))].state, "answered")
        self.assertEqual(requests(self.alice.inbox(), "BYE"), [])
        self.hang_up(a)
        self.assertClean()

    def test_both_forks_answer(self) -> None:
        bob2 = self.second_phone()
        a = self.alice.call("200", SDP_A)
        (b1,) = self.bob.incoming()
        (b2,) = bob2.incoming()
        b1.respond(180)
        b2.respond(200, SDP_C)
        b1.respond(200, SDP_B)  # crossed the CANCEL
        got = self.bob.inbox()
        self.assertEqual([r.method for r in requests(got)], ["CANCEL", "ACK", "BYE"])
        self.bob.reply(requests(got, "CANCEL")[0], 200)
        self.bob.reply(requests(got, "BYE")[0], 200)
        self.assertEqual(len(responses(self.alice.inbox(), 200)), 1)
        a.ack()
        self.hang_up_with(a, bob2)
        self.assertClean()

    def test_fork_with_only_100_trying_is_cancelled(self) -> None:
        bob2 = self.second_phone()
        a = self.alice.call("200", SDP_A)
        (b1,) = self.bob.incoming()
        (b2,) = bob2.incoming()
        b1.respond(100)
        b2.respond(200, SDP_C)
        (cancel,) = requests(self.bob.inbox(), "CANCEL")
        self.bob.reply(cancel, 200)
        b1.respond(487)
        self.assertEqual(statuses(self.alice.inbox()), [100, 200])
        a.ack()
        self.hang_up_with(a, bob2)
        self.assertClean()


class FailureTests(CallTestCase):
    def test_cancel_from_caller(self) -> None:
        a, b = self.ring()
        a.cancel()
        self.assertEqual(sorted(statuses(self.alice.inbox())), [200, 487])
        (cancel,) = requests(self.bob.inbox(), "CANCEL")
        self.assertEqual(cancel.call_id, b.call_id)
        self.assertEqual(cancel.cseq, (b.invite.cseq[0], "CANCEL"))  # type: ignore[union-attr]
        self.assertEqual(cancel.top_via.branch, b.invite.top_via.branch)  # type: ignore[union-attr]
        self.bob.reply(cancel, 200)
        b.respond(487)
        self.assertEqual(len(requests(self.bob.inbox(), "ACK")), 1)
        rec = self.last_record()
        self.assertEqual((rec.cause, rec.answer), ("cancelled", None))
        self.assertClean()

    def test_cancel_before_any_provisional(self) -> None:
        a = self.alice.call("200", SDP_A)
        (b,) = self.bob.incoming()
        a.cancel()
        self.assertEqual(sorted(statuses(self.alice.inbox())), [100, 200, 487])
        self.assertEqual(requests(self.bob.inbox(), "CANCEL"), [])  # no provisional yet: hold the CANCEL
        b.respond(180)
        (cancel,) = requests(self.bob.inbox(), "CANCEL")
        b.respond(183)  # one CANCEL only
        self.assertEqual(requests(self.bob.inbox(), "CANCEL"), [])
        self.bob.reply(cancel, 200)
        b.respond(487)
        self.assertClean()

    def test_callee_answers_after_cancel(self) -> None:
        a, b = self.ring()
        a.cancel()
        (cancel,) = requests(self.bob.inbox(), "CANCEL")
        self.bob.reply(cancel, 200)
        b.respond(200, SDP_B)
        got = self.bob.inbox()
        self.assertEqual([r.method for r in requests(got)], ["ACK", "BYE"])
        self.bob.reply(requests(got, "BYE")[0], 200)
        self.assertEqual(statuses(self.alice.inbox()), [200, 487])
        self.assertClean()

    def test_callee_ignoring_cancel_is_given_up(self) -> None:
        a, _b = self.ring()
        a.cancel()
        (cancel,) = requests(self.bob.inbox(), "CANCEL")
        self.bob.reply(cancel, 200)
        self.assertClean()

    def test_caller_bye_while_ringing(self) -> None:
        a, b = self.ring()
        a.remote_tag = responses(a.responses, 180)[0].to_tag
        a.bye()
        self.assertEqual(sorted(statuses(self.alice.inbox())), [200, 487])
        (cancel,) = requests(self.bob.inbox(), "CANCEL")
        self.bob.reply(cancel, 200)
        b.respond(487)
        self.assertEqual(self.last_record().cause, "cancelled")
        self.assertClean()

    def test_busy(self) -> None:
        _a, b = self.ring()
        b.respond(486)
        self.assertEqual(statuses(self.alice.inbox()), [486])
        self.assertEqual(len(requests(self.bob.inbox(), "ACK")), 1)
        self.assertEqual(self.last_record().cause, "busy")
        self.assertClean()

    def test_one_fork_busy_other_answers(self) -> None:
        bob2 = self.second_phone()
        a = self.alice.call("200", SDP_A)
        (b1,) = self.bob.incoming()
        (b2,) = bob2.incoming()
        b1.respond(486)
        self.assertEqual(statuses(self.alice.inbox()), [100])
        b2.respond(200, SDP_C)
        self.assertEqual(statuses(self.alice.inbox()), [200])
        a.ack()
        b2.bye()
        bye = requests(self.alice.inbox(), "BYE")[0]
        self.alice.reply(bye, 200)
        self.assertEqual(self.last_record().cause, "normal")
        self.assertClean()

    def test_no_answer(self) -> None:
        _a, b = self.ring()
        self.pbx.advance(59.5)
        self.assertEqual(statuses(self.alice.inbox()), [])
        self.pbx.advance(0.5)
        self.assertEqual(statuses(self.alice.inbox()), [480])
        (cancel,) = requests(self.bob.inbox(), "CANCEL")
        self.bob.reply(cancel, 200)
        b.respond(487)
        self.assertEqual(self.last_record().cause, "no-answer")
        self.assertClean()

    def test_configured_ring_timeout(self) -> None:
        self.pbx.core.calls.ring_timeout = 15
        self.ring()
        self.pbx.advance(15)
        self.assertEqual(statuses(self.alice.inbox()), [480])

    def test_callee_does_not_respond(self) -> None:
        self.alice.call("200", SDP_A)
        self.assertEqual(len(self.bob.incoming()), 1)
        self.pbx.advance(31.5)
        self.assertEqual(statuses(self.alice.inbox()), [100])
        self.assertEqual(self.bob.incoming(), [])  # retransmissions of the same INVITE
        self.pbx.advance(0.5)
        self.assertEqual(statuses(self.alice.inbox()), [408])
        self.assertEqual(self.last_record().cause, "no-response")
        self.assertClean()

    def test_caller_retransmits_invite(self) -> None:
        a = self.alice.call("200", SDP_A)
        self.alice.inbox()
        self.alice.deliver(a.invite)  # type: ignore[arg-type]
        self.assertEqual(statuses(self.alice.inbox()), [100])
        self.assertEqual(len(self.bob.incoming()), 1)


class MidCallTests(CallTestCase):
    def test_hold_from_caller(self) -> None:
        a, b = self.answered()
        hold = sdp("10.0.0.1", 4000, "sendonly", 2)
        a.send_invite(hold)
        self.assertEqual(statuses(self.alice.inbox()), [100])
        (reinv,) = requests(self.bob.inbox(), "INVITE")
        self.assertEqual(reinv.body, hold)
        self.assertEqual(reinv.call_id, b.call_id)
        self.assertEqual(reinv.to_tag, b.local_tag)
        held = sdp("10.0.0.2", 5000, "recvonly", 2)
        self.bob.reply(reinv, 200, held, tag=b.local_tag)
        (ack,) = requests(self.bob.inbox(), "ACK")
        self.assertEqual(ack.cseq, (reinv.cseq[0], "ACK"))
        (ok,) = responses(self.alice.inbox(), 200)
        self.assertEqual(ok.body, held)
        a.ack()
        self.assertEqual(self.bob.inbox(), [])
        self.pbx.advance(5)
        self.assertEqual(self.alice.inbox(), [])
        self.hang_up(a)
        self.assertClean()

    def test_hold_from_callee(self) -> None:
        a, b = self.answered()
        hold = sdp("10.0.0.2", 5000, "sendonly", 2)
        b.send_invite(hold)
        self.assertEqual(statuses(self.bob.inbox()), [100])
        (reinv,) = requests(self.alice.inbox(), "INVITE")
        self.assertEqual(reinv.body, hold)
        self.assertEqual(reinv.call_id, a.call_id)
        self.assertEqual(reinv.to_tag, a.local_tag)
        self.assertEqual(str(reinv.uri), "sip:100@10.0.0.1:5060")
        held = sdp("10.0.0.1", 4000, "recvonly", 2)
        self.alice.reply(reinv, 200, held, tag=a.local_tag)
        self.assertEqual(len(requests(self.alice.inbox(), "ACK")), 1)
        (ok,) = responses(self.bob.inbox(), 200)
        self.assertEqual(ok.body, held)
        b.ack()
        self.assertEqual(self.alice.inbox(), [])
        self.pbx.advance(5)
        self.assertEqual(self.bob.inbox(), [])
        self.hang_up(a)
        self.assertClean()

    def test_reinvite_without_sdp(self) -> None:
        a, b = self.answered()
        a.send_invite(b"")
        (reinv,) = requests(self.bob.inbox(), "INVITE")
        self.assertEqual(reinv.body, b"")
        offer = sdp("10.0.0.2", 5000, version=3)
        self.bob.reply(reinv, 200, offer, tag=b.local_tag)
        self.assertEqual(self.bob.inbox(), [])  # the ACK waits for the caller's answer
        (ok,) = responses(self.alice.inbox(), 200)
        self.assertEqual(ok.body, offer)
        answer = sdp("10.0.0.1", 4000, version=3)
        a.ack(answer)
        (ack,) = requests(self.bob.inbox(), "ACK")
        self.assertEqual((ack.body, ack.cseq), (answer, (reinv.cseq[0], "ACK")))
        self.hang_up(a)
        self.assertClean()

    def test_bye_while_the_other_sides_reinvite_is_pending(self) -> None:
        """The caller hangs up instead of answering the callee's re-INVITE: the callee's re-INVITE gets
        487 at once (RFC 3261 15.1.2), not a 408 after Timer B, and its BYE."""
        a, b = self.answered()
        b.send_invite(sdp("10.0.0.2", 5000, "sendonly", 2))
        self.assertEqual(statuses(self.bob.inbox()), [100])
        (reinv,) = requests(self.alice.inbox(), "INVITE")
        a.bye()
        self.assertEqual(statuses(self.alice.inbox()), [200])
        got = self.bob.inbox()
        self.assertEqual([r.status for r in responses(got)], [487])
        (bye,) = requests(got, "BYE")
        self.bob.reply(bye, 200)
        self.alice.reply(reinv, 481, tag=a.local_tag)   # the caller's late answer changes nothing
        self.assertEqual(self.bob.inbox(), [])
        self.assertEqual(self.last_record().cause, "normal")
        self.assertClean()

    def test_caller_cancels_a_reinvite(self) -> None:
        """RFC 3261 9.2: the CANCEL is answered at once and reaches the callee's re-INVITE; its 487 comes
        back as the answer to the caller's re-INVITE; the call goes on."""
        a, b = self.answered()
        a.send_invite(sdp("10.0.0.1", 4002, version=2))
        self.assertEqual(statuses(self.alice.inbox()), [100])
        (reinv,) = requests(self.bob.inbox(), "INVITE")
        self.bob.reply(reinv, 100, tag=b.local_tag)
        a.cancel()
        self.assertEqual(statuses(self.alice.inbox()), [200])
        (cancel,) = self.bob.inbox()
        assert isinstance(cancel, Request)
        self.assertEqual(cancel.method, "CANCEL")
        self.assertEqual((cancel.top_via.branch, cancel.cseq, cancel.call_id, cancel.to_tag, cancel.from_tag),
                         (reinv.top_via.branch, (reinv.cseq[0], "CANCEL"), reinv.call_id, b.local_tag,
                          reinv.from_tag))
        self.bob.reply(cancel, 200, tag=b.local_tag)
        self.bob.reply(reinv, 487, tag=b.local_tag)
        self.assertEqual(len(requests(self.bob.inbox(), "ACK")), 1)
        (final,) = self.alice.inbox()
        assert isinstance(final, Response)
        self.assertEqual((final.status, final.cseq[1]), (487, "INVITE"))
        self.assertEqual(self.pbx.core.reinvites, {})
        # Still talking: a new re-INVITE goes through, and the hang-up ends it all.
        a.send_invite(sdp("10.0.0.1", 4004, version=3))
        (again,) = requests(self.bob.inbox(), "INVITE")
        self.bob.reply(again, 200, sdp("10.0.0.2", 5004, version=3), tag=b.local_tag)
        self.assertEqual(statuses(self.alice.inbox()), [100, 200])
        a.ack()
        self.hang_up(a)
        self.assertClean()

    def test_cancel_of_a_reinvite_waits_for_a_provisional(self) -> None:
        """A CANCEL never overtakes the INVITE (RFC 3261 9.1): held until the callee's 1xx; and when
        the callee answers first, the re-INVITE simply succeeds."""
        a, b = self.answered()
        a.send_invite(sdp("10.0.0.1", 4002, version=2))
        (reinv,) = requests(self.bob.inbox(), "INVITE")
        a.cancel()
        self.assertEqual(statuses(self.alice.inbox()), [100, 200])
        self.assertEqual(self.bob.inbox(), [])
        self.bob.reply(reinv, 180, tag=b.local_tag)
        (cancel,) = requests(self.bob.inbox(), "CANCEL")
        self.bob.reply(cancel, 200, tag=b.local_tag)
        self.bob.reply(reinv, 487, tag=b.local_tag)
        self.assertEqual(statuses(self.alice.inbox()), [487])

        a.send_invite(sdp("10.0.0.1", 4004, version=3))
        (reinv,) = requests(self.bob.inbox(), "INVITE")
        a.cancel()
        ok = sdp("10.0.0.2", 5004, version=3)
        self.bob.reply(reinv, 200, ok, tag=b.local_tag)
        self.assertEqual(requests(self.bob.inbox(), "CANCEL"), [])
        finals = responses(self.alice.inbox())
        self.assertEqual([(r.status, r.cseq[1]) for r in finals], [(100, "INVITE"), (200, "CANCEL"),
                                                                    (200, "INVITE")])
        a.ack()
        self.hang_up(a)
        self.assertClean()

    def test_cancel_of_a_reinvite_the_callee_ignores(self) -> None:
        """No final response 64*T1 after the CANCEL: the caller's re-INVITE gets 408, the call stays."""
        a, b = self.answered()
        a.send_invite(sdp("10.0.0.1", 4002, version=2))
        (reinv,) = requests(self.bob.inbox(), "INVITE")
        self.bob.reply(reinv, 100, tag=b.local_tag)
        a.cancel()
        self.assertEqual(len(requests(self.bob.inbox(), "CANCEL")), 1)
        self.pbx.advance(33)
        self.assertIn(408, statuses(self.alice.inbox()))
        self.assertEqual(self.pbx.core.reinvites, {})
        self.hang_up(a)
        self.assertClean()

    def test_cancel_matching_no_reinvite(self) -> None:
        a, _b = self.answered()
        req = a.build("CANCEL", b"", None, cseq=99)
        self.alice.deliver(req)
        self.assertEqual(statuses(self.alice.inbox()), [481])
        self.hang_up(a)
        self.assertClean()

    def test_reinvite_refused(self) -> None:
        a, b = self.answered()
        a.send_invite(sdp("10.0.0.1", 4002, version=2))
        (reinv,) = requests(self.bob.inbox(), "INVITE")
        self.bob.reply(reinv, 488, tag=b.local_tag)
        self.assertEqual(statuses(self.alice.inbox()), [100, 488])  # and the phone ACKed it
        self.assertEqual(len(requests(self.bob.inbox(), "ACK")), 1)
        self.hang_up(a)
        self.assertClean()

    def test_update_and_info(self) -> None:
        a, b = self.answered()
        offer = sdp("10.0.0.1", 4100, version=2)
        a.request("UPDATE", offer)
        (upd,) = requests(self.bob.inbox(), "UPDATE")
        self.assertEqual((upd.body, upd.content_type), (offer, "application/sdp"))
        answer = sdp("10.0.0.2", 5100, version=2)
        self.bob.reply(upd, 200, answer, tag=b.local_tag)
        (ok,) = self.alice.inbox()
        assert isinstance(ok, Response)
        self.assertEqual((ok.status, ok.cseq[1], ok.body), (200, "UPDATE", answer))

        dtmf = b"Signal=5\r\nDuration=160\r\n"
        b.request("INFO", dtmf, "application/dtmf-relay")
        (info,) = requests(self.alice.inbox(), "INFO")
        self.assertEqual((info.body, info.content_type), (dtmf, "application/dtmf-relay"))
        self.alice.reply(info, 200, tag=a.local_tag)
        self.assertEqual(statuses(self.bob.inbox()), [200])

        a.request("INFO", b"x", "text/plain")
        (info,) = requests(self.bob.inbox(), "INFO")
        self.bob.reply(info, 415, tag=b.local_tag)
        self.assertEqual(statuses(self.alice.inbox()), [415])
        self.hang_up(a)
        self.assertClean()

    def test_in_dialog_request_unanswered_by_the_other_side(self) -> None:
        a, _b = self.answered()
        a.request("INFO", b"x", "text/plain")
        self.pbx.advance(32)
        self.assertEqual(statuses(self.alice.inbox()), [408])
        self.hang_up(a)
        self.assertClean()

    def test_old_cseq_refused(self) -> None:
        a, _b = self.answered()
        a.request("INFO", b"x", "text/plain", cseq=1)
        self.assertEqual(statuses(self.alice.inbox()), [500])

    def test_unknown_tag_in_existing_call(self) -> None:
        a, _b = self.answered()
        a.remote_tag = "wrong"
        a.request("INFO", b"x", "text/plain")
        self.assertEqual(statuses(self.alice.inbox()), [481])


class LateOfferTests(CallTestCase):
    def test_late_offer(self) -> None:
        a = self.alice.call("200")
        self.alice.inbox()
        (b,) = self.bob.incoming()
        assert b.invite is not None
        self.assertEqual(b.invite.body, b"")
        b.respond(200, SDP_B)
        (ok,) = responses(self.alice.inbox(), 200)
        self.assertEqual(ok.body, SDP_B)
        self.assertEqual(self.bob.inbox(), [])  # the ACK waits for the caller's answer
        a.ack(SDP_A)
        (ack,) = requests(self.bob.inbox(), "ACK")
        self.assertEqual((ack.body, ack.content_type), (SDP_A, "application/sdp"))
        self.hang_up(a)
        self.assertClean()

    def test_late_offer_2xx_retransmitted_before_the_ack(self) -> None:
        a = self.alice.call("200")
        self.alice.inbox()
        (b,) = self.bob.incoming()
        ok = b.respond(200, SDP_B)
        self.bob.deliver(ok)
        self.bob.deliver(ok)
        self.assertEqual(self.bob.inbox(), [])
        self.assertEqual(len(responses(self.alice.inbox(), 200)), 1)
        a.ack(SDP_A)
        (ack,) = requests(self.bob.inbox(), "ACK")
        self.assertEqual(ack.body, SDP_A)
        self.hang_up(a)
        self.assertClean()


class RecordTests(CallTestCase):
    def test_callee_bye_before_answering_declines_its_fork(self) -> None:
        """A phone rejecting a ringing call with BYE on its early dialog: that fork is cancelled, the
        other rings on; when none is left the caller gets 603 and the record says declined."""
        bob2 = self.second_phone()
        self.alice.call("200", SDP_A)
        self.assertEqual(statuses(self.alice.inbox()), [100])
        (b1,) = self.bob.incoming()
        (b2,) = bob2.incoming()
        b1.respond(180)
        b2.respond(180)
        self.assertEqual(statuses(self.alice.inbox()), [180, 180])
        b1.bye()
        msgs = self.bob.inbox()
        self.assertEqual(statuses(msgs), [200])
        (cancel,) = requests(msgs, "CANCEL")
        self.bob.reply(cancel, 200, tag=b1.local_tag)
        b1.respond(487)
        self.assertEqual(len(requests(self.bob.inbox(), "ACK")), 1)
        self.assertEqual(self.alice.inbox(), [])  # bob2 still rings
        b2.bye()
        msgs = bob2.inbox()
        (cancel,) = requests(msgs, "CANCEL")
        bob2.reply(cancel, 200, tag=b2.local_tag)
        b2.respond(487)
        self.assertEqual(statuses(self.alice.inbox()), [603])
        self.assertEqual((self.last_record().cause, self.last_record().answer), ("declined 603", None))
        self.assertClean()

    def test_callee_bye_before_answering_with_its_invite_left_unanswered(self) -> None:
        a, b = self.ring()
        b.bye()
        self.assertEqual(statuses(self.alice.inbox()), [603])
        self.assertEqual(len(requests(self.bob.inbox(), "CANCEL")), 1)  # and the phone never answers it
        self.assertEqual(self.last_record().cause, "declined 603")
        self.assertClean()

    def test_records(self) -> None:
        a, b = self.answered()
        self.hang_up(a)
        a, b = self.ring()
        b.respond(486)
        self.alice.call("555")
        a, b = self.ring()
        a.cancel()
        self.pbx.advance(60)
        causes = [(r.caller, r.callee, r.cause, r.answer is not None) for r in self.pbx.records()]
        self.assertEqual(causes, [("100", "200", "normal", True), ("100", "200", "busy", False),
                                  ("100", "555", "not-found", False), ("100", "200", "cancelled", False)])
        for r in self.pbx.records():
            self.assertLessEqual(r.start, r.end)

    def test_caller_display_name_and_domain(self) -> None:
        self.alice.call("200", SDP_A)
        (b,) = self.bob.incoming()
        assert b.invite is not None
        self.assertEqual(str(b.invite.from_.uri), f"sip:100@{DOMAIN}")
        self.assertIsInstance(b.invite, Request)


class CrashRecoveryTests(CallTestCase):
    """kill -9 with a call up: after the restart both phones get a BYE and the call its record."""

    def test_calls_up_are_ended_after_a_restart(self) -> None:
        a, b = self.answered()
        self.pbx.advance(1)          # the list of calls up is saved once a second
        store = self.pbx.store
        (saved,) = store.active_calls()
        # The process dies here: nothing ends the call. A new server starts on the same store.
        old = self.pbx
        self.pbx = PBX()
        self.pbx.core.calls.store = self.pbx.store = store
        for phone in (self.alice, self.bob):
            phone.pbx = self.pbx
        down_since = old.clock.seconds() + 3
        self.assertEqual(self.pbx.core.calls.recover(down_since), 1)
        (bye_a,) = requests(self.alice.inbox(), "BYE")
        (bye_b,) = requests(self.bob.inbox(), "BYE")
        self.assertEqual((bye_a.call_id, bye_a.to_tag, bye_a.from_tag), (a.call_id, a.local_tag, a.remote_tag))
        self.assertEqual((bye_b.call_id, bye_b.to_tag), (b.call_id, b.local_tag))
        self.assertGreater(bye_b.cseq[0], 100)
        self.alice.reply(bye_a, 200)
        self.bob.reply(bye_b, 200)
        (record,) = store.call_records(10)
        self.assertEqual((record.caller, record.callee, record.cause, record.end), ("100", "200", "interrupted",
                                                                                     down_since))
        self.assertIsNotNone(record.answer)
        self.assertEqual(store.active_calls(), [])
        self.assertEqual(saved[0], record.call_id)

    def test_calls_ended_normally_are_not_kept(self) -> None:
        a, _ = self.answered()
        self.pbx.advance(1)
        self.assertEqual(len(self.pbx.store.active_calls()), 1)
        self.hang_up(a)
        self.pbx.advance(1)
        self.assertEqual(self.pbx.store.active_calls(), [])
        self.assertEqual(self.pbx.core.calls.recover(None), 0)

    def test_a_short_call_costs_no_write(self) -> None:
        writes: list[str] = []
        store = self.pbx.store
        real = store.save_active_call
        store.save_active_call = lambda cid, data: (writes.append(cid), real(cid, data))  # type: ignore
        a, _ = self.answered()
        self.hang_up(a)
        self.pbx.advance(2)
        self.assertEqual((writes, store.active_calls()), ([], []))


class DisplayNameTests(CallTestCase):
    """Issue 8 point 4: an extension cannot pass itself off as someone else by its From display name."""

    def ring_with_display(self, display: str) -> str | None:
        """Alice's phone calls 200 with ``display`` in its From; the display name Bob's phone sees."""
        ruri = f"sip:200@{DOMAIN}"
        first = self.alice.build("INVITE", ruri, call_id="disp@10.0.0.1", from_=f'"{display}" <sip:100@{DOMAIN}>;tag=t1',
                                 to=f"<{ruri}>", cseq=1, body=SDP_A)
        got = self.alice.send_request(first)
        challenge = next(m for m in got if isinstance(m, Response) and m.status == 407)
        authz = self.alice.authorization(challenge.get_all("proxy-authenticate")[0], "INVITE", ruri)
        again = self.alice.build("INVITE", ruri, call_id="disp@10.0.0.1", from_=f'"{display}" <sip:100@{DOMAIN}>;tag=t1',
                                 to=f"<{ruri}>", cseq=2, body=SDP_A, headers=[("Proxy-Authorization", authz)])
        self.alice.send_request(again)
        (ringing,) = self.bob.incoming()
        assert ringing.invite is not None
        return ringing.invite.from_.display_name

    def test_the_callee_sees_the_configured_name(self) -> None:
        from minisip.config import Extension
        exts = dict(self.pbx.core.extensions)
        exts["100"] = Extension("100", "pw100", "Reception")
        self.pbx.core.apply_config(DOMAIN, exts)
        self.assertEqual(self.ring_with_display("CEO Boss"), "Reception")

    def test_the_callee_sees_the_configured_name_not_the_phones(self) -> None:
        self.assertIsNone(self.ring_with_display("CEO Boss"))

    def test_allowed_per_extension(self) -> None:
        from minisip.config import Extension
        exts = dict(self.pbx.core.extensions)
        exts["100"] = Extension("100", "pw100", None, phone_display_name=True)
        self.pbx.core.apply_config(DOMAIN, exts)
        self.assertEqual(self.ring_with_display("Front Desk"), "Front Desk")


class CallLimitTests(CallTestCase):
    """Issue 8 point 9: one extension cannot hold thousands of calls ringing at once."""

    def test_calls_over_the_extension_limit_get_486(self) -> None:
        self.pbx.core.calls.max_calls_per_extension = 2
        first = self.alice.call("200", SDP_A)
        self.alice.call("200", SDP_A)
        self.assertEqual(len(self.bob.incoming()), 2)
        self.alice.inbox()
        third = self.alice.call("200", SDP_A)
        self.alice.inbox()
        self.assertIn(486, [r.status for r in third.responses])
        self.assertEqual(self.bob.incoming(), [])
        first.cancel()                      # one ends: the next call goes through again
        self.alice.inbox()
        self.alice.call("200", SDP_A)
        self.assertEqual(len(self.bob.incoming()), 1)
