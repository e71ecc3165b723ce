"""Media: RTP relay, SRTP (SDES), DTLS-SRTP, ICE-lite."""
