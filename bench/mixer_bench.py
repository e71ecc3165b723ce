"""Conference mixing: how many participants one minisip process mixes with the tick's lateness p99 < 2 ms.

Rooms of 5 (``--room-size``), G.711 (participants alternate PCMU and PCMA), every participant talking
all the time (each sends a different tone: the full N-1 mix every tick, the worst case), 20 ms packets.

The mix runs on numpy when it is importable (Debian: python3-numpy; ``--no-numpy`` for the pure path):
run the script with /usr/bin/python3 or the venv's python to compare.

1. Mix only, in this process: ``minisip.media.mixer.Mixer`` on a Clock with ``--cpu-participants``
   (200) participants, no sockets: CPU per participant per tick of the mix (decode, sum, clip,
   encode, the send callback) and of the jitter buffer's receive.
2. The ladder, over UDP on 127.0.0.1: a server process (Twisted epoll reactor, the mixer on it, one UDP
   socket per participant, read through one epoll set and written with the socket's own sendto as
   minisip's media relay does; ``--reader twisted`` for Twisted's per-port reading) and a Python
   generator process (one socket per participant,
   a 172-byte RTP packet every 20 ms each, spread over 20 phases of 1 ms; it counts the mixed packets
   coming back by their RTP sequence numbers). A step passes when the tick's lateness p99 < 2 ms, no
   mixed packet is lost and no incoming frame is late, lost or dropped in a jitter buffer.
   Steps rise until one fails (a failing step is retried once), then one bisection step.

    python3 bench/mixer_bench.py                       # about 2 minutes
    python3 bench/mixer_bench.py --ladder 100,200,300 --duration 5 --json /tmp/mixer.json
    python3 bench/mixer_bench.py --media-json /tmp/media.json   # print the relay's per-packet cost too
    python3 bench/mixer_bench.py --nice -10            # as root on a shared machine: our processes first

3. ``--server minisip``: the ladder against the real server instead (twistd minisip with
   plugins/conference.py, ``[media] relay = auto``): the generator is also a small SIP phone bank, one
   extension per participant, each calling its room (800, 801, ... ``--room-size`` per room) with digest
   auth from its own RTP socket; the media cross the relay endpoints into the rooms' mixer and back. A
   bench-only plugin in the server writes the mixer's tick lateness, its jitter-buffer counters and the
   process CPU every second; the same pass rule applies.

    python3 bench/mixer_bench.py --server minisip --ladder 100,200,300 --duration 5

Every line shows the other processes' CPU ("others"): on the shared 2-core machine a step near 1 core
of others means little. The server and the generator are started here, each in its own session, and
each is ended by its PID.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import resource
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))
sys.path.insert(0, str(REPO_DIR))

from media_bench import Child, machine_ticks, niceness, raise_fd_limit  # noqa: E402  (shared with the media benchmark)

HOST = "127.0.0.1"
PERIOD = 0.020
SLOTS = 20
LATENESS_LIMIT = 0.002
RTP = struct.Struct("!BBHII")


def codec_of(index: int) -> str:
    return "PCMU" if index % 2 == 0 else "PCMA"


def payload_of(index: int) -> bytes:
    """A 20 ms frame of a tone particular to participant ``index`` (so the mix is a real sum)."""
    from minisip.media import g711

    frequency = 300.0 + 37.0 * (index % 50)
    samples = [round(8000 * math.sin(2 * math.pi * frequency * n / 8000)) for n in range(160)]
    return g711.encode(codec_of(index), samples)


def rusage_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# -- 1. the mix alone, on a Clock --------------------------------------------------------------------

def mix_only(participants: int, room_size: int, ticks: int, use_numpy: bool) -> dict[str, float]:
    """CPU of Mixer.tick and of receive_rtp per participant per tick, no sockets, no reactor."""
    from twisted.internet.task import Clock

    from minisip.media.mixer import Mixer

    mixer = Mixer(Clock(), use_numpy=use_numpy)
    sent = [0]

    def send(payload: bytes) -> None:
        sent[0] += 1

    members = []
    for i in range(participants):
        room = mixer.room(f"{800 + i // room_size}", max_participants=room_size, tones=False)
        members.append((room.join(f"p{i}", codec_of(i), send), payload_of(i)))
    for seq in range(2):  # the jitter buffers' prefill
        for participant, payload in members:
            participant.receive_rtp(payload, seq, seq * 160)
    receive = mix = 0.0
    gc.collect()
    for tick in range(ticks):
        seq = tick + 2
        t0 = time.process_time()
        for participant, payload in members:
            participant.receive_rtp(payload, seq, seq * 160)
        t1 = time.process_time()
        mixer.tick()
        t2 = time.process_time()
        receive += t1 - t0
        mix += t2 - t1
    mixer.stop()
    scale = 1e6 / (participants * ticks)
    return {"participants": participants, "ticks": ticks, "mix_us": mix * scale, "receive_us": receive * scale,
            "sent": sent[0]}


# -- 2. the server (role "serve") --------------------------------------------------------------------

def serve_main(participants: int, room_size: int, reader: str = "shared", profile: str | None = None,
               use_numpy: bool = True) -> None:
    """Mixer rooms on the epoll reactor, one UDP socket per participant; JSON lines on stdin/stdout."""
    from minisip.app import GC_THRESHOLDS

    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    raise_fd_limit()
    from twisted.internet import epollreactor

    epollreactor.install()
    from twisted.internet import reactor, stdio
    from twisted.internet.protocol import DatagramProtocol
    from twisted.protocols.basic import LineReceiver

    from minisip.media.mixer import Mixer

    mixer = Mixer(reactor, use_numpy=use_numpy)
    mix_cpu = [0.0]
    plain_tick = mixer.tick

    def timed_tick() -> None:
        start = time.process_time()
        plain_tick()
        mix_cpu[0] += time.process_time() - start

    mixer.tick = timed_tick  # type: ignore[method-assign]

    class Leg(DatagramProtocol):
        """What a room leg does with plain RTP: header off on the way in, header on the way out."""

        def __init__(self, index: int) -> None:
            self.address: Any = None
            self.seq = 0
            self.timestamp = 0
            self.ssrc = 0x10000 + index
            self.payload_type = 0 if codec_of(index) == "PCMU" else 8
            self.sent = 0
            self.send_errors = 0
            self.participant: Any = None
            self.sendto: Any = None

        def startProtocol(self) -> None:
            self.sendto = self.transport.socket.sendto  # as the relay sends: the socket's own sendto

        def datagramReceived(self, data: bytes, addr: Any) -> None:
            if self.address is None:
                self.address = addr
            if len(data) > 12:
                self.participant.receive_rtp(data[12:], (data[2] << 8) | data[3], 0)

        def send(self, payload: bytes) -> None:
            if self.address is None:
                return
            self.seq = (self.seq + 1) & 0xFFFF
            self.timestamp = (self.timestamp + 160) & 0xFFFFFFFF
            try:
                self.sendto(RTP.pack(0x80, self.payload_type, self.seq, self.timestamp, self.ssrc) + payload,
                            self.address)
            except OSError:
                self.send_errors += 1
                return
            self.sent += 1

    class SharedReader:
        """All participant sockets in one epoll set read as one reactor reader, the way minisip's media
        relay reads its sockets (one datagram per ready socket per round)."""

        def __init__(self) -> None:
            self.epoll = select.epoll()
            self.ports: dict[int, tuple[Any, Leg]] = {}
            reactor.addReader(self)

        def fileno(self) -> int:
            return self.epoll.fileno()

        def logPrefix(self) -> str:
            return "mixer-bench"

        def add(self, port: Any, leg: Leg) -> None:
            port.stopReading()
            fd = port.socket.fileno()
            self.epoll.register(fd, select.EPOLLIN)
            self.ports[fd] = (port.socket.recvfrom, leg)

        def doRead(self) -> None:
            for _ in range(16):
                ready = self.epoll.poll(0, 512)
                for fd, _ in ready:
                    recvfrom, leg = self.ports[fd]
                    try:
                        data, addr = recvfrom(2048)
                    except OSError:
                        continue
                    leg.datagramReceived(data, addr)
                if len(ready) < 512:
                    break

        def connectionLost(self, reason: Any) -> None:
            pass

    shared = SharedReader() if reader == "shared" else None
    legs: list[Leg] = []
    ports = []
    for i in range(participants):
        leg = Leg(i)
        port = reactor.listenUDP(0, leg, interface=HOST, maxPacketSize=2048)
        if shared is not None:
            shared.add(port, leg)
        room = mixer.room(f"{800 + i // room_size}", max_participants=room_size, tones=False)
        leg.participant = room.join(f"p{i}", codec_of(i), leg.send)
        legs.append(leg)
        ports.append(port.getHost().port)

    def snapshot() -> dict[str, float]:
        totals: dict[str, float] = {"cpu": rusage_cpu(), "mix_cpu": mix_cpu[0], "ticks": mixer.ticks,
                                    "missed": mixer.missed, "sent": sum(leg.sent for leg in legs),
                                    "send_errors": sum(leg.send_errors for leg in legs)}
        for leg in legs:
            stats = leg.participant.jitter.stats()
            for key in ("received", "played", "concealed", "underruns", "late", "duplicates", "overflow"):
                totals[key] = totals.get(key, 0) + getattr(stats, key)
        return totals

    marks: dict[str, Any] = {}

    class Control(LineReceiver):
        delimiter = b"\n"

        def lineReceived(self, line: bytes) -> None:
            op = json.loads(line)["op"]
            if op == "mark":
                mixer.lateness.clear()
                marks["start"] = snapshot()
                marks["time"] = time.monotonic()
            elif op == "report":
                now, start = snapshot(), marks["start"]
                result: dict[str, Any] = {key: now[key] - start[key] for key in now}
                result["elapsed"] = time.monotonic() - marks["time"]
                lateness = sorted(mixer.lateness)
                from minisip.media.mixer import percentile

                result.update(lateness_p50=percentile(lateness, 0.5), lateness_p99=percentile(lateness, 0.99),
                              lateness_max=lateness[-1] if lateness else 0.0, lateness_samples=len(lateness))
                self.reply(result)
            elif op == "quit":
                reactor.stop()

        def reply(self, obj: Any) -> None:
            self.sendLine(json.dumps(obj).encode())

        def connectionLost(self, reason: Any) -> None:
            if reactor.running:
                reactor.stop()

    control = Control()
    stdio.StandardIO(control)
    reactor.callWhenRunning(control.reply, {"ports": ports})
    if profile:
        import cProfile

        cProfile.runctx("reactor.run()", globals(), {"reactor": reactor}, profile)
    else:
        reactor.run()


# -- the generator (role "generate") ------------------------------------------------------------------

def generate_main() -> None:
    """Reads {"ports", "warmup", "duration"} from stdin, sends and counts, prints one JSON result line."""
    raise_fd_limit()
    command = json.loads(sys.stdin.readline())
    ports: list[int] = command["ports"]
    sockets = [_rtp_socket() for _ in ports]
    result = media_loop(sockets, [(HOST, port) for port in ports], float(command["warmup"]),
                        float(command["duration"]))
    print(json.dumps(result), flush=True)


def _rtp_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sock.bind((HOST, 0))
    sock.setblocking(False)
    return sock


def media_loop(sockets: list[socket.socket], dests: list[tuple[str, int]], warmup: float,
               duration: float) -> dict[str, Any]:
    """Every participant sends its tone every 20 ms (20 phases of 1 ms) and counts the mix coming back
    (by RTP sequence numbers) during ``duration`` after ``warmup``."""
    count = len(sockets)
    poller = select.epoll()
    by_fd: dict[int, int] = {}
    for i, sock in enumerate(sockets):
        poller.register(sock.fileno(), select.EPOLLIN)
        by_fd[sock.fileno()] = i
    payloads = [payload_of(i) for i in range(count)]
    pts = [0 if codec_of(i) == "PCMU" else 8 for i in range(count)]
    phases = [[i for i in range(count) if i % SLOTS == slot] for slot in range(SLOTS)]
    first = [-1] * count
    last = [-1] * count
    got = [0] * count
    seqs = [0] * count
    send_lateness: list[float] = []
    sent = 0
    start = time.monotonic()
    window_start, window_end = start + warmup, start + warmup + duration
    wall_start = time.time() + warmup
    cpu0 = time.process_time()
    tick = 0
    while True:
        due = start + tick * PERIOD / SLOTS
        if due >= window_end:
            break
        # Sleep, then drain without waiting: a process blocked in epoll on these sockets would be woken
        # by every mixed packet, and on loopback the server's sendto pays for that wake-up.
        wait = due - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        for fd, _ in poller.poll(0):
            i = by_fd[fd]
            sock = sockets[i]
            while True:
                try:
                    data = sock.recv(2048)
                except BlockingIOError:
                    break
                if window_start <= time.monotonic() < window_end:
                    seq = (data[2] << 8) | data[3]
                    if first[i] < 0:
                        first[i] = seq
                    last[i] = seq
                    got[i] += 1
        now = time.monotonic()
        if window_start <= now:
            send_lateness.append(now - due)
        for i in phases[tick % SLOTS]:
            seqs[i] = (seqs[i] + 1) & 0xFFFF
            try:
                sockets[i].sendto(RTP.pack(0x80, pts[i], seqs[i], seqs[i] * 160, 0x20000 + i) + payloads[i],
                                  dests[i])
                sent += 1
            except BlockingIOError:
                pass
        tick += 1
    cpu = time.process_time() - cpu0
    poller.close()
    lost = sum(((last[i] - first[i]) & 0xFFFF) + 1 - got[i] for i in range(count) if got[i])   # seq may wrap
    silent = sum(1 for i in range(count) if not got[i])
    send_lateness.sort()
    p99 = send_lateness[int(0.99 * (len(send_lateness) - 1))] if send_lateness else 0.0
    return {"sent": sent, "received": sum(got), "lost": lost, "silent_participants": silent,
            "generator_cpu": cpu, "generator_send_lateness_p99": p99,
            "window": [wall_start, wall_start + duration]}


# -- 3. the real server: a bench plugin reporting the mixer, and a bank of SIP phones -------------------

STATS_PLUGIN = '''"""Bench only: the conference mixer's tick lateness, jitter buffers and the process CPU, every second."""
import json
import resource
import time

from twisted.application.service import Service
from twisted.internet.task import LoopingCall
from zope.interface import implementer

from minisip.interfaces import API_VERSION, IFeature, IFeatureFactory


class _Dump(Service):
    def __init__(self, api, path):
        self.api, self.path, self.loop = api, path, None

    def startService(self):
        super().startService()
        self.loop = LoopingCall(self.dump)
        self.loop.clock = self.api.clock
        self.loop.start(1.0, now=False)

    def stopService(self):
        super().stopService()
        if self.loop is not None and self.loop.running:
            self.loop.stop()

    def dump(self):
        # bench only: the mixer is reached through the core's leg factories (no plugin API gives its timer)
        rooms = self.api._core.hooks.leg_factories.get("conference")
        if rooms is None:
            return
        mixer = rooms.mixer
        lateness = list(mixer.lateness)
        mixer.lateness.clear()
        totals = dict.fromkeys(("received", "played", "concealed", "underruns", "late", "duplicates", "overflow"), 0)
        participants = 0
        for room in mixer.rooms():
            for member in room:
                participants += 1
                stats = member.jitter.stats()
                for key in totals:
                    totals[key] += getattr(stats, key)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        line = {"t": time.time(), "cpu": usage.ru_utime + usage.ru_stime, "ticks": mixer.ticks,
                "missed": mixer.missed, "participants": participants, "lateness": lateness, **totals}
        with open(self.path, "a") as f:
            f.write(json.dumps(line) + "\\n")


@implementer(IFeature)
class _Feature:
    def __init__(self, api, path):
        self.api, self.path = api, path

    def register(self, hooks):
        hooks.add_service(_Dump(self.api, self.path))

    def reconfigure(self, config):
        pass


@implementer(IFeatureFactory)
class _Factory:
    name = "bench.mixerstats"
    api_version = API_VERSION
    description = "bench only: mixer statistics to a file"
    config_prefixes = ("mixerstats",)

    def parse_config(self, sections):
        return sections.get("mixerstats", {}).get("file")

    def make_feature(self, api, config):
        return _Feature(api, config)


factory = _Factory()
'''


def server_config(tmp: Path, n: int, room_size: int, sip_port: int, low_port: int, stats: Path) -> Path:
    """A minisip configuration: one extension per participant (2000, 2001...), rooms 800... of room_size."""
    plugins = tmp / "plugins"
    plugins.mkdir(exist_ok=True)
    link = plugins / "conference.py"
    if not link.exists():
        link.symlink_to(REPO_DIR / "plugins" / "conference.py")
    (plugins / "mixerstats.py").write_text(STATS_PLUGIN)
    lines = ["[server]", "domain = 127.0.0.1", f"datadir = {tmp / 'data'}",
             "[sip]", f"udp = 127.0.0.1:{sip_port}", "tcp =", "tls =",
             "[media]", "relay = auto", f"ports = {low_port}-{low_port + 4 * n + 99}", "timeout = 60",
             "[plugins]", f"directories = {plugins}", "[mixerstats]", f"file = {stats}"]
    for room in range((n + room_size - 1) // room_size):
        lines += [f"[conference {800 + room}]", f"max_participants = {room_size}"]
    for i in range(n):
        lines += [f"[extension {2000 + i}]", f"password = p{2000 + i}"]
    path = tmp / "minisip.conf"
    path.write_text("\n".join(lines) + "\n")
    return path


class PhoneBank:
    """Calls into rooms from one SIP socket: INVITE, the 407 answered with digest, ACK; BYE at the end."""

    def __init__(self, sip_port: int) -> None:
        self.server = (HOST, sip_port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        self.sock.bind((HOST, 0))
        self.port = self.sock.getsockname()[1]
        self.calls: list[dict[str, Any]] = []

    def _send(self, method: str, uri: str, call: dict[str, Any], cseq: int, body: bytes = b"",
              extra: tuple[str, ...] = (), branch: str | None = None, to_tag: str | None = None) -> str:
        branch = branch or "z9hG4bK" + os.urandom(6).hex()
        to = f"<sip:{call['room']}@127.0.0.1>" + (f";tag={to_tag}" if to_tag else "")
        lines = [f"{method} {uri} SIP/2.0", f"Via: SIP/2.0/UDP {HOST}:{self.port};branch={branch};rport",
                 "Max-Forwards: 70", f"From: <sip:{call['ext']}@127.0.0.1>;tag={call['tag']}", f"To: {to}",
                 f"Call-ID: {call['call_id']}", f"CSeq: {cseq} {method}",
                 f"Contact: <sip:{call['ext']}@{HOST}:{self.port}>", *extra]
        if body:
            lines.append("Content-Type: application/sdp")
        lines.append(f"Content-Length: {len(body)}")
        self.sock.sendto(("\r\n".join(lines) + "\r\n\r\n").encode() + body, self.server)
        return branch

    def _response(self, call_id: str, cseq: int, method: str, timeout: float) -> Any:
        from minisip.sip.message import Response, parse_message

        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"no answer to {method} of call {call_id} within {timeout:.0f} s")
            self.sock.settimeout(left)
            try:
                data, _ = self.sock.recvfrom(65535)
            except socket.timeout:
                continue
            msg = parse_message(data)
            if isinstance(msg, Response) and msg.call_id == call_id and msg.cseq == (cseq, method) \
                    and msg.status >= 200:
                return msg

    def join(self, ext: str, room: str, rtp_port: int, timeout: float = 10.0) -> tuple[str, int]:
        """Call ``room`` as ``ext``; the relay's (host, port) for this participant's RTP."""
        from minisip.sip.auth import build_authorization
        from minisip.sip.sdp import parse_sdp

        call = {"ext": ext, "room": room, "tag": os.urandom(4).hex(), "call_id": os.urandom(8).hex() + "@bench"}
        uri = f"sip:{room}@127.0.0.1:{self.server[1]}"
        codec = 0 if codec_of(len(self.calls)) == "PCMU" else 8
        body = ("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
                f"m=audio {rtp_port} RTP/AVP {codec}\r\na=ptime:20\r\na=sendrecv\r\n").encode()
        branch = self._send("INVITE", uri, call, 1, body)
        resp = self._response(call["call_id"], 1, "INVITE", timeout)
        if resp.status == 407:
            self._send("ACK", uri, call, 1, branch=branch, to_tag=resp.to_tag)
            authz = build_authorization(resp.get("proxy-authenticate") or "", "INVITE", uri, ext, f"p{ext}")
            self._send("INVITE", uri, call, 2, body, extra=(f"Proxy-Authorization: {authz}",))
            resp = self._response(call["call_id"], 2, "INVITE", timeout)
        if resp.status != 200:
            raise RuntimeError(f"{ext} calling {room}: {resp.status} {resp.reason}")
        call["cseq"] = resp.cseq[0]
        call["to_tag"] = resp.to_tag
        call["target"] = str(resp.contacts()[0].uri)
        self._send("ACK", call["target"], call, call["cseq"], to_tag=call["to_tag"])
        self.calls.append(call)
        audio = parse_sdp(resp.body).media[0]
        return (audio.address or HOST, audio.port)

    def hang_up(self) -> None:
        for call in self.calls:
            self._send("BYE", call["target"], call, call["cseq"] + 1, to_tag=call["to_tag"])
        self.sock.close()


def generate_sip_main() -> None:
    """Reads {"sip_port", "count", "room_size", "warmup", "duration"}: joins every participant to its room,
    says {"joined": seconds}, then runs the media loop and prints its result."""
    raise_fd_limit()
    command = json.loads(sys.stdin.readline())
    count, size = int(command["count"]), int(command["room_size"])
    bank = PhoneBank(int(command["sip_port"]))
    sockets = [_rtp_socket() for _ in range(count)]
    t0 = time.monotonic()
    dests = [bank.join(str(2000 + i), str(800 + i // size), sockets[i].getsockname()[1]) for i in range(count)]
    print(json.dumps({"joined": time.monotonic() - t0}), flush=True)
    result = media_loop(sockets, dests, float(command["warmup"]), float(command["duration"]))
    bank.hang_up()
    print(json.dumps(result), flush=True)


# -- orchestration ------------------------------------------------------------------------------------

def run_step(args: argparse.Namespace, n: int, tmp: Path) -> dict[str, Any]:
    python = sys.executable
    me = str(Path(__file__).resolve())
    server_argv = [python, me, "--role", "serve", "--participants", str(n), "--room-size", str(args.room_size),
                   "--reader", args.reader] + (["--no-numpy"] if args.no_numpy else [])
    if args.profile:
        server_argv += ["--profile", f"{args.profile}.{n}"]
    server = Child(server_argv, tmp / f"serve-{n}.log", nice=args.nice)
    generator: Child | None = None
    try:
        ports = server.read(30)["ports"]
        generator = Child([python, me, "--role", "generate"], tmp / f"generate-{n}.log", nice=args.nice)
        generator.send({"ports": ports, "warmup": args.warmup, "duration": args.duration})
        time.sleep(args.warmup)
        busy0, total0 = machine_ticks()
        server.send({"op": "mark"})
        time.sleep(args.duration)
        result = server.ask({"op": "report"}, 30)
        busy1, total1 = machine_ticks()
        result.update(generator.read(args.duration + 60))
        server.send({"op": "quit"})
    finally:
        server.stop()
        if generator is not None:
            generator.stop()
    ncpu = os.cpu_count() or 1
    machine = ncpu * (busy1 - busy0) / max(1, total1 - total0)
    elapsed = result["elapsed"]
    result["participants"] = n
    result["server_cores"] = result["cpu"] / elapsed
    result["others_cores"] = max(0.0, machine - result["server_cores"] - result["generator_cpu"] / (args.warmup + args.duration))
    ticks = max(1, result["ticks"])
    result["cpu_us_per_participant_tick"] = 1e6 * result["cpu"] / (n * ticks)
    result["mix_us_per_participant_tick"] = 1e6 * result["mix_cpu"] / (n * ticks)
    inbound = result["concealed"] + result["late"] + result["overflow"]
    result["inbound_problems"] = inbound
    result["ok"] = (result["lateness_p99"] < LATENESS_LIMIT and result["lost"] == 0 and inbound == 0
                    and result["silent_participants"] == 0 and result["send_errors"] == 0)
    print(f"  {n:5d} participants ({n // args.room_size} rooms): tick lateness p50 {1e3 * result['lateness_p50']:.2f} "
          f"p99 {1e3 * result['lateness_p99']:.2f} max {1e3 * result['lateness_max']:.1f} ms, missed {result['missed']}, "
          f"mixed packets lost {result['lost']}, in: late {result['late']} lost {result['concealed']} "
          f"dropped {result['overflow']} underruns {result['underruns']}; server {result['server_cores']:.2f} cores, "
          f"{result['cpu_us_per_participant_tick']:.1f} us/participant/tick (mix {result['mix_us_per_participant_tick']:.1f}); "
          f"others {result['others_cores']:.2f} cores -> {'ok' if result['ok'] else 'FAIL'}", flush=True)
    return result


def run_step_real(args: argparse.Namespace, n: int, tmp: Path) -> dict[str, Any]:
    """One step against twistd minisip with the conference plugin (see the module docstring, 3.)."""
    step = Path(tempfile.mkdtemp(prefix=f"real-{n}-", dir=tmp))
    stats = step / "mixer.jsonl"
    sip_port = _free_udp_port()
    low = 40000 + (n * 7919) % 5000
    conf = server_config(step, n, args.room_size, sip_port, low, stats)
    log = step / "minisip.log"
    python = sys.executable
    env = dict(os.environ, PYTHONPATH=str(REPO_DIR) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    with open(log, "ab") as out:
        server = subprocess.Popen([python, "-c", "from twisted.scripts.twistd import run; run()", "-n", "--pidfile=",
                                   "--logger", "minisip.log.observer", "minisip", "--config", str(conf)],
                                  cwd=REPO_DIR, env=env, stdout=out, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=niceness(args.nice))
    generator: Child | None = None
    try:
        deadline = time.monotonic() + 30
        while "minisip ready" not in log.read_text(errors="replace"):
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"minisip did not start; see {log}: {log.read_text(errors='replace')[-1500:]}")
            time.sleep(0.1)
        generator = Child([python, str(Path(__file__).resolve()), "--role", "generate-sip"],
                          step / "generate.log", nice=args.nice)
        generator.send({"sip_port": sip_port, "count": n, "room_size": args.room_size, "warmup": args.warmup,
                        "duration": args.duration})
        joined = generator.read(60 + n / 10)["joined"]
        busy0, total0 = machine_ticks()
        result: dict[str, Any] = generator.read(args.warmup + args.duration + 60)
        busy1, total1 = machine_ticks()
        time.sleep(1.2)   # the plugin's last dump covering the window
    finally:
        if generator is not None:
            generator.stop()
        if server.poll() is None:
            os.kill(server.pid, signal.SIGTERM)
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(server.pid, signal.SIGKILL)
                server.wait(5)
    lines = [json.loads(x) for x in stats.read_text().splitlines() if x.strip()] if stats.exists() else []
    start, end = result["window"]
    # a dump holds the second before it: the first one after the window starts is left out (it may hold
    # the end of the call set-up), the last one is the last before the phones hang up
    inside = [x for x in lines if start + 1.0 <= x["t"] <= end]
    before = [x for x in lines if x["t"] < start + 1.0]
    if not inside or not before:
        raise RuntimeError(f"the mixer statistics do not cover the window; see {stats}")
    first, last = before[-1], inside[-1]
    lateness = sorted(v for x in inside for v in x["lateness"])
    from minisip.media.mixer import percentile

    elapsed = last["t"] - first["t"]
    ticks = max(1, last["ticks"] - first["ticks"])
    for key in ("cpu", "missed", "played", "concealed", "underruns", "late", "duplicates", "overflow"):
        result[key] = last[key] - first[key]
    result["jitter_received"] = last["received"] - first["received"]
    result.update(participants=n, joined_s=joined, elapsed=elapsed, ticks=ticks, send_errors=0,
                  lateness_p50=percentile(lateness, 0.5), lateness_p99=percentile(lateness, 0.99),
                  lateness_max=lateness[-1] if lateness else 0.0, mix_cpu=0.0, in_room=last["participants"])
    ncpu = os.cpu_count() or 1
    machine = ncpu * (busy1 - busy0) / max(1, total1 - total0)
    result["server_cores"] = result["cpu"] / elapsed
    result["others_cores"] = max(0.0, machine - result["server_cores"]
                                 - result["generator_cpu"] / (args.warmup + args.duration))
    result["cpu_us_per_participant_tick"] = 1e6 * result["cpu"] / (n * ticks)
    result["mix_us_per_participant_tick"] = 0.0
    inbound = result["concealed"] + result["late"] + result["overflow"]
    result["inbound_problems"] = inbound
    result["ok"] = (result["lateness_p99"] < LATENESS_LIMIT and result["lost"] == 0 and inbound == 0
                    and result["silent_participants"] == 0 and result["in_room"] == n)
    print(f"  {n:5d} participants ({n // args.room_size} rooms, joined in {joined:.1f} s, {result['in_room']} in rooms): "
          f"tick lateness p50 {1e3 * result['lateness_p50']:.2f} p99 {1e3 * result['lateness_p99']:.2f} "
          f"max {1e3 * result['lateness_max']:.1f} ms, missed {result['missed']}, mixed packets lost {result['lost']}, "
          f"in: late {result['late']} lost {result['concealed']} dropped {result['overflow']}; server "
          f"{result['server_cores']:.2f} cores, {result['cpu_us_per_participant_tick']:.1f} us/participant/tick; "
          f"others {result['others_cores']:.2f} cores -> {'ok' if result['ok'] else 'FAIL'}", flush=True)
    return result


def _free_udp_port() -> int:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((HOST, 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def ladder(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    steps = [int(x) for x in args.ladder.split(",")]
    step = run_step_real if args.server == "minisip" else run_step
    results: list[dict[str, Any]] = []
    best = 0
    failed_at: int | None = None
    for n in steps:
        n -= n % args.room_size
        result = step(args, n, tmp)
        results.append(result)
        if not result["ok"]:
            print(f"  retrying {n} once", flush=True)
            result = step(args, n, tmp)
            results.append(result)
        if not result["ok"]:
            failed_at = n
            break
        best = n
    if failed_at is not None and failed_at - best > 2 * args.room_size:
        middle = (best + failed_at) // 2
        middle -= middle % args.room_size
        result = step(args, middle, tmp)
        results.append(result)
        if result["ok"]:
            best = middle
    return {"best": best, "failed_at": failed_at, "limited_by_ladder": failed_at is None, "steps": results}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--role", choices=("bench", "serve", "generate", "generate-sip"), default="bench")
    parser.add_argument("--server", choices=("mixer", "minisip"), default="mixer",
                        help="the ladder against the bare mixer process, or twistd minisip with plugins/conference.py")
    parser.add_argument("--participants", type=int, default=0, help="(serve) participants to open")
    parser.add_argument("--room-size", type=int, default=5)
    parser.add_argument("--reader", choices=("shared", "twisted"), default="shared",
                        help="server sockets read through one epoll set like the media relay, or by Twisted per port")
    parser.add_argument("--ladder", default="100,200,300,400,500,600,800,1000")
    parser.add_argument("--duration", type=float, default=6.0, help="measured seconds per step")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--cpu-participants", type=int, default=200)
    parser.add_argument("--cpu-ticks", type=int, default=250)
    parser.add_argument("--skip-ladder", action="store_true", help="only the in-process mix measurement")
    parser.add_argument("--media-json", help="media_bench.py --json output: print the relay's CPU per packet too")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--no-numpy", action="store_true", help="the pure-Python mix even where numpy is installed")
    parser.add_argument("--profile", help="write a cProfile of the server to FILE.N (diagnosis; slows it down)")
    parser.add_argument("--nice", type=int, default=0,
                        help="niceness of the server and generator (negative needs root: ours first on a shared machine)")
    args = parser.parse_args()
    from minisip.media.mixer import NUMPY_AVAILABLE

    use_numpy = NUMPY_AVAILABLE and not args.no_numpy
    if args.role == "serve":
        serve_main(args.participants, args.room_size, args.reader, args.profile, use_numpy)
        return 0
    if args.role == "generate":
        generate_main()
        return 0
    if args.role == "generate-sip":
        generate_sip_main()
        return 0

    results: dict[str, Any] = {"python": sys.version.split()[0], "numpy": use_numpy}
    print(f"Python {results['python']}, mix on {'numpy' if use_numpy else 'pure Python (no numpy)'}")
    print(f"1. mix only, in process, {args.cpu_participants} participants in rooms of {args.room_size}, "
          f"all talking, {args.cpu_ticks} ticks:", flush=True)
    mix = min((mix_only(args.cpu_participants, args.room_size, args.cpu_ticks, use_numpy) for _ in range(3)),
              key=lambda r: r["mix_us"])
    results["mix_only"] = mix
    print(f"  mix {mix['mix_us']:.1f} us + jitter-buffer receive {mix['receive_us']:.1f} us per participant per tick "
          f"(one core: about {1e6 * PERIOD / (mix['mix_us'] + mix['receive_us']):.0f} participants before sockets)",
          flush=True)
    if not args.skip_ladder:
        what = "twistd minisip (conference plugin, relay)" if args.server == "minisip" else "server process"
        print(f"2. over UDP on {HOST}: {what} + Python generator, {args.duration:.0f} s steps "
              f"(pass: tick lateness p99 < {1e3 * LATENESS_LIMIT:.0f} ms, nothing lost):", flush=True)
        with tempfile.TemporaryDirectory(prefix="mixer-bench-") as tmp:
            results["ladder"] = ladder(args, Path(tmp))
    report(results, args)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


def report(results: dict[str, Any], args: argparse.Namespace) -> None:
    print(f"\nresult (rooms of {args.room_size}, G.711, 20 ms, everyone talking; mix on "
          f"{'numpy' if results['numpy'] else 'pure Python'}):")
    mix = results["mix_only"]
    print(f"  CPU per participant per tick, mix only: {mix['mix_us'] + mix['receive_us']:.1f} us "
          f"(mix {mix['mix_us']:.1f}, receive {mix['receive_us']:.1f})")
    run = results.get("ladder")
    if run:
        passed = [s for s in run["steps"] if s["ok"] and s["participants"] == run["best"]]
        if passed:
            step = passed[-1]
            mix = (f" (mix incl. send {step['mix_us_per_participant_tick']:.1f} us)"
                   if step["mix_us_per_participant_tick"] else " (relay endpoints, room legs and mix)")
            print(f"  CPU per participant per tick, whole server process at {step['participants']}: "
                  f"{step['cpu_us_per_participant_tick']:.1f} us{mix}")
            per_packet = step["cpu"] / max(1, step["received"] + step["sent"])
            print(f"  that is {1e6 * per_packet:.1f} us per RTP packet (in or out)")
        note = " (ladder top, not a limit)" if run["limited_by_ladder"] else f" (failed at {run['failed_at']})"
        print(f"  max participants with tick lateness p99 < 2 ms and no loss: {run['best']}{note}; target >= 200")
    if args.media_json:
        try:
            media = json.loads(Path(args.media_json).read_text())
            plain = media.get("plain", media)     # media_bench's parts by mode (older files: at the top)
            relay = plain["cpu"]["minisip"]["cpu_us_per_packet"]
            print(f"  plain relayed call (media_bench): {relay:.1f} us per packet")
        except (OSError, KeyError, ValueError) as e:
            print(f"  plain relayed call: cannot read {args.media_json}: {e}")
    else:
        print("  plain relayed call: run bench/media_bench.py --json FILE and pass --media-json FILE")


if __name__ == "__main__":
    sys.exit(main())
