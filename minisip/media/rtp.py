"""RTP and RTCP header views (RFC 3550), the RFC 7983/5761 demultiplexer and loss bookkeeping.

Minimal and allocation-light on purpose: the relay reads a few header fields per packet and parses
RTCP reports only for statistics. Parsing garbage raises ``RtpError`` with the exact reason, never
anything else.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

RTP_VERSION = 2
RTP_HEADER_LENGTH = 12
RTCP_SR = 200
RTCP_RR = 201
RTCP_SDES = 202
RTCP_BYE = 203
RTCP_APP = 204
RTCP_TYPES = frozenset({RTCP_SR, RTCP_RR, RTCP_SDES, RTCP_BYE, RTCP_APP})

# What a datagram on a media port is, from its first bytes (RFC 7983, RFC 5761).
KIND_OTHER = 0
KIND_STUN = 1
KIND_DTLS = 2
KIND_RTP = 3
KIND_RTCP = 4

_RTP_HEADER = struct.Struct("!BBHII")
_RTCP_HEADER = struct.Struct("!BBHI")
_REPORT_BLOCK = struct.Struct("!IIIIII")


class RtpError(ValueError):
    """A datagram that is not the RTP or RTCP packet it claims to be; the message says why."""


def demux(data: bytes) -> int:
    """Classify a datagram by its first byte (RFC 7983) and, for RTP/RTCP, its second (RFC 5761)."""
    if not data:
        return KIND_OTHER
    first = data[0]
    if 128 <= first <= 191:
        if len(data) < 2:
            return KIND_OTHER
        return KIND_RTCP if 64 <= (data[1] & 0x7F) <= 95 else KIND_RTP
    if first <= 3:
        return KIND_STUN
    if 20 <= first <= 63:
        return KIND_DTLS
    return KIND_OTHER


@dataclass(frozen=True, slots=True)
class RtpHeader:
    """The fixed RTP header plus the lengths a relay needs (CSRCs, extension, padding)."""

    marker: bool
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    csrc_count: int
    extension: bool
    padding: bool
    header_length: int
    payload_length: int

    @classmethod
    def parse(cls, data: bytes) -> RtpHeader:
        """Read the header of RTP packet ``data``; raises RtpError naming what is wrong."""
        if len(data) < RTP_HEADER_LENGTH:
            raise RtpError(f"RTP packet too short: {len(data)} bytes, the header needs 12")
        first, second, sequence, timestamp, ssrc = _RTP_HEADER.unpack_from(data)
        version = first >> 6
        if version != RTP_VERSION:
            raise RtpError(f"RTP version {version}, expected 2")
        csrc_count = first & 0x0F
        header_length = RTP_HEADER_LENGTH + 4 * csrc_count
        extension = bool(first & 0x10)
        if extension:
            if len(data) < header_length + 4:
                raise RtpError(f"RTP header extension cut short: {len(data)} bytes")
            words = (data[header_length + 2] << 8) | data[header_length + 3]
            header_length += 4 + 4 * words
        if len(data) < header_length:
            raise RtpError(f"RTP header of {header_length} bytes in a {len(data)}-byte packet")
        padding = bool(first & 0x20)
        payload_length = len(data) - header_length
        if padding:
            pad = data[-1]
            if pad == 0 or pad > payload_length:
                raise RtpError(f"RTP padding of {pad} bytes with {payload_length} bytes after the header")
            payload_length -= pad
        return cls(
            marker=bool(second & 0x80),
            payload_type=second & 0x7F,
            sequence=sequence,
            timestamp=timestamp,
            ssrc=ssrc,
            csrc_count=csrc_count,
            extension=extension,
            padding=padding,
            header_length=header_length,
            payload_length=payload_length,
        )


@dataclass(frozen=True, slots=True)
class ReportBlock:
    """One reception report (RFC 3550 6.4.1): how the reporter receives the stream ``ssrc``."""

    ssrc: int
    fraction_lost: int  # fixed point, /256
    cumulative_lost: int  # signed 24 bits
    highest_sequence: int
    jitter: int  # in timestamp units
    last_sr: int
    delay_since_last_sr: int

    @property
    def fraction_lost_ratio(self) -> float:
        """The fraction lost since the previous report, 0.0 to 1.0."""
        return self.fraction_lost / 256.0


@dataclass(frozen=True, slots=True)
class RtcpPacket:
    """One packet of a compound RTCP datagram: its type, sender SSRC and reception reports."""

    packet_type: int
    count: int
    ssrc: int
    length: int  # bytes, header included
    reports: tuple[ReportBlock, ...]


def parse_rtcp(data: bytes) -> list[RtcpPacket]:
    """Split a (plain) compound RTCP datagram into its packets; raises RtpError naming the fault."""
    packets: list[RtcpPacket] = []
    offset = 0
    total = len(data)
    if total < 8:
        raise RtpError(f"RTCP packet too short: {total} bytes, the header needs 8")
    while offset < total:
        if total - offset < 4:
            raise RtpError(f"RTCP: {total - offset} stray bytes at offset {offset}")
        first, packet_type, words = struct.unpack_from("!BBH", data, offset)
        if first >> 6 != RTP_VERSION:
            raise RtpError(f"RTCP version {first >> 6} at offset {offset}, expected 2")
        if not 192 <= packet_type <= 223:
            raise RtpError(f"RTCP packet type {packet_type} at offset {offset} is not 192-223")
        length = 4 * (words + 1)
        if offset + length > total:
            raise RtpError(f"RTCP packet at offset {offset} claims {length} bytes, {total - offset} left")
        count = first & 0x1F
        ssrc = struct.unpack_from("!I", data, offset + 4)[0] if length >= 8 else 0
        reports: tuple[ReportBlock, ...] = ()
        if packet_type in (RTCP_SR, RTCP_RR) and count:
            start = offset + (28 if packet_type == RTCP_SR else 8)
            if start + 24 * count > offset + length:
                raise RtpError(f"RTCP {packet_type} with {count} report blocks in {length} bytes")
            reports = tuple(_report_block(data, start + 24 * i) for i in range(count))
        elif packet_type == RTCP_SR and length < 28:
            raise RtpError(f"RTCP sender report of {length} bytes, needs 28")
        packets.append(RtcpPacket(packet_type, count, ssrc, length, reports))
        offset += length
    return packets


def _report_block(data: bytes, offset: int) -> ReportBlock:
    ssrc, lost, highest, jitter, last_sr, dlsr = _REPORT_BLOCK.unpack_from(data, offset)
    cumulative = lost & 0xFFFFFF
    if cumulative & 0x800000:
        cumulative -= 0x1000000
    return ReportBlock(ssrc, lost >> 24, cumulative, highest, jitter, last_sr, dlsr)


def report_blocks(data: bytes) -> list[ReportBlock]:
    """Every reception report in a compound RTCP datagram (from its SRs and RRs)."""
    return [block for packet in parse_rtcp(data) for block in packet.reports]


class SequenceTracker:
    """Loss estimate from RTP sequence numbers (RFC 3550 A.1, without probation).

    Expected packets are counted from the first sequence number to the highest seen, across
    wrap-arounds; a jump of more than ``MAX_DROPOUT`` starts a new run (a new source after a
    re-INVITE) and banks the old one.

    ``highest`` is the highest sequence number seen (-2 before the first, so that no 16-bit number follows
    it). A caller on a hot path may do the common step itself: when a packet's number is ``highest + 1``,
    setting ``highest`` to it and adding one to ``received`` is all that ``update`` would do.
    """

    MAX_DROPOUT = 3000
    MAX_MISORDER = 100

    __slots__ = ("received", "highest", "_base", "_cycles", "_banked")

    def __init__(self) -> None:
        self.received = 0
        self._base = -1
        self.highest = -2
        self._cycles = 0
        self._banked = 0

    def update(self, seq: int) -> None:
        """Account one received packet with sequence number ``seq``."""
        self.received += 1
        top = self.highest
        if top < 0:
            self._base = self.highest = seq
            return
        delta = (seq - top) & 0xFFFF
        if delta < self.MAX_DROPOUT:
            if delta:
                if seq < top:
                    self._cycles += 0x10000
                self.highest = seq
        elif delta <= 0x10000 - self.MAX_MISORDER:
            self._banked += self._cycles + top - self._base + 1
            self._base = self.highest = seq
            self._cycles = 0

    @property
    def expected(self) -> int:
        """Packets the sender sent, as far as the sequence numbers tell."""
        if self.highest < 0:
            return self._banked
        return self._banked + self._cycles + self.highest - self._base + 1

    @property
    def lost(self) -> int:
        """Packets that never arrived (duplicates can make the raw difference negative: floored at 0)."""
        return max(0, self.expected - self.received)
