"""Guardrails on prompts and answers: personal data (mask, block or log), blocked terms and
patterns, a prompt-injection screen, and output checks on answers.

Policies are per logical model (`guardrails:` under a model in the config). A model without one
gets no Guardrails object at all, so the request body is not decoded for this (zero cost).

Prompts are screened on the client's body as sent: `messages` is decoded to plain JSON values,
every text (string content, `text` parts, tool call arguments) is checked, and when masking
changed something `messages` is re-encoded into the passthrough fields and the body, so unknown
fields and content parts the neutral schema does not model (audio, files) travel untouched.
Screened roles: PII and blocked content in every message (the client writes all of them), the
injection screen in user and tool messages only (the system prompt is the caller's own intent;
tool results are where indirect injections arrive).

Flags (`pii:email`, `blocked_content`, `injection:phrase`, `output_pii:iban`...) name rules and
categories, never the values, so they can go to the audit record and into a metric label.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, Final, NamedTuple

import msgspec

from adapters.openai.provider import PassthroughRequest
from adapters.schema import (
    ChatRequest,
    ChatResponse,
    Choice,
    ContentPart,
    FunctionCall,
    Message,
    TextPart,
    ToolCall,
)
from gateway.config.schema import BUILTIN_CATEGORIES, GuardrailsConfig
from gateway.errors.answers import GatewayError, from_code
from gateway.errors.catalogue import ErrorCode
from gateway.guardrails.masking import Vault, mask_with, replace_findings
from gateway.guardrails.pii import PiiScanner
from gateway.guardrails.stream import EventGuard, StreamGuard, TextWindow


class _Screen(NamedTuple):
    """One injection check. The regex runs only when the lower-cased text holds one of the
    keywords (cheap substring tests that skip most prompts), or, for `non_ascii`, only when the
    text is not plain ASCII."""

    flag: str
    keywords: tuple[str, ...]
    regex: re.Pattern[str]
    non_ascii: bool = False


def _phrase(keywords: tuple[str, ...], pattern: str) -> _Screen:
    return _Screen("injection:phrase", keywords, re.compile(pattern, re.IGNORECASE))


_INJECTION_SCREENS: Final = (
    _phrase(
        ("instruction", "prompt", "rule", "direction", "directive", "guideline", "guardrail"),
        r"\b(?:ignore|disregard|forget|override|bypass|skip)\b[^.\n]{0,40}?"
        r"\b(?:previous|prior|above|earlier|preceding|initial|original|system|all)\b[^.\n]{0,30}?"
        r"\b(?:instructions?|prompts?|rules|directions|directives|guidelines|guardrails)\b",
    ),
    _phrase(
        ("system", "your"),
        r"\b(?:reveal|print|show|repeat|output|display|leak|disclose)\b[^.\n]{0,30}?"
        r"\b(?:(?:your|the)\s+(?:(?:initial|original|hidden|secret)\s+)?system\s+(?:prompt|message|instructions)"
        r"|your\s+(?:(?:initial|original|hidden|secret)\s+)?(?:prompt|instructions)\b)",
    ),
    _phrase(
        ("you are now",),
        r"\byou are now\b[^.\n]{0,40}?\b(?:DAN|jailbroken|unrestricted|unfiltered|uncensored)\b",
    ),
    _phrase(("mode",), r"\b(?:developer|god|jailbreak|DAN)\s+mode\b"),
    _phrase(("anything now",), r"\bdo anything now\b"),
    _phrase(
        ("pretend",),
        r"\bpretend\b[^.\n]{0,20}?\byou\b[^.\n]{0,20}?\b(?:no|without)\b[^.\n]{0,20}?"
        r"\b(?:restrictions|rules|limits|guidelines|filters)\b",
    ),
    _phrase(
        ("anweisungen",),
        r"\bignor(?:e|iere)\w*\b[^.\n]{0,30}?\b(?:vorherigen|bisherigen|obigen)\s+Anweisungen\b",
    ),
    _phrase(
        ("instructions",), r"\bignore[rz]?\b[^.\n]{0,30}?\binstructions\s+(?:pr[ée]c[ée]dentes|ci-dessus)"
    ),
    _Screen(
        "injection:role_override",
        ("system", "assistant", "developer", "<|", "[inst]", "[/inst]", "<<sys>>", "<</sys>>"),
        re.compile(
            r"^[ \t]*(?:#{1,3}[ \t]*)?(?:system|assistant|developer)[ \t]*:"  # a fake turn on its own line
            r"|<\|(?:im_start|im_end|system|assistant|user|endoftext|eot_id|start_header_id)\|>"
            r"|\[/?INST\]|<</?SYS>>|</?(?:system|assistant)>",
            re.IGNORECASE | re.MULTILINE,
        ),
    ),
    # Zero-width space, bidi overrides and isolates ("Trojan Source"), invisible operators, a BOM
    # inside text, and Unicode tag characters (ASCII smuggling). Not U+200C/U+200D (needed in
    # Persian, Indic scripts and emoji) nor LRM/RLM (right-to-left text).
    _Screen(
        "injection:invisible_unicode",
        (),
        re.compile("[\u200b\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff\U000e0000-\U000e007f]"),
        non_ascii=True,
    ),
)
_UNTRUSTED_ROLES: Final = frozenset({"user", "tool", "function"})


def _injections(text: str) -> list[str]:
    """The injection flags `text` raises."""
    lowered = text.lower()
    ascii_only = text.isascii()
    found: list[str] = []
    for screen in _INJECTION_SCREENS:
        if screen.flag in found or (screen.non_ascii and ascii_only):
            continue
        if screen.keywords and not any(keyword in lowered for keyword in screen.keywords):
            continue
        if screen.regex.search(text):
            found.append(screen.flag)
    return found


def _block(message: str, code: ErrorCode) -> GatewayError:
    return from_code(code, message, param="messages")


class Screened:
    """What screening a prompt found: `flags` for the audit record and metrics, and the
    `vault` of placeholders when the prompt was masked (for restoring them in the answer)."""

    __slots__ = ("flags", "vault")

    def __init__(self, flags: tuple[str, ...], vault: Vault | None) -> None:
        self.flags = flags
        self.vault = vault


class Guardrails:
    """One model's policy, compiled once at start-up."""

    def __init__(self, config: GuardrailsConfig) -> None:
        self.config = config
        categories = config.pii_categories if config.pii_categories is not None else BUILTIN_CATEGORIES
        needs_scanner = config.pii is not None or config.output_pii is not None
        self._scanner = PiiScanner(categories, config.pii_patterns) if needs_scanner else None
        blocked = config.blocked
        self._blocked: re.Pattern[str] | None = None
        if blocked is not None:
            alternatives = [rf"(?<!\w){re.escape(term)}(?!\w)" for term in blocked.terms]
            alternatives += [f"(?:{pattern})" for pattern in blocked.patterns]
            self._blocked = re.compile("|".join(alternatives), re.IGNORECASE)
        self._restores = config.pii == "mask" and config.restore_pii
        # For logs: every category this policy knows, even when it only checks other things.
        self._log_scanner = self._scanner or PiiScanner(custom=config.pii_patterns)

    def mask_text(self, text: str) -> str:
        """`text` with this policy's PII categories (custom ones too) masked, for logs."""
        return mask_with(self._log_scanner, Vault(), text)[0]

    def screen(self, request: PassthroughRequest) -> Screened:
        """Check a chat request's messages; mask them in `request` when the policy says so.

        Raises GatewayError (400, fault "policy") when a rule with action block matches: the
        message names the rule or PII categories, never the matched text. When masking changed
        the prompt, `request.fields["messages"]` and `request.body` carry the masked version (for
        another door's request: a new `request.chat`).
        """
        flags: dict[str, None] = {}
        vault = Vault() if self.config.pii == "mask" else None
        if request.chat is not None:
            masked = self._screen_chat(request.chat, vault, flags)
        else:
            raw = request.fields.get("messages")
            if raw is None:
                return Screened((), None)
            messages = msgspec.json.decode(raw)
            if not isinstance(messages, list):
                return Screened((), None)
            changed = self._screen_json(messages, vault, flags)
        if self.config.pii == "block":
            categories = [flag[4:].lower() for flag in flags if flag.startswith("pii:")]
            if categories:
                raise _block(
                    "the request contains personal data this model may not receive: " + ", ".join(categories),
                    ErrorCode.PII_DETECTED,
                )
        if request.chat is not None:
            if masked is not None:
                request.chat = masked
        elif changed:
            request.fields["messages"] = msgspec.Raw(msgspec.json.encode(messages))
            request.body = msgspec.json.encode(request.fields)
        return Screened(tuple(flags), vault if vault else None)

    def _screen_json(self, messages: list[Any], vault: Vault | None, flags: dict[str, None]) -> bool:
        """The chat door's `messages` as plain JSON values, masked in place; whether any changed."""
        changed = False
        for message in messages:
            if not isinstance(message, dict):
                continue
            untrusted = message.get("role") in _UNTRUSTED_ROLES
            content = message.get("content")
            if isinstance(content, str):
                masked = self._text(content, untrusted, vault, flags)
                if masked is not content:
                    message["content"], changed = masked, True
            elif isinstance(content, list):
                for part in content:
                    if (
                        isinstance(part, dict)
                        and part.get("type") == "text"
                        and isinstance(part.get("text"), str)
                    ):
                        masked = self._text(part["text"], untrusted, vault, flags)
                        if masked is not part["text"]:
                            part["text"], changed = masked, True
            for function in _functions(message.get("tool_calls")):
                masked = self._text(function["arguments"], False, vault, flags)
                if masked is not function["arguments"]:
                    function["arguments"], changed = masked, True
        return changed

    def _screen_chat(
        self, chat: ChatRequest, vault: Vault | None, flags: dict[str, None]
    ) -> ChatRequest | None:
        """Another door's neutral request, screened as `_screen_json` screens a chat body: the
        masked copy, or None when nothing changed (the request's own messages are left as they
        are, so a masked prompt is a new object)."""
        messages: list[Message] = []
        changed = False
        for message in chat.messages:
            untrusted = message.role in _UNTRUSTED_ROLES
            content, calls, masked_here = message.content, message.tool_calls, False
            if isinstance(content, str):
                text = self._text(content, untrusted, vault, flags)
                if text is not content:
                    content, masked_here = text, True
            elif content:
                parts = [self._part(part, untrusted, vault, flags) for part in content]
                if any(new is not old for new, old in zip(parts, content, strict=True)):
                    content, masked_here = parts, True
            if calls:
                screened = [self._call(call, vault, flags) for call in calls]
                if any(new is not old for new, old in zip(screened, calls, strict=True)):
                    calls, masked_here = screened, True
            if masked_here:
                message = msgspec.structs.replace(message, content=content, tool_calls=calls)
                changed = True
            messages.append(message)
        return msgspec.structs.replace(chat, messages=messages) if changed else None

    def _part(
        self, part: ContentPart, untrusted: bool, vault: Vault | None, flags: dict[str, None]
    ) -> ContentPart:
        if not isinstance(part, TextPart):
            return part
        masked = self._text(part.text, untrusted, vault, flags)
        return part if masked is part.text else TextPart(masked)

    def _call(self, call: ToolCall, vault: Vault | None, flags: dict[str, None]) -> ToolCall:
        arguments = call.function.arguments
        masked = self._text(arguments, False, vault, flags)
        if masked is arguments:
            return call
        return msgspec.structs.replace(call, function=FunctionCall(call.function.name, masked))

    def _text(self, text: str, untrusted: bool, vault: Vault | None, flags: dict[str, None]) -> str:
        """One text of the prompt: flags added, blocks raised, masked text returned (the same
        object when nothing was replaced)."""
        if self._blocked is not None and self._blocked.search(text):
            if self.config.blocked is not None and self.config.blocked.action == "block":
                raise _block(
                    "the request contains content this model's policy blocks", ErrorCode.CONTENT_BLOCKED
                )
            flags["blocked_content"] = None
        if untrusted and self.config.injection is not None:
            for flag in _injections(text):
                if self.config.injection == "block":
                    kind = flag.partition(":")[2].replace("_", " ")
                    raise _block(
                        f"the request looks like a prompt injection ({kind})", ErrorCode.PROMPT_INJECTION
                    )
                flags[flag] = None
        if self._scanner is None or self.config.pii is None:
            return text
        findings = self._scanner.find(text)
        for finding in findings:
            flags["pii:" + finding.category.lower()] = None
        if vault is None or not findings:
            return text
        return replace_findings(text, findings, vault.placeholder)

    def checks_answer(self, screened: Screened) -> bool:
        """Whether answers need a pass (output check, or placeholders to restore): when False,
        the answer bytes go out as they came and no StreamGuard is needed."""
        return self.config.output_pii is not None or (self._restores and screened.vault is not None)

    def _window(self, screened: Screened) -> TextWindow:
        return TextWindow(self._scanner, self.config.output_pii, screened.vault if self._restores else None)

    def stream_guard(self, screened: Screened) -> StreamGuard | None:
        """The rewriter for a streamed answer to this prompt, or None when none is needed."""
        if not self.checks_answer(screened):
            return None
        return StreamGuard(lambda: self._window(screened))

    def check_response(
        self, response: ChatResponse, screened: Screened
    ) -> tuple[ChatResponse, tuple[str, ...]]:
        """`check_answer` of a translated provider's answer in neutral form."""
        if not self.checks_answer(screened):
            return response, ()
        checked, found = check_response_of(lambda: self._window(screened), response)
        return checked, tuple("output_pii:" + name.lower() for name in found)

    def event_guard(self, screened: Screened) -> EventGuard | None:
        """The rewriter for a neutral stream's events (gateway/formats/neutral_stream.py), or None when
        none is needed."""
        if not self.checks_answer(screened):
            return None
        return EventGuard(lambda: self._window(screened))

    def check_answer(self, body: bytes, screened: Screened) -> tuple[bytes, tuple[str, ...]]:
        """A complete OpenAI `chat.completion` body, checked and restored: returns the body for
        the client and the output flags. Blocking cuts the content before the first value found
        and sets finish_reason "content_filter". A body that is not a chat answer is returned
        unchanged."""
        if not self.checks_answer(screened):
            return body, ()
        try:
            answer = msgspec.json.decode(body)
        except msgspec.DecodeError:
            return body, ()
        choices = answer.get("choices") if isinstance(answer, dict) else None
        if not isinstance(choices, list):
            return body, ()
        found: dict[str, None] = {}
        for choice in choices:
            message = choice.get("message") if isinstance(choice, dict) else None
            if not isinstance(message, dict):
                continue
            windows: list[TextWindow] = []
            if isinstance(message.get("content"), str):
                window = self._window(screened)
                windows.append(window)
                message["content"] = window.feed(message["content"]) + window.flush()
            for function in _functions(message.get("tool_calls")):
                window = self._window(screened)
                windows.append(window)
                function["arguments"] = window.feed(function["arguments"]) + window.flush()
            for window in windows:
                found.update(window.categories)
            if any(window.blocked for window in windows):
                message.pop("tool_calls", None)
                choice["finish_reason"] = "content_filter"
        return msgspec.json.encode(answer), tuple("output_pii:" + name.lower() for name in found)


def check_response_of(
    window_of: Callable[[], TextWindow], response: ChatResponse
) -> tuple[ChatResponse, dict[str, None]]:
    """`Guardrails.check_response`'s pass over a neutral answer, with `window_of` making each text's
    window: the answer rewritten as `check_answer` rewrites an OpenAI body, and the categories."""
    found: dict[str, None] = {}
    choices: list[Choice] = []
    for choice in response.choices:
        message = choice.message
        windows: list[TextWindow] = []
        content = message.content
        if content is not None:
            window = window_of()
            windows.append(window)
            content = window.feed(content) + window.flush()
        calls = message.tool_calls
        if calls:
            checked = []
            for call in calls:
                window = window_of()
                windows.append(window)
                arguments = window.feed(call.function.arguments) + window.flush()
                checked.append(
                    msgspec.structs.replace(call, function=FunctionCall(call.function.name, arguments))
                )
            calls = checked
        for window in windows:
            found.update(window.categories)
        finish_reason = choice.finish_reason
        if any(window.blocked for window in windows):
            calls, finish_reason = None, "content_filter"
        message = msgspec.structs.replace(message, content=content, tool_calls=calls)
        choices.append(Choice(choice.index, message, finish_reason))
    return msgspec.structs.replace(response, choices=choices), found


def _functions(tool_calls: Any) -> list[dict[str, Any]]:
    """The `function` objects of a message's tool calls that carry string arguments."""
    if not isinstance(tool_calls, list):
        return []
    found = []
    for call in tool_calls:
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict) and isinstance(function.get("arguments"), str):
            found.append(function)
    return found


def stream_flags(guard: StreamGuard | EventGuard) -> tuple[str, ...]:
    """The output flags of a finished stream, named as `check_answer` names them."""
    return tuple("output_pii:" + name.lower() for name in guard.categories)


class GuardrailSet:
    """Every model's Guardrails, built once from `models` (name -> policy or None).

    Per key or team policies plug in here later: `for_model` is the one lookup the pipeline
    makes, and can take the principal when policies also come from keys and teams.
    """

    def __init__(self, policies: Mapping[str, GuardrailsConfig | None]) -> None:
        self._by_model = {name: Guardrails(policy) for name, policy in policies.items() if policy is not None}

    def for_model(self, model: str) -> Guardrails | None:
        return self._by_model.get(model)
