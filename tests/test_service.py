"""The twistd service tree: what makeService returns, when sockets are bound, and an orderly shutdown."""

from __future__ import annotations

import os
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from minisip.app import Server
from minisip.config import load_config
from minisip.tap import STOP_TIMEOUT, MinisipService
from tests.test_plugins import LogCapture


class _UDPPort:
    def __init__(self, port: int, interface: str) -> None:
        self.address = IPv4Address("UDP", interface, port)
        self.listening = True

    def getHost(self) -> IPv4Address:  # noqa: N802
        return self.address

    def stopListening(self) -> None:  # noqa: N802
        self.listening = False


class Reactor(MemoryReactorClock):
    """MemoryReactorClock with the listenUDP it lacks."""

    def __init__(self) -> None:
        super().__init__()
        self.udpPorts: list[_UDPPort] = []  # type: ignore[assignment]

    def listenUDP(self, port: int, protocol: Any, interface: str = "", maxPacketSize: int = 8192) -> _UDPPort:  # noqa: N802, N803
        p = _UDPPort(port, interface)
        self.udpPorts.append(p)
        return p


class SlowStop(Service):
    """A plugin service whose stop takes a while (a trunk waiting for its un-REGISTER's answer)."""

    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.stopping: defer.Deferred = defer.Deferred()

    def startService(self) -> None:  # noqa: N802
        super().startService()
        self.log.append("plugin started")

    def stopService(self) -> Any:  # noqa: N802
        super().stopService()
        self.log.append("plugin stopping")
        return self.stopping


class ServiceTreeTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        path = os.path.join(self.dir, "minisip.conf")
        with open(path, "w") as f:
            f.write(f"[server]\ndomain = 127.0.0.1\ndatadir = {self.dir}/data\n"
                    "[sip]\nudp = 127.0.0.1:15060\ntcp = 127.0.0.1:15060\ntls =\n"
                    "[extension 100]\npassword = secret-100\n")
        self.reactor = Reactor()
        self.server = Server(load_config(path, None, ("*",)), self.reactor)
        self.server.build()
        self.log: list[str] = []
        self.plugin = SlowStop(self.log)
        self.server.core.hooks.for_owner("test.slow").add_service(self.plugin)
        self.svc = MinisipService(self.server, {})

    def test_children_in_start_order(self) -> None:
        names = [c.name for c in self.svc]
        self.assertEqual(names[:3], ["store", "sip-udp 127.0.0.1:15060", "sip-tcp 127.0.0.1:15060"])
        self.assertEqual(names[3:6], ["transport", "media", "expiry"])
        self.assertIs(list(self.svc)[-1], self.plugin)

    def test_sockets_bound_in_privileged_start(self) -> None:
        """Listeners bind in privilegedStartService (as root, before twistd drops privileges); plugin
        services start only in startService, after every listener is up."""
        self.svc.privilegedStartService()
        self.assertEqual(len(self.reactor.udpPorts), 1)
        self.assertEqual(len(self.reactor.tcpServers), 1)
        self.assertEqual(self.log, [])
        self.svc.startService()
        self.assertEqual(self.log, ["plugin started"])
        self.assertEqual(len(self.reactor.udpPorts), 1)   # not bound twice

    def test_ready_once_the_reactor_runs(self) -> None:
        """The services start before reactor.run() installs the signal handlers: "minisip ready" waits
        for the reactor, so that a stop asked for after it is always a clean one."""
        log = LogCapture(self, "minisip")
        self.svc.startService()
        self.assertNotIn("minisip ready", log.text())
        self.assertEqual(self.log, ["plugin started"])
        self.reactor.run()   # runs the callWhenRunning hooks, then stops
        self.assertIn("minisip ready: domain 127.0.0.1", log.text())

    def test_shutdown_waits_for_plugin_services(self) -> None:
        self.svc.startService()
        d = self.svc.stopService()
        self.assertEqual(self.log, ["plugin started", "plugin stopping"])
        self.assertNoResult(d)
        self.assertFalse(self.server.store._closed, "the store stays open while a plugin stops")
        self.assertTrue(self.server.ports, "the listeners stay up while a plugin stops")
        self.plugin.stopping.callback(None)
        self.successResultOf(d)
        self.assertTrue(self.server.store._closed)
        self.assertEqual(self.server.ports, [])
        self.assertFalse(self.reactor.udpPorts[0].listening)

    def test_shutdown_is_bounded(self) -> None:
        self.svc.startService()
        d = self.svc.stopService()
        self.assertNoResult(d)
        self.reactor.advance(STOP_TIMEOUT)
        self.successResultOf(d)
        self.assertTrue(self.server.store._closed)
