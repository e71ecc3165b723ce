"""Tests for minisip.welcome: the next steps a newcomer reads on the console, and the no-config message."""

from __future__ import annotations

import os
from types import MappingProxyType

from twisted.internet.address import IPv4Address
from twisted.trial.unittest import SynchronousTestCase

from minisip.config import Config, Extension, Listen, load_config
from minisip.welcome import Bound, bound_addresses, no_config_lines, ready_lines

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE = os.path.join(REPO_ROOT, "etc", "minisip.conf")
LOOPBACK = (Bound("udp", "127.0.0.1", 5060), Bound("tcp", "127.0.0.1", 5060), Bound("tls", "127.0.0.1", 5061))


def config(*, udp: tuple[Listen, ...] = (Listen("127.0.0.1", 5060),), tcp: tuple[Listen, ...] = (),
           tls: tuple[Listen, ...] = (), wss: tuple[Listen, ...] = (), extensions: int = 2) -> Config:
    exts = {str(100 + i): Extension(str(100 + i), f"secret-{100 + i}", "Reception" if i == 0 else None)
            for i in range(extensions)}
    return Config(path="/srv/pbx/minisip.conf", domain="pbx.example.com", datadir="/var/lib/pbx", udp=udp, tcp=tcp,
                  tls=tls, tls_certificate=None, tls_private_key=None, media_address=None, mccp_wss=wss,
                  extensions=MappingProxyType(exts))


class FakePort:
    def __init__(self, host: str, port: int) -> None:
        self.address = IPv4Address("TCP", host, port)

    def getHost(self) -> IPv4Address:  # noqa: N802
        return self.address


class ReadyLinesTests(SynchronousTestCase):
    def test_sample_on_loopback_shows_everything_to_register(self) -> None:
        """The sample: addresses, server, domain, users with their passwords, config path and data folder."""
        cfg = load_config(SAMPLE)
        text = "\n".join(ready_lines(cfg, LOOPBACK))
        self.assertIn("Listening for SIP on udp 127.0.0.1:5060, tcp 127.0.0.1:5060, tls 127.0.0.1:5061.", text)
        self.assertIn("SIP server / registrar / proxy: 127.0.0.1, port 5060 (UDP), port 5060 (TCP), port 5061 (TLS)",
                      text)
        self.assertIn("domain (realm): 127.0.0.1", text)
        self.assertIn("100 (Reception), password 100", text)
        self.assertIn("101 (Sales), password 101", text)
        self.assertIn("Then dial one extension from another, e.g. 101 from 100.", text)
        self.assertIn(f"Configuration: {cfg.path}", text)
        self.assertIn(f"Data (registrations, call records, TLS certificates): {cfg.datadir}", text)
        self.assertIn("fingerprint", text)

    def test_no_password_when_any_listener_is_reachable_from_outside(self) -> None:
        """Listening on a LAN address (SIP or WSS): passwords are not printed; where they are set is."""
        for cfg in (config(udp=(Listen("192.168.1.10", 5060),)),
                    config(wss=(Listen("0.0.0.0", 5062),))):
            lines = ready_lines(cfg, [Bound("udp", cfg.udp[0].host, 5060)])
            text = "\n".join(lines)
            self.assertNotIn("secret-", text)
            self.assertIn("password: the extension's password in its [extension N] section of "
                          "/srv/pbx/minisip.conf", text)
            self.assertIn("100 (Reception)", text)

    def test_wildcard_listener_names_the_domain(self) -> None:
        cfg = config(udp=(Listen("0.0.0.0", 5060),))
        text = "\n".join(ready_lines(cfg, [Bound("udp", "0.0.0.0", 5060)]))
        self.assertIn("SIP server / registrar / proxy: pbx.example.com, port 5060 (UDP)", text)
        self.assertIn("Listening for SIP on udp 0.0.0.0:5060.", text)

    def test_ipv6_and_bound_port(self) -> None:
        cfg = config(udp=(Listen("::1", 0),))
        text = "\n".join(ready_lines(cfg, [Bound("udp", "::1", 40123)]))
        self.assertIn("udp [::1]:40123", text)
        self.assertIn("proxy: [::1], port 40123 (UDP)", text)

    def test_many_extensions_are_counted(self) -> None:
        lines = ready_lines(config(extensions=25), LOOPBACK[:1])
        self.assertEqual(sum(1 for line in lines if "password secret-" in line), 10)
        self.assertIn("      ... and 15 more", lines)

    def test_no_extensions_and_no_listener(self) -> None:
        text = "\n".join(ready_lines(config(extensions=0), LOOPBACK[:1]))
        self.assertIn("No extensions yet: add an [extension 100] section with a password to /srv/pbx/minisip.conf",
                      text)
        text = "\n".join(ready_lines(config(udp=()), []))
        self.assertIn("No SIP listener is configured: set [sip] udp, tcp or tls in /srv/pbx/minisip.conf.", text)
        self.assertNotIn("Point a phone", text)

    def test_bound_addresses_follow_the_start_order(self) -> None:
        """Server.start opens udp, tcp, then tls listeners in config order; the bound ports are reported."""
        cfg = config(udp=(Listen("127.0.0.1", 0), Listen("127.0.0.2", 0)), tcp=(Listen("127.0.0.1", 0),),
                     tls=(Listen("127.0.0.1", 5061),))
        ports = [FakePort("127.0.0.1", 4001), FakePort("127.0.0.2", 4002), FakePort("127.0.0.1", 4003),
                 FakePort("127.0.0.1", 5061)]
        self.assertEqual(bound_addresses(cfg, ports),
                         [Bound("udp", "127.0.0.1", 4001), Bound("udp", "127.0.0.2", 4002),
                          Bound("tcp", "127.0.0.1", 4003), Bound("tls", "127.0.0.1", 5061)])


class NoConfigLinesTests(SynchronousTestCase):
    def test_says_what_is_missing_and_how_to_start_from_the_sample(self) -> None:
        lines = no_config_lines("/etc/minisip/minisip.conf", "/opt/minisip/sample/minisip.conf")
        self.assertEqual(lines[0], "no configuration: --config FILE was not given and /etc/minisip/minisip.conf "
                                   "does not exist.")
        self.assertIn("    twistd -n minisip --config /opt/minisip/sample/minisip.conf", lines)
        self.assertIn("    cp /opt/minisip/sample/minisip.conf minisip.conf && twistd -n minisip --config "
                      "minisip.conf", lines)
