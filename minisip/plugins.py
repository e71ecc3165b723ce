"""Discovery and loading of feature plugins from directories (not twisted.plugin: that is for twistd only).

Every ``*.py`` in each directory (sorted, ``_``-names skipped) is imported; the module-level objects
providing IFeatureFactory are checked with verifyObject, their API version and unique names too.
Anything wrong stops start-up with a message naming the file and the reason.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from twisted.logger import Logger
from zope.interface.exceptions import Invalid
from zope.interface.verify import verifyObject

from minisip.config import Config, ConfigError
from minisip.interfaces import API_VERSION, IFeatureFactory

log = Logger(namespace="minisip.plugins")

SUPPORTED_API_VERSIONS = frozenset({API_VERSION})


class PluginError(Exception):
    """A plugin that cannot be loaded; str() names the file and the reason."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"plugin {path}: {reason}")
        self.path = path
        self.reason = reason


@dataclass(frozen=True)
class LoadedPlugin:
    factory: Any
    path: str

    @property
    def name(self) -> str:
        return str(self.factory.name)

    @property
    def prefixes(self) -> tuple[str, ...]:
        return tuple(getattr(self.factory, "config_prefixes", ()) or ())


def _import(path: str) -> Any:
    digest = hashlib.sha1(os.path.abspath(path).encode()).hexdigest()[:10]
    stem = os.path.splitext(os.path.basename(path))[0]
    modname = f"minisip_plugin_{stem}_{digest}"
    spec = importlib.util.spec_from_file_location(modname, path)
    if spec is None or spec.loader is None:
        raise PluginError(path, "cannot be imported")
    module = importlib.util.module_from_spec(spec)
    sys.modules[modname] = module
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        sys.modules.pop(modname, None)
        raise PluginError(path, f"import failed: {type(e).__name__}: {e}") from e
    return module


def discover(directories: Iterable[str], disable: Iterable[str] = ()) -> list[LoadedPlugin]:
    """Every enabled plugin in ``directories``, in directory then file-name order."""
    disabled = set(disable)
    found: list[LoadedPlugin] = []
    by_name: dict[str, str] = {}
    for directory in directories:
        if not os.path.isdir(directory):
            raise PluginError(directory, "plugin directory does not exist")
        for fname in sorted(os.listdir(directory)):
            if not fname.endswith(".py") or fname.startswith("_"):
                continue
            path = os.path.join(directory, fname)
            module = _import(path)
            # One object may be bound to several names (factory = _default = Factory()): count it once.
            factories = list({id(obj): obj for obj in vars(module).values()
                              if not isinstance(obj, type) and IFeatureFactory.providedBy(obj)}.values())
            if not factories:
                raise PluginError(path, "exposes no object providing minisip.interfaces.IFeatureFactory")
            for factory in factories:
                # The version first: a plugin for another API version may well fail verifyObject too.
                version = getattr(factory, "api_version", None)
                if version is not None and (type(version) is not int or version not in SUPPORTED_API_VERSIONS):
                    raise PluginError(path, f"plugin {getattr(factory, 'name', '?')} wants API version "
                                            f"{version!r}; this minisip supports {sorted(SUPPORTED_API_VERSIONS)}")
                try:
                    verifyObject(IFeatureFactory, factory)
                except Invalid as e:
                    raise PluginError(path, f"does not implement IFeatureFactory: {e}") from None
                name = str(factory.name)
                if name in by_name:
                    raise PluginError(path, f"duplicate plugin name {name!r} (also in {by_name[name]})")
                by_name[name] = path
                if name in disabled:
                    log.info("plugin {name} ({path}) disabled by [plugins] disable", name=name, path=path)
                    continue
                found.append(LoadedPlugin(factory, path))
    return found


def known_prefixes(plugins: Iterable[LoadedPlugin]) -> tuple[str, ...]:
    return tuple(sorted({p for plugin in plugins for p in plugin.prefixes}))


def parse_plugin_configs(plugins: Iterable[LoadedPlugin], config: Config) -> dict[str, Any]:
    """Each plugin's parsed config, by plugin name; ConfigError (naming file, section, key) on failure.

    Sections that no plugin claims are refused here too."""
    plugins = list(plugins)
    claimed: set[str] = set()
    result: dict[str, Any] = {}
    for plugin in plugins:
        mine = {name: dict(values) for name, values in config.other_sections.items()
                if name.split()[0] in plugin.prefixes}
        claimed.update(mine)
        try:
            result[plugin.name] = plugin.factory.parse_config(mine)
        except ConfigError as e:
            if e.file is None:
                raise ConfigError(e.message, config.path, e.section, e.key) from None
            raise
        except Exception as e:
            raise ConfigError(f"plugin {plugin.name} could not read its configuration: {type(e).__name__}: {e}",
                              config.path) from None
    for name in config.other_sections:
        if name not in claimed:
            raise ConfigError("unknown section (no core section and no loaded plugin claims it)", config.path, name)
    return result


def plugin_directories(config_dirs: Iterable[str], extra: Iterable[str]) -> list[str]:
    seen: list[str] = []
    for d in [*config_dirs, *extra]:
        d = os.path.abspath(d)
        if d not in seen:
            seen.append(d)
    return seen


def describe(plugins: Iterable[LoadedPlugin]) -> Mapping[str, str]:
    return {p.name: str(getattr(p.factory, "description", "")) for p in plugins}
