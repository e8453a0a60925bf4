"""The `/v1/responses` front door's answer half: what the pipeline produced (an OpenAI
`chat.completion` body, or the OpenAI SSE stream as the gateway emits it, whatever the provider)
turned into a Responses object or event stream (reference responses-and-messages-2026.md §2.2,
§2.3). Pure translators: bytes in, bytes out.

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

from adapters import openai_wire
from adapters.framing import StreamTranslator
from adapters.openai_shapes import (
    OpenAIBodyChoiceProbe,
    OpenAIBodyMessageProbe,
    OpenAIBodyProbe,
    OpenAIDetailedUsageProbe,
    OpenAIToolCallDeltaProbe,
)
from adapters.responses_wire import (
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
from adapters.schema import ChatResponse, Usage

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


# --- what is read of the pipeline's OpenAI format (adapters/openai_shapes.py) ---------------------


_decode_body: Final = msgspec.json.Decoder(OpenAIBodyProbe).decode


# --- shared pieces ----------------------------------------------------------------------------


def response_id(chat_id: str) -> str:
    """`resp_…` from the answer's id (the gateway's `chatcmpl-<request id>` or the provider's)."""
    if chat_id.startswith("resp_"):
        return chat_id
    return "resp_" + (chat_id.removeprefix("chatcmpl-") or "tollway")


def _usage(usage: OpenAIDetailedUsageProbe | None) -> ResponsesUsage:
    if usage is None:
        return ResponsesUsage(0, 0, 0, InputTokensDetails(), OutputTokensDetails())
    prompt = usage.prompt_tokens_details
    completion = usage.completion_tokens_details
    cached = (prompt.cached_tokens or 0) if prompt is not None else 0
    written = (prompt.cache_write_tokens or 0) if prompt is not None else 0
    reasoning = (completion.reasoning_tokens or 0) if completion is not None else 0
    total = (
        usage.total_tokens
        if usage.total_tokens is not None
        else usage.prompt_tokens + usage.completion_tokens
    )
    return ResponsesUsage(
        usage.prompt_tokens,
        usage.completion_tokens,
        total,
        InputTokensDetails(cached, written),
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


def _thinking_text(message: OpenAIBodyMessageProbe) -> str | None:
    """The reasoning of an answer or delta, or None when it has none."""
    if message.thinking_blocks:
        return "".join(b.thinking or "" for b in message.thinking_blocks if b.type == "thinking")
    return message.reasoning_content


# --- answers ----------------------------------------------------------------------------------


def encode_response(chat_body: bytes, model: str, fields: Fields, rid: str | None = None) -> bytes:
    """An OpenAI `chat.completion` body (an OpenAI-format upstream's, or the cache's) as a
    Responses object labelled `model`, its usage with the details OpenAI gives; `fields` are the
    client's top-level request fields, echoed. `rid`: the response id (by default derived from
    the answer's id).

    Raises InvalidUpstreamAnswer when the body is not a chat completion.
    """
    decoded = openai_wire.decode_response(chat_body)
    return _answer(decoded.response, model, fields, rid, _usage(decoded.usage))


def encode_answer(response: ChatResponse, model: str, fields: Fields, rid: str | None = None) -> bytes:
    """A neutral answer (its first choice) as a Responses object, as `encode_response` writes one."""
    return _answer(response, model, fields, rid, _neutral_usage(response.usage))


def _neutral_usage(usage: Usage | None) -> ResponsesUsage:
    if usage is None:
        return _usage(None)
    details = InputTokensDetails(usage.cached_tokens, 0)
    return ResponsesUsage(
        usage.prompt_tokens, usage.completion_tokens, usage.total_tokens, details, OutputTokensDetails()
    )


def _answer(
    response: ChatResponse, model: str, fields: Fields, rid: str | None, usage: ResponsesUsage
) -> bytes:
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
    answer = _response(fields, rid, response.created, model, status, output, usage)
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


_DONE: Final = b"[DONE]"
_SSE_EVENT: Final = b"event: %b\ndata: %b\n\n"


class ResponsesStreamTranslator(StreamTranslator):
    """Incremental translation of the gateway's OpenAI SSE stream into Responses events (§1.7,
    §2.3), each with its `event:` line and a `sequence_number` one above the last.

    `feed(data)` takes reads split anywhere and returns the events completed so far; `close()` at
    the end. Order: `response.created` and `response.in_progress` at the first chunk; then items
    in order of generation, each opened (`output_item.added`, and for a message
    `content_part.added`), filled by deltas and closed (`.done` events, `output_item.done`) before
    the next opens (a tool call's late argument fragments, which no upstream we know sends, still
    go to its item by index). The finish reason is held until the usage chunk or `[DONE]`; then
    `response.completed` or `response.incomplete` carries the whole output and the usage. An
    in-band error, or a stream that ends before its finish, gives an `error` event and
    `response.failed`; nothing but comments follows. Comment lines pass through as they came.
    `rid` is the response id (by default derived from the first chunk's id); `final` is the
    response object of the terminal event once it has been written.
    """

    def __init__(self, model: str, fields: Fields, rid: str | None = None) -> None:
        self._model = model
        self._fields = fields
        self._rid = rid
        self.final: bytes | None = None
        super().__init__()
        self._seq = 0
        self._started = False
        self._id = ""
        self._suffix = ""
        self._created = 0
        self._items: list[_Item] = []
        self._open: _Item | None = None
        self._calls: dict[int, _Item] = {}  # chat tool-call index → its item
        self._finish: str | None = None
        self._finished = False  # a finish reason came (it may be null on [DONE] alone)
        self._usage: OpenAIDetailedUsageProbe | None = None

    def _on_end(self, out: list[bytes]) -> None:
        if self._finished:
            self._complete(out)  # whole; only its usage chunk and [DONE] are missing
        else:
            self._fail("server_error", "the upstream stream ended early", out)

    # --- input side

    def _on_data(self, data: bytes, out: list[bytes]) -> None:
        if data == _DONE:
            if not self._started:
                self._start("", 0, out)
            if not self._finished:
                self._close_open(out)
                self._finished = True
            self._complete(out)
            return
        try:
            chunk = _decode_body(data)
        except msgspec.DecodeError:
            self._fail("server_error", "the upstream sent a malformed stream chunk", out)
            return
        if chunk.error is not None:
            if isinstance(chunk.error, str):
                self._fail("server_error", chunk.error or "upstream error", out)
            else:
                code = (
                    "rate_limit_exceeded" if "rate_limit" in str(chunk.error.code or "") else "server_error"
                )
                self._fail(code, chunk.error.message or "upstream error", out)
            return
        if not self._started:
            self._start(chunk.id, chunk.created, out)
        if chunk.usage is not None:
            self._usage = chunk.usage
        if not self._finished:
            for choice in chunk.choices or ():
                if choice.index == 0:  # a Responses answer has one choice
                    self._on_choice(choice, out)
        if self._finished and chunk.usage is not None:
            self._complete(out)

    def _on_choice(self, choice: OpenAIBodyChoiceProbe, out: list[bytes]) -> None:
        delta = choice.delta
        if delta is not None:
            thinking = _thinking_text(delta)
            if thinking:
                self._reasoning(thinking, out)
            if delta.content:
                self._text("output_text", delta.content, out)
            if delta.refusal:
                self._text("refusal", delta.refusal, out)
            for call in delta.tool_calls or ():
                self._tool_call(call, out)
        if choice.finish_reason is not None:
            self._close_open(out)
            self._finish = choice.finish_reason
            self._finished = True

    # --- items

    def _start(self, chat_id: str, created: int, out: list[bytes]) -> None:
        self._started = True
        self._id = self._rid or response_id(chat_id)
        self._suffix = self._id.removeprefix("resp_")
        self._created = created
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

    def _tool_call(self, call: OpenAIToolCallDeltaProbe, out: list[bytes]) -> None:
        function = call.function
        item = self._calls.get(call.index)
        if item is None:
            k = len(self._calls)
            name = (function.name or "") if function is not None else ""
            call_id = call.id or f"call_{self._suffix}_{k}"
            item = self._new_item("function_call", f"fc_{self._suffix}_{k}", out, call_id, name)
            self._calls[call.index] = item
        if function is not None and function.arguments:
            item.text.append(function.arguments)
            self._emit(
                ArgumentsDeltaEvent(0, item.id, item.index, function.arguments),
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
            self._start("", 0, out)
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
