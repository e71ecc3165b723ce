"""G.722 participants in the 8 kHz mix with PCMU and PCMA ones: exact frames, tones heard, never one's own voice."""

from __future__ import annotations

import math

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from minisip.media import g711, g722, mixer
from minisip.media.g711 import PCMA, PCMU
from minisip.media.mixer import FRAME_SAMPLES, NUMPY_AVAILABLE, Mixer
from tests.media.test_g722 import goertzel

NO_NUMPY = None if NUMPY_AVAILABLE else "numpy is not installed (python3-numpy): the same tests ran on the pure path"
G722 = "G722"
TICK = 0.02


def sine(frequency: float, amplitude: int, count: int, rate: int, start: int) -> list[int]:
    return [round(amplitude * math.sin(2 * math.pi * frequency * (start + n) / rate)) for n in range(count)]


class Phone:
    """A far end sending a tone in its codec (G.722: a real 16 kHz encoder) and decoding what it hears."""

    def __init__(self, room: mixer.Room, name: str, codec: str, frequency: float = 0.0) -> None:
        self.codec = codec
        self.frequency = frequency
        self.received: list[bytes] = []
        self.participant = room.join(name, codec, self.received.append)
        self.seq = 100
        self.encoder = g722.G722Encoder()
        self.decoder = g722.G722Decoder()
        self.heard: list[int] = []

    @property
    def rate(self) -> int:
        return 16000 if self.codec == G722 else 8000

    def talk(self) -> None:
        """The next 20 ms of this phone's tone (silence for frequency 0)."""
        count = self.rate // 50
        samples = sine(self.frequency, 8000, count, self.rate, self.seq * count)
        payload = self.encoder.encode(samples) if self.codec == G722 else g711.encode(self.codec, samples)
        self.participant.receive_rtp(payload, self.seq, self.seq * 160)
        self.seq += 1

    def listen(self) -> None:
        """Decode everything received so far, as the phone would."""
        for payload in self.received:
            self.assertion(len(payload) == 160)
            self.heard.extend(self.decoder.decode(payload) if self.codec == G722 else g711.decode(self.codec, payload))
        self.received.clear()

    def assertion(self, condition: bool) -> None:
        if not condition:
            raise AssertionError("a payload is not 20 ms")

    def level(self, frequency: float) -> float:
        """The amplitude of ``frequency`` in the last 200 ms heard."""
        tail = self.heard[-self.rate // 5:]
        return goertzel(tail, frequency, self.rate)


class G722MixTests(SynchronousTestCase):
    use_numpy = False

    def setUp(self) -> None:
        self.clock = Clock()
        self.mixer = Mixer(self.clock, use_numpy=self.use_numpy)

    def run_ticks(self, phones: list[Phone], count: int) -> None:
        for _ in range(count):
            for phone in phones:
                if phone.frequency:
                    phone.talk()
            self.clock.advance(TICK)
        for phone in phones:
            phone.listen()

    def test_each_hears_the_others_tones_not_its_own(self) -> None:
        """G.722 (1 kHz), PCMU (500 Hz), PCMA (1.5 kHz): each hears the other two tones, not its own."""
        room = self.mixer.room("800", tones=False)
        phones = [Phone(room, "w", G722, 1000.0), Phone(room, "u", PCMU, 500.0), Phone(room, "a", PCMA, 1500.0)]
        self.run_ticks(phones, 20)
        for phone in phones:
            for other in phones:
                heard = phone.level(other.frequency)
                if other is phone:
                    self.assertLess(heard, 150, f"{phone.codec} hears itself")
                else:
                    self.assertGreater(heard, 6000, f"{phone.codec} does not hear {other.codec}")
                    self.assertLess(heard, 10000)

    def test_one_talker_each_way(self) -> None:
        """With one talker the G.711 forwarding is skipped: the frame goes through the mix, both ways."""
        room = self.mixer.room("800", tones=False)
        wide, narrow = Phone(room, "w", G722, 1000.0), Phone(room, "u", PCMU)
        self.run_ticks([wide, narrow], 15)
        self.assertGreater(narrow.level(1000.0), 6000)
        self.assertLess(max(map(abs, wide.heard[-3200:])), 8)   # the talker hears silence
        room2 = self.mixer.room("801", tones=False)
        wide, narrow = Phone(room2, "w", G722), Phone(room2, "u", PCMU, 700.0)
        self.run_ticks([wide, narrow], 15)
        self.assertGreater(wide.level(700.0), 6000)
        self.assertLess(wide.level(7300.0), 100)                # no image above 4 kHz: narrowband, interpolated
        self.assertEqual(narrow.received, [])
        self.assertEqual(set(narrow.heard[-1600:]), {0})

    def test_exact_frames_through_the_narrowband_codec(self) -> None:
        """What a G.722 listener gets is its own encoder's stream of the exact mix; a G.711 listener gets
        the G.722 talker's low band (doubled) encoded in G.711."""
        room = self.mixer.room("800", tones=False)
        wide_frames: list[bytes] = []
        narrow_frames: list[bytes] = []
        wide = room.join("w", G722, wide_frames.append)
        narrow = room.join("u", PCMU, narrow_frames.append)
        value = g711.ULAW_DECODE[0xE0]
        talker = g722.G722Encoder()
        payloads = [talker.encode(sine(1000.0, 5000, 320, 16000, 320 * i)) for i in range(4)]
        for seq in range(4):
            narrow.receive_rtp(g711.encode(PCMU, [value] * FRAME_SAMPLES), seq, 0)
            wide.receive_rtp(payloads[seq], seq, 0)
        self.clock.advance(TICK * 4)
        reference = g722.NarrowbandEncoder()
        self.assertEqual(wide_frames, [reference.encode([value] * FRAME_SAMPLES) for _ in range(4)])
        low_band = g722.NarrowbandDecoder()
        self.assertEqual(narrow_frames, [g711.encode(PCMU, low_band.decode(p)) for p in payloads])

    def test_sum_saturates(self) -> None:
        """Two full-scale PCMA talkers: the G.722 listener's mix is clipped to 16 bits, not wrapped."""
        room = self.mixer.room("800", tones=False)
        frames: list[bytes] = []
        room.join("w", G722, frames.append)
        loud = [room.join(name, PCMA, lambda payload: None) for name in "ab"]
        for seq in range(3):
            for participant in loud:
                participant.receive_rtp(b"\xaa" * FRAME_SAMPLES, seq, 0)   # +32256 each
        self.clock.advance(TICK * 3)
        reference = g722.NarrowbandEncoder()
        self.assertEqual(frames, [reference.encode([32767] * FRAME_SAMPLES) for _ in range(3)])

    def test_join_tone_and_alone_tone_reach_a_g722_participant(self) -> None:
        room = self.mixer.room("800", alone_tone=True)
        wide = Phone(room, "w", G722)
        self.run_ticks([wide], 10)
        self.assertGreater(wide.level(425.0), 500)            # alone: the soft 425 Hz beep (amplitude 1000)
        start = len(wide.heard)
        Phone(room, "u", PCMU)
        self.run_ticks([wide], 10)
        join = wide.heard[start:]
        self.assertEqual(len(join), 3200)
        self.assertGreater(goertzel(join[320:1600], 600.0, 16000), 4000)   # 600 Hz then 900 Hz (amplitude 6000)
        self.assertLess(goertzel(join[320:1600], 900.0, 16000), 500)
        self.assertGreater(goertzel(join[1600:2880], 900.0, 16000), 4000)

    def test_tone_frames_and_codec_names(self) -> None:
        frames = mixer.tone_frames("g722", mixer.JOIN_TONE)
        self.assertEqual([len(f) for f in frames], [160] * 10)
        decoder = g722.G722Decoder()
        samples = [s for f in frames for s in decoder.decode(f)]
        self.assertGreater(goertzel(samples[320:1600], 600.0, 16000), 4000)
        self.assertEqual(mixer.normalize_codec("g722"), G722)
        self.assertIn(G722, mixer.CODECS)
        error = self.assertRaises(ValueError, mixer.normalize_codec, "opus")
        self.assertIn("G722", str(error))

    def test_join_continues_a_stream_begun_outside(self) -> None:
        """A caller's codec state used for a prompt (and fed its audio meanwhile) goes on in the room:
        both ends of a G.722 stream keep one ADPCM state."""
        state = mixer.codec_state("g722")
        encoder, decoder = g722.NarrowbandEncoder(), g722.NarrowbandDecoder()
        prompt = mixer.JOIN_TONE[:FRAME_SAMPLES]
        self.assertEqual(state.encode(prompt), encoder.encode(prompt))
        talker = g722.G722Encoder()
        early = talker.encode(sine(800.0, 8000, 320, 16000, 0))
        state.discard(early)
        decoder.decode(early)
        room = self.mixer.room("800", tones=False)
        frames: list[bytes] = []
        heard: list[bytes] = []
        wide = room.join("w", G722, frames.append, state)
        room.join("u", PCMU, heard.append)
        payloads = [talker.encode(sine(800.0, 8000, 320, 16000, 320 * n)) for n in range(1, 4)]
        for seq, payload in enumerate(payloads):
            wide.receive_rtp(payload, seq, 0)
        self.clock.advance(TICK * 3)
        silence = [0] * FRAME_SAMPLES
        self.assertEqual(frames, [encoder.encode(silence) for _ in range(3)])
        self.assertNotEqual(frames[0], g722.NarrowbandEncoder().encode(silence))   # a fresh state differs
        self.assertEqual(heard, [g711.encode(PCMU, decoder.decode(p)) for p in payloads])
        self.assertEqual(mixer.codec_state("pcma").encode(prompt), g711.encode(PCMA, prompt))

    def test_leaving_restores_forwarding(self) -> None:
        """Once the G.722 participant leaves, a lone G.711 talker is forwarded byte for byte again."""
        room = self.mixer.room("800", tones=False)
        wide = room.join("w", G722, lambda payload: None)
        heard: list[bytes] = []
        talker = room.join("a", PCMA, lambda payload: None)
        room.join("u", PCMA, heard.append)
        wide.leave()
        payload = bytes(range(160))
        for seq in range(3):
            talker.receive_rtp(payload, seq, 0)
        self.clock.advance(TICK * 3)
        self.assertEqual(heard, [payload] * 3)


class G722MixNumpyTests(G722MixTests):
    use_numpy = True
    skip = NO_NUMPY
