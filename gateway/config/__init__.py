"""The configuration: its msgspec schema, YAML loading, the embedded default, and the state
directory."""
