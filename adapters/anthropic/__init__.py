"""Anthropic's Messages API: the provider adapter, the `/v1/messages` front door, and its wire shapes."""
