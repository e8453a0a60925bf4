"""Guardrails on prompts and answers: personal data detection and masking, blocked terms, stream
checks."""
