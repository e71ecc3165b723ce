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
                raise usage.UsageError(f"--config FILE is required ({DEFAULT_CONFIG} does not exist)")
            self["config"] = DEFAULT_CONFIG
        self["config"] = os.path.abspath(self["config"])


class MinisipService(service.MultiService):
    """Everything minisip runs: the SIP stack, stores, listeners; reloads its config on SIGHUP."""

    def __init__(self, config: Config, options: dict[str, Any], reactor: Any = None) -> None:
        super().__init__()
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
            self.server = Server(self.config, self.reactor, datadir_override=self.options.get("datadir"),
                                 plugin_dirs=self.options.get("plugin-dirs", []))
            self.server.start()
        except Exception as e:
            log.failure("minisip could not start: {e}", e=e)
            self.reactor.callWhenRunning(self.reactor.stop)
            raise
        if hasattr(signal, "SIGHUP"):
            signal.signal(signal.SIGHUP, lambda *_: self.reactor.callFromThread(self.reload))

    def reload(self) -> None:
        try:
            cfg = load_config(self.config.path, self.options.get("datadir"), self.server.known_prefixes())
            self.server.apply_config(cfg)
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


def makeService(options: usage.Options) -> service.IService:  # noqa: N802
    from minisip.app import known_prefixes_for
    try:
        config = load_config(options["config"], options["datadir"], known_prefixes_for(options["plugin-dirs"]))
    except ConfigError as e:
        sys.stderr.write(f"minisip: configuration error: {e}\n")
        raise SystemExit(2) from None
    return MinisipService(config, dict(options))
