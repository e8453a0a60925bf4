"""The `providers:` section: every provider kind, the union an entry decodes into by its `kind`."""

from __future__ import annotations

from typing import Annotated, Final

import msgspec

from gateway.config.schema.azure import AzureProvider
from gateway.config.schema.base import HttpUrl
from gateway.config.schema.bedrock import BedrockProvider
from gateway.config.schema.provider_base import BaseHttpProvider, BaseProvider
from gateway.config.schema.vertex import VertexAnthropicProvider, VertexProvider


class OpenAIProvider(BaseHttpProvider, frozen=True, kw_only=True, tag="openai"):
    """OpenAI or any server that speaks its API (vLLM, TGI, llama.cpp, Ollama's /v1)."""

    base_url: HttpUrl = "https://api.openai.com/v1"
    # Whether the server has OpenAI's Responses API (`POST {base_url}/responses`): then requests
    # to the gateway's /v1/responses are passed through to it byte for byte. Unset: only when
    # `base_url` is OpenAI's own; OpenAI-compatible servers get such requests translated to chat.
    serves_responses: bool | None = None

    @property
    def responses_passthrough(self) -> bool:
        if self.serves_responses is not None:
            return self.serves_responses
        return self.base_url.rstrip("/").startswith("https://api.openai.com/")


class AnthropicProvider(BaseHttpProvider, frozen=True, kw_only=True, tag="anthropic"):
    base_url: HttpUrl = "https://api.anthropic.com"
    api_version: str = "2023-06-01"
    # Anthropic requires max_tokens; this is sent when the client gives none.
    default_max_tokens: Annotated[int, msgspec.Meta(ge=1)] = 4096


class GeminiProvider(BaseHttpProvider, frozen=True, kw_only=True, tag="gemini"):
    base_url: HttpUrl = "https://generativelanguage.googleapis.com/v1beta"


class MistralProvider(BaseHttpProvider, frozen=True, kw_only=True, tag="mistral"):
    base_url: HttpUrl = "https://api.mistral.ai/v1"


class CohereProvider(BaseHttpProvider, frozen=True, kw_only=True, tag="cohere"):
    base_url: HttpUrl = "https://api.cohere.com"


class OllamaProvider(BaseHttpProvider, frozen=True, kw_only=True, tag="ollama"):
    """Ollama's native /api/chat. (Its OpenAI-compatible /v1 is `kind: openai`.)"""

    base_url: HttpUrl = "http://127.0.0.1:11434"


class MockProvider(BaseProvider, frozen=True, kw_only=True, tag="mock"):
    """The built-in fake provider: deterministic answers from the prompt, no network, no key."""

    # A pause between streamed tokens (and the total for a non-streamed answer).
    latency_ms_per_token: Annotated[float, msgspec.Meta(ge=0)] = 0.0
    first_token_latency_ms: Annotated[float, msgspec.Meta(ge=0)] = 0.0  # a pause before the first token
    # When set, every call fails with this HTTP status (for demos of error handling and fallback).
    fail_status: Annotated[int, msgspec.Meta(ge=400, le=599)] | None = None
    # The size of an embedding unless the request asks for `dimensions`.
    embedding_dimensions: Annotated[int, msgspec.Meta(ge=1, le=8192)] = 16


HttpProvider = (
    OpenAIProvider
    | AzureProvider
    | AnthropicProvider
    | GeminiProvider
    | MistralProvider
    | CohereProvider
    | OllamaProvider
    | BedrockProvider
    | VertexProvider
    | VertexAnthropicProvider
)
Provider = HttpProvider | MockProvider
PROVIDER_KINDS: Final = (
    "openai",
    "azure",
    "anthropic",
    "gemini",
    "mistral",
    "cohere",
    "ollama",
    "bedrock",
    "vertex",
    "vertex-anthropic",
    "mock",
)
