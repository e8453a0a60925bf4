"""Pure translators between the OpenAI client format and each provider's wire format.

Nothing in this package opens a socket, reads configuration or the environment, logs, or looks at
a clock: every function takes bytes and typed records and returns bytes and typed records.
"""
