"""MCCP, the minisip call-control protocol: JSON text frames over a WebSocket (subprotocol ``mccp.v1``).

Pure, on the model of h11: no Twisted, no Autobahn, no clock. ``parse``/``serialize`` turn frames into
frozen message dataclasses and back; a ``Session`` is one connection's state machine (frames in, events
for the gateway and frames out). Nothing a peer sends makes it raise: bad input becomes an error frame
or a close with a WebSocket status code. docs/mccp.md is the specification.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Union

__all__ = [
    "CLIENT_OPS",
    "ERROR_CODES",
    "SERVER_OPS",
    "SUBPROTOCOL",
    "VERSION",
    "Answer",
    "AnswerGiven",
    "Call",
    "CallRequested",
    "Close",
    "Dtmf",
    "DtmfRequested",
    "Error",
    "Event",
    "HangupRequested",
    "Hangup",
    "Incoming",
    "Limits",
    "LocalProtocolError",
    "Login",
    "LoginRequested",
    "Logout",
    "LogoutRequested",
    "MccpError",
    "Message",
    "Output",
    "Progress",
    "Registered",
    "Session",
    "State",
    "parse",
    "serialize",
]

VERSION = 1
REVISION = "1.1"     # 1.1 added login, logout, registered and incoming: calls to the browser
SUBPROTOCOL = "mccp.v1"

# WebSocket close codes (RFC 6455, section 7.4.1) a session may ask for.
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_INVALID_DATA = 1007
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009

# Every error code, with the WebSocket close code that follows it (None: the connection stays open).
ERROR_CODES: dict[str, int | None] = {
    "bad-json": None,          # not UTF-8 JSON, or not a JSON object
    "bad-message": None,       # "op" missing, or a field missing, of the wrong type or out of range
    "unknown-op": None,        # an op this version does not know
    "wrong-state": None,       # a valid message the receiver does not accept now (or from this side)
    "unknown-call": None,      # names a call that is not the connection's current call
    "busy": None,              # a call while this connection already has one
    "refused": None,           # login: wrong number or password (or the address or number is throttled)
    "binary-frame": CLOSE_UNSUPPORTED_DATA,
    "too-big": CLOSE_TOO_BIG,
    "flood": CLOSE_POLICY,     # more messages than the rate limit allows
    "too-many-errors": CLOSE_POLICY,
}


class MccpError(Exception):
    """A frame cannot be accepted: ``code`` is one of ERROR_CODES, ``reason`` says why in words.

    ``call`` is the call id the bad frame named, when it could be read (it goes into the error frame).
    """

    def __init__(self, code: str, reason: str, call: str | None = None) -> None:
        if code not in ERROR_CODES:
            raise ValueError(f"unknown MCCP error code {code!r}")
        super().__init__(code, reason)
        self.code = code
        self.reason = reason
        self.call = call

    @property
    def close_code(self) -> int | None:
        """The WebSocket close code that must follow this error, or None when the connection stays open."""
        return ERROR_CODES[self.code]

    def __str__(self) -> str:
        return f"{self.code}: {self.reason}"


class LocalProtocolError(Exception):
    """Our own side (the gateway) asked for something the session's state does not allow: a bug."""


# --- messages ---


@dataclass(frozen=True, slots=True)
class Call:
    """Client -> server: place a call as ``caller`` (authenticated by ``password``) to ``callee``."""

    call: str
    caller: str
    password: str
    callee: str
    sdp: str
    op = "call"


@dataclass(frozen=True, slots=True)
class Progress:
    """Server -> client: the call is ``trying`` (100), ``ringing`` (180) or has ``early`` media (183, sdp)."""

    call: str
    state: str
    sdp: str | None = None
    op = "progress"

    @property
    def status(self) -> int:
        return PROGRESS_STATUS[self.state]


@dataclass(frozen=True, slots=True)
class Answer:
    """Server -> client: the callee answered; ``sdp`` is the answer to the caller's offer."""

    call: str
    sdp: str
    op = "answer"


@dataclass(frozen=True, slots=True)
class Hangup:
    """Either side: the call is over. ``status`` is the SIP status (200: a normal end after the answer)."""

    call: str
    status: int | None = None
    reason: str = ""
    op = "hangup"


@dataclass(frozen=True, slots=True)
class Dtmf:
    """Client -> server: send ``digits`` (0-9, *, #, A-D) to the other side, ``duration`` ms each."""

    call: str
    digits: str
    duration: int = 100
    op = "dtmf"


@dataclass(frozen=True, slots=True)
class Login:
    """Client -> server: log in as extension ``user`` (authenticated by ``password``) to receive its calls."""

    user: str
    password: str
    op = "login"


@dataclass(frozen=True, slots=True)
class Logout:
    """Client -> server: stop receiving the extension's calls (closing the connection does the same)."""

    op = "logout"


@dataclass(frozen=True, slots=True)
class Registered:
    """Server -> client: the login succeeded; calls to ``user`` now ring this connection too."""

    user: str
    op = "registered"


@dataclass(frozen=True, slots=True)
class Incoming:
    """Server -> client: a call to the logged-in extension (the server chose ``call``); ``sdp`` is the offer.

    The page rings; it answers with ``answer`` (its SDP answer) or declines with ``hangup``. An empty
    ``sdp`` (left out of the frame): the caller made no offer, so the page's ``answer`` carries its offer
    and the server's ``answer`` follows with the SDP answer."""

    call: str
    caller: str
    callee: str
    sdp: str
    name: str = ""
    op = "incoming"


@dataclass(frozen=True, slots=True)
class Error:
    """Either side: the peer's last frame was refused (``code`` from ERROR_CODES); call state is unchanged."""

    code: str
    reason: str = ""
    call: str | None = None
    op = "error"


Message = Union[Call, Progress, Answer, Hangup, Dtmf, Error, Login, Logout, Registered, Incoming]

CLIENT_OPS = frozenset({"call", "hangup", "dtmf", "login", "logout", "answer"})
SERVER_OPS = frozenset({"progress", "answer", "hangup", "error", "registered", "incoming"})
PROGRESS_STATUS = {"trying": 100, "ringing": 180, "early": 183}

_CALL_ID_RE = re.compile(r"[A-Za-z0-9._~:@+-]{1,64}\Z")
_NUMBER_RE = re.compile(r"[A-Za-z0-9+*#._-]{1,64}\Z")
_DIGITS_RE = re.compile(r"[0-9*#A-Da-d]{1,32}\Z")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
MAX_PASSWORD = 128
MAX_REASON = 128
MIN_DURATION, MAX_DURATION = 40, 6000


# --- parse and serialize ---


def _field(obj: dict[str, Any], name: str, kind: type, call: str | None, *, required: bool = True) -> Any:
    value = obj.get(name)
    if value is None:
        if required:
            raise MccpError("bad-message", f'"{name}" is missing', call)
        return None
    # bool is an int in Python, not in JSON: true is no status code.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise MccpError("bad-message", f'"{name}" must be {_KIND_NAMES[kind]}', call)
    return value


_KIND_NAMES = {str: "a string", int: "an integer"}


def _matching(value: str, pattern: re.Pattern[str], name: str, what: str, call: str | None) -> str:
    if not pattern.match(value):
        raise MccpError("bad-message", f'"{name}" must be {what}', call)
    return value


def _text(value: str, name: str, limit: int, call: str | None) -> str:
    if len(value) > limit:
        raise MccpError("bad-message", f'"{name}" is longer than {limit} characters', call)
    if _CONTROL_RE.search(value):
        raise MccpError("bad-message", f'"{name}" must not hold control characters', call)
    return value


def _sdp(obj: dict[str, Any], call: str | None, *, required: bool = True) -> str | None:
    sdp = _field(obj, "sdp", str, call, required=required)
    if sdp is not None and not sdp.startswith("v=0"):
        raise MccpError("bad-message", '"sdp" must be an SDP session description (starting with v=0)', call)
    return sdp  # type: ignore[no-any-return]


def _status(obj: dict[str, Any], call: str | None, *, required: bool) -> int | None:
    status = _field(obj, "status", int, call, required=required)
    if status is not None and not 200 <= status <= 699:
        raise MccpError("bad-message", '"status" must be a SIP final status code (200-699)', call)
    return status  # type: ignore[no-any-return]


def _decode(text: str | bytes) -> dict[str, Any]:
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise MccpError("bad-json", "the frame is not UTF-8 text") from None
    try:
        obj = json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError) as e:
        raise MccpError("bad-json", f"not JSON: {e}"[:MAX_REASON]) from None
    if not isinstance(obj, dict):
        raise MccpError("bad-json", "a message is a JSON object")
    return obj


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def parse(text: str | bytes) -> Message:
    """One frame's text (or its UTF-8 bytes) as a message of either direction; raises MccpError.

    Unknown fields are ignored, so that later minor revisions of v1 may add optional ones.
    """
    obj = _decode(text)
    raw_call = obj.get("call")
    call = raw_call if isinstance(raw_call, str) and _CALL_ID_RE.match(raw_call) else None
    op = obj.get("op")
    if op is None:
        raise MccpError("bad-message", '"op" is missing', call)
    if not isinstance(op, str):
        raise MccpError("bad-message", '"op" must be a string', call)
    if op == "error":
        code = _field(obj, "code", str, call)
        reason = _text(_field(obj, "reason", str, call, required=False) or "", "reason", MAX_REASON, call)
        if raw_call is not None and call is None:
            raise MccpError("bad-message", '"call" must be 1 to 64 letters, digits or ._~:@+-', None)
        return Error(_text(code, "code", 64, call), reason, call)
    if op not in CLIENT_OPS | SERVER_OPS:
        raise MccpError("unknown-op", f"unknown op {op[:40]!r} (this is MCCP version {REVISION})", call)
    number = "1 to 64 letters, digits or +*#._-"
    if op == "login":
        return Login(_matching(_field(obj, "user", str, None), _NUMBER_RE, "user", number, None),
                     _text(_field(obj, "password", str, None), "password", MAX_PASSWORD, None))
    if op == "logout":
        return Logout()
    if op == "registered":
        return Registered(_matching(_field(obj, "user", str, None), _NUMBER_RE, "user", number, None))
    call_id = _matching(_field(obj, "call", str, None), _CALL_ID_RE, "call", "1 to 64 letters, digits or ._~:@+-", None)
    if op == "incoming":
        name = _text(_field(obj, "name", str, call, required=False) or "", "name", MAX_REASON, call)
        return Incoming(call_id, _matching(_field(obj, "caller", str, call), _NUMBER_RE, "caller", number, call),
                        _matching(_field(obj, "callee", str, call), _NUMBER_RE, "callee", number, call),
                        _sdp(obj, call, required=False) or "", name)
    if op == "call":
        return Call(
            call_id,
            _matching(_field(obj, "caller", str, call), _NUMBER_RE, "caller", number, call),
            _text(_field(obj, "password", str, call), "password", MAX_PASSWORD, call),
            _matching(_field(obj, "callee", str, call), _NUMBER_RE, "callee", number, call),
            _sdp(obj, call),  # type: ignore[arg-type]
        )
    if op == "progress":
        state = _field(obj, "state", str, call)
        if state not in PROGRESS_STATUS:
            raise MccpError("bad-message", '"state" must be trying, ringing or early', call)
        sdp = _sdp(obj, call, required=state == "early")
        return Progress(call_id, state, sdp if state == "early" else None)
    if op == "answer":
        return Answer(call_id, _sdp(obj, call))  # type: ignore[arg-type]
    if op == "hangup":
        reason = _text(_field(obj, "reason", str, call, required=False) or "", "reason", MAX_REASON, call)
        return Hangup(call_id, _status(obj, call, required=False), reason)
    # dtmf
    digits = _matching(_field(obj, "digits", str, call), _DIGITS_RE, "digits", "1 to 32 of 0-9 * # A-D", call)
    duration = _field(obj, "duration", int, call, required=False)
    if duration is None:
        duration = 100
    elif not MIN_DURATION <= duration <= MAX_DURATION:
        raise MccpError("bad-message", f'"duration" must be {MIN_DURATION} to {MAX_DURATION} ms', call)
    return Dtmf(call_id, digits.upper(), duration)


def serialize(message: Message) -> str:
    """The frame text of ``message``: compact JSON, ``op`` first, absent optional fields left out."""
    if not isinstance(message, (Call, Progress, Answer, Hangup, Dtmf, Error, Login, Logout, Registered, Incoming)):
        raise TypeError(f"not an MCCP message: {message!r}")
    obj: dict[str, Any] = {"op": message.op}
    if isinstance(message, Login):
        obj.update(user=message.user, password=message.password)
    elif isinstance(message, Logout):
        pass
    elif isinstance(message, Registered):
        obj["user"] = message.user
    elif isinstance(message, Incoming):
        obj.update(call=message.call, caller=message.caller, callee=message.callee)
        if message.sdp:
            obj["sdp"] = message.sdp
        if message.name:
            obj["name"] = message.name
    elif isinstance(message, Call):
        obj.update(call=message.call, caller=message.caller, password=message.password,
                   callee=message.callee, sdp=message.sdp)
    elif isinstance(message, Progress):
        obj.update(call=message.call, state=message.state, status=message.status)
        if message.sdp is not None:
            obj["sdp"] = message.sdp
    elif isinstance(message, Answer):
        obj.update(call=message.call, sdp=message.sdp)
    elif isinstance(message, Hangup):
        obj["call"] = message.call
        if message.status is not None:
            obj["status"] = message.status
        obj["reason"] = message.reason
    elif isinstance(message, Dtmf):
        obj.update(call=message.call, digits=message.digits, duration=message.duration)
    else:
        obj.update(code=message.code, reason=message.reason)
        if message.call is not None:
            obj["call"] = message.call
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


# --- the per-connection state machine (server side) ---


class State:
    """A server-side session's states; the call states say where the connection's one call stands."""

    IDLE = "idle"              # open, no call
    CALLING = "calling"        # the client's call was accepted (trying sent); routing
    RINGING = "ringing"        # the callee rings
    EARLY = "early"            # early media flows
    INCOMING = "incoming"      # a call to the logged-in extension rings the page
    CONNECTED = "connected"    # answered
    CLOSED = "closed"          # the connection is closing or gone; every input is ignored


CALL_STATES = frozenset({State.CALLING, State.RINGING, State.EARLY, State.INCOMING, State.CONNECTED})


@dataclass(frozen=True, slots=True)
class CallRequested:
    """For the gateway: the client places a call (the password is checked by the gateway, not here)."""

    call: str
    caller: str
    password: str
    callee: str
    sdp: str


@dataclass(frozen=True, slots=True)
class HangupRequested:
    """For the gateway: the client hung up, or its connection went away (``status`` None unless it gave one)."""

    call: str
    status: int | None
    reason: str


@dataclass(frozen=True, slots=True)
class DtmfRequested:
    """For the gateway: the client sends DTMF digits into the call."""

    call: str
    digits: str
    duration: int


@dataclass(frozen=True, slots=True)
class LoginRequested:
    """For the gateway: the client logs in as ``user`` (the gateway checks the password and says how it went)."""

    user: str
    password: str


@dataclass(frozen=True, slots=True)
class LogoutRequested:
    """For the gateway: the connection logged in as ``user`` logged out, or went away."""

    user: str


@dataclass(frozen=True, slots=True)
class AnswerGiven:
    """For the gateway: the client answered the incoming call ``call`` with ``sdp``."""

    call: str
    sdp: str


Event = Union[CallRequested, HangupRequested, DtmfRequested, LoginRequested, LogoutRequested, AnswerGiven]


@dataclass(frozen=True, slots=True)
class Close:
    """The connection must be closed with this WebSocket status code and reason."""

    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class Output:
    """What one input produced: events for the gateway, text frames to send (in order), then maybe a close."""

    events: tuple[Event, ...] = ()
    send: tuple[str, ...] = ()
    close: Close | None = None


NOTHING = Output()


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds a connection lives within: frame size, message rate (a token bucket) and protocol errors."""

    max_frame: int = 65536        # bytes of one frame's payload
    rate: float = 10.0            # messages per second, sustained
    burst: int = 40               # messages at once
    max_errors: int = 10          # refused frames before the connection is closed


@dataclass(slots=True)
class _Bucket:
    capacity: float
    rate: float
    tokens: float
    last: float | None = None

    def take(self, now: float) -> bool:
        if self.last is not None and now > self.last:
            self.tokens = min(self.capacity, self.tokens + (now - self.last) * self.rate)
        self.last = now if self.last is None else max(self.last, now)
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


@dataclass(slots=True)
class Session:
    """One server-side MCCP connection: feed it frames and the gateway's call events; it says what to do.

    ``receive`` takes each frame the client sent (with the time, for the rate limit); ``progress``,
    ``answer`` and ``hangup`` report the call's fate; ``connection_lost`` when the socket went away.
    Each returns an Output. Only one call exists at a time; its id is ``call``.
    """

    limits: Limits = field(default_factory=Limits)
    state: str = State.IDLE
    call: str | None = None
    errors: int = 0
    user: str | None = None       # the extension logged in as (or logging in)
    login: str = ""               # "", "pending" (the gateway checks the password) or "ok"
    late: bool = False            # the incoming call came without an offer: the server's answer is due
    _bucket: _Bucket = field(init=False)

    def __post_init__(self) -> None:
        self._bucket = _Bucket(float(self.limits.burst), self.limits.rate, float(self.limits.burst))

    # -- from the client --

    def receive(self, payload: str | bytes, is_binary: bool = False, now: float = 0.0) -> Output:
        """One frame from the client; never raises."""
        if self.state == State.CLOSED:
            return NOTHING
        size = len(payload.encode("utf-8")) if isinstance(payload, str) else len(payload)
        if size > self.limits.max_frame:
            return self._fatal(MccpError("too-big", f"a frame may hold at most {self.limits.max_frame} bytes"))
        if is_binary:
            return self._fatal(MccpError("binary-frame", "MCCP frames are text frames"))
        if not self._bucket.take(now):
            return self._fatal(MccpError("flood", f"more than {self.limits.rate:g} messages per second"))
        try:
            message = parse(payload)
            return self._handle(message)
        except MccpError as e:
            return self._refuse(e)

    def _handle(self, message: Message) -> Output:
        if isinstance(message, Call):
            if self.state != State.IDLE:
                raise MccpError("busy", f"this connection already has call {self.call}; one call at a time",
                                message.call)
            self.state, self.call, self.late = State.CALLING, message.call, False
            event = CallRequested(message.call, message.caller, message.password, message.callee, message.sdp)
            return Output((event,), (serialize(Progress(message.call, "trying")),))
        if isinstance(message, Hangup):
            self._current(message.call)
            self.state, self.call = State.IDLE, None
            return Output((HangupRequested(message.call, message.status, message.reason),))
        if isinstance(message, Dtmf):
            self._current(message.call)
            if self.state not in (State.EARLY, State.CONNECTED):
                raise MccpError("wrong-state", f"DTMF needs an answered call or early media (the call is {self.state})",
                                message.call)
            return Output((DtmfRequested(message.call, message.digits, message.duration),))
        if isinstance(message, Answer):
            self._current(message.call)
            if self.state != State.INCOMING:
                raise MccpError("wrong-state", f"only an incoming call is answered by the client (the call is "
                                f"{self.state})", message.call)
            self.state = State.CONNECTED
            return Output((AnswerGiven(message.call, message.sdp),))
        if isinstance(message, Login):
            if self.login:
                what = "in progress" if self.login == "pending" else f"done: logged in as {self.user}"
                raise MccpError("wrong-state", f"login already {what}")
            self.login, self.user = "pending", message.user
            return Output((LoginRequested(message.user, message.password),))
        if isinstance(message, Logout):
            if self.login != "ok":
                raise MccpError("wrong-state", "not logged in")
            return Output(self._logout())
        if isinstance(message, Error):
            return NOTHING  # the client refused one of our frames: nothing to undo, nothing to answer
        raise MccpError("wrong-state", f'"{message.op}" is sent by the server, not the client',
                        getattr(message, "call", None))

    def _current(self, call: str) -> None:
        if self.state not in CALL_STATES or call != self.call:
            now = f"the current call is {self.call}" if self.call else "there is no call"
            raise MccpError("unknown-call", f"no call {call} ({now})", call)

    def _refuse(self, error: MccpError) -> Output:
        self.errors += 1
        if self.errors > self.limits.max_errors:
            return self._fatal(MccpError("too-many-errors", f"more than {self.limits.max_errors} refused frames"))
        return Output(send=(serialize(Error(error.code, error.reason, error.call)),))

    def _fatal(self, error: MccpError) -> Output:
        """Send the error, close the connection, hang up the call it held and log it out."""
        frames = (serialize(Error(error.code, error.reason)),)
        out = self._end_call(error.reason)
        self.state = State.CLOSED
        assert error.close_code is not None
        return Output(out.events + self._logout(), frames, Close(error.close_code, error.code))

    def _logout(self) -> tuple[Event, ...]:
        """Forget the login; the gateway hears of it when it had accepted or was checking it."""
        user, self.user, self.login = self.user, None, ""
        return (LogoutRequested(user),) if user is not None else ()

    def _end_call(self, reason: str) -> Output:
        if self.state in CALL_STATES and self.call is not None:
            # a page that went away while ringing did not decline: the caller hears 480, not 603
            event = HangupRequested(self.call, 480 if self.state == State.INCOMING else None, reason)
            self.state, self.call = State.IDLE, None
            return Output((event,))
        return NOTHING

    def connection_lost(self, reason: str = "connection closed") -> Output:
        """The socket closed (either side): the call it held is hung up."""
        out = self._end_call(reason)
        self.state = State.CLOSED
        return Output(out.events + self._logout())

    def close(self, code: int = CLOSE_GOING_AWAY, reason: str = "server shutting down") -> Output:
        """Our side closes the connection (e.g. shutdown): hang up the call, then close."""
        if self.state == State.CLOSED:
            return NOTHING
        call = self.call if self.state in CALL_STATES else None
        out = self._end_call(reason)
        frames = (serialize(Hangup(call, 503, reason)),) if call is not None else ()
        self.state = State.CLOSED
        return Output(out.events + self._logout(), frames, Close(code, reason))

    # -- from the gateway --

    def _ours(self, call: str, allowed: frozenset[str], what: str) -> bool:
        """True when ``call`` is the current call and may take ``what`` now; False for a stale call id
        (the client hung up while the gateway's event was on its way); LocalProtocolError otherwise."""
        if self.state == State.CLOSED or call != self.call or self.state not in CALL_STATES:
            return False
        if self.state not in allowed:
            raise LocalProtocolError(f"{what} for call {call} in state {self.state}")
        return True

    def progress(self, call: str, state: str, sdp: str | None = None) -> Output:
        """The call rings (``ringing``) or has early media (``early`` with the answer ``sdp``)."""
        if state not in ("ringing", "early"):
            raise LocalProtocolError(f"progress state must be ringing or early, not {state!r}")
        if (state == "early") != (sdp is not None):
            raise LocalProtocolError("early media and only early media carries an SDP")
        if not self._ours(call, frozenset({State.CALLING, State.RINGING, State.EARLY}), f"progress {state}"):
            return NOTHING
        self.state = State.RINGING if state == "ringing" else State.EARLY
        return Output(send=(serialize(Progress(call, state, sdp)),))

    def answer(self, call: str, sdp: str) -> Output:
        """The callee answered with ``sdp``; or, for an incoming call without an offer that the client
        answered with its offer, the SDP answer to that offer."""
        if self.late and self.state == State.CONNECTED and call == self.call:
            self.late = False
            return Output(send=(serialize(Answer(call, sdp)),))
        if not self._ours(call, frozenset({State.CALLING, State.RINGING, State.EARLY}), "answer"):
            return NOTHING
        self.state = State.CONNECTED
        return Output(send=(serialize(Answer(call, sdp)),))

    def logged_in(self, user: str) -> Output:
        """The gateway accepted the login: calls to ``user`` may now be offered."""
        if self.state == State.CLOSED or self.login == "" or self.user != user:
            return NOTHING      # the client logged out or left while the password was checked
        if self.login != "pending":
            raise LocalProtocolError(f"login of {user} accepted twice")
        self.login = "ok"
        return Output(send=(serialize(Registered(user)),))

    def login_refused(self, reason: str) -> Output:
        """The gateway refused the login (wrong number or password, throttled): an error, counted as one."""
        if self.state == State.CLOSED or self.login != "pending":
            return NOTHING
        self.login, self.user = "", None
        return self._refuse(MccpError("refused", _clip(reason)))

    def offer_call(self, call: str, caller: str, callee: str, sdp: str, name: str = "") -> Output | None:
        """A call to the logged-in extension: the page rings. None when this connection cannot take it
        (not logged in, closing, or already in a call: busy)."""
        if self.state != State.IDLE or self.login != "ok":
            return None
        self.state, self.call, self.late = State.INCOMING, call, not sdp
        return Output(send=(serialize(Incoming(call, caller, callee, sdp, _clip(name))),))

    def hangup(self, call: str, status: int, reason: str) -> Output:
        """The call ended on the server's side: refused or failed (4xx-6xx) or hung up after the answer (200)."""
        if not 200 <= status <= 699:
            raise LocalProtocolError(f"hangup status must be 200-699, not {status}")
        if not self._ours(call, CALL_STATES, "hangup"):
            return NOTHING
        self.state, self.call = State.IDLE, None
        return Output(send=(serialize(Hangup(call, status, _clip(reason))),))


def _clip(reason: str) -> str:
    """A reason that parse would accept: no control characters, at most MAX_REASON characters."""
    return _CONTROL_RE.sub(" ", reason)[:MAX_REASON]

