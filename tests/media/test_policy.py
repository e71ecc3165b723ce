"""The relay media policy through the real call layer: SIP phones (scripted, on a Clock) call each other,
the SDP they receive points at the relay, and RTP sent to the relay's ports reaches the other phone in
that phone's own encryption: plain RTP, SDES-SRTP or DTLS-SRTP, any pair."""

from __future__ import annotations

import struct
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from minisip.core.call import Call
from minisip.media.compat import DTLS_AVAILABLE
from minisip.media.dtls import DtlsTransform, choose_setup, local_certificate
from minisip.media.policy import MediaSettings, RelayMediaPolicy
from minisip.media.relay import MediaRelay
from minisip.media.srtp import SdesTransform, crypto_line, new_key_salt, parse_crypto
from minisip.sip.message import Response
from minisip.sip.sdp import parse_sdp
from tests.core.fakes import PBX, Dialog, requests, statuses
from tests.media.test_relay import FakeNet

RELAY = "192.0.2.1"
PORTS = (30000, 30099)


def rtp(seq: int, payload: bytes = b"\xd5" * 160, ssrc: int = 0x1234) -> bytes:
    return struct.pack("!BBHII", 0x80, 0, seq, seq * 160, ssrc) + payload


def sdp_for(host: str, port: int, mode: str = "rtp", key: bytes = b"", fingerprint: str = "",
            setup: str = "actpass", direction: str = "sendrecv", version: int = 1) -> bytes:
    proto = {"rtp": "RTP/AVP", "sdes": "RTP/SAVP", "dtls": "UDP/TLS/RTP/SAVP"}[mode]
    lines = ["v=0", f"o=- 1 {version} IN IP4 {host}", "s=-", f"c=IN IP4 {host}", "t=0 0",
             f"m=audio {port} {proto} 0 8 101", "a=rtpmap:101 telephone-event/8000", f"a={direction}"]
    if mode == "sdes":
        lines.append("a=crypto:" + crypto_line(1, "AES_CM_128_HMAC_SHA1_80", key))
    if mode == "dtls":
        lines += [f"a=fingerprint:sha-256 {fingerprint}", f"a=setup:{setup}"]
    return ("\r\n".join(lines) + "\r\n").encode()


NO_DTLS = "this pyOpenSSL has no DTLS (before 22.0, e.g. Ubuntu 22.04): DTLS-SRTP is not offered there"


class PolicyTestCase(SynchronousTestCase):
    relay_mode = "always"
    encryption = {"100": "auto", "200": "auto"}

    def setUp(self) -> None:
        self.pbx = PBX()
        self.net = FakeNet()
        self.relay = MediaRelay(self.pbx.clock, RELAY, PORTS, clock=self.pbx.clock, timeout=30,
                                listen_udp=self.net.listen_udp)
        self.settings = MediaSettings(address=RELAY, ports=PORTS, relay=self.relay_mode, timeout=30,
                                      sdes_over_insecure=True)
        self.policy = RelayMediaPolicy(self.relay, self.settings, self.pbx.clock, self.encryption_of,
                                       hangup=self.hangup)
        self.pbx.core.hooks.for_owner("test.media").set_media_policy(self.policy)
        self.alice = self.pbx.phone("100", "10.0.0.1")
        self.bob = self.pbx.phone("200", "10.0.0.2")
        for p in (self.alice, self.bob):
            resp = p.register()
            assert resp is not None and resp.status == 200

    def encryption_of(self, call: Call, leg: Any) -> str:
        dest = getattr(leg, "destination", None)
        ext = getattr(dest, "aor", None) or call.caller
        return self.encryption.get(ext, "auto")

    def hangup(self, call_id: str, cause: str) -> None:
        call = self.pbx.core.calls.calls.get(call_id)
        if call is not None:
            self.pbx.core.calls.hangup(call, cause)

    def call(self, offer: bytes) -> tuple[Dialog, Dialog, bytes]:
        a = self.alice.call("200", offer)
        (b,) = self.bob.incoming()
        assert b.invite is not None
        return a, b, b.invite.body

    def answer(self, a: Dialog, b: Dialog, body: bytes) -> bytes:
        b.respond(200, body)
        (ok,) = [m for m in self.alice.inbox() if isinstance(m, Response) and m.status == 200]
        a.ack()
        self.bob.inbox()
        return ok.body

    def media(self, body: bytes) -> tuple[str, int]:
        m = parse_sdp(body).media[0]
        assert m.address is not None
        return m.address, m.port


class PlainRelayTests(PolicyTestCase):
    def test_rtp_both_ways_through_the_relay(self) -> None:
        a, b, to_bob = self.call(sdp_for("10.0.0.1", 4000))
        host_b, port_b = self.media(to_bob)
        self.assertEqual(host_b, RELAY)
        to_alice = self.answer(a, b, sdp_for("10.0.0.2", 5000))
        host_a, port_a = self.media(to_alice)
        self.assertEqual(host_a, RELAY)
        self.assertNotEqual(port_a, port_b)
        # Alice's RTP to her relay port leaves Bob's relay port for Bob's SDP address, and back.
        self.net.deliver(port_a, rtp(1), ("10.0.0.1", 4000))
        self.assertEqual(self.net.take(port_b), [(rtp(1), ("10.0.0.2", 5000))])
        self.net.deliver(port_b, rtp(7, ssrc=9), ("10.0.0.2", 5000))
        self.assertEqual(self.net.take(port_a), [(rtp(7, ssrc=9), ("10.0.0.1", 4000))])
        # A spoofed sender on another address never takes the stream over.
        self.net.deliver(port_a, rtp(2), ("10.6.6.6", 4000))
        self.assertEqual(self.net.take(port_b), [])
        a.bye()
        (bye,) = requests(self.bob.inbox(), "BYE")
        self.bob.reply(bye, 200)
        self.assertEqual(self.relay.call_count, 0)
        self.assertEqual(self.relay.pool.free, self.relay.pool.size)

    def test_hold_keeps_the_bridge(self) -> None:
        a, b, _ = self.call(sdp_for("10.0.0.1", 4000))
        to_alice = self.answer(a, b, sdp_for("10.0.0.2", 5000))
        _, port_a = self.media(to_alice)
        b.send_invite(sdp_for("10.0.0.2", 5000, direction="sendonly", version=2))
        (reinv,) = requests(self.alice.inbox(), "INVITE")
        self.assertIn(b"a=sendonly", reinv.body)
        self.assertEqual(self.media(reinv.body), (RELAY, port_a))
        self.alice.reply(reinv, 200, sdp_for("10.0.0.1", 4000, direction="recvonly", version=2), tag=a.local_tag)
        (ok,) = [m for m in self.bob.inbox() if isinstance(m, Response) and m.status == 200]
        self.assertIn(b"a=recvonly", ok.body)
        b.ack()
        self.alice.inbox()
        _, port_b = self.media(ok.body)
        self.net.deliver(port_a, rtp(3), ("10.0.0.1", 4000))
        self.assertEqual(len(self.net.take(port_b)), 1)

    def test_no_common_codec_fails_with_488(self) -> None:
        a, b, _ = self.call(sdp_for("10.0.0.1", 4000))
        b.respond(200, b"v=0\r\no=- 1 1 IN IP4 10.0.0.2\r\ns=-\r\nc=IN IP4 10.0.0.2\r\nt=0 0\r\n"
                       b"m=audio 0 RTP/AVP 0\r\n")
        self.assertIn(488, statuses(self.alice.inbox()))
        self.assertEqual(self.relay.call_count, 0)

    def test_media_timeout_ends_the_call(self) -> None:
        a, b, _ = self.call(sdp_for("10.0.0.1", 4000))
        self.answer(a, b, sdp_for("10.0.0.2", 5000))
        self.pbx.advance(32, step=1)
        self.assertTrue(requests(self.alice.inbox(), "BYE"))
        self.assertEqual(self.pbx.records()[-1].cause, "media timeout")

    def test_no_media_timeout_while_on_hold(self) -> None:
        a, b, _ = self.call(sdp_for("10.0.0.1", 4000))
        self.answer(a, b, sdp_for("10.0.0.2", 5000))
        b.send_invite(sdp_for("10.0.0.2", 5000, direction="sendonly", version=2))
        (reinv,) = requests(self.alice.inbox(), "INVITE")
        self.alice.reply(reinv, 200, sdp_for("10.0.0.1", 4000, direction="recvonly", version=2), tag=a.local_tag)
        b.ack()
        self.pbx.advance(60, step=1)          # a long hold with no packets at all
        self.assertEqual(requests(self.alice.inbox(), "BYE"), [])
        b.send_invite(sdp_for("10.0.0.2", 5000, direction="sendrecv", version=3))    # resumed
        (reinv,) = requests(self.alice.inbox(), "INVITE")
        self.alice.reply(reinv, 200, sdp_for("10.0.0.1", 4000, version=3), tag=a.local_tag)
        b.ack()
        self.pbx.advance(32, step=1)          # resumed, still silent: the timeout applies again
        self.assertTrue(requests(self.alice.inbox(), "BYE"))

    def test_ports_go_back_to_the_pool_after_many_calls(self) -> None:
        free = self.relay.pool.free
        for _ in range(30):
            a, b, _ = self.call(sdp_for("10.0.0.1", 4000))
            self.answer(a, b, sdp_for("10.0.0.2", 5000))
            a.bye()
            (bye,) = requests(self.bob.inbox(), "BYE")
            self.bob.reply(bye, 200)
            self.alice.inbox()
        self.assertEqual(self.relay.pool.free, free)

    def test_pool_exhausted_503(self) -> None:
        self.net.refused.update(range(*PORTS))
        self.net.refused.add(PORTS[1])
        self.alice.call("200", sdp_for("10.0.0.1", 4000))
        self.assertIn(503, statuses(self.alice.inbox()))


class AutoTests(PolicyTestCase):
    relay_mode = "auto"

    def test_plain_phones_on_their_own_addresses_talk_directly(self) -> None:
        offer = sdp_for("10.0.0.1", 4000)
        a, b, to_bob = self.call(offer)
        self.assertEqual(to_bob, offer)
        self.assertEqual(self.answer(a, b, sdp_for("10.0.0.2", 5000)), sdp_for("10.0.0.2", 5000))
        self.assertEqual(self.relay.call_count, 0)

    def test_a_phone_behind_nat_is_relayed(self) -> None:
        _, _, to_bob = self.call(sdp_for("192.168.1.20", 4000))   # its SDP address is not its source
        self.assertEqual(self.media(to_bob)[0], RELAY)


class SdesToPlainTests(PolicyTestCase):
    encryption = {"100": "auto", "200": "none"}

    def test_srtp_caller_plain_callee(self) -> None:
        alice_key = new_key_salt()
        a, b, to_bob = self.call(sdp_for("10.0.0.1", 4000, "sdes", alice_key))
        self.assertIn(b"RTP/AVP", to_bob)
        self.assertNotIn(b"a=crypto", to_bob)
        _, port_b = self.media(to_bob)
        to_alice = self.answer(a, b, sdp_for("10.0.0.2", 5000))
        answer = parse_sdp(to_alice).media[0]
        self.assertEqual(answer.proto, "RTP/SAVP")
        ours = parse_crypto(answer.get_all("crypto")[0])
        self.assertEqual(ours.tag, 1)
        phone = SdesTransform(alice_key, ours.key_salt)       # what Alice's phone does with the keys
        phone.attach(lambda d: None)
        _, port_a = self.media(to_alice)
        self.net.deliver(port_a, phone.protect_rtp(rtp(1)), ("10.0.0.1", 4000))
        self.assertEqual(self.net.take(port_b), [(rtp(1), ("10.0.0.2", 5000))])
        self.net.deliver(port_b, rtp(5, ssrc=77), ("10.0.0.2", 5000))
        ((wire, addr),) = self.net.take(port_a)
        self.assertEqual(addr, ("10.0.0.1", 4000))
        self.assertNotEqual(wire, rtp(5, ssrc=77))
        self.assertEqual(phone.unprotect_rtp(wire), rtp(5, ssrc=77))
        # A packet that does not authenticate is dropped, never relayed.
        self.net.deliver(port_a, rtp(9), ("10.0.0.1", 4000))
        self.assertEqual(self.net.take(port_b), [])

    def test_sdes_offered_over_udp_refused_unless_allowed(self) -> None:
        self.policy.settings = MediaSettings(address=RELAY, ports=PORTS, relay="always", sdes_over_insecure=False)
        self.alice.call("200", sdp_for("10.0.0.1", 4000, "sdes", new_key_salt()))
        self.assertIn(488, statuses(self.alice.inbox()))


class PlainToDtlsTests(PolicyTestCase):
    skip = None if DTLS_AVAILABLE else NO_DTLS
    encryption = {"100": "auto", "200": "dtls"}

    def test_plain_caller_dtls_callee(self) -> None:
        a, b, to_bob = self.call(sdp_for("10.0.0.1", 4000))
        offer = parse_sdp(to_bob).media[0]
        self.assertEqual(offer.proto, "UDP/TLS/RTP/SAVP")
        self.assertEqual(offer.setup, "actpass")
        relay_fp = offer.fingerprint
        assert relay_fp is not None
        _, port_b = self.media(to_bob)
        # Bob's phone answers active: it is the DTLS client; the relay is the server.
        cert = local_certificate()
        setup, role = choose_setup("actpass", we_are_answerer=True)
        phone = DtlsTransform(role, relay_fp, self.pbx.clock, certificate=cert)
        to_relay: list[bytes] = []
        phone.attach(to_relay.append)
        to_alice = self.answer(a, b, sdp_for("10.0.0.2", 5000, "dtls", fingerprint=cert.fingerprint, setup=setup))
        _, port_a = self.media(to_alice)
        self.assertIn(b"RTP/AVP", to_alice)
        phone.start()
        for _ in range(10):                      # pump the handshake through the fake network
            for d in to_relay:
                self.net.deliver(port_b, d, ("10.0.0.2", 5000))
            to_relay.clear()
            for d, _addr in self.net.take(port_b):
                replies, _ = phone.control(d, (RELAY, port_b))
                to_relay.extend(replies)
            if phone.ready() and not to_relay:
                break
        self.assertTrue(phone.ready())
        self.net.deliver(port_a, rtp(1), ("10.0.0.1", 4000))
        ((wire, addr),) = self.net.take(port_b)
        self.assertEqual(addr, ("10.0.0.2", 5000))
        self.assertEqual(phone.unprotect_rtp(wire), rtp(1))
        self.net.deliver(port_b, phone.protect_rtp(rtp(4, ssrc=5)), ("10.0.0.2", 5000))
        self.assertEqual(self.net.take(port_a), [(rtp(4, ssrc=5), ("10.0.0.1", 4000))])



class SrtpFallbackTests(PolicyTestCase):
    def test_a_phone_refusing_our_srtp_offer_is_called_again_with_plain_rtp(self) -> None:
        """media_encryption auto offers SDES to a phone reached over TLS; a phone without SRTP answers
        488 and is rung again with plain RTP at once (the caller never sees the 488)."""
        self.policy._secure_signalling = lambda leg: getattr(leg, "destination", None) is not None  # type: ignore
        a = self.alice.call("200", sdp_for("10.0.0.1", 4000))
        (first,) = self.bob.incoming()
        assert first.invite is not None
        self.assertIn(b"RTP/SAVP", first.invite.body)
        first.respond(488)
        (again,) = self.bob.incoming()
        assert again.invite is not None
        self.assertIn(b"RTP/AVP", again.invite.body)
        self.assertNotIn(b"a=crypto", again.invite.body)
        self.assertNotIn(488, statuses(self.alice.inbox()))
        to_alice = self.answer(a, again, sdp_for("10.0.0.2", 5000))
        self.assertEqual(self.media(to_alice)[0], RELAY)

    def test_a_second_488_is_final(self) -> None:
        self.policy._secure_signalling = lambda leg: getattr(leg, "destination", None) is not None  # type: ignore
        self.alice.call("200", sdp_for("10.0.0.1", 4000))
        (first,) = self.bob.incoming()
        first.respond(488)
        (again,) = self.bob.incoming()
        again.respond(488)
        self.assertIn(488, statuses(self.alice.inbox()))


class DtlsCallerRingsLongTests(PolicyTestCase):
    """A DTLS-SRTP caller (offering actpass, so the relay is its DTLS client) whose callee rings a while."""

    skip = None if DTLS_AVAILABLE else NO_DTLS

    def test_handshake_starts_when_the_answer_goes_out(self) -> None:
        # baresip ignores a ClientHello that comes before the answer; sent at the offer, its retransmissions
        # backed off during the ringing and gave up after 30 s: the caller got no audio at all.
        cert = local_certificate()
        a, b, to_bob = self.call(sdp_for("10.0.0.1", 4000, "dtls", fingerprint=cert.fingerprint))
        self.assertIn(b"RTP/AVP", to_bob)
        _, port_b = self.media(to_bob)
        b.respond(180)
        self.pbx.advance(40, step=1)                       # ringing
        self.assertEqual([p for p, fake in self.net.ports.items() if fake.sent], [], "DTLS before the answer")
        to_alice = self.answer(a, b, sdp_for("10.0.0.2", 5000))
        answer = parse_sdp(to_alice).media[0]
        self.assertEqual(answer.setup, "active")
        assert answer.fingerprint is not None
        _, port_a = self.media(to_alice)
        hello = self.net.take(port_a)
        self.assertTrue(hello, "no ClientHello when the answer went out")
        self.assertEqual({addr for _, addr in hello}, {("10.0.0.1", 4000)})
        phone = DtlsTransform("server", answer.fingerprint, self.pbx.clock, certificate=cert)
        to_relay: list[bytes] = []
        phone.attach(to_relay.append)
        phone.start()
        for d, _addr in hello:
            to_relay.extend(phone.control(d, (RELAY, port_a))[0])
        for _ in range(10):                                # pump the handshake through the fake network
            for d in to_relay:
                self.net.deliver(port_a, d, ("10.0.0.1", 4000))
            to_relay.clear()
            for d, _addr in self.net.take(port_a):
                to_relay.extend(phone.control(d, (RELAY, port_a))[0])
            if phone.ready() and not to_relay:
                break
        self.assertTrue(phone.ready())
        self.net.deliver(port_b, rtp(4, ssrc=5), ("10.0.0.2", 5000))
        ((wire, addr),) = self.net.take(port_a)
        self.assertEqual((phone.unprotect_rtp(wire), addr), (rtp(4, ssrc=5), ("10.0.0.1", 4000)))
        self.net.deliver(port_a, phone.protect_rtp(rtp(1)), ("10.0.0.1", 4000))
        self.assertEqual(self.net.take(port_b), [(rtp(1), ("10.0.0.2", 5000))])
