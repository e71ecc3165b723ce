"""SIP trunks against a real minisip process: a SIPp carrier sees the registration with digest and a
tel: Request-URI, and an inbound tel: call from the carrier's address rings the DID's extension."""

from __future__ import annotations

import os
import re
import socket
import ssl
import time

from minisip.transport import tls
from tests.integration.harness import Minisip, Sipp, plugin_folder
from tests.integration.scenarios import _HEAD
from tests.integration.test_sipp import SippTestBase

EXTS = {"100": "100", "101": "101"}
USER, PASSWORD = "trunkuser", "carrierpw"

_SDP = """
      v=0
      o=carrier 1 1 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0
      a=rtpmap:0 PCMU/8000
"""


def _response(code: int, reason: str, extra: str = "", sdp: bool = False, tag: bool = True) -> str:
    """A response to the last request; ``tag`` adds our To tag (not for in-dialog requests)."""
    body = _SDP if sdp else "\n"
    to_tag = ";tag=[pid]SIPpTag01[call_number]" if tag else ""
    ctype = "      Content-Type: application/sdp\n" if sdp else ""
    return f"""  <send>
    <![CDATA[
      SIP/2.0 {code} {reason}
      [last_Via:]
      [last_From:]
      [last_To:]{to_tag}
      [last_Call-ID:]
      [last_CSeq:]
{extra}{ctype}      Content-Length: [len]
{body}    ]]>
  </send>
"""


# The carrier: every Call-ID is a new SIPp call, so the scenario starts with either the REGISTER
# (401, then an authenticated REGISTER, 200) or the INVITE (must be to tel:+31201234567; 407, then an
# INVITE with Proxy-Authorization, 180, 200, ACK, BYE).
CARRIER_UAS = _HEAD.format(name="carrier") + f"""  <recv request="REGISTER" optional="true" next="register">
    <action>
      <ereg regexp="^REGISTER sip:127[.]0[.]0[.]1:[0-9]+ SIP/2[.]0" search_in="msg" check_it="true" assign_to="r0"/>
      <ereg regexp="sip:{USER}@127[.]0[.]0[.]1" search_in="hdr" header="To:" check_it="true" assign_to="r1"/>
    </action>
  </recv>
  <recv request="INVITE" next="invite">
    <action>
      <ereg regexp="^INVITE tel:[+]31201234567 SIP/2[.]0" search_in="msg" check_it="true" assign_to="i0"/>
      <ereg regexp="&lt;tel:[+]31201234567&gt;" search_in="hdr" header="To:" check_it="true" assign_to="i1"/>
      <ereg regexp="sip:[+]31201234500@127[.]0[.]0[.]1" search_in="hdr" header="From:" check_it="true"
            assign_to="i2"/>
    </action>
  </recv>

  <label id="register"/>
""" + _response(401, "Unauthorized", '      WWW-Authenticate: Digest realm="carrier.example", '
                                     'nonce="[pid]n[call_number]", algorithm=MD5, qop="auth"\n') + f"""  <recv request="REGISTER">
    <action>
      <ereg regexp="Digest .*username=.{USER}[^a-z]" search_in="hdr" header="Authorization:" check_it="true"
            assign_to="r2"/>
      <ereg regexp="uri=.sip:127[.]0[.]0[.]1:[0-9]+[^0-9]" search_in="hdr" header="Authorization:" check_it="true"
            assign_to="r3"/>
    </action>
  </recv>
""" + _response(200, "OK", "      [last_Contact:];expires=3600\n").replace("<send>", '<send next="end">') + """
  <label id="invite"/>
""" + _response(407, "Proxy Authentication Required", '      Proxy-Authenticate: Digest realm="carrier.example", '
                                                      'nonce="[pid]p[call_number]", algorithm=MD5, qop="auth"\n') + f"""  <recv request="ACK"/>
  <recv request="INVITE">
    <action>
      <ereg regexp="^INVITE tel:[+]31201234567 SIP/2[.]0" search_in="msg" check_it="true" assign_to="a0"/>
      <ereg regexp="Digest .*username=.{USER}[^a-z]" search_in="hdr" header="Proxy-Authorization:" check_it="true"
            assign_to="a1"/>
      <ereg regexp="uri=.tel:[+]31201234567[^0-9]" search_in="hdr" header="Proxy-Authorization:" check_it="true"
            assign_to="a2"/>
    </action>
  </recv>
""" + _response(180, "Ringing") + _response(200, "OK", "      Contact: <sip:carrier@[local_ip]:[local_port]>\n",
                                             sdp=True) + """  <recv request="ACK" crlf="true"/>
  <recv request="BYE"/>
""" + _response(200, "OK", tag=False) + """
  <label id="end"/>
  <nop>
    <action>
      <log message="checks passed: [$r0] [$r1] [$r2] [$r3] [$i0] [$i1] [$i2] [$a0] [$a1] [$a2]"/>
    </action>
  </nop>
</scenario>
"""


# The carrier calling in: INVITE tel:+31201234567 without credentials, then ACK and BYE.
CARRIER_UAC = _HEAD.format(name="carrier-in") + """  <send retrans="500">
    <![CDATA[
      INVITE tel:+31201234567 SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <tel:+31612345678>;tag=[pid]SIPpTag00[call_number]
      To: <tel:+31201234567>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:carrier@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]
""" + _SDP + """
    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <recv response="200" rrs="true"/>
  <send>
    <![CDATA[
      ACK [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <tel:+31612345678>;tag=[pid]SIPpTag00[call_number]
      To: <tel:+31201234567>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <pause milliseconds="500"/>
  <send retrans="500">
    <![CDATA[
      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <tel:+31612345678>;tag=[pid]SIPpTag00[call_number]
      To: <tel:+31201234567>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 2 BYE
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200" crlf="true"/>
</scenario>
"""


class TrunkTestBase(SippTestBase):
    """minisip with only the trunks plugin (a folder holding a link to plugins/trunks.py) and one
    [trunk carrier] whose proxy is a SIPp made before the server starts."""

    def setUp(self) -> None:
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        plugin_dir = plugin_folder(self.dir, "trunks.py")
        self.peers: list[Sipp] = []
        self.carrier = self.carrier_peer()
        trunk = "\n".join(f"{k} = {v}" for k, v in self.trunk_keys(self.carrier.port).items())
        extra = "\n".join(["no_answer_timeout = 10", "[plugins]", f"directories = {plugin_dir}",
                           "[trunk carrier]", trunk])
        self.server = Minisip(self.dir, EXTS, extra=extra)
        self.addCleanup(self.server.stop)
        self.before_server()
        self.server.start()
        self.server.wait_log("plugin minisip.trunks loaded")

    def carrier_peer(self) -> Sipp:
        raise NotImplementedError

    def trunk_keys(self, port: int) -> dict[str, str]:
        raise NotImplementedError

    def before_server(self) -> None:
        pass


class OutboundTests(TrunkTestBase):
    def carrier_peer(self) -> Sipp:
        return self.sipp("carrier", CARRIER_UAS)

    def trunk_keys(self, port: int) -> dict[str, str]:
        return {"proxy": f"127.0.0.1:{port}", "username": USER, "password": PASSWORD, "register": "yes",
                "prefix": "9", "strip": "2", "prepend": "+31", "use_tel_uri": "yes", "phone_context": "+31",
                "from_number": "+31201234500", "did": "+31201234567:100"}

    def before_server(self) -> None:
        self.carrier.start(calls=2)      # the registration, then the call

    def test_registration_with_digest_then_tel_call_through_the_carrier(self) -> None:
        log = self.server.wait_log("trunk carrier: registered at udp:127.0.0.1:")
        self.assertIn(f"as {USER} for 3600 s", log)
        self.call("100", "90201234567", 200)      # 9 (outside line) 0 (national) 20 1234567
        self.assertEqual(self.carrier.wait(20), 0, self.carrier.diagnostics() + self.server.read_log()[-3000:])
        log = self.server.wait_log("ended: normal")
        self.assertIn("goes out as tel:+31201234567", log)
        self.assertIn(("100", "90201234567", 1, "normal"), self.call_records())
        msgs = self.carrier.messages()
        self.assertRegex(msgs, r"INVITE tel:\+31201234567 SIP/2\.0")
        self.assertRegex(msgs, r'Proxy-Authorization: Digest username="trunkuser"')
        self.assertRegex(msgs, r'Authorization: Digest username="trunkuser"')


class InboundTests(TrunkTestBase):
    def carrier_peer(self) -> Sipp:
        return self.sipp("carrierin", CARRIER_UAC)

    def trunk_keys(self, port: int) -> dict[str, str]:
        return {"proxy": f"127.0.0.1:{port}", "did": "+31201234567:100 +31201234568:101"}

    def test_inbound_tel_call_rings_the_did_extension(self) -> None:
        uas = self.uas("uas100", "answer")
        self.register("100", f"127.0.0.1:{uas.port}")
        rc = self.carrier.run(self.target)       # SIPp bound to the trunk's proxy port (-p)
        self.assertEqual(rc, 0, self.carrier.diagnostics() + self.server.read_log()[-3000:])
        self.assertEqual(uas.wait(20), 0, uas.diagnostics())
        log = self.server.wait_log("ended: normal")
        self.assertIn("trunk carrier: inbound call from +31612345678 to +31201234567 for 100", log)
        self.assertIn(("+31612345678", "100", 1, "normal"), self.call_records())
        self.assertNotIn("SIP/2.0 407", self.carrier.messages())   # not "407" alone: time stamps hold it



def _tls_invite(port: int, pair: tuple[str, str] | None, did: str, timeout: float = 10.0) -> list[int]:
    """An INVITE to ``did`` over a fresh TLS connection to minisip, showing ``pair`` as the client
    certificate (or none); the status codes received until the final one (or the timeout)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE        # minisip's own certificate is self-signed
    if pair is not None:
        context.load_cert_chain(*pair)
    statuses: list[int] = []
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw, \
            context.wrap_socket(raw) as conn:
        here = "127.0.0.1:%d" % conn.getsockname()[1]
        call_id = os.urandom(8).hex()
        body = (b"v=0\r\no=carrier 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
                b"m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")
        head = (f"INVITE tel:{did} SIP/2.0\r\nVia: SIP/2.0/TLS {here};branch=z9hG4bK{call_id}\r\n"
                f"Max-Forwards: 70\r\nFrom: <tel:+31612345678>;tag={call_id[:6]}\r\nTo: <tel:{did}>\r\n"
                f"Call-ID: {call_id}@carrier\r\nCSeq: 1 INVITE\r\nContact: <sip:carrier@{here};transport=tls>\r\n"
                f"Content-Type: application/sdp\r\nContent-Length: {len(body)}\r\n\r\n")
        conn.sendall(head.encode() + body)
        data = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not any(s >= 200 for s in statuses):
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
            statuses = [int(m) for m in re.findall(rb"^SIP/2\.0 (\d{3}) ", data, re.MULTILINE)]
    return statuses


class TlsCertificateTests(TrunkTestBase):
    """Issue 8 point 11, against the real server over real TLS: a carrier pinned by the fingerprint of
    its client certificate is recognised by it (no digest challenge) from whatever address and port it
    connects; the same connection without that certificate, or with another one, is challenged (407)."""

    def carrier_peer(self) -> Sipp:
        self.pairs = {name: tls.ensure_certificate(os.path.join(self.dir, name), None, None, f"{name}.example")
                      for name in ("carrier", "stranger")}
        return self.sipp("unused", CARRIER_UAC)   # only its port: the proxy address nothing listens on

    def trunk_keys(self, port: int) -> dict[str, str]:
        return {"proxy": f"127.0.0.1:{port}", "transport": "tls", "did": "+31201234567:100",
                "certificate": tls.certificate_fingerprint(self.pairs["carrier"][0])}

    def test_the_carrier_is_its_certificate(self) -> None:
        port = self.server.tls
        pinned = _tls_invite(port, self.pairs["carrier"], "+31201234567")
        self.assertTrue(pinned and pinned[-1] >= 400 and 407 not in pinned, pinned)  # 100 is not registered
        self.assertEqual(_tls_invite(port, None, "+31201234567")[-1:], [407])
        self.assertEqual(_tls_invite(port, self.pairs["stranger"], "+31201234567")[-1:], [407])
        log = self.server.read_log()
        self.assertIn("trunk carrier: inbound call from +31612345678 to +31201234567 for 100", log)
        self.assertEqual(log.count("trunk carrier: inbound call"), 1, log[-3000:])
        self.server.assert_no_tracebacks(self)
