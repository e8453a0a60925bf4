"""The exact-match answer cache: the in-memory tier, the shared Redis tier, and streamed answers."""
