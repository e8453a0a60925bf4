"""Output checks on answers as they stream: a sliding window over each streamed text, and the
SSE rewriting that feeds it.

A value can arrive split over several chunks (`+41 44 66` then `8 18 00`). TextWindow therefore
holds back the tail of the text (the last WINDOW characters, widened to the previous whitespace
and to the start of any value that reaches into it) and releases text only once nothing in it
can still grow into a value. What it releases is checked, masked or cut there, and has any
prompt placeholders restored. The same window serves complete answers: feed, then flush.

EventGuard applies windows to a neutral stream's events, one window per choice's content and per
tool call's arguments. StreamGuard does the same over a same-format upstream's OpenAI SSE (whole
`data:` events, LF line ends), re-encoding the chunks it changed: a JSON decode and encode per
chunk, so a guard is only made when the model's policy checks output or restores placeholders.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import msgspec

from adapters.schema import ChatChunk, StreamError, StreamEvent, ToolCallDelta
from gateway.config.schema import OutputAction
from gateway.guardrails.masking import Vault, replace_findings
from gateway.guardrails.pii import Finding, PiiScanner

# Longer than any built-in value as people write it: an IBAN with spaces is at most 42
# characters, an IPv6 address 45, a grouped card number 23. Custom patterns should stay below.
WINDOW: Final = 64
# A run without whitespace (a long URL, a base64 blob) is not held back beyond this.
MAX_HOLD: Final = 1024
_CONTENT: Final = -1  # window key for a choice's content; tool calls use their index


def _output_placeholder(finding: Finding) -> str:
    # No number: output masks are never restored, unlike the prompt's [EMAIL_1].
    return f"[{finding.category}]"


class TextWindow:
    """One streamed text (a choice's content, or a tool call's arguments), checked as it grows.

    `feed(piece)` returns the text that may go to the client now; `flush()` the rest, at the end.
    With `action` "block", the text stops before the first value found and `blocked` is set;
    "mask" replaces values with `[CATEGORY]`; "log-only" only records. `categories` lists what
    was found. `vault`, when given, restores prompt placeholders in what is released.
    """

    __slots__ = ("_action", "_held", "_scanner", "_vault", "blocked", "categories")

    def __init__(self, scanner: PiiScanner | None, action: OutputAction | None, vault: Vault | None) -> None:
        self._scanner = scanner if action is not None else None
        self._action = action
        self._vault = vault
        self._held = ""
        self.blocked = False
        self.categories: dict[str, None] = {}  # an ordered set

    def feed(self, piece: str) -> str:
        if self.blocked:
            return ""
        text = self._held + piece if self._held else piece
        return self._release(text, _safe_cut(text))

    def flush(self) -> str:
        if self.blocked:
            return ""
        text, self._held = self._held, ""
        return self._release(text, len(text))

    def _release(self, text: str, cut: int) -> str:
        findings = self._scanner.find(text) if self._scanner is not None and text else []
        for finding in findings:
            if finding.start < cut < finding.end:
                cut = finding.start  # reaches into the held tail: hold all of it
                break
        out, self._held = text[:cut], text[cut:]
        done = [finding for finding in findings if finding.end <= cut]
        if done:
            for finding in done:
                self.categories[finding.category] = None
            if self._action == "block":
                out = out[: done[0].start]
                self.blocked = True
                self._held = ""
            elif self._action == "mask":
                out = replace_findings(out, done, _output_placeholder)
        return self._vault.restore(out) if self._vault is not None and out else out


def _safe_cut(text: str) -> int:
    """Where released text may end: WINDOW characters before the end, moved back to just after
    a whitespace so a word (an email, a placeholder) is not split, within MAX_HOLD."""
    cut = len(text) - WINDOW
    if cut <= 0:
        return 0
    floor = max(cut - MAX_HOLD, 0)
    space = max(text.rfind(" ", floor, cut), text.rfind("\n", floor, cut), text.rfind("\t", floor, cut))
    return space + 1 if space >= 0 else floor


_decode: Final = msgspec.json.decode
_encode: Final = msgspec.json.encode
_DONE: Final = b"[DONE]"


class _Windows:
    """The TextWindows of one answer: per choice its content and each tool call's arguments."""

    def __init__(self, new_window: Callable[[], TextWindow]) -> None:
        self._new_window = new_window
        self._windows: dict[tuple[int, int], TextWindow] = {}
        self.blocked = False

    @property
    def categories(self) -> list[str]:
        found: dict[str, None] = {}
        for window in self._windows.values():
            found.update(window.categories)
        return list(found)

    def _window(self, choice: int, slot: int) -> TextWindow:
        window = self._windows.get((choice, slot))
        if window is None:
            window = self._windows[(choice, slot)] = self._new_window()
        return window


class StreamGuard(_Windows):
    """Rewrites a same-format upstream's OpenAI SSE (the chat door's passthrough) through
    TextWindows; neutral streams have EventGuard.

    `feed(data)` takes relay output and returns the bytes to write now; `close()` what remains
    when the stream ends. When a window blocks, that choice ends with finish_reason
    "content_filter", later content is dropped (usage chunks and `[DONE]` still pass) and
    `blocked` is set. `categories` lists every category found in the answer.
    """

    def __init__(self, new_window: Callable[[], TextWindow]) -> None:
        super().__init__(new_window)
        self._pending = b""
        self._head: dict[str, Any] = {}

    def feed(self, data: bytes) -> bytes:
        buffer = self._pending + data if self._pending else data
        end = buffer.rfind(b"\n\n")
        if end < 0:
            self._pending = buffer
            return b""
        self._pending = buffer[end + 2 :]
        return b"".join(self._event(event) for event in buffer[:end].split(b"\n\n") if event)

    def close(self) -> bytes:
        rest, self._pending = self._pending.strip(b"\n"), b""
        return (self._event(rest) if rest else b"") + self._flush_all()

    def _event(self, event: bytes) -> bytes:
        data = _event_data(event)
        if data is None:
            return event + b"\n\n"
        if data == _DONE:
            return self._flush_all() + event + b"\n\n"
        try:
            chunk = _decode(data)
        except msgspec.DecodeError:
            return event + b"\n\n"
        choices = chunk.get("choices") if isinstance(chunk, dict) else None
        if not isinstance(choices, list) or not choices:
            return event + b"\n\n"  # a usage chunk or an in-band error
        if self.blocked:
            if chunk.get("usage") is None:
                return b""
            chunk["choices"] = []
            return b"data: " + _encode(chunk) + b"\n\n"
        self._head = {name: value for name, value in chunk.items() if name not in ("choices", "usage")}
        for choice in choices:
            if isinstance(choice, dict) and self._choice(choice):
                chunk["choices"] = [choice]  # the blocked one, cut and finished
                break
        if chunk.get("usage") is None and all(_held_back(choice) for choice in chunk["choices"]):
            return b""  # everything in it is held back for now: an empty event says nothing
        return b"data: " + _encode(chunk) + b"\n\n"

    def _choice(self, choice: dict[str, Any]) -> bool:
        """Run one choice's delta through its windows; True when it got blocked."""
        index = choice.get("index", 0)
        delta = choice.get("delta")
        if not isinstance(index, int) or not isinstance(delta, dict):
            return False
        finishing = choice.get("finish_reason") is not None
        content = delta.get("content")
        if isinstance(content, str) or finishing:
            window = self._window(index, _CONTENT)
            text = window.feed(content) if isinstance(content, str) else ""
            if finishing:
                text += window.flush()
            if isinstance(content, str) or text:
                delta["content"] = text
            if window.blocked:
                return self._block(choice, delta)
        calls = delta.get("tool_calls")
        seen: set[int] = set()
        if isinstance(calls, list):
            for call in calls:
                function = call.get("function") if isinstance(call, dict) else None
                if not isinstance(function, dict) or not isinstance(call.get("index"), int):
                    continue
                seen.add(call["index"])
                window = self._window(index, call["index"])
                text = (
                    window.feed(function["arguments"]) if isinstance(function.get("arguments"), str) else ""
                )
                if finishing:
                    text += window.flush()
                function["arguments"] = text
                if window.blocked:
                    return self._block(choice, delta)
        if finishing:
            for (choice_index, slot), window in self._windows.items():
                if choice_index == index and slot != _CONTENT and slot not in seen:
                    rest = window.flush()
                    if window.blocked:
                        return self._block(choice, delta)
                    if rest:
                        extra = {"index": slot, "function": {"arguments": rest}}
                        delta.setdefault("tool_calls", []).append(extra)
        return False

    def _block(self, choice: dict[str, Any], delta: dict[str, Any]) -> bool:
        self.blocked = True
        delta.pop("tool_calls", None)
        choice["finish_reason"] = "content_filter"
        return True

    def _flush_all(self) -> bytes:
        """Text still held when the stream ends without a finish_reason, as one last chunk."""
        if self.blocked:
            return b""
        frames: list[bytes] = []
        for (index, slot), window in self._windows.items():
            rest = window.flush()
            if window.blocked:
                self.blocked = True
                frames.append(self._frame(index, {}, "content_filter"))
                break
            if rest:
                delta: dict[str, Any] = (
                    {"content": rest}
                    if slot == _CONTENT
                    else {"tool_calls": [{"index": slot, "function": {"arguments": rest}}]}
                )
                frames.append(self._frame(index, delta, None))
        return b"".join(frames)

    def _frame(self, index: int, delta: dict[str, Any], finish_reason: str | None) -> bytes:
        chunk = {**self._head, "choices": [{"index": index, "delta": delta, "finish_reason": finish_reason}]}
        return b"data: " + _encode(chunk) + b"\n\n"


class EventGuard(_Windows):
    """Rewrites a neutral stream's events (gateway/formats/neutral_stream.py) through TextWindows: each
    choice's content and each tool call's arguments, before the door's encoder writes them.

    `feed(events)` returns the events to write now (a chunk whose content is all held back is
    left out); `close()`, when the answer is whole, what is still held. When a window blocks, that
    choice ends with finish_reason "content_filter", later chunks are dropped but for their usage,
    and `blocked` is set. `categories` lists every category found in the answer.
    """

    def feed(self, events: list[StreamEvent]) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        for event in events:
            if isinstance(event, StreamError):
                out.append(event)
            elif self.blocked:
                if event.usage is not None:
                    out.append(ChatChunk(usage=event.usage))
            else:
                chunk = self._chunk(event)
                if chunk is not None:
                    out.append(chunk)
        return out

    def close(self) -> list[StreamEvent]:
        """Text still held when the answer ends without a finish reason, as last chunks."""
        out: list[StreamEvent] = []
        if self.blocked:
            return out
        for (index, slot), window in self._windows.items():
            rest = window.flush()
            if window.blocked:
                self.blocked = True
                out.append(ChatChunk(index, finish_reason="content_filter"))
                break
            if rest:
                if slot == _CONTENT:
                    out.append(ChatChunk(index, content=rest))
                else:
                    out.append(ChatChunk(index, tool_calls=[ToolCallDelta(slot, arguments=rest)]))
        return out

    def _chunk(self, chunk: ChatChunk) -> ChatChunk | None:
        """One chunk through its choice's windows; None when all it said is held back."""
        index = chunk.index
        finishing = chunk.finish_reason is not None
        content = chunk.content
        if content is not None or finishing:
            window = self._window(index, _CONTENT)
            text = window.feed(content) if content is not None else ""
            if finishing:
                text += window.flush()
            content = text if content is not None or text else None
            if window.blocked:
                return self._block(chunk, content)
        calls: list[ToolCallDelta] | None = None
        if chunk.tool_calls is not None:
            calls = []
            for call in chunk.tool_calls:
                window = self._window(index, call.index)
                text = window.feed(call.arguments) if call.arguments is not None else ""
                if finishing:
                    text += window.flush()
                calls.append(msgspec.structs.replace(call, arguments=text))
                if window.blocked:
                    return self._block(chunk, content)
        if finishing:
            seen = {call.index for call in chunk.tool_calls or ()}
            for (choice_index, slot), window in self._windows.items():
                if choice_index == index and slot != _CONTENT and slot not in seen:
                    rest = window.flush()
                    if window.blocked:
                        return self._block(chunk, content)
                    if rest:
                        calls = [*(calls or ()), ToolCallDelta(slot, arguments=rest)]
        if (
            not content
            and calls is None
            and not finishing
            and chunk.usage is None
            and chunk.role is None
            and chunk.reasoning is None
            and chunk.refusal is None
        ):
            return None  # only content, and all of it held back for now
        return msgspec.structs.replace(chunk, content=content, tool_calls=calls)

    def _block(self, chunk: ChatChunk, content: str | None) -> ChatChunk:
        self.blocked = True
        return msgspec.structs.replace(
            chunk, content=content, tool_calls=None, finish_reason="content_filter"
        )


def _held_back(choice: Any) -> bool:
    """A choice whose delta is only content, and that content empty now."""
    if not isinstance(choice, dict) or choice.get("finish_reason") is not None:
        return False
    delta = choice.get("delta")
    return isinstance(delta, dict) and delta.keys() <= {"content"} and not delta.get("content")


def _event_data(event: bytes) -> bytes | None:
    """The joined `data:` lines of one SSE event, or None when it has none (a comment, say)."""
    lines = [line for line in event.split(b"\n") if line.startswith(b"data:")]
    if not lines:
        return None
    return b"\n".join(line[6:] if line.startswith(b"data: ") else line[5:] for line in lines).strip()
