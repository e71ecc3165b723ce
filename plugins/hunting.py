"""Hunting groups: a number that rings a team of operators, one after another or all at once.

::

    [hunt 600]
    policy = linear               ; linear | round-robin | parallel
    operators = 101:1 102:2 103:2 ; extension[:linear sequence number]
    ring_time = 15                ; seconds per operator before moving on
    no_answer = 100               ; optional overflow destination when no operator answers

An operator is available when it is registered and reachable and not already in a call through
this server; busy (486), declined (603), unreachable and unanswered operators are passed over.
``linear`` rings the smallest sequence number first, equal numbers by registration time (earliest
first); ``round-robin`` starts each call after the operator offered the previous one (the position
survives restarts); ``parallel`` rings every available operator at once. When nobody answers, the
call goes to ``no_answer`` (an extension or another group) or ends with 480.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from zope.interface import implementer

from minisip.api import CONTINUE, ConfigError, ContactDestination, Reject, Route, RouteDecision, ServerAPI
from minisip.interfaces import API_VERSION, ICallRouter, IFeature, IFeatureFactory

POLICIES = ("linear", "round-robin", "parallel")
KEYS = frozenset({"policy", "operators", "ring_time", "no_answer"})
DEFAULT_RING_TIME = 15.0
ROUTER_PRIORITY = 50

# An extension number as [extension N] accepts it (RFC 3261 user part without escapes, ';', '?', '/').
_NUMBER_RE = re.compile(r"^[A-Za-z0-9\-_.!~*'()&=+$,]+$")
_SEQ_RE = re.compile(r"^[0-9]+$")

# Why an operator was passed over, by the final status of its step.
_WHY = {486: "busy", 600: "busy everywhere", 603: "declined", 408: "no response", 404: "not found",
        410: "gone", 480: "unavailable"}


@dataclass(frozen=True, slots=True)
class Operator:
    number: str
    seq: int          # linear sequence number (the operator's position in the list when not given)
    position: int     # position in the configured list: the ring order of round-robin and parallel


@dataclass(frozen=True, slots=True)
class Group:
    number: str
    section: str
    policy: str
    operators: tuple[Operator, ...]
    ring_time: float
    no_answer: str | None = None


@dataclass(frozen=True)
class HuntingConfig:
    """Every group, by group number."""

    groups: Mapping[str, Group] = field(default_factory=dict)


# -- configuration ---------------------------------------------------------------------------------

def _parse_group(section: str, values: Mapping[str, str]) -> Group:
    words = section.split()
    if len(words) != 2 or not _NUMBER_RE.match(words[1]):
        raise ConfigError("expected [hunt NUMBER], e.g. [hunt 600]", section=section)
    number = words[1]
    for key in values:
        if key not in KEYS:
            raise ConfigError(f"unknown key (known: {', '.join(sorted(KEYS))})", section=section, key=key)

    policy = (values.get("policy") or "linear").strip().lower()
    if policy not in POLICIES:
        raise ConfigError(f"{policy!r} is not a policy (one of: {', '.join(POLICIES)})", section=section,
                          key="policy")

    tokens = (values.get("operators") or "").split()
    if not tokens:
        raise ConfigError("a hunting group needs at least one operator (extension[:sequence] ...)",
                          section=section, key="operators")
    operators: list[Operator] = []
    seen: set[str] = set()
    for position, token in enumerate(tokens, start=1):
        ext, sep, seq_text = token.partition(":")
        if not _NUMBER_RE.match(ext):
            raise ConfigError(f"{token!r}: {ext!r} is not an extension number", section=section, key="operators")
        if sep and not _SEQ_RE.match(seq_text):
            raise ConfigError(f"{token!r}: the sequence number after ':' must be a whole number >= 0",
                              section=section, key="operators")
        if ext in seen:
            raise ConfigError(f"operator {ext} is listed twice", section=section, key="operators")
        if ext == number:
            raise ConfigError(f"operator {ext} is the group's own number", section=section, key="operators")
        seen.add(ext)
        operators.append(Operator(ext, int(seq_text) if sep else position, position))

    ring_text = (values.get("ring_time") or "").strip()
    ring_time = DEFAULT_RING_TIME
    if ring_text:
        try:
            ring_time = float(ring_text)
        except ValueError:
            raise ConfigError(f"{ring_text!r} is not a number of seconds", section=section,
                              key="ring_time") from None
        if not math.isfinite(ring_time) or ring_time <= 0:
            raise ConfigError(f"{ring_text!r}: must be a positive number of seconds", section=section,
                              key="ring_time")

    no_answer = (values.get("no_answer") or "").strip() or None
    if no_answer is not None:
        if not _NUMBER_RE.match(no_answer):
            raise ConfigError(f"{no_answer!r} is not a number to overflow to", section=section,
                              key="no_answer")
        if no_answer == number:
            raise ConfigError("the overflow destination is the group itself", section=section, key="no_answer")
    return Group(number, section, policy, tuple(operators), ring_time, no_answer)


def parse_hunting_config(sections: Mapping[str, Mapping[str, str]]) -> HuntingConfig:
    groups: dict[str, Group] = {}
    for section, values in sorted(sections.items()):
        group = _parse_group(section, values)
        if group.number in groups:
            raise ConfigError(f"group {group.number} is already defined by [{groups[group.number].section}]",
                              section=section)
        groups[group.number] = group
    return HuntingConfig(groups)


def check_against_directory(config: HuntingConfig, is_extension: Callable[[str], bool]) -> None:
    """What parse_config cannot see: group numbers clashing with extensions, unknown operators."""
    for group in config.groups.values():
        if is_extension(group.number):
            raise ConfigError(f"group number {group.number} is also an extension ([extension {group.number}])",
                              section=group.section)
        for op in group.operators:
            if not is_extension(op.number):
                raise ConfigError(f"operator {op.number} is not an extension", section=group.section,
                                  key="operators")


# -- hunting -----------------------------------------------------------------------------------------

class _Hunt:
    """One call working its way through a group (then maybe through its overflow groups)."""

    def __init__(self, feature: HuntingFeature, call: Any, group: Group) -> None:
        self.feature = feature
        self.api = feature.api
        self.call = call
        self.visited: list[str] = []
        self.group = group
        self.pending: list[Operator] = []
        self.current: list[str] = []
        self.step_started = 0.0

    # Each step returns the next RouteDecision.
    def start(self, group: Group) -> RouteDecision:
        self.group = group
        self.visited.append(group.number)
        if group.policy == "parallel":
            self.pending = list(group.operators)
            return self._ring_parallel()
        if group.policy == "round-robin":
            self.pending = self.feature.rotation(group)
        else:
            self.pending = self.feature.linear_order(group)
        return self._ring_next()

    def _ring_next(self) -> RouteDecision:
        group = self.group
        while self.pending:
            op = self.pending.pop(0)
            targets = self._available(op)
            if not targets:
                continue
            if group.policy == "round-robin":
                self.feature.offered(group, op)
            self._log_step("ringing {op} for {t:g}s", op=op.number, t=group.ring_time)
            return self._route(targets, op.number)
        return self._overflow()

    def _ring_parallel(self) -> RouteDecision:
        group = self.group
        targets: list[ContactDestination] = []
        ringing: list[str] = []
        for op in self.pending:
            dests = self._available(op)
            if dests:
                targets.extend(dests)
                ringing.append(op.number)
        self.pending = []
        if not targets:
            return self._overflow()
        self._log_step("ringing {op} at once for {t:g}s", op=" ".join(ringing), t=group.ring_time)
        return self._route(targets, None, ringing)

    def _route(self, targets: list[ContactDestination], callee: str | None, ringing: list[str] | None = None) -> Route:
        self.current = ringing if ringing is not None else [callee or ""]
        self.step_started = self.api.clock.seconds()
        return Route(tuple(targets), ring_time=self.group.ring_time, callee=callee, on_failure=self.failed)

    def _available(self, op: Operator) -> list[ContactDestination]:
        """The operator's destinations, or [] (logged) when it cannot take the call now."""
        dests = self.api.destinations(op.number)
        if not dests:
            why = "not reachable" if self.api.bindings(op.number) else "not registered"
        elif self.api.in_call(op.number):
            why = "in a call"
        else:
            return dests
        self._log_step("skipping {op}: {why}", op=op.number, why=why)
        return []

    def failed(self, call: Any, status: int) -> RouteDecision:
        """The step's operators did not answer: say why, then ring the next one (or overflow)."""
        elapsed = self.api.clock.seconds() - self.step_started
        if status == 480 and elapsed >= self.group.ring_time - 0.001:
            why = f"no answer in {self.group.ring_time:g}s"
        else:
            why = f"{_WHY.get(status, 'failed')} ({status})"
        self._log_step("{op} did not take the call: {why}, moving on", op=" ".join(self.current), why=why)
        self.current = []
        if self.group.policy == "parallel":
            return self._overflow()
        return self._ring_next()

    def _overflow(self) -> RouteDecision:
        group = self.group
        target = group.no_answer
        if target is None:
            self._log_step("no operator took the call: 480")
            return Reject(480, "Temporarily Unavailable")
        other = self.feature.groups.get(target)
        if other is not None:
            if target in self.visited:
                self._log_step("no operator took the call; overflow group {to} already tried: 480", to=target)
                return Reject(480, "Temporarily Unavailable")
            self._log_step("no operator took the call: overflow to group {to}", to=target)
            return self.start(other)
        self._log_step("no operator took the call: overflow to {to}", to=target)
        if self.api.extension_exists(target):
            return self.api.route_to_extension(target)
        # any other number (a mobile through a trunk): routed again as if the caller had dialled it
        return self.api.route_to_number(target, f"hunt {group.number} overflow")

    def _log_step(self, fmt: str, **kw: Any) -> None:
        self.api.log.info("hunt {group} ({policy}), call {call} from {caller}: " + fmt, group=self.group.number,
                          policy=self.group.policy, call=self.call.id, caller=self.call.caller, **kw)


@implementer(IFeature, ICallRouter)
class HuntingFeature:
    """The router of every hunting group, and the round-robin positions (persisted)."""

    def __init__(self, api: ServerAPI, config: HuntingConfig) -> None:
        self.api = api
        self.groups: Mapping[str, Group] = config.groups

    def register(self, hooks: Any) -> None:
        hooks.add_router(self, priority=ROUTER_PRIORITY)
        for group in self.groups.values():
            self._log_group(group)

    def check(self, config: HuntingConfig, is_extension: Callable[[str], bool]) -> None:
        """Before a reload applies anything: the new groups against the new extensions (a ConfigError
        refuses the whole reload)."""
        check_against_directory(config, is_extension)

    def reconfigure(self, config: HuntingConfig) -> None:
        self.groups = config.groups
        for group in self.groups.values():
            self._log_group(group)

    def _log_group(self, group: Group) -> None:
        ops = " ".join(f"{o.number}:{o.seq}" for o in group.operators)
        self.api.log.info("hunt group {group}: {policy}, operators {ops}, {t:g}s each, no answer: {na}",
                          group=group.number, policy=group.policy, ops=ops, t=group.ring_time,
                          na=group.no_answer or "480")

    # ICallRouter
    def route(self, call: Any) -> RouteDecision:
        group = self.groups.get(call.callee)
        if group is None:
            return CONTINUE
        return _Hunt(self, call, group).start(group)

    # -- orders ---------------------------------------------------------------------------------------
    def login_time(self, number: str) -> float:
        """When the operator logged in: its earliest live registration (inf when unregistered)."""
        times = [b.registered_at for b in self.api.bindings(number)]
        return min(times) if times else math.inf

    def linear_order(self, group: Group) -> list[Operator]:
        return sorted(group.operators, key=lambda o: (o.seq, self.login_time(o.number), o.position))

    def _state_key(self, group: Group) -> str:
        return f"round-robin:{group.number}"

    def rotation(self, group: Group) -> list[Operator]:
        """The ring for this call: starting after the operator offered the previous call."""
        ops = list(group.operators)
        state = self.api.state_get(self._state_key(group), {}) or {}
        last = state.get("last") if isinstance(state, dict) else None
        numbers = [o.number for o in ops]
        start = numbers.index(last) + 1 if last in numbers else 0
        return ops[start:] + ops[:start]

    def offered(self, group: Group, op: Operator) -> None:
        self.api.state_set(self._state_key(group), {"last": op.number})


@implementer(IFeatureFactory)
class HuntingFactory:
    name = "minisip.hunting"
    api_version = API_VERSION
    description = "hunting groups: linear, round-robin or parallel ringing of operators, with overflow"
    config_prefixes = ("hunt",)

    def parse_config(self, sections: Mapping[str, Mapping[str, str]]) -> HuntingConfig:
        return parse_hunting_config(sections)

    def make_feature(self, api: ServerAPI, config: HuntingConfig | None) -> HuntingFeature:
        config = config if config is not None else HuntingConfig()
        check_against_directory(config, api.extension_exists)
        return HuntingFeature(api, config)


factory = HuntingFactory()
