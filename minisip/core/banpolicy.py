"""What a ban on an address blocks, and what it never blocks (issue 8: spoofed bans).

A ban is meant to stop password guessing, so it drops the requests that could be guesses: new
requests outside any dialog. It never drops responses (answers to requests the server sent: a
trunk's answer, a phone's answer to a call), requests of dialogs already up, ACKs, CANCELs of an
INVITE accepted before the ban, or anything from an exempt address (a configured trunk, a phone
registered over TCP or TLS; see ``FailureTracker.exempt``). docs/security.md says the same.
"""

from __future__ import annotations

from typing import Any

from minisip.sip.message import Request


def ban_lets_through(core: Any, request: Request) -> bool:
    """Whether ``request`` from a banned address is still handled (exemptions are checked earlier);
    ``core`` is the SIPCore (its dialogs and transactions)."""
    method = request.method
    if method == "ACK":
        return True  # never answered: nothing to gain for an attacker, and it may end a transaction
    if request.to_tag is not None:
        return core.find_dialog(request) is not None
    if method == "CANCEL":
        return core.transactions.find_server_invite(request) is not None
    return False
