"""The HTTP calls of the AWS credential sources (STS, the container and instance metadata
endpoints): one request, its answer read whole and bounded, network failures turned into
CredentialError with a text that names no address and no token."""

from __future__ import annotations

from datetime import datetime
from typing import Final

import aiohttp
import yarl

from gateway.upstream.refresh import CredentialError

# Credential answers are a few kilobytes; anything much larger is not one.
MAX_ANSWER_BYTES: Final = 256 * 1024
# Metadata endpoints answer in milliseconds or not at all (not on EC2: the address is a black
# hole), STS in well under a second: a short limit keeps a start-up off an instance from hanging.
CALL_TIMEOUT: Final = aiohttp.ClientTimeout(total=10.0, sock_connect=2.0)


async def call(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    what: str,
    *,
    headers: dict[str, str] | None = None,
    data: bytes | None = None,
) -> tuple[int, bytes]:
    """Send one request to a credential endpoint (`what` names it in errors); the status and the
    body. Raises CredentialError when the endpoint cannot be reached or the answer is too long."""
    try:
        async with http.request(
            method, yarl.URL(url, encoded=True), headers=headers, data=data, timeout=CALL_TIMEOUT
        ) as response:
            body = await response.content.read(MAX_ANSWER_BYTES + 1)
            if len(body) > MAX_ANSWER_BYTES:
                raise CredentialError(f"{what} sent an answer over {MAX_ANSWER_BYTES} bytes")
            return response.status, body
    except TimeoutError:
        raise CredentialError(f"{what} did not answer in time") from None
    except aiohttp.ClientError as exc:
        raise CredentialError(f"{what} could not be reached ({type(exc).__name__})") from None


def parse_expiration(text: str, what: str) -> float:
    """An ISO 8601 expiry (`2026-05-09T12:00:00Z`, with or without fractions) as epoch seconds.
    Raises CredentialError for anything else, or a time without a zone."""
    try:
        at = datetime.fromisoformat(text.strip())
    except ValueError:
        raise CredentialError(f"{what} gave an expiration that is not a time") from None
    if at.tzinfo is None:
        raise CredentialError(f"{what} gave an expiration without a time zone")
    return at.timestamp()
