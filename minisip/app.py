"""Wires the pieces together for one running server: store, location, core, transports."""

from __future__ import annotations

import gc
import time
import traceback
from typing import Any, Iterable

from twisted.logger import Logger
from zope.interface.exceptions import Invalid
from zope.interface.verify import verifyObject

from minisip.api import ServerAPI
from minisip.config import Config, ConfigError
from minisip.core.location import LocationService
from minisip.core.security import FailureTracker
from minisip.core.server import SIPCore
from minisip.core.store import open_store
from minisip.interfaces import IFeature
from minisip.plugins import LoadedPlugin, PluginError
from minisip.transport import tls
from minisip.transport.manager import TransportManager

log = Logger(namespace="minisip")

EXPIRY_INTERVAL = 10.0
GC_THRESHOLDS = (50_000, 20, 50)


def _raised(e: BaseException) -> str:
    """``ZeroDivisionError: division by zero (at /path/plugin.py:12)``: the exception and the line of
    the plugin's code (the innermost frame) that raised it, for a one-line start-up error."""
    frames = traceback.extract_tb(e.__traceback__)
    where = f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""
    return f"{type(e).__name__}: {e}{where}"


class _WallClock:
    """Wall-clock seconds for registrations; the reactor's clock for timers."""

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor

    def seconds(self) -> float:
        return time.time()

    def callLater(self, *a: Any, **kw: Any) -> Any:  # noqa: N802
        return self.reactor.callLater(*a, **kw)


class Server:
    def __init__(self, config: Config, reactor: Any, plugins: Iterable[LoadedPlugin] = (),
                 plugin_configs: dict[str, Any] | None = None) -> None:
        self.config = config
        self.reactor = reactor
        self.plugins = list(plugins)
        self.plugin_configs = plugin_configs or {}
        self.features: dict[str, Any] = {}
        self.ports: list[Any] = []
        self.expiry_call: Any = None
        self.store: Any = None
        self.services: list[Any] = []

    def start(self) -> None:
        cfg = self.config
        self.store = open_store(cfg.datadir, cfg.path)
        self.location = LocationService(self.store, _WallClock(self.reactor))
        restored = self.location.load()
        self.security = FailureTracker(self.reactor, cfg.max_failures, cfg.failure_window, cfg.ban_time)
        self.transport = TransportManager(self.reactor, None, idle_timeout=cfg.idle_timeout,
                                          max_connections_per_host=cfg.max_connections_per_host,
                                          max_message_size=cfg.max_message_size,
                                          is_banned=self.security.is_banned,
                                          tls_client_context=tls.client_context_factory(),
                                          max_connections=cfg.max_connections, message_timeout=cfg.message_timeout)
        self.core = SIPCore(self.reactor, self.transport.send, domain=cfg.domain, extensions=cfg.extensions,
                            location=self.location, store=self.store, local=self._local,
                            security=self.security, registrar_opts=self._registrar_opts(cfg))
        self.core.apply_config(cfg.domain, cfg.extensions, ring_timeout=cfg.no_answer_timeout,
                               digest_algorithms=cfg.digest_algorithms)
        self.transport.sink = self.core
        self._load_features()
        self.transport.on_send_failed = self.core.transactions.transport_error
        for listen in cfg.udp:
            self.ports.append(self.transport.listen_udp(listen.host, listen.port))
            log.info("listening for SIP on udp {addr}", addr=str(listen))
        for listen in cfg.tcp:
            self.ports.append(self.transport.listen_tcp(listen.host, listen.port))
            log.info("listening for SIP on tcp {addr}", addr=str(listen))
        if cfg.tls:
            cert, key = tls.ensure_certificate(cfg.datadir, cfg.tls_certificate, cfg.tls_private_key, cfg.domain)
            ctx = tls.server_context_factory(cert, key)
            log.info("TLS certificate {cert}, fingerprint {fp}", cert=cert, fp=tls.certificate_fingerprint(cert))
            for listen in cfg.tls:
                self.ports.append(self.transport.listen_tls(listen.host, listen.port, ctx))
                log.info("listening for SIP on tls {addr}", addr=str(listen))
        self.expiry_call = self.reactor.callLater(EXPIRY_INTERVAL, self._expire)
        for _owner, svc in self.core.hooks.services:  # after the listeners: services may send at once
            svc.startService()
            self.services.append(svc)
        # Everything made at start-up (config, extensions, restored registrations, code) lives as long
        # as the process: keep it out of the collector's full passes, which otherwise stall the reactor
        # for hundreds of milliseconds under load (SIP timers start retransmitting at 500 ms).
        gc.collect()
        gc.freeze()
        # Messages die by reference count; what the collector finds is rare. Python's default young
        # generation threshold (700 allocations) ran a collection every message or two: about 7% of
        # the CPU per call (bench/call_cpu.py). Larger generations make collections rarer, each no longer.
        gc.set_threshold(*GC_THRESHOLDS)
        log.info("minisip ready: domain {domain}, {n} extensions, {r} registrations restored, data in {datadir}",
                 domain=cfg.domain, n=len(cfg.extensions), r=restored, datadir=cfg.datadir)

    def _load_features(self) -> None:
        for plugin in self.plugins:
            api = ServerAPI(self.core, self.store, plugin.name)
            try:
                feature = plugin.factory.make_feature(api, self.plugin_configs.get(plugin.name))
            except ConfigError as e:
                # A plugin checking its config against the directory (e.g. operators that are not
                # extensions): the error names the config file like every other config error.
                if e.file is None:
                    raise ConfigError(e.message, self.config.path, e.section, e.key) from None
                raise
            except Exception as e:  # noqa: BLE001 - a plugin's bug: refuse the start, name the plugin
                raise PluginError(plugin.path, f"make_feature failed: {_raised(e)}") from None
            try:
                verifyObject(IFeature, feature)
            except Invalid as e:
                raise PluginError(plugin.path, f"make_feature did not return an IFeature: {e}") from None
            try:
                feature.register(self.core.hooks.for_owner(plugin.name))
            except Exception as e:  # noqa: BLE001 - as above (the whole start is abandoned)
                raise PluginError(plugin.path, f"register failed: {_raised(e)}") from None
            self.features[plugin.name] = feature
            log.info("plugin {name} loaded from {path}: {description}", name=plugin.name, path=plugin.path,
                     description=getattr(plugin.factory, "description", ""))

    @staticmethod
    def _registrar_opts(cfg: Config) -> dict[str, int]:
        return {"min_expires": cfg.registration_min_expires, "max_expires": cfg.registration_max_expires,
                "default_expires": cfg.registration_default_expires}

    def _local(self, transport: str) -> tuple[str, int]:
        host, port = self.transport.local.get(transport) or next(iter(self.transport.local.values()))
        if host in ("0.0.0.0", "::", ""):
            host = self.config.domain
        return host, port

    def _expire(self) -> None:
        try:
            n = self.location.expire()
            if n:
                log.info("{n} registrations expired", n=n)
        except Exception:
            log.failure("expiring registrations")
        self.expiry_call = self.reactor.callLater(EXPIRY_INTERVAL, self._expire)

    def apply_config(self, cfg: Config, plugin_configs: dict[str, Any] | None = None) -> None:
        old = self.config
        for key in ("udp", "tcp", "tls", "datadir", "tls_certificate", "tls_private_key"):
            if getattr(old, key) != getattr(cfg, key):
                log.warn("[sip]/[server] {key} changed: takes effect after a restart", key=key)
        self.config = cfg
        self.core.apply_config(cfg.domain, cfg.extensions, ring_timeout=cfg.no_answer_timeout,
                               digest_algorithms=cfg.digest_algorithms)
        self.core.registrar.configure(**self._registrar_opts(cfg))
        self.security.configure(cfg.max_failures, cfg.failure_window, cfg.ban_time)
        for name, feature in self.features.items():
            if plugin_configs is not None and name in plugin_configs:
                try:
                    feature.reconfigure(plugin_configs[name])
                except Exception:
                    log.failure("plugin {name}: reconfigure failed", name=name)
        log.info("{n} extensions configured", n=len(cfg.extensions))

    def stop(self) -> None:
        for svc in reversed(self.services):
            try:
                svc.stopService()
            except Exception:
                log.failure("stopping a plugin service")
        if self.expiry_call is not None and self.expiry_call.active():
            self.expiry_call.cancel()
        for p in self.ports:
            p.stopListening()
        self.transport.close()
        if self.store is not None:
            self.store.close()
        log.info("minisip stopped")
