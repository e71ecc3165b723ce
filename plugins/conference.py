"""Conference rooms: a number that puts every caller in one room, each hearing the others mixed.

::

    [conference 800]
    pin = 1234                 ; optional: callers enter it by DTMF (or dial *6*800*1234)
    max_participants = 5       ; default 5; raise it here for a bigger room (at most 32)
    alone_tone = no            ; yes: a participant alone hears a soft beep every 4 s, else silence

Callers reach the room by dialling its number, or ``*6*<room>*<pin>`` with the PIN in the dial string.
With a PIN and none dialled, the caller hears a short prompt (early media) and has three tries to key
it (RFC 4733 telephone-events, or SIP INFO application/dtmf-relay); a wrong PIN ends the call with
403, a full room answers 486 "Conference Room Full". Phones, trunk callers and browsers join the same
way: the room is a leg of the call (``LegDestination('conference', '800')``), its audio comes from the
media relay (rooms need ``[media] relay`` auto or always). Joins and leaves are logged and kept in the
call records (``conference`` column); ``ServerAPI.conference_rooms()`` lists rooms and participants.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from twisted.application.service import Service
from zope.interface import implementer

from minisip.api import (
    CONTINUE,
    ConferenceRooms,
    ConfigError,
    ConfigValues,
    LegDestination,
    Reject,
    RoomSettings,
    Route,
    RouteDecision,
    ServerAPI,
)
from minisip.interfaces import API_VERSION, ICallRouter, IFeature, IFeatureFactory

KEYS = ("pin", "max_participants", "alone_tone")
DEFAULT_MAX_PARTICIPANTS = 5
MAX_PARTICIPANTS_LIMIT = 32      # the mix's tables grow with the room size; a bigger room is a bridge
ROUTER_PRIORITY = 40             # before hunting groups (50) and trunks
RING_TIME = 180.0                # the time a caller has to enter the PIN (three tries) before 480
_NUMBER_RE = re.compile(r"^[0-9A-Za-z\-_.]+$")
_DIAL_RE = re.compile(r"^\*6\*([0-9A-Za-z\-_.]+)(?:\*([0-9]+))?#?$")


@dataclass(frozen=True)
class ConferenceConfig:
    """Every room, by number."""

    rooms: Mapping[str, RoomSettings] = field(default_factory=dict)


def _parse_room(section: str, raw: Mapping[str, str]) -> RoomSettings:
    words = section.split()
    if len(words) != 2 or not _NUMBER_RE.match(words[1]):
        raise ConfigError("expected [conference NUMBER], e.g. [conference 800]", section=section)
    number = words[1]
    values = ConfigValues(section, raw)
    values.check_keys(KEYS)
    pin = values.text("pin")
    if pin is not None and not (pin.isascii() and pin.isdigit() and len(pin) <= 16):
        raise values.error("pin", f"{pin!r} is not a PIN: 1 to 16 digits 0-9")
    size = values.integer("max_participants", DEFAULT_MAX_PARTICIPANTS, minimum=2)
    if size > MAX_PARTICIPANTS_LIMIT:
        raise values.error("max_participants", f"{size} is more than {MAX_PARTICIPANTS_LIMIT} (one room's mix)")
    return RoomSettings(number, pin, size, values.boolean("alone_tone", False), section)


def parse_conference_config(sections: Mapping[str, Mapping[str, str]]) -> ConferenceConfig:
    rooms: dict[str, RoomSettings] = {}
    for section, values in sorted(sections.items()):
        room = _parse_room(section, values)
        if room.number in rooms:
            raise ConfigError(f"room {room.number} is already defined by [{rooms[room.number].section}]",
                              section=section)
        rooms[room.number] = room
    return ConferenceConfig(rooms)


def check_against_directory(config: ConferenceConfig, is_extension: Callable[[str], bool]) -> None:
    """What parse_config cannot see: a room number that is also an extension."""
    for room in config.rooms.values():
        if is_extension(room.number):
            raise ConfigError(f"room number {room.number} is also an extension ([extension {room.number}])",
                              section=room.section)


class _Timers(Service):
    """Stops the mixer's and the PIN prompt's timers at shutdown."""

    def __init__(self, rooms: ConferenceRooms) -> None:
        self.rooms = rooms

    def stopService(self) -> None:  # noqa: N802
        super().stopService()
        self.rooms.stop()


@implementer(IFeature, ICallRouter)
class ConferenceFeature:
    """The router of every room number and the leg factory of kind 'conference'."""

    def __init__(self, api: ServerAPI, config: ConferenceConfig) -> None:
        self.api = api
        self.rooms = api.conference_service()
        self.rooms.configure(config.rooms)

    def register(self, hooks: Any) -> None:
        hooks.add_leg_factory("conference", self.rooms)
        hooks.add_router(self, priority=ROUTER_PRIORITY)
        hooks.add_service(_Timers(self.rooms))
        self._log_rooms()

    def check(self, config: ConferenceConfig, is_extension: Callable[[str], bool]) -> None:
        """Before a reload applies anything (a ConfigError refuses the whole reload)."""
        check_against_directory(config, is_extension)

    def reconfigure(self, config: ConferenceConfig) -> None:
        self.rooms.configure(config.rooms)
        self._log_rooms()

    def _log_rooms(self) -> None:
        for room in self.rooms.settings.values():
            self.api.log.info("conference room {room}: up to {n} participants, {pin}", room=room.number,
                              n=room.max_participants, pin="PIN required" if room.pin else "no PIN")

    # ICallRouter
    def route(self, call: Any) -> RouteDecision:
        callee = call.callee
        settings = self.rooms.settings.get(callee)
        pin = None
        if settings is None:
            match = _DIAL_RE.match(callee or "")
            if match is None:
                return CONTINUE
            settings = self.rooms.settings.get(match.group(1))
            if settings is None:
                return Reject(404, "Not Found")
            pin = match.group(2)
        params = (("pin", pin),) if pin else ()
        return Route((LegDestination("conference", settings.number, params=params),), ring_time=RING_TIME,
                     callee=settings.number)


@implementer(IFeatureFactory)
class ConferenceFactory:
    name = "minisip.conference"
    api_version = API_VERSION
    description = "conference rooms: callers mixed by the server, optional PIN"
    config_prefixes = ("conference",)

    def parse_config(self, sections: Mapping[str, Mapping[str, str]]) -> ConferenceConfig:
        return parse_conference_config(sections)

    def make_feature(self, api: ServerAPI, config: ConferenceConfig | None) -> ConferenceFeature:
        config = config if config is not None else ConferenceConfig()
        check_against_directory(config, api.extension_exists)
        return ConferenceFeature(api, config)


factory = ConferenceFactory()
