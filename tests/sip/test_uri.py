"""Tests for minisip.sip.uri: SIP/SIPS/tel/other URIs, IPv6 references, name-addr values."""

from __future__ import annotations

from collections.abc import Callable

from twisted.trial.unittest import SynchronousTestCase

from minisip.sip import uri as uri_module
from minisip.sip.errors import SIPParseError
from minisip.sip.uri import (
    NAME_ADDR_FAST_RE,
    AbsoluteURI,
    NameAddr,
    SipURI,
    TelURI,
    _parse_sip_uri,
    _split_unquoted,
    format_params,
    is_token,
    match_name_addr,
    parse_gen_params,
    parse_host_port,
    parse_name_addr,
    parse_name_addr_full,
    parse_params,
    parse_uri,
    split_comma_list,
    unquote,
)


class SipURITests(SynchronousTestCase):
    def test_minimal(self) -> None:
        u = parse_uri("sip:example.com")
        self.assertEqual(u, SipURI("example.com"))
        assert isinstance(u, SipURI)
        self.assertIsNone(u.user)
        self.assertIsNone(u.port)

    def test_full(self) -> None:
        u = parse_uri("sips:alice:secret@Atlanta.Example.COM:5061;transport=TCP;lr;maddr=239.255.255.1"
                      "?subject=project%20x&priority=urgent")
        assert isinstance(u, SipURI)
        self.assertEqual(u.scheme, "sips")
        self.assertEqual(u.user, "alice")
        self.assertEqual(u.password, "secret")
        self.assertEqual(u.host, "atlanta.example.com")
        self.assertEqual(u.port, 5061)
        self.assertEqual(u.params, {"transport": "TCP", "lr": None, "maddr": "239.255.255.1"})
        self.assertEqual(u.transport, "tcp")
        self.assertEqual(u.headers, "subject=project%20x&priority=urgent")
        self.assertEqual(u.host_port(), ("atlanta.example.com", 5061))

    def test_scheme_case_insensitive(self) -> None:
        self.assertEqual(parse_uri("SIP:bob@example.com"), SipURI("example.com", "bob"))
        self.assertEqual(parse_uri("SiPs:bob@example.com").scheme, "sips")

    def test_str_round_trip(self) -> None:
        for text in (
            "sip:example.com",
            "sip:alice@example.com",
            "sip:alice:pw@example.com:5070;transport=udp;lr",
            "sips:+15551234567;phone-context=example.com@gw.example.com;user=phone",
            "sip:bob@[2001:db8::1]:5060",
            "sip:bob@example.com?Replaces=abc%40host%3Bto-tag%3D1",
            "sip:user;par=u%40example.net@example.com",
        ):
            u = parse_uri(text)
            self.assertEqual(str(u), text)
            self.assertEqual(parse_uri(str(u)), u)

    def test_crazy_but_legal_user(self) -> None:
        """RFC 4475 3.1.1.3 (intmeth): '?', ',', '/', ';' and '*' are legal in the user part."""
        u = parse_uri("sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too."
                      "(doesn't-it)@example.com")
        assert isinstance(u, SipURI)
        self.assertEqual(u.user, "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
        self.assertEqual(u.password, "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)")
        self.assertEqual(u.host, "example.com")
        self.assertEqual(u.params, {})
        self.assertIsNone(u.headers)

    def test_semicolon_in_user(self) -> None:
        """RFC 4475 3.1.1.10 (semiuri): the ';' before '@' belongs to the user part."""
        u = parse_uri("sip:user;par=u%40example.net@example.com")
        assert isinstance(u, SipURI)
        self.assertEqual(u.user, "user;par=u%40example.net")
        self.assertEqual(u.params, {})

    def test_escapes_kept(self) -> None:
        u = parse_uri("sip:null-%00-null@example.com")
        assert isinstance(u, SipURI)
        self.assertEqual(u.user, "null-%00-null")
        u = parse_uri("sip:sips%3Auser%40example.com@example.net")
        assert isinstance(u, SipURI)
        self.assertEqual((u.scheme, u.user, u.host), ("sip", "sips%3Auser%40example.com", "example.net"))

    def test_escaped_params(self) -> None:
        u = parse_uri("sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31")
        assert isinstance(u, SipURI)
        self.assertEqual(u.params, {"%6c%72": None, "n%61me": "v%61lue%25%34%31"})

    def test_ipv6(self) -> None:
        for text, host, port in (
            ("sip:[2001:db8::10]", "[2001:db8::10]", None),
            ("sip:[2001:db8::10]:5070", "[2001:db8::10]", 5070),
            ("sip:[2001:db8::10:5070]", "[2001:db8::10:5070]", None),  # RFC 5118 4.1: no port
            ("sip:user@[::ffff:192.0.2.10]:19823", "[::ffff:192.0.2.10]", 19823),
            ("sip:user@[2001:DB8::192.0.2.1]", "[2001:db8::192.0.2.1]", None),
            ("sip:user@[2001:db8:::192.0.2.1]", "[2001:db8:::192.0.2.1]", None),  # RFC 5118 4.4: tolerated
            ("sip:[::1]", "[::1]", None),
        ):
            u = parse_uri(text)
            assert isinstance(u, SipURI)
            self.assertEqual((u.host, u.port), (host, port), text)

    def test_bad_ipv6(self) -> None:
        for text in ("sip:2001:db8::10", "sip:[2001:db8::10", "sip:[1:2:3:4:5:6:7:8:9]", "sip:[::1::2]",
                     "sip:[2001:db8::1]x", "sip:[12345::1]", "sip:[::ffff:300.1.1.1]", "sip:[]",
                     "sip:[2001:db8::::1]"):
            self.assertRaises(SIPParseError, parse_uri, text)

    def test_invalid(self) -> None:
        for text in (
            "", "sip", "sip:", ":foo", "sip:@example.com", "sip:user@", "sip:user@exa mple.com",
            " sip:user@example.com", "sip:user@example.com ", "<sip:user@example.com>", "sip:a@b@c",
            "sip:user@example.com:99999", "sip:user@example.com:", "sip:user@example.com:12a",
            "sip:user@-example.com", "sip:us%zzer@example.com", "sip:user@example.com;", "sip:user@example.com;;lr",
            "sip:user@example.com;a=", "sip:user@example.com?x=%zz", "sip:user@exa_mple.com\x00",
            "1sip:foo", "sip:user@example.com>", "sip:us\"er@example.com", "sip:user@ex%41mple.com",
        ):
            self.assertRaises(SIPParseError, parse_uri, text)

    def test_port_unicode_digits_rejected(self) -> None:
        self.assertRaises(SIPParseError, parse_uri, "sip:user@example.com:\u0663")

    def test_copy_independent(self) -> None:
        u = parse_uri("sip:alice@example.com;lr")
        assert isinstance(u, SipURI)
        c = u.copy()
        c.params["transport"] = "tcp"
        self.assertEqual(u.params, {"lr": None})
        self.assertEqual(c, SipURI("example.com", "alice", params={"lr": None, "transport": "tcp"}))


class TelAndOtherURITests(SynchronousTestCase):
    def test_global_tel(self) -> None:
        u = parse_uri("tel:+1-201-555-0123;ext=1234")
        assert isinstance(u, TelURI)
        self.assertTrue(u.is_global)
        self.assertEqual(u.number, "+1-201-555-0123")
        self.assertEqual(u.digits, "+12015550123")
        self.assertEqual(u.user, "+12015550123")
        self.assertEqual(u.params, {"ext": "1234"})
        self.assertEqual(str(u), "tel:+1-201-555-0123;ext=1234")

    def test_local_tel(self) -> None:
        u = parse_uri("tel:7042;phone-context=example.com")
        assert isinstance(u, TelURI)
        self.assertFalse(u.is_global)
        self.assertEqual(u.params, {"phone-context": "example.com"})
        u = parse_uri("tel:*21#")
        self.assertEqual(u.user, "*21#")

    def test_bad_tel(self) -> None:
        for text in ("tel:", "tel:+", "tel:+-", "tel:12 34", "tel:abc@x", "tel:+1;", "tel:+1;;a", "tel:()"):
            self.assertRaises(SIPParseError, parse_uri, text)

    def test_absolute(self) -> None:
        for text, scheme, rest in (
            ("mailto:alice@example.com", "mailto", "alice@example.com"),
            ("http://www.example.com", "http", "//www.example.com"),
            ("isbn:2983792873", "isbn", "2983792873"),
            ("soap.beep://192.0.2.103:3002", "soap.beep", "//192.0.2.103:3002"),
            ("nobodyKnowsThisScheme:totallyopaquecontent", "nobodyknowsthisscheme", "totallyopaquecontent"),
            ("urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6", "urn", "uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6"),
        ):
            u = parse_uri(text)
            self.assertEqual(u, AbsoluteURI(scheme, rest))
            self.assertIsNone(u.user)
            self.assertEqual(str(u), f"{scheme}:{rest}")

    def test_bad_absolute(self) -> None:
        for text in ("mailto:", "x y:z", "http://exa mple.com", "foo:<x>", "foo:a\"b", "foo:a\x01"):
            self.assertRaises(SIPParseError, parse_uri, text)


class HostPortTests(SynchronousTestCase):
    def test_parse_host_port(self) -> None:
        self.assertEqual(parse_host_port("Example.COM"), ("example.com", None))
        self.assertEqual(parse_host_port("192.0.2.1:5060"), ("192.0.2.1", 5060))
        self.assertEqual(parse_host_port("[2001:db8::1]:5061"), ("[2001:db8::1]", 5061))
        for bad in ("", ":5060", "host:", "host:65536", "[::1", "[zz::1]", "a b"):
            self.assertRaises(SIPParseError, parse_host_port, bad)


class NameAddrTests(SynchronousTestCase):
    def test_forms(self) -> None:
        for text, display, uri, params in (
            ('"Alice" <sip:alice@example.com>;tag=1928301774', '"Alice"', "sip:alice@example.com",
             {"tag": "1928301774"}),
            ("<sip:alice@example.com>", None, "sip:alice@example.com", {}),
            ("Bob <sips:bob@biloxi.example.com>", "Bob", "sips:bob@biloxi.example.com", {}),
            ("caller<sip:caller@example.com>;tag=323", "caller", "sip:caller@example.com", {"tag": "323"}),
            ("token1~` token2'+_ <sip:a@b.c>", "token1~` token2'+_", "sip:a@b.c", {}),
            ("sip:user@example.com;tag=abc", None, "sip:user@example.com", {"tag": "abc"}),
            ("tel:+15551234;tag=x", None, "tel:+15551234", {"tag": "x"}),
            ("<http://www.example.com>;tag=3234233", None, "http://www.example.com", {"tag": "3234233"}),
            ("isbn:2983792873", None, "isbn:2983792873", {}),
        ):
            na = parse_name_addr(text)
            self.assertEqual((na.display, str(na.uri), na.params), (display, uri, params), text)

    def test_addr_spec_params_are_header_params(self) -> None:
        na = parse_name_addr("sip:+19725552222@gw1.example.net;unknownparam")
        self.assertEqual(na.params, {"unknownparam": None})
        assert isinstance(na.uri, SipURI)
        self.assertEqual(na.uri.params, {})
        na = parse_name_addr("<sip:+19725552222@gw1.example.net;unknownparam>")
        self.assertEqual(na.params, {})
        assert isinstance(na.uri, SipURI)
        self.assertEqual(na.uri.params, {"unknownparam": None})

    def test_whitespace_around_params(self) -> None:
        na = parse_name_addr('"Quoted string \\"\\"" <sip:jdrosen@example.com> ; newparam = newvalue ;'
                             " secondparam ; q = 0.33")
        self.assertEqual(na.display, '"Quoted string \\"\\""')
        self.assertEqual(na.display_name, 'Quoted string ""')
        self.assertEqual(na.params, {"newparam": "newvalue", "secondparam": None, "q": "0.33"})
        na = parse_name_addr("sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n")
        self.assertEqual(na.tag, "1918181833n")

    def test_quoted_strings(self) -> None:
        na = parse_name_addr('"J Rosenberg \\\\\\""       <sip:jdrosen@example.com>')
        self.assertEqual(na.display_name, 'J Rosenberg \\"')
        na = parse_name_addr('"BEL:\\\x07 NUL:\\\x00 DEL:\\\x7f" <sip:a@example.com>')
        self.assertEqual(na.display_name, "BEL:\x07 NUL:\x00 DEL:\x7f")
        na = parse_name_addr('"a;b,c<d>" <sip:a@example.com>;x="semi;colon, comma"')
        self.assertEqual(na.display_name, "a;b,c<d>")
        self.assertEqual(na.params, {"x": '"semi;colon, comma"'})
        na = parse_name_addr('"\u043f\u0440\u0438\u0432\u0435\u0442" <sip:a@example.com>')
        self.assertEqual(na.display_name, "\u043f\u0440\u0438\u0432\u0435\u0442")

    def test_contact_with_quoted_angle_param(self) -> None:
        na = parse_name_addr('<sip:alice@192.0.2.10:5060;transport=udp>;expires=3600;'
                             '+sip.instance="<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>"')
        self.assertEqual(na.params, {"expires": "3600",
                                     "+sip.instance": '"<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>"'})
        self.assertEqual(str(na), '<sip:alice@192.0.2.10:5060;transport=udp>;expires=3600;'
                                  '+sip.instance="<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>"')

    def test_invalid(self) -> None:
        for text in (
            "", "   ", '"Mr. J. User <sip:j.user@example.com>', "Bell, Alexander <sip:a.g.bell@example.com>",
            "< sip:t.watson@example.org >", "<sip:a@example.com", "<sip:a@example.com>x", "<sip:a@example.com>;",
            '<sip:a@example.com>;;', '"x" y <sip:a@example.com>', '"x" sip:a@b.com',
            "sip:user@example.com?Route=%3Csip:sip.example.com%3E", "sip:a@b.com, sip:c@d.com", "a b",
            '<sip:a@example.com>;x="unterminated', "<sip:a@example.com>;x=a b", "<<sip:a@example.com>>",
        ):
            self.assertRaises(SIPParseError, parse_name_addr, text)

    def test_str_and_copy(self) -> None:
        na = parse_name_addr('"Alice"   <sip:alice@example.com>;tag=1')
        self.assertEqual(str(na), '"Alice" <sip:alice@example.com>;tag=1')
        self.assertEqual(parse_name_addr(str(na)), na)
        c = na.copy()
        c.params["tag"] = "2"
        self.assertEqual(na.tag, "1")
        self.assertEqual(str(NameAddr(parse_uri("sip:b@example.com"))), "<sip:b@example.com>")


class HelperTests(SynchronousTestCase):
    def test_is_token(self) -> None:
        self.assertTrue(is_token("!interesting-Method0123456789_*+`.%indeed'~"))
        for s in ("", "a b", "a:b", "é", "a\x00", "a,b"):
            self.assertFalse(is_token(s), s)

    def test_params(self) -> None:
        self.assertEqual(parse_params(""), {})
        self.assertEqual(parse_params("a=b;C;d=\"x;y\""), {"a": "b", "c": None, "d": '"x;y"'})
        self.assertEqual(parse_gen_params(" ; received = [2001:db8::1] ;rport"),
                         {"received": "[2001:db8::1]", "rport": None})
        self.assertEqual(format_params({"a": "b", "lr": None}), ";a=b;lr")
        for bad in ("a=", "=b", ";", "a b", "a=b c", 'a="b'):
            self.assertRaises(SIPParseError, parse_params, bad)

    def test_split_comma_list(self) -> None:
        self.assertEqual(split_comma_list("a"), ["a"])
        self.assertEqual(split_comma_list(" a , b,,c "), ["a", "b", "c"])
        self.assertEqual(split_comma_list('"x, y" <sip:a@b.com>;p="1,2", <sip:c@d.com>'),
                         ['"x, y" <sip:a@b.com>;p="1,2"', "<sip:c@d.com>"])
        self.assertEqual(split_comma_list("<sip:a@b.com;x=1,2>, <sip:c@d.com>"),
                         ["<sip:a@b.com;x=1,2>", "<sip:c@d.com>"])
        self.assertRaises(SIPParseError, split_comma_list, '"unbalanced, <sip:a@b.com>')

    def test_unquote(self) -> None:
        self.assertEqual(unquote('"a\\"b\\\\c"'), 'a"b\\c')
        self.assertEqual(unquote("plain"), "plain")
        self.assertEqual(unquote('"'), '"')


def _outcome(parse: Callable[[str], object], text: str) -> object:
    try:
        result = parse(text)
    except SIPParseError as e:
        return ("error", e.reason)
    return (repr(result), str(result))


class FastPathTests(SynchronousTestCase):
    """The fast paths (one regex for the common shapes, bounded caches) give exactly what the full
    grammar gives, for values they take and values they leave to the full parser."""

    NAME_ADDRS = (
        "<sip:1742@127.0.0.1>;tag=3141SIPpTag001742", "<sip:1742@127.0.0.1>", '"Alice" <sip:a@b.com>;tag=9',
        "Bob  Smith\t<sips:bob@Example.COM:5061;transport=TLS;lr>;expires=3600;q=0.5",
        "<sip:10.0.0.2:5070;transport=udp;lr>", "<sip:h;lr>", "<sip:a@b>;TAG=Q", "<sip:a@b>;tag=a;tag=b",
        "<sip:a@b>;q=1;tag=x", "<sip:a@b>;tag=x;q=1", "<sip:a@b>;tag", "<sip:a@b>;tag=", "<sip:a@b:65535>",
        "<sip:a@b:65536>", "<sip:a@b:99999>", "<sip:a@b:00005>", "<sip:a@h_>", "<sip:a@-h>", "<sip:a@h.>",
        "<sip:a@h..>", "<sip:a@h->", "<sip:a;b@h>", "<sip:a%41@h>", "<sip:a:pw@h>", "<sip:a@[::1]:5060>",
        "<sip:a@h?x=y>", "<sip:a@h;x=%41>", "<sip:a@h;x=[1:2]/z>", "<SIP:a@h>", "<tel:+123>", "sip:a@b;tag=1",
        '"x\\"y" <sip:a@b>', '"unbalanced <sip:a@b>', "<sip:a@b> ;tag=x", "<sip:a@b>;tag=x ", " <sip:a@b>",
        "<sip:a@b>;+sip.instance=\"<urn:x>\"", "<sip:a@b>;tag=[::1]", "<sip:@h>", "<sip:a@>", "<sip:a@b@c>",
    )

    def test_name_addr_fast_path_matches_full_parser(self) -> None:
        for text in self.NAME_ADDRS:
            for _ in range(2):  # the second time from the cache
                self.assertEqual(_outcome(parse_name_addr, text), _outcome(parse_name_addr_full, text), text)

    def test_fast_path_taken_for_common_shapes(self) -> None:
        for text in ("<sip:1742@127.0.0.1>;tag=3141SIPpTag001742", '"Alice" <sip:a@b.com:5060;lr>;tag=9',
                     "Bob <sips:bob@example.com>", "<sip:10.0.0.1;lr>"):
            self.assertIsNotNone(match_name_addr(text), text)
        for text in ("<sip:a@b:65536>", "<sip:a@[::1]>", "<sip:a%41@h>", "sip:a@b", "<sip:a@b> ;tag=x"):
            self.assertIsNone(match_name_addr(text), text)
        m = NAME_ADDR_FAST_RE.fullmatch("<sip:a@b>;tag=xyz")
        assert m is not None
        self.assertEqual(m[9], "xyz")
        m = NAME_ADDR_FAST_RE.fullmatch("<sip:a@b>;tag=xyz;lr")
        assert m is not None
        self.assertIsNone(m[9])

    def test_uri_fast_path_matches_full_parser(self) -> None:
        for text in ("sip:127.0.0.1:5060", "sip:1000@127.0.0.1:5060", "sips:a@B.C;transport=TLS;lr", "sip:a@b:99999",
                     "sip:h;x=%41", "sip:a_b@c_d", "sip:a@b.", "sip:-a@b", "sip:a@-b", "sip:a@b;", "sip:a@b;;lr",
                     "sip:a;b=c@d", "sip:a@b;x=", "sip:a:@b", "sip:a@b?x=y"):
            scheme = text.partition(":")[0]
            full = _outcome(lambda t, s=scheme: _parse_sip_uri(s.lower(), t, len(s) + 1), text)
            for _ in range(2):
                self.assertEqual(_outcome(parse_uri, text), full, text)

    def test_cached_values_are_not_shared(self) -> None:
        for _ in range(2):
            u = parse_uri("sip:alice@example.com;transport=udp;lr")
            assert isinstance(u, SipURI)
            u.params["x"] = "1"
            u.host = "changed"
        u = parse_uri("sip:alice@example.com;transport=udp;lr")
        assert isinstance(u, SipURI)
        self.assertEqual((u.host, u.params), ("example.com", {"transport": "udp", "lr": None}))
        for _ in range(2):
            na = parse_name_addr("<sip:a@b;lr>;expires=60;q=1")
            na.params["expires"] = "0"
            assert isinstance(na.uri, SipURI)
            na.uri.params.clear()
        na = parse_name_addr("<sip:a@b;lr>;expires=60;q=1")
        assert isinstance(na.uri, SipURI)
        self.assertEqual((na.params, na.uri.params), ({"expires": "60", "q": "1"}, {"lr": None}))

    def test_caches_are_bounded(self) -> None:
        for i in range(uri_module._CACHE_MAX + 10):
            parse_name_addr(f"<sip:{i}@example.com>;tag={i}")
            parse_uri(f"sip:{i}@example.com;x=1;y={i}")
        self.assertLessEqual(len(uri_module._MATCH_CACHE), uri_module._CACHE_MAX)
        self.assertLessEqual(len(uri_module._URI_CACHE), uri_module._CACHE_MAX)
        self.assertLessEqual(len(uri_module._PARAMS_CACHE), uri_module._CACHE_MAX)

    def test_split_comma_list_fast_path_matches_slow_one(self) -> None:
        for text in ('<sip:a@b;lr>, <sip:c@d;lr>', '"x, y" <sip:a@b.com>;p="1,2", <sip:c@d.com>',
                     "<sip:a@b.com;x=1,2>, <sip:c@d.com>", '"a\\", b" <sip:a@b>, c', "a, <b, c>, d",
                     "<a<b>,c>, d", "a>, b", '<"x,y">, z', " , a, , b ,", "<a, b>", "x<a>y, <b", "a<b>c>d, e",
                     "a>b<c>, d", "<a>, <b<c>>, d", '"a", <b,c>', '<a;x="1,2">, b'):
            expected = [v for v in (p.strip(" \t") for p in _split_unquoted(text, ",")) if v]
            self.assertEqual(split_comma_list(text), expected, text)
