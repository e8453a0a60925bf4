"""Talking to providers: pooled aiohttp sessions, timeouts, and the one place where network
exceptions become the gateway's own (UpstreamTimeout, UpstreamUnreachable).

A transport sends an adapter-built UpstreamRequest and hands back an UpstreamResponse whose body
is read whole or as chunks as they arrive. The built-in mock provider is a transport too
(gateway/mock_transport.py), so the request path does not know which one it talks to; so is the
SigningTransport that signs each request (AWS) before the HTTP transport sends it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Final, Protocol

import aiohttp
import msgspec
import yarl

from adapters.base import UpstreamRequest
from gateway.config import Timeouts

# An error body is read only to show its message; a provider that sends more is cut off here.
MAX_ERROR_BODY: Final = 64 * 1024


class UpstreamTimeout(Exception):
    """The provider did not connect, answer or finish within its configured time."""


class UpstreamUnreachable(Exception):
    """The connection to the provider failed or broke; the text says how, without addresses."""


class UpstreamResponse(Protocol):
    status: int
    headers: Mapping[str, str]

    async def read(self) -> bytes: ...

    async def read_error(self) -> bytes: ...

    def chunks(self) -> AsyncIterator[bytes]: ...

    def close(self) -> None: ...


class Transport(Protocol):
    async def send(self, request: UpstreamRequest, timeouts: Timeouts) -> UpstreamResponse: ...

    async def aclose(self) -> None: ...


def client_timeout(timeouts: Timeouts) -> aiohttp.ClientTimeout:
    """aiohttp's timeout for one provider or model: built once, used on every request.

    `sock_read` is the first-byte limit: it bounds the wait for the response headers, and so
    also any silence between two reads of a stream.
    """
    return aiohttp.ClientTimeout(
        total=timeouts.total_s,
        connect=timeouts.connect_s,
        sock_connect=timeouts.connect_s,
        sock_read=timeouts.first_byte_s,
    )


def _describe(exc: BaseException) -> str:
    # Deliberately vague: aiohttp's own texts name hosts and ports, which stay out of answers.
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "connection failed"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the server closed the connection"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "the answer was cut off"
    return type(exc).__name__


class HttpResponse:
    """An aiohttp response, with its network exceptions mapped."""

    __slots__ = ("_response", "headers", "status")

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.status = response.status
        self.headers: Mapping[str, str] = response.headers

    async def read(self) -> bytes:
        try:
            return await self._response.read()
        except TimeoutError:
            raise UpstreamTimeout() from None
        except aiohttp.ClientError as exc:
            raise UpstreamUnreachable(_describe(exc)) from None

    async def read_error(self) -> bytes:
        try:
            return await self._response.content.read(MAX_ERROR_BODY)
        except (TimeoutError, aiohttp.ClientError):
            return b""

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async for data in self._response.content.iter_any():
                yield data
        except TimeoutError:
            raise UpstreamTimeout() from None
        except aiohttp.ClientError as exc:
            raise UpstreamUnreachable(_describe(exc)) from None

    def close(self) -> None:
        # close(), not release(): when the body was not read to the end (a client that hung up),
        # the connection must be dropped so that the provider stops generating.
        if self._response.content.at_eof():
            self._response.release()
        else:
            self._response.close()


class HttpTransport:
    """One provider's pooled connections. `headers` are sent with every request (credentials).

    With `exact_urls`, each URL goes out byte for byte as the adapter built it. Otherwise aiohttp
    normalises it, which among other things decodes `%3A` to `:` in the path: harmless for most
    providers, fatal to a signature computed over the encoded path (Bedrock model ids).
    """

    def __init__(self, headers: Mapping[str, str], max_connections: int, *, exact_urls: bool = False) -> None:
        connector = aiohttp.TCPConnector(limit=max_connections, ttl_dns_cache=300)
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers=dict(headers),
            skip_auto_headers=("User-Agent",),
            auto_decompress=True,
        )
        self._timeouts: dict[Timeouts, aiohttp.ClientTimeout] = {}
        self._exact_urls = exact_urls

    async def send(self, request: UpstreamRequest, timeouts: Timeouts) -> UpstreamResponse:
        timeout = self._timeouts.get(timeouts)
        if timeout is None:
            timeout = self._timeouts[timeouts] = client_timeout(timeouts)
        url = yarl.URL(request.url, encoded=True) if self._exact_urls else request.url
        try:
            response = await self._session.request(
                request.method, url, data=request.body, headers=request.headers, timeout=timeout
            )
        except TimeoutError:
            raise UpstreamTimeout() from None
        except aiohttp.ClientError as exc:
            raise UpstreamUnreachable(_describe(exc)) from None
        return HttpResponse(response)

    async def aclose(self) -> None:
        await self._session.close()
        # Let the connector's transports finish closing before the loop goes away.
        await asyncio.sleep(0)


SignRequest = Callable[[UpstreamRequest], tuple[tuple[str, str], ...]]


class SigningTransport:
    """Adds the headers `sign` computes for each request (gateway/credentials.py), then sends it
    with `inner`. Signing happens here, at the last moment, because a signature covers the body
    built by the adapter and the time of sending; a retry is signed afresh."""

    __slots__ = ("_inner", "_sign")

    def __init__(self, inner: Transport, sign: SignRequest) -> None:
        self._inner = inner
        self._sign = sign

    async def send(self, request: UpstreamRequest, timeouts: Timeouts) -> UpstreamResponse:
        signed = msgspec.structs.replace(request, headers=(*request.headers, *self._sign(request)))
        return await self._inner.send(signed, timeouts)

    async def aclose(self) -> None:
        await self._inner.aclose()
