"""Keeping a registration at a far registrar (a carrier, a provider) alive: the one REGISTER and digest
client of minisip, exported to plugins as ``minisip.api.RegistrationClient`` (the trunks plugin uses it)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from minisip.sip.auth import build_authorization, parse_auth_header
from minisip.sip.errors import SIPParseError
from minisip.sip.message import Response
from minisip.sip.types import Addr
from minisip.sip.uri import SipURI, parse_name_addr

BACKOFF_START = 30.0            # first retry after a failed registration; doubles up to BACKOFF_MAX
BACKOFF_MAX = 600.0
MAX_AUTH_TRIES = 2              # digest answers (or 423 retries) per REGISTER exchange


@dataclass(frozen=True)
class RegistrationTarget:
    """Where and as whom to register, for plugins that have no config object of their own to pass."""

    name: str
    host: str
    port: int = 5060
    transport: str = "udp"
    username: str = ""
    password: str | None = None
    expires: int = 3600

    @property
    def uri_host(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == 5060 else f"{host}:{self.port}"

    @property
    def credentials(self) -> tuple[str, str] | None:
        return (self.username, self.password) if self.password is not None else None


def refresh_delay(expires: float) -> float:
    """When to refresh a registration granted for ``expires`` s: at 80 %, at most 30 s before expiry."""
    return max(1.0, max(min(expires * 0.8, expires - 30.0), expires / 2.0))


def backoff_delay(failures: int) -> float:
    return min(BACKOFF_START * 2 ** max(0, failures - 1), BACKOFF_MAX)


class RegistrationClient:
    """Keeps one registration at a far registrar alive (RFC 3261 10.2): one Call-ID, increasing CSeq,
    digest answers (MD5 or SHA-256), 423 Min-Expires, refresh before expiry, back-off after failures,
    and an un-REGISTER on ``stop``. ``target`` is any object with ``name``, ``host``, ``port``,
    ``transport``, ``uri_host`` (host[:port] for the Request-URI), ``username``, ``credentials``
    ((user, password) or None) and ``expires`` (a RegistrationTarget, a trunk's config...)."""

    def __init__(self, api: Any, target: Any, resolve: Callable[[str], defer.Deferred], log: Logger,
                 kind: str = "registration") -> None:
        self.api = api
        self.spec = target
        self.resolve = resolve
        self.log = log
        self.kind = kind
        self.call_id = f"{os.urandom(8).hex()}@minisip"
        self.cseq = 0
        self.state = "idle"            # idle, registering, registered, failed, stopped
        self.failures = 0
        self.registered_until = 0.0    # clock time the carrier's binding lasts until
        self.granted = 0
        self.timer: Any = None
        self.generation = 0            # bumped by stop(): answers to older requests are ignored
        self.ip: str | None = None
        self.in_flight = False
        self.challenge: tuple[str, str, str] | None = None   # (header to send, challenge, nonce)
        self.nc = 0
        self.expires = target.expires  # raised by a 423's Min-Expires

    @property
    def ruri(self) -> str:
        return f"sip:{self.spec.uri_host}"

    @property
    def aor(self) -> str:
        host = f"[{self.spec.host}]" if ":" in self.spec.host else self.spec.host
        return f"{self.spec.username}@{host}"

    @property
    def target(self) -> str:
        return f"{self.spec.transport}:{self.spec.uri_host}"

    def is_registered(self) -> bool:
        return self.state != "stopped" and self.api.clock.seconds() < self.registered_until

    # -- the cycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        """Register from the next reactor turn: services start before the server listens."""
        self.state = "registering"
        self.timer = self.api.call_later(0, self._attempt)

    def _attempt(self) -> None:
        self.timer = None
        gen = self.generation
        if self.state != "registered":
            self.state = "registering"
        d = self.resolve(self.spec.host)

        def resolved(ip: str) -> defer.Deferred:
            self.ip = ip
            return self._exchange(ip, self.expires, gen)

        def failed(f: Any) -> tuple[None, str]:
            return None, f"cannot resolve {self.spec.host}: {f.getErrorMessage()}"

        def broken(f: Failure) -> tuple[None, str]:
            self.log.failure("{kind} {name}: registration", f, kind=self.kind, name=self.spec.name)
            return None, f"internal error: {f.getErrorMessage()}"

        d.addCallbacks(resolved, failed)
        d.addErrback(broken)
        d.addCallback(self._outcome, gen)

    def _outcome(self, result: tuple[Response | None, str | None] | None, gen: int) -> None:
        if gen != self.generation or result is None:
            return
        resp, why = result
        if why is None and resp is not None:
            granted = self._granted(resp)
            if granted > 0:
                self._registered(granted)
                return
            why = "the carrier granted 0 s"
        self._failed(why or "failed")

    def _registered(self, granted: int) -> None:
        now = self.api.clock.seconds()
        again = self.state == "registered"
        self.registered_until = now + granted
        self.granted = granted
        self.state = "registered"
        self.failures = 0
        delay = refresh_delay(granted)
        self.log.info("{kind} {name}: {what} at {target} as {user} for {expires} s, next refresh in {delay:.0f} s",
                      kind=self.kind, name=self.spec.name, what="registration refreshed" if again else "registered",
                      target=self.target, user=self.spec.username, expires=granted, delay=delay)
        self.timer = self.api.call_later(delay, self._attempt)

    def _failed(self, why: str) -> None:
        self.failures += 1
        self.challenge = None
        self.state = "failed" if not self.is_registered() else "registered"
        delay = backoff_delay(self.failures)
        self.log.warn("{kind} {name}: registration at {target} failed: {why} (attempt {n}); retrying in {delay:.0f} s",
                      kind=self.kind, name=self.spec.name, target=self.target, why=why, n=self.failures, delay=delay)
        self.timer = self.api.call_later(delay, self._attempt)

    def _granted(self, resp: Response) -> int:
        """The lifetime the carrier granted: our Contact's expires, else Expires, else what we asked."""
        ours = parse_name_addr(self.api.local_contact(self.spec.transport, user=self.spec.username)).uri
        candidates: list[int] = []
        for value in resp.get_all("contact"):
            for part in _split_contacts(value):
                try:
                    na = parse_name_addr(part)
                except (SIPParseError, ValueError):
                    continue
                exp = na.params.get("expires")
                if exp is None or not exp.isdigit():
                    continue
                uri = na.uri
                if isinstance(uri, SipURI) and isinstance(ours, SipURI) and uri.user == ours.user \
                        and uri.host == ours.host and (uri.port or 5060) == (ours.port or 5060):
                    return int(exp)
                candidates.append(int(exp))
        if len(candidates) == 1:
            return candidates[0]
        header = resp.get("expires")
        if header is not None and header.strip().isdigit():
            return int(header.strip())
        return self.expires

    # -- one REGISTER exchange, digest and 423 included ------------------------------------------------
    @defer.inlineCallbacks
    def _exchange(self, ip: str, expires: int, gen: int | None) -> Any:
        """Send REGISTER until a final answer: fires with (response or None, failure text or None)."""
        tries = 0
        while True:
            if gen is not None and gen != self.generation:
                return None
            used_nonce = self.challenge[2] if self.challenge is not None else None
            self.in_flight = True
            try:
                resp = yield self._send(ip, expires)
            finally:
                self.in_flight = False
            if resp is None:
                return None, "no response (timed out)"
            status = resp.status
            if 200 <= status < 300:
                return resp, None
            if status in (401, 407):
                picked = self._pick_challenge(resp)
                if picked is None:
                    return resp, f"{status} {resp.reason} without a digest challenge we can answer"
                value, nonce, stale = picked
                if tries >= MAX_AUTH_TRIES or (nonce == used_nonce and not stale):
                    return resp, f"{status} {resp.reason}: the carrier refused username {self.spec.username}"
                tries += 1
                hname = "Authorization" if status == 401 else "Proxy-Authorization"
                self.challenge = (hname, value, nonce)
                self.nc = 0
                continue
            if status == 423 and tries < MAX_AUTH_TRIES:
                min_expires = (resp.get("min-expires") or "").strip()
                if min_expires.isdigit() and int(min_expires) > expires:
                    tries += 1
                    expires = self.expires = int(min_expires)
                    continue
            return resp, f"{status} {resp.reason}"

    def _send(self, ip: str, expires: int) -> defer.Deferred:
        trunk = self.spec
        self.cseq += 1
        headers = [("Contact", self.api.local_contact(trunk.transport, user=trunk.username)),
                   ("Expires", str(expires))]
        if self.challenge is not None and trunk.credentials is not None:
            hname, value, _ = self.challenge
            self.nc += 1
            user, password = trunk.credentials
            try:
                headers.append((hname, build_authorization(value, "REGISTER", self.ruri, user, password, nc=self.nc)))
            except ValueError:
                self.challenge = None
        return self.api.send_request("REGISTER", self.ruri, Addr(trunk.transport, ip, trunk.port), headers,
                                     from_user=self.aor, to=f"<sip:{self.aor}>", call_id=self.call_id,
                                     cseq=self.cseq)

    @staticmethod
    def _pick_challenge(resp: Response) -> tuple[str, str, bool] | None:
        """The first digest challenge we can answer: (value, nonce, stale)."""
        hname = "www-authenticate" if resp.status == 401 else "proxy-authenticate"
        for value in resp.get_all(hname):
            try:
                build_authorization(value, "REGISTER", "sip:check", "u", "p")
            except ValueError:
                continue
            _, params = parse_auth_header(value)
            return value, params.get("nonce", ""), params.get("stale", "").lower() == "true"
        return None

    # -- stop ------------------------------------------------------------------------------------
    def stop(self) -> defer.Deferred:
        """Stop refreshing; unregister (Expires: 0) when the carrier may hold our binding."""
        self.generation += 1
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None
        bound = self.is_registered() or self.in_flight
        self.state = "stopped"
        self.registered_until = 0.0
        if not bound or self.ip is None:
            return defer.succeed(None)
        self.log.info("{kind} {name}: unregistering at {target}", kind=self.kind, name=self.spec.name,
                      target=self.target)
        d = self._exchange(self.ip, 0, None)

        def done(result: tuple[Response | None, str | None] | None) -> None:
            why = result[1] if result is not None else "stopped"
            if why is not None:
                self.log.info("{kind} {name}: unregistering at {target}: {why}", kind=self.kind, name=self.spec.name,
                              target=self.target, why=why)

        def failed(f: Failure) -> None:
            if f.check(defer.CancelledError):   # shutdown did not wait any longer (minisip.tap.STOP_TIMEOUT)
                self.log.info("{kind} {name}: unregistering at {target}: no answer before shutdown",
                              kind=self.kind, name=self.spec.name, target=self.target)
            else:
                self.log.failure("{kind} {name}: unregistering", f, kind=self.kind, name=self.spec.name)

        d.addCallback(done)
        d.addErrback(failed)
        return d


def _split_contacts(value: str) -> list[str]:
    parts: list[str] = []
    depth, quoted, start = 0, False, 0
    for i, c in enumerate(value):
        if c == '"':
            quoted = not quoted
        elif not quoted and c == "<":
            depth += 1
        elif not quoted and c == ">":
            depth = max(0, depth - 1)
        elif not quoted and depth == 0 and c == ",":
            parts.append(value[start:i])
            start = i + 1
    parts.append(value[start:])
    return [p.strip() for p in parts if p.strip()]
