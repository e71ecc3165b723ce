"""Tests for minisip.paths and ``[plugins] directories = bundled``: the features that ship are found."""

from __future__ import annotations

import os

from twisted.trial.unittest import SynchronousTestCase

from minisip.config import load_config
from minisip.paths import BUNDLED, bundled_plugins_dir, sample_config
from minisip.plugins import discover

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED = ("conference.py", "hunting.py", "keepalive.py", "trunks.py")


class BundledPluginsTests(SynchronousTestCase):
    def test_bundled_folder_holds_the_three_plugins(self) -> None:
        """The default plugin folder has keepalive, hunting and trunks, as plain files with their README."""
        folder = bundled_plugins_dir()
        names = os.listdir(folder)
        for name in (*SHIPPED, "README.md"):
            self.assertIn(name, names)
            self.assertTrue(os.path.isfile(os.path.join(folder, name)))

    def test_checkout_uses_the_top_level_plugins_folder(self) -> None:
        """Run from a checkout, the bundled folder is the repository's plugins/, not a copy; run from a
        built tree (the Debian build's tests), the built package's copy, with the same files."""
        found = os.path.realpath(bundled_plugins_dir())
        top = os.path.realpath(os.path.join(REPO_ROOT, "plugins"))
        if found != top:
            self.assertTrue(os.path.isdir(os.path.join(REPO_ROOT, "minisip", "bundled_plugins")), found)
        for name in SHIPPED:
            with open(os.path.join(found, name), "rb") as a, open(os.path.join(top, name), "rb") as b:
                self.assertEqual(a.read(), b.read(), name)

    def test_sample_config_is_found(self) -> None:
        found = os.path.realpath(sample_config())
        with open(found, "rb") as a, open(os.path.join(REPO_ROOT, "etc", "minisip.conf"), "rb") as b:
            self.assertEqual(a.read(), b.read())

    def test_sample_loads_the_bundled_plugins(self) -> None:
        """The sample's "directories = bundled" loads the three features that ship."""
        config = load_config(sample_config())
        self.assertEqual(config.plugin_directories, (bundled_plugins_dir(),))
        plugins = discover(config.plugin_directories, config.plugins_disable)
        self.assertEqual(sorted(p.name for p in plugins), ["minisip.conference", "minisip.hunting", "minisip.keepalive", "minisip.trunks"])
        self.assertEqual(sorted(os.path.basename(p.path) for p in plugins), list(SHIPPED))

    def test_bundled_word_anywhere_in_the_list(self) -> None:
        """"bundled" mixes with real folders; "./bundled" is a folder of that name beside the file."""
        directory = os.path.abspath(self.mktemp())
        os.makedirs(os.path.join(directory, "mine"))
        os.makedirs(os.path.join(directory, BUNDLED))
        path = os.path.join(directory, "minisip.conf")
        with open(path, "w", encoding="utf-8") as f:
            f.write(f"[server]\ndomain = 127.0.0.1\n[plugins]\ndirectories = mine {BUNDLED} ./{BUNDLED}\n")
        config = load_config(path)
        self.assertEqual(config.plugin_directories,
                         (os.path.join(directory, "mine"), bundled_plugins_dir(), os.path.join(directory, BUNDLED)))
