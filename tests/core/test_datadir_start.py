"""Start-up with a data directory minisip cannot use: one line naming it, exit status 2, no traceback."""

from __future__ import annotations

import io
import os
import stat
import sys

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from minisip.app import Server
from minisip.config import load_config
from minisip.tap import make_service


class UnusableDataDirectoryTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)

    def start(self, datadir: str) -> tuple[int | str | None, str]:
        path = os.path.join(self.dir, "minisip.conf")
        with open(path, "w", encoding="utf-8") as f:
            f.write(f"[server]\ndomain = 127.0.0.1\ndatadir = {datadir}\n[sip]\nudp =\ntcp =\ntls =\n")
        stderr = io.StringIO()
        self.patch(sys, "stderr", stderr)
        code = self.assertRaises(SystemExit, make_service, {"config": path}, Clock()).code
        return code, stderr.getvalue()

    def test_datadir_that_cannot_be_created(self) -> None:
        blocker = os.path.join(self.dir, "a-file")
        with open(blocker, "w") as f:
            f.write("in the way")
        datadir = os.path.join(blocker, "data")
        code, stderr = self.start(datadir)
        self.assertEqual(code, 2)
        config = os.path.join(self.dir, "minisip.conf")
        self.assertEqual(stderr, f"minisip: cannot start: {config}: [server] datadir: the data directory {datadir} "
                                 "cannot be created: Not a directory\n")
        self.assertEqual(self.flushLoggedErrors(), [], "no traceback in the log")

    def test_datadir_where_nothing_can_be_written(self) -> None:
        datadir = os.path.join(self.dir, "data")
        os.makedirs(datadir)
        real_open = os.open

        def read_only(path: str, *args: object, **kw: object) -> int:
            if os.path.dirname(path) == datadir:
                raise OSError(30, "Read-only file system")
            return real_open(path, *args, **kw)  # type: ignore[arg-type]

        self.patch(os, "open", read_only)
        code, stderr = self.start(datadir)
        self.assertEqual(code, 2)
        self.assertEqual(stderr.count("\n"), 1)
        self.assertIn(f"[server] datadir: the data directory {datadir} is not writable: Read-only file system", stderr)
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_new_datadir_is_private(self) -> None:
        """The normal start: a data directory made by minisip is 0700 even with umask 022."""
        old = os.umask(0o022)
        self.addCleanup(os.umask, old)
        datadir = os.path.join(self.dir, "fresh")
        path = os.path.join(self.dir, "minisip.conf")
        with open(path, "w", encoding="utf-8") as f:
            f.write(f"[server]\ndomain = 127.0.0.1\ndatadir = {datadir}\n[sip]\nudp =\ntcp =\ntls =\n")
        server = Server(load_config(path), Clock())
        server.build()
        self.addCleanup(server.abandon)
        self.assertEqual(stat.S_IMODE(os.stat(datadir).st_mode), 0o700)
        self.assertEqual(stat.S_IMODE(os.stat(os.path.join(datadir, "minisip.sqlite")).st_mode), 0o600)
