"""Every zope.interface of the plugin API, in one place (a plugin imports this and minisip.api only).

A plugin is a ``.py`` file in a plugin directory exposing one object that provides
:class:`IFeatureFactory`. The loader checks it with ``verifyObject``, gives it its config sections, and
calls ``make_feature``; the feature then attaches itself to the hook points of :class:`IHooks`.
"""

from __future__ import annotations

from zope.interface import Attribute, Interface

API_VERSION = 1


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
    """The hook points the core offers a feature."""

    def add_router(router, priority=100):  # noqa: N805
        """An ICallRouter; lower priority numbers are asked first; the core's extension router is last."""

    def add_request_handler(method, handler, in_dialog=True):  # noqa: N805
        """An IRequestHandler for requests of ``method`` inside (or outside) dialogs, asked before the core."""

    def add_call_observer(observer):  # noqa: N805
        """An ICallObserver told of every call's start, answer and end."""

    def add_registration_observer(observer):  # noqa: N805
        """An IRegistrationObserver told of registrations, refreshes, removals and expiries."""

    def add_outbound_filter(flt):  # noqa: N805
        """An IOutboundFilter that may rewrite each request the B2BUA sends to start a call leg."""

    def add_caller_identifier(identifier):  # noqa: N805
        """An ICallerIdentifier that may vouch for a new INVITE instead of digest auth (e.g. from a trunk)."""

    def add_service(service):  # noqa: N805
        """An IService (timers, sockets) started and stopped with the server."""


class ICallRouter(Interface):
    def route(call):  # noqa: N805
        """Return a RouteDecision (Continue, Reject, Route) or a Deferred firing with one.

        ``call`` is a minisip.api.CallInfo-like object: call.id, call.caller, call.callee, call.source
        ('extension', 'trunk', 'browser'...), call.trunk (name or None)."""


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
