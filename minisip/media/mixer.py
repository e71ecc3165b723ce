"""The conference mixer: rooms of PCMU, PCMA and G.722 participants, each hearing the sum of the others.

One ``LoopingCall`` on the injected clock drives every room (20 ms ticks). Each tick a room takes one
frame from every participant's jitter buffer and sends each participant the others' sum (never its
own voice), saturated to 16 bits and encoded in that participant's codec.

The mix is narrowband (8 kHz). A G.722 participant has its own codec state: its G.722 low band (the
audio below 4 kHz, sampled at 8 kHz) goes into the mix and its mix goes out as the low band with a
silent high band (``g722.NarrowbandDecoder`` / ``NarrowbandEncoder``): wideband audio is not kept in
a room, and G.722 costs a pure-Python ADPCM band each way per participant and tick.

The sum is done on whole frames at C speed: a decoded frame is one Python int holding 160 32-bit lanes
(sample + 32768 each, so lanes never go negative or carry into each other); a room adds its frames
once, subtracts a participant's own frame, and one saturating table lookup per sample clips and
encodes. Rooms with one talker and no G.722 participant forward that talker's frame through a translate
table (the same bytes the full mix would give). When numpy is importable the sum and the table lookups
run on numpy arrays instead (same tables, same bytes out); ``Mixer(clock, use_numpy=False)`` forces the
pure path.
"""

from __future__ import annotations

import math
import sys
from array import array
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from minisip.media import g711, g722

try:  # optional: Debian's python3-numpy roughly halves the mix's CPU (bench/mixer_bench.py)
    import numpy
except ImportError:  # pragma: no cover - depends on the installation
    numpy = None

__all__ = [
    "ALONE_TONE",
    "CODECS",
    "FRAME_SAMPLES",
    "JOIN_TONE",
    "LEAVE_TONE",
    "NUMPY_AVAILABLE",
    "TICK_SECONDS",
    "codec_state",
    "JitterBuffer",
    "JitterStats",
    "Mixer",
    "MixerStats",
    "Participant",
    "Room",
    "RoomFull",
    "normalize_codec",
    "percentile",
    "tone",
    "tone_frames",
]

log = Logger(namespace="minisip.media.mixer")

SAMPLE_RATE = 8000
TICK_SECONDS = 0.020
FRAME_SAMPLES = 160  # 20 ms at 8 kHz, one G.711 byte per sample
_LANE = 4
_FRAME_BYTES = FRAME_SAMPLES * _LANE
_BYTEORDER = sys.byteorder
_HALF = 32768

G722 = "G722"
CODECS = (*g711.CODECS, G722)  # the codecs a participant may use

SendFunction = Callable[[bytes], None]


class RoomFull(Exception):
    """The room already holds its maximum number of participants (the caller answers 486)."""


def tone(parts: Sequence[tuple[float, float]], amplitude: int, ramp_ms: float = 5.0) -> list[int]:
    """Samples of consecutive sine segments ``(frequency Hz or 0 for a pause, milliseconds)``.

    Each segment fades in and out over ``ramp_ms`` (no clicks); the result is padded with silence to
    whole 20 ms frames.
    """
    samples: list[int] = []
    ramp = max(1, int(SAMPLE_RATE * ramp_ms / 1000))
    for frequency, milliseconds in parts:
        count = int(SAMPLE_RATE * milliseconds / 1000)
        for n in range(count):
            if frequency <= 0:
                samples.append(0)
                continue
            gain = min(1.0, (n + 1) / ramp, (count - n) / ramp)
            samples.append(round(amplitude * gain * math.sin(2 * math.pi * frequency * n / SAMPLE_RATE)))
    samples.extend([0] * (-len(samples) % FRAME_SAMPLES))
    return samples


def normalize_codec(name: str) -> str:
    """'pcmu' / 'g722' -> PCMU / G722; ValueError naming the codec for anything not mixed."""
    if name.upper() == G722:
        return G722
    try:
        return g711.normalize_codec(name)
    except ValueError:
        raise ValueError(f"unsupported codec {name!r}: only PCMU, PCMA and G722 are mixed") from None


def tone_frames(codec: str, samples: Sequence[int]) -> tuple[bytes, ...]:
    """``samples`` (8 kHz, e.g. from ``tone``) as 20 ms payloads of ``codec``, to play outside a room (a
    prompt, silence); G.722 frames are encoded from its initial state, as the start of a stream."""
    name = normalize_codec(codec)
    padded = list(samples) + [0] * (-len(samples) % FRAME_SAMPLES)
    frames = [padded[i:i + FRAME_SAMPLES] for i in range(0, len(padded), FRAME_SAMPLES)]
    if name == G722:
        encoder = g722.NarrowbandEncoder()
        return tuple(encoder.encode(frame) for frame in frames)
    return tuple(g711.encode(name, frame) for frame in frames)


# Rising two-note beep when someone joins, falling when someone leaves (-15 dBFS, 200 ms).
JOIN_TONE = tone([(600.0, 100.0), (900.0, 100.0)], 6000)
LEAVE_TONE = tone([(900.0, 100.0), (600.0, 100.0)], 6000)
# The soft tone a participant alone may hear: 425 Hz at -30 dBFS, 200 ms every 4 s.
ALONE_TONE = tone([(425.0, 200.0), (0.0, 3800.0)], 1000)


def _lanes_of_samples(samples: Sequence[int]) -> int:
    """One frame of linear samples as the mixer's biased 32-bit lanes."""
    return int.from_bytes(b"".join((s + _HALF).to_bytes(_LANE, _BYTEORDER) for s in samples), _BYTEORDER)


NUMPY_AVAILABLE = numpy is not None


class _ToneFrame:
    """20 ms of a tone, as lanes for the pure mix and as an int32 array for the numpy one."""

    __slots__ = ("lanes", "array")

    def __init__(self, samples: Sequence[int]) -> None:
        self.lanes = _lanes_of_samples(samples)
        self.array = numpy.array(samples, dtype=numpy.int32) if numpy is not None else None


def _frames_of(samples: Sequence[int]) -> tuple[_ToneFrame, ...]:
    return tuple(_ToneFrame(samples[i:i + FRAME_SAMPLES]) for i in range(0, len(samples), FRAME_SAMPLES))


def _constant_lanes(value: int) -> int:
    return int.from_bytes(value.to_bytes(_LANE, _BYTEORDER) * FRAME_SAMPLES, _BYTEORDER)


_JOIN_FRAMES = _frames_of(JOIN_TONE)
_LEAVE_FRAMES = _frames_of(LEAVE_TONE)
_MAX_QUEUED_TONE_FRAMES = 2 * len(_JOIN_FRAMES)


class _Codec:
    """Per-codec tables the mix needs: lane planes, translate tables, silence; one per G.711 codec name."""

    __slots__ = ("name", "low", "high", "silence", "alone", "decode_array")
    stateful = False  # shared by every participant of this codec

    def __init__(self, name: str) -> None:
        self.name = name
        self.low, self.high = g711.decode_planes(name)
        self.decode_array = None if numpy is None else numpy.array(g711.decode(name, bytes(range(256))),
                                                                   dtype=numpy.int32)
        self.silence = bytes([g711.SILENCE[name]]) * FRAME_SAMPLES
        self.alone = tuple(g711.encode(name, ALONE_TONE[i:i + FRAME_SAMPLES])
                           for i in range(0, len(ALONE_TONE), FRAME_SAMPLES))

    def lanes(self, payload: bytes) -> int:
        """A 160-byte payload as biased lanes: two translates and two slice assignments, no Python loop."""
        raw = bytearray(_FRAME_BYTES)
        if _BYTEORDER == "little":
            raw[0::_LANE], raw[1::_LANE] = payload.translate(self.low), payload.translate(self.high)
        else:
            raw[3::_LANE], raw[2::_LANE] = payload.translate(self.low), payload.translate(self.high)
        return int.from_bytes(raw, _BYTEORDER)

    def array(self, payload: bytes) -> Any:
        """A payload as an int32 numpy array of samples."""
        return self.decode_array.take(numpy.frombuffer(payload, dtype=numpy.uint8))  # type: ignore[union-attr]

    def silent(self) -> bytes:
        return self.silence

    def encode(self, samples: Sequence[int]) -> bytes:
        """20 ms of 8 kHz samples (int16 range) as a payload."""
        return g711.encode(self.name, samples)

    def discard(self, payload: bytes) -> None:
        """A received frame nobody hears (G.711 keeps no state)."""

    def alone_frame(self, position: int) -> bytes:
        return self.alone[position % len(self.alone)]


class _G722Codec:
    """One G.722 participant's codec state: its low band into the 8 kHz mix, the mix out as its low band."""

    __slots__ = ("_decoder", "_encoder")
    name = G722
    stateful = True  # one per participant: every frame in or out moves its ADPCM state

    def __init__(self) -> None:
        self._decoder = g722.NarrowbandDecoder()
        self._encoder = g722.NarrowbandEncoder()

    def lanes(self, payload: bytes) -> int:
        """A received frame as biased lanes (decoding advances this participant's decoder)."""
        return int.from_bytes(array("I", [s + _HALF for s in self._decoder.decode(payload)]).tobytes(),
                              _BYTEORDER)

    def array(self, payload: bytes) -> Any:
        return numpy.array(self._decoder.decode(payload), dtype=numpy.int32)  # type: ignore[union-attr]

    def encode_lanes(self, lanes: int, bias: int) -> bytes:
        """Biased lanes (each sample + ``bias``) saturated to 16 bits and encoded."""
        low, high = bias - 32768, bias + 32767
        return self._encoder.encode([-32768 if v < low else 32767 if v > high else v - bias
                                     for v in memoryview(lanes.to_bytes(_FRAME_BYTES, _BYTEORDER)).cast("I")])

    def encode_array(self, samples: Any, bias: int) -> bytes:
        """Biased int32 samples saturated to 16 bits and encoded."""
        return self._encoder.encode(numpy.clip(samples - bias, -32768, 32767).tolist())  # type: ignore[union-attr]

    def silent(self) -> bytes:
        return self._encoder.encode(_SILENT_SAMPLES)

    def encode(self, samples: Sequence[int]) -> bytes:
        """20 ms of 8 kHz samples (int16 range) as the next payload of this stream."""
        return self._encoder.encode(samples)

    def discard(self, payload: bytes) -> None:
        """A received frame nobody hears (a caller entering a PIN): decoded only to keep in step."""
        self._decoder.decode(payload)

    def alone_frame(self, position: int) -> bytes:
        start = (position % (len(ALONE_TONE) // FRAME_SAMPLES)) * FRAME_SAMPLES
        return self._encoder.encode(ALONE_TONE[start:start + FRAME_SAMPLES])


_SILENT_SAMPLES = (0,) * FRAME_SAMPLES
_FILL = {G722: 0xFF, **g711.SILENCE}  # what pads a short frame in a jitter buffer

_CODECS = {name: _Codec(name) for name in g711.CODECS}

_TRANSCODE = {(a, b): g711.transcode_table(a, b) for a in g711.CODECS for b in g711.CODECS}


def codec_state(codec: str) -> _Codec | _G722Codec:
    """A caller's codec before it joins a room: ``encode(samples)`` plays audio to it (a prompt),
    ``discard(payload)`` takes what it sends meanwhile. Pass it to ``Room.join``: a G.722 stream must
    go on with the same ADPCM state at both ends (a fresh state against the far end's would leave a
    lasting offset), so a G.722 caller's state is its own; G.711 keeps none."""
    name = normalize_codec(codec)
    return _G722Codec() if name == G722 else _CODECS[name]


@dataclass(frozen=True, slots=True)
class JitterStats:
    """What a participant's jitter buffer did: frames played, concealed with silence, and dropped."""

    received: int
    played: int
    concealed: int
    underruns: int
    late: int
    duplicates: int
    overflow: int
    resized: int
    depth: int


class JitterBuffer:
    """Reorders 20 ms frames by RTP sequence number for playout, one frame per tick.

    Playout starts once ``prefill`` frames are held; at most ``depth`` frames ahead are kept (a packet
    further ahead moves the window and drops the oldest). A packet behind the playout point is late
    and dropped; a missing frame with later ones waiting is concealed with silence; an empty buffer
    stalls playout and refills (a talker who stops, or whose clock is slower than ours).
    """

    __slots__ = ("depth", "prefill", "_fill", "_frames", "_next", "_playing", "received", "played",
                 "concealed", "underruns", "late", "duplicates", "overflow", "resized")

    def __init__(self, depth: int = 6, prefill: int = 2, fill: int = 0) -> None:
        if not 1 <= prefill <= depth:
            raise ValueError("jitter buffer needs 1 <= prefill <= depth")
        self.depth = depth
        self.prefill = prefill
        self._fill = bytes([fill])
        self._frames: dict[int, bytes] = {}
        self._next: int | None = None
        self._playing = False
        self.received = self.played = self.concealed = self.underruns = 0
        self.late = self.duplicates = self.overflow = self.resized = 0

    def __len__(self) -> int:
        return len(self._frames)

    def put(self, payload: bytes, seq: int) -> None:
        """Store one packet's payload (any length is padded or cut to one 160-byte frame)."""
        if not payload:
            return
        self.received += 1
        if type(payload) is not bytes:  # a memoryview or bytearray slice of the datagram
            payload = bytes(payload)
        if len(payload) != FRAME_SAMPLES:
            self.resized += 1
            payload = bytes(payload[:FRAME_SAMPLES]) + self._fill * (FRAME_SAMPLES - len(payload))
        seq &= 0xFFFF
        frames = self._frames
        if self._next is None:
            self._next = seq
        ahead = (seq - self._next) & 0xFFFF
        if ahead >= 0x8000:  # behind the playout point
            behind = 0x10000 - ahead
            if self._playing or behind + self._span_after(self._next) > self.depth:
                self.late += 1
                return
            self._next = seq  # still buffering: an earlier packet arrived second, start from it
        elif ahead >= self.depth:
            if not self._playing:
                self.overflow += len(frames)
                frames.clear()
                self._next = seq
            else:
                self._next = (seq - self.depth + 1) & 0xFFFF
                for old in [s for s in frames if (s - self._next) & 0xFFFF >= 0x8000]:
                    del frames[old]
                    self.overflow += 1
        if seq in frames:
            self.duplicates += 1
            return
        frames[seq] = payload
        if not self._playing and len(frames) >= self.prefill:
            self._playing = True

    def _span_after(self, start: int) -> int:
        """How far past ``start`` the newest held frame is (0 when empty)."""
        return max(((s - start) & 0xFFFF) + 1 for s in self._frames) if self._frames else 0

    def pop(self) -> bytes | None:
        """The frame to play this tick, or None for silence (still buffering, lost, or stalled)."""
        if not self._playing:
            return None
        frames = self._frames
        current = self._next if self._next is not None else 0
        frame = frames.pop(current, None)
        if frame is not None:
            self._next = (current + 1) & 0xFFFF
            self.played += 1
            return frame
        if frames:
            self._next = (current + 1) & 0xFFFF
            self.concealed += 1
            return None
        self._playing = False
        self.underruns += 1
        return None

    def stats(self) -> JitterStats:
        return JitterStats(self.received, self.played, self.concealed, self.underruns, self.late,
                           self.duplicates, self.overflow, self.resized, len(self._frames))


class Participant:
    """One member of a room: its RTP payloads go in through ``receive_rtp``; the mix goes out by ``send``."""

    __slots__ = ("id", "codec", "send", "jitter", "_room", "_codec")

    def __init__(self, room: Room, participant_id: str, codec: str, send: SendFunction, jitter: JitterBuffer,
                 state: _Codec | _G722Codec | None = None) -> None:
        self.id = participant_id
        self.codec = codec
        self.send = send
        self.jitter = jitter
        self._room: Room | None = room
        self._codec = state if state is not None and state.name == codec else codec_state(codec)

    @property
    def room(self) -> Room | None:
        """The room this participant is in; None once it has left."""
        return self._room

    def receive_rtp(self, payload: bytes, seq: int, timestamp: int) -> None:
        """One received RTP packet's payload (20 ms of this participant's codec); ignored after leaving.

        Ordering is by ``seq``; ``timestamp`` is accepted for the leg's convenience and not used.
        """
        if self._room is not None:
            self.jitter.put(payload, seq)

    def leave(self) -> None:
        """Leave the room (same as ``room.leave(self.id)``)."""
        if self._room is not None:
            self._room.leave(self.id)

    def __repr__(self) -> str:
        return f"<Participant {self.id!r} {self.codec}>"


class Room:
    """A conference room: participants in join order, a queue of join/leave tone frames, and its mix."""

    def __init__(self, mixer: Mixer, number: str, max_participants: int, alone_tone: bool, tones: bool,
                 use_numpy: bool) -> None:
        if max_participants < 1:
            raise ValueError("a room needs max_participants >= 1")
        self.number = number
        self.max_participants = max_participants
        self.alone_tone = alone_tone
        self.tones = tones
        self._mixer = mixer
        self._participants: dict[str, Participant] = {}
        self._tones: deque[_ToneFrame] = deque()
        self._alone_position = 0
        self._stateful = 0  # G.722 participants present: no forwarding through translate tables then
        # Lanes come out as (others' sum + tone) + bias; the table clips and encodes them.
        self._bias_count = max_participants + 1
        self._bias = {n: _constant_lanes((self._bias_count - n) * _HALF) for n in range(self._bias_count + 1)}
        self._tables = {name: g711.saturating_table(name, self._bias_count * _HALF, 2 * self._bias_count * _HALF)
                        for name in g711.CODECS}
        self._arrays = ({name: numpy.frombuffer(table, dtype=numpy.uint8) for name, table in self._tables.items()}
                        if use_numpy and numpy is not None else None)

    def __len__(self) -> int:
        return len(self._participants)

    def __iter__(self) -> Iterator[Participant]:
        return iter(list(self._participants.values()))

    @property
    def full(self) -> bool:
        return len(self._participants) >= self.max_participants

    def participants(self) -> tuple[str, ...]:
        """Participant ids in join order."""
        return tuple(self._participants)

    def participant(self, participant_id: str) -> Participant | None:
        return self._participants.get(participant_id)

    def join(self, participant_id: str, codec: str, send: SendFunction,
             state: _Codec | _G722Codec | None = None) -> Participant:
        """Add a participant; raises RoomFull, or ValueError for a duplicate id or a codec not mixed.

        ``state``: the caller's ``codec_state`` if audio already went to or came from it (a PIN prompt).
        Those already in the room hear the join tone (and so does the newcomer, as confirmation).
        """
        name = normalize_codec(codec)
        current = self._mixer._rooms.get(self.number)
        if current is not None and current is not self:  # a stale object for an open room: use the open one
            return current.join(participant_id, name, send, state)
        if participant_id in self._participants:
            raise ValueError(f"participant {participant_id!r} is already in room {self.number}")
        if self.full:
            raise RoomFull(f"room {self.number} is full ({self.max_participants} participants)")
        self._mixer._attach(self)
        participant = Participant(self, participant_id, name, send, self._mixer._jitter_buffer(name), state)
        self._participants[participant_id] = participant
        self._stateful += participant._codec.stateful
        if len(self._participants) > 1:
            self._queue_tone(_JOIN_FRAMES)
        else:
            self._alone_position = 0
        # debug: the leg that joined logs the line an administrator reads (with the caller's number)
        log.debug("conference room {room}: {participant} joined ({codec}), {count} present", room=self.number,
                 participant=participant_id, codec=name, count=len(self._participants))
        return participant

    def leave(self, participant_id: str) -> bool:
        """Remove a participant (False if absent); the others hear the leave tone. An empty room closes."""
        participant = self._participants.pop(participant_id, None)
        if participant is None:
            current = self._mixer._rooms.get(self.number)
            return current is not None and current is not self and current.leave(participant_id)
        participant._room = None
        self._stateful -= participant._codec.stateful
        log.debug("conference room {room}: {participant} left, {count} present", room=self.number,
                 participant=participant_id, count=len(self._participants))
        if self._participants:
            self._queue_tone(_LEAVE_FRAMES)
            if len(self._participants) == 1:
                self._alone_position = 0
        else:
            self._tones.clear()
            self._mixer._detach(self)
        return True

    def _queue_tone(self, frames: tuple[_ToneFrame, ...]) -> None:
        if self.tones and len(self._tones) + len(frames) <= _MAX_QUEUED_TONE_FRAMES:  # a join storm is not a tone storm
            self._tones.extend(frames)

    def _mix(self) -> None:
        """One tick: a frame from every jitter buffer, and each participant sent the others' sum."""
        members = list(self._participants.values())
        frames = [(member, member.jitter.pop()) for member in members]
        tone_frame = self._tones.popleft() if self._tones else None
        talking = [(member, frame) for member, frame in frames if frame is not None]
        if tone_frame is None and len(talking) <= 1:
            if len(members) == 1:
                member = members[0]
                if self.alone_tone:
                    payload = member._codec.alone_frame(self._alone_position)
                    self._alone_position += 1
                else:
                    payload = member._codec.silent()
                self._send(member, payload)
                return
            if not talking:
                for member in members:
                    self._send(member, member._codec.silent())
                return
            if not self._stateful:  # G.711 only: the talker's frame through a translate table
                source, frame = talking[0]
                for member in members:
                    if member is source:
                        self._send(member, member._codec.silent())
                    else:
                        self._send(member, frame.translate(_TRANSCODE[source.codec, member.codec]))
                return
        if self._arrays is not None:
            self._mix_arrays(members, talking, tone_frame)
            return
        own: dict[str, int] = {}
        total = 0
        for member, frame in talking:
            lanes = member._codec.lanes(frame)
            own[member.id] = lanes
            total += lanes
        count = len(talking)
        if tone_frame is not None:
            total += tone_frame.lanes
            count += 1
        everyone = total + self._bias[count]
        others = total + self._bias[count - 1]
        tables = self._tables
        shared: dict[str, bytes] = {}  # what every silent member hears, encoded once per codec
        for member in members:
            lanes = own.get(member.id)
            codec = member._codec
            if isinstance(codec, _G722Codec):
                payload = codec.encode_lanes(everyone if lanes is None else others - lanes, self._bias_count * _HALF)
            elif lanes is None:
                payload = shared.get(member.codec)
                if payload is None:
                    samples = memoryview(everyone.to_bytes(_FRAME_BYTES, _BYTEORDER)).cast("I")
                    payload = shared[member.codec] = bytes(map(tables[member.codec].__getitem__, samples))
            else:
                samples = memoryview((others - lanes).to_bytes(_FRAME_BYTES, _BYTEORDER)).cast("I")
                payload = bytes(map(tables[member.codec].__getitem__, samples))
            self._send(member, payload)

    def _mix_arrays(self, members: list[Participant], talking: list[tuple[Participant, bytes]],
                    tone_frame: _ToneFrame | None) -> None:
        """The general mix on numpy arrays: int32 sums, then the same saturating tables."""
        assert numpy is not None and self._arrays is not None
        own: dict[str, Any] = {}
        total = numpy.full(FRAME_SAMPLES, self._bias_count * _HALF, dtype=numpy.int32)
        for member, frame in talking:
            samples = member._codec.array(frame)
            own[member.id] = samples
            total += samples
        if tone_frame is not None:
            total += tone_frame.array
        tables = self._arrays
        shared: dict[str, bytes] = {}
        for member in members:
            samples = own.get(member.id)
            codec = member._codec
            if isinstance(codec, _G722Codec):
                payload = codec.encode_array(total if samples is None else total - samples, self._bias_count * _HALF)
            elif samples is None:
                payload = shared.get(member.codec)
                if payload is None:
                    payload = shared[member.codec] = tables[member.codec].take(total).tobytes()
            else:
                payload = tables[member.codec].take(total - samples).tobytes()
            self._send(member, payload)

    def _send(self, member: Participant, payload: bytes) -> None:
        if member._room is not self:  # left during this tick (from another participant's send)
            return
        try:
            member.send(payload)
        except Exception:
            log.failure("conference room {room}: sending to {participant} failed", room=self.number,
                        participant=member.id)

    def __repr__(self) -> str:
        return f"<Room {self.number} {len(self._participants)}/{self.max_participants}>"


@dataclass(frozen=True, slots=True)
class MixerStats:
    """Tick bookkeeping: ticks run, slots skipped by a late timer, and lateness percentiles (seconds)."""

    ticks: int
    missed: int
    rooms: int
    participants: int
    lateness_p50: float
    lateness_p99: float
    lateness_max: float


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile (0 for no values): ``percentile(v, 0.99)`` is the p99."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(fraction * len(ordered)) - 1))
    return ordered[rank]


class Mixer:
    """Every conference room of the process, driven by one timer on ``clock`` while any room is open.

    Each tick records its lateness (how long after its 20 ms slot it ran); a timer that missed slots
    mixes the missed ticks too (up to ``max_catch_up``) so that jitter buffers keep their depth.
    """

    def __init__(self, clock: IReactorTime, *, interval: float = TICK_SECONDS, jitter_depth: int = 6,
                 jitter_prefill: int = 2, max_catch_up: int = 5, lateness_window: int = 6000,
                 use_numpy: bool | None = None) -> None:
        JitterBuffer(jitter_depth, jitter_prefill)  # validate now, not at the first join
        self.clock = clock
        self.interval = interval
        self.jitter_depth = jitter_depth
        self.jitter_prefill = jitter_prefill
        self.max_catch_up = max_catch_up
        if use_numpy and numpy is None:
            raise ValueError("use_numpy=True but numpy is not installed (Debian: python3-numpy)")
        self.use_numpy = numpy is not None if use_numpy is None else use_numpy
        self.lateness: deque[float] = deque(maxlen=lateness_window)
        self.ticks = 0
        self.missed = 0
        self._rooms: dict[str, Room] = {}
        self._loop: LoopingCall | None = None
        self._start = 0.0
        self._slot = 0

    def room(self, number: str, *, max_participants: int = 5, alone_tone: bool = False, tones: bool = True) -> Room:
        """The open room ``number`` (its settings unchanged), or a new one with these settings, which
        opens when someone joins.

        ``alone_tone``: a participant alone hears a soft 425 Hz beep every 4 s instead of silence;
        ``tones``: join and leave tones.
        """
        room = self._rooms.get(number)
        if room is None:
            room = Room(self, number, max_participants, alone_tone, tones, self.use_numpy)
        return room

    def rooms(self) -> tuple[Room, ...]:
        """Open rooms (those with participants), in the order they opened."""
        return tuple(self._rooms.values())

    def stats(self) -> MixerStats:
        lateness = list(self.lateness)
        return MixerStats(self.ticks, self.missed, len(self._rooms), sum(len(r) for r in self._rooms.values()),
                          percentile(lateness, 0.50), percentile(lateness, 0.99), max(lateness, default=0.0))

    def tick(self) -> None:
        """Mix every open room once (the timer calls this; tests and benchmarks may too)."""
        self.ticks += 1
        for room in list(self._rooms.values()):
            try:
                room._mix()
            except Exception:
                log.failure("conference room {room}: mixing failed", room=room.number)

    def stop(self) -> None:
        """Stop the timer (at shutdown); rooms stay as they are."""
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None

    def _on_timer(self) -> None:
        now = self.clock.seconds()
        slot = math.floor((now - self._start) / self.interval + 1e-6)
        slot = max(slot, self._slot + 1)
        due = self._start + slot * self.interval
        late = max(0.0, now - due)
        count = slot - self._slot
        self._slot = slot
        if count > 1:
            self.missed += count - 1
            for skipped in range(count - 1, 0, -1):
                self.lateness.append(late + skipped * self.interval)
        self.lateness.append(late)
        for _ in range(min(count, self.max_catch_up)):
            if not self._rooms:
                break
            self.tick()

    def _attach(self, room: Room) -> None:
        existing = self._rooms.get(room.number)
        if existing is room:
            return
        if existing is not None:
            raise ValueError(f"room {room.number} is already open as another Room object")
        self._rooms[room.number] = room
        if self._loop is None:
            self._loop = LoopingCall(self._on_timer)
            self._loop.clock = self.clock
            self._start = self.clock.seconds()
            self._slot = 0
            self._loop.start(self.interval, now=False)

    def _detach(self, room: Room) -> None:
        if self._rooms.get(room.number) is room:
            del self._rooms[room.number]
            log.info("conference room {room} closed (empty)", room=room.number)
        if not self._rooms:
            self.stop()

    def _jitter_buffer(self, codec: str) -> JitterBuffer:
        return JitterBuffer(self.jitter_depth, self.jitter_prefill, _FILL[codec])
