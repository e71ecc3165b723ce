"""SIP trunks (plugins/trunks.py): configuration, numbers and tel: URIs, and, through SIPCore on a Clock,
outbound calls to a fake carrier, its registration, and inbound DID calls."""

from __future__ import annotations

import importlib.util
import os
import re
import sys
from collections.abc import Mapping
from itertools import pairwise
from typing import Any, ClassVar, cast

from twisted.internet import defer
from twisted.logger import ILogObserver, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from minisip.api import ConfigError, Destination, Route, ServerAPI
from minisip.config import load_config
from minisip.core import regclient
from minisip.interfaces import ICallerIdentifier, ICallRouter, IFeature, IFeatureFactory
from minisip.plugins import discover
from minisip.sip.auth import DigestAuthenticator
from minisip.sip.message import Request, Response
from minisip.sip.types import Addr
from minisip.sip.uri import TelURI, parse_uri
from tests.core.fakes import DOMAIN, PBX, Dialog, Phone, requests, sdp, statuses, token

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PLUGIN = os.path.join(REPO, "plugins", "trunks.py")


def _load_plugin() -> Any:
    spec = importlib.util.spec_from_file_location("minisip_test_plugin_trunks", PLUGIN)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module     # dataclasses look their module up there, as the loader does
    spec.loader.exec_module(module)
    return module


trunks = _load_plugin()
factory = trunks.factory

CARRIER = "192.0.2.50"
CARRIER_PORT = 5090
USER, PASSWORD = "trunkuser", "s3cret"
REALM = "carrier.example"
Sections = Mapping[str, Mapping[str, str]]


def parse(sections: Sections) -> Any:
    return factory.parse_config({k: dict(v) for k, v in sections.items()})


def trunk(**values: str) -> Any:
    base = {"proxy": f"{CARRIER}:{CARRIER_PORT}"}
    base.update(values)
    return parse({"trunk carrier": base}).trunks[0]


# -- configuration ------------------------------------------------------------------------------------

class ConfigTests(SynchronousTestCase):
    def error(self, values: Mapping[str, str], section: str = "trunk carrier") -> ConfigError:
        return self.assertRaises(ConfigError, parse, {section: values})

    def test_factory_provides_the_interface(self) -> None:
        verifyObject(IFeatureFactory, factory)
        self.assertEqual(factory.name, "minisip.trunks")
        self.assertEqual(factory.config_prefixes, ("trunk",))

    def test_full_section(self) -> None:
        t = trunk(transport="TCP", username=USER, password=PASSWORD, register="yes", prefix="9", strip="1",
                  prepend="+31", use_tel_uri="yes", phone_context="+31", from_number="+31 20 123-4500",
                  did="+31201234567:100 0201234568:101 *:200", expires="600", match_port="no")
        self.assertEqual((t.name, t.host, t.port, t.port_given, t.transport), ("carrier", CARRIER, 5090, True, "tcp"))
        self.assertEqual(t.credentials, (USER, PASSWORD))
        self.assertTrue(t.register)
        self.assertEqual((t.prefix, t.strip, t.prepend, t.use_tel_uri), ("9", 1, "+31", True))
        self.assertEqual((t.phone_context, t.from_number, t.expires, t.match_port),
                         ("+31", "+31201234500", 600, False))
        self.assertEqual(dict(t.dids), {"+31201234567": "100", "0201234568": "101", "*": "200"})

    def test_defaults(self) -> None:
        t = parse({"trunk b": {"proxy": "Sip.Carrier.example"}}).trunks[0]
        self.assertEqual((t.host, t.port, t.port_given, t.transport), ("sip.carrier.example", 5060, False, "udp"))
        self.assertEqual((t.register, t.prefix, t.strip, t.prepend, t.use_tel_uri), (False, None, 0, "", False))
        self.assertEqual(t.phone_context, "sip.carrier.example")   # default: the proxy host name
        self.assertIsNone(t.credentials)
        self.assertEqual(t.expires, 3600)
        self.assertEqual(parse({"trunk s": {"proxy": "sip.example", "transport": "tls"}}).trunks[0].port, 5061)
        self.assertEqual(parse({}).trunks, ())

    def test_ipv6_proxy(self) -> None:
        t = parse({"trunk v6": {"proxy": "[2001:DB8::1]:5080"}}).trunks[0]
        self.assertEqual((t.host, t.port, t.uri_host), ("2001:db8::1", 5080, "[2001:db8::1]:5080"))

    def test_errors_name_section_and_key(self) -> None:
        p = f"{CARRIER}:{CARRIER_PORT}"
        cases = [
            ({"transport": "udp"}, "proxy"),
            ({"proxy": "bad host!"}, "proxy"),
            ({"proxy": "10.0.0.1:99999"}, "proxy"),
            ({"proxy": "10.0.0.1:0"}, "proxy"),
            ({"proxy": "10.0.0.1:abc"}, "proxy"),
            ({"proxy": "[zz::1]:5060"}, "proxy"),
            ({"proxy": "host_.example"}, "proxy"),
            ({"proxy": p, "transport": "sctp"}, "transport"),
            ({"proxy": p, "register": "yes"}, "register"),
            ({"proxy": p, "register": "maybe", "username": "u", "password": "p"}, "register"),
            ({"proxy": p, "username": "u"}, "password"),
            ({"proxy": p, "password": "p"}, "username"),
            ({"proxy": p, "username": "a b", "password": "p"}, "username"),
            ({"proxy": p, "prefix": "9", "strip": "one"}, "strip"),
            ({"proxy": p, "prefix": "9", "strip": "-1"}, "strip"),
            ({"proxy": p, "prefix": "9a"}, "prefix"),
            ({"proxy": p, "prepend": "0+1"}, "prepend"),
            ({"proxy": p, "use_tel_uri": "sometimes"}, "use_tel_uri"),
            ({"proxy": p, "phone_context": "+"}, "phone_context"),
            ({"proxy": p, "phone_context": "10.0.0.1"}, "phone_context"),
            ({"proxy": p, "phone_context": "bad_domain!"}, "phone_context"),
            ({"proxy": p, "from_number": "+31abc"}, "from_number"),
            ({"proxy": p, "did": "+31201234567"}, "did"),
            ({"proxy": p, "did": "+31201234567:"}, "did"),
            ({"proxy": p, "did": "abc:100"}, "did"),
            ({"proxy": p, "did": "+312:1 00"}, "did"),
            ({"proxy": p, "did": "+31-20:100 +3120:101"}, "did"),
            ({"proxy": p, "expires": "10"}, "expires"),
            ({"proxy": p, "match_port": "perhaps"}, "match_port"),
            ({"proxy": p, "transport": "tls", "certificate": "SHA-256 AB:CD"}, "certificate"),
            ({"proxy": p, "transport": "tls", "certificate": "ab" * 32 + ", nonsense"}, "certificate"),
            ({"proxy": p, "certificate": "ab" * 32}, "certificate"),     # over UDP a certificate means nothing
            ({"proxy": p, "colour": "blue"}, "colour"),
        ]
        for values, key in cases:
            e = self.error(values)
            self.assertEqual((e.section, e.key), ("trunk carrier", key), (values, str(e)))
            self.assertIn(f"[trunk carrier] {key}:", str(e))

    def test_certificate_fingerprints_in_any_usual_spelling(self) -> None:
        expected = "SHA-256 " + ":".join(["AB"] * 31 + ["0F"])
        for spelling in ("SHA-256 " + ":".join(["ab"] * 31 + ["0f"]), "sha256:" + "ab" * 31 + "0f",
                         "sha256 Fingerprint=" + ":".join(["AB"] * 31 + ["0F"]), "AB" * 31 + "0F"):
            trunk = trunks.parse_trunk("trunk carrier", {"proxy": "10.0.0.9", "transport": "tls",
                                                         "certificate": spelling})
            self.assertEqual(trunk.certificates, (expected,), spelling)
        two = trunks.parse_trunk("trunk carrier", {"proxy": "10.0.0.9", "transport": "tls",
                                                   "certificate": "ab" * 32 + ", " + "cd" * 32})
        self.assertEqual(len(two.certificates), 2)

    def test_bad_section_name(self) -> None:
        for section in ("trunk", "trunk a b", "trunk !x"):
            e = self.error({"proxy": "10.0.0.1"}, section)
            self.assertEqual((e.section, e.key), (section, None))

    def test_duplicate_prefix_across_trunks(self) -> None:
        e = self.assertRaises(ConfigError, parse, {"trunk a": {"proxy": "10.0.0.1", "prefix": "9"},
                                                   "trunk b": {"proxy": "10.0.0.2", "prefix": "9"}})
        self.assertEqual((e.section, e.key), ("trunk b", "prefix"))
        self.assertIn("[trunk a]", str(e))

    def test_phone_context_not_needed_when_every_number_is_global(self) -> None:
        t = trunk(prefix="9", strip="1", prepend="+", use_tel_uri="yes")
        self.assertIsNone(t.phone_context)
        self.assertEqual(trunk(use_tel_uri="yes").phone_context, None)   # inbound only: nothing goes out

    def warnings_while_parsing(self, values: Mapping[str, str]) -> tuple[Any, list[str]]:
        events: list[dict[str, Any]] = []
        observer = cast(ILogObserver, events.append)
        globalLogPublisher.addObserver(observer)
        try:
            t = trunk(**values)
        finally:
            globalLogPublisher.removeObserver(observer)
        return t, [formatEvent(e) for e in events if e.get("log_namespace") == factory.name]

    def test_ip_proxy_without_phone_context_starts_and_warns_once(self) -> None:
        """use_tel_uri with an IP-address proxy and no phone_context is accepted (global numbers need none),
        with one warning naming the section and the key to set."""
        t, warnings = self.warnings_while_parsing({"prefix": "9", "strip": "1", "use_tel_uri": "yes"})
        self.assertIsNone(t.phone_context)
        self.assertTrue(t.use_tel_uri)
        self.assertEqual(len(warnings), 1, warnings)
        self.assertIn("[trunk carrier] phone_context", warnings[0])
        self.assertIn(CARRIER, warnings[0])

    def test_no_warning_when_no_local_number_can_go_out(self) -> None:
        for values in ({"prefix": "9", "strip": "1", "prepend": "+", "use_tel_uri": "yes"},
                       {"prefix": "+31", "use_tel_uri": "yes"},
                       {"use_tel_uri": "yes"},                                   # inbound only
                       {"prefix": "9", "use_tel_uri": "yes", "phone_context": "+31"},
                       {"prefix": "9"}):                                         # sip: URIs
            t, warnings = self.warnings_while_parsing(values)
            self.assertEqual(warnings, [], values)

    def test_phone_context_forms(self) -> None:
        self.assertEqual(trunk(phone_context="+1 (201)").phone_context, "+1201")
        self.assertEqual(trunk(phone_context="Example.COM").phone_context, "example.com")

    def test_sample_config_loads_and_its_example_parses(self) -> None:
        sample = os.path.join(REPO, "etc", "minisip.conf")
        cfg = load_config(sample, known_prefixes=("*",))
        self.assertNotIn("trunk carrier", cfg.other_sections)
        with open(sample, encoding="utf-8") as f:
            text = f.read()
        start = text.index("; [trunk carrier]")
        block = [line[2:] for line in text[start:].splitlines() if line.startswith("; ")]
        import configparser
        parser = configparser.ConfigParser(comment_prefixes=(";", "#"), inline_comment_prefixes=(";", "#"),
                                           interpolation=None, strict=True)
        parser.read_string("\n".join(block))
        config = parse({s: dict(parser.items(s, raw=True)) for s in parser.sections()})
        (t,) = config.trunks
        self.assertEqual((t.name, t.prefix, t.strip, t.prepend, t.use_tel_uri), ("carrier", "9", 2, "+31", True))
        self.assertEqual(trunks.request_uri(t, trunks.outbound_number(t, "90201234567")), "tel:+31201234567")

    def test_loader_finds_the_plugin(self) -> None:
        import shutil
        import tempfile
        d = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, d)
        shutil.copy(PLUGIN, os.path.join(d, "trunks.py"))
        (plugin,) = discover([d])
        self.assertEqual(plugin.name, "minisip.trunks")


# -- numbers and URIs -----------------------------------------------------------------------------------

class NumberTests(SynchronousTestCase):
    def test_longest_prefix_wins(self) -> None:
        cfg = parse({"trunk a": {"proxy": "10.0.0.1", "prefix": "9"},
                     "trunk b": {"proxy": "10.0.0.2", "prefix": "900"},
                     "trunk c": {"proxy": "10.0.0.3", "prefix": "90"},
                     "trunk d": {"proxy": "10.0.0.4"}})
        def pick(n: str) -> str | None:
            return getattr(trunks.select_trunk(cfg.trunks, n), "name", None)

        self.assertEqual(pick("9123"), "a")
        self.assertEqual(pick("9012"), "c")
        self.assertEqual(pick("90012"), "b")
        self.assertEqual(pick("8123"), None)
        self.assertEqual(pick("9"), "a")

    def test_strip_and_prepend(self) -> None:
        self.assertEqual(trunks.outbound_number(trunk(prefix="9", strip="1"), "90201234567"), "0201234567")
        self.assertEqual(trunks.outbound_number(trunk(prefix="9", strip="2", prepend="+31"), "90201234567"),
                         "+31201234567")
        self.assertEqual(trunks.outbound_number(trunk(prefix="0"), "0201234567"), "0201234567")
        self.assertEqual(trunks.outbound_number(trunk(prefix="9", strip="1"), "9+31201234567"), "+31201234567")
        self.assertEqual(trunks.outbound_number(trunk(prefix="9", strip="1", prepend="00"), "931"), "0031")
        self.assertIsNone(trunks.outbound_number(trunk(prefix="9", strip="1"), "9"))        # nothing left
        self.assertIsNone(trunks.outbound_number(trunk(prefix="9", strip="3"), "91"))       # strip too long
        self.assertIsNone(trunks.outbound_number(trunk(prefix="9", strip="1"), "912+3"))    # + in the middle
        self.assertIsNone(trunks.outbound_number(trunk(prefix="9", strip="1"), "91#"))

    def test_normalize_removes_visual_separators(self) -> None:
        self.assertEqual(trunks.normalize_number("9-(020) 123.45.67"), "90201234567")
        self.assertEqual(trunks.normalize_number("%2B31201234567;phone-context=x"), "+31201234567")

    def test_tel_uri_global(self) -> None:
        t = trunk(prefix="9", strip="1", use_tel_uri="yes", phone_context="+31")
        uri = trunks.request_uri(t, trunks.outbound_number(t, trunks.normalize_number("9+31-20-123-4567")))
        self.assertEqual(uri, "tel:+31201234567")
        parsed = parse_uri(uri)
        assert isinstance(parsed, TelURI)
        self.assertTrue(parsed.is_global)
        self.assertEqual(parsed.params, {})
        self.assertRegex(uri, r"^tel:\+[0-9]+$")      # RFC 3966 global-number-digits, no separators

    def test_tel_uri_local_with_phone_context(self) -> None:
        for context, expected in (("+31", "tel:0201234567;phone-context=+31"),
                                  ("carrier.example", "tel:0201234567;phone-context=carrier.example")):
            t = trunk(prefix="9", strip="1", use_tel_uri="yes", phone_context=context)
            uri = trunks.request_uri(t, trunks.outbound_number(t, "90201234567"))
            self.assertEqual(uri, expected)
            parsed = parse_uri(uri)
            assert isinstance(parsed, TelURI)
            self.assertFalse(parsed.is_global)
            self.assertEqual(parsed.params["phone-context"], context)

    def test_tel_uri_local_default_phone_context_is_the_proxy_host(self) -> None:
        t = parse({"trunk c": {"proxy": "sip.carrier.example", "prefix": "9", "strip": "1",
                               "use_tel_uri": "yes"}}).trunks[0]
        self.assertEqual(trunks.request_uri(t, "*21"), "tel:*21;phone-context=sip.carrier.example")
        parse_uri("tel:*21;phone-context=sip.carrier.example")

    def test_sip_uri_form(self) -> None:
        self.assertEqual(trunks.request_uri(trunk(prefix="9"), "0201234567"), f"sip:0201234567@{CARRIER}:5090")
        self.assertEqual(trunks.request_uri(trunk(prefix="9"), "+31201234567"), f"sip:+31201234567@{CARRIER}:5090")
        t = parse({"trunk c": {"proxy": "sip.carrier.example", "transport": "tcp"}}).trunks[0]
        self.assertEqual(trunks.request_uri(t, "123"), "sip:123@sip.carrier.example;transport=tcp")
        t = parse({"trunk c": {"proxy": "[2001:db8::1]:5070"}}).trunks[0]
        self.assertEqual(trunks.request_uri(t, "123"), "sip:123@[2001:db8::1]:5070")
        for uri in (f"sip:0201234567@{CARRIER}:5090", "sip:123@[2001:db8::1]:5070"):
            parse_uri(uri)

    def test_did_mapping_normalises_plus(self) -> None:
        t = trunk(did="+31201234567:100 0201234568:101")
        self.assertEqual(trunks.did_target(t, "+31201234567"), "100")
        self.assertEqual(trunks.did_target(t, "31201234567"), "100")
        self.assertEqual(trunks.did_target(t, "0201234568"), "101")
        self.assertEqual(trunks.did_target(t, "+0201234568"), "101")
        self.assertIsNone(trunks.did_target(t, "+31201234599"))
        self.assertEqual(trunks.did_target(trunk(did="+31201234567:100 *:300"), "555"), "300")

    def test_refresh_and_backoff_timing(self) -> None:
        self.assertEqual(regclient.refresh_delay(3600), 2880)
        self.assertEqual(regclient.refresh_delay(600), 480)
        self.assertEqual(regclient.refresh_delay(120), 90)     # 30 s before expiry
        self.assertEqual(regclient.refresh_delay(60), 30)
        self.assertEqual(regclient.refresh_delay(20), 10)      # half, never past expiry
        self.assertEqual([regclient.backoff_delay(n) for n in range(1, 8)], [30, 60, 120, 240, 480, 600, 600])


# -- through SIPCore on a Clock ---------------------------------------------------------------------------

class TrunkTestBase(SynchronousTestCase):
    exts = ("100", "101", "200", "900")

    def setUp(self) -> None:
        self.pbx = PBX(self.exts)
        self.events: list[dict[str, Any]] = []
        observer = cast(ILogObserver, self.events.append)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        self.carrier = self.pbx.phone("carrier", CARRIER, CARRIER_PORT)
        self.auth = DigestAuthenticator(REALM, self.pbx.clock, nonce_ttl=86400)
        self.feature: Any = None

    def start(self, sections: Sections, resolve: Any = None) -> Any:
        config = parse(sections)
        self.api = ServerAPI(self.pbx.core, self.pbx.store, factory.name)
        self.feature = trunks.TrunksFeature(self.api, config, resolve=resolve) if resolve else \
            factory.make_feature(self.api, config)
        verifyObject(IFeature, self.feature)
        self.feature.register(self.pbx.core.hooks.for_owner(factory.name))
        for _, svc in self.pbx.core.hooks.services:
            svc.startService()
        self.pbx.clock.advance(0)       # registrations begin on the next reactor turn
        return self.feature

    def stop(self) -> Any:
        results: list[Any] = []
        for _, svc in self.pbx.core.hooks.services:
            d = svc.stopService()
            d.addBoth(results.append)
        return results

    def log_lines(self) -> list[str]:
        return [formatEvent(e) for e in self.events if e.get("log_namespace") == factory.name]

    def from_carrier(self) -> list[Any]:
        return self.carrier.inbox()

    def check_auth(self, req: Request, header: str = "authorization") -> str:
        value = req.get(header)
        self.assertIsNotNone(value, f"no {header} in {req!r}")
        result = self.auth.verify(req.method, value or "", lambda u: PASSWORD if u == USER else None)
        self.assertTrue(result.ok, result.reason)
        return value or ""

    def challenge(self, req: Request, status: int = 401, stale: bool = False) -> Response:
        hdr = "WWW-Authenticate" if status == 401 else "Proxy-Authenticate"
        value = next(c for c in self.auth.challenge(stale=stale) if "MD5" in c)
        return self.carrier_reply(req, status, headers=[(hdr, value)])

    def carrier_reply(self, req: Request, status: int, headers: list[tuple[str, str]] = (),  # type: ignore[assignment]
                      body: bytes = b"", tag: str | None = None) -> Response:
        from minisip.sip.message import make_response
        extra = list(headers)
        if body:
            extra.append(("Content-Type", "application/sdp"))
        if 100 < status < 300 and req.method == "INVITE":
            extra.append(("Contact", f"<sip:{CARRIER}:{CARRIER_PORT}>"))
        resp = make_response(req, status, to_tag=tag or token(), extra=extra, body=body)
        self.carrier.deliver(resp)
        return resp


class OutboundTests(TrunkTestBase):
    SECTION: ClassVar[dict[str, str]] = {"proxy": f"{CARRIER}:{CARRIER_PORT}", "username": USER, "password": PASSWORD, "prefix": "9",
               "strip": "2", "prepend": "+31", "use_tel_uri": "yes", "phone_context": "+31",
               "from_number": "+31201234500"}

    def setUp(self) -> None:
        super().setUp()
        self.phone = self.pbx.phone("100", "10.0.0.1")

    def invite_at_carrier(self, callee: str, addr: tuple[str, int] = (CARRIER, CARRIER_PORT)) -> Request:
        self.phone.call(callee, sdp("10.0.0.1"))
        invites = requests(self.pbx.net.take(Addr("udp", *addr)), "INVITE")
        self.assertEqual(len(invites), 1, self.pbx.net.sent)
        return invites[0]

    def test_router_interface_and_priority(self) -> None:
        self.start({"trunk carrier": self.SECTION})
        verifyObject(ICallRouter, self.feature.router)
        verifyObject(ICallerIdentifier, self.feature.identifier)
        entries = [(e.priority, e.owner) for e in self.pbx.core.routers._entries]
        self.assertIn((80, factory.name), entries)

    def test_call_goes_out_as_tel_uri_and_answers_407(self) -> None:
        self.start({"trunk carrier": self.SECTION})
        inv = self.invite_at_carrier("90201234567")
        self.assertEqual(str(inv.uri), "tel:+31201234567")
        self.assertEqual(inv.get("to"), "<tel:+31201234567>")
        self.assertEqual(str(inv.from_.uri), f"sip:+31201234500@{DOMAIN}")
        self.assertIsNone(inv.get("proxy-authorization"))
        self.challenge(inv, 407)
        (again,) = requests(self.carrier.inbox(), "INVITE")
        self.assertEqual(str(again.uri), "tel:+31201234567")
        self.assertEqual(again.call_id, inv.call_id)
        self.assertGreater(again.cseq[0], inv.cseq[0])
        value = self.check_auth(again, "proxy-authorization")
        self.assertIn(f'username="{USER}"', value)
        self.assertIn('uri="tel:+31201234567"', value)
        # the carrier answers: the phone gets the 200
        self.carrier_reply(again, 200, body=sdp(CARRIER))
        self.assertIn(200, statuses(self.phone.inbox()))
        (call,) = self.pbx.core.calls.calls.values()
        self.assertEqual((call.state, call.caller, call.callee), ("answered", "100", "90201234567"))
        self.assertTrue(any("goes out as tel:+31201234567" in line for line in self.log_lines()))

    def test_401_answered_with_authorization(self) -> None:
        self.start({"trunk carrier": self.SECTION})
        inv = self.invite_at_carrier("90201234567")
        self.challenge(inv, 401)
        (again,) = requests(self.carrier.inbox(), "INVITE")
        self.check_auth(again, "authorization")
        self.assertIsNone(again.get("proxy-authorization"))

    def test_local_number_tel_uri(self) -> None:
        section = dict(self.SECTION, strip="1", prepend="")
        self.start({"trunk carrier": section})
        inv = self.invite_at_carrier("90201234567")
        self.assertEqual(str(inv.uri), "tel:0201234567;phone-context=+31")
        self.assertEqual(inv.get("to"), "<tel:0201234567;phone-context=+31>")

    def test_local_number_without_phone_context_is_refused(self) -> None:
        """An IP-address proxy without phone_context: global numbers go out as tel: URIs; a local number
        is refused with 503 and a log line naming the trunk and the key, and nothing reaches the carrier."""
        section = {"proxy": f"{CARRIER}:{CARRIER_PORT}", "prefix": "9", "strip": "1", "use_tel_uri": "yes"}
        self.start({"trunk carrier": section})
        self.phone.call("90201234567", sdp("10.0.0.1"))
        got = [m for m in self.phone.inbox() if isinstance(m, Response) and m.status >= 200]
        self.assertEqual([(m.status, m.reason) for m in got], [(503, "No phone-context for local number")])
        self.assertFalse(requests(self.pbx.net.take(Addr("udp", CARRIER, CARRIER_PORT)), "INVITE"))
        refused = [line for line in self.log_lines() if "to 90201234567 refused (503)" in line]
        self.assertEqual(len(refused), 1, self.log_lines())
        self.assertIn("trunk carrier", refused[0])
        self.assertIn("phone_context in [trunk carrier]", refused[0])
        self.pbx.advance(40)
        self.assertEqual(self.pbx.leftovers(), {})
        inv = self.invite_at_carrier("9+31201234567")
        self.assertEqual(str(inv.uri), "tel:+31201234567")
        warned = [line for line in self.log_lines() if "is not set and proxy" in line]
        self.assertEqual(len(warned), 1, self.log_lines())    # at start only, not per call

    def test_sip_form_and_caller_extension_as_from(self) -> None:
        section = {"proxy": f"{CARRIER}:{CARRIER_PORT}", "prefix": "0"}
        self.start({"trunk carrier": section})
        inv = self.invite_at_carrier("0201234567")
        self.assertEqual(str(inv.uri), f"sip:0201234567@{CARRIER}:{CARRIER_PORT}")
        self.assertEqual(inv.get("to"), f"<sip:0201234567@{CARRIER}:{CARRIER_PORT}>")
        self.assertEqual(str(inv.from_.uri), f"sip:100@{DOMAIN}")

    def test_longest_prefix_picks_the_trunk(self) -> None:
        self.start({"trunk a": {"proxy": "192.0.2.1:5060", "prefix": "9"},
                    "trunk b": {"proxy": "192.0.2.2:5060", "prefix": "90", "strip": "2"}})
        inv = self.invite_at_carrier("90201234567", ("192.0.2.2", 5060))
        self.assertEqual(str(inv.uri), "sip:201234567@192.0.2.2:5060")
        self.assertFalse([a for a, _ in self.pbx.net.sent if a.host == "192.0.2.1"])

    def test_extension_numbers_stay_inside(self) -> None:
        self.start({"trunk carrier": self.SECTION})
        self.pbx.phone("900", "10.0.0.9").register()
        self.phone.call("900", sdp("10.0.0.1"))
        self.assertEqual(len(requests(self.pbx.net.take(Addr("udp", "10.0.0.9", 5060)), "INVITE")), 1)
        self.assertFalse(self.pbx.net.take(Addr("udp", CARRIER, CARRIER_PORT)))

    def test_nothing_left_to_dial_is_484(self) -> None:
        self.start({"trunk carrier": self.SECTION})
        self.phone.call("9", sdp("10.0.0.1"))
        self.assertIn(484, statuses(self.phone.inbox()))
        self.assertFalse(self.pbx.net.take(Addr("udp", CARRIER, CARRIER_PORT)))

    def test_calls_from_a_trunk_never_go_out_again(self) -> None:
        self.start({"trunk carrier": self.SECTION})

        class FakeCall:
            id, caller, callee, source, trunk = "x", "+3161234", "90201234567", "trunk", "carrier"

        self.assertEqual(self.feature.router.route(FakeCall()), trunks.CONTINUE)
        FakeCall.source = "extension"
        results: list[Any] = []
        self.feature.router.route(FakeCall()).addCallback(results.append)
        (decision,) = results
        assert isinstance(decision, Route)
        (dest,) = decision.targets
        self.assertIsInstance(dest, Destination)
        self.assertEqual((dest.uri, dest.addr), ("tel:+31201234567", Addr("udp", CARRIER, CARRIER_PORT)))
        self.assertEqual(dest.credentials, (USER, PASSWORD))
        self.assertEqual(dest.to_uri, "<tel:+31201234567>")

    def test_host_name_proxy_is_resolved(self) -> None:
        asked: list[str] = []
        pending: defer.Deferred = defer.Deferred()

        def resolve(host: str) -> defer.Deferred:
            asked.append(host)
            return pending

        section = {"proxy": "sip.carrier.example:5090", "prefix": "9", "strip": "1", "use_tel_uri": "yes"}
        self.start({"trunk carrier": section}, resolve=resolve)
        self.assertEqual(asked, ["sip.carrier.example"])         # looked up at start
        pending.callback(CARRIER)
        inv = self.invite_at_carrier("90201234567")               # to the resolved address
        self.assertEqual(str(inv.uri), "tel:0201234567;phone-context=sip.carrier.example")
        self.assertEqual(asked, ["sip.carrier.example"])         # cached

    def test_unresolvable_proxy_is_503(self) -> None:
        section = {"proxy": "sip.carrier.example", "prefix": "9"}
        self.start({"trunk carrier": section}, resolve=lambda h: defer.fail(OSError("no such host")))
        self.phone.call("9123", sdp("10.0.0.1"))
        self.assertIn(503, statuses(self.phone.inbox()))
        self.assertTrue(any("cannot resolve" in line for line in self.log_lines()))


class RegistrationTests(TrunkTestBase):
    SECTION: ClassVar[dict[str, str]] = {"proxy": f"{CARRIER}:{CARRIER_PORT}", "username": USER, "password": PASSWORD, "register": "yes",
               "did": "+31201234567:100"}

    def registers(self) -> list[Request]:
        return requests(self.carrier.inbox(), "REGISTER")

    def register_ok(self, expires: int = 600) -> tuple[Request, Request]:
        """Start, answer the first REGISTER with 401 and the authenticated one with 200."""
        self.start({"trunk carrier": self.SECTION})
        (first,) = self.registers()
        self.challenge(first)
        (second,) = self.registers()
        self.check_auth(second)
        self.carrier_reply(second, 200, headers=[("Contact", f"<sip:{USER}@{DOMAIN}:5060>;expires={expires}")])
        return first, second

    def test_register_with_digest(self) -> None:
        first, second = self.register_ok()
        self.assertEqual(str(first.uri), f"sip:{CARRIER}:{CARRIER_PORT}")
        self.assertEqual(str(first.to.uri), f"sip:{USER}@{CARRIER}")
        self.assertEqual(str(first.from_.uri), f"sip:{USER}@{CARRIER}")
        self.assertEqual(first.get("contact"), f"<sip:{USER}@{DOMAIN}:5060>")
        self.assertEqual(first.get("expires"), "3600")
        self.assertIsNone(first.get("authorization"))
        self.assertEqual(second.call_id, first.call_id)
        self.assertEqual(second.cseq, (first.cseq[0] + 1, "REGISTER"))
        self.assertIn(f'username="{USER}"', second.get("authorization") or "")
        reg = self.feature.registrations["carrier"]
        self.assertTrue(reg.is_registered())
        self.assertTrue(any("registered at udp:" in line and "for 600 s" in line for line in self.log_lines()))

    def test_refresh_before_expiry_same_call_id_higher_cseq(self) -> None:
        first, second = self.register_ok(expires=600)
        self.pbx.clock.advance(479)
        self.assertEqual(self.registers(), [])
        self.pbx.clock.advance(1)
        (refresh,) = self.registers()
        self.assertEqual(refresh.call_id, first.call_id)
        self.assertEqual(refresh.cseq[0], second.cseq[0] + 1)
        # the carrier's last challenge is reused with the next nonce count
        self.assertIn("nc=00000002", refresh.get("authorization") or "")
        self.check_auth(refresh)
        self.carrier_reply(refresh, 200, headers=[("Expires", "3600")])    # granted in Expires this time
        self.pbx.clock.advance(2879)
        self.assertEqual(self.registers(), [])
        self.pbx.clock.advance(1)
        self.assertEqual(len(self.registers()), 1)
        self.assertTrue(any("registration refreshed" in line for line in self.log_lines()))

    def test_expires_asked_when_carrier_says_nothing(self) -> None:
        self.start({"trunk carrier": dict(self.SECTION, expires="300")})
        (first,) = self.registers()
        self.assertEqual(first.get("expires"), "300")
        self.carrier_reply(first, 200)
        self.pbx.clock.advance(239)
        self.assertEqual(self.registers(), [])
        self.pbx.clock.advance(1)
        self.assertEqual(len(self.registers()), 1)

    def test_backoff_on_failure(self) -> None:
        self.start({"trunk carrier": self.SECTION})
        times = []
        t0 = self.pbx.clock.seconds()
        for _ in range(7):
            (req,) = self.registers()
            times.append(self.pbx.clock.seconds() - t0)
            self.carrier_reply(req, 403)
            for _ in range(700):
                self.pbx.clock.advance(1)
                if self.pbx.net.sent and requests([m for _, m in self.pbx.net.sent], "REGISTER"):
                    break
        deltas = [b - a for a, b in pairwise(times)]
        self.assertEqual(deltas, [30, 60, 120, 240, 480, 600])
        warns = [line for line in self.log_lines() if "registration at" in line and "failed" in line]
        self.assertIn("403 Forbidden (attempt 1); retrying in 30 s", warns[0])
        self.assertIn("(attempt 3); retrying in 120 s", warns[2])
        self.assertFalse(self.feature.registrations["carrier"].is_registered())

    def test_backoff_on_timeout(self) -> None:
        self.start({"trunk carrier": self.SECTION})
        (first,) = self.registers()
        self.pbx.clock.pump([0.5] * 70)     # retransmissions until Timer F (32 s)
        again = self.registers()
        self.assertTrue(again and all(r.cseq == first.cseq for r in again))    # only retransmissions
        self.assertTrue(any("no response (timed out) (attempt 1); retrying in 30 s" in line
                            for line in self.log_lines()))
        self.pbx.clock.pump([0.5] * 55)     # to 32 + 30 s after the start: the next attempt
        retry = [r for r in self.registers() if r.cseq != first.cseq]
        self.assertEqual(retry[0].cseq[0], first.cseq[0] + 1)
        self.assertEqual(retry[0].call_id, first.call_id)
        self.carrier_reply(retry[0], 200)
        self.assertEqual(self.feature.registrations["carrier"].failures, 0)

    def test_wrong_credentials_are_not_retried_in_a_loop(self) -> None:
        self.start({"trunk carrier": self.SECTION})
        (first,) = self.registers()
        self.challenge(first)
        (second,) = self.registers()
        nonce = re.search(r'nonce="([^"]+)"', second.get("authorization") or "").group(1)  # type: ignore[union-attr]
        self.carrier_reply(second, 401, headers=[("WWW-Authenticate",
                                                  f'Digest realm="{REALM}", nonce="{nonce}", algorithm=MD5')])
        self.assertEqual(self.registers(), [])
        self.assertTrue(any("refused username trunkuser" in line for line in self.log_lines()))
        self.pbx.clock.advance(30)
        (retry,) = self.registers()
        self.assertIsNone(retry.get("authorization"))     # a fresh start, not the refused nonce

    def test_stale_nonce_is_answered_again(self) -> None:
        self.register_ok(expires=600)
        self.pbx.clock.advance(480)
        (refresh,) = self.registers()
        self.challenge(refresh, stale=True)
        (again,) = self.registers()
        self.check_auth(again)
        self.carrier_reply(again, 200)
        self.assertEqual(self.feature.registrations["carrier"].failures, 0)

    def test_interval_too_brief(self) -> None:
        self.start({"trunk carrier": dict(self.SECTION, expires="60")})
        (first,) = self.registers()
        self.carrier_reply(first, 423, headers=[("Min-Expires", "900")])
        (again,) = self.registers()
        self.assertEqual(again.get("expires"), "900")
        self.carrier_reply(again, 200)
        self.pbx.clock.advance(720)       # refreshed at 80 % of 900 s, asking for 900 s straight away
        (refresh,) = self.registers()
        self.assertEqual(refresh.get("expires"), "900")

    def test_unregister_on_stop(self) -> None:
        first, _ = self.register_ok()
        results = self.stop()
        (unreg,) = self.registers()
        self.assertEqual(unreg.get("expires"), "0")
        self.assertEqual(unreg.get("contact"), f"<sip:{USER}@{DOMAIN}:5060>")
        self.assertEqual(unreg.call_id, first.call_id)
        self.check_auth(unreg)                 # the last challenge, answered ahead
        self.assertEqual(results, [])
        self.challenge(unreg)                  # a carrier that wants a fresh nonce gets one answer
        (again,) = self.registers()
        self.check_auth(again)
        self.carrier_reply(again, 200)
        self.assertEqual(len(results), 1)
        self.assertFalse(self.feature.registrations)
        self.pbx.clock.advance(7200)
        self.assertEqual(self.registers(), [])
        self.assertTrue(any("unregistering" in line for line in self.log_lines()))

    def test_stop_without_registration_sends_nothing(self) -> None:
        self.start({"trunk carrier": dict(self.SECTION, register="no")})
        self.assertEqual(self.registers(), [])
        self.assertEqual(len(self.stop()), 1)
        self.assertEqual(self.registers(), [])

    def test_stop_during_backoff(self) -> None:
        self.start({"trunk carrier": self.SECTION})
        (first,) = self.registers()
        self.carrier_reply(first, 503)
        self.stop()
        self.pbx.clock.advance(3600)
        self.assertEqual(self.registers(), [])

    def test_reload_restarts_a_changed_registration_only(self) -> None:
        self.register_ok()
        reg = self.feature.registrations["carrier"]
        self.feature.reconfigure(parse({"trunk carrier": dict(self.SECTION, did="+31201234567:101")}))
        self.assertIs(self.feature.registrations["carrier"], reg)
        self.assertEqual(self.registers(), [])
        self.feature.reconfigure(parse({"trunk carrier": dict(self.SECTION, password="new")}))
        self.pbx.clock.advance(0)
        sent = self.registers()
        self.assertEqual([r.get("expires") for r in sent], ["0", "3600"])     # old one out, new one in
        self.assertIsNot(self.feature.registrations["carrier"], reg)
        self.feature.reconfigure(parse({}))     # the new REGISTER is unanswered: may have been taken, withdrawn
        self.assertEqual([r.get("expires") for r in self.registers()], ["0"])
        self.assertFalse(self.feature.registrations)


class InboundTests(TrunkTestBase):
    SECTION: ClassVar[dict[str, str]] = {"proxy": f"{CARRIER}:{CARRIER_PORT}", "username": USER, "password": PASSWORD,
               "did": "+31201234567:100 0201234568:101"}

    def setUp(self) -> None:
        super().setUp()
        self.ext100 = self.pbx.phone("100", "10.0.0.1")
        self.ext101 = self.pbx.phone("101", "10.0.0.2")
        self.assertEqual(self.ext100.register().status, 200)   # type: ignore[union-attr]
        self.assertEqual(self.ext101.register().status, 200)   # type: ignore[union-attr]

    def invite(self, sender: Phone, ruri: str, to: str | None = None,
               from_: str = "<tel:+31612345678>") -> Dialog:
        dlg = Dialog(sender, token() + "@carrier", token(), from_, to or f"<{ruri}>", ruri)
        sender.dialogs[dlg.call_id] = dlg
        dlg.send_invite(sdp(CARRIER))
        return dlg

    def rang(self, phone: Phone) -> list[Dialog]:
        return phone.incoming()

    def test_tel_call_from_the_carrier_address_rings_the_did(self) -> None:
        self.start({"trunk carrier": self.SECTION})
        self.invite(self.carrier, "tel:+31201234567")
        got = self.carrier.inbox()
        self.assertNotIn(407, statuses(got))
        (dlg,) = self.rang(self.ext100)
        assert dlg.invite is not None
        self.assertEqual(str(dlg.invite.from_.uri), f"sip:+31612345678@{DOMAIN}")
        (call,) = self.pbx.core.calls.calls.values()
        self.assertEqual((call.source, call.trunk, call.caller, call.callee),
                         ("trunk", "carrier", "+31612345678", "100"))
        dlg.respond(200, sdp("10.0.0.1"))
        self.assertIn(200, statuses(self.carrier.inbox()))

    def test_sip_request_uri_and_plus_normalisation(self) -> None:
        self.start({"trunk carrier": self.SECTION})
        self.invite(self.carrier, f"sip:31-20-123-4567@{DOMAIN};user=phone", from_=f"<sip:0612345678@{CARRIER}>")
        self.assertEqual(len(self.rang(self.ext100)), 1)
        self.assertEqual(next(iter(self.pbx.core.calls.calls.values())).caller, "0612345678")
        self.invite(self.carrier, "tel:+0201234568;phone-context=+31")   # configured without +
        self.assertEqual(len(self.rang(self.ext101)), 1)
        self.invite(self.carrier, "tel:020-123-4568;phone-context=+31")
        self.assertEqual(len(self.rang(self.ext101)), 1)

    def test_unknown_did_is_404_without_challenge(self) -> None:
        self.start({"trunk carrier": self.SECTION})
        dlg = self.invite(self.carrier, "tel:+31201234599")
        self.assertEqual(statuses(self.carrier.inbox())[-1], 404)
        self.assertEqual(dlg.responses[-1].status, 404)
        self.assertEqual(self.rang(self.ext100), [])
        self.assertTrue(any("unknown number +31201234599 refused (404)" in line for line in self.log_lines()))

    def test_catch_all_did(self) -> None:
        self.start({"trunk carrier": dict(self.SECTION, did="*:101")})
        self.invite(self.carrier, "tel:+31201234599")
        self.assertEqual(len(self.rang(self.ext101)), 1)

    def test_other_hosts_are_challenged(self) -> None:
        self.start({"trunk carrier": self.SECTION})
        stranger = self.pbx.phone("x", "198.51.100.7", 5060)
        self.invite(stranger, "tel:+31201234567")
        self.assertEqual(statuses(stranger.inbox())[-1], 407)
        self.assertEqual(self.rang(self.ext100), [])

    def test_udp_port_must_match_unless_match_port_no(self) -> None:
        self.start({"trunk carrier": self.SECTION})
        other_port = self.pbx.phone("x", CARRIER, 5062)
        self.invite(other_port, "tel:+31201234567")
        self.assertEqual(statuses(other_port.inbox())[-1], 407)
        self.feature.reconfigure(parse({"trunk carrier": dict(self.SECTION, match_port="no")}))
        self.invite(other_port, "tel:+31201234567")
        self.assertNotIn(407, statuses(other_port.inbox()))
        self.assertEqual(len(self.rang(self.ext100)), 1)

    def test_tcp_trunk_identified_by_the_connection_we_opened(self) -> None:
        """Issue 8 point 11: over TCP the address alone says nothing (any program on the carrier's host,
        or behind its NAT, can connect from any port): a connection minisip opened to the carrier is
        the trunk; an inbound one from another port of that host is not (it gets digest instead)."""
        self.start({"trunk carrier": dict(self.SECTION, transport="tcp")})
        req = self.carrier.build("INVITE", "tel:+31201234567", call_id=token(), from_=f"<tel:+316>;tag={token()}",
                                 to="<tel:+31201234567>", cseq=1, body=sdp(CARRIER))
        self.assertIsNone(self.feature.identifier.identify(req, Addr("tcp", CARRIER, 40123, conn=1)))
        self.pbx.core.opened_by_us = lambda source: source.conn == 1
        identity = self.feature.identifier.identify(req, Addr("tcp", CARRIER, 40123, conn=1))
        assert identity is not None
        self.assertEqual((identity.callee, identity.trunk, identity.source), ("100", "carrier", "trunk"))
        # the carrier's own port is trusted as before; UDP from its address is not a TCP trunk
        self.assertIsNotNone(self.feature.identifier.identify(req, Addr("tcp", CARRIER, CARRIER_PORT, conn=2)))
        self.assertIsNone(self.feature.identifier.identify(req, Addr("udp", CARRIER, CARRIER_PORT)))

    def test_tls_trunk_identified_by_its_certificate_from_any_address(self) -> None:
        """Issue 8 point 11: a carrier pinned by certificate is whoever shows it, from any address; its
        own address without the certificate (or with another) is challenged like anybody."""
        pinned = "SHA-256 " + ":".join(["AB"] * 32)
        self.start({"trunk carrier": dict(self.SECTION, transport="tls", certificate="sha256:" + "ab" * 32)})
        req = self.carrier.build("INVITE", "tel:+31201234567", call_id=token(), from_=f"<tel:+316>;tag={token()}",
                                 to="<tel:+31201234567>", cseq=1, body=sdp(CARRIER))
        shown: dict[int, str] = {1: pinned, 2: "SHA-256 " + ":".join(["CD"] * 32)}
        self.pbx.core.peer_certificate = lambda source: shown.get(source.conn)
        self.pbx.core.opened_by_us = lambda source: True
        identity = self.feature.identifier.identify(req, Addr("tls", "198.51.100.9", 40123, conn=1))
        assert identity is not None
        self.assertEqual((identity.callee, identity.trunk, identity.source), ("100", "carrier", "trunk"))
        for conn in (2, 3):   # another certificate, none: not the carrier, even from its own address and port
            self.assertIsNone(self.feature.identifier.identify(req, Addr("tls", CARRIER, CARRIER_PORT, conn=conn)))
        self.assertIsNone(self.feature.identifier.identify(req, Addr("tcp", CARRIER, CARRIER_PORT, conn=1)))

    def test_connections_to_a_pinned_trunk_accept_only_its_certificate(self) -> None:
        pins: dict[tuple[str, int], tuple[str, ...]] = {}

        def pin(host: str, port: int, fingerprints: tuple[str, ...]) -> None:
            if fingerprints:
                pins[(host, port)] = fingerprints
            else:
                pins.pop((host, port), None)

        self.pbx.core.pin_certificates = pin
        pinned = "SHA-256 " + ":".join(["AB"] * 32)
        self.start({"trunk carrier": dict(self.SECTION, transport="tls", certificate=pinned)})
        self.assertEqual(pins, {(CARRIER, CARRIER_PORT): (pinned,)})
        self.feature.reconfigure(parse({"trunk carrier": dict(self.SECTION, transport="tls")}))
        self.assertEqual(pins, {})

    def test_by_registration_takes_the_number_from_to(self) -> None:
        self.start({"trunk carrier": dict(self.SECTION, register="yes")})
        elsewhere = self.pbx.phone("x", "198.51.100.7", 5060)   # another carrier host
        ruri = f"sip:{USER}@{DOMAIN}:5060"
        # not registered yet: digest as for anybody
        self.invite(elsewhere, ruri, to="<tel:+31201234567>")
        self.assertEqual(statuses(elsewhere.inbox())[-1], 407)
        (first,) = requests(self.carrier.inbox(), "REGISTER")
        self.carrier_reply(first, 200)
        self.invite(elsewhere, ruri, to="<sip:+31201234567@carrier.example>")
        self.assertNotIn(407, statuses(elsewhere.inbox()))
        self.assertEqual(len(self.rang(self.ext100)), 1)
        (call,) = self.pbx.core.calls.calls.values()
        self.assertEqual((call.source, call.trunk), ("trunk", "carrier"))
        # an unknown To number: 404
        self.invite(elsewhere, ruri, to="<tel:+31201234599>")
        self.assertEqual(statuses(elsewhere.inbox())[-1], 404)

    def test_by_registration_also_from_the_proxy_address(self) -> None:
        self.start({"trunk carrier": dict(self.SECTION, register="yes")})
        (first,) = requests(self.carrier.inbox(), "REGISTER")
        self.carrier_reply(first, 200)
        self.invite(self.carrier, f"sip:{USER}@{DOMAIN}:5060", to="<tel:0201234568;phone-context=+31>")
        self.assertEqual(len(self.rang(self.ext101)), 1)

    def test_username_that_is_an_extension_is_not_taken_as_the_trunk(self) -> None:
        self.start({"trunk carrier": dict(self.SECTION, register="yes", username="101")})
        self.assertTrue(any("also an extension number" in line for line in self.log_lines()))
        (first,) = requests(self.carrier.inbox(), "REGISTER")
        self.carrier_reply(first, 200)
        stranger = self.pbx.phone("100", "198.51.100.7", 5060)
        self.invite(stranger, f"sip:101@{DOMAIN}", to="<tel:+31201234567>")
        self.assertEqual(statuses(stranger.inbox())[-1], 407)

    def test_phones_calling_extensions_are_not_trunk_calls(self) -> None:
        self.start({"trunk carrier": self.SECTION})
        self.ext100.call("101", sdp("10.0.0.1"))
        (call,) = self.pbx.core.calls.calls.values()
        self.assertEqual((call.source, call.trunk), ("extension", None))


class TelFromPhonesTests(TrunkTestBase):
    """A tel: Request-URI from an authenticated phone reaches the extension, as sip: does."""

    def test_tel_request_uri_reaches_the_extension(self) -> None:
        self.start({"trunk carrier": {"proxy": f"{CARRIER}:{CARRIER_PORT}", "prefix": "9"}})
        caller = self.pbx.phone("100", "10.0.0.1")
        callee = self.pbx.phone("101", "10.0.0.2")
        self.assertEqual(callee.register().status, 200)   # type: ignore[union-attr]
        for ruri in ("tel:101", "tel:101;phone-context=example.com", "tel:1-0-1;phone-context=+31"):
            dlg = Dialog(caller, token() + "@x", token(), f"<sip:100@{DOMAIN}>", f"<{ruri}>", ruri)
            caller.dialogs[dlg.call_id] = dlg
            dlg.send_invite(sdp("10.0.0.1"))
            challenge = next(m for m in caller.inbox() if isinstance(m, Response) and m.status == 407)
            authz = caller.authorization(challenge.get_all("proxy-authenticate")[0], "INVITE", ruri)
            dlg.send_invite(sdp("10.0.0.1"), headers=[("Proxy-Authorization", authz)])
            (ringing,) = callee.incoming()
            assert ringing.invite is not None
            self.assertEqual(str(ringing.invite.uri), "sip:101@10.0.0.2:5060", ruri)
            ringing.respond(486)
            self.assertEqual(statuses(caller.inbox())[-1], 486, ruri)

    def test_tel_uri_with_the_trunk_prefix_goes_out(self) -> None:
        self.start({"trunk carrier": {"proxy": f"{CARRIER}:{CARRIER_PORT}", "prefix": "9", "strip": "1",
                                      "use_tel_uri": "yes", "phone_context": "+31"}})
        caller = self.pbx.phone("100", "10.0.0.1")
        ruri = "tel:9-020-1234567;phone-context=example.com"
        dlg = Dialog(caller, token() + "@x", token(), f"<sip:100@{DOMAIN}>", f"<{ruri}>", ruri)
        caller.dialogs[dlg.call_id] = dlg
        dlg.send_invite(sdp("10.0.0.1"))
        challenge = next(m for m in caller.inbox() if isinstance(m, Response) and m.status == 407)
        authz = caller.authorization(challenge.get_all("proxy-authenticate")[0], "INVITE", ruri)
        dlg.send_invite(sdp("10.0.0.1"), headers=[("Proxy-Authorization", authz)])
        (inv,) = requests(self.carrier.inbox(), "INVITE")
        self.assertEqual(str(inv.uri), "tel:0201234567;phone-context=+31")

