"""Where a registered contact is reached: its own connection while open, its Contact port otherwise
(on the registering host only), and the NAT rules of UDP."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from minisip.core.router import destination_for
from minisip.core.store import Binding
from minisip.sip.types import Addr


def binding(contact: str, transport: str, host: str = "10.0.0.5", port: int = 40000) -> Binding:
    return Binding("103", contact, 2e9, 1e9, "c", 1, transport=transport, source_host=host, source_port=port)


class StreamContactTests(SynchronousTestCase):
    """A phone registered over TCP/TLS, then closed that connection (twinkle persistent_tcp=no, SIPp)."""

    def test_open_connection_is_reused(self) -> None:
        b = binding("sip:103@10.0.0.5:5070;transport=tcp", "tcp")
        dest = destination_for(b, connected=lambda addr: True)
        self.assertEqual(dest.addr, Addr("tcp", "10.0.0.5", 40000))

    def test_closed_connection_goes_to_the_contact_port(self) -> None:
        seen: list[Addr] = []
        b = binding("sip:103@10.0.0.5:5070;transport=tcp", "tcp")
        dest = destination_for(b, connected=lambda addr: seen.append(addr) or False)  # type: ignore[func-returns-value]
        self.assertEqual(seen, [Addr("tcp", "10.0.0.5", 40000)])
        self.assertEqual(dest.addr, Addr("tcp", "10.0.0.5", 5070))

    def test_tls_default_port(self) -> None:
        b = binding("sip:103@10.0.0.5;transport=tls", "tls")
        self.assertEqual(destination_for(b, connected=lambda a: False).addr, Addr("tls", "10.0.0.5", 5061))

    def test_contact_on_another_host_is_never_trusted(self) -> None:
        b = binding("sip:103@192.0.2.66:5070;transport=tcp", "tcp")
        self.assertEqual(destination_for(b, connected=lambda a: False).addr, Addr("tcp", "10.0.0.5", 40000))

    def test_without_a_transport_to_ask_the_connection_is_used(self) -> None:
        b = binding("sip:103@10.0.0.5:5070;transport=tcp", "tcp")
        self.assertEqual(destination_for(b).addr, Addr("tcp", "10.0.0.5", 40000))


class DatagramContactTests(SynchronousTestCase):
    def test_contact_on_the_registering_host(self) -> None:
        b = binding("sip:103@10.0.0.5:5070", "udp", port=5070)
        self.assertEqual(destination_for(b).addr, Addr("udp", "10.0.0.5", 5070))

    def test_behind_nat_the_source_is_used(self) -> None:
        b = binding("sip:103@192.168.1.20:5060", "udp", host="198.51.100.7", port=61000)
        self.assertEqual(destination_for(b, connected=lambda a: False).addr, Addr("udp", "198.51.100.7", 61000))
