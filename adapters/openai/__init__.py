"""The OpenAI format: OpenAI-compatible providers, Azure, the wire shapes, streams and the rest of the
surface."""
