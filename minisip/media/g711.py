"""G.711 mu-law (PCMU) and A-law (PCMA) without ``audioop`` (removed in Python 3.13), table-driven.

The scalar functions are the classic bit-exact ITU-T G.711 algorithms (as in Sun's g711.c and the
former ``audioop``); they run once at import to build the tables every frame goes through: 256-entry
decode tables, 65536-entry encode tables, and byte planes so a whole frame decodes with
``bytes.translate`` and extended-slice assignment (C speed, no per-sample Python code).
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Callable, Iterable

__all__ = [
    "ALAW_DECODE",
    "ALAW_ENCODE",
    "CODECS",
    "PCMA",
    "PCMU",
    "SILENCE",
    "ULAW_DECODE",
    "ULAW_ENCODE",
    "alaw_to_linear",
    "decode",
    "decode_planes",
    "encode",
    "linear_to_alaw",
    "linear_to_ulaw",
    "normalize_codec",
    "saturating_table",
    "transcode_table",
    "ulaw_to_linear",
]

PCMU = "PCMU"
PCMA = "PCMA"
CODECS = (PCMU, PCMA)

_ULAW_BIAS = 0x84
_ULAW_CLIP = 8159  # the largest 14-bit magnitude mu-law encodes
_ULAW_SEGMENT_END = (0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF)
_ALAW_SEGMENT_END = (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF)


def _segment(value: int, ends: tuple[int, ...]) -> int:
    """Index of the first segment whose end is >= value; 8 when it is beyond the last."""
    for index, end in enumerate(ends):
        if value <= end:
            return index
    return 8


def linear_to_ulaw(sample: int) -> int:
    """One 16-bit linear sample to its mu-law code word (G.711, 14-bit magnitude, inverted bits)."""
    value = sample >> 2
    if value < 0:
        value, mask = -value, 0x7F
    else:
        mask = 0xFF
    value = min(value, _ULAW_CLIP) + (_ULAW_BIAS >> 2)
    segment = _segment(value, _ULAW_SEGMENT_END)
    if segment >= 8:
        return 0x7F ^ mask
    return ((segment << 4) | ((value >> (segment + 1)) & 0x0F)) ^ mask


def ulaw_to_linear(code: int) -> int:
    """One mu-law code word to its 16-bit linear value (G.711 decoder output, scaled by 4)."""
    code = ~code & 0xFF
    value = (((code & 0x0F) << 3) + _ULAW_BIAS) << ((code & 0x70) >> 4)
    return _ULAW_BIAS - value if code & 0x80 else value - _ULAW_BIAS


def linear_to_alaw(sample: int) -> int:
    """One 16-bit linear sample to its A-law code word (G.711, 13-bit, even bits inverted)."""
    value = sample >> 3
    if value >= 0:
        mask = 0xD5
    else:
        mask = 0x55
        value = -value - 1
    segment = _segment(value, _ALAW_SEGMENT_END)
    if segment >= 8:
        return 0x7F ^ mask
    code = segment << 4
    code |= ((value >> 1) if segment < 2 else (value >> segment)) & 0x0F
    return code ^ mask


def alaw_to_linear(code: int) -> int:
    """One A-law code word to its 16-bit linear value (G.711 decoder output, scaled by 8)."""
    code ^= 0x55
    value = (code & 0x0F) << 4
    segment = (code & 0x70) >> 4
    if segment == 0:
        value += 8
    else:
        value = (value + 0x108) << (segment - 1)
    return value if code & 0x80 else -value


ULAW_DECODE: tuple[int, ...] = tuple(ulaw_to_linear(code) for code in range(256))
ALAW_DECODE: tuple[int, ...] = tuple(alaw_to_linear(code) for code in range(256))


def _encode_table(function: Callable[[int], int], shift: int) -> bytes:
    """65536 codes in unsigned 16-bit order, so a signed int16 indexes it directly (Python's negative
    indexing maps -1 to 65535). The code depends only on ``sample >> shift``: one call per distinct
    value, each result repeated ``1 << shift`` times by slice assignment."""
    step = 1 << shift
    count = 65536 >> shift
    coarse = bytes(function((q - count if q >= count // 2 else q) << shift) for q in range(count))
    table = bytearray(65536)
    for offset in range(step):
        table[offset::step] = coarse
    return bytes(table)


ULAW_ENCODE: bytes = _encode_table(linear_to_ulaw, 2)
ALAW_ENCODE: bytes = _encode_table(linear_to_alaw, 3)

_DECODE = {PCMU: ULAW_DECODE, PCMA: ALAW_DECODE}
_ENCODE = {PCMU: ULAW_ENCODE, PCMA: ALAW_ENCODE}
# The code word of a zero sample: what a silent frame is made of.
SILENCE = {PCMU: ULAW_ENCODE[0], PCMA: ALAW_ENCODE[0]}


def normalize_codec(name: str) -> str:
    """'pcmu' / 'PCMU' -> PCMU; ValueError naming the codec for anything that is not G.711."""
    upper = name.upper()
    if upper not in _DECODE:
        raise ValueError(f"unsupported codec {name!r}: only PCMU and PCMA are mixed")
    return upper


def _planes(values: tuple[int, ...]) -> tuple[bytes, bytes]:
    """Low and high byte of each 16-bit value, as two 256-byte translate tables."""
    return bytes(v & 0xFF for v in values), bytes((v >> 8) & 0xFF for v in values)


_SIGNED_PLANES = {codec: _planes(table) for codec, table in _DECODE.items()}
# Biased planes: decoded value + 32768 (0..65535), the lanes the mixer adds up.
_BIASED_PLANES = {codec: _planes(tuple(v + 32768 for v in table)) for codec, table in _DECODE.items()}


def decode(codec: str, payload: bytes) -> array:
    """A G.711 payload to an ``array('h')`` of linear samples, one per byte."""
    low, high = _SIGNED_PLANES[codec]
    raw = bytearray(2 * len(payload))
    if sys.byteorder == "little":
        raw[0::2], raw[1::2] = payload.translate(low), payload.translate(high)
    else:
        raw[1::2], raw[0::2] = payload.translate(low), payload.translate(high)
    samples = array("h")
    samples.frombytes(raw)
    return samples


def encode(codec: str, samples: Iterable[int]) -> bytes:
    """Linear samples (int16 range, e.g. an ``array('h')``) to a G.711 payload.

    Raises ValueError for a sample outside -32768..32767 (saturate first: a mix must not wrap).
    """
    table = _ENCODE[codec]
    if not isinstance(samples, array) or samples.typecode != "h":
        samples = list(samples)
        if samples and (min(samples) < -32768 or max(samples) > 32767):
            raise ValueError("sample outside the 16-bit range")
    return bytes(map(table.__getitem__, samples))


def decode_planes(codec: str) -> tuple[bytes, bytes]:
    """Translate tables giving the low and high byte of (decoded sample + 32768), for lane packing."""
    return _BIASED_PLANES[codec]


_SATURATING: dict[tuple[str, int, int], bytes] = {}


def saturating_table(codec: str, bias: int, length: int) -> bytes:
    """Encode table indexed by ``sample + bias`` for 0 <= index < length, saturating to int16 first.

    The mixer's sums exceed 16 bits; looking them up here clips and encodes in one step. Cached.
    """
    key = (codec, bias, length)
    table = _SATURATING.get(key)
    if table is None:
        encode_table = _ENCODE[codec]
        low = max(0, min(length, bias - 32768))  # indices below: saturate to -32768
        high = max(low, min(length, bias + 32768))  # indices from here: saturate to 32767
        middle = bytes(encode_table[i - bias] for i in range(low, high))
        table = bytes([encode_table[-32768]]) * low + middle + bytes([encode_table[32767]]) * (length - high)
        _SATURATING[key] = table
    return table


def transcode_table(source: str, target: str) -> bytes:
    """256-byte translate table: each code of ``source`` to the code ``target`` encodes its value with.

    Equal to decoding then encoding, so a frame passed through it equals a one-source mix of it.
    """
    encode_table = _ENCODE[target]
    return bytes(encode_table[value] for value in _DECODE[source])
