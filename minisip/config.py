"""The INI configuration file, read and validated into one frozen :class:`Config`.

Every problem is a :class:`ConfigError` that names the file, the section and the key, so an
administrator can go straight to the line to fix. A file with any error is refused whole; on a
reload the old configuration stays in force.

Secure by default: when ``[sip]`` does not name ``udp``, ``tcp`` or ``tls``, minisip listens on
``127.0.0.1:5060`` (UDP and TCP) and ``127.0.0.1:5061`` (TLS) only. An empty value turns that
transport off. As soon as any SIP (or MCCP) listen address is not loopback, guessable extension
passwords are refused.
"""

from __future__ import annotations

import configparser
import ipaddress
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from minisip.media.ports import parse_port_range
from minisip.paths import BUNDLED, bundled_plugins_dir

__all__ = [
    "DEFAULT_DATADIR",
    "Config",
    "ConfigError",
    "Extension",
    "Listen",
    "load_config",
    "parse_listen",
]

DEFAULT_DATADIR = "~/.minisipserver"
MIN_PASSWORD_LENGTH = 8

# Keys each core section accepts; anything else is a typo and refused.
_CORE_SECTIONS: dict[str, frozenset[str]] = {
    "server": frozenset({"domain", "datadir"}),
    "sip": frozenset(
        {
            "udp",
            "tcp",
            "tls",
            "tls_certificate",
            "tls_private_key",
            "idle_timeout",
            "max_connections_per_host",
            "max_message_size",
            "no_answer_timeout",
        }
    ),
    "mccp": frozenset({"wss", "origins"}),
    "media": frozenset({"address", "ports", "relay", "timeout", "sdes_over_insecure"}),
    "registrar": frozenset({"min_expires", "max_expires", "default_expires"}),
    "security": frozenset({"max_failures", "failure_window", "ban_time", "digest_algorithms"}),
    "plugins": frozenset({"directories", "disable"}),
}
_EXTENSION_KEYS = frozenset({"password", "name", "digest_algorithms", "phone_display_name", "media_encryption"})
# MD5 alone by default: baresip 1.0 (libre) fails when any challenge names another algorithm, and
# twinkle 1.10 reads only the last challenge; SHA-256 is one setting away (server-wide or per extension).
DEFAULT_DIGEST_ALGORITHMS = ("MD5",)
# Flood limits (issue 8.9): connections in all, and the deadline of a message under way on a stream.
_CORE_SECTIONS["security"] = _CORE_SECTIONS["security"] | frozenset({
    "max_connections", "message_timeout", "extension_max_failures", "extension_failure_window",
    "extension_lock_time", "max_calls_per_extension", "max_calls_per_trunk"})

# A section name no real file uses, so that a [DEFAULT] section is an ordinary (refused) section
# instead of silently applying its keys to every other section.
_NO_DEFAULT_SECTION = "\x00minisip-no-default"

_HOST_LABEL_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_DIGITS_RE = re.compile(r"^[0-9]+$")
# RFC 3261 user part without escapes and without ';', '?' and '/', which confuse URI parsing.
_USER_TOKEN_RE = re.compile(r"^[A-Za-z0-9\-_.!~*'()&=+$,]+$")
_INT_RE = re.compile(r"^\+?[0-9]+$")


class ConfigError(Exception):
    """The configuration is unusable; the text names the file, the section and the key."""

    def __init__(
        self, message: str, file: str | None = None, section: str | None = None, key: str | None = None
    ) -> None:
        self.message = message
        self.file = file
        self.section = section
        self.key = key
        super().__init__(self._render())

    def _render(self) -> str:
        where = []
        if self.file is not None:
            where.append(f"{self.file}:")
        if self.section is not None:
            where.append(f"[{self.section}]" if self.key is not None else f"[{self.section}]:")
        if self.key is not None:
            where.append(f"{self.key}:")
        where.append(self.message)
        return " ".join(where)

    def __str__(self) -> str:
        return self._render()


@dataclass(frozen=True, slots=True)
class Listen:
    """One address to listen on; ``host`` is an IP literal (IPv6 without brackets) or a hostname."""

    host: str
    port: int

    def __str__(self) -> str:
        if ":" in self.host:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"

    @property
    def is_loopback(self) -> bool:
        """True for 127.0.0.0/8, ::1 and ``localhost``: only this machine can reach it."""
        if self.host.lower().rstrip(".") == "localhost":
            return True
        try:
            address = ipaddress.ip_address(self.host)
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            return address.ipv4_mapped.is_loopback
        return address.is_loopback


@dataclass(frozen=True, slots=True)
class Extension:
    """An ``[extension N]`` section: the account a phone registers and is called with."""

    number: str
    password: str
    name: str | None
    # Digest algorithms of this extension's challenges, in order; None: [security] digest_algorithms.
    digest_algorithms: tuple[str, ...] | None = None
    # Show callees the display name the phone sends (From); by default they see ``name`` or the number.
    phone_display_name: bool = False
    # auto | none | sdes | dtls | required: the media encryption offered to (and accepted from) this phone.
    media_encryption: str = "auto"


@dataclass(frozen=True, slots=True)
class Config:
    """The whole configuration, validated; a reload builds a new one."""

    path: str
    domain: str
    datadir: str
    udp: tuple[Listen, ...]
    tcp: tuple[Listen, ...]
    tls: tuple[Listen, ...]
    tls_certificate: str | None
    tls_private_key: str | None
    media_address: str | None
    extensions: Mapping[str, Extension]
    max_failures: int = 5
    failure_window: float = 60
    ban_time: float = 600
    extension_max_failures: int = 10
    extension_failure_window: float = 60
    extension_lock_time: float = 300
    max_calls_per_extension: int = 20
    max_calls_per_trunk: int = 200
    media_ports: tuple[int, int] = (20000, 29999)
    media_relay: str = "auto"
    media_timeout: float = 60.0
    media_sdes_over_insecure: bool = False
    idle_timeout: float = 600
    max_connections_per_host: int = 32
    max_message_size: int = 65535
    max_connections: int = 1024
    message_timeout: float = 10
    registration_min_expires: int = 60
    registration_max_expires: int = 3600
    registration_default_expires: int = 3600
    plugin_directories: tuple[str, ...] = ()
    plugins_disable: tuple[str, ...] = ()
    mccp_wss: tuple[Listen, ...] = ()
    # Who may open MCCP: same, null, * or origins (checked when the WSS service is built).
    mccp_origins: tuple[str, ...] = ("same", "null")
    no_answer_timeout: float = 60
    digest_algorithms: tuple[str, ...] = DEFAULT_DIGEST_ALGORITHMS
    other_sections: Mapping[str, Mapping[str, str]] = field(default_factory=lambda: MappingProxyType({}))


def _host_kind(host: str) -> str | None:
    """'ipv4', 'ipv6' or 'name' for a valid host (IPv6 without brackets), None when invalid."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return "ipv6" if address.version == 6 else "ipv4"
    name = host.removesuffix(".")
    if not name or len(name) > 253:
        return None
    labels = name.split(".")
    if not all(_HOST_LABEL_RE.match(label) for label in labels):
        return None
    if _DIGITS_RE.match(labels[-1]):
        return None  # "1.2.3" or "300.1.1.1": a mistyped IPv4 address, not a name
    return "name"


def parse_listen(
    value: str, file: str | None = None, section: str | None = None, key: str | None = None
) -> tuple[Listen, ...]:
    """Parse ``"0.0.0.0:5060 [::1]:5060"`` (spaces or commas between); empty gives ``()``."""
    result: list[Listen] = []
    for token in value.replace(",", " ").split():

        def bad(why: str, token: str = token) -> ConfigError:
            return ConfigError(f"bad address {token!r} (expected host:port): {why}", file, section, key)

        if token.startswith("["):
            host, sep, port_text = token[1:].partition("]:")
            if not sep:
                raise bad("an IPv6 address is written [address]:port")
            if _host_kind(host) != "ipv6":
                raise bad(f"{host!r} is not an IPv6 address")
        else:
            host, sep, port_text = token.rpartition(":")
            if not sep:
                raise bad("the port is missing")
            if not host:
                raise bad("the host is missing (0.0.0.0 means every IPv4 address)")
            if ":" in host:
                raise bad("an IPv6 address is written in brackets, e.g. [::1]:5060")
            if _host_kind(host) is None:
                raise bad(f"{host!r} is neither an IP address nor a hostname")
        if not _DIGITS_RE.match(port_text) or not 1 <= int(port_text) <= 65535:
            raise bad(f"port {port_text!r} is not a number from 1 to 65535")
        listen = Listen(host.lower() if _host_kind(host) == "name" else host, int(port_text))
        if listen in result:
            raise ConfigError(f"address {listen} is listed twice", file, section, key)
        result.append(listen)
    return tuple(result)


class _Section:
    """Typed access to one section's values, with errors that say where."""

    def __init__(self, file: str, name: str, values: Mapping[str, str]) -> None:
        self.file = file
        self.name = name
        self.values = values

    def error(self, key: str | None, message: str) -> ConfigError:
        return ConfigError(message, self.file, self.name, key)

    def check_keys(self, allowed: frozenset[str]) -> None:
        for key in self.values:
            if key not in allowed:
                raise self.error(key, f"unknown key (known here: {', '.join(sorted(allowed))})")

    def text(self, key: str, default: str | None = None) -> str | None:
        """The stripped value; ``default`` when the key is absent; None when it is empty."""
        if key not in self.values:
            return default
        value = self.values[key].strip()
        return value or None

    def required(self, key: str) -> str:
        value = self.text(key)
        if value is None:
            raise self.error(key, "a value is required")
        return value

    def integer(self, key: str, default: int) -> int:
        if key not in self.values:
            return default
        value = self.values[key].strip()
        if not _INT_RE.match(value):
            raise self.error(key, f"{value!r} is not a whole number (the default is {default})")
        number = int(value)
        if number <= 0:
            raise self.error(key, f"{value!r} must be positive")
        return number

    def number(self, key: str, default: float) -> float:
        if key not in self.values:
            return default
        value = self.values[key].strip()
        try:
            number = float(value)
        except ValueError:
            raise self.error(key, f"{value!r} is not a number (the default is {default:g})") from None
        if not number > 0 or number == float("inf"):
            raise self.error(key, f"{value!r} must be a positive number")
        return number

    def listen(self, key: str, default: str = "") -> tuple[Listen, ...]:
        value = self.values.get(key, default)
        return parse_listen(value, self.file, self.name, key)

    def host(self, key: str, value: str) -> str:
        """Check an IP literal (IPv6 with or without brackets) or hostname; returns it unbracketed."""
        bracketed = value.startswith("[") and value.endswith("]")
        bare = value[1:-1] if bracketed else value
        kind = _host_kind(bare)
        if kind is None or (bracketed and kind != "ipv6"):
            raise self.error(key, f"{value!r} is neither an IP address nor a hostname")
        return bare.lower() if kind == "name" else bare


def _resolve(path: str, base_dir: str) -> str:
    """``~`` expanded, relative paths taken from the config file's folder, absolute result."""
    path = os.path.expanduser(path)
    return os.path.abspath(os.path.join(base_dir, path))


def _words(value: str | None) -> tuple[str, ...]:
    return tuple((value or "").replace(",", " ").split())


def _read_file(path: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(
        comment_prefixes=(";", "#"),
        inline_comment_prefixes=(";", "#"),
        interpolation=None,
        strict=True,
        default_section=_NO_DEFAULT_SECTION,
    )
    try:
        with open(path, encoding="utf-8-sig") as stream:  # utf-8-sig: Notepad writes a BOM
            parser.read_file(stream, source=path)
    except FileNotFoundError:
        raise ConfigError("no such file", path) from None
    except IsADirectoryError:
        raise ConfigError("is a directory, not a configuration file", path) from None
    except OSError as e:
        raise ConfigError(f"cannot read: {e.strerror or e}", path) from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"not UTF-8 text (byte {e.start})", path) from None
    except configparser.DuplicateSectionError as e:
        raise ConfigError(f"line {e.lineno}: section appears twice", path, e.section) from None
    except configparser.DuplicateOptionError as e:
        raise ConfigError(f"line {e.lineno}: key appears twice in this section", path, e.section, e.option) from None
    except configparser.MissingSectionHeaderError as e:
        raise ConfigError(f"line {e.lineno}: {e.line.strip()!r} comes before the first [section]", path) from None
    except configparser.ParsingError as e:
        lineno, line = e.errors[0]
        raise ConfigError(f"line {lineno}: cannot parse {line.strip()!r} (expected key = value)", path) from None
    except configparser.Error as e:
        raise ConfigError(str(e), path) from None
    return parser


def _weakness(number: str, password: str) -> str | None:
    """Why a password is guessable, or None."""
    if password == number:
        return "it equals the extension number"
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"it is shorter than {MIN_PASSWORD_LENGTH} characters"
    if len(set(password)) == 1:
        return "it is one character repeated"
    return None


def _check_tls_file(section: _Section, key: str, path: str) -> None:
    if not os.path.isfile(path):
        raise section.error(key, f"no such file {path!r}")
    try:
        with open(path, "rb"):
            pass
    except OSError as e:
        raise section.error(key, f"cannot read {path!r}: {e.strerror or e}") from None


def load_config(path: str, datadir_override: str | None = None, known_prefixes: Iterable[str] = ()) -> Config:
    """Read and validate ``path``; raise :class:`ConfigError` on the first problem.

    ``datadir_override`` (e.g. from the command line) replaces ``[server] datadir``.
    ``known_prefixes`` are the first words of plugin sections (``hunt`` for ``[hunt 600]``);
    such sections are returned untouched in ``other_sections``, any other unknown one is refused.
    ``"*"`` accepts every section there (the plugin loader then refuses the ones no plugin claims).
    """
    parser = _read_file(path)
    base_dir = os.path.dirname(os.path.abspath(path))
    prefixes = frozenset(known_prefixes)

    sections: dict[str, _Section] = {}
    extensions: dict[str, Extension] = {}
    extension_sections: dict[str, str] = {}
    other: dict[str, Mapping[str, str]] = {}
    for name in parser.sections():
        values = dict(parser.items(name, raw=True))
        section = _Section(path, name, values)
        words = name.split()
        if name in _CORE_SECTIONS:
            section.check_keys(_CORE_SECTIONS[name])
            sections[name] = section
        elif words and words[0] == "extension":
            extension = _read_extension(section, words)
            if extension.number in extensions:
                raise section.error(
                    None, f"extension {extension.number} is already defined by [{extension_sections[extension.number]}]"
                )
            extensions[extension.number] = extension
            extension_sections[extension.number] = name
        elif words and (words[0] in prefixes or "*" in prefixes):
            other[name] = MappingProxyType(values)
        else:
            known = ", ".join(f"[{s}]" for s in _CORE_SECTIONS)
            hint = f"; plugin sections start with: {', '.join(sorted(prefixes))}" if prefixes else ""
            raise ConfigError(f"unknown section (known: {known}, [extension N]{hint})", path, name)

    def get(name: str) -> _Section:
        return sections.get(name) or _Section(path, name, {})

    server = get("server")
    if "server" not in sections:
        raise ConfigError("section [server] is missing (it must give the SIP domain)", path)
    domain_text = server.required("domain")
    domain = server.host("domain", domain_text)
    if ":" in domain:
        domain = f"[{domain}]"  # IPv6 as it appears in SIP URIs
    if datadir_override is not None:
        datadir = os.path.abspath(os.path.expanduser(datadir_override))
    else:
        datadir = _resolve(server.text("datadir") or DEFAULT_DATADIR, base_dir)

    sip = get("sip")
    udp = sip.listen("udp", "127.0.0.1:5060")
    tcp = sip.listen("tcp", "127.0.0.1:5060")
    tls = sip.listen("tls", "127.0.0.1:5061")
    certificate = sip.text("tls_certificate")
    private_key = sip.text("tls_private_key")
    if (certificate is None) != (private_key is None):
        missing = "tls_private_key" if private_key is None else "tls_certificate"
        raise sip.error(missing, "tls_certificate and tls_private_key go together: give both or neither")
    if certificate is not None and private_key is not None:
        certificate = _resolve(certificate, base_dir)
        private_key = _resolve(private_key, base_dir)
        _check_tls_file(sip, "tls_certificate", certificate)
        _check_tls_file(sip, "tls_private_key", private_key)

    mccp = get("mccp")
    wss = mccp.listen("wss")
    origins = _words(mccp.text("origins")) or ("same", "null")
    _check_stream_conflicts(path, (("sip", "tcp", tcp), ("sip", "tls", tls), ("mccp", "wss", wss)))

    media = get("media")
    media_text = media.text("address")
    media_address = media.host("address", media_text) if media_text is not None else None
    try:
        media_ports = parse_port_range(media.text("ports") or "20000-29999")
    except ValueError as e:
        raise media.error("ports", str(e)) from None
    media_relay = (media.text("relay") or "auto").lower()
    if media_relay not in ("always", "auto", "never"):
        raise media.error("relay", f"{media_relay!r} is not always, auto or never")
    timeout_text = media.text("timeout") or "60"
    try:
        media_timeout = float(timeout_text)
    except ValueError:
        raise media.error("timeout", f"{timeout_text!r} is not a number of seconds (0 = off)") from None
    if not 0 <= media_timeout < float("inf"):
        raise media.error("timeout", f"{timeout_text!r} must be 0 (off) or a positive number of seconds")
    insecure = (media.text("sdes_over_insecure") or "no").lower()
    if insecure not in ("yes", "no"):
        raise media.error("sdes_over_insecure", f"{insecure!r} is not yes or no")

    registrar = get("registrar")
    min_expires = registrar.integer("min_expires", 60)
    max_expires = registrar.integer("max_expires", 3600)
    default_expires = registrar.integer("default_expires", 3600)
    if min_expires > max_expires:
        raise registrar.error("min_expires", f"{min_expires} is above max_expires ({max_expires})")
    if not min_expires <= default_expires <= max_expires:
        raise registrar.error(
            "default_expires", f"{default_expires} is outside min_expires..max_expires ({min_expires}..{max_expires})"
        )

    security = get("security")
    algorithms = _digest_algorithms(security) or DEFAULT_DIGEST_ALGORITHMS
    plugins = get("plugins")
    # The word "bundled" is the folder of the plugins that ship with minisip, wherever it is installed.
    directories = tuple(bundled_plugins_dir() if d == BUNDLED else _resolve(d, base_dir)
                        for d in _words(plugins.text("directories")))
    for directory in directories:
        if not os.path.isdir(directory):
            raise plugins.error("directories", f"no such directory {directory!r}")

    exposed = [listen for listen in (*udp, *tcp, *tls, *wss) if not listen.is_loopback]
    if exposed:
        for number, extension in extensions.items():
            why = _weakness(number, extension.password)
            if why is not None:
                raise ConfigError(
                    f"weak password refused: {why}. minisip listens on {exposed[0]}, which is not loopback, "
                    f"so passwords must have at least {MIN_PASSWORD_LENGTH} characters, not be the extension "
                    "number and not be one character repeated",
                    path,
                    extension_sections[number],
                    "password",
                )

    return Config(
        path=os.path.abspath(path),
        domain=domain,
        datadir=datadir,
        udp=udp,
        tcp=tcp,
        tls=tls,
        tls_certificate=certificate,
        tls_private_key=private_key,
        media_address=media_address,
        media_ports=media_ports,
        media_relay=media_relay,
        media_timeout=media_timeout,
        media_sdes_over_insecure=insecure == "yes",
        extensions=MappingProxyType(extensions),
        max_failures=security.integer("max_failures", 5),
        failure_window=security.number("failure_window", 60),
        ban_time=security.number("ban_time", 600),
        extension_max_failures=security.integer("extension_max_failures", 10),
        extension_failure_window=security.number("extension_failure_window", 60),
        extension_lock_time=security.number("extension_lock_time", 300),
        max_calls_per_extension=security.integer("max_calls_per_extension", 20),
        max_calls_per_trunk=security.integer("max_calls_per_trunk", 200),
        idle_timeout=sip.number("idle_timeout", 600),
        max_connections_per_host=sip.integer("max_connections_per_host", 32),
        max_message_size=sip.integer("max_message_size", 65535),
        max_connections=security.integer("max_connections", 1024),
        message_timeout=security.number("message_timeout", 10),
        registration_min_expires=min_expires,
        registration_max_expires=max_expires,
        registration_default_expires=default_expires,
        plugin_directories=directories,
        plugins_disable=_words(plugins.text("disable")),
        mccp_wss=wss,
        mccp_origins=origins,
        no_answer_timeout=sip.number("no_answer_timeout", 60),
        digest_algorithms=algorithms,
        other_sections=MappingProxyType(other),
    )


def _read_extension(section: _Section, words: list[str]) -> Extension:
    if len(words) != 2:
        raise section.error(None, "expected [extension NUMBER], e.g. [extension 100]")
    number = words[1]
    if not (_DIGITS_RE.match(number) or _USER_TOKEN_RE.match(number)):
        raise section.error(
            None, f"{number!r} is not an extension number (digits, or letters, digits and -_.!~*'()&=+$,)"
        )
    section.check_keys(_EXTENSION_KEYS)
    password = section.values.get("password", "").strip()
    if not password:
        raise section.error("password", "a non-empty password is required")
    flag = (section.text("phone_display_name") or "no").lower()
    if flag not in ("yes", "no"):
        raise section.error("phone_display_name", f"{flag!r} is not yes or no")
    encryption = (section.text("media_encryption") or "auto").lower()
    if encryption not in ("auto", "none", "sdes", "dtls", "required"):
        raise section.error("media_encryption", f"{encryption!r} is not auto, none, sdes, dtls or required")
    return Extension(number=number, password=password, name=section.text("name"),
                     digest_algorithms=_digest_algorithms(section), phone_display_name=flag == "yes",
                     media_encryption=encryption)


def _digest_algorithms(section: _Section) -> tuple[str, ...] | None:
    """The section's ``digest_algorithms`` (MD5 and/or SHA-256, in challenge order), None when not given."""
    text = section.text("digest_algorithms")
    if text is None:
        return None
    algorithms = tuple(a.upper() for a in _words(text))
    for a in algorithms:
        if a not in ("MD5", "SHA-256"):
            raise section.error("digest_algorithms", f"unknown algorithm {a!r} (use MD5 and/or SHA-256)")
    if not algorithms or len(set(algorithms)) != len(algorithms):
        raise section.error("digest_algorithms", "list MD5 and/or SHA-256 once each")
    return algorithms


def _check_stream_conflicts(path: str, groups: Iterable[tuple[str, str, tuple[Listen, ...]]]) -> None:
    """TCP, TLS and WSS all need TCP sockets: the same address twice cannot be bound."""
    seen: dict[Listen, str] = {}
    for section, key, listens in groups:
        for listen in listens:
            if listen in seen:
                raise ConfigError(f"address {listen} is already used by {seen[listen]}", path, section, key)
            seen[listen] = f"[{section}] {key}"
