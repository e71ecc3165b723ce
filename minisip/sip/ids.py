"""Random identifiers (tags, branches, Call-IDs) from the kernel's CSPRNG, read in blocks.

A call makes about ten of them; one ``getrandom`` syscall per 4 KB instead of one per identifier.
The bytes are as unpredictable as ``os.urandom``'s (tags and Call-IDs must not be guessable: they
are what an in-dialog request is matched by).
"""

from __future__ import annotations

import os
import threading

_BLOCK = 4096
_lock = threading.Lock()
_buf = b""
_pos = 0


def random_hex(nbytes: int) -> str:
    """``nbytes`` fresh random bytes as lower-case hex (``2 * nbytes`` characters)."""
    global _buf, _pos
    with _lock:
        end = _pos + nbytes
        if end > len(_buf):
            _buf = os.urandom(max(_BLOCK, nbytes))
            _pos, end = 0, nbytes
        chunk = _buf[_pos:end]
        _pos = end
    return chunk.hex()
