"""Mistral's chat completions: the provider adapter and its wire shapes."""
