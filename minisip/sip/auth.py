"""Digest authentication for SIP (RFC 2617, RFC 7616, RFC 8760), server and client side.

Pure code: no Twisted, no I/O. Time comes from a ``clock`` with ``seconds() -> float`` (Twisted's
``IReactorTime`` provides it). The server keeps no per-challenge state: a nonce carries its own
issue time and an HMAC over it, so any nonce we issued can be checked after the fact; the only
state is the highest nonce-count accepted per nonce (bounded), for replay protection.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import itertools
import secrets
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "ALGORITHMS", "AuthResult", "Clock", "DigestAuthenticator", "build_authorization", "digest_response",
    "parse_auth_header",
]


class Clock(Protocol):
    """The part of ``IReactorTime`` the authenticator needs."""

    def seconds(self) -> float: ...


# Digest algorithm name (upper case, as compared) -> (hashlib name, is "-sess").
ALGORITHMS: dict[str, tuple[str, bool]] = {
    "MD5": ("md5", False),
    "MD5-SESS": ("md5", True),
    "SHA-256": ("sha256", False),
    "SHA-256-SESS": ("sha256", True),
}
_CANONICAL_ALGORITHM = {"MD5": "MD5", "MD5-SESS": "MD5-sess", "SHA-256": "SHA-256", "SHA-256-SESS": "SHA-256-sess"}

_TOKEN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~")
_HEX_CHARS = frozenset("0123456789abcdefABCDEF")
_LWS = " \t\r\n"
# Characters an unquoted parameter value may not contain (it runs up to the next comma).
_UNQUOTED_FORBIDDEN = frozenset(' \t\r\n"')

_NONCE_RANDOM = 8
_NONCE_MAC = 16
_NONCE_RAW = 8 + _NONCE_RANDOM + _NONCE_MAC
_NONCE_LEN = 43  # base64url of 32 bytes, unpadded
_NONCE_TS = struct.Struct(">Q")
_NONCE_HEAD = struct.Struct(">QQ")  # issue time in ms, then the unique part (_NONCE_RANDOM bytes)

# Computed against for unknown users so both paths cost the same; never a real password.
_DUMMY_PASSWORD = "\x00minisip-no-such-user\x00"


@dataclass(frozen=True, slots=True)
class AuthResult:
    """The outcome of checking one Authorization value.

    ``username`` is the name the client claimed (None when it could not be read), also on failure,
    so the caller can log the extension tried. ``stale`` asks the caller to re-challenge with
    ``stale=true``: the client knows the password and only needs a fresh nonce.
    """

    ok: bool
    username: str | None
    stale: bool = False
    reason: str = ""


def _split_scheme(value: str) -> tuple[str, str]:
    """Split ``"Scheme rest"`` into the scheme token and the rest; ValueError if there is no token."""
    parts = value.split(None, 1)
    if not parts or not _TOKEN_CHARS.issuperset(parts[0]):
        raise ValueError("bad auth scheme")
    return parts[0], parts[1] if len(parts) > 1 else ""


def _parse_params(rest: str) -> dict[str, str]:
    """Parse ``name=value, name="quoted \\" value"`` pairs; names are lower-cased."""
    params: dict[str, str] = {}
    n = len(rest)
    pos = 0
    while True:
        # Skip white space and empty list elements (RFC 7230 7).
        while pos < n and (rest[pos] in _LWS or rest[pos] == ","):
            pos += 1
        if pos >= n:
            return params
        eq = rest.find("=", pos)
        if eq < 0:
            raise ValueError("parameter without '='")
        name = rest[pos:eq].strip(_LWS).lower()
        if not name or not _TOKEN_CHARS.issuperset(name):
            raise ValueError("bad parameter name")
        pos = eq + 1
        while pos < n and rest[pos] in _LWS:
            pos += 1
        if pos < n and rest[pos] == '"':
            start = pos + 1
            close = rest.find('"', start)
            if close < 0:
                raise ValueError("unterminated quoted string")
            bs = rest.find("\\", start, close)
            if bs < 0:
                val = rest[start:close]
                pos = close + 1
            else:
                parts: list[str] = []
                j = start
                while True:
                    close = rest.find('"', j)
                    if close < 0:
                        raise ValueError("unterminated quoted string")
                    bs = rest.find("\\", j, close)
                    if bs < 0:
                        parts.append(rest[j:close])
                        pos = close + 1
                        break
                    if bs + 1 >= n:
                        raise ValueError("dangling escape")
                    parts.append(rest[j:bs])
                    parts.append(rest[bs + 1])
                    j = bs + 2
                val = "".join(parts)
        else:
            comma = rest.find(",", pos)
            if comma < 0:
                comma = n
            val = rest[pos:comma].rstrip(_LWS)
            if not val or not _UNQUOTED_FORBIDDEN.isdisjoint(val):
                raise ValueError("bad parameter value")
            pos = comma
        if name in params:
            raise ValueError(f"duplicate parameter {name}")
        params[name] = val
        while pos < n and rest[pos] in _LWS:
            pos += 1
        if pos < n:
            if rest[pos] != ",":
                raise ValueError("expected ','")
            pos += 1


def parse_auth_header(value: str) -> tuple[str, dict[str, str]]:
    """Parse a WWW-Authenticate / Authorization value into (scheme, params); ValueError on garbage.

    Parameter names are lower-cased; quoted values are unquoted with their backslash escapes undone.
    """
    scheme, rest = _split_scheme(value)
    return scheme, _parse_params(rest)


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


_HASHES = {"md5": hashlib.md5, "sha256": hashlib.sha256}  # the constructors: hashlib.new looks the name up each time


def _hash(hash_name: str, text: str) -> str:
    return _HASHES[hash_name](text.encode("utf-8")).hexdigest()


def digest_response(
    algorithm: str, username: str, realm: str, password: str, method: str, uri: str, nonce: str,
    nc: str | None = None, cnonce: str | None = None, qop: str | None = None,
) -> str:
    """The request-digest of RFC 2617 3.2.2.1 / RFC 7616 3.4.1 for qop=auth or no qop.

    ``algorithm`` is one of ``ALGORITHMS`` (any case); ``nc`` is the 8-hex-digit string as sent.
    Raises KeyError for an unknown algorithm.
    """
    hash_name, sess = ALGORITHMS[algorithm.upper()]
    ha1 = _hash(hash_name, f"{username}:{realm}:{password}")
    if sess:
        ha1 = _hash(hash_name, f"{ha1}:{nonce}:{cnonce or ''}")
    ha2 = _hash(hash_name, f"{method}:{uri}")
    if qop:
        return _hash(hash_name, f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")
    return _hash(hash_name, f"{ha1}:{nonce}:{ha2}")


class DigestAuthenticator:
    """Issues digest challenges and checks the answers, for one realm.

    Choices:

    - qop=auth is always offered and required: a response without qop (RFC 2069 style) is refused
      with reason "qop required", because without a nonce-count replays cannot be told apart.
      qop=auth-int is not offered and is refused ("unsupported qop").
    - A correct response whose nonce expired, was not issued by us (e.g. before a restart with a new
      secret), or reuses a nonce-count already accepted gets ``stale=True``: the client proved it
      knows the password, so it may retry at once with a fresh nonce without asking its user.
    - An unknown user goes through the same computation (against a dummy password) and gets the very
      same result as a wrong password.
    - The opaque value is echoed by clients but not checked (the nonce carries all we need). The
      ``uri`` parameter must be present; comparing it with the Request-URI is left to the caller.
    - Nonce counts are tracked for at most ``max_tracked_nonces`` nonces; the least recently started
      ones are forgotten first, and expired ones as soon as they reach the front.
    """

    def __init__(
        self, realm: str, clock: Clock, secret: bytes | None = None, nonce_ttl: float = 300.0,
        max_tracked_nonces: int = 100_000,
    ) -> None:
        self.realm = realm
        self.nonce_ttl = nonce_ttl
        self.max_tracked_nonces = max_tracked_nonces
        self._clock = clock
        self._nonce_seq = itertools.count(int.from_bytes(secrets.token_bytes(8), "big"))
        self._secret = secret if secret is not None else secrets.token_bytes(32)
        self.opaque = hmac.digest(self._secret, b"minisip opaque", "sha256")[:12].hex()
        # nonce id -> highest nc accepted; insertion order is first-use order. The id is the nonce's
        # issue time (ms, top 64 bits) and random part as one int: ~50 bytes a nonce instead of ~170
        # for the string, a tuple and a float, and the expiry time is computed from it.
        self._nonce_counts: dict[int, int] = {}

    # -- nonces --------------------------------------------------------------------------------

    def _mac(self, head: bytes) -> bytes:
        return hmac.digest(self._secret, head + self.realm.encode("utf-8"), "sha256")[:_NONCE_MAC]

    def _make_nonce(self) -> str:
        ts = max(0, int(self._clock.seconds() * 1000))
        # The second half only has to be unique (the MAC makes nonces unforgeable): a counter from a
        # random start costs no system call per challenge, unlike secrets.token_bytes.
        head = _NONCE_HEAD.pack(ts, next(self._nonce_seq) & 0xFFFFFFFFFFFFFFFF)
        return base64.urlsafe_b64encode(head + self._mac(head)).rstrip(b"=").decode("ascii")

    def _nonce_id(self, nonce: str) -> int | None:
        """One of our nonces as an int (issue time in ms << 64 | random), or None when we did not issue
        it (for this realm)."""
        if len(nonce) != _NONCE_LEN:
            return None
        try:
            raw = base64.urlsafe_b64decode(nonce + "=")
        except (binascii.Error, ValueError):
            return None
        if len(raw) != _NONCE_RAW:
            return None
        head = raw[:-_NONCE_MAC]
        if not hmac.compare_digest(raw[-_NONCE_MAC:], self._mac(head)):
            return None
        return int.from_bytes(head, "big")

    def _expiry(self, nonce_id: int) -> float:
        return (nonce_id >> (8 * _NONCE_RANDOM)) / 1000.0 + self.nonce_ttl

    # -- server API ----------------------------------------------------------------------------

    def challenge(self, stale: bool = False) -> list[str]:
        """Header values for WWW-Authenticate / Proxy-Authenticate: SHA-256 first, then MD5."""
        nonce = self._make_nonce()
        tail = ", stale=true" if stale else ""
        common = f"Digest realm={_quote(self.realm)}, nonce=\"{nonce}\", opaque=\"{self.opaque}\""
        return [
            f'{common}, algorithm=SHA-256, qop="auth"{tail}',
            f'{common}, algorithm=MD5, qop="auth"{tail}',
        ]

    def verify(self, method: str, header_value: str, lookup_password: Callable[[str], str | None]) -> AuthResult:
        """Check one Authorization / Proxy-Authorization value for a request with this method.

        ``lookup_password(username)`` returns the plain password or None for an unknown user.
        Never raises for anything in ``header_value``.
        """
        try:
            scheme, rest = _split_scheme(header_value)
        except ValueError:
            return AuthResult(False, None, reason="malformed")
        if scheme.lower() != "digest":
            return AuthResult(False, None, reason="unsupported scheme")
        try:
            params = _parse_params(rest)
        except ValueError:
            return AuthResult(False, None, reason="malformed")

        username = params.get("username")
        realm = params.get("realm")
        nonce = params.get("nonce")
        uri = params.get("uri")
        response = params.get("response")
        if not username or realm is None or nonce is None or not uri or not response:
            return AuthResult(False, username or None, reason="malformed")
        if realm != self.realm:
            return AuthResult(False, username, reason="wrong realm")
        algorithm = params.get("algorithm", "MD5").upper()
        if algorithm not in ALGORITHMS:
            return AuthResult(False, username, reason="unsupported algorithm")
        qop = params.get("qop")
        if qop is None:
            return AuthResult(False, username, reason="qop required")
        if qop.lower() != "auth":
            return AuthResult(False, username, reason="unsupported qop")
        nc_text = params.get("nc", "")
        cnonce = params.get("cnonce")
        if len(nc_text) != 8 or not _HEX_CHARS.issuperset(nc_text) or not cnonce:
            return AuthResult(False, username, reason="malformed")
        nc = int(nc_text, 16)

        password = lookup_password(username)
        known = password is not None
        expected = digest_response(
            algorithm, username, realm, _DUMMY_PASSWORD if password is None else password, method, uri, nonce,
            nc_text, cnonce, qop,
        )
        matches = hmac.compare_digest(expected.encode("ascii"), response.lower().encode("utf-8", "replace"))
        if not (matches and known):
            return AuthResult(False, username, reason="bad credentials")

        nonce_id = self._nonce_id(nonce)
        if nonce_id is None:
            return AuthResult(False, username, stale=True, reason="unknown nonce")
        now = self._clock.seconds()
        if now > self._expiry(nonce_id):
            self._nonce_counts.pop(nonce_id, None)
            return AuthResult(False, username, stale=True, reason="stale nonce")
        return self._accept_count(nonce_id, nc, now, username)

    def _accept_count(self, nonce_id: int, nc: int, now: float, username: str) -> AuthResult:
        counts = self._nonce_counts
        seen = counts.get(nonce_id)
        if seen is not None:
            if nc <= seen:
                return AuthResult(False, username, stale=True, reason="replayed nonce count")
            counts[nonce_id] = nc
            return AuthResult(True, username)
        if nc < 1:
            return AuthResult(False, username, stale=True, reason="replayed nonce count")
        # Forget expired nonces at the front, then the oldest ones while over the bound.
        while counts:
            first = next(iter(counts))
            if self._expiry(first) >= now and len(counts) < self.max_tracked_nonces:
                break
            del counts[first]
        if self.max_tracked_nonces > 0:
            counts[nonce_id] = nc
        return AuthResult(True, username)

    @property
    def tracked_nonces(self) -> int:
        """How many nonces have their nonce-count tracked (for tests and statistics)."""
        return len(self._nonce_counts)


# -- client side --------------------------------------------------------------------------------

def build_authorization(
    challenge_value: str, method: str, uri: str, username: str, password: str, nc: int = 1,
    cnonce: str | None = None,
) -> str:
    """Answer a WWW-Authenticate / Proxy-Authenticate value with an Authorization value.

    Uses qop=auth when offered (RFC 2069 style when no qop is offered), the challenge's algorithm
    (MD5 when absent) and echoes opaque. Raises ValueError for a challenge we cannot answer.
    """
    scheme, params = parse_auth_header(challenge_value)
    if scheme.lower() != "digest":
        raise ValueError(f"unsupported auth scheme {scheme}")
    realm = params.get("realm")
    nonce = params.get("nonce")
    if realm is None or nonce is None:
        raise ValueError("challenge without realm or nonce")
    algorithm = params.get("algorithm", "MD5")
    if algorithm.upper() not in ALGORITHMS:
        raise ValueError(f"unsupported digest algorithm {algorithm}")
    qop: str | None = None
    if "qop" in params:
        offered = {q.strip(_LWS).lower() for q in params["qop"].split(",")}
        if "auth" not in offered:
            raise ValueError(f"unsupported qop {params['qop']}")
        qop = "auth"
    if cnonce is None:
        cnonce = secrets.token_hex(8)
    nc_text = f"{nc:08x}"
    response = digest_response(algorithm, username, realm, password, method, uri, nonce, nc_text, cnonce, qop)
    parts = [
        f"Digest username={_quote(username)}", f"realm={_quote(realm)}", f"nonce={_quote(nonce)}",
        f"uri={_quote(uri)}", f'response="{response}"',
        f"algorithm={_CANONICAL_ALGORITHM[algorithm.upper()]}",
    ]
    if qop:
        parts += [f"cnonce={_quote(cnonce)}", f"qop={qop}", f"nc={nc_text}"]
    elif ALGORITHMS[algorithm.upper()][1]:
        parts.append(f"cnonce={_quote(cnonce)}")
    if "opaque" in params:
        parts.append(f"opaque={_quote(params['opaque'])}")
    return ", ".join(parts)
