"""What a newcomer reads on the console: the next steps once minisip is ready, or how to start at all.

Pure text building (no Twisted, no I/O): ``ready_lines`` is logged at the end of ``Server.start()``,
``no_config_lines`` is what ``twistd minisip`` prints when there is no configuration to load.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from minisip.config import Config, Listen

__all__ = ["Bound", "bound_addresses", "no_config_lines", "ready_lines"]

MAX_LISTED = 10                 # extensions listed by number; the rest are counted
_PHONES = "a softphone such as baresip, Linphone or Zoiper, or a desk phone"
_DEFAULT_PORTS = {"udp": 5060, "tcp": 5060, "tls": 5061}


@dataclass(frozen=True, slots=True)
class Bound:
    """One listening socket as bound (the real port, also when the config asked for port 0)."""

    transport: str              # udp, tcp or tls
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport} {host}:{self.port}"


def bound_addresses(config: Config, ports: Sequence[Any]) -> list[Bound]:
    """The listening ports ``Server.start()`` opened, which are the [sip] udp, then tcp, then tls
    addresses in config order, paired with their transport (``getHost()`` gives the bound port)."""
    transports = ["udp"] * len(config.udp) + ["tcp"] * len(config.tcp) + ["tls"] * len(config.tls)
    out: list[Bound] = []
    for transport, port in zip(transports, ports):
        address = port.getHost()
        out.append(Bound(transport, str(address.host), int(address.port)))
    return out


def _unspecified(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def _server_lines(config: Config, bound: Sequence[Bound]) -> list[str]:
    """Where a phone registers: one line per address, with the ports of each transport there."""
    by_host: dict[str, list[Bound]] = {}
    for b in bound:
        # A wildcard listener is reached at the machine's own address: the SIP domain names it.
        by_host.setdefault(config.domain if _unspecified(b.host) else b.host, []).append(b)
    lines = []
    for host, items in by_host.items():
        shown = f"[{host}]" if ":" in host else host
        ports = ", ".join(f"port {b.port} ({b.transport.upper()})" for b in items)
        lines.append(f"    SIP server / registrar / proxy: {shown}, {ports}")
    return lines


def ready_lines(config: Config, bound: Sequence[Bound]) -> list[str]:
    """What to do next, for the console once the server is ready: the addresses it listens on, how to
    point a phone at it, and where the configuration and the data are. Passwords are shown only when
    every listener (SIP and WSS) is loopback, where only this machine can use them."""
    lines = ["Next steps for a first call:"]
    if bound:
        lines.append("  Listening for SIP on " + ", ".join(str(b) for b in bound) + ".")
    else:
        lines.append(f"  No SIP listener is configured: set [sip] udp, tcp or tls in {config.path}.")
    listens: Iterable[Listen] = (*config.udp, *config.tcp, *config.tls, *config.mccp_wss)
    loopback = all(listen.is_loopback for listen in listens)
    extensions = sorted(config.extensions.values(), key=lambda e: e.number)
    if bound and extensions:
        lines.append(f"  Point a phone ({_PHONES}) at it:")
        lines += _server_lines(config, bound)
        lines.append(f"    domain (realm): {config.domain}")
        lines.append("    user name and authentication name: the extension number, one of:")
        for ext in extensions[:MAX_LISTED]:
            name = f" ({ext.name})" if ext.name else ""
            password = f", password {ext.password}" if loopback else ""
            lines.append(f"      {ext.number}{name}{password}")
        if len(extensions) > MAX_LISTED:
            lines.append(f"      ... and {len(extensions) - MAX_LISTED} more")
        if not loopback:
            lines.append(f"    password: the extension's password in its [extension N] section of {config.path}")
        if loopback:
            lines.append("    (loopback only: just phones on this machine can reach it; for phones on the LAN, set "
                         "[sip] udp/tcp/tls to the LAN address and give every extension a strong password)")
        if len(extensions) > 1:
            lines.append(f"  Then dial one extension from another, e.g. {extensions[1].number} from "
                         f"{extensions[0].number}.")
        if config.tls:
            lines.append("  For TLS the phone must trust the server's certificate (its SHA-256 fingerprint is "
                         "logged above).")
    elif not extensions:
        lines.append(f"  No extensions yet: add an [extension 100] section with a password to {config.path}, "
                     "then reload.")
    lines.append(f"  Configuration: {config.path} (edit it, then `kill -HUP <pid>` to reload).")
    lines.append(f"  Data (registrations, call records, TLS certificates): {config.datadir}")
    return lines


def no_config_lines(default_config: str, sample: str) -> list[str]:
    """Why ``twistd minisip`` cannot start without --config, and how to start from the sample."""
    return [
        f"no configuration: --config FILE was not given and {default_config} does not exist.",
        "To try minisip with the sample configuration (loopback only, extensions 100 and 101):",
        f"    twistd -n minisip --config {sample}",
        "or copy the sample, edit the copy (domain, addresses, extensions, passwords) and start with it:",
        f"    cp {sample} minisip.conf && twistd -n minisip --config minisip.conf",
        f"(or install it as {default_config} and run `twistd -n minisip`; Debian's twistd is twistd3).",
    ]
