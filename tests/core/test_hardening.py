"""Issue 8 attacks replayed against the core: header injection through identities, spoofed bans,
amplification by challenges, distributed guessing at one extension, and the digest checks."""

from __future__ import annotations

from typing import Any, cast
from urllib.parse import unquote

from twisted.logger import ILogObserver, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from minisip.api import CallerIdentity
from minisip.interfaces import ICallerIdentifier
from minisip.sip.auth import build_authorization
from minisip.sip.message import Request, Response, parse_message
from minisip.sip.types import Addr
from tests.core.fakes import DOMAIN, PBX, Phone, requests, sdp, statuses, token

CARRIER = "192.0.2.50"
INJECTED = "x%3e%0d%0aSubject%3a%20pwned%0d%0aContact%3a%20%3csip%3aevil%4010.6.6.6%3e"


@implementer(ICallerIdentifier)
class CarrierIdentifier:
    """Vouches for INVITEs from the carrier's address as plugins/trunks.py does: the caller is the
    From user part, URL-decoded; the DID maps to extension 200."""

    def __init__(self, callee: str | None = "200", display: str | None = None) -> None:
        self.callee = callee
        self.display = display

    def identify(self, request: Request, source: Addr) -> CallerIdentity | None:
        if source.host != CARRIER:
            return None
        user = getattr(request.from_.uri, "user", None) or "anonymous"
        return CallerIdentity(caller=unquote(user), source="trunk", trunk="carrier", callee=self.callee,
                              display=self.display)


def log_events(case: SynchronousTestCase) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    observer = cast(ILogObserver, events.append)
    globalLogPublisher.addObserver(observer)
    case.addCleanup(globalLogPublisher.removeObserver, observer)
    return events


class HeaderInjectionTests(SynchronousTestCase):
    """Point 1: an identity from the network never becomes header lines of its own."""

    def setUp(self) -> None:
        self.pbx = PBX()
        self.bob = self.pbx.phone("200", "10.0.0.2")
        self.bob.register()
        self.carrier = self.pbx.phone("carrier", CARRIER, 5060)
        self.identifier = CarrierIdentifier()
        self.pbx.core.hooks.for_owner("test").add_caller_identifier(self.identifier)
        self.sent: list[tuple[Addr, bytes]] = []
        send = self.pbx.core.transactions.send

        def recording(data: bytes, addr: Addr) -> None:
            self.sent.append((addr, data))
            send(data, addr)

        self.pbx.core.transactions.send = recording

    def carrier_invite(self, from_user: str, display: str = "") -> list[Any]:
        ruri = f"sip:+31201234567@{DOMAIN}"
        req = self.carrier.build("INVITE", ruri, call_id=token(), from_=f"{display}<sip:{from_user}@{CARRIER}>;tag=c1",
                                 to=f"<{ruri}>", cseq=1, body=sdp(CARRIER))
        return self.carrier.send_request(req)

    def test_injected_caller_from_a_trunk_is_refused(self) -> None:
        got = self.carrier_invite(INJECTED)
        self.assertEqual(statuses(got), [400])
        self.assertEqual(self.bob.incoming(), [])
        for _, data in self.sent:
            self.assertNotIn(b"\r\nSubject", data)
            msg = parse_message(data)
            self.assertIsNone(msg.get("subject"))
            self.assertTrue(all("evil" not in str(c.uri) for c in msg.contacts()))
        self.assertEqual(self.pbx.records(), [])
        self.pbx.advance(40)
        self.assertEqual(self.pbx.leftovers(), {})

    def test_valid_trunk_numbers_still_ring(self) -> None:
        for user, caller in (("%2B31-20-123-4567", "+31201234567"), ("0612345678", "0612345678"),
                             ("anonymous", "anonymous"), ("%2A31", "*31"), ("alice.smith", "alice.smith")):
            self.carrier_invite(user)
            (dlg,) = self.bob.incoming()
            assert dlg.invite is not None
            self.assertEqual(dlg.invite.from_.uri.user, caller)  # type: ignore[union-attr]
            dlg.respond(486)
            self.carrier.inbox()

    def test_injected_callee_from_an_identifier_is_404(self) -> None:
        self.identifier.callee = "200\r\nSubject: pwned"
        self.assertEqual(statuses(self.carrier_invite("0612345678")), [404])
        self.assertEqual(self.bob.incoming(), [])

    def test_escaped_controls_in_the_request_uri_are_404(self) -> None:
        alice = self.pbx.phone("100", "10.0.0.1")
        for callee in ("200%0d%0aSubject:%20pwned", "200%3e", "200%00"):
            alice.call(callee, sdp("10.0.0.1"))
            self.assertEqual(statuses(alice.inbox())[-1], 404, callee)
        self.assertEqual(self.bob.incoming(), [])

    def test_display_name_loses_control_characters(self) -> None:
        self.identifier.display = "Evil\r\nSubject: pwned"
        self.carrier_invite("0612345678")
        (dlg,) = self.bob.incoming()
        assert dlg.invite is not None
        self.assertEqual(dlg.invite.from_.display, '"Evil Subject: pwned"')
        self.assertIsNone(dlg.invite.get("subject"))

    def test_phone_display_name_with_nul_and_bidi_override(self) -> None:
        """A quoted-pair NUL and a right-to-left override from a phone do not reach the callee (for an
        extension allowed to show its phone's own display name)."""
        from minisip.config import Extension
        exts = dict(self.pbx.core.extensions)
        exts["100"] = Extension("100", "pw100", None, phone_display_name=True)
        self.pbx.core.apply_config(DOMAIN, exts)
        alice = self.pbx.phone("100", "10.0.0.1")
        ruri = f"sip:200@{DOMAIN}"
        display = '"CEO\\\x00 \u202eBoss" '
        dlg_from = f"{display}<sip:100@{DOMAIN}>;tag={token()}"
        call_id = token()
        first = alice.build("INVITE", ruri, call_id=call_id, from_=dlg_from, to=f"<{ruri}>", cseq=1, body=sdp("10.0.0.1"))
        (challenge,) = [m for m in alice.send_request(first) if isinstance(m, Response)]
        authz = alice.authorization(challenge.get_all("proxy-authenticate")[0], "INVITE", ruri)
        again = alice.build("INVITE", ruri, call_id=call_id, from_=dlg_from, to=f"<{ruri}>", cseq=2,
                            body=sdp("10.0.0.1"), headers=[("Proxy-Authorization", authz)])
        alice.send_request(again)
        (dlg,) = self.bob.incoming()
        assert dlg.invite is not None
        self.assertEqual(dlg.invite.from_.display, '"CEO Boss"')
        to_bob = [d for a, d in self.sent if a.host == "10.0.0.2"]
        self.assertTrue(to_bob)
        self.assertFalse(any(b"\x00" in d or "\u202e".encode() in d for d in to_bob))


class SpoofedBanTests(SynchronousTestCase):
    """Point 2: a ban never cuts off answers, calls up, trunks or phones registered over TCP/TLS."""

    def setUp(self) -> None:
        self.pbx = PBX()
        self.alice = self.pbx.phone("100", "10.0.0.1")
        self.bob = self.pbx.phone("200", "10.0.0.2")
        self.alice.register()
        self.bob.register()

    def ban(self, host: str) -> None:
        """Five real wrong answers from ``host`` (an attacker sharing it), as the issue describes."""
        attacker = self.pbx.phone("200", host, 5099, password="guess")
        for _ in range(5):
            attacker.register()
        self.assertTrue(self.pbx.core.security.is_banned(host))

    def test_answers_sent_as_another_address_do_not_ban_it(self) -> None:
        """A nonce fetched from the attacker's address, then wrong answers with bob's address as source."""
        attacker = self.pbx.phone("200", "10.0.0.66", password="guess")
        (challenge,) = [m for m in attacker.send_request(attacker.register_request()) if isinstance(m, Response)]
        value = next(v for v in challenge.get_all("www-authenticate") if "MD5" in v)
        spoofed = self.pbx.phone("200", "10.0.0.2", password="guess")
        for nc in range(1, 11):
            req = spoofed.register_request(headers=[("Authorization", spoofed.authorization(value, nc=nc))])
            answers = statuses(spoofed.send_request(req))
            self.assertEqual(answers, [401])
        self.assertFalse(self.pbx.core.security.is_banned("10.0.0.2"))
        self.assertEqual(self.bob.register().status, 200)  # type: ignore[union-attr]

    def test_banned_phone_still_answers_calls(self) -> None:
        """Calls to a phone whose address got banned do not fail with 408: its responses get through."""
        self.ban("10.0.0.2")
        a = self.alice.call("200", sdp("10.0.0.1"))
        (b,) = self.bob.incoming()
        b.respond(180)
        b.respond(200, sdp("10.0.0.2"))
        self.assertEqual(statuses(self.alice.inbox()), [100, 180, 200])
        a.ack()
        self.bob.inbox()
        # The callee's in-dialog BYE gets through too.
        b.request("BYE")
        self.assertEqual(statuses(self.bob.inbox()), [200])
        (bye,) = requests(self.alice.inbox(), "BYE")
        self.alice.reply(bye, 200)
        self.assertEqual(self.pbx.records()[-1].cause, "normal")
        self.pbx.advance(40)
        self.assertEqual(self.pbx.leftovers(), {})

    def test_banned_address_still_blocks_new_requests_and_unknown_dialogs(self) -> None:
        self.ban("10.0.0.2")
        self.assertIsNone(self.bob.register())
        fake = self.bob.build("BYE", f"sip:100@{DOMAIN}", call_id=token(), from_=f"<sip:200@{DOMAIN}>;tag=x",
                              to=f"<sip:100@{DOMAIN}>;tag=nosuchdialog", cseq=5, contact=False)
        self.assertEqual(self.bob.send_request(fake), [])

    def test_cancel_of_an_invite_accepted_before_the_ban(self) -> None:
        a = self.bob.call("100", sdp("10.0.0.2"))
        (b,) = self.alice.incoming()
        b.respond(180)
        self.bob.inbox()
        self.ban("10.0.0.2")
        a.cancel()
        self.assertEqual(sorted(statuses(self.bob.inbox())), [200, 487])
        (cancel,) = requests(self.alice.inbox(), "CANCEL")
        self.alice.reply(cancel, 200)
        b.respond(487)
        self.pbx.advance(40)
        self.assertEqual(self.pbx.leftovers(), {})

    def test_trunk_address_is_never_banned(self) -> None:
        core = self.pbx.core
        core.security.exempt(CARRIER)
        core.hooks.for_owner("test").add_caller_identifier(CarrierIdentifier())
        attacker = self.pbx.phone("200", CARRIER, 5099, password="guess")
        for _ in range(10):
            attacker.register()
        self.assertFalse(core.security.is_banned(CARRIER))
        carrier = self.pbx.phone("carrier", CARRIER, 5060)
        ruri = f"sip:+31201234567@{DOMAIN}"
        carrier.send_request(carrier.build("INVITE", ruri, call_id=token(), from_=f"<sip:0612@{CARRIER}>;tag=c",
                                           to=f"<{ruri}>", cseq=1, body=sdp(CARRIER)))
        self.assertEqual(len(self.bob.incoming()), 1)

    def test_phone_registered_over_tcp_is_never_banned(self) -> None:
        carol = Phone(self.pbx, "300", "10.0.0.3", 5060, "pw300")
        carol.addr = Addr("tcp", "10.0.0.3", 40000, conn=1)
        self.assertEqual(carol.register().status, 200)  # type: ignore[union-attr]
        attacker = self.pbx.phone("300", "10.0.0.3", 5099, password="guess")
        for _ in range(6):
            self.assertIsNotNone(attacker.register())
        self.assertFalse(self.pbx.core.security.is_banned("10.0.0.3"))
        carol.call("200", sdp("10.0.0.3"))
        self.assertEqual(len(self.bob.incoming()), 1)

    def test_phone_registered_over_udp_is_not_exempt(self) -> None:
        self.ban("10.0.0.1")
        self.assertIsNone(self.alice.register())


class AmplificationTests(SynchronousTestCase):
    """Point 3: an unauthenticated request from a spoofable UDP source draws one small answer."""

    INVITE = (f"INVITE sip:200@{DOMAIN} SIP/2.0\r\n"
              "Via: SIP/2.0/UDP 198.51.100.9;branch=z9hG4bK5\r\n"
              "From: <sip:1@a>;tag=1\r\n"
              "To: <sip:20@a>\r\n"
              "Call-ID: a\r\n"
              "CSeq: 1 INVITE\r\n"
              "\r\n").encode()

    def setUp(self) -> None:
        self.pbx = PBX()
        self.out: list[bytes] = []
        self.pbx.core.transactions.send = lambda data, addr: self.out.append(data)
        self.source = Addr("udp", "198.51.100.9", 5060)

    def deliver(self, data: bytes) -> None:
        self.pbx.core.message_received(parse_message(data), self.source)

    def test_one_small_answer_to_one_unauthenticated_invite(self) -> None:
        self.pbx.core.digest_algorithms = ("MD5",)
        self.assertEqual(len(self.INVITE), 150)
        self.deliver(self.INVITE)
        self.pbx.advance(32)
        (resp,) = [parse_message(d) for d in self.out]
        self.assertEqual(resp.status, 407)  # type: ignore[union-attr]
        self.assertLessEqual(sum(map(len, self.out)), 4 * len(self.INVITE))
        self.assertEqual(self.pbx.leftovers(), {})

    def test_two_algorithms_still_within_bounds(self) -> None:
        self.pbx.core.digest_algorithms = ("SHA-256", "MD5")
        self.deliver(self.INVITE)
        self.pbx.advance(32)
        self.assertLessEqual(sum(map(len, self.out)), 4 * len(self.INVITE))

    def test_client_retransmissions_answered_one_for_one(self) -> None:
        sent = 0
        for delay in (0.5, 1, 2, 4, 8, 16):
            self.deliver(self.INVITE)
            sent += len(self.INVITE)
            self.pbx.advance(delay)
        self.pbx.advance(1)
        self.assertEqual(len(self.out), 6)
        self.assertLessEqual(sum(map(len, self.out)), 4 * sent)
        self.assertEqual(self.pbx.leftovers(), {})

    def test_register_challenge_keeps_no_transaction(self) -> None:
        phone = self.pbx.phone("100", "10.0.0.1")
        phone.deliver(phone.register_request())
        self.assertEqual(len(self.pbx.core.transactions), 0)

    def test_wrong_answer_counts_once_however_often_it_is_retransmitted(self) -> None:
        self.pbx.core.transactions.send = self.pbx.net.send
        phone = self.pbx.phone("100", "10.0.0.1", password="guess")
        (challenge,) = statuses_and(phone.send_request(phone.register_request()))
        value = next(v for v in challenge.get_all("www-authenticate") if "MD5" in v)
        req = phone.register_request(headers=[("Authorization", phone.authorization(value))])
        for _ in range(6):
            phone.deliver(req)
        self.assertEqual(statuses(phone.inbox()), [401] * 6)
        self.assertFalse(self.pbx.core.security.is_banned("10.0.0.1"))
        self.pbx.advance(40)
        self.assertEqual(self.pbx.leftovers(), {})


def statuses_and(msgs: list[Any]) -> list[Response]:
    return [m for m in msgs if isinstance(m, Response)]


class DistributedGuessingTests(SynchronousTestCase):
    """Point 5: many addresses guessing one extension are throttled; its registered phones are not."""

    def setUp(self) -> None:
        self.events = log_events(self)
        self.pbx = PBX()
        self.alice = self.pbx.phone("100", "10.0.0.1")
        self.assertEqual(self.alice.register().status, 200)  # type: ignore[union-attr]

    def guess(self, user: str, host: str, password: str) -> Response | None:
        return self.pbx.phone(user, host, password=password).register()

    def spray(self, user: str) -> list[int | None]:
        """200 wrong passwords from 50 addresses (4 each: under the per-address ban) in 0.1 s."""
        answers = []
        for i in range(200):
            resp = self.guess(user, f"203.0.113.{i % 50 + 1}", f"guess{i}")
            answers.append(resp.status if resp else None)
            self.pbx.clock.advance(0.0005)
        return answers

    def test_spray_is_throttled_and_logged(self) -> None:
        answers = self.spray("100")
        self.assertEqual(answers, [401] * 200)
        self.assertTrue(self.pbx.core.security.is_throttled("100"))
        # Even the right password is refused from an address where 100 is not registered...
        resp = self.guess("100", "203.0.113.77", "pw100")
        self.assertEqual(resp.status if resp else None, 401)
        # ...while its registered phone goes on registering and calling.
        self.assertEqual(self.alice.register().status, 200)  # type: ignore[union-attr]
        self.alice.call("200")
        self.assertEqual(statuses(self.alice.inbox())[-1], 480)  # authenticated: 200 is not registered
        lines = [formatEvent(e) for e in self.events if e.get("log_namespace") == "minisip.security"]
        throttles = [line for line in lines if "throttled" in line]
        self.assertEqual(len(throttles), 1, lines)
        self.assertTrue(throttles[0].startswith("security: extension 100 throttled"), throttles[0])
        self.assertEqual([e for e in self.events if e.get("security_event") == "ban"], [])

    def test_throttle_ends(self) -> None:
        self.spray("100")
        self.pbx.advance(301, step=30)
        resp = self.guess("100", "203.0.113.77", "pw100")
        self.assertEqual(resp.status if resp else None, 200)

    def test_throttled_known_and_unknown_users_answer_alike(self) -> None:
        self.spray("100")
        self.spray("999")
        known = self.answers("100")
        unknown = self.answers("999")
        self.assertEqual([(r.status, sorted(k for k, _, _ in r.headers), len(r.to_bytes())) for r in known],
                         [(r.status, sorted(k for k, _, _ in r.headers), len(r.to_bytes())) for r in unknown])

    def answers(self, user: str) -> list[Response]:
        phone = self.pbx.phone(user, "203.0.113.99", password="guess")
        phone.reg_call_id = "fixed-call-id@203.0.113.99"
        first = statuses_and(phone.send_request(phone.register_request()))
        value = next(v for v in first[-1].get_all("www-authenticate") if "MD5" in v)
        again = statuses_and(phone.send_request(
            phone.register_request(headers=[("Authorization", phone.authorization(value))])))
        return first + again


class EnumerationTests(SynchronousTestCase):
    """What held up must keep holding: known and unknown users get identical answers."""

    def test_identical_answers(self) -> None:
        pbx = PBX()
        shapes = []
        for user in ("100", "999"):
            phone = pbx.phone(user, "10.0.0.9", password="guess")
            phone.reg_call_id = "same@10.0.0.9"
            first = statuses_and(phone.send_request(phone.register_request()))
            value = first[-1].get_all("www-authenticate")[0]
            second = statuses_and(phone.send_request(
                phone.register_request(headers=[("Authorization", phone.authorization(value))])))
            shapes.append([(r.status, sorted(k for k, _, _ in r.headers), len(r.to_bytes())) for r in first + second])
        self.assertEqual(shapes[0], shapes[1])
        self.assertEqual([s for s, _, _ in shapes[0]], [401, 401])


class DigestCheckTests(SynchronousTestCase):
    """Point 7 through the core: digest uri, algorithms offered, replays."""

    def setUp(self) -> None:
        self.pbx = PBX()
        self.alice = self.pbx.phone("100", "10.0.0.1")
        self.bob = self.pbx.phone("200", "10.0.0.2")
        self.bob.register()

    def invite(self, ruri: str, authz: str | None = None, cseq: int = 1, call_id: str | None = None) -> list[Any]:
        headers = [("Proxy-Authorization", authz)] if authz else []
        req = self.alice.build("INVITE", ruri, call_id=call_id or token(), from_=f"<sip:100@{DOMAIN}>;tag=a",
                               to=f"<{ruri}>", cseq=cseq, headers=headers, body=sdp("10.0.0.1"))
        return self.alice.send_request(req)

    def test_authorization_for_one_destination_does_not_work_for_another(self) -> None:
        (challenge,) = statuses_and(self.invite(f"sip:200@{DOMAIN}"))
        value = challenge.get_all("proxy-authenticate")[0]
        authz = build_authorization(value, "INVITE", f"sip:200@{DOMAIN}", "100", "pw100")
        got = self.invite(f"sip:300@{DOMAIN}", authz, cseq=2)
        self.assertEqual(statuses(got), [407])
        self.assertEqual(self.pbx.core.calls.calls, {})

    def test_md5_refused_when_only_sha256_is_configured(self) -> None:
        self.pbx.core.digest_algorithms = ("SHA-256",)
        (challenge,) = statuses_and(self.invite(f"sip:200@{DOMAIN}"))
        (value,) = challenge.get_all("proxy-authenticate")
        self.assertIn("algorithm=SHA-256", value)
        md5 = value.replace("algorithm=SHA-256", "algorithm=MD5")
        authz = build_authorization(md5, "INVITE", f"sip:200@{DOMAIN}", "100", "pw100")
        self.assertEqual(statuses(self.invite(f"sip:200@{DOMAIN}", authz, cseq=2)), [407])
        sha = build_authorization(value, "INVITE", f"sip:200@{DOMAIN}", "100", "pw100")
        self.invite(f"sip:200@{DOMAIN}", sha, cseq=3)
        self.assertEqual(len(self.bob.incoming()), 1)

    def test_replayed_invite_refused(self) -> None:
        (challenge,) = statuses_and(self.invite(f"sip:200@{DOMAIN}"))
        authz = build_authorization(challenge.get_all("proxy-authenticate")[0], "INVITE", f"sip:200@{DOMAIN}",
                                    "100", "pw100")
        self.invite(f"sip:200@{DOMAIN}", authz, cseq=2)
        self.assertEqual(len(self.bob.incoming()), 1)
        replay = self.invite(f"sip:200@{DOMAIN}", authz, cseq=2)
        self.assertEqual(statuses(replay), [407])
        self.assertIn("stale=true", statuses_and(replay)[0].get("proxy-authenticate") or "")
        self.assertEqual(self.bob.incoming(), [])


class RefusedHeaderTests(SynchronousTestCase):
    """A value with CR LF that reaches the serializer fails that call with 500; nothing half-sent."""

    def test_router_destination_with_crlf(self) -> None:
        from minisip.core.router import Route, SipDestination
        from minisip.sip.message import UnsafeHeaderError

        pbx = PBX()
        alice = pbx.phone("100", "10.0.0.1")
        bob = pbx.phone("200", "10.0.0.2")

        class Evil:
            def route(self, call: Any) -> Any:
                return Route((SipDestination("sip:200@10.0.0.2:5060", bob.addr,
                                             from_uri="<sip:100@x>\r\nSubject: pwned"),))

        pbx.core.routers.add(Evil(), priority=0, owner="test")
        alice.call("200", sdp("10.0.0.1"))
        self.assertEqual([s for s in statuses(alice.inbox()) if s >= 200], [500])
        self.assertEqual(bob.inbox(), [])
        self.flushLoggedErrors(UnsafeHeaderError)
        pbx.advance(40)
        self.assertEqual(pbx.leftovers(), {})
