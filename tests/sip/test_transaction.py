"""Tests for minisip.sip.transaction: RFC 3261 17 state machines with the RFC 6026 Accepted states."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from minisip.sip.message import Request, Response, make_response, parse_message
from minisip.sip.timers import TimerQueue
from minisip.sip.transaction import (
    ACCEPTED,
    BRANCH_COOKIE,
    CALLING,
    COMPLETED,
    CONFIRMED,
    PROCEEDING,
    TERMINATED,
    TRYING,
    ClientTransaction,
    ServerTransaction,
    Timers,
    TransactionLayer,
    new_branch,
)
from minisip.sip.types import Addr

UDP = Addr("udp", "192.0.2.10", 5060)
UDP_OTHER = Addr("udp", "192.0.2.20", 5060)
TCP = Addr("tcp", "192.0.2.10", 5060, conn=7)

# Timer G / E / 2xx retransmission schedule with the default timers: T1 doubling, capped at T2 = 4 s,
# until 64*T1 = 32 s.
CAPPED_SCHEDULE = [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
# Timer A is not capped.
TIMER_A_SCHEDULE = [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]


def request(method: str = "INVITE", branch: str | None = "z9hG4bKbranch1", cseq: int = 1,
            cseq_method: str | None = None, to_tag: str | None = None,
            via: str = "SIP/2.0/UDP 192.0.2.10:5060", call_id: str = "call-1@192.0.2.10",
            uri: str = "sip:100@example.com", routes: Iterable[str] = (), from_tag: str = "ftag1") -> Request:
    lines = [
        f"{method} {uri} SIP/2.0",
        f"Via: {via}" + (f";branch={branch}" if branch else ""),
        "Max-Forwards: 70",
        f"From: \"Bob\" <sip:200@example.com>;tag={from_tag}",
        "To: <sip:100@example.com>" + (f";tag={to_tag}" if to_tag else ""),
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {cseq_method or method}",
        *[f"Route: {r}" for r in routes],
        "Content-Length: 0",
        "",
        "",
    ]
    msg = parse_message("\r\n".join(lines).encode())
    assert isinstance(msg, Request)
    return msg


def response_to(req: Request, status: int, to_tag: str | None = "ttag9") -> Response:
    """The response a peer would send, parsed back from bytes as the transport would deliver it."""
    msg = parse_message(make_response(req, status, to_tag=to_tag).to_bytes())
    assert isinstance(msg, Response)
    return msg


class Recorder:
    """The layer's ``send`` callback: keeps (time, bytes, target)."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.sent: list[tuple[float, bytes, Addr]] = []

    def __call__(self, data: bytes, target: Addr) -> None:
        self.sent.append((self.clock.seconds(), data, target))

    def messages(self) -> list[Request | Response]:
        return [parse_message(d) for _, d, _ in self.sent]

    def times(self) -> list[float]:
        return [t for t, _, _ in self.sent]


class FakeTU:
    def __init__(self) -> None:
        self.requests: list[tuple[ServerTransaction, Request]] = []
        self.acks: list[tuple[Request, Addr]] = []
        self.strays: list[tuple[Response, Addr]] = []
        self.on_request: Callable[[ServerTransaction, Request], None] | None = None
        self.on_ack: Callable[[Request, Addr], None] | None = None

    def request_received(self, txn: ServerTransaction, request: Request) -> None:
        self.requests.append((txn, request))
        if self.on_request is not None:
            self.on_request(txn, request)

    def ack_received(self, request: Request, source: Addr) -> None:
        self.acks.append((request, source))
        if self.on_ack is not None:
            self.on_ack(request, source)

    def stray_response(self, response: Response, source: Addr) -> None:
        self.strays.append((response, source))


class ClientCalls:
    """on_response / on_timeout callbacks of a client transaction."""

    def __init__(self) -> None:
        self.responses: list[Response] = []
        self.timeouts = 0

    def on_response(self, response: Response) -> None:
        self.responses.append(response)

    def on_timeout(self) -> None:
        self.timeouts += 1


class LayerTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.send = Recorder(self.clock)
        self.tu = FakeTU()
        self.layer = TransactionLayer(self.clock, self.send, self.tu)

    def tick(self, seconds: float, step: float = 0.25) -> None:
        """Advance the clock in small steps so that every send is stamped with its own time."""
        steps = int(seconds / step)
        for _ in range(steps):
            self.clock.advance(step)
        rest = seconds - steps * step
        if rest > 1e-9:
            self.clock.advance(rest)

    def assert_empty(self) -> None:
        """No transaction left and no timer pending."""
        self.assertEqual(len(self.layer), 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def server(self, req: Request, source: Addr = UDP) -> ServerTransaction:
        before = len(self.tu.requests)
        self.layer.receive_request(req, source)
        self.assertEqual(len(self.tu.requests), before + 1)
        return self.tu.requests[-1][0]

    def client(self, req: Request, target: Addr = UDP) -> tuple[ClientTransaction, ClientCalls]:
        calls = ClientCalls()
        txn = self.layer.send_request(req, target, calls.on_response, calls.on_timeout)
        return txn, calls


class NewBranchTests(SynchronousTestCase):
    def test_cookie_and_uniqueness(self) -> None:
        branches = {new_branch() for _ in range(1000)}
        self.assertEqual(len(branches), 1000)
        for b in branches:
            self.assertTrue(b.startswith(BRANCH_COOKIE))
            self.assertGreaterEqual(len(b), len(BRANCH_COOKIE) + 16)

    def test_timers_defaults(self) -> None:
        self.assertEqual(Timers(), Timers(0.5, 4.0, 5.0))


class InviteServerTests(LayerTestCase):
    def test_100_trying_immediately(self) -> None:
        req = request()
        txn = self.server(req)
        self.assertIs(self.tu.requests[0][1], req)
        self.assertEqual(txn.source, UDP)
        self.assertTrue(txn.is_invite)
        self.assertEqual(txn.state, PROCEEDING)
        self.assertEqual(len(self.send.sent), 1)
        trying = self.send.messages()[0]
        assert isinstance(trying, Response)
        self.assertEqual(trying.status, 100)
        self.assertEqual(self.send.sent[0][2], UDP)
        self.assertEqual(trying.top_via.branch, "z9hG4bKbranch1")
        self.assertEqual(trying.call_id, req.call_id)
        self.assertEqual(trying.cseq, (1, "INVITE"))
        self.assertIsNone(trying.to_tag)
        self.assertEqual(len(self.layer), 1)

    def test_no_100_when_the_tu_answers_at_once(self) -> None:
        """RFC 3261 17.2.1: the 100 is only needed when the TU does not answer straight away."""
        self.tu.on_request = lambda txn, req: txn.respond(make_response(req, 180, to_tag="t"))
        self.layer.receive_request(request(), UDP)
        self.assertEqual([m.status for m in self.send.messages()], [180])  # type: ignore[union-attr]
        self.layer.receive_request(request(), UDP)  # a retransmission gets the 180 again
        self.assertEqual([m.status for m in self.send.messages()], [180, 180])  # type: ignore[union-attr]

    def test_retransmission_resends_last_provisional(self) -> None:
        req = request()
        txn = self.server(req)
        self.layer.receive_request(request(), UDP)
        self.assertEqual(len(self.send.sent), 2)
        self.assertEqual(self.send.sent[1][1], self.send.sent[0][1])
        txn.respond(make_response(req, 180, to_tag="t1"))
        self.layer.receive_request(request(), UDP)
        self.assertEqual(len(self.send.sent), 4)
        self.assertEqual(self.send.sent[3][1], self.send.sent[2][1])
        self.assertEqual(len(self.tu.requests), 1)
        self.assertEqual(len(self.layer), 1)

    def test_error_timer_g_and_h_udp(self) -> None:
        req = request()
        txn = self.server(req)
        txn.respond(make_response(req, 486, to_tag="t1"))
        self.assertEqual(txn.state, COMPLETED)
        final = self.send.sent[1][1]
        self.tick(50)
        retrans = self.send.sent[2:]
        self.assertEqual([t for t, _, _ in retrans], CAPPED_SCHEDULE)
        self.assertTrue(all(d == final for _, d, _ in retrans))
        self.assertEqual(txn.state, TERMINATED)
        self.assertEqual(self.tu.acks, [])
        self.assert_empty()

    def test_timer_h_fires_at_64_t1(self) -> None:
        req = request()
        txn = self.server(req)
        txn.respond(make_response(req, 486, to_tag="t1"))
        self.tick(31.9)
        self.assertEqual(txn.state, COMPLETED)
        self.tick(0.1)
        self.assertEqual(txn.state, TERMINATED)
        self.assert_empty()

    def test_error_no_retransmission_on_tcp(self) -> None:
        req = request(via="SIP/2.0/TCP 192.0.2.10:5060")
        txn = self.server(req, TCP)
        txn.respond(make_response(req, 486, to_tag="t1"))
        self.tick(31.9)
        self.assertEqual(len(self.send.sent), 2)
        self.assertEqual(self.send.sent[1][2], TCP)
        self.tick(0.1)
        self.assertEqual(txn.state, TERMINATED)
        self.assert_empty()

    def test_retransmission_in_completed_resends_final(self) -> None:
        req = request()
        txn = self.server(req)
        txn.respond(make_response(req, 486, to_tag="t1"))
        self.layer.receive_request(request(), UDP)
        self.assertEqual(len(self.send.sent), 3)
        self.assertEqual(self.send.sent[2][1], self.send.sent[1][1])
        self.assertEqual(len(self.tu.requests), 1)

    def test_ack_confirms_then_timer_i(self) -> None:
        req = request()
        txn = self.server(req)
        txn.respond(make_response(req, 486, to_tag="t1"))
        self.tick(0.5)  # one Timer G retransmission
        self.assertEqual(len(self.send.sent), 3)
        self.layer.receive_request(request("ACK", to_tag="t1"), UDP)
        self.assertEqual(txn.state, CONFIRMED)
        self.assertEqual(self.tu.acks, [])
        # ACK and INVITE retransmissions are absorbed, Timer G stopped.
        self.layer.receive_request(request("ACK", to_tag="t1"), UDP)
        self.layer.receive_request(request(), UDP)
        self.tick(4.9)
        self.assertEqual(len(self.send.sent), 3)
        self.assertEqual(self.tu.acks, [])
        self.assertEqual(len(self.tu.requests), 1)
        self.assertEqual(txn.state, CONFIRMED)
        self.tick(0.1)  # Timer I = T4
        self.assertEqual(txn.state, TERMINATED)
        self.assert_empty()

    def test_ack_on_tcp_terminates_at_once(self) -> None:
        via = "SIP/2.0/TCP 192.0.2.10:5060"
        req = request(via=via)
        txn = self.server(req, TCP)
        txn.respond(make_response(req, 603, to_tag="t1"))
        self.layer.receive_request(request("ACK", to_tag="t1", via=via), TCP)
        self.assertEqual(txn.state, TERMINATED)
        self.assert_empty()

    def test_ack_before_final_is_absorbed(self) -> None:
        req = request()
        txn = self.server(req)
        self.layer.receive_request(request("ACK"), UDP)
        self.assertEqual(txn.state, PROCEEDING)
        self.assertEqual(self.tu.acks, [])
        self.assertEqual(len(self.send.sent), 1)

    def test_2xx_accepted_absorbs_retransmissions(self) -> None:
        req = request()
        txn = self.server(req)
        txn.respond(make_response(req, 200, to_tag="t1"))
        self.assertEqual(txn.state, ACCEPTED)
        self.assertEqual(len(self.send.sent), 2)
        self.layer.receive_request(request(), UDP)
        self.layer.receive_request(request(), UDP)
        self.assertEqual(len(self.send.sent), 2)  # absorbed: the TU core retransmits the 2xx
        self.assertEqual(len(self.tu.requests), 1)
        # The transaction itself never retransmits a 2xx.
        self.tick(31.9)
        self.assertEqual(len(self.send.sent), 2)
        self.assertEqual(txn.state, ACCEPTED)
        self.tick(0.1)  # Timer L
        self.assertEqual(txn.state, TERMINATED)
        self.assert_empty()

    def test_2xx_retransmitted_by_tu_in_accepted(self) -> None:
        req = request()
        txn = self.server(req)
        ok = make_response(req, 200, to_tag="t1")
        txn.respond(ok)
        txn.respond(ok)
        self.assertEqual(len(self.send.sent), 3)
        self.assertEqual(self.send.sent[2][1], self.send.sent[1][1])
        # Non-2xx in Accepted is refused.
        txn.respond(make_response(req, 500, to_tag="t1"))
        self.assertEqual(len(self.send.sent), 3)

    def test_ack_in_accepted_goes_to_tu(self) -> None:
        req = request()
        txn = self.server(req)
        txn.respond(make_response(req, 200, to_tag="t1"))
        same_branch = request("ACK", to_tag="t1")
        self.layer.receive_request(same_branch, UDP)
        new_branch_ack = request("ACK", to_tag="t1", branch="z9hG4bKack2")
        self.layer.receive_request(new_branch_ack, UDP)
        self.assertEqual(self.tu.acks, [(same_branch, UDP), (new_branch_ack, UDP)])
        self.assertEqual(txn.state, ACCEPTED)

    def test_responses_after_final_are_ignored(self) -> None:
        req = request()
        txn = self.server(req)
        txn.respond(make_response(req, 487, to_tag="t1"))
        txn.respond(make_response(req, 200, to_tag="t1"))
        txn.respond(make_response(req, 180, to_tag="t1"))
        self.assertEqual(len(self.send.sent), 2)
        self.assertEqual(txn.state, COMPLETED)
        self.tick(40)
        txn.respond(make_response(req, 200, to_tag="t1"))
        self.assertEqual(txn.state, TERMINATED)
        self.assert_empty()

    def test_response_bytes_serialized_once(self) -> None:
        req = request()
        txn = self.server(req)
        resp = make_response(req, 486, to_tag="t1")
        txn.respond(resp)
        resp.set("Reason", "changed after sending")
        self.tick(0.5)
        self.assertEqual(self.send.sent[2][1], self.send.sent[1][1])
        self.assertIs(txn.last_response, resp)  # kept on INVITE: ACK matching needs its To tag
        self.assertIsNone(txn.request)

    def test_terminated_transaction_is_forgotten(self) -> None:
        req = request()
        txn = self.server(req)
        txn.respond(make_response(req, 200, to_tag="t1"))
        self.tick(32)
        self.assertEqual(txn.state, TERMINATED)
        # After Timer L a late copy is a new request again (RFC 6026: Timer L covers the retransmissions).
        txn2 = self.server(request())
        self.assertIsNot(txn2, txn)
        self.assertEqual(len(self.layer), 1)

    def test_different_sent_by_is_a_different_transaction(self) -> None:
        self.server(request())
        self.server(request(via="SIP/2.0/UDP 192.0.2.11:5060"))
        self.server(request(via="SIP/2.0/UDP 192.0.2.10:5070"))
        self.assertEqual(len(self.layer), 3)


class NonInviteServerTests(LayerTestCase):
    def test_states_and_timer_j_udp(self) -> None:
        req = request("OPTIONS")
        txn = self.server(req)
        self.assertFalse(txn.is_invite)
        self.assertEqual(txn.state, TRYING)
        self.assertEqual(self.send.sent, [])  # no 100 Trying for non-INVITE
        self.layer.receive_request(request("OPTIONS"), UDP)
        self.assertEqual(self.send.sent, [])  # absorbed in Trying
        txn.respond(make_response(req, 183, to_tag="t1"))
        self.assertEqual(txn.state, PROCEEDING)
        self.layer.receive_request(request("OPTIONS"), UDP)
        self.assertEqual(len(self.send.sent), 2)
        self.assertEqual(self.send.sent[1][1], self.send.sent[0][1])
        txn.respond(make_response(req, 200, to_tag="t1"))
        self.assertEqual(txn.state, COMPLETED)
        self.layer.receive_request(request("OPTIONS"), UDP)
        self.assertEqual(len(self.send.sent), 4)
        self.assertEqual(self.send.sent[3][1], self.send.sent[2][1])
        txn.respond(make_response(req, 500, to_tag="t1"))  # second final ignored
        self.assertEqual(len(self.send.sent), 4)
        self.assertEqual(len(self.tu.requests), 1)
        self.tick(31.9)
        self.assertEqual(len(self.send.sent), 4)  # the server never retransmits on its own
        self.assertEqual(txn.state, COMPLETED)
        self.tick(0.1)  # Timer J = 64*T1
        self.assertEqual(txn.state, TERMINATED)
        self.assert_empty()

    def test_completed_keeps_only_the_response_bytes(self) -> None:
        """Held for Timer J (32 s) after answering: no parsed request or Response, just what resending needs."""
        req = request("REGISTER")
        txn = self.server(req)
        self.assertIs(txn.request, req)
        txn.respond(make_response(req, 200, to_tag="t1"))
        self.assertEqual(txn.state, COMPLETED)
        self.assertIsNone(txn.request)
        self.assertIsNone(txn.last_response)
        self.assertEqual(repr(txn), "<ServerTransaction non-INVITE Completed udp:192.0.2.10:5060>")
        self.layer.receive_request(request("REGISTER"), UDP)
        self.assertEqual([d for _, d, _ in self.send.sent], [self.send.sent[0][1]] * 2)
        self.tick(32)
        self.assertEqual(txn.state, TERMINATED)
        self.assert_empty()

    def test_provisional_keeps_the_request(self) -> None:
        req = request("OPTIONS")
        txn = self.server(req)
        txn.respond(make_response(req, 183, to_tag="t1"))
        self.assertIs(txn.request, req)
        txn.respond(make_response(req, 200, to_tag="t1"))
        self.assertIsNone(txn.request)

    def test_timer_j_zero_on_tcp(self) -> None:
        req = request("REGISTER", via="SIP/2.0/TCP 192.0.2.10:5060")
        txn = self.server(req, TCP)
        txn.respond(make_response(req, 200, to_tag="t1"))
        self.assertEqual(txn.state, TERMINATED)
        self.assertEqual(self.send.sent[0][2], TCP)
        self.assert_empty()

    def test_synchronous_answer_on_tcp(self) -> None:
        self.tu.on_request = lambda txn, req: txn.respond(make_response(req, 200, to_tag="t"))
        self.layer.receive_request(request("OPTIONS", via="SIP/2.0/TCP 192.0.2.10:5060"), TCP)
        self.assertEqual(len(self.send.sent), 1)
        self.assert_empty()


class CancelTests(LayerTestCase):
    def test_cancel_is_its_own_transaction(self) -> None:
        inv = request()
        itxn = self.server(inv)
        cancel = request("CANCEL")
        ctxn = self.server(cancel)
        self.assertIsNot(ctxn, itxn)
        self.assertFalse(ctxn.is_invite)
        self.assertEqual(ctxn.state, TRYING)
        self.assertIs(self.layer.find_server_invite(cancel), itxn)
        ctxn.respond(make_response(cancel, 200, to_tag="t1"))
        itxn.respond(make_response(inv, 487, to_tag="t1"))
        self.assertEqual([(m.status, m.cseq[1]) for m in self.send.messages()],  # type: ignore[union-attr]
                         [(100, "INVITE"), (200, "CANCEL"), (487, "INVITE")])
        self.layer.receive_request(request("ACK", to_tag="t1"), UDP)
        self.assertEqual(itxn.state, CONFIRMED)
        self.tick(40)
        self.assert_empty()

    def test_find_server_invite_misses(self) -> None:
        self.assertIsNone(self.layer.find_server_invite(request("CANCEL")))
        inv = request()
        txn = self.server(inv)
        self.assertIsNone(self.layer.find_server_invite(request("CANCEL", branch="z9hG4bKother")))
        self.assertIsNone(self.layer.find_server_invite(request("CANCEL", via="SIP/2.0/UDP 192.0.2.99:5060")))
        # A non-INVITE transaction with the same branch is not an INVITE.
        self.server(request("OPTIONS", branch="z9hG4bKopt"))
        self.assertIsNone(self.layer.find_server_invite(request("CANCEL", branch="z9hG4bKopt")))
        txn.respond(make_response(inv, 200, to_tag="t1"))
        self.tick(32)
        self.assertIsNone(self.layer.find_server_invite(request("CANCEL")))

    def test_find_server_invite_rfc2543(self) -> None:
        txn = self.server(request(branch=None))
        self.assertIs(self.layer.find_server_invite(request("CANCEL", branch=None)), txn)
        self.assertIsNone(self.layer.find_server_invite(request("CANCEL", branch=None, cseq=2)))
        self.assertIsNone(self.layer.find_server_invite(request("CANCEL", branch=None, from_tag="other")))


class Rfc2543MatchingTests(LayerTestCase):
    def test_retransmission_without_cookie(self) -> None:
        req = request(branch=None)
        txn = self.server(req)
        self.layer.receive_request(request(branch=None), UDP)
        self.assertEqual(len(self.tu.requests), 1)
        self.assertEqual(len(self.send.sent), 2)  # the 100 again
        # An old-style branch without the cookie is matched the RFC 2543 way too.
        txn2 = self.server(request(branch="1234"))
        self.layer.receive_request(request(branch="1234"), UDP)
        self.assertEqual(len(self.tu.requests), 2)
        self.assertIsNot(txn2, txn)

    def test_each_field_distinguishes(self) -> None:
        self.server(request(branch=None))
        variants = [
            request(branch=None, uri="sip:101@example.com"),
            request(branch=None, from_tag="ftag2"),
            request(branch=None, call_id="call-2@192.0.2.10"),
            request(branch=None, cseq=2),
            request(branch=None, to_tag="x"),
            request(branch=None, via="SIP/2.0/UDP 192.0.2.10:5070"),
        ]
        for v in variants:
            self.server(v)
        self.assertEqual(len(self.layer), 1 + len(variants))

    def test_ack_matches_by_response_to_tag(self) -> None:
        req = request(branch=None)
        txn = self.server(req)
        txn.respond(make_response(req, 486, to_tag="t1"))
        wrong = request("ACK", branch=None, to_tag="zz")
        self.layer.receive_request(wrong, UDP)
        self.assertEqual(txn.state, COMPLETED)
        self.assertEqual(self.tu.acks, [(wrong, UDP)])  # no transaction: up to the TU
        self.layer.receive_request(request("ACK", branch=None, to_tag="t1"), UDP)
        self.assertEqual(txn.state, CONFIRMED)
        self.tick(5)
        self.assert_empty()

    def test_reinvite_ack(self) -> None:
        req = request(branch=None, to_tag="t1", cseq=5)
        txn = self.server(req)
        txn.respond(make_response(req, 491))
        self.layer.receive_request(request("ACK", branch=None, to_tag="t1", cseq=5), UDP)
        self.assertEqual(txn.state, CONFIRMED)

    def test_ack_for_2xx_in_accepted(self) -> None:
        req = request(branch=None)
        txn = self.server(req)
        txn.respond(make_response(req, 200, to_tag="t1"))
        ack = request("ACK", branch=None, to_tag="t1")
        self.layer.receive_request(ack, UDP)
        self.assertEqual(self.tu.acks, [(ack, UDP)])
        self.assertEqual(txn.state, ACCEPTED)

    def test_non_invite(self) -> None:
        req = request("OPTIONS", branch=None)
        txn = self.server(req)
        txn.respond(make_response(req, 200, to_tag="t1"))
        self.layer.receive_request(request("OPTIONS", branch=None), UDP)
        self.assertEqual(len(self.send.sent), 2)
        self.assertEqual(len(self.tu.requests), 1)
        self.tick(32)
        self.assert_empty()


class Reliable2xxTests(LayerTestCase):
    def test_retransmits_until_ack(self) -> None:
        req = request()
        txn = self.server(req)
        ok = make_response(req, 200, to_tag="t1")
        txn.respond(ok)
        timeouts: list[int] = []
        self.layer.send_2xx_reliably(ok, UDP, lambda: timeouts.append(1))
        self.assertEqual(len(self.send.sent), 2)  # nothing extra sent at once
        self.tick(0.5)
        self.tick(1.0)
        self.tick(2.0)
        self.assertEqual(self.send.times()[2:], [0.5, 1.5, 3.5])
        self.assertTrue(all(d == self.send.sent[1][1] for _, d, _ in self.send.sent[2:]))
        sent_at_ack: list[int] = []
        self.tu.on_ack = lambda ack, src: sent_at_ack.append(len(self.send.sent))
        ack = request("ACK", to_tag="t1", branch="z9hG4bKack")
        self.layer.receive_request(ack, UDP)
        self.assertEqual(self.tu.acks, [(ack, UDP)])
        self.tick(100)
        self.assertEqual(len(self.send.sent), 5)
        self.assertEqual(timeouts, [])
        self.assert_empty()

    def test_stopped_before_tu_hears_of_ack(self) -> None:
        req = request()
        ok = make_response(req, 200, to_tag="t1")
        self.layer.send_2xx_reliably(ok, UDP, lambda: None)
        self.assertEqual(len(self.layer), 1)
        live: list[int] = []
        self.tu.on_ack = lambda ack, src: live.append(len(self.layer))
        self.layer.receive_request(request("ACK", to_tag="t1", branch="z9hG4bKack"), UDP)
        self.assertEqual(live, [0])
        self.assert_empty()

    def test_ack_of_other_cseq_does_not_stop(self) -> None:
        ok = make_response(request(cseq=2), 200, to_tag="t1")
        self.layer.send_2xx_reliably(ok, UDP, lambda: None)
        self.layer.receive_request(request("ACK", to_tag="t1", branch="z9hG4bKack", cseq=1), UDP)
        self.tick(0.5)
        self.assertEqual(len(self.send.sent), 1)

    def test_times_out_without_ack(self) -> None:
        ok = make_response(request(), 200, to_tag="t1")
        timeouts: list[int] = []
        self.layer.send_2xx_reliably(ok, UDP, lambda: timeouts.append(1))
        self.tick(31.9)
        self.assertEqual(self.send.times(), CAPPED_SCHEDULE)
        self.assertEqual(timeouts, [])
        self.tick(0.1)
        self.assertEqual(timeouts, [1])
        self.tick(100)
        self.assertEqual(timeouts, [1])
        self.assertEqual(len(self.send.sent), len(CAPPED_SCHEDULE))
        self.assert_empty()

    def test_no_retransmission_on_tcp(self) -> None:
        ok = make_response(request(via="SIP/2.0/TCP 192.0.2.10:5060"), 200, to_tag="t1")
        timeouts: list[int] = []
        self.layer.send_2xx_reliably(ok, TCP, lambda: timeouts.append(1))
        self.tick(31.9)
        self.assertEqual(self.send.sent, [])
        self.tick(0.1)
        self.assertEqual(timeouts, [1])
        self.assert_empty()

    def test_second_call_replaces_first(self) -> None:
        ok = make_response(request(), 200, to_tag="t1")
        first: list[int] = []
        second: list[int] = []
        self.layer.send_2xx_reliably(ok, UDP, lambda: first.append(1))
        self.tick(10)
        self.layer.send_2xx_reliably(ok, UDP, lambda: second.append(1))
        self.assertEqual(len(self.layer), 1)
        self.tick(32)
        self.assertEqual((first, second), ([], [1]))
        self.assert_empty()


class InviteClientTests(LayerTestCase):
    def test_timer_a_and_b_udp(self) -> None:
        req = request()
        txn, calls = self.client(req)
        self.assertEqual(txn.state, CALLING)
        self.assertTrue(txn.is_invite)
        self.assertEqual(txn.target, UDP)
        self.tick(31.9)
        self.assertEqual(self.send.times(), [0.0] + TIMER_A_SCHEDULE)
        self.assertTrue(all(d == req.to_bytes() for _, d, _ in self.send.sent))
        self.assertEqual(calls.timeouts, 0)
        self.tick(0.1)  # Timer B = 64*T1
        self.assertEqual(calls.timeouts, 1)
        self.assertEqual(txn.state, TERMINATED)
        self.tick(100)
        self.assertEqual(len(self.send.sent), 1 + len(TIMER_A_SCHEDULE))
        self.assertEqual(calls.timeouts, 1)
        self.assert_empty()

    def test_timer_b_tcp_no_retransmission(self) -> None:
        _, calls = self.client(request(via="SIP/2.0/TCP 192.0.2.10:5060"), TCP)
        self.tick(31.9)
        self.assertEqual(len(self.send.sent), 1)
        self.assertEqual(self.send.sent[0][2], TCP)
        self.tick(0.1)
        self.assertEqual(calls.timeouts, 1)
        self.assert_empty()

    def test_custom_timers(self) -> None:
        self.layer = TransactionLayer(self.clock, self.send, self.tu, Timers(T1=0.125, T2=0.5, T4=1.0))
        _, calls = self.client(request())
        self.tick(7.875, step=0.125)
        self.assertEqual(self.send.times(), [0.0, 0.125, 0.375, 0.875, 1.875, 3.875, 7.875])
        self.assertEqual(calls.timeouts, 0)
        self.tick(0.125, step=0.125)  # Timer B = 64*T1 = 8 s
        self.assertEqual(calls.timeouts, 1)
        self.assert_empty()

    def test_provisional_stops_a_and_b(self) -> None:
        req = request()
        txn, calls = self.client(req)
        self.tick(0.5)
        ringing = response_to(req, 180)
        self.layer.receive_response(ringing, UDP)
        self.assertEqual(txn.state, PROCEEDING)
        self.assertEqual(calls.responses, [ringing])
        self.layer.receive_response(response_to(req, 183), UDP)
        self.assertEqual(len(calls.responses), 2)
        self.tick(100)
        self.assertEqual(len(self.send.sent), 2)
        self.assertEqual(calls.timeouts, 0)
        self.assertEqual(txn.state, PROCEEDING)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        txn.cancel_timers()
        self.assert_empty()

    def test_486_builds_ack(self) -> None:
        routes = ["<sip:proxy1.example.com;lr>", "<sip:proxy2.example.com;lr>"]
        req = request(routes=routes, cseq=7, uri="sip:100@192.0.2.10:5060")
        txn, calls = self.client(req)
        busy = response_to(req, 486, to_tag="busytag")
        self.layer.receive_response(busy, UDP)
        self.assertEqual(calls.responses, [busy])
        self.assertEqual(txn.state, COMPLETED)
        self.assertEqual(len(self.send.sent), 2)
        ack = self.send.messages()[1]
        assert isinstance(ack, Request)
        self.assertEqual(self.send.sent[1][2], UDP)
        self.assertEqual(ack.method, "ACK")
        self.assertEqual(str(ack.uri), "sip:100@192.0.2.10:5060")
        self.assertEqual(len(ack.vias), 1)
        self.assertEqual(ack.top_via.branch, req.top_via.branch)
        self.assertEqual(str(ack.top_via), str(req.top_via))
        self.assertEqual(ack.get("from"), req.get("from"))
        self.assertEqual(ack.to_tag, "busytag")
        self.assertEqual(ack.get("to"), busy.get("to"))
        self.assertEqual(ack.call_id, req.call_id)
        self.assertEqual(ack.cseq, (7, "ACK"))
        self.assertEqual(ack.get_all("route"), routes)
        self.assertEqual(ack.get("max-forwards"), "70")
        self.assertEqual(ack.body, b"")
        self.assertIsNone(txn.request)  # Completed resends the ACK bytes only
        # Retransmitted 486: the same ACK again, the TU is not told twice.
        self.layer.receive_response(response_to(req, 486, to_tag="busytag"), UDP)
        self.assertEqual(len(self.send.sent), 3)
        self.assertEqual(self.send.sent[2][1], self.send.sent[1][1])
        self.assertEqual(len(calls.responses), 1)
        self.tick(31.9)  # Timer D
        self.assertEqual(txn.state, COMPLETED)
        self.assertEqual(len(self.send.sent), 3)
        self.tick(0.1)
        self.assertEqual(txn.state, TERMINATED)
        self.assertEqual(calls.timeouts, 0)
        self.assert_empty()

    def test_error_after_provisional_on_tcp(self) -> None:
        req = request(via="SIP/2.0/TCP 192.0.2.10:5060")
        txn, calls = self.client(req, TCP)
        self.layer.receive_response(response_to(req, 180), TCP)
        self.layer.receive_response(response_to(req, 404), TCP)
        self.assertEqual([r.status for r in calls.responses], [180, 404])
        self.assertEqual(txn.state, TERMINATED)  # Timer D = 0
        ack = self.send.messages()[1]
        assert isinstance(ack, Request)
        self.assertEqual(ack.method, "ACK")
        self.assertEqual(self.send.sent[1][2], TCP)
        self.assert_empty()

    def test_2xx_accepted_and_timer_m(self) -> None:
        req = request()
        txn, calls = self.client(req)
        ok = response_to(req, 200)
        self.layer.receive_response(ok, UDP)
        self.assertEqual(txn.state, ACCEPTED)
        self.assertEqual(calls.responses, [ok])
        self.assertEqual(len(self.send.sent), 1)  # no ACK from the transaction for a 2xx
        self.tick(5)
        self.assertEqual(len(self.send.sent), 1)  # Timer A stopped
        ok2 = response_to(req, 200)
        self.layer.receive_response(ok2, UDP)
        forked = response_to(req, 200, to_tag="other-fork")
        self.layer.receive_response(forked, UDP)
        self.layer.receive_response(response_to(req, 180), UDP)  # ignored in Accepted
        self.assertEqual(calls.responses, [ok, ok2, forked])
        self.assertEqual(self.tu.strays, [])
        self.tick(26.9)
        self.assertEqual(txn.state, ACCEPTED)
        self.tick(0.1)  # Timer M = 64*T1 after the first 2xx
        self.assertEqual(txn.state, TERMINATED)
        self.assertEqual(calls.timeouts, 0)
        self.assert_empty()
        late = response_to(req, 200)
        self.layer.receive_response(late, UDP)
        self.assertEqual(self.tu.strays, [(late, UDP)])
        self.assertEqual(len(calls.responses), 3)

    def test_2xx_after_error_is_stray(self) -> None:
        req = request()
        txn, calls = self.client(req)
        self.layer.receive_response(response_to(req, 503), UDP)
        ok = response_to(req, 200, to_tag="late")
        self.layer.receive_response(ok, UDP)
        self.assertEqual(self.tu.strays, [(ok, UDP)])
        self.assertEqual(len(calls.responses), 1)
        self.assertEqual(txn.state, COMPLETED)

    def test_cancel_is_matched_by_cseq_method(self) -> None:
        inv = request()
        itxn, icalls = self.client(inv)
        cancel = request("CANCEL")  # same branch as the INVITE (RFC 3261 9.1)
        ctxn, ccalls = self.client(cancel)
        self.assertFalse(ctxn.is_invite)
        self.assertEqual(len(self.layer), 2)
        self.layer.receive_response(response_to(cancel, 200), UDP)
        self.layer.receive_response(response_to(inv, 487), UDP)
        self.assertEqual([r.status for r in ccalls.responses], [200])
        self.assertEqual([r.status for r in icalls.responses], [487])
        self.assertEqual(ctxn.state, COMPLETED)
        self.assertEqual(itxn.state, COMPLETED)
        self.tick(40)
        self.assert_empty()

    def test_unknown_response_is_stray(self) -> None:
        resp = response_to(request(branch="z9hG4bKnobody"), 200)
        self.layer.receive_response(resp, UDP_OTHER)
        self.assertEqual(self.tu.strays, [(resp, UDP_OTHER)])
        self.assertEqual(len(self.layer), 0)

    def test_send_request_refuses(self) -> None:
        noop = ClientCalls()
        self.assertRaises(ValueError, self.layer.send_request, request("ACK"), UDP, noop.on_response,
                          noop.on_timeout)
        self.assertRaises(ValueError, self.layer.send_request, request(branch=None), UDP, noop.on_response,
                          noop.on_timeout)
        self.assertRaises(ValueError, self.layer.send_request, request(branch="1234"), UDP, noop.on_response,
                          noop.on_timeout)
        self.client(request())
        self.assertRaises(ValueError, self.layer.send_request, request(), UDP, noop.on_response, noop.on_timeout)
        self.assertEqual(len(self.layer), 1)
        self.assertEqual(len(self.send.sent), 1)

    def test_cancel_timers_forgets(self) -> None:
        req = request()
        txn, calls = self.client(req)
        txn.cancel_timers()
        self.assertEqual(txn.state, TERMINATED)
        self.assert_empty()
        self.tick(100)
        self.assertEqual(calls.timeouts, 0)
        txn.cancel_timers()  # idempotent


class NonInviteClientTests(LayerTestCase):
    def test_timer_e_and_f_udp(self) -> None:
        req = request("OPTIONS")
        txn, calls = self.client(req)
        self.assertEqual(txn.state, TRYING)
        self.tick(31.9)
        self.assertEqual(self.send.times(), [0.0] + CAPPED_SCHEDULE)
        self.assertEqual(calls.timeouts, 0)
        self.tick(0.1)  # Timer F
        self.assertEqual(calls.timeouts, 1)
        self.assertEqual(txn.state, TERMINATED)
        self.tick(100)
        self.assertEqual(calls.timeouts, 1)
        self.assert_empty()

    def test_timer_e_is_t2_in_proceeding(self) -> None:
        req = request("REGISTER")
        txn, calls = self.client(req)
        self.tick(0.75)
        trying = response_to(req, 100, to_tag=None)
        self.layer.receive_response(trying, UDP)
        self.assertEqual(txn.state, PROCEEDING)
        self.assertEqual(calls.responses, [trying])
        self.tick(31.25)
        # Timer E was due at 1.5; in Proceeding it re-arms with T2.
        self.assertEqual(self.send.times(), [0.0, 0.5, 1.5, 5.5, 9.5, 13.5, 17.5, 21.5, 25.5, 29.5])
        self.assertEqual(calls.timeouts, 1)  # Timer F still applies in Proceeding
        self.assert_empty()

    def test_final_then_timer_k(self) -> None:
        req = request("OPTIONS")
        txn, calls = self.client(req)
        ok = response_to(req, 200)
        self.layer.receive_response(ok, UDP)
        self.assertEqual(txn.state, COMPLETED)
        self.assertEqual(calls.responses, [ok])
        self.layer.receive_response(response_to(req, 200), UDP)  # absorbed
        self.assertEqual(calls.responses, [ok])
        self.assertEqual(self.tu.strays, [])
        self.assertIsNone(txn.request)  # never sent again: only the state and Timer K remain
        self.tick(4.9)
        self.assertEqual(len(self.send.sent), 1)
        self.assertEqual(txn.state, COMPLETED)
        self.tick(0.1)  # Timer K = T4
        self.assertEqual(txn.state, TERMINATED)
        self.assertEqual(calls.timeouts, 0)
        self.assert_empty()

    def test_tcp(self) -> None:
        req = request("BYE", via="SIP/2.0/TCP 192.0.2.10:5060")
        txn, calls = self.client(req, TCP)
        self.tick(10)
        self.assertEqual(len(self.send.sent), 1)
        self.layer.receive_response(response_to(req, 481), TCP)
        self.assertEqual(txn.state, TERMINATED)  # Timer K = 0
        self.assertEqual([r.status for r in calls.responses], [481])
        self.assert_empty()

    def test_timer_f_tcp(self) -> None:
        _, calls = self.client(request("BYE", via="SIP/2.0/TCP 192.0.2.10:5060"), TCP)
        self.tick(32)
        self.assertEqual(calls.timeouts, 1)
        self.assertEqual(len(self.send.sent), 1)
        self.assert_empty()


class TransportErrorTests(LayerTestCase):
    def test_fails_transactions_toward_target(self) -> None:
        inv = request(via="SIP/2.0/TCP 192.0.2.10:5060")
        itxn, icalls = self.client(inv, Addr("tcp", "192.0.2.10", 5060))
        otxn, ocalls = self.client(request("OPTIONS", branch="z9hG4bKo", via="SIP/2.0/TCP 192.0.2.10:5060"), TCP)
        _, elsewhere = self.client(request("OPTIONS", branch="z9hG4bKe"), UDP_OTHER)
        self.layer.transport_error(TCP)
        self.assertEqual((icalls.timeouts, ocalls.timeouts, elsewhere.timeouts), (1, 1, 0))
        self.assertEqual((itxn.state, otxn.state), (TERMINATED, TERMINATED))
        self.assertEqual(len(self.layer), 1)
        self.tick(100)
        self.assertEqual((icalls.timeouts, ocalls.timeouts, elsewhere.timeouts), (1, 1, 1))
        self.assert_empty()

    def test_other_connection_is_unaffected(self) -> None:
        _, calls = self.client(request("OPTIONS", via="SIP/2.0/TCP 192.0.2.10:5060"), TCP)
        self.layer.transport_error(Addr("tcp", "192.0.2.10", 5060, conn=8))
        self.layer.transport_error(Addr("udp", "192.0.2.10", 5060))
        self.assertEqual(calls.timeouts, 0)
        self.assertEqual(len(self.layer), 1)
        self.layer.transport_error(Addr("tcp", "192.0.2.10", 5060))
        self.assertEqual(calls.timeouts, 1)
        self.assert_empty()

    def test_after_final_no_timeout(self) -> None:
        req = request()
        txn, calls = self.client(req)
        self.layer.receive_response(response_to(req, 486), UDP)
        self.layer.transport_error(UDP)
        self.assertEqual(calls.timeouts, 0)
        self.assertEqual(txn.state, TERMINATED)
        self.assert_empty()

    def test_error_during_first_send(self) -> None:
        calls = ClientCalls()

        def failing_send(data: bytes, target: Addr) -> None:
            self.layer.transport_error(target)

        self.layer = TransactionLayer(self.clock, failing_send, self.tu)
        txn = self.layer.send_request(request(), UDP, calls.on_response, calls.on_timeout)
        self.assertEqual(calls.timeouts, 1)
        self.assertEqual(txn.state, TERMINATED)
        self.assert_empty()

    def test_unknown_target(self) -> None:
        self.layer.transport_error(UDP)
        self.assert_empty()


class MiscTests(LayerTestCase):
    def test_send_ack_and_stateless(self) -> None:
        ack = request("ACK", to_tag="t1", branch="z9hG4bKack")
        self.layer.send_ack(ack, UDP)
        bad = make_response(request(), 400)
        self.layer.send_stateless(bad, UDP_OTHER)
        self.assertEqual([(d, a) for _, d, a in self.send.sent], [(ack.to_bytes(), UDP), (bad.to_bytes(), UDP_OTHER)])
        self.assert_empty()

    def test_ack_without_transaction_goes_to_tu(self) -> None:
        ack = request("ACK", to_tag="t1", branch="z9hG4bKack")
        self.layer.receive_request(ack, UDP)
        self.assertEqual(self.tu.acks, [(ack, UDP)])
        self.assert_empty()

    def test_close_forgets_everything(self) -> None:
        self.server(request())
        self.server(request("OPTIONS", branch="z9hG4bKo"))
        self.client(request(branch="z9hG4bKc"))
        self.layer.send_2xx_reliably(make_response(request(), 200, to_tag="t"), UDP, lambda: None)
        self.assertEqual(len(self.layer), 4)
        self.layer.close()
        self.assert_empty()

    def test_table_empties_after_everything(self) -> None:
        """A busy mix of calls on UDP and TCP: once every timer has fired, nothing is left."""
        clients: list[ClientCalls] = []
        for i in range(50):
            udp = i % 2 == 0
            src = UDP if udp else TCP
            via = "SIP/2.0/UDP 192.0.2.10:5060" if udp else "SIP/2.0/TCP 192.0.2.10:5060"
            inv = request(branch=f"z9hG4bKs{i}", call_id=f"c{i}", via=via)
            txn = self.server(inv, src)
            if i % 5 == 0:
                ok = make_response(inv, 200, to_tag=f"t{i}")
                txn.respond(ok)
                self.layer.send_2xx_reliably(ok, src, lambda: None)
                if i % 10 == 0:
                    self.layer.receive_request(request("ACK", branch=f"z9hG4bKa{i}", call_id=f"c{i}",
                                                       to_tag=f"t{i}", via=via), src)
            elif i % 5 == 1:
                txn.respond(make_response(inv, 486, to_tag=f"t{i}"))
                self.layer.receive_request(request("ACK", branch=f"z9hG4bKs{i}", call_id=f"c{i}",
                                                   to_tag=f"t{i}", via=via), src)
            elif i % 5 == 2:
                txn.respond(make_response(inv, 404, to_tag=f"t{i}"))  # never ACKed: Timer H
            elif i % 5 == 3:
                reg = request("REGISTER", branch=f"z9hG4bKr{i}", call_id=f"r{i}", via=via)
                self.server(reg, src).respond(make_response(reg, 200, to_tag="x"))
            # i % 5 == 4: never answered here; answered below
            calls = ClientCalls()
            clients.append(calls)
            out = request("INVITE" if i % 3 else "OPTIONS", branch=new_branch(), call_id=f"o{i}", via=via)
            self.layer.send_request(out, src, calls.on_response, calls.on_timeout)
            if i % 4 == 0:
                self.layer.receive_response(response_to(out, 200), src)
            elif i % 4 == 1:
                self.layer.receive_response(response_to(out, 480), src)
        for txn, req in list(self.tu.requests):
            if txn.state == PROCEEDING:
                txn.respond(make_response(req, 480, to_tag="late"))
        self.assertGreater(len(self.layer), 0)
        self.tick(100)
        self.assert_empty()
        for i, calls in enumerate(clients):
            self.assertEqual(calls.timeouts, 1 if i % 4 in (2, 3) else 0)


class TimerQueueTests(LayerTestCase):
    """Fixed-delay timers (B, D, F, H, I, J, K, L, M) share one DelayedCall per delay."""

    def register(self, i: int) -> ServerTransaction:
        req = request("REGISTER", branch=f"z9hG4bKq{i}", call_id=f"q{i}")
        txn = self.server(req)
        txn.respond(make_response(req, 200, to_tag="t"))
        return txn

    def test_many_transactions_one_delayed_call(self) -> None:
        txns = []
        for i in range(100):
            txns.append(self.register(i))
            self.tick(0.1, step=0.1)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.tick(31.9 - 10.0, step=0.1)  # the first one answered at 0, the last at 9.9
        self.assertEqual(txns[0].state, COMPLETED)
        # Each one still ends exactly 64*T1 after its final response.
        for i in range(len(txns)):
            self.tick(0.1, step=0.1)
            self.assertEqual([t.state for t in txns[: i + 1]], [TERMINATED] * (i + 1))
            self.assertEqual([t.state for t in txns[i + 1:]], [COMPLETED] * (len(txns) - i - 1))
        self.assert_empty()

    def test_cancelled_timers_do_not_delay_the_others(self) -> None:
        # INVITE errors wait for Timer H; the ACK cancels it in favour of Timer I.
        txns = []
        for i in range(3):
            inv = request(branch=f"z9hG4bKh{i}", call_id=f"h{i}")
            txn = self.server(inv)
            txn.respond(make_response(inv, 486, to_tag="t"))
            txns.append(txn)
            self.tick(1)
        self.layer.receive_request(request("ACK", branch="z9hG4bKh0", call_id="h0", to_tag="t"), UDP)
        self.assertEqual(txns[0].state, CONFIRMED)
        self.tick(5)  # Timer I = T4
        self.assertEqual([t.state for t in txns], [TERMINATED, COMPLETED, COMPLETED])
        self.tick(33 - 8 - 0.1)
        self.assertEqual(txns[1].state, COMPLETED)
        self.tick(0.1)  # answered at 1 s: Timer H at 33 s
        self.assertEqual([t.state for t in txns], [TERMINATED, TERMINATED, COMPLETED])
        self.tick(1)
        self.assertEqual(txns[2].state, TERMINATED)
        self.assert_empty()

    def test_all_cancelled_leaves_no_delayed_call(self) -> None:
        for i in range(3):
            self.register(i)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.layer.close()
        self.assert_empty()


class TimerQueueUnitTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000.1)  # large times: rescheduling rounds
        self.fired: list[tuple[str, float]] = []
        self.queue = TimerQueue(self.clock, 2.0, lambda owner: self.fired.append((str(owner), self.clock.seconds())))
        self.t0 = self.clock.seconds()

    def advance_to(self, when: float) -> None:
        while self.clock.seconds() < when:
            self.clock.advance(max(when - self.clock.seconds(), 1e-7))

    def test_fires_in_order_never_late(self) -> None:
        dues = []
        for name in "abc":
            self.queue.start(name)
            dues.append(self.clock.seconds() + 2.0)
            self.clock.advance(0.3)
        for i, due in enumerate(dues):
            self.advance_to(due - 0.0011)  # at most the queue's slack (1 ms) early
            self.assertEqual(len(self.fired), i)
            self.advance_to(due)  # never late, although later timers are rescheduled from earlier ones
            self.assertEqual([n for n, _ in self.fired], list("abc"[: i + 1]))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_cancel_and_active(self) -> None:
        a = self.queue.start("a")
        b = self.queue.start("b")
        self.assertTrue(a.active())
        a.cancel()
        a.cancel()
        self.assertFalse(a.active())
        self.clock.advance(2.0)
        self.assertEqual([n for n, _ in self.fired], ["b"])
        self.assertFalse(b.active())
        b.cancel()  # after firing: nothing happens
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_start_while_firing(self) -> None:
        queue = TimerQueue(self.clock, 1.0, lambda owner: (self.fired.append((str(owner), self.clock.seconds())),
                                                             queue.start(f"{owner}+") if len(str(owner)) < 3 else None))
        queue.start("a")
        self.clock.advance(0.5)
        queue.start("b")
        self.clock.advance(0.5)
        self.assertEqual([n for n, _ in self.fired], ["a"])
        self.clock.advance(0.5)
        self.assertEqual([n for n, _ in self.fired], ["a", "b"])
        self.clock.advance(0.5)
        self.assertEqual([n for n, _ in self.fired], ["a", "b", "a+"])
        for _ in range(20):
            self.clock.advance(0.25)
        self.assertEqual([n for n, _ in self.fired], ["a", "b", "a+", "b+", "a++", "b++"])
        self.assertEqual(len(self.clock.getDelayedCalls()), 0)


class StatelessTests(SynchronousTestCase):
    """Answers sent without keeping a transaction (challenges to unauthenticated requests, issue 8)."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.sent = Recorder(self.clock)
        self.tu = FakeTU()
        self.layer = TransactionLayer(self.clock, self.sent, self.tu)

    def challenge(self, txn: ServerTransaction, req: Request) -> None:
        txn.respond_statelessly(make_response(req, 407, to_tag="t1"))

    def test_invite_answered_once_then_forgotten(self) -> None:
        self.tu.on_request = self.challenge
        req = request("INVITE")
        self.layer.receive_request(req, UDP)
        self.assertEqual(len(self.layer), 0)
        self.clock.pump([0.5] * 80)
        self.assertEqual([m.status for m in self.sent.messages()], [407])  # type: ignore[union-attr]

    def test_retransmitted_request_answered_again(self) -> None:
        self.tu.on_request = self.challenge
        req = request("INVITE")
        for delay in TIMER_A_SCHEDULE:
            self.layer.receive_request(req, UDP)
            self.clock.advance(delay)
        self.assertEqual(len(self.tu.requests), len(TIMER_A_SCHEDULE))
        self.assertEqual(len(self.sent.sent), len(TIMER_A_SCHEDULE))
        self.assertEqual(len(self.layer), 0)

    def test_ack_of_a_stateless_answer_goes_to_the_tu(self) -> None:
        self.tu.on_request = self.challenge
        req = request("INVITE")
        self.layer.receive_request(req, UDP)
        ack = request("ACK", cseq=1, to_tag="t1")
        self.layer.receive_request(ack, UDP)
        self.assertEqual(len(self.tu.acks), 1)
        self.assertEqual(len(self.sent.sent), 1)

    def test_non_invite(self) -> None:
        self.tu.on_request = self.challenge
        self.layer.receive_request(request("REGISTER"), UDP)
        self.assertEqual(len(self.layer), 0)
        self.assertEqual(len(self.sent.sent), 1)

    def test_provisional_refused_and_after_final_ignored(self) -> None:
        got: list[ServerTransaction] = []
        self.tu.on_request = lambda txn, req: got.append(txn)
        req = request("REGISTER")
        self.layer.receive_request(req, UDP)
        (txn,) = got
        with self.assertRaises(ValueError):
            txn.respond_statelessly(make_response(req, 100))
        txn.respond(make_response(req, 200, to_tag="x"))
        txn.respond_statelessly(make_response(req, 401, to_tag="x"))
        self.assertEqual([m.status for m in self.sent.messages()], [200])  # type: ignore[union-attr]

    def test_drop(self) -> None:
        """Dropped in the TU's turn: not even a 100 Trying goes out."""
        self.tu.on_request = lambda txn, req: txn.drop()
        self.layer.receive_request(request("INVITE"), UDP)
        self.assertEqual(len(self.layer), 0)
        self.clock.pump([1.0] * 40)
        self.assertEqual(self.sent.sent, [])

    def test_unsafe_request_leaves_nothing_behind(self) -> None:
        """A request whose header was corrupted in place is refused before it is sent or remembered."""
        from minisip.sip.message import UnsafeHeaderError

        req = request("OPTIONS", branch=new_branch())
        req.headers.append(("subject", "Subject", "hi\r\nContact: <sip:evil@198.51.100.1>"))
        with self.assertRaises(UnsafeHeaderError):
            self.layer.send_request(req, UDP_OTHER, lambda r: None, lambda: None)
        self.assertEqual(len(self.layer), 0)
        self.assertEqual(self.sent.sent, [])
