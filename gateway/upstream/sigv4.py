"""AWS Signature Version 4, the request signing that Bedrock checks.

Pure: the credentials and the time are arguments; nothing here reads the environment or a clock
(gateway/upstream/credentials.py supplies both). The steps, and a worked example to test against, are in
docs/providers/bedrock.md#sigv4; tests/unit/gateway/upstream/test_sigv4.py also checks every case against
botocore's own signer.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final
from urllib.parse import quote, unquote, urlsplit

ALGORITHM: Final = "AWS4-HMAC-SHA256"
# Headers that a proxy or the HTTP stack may add, rewrite or drop on the way: signed, they would
# break the signature for nothing. (The same set botocore leaves out.)
UNSIGNED_HEADERS: Final = frozenset(
    {
        "connection",
        "expect",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "user-agent",
        "x-amzn-trace-id",
    }
)
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class AwsCredentials:
    """An AWS access key pair, plus the session token that temporary credentials come with.

    The repr leaves the secrets out, so that a traceback or a debug print cannot show them.
    """

    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)


def derive_signing_key(secret_access_key: str, date: str, region: str, service: str) -> bytes:
    """The key that signs every request of one day (`date` is YYYYMMDD) to one region and service."""
    key = _hmac(f"AWS4{secret_access_key}".encode(), date)
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    return key


class SigningKeys:
    """The last signing key derived, with what it was derived from.

    The key changes only when the date does, so one signer derives it once a day rather than
    spending four HMACs on it per request. Keyed on everything the key depends on, so a cached key
    can never sign for another date, region, service or secret.
    """

    __slots__ = ("_entry",)

    def __init__(self) -> None:
        self._entry: tuple[tuple[str, str, str, str], bytes] | None = None

    def get(self, secret_access_key: str, date: str, region: str, service: str) -> bytes:
        scope = (secret_access_key, date, region, service)
        entry = self._entry
        if entry is None or entry[0] != scope:
            entry = self._entry = (scope, derive_signing_key(*scope))
        return entry[1]


def sign(
    method: str,
    url: str,
    headers: Iterable[tuple[str, str]],
    body: bytes,
    credentials: AwsCredentials,
    region: str,
    service: str,
    now: datetime,
    *,
    keys: SigningKeys | None = None,
    content_sha256: bool = True,
) -> dict[str, str]:
    """The headers that sign this request: X-Amz-Date, X-Amz-Content-SHA256 (unless
    `content_sha256` is false), X-Amz-Security-Token with a session token, and Authorization.

    `url` must be exactly what will be sent (its path already percent-encoded), and `headers` every
    header that will be sent besides these; each is signed. `now` must be timezone-aware.
    Raises ValueError for a naive `now`.
    """
    if now.tzinfo is None:
        raise ValueError("now must be a timezone-aware datetime")
    amz_date = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    date = amz_date[:8]
    payload_hash = hashlib.sha256(body).hexdigest()
    added = {"X-Amz-Date": amz_date}
    if content_sha256:
        added["X-Amz-Content-SHA256"] = payload_hash
    # The token goes in before signing: AWS rejects temporary credentials whose token is unsigned.
    if credentials.session_token:
        added["X-Amz-Security-Token"] = credentials.session_token
    canonical, signed_headers = canonical_request(method, url, [*headers, *added.items()], payload_hash)
    scope = f"{date}/{region}/{service}/aws4_request"
    if keys is None:
        key = derive_signing_key(credentials.secret_access_key, date, region, service)
    else:
        key = keys.get(credentials.secret_access_key, date, region, service)
    signature = hmac.new(key, string_to_sign(amz_date, scope, canonical).encode(), hashlib.sha256).hexdigest()
    added["Authorization"] = (
        f"{ALGORITHM} Credential={credentials.access_key_id}/{scope}, "
        f"SignedHeaders={signed_headers}, Signature={signature}"
    )
    return added


def canonical_request(
    method: str, url: str, headers: Iterable[tuple[str, str]], payload_hash: str
) -> tuple[str, str]:
    """The canonical request of SigV4 and its list of signed header names (`a;b;c`)."""
    parts = urlsplit(url)
    values: dict[str, list[str]] = {}
    for name, value in headers:
        lower = name.lower()
        if lower not in UNSIGNED_HEADERS:
            # Trimmed, inner runs of whitespace collapsed: what the server computes from the wire.
            values.setdefault(lower, []).append(" ".join(value.split()))
    if "host" not in values:
        values["host"] = [host_header(url)]
    names = sorted(values)
    header_block = "".join(f"{name}:{','.join(values[name])}\n" for name in names)
    signed_headers = ";".join(names)
    canonical = "\n".join(
        (
            method.upper(),
            # Encoded once more as sent, so the `%3A` in a Bedrock model id is signed as `%253A`.
            # (Every service but S3 expects this double encoding.)
            quote(parts.path or "/", safe="/~"),
            canonical_query(parts.query),
            header_block,
            signed_headers,
            payload_hash,
        )
    )
    return canonical, signed_headers


def canonical_query(query: str) -> str:
    """A query string in SigV4's form: each name and value decoded, then percent-encoded leaving
    only the unreserved characters; pairs sorted by name, then value."""
    pairs = []
    for item in query.split("&"):
        if item:
            name, _, value = item.partition("=")
            # Decoding first makes `%c3%a9`, `%C3%A9` and a stray `é` all sign the way AWS reads them.
            pairs.append((quote(unquote(name), safe="-_.~"), quote(unquote(value), safe="-_.~")))
    return "&".join(f"{name}={value}" for name, value in sorted(pairs))


def host_header(url: str) -> str:
    """The Host header an HTTP client sends for `url`: with the port unless it is the scheme's."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"  # an IPv6 literal keeps its brackets
    port = parts.port
    if port is not None and port != _DEFAULT_PORTS.get(parts.scheme):
        host = f"{host}:{port}"
    return host


def string_to_sign(amz_date: str, scope: str, canonical: str) -> str:
    """What the signing key signs: the algorithm, time, scope and hash of the canonical request."""
    return "\n".join((ALGORITHM, amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()))


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()
