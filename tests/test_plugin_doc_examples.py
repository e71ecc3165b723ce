"""The blacklist and call-forwarding examples of docs/plugins.md, taken out of the page, loaded as the
server loads plugins, and tested with minisip.testing.PluginHarness (as the page tells authors to)."""

from __future__ import annotations

import os

from twisted.trial.unittest import SynchronousTestCase

from minisip.api import ConfigError, Reject, Route, SipDestination
from minisip.plugins import discover
from minisip.testing import PluginHarness
from tests.test_plugin_doc_example import DOC, REPO, fenced_block

TRUNKS = os.path.join(REPO, "plugins", "trunks.py")


class DocExamplesTestCase(SynchronousTestCase):
    def load(self, filename: str) -> object:
        with open(DOC, encoding="utf-8") as f:
            code = fenced_block(f.read(), f"<!-- example-plugin: {filename} -->", "python")
        folder = os.path.abspath(self.mktemp())
        os.makedirs(folder)
        with open(os.path.join(folder, filename), "w", encoding="utf-8") as f:
            f.write(code)
        (plugin,) = discover([folder])
        return plugin.factory

    def trunks(self) -> object:
        folder = os.path.abspath(self.mktemp())
        os.makedirs(folder)
        os.symlink(TRUNKS, os.path.join(folder, "trunks.py"))
        (plugin,) = discover([folder])
        return plugin.factory


class BlacklistTests(DocExamplesTestCase):
    def setUp(self) -> None:
        self.factory = self.load("blacklist.py")

    def test_blacklisted_prefix_is_refused(self) -> None:
        h = PluginHarness(self.factory, {"blacklist": {"prefixes": "0900 +49900"}})
        self.assertEqual(h.route("100", "0900123456"), Reject(403, "Forbidden"))
        self.assertEqual(h.route("100", "+49900111"), Reject(403, "Forbidden"))

    def test_other_numbers_go_on(self) -> None:
        h = PluginHarness(self.factory, {"blacklist": {"prefixes": "0900"}})
        self.assertEqual(h.route("100", "200"), Reject(480, "Temporarily Unavailable"))  # not registered
        h.register("200")
        decision = h.route("100", "200")
        assert isinstance(decision, Route)
        self.assertEqual([d.uri for d in decision.targets], ["sip:200@10.0.0.1:5060"])

    def test_bad_prefix_is_a_config_error(self) -> None:
        e = self.assertRaises(ConfigError, self.factory.parse_config, {"blacklist": {"prefixes": "09x"}})
        self.assertEqual((e.section, e.key), ("blacklist", "prefixes"))


class ForwardingTests(DocExamplesTestCase):
    def setUp(self) -> None:
        self.factory = self.load("forwarding.py")

    def test_forward_to_a_mobile_through_the_trunk(self) -> None:
        """[forward 100] to 00612345678: a call to 100 leaves through the carrier as that number."""
        sections = {"forward 100": {"to": "00612345678"},
                    "trunk carrier": {"proxy": "192.0.2.10", "prefix": "00", "strip": "2", "prepend": "+"}}
        h = PluginHarness([self.factory, self.trunks()], sections, extensions=("100", "200"))
        h.register("100")
        decision = h.route("200", "100")
        assert isinstance(decision, Route)
        (dest,) = decision.targets
        assert isinstance(dest, SipDestination)
        self.assertEqual((dest.trunk, dest.addr.host), ("carrier", "192.0.2.10"))
        self.assertIn("612345678", dest.uri)

    def test_forwarding_loop_ends_with_482(self) -> None:
        h = PluginHarness(self.factory, {"forward 100": {"to": "200"}, "forward 200": {"to": "100"}})
        self.assertEqual(h.route("300", "100"), Reject(482, "Loop Detected"))

    def test_section_needs_an_extension(self) -> None:
        self.assertRaises(ConfigError, self.factory.parse_config, {"forward": {"to": "200"}})
