"""The SIP conformance corpus (RFC 4475, RFC 5118 messages) the tests read from ../shared/conformance."""

from __future__ import annotations

import os

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def corpus_dir() -> str:
    """$MINISIP_CONFORMANCE_DIR, else ``shared/conformance`` beside the clone (as CI lays it out)."""
    return os.environ.get("MINISIP_CONFORMANCE_DIR") or os.path.join(REPO_ROOT, "..", "shared", "conformance")


def corpus_files() -> list[str]:
    """Every message file of the corpus, as paths relative to ``corpus_dir()`` with '/' separators."""
    root = corpus_dir()
    out: list[str] = []
    for sub in sorted(os.listdir(root)):
        path = os.path.join(root, sub)
        if os.path.isdir(path):
            out.extend(f"{sub}/{name}" for name in sorted(os.listdir(path)) if not name.startswith("."))
    return out


def read_corpus(name: str) -> bytes:
    with open(os.path.join(corpus_dir(), *name.split("/")), "rb") as f:
        return f.read()
