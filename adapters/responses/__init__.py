"""OpenAI's Responses API: the `/v1/responses` front door, its items, passthrough and wire shapes."""
