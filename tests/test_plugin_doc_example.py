"""The example plugin of docs/plugins.md, taken out of the page and loaded as the server loads it.

The page marks its example with ``<!-- example-plugin: office_hours.py -->`` (and its configuration
with ``<!-- example-config: minisip.conf -->``) right before the fenced block; this test fails when
the page no longer has them, so the code a reader copies is the code that is tested.
"""

from __future__ import annotations

import ast
import os
import sys
import time
from typing import Any, cast

from twisted.logger import ILogObserver, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from minisip.api import ServerAPI
from minisip.config import ConfigError, load_config
from minisip.interfaces import ICallRouter, IFeature, IFeatureFactory, IHooks
from minisip.plugins import LoadedPlugin, discover, parse_plugin_configs
from minisip.sip.message import Response
from tests.core.fakes import PBX, Phone

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(REPO, "docs", "plugins.md")
PLUGIN_MARKER = "<!-- example-plugin: office_hours.py -->"
CONFIG_MARKER = "<!-- example-config: minisip.conf -->"
NAME = "example.office_hours"


def fenced_block(text: str, marker: str, language: str) -> str:
    """The fenced block right after ``marker`` (which must appear exactly once)."""
    lines = text.splitlines()
    found = [i for i, line in enumerate(lines) if line.strip() == marker]
    if len(found) != 1:
        raise AssertionError(f"{DOC}: expected the marker {marker!r} once, found it {len(found)} times")
    start = found[0] + 1
    if start >= len(lines) or lines[start].strip() != f"```{language}":
        raise AssertionError(f"{DOC}: {marker!r} must be followed by a ```{language} block")
    for end in range(start + 1, len(lines)):
        if lines[end].strip() == "```":
            return "\n".join(lines[start + 1:end]) + "\n"
    raise AssertionError(f"{DOC}: the block after {marker!r} is not closed")


def local(year: int, month: int, day: int, hour: int, minute: int = 0) -> float:
    """Epoch seconds of a local date and time (what time.localtime gives back)."""
    return time.mktime((year, month, day, hour, minute, 0, 0, 0, -1))


# January 2024: the 8th is a Monday; no daylight-saving change anywhere in that month.
WED, THU, SAT = 10, 11, 13


class DocExampleTests(SynchronousTestCase):
    def setUp(self) -> None:
        with open(DOC, encoding="utf-8") as f:
            text = f.read()
        self.code = fenced_block(text, PLUGIN_MARKER, "python")
        self.config_text = fenced_block(text, CONFIG_MARKER, "ini")
        self.dir = os.path.abspath(self.mktemp())
        self.plugin_dir = os.path.join(self.dir, "plugins")
        os.makedirs(self.plugin_dir)
        with open(os.path.join(self.plugin_dir, "office_hours.py"), "w", encoding="utf-8") as f:
            f.write(self.code)
        self.events: list[dict[str, Any]] = []
        observer = cast(ILogObserver, self._log)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)

    def _log(self, event: dict[str, Any]) -> None:
        if event.get("log_namespace") == NAME:
            self.events.append(event)

    def write_config(self, office: str) -> str:
        path = os.path.join(self.dir, "minisip.conf")
        with open(path, "w", encoding="utf-8") as f:
            f.write(f"[server]\ndomain = 127.0.0.1\ndatadir = {self.dir}/data\n"
                    "[sip]\nudp =\ntcp =\ntls =\n"
                    "[plugins]\ndirectories = plugins\n\n" + office)
        return path

    def load(self, office: str | None = None) -> tuple[LoadedPlugin, Any]:
        """Discover the plugin and parse its config, as the server does at start-up."""
        config = load_config(self.write_config(self.config_text if office is None else office), None, ("*",))
        plugins = discover(config.plugin_directories, config.plugins_disable)
        self.assertEqual([p.name for p in plugins], [NAME])
        return plugins[0], parse_plugin_configs(plugins, config)[NAME]

    def start(self, extensions: tuple[str, ...] = ("100", "200")) -> tuple[PBX, Any]:
        plugin, parsed = self.load()
        pbx = PBX(extensions=extensions)
        feature = plugin.factory.make_feature(ServerAPI(pbx.core, pbx.store, plugin.name), parsed)
        self.assertTrue(verifyObject(IFeature, feature))
        feature.register(pbx.core.hooks.for_owner(plugin.name))
        return pbx, feature

    def at(self, pbx: PBX, when: float) -> None:
        now = pbx.clock.seconds()
        self.assertGreaterEqual(when, now)
        pbx.clock.advance(when - now)

    def call_status(self, phone: Phone, callee: str = "999") -> int:
        """The final status of an authenticated INVITE from ``phone`` to ``callee``."""
        phone.call(callee)
        finals = [m.status for m in phone.inbox() if isinstance(m, Response) and m.status >= 200]
        self.assertEqual(len(finals), 1, finals)
        return finals[0]

    # -- the page ---------------------------------------------------------------------------------
    def test_imports_only_what_a_plugin_may(self) -> None:
        allowed = {"minisip.api", "minisip.interfaces"}
        for node in ast.walk(ast.parse(self.code)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            for name in names:
                top = name.split(".")[0]
                ok = name in allowed or top in ("twisted", "zope", "__future__") or \
                    (top in sys.stdlib_module_names and top != "minisip")
                self.assertTrue(ok, f"the example imports {name}")

    def test_reference_is_complete(self) -> None:
        """Every hook point and every ServerAPI member has its line in the page."""
        with open(DOC, encoding="utf-8") as f:
            text = f.read()
        for name in IHooks.names():
            self.assertIn(f"`{name}(", text)
        for name in vars(ServerAPI):
            if not name.startswith("_"):
                self.assertIn(f"`api.{name}", text)

    def test_factory(self) -> None:
        plugin, parsed = self.load()
        self.assertTrue(verifyObject(IFeatureFactory, plugin.factory))
        self.assertEqual(plugin.factory.config_prefixes, ("office",))
        self.assertEqual(plugin.path, os.path.join(self.plugin_dir, "office_hours.py"))
        self.assertEqual((parsed.number, parsed.opens, parsed.closes), ("999", 9 * 60, 17 * 60))
        self.assertEqual(sorted(parsed.days), [0, 1, 2, 3, 4])

    # -- calls ------------------------------------------------------------------------------------
    def test_calls_to_999(self) -> None:
        pbx, feature = self.start()
        self.assertTrue(verifyObject(ICallRouter, feature))
        caller = pbx.phone("200", "10.0.0.20")
        # Out of office hours: refused by the plugin.
        self.at(pbx, local(2024, 1, WED, 8, 59))
        self.assertEqual(self.call_status(caller), 403)
        # Open: the plugin lets the call through to the core, and 999 is no extension here.
        self.at(pbx, local(2024, 1, WED, 9, 0))
        self.assertEqual(self.call_status(caller), 404)
        self.at(pbx, local(2024, 1, WED, 16, 59))
        self.assertEqual(self.call_status(caller), 404)
        # Closing time, the evening, the week-end.
        self.at(pbx, local(2024, 1, WED, 17, 0))
        self.assertEqual(self.call_status(caller), 403)
        self.at(pbx, local(2024, 1, WED, 22, 30))
        self.assertEqual(self.call_status(caller), 403)
        self.at(pbx, local(2024, 1, SAT, 11, 0))
        self.assertEqual(self.call_status(caller), 403)
        # Other numbers are none of its business, even at night.
        self.assertEqual(self.call_status(caller, "300"), 404)
        lines = [formatEvent(e) for e in self.events]
        self.assertEqual(sum("out of office hours" in line for line in lines), 4, lines)
        self.assertIn("from 200 to 999", lines[0])

    def test_reason_phrase(self) -> None:
        pbx, _ = self.start()
        caller = pbx.phone("200", "10.0.0.20")
        self.at(pbx, local(2024, 1, SAT, 11, 0))
        caller.call("999")
        (final,) = [m for m in caller.inbox() if isinstance(m, Response) and m.status >= 200]
        self.assertEqual((final.status, final.reason), (403, "Out Of Office"))

    def test_office_open_rings_the_extension(self) -> None:
        pbx, _ = self.start(extensions=("200", "999"))
        self.at(pbx, local(2024, 1, THU, 10, 0))
        desk = pbx.phone("999", "10.0.0.99")
        register = desk.register()
        assert register is not None
        self.assertEqual(register.status, 200)
        caller = pbx.phone("200", "10.0.0.20")
        caller.call("999")
        (ringing,) = desk.incoming()
        self.assertEqual(ringing.invite.uri.user if ringing.invite else None, "999")
        ringing.respond(486)
        self.assertEqual([m.status for m in caller.inbox() if isinstance(m, Response) and m.status >= 200], [486])
        # Half an hour after closing the same extension is not rung.
        self.at(pbx, local(2024, 1, THU, 17, 30))
        self.assertEqual(self.call_status(caller), 403)
        self.assertEqual(desk.incoming(), [])

    def test_reconfigure(self) -> None:
        pbx, feature = self.start()
        caller = pbx.phone("200", "10.0.0.20")
        self.at(pbx, local(2024, 1, SAT, 11, 0))
        self.assertEqual(self.call_status(caller), 403)
        # SIGHUP with Saturday mornings added: the new config reaches the running feature.
        _, parsed = self.load("[office hours]\nnumber = 999\nopen = 10:00\nclose = 12:00\ndays = sat\n")
        feature.reconfigure(parsed)
        self.assertEqual(self.call_status(caller), 404)

    def test_without_section_does_nothing(self) -> None:
        plugin, parsed = self.load(office="")
        self.assertIsNone(parsed)
        pbx = PBX(extensions=("200",))
        feature = plugin.factory.make_feature(ServerAPI(pbx.core, pbx.store, plugin.name), parsed)
        feature.register(pbx.core.hooks.for_owner(plugin.name))
        caller = pbx.phone("200", "10.0.0.20")
        self.at(pbx, local(2024, 1, SAT, 23, 0))
        self.assertEqual(self.call_status(caller), 404)

    # -- configuration errors --------------------------------------------------------------------
    def test_config_errors_name_file_section_and_key(self) -> None:
        cases = {
            "number = 999\nclose = 08:00\n": "close",
            "number = 999\nopen = 9h\n": "open",
            "number = 999\nclose = 24:00\n": "close",
            "number = 999\ndays = mon sunday\n": "days",
            "number = 999\ndays =\n": "days",
            "open = 09:00\n": "number",
            "number = 9/9\n": "number",
            "number = 999\nlunch = 12:00\n": "lunch",
        }
        for body, key in cases.items():
            e = self.assertRaises(ConfigError, self.load, "[office hours]\n" + body)
            self.assertEqual((e.file, e.section, e.key), (os.path.join(self.dir, "minisip.conf"),
                                                           "office hours", key), body)
            self.assertIn(f"minisip.conf: [office hours] {key}:", str(e))

    def test_other_office_section_refused(self) -> None:
        e = self.assertRaises(ConfigError, self.load, "[office 2]\nnumber = 998\n")
        self.assertEqual(e.section, "office 2")
        self.assertIn("[office 2]", str(e))
