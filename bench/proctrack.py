"""Track every process the benchmark starts and make sure each one is stopped.

Each child is started in its own session (so it is the leader of its own process group and a Ctrl-C
on the terminal does not reach it directly). Stopping sends SIGTERM to that group, waits up to
`grace` seconds, then sends SIGKILL. Only process groups this tracker created are ever signalled.
"""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType


@dataclass
class Tracked:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    started: float = field(default_factory=time.monotonic)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


class ProcessTracker:
    """Starts processes, remembers them, and stops them (group-wide) on demand or at exit."""

    def __init__(self, grace: float = 5.0) -> None:
        self.grace = grace
        self._tracked: list[Tracked] = []
        self._installed = False

    def install_handlers(self) -> None:
        """Stop everything at interpreter exit and turn SIGTERM/SIGHUP into a clean SystemExit."""
        if self._installed:
            return
        self._installed = True
        atexit.register(self.stop_all)

        def _on_signal(signum: int, _frame: FrameType | None) -> None:
            raise SystemExit(128 + signum)

        signal.signal(signal.SIGTERM, _on_signal)
        signal.signal(signal.SIGHUP, _on_signal)
        # Ctrl-C -> KeyboardInterrupt, even when started from a shell that ignores SIGINT for background jobs
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def spawn(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        cwd: Path | str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Tracked:
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            log.write(("$ " + " ".join(argv) + "\n").encode())
            log.flush()
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=full_env,
                start_new_session=True,
            )
        tracked = Tracked(name=name, proc=proc, log_path=log_path)
        self._tracked.append(tracked)
        return tracked

    def _signal_group(self, tracked: Tracked, sig: int) -> None:
        try:
            os.killpg(tracked.pid, sig)  # the group id is the pid of the session leader we started
        except ProcessLookupError:
            pass
        except PermissionError:
            try:
                tracked.proc.send_signal(sig)
            except ProcessLookupError:
                pass

    def _group_alive(self, pgid: int) -> bool:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def stop(self, tracked: Tracked, grace: float | None = None) -> int | None:
        """SIGTERM the process group, SIGKILL it after `grace` seconds; returns the exit code."""
        grace = self.grace if grace is None else grace
        if tracked.alive() or self._group_alive(tracked.pid):
            self._signal_group(tracked, signal.SIGTERM)
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline:
                if tracked.proc.poll() is not None and not self._group_alive(tracked.pid):
                    break
                time.sleep(0.05)
            else:
                self._signal_group(tracked, signal.SIGKILL)
        try:
            code = tracked.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            code = None
        if tracked in self._tracked:
            self._tracked.remove(tracked)
        return code

    def wait(self, tracked: Tracked, timeout: float) -> int | None:
        """Wait for a process to finish on its own; returns its exit code or None on timeout."""
        try:
            code = tracked.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        # children left behind in the group (none expected) are stopped too
        if self._group_alive(tracked.pid):
            self.stop(tracked)
        elif tracked in self._tracked:
            self._tracked.remove(tracked)
        return code

    def stop_all(self) -> None:
        for tracked in list(reversed(self._tracked)):
            self.stop(tracked)


def group_cpu_seconds(pgid: int) -> float:
    """utime+stime (seconds) of every live process whose process group is `pgid` (e.g. Kamailio's children)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # fields after the command name (which is in parentheses and may contain spaces)
        rest = raw[raw.rfind(")") + 2:].split()
        try:
            if int(rest[2]) != pgid:
                continue
            total += int(rest[11]) + int(rest[12])
        except (IndexError, ValueError):
            continue
    return total / ticks


def vm_rss_bytes(pid: int) -> int:
    """VmRSS of one process, from /proc/PID/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            parts = line.split()
            return int(parts[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")
