"""``twistd minisip``: command-line options and the service tree."""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from twisted.application import service
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python import usage

from minisip.app import Server
from minisip.config import Config, ConfigError, load_config
from minisip.paths import sample_config
from minisip.plugins import LoadedPlugin, PluginError, discover, parse_plugin_configs, plugin_directories
from minisip.welcome import no_config_lines

log = Logger(namespace="minisip")

DEFAULT_CONFIG = "/etc/minisip/minisip.conf"
STOP_TIMEOUT = 5.0


class Options(usage.Options):
    synopsis = "[--config FILE] [--datadir DIR] [--plugin-dir DIR ...]"
    optParameters = [
        ["config", "c", None, "configuration file (default /etc/minisip/minisip.conf)"],
        ["datadir", "d", None, "data directory (overrides [server] datadir)"],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["plugin-dirs"] = []

    def opt_plugin_dir(self, path: str) -> None:
        """A directory of feature plugins (repeatable)."""
        self["plugin-dirs"].append(os.path.abspath(path))

    opt_p = opt_plugin_dir

    def postOptions(self) -> None:  # noqa: N802
        if self["config"] is None:
            if not os.path.exists(DEFAULT_CONFIG):
                # Say exactly what is missing and how to start from the sample, without twistd's usage text.
                sys.stderr.write("minisip: " + "\n".join(no_config_lines(DEFAULT_CONFIG, sample_config())) + "\n")
                raise SystemExit(2)
            self["config"] = DEFAULT_CONFIG
        self["config"] = os.path.abspath(self["config"])


class MinisipService(service.MultiService):
    """The root of the service tree: the server's services as children (listeners, expiry, plugin
    services, the store), stopped one after the other in reverse order, each waited for at most
    ``STOP_TIMEOUT`` seconds; reloads its config on SIGHUP."""

    def __init__(self, server: Any, options: dict[str, Any]) -> None:
        super().__init__()
        self.server = server
        self.config = server.config
        self.plugins = server.plugins
        self.options = options
        self.reactor = server.reactor
        for child in server.services():
            child.setServiceParent(self)

    def startService(self) -> None:  # noqa: N802
        super().startService()
        # twistd and twist start the services before reactor.run(), which installs the SIGTERM handler:
        # "minisip ready" said before that invited a stop that killed the process outright (no clean
        # stop, no "minisip stopped"). It is said once the reactor runs, its handlers in place.
        self.reactor.callWhenRunning(self.server.ready)
        if hasattr(signal, "SIGHUP") and hasattr(self.reactor, "callFromThread"):
            signal.signal(signal.SIGHUP, lambda *_: self.reactor.callFromThread(self.reload))

    def reload(self) -> None:
        try:
            cfg, _, plugin_configs = load_all(self.config.path, self.options.get("datadir"), [], self.plugins)
            self.server.apply_config(cfg, plugin_configs)
            self.config = cfg
            log.info("configuration reloaded from {path}", path=cfg.path)
        except ConfigError as e:
            log.error("configuration reload refused, the running configuration stays: {e}", e=str(e))
        except Exception:
            log.failure("configuration reload failed, the running configuration stays")

    def stopService(self) -> defer.Deferred:  # noqa: N802
        service.Service.stopService(self)
        d: defer.Deferred = defer.succeed(None)
        for child in reversed(list(self)):
            d.addCallback(lambda _, c=child: self._stop_child(c))
        d.addCallback(lambda _: log.info("minisip stopped"))
        return d

    def _stop_child(self, child: Any) -> defer.Deferred:
        d = defer.maybeDeferred(child.stopService)
        if d.called:
            d.addErrback(lambda f: log.failure("stopping {name}", f, name=child.name))
            return d
        d.addTimeout(STOP_TIMEOUT, self.reactor)

        def failed(f: Any) -> None:
            if f.check(defer.TimeoutError, defer.CancelledError):
                log.warn("stopping {name} took more than {t:g}s; going on", name=child.name, t=STOP_TIMEOUT)
            else:
                log.failure("stopping {name}", f, name=child.name)

        d.addErrback(failed)
        return d


def build_service(config: Config, options: dict[str, Any], plugins: list[LoadedPlugin],
                  plugin_configs: dict[str, Any], reactor: Any) -> MinisipService:
    """The whole service tree; ConfigError or PluginError (and nothing left open) when it cannot run."""
    server = Server(config, reactor, plugins=plugins, plugin_configs=plugin_configs)
    try:
        server.build()
    except BaseException:
        server.abandon()
        raise
    return MinisipService(server, options)


def load_all(path: str, datadir: str | None, extra_plugin_dirs: list[str],
             plugins: list[LoadedPlugin] | None = None) -> tuple[Config, list[LoadedPlugin], dict[str, Any]]:
    """The config, the enabled plugins (discovered unless given) and each plugin's parsed config."""
    config = load_config(path, datadir, ("*",))
    if plugins is None:
        plugins = discover(plugin_directories(config.plugin_directories, extra_plugin_dirs), config.plugins_disable)
    return config, plugins, parse_plugin_configs(plugins, config)


def make_service(options: dict[str, Any], reactor: Any) -> MinisipService:
    """The service tree for ``options``, or exit status 2 with one line naming the file and the reason."""
    try:
        config, plugins, plugin_configs = load_all(options["config"], options.get("datadir"),
                                                   options.get("plugin-dirs") or [])
        return build_service(config, options, plugins, plugin_configs, reactor)
    except (ConfigError, PluginError) as e:
        sys.stderr.write(f"minisip: cannot start: {e}\n")
        raise SystemExit(2) from None


def makeService(options: usage.Options) -> service.IService:  # noqa: N802
    from twisted.internet import reactor  # twistd's reactor, installed by now; never at import time
    return make_service(dict(options), reactor)
