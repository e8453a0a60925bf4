"""The gateway's error answers: the catalogue of every client-facing code, and the factories that build
them."""
