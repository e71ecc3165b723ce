"""REGISTER through SIPCore as a phone sees it: digest challenges, bindings, expiry limits, refusals."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from minisip.sip.message import Response
from tests.core.fakes import DOMAIN, PBX, header_names, statuses


def bindings(resp: Response) -> dict[str, str | None]:
    """Contact URI -> expires parameter, as listed in a 200 to REGISTER."""
    return {str(c.uri): c.params.get("expires") for c in resp.contacts()}


class ChallengeTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.pbx = PBX()
        self.phone = self.pbx.phone("100", "10.0.0.1")

    def challenge(self) -> Response:
        (resp,) = self.phone.send_request(self.phone.register_request())
        assert isinstance(resp, Response)
        return resp

    def test_default_challenge_is_md5_alone(self) -> None:
        values = self.challenge().get_all("www-authenticate")
        self.assertEqual(len(values), 1)
        self.assertIn("algorithm=MD5", values[0])

    def test_two_challenges_md5_first(self) -> None:
        self.pbx.core.digest_algorithms = ("MD5", "SHA-256")
        resp = self.challenge()
        self.assertEqual(resp.status, 401)
        values = resp.get_all("www-authenticate")
        self.assertEqual(len(values), 2)
        self.assertIn("algorithm=MD5", values[0])
        self.assertIn("algorithm=SHA-256", values[1])
        for v in values:
            self.assertIn(f'realm="{DOMAIN}"', v)
            self.assertIn('qop="auth"', v)
            self.assertNotIn("stale", v)
        self.assertIsNotNone(resp.to_tag)

    def test_configured_order(self) -> None:
        core = self.pbx.core
        core.apply_config(DOMAIN, core.extensions, digest_algorithms=("SHA-256",))
        values = self.challenge().get_all("www-authenticate")
        self.assertEqual(len(values), 1)
        self.assertIn("algorithm=SHA-256", values[0])

    def test_sha256_answer_accepted(self) -> None:
        self.pbx.core.digest_algorithms = ("MD5", "SHA-256")
        resp = self.phone.register(algorithm="SHA-256")
        assert resp is not None
        self.assertEqual(resp.status, 200)

    def test_unknown_user_and_wrong_password_look_the_same(self) -> None:
        stranger = self.pbx.phone("999", "10.0.0.2", password="whatever")
        unknown = stranger.register()
        wrong = self.phone.register(password="nope")
        assert unknown is not None and wrong is not None
        self.assertEqual((unknown.status, header_names(unknown)), (wrong.status, header_names(wrong)))
        self.assertEqual(unknown.status, 401)
        self.assertEqual(len(unknown.get_all("www-authenticate")), len(wrong.get_all("www-authenticate")))
        self.assertEqual(self.pbx.location.lookup("100"), [])

    def test_unknown_caller_and_wrong_password_look_the_same(self) -> None:
        stranger = self.pbx.phone("999", "10.0.0.2", password="whatever")
        stranger.call("100")
        wrong = self.pbx.phone("100", "10.0.0.3", password="nope")
        wrong.call("100")
        a = [m for m in stranger.inbox() if isinstance(m, Response)]
        b = [m for m in wrong.inbox() if isinstance(m, Response)]
        self.assertEqual([r.status for r in a], [407])
        self.assertEqual([(r.status, header_names(r)) for r in a], [(r.status, header_names(r)) for r in b])

    def test_replayed_nonce_count_is_stale(self) -> None:
        challenge = self.challenge().get_all("www-authenticate")[0]
        auth = self.phone.authorization(challenge, nc=1)
        ok = self.phone.send_request(self.phone.register_request(headers=[("Authorization", auth)]))
        self.assertEqual(statuses(ok), [200])
        replay = self.phone.send_request(self.phone.register_request(headers=[("Authorization", auth)]))
        self.assertEqual(statuses(replay), [401])
        for v in replay[0].get_all("www-authenticate"):
            self.assertIn("stale=true", v)
        # The next nonce-count on the same nonce is fine.
        auth2 = self.phone.authorization(challenge, nc=2)
        again = self.phone.send_request(self.phone.register_request(headers=[("Authorization", auth2)]))
        self.assertEqual(statuses(again), [200])

    def test_expired_nonce_is_stale(self) -> None:
        challenge = self.challenge().get_all("www-authenticate")[0]
        self.pbx.advance(301, step=10)
        auth = self.phone.authorization(challenge)
        (resp,) = self.phone.send_request(self.phone.register_request(headers=[("Authorization", auth)]))
        assert isinstance(resp, Response)
        self.assertEqual(resp.status, 401)
        fresh = resp.get_all("www-authenticate")
        self.assertTrue(all("stale=true" in v for v in fresh))
        auth = self.phone.authorization(fresh[0])
        self.assertEqual(statuses(self.phone.send_request(self.phone.register_request(
            headers=[("Authorization", auth)]))), [200])

    def test_stale_answers_do_not_count_toward_a_ban(self) -> None:
        challenge = self.challenge().get_all("www-authenticate")[0]
        auth = self.phone.authorization(challenge)
        for _ in range(8):
            self.phone.send_request(self.phone.register_request(headers=[("Authorization", auth)]))
        resp = self.phone.register()
        assert resp is not None
        self.assertEqual(resp.status, 200)

    def test_authenticated_as_someone_else_is_forbidden(self) -> None:
        resp = self.phone.register(user="200", password="pw200")
        assert resp is not None
        self.assertEqual(resp.status, 403)
        self.assertEqual(self.pbx.location.lookup("100"), [])
        self.assertEqual(self.pbx.location.lookup("200"), [])
        # Registering someone else's extension with one's own credentials is refused too.
        resp = self.phone.register(to_user="200")
        assert resp is not None
        self.assertEqual(resp.status, 403)
        self.assertEqual(self.pbx.location.lookup("200"), [])


class BindingTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.pbx = PBX()
        self.phone = self.pbx.phone("100", "10.0.0.1")

    def ok(self, **kw: object) -> Response:
        resp = self.phone.register(**kw)  # type: ignore[arg-type]
        assert resp is not None
        self.assertEqual(resp.status, 200, resp.reason)
        return resp

    def test_register_lists_binding_with_expires(self) -> None:
        resp = self.ok()
        self.assertEqual(bindings(resp), {"sip:100@10.0.0.1:5060": "3600"})
        self.assertTrue(resp.has("date"))
        (b,) = self.pbx.location.lookup("100")
        self.assertEqual((b.contact, b.source_host, b.source_port), ("sip:100@10.0.0.1:5060", "10.0.0.1", 5060))

    def test_several_contacts_in_one_request(self) -> None:
        resp = self.ok(contacts=["<sip:100@10.0.0.1:5060>", "<sip:100@10.0.0.1:5070>;expires=120"])
        self.assertEqual(bindings(resp), {"sip:100@10.0.0.1:5060": "3600", "sip:100@10.0.0.1:5070": "120"})

    def test_several_phones_one_extension(self) -> None:
        self.ok()
        desk = self.pbx.phone("100", "10.0.0.9", 5062)
        resp = desk.register()
        assert resp is not None
        self.assertEqual(set(bindings(resp)), {"sip:100@10.0.0.1:5060", "sip:100@10.0.0.9:5062"})
        self.assertEqual(len(self.pbx.location.lookup("100")), 2)

    def test_refresh_keeps_one_binding(self) -> None:
        self.ok()
        self.pbx.advance(1000, step=100)
        resp = self.ok()
        self.assertEqual(bindings(resp), {"sip:100@10.0.0.1:5060": "3600"})
        self.assertEqual(len(self.pbx.location.lookup("100")), 1)

    def test_bindings_share_repeated_strings(self) -> None:
        """Bindings live for hours: the aor, source host and transport are not copied into each one."""
        self.ok()
        first = self.pbx.location.lookup("100")[0]
        self.pbx.advance(100, step=100)
        self.ok()
        (again,) = self.pbx.location.lookup("100")
        self.assertIsNot(again, first)
        self.assertIs(again.aor, first.aor)
        self.assertIs(again.aor, next(a for a in self.pbx.location.aors() if a == "100"))
        other = self.pbx.phone("200", "".join(["10.0.0.", "1"]), 5070)  # an equal host, another str object
        self.assertIsNot(other.addr.host, self.phone.addr.host)
        resp = other.register()
        assert resp is not None and resp.status == 200
        (b200,) = self.pbx.location.lookup("200")
        self.assertIs(b200.source_host, again.source_host)
        self.assertIs(b200.transport, again.transport)

    def test_thousands_of_contacts_refused_before_parsing(self) -> None:
        """Issue 8.9: 2,399 contacts in one header are refused with 403 before authentication (the first,
        unauthenticated REGISTER gets it), none parsed, nothing stored."""
        import minisip.core.registrar as registrar_module

        parsed: list[str] = []
        real = registrar_module.parse_name_addr

        def counting(value: str) -> object:
            parsed.append(value)
            return real(value)

        self.patch(registrar_module, "parse_name_addr", counting)
        many = ", ".join(f"<sip:100@10.0.0.1:{5000 + i}>" for i in range(2399))
        resp = self.phone.register(contacts=[many])
        assert resp is not None
        self.assertEqual((resp.status, resp.reason), (403, "Too Many Contacts"))
        self.assertEqual(parsed, [])
        self.assertEqual(self.pbx.location.lookup("100"), [])
        # Spread over many header lines it is the same.
        resp = self.phone.register(contacts=[f"<sip:100@10.0.0.1:{5000 + i}>" for i in range(21)])
        assert resp is not None
        self.assertEqual(resp.status, 403)
        self.assertEqual(self.pbx.location.lookup("100"), [])

    def test_twenty_contacts_and_commas_in_names_accepted(self) -> None:
        """The limit counts values, not commas: quoted names with commas do not push a request over."""
        contacts = [f'"Desk, floor {i}" <sip:100@10.0.0.1:{5000 + i}>' for i in range(20)]
        resp = self.ok(contacts=[", ".join(contacts)])
        self.assertEqual(len(bindings(resp)), 10)  # MAX_CONTACTS_PER_AOR keeps the newest ten

    def test_query_without_contact(self) -> None:
        self.ok()
        self.pbx.advance(100, step=100)
        resp = self.ok(contacts=[])
        self.assertEqual(bindings(resp), {"sip:100@10.0.0.1:5060": "3500"})

    def test_expires_zero_removes_one(self) -> None:
        self.ok(contacts=["<sip:100@10.0.0.1:5060>", "<sip:100@10.0.0.1:5070>"])
        resp = self.ok(contacts=["<sip:100@10.0.0.1:5070>"], expires=0)
        self.assertEqual(bindings(resp), {"sip:100@10.0.0.1:5060": "3600"})
        resp = self.ok(contacts=["<sip:100@10.0.0.1:5060>;expires=0"])
        self.assertEqual(bindings(resp), {})
        self.assertEqual(self.pbx.location.lookup("100"), [])

    def test_star_removes_all(self) -> None:
        self.ok(contacts=["<sip:100@10.0.0.1:5060>", "<sip:100@10.0.0.1:5070>"])
        resp = self.ok(contacts=["*"], expires=0)
        self.assertEqual(bindings(resp), {})
        self.assertEqual(self.pbx.location.lookup("100"), [])

    def test_star_needs_expires_zero(self) -> None:
        self.ok()
        resp = self.phone.register(contacts=["*"], expires=60)
        assert resp is not None
        self.assertEqual(resp.status, 400)
        self.assertEqual(len(self.pbx.location.lookup("100")), 1)

    def test_interval_too_brief(self) -> None:
        resp = self.phone.register(expires=30)
        assert resp is not None
        self.assertEqual((resp.status, resp.get("min-expires")), (423, "60"))
        resp = self.phone.register(contacts=["<sip:100@10.0.0.1:5060>;expires=59"])
        assert resp is not None
        self.assertEqual(resp.status, 423)
        self.assertEqual(self.pbx.location.lookup("100"), [])

    def test_configured_limits(self) -> None:
        pbx = PBX(registrar_opts={"min_expires": 120, "max_expires": 600, "default_expires": 300})
        phone = pbx.phone("100", "10.0.0.1")
        resp = phone.register(expires=100)
        assert resp is not None
        self.assertEqual((resp.status, resp.get("min-expires")), (423, "120"))
        resp = phone.register()
        assert resp is not None
        self.assertEqual(bindings(resp), {"sip:100@10.0.0.1:5060": "300"})

    def test_capped_at_max_expires(self) -> None:
        resp = self.ok(expires=86400)
        self.assertEqual(bindings(resp), {"sip:100@10.0.0.1:5060": "3600"})

    def test_binding_expires(self) -> None:
        self.ok(expires=120)
        self.pbx.advance(119, step=10)
        self.assertEqual(len(self.pbx.location.lookup("100")), 1)
        self.pbx.advance(2)
        self.assertEqual(self.pbx.location.lookup("100"), [])

    def test_nothing_left_behind(self) -> None:
        self.ok()
        self.phone.register(expires=30)
        self.pbx.advance(40, step=1)
        self.assertEqual(self.pbx.leftovers(), {})
