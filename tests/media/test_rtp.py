"""RTP/RTCP header views, the RFC 7983/5761 demultiplexer and sequence-number loss estimation."""

from __future__ import annotations

import random
import struct

from twisted.trial.unittest import SynchronousTestCase

from minisip.media import rtp
from minisip.media.rtp import RtpError, RtpHeader, SequenceTracker, demux, parse_rtcp, report_blocks


def rtp_packet(seq: int = 1, ts: int = 160, ssrc: int = 0x1234, pt: int = 0, marker: bool = False,
               payload: bytes = b"\xd5" * 160) -> bytes:
    return struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | pt, seq, ts, ssrc) + payload


def report_block(ssrc: int, fraction: int, cumulative: int, highest: int, jitter: int) -> bytes:
    return struct.pack("!IIIIII", ssrc, (fraction << 24) | (cumulative & 0xFFFFFF), highest, jitter, 0, 0)


def receiver_report(ssrc: int, *blocks: bytes) -> bytes:
    body = struct.pack("!I", ssrc) + b"".join(blocks)
    return struct.pack("!BBH", 0x80 | len(blocks), 201, len(body) // 4) + body


def sender_report(ssrc: int, *blocks: bytes) -> bytes:
    body = struct.pack("!IIIIII", ssrc, 1, 2, 3, 4, 5) + b"".join(blocks)
    return struct.pack("!BBH", 0x80 | len(blocks), 200, len(body) // 4) + body


def sdes(ssrc: int) -> bytes:
    body = struct.pack("!I", ssrc) + b"\x01\x03abc\x00\x00\x00"
    return struct.pack("!BBH", 0x81, 202, len(body) // 4) + body


class DemuxTests(SynchronousTestCase):
    def test_first_byte_table(self) -> None:
        """STUN 0-3, DTLS 20-63, RTP/RTCP 128-191 (RTCP by payload type 64-95), the rest is other."""
        self.assertEqual(demux(b""), rtp.KIND_OTHER)
        self.assertEqual(demux(b"\x00\x01\x00\x00"), rtp.KIND_STUN)
        self.assertEqual(demux(b"\x16\xfe\xfd"), rtp.KIND_DTLS)
        self.assertEqual(demux(rtp_packet()), rtp.KIND_RTP)
        self.assertEqual(demux(rtp_packet(pt=96, marker=True)), rtp.KIND_RTP)
        self.assertEqual(demux(receiver_report(1)), rtp.KIND_RTCP)
        self.assertEqual(demux(b"\x80"), rtp.KIND_OTHER)
        self.assertEqual(demux(b"\x10abc"), rtp.KIND_OTHER)
        self.assertEqual(demux(b"\xffabc"), rtp.KIND_OTHER)


class RtpHeaderTests(SynchronousTestCase):
    def test_fields(self) -> None:
        header = RtpHeader.parse(rtp_packet(seq=65535, ts=0xFFFFFFFF, ssrc=7, pt=8, marker=True))
        self.assertEqual((header.marker, header.payload_type, header.sequence, header.timestamp, header.ssrc),
                         (True, 8, 65535, 0xFFFFFFFF, 7))
        self.assertEqual((header.header_length, header.payload_length), (12, 160))

    def test_csrc_extension_padding(self) -> None:
        packet = (struct.pack("!BBHII", 0x80 | 0x20 | 0x10 | 2, 0, 1, 2, 3) + b"\0" * 8
                  + b"\xbe\xde\x00\x01" + b"\0" * 4 + b"payload" + b"\0\0\x03")
        header = RtpHeader.parse(packet)
        self.assertEqual(header.csrc_count, 2)
        self.assertTrue(header.extension and header.padding)
        self.assertEqual(header.header_length, 12 + 8 + 8)
        self.assertEqual(header.payload_length, 7)

    def test_errors_name_the_fault(self) -> None:
        cases = [
            (b"\x80\x00", "too short: 2 bytes"),
            (b"\x40" + rtp_packet()[1:], "RTP version 1"),
            (struct.pack("!BBHII", 0x90, 0, 1, 2, 3) + b"\xbe", "extension cut short"),
            (struct.pack("!BBHII", 0x8F, 0, 1, 2, 3) + b"\0" * 8, "header of 72 bytes in a 20-byte"),
            (struct.pack("!BBHII", 0xA0, 0, 1, 2, 3) + b"ab\x09", "padding of 9 bytes"),
            (struct.pack("!BBHII", 0xA0, 0, 1, 2, 3) + b"ab\x00", "padding of 0 bytes"),
        ]
        for data, reason in cases:
            with self.assertRaises(RtpError) as caught:
                RtpHeader.parse(data)
            self.assertIn(reason, str(caught.exception))

    def test_garbage_raises_only_rtp_error(self) -> None:
        rng = random.Random(9)
        for _ in range(3000):
            data = bytes(rng.randrange(256) for _ in range(rng.randrange(40)))
            for parse in (RtpHeader.parse, parse_rtcp):
                try:
                    parse(data)
                except RtpError:
                    pass


class RtcpTests(SynchronousTestCase):
    def test_compound_reports(self) -> None:
        """SR and RR report blocks are read; the signed 24-bit cumulative loss keeps its sign."""
        data = (sender_report(1, report_block(0xAA, 64, 12, 70000, 80))
                + receiver_report(2, report_block(0xBB, 0, -3, 5, 1), report_block(0xCC, 255, 0, 6, 2))
                + sdes(2))
        packets = parse_rtcp(data)
        self.assertEqual([p.packet_type for p in packets], [200, 201, 202])
        self.assertEqual([p.ssrc for p in packets], [1, 2, 2])
        blocks = report_blocks(data)
        self.assertEqual([b.ssrc for b in blocks], [0xAA, 0xBB, 0xCC])
        self.assertEqual(blocks[0].fraction_lost_ratio, 0.25)
        self.assertEqual((blocks[0].cumulative_lost, blocks[0].highest_sequence, blocks[0].jitter), (12, 70000, 80))
        self.assertEqual(blocks[1].cumulative_lost, -3)

    def test_rtcp_errors(self) -> None:
        rr = receiver_report(1, report_block(2, 0, 0, 0, 0))
        cases = [
            (b"\x80\xc9\x00", "too short: 3 bytes"),
            (b"\x40" + rr[1:], "RTCP version 1 at offset 0"),
            (rr[:1] + b"\x60" + rr[2:], "packet type 96"),
            (rr[:20], "claims 32 bytes, 20 left"),
            (rr + b"\x80\xc9", "2 stray bytes at offset 32"),
            (b"\x85\xc9\x00\x01" + b"\0" * 4, "201 with 5 report blocks in 8 bytes"),
            (b"\x80\xc8\x00\x01" + b"\0" * 4, "sender report of 8 bytes"),
        ]
        for data, reason in cases:
            with self.assertRaises(RtpError) as caught:
                parse_rtcp(data)
            self.assertIn(reason, str(caught.exception))


class SequenceTrackerTests(SynchronousTestCase):
    def feed(self, *seqs: int) -> SequenceTracker:
        tracker = SequenceTracker()
        for seq in seqs:
            tracker.update(seq)
        return tracker

    def test_in_order_no_loss(self) -> None:
        tracker = self.feed(*range(100, 200))
        self.assertEqual((tracker.expected, tracker.received, tracker.lost), (100, 100, 0))

    def test_gap_counts_loss(self) -> None:
        tracker = self.feed(1, 2, 3, 7, 8)
        self.assertEqual((tracker.expected, tracker.lost), (8, 3))

    def test_wraparound(self) -> None:
        tracker = self.feed(65534, 65535, 0, 2)
        self.assertEqual((tracker.expected, tracker.lost), (5, 1))

    def test_reordered_packet_is_not_lost(self) -> None:
        tracker = self.feed(1, 2, 4, 3, 5)
        self.assertEqual((tracker.expected, tracker.lost), (5, 0))

    def test_duplicates_floor_at_zero(self) -> None:
        self.assertEqual(self.feed(1, 1, 1, 2).lost, 0)

    def test_new_source_starts_a_new_run(self) -> None:
        """A jump (a new stream after a re-INVITE) does not count thousands of packets lost."""
        tracker = self.feed(10, 11, 13, 40000, 40001)
        self.assertEqual((tracker.expected, tracker.received, tracker.lost), (6, 5, 1))

    def test_empty(self) -> None:
        self.assertEqual((SequenceTracker().expected, SequenceTracker().lost), (0, 0))
