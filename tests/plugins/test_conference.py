"""Conference rooms (plugins/conference.py, minisip/conference.py): configuration, routing, and calls
through SIPCore and the relay media policy on a Clock: phones join a room, hear the others mixed and not
themselves, enter PINs by RFC 4733 and by SIP INFO, are refused when the PIN is wrong or the room full,
and leave records of when they were there."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import sqlite3
import struct
import sys
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from minisip.api import ConfigError, LegDestination, Reject, Route, ServerAPI
from minisip.app import Server
from minisip.config import ConfigError as CoreConfigError
from minisip.config import load_config
from minisip.core.store import SCHEMA_VERSION, CallRecord, SQLiteStore
from minisip.media import g711, g722
from minisip.media.compat import DTLS_AVAILABLE
from minisip.media.dtls import DtlsTransform, local_certificate
from minisip.media.policy import MediaSettings, RelayMediaPolicy
from minisip.media.relay import MediaRelay
from minisip.media.srtp import SdesTransform, new_key_salt, parse_crypto
from minisip.plugins import LoadedPlugin, parse_plugin_configs
from minisip.sip.message import Response
from minisip.sip.sdp import parse_sdp
from minisip.testing import PluginHarness
from tests.core.fakes import PBX, Dialog, Phone, requests, statuses
from tests.media.test_g722 import goertzel
from tests.media.test_policy import NO_DTLS, sdp_for
from tests.media.test_relay import FakeNet
from tests.test_service import Reactor
from tests.webrtc.test_calls import FakePeer, chrome_offer

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PLUGIN = os.path.join(REPO, "plugins", "conference.py")


def _load_plugin() -> Any:
    spec = importlib.util.spec_from_file_location("minisip_test_plugin_conference", PLUGIN)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


conference = _load_plugin()
factory = conference.factory

RELAY = "192.0.2.1"
PORTS = (30000, 30199)
EXTS = ("100", "200", "300", "400", "500", "600")
ROOMS = {"conference 800": {}, "conference 801": {"pin": "1234"},
         "conference 802": {"max_participants": "2", "alone_tone": "yes"}}


def offer(host: str, port: int = 4000, codecs: str = "0 8 101", proto: str = "RTP/AVP") -> bytes:
    lines = ["v=0", f"o=- 1 1 IN IP4 {host}", "s=-", f"c=IN IP4 {host}", "t=0 0",
             f"m=audio {port} {proto} {codecs}", "a=rtpmap:101 telephone-event/8000", "a=sendrecv"]
    return ("\r\n".join(lines) + "\r\n").encode()


def rtp(seq: int, payload: bytes, pt: int = 0, ts: int | None = None, ssrc: int = 0x1234) -> bytes:
    return struct.pack("!BBHII", 0x80, pt, seq, seq * 160 if ts is None else ts, ssrc) + payload


def level(samples: Any) -> float:
    """The mean absolute sample value of a decoded frame."""
    return sum(abs(s) for s in samples) / len(samples)


def sine(frequency: float, count: int, rate: int, start: int, amplitude: int = 8000) -> list[int]:
    return [round(amplitude * math.sin(2 * math.pi * frequency * (start + n) / rate)) for n in range(count)]


class ConfigTests(SynchronousTestCase):
    def error(self, values: dict[str, str], section: str = "conference 800") -> ConfigError:
        return self.assertRaises(ConfigError, factory.parse_config, {section: values})

    def test_defaults_and_keys(self) -> None:
        rooms = factory.parse_config(ROOMS).rooms
        self.assertEqual((rooms["800"].pin, rooms["800"].max_participants, rooms["800"].alone_tone), (None, 5, False))
        self.assertEqual(rooms["801"].pin, "1234")
        self.assertEqual((rooms["802"].max_participants, rooms["802"].alone_tone), (2, True))

    def test_max_participants_raised_here(self) -> None:
        self.assertEqual(factory.parse_config({"conference 9": {"max_participants": "12"}}).rooms["9"]
                         .max_participants, 12)

    def test_errors_name_section_and_key(self) -> None:
        for values, key, words in (
                ({"pin": "12a4"}, "pin", "not a PIN"),
                ({"max_participants": "1"}, "max_participants", "at least 2"),
                ({"max_participants": "five"}, "max_participants", "whole number"),
                ({"max_participants": "33"}, "max_participants", "more than 32"),
                ({"alone_tone": "maybe"}, "alone_tone", "yes or no"),
                ({"pim": "1234"}, "pim", "unknown key")):
            e = self.error(values)
            self.assertEqual((e.section, e.key), ("conference 800", key), values)
            self.assertIn(words, str(e))
            self.assertIn("[conference 800] " + key, str(e))

    def test_bad_section_name(self) -> None:
        e = self.error({}, section="conference")
        self.assertEqual(e.section, "conference")
        self.assertIn("[conference NUMBER]", str(e))

    def test_room_number_that_is_an_extension(self) -> None:
        e = self.assertRaises(ConfigError, PluginHarness, factory, {"conference 100": {}})
        self.assertEqual(e.section, "conference 100")
        self.assertIn("also an extension", str(e))


class RoutingTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.h = PluginHarness(factory, ROOMS, extensions=EXTS)

    def test_room_number(self) -> None:
        decision = self.h.route("100", "800")
        self.assertIsInstance(decision, Route)
        self.assertEqual(decision.targets, (LegDestination("conference", "800"),))
        self.assertEqual(decision.callee, "800")

    def test_dial_string_with_pin(self) -> None:
        decision = self.h.route("100", "*6*801*1234")
        self.assertEqual(decision.targets, (LegDestination("conference", "801", params=(("pin", "1234"),)),))
        self.assertEqual(self.h.route("100", "*6*800").targets, (LegDestination("conference", "800"),))

    def test_unknown_room_in_a_dial_string(self) -> None:
        self.assertEqual(self.h.route("100", "*6*999*1"), Reject(404, "Not Found"))

    def test_other_numbers_go_on(self) -> None:
        self.assertEqual(self.h.route("100", "700").code, 404)   # the extension router's answer
        self.assertEqual(self.h.route("100", "200").code, 480)   # an extension, not registered

    def test_api_lists_no_rooms_before_anyone_joins(self) -> None:
        self.assertEqual(self.h.api.conference_rooms(), [])
        self.assertIsNone(self.h.api.conference_room("800"))


class RoomTestCase(SynchronousTestCase):
    """A PBX on a Clock with the relay policy (relay auto) and the conference plugin."""

    rooms = ROOMS

    def setUp(self) -> None:
        self.pbx = PBX(extensions=EXTS)
        self.net = FakeNet()
        self.relay = MediaRelay(self.pbx.clock, RELAY, PORTS, clock=self.pbx.clock, timeout=30,
                                listen_udp=self.net.listen_udp)
        self.policy = RelayMediaPolicy(self.relay, MediaSettings(address=RELAY, ports=PORTS, relay="auto",
                                                                 timeout=30), self.pbx.clock)
        self.pbx.core.hooks.for_owner("test.media").set_media_policy(self.policy)
        self.api = ServerAPI(self.pbx.core, self.pbx.store, factory.name)
        self.feature = factory.make_feature(self.api, factory.parse_config(self.rooms))
        self.feature.register(self.pbx.core.hooks.for_owner(factory.name))
        self.phones: dict[str, Phone] = {}
        self.dialogs: dict[str, Dialog] = {}
        self.ports: dict[str, int] = {}
        self.seq: dict[str, int] = {}
        self.transforms: dict[str, Any] = {}     # a phone's own SRTP, for SDES and DTLS participants

    def host(self, ext: str) -> str:
        return f"10.0.0.{EXTS.index(ext) + 1}"

    def dial(self, ext: str, number: str = "800", body: bytes | None = None) -> list[Any]:
        """``ext`` calls ``number``; the responses it got (the 407 consumed)."""
        phone = self.phones[ext] = self.pbx.phone(ext, self.host(ext))
        self.dialogs[ext] = phone.call(number, offer(self.host(ext)) if body is None else body)
        return phone.inbox()

    def join(self, ext: str, number: str = "800") -> None:
        got = self.dial(ext, number)
        (ok,) = [m for m in got if isinstance(m, Response) and m.status == 200]
        self.dialogs[ext].ack()
        self.ports[ext] = parse_sdp(ok.body).media[0].port

    def early_port(self, got: list[Any]) -> int:
        (early,) = [m for m in got if isinstance(m, Response) and m.status == 183]
        return parse_sdp(early.body).media[0].port

    def leave(self, ext: str) -> None:
        self.dialogs[ext].bye()
        self.phones[ext].inbox()

    def send(self, ext: str, payload: bytes, pt: int = 0, ts: int | None = None, port: int | None = None) -> None:
        seq = self.seq[ext] = self.seq.get(ext, 0) + 1
        packet = rtp(seq, payload, pt, ts)
        if ext in self.transforms:
            packet = self.transforms[ext].protect_rtp(packet)
        self.net.deliver(self.ports[ext] if port is None else port, packet, (self.host(ext), 4000))

    def received(self, ext: str) -> list[bytes]:
        """RTP payloads the relay sent to ``ext``'s phone since last asked."""
        port = self.ports[ext]
        out = []
        for data, dest in self.net.take(port):
            self.assertEqual(dest, (self.host(ext), 4000))
            if ext in self.transforms:
                if not 128 <= data[0] <= 191:
                    continue                      # DTLS
                data = self.transforms[ext].unprotect_rtp(data)
                self.assertIsNotNone(data)
            out.append(data[12:])
        return out

    def tick(self, seconds: float = 0.02) -> None:
        self.pbx.clock.advance(seconds)


class RoomTests(RoomTestCase):
    def test_everyone_hears_the_others_and_never_themselves(self) -> None:
        """Three phones send constant levels; each hears the sum of the other two."""
        values = {"100": 1000, "200": 2000, "300": 4000}
        for ext in values:
            self.join(ext)
        frames = {ext: g711.encode("PCMU", [v] * 160) for ext, v in values.items()}
        sent_level = {ext: level(g711.decode("PCMU", f)) for ext, f in frames.items()}
        for _ in range(30):              # 600 ms: the join tones are over, the jitter buffers full
            for ext in values:
                self.send(ext, frames[ext])
            self.tick()
        for ext in values:
            last = self.received(ext)[-1]
            heard = level(g711.decode("PCMU", last))
            others = sum(v for e, v in sent_level.items() if e != ext)
            self.assertLess(abs(heard - others), others * 0.05, f"{ext} heard {heard}, the others sent {others}")

    def test_alone_hears_silence_and_join_tone(self) -> None:
        self.join("100")
        self.tick(0.5)
        payloads = self.received("100")
        self.assertTrue(payloads)
        self.assertTrue(all(p == bytes([g711.SILENCE["PCMU"]]) * 160 for p in payloads))
        self.join("200")
        self.tick(0.1)
        tone = [level(g711.decode("PCMU", p)) for p in self.received("100")]
        self.assertGreater(max(tone), 1000)          # the join tone

    def test_pcma_and_pcmu_in_one_room(self) -> None:
        self.join("100")
        got = self.dial("200", body=offer(self.host("200"), codecs="8 101"))
        (ok,) = [m for m in got if isinstance(m, Response) and m.status == 200]
        self.dialogs["200"].ack()
        self.ports["200"] = parse_sdp(ok.body).media[0].port
        self.assertEqual(parse_sdp(ok.body).media[0].formats, ["8", "101"])
        frame = g711.encode("PCMU", [3000] * 160)
        self.tick(0.5)
        self.received("200")
        for _ in range(10):
            self.send("100", frame)
            self.tick()
        last = self.received("200")[-1]
        self.assertLess(abs(level(g711.decode("PCMA", last)) - 3000), 150)

    def test_codecs_not_mixed_are_refused(self) -> None:
        got = self.dial("100", body=offer(self.host("100"), codecs="18 101"))    # G.729 only
        self.assertIn(488, statuses(got))
        self.assertIsNone(self.api.conference_room("800"))

    def join_g722(self, ext: str, number: str = "800") -> None:
        got = self.dial(ext, number, body=offer(self.host(ext), codecs="9 0 101"))
        (ok,) = [m for m in got if isinstance(m, Response) and m.status == 200]
        self.dialogs[ext].ack()
        media = parse_sdp(ok.body).media[0]
        self.ports[ext] = media.port
        self.assertEqual(media.formats, ["9", "101"])        # the caller's first codec the room mixes
        self.assertIn(b"a=rtpmap:9 G722/8000", ok.body)

    def test_g722_and_pcmu_hear_each_other_not_themselves(self) -> None:
        """A G.722 phone (1 kHz at 16 kHz) and a PCMU phone (500 Hz): each hears the other's tone, decoded
        as the phone would, and not its own; the G.722 one hears the join tone first."""
        self.join_g722("100")
        self.assertEqual(self.api.conference_room("800").participants[0].codec, "G722")
        self.join("200")
        encoder, decoder = g722.G722Encoder(), g722.G722Decoder()
        for n in range(40):
            self.send("100", encoder.encode(sine(1000.0, 320, 16000, 320 * n)), pt=9)
            self.send("200", g711.encode("PCMU", sine(500.0, 160, 8000, 160 * n)))
            self.tick()
            if n == 9:    # the join tone (200 ms: 600 then 900 Hz), with the PCMU phone's voice mixed in
                join = [s for p in self.received("100") for s in decoder.decode(p)]
                self.assertGreater(goertzel(join[-3200:-1600], 600.0, 16000), 3000)
        wide = [s for p in self.received("100") for s in decoder.decode(p)][-3200:]     # the last 200 ms
        narrow = [s for p in self.received("200") for s in g711.decode("PCMU", p)][-1600:]
        self.assertGreater(goertzel(wide, 500.0, 16000), 6000)
        self.assertLess(goertzel(wide, 1000.0, 16000), 200)
        self.assertGreater(goertzel(narrow, 1000.0, 8000), 6000)
        self.assertLess(goertzel(narrow, 500.0, 8000), 200)

    def test_sixth_caller_hears_the_room_is_full(self) -> None:
        for ext in EXTS[:5]:
            self.join(ext)
        got = self.dial("600")
        (final,) = [m for m in got if isinstance(m, Response) and m.status >= 300]
        self.assertEqual((final.status, final.reason), (486, "Conference Room Full"))
        self.assertEqual(len(self.api.conference_room("800").participants), 5)

    def test_small_room_full_at_its_own_size(self) -> None:
        self.join("100", "802")
        self.join("200", "802")
        self.assertIn(486, statuses(self.dial("300", "802")))

    def test_api_lists_rooms_and_participants(self) -> None:
        self.join("100")
        self.join("200")
        self.join("300", "802")
        rooms = {r.number: r for r in self.api.conference_rooms()}
        self.assertEqual(sorted(rooms), ["800", "802"])
        self.assertEqual([p.caller for p in rooms["800"].participants], ["100", "200"])
        self.assertEqual(rooms["800"].max_participants, 5)
        self.assertEqual(rooms["800"].participants[0].codec, "PCMU")
        self.leave("100")
        self.assertEqual([p.caller for p in self.api.conference_room("800").participants], ["200"])

    def test_room_disappears_when_empty(self) -> None:
        self.join("100")
        self.join("200")
        mixer = self.feature.rooms.mixer
        self.assertEqual([r.number for r in mixer.rooms()], ["800"])
        self.leave("100")
        self.leave("200")
        self.assertEqual(mixer.rooms(), ())
        self.assertEqual(self.api.conference_rooms(), [])
        self.assertEqual(self.pbx.leftovers().get("calls"), None)
        self.assertEqual(self.relay.call_count, 0)
        self.assertIsNone(mixer._loop, "the mixer's timer runs on with no room open")

    def test_silent_participant_stays_until_the_call_ends(self) -> None:
        """No media timeout in a room: a phone that sends nothing (muted, on hold) is not hung up."""
        self.join("100")
        self.join("200")
        self.pbx.advance(120, step=1)
        self.assertEqual(requests(self.phones["100"].inbox(), "BYE"), [])
        self.assertEqual(len(self.api.conference_room("800").participants), 2)

    def test_records_say_who_was_in_which_room_and_when(self) -> None:
        self.join("100")
        t_join = self.pbx.clock.seconds()
        self.tick(30)
        self.leave("100")
        record = self.pbx.records()[-1]
        data = json.loads(record.conference)
        self.assertEqual((data["room"], data["participant"], data["outcome"]), ("800", "100", "joined"))
        self.assertEqual(data["joined"], t_join)
        self.assertEqual(data["left"], t_join + 30)

    def test_reinvite_hold_is_answered_by_the_room(self) -> None:
        self.join("100")
        dlg = self.dialogs["100"]
        dlg.send_invite(offer(self.host("100")).replace(b"a=sendrecv", b"a=sendonly"))
        (ok,) = [m for m in self.phones["100"].inbox() if isinstance(m, Response) and m.status == 200]
        self.assertIn(b"a=recvonly", ok.body)
        self.assertEqual(parse_sdp(ok.body).media[0].port, self.ports["100"])
        dlg.ack()


class SecureParticipantTests(RoomTestCase):
    """Plain RTP, SDES-SRTP and DTLS-SRTP phones in one room: the room sees plain RTP from each, and
    each gets the mix in its own encryption (the caller's endpoint decrypts and encrypts)."""

    def setUp(self) -> None:
        super().setUp()
        self.policy.settings = MediaSettings(address=RELAY, ports=PORTS, relay="auto", timeout=30,
                                             sdes_over_insecure=True)

    def join_with(self, ext: str, body: bytes) -> Any:
        got = self.dial(ext, body=body)
        (ok,) = [m for m in got if isinstance(m, Response) and m.status == 200]
        self.dialogs[ext].ack()
        answer = parse_sdp(ok.body).media[0]
        self.ports[ext] = answer.port
        return answer

    def talk(self, levels: dict[str, int], ticks: int = 20) -> dict[str, float]:
        frames = {ext: g711.encode("PCMU", [v] * 160) for ext, v in levels.items()}
        for ext in levels:
            self.received(ext)
        heard: dict[str, float] = {}
        for _ in range(ticks):
            for ext in levels:
                self.send(ext, frames[ext])
            self.tick()
        for ext in levels:
            heard[ext] = level(g711.decode("PCMU", self.received(ext)[-1]))
        return heard

    def test_plain_and_sdes_in_one_room(self) -> None:
        self.join("100")
        key = new_key_salt()
        answer = self.join_with("200", sdp_for(self.host("200"), 4000, "sdes", key))
        self.assertEqual(answer.proto, "RTP/SAVP")
        ours = parse_crypto(answer.get_all("crypto")[0])
        phone = self.transforms["200"] = SdesTransform(key, ours.key_salt)
        phone.attach(lambda d: None)
        self.tick(0.5)
        heard = self.talk({"100": 1000, "200": 3000})
        self.assertLess(abs(heard["100"] - 3000), 150, heard)
        self.assertLess(abs(heard["200"] - 1000), 60, heard)

    def test_dtls_participant(self) -> None:
        if not DTLS_AVAILABLE:
            raise self.skipTest(NO_DTLS)
        self.join("100")
        cert = local_certificate()
        answer = self.join_with("300", sdp_for(self.host("300"), 4000, "dtls", fingerprint=cert.fingerprint))
        self.assertEqual(answer.setup, "active")
        phone = self.transforms["300"] = DtlsTransform("server", answer.fingerprint, self.pbx.clock,
                                                       certificate=cert)
        to_relay: list[bytes] = []
        phone.attach(to_relay.append)
        phone.start()
        port = self.ports["300"]
        for _ in range(10):                      # the handshake, through the fake network
            for d, _addr in self.net.take(port):
                if 20 <= d[0] <= 63:
                    to_relay.extend(phone.control(d, (RELAY, port))[0])
            for d in to_relay:
                self.net.deliver(port, d, (self.host("300"), 4000))
            to_relay.clear()
            if phone.ready():
                break
        self.assertTrue(phone.ready())
        self.tick(0.5)
        heard = self.talk({"100": 1000, "300": 3000})
        self.assertLess(abs(heard["100"] - 3000), 150, heard)
        self.assertLess(abs(heard["300"] - 1000), 60, heard)


class BrowserParticipantTests(RoomTestCase):
    """A browser's call (a BrowserLeg caller, Chromium's bundled DTLS-SRTP offer with ICE) joins a room
    like a phone: the room has nothing browser-specific; its answer is what Chrome needs."""

    def test_browser_joins_and_keys_the_pin(self) -> None:
        if not DTLS_AVAILABLE:
            raise self.skipTest(NO_DTLS)
        from minisip.webrtc.calls import BrowserCalls

        calls = BrowserCalls(self.pbx.core)
        peer = FakePeer()
        calls.start_call(peer, "c1", "100", "pw100", "801", chrome_offer())
        (early,) = [r for r in peer.reports if r[0] == "progress"]
        self.assertEqual(early[2], "early")
        answer = parse_sdp(early[3].encode())
        audio = answer.media[0]
        self.assertEqual((audio.proto, audio.formats, audio.mid, audio.setup), ("UDP/TLS/RTP/SAVPF", ["0", "126"],
                                                                                 "0", "active"))
        self.assertTrue(audio.rtcp_mux)
        self.assertIsNotNone(audio.fingerprint)
        self.assertIsNotNone(audio.ice_ufrag)
        self.assertEqual([g.mids for g in answer.groups], [("0",)])
        for digit in "1234":               # the page's keypad: DTMF into the call as INFO
            calls.dtmf(peer, "c1", digit, 100)
        self.assertEqual(peer.kinds()[-1], "answer")
        self.assertEqual([p.source for p in self.api.conference_room("801").participants], ["browser"])
        calls.hangup(peer, "c1", None, "bye")
        self.assertIsNone(self.api.conference_room("801"))
        self.assertEqual(self.relay.call_count, 0)


class LateOfferTests(RoomTestCase):
    """A caller whose INVITE has no SDP (some trunks): the room offers in its 200, the ACK answers."""

    def late_join(self, ext: str, number: str = "800") -> Response:
        got = self.dial(ext, number, body=b"")
        finals = [m for m in got if isinstance(m, Response) and m.status >= 200]
        if finals[0].status == 200:
            self.dialogs[ext].ack(offer(self.host(ext), codecs="8 101"))
            self.ports[ext] = parse_sdp(finals[0].body).media[0].port
        return finals[0]

    def test_late_offer_joins_at_the_ack(self) -> None:
        self.join("100")
        ok = self.late_join("200")
        self.assertEqual(ok.status, 200)
        room_offer = parse_sdp(ok.body).media[0]
        self.assertEqual((room_offer.address, room_offer.formats), (RELAY, ["0", "8", "9", "101"]))
        self.assertEqual([p.caller for p in self.api.conference_room("800").participants], ["100", "200"])
        self.assertEqual(self.api.conference_room("800").participants[1].codec, "PCMA")
        self.tick(0.5)
        self.received("200")
        frame = g711.encode("PCMU", [3000] * 160)
        for _ in range(10):
            self.send("100", frame)
            self.tick()
        self.assertLess(abs(level(g711.decode("PCMA", self.received("200")[-1])) - 3000), 150)

    def test_late_offer_needs_the_pin_in_the_dial_string(self) -> None:
        self.assertEqual(self.late_join("100", "801").status, 488)
        self.assertEqual(self.late_join("200", "*6*801*1234").status, 200)
        self.assertEqual(len(self.api.conference_room("801").participants), 1)

    def test_late_offer_answer_without_a_mixed_codec_ends_the_call(self) -> None:
        got = self.dial("100", body=b"")
        (ok,) = [m for m in got if isinstance(m, Response) and m.status == 200]
        self.dialogs["100"].ack(offer(self.host("100"), codecs="18"))
        self.assertTrue(requests(self.phones["100"].inbox(), "BYE"))
        self.assertIsNone(self.api.conference_room("800"))
        self.assertEqual(self.relay.call_count, 0)


class PinTests(RoomTestCase):
    def digits_rfc4733(self, ext: str, port: int, digits: str) -> None:
        for i, digit in enumerate(digits):
            event = "0123456789*#".index(digit)
            ts = 100_000 + i * 8000
            for end in (0, 0, 0x80, 0x80, 0x80):      # RFC 4733: several packets, the end one three times
                self.send(ext, struct.pack("!BBH", event, end | 10, 800), pt=101, ts=ts, port=port)
            self.tick()

    def digits_info(self, ext: str, digits: str) -> list[Response]:
        """Each digit in an INFO; every response the phone got meanwhile."""
        got = []
        for digit in digits:
            self.dialogs[ext].request("INFO", f"Signal={digit}\r\nDuration=160\r\n".encode(),
                                      "application/dtmf-relay")
            got += [m for m in self.phones[ext].inbox() if isinstance(m, Response)]
        return got

    def final(self, ext: str) -> Response:
        finals = [m for m in self.phones[ext].inbox() if isinstance(m, Response) and m.status >= 200
                  and m.cseq[1] == "INVITE"]
        self.assertEqual(len({(m.status, m.reason) for m in finals}), 1, finals)   # retransmissions at most
        return finals[0]

    def test_prompt_then_pin_by_rfc4733(self) -> None:
        got = self.dial("100", "801")
        self.assertNotIn(200, statuses(got))
        port = self.early_port(got)
        self.ports["100"] = port
        self.tick(0.1)
        prompt = [level(g711.decode("PCMU", p)) for p in self.received("100")]
        self.assertGreater(max(prompt), 1000)         # the caller hears the prompt tone
        self.digits_rfc4733("100", port, "1234")
        ok = self.final("100")
        self.assertEqual(ok.status, 200)
        self.assertEqual(parse_sdp(ok.body).media[0].port, port)
        self.assertEqual([p.caller for p in self.api.conference_room("801").participants], ["100"])

    def test_g722_caller_hears_the_prompt_enters_the_pin_and_hears_the_room(self) -> None:
        """The prompt, silence and then the mix reach a G.722 caller as one stream (one ADPCM state)."""
        got = self.dial("100", "801", body=offer(self.host("100"), codecs="9 101"))
        port = self.ports["100"] = self.early_port(got)
        decoder, encoder = g722.G722Decoder(), g722.G722Encoder()
        heard: list[int] = []
        for n in range(50):     # 1 s: the prompt (320 ms), then silence; the caller's audio goes nowhere
            self.send("100", encoder.encode([0] * 320), pt=9)
            if n == 5:          # a burst of oversized packets: at most 20 ms of it is decoded a tick
                for _ in range(20):
                    self.send("100", bytes(range(256)) * 5, pt=9)
            self.tick()
            heard += [s for p in self.received("100") for s in decoder.decode(p)]
        self.assertEqual(len(heard), 50 * 320)
        self.assertGreater(goertzel(heard[320:5120], 1000.0, 16000), 2000)
        self.assertLess(max(map(abs, heard[-8000:])), 16)
        self.digits_rfc4733("100", port, "1234")
        self.assertEqual(self.final("100").status, 200)
        self.join("200", "*6*801*1234")
        heard.clear()
        for n in range(30):
            self.send("200", g711.encode("PCMU", sine(500.0, 160, 8000, 160 * n)))
            self.tick()
            heard += [s for p in self.received("100") for s in decoder.decode(p)]
        self.assertGreater(goertzel(heard[-3200:], 500.0, 16000), 6000)
        self.assertLess(abs(sum(heard[-3200:]) / 3200), 50)       # no offset from a stream restarted in the room

    def test_pin_by_sip_info(self) -> None:
        self.early_port(self.dial("100", "801"))
        self.assertEqual([m.status for m in self.digits_info("100", "123")], [200, 200, 200])
        self.dialogs["100"].request("INFO", b"Signal=4\r\nDuration=160\r\n", "application/dtmf-relay")
        got = self.phones["100"].inbox()
        self.assertIn(200, [m.status for m in got if isinstance(m, Response) and m.cseq[1] == "INVITE"])
        self.assertEqual(len(self.api.conference_room("801").participants), 1)

    def test_three_wrong_pins_get_403(self) -> None:
        self.early_port(self.dial("100", "801"))
        self.digits_info("100", "9999" "1111")
        self.assertEqual(self.api.conference_room("801"), None)
        got = self.digits_info("100", "5555")
        self.assertEqual([m.status for m in got if m.cseq[1] == "INFO"], [200] * 4)
        final = [m for m in got if m.cseq[1] == "INVITE"]
        self.assertEqual([(m.status, m.reason) for m in final], [(403, "Wrong PIN")])
        data = json.loads(self.pbx.records()[-1].conference)
        self.assertEqual((data["room"], data["outcome"], data["joined"]), ("801", "wrong PIN", None))
        self.assertEqual(self.relay.call_count, 0)

    def test_two_wrong_then_right(self) -> None:
        port = self.early_port(self.dial("100", "801"))
        self.digits_rfc4733("100", port, "0000")
        self.digits_rfc4733("100", port, "1111")
        self.digits_rfc4733("100", port, "1234")
        self.assertEqual(self.final("100").status, 200)

    def test_no_pin_entered_times_out_with_403(self) -> None:
        self.early_port(self.dial("100", "801"))
        self.pbx.advance(11, step=0.5)
        final = self.final("100")
        self.assertEqual((final.status, final.reason), (403, "No PIN Entered"))

    def test_pin_in_the_dial_string(self) -> None:
        self.join("100", "*6*801*1234")
        self.assertEqual(len(self.api.conference_room("801").participants), 1)
        got = self.dial("200", "*6*801*4321")
        (final,) = [m for m in got if isinstance(m, Response) and m.status >= 300]
        self.assertEqual((final.status, final.reason), (403, "Wrong PIN"))

    def test_caller_hangs_up_during_pin_entry(self) -> None:
        self.early_port(self.dial("100", "801"))
        self.dialogs["100"].cancel()
        self.phones["100"].inbox()
        self.assertEqual(self.relay.call_count, 0)
        self.pbx.advance(30, step=1)   # no PIN timer left behind
        self.assertEqual(self.pbx.leftovers().get("calls"), None)
        self.assertEqual(json.loads(self.pbx.records()[-1].conference)["outcome"], "cancelled")


class StoreTests(SynchronousTestCase):
    def test_a_schema_4_database_upgrades_and_keeps_its_records(self) -> None:
        path = os.path.abspath(self.mktemp())
        store = SQLiteStore(path)
        store.add_call_record(CallRecord("a", "100", "800", 1.0, 2.0, 3.0, "normal", None,
                                         json.dumps({"room": "800"})))
        store.close()
        db = sqlite3.connect(path)
        db.execute("CREATE TABLE old AS SELECT id, call_id, caller, callee, start_time, answer_time, end_time, cause, "
                   "media FROM call_records")
        db.execute("DROP TABLE call_records")
        db.execute("ALTER TABLE old RENAME TO call_records")
        db.execute("UPDATE schema_version SET version = 4")
        db.commit()
        db.close()
        store = SQLiteStore(path)
        try:
            (record,) = store.call_records()
            self.assertEqual((record.call_id, record.conference), ("a", None))
            store.add_call_record(CallRecord("b", "100", "800", 4.0, 5.0, 6.0, "normal", None, '{"room": "800"}'))
            store.flush()
            self.assertEqual(store.call_records()[0].conference, '{"room": "800"}')
        finally:
            store.close()
        db = sqlite3.connect(path)
        self.assertEqual(db.execute("SELECT version FROM schema_version").fetchall(), [(SCHEMA_VERSION,)])
        db.close()


class ReloadTests(SynchronousTestCase):
    """A reload is all or nothing: a room number that became an extension refuses the whole new file."""

    def write(self, text: str) -> None:
        with open(self.path, "w") as f:
            f.write(f"[server]\ndomain = 127.0.0.1\ndatadir = {self.dir}/data\n"
                    "[sip]\nudp = 127.0.0.1:15060\ntcp =\ntls =\n[extension 100]\npassword = secret-100\n" + text)

    def setUp(self) -> None:
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        self.path = os.path.join(self.dir, "minisip.conf")
        self.write("[conference 800]\npin = 1234\n")
        self.plugins = [LoadedPlugin(factory, PLUGIN)]
        cfg = load_config(self.path, None, ("*",))
        self.server = Server(cfg, Reactor(), plugins=self.plugins,
                             plugin_configs=parse_plugin_configs(self.plugins, cfg))
        self.server.build()
        self.addCleanup(self.server.abandon)
        if self.server.media is not None:
            self.addCleanup(self.server.media.relay.close)
        self.rooms = self.server.features[factory.name].rooms

    def reload(self) -> None:
        cfg = load_config(self.path, None, ("*",))
        self.server.apply_config(cfg, parse_plugin_configs(self.plugins, cfg))

    def test_good_reload_applies(self) -> None:
        self.write("[conference 800]\npin = 5555\n[conference 801]\nmax_participants = 3\n")
        self.reload()
        self.assertEqual(self.rooms.settings["800"].pin, "5555")
        self.assertEqual(self.rooms.settings["801"].max_participants, 3)

    def test_clash_with_an_extension_refuses_everything(self) -> None:
        self.write("[conference 800]\npin = 5555\n[conference 100]\n")
        e = self.assertRaises(CoreConfigError, self.reload)
        self.assertEqual((e.file, e.section), (self.path, "conference 100"))
        self.assertEqual(self.rooms.settings["800"].pin, "1234")
        self.assertNotIn("100", self.rooms.settings)

    def test_bad_value_names_file_section_key(self) -> None:
        self.write("[conference 800]\nmax_participants = lots\n")
        e = self.assertRaises(CoreConfigError, self.reload)
        self.assertEqual((e.file, e.section, e.key), (self.path, "conference 800", "max_participants"))
        self.assertEqual(self.rooms.settings["800"].pin, "1234")
