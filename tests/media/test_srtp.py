"""Tests for minisip.media.srtp: RFC 3711 vectors, SDES a=crypto handling, and the SDES transform."""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct

import pylibsrtp
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from minisip.media import compat, stun
from minisip.media import srtp as srtp_module
from minisip.media.interfaces import IMediaTransform
from minisip.media.srtp import (
    AES_CM_128_HMAC_SHA1_32,
    AES_CM_128_HMAC_SHA1_80,
    KEY_SALT_LENGTH,
    SdesError,
    SdesTransform,
    SrtpContext,
    aes_cm_keystream,
    crypto_line,
    derive_session_key,
    derive_session_keys,
    key_id,
    new_key_salt,
    parse_crypto,
    select_crypto,
)

# RFC 3711 Appendix B.3.
B3_MASTER_KEY = bytes.fromhex("E1F97A0D3E018BE0D64FA32C06DE4139")
B3_MASTER_SALT = bytes.fromhex("0EC675AD498AFEEBB6960B3AABE6")
B3_CIPHER_KEY = bytes.fromhex("C61E7A93744F39EE10734AFE3FF7A087")
B3_SALT = bytes.fromhex("30CBBC08863D8C85D49DB34A9AE1")
B3_AUTH_KEY_94 = bytes.fromhex(
    "CEBE321F6FF7716B6FD4AB49AF256A15"
    "6D38BAA48F0A0ACF3C34E2359E6CDBCE"
    "E049646C43D9327AD175578EF7227098"
    "6371C10C9A369AC2F94A8C5FBCDDDC25"
    "6D6E919A48B610EF17C2041E47403576"
    "6B68642C59BBFC2F34DB60DBDFB2"
)

# RFC 3711 Appendix B.2.
B2_SESSION_KEY = bytes.fromhex("2B7E151628AED2A6ABF7158809CF4F3C")
B2_SESSION_SALT = bytes.fromhex("F0F1F2F3F4F5F6F7F8F9FAFBFCFD")
B2_BLOCKS = {
    0x0000: "E03EAD0935C95E80E166B16DD92B4EB4",
    0x0001: "D23513162B02D0F72A43A2FE4A5F97AB",
    0x0002: "41E95B3BB0A2E8DD477901E4FCA894C0",
    0xFEFF: "EC8CDF7398607CB0F2D21675EA9EA1E4",
    0xFF00: "362B7C3C6773516318A077D7FC5073AE",
    0xFF01: "6A2CC3787889374FBEB4C81B17BA6C44",
}


def rtp(seq: int, ssrc: int = 0x11223344, payload: bytes = b"\xd5" * 160, pt: int = 8) -> bytes:
    return struct.pack("!BBHII", 0x80, pt, seq, seq * 160, ssrc) + payload


def rtcp_rr(ssrc: int = 0x11223344) -> bytes:
    # An empty receiver report (RC 0, PT 201, length 1 word after the header).
    return struct.pack("!BBHI", 0x80, 201, 1, ssrc)


class RFC3711VectorTests(SynchronousTestCase):
    def test_b2_aes_cm_keystream(self) -> None:
        """B.2: the AES-CM keystream for the given session key and salt, first and last blocks."""
        stream = aes_cm_keystream(B2_SESSION_KEY, B2_SESSION_SALT, ssrc=0, index=0, length=0xFF02 * 16)
        self.assertEqual(len(stream), 1044512)
        for block, expected in B2_BLOCKS.items():
            self.assertEqual(stream[block * 16 : block * 16 + 16].hex().upper(), expected, f"block {block:#06x}")

    def test_b3_key_derivation(self) -> None:
        """B.3: session cipher key, salt and (the whole 94-byte) authentication key from the master key."""
        self.assertEqual(derive_session_key(B3_MASTER_KEY, B3_MASTER_SALT, 0x00, 16), B3_CIPHER_KEY)
        self.assertEqual(derive_session_key(B3_MASTER_KEY, B3_MASTER_SALT, 0x02, 14), B3_SALT)
        self.assertEqual(derive_session_key(B3_MASTER_KEY, B3_MASTER_SALT, 0x01, 94), B3_AUTH_KEY_94)
        keys = derive_session_keys(B3_MASTER_KEY + B3_MASTER_SALT)
        self.assertEqual((keys.cipher_key, keys.auth_key, keys.salt), (B3_CIPHER_KEY, B3_AUTH_KEY_94[:20], B3_SALT))

    def test_srtcp_labels_give_other_keys(self) -> None:
        rtp_keys = derive_session_keys(B3_MASTER_KEY + B3_MASTER_SALT)
        rtcp_keys = derive_session_keys(B3_MASTER_KEY + B3_MASTER_SALT, rtcp=True)
        self.assertEqual(rtcp_keys.cipher_key, derive_session_key(B3_MASTER_KEY, B3_MASTER_SALT, 0x03, 16))
        self.assertNotEqual(rtp_keys.cipher_key, rtcp_keys.cipher_key)

    def test_key_derivation_rate_uses_the_index(self) -> None:
        with_rate = derive_session_key(B3_MASTER_KEY, B3_MASTER_SALT, 0x00, 16, index=0x10000, kdr=0x100)
        self.assertNotEqual(with_rate, B3_CIPHER_KEY)
        self.assertEqual(derive_session_key(B3_MASTER_KEY, B3_MASTER_SALT, 0x00, 16, index=0xFF, kdr=0x100),
                         B3_CIPHER_KEY)

    def test_libsrtp_packets_match_our_derivation(self) -> None:
        """What pylibsrtp puts on the wire is AES-CM with our derived keys and an 80-bit HMAC-SHA1 tag:
        the derivation and libsrtp agree, so keys from SDES or DTLS mean the same thing to both."""
        master = B3_MASTER_KEY + B3_MASTER_SALT
        session = pylibsrtp.Session(pylibsrtp.Policy(key=master, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND))
        plain = rtp(7, ssrc=0xCAFEBABE)
        wire = session.protect(plain)
        keys = derive_session_keys(master)
        stream = aes_cm_keystream(keys.cipher_key, keys.salt, ssrc=0xCAFEBABE, index=7, length=160)
        self.assertEqual(wire[:12], plain[:12])
        self.assertEqual(wire[12:172], bytes(a ^ b for a, b in zip(plain[12:], stream)))
        tag = hmac.new(keys.auth_key, wire[:172] + b"\x00\x00\x00\x00", hashlib.sha1).digest()[:10]
        self.assertEqual(wire[172:], tag)

    def test_master_key_lengths_checked(self) -> None:
        self.assertRaises(ValueError, derive_session_key, B3_MASTER_KEY[:15], B3_MASTER_SALT, 0, 16)


class SdesKeyTests(SynchronousTestCase):
    def test_new_keys_are_fresh_30_bytes(self) -> None:
        first, second = new_key_salt(), new_key_salt()
        self.assertEqual((len(first), len(second)), (KEY_SALT_LENGTH, 30))
        self.assertNotEqual(first, second)

    def test_crypto_line_round_trip(self) -> None:
        key = new_key_salt()
        for suite in (AES_CM_128_HMAC_SHA1_80, AES_CM_128_HMAC_SHA1_32):
            line = crypto_line(1, suite, key)
            self.assertEqual(line, f"1 {suite.name} inline:{base64.b64encode(key).decode()}")
            parsed = parse_crypto("a=crypto:" + line)
            self.assertEqual((parsed.tag, parsed.suite, parsed.key_salt, parsed.lifetime), (1, suite, key, None))
            self.assertEqual(parsed.value(), line)

    def test_lifetime_accepted(self) -> None:
        key = base64.b64encode(new_key_salt()).decode()
        self.assertEqual(parse_crypto(f"1 AES_CM_128_HMAC_SHA1_80 inline:{key}|2^31").lifetime, 2**31)
        self.assertEqual(parse_crypto(f"2 AES_CM_128_HMAC_SHA1_32 inline:{key}|1048576").lifetime, 1048576)

    def test_mki_refused_clearly(self) -> None:
        key = base64.b64encode(new_key_salt()).decode()
        for params in (f"inline:{key}|2^20|1:4", f"inline:{key}|1:4"):
            with self.assertRaises(SdesError) as caught:
                parse_crypto(f"1 AES_CM_128_HMAC_SHA1_80 {params}")
            self.assertIn("MKI", str(caught.exception))

    def test_bad_lines_refused_with_reasons(self) -> None:
        key = base64.b64encode(new_key_salt()).decode()
        short = base64.b64encode(b"x" * 20).decode()
        cases = {
            f"1 AES_256_CM_HMAC_SHA1_80 inline:{key}": "unsupported crypto suite",
            f"1 AES_CM_128_HMAC_SHA1_80 inline:{short}": "20 bytes",
            "1 AES_CM_128_HMAC_SHA1_80 inline:%%%notbase64%%%": "not base64",
            f"1 AES_CM_128_HMAC_SHA1_80 uri:{key}": "only inline",
            f"x AES_CM_128_HMAC_SHA1_80 inline:{key}": "bad crypto tag",
            "1 AES_CM_128_HMAC_SHA1_80": "needs a tag",
            f"1 AES_CM_128_HMAC_SHA1_80 inline:{key} UNENCRYPTED_SRTP": "UNENCRYPTED_SRTP",
            f"1 AES_CM_128_HMAC_SHA1_80 inline:{key} KDR=4": "KDR",
            f"1 AES_CM_128_HMAC_SHA1_80 inline:{key} NEWPARAM": "unknown session parameter",
            f"1 AES_CM_128_HMAC_SHA1_80 inline:{key};inline:{key}": "MKI",
            f"1 AES_CM_128_HMAC_SHA1_80 inline:{key}|2^x": "lifetime",
        }
        for line, reason in cases.items():
            with self.assertRaises(SdesError, msg=line) as caught:
                parse_crypto(line)
            self.assertIn(reason, str(caught.exception), line)

    def test_harmless_session_parameters_accepted(self) -> None:
        key = base64.b64encode(new_key_salt()).decode()
        parsed = parse_crypto(f"1 AES_CM_128_HMAC_SHA1_80 inline:{key} KDR=0 WSH=128 -X-VENDOR")
        self.assertEqual(parsed.session_params, ("KDR=0", "WSH=128", "-X-VENDOR"))

    def test_select_first_usable(self) -> None:
        key = base64.b64encode(new_key_salt()).decode()
        chosen, reasons = select_crypto([
            f"1 AEAD_AES_256_GCM inline:{key}",
            f"2 AES_CM_128_HMAC_SHA1_32 inline:{key}",
            f"3 AES_CM_128_HMAC_SHA1_80 inline:{key}",
        ])
        assert chosen is not None
        self.assertEqual((chosen.tag, chosen.suite), (2, AES_CM_128_HMAC_SHA1_32))
        self.assertEqual(len(reasons), 1)
        self.assertEqual(select_crypto([f"1 X inline:{key}"])[0], None)

    def test_key_id_is_shared_and_not_the_key(self) -> None:
        key = B3_MASTER_KEY + B3_MASTER_SALT
        self.assertEqual(key_id(key), key_id(bytes(key)))
        self.assertEqual(len(key_id(key)), 8)
        self.assertNotIn(key_id(key), key.hex())
        self.assertNotEqual(key_id(key), key_id(bytes(30)))


class SdesTransformTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.use_direct_libsrtp()
        self.key_a, self.key_b = new_key_salt(), new_key_salt()
        self.a = SdesTransform(self.key_a, self.key_b, AES_CM_128_HMAC_SHA1_80)
        self.b = SdesTransform(self.key_b, self.key_a, "AES_CM_128_HMAC_SHA1_80")

    def use_direct_libsrtp(self) -> None:
        """Where this pylibsrtp allows it (0.8 and 1.x do), libsrtp is called directly."""
        self.assertIsNotNone(compat.SRTP_DIRECT, "this pylibsrtp hides libsrtp: the relay's SRTP costs twice as much")

    def test_crypto_path(self) -> None:
        self.assertEqual(self.a.context.direct, srtp_module.SRTP_DIRECT is not None)

    def test_interface(self) -> None:
        self.assertTrue(verifyObject(IMediaTransform, self.a))
        self.assertTrue(self.a.secure)
        self.assertTrue(self.a.ready())
        self.a.attach(lambda data: None)
        self.a.start()
        self.assertEqual(self.a.control(b"\x16\xfe\xfd" + b"\x00" * 20, ("127.0.0.1", 4000)), ([], False))

    def test_rtp_round_trip_both_ways(self) -> None:
        for seq in range(100, 120):
            wire = self.a.protect_rtp(rtp(seq))
            assert wire is not None
            self.assertEqual(len(wire), 12 + 160 + 10)
            self.assertNotEqual(wire[12:172], rtp(seq)[12:])
            self.assertEqual(self.b.unprotect_rtp(wire), rtp(seq))
            back = self.b.protect_rtp(rtp(seq, ssrc=0x55667788))
            assert back is not None
            self.assertEqual(self.a.unprotect_rtp(back), rtp(seq, ssrc=0x55667788))
        self.assertEqual((self.a.auth_failures, self.b.auth_failures, self.b.replay_failures), (0, 0, 0))

    def test_rtcp_round_trip(self) -> None:
        wire = self.a.protect_rtcp(rtcp_rr())
        assert wire is not None
        self.assertEqual(len(wire), 8 + 4 + 10)  # E flag + SRTCP index, then the tag
        self.assertEqual(self.b.unprotect_rtcp(wire), rtcp_rr())

    def test_tampered_packet_dropped_and_counted(self) -> None:
        wire = bytearray(self.a.protect_rtp(rtp(1)) or b"")
        wire[40] ^= 0x01
        self.assertIsNone(self.b.unprotect_rtp(bytes(wire)))
        self.assertEqual((self.b.auth_failures, self.b.replay_failures), (1, 0))
        # The stream goes on: the next good packet still decrypts.
        self.assertEqual(self.b.unprotect_rtp(self.a.protect_rtp(rtp(2)) or b""), rtp(2))

    def test_tampered_rtcp_dropped_and_counted(self) -> None:
        wire = bytearray(self.a.protect_rtcp(rtcp_rr()) or b"")
        wire[5] ^= 0x80
        self.assertIsNone(self.b.unprotect_rtcp(bytes(wire)))
        self.assertEqual(self.b.auth_failures, 1)

    def test_replay_dropped_and_counted(self) -> None:
        wire = self.a.protect_rtp(rtp(10)) or b""
        self.assertEqual(self.b.unprotect_rtp(wire), rtp(10))
        self.assertIsNone(self.b.unprotect_rtp(wire))
        self.assertEqual((self.b.auth_failures, self.b.replay_failures), (0, 1))

    def test_replay_window(self) -> None:
        """A late packet within the replay window is taken once; one older than the window is refused as a
        replay, and the stream goes on."""
        window = srtp_module.REPLAY_WINDOW
        self.assertGreaterEqual(window, 64)   # RFC 3711 section 3.3.2
        newest = 1000 + window + 40
        # protected in order (the sender's own window refuses to protect a packet far older than its newest)
        wires = {seq: self.a.protect_rtp(rtp(seq)) or b"" for seq in (1000, 1020, 1041, newest, newest + 1)}
        self.assertEqual(self.b.unprotect_rtp(wires[1000]), rtp(1000))
        self.assertEqual(self.b.unprotect_rtp(wires[newest]), rtp(newest))
        self.assertEqual(self.b.unprotect_rtp(wires[1000 + 41]), rtp(1000 + 41))   # window - 1 behind
        self.assertIsNone(self.b.unprotect_rtp(wires[1000 + 20]))                   # window + 20 behind
        self.assertEqual(self.b.unprotect_rtp(wires[newest + 1]), rtp(newest + 1))
        self.assertEqual((self.b.auth_failures, self.b.replay_failures), (0, 1))

    def test_wrong_key_is_an_auth_failure(self) -> None:
        stranger = SdesTransform(new_key_salt(), self.key_a)
        self.assertIsNone(self.b.unprotect_rtp(stranger.protect_rtp(rtp(1)) or b""))
        self.assertEqual(self.b.auth_failures, 1)

    def test_suite_32(self) -> None:
        a = SdesTransform(self.key_a, self.key_b, AES_CM_128_HMAC_SHA1_32)
        b = SdesTransform(self.key_b, self.key_a, AES_CM_128_HMAC_SHA1_32)
        wire = a.protect_rtp(rtp(5)) or b""
        self.assertEqual(len(wire), 12 + 160 + 4)
        self.assertEqual(b.unprotect_rtp(wire), rtp(5))
        self.assertEqual(b.unprotect_rtcp(a.protect_rtcp(rtcp_rr()) or b""), rtcp_rr())
        # An _80 receiver cannot authenticate a _32 packet.
        self.assertIsNone(self.b.unprotect_rtp(wire))
        self.assertEqual(self.b.auth_failures, 1)

    def test_duplicates_from_the_plain_side_are_still_protected(self) -> None:
        """The relay forwards what a plain phone sends, repeated sequence numbers included."""
        self.assertIsNotNone(self.a.protect_rtp(rtp(3)))
        self.assertIsNotNone(self.a.protect_rtp(rtp(3)))

    def test_malformed_input_gives_none(self) -> None:
        for junk in (b"", b"\x80", b"\x80\x00\x00", b"\x80" * 11):
            self.assertIsNone(self.b.unprotect_rtp(junk))
            self.assertIsNone(self.b.unprotect_rtcp(junk))
        self.assertIsNone(self.a.protect_rtp(rtp(1, payload=b"\x00" * 1480)))
        self.assertGreater(self.b.context.other_failures + self.b.auth_failures, 0)

    def test_close_is_idempotent_and_stops_crypto(self) -> None:
        wire = self.b.protect_rtp(rtp(1)) or b""
        self.a.unprotect_rtp(wire)
        self.a.unprotect_rtp(wire)
        self.a.close()
        self.a.close()
        self.assertFalse(self.a.ready())
        self.assertIsNone(self.a.protect_rtp(rtp(1)))
        self.assertIsNone(self.a.unprotect_rtp(self.b.protect_rtp(rtp(2)) or b""))
        self.assertEqual(self.a.replay_failures, 1)  # counters survive close() for the call record

    def test_key_lengths_checked(self) -> None:
        self.assertRaises(ValueError, SrtpContext, b"x" * 29, self.key_b, AES_CM_128_HMAC_SHA1_80)
        self.assertRaises(SdesError, SdesTransform, self.key_a, self.key_b, "NO_SUCH_SUITE")

    def test_ice_lite_answers_through_control(self) -> None:
        ice = stun.IceLite("local", "localpasswordlocalpass", "remote")
        transform = SdesTransform(self.key_a, self.key_b, ice=ice)
        request = stun.StunMessage(stun.BINDING, stun.CLASS_REQUEST, b"\x01" * 12).with_attribute(
            stun.USERNAME, "local:remote"
        )
        replies, proven = transform.control(stun.serialize(request, b"localpasswordlocalpass"), ("127.0.0.1", 5000))
        self.assertTrue(proven)
        self.assertEqual(stun.parse(replies[0]).klass, stun.CLASS_SUCCESS)


class SdesTransformThroughSessionMethodsTests(SdesTransformTests):
    """The same behaviour when libsrtp can only be reached through pylibsrtp's ``Session`` methods (a
    pylibsrtp whose binding is laid out differently)."""

    def use_direct_libsrtp(self) -> None:
        self.patch(srtp_module, "SRTP_DIRECT", None)


class SrtpPathsAgreeTests(SynchronousTestCase):
    """The direct libsrtp calls and pylibsrtp's own methods make and take the same packets."""

    def setUp(self) -> None:
        self.key_a, self.key_b = new_key_salt(), new_key_salt()
        self.direct = SrtpContext(self.key_a, self.key_b, AES_CM_128_HMAC_SHA1_80)
        self.methods = SrtpContext(self.key_b, self.key_a, AES_CM_128_HMAC_SHA1_80, direct=False)

    def test_both_ways(self) -> None:
        self.assertEqual((self.direct.direct, self.methods.direct), (compat.SRTP_DIRECT is not None, False))
        for seq in range(1, 40):
            wire = self.direct.protect_rtp(rtp(seq))
            reference = pylibsrtp.Session(pylibsrtp.Policy(
                key=self.key_a, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND)).protect(rtp(seq))
            self.assertEqual(wire, reference)  # byte for byte what pylibsrtp itself makes
            self.assertEqual(self.methods.unprotect_rtp(wire or b""), rtp(seq))
            self.assertEqual(self.direct.unprotect_rtp(self.methods.protect_rtp(rtp(seq, ssrc=7)) or b""),
                             rtp(seq, ssrc=7))
        self.assertEqual(self.methods.unprotect_rtcp(self.direct.protect_rtcp(rtcp_rr()) or b""), rtcp_rr())
        self.assertEqual(self.direct.unprotect_rtcp(self.methods.protect_rtcp(rtcp_rr()) or b""), rtcp_rr())

    def test_failures_counted_alike(self) -> None:
        for receiver, sender in ((self.direct, self.methods), (self.methods, self.direct)):
            good = sender.protect_rtp(rtp(100)) or b""
            tampered = good[:-1] + bytes([good[-1] ^ 1])
            self.assertIsNone(receiver.unprotect_rtp(tampered))
            self.assertEqual(receiver.unprotect_rtp(good), rtp(100))
            self.assertIsNone(receiver.unprotect_rtp(good))
            self.assertIsNone(receiver.unprotect_rtp(b"\x80" * 1600))
            self.assertIsNone(sender.protect_rtp(rtp(101, payload=bytes(1480))))
            self.assertEqual((receiver.auth_failures, receiver.replay_failures, receiver.other_failures,
                              sender.protect_failures), (1, 1, 1, 1))

    def test_status_codes_classified(self) -> None:
        # libsrtp's srtp_err_status_t: 7 auth_fail, 9 replay_fail, 10 replay_old, 2 bad_param.
        self.assertEqual([compat.srtp_failure_of_status(code) for code in (7, 9, 10, 2, 999)],
                         ["auth", "replay", "replay", "other", "other"])

    def test_buffer_like_input(self) -> None:
        wire = self.methods.protect_rtp(rtp(5)) or b""
        self.assertEqual(self.direct.unprotect_rtp(memoryview(bytearray(wire))), rtp(5))
