"""Tollway's benchmark: gateway overhead and throughput against a reference floor.

`python -m bench` starts a mock upstream (`bench.upstream`), the thinnest possible
aiohttp proxy as the floor (`bench.forwarder`) and tollway, then measures all three
side by side. Nothing here is imported by `gateway/` or `adapters/`.
"""
