"""MCCP revision 1.1, calls to the browser: login, logout, registered and incoming parsed and serialized,
and every state transition of a logged-in Session (the page rings, answers, declines, is cancelled)."""

from __future__ import annotations

import json

from twisted.trial.unittest import SynchronousTestCase

from minisip.webrtc import mccp
from minisip.webrtc.mccp import (
    AnswerGiven,
    Close,
    HangupRequested,
    Incoming,
    Limits,
    LocalProtocolError,
    Login,
    LoginRequested,
    Logout,
    LogoutRequested,
    MccpError,
    Output,
    Registered,
    Session,
    State,
    parse,
    serialize,
)
from tests.webrtc.test_mccp import ANSWER, OFFER, call_frame, frame, sent


def login_frame(user: str = "102", password: str = "secret") -> str:
    return frame(op="login", user=user, password=password)


class ParseTests(SynchronousTestCase):
    """The new messages, from the documented examples, and back."""

    def test_login(self) -> None:
        self.assertEqual(parse(login_frame()), Login("102", "secret"))
        self.assertEqual(json.loads(serialize(Login("102", "secret"))),
                         {"op": "login", "user": "102", "password": "secret"})

    def test_logout(self) -> None:
        self.assertEqual(parse(frame(op="logout")), Logout())
        self.assertEqual(serialize(Logout()), '{"op":"logout"}')

    def test_registered(self) -> None:
        self.assertEqual(parse(frame(op="registered", user="102")), Registered("102"))
        self.assertEqual(serialize(Registered("102")), '{"op":"registered","user":"102"}')

    def test_incoming(self) -> None:
        message = Incoming("in-1", "101", "102", OFFER, "Alice")
        self.assertEqual(parse(serialize(message)), message)
        self.assertEqual(json.loads(serialize(message)),
                         {"op": "incoming", "call": "in-1", "caller": "101", "callee": "102", "sdp": OFFER,
                          "name": "Alice"})
        self.assertNotIn("name", json.loads(serialize(Incoming("in-1", "101", "102", OFFER))))

    def test_incoming_without_an_offer(self) -> None:
        message = Incoming("in-1", "101", "102", "")
        self.assertEqual(json.loads(serialize(message)), {"op": "incoming", "call": "in-1", "caller": "101",
                                                          "callee": "102"})
        self.assertEqual(parse(serialize(message)), message)

    def test_bad_messages(self) -> None:
        cases = [
            (frame(op="login", password="x"), '"user" is missing'),
            (frame(op="login", user="10 2", password="x"), '"user" must be'),
            (frame(op="login", user="102"), '"password" is missing'),
            (frame(op="login", user="102", password="x" * 200), '"password" is longer'),
            (frame(op="login", user="102", password=5), '"password" must be a string'),
            (frame(op="registered"), '"user" is missing'),
            (frame(op="incoming", call="in-1", caller="101", callee="102", sdp="x"), '"sdp" must be an SDP'),
            (frame(op="incoming", call="in-1", caller="101", callee="102", sdp=OFFER, name="a\nb"), "control"),
        ]
        for text, fragment in cases:
            with self.subTest(text=text):
                error = self.assertRaises(MccpError, parse, text)
                self.assertEqual(error.code, "bad-message")
                self.assertIn(fragment, error.reason)

    def test_refused_is_an_error_code_that_keeps_the_connection(self) -> None:
        self.assertIsNone(MccpError("refused", "wrong number or password").close_code)
        self.assertEqual(mccp.REVISION, "1.1")


class LoginTests(SynchronousTestCase):
    """Logging in: the gateway checks the password and says how it went."""

    def setUp(self) -> None:
        self.session = Session()

    def test_login_asks_the_gateway_and_sends_nothing_yet(self) -> None:
        out = self.session.receive(login_frame())
        self.assertEqual(out, Output((LoginRequested("102", "secret"),)))
        self.assertEqual((self.session.login, self.session.user), ("pending", "102"))

    def test_accepted(self) -> None:
        self.session.receive(login_frame())
        out = self.session.logged_in("102")
        self.assertEqual(sent(out), [{"op": "registered", "user": "102"}])
        self.assertEqual(self.session.login, "ok")
        self.assertEqual(self.session.state, State.IDLE)

    def test_refused_is_an_error_and_another_try_may_follow(self) -> None:
        self.session.receive(login_frame(password="nope"))
        out = self.session.login_refused("wrong number or password")
        self.assertEqual(sent(out), [{"op": "error", "code": "refused", "reason": "wrong number or password"}])
        self.assertIsNone(out.close)
        self.assertEqual((self.session.login, self.session.user), ("", None))
        self.assertEqual(self.session.receive(login_frame()).events, (LoginRequested("102", "secret"),))

    def test_refusals_count_towards_too_many_errors(self) -> None:
        session = Session(Limits(max_errors=2))
        for _ in range(2):
            session.receive(login_frame(password="nope"))
            self.assertIsNone(session.login_refused("wrong number or password").close)
        session.receive(login_frame(password="nope"))
        out = session.login_refused("wrong number or password")
        self.assertEqual(out.close, Close(1008, "too-many-errors"))
        self.assertEqual(session.state, State.CLOSED)

    def test_second_login_is_wrong_state(self) -> None:
        self.session.receive(login_frame())
        out = self.session.receive(login_frame("103"))
        self.assertEqual((sent(out)[0]["code"], sent(out)[0]["reason"]), ("wrong-state", "login already in progress"))
        self.session.logged_in("102")
        out = self.session.receive(login_frame("103"))
        self.assertIn("logged in as 102", sent(out)[0]["reason"])
        self.assertEqual(self.session.user, "102")

    def test_logout(self) -> None:
        self.session.receive(login_frame())
        self.session.logged_in("102")
        out = self.session.receive(frame(op="logout"))
        self.assertEqual(out, Output((LogoutRequested("102"),)))
        self.assertEqual((self.session.login, self.session.user), ("", None))
        self.assertIsNone(self.session.offer_call("in-1", "101", "102", OFFER))

    def test_logout_without_login_is_wrong_state(self) -> None:
        self.assertEqual(sent(self.session.receive(frame(op="logout")))[0]["code"], "wrong-state")

    def test_late_reports_are_dropped(self) -> None:
        self.session.receive(login_frame())
        self.session.connection_lost()
        self.assertEqual(self.session.logged_in("102"), Output())
        self.assertEqual(self.session.login_refused("x"), Output())

    def test_accepting_twice_is_our_bug(self) -> None:
        self.session.receive(login_frame())
        self.session.logged_in("102")
        self.assertRaises(LocalProtocolError, self.session.logged_in, "102")

    def test_a_call_out_while_logged_in(self) -> None:
        self.session.receive(login_frame())
        self.session.logged_in("102")
        self.assertEqual(self.session.receive(call_frame()).events[0].callee, "101")
        self.assertEqual(self.session.state, State.CALLING)
        self.assertIsNone(self.session.offer_call("in-1", "101", "102", OFFER))   # busy: one call at a time


class IncomingTests(SynchronousTestCase):
    """A call to the logged-in extension, as the page sees it."""

    def setUp(self) -> None:
        self.session = Session()
        self.session.receive(login_frame())
        self.session.logged_in("102")

    def ring(self) -> Output:
        out = self.session.offer_call("in-1", "101", "102", OFFER, "Alice")
        assert out is not None
        return out

    def test_offer_rings_the_page(self) -> None:
        self.assertEqual(sent(self.ring()), [{"op": "incoming", "call": "in-1", "caller": "101", "callee": "102",
                                              "sdp": OFFER, "name": "Alice"}])
        self.assertEqual((self.session.state, self.session.call), (State.INCOMING, "in-1"))

    def test_not_logged_in_or_busy_or_closed_cannot_ring(self) -> None:
        self.assertIsNone(Session().offer_call("in-1", "101", "102", OFFER))
        self.ring()
        self.assertIsNone(self.session.offer_call("in-2", "101", "102", OFFER))
        self.assertEqual(self.session.call, "in-1")
        self.session.connection_lost()
        self.assertIsNone(self.session.offer_call("in-3", "101", "102", OFFER))

    def test_answer(self) -> None:
        self.ring()
        out = self.session.receive(frame(op="answer", call="in-1", sdp=ANSWER))
        self.assertEqual(out, Output((AnswerGiven("in-1", ANSWER),)))
        self.assertEqual(self.session.state, State.CONNECTED)
        dtmf = self.session.receive(frame(op="dtmf", call="in-1", digits="5"))
        self.assertEqual(dtmf.events[0].digits, "5")

    def test_answer_needs_the_sdp_and_the_right_call(self) -> None:
        self.ring()
        self.assertEqual(sent(self.session.receive(frame(op="answer", call="in-1")))[0]["code"], "bad-message")
        self.assertEqual(sent(self.session.receive(frame(op="answer", call="in-9", sdp=ANSWER)))[0]["code"],
                         "unknown-call")
        self.assertEqual(self.session.state, State.INCOMING)

    def test_answer_twice_is_wrong_state(self) -> None:
        self.ring()
        self.session.receive(frame(op="answer", call="in-1", sdp=ANSWER))
        self.assertEqual(sent(self.session.receive(frame(op="answer", call="in-1", sdp=ANSWER)))[0]["code"],
                         "wrong-state")

    def test_dtmf_while_ringing_is_wrong_state(self) -> None:
        self.ring()
        self.assertEqual(sent(self.session.receive(frame(op="dtmf", call="in-1", digits="5")))[0]["code"],
                         "wrong-state")

    def test_decline(self) -> None:
        self.ring()
        out = self.session.receive(frame(op="hangup", call="in-1", status=603, reason="declined"))
        self.assertEqual(out, Output((HangupRequested("in-1", 603, "declined"),)))
        self.assertEqual((self.session.state, self.session.call), (State.IDLE, None))
        self.assertIsNotNone(self.session.offer_call("in-2", "101", "102", OFFER))   # still logged in

    def test_caller_gives_up_stops_the_ringing(self) -> None:
        self.ring()
        out = self.session.hangup("in-1", 487, "call cancelled")
        self.assertEqual(sent(out), [{"op": "hangup", "call": "in-1", "status": 487, "reason": "call cancelled"}])
        self.assertEqual(self.session.state, State.IDLE)

    def test_hangup_after_the_answer_either_side(self) -> None:
        self.ring()
        self.session.receive(frame(op="answer", call="in-1", sdp=ANSWER))
        out = self.session.hangup("in-1", 200, "other side hung up")
        self.assertEqual(sent(out)[0]["status"], 200)
        self.assertEqual(self.session.state, State.IDLE)
        self.ring()
        self.session.receive(frame(op="answer", call="in-1", sdp=ANSWER))
        self.assertEqual(self.session.receive(frame(op="hangup", call="in-1")).events,
                         (HangupRequested("in-1", None, ""),))

    def test_the_gateway_cannot_answer_or_progress_an_incoming_call(self) -> None:
        self.ring()
        self.assertRaises(LocalProtocolError, self.session.answer, "in-1", ANSWER)
        self.assertRaises(LocalProtocolError, self.session.progress, "in-1", "ringing")

    def test_a_call_out_while_ringing_is_busy(self) -> None:
        self.ring()
        self.assertEqual(sent(self.session.receive(call_frame("c2")))[0]["code"], "busy")

    def test_closing_hangs_up_then_logs_out(self) -> None:
        self.ring()
        out = self.session.connection_lost()
        self.assertEqual(out.events, (HangupRequested("in-1", 480, "connection closed"), LogoutRequested("102")))
        self.assertEqual(self.session.state, State.CLOSED)

    def test_server_close_logs_out(self) -> None:
        out = self.session.close(1001, "server shutting down")
        self.assertEqual(out.events, (LogoutRequested("102"),))
        self.assertEqual(out.close, Close(1001, "server shutting down"))

    def test_fatal_error_logs_out(self) -> None:
        self.ring()
        out = self.session.receive(b"x", is_binary=True)
        self.assertEqual(out.events, (HangupRequested("in-1", 480, "MCCP frames are text frames"),
                                      LogoutRequested("102")))
        self.assertEqual(out.close, Close(1003, "binary-frame"))

    def test_connection_lost_while_the_login_is_checked(self) -> None:
        session = Session()
        session.receive(login_frame())
        self.assertEqual(session.connection_lost().events, (LogoutRequested("102"),))


class LateOfferTests(SynchronousTestCase):
    """An incoming call without an offer: the page's answer carries its offer, the server's answer follows."""

    def setUp(self) -> None:
        self.session = Session()
        self.session.receive(login_frame())
        self.session.logged_in("102")
        out = self.session.offer_call("in-1", "101", "102", "")
        assert out is not None
        self.assertEqual(sent(out), [{"op": "incoming", "call": "in-1", "caller": "101", "callee": "102"}])

    def test_the_pages_offer_then_the_servers_answer(self) -> None:
        out = self.session.receive(frame(op="answer", call="in-1", sdp=OFFER))
        self.assertEqual(out.events, (AnswerGiven("in-1", OFFER),))
        self.assertEqual(self.session.state, State.CONNECTED)
        out = self.session.answer("in-1", ANSWER)
        self.assertEqual(sent(out), [{"op": "answer", "call": "in-1", "sdp": ANSWER}])
        self.assertEqual(self.session.state, State.CONNECTED)
        self.assertRaises(LocalProtocolError, self.session.answer, "in-1", ANSWER)   # once only

    def test_the_server_cannot_answer_before_the_page_did(self) -> None:
        self.assertRaises(LocalProtocolError, self.session.answer, "in-1", ANSWER)

    def test_a_stale_answer_after_the_hangup_is_dropped(self) -> None:
        self.session.receive(frame(op="answer", call="in-1", sdp=OFFER))
        self.session.receive(frame(op="hangup", call="in-1"))
        self.assertEqual(self.session.answer("in-1", ANSWER), Output())

    def test_an_offer_with_the_next_call_clears_it(self) -> None:
        self.session.receive(frame(op="hangup", call="in-1"))
        self.session.offer_call("in-2", "101", "102", OFFER)
        self.assertFalse(self.session.late)
