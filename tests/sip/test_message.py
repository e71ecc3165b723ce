"""Tests for minisip.sip.message: parsing, serialization, header access, make_response, stream framing."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from minisip.sip.errors import SIPParseError
from minisip.sip.message import (
    MAX_DELTA_SECONDS,
    Message,
    Request,
    Response,
    StreamFramer,
    UnsafeHeaderError,
    Via,
    make_response,
    parse_cseq,
    parse_delta_seconds,
    parse_message,
    parse_via,
)
from minisip.sip.uri import SipURI, TelURI, parse_name_addr, parse_name_addr_full

INVITE = (
    b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKnashds8\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: Bob <sip:bob@biloxi.example.com>\r\n"
    b"From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
    b"Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:alice@pc33.atlanta.example.com>\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 4\r\n"
    b"\r\n"
    b"v=0\n"
)

REGISTER = (
    b"REGISTER sip:example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.10:5060;rport;branch=z9hG4bK776asdhds\r\n"
    b"Max-Forwards: 70\r\n"
    b"From: \"Alice\" <sip:alice@example.com>;tag=1928301774\r\n"
    b"To: \"Alice\" <sip:alice@example.com>\r\n"
    b"Call-ID: a84b4c76e66710@pc33.example.com\r\n"
    b"CSeq: 2 REGISTER\r\n"
    b"Contact: <sip:alice@192.0.2.10:5060;transport=udp>;expires=3600\r\n"
    b"Expires: 3600\r\n"
    b"Allow: INVITE, ACK, CANCEL, BYE, OPTIONS\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)

RESPONSE = (
    b"SIP/2.0 180 Ringing\r\n"
    b"Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKnashds8;received=192.0.2.1\r\n"
    b"To: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf\r\n"
    b"From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
    b"Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)


def replace(data: bytes, old: bytes, new: bytes) -> bytes:
    assert old in data, old
    return data.replace(old, new, 1)


class ParseTests(SynchronousTestCase):
    def test_request(self) -> None:
        m = parse_message(INVITE)
        assert isinstance(m, Request)
        self.assertEqual(m.method, "INVITE")
        self.assertEqual(m.uri, SipURI("biloxi.example.com", "bob"))
        self.assertEqual(m.version, "SIP/2.0")
        self.assertEqual(m.call_id, "a84b4c76e66710@pc33.atlanta.example.com")
        self.assertEqual(m.cseq, (314159, "INVITE"))
        self.assertEqual(m.from_tag, "1928301774")
        self.assertIsNone(m.to_tag)
        self.assertEqual(m.to.display, "Bob")
        self.assertEqual(m.top_via.branch, "z9hG4bKnashds8")
        self.assertEqual(m.top_via.host, "pc33.atlanta.example.com")
        self.assertEqual(m.max_forwards, 70)
        self.assertEqual(m.content_type, "application/sdp")
        self.assertEqual(m.body, b"v=0\n")
        self.assertEqual([str(c.uri) for c in m.contacts()], ["sip:alice@pc33.atlanta.example.com"])
        self.assertEqual(m.get("content-length"), "4")

    def test_response(self) -> None:
        m = parse_message(RESPONSE)
        assert isinstance(m, Response)
        self.assertEqual((m.status, m.reason), (180, "Ringing"))
        self.assertEqual(m.to_tag, "a6c85cf")
        self.assertEqual(m.top_via.params["received"], "192.0.2.1")
        self.assertEqual(m.body, b"")
        self.assertIn("180", repr(m))

    def test_round_trip(self) -> None:
        for data in (INVITE, REGISTER, RESPONSE):
            m = parse_message(data)
            wire = m.to_bytes()
            self.assertEqual(wire, data)
            again = parse_message(wire)
            self.assertEqual(again.headers, m.headers)
            self.assertEqual(again.body, m.body)
            self.assertEqual(again.to_bytes(), wire)

    def test_round_trip_normalises(self) -> None:
        data = (b"OPTIONS sip:Bob@Biloxi.Example.COM SIP/2.0\r\n"
                b"v: SIP/2.0/UDP h.example.com;branch=z9hG4bK1\r\n"
                b"f: <sip:a@example.com>;tag=1\r\nt: <sip:b@example.com>\r\ni: 1@h\r\n"
                b"CSeq: 1 OPTIONS\r\nX-Custom:   spaced value  \r\n\r\n")
        m = parse_message(data)
        wire = m.to_bytes()
        self.assertEqual(wire, (
            b"OPTIONS sip:Bob@biloxi.example.com SIP/2.0\r\n"
            b"Via: SIP/2.0/UDP h.example.com;branch=z9hG4bK1\r\n"
            b"From: <sip:a@example.com>;tag=1\r\nTo: <sip:b@example.com>\r\nCall-ID: 1@h\r\n"
            b"CSeq: 1 OPTIONS\r\nX-Custom: spaced value\r\nContent-Length: 0\r\n\r\n"))
        self.assertEqual(parse_message(wire).to_bytes(), wire)

    def test_compact_forms(self) -> None:
        data = (b"INVITE sip:bob@example.com SIP/2.0\r\n"
                b"v: SIP/2.0/UDP h.example.com;branch=z9hG4bK1\r\n"
                b"f: <sip:a@example.com>;tag=1\r\n"
                b"T: <sip:b@example.com>\r\n"
                b"i: 1@h\r\n"
                b"CSeq: 1 INVITE\r\n"
                b"m: <sip:a@h.example.com>\r\n"
                b"c: application/sdp\r\n"
                b"k: replaces\r\n"
                b"s: hello\r\n"
                b"e: identity\r\n"
                b"L: 3\r\n\r\nabc")
        m = parse_message(data)
        self.assertEqual([(k, n) for k, n, _ in m.headers], [
            ("via", "Via"), ("from", "From"), ("to", "To"), ("call-id", "Call-ID"), ("cseq", "CSeq"),
            ("contact", "Contact"), ("content-type", "Content-Type"), ("supported", "Supported"),
            ("subject", "Subject"), ("content-encoding", "Content-Encoding"), ("content-length", "Content-Length")])
        self.assertEqual(m.get("Call-ID"), "1@h")
        self.assertEqual(m.get("i"), "1@h")
        self.assertEqual(m.get("SUPPORTED"), "replaces")
        self.assertEqual(m.body, b"abc")

    def test_header_names_case_and_spacing(self) -> None:
        data = replace(INVITE, b"Max-Forwards: 70", b"mAX-fORWARDS  :  70")
        data = replace(data, b"CSeq:", b"cseq:")
        m = parse_message(data)
        self.assertEqual(m.max_forwards, 70)
        self.assertEqual(m.cseq, (314159, "INVITE"))
        self.assertEqual(m.headers[1][1], "Max-Forwards")

    def test_unknown_headers_kept(self) -> None:
        data = replace(INVITE, b"Max-Forwards: 70\r\n",
                       b"Max-Forwards: 70\r\nX-Odd.Name!%*: ;;,,;;,;\r\nP-Empty:\r\n")
        m = parse_message(data)
        self.assertEqual(m.get("x-odd.name!%*"), ";;,,;;,;")
        self.assertEqual(m.get("P-Empty"), "")
        self.assertIn(b"X-Odd.Name!%*: ;;,,;;,;\r\n", m.to_bytes())

    def test_folding(self) -> None:
        data = (b"OPTIONS sip:bob@example.com SIP/2.0\r\n"
                b"Via: SIP/2.0/UDP\r\n    h.example.com\r\n\t;branch=z9hG4bK1\r\n"
                b"From: <sip:a@example.com>\r\n  ;\r\n  tag = 9\r\n"
                b"To:\r\n <sip:b@example.com>\r\n"
                b"Call-ID: 1@h\r\n"
                b"CSeq: 0009\r\n  OPTIONS\r\n"
                b"Subject: one\r\n two\r\n \r\n three\r\n"
                b"Content-Length: 0\r\n\r\n")
        m = parse_message(data)
        self.assertEqual(m.get("via"), "SIP/2.0/UDP h.example.com ;branch=z9hG4bK1")
        self.assertEqual(m.top_via.host, "h.example.com")
        self.assertEqual(m.from_tag, "9")
        self.assertEqual(str(m.to.uri), "sip:b@example.com")
        self.assertEqual(m.cseq, (9, "OPTIONS"))
        self.assertEqual(m.get("subject"), "one two three")
        self.assertNotIn(b"\r\n ", m.to_bytes())

    def test_multi_valued_headers(self) -> None:
        data = replace(INVITE, b"Max-Forwards: 70\r\n",
                       b"Max-Forwards: 70\r\n"
                       b"Via: SIP/2.0/TCP p1.example.com;branch=z9hG4bK2, "
                       b"SIP/2.0/UDP [2001:db8::1]:5070;branch=z9hG4bK3\r\n"
                       b"Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\n"
                       b"Route: <sip:p3.example.com;lr>\r\n"
                       b"Record-Route: <sip:rr.example.com;lr>\r\n"
                       b"Contact: \"Two, Comma\" <sip:x@example.com>;q=0.5, <sip:y@example.com>\r\n")
        m = parse_message(data)
        self.assertEqual([v.host for v in m.vias],
                         ["pc33.atlanta.example.com", "p1.example.com", "[2001:db8::1]"])
        self.assertEqual(m.vias[2].port, 5070)
        self.assertEqual(len(m.get_all("via")), 3)
        self.assertEqual([str(r.uri) for r in m.routes()],
                         ["sip:p1.example.com;lr", "sip:p2.example.com;lr", "sip:p3.example.com;lr"])
        self.assertEqual([str(r.uri) for r in m.record_routes()], ["sip:rr.example.com;lr"])
        self.assertEqual([c.display_name for c in m.contacts()], ["Two, Comma", None, None])
        self.assertEqual(m.contacts()[0].params, {"q": "0.5"})
        self.assertEqual(m.get_all("allow"), [])

    def test_list_header_split(self) -> None:
        m = parse_message(REGISTER)
        self.assertEqual(m.get_all("Allow"), ["INVITE", "ACK", "CANCEL", "BYE", "OPTIONS"])
        self.assertEqual(m.get("allow"), "INVITE, ACK, CANCEL, BYE, OPTIONS")
        self.assertEqual(m.expires, 3600)
        self.assertFalse(m.star_contact)

    def test_bare_lf_and_leading_crlf(self) -> None:
        m = parse_message(b"\r\n\r\n" + INVITE.replace(b"\r\n", b"\n"))
        assert isinstance(m, Request)
        self.assertEqual(m.cseq, (314159, "INVITE"))
        self.assertEqual(m.body, b"v=0\n")
        mixed = INVITE.replace(b"Max-Forwards: 70\r\n", b"Max-Forwards: 70\n")
        self.assertEqual(parse_message(mixed).max_forwards, 70)

    def test_body_beyond_content_length_ignored(self) -> None:
        m = parse_message(INVITE + b"garbage")
        self.assertEqual(m.body, b"v=0\n")

    def test_missing_content_length_datagram(self) -> None:
        data = replace(INVITE, b"Content-Length: 4\r\n", b"")
        self.assertEqual(parse_message(data).body, b"v=0\n")
        err = self.assertRaises(SIPParseError, parse_message, data, datagram=False)
        self.assertEqual(err.status, 400)

    def test_utf8_and_binary(self) -> None:
        data = replace(INVITE, b"To: Bob", "To: \"Bj\u00f6rn \u2603\"".encode())
        data = replace(data, b"v=0\n", b"\x00\xff\r\n")
        m = parse_message(data)
        self.assertEqual(m.to.display_name, "Bj\u00f6rn \u2603")
        self.assertEqual(m.body, b"\x00\xff\r\n")
        self.assertEqual(m.to_bytes(), data)
        latin1 = replace(INVITE, b"To: Bob", b"To: \"B\xf6b\"")
        latin1 = replace(latin1, b"CSeq:", b"X-Latin1: \xe9t\xe9\r\nCSeq:")
        self.assertEqual(parse_message(latin1).to_bytes(), latin1)
        self.assertRaises(SIPParseError, parse_message, replace(INVITE, b"To: Bob", b"To: B\xf6b"))

    def test_ipv6_vias(self) -> None:
        data = replace(INVITE, b"Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKnashds8",
                       b"Via: SIP/2.0/UDP [2001:db8::9:1]:6050;branch=z9hG4bKas3-111;received=2001:db8::9:255")
        m = parse_message(data)
        self.assertEqual((m.top_via.host, m.top_via.port), ("[2001:db8::9:1]", 6050))
        self.assertEqual(m.top_via.params["received"], "2001:db8::9:255")


class ParseErrorTests(SynchronousTestCase):
    def assert_error(self, data: bytes, status: int | None = 400, **kw: bool) -> SIPParseError:
        err = self.assertRaises(SIPParseError, parse_message, data, **kw)
        self.assertEqual(err.status, status, err.reason)
        return err

    def test_request_errors_have_partial(self) -> None:
        for old, new in (
            (b"From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n", b""),
            (b"To: Bob <sip:bob@biloxi.example.com>\r\n", b""),
            (b"Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n", b""),
            (b"CSeq: 314159 INVITE\r\n", b""),
            (b"Max-Forwards: 70", b"Max-Forwards: 256"),
            (b"Max-Forwards: 70", b"Max-Forwards: -1"),
            (b"Max-Forwards: 70", b"Max-Forwards: 70\r\nMax-Forwards: 70"),
            (b"Content-Length: 4", b"Content-Length: 5"),
            (b"Content-Length: 4", b"Content-Length: -4"),
            (b"Content-Length: 4", b"Content-Length: \xd9\xa3"),
            (b"Content-Length: 4", b"Content-Length: 4\r\nl: 4"),
            (b"Content-Type: application/sdp", b"Content-Type: application"),
            (b"Content-Type: application/sdp", b"Content-Type: application/sdp;"),
            (b"CSeq: 314159 INVITE", b"CSeq: 314159 BYE"),
            (b"CSeq: 314159 INVITE", b"CSeq: 2147483648 INVITE"),
            (b"CSeq: 314159 INVITE", b"CSeq: INVITE"),
            (b"Call-ID: a84b4c76e66710@pc33.atlanta.example.com", b"Call-ID: a b"),
            (b"Call-ID: a84b4c76e66710@pc33.atlanta.example.com", b"Call-ID: a@b@c"),
            (b"To: Bob <sip:bob@biloxi.example.com>", b"To: Bob <sip:bob@biloxi.example.com"),
            (b"branch=z9hG4bKnashds8", b"branch=z9hG4bK"),
            (b"branch=z9hG4bKnashds8", b"branch="),
            (b"branch=z9hG4bKnashds8", b"branch=z9hG4bK1;received=host.example.com"),
            (b"branch=z9hG4bKnashds8", b"branch=z9hG4bK1;rport=x"),
            (b"branch=z9hG4bKnashds8", b"branch=z9hG4bK1;ttl=256"),
            (b"branch=z9hG4bKnashds8", b"branch=z9hG4bK1;maddr=-bad"),
            (b"Via: SIP/2.0/UDP", b"Via: SIP/UDP"),
            (b"Via: SIP/2.0/UDP pc33.atlanta.example.com;", b"Via: SIP/2.0/UDP pc33 atlanta.example.com;"),
            (b"Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKnashds8\r\n", b""),
            (b"Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKnashds8", b"Via: ,"),
            (b"Contact: <sip:alice@pc33.atlanta.example.com>", b"Contact: <sip:alice@pc33.atlanta.example.com>;;"),
            (b"Contact: <sip:alice@pc33.atlanta.example.com>", b"Contact:"),
            (b"Max-Forwards: 70\r\n", b"Max-Forwards: 70\r\nRoute: sip:a@b.com, bad value\r\n"),
            (b"Max-Forwards: 70\r\n", b"Max-Forwards: 70\r\nno colon here\r\n"),
            (b"Max-Forwards: 70\r\n", b"Max-Forwards: 70\r\nBad Name: x\r\n"),
            (b"Max-Forwards: 70\r\n", b"Max-Forwards: 70\r\n: x\r\n"),
            (b"Max-Forwards: 70\r\n", b"Max-Forwards: 70\r\nX-Cr: a\rb\r\n"),
            (b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n", b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n x\r\n"),
            (b"sip:bob@biloxi.example.com SIP", b"<sip:bob@biloxi.example.com> SIP"),
            (b"sip:bob@biloxi.example.com SIP", b"sip:bob@biloxi.example.com?Route=x SIP"),
            (b"INVITE sip", b"INVITE  sip"),
            (b"SIP/2.0\r\n", b"SIP/2.0 \r\n"),
            (b"INVITE sip:bob@biloxi.example.com SIP", b"INVITE sip:bob@biloxi.example.com; lr SIP"),
            (b"INVITE sip:", b"INV\"TE sip:"),
            (b"SIP/2.0\r\n", b"SIP/2\r\n"),
            (b"SIP/2.0\r\n", b"HTTP/1.1\r\n"),
        ):
            data = replace(INVITE, old, new)
            err = self.assert_error(data)
            assert err.partial is not None, new
            self.assertIsInstance(err.partial, Request)
            if not old.startswith(b"Via"):
                self.assertTrue(err.partial.has("via"), new)
            if b"Call-ID" not in old:
                self.assertEqual(err.partial.get("call-id"), "a84b4c76e66710@pc33.atlanta.example.com", new)

    def test_partial_answerable(self) -> None:
        err = self.assert_error(replace(INVITE, b"Max-Forwards: 70\r\n", b"Max-Forwards: 70\r\n???\r\n"))
        assert err.partial is not None
        resp = make_response(err.partial, 400, to_tag="x")
        wire = resp.to_bytes()
        again = parse_message(wire)
        self.assertEqual(again.call_id, "a84b4c76e66710@pc33.atlanta.example.com")
        self.assertEqual(again.cseq, (314159, "INVITE"))
        self.assertEqual(again.top_via.branch, "z9hG4bKnashds8")
        self.assertEqual(again.to_tag, "x")
        self.assertEqual(again.from_tag, "1928301774")

    def test_partial_keeps_headers_after_bad_line(self) -> None:
        err = self.assert_error(replace(INVITE, b"Via:", b"B@d\r\nVia:"))
        assert err.partial is not None
        self.assertEqual(err.partial.get("via"), "SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKnashds8")
        self.assertEqual(err.partial.get("cseq"), "314159 INVITE")

    def test_version(self) -> None:
        err = self.assert_error(replace(INVITE, b" SIP/2.0\r\n", b" SIP/7.0\r\n"), 505)
        assert err.partial is not None
        self.assertEqual(err.partial.method, "INVITE")
        self.assertEqual(parse_message(replace(INVITE, b" SIP/2.0\r\n", b" sip/2.0\r\n")).to_bytes(), INVITE)

    def test_unreadable_start_line_dropped(self) -> None:
        for data in (b"hello\r\n\r\n", b"\r\n\r\n", b"", b"\x00\x01\x02", b"INVITE\r\nVia: x\r\n\r\n",
                     b"a b\r\n\r\n"):
            err = self.assert_error(data, None)
            self.assertIsNone(err.partial)

    def test_no_end_of_headers(self) -> None:
        err = self.assert_error(INVITE[:INVITE.index(b"\r\n\r\n") + 2])
        self.assertIsNotNone(err.partial)

    def test_response_errors_dropped(self) -> None:
        for old, new in (
            (b"SIP/2.0 180 Ringing", b"SIP/2.0 4294967301 better not break the receiver"),
            (b"SIP/2.0 180 Ringing", b"SIP/2.0 700 Seven"),
            (b"SIP/2.0 180 Ringing", b"SIP/2.0 099 Low"),
            (b"SIP/2.0 180 Ringing", b"SIP/2.0 18 Short"),
            (b"SIP/2.0 180 Ringing", b"SIP/3.0 180 Ringing"),
            (b"SIP/2.0 180 Ringing", b"SIP/2.0 1\xd9\xa380 Ringing"),
            (b"CSeq: 314159 INVITE", b"CSeq: 9292394834772304023312 INVITE"),
            (b"Content-Length: 0", b"Content-Length: 10"),
            (b"To: Bob", b"To: Bob, Jr"),
            (b"Via: SIP/2.0/UDP", b"Via: SIP/2.0/UDP\r\nX"),
        ):
            err = self.assert_error(replace(RESPONSE, old, new), None)
            self.assertIsNone(err.partial)

    def test_response_without_reason(self) -> None:
        m = parse_message(replace(RESPONSE, b"180 Ringing", b"180"))
        assert isinstance(m, Response)
        self.assertEqual((m.status, m.reason), (180, ""))

    def test_limits(self) -> None:
        self.assert_error(INVITE + b"x" * 70000, 513)
        many = replace(INVITE, b"Max-Forwards: 70\r\n", b"Max-Forwards: 70\r\n" + b"X-A: b\r\n" * 200)
        self.assert_error(many)
        self.assertEqual(parse_message(many, max_headers=300).max_forwards, 70)


class HeaderAccessTests(SynchronousTestCase):
    def setUp(self) -> None:
        m = parse_message(INVITE)
        assert isinstance(m, Request)
        self.m = m

    def test_get_has(self) -> None:
        self.assertTrue(self.m.has("v"))
        self.assertTrue(self.m.has("CONTENT-TYPE"))
        self.assertFalse(self.m.has("Route"))
        self.assertIsNone(self.m.get("Route"))

    def test_set_replaces_all(self) -> None:
        self.m.add("Via", "SIP/2.0/TCP other.example.com;branch=z9hG4bKx")
        self.m.set("via", "SIP/2.0/UDP new.example.com;branch=z9hG4bKy")
        self.assertEqual(self.m.get_all("Via"), ["SIP/2.0/UDP new.example.com;branch=z9hG4bKy"])
        self.assertEqual(self.m.top_via.host, "new.example.com")
        self.m.set("X-New", "1")
        self.assertEqual(self.m.headers[-1], ("x-new", "X-New", "1"))

    def test_add_first_and_pop_first(self) -> None:
        self.assertEqual(self.m.top_via.host, "pc33.atlanta.example.com")
        self.m.add("v", "SIP/2.0/UDP proxy.example.com;branch=z9hG4bKp", first=True)
        self.assertEqual(self.m.top_via.host, "proxy.example.com")
        self.assertEqual(self.m.headers[0][1], "Via")
        self.assertEqual(self.m.pop_first("Via"), "SIP/2.0/UDP proxy.example.com;branch=z9hG4bKp")
        self.assertEqual(self.m.top_via.host, "pc33.atlanta.example.com")
        self.m.add("Route", "<sip:a.example.com;lr>, <sip:b.example.com;lr>")
        self.assertEqual(self.m.pop_first("Route"), "<sip:a.example.com;lr>")
        self.assertEqual(self.m.get("route"), "<sip:b.example.com;lr>")
        self.assertEqual([str(r.uri) for r in self.m.routes()], ["sip:b.example.com;lr"])
        self.assertEqual(self.m.pop_first("route"), "<sip:b.example.com;lr>")
        self.assertIsNone(self.m.pop_first("route"))
        self.assertEqual(self.m.routes(), [])

    def test_add_first_when_absent(self) -> None:
        self.m.add("Record-Route", "<sip:rr.example.com;lr>", first=True)
        self.assertEqual(self.m.headers[-1][0], "record-route")

    def test_remove(self) -> None:
        self.m.remove("Contact")
        self.assertEqual(self.m.contacts(), [])
        self.assertNotIn(b"Contact", self.m.to_bytes())

    def test_cache_invalidated(self) -> None:
        self.assertEqual(self.m.cseq, (314159, "INVITE"))
        self.m.set("CSeq", "314160 INVITE")
        self.assertEqual(self.m.cseq, (314160, "INVITE"))
        self.assertIsNone(self.m.to_tag)
        self.m.set("To", "<sip:bob@biloxi.example.com>;tag=zz")
        self.assertEqual(self.m.to_tag, "zz")
        self.m.set("Contact", "*")
        self.assertTrue(self.m.star_contact)
        self.assertEqual(self.m.contacts(), [])

    def test_to_bytes_recomputes_content_length(self) -> None:
        self.m.body = b"v=0\r\no=- 0 0 IN IP4 192.0.2.1\r\n"
        wire = self.m.to_bytes()
        self.assertIn(b"\r\nContent-Length: 31\r\n\r\nv=0", wire)
        self.assertEqual(wire.count(b"Content-Length"), 1)
        self.assertEqual(parse_message(wire, datagram=False).body, self.m.body)

    def test_expires_and_max_forwards(self) -> None:
        self.assertIsNone(self.m.expires)
        self.m.set("Expires", "10000000000000000000000000000")
        self.assertEqual(self.m.expires, MAX_DELTA_SECONDS)
        self.m.set("Expires", "Thu, 01 Dec 1994 16:00:00 GMT")
        self.assertRaises(SIPParseError, lambda: self.m.expires)
        self.m.set("Max-Forwards", "x")
        self.assertRaises(SIPParseError, lambda: self.m.max_forwards)
        self.m.remove("Max-Forwards")
        self.assertIsNone(self.m.max_forwards)

    def test_content_type_normalised(self) -> None:
        self.m.set("Content-Type", "Application / SDP ; charset=utf-8")
        self.assertEqual(self.m.content_type, "application/sdp")
        self.m.remove("Content-Type")
        self.assertIsNone(self.m.content_type)

    def test_built_request(self) -> None:
        req = Request("OPTIONS", SipURI("example.com"), body=b"")
        req.add("Via", "SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1")
        req.add("From", "<sip:a@example.com>;tag=1")
        req.add("To", "<sip:example.com>")
        req.add("Call-ID", "x@y")
        req.add("CSeq", "1 OPTIONS")
        req.add("Max-Forwards", "70")
        self.assertEqual(req.to_bytes(), (
            b"OPTIONS sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n"
            b"From: <sip:a@example.com>;tag=1\r\nTo: <sip:example.com>\r\nCall-ID: x@y\r\nCSeq: 1 OPTIONS\r\n"
            b"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"))
        self.assertIn("OPTIONS", repr(req))
        empty = Request("OPTIONS", TelURI("+1"))
        self.assertRaises(SIPParseError, lambda: empty.top_via)
        self.assertEqual(empty.call_id, "")
        self.assertIsInstance(Message(), Message)


class MakeResponseTests(SynchronousTestCase):
    def setUp(self) -> None:
        data = replace(INVITE, b"Max-Forwards: 70\r\n",
                       b"Max-Forwards: 70\r\nRecord-Route: <sip:rr.example.com;lr>\r\n"
                       b"Via: SIP/2.0/UDP second.example.com;branch=z9hG4bK2\r\n")
        m = parse_message(data)
        assert isinstance(m, Request)
        self.req = m

    def test_copies_headers(self) -> None:
        resp = make_response(self.req, 180, to_tag="abc")
        self.assertEqual((resp.status, resp.reason), (180, "Ringing"))
        self.assertEqual([k for k, _, _ in resp.headers],
                         ["via", "record-route", "via", "to", "from", "call-id", "cseq"])
        self.assertEqual(resp.to_tag, "abc")
        self.assertEqual(resp.from_tag, "1928301774")
        self.assertEqual(resp.get_all("via"), self.req.get_all("via"))
        again = parse_message(resp.to_bytes())
        assert isinstance(again, Response)
        self.assertEqual(again.cseq, (314159, "INVITE"))

    def test_trying_has_no_tag_and_no_record_route(self) -> None:
        resp = make_response(self.req, 100, to_tag="abc")
        self.assertIsNone(resp.to_tag)
        self.assertFalse(resp.has("record-route"))

    def test_error_has_no_record_route(self) -> None:
        resp = make_response(self.req, 486, to_tag="abc")
        self.assertEqual(resp.reason, "Busy Here")
        self.assertFalse(resp.has("record-route"))

    def test_existing_tag_kept(self) -> None:
        self.req.set("To", "Bob <sip:bob@biloxi.example.com>;tag=orig")
        resp = make_response(self.req, 200, to_tag="new")
        self.assertEqual(resp.to_tag, "orig")
        self.req.set("To", '"tag=fake" <sip:bob@biloxi.example.com>')
        self.assertEqual(make_response(self.req, 200, to_tag="new").to_tag, "new")

    def test_extra_and_body(self) -> None:
        resp = make_response(self.req, 200, "Fine", to_tag="t",
                             extra=[("Contact", "<sip:pbx@192.0.2.2>"), ("c", "application/sdp")], body=b"v=0\r\n")
        self.assertEqual(resp.reason, "Fine")
        self.assertEqual(resp.headers[-1], ("content-type", "Content-Type", "application/sdp"))
        self.assertEqual(parse_message(resp.to_bytes()).body, b"v=0\r\n")
        self.assertEqual(Response(299).reason, "Unknown")


class ViaAndCSeqTests(SynchronousTestCase):
    def test_parse_via(self) -> None:
        v = parse_via("SIP/2.0/UDP 192.0.2.10:5060;rport;branch=z9hG4bK776asdhds")
        self.assertEqual(v, Via("UDP", "192.0.2.10", 5060, {"rport": None, "branch": "z9hG4bK776asdhds"}))
        self.assertTrue(v.rfc3261_branch)
        self.assertEqual(str(v), "SIP/2.0/UDP 192.0.2.10:5060;rport;branch=z9hG4bK776asdhds")

    def test_lws(self) -> None:
        v = parse_via("SIP  / 2.0  / tcp     spindle.example.com  :  5061 ;  branch  =   z9hG4bK9ikj8 ; x = \"a b\"")
        self.assertEqual((v.protocol, v.transport, v.host, v.port), ("SIP/2.0", "TCP", "spindle.example.com", 5061))
        self.assertEqual(v.params, {"branch": "z9hG4bK9ikj8", "x": '"a b"'})

    def test_received_forms(self) -> None:
        for received in ("192.0.2.1", "2001:db8::9:255", "[2001:db8::9:255]"):
            v = parse_via(f"SIP/2.0/UDP [2001:db8::9:1];received={received};branch=z9hG4bKas3")
            self.assertEqual(v.params["received"], received)

    def test_rfc2543(self) -> None:
        v = parse_via("SIP/2.0/UDP iftgw.example.com")
        self.assertIsNone(v.branch)
        self.assertFalse(v.rfc3261_branch)
        self.assertFalse(parse_via("SIP/2.0/UDP h;branch=z9hG4bK").rfc3261_branch)
        self.assertFalse(parse_via("SIP/2.0/UDP h;branch=1234").rfc3261_branch)

    def test_bad_via(self) -> None:
        for text in ("", "SIP/2.0/UDP", "SIP/2.0 host", "SIP/2.0/UDP host:99999", "SIP/2.0/UDP [::1",
                     "SIP/2.0/UDP host;;", "SIP/2.0/UDP host;branch", "SIP/2.0/UDP host junk",
                     "SIP/2.0/UDP host;received", "SIP/2.0/UDP host;rport=\u0663", "SIP/2.0/UDP [1::2::3]"):
            self.assertRaises(SIPParseError, parse_via, text)

    def test_cseq(self) -> None:
        self.assertEqual(parse_cseq("0009 \t INVITE"), (9, "INVITE"))
        self.assertEqual(parse_cseq("2147483647 BYE"), (2 ** 31 - 1, "BYE"))
        for text in ("", "1", "INVITE", "2147483648 BYE", "36893488147419103232 REGISTER", "1 IN VITE",
                     "-1 BYE", "\u0663 BYE", "1 BYE x"):
            self.assertRaises(SIPParseError, parse_cseq, text)

    def test_delta_seconds(self) -> None:
        self.assertEqual(parse_delta_seconds(" 3600 "), 3600)
        self.assertEqual(parse_delta_seconds("4294967296"), MAX_DELTA_SECONDS)
        self.assertEqual(parse_delta_seconds("9" * 100), MAX_DELTA_SECONDS)
        for text in ("", "-1", "1.5", "\u0663", "0x10"):
            self.assertRaises(SIPParseError, parse_delta_seconds, text)


class LazyViewTests(SynchronousTestCase):
    """From/To/Contact/Route values are checked while parsing but built into NameAddr on first use;
    the result is the same as parsing them with the full grammar, and never shared between messages."""

    def make(self, *lines: str) -> bytes:
        head = ["OPTIONS sip:b@example.com SIP/2.0", "Via: SIP/2.0/UDP h:5060;branch=z9hG4bK1",
                "Call-ID: x@h", "CSeq: 1 OPTIONS", *lines]
        return ("\r\n".join(head) + "\r\n\r\n").encode()

    def test_views_equal_full_parse(self) -> None:
        values = ["<sip:a@example.com>;tag=1", '"A" <sip:a@example.com:5060;lr>;TAG=Q;x=1', "sip:a@example.com;tag=2",
                  "<sip:a@example.com>;tag=a;tag=b", "<sip:a@example.com>;x=1;tag=3", "<sip:a@[::1]>;tag=4",
                  "<sip:a@example.com>", "B <tel:+123>;tag=5", '"\\"" <sip:a@b>;p="q"']
        for frm in values:
            for to in values[-3:]:
                msg = parse_message(self.make(f"From: {frm}", f"To: {to}", f"Contact: {frm}, {to}",
                                              f"Record-Route: {to}", f"Route: {frm}"))
                self.assertEqual(msg.from_tag, parse_name_addr_full(frm).tag, frm)
                self.assertEqual(msg.to_tag, parse_name_addr_full(to).tag, to)
                self.assertEqual(msg.from_, parse_name_addr_full(frm))
                self.assertEqual(msg.to, parse_name_addr_full(to))
                self.assertEqual(msg.from_tag, msg.from_.tag)
                self.assertEqual(msg.contacts(), [parse_name_addr_full(frm), parse_name_addr_full(to)])
                self.assertEqual(msg.record_routes(), [parse_name_addr_full(to)])
                self.assertEqual(msg.routes(), [parse_name_addr_full(frm)])
                self.assertIs(msg.contacts(), msg.contacts())

    def test_bad_values_rejected_while_parsing(self) -> None:
        for line in ("Route: <sip:a@example.com:65536>", "Record-Route: <sip:a@b>, <sip:a@[::1::2]>",
                     "Contact: <sip:a@b>;=x", "Route: <sip:a@b>x"):
            with self.assertRaises(SIPParseError) as cm:
                parse_message(self.make("From: <sip:a@b>;tag=1", "To: <sip:b@b>", line))
            self.assertEqual(cm.exception.status, 400, line)
        self.assertRaises(SIPParseError, parse_message, self.make("From: <sip:a@b:99999>;tag=1", "To: <sip:b@b>"))

    def test_parsed_objects_not_shared(self) -> None:
        data = self.make("From: <sip:a@b;lr>;tag=1", "To: <sip:b@b>", "Contact: <sip:c@d>;expires=60")
        first = parse_message(data)
        first.from_.params["tag"] = "changed"
        first.contacts()[0].params["expires"] = "0"
        first.top_via.params["received"] = "192.0.2.1"
        assert isinstance(first.from_.uri, SipURI)
        first.from_.uri.params["lr"] = "x"
        second = parse_message(data)
        self.assertEqual(second.from_tag, "1")
        self.assertEqual(second.from_, parse_name_addr("<sip:a@b;lr>;tag=1"))
        self.assertEqual(second.contacts()[0].params, {"expires": "60"})
        self.assertEqual(second.top_via.params, {"branch": "z9hG4bK1"})

    def test_set_after_parse(self) -> None:
        msg = parse_message(self.make("From: <sip:a@b>;tag=1", "To: <sip:b@b>", "Contact: *"))
        self.assertTrue(msg.star_contact)
        self.assertEqual(msg.contacts(), [])
        msg.set("From", "<sip:x@y>;tag=2")
        self.assertEqual(msg.from_tag, "2")
        msg.set("Contact", " <sip:c@d>, * ")
        self.assertTrue(msg.star_contact)
        self.assertEqual(msg.contacts(), [parse_name_addr("<sip:c@d>")])
        msg.set("Call-ID", "other@h")
        self.assertEqual(msg.call_id, "other@h")
        self.assertTrue(msg.has("call-id") and msg.has("i") and not msg.has("accept"))

    def test_fast_via_matches_full_grammar(self) -> None:
        for text in ("SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1", "SIP/2.0/udp H.example.COM;BRANCH=Z",
                     "SIP/2.0/TCP h;branch=z9hG4bKx;rport;received=192.0.2.1", "SIP/2.0/UDP h;ttl=3;maddr=m.c"):
            spaced = text.replace("/", " / ").replace(";", " ; ")  # forces the full grammar
            self.assertEqual(parse_via(text), parse_via(spaced), text)
        for text in ("SIP/2.0/UDP h;branch", "SIP/2.0/UDP h;rport=70000", "SIP/2.0/UDP h;received=h.com",
                     "SIP/2.0/UDP h;ttl=256", "SIP/2.0/UDP h:65536;branch=z9hG4bK1"):
            self.assertRaises(SIPParseError, parse_via, text)


class StreamFramerTests(SynchronousTestCase):
    def test_one_message(self) -> None:
        f = StreamFramer()
        self.assertEqual(f.feed(INVITE), [INVITE])
        self.assertEqual(f.buffered, 0)

    def test_split_across_many_chunks(self) -> None:
        for size in (1, 2, 3, 7, 50):
            f = StreamFramer()
            out: list[bytes | str] = []
            stream = INVITE + REGISTER
            for i in range(0, len(stream), size):
                out.extend(f.feed(stream[i:i + size]))
            self.assertEqual(out, [INVITE, REGISTER], size)
            self.assertEqual(f.buffered, 0)

    def test_split_at_every_offset(self) -> None:
        for i in range(len(INVITE) + 1):
            f = StreamFramer()
            self.assertEqual(f.feed(INVITE[:i]) + f.feed(INVITE[i:]), [INVITE], i)

    def test_two_messages_in_one_chunk(self) -> None:
        f = StreamFramer()
        self.assertEqual(f.feed(REGISTER + INVITE + REGISTER[:10]), [REGISTER, INVITE])
        self.assertEqual(f.buffered, 10)
        self.assertEqual(f.feed(REGISTER[10:]), [REGISTER])

    def test_ping_and_pong(self) -> None:
        f = StreamFramer()
        self.assertEqual(f.feed(b"\r\n\r\n"), ["ping"])
        self.assertEqual(f.feed(b"\r\n"), [])
        self.assertEqual(f.feed(b"\r\n"), ["ping"])
        self.assertEqual(f.feed(b"\r\n" + INVITE), [INVITE])  # a pong before a message is skipped
        self.assertEqual(f.feed(b"\r\n\r\n\r\n\r\n" + REGISTER), ["ping", "ping", REGISTER])
        self.assertEqual(f.feed(b"\r\n"), [])
        self.assertEqual(f.buffered, 2)

    def test_missing_content_length(self) -> None:
        f = StreamFramer()
        err = self.assertRaises(SIPParseError, f.feed, replace(INVITE, b"Content-Length: 4\r\n", b""))
        self.assertEqual(err.status, 400)

    def test_compact_and_spaced_content_length(self) -> None:
        data = replace(INVITE, b"Content-Length: 4", b"l  :  4")
        self.assertEqual(StreamFramer().feed(data), [data])
        data = replace(INVITE, b"Content-Length: 4", b"Content-Length: 4\r\nl: 4")
        self.assertEqual(StreamFramer().feed(data), [data])  # framed; parse_message rejects the duplicate

    def test_bad_content_length(self) -> None:
        for value in (b"-999", b"abc", b"", b"1234567890", b"4\r\nContent-Length: 5"):
            f = StreamFramer()
            self.assertRaises(SIPParseError, f.feed, replace(INVITE, b"Content-Length: 4", b"Content-Length: " + value))

    def test_oversize(self) -> None:
        f = StreamFramer(max_size=1000)
        self.assertEqual(f.feed(b"INVITE sip:a@b SIP/2.0\r\n" + b"X: y\r\n" * 100), [])
        err = self.assertRaises(SIPParseError, f.feed, b"X: y\r\n" * 100)
        self.assertEqual(err.status, 513)
        f = StreamFramer(max_size=1000)
        err = self.assertRaises(SIPParseError, f.feed, replace(INVITE, b"Content-Length: 4", b"Content-Length: 2000"))
        self.assertEqual(err.status, 513)

    def test_waits_for_body(self) -> None:
        data = replace(INVITE, b"Content-Length: 4", b"Content-Length: 10")
        f = StreamFramer()
        self.assertEqual(f.feed(data), [])
        self.assertEqual(f.feed(b"12345"), [])
        self.assertEqual(f.feed(b"6ext"), [data + b"123456"])
        self.assertEqual(f.buffered, 3)

    def test_bare_lf_head(self) -> None:
        data = INVITE.replace(b"\r\n", b"\n")
        self.assertEqual(StreamFramer().feed(data + data), [data, data])
        m = parse_message(data, datagram=False)
        self.assertEqual(m.body, b"v=0\n")

    def test_frames_parse_as_stream_messages(self) -> None:
        for item in StreamFramer().feed(INVITE + RESPONSE + REGISTER):
            assert isinstance(item, bytes)
            parse_message(item, datagram=False)


class StreamFramerErrorAfterFramesTests(SynchronousTestCase):
    def test_good_frames_before_a_bad_one_are_delivered_first(self) -> None:
        from minisip.sip.errors import SIPParseError
        from minisip.sip.message import StreamFramer
        good = (b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\n"
                b"To: <sip:a@b>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n")
        framer = StreamFramer()
        self.assertEqual(framer.feed(good + b"GARBAGE\r\n\r\n"), [good])
        self.assertRaises(SIPParseError, framer.feed, b"")


class HeaderInjectionTests(SynchronousTestCase):
    """Issue 8 point 1: whatever builds a header, CR, LF and NUL never reach the wire."""

    BAD = ("x\r\nSubject: pwned", "x\nSubject: pwned", "x\rSubject: pwned", "x\x00y")

    def request(self) -> Request:
        msg = parse_message(
            b"OPTIONS sip:a@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
            b"From: <sip:a@example.com>;tag=1\r\nTo: <sip:b@example.com>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n\r\n")
        assert isinstance(msg, Request)
        return msg

    def test_set_and_add_refuse(self) -> None:
        req = self.request()
        before = req.to_bytes()
        for value in self.BAD:
            self.assertRaises(UnsafeHeaderError, req.set, "Subject", value)
            self.assertRaises(UnsafeHeaderError, req.add, "Contact", value)
            self.assertRaises(UnsafeHeaderError, req.add, "Route", value, first=True)
        for name in ("X-A\r\nB", "X A", "X:A", "", "X\x00"):
            self.assertRaises(UnsafeHeaderError, req.set, name, "v")
        self.assertEqual(req.to_bytes(), before)
        self.assertIsInstance(UnsafeHeaderError("x"), ValueError)

    def test_constructors_refuse(self) -> None:
        for value in self.BAD:
            self.assertRaises(UnsafeHeaderError, Request, "INVITE", SipURI("example.com"),
                              [("from", "From", value)])
            self.assertRaises(UnsafeHeaderError, Response, 200, "OK", [("to", "To", value)])
            self.assertRaises(UnsafeHeaderError, Response, 200, value)
        self.assertRaises(UnsafeHeaderError, Request, "INVITE\r\nX:", SipURI("example.com"))

    def test_make_response_refuses_unsafe_extras(self) -> None:
        req = self.request()
        for value in self.BAD:
            self.assertRaises(UnsafeHeaderError, make_response, req, 400, extra=[("Warning", value)])
            self.assertRaises(UnsafeHeaderError, make_response, req, 400, value)
        self.assertRaises(UnsafeHeaderError, make_response, req, 400, to_tag="t\r\nX: y")

    def test_to_bytes_refuses_values_changed_in_place(self) -> None:
        req = self.request()
        req.headers.append(("subject", "Subject", "hi\r\nContact: <sip:evil@198.51.100.1>"))
        self.assertRaises(UnsafeHeaderError, req.to_bytes)
        req = self.request()
        req.uri = SipURI("example.com\r\nX: y")
        self.assertRaises(UnsafeHeaderError, req.to_bytes)

    def test_received_nul_in_a_quoted_pair_is_answered(self) -> None:
        """RFC 4475 intmeth has a NUL in a quoted display name: copied back as received, it is fine."""
        msg = parse_message(
            b"OPTIONS sip:a@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
            b"From: <sip:a@example.com>;tag=1\r\nTo: \"NUL:\\\x00\" <sip:b@example.com>\r\nCall-ID: x\r\n"
            b"CSeq: 1 OPTIONS\r\n\r\n")
        assert isinstance(msg, Request)
        self.assertIn(b"\x00", make_response(msg, 200, to_tag="t").to_bytes())

    def test_partial_request_with_bare_cr_answered_without_it(self) -> None:
        data = (b"OPTIONS sip:a@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
                b"From: <sip:a@example.com>;tag=1\r\nTo: <sip:b@example.com>\rSubject: x\r\nCall-ID: x\r\n"
                b"CSeq: 1 OPTIONS\r\n\r\n")
        with self.assertRaises(SIPParseError) as ctx:
            parse_message(data)
        partial = ctx.exception.partial
        assert partial is not None
        wire = make_response(partial, 400, to_tag="t").to_bytes()
        self.assertEqual(wire.count(b"\r"), wire.count(b"\r\n"))
