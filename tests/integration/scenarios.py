"""SIPp scenarios for the integration tests, built from a few shared message templates."""

from __future__ import annotations

_HEAD = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="{name}">
"""

_SDP = """
      v=0
      o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0
      a=rtpmap:0 PCMU/8000
"""


def _invite(cseq: int, auth: bool) -> str:
    return f"""  <send retrans="500">
    <![CDATA[
      INVITE sip:[field2]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:[field0]@[remote_ip]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[field2]@[remote_ip]>
      Call-ID: [call_id]
      CSeq: {cseq} INVITE
      Contact: <sip:[field0]@[local_ip]:[local_port];transport=[transport]>
{"      [field1]" + chr(10) if auth else ""}      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]
{_SDP}
    ]]>
  </send>
"""


def _in_dialog(method: str, cseq: int, uri: str = "[next_url]", retrans: bool = False,
               same_branch: bool = False) -> str:
    """An in-dialog request; ``same_branch`` for the ACK of a non-2xx, which reuses the INVITE's Via."""
    r = ' retrans="500"' if retrans else ""
    via = "[last_Via:]" if same_branch else "Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]"
    return f"""  <send{r}>
    <![CDATA[
      {method} {uri} SIP/2.0
      {via}
      From: <sip:[field0]@[remote_ip]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[field2]@[remote_ip]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: {cseq} {method}
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
"""


_ACK_407 = _in_dialog("ACK", 1, "sip:[field2]@[remote_ip]:[remote_port]", same_branch=True)
_AUTH = (_invite(1, False) + '  <recv response="100" optional="true"/>\n  <recv response="407" auth="true"/>\n'
         + _ACK_407 + _invite(2, True) + '  <recv response="100" optional="true"/>\n')


def uac(outcome: int, hold_ms: int = 500) -> str:
    """Caller (CSV: caller;[authentication ...];callee) expecting ``outcome``: 200 (then BYE) or a failure code."""
    body = _HEAD.format(name=f"uac-{outcome}") + _AUTH
    if outcome == 200:
        body += '  <recv response="180" optional="true"/>\n  <recv response="183" optional="true"/>\n'
        body += '  <recv response="200" rrs="true"/>\n' + _in_dialog("ACK", 2)
        body += f'  <pause milliseconds="{hold_ms}"/>\n' + _in_dialog("BYE", 3, retrans=True)
        body += '  <recv response="200" crlf="true"/>\n'
    else:
        body += '  <recv response="180" optional="true"/>\n  <recv response="183" optional="true"/>\n'
        body += f'  <recv response="{outcome}"/>\n' + _in_dialog("ACK", 2, "sip:[field2]@[remote_ip]:[remote_port]", same_branch=True)
    return body + "</scenario>\n"


def uac_cancel() -> str:
    """Caller that cancels after hearing ringing: expects 200 to CANCEL and 487 to the INVITE."""
    body = _HEAD.format(name="uac-cancel") + _AUTH + '  <recv response="180"/>\n'
    body += """  <send>
    <![CDATA[
      CANCEL sip:[field2]@[remote_ip]:[remote_port] SIP/2.0
      [last_Via:]
      From: <sip:[field0]@[remote_ip]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[field2]@[remote_ip]>
      Call-ID: [call_id]
      CSeq: 2 CANCEL
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200"/>
  <recv response="487"/>
"""
    body += _in_dialog("ACK", 2, "sip:[field2]@[remote_ip]:[remote_port]", same_branch=True)
    return body + "</scenario>\n"


_UAS_RESP = """  <send>
    <![CDATA[
      SIP/2.0 {code} {reason}
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      {cseq}
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
{extra}      Content-Length: {length}
{body}
    ]]>
  </send>
"""


def _uas_resp(code: int, reason: str, sdp: bool = False, cseq: str = "[last_CSeq:]") -> str:
    if sdp:
        return _UAS_RESP.format(code=code, reason=reason, extra="      Content-Type: application/sdp\n",
                                length="[len]", body=_SDP, cseq=cseq)
    return _UAS_RESP.format(code=code, reason=reason, extra="", length="0", body="", cseq=cseq)


# The INVITE's CSeq, kept for a final response sent after another request (CANCEL) arrived.
_KEEP_CSEQ = """  <recv request="INVITE" crlf="true">
    <action><ereg regexp=".*" search_in="hdr" header="CSeq:" check_it="true" assign_to="invcseq"/></action>
  </recv>
"""


def uas(behaviour: str) -> str:
    """Callee: ``answer`` (180, 200, wait for BYE), ``busy`` (486), ``ring`` (180, then expect CANCEL)."""
    first = _KEEP_CSEQ if behaviour == "ring" else '  <recv request="INVITE" crlf="true"/>\n'
    body = _HEAD.format(name=f"uas-{behaviour}") + first
    if behaviour == "answer":
        body += _uas_resp(180, "Ringing") + _uas_resp(200, "OK", sdp=True)
        body += '  <recv request="ACK" crlf="true"/>\n  <recv request="BYE"/>\n' + _uas_resp(200, "OK")
    elif behaviour == "busy":
        body += _uas_resp(486, "Busy Here") + '  <recv request="ACK"/>\n'
    elif behaviour == "ring":
        body += _uas_resp(180, "Ringing") + '  <recv request="CANCEL"/>\n' + _uas_resp(200, "OK")
        body += _uas_resp(487, "Request Terminated", cseq="CSeq:[$invcseq]") + '  <recv request="ACK"/>\n'
    else:
        raise ValueError(behaviour)
    return body + "</scenario>\n"
