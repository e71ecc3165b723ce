"""Tests for minisip.media: SRTP, DTLS-SRTP, ICE-lite and the compatibility seam."""
