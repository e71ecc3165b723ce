"""Session keep-alive (plugins/keepalive.py): configuration, in-dialog pings, OPTIONS qualify, supervision.

SIPCore runs on a Clock with the fake phones of tests.core.fakes; every message goes through bytes.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from collections.abc import Mapping
from typing import Any, cast

from twisted.application.service import IService
from twisted.logger import ILogObserver, LogEvent, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from minisip.api import ConfigError, ServerAPI
from minisip.interfaces import IFeature, IFeatureFactory
from minisip.plugins import discover
from minisip.sip.message import Request
from tests.core.fakes import DOMAIN, PBX, Dialog, Phone, requests, sdp, statuses, token

PLUGIN = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                      "plugins", "keepalive.py")


def _load_plugin() -> Any:
    spec = importlib.util.spec_from_file_location("minisip_test_plugin_keepalive", PLUGIN)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module     # dataclasses look their module up there, as the loader does
    spec.loader.exec_module(module)
    return module


keepalive = _load_plugin()
factory = keepalive.keepalive
HOSTS = {"100": "10.0.0.1", "200": "10.0.0.2", "300": "10.0.0.3"}


def parse(sections: Mapping[str, Mapping[str, str]]) -> Any:
    return factory.parse_config({k: dict(v) for k, v in sections.items()})


@implementer(ILogObserver)
class LogCapture:
    """Formatted log lines emitted while a test runs."""

    def __init__(self, testcase: SynchronousTestCase) -> None:
        self.lines: list[str] = []
        observer = cast(ILogObserver, self)
        globalLogPublisher.addObserver(observer)
        testcase.addCleanup(globalLogPublisher.removeObserver, observer)

    def __call__(self, event: LogEvent) -> None:
        self.lines.append(formatEvent(event))

    def matching(self, text: str) -> list[str]:
        return [line for line in self.lines if text in line]


class Harness:
    """A PBX with the keep-alive feature loaded and started as the server would."""

    def __init__(self, testcase: SynchronousTestCase, extensions: tuple[str, ...] = ("100", "200", "300"),
                 **values: str) -> None:
        self.pbx = PBX(extensions)
        self.core = self.pbx.core
        self.config = parse({"keepalive": values})
        self.api = ServerAPI(self.core, self.pbx.store, factory.name)
        self.feature = factory.make_feature(self.api, self.config)
        self.feature.register(self.core.hooks.for_owner(factory.name))
        for _, svc in self.core.hooks.services:
            svc.startService()
        testcase.addCleanup(self.stop)

    def stop(self) -> None:
        if self.feature.running:
            self.feature.stopService()

    def phone(self, ext: str, host: str | None = None, port: int = 5060) -> Phone:
        return self.pbx.phone(ext, host or HOSTS[ext], port)

    def registered(self, ext: str, host: str | None = None, port: int = 5060) -> Phone:
        p = self.phone(ext, host, port)
        resp = p.register()
        assert resp is not None and resp.status == 200, resp
        p.inbox()
        return p

    def binding(self, ext: str) -> Any:
        (b,) = self.api.bindings(ext)
        return b

    def reachable(self, ext: str) -> bool:
        return self.api.is_reachable(self.binding(ext))

    def answered_call(self, caller: Phone, callee: Phone) -> tuple[Dialog, Dialog, Any]:
        a = caller.call(callee.ext, sdp(caller.addr.host))
        (b,) = callee.incoming()
        b.respond(180)
        b.respond(200, sdp(callee.addr.host))
        caller.inbox()
        a.ack()
        callee.inbox()
        (call,) = self.api.calls()
        assert call.state == "answered"
        return a, b, call


def fresh(phone: Phone, method: str) -> list[Request]:
    """New ``method`` requests in the phone's inbox: retransmissions (same branch) are left out."""
    seen: set[str] = phone.__dict__.setdefault("_seen_branches", set())
    out = []
    for req in requests(phone.inbox(), method):
        branch = req.top_via.branch or ""
        if branch not in seen:
            seen.add(branch)
            out.append(req)
    return out


def options_to(phone: Phone) -> list[Request]:
    return fresh(phone, "OPTIONS")


# -- configuration ------------------------------------------------------------------------------------
class ConfigTests(SynchronousTestCase):
    def test_factory_is_a_valid_plugin(self) -> None:
        self.assertTrue(verifyObject(IFeatureFactory, factory))
        self.assertEqual(factory.name, "minisip.keepalive")
        self.assertEqual(factory.config_prefixes, ("keepalive",))
        feature = factory.make_feature(ServerAPI(PBX().core, None, factory.name), None)
        self.assertTrue(verifyObject(IFeature, feature))
        self.assertTrue(IService.providedBy(feature))

    def test_loader_finds_it(self) -> None:
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        shutil.copy(PLUGIN, directory)
        (found,) = discover([directory])
        self.assertEqual(found.name, "minisip.keepalive")

    def test_defaults_without_a_section(self) -> None:
        cfg = parse({})
        self.assertEqual((cfg.options_interval, cfg.options_timeout_failures, cfg.options_timeout,
                          cfg.options_max_in_flight, cfg.dialog_timeout), (60.0, 2, 5.0, 100, 0.0))

    def test_all_keys(self) -> None:
        cfg = parse({"keepalive": {"options_interval": "30", "OPTIONS_TIMEOUT_FAILURES": "3",
                                   "options_timeout": "2.5", "options_max_in_flight": "10",
                                   "dialog_timeout": "120"}})
        self.assertEqual((cfg.options_interval, cfg.options_timeout_failures, cfg.options_timeout,
                          cfg.options_max_in_flight, cfg.dialog_timeout), (30.0, 3, 2.5, 10, 120.0))

    def test_zero_turns_off(self) -> None:
        cfg = parse({"keepalive": {"options_interval": "0", "dialog_timeout": "0"}})
        self.assertEqual((cfg.options_interval, cfg.dialog_timeout), (0.0, 0.0))

    def test_bad_values_name_section_and_key(self) -> None:
        for key, value in [("options_interval", "soon"), ("options_interval", "-1"), ("options_interval", "nan"),
                           ("options_timeout_failures", "0"), ("options_timeout_failures", "1.5"),
                           ("options_timeout", "0"), ("options_max_in_flight", "0"), ("dialog_timeout", "-5"),
                           ("dialog_timeout", "inf")]:
            e = self.assertRaises(ConfigError, parse, {"keepalive": {key: value}})
            self.assertEqual((e.section, e.key), ("keepalive", key), (key, value))
            self.assertIn(value, str(e))

    def test_unknown_key(self) -> None:
        e = self.assertRaises(ConfigError, parse, {"keepalive": {"interval": "5"}})
        self.assertEqual((e.section, e.key), ("keepalive", "interval"))

    def test_named_section_refused(self) -> None:
        e = self.assertRaises(ConfigError, parse, {"keepalive phones": {}})
        self.assertEqual(e.section, "keepalive phones")


# -- body-less in-dialog requests -------------------------------------------------------------------------
class InDialogTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.h = Harness(self, options_interval="0")
        self.alice = self.h.registered("100")
        self.bob = self.h.registered("200")
        self.a, self.b, self.call = self.h.answered_call(self.alice, self.bob)

    def test_bodyless_requests_are_answered_here_and_not_forwarded(self) -> None:
        for method in ("INFO", "UPDATE", "MESSAGE"):
            self.h.pbx.advance(10)
            self.a.request(method, b"", ctype=None)
            got = self.alice.inbox()
            self.assertEqual(statuses(got), [200], method)
            self.assertEqual(got[0].to_tag, self.a.remote_tag)
            self.assertEqual(got[0].cseq[1], method)
            self.assertEqual(self.call.last_activity, self.h.pbx.clock.seconds(), method)
            self.assertEqual(self.bob.inbox(), [], method)

    def test_from_the_callee_side_too(self) -> None:
        for method in ("INFO", "UPDATE", "MESSAGE"):
            self.h.pbx.advance(10)
            self.b.request(method, b"", ctype=None)
            self.assertEqual(statuses(self.bob.inbox()), [200], method)
            self.assertEqual(self.call.last_activity, self.h.pbx.clock.seconds(), method)
            self.assertEqual(self.alice.inbox(), [], method)

    def relayed(self, method: str, body: bytes, ctype: str) -> Request:
        self.a.request(method, body, ctype=ctype)
        (req,) = requests(self.bob.inbox(), method)
        self.assertEqual(req.body, body)
        self.assertEqual(req.get("content-type"), ctype)
        self.bob.reply(req, 200, tag=self.b.local_tag)
        self.assertEqual(statuses(self.alice.inbox()), [200])
        return req

    def test_info_with_dtmf_goes_across(self) -> None:
        self.relayed("INFO", b"Signal=5\r\nDuration=160\r\n", "application/dtmf-relay")

    def test_update_with_sdp_goes_across(self) -> None:
        self.relayed("UPDATE", sdp("10.0.0.1", version=2), "application/sdp")

    def test_message_with_text_goes_across(self) -> None:
        self.relayed("MESSAGE", b"hello", "text/plain")

    def test_after_the_call_481(self) -> None:
        self.a.bye()
        self.assertEqual(statuses(self.alice.inbox()), [200])
        (bye,) = requests(self.bob.inbox(), "BYE")
        self.bob.reply(bye, 200, tag=self.b.local_tag)
        for method in ("INFO", "UPDATE", "MESSAGE"):
            self.a.request(method, b"", ctype=None)
            self.assertEqual(statuses(self.alice.inbox()), [481], method)
            self.b.request(method, b"", ctype=None)
            self.assertEqual(statuses(self.bob.inbox()), [481], method)
        # still 481 once the server has forgotten the dialog entirely
        self.h.pbx.advance(40)
        self.assertEqual(self.h.pbx.leftovers(), {})
        self.a.request("INFO", b"", ctype=None)
        self.assertEqual(statuses(self.alice.inbox()), [481])
        self.assertEqual(self.bob.inbox(), [])

    def test_unknown_dialog_481(self) -> None:
        req = self.alice.build("UPDATE", f"sip:200@{DOMAIN}", call_id=token(), from_=f"<sip:100@{DOMAIN}>;tag=x",
                               to=f"<sip:200@{DOMAIN}>;tag=nosuch", cseq=1, ctype=None)
        self.assertEqual(statuses(self.alice.send_request(req)), [481])


class OutOfDialogMessageTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.h = Harness(self, options_interval="0")
        self.alice = self.h.registered("100")
        self.bob = self.h.registered("200")

    def message(self, body: bytes) -> list[Any]:
        req = self.alice.build("MESSAGE", f"sip:200@{DOMAIN}", call_id=token(), from_=f"<sip:100@{DOMAIN}>;tag=x",
                               to=f"<sip:200@{DOMAIN}>", cseq=1, body=body, ctype="text/plain", contact=False)
        return self.alice.send_request(req)

    def test_bodyless_message_481(self) -> None:
        got = self.message(b"")
        self.assertEqual(statuses(got), [481])
        self.assertIsNotNone(got[0].to_tag)
        self.assertEqual(self.bob.inbox(), [])

    def test_message_with_body_left_to_the_core(self) -> None:
        # Page-mode MESSAGE is the core's: it challenges the sender (407); the point is that we let it.
        self.assertEqual(statuses(self.message(b"hi")), [407])
        self.assertEqual(self.bob.inbox(), [])


# -- device keep-alive ------------------------------------------------------------------------------------
class QualifyTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.log = LogCapture(self)
        self.h = Harness(self, options_interval="30", options_timeout="5", options_timeout_failures="2")
        self.alice = self.h.registered("100")
        self.bob = self.h.registered("200")

    def test_ping_every_interval(self) -> None:
        self.h.pbx.advance(29)
        self.assertEqual(options_to(self.alice) + options_to(self.bob), [])
        self.h.pbx.advance(2)
        (opt,) = options_to(self.alice)
        self.assertEqual(str(opt.uri), self.alice.contact)
        self.assertEqual(len(options_to(self.bob)), 1)
        self.alice.reply(opt, 200)
        self.h.pbx.advance(30)
        self.assertEqual(len(options_to(self.alice)), 1)

    def test_any_final_answer_means_alive(self) -> None:
        for status in (200, 404, 405, 501):
            self.unanswered_rounds(2)
            self.h.pbx.advance(5)
            self.assertFalse(self.h.reachable("100"), status)
            self.h.pbx.advance(25)
            (opt,) = options_to(self.alice)
            self.alice.reply(opt, status)
            self.assertTrue(self.h.reachable("100"), status)
            self.assertEqual(self.misses("100"), 0, status)

    def misses(self, ext: str) -> int:
        return int(self.h.feature.misses.get((ext, self.h.pbx.phone(ext, HOSTS[ext]).contact), 0))

    def unanswered_rounds(self, n: int) -> None:
        """``n`` rounds in which alice never answers while bob does."""
        for _ in range(n):
            self.h.pbx.advance(30)
            self.assertEqual(len(options_to(self.alice)), 1)
            for opt in options_to(self.bob):
                self.bob.reply(opt, 200)

    def test_marked_unreachable_after_n_misses(self) -> None:
        self.h.pbx.advance(20)                    # t=50
        self.unanswered_rounds(1)
        self.h.pbx.advance(5)
        self.assertEqual(self.misses("100"), 1)
        self.assertTrue(self.h.reachable("100"))
        self.unanswered_rounds(1)                 # t=85: the ping of t=60 went unanswered at t=65
        self.assertFalse(self.h.reachable("100"))
        self.assertTrue(self.h.reachable("200"))
        self.assertEqual(len(self.log.matching("extension 100: contact sip:100@10.0.0.1:5060 stopped answering")), 1)
        # further misses are not logged again
        self.unanswered_rounds(2)
        self.assertEqual(len(self.log.matching("stopped answering")), 1)

    def test_unreachable_contact_skipped_by_routing(self) -> None:
        self.unanswered_rounds(3)
        self.assertFalse(self.h.reachable("100"))
        dlg = self.bob.call("100", sdp("10.0.0.2"))
        self.bob.inbox()
        self.assertEqual(requests(self.alice.inbox(), "INVITE"), [])
        self.assertEqual(dlg.responses[-1].status, 480)
        self.assertEqual(self.h.pbx.records()[-1].cause, "unavailable")

    def test_recovers_when_it_answers_again(self) -> None:
        self.unanswered_rounds(2)
        self.h.pbx.advance(5)
        self.assertFalse(self.h.reachable("100"))
        self.h.pbx.advance(25)
        (opt,) = options_to(self.alice)
        self.alice.reply(opt, 200)
        self.assertTrue(self.h.reachable("100"))
        self.assertEqual(len(self.log.matching("extension 100: contact sip:100@10.0.0.1:5060 is reachable again")), 1)
        # and calls reach it again
        self.bob.call("100", sdp("10.0.0.2"))
        self.assertEqual(len(self.alice.incoming()), 1)

    def test_late_answer_counts(self) -> None:
        self.unanswered_rounds(2)
        self.h.pbx.advance(5)
        self.assertFalse(self.h.reachable("100"))
        self.h.pbx.advance(25)
        (opt,) = options_to(self.alice)
        self.h.pbx.advance(10)                    # past options_timeout, the transaction still open
        self.alice.reply(opt, 200)
        self.assertTrue(self.h.reachable("100"))
        self.assertEqual(self.misses("100"), 0)

    def test_recovers_on_reregister(self) -> None:
        self.unanswered_rounds(2)
        self.h.pbx.advance(5)
        self.assertFalse(self.h.reachable("100"))
        self.alice.register()
        self.assertTrue(self.h.reachable("100"))
        self.assertEqual(self.misses("100"), 0)
        # the count starts over: one more miss does not mark it again
        options_to(self.alice)
        self.h.pbx.advance(30)                    # t=95: the ping of t=90 went unanswered
        self.assertEqual(len(options_to(self.alice)), 1)
        self.assertEqual(self.misses("100"), 1)
        self.assertTrue(self.h.reachable("100"))

    def test_register_refresh_counts_as_alive(self) -> None:
        self.unanswered_rounds(1)
        self.h.pbx.advance(5)
        self.assertEqual(self.misses("100"), 1)
        self.alice.register()
        self.assertEqual(self.misses("100"), 0)
        self.unanswered_rounds(1)
        self.h.pbx.advance(5)
        self.assertTrue(self.h.reachable("100"))

    def test_unregistered_contact_no_longer_pinged(self) -> None:
        self.unanswered_rounds(1)
        self.alice.register(expires=0)
        self.h.pbx.advance(60)
        self.assertEqual(options_to(self.alice), [])
        self.assertNotIn(("100", self.alice.contact), self.h.feature.misses)



class QualifyTimingTests(SynchronousTestCase):
    def test_one_ping_at_a_time_per_contact(self) -> None:
        # A ping still waiting for its answer is not doubled by the rounds that start meanwhile.
        h = Harness(self, ("400",), options_interval="2", options_timeout="10", options_timeout_failures="1")
        p = h.registered("400", "10.0.0.4")
        h.pbx.advance(11)                         # rounds at t=2 (ping), 4, 6, 8, 10 (skipped)
        self.assertEqual(len(options_to(p)), 1)
        self.assertTrue(h.reachable("400"))
        h.pbx.advance(2)                          # t=12: unanswered; the round of t=12 pings again
        self.assertFalse(h.reachable("400"))
        self.assertEqual(len(options_to(p)), 1)

    def test_core_giving_up_first_is_a_miss(self) -> None:
        # options_timeout longer than the transaction's own 32 s: the core's timeout counts.
        h = Harness(self, ("400",), options_interval="100", options_timeout="50", options_timeout_failures="1")
        h.registered("400", "10.0.0.4")
        h.pbx.advance(100 + 33)
        self.assertFalse(h.reachable("400"))
        self.assertEqual(h.feature.outstanding, 0)


class SpreadTests(SynchronousTestCase):
    """Many contacts: pings spread over the interval, a bounded number in flight."""

    N = 60

    def setUp(self) -> None:
        self.exts = tuple(str(1000 + i) for i in range(self.N))
        self.seen: set[str] = set()

    def register_all(self, h: Harness) -> list[Phone]:
        phones = [h.registered(e, f"10.1.{i // 200}.{i % 200 + 1}") for i, e in enumerate(self.exts)]
        h.pbx.net.sent = []
        return phones

    def new_options(self, h: Harness) -> int:
        """OPTIONS sent since the last look, retransmissions left out."""
        n = 0
        for _, m in h.pbx.net.sent:
            if isinstance(m, Request) and m.method == "OPTIONS" and m.top_via.branch not in self.seen:
                self.seen.add(m.top_via.branch or "")
                n += 1
        h.pbx.net.sent = []
        return n

    def test_spread_over_the_interval(self) -> None:
        h = Harness(self, self.exts, options_interval="30")
        self.register_all(h)
        h.pbx.clock.advance(30)
        self.assertEqual(self.new_options(h), 2)             # 60 contacts over 30 ticks of 1 s
        h.pbx.clock.advance(1)
        self.assertEqual(self.new_options(h), 2)
        for _ in range(13):
            h.pbx.clock.advance(1)
        self.assertEqual(self.new_options(h), 26)
        for _ in range(15):
            h.pbx.clock.advance(1)
        self.assertEqual(self.new_options(h), 30)            # all 60 within the interval
        h.pbx.clock.advance(1)
        self.assertEqual(self.new_options(h), 2)             # the next round

    def test_bounded_in_flight(self) -> None:
        h = Harness(self, self.exts, options_interval="30", options_max_in_flight="5", options_timeout="2")
        phones = self.register_all(h)
        h.pbx.clock.advance(30)
        for _ in range(10):
            h.pbx.clock.advance(1)
            self.assertLessEqual(h.feature.outstanding, 5)
        # nobody answers: 5 OPTIONS transactions stay open (32 s) and no more go out meanwhile
        self.assertEqual(h.feature.outstanding, 5)
        # answers free room for the rest of the round
        answered = 0
        for p in phones:
            for opt in options_to(p):
                p.reply(opt, 200)
                answered += 1
        self.assertEqual(answered, 5)
        self.assertEqual(h.feature.outstanding, 0)
        h.pbx.clock.advance(1)
        sent = sum(len(options_to(p)) for p in phones)
        self.assertEqual(sent, 2)
        self.assertEqual(h.feature.outstanding, 2)


class LifecycleTests(SynchronousTestCase):
    def test_stop_cancels_timers(self) -> None:
        h = Harness(self, options_interval="30", dialog_timeout="60")
        h.registered("100")
        before = {id(c) for c in h.pbx.clock.getDelayedCalls()}
        self.assertTrue(h.feature._round_call.active())
        self.assertTrue(h.feature._supervise_call.active())
        h.feature.stopService()
        self.assertFalse(h.feature.running)
        after = {id(c) for c in h.pbx.clock.getDelayedCalls()}
        self.assertEqual(len(before - after), 2)
        h.pbx.net.sent = []
        h.pbx.advance(120)
        self.assertEqual([m for _, m in h.pbx.net.sent if isinstance(m, Request)], [])

    def test_second_start_adds_no_timers(self) -> None:
        h = Harness(self, options_interval="30", dialog_timeout="60")
        p = h.registered("100")
        before = len(h.pbx.clock.getDelayedCalls())
        h.feature.startService()
        self.assertEqual(len(h.pbx.clock.getDelayedCalls()), before)
        h.pbx.advance(31)
        self.assertEqual(len(options_to(p)), 1)

    def test_interval_zero_sends_nothing(self) -> None:
        h = Harness(self, options_interval="0")
        p = h.registered("100")
        h.pbx.advance(600, step=10)
        self.assertEqual(options_to(p), [])

    def test_reconfigure(self) -> None:
        h = Harness(self, options_interval="30", options_timeout_failures="1")
        p = h.registered("100")
        h.pbx.advance(36)
        self.assertFalse(h.reachable("100"))
        options_to(p)
        # switching qualify off gives the contact back to routing
        h.feature.reconfigure(parse({"keepalive": {"options_interval": "0"}}))
        self.assertTrue(h.reachable("100"))
        h.pbx.advance(120, step=5)
        self.assertEqual(options_to(p), [])
        # and on again with another interval
        h.feature.reconfigure(parse({"keepalive": {"options_interval": "10"}}))
        h.pbx.advance(10)
        self.assertEqual(len(options_to(p)), 1)


# -- dialog supervision -----------------------------------------------------------------------------------
class SupervisionTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.log = LogCapture(self)
        self.h = Harness(self, options_interval="0", dialog_timeout="60")
        self.alice = self.h.registered("100")
        self.bob = self.h.registered("200")
        self.a, self.b, self.call = self.h.answered_call(self.alice, self.bob)

    def probes(self) -> tuple[Request, Request]:
        (pa,) = fresh(self.alice, "INFO")
        (pb,) = fresh(self.bob, "INFO")
        for p in (pa, pb):
            self.assertEqual(p.body, b"")
        self.assertEqual(pa.call_id, self.a.call_id)
        self.assertEqual(pb.call_id, self.b.call_id)
        return pa, pb

    def test_no_probe_before_the_timeout(self) -> None:
        self.h.pbx.advance(59)
        self.assertEqual(fresh(self.alice, "INFO") + fresh(self.bob, "INFO"), [])

    def test_traffic_keeps_the_call_unprobed(self) -> None:
        for _ in range(6):
            self.h.pbx.advance(40)
            self.a.request("INFO", b"", ctype=None)
            self.assertEqual(statuses(self.alice.inbox()), [200])
        self.assertEqual(self.bob.inbox(), [])
        self.assertEqual(self.call.state, "answered")

    def test_probe_answered_keeps_the_call(self) -> None:
        self.h.pbx.advance(61)
        pa, pb = self.probes()
        self.alice.reply(pa, 200, tag=self.a.local_tag)
        self.bob.reply(pb, 405, tag=self.b.local_tag)      # any answer but 408/481 means alive
        self.assertEqual(self.call.state, "answered")
        self.assertEqual(self.call.last_activity, self.h.pbx.clock.seconds())
        self.h.pbx.advance(59)                    # t=120: idle 59 s
        self.assertEqual(fresh(self.alice, "INFO") + fresh(self.bob, "INFO"), [])
        self.h.pbx.advance(15)                    # t=135: the next look finds it idle again
        self.probes()

    def assert_released(self) -> None:
        self.assertEqual(self.call.state, "ended")
        self.assertEqual(self.call.cause, "dialog timeout")
        self.assertEqual(len(fresh(self.alice, "BYE")), 1)
        self.assertEqual(len(fresh(self.bob, "BYE")), 1)
        self.assertEqual(self.h.pbx.records()[-1].cause, "dialog timeout")
        self.assertEqual(len(self.log.matching(f"call {self.call.id} from 100 to 200: no in-dialog traffic")), 1)

    def test_probe_481_releases_both_sides(self) -> None:
        self.h.pbx.advance(61)
        pa, pb = self.probes()
        self.alice.reply(pa, 200, tag=self.a.local_tag)
        self.bob.reply(pb, 481, tag=self.b.local_tag)
        self.assert_released()

    def test_probe_unanswered_releases_both_sides(self) -> None:
        self.h.pbx.advance(61)
        pa, _ = self.probes()
        self.alice.reply(pa, 200, tag=self.a.local_tag)
        self.h.pbx.advance(20)
        self.assertEqual(self.call.state, "answered")    # waits for the INFO transaction to time out
        self.h.pbx.advance(15)
        self.assert_released()
        self.h.pbx.advance(40)
        self.assertEqual(self.h.pbx.leftovers(), {})

    def test_call_ending_during_the_probe(self) -> None:
        self.h.pbx.advance(61)
        self.probes()
        self.a.bye()
        self.alice.inbox()
        (bye,) = requests(self.bob.inbox(), "BYE")
        self.bob.reply(bye, 200, tag=self.b.local_tag)
        self.h.pbx.advance(40)
        self.assertEqual(self.call.cause, "normal")
        self.assertEqual(self.log.matching("no in-dialog traffic"), [])

