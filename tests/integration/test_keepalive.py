"""Session keep-alive against a real minisip process: SIPp calls, and a registered contact that goes silent."""

from __future__ import annotations

import os
import re
import socket
import time

from minisip.sip.message import Request, make_response, parse_message
from tests.integration.harness import Minisip, plugin_folder
from tests.integration.scenarios import _AUTH, _HEAD, _in_dialog, _uas_resp
from tests.integration.test_sipp import EXTS, SippTestBase, auth


def _expect(code: int) -> str:
    return f'  <recv response="{code}"/>\n'


def _with_body(method: str, cseq: int, ctype: str, body: str) -> str:
    """An in-dialog request carrying a body (SIPp fills in [len])."""
    return f"""  <send retrans="500">
    <![CDATA[
      {method} [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:[field0]@[remote_ip]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[field2]@[remote_ip]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: {cseq} {method}
      Max-Forwards: 70
      Content-Type: {ctype}
      Content-Length: [len]

{body}
    ]]>
  </send>
"""


def uac_keepalives(with_dtmf: bool = False) -> str:
    """Caller: once answered, body-less INFO, UPDATE and MESSAGE (200 each), optionally an INFO with
    DTMF (answered by the callee), BYE, then a body-less INFO in the dead dialog (481)."""
    body = _HEAD.format(name="uac-keepalives") + _AUTH
    body += '  <recv response="180" optional="true"/>\n  <recv response="183" optional="true"/>\n'
    body += '  <recv response="200" rrs="true"/>\n' + _in_dialog("ACK", 2)
    cseq = 3
    for method in ("INFO", "UPDATE", "MESSAGE"):
        body += _in_dialog(method, cseq, retrans=True) + _expect(200)
        cseq += 1
    if with_dtmf:
        body += _with_body("INFO", cseq, "application/dtmf-relay", "Signal=5\r\nDuration=160") + _expect(200)
        cseq += 1
    body += _in_dialog("BYE", cseq, retrans=True) + _expect(200)
    body += '  <pause milliseconds="200"/>\n'
    body += _in_dialog("INFO", cseq + 1, retrans=True) + _expect(481)
    return body + "</scenario>\n"


def _answer(code: int = 200, reason: str = "OK") -> str:
    """The answer to an in-dialog request received (its To already carries our tag)."""
    return f"""  <send>
    <![CDATA[
      SIP/2.0 {code} {reason}
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
"""


def uas_dtmf() -> str:
    """Callee that answers, then expects exactly one INFO (the DTMF one) before the BYE."""
    body = _HEAD.format(name="uas-dtmf") + '  <recv request="INVITE" crlf="true"/>\n'
    body += _uas_resp(180, "Ringing") + _uas_resp(200, "OK", sdp=True)
    body += '  <recv request="ACK" crlf="true"/>\n'
    body += '  <recv request="INFO"/>\n' + _answer()
    body += '  <recv request="BYE"/>\n' + _uas_resp(200, "OK")
    return body + "</scenario>\n"


def uac_dead_dialog() -> str:
    """Caller whose dialog state is lost after the answer: it answers the server's probe with 481,
    then expects the BYE that releases the call."""
    body = _HEAD.format(name="uac-dead-dialog") + _AUTH
    body += '  <recv response="180" optional="true"/>\n  <recv response="183" optional="true"/>\n'
    body += '  <recv response="200" rrs="true"/>\n' + _in_dialog("ACK", 2)
    body += '  <recv request="INFO" timeout="10000"/>\n' + _answer(481, "Call/Transaction Does Not Exist")
    body += '  <recv request="BYE" timeout="10000"/>\n' + _answer()
    return body + "</scenario>\n"


def uas_probed() -> str:
    """Callee that answers the call, answers the server's probe with 200, then expects the BYE."""
    body = _HEAD.format(name="uas-probed") + '  <recv request="INVITE" crlf="true"/>\n'
    body += _uas_resp(180, "Ringing") + _uas_resp(200, "OK", sdp=True)
    body += '  <recv request="ACK" crlf="true"/>\n'
    body += '  <recv request="INFO" timeout="10000"/>\n' + _answer()
    body += '  <recv request="BYE" timeout="10000"/>\n' + _answer()
    return body + "</scenario>\n"


class KeepaliveTestBase(SippTestBase):
    """minisip with only the keep-alive plugin loaded (a folder holding a link to plugins/keepalive.py)."""

    keepalive = ""

    def setUp(self) -> None:
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        plugin_dir = plugin_folder(self.dir, "keepalive.py")
        extra = "\n".join(["no_answer_timeout = 3", "[plugins]", f"directories = {plugin_dir}",
                           "[keepalive]", self.keepalive])
        self.server = Minisip(self.dir, EXTS, extra=extra)
        self.addCleanup(self.server.stop)
        self.server.start()
        self.peers = []
        self.server.wait_log("plugin minisip.keepalive loaded")

    def caller(self, name: str, xml: str, callee: str = "101") -> None:
        uac = self.sipp(name, xml, [f"100;{auth('100')};{callee}"])
        rc = uac.run(self.target)
        self.assertEqual(rc, 0, uac.diagnostics() + self.server.read_log()[-3000:])


class InDialogKeepaliveTests(KeepaliveTestBase):
    keepalive = "options_interval = 0"

    def test_bodyless_requests_answered_by_the_server(self) -> None:
        """INFO/UPDATE/MESSAGE without body in a live call get 200 and never reach the callee (its
        scenario expects only INVITE, ACK and BYE: SIPp fails on any other request); 481 after the call."""
        uas = self.uas("uas101", "answer")
        self.register("101", f"127.0.0.1:{uas.port}")
        self.caller("keepalives", uac_keepalives())
        self.assertEqual(uas.wait(20), 0, uas.diagnostics())
        seen_by_callee = uas.messages()
        for method in ("INFO", "UPDATE", "MESSAGE"):
            self.assertNotIn(f"{method} sip:", seen_by_callee)
        self.assertIn("BYE sip:", seen_by_callee)
        self.server.wait_log("ended: normal")
        self.assertIn(("100", "101", 1, "normal"), self.call_records())

    def test_info_with_dtmf_still_goes_across(self) -> None:
        uas = self.sipp("uasdtmf", uas_dtmf())
        uas.start()
        self.register("101", f"127.0.0.1:{uas.port}")
        self.caller("keepalivesdtmf", uac_keepalives(with_dtmf=True))
        self.assertEqual(uas.wait(20), 0, uas.diagnostics())
        received = uas.messages()
        self.assertEqual(received.count("INFO sip:"), 1)
        self.assertIn("Signal=5", received)
        self.server.wait_log("ended: normal")


def uas_pong() -> str:
    """A phone that only answers OPTIONS (each ping is one SIPp 'call')."""
    return _HEAD.format(name="uas-pong") + """  <recv request="OPTIONS"/>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Allow: INVITE, ACK, BYE, CANCEL, OPTIONS
      Content-Length: 0

    ]]>
  </send>
</scenario>
"""


class SupervisionTests(KeepaliveTestBase):
    keepalive = "options_interval = 0\ndialog_timeout = 2"

    def test_call_with_a_dead_side_is_released(self) -> None:
        """After 2 s without in-dialog traffic both sides get a body-less INFO; the caller answers 481,
        so the server releases the call with BYE to both (both SIPp scenarios require the BYE)."""
        uas = self.sipp("uasprobed", uas_probed())
        uas.start()
        self.register("101", f"127.0.0.1:{uas.port}")
        self.caller("deaddialog", uac_dead_dialog())
        self.assertEqual(uas.wait(20), 0, uas.diagnostics())
        log = self.server.wait_log("ended: dialog timeout")
        self.assertRegex(log, r"call \w+ from 100 to 101: no in-dialog traffic for \d+s and the probe failed")
        self.assertIn(("100", "101", 1, "dialog timeout"), self.call_records())


class SilentPhone:
    """A UDP socket registered as a contact: it drops every request until told to answer OPTIONS."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.options = 0

    def drain(self, answer: bool = False, timeout: float = 0.0) -> None:
        """Read what has arrived, waiting up to ``timeout`` seconds for each datagram (0: only what is
        there); with ``answer``, reply 200 to every OPTIONS."""
        self.sock.settimeout(timeout)          # 0.0 makes the socket non-blocking
        while True:
            try:
                data, addr = self.sock.recvfrom(65535)
            except (BlockingIOError, TimeoutError):
                return
            msg = parse_message(data)
            if isinstance(msg, Request) and msg.method == "OPTIONS":
                self.options += 1
                if answer:
                    self.sock.sendto(make_response(msg, 200, "OK", to_tag="silent").to_bytes(), addr)

    def close(self) -> None:
        self.sock.close()


class QualifyTests(KeepaliveTestBase):
    keepalive = "options_interval = 1\noptions_timeout = 1\noptions_timeout_failures = 2"

    def test_silent_contact_marked_unreachable_then_recovers(self) -> None:
        silent = SilentPhone()
        self.addCleanup(silent.close)
        # (a SIPp UAS running a call scenario fails on an OPTIONS: this one answers pings only)
        alive = self.sipp("pong101", uas_pong())
        alive.start(calls=1000)
        self.register("101", f"127.0.0.1:{alive.port}")
        self.register("102", f"127.0.0.1:{silent.port}")
        started = time.monotonic()
        log = self.server.wait_log("stopped answering", timeout=15)
        took = time.monotonic() - started
        line = next(line for line in log.splitlines() if "stopped answering" in line)
        self.assertRegex(line, rf"extension 102: contact sip:102@127\.0\.0\.1:{silent.port}\S* stopped answering")
        self.assertLess(took, 10)
        silent.drain()
        self.assertGreaterEqual(silent.options, 2)
        # the SIPp contact answers its pings: never marked
        self.assertNotIn("extension 101: contact", log)
        # routing skips the unreachable contact: its only one
        self.call("100", "102", 480)
        self.server.wait_log("ended: unavailable")
        self.assertIn("OPTIONS sip:101@", alive.messages())
        # the silent phone answers again: back in service
        deadline = time.monotonic() + 10
        while "is reachable again" not in self.server.read_log() and time.monotonic() < deadline:
            silent.drain(answer=True, timeout=0.2)
        log = self.server.wait_log("is reachable again", timeout=1)
        self.assertRegex(log, rf"extension 102: contact sip:102@127\.0\.0\.1:{silent.port}\S* is reachable again")
        self.assertEqual(len(re.findall("extension 101: contact", log)), 0)

    def test_reregistration_clears_the_mark(self) -> None:
        silent = SilentPhone()
        self.addCleanup(silent.close)
        self.register("102", f"127.0.0.1:{silent.port}")
        self.server.wait_log("stopped answering", timeout=15)
        self.register("102", f"127.0.0.1:{silent.port}")
        # marked again later (it still does not answer), which proves the first mark was cleared
        self.server.wait_log("stopped answering", timeout=15, count=2)

