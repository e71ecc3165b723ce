"""G.711 tables against ITU-T G.711 reference points (decoder outputs, decision boundaries) and round trips."""

from __future__ import annotations

import sys
import warnings
from array import array

from twisted.trial.unittest import SynchronousTestCase

from minisip.media import g711
from minisip.media.g711 import PCMA, PCMU

# ITU-T G.711 Table 2a (mu-law): decoder outputs in 14-bit units, here scaled by 4 to 16 bits.
ULAW_POINTS = {
    0xFF: 0, 0x7F: 0,            # the two zeros
    0xFE: 2 * 4, 0x7E: -2 * 4,   # first step
    0xF0: 30 * 4,                # last code of the first segment
    0xEF: 33 * 4,                # first code of the second segment
    0xDF: 99 * 4,                # segment 3 starts at 99
    0x8F: 4191 * 4,              # first code of the top segment
    0x80: 8031 * 4, 0x00: -8031 * 4,  # the extremes: +-32124
}
# ITU-T G.711 Table 1a (A-law): decoder outputs in 12-bit+sign units (1, 3, 5, ...), scaled by 8.
ALAW_POINTS = {
    0xD5: 1 * 8, 0x55: -1 * 8,   # the smallest magnitudes (A-law has no zero code)
    0xD4: 3 * 8, 0x54: -3 * 8,
    0xDA: 31 * 8,                # last code of segment 1
    0xC5: 33 * 8,                # segment 2 starts at 33
    0xF5: 66 * 8,                # segment 3 starts at 66
    0xAA: 4032 * 8, 0x2A: -4032 * 8,  # the extremes: +-32256
}


def step_of(value: int, codec: str) -> int:
    """The quantisation step (16-bit units) of the segment a decoded value lies in."""
    magnitude = abs(value)
    if codec == PCMU:
        for segment in range(8):
            if magnitude <= ((32 << (segment + 1)) - 33) * 4:  # segment ends: 31, 95, 223, ... (14-bit)
                return 8 << segment
        return 8 << 7
    return 16 << (magnitude >> 9).bit_length()  # 16 in the first two segments, then doubling


class ReferenceValueTests(SynchronousTestCase):
    def test_ulaw_decoder_outputs(self) -> None:
        for code, value in ULAW_POINTS.items():
            self.assertEqual((code, g711.ulaw_to_linear(code)), (code, value))
            self.assertEqual(g711.ULAW_DECODE[code], value)
            self.assertEqual(g711.decode(PCMU, bytes([code]))[0], value)

    def test_alaw_decoder_outputs(self) -> None:
        for code, value in ALAW_POINTS.items():
            self.assertEqual((code, g711.alaw_to_linear(code)), (code, value))
            self.assertEqual(g711.ALAW_DECODE[code], value)
            self.assertEqual(g711.decode(PCMA, bytes([code]))[0], value)

    def test_ulaw_decision_boundaries(self) -> None:
        """14-bit decision values 1, 3, 31 (segment change) and clipping beyond 8159."""
        cases = [(0, 0xFF), (3, 0xFF), (4, 0xFE), (11, 0xFE), (12, 0xFD),
                 (30 * 4 + 3, 0xF0), (31 * 4, 0xEF), (-1, 0x7E), (-4, 0x7E),
                 (8159 * 4, 0x80), (32767, 0x80), (-32768, 0x00)]
        for sample, code in cases:
            self.assertEqual((sample, g711.linear_to_ulaw(sample)), (sample, code))
            self.assertEqual(g711.encode(PCMU, [sample]), bytes([code]))

    def test_alaw_decision_boundaries(self) -> None:
        """13-bit decision values 2 (first step), 32 and 64 (segment changes), and clipping."""
        cases = [(0, 0xD5), (15, 0xD5), (16, 0xD4), (-1, 0x55), (-8, 0x55), (-16, 0x55), (-17, 0x54),
                 (-24, 0x54), (31 * 8 + 7, 0xDA), (32 * 8, 0xC5), (64 * 8, 0xF5),
                 (32767, 0xAA), (-32768, 0x2A)]
        for sample, code in cases:
            self.assertEqual((sample, g711.linear_to_alaw(sample)), (sample, code))
            self.assertEqual(g711.encode(PCMA, [sample]), bytes([code]))

    def test_silence(self) -> None:
        self.assertEqual((g711.SILENCE[PCMU], g711.SILENCE[PCMA]), (0xFF, 0xD5))


class TableTests(SynchronousTestCase):
    def test_decode_is_monotonic(self) -> None:
        """mu-law codes 0x00..0x7F rise to 0 and 0x80..0xFF fall to 0; A-law by sign and magnitude."""
        negative = [g711.ULAW_DECODE[c] for c in range(0x80)]
        positive = [g711.ULAW_DECODE[c] for c in range(0x80, 0x100)]
        self.assertEqual(negative, sorted(negative))
        self.assertEqual(positive, sorted(positive, reverse=True))
        self.assertEqual(positive, [-v for v in negative])
        alaw = sorted(range(256), key=lambda c: g711.ALAW_DECODE[c])
        self.assertEqual(len({g711.ALAW_DECODE[c] for c in alaw}), 256)

    def test_code_round_trip(self) -> None:
        """Every code decodes and re-encodes to itself, except mu-law's negative zero (0x7F -> 0xFF)."""
        codes = bytes(range(256))
        self.assertEqual(g711.encode(PCMA, g711.decode(PCMA, codes)), codes)
        expected = bytearray(codes)
        expected[0x7F] = 0xFF
        self.assertEqual(g711.encode(PCMU, g711.decode(PCMU, codes)), bytes(expected))

    def test_every_sample_quantises_within_half_a_step(self) -> None:
        """All 65536 inputs: the decoded value is within half a step (mu-law: + the 3 the 14-bit input
        truncation adds); beyond the last level, the code saturates."""
        samples = array("h", range(-32768, 32768))
        for codec, peak, slack in ((PCMU, 32124, 3), (PCMA, 32256, 0)):
            decoded = g711.decode(codec, g711.encode(codec, samples))
            self.assertEqual(len(decoded), 65536)
            for sample, value in zip(samples, decoded):
                if abs(sample) <= peak:
                    self.assertLessEqual(abs(sample - value), step_of(value, codec) // 2 + slack, (codec, sample))
                else:
                    self.assertEqual(value, peak if sample > 0 else -peak)
            # Quantising twice changes nothing.
            self.assertEqual(g711.decode(codec, g711.encode(codec, decoded)), decoded)

    def test_tables_match_the_scalar_algorithms(self) -> None:
        for u in range(65536):
            sample = u - 65536 if u >= 32768 else u
            self.assertEqual(g711.ULAW_ENCODE[u], g711.linear_to_ulaw(sample))
            self.assertEqual(g711.ALAW_ENCODE[u], g711.linear_to_alaw(sample))

    def test_matches_audioop_while_python_has_it(self) -> None:
        """Bit-exact with the removed audioop module on every input (Python <= 3.12 only)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import audioop
        samples = array("h", range(-32768, 32768))
        raw = samples.tobytes()  # audioop works on native-order samples
        codes = bytes(range(256))
        self.assertEqual(g711.encode(PCMU, samples), audioop.lin2ulaw(raw, 2))
        self.assertEqual(g711.encode(PCMA, samples), audioop.lin2alaw(raw, 2))
        self.assertEqual(g711.decode(PCMU, codes).tobytes(), audioop.ulaw2lin(codes, 2))
        self.assertEqual(g711.decode(PCMA, codes).tobytes(), audioop.alaw2lin(codes, 2))

    if sys.version_info >= (3, 13):
        test_matches_audioop_while_python_has_it.skip = "audioop was removed in Python 3.13"  # type: ignore[attr-defined]


class FrameTests(SynchronousTestCase):
    def test_decode_frame(self) -> None:
        payload = bytes([0xFF, 0x80, 0x00, 0xEF]) * 40
        self.assertEqual(list(g711.decode(PCMU, payload)), [0, 32124, -32124, 132] * 40)
        self.assertEqual(g711.decode(PCMA, b"").tolist(), [])

    def test_encode_accepts_lists_and_arrays(self) -> None:
        self.assertEqual(g711.encode(PCMU, [0, 32767, -32768]), b"\xff\x80\x00")
        self.assertEqual(g711.encode(PCMA, array("h", [0, 32767, -32768])), b"\xd5\xaa\x2a")
        self.assertEqual(g711.encode(PCMU, iter([0])), b"\xff")

    def test_encode_refuses_out_of_range(self) -> None:
        self.assertRaises(ValueError, g711.encode, PCMU, [32768])
        self.assertRaises(ValueError, g711.encode, PCMA, [0, -32769])

    def test_saturating_table(self) -> None:
        """Index = sample + bias; sums beyond 16 bits clip to the extreme codes."""
        table = g711.saturating_table(PCMU, 100000, 200000)
        self.assertEqual(len(table), 200000)
        for value in (-100000, -32769, -32768, -5, 0, 7, 32767, 32768, 99999):
            self.assertEqual(table[value + 100000], g711.ULAW_ENCODE[max(-32768, min(32767, value))], value)
        self.assertIs(g711.saturating_table(PCMU, 100000, 200000), table)

    def test_transcode_table(self) -> None:
        for source in g711.CODECS:
            for target in g711.CODECS:
                table = g711.transcode_table(source, target)
                codes = bytes(range(256))
                self.assertEqual(codes.translate(table), g711.encode(target, g711.decode(source, codes)))
        # PCMA -> PCMU -> PCMA keeps the value within one mu-law step for small values.
        self.assertEqual(bytes([0xD5]).translate(g711.transcode_table(PCMA, PCMU)), bytes([0xFE]))

    def test_normalize_codec(self) -> None:
        self.assertEqual(g711.normalize_codec("pcmu"), PCMU)
        self.assertEqual(g711.normalize_codec("PCMA"), PCMA)
        error = self.assertRaises(ValueError, g711.normalize_codec, "G722")
        self.assertIn("G722", str(error))
