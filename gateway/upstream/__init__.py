"""Talking to providers: the transports (HTTP, signing, mock), timeouts, and the credentials they send."""
