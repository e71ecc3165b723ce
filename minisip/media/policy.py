"""The media policy behind the call layer's seam: anchor a call's audio on the relay and bridge any pair
of plain RTP, SDES-SRTP (RFC 4568) and DTLS-SRTP (RFC 5763/5764) legs.

Every offer and answer between two legs crosses ``offer``/``answer`` (IMediaPolicy). For each pair of
legs the policy decides once whether the relay is needed (``[media] relay``: always, never, or auto:
when the legs speak different encryption, a leg is not SIP, or a phone's SDP address is not where its
signalling comes from: NAT). When it is, each leg gets a relay endpoint, the SDP each side receives is
rewritten to point at the relay with that side's own encryption (our SDES key, or our DTLS fingerprint
and setup, plus ICE-lite credentials where the peer uses ICE), and the two endpoints are bridged. Only
the first audio stream is relayed; other streams are refused (port 0) toward the other side.

SDES keys never go in SDP sent over UDP or TCP unless ``sdes_over_insecure`` allows it; a leg whose
configured encryption is ``required`` and that cannot encrypt fails with 488.

Forked calls: the forks of one call share one relay decision (see ``_forks``). The caller keeps one
endpoint for every fork; each answer, a 183 with SDP as well as the 200, bridges it to the answering
fork's endpoint, replacing the bridge before: the latest 183 with SDP wins, the caller hears one fork
at a time, and the others' packets are counted and dropped. A fork that ends gives its ports back
(``leg_gone``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable

from twisted.logger import Logger
from zope.interface import implementer

from minisip.core.media import MediaRefused
from minisip.interfaces import IMediaPolicy
from minisip.media.compat import DTLS_AVAILABLE
from minisip.media.dtls import DtlsTransform, SetupError, choose_setup, local_certificate, parse_fingerprint
from minisip.media.ports import PoolExhausted
from minisip.media.relay import MediaRelay, PlainTransform, latch_any_first_default
from minisip.media.srtp import AES_CM_128_HMAC_SHA1_80, SdesTransform, crypto_line, new_key_salt, select_crypto
from minisip.media.stun import IceLite, new_ice_credentials
from minisip.sip.sdp import MediaDescription, SDPError, SessionDescription, parse_sdp

log = Logger(namespace="minisip.media")

RTP, SDES, DTLS = "rtp", "sdes", "dtls"
PROTOS = {RTP: "RTP/AVP", SDES: "RTP/SAVP", DTLS: "UDP/TLS/RTP/SAVP"}
ENCRYPTIONS = ("auto", "none", "sdes", "dtls", "required")


@dataclass(frozen=True)
class MediaSettings:
    """``[media]`` of the configuration."""

    address: str = "127.0.0.1"        # the relay's address, put in SDP
    ports: tuple[int, int] = (20000, 29999)
    relay: str = "auto"                # always | auto | never
    timeout: float = 60.0
    sdes_over_insecure: bool = False


@dataclass
class _Leg:
    """What the policy keeps of one leg of a relayed call."""

    endpoint: Any
    mode: str = RTP                            # what we speak to this leg
    key: bytes = b""                           # our SDES master key and salt toward it
    tag: int = 1
    suite: str = AES_CM_128_HMAC_SHA1_80.name
    setup: str = "actpass"                     # our a=setup toward it
    ice: tuple[str, str] | None = None         # our ICE-lite (ufrag, pwd) toward it, when it uses ICE
    rtcp_mux: bool = False
    transform_key: tuple[Any, ...] = ()        # what the current transform was made from
    offered: SessionDescription | None = None  # its last offer (to answer in its own shape)
    pending: Callable[[], Any] | None = None   # installs its DTLS client transforms when our answer goes out


@dataclass
class _Call:
    legs: dict[int, _Leg] = field(default_factory=dict)
    direct: set[tuple[int, int]] = field(default_factory=set)   # leg pairs whose media go direct
    armed: bool = False
    plain_for: set[str] = field(default_factory=set)           # destinations that refused our SRTP offer


def _mode_of(m: MediaDescription) -> str:
    proto = m.proto.upper()
    if "TLS" in proto or (m.fingerprint is not None and "SAVP" in proto):
        return DTLS
    if "SAVP" in proto or m.crypto:
        return SDES
    return RTP


def _audio(sdp: SessionDescription) -> MediaDescription | None:
    for m in sdp.media:
        if m.kind == "audio" and m.port != 0:
            return m
    return None


def _transport(leg: Any) -> str:
    target = getattr(leg, "target", None)
    return getattr(target, "transport", "udp") if target is not None else "udp"


def _signalling_host(leg: Any) -> str | None:
    target = getattr(leg, "target", None)
    return getattr(target, "host", None) if target is not None else None


@implementer(IMediaPolicy)
class RelayMediaPolicy:
    """Anchors media on a MediaRelay where the legs need it (see the module docstring)."""

    def __init__(self, relay: MediaRelay, settings: MediaSettings, clock: Any,
                 encryption_of: Callable[[Any, Any], str] | None = None,
                 hangup: Callable[[str, str], None] | None = None) -> None:
        self.relay = relay
        self.settings = settings
        self.clock = clock
        self.encryption_of = encryption_of or (lambda call, leg: "auto")
        self.hangup = hangup
        self.calls: dict[str, _Call] = {}
        relay.on_media_timeout = self._media_timeout

    # -- IMediaPolicy ------------------------------------------------------------------------------------
    def offer(self, call: Any, from_leg: Any, to_leg: Any, sdp: bytes) -> bytes:
        if self._plain_direct(call, from_leg, to_leg, sdp):
            return sdp
        state = self.calls.setdefault(call.id, _Call())
        pair = (id(from_leg), id(to_leg))
        offer = self._parse(sdp)
        audio = _audio(offer)
        if audio is None:
            return sdp                             # no audio to anchor (hold with port 0, video only...)
        source_mode = _mode_of(audio)
        known = state.legs.get(id(to_leg))
        # a re-offer keeps what each leg already speaks; a new leg gets what its configuration says
        # (plain RTP for a destination that refused our SRTP offer once in this call)
        if known is not None:
            target_mode = known.mode
        elif _destination_key(to_leg) in state.plain_for:
            target_mode = RTP
        else:
            target_mode = self._target_mode(call, to_leg, source_mode)
        self._check_required(call, from_leg, source_mode)
        if _mixes(to_leg):
            return self._offer_to_mixer(call, state, from_leg, to_leg, offer, audio, source_mode, sdp)
        if _mixes(from_leg):      # a late-offer caller: the room offers, through the caller's endpoint
            dst = self._leg(call, state, to_leg, target_mode)
            from_leg.attach_media(dst.endpoint)
            return self._rewrite(offer, audio, dst, target_mode, offering=True)
        relayed = id(from_leg) in state.legs or known is not None
        if not relayed and all(self._direct(call, from_leg, leg, audio, source_mode,
                                            target_mode if leg is to_leg else self._target_mode(call, leg, source_mode))
                               for leg in _forks(call, from_leg, to_leg)):
            state.direct.add(pair)
            return sdp
        state.direct.discard(pair)
        src = self._leg(call, state, from_leg, source_mode)
        self._configure(src, from_leg, audio, source_mode, offer=True)
        src.offered = offer
        dst = self._leg(call, state, to_leg, target_mode)
        if state.armed:
            # on hold a phone may send nothing at all: no media timeout until the call is resumed
            if audio.direction in ("sendonly", "recvonly", "inactive") or audio.on_hold:
                self.relay.disarm_timeout(call.id)
            else:
                self.relay.arm_timeout(call.id)
        return self._rewrite(offer, audio, dst, target_mode, offering=True)

    def answer(self, call: Any, from_leg: Any, to_leg: Any, sdp: bytes) -> bytes:
        """Relay toward ``to_leg`` what ``from_leg`` answered. Early answers (183 with SDP) of several
        forks each re-bridge the caller's endpoint: the latest one is heard, never two at once."""
        state = self.calls.get(call.id)
        if state is not None and _mixes(from_leg):
            return self._answer_from_mixer(state, to_leg, sdp)
        if state is not None and _mixes(to_leg):
            return self._answer_to_mixer(state, from_leg, sdp)
        if state is None or (id(to_leg), id(from_leg)) in state.direct:
            return sdp
        ans_state = state.legs.get(id(from_leg))
        off_state = state.legs.get(id(to_leg))
        if ans_state is None or off_state is None:
            return sdp
        answer = self._parse(sdp)
        audio = _audio(answer)
        if audio is None or not audio.formats:
            raise MediaRefused(488, "Not Acceptable Here")   # no common codec: that leg fails
        mode = _mode_of(audio)
        if mode != ans_state.mode:
            raise MediaRefused(488, "Not Acceptable Here")   # answered another profile than offered
        self._configure(ans_state, from_leg, audio, mode, offer=False)
        self.relay.bridge(off_state.endpoint, ans_state.endpoint)
        self._start_dtls_client(off_state)
        if not state.armed and getattr(call, "state", "") in ("ringing", "answered"):
            state.armed = True
            self.relay.arm_timeout(call.id)
        offered = off_state.offered
        return self._rewrite(answer, audio, off_state, off_state.mode, offering=False, offer=offered)

    # -- legs whose media end here (a conference room): the other leg's endpoint feeds them -------------
    def _offer_to_mixer(self, call: Any, state: _Call, from_leg: Any, to_leg: Any, offer: SessionDescription,
                        audio: MediaDescription, mode: str, sdp: bytes) -> bytes:
        """``to_leg`` mixes (``attach_media``): no endpoint of its own; the offerer's endpoint hands it
        plain RTP (whatever the offerer's encryption) and sends what it gives back. It gets the offer as
        is, for the codecs; its answer comes back through ``_answer_from_mixer``. No media timeout: a
        silent participant stays until the call ends."""
        src = self._leg(call, state, from_leg, mode)
        self._configure(src, from_leg, audio, mode, offer=True)
        src.offered = offer
        to_leg.attach_media(src.endpoint)
        return sdp

    def _answer_from_mixer(self, state: _Call, to_leg: Any, sdp: bytes) -> bytes:
        """The mixing leg's answer, rewritten for the offerer as coming from the offerer's endpoint."""
        mine = state.legs.get(id(to_leg))
        if mine is None:
            return sdp
        answer = self._parse(sdp)
        audio = _audio(answer)
        if audio is None or not audio.formats:
            raise MediaRefused(488, "Not Acceptable Here")
        self._start_dtls_client(mine)
        return self._rewrite(answer, audio, mine, mine.mode, offering=False, offer=mine.offered)

    def _answer_to_mixer(self, state: _Call, from_leg: Any, sdp: bytes) -> bytes:
        """A late-offer caller's answer (in its ACK) to the mixing leg's offer: its endpoint takes it."""
        mine = state.legs.get(id(from_leg))
        if mine is None:
            return sdp
        audio = _audio(self._parse(sdp))
        if audio is None or not audio.formats or _mode_of(audio) != mine.mode:
            raise MediaRefused(488, "Not Acceptable Here")
        self._configure(mine, from_leg, audio, mine.mode, offer=False)
        return sdp

    def retry(self, call: Any, leg: Any) -> bool:
        """``leg`` refused our offer with 488. When we offered it SRTP on our own initiative
        (media_encryption auto: SDES because it is reached over TLS), try again with plain RTP: the
        phone may not do SRTP. True when a new offer to its destination will differ."""
        state = self.calls.get(call.id)
        mine = state.legs.get(id(leg)) if state is not None else None
        key = _destination_key(leg)
        if mine is None or key is None or key in state.plain_for or mine.mode == RTP:  # type: ignore[union-attr]
            return False
        if self.encryption_of(call, leg) != "auto" or getattr(leg, "kind", "sip") != "sip":
            return False
        state.plain_for.add(key)  # type: ignore[union-attr]
        return True

    def leg_gone(self, call: Any, leg: Any) -> None:
        state = self.calls.get(call.id)
        if state is None:
            return
        gone = state.legs.pop(id(leg), None)
        if gone is not None:
            gone.endpoint.close()

    def call_ended(self, call: Any) -> None:
        if self.calls.pop(call.id, None) is None:
            return
        stats = self.relay.close_call(call.id)
        if stats:
            call.media_stats = json.dumps(stats, sort_keys=True, default=str)
            for s in stats:
                log.info("call {id} media {label}: {pin} packets in, {pout} out, {spoofed} spoofed dropped, "
                         "{auth} SRTP failures", id=call.id, label=s.get("label"), pin=s.get("packets_in"),
                         pout=s.get("packets_out"), spoofed=s.get("dropped_spoofed"),
                         auth=s.get("srtp_auth_failures", s.get("dropped_unprotect")))

    # -- decisions ----------------------------------------------------------------------------------------
    def _parse(self, sdp: bytes) -> SessionDescription:
        try:
            return parse_sdp(sdp)
        except SDPError as e:
            log.info("unusable SDP refused: {e}", e=str(e))
            raise MediaRefused(488, "Not Acceptable Here") from None

    def _secure_signalling(self, leg: Any) -> bool:
        return _transport(leg) == "tls" or getattr(leg, "kind", "sip") != "sip"

    def _target_mode(self, call: Any, to_leg: Any, source_mode: str) -> str:
        """The encryption we offer ``to_leg``: its configuration, what its transport allows (and what
        this pyOpenSSL can do: DTLS needs 22.0 or later)."""
        mode = self._wanted_mode(call, to_leg)
        if mode == DTLS and not DTLS_AVAILABLE:
            return SDES if self._secure_signalling(to_leg) or self.settings.sdes_over_insecure else RTP
        return mode

    def _wanted_mode(self, call: Any, to_leg: Any) -> str:
        if getattr(to_leg, "kind", "sip") == "browser":
            return DTLS
        wanted = self.encryption_of(call, to_leg)
        sdes_ok = self._secure_signalling(to_leg) or self.settings.sdes_over_insecure
        if wanted == "none":
            return RTP
        if wanted == "dtls":
            return DTLS
        if wanted in ("sdes", "required"):
            if sdes_ok:
                return SDES
            if wanted == "required":
                return DTLS
            return RTP
        # auto: SDES to a leg reached over TLS, plain RTP otherwise
        return SDES if self._secure_signalling(to_leg) else RTP

    def _check_required(self, call: Any, leg: Any, mode: str) -> None:
        if mode == DTLS and not DTLS_AVAILABLE:
            log.warn("DTLS-SRTP offered: refused, this pyOpenSSL has no DTLS")  # noqa: G010
            raise MediaRefused(488, "Not Acceptable Here")
        if mode == RTP and self.encryption_of(call, leg) == "required":
            raise MediaRefused(488, "Not Acceptable Here")
        if mode == SDES and not (self._secure_signalling(leg) or self.settings.sdes_over_insecure):
            # its key came over plain signalling, and ours would go back the same way
            log.warn("SDES-SRTP offered over {t}: refused ([media] sdes_over_insecure = no)",  # noqa: G010
                     t=_transport(leg))
            raise MediaRefused(488, "Not Acceptable Here")

    def _plain_direct(self, call: Any, from_leg: Any, to_leg: Any, sdp: bytes) -> bool:
        """The common case without parsing (every call pays for this check): relay auto, a new pair of
        SIP legs, plain RTP offered, the offerer's SDP address where its signalling comes from, and
        nothing configured that would make us offer encryption to the other leg."""
        if self.settings.relay != "auto" or call.id in self.calls:
            return False
        forks = _forks(call, from_leg, to_leg)
        if getattr(from_leg, "kind", "sip") != "sip" or any(getattr(leg, "kind", "sip") != "sip" for leg in forks):
            return False
        if b"RTP/AVP " not in sdp or b"SAVP" in sdp or b"a=crypto" in sdp or b"a=fingerprint" in sdp:
            return False
        host = _signalling_host(from_leg)
        if host is None or sdp.count(b"\nc=") != 1 or sdp.count(b"\nm=") != 1:
            return False
        start = sdp.index(b"\nc=") + 3
        end = sdp.find(b"\n", start)
        fields = sdp[start:end].split()
        if len(fields) != 3 or fields[2].decode("ascii", "replace") != host:
            return False
        if self.encryption_of(call, from_leg) == "required":
            return False
        return all(self._target_mode(call, leg, RTP) == RTP for leg in forks)

    def _direct(self, call: Any, from_leg: Any, to_leg: Any, audio: MediaDescription, source_mode: str,
                target_mode: str) -> bool:
        relay = self.settings.relay
        if relay == "never":
            return True
        if relay == "always":
            return False
        if source_mode != target_mode or source_mode == DTLS:
            return False
        if getattr(from_leg, "kind", "sip") != "sip" or getattr(to_leg, "kind", "sip") != "sip":
            return False
        host = _signalling_host(from_leg)
        return host is None or audio.address in (None, host)

    # -- legs and endpoints -------------------------------------------------------------------------------
    def _leg(self, call: Any, state: _Call, leg: Any, mode: str) -> _Leg:
        mine = state.legs.get(id(leg))
        if mine is None:
            try:
                endpoint = self.relay.open_endpoint(call.id, getattr(leg, "description", "leg"))
            except PoolExhausted:
                raise MediaRefused(503, "Service Unavailable") from None
            mine = state.legs[id(leg)] = _Leg(endpoint)
        if mine.mode != mode or (mode == SDES and not mine.key):
            mine.mode = mode
            mine.key = new_key_salt() if mode == SDES else b""
        return mine

    def _configure(self, mine: _Leg, leg: Any, audio: MediaDescription, mode: str, offer: bool) -> None:
        """Point the leg's endpoint at what its SDP says, with the transform for its encryption."""
        endpoint = mine.endpoint
        address = audio.address
        remote = (address, audio.port) if address and address not in ("0.0.0.0", "::") and audio.port else None
        mine.rtcp_mux = audio.rtcp_mux
        endpoint.set_rtcp_mux(audio.rtcp_mux)
        rtcp = audio.rtcp
        rtcp_addr = (rtcp.address or address, rtcp.port) if rtcp is not None and remote is not None else None
        endpoint.set_remote(remote, rtcp_addr,
                            latch_any_first=latch_any_first_default(address, _signalling_host(leg)))
        ice = None
        if audio.ice_ufrag and audio.ice_pwd:
            if mine.ice is None:
                mine.ice = new_ice_credentials()
            ice = IceLite(mine.ice[0], mine.ice[1], audio.ice_ufrag)
        if mode == SDES:
            crypto, reasons = select_crypto(audio.get_all("crypto"))
            if crypto is None:
                log.info("no usable a=crypto ({why}): refused", why="; ".join(reasons) or "none")
                raise MediaRefused(488, "Not Acceptable Here")
            if offer:
                mine.tag, mine.suite = crypto.tag, crypto.suite.name
            key = (SDES, crypto.key_salt, mine.key, crypto.suite.name)
            if key != mine.transform_key:
                endpoint.set_transform(SdesTransform(mine.key, crypto.key_salt, crypto.suite, ice=ice))
                mine.transform_key = key
                endpoint.set_rtcp_transform(None)
        elif mode == DTLS:
            fp = audio.fingerprint
            if fp is None:
                raise MediaRefused(488, "Not Acceptable Here")
            try:
                setup, role = choose_setup(audio.setup, we_are_answerer=offer)
                remote_fp = parse_fingerprint(f"{fp[0]} {fp[1]}")
            except (SetupError, ValueError) as e:
                log.info("DTLS-SRTP refused: {e}", e=str(e))
                raise MediaRefused(488, "Not Acceptable Here") from None
            if offer:
                mine.setup = setup
            key = (DTLS, remote_fp, role)
            # without rtcp-mux RTCP has a DTLS association of its own, on the RTCP ports (RFC 5764 4.1)
            rtcp_own = not audio.rtcp_mux
            if key != mine.transform_key:
                mine.transform_key = key

                def install() -> None:
                    endpoint.set_transform(DtlsTransform(role, remote_fp, self.clock, ice=ice))
                    endpoint.set_rtcp_transform(DtlsTransform(role, remote_fp, self.clock, ice=ice)
                                                if rtcp_own else None)
                if offer and role == "client":
                    # our ClientHello must not reach the phone before our answer: see _start_dtls_client
                    mine.pending = install
                else:
                    install()
            elif mine.pending is None and rtcp_own != (endpoint.rtcp_transform is not None):
                endpoint.set_rtcp_transform(DtlsTransform(role, remote_fp, self.clock, ice=ice) if rtcp_own else None)
        else:
            key = (RTP,)
            if key != mine.transform_key:
                endpoint.set_transform(PlainTransform())
                mine.transform_key = key
                endpoint.set_rtcp_transform(None)

    def _start_dtls_client(self, mine: _Leg) -> None:
        """Our answer is about to go to a phone whose offer made us its DTLS client: start the handshake
        now, not when the offer came. Phones such as baresip ignore DTLS until they have the answer, and
        while the callee rang the retransmissions backed off (after 30 s they gave up: no audio at all);
        restarting a handshake instead races with phones (Linphone) that did answer the early ClientHello
        ("bad signature"). Until then the endpoint keeps its transform (a new endpoint is not bridged yet)."""
        pending, mine.pending = mine.pending, None
        if pending is not None and not mine.endpoint.closed:
            pending()

    # -- SDP toward a leg -------------------------------------------------------------------------------------
    def _rewrite(self, sdp: SessionDescription, audio: MediaDescription, mine: _Leg, mode: str, *, offering: bool,
                 offer: SessionDescription | None = None) -> bytes:
        out = sdp.copy()
        out.remove_crypto_and_ice()
        address = self.settings.address
        out.set_connection(address)
        local = mine.endpoint.local
        index = next(i for i, m in enumerate(sdp.media) if m is audio)
        for i, m in enumerate(out.media):
            if i != index:
                m.port = 0                      # only the first audio stream is relayed
        target = out.media[index]
        target.remove_crypto_and_ice()
        target.set_connection(address, local[1])
        target.proto = (offer is not None and _offer_proto(offer, mode)) or PROTOS[mode]
        if mode == SDES:
            target.add_attribute("crypto", crypto_line(mine.tag, mine.suite, mine.key))
        elif mode == DTLS:
            target.fingerprint = ("sha-256", local_certificate().fingerprint)
            target.setup = "actpass" if offering else mine.setup
        if mine.ice is not None or (offering and mode == DTLS):
            if mine.ice is None:
                mine.ice = new_ice_credentials()
            out.ice_lite = True
            target.ice_ufrag, target.ice_pwd = mine.ice
            target.add_attribute("candidate", f"1 1 UDP 2130706431 {address} {local[1]} typ host")
        if mine.rtcp_mux or (offering and mode == DTLS):
            target.rtcp_mux = True
        elif local[2] and local[2] != local[1] + 1:
            target.rtcp = (local[2], None)
        if offer is not None and not offering:
            _answer_mids(out, offer)
        out.bump_version()
        return out.to_bytes()

    # -- timeouts -------------------------------------------------------------------------------------------
    def _media_timeout(self, call_id: str) -> None:
        log.warn("call {id}: no media for {t:g}s: hanging up (media timeout)", id=call_id,  # noqa: G010
                 t=self.settings.timeout)
        if self.hangup is not None:
            self.hangup(call_id, "media timeout")


def _mixes(leg: Any) -> bool:
    """A leg whose media end in the server (a conference room): it takes the other leg's endpoint."""
    return callable(getattr(leg, "attach_media", None))


def _forks(call: Any, from_leg: Any, to_leg: Any) -> list[Any]:
    """The legs that get this same offer: every fork still ringing when the caller's offer goes to one of
    them, else ``to_leg`` alone. Forks share one decision (relayed or direct) because a fork talking to
    the caller directly while another is relayed would mix their early media at the caller's phone."""
    forks = getattr(call, "b_legs", None)
    if forks and from_leg is getattr(call, "a_leg", None) and getattr(call, "state", "") == "ringing" \
            and to_leg in forks:
        return list(forks)
    return [to_leg]


def _destination_key(leg: Any) -> str | None:
    dest = getattr(leg, "destination", None)
    if dest is None:
        return None
    where = getattr(dest, "uri", None) or getattr(dest, "target", "")
    return f"{getattr(dest, 'kind', '')} {where} {getattr(dest, 'addr', '')}"


def _answer_mids(answer: SessionDescription, offer: SessionDescription) -> None:
    """Give the answer the offer's a=mid lines and its BUNDLE groups (RFC 9143), less the streams the
    answer refuses: browsers refuse an answer to a bundled offer without them, and the other side's own
    answer (a SIP phone's) has none."""
    accepted = []
    for out_m, off_m in zip(answer.media, offer.media):
        mid = off_m.mid
        if mid is None:
            continue
        out_m.mid = mid
        if out_m.port != 0:
            accepted.append(mid)
    bundles = [(g.semantics, tuple(m for m in g.mids if m in accepted)) for g in offer.groups
               if g.semantics.upper() == "BUNDLE"]
    if bundles:
        others = [(g.semantics, g.mids) for g in answer.groups if g.semantics.upper() != "BUNDLE"]
        answer.groups = others + [(sem, mids) for sem, mids in bundles if mids]


def _offer_proto(offer: SessionDescription, mode: str) -> str | None:
    """The offer's own profile name for ``mode`` (RTP/SAVPF stays SAVPF in the answer)."""
    audio = _audio(offer)
    if audio is None or _mode_of(audio) != mode:
        return None
    return audio.proto
