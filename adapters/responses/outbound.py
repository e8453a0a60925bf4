"""The `/v1/responses` front door's answer half: what the pipeline produced (an OpenAI
`chat.completion` body, or neutral stream events, whatever the provider) turned into a Responses
object or event stream (reference responses-and-messages-2026.md §2.2, §2.3). Pure translators:
bytes and neutral records in, bytes out.

Output order is the order of generation: reasoning (the extension fields `thinking_blocks` or
`reasoning_content`: one reasoning item with the thinking as its summary), then the message (text
as one `output_text` part, a refusal as a `refusal` part), then one `function_call` item per
tool call (`call_id` the provider's id). Status: `stop`/`tool_calls` → completed, `length` →
incomplete (`max_output_tokens`), `content_filter` → incomplete (`content_filter`). Ids derive
from the answer's id (`resp_…`, `msg_…`, `fc_…`, `rs_…`), so a stream and its cached replay agree.
"""

from __future__ import annotations

from typing import Final

import msgspec

from adapters.openai import wire as openai_wire
from adapters.responses.wire import (
    ArgumentsDeltaEvent,
    ArgumentsDoneEvent,
    ContentPartEvent,
    ErrorDetail,
    ErrorEvent,
    IncompleteDetails,
    InputTokensDetails,
    OutputFunctionCall,
    OutputItem,
    OutputItemEvent,
    OutputMessage,
    OutputReasoning,
    OutputRefusal,
    OutputText,
    OutputTokensDetails,
    RefusalDeltaEvent,
    RefusalDoneEvent,
    ResponseError,
    ResponseLifecycleEvent,
    ResponseObject,
    ResponsesUsage,
    StreamEvent,
    SummaryDeltaEvent,
    SummaryDoneEvent,
    SummaryPartEvent,
    SummaryText,
    TextDeltaEvent,
    TextDoneEvent,
)
from adapters.schema import ChatChunk, ChatResponse, ReasonedUsage, StreamError, ToolCallDelta, Usage
from adapters.schema import StreamEvent as NeutralEvent

Fields = dict[str, msgspec.Raw]

_encode: Final = msgspec.json.Encoder().encode
# Request settings echoed in the response object as the client sent them (§1.5).
ECHOED: Final = (
    "instructions",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "temperature",
    "top_p",
    "max_output_tokens",
    "reasoning",
    "text",
    "metadata",
    "user",
    "store",
    "previous_response_id",
)


# --- shared pieces ----------------------------------------------------------------------------


def response_id(chat_id: str) -> str:
    """`resp_…` from the answer's id (the gateway's `chatcmpl-<request id>` or the provider's)."""
    if chat_id.startswith("resp_"):
        return chat_id
    return "resp_" + (chat_id.removeprefix("chatcmpl-") or "tollway")


def _usage(usage: Usage | None) -> ResponsesUsage:
    """Neutral usage in Responses' terms; the reasoning and cache-write counts of an OpenAI-format
    upstream (ReasonedUsage) are kept, other providers report none."""
    if usage is None:
        return ResponsesUsage(0, 0, 0, InputTokensDetails(), OutputTokensDetails())
    reasoning = written = 0
    if isinstance(usage, ReasonedUsage):
        reasoning, written = usage.reasoning_tokens, usage.cache_write_tokens
    return ResponsesUsage(
        usage.prompt_tokens,
        usage.completion_tokens,
        usage.total_tokens or usage.prompt_tokens + usage.completion_tokens,
        InputTokensDetails(usage.cached_tokens, written),
        OutputTokensDetails(reasoning),
    )


def _status(finish_reason: str | None) -> tuple[str, IncompleteDetails | None]:
    if finish_reason == "length":
        return "incomplete", IncompleteDetails("max_output_tokens")
    if finish_reason == "content_filter":
        return "incomplete", IncompleteDetails("content_filter")
    return "completed", None


def _response(
    fields: Fields,
    rid: str,
    created: int,
    model: str,
    status: str,
    output: list[OutputItem],
    usage: ResponsesUsage | None,
) -> ResponseObject:
    response = ResponseObject(rid, created, model, status, output, usage)
    for name in ECHOED:
        raw = fields.get(name)
        if raw is not None and len(raw):
            setattr(response, name, raw)
    return response


# --- answers ----------------------------------------------------------------------------------


def encode_response(chat_body: bytes, model: str, fields: Fields, rid: str | None = None) -> bytes:
    """An OpenAI `chat.completion` body (an OpenAI-format upstream's, or the cache's) as a
    Responses object labelled `model`, its usage with the details OpenAI gives; `fields` are the
    client's top-level request fields, echoed. `rid`: the response id (by default derived from
    the answer's id).

    Raises InvalidUpstreamAnswer when the body is not a chat completion.
    """
    return encode_answer(openai_wire.decode_response(chat_body), model, fields, rid)


def encode_answer(response: ChatResponse, model: str, fields: Fields, rid: str | None = None) -> bytes:
    """A neutral answer (its first choice) as a Responses object, as `encode_response` writes one."""
    rid = rid or response_id(response.id)
    suffix = rid.removeprefix("resp_")
    output: list[OutputItem] = []
    finish_reason = None
    choice = next((c for c in response.choices if c.index == 0), None)
    if choice is not None:
        message = choice.message
        finish_reason = choice.finish_reason
        if message.reasoning is not None:
            thinking = "".join(block.text or "" for block in message.reasoning if block.type == "thinking")
            summary = [SummaryText(thinking)] if thinking else []
            output.append(OutputReasoning(f"rs_{suffix}", summary, "completed"))
        parts: list[OutputText | OutputRefusal] = []
        if message.content:
            parts.append(OutputText(message.content))
        if message.refusal:
            parts.append(OutputRefusal(message.refusal))
        if parts:
            output.append(OutputMessage(f"msg_{suffix}", "completed", parts))
        for k, call in enumerate(message.tool_calls or ()):
            output.append(
                OutputFunctionCall(
                    f"fc_{suffix}_{k}",
                    call.id or f"call_{suffix}_{k}",
                    call.function.name,
                    call.function.arguments,
                    "completed",
                )
            )
    status, incomplete = _status(finish_reason)
    answer = _response(fields, rid, response.created, model, status, output, _usage(response.usage))
    answer.incomplete_details = incomplete
    if status == "completed":
        answer.completed_at = response.created
    return _encode(answer)


# --- streams ----------------------------------------------------------------------------------


class _Item:
    """An output item being streamed: its index, id, and what has arrived so far."""

    __slots__ = ("call_id", "id", "index", "kind", "name", "parts", "text")

    def __init__(self, kind: str, index: int, item_id: str) -> None:
        self.kind = kind  # "message", "function_call", "reasoning"
        self.index = index
        self.id = item_id
        self.text: list[str] = []  # reasoning summary, or function arguments
        self.parts: list[tuple[str, list[str]]] = []  # message parts: ("output_text"|"refusal", text)
        self.call_id = ""
        self.name = ""


_SSE_EVENT: Final = b"event: %b\ndata: %b\n\n"


class ResponsesStreamEncoder:
    """Neutral stream events as Responses events (§1.7, §2.3), each with its `event:` line and a
    `sequence_number` one above the last.

    `feed(events)` returns the events they complete; `close()`, at the end of a whole answer,
    finishes it. Order: `response.created` and `response.in_progress` at the first event; then
    items in order of generation, each opened (`output_item.added`, and for a message
    `content_part.added`), filled by deltas and closed (`.done` events, `output_item.done`) before
    the next opens (a tool call's late argument fragments, which no upstream we know sends, still
    go to its item by index). The finish reason is held until the usage chunk or the end; then
    `response.completed` or `response.incomplete` carries the whole output and the usage. An
    error event gives an `error` event and `response.failed`; nothing follows. Only the first
    choice is read. `rid` is the response id (by default derived from `chat_id`, the answer's);
    `final` is the response object of the terminal event once it has been written.
    """

    def __init__(
        self, model: str, fields: Fields, rid: str | None = None, chat_id: str = "", created: int = 0
    ) -> None:
        self._model = model
        self._fields = fields
        self._id = rid or response_id(chat_id)
        self._suffix = self._id.removeprefix("resp_")
        self._created = created
        self.final: bytes | None = None
        self._ended = False
        self._seq = 0
        self._started = False
        self._items: list[_Item] = []
        self._open: _Item | None = None
        self._calls: dict[int, _Item] = {}  # neutral tool-call index → its item
        self._finish: str | None = None
        self._finished = False  # a finish reason came (or the answer ended without one)
        self._usage: Usage | None = None

    def feed(self, events: list[NeutralEvent]) -> bytes:
        out: list[bytes] = []
        for event in events:
            if self._ended:
                break
            if isinstance(event, StreamError):
                code = "rate_limit_exceeded" if "rate_limit" in (event.code or "") else "server_error"
                self._fail(code, event.message or "upstream error", out)
                break
            if not self._started:
                self._start(out)
            if event.usage is not None:
                self._usage = event.usage
            if not self._finished and event.index == 0:
                self._on_chunk(event, out)
            if self._finished and event.usage is not None:
                self._complete(out)
        return b"".join(out)

    def close(self) -> bytes:
        if self._ended:
            return b""
        out: list[bytes] = []
        if not self._started:
            self._start(out)
        if not self._finished:
            self._close_open(out)
            self._finished = True
        self._complete(out)
        return b"".join(out)

    def _on_chunk(self, chunk: ChatChunk, out: list[bytes]) -> None:
        reasoning = chunk.reasoning
        if reasoning is not None and reasoning.type == "thinking" and reasoning.text:
            self._reasoning(reasoning.text, out)
        if chunk.content:
            self._text("output_text", chunk.content, out)
        if chunk.refusal:
            self._text("refusal", chunk.refusal, out)
        for call in chunk.tool_calls or ():
            self._tool_call(call, out)
        if chunk.finish_reason is not None:
            self._close_open(out)
            self._finish = chunk.finish_reason
            self._finished = True

    # --- items

    def _start(self, out: list[bytes]) -> None:
        self._started = True
        skeleton = self._response("in_progress", [], None)
        self._emit(ResponseLifecycleEvent("response.created", 0, skeleton), b"response.created", out)
        self._emit(ResponseLifecycleEvent("response.in_progress", 0, skeleton), b"response.in_progress", out)

    def _new_item(
        self, kind: str, item_id: str, out: list[bytes], call_id: str = "", name: str = ""
    ) -> _Item:
        self._close_open(out)
        item = _Item(kind, len(self._items), item_id)
        item.call_id, item.name = call_id, name
        self._items.append(item)
        self._open = item
        self._emit(
            OutputItemEvent("response.output_item.added", 0, item.index, self._snapshot(item, "in_progress")),
            b"response.output_item.added",
            out,
        )
        return item

    def _reasoning(self, text: str, out: list[bytes]) -> None:
        item = self._open
        if item is None or item.kind != "reasoning":
            item = self._new_item("reasoning", f"rs_{self._suffix}_{len(self._items)}", out)
            part = SummaryPartEvent(
                "response.reasoning_summary_part.added", 0, item.id, item.index, 0, SummaryText("")
            )
            self._emit(part, part.type.encode(), out)
        item.text.append(text)
        delta = SummaryDeltaEvent(0, item.id, item.index, 0, text)
        self._emit(delta, b"response.reasoning_summary_text.delta", out)

    def _text(self, kind: str, text: str, out: list[bytes]) -> None:
        item = self._open
        if item is None or item.kind != "message":
            item = self._new_item("message", f"msg_{self._suffix}", out)
        if not item.parts or item.parts[-1][0] != kind:
            if item.parts:
                self._close_part(item, out)
            item.parts.append((kind, []))
            part = ContentPartEvent(
                "response.content_part.added", 0, item.id, item.index, len(item.parts) - 1, _part(kind, "")
            )
            self._emit(part, b"response.content_part.added", out)
        item.parts[-1][1].append(text)
        content_index = len(item.parts) - 1
        if kind == "output_text":
            self._emit(
                TextDeltaEvent(0, item.id, item.index, content_index, text),
                b"response.output_text.delta",
                out,
            )
        else:
            self._emit(
                RefusalDeltaEvent(0, item.id, item.index, content_index, text), b"response.refusal.delta", out
            )

    def _tool_call(self, call: ToolCallDelta, out: list[bytes]) -> None:
        item = self._calls.get(call.index)
        if item is None:
            k = len(self._calls)
            call_id = call.id or f"call_{self._suffix}_{k}"
            item = self._new_item("function_call", f"fc_{self._suffix}_{k}", out, call_id, call.name or "")
            self._calls[call.index] = item
        if call.arguments:
            item.text.append(call.arguments)
            self._emit(
                ArgumentsDeltaEvent(0, item.id, item.index, call.arguments),
                b"response.function_call_arguments.delta",
                out,
            )

    def _close_part(self, item: _Item, out: list[bytes]) -> None:
        kind, pieces = item.parts[-1]
        text = "".join(pieces)
        index = len(item.parts) - 1
        if kind == "output_text":
            self._emit(TextDoneEvent(0, item.id, item.index, index, text), b"response.output_text.done", out)
        else:
            self._emit(RefusalDoneEvent(0, item.id, item.index, index, text), b"response.refusal.done", out)
        done = ContentPartEvent(
            "response.content_part.done", 0, item.id, item.index, index, _part(kind, text)
        )
        self._emit(done, b"response.content_part.done", out)

    def _close_open(self, out: list[bytes]) -> None:
        item = self._open
        if item is None:
            return
        self._open = None
        if item.kind == "message" and item.parts:
            self._close_part(item, out)
        elif item.kind == "function_call":
            done = ArgumentsDoneEvent(0, item.id, item.index, "".join(item.text), item.name)
            self._emit(done, b"response.function_call_arguments.done", out)
        elif item.kind == "reasoning":
            text = "".join(item.text)
            self._emit(
                SummaryDoneEvent(0, item.id, item.index, 0, text),
                b"response.reasoning_summary_text.done",
                out,
            )
            part = SummaryPartEvent(
                "response.reasoning_summary_part.done", 0, item.id, item.index, 0, SummaryText(text)
            )
            self._emit(part, b"response.reasoning_summary_part.done", out)
        self._emit(
            OutputItemEvent("response.output_item.done", 0, item.index, self._snapshot(item, "completed")),
            b"response.output_item.done",
            out,
        )

    def _snapshot(self, item: _Item, status: str) -> OutputItem:
        if item.kind == "function_call":
            return OutputFunctionCall(item.id, item.call_id, item.name, "".join(item.text), status)
        if item.kind == "reasoning":
            text = "".join(item.text)
            return OutputReasoning(item.id, [SummaryText(text)] if text else [], status)
        parts = [_part(kind, "".join(pieces)) for kind, pieces in item.parts]
        return OutputMessage(item.id, status, parts)

    # --- the end

    def _response(
        self, status: str, output: list[OutputItem], usage: ResponsesUsage | None
    ) -> ResponseObject:
        return _response(self._fields, self._id, self._created, self._model, status, output, usage)

    def _complete(self, out: list[bytes]) -> None:
        self._close_open(out)
        status, incomplete = _status(self._finish)
        output = [self._snapshot(item, "completed") for item in self._items]
        response = self._response(status, output, _usage(self._usage))
        response.incomplete_details = incomplete
        if status == "completed":
            response.completed_at = self._created
        name = b"response.completed" if status == "completed" else b"response.incomplete"
        self._emit(ResponseLifecycleEvent(name.decode(), 0, response), name, out)
        self.final = _encode(response)
        self._ended = True

    def _fail(self, code: str, message: str, out: list[bytes]) -> None:
        if not self._started:
            self._start(out)
        self._emit(ErrorEvent(0, ErrorDetail(code, message)), b"error", out)
        output = [self._snapshot(item, "incomplete") for item in self._items]
        response = self._response("failed", output, _usage(self._usage) if self._usage else None)
        response.error = ResponseError(code, message)
        self._emit(ResponseLifecycleEvent("response.failed", 0, response), b"response.failed", out)
        self.final = _encode(response)
        self._ended = True

    def _emit(self, event: StreamEvent, name: bytes, out: list[bytes]) -> None:
        event.sequence_number = self._seq
        self._seq += 1
        out.append(_SSE_EVENT % (name, _encode(event)))


def _part(kind: str, text: str) -> OutputText | OutputRefusal:
    return OutputText(text) if kind == "output_text" else OutputRefusal(text)
