"""The conference mixer on a Clock: N-1 mixing with exact sample arithmetic, clipping, tones, jitter buffers."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from minisip.media import g711, mixer
from minisip.media.g711 import PCMA, PCMU
from minisip.media.mixer import FRAME_SAMPLES, NUMPY_AVAILABLE, JitterBuffer, Mixer, RoomFull, percentile

NO_NUMPY = None if NUMPY_AVAILABLE else "numpy is not installed (python3-numpy): the same tests ran on the pure path"

TICK = 0.02


def frame(codec: str, value: int) -> bytes:
    """A 20 ms payload of one constant sample value."""
    return g711.encode(codec, [value] * FRAME_SAMPLES)


def level(codec: str, code: int) -> int:
    """A value G.711 represents exactly (so that what goes in is what is summed)."""
    return (g711.ULAW_DECODE if codec == PCMU else g711.ALAW_DECODE)[code]


class Phone:
    """A participant's far end: records every payload the mixer sends and feeds numbered packets."""

    def __init__(self, room: mixer.Room, name: str, codec: str) -> None:
        self.codec = codec
        self.received: list[bytes] = []
        self.participant = room.join(name, codec, self.received.append)
        self.seq = 1000

    def talk(self, payload: bytes) -> None:
        self.participant.receive_rtp(payload, self.seq, self.seq * 160)
        self.seq += 1

    def heard(self) -> list[int]:
        """The decoded sample values of the last payload received."""
        return list(g711.decode(self.codec, self.received[-1]))


class MixerTestCase(SynchronousTestCase):
    use_numpy = False  # the pure-Python mix; the *NumpyTests subclasses run the same tests on numpy

    def setUp(self) -> None:
        self.clock = Clock()
        self.mixer = Mixer(self.clock, use_numpy=self.use_numpy)

    def tick(self, count: int = 1) -> None:
        for _ in range(count):
            self.clock.advance(TICK)


class MixingTests(MixerTestCase):
    def three(self, codecs: tuple[str, str, str] = (PCMU, PCMU, PCMA)) -> list[Phone]:
        room = self.mixer.room("800", tones=False)
        return [Phone(room, name, codec) for name, codec in zip("abc", codecs)]

    def test_each_hears_the_sum_of_the_others(self) -> None:
        """Three participants with constant samples: each gets exactly the other two's sum, never itself."""
        phones = self.three()
        values = [level(PCMU, 0xE0), level(PCMU, 0x5A), level(PCMA, 0xC0)]  # 372, -556, 344: exact levels
        for _ in range(3):  # prefill (2 frames) + one more
            for phone, value in zip(phones, values):
                phone.talk(frame(phone.codec, value))
        self.tick()
        total = sum(values)
        for phone, value in zip(phones, values):
            self.assertEqual(len(phone.received), 1)
            self.assertEqual(phone.received[-1], frame(phone.codec, total - value))
        self.tick()
        for phone, value in zip(phones, values):
            self.assertEqual(phone.received[-1], frame(phone.codec, total - value))

    def test_opposite_signals_cancel_exactly(self) -> None:
        """b and -b cancel to exact digital silence for the third; the others get a + b and a - b."""
        phones = self.three((PCMU, PCMU, PCMU))
        a, b = level(PCMU, 0xC7), level(PCMU, 0xB3)
        values = [a, b, -b]
        for _ in range(2):
            for phone, value in zip(phones, values):
                phone.talk(frame(PCMU, value))
        self.tick()
        self.assertEqual(phones[0].received[-1], b"\xff" * FRAME_SAMPLES)
        self.assertEqual(phones[1].received[-1], frame(PCMU, a - b))
        self.assertEqual(phones[2].received[-1], frame(PCMU, a + b))

    def test_two_talkers_and_silent_listeners(self) -> None:
        """Five in a room, two talking: listeners of either codec hear both, each talker hears the other."""
        room = self.mixer.room("800", tones=False)
        codecs = [PCMU, PCMA, PCMU, PCMA, PCMU]
        phones = [Phone(room, str(i), codec) for i, codec in enumerate(codecs)]
        a, b = level(PCMU, 0xD0), level(PCMA, 0x9A)
        for _ in range(2):
            phones[0].talk(frame(PCMU, a))
            phones[1].talk(frame(PCMA, b))
        self.tick()
        self.assertEqual(phones[0].received[-1], frame(PCMU, b))
        self.assertEqual(phones[1].received[-1], frame(PCMA, a))
        for phone in phones[2:]:
            self.assertEqual(phone.received[-1], frame(phone.codec, a + b))

    def test_clipping_saturates(self) -> None:
        """Two loud talkers: the third hears +32767 / -32768 encoded, not a wrapped-around value."""
        for sign, code in ((1, 0x80), (-1, 0x00)):
            room = self.mixer.room(f"80{sign + 1}", tones=False)
            phones = [Phone(room, name, PCMU) for name in "abc"]
            for _ in range(2):
                phones[0].talk(frame(PCMU, sign * 30000))
                phones[1].talk(frame(PCMU, sign * 30000))
            self.tick()
            self.assertEqual(phones[2].received[-1], bytes([code]) * FRAME_SAMPLES)
            self.assertEqual(phones[0].received[-1], frame(PCMU, sign * level(PCMU, g711.linear_to_ulaw(30000))))

    def test_clipping_with_five_at_full_scale(self) -> None:
        room = self.mixer.room("800", tones=False)
        phones = [Phone(room, str(i), PCMA) for i in range(5)]
        for _ in range(2):
            for phone in phones:
                phone.talk(frame(PCMA, -32768))
        self.tick()
        for phone in phones:
            self.assertEqual(phone.received[-1], bytes([0x2A]) * FRAME_SAMPLES)

    def test_one_talker_is_forwarded_and_transcoded(self) -> None:
        """One talker: the others get its frame (PCMA -> PCMU transcoded), the talker hears silence."""
        phones = self.three((PCMA, PCMU, PCMA))
        payload = bytes(range(96, 256))
        for _ in range(2):
            phones[0].talk(payload)
        self.tick()
        self.assertEqual(phones[0].received[-1], b"\xd5" * FRAME_SAMPLES)
        self.assertEqual(phones[1].received[-1], g711.encode(PCMU, g711.decode(PCMA, payload)))
        self.assertEqual(phones[2].received[-1], payload)

    def test_nobody_talking_is_silence_for_everyone(self) -> None:
        phones = self.three()
        self.tick()
        self.assertEqual([p.received for p in phones], [[b"\xff" * 160], [b"\xff" * 160], [b"\xd5" * 160]])

    def test_alone_hears_silence(self) -> None:
        room = self.mixer.room("800")
        phone = Phone(room, "a", PCMU)
        for _ in range(4):
            phone.talk(frame(PCMU, 5000))
            self.tick()
        self.assertEqual(phone.received, [b"\xff" * FRAME_SAMPLES] * 4)

    def test_alone_tone_option(self) -> None:
        """With alone_tone, a lone participant hears the soft beep pattern, from its start, repeating."""
        room = self.mixer.room("800", alone_tone=True)
        phone = Phone(room, "a", PCMA)
        frames = len(mixer.ALONE_TONE) // FRAME_SAMPLES
        self.tick(frames + 1)
        expected = [g711.encode(PCMA, mixer.ALONE_TONE[i * 160:(i + 1) * 160]) for i in range(frames)]
        self.assertEqual(phone.received, expected + expected[:1])
        self.assertTrue(max(map(abs, mixer.ALONE_TONE)) <= 1000)
        self.assertNotEqual(expected[0], b"\xd5" * 160)
        self.assertEqual(expected[-1], b"\xd5" * 160)

    def test_send_failure_is_logged_and_the_others_still_served(self) -> None:
        room = self.mixer.room("800", tones=False)
        good = Phone(room, "good", PCMU)

        def broken(payload: bytes) -> None:
            raise OSError("socket closed")

        room.join("broken", PCMU, broken)
        self.tick(2)
        self.assertEqual(len(good.received), 2)
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 2)
        self.assertEqual(self.mixer.stats().ticks, 2)


class ToneTests(MixerTestCase):
    def expected(self, codec: str, tone: list[int], index: int, plus: int = 0) -> bytes:
        return g711.encode(codec, [max(-32768, min(32767, s + plus)) for s in tone[index * 160:(index + 1) * 160]])

    def test_join_tone_heard_by_everyone_then_silence(self) -> None:
        room = self.mixer.room("800")
        first = Phone(room, "a", PCMU)
        self.tick()
        self.assertEqual(first.received, [b"\xff" * 160])  # the first to arrive hears no join tone
        first.received.clear()
        second = Phone(room, "b", PCMA)
        frames = len(mixer.JOIN_TONE) // FRAME_SAMPLES
        self.tick(frames + 1)
        self.assertEqual(first.received, [self.expected(PCMU, mixer.JOIN_TONE, i) for i in range(frames)] + [b"\xff" * 160])
        self.assertEqual(second.received, [self.expected(PCMA, mixer.JOIN_TONE, i) for i in range(frames)] + [b"\xd5" * 160])
        self.assertNotEqual(first.received[1], b"\xff" * 160)

    def test_join_tone_is_mixed_over_speech(self) -> None:
        room = self.mixer.room("800")
        talker = Phone(room, "a", PCMU)
        value = level(PCMU, 0xC0)
        talker.talk(frame(PCMU, value))
        talker.talk(frame(PCMU, value))
        listener = Phone(room, "b", PCMU)
        self.tick()
        self.assertEqual(listener.received[-1], self.expected(PCMU, mixer.JOIN_TONE, 0, plus=value))
        self.assertEqual(talker.received[-1], self.expected(PCMU, mixer.JOIN_TONE, 0))

    def test_leave_tone_heard_by_those_remaining(self) -> None:
        room = self.mixer.room("800", tones=False)
        phones = [Phone(room, name, PCMU) for name in "abc"]
        room.tones = True
        self.assertTrue(room.leave("c"))
        frames = len(mixer.LEAVE_TONE) // FRAME_SAMPLES
        self.tick(frames + 1)
        expected = [self.expected(PCMU, mixer.LEAVE_TONE, i) for i in range(frames)] + [b"\xff" * 160]
        self.assertEqual(phones[0].received, expected)
        self.assertEqual(phones[1].received, expected)
        self.assertEqual(phones[2].received, [])

    def test_tone_queue_is_bounded(self) -> None:
        """Ten people joining at once queue at most two tones, not ten."""
        room = self.mixer.room("800", max_participants=10)
        for i in range(10):
            Phone(room, str(i), PCMU)
        self.assertEqual(len(room._tones), 2 * (len(mixer.JOIN_TONE) // FRAME_SAMPLES))

    def test_tone_frames(self) -> None:
        """A tone as 20 ms payloads, the last padded with silence."""
        samples = mixer.tone([(1000.0, 30.0)], 4000)
        self.assertEqual(len(samples), 320)
        frames = mixer.tone_frames("pcma", samples[:250])
        self.assertEqual([len(f) for f in frames], [160, 160])
        self.assertEqual(frames[0], g711.encode(PCMA, samples[:160]))
        self.assertEqual(frames[1][90:], b"\xd5" * 70)
        self.assertRaises(ValueError, mixer.tone_frames, "G729", samples)

    def test_tones_rise_and_fall(self) -> None:
        """Join: a lower then a higher note; leave: the reverse; both short and not full scale."""
        def crossings(samples: list[int]) -> int:
            return sum(1 for x, y in zip(samples, samples[1:]) if x < 0 <= y)
        half = len(mixer.JOIN_TONE) // 2
        self.assertLess(crossings(mixer.JOIN_TONE[:half]), crossings(mixer.JOIN_TONE[half:]))
        self.assertGreater(crossings(mixer.LEAVE_TONE[:half]), crossings(mixer.LEAVE_TONE[half:]))
        self.assertEqual(len(mixer.JOIN_TONE), 1600)  # 200 ms
        self.assertLessEqual(max(map(abs, mixer.JOIN_TONE)), 6000)
        self.assertEqual(mixer.JOIN_TONE[0], 0)  # faded in: no click


class RoomTests(MixerTestCase):
    def test_room_listing_and_removal_when_empty(self) -> None:
        room = self.mixer.room("800")
        self.assertEqual(self.mixer.rooms(), ())  # opens with its first participant
        a = room.join("a", "pcmu", lambda payload: None)
        room.join("b", PCMA, lambda payload: None)
        self.assertEqual(self.mixer.rooms(), (room,))
        self.assertIs(self.mixer.room("800"), room)
        self.assertEqual(room.participants(), ("a", "b"))
        self.assertEqual((a.codec, a.room), (PCMU, room))
        a.leave()
        self.assertIsNone(a.room)
        self.assertEqual(room.participants(), ("b",))
        self.assertFalse(room.leave("a"))
        self.assertTrue(room.leave("b"))
        self.assertEqual(self.mixer.rooms(), ())
        self.assertEqual(self.clock.getDelayedCalls(), [])  # the timer stops with the last room
        self.assertIsNot(self.mixer.room("800"), room)

    def test_one_timer_for_all_rooms(self) -> None:
        received: list[str] = []
        for number in ("800", "801", "802"):
            room = self.mixer.room(number)
            for name in "ab":
                room.join(name, PCMU, lambda payload, n=number: received.append(n))
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.tick()
        self.assertEqual(sorted(received), ["800"] * 2 + ["801"] * 2 + ["802"] * 2)
        self.assertEqual([r.number for r in self.mixer.rooms()], ["800", "801", "802"])

    def test_full_room_refuses(self) -> None:
        room = self.mixer.room("800", max_participants=2)
        room.join("a", PCMU, lambda payload: None)
        room.join("b", PCMU, lambda payload: None)
        self.assertTrue(room.full)
        error = self.assertRaises(RoomFull, room.join, "c", PCMU, lambda payload: None)
        self.assertIn("full", str(error))
        self.assertEqual(room.participants(), ("a", "b"))

    def test_bad_joins_leave_no_state(self) -> None:
        room = self.mixer.room("800")
        room.join("a", PCMU, lambda payload: None)
        self.assertRaises(ValueError, room.join, "a", PCMU, lambda payload: None)
        error = self.assertRaises(ValueError, room.join, "g", "G729", lambda payload: None)
        self.assertIn("G729", str(error))
        self.assertRaises(ValueError, self.mixer.room("900").join, "x", "opus", lambda payload: None)
        self.assertEqual(room.participants(), ("a",))
        self.assertEqual([r.number for r in self.mixer.rooms()], ["800"])

    def test_stale_room_object_joins_the_open_room(self) -> None:
        early = self.mixer.room("800")
        late = self.mixer.room("800")
        early.join("a", PCMU, lambda payload: None)
        participant = late.join("b", PCMU, lambda payload: None)
        self.assertIs(participant.room, early)
        self.assertEqual(early.participants(), ("a", "b"))
        self.assertTrue(late.leave("b"))

    def test_packets_after_leaving_are_ignored(self) -> None:
        room = self.mixer.room("800")
        phone = Phone(room, "a", PCMU)
        Phone(room, "b", PCMU)
        phone.participant.leave()
        phone.talk(frame(PCMU, 1000))
        self.assertEqual(len(phone.participant.jitter), 0)

    def test_leave_from_inside_a_send(self) -> None:
        """A participant whose send callback hangs up mid-tick: no error, no later sends to it."""
        room = self.mixer.room("800", tones=False)
        calls: list[bytes] = []

        def hang_up(payload: bytes) -> None:
            calls.append(payload)
            room.leave("a")
            room.leave("b")

        room.join("a", PCMU, hang_up)
        room.join("b", PCMU, calls.append)
        self.tick(3)
        self.assertEqual(len(calls), 1)
        self.assertEqual(self.mixer.rooms(), ())


class ClockTests(MixerTestCase):
    def test_lateness_recorded(self) -> None:
        room = self.mixer.room("800")
        phone = Phone(room, "a", PCMU)
        self.tick()
        self.clock.advance(TICK + 0.003)  # the reactor was busy: this tick runs 3 ms late
        self.tick()
        lateness = list(self.mixer.lateness)
        self.assertEqual(len(lateness), 3)
        self.assertAlmostEqual(lateness[0], 0.0, places=6)
        self.assertAlmostEqual(lateness[1], 0.003, places=6)
        self.assertEqual(len(phone.received), 3)
        stats = self.mixer.stats()
        self.assertEqual((stats.ticks, stats.missed, stats.rooms, stats.participants), (3, 0, 1, 1))
        self.assertAlmostEqual(stats.lateness_max, 0.003, places=6)

    def test_missed_slots_are_caught_up_and_counted(self) -> None:
        room = self.mixer.room("800")
        phone = Phone(room, "a", PCMU)
        self.clock.advance(3 * TICK + 0.001)  # a 61 ms stall: three slots have passed
        self.assertEqual(len(phone.received), 3)
        self.assertEqual(self.mixer.missed, 2)
        lateness = sorted(self.mixer.lateness)
        self.assertEqual(len(lateness), 3)
        for got, want in zip(lateness, (0.001, 0.021, 0.041)):
            self.assertAlmostEqual(got, want, places=6)

    def test_catch_up_is_bounded(self) -> None:
        room = self.mixer.room("800")
        phone = Phone(room, "a", PCMU)
        self.clock.advance(1.0)  # fifty slots: only max_catch_up (5) are mixed
        self.assertEqual(len(phone.received), 5)
        self.assertEqual(self.mixer.missed, 49)

    def test_stop(self) -> None:
        room = self.mixer.room("800")
        phone = Phone(room, "a", PCMU)
        self.mixer.stop()
        self.tick(3)
        self.assertEqual(phone.received, [])
        self.mixer.stop()

    def test_percentile(self) -> None:
        self.assertEqual(percentile([], 0.99), 0.0)
        values = [float(i) for i in range(1, 101)]
        self.assertEqual((percentile(values, 0.5), percentile(values, 0.99), percentile(values, 1.0)),
                         (50.0, 99.0, 100.0))


class JitterBufferTests(SynchronousTestCase):
    def play(self, buffer: JitterBuffer, ticks: int) -> list[int | None]:
        out = []
        for _ in range(ticks):
            payload = buffer.pop()
            out.append(None if payload is None else payload[0])
        return out

    def test_prefill_then_in_order(self) -> None:
        buffer = JitterBuffer(depth=4, prefill=2)
        buffer.put(b"\x01" * 160, 10)
        self.assertEqual(self.play(buffer, 1), [None])  # one frame is not enough to start
        buffer.put(b"\x02" * 160, 11)
        self.assertEqual(self.play(buffer, 2), [1, 2])

    def test_reorders_by_sequence(self) -> None:
        buffer = JitterBuffer(depth=4, prefill=2)
        for seq in (12, 10, 11, 13):
            buffer.put(bytes([seq]) * 160, seq)
        self.assertEqual(self.play(buffer, 4), [10, 11, 12, 13])
        self.assertEqual(buffer.stats().played, 4)

    def test_sequence_wraps(self) -> None:
        buffer = JitterBuffer(depth=4, prefill=2)
        for seq in (65534, 65535, 0, 1):
            buffer.put(bytes([seq & 0xFF]) * 160, seq)
        self.assertEqual(self.play(buffer, 4), [0xFE, 0xFF, 0, 1])

    def test_loss_is_concealed_with_silence(self) -> None:
        buffer = JitterBuffer(depth=4, prefill=2)
        for seq in (1, 2, 4):
            buffer.put(bytes([seq]) * 160, seq)
        self.assertEqual(self.play(buffer, 4), [1, 2, None, 4])
        self.assertEqual(buffer.stats().concealed, 1)

    def test_late_packet_is_dropped(self) -> None:
        buffer = JitterBuffer(depth=4, prefill=2)
        for seq in (1, 2, 4):
            buffer.put(bytes([seq]) * 160, seq)
        self.play(buffer, 3)
        buffer.put(b"\x03" * 160, 3)  # its slot has been played (as silence)
        buffer.put(b"\x02" * 160, 2)
        self.assertEqual(buffer.stats().late, 2)
        self.assertEqual(len(buffer), 1)
        self.assertEqual(self.play(buffer, 1), [4])

    def test_duplicates_dropped(self) -> None:
        buffer = JitterBuffer(depth=4, prefill=2)
        buffer.put(b"\x01" * 160, 1)
        buffer.put(b"\x09" * 160, 1)
        buffer.put(b"\x02" * 160, 2)
        self.assertEqual(self.play(buffer, 2), [1, 2])
        self.assertEqual(buffer.stats().duplicates, 1)

    def test_depth_is_bounded(self) -> None:
        """A burst beyond the depth moves the window: the oldest frames are dropped, never more than depth held."""
        buffer = JitterBuffer(depth=4, prefill=2)
        buffer.put(b"\x01" * 160, 1)
        buffer.put(b"\x02" * 160, 2)
        self.play(buffer, 1)
        for seq in range(3, 10):
            buffer.put(bytes([seq]) * 160, seq)
            self.assertLessEqual(len(buffer), 4)
        self.assertEqual(self.play(buffer, 4), [6, 7, 8, 9])
        self.assertEqual(buffer.stats().overflow, 4)  # 2, 3, 4, 5

    def test_underrun_stalls_and_refills(self) -> None:
        """A talker who pauses: silence, then playout resumes after a fresh prefill, nothing skipped."""
        buffer = JitterBuffer(depth=4, prefill=2)
        buffer.put(b"\x01" * 160, 1)
        buffer.put(b"\x02" * 160, 2)
        self.assertEqual(self.play(buffer, 4), [1, 2, None, None])
        buffer.put(b"\x03" * 160, 3)
        self.assertEqual(self.play(buffer, 1), [None])
        buffer.put(b"\x04" * 160, 4)
        self.assertEqual(self.play(buffer, 3), [3, 4, None])
        self.assertEqual(buffer.stats().underruns, 2)
        self.assertEqual(buffer.stats().concealed, 0)

    def test_resumes_after_a_sequence_jump(self) -> None:
        """A sender that restarts its sequence numbers while we are buffering is followed at once."""
        buffer = JitterBuffer(depth=4, prefill=2)
        buffer.put(b"\x01" * 160, 1)
        buffer.put(b"\x02" * 160, 2)
        self.play(buffer, 3)
        buffer.put(b"\x07" * 160, 30000)
        buffer.put(b"\x08" * 160, 30001)
        self.assertEqual(self.play(buffer, 2), [7, 8])

    def test_early_packet_arriving_second_while_buffering(self) -> None:
        buffer = JitterBuffer(depth=4, prefill=3)
        buffer.put(b"\x02" * 160, 2)
        buffer.put(b"\x01" * 160, 1)
        buffer.put(b"\x03" * 160, 3)
        self.assertEqual(self.play(buffer, 3), [1, 2, 3])

    def test_odd_sizes_padded_or_cut_and_empty_ignored(self) -> None:
        buffer = JitterBuffer(depth=4, prefill=1, fill=0xFF)
        buffer.put(b"", 1)
        buffer.put(b"\x05" * 80, 1)
        buffer.put(b"\x06" * 240, 2)
        first, second = buffer.pop(), buffer.pop()
        self.assertEqual(first, b"\x05" * 80 + b"\xff" * 80)
        self.assertEqual(second, b"\x06" * 160)
        self.assertEqual((buffer.stats().received, buffer.stats().resized), (2, 2))

    def test_views_of_a_datagram_are_copied(self) -> None:
        buffer = JitterBuffer(depth=4, prefill=1)
        datagram = bytearray(b"\x80" * 12 + b"\x07" * 160)
        buffer.put(memoryview(datagram)[12:], 1)
        datagram[20] = 0
        self.assertEqual(buffer.pop(), b"\x07" * 160)

    def test_bad_settings(self) -> None:
        self.assertRaises(ValueError, JitterBuffer, depth=2, prefill=3)
        self.assertRaises(ValueError, Mixer, Clock(), jitter_prefill=0)

    def test_numpy_choice(self) -> None:
        """numpy is used when importable unless refused; asking for it without it is an error."""
        self.assertEqual(Mixer(Clock()).use_numpy, NUMPY_AVAILABLE)
        self.assertFalse(Mixer(Clock(), use_numpy=False).use_numpy)
        if NUMPY_AVAILABLE:
            self.assertTrue(Mixer(Clock(), use_numpy=True).use_numpy)
        else:
            self.assertRaises(ValueError, Mixer, Clock(), use_numpy=True)


class JitterThroughTheMixerTests(MixerTestCase):
    def test_reordered_and_lost_packets_heard_in_order(self) -> None:
        room = self.mixer.room("800", tones=False)
        talker = Phone(room, "a", PCMU)
        listener = Phone(room, "b", PCMU)
        payloads = {seq: bytes([0x80 + seq]) * 160 for seq in range(6)}
        for seq in (1, 0):
            talker.participant.receive_rtp(payloads[seq], seq, seq * 160)
        self.tick()
        for seq in (3, 4):  # 2 is lost
            talker.participant.receive_rtp(payloads[seq], seq, seq * 160)
        self.tick(4)
        silence = b"\xff" * 160
        self.assertEqual(listener.received, [payloads[0], payloads[1], silence, payloads[3], payloads[4]])
        self.assertEqual(talker.participant.jitter.stats().concealed, 1)


class MixingNumpyTests(MixingTests):
    use_numpy = True
    skip = NO_NUMPY


class ToneNumpyTests(ToneTests):
    use_numpy = True
    skip = NO_NUMPY


class JitterThroughTheMixerNumpyTests(JitterThroughTheMixerTests):
    use_numpy = True
    skip = NO_NUMPY
