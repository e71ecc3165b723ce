"""Tests for the identity validators of minisip.sip.validate (issue 8 point 1)."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from minisip.sip.validate import (
    clean_display_name,
    clean_identity,
    clean_number,
    decode_user_part,
    escape_controls,
    is_number,
    is_user_part,
    quote_display_name,
)


class NumberTests(SynchronousTestCase):
    def test_numbers(self) -> None:
        for ok in ("100", "+31201234567", "*72", "#31#", "0"):
            self.assertTrue(is_number(ok), ok)
        for bad in ("", "+", "1+2", "12a", "1 2", "1\r\n", "+" + "1" * 64, "١٢"):
            self.assertFalse(is_number(bad), bad)

    def test_visual_separators_stripped(self) -> None:
        self.assertEqual(clean_number("+31 (20) 123-45.67"), "+31201234567")
        self.assertIsNone(clean_number("+31\r\n20"))
        self.assertIsNone(clean_number("-.()"))


class UserPartTests(SynchronousTestCase):
    def test_grammar(self) -> None:
        for ok in ("alice", "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*", "%41lice", "200%23"):
            self.assertTrue(is_user_part(ok), ok)
        for bad in ("", "a b", "a@b", "a%zz", "a%0", "a:b", "a<b", "a\r\nb", "a#b"):
            self.assertFalse(is_user_part(bad), bad)

    def test_decoded_only_when_safe(self) -> None:
        """The attack of the issue: %0d%0a decodes to a line break, %3e closes the URI."""
        self.assertIsNone(decode_user_part("x%3e%0d%0aSubject%3a%20pwned"))
        for bad in ("a%00", "a%20b", "a%40b", "a%3cb", "a%22", "a%25", "%c3%a9", "a%7f"):
            self.assertIsNone(decode_user_part(bad), bad)
        self.assertEqual(decode_user_part("%2A72%23"), "*72#")
        self.assertEqual(decode_user_part("alice"), "alice")
        self.assertEqual(decode_user_part("%2B31201234567"), "+31201234567")

    def test_identity(self) -> None:
        self.assertEqual(clean_identity("+31 20 1234567"), "+31201234567")
        self.assertEqual(clean_identity("anonymous"), "anonymous")
        for bad in ("x>\r\nSubject: pwned", "a b@c", "", "<sip:x>", "a" * 65):
            self.assertIsNone(clean_identity(bad), bad)


class DisplayNameTests(SynchronousTestCase):
    def test_controls_removed(self) -> None:
        self.assertEqual(clean_display_name("CEO\r\nSubject: x"), "CEO Subject: x")
        self.assertEqual(clean_display_name("A\x00B\u202e\u200bC\x7f"), "ABC")
        self.assertEqual(clean_display_name("  Bob\tSmith  "), "Bob Smith")
        self.assertEqual(clean_display_name("Jos\u00e9 \u5927"), "Jos\u00e9 \u5927")
        self.assertIsNone(clean_display_name("\r\n\x00"))
        self.assertIsNone(clean_display_name(None))
        self.assertEqual(len(clean_display_name("x" * 1000) or ""), 64)

    def test_quoted(self) -> None:
        self.assertEqual(quote_display_name('a "b" \\c'), '"a \\"b\\" \\\\c"')


class EscapeTests(SynchronousTestCase):
    def test_escape_controls(self) -> None:
        self.assertEqual(escape_controls("plain text é"), "plain text é")
        self.assertEqual(escape_controls("a\r\nb\x00\x1b[31m"), "a\\x0d\\x0ab\\x00\\x1b[31m")
        self.assertEqual(escape_controls("\u202e\u2028\x85"), "\\u202e\\u2028\\x85")
        self.assertEqual(escape_controls(b"a\xffb".decode("utf-8", "surrogateescape")), "a\\xffb")
        self.assertNotIn("\n", escape_controls("".join(chr(i) for i in range(0x3000))))
