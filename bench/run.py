#!/usr/bin/env python3
"""minisip benchmarks against C and Python baselines (see bench/README.md).

    python3 bench/run.py                       # everything, about 7-8 min
    python3 bench/run.py --quick               # everything, coarse, about 1.5 min
    python3 bench/run.py --only register --duration 30 --json out.json

1. authenticated REGISTER/s: minisip vs Kamailio (SIPp UAC over UDP, digest MD5)
2. calls/s through a B2BUA: minisip (caller authenticates, callee = registered extension 1000)
   vs Sippy b2bua_simple (no authentication); SIPp UAC -> B2BUA -> SIPp UAS, no media
3. memory per registration: minisip RSS growth over 10,000 registrations vs Kamailio shared memory
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from proctrack import ProcessTracker
from ratesearch import SearchResult, find_sustained_rate
from report import MEM_TARGET_BYTES, MemoryResult, print_report, summary_rows
from servers import (
    DEFAULT_MINISIP_CMD,
    HOST,
    SCENARIOS,
    UAS_PORT,
    KamailioServer,
    MinisipServer,
    Server,
    ServerStartError,
    SippUAS,
    SippyB2BUA,
)
from sippctl import (
    MAX_FAIL_RATIO,
    MIN_RATE_RATIO,
    SippLoad,
    StepResult,
    run_load,
    run_once,
)

USERS = range(1000, 11000)  # extensions 1000..10999, password = number
CALLERS = range(1001, 11000)  # callers (1000 is the callee)
CALLEE = "1000"
REG_LADDER = [250, 500, 1000, 2000, 4000, 8000, 16000, 32000]
CALL_LADDER = [25, 50, 100, 200, 400, 800, 1600, 3200]
QUICK_REG_LADDER = [250, 1000, 4000, 16000]
QUICK_CALL_LADDER = [25, 100, 400, 1600]
QUICK_USERS = 2000
UAC_PORT_BASE = 25100  # each step uses the next port (25100..25189) so late packets of a step never reach the next
UAC_MEDIA_PORT = 26100
REG_HELPER_PORT = 25095
REG_UAC_PORT = 25097  # all REGISTER traffic to one server comes from this port: one Contact per user
WARM_RATE = 2000  # warm-up: 10,000 REGISTERs at up to this rate ...
WARM_CONCURRENCY = 20  # ... with at most this many open at once, so the server sets the pace (never overloaded)
WARM_TIME_LIMIT = 300.0  # seconds; a server slower than ~35 REGISTER/s fails the warm-up
FIRST_USERS = 10  # registered before the memory baseline is taken (first-use allocations)


class BenchError(RuntimeError):
    """A target cannot be benchmarked (as opposed to a step that merely failed)."""


@dataclass
class Settings:
    only: str | None
    servers: str
    duration: float
    probe_duration: float
    refine: int
    hold_ms: int
    settle: float
    users: int
    reg_ladder: list[int]
    call_ladder: list[int]
    minisip_cmd: str
    python: str
    json_path: Path | None
    keep_temp: bool
    quick: bool
    compare: Path | None = None


BEFORE = "minisip-before"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class Bench:
    def __init__(self, settings: Settings, tracker: ProcessTracker, tmp: Path) -> None:
        self.s = settings
        self.tracker = tracker
        self.tmp = tmp
        self.step_no = 0
        self.minisip_broken: str | None = None
        self._reg_servers: dict[str, Server] = {}
        self.memory: dict[str, MemoryResult] = {}
        self._server_seq = 0
        self.users_csv = tmp / "users.csv"  # the first `settings.users` extensions
        self.callers_csv = tmp / "callers.csv"
        self.callee_csv = tmp / "callee.csv"
        self._write_csv(self.users_csv, USERS[: settings.users])
        self._write_csv(self.callers_csv, CALLERS)
        self._write_csv(self.callee_csv, [int(CALLEE)])

    @staticmethod
    def _write_csv(path: Path, users: range | list[int]) -> None:
        lines = ["SEQUENTIAL"] + [f"{u};[authentication username={u} password={u}]" for u in users]
        path.write_text("\n".join(lines) + "\n")

    def next_port(self) -> int:
        port = UAC_PORT_BASE + self.step_no % 90
        self.step_no += 1
        return port

    def stepdir(self, bench: str, target: str, rate: int, kind: str) -> Path:
        path = self.tmp / bench / target / f"{self.step_no:03d}-{kind}-{rate}"
        path.mkdir(parents=True, exist_ok=True)
        return path

    # -- servers -------------------------------------------------------------------------------------

    def make_server(self, target: str, workdir: Path) -> Server:
        if target == "minisip":
            return MinisipServer(self.tracker, workdir, USERS, command=self.s.minisip_cmd, python=self.s.python)
        if target == BEFORE:
            assert self.s.compare is not None
            return MinisipServer(self.tracker, workdir, USERS, command=self.s.minisip_cmd, python=self.s.python,
                                 repo=self.s.compare)
        if target == "kamailio":
            return KamailioServer(self.tracker, workdir)
        if target == "sippy":
            return SippyB2BUA(self.tracker, workdir)
        raise ValueError(target)

    def start_server(self, target: str, workdir: Path) -> Server:
        if target == "minisip" and self.minisip_broken:
            raise BenchError(f"skipped: minisip did not start earlier ({self.minisip_broken.splitlines()[0]})")
        server = self.make_server(target, workdir)
        try:
            server.start()
        except ServerStartError as exc:
            if target == "minisip":
                self.minisip_broken = str(exc)
            raise BenchError(str(exc)) from exc
        return server

    def targets(self, baseline: str, before: bool = True) -> list[str]:
        chosen = {"both": ["minisip", baseline], "minisip": ["minisip"], "baseline": [baseline]}
        targets = chosen[self.s.servers]
        if self.s.compare is not None and before and "minisip" in targets:
            targets.insert(1, BEFORE)   # the same minisip benchmark on another checkout, in the same run
        return targets

    # -- steps ---------------------------------------------------------------------------------------

    @staticmethod
    def print_step(res: StepResult) -> None:
        verdict = "PASS" if res.passed else "FAIL"
        extra = f" ({res.aborted})" if res.aborted else ""
        errs = ", ".join(f"{k} x{v}" for k, v in list(res.errors.items())[:2])
        note = f" {res.note}" if res.note else ""
        log(
            f"  {res.target:8s} {res.kind:7s} {res.rate:6d}/s {res.duration:5.1f}s: ok {res.successful}/{res.calls}"
            f" achieved {res.achieved:8.1f}/s resp {res.response_ms:5.0f} ms"
            f" cpu srv {res.server_cpu_pct or 0:3.0f}% sipp {res.client_cpu_pct or 0:3.0f}% {verdict}{extra}{note}"
            f"{' [' + errs + ']' if errs and not res.passed else ''}"
        )

    @staticmethod
    def measure_memory(server: Server) -> int | None:
        try:
            if isinstance(server, MinisipServer):
                return server.rss()
            if isinstance(server, KamailioServer):
                return server.shm_used()
        except (OSError, RuntimeError):
            return None
        return None

    def register_users(self, target: str, server: Server, workdir: Path, count: int) -> tuple[StepResult, float]:
        """REGISTER the first `count` bench users, paced by the server (at most WARM_CONCURRENCY open)."""
        t0 = time.monotonic()
        res = run_load(self.tracker, SippLoad(
            scenario=SCENARIOS / "reg_auth.xml", remote=f"{HOST}:{server.sip_port}", local_port=REG_UAC_PORT,
            inf=self.users_csv, rate=WARM_RATE, duration=count / WARM_RATE, workdir=workdir,
            concurrency=WARM_CONCURRENCY, time_limit=WARM_TIME_LIMIT), target, cpu_probe=server.cpu_seconds)
        return res, time.monotonic() - t0

    def measure_registrations(self, target: str, server: Server, workdir: Path) -> tuple[StepResult, MemoryResult]:
        """On a fresh server: register every bench user once, reading the server's memory before and after.

        The first FIRST_USERS users are registered before the baseline reading (first-use allocations);
        they are registered again in the bulk run with the same Contact, so they add no bindings.
        """
        label = "minisip" if target.startswith("minisip") else KamailioServer.label
        metric = "VmRSS" if target.startswith("minisip") else "shared memory real_used (kamcmd core.shmmem)"
        mem = MemoryResult(target=target, label=label, metric=metric)
        first, _ = self.register_users(target, server, workdir / "warmup-first", FIRST_USERS)
        time.sleep(1.0)
        mem.before = self.measure_memory(server)
        bulk, took = self.register_users(target, server, workdir / "warmup", self.s.users)
        time.sleep(2.0)
        mem.after = self.measure_memory(server)
        mem.registrations = max(0, bulk.successful - first.successful)
        mem.failed = bulk.failed + first.failed
        rate = round(bulk.successful / took, 1) if took else None
        mem.extra = {
            "registering_seconds": round(took, 1), "registering_rate": rate, "max_open": WARM_CONCURRENCY,
            "first_registrations": first.successful, "server_cpu_pct": bulk.server_cpu_pct,
        }
        if isinstance(server, MinisipServer) and mem.after:
            mem.extra["rss_mib_after"] = round(mem.after / 2**20, 1)
        if isinstance(server, KamailioServer):
            mem.extra["location_records"] = server.location_records()
        if mem.failed:
            mem.note = f"{mem.failed} of {bulk.calls + first.calls} REGISTERs failed"
        if mem.before is None or mem.after is None:
            mem.error = f"could not read {metric}"
        elif mem.registrations == 0:
            mem.error = "no registration succeeded"
        if server.proc is None or not server.proc.alive():
            mem.error = "server exited while registering"
        per = "-" if mem.per_registration is None else f"{mem.per_registration:,.0f} B"
        log(f"  {target:8s} registered {bulk.successful}/{bulk.calls} users in {took:.1f} s ({rate}/s,"
            f" {WARM_CONCURRENCY} open at most); {metric}: {mem.before} -> {mem.after} = {per}/registration"
            f"{'; ERROR: ' + mem.error if mem.error else ''}")
        if self.s.settle > 0 and not mem.error and server.proc is not None and server.proc.alive():
            log(f"  {target:8s} waiting {self.s.settle:g} s (transactions, nonces expire) to measure again")
            time.sleep(self.s.settle)
            mem.settled = self.measure_memory(server)
            mem.settle_s = self.s.settle
            per_settled = mem.per_registration_settled
            log(f"  {target:8s} {metric} after {self.s.settle:g} s: {mem.settled}"
                f" = {'-' if per_settled is None else f'{per_settled:,.0f} B'}/registration")
        return bulk, mem

    def register_server(self, target: str, needed: int) -> tuple[Server, str]:
        """The running registrar for `target`, or a fresh one on which the needed bench users are registered.

        REGISTER steps share one server and one UAC port (hence one Contact per user), so a step measures
        binding refreshes at a steady state, not first-time inserts. A failed step leaves an overloaded
        server behind: it is replaced before the next step. The first server of a target registers every
        bench user and gives the memory-per-registration figure; later ones only the users a step needs.
        """
        server = self._reg_servers.get(target)
        if server is not None and server.proc is not None and server.proc.alive():
            return server, ""
        self.drop_register_server(target)
        self._server_seq += 1
        workdir = self.tmp / "register" / target / f"server-{self._server_seq:02d}"
        server = self.start_server(target, workdir)
        self._reg_servers[target] = server
        log(f"  {target:8s} fresh server (ready after {server.startup_seconds:.1f} s)")
        error = ""
        if target not in self.memory:
            warm, mem = self.measure_registrations(target, server, workdir)
            mem.note = (mem.note + "; " if mem.note else "") + "measured on the REGISTER benchmark's first server"
            self.memory[target] = mem
            error = mem.error or ""
        else:
            warm, took = self.register_users(target, server, workdir / "warmup", min(needed, self.s.users))
            log(f"  {target:8s} registered {warm.successful}/{warm.calls} users in {took:.1f} s")
        if warm.successful < 0.99 * warm.calls or error:
            self.drop_register_server(target)
            raise BenchError(
                f"registering the bench users failed: {warm.successful}/{warm.calls} REGISTERs ok"
                f"{' (' + warm.aborted + ')' if warm.aborted else ''}{'; ' + error if error else ''}"
                f"{'; ' + ', '.join(f'{k} x{v}' for k, v in warm.errors.items()) if warm.errors else ''}"
            )
        return server, f"fresh server, {warm.successful} users registered first"

    def drop_register_server(self, target: str) -> None:
        server = self._reg_servers.pop(target, None)
        if server is not None:
            server.stop()

    def register_step(self, target: str, rate: int, duration: float, kind: str) -> StepResult:
        server, note = self.register_server(target, needed=max(1, round(rate * duration)))
        workdir = self.stepdir("register", target, rate, kind)
        self.step_no += 1
        load = SippLoad(
            scenario=SCENARIOS / "reg_auth.xml", remote=f"{HOST}:{server.sip_port}",
            local_port=REG_UAC_PORT, inf=self.users_csv, rate=rate, duration=duration,
            workdir=workdir / "uac",
        )
        res = run_load(self.tracker, load, target, cpu_probe=server.cpu_seconds)
        res.kind = kind
        if note:
            res.note = (res.note + "; " if res.note else "") + note
        if server.proc is None or not server.proc.alive():
            res.passed = False
            res.note = (res.note + "; " if res.note else "") + "server exited during the step"
        self.print_step(res)
        if not res.passed:
            self.drop_register_server(target)  # overloaded: the next step gets a fresh server
        return res

    def register_callee(self, server: Server, workdir: Path) -> None:
        """REGISTER extension 1000 with its Contact at the SIPp UAS (one-shot SIPp run, digest auth)."""
        argv = [
            f"{HOST}:{server.sip_port}", "-sf", str(SCENARIOS / "reg_contact.xml"), "-inf", str(self.callee_csv),
            "-key", "contact_port", str(UAS_PORT), "-i", HOST, "-p", str(REG_HELPER_PORT),
            "-m", "1", "-recv_timeout", "2000",
        ]
        code, stats = run_once(self.tracker, argv, workdir, "sipp-register-callee", time_limit=15)
        if code != 0 or stats is None or stats.successful != 1:
            raise BenchError(
                f"could not REGISTER extension {CALLEE} (contact {HOST}:{UAS_PORT}) at {server.name}: "
                f"sipp exit code {code}; see {workdir}"
            )

    def call_step(self, target: str, rate: int, duration: float, kind: str) -> StepResult:
        workdir = self.stepdir("calls", target, rate, kind)
        server = self.start_server(target, workdir)
        uas = SippUAS(self.tracker, workdir / "uas")
        try:
            scenario = "uac_call.xml"
            if target in ("minisip", BEFORE):
                self.register_callee(server, workdir / "register-callee")
                scenario = "uac_call_auth.xml"
            uas.start(time_limit=duration + 90)
            load = SippLoad(
                scenario=SCENARIOS / scenario, remote=f"{HOST}:{server.sip_port}", local_port=self.next_port(),
                inf=self.callers_csv, rate=rate, duration=duration, workdir=workdir / "uac",
                hold_ms=self.s.hold_ms, service=CALLEE, media_port=UAC_MEDIA_PORT,
            )
            res = run_load(self.tracker, load, target, cpu_probe=server.cpu_seconds)
            res.kind = kind
            if server.proc is not None and not server.proc.alive():
                res.passed = False
                res.note = (res.note + "; " if res.note else "") + "server exited during the step"
        finally:
            uas.stop()
            server.stop()
        self.print_step(res)
        return res

    def search(self, bench: str, target: str, label: str, ladder: list[int],
               step: Callable[[str, int, float, str], StepResult]) -> SearchResult:
        result = SearchResult(target=target, label=label)
        probe = self.s.probe_duration
        plan = (f"probes {probe:g} s, confirmation {self.s.duration:g} s" if 0 < probe < self.s.duration
                else f"steps {self.s.duration:g} s")
        log(f"[{bench}] {label}: ladder {ladder}, {plan}, {self.s.refine} bisection step(s)")

        def run_step(rate: int, duration: float, kind: str) -> StepResult:
            res = step(target, rate, duration, kind)
            result.steps.append(res)
            return res

        try:
            best, _steps, note = find_sustained_rate(
                run_step, ladder, self.s.duration, self.s.probe_duration, self.s.refine
            )
            result.best = best
            result.note = note
        except BenchError as exc:
            result.error = str(exc)
            log(f"[{bench}] {target}: ERROR: {exc}")
        log(f"[{bench}] {label}: sustained {result.best if result.best is not None else '-'}/s"
            f"{' (' + result.note + ')' if result.note else ''}")
        return result

    # -- benchmarks ----------------------------------------------------------------------------------

    def bench_register(self) -> dict[str, SearchResult]:
        labels = {"minisip": "minisip", "kamailio": KamailioServer.label, BEFORE: f"minisip at {self.s.compare}"}
        out: dict[str, SearchResult] = {}
        for target in self.targets("kamailio"):
            try:
                out[target] = self.search("register", target, labels[target], self.s.reg_ladder, self.register_step)
            finally:
                self.drop_register_server(target)
        return out

    def bench_calls(self) -> dict[str, SearchResult]:
        labels = {"minisip": "minisip (digest auth + registrar lookup)", "sippy": SippyB2BUA.label + ", no auth",
                  BEFORE: f"minisip at {self.s.compare} (digest auth + registrar lookup)"}
        out: dict[str, SearchResult] = {}
        for target in self.targets("sippy"):
            out[target] = self.search("calls", target, labels[target], self.s.call_ladder, self.call_step)
        return out

    def bench_memory(self) -> dict[str, MemoryResult]:
        out: dict[str, MemoryResult] = {}
        for target in self.targets("kamailio", before=False):
            if target in self.memory:  # already measured on the REGISTER benchmark's first server
                out[target] = self.memory[target]
                continue
            label = "minisip" if target == "minisip" else KamailioServer.label
            log(f"[memory] {label}: fresh server, {self.s.users} registrations")
            workdir = self.tmp / "memory" / target
            try:
                server = self.start_server(target, workdir)
            except BenchError as exc:
                out[target] = MemoryResult(target=target, label=label, error=str(exc))
                log(f"[memory] {target}: ERROR: {exc}")
                continue
            try:
                _bulk, out[target] = self.measure_registrations(target, server, workdir)
            finally:
                server.stop()
        return out


def tool_versions() -> dict[str, str]:
    def first_line(argv: list[str]) -> str:
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"unavailable ({exc})"
        text = (out.stdout + out.stderr).strip().splitlines()
        return next((ln.strip() for ln in text if ln.strip()), "")

    versions = {
        "python": platform.python_version(),
        "sipp": first_line(["sipp", "-v"]),
        "kamailio": first_line(["kamailio", "-v"]),
    }
    try:
        from importlib.metadata import version

        versions["sippy"] = version("sippy")
    except Exception:  # noqa: BLE001 - only informative
        versions["sippy"] = "unavailable"
    return versions


def parse_ladder(text: str) -> list[int]:
    values = sorted({int(v) for v in text.split(",") if v.strip()})
    if not values or values[0] <= 0:
        raise argparse.ArgumentTypeError("ladder: comma-separated positive rates")
    return values


def parse_args(argv: list[str] | None) -> Settings:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", choices=["register", "calls", "memory"], help="run one benchmark only")
    p.add_argument("--servers", choices=["both", "minisip", "baseline"], default="both",
                   help="which side(s) to measure (default both)")
    p.add_argument("--duration", type=float, default=None,
                   help="seconds of a full step (default 20; --quick 3)")
    p.add_argument("--probe-duration", type=float, default=None,
                   help="seconds of each ladder/bisection probe; the best probe is then confirmed at --duration "
                        "(default 5; --quick 0 = no separate probes, every step runs --duration)")
    p.add_argument("--refine", type=int, default=None, help="bisection steps after the first failure (default 2; "
                   "--quick 1)")
    p.add_argument("--quick", action="store_true",
                   help=f"about 2 minutes: 3 s steps, no confirmation, coarser ladders, {QUICK_USERS} users for "
                        "the REGISTER and memory metrics, no memory settle")
    p.add_argument("--hold-ms", type=int, default=500, help="call hold time between ACK and BYE (default 500)")
    p.add_argument("--users", type=int, default=None,
                   help=f"registered users for the REGISTER and memory metrics (default {len(USERS)}; "
                        f"--quick {QUICK_USERS})")
    p.add_argument("--settle", type=float, default=None,
                   help="memory metric: measure again this many seconds after the registrations, once "
                        "transactions and nonces have expired (default 35; --quick 0 = skip)")
    p.add_argument("--reg-ladder", type=parse_ladder, default=None,
                   help=f"REGISTER/s ladder (default {','.join(map(str, REG_LADDER))}; "
                        f"--quick {','.join(map(str, QUICK_REG_LADDER))})")
    p.add_argument("--call-ladder", type=parse_ladder, default=None,
                   help=f"calls/s ladder (default {','.join(map(str, CALL_LADDER))}; "
                        f"--quick {','.join(map(str, QUICK_CALL_LADDER))})")
    p.add_argument("--minisip-cmd", default=os.environ.get("MINISIP_BENCH_CMD", DEFAULT_MINISIP_CMD),
                   help="command template ({python}, {config}, {datadir}); run from the repository root with "
                        f"PYTHONPATH=repo (default: {DEFAULT_MINISIP_CMD!r})")
    p.add_argument("--python", default=sys.executable, help="interpreter for {python} (default: this one)")
    p.add_argument("--json", dest="json_path", type=Path, help="write all results as JSON to this file")
    p.add_argument("--keep-temp", action="store_true", help="keep the temporary directory (logs, sipp files)")
    p.add_argument("--compare", type=Path, metavar="DIR",
                   help="also measure minisip from another checkout (e.g. a worktree of the commit before a "
                        "change) in the same run, for REGISTER/s and calls/s, and print the ratio")
    a = p.parse_args(argv)
    quick = bool(a.quick)

    def pick(value: Any, default: Any, quick_default: Any) -> Any:
        return value if value is not None else (quick_default if quick else default)

    duration = float(pick(a.duration, 20.0, 3.0))
    probe = float(pick(a.probe_duration, 5.0, 0.0))
    refine = int(pick(a.refine, 2, 1))
    settle = float(pick(a.settle, 35.0, 0.0))
    users = int(pick(a.users, len(USERS), QUICK_USERS))
    if duration <= 0 or probe < 0 or refine < 0 or settle < 0 or a.hold_ms < 0:
        p.error("durations, --refine and --hold-ms must not be negative (and --duration > 0)")
    if not FIRST_USERS < users <= len(USERS):
        p.error(f"--users must be between {FIRST_USERS + 1} and {len(USERS)}")
    return Settings(
        only=a.only, servers=a.servers, duration=duration, probe_duration=probe, refine=refine, hold_ms=a.hold_ms,
        settle=settle, users=users, reg_ladder=pick(a.reg_ladder, REG_LADDER, QUICK_REG_LADDER),
        call_ladder=pick(a.call_ladder, CALL_LADDER, QUICK_CALL_LADDER), minisip_cmd=a.minisip_cmd,
        python=a.python, json_path=a.json_path, keep_temp=a.keep_temp, quick=quick,
        compare=a.compare.resolve() if a.compare else None,
    )


def check_tools(settings: Settings) -> None:
    needed = ["sipp", "timeout"]
    if settings.servers != "minisip":
        if settings.only in (None, "register", "memory"):
            needed += ["kamailio", "kamcmd"]
        if settings.only in (None, "calls"):
            needed.append("b2bua_simple")
    missing = [t for t in needed if shutil.which(t) is None]
    if missing:
        raise SystemExit(f"missing tools: {', '.join(missing)} (install sip-tester, kamailio, and pip install sippy)")


def main(argv: list[str] | None = None) -> int:
    settings = parse_args(argv)
    check_tools(settings)
    tracker = ProcessTracker()
    tracker.install_handlers()
    tmp = Path(tempfile.mkdtemp(prefix="minisip-bench-"))
    started = time.time()
    results: dict[str, Any] = {}
    code = 0
    try:
        log(f"temp dir: {tmp}")
        bench = Bench(settings, tracker, tmp)
        if settings.only in (None, "register"):
            results["register"] = bench.bench_register()
        if settings.only in (None, "calls"):
            results["calls"] = bench.bench_calls()
        if settings.only in (None, "memory"):
            results["memory"] = bench.bench_memory()
    except KeyboardInterrupt:
        log("interrupted; stopping all processes")
        code = 130
    finally:
        tracker.stop_all()
        if settings.keep_temp:
            log(f"kept temp dir: {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    rows = summary_rows(results)
    if results:
        print_report(results, rows)
    errors = [r.error for group in results.values() for r in group.values() if r.error]
    if errors and code == 0:
        code = 1
    elapsed = time.time() - started
    print(f"\ntotal time {elapsed:.0f} s")
    if settings.json_path:
        payload = {
            "meta": {
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
                "elapsed_s": round(elapsed, 1), "host": platform.node(), "cpus": os.cpu_count(),
                "versions": tool_versions(), "interrupted": code == 130,
                "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(settings).items()},
                "rules": {"max_fail_ratio": MAX_FAIL_RATIO, "min_rate_ratio": MIN_RATE_RATIO,
                          "mem_target_bytes": MEM_TARGET_BYTES},
            },
            "summary": rows,
            **{name: {t: r.to_json() for t, r in group.items()} for name, group in results.items()},
        }
        settings.json_path.write_text(json.dumps(payload, indent=2) + "\n")
        log(f"wrote {settings.json_path}")
    return code


if __name__ == "__main__":
    sys.exit(main())
