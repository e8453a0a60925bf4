"""The front doors (OpenAI chat, Anthropic Messages, Responses, rerank) and how each provider kind is
spoken to."""
