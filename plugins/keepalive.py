"""Session keep-alive: answers body-less in-dialog pings, qualifies registered contacts, supervises dialogs.

Three jobs, one optional ``[keepalive]`` section:

* In-dialog UPDATE, INFO and MESSAGE without a body are keep-alives: the server answers them itself
  (200 when the dialog exists, refreshing its activity time; 481 when it does not) and never passes
  them to the other side. With a body (SDP, DTMF, text) they keep their meaning and go across.
  A body-less MESSAGE outside any dialog gets 481.
* Device keep-alive: every registered contact gets an OPTIONS ping each ``options_interval``
  seconds, spread over the interval with a bounded number in flight. Any final response (even
  404/405/501) means alive; ``options_timeout_failures`` pings in a row left unanswered for
  ``options_timeout`` seconds mark the contact unreachable (routing skips it) until it answers
  again or re-registers. A REGISTER refresh counts as a sign of life.
* Dialog supervision (``dialog_timeout`` > 0): an answered call with no in-dialog traffic for that
  long is probed with a body-less INFO on both legs; if either leg fails to answer, the call is
  released with BYE to both sides.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from twisted.application.service import Service
from zope.interface import implementer

from minisip.api import Binding, ConfigError, ConfigValues, IncomingRequest, Response, ServerAPI
from minisip.interfaces import (
    API_VERSION,
    IFeature,
    IFeatureFactory,
    IRegistrationObserver,
    IRequestHandler,
)

SECTION = "keepalive"
KEEPALIVE_METHODS = ("UPDATE", "INFO", "MESSAGE")
TICK = 1.0                      # seconds between two batches of OPTIONS within one round
SUPERVISION_MAX_PERIOD = 30.0   # longest pause between two looks at idle calls

Key = tuple[str, str]           # (aor, contact): how the core identifies a binding


@dataclass(frozen=True, slots=True)
class KeepaliveConfig:
    """The ``[keepalive]`` section, validated."""

    options_interval: float = 60.0
    options_timeout_failures: int = 2
    options_timeout: float = 5.0
    options_max_in_flight: int = 100
    dialog_timeout: float = 0.0


def parse_keepalive_config(sections: Mapping[str, Mapping[str, str]]) -> KeepaliveConfig:
    """``{'keepalive': {...}}`` (or nothing) -> KeepaliveConfig; ConfigError names section and key."""
    values: Mapping[str, str] = {}
    for name, section in sections.items():
        if name != SECTION:
            raise ConfigError("the keep-alive plugin takes one section, [keepalive], without a name after it",
                              section=name)
        values = section
    v = ConfigValues(SECTION, values)
    v.check_keys({"options_interval", "options_timeout_failures", "options_timeout", "options_max_in_flight",
                  "dialog_timeout"})
    d = KeepaliveConfig()
    return KeepaliveConfig(
        options_interval=v.seconds("options_interval", d.options_interval),
        options_timeout_failures=v.integer("options_timeout_failures", d.options_timeout_failures, minimum=1),
        options_timeout=v.seconds("options_timeout", d.options_timeout, above=True),
        options_max_in_flight=v.integer("options_max_in_flight", d.options_max_in_flight, minimum=1),
        dialog_timeout=v.seconds("dialog_timeout", d.dialog_timeout),
    )


@implementer(IRequestHandler)
class _InDialogPing:
    """Answers body-less in-dialog UPDATE/INFO/MESSAGE itself; anything with a body goes across."""

    def handle(self, request: IncomingRequest) -> bool:
        if request.body:
            return False
        if not request.dialog_exists:
            request.respond(481, "Call/Transaction Does Not Exist")
            return True
        request.touch()
        request.respond(200, "OK")
        return True


@implementer(IRequestHandler)
class _StrayMessage:
    """A body-less MESSAGE outside any dialog is a keep-alive for a dialog that does not exist: 481."""

    def handle(self, request: IncomingRequest) -> bool:
        if request.body:
            return False
        request.respond(481, "Call/Transaction Does Not Exist")
        return True


@implementer(IFeature, IRegistrationObserver)
class Keepalive(Service):
    """The running feature: request handlers, a registration observer, and the timers of an IService."""

    def __init__(self, api: ServerAPI, config: KeepaliveConfig) -> None:
        self.api = api
        self.log = api.log
        self.config = config
        self.setName("keepalive")
        # device keep-alive
        self.misses: dict[Key, int] = {}
        self.marked: set[Key] = set()             # contacts this feature made unreachable
        self.queue: deque[Key] = deque()          # contacts still to ping in this round
        self.queued: set[Key] = set()
        self.waiting: dict[Key, int] = {}         # contact -> id of the ping awaiting its answer
        self.outstanding = 0                      # OPTIONS transactions not finished in the core
        self.quota = 1                            # pings per tick in this round
        self._ping_ids = 0
        self._round_call: Any = None
        self._tick_call: Any = None
        # dialog supervision
        self.probing: set[str] = set()
        self._supervise_call: Any = None

    # -- IFeature ----------------------------------------------------------------------------------
    def register(self, hooks: Any) -> None:
        ping = _InDialogPing()
        for method in KEEPALIVE_METHODS:
            hooks.add_request_handler(method, ping, in_dialog=True)
        hooks.add_request_handler("MESSAGE", _StrayMessage(), in_dialog=False)
        hooks.add_registration_observer(self)
        hooks.add_service(self)

    def reconfigure(self, config: KeepaliveConfig) -> None:
        old, self.config = self.config, config
        if not self.running:
            return
        if (old.options_interval, old.options_timeout) != (config.options_interval, config.options_timeout):
            self._stop_qualify()
            if config.options_interval <= 0:
                self._release_marks()
            self._start_qualify()
        if old.dialog_timeout != config.dialog_timeout:
            self._stop_supervision()
            self._start_supervision()
        self._describe()

    def _describe(self) -> None:
        c = self.config
        qualify = (f"OPTIONS to every contact each {c.options_interval:g}s, unreachable after "
                   f"{c.options_timeout_failures} unanswered ({c.options_timeout:g}s each)"
                   if c.options_interval > 0 else "no OPTIONS pings")
        supervision = f"calls idle {c.dialog_timeout:g}s are probed" if c.dialog_timeout > 0 else "no dialog timeout"
        self.log.info("keep-alive: {qualify}; {supervision}", qualify=qualify, supervision=supervision)

    # -- IService --------------------------------------------------------------------------------
    def startService(self) -> None:
        if self.running:
            return      # started once already: never a second set of timers
        Service.startService(self)
        self._start_qualify()
        self._start_supervision()
        self._describe()

    def stopService(self) -> Any:
        self._stop_qualify()
        self._stop_supervision()
        return Service.stopService(self)

    # -- IRegistrationObserver ---------------------------------------------------------------------
    def registration_changed(self, event: str, aor: str, binding: Binding) -> None:
        key = (aor, binding.contact)
        if event in ("registered", "refreshed"):
            # A REGISTER is a sign of life; the core clears its unreachable mark itself.
            self.misses.pop(key, None)
            self.marked.discard(key)
        elif event in ("unregistered", "expired"):
            self.misses.pop(key, None)
            self.marked.discard(key)
            self.waiting.pop(key, None)

    # -- device keep-alive (OPTIONS qualify) -----------------------------------------------------------
    def _start_qualify(self) -> None:
        if self.config.options_interval > 0:
            self._round_call = self.api.clock.callLater(self.config.options_interval, self._round)

    def _stop_qualify(self) -> None:
        for timer in (self._round_call, self._tick_call):
            if timer is not None and timer.active():
                timer.cancel()
        self._round_call = self._tick_call = None
        self.queue.clear()
        self.queued.clear()
        self.waiting.clear()     # answers still to come are still welcome; timeouts no longer count

    def _release_marks(self) -> None:
        """Qualify was switched off: give back the contacts it had taken out of routing."""
        for binding in self.api.all_bindings():
            if (binding.aor, binding.contact) in self.marked:
                self.api.set_reachable(binding, True)
        self.marked.clear()
        self.misses.clear()

    def _round(self) -> None:
        """Start a round: queue every registered contact, to be pinged in batches over the interval."""
        interval = self.config.options_interval
        self._round_call = self.api.clock.callLater(interval, self._round)
        current: set[Key] = set()
        for binding in self.api.all_bindings():
            key = (binding.aor, binding.contact)
            current.add(key)
            if key not in self.queued:
                self.queue.append(key)
                self.queued.add(key)
        for key in [k for k in self.misses if k not in current]:
            del self.misses[key]
        self.marked &= current
        ticks = max(1, int(interval / TICK))
        self.quota = max(1, math.ceil(len(self.queue) / ticks))
        if self._tick_call is None:
            self._tick()

    def _tick(self) -> None:
        self._tick_call = None
        budget = min(self.quota, self.config.options_max_in_flight - self.outstanding)
        while budget > 0 and self.queue:
            key = self.queue.popleft()
            self.queued.discard(key)
            if key in self.waiting:
                continue       # the previous ping has not been answered or timed out yet
            binding = self._binding(key)
            if binding is None:
                continue       # gone since the round started
            if self._ping(key, binding):
                budget -= 1
        if self.queue:
            self._tick_call = self.api.clock.callLater(min(TICK, self.config.options_interval), self._tick)

    def _binding(self, key: Key) -> Binding | None:
        for binding in self.api.bindings(key[0]):
            if binding.contact == key[1]:
                return binding
        return None

    def _ping(self, key: Key, binding: Binding) -> bool:
        try:
            target = self.api.destination_for(binding).addr
            d = self.api.send_request("OPTIONS", binding.contact, target)
        except Exception:  # noqa: BLE001 - one unusable contact must not stop the round
            self.log.failure("keep-alive: cannot send OPTIONS to {contact} of extension {aor}",
                             contact=binding.contact, aor=binding.aor)
            return False
        self._ping_ids += 1
        ping_id = self._ping_ids
        self.outstanding += 1
        self.waiting[key] = ping_id
        timer = self.api.clock.callLater(self.config.options_timeout, self._unanswered, key, ping_id)
        d.addCallback(self._answered, key, ping_id, timer)
        d.addErrback(lambda f: self.log.failure("keep-alive: OPTIONS result for {contact}", f, contact=key[1]))
        return True

    def _unanswered(self, key: Key, ping_id: int) -> None:
        if self.waiting.get(key) == ping_id:
            del self.waiting[key]
            self._missed(key)

    def _answered(self, response: Response | None, key: Key, ping_id: int, timer: Any) -> None:
        self.outstanding -= 1
        timed_out = not timer.active()
        if not timed_out:
            timer.cancel()
        if self.waiting.get(key) == ping_id:
            del self.waiting[key]
        if not self.running:
            return
        if response is not None:
            self._alive(key)        # any final response, even 404/405/501, or late after the timeout
        elif not timed_out:
            self._missed(key)       # the core gave up (or could not deliver) before our own timeout

    def _alive(self, key: Key) -> None:
        self.misses.pop(key, None)
        if key in self.marked:
            self.marked.discard(key)
            binding = self._binding(key)
            if binding is not None:
                self.api.set_reachable(binding, True)

    def _missed(self, key: Key) -> None:
        binding = self._binding(key)
        if binding is None:
            self.misses.pop(key, None)
            return
        n = self.misses.get(key, 0) + 1
        self.misses[key] = n
        self.log.debug("keep-alive: OPTIONS to {contact} of extension {aor} unanswered ({n} in a row)",
                       contact=key[1], aor=key[0], n=n)
        if n >= self.config.options_timeout_failures and self.api.is_reachable(binding):
            self.marked.add(key)
            self.api.set_reachable(binding, False)   # the core logs it and skips the contact when routing

    # -- dialog supervision --------------------------------------------------------------------------
    def _supervision_period(self) -> float:
        return max(0.5, min(SUPERVISION_MAX_PERIOD, self.config.dialog_timeout / 4))

    def _start_supervision(self) -> None:
        if self.config.dialog_timeout > 0:
            self._supervise_call = self.api.clock.callLater(self._supervision_period(), self._supervise)

    def _stop_supervision(self) -> None:
        if self._supervise_call is not None and self._supervise_call.active():
            self._supervise_call.cancel()
        self._supervise_call = None

    def _supervise(self) -> None:
        self._supervise_call = self.api.clock.callLater(self._supervision_period(), self._supervise)
        now = self.api.clock.seconds()
        limit = self.config.dialog_timeout
        for call in self.api.calls():
            if call.state != "answered" or call.id in self.probing:
                continue
            if now - call.last_activity >= limit:
                self._probe(call)

    def _probe(self, call: Any) -> None:
        self.probing.add(call.id)
        idle = self.api.clock.seconds() - call.last_activity
        d = self.api.probe_call(call)

        def done(alive: bool) -> None:
            self.probing.discard(call.id)
            if call.state != "answered":
                return      # ended meanwhile
            if alive:
                self.api.touch(call)
                return
            self.log.warn(  # noqa: G010 (twisted.logger.Logger has no warning())
                "call {id} from {caller} to {callee}: no in-dialog traffic for {idle:.0f}s and the probe "
                "failed (481, 408 or no answer); releasing it (dialog timeout)",
                id=call.id, caller=call.caller, callee=call.callee, idle=idle)
            self.api.hangup(call, "dialog timeout")

        def failed(f: Any) -> None:
            self.probing.discard(call.id)
            self.log.failure("keep-alive: probing call {id}", f, id=call.id)

        d.addCallbacks(done, failed)


@implementer(IFeatureFactory)
class KeepaliveFactory:
    """What the plugin loader finds in this file."""

    name = "minisip.keepalive"
    api_version = API_VERSION
    description = "session keep-alive: answers body-less in-dialog pings, qualifies contacts with OPTIONS"
    config_prefixes = (SECTION,)

    def parse_config(self, sections: Mapping[str, Mapping[str, str]]) -> KeepaliveConfig:
        return parse_keepalive_config(sections)

    def make_feature(self, api: ServerAPI, config: KeepaliveConfig | None) -> Keepalive:
        return Keepalive(api, config if config is not None else KeepaliveConfig())


keepalive = KeepaliveFactory()
