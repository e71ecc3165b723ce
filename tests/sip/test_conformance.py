"""The RFC 4475 and RFC 5118 torture messages, one table entry (and one test) per corpus file.

The corpus is in ``tests/data/conformance/`` (read through ``tests.corpus``). Each entry says what the parser must do with the message
("parse", or the status of the SIPParseError it raises: 400, 505, None for drop) and, for requests
that parse, what ``precheck_request`` answers (None: processed normally).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from twisted.trial.unittest import SynchronousTestCase

from minisip.sip.errors import SIPParseError
from minisip.sip.message import Request, Response, StreamFramer, make_response, parse_message
from minisip.sip.uri import AbsoluteURI, SipURI
from minisip.sip.validate import precheck_request
from tests.corpus import corpus_dir, corpus_files, read_corpus

PARSE = "parse"

ALLOWED = frozenset({"INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "REGISTER", "INFO", "UPDATE", "PRACK",
                     "REFER", "NOTIFY", "SUBSCRIBE", "MESSAGE"})
SUPPORTED = frozenset({"replaces", "timer", "path", "outbound", "100rel"})
ACCEPTED = frozenset({"application/sdp", "application/dtmf-relay", "message/sipfrag", "text/plain",
                      "multipart/mixed"})




Check = Callable[[SynchronousTestCase, "Request | Response"], None]


@dataclass(frozen=True)
class Case:
    parser: str | int | None     # PARSE, or the status of the SIPParseError (None: drop silently)
    precheck: int | None = None  # the status precheck_request answers a parsed request with (None: go on)
    check: Check | None = None   # further assertions on the parsed message
    headers: tuple[str, ...] = ()  # extra header names the precheck rejection must carry


def _sip(t: SynchronousTestCase, uri: object) -> SipURI:
    t.assertIsInstance(uri, SipURI)
    assert isinstance(uri, SipURI)
    return uri


def _req(t: SynchronousTestCase, m: Request | Response) -> Request:
    t.assertIsInstance(m, Request)
    assert isinstance(m, Request)
    return m


def check_wsinv(t: SynchronousTestCase, m: Request | Response) -> None:
    req = _req(t, m)
    t.assertEqual(_sip(t, req.uri).params, {"unknownparam": None})
    t.assertEqual(req.to_tag, "1918181833n")
    t.assertEqual(req.from_tag, "98asjd8")
    t.assertEqual(req.from_.display_name, 'J Rosenberg \\"')
    t.assertEqual(req.max_forwards, 68)
    t.assertEqual(req.cseq, (9, "INVITE"))
    t.assertEqual([(v.transport, v.host, v.branch) for v in req.vias], [
        ("UDP", "192.0.2.2", "390skdjuw"), ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239")])
    t.assertEqual(req.get("subject"), "")
    t.assertEqual(req.get("newfangledheader"), "newfangled value continued newfangled value")
    t.assertEqual(req.get("UnknownHeaderWithUnusualValue"), ";;,,;;,;")
    (contact,) = req.contacts()
    t.assertEqual(contact.display_name, 'Quoted string ""')
    t.assertEqual(contact.params, {"newparam": "newvalue", "secondparam": None, "q": "0.33"})
    t.assertEqual(_sip(t, req.routes()[0].uri).params,
                  {"lr": None, "unknownwith": "value", "unknown-no-value": None})
    t.assertEqual(len(req.body), 150)


def check_intmeth(t: SynchronousTestCase, m: Request | Response) -> None:
    req = _req(t, m)
    t.assertEqual(req.method, "!interesting-Method0123456789_*+`.%indeed'~")
    uri = _sip(t, req.uri)
    t.assertEqual(uri.user, "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
    t.assertEqual(uri.password, "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)")
    t.assertEqual(uri.host, "example.com")
    t.assertEqual(_sip(t, req.to.uri).user, "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
    t.assertEqual(req.to.display_name, "BEL:\x07 NUL:\x00 DEL:\x7f")
    t.assertEqual(req.from_.display, "token1~` token2'+_ token3*%!.-")
    t.assertEqual(req.from_tag, "_token~1'+`*%!-.")
    t.assertEqual(req.from_.params["fromparam''~+*_!.-%"],
                  '"\u0440\u0430\u0431\u043e\u0442\u0430\u044e\u0449\u0438\u0439"')
    t.assertEqual(req.call_id, "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{")
    t.assertEqual(req.cseq, (139122385, req.method))
    t.assertEqual(req.top_via.branch, "z9hG4bK-.!%66*_+`'~")
    t.assertEqual(req.get("extensionHeader-!.%*+_`'~"), "\ufeff\u5927\u505c\u96fb")


def check_esc01(t: SynchronousTestCase, m: Request | Response) -> None:
    req = _req(t, m)
    uri = _sip(t, req.uri)
    t.assertEqual((uri.scheme, uri.user, uri.host), ("sip", "sips%3Auser%40example.com", "example.net"))
    t.assertEqual(_sip(t, req.to.uri).user, "%75se%72")
    t.assertEqual(_sip(t, req.from_.uri).user, "I%20have%20spaces")
    contact = _sip(t, req.contacts()[0].uri)
    t.assertEqual(contact.user, "cal%6Cer")
    t.assertEqual(contact.params, {"%6c%72": None, "n%61me": "v%61lue%25%34%31"})
    t.assertEqual(req.content_type, "application/sdp")


def check_esc02(t: SynchronousTestCase, m: Request | Response) -> None:
    req = _req(t, m)
    t.assertEqual(req.method, "RE%47IST%45R")
    t.assertEqual(req.to.display, '"%Z%45"')
    t.assertEqual(req.top_via.branch, "z9hG4bK209%fzsnel234")
    t.assertEqual([_sip(t, c.uri).user for c in req.contacts()], ["alias1", "alias3"])
    t.assertEqual(req.get("C%6Fntact"), "<sip:alias2@host2.example.com>")


def check_escnull(t: SynchronousTestCase, m: Request | Response) -> None:
    req = _req(t, m)
    t.assertEqual(_sip(t, req.to.uri).user, "null-%00-null")
    t.assertEqual(_sip(t, req.from_.uri).user, "null-%00-null")
    t.assertEqual([_sip(t, c.uri).user for c in req.contacts()], ["%00", "%00%00"])


def check_dblreq(t: SynchronousTestCase, m: Request | Response) -> None:
    req = _req(t, m)
    t.assertEqual(req.method, "REGISTER")
    t.assertEqual(req.call_id, "dblreq.0ha0isndaksdj99sdfafnl3lk233412")
    t.assertEqual(req.body, b"")


def check_semiuri(t: SynchronousTestCase, m: Request | Response) -> None:
    uri = _sip(t, _req(t, m).uri)
    t.assertEqual((uri.user, uri.host, uri.params), ("user;par=u%40example.net", "example.com", {}))
    t.assertEqual(len(m.get_all("accept")), 6)


def check_transports(t: SynchronousTestCase, m: Request | Response) -> None:
    t.assertEqual([v.transport for v in m.vias], ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"])
    t.assertEqual(m.call_id, "transports.kijh4akdnaqjkwendsasfdj")


def check_mpart01(t: SynchronousTestCase, m: Request | Response) -> None:
    t.assertEqual(len(m.body), 553)
    t.assertIn(b"\x00", m.body)
    t.assertEqual(m.content_type, "multipart/mixed")
    t.assertEqual(m.get("identity")[:10], "r5mwreLuyD")  # type: ignore[index]


def check_unreason(t: SynchronousTestCase, m: Request | Response) -> None:
    assert isinstance(m, Response)
    t.assertEqual(m.status, 200)
    t.assertEqual(m.reason, "= 2**3 * 5**2 \u043d\u043e \u0441\u0442\u043e \u0434\u0435\u0432\u044f\u043d\u043e"
                            "\u0441\u0442\u043e \u0434\u0435\u0432\u044f\u0442\u044c - \u043f\u0440\u043e\u0441"
                            "\u0442\u043e\u0435")
    t.assertEqual(len(m.body), 154)


def check_noreason(t: SynchronousTestCase, m: Request | Response) -> None:
    assert isinstance(m, Response)
    t.assertEqual((m.status, m.reason), (100, ""))


def check_inv2543(t: SynchronousTestCase, m: Request | Response) -> None:
    req = _req(t, m)
    t.assertIsNone(req.top_via.branch)
    t.assertFalse(req.top_via.rfc3261_branch)
    t.assertIsNone(req.from_tag)
    t.assertIsNone(req.max_forwards)
    t.assertTrue(req.body.startswith(b"v=0"))
    t.assertEqual(_sip(t, req.to.uri).params, {})
    t.assertEqual(req.to.params, {"user": "phone"})


def check_longreq(t: SynchronousTestCase, m: Request | Response) -> None:
    req = _req(t, m)
    t.assertEqual(len(req.vias), 34)
    t.assertEqual(req.vias[-1].params["received"], "192.0.2.5")
    t.assertEqual(len(req.contacts()), 1)
    t.assertEqual(_sip(t, req.to.uri).port, 6000)
    t.assertEqual(len(req.body), 150)


def check_lwsdisp(t: SynchronousTestCase, m: Request | Response) -> None:
    t.assertEqual((m.from_.display, m.from_tag), ("caller", "323"))


def check_cparam01(t: SynchronousTestCase, m: Request | Response) -> None:
    (c,) = m.contacts()
    t.assertEqual((c.params, _sip(t, c.uri).params), ({"unknownparam": None}, {}))


def check_cparam02(t: SynchronousTestCase, m: Request | Response) -> None:
    (c,) = m.contacts()
    t.assertEqual((c.params, _sip(t, c.uri).params), ({}, {"unknownparam": None}))


def check_regescrt(t: SynchronousTestCase, m: Request | Response) -> None:
    (c,) = m.contacts()
    t.assertEqual(_sip(t, c.uri).headers, "Route=%3Csip:sip.example.com%3E")
    t.assertEqual(len(m.headers), 8)  # the escaped Route never becomes a header
    t.assertFalse(m.has("route"))


def check_unksm2(t: SynchronousTestCase, m: Request | Response) -> None:
    t.assertEqual(m.to.uri, AbsoluteURI("isbn", "2983792873"))
    t.assertEqual(m.from_.uri, AbsoluteURI("http", "//www.example.com"))
    t.assertEqual([c.uri for c in m.contacts()], [AbsoluteURI("name", "John_Smith")])


def check_unkscm(t: SynchronousTestCase, m: Request | Response) -> None:
    t.assertEqual(_req(t, m).uri, AbsoluteURI("nobodyknowsthisscheme", "totallyopaquecontent"))


def check_novelsc(t: SynchronousTestCase, m: Request | Response) -> None:
    t.assertEqual(_req(t, m).uri, AbsoluteURI("soap.beep", "//192.0.2.103:3002"))


def check_bcast(t: SynchronousTestCase, m: Request | Response) -> None:
    t.assertEqual([v.host for v in m.vias], ["192.0.2.198", "255.255.255.255"])


def check_baddate(t: SynchronousTestCase, m: Request | Response) -> None:
    t.assertEqual(m.get("date"), "Fri, 01 Jan 2010 16:00:00 EST")


def check_zeromf(t: SynchronousTestCase, m: Request | Response) -> None:
    t.assertEqual(m.max_forwards, 0)


def check_bext01(t: SynchronousTestCase, m: Request | Response) -> None:
    result = precheck_request(_req(t, m), allowed_methods=ALLOWED, supported=SUPPORTED, accepted_types=ACCEPTED)
    t.assertEqual(result, (420, "Bad Extension",
                           [("Unsupported", "nothingSupportsThis, nothingSupportsThisEither")]))


def check_esc02_allow(t: SynchronousTestCase, m: Request | Response) -> None:
    check_esc02(t, m)
    result = precheck_request(_req(t, m), allowed_methods=ALLOWED, supported=SUPPORTED, accepted_types=ACCEPTED)
    assert result is not None
    t.assertEqual(result[2], [("Allow", ", ".join(sorted(ALLOWED)))])


def host_port(host: str, port: int | None) -> Check:
    def check(t: SynchronousTestCase, m: Request | Response) -> None:
        uri = _sip(t, _req(t, m).uri)
        t.assertEqual((uri.host, uri.port), (host, port))
    return check


def via_hosts(*expected: tuple[str, int | None]) -> Check:
    def check(t: SynchronousTestCase, m: Request | Response) -> None:
        t.assertEqual([(v.host, v.port) for v in m.vias], list(expected))
    return check


def via_received(received: str) -> Check:
    def check(t: SynchronousTestCase, m: Request | Response) -> None:
        t.assertEqual(m.top_via.params["received"], received)
    return check


def check_ipv4_mapped(t: SynchronousTestCase, m: Request | Response) -> None:
    via_hosts(("[::ffff:192.0.2.10]", 19823), ("[::ffff:192.0.2.2]", None))(t, m)
    t.assertEqual(_sip(t, m.contacts()[0].uri).host, "[::ffff:192.0.2.2]")


CASES: dict[str, Case] = {
    # RFC 4475 3.1.1: valid messages
    "rfc4475/wsinv.dat": Case(PARSE, None, check_wsinv),
    "rfc4475/intmeth.dat": Case(PARSE, 501, check_intmeth, ("Allow",)),
    "rfc4475/esc01.dat": Case(PARSE, None, check_esc01),
    "rfc4475/escnull.dat": Case(PARSE, None, check_escnull),
    "rfc4475/esc02.dat": Case(PARSE, 501, check_esc02_allow, ("Allow",)),
    "rfc4475/lwsdisp.dat": Case(PARSE, None, check_lwsdisp),
    "rfc4475/longreq.dat": Case(PARSE, None, check_longreq),
    "rfc4475/dblreq.dat": Case(PARSE, None, check_dblreq),
    "rfc4475/semiuri.dat": Case(PARSE, None, check_semiuri),
    "rfc4475/transports.dat": Case(PARSE, None, check_transports),
    "rfc4475/mpart01.dat": Case(PARSE, None, check_mpart01),
    "rfc4475/unreason.dat": Case(PARSE, None, check_unreason),
    "rfc4475/noreason.dat": Case(PARSE, None, check_noreason),
    # RFC 4475 3.1.2: invalid messages
    "rfc4475/badinv01.dat": Case(400),
    "rfc4475/clerr.dat": Case(400),
    "rfc4475/scalar02.dat": Case(400),
    "rfc4475/scalarlg.dat": Case(None),
    "rfc4475/quotbal.dat": Case(400),
    "rfc4475/ltgtruri.dat": Case(400),
    "rfc4475/lwsruri.dat": Case(400),
    "rfc4475/lwsstart.dat": Case(400),
    "rfc4475/trws.dat": Case(400),
    "rfc4475/escruri.dat": Case(400),
    "rfc4475/baddate.dat": Case(PARSE, None, check_baddate),  # the bad Date is ignored
    "rfc4475/regbadct.dat": Case(400),
    "rfc4475/badaspec.dat": Case(400),
    "rfc4475/baddn.dat": Case(400),
    "rfc4475/badvers.dat": Case(505),
    "rfc4475/mismatch01.dat": Case(400),
    "rfc4475/mismatch02.dat": Case(400),
    "rfc4475/bigcode.dat": Case(None),
    "rfc4475/badbranch.dat": Case(400),
    # RFC 4475 3.2: transaction layer semantics
    "rfc4475/bcast.dat": Case(PARSE, None, check_bcast),
    "rfc4475/ncl.dat": Case(400),
    # RFC 4475 3.3: application layer semantics
    "rfc4475/insuf.dat": Case(400),
    "rfc4475/unkscm.dat": Case(PARSE, 416, check_unkscm),
    "rfc4475/novelsc.dat": Case(PARSE, 416, check_novelsc),
    "rfc4475/unksm2.dat": Case(PARSE, 400, check_unksm2),
    "rfc4475/bext01.dat": Case(PARSE, 420, check_bext01, ("Unsupported",)),
    "rfc4475/invut.dat": Case(PARSE, 415, None, ("Accept",)),
    "rfc4475/regaut01.dat": Case(PARSE, None),  # the 401 challenge comes from authentication, not here
    "rfc4475/multi01.dat": Case(400),
    "rfc4475/mcl01.dat": Case(400),
    "rfc4475/zeromf.dat": Case(PARSE, None, check_zeromf),  # OPTIONS is answered here: no 483
    "rfc4475/cparam01.dat": Case(PARSE, None, check_cparam01),
    "rfc4475/cparam02.dat": Case(PARSE, None, check_cparam02),
    "rfc4475/regescrt.dat": Case(PARSE, None, check_regescrt),
    "rfc4475/sdp01.dat": Case(PARSE, 406, None, ("Accept",)),
    "rfc4475/inv2543.dat": Case(PARSE, None, check_inv2543),
    # RFC 5118
    "rfc5118/ipv6-good": Case(PARSE, None, host_port("[2001:db8::10]", None)),
    "rfc5118/ipv6-bad": Case(400),
    "rfc5118/port-ambiguous": Case(PARSE, None, host_port("[2001:db8::10:5070]", None)),
    "rfc5118/port-unambiguous": Case(PARSE, None, host_port("[2001:db8::10]", 5070)),
    "rfc5118/ipv6-bug-abnf-3-colons": Case(PARSE, None, host_port("[2001:db8:::192.0.2.1]", None)),
    "rfc5118/ipv6-correct-abnf-2-colons": Case(PARSE, None, host_port("[2001:db8::192.0.2.1]", None)),
    "rfc5118/via-received-param-with-delim": Case(PARSE, None, via_received("[2001:db8::9:255]")),
    "rfc5118/via-received-param-no-delim": Case(PARSE, None, via_received("2001:db8::9:255")),
    "rfc5118/ipv4-mapped-ipv6": Case(PARSE, None, check_ipv4_mapped),
    "rfc5118/mult-ip-in-header": Case(PARSE, None, via_hosts(
        ("[2001:db8::9:1]", 6050), ("192.0.2.1", None), ("[2001:db8::9:255]", None))),
    "rfc5118/ipv6-in-sdp": Case(PARSE, None, host_port("[2001:db8::10]", None)),
    "rfc5118/mult-ip-in-sdp": Case(PARSE, None, host_port("[2001:db8::10]", None)),
}


class CorpusTableTests(SynchronousTestCase):
    def test_corpus_present(self) -> None:
        self.assertTrue(os.path.isdir(corpus_dir()),
                        f"conformance corpus not found at {corpus_dir()}")

    def test_table_covers_corpus(self) -> None:
        files = [f for f in corpus_files() if not f.endswith(".md")]
        self.assertEqual(sorted(CASES), sorted(files))
        self.assertEqual(len(files), 61)


class ConformanceTests(SynchronousTestCase):
    """One generated test per corpus file (see ``CASES``)."""

    def run_case(self, name: str) -> None:
        case = CASES[name]
        data = read_corpus(name)
        if case.parser != PARSE:
            self.check_rejected(data, case)
            return
        msg = parse_message(data)
        self.assertEqual(parse_message(msg.to_bytes()).to_bytes(), msg.to_bytes())
        if case.check is not None:
            case.check(self, msg)
        if isinstance(msg, Request):
            result = precheck_request(msg, allowed_methods=ALLOWED, supported=SUPPORTED, accepted_types=ACCEPTED)
            self.assertEqual(None if result is None else result[0], case.precheck, result)
            if result is not None:
                status, reason, extra = result
                self.assertTrue(reason)
                self.assertEqual([n for n, _ in extra], list(case.headers))
                response = make_response(msg, status, reason, to_tag="pbx", extra=extra)
                self.assertEqual(parse_message(response.to_bytes()).get_all("via"), msg.get_all("via"))
        else:
            self.assertIsNone(case.precheck)

    def check_rejected(self, data: bytes, case: Case) -> None:
        err = self.assertRaises(SIPParseError, parse_message, data)
        self.assertEqual(err.status, case.parser, err.reason)
        if err.status is None:
            self.assertIsNone(err.partial)
            return
        partial = err.partial
        assert partial is not None
        self.assertIsInstance(partial, Request)
        self.assertTrue(partial.headers)
        # The server answers from the partial request: every header it must copy comes through as sent.
        response = make_response(partial, err.status, to_tag="pbx")
        for key in ("via", "call-id", "cseq", "from"):
            self.assertEqual(response.get_all(key), partial.get_all(key))
        self.assertEqual(response.to_bytes().split(b" ", 2)[1], str(err.status).encode())


def _make_test(name: str) -> Callable[[ConformanceTests], None]:
    def test(self: ConformanceTests) -> None:
        self.run_case(name)
    test.__doc__ = f"{name}: {CASES[name].parser}, precheck {CASES[name].precheck}"
    return test


for _name in CASES:
    _attr = "test_" + _name.replace("/", "_").replace("-", "_").replace(".dat", "")
    setattr(ConformanceTests, _attr, _make_test(_name))


class StreamConformanceTests(SynchronousTestCase):
    def test_clerr_on_stream_waits(self) -> None:
        """RFC 4475 3.1.2.2: on a stream, a Content-Length beyond the bytes means: wait for more."""
        data = read_corpus("rfc4475/clerr.dat")
        framer = StreamFramer()
        self.assertEqual(framer.feed(data), [])
        self.assertEqual(framer.buffered, len(data))
        head = data.index(b"\r\n\r\n") + 4
        missing = 9999 - (len(data) - head)
        self.assertEqual(framer.feed(b"x" * (missing - 1)), [])
        (message,) = framer.feed(b"x")
        assert isinstance(message, bytes)
        self.assertEqual(len(parse_message(message, datagram=False).body), 9999)

    def test_dblreq_on_stream(self) -> None:
        data = read_corpus("rfc4475/dblreq.dat")
        framer = StreamFramer()
        out = framer.feed(data[:data.index(b"INVITE")])
        self.assertEqual(len(out), 1)
        self.assertEqual(framer.buffered, 2)  # a lone CRLF is kept until it is known not to be a ping

    def test_mcl01_on_stream(self) -> None:
        self.assertRaises(SIPParseError, StreamFramer().feed, read_corpus("rfc4475/mcl01.dat"))

    def test_ncl_on_stream(self) -> None:
        self.assertRaises(SIPParseError, StreamFramer().feed, read_corpus("rfc4475/ncl.dat"))

    def test_valid_messages_on_stream(self) -> None:
        for name, case in CASES.items():
            data = read_corpus(name)
            if case.parser != PARSE or b"\nContent-Length" not in data and b"\nl:" not in data.lower():
                continue
            if name == "rfc4475/dblreq.dat":
                continue
            framer = StreamFramer()
            (message,) = framer.feed(data)
            assert isinstance(message, bytes)
            self.assertEqual(parse_message(message, datagram=False).to_bytes(), parse_message(data).to_bytes(),
                             name)


def _request(method: str = "INVITE", uri: str = "sip:bob@example.com", extra: str = "", body: bytes = b"",
             to: str = "<sip:bob@example.com>", from_: str = "<sip:alice@example.com>;tag=a1",
             max_forwards: str | None = "70") -> Request:
    mf = "" if max_forwards is None else f"Max-Forwards: {max_forwards}\r\n"
    data = (f"{method} {uri} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK-test\r\n"
            f"{mf}To: {to}\r\nFrom: {from_}\r\n"
            f"Call-ID: precheck@192.0.2.1\r\nCSeq: 1 {method}\r\n{extra}"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    msg = parse_message(data)
    assert isinstance(msg, Request)
    return msg


def _status(req: Request, **kw: frozenset[str]) -> int | None:
    args = {"allowed_methods": ALLOWED, "supported": SUPPORTED, "accepted_types": ACCEPTED}
    args.update(kw)
    result = precheck_request(req, **args)
    return None if result is None else result[0]


class PrecheckTests(SynchronousTestCase):
    """precheck_request beyond the corpus: ordering and the cases the corpus does not cover."""

    def test_ok(self) -> None:
        self.assertIsNone(_status(_request()))
        self.assertIsNone(_status(_request(body=b"v=0\r\n", extra="Content-Type: application/sdp\r\n")))
        self.assertIsNone(_status(_request(uri="tel:+15551234")))
        self.assertIsNone(_status(_request(uri="sips:bob@example.com")))

    def test_order(self) -> None:
        """8.2.1 method, then 8.2.2.1 URI scheme, then Max-Forwards, then 8.2.2.3 Require, then 8.2.3 content."""
        extra = "Require: foo\r\nContent-Type: text/x\r\n"
        self.assertEqual(_status(_request("FOO", "urn:x:y", extra, b"x", max_forwards="0")), 501)
        req = _request("INVITE", "urn:x:y", extra, b"x", max_forwards="0")
        self.assertEqual(_status(req), 416)
        req.uri = SipURI("example.com")
        req.set("Max-Forwards", "0")
        self.assertEqual(_status(req), 483)
        req.set("Max-Forwards", "1")
        self.assertEqual(_status(req), 420)
        req.remove("Require")
        self.assertEqual(_status(req), 415)

    def test_allowed_methods_are_case_sensitive(self) -> None:
        self.assertEqual(_status(_request("invite")), 501)
        result = precheck_request(_request("PUBLISH"), allowed_methods=frozenset({"INVITE", "ACK"}),
                                  supported=frozenset(), accepted_types=ACCEPTED)
        self.assertEqual(result, (501, "Not Implemented", [("Allow", "ACK, INVITE")]))

    def test_ack_never_answered(self) -> None:
        ack = _request("ACK", uri="urn:x", extra="Require: foo\r\n", max_forwards="0")
        self.assertIsNone(_status(ack, allowed_methods=frozenset({"INVITE"})))

    def test_uri_schemes(self) -> None:
        self.assertEqual(_status(_request(uri="mailto:bob@example.com")), 416)
        self.assertEqual(_status(_request(uri="tel:+1555"), uri_schemes=frozenset({"sip"})), 416)

    def test_max_forwards(self) -> None:
        """483 only for a new out-of-dialog request this B2BUA would relay to another leg."""
        self.assertEqual(_status(_request(max_forwards="0")), 483)
        self.assertEqual(_status(_request("MESSAGE", max_forwards="0")), 483)
        self.assertEqual(_status(_request("INVITE", max_forwards="00")), 483)
        self.assertIsNone(_status(_request(max_forwards="1")))
        self.assertIsNone(_status(_request(max_forwards=None)))
        self.assertIsNone(_status(_request("OPTIONS", max_forwards="0")))
        self.assertIsNone(_status(_request("REGISTER", "sip:example.com", max_forwards="0")))
        self.assertIsNone(_status(_request("CANCEL", max_forwards="0")))
        self.assertIsNone(_status(_request("BYE", to="<sip:bob@example.com>;tag=b2", max_forwards="0")))

    def test_require(self) -> None:
        result = precheck_request(_request(extra="Require: Timer, 100rel, foo\r\nRequire: bar\r\n"),
                                  allowed_methods=ALLOWED, supported=SUPPORTED, accepted_types=ACCEPTED)
        self.assertEqual(result, (420, "Bad Extension", [("Unsupported", "foo, bar")]))
        self.assertIsNone(_status(_request(extra="Proxy-Require: foo\r\n")))
        self.assertIsNone(_status(_request("CANCEL", extra="Require: foo\r\n")))

    def test_content(self) -> None:
        self.assertEqual(_status(_request(body=b"v=0\r\n")), 400)  # a body needs a Content-Type
        self.assertIsNone(_status(_request(body=b"x", extra="Content-Type: TEXT/Plain; charset=utf-8\r\n")))
        self.assertEqual(_status(_request(body=b"x", extra="Content-Type: text/html\r\n")), 415)
        self.assertIsNone(_status(_request(body=b"x", extra="Content-Type: text/html\r\n"),
                                  accepted_types=frozenset({"text/*"})))
        self.assertIsNone(_status(_request(body=b"x", extra="Content-Type: image/png\r\n"),
                                  accepted_types=frozenset({"*/*"})))
        result = precheck_request(
            _request(body=b"x", extra="Content-Type: application/sdp\r\nContent-Encoding: gzip\r\n"),
            allowed_methods=ALLOWED, supported=SUPPORTED, accepted_types=ACCEPTED)
        self.assertEqual(result, (415, "Unsupported Media Type", [("Accept-Encoding", "identity")]))
        self.assertIsNone(_status(_request(extra="Content-Type: text/html\r\n")))  # no body: nothing to refuse

    def test_accept(self) -> None:
        for accept, status in (("application/sdp", None), ("application/*", None), ("*/*", None),
                               ("text/plain, Application/SDP;level=1", None), ("text/plain", 406),
                               ("application/sdp;q=0", 406), ("application/sdp;q=0.000, text/plain", 406),
                               ("application/sdp;q=0.1", None), ("", 406)):
            self.assertEqual(_status(_request(extra=f"Accept: {accept}\r\n")), status, accept)
            self.assertEqual(_status(_request("OPTIONS", extra=f"Accept: {accept}\r\n")), status, accept)
        self.assertIsNone(_status(_request("MESSAGE", extra="Accept: text/plain\r\n")))

    def test_expires(self) -> None:
        self.assertEqual(_status(_request(extra="Expires: Thu, 01 Dec 1994 16:00:00 GMT\r\n")), 400)
        self.assertIsNone(_status(_request(extra="Expires: 99999999999999999999\r\n")))

    def test_register(self) -> None:
        reg = "REGISTER"
        to = "<sip:alice@example.com>"
        self.assertIsNone(_status(_request(reg, "sip:example.com", to=to,
                                           extra="Contact: <sip:a@192.0.2.1>;expires=60;q=0.7\r\n")))
        self.assertIsNone(_status(_request(reg, "sip:example.com", to=to, extra="Contact: *\r\nExpires: 0\r\n")))
        for extra in ("Contact: *\r\n", "Contact: *\r\nExpires: 10\r\n",
                      "Contact: *, <sip:a@192.0.2.1>\r\nExpires: 0\r\n",
                      "Contact: *\r\nContact: <sip:a@192.0.2.1>\r\nExpires: 0\r\n",
                      "Contact: <sip:a@192.0.2.1>;expires=soon\r\n", "Contact: <sip:a@192.0.2.1>;q=2\r\n",
                      "Contact: <sip:a@192.0.2.1>;q\r\n", "Expires: never\r\n"):
            self.assertEqual(_status(_request(reg, "sip:example.com", to=to, extra=extra)), 400, extra)
        self.assertEqual(_status(_request(reg, "sip:example.com", to="<tel:+1555>")), 400)
        self.assertEqual(_status(_request(reg, "sip:example.com", from_="<mailto:a@example.com>;tag=1")), 400)

    def test_star_contact_outside_register(self) -> None:
        self.assertIsNone(_status(_request(extra="Contact: *\r\n")))  # harmless for a UAS: nothing to store

    def test_hand_built_request_never_raises(self) -> None:
        req = Request("REGISTER", SipURI("example.com"))
        result = precheck_request(req, allowed_methods=ALLOWED, supported=SUPPORTED, accepted_types=ACCEPTED)
        assert result is not None
        self.assertEqual(result[0], 400)
