"""gateway/guardrails/stream.py: the sliding window over streamed text (a value split across
chunks is still caught, restored placeholders too) and the SSE rewriting around it."""

from __future__ import annotations

import random
from typing import Any

import msgspec
import pytest

from adapters.schema import ChatChunk, StreamError, StreamEvent, ToolCallDelta, usage_of
from gateway.config.schema import OutputAction
from gateway.guardrails.masking import Vault, mask_with
from gateway.guardrails.pii import PiiScanner
from gateway.guardrails.stream import MAX_HOLD, WINDOW, EventGuard, StreamGuard, TextWindow

SCANNER = PiiScanner()
VALUES = {
    "EMAIL": "anna.muster@example.com",
    "PHONE": "+41 44 668 18 00",
    "IBAN": "CH93 0076 2011 6238 5295 7",
    "CARD": "4111 1111 1111 1111",
    "AHV": "756.9217.0769.85",
    "IP": "2001:db8::42",
}
BEFORE = "Here is what you asked for, as found in the record: "
# Longer than WINDOW, so that a split can put the release point inside the value.
AFTER = " - let me know if you need anything else; I can also look up other records and questions."


def run(window: TextWindow, pieces: list[str]) -> str:
    return "".join(window.feed(piece) for piece in pieces) + window.flush()


def splits(text: str) -> list[list[str]]:
    """Every two-piece split of `text`, and some random splits into small pieces."""
    found = [[text[:i], text[i:]] for i in range(len(text) + 1)]
    rng = random.Random(len(text))
    for _ in range(20):
        pieces, position = [], 0
        while position < len(text):
            step = rng.randint(1, 6)
            pieces.append(text[position : position + step])
            position += step
        found.append(pieces)
    return found


@pytest.mark.parametrize("category", VALUES)
def test_a_value_split_across_chunks_is_blocked_before_any_of_it_goes_out(category: str) -> None:
    text = BEFORE + VALUES[category] + AFTER
    for pieces in splits(text):
        window = TextWindow(SCANNER, "block", None)
        assert run(window, pieces) == BEFORE, pieces
        assert window.blocked and list(window.categories) == [category]


@pytest.mark.parametrize("category", VALUES)
def test_a_value_split_across_chunks_is_masked_whole(category: str) -> None:
    text = BEFORE + VALUES[category] + AFTER
    for pieces in splits(text):
        window = TextWindow(SCANNER, "mask", None)
        assert run(window, pieces) == f"{BEFORE}[{category}]{AFTER}", pieces


def test_log_only_releases_the_text_unchanged_and_records() -> None:
    text = BEFORE + VALUES["EMAIL"] + " and " + VALUES["IBAN"] + AFTER
    window = TextWindow(SCANNER, "log-only", None)
    assert run(window, [text[i : i + 3] for i in range(0, len(text), 3)]) == text
    assert list(window.categories) == ["EMAIL", "IBAN"] and not window.blocked


def test_text_is_released_as_the_stream_goes_not_only_at_the_end() -> None:
    window = TextWindow(SCANNER, "block", None)
    released = [window.feed("word ") for _ in range(100)]
    assert sum(len(piece) for piece in released) >= 500 - WINDOW - len("word ")
    assert released[-1] == "word "  # steady state: a piece in, a piece out


def test_a_long_run_without_whitespace_is_held_back_only_so_far() -> None:
    window = TextWindow(SCANNER, "block", None)
    out = "".join(window.feed("a" * 100) for _ in range(50))
    assert len(out) >= 5000 - WINDOW - MAX_HOLD - 100
    assert out + window.flush() == "a" * 5000


def test_placeholders_split_across_chunks_are_restored() -> None:
    vault = Vault()
    masked, _ = mask_with(SCANNER, vault, f"write to {VALUES['EMAIL']} about {VALUES['IBAN']}")
    assert masked == "write to [EMAIL_1] about [IBAN_1]"
    answer = "I wrote to [EMAIL_1] about [IBAN_1]; [EMAIL_2] was not in the prompt."
    expected = f"I wrote to {VALUES['EMAIL']} about {VALUES['IBAN']}; [EMAIL_2] was not in the prompt."
    for pieces in splits(answer):
        assert run(TextWindow(None, None, vault), pieces) == expected, pieces


def test_a_window_without_checks_or_vault_passes_text_through() -> None:
    text = BEFORE + VALUES["CARD"] + AFTER
    assert run(TextWindow(SCANNER, None, None), [text[:10], text[10:]]) == text


# --- SSE ------------------------------------------------------------------------------------------


def chunk(delta: dict[str, Any], finish_reason: str | None = None, index: int = 0) -> dict[str, Any]:
    return {
        "id": "chatcmpl-9",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "m",
        "choices": [{"index": index, "delta": delta, "finish_reason": finish_reason}],
    }


def sse(events: list[dict[str, Any] | str]) -> bytes:
    frames = [
        b"data: " + (e.encode() if isinstance(e, str) else msgspec.json.encode(e)) + b"\n\n" for e in events
    ]
    return b"".join(frames)


def stream_of(pieces: list[str], usage: bool = True) -> bytes:
    events: list[dict[str, Any] | str] = [chunk({"role": "assistant", "content": ""})]
    events += [chunk({"content": piece}) for piece in pieces]
    events.append(chunk({}, "stop"))
    if usage:
        events.append(
            {
                "id": "chatcmpl-9",
                "object": "chat.completion.chunk",
                "created": 1700000000,
                "model": "m",
                "choices": [],
                "usage": {"prompt_tokens": 5, "completion_tokens": 9, "total_tokens": 14},
            }
        )
    events.append("[DONE]")
    return sse(events)


def parse(stream: bytes) -> tuple[str, list[str | None], list[dict[str, Any]], bool]:
    """Content, finish reasons, usage chunks and whether [DONE] came, from SSE bytes."""
    content, finishes, usages, done = [], [], [], False
    for event in stream.split(b"\n\n"):
        if not event:
            continue
        assert event.startswith(b"data: "), event
        data = event[6:]
        if data == b"[DONE]":
            done = True
            continue
        body = msgspec.json.decode(data)
        if body.get("usage"):
            usages.append(body["usage"])
        for choice in body["choices"]:
            content.append(choice["delta"].get("content") or "")
            if choice["finish_reason"] is not None:
                finishes.append(choice["finish_reason"])
    return "".join(content), finishes, usages, done


def guard(action: OutputAction | None, vault: Vault | None = None) -> StreamGuard:
    return StreamGuard(lambda: TextWindow(SCANNER, action, vault))


def feed_in_pieces(target: StreamGuard, data: bytes, seed: int) -> bytes:
    rng = random.Random(seed)
    out, position = [], 0
    while position < len(data):
        step = rng.randint(1, 40)
        out.append(target.feed(data[position : position + step]))
        position += step
    out.append(target.close())
    return b"".join(out)


@pytest.mark.parametrize("seed", range(10))
def test_sse_value_split_across_chunks_is_blocked_with_content_filter(seed: int) -> None:
    text = BEFORE + VALUES["PHONE"] + AFTER
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(text)), 8))
    pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    rail = guard("block")
    content, finishes, usages, done = parse(feed_in_pieces(rail, stream_of(pieces), seed))
    assert content == BEFORE
    assert finishes == ["content_filter"]
    assert usages == [{"prompt_tokens": 5, "completion_tokens": 9, "total_tokens": 14}]
    assert done and rail.blocked and rail.categories == ["PHONE"]


@pytest.mark.parametrize("seed", range(10))
def test_sse_masks_and_restores_across_chunks(seed: int) -> None:
    vault = Vault()
    mask_with(SCANNER, vault, VALUES["EMAIL"])
    text = "Mailed [EMAIL_1]; card on file is " + VALUES["CARD"] + "."
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(text)), 10))
    pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    content, finishes, _, done = parse(feed_in_pieces(guard("mask", vault), stream_of(pieces), seed))
    assert content == f"Mailed {VALUES['EMAIL']}; card on file is [CARD]."
    assert finishes == ["stop"] and done


def test_sse_tool_call_arguments_are_restored_across_chunks() -> None:
    vault = Vault()
    mask_with(SCANNER, vault, VALUES["EMAIL"])
    arguments = '{"to": "[EMAIL_1]", "subject": "hello"}'
    events: list[dict[str, Any] | str] = [
        chunk(
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "send", "arguments": ""},
                    }
                ],
            }
        )
    ]
    events += [
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": arguments[i : i + 4]}}]})
        for i in range(0, len(arguments), 4)
    ]
    events += [chunk({}, "tool_calls"), "[DONE]"]
    out = feed_in_pieces(guard(None, vault), sse(events), 3)
    rebuilt = ""
    for event in out.split(b"\n\n"):
        if event.startswith(b"data: {"):
            for choice in msgspec.json.decode(event[6:])["choices"]:
                for call in choice["delta"].get("tool_calls") or []:
                    rebuilt += call["function"].get("arguments") or ""
    assert rebuilt == arguments.replace("[EMAIL_1]", VALUES["EMAIL"])


def test_sse_held_text_is_flushed_when_the_stream_ends_without_a_finish() -> None:
    stream = sse([chunk({"role": "assistant", "content": ""}), chunk({"content": "short answer"}), "[DONE]"])
    content, finishes, _, done = parse(feed_in_pieces(guard("block"), stream, 1))
    assert content == "short answer" and finishes == [] and done
    # No [DONE] at all (the upstream broke off): close() releases what was held.
    cut = sse([chunk({"role": "assistant", "content": ""}), chunk({"content": "cut off"})])
    rail = guard("block")
    content, _, _, done = parse(rail.feed(cut) + rail.close())
    assert content == "cut off" and not done


def test_sse_comments_errors_and_foreign_events_pass_through() -> None:
    error = b'data: {"error": {"message": "boom", "type": "server_error"}}\n\n'
    stream = b": keep-alive\n\n" + error + b"data: not json\n\n"
    assert guard("block").feed(stream) == stream


def test_sse_choices_get_their_own_windows() -> None:
    events: list[dict[str, Any] | str] = []
    for piece_a, piece_b in (("one +41 44 ", "two 10.0."), ("668 18 00 done", "0.1 done")):
        events.append(chunk({"content": piece_a}, index=0))
        events.append(chunk({"content": piece_b}, index=1))
    events += [chunk({}, "stop", index=0), chunk({}, "stop", index=1), "[DONE]"]
    out = guard("mask").feed(sse(events))
    texts: dict[int, str] = {0: "", 1: ""}
    for event in out.split(b"\n\n"):
        if event.startswith(b"data: {"):
            for choice in msgspec.json.decode(event[6:])["choices"]:
                texts[choice["index"]] += choice["delta"].get("content") or ""
    assert texts == {0: "one [PHONE] done", 1: "two [IP] done"}


# --- EventGuard: the same over a neutral stream's events ----------------------------------------


def event_guard(action: OutputAction | None, vault: Vault | None = None) -> EventGuard:
    return EventGuard(lambda: TextWindow(SCANNER, action, vault))


def pieces_of(text: str, seed: int, count: int = 8) -> list[str]:
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(text)), count))
    return [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]


def through(rail: EventGuard, events: list[StreamEvent], seed: int) -> list[StreamEvent]:
    """`events` fed in random runs, then the guard closed, as gateway/formats/neutral_stream.py does."""
    rng = random.Random(seed)
    out: list[StreamEvent] = []
    position = 0
    while position < len(events):
        step = rng.randint(1, 4)
        out += rail.feed(events[position : position + step])
        position += step
    return out + rail.close()


def text_events(pieces: list[str]) -> list[StreamEvent]:
    return [
        ChatChunk(role="assistant", content=""),
        *(ChatChunk(content=piece) for piece in pieces),
        ChatChunk(finish_reason="stop"),
        ChatChunk(usage=usage_of(5, 9)),
    ]


def content_of(events: list[StreamEvent]) -> str:
    return "".join(e.content or "" for e in events if isinstance(e, ChatChunk))


@pytest.mark.parametrize("seed", range(10))
def test_events_value_split_across_chunks_is_blocked_with_content_filter(seed: int) -> None:
    rail = event_guard("block")
    out = through(rail, text_events(pieces_of(BEFORE + VALUES["PHONE"] + AFTER, seed)), seed)
    assert content_of(out) == BEFORE
    assert [e.finish_reason for e in out if isinstance(e, ChatChunk) and e.finish_reason] == [
        "content_filter"
    ]
    assert [e.usage for e in out if isinstance(e, ChatChunk) and e.usage] == [usage_of(5, 9)]
    assert rail.blocked and rail.categories == ["PHONE"]


@pytest.mark.parametrize("seed", range(10))
def test_events_are_masked_and_restored_across_chunks(seed: int) -> None:
    vault = Vault()
    mask_with(SCANNER, vault, VALUES["EMAIL"])
    text = "Mailed [EMAIL_1]; card on file is " + VALUES["CARD"] + "."
    out = through(event_guard("mask", vault), text_events(pieces_of(text, seed, 10)), seed)
    assert content_of(out) == f"Mailed {VALUES['EMAIL']}; card on file is [CARD]."
    finishes = [e.finish_reason for e in out if isinstance(e, ChatChunk) and e.finish_reason]
    assert finishes == ["stop"]
    assert all(e.content or e.role or e.finish_reason or e.usage for e in out if isinstance(e, ChatChunk))


def test_event_tool_call_arguments_are_restored_and_errors_pass() -> None:
    vault = Vault()
    mask_with(SCANNER, vault, VALUES["EMAIL"])
    arguments = '{"to": "[EMAIL_1]", "subject": "hello"}'
    events: list[StreamEvent] = [ChatChunk(tool_calls=[ToolCallDelta(0, "call_1", "send", "")])]
    events += [
        ChatChunk(tool_calls=[ToolCallDelta(0, arguments=arguments[i : i + 4])])
        for i in range(0, len(arguments), 4)
    ]
    events += [ChatChunk(finish_reason="tool_calls")]
    out = through(event_guard(None, vault), events, 3)
    rebuilt = "".join(
        call.arguments or "" for e in out if isinstance(e, ChatChunk) for call in e.tool_calls or ()
    )
    assert rebuilt == arguments.replace("[EMAIL_1]", VALUES["EMAIL"])
    error = StreamError("boom", "server")
    assert event_guard(None).feed([error]) == [error]


def test_text_held_at_an_end_without_a_finish_comes_out_at_close() -> None:
    rail = event_guard("mask")
    out = rail.feed([ChatChunk(content="x" * (WINDOW + 10))])
    assert content_of(out) + content_of(rail.close()) == "x" * (WINDOW + 10)
