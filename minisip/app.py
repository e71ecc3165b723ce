"""Wires the pieces together for one running server: store, location, call layer, SIP core, transports,
features; and the services (listeners, expiry, plugin services) that run them."""

from __future__ import annotations

import gc
import ipaddress
import time
import traceback
from typing import Any, Iterable

from twisted.application import service
from twisted.internet import defer
from twisted.logger import Logger
from zope.interface.exceptions import Invalid
from zope.interface.verify import verifyObject

from minisip import welcome
from minisip.api import ServerAPI
from minisip.config import Config, ConfigError
from minisip.core.call import CallManager
from minisip.core.hooks import HookRegistry
from minisip.core.location import LocationService
from minisip.core.security import FailureTracker
from minisip.core.server import SIPCore
from minisip.core.store import open_store
from minisip.interfaces import IFeature
from minisip.media.policy import MediaSettings, RelayMediaPolicy
from minisip.media.relay import MediaRelay
from minisip.plugins import LoadedPlugin, PluginError
from minisip.transport import tls
from minisip.transport.manager import TransportManager
from minisip.webrtc.calls import BrowserCalls
from minisip.webrtc.server import OriginPolicy, WssService, load_certificate

log = Logger(namespace="minisip")

EXPIRY_INTERVAL = 10.0
GC_THRESHOLDS = (50_000, 20, 50)
ALIVE_KEY = "core:alive"


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


class Step(service.Service):
    """A small service made of callables: ``privileged`` runs in privilegedStartService (binding a
    port as root before privileges are dropped), ``start`` in startService, ``stop`` in stopService
    (it may return a Deferred the shutdown waits for)."""

    def __init__(self, name: str, *, privileged: Any = None, start: Any = None, stop: Any = None) -> None:
        self.setName(name)
        self._privileged = privileged
        self._start = start
        self._stop = stop
        self._privileged_done = False

    def privilegedStartService(self) -> None:  # noqa: N802
        super().privilegedStartService()
        if self._privileged is not None and not self._privileged_done:
            self._privileged_done = True
            self._privileged()

    def startService(self) -> None:  # noqa: N802
        self.privilegedStartService()   # no-op when twistd already ran it
        super().startService()
        if self._start is not None:
            self._start()

    def stopService(self) -> Any:  # noqa: N802
        super().stopService()
        if self._stop is not None:
            return self._stop()
        return None


class Server:
    """One running minisip: ``build`` makes everything (every configuration error surfaces there, before
    anything listens); ``services`` are the children of the service tree, in start order."""

    def __init__(self, config: Config, reactor: Any, plugins: Iterable[LoadedPlugin] = (),
                 plugin_configs: dict[str, Any] | None = None) -> None:
        self.config = config
        self.reactor = reactor
        self.plugins = list(plugins)
        self.plugin_configs = plugin_configs or {}
        self.features: dict[str, Any] = {}
        self.ports: list[Any] = []
        self.store: Any = None
        self.restored = 0
        self.tls_context: Any = None
        self.media: RelayMediaPolicy | None = None
        self.wss: list[WssService] = []

    def build(self) -> None:
        cfg = self.config
        self.store = open_store(cfg.datadir, cfg.path)
        self.location = LocationService(self.store, _WallClock(self.reactor))
        self.restored = self.location.load()
        self.security = FailureTracker(self.reactor, cfg.max_failures, cfg.failure_window, cfg.ban_time,
                                       **self._user_limits(cfg))
        self.transport = TransportManager(self.reactor, None, idle_timeout=cfg.idle_timeout,
                                          max_connections_per_host=cfg.max_connections_per_host,
                                          max_message_size=cfg.max_message_size,
                                          is_banned=self.security.is_banned,
                                          tls_client_context=tls.client_context_factory(),
                                          max_connections=cfg.max_connections, message_timeout=cfg.message_timeout)
        self.calls = CallManager(self.reactor, self.store, HookRegistry(), wallclock=time.time,
                                 ring_timeout=cfg.no_answer_timeout)
        self._call_limits(cfg)
        self.core = SIPCore(self.reactor, self.transport.send, domain=cfg.domain, extensions=cfg.extensions,
                            location=self.location, store=self.store, local=self._local,
                            security=self.security, registrar_opts=self._registrar_opts(cfg), calls=self.calls)
        self.core.apply_config(cfg.domain, cfg.extensions, ring_timeout=cfg.no_answer_timeout,
                               digest_algorithms=cfg.digest_algorithms)
        self.transport.sink = self.core
        self.core.is_connected = self.transport.is_connected
        self.core.opened_by_us = self.transport.opened_by_us
        self.core.peer_certificate = self.transport.peer_certificate
        self.core.pin_certificates = self.transport.pin_certificates
        self.transport.on_send_failed = self.core.transactions.transport_error
        self.media = self._media(cfg)
        self._load_features()
        if cfg.tls:
            cert, key = tls.ensure_certificate(cfg.datadir, cfg.tls_certificate, cfg.tls_private_key, cfg.domain)
            self.tls_context = tls.server_context_factory(cert, key, ask_client_certificate=True)
            log.info("TLS certificate {cert}, fingerprint {fp}", cert=cert, fp=tls.certificate_fingerprint(cert))
        self.wss = self._wss(cfg)

    def _wss(self, cfg: Config) -> list[WssService]:
        """The WSS services for browsers ([mccp] wss), with their certificate and Origin allow-list: a
        bad pair or origin stops the start here."""
        if not cfg.mccp_wss:
            return []
        try:
            origins = OriginPolicy(cfg.mccp_origins)
            certificate = load_certificate(cfg.datadir, cfg.tls_certificate, cfg.tls_private_key, cfg.domain)
        except ConfigError as e:
            if e.file is None:
                raise ConfigError(e.message, cfg.path, e.section, e.key) from None
            raise
        gateway = BrowserCalls(self.core)
        services = []
        for listen in cfg.mccp_wss:
            svc = WssService(self.reactor, listen.host, listen.port, certificate, gateway, origins=origins)
            svc.setName(f"mccp-wss {listen}")
            services.append(svc)
        return services

    def services(self) -> list[service.IService]:
        """The service tree's children in start order; they stop in reverse order, each waited for:
        plugin services (a trunk's un-REGISTER) while the listeners still run, the store last."""
        cfg = self.config
        children: list[service.IService] = [Step("store", stop=self._close_store)]
        for kind, listens in (("udp", cfg.udp), ("tcp", cfg.tcp), ("tls", cfg.tls)):
            for listen in listens:
                children.append(Step(f"sip-{kind} {listen}", privileged=self._listener(kind, listen.host, listen.port,
                                                                                         str(listen))))
        children.append(Step("transport", stop=self._close_listeners))
        if self.media is not None:
            children.append(Step("media", stop=self.media.relay.close))
        children.extend(self.wss)   # after the media relay: stopped (browsers' calls hung up) before it
        children.append(Step("expiry", start=self._start_expiry, stop=self._stop_expiry))
        for _owner, svc in self.core.hooks.services:  # after the listeners: services may send at once
            children.append(svc)
        return children

    def _listener(self, kind: str, host: str, port: int, text: str) -> Any:
        def listen() -> None:
            if kind == "udp":
                p = self.transport.listen_udp(host, port)
            elif kind == "tcp":
                p = self.transport.listen_tcp(host, port)
            else:
                p = self.transport.listen_tls(host, port, self.tls_context)
            self.ports.append(p)
            log.info("listening for SIP on {kind} {addr}", kind=kind, addr=text)
        return listen

    def _close_listeners(self) -> Any:
        ports, self.ports = self.ports, []
        ds = [defer.maybeDeferred(p.stopListening) for p in ports]
        self.transport.close()
        return defer.DeferredList(ds)

    def _close_store(self) -> None:
        self.calls.save_active()
        self.core.transactions.close()
        if self.store is not None:
            self.store.close()

    def _start_expiry(self) -> None:
        self.expiry_call = self.reactor.callLater(EXPIRY_INTERVAL, self._expire)

    def _stop_expiry(self) -> None:
        call = getattr(self, "expiry_call", None)
        if call is not None and call.active():
            call.cancel()

    def ready(self) -> None:
        """Everything runs: freeze start-up objects out of the collector and say so."""
        cfg = self.config
        # Everything made at start-up (config, extensions, restored registrations, code) lives as long
        # as the process: keep it out of the collector's full passes, which otherwise stall the reactor
        # for hundreds of milliseconds under load (SIP timers start retransmitting at 500 ms).
        gc.collect()
        gc.freeze()
        # Messages die by reference count; what the collector finds is rare. Python's default young
        # generation threshold (700 allocations) ran a collection every message or two: about 7% of
        # the CPU per call (bench/call_cpu.py). Larger generations make collections rarer, each no longer.
        gc.set_threshold(*GC_THRESHOLDS)
        raw = self.store.get_state(ALIVE_KEY)
        n = self.calls.recover(float(raw) if raw else None)
        if n:
            log.warn("{n} calls were up when minisip last stopped without ending them (a crash?): "  # noqa: G010
                     "each was sent BYE and recorded as interrupted", n=n)
        self._alive()
        log.info("minisip ready: domain {domain}, {n} extensions, {r} registrations restored, data in {datadir}",
                 domain=cfg.domain, n=len(cfg.extensions), r=self.restored, datadir=cfg.datadir)
        for line in welcome.ready_lines(cfg, welcome.bound_addresses(cfg, self.ports)):
            log.info("{line}", line=line)

    def abandon(self) -> None:
        """Release what a failed build opened (the store), quietly."""
        if self.store is not None:
            try:
                self.store.close()
            except Exception:
                log.failure("cleaning up after a failed start")
            self.store = None

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

    def _media(self, cfg: Config) -> RelayMediaPolicy | None:
        """The relay and its policy behind the call layer's media seam ([media] relay = never: none)."""
        if cfg.media_relay == "never":
            return None
        listen = next(iter(cfg.udp + cfg.tcp + cfg.tls), None)
        advertised = cfg.media_address or (listen.host if listen is not None and listen.host not in
                                           ("0.0.0.0", "::", "") else cfg.domain)
        try:
            ipaddress.ip_address(advertised)
            bind = advertised
        except ValueError:
            bind = "0.0.0.0"
        relay = MediaRelay(self.reactor, bind, cfg.media_ports, timeout=cfg.media_timeout)
        settings = MediaSettings(address=advertised, ports=cfg.media_ports, relay=cfg.media_relay,
                                 timeout=cfg.media_timeout, sdes_over_insecure=cfg.media_sdes_over_insecure)
        policy = RelayMediaPolicy(relay, settings, self.reactor, self._encryption_of, self._media_hangup)
        self.calls.media = policy
        log.info("media: relay {relay} on {address} ports {low}-{high}, timeout {t:g}s", relay=cfg.media_relay,
                 address=advertised, low=cfg.media_ports[0], high=cfg.media_ports[1], t=cfg.media_timeout)
        return policy

    def _encryption_of(self, call: Any, leg: Any) -> str:
        """The media_encryption of the extension behind ``leg`` (auto for trunks and strangers)."""
        dest = getattr(leg, "destination", None)
        number = getattr(dest, "aor", None) if dest is not None else (
            call.caller if call.source == "extension" else None)
        ext = self.config.extensions.get(number) if number else None
        return getattr(ext, "media_encryption", "auto")

    def _media_hangup(self, call_id: str, cause: str) -> None:
        call = self.calls.calls.get(call_id)
        if call is not None:
            self.calls.hangup(call, cause)

    def _call_limits(self, cfg: Config) -> None:
        self.calls.max_calls_per_extension = cfg.max_calls_per_extension
        self.calls.max_calls_per_trunk = cfg.max_calls_per_trunk

    @staticmethod
    def _user_limits(cfg: Config) -> dict[str, Any]:
        return {"user_max_failures": cfg.extension_max_failures, "user_window": cfg.extension_failure_window,
                "user_lock_time": cfg.extension_lock_time}

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
        self._alive()
        self._start_expiry()

    def _alive(self) -> None:
        """The last time the server is known to have run (what a call record says after a crash)."""
        try:
            self.store.set_state(ALIVE_KEY, repr(time.time()))
        except Exception:
            log.failure("saving the alive time")

    def apply_config(self, cfg: Config, plugin_configs: dict[str, Any] | None = None) -> None:
        """A reload, all or nothing: every feature that can check its new config against the new
        extensions does so first (``check(config, is_extension)``); a ConfigError from any of them
        refuses the whole reload before anything changes."""
        for name, feature in self.features.items():
            check = getattr(feature, "check", None)
            if check is not None and plugin_configs is not None and name in plugin_configs:
                try:
                    check(plugin_configs[name], cfg.extensions.__contains__)
                except ConfigError as e:
                    raise ConfigError(e.message, cfg.path, e.section, e.key) from None
        old = self.config
        for section, key in (("sip", "udp"), ("sip", "tcp"), ("sip", "tls"), ("server", "datadir"),
                             ("sip", "tls_certificate"), ("sip", "tls_private_key"),
                             ("plugins", "plugin_directories"), ("plugins", "plugins_disable")):
            if getattr(old, key) != getattr(cfg, key):
                name = {"plugin_directories": "directories", "plugins_disable": "disable"}.get(key, key)
                log.warn("[{section}] {key} changed: takes effect after a restart (the running value stays)",
                         section=section, key=name)
        self.config = cfg
        self.core.apply_config(cfg.domain, cfg.extensions, ring_timeout=cfg.no_answer_timeout,
                               digest_algorithms=cfg.digest_algorithms)
        self.core.registrar.configure(**self._registrar_opts(cfg))
        self.security.configure(cfg.max_failures, cfg.failure_window, cfg.ban_time, **self._user_limits(cfg))
        self._call_limits(cfg)
        transport = self.transport
        transport.idle_timeout = cfg.idle_timeout
        transport.max_connections_per_host = cfg.max_connections_per_host
        transport.max_connections = cfg.max_connections
        transport.message_timeout = cfg.message_timeout
        for name, feature in self.features.items():
            if plugin_configs is not None and name in plugin_configs:
                try:
                    feature.reconfigure(plugin_configs[name])
                except Exception:
                    log.failure("plugin {name}: reconfigure failed", name=name)
        log.info("{n} extensions configured", n=len(cfg.extensions))
