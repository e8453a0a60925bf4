"""Ollama's native chat API: the provider adapter and its wire shapes."""
