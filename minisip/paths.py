"""Where the files that ship with minisip are: the bundled feature plugins and the sample configuration.

In a checkout they are the repository's ``plugins/`` and ``etc/minisip.conf``; an installed package (pip,
wheel, venv, Debian) carries them as ``minisip/bundled_plugins/`` and ``minisip/sample/minisip.conf``
(setup.cfg maps the two folders into the package), so they are found wherever minisip is installed.
"""

from __future__ import annotations

import os

__all__ = ["BUNDLED", "bundled_plugins_dir", "sample_config"]

# The ``[plugins] directories`` word that means "the plugins that ship with minisip".
BUNDLED = "bundled"

_PACKAGE = os.path.dirname(os.path.abspath(__file__))
_CHECKOUT = os.path.dirname(_PACKAGE)


def _shipped(installed: str, in_checkout: str) -> str:
    """``installed`` (under the package) when it exists, else ``in_checkout`` when minisip runs from a
    checkout (setup.cfg beside the package), else ``installed``, so that an error names where it belongs."""
    installed = os.path.join(_PACKAGE, installed)
    if os.path.exists(installed):
        return os.path.realpath(installed)
    if os.path.exists(os.path.join(_CHECKOUT, "setup.cfg")):
        return os.path.join(_CHECKOUT, in_checkout)
    return installed


def bundled_plugins_dir() -> str:
    """The folder of the plugins that ship (keepalive.py, hunting.py, trunks.py): the installed package's
    ``bundled_plugins`` (a link to /usr/share/minisip/plugins in the Debian package), else the checkout's
    ``plugins/``. The real path, so that logs name the files an administrator can open."""
    return _shipped("bundled_plugins", "plugins")


def sample_config() -> str:
    """The commented sample configuration: the installed package's copy, else the checkout's etc/minisip.conf."""
    return _shipped(os.path.join("sample", "minisip.conf"), os.path.join("etc", "minisip.conf"))
