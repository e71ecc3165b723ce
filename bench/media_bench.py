"""Relayed G.711 calls and DTLS-SRTP handshakes: minisip's MediaRelay vs rtpengine's userspace daemon.

One traffic generator (bench/rtpgen.c, built with gcc at start; ``--generator python`` for the slower
Python one, plain RTP only) sends 172-byte RTP packets every 20 ms both ways for N concurrent calls on
127.0.0.1 and measures loss and added jitter: the p99 of one-way delay above the run's minimum, less
the same figure for a few streams that go generator to generator (the generator's and the OS's own share).

The generator spins (``--generator-wait spin``, the default on 2+ CPUs): it polls its sockets on CPU 0
without sleeping, and every server runs on the other CPUs. On loopback a server's sendto runs the
receiver's whole input path in the server's own time; when the receiver sleeps, that includes waking it
(on this VM an inter-processor interrupt, about a third of a relayed packet's cost). A remote phone's
wake-up costs a relay nothing, so the spinning generator is the nearer model; the receive path itself is
still charged to the server. ``--generator-wait block`` gives the older, more pessimistic figures.

Three parts in one run (``--modes plain,srtp,dtls``, the default; ``--srtp`` or ``--dtls`` for one):

1. plain RTP, then 2. SDES-SRTP (RTP/SAVP, AES_CM_128_HMAC_SHA1_80 on both legs: the relay unprotects
   with one leg's key and protects with the other's; the generator does the SRTP of the phones), each:
   a. CPU per packet, every server once at ``--cpu-calls`` (300) calls: a Twisted UDP echo, a raw epoll
      Python echo, minisip's relay (in its own process, ``serve`` role) and rtpengine (``--table=-1``,
      kernel forwarding off, ``--num-threads=1``, driven over ng: offer/answer/delete per call);
   b. the ladder: minisip and rtpengine interleaved at each step (the machine's noise falls on both),
      calls raised until loss > 0.01% or added jitter p99 > 5 ms (a failing step is retried once, then
      one bisection step); a step where the generator itself fell behind is GENERATOR-LIMITED, and a
      failing step during which the host stole more than 5% of the servers' CPUs is HOST-LIMITED: run
      again after a pause (``--steal-retries``), and without a verdict if it stays so.
3. DTLS-SRTP handshakes per second over UDP: one client (bench/dtls_srtp_client.py, minisip's
   DtlsTransform as client) against minisip's relay endpoints and rtpengine's, each as DTLS server.

    python3 bench/media_bench.py                     # about 6-10 minutes
    python3 bench/media_bench.py --nice -10          # as root on a shared machine: our processes first
    python3 bench/media_bench.py --srtp --servers minisip,rtpengine --ladder 100,200,300 --json /tmp/m.json
    python3 bench/media_bench.py --dtls --dtls-handshakes 2000

Every line shows the other processes' CPU during the step ("others"): on a shared 2-core machine the
figures mean little when it is near 1 core. Port ranges and rtpengine's ng port are chosen at run time.
Processes: the generator, the Python servers, the DTLS client and rtpengine are started here, each in
its own session, and each is ended by its PID.
"""

from __future__ import annotations

import argparse
import gc
import json
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
from array import array
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))

HOST = "127.0.0.1"
PACKET = 172  # 12-byte RTP header + 160 bytes of G.711 (20 ms)
PERIOD_NS = 20_000_000
SLOTS = 20  # calls are spread over 20 phases of 1 ms, as real calls are
LOSS_LIMIT = 0.0001
STEAL_LIMIT = 0.05  # a step in which the host stole more than 5% of the servers' CPUs is run again
JITTER_LIMIT_MS = 5.0
# Offset 2 of the packet: seq16, timestamp, ssrc | payload: call, direction, seq32, send time (ns).
FIELDS = struct.Struct("!HIIIBIq")
RECEIVED = struct.Struct("!IBIq")


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs, from /proc/stat: how loaded the shared machine was."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields) - idle, sum(fields)


def steal_ticks() -> dict[int, int]:
    """Jiffies the hypervisor took from each CPU (/proc/stat's steal column): on a shared VM the host
    stops a CPU for milliseconds at a time, and a server's queue grows meanwhile (jitter)."""
    steal = {}
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("cpu") and line[3:4].isdigit():
            fields = line.split()
            steal[int(fields[0][3:])] = int(fields[8]) if len(fields) > 8 else 0
    return steal


def cpu_split(pid: int) -> tuple[float, float]:
    """(utime, stime) of a process (all its threads) in seconds, from /proc."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    rest = raw[raw.rfind(")") + 2:].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return int(rest[11]) / ticks, int(rest[12]) / ticks


# -- the traffic generator (role "generate") ----------------------------------------------------------

def udp_socket() -> socket.socket:
    """A non-blocking UDP socket on HOST with the largest receive buffer the system grants."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for size in (8 << 20, 4 << 20, 1 << 20):
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
            break
        except OSError:
            continue
    sock.bind((HOST, 0))
    sock.setblocking(False)
    return sock


class Generator:
    """Sends and receives the calls' packets with raw non-blocking sockets and epoll."""

    def __init__(self, sockets: int) -> None:
        self.a = [udp_socket() for _ in range(sockets)]
        self.b = [udp_socket() for _ in range(sockets)]
        self.by_fd = {s.fileno(): s for s in self.a + self.b}
        self.side = {s.fileno(): 0 for s in self.a}
        self.side.update({s.fileno(): 1 for s in self.b})
        self.poller = select.epoll()
        for sock in self.a + self.b:
            self.poller.register(sock.fileno(), select.EPOLLIN)

    def ports(self) -> dict[str, list[int]]:
        return {"a": [s.getsockname()[1] for s in self.a], "b": [s.getsockname()[1] for s in self.b]}

    def run(self, calls: list[list[int]], duration: float, warmup: float, echo: bool = False,
            direct: int = 10, drain: float = 0.5) -> dict[str, Any]:
        """Each call: [port a sends to, port b sends to]; call i uses sockets a[i % S] and b[i % S].

        ``direct`` calibration streams go from a socket of side a straight to one of side b (no server):
        their delay variation is the generator's and the OS's own, subtracted to give the added jitter.
        """
        n = len(calls)
        count = len(self.a)
        streams = []  # per slot: (sendto, buffer, addr, call, direction)
        for i, (port_a, port_b) in enumerate(calls):
            for direction, (sock, port) in enumerate(((self.a[i % count], port_a), (self.b[i % count], port_b))):
                buf = bytearray(PACKET)
                buf[0] = 0x80
                streams.append((i % SLOTS, sock.sendto, buf, (HOST, port), i, direction, (i << 1) | direction))
        for k in range(direct):
            buf = bytearray(PACKET)
            buf[0] = 0x80
            port = self.b[k % count].getsockname()[1]
            streams.append((k * 7 % SLOTS, self.a[(k + 1) % count].sendto, buf, (HOST, port), k, 2, 0xFFFF0000 + k))
        slots: list[list[Any]] = [[] for _ in range(SLOTS)]
        for slot, *rest in streams:
            slots[slot].append(rest)
        pack = FIELDS.pack_into
        unpack = RECEIVED.unpack_from
        clock = time.monotonic_ns
        start = clock() + 50_000_000
        measure_from = start + int(warmup * 1e9)
        stop_at = measure_from + int(duration * 1e9)
        drain_until = stop_at + int(drain * 1e9)
        slot_ns = PERIOD_NS // SLOTS
        delays = array("q")
        add_delay = delays.append
        direct_delays = array("q")
        sent = sent_measured = received = received_measured = misrouted = send_errors = 0
        lateness = array("q")
        j = 0
        next_slot = start
        cpu0 = time.process_time()
        poll = self.poller.poll
        by_fd = self.by_fd
        side = self.side
        while True:
            now = clock()
            if now >= next_slot and next_slot < stop_at:
                lateness.append(now - next_slot)
                seq = j // SLOTS
                for sendto, buf, addr, call, direction, ssrc in slots[j % SLOTS]:
                    sent_ns = clock()
                    pack(buf, 2, seq & 0xFFFF, (seq * 160) & 0xFFFFFFFF, ssrc, call, direction, seq, sent_ns)
                    try:
                        sendto(buf, addr)
                    except OSError:
                        send_errors += 1
                        continue
                    if direction == 2:
                        continue
                    sent += 1
                    if measure_from <= sent_ns < stop_at:
                        sent_measured += 1
                j += 1
                next_slot = start + j * slot_ns
                continue
            if now >= drain_until:
                break
            wait_until = next_slot if next_slot < stop_at else drain_until
            for fd, _ in poll(max(0.0, (wait_until - now) / 1e9)):
                recv = by_fd[fd].recv
                expect = side[fd] if echo else 1 - side[fd]
                while True:
                    try:
                        data = recv(2048)
                    except BlockingIOError:
                        break
                    arrived = clock()
                    if len(data) < 29:
                        misrouted += 1
                        continue
                    _, direction, _, sent_ns = unpack(data, 12)
                    if direction != expect:
                        if direction == 2:
                            if measure_from <= sent_ns < stop_at:
                                direct_delays.append(arrived - sent_ns)
                            continue
                        misrouted += 1
                    received += 1
                    if measure_from <= sent_ns < stop_at:
                        received_measured += 1
                        add_delay(arrived - sent_ns)
        cpu = time.process_time() - cpu0
        lost = sent_measured - received_measured
        result: dict[str, Any] = {
            "calls": n, "sent": sent, "received": received, "sent_measured": sent_measured,
            "received_measured": received_measured, "lost": lost,
            "loss": lost / sent_measured if sent_measured else 1.0, "misrouted": misrouted,
            "send_errors": send_errors, "generator_cpu": cpu,
        }
        result.update(delay_stats(delays))
        result["raw_jitter_p99_ms"] = result["jitter_p99_ms"]
        if direct_delays:
            ordered = sorted(direct_delays)
            result["direct_jitter_p99_ms"] = (ordered[int(len(ordered) * 0.99)] - ordered[0]) / 1e6
            result["jitter_p99_ms"] = max(0.0, result["raw_jitter_p99_ms"] - result["direct_jitter_p99_ms"])
        late = sorted(lateness)
        result["send_late_p99_ms"] = late[int(len(late) * 0.99)] / 1e6 if late else 0.0
        return result


def delay_stats(delays: list[int]) -> dict[str, float]:
    """One-way delays (ns) as the benchmarks report them: the least, the median, and jitter p90/p99/max
    above the least; jitter p99 is infinite when nothing arrived."""
    if not delays:
        return {"jitter_p99_ms": float("inf")}
    ordered = sorted(delays)
    base = ordered[0]
    return {
        "delay_min_ms": base / 1e6,
        "delay_p50_ms": ordered[len(ordered) // 2] / 1e6,
        "jitter_p99_ms": (ordered[int(len(ordered) * 0.99)] - base) / 1e6,
        "jitter_p90_ms": (ordered[int(len(ordered) * 0.90)] - base) / 1e6,
        "jitter_max_ms": (ordered[-1] - base) / 1e6,
    }


def generate_main(sockets: int) -> None:
    raise_fd_limit()
    gen = Generator(sockets)
    print(json.dumps(gen.ports()), flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        if command.get("op") != "run":
            break
        print(json.dumps(gen.run(command["calls"], command["duration"], command["warmup"], command.get("echo", False),
                                 command.get("direct", 10))), flush=True)


# -- the servers under test (role "serve") ------------------------------------------------------------

def raw_main(relay: bool) -> None:
    """The plainest Python UDP servers: one epoll loop, recvfrom and sendto, no framework.

    The echo sends each datagram back where it came from. The relay (``relay``) is the floor under
    minisip's MediaRelay: per call two sockets, what arrives on one leaves from the other to the fixed
    address of the other side, no latching, no counters, nothing checked; with SRTP keys each packet is
    unprotected and protected again in one buffer through pylibsrtp's binding (libsrtp's own calls), as
    minisip's relay does, with the same keys.
    """
    raise_fd_limit()
    poller = select.epoll()
    # fd -> (socket, socket to send from, destination, libsrtp rx handle or None, tx handle or None)
    table: dict[int, tuple[Any, ...]] = {}
    sessions: list[Any] = []   # keep the libsrtp sessions alive
    stdin = sys.stdin.fileno()
    poller.register(stdin, select.EPOLLIN)
    pending = b""
    srtp_calls = None
    if relay:
        import pylibsrtp
        from pylibsrtp._binding import ffi, lib

        from minisip.media.srtp import REPLAY_WINDOW

        buf, length = ffi.new("char[]", 1500), ffi.new("int *")
        memmove, unpack, unprotect, protect = ffi.memmove, ffi.unpack, lib.srtp_unprotect, lib.srtp_protect

        def session(key_hex: str, inbound: bool) -> Any:
            policy = pylibsrtp.Policy(key=bytes.fromhex(key_hex), ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND
                                      if inbound else pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
            policy.window_size = REPLAY_WINDOW   # minisip's own
            policy.allow_repeat_tx = not inbound
            sessions.append(pylibsrtp.Session(policy))
            return sessions[-1]._srtp[0]
    while True:
        for fd, _ in poller.poll():
            if fd != stdin:
                entry = table.get(fd)
                if entry is None:  # closed by a teardown read earlier in this batch
                    continue
                try:
                    data, addr = entry[0].recvfrom(8192)
                    if not relay:
                        entry[0].sendto(data, addr)
                        continue
                    if entry[3] is not None:
                        size = len(data)
                        memmove(buf, data, size)
                        length[0] = size
                        if unprotect(entry[3], buf, length) or protect(entry[4], buf, length):
                            continue
                        data = unpack(buf, length[0])
                    entry[1].sendto(data, entry[2])
                except OSError:
                    pass
                continue
            chunk = os.read(stdin, 65536)
            if not chunk:
                return
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                command = json.loads(line)
                if command["op"] == "setup":
                    ports = []
                    srtp_calls = command.get("srtp")
                    for i, call in enumerate(command["calls"]):
                        pair = []
                        for _ in range(2):
                            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                            sock.bind((HOST, 0))
                            sock.setblocking(False)
                            poller.register(sock.fileno(), select.EPOLLIN)
                            pair.append(sock)
                        a, b = pair
                        rx_a = tx_a = rx_b = tx_b = None
                        if relay and srtp_calls:
                            # Side a sends with a_tx and receives with a_rx (the relay's keys of bench setup).
                            a_tx, a_rx, b_tx, b_rx = srtp_calls[i]
                            rx_a, tx_b, rx_b, tx_a = (session(a_tx, True), session(b_rx, False),
                                                      session(b_tx, True), session(a_rx, False))
                        table[a.fileno()] = (a, b, (HOST, call[1]), rx_a, tx_b)
                        table[b.fileno()] = (b, a, (HOST, call[0]), rx_b, tx_a)
                        ports.append([a.getsockname()[1], b.getsockname()[1]])
                    reply: Any = {"ports": ports}
                elif command["op"] == "teardown":
                    for entry in table.values():
                        poller.unregister(entry[0].fileno())
                        entry[0].close()
                    table.clear()
                    sessions.clear()
                    reply = {}
                else:
                    return
                sys.stdout.write(json.dumps(reply) + "\n")
                sys.stdout.flush()


def serve_main(mode: str, port_range: str, coalesce: float = 0.0, profile: str | None = None) -> None:
    """minisip's MediaRelay (mode relay) or a Twisted UDP echo (mode echo), driven by JSON lines on stdin.

    Every Python server runs with the garbage-collector settings of minisip's server (minisip/app.py):
    start-up objects frozen, larger generations.
    """
    sys.path.insert(0, str(REPO_DIR))
    from minisip.app import GC_THRESHOLDS

    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    if mode in ("rawecho", "rawrelay"):
        raw_main(relay=mode == "rawrelay")
        return
    raise_fd_limit()
    from twisted.internet import epollreactor

    epollreactor.install()
    from twisted.internet import reactor, stdio
    from twisted.internet.protocol import DatagramProtocol
    from twisted.protocols.basic import LineReceiver

    from minisip.media.dtls import DtlsTransform, local_certificate
    from minisip.media.relay import MediaRelay
    from minisip.media.srtp import AES_CM_128_HMAC_SHA1_80, SdesTransform

    low, high = (int(x) for x in port_range.split("-"))
    relay = MediaRelay(reactor, HOST, (low, high), timeout=0, coalesce=coalesce)

    class Echo(DatagramProtocol):
        def datagramReceived(self, data: bytes, addr: Any) -> None:
            self.transport.write(data, addr)

    echo_ports: list[Any] = []

    class Control(LineReceiver):
        delimiter = b"\n"
        MAX_LENGTH = 1 << 26  # a setup with SRTP keys for 1,000 calls is 250 KB

        def lineReceived(self, line: bytes) -> None:
            command = json.loads(line)
            op = command["op"]
            if op == "setup":
                ports = []
                keys = command.get("srtp")
                for i, (a_port, b_port) in enumerate(command["calls"]):
                    if mode == "echo":
                        pair = [reactor.listenUDP(0, Echo(), interface=HOST) for _ in range(2)]
                        echo_ports.extend(pair)
                        ports.append([p.getHost().port for p in pair])
                        continue
                    call_id = f"bench-{i}"
                    a = relay.open_endpoint(call_id, "a")
                    b = relay.open_endpoint(call_id, "b")
                    a.set_remote((HOST, a_port))
                    b.set_remote((HOST, b_port))
                    if keys:
                        # The generator's keys: side a sends with a_tx and receives with a_rx, so the relay's
                        # leg a unprotects with a_tx and protects with a_rx; four keys, all different.
                        a_tx, a_rx, b_tx, b_rx = (bytes.fromhex(k) for k in keys[i])
                        a.set_transform(SdesTransform(a_rx, a_tx, AES_CM_128_HMAC_SHA1_80))
                        b.set_transform(SdesTransform(b_rx, b_tx, AES_CM_128_HMAC_SHA1_80))
                    relay.bridge(a, b)
                    ports.append([a.local[1], b.local[1]])
                self.reply({"ports": ports})
            elif op == "dtls_setup":
                # Leg a plain, leg b DTLS-SRTP with the relay as DTLS server (the answer said
                # a=setup:active), expecting the client's certificate; the process's own certificate.
                certificate = local_certificate()
                client = tuple(command["fingerprint"])
                ports = []
                for i in range(command["calls"]):
                    call_id = f"dtls-{i}"
                    a = relay.open_endpoint(call_id, "a")
                    b = relay.open_endpoint(call_id, "b")
                    a.set_remote((HOST, 9))
                    b.set_transform(DtlsTransform("server", client, reactor, certificate))
                    relay.bridge(a, b)
                    ports.append(b.local[1])
                self.reply({"ports": ports, "fingerprint": ["sha-256", certificate.fingerprint]})
            elif op == "teardown":
                totals: dict[str, int] = {"dtls_ready": 0, "dtls_failed": 0}
                for call_id in list(relay._calls):
                    for endpoint in relay.endpoints(call_id):
                        if isinstance(endpoint.transform, DtlsTransform):
                            totals["dtls_ready"] += endpoint.transform.ready()
                            totals["dtls_failed"] += endpoint.transform.state == "failed"
                    for stats in relay.close_call(call_id):
                        for key in ("packets_in", "packets_out", "dropped_spoofed", "dropped_malformed",
                                    "dropped_unprotect", "srtp_auth_failures", "srtp_replay_failures",
                                    "send_errors", "errors", "lost"):
                            totals[key] = totals.get(key, 0) + stats[key]
                for port in echo_ports:
                    port.stopListening()
                echo_ports.clear()
                totals["pool_free"] = relay.pool.free
                self.reply(totals)
            elif op == "quit":
                reactor.stop()

        def reply(self, obj: Any) -> None:
            self.sendLine(json.dumps(obj).encode())

        def connectionLost(self, reason: Any) -> None:
            if reactor.running:
                reactor.stop()

    stdio.StandardIO(Control())
    if not profile:
        reactor.run()
        return
    import cProfile

    profiler = cProfile.Profile()
    profiler.runcall(reactor.run)
    profiler.dump_stats(profile)


# -- orchestration -----------------------------------------------------------------------------------

def niceness(value: int, cpus: set[int] | None = None) -> Any:
    """A preexec_fn giving a child (and every thread it starts) the niceness ``value``, and its session's
    scheduler autogroup too: with autogroups (Linux's default) a process's nice only ranks it within its
    own session, while CPU is shared between sessions by the autogroup's nice. With ``cpus``, the child
    runs only on those CPUs."""
    if not value and not cpus:
        return None

    def apply() -> None:
        if cpus:
            os.sched_setaffinity(0, cpus)
        if not value:
            return
        os.nice(value)
        try:
            Path(f"/proc/{os.getpid()}/autogroup").write_text(str(value))
        except OSError:
            pass

    return apply


def server_cpus(spin: bool) -> set[int] | None:
    """Where the servers run: with a spinning generator (on CPU 0) every other CPU, since a spinning
    generator on a server's CPU would starve it, and the softirqs that carry its packets (jitter of
    100-400 ms in a trial without the pinning); else anywhere (None)."""
    return set(range(1, os.cpu_count() or 2)) if spin else None


class Child:
    """A child process spoken to by JSON lines; ended by its PID."""

    def __init__(self, argv: list[str], log: Path, nice: int = 0, cpus: set[int] | None = None) -> None:
        self.log = log
        with open(log, "ab") as err:
            self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                                         start_new_session=True, cwd=REPO_DIR, preexec_fn=niceness(nice, cpus))

    @property
    def pid(self) -> int:
        return self.proc.pid

    def send(self, obj: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(obj) + "\n").encode())
        self.proc.stdin.flush()

    def read(self, timeout: float) -> Any:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            raise RuntimeError(f"pid {self.pid} gave no answer within {timeout:.0f} s; see {self.log}")
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"pid {self.pid} exited; see {self.log}: {self.log.read_text()[-800:]}")
        return json.loads(line)

    def ask(self, obj: Any, timeout: float) -> Any:
        self.send(obj)
        return self.read(timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()  # type: ignore[union-attr]
            except OSError:
                pass
            try:
                self.proc.wait(3)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGTERM)
                try:
                    self.proc.wait(3)
                except subprocess.TimeoutExpired:
                    os.kill(self.pid, signal.SIGKILL)
                    self.proc.wait(3)


def step_ok(result: dict[str, Any]) -> bool:
    return result["loss"] <= LOSS_LIMIT and result["jitter_p99_ms"] <= JITTER_LIMIT_MS


def host_limited(result: dict[str, Any]) -> bool:
    """The hypervisor took more than STEAL_LIMIT of the servers' CPUs during the step (steal time): the
    step measures the host's other guests, not the server."""
    return result.get("server_cpus_steal_ms", 0.0) > 1000 * STEAL_LIMIT * result["elapsed"]


def generator_limited(result: dict[str, Any]) -> bool:
    """The generator itself could not keep time (sends late, or its direct streams jitter): the step
    measures the machine, not the server."""
    return result["send_late_p99_ms"] > JITTER_LIMIT_MS or result.get("direct_jitter_p99_ms", 0.0) > JITTER_LIMIT_MS


def fmt_step(name: str, n: int, r: dict[str, Any]) -> str:
    return (f"{name:9} {n:5} calls  {r['sent_measured'] / r['duration']:8.0f} pkt/s  loss {100 * r['loss']:.4f}%  "
            f"added jitter p99 {r['jitter_p99_ms']:5.2f} ms (raw {r['raw_jitter_p99_ms']:5.2f})  server {r['cpu_us_per_packet']:5.1f} us/pkt "
            f"({100 * r['server_cpu_share']:3.0f}% core)  gen late p99 {r['send_late_p99_ms']:5.2f} ms "
            f"gen {100 * r['generator_cpu'] / r['elapsed']:3.0f}% core  others {r['other_processes_cores']:.1f} cores  "
            f"stolen {r.get('server_cpus_steal_ms', 0):4.0f} ms  "
            f"{'ok' if step_ok(r) else 'GENERATOR-LIMITED' if generator_limited(r) else 'HOST-LIMITED' if host_limited(r) else 'FAIL'}"
            + (f"  srtp failures at the generator {r['srtp_failures']}" if r.get("srtp_failures") else ""))


class CGenerator(Child):
    """bench/rtpgen.c, built with gcc into the temporary directory: the same measurements as the Python
    Generator at a fraction of its CPU, so that the server under test gets the machine; built with
    OpenSSL's libcrypto (Debian libssl-dev) it also protects and unprotects SDES-SRTP."""

    def ask(self, obj: Any, timeout: float) -> Any:
        if obj.get("op") != "run":
            return super().ask(obj, timeout)
        keys = obj.get("keys")
        lines = [f"run {obj['duration']} {obj['warmup']} {int(obj['echo'])} {obj['direct']} {len(obj['calls'])} "
                 f"{int(bool(keys))}"]
        if keys:
            lines += [f"{a} {b} {' '.join(k)}" for (a, b), k in zip(obj["calls"], keys)]
        else:
            lines += [f"{a} {b}" for a, b in obj["calls"]]
        assert self.proc.stdin is not None
        self.proc.stdin.write(("\n".join(lines) + "\n").encode())
        self.proc.stdin.flush()
        return self.read(timeout)

    def send(self, obj: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"quit\n" if obj.get("op") == "quit" else (json.dumps(obj) + "\n").encode())
        self.proc.stdin.flush()


def build_c_generator(tmp: Path) -> Path | None:
    """gcc -O2 bench/rtpgen.c, with SRTP through OpenSSL's libcrypto when its headers are there (Debian
    libssl-dev); None when there is no working C compiler."""
    binary = tmp / "rtpgen"
    source = str(BENCH_DIR / "rtpgen.c")
    attempts = [["-DWITH_SRTP", "-o", str(binary), source, "-lcrypto"], ["-o", str(binary), source]]
    for extra in attempts:
        try:
            subprocess.run(["gcc", "-O2", *extra], check=True, capture_output=True, timeout=60)
            if "-DWITH_SRTP" not in extra:
                print("note: bench/rtpgen.c built without OpenSSL (Debian libssl-dev): no SRTP mode", flush=True)
            return binary
        except (OSError, subprocess.SubprocessError) as e:
            error = e
    print(f"note: cannot build bench/rtpgen.c ({error}); using the Python generator", flush=True)
    return None


def free_udp_port() -> int:
    """A UDP port on 127.0.0.1 that nothing is bound to right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def pick_port_ranges(count: int, size: int = 6000) -> list[str]:
    """``count`` disjoint random port ranges below the kernel's ephemeral range (where the generator's and
    the client's sockets are), chosen at run time: another benchmark may run a relay at the same time; a
    port that is taken anyway is skipped by both relays' port pools. 6,000 ports: 1,200 calls take two
    legs of an RTP and an RTCP port each."""
    import random

    low = 10000
    try:
        high = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0]) - 1
    except (OSError, ValueError, IndexError):
        high = 32767
    blocks = list(range(low, high - size + 1, size))
    chosen = random.sample(blocks, count)
    return [f"{start}-{start + size - 1}" for start in chosen]


def new_keys() -> list[str]:
    """Four master key+salt (30 bytes, hex) for one SRTP call: a sends, a receives, b sends, b receives."""
    return [os.urandom(30).hex() for _ in range(4)]


class Server:
    """A server under test: set up N relayed calls (returns the ports the generator sends to and, with
    SRTP, the keys the generator uses), tear down; DTLS endpoints for the handshake phase."""

    name = ""
    pid = 0

    def setup(self, calls: list[tuple[int, int]], srtp: bool) -> tuple[list[list[int]], list[list[str]] | None]:
        raise NotImplementedError

    def teardown(self) -> None:
        raise NotImplementedError

    def dtls_setup(self, n: int, client_fingerprint: tuple[str, str]) -> list[list[Any]]:
        """``n`` calls whose leg b is a DTLS-SRTP server expecting the client: [[port, hash, fingerprint]]."""
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError


class PythonServer(Server):
    """minisip's MediaRelay (mode relay), the Twisted echo (echo), the raw epoll echo (rawecho) or relay (rawrelay)."""

    def __init__(self, name: str, mode: str, args: argparse.Namespace, tmp: Path,
                 cpus: set[int] | None = None) -> None:
        self.name = name
        self.mode = mode
        profile = ["--profile", args.profile_relay] if args.profile_relay and mode == "relay" else []
        self.child = Child([sys.executable, __file__, "serve", "--mode", mode, "--ports", args.minisip_ports,
                            "--coalesce", str(args.coalesce), *profile],
                           tmp / f"{mode}.log", args.nice, cpus)
        self.pid = self.child.pid
        self.counters: list[dict[str, Any]] = []

    def setup(self, calls: list[tuple[int, int]], srtp: bool) -> tuple[list[list[int]], list[list[str]] | None]:
        keys = [new_keys() for _ in calls] if srtp else None
        command: dict[str, Any] = {"op": "setup", "calls": calls}
        if keys and self.mode in ("relay", "rawrelay"):
            command["srtp"] = keys
        ports = self.child.ask(command, 60)["ports"]
        if keys and self.mode not in ("relay", "rawrelay"):
            # An echo sends each side its own packets back: each side receives with its sending key.
            keys = [[a_tx, a_tx, b_tx, b_tx] for a_tx, _, b_tx, _ in keys]
        return ports, keys

    def dtls_setup(self, n: int, client_fingerprint: tuple[str, str]) -> list[list[Any]]:
        reply = self.child.ask({"op": "dtls_setup", "calls": n, "fingerprint": list(client_fingerprint)}, 120)
        return [[port, *reply["fingerprint"]] for port in reply["ports"]]

    def teardown(self) -> None:
        self.counters.append(self.child.ask({"op": "teardown"}, 60))

    def stop(self) -> None:
        self.child.stop()


class RtpengineServer(Server):
    """rtpengine's userspace daemon driven over ng (offer/answer/delete per call); with ``recrypt`` it is
    started so that it decrypts and re-encrypts SDES-to-SDES calls (rtpengine.RECRYPT_OPTIONS)."""

    def __init__(self, args: argparse.Namespace, tmp: Path, recrypt: bool = False,
                 cpus: set[int] | None = None) -> None:
        import rtpengine

        self.name = "rtpengine"
        self.rtpengine = rtpengine
        if not os.path.exists(rtpengine.RTPENGINE):
            raise RuntimeError(f"{rtpengine.RTPENGINE} not found (Debian 12: apt-get install rtpengine-daemon)")
        low, high = (int(x) for x in args.rtpengine_ports.split("-"))
        log = tmp / "rtpengine.log"
        ng_port = args.ng_port or free_udp_port()
        self.proc = rtpengine.start(ng_port, low, high, log, args.rtpengine_threads, niceness(args.nice, cpus),
                                    rtpengine.RECRYPT_OPTIONS if recrypt else None)
        self.pid = self.proc.pid
        self.ng = rtpengine.NgClient(HOST, ng_port)
        self.ids: list[str] = []
        self.n = 0
        deadline = time.monotonic() + 10
        while not self.ng.ping():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = log.read_text(errors="replace")[-800:]
                raise RuntimeError(f"rtpengine did not answer an ng ping (exit code {self.proc.poll()}): {tail}")
            time.sleep(0.2)

    def setup(self, calls: list[tuple[int, int]], srtp: bool) -> tuple[list[list[int]], list[list[str]] | None]:
        self.n += 1
        self.ids = [f"bench-{self.n}-{i}" for i in range(len(calls))]
        if not srtp:
            return [list(self.rtpengine.relay_call(self.ng, call_id, (HOST, a), (HOST, b)))
                    for call_id, (a, b) in zip(self.ids, calls)], None
        ports, keys = [], []
        for call_id, (a, b) in zip(self.ids, calls):
            pair, call_keys = self.rtpengine.relay_call_sdes(self.ng, call_id, (HOST, a), (HOST, b))
            ports.append(list(pair))
            keys.append([k.hex() for k in call_keys])
        return ports, keys

    def dtls_setup(self, n: int, client_fingerprint: tuple[str, str]) -> list[list[Any]]:
        self.n += 1
        self.ids = [f"dtls-{self.n}-{i}" for i in range(n)]
        targets = []
        for call_id in self.ids:
            port, fingerprint = self.rtpengine.dtls_call(self.ng, call_id, (HOST, 9), (HOST, 9), client_fingerprint)
            targets.append([port, *fingerprint])
        return targets

    def teardown(self) -> None:
        for call_id in self.ids:
            self.rtpengine.delete_call(self.ng, call_id)
        self.ids = []

    def stop(self) -> None:
        self.ng.close()
        self.rtpengine.stop(self.proc)


def start_servers(names: list[str], args: argparse.Namespace, tmp: Path, srtp: bool,
                  results: dict[str, Any], cpus: set[int] | None = None) -> list[Server]:
    """The servers of one mode, in a fixed order, on ``cpus`` (None: anywhere); an rtpengine that cannot
    start is reported, not fatal."""
    started: list[Server] = []
    for name, mode in (("echo", "echo"), ("rawecho", "rawecho"), ("rawrelay", "rawrelay"), ("minisip", "relay")):
        if name in names:
            started.append(PythonServer(name, mode, args, tmp, cpus))
    if "rtpengine" in names:
        try:
            started.append(RtpengineServer(args, tmp, recrypt=srtp, cpus=cpus))
        except RuntimeError as e:
            results["rtpengine_error"] = str(e)
            print(f"rtpengine: {e}", flush=True)
    return started


class Bench:
    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args = args
        self.tmp = tmp
        self.srtp = False
        binary = build_c_generator(tmp) if args.generator == "c" else None
        self.generator_kind = "c" if binary else "python"
        spin = bool(binary) and args.generator_wait == "spin" and (os.cpu_count() or 1) >= 2
        self.server_cpus = server_cpus(spin)  # where start_servers puts the servers of the RTP parts
        if args.generator_wait == "spin" and not spin:
            print("note: the generator sleeps between packets (the Python generator, or one CPU): every server "
                  "pays its wake-ups", flush=True)
        if binary:
            self.gen: Child = CGenerator([str(binary), str(args.sockets)] + (["spin"] if spin else []),
                                         tmp / "generator.log", args.nice, {0} if spin else None)
        else:
            self.gen = Child([sys.executable, __file__, "generate", "--sockets", str(args.sockets)],
                             tmp / "generator.log", args.nice)
        self.generator_wait = "spinning on CPU 0, servers on the others" if spin else "sleeping between packets"
        self.gen_ports = self.gen.read(20)
        self.generator_srtp = bool(self.gen_ports.get("srtp"))

    def addresses(self, n: int) -> list[tuple[int, int]]:
        count = len(self.gen_ports["a"])
        return [(self.gen_ports["a"][i % count], self.gen_ports["b"][i % count]) for i in range(n)]

    def measure(self, name: str, server_pid: int, targets: list[list[int]],
                keys: list[list[str]] | None) -> dict[str, Any]:
        args = self.args
        t0, (user0, sys0), (busy0, total0) = time.monotonic(), cpu_split(server_pid), machine_ticks()
        steal0 = steal_ticks()
        command: dict[str, Any] = {"op": "run", "calls": targets, "duration": args.duration, "warmup": args.warmup,
                                   "echo": name.endswith("echo"), "direct": args.direct}
        if keys:
            command["keys"] = keys
        result = self.gen.ask(command, args.duration + args.warmup + 60)
        user1, sys1 = cpu_split(server_pid)
        elapsed, cpu = time.monotonic() - t0, user1 - user0 + sys1 - sys0
        packets = max(1, result["sent"])
        result.update(user_us_per_packet=1e6 * (user1 - user0) / packets,
                      kernel_us_per_packet=1e6 * (sys1 - sys0) / packets)
        busy1, total1 = machine_ticks()
        ncpu = os.cpu_count() or 1
        machine = ncpu * (busy1 - busy0) / max(1, total1 - total0)  # cores busy, everything included
        others = max(0.0, machine - cpu / elapsed - result["generator_cpu"] / elapsed)
        result.update(machine_cores_busy=machine, other_processes_cores=others)
        steal1, cpus = steal_ticks(), self.server_cpus or set(range(ncpu))
        result["server_cpus_steal_ms"] = 1000 * sum(steal1.get(c, 0) - steal0.get(c, 0) for c in cpus) / os.sysconf("SC_CLK_TCK")
        result.update(duration=args.duration, elapsed=elapsed, server_cpu=cpu,
                      server_cpu_share=cpu / elapsed, cpu_us_per_packet=1e6 * cpu / max(1, result["sent"]))
        print(fmt_step(name, len(targets), result), flush=True)
        return result

    def step(self, server: Server, n: int) -> dict[str, Any]:
        targets, keys = server.setup(self.addresses(n), self.srtp)
        try:
            result = self.measure(server.name, server.pid, targets, keys)
        finally:
            server.teardown()
        if isinstance(server, PythonServer) and server.mode == "relay" and server.counters:
            result["relay_counters"] = server.counters[-1]
            dropped = {k: v for k, v in server.counters[-1].items()
                       if v and k.startswith(("dropped", "srtp_", "errors", "send_errors"))}
            if dropped:
                print(f"          relay counters: {dropped}", flush=True)
        return result

    def ladder_step(self, server: Server, n: int) -> dict[str, Any]:
        """One step of the ladder; a failing step during which the host stole the servers' CPUs is run
        again, up to ``--steal-retries`` times (a pause first, for the other guest's burst to pass)."""
        result = self.step(server, n)
        for attempt in range(1, self.args.steal_retries + 1):
            if step_ok(result) or not host_limited(result):
                break
            print(f"          the host took {result['server_cpus_steal_ms']:.0f} ms of the servers' CPUs: "
                  f"{server.name} at {n} calls again ({attempt}/{self.args.steal_retries})", flush=True)
            time.sleep(self.args.steal_pause)
            result = self.step(server, n)
            result["host_retries"] = attempt
        return result

    def safe_step(self, server: Server, n: int, st: dict[str, Any]) -> dict[str, Any] | None:
        """``ladder_step``, or None when the server died (its ladder ends there, as failed)."""
        try:
            return self.ladder_step(server, n)
        except (OSError, RuntimeError) as e:
            print(f"          {server.name} at {n} calls: {e}", flush=True)
            st["failed"], st["error"] = n, str(e)
            return None

    def cpu_phase(self, servers: list[Server]) -> dict[str, dict[str, Any]]:
        """Every server once at the same load, one after the other: CPU per packet side by side."""
        return {server.name: self.step(server, self.args.cpu_calls) for server in servers}

    def ladders(self, servers: list[Server]) -> dict[str, dict[str, Any]]:
        """Raise the calls step by step, the servers interleaved at each step (so the shared machine's
        noise falls on all of them alike); a server leaves the ladder at its first failing step. A step
        that stayed host-limited through its retries gives no verdict, and the server goes on."""
        state: dict[str, dict[str, Any]] = {
            s.name: {"best": 0, "failed": None, "generator_limited": False, "host_limited_steps": [], "steps": {}}
            for s in servers}
        for n in self.args.srtp_ladder if self.srtp else self.args.ladder:
            active = [s for s in servers if state[s.name]["failed"] is None and not state[s.name]["generator_limited"]]
            if not active:
                break
            for server in active:
                st = state[server.name]
                result = self.safe_step(server, n, st)
                if result is None:
                    continue
                if not step_ok(result) and not host_limited(result) and self.args.retry:
                    print(f"          retrying {server.name} at {n} calls once (a shared machine is noisy)", flush=True)
                    again = self.safe_step(server, n, st)
                    if again is None:
                        continue
                    again["retried"] = True
                    if step_ok(again) or generator_limited(result) or host_limited(again):
                        result = again
                st["steps"][str(n)] = result
                if step_ok(result):
                    st["best"] = n
                elif generator_limited(result):
                    st["generator_limited"] = True
                elif host_limited(result):
                    st["host_limited_steps"].append(n)  # no verdict on the server: the ladder goes on
                else:
                    st["failed"] = n
        if self.args.refine:
            for server in servers:
                st = state[server.name]
                if st["failed"] is not None and st["best"] and "error" not in st:
                    mid = (st["best"] + st["failed"]) // 2
                    if mid not in (st["best"], st["failed"]):
                        result = self.safe_step(server, mid, st)
                        if result is not None:
                            st["steps"][str(mid)] = result
                        if result is not None and step_ok(result):
                            st["best"] = mid
        for st in state.values():
            st["limited_by_ladder"] = (st["failed"] is None and not st["generator_limited"]
                                       and not any(n > st["best"] for n in st["host_limited_steps"]))
        return state

    def close(self) -> None:
        try:
            self.gen.send({"op": "quit"})
        except OSError:
            pass
        self.gen.stop()


def dtls_phase(args: argparse.Namespace, tmp: Path, servers: list[Server]) -> dict[str, Any]:
    """DTLS-SRTP handshakes per second: the same client (dtls_srtp_client.py) against each server's
    DTLS endpoints over UDP, servers interleaved, ``--dtls-rounds`` rounds; the endpoints are set up
    before the clock starts (offer/answer is not part of the figure)."""
    client = Child([sys.executable, str(BENCH_DIR / "dtls_srtp_client.py")], tmp / "dtls-client.log",
                   args.nice)
    out: dict[str, Any] = {server.name: [] for server in servers}
    try:
        fingerprint = tuple(client.read(30)["fingerprint"])
        for round_number in range(args.dtls_rounds):
            for server in servers:
                targets = server.dtls_setup(args.dtls_handshakes, fingerprint)  # type: ignore[arg-type]
                try:
                    t0, (user0, sys0), (busy0, total0) = time.monotonic(), cpu_split(server.pid), machine_ticks()
                    result = client.ask({"op": "run", "targets": targets, "concurrency": args.dtls_concurrency,
                                         "timeout": 10}, 60 + args.dtls_handshakes / 10)
                    user1, sys1 = cpu_split(server.pid)
                    busy1, total1 = machine_ticks()
                    elapsed = time.monotonic() - t0
                finally:
                    server.teardown()
                cpu = user1 - user0 + sys1 - sys0
                machine = (os.cpu_count() or 1) * (busy1 - busy0) / max(1, total1 - total0)
                result.update(server_cpu=cpu, elapsed=elapsed,
                              per_second=result["done"] / result["wall"] if result["wall"] else 0.0,
                              per_server_cpu_second=result["done"] / cpu if cpu else float("inf"),
                              server_ms=1000 * cpu / max(1, result["done"]),
                              other_processes_cores=max(0.0, machine - (cpu + result["client_cpu"]) / elapsed))
                if isinstance(server, PythonServer) and server.counters:
                    result["server_ready"] = server.counters[-1].get("dtls_ready")
                out[server.name].append(result)
                print(f"dtls {server.name:9} round {round_number + 1}: {result['done']}/{len(targets)} handshakes "
                      f"in {result['wall']:.2f} s = {result['per_second']:.0f}/s "
                      f"(client {100 * result['client_cpu'] / result['wall']:.0f}% core, "
                      f"server {100 * cpu / elapsed:.0f}% core = {result['server_ms']:.2f} ms each, "
                      f"{result['per_server_cpu_second']:.0f}/s per server core); "
                      f"p50 {result['latency_p50_ms']:.1f} ms p99 {result['latency_p99_ms']:.1f} ms; "
                      f"failed {result['failed']} {result['failures'] or ''}; "
                      f"others {result['other_processes_cores']:.1f} cores", flush=True)
    finally:
        client.stop()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="role")
    g = sub.add_parser("generate")
    g.add_argument("--sockets", type=int, default=64)
    s = sub.add_parser("serve")
    s.add_argument("--mode", choices=["relay", "echo", "rawecho", "rawrelay"], default="relay")
    s.add_argument("--ports", default="30000-39999")
    s.add_argument("--coalesce", type=float, default=0.0)
    s.add_argument("--profile")
    parser.add_argument("--modes", default="plain,srtp,dtls",
                        help="plain (RTP), srtp (SDES-SRTP on both legs), dtls (handshakes/s); comma-separated")
    parser.add_argument("--srtp", action="store_true", help="only the SDES-SRTP calls (--modes srtp)")
    parser.add_argument("--dtls", action="store_true", help="only the DTLS handshakes (--modes dtls)")
    parser.add_argument("--servers", default="echo,rawecho,rawrelay,minisip,rtpengine")
    parser.add_argument("--ladder", default="100,200,300,400,500,600,800,1000,1200")
    parser.add_argument("--srtp-ladder", default="50,100,150,200,250,300,400,500,600",
                        help="the ladder of the SRTP part (finer: SRTP costs a relay about twice as much)")
    parser.add_argument("--duration", type=float, default=6.0, help="measured seconds per step")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--retry", type=int, default=1, help="run a failing step once more (0: never)")
    parser.add_argument("--steal-retries", type=int, default=3,
                        help="run a failing step again while the host stole > 5%% of the servers' CPUs (steal time)")
    parser.add_argument("--steal-pause", type=float, default=5.0, help="seconds to wait before such a retry")
    parser.add_argument("--refine", type=int, default=1, help="one bisection step after the first failure (0: none)")
    parser.add_argument("--direct", type=int, default=10, help="calibration streams generator-to-generator")
    parser.add_argument("--cpu-calls", type=int, default=300, help="calls for the side-by-side CPU per packet")
    parser.add_argument("--sockets", type=int, default=64, help="generator sockets per side")
    parser.add_argument("--minisip-ports", default="auto", help="the relay's port range (auto: chosen at run time)")
    parser.add_argument("--rtpengine-ports", default="auto", help="rtpengine's port range (auto: chosen at run time)")
    parser.add_argument("--rtpengine-threads", type=int, default=1)
    parser.add_argument("--ng-port", type=int, default=0, help="rtpengine's ng port (0: a free one at run time)")
    parser.add_argument("--dtls-handshakes", type=int, default=1000, help="handshakes per server and round")
    parser.add_argument("--dtls-concurrency", type=int, default=16, help="handshakes in flight at once")
    parser.add_argument("--dtls-rounds", type=int, default=2)
    parser.add_argument("--generator", choices=["c", "python"], default="c",
                        help="traffic generator: bench/rtpgen.c built with gcc (default; falls back to python)")
    parser.add_argument("--generator-wait", choices=["spin", "block"], default="spin",
                        help="spin (default, with the C generator on 2+ CPUs): the generator polls on CPU 0 without "
                             "sleeping and the servers run on the others, so a server's sendto wakes no one, as to "
                             "a remote phone; block: the generator sleeps in epoll_wait and every server pays the "
                             "generator's wake-ups (the figures before 2026-12-02 evening)")
    parser.add_argument("--coalesce", type=float, default=0.0,
                        help="MediaRelay(coalesce=...): seconds the relay's shared reader batches wake-ups under load")
    parser.add_argument("--nice", type=int, default=0,
                        help="niceness of the generator and every server (e.g. -10 as root on a shared machine)")
    parser.add_argument("--profile-relay", metavar="FILE",
                        help="run minisip's relay process under cProfile and write its stats to FILE at the end")
    parser.add_argument("--quick", action="store_true", help="3 s steps, coarse ladder")
    parser.add_argument("--json", help="write all results to this file")
    args = parser.parse_args()
    if args.role == "generate":
        generate_main(args.sockets)
        return 0
    if args.role == "serve":
        serve_main(args.mode, args.ports, args.coalesce, args.profile)
        return 0
    if args.quick:
        args.duration, args.ladder, args.srtp_ladder = 3.0, "200,400,800,1200", "100,200,300,600"
        args.dtls_handshakes = min(args.dtls_handshakes, 300)
    args.ladder = [int(x) for x in args.ladder.split(",")]
    args.srtp_ladder = [int(x) for x in args.srtp_ladder.split(",")]
    modes = ["srtp"] if args.srtp else ["dtls"] if args.dtls else args.modes.split(",")
    if args.srtp and args.dtls:
        modes = ["srtp", "dtls"]
    auto = pick_port_ranges(2)
    if args.minisip_ports == "auto":
        args.minisip_ports = auto[0]
    if args.rtpengine_ports == "auto":
        args.rtpengine_ports = auto[1]
    print(f"ports: minisip relay {args.minisip_ports}, rtpengine {args.rtpengine_ports}", flush=True)
    names = args.servers.split(",")
    raise_fd_limit()
    results: dict[str, Any] = {"modes": modes, "minisip_ports": args.minisip_ports,
                               "rtpengine_ports": args.rtpengine_ports, "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    with tempfile.TemporaryDirectory(prefix="media-bench-") as tmp:
        bench = None if modes == ["dtls"] else Bench(args, Path(tmp))
        if bench is not None:
            results["generator"] = f"{bench.generator_kind}, {bench.generator_wait}"
        try:
            for mode in modes:
                if mode == "dtls":
                    print("\n== DTLS-SRTP handshakes over UDP", flush=True)
                    servers = start_servers([n for n in names if n in ("minisip", "rtpengine")], args, Path(tmp),
                                            False, results)
                    try:
                        results["dtls"] = dtls_phase(args, Path(tmp), servers)
                    finally:
                        for server in servers:
                            server.stop()
                    continue
                assert bench is not None
                srtp = mode == "srtp"
                if srtp and not bench.generator_srtp:
                    results["srtp_error"] = "the generator has no SRTP (the Python one has none; rtpgen.c needs gcc and Debian libssl-dev)"
                    print(f"srtp: {results['srtp_error']}", flush=True)
                    continue
                bench.srtp = srtp
                print(f"\n== {'SDES-SRTP (AES_CM_128_HMAC_SHA1_80 both legs)' if srtp else 'plain RTP'} calls; "
                      f"generator: {bench.generator_kind}, {bench.generator_wait}; CPU per packet at "
                      f"{args.cpu_calls} calls, then the ladder",
                      flush=True)
                servers = start_servers(names, args, Path(tmp), srtp, results, bench.server_cpus)
                try:
                    part: dict[str, Any] = {"cpu": bench.cpu_phase(servers)}
                    echoes = [s for s in servers if s.name.endswith("echo")]
                    for server in echoes:
                        server.stop()
                    part["ladder"] = bench.ladders([s for s in servers if s not in echoes])
                    results[mode] = part
                finally:
                    for server in servers:
                        server.stop()
        finally:
            if bench is not None:
                bench.close()
    report(results, args)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


def report(results: dict[str, Any], args: argparse.Namespace) -> None:
    labels = {"echo": "Twisted UDP echo", "rawecho": "raw epoll Python echo", "rawrelay": "raw epoll Python relay",
              "minisip": "minisip relay", "rtpengine": "rtpengine"}
    for mode in ("plain", "srtp"):
        part = results.get(mode)
        if part is None:
            if mode == "srtp" and "srtp_error" in results:
                print(f"\nSDES-SRTP calls: ERROR {results['srtp_error']}")
            continue
        what = ("SDES-SRTP calls, AES_CM_128_HMAC_SHA1_80 on both legs, unprotected and re-protected by the relay"
                if mode == "srtp" else "plain RTP calls")
        print(f"\nresult, {what} (loss <= 0.01% and added jitter p99 <= 5 ms; loopback, "
              f"172-byte RTP{' + 10-byte SRTP tag' if mode == 'srtp' else ''} every 20 ms both ways)")
        ladder = part.get("ladder", {})
        mini = ladder.get("minisip")
        engine = ladder.get("rtpengine")

        def figure(r: dict[str, Any] | None) -> str:
            if r is None:
                return "not run"
            note = " (ladder top, not a limit)" if r["limited_by_ladder"] else ""
            if r.get("generator_limited"):
                note = " (at least: the next step was limited by the generator/machine, not the server)"
            if r.get("error"):
                note += f" (the server died at {r['failed']} calls: {r['error']})"
            stolen = [n for n in r.get("host_limited_steps", ()) if n > r["best"]]
            if stolen:
                note += f" (no verdict at {', '.join(map(str, stolen))}: the host stole the servers' CPUs in every try)"
            return f"{r['best']} calls{note}"

        print(f"  minisip MediaRelay, one process:   {figure(mini)}")
        if "rawrelay" in ladder:
            print(f"  raw epoll Python relay (the floor): {figure(ladder['rawrelay'])}")
        if "rtpengine_error" in results:
            print(f"  rtpengine: ERROR {results['rtpengine_error']}")
        else:
            print(f"  rtpengine userspace, {args.rtpengine_threads} thread(s): {figure(engine)}")
        if mini and engine and engine["best"]:
            print(f"  ratio minisip/rtpengine: {mini['best'] / engine['best']:.2f}")
        cpu = {name: r["cpu_us_per_packet"] for name, r in part.get("cpu", {}).items()}
        if cpu:
            split = {name: (r["user_us_per_packet"], r["kernel_us_per_packet"])
                     for name, r in part.get("cpu", {}).items()}
            print(f"  server CPU per packet at {args.cpu_calls} calls: "
                  + ", ".join(f"{labels[k]} {v:.1f} us (user {split[k][0]:.1f} + kernel {split[k][1]:.1f})"
                              for k, v in cpu.items()))
            behind = [k for k, r in part.get("cpu", {}).items() if r["loss"] > 0.01]
            if behind:
                print(f"  (fell behind at {args.cpu_calls} calls, loss > 1%: {', '.join(labels[k] for k in behind)}; "
                      f"its CPU per packet is understated: the backlog is worked off after the step)")
            gen = {name: 100 * r["generator_cpu"] / r["elapsed"] for name, r in part.get("cpu", {}).items()}
            print("  generator CPU meanwhile: " + ", ".join(f"{labels[k]} {v:.0f}% core" for k, v in gen.items()))
            for name in ("rawrelay", "minisip", "rtpengine"):
                if name in cpu:
                    print(f"  {labels[name]}: one core would carry about {1e6 / (100 * cpu[name]):.0f} calls "
                          f"(1 s / (100 packets/s x {cpu[name]:.1f} us))")
        for base in ("echo", "rawecho", "rawrelay"):
            if "minisip" in cpu and base in cpu:
                target = " (target <= 2)" if mode == "plain" else ""
                print(f"  minisip relay / {labels[base]}: x{cpu['minisip'] / cpu[base]:.2f} per packet{target}")
        if "minisip" in cpu and "rtpengine" in cpu:
            print(f"  minisip relay / rtpengine: x{cpu['minisip'] / cpu['rtpengine']:.2f} per packet")
    dtls = results.get("dtls")
    if dtls:
        print(f"\nresult, DTLS-SRTP handshakes over UDP (server role, ECDSA P-256 certificates, one client process, "
              f"{args.dtls_concurrency} in flight; best of {args.dtls_rounds} rounds)")
        best: dict[str, dict[str, Any]] = {}
        for name, rounds in dtls.items():
            if rounds:
                best[name] = max(rounds, key=lambda r: r["per_second"])
                cpu_best = max(r["per_server_cpu_second"] for r in rounds)
                failed = sum(r["failed"] for r in rounds)
                print(f"  {labels.get(name, name)}: {best[name]['per_second']:.0f} handshakes/s "
                      f"({cpu_best:.0f}/s per server core, {min(r['server_ms'] for r in rounds):.2f} ms of server CPU "
                      f"each; {failed} failed)")
        if "minisip" in best and "rtpengine" in best and best["rtpengine"]["per_second"]:
            ratio = best["minisip"]["per_second"] / best["rtpengine"]["per_second"]
            cpu_ratio = (max(r["per_server_cpu_second"] for r in dtls["minisip"])
                         / max(r["per_server_cpu_second"] for r in dtls["rtpengine"]))
            print(f"  ratio minisip/rtpengine: {ratio:.2f} handshakes/s, {cpu_ratio:.2f} per server core "
                  f"(the Python client takes a core of its own: the wall figure is bounded by it)")


if __name__ == "__main__":
    sys.exit(main())
