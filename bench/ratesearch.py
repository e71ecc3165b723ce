"""Find the highest sustained rate: ladder of short probes, bisection, then a full-length confirmation."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sippctl import StepResult

StepRunner = Callable[[int, float, str], StepResult]  # (rate, duration, kind) -> result


@dataclass
class SearchResult:
    target: str
    label: str
    best: int | None = None
    steps: list[StepResult] = field(default_factory=list)
    error: str | None = None
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "label": self.label,
            "sustained_rate": self.best,
            "error": self.error,
            "note": self.note,
            "steps": [s.to_json() for s in self.steps],
        }


def two_significant(value: float) -> int:
    if value <= 0:
        return 0
    digits = math.floor(math.log10(value)) - 1
    step = 10 ** max(digits, 0)
    return int(round(value / step) * step)


def find_sustained_rate(
    run_step: StepRunner,
    ladder: Sequence[int],
    duration: float,
    probe_duration: float,
    refine: int,
) -> tuple[int | None, list[StepResult], str]:
    """Return (highest rate that passed a full-duration step, all steps, note).

    1. Probe the ladder upwards (probe_duration each) until a step fails.
    2. Bisect `refine` times between the last passing and the first failing rate.
    3. Confirm the best probe at the full duration; if it fails there, confirm the next lower passing rate.
    With probe_duration >= duration every step is already full length and no confirmation is run.
    """
    steps: list[StepResult] = []
    probe = min(probe_duration, duration) if probe_duration > 0 else duration
    confirm_needed = probe < duration
    passed: list[int] = []
    failed_at: int | None = None
    note = ""

    for rate in ladder:
        res = run_step(rate, probe, "probe" if confirm_needed else "step")
        steps.append(res)
        if res.passed:
            passed.append(rate)
        else:
            failed_at = rate
            break
    if not passed:
        return None, steps, f"failed already at the lowest rate ({ladder[0]}/s)"
    if failed_at is None:
        note = f"ladder exhausted: passed up to {passed[-1]}/s, no failing rate found"
    else:
        lo, hi = passed[-1], failed_at
        for _ in range(refine):
            mid = two_significant((lo + hi) / 2)
            if mid <= lo or mid >= hi:
                break
            res = run_step(mid, probe, "probe" if confirm_needed else "step")
            steps.append(res)
            if res.passed:
                passed.append(mid)
                lo = mid
            else:
                hi = mid

    if not confirm_needed:
        return max(passed), steps, note
    for rate in sorted(set(passed), reverse=True)[:3]:
        res = run_step(rate, duration, "confirm")
        steps.append(res)
        if res.passed:
            return rate, steps, note
    return None, steps, (note + "; " if note else "") + "no probe rate held for the full duration"
