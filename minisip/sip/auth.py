"""Digest authentication for SIP (RFC 2617, RFC 7616, RFC 8760), server and client side.

Pure code: no Twisted, no I/O. Time comes from a ``clock`` with ``seconds() -> float`` (Twisted's
``IReactorTime`` provides it). The server keeps no per-challenge state: a nonce carries its own
issue time and an HMAC over it and the address it was issued to, so any nonce we issued can be
checked after the fact; the only state is, per nonce in use, the highest nonce-count accepted and
the user who first used it (bounded), for replay protection.
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
from urllib.parse import unquote

from minisip.sip.errors import SIPParseError
from minisip.sip.uri import URI, SipURI, TelURI, parse_uri

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
# Offered when the caller does not say: never a -sess variant (nothing to gain for SIP, RFC 8760).
DEFAULT_ALGORITHMS = ("SHA-256", "MD5")
_DEFAULT_PORTS = {"sip": 5060, "sips": 5061}

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
    - Challenges are small: realm, nonce, algorithm, qop (no opaque: the nonce carries all we need).
      Only the algorithms offered (``algorithms``) are accepted: no MD5 answer when only SHA-256 is
      offered, never a -sess variant unless offered.
    - A nonce is bound to the address it was issued to (``source_host``): used from another address
      it is "unknown nonce" (stale), never a bad password, so answers sent with a spoofed source
      cannot count as failures against that source. A nonce is bound to the user who first used it
      ("nonce of another user", stale).
    - The ``uri`` parameter must match the Request-URI (scheme, user, host, port; parameters and
      default ports aside) when the caller gives it: a sniffed Authorization works nowhere else. A
      uri without a user (SIPp's) matches any user at the same host and port.
    - Nonce counts are tracked for at most ``max_tracked_nonces`` nonces; the least recently started
      ones are forgotten first, and expired ones as soon as they reach the front. Forgetting one
      before it expired expires every nonce issued up to it that is not tracked, so no exact replay
      of a forgotten nonce is ever accepted.
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
        self.algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS
        # nonce id -> (hash of the first user << 32) | highest nc accepted; insertion order is first-use
        # order. The id is the nonce's issue time (ms, top 64 bits) and unique part as one int: ~60
        # bytes a nonce instead of ~170 for the string, a tuple and a float, and the expiry time is
        # computed from it.
        self._nonce_counts: dict[int, int] = {}
        # The highest id of a nonce forgotten before it expired: untracked nonces up to it are stale.
        self._forgotten_upto = -1

    # -- nonces --------------------------------------------------------------------------------

    def _mac(self, head: bytes, source_host: str) -> bytes:
        data = b"%s%s\x00%s" % (head, self.realm.encode("utf-8"), source_host.encode("utf-8", "replace"))
        return hmac.digest(self._secret, data, "sha256")[:_NONCE_MAC]

    def _make_nonce(self, source_host: str) -> str:
        ts = max(0, int(self._clock.seconds() * 1000))
        # The second half only has to be unique (the MAC makes nonces unforgeable): a counter from a
        # random start costs no system call per challenge, unlike secrets.token_bytes.
        head = _NONCE_HEAD.pack(ts, next(self._nonce_seq) & 0xFFFFFFFFFFFFFFFF)
        return base64.urlsafe_b64encode(head + self._mac(head, source_host)).rstrip(b"=").decode("ascii")

    def _nonce_id(self, nonce: str, source_host: str) -> int | None:
        """One of our nonces as an int (issue time in ms << 64 | unique part), or None when we did not
        issue it (for this realm and this source address)."""
        if len(nonce) != _NONCE_LEN:
            return None
        try:
            raw = base64.urlsafe_b64decode(nonce + "=")
        except (binascii.Error, ValueError):
            return None
        if len(raw) != _NONCE_RAW:
            return None
        head = raw[:-_NONCE_MAC]
        if not hmac.compare_digest(raw[-_NONCE_MAC:], self._mac(head, source_host)):
            return None
        return int.from_bytes(head, "big")

    def _expiry(self, nonce_id: int) -> float:
        return (nonce_id >> (8 * _NONCE_RANDOM)) / 1000.0 + self.nonce_ttl

    # -- server API ----------------------------------------------------------------------------

    def challenge(self, stale: bool = False, *, source_host: str = "",
                  algorithms: tuple[str, ...] | None = None) -> list[str]:
        """Header values for WWW-Authenticate / Proxy-Authenticate, one per algorithm offered (in the
        order given; ``self.algorithms`` by default), sharing one nonce bound to ``source_host``."""
        nonce = self._make_nonce(source_host)
        tail = ", stale=true" if stale else ""
        common = f'Digest realm={_quote(self.realm)}, nonce="{nonce}"'
        return [f'{common}, algorithm={_CANONICAL_ALGORITHM.get(a.upper(), a)}, qop="auth"{tail}'
                for a in (self.algorithms if algorithms is None else algorithms)]

    def verify(self, method: str, header_value: str, lookup_password: Callable[[str], str | None], *,
               source_host: str = "", request_uri: URI | None = None, algorithms: tuple[str, ...] | None = None,
               refuse: Callable[[str], bool] | None = None) -> AuthResult:
        """Check one Authorization / Proxy-Authorization value for a request with this method.

        ``lookup_password(username)`` returns the plain password or None for an unknown user.
        ``source_host``: where the request came from (the nonce must have been issued there).
        ``request_uri``: compared with the ``uri`` parameter when given. ``algorithms``: those
        offered (``self.algorithms`` by default). ``refuse(username)`` True: the answer is refused
        as "throttled" without being checked (same outcome as a wrong password, reason aside).
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
        offered = self.algorithms if algorithms is None else algorithms
        if algorithm not in ALGORITHMS or all(a.upper() != algorithm for a in offered):
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
        if request_uri is not None and not uri_matches(uri, request_uri):
            return AuthResult(False, username, reason="uri mismatch")
        # Before the password: an answer with a nonce issued elsewhere (a spoofed source) is no failure.
        nonce_id = self._nonce_id(nonce, source_host)
        if nonce_id is None:
            return AuthResult(False, username, stale=True, reason="unknown nonce")
        if refuse is not None and refuse(username):
            return AuthResult(False, username, reason="throttled")

        password = lookup_password(username)
        known = password is not None
        expected = digest_response(
            algorithm, username, realm, _DUMMY_PASSWORD if password is None else password, method, uri, nonce,
            nc_text, cnonce, qop,
        )
        matches = hmac.compare_digest(expected.encode("ascii"), response.lower().encode("utf-8", "replace"))
        if not (matches and known):
            return AuthResult(False, username, reason="bad credentials")

        now = self._clock.seconds()
        if now > self._expiry(nonce_id):
            self._nonce_counts.pop(nonce_id, None)
            return AuthResult(False, username, stale=True, reason="stale nonce")
        return self._accept_count(nonce_id, nc, now, username)

    def _accept_count(self, nonce_id: int, nc: int, now: float, username: str) -> AuthResult:
        counts = self._nonce_counts
        user_bits = (hash(username) & 0xFFFFFFFF) << 32
        seen = counts.get(nonce_id)
        if seen is not None:
            if seen & ~0xFFFFFFFF != user_bits:
                return AuthResult(False, username, stale=True, reason="nonce of another user")
            if nc <= seen & 0xFFFFFFFF:
                return AuthResult(False, username, stale=True, reason="replayed nonce count")
            counts[nonce_id] = user_bits | nc
            return AuthResult(True, username)
        if nc < 1:
            return AuthResult(False, username, stale=True, reason="replayed nonce count")
        if nonce_id <= self._forgotten_upto:
            return AuthResult(False, username, stale=True, reason="stale nonce")
        # Forget expired nonces at the front, then the oldest ones while over the bound; forgetting one
        # still valid expires every untracked nonce issued up to it.
        while counts:
            first = next(iter(counts))
            if self._expiry(first) >= now:
                if len(counts) < self.max_tracked_nonces:
                    break
                self._forgotten_upto = max(self._forgotten_upto, first)
            del counts[first]
        if self.max_tracked_nonces > 0:
            counts[nonce_id] = user_bits | nc
        else:
            self._forgotten_upto = max(self._forgotten_upto, nonce_id)
        return AuthResult(True, username)

    @property
    def tracked_nonces(self) -> int:
        """How many nonces have their nonce-count tracked (for tests and statistics)."""
        return len(self._nonce_counts)


def uri_matches(digest_uri: str, request_uri: URI) -> bool:
    """The digest ``uri`` names the Request-URI: same scheme, user (escapes decoded), host (any case)
    and port (absent = the scheme's default); URI parameters and headers are not compared. A digest
    uri without a user part (SIPp's ``sip:host:port``) stands for any user at that host."""
    try:
        given = parse_uri(digest_uri)
    except SIPParseError:
        return False
    if isinstance(request_uri, TelURI) or isinstance(given, TelURI):
        return (isinstance(request_uri, TelURI) and isinstance(given, TelURI)
                and given.digits == request_uri.digits)
    if isinstance(request_uri, SipURI) and isinstance(given, SipURI):
        if given.scheme != request_uri.scheme or given.host.lower() != request_uri.host.lower():
            return False
        default = _DEFAULT_PORTS.get(given.scheme)
        if (given.port or default) != (request_uri.port or default):
            return False
        return not given.user or _unescape(given.user) == _unescape(request_uri.user or "")
    return str(given).lower() == str(request_uri).lower()


def _unescape(user: str) -> str:
    return unquote(user) if "%" in user else user


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
