"""``twistd minisip``: command-line options and the service tree."""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from twisted.application import service
from twisted.logger import Logger
from twisted.python import usage

from minisip.config import Config, ConfigError, load_config
from minisip.plugins import LoadedPlugin, PluginError, discover, parse_plugin_configs, plugin_directories

log = Logger(namespace="minisip")

DEFAULT_CONFIG = "/etc/minisip/minisip.conf"


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
                from minisip.paths import sample_config
                from minisip.welcome import no_config_lines
                sys.stderr.write("minisip: " + "\n".join(no_config_lines(DEFAULT_CONFIG, sample_config())) + "\n")
                raise SystemExit(2)
            self["config"] = DEFAULT_CONFIG
        self["config"] = os.path.abspath(self["config"])


class MinisipService(service.MultiService):
    """Everything minisip runs: the SIP stack, stores, listeners; reloads its config on SIGHUP."""

    def __init__(self, config: Config, options: dict[str, Any], plugins: list[LoadedPlugin] | None = None,
                 plugin_configs: dict[str, Any] | None = None, reactor: Any = None) -> None:
        super().__init__()
        self.plugins = plugins or []
        self.plugin_configs = plugin_configs or {}
        self.config = config
        self.options = options
        self._reactor = reactor
        self.server: Any = None

    @property
    def reactor(self) -> Any:
        if self._reactor is None:
            from twisted.internet import reactor
            self._reactor = reactor
        return self._reactor

    def startService(self) -> None:  # noqa: N802
        from minisip.app import Server
        super().startService()
        try:
            self.server = Server(self.config, self.reactor, plugins=self.plugins,
                                 plugin_configs=self.plugin_configs)
            self.server.start()
        except (ConfigError, PluginError) as e:
            # Found only now that the features are built: refuse to start as makeService does,
            # with the file and the reason, no traceback, and a non-zero exit status.
            self._abandon()
            sys.stderr.write(f"minisip: cannot start: {e}\n")
            raise SystemExit(2) from None
        except Exception as e:
            log.failure("minisip could not start: {e}", e=e)
            self.reactor.callWhenRunning(self.reactor.stop)
            raise
        if hasattr(signal, "SIGHUP"):
            signal.signal(signal.SIGHUP, lambda *_: self.reactor.callFromThread(self.reload))

    def _abandon(self) -> None:
        """Release what a failed start opened (store, sockets), quietly."""
        server, self.server = self.server, None
        if server is not None and server.store is not None:
            try:
                server.stop()
            except Exception:
                log.failure("cleaning up after a failed start")

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

    def stopService(self) -> Any:  # noqa: N802
        if self.server is not None:
            self.server.stop()
        return super().stopService()


def load_all(path: str, datadir: str | None, extra_plugin_dirs: list[str],
             plugins: list[LoadedPlugin] | None = None) -> tuple[Config, list[LoadedPlugin], dict[str, Any]]:
    """The config, the enabled plugins (discovered unless given) and each plugin's parsed config."""
    config = load_config(path, datadir, ("*",))
    if plugins is None:
        plugins = discover(plugin_directories(config.plugin_directories, extra_plugin_dirs), config.plugins_disable)
    return config, plugins, parse_plugin_configs(plugins, config)


def makeService(options: usage.Options) -> service.IService:  # noqa: N802
    try:
        config, plugins, plugin_configs = load_all(options["config"], options["datadir"], options["plugin-dirs"])
    except (ConfigError, PluginError) as e:
        sys.stderr.write(f"minisip: cannot start: {e}\n")
        raise SystemExit(2) from None
    return MinisipService(config, dict(options), plugins, plugin_configs)
