"""SIPCore dispatch as the transport drives it: OPTIONS, unknown dialogs, bans, the router chain."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase

from minisip.config import DEFAULT_DIGEST_ALGORITHMS, Extension
from minisip.core.router import CONTINUE, ContactDestination, Reject, Route
from minisip.sip.message import Response
from minisip.sip.types import Addr
from tests.core.fakes import DOMAIN, PBX, header_names, requests, sdp, statuses, token


class DispatchTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.pbx = PBX()
        self.phone = self.pbx.phone("100", "10.0.0.1")

    def out_of_dialog(self, method: str, ruri: str = f"sip:{DOMAIN}", to_tag: str | None = None,
                      **kw: Any) -> list[Any]:
        to = f"<sip:200@{DOMAIN}>" + (f";tag={to_tag}" if to_tag else "")
        req = self.phone.build(method, ruri, call_id=token(), from_=f"<sip:100@{DOMAIN}>;tag={token()}", to=to,
                               cseq=1, **kw)
        return self.phone.send_request(req)

    def test_options(self) -> None:
        (resp,) = self.out_of_dialog("OPTIONS", contact=False)
        assert isinstance(resp, Response)
        self.assertEqual(resp.status, 200)
        allow = {m.strip() for m in (resp.get("allow") or "").split(",")}
        self.assertTrue({"INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "UPDATE", "INFO"} <= allow)
        self.assertEqual(resp.get("accept"), "application/sdp")
        self.assertIsNotNone(resp.get("supported"))
        self.assertIsNotNone(resp.to_tag)
        self.pbx.advance(40)
        self.assertEqual(self.pbx.leftovers(), {})

    def test_options_needs_no_registration_or_auth(self) -> None:
        stranger = self.pbx.phone("999", "192.0.2.7")
        req = stranger.build("OPTIONS", f"sip:{DOMAIN}", call_id=token(), from_=f"<sip:999@{DOMAIN}>;tag=x",
                             to=f"<sip:{DOMAIN}>", cseq=1)
        self.assertEqual(statuses(stranger.send_request(req)), [200])

    def test_in_dialog_request_of_unknown_dialog(self) -> None:
        for method in ("INFO", "UPDATE", "BYE", "INVITE"):
            got = self.out_of_dialog(method, to_tag="nosuchtag")
            self.assertEqual(statuses(got)[-1], 481, method)

    def test_bye_without_dialog(self) -> None:
        self.assertEqual(statuses(self.out_of_dialog("BYE", contact=False)), [481])

    def test_cancel_without_invite(self) -> None:
        self.assertEqual(statuses(self.out_of_dialog("CANCEL", contact=False)), [481])

    def test_unknown_method(self) -> None:
        got = self.out_of_dialog("PUBLISH")
        self.assertEqual(statuses(got), [501])
        self.assertIn("INVITE", got[0].get("allow") or "")

    def test_max_forwards_zero(self) -> None:
        self.pbx.phone("200", "10.0.0.2").register()
        dlg = self.phone.call("200", sdp("10.0.0.1"), auth=False, max_forwards=0)
        got = self.phone.inbox()
        self.assertEqual(statuses(got), [483])
        self.assertEqual(dlg.responses[-1].status, 483)
        self.pbx.advance(40)
        self.assertEqual(self.pbx.leftovers(), {})

    def test_handler_exception_answers_500(self) -> None:
        def broken(*a: object, **kw: object) -> None:
            raise RuntimeError("kaput")

        self.pbx.core._register = broken  # type: ignore[method-assign]
        self.assertEqual(statuses(self.phone.send_request(self.phone.register_request())), [500])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class BanTests(SynchronousTestCase):
    """5 failed authentications from one address within 60 s ban it for ban_time (600 s)."""

    def setUp(self) -> None:
        self.pbx = PBX()
        self.attacker = self.pbx.phone("100", "10.0.0.66", password="guess")

    def fail_auth(self, times: int) -> list[Response | None]:
        return [self.attacker.register() for _ in range(times)]

    def test_ban_after_five_failures(self) -> None:
        answers = self.fail_auth(5)
        self.assertEqual([a.status if a else None for a in answers], [401, 401, 401, 401, None])
        # Everything from the address is ignored now: no 401, no 100 Trying, no OPTIONS answer.
        self.assertEqual(self.attacker.send_request(self.attacker.register_request()), [])
        self.attacker.call("200", auth=False)
        self.assertEqual(self.attacker.inbox(), [])
        other_port = self.pbx.phone("100", "10.0.0.66", 5099)
        self.assertIsNone(other_port.register())
        # Another address still registers.
        good = self.pbx.phone("100", "10.0.0.1").register()
        assert good is not None
        self.assertEqual(good.status, 200)
        self.pbx.advance(64)
        self.assertEqual(self.pbx.leftovers(), {})

    def test_ban_ends(self) -> None:
        self.fail_auth(5)
        self.pbx.advance(599, step=30)
        self.assertIsNone(self.pbx.phone("100", "10.0.0.66").register())
        self.pbx.advance(2)
        resp = self.pbx.phone("100", "10.0.0.66").register()
        assert resp is not None
        self.assertEqual(resp.status, 200)

    def test_failures_outside_the_window_do_not_ban(self) -> None:
        self.fail_auth(4)
        self.pbx.advance(61, step=10)
        answers = self.fail_auth(4)
        self.assertEqual([a.status if a else None for a in answers], [401] * 4)

    def test_failed_invites_count_too(self) -> None:
        for _ in range(4):
            self.attacker.call("200")
        self.assertEqual(statuses(self.attacker.inbox())[-1], 407)
        self.attacker.call("200")
        self.assertEqual(statuses(self.attacker.inbox()), [])
        self.pbx.advance(64)
        self.assertEqual(self.pbx.leftovers(), {})

    def test_requests_without_credentials_do_not_count(self) -> None:
        for _ in range(10):
            self.assertEqual(statuses(self.attacker.send_request(self.attacker.register_request())), [401])

    def test_banned_address_keeps_its_call(self) -> None:
        pbx = self.pbx
        alice = pbx.phone("100", "10.0.0.66", 5070)
        bob = pbx.phone("200", "10.0.0.2")
        alice.register()
        bob.register()
        a = alice.call("200", sdp("10.0.0.66"))
        (b,) = bob.incoming()
        b.respond(200, sdp("10.0.0.2"))
        alice.inbox()
        a.ack()
        bob.inbox()
        self.fail_auth(5)
        self.assertTrue(pbx.core.security.is_banned("10.0.0.66"))
        # A re-INVITE (hold) and the BYE of the call already up still go through.
        a.send_invite(sdp("10.0.0.66", direction="sendonly", version=2))
        (reinvite,) = requests(bob.inbox(), "INVITE")
        bob.reply(reinvite, 200, sdp("10.0.0.2", direction="recvonly", version=2), tag=b.local_tag)
        self.assertEqual(statuses(alice.inbox()), [100, 200])
        a.ack()
        a.bye()
        self.assertEqual(statuses(alice.inbox()), [200])
        (bye,) = requests(bob.inbox(), "BYE")
        bob.reply(bye, 200)
        pbx.advance(40)
        self.assertEqual(pbx.leftovers(), {})


class Boom:
    """A router that raises once, then has no opinion."""

    def __init__(self) -> None:
        self.calls = 0

    def route(self, call: Any) -> Any:
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("router bug")
        return CONTINUE


class RouterTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.pbx = PBX()
        self.alice = self.pbx.phone("100", "10.0.0.1")
        self.bob = self.pbx.phone("200", "10.0.0.2")
        self.alice.register()
        self.bob.register()

    def final(self) -> int:
        return [s for s in statuses(self.alice.inbox()) if s >= 200][-1]

    def test_router_exception_fails_only_that_call(self) -> None:
        boom = Boom()
        self.pbx.core.routers.add(boom, priority=0, owner="test")
        self.alice.call("200", sdp("10.0.0.1"))
        self.assertEqual(self.final(), 500)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(self.bob.incoming(), [])
        # The next call goes through the chain to the extension.
        self.alice.call("200", sdp("10.0.0.1"))
        (b,) = self.bob.incoming()
        b.respond(486)
        self.assertEqual(self.final(), 486)
        self.assertEqual(boom.calls, 2)
        self.pbx.advance(40)
        self.assertEqual(self.pbx.leftovers(), {})

    def test_router_failing_deferred(self) -> None:
        class Later:
            def route(self, call: Any) -> Any:
                return defer.fail(ValueError("async router bug"))

        self.pbx.core.routers.add(Later(), priority=0, owner="test")
        self.alice.call("200")
        self.assertEqual(self.final(), 500)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)

    def test_router_with_unusable_destination(self) -> None:
        class Bad:
            def route(self, call: Any) -> Any:
                return Route((ContactDestination("this is not a uri", Addr("udp", "10.0.0.9", 5060)),))

        self.pbx.core.routers.add(Bad(), priority=0, owner="test")
        self.alice.call("200")
        self.assertEqual(self.final(), 500)
        self.flushLoggedErrors()
        self.pbx.advance(40)
        self.assertEqual(self.pbx.leftovers(), {})

    def test_router_reject(self) -> None:
        class No:
            def route(self, call: Any) -> Any:
                return Reject(403, "Forbidden")

        self.pbx.core.routers.add(No(), priority=0, owner="test")
        self.alice.call("200")
        self.assertEqual(self.final(), 403)
        self.assertEqual(self.pbx.records()[-1].cause, "forbidden")
        self.pbx.core.routers.remove_owner("test")
        self.alice.call("200")
        self.assertEqual(len(self.bob.incoming()), 1)

    def test_router_ring_time(self) -> None:
        bob_dest = ContactDestination("sip:200@10.0.0.2:5060", Addr("udp", "10.0.0.2", 5060))

        class Short:
            def route(self, call: Any) -> Any:
                return Route((bob_dest,), ring_time=5)

        self.pbx.core.routers.add(Short(), priority=0, owner="test")
        self.alice.call("200")
        (b,) = self.bob.incoming()
        b.respond(180)
        self.pbx.advance(5)
        self.assertEqual(self.final(), 480)
        (cancel,) = requests(self.bob.inbox(), "CANCEL")
        self.bob.reply(cancel, 200)
        b.respond(487)
        self.pbx.advance(40)
        self.assertEqual(self.pbx.leftovers(), {})

    def test_cancel_while_routing(self) -> None:
        pending: list[defer.Deferred[Any]] = []

        class Slow:
            def route(self, call: Any) -> Any:
                d: defer.Deferred[Any] = defer.Deferred()
                pending.append(d)
                return d

        self.pbx.core.routers.add(Slow(), priority=0, owner="test")
        a = self.alice.call("200")
        self.assertEqual(statuses(self.alice.inbox()), [100])
        a.cancel()
        self.assertEqual(sorted(statuses(self.alice.inbox())), [200, 487])
        pending[0].callback(CONTINUE)
        self.assertEqual(self.bob.incoming(), [])
        self.assertEqual(self.pbx.records()[-1].cause, "cancelled")
        self.pbx.advance(40)
        self.assertEqual(self.pbx.leftovers(), {})


class MessageTests(SynchronousTestCase):
    """Page-mode MESSAGE (RFC 3428) between extensions."""

    def setUp(self) -> None:
        self.pbx = PBX()
        self.alice = self.pbx.phone("100", "10.0.0.1")
        self.bob = self.pbx.phone("200", "10.0.0.2")
        self.bob.register()
        self.bob.inbox()

    def send_message(self, to: str, auth: str | None = None) -> list[Any]:
        ruri = f"sip:{to}@{DOMAIN}"
        hdrs = [("Proxy-Authorization", auth)] if auth else []
        req = self.alice.build("MESSAGE", ruri, call_id="m1", from_=f"<sip:100@{DOMAIN}>;tag=a", to=f"<{ruri}>",
                               cseq=2 if auth else 1, contact=False, headers=hdrs, body=b"hello",
                               ctype="text/plain")
        return self.alice.send_request(req)

    def authorized(self, to: str) -> list[Any]:
        (challenge,) = [m for m in self.send_message(to) if isinstance(m, Response)]
        self.assertEqual(challenge.status, 407)
        value = challenge.get_all("proxy-authenticate")[0]
        return self.send_message(to, self.alice.authorization(value, "MESSAGE", f"sip:{to}@{DOMAIN}"))

    def test_relayed_to_the_extension_and_answer_relayed_back(self) -> None:
        self.assertEqual(self.authorized("200"), [])
        (msg,) = requests(self.bob.inbox(), "MESSAGE")
        self.assertEqual(msg.body, b"hello")
        self.assertIn("sip:100@", msg.get("from") or "")
        self.bob.reply(msg, 200)
        self.assertEqual(statuses(self.alice.inbox()), [200])
        self.pbx.advance(40)
        self.assertEqual(self.pbx.leftovers(), {})

    def test_unknown_and_unregistered(self) -> None:
        self.assertEqual(statuses(self.authorized("555")), [404])
        self.assertEqual(statuses(self.authorized("300")), [480])


class DigestAlgorithmTests(SynchronousTestCase):
    """Which digest challenges a phone gets: the server's list ([security] digest_algorithms, MD5 alone by
    default), or its extension's own ([extension N] digest_algorithms): To for REGISTER, From otherwise."""

    def setUp(self) -> None:
        self.pbx = PBX()
        exts = dict(self.pbx.core.extensions)
        exts["100"] = Extension("100", "pw100", None, digest_algorithms=("SHA-256", "MD5"))
        self.pbx.core.apply_config(DOMAIN, exts, digest_algorithms=DEFAULT_DIGEST_ALGORITHMS)
        self.sha = self.pbx.phone("100", "10.0.0.1")
        self.plain = self.pbx.phone("200", "10.0.0.2")

    def algorithms(self, resp: Any, header: str = "www-authenticate") -> list[str]:
        assert isinstance(resp, Response)
        return [v.split("algorithm=", 1)[1].split(",", 1)[0].strip() for v in resp.get_all(header)]

    def first_answer(self, phone: Any, req: Any) -> Any:
        (resp,) = [m for m in phone.send_request(req) if isinstance(m, Response)]
        return resp

    def test_default_is_md5_alone(self) -> None:
        """An extension without its own list gets one challenge, MD5: what baresip 1.0 and twinkle need."""
        resp = self.first_answer(self.plain, self.plain.register_request())
        self.assertEqual(resp.status, 401)
        self.assertEqual(self.algorithms(resp), ["MD5"])
        registered = self.plain.register()
        assert registered is not None
        self.assertEqual(registered.status, 200)

    def test_extension_list_for_its_register(self) -> None:
        """Extension 100 set to "SHA-256 MD5" is challenged with both, SHA-256 first, and registers with it."""
        self.assertEqual(self.algorithms(self.first_answer(self.sha, self.sha.register_request())), ["SHA-256", "MD5"])
        registered = self.sha.register(algorithm="SHA-256")
        assert registered is not None
        self.assertEqual(registered.status, 200)

    def test_register_challenge_follows_to(self) -> None:
        """A REGISTER for 100 sent as 200 (From) is challenged as 100, the extension being registered."""
        req = self.plain.build("REGISTER", f"sip:{DOMAIN}", call_id=token(), from_=f"<sip:200@{DOMAIN}>;tag=f",
                               to=f"<sip:100@{DOMAIN}>", cseq=1, contact=False)
        self.assertEqual(self.algorithms(self.first_answer(self.plain, req)), ["SHA-256", "MD5"])
        req = self.sha.build("REGISTER", f"sip:{DOMAIN}", call_id=token(), from_=f"<sip:100@{DOMAIN}>;tag=f",
                             to=f"<sip:200@{DOMAIN}>", cseq=1, contact=False)
        self.assertEqual(self.algorithms(self.first_answer(self.sha, req)), ["MD5"])

    def test_other_requests_follow_from(self) -> None:
        """An INVITE is challenged (407) as its caller: 100 gets its list, 200 the server's, whoever is called."""
        self.sha.call("200", sdp("10.0.0.1"), auth=False)
        (challenge,) = [m for m in self.sha.inbox() if isinstance(m, Response) and m.status == 407]
        self.assertEqual(self.algorithms(challenge, "proxy-authenticate"), ["SHA-256", "MD5"])
        self.plain.call("100", sdp("10.0.0.2"), auth=False)
        (challenge,) = [m for m in self.plain.inbox() if isinstance(m, Response) and m.status == 407]
        self.assertEqual(self.algorithms(challenge, "proxy-authenticate"), ["MD5"])
        self.pbx.advance(40)
        self.assertEqual(self.pbx.leftovers(), {})

    def test_unknown_user_gets_the_server_list(self) -> None:
        """A user that is no extension gets exactly what an extension without its own list gets."""
        stranger = self.pbx.phone("999", "10.0.0.9", password="whatever")
        unknown = self.first_answer(stranger, stranger.register_request())
        known = self.first_answer(self.plain, self.plain.register_request())
        self.assertEqual(unknown.status, 401)
        self.assertEqual(self.algorithms(unknown), self.algorithms(known))
        self.assertEqual(header_names(unknown), header_names(known))

    def test_server_list_change_applies(self) -> None:
        """[security] digest_algorithms = MD5 SHA-256 gives two challenges to extensions without their own."""
        self.pbx.core.apply_config(DOMAIN, self.pbx.core.extensions, digest_algorithms=("MD5", "SHA-256"))
        self.assertEqual(self.algorithms(self.first_answer(self.plain, self.plain.register_request())),
                         ["MD5", "SHA-256"])
        self.assertEqual(self.algorithms(self.first_answer(self.sha, self.sha.register_request())), ["SHA-256", "MD5"])
