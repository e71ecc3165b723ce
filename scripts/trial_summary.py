"""Turn trial's closing line into the plain 'N passed, N failed' line CI reads; exit with trial's status."""

from __future__ import annotations

import re
import sys


def main() -> int:
    text = open(sys.argv[1], encoding="utf-8", errors="replace").read()
    status = int(sys.argv[2])
    m = re.findall(r"^(PASSED|FAILED) \((.*)\)\s*$", text, re.MULTILINE)
    if not m:
        print("0 passed, 1 failed")
        return status or 1
    counts = dict((k, int(v)) for k, v in re.findall(r"(\w+)=(\d+)", m[-1][1]))
    passed = counts.get("successes", 0) + counts.get("expectedFailures", 0)
    failed = counts.get("failures", 0) + counts.get("errors", 0) + counts.get("unexpectedSuccesses", 0)
    line = f"{passed} passed, {failed} failed"
    if counts.get("skips"):
        line += f", {counts['skips']} skipped"
    print(line)
    return status


if __name__ == "__main__":
    sys.exit(main())
