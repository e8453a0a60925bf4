"""Answers for bytes that are not a request aiohttp can parse, in the client's error shape.

aiohttp's HTTP parser refuses a request before any handler (and so before the middleware that
shapes errors) sees it: raw bytes past ASCII in the target, a header name or value with control
bytes, chunked framing or a Content-Length that is not a number, a request line of garbage, a TLS
or HTTP/2 greeting on the plain port. Its own answer is a plain-text 400 that echoes the bytes it
choked on, and it logs them with a traceback: a key in a broken header would end up in a log.

Here the refusal becomes the OpenAI error body (Anthropic's when the request line names
/v1/messages) with an `x-request-id`, and one service log line with that id, the exception's
class and a reason that holds none of the client's bytes: llhttp's own description of the
fault (a fixed string of the parser's), or a fixed text of ours.
"""

from __future__ import annotations

import logging
import re
from typing import Final

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong

from gateway.errors.answers import error_response, from_code
from gateway.errors.catalogue import ErrorCode
from gateway.formats.frontdoor import ANTHROPIC_DOOR
from gateway.pipeline.context import new_request_id

log = logging.getLogger("tollway")

# llhttp's errors read "<its description>:\n\n  <the bytes>\n  <a pointer>" (a status-line fault
# with "Bad status line:\n  " in front); only the description is kept, and only when it is made of
# the plain characters llhttp's descriptions use.
_LLHTTP_REASON: Final = re.compile(r"(?:Bad status line:\n  )?([A-Za-z][A-Za-z0-9 ,./`'_:-]{0,80}):\n\n  ")
# Faults aiohttp raises itself, with texts that hold no client bytes (a duplicate header is one of
# a fixed set of names).
_OWN_REASON: Final = re.compile(
    r"Too many headers received|Missing 'Host' header in request\.|Received HTTPS traffic on an HTTP port"
    r"|Duplicate '[A-Za-z-]{1,40}' header found\."
)
# A request line as far as the bytes in hand show it: the method and the path before any query.
_REQUEST_LINE: Final = re.compile(rb"[A-Z]{3,10} (/[^ \r\n?#]*)")
_TOO_MANY_HEADERS: Final = "Too many headers received"


def parser_reason(exc: BaseException) -> str:
    """What was wrong with the bytes, in words that contain none of them."""
    if isinstance(exc, LineTooLong):  # its message quotes the start of the long line
        return "a line longer than the limit"
    message = exc.message if isinstance(exc, HttpProcessingError) else ""
    if _OWN_REASON.fullmatch(message):
        return message
    match = _LLHTTP_REASON.match(message)
    if match:
        return match.group(1)
    return "unparsable HTTP"  # e.g. an invalid URL, whose message is the URL itself


def refusal(exc: BaseException, head: bytes, max_line_size: int) -> web.Response:
    """The answer to a request the parser refused: 400, or 414/431 for a request line or headers
    past aiohttp's limits; the connection is closed after it. `head` holds the bytes of the read
    that failed (b"" when unknown): when they start with a request line, its path picks the error
    shape and tells a long request line from a long header."""
    reason = parser_reason(exc)
    line = _REQUEST_LINE.match(head)
    end_of_line = head.find(b"\r\n")
    if isinstance(exc, LineTooLong) and line is not None and not 0 <= end_of_line <= max_line_size:
        err = from_code(
            ErrorCode.REQUEST_LINE_TOO_LONG, f"the request line is longer than {max_line_size} bytes"
        )
    elif isinstance(exc, LineTooLong) or reason == _TOO_MANY_HEADERS:
        err = from_code(ErrorCode.HEADERS_TOO_LARGE, "the request's header fields are too large or too many")
    else:
        err = from_code(ErrorCode.MALFORMED_REQUEST, f"the request is not valid HTTP/1.1: {reason}")
    request_id = new_request_id()
    log.warning(
        "refused a request aiohttp could not parse",
        extra={
            "fields": {
                "request_id": request_id,
                "status": err.status,
                "error": type(exc).__name__,
                "reason": reason,
            }
        },
    )
    anthropic = line is not None and line.group(1).startswith(b"/v1/messages")
    response = ANTHROPIC_DOOR.error(err, request_id) if anthropic else error_response(err, request_id)
    response.headers["Connection"] = "close"  # also for the HTTP/1.0 aiohttp assumes of it
    response.force_close()
    return response
