"""Google Gemini and Vertex AI: the provider adapters and the Generative Language wire shapes."""
