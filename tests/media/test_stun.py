"""Tests for minisip.media.stun: RFC 5769 test vectors and the ICE-lite responder's answers."""

from __future__ import annotations

import random

from twisted.trial.unittest import SynchronousTestCase

from minisip.media import stun
from minisip.media.stun import IceLite, StunMessage


def unhex(text: str) -> bytes:
    return bytes.fromhex("".join(text.split()))


PASSWORD = "VOkJxbRl1RmTxUk/WvJxBt"

# RFC 5769 section 2.1: Binding request, USERNAME evtj:h6vY, short-term password above.
SAMPLE_REQUEST = unhex("""
    00 01 00 58 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
    80 22 00 10 53 54 55 4e 20 74 65 73 74 20 63 6c 69 65 6e 74
    00 24 00 04 6e 00 01 ff
    80 29 00 08 93 2f f9 b1 51 26 3b 36
    00 06 00 09 65 76 74 6a 3a 68 36 76 59 20 20 20
    00 08 00 14 9a ea a7 0c bf d8 cb 56 78 1e f2 b5 b2 d3 f2 49 c1 b5 71 a2
    80 28 00 04 e5 7a 3b cf
""")
# Section 2.2: success response, XOR-MAPPED-ADDRESS 192.0.2.1:32853.
SAMPLE_IPV4_RESPONSE = unhex("""
    01 01 00 3c 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
    80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
    00 20 00 08 00 01 a1 47 e1 12 a6 43
    00 08 00 14 2b 91 f5 99 fd 9e 90 c3 8c 74 89 f9 2a f9 ba 53 f0 6b e7 d7
    80 28 00 04 c0 7d 4c 96
""")
# Section 2.3: the same with [2001:db8:1234:5678:11:2233:4455:6677]:32853.
SAMPLE_IPV6_RESPONSE = unhex("""
    01 01 00 48 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
    80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
    00 20 00 14 00 02 a1 47 01 13 a9 fa a5 d3 f1 79 bc 25 f4 b5 be d2 b9 d9
    00 08 00 14 a3 82 95 4e 4b e6 7b f1 17 84 c9 7c 82 92 c2 75 bf e3 ed 41
    80 28 00 04 c8 fb 0b 4c
""")
TRANSACTION = unhex("b7 e7 a7 01 bc 34 d6 86 fa 87 df ae")
PEER = ("192.0.2.1", 32853)


def request(username: str | None = "evtj:h6vY", password: str | None = PASSWORD, use_candidate: bool = False,
            transaction: bytes = b"\x42" * 12, fingerprint: bool = True, extra: tuple[int, bytes] | None = None
            ) -> bytes:
    message = StunMessage(stun.BINDING, stun.CLASS_REQUEST, transaction).with_attribute(stun.PRIORITY, 0x6E0001FF)
    if username is not None:
        message = message.with_attribute(stun.USERNAME, username)
    message = message.with_attribute(stun.ICE_CONTROLLING, 0x0102030405060708)
    if use_candidate:
        message = message.with_attribute(stun.USE_CANDIDATE, True)
    if extra is not None:
        message = StunMessage(message.method, message.klass, message.transaction_id, message.attributes + (extra,))
    key = None if password is None else password.encode()
    return stun.serialize(message, integrity_key=key, fingerprint=fingerprint)


class VectorTests(SynchronousTestCase):
    def test_sample_request(self) -> None:
        message = stun.parse(SAMPLE_REQUEST)
        self.assertEqual((message.method, message.klass, message.transaction_id),
                         (stun.BINDING, stun.CLASS_REQUEST, TRANSACTION))
        self.assertEqual(message.get(stun.SOFTWARE), "STUN test client")
        self.assertEqual(message.get(stun.USERNAME), "evtj:h6vY")
        self.assertEqual(message.get(stun.PRIORITY), 0x6E0001FF)
        self.assertEqual(message.get(stun.ICE_CONTROLLED), 0x932FF9B151263B36)
        self.assertTrue(stun.check_integrity(SAMPLE_REQUEST, message, PASSWORD.encode()))
        self.assertFalse(stun.check_integrity(SAMPLE_REQUEST, message, b"wrong"))
        self.assertTrue(stun.check_fingerprint(SAMPLE_REQUEST, message))

    def test_sample_responses(self) -> None:
        for data, address in ((SAMPLE_IPV4_RESPONSE, ("192.0.2.1", 32853)),
                              (SAMPLE_IPV6_RESPONSE, ("2001:db8:1234:5678:11:2233:4455:6677", 32853))):
            message = stun.parse(data)
            self.assertEqual((message.method, message.klass), (stun.BINDING, stun.CLASS_SUCCESS))
            self.assertEqual(message.get(stun.XOR_MAPPED_ADDRESS), address)
            self.assertEqual(message.get(stun.SOFTWARE), "test vector")
            self.assertTrue(stun.check_integrity(data, message, PASSWORD.encode()))
            self.assertTrue(stun.check_fingerprint(data, message))

    def test_serialize_reproduces_the_vectors_byte_for_byte(self) -> None:
        """Our encoder (attribute table, MESSAGE-INTEGRITY, FINGERPRINT) rebuilds all three samples
        (the RFC pads with spaces)."""
        for data in (SAMPLE_REQUEST, SAMPLE_IPV4_RESPONSE, SAMPLE_IPV6_RESPONSE):
            self.assertEqual(stun.serialize(stun.parse(data), PASSWORD.encode(), padding=b" "), data)

    def test_xor_mapped_address_encoding(self) -> None:
        message = StunMessage(stun.BINDING, stun.CLASS_SUCCESS, TRANSACTION)
        self.assertEqual(message.with_attribute(stun.XOR_MAPPED_ADDRESS, ("192.0.2.1", 32853)).attributes[0][1],
                         unhex("00 01 a1 47 e1 12 a6 43"))
        six = message.with_attribute(stun.XOR_MAPPED_ADDRESS, ("2001:db8:1234:5678:11:2233:4455:6677", 32853))
        self.assertEqual(six.attributes[0][1], unhex("00 02 a1 47 01 13 a9 fa a5 d3 f1 79 bc 25 f4 b5 be d2 b9 d9"))

    def test_message_types(self) -> None:
        for method in (1, 3, 0x00A, 0x0FF):  # RFC 7983: a STUN first byte is 0-3
            for klass in (0, 1, 2, 3):
                data = stun.serialize(StunMessage(method, klass, b"\x00" * 12), fingerprint=False)
                parsed = stun.parse(data)
                self.assertEqual((parsed.method, parsed.klass), (method, klass))
        self.assertEqual(stun.serialize(StunMessage(1, stun.CLASS_ERROR, b"\0" * 12), fingerprint=False)[:2],
                         b"\x01\x11")

    def test_not_stun(self) -> None:
        for junk in (b"", b"\x00" * 19, SAMPLE_REQUEST[:-1], b"\x80" + SAMPLE_REQUEST[1:],
                     SAMPLE_REQUEST[:4] + b"\x00\x00\x00\x00" + SAMPLE_REQUEST[8:]):
            self.assertFalse(stun.is_stun(junk))
            self.assertRaises(stun.StunError, stun.parse, junk)


class IceLiteTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.ice = IceLite("evtj", PASSWORD, "h6vY")

    def answer(self, data: bytes, addr: tuple[str, int] = PEER) -> tuple[StunMessage | None, bool, bytes]:
        replies, proven = self.ice.handle(data, addr)
        self.assertLessEqual(len(replies), 1)
        if not replies:
            return None, proven, b""
        return stun.parse(replies[0]), proven, replies[0]

    def test_rfc_sample_request_is_answered(self) -> None:
        response, proven, raw = self.answer(SAMPLE_REQUEST)
        assert response is not None
        self.assertTrue(proven)
        self.assertTrue(self.ice.proven)
        self.assertEqual(self.ice.proven_addr, PEER)
        self.assertFalse(self.ice.nominated)
        self.assertEqual((response.method, response.klass, response.transaction_id),
                         (stun.BINDING, stun.CLASS_SUCCESS, TRANSACTION))
        self.assertEqual(response.get(stun.XOR_MAPPED_ADDRESS), PEER)
        self.assertTrue(stun.check_integrity(raw, response, PASSWORD.encode()))
        self.assertTrue(stun.check_fingerprint(raw, response))
        self.assertEqual(response.attributes[-1][0], stun.FINGERPRINT)

    def test_use_candidate_nominates(self) -> None:
        _response, proven, _raw = self.answer(request(use_candidate=True))
        self.assertTrue(proven)
        self.assertTrue(self.ice.nominated)

    def test_ipv6_peer(self) -> None:
        addr = ("2001:db8::1", 40000)
        response, proven, _raw = self.answer(request(), addr)
        assert response is not None
        self.assertTrue(proven)
        self.assertEqual(response.get(stun.XOR_MAPPED_ADDRESS), addr)

    def assert_error(self, data: bytes, code: int) -> StunMessage:
        response, proven, raw = self.answer(data)
        assert response is not None
        self.assertFalse(proven)
        self.assertFalse(self.ice.proven)
        self.assertEqual(response.klass, stun.CLASS_ERROR)
        self.assertEqual(response.get(stun.ERROR_CODE)[0], code)
        self.assertIsNone(response.raw(stun.MESSAGE_INTEGRITY))
        self.assertTrue(stun.check_fingerprint(raw, response))
        return response

    def test_wrong_password_gets_401(self) -> None:
        self.assert_error(request(password="not the password at all"), 401)

    def test_wrong_username_gets_401(self) -> None:
        self.assert_error(request(username="other:h6vY"), 401)
        self.assert_error(request(username="evtj:someone"), 401)
        self.assert_error(request(username="evtj"), 401)

    def test_missing_credentials_get_400(self) -> None:
        self.assert_error(request(password=None), 400)
        self.assert_error(request(username=None), 400)

    def test_unknown_required_attribute_gets_420(self) -> None:
        response = self.assert_error(request(extra=(0x0031, b"abcd")), 420)
        self.assertEqual(response.get(stun.UNKNOWN_ATTRIBUTES), (0x0031,))

    def test_unknown_optional_attribute_ignored(self) -> None:
        _response, proven, _raw = self.answer(request(extra=(0xC057, b"abcd")))
        self.assertTrue(proven)

    def test_silence_for_what_is_not_a_request(self) -> None:
        bad_fingerprint = bytearray(SAMPLE_REQUEST)
        bad_fingerprint[-1] ^= 1
        indication = stun.serialize(StunMessage(stun.BINDING, stun.CLASS_INDICATION, b"\x01" * 12))
        for data in (bytes(bad_fingerprint), SAMPLE_IPV4_RESPONSE, indication, b"", b"\x00\x01garbage"):
            self.assertEqual(self.ice.handle(data, PEER), ([], False))

    def test_remote_ufrag_unknown_accepts_any_remote_part(self) -> None:
        ice = IceLite("evtj", PASSWORD)
        self.assertTrue(ice.handle(request(username="evtj:whoever"), PEER)[1])

    def test_new_credentials(self) -> None:
        ufrag, pwd = stun.new_ice_credentials()
        self.assertRegex(ufrag, r"^[A-Za-z0-9+/]{8}$")
        self.assertRegex(pwd, r"^[A-Za-z0-9+/]{24}$")
        self.assertNotEqual(stun.new_ice_credentials(), (ufrag, pwd))
        ice = IceLite(ufrag, pwd, "peer")
        self.assertTrue(ice.handle(request(username=f"{ufrag}:peer", password=pwd), PEER)[1])

    def test_mutated_requests_never_raise(self) -> None:
        rng = random.Random(5769)
        for _ in range(2000):
            data = bytearray(SAMPLE_REQUEST)
            for _flip in range(rng.randint(1, 4)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            if rng.random() < 0.2:
                data = data[: rng.randint(0, len(data))]
            replies, proven = self.ice.handle(bytes(data), PEER)
            self.assertLessEqual(len(replies), 1)
            if proven:  # only what follows MESSAGE-INTEGRITY may differ (RFC 5389 ignores it)
                self.assertEqual(bytes(data)[:-8], SAMPLE_REQUEST[:-8])
