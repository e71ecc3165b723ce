"""Hunting groups (plugins/hunting.py): configuration, and calls through SIPCore on a Clock."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import tempfile
from collections.abc import Mapping
from typing import Any, ClassVar, cast

from twisted.logger import ILogObserver, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from minisip.api import CONTINUE, CallerIdentity, ConfigError, Route, ServerAPI
from minisip.interfaces import ICallRouter, IFeature, IFeatureFactory
from minisip.plugins import discover
from minisip.sip.message import Request
from tests.core.fakes import PBX, Dialog, Phone, requests, sdp

PLUGIN = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                      "plugins", "hunting.py")


def _load_plugin() -> Any:
    spec = importlib.util.spec_from_file_location("minisip_test_plugin_hunting", PLUGIN)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module     # dataclasses look their module up there, as the loader does
    spec.loader.exec_module(module)
    return module


hunting = _load_plugin()
factory = hunting.factory

EXTS = ("100", "101", "102", "103", "200", "201")
HOSTS = {n: f"10.0.0.{i}" for i, n in enumerate(EXTS, start=10)}
Sections = Mapping[str, Mapping[str, str]]


def parse(sections: Sections) -> Any:
    return factory.parse_config({k: dict(v) for k, v in sections.items()})


class ConfigTests(SynchronousTestCase):
    def error(self, values: Mapping[str, str], section: str = "hunt 600") -> ConfigError:
        return self.assertRaises(ConfigError, parse, {section: values})

    def test_full_group(self) -> None:
        cfg = parse({"hunt 600": {"policy": "linear", "operators": "101:1 102:2 103:2", "ring_time": "15",
                                  "no_answer": "100"}})
        g = cfg.groups["600"]
        self.assertEqual(g.policy, "linear")
        self.assertEqual([(o.number, o.seq) for o in g.operators], [("101", 1), ("102", 2), ("103", 2)])
        self.assertEqual(g.ring_time, 15.0)
        self.assertEqual(g.no_answer, "100")

    def test_defaults(self) -> None:
        g = parse({"hunt 600": {"operators": "103 101 102"}}).groups["600"]
        self.assertEqual(g.policy, "linear")
        self.assertEqual(g.ring_time, hunting.DEFAULT_RING_TIME)
        self.assertIsNone(g.no_answer)
        # Without ':N' an operator's sequence number is its place in the list.
        self.assertEqual([(o.number, o.seq) for o in g.operators], [("103", 1), ("101", 2), ("102", 3)])

    def test_policies(self) -> None:
        for policy in ("linear", "round-robin", "parallel", "Round-Robin"):
            g = parse({"hunt 600": {"operators": "101", "policy": policy}}).groups["600"]
            self.assertEqual(g.policy, policy.lower())

    def test_bad_policy(self) -> None:
        e = self.error({"operators": "101", "policy": "random"})
        self.assertEqual((e.section, e.key), ("hunt 600", "policy"))
        self.assertIn("random", str(e))
        self.assertIn("[hunt 600] policy:", str(e))

    def test_bad_operators(self) -> None:
        for value in ("10/1", "101:x", "101:-1", "101:", "101:1.5", "101 101:2", "600"):
            e = self.error({"operators": value})
            self.assertEqual((e.section, e.key), ("hunt 600", "operators"), value)

    def test_no_operators(self) -> None:
        for values in ({}, {"operators": ""}, {"operators": "   "}):
            e = self.error(values)
            self.assertEqual((e.section, e.key), ("hunt 600", "operators"))

    def test_bad_ring_time(self) -> None:
        for value in ("-5", "0", "soon", "inf", "nan"):
            e = self.error({"operators": "101", "ring_time": value})
            self.assertEqual((e.section, e.key), ("hunt 600", "ring_time"), value)
        g = parse({"hunt 600": {"operators": "101", "ring_time": "7.5"}}).groups["600"]
        self.assertEqual(g.ring_time, 7.5)

    def test_bad_no_answer(self) -> None:
        for value in ("600", "a/b"):
            e = self.error({"operators": "101", "no_answer": value})
            self.assertEqual((e.section, e.key), ("hunt 600", "no_answer"), value)

    def test_unknown_key(self) -> None:
        e = self.error({"operators": "101", "ringtime": "5"})
        self.assertEqual((e.section, e.key), ("hunt 600", "ringtime"))

    def test_bad_section_name(self) -> None:
        for name in ("hunt", "hunt 6 00", "hunt 6/0"):
            e = self.error({"operators": "101"}, section=name)
            self.assertEqual(e.section, name)

    def test_no_sections(self) -> None:
        self.assertEqual(dict(parse({}).groups), {})


class FactoryTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.pbx = PBX(extensions=EXTS)
        self.api = ServerAPI(self.pbx.core, self.pbx.store, factory.name)

    def make(self, sections: Sections) -> Any:
        return factory.make_feature(self.api, parse(sections))

    def test_provides_the_interfaces(self) -> None:
        self.assertTrue(verifyObject(IFeatureFactory, factory))
        self.assertEqual(factory.name, "minisip.hunting")
        self.assertEqual(factory.config_prefixes, ("hunt",))
        feature = self.make({"hunt 600": {"operators": "101"}})
        self.assertTrue(verifyObject(IFeature, feature))
        self.assertTrue(verifyObject(ICallRouter, feature))

    def test_discovered_by_the_loader(self) -> None:
        d = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, d)
        shutil.copy(PLUGIN, d)
        (plugin,) = discover([d])
        self.assertEqual(plugin.name, "minisip.hunting")

    def test_group_number_is_an_extension(self) -> None:
        e = self.assertRaises(ConfigError, self.make, {"hunt 200": {"operators": "101"}})
        self.assertEqual(e.section, "hunt 200")
        self.assertIn("also an extension", str(e))

    def test_operator_is_not_an_extension(self) -> None:
        e = self.assertRaises(ConfigError, self.make, {"hunt 600": {"operators": "101 999"}})
        self.assertEqual((e.section, e.key), ("hunt 600", "operators"))
        self.assertIn("999", str(e))

    def test_no_answer_may_be_any_number(self) -> None:
        """Neither an extension nor a group: an outside number, routed as if dialled (a trunk's prefix)."""
        feature = self.make({"hunt 600": {"operators": "101", "no_answer": "0612345678"}})
        self.assertEqual(feature.groups["600"].no_answer, "0612345678")

    def test_no_answer_another_group(self) -> None:
        self.make({"hunt 600": {"operators": "101", "no_answer": "601"}, "hunt 601": {"operators": "102"}})

    def test_sample_configuration_example(self) -> None:
        """The commented [hunt 600] of etc/minisip.conf, uncommented, loads with the sample's extensions."""
        with open(os.path.join(os.path.dirname(os.path.dirname(PLUGIN)), "etc", "minisip.conf")) as f:
            lines = [line.rstrip("\n") for line in f]
        start = lines.index("; [hunt 600]")
        values = {}
        for line in lines[start + 1:]:
            key, sep, value = line.removeprefix("; ").partition(" = ")
            if not line.startswith("; ") or not sep:
                break
            values[key] = value
        self.assertEqual(sorted(values), ["no_answer", "operators", "policy", "ring_time"])
        pbx = PBX(extensions=("100", "101"))
        feature = factory.make_feature(ServerAPI(pbx.core, pbx.store, factory.name), parse({"hunt 600": values}))
        self.assertEqual(sorted(feature.groups), ["600"])

    def test_no_config(self) -> None:
        feature = factory.make_feature(self.api, None)
        self.assertEqual(dict(feature.groups), {})


class HuntTestBase(SynchronousTestCase):
    """A PBX with the hunting feature, operators 101-103, callers 200 and 201, and 100 (reception)."""

    def setUp(self) -> None:
        self.pbx = PBX(extensions=EXTS)
        self.phones = {n: self.pbx.phone(n, HOSTS[n]) for n in EXTS}
        self.events: list[dict[str, Any]] = []
        observer = cast(ILogObserver, self._log)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)

    def _log(self, event: dict[str, Any]) -> None:
        if event.get("log_namespace") == factory.name:
            self.events.append(event)

    def log_lines(self) -> list[str]:
        return [formatEvent(e) for e in self.events]

    def load(self, sections: Sections, pbx: PBX | None = None, store: Any = None) -> Any:
        pbx = pbx or self.pbx
        api = ServerAPI(pbx.core, store if store is not None else pbx.store, factory.name)
        feature = factory.make_feature(api, parse(sections))
        feature.register(pbx.core.hooks.for_owner(factory.name))
        return feature

    def restart(self, sections: Sections, registrations: int) -> Any:
        """A new core and feature on the stores of the old ones (registrations, plugin state)."""
        old = self.pbx
        self.pbx = PBX(extensions=EXTS)
        self.pbx.clock.advance(old.clock.seconds() - self.pbx.clock.seconds() + 5)
        self.pbx.location._store = old.location._store  # the registrations the old core persisted
        self.assertEqual(self.pbx.location.load(), registrations)
        self.phones = {n: self.pbx.phone(n, HOSTS[n]) for n in EXTS}
        return self.load(sections, store=old.store)

    def register(self, *numbers: str, gap: float = 1.0) -> None:
        """Register ``numbers`` in this order, ``gap`` seconds apart (their login order)."""
        for n in numbers:
            resp = self.phones[n].register()
            assert resp is not None
            self.assertEqual(resp.status, 200)
            self.pbx.clock.advance(gap)

    def offered(self, *numbers: str) -> dict[str, Dialog]:
        """The operators that received a new INVITE now; each answers 180."""
        got: dict[str, Dialog] = {}
        for n in numbers or EXTS:
            for dlg in self.phones[n].incoming():
                dlg.respond(180)
                got[n] = dlg
        return got

    def offered_one(self) -> tuple[str, Dialog]:
        got = self.offered()
        self.assertEqual(len(got), 1, sorted(got))
        return next(iter(got.items()))

    def ring_out(self, number: str, dlg: Dialog) -> None:
        """The server cancelled this operator's ringing: answer the CANCEL and the INVITE."""
        phone = self.phones[number]
        (cancel,) = requests(phone.inbox(), "CANCEL")
        phone.reply(cancel, 200)
        dlg.respond(487)

    def caller_finals(self, caller: str, dlg: Dialog) -> list[int]:
        """Final statuses the caller got to its INVITE (and checks there was nothing but 1xx before)."""
        self.phones[caller].inbox()
        assert dlg.invite is not None
        mine = [r.status for r in dlg.responses if r.cseq == (dlg.invite.cseq[0], "INVITE")]
        finals = [s for s in mine if s >= 200]
        if finals:
            first = mine.index(finals[0])
            self.assertTrue(all(s < 200 for s in mine[:first]), mine)
        return finals

    def answer(self, number: str, dlg: Dialog, caller: str, cdlg: Dialog) -> None:
        dlg.respond(200, sdp(HOSTS[number]))
        self.assertEqual(self.caller_finals(caller, cdlg), [200])
        cdlg.ack()

    def hang_up(self, number: str, dlg: Dialog, caller: str, cdlg: Dialog) -> None:
        cdlg.bye()
        phone = self.phones[number]
        (bye,) = requests(phone.inbox(), "BYE")
        dlg.respond(200, req=bye)
        self.phones[caller].inbox()

    def call(self, caller: str, callee: str = "600") -> Dialog:
        return self.phones[caller].call(callee, sdp(HOSTS[caller]))

    def finish(self) -> None:
        self.pbx.advance(40, step=4)
        self.assertEqual(self.pbx.leftovers(), {})
        for p in self.phones.values():
            p.inbox()


class LinearTests(HuntTestBase):
    def test_order_by_sequence_then_login_time(self) -> None:
        self.load({"hunt 600": {"policy": "linear", "operators": "101:1 102:2 103:2", "ring_time": "15"}})
        self.register("103", "101", "102")          # 103 logs in before 102: same sequence, 103 first
        c = self.call("200")
        order = []
        for _ in range(3):
            n, dlg = self.offered_one()
            order.append(n)
            self.assertEqual(self.caller_finals("200", c), [])
            self.pbx.advance(14.5)
            self.assertEqual(self.offered(), {})
            self.pbx.advance(0.5)
            self.ring_out(n, dlg)
        self.assertEqual(order, ["101", "103", "102"])
        self.assertEqual(self.caller_finals("200", c), [480])
        self.assertEqual(self.pbx.records()[-1].cause, "unavailable")
        lines = self.log_lines()
        self.assertEqual(sum("did not take the call: no answer in 15s, moving on" in line for line in lines), 3)
        self.assertTrue(any("no operator took the call: 480" in line for line in lines), lines)
        self.finish()

    def test_login_order_survives_a_restart(self) -> None:
        group = {"hunt 600": {"operators": "101:1 102:1 103:1", "ring_time": "5"}}
        self.load(group)
        self.register("103", "101", "102")
        self.finish()
        self.restart(group, registrations=3)
        c = self.call("200")
        order = []
        for _ in range(3):
            n, dlg = self.offered_one()
            order.append(n)
            self.pbx.advance(5)
            self.ring_out(n, dlg)
        self.assertEqual(order, ["103", "101", "102"])
        self.assertEqual(self.caller_finals("200", c), [480])
        self.finish()

    def test_login_order_follows_reregistration(self) -> None:
        """Logging out and in again puts an operator behind the ones of equal sequence number."""
        self.load({"hunt 600": {"operators": "101:1 102:1"}})
        self.register("101", "102")
        self.phones["101"].register(expires=0)
        self.register("101")
        c = self.call("200")
        n, dlg = self.offered_one()
        self.assertEqual(n, "102")
        self.answer(n, dlg, "200", c)
        self.hang_up(n, dlg, "200", c)
        self.finish()

    def test_busy_operators_are_skipped(self) -> None:
        self.load({"hunt 600": {"policy": "linear", "operators": "101:1 102:2 103:3", "ring_time": "15"}})
        self.register("101", "102", "103")
        # 101 takes a first call and stays in it.
        c1 = self.call("200")
        n, d1 = self.offered_one()
        self.assertEqual(n, "101")
        self.answer(n, d1, "200", c1)
        # A second call: 101 is in a call (skipped), 102 answers 486, 103 answers.
        c2 = self.call("201")
        n, d2 = self.offered_one()
        self.assertEqual(n, "102")
        d2.respond(486)
        n, d3 = self.offered_one()
        self.assertEqual(n, "103")
        self.answer(n, d3, "201", c2)
        lines = self.log_lines()
        self.assertTrue(any("skipping 101: in a call" in line for line in lines), lines)
        self.assertTrue(any("102 did not take the call: busy (486), moving on" in line for line in lines), lines)
        self.hang_up("103", d3, "201", c2)
        self.hang_up("101", d1, "200", c1)
        # Free again: the next call starts at 101.
        c3 = self.call("201")
        n, d4 = self.offered_one()
        self.assertEqual(n, "101")
        d4.respond(603)
        n, d5 = self.offered_one()
        self.assertEqual(n, "102")
        self.answer(n, d5, "201", c3)
        self.hang_up(n, d5, "201", c3)
        self.assertTrue(any("101 did not take the call: declined (603)" in line for line in self.log_lines()))
        self.finish()

    def test_unregistered_and_unreachable_operators_are_skipped(self) -> None:
        feature = self.load({"hunt 600": {"operators": "101 102 103"}})
        self.register("102", "103")
        (binding,) = feature.api.bindings("102")
        feature.api.set_reachable(binding, False)
        c = self.call("200")
        n, dlg = self.offered_one()
        self.assertEqual(n, "103")
        self.answer(n, dlg, "200", c)
        self.hang_up(n, dlg, "200", c)
        lines = self.log_lines()
        self.assertTrue(any("skipping 101: not registered" in line for line in lines), lines)
        self.assertTrue(any("skipping 102: not reachable" in line for line in lines), lines)
        self.finish()

    def test_operator_that_does_not_respond(self) -> None:
        """An operator whose phone never answers the INVITE (408) is passed over too."""
        self.load({"hunt 600": {"operators": "101 102", "ring_time": "60"}})
        self.register("101", "102")
        c = self.call("200")
        got = self.phones["101"].incoming()   # no 180: the transaction times out after 32 s
        self.assertEqual(len(got), 1)
        self.pbx.advance(33)
        n, dlg = self.offered_one()
        self.assertEqual(n, "102")
        self.answer(n, dlg, "200", c)
        self.hang_up(n, dlg, "200", c)
        self.assertTrue(any("101 did not take the call: no response (408)" in line for line in self.log_lines()))
        self.finish()

    def test_overflow_to_no_answer(self) -> None:
        self.load({"hunt 600": {"operators": "101 102", "ring_time": "10", "no_answer": "100"}})
        self.register("100", "101", "102")
        c = self.call("200")
        for expected in ("101", "102"):
            n, dlg = self.offered_one()
            self.assertEqual(n, expected)
            self.pbx.advance(10)
            self.ring_out(n, dlg)
        n, dlg = self.offered_one()
        self.assertEqual(n, "100")
        self.assertEqual(self.caller_finals("200", c), [])
        self.answer(n, dlg, "200", c)
        self.hang_up(n, dlg, "200", c)
        self.assertTrue(any("overflow to 100" in line for line in self.log_lines()))
        self.finish()

    def test_nobody_available_goes_straight_to_overflow(self) -> None:
        self.load({"hunt 600": {"operators": "101 102", "no_answer": "100"}})
        self.register("100")
        c = self.call("200")
        n, dlg = self.offered_one()
        self.assertEqual(n, "100")
        self.answer(n, dlg, "200", c)
        self.hang_up(n, dlg, "200", c)
        self.finish()

    def test_overflow_extension_unavailable(self) -> None:
        self.load({"hunt 600": {"operators": "101", "no_answer": "100"}})
        c = self.call("200")
        self.assertEqual(self.caller_finals("200", c), [480])
        self.finish()

    def test_overflow_to_an_outside_number_goes_through_routing(self) -> None:
        """Overflow to a mobile: the call is routed again as a call to that number, here by a router
        standing in for the trunks plugin, which sends it to 100's phone."""
        @implementer(ICallRouter)
        class Mobile:
            def __init__(self, api: ServerAPI) -> None:
                self.api = api

            def route(self, call: Any) -> Any:
                if call.callee == "0612345678":
                    return Route(tuple(self.api.destinations("100")), callee="0612345678")
                return CONTINUE

        self.pbx.core.hooks.for_owner("test.mobile").add_router(
            Mobile(ServerAPI(self.pbx.core, self.pbx.store, "test.mobile")), priority=90)
        self.load({"hunt 600": {"operators": "101", "ring_time": "10", "no_answer": "0612345678"}})
        self.register("100", "101")
        c = self.call("200")
        n, dlg = self.offered_one()
        self.assertEqual(n, "101")
        self.pbx.advance(10)
        self.ring_out(n, dlg)
        n, dlg = self.offered_one()
        self.assertEqual(n, "100")
        self.answer(n, dlg, "200", c)
        self.hang_up(n, dlg, "200", c)
        self.assertTrue(any("overflow to 0612345678" in line for line in self.log_lines()))
        self.finish()

    def test_480_when_nobody_is_available(self) -> None:
        self.load({"hunt 600": {"operators": "101 102"}})
        c = self.call("200")
        self.assertEqual(self.caller_finals("200", c), [480])
        self.assertEqual(self.offered(), {})
        self.finish()

    def test_overflow_to_another_group(self) -> None:
        self.load({"hunt 600": {"operators": "101", "ring_time": "5", "no_answer": "601"},
                   "hunt 601": {"operators": "102 103", "policy": "parallel", "ring_time": "5",
                                "no_answer": "600"}})
        self.register("101", "102", "103")
        c = self.call("200")
        n, dlg = self.offered_one()
        self.assertEqual(n, "101")
        self.pbx.advance(5)
        self.ring_out(n, dlg)
        both = self.offered()
        self.assertEqual(sorted(both), ["102", "103"])
        self.pbx.advance(5)
        for n, dlg in both.items():
            self.ring_out(n, dlg)
        # 601 overflows back to 600, already tried: the hunt ends instead of going round forever.
        self.assertEqual(self.caller_finals("200", c), [480])
        self.assertEqual(self.offered(), {})
        self.finish()

    def test_operator_in_two_groups(self) -> None:
        self.load({"hunt 600": {"operators": "101 102"}, "hunt 601": {"operators": "102 103"}})
        self.register("101", "102", "103")
        c1 = self.call("200", "601")
        n, d1 = self.offered_one()
        self.assertEqual(n, "102")
        self.answer(n, d1, "200", c1)
        c2 = self.call("201", "600")
        n, d2 = self.offered_one()
        self.assertEqual(n, "101")
        d2.respond(486)
        # 102 is in the call of group 601: group 600 has nobody left.
        self.assertEqual(self.caller_finals("201", c2), [480])
        self.hang_up("102", d1, "200", c1)
        c3 = self.call("201", "600")
        n, d3 = self.offered_one()
        self.assertEqual(n, "101")
        d3.respond(486)
        n, d4 = self.offered_one()
        self.assertEqual(n, "102")
        self.answer(n, d4, "201", c3)
        self.hang_up(n, d4, "201", c3)
        self.finish()

    def test_caller_cancels_while_hunting(self) -> None:
        self.load({"hunt 600": {"operators": "101 102", "ring_time": "5"}})
        self.register("101", "102")
        c = self.call("200")
        n, dlg = self.offered_one()
        self.pbx.advance(5)
        self.ring_out(n, dlg)
        n, dlg = self.offered_one()
        self.assertEqual(n, "102")
        c.cancel()
        self.ring_out(n, dlg)
        self.assertEqual(self.caller_finals("200", c), [487])
        self.finish()

    def test_call_from_a_trunk(self) -> None:
        """Calls that did not come from a phone (a trunk here) reach groups the same way."""
        trunk = Phone(self.pbx, "trunk", "192.0.2.1", 5060, "")

        class FromTrunk:
            def identify(self, request: Request, source: Any) -> CallerIdentity | None:
                if source.host == "192.0.2.1":
                    return CallerIdentity(caller="+33123456789", source="trunk", trunk="provider")
                return None

        self.pbx.core.hooks.for_owner("test").add_caller_identifier(FromTrunk())
        self.load({"hunt 600": {"operators": "101 102"}})
        self.register("101", "102")
        c = trunk.call("600", sdp("192.0.2.1"), auth=False)
        n, dlg = self.offered_one()
        self.assertEqual(n, "101")
        assert dlg.invite is not None
        self.assertIn("+33123456789", dlg.invite.get("from") or "")
        dlg.respond(486)
        n, dlg = self.offered_one()
        self.assertEqual(n, "102")
        dlg.respond(200, sdp(HOSTS["102"]))
        trunk.inbox()
        self.assertEqual([r.status for r in c.responses if r.status >= 200], [200])
        call = next(iter(self.pbx.core.calls.calls.values()))
        self.assertEqual((call.source, call.answered_by), ("trunk", "102"))
        c.ack()
        c.bye()
        (bye,) = requests(self.phones["102"].inbox(), "BYE")
        dlg.respond(200, req=bye)
        self.finish()

    def test_not_a_group(self) -> None:
        self.load({"hunt 600": {"operators": "101"}})
        self.register("101")
        c = self.call("200", "101")
        n, dlg = self.offered_one()
        self.assertEqual(n, "101")
        dlg.respond(486)
        self.assertEqual(self.caller_finals("200", c), [486])
        self.assertEqual(self.log_lines()[1:], [])   # only the start-up line about the group
        self.finish()

    def test_reconfigure(self) -> None:
        feature = self.load({"hunt 600": {"operators": "101"}})
        self.register("101", "102")
        feature.reconfigure(parse({"hunt 601": {"operators": "102"}}))
        c = self.call("200", "600")
        self.assertEqual(self.caller_finals("200", c), [404])
        c = self.call("200", "601")
        n, dlg = self.offered_one()
        self.assertEqual(n, "102")
        dlg.respond(486)
        self.assertEqual(self.caller_finals("200", c), [480])
        # A group clashing with an extension fails the check a reload makes before applying anything.
        e = self.assertRaises(ConfigError, feature.check, parse({"hunt 200": {"operators": "101"}}),
                              self.pbx.core.extensions.__contains__)
        self.assertEqual(e.section, "hunt 200")
        self.assertEqual(sorted(feature.groups), ["601"])
        self.finish()


class RoundRobinTests(HuntTestBase):
    GROUP: ClassVar[Sections] = {"hunt 600": {"policy": "round-robin", "operators": "101 102 103", "ring_time": "10"}}

    def one_call(self, caller: str = "200") -> str:
        """A call to 600 answered by the first operator offered; returns that operator."""
        c = self.call(caller)
        n, dlg = self.offered_one()
        self.answer(n, dlg, caller, c)
        self.hang_up(n, dlg, caller, c)
        self.pbx.advance(1)
        return n

    def test_thirty_calls_spread_evenly_and_survive_a_restart(self) -> None:
        self.load(self.GROUP)
        self.register("101", "102", "103")
        answered = [self.one_call() for _ in range(30)]
        self.assertEqual({n: answered.count(n) for n in ("101", "102", "103")}, {"101": 10, "102": 10, "103": 10})
        self.assertEqual(answered[:4], ["101", "102", "103", "101"])
        self.assertEqual(self.one_call(), "101")
        self.finish()
        self.restart(self.GROUP, registrations=3)
        self.assertEqual([self.one_call() for _ in range(4)], ["102", "103", "101", "102"])
        self.finish()

    def test_unavailable_operators_are_skipped(self) -> None:
        self.load(self.GROUP)
        self.register("101", "103")
        answered = [self.one_call() for _ in range(4)]
        self.assertEqual(answered, ["101", "103", "101", "103"])
        self.finish()

    def test_no_answer_moves_through_the_rest_of_the_ring(self) -> None:
        self.load(self.GROUP)
        self.register("101", "102", "103")
        self.assertEqual(self.one_call(), "101")
        c = self.call("200")
        order = []
        for step in range(3):
            n, dlg = self.offered_one()
            order.append(n)
            if step == 0:
                dlg.respond(486)
            else:
                self.pbx.advance(10)
                self.ring_out(n, dlg)
        self.assertEqual(order, ["102", "103", "101"])
        self.assertEqual(self.caller_finals("200", c), [480])
        # The rotation goes on after the last operator offered (101).
        self.assertEqual(self.one_call(), "102")
        self.finish()

    def test_login_order_does_not_matter(self) -> None:
        self.load(self.GROUP)
        self.register("103", "102", "101")
        self.assertEqual([self.one_call() for _ in range(3)], ["101", "102", "103"])
        self.finish()


class ParallelTests(HuntTestBase):
    GROUP: ClassVar[Sections] = {"hunt 600": {"policy": "parallel", "operators": "101 102 103", "ring_time": "20",
                          "no_answer": "100"}}

    def test_all_ring_first_answer_wins(self) -> None:
        self.load(self.GROUP)
        self.register("101", "102", "103")
        c = self.call("200")
        got = self.offered()
        self.assertEqual(sorted(got), ["101", "102", "103"])
        self.answer("102", got["102"], "200", c)
        for n in ("101", "103"):
            self.ring_out(n, got[n])
        self.assertEqual(self.pbx.records(), [])
        self.hang_up("102", got["102"], "200", c)
        self.assertEqual(self.pbx.records()[-1].cause, "normal")
        self.finish()

    def test_busy_and_absent_operators_are_left_out(self) -> None:
        self.load(self.GROUP)
        self.register("101", "102")
        c1 = self.call("200", "101")
        (d1,) = self.phones["101"].incoming()
        self.answer("101", d1, "200", c1)
        c2 = self.call("201")
        got = self.offered()
        self.assertEqual(sorted(got), ["102"])
        got["102"].respond(486)
        self.assertEqual(self.caller_finals("201", c2), [480])    # 100 (the overflow) is not registered
        self.hang_up("101", d1, "200", c1)
        self.finish()

    def test_no_answer_overflows(self) -> None:
        self.load(self.GROUP)
        self.register("100", "101", "102", "103")
        c = self.call("200")
        got = self.offered()
        self.assertEqual(sorted(got), ["101", "102", "103"])
        self.pbx.advance(20)
        for n, dlg in got.items():
            self.ring_out(n, dlg)
        n, dlg = self.offered_one()
        self.assertEqual(n, "100")
        self.answer(n, dlg, "200", c)
        self.hang_up(n, dlg, "200", c)
        self.finish()
