"""Issue 8 point 1 through the real trunks plugin: a carrier's caller number carrying CR LF."""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from minisip.api import ServerAPI
from minisip.sip.message import parse_message
from minisip.sip.types import Addr
from tests.core.fakes import DOMAIN, PBX, Dialog, sdp, statuses, token
from tests.plugins.test_trunks import CARRIER, CARRIER_PORT, factory, parse


class TrunkCallerInjectionTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.pbx = PBX(("100", "200"))
        self.ext = self.pbx.phone("100", "10.0.0.1")
        self.assertEqual(self.ext.register().status, 200)  # type: ignore[union-attr]
        config = parse({"trunk carrier": {"proxy": f"{CARRIER}:{CARRIER_PORT}", "did": "+31201234567:100"}})
        api = ServerAPI(self.pbx.core, self.pbx.store, factory.name)
        feature = factory.make_feature(api, config)
        feature.register(self.pbx.core.hooks.for_owner(factory.name))
        for _, svc in self.pbx.core.hooks.services:
            svc.startService()
        self.pbx.clock.advance(0)
        self.carrier = self.pbx.phone("carrier", CARRIER, CARRIER_PORT)
        self.wire: list[tuple[Addr, bytes]] = []
        send = self.pbx.core.transactions.send

        def recording(data: bytes, addr: Addr) -> None:
            self.wire.append((addr, data))
            send(data, addr)

        self.pbx.core.transactions.send = recording

    def invite(self, from_user: str) -> Any:
        ruri = "tel:+31201234567"
        dlg = Dialog(self.carrier, token() + "@carrier", token(), f"<sip:{from_user}@{CARRIER}>", f"<{ruri}>", ruri)
        self.carrier.dialogs[dlg.call_id] = dlg
        dlg.send_invite(sdp(CARRIER))
        return dlg

    def test_cr_lf_in_the_caller_number_never_reaches_the_phone(self) -> None:
        self.invite("x%3e%0d%0aSubject%3a%20pwned%0d%0aContact%3a%20%3csip%3aevil%4010.6.6.6%3e")
        self.assertEqual(statuses(self.carrier.inbox()), [400])
        self.assertEqual(self.ext.incoming(), [])
        for addr, data in self.wire:
            msg = parse_message(data)
            self.assertIsNone(msg.get("subject"), addr)
        self.assertEqual(self.pbx.records(), [])
        self.pbx.advance(40)
        self.assertEqual(self.pbx.leftovers(), {})

    def test_formatted_caller_number_rings(self) -> None:
        self.invite("%2B31-6-1234-5678")
        (dlg,) = self.ext.incoming()
        assert dlg.invite is not None
        self.assertEqual(str(dlg.invite.from_.uri), f"sip:+31612345678@{DOMAIN}")

    def test_spoofed_guesses_never_ban_the_carrier(self) -> None:
        """Issue 8 point 2: wrong answers sent with the carrier's address (spoofed UDP) do not ban it; its
        DID calls still ring the extension."""
        security = self.pbx.core.security
        self.assertTrue(security.is_exempt(CARRIER))
        for _ in range(security.max_failures * 3):
            security.record_failure(CARRIER, "100")
        self.assertFalse(security.is_banned(CARRIER))
        self.invite("0612345678")
        (ring,) = self.ext.incoming()
        self.assertEqual(ring.invite.from_.uri.user, "0612345678")  # type: ignore[union-attr]
