"""Run SIPp load steps and read their `-trace_stat` CSV."""

from __future__ import annotations

import csv
import math
import re
import resource
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from proctrack import ProcessTracker, Tracked

SIPP = "sipp"
# SIPp's default socket buffer (64 KB) drops responses in bursts at a few thousand calls/s on loopback,
# which then shows up as server "failures"; the kernel caps this at net.core.rmem_max/wmem_max.
SIPP_BUFFER = ["-buff_size", "4194304"]
MAX_FAIL_RATIO = 0.001  # a step passes with strictly fewer failed calls than 0.1 %
MIN_RATE_RATIO = 0.95  # ... and an achieved rate of at least 95 % of the target


@dataclass
class SippStats:
    """One row of SIPp's statistics CSV (cumulative counters)."""

    elapsed: float = 0.0
    outgoing: int = 0
    successful: int = 0
    failed: int = 0
    current: int = 0
    retransmissions: int = 0
    response_ms: float = 0.0


def _epoch(field_value: str) -> float:
    # "2026-11-26\t07:29:55.068687\t1795678195.068687": the last tab-separated part is the epoch
    return float(field_value.split("\t")[-1])


def _duration_ms(value: str) -> float:
    # "00:00:00:001234" = hh:mm:ss:microseconds
    try:
        h, m, s, us = (int(x) for x in value.split(":"))
    except ValueError:
        return 0.0
    return (h * 3600 + m * 60 + s) * 1000.0 + us / 1000.0


def read_stats(path: Path) -> SippStats | None:
    """Last complete row of a SIPp stat file, or None if there is none yet."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return None
    lines = [ln for ln in text.split("\n") if ln.strip()]
    if len(lines) < 2:
        return None
    header = lines[0].rstrip(";").split(";")
    row_text = lines[-1] if text.endswith("\n") else (lines[-2] if len(lines) > 2 else "")
    if not row_text:
        return None
    row = next(csv.reader([row_text], delimiter=";"))
    if len(row) < len(header):
        return None
    rec = dict(zip(header, row))

    def num(name: str) -> int:
        try:
            return int(float(rec.get(name, "0") or 0))
        except ValueError:
            return 0

    try:
        elapsed = _epoch(rec["CurrentTime"]) - _epoch(rec["StartTime"])
    except (KeyError, ValueError):
        elapsed = 0.0
    return SippStats(
        elapsed=elapsed,
        outgoing=num("OutgoingCall(C)"),
        successful=num("SuccessfulCall(C)"),
        failed=num("FailedCall(C)"),
        current=num("CurrentCall"),
        retransmissions=num("Retransmissions(C)"),
        response_ms=_duration_ms(rec.get("ResponseTime1(C)", "")),
    )


@dataclass
class StepResult:
    """Outcome of one load step at one target rate."""

    target: str
    rate: int
    duration: float
    calls: int
    successful: int = 0
    failed: int = 0
    achieved: float = 0.0
    response_ms: float = 0.0
    retransmissions: int = 0
    server_cpu_pct: float | None = None
    client_cpu_pct: float | None = None
    passed: bool = False
    aborted: str = ""
    note: str = ""
    errors: dict[str, int] = field(default_factory=dict)
    kind: str = "probe"  # probe | confirm

    @property
    def fail_ratio(self) -> float:
        return self.failed / self.calls if self.calls else 1.0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["fail_ratio"] = round(self.fail_ratio, 6)
        data["achieved"] = round(self.achieved, 1)
        data["response_ms"] = round(self.response_ms, 3)
        return data


_ERROR_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("recv timeout", re.compile(r"receive timeout on message [^\s:]+:(\d+)")),
    ("unexpected", re.compile(r"Aborting call on unexpected message.*?received '([^\r\n']*)", re.DOTALL)),
    ("unexpected", re.compile(r"Aborting call on unexpected message.*?(while \w+ \(index \d+\))", re.DOTALL)),
    ("regexp", re.compile(r"Failed regexp match[^\n]*")),
    ("send failed", re.compile(r"(Unable to send [^\n]*|sendto[^\n]*failed[^\n]*)")),
    ("auth", re.compile(r"(?i)(authentication[^\n]*(?:fail|error)[^\n]*)")),
    ("unmapped", re.compile(r"Discarding message which can't be mapped")),
]


def summarize_errors(workdir: Path, limit_bytes: int = 4_000_000) -> dict[str, int]:
    """Count the kinds of events in SIPp's *_errors.log files (first `limit_bytes` of each)."""
    counts: Counter[str] = Counter()
    for path in workdir.glob("*_errors.log"):
        try:
            with open(path, errors="replace") as fh:
                text = fh.read(limit_bytes)
        except OSError:
            continue
        for event in re.split(r"\n(?=\d{4}-\d\d-\d\d\t)", text):
            for label, pattern in _ERROR_PATTERNS:
                match = pattern.search(event)
                if match:
                    detail = match.group(1) if match.groups() else ""
                    if label == "recv timeout":
                        detail = f"scenario element {detail}"
                    elif detail and not detail.startswith(("SIP/2.0", "while")):
                        detail = detail.split(" ", 1)[0]  # request: keep the method only
                    counts[f"{label}: {detail}".strip().rstrip(":")] += 1
                    break
    return dict(counts.most_common(6))


@dataclass
class SippLoad:
    """Parameters of one UAC load step."""

    scenario: Path
    remote: str  # "127.0.0.1:PORT"
    local_port: int
    inf: Path
    rate: int
    duration: float
    workdir: Path
    hold_ms: int = 0
    service: str | None = None  # -s (called user)
    media_port: int = 26100
    extra: Sequence[str] = ()
    # closed loop (warm-ups): at most `concurrency` calls open at once (SIPp -l), so the server sets the pace
    # and cannot be overloaded; the step may then take longer than `duration`, up to `time_limit` seconds
    concurrency: int | None = None
    time_limit: float | None = None

    @property
    def calls(self) -> int:
        return max(1, round(self.rate * self.duration))

    def argv(self, stat_file: Path, time_limit: float) -> list[str]:
        limit = self.concurrency or int(self.rate * (self.hold_ms / 1000.0 + 4.0)) + 50
        argv = [
            "timeout", "-k", "5", f"{math.ceil(time_limit)}",
            SIPP, self.remote,
            "-sf", str(self.scenario),
            "-inf", str(self.inf),
            "-i", "127.0.0.1", "-p", str(self.local_port), "-mp", str(self.media_port),
            "-r", str(self.rate), "-rp", "1000", "-m", str(self.calls), "-l", str(limit),
            "-d", str(self.hold_ms),
            "-trace_stat", "-stf", str(stat_file), "-fd", "1",
            "-recv_timeout", "2000", "-nostdin", "-trace_err", *SIPP_BUFFER,
        ]
        if self.service:
            argv += ["-s", self.service]
        argv += list(self.extra)
        return argv


def run_load(
    tracker: ProcessTracker,
    load: SippLoad,
    target: str,
    cpu_probe: Callable[[], float] | None = None,
    on_tick: Callable[[SippStats], None] | None = None,
) -> StepResult:
    """Run one SIPp UAC step; abort early once it cannot pass any more. Never raises on a failed step."""
    load.workdir.mkdir(parents=True, exist_ok=True)
    stat_file = load.workdir / "stat.csv"
    hold_s = load.hold_ms / 1000.0
    time_limit = load.time_limit or load.duration + hold_s + 25.0
    allowed_failures = max(0, math.ceil(load.calls * MAX_FAIL_RATIO) - 1)
    result = StepResult(target=target, rate=load.rate, duration=load.duration, calls=load.calls)

    cpu0 = cpu_probe() if cpu_probe else None
    children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall0 = time.monotonic()
    proc: Tracked = tracker.spawn(
        f"sipp-uac-{load.rate}", load.argv(stat_file, time_limit), load.workdir / "sipp.log", cwd=load.workdir
    )
    last: SippStats | None = None
    while proc.alive():
        time.sleep(0.25)
        stats = read_stats(stat_file)
        if stats is None:
            continue
        last = stats
        if on_tick:
            on_tick(stats)
        if stats.failed > allowed_failures:
            result.aborted = f"{stats.failed} failed calls after {stats.elapsed:.1f}s"
            break
        if (load.concurrency is None and stats.elapsed >= 4.0
                and stats.outgoing < 0.85 * load.rate * min(stats.elapsed, load.duration)):
            result.aborted = f"only {stats.outgoing} calls started in {stats.elapsed:.1f}s (client limit reached)"
            break
    wall = time.monotonic() - wall0
    if result.aborted:
        tracker.stop(proc, grace=2.0)
    else:
        code = tracker.wait(proc, timeout=time_limit + 10)
        if code is None:
            tracker.stop(proc)
        elif code not in (0, 1):  # 0 = all calls ok, 1 = at least one call failed; others = fatal
            result.note = f"sipp exit code {code}: {proc.log_tail(3)}"
    cpu1 = cpu_probe() if cpu_probe else None
    children1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    client = (children1.ru_utime + children1.ru_stime) - (children0.ru_utime + children0.ru_stime)
    if wall > 0 and not result.aborted:  # a killed SIPp is not always reaped by `timeout`: no usage then
        result.client_cpu_pct = 100.0 * client / wall
    if cpu0 is not None and cpu1 is not None and wall > 0:
        result.server_cpu_pct = 100.0 * (cpu1 - cpu0) / wall

    final = read_stats(stat_file) or last
    if final is None:
        result.failed = result.calls
        result.note = result.note or f"no statistics from sipp: {proc.log_tail(3)}"
        return result
    result.successful = final.successful
    result.retransmissions = final.retransmissions
    result.response_ms = final.response_ms
    # anything that did not complete counts as failed (lost, timed out, never started)
    result.failed = max(final.failed, result.calls - final.successful)
    # The last call started about `duration` s after the first and took hold + setup latency to complete:
    # subtract the hold time and the mean setup latency (SIPp's rtd), so that a constant latency does not
    # count against the rate while a growing backlog (late calls slower than the mean) still does.
    tail = 0.0 if result.aborted else hold_s + final.response_ms / 1000.0
    # calls cannot complete faster than they were started: the last one starts (N-1)/rate after the first
    busy = max(final.elapsed - tail, (load.calls - 1) / load.rate, 1e-3)
    result.achieved = final.successful / busy
    result.errors = summarize_errors(load.workdir)
    result.passed = (
        not result.aborted
        and result.fail_ratio < MAX_FAIL_RATIO
        and result.achieved >= MIN_RATE_RATIO * load.rate
    )
    return result


def run_once(
    tracker: ProcessTracker,
    argv: list[str],
    workdir: Path,
    name: str,
    time_limit: float,
) -> tuple[int | None, SippStats | None]:
    """Run a small SIPp job (e.g. one REGISTER) to completion; returns (exit code, final stats)."""
    workdir.mkdir(parents=True, exist_ok=True)
    stat_file = workdir / "stat.csv"
    full = ["timeout", "-k", "5", f"{math.ceil(time_limit)}", SIPP, *argv,
            "-trace_stat", "-stf", str(stat_file), "-fd", "1", "-nostdin", "-trace_err", *SIPP_BUFFER]
    proc = tracker.spawn(name, full, workdir / "sipp.log", cwd=workdir)
    code = tracker.wait(proc, timeout=time_limit + 10)
    if code is None:
        tracker.stop(proc)
    return code, read_stats(stat_file)
