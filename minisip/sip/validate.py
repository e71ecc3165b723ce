"""Application-level checks a UAS or registrar applies to a request that parsed (RFC 3261 8.2, 10.3).

Pure: a Request and the element's capabilities in, the rejection to send (or None) out. The order
follows RFC 3261 8.2: method (8.2.1), then header inspection (Request-URI scheme 8.2.2.1, Max-Forwards
as the element that would forward, header syntax, Require 8.2.2.3), then content (8.2.3), then what
a registrar adds (10.3). Authentication (401/407) is not decided here.
"""

from __future__ import annotations

import re

from minisip.sip.errors import SIPParseError
from minisip.sip.message import Request, parse_delta_seconds, reason_phrase
from minisip.sip.uri import is_token

Rejection = tuple[int, str, list[tuple[str, str]]]

DEFAULT_URI_SCHEMES = frozenset({"sip", "sips", "tel"})

# Requests this element answers itself rather than relaying to another leg, so Max-Forwards 0 is no
# reason to refuse them: REGISTER (we are the registrar), OPTIONS (RFC 3261 11 and 16.3 item 3: the
# element may answer as the final recipient; RFC 4475 zeromf is answered 200 here), CANCEL (hop by
# hop) and ACK (never answered).
_ANSWERED_LOCALLY = frozenset({"OPTIONS", "REGISTER", "CANCEL", "ACK"})
_SDP_RANGES = frozenset({"application/sdp", "application/*", "*/*"})
_QVALUE_RE = re.compile(r"0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?")
_ZERO_Q_RE = re.compile(r";[ \t]*q[ \t]*=[ \t]*0(?:\.0{0,3})?[ \t]*(?:;|$)", re.IGNORECASE)


def precheck_request(req: Request, *, allowed_methods: frozenset[str], supported: frozenset[str],
                     accepted_types: frozenset[str],
                     uri_schemes: frozenset[str] = DEFAULT_URI_SCHEMES) -> Rejection | None:
    """The (status, reason, extra headers) to answer ``req`` with, or None when it may be processed.

    ``allowed_methods``: methods handled (others get 501 with Allow). ``supported``: option-tags
    understood in Require. ``accepted_types``: body media types understood (``type/*`` and ``*/*``
    allowed). ``uri_schemes``: Request-URI schemes served (others get 416). An ACK is never answered,
    so it always gets None. Never raises.
    """
    try:
        return _precheck(req, allowed_methods, supported, accepted_types, uri_schemes)
    except SIPParseError as e:  # only for a hand-built request lacking what the parser guarantees
        return 400, e.reason[:80], []


def _precheck(req: Request, allowed_methods: frozenset[str], supported: frozenset[str],
              accepted_types: frozenset[str], uri_schemes: frozenset[str]) -> Rejection | None:
    method = req.method
    if method == "ACK":
        return None
    # 8.2.1: method names are case-sensitive, so RE%47IST%45R is not REGISTER.
    if method not in allowed_methods:
        return 501, reason_phrase(501), [("Allow", ", ".join(sorted(allowed_methods)))]
    # 8.2.2.1
    if req.uri.scheme not in uri_schemes:
        return 416, reason_phrase(416), []
    # 16.3 step 3, as the B2BUA that would relay a new out-of-dialog request to another leg.
    if method not in _ANSWERED_LOCALLY and req.max_forwards == 0 and req.to_tag is None:
        return 483, reason_phrase(483), []
    try:
        expires = req.expires
    except SIPParseError:
        return 400, "Bad Expires", []
    # 8.2.2.3: Proxy-Require is for proxies; CANCEL is processed whatever its Require says.
    if method != "CANCEL":
        supported_l = {tag.lower() for tag in supported}
        unsupported = [tag for tag in req.get_all("require") if tag and tag.lower() not in supported_l]
        if unsupported:
            if not all(is_token(tag) for tag in unsupported):
                return 400, "Bad Require", []  # never echo what is no option-tag into Unsupported
            return 420, reason_phrase(420), [("Unsupported", ", ".join(unsupported))]
    # 8.2.3
    if req.body:
        ctype = req.content_type
        if not ctype:
            return 400, "Missing Content-Type", []
        if not _type_accepted(ctype, accepted_types):
            return 415, reason_phrase(415), [("Accept", ", ".join(sorted(accepted_types)))]
        if any(enc.lower() != "identity" for enc in req.get_all("content-encoding") if enc):
            return 415, reason_phrase(415), [("Accept-Encoding", "identity")]
    # 20.1: no Accept means application/sdp; the answer to INVITE or OPTIONS describes a session in SDP.
    if method in ("INVITE", "OPTIONS") and req.has("accept") and not _accepts_sdp(req.get_all("accept")):
        return 406, reason_phrase(406), [("Accept", "application/sdp")]
    if method == "REGISTER":
        return _check_register(req, expires)
    return None


def _type_accepted(ctype: str, accepted: frozenset[str]) -> bool:
    if ctype in accepted or "*/*" in accepted:
        return True
    major = ctype.partition("/")[0]
    return f"{major}/*" in accepted


def _accepts_sdp(ranges: list[str]) -> bool:
    for value in ranges:
        media, semi, params = value.partition(";")
        media = media.replace(" ", "").replace("\t", "").lower()
        if media in _SDP_RANGES and not (semi and _ZERO_Q_RE.search(";" + params)):
            return True
    return False


def too_many_contacts(req: Request, limit: int) -> bool:
    """More than ``limit`` Contact values? Counted on the raw header values: commas give an upper bound
    (a comma may sit in a quoted name or a URI), the exact top-level split only when it is over."""
    bound = 0
    for key, _, value in req.headers:
        if key == "contact":
            bound += 1 + value.count(",")
    return bound > limit and len(req.get_all("contact")) > limit


# Contacts one REGISTER may carry: more is refused before a single one is parsed (a REGISTER with
# thousands of contacts held the reactor for 0.3 s, and 20 ms even before authentication).
MAX_CONTACTS = 20


def _check_register(req: Request, expires: int | None) -> Rejection | None:
    """RFC 3261 10.3 steps 5 and 6, the parts that need no location service."""
    if req.to.uri.scheme not in ("sip", "sips"):
        return 400, "To must be a SIP or SIPS URI", []
    if req.from_.uri.scheme not in ("sip", "sips"):
        return 400, "From must be a SIP or SIPS URI", []
    if too_many_contacts(req, MAX_CONTACTS):
        return 403, "Too Many Contacts", []
    values = req.get_all("contact")
    if "*" in values and (len(values) > 1 or expires != 0):
        return 400, "Contact * needs Expires 0 and no other Contact", []
    for contact in req.contacts():
        ex = contact.params.get("expires")
        if ex is not None:
            try:
                parse_delta_seconds(ex)
            except SIPParseError:
                return 400, "Bad Contact expires", []
        if "q" in contact.params:
            q = contact.params["q"]
            if q is None or _QVALUE_RE.fullmatch(q) is None:
                return 400, "Bad Contact q", []
    return None


# -- identities and numbers taken from the network ---------------------------------------------------
#
# What a caller, callee or display name may be before the core formats it into a header or writes it
# to a log or a record: a URL-decoded user part can hold CR LF and so new header lines.

MAX_IDENTITY_LEN = 64
MAX_DISPLAY_LEN = 64

_VISUAL_SEPARATORS = str.maketrans("", "", "-.() ")   # RFC 3966 visual separators, and spaces
_NUMBER_RE = re.compile(r"\+?[0-9*#]+")
# RFC 3261 25.1: user = 1*( unreserved / escaped / user-unreserved )
_USER_RE = re.compile(r"(?:[A-Za-z0-9\-_.!~*'()&=+$,;?/]|%[0-9A-Fa-f]{2})+")
# What a user part may hold once decoded to be written back into a SIP URI unescaped: the characters
# above, and '#' (dialled digits).
_SAFE_USER_RE = re.compile(r"[A-Za-z0-9\-_.!~*'()&=+$,;?/#]+")
_PERCENT_RE = re.compile(r"%([0-9A-Fa-f]{2})")


def is_number(text: str) -> bool:
    """A dialled or presented number: digits, ``*`` and ``#``, optionally after ``+``."""
    return len(text) <= MAX_IDENTITY_LEN and _NUMBER_RE.fullmatch(text) is not None


def clean_number(text: str) -> str | None:
    """``text`` without visual separators (``-.()`` and spaces) when that is a number, else None."""
    number = text.translate(_VISUAL_SEPARATORS)
    return number if is_number(number) else None


def is_user_part(text: str) -> bool:
    """The user part of a SIP URI as written (RFC 3261 ``user``: escapes allowed, nothing else)."""
    return len(text) <= 3 * MAX_IDENTITY_LEN and _USER_RE.fullmatch(text) is not None


def is_safe_user(text: str) -> bool:
    """A decoded user name or number the core may format into a URI and a header as it is."""
    return len(text) <= MAX_IDENTITY_LEN and _SAFE_USER_RE.fullmatch(text) is not None


def decode_user_part(text: str) -> str | None:
    """A Request-URI or From user part as written, decoded; None when it is not a user part or decodes
    to anything but the characters ``is_safe_user`` allows (``%0d%0a``, ``%3e``, spaces, ``@``...)."""
    if not is_user_part(text):
        return None
    decoded = _PERCENT_RE.sub(lambda m: chr(int(m.group(1), 16)), text) if "%" in text else text
    return decoded if is_safe_user(decoded) else None


def clean_identity(text: str) -> str | None:
    """A decoded caller or callee (as an ICallerIdentifier gives it): a number with its visual
    separators removed, else a safe user name; None when it is neither."""
    number = clean_number(text)
    if number is not None:
        return number
    return text if is_safe_user(text) else None


def clean_display_name(text: str | None) -> str | None:
    """A display name as text without control and format characters, surrounding blanks and excess
    length; None when nothing is left."""
    if not text:
        return None
    if not text.isprintable():
        # str.isprintable is false for controls, format characters (bidi overrides), unpaired
        # surrogates (undecodable bytes), separators other than the space and unassigned code points.
        text = "".join(c if c.isprintable() else " " if c.isspace() else "" for c in text)
    text = " ".join(text.split())[:MAX_DISPLAY_LEN].strip()
    return text or None


def quote_display_name(text: str) -> str:
    """A display name text as an RFC 3261 quoted-string, ready for a From header."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def escape_controls(text: str) -> str:
    """``text`` made safe for one log line or record: control, format and separator characters (and
    undecodable bytes) become ``\\xNN`` / ``\\uNNNN`` escapes; everything else is kept."""
    if text.isprintable():
        return text
    out = []
    for c in text:
        if c.isprintable() or c == " ":
            out.append(c)
            continue
        n = ord(c)
        if 0xDC80 <= n <= 0xDCFF:       # a byte that was not UTF-8 (surrogateescape)
            out.append(f"\\x{n - 0xDC00:02x}")
        elif n <= 0xFF:
            out.append(f"\\x{n:02x}")
        else:
            out.append(f"\\u{n:04x}")
    return "".join(out)
