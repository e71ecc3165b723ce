"""ITU-T G.722 at 64 kbit/s (SB-ADPCM) in pure Python: an encoder and a decoder, one of each per stream.

G.722 splits 16 kHz audio with a 24-tap quadrature mirror filter (QMF) into a low band (0-4 kHz,
6-bit ADPCM) and a high band (4-8 kHz, 2-bit ADPCM); each octet carries one sample pair (the high
band's 2 bits on top). Both ADPCM bands adapt backwards from the codes alone, so the encoder and the
decoder run the same adaptation (``_run_band``); written from the G.722 algorithm description and
bit-exact with the ITU reference (tests/media/test_g722.py checks it against ffmpeg's codec).

RTP carries G.722 as payload type 9 with an 8000 Hz RTP clock (RFC 3551) though it samples at 16 kHz:
a 20 ms packet is 160 octets holding 320 samples.

Speed: the bands run as a whole frame at a time in one tight loop each (state in local variables,
per-scale tables precomputed); the QMF is a plain multiply-add over the frame.
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from collections.abc import Sequence

__all__ = ["FRAME_BYTES", "FRAME_SAMPLES", "G722Decoder", "G722Encoder", "NarrowbandDecoder", "NarrowbandEncoder"]

FRAME_BYTES = 160     # 20 ms: one octet per 16 kHz sample pair
FRAME_SAMPLES = 320   # 20 ms at 16 kHz

# QMF coefficients h0..h11 (the filter is symmetric: h(23-i) = h(i)).
_QMF = (3, -11, 12, 32, -210, 951, 3876, -805, 362, -156, 53, -11)

# Low band: decision levels of the 6-bit quantiser (times the scale factor >> 12), the codes for
# each interval (negative and positive errors), the 4-bit inverse quantiser used for adaptation, the
# 6-bit one used to reconstruct, and the log scale factor increments.
_Q6 = (0, 35, 72, 110, 150, 190, 233, 276, 323, 370, 422, 473, 530, 587, 650, 714, 786, 858, 940, 1023,
       1121, 1219, 1339, 1458, 1612, 1765, 1980, 2195, 2557, 2919)
_ILN = (0, 63, 62, 31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17, 16, 15, 14, 13, 12, 11, 10,
        9, 8, 7, 6, 5, 4)
_ILP = (0, 61, 60, 59, 58, 57, 56, 55, 54, 53, 52, 51, 50, 49, 48, 47, 46, 45, 44, 43, 42, 41, 40, 39, 38,
        37, 36, 35, 34, 33, 32)
_QM4 = (0, -20456, -12896, -8968, -6288, -4240, -2584, -1200, 20456, 12896, 8968, 6288, 4240, 2584, 1200, 0)
_QM6 = (-136, -136, -136, -136, -24808, -21904, -19008, -16704, -14984, -13512, -12280, -11192, -10232,
        -9360, -8576, -7856, -7192, -6576, -6000, -5456, -4944, -4464, -4008, -3576, -3168, -2776, -2400,
        -2032, -1688, -1360, -1040, -728, 24808, 21904, 19008, 16704, 14984, 13512, 12280, 11192, 10232,
        9360, 8576, 7856, 7192, 6576, 6000, 5456, 4944, 4464, 4008, 3576, 3168, 2776, 2400, 2032, 1688,
        1360, 1040, 728, 432, 136, -432, -136)
_WL = (-60, -30, 58, 172, 334, 538, 1198, 3042)
_RL42 = (0, 7, 6, 5, 4, 3, 2, 1, 7, 6, 5, 4, 3, 2, 1, 0)
# High band: one decision level, codes, the 2-bit inverse quantiser, log scale factor increments.
_IHN = (0, 1, 0)
_IHP = (0, 3, 2)
_QM2 = (-7408, -1616, 7408, 1616)
_WH = (0, -214, 798)
_RH2 = (2, 1, 2, 1)
# The inverse log table (scale factor from the log scale factor's fraction).
_ILB = (2048, 2093, 2139, 2186, 2233, 2282, 2332, 2383, 2435, 2489, 2543, 2599, 2656, 2714, 2774, 2834,
        2896, 2960, 3025, 3091, 3158, 3228, 3298, 3371, 3444, 3520, 3597, 3676, 3756, 3838, 3922, 4008)


class _BandTables:
    """What differs between the two bands, precomputed per log scale factor step (``nb >> 6``)."""

    __slots__ = ("nb_max", "det", "thresholds", "negative", "positive", "adapt", "log_step", "reconstruct")

    def __init__(self, nb_max: int, exponent: int, levels: Sequence[int], negative: Sequence[int],
                 positive: Sequence[int], adapt: Sequence[int], log_step: Sequence[int],
                 reconstruct: Sequence[int]) -> None:
        self.nb_max = nb_max
        # SCALEL / SCALEH: the scale factor of each log scale factor (only nb >> 6 matters).
        dets = []
        for step in range((nb_max >> 6) + 1):
            shift = exponent - (step >> 5)
            mantissa = _ILB[step & 31]
            dets.append((mantissa >> shift if shift >= 0 else mantissa << -shift) << 2)
        self.det = tuple(dets)
        # QUANTL / QUANTH: the decision levels at each scale factor, for a bisection.
        self.thresholds = tuple(tuple((level * det) >> 12 for level in levels) for det in dets)
        self.negative = tuple(negative)
        self.positive = tuple(positive)
        self.adapt = tuple(adapt)            # INVQAL / INVQAH multiplier, by code
        self.log_step = tuple(log_step)      # LOGSCL / LOGSCH increment, by code
        self.reconstruct = tuple(reconstruct)  # INVQBL / INVQAH multiplier of the decoder's output, by code


_LOW = _BandTables(18432, 8, _Q6[1:], _ILN, _ILP, [_QM4[code >> 2] for code in range(64)],
                   [_WL[_RL42[code >> 2]] for code in range(64)], _QM6)
_HIGH = _BandTables(22528, 10, (564,), _IHN, _IHP, _QM2, [_WH[_RH2[code]] for code in range(4)], _QM2)

# One band's state: s (signal estimate), sz (zero section's estimate), nb (log scale factor),
# a1 a2 (pole coefficients), r1 r2 (reconstructed signal), p1 p2 (partial signal),
# b1..b6 (zero coefficients), d1..d6 (twice the last quantised differences, saturated; r1 r2 too).
_STATE = 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0


def _run_band(state: list[int], tables: _BandTables, values: Sequence[int], encoding: bool) -> list[int]:
    """Run one band over a frame: from sub-band samples to codes (encoding) or from codes to
    reconstructed sub-band samples (decoding); ``state`` is updated in place.

    The adaptation (INVQA, LOGSC, SCALE and block 4: RECONS, PARREC, UPPOL2, UPPOL1, UPZERO,
    DELAYA, FILTEP, FILTEZ, PREDIC) is the same in both directions and uses only the codes.
    """
    (s, sz, nb, a1, a2, r1, r2, p1, p2, b1, b2, b3, b4, b5, b6, d1, d2, d3, d4, d5, d6) = state
    dets = tables.det
    thresholds = tables.thresholds
    negative = tables.negative
    positive = tables.positive
    adapt = tables.adapt
    log_step = tables.log_step
    reconstruct = tables.reconstruct
    nb_max = tables.nb_max
    out: list[int] = []
    append = out.append
    for value in values:
        step = nb >> 6
        det = dets[step]
        if encoding:  # SUBTRA, QUANT: the code of the prediction error
            e = value - s
            if e < 0:
                if e < -32768:
                    e = -32768
                code = negative[1 + bisect_right(thresholds[step], ~e)]
            else:
                if e > 32767:
                    e = 32767
                code = positive[1 + bisect_right(thresholds[step], e)]
            append(code)
        else:  # INVQB, RECONS, LIMIT: the decoder's output from the code
            code = value
            r = s + ((det * reconstruct[code]) >> 15)
            append(16383 if r > 16383 else -16384 if r < -16384 else r)
        dq = (det * adapt[code]) >> 15
        nb = ((nb * 127) >> 7) + log_step[code]
        if nb < 0:
            nb = 0
        elif nb > nb_max:
            nb = nb_max
        # RECONS, PARREC
        r0 = s + dq
        if r0 > 32767:
            r0 = 32767
        elif r0 < -32768:
            r0 = -32768
        p0 = sz + dq
        if p0 > 32767:
            p0 = 32767
        elif p0 < -32768:
            p0 = -32768
        # UPPOL2: the a1 term is sat16(-+4 a1, at most 32767) >> 7, i.e. (-+a1) >> 5 within -256..255
        same1 = (p0 ^ p1) >= 0
        w = (-a1 if same1 else a1) >> 5
        w = (128 if (p0 ^ p2) >= 0 else -128) + (255 if w > 255 else -256 if w < -256 else w) \
            + ((a2 * 32512) >> 15)
        a2 = 12288 if w > 12288 else -12288 if w < -12288 else w
        # UPPOL1
        w = (192 if same1 else -192) + ((a1 * 32640) >> 15)
        limit = 15360 - a2
        a1 = limit if w > limit else -limit if w < -limit else w
        # UPZERO (the leak keeps |b| < 32768); DELAYA keeps 2*dq and 2*r saturated, as FILTEZ and
        # FILTEP use them (the sign, all UPZERO needs, is unchanged)
        if dq:
            b1 = ((b1 * 32640) >> 15) + (128 if (d1 ^ dq) >= 0 else -128)
            b2 = ((b2 * 32640) >> 15) + (128 if (d2 ^ dq) >= 0 else -128)
            b3 = ((b3 * 32640) >> 15) + (128 if (d3 ^ dq) >= 0 else -128)
            b4 = ((b4 * 32640) >> 15) + (128 if (d4 ^ dq) >= 0 else -128)
            b5 = ((b5 * 32640) >> 15) + (128 if (d5 ^ dq) >= 0 else -128)
            b6 = ((b6 * 32640) >> 15) + (128 if (d6 ^ dq) >= 0 else -128)
            w = dq + dq
            d6, d5, d4, d3, d2, d1 = d5, d4, d3, d2, d1, (32767 if w > 32767 else -32768 if w < -32768 else w)
        else:
            b1 = (b1 * 32640) >> 15
            b2 = (b2 * 32640) >> 15
            b3 = (b3 * 32640) >> 15
            b4 = (b4 * 32640) >> 15
            b5 = (b5 * 32640) >> 15
            b6 = (b6 * 32640) >> 15
            d6, d5, d4, d3, d2, d1 = d5, d4, d3, d2, d1, 0
        w = r0 + r0
        r2, r1 = r1, (32767 if w > 32767 else -32768 if w < -32768 else w)
        p2, p1 = p1, p0
        # FILTEP, FILTEZ: the pole and zero sections' estimates
        sp = ((a1 * r1) >> 15) + ((a2 * r2) >> 15)
        if sp > 32767:
            sp = 32767
        elif sp < -32768:
            sp = -32768
        sz = ((b1 * d1) >> 15) + ((b2 * d2) >> 15) + ((b3 * d3) >> 15) + ((b4 * d4) >> 15) + ((b5 * d5) >> 15) \
            + ((b6 * d6) >> 15)
        if sz > 32767:
            sz = 32767
        elif sz < -32768:
            sz = -32768
        # PREDIC
        s = sp + sz
        if s > 32767:
            s = 32767
        elif s < -32768:
            s = -32768
    state[:] = (s, sz, nb, a1, a2, r1, r2, p1, p2, b1, b2, b3, b4, b5, b6, d1, d2, d3, d4, d5, d6)
    return out


class G722Encoder:
    """16 kHz linear samples to G.722 octets (64 kbit/s), keeping the state between frames."""

    __slots__ = ("_history", "_low", "_high")

    def __init__(self) -> None:
        self._history = [0] * 22        # the QMF's last 22 input samples
        self._low = list(_STATE)
        self._high = list(_STATE)

    def encode(self, samples: Sequence[int]) -> bytes:
        """An even number of samples (int16 range, e.g. 320 for 20 ms) to half as many octets."""
        if len(samples) & 1:
            raise ValueError("G.722 encodes sample pairs: give an even number of samples")
        x = self._history + list(samples)
        self._history = x[-22:]
        h0, h1, h2, h3, h4, h5, h6, h7, h8, h9, h10, h11 = _QMF
        low: list[int] = []
        high: list[int] = []
        for n in range(0, len(x) - 22, 2):
            # TQMF: the older sample of each pair goes through h0, h2, ... the newer one through h23, h21, ...
            odd = (x[n] * h0 + x[n + 2] * h1 + x[n + 4] * h2 + x[n + 6] * h3 + x[n + 8] * h4
                   + x[n + 10] * h5 + x[n + 12] * h6 + x[n + 14] * h7 + x[n + 16] * h8 + x[n + 18] * h9
                   + x[n + 20] * h10 + x[n + 22] * h11)
            even = (x[n + 1] * h11 + x[n + 3] * h10 + x[n + 5] * h9 + x[n + 7] * h8 + x[n + 9] * h7
                    + x[n + 11] * h6 + x[n + 13] * h5 + x[n + 15] * h4 + x[n + 17] * h3 + x[n + 19] * h2
                    + x[n + 21] * h1 + x[n + 23] * h0)
            low.append((even + odd) >> 14)
            high.append((even - odd) >> 14)
        low_codes = _run_band(self._low, _LOW, low, True)
        high_codes = _run_band(self._high, _HIGH, high, True)
        return bytes([(h << 6) | c for h, c in zip(high_codes, low_codes)])


class G722Decoder:
    """G.722 octets (64 kbit/s) to 16 kHz linear samples, keeping the state between frames."""

    __slots__ = ("_history", "_low", "_high")

    def __init__(self) -> None:
        self._history = [0] * 22        # the receive QMF's last 11 sample pairs
        self._low = list(_STATE)
        self._high = list(_STATE)

    def decode(self, payload: bytes) -> array:
        """Octets (e.g. 160 for 20 ms) to an ``array('h')`` of twice as many samples."""
        low = _run_band(self._low, _LOW, [code & 63 for code in payload], False)
        high = _run_band(self._high, _HIGH, [code >> 6 for code in payload], False)
        x = self._history
        for rl, rh in zip(low, high):
            x.append(rl + rh)
            x.append(rl - rh)
        self._history = x[-22:]
        h0, h1, h2, h3, h4, h5, h6, h7, h8, h9, h10, h11 = _QMF
        out = array("h")
        append = out.append
        for n in range(0, len(x) - 22, 2):
            # RQMF: the sum and difference signals interleaved, the same symmetric filter
            odd = (x[n] * h0 + x[n + 2] * h1 + x[n + 4] * h2 + x[n + 6] * h3 + x[n + 8] * h4
                   + x[n + 10] * h5 + x[n + 12] * h6 + x[n + 14] * h7 + x[n + 16] * h8 + x[n + 18] * h9
                   + x[n + 20] * h10 + x[n + 22] * h11) >> 11
            even = (x[n + 1] * h11 + x[n + 3] * h10 + x[n + 5] * h9 + x[n + 7] * h8 + x[n + 9] * h7
                    + x[n + 11] * h6 + x[n + 13] * h5 + x[n + 15] * h4 + x[n + 17] * h3 + x[n + 19] * h2
                    + x[n + 21] * h1 + x[n + 23] * h0) >> 11
            append(32767 if even > 32767 else -32768 if even < -32768 else even)
            append(32767 if odd > 32767 else -32768 if odd < -32768 else odd)
        return out


# An octet with the high band's code 3: what the high band encoder gives for silence from its initial
# state on (its quantised difference is then 0, so its state and the decoder's never move).
_SILENT_HIGH = bytes(0xC0 | (code & 63) for code in range(256))
_LOW_CODE = bytes(code & 63 for code in range(256))


class NarrowbandEncoder:
    """8 kHz samples to G.722 octets, for audio that has no high band (a conference mix).

    The G.722 low band is the signal below 4 kHz sampled at 8 kHz (at half amplitude): the samples go
    straight into the low band's ADPCM, the high band is silence. The far end's QMF interpolates them
    to 16 kHz, so no resampling filter is needed here and the cost is one band, not two plus the QMF.
    """

    __slots__ = ("_low",)

    def __init__(self) -> None:
        self._low = list(_STATE)

    def encode(self, samples: Sequence[int]) -> bytes:
        """Samples at 8 kHz (int16 range, 160 for 20 ms) to as many octets."""
        return bytes(_run_band(self._low, _LOW, [sample >> 1 for sample in samples], True)).translate(_SILENT_HIGH)


class NarrowbandDecoder:
    """G.722 octets to 8 kHz samples: the low band's reconstruction (doubled to full scale).

    The high band (4-8 kHz) is dropped, as an 8 kHz mix cannot carry it; the QMF would low-pass and
    decimate to this same low band, so it is skipped.
    """

    __slots__ = ("_low",)

    def __init__(self) -> None:
        self._low = list(_STATE)

    def decode(self, payload: bytes) -> list[int]:
        """Octets (160 for 20 ms) to as many samples at 8 kHz."""
        return [r + r for r in _run_band(self._low, _LOW, payload.translate(_LOW_CODE), False)]
