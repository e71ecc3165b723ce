"""The SIP conformance corpus (RFC 4475, RFC 5118 test messages), kept in ``tests/data/conformance/``.

Every test reads the corpus through this module only, so that a lone clone (or the Debian build) has all
it needs; ``tests/data/conformance/README.md`` says what a server must do with each message.
"""

from __future__ import annotations

import os

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS_DIR = os.path.join(REPO_ROOT, "tests", "data", "conformance")


def corpus_dir() -> str:
    """The directory holding the corpus: ``rfc4475/``, ``rfc5118/`` and the README."""
    return CORPUS_DIR


def corpus_files() -> list[str]:
    """Every message file of the corpus, as names relative to ``corpus_dir()`` with '/' separators."""
    out: list[str] = []
    for sub in sorted(os.listdir(CORPUS_DIR)):
        path = os.path.join(CORPUS_DIR, sub)
        if os.path.isdir(path):
            out.extend(f"{sub}/{name}" for name in sorted(os.listdir(path)) if not name.startswith("."))
    return out


def read_corpus(name: str) -> bytes:
    """The exact bytes of one corpus message, by its name from ``corpus_files()`` (e.g. "rfc4475/wsinv.dat")."""
    with open(os.path.join(CORPUS_DIR, *name.split("/")), "rb") as f:
        return f.read()
