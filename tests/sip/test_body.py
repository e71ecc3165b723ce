"""Tests for minisip.sip.body: the SDP found in application/sdp and multipart bodies (RFC 5621, RFC 2046),
replaced without touching any other byte, and malformed multiparts refused with MultipartError."""

from __future__ import annotations

import random

from twisted.trial.unittest import SynchronousTestCase

from minisip.sip.body import (
    BodyError,
    MultipartError,
    extract_sdp,
    parse_content_type,
    parse_multipart,
    replace_sdp,
)
from minisip.sip.sdp import parse_sdp


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode()


SDP = crlf("v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\nm=audio 4000 RTP/AVP 0\na=rtpmap:0 PCMU/8000\n")
NEW_SDP = SDP.replace(b"192.0.2.1", b"203.0.113.5").replace(b"4000", b"50000")
# An ISUP IAM (RFC 3204) with bytes that look like line ends and dashes.
ISUP = bytes.fromhex("0100490000030200070410003363214300000d0a2d2d0306")

# SIP-I/SIP-T INVITE body (RFC 3204 example shape): SDP, then ISUP with its own headers.
SIP_T_TYPE = "multipart/mixed; boundary=unique-boundary-1"
SIP_T = (crlf("--unique-boundary-1\nContent-Type: application/sdp\n\n") + SDP
         + crlf("\n--unique-boundary-1\nContent-Type: application/ISUP; version=nxv3; base=etsi121\n"
                "Content-Disposition: signal; handling=optional\n\n") + ISUP
         + crlf("\n--unique-boundary-1--\n"))

# SDP with an XML part, quoted boundary, preamble and epilogue; XML first.
XML = crlf('<?xml version="1.0"?>\n<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists"/>\n')
XML_TYPE = 'Multipart/Mixed;boundary="boundary 42:x";charset=utf-8'
XML_BODY = (crlf("This is a preamble.\n--boundary 42:x\nContent-Type: application/resource-lists+xml\n"
                 "Content-Disposition: recipient-list\n\n") + XML
            + crlf("\n--boundary 42:x\nContent-Type: application/sdp\nContent-ID: <sdp@example.com>\n\n") + SDP
            + crlf("\n--boundary 42:x--\nThis is the epilogue.\n"))

# Nested: multipart/mixed holding a multipart/alternative that holds the SDP (bare LF line ends).
NESTED_TYPE = "multipart/mixed; boundary=outer"
NESTED = (b"--outer\nContent-Type: text/plain\n\nhello\n--outer\n"
          b"Content-Type: multipart/alternative;\n boundary=inner\n\n"
          b"--inner\nContent-Type: text/plain\n\nno sdp here\n"
          b"--inner\nContent-Type: application/sdp\n\n" + SDP + b"\n--inner--\n"
          b"\n--outer--\n")


class ContentTypeTests(SynchronousTestCase):
    def test_parse(self) -> None:
        for value, expected in [
            ("application/sdp", ("application/sdp", {})),
            (" Application/SDP ; charset=UTF-8", ("application/sdp", {"charset": "UTF-8"})),
            (SIP_T_TYPE, ("multipart/mixed", {"boundary": "unique-boundary-1"})),
            (XML_TYPE, ("multipart/mixed", {"boundary": "boundary 42:x", "charset": "utf-8"})),
            ('multipart/mixed; boundary="a\\"b;c"; x', ("multipart/mixed", {"boundary": 'a"b;c', "x": ""})),
            ("multipart/mixed;Boundary=one;boundary=two;flag", ("multipart/mixed", {"boundary": "one", "flag": ""})),
            ("text/plain;;a = b ;", ("text/plain", {"a": "b"})),
        ]:
            self.assertEqual(parse_content_type(value), expected, value)

    def test_unterminated_quote(self) -> None:
        self.assertRaises(BodyError, parse_content_type, 'multipart/mixed; boundary="abc')


class ExtractTests(SynchronousTestCase):
    def test_extract(self) -> None:
        for ctype, body, expected in [
            ("application/sdp", SDP, SDP),
            ("application/SDP; charset=utf-8", SDP, SDP),
            ("application/sdp", b"", None),
            (None, SDP, None),
            ("text/plain", SDP, None),
            ("application/isup", ISUP, None),
            (SIP_T_TYPE, SIP_T, SDP),
            (XML_TYPE, XML_BODY, SDP),
            (NESTED_TYPE, NESTED, SDP),
            ("multipart/alternative; boundary=b", b"--b\r\n\r\nplain text\r\n--b--", None),  # no headers: text/plain
            ("multipart/mixed; boundary=b", b"--b\r\nContent-Type: application/sdp\r\n\r\n--b--\r\n", None),  # empty
            ("multipart/mixed; boundary=b", b"--b\r\nc: application/sdp\r\n\r\n" + SDP + b"\r\n--b--", SDP),
        ]:
            self.assertEqual(extract_sdp(ctype, body), expected, (ctype, body[:60]))
        self.assertEqual(parse_sdp(extract_sdp(SIP_T_TYPE, SIP_T) or b"").media[0].port, 4000)

    def test_parts(self) -> None:
        mp = parse_multipart(XML_TYPE, XML_BODY)
        self.assertEqual(mp.preamble, b"This is a preamble.\r\n")
        self.assertEqual(mp.epilogue, b"This is the epilogue.\r\n")
        self.assertEqual([p.media_type for p in mp.parts], ["application/resource-lists+xml", "application/sdp"])
        self.assertEqual([p.content for p in mp.parts], [XML, SDP])
        self.assertEqual(mp.parts[1].header("content-id"), "<sdp@example.com>")
        self.assertIsNone(mp.parts[1].header("content-disposition"))
        for part in mp.parts:
            self.assertEqual(XML_BODY[part.start:part.end], part.content)
        isup = parse_multipart(SIP_T_TYPE, SIP_T).parts[1]
        self.assertEqual((isup.content, isup.content_type, isup.header("Content-Disposition")),
                         (ISUP, "application/ISUP; version=nxv3; base=etsi121", "signal; handling=optional"))
        nested = parse_multipart(NESTED_TYPE, NESTED).parts[1]
        self.assertEqual(nested.content_type, "multipart/alternative; boundary=inner")  # folded header joined

    def test_delimiter_rules(self) -> None:
        """A delimiter starts a line; a longer boundary or text after it is content; padding is allowed."""
        body = (b"--b\r\nContent-Type: application/sdp\r\n\r\nv=0\r\nx=--b\r\n--bb\r\n--b-x\r\n"
                b"--b \t\r\nContent-Type: text/plain\r\n\r\nlast\r\n--b--")
        mp = parse_multipart("multipart/mixed; boundary=b", body)
        self.assertEqual([p.content for p in mp.parts], [b"v=0\r\nx=--b\r\n--bb\r\n--b-x", b"last"])
        self.assertEqual(mp.epilogue, b"")
        headers_only = parse_multipart("multipart/mixed; boundary=b", b"--b\r\nContent-Type: text/plain\r\n--b--\r\n")
        self.assertEqual((headers_only.parts[0].media_type, headers_only.parts[0].content), ("text/plain", b""))
        empty = parse_multipart("multipart/mixed; boundary=b", b"--b\r\n--b--")
        self.assertEqual((empty.parts[0].headers, empty.parts[0].content), ((), b""))

    def test_errors(self) -> None:
        for ctype, body, message in [
            ("multipart/mixed", SIP_T, "without a boundary parameter"),
            ("multipart/mixed; boundary=", SIP_T, "without a boundary parameter"),
            ("multipart/mixed; boundary=" + "x" * 71, SIP_T, "bad multipart boundary"),
            ("multipart/mixed; boundary=caf\u00e9\u20ac", SIP_T, "not ASCII"),
            ("multipart/mixed; boundary=other", SIP_T, "without a delimiter line --other"),
            ("multipart/mixed; boundary=b", b"--b--\r\n", "without any part"),
            (SIP_T_TYPE, SIP_T[:-len("--\r\n")], "without its close delimiter"),
            (SIP_T_TYPE, SIP_T.replace(b"\r\n--unique-boundary-1--\r\n", b""), "without its close delimiter"),
            ("multipart/mixed; boundary=b", b"--b\r\nno colon here\r\n\r\nbody\r\n--b--", "part 1: bad header line"),
            ("multipart/mixed; boundary=b", b"--b\r\n\r\nx\r\n--b\r\n: v\r\n\r\ny\r\n--b--", "part 2: bad header line"),
            ('multipart/mixed; boundary="b', SIP_T, "unterminated quoted string"),
        ]:
            with self.assertRaises(MultipartError if "quoted" not in message else BodyError, msg=message) as cm:
                extract_sdp(ctype, body)
            self.assertIn(message, str(cm.exception))
        self.assertTrue(issubclass(MultipartError, BodyError) and issubclass(BodyError, ValueError))
        self.assertRaises(MultipartError, parse_multipart, "application/sdp", SDP)


class ReplaceTests(SynchronousTestCase):
    def test_replace_sdp_body(self) -> None:
        self.assertEqual(replace_sdp("application/sdp", SDP, NEW_SDP), NEW_SDP)
        self.assertEqual(replace_sdp("application/sdp", b"", NEW_SDP), NEW_SDP)

    def test_replace_keeps_every_other_byte(self) -> None:
        for ctype, body in [(SIP_T_TYPE, SIP_T), (XML_TYPE, XML_BODY), (NESTED_TYPE, NESTED)]:
            new = replace_sdp(ctype, body, NEW_SDP)
            self.assertEqual(new, body.replace(SDP, NEW_SDP), ctype)
            self.assertEqual(extract_sdp(ctype, new), NEW_SDP)
            self.assertEqual(replace_sdp(ctype, new, SDP), body)
        mp = parse_multipart(SIP_T_TYPE, replace_sdp(SIP_T_TYPE, SIP_T, NEW_SDP))
        self.assertEqual(mp.parts[1].content, ISUP)

    def test_replace_errors(self) -> None:
        self.assertRaises(BodyError, replace_sdp, None, SDP, NEW_SDP)
        self.assertRaises(BodyError, replace_sdp, "text/plain", b"hi", NEW_SDP)
        with self.assertRaises(BodyError) as cm:
            replace_sdp("multipart/mixed; boundary=b", b"--b\r\n\r\nx\r\n--b--", NEW_SDP)
        self.assertIn("no application/sdp", str(cm.exception))
        with self.assertRaises(MultipartError) as cm2:
            replace_sdp(SIP_T_TYPE, SIP_T, NEW_SDP + b"--unique-boundary-1\r\n")
        self.assertIn("contains the multipart boundary", str(cm2.exception))
        self.assertRaises(MultipartError, replace_sdp, "multipart/mixed", SIP_T, NEW_SDP)


class FuzzTests(SynchronousTestCase):
    """Whatever the bytes and Content-Type: a result or a BodyError, and a replaced body still parses."""

    def exercise(self, ctype: str, body: bytes) -> None:
        try:
            found = extract_sdp(ctype, body)
            if found is not None:
                new = replace_sdp(ctype, body, NEW_SDP)
                self.assertEqual(extract_sdp(ctype, new), NEW_SDP)
        except BodyError:
            pass
        except Exception as e:  # noqa: BLE001 - the point is to catch anything else
            self.fail(f"{type(e).__name__}: {e} for {ctype!r} {body[:300]!r}")

    def test_mutations(self) -> None:
        rnd = random.Random(5621)
        specials = [b"", b"\r\n", b"\n", b"\r", b"--", b"--unique-boundary-1", b"--boundary 42:x--", b"--outer",
                    b"--inner--", b":", b"\r\n\r\n", b"\x00", b"\xff", b" "]
        for ctype, body in [(SIP_T_TYPE, SIP_T), (XML_TYPE, XML_BODY), (NESTED_TYPE, NESTED)]:
            for i in range(0, len(body), 7):
                self.exercise(ctype, body[:i])
            for _ in range(300):
                i = rnd.randrange(len(body))
                j = min(len(body), i + rnd.randrange(12))
                self.exercise(ctype, body[:i] + rnd.choice(specials) + body[j:])
            for _ in range(100):
                i = rnd.randrange(len(ctype) + 1)
                self.exercise(ctype[:i] + rnd.choice(['"', ";", "=", "\\", "", " ", "\u00e9"]) + ctype[i + 1:], body)
