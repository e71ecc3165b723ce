"""Conference rooms in the call layer: a room is a leg kind (``'conference'``) whose media end in the server.

A call routed to ``LegDestination('conference', '800')`` gets a ``RoomLeg`` as its B-leg. The media
policy sees that the leg mixes (``attach_media``): it gives the leg the caller's relay endpoint, which
hands the leg the caller's RTP decrypted (plain, SDES, DTLS or a browser: all the same here) and sends
the leg's RTP through the caller's own transform. The leg answers the offer with PCMU, PCMA or G.722
(whichever the caller lists first; others get 488) and joins the room's ``Mixer`` participant. The mix
is narrowband: a G.722 caller is heard and hears the room below 4 kHz.

A room with a PIN that the dial string did not carry first plays a prompt in early media (183) and
collects the PIN by RFC 4733 telephone-events on the stream or SIP INFO (``application/dtmf-relay``,
passed to the ringing leg by the call layer because the leg declares ``early_requests``): three tries,
then 403. A full room answers 486 "Conference Room Full". A caller that made no offer (late offer)
gets the room's offer in the 200 and joins when its ACK answers. One ``Mixer`` timer drives every room; one
lobby timer plays prompts while someone enters a PIN. The room closes when its last participant leaves;
a participant who stops sending stays until the call ends (no media timeout for room calls).
"""

from __future__ import annotations

import json
import random
import struct
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from zope.interface import implementer

from minisip.core.call import LegRequest, LegResponse
from minisip.interfaces import ILeg, ILegFactory
from minisip.media.dtmfpin import PROMPT_TONE, PinEntry, PinOutcome, TelephoneEventDigits, parse_dtmf_relay
from minisip.media.mixer import CODECS, FRAME_SAMPLES, TICK_SECONDS, Mixer, RoomFull, codec_state
from minisip.sip.sdp import SDPError, parse_sdp

__all__ = ["DEFAULT_MAX_PARTICIPANTS", "ConferenceRooms", "ParticipantInfo", "RoomInfo", "RoomLeg",
           "RoomSettings", "FULL_REASON"]

log = Logger(namespace="minisip.conference")

KIND = "conference"
DEFAULT_MAX_PARTICIPANTS = 5
FULL_REASON = "Conference Room Full"
WRONG_PIN_REASON = "Wrong PIN"
NO_PIN_REASON = "No PIN Entered"
PIN_TRIES = 3
DTMF_TYPES = ("application/dtmf-relay", "application/dtmf")
_HEADER = struct.Struct("!BBHII")
_SILENCE = (0,) * FRAME_SAMPLES


@dataclass(frozen=True, slots=True)
class RoomSettings:
    """One ``[conference N]`` section."""

    number: str
    pin: str | None = None
    max_participants: int = DEFAULT_MAX_PARTICIPANTS
    alone_tone: bool = False
    section: str = ""


@dataclass(frozen=True, slots=True)
class ParticipantInfo:
    """Who is in a room: their call, the caller's number and name, their codec, when they joined."""

    call_id: str
    caller: str
    display: str | None
    source: str
    codec: str
    joined: float


@dataclass(frozen=True, slots=True)
class RoomInfo:
    """An open room (one with participants), for ServerAPI.conference_rooms."""

    number: str
    max_participants: int
    participants: tuple[ParticipantInfo, ...]


def _choose_codecs(sdp: bytes) -> tuple[str, str, str | None, list[str]] | None:
    """(codec, its payload type, telephone-event payload type, the answer's m= lines) for an offer,
    or None when it has no audio stream in a codec the mixer takes (PCMU, PCMA, G.722 at its RTP clock 8000).
    The caller's first such codec is chosen; streams other than the first audio one are refused (port 0)."""
    try:
        offer = parse_sdp(sdp)
    except SDPError:
        return None
    chosen: tuple[str, str, str | None] | None = None
    lines: list[str] = []
    for m in offer.media:
        if chosen is None and m.kind == "audio" and m.port != 0:
            pick = None
            for pt in m.formats:
                for name in CODECS:
                    if m.find_format(name, 8000) == pt:
                        pick = (name, pt)
                        break
                if pick is not None:
                    break
            if pick is not None:
                dtmf = m.find_format("telephone-event", 8000)
                chosen = (pick[0], pick[1], dtmf)
                formats = f"{pick[1]} {dtmf}" if dtmf is not None else pick[1]
                lines.append(f"m=audio 9 {m.proto} {formats}")
                lines.append(f"a=rtpmap:{pick[1]} {pick[0]}/8000")
                if dtmf is not None:
                    lines += [f"a=rtpmap:{dtmf} telephone-event/8000", f"a=fmtp:{dtmf} 0-15"]
                lines.append("a=ptime:20")
                lines.append("a=" + {"sendonly": "recvonly", "recvonly": "sendonly",
                                     "inactive": "inactive"}.get(m.direction, "sendrecv"))
                continue
        lines.append(f"m={m.kind} 0 {m.proto} {m.formats[0] if m.formats else '0'}")
    if chosen is None:
        return None
    return chosen[0], chosen[1], chosen[2], lines


class _Handle:
    """What ``send_request`` returns: the answer is given at once, so there is nothing to cancel."""

    __slots__ = ()

    def cancel(self) -> None:
        """Nothing pending."""


@implementer(ILeg)
class RoomLeg:
    """A call's leg into a conference room (the callee side): PIN entry, then a mixer participant."""

    kind = KIND
    early_requests = True     # the call layer passes the caller's INFO (DTMF) before the answer

    def __init__(self, rooms: ConferenceRooms, call: Any, destination: Any, settings: RoomSettings,
                 pin_given: str | None) -> None:
        self.rooms = rooms
        self.call = call
        self.destination = destination
        self.settings = settings
        self.number = settings.number
        self.pin_given = pin_given
        self.description = f"conference room {settings.number}"
        self.state = "init"               # init, pin, offered (late offer, until the ACK), joined, ended
        self.endpoint: Any = None
        self.codec = "PCMU"
        self.pt = 0
        self.dtmf_pt: int | None = None
        self.answer_lines: list[str] = []
        self.participant: Any = None
        self.pin_entry: PinEntry | None = None
        self.digits = TelephoneEventDigits()
        self.media_codec: Any = None      # the caller's codec state (mixer.codec_state), from the offer on
        self.prompt: deque[tuple[int, ...]] = deque()   # 20 ms frames of 8 kHz samples still to play
        self.lobby_audio: bytes | None = None   # the caller's last frame while entering the PIN
        self.joined_at: float | None = None
        self.left_at: float | None = None
        self.outcome = "no answer"
        self._ssrc = random.getrandbits(32)
        self._seq = random.getrandbits(16)
        self._ts = random.getrandbits(32)
        self._marker = 0x80

    # -- media (the policy's seam) ---------------------------------------------------------------------
    def attach_media(self, endpoint: Any) -> None:
        """The caller's relay endpoint: its plain RTP comes here, ours goes out through it."""
        self.endpoint = endpoint
        endpoint.set_sink(self._rtp_received)

    def _rtp_received(self, plain: bytes) -> None:
        """One plain RTP packet from the caller: audio to the mixer, telephone-events to the PIN entry."""
        try:
            first = plain[0]
            start = 12 + 4 * (first & 0x0F)
            if first & 0x10:
                if len(plain) < start + 4:
                    return
                start += 4 + 4 * ((plain[start + 2] << 8) | plain[start + 3])
            end = len(plain) - (plain[-1] if first & 0x20 else 0)
            if start >= end:
                return
            pt = plain[1] & 0x7F
            if pt == self.pt:
                participant = self.participant
                if participant is not None:
                    participant.receive_rtp(plain[start:end], (plain[2] << 8) | plain[3], 0)
                elif self.state == "pin":
                    self.lobby_audio = plain[start:end][:FRAME_SAMPLES]   # decoded at the lobby tick
            elif pt == self.dtmf_pt and self.pin_entry is not None:
                timestamp = int.from_bytes(plain[4:8], "big")
                digit = self.digits.feed(plain[start:end], timestamp)
                if digit is not None:
                    self.pin_entry.digit(digit)
        except Exception:
            log.failure("conference room {room}: RTP from call {id} failed", room=self.number, id=self.call.id)

    def send_payload(self, payload: bytes) -> None:
        """20 ms of our codec to the caller (the mix, a prompt or silence), as the next RTP packet."""
        endpoint = self.endpoint
        if endpoint is None or self.state == "ended":
            return
        packet = _HEADER.pack(0x80, self._marker | self.pt, self._seq, self._ts, self._ssrc) + payload
        self._marker = 0
        self._seq = (self._seq + 1) & 0xFFFF
        self._ts = (self._ts + len(payload)) & 0xFFFFFFFF
        endpoint.send_rtp(packet)

    # -- ILeg: the call drives the B-leg ---------------------------------------------------------------
    def start(self, sdp: bytes) -> None:
        if not sdp:
            self._start_late()
            return
        chosen = _choose_codecs(sdp)
        if chosen is None:
            log.info("conference room {room}: call {id} refused: no PCMU, PCMA or G722 offered", room=self.number,
                     id=self.call.id)
            self._fail(488, "Not Acceptable Here", "no common codec")
            return
        if self.endpoint is None:
            log.warn("conference room {room}: call {id} refused: rooms need the media relay "  # noqa: G010
                     "([media] relay = auto or always)", room=self.number, id=self.call.id)
            self._fail(503, "Service Unavailable", "no media relay")
            return
        codec, pt, dtmf, self.answer_lines = chosen
        self.codec, self.pt = codec, int(pt)
        self.media_codec = codec_state(codec)
        self.dtmf_pt = int(dtmf) if dtmf is not None else None
        if self.rooms.is_full(self.settings):
            self._refuse_full()
            return
        pin = self.settings.pin
        if pin is None:
            self._join()
        elif self.pin_given is not None:
            if self.pin_given == pin:
                self._join()
            else:
                log.info("conference room {room}: call {id} from {caller} refused: wrong PIN in the dial "
                         "string", room=self.number, id=self.call.id, caller=self.call.caller)
                self._fail(403, WRONG_PIN_REASON, "wrong PIN")
        else:
            self._ask_pin(pin)

    def _start_late(self) -> None:
        """A caller that made no offer (late offer, some trunks): the room answers 200 with its own offer
        and joins when the caller's answer comes in the ACK. No early media without an offer: a PIN must
        then be in the dial string."""
        if self.settings.pin is not None and self.pin_given is None:
            log.info("conference room {room}: call {id} refused: no SDP offer to play the PIN prompt in (dial "
                     "*6*{room}*PIN)", room=self.number, id=self.call.id)
            self._fail(488, "Not Acceptable Here", "no offer")
            return
        if self.settings.pin is not None and self.pin_given != self.settings.pin:
            self._fail(403, WRONG_PIN_REASON, "wrong PIN")
            return
        if self.rooms.is_full(self.settings):
            self._refuse_full()
            return
        self.state = "offered"
        self.answer_lines = ["m=audio 9 RTP/AVP 0 8 9 101", "a=rtpmap:0 PCMU/8000", "a=rtpmap:8 PCMA/8000",
                             "a=rtpmap:9 G722/8000", "a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-15",
                             "a=ptime:20", "a=sendrecv"]
        self.call.leg_answered(self, self._answer_sdp())

    def _late_answer(self, sdp: bytes) -> None:
        """The late-offer caller's answer: its codec, then the room."""
        chosen = _choose_codecs(sdp) if sdp else None
        if chosen is None or self.endpoint is None:
            log.info("conference room {room}: call {id} ended: {why}", room=self.number, id=self.call.id,
                     why="no media relay" if chosen is not None else "no PCMU, PCMA or G722 in the caller's answer")
            self.outcome = "no common codec" if chosen is None else "no media relay"
            self.hangup("refused")
            self.call.leg_hungup(self, self.outcome)
            return
        codec, pt, dtmf, _ = chosen
        self.codec, self.pt = codec, int(pt)
        self.media_codec = codec_state(codec)
        self.dtmf_pt = int(dtmf) if dtmf is not None else None
        if not self._enter():
            self.outcome = "full"
            self.hangup("room full")
            self.call.leg_hungup(self, "room full")

    def _answer_sdp(self) -> bytes:
        lines = ["v=0", f"o=minisip {self._ssrc} 1 IN IP4 0.0.0.0", f"s=conference {self.number}",
                 "c=IN IP4 0.0.0.0", "t=0 0", *self.answer_lines]
        return ("\r\n".join(lines) + "\r\n").encode("ascii")

    def _ask_pin(self, pin: str) -> None:
        self.state = "pin"
        log.info("conference room {room}: call {id} from {caller} asked for the PIN", room=self.number,
                 id=self.call.id, caller=self.call.caller)
        self.call.leg_progress(self, 183, self._answer_sdp())
        if self.state != "pin":
            return   # early media refused and the call ended
        self.pin_entry = PinEntry(self.rooms.clock, pin, self._pin_outcome, tries=PIN_TRIES,
                                  on_retry=self._pin_retry)
        self.prompt.extend(self.rooms.prompt_frames())
        self.rooms.lobby_add(self)

    def _pin_retry(self, tries_left: int) -> None:
        log.info("conference room {room}: call {id} entered a wrong PIN, {n} tries left", room=self.number,
                 id=self.call.id, n=tries_left)
        self.prompt.clear()
        self.prompt.extend(self.rooms.prompt_frames())

    def _pin_outcome(self, outcome: PinOutcome) -> None:
        self.pin_entry = None
        self.rooms.lobby_remove(self)
        if self.state != "pin":
            return
        if outcome is PinOutcome.ACCEPTED:
            if self.rooms.is_full(self.settings):
                self._refuse_full()
            else:
                self._join()
            return
        why = WRONG_PIN_REASON if outcome is PinOutcome.WRONG else NO_PIN_REASON
        log.info("conference room {room}: call {id} from {caller} refused: {why}", room=self.number,
                 id=self.call.id, caller=self.call.caller, why=why.lower())
        self._fail(403, why, "wrong PIN" if outcome is PinOutcome.WRONG else "no PIN")

    def _refuse_full(self) -> None:
        log.info("conference room {room}: call {id} from {caller} refused: the room is full ({n})",
                 room=self.number, id=self.call.id, caller=self.call.caller, n=self.settings.max_participants)
        self._fail(486, FULL_REASON, "full")

    def _join(self) -> None:
        if self._enter():
            self.call.leg_answered(self, self._answer_sdp())
        else:
            self._refuse_full()

    def _enter(self) -> bool:
        """Become a participant of the room's mix (False: it is full)."""
        settings = self.settings
        room = self.rooms.mixer.room(self.number, max_participants=settings.max_participants,
                                     alone_tone=settings.alone_tone)
        try:
            self.participant = room.join(self.call.id, self.codec, self.send_payload, self.media_codec)
        except RoomFull:
            return False
        self.state = "joined"
        self.outcome = "joined"
        self.joined_at = self.rooms.wallclock()
        self.rooms.member_add(self)
        log.info("conference room {room}: {caller} joined (call {id}, {codec}), {n} present", room=self.number,
                 caller=self.call.caller, id=self.call.id, codec=self.codec, n=len(room))
        return True

    def _fail(self, status: int, reason: str, outcome: str) -> None:
        self.outcome = outcome
        self._leave()
        self.state = "ended"
        self._record()
        self.call.leg_failed(self, status, reason)

    def cancel(self) -> None:
        """The caller gave up while entering the PIN (or the ring time ran out)."""
        if self.state in ("init", "pin"):
            self.outcome = "cancelled"
            self._leave()
            self.state = "ended"
            self._record()
            self.call.leg_failed(self, 487, "Request Terminated")

    def progress(self, status: int, sdp: bytes) -> None:
        """Never an A-leg."""

    def answer(self, sdp: bytes) -> None:
        """Never an A-leg."""

    def reject(self, status: int, reason: str | None) -> None:
        """Never an A-leg."""

    def hangup(self, cause: str) -> None:
        """The caller hung up (or the server ended the call): leave the room."""
        if self.state != "ended":
            self._leave()
            self.state = "ended"
            self._record()

    def send_request(self, request: LegRequest, on_final: Callable[[LegResponse | None], None]) -> _Handle:
        """In-dialog requests from the caller: DTMF by INFO, re-offers (hold, refresh) answered here."""
        method = request.method
        ctype = (request.content_type or "").split(";")[0].strip().lower()
        if method == "INFO":
            if ctype in DTMF_TYPES and self.pin_entry is not None:
                digit = parse_dtmf_relay(request.body)
                if digit is not None:
                    on_final(LegResponse(200, "OK"))
                    self.pin_entry.digit(digit)
                    return _Handle()
            on_final(LegResponse(200, "OK"))
        elif method in ("INVITE", "UPDATE") and request.body:
            chosen = _choose_codecs(request.body)
            if chosen is None or chosen[0] != self.codec:
                on_final(LegResponse(488, "Not Acceptable Here"))
            else:
                self.answer_lines = chosen[3]
                self.pt = int(chosen[1])
                self.dtmf_pt = int(chosen[2]) if chosen[2] is not None else None
                on_final(LegResponse(200, "OK", self._answer_sdp(), "application/sdp"))
        elif method == "UPDATE":
            on_final(LegResponse(200, "OK"))
        elif method == "INVITE":
            on_final(LegResponse(488, "Not Acceptable Here"))   # an offer from the room: not supported
        else:
            on_final(LegResponse(501, "Not Implemented"))
        return _Handle()

    def ack(self, sdp: bytes) -> None:
        """The caller's ACK: for a late-offer caller it carries the answer to the room's offer."""
        if self.state == "offered":
            self._late_answer(sdp)

    def probe(self) -> bool:
        return self.state != "ended"

    def close(self) -> None:
        if self.state != "ended":
            self._leave()
            self.state = "ended"
        self._record()

    # -- leaving -----------------------------------------------------------------------------------------
    def _leave(self) -> None:
        if self.pin_entry is not None:
            self.pin_entry.cancel()
            self.pin_entry = None
        self.rooms.lobby_remove(self)
        participant, self.participant = self.participant, None
        if participant is not None:
            room = participant.room
            participant.leave()
            self.left_at = self.rooms.wallclock()
            self.rooms.member_remove(self)
            log.info("conference room {room}: {caller} left (call {id}), {n} present", room=self.number,
                     caller=self.call.caller, id=self.call.id, n=len(room) if room is not None else 0)
        if self.endpoint is not None:
            try:
                self.endpoint.set_sink(None)
            except Exception:
                log.failure("conference room {room}: releasing the media of call {id}", room=self.number,
                            id=self.call.id)

    def _record(self) -> None:
        """What the call record keeps of the room: room, who, when they joined and left, how it ended."""
        self.call.conference = json.dumps({
            "room": self.number, "participant": self.call.caller, "display": self.call.caller_display,
            "joined": self.joined_at, "left": self.left_at if self.joined_at is not None else None,
            "outcome": self.outcome}, sort_keys=True)

    def info(self) -> ParticipantInfo:
        call = self.call
        return ParticipantInfo(call.id, call.caller, call.caller_display, call.source, self.codec,
                               self.joined_at or 0.0)


@implementer(ILegFactory)
class ConferenceRooms:
    """Every room of the server: their settings, the one mixer, the PIN lobby; the leg factory of kind
    ``'conference'`` (a destination's ``target`` is the room number, its ``pin`` parameter a dialled PIN)."""

    def __init__(self, clock: Any, wallclock: Callable[[], float], mixer: Mixer | None = None) -> None:
        self.clock = clock
        self.wallclock = wallclock
        self.mixer = mixer if mixer is not None else Mixer(clock)
        self.settings: dict[str, RoomSettings] = {}
        self.members: dict[str, dict[str, RoomLeg]] = {}      # room -> call id -> leg, in join order
        self._lobby: dict[int, RoomLeg] = {}
        self._lobby_loop: LoopingCall | None = None
        self._prompt = tuple(tuple(PROMPT_TONE[i:i + FRAME_SAMPLES]) for i in range(0, len(PROMPT_TONE), FRAME_SAMPLES))

    def configure(self, settings: Mapping[str, RoomSettings]) -> None:
        """New settings (a reload): participants stay; the next caller gets the new PIN; a smaller size
        applies at once, a larger one when the room has emptied (an open mix keeps its size)."""
        self.settings = dict(settings)

    # -- ILegFactory -----------------------------------------------------------------------------------
    def make_leg(self, call: Any, destination: Any) -> RoomLeg:
        settings = self.settings.get(destination.target)
        if settings is None:
            raise ValueError(f"no conference room {destination.target!r}")
        pin = dict(destination.params).get("pin")
        return RoomLeg(self, call, destination, settings, pin)

    # -- rooms -----------------------------------------------------------------------------------------
    def is_full(self, settings: RoomSettings) -> bool:
        return len(self.members.get(settings.number, ())) >= settings.max_participants

    def member_add(self, leg: RoomLeg) -> None:
        self.members.setdefault(leg.number, {})[leg.call.id] = leg

    def member_remove(self, leg: RoomLeg) -> None:
        members = self.members.get(leg.number)
        if members is not None and members.get(leg.call.id) is leg:
            del members[leg.call.id]
            if not members:
                del self.members[leg.number]

    def rooms(self) -> list[RoomInfo]:
        """The open rooms, each with its participants in join order."""
        return [info for number in list(self.members) if (info := self.room(number)) is not None]

    def room(self, number: str) -> RoomInfo | None:
        members = self.members.get(number)
        if not members:
            return None
        settings = self.settings.get(number)
        first = next(iter(members.values()))
        size = settings.max_participants if settings is not None else first.settings.max_participants
        return RoomInfo(number, size, tuple(leg.info() for leg in members.values()))

    # -- the lobby: callers entering a PIN hear the prompt, then silence -----------------------------------
    def prompt_frames(self) -> tuple[tuple[int, ...], ...]:
        """The PIN prompt as 20 ms frames of samples, encoded as they are played (G.722 keeps state)."""
        return self._prompt

    def lobby_add(self, leg: RoomLeg) -> None:
        self._lobby[id(leg)] = leg
        if self._lobby_loop is None:
            self._lobby_loop = LoopingCall(self._lobby_tick)
            self._lobby_loop.clock = self.clock
            self._lobby_loop.start(TICK_SECONDS, now=False)

    def lobby_remove(self, leg: RoomLeg) -> None:
        if self._lobby.pop(id(leg), None) is not None and not self._lobby:
            self._stop_lobby()

    def _stop_lobby(self) -> None:
        loop, self._lobby_loop = self._lobby_loop, None
        if loop is not None and loop.running:
            loop.stop()

    def _lobby_tick(self) -> None:
        for leg in list(self._lobby.values()):
            try:
                heard, leg.lobby_audio = leg.lobby_audio, None
                if heard is not None:   # at most one frame a tick, however fast the caller sends
                    leg.media_codec.discard(heard)
                leg.send_payload(leg.media_codec.encode(leg.prompt.popleft() if leg.prompt else _SILENCE))
            except Exception:
                log.failure("conference room {room}: prompt to call {id} failed", room=leg.number, id=leg.call.id)

    def stop(self) -> None:
        """Stop the timers (server shutdown)."""
        self.mixer.stop()
        self._stop_lobby()
