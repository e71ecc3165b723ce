"""Every zope.interface of the plugin API, in one place (a plugin imports this and minisip.api only).

A plugin is a ``.py`` file in a plugin directory exposing one object that provides
:class:`IFeatureFactory`. The loader checks it with ``verifyObject``, gives it its config sections, and
calls ``make_feature``; the feature then attaches itself to the hook points of :class:`IHooks`.
"""

from __future__ import annotations

from zope.interface import Attribute, Interface

API_VERSION = 2
"""2: routers, observers and handlers see a read-only CallInfo (never the live call) and act through
ServerAPI; every hook checks its object with verifyObject and takes a priority; Destination is a tagged
union (ContactDestination, SipDestination, LegDestination); Reroute; leg factories and the media seam."""


class IFeatureFactory(Interface):
    """What a plugin file exposes at module level."""

    name = Attribute("Dotted unique id, e.g. 'minisip.hunting'.")
    api_version = Attribute("The plugin API version this plugin was written for (int).")
    description = Attribute("One line for the start-up log.")
    config_prefixes = Attribute("First words of the config sections this plugin owns, e.g. ('hunt',).")

    def parse_config(sections):  # noqa: N805
        """Validate this plugin's sections ({'hunt 600': {'policy': 'linear', ...}}) into a config object.

        Raise minisip.api.ConfigError(message, section=..., key=...) naming the section and key."""

    def make_feature(api, config):  # noqa: N805
        """Build the feature (an IFeature) with the server facade ``api`` (minisip.api.ServerAPI)."""


class IFeature(Interface):
    """A running feature."""

    def register(hooks):  # noqa: N805
        """Attach to the hook points (an IHooks). Called once at start-up."""

    def reconfigure(config):  # noqa: N805
        """A new config object from parse_config after SIGHUP (already validated)."""


class IHooks(Interface):
    """The hook points the core offers a feature.

    Every ``add_*`` checks its object with ``verifyObject`` against the interface named (a missing
    method is a start-up error naming the plugin) and takes a priority: lower numbers are asked or told
    first; entries of equal priority keep the order they were added in."""

    def add_router(router, priority=100):  # noqa: N805
        """An ICallRouter; the core's extension router is last (priority 1,000,000)."""

    def add_request_handler(method, handler, in_dialog=True, priority=100):  # noqa: N805
        """An IRequestHandler for requests of ``method`` inside (or outside) dialogs, asked before the core."""

    def add_call_observer(observer, priority=100):  # noqa: N805
        """An ICallObserver told of every call's start, answer and end."""

    def add_registration_observer(observer, priority=100):  # noqa: N805
        """An IRegistrationObserver told of registrations, refreshes, removals and expiries."""

    def add_outbound_filter(flt, priority=100):  # noqa: N805
        """An IOutboundFilter that may rewrite each request the B2BUA sends to start a call leg."""

    def add_caller_identifier(identifier, priority=100):  # noqa: N805
        """An ICallerIdentifier that may vouch for a new INVITE instead of digest auth (e.g. from a trunk)."""

    def add_service(service, priority=100):  # noqa: N805
        """An IService (timers, sockets) started after the listeners and stopped before them; its
        ``stopService`` Deferred is waited for (bounded) at shutdown."""

    def add_leg_factory(kind, factory):  # noqa: N805
        """An ILegFactory making the legs of destinations of ``kind`` ('browser', 'conference', ...)."""

    def set_media_policy(policy):  # noqa: N805
        """The IMediaPolicy every SDP offer and answer crosses (one per server; the default passes SDP through)."""


class ICallRouter(Interface):
    def route(call):  # noqa: N805
        """Return a RouteDecision (Continue, Reject, Route, Reroute) or a Deferred firing with one.

        ``call`` is a read-only minisip.api.CallInfo: id, caller, callee, dialled, source ('extension',
        'trunk', 'browser'...), trunk (name or None), state, timestamps."""


class IRequestHandler(Interface):
    def handle(request):  # noqa: N805
        """Handle a minisip.api.IncomingRequest; return True if it was answered (request.respond),
        False to let the core (and other handlers) process it normally."""


class ICallObserver(Interface):
    def call_started(call):  # noqa: N805
        """A call was authenticated and is being routed."""

    def call_answered(call):  # noqa: N805
        """A callee answered; call.answered_by is the extension (or None)."""

    def call_ended(call):  # noqa: N805
        """The call ended; call.cause says why."""


class IRegistrationObserver(Interface):
    def registration_changed(event, aor, binding):  # noqa: N805
        """event: 'registered', 'refreshed', 'unregistered' or 'expired'; binding: minisip.api.Binding."""


class IOutboundFilter(Interface):
    def filter(request, destination, call):  # noqa: N805
        """May modify ``request`` (a minisip.api.Request about to start a B-leg) in place."""


class ICallerIdentifier(Interface):
    def identify(request, source):  # noqa: N805
        """Return a minisip.api.CallerIdentity for a new INVITE this feature vouches for, or None."""


class ICallEvents(Interface):
    """What a leg tells its call (the call layer's Call implements it); ``leg`` is the leg speaking."""

    def leg_progress(leg, status, sdp):  # noqa: N805
        """A B-leg rings (180) or has early media (183 with ``sdp``)."""

    def leg_answered(leg, sdp):  # noqa: N805
        """A B-leg answered with ``sdp`` (its answer, or its offer when the caller made none)."""

    def leg_failed(leg, status, reason):  # noqa: N805
        """A B-leg could not be reached or refused (a SIP status code: 486 busy, 487 cancelled...)."""

    def leg_hungup(leg, cause):  # noqa: N805
        """An answered leg hung up (or its caller gave up before the answer)."""

    def leg_request(leg, request, respond):  # noqa: N805
        """An in-dialog LegRequest (re-offer, INFO, DTMF, REFER...) for the other side; ``respond`` takes
        the LegResponse (or None: no answer). Returns a handle whose ``cancel()`` withdraws a re-offer."""

    def leg_ack(leg, sdp):  # noqa: N805
        """The caller's late-offer answer (the SDP of its ACK), or b'' for a plain ACK."""


class ILeg(Interface):
    """One side of a call: a SIP dialog, a browser (MCCP) or a conference room. It speaks call events
    and SDP offers/answers, never a protocol's messages; the call layer drives it with these methods
    and hears from it through ICallEvents. A caller's leg (the A-leg) and a callee's (a B-leg) implement
    the same interface; the methods for the other role are never called."""

    kind = Attribute("'sip', 'browser', 'conference', ...")
    description = Attribute("A short text for logs (e.g. the contact URI and address).")
    destination = Attribute("The Destination a B-leg was made for; None for the caller's leg.")

    def start(sdp):  # noqa: N805
        """B-leg: start ringing the destination with the offer ``sdp`` (b'': no offer, the answer will
        carry one)."""

    def cancel():  # noqa: N805
        """B-leg, not answered: stop ringing. The leg then reports leg_failed (487) unless it answers first."""

    def progress(status, sdp):  # noqa: N805
        """A-leg: ringing (180) or early media (183 with ``sdp``)."""

    def answer(sdp):  # noqa: N805
        """A-leg: the call was answered; ``sdp`` is the answer (or the offer of a late-offer call)."""

    def reject(status, reason):  # noqa: N805
        """A-leg, before the answer: the call failed with a SIP status code and reason."""

    def hangup(cause):  # noqa: N805
        """End this leg (BYE, cancel or reject, whatever its state needs)."""

    def send_request(request, on_final):  # noqa: N805
        """Pass an in-dialog LegRequest to this leg's peer; ``on_final(LegResponse | None)`` once.
        Returns a handle whose ``cancel()`` withdraws it (a re-INVITE's CANCEL)."""

    def ack(sdp):  # noqa: N805
        """The other side acknowledged the answer (with the late-offer answer ``sdp``, or b'')."""

    def probe():  # noqa: N805
        """A Deferred firing True when the leg's peer still knows the call (dialog supervision)."""

    def close():  # noqa: N805
        """The call has ended: release what the leg keeps (dialog tables, sockets). Called once."""


class ILegFactory(Interface):
    def make_leg(call, destination):  # noqa: N805
        """A new ILeg for ``destination`` in ``call`` (an ICallEvents); it starts when ``start`` is called.
        Raise ValueError for a destination this factory cannot reach (the fork fails with 500)."""


class IMediaPolicy(Interface):
    """The one media seam: every SDP offer and answer between two legs crosses it, called from one place
    in the call layer. Each method returns the SDP to send on (bytes) or a Deferred firing with it, and
    may refuse by raising (or failing with) minisip.api.MediaRefused(488 or 503, reason): the leg that
    would have received the SDP fails with that status; a refused re-offer is answered with it and the
    call goes on. SDP inside multipart bodies reaches it too (as the bare SDP)."""

    def offer(call, from_leg, to_leg, sdp):  # noqa: N805
        """An offer from ``from_leg`` to ``to_leg``."""

    def answer(call, from_leg, to_leg, sdp):  # noqa: N805
        """The answer of ``from_leg`` to the offer ``to_leg`` made."""

    def leg_gone(call, leg):  # noqa: N805
        """A leg left the call (a fork lost the race, failed, or hung up): free what it held."""

    def call_ended(call):  # noqa: N805
        """The call ended: free everything it held."""
