"""G.722 (64 kbit/s) bit-exact against ffmpeg's codec (itself bit-exact with the ITU-T reference).

The vectors in tests/data/g722/ were made once (ffmpeg 5.1.9, Debian 12; its encoder without trellis search,
the default); no ffmpeg is needed to run the tests::

    cd tests/data/g722
    python3 make_input.py                      # input.s16 (16 kHz s16le) and random.g722
    ffmpeg -f s16le -ar 16000 -ac 1 -i input.s16 -c:a g722 -f g722 encoded.g722
    ffmpeg -f g722 -i encoded.g722 -f s16le -ac 1 -ar 16000 decoded.s16
    ffmpeg -f g722 -i random.g722 -f s16le -ac 1 -ar 16000 random.s16

Both codecs start from the standard's reset state, so the outputs match from the first sample on.
"""

from __future__ import annotations

import math
import sys
from array import array
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from minisip.media.g722 import (
    FRAME_BYTES,
    FRAME_SAMPLES,
    G722Decoder,
    G722Encoder,
    NarrowbandDecoder,
    NarrowbandEncoder,
)

DATA = Path(__file__).resolve().parent.parent / "data" / "g722"


def samples_of(name: str) -> array:
    samples = array("h")
    samples.frombytes((DATA / name).read_bytes())
    if sys.byteorder != "little":
        samples.byteswap()
    return samples


def goertzel(samples: list[int], frequency: float, rate: int) -> float:
    """The amplitude of ``frequency`` in ``samples`` (a sine of amplitude A gives about A)."""
    coefficient = 2 * math.cos(2 * math.pi * frequency / rate)
    s1 = s2 = 0.0
    for sample in samples:
        s1, s2 = sample + coefficient * s1 - s2, s1
    power = s1 * s1 + s2 * s2 - coefficient * s1 * s2
    return 2 * math.sqrt(max(power, 0.0)) / len(samples)


def sine(frequency: float, amplitude: int, count: int, rate: int, start: int = 0) -> list[int]:
    return [round(amplitude * math.sin(2 * math.pi * frequency * (start + n) / rate)) for n in range(count)]


class ReferenceTests(SynchronousTestCase):
    def test_encoder_is_bit_exact(self) -> None:
        """20 ms frames through one encoder give ffmpeg's octets (sweep, tones, full-scale square, noise)."""
        pcm = samples_of("input.s16")
        encoder = G722Encoder()
        encoded = b"".join(encoder.encode(pcm[i:i + FRAME_SAMPLES]) for i in range(0, len(pcm), FRAME_SAMPLES))
        self.assertEqual(len(encoded), len(pcm) // 2)
        self.assertEqual(encoded, (DATA / "encoded.g722").read_bytes())

    def test_decoder_is_bit_exact(self) -> None:
        """ffmpeg's encoding, and 800 random octets (every code, odd adaptation paths), decode to ffmpeg's samples."""
        for source, expected in (("encoded.g722", "decoded.s16"), ("random.g722", "random.s16")):
            payload = (DATA / source).read_bytes()
            decoder = G722Decoder()
            decoded = array("h")
            for i in range(0, len(payload), FRAME_BYTES):
                decoded.extend(decoder.decode(payload[i:i + FRAME_BYTES]))
            self.assertEqual(decoded, samples_of(expected), source)

    def test_frame_boundaries_do_not_matter(self) -> None:
        """The state carries over: one call or many give the same bytes."""
        pcm = samples_of("input.s16")[:1280]
        whole = G722Encoder().encode(pcm)
        encoder = G722Encoder()
        self.assertEqual(b"".join(encoder.encode(pcm[i:i + 2]) for i in range(0, len(pcm), 2)), whole)
        self.assertRaises(ValueError, G722Encoder().encode, [0, 1, 2])


class NarrowbandTests(SynchronousTestCase):
    """The conference path: 8 kHz audio in and out through the low band alone."""

    def test_8khz_tone_out_is_heard_at_16khz(self) -> None:
        encoder, decoder = NarrowbandEncoder(), G722Decoder()
        wide: list[int] = []
        for frame in range(10):
            payload = encoder.encode(sine(1000, 10000, 160, 8000, frame * 160))
            self.assertEqual(len(payload), 160)
            wide.extend(decoder.decode(payload))
        tail = wide[1600:]
        self.assertLess(abs(goertzel(tail, 1000, 16000) - 10000), 600)
        self.assertLess(goertzel(tail, 7000, 16000), 100)      # no image of the tone above 4 kHz

    def test_16khz_tone_in_is_heard_at_8khz(self) -> None:
        encoder, decoder = G722Encoder(), NarrowbandDecoder()
        narrow: list[int] = []
        for frame in range(10):
            narrow.extend(decoder.decode(encoder.encode(sine(1000, 10000, 320, 16000, frame * 320))))
        tail = narrow[800:]
        self.assertEqual(len(narrow), 1600)
        self.assertLess(abs(goertzel(tail, 1000, 8000) - 10000), 600)
        self.assertLess(goertzel(tail, 2500, 8000), 100)

    def test_silence_is_silence(self) -> None:
        """A silent mix stays at the codec's idle noise (a few units) both ways."""
        payload = NarrowbandEncoder().encode([0] * 160)
        self.assertLess(max(map(abs, NarrowbandDecoder().decode(payload))), 4)
        self.assertLess(max(map(abs, G722Decoder().decode(payload))), 4)
