"""Deterministic fuzzing of the parser and the stream framer over the conformance corpus.

Whatever the bytes, ``parse_message`` and ``StreamFramer.feed`` raise nothing but SIPParseError; a
message that parses is fully usable (every parsed view, serialization, precheck); a rejected request's
``partial`` can always be answered. Seeds are fixed, so a failure reproduces.
"""

from __future__ import annotations

import random
import re
import sys

from twisted.trial.unittest import SynchronousTestCase

from minisip.sip.errors import SIPParseError
from minisip.sip.message import Request, Response, StreamFramer, make_response, parse_message
from minisip.sip.validate import precheck_request
from tests.corpus import corpus_files, read_corpus
from tests.sip.test_conformance import ACCEPTED, ALLOWED, SUPPORTED

_TOKENS_RE = re.compile(rb"[A-Za-z0-9.]+|[^A-Za-z0-9.]")
_SPECIALS = [
    b"", b" ", b"\t", b"\r", b"\n", b"\r\n", b"\r\n ", b"\x00", b"\xff", b"\xd9\xa3", b"\xc2\xb2", b"\xc2\x85",
    b"\xe2\x80\xa8", b":", b";", b",", b"=", b"?", b"@", b"@@", b"%", b"%zz", b"%00", b"\"", b"\\", b"<", b">",
    b"[", b"]", b"[::1]", b"[1:2:3:4:5:6:7:8:9]", b":::", b"*", b"/", b"sip:", b"tel:", b"-1", b"1e5",
    b"99999999999999999999999", b"9" * 5000, b"z9hG4bK", b"SIP/2.0", b"Content-Length: 5",
]


class FuzzTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.corpus = [read_corpus(name) for name in corpus_files() if not name.endswith(".md")]

    def check(self, data: bytes, datagram: bool = True) -> None:
        """Parse ``data``: a SIPParseError from ``parse_message`` itself is a clean rejection; anything
        raised after a successful parse (a parsed view, the re-parse of the wire form...) fails the test."""
        try:
            self._exercise(data, datagram)
        except self.failureException:
            raise
        except Exception as e:  # noqa: BLE001 - the point is to catch anything else
            self.fail(f"{type(e).__name__}: {e} while exercising {data[:2000]!r}")

    def _exercise(self, data: bytes, datagram: bool) -> None:
        try:
            msg = parse_message(data, datagram=datagram)
        except SIPParseError as e:
            self.assertIn(e.status, (None, 400, 505, 513))
            if e.partial is not None:
                make_response(e.partial, e.status or 400, to_tag="t").to_bytes()
            return
        for view in (lambda: msg.vias, lambda: msg.top_via, lambda: msg.from_, lambda: msg.to,
                     lambda: msg.cseq, msg.contacts, msg.routes, msg.record_routes, lambda: msg.content_type,
                     lambda: msg.max_forwards, lambda: msg.from_tag, lambda: msg.to_tag, lambda: msg.star_contact):
            view()
        try:
            _ = msg.expires
        except SIPParseError:
            pass
        wire = msg.to_bytes()
        self.assertEqual(parse_message(wire).to_bytes(), wire)
        if isinstance(msg, Request):
            result = precheck_request(msg, allowed_methods=ALLOWED, supported=SUPPORTED, accepted_types=ACCEPTED)
            if result is not None:
                make_response(msg, result[0], result[1], to_tag="t", extra=result[2]).to_bytes()

    def test_check_fails_on_error_after_parse(self) -> None:
        """A SIPParseError raised once the message has parsed (here: its own wire form does not re-parse)
        is a parser bug, so ``check`` must fail instead of taking it for a clean rejection."""
        calls: list[bytes] = []
        real_parse = parse_message

        def reparse_fails(data: bytes, datagram: bool = True) -> Request | Response:
            calls.append(data)
            if len(calls) > 1:
                raise SIPParseError("serialized form does not parse")
            return real_parse(data, datagram=datagram)

        self.patch(sys.modules[__name__], "parse_message", reparse_fails)
        self.assertRaises(self.failureException, self.check, read_corpus("rfc4475/lwsdisp.dat"))
        self.assertEqual(len(calls), 2)

    def feed(self, framer: StreamFramer, *chunks: bytes) -> list[bytes | str] | None:
        """All the items framed from ``chunks``, then "error" when the framer gave up (SIPParseError)."""
        out: list[bytes | str] = []
        try:
            for chunk in chunks:
                out.extend(framer.feed(chunk))
            out.extend(framer.feed(b""))  # surfaces an error found after complete frames
        except SIPParseError:
            return out + ["error"]
        except Exception as e:  # noqa: BLE001
            self.fail(f"{type(e).__name__}: {e} while framing {b''.join(chunks)[:2000]!r}")
        return out

    def test_truncations(self) -> None:
        """Every corpus message cut at every offset, as a datagram."""
        for data in self.corpus:
            for i in range(len(data)):
                self.check(data[:i])

    def test_stream_split_everywhere(self) -> None:
        """Every corpus message fed to a framer in two pieces, split at every offset: same items as one piece."""
        for data in self.corpus:
            whole = self.feed(StreamFramer(), data)
            for i in range(len(data)):
                self.assertEqual(self.feed(StreamFramer(), data[:i], data[i:]), whole)
            for item in whole or ():
                if isinstance(item, bytes):
                    self.check(item, datagram=False)

    def test_bit_flips(self) -> None:
        rnd = random.Random(4475)
        for data in self.corpus:
            for _ in range(25):
                b = bytearray(data)
                for _ in range(rnd.randint(1, 3)):
                    i = rnd.randrange(len(b))
                    b[i] ^= 1 << rnd.randrange(8)
                self.check(bytes(b))
                self.check(bytes(b), datagram=False)

    def test_token_substitutions(self) -> None:
        """Grammar-aware mutation: one token or delimiter replaced by something nasty."""
        rnd = random.Random(5118)
        for data in self.corpus:
            head = data[:data.find(b"\r\n\r\n") + 4] if b"\r\n\r\n" in data else data
            spans = [m.span() for m in _TOKENS_RE.finditer(head)]
            for _ in range(25):
                start, end = rnd.choice(spans)
                self.check(data[:start] + rnd.choice(_SPECIALS) + data[end:])

    def test_random_bytes(self) -> None:
        rnd = random.Random(3261)
        alphabet = b"SIP/2.0 INVITEsip:@<>;=,\"\\%[]:\r\n\t 0123456789abcdefVia:From:To:CSeq:Call-ID:l:"
        for _ in range(250):
            n = rnd.randrange(300)
            self.check(bytes(rnd.randrange(256) for _ in range(n)))
            self.check(bytes(rnd.choice(alphabet) for _ in range(n)))
            framer = StreamFramer(max_size=2000)
            self.feed(framer, *(bytes(rnd.choice(alphabet) for _ in range(rnd.randrange(100))) for _ in range(10)))

    def test_random_headers(self) -> None:
        """Valid start line and mandatory headers, then random header lines."""
        rnd = random.Random(7)
        head = (b"OPTIONS sip:a@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
                b"From: <sip:a@example.com>;tag=1\r\nTo: <sip:b@example.com>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n")
        names = [b"Via", b"v", b"From", b"To", b"Contact", b"m", b"Route", b"Record-Route", b"CSeq", b"Call-ID",
                 b"Content-Length", b"l", b"Content-Type", b"Max-Forwards", b"Expires", b"Accept", b"Require",
                 b"X-Y", b" ", b""]
        for _ in range(800):
            lines = []
            for _ in range(rnd.randint(1, 3)):
                value = b"".join(rnd.choice(_SPECIALS[:40] + [b"a", b"sip:x@y", b"1", b"0"])
                                 for _ in range(rnd.randint(0, 5)))
                lines.append(rnd.choice(names) + rnd.choice([b":", b" :", b""]) + value + b"\r\n")
            self.check(head + b"".join(lines) + b"\r\n")

    def test_framer_random_chunks(self) -> None:
        """A stream of valid messages cut into random chunks gives back exactly those messages."""
        rnd = random.Random(18)
        messages = []
        for data in self.corpus:
            try:
                messages.append(parse_message(data).to_bytes())
            except SIPParseError:
                continue
        stream = b"\r\n\r\n".join(messages)
        expected: list[bytes | str] = []
        for i, m in enumerate(messages):
            expected.append(m)
            if i < len(messages) - 1:
                expected.append("ping")
        for _ in range(10):
            chunks = []
            i = 0
            while i < len(stream):
                n = rnd.choice((1, 2, 3, 10, 100, 1000, 5000))
                chunks.append(stream[i:i + n])
                i += n
            framer = StreamFramer()
            self.assertEqual(self.feed(framer, *chunks), expected)
            self.assertEqual(framer.buffered, 0)
