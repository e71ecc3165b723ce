"""Tests for minisip.config: the sample file, every refusal naming file/section/key, defaults."""

from __future__ import annotations

import dataclasses
import operator
import os
import re
import textwrap

from twisted.trial.unittest import SynchronousTestCase

from minisip.config import (
    DEFAULT_DATADIR,
    Config,
    ConfigError,
    Extension,
    Listen,
    load_config,
    parse_listen,
)
from minisip.paths import bundled_plugins_dir

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE = os.path.join(REPO_ROOT, "etc", "minisip.conf")

MINIMAL = "[server]\ndomain = pbx.example.com\n"
STRONG = "n0t-gu3ssable"


class ConfigTestCase(SynchronousTestCase):
    def write(self, text: str, name: str = "minisip.conf") -> str:
        directory = self.mktemp()
        os.makedirs(directory)
        path = os.path.join(directory, name)
        with open(path, "w", encoding="utf-8") as stream:
            stream.write(textwrap.dedent(text))
        return path

    def load(self, text: str, **kwargs: object) -> Config:
        return load_config(self.write(text), **kwargs)  # type: ignore[arg-type]

    def assert_refused(self, text: str, section: str | None, key: str | None, *fragments: str) -> ConfigError:
        path = self.write(text)
        error = self.assertRaises(ConfigError, load_config, path)
        message = str(error)
        self.assertIn(path, message)
        self.assertEqual(error.file, path)
        self.assertEqual(error.section, section)
        self.assertEqual(error.key, key)
        if section is not None:
            self.assertIn(f"[{section}]", message)
        if key is not None:
            self.assertIn(f" {key}:", message)
        for fragment in fragments:
            self.assertIn(fragment, message)
        return error


class SampleTests(ConfigTestCase):
    def test_sample_loads(self) -> None:
        config = load_config(SAMPLE)
        self.assertEqual(config.path, os.path.abspath(SAMPLE))
        self.assertEqual(config.domain, "127.0.0.1")
        self.assertEqual(config.datadir, os.path.abspath(os.path.expanduser("~/.minisipserver")))
        self.assertEqual(config.udp, (Listen("127.0.0.1", 5060),))
        self.assertEqual(config.tcp, (Listen("127.0.0.1", 5060),))
        self.assertEqual(config.tls, (Listen("127.0.0.1", 5061),))
        self.assertIsNone(config.tls_certificate)
        self.assertIsNone(config.tls_private_key)
        self.assertIsNone(config.media_address)
        self.assertEqual(
            dict(config.extensions),
            {"100": Extension("100", "100", "Reception"), "101": Extension("101", "101", "Sales")},
        )
        # The shipped features are on by default: the repository's plugins/ folder (in a built tree, its copy).
        self.assertEqual(config.plugin_directories, (bundled_plugins_dir(),))
        self.assertEqual(config.mccp_wss, ())
        self.assertEqual(dict(config.other_sections), {})

    def test_sample_documents_every_key(self) -> None:
        """Every key the loader knows appears in the sample, set or commented out."""
        from minisip.config import _CORE_SECTIONS, _EXTENSION_KEYS

        with open(SAMPLE, encoding="utf-8") as stream:
            text = stream.read()
        documented = {**_CORE_SECTIONS, "extension 100": _EXTENSION_KEYS}
        for section, keys in documented.items():
            self.assertIn(f"[{section}]", text)
            for key in sorted(keys):
                self.assertTrue(re.search(rf"^[;#]? ?{key} =", text, re.MULTILINE), f"{key} not in the sample")

    def test_sample_values_are_the_defaults(self) -> None:
        """The numbers in the sample are the ones a file without them gets."""
        sample = load_config(SAMPLE)
        minimal = self.load("[server]\ndomain = 127.0.0.1\n")
        for f in dataclasses.fields(Config):
            if f.name not in ("path", "extensions", "plugin_directories"):
                self.assertEqual(getattr(sample, f.name), getattr(minimal, f.name), f.name)


class DefaultsTests(ConfigTestCase):
    def test_minimal(self) -> None:
        config = self.load(MINIMAL)
        self.assertEqual(config.domain, "pbx.example.com")
        self.assertEqual(config.datadir, os.path.abspath(os.path.expanduser(DEFAULT_DATADIR)))
        self.assertEqual(config.udp, (Listen("127.0.0.1", 5060),))
        self.assertEqual(config.tcp, (Listen("127.0.0.1", 5060),))
        self.assertEqual(config.tls, (Listen("127.0.0.1", 5061),))
        self.assertEqual(dict(config.extensions), {})
        self.assertEqual((config.max_failures, config.failure_window, config.ban_time), (5, 60.0, 600.0))
        self.assertEqual(
            (config.idle_timeout, config.max_connections_per_host, config.max_message_size), (600.0, 32, 65535)
        )
        self.assertEqual((config.max_connections, config.message_timeout), (1024, 10.0))
        self.assertEqual(
            (config.registration_min_expires, config.registration_max_expires, config.registration_default_expires),
            (60, 3600, 3600),
        )
        self.assertEqual((config.plugin_directories, config.plugins_disable, config.mccp_wss), ((), (), ()))

    def test_empty_listen_turns_transport_off(self) -> None:
        config = self.load(MINIMAL + "[sip]\nudp =\ntcp =\ntls = 127.0.0.1:5071\n")
        self.assertEqual((config.udp, config.tcp, config.tls), ((), (), (Listen("127.0.0.1", 5071),)))

    def test_every_value(self) -> None:
        directory = self.mktemp()
        os.makedirs(os.path.join(directory, "plugins"))
        for name in ("a.crt", "a.key"):
            with open(os.path.join(directory, name), "w") as stream:
                stream.write("x")
        path = os.path.join(directory, "pbx.conf")
        with open(path, "w") as stream:
            stream.write(
                textwrap.dedent(
                    """\
                    [server]
                    domain = PBX.Example.com   ; names are lowercased
                    datadir = data
                    [sip]
                    udp = 127.0.0.1:5070, [::1]:5070
                    tcp = 127.0.0.2:5070
                    tls = [::1]:5071
                    tls_certificate = a.crt
                    tls_private_key = a.key
                    idle_timeout = 30.5
                    max_connections_per_host = 4
                    max_message_size = 8000
                    [mccp]
                    wss = 127.0.0.1:5062
                    [media]
                    address = 192.0.2.7
                    [registrar]
                    min_expires = 30
                    max_expires = 600
                    default_expires = 300
                    [security]
                    max_failures = 3
                    failure_window = 10
                    ban_time = 3600
                    max_connections = 200
                    message_timeout = 2.5
                    [plugins]
                    directories = plugins
                    disable = minisip.hunting, minisip.trunks
                    [extension 200]
                    password = secret
                    """
                )
            )
        config = load_config(path)
        self.assertEqual(config.domain, "pbx.example.com")
        self.assertEqual(config.datadir, os.path.join(os.path.abspath(directory), "data"))
        self.assertEqual(config.udp, (Listen("127.0.0.1", 5070), Listen("::1", 5070)))
        self.assertEqual(config.tcp, (Listen("127.0.0.2", 5070),))
        self.assertEqual(config.tls, (Listen("::1", 5071),))
        self.assertEqual(config.tls_certificate, os.path.join(os.path.abspath(directory), "a.crt"))
        self.assertEqual(config.tls_private_key, os.path.join(os.path.abspath(directory), "a.key"))
        self.assertEqual(
            (config.idle_timeout, config.max_connections_per_host, config.max_message_size), (30.5, 4, 8000)
        )
        self.assertEqual(config.mccp_wss, (Listen("127.0.0.1", 5062),))
        self.assertEqual(config.media_address, "192.0.2.7")
        self.assertEqual(
            (config.registration_min_expires, config.registration_max_expires, config.registration_default_expires),
            (30, 600, 300),
        )
        self.assertEqual((config.max_failures, config.failure_window, config.ban_time), (3, 10.0, 3600.0))
        self.assertEqual((config.max_connections, config.message_timeout), (200, 2.5))
        self.assertEqual(config.plugin_directories, (os.path.join(os.path.abspath(directory), "plugins"),))
        self.assertEqual(config.plugins_disable, ("minisip.hunting", "minisip.trunks"))
        self.assertEqual(config.extensions["200"], Extension("200", "secret", None))

    def test_frozen(self) -> None:
        config = self.load(MINIMAL + "[extension 100]\npassword = 100\n")
        self.assertRaises(dataclasses.FrozenInstanceError, setattr, config, "domain", "x")
        self.assertRaises(TypeError, operator.setitem, config.extensions, "101", Extension("101", "x", None))

    def test_ipv6_domain_is_bracketed_media_address_is_not(self) -> None:
        config = self.load("[server]\ndomain = ::1\n[media]\naddress = [2001:db8::1]\n")
        self.assertEqual(config.domain, "[::1]")
        self.assertEqual(config.media_address, "2001:db8::1")

    def test_continuation_lines_and_bom(self) -> None:
        path = self.write("")
        with open(path, "w", encoding="utf-8-sig") as stream:
            stream.write("[server]\ndomain = 127.0.0.1\n[sip]\nudp = 127.0.0.1:5060\n  [::1]:5060\n")
        self.assertEqual(load_config(path).udp, (Listen("127.0.0.1", 5060), Listen("::1", 5060)))

    def test_sip_user_token_extension(self) -> None:
        config = self.load(MINIMAL + "[extension alice.smith]\npassword = x\nname = Alice Smith\n")
        self.assertEqual(config.extensions["alice.smith"], Extension("alice.smith", "x", "Alice Smith"))


class DatadirTests(ConfigTestCase):
    def test_override_replaces_config(self) -> None:
        config = self.load(MINIMAL + "datadir = /somewhere/else\n", datadir_override="~/minisip-test")
        self.assertEqual(config.datadir, os.path.abspath(os.path.expanduser("~/minisip-test")))

    def test_relative_override_is_from_working_directory(self) -> None:
        config = self.load(MINIMAL, datadir_override="rel")
        self.assertEqual(config.datadir, os.path.abspath("rel"))

    def test_tilde_in_config(self) -> None:
        config = self.load(MINIMAL + "datadir = ~/pbx\n")
        self.assertEqual(config.datadir, os.path.abspath(os.path.expanduser("~/pbx")))
        self.assertTrue(os.path.isabs(config.datadir))


class WeakPasswordTests(ConfigTestCase):
    def conf(self, udp: str, password: str, number: str = "100") -> str:
        return MINIMAL + f"[sip]\nudp = {udp}\n[extension {number}]\npassword = {password}\n"

    def test_weak_passwords_accepted_on_loopback(self) -> None:
        for udp in ("127.0.0.1:5060", "127.1.2.3:5060", "[::1]:5060", "localhost:5060"):
            self.assertEqual(self.load(self.conf(udp, "100")).extensions["100"].password, "100")

    def test_weak_passwords_refused_when_exposed(self) -> None:
        cases = [
            ("100100100", "100100100", "equals the extension number"),
            ("100", "abc", "shorter than 8 characters"),
            ("100", "aaaaaaaaaa", "one character repeated"),
        ]
        for number, password, why in cases:
            for udp in ("0.0.0.0:5060", "192.168.1.10:5060", "[::]:5060", "127.0.0.1:5060 10.0.0.1:5060"):
                error = self.assert_refused(
                    self.conf(udp, password, number), f"extension {number}", "password", "weak password", why
                )
                self.assertIn("not loopback", str(error))

    def test_strong_password_accepted_when_exposed(self) -> None:
        config = self.load(self.conf("0.0.0.0:5060", STRONG))
        self.assertEqual(config.extensions["100"].password, STRONG)

    def test_every_transport_counts(self) -> None:
        for section, key in (("sip", "tcp"), ("sip", "tls"), ("mccp", "wss")):
            text = MINIMAL + f"[{section}]\n{key} = 0.0.0.0:5099\n[extension 100]\npassword = 100\n"
            self.assert_refused(text, "extension 100", "password", "0.0.0.0:5099")


class KnownPrefixTests(ConfigTestCase):
    TEXT = MINIMAL + "[hunt 600]\nmembers = 100 101   ; a comment\nstrategy = ring-all\n[trunk Provider]\nhost = x\n"

    def test_unknown_section_refused(self) -> None:
        self.assert_refused(self.TEXT, "hunt 600", None, "unknown section")

    def test_known_prefix_kept(self) -> None:
        config = self.load(self.TEXT, known_prefixes=["hunt", "trunk", "conference"])
        self.assertEqual(
            {name: dict(values) for name, values in config.other_sections.items()},
            {"hunt 600": {"members": "100 101", "strategy": "ring-all"}, "trunk Provider": {"host": "x"}},
        )
        self.assertRaises(TypeError, operator.setitem, config.other_sections["hunt 600"], "x", "y")

    def test_prefix_hint_in_message(self) -> None:
        path = self.write(self.TEXT)
        error = self.assertRaises(ConfigError, load_config, path, None, ["conference"])
        self.assertIn("conference", str(error))

    def test_section_names_are_case_sensitive(self) -> None:
        self.assert_refused(MINIMAL + "[Extension 100]\npassword = x\n", "Extension 100", None, "unknown section")
        self.assert_refused(MINIMAL + "[Hunt 600]\nx = y\n", "Hunt 600", None)


class DigestAlgorithmsTests(ConfigTestCase):
    """[security] digest_algorithms (MD5 alone by default) and the per-extension override."""

    def test_default_is_md5_alone(self) -> None:
        """Left out or empty: one MD5 challenge, the only set baresip 1.0 and twinkle 1.10 accept."""
        self.assertEqual(self.load(MINIMAL).digest_algorithms, ("MD5",))
        self.assertEqual(self.load(MINIMAL + "[security]\ndigest_algorithms =\n").digest_algorithms, ("MD5",))
        self.assertEqual(load_config(SAMPLE).digest_algorithms, ("MD5",))

    def test_server_list_in_order(self) -> None:
        config = self.load(MINIMAL + "[security]\ndigest_algorithms = sha-256, MD5\n")
        self.assertEqual(config.digest_algorithms, ("SHA-256", "MD5"))

    def test_extension_override(self) -> None:
        """An extension's own list replaces the server's for that extension only; left out or empty: None."""
        config = self.load(MINIMAL + "[extension 100]\npassword = x\ndigest_algorithms = SHA-256 md5\n"
                           "[extension 101]\npassword = y\n[extension 102]\npassword = z\ndigest_algorithms =\n")
        self.assertEqual(config.extensions["100"].digest_algorithms, ("SHA-256", "MD5"))
        self.assertIsNone(config.extensions["101"].digest_algorithms)
        self.assertIsNone(config.extensions["102"].digest_algorithms)
        self.assertEqual(config.digest_algorithms, ("MD5",))

    def test_refusals_name_the_section(self) -> None:
        for section, body in (("security", "[security]\n"), ("extension 100", "[extension 100]\npassword = x\n")):
            self.assert_refused(MINIMAL + body + "digest_algorithms = SHA-512\n", section, "digest_algorithms",
                                "unknown algorithm 'SHA-512'")
            self.assert_refused(MINIMAL + body + "digest_algorithms = MD5 md5\n", section, "digest_algorithms",
                                "once each")


class ErrorTests(ConfigTestCase):
    def test_message_format(self) -> None:
        error = ConfigError("bad address '1.2.3:x' (expected host:port)", "minisip.conf", "sip", "udp")
        self.assertEqual(str(error), "minisip.conf: [sip] udp: bad address '1.2.3:x' (expected host:port)")
        self.assertEqual(str(ConfigError("oops", "f.conf", "extension x")), "f.conf: [extension x]: oops")
        self.assertEqual(str(ConfigError("no such file", "f.conf")), "f.conf: no such file")
        self.assertEqual(str(ConfigError("plain")), "plain")

    def test_missing_file(self) -> None:
        path = os.path.join(self.mktemp(), "absent.conf")
        error = self.assertRaises(ConfigError, load_config, path)
        self.assertIn(path, str(error))
        self.assertIn("no such file", str(error))

    def test_refusals(self) -> None:
        s = MINIMAL
        cases: list[tuple[str, str | None, str | None, str]] = [
            ("[sip]\nudp = 1.2.3.4:5060\n", None, None, "[server] is missing"),
            ("[server]\ndatadir = x\n", "server", "domain", "required"),
            ("[server]\ndomain =\n", "server", "domain", "required"),
            ("[server]\ndomain = bad_host!\n", "server", "domain", "neither"),
            ("[server]\ndomain = pbx.example.com\nport = 5060\n", "server", "port", "unknown key"),
            (s + "[sip]\nudp = 1.2.3:x\n", "sip", "udp", "bad address '1.2.3:x' (expected host:port)"),
            (s + "[sip]\nudp = 1.2.3.4\n", "sip", "udp", "port is missing"),
            (s + "[sip]\ntcp = 1.2.3.4:0\n", "sip", "tcp", "1 to 65535"),
            (s + "[sip]\ntls = 1.2.3.4:65536\n", "sip", "tls", "1 to 65535"),
            (s + "[sip]\nudp = ::1:5060\n", "sip", "udp", "brackets"),
            (s + "[sip]\nudp = :5060\n", "sip", "udp", "host is missing"),
            (s + "[sip]\nudp = [1.2.3.4]:5060\n", "sip", "udp", "not an IPv6"),
            (s + "[sip]\nudp = 127.0.0.1:5060 127.0.0.1:5060\n", "sip", "udp", "listed twice"),
            (s + "[sip]\ntcp = 127.0.0.1:5070\ntls = 127.0.0.1:5070\n", "sip", "tls", "already used by [sip] tcp"),
            (s + "[mccp]\nwss = 127.0.0.1:5061\n", "mccp", "wss", "already used by [sip] tls"),
            (s + "[mccp]\nwebsocket = 1\n", "mccp", "websocket", "unknown key"),
            (s + "[sip]\nudp_port = 5060\n", "sip", "udp_port", "unknown key"),
            (s + "[sip]\nidle_timeout = soon\n", "sip", "idle_timeout", "not a number"),
            (s + "[security]\nmax_connections = 0\n", "security", "max_connections", "positive"),
            (s + "[security]\nmax_connections = many\n", "security", "max_connections", "whole number"),
            (s + "[security]\nmessage_timeout = 0\n", "security", "message_timeout", "positive"),
            (s + "[sip]\nidle_timeout = -1\n", "sip", "idle_timeout", "positive"),
            (s + "[sip]\nidle_timeout = nan\n", "sip", "idle_timeout", "positive"),
            (s + "[sip]\nmax_connections_per_host = 0\n", "sip", "max_connections_per_host", "positive"),
            (s + "[sip]\nmax_message_size = 1.5\n", "sip", "max_message_size", "whole number"),
            (s + "[sip]\ntls_certificate = a.crt\n", "sip", "tls_private_key", "both or neither"),
            (s + "[sip]\ntls_private_key = a.key\n", "sip", "tls_certificate", "both or neither"),
            (s + "[sip]\ntls_certificate = a.crt\ntls_private_key = a.key\n", "sip", "tls_certificate", "no such file"),
            (s + "[media]\naddress = 1.2.3.4.5\n", "media", "address", "neither"),
            (s + "[registrar]\nmin_expires = 0\n", "registrar", "min_expires", "positive"),
            (s + "[registrar]\nmin_expires = 600\nmax_expires = 60\n", "registrar", "min_expires", "above"),
            (s + "[registrar]\ndefault_expires = 7200\n", "registrar", "default_expires", "outside"),
            (s + "[security]\nmax_failures = many\n", "security", "max_failures", "whole number"),
            (s + "[security]\nban_time = 0\n", "security", "ban_time", "positive"),
            (s + "[security]\nfailure_window = x\n", "security", "failure_window", "not a number"),
            (s + "[plugins]\ndirectories = does-not-exist\n", "plugins", "directories", "no such directory"),
            (s + "[plugins]\nenable = x\n", "plugins", "enable", "unknown key"),
            (s + "[extension 100]\nname = x\n", "extension 100", "password", "required"),
            (s + "[extension 100]\npassword =\n", "extension 100", "password", "required"),
            (s + "[extension 100]\npassword = x\nvoicemail = yes\n", "extension 100", "voicemail", "unknown key"),
            (s + "[extension]\npassword = x\n", "extension", None, "[extension NUMBER]"),
            (s + "[extension 1 2]\npassword = x\n", "extension 1 2", None, "[extension NUMBER]"),
            (s + "[extension a@b]\npassword = x\n", "extension a@b", None, "not an extension number"),
            (
                s + "[extension 100]\npassword = x\n[extension  100]\npassword = y\n",
                "extension  100",
                None,
                "already defined by [extension 100]",
            ),
            (s + "[sip]\nudp = 127.0.0.1:5060\n[sip]\ntcp = 127.0.0.1:5060\n", "sip", None, "appears twice"),
            (s + "[extension 100]\npassword = x\nPassword = y\n", "extension 100", "password", "appears twice"),
            (s + "[DEFAULT]\npassword = x\n", "DEFAULT", None, "unknown section"),
            (s + "[voicemail]\nx = y\n", "voicemail", None, "unknown section"),
        ]
        for text, section, key, fragment in cases:
            self.assert_refused(text, section, key, fragment)

    def test_parse_errors_name_the_line(self) -> None:
        self.assert_refused("domain = x\n[server]\n", None, None, "line 1", "before the first [section]")
        self.assert_refused(MINIMAL + "this is not a key\n", None, None, "line 3", "key = value")

    def test_not_utf8(self) -> None:
        path = self.write("")
        with open(path, "wb") as stream:
            stream.write(b"[server]\ndomain = \xff\n")
        error = self.assertRaises(ConfigError, load_config, path)
        self.assertIn(path, str(error))
        self.assertIn("UTF-8", str(error))


class ParseListenTests(SynchronousTestCase):
    def test_forms(self) -> None:
        self.assertEqual(parse_listen(""), ())
        self.assertEqual(parse_listen("   "), ())
        self.assertEqual(
            parse_listen("0.0.0.0:5060 [::1]:5060,[2001:db8::10]:5070  pbx.example.com:5080"),
            (
                Listen("0.0.0.0", 5060),
                Listen("::1", 5060),
                Listen("2001:db8::10", 5070),
                Listen("pbx.example.com", 5080),
            ),
        )
        self.assertEqual(parse_listen("[::]:5060"), (Listen("::", 5060),))
        self.assertEqual(parse_listen("PBX.example.COM:5060"), (Listen("pbx.example.com", 5060),))

    def test_str(self) -> None:
        self.assertEqual(str(Listen("127.0.0.1", 5060)), "127.0.0.1:5060")
        self.assertEqual(str(Listen("::1", 5061)), "[::1]:5061")
        for text in ("127.0.0.1:5060", "[::1]:5061", "[2001:db8::1]:1", "host.example:65535"):
            self.assertEqual(str(parse_listen(text)[0]), text)

    def test_loopback(self) -> None:
        loopback = ["127.0.0.1:1", "127.255.0.9:1", "[::1]:1", "localhost:1", "[::ffff:127.0.0.1]:1"]
        exposed = ["0.0.0.0:1", "[::]:1", "10.0.0.1:1", "pbx.example.com:1", "[2001:db8::1]:1"]
        for text in loopback:
            self.assertTrue(parse_listen(text)[0].is_loopback, text)
        for text in exposed:
            self.assertFalse(parse_listen(text)[0].is_loopback, text)

    def test_errors_name_where(self) -> None:
        for bad in ("1.2.3:x", "[::1]5060", "[::1:5060", "host:", "-bad-.example:5060", "1.2.3:5060", "a b:1"):
            error = self.assertRaises(ConfigError, parse_listen, bad, "f.conf", "sip", "udp")
            self.assertTrue(str(error).startswith("f.conf: [sip] udp: "), str(error))
