"""The gateway's error answers: GatewayError, the factories that build each kind, and the HTTP
answer in the OpenAI shape."""
