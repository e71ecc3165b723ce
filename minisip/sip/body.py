"""The SDP inside a message body: application/sdp, or one part of multipart/mixed (RFC 5621)."""

from __future__ import annotations


class BodyError(ValueError):
    """A multipart body that cannot be split."""


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def _boundary(content_type: str) -> bytes:
    for param in content_type.split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "boundary":
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            if value:
                return value.encode()
    raise BodyError("multipart body without a boundary parameter")


def _parts(content_type: str, body: bytes) -> list[tuple[int, int, int]]:
    """(part start, content start, part end) offsets of each part."""
    delim = b"--" + _boundary(content_type)
    spans = []
    pos = body.find(delim)
    if pos < 0:
        raise BodyError("multipart body without its boundary")
    while True:
        line_end = body.find(b"\n", pos)
        if body[pos + len(delim):pos + len(delim) + 2] == b"--" or line_end < 0:
            break
        start = line_end + 1
        nxt = body.find(b"\r\n" + delim, start)
        sep = 2
        if nxt < 0:
            nxt = body.find(b"\n" + delim, start)
            sep = 1
        if nxt < 0:
            raise BodyError("multipart part without a closing boundary")
        head_end = body.find(b"\r\n\r\n", start, nxt)
        skip = 4
        if head_end < 0:
            head_end = body.find(b"\n\n", start, nxt)
            skip = 2
        content = start if head_end < 0 else head_end + skip
        spans.append((start, content, nxt))
        pos = nxt + sep
    return spans


def _part_type(head: bytes) -> str:
    for line in head.decode("latin-1").splitlines():
        name, _, value = line.partition(":")
        if name.strip().lower() in ("content-type", "c"):
            return _media_type(value)
    return "text/plain"


def extract_sdp(content_type: str | None, body: bytes) -> bytes | None:
    """The SDP of ``body``, or None when it has none."""
    if not content_type:
        return None
    kind = _media_type(content_type)
    if kind == "application/sdp":
        return body
    if kind.startswith("multipart/"):
        for start, content, end in _parts(content_type, body):
            if _part_type(body[start:content]) == "application/sdp":
                return body[content:end]
    return None


def replace_sdp(content_type: str | None, body: bytes, new_sdp: bytes) -> bytes:
    """``body`` with its SDP replaced by ``new_sdp`` (other parts, preamble and epilogue kept)."""
    kind = _media_type(content_type or "")
    if kind.startswith("multipart/"):
        for start, content, end in _parts(content_type or "", body):
            if _part_type(body[start:content]) == "application/sdp":
                return body[:content] + new_sdp + body[end:]
        return body
    return new_sdp
