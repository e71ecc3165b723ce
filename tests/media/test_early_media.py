"""Early media (183 with SDP) through the relay when a call forks to two phones, through the real call
layer on a Clock: the caller hears one fork at a time (the latest 183 with SDP wins), then the fork that
answers; the loser is cancelled and its relay ports go back to the pool at once."""

from __future__ import annotations

import struct

from minisip.sip.message import Response
from tests.core.fakes import Dialog, Phone, requests
from tests.media.test_policy import RELAY, PolicyTestCase, rtp, sdp_for

ALICE = ("10.0.0.1", 4000)
BOB1 = ("10.0.0.2", 5000)
BOB2 = ("10.0.0.3", 6000)
SSRC_1, SSRC_2, SSRC_ALICE = 0xB1, 0xB2, 0xA1


def ssrc_of(packet: bytes) -> int:
    return struct.unpack("!I", packet[8:12])[0]


class ForkTestCase(PolicyTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.bob2 = self.pbx.phone("200", "10.0.0.3", 5070)
        resp = self.bob2.register()
        assert resp is not None and resp.status == 200

    def ring(self) -> tuple[Dialog, Dialog, Dialog]:
        """Alice calls 200, which rings on both of its phones."""
        a = self.alice.call("200", sdp_for(*ALICE))
        (b1,) = self.bob.incoming()
        (b2,) = self.bob2.incoming()
        return a, b1, b2

    def to_bob(self, b: Dialog) -> int:
        """The relay port the fork's phone was offered (where it sends its RTP)."""
        assert b.invite is not None
        host, port = self.media(b.invite.body)
        self.assertEqual(host, RELAY)
        return port

    def alice_gets(self, status: int) -> Response:
        (resp,) = [m for m in self.alice.inbox() if isinstance(m, Response) and m.status == status]
        return resp

    def early(self, b: Dialog, addr: tuple[str, int]) -> int:
        """The fork sends 183 with SDP; the relay port the caller is told to use."""
        b.respond(183, sdp_for(*addr))
        host, port = self.media(self.alice_gets(183).body)
        self.assertEqual(host, RELAY)
        return port

    def heard(self, port_a: int) -> list[int]:
        """The SSRCs of what reached Alice's phone from her relay port since last asked."""
        sent = self.net.take(port_a)
        self.assertTrue(all(addr == ALICE for _, addr in sent), sent)
        return [ssrc_of(data) for data, _ in sent]

    def both_talk(self, port_b1: int, port_b2: int, seq: int) -> None:
        """Both forks' phones send a packet each (as phones playing early media or talking do); to a
        port that is closed (back in the pool) it is lost, as on a real network."""
        for port, ssrc, addr in ((port_b1, SSRC_1, BOB1), (port_b2, SSRC_2, BOB2)):
            if port in self.net.ports:
                self.net.deliver(port, rtp(seq, ssrc=ssrc), addr)

    def endpoint(self, port: int):  # type: ignore[no-untyped-def]
        (ep,) = [ep for call_id in list(self.relay._calls) for ep in self.relay.endpoints(call_id)
                 if ep.local[1] == port]
        return ep

    def finish_cancel(self, phone: Phone, b: Dialog) -> None:
        """The losing fork's phone answers the CANCEL and ends its INVITE with 487."""
        (cancel,) = requests(phone.inbox(), "CANCEL")
        phone.reply(cancel, 200)
        b.respond(487)

    def hang_up(self, a: Dialog, phone: Phone) -> None:
        a.bye()
        (bye,) = requests(phone.inbox(), "BYE")
        phone.reply(bye, 200)
        self.assertEqual(self.relay.call_count, 0)
        self.assertEqual((self.relay.pool.free, self.relay.pool.in_use), (self.relay.pool.size, 0))
        self.assertEqual(self.net.ports, {})


class ForkedEarlyMediaTests(ForkTestCase):
    relay_mode = "always"

    def test_the_latest_183_with_sdp_wins_and_streams_never_mix(self) -> None:
        a, b1, b2 = self.ring()
        port_b1, port_b2 = self.to_bob(b1), self.to_bob(b2)
        self.assertEqual(self.relay.pool.in_use, 3)            # one port pair for Alice, one per fork
        self.both_talk(port_b1, port_b2, 1)                    # before any 183: nobody is heard
        port_a = self.early(b1, BOB1)
        for seq in range(2, 12):
            self.both_talk(port_b1, port_b2, seq)
        self.assertEqual(self.heard(port_a), [SSRC_1] * 10)
        # the caller's own early packets go to that fork only
        self.net.deliver(port_a, rtp(1, ssrc=SSRC_ALICE), ALICE)
        self.assertEqual((len(self.net.take(port_b1)), self.net.take(port_b2)), (1, []))
        # the other fork's 183 with SDP: same relay address for the caller, now only that fork is heard
        self.assertEqual(self.early(b2, BOB2), port_a)
        for seq in range(12, 22):
            self.both_talk(port_b1, port_b2, seq)
        self.assertEqual(self.heard(port_a), [SSRC_2] * 10)
        self.net.deliver(port_a, rtp(2, ssrc=SSRC_ALICE), ALICE)
        self.assertEqual((self.net.take(port_b1), len(self.net.take(port_b2))), ([], 1))
        # the first fork sends a new 183 with SDP (a new announcement): it is the latest again
        self.assertEqual(self.early(b1, BOB1), port_a)
        for seq in range(22, 32):
            self.both_talk(port_b1, port_b2, seq)
        self.assertEqual(self.heard(port_a), [SSRC_1] * 10)
        stats = {ep["local"][1]: ep for ep in self.relay.stats(next(iter(self.relay._calls)))}
        # what was not heard was counted, never sent anywhere: before its 183 a fork's packets are
        # "not ready" (its SDP is not known yet), after another fork's 183 "unbridged"
        dropped = [stats[port][key] for port in (port_b1, port_b2)
                   for key in ("dropped_not_ready", "dropped_unbridged")]
        self.assertEqual(dropped, [1, 10, 11, 10])
        self.assertEqual(stats[port_a]["packets_out"], 30)

    def test_the_fork_that_answers_is_heard_and_the_loser_gives_its_ports_back(self) -> None:
        a, b1, b2 = self.ring()
        port_b1, port_b2 = self.to_bob(b1), self.to_bob(b2)
        port_a = self.early(b1, BOB1)
        self.assertEqual(self.early(b2, BOB2), port_a)         # b2's early media is being heard
        b1.respond(200, sdp_for(*BOB1))                        # but b1 answers
        self.assertEqual(self.media(self.alice_gets(200).body), (RELAY, port_a))
        a.ack()
        self.bob.inbox()
        # the loser is cancelled and its relay ports are closed and back in the pool at once
        self.assertNotIn(port_b2, self.net.ports)
        self.assertNotIn(port_b2 + 1, self.net.ports)
        self.assertEqual(self.relay.pool.in_use, 2)
        for seq in range(1, 11):
            self.net.deliver(port_b1, rtp(seq, ssrc=SSRC_1), BOB1)
        self.assertEqual(self.heard(port_a), [SSRC_1] * 10)
        self.net.deliver(port_a, rtp(1, ssrc=SSRC_ALICE), ALICE)
        self.assertEqual(self.net.take(port_b1), [(rtp(1, ssrc=SSRC_ALICE), BOB1)])
        self.finish_cancel(self.bob2, b2)
        self.assertEqual(self.relay.pool.in_use, 2)
        self.hang_up(a, self.bob)

    def test_the_latest_early_fork_answers(self) -> None:
        a, b1, b2 = self.ring()
        port_b1, port_b2 = self.to_bob(b1), self.to_bob(b2)
        port_a = self.early(b1, BOB1)
        self.early(b2, BOB2)
        b2.respond(200, sdp_for(*BOB2))
        self.assertEqual(self.media(self.alice_gets(200).body), (RELAY, port_a))
        a.ack()
        self.bob2.inbox()
        self.assertEqual((port_b1 in self.net.ports, self.relay.pool.in_use), (False, 2))
        self.both_talk(port_b1, port_b2, 1)
        self.assertEqual(self.heard(port_a), [SSRC_2])
        self.finish_cancel(self.bob, b1)
        self.hang_up(a, self.bob2)

    def test_a_fork_losing_the_race_without_early_media_gives_its_ports_back(self) -> None:
        a, b1, b2 = self.ring()
        port_b1, port_b2 = self.to_bob(b1), self.to_bob(b2)
        b1.respond(180)
        b2.respond(200, sdp_for(*BOB2))
        port_a = self.media(self.alice_gets(200).body)[1]
        a.ack()
        self.bob2.inbox()
        self.assertEqual((port_b1 in self.net.ports, port_b1 + 1 in self.net.ports), (False, False))
        self.assertEqual(self.relay.pool.in_use, 2)
        self.both_talk(port_b1, port_b2, 1)
        self.assertEqual(self.heard(port_a), [SSRC_2])
        self.finish_cancel(self.bob, b1)
        self.hang_up(a, self.bob2)

    def test_a_fork_failing_after_its_early_media_gives_its_ports_back(self) -> None:
        a, b1, b2 = self.ring()
        port_b1, port_b2 = self.to_bob(b1), self.to_bob(b2)
        port_a = self.early(b1, BOB1)
        b1.respond(486)                                        # busy after all: that fork ends
        self.assertEqual((port_b1 in self.net.ports, self.relay.pool.in_use), (False, 2))
        self.both_talk(port_b1, port_b2, 1)
        self.assertEqual(self.heard(port_a), [])               # nothing from the gone fork, b2 not early yet
        self.assertEqual(self.early(b2, BOB2), port_a)
        self.both_talk(port_b1, port_b2, 2)
        self.assertEqual(self.heard(port_a), [SSRC_2])
        b2.respond(200, sdp_for(*BOB2))
        self.alice_gets(200)
        a.ack()
        self.bob2.inbox()
        self.hang_up(a, self.bob2)

    def test_caller_cancelling_during_early_media_frees_every_port(self) -> None:
        a, b1, b2 = self.ring()
        self.early(b1, BOB1)
        self.early(b2, BOB2)
        a.cancel()
        self.finish_cancel(self.bob, b1)
        self.finish_cancel(self.bob2, b2)
        self.assertEqual(self.relay.call_count, 0)
        self.assertEqual((self.relay.pool.in_use, self.net.ports), (0, {}))


class MixedForksTests(ForkTestCase):
    """relay = auto where one fork needs the relay (SDES-SRTP to a phone reached over TLS) and the other
    could talk to the caller directly."""

    relay_mode = "auto"

    def setUp(self) -> None:
        super().setUp()
        # the second phone is "reached over TLS": auto offers it SDES-SRTP, so its media must be relayed
        self.policy._secure_signalling = lambda leg: getattr(getattr(leg, "target", None), "host", "") == "10.0.0.3"  # type: ignore[method-assign]

    def test_every_fork_is_relayed_when_one_needs_it(self) -> None:
        """Were the plain fork sent the caller's own address, its early media would reach the caller
        directly while the other fork's came through the relay: two streams mixed at the caller."""
        a, b1, b2 = self.ring()
        assert b1.invite is not None and b2.invite is not None
        self.assertIn(b"RTP/AVP", b1.invite.body)
        self.assertIn(b"RTP/SAVP", b2.invite.body)
        port_b1 = self.to_bob(b1)
        self.assertNotEqual(port_b1, self.to_bob(b2))
        b2.respond(180)
        self.alice_gets(180)
        port_a = self.early(b1, BOB1)
        self.net.deliver(port_b1, rtp(1, ssrc=SSRC_1), BOB1)
        self.assertEqual(self.heard(port_a), [SSRC_1])
        b1.respond(200, sdp_for(*BOB1))
        self.assertEqual(self.media(self.alice_gets(200).body), (RELAY, port_a))
        a.ack()
        self.bob.inbox()
        self.finish_cancel(self.bob2, b2)
        self.hang_up(a, self.bob)

    def test_plain_forks_on_their_own_addresses_talk_directly(self) -> None:
        """No fork needs the relay: the caller's SDP goes to both unchanged and no port is taken (their
        early media then goes from the phones straight to the caller, as the SDP says)."""
        self.policy._secure_signalling = lambda leg: False  # type: ignore[method-assign]
        a, b1, b2 = self.ring()
        assert b1.invite is not None and b2.invite is not None
        self.assertEqual((b1.invite.body, b2.invite.body), (sdp_for(*ALICE), sdp_for(*ALICE)))
        self.assertEqual((self.relay.pool.in_use, self.relay.call_count), (0, 0))
        b1.respond(183, sdp_for(*BOB1))
        self.assertEqual(self.alice_gets(183).body, sdp_for(*BOB1))
        b2.respond(200, sdp_for(*BOB2))
        self.assertEqual(self.alice_gets(200).body, sdp_for(*BOB2))
        a.ack()
        self.bob2.inbox()
        self.finish_cancel(self.bob, b1)
        self.hang_up(a, self.bob2)
