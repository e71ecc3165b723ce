"""The seam between browser connections (MCCP over WSS) and the call layer.

The WSS server hands each connection's call requests to an ``IBrowserCalls`` (the call layer's browser
A-leg factory implements it) and gives it the connection as an ``IBrowserPeer`` to report the call's
progress, answer and end. Neither side sees the other's machinery: no WebSocket here, no SIP there.
"""

from __future__ import annotations

from zope.interface import Attribute, Interface, implementer

__all__ = ["IBrowserCalls", "IBrowserPeer", "UnavailableBrowserCalls"]


class IBrowserPeer(Interface):
    """One browser connection, as the call layer sees it (minisip.webrtc.server.MccpServerProtocol).

    Every method may be called at any time, also after the connection closed or the call ended
    (the report is then dropped), and never raises for such races.
    """

    address = Attribute("The browser's IP address as a string (for the same failure throttling as SIP digest).")
    port = Attribute("The browser's TCP port (int).")
    origin = Attribute("The page's Origin header: 'https://host:port', 'null' for a local file, '' when absent.")
    alive = Attribute("True while the WebSocket is open (the connection may still report and be reported to).")

    def progress(call_id, state, sdp=None):  # noqa: N805
        """The call rings (``state`` 'ringing', sdp None) or has early media ('early', the answer ``sdp``: str)."""

    def answer(call_id, sdp):  # noqa: N805
        """The callee answered; ``sdp`` (str) is the answer to the browser's offer."""

    def hangup(call_id, status, reason):  # noqa: N805
        """End the call from the server's side: ``status`` 200 after the answer, else the SIP failure status
        (403 wrong caller or password, 404, 486, 480, 487, 488, 503...); ``reason`` is shown to the user.
        For an incoming call that still rings: 487 when the caller gave up or another phone answered."""

    def logged_in(user):  # noqa: N805
        """The login as extension ``user`` succeeded: its calls now ring this connection too."""

    def login_refused(reason):  # noqa: N805
        """The login failed (wrong number or password, or throttled); ``reason`` is shown to the user."""

    def incoming(call_id, caller, callee, sdp, name):  # noqa: N805
        """A call to the logged-in extension: ring the page with the offer ``sdp`` (str). Returns True when
        the page rings, False when this connection cannot take a call now (in a call, not logged in, closed)."""


class IBrowserCalls(Interface):
    """What a browser connection asks of the call layer. Each call is named by (peer, call_id).

    Methods are called on the reactor thread, never raise on purpose (an exception is logged and the
    call is hung up with 500), and return nothing: results go back through the peer.
    """

    def start_call(peer, call_id, caller, password, callee, sdp):  # noqa: N805
        """A browser places a call: authenticate ``caller`` with ``password`` (the same check and throttling
        as SIP digest; a wrong password and an unknown caller both end with peer.hangup(call_id, 403, ...)),
        then route to ``callee`` with the SDP offer ``sdp`` (str). The peer already sent 'trying'."""

    def hangup(peer, call_id, status, reason):  # noqa: N805
        """The browser hung up or cancelled, or its connection closed (then ``status`` is None and
        ``reason`` says so). ``status`` is the SIP status the browser gave, or None."""

    def dtmf(peer, call_id, digits, duration):  # noqa: N805
        """The browser sends DTMF ``digits`` (str of 0-9 * # A-D), ``duration`` ms each, into the call
        (answered or with early media)."""

    def login(peer, user, password):  # noqa: N805
        """The browser logs in as extension ``user`` to receive its calls: check ``password`` (the same check
        and throttling as SIP digest), then peer.logged_in(user) or peer.login_refused(reason)."""

    def logout(peer, user):  # noqa: N805
        """The browser logged out, or its connection closed: its calls no longer ring it."""

    def answer(peer, call_id, sdp):  # noqa: N805
        """The browser answered the incoming call ``call_id`` with its SDP answer ``sdp`` (str)."""


@implementer(IBrowserCalls)
class UnavailableBrowserCalls:
    """Until the call layer takes browser calls: every call ends at once with 503 and a clear reason."""

    reason = "browser calls are not available on this server"

    def start_call(self, peer: IBrowserPeer, call_id: str, caller: str, password: str, callee: str,
                   sdp: str) -> None:
        peer.hangup(call_id, 503, self.reason)

    def hangup(self, peer: IBrowserPeer, call_id: str, status: int | None, reason: str) -> None:
        pass

    def dtmf(self, peer: IBrowserPeer, call_id: str, digits: str, duration: int) -> None:
        pass

    def login(self, peer: IBrowserPeer, user: str, password: str) -> None:
        peer.login_refused(self.reason)

    def logout(self, peer: IBrowserPeer, user: str) -> None:
        pass

    def answer(self, peer: IBrowserPeer, call_id: str, sdp: str) -> None:
        pass
