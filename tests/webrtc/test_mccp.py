"""MCCP: every message parsed and serialized, every error code, every state transition of a Session."""

from __future__ import annotations

import json

from twisted.trial.unittest import SynchronousTestCase

from minisip.webrtc import mccp
from minisip.webrtc.mccp import (
    Answer,
    Call,
    CallRequested,
    Close,
    Dtmf,
    DtmfRequested,
    Error,
    Hangup,
    HangupRequested,
    Limits,
    LocalProtocolError,
    MccpError,
    Output,
    Progress,
    Session,
    State,
    parse,
    serialize,
)

OFFER = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\n"
ANSWER = "v=0\r\no=minisip 2 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 UDP/TLS/RTP/SAVPF 0\r\n"


def frame(**fields: object) -> str:
    return json.dumps(fields)


def call_frame(call: str = "c1", **overrides: object) -> str:
    fields: dict[str, object] = {"op": "call", "call": call, "caller": "100", "password": "secret",
                                 "callee": "101", "sdp": OFFER}
    fields.update(overrides)
    return frame(**{k: v for k, v in fields.items() if v is not None})


def sent(output: Output) -> list[dict[str, object]]:
    return [json.loads(text) for text in output.send]


class ParseTests(SynchronousTestCase):
    """Each message of both directions, from the documented examples, and back."""

    def test_call(self) -> None:
        self.assertEqual(parse(call_frame()), Call("c1", "100", "secret", "101", OFFER))

    def test_progress_states(self) -> None:
        self.assertEqual(parse(frame(op="progress", call="c1", state="trying", status=100)), Progress("c1", "trying"))
        self.assertEqual(parse(frame(op="progress", call="c1", state="ringing")), Progress("c1", "ringing"))
        early = parse(frame(op="progress", call="c1", state="early", sdp=ANSWER))
        self.assertEqual(early, Progress("c1", "early", ANSWER))
        self.assertEqual([Progress("c", s).status for s in ("trying", "ringing", "early")], [100, 180, 183])

    def test_progress_ringing_sdp_is_dropped(self) -> None:
        self.assertEqual(parse(frame(op="progress", call="c1", state="ringing", sdp=ANSWER)), Progress("c1", "ringing"))

    def test_answer(self) -> None:
        self.assertEqual(parse(frame(op="answer", call="c1", sdp=ANSWER)), Answer("c1", ANSWER))

    def test_hangup(self) -> None:
        self.assertEqual(parse(frame(op="hangup", call="c1", status=486, reason="Busy Here")),
                         Hangup("c1", 486, "Busy Here"))
        self.assertEqual(parse(frame(op="hangup", call="c1")), Hangup("c1", None, ""))

    def test_dtmf(self) -> None:
        self.assertEqual(parse(frame(op="dtmf", call="c1", digits="12#*ad", duration=160)),
                         Dtmf("c1", "12#*AD", 160))
        self.assertEqual(parse(frame(op="dtmf", call="c1", digits="5")), Dtmf("c1", "5", 100))

    def test_error(self) -> None:
        self.assertEqual(parse(frame(op="error", code="busy", reason="one call", call="c2")),
                         Error("busy", "one call", "c2"))
        self.assertEqual(parse(frame(op="error", code="bad-json")), Error("bad-json", "", None))

    def test_bytes_and_unknown_fields(self) -> None:
        text = frame(op="answer", call="c1", sdp=ANSWER, future="ignored").encode("utf-8")
        self.assertEqual(parse(text), Answer("c1", ANSWER))

    def test_round_trip(self) -> None:
        for message in [
            Call("c1", "100", "pässword", "101", OFFER),
            Progress("c1", "trying"), Progress("c1", "ringing"), Progress("c1", "early", ANSWER),
            Answer("c1", ANSWER), Hangup("c1", 200, "Normal clearing"), Hangup("c1", None, "bye"),
            Dtmf("c1", "123#", 100), Error("flood", "too fast"), Error("busy", "one call", "c2"),
        ]:
            self.assertEqual(parse(serialize(message)), message)

    def test_serialize_is_compact_and_op_first(self) -> None:
        self.assertEqual(serialize(Progress("c1", "ringing")), '{"op":"progress","call":"c1","state":"ringing","status":180}')
        self.assertEqual(serialize(Hangup("c1", 486, "Busy Here")),
                         '{"op":"hangup","call":"c1","status":486,"reason":"Busy Here"}')

    def test_serialize_refuses_other_objects(self) -> None:
        self.assertRaises(TypeError, serialize, object())  # type: ignore[arg-type]


class ParseErrorTests(SynchronousTestCase):
    """Every way a frame can be wrong gives MccpError with the documented code and a reason that says why."""

    CASES: list[tuple[str | bytes, str, str]] = [
        ("{", "bad-json", "not JSON"),
        ("", "bad-json", "not JSON"),
        (b"\xff\xfe", "bad-json", "UTF-8"),
        ("[1, 2]", "bad-json", "JSON object"),
        ('"call"', "bad-json", "JSON object"),
        ('{"op": "dtmf", "call": "c1", "digits": "1", "duration": NaN}', "bad-json", "NaN"),
        ("[" * 100000, "bad-json", "not JSON"),
        (frame(call="c1"), "bad-message", '"op" is missing'),
        (frame(op=5, call="c1"), "bad-message", '"op" must be a string'),
        (frame(op="register", call="c1"), "unknown-op", "unknown op 'register'"),
        (frame(op="answer", sdp=ANSWER), "bad-message", '"call" is missing'),
        (frame(op="answer", call=7, sdp=ANSWER), "bad-message", '"call" must be a string'),
        (frame(op="answer", call="", sdp=ANSWER), "bad-message", '"call" must be 1 to 64'),
        (frame(op="answer", call="x" * 65, sdp=ANSWER), "bad-message", '"call" must be 1 to 64'),
        (frame(op="answer", call="a b", sdp=ANSWER), "bad-message", '"call" must be 1 to 64'),
        (call_frame(caller=None), "bad-message", '"caller" is missing'),
        (call_frame(caller=100), "bad-message", '"caller" must be a string'),
        (call_frame(caller="1 0"), "bad-message", '"caller" must be 1 to 64'),
        (call_frame(callee="<sip:101@x>"), "bad-message", '"callee" must be 1 to 64'),
        (call_frame(password=None), "bad-message", '"password" is missing'),
        (call_frame(password="p" * 129), "bad-message", '"password" is longer than 128'),
        (call_frame(password="a\nb"), "bad-message", "control characters"),
        (call_frame(sdp=None), "bad-message", '"sdp" is missing'),
        (call_frame(sdp="hello"), "bad-message", "starting with v=0"),
        (frame(op="progress", call="c1", state="queued"), "bad-message", '"state" must be trying, ringing or early'),
        (frame(op="progress", call="c1", state="early"), "bad-message", '"sdp" is missing'),
        (frame(op="answer", call="c1"), "bad-message", '"sdp" is missing'),
        (frame(op="hangup", call="c1", status="486"), "bad-message", '"status" must be an integer'),
        (frame(op="hangup", call="c1", status=True), "bad-message", '"status" must be an integer'),
        (frame(op="hangup", call="c1", status=180), "bad-message", "200-699"),
        (frame(op="hangup", call="c1", status=700), "bad-message", "200-699"),
        (frame(op="hangup", call="c1", reason="r" * 129), "bad-message", '"reason" is longer than 128'),
        (frame(op="dtmf", call="c1"), "bad-message", '"digits" is missing'),
        (frame(op="dtmf", call="c1", digits="12E"), "bad-message", "0-9 * # A-D"),
        (frame(op="dtmf", call="c1", digits="1" * 33), "bad-message", "0-9 * # A-D"),
        (frame(op="dtmf", call="c1", digits="1", duration=39), "bad-message", "40 to 6000"),
        (frame(op="dtmf", call="c1", digits="1", duration=6001), "bad-message", "40 to 6000"),
        (frame(op="dtmf", call="c1", digits="1", duration=1.5), "bad-message", '"duration" must be an integer'),
        (frame(op="error"), "bad-message", '"code" is missing'),
        (frame(op="error", code="x", call=""), "bad-message", '"call" must be 1 to 64'),
    ]

    def test_cases(self) -> None:
        for text, code, fragment in self.CASES:
            with self.subTest(text=text[:80]):
                error = self.assertRaises(MccpError, parse, text)
                self.assertEqual(error.code, code)
                self.assertIn(fragment, error.reason)
                self.assertLessEqual(len(error.reason), mccp.MAX_REASON)

    def test_error_names_the_call_when_readable(self) -> None:
        self.assertEqual(self.assertRaises(MccpError, parse, call_frame("c9", callee="")).call, "c9")
        self.assertIsNone(self.assertRaises(MccpError, parse, call_frame("bad id", callee="")).call)

    def test_every_code_documented_with_close_codes(self) -> None:
        fatal = {code: close for code, close in mccp.ERROR_CODES.items() if close is not None}
        self.assertEqual(fatal, {"binary-frame": 1003, "too-big": 1009, "flood": 1008, "too-many-errors": 1008})
        self.assertIsNone(MccpError("busy", "x").close_code)
        self.assertRaises(ValueError, MccpError, "nonsense", "x")
        self.assertEqual(str(MccpError("busy", "one call")), "busy: one call")


class SessionCallTests(SynchronousTestCase):
    """A call's way through the server-side session, from the client's frames and the gateway's reports."""

    def setUp(self) -> None:
        self.session = Session()

    def start(self, call: str = "c1") -> Output:
        return self.session.receive(call_frame(call))

    def test_call_accepted_sends_trying(self) -> None:
        out = self.start()
        self.assertEqual(out.events, (CallRequested("c1", "100", "secret", "101", OFFER),))
        self.assertEqual(sent(out), [{"op": "progress", "call": "c1", "state": "trying", "status": 100}])
        self.assertIsNone(out.close)
        self.assertEqual((self.session.state, self.session.call), (State.CALLING, "c1"))

    def test_ringing_early_answer(self) -> None:
        self.start()
        out = self.session.progress("c1", "ringing")
        self.assertEqual(sent(out), [{"op": "progress", "call": "c1", "state": "ringing", "status": 180}])
        self.assertEqual(self.session.state, State.RINGING)
        out = self.session.progress("c1", "early", ANSWER)
        self.assertEqual(sent(out), [{"op": "progress", "call": "c1", "state": "early", "status": 183, "sdp": ANSWER}])
        self.assertEqual(self.session.state, State.EARLY)
        out = self.session.progress("c1", "ringing")  # a 180 after a 183 (another fork) rings again
        self.assertEqual(self.session.state, State.RINGING)
        out = self.session.answer("c1", ANSWER)
        self.assertEqual(sent(out), [{"op": "answer", "call": "c1", "sdp": ANSWER}])
        self.assertEqual(self.session.state, State.CONNECTED)

    def test_answer_straight_from_calling_and_early(self) -> None:
        self.start()
        self.session.answer("c1", ANSWER)
        self.assertEqual(self.session.state, State.CONNECTED)
        self.session.hangup("c1", 200, "")
        self.start("c2")
        self.session.progress("c2", "early", ANSWER)
        self.session.answer("c2", ANSWER)
        self.assertEqual(self.session.state, State.CONNECTED)

    def test_server_hangup_from_every_call_state(self) -> None:
        steps = {
            State.CALLING: [],
            State.RINGING: [lambda s, c: s.progress(c, "ringing")],
            State.EARLY: [lambda s, c: s.progress(c, "early", ANSWER)],
            State.CONNECTED: [lambda s, c: s.answer(c, ANSWER)],
        }
        for index, (state, actions) in enumerate(steps.items()):
            call = f"c{index}"
            self.start(call)
            for action in actions:
                action(self.session, call)
            self.assertEqual(self.session.state, state)
            out = self.session.hangup(call, 486, "Busy Here")
            self.assertEqual(sent(out), [{"op": "hangup", "call": call, "status": 486, "reason": "Busy Here"}])
            self.assertEqual(out.events, ())
            self.assertEqual((self.session.state, self.session.call), (State.IDLE, None))

    def test_client_hangup_from_every_call_state(self) -> None:
        for index, action in enumerate([None, "ringing", "early", "answer"]):
            call = f"c{index}"
            self.start(call)
            if action == "answer":
                self.session.answer(call, ANSWER)
            elif action == "early":
                self.session.progress(call, "early", ANSWER)
            elif action:
                self.session.progress(call, action)
            out = self.session.receive(frame(op="hangup", call=call, reason="user"))
            self.assertEqual(out.events, (HangupRequested(call, None, "user"),))
            self.assertEqual(out.send, ())
            self.assertEqual(self.session.state, State.IDLE)

    def test_client_hangup_with_status(self) -> None:
        self.start()
        out = self.session.receive(frame(op="hangup", call="c1", status=603, reason="Decline"))
        self.assertEqual(out.events, (HangupRequested("c1", 603, "Decline"),))

    def test_dtmf_when_connected_or_early(self) -> None:
        self.start()
        self.session.progress("c1", "early", ANSWER)
        out = self.session.receive(frame(op="dtmf", call="c1", digits="1"))
        self.assertEqual(out.events, (DtmfRequested("c1", "1", 100),))
        self.session.answer("c1", ANSWER)
        out = self.session.receive(frame(op="dtmf", call="c1", digits="#9", duration=250))
        self.assertEqual(out.events, (DtmfRequested("c1", "#9", 250),))
        self.assertEqual(out.send, ())

    def test_dtmf_before_media_is_wrong_state(self) -> None:
        self.start()
        self.session.progress("c1", "ringing")
        out = self.session.receive(frame(op="dtmf", call="c1", digits="1"))
        self.assertEqual(out.events, ())
        [error] = sent(out)
        self.assertEqual((error["code"], error["call"]), ("wrong-state", "c1"))
        self.assertIn("ringing", error["reason"])
        self.assertEqual(self.session.state, State.RINGING)

    def test_second_call_is_busy_and_first_survives(self) -> None:
        self.start()
        out = self.session.receive(call_frame("c2"))
        self.assertEqual(out.events, ())
        self.assertEqual(sent(out), [{"op": "error", "code": "busy", "call": "c2",
                                      "reason": "this connection already has call c1; one call at a time"}])
        self.assertEqual((self.session.state, self.session.call), (State.CALLING, "c1"))

    def test_unknown_call(self) -> None:
        out = self.session.receive(frame(op="hangup", call="c1"))
        self.assertEqual(sent(out)[0]["code"], "unknown-call")
        self.assertIn("there is no call", sent(out)[0]["reason"])
        self.start()
        for text in (frame(op="hangup", call="c7"), frame(op="dtmf", call="c7", digits="1")):
            out = self.session.receive(text)
            self.assertEqual(out.events, ())
            self.assertEqual(sent(out)[0]["code"], "unknown-call")
            self.assertIn("the current call is c1", sent(out)[0]["reason"])
        self.assertEqual(self.session.state, State.CALLING)

    def test_server_ops_from_client_are_wrong_state(self) -> None:
        self.start()
        for text in (frame(op="progress", call="c1", state="ringing"), frame(op="registered", user="100"),
                     frame(op="incoming", call="c1", caller="101", callee="100", sdp=OFFER)):
            out = self.session.receive(text)
            self.assertEqual(sent(out)[0]["code"], "wrong-state")
            self.assertIn("sent by the server", sent(out)[0]["reason"])
        self.assertEqual(self.session.state, State.CALLING)

    def test_client_answer_to_its_own_call_is_wrong_state(self) -> None:
        self.start()
        out = self.session.receive(frame(op="answer", call="c1", sdp=ANSWER))
        self.assertEqual(sent(out)[0]["code"], "wrong-state")
        self.assertIn("only an incoming call is answered by the client", sent(out)[0]["reason"])
        self.assertEqual(self.session.state, State.CALLING)

    def test_client_error_frame_is_ignored(self) -> None:
        self.start()
        self.assertEqual(self.session.receive(frame(op="error", code="bad-message", call="c1")), Output())
        self.assertEqual(self.session.state, State.CALLING)

    def test_bad_frames_keep_the_call(self) -> None:
        self.start()
        for text in ("{", frame(op="nope"), frame(op="dtmf", call="c1", digits="x")):
            out = self.session.receive(text)
            self.assertEqual((out.events, out.close), ((), None))
            self.assertEqual(len(out.send), 1)
        self.assertEqual(self.session.state, State.CALLING)

    def test_new_call_after_the_last_one_ended(self) -> None:
        self.start()
        self.session.hangup("c1", 404, "Not Found")
        out = self.start("c1")  # the same id may be reused once the call is over
        self.assertEqual(out.events[0], CallRequested("c1", "100", "secret", "101", OFFER))


class SessionGatewayMisuseTests(SynchronousTestCase):
    """Gateway reports for a call that already ended are dropped; impossible ones are a local error."""

    def setUp(self) -> None:
        self.session = Session()
        self.session.receive(call_frame("c1"))

    def test_stale_reports_are_dropped(self) -> None:
        self.session.receive(frame(op="hangup", call="c1"))
        self.assertEqual(self.session.progress("c1", "ringing"), Output())
        self.assertEqual(self.session.answer("c1", ANSWER), Output())
        self.assertEqual(self.session.hangup("c1", 487, "Request Terminated"), Output())
        self.assertEqual(self.session.answer("other", ANSWER), Output())
        self.assertEqual(self.session.state, State.IDLE)

    def test_impossible_reports_raise(self) -> None:
        self.assertRaises(LocalProtocolError, self.session.progress, "c1", "trying")
        self.assertRaises(LocalProtocolError, self.session.progress, "c1", "early")
        self.assertRaises(LocalProtocolError, self.session.progress, "c1", "ringing", ANSWER)
        self.assertRaises(LocalProtocolError, self.session.hangup, "c1", 100, "x")
        self.session.answer("c1", ANSWER)
        self.assertRaises(LocalProtocolError, self.session.progress, "c1", "ringing")
        self.assertRaises(LocalProtocolError, self.session.answer, "c1", ANSWER)
        self.assertEqual(self.session.state, State.CONNECTED)

    def test_hangup_reason_is_cleaned(self) -> None:
        out = self.session.hangup("c1", 500, "bad\r\nthing" + "x" * 300)
        [message] = [parse(text) for text in out.send]
        assert isinstance(message, Hangup)
        self.assertTrue(message.reason.startswith("bad  thing"))
        self.assertEqual(len(message.reason), mccp.MAX_REASON)


class SessionLimitTests(SynchronousTestCase):
    """Oversized frames, binary frames, floods and error storms close the connection with a code."""

    def assertClosed(self, out: Output, code: str, close_code: int) -> None:  # noqa: N802
        self.assertEqual(out.close, Close(close_code, code))
        self.assertEqual(sent(out)[0]["code"], code)

    def test_too_big(self) -> None:
        session = Session(Limits(max_frame=1000))
        session.receive(call_frame())
        out = session.receive(frame(op="dtmf", call="c1", digits="1", pad="x" * 1000))
        self.assertClosed(out, "too-big", 1009)
        self.assertEqual(out.events, (HangupRequested("c1", None, "a frame may hold at most 1000 bytes"),))
        self.assertEqual(session.state, State.CLOSED)

    def test_frame_size_counts_utf8_bytes(self) -> None:
        session = Session(Limits(max_frame=100))
        self.assertIsNone(session.receive("é" * 50).close)
        self.assertClosed(Session(Limits(max_frame=100)).receive("é" * 51), "too-big", 1009)

    def test_binary_frame(self) -> None:
        session = Session()
        self.assertClosed(session.receive(call_frame().encode(), is_binary=True), "binary-frame", 1003)

    def test_flood_and_refill(self) -> None:
        session = Session(Limits(rate=2, burst=3))
        ping = frame(op="error", code="x")
        for _ in range(3):
            self.assertIsNone(session.receive(ping, now=10.0).close)
        self.assertEqual(session.receive(call_frame(), now=10.5).close, None)  # one token back after 0.5 s
        out = session.receive(ping, now=10.5)
        self.assertClosed(out, "flood", 1008)
        self.assertEqual(out.events, (HangupRequested("c1", None, "more than 2 messages per second"),))

    def test_clock_going_back_gives_no_tokens(self) -> None:
        session = Session(Limits(rate=1, burst=1))
        self.assertIsNone(session.receive(frame(op="error", code="x"), now=100.0).close)
        self.assertIsNotNone(session.receive(frame(op="error", code="x"), now=50.0).close)

    def test_too_many_errors(self) -> None:
        session = Session(Limits(max_errors=3))
        for _ in range(3):
            self.assertIsNone(session.receive("nonsense").close)
        self.assertClosed(session.receive("nonsense"), "too-many-errors", 1008)

    def test_closed_session_ignores_everything(self) -> None:
        session = Session()
        session.receive(b"x", is_binary=True)
        self.assertEqual(session.receive(call_frame()), Output())
        self.assertEqual(session.connection_lost(), Output())
        self.assertEqual(session.close(), Output())
        self.assertEqual(session.hangup("c1", 200, ""), Output())


class SessionConnectionTests(SynchronousTestCase):
    """The socket's end hangs up the call it held."""

    def test_connection_lost_hangs_up(self) -> None:
        session = Session()
        session.receive(call_frame())
        session.answer("c1", ANSWER)
        out = session.connection_lost()
        self.assertEqual(out, Output((HangupRequested("c1", None, "connection closed"),)))
        self.assertEqual(session.state, State.CLOSED)

    def test_connection_lost_idle(self) -> None:
        session = Session()
        self.assertEqual(session.connection_lost(), Output())
        self.assertEqual(session.state, State.CLOSED)

    def test_server_close_tells_both_sides(self) -> None:
        session = Session()
        session.receive(call_frame())
        out = session.close(1001, "server shutting down")
        self.assertEqual(out.events, (HangupRequested("c1", None, "server shutting down"),))
        self.assertEqual(sent(out), [{"op": "hangup", "call": "c1", "status": 503, "reason": "server shutting down"}])
        self.assertEqual(out.close, Close(1001, "server shutting down"))

    def test_server_close_idle(self) -> None:
        self.assertEqual(Session().close(), Output((), (), Close(1001, "server shutting down")))
