"""A clean Debian 12 root for the install test: made once with debootstrap, cached, copied for each run.

The cached root lives outside the repository, in /var/cache/minisip-tests/debian12-root: a minbase
bookworm made with ``debootstrap`` from the mirror the host's apt uses, with its apt lists fetched. It is
made in a temporary folder and renamed into place, so an interrupted build leaves no half root; it is made
again when missing, older than a week, or made by another recipe. The .debs apt fetches into a run's root
are kept in /var/cache/minisip-tests/apt-archives and handed to the next run, which then downloads nothing.

Every tree this module deletes is first unmounted (whatever is mounted below it) and then removed with
``rm --one-file-system``: a /dev or /proc left mounted by an interrupted run is never walked into.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Iterator, Sequence

CACHE = "/var/cache/minisip-tests"
CACHED_ROOT = os.path.join(CACHE, "debian12-root")
ARCHIVES = os.path.join(CACHE, "apt-archives")
DEBOOTSTRAP_DEBS = os.path.join(CACHE, "debootstrap-debs")
RUNS = os.path.join(CACHE, "runs")
LOCK = os.path.join(CACHE, "lock")
SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_SECURITY = "http://deb.debian.org/debian-security"
# What the cached root is made of; a root whose marker says anything else is made again.
RECIPE = (f"minisip clean root v2: debootstrap --variant=minbase {SUITE}; {SUITE} {SUITE}-updates {SUITE}-security;"
          " apt-get update; apt-get clean")
MARKER = ".minisip-test-root"
MAX_AGE = 7 * 24 * 3600.0
DEBOOTSTRAP_TIMEOUT = 420.0
LOCK_TIMEOUT = 600.0
TMPFS_SIZE = "3g"
HOST_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
CHROOT_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8",
              "DEBIAN_FRONTEND": "noninteractive", "HOME": "/root"}


def note(text: str) -> None:
    """One line of the test's timing record, on stderr (trial leaves it alone)."""
    sys.stderr.write(f"\n[cleanroot] {text}\n")
    sys.stderr.flush()


class Phases:
    """Wall-clock time of each named phase, reported on stderr as it ends (the test's timing record)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.started = time.monotonic()

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        began = time.monotonic()
        try:
            yield
        finally:
            self.seconds[name] = time.monotonic() - began
            note(f"{name}: {self.seconds[name]:.1f} s")

    def total(self) -> float:
        return time.monotonic() - self.started

    def summary(self) -> str:
        parts = ", ".join(f"{name} {s:.1f} s" for name, s in self.seconds.items())
        return f"{parts}; total {self.total():.1f} s"


def _apt_sources() -> list[tuple[str, str]]:
    """(URI, suite) of every Debian entry in the host's apt sources, one-line and deb822 formats."""
    found: list[tuple[str, str]] = []
    files = ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*.list"))
    for path in files:
        with contextlib.suppress(OSError), open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                m = re.match(r"\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)", line)
                if m:
                    found.append((m.group(1), m.group(2)))
    for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
        with contextlib.suppress(OSError), open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
        for stanza in re.split(r"\n\s*\n", text):
            fields = dict(re.findall(r"(?m)^(Types|URIs|Suites|Enabled):\s*(.*)$", stanza))
            if "deb" not in fields.get("Types", "").split() or fields.get("Enabled", "yes").strip() == "no":
                continue
            for uri in fields.get("URIs", "").split():
                found += [(uri, suite) for suite in fields.get("Suites", "").split()]
    return found


def mirrors() -> tuple[str, str]:
    """The Debian and Debian security mirrors the host's apt uses for bookworm (deb.debian.org if none)."""
    mirror, security = DEFAULT_MIRROR, DEFAULT_SECURITY
    sources = _apt_sources()
    for uri, suite in sources:
        if suite == SUITE:
            mirror = uri.rstrip("/")
            break
    for uri, suite in sources:
        if suite == f"{SUITE}-security":
            security = uri.rstrip("/")
            break
    return mirror, security


def mirror_problem(mirror: str, timeout: float = 15.0) -> str | None:
    """None when the mirror serves the suite's Release file, else why not."""
    url = f"{mirror}/dists/{SUITE}/Release"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout) as answer:
            if answer.status == 200:
                return None
            return f"{url}: HTTP {answer.status}"
    except OSError as e:
        return f"{url}: {e}"


def _mount_points() -> list[str]:
    points = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            point = line.split()[4]
            points.append(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), point))
    return points


def mounts_under(path: str) -> list[str]:
    """Mount points at or below ``path``, deepest first."""
    path = os.path.realpath(path)
    under = [p for p in _mount_points() if p == path or p.startswith(path + "/")]
    return sorted(set(under), key=lambda p: p.count("/"), reverse=True)


def unmount_all(path: str) -> None:
    """Unmount everything mounted at or below ``path`` (lazily when busy); never raises."""
    for _ in range(3):
        points = mounts_under(path)
        if not points:
            return
        for point in points:
            if subprocess.run(["umount", point], capture_output=True, check=False, timeout=60).returncode != 0:
                subprocess.run(["umount", "-l", point], capture_output=True, check=False, timeout=60)


def remove_tree(path: str) -> None:
    """Delete a root tree: unmount what is below it, then remove it without crossing into any file system
    still mounted there (refusing outright if something stays mounted)."""
    if not os.path.lexists(path):
        return
    unmount_all(path)
    left = mounts_under(path)
    if left:
        raise RuntimeError(f"not deleting {path}: still mounted there: {left}")
    subprocess.run(["rm", "-rf", "--one-file-system", "--", path], check=False, timeout=300)


@contextlib.contextmanager
def cache_lock(timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
    """The cache's lock, held while the cached root is checked, made or pruned (bounded wait)."""
    os.makedirs(CACHE, exist_ok=True)
    with open(LOCK, "a") as f:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES) or time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _prune_leftovers() -> None:
    """Remove what interrupted runs left: half-made roots and the copies of runs whose process is gone."""
    for path in glob.glob(os.path.join(CACHE, "debian12-root.*")):
        m = re.search(r"\.(?:build|new|old)-(\d+)-", os.path.basename(path))
        if m is None or not _pid_alive(int(m.group(1))):
            remove_tree(path)
    for path in glob.glob(os.path.join(RUNS, "run-*")):
        m = re.match(r"run-(\d+)-", os.path.basename(path))
        if m is None or not _pid_alive(int(m.group(1))):
            remove_tree(path)


def cached_root_problem(root: str = CACHED_ROOT) -> str | None:
    """None when the cached root is usable, else why it must be made (again)."""
    try:
        with open(os.path.join(root, MARKER), encoding="utf-8") as f:
            recipe = f.readline().strip()
    except OSError:
        return "no cached root"
    if recipe != RECIPE:
        return f"made by another recipe ({recipe!r})"
    age = time.time() - os.stat(os.path.join(root, MARKER)).st_mtime
    if age > MAX_AGE:
        return f"older than 7 days ({age / 86400:.1f} days)"
    return None


def _run_logged(args: Sequence[str], log: str, timeout: float, env: dict[str, str] | None = None) -> None:
    """Run a command with its output appended to ``log``; raise with the log's tail if it fails."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(list(args), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env or dict(os.environ, PATH=HOST_PATH, LC_ALL="C.UTF-8"))
        try:
            rc = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)
            rc = -1
    if rc != 0:
        with open(log, encoding="utf-8", errors="replace") as f:
            tail = f.read()[-4000:]
        raise AssertionError(f"{' '.join(args)} failed (exit {rc}, timeout {timeout:.0f} s):\n{tail}")


def _write_sources(root: str, mirror: str, security: str) -> None:
    with open(os.path.join(root, "etc/apt/sources.list"), "w", encoding="utf-8") as f:
        f.write(f"deb {mirror} {SUITE} main\ndeb {mirror} {SUITE}-updates main\n"
                f"deb {security} {SUITE}-security main\n")


def _build_root(log: str) -> None:
    """debootstrap a minbase bookworm (in memory when a tmpfs can be mounted), fetch its apt lists, copy it
    next to the cached root and rename it into place."""
    mirror, security = mirrors()
    os.makedirs(DEBOOTSTRAP_DEBS, exist_ok=True)
    build = tempfile.mkdtemp(prefix=f"debian12-root.build-{os.getpid()}-", dir=CACHE)
    new = tempfile.mkdtemp(prefix=f"debian12-root.new-{os.getpid()}-", dir=CACHE)
    try:
        os.chmod(build, 0o755)
        os.chmod(new, 0o755)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE},mode=0755", "minisip-test-root", build],
                       check=False, timeout=60, capture_output=True)
        _run_logged(["debootstrap", "--variant=minbase", f"--cache-dir={DEBOOTSTRAP_DEBS}", SUITE, build, mirror],
                    log, DEBOOTSTRAP_TIMEOUT)
        unmount_all(os.path.join(build, "proc"))
        unmount_all(os.path.join(build, "sys"))
        unmount_all(os.path.join(build, "dev"))
        _write_sources(build, mirror, security)
        shutil.copy2("/etc/resolv.conf", os.path.join(build, "etc/resolv.conf"))
        _run_logged(["chroot", build, "apt-get", "-q", "update"], log, 180.0, env=dict(CHROOT_ENV))
        _run_logged(["chroot", build, "apt-get", "clean"], log, 60.0, env=dict(CHROOT_ENV))
        with open(os.path.join(build, MARKER), "w", encoding="utf-8") as f:
            f.write(f"{RECIPE}\nmade {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())} from {mirror}\n")
        left = [point for point in mounts_under(build) if point != os.path.realpath(build)]
        if left:
            raise AssertionError(f"debootstrap left mounts in {build}: {left}")
        subprocess.run(["cp", "-a", f"{build}/.", new], check=True, timeout=300, capture_output=True)
        remove_tree(build)
        old = None
        if os.path.lexists(CACHED_ROOT):
            old = tempfile.mkdtemp(prefix=f"debian12-root.old-{os.getpid()}-", dir=CACHE)
            os.rename(CACHED_ROOT, os.path.join(old, "root"))
        os.rename(new, CACHED_ROOT)
        if old is not None:
            remove_tree(old)
        # debootstrap's own cache: drop what no build used for a month.
        for deb in glob.glob(os.path.join(DEBOOTSTRAP_DEBS, "*.deb")):
            if time.time() - os.stat(deb).st_atime > 30 * 86400:
                os.unlink(deb)
    except BaseException:
        remove_tree(build)
        remove_tree(new)
        raise


def fresh_copy(log: str, phases: Phases) -> tuple["RootCopy", str]:
    """A run's copy of the cached root, made (again) first if needed: (copy, "cached" or "new").
    The lock is held until the copy is done, so no other run replaces the root half-way through."""
    os.makedirs(RUNS, exist_ok=True)
    with cache_lock():
        _prune_leftovers()
        problem = cached_root_problem()
        if problem is not None:
            with phases.phase(f"debootstrap ({problem})"):
                _build_root(log)
        with phases.phase("copy the cached root"):
            copy = RootCopy(CACHED_ROOT)
        return copy, "cached" if problem is None else "new"


class RootCopy:
    """One run's copy of the cached root (on a tmpfs of its own), with /proc, /sys and /dev mounted;
    ``close`` unmounts and deletes it."""

    def __init__(self, base: str) -> None:
        os.makedirs(RUNS, exist_ok=True)
        self.path = tempfile.mkdtemp(prefix=f"run-{os.getpid()}-", dir=RUNS)
        os.chmod(self.path, 0o755)
        try:
            # In memory where the kernel lets us: copying and dpkg's unpacking skip the disk, and
            # unmounting frees it all at once. On disk otherwise.
            subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE},mode=0755", "minisip-test-root",
                            self.path], check=False, timeout=60, capture_output=True)
            subprocess.run(["cp", "-a", "--reflink=auto", f"{base}/.", self.path], check=True, timeout=300,
                           capture_output=True)
        except BaseException:
            remove_tree(self.path)
            raise

    def mount(self) -> None:
        """proc, sysfs and the host's /dev (a bind mount) inside the copy, as maintainer scripts expect."""
        for fstype, source, target in (("proc", "proc", "proc"), ("sysfs", "sysfs", "sys")):
            subprocess.run(["mount", "-t", fstype, source, os.path.join(self.path, target)], check=True,
                           timeout=60, capture_output=True)
        subprocess.run(["mount", "--bind", "/dev", os.path.join(self.path, "dev")], check=True, timeout=60,
                       capture_output=True)

    def file(self, rel: str) -> str:
        """The host path of the root's /``rel``."""
        return os.path.join(self.path, rel.lstrip("/"))

    def seed_archives(self) -> int:
        """Hard-link the kept .debs into the root's apt archive folder; returns how many."""
        os.makedirs(ARCHIVES, exist_ok=True)
        target = self.file("var/cache/apt/archives")
        n = 0
        for deb in glob.glob(os.path.join(ARCHIVES, "*.deb")):
            dest = os.path.join(target, os.path.basename(deb))
            if not os.path.exists(dest):
                try:
                    os.link(deb, dest)
                except OSError:
                    shutil.copy2(deb, dest)
                n += 1
        return n

    def keep_archives(self) -> tuple[int, int]:
        """Keep, for the next run, the .debs of exactly what is installed in the root now: those apt
        fetched are added, those of versions no longer installed dropped. Returns (added, dropped)."""
        os.makedirs(ARCHIVES, exist_ok=True)
        listing = self.output(["dpkg-query", "-W", "-f", "${Package}_${Version}_${Architecture}.deb\n"])
        installed = {name.replace(":", "%3a") for name in listing.split()}
        added = dropped = 0
        for deb in glob.glob(self.file("var/cache/apt/archives/*.deb")):
            name = os.path.basename(deb)
            dest = os.path.join(ARCHIVES, name)
            if name in installed and not os.path.exists(dest):
                tmp = f"{dest}.part-{os.getpid()}"
                shutil.copy2(deb, tmp)
                os.rename(tmp, dest)
                added += 1
        for deb in glob.glob(os.path.join(ARCHIVES, "*.deb")):
            if os.path.basename(deb) not in installed:
                os.unlink(deb)
                dropped += 1
        return added, dropped

    def run(self, args: Sequence[str], log: str, timeout: float) -> None:
        """Run a command in the root as root (output appended to ``log``); raise if it fails."""
        _run_logged(["chroot", self.path, *args], log, timeout, env=dict(CHROOT_ENV))

    def output(self, args: Sequence[str], timeout: float = 60.0) -> str:
        out = subprocess.run(["chroot", self.path, *args], capture_output=True, text=True, check=True,
                             timeout=timeout, env=dict(CHROOT_ENV), stdin=subprocess.DEVNULL)
        return out.stdout

    def close(self) -> None:
        remove_tree(self.path)
