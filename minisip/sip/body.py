"""The SDP inside a SIP message body: an ``application/sdp`` body itself, or the ``application/sdp``
part of a multipart body (RFC 5621 over RFC 2046 5.1, nested multiparts too), and the same body with
that SDP replaced, every other byte (other parts, their headers, preamble, epilogue) kept as it was.

Pure: bytes in, bytes out, offsets found with ``bytes.find`` (no regular expressions). Malformed
bodies raise BodyError (a ValueError); nothing else is raised whatever the bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

SDP_TYPE = "application/sdp"
MAX_DEPTH = 4  # nested multiparts deeper than this are not searched
_LF = 0x0A
_CR = 0x0D


class BodyError(ValueError):
    """A body (or its Content-Type) that cannot be read as its type says."""


class MultipartError(BodyError):
    """A multipart body that does not follow RFC 2046 5.1: no or bad boundary, no delimiter, no close
    delimiter, or a part with a header line that is not ``name: value``."""


@dataclass(frozen=True, slots=True)
class BodyPart:
    """One part of a multipart body: its headers (names as written), its media type (lowercased,
    ``text/plain`` when absent, RFC 2046 5.1), the full Content-Type value, and where its content lies
    in the whole body (``body[start:end] == content``)."""

    headers: tuple[tuple[str, str], ...]
    media_type: str
    content_type: str
    start: int
    end: int
    content: bytes

    def header(self, name: str) -> str | None:
        """The first header ``name`` (case-insensitive), or None."""
        name = name.lower()
        for n, v in self.headers:
            if n.lower() == name:
                return v
        return None


@dataclass(frozen=True, slots=True)
class Multipart:
    """A parsed multipart body: bytes before the first delimiter, the parts, and bytes after the close
    delimiter line."""

    preamble: bytes
    parts: tuple[BodyPart, ...]
    epilogue: bytes


def parse_content_type(value: str) -> tuple[str, dict[str, str]]:
    """``type/subtype`` lowercased and its parameters (names lowercased, quoted values unquoted; the first
    of a repeated name wins). Raises BodyError for an unterminated quoted string."""
    mtype, _, rest = value.partition(";")
    params: dict[str, str] = {}
    i, n = 0, len(rest)
    while i < n:
        eq = rest.find("=", i)
        semi = rest.find(";", i)
        if eq == -1 or (semi != -1 and semi < eq):  # a parameter without a value
            stop = n if semi == -1 else semi
            name = rest[i:stop].strip().lower()
            if name:
                params.setdefault(name, "")
            i = stop + 1
            continue
        name = rest[i:eq].strip().lower()
        j = eq + 1
        while j < n and rest[j] in " \t":
            j += 1
        if j < n and rest[j] == '"':
            chars = []
            j += 1
            while j < n and rest[j] != '"':
                if rest[j] == "\\" and j + 1 < n:
                    j += 1
                chars.append(rest[j])
                j += 1
            if j >= n:
                raise BodyError(f"unterminated quoted string in Content-Type {value[:80]!r}")
            val = "".join(chars)
            semi = rest.find(";", j + 1)
        else:
            val = rest[j: n if semi == -1 else semi].strip()
        if name:
            params.setdefault(name, val)
        i = n if semi == -1 else semi + 1
    return mtype.strip().lower(), params


def _boundary(content_type: str, params: dict[str, str]) -> bytes:
    boundary = params.get("boundary")
    if not boundary:
        raise MultipartError(f"{content_type} without a boundary parameter")
    if len(boundary) > 70 or "\r" in boundary or "\n" in boundary:
        raise MultipartError(f"bad multipart boundary {boundary[:80]!r} (1 to 70 characters, RFC 2046)")
    try:
        return boundary.encode("latin-1")
    except UnicodeEncodeError:
        raise MultipartError(f"bad multipart boundary {boundary[:80]!r} (not ASCII)") from None


def _delimiter(body: bytes, dash: bytes, start: int) -> tuple[int, int, bool] | None:
    """The next delimiter line at or after ``start``: (its first byte, the byte after its line end, close?).
    A delimiter starts a line; ``--boundary`` followed by anything but padding and a line end is content."""
    size = len(body)
    pos = start
    while True:
        p = body.find(dash, pos)
        if p == -1:
            return None
        pos = p + 1
        if p != 0 and body[p - 1] != _LF:
            continue
        q = p + len(dash)
        close = body.startswith(b"--", q)
        if close:
            q += 2
        while q < size and body[q] in b" \t":
            q += 1
        if q == size:
            if close:
                return p, q, True
            continue
        if body[q] == _LF:
            return p, q + 1, close
        if body[q] == _CR and q + 1 < size and body[q + 1] == _LF:
            return p, q + 2, close
        if close and q + 1 == size and body[q] == _CR:
            return p, size, True


def _part(body: bytes, index: int, start: int, end: int) -> BodyPart:
    if body.startswith(b"\r\n", start) or body.startswith(b"\n", start):  # no headers: defaults apply
        content_start = start + (2 if body[start] == _CR else 1)
        head = b""
    else:
        crlf = body.find(b"\n\r\n", start, end)
        lf = body.find(b"\n\n", start, end)
        if crlf == -1 and lf == -1:  # headers only: body-part := MIME-part-headers [CRLF *OCTET]
            head, content_start = body[start:end], end
        elif lf == -1 or (crlf != -1 and crlf < lf):
            head, content_start = body[start:crlf], crlf + 3
        else:
            head, content_start = body[start:lf], lf + 2
    headers: list[tuple[str, str]] = []
    for raw in head.decode("latin-1").split("\n"):
        line = raw[:-1] if raw.endswith("\r") else raw
        if not line:
            continue
        if line[0] in " \t" and headers:  # folded continuation
            name, value = headers[-1]
            headers[-1] = (name, f"{value} {line.strip()}")
            continue
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            raise MultipartError(f"part {index}: bad header line {line[:60]!r}")
        headers.append((name.strip(), value.strip()))
    content_type = "text/plain"
    for name, value in headers:
        if name.lower() in ("content-type", "c"):
            content_type = value
            break
    media_type = parse_content_type(content_type)[0]
    content_start = min(content_start, end)
    return BodyPart(tuple(headers), media_type, content_type, content_start, end, body[content_start:end])


def parse_multipart(content_type: str, body: bytes) -> Multipart:
    """Split a multipart body by the boundary in ``content_type``. Raises MultipartError when malformed."""
    mtype, params = parse_content_type(content_type)
    if not mtype.startswith("multipart/"):
        raise MultipartError(f"not a multipart type: {content_type[:80]!r}")
    dash = b"--" + _boundary(mtype, params)
    body = bytes(body)
    first = _delimiter(body, dash, 0)
    if first is None:
        raise MultipartError(f"multipart body without a delimiter line --{params['boundary']}")
    if first[2]:
        raise MultipartError("multipart body without any part (close delimiter first)")
    preamble = body[:first[0]]
    parts: list[BodyPart] = []
    after = first[1]
    while True:
        nxt = _delimiter(body, dash, after)
        if nxt is None:
            raise MultipartError(f"multipart body without its close delimiter --{params['boundary']}--")
        end = nxt[0]
        if end > after and body[end - 1] == _LF:  # the line end before a delimiter belongs to it
            end -= 1
            if end > after and body[end - 1] == _CR:
                end -= 1
        parts.append(_part(body, len(parts) + 1, after, end))
        after = nxt[1]
        if nxt[2]:
            return Multipart(preamble, tuple(parts), body[after:])


def _locate(content_type: str, body: bytes, depth: int) -> tuple[int, int, tuple[bytes, ...]] | None:
    """Where the SDP lies in ``body``: (start, end, boundaries of the multiparts around it), or None."""
    mtype, params = parse_content_type(content_type)
    if mtype == SDP_TYPE:
        return 0, len(body), ()
    if not mtype.startswith("multipart/") or depth >= MAX_DEPTH:
        return None
    multipart = parse_multipart(content_type, body)
    boundary = _boundary(mtype, params)
    for part in multipart.parts:
        if part.media_type == SDP_TYPE:
            return part.start, part.end, (boundary,)
        if part.media_type.startswith("multipart/"):
            inner = _locate(part.content_type, part.content, depth + 1)
            if inner is not None:
                return part.start + inner[0], part.start + inner[1], (boundary, *inner[2])
    return None


def extract_sdp(content_type: str | None, body: bytes) -> bytes | None:
    """The SDP a body carries: the body itself for application/sdp, the first application/sdp part of a
    multipart body; None when there is none (or it is empty). Raises BodyError when malformed."""
    if content_type is None or not body:
        return None
    found = _locate(content_type, body, 0)
    if found is None or found[0] == found[1]:
        return None
    return bytes(body[found[0]:found[1]])


def replace_sdp(content_type: str | None, body: bytes, new_sdp: bytes) -> bytes:
    """``body`` with its SDP replaced by ``new_sdp`` (everything else byte for byte). Raises BodyError
    when the body carries no SDP, is malformed, or ``new_sdp`` holds an enclosing boundary."""
    if content_type is None:
        raise BodyError("no Content-Type: the body carries no SDP")
    if parse_content_type(content_type)[0] == SDP_TYPE:
        return bytes(new_sdp)
    found = _locate(content_type, body, 0)
    if found is None:
        raise BodyError(f"no {SDP_TYPE} in the {content_type[:80]} body")
    start, end, boundaries = found
    for boundary in boundaries:
        if b"--" + boundary in new_sdp:
            raise MultipartError(f"the new SDP contains the multipart boundary {boundary[:80]!r}")
    return body[:start] + bytes(new_sdp) + body[end:]
