"""The configuration: its msgspec schema, YAML loading, and the embedded default."""
