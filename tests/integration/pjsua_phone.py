"""One PJSIP (pjsua2) softphone in its own process, driven by line commands on stdin; see pjsua.py.

pjsua2 wants one ``Endpoint`` per process, so every phone of a test runs this script as a child.
Commands are single lines (``call sip:101@127.0.0.1``, ``answer``, ``hold``, ...); every command gets
exactly one JSON line back ``{"reply": "<command>", "ok": true, ...}``, and what the phone notices on its
own (registration, call states, media, DTMF, REFER) comes as JSON lines ``{"event": ...}``. Anything
else the native library might print is not JSON and is ignored by the driver. The process runs pjsua
in this thread only (``threadCnt = 0``, ``mainThreadOnly``): ``libHandleEvents`` is called between
reads of stdin, so callbacks and commands never race.
"""

from __future__ import annotations

import json
import os
import select
import sys
from typing import Any

import pjsua2 as pj

TRANSPORTS = {"udp": pj.PJSIP_TRANSPORT_UDP, "tcp": pj.PJSIP_TRANSPORT_TCP, "tls": pj.PJSIP_TRANSPORT_TLS}
MEDIA_STATUS = {pj.PJSUA_CALL_MEDIA_NONE: "none", pj.PJSUA_CALL_MEDIA_ACTIVE: "active",
                pj.PJSUA_CALL_MEDIA_LOCAL_HOLD: "local_hold", pj.PJSUA_CALL_MEDIA_REMOTE_HOLD: "remote_hold",
                pj.PJSUA_CALL_MEDIA_ERROR: "error"}
DIRECTION = {pj.PJMEDIA_DIR_NONE: "inactive", pj.PJMEDIA_DIR_ENCODING: "sendonly",
             pj.PJMEDIA_DIR_DECODING: "recvonly", pj.PJMEDIA_DIR_ENCODING_DECODING: "sendrecv"}
DTMF_METHOD = {pj.PJSUA_DTMF_METHOD_RFC2833: "rfc2833", pj.PJSUA_DTMF_METHOD_SIP_INFO: "info"}


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


class Phone:
    """The endpoint, its one SIP transport, one account and the calls."""

    def __init__(self, opts: dict[str, Any]) -> None:
        self.opts = opts
        self.ep = pj.Endpoint()
        self.ep.libCreate()
        cfg = pj.EpConfig()
        cfg.uaConfig.threadCnt = 0
        cfg.uaConfig.mainThreadOnly = True
        cfg.uaConfig.maxCalls = 4
        cfg.uaConfig.userAgent = "pjsua2-test"
        cfg.logConfig.level = 5
        cfg.logConfig.consoleLevel = 0  # stdout carries the JSON lines only
        cfg.logConfig.filename = opts["log"]
        cfg.medConfig.noVad = True  # keep sending RTP during silence: packet counts stay meaningful
        cfg.medConfig.threadCnt = 0
        self.ep.libInit(cfg)
        tcfg = pj.TransportConfig()
        tcfg.port = opts["sip_port"]
        tcfg.boundAddress = "127.0.0.1"
        tcfg.publicAddress = "127.0.0.1"
        transport = opts["transport"]
        if transport == "tls":
            tcfg.tlsConfig.CaListFile = opts["cafile"]
            tcfg.tlsConfig.verifyServer = True
            tcfg.tlsConfig.method = pj.PJSIP_TLSV1_2_METHOD
        self.transport_id = self.ep.transportCreate(TRANSPORTS[transport], tcfg)
        self.ep.libStart()
        self.ep.audDevManager().setNullDev()  # no sound card: the null device clocks the bridge
        for codec in self.ep.codecEnum2():
            keep = codec.codecId.startswith(("PCMU/8000", "PCMA/8000"))
            self.ep.codecSetPriority(codec.codecId, 200 if keep else 0)
        # A 1 kHz tone, looped, is the microphone of every call.
        self.tone = pj.ToneGenerator()
        self.tone.createToneGenerator()
        desc = pj.ToneDesc()
        desc.freq1, desc.freq2, desc.on_msec, desc.off_msec, desc.volume = 1000, 0, 1000, 0, 0
        tones = pj.ToneDescVector()
        tones.append(desc)
        self.tone.play(tones, True)
        self.calls: list[PhoneCall] = []
        self.answered: set[str] = set()  # client transactions whose final response was reported
        self.account = PhoneAccount(self)
        self.running = True

    # --- helpers used by the callbacks ---

    def current(self, arg: str | None = None) -> "PhoneCall":
        """The call named by id, or the latest call not yet disconnected."""
        if arg:
            for c in self.calls:
                if c.getId() == int(arg):
                    return c
            raise LookupError(f"no call {arg}")
        live = [c for c in self.calls if not c.ended]
        if not live:
            raise LookupError("no call")
        return live[-1]

    # --- commands ---

    def handle(self, line: str) -> dict[str, Any]:
        name, _, rest = line.strip().partition(" ")
        args = rest.split()
        if name == "call":
            call = PhoneCall(self, self.account)
            prm = pj.CallOpParam(True)
            call.makeCall(args[0], prm)
            self.calls.append(call)
            return {"call": call.getId()}
        if name == "answer":
            call = self.current(args[1] if len(args) > 1 else None)
            prm = pj.CallOpParam()
            prm.statusCode = int(args[0]) if args else 200
            call.answer(prm)
            return {"call": call.getId()}
        if name == "hangup":
            call = self.current(args[0] if args else None)
            call.hangup(pj.CallOpParam())
            return {"call": call.getId()}
        if name == "hold":
            call = self.current(args[0] if args else None)
            call.setHold(pj.CallOpParam(True))
            return {"call": call.getId()}
        if name == "unhold":
            call = self.current(args[0] if args else None)
            prm = pj.CallOpParam(True)
            prm.opt.flag = pj.PJSUA_CALL_UNHOLD
            call.reinvite(prm)
            return {"call": call.getId()}
        if name == "dtmf":
            digits, method = args[0], args[1] if len(args) > 1 else "rfc2833"
            call = self.current(args[2] if len(args) > 2 else None)
            prm = pj.CallSendDtmfParam()
            prm.digits = digits
            prm.method = pj.PJSUA_DTMF_METHOD_SIP_INFO if method == "info" else pj.PJSUA_DTMF_METHOD_RFC2833
            call.sendDtmf(prm)
            return {"call": call.getId()}
        if name == "xfer":
            call = self.current(args[1] if len(args) > 1 else None)
            call.xfer(args[0], pj.CallOpParam(True))
            return {"call": call.getId()}
        if name == "stats":
            call = self.current(args[0] if args else None)
            return call.stats()
        if name == "info":
            call = self.current(args[0] if args else None)
            return call.describe()
        if name == "reginfo":
            info = self.account.getInfo()
            return {"active": info.regIsActive, "code": info.regStatus, "expires": info.regExpiresSec}
        if name == "quit":
            self.running = False
            return {}
        raise ValueError(f"unknown command {name!r}")

    def run(self) -> None:
        buf = b""
        fd = sys.stdin.fileno()
        os.set_blocking(fd, False)
        while self.running:
            ready, _, _ = select.select([fd], [], [], 0)
            if ready:
                data = os.read(fd, 65536)
                if not data:
                    break  # the driver went away: end the phone
                buf += data
                while b"\n" in buf:
                    raw, buf = buf.split(b"\n", 1)
                    line = raw.decode().strip()
                    if not line:
                        continue
                    try:
                        reply = {"reply": line.split()[0], "ok": True, **self.handle(line)}
                    except Exception as e:  # a failed command is reported, the phone carries on
                        reply = {"reply": line.split()[0], "ok": False, "error": f"{type(e).__name__}: {e}"}
                    emit(reply)
            self.ep.libHandleEvents(20)
        self.shutdown()

    def shutdown(self) -> None:
        try:
            self.ep.hangupAllCalls()
            for _ in range(10):
                self.ep.libHandleEvents(20)
        finally:
            # Free every pjsua2 object while the library is up: destructors that run after libDestroy
            # (at interpreter exit) abort in pj_thread_this().
            self.calls = []
            self.account.shutdown()
            del self.account
            self.tone.stop()
            del self.tone
            self.ep.libDestroy()


class PhoneAccount(pj.Account):
    def __init__(self, phone: Phone) -> None:
        super().__init__()
        self.phone = phone
        o = phone.opts
        server = f"sip:127.0.0.1:{o['server_port']};transport={o['transport']}"
        cfg = pj.AccountConfig()
        cfg.idUri = f"sip:{o['user']}@127.0.0.1"
        cfg.regConfig.registrarUri = server
        cfg.regConfig.timeoutSec = 60
        cfg.sipConfig.proxies.append(server + ";lr")
        cfg.sipConfig.authCreds.append(pj.AuthCredInfo("digest", "*", o["user"], 0, o["password"]))
        cfg.sipConfig.transportId = phone.transport_id
        cfg.mediaConfig.transportConfig.port = o["rtp_port"]
        cfg.mediaConfig.transportConfig.portRange = 20
        cfg.mediaConfig.transportConfig.boundAddress = "127.0.0.1"
        cfg.mediaConfig.transportConfig.publicAddress = "127.0.0.1"
        # No re-INVITE of its own after an answer naming several codecs ("lock codec"): it would cross
        # the test's own re-INVITEs (glare, 491 both ways).
        cfg.mediaConfig.lockCodecEnabled = False
        cfg.natConfig.iceEnabled = False
        cfg.natConfig.contactRewriteUse = 0  # loopback only: never rewrite the Contact from Via received
        cfg.natConfig.viaRewriteUse = 0
        cfg.natConfig.sdpNatRewriteUse = 0
        self.create(cfg)

    def onRegState(self, prm: Any) -> None:
        info = self.getInfo()
        emit({"event": "reg", "code": prm.code, "active": info.regIsActive, "reason": prm.reason})

    def onIncomingCall(self, prm: Any) -> None:
        call = PhoneCall(self.phone, self, prm.callId)
        self.phone.calls.append(call)
        info = call.getInfo()
        emit({"event": "incoming", "call": call.getId(), "from": info.remoteUri})
        if self.phone.opts.get("autoanswer"):
            ring = pj.CallOpParam()
            ring.statusCode = 180
            call.answer(ring)
            ok = pj.CallOpParam()
            ok.statusCode = 200
            call.answer(ok)


class PhoneCall(pj.Call):
    def __init__(self, phone: Phone, account: pj.Account, call_id: int = pj.PJSUA_INVALID_ID) -> None:
        super().__init__(account, call_id)
        self.phone = phone
        self.account = account
        self.ended = False
        self.last_stats: dict[str, Any] = {}

    def stats(self) -> dict[str, Any]:
        """RTP packets sent and received on the audio stream (the last ones seen once it is gone)."""
        if self.ended:
            return dict(self.last_stats)
        info = self.getInfo()  # keep it referenced: ``info.media`` points into it (SWIG)
        for mi in info.media:
            if mi.type == pj.PJMEDIA_TYPE_AUDIO:
                st = self.getStreamStat(mi.index)
                self.last_stats = {"tx": st.rtcp.txStat.pkt, "rx": st.rtcp.rxStat.pkt}
        return dict(self.last_stats)

    def describe(self) -> dict[str, Any]:
        info = self.getInfo()
        media = [{"status": MEDIA_STATUS.get(mi.status, str(mi.status)), "dir": DIRECTION.get(mi.dir, str(mi.dir))}
                 for mi in info.media if mi.type == pj.PJMEDIA_TYPE_AUDIO]
        return {"call": info.id, "state": info.stateText, "code": info.lastStatusCode, "media": media}

    def onCallState(self, prm: Any) -> None:
        info = self.getInfo()
        if info.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self.ended = True
        emit({"event": "state", "call": info.id, "state": info.stateText, "code": info.lastStatusCode,
              "reason": info.lastReason, "remote": info.remoteUri})

    def onCallMediaState(self, prm: Any) -> None:
        info = self.getInfo()
        for mi in info.media:
            if mi.type != pj.PJMEDIA_TYPE_AUDIO:
                continue
            if mi.status in (pj.PJSUA_CALL_MEDIA_ACTIVE, pj.PJSUA_CALL_MEDIA_REMOTE_HOLD):
                self.phone.tone.startTransmit(self.getAudioMedia(mi.index))
            emit({"event": "media", "call": info.id, "status": MEDIA_STATUS.get(mi.status, str(mi.status)),
                  "dir": DIRECTION.get(mi.dir, str(mi.dir))})

    def onStreamDestroyed(self, prm: Any) -> None:
        try:
            st = self.getStreamStat(prm.streamIdx)
            self.last_stats = {"tx": st.rtcp.txStat.pkt, "rx": st.rtcp.rxStat.pkt}
        except Exception:
            pass
        emit({"event": "stream_end", "call": self.getId(), **self.last_stats})

    def onDtmfDigit(self, prm: Any) -> None:
        emit({"event": "dtmf", "call": self.getId(), "digit": prm.digit,
              "method": DTMF_METHOD.get(prm.method, str(prm.method))})

    def onCallTransferRequest(self, prm: Any) -> None:
        # The REFER arrived; accepting it (202) makes pjsua call the target: that new call needs its
        # own Call object, or pjsua2 has nothing to report its events to.
        emit({"event": "xfer_request", "call": self.getId(), "to": prm.dstUri, "code": prm.statusCode})
        new = PhoneCall(self.phone, self.account)
        self.phone.calls.append(new)
        prm.newCall = new

    def onCallTransferStatus(self, prm: Any) -> None:
        emit({"event": "xfer_status", "call": self.getId(), "code": prm.statusCode, "reason": prm.reason,
              "final": prm.finalNotify})

    def onCallTsxState(self, prm: Any) -> None:
        # Report each in-dialog request received (REFER, INFO, NOTIFY, re-INVITE...) and the final
        # response to each one sent, once per transaction.
        e = prm.e
        try:
            if e.type != pj.PJSIP_EVENT_TSX_STATE:
                return
            tsx = e.body.tsxState.tsx
            key = str(tsx.pjTransaction)
            if tsx.role == pj.PJSIP_ROLE_UAS and tsx.state == pj.PJSIP_TSX_STATE_TRYING:
                emit({"event": "request", "call": self.getId(), "method": tsx.method})
            elif tsx.role == pj.PJSIP_ROLE_UAC and tsx.statusCode >= 200 and key not in self.phone.answered \
                    and tsx.state in (pj.PJSIP_TSX_STATE_COMPLETED, pj.PJSIP_TSX_STATE_TERMINATED):
                self.phone.answered.add(key)
                emit({"event": "response", "call": self.getId(), "method": tsx.method, "code": tsx.statusCode})
        except Exception as exc:  # a missing field must not kill the phone
            emit({"event": "tsx_error", "error": str(exc)})


def main() -> None:
    opts = json.loads(sys.argv[1])
    phone = Phone(opts)
    emit({"event": "started", "sip_port": opts["sip_port"]})
    phone.run()
    sys.stdout.flush()
    os._exit(0)  # skip interpreter teardown: the SWIG wrappers must not run destructors any more


if __name__ == "__main__":
    main()
